//! Golden bodies and headers produced by stock Tahoe-LAFS 1.20.
//!
//! Every hex string and header below was printed by `tests/stock/gen_golden.py`, run with the
//! Python of a stock Tahoe-LAFS 1.20 virtualenv: bodies built as stock's client and server
//! build them and encoded by `allmydata.util.cbor.dumps` (cbor2), headers by
//! `swissnum_auth_header` and werkzeug's `Range`/`ContentRange`. We check that our encoder
//! produces the same bytes and our decoder reads them back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use lafs_protocol::{
    AdviseCorruptRequest, AllocateRequest, AllocateResponse, CborBody, ContentRange,
    ReadTestWriteRequest, ReadTestWriteResponse, ReadVector, RequiredRange, SecretKind, Secrets,
    ShareList, ShareNum, Swissnum, TestVector, TestWriteVectors, VersionResponse, WriteResponse,
    WriteVector, authorization_header_value, format_range,
};

fn set(ns: &[u8]) -> BTreeSet<ShareNum> {
    ns.iter().copied().map(ShareNum::new).collect()
}

/// Our encoding equals stock's bytes, and decoding stock's bytes gives `value`.
fn golden<T: CborBody + PartialEq + std::fmt::Debug>(value: &T, stock_hex: &str) {
    let stock = hex::decode(stock_hex).unwrap();
    assert_eq!(hex::encode(value.encode()), stock_hex);
    assert_eq!(&T::decode(&stock).unwrap(), value);
}

/// Stock's bytes decode to `value`; ours differ only in set or map order.
fn decodes<T: CborBody + PartialEq + std::fmt::Debug>(value: &T, stock_hex: &str) {
    let stock = hex::decode(stock_hex).unwrap();
    assert_eq!(&T::decode(&stock).unwrap(), value);
    let ours = value.encode();
    assert_ne!(ours, stock);
    assert_eq!(ours.len(), stock.len());
}

#[test]
fn version() {
    // HTTPServer._get_version() with 123456789012 bytes free.
    golden(
        &VersionResponse {
            maximum_immutable_share_size: 123_456_789_012,
            maximum_mutable_share_size: lafs_protocol::limits::STOCK_MAX_MUTABLE_SHARE_SIZE,
            available_space: 123_456_789_012,
            application_version: b"tahoe-lafs/1.20.0".to_vec(),
        },
        "a2582f687474703a2f2f616c6c6d79646174612e6f72672f7461686f652f70726f746f636f6c732f73746f\
         726167652f7631a3581c6d6178696d756d2d696d6d757461626c652d73686172652d73697a651b0000001c\
         be991a14581a6d6178696d756d2d6d757461626c652d73686172652d73697a651b00f582a1a13410004f61\
         7661696c61626c652d73706163651b0000001cbe991a14536170706c69636174696f6e2d76657273696f6e\
         517461686f652d6c6166732f312e32302e30",
    );
}

#[test]
fn allocate() {
    golden(
        &AllocateRequest {
            share_numbers: (0..10).map(ShareNum::new).collect(),
            allocated_size: 1_049_000,
        },
        "a26d73686172652d6e756d62657273d901028a000102030405060708096e616c6c6f63617465642d73697a\
         651a001001a8",
    );
    golden(
        &AllocateRequest {
            share_numbers: BTreeSet::new(),
            allocated_size: 0,
        },
        "a26d73686172652d6e756d62657273d90102806e616c6c6f63617465642d73697a6500",
    );
    golden(
        &AllocateResponse {
            already_have: set(&[1]),
            allocated: set(&[3, 7]),
        },
        "a26c616c72656164792d68617665d90102810169616c6c6f6361746564d90102820307",
    );
    // Stock writes {7, 200} in CPython set order, [200, 7]; we write [7, 200].
    decodes(
        &AllocateResponse {
            already_have: set(&[]),
            allocated: set(&[7, 200]),
        },
        "a26c616c72656164792d68617665d901028069616c6c6f6361746564d901028218c807",
    );
}

#[test]
fn write_response() {
    golden(
        &WriteResponse {
            required: vec![
                RequiredRange { begin: 16, end: 48 },
                RequiredRange {
                    begin: 100,
                    end: 70000,
                },
            ],
        },
        "a168726571756972656482a265626567696e1063656e641830a265626567696e186463656e641a00011170",
    );
    golden(&WriteResponse::default(), "a168726571756972656480");
}

#[test]
fn share_lists() {
    golden(&ShareList(set(&[1, 2, 5])), "d9010283010205");
    // Stock writes {0, 3, 9} in CPython set order, [0, 9, 3].
    decodes(&ShareList(set(&[0, 3, 9])), "d9010283000903");
    golden(&ShareList::default(), "d9010280");
}

#[test]
fn advise_corrupt() {
    golden(
        &AdviseCorruptRequest {
            reason: "expected hash abcd, got hash efgh \u{e9}".to_owned(),
        },
        "a166726561736f6e78246578706563746564206861736820616263642c20676f7420686173682065666768\
         20c3a9",
    );
}

fn share0() -> TestWriteVectors {
    TestWriteVectors {
        test: vec![TestVector {
            offset: 0,
            size: 41,
            specimen: vec![0; 41],
        }],
        write: vec![
            WriteVector {
                offset: 41,
                data: b"yy".to_vec(),
            },
            WriteVector {
                offset: 1000,
                data: vec![],
            },
        ],
        new_length: None,
    }
}

fn share3() -> TestWriteVectors {
    TestWriteVectors {
        test: vec![TestVector {
            offset: 0,
            size: 1,
            specimen: vec![],
        }],
        write: vec![WriteVector {
            offset: 0,
            data: b"xxxxxxxxxx".to_vec(),
        }],
        new_length: Some(10),
    }
}

#[test]
fn read_test_write() {
    golden(
        &ReadTestWriteRequest {
            test_write_vectors: BTreeMap::from([
                (ShareNum::new(0), share0()),
                (ShareNum::new(3), share3()),
            ]),
            read_vector: vec![
                ReadVector {
                    offset: 0,
                    size: 41,
                },
                ReadVector {
                    offset: 70000,
                    size: 5,
                },
            ],
        },
        "a272746573742d77726974652d766563746f7273a200a3647465737481a3666f6666736574006473697a65\
         18296873706563696d656e5829000000000000000000000000000000000000000000000000000000000000\
         000000000000000000000065777269746582a2666f666673657418296464617461427979a2666f66667365\
         741903e86464617461406a6e65772d6c656e677468f603a3647465737481a3666f6666736574006473697a\
         65016873706563696d656e4065777269746581a2666f66667365740064646174614a787878787878787878\
         786a6e65772d6c656e6774680a6b726561642d766563746f7282a2666f6666736574006473697a651829a2\
         666f66667365741a000111706473697a6505",
    );
    // Stock's dict order {3: ..., 0: ...}; we write keys in ascending order.
    decodes(
        &ReadTestWriteRequest {
            test_write_vectors: BTreeMap::from([
                (ShareNum::new(0), share0()),
                (ShareNum::new(3), share3()),
            ]),
            read_vector: vec![],
        },
        "a272746573742d77726974652d766563746f7273a203a3647465737481a3666f6666736574006473697a65\
         016873706563696d656e4065777269746581a2666f66667365740064646174614a78787878787878787878\
         6a6e65772d6c656e6774680a00a3647465737481a3666f6666736574006473697a6518296873706563696d\
         656e5829000000000000000000000000000000000000000000000000000000000000000000000000000000\
         000065777269746582a2666f666673657418296464617461427979a2666f66667365741903e86464617461\
         406a6e65772d6c656e677468f66b726561642d766563746f7280",
    );
    golden(
        &ReadTestWriteRequest::default(),
        "a272746573742d77726974652d766563746f7273a06b726561642d766563746f7280",
    );
    golden(
        &ReadTestWriteResponse {
            success: true,
            data: BTreeMap::from([
                (ShareNum::new(0), vec![b"abc".to_vec(), vec![]]),
                (ShareNum::new(5), vec![vec![0xff]]),
            ]),
        },
        "a26773756363657373f56464617461a200824361626340058141ff",
    );
    golden(
        &ReadTestWriteResponse::default(),
        "a26773756363657373f46464617461a0",
    );
}

#[test]
fn headers() {
    let swissnum: Swissnum = "g44v5ghvq7fx65wsuvuhuyrgjioef6rw".parse().unwrap();
    assert_eq!(
        authorization_header_value(&swissnum),
        "Tahoe-LAFS ZzQ0djVnaHZxN2Z4NjV3c3V2dWh1eXJnamlvZWY2cnc="
    );
    let renew: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert_eq!(
        SecretKind::LeaseRenew.header_value(&renew),
        "lease-renew-secret AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    );
    assert_eq!(
        SecretKind::Upload.header_value(&[0xfe; 20]),
        "upload-secret /v7+/v7+/v7+/v7+/v7+/v7+/v4="
    );
    let parsed = Secrets::parse(
        [
            "lease-renew-secret AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".as_bytes(),
            "upload-secret /v7+/v7+/v7+/v7+/v7+/v7+/v4=".as_bytes(),
        ],
        &[SecretKind::LeaseRenew, SecretKind::Upload],
    )
    .unwrap();
    assert_eq!(parsed.lease_renew.unwrap().as_bytes(), &renew);
    assert_eq!(parsed.upload.unwrap().as_bytes(), &[0xfe; 20]);
    // read_share_chunk(offset=10, length=90), write_share_chunk(offset=100, 16 bytes).
    assert_eq!(format_range(10, 90).unwrap(), "bytes=10-99");
    assert_eq!(
        ContentRange::for_write(100, 16).unwrap().to_header_value(),
        "bytes 100-115/*"
    );
}

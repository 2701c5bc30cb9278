//! Property tests: every parser is total (never panics, whatever the input), and every
//! encoder/formatter round-trips through its parser.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use http::{HeaderMap, HeaderValue, Method};
use lafs_protocol::{
    AccountUsage, AdviseCorruptRequest, AllocateRequest, AllocateResponse, ByteRange, CborBody,
    ContentRange, DecodeLimits, Endpoint, ErrorBody, Furl, LocationHint, Nurl, NurlScheme,
    ProtocolError, ReadPlan, ReadTestWriteRequest, ReadTestWriteResponse, ReadVector,
    RequiredRange, SecretKind, Secrets, ShareList, ShareNum, SpkiHash, StorageIndex, Swissnum,
    TestVector, TestWriteVectors, TubId, VersionResponse, WriteResponse, WriteVector,
    check_accept_cbor, check_request_content_type, check_structure, decode_limited, format_range,
    pem_blocks, spki_der_from_cert_der, swissnum_matches,
};
use proptest::prelude::*;

/// Decodes `bytes` as every body type, with default and with tiny limits.
fn decode_everything(bytes: &[u8]) {
    let tiny = DecodeLimits::new(64, 3, 16);
    let _ = check_structure(bytes, &tiny);
    let _ = check_structure(bytes, &ReadTestWriteRequest::LIMITS);
    macro_rules! all {
        ($($t:ty),*) => {$(
            let _ = <$t>::decode(bytes);
            let _ = decode_limited::<$t>(bytes, &tiny);
        )*};
    }
    all!(
        VersionResponse,
        AllocateRequest,
        AllocateResponse,
        WriteResponse,
        ShareList,
        AdviseCorruptRequest,
        ReadTestWriteRequest,
        ReadTestWriteResponse,
        AccountUsage,
        ErrorBody
    );
}

fn parse_everything_text(s: &str) {
    for m in [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ] {
        if let Ok(e) = Endpoint::parse(&m, s) {
            // Whatever parses is canonical up to share-number zeros and the query.
            let again = Endpoint::parse(&e.method(), &e.path()).unwrap();
            assert_eq!(again, e);
            assert!(
                e.path()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-".contains(&b))
            );
        }
    }
    let _ = s.parse::<StorageIndex>();
    let _ = s.parse::<Swissnum>();
    let _ = s.parse::<SpkiHash>();
    let _ = s.parse::<TubId>();
    if let Ok(n) = s.parse::<Nurl>() {
        assert_eq!(n.to_string().parse::<Nurl>().unwrap(), n);
    }
    if let Ok(f) = s.parse::<Furl>() {
        assert_eq!(f.to_string().parse::<Furl>().unwrap(), f);
    }
}

fn parse_everything_bytes(b: &[u8]) {
    decode_everything(b);
    let _ = spki_der_from_cert_der(b);
    let _ = SpkiHash::of_cert_der(b);
    let _ = TubId::of_cert_der(b);
    let _ = pem_blocks(b);
    let _ = ByteRange::parse(b);
    let _ = ContentRange::parse(b);
    let _ = Secrets::parse([b], &[SecretKind::Upload]);
    let swissnum: Swissnum = "abc".parse().unwrap();
    let _ = swissnum_matches(b, &swissnum);
    if let Ok(value) = HeaderValue::from_bytes(b) {
        let mut h = HeaderMap::new();
        for name in [
            "accept",
            "content-type",
            "range",
            "content-range",
            "x-tahoe-authorization",
        ] {
            h.append(name, value.clone());
        }
        let _ = check_accept_cbor(&h);
        let _ = check_request_content_type(&h);
        let _ = ByteRange::from_headers(&h);
        let _ = ContentRange::from_headers(&h);
        let _ = Secrets::from_headers(&h, &SecretKind::ALL);
    }
    if let Ok(s) = std::str::from_utf8(b) {
        parse_everything_text(s);
    }
}

/// Paths built from the pieces real paths are made of, plus junk.
fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("storage".to_owned()),
        Just("v1".to_owned()),
        Just("lafs".to_owned()),
        Just("immutable".to_owned()),
        Just("mutable".to_owned()),
        Just("lease".to_owned()),
        Just("shares".to_owned()),
        Just("abort".to_owned()),
        Just("corrupt".to_owned()),
        Just("read-test-write".to_owned()),
        Just("version".to_owned()),
        Just("account".to_owned()),
        Just("usage".to_owned()),
        Just("aaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned()),
        Just("..".to_owned()),
        Just("%2f".to_owned()),
        Just(String::new()),
        "[a-z2-7]{24,28}",
        "[0-9]{1,25}",
        ".{0,8}",
    ];
    (
        proptest::collection::vec(segment, 0..8),
        any::<bool>(),
        "(\\?.{0,6})?",
    )
        .prop_map(|(segments, leading, query)| {
            let mut p = if leading {
                "/".to_owned()
            } else {
                String::new()
            };
            p.push_str(&segments.join("/"));
            p.push_str(&query);
            p
        })
}

/// CBOR built from the item kinds GBS uses, nested, with keys GBS uses.
fn cbor_strategy() -> impl Strategy<Value = ciborium::Value> {
    use ciborium::Value;
    let key = prop_oneof![
        Just("share-numbers"),
        Just("allocated-size"),
        Just("already-have"),
        Just("allocated"),
        Just("required"),
        Just("begin"),
        Just("end"),
        Just("reason"),
        Just("test-write-vectors"),
        Just("read-vector"),
        Just("test"),
        Just("write"),
        Just("new-length"),
        Just("offset"),
        Just("size"),
        Just("specimen"),
        Just("data"),
        Just("success"),
        Just("error"),
        Just("application-version"),
        Just("http://allmydata.org/tahoe/protocols/storage/v1"),
        Just("available-space"),
    ];
    let leaf = prop_oneof![
        any::<u64>().prop_map(|n| Value::Integer(n.into())),
        (0u64..300).prop_map(|n| Value::Integer(n.into())),
        any::<i64>().prop_map(|n| Value::Integer(n.into())),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        ".{0,8}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|v| Value::Tag(258, Box::new(Value::Array(v)))),
            proptest::collection::vec((key.clone(), any::<bool>(), inner.clone()), 0..5).prop_map(
                |entries| {
                    Value::Map(
                        entries
                            .into_iter()
                            .map(|(k, bytes, v)| {
                                let k = if bytes {
                                    Value::Bytes(k.as_bytes().to_vec())
                                } else {
                                    Value::Text(k.to_owned())
                                };
                                (k, v)
                            })
                            .collect(),
                    )
                }
            ),
            proptest::collection::vec(((0u64..300), inner), 0..5).prop_map(|entries| {
                Value::Map(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Value::Integer(k.into()), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn share_set() -> impl Strategy<Value = BTreeSet<ShareNum>> {
    proptest::collection::btree_set(any::<u8>().prop_map(ShareNum::new), 0..20)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn rtw_request() -> impl Strategy<Value = ReadTestWriteRequest> {
    let test =
        (any::<u64>(), any::<u64>(), bytes(10)).prop_map(|(offset, size, specimen)| TestVector {
            offset,
            size,
            specimen,
        });
    let write = (any::<u64>(), bytes(10)).prop_map(|(offset, data)| WriteVector { offset, data });
    let twv = (
        proptest::collection::vec(test, 0..=30),
        proptest::collection::vec(write, 0..5),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(test, write, new_length)| TestWriteVectors {
            test,
            write,
            new_length,
        });
    (
        proptest::collection::btree_map(any::<u8>().prop_map(ShareNum::new), twv, 0..4),
        proptest::collection::vec(
            (any::<u64>(), any::<u64>()).prop_map(|(offset, size)| ReadVector { offset, size }),
            0..=30,
        ),
    )
        .prop_map(|(test_write_vectors, read_vector)| ReadTestWriteRequest {
            test_write_vectors,
            read_vector,
        })
}

fn round_trip<T: CborBody + PartialEq + std::fmt::Debug>(v: &T) {
    let encoded = v.encode();
    assert!(check_structure(&encoded, &T::LIMITS).is_ok());
    assert_eq!(&T::decode(&encoded).unwrap(), v);
}

/// The streaming read-test-write decoder, fed `body` in pieces of `piece` bytes, accepts it
/// exactly when the whole-body decoder does, with the same contents.
fn streaming_agrees(body: &[u8], piece: usize) -> Result<(), TestCaseError> {
    use lafs_protocol::rtw_stream::{
        StreamLimits, decode_in_pieces, merged_writes, streamed_writes,
    };
    let whole =
        lafs_protocol::decode_limited::<ReadTestWriteRequest>(body, &ReadTestWriteRequest::LIMITS);
    let limits = StreamLimits {
        max_small_bytes: u64::MAX,
        ..StreamLimits::new(1 << 40)
    };
    let streamed = decode_in_pieces(body, limits, piece);
    match (whole, streamed) {
        (Ok(w), Ok((s, stream))) => {
            prop_assert_eq!(merged_writes(&w), streamed_writes(&s, &stream));
            prop_assert_eq!(&w.read_vector, &s.read_vector);
            prop_assert_eq!(w.test_write_vectors.len(), s.test_write_vectors.len());
            for (n, v) in &w.test_write_vectors {
                let t = &s.test_write_vectors[n];
                prop_assert_eq!(&v.test, &t.test);
                prop_assert_eq!(v.new_length, t.new_length);
            }
        }
        (Err(_), Err(_)) => {}
        (w, s) => prop_assert!(
            false,
            "whole-body {:?} vs streamed {:?}",
            w.map(|_| ()),
            s.map(|_| ())
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn streaming_rtw_decoder_agrees_with_the_whole_body_decoder(
        rtw in rtw_request(),
        piece in 1usize..64,
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0u8..3,
    ) {
        let mut b = rtw.encode();
        streaming_agrees(&b, piece)?;
        let i = index.index(b.len());
        match how {
            0 => b[i] = byte,
            1 => b.insert(i, byte),
            _ => { b.remove(i); }
        }
        streaming_agrees(&b, piece)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in bytes(300)) {
        parse_everything_bytes(&b);
    }

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,120}") {
        parse_everything_bytes(s.as_bytes());
    }

    #[test]
    fn paths_never_panic(p in path_strategy()) {
        parse_everything_text(&p);
    }

    #[test]
    fn structured_cbor_never_panics(v in cbor_strategy()) {
        let mut encoded = Vec::new();
        ciborium::into_writer(&v, &mut encoded).unwrap();
        decode_everything(&encoded);
        // Any prefix is truncated CBOR.
        for cut in [0, encoded.len() / 2, encoded.len().saturating_sub(1)] {
            if cut < encoded.len() {
                prop_assert!(check_structure(&encoded[..cut], &ReadTestWriteRequest::LIMITS).is_err());
            }
        }
    }

    #[test]
    fn mutated_bodies_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>(), insert in any::<bool>()) {
        for good in [
            AllocateRequest { share_numbers: (0..10).map(ShareNum::new).collect(), allocated_size: 1_049_000 }.encode(),
            ReadTestWriteResponse { success: true, data: BTreeMap::from([(ShareNum::new(1), vec![vec![1, 2]])]) }.encode(),
            VersionResponse { maximum_immutable_share_size: 1, maximum_mutable_share_size: 2, available_space: 3, application_version: b"x".to_vec() }.encode(),
        ] {
            let mut b = good.clone();
            let i = index.index(b.len());
            if insert { b.insert(i, byte) } else { b[i] = byte }
            decode_everything(&b);
        }
    }

    #[test]
    fn bodies_round_trip(
        shares in share_set(),
        more in share_set(),
        size in any::<u64>(),
        ranges in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..10),
        reason in ".{1,200}",
        rtw in rtw_request(),
        reads in proptest::collection::btree_map(any::<u8>().prop_map(ShareNum::new), proptest::collection::vec(bytes(20), 0..4), 0..5),
        success in any::<bool>(),
        version in bytes(30),
        quota in proptest::option::of(any::<u64>()),
    ) {
        round_trip(&AllocateRequest { share_numbers: shares.clone(), allocated_size: size });
        round_trip(&AllocateResponse { already_have: shares.clone(), allocated: more });
        round_trip(&ShareList(shares));
        round_trip(&WriteResponse { required: ranges.iter().map(|&(begin, end)| RequiredRange { begin, end }).collect() });
        round_trip(&AdviseCorruptRequest { reason: reason.clone() });
        round_trip(&rtw);
        round_trip(&ReadTestWriteResponse { success, data: reads });
        round_trip(&VersionResponse { maximum_immutable_share_size: size, maximum_mutable_share_size: !size, available_space: size / 2, application_version: version });
        round_trip(&AccountUsage { used_bytes: size, share_count: !size, quota_bytes: quota });
        round_trip(&ErrorBody { error: reason });
    }

    #[test]
    fn endpoints_round_trip(si in any::<[u8; 16]>(), n in any::<u8>(), which in 0usize..13, zeros in 0usize..3) {
        let si = StorageIndex::from_bytes(si);
        let shnum = ShareNum::new(n);
        let e = [
            Endpoint::Version,
            Endpoint::ImmutableAllocate { si },
            Endpoint::ImmutableWrite { si, shnum },
            Endpoint::ImmutableAbort { si, shnum },
            Endpoint::ImmutableListShares { si },
            Endpoint::ImmutableRead { si, shnum },
            Endpoint::ImmutableAdvise { si, shnum },
            Endpoint::LeaseAddOrRenew { si },
            Endpoint::MutableReadTestWrite { si },
            Endpoint::MutableListShares { si },
            Endpoint::MutableRead { si, shnum },
            Endpoint::MutableAdvise { si, shnum },
            Endpoint::LafsAccountUsage,
        ][which];
        prop_assert_eq!(Endpoint::parse(&e.method(), &e.path()), Ok(e));
        prop_assert_eq!(si.to_string().parse::<StorageIndex>(), Ok(si));
        // Leading zeros on share numbers route to the same endpoint, as in stock.
        let padded = e.path().replace(&format!("{si}/{n}"), &format!("{si}/{}{n}", "0".repeat(zeros)));
        prop_assert_eq!(Endpoint::parse(&e.method(), &padded), Ok(e));
    }

    #[test]
    fn ranges_round_trip(offset in any::<u64>(), len in any::<u64>(), share_len in any::<u64>()) {
        match format_range(offset, len) {
            Some(header) => {
                let r = ByteRange::parse(header.as_bytes()).unwrap();
                prop_assert_eq!((r.first, r.last - r.first + 1), (offset, len));
                match ReadPlan::new(Some(r), share_len) {
                    ReadPlan::Partial { start, end } => {
                        prop_assert!(start < end && end <= share_len && end - start <= len);
                        let cr = ContentRange::parse(ReadPlan::Partial { start, end }.content_range().unwrap().as_bytes()).unwrap();
                        prop_assert_eq!((cr.first, cr.last + 1), (start, end));
                    }
                    ReadPlan::Empty => prop_assert!(offset >= share_len),
                    ReadPlan::Whole => prop_assert!(false),
                }
            }
            None => prop_assert!(len == 0 || offset.checked_add(len - 1).is_none()),
        }
        if let Some(cr) = ContentRange::for_write(offset, len) {
            prop_assert_eq!(ContentRange::parse(cr.to_header_value().as_bytes()), Ok(cr));
            prop_assert_eq!(cr.len(), len);
        }
    }

    #[test]
    fn secrets_round_trip(renew in any::<[u8; 32]>(), cancel in any::<[u8; 32]>(), upload in proptest::collection::vec(any::<u8>(), 1..100), we in any::<[u8; 32]>()) {
        use lafs_protocol::{LeaseSecret, UploadSecret, WriteEnabler};
        let secrets = Secrets {
            lease_renew: Some(LeaseSecret::from_bytes(renew)),
            lease_cancel: Some(LeaseSecret::from_bytes(cancel)),
            upload: Some(UploadSecret::new(upload).unwrap()),
            write_enabler: Some(WriteEnabler::from_bytes(we)),
        };
        let values = secrets.header_values();
        let parsed = Secrets::parse(values.iter().map(|v| v.as_bytes()), &SecretKind::ALL).unwrap();
        prop_assert_eq!(&parsed, &secrets);
        // Any other required set is a 400.
        let e = Secrets::parse(values.iter().map(|v| v.as_bytes()), &SecretKind::ALL[1..]).unwrap_err();
        prop_assert_eq!(ProtocolError::from(e).status().as_u16(), 400);
    }

    #[test]
    fn nurls_round_trip(spki in any::<[u8; 32]>(), tubid in any::<[u8; 20]>(), port in 1u16.., host in "[a-z0-9.-]{1,20}|[0-9a-f:]{2,20}", swissnum in "[a-z2-7]{32}", tor in any::<bool>()) {
        let n = Nurl {
            scheme: if tor { NurlScheme::PbTor } else { NurlScheme::Pb },
            spki_hash: SpkiHash::from_bytes(spki),
            host: host.clone(),
            port,
            swissnum: swissnum.parse().unwrap(),
        };
        let text = n.to_string();
        if host.contains(':') {
            let bracketed = format!("[{host}]");
            prop_assert!(text.contains(&bracketed));
        }
        prop_assert_eq!(text.parse::<Nurl>(), Ok(n));
        let f = Furl {
            tubid: TubId::from_bytes(tubid),
            hints: vec![LocationHint::Tcp { host, port }],
            swissnum: swissnum.parse().unwrap(),
        };
        prop_assert_eq!(f.to_string().parse::<Furl>(), Ok(f));
    }
}

//! The decoder returns the right bytes or an error, whatever is wrong with the shares.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_core::cap::{Cap, ChkCap};
use lafs_core::chk::layout::ShareLayout;
use lafs_core::chk::{EncodingParams, decode_bytes, encode_bytes};

fn fixture() -> (Vec<u8>, ChkCap, Vec<Vec<u8>>) {
    let plaintext: Vec<u8> = (0..700u32).map(|i| (i * 7 % 256) as u8).collect();
    let params = EncodingParams {
        needed_shares: 3,
        total_shares: 5,
        max_segment_size: 120,
    };
    let f = encode_bytes(&plaintext, &params, b"secret").unwrap();
    let Cap::Chk(cap) = f.cap else { panic!() };
    (plaintext, cap, f.shares)
}

#[test]
fn every_byte_of_one_share_corrupted_in_turn() {
    let (plaintext, cap, shares) = fixture();
    let layout = ShareLayout::parse(&shares[0]).unwrap();
    let mut detected_with_k = 0;
    for pos in 0..shares[0].len() {
        let mut bad = shares[0].clone();
        bad[pos] ^= 0x40;
        // With all shares there is always a way around the bad one.
        let all: Vec<(u16, &[u8])> = std::iter::once((0u16, bad.as_slice()))
            .chain(
                shares
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(|(i, s)| (i as u16, s.as_slice())),
            )
            .collect();
        assert_eq!(
            decode_bytes(&cap, &all).unwrap(),
            plaintext,
            "byte {pos}, all shares"
        );
        // With exactly k shares, the result is the plaintext or an error, never other bytes.
        let k: Vec<(u16, &[u8])> = vec![(0, &bad), (3, &shares[3]), (4, &shares[4])];
        match decode_bytes(&cap, &k) {
            Ok(p) => assert_eq!(p, plaintext, "byte {pos}: wrong plaintext"),
            Err(_) => detected_with_k += 1,
        }
        // A block byte of a share that is needed is always caught.
        let in_blocks = (pos as u64) >= layout.data && (pos as u64) < layout.plaintext_hash_tree;
        if in_blocks {
            assert!(
                decode_bytes(&cap, &k).is_err(),
                "byte {pos}: corrupt block accepted"
            );
        }
    }
    assert!(detected_with_k > 0);
}

#[test]
fn truncated_and_garbage_shares() {
    let (plaintext, cap, shares) = fixture();
    for cut in [0, 1, 35, 36, 100, shares[1].len() - 1] {
        let t = &shares[1][..cut];
        let k: Vec<(u16, &[u8])> = vec![(1, t), (2, &shares[2]), (3, &shares[3])];
        // Ok only when just the share's own copy of the UEB was cut: its blocks are good.
        if let Ok(p) = decode_bytes(&cap, &k) {
            assert!(p == plaintext && cut > 600, "cut at {cut}");
        }
        let more: Vec<(u16, &[u8])> =
            vec![(1, t), (2, &shares[2]), (3, &shares[3]), (4, &shares[4])];
        assert_eq!(decode_bytes(&cap, &more).unwrap(), plaintext);
    }
    // Shares of a different file under the right numbers.
    let other = encode_bytes(
        &vec![9u8; 700],
        &EncodingParams {
            needed_shares: 3,
            total_shares: 5,
            max_segment_size: 120,
        },
        b"secret",
    )
    .unwrap();
    let wrong: Vec<(u16, &[u8])> = other
        .shares
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u16, s.as_slice()))
        .collect();
    let err = decode_bytes(&cap, &wrong).unwrap_err().to_string();
    assert!(err.contains("not enough good shares"), "{err}");
    // Swapped share numbers are caught by the share hash chain.
    let swapped: Vec<(u16, &[u8])> = vec![(0, &shares[1]), (1, &shares[0]), (2, &shares[2])];
    assert!(decode_bytes(&cap, &swapped).is_err());
    // Duplicates do not count twice.
    let dup: Vec<(u16, &[u8])> = vec![(0, &shares[0]), (0, &shares[0]), (2, &shares[2])];
    assert!(decode_bytes(&cap, &dup).is_err());
}

#[test]
fn all_shares_corrupt_is_an_error() {
    let (_, cap, shares) = fixture();
    let bad: Vec<Vec<u8>> = shares
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s[40] ^= 1;
            s
        })
        .collect();
    let v: Vec<(u16, &[u8])> = bad
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u16, s.as_slice()))
        .collect();
    assert!(decode_bytes(&cap, &v).is_err());
}

/// An uploader allocates `Plan::share_size` bytes before encoding; every share must be
/// exactly that long (servers commit a share only when every allocated byte is written).
#[test]
fn planned_share_size_is_the_encoded_share_length() {
    use lafs_core::chk::{EncodingParams, Plan, encode_bytes};
    for (size, k, n, seg) in [
        (56u64, 3u16, 10u16, 131_072u64),
        (1000, 1, 1, 131_072),
        (131_073, 3, 10, 131_072),
        (1 << 20, 25, 100, 4096),
        (300_000, 7, 7, 1000),
    ] {
        let params = EncodingParams {
            needed_shares: k,
            total_shares: n,
            max_segment_size: seg,
        };
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let plan = Plan::new(size, &params).unwrap();
        let enc = encode_bytes(&data, &params, b"secret").unwrap();
        for share in &enc.shares {
            assert_eq!(
                share.len() as u64,
                plan.share_size(),
                "size {size} k {k} n {n}"
            );
        }
    }
}

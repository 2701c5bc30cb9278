//! Every case of `shared/vectors/chk-known-answers.json` (produced by stock Tahoe 1.20).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_core::base32;
use lafs_core::cap::Cap;
use lafs_core::chk::{EncodingParams, decode_bytes, encode_bytes, layout::ShareLayout};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/chk-known-answers.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e} (shared/ must sit beside the repo)"));
    serde_json::from_str(&text).expect("vectors are JSON")
}

/// The data rule of the vectors: `bytes(i % 251 for i in range(n))`.
fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Convergence secrets of the vectors, by case name.
fn convergence_for(name: &str) -> Vec<u8> {
    if name.ends_with("convA") {
        vec![b'A'; 16]
    } else {
        vec![0u8; 16]
    }
}

#[test]
fn all_known_answers() {
    let v = vectors();
    let cases = v["cases"].as_object().expect("cases");
    assert!(cases.len() >= 15, "expected the full vector set");
    for (name, case) in cases {
        let cap_expected = case["cap"].as_str().expect("cap");
        if name.starts_with("LIT") {
            let n = name
                .trim_start_matches("LIT-")
                .parse::<usize>()
                .expect("size");
            let f = encode_bytes(&data(n), &EncodingParams::default(), &[0; 16]).unwrap();
            assert_eq!(f.cap.to_string(), cap_expected, "{name}");
            assert!(f.shares.is_empty());
            continue;
        }
        let n = case["n"].as_u64().unwrap() as usize;
        let params = EncodingParams {
            needed_shares: case["k"].as_u64().unwrap() as u16,
            total_shares: case["N"].as_u64().unwrap() as u16,
            max_segment_size: case["maxseg"].as_u64().unwrap(),
        };
        let plaintext = data(n);
        let f = encode_bytes(&plaintext, &params, &convergence_for(name)).unwrap();
        assert_eq!(f.cap.to_string(), cap_expected, "{name}: cap");
        let Cap::Chk(chk) = &f.cap else {
            panic!("{name}: not CHK")
        };
        assert_eq!(
            Cap::Chk(chk.clone()).verifier().unwrap().to_string(),
            case["vcap"].as_str().unwrap(),
            "{name}: verify cap"
        );
        assert_eq!(
            base32::encode(&chk.storage_index()),
            case["si"].as_str().unwrap()
        );
        // UEB bytes, where given.
        let share0 = &f.shares[0];
        let layout = ShareLayout::parse(share0).unwrap();
        let ueb_start = (layout.uri_extension + layout.ueb_length_len()) as usize;
        let ueb = &share0[ueb_start..];
        assert_eq!(
            ueb.len() as u64,
            case["ueb_len"].as_u64().unwrap(),
            "{name}: ueb len"
        );
        if let Some(hexueb) = case.get("ueb_hex").and_then(Value::as_str) {
            assert_eq!(hex::encode(ueb), hexueb, "{name}: UEB bytes");
        }
        assert_eq!(
            layout.block_size,
            case["block_size"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            layout.data_size,
            case["share_size"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(layout.version),
            case["share0_version"].as_u64().unwrap()
        );
        // Share 0 exactly.
        assert_eq!(
            share0.len() as u64,
            case["share0_len"].as_u64().unwrap(),
            "{name}: len"
        );
        if let Some(head) = case.get("share0_head_hex").and_then(Value::as_str) {
            assert_eq!(hex::encode(&share0[..head.len() / 2]), head, "{name}: head");
        }
        let order: Vec<usize> = lafs_core::chk::layout::parse_share_hash_chain(
            &share0[layout.share_hashes as usize..layout.uri_extension as usize],
        )
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
        let expected_order: Vec<usize> = case["share0_hash_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(order, expected_order, "{name}: share hash chain order");
        assert_eq!(
            hex::encode(Sha256::digest(share0)),
            case["share0_sha256"].as_str().unwrap(),
            "{name}: share 0 sha256"
        );
        // And back, from the last k shares (parity where N > k).
        let k = usize::from(params.needed_shares);
        let shares: Vec<(u16, &[u8])> = f
            .shares
            .iter()
            .enumerate()
            .rev()
            .take(k)
            .map(|(i, s)| (i as u16, s.as_slice()))
            .collect();
        assert_eq!(
            decode_bytes(chk, &shares).unwrap(),
            plaintext,
            "{name}: decode"
        );
    }
}

//! Any bytes as share headers and as shares of a real file: parsing and decoding never
//! panic, and decoding never returns anything but the original plaintext.
#![no_main]

use lafs_core::cap::Cap;
use lafs_core::chk::layout::{ShareLayout, parse_share_hash_chain};
use lafs_core::chk::{EncodingParams, decode_bytes, encode_bytes};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Fixture {
    plaintext: Vec<u8>,
    cap: lafs_core::cap::ChkCap,
    shares: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let plaintext: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let params = EncodingParams { needed_shares: 2, total_shares: 3, max_segment_size: 1024 };
        let f = encode_bytes(&plaintext, &params, b"fuzz").expect("encodes");
        let Cap::Chk(cap) = f.cap else { panic!("not CHK") };
        Fixture { plaintext, cap, shares: f.shares }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = ShareLayout::parse(data) {
        let _ = l.share_len(100);
    }
    let _ = parse_share_hash_chain(data);
    let fx = fixture();
    if data.is_empty() {
        return;
    }
    // Mode 0: the input replaces share 0. Mode 1: the input is XORed over share 1.
    let mut s1 = fx.shares[1].clone();
    let result = if data[0] % 2 == 0 {
        decode_bytes(&fx.cap, &[(0, &data[1..]), (1, &fx.shares[1])])
    } else {
        for (i, b) in data[1..].iter().enumerate() {
            let n = s1.len();
            if n > 0 {
                s1[(i * 7919) % n] ^= b;
            }
        }
        decode_bytes(&fx.cap, &[(0, &fx.shares[0]), (1, &s1)])
    };
    if let Ok(plain) = result {
        assert_eq!(plain, fx.plaintext, "decoder returned wrong bytes");
    }
});

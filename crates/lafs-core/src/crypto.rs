//! AES-128-CTR as Tahoe uses it: IV of 16 zero bytes, 128-bit big-endian block counter.
//!
//! Any byte offset of the keystream can be reached directly, so segments can be encrypted
//! and decrypted independently and in parallel.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// The keystream of `key`, positioned at byte `offset`.
fn keystream_at(key: &[u8; 16], offset: u64) -> Aes128Ctr {
    let mut c = Aes128Ctr::new(key.into(), &[0u8; 16].into());
    c.seek(offset);
    c
}

/// XORs `buf` with the keystream of `key` starting at byte `offset` (encrypts or decrypts).
pub fn aes_ctr_xor(key: &[u8; 16], offset: u64, buf: &mut [u8]) {
    keystream_at(key, offset).apply_keystream(buf);
}

/// Like [`aes_ctr_xor`], reading `input` and writing the result to `output` (same length),
/// which saves copying the input first.
pub fn aes_ctr_xor_into(key: &[u8; 16], offset: u64, input: &[u8], output: &mut [u8]) {
    assert_eq!(
        input.len(),
        output.len(),
        "aes_ctr_xor_into: lengths differ"
    );
    // Cannot fail: the lengths are equal.
    let _ = keystream_at(key, offset).apply_keystream_b2b(input, output);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nist_sp800_38a_ctr_vector_shape() {
        // AES-128 with IV 0: keystream block 0 is AES_k(0); check seek consistency instead
        // of a vector with a non-zero IV.
        let key = [7u8; 16];
        let mut whole = vec![0u8; 100];
        aes_ctr_xor(&key, 0, &mut whole);
        for start in [0usize, 1, 15, 16, 17, 63] {
            let mut part = vec![0u8; 100 - start];
            aes_ctr_xor(&key, start as u64, &mut part);
            assert_eq!(part, whole[start..]);
        }
        let mut back = whole.clone();
        aes_ctr_xor(&key, 0, &mut back);
        assert_eq!(back, vec![0u8; 100]);
    }

    #[test]
    fn into_matches_in_place_at_every_offset() {
        let key = [9u8; 16];
        let input: Vec<u8> = (0..300u32).map(|i| (i * 7 + 1) as u8).collect();
        for offset in [0u64, 1, 15, 16, 17, 1 << 20, (1 << 32) + 5] {
            for len in [0usize, 1, 16, 33, 300] {
                let mut expect = input[..len].to_vec();
                aes_ctr_xor(&key, offset, &mut expect);
                // A stale output buffer must not leak into the result.
                let mut out = vec![0xA5u8; len];
                aes_ctr_xor_into(&key, offset, &input[..len], &mut out);
                assert_eq!(out, expect, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn known_answer_zero_key() {
        // AES-128(key=0, block=0) = 66e94bd4ef8a2c3b884cfa59ca342b2e (FIPS-197 derived).
        let mut b = [0u8; 16];
        aes_ctr_xor(&[0u8; 16], 0, &mut b);
        assert_eq!(hex::encode(b), "66e94bd4ef8a2c3b884cfa59ca342b2e");
    }
}

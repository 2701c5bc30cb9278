//! Shared helpers for the integration tests: an independent, deliberately
//! naive implementation of zfec's code (bit-by-bit field multiplication,
//! textbook Gauss–Jordan), and deterministic pseudo-random buffers.

#![allow(dead_code)]

/// GF(2^8) product modulo x^8+x^4+x^3+x^2+1, one bit at a time.
pub fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        let carry = a & 0x80 != 0;
        a <<= 1;
        if carry {
            a ^= 0x1D;
        }
        b >>= 1;
    }
    r
}

pub fn gf_pow(a: u8, e: usize) -> u8 {
    (0..e).fold(1u8, |acc, _| gf_mul(acc, a))
}

pub fn gf_inv(a: u8) -> u8 {
    assert_ne!(a, 0);
    (1..=255u8).find(|&b| gf_mul(a, b) == 1).unwrap()
}

/// Inverse of a square matrix by Gauss–Jordan elimination.
pub fn invert(m: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let k = m.len();
    let mut a: Vec<Vec<u8>> = m.to_vec();
    let mut b: Vec<Vec<u8>> = (0..k)
        .map(|i| (0..k).map(|j| u8::from(i == j)).collect())
        .collect();
    for col in 0..k {
        let p = (col..k).find(|&r| a[r][col] != 0).expect("singular");
        a.swap(p, col);
        b.swap(p, col);
        let f = gf_inv(a[col][col]);
        for j in 0..k {
            a[col][j] = gf_mul(a[col][j], f);
            b[col][j] = gf_mul(b[col][j], f);
        }
        for r in 0..k {
            if r != col && a[r][col] != 0 {
                let f = a[r][col];
                for j in 0..k {
                    a[r][j] ^= gf_mul(f, a[col][j]);
                    b[r][j] ^= gf_mul(f, b[col][j]);
                }
            }
        }
    }
    b
}

/// zfec's n×k encoding matrix, computed the slow, obvious way.
pub fn encoding_matrix(k: usize, n: usize) -> Vec<Vec<u8>> {
    let vdm: Vec<Vec<u8>> = (0..n)
        .map(|row| {
            (0..k)
                .map(|c| {
                    if row == 0 {
                        u8::from(c == 0)
                    } else {
                        gf_pow(2, ((row - 1) * c) % 255)
                    }
                })
                .collect()
        })
        .collect();
    let inv = invert(&vdm[..k]);
    vdm.iter()
        .map(|row| {
            (0..k)
                .map(|c| (0..k).fold(0u8, |acc, j| acc ^ gf_mul(row[j], inv[j][c])))
                .collect()
        })
        .collect()
}

/// All n shares of `data` under the naive encoding matrix.
pub fn naive_encode(k: usize, n: usize, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let m = encoding_matrix(k, n);
    let len = data.first().map_or(0, Vec::len);
    m.iter()
        .map(|row| {
            (0..len)
                .map(|i| (0..k).fold(0u8, |acc, c| acc ^ gf_mul(row[c], data[c][i])))
                .collect()
        })
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// `k` random blocks of `len` bytes.
pub fn random_blocks(seed: u64, k: usize, len: usize) -> Vec<Vec<u8>> {
    (0..k)
        .map(|i| {
            random_bytes(
                seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1)),
                len,
            )
        })
        .collect()
}

pub fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(|b| &b[..]).collect()
}

pub fn muts(v: &mut [Vec<u8>]) -> Vec<&mut [u8]> {
    v.iter_mut().map(|b| &mut b[..]).collect()
}

/// Parity shares via `fec.encode`.
pub fn encode(fec: &lafs_fec::Fec, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let len = data.first().map_or(0, Vec::len);
    let mut parity = vec![vec![0xA5u8; len]; fec.n() - fec.k()];
    fec.encode(&refs(data), &mut muts(&mut parity)).unwrap();
    parity
}

/// Primary blocks via `fec.decode` from the given `(share number, bytes)`.
pub fn decode(fec: &lafs_fec::Fec, shares: &[(usize, Vec<u8>)]) -> Vec<Vec<u8>> {
    let len = shares.first().map_or(0, |s| s.1.len());
    let mut out = vec![vec![0x5Au8; len]; fec.k()];
    let input: Vec<(usize, &[u8])> = shares.iter().map(|(n, b)| (*n, &b[..])).collect();
    fec.decode(&input, &mut muts(&mut out)).unwrap();
    out
}

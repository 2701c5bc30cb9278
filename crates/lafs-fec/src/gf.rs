//! Arithmetic in GF(2^8) with the zfec field polynomial, and the small dense
//! matrix algorithms (Vandermonde inversion, Gauss–Jordan inversion) used to
//! build encoding and decoding matrices.
//!
//! Everything here is safe, table-driven scalar code. The tables are computed
//! at compile time by `const fn`s, so there is no lazy initialisation.

/// The field polynomial x^8 + x^4 + x^3 + x^2 + 1 (zfec's `Pp = "101110001"`).
pub(crate) const POLY: u16 = 0x11D;

/// Carry-less "Russian peasant" multiplication reduced modulo [`POLY`].
/// Slow but obviously correct; used to build the tables and by tests.
pub(crate) const fn mul_slow(a: u8, b: u8) -> u8 {
    let mut a = a as u16;
    let mut b = b;
    let mut acc: u16 = 0;
    while b != 0 {
        if b & 1 != 0 {
            acc ^= a;
        }
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= POLY;
        }
        b >>= 1;
    }
    acc as u8
}

const fn build_exp() -> [u8; 510] {
    let mut t = [0u8; 510];
    let mut x: u8 = 1;
    let mut i = 0;
    while i < 510 {
        t[i] = x;
        x = mul_slow(x, 2);
        i += 1;
    }
    t
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        t[exp[i] as usize] = i as u8;
        i += 1;
    }
    t
}

const fn build_mul() -> [[u8; 256]; 256] {
    let mut t = [[0u8; 256]; 256];
    let mut a = 0;
    while a < 256 {
        let mut b = 0;
        while b < 256 {
            t[a][b] = mul_slow(a as u8, b as u8);
            b += 1;
        }
        a += 1;
    }
    t
}

/// `EXP[i] = alpha^i` for `i < 510` (doubled so `EXP[log a + log b]` needs no
/// reduction), alpha = 2.
pub(crate) static EXP: [u8; 510] = build_exp();
/// `LOG[x] = log_alpha(x)` for `x != 0`; `LOG[0]` is unused (0).
pub(crate) static LOG: [u8; 256] = build_log();
/// Full 64 KiB multiplication table: `MUL[a][b] = a * b`.
pub(crate) static MUL: [[u8; 256]; 256] = build_mul();

/// The 8×8 bit matrix (in the operand layout of `GF2P8AFFINEQB`) that
/// multiplies a byte by the constant `c` in our field.
///
/// `GF2P8AFFINEQB` computes result bit `i` as the parity of
/// `A.byte[7 - i] & x`; multiplication by `c` is linear over GF(2), and
/// result bit `i` depends on input bit `j` iff bit `i` of `c * 2^j` is set.
const fn gfni_matrix(c: u8) -> u64 {
    let mut m = 0u64;
    let mut j = 0;
    while j < 8 {
        let col = mul_slow(c, 1 << j);
        let mut i = 0;
        while i < 8 {
            if (col >> i) & 1 != 0 {
                m |= 1u64 << ((7 - i) * 8 + j);
            }
            i += 1;
        }
        j += 1;
    }
    m
}

const fn build_gfni() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = gfni_matrix(c as u8);
        c += 1;
    }
    t
}

const fn build_nibble() -> [[u8; 32]; 256] {
    let mut t = [[0u8; 32]; 256];
    let mut c = 0;
    while c < 256 {
        let mut x = 0;
        while x < 16 {
            t[c][x] = mul_slow(c as u8, x as u8);
            t[c][16 + x] = mul_slow(c as u8, (x << 4) as u8);
            x += 1;
        }
        c += 1;
    }
    t
}

/// `GFNI_MATRIX[c]`: affine matrix for multiplication by `c` (see
/// [`gfni_matrix`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) static GFNI_MATRIX: [u64; 256] = build_gfni();

/// `NIBBLE[c] = [c * x for x in 0..16] ++ [c * (x << 4) for x in 0..16]`:
/// the two 16-entry shuffle tables for the split-nibble (PSHUFB / TBL)
/// multiplication method, since `c * x = c * (x & 15) ^ c * (x & 0xF0)`.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) static NIBBLE: [[u8; 32]; 256] = build_nibble();

/// Field multiplication.
#[inline]
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    MUL[a as usize][b as usize]
}

/// Multiplicative inverse; `inv(0)` returns 0 (callers never ask for it).
#[inline]
pub(crate) fn inv(a: u8) -> u8 {
    if a == 0 {
        0
    } else {
        EXP[255 - LOG[a as usize] as usize]
    }
}

/// `alpha^e` for any exponent (reduced modulo 255).
#[inline]
pub(crate) fn alpha_pow(e: usize) -> u8 {
    EXP[e % 255]
}

/// Inverts the k×k Vandermonde matrix `V[i][j] = x_i^j` (row-major result)
/// in O(k^2), given distinct points `xs`.
///
/// Column `i` of `V^-1` holds the coefficients of the Lagrange basis
/// polynomial `L_i(x) = prod_{m != i} (x - x_m) / prod_{m != i} (x_i - x_m)`,
/// since `sum_j x_r^j * coef_j(L_i) = L_i(x_r) = [r == i]`. We expand the
/// master polynomial `P(x) = prod_m (x - x_m)` once and obtain each
/// `P(x) / (x - x_i)` by synthetic division. (In characteristic 2,
/// subtraction is XOR.)
///
/// Returns `None` if two points coincide.
pub(crate) fn invert_vandermonde(xs: &[u8]) -> Option<Vec<u8>> {
    let k = xs.len();
    // P(x) = prod (x + x_m), coefficients p[0..=k], p[k] = 1.
    let mut p = vec![0u8; k + 1];
    p[0] = 1;
    for (deg, &x) in xs.iter().enumerate() {
        // Multiply the degree-`deg` polynomial p by (x + xm).
        for j in (0..=deg + 1).rev() {
            let shifted = if j > 0 { p[j - 1] } else { 0 };
            p[j] = shifted ^ mul(p[j], x);
        }
    }
    let mut out = vec![0u8; k * k];
    let mut q = vec![0u8; k];
    for (i, &xi) in xs.iter().enumerate() {
        // Synthetic division: q(x) = P(x) / (x + xi); q[k-1] = p[k] = 1.
        let mut carry = p[k];
        for j in (0..k).rev() {
            q[j] = carry;
            carry = p[j] ^ mul(carry, xi);
        }
        // carry is now the remainder P(xi), which is 0.
        // Denominator: q(xi) = prod_{m != i} (xi + x_m).
        let mut t = 0u8;
        for j in (0..k).rev() {
            t = mul(t, xi) ^ q[j];
        }
        if t == 0 {
            return None;
        }
        let tinv = inv(t);
        for j in 0..k {
            out[j * k + i] = mul(q[j], tinv);
        }
    }
    Some(out)
}

/// Inverts a general k×k row-major matrix by Gauss–Jordan elimination with
/// row pivoting. Returns `None` if the matrix is singular.
pub(crate) fn invert_matrix(m: &[u8], k: usize) -> Option<Vec<u8>> {
    debug_assert_eq!(m.len(), k * k);
    let mut a = m.to_vec();
    let mut b = vec![0u8; k * k];
    for i in 0..k {
        b[i * k + i] = 1;
    }
    for col in 0..k {
        let pivot = (col..k).find(|&r| a[r * k + col] != 0)?;
        if pivot != col {
            for j in 0..k {
                a.swap(pivot * k + j, col * k + j);
                b.swap(pivot * k + j, col * k + j);
            }
        }
        let f = inv(a[col * k + col]);
        if f != 1 {
            let t = &MUL[f as usize];
            for j in 0..k {
                a[col * k + j] = t[a[col * k + j] as usize];
                b[col * k + j] = t[b[col * k + j] as usize];
            }
        }
        let prow_a = a[col * k..col * k + k].to_vec();
        let prow_b = b[col * k..col * k + k].to_vec();
        for r in 0..k {
            let f = a[r * k + col];
            if r == col || f == 0 {
                continue;
            }
            let t = &MUL[f as usize];
            for j in 0..k {
                a[r * k + j] ^= t[prow_a[j] as usize];
                b[r * k + j] ^= t[prow_b[j] as usize];
            }
        }
    }
    Some(b)
}

/// Row-major matrix product `(rows×inner) * (inner×cols)`.
pub(crate) fn matmul(a: &[u8], b: &[u8], rows: usize, inner: usize, cols: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows * cols];
    for r in 0..rows {
        for i in 0..inner {
            let f = a[r * inner + i];
            if f == 0 {
                continue;
            }
            let t = &MUL[f as usize];
            for c in 0..cols {
                out[r * cols + c] ^= t[b[i * cols + c] as usize];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_consistent() {
        assert_eq!(EXP[0], 1);
        assert_eq!(EXP[1], 2);
        assert_eq!(EXP[8], 0x1D);
        assert_eq!(EXP[255], 1);
        for a in 1..=255u8 {
            assert_eq!(EXP[LOG[a as usize] as usize], a);
            assert_eq!(mul(a, inv(a)), 1);
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), mul(b, a));
            }
        }
        // alpha generates the whole multiplicative group.
        let mut seen = [false; 256];
        for e in 0..255 {
            seen[alpha_pow(e) as usize] = true;
        }
        assert_eq!(seen.iter().filter(|&&s| s).count(), 255);
    }

    /// Emulates `GF2P8AFFINEQB` (as specified by Intel) and the split-nibble
    /// lookup in software, so the table layouts are checked on any CPU.
    #[test]
    fn gfni_matrices_and_nibble_tables_multiply() {
        for c in 0..=255u8 {
            let m = GFNI_MATRIX[c as usize];
            let t = &NIBBLE[c as usize];
            for x in 0..=255u8 {
                let mut r = 0u8;
                for i in 0..8 {
                    let row = (m >> ((7 - i) * 8)) as u8;
                    if (row & x).count_ones() % 2 == 1 {
                        r |= 1 << i;
                    }
                }
                assert_eq!(r, mul(c, x), "affine c={c} x={x}");
                let nib = t[(x & 15) as usize] ^ t[16 + (x >> 4) as usize];
                assert_eq!(nib, mul(c, x), "nibble c={c} x={x}");
            }
        }
    }

    #[test]
    fn vandermonde_inverse_matches_gauss_jordan() {
        for k in 1..=20usize {
            let xs: Vec<u8> = (0..k)
                .map(|i| if i == 0 { 0 } else { alpha_pow(i - 1) })
                .collect();
            let v: Vec<u8> = (0..k)
                .flat_map(|i| {
                    let x = xs[i];
                    (0..k).map(move |j| {
                        let mut p = 1u8;
                        for _ in 0..j {
                            p = mul(p, x);
                        }
                        p
                    })
                })
                .collect();
            let a = invert_vandermonde(&xs).unwrap();
            let b = invert_matrix(&v, k).unwrap();
            assert_eq!(a, b, "k={k}");
            let id = matmul(&v, &a, k, k, k);
            for r in 0..k {
                for c in 0..k {
                    assert_eq!(id[r * k + c], u8::from(r == c));
                }
            }
        }
    }

    #[test]
    fn singular_detected() {
        assert!(invert_matrix(&[1, 2, 1, 2], 2).is_none());
        assert!(invert_vandermonde(&[3, 3]).is_none());
    }
}

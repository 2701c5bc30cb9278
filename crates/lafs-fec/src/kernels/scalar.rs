//! Portable scalar kernel (safe code): one 256-byte row of the 64 KiB
//! multiplication table per coefficient, one lookup per byte.

use crate::gf::MUL;

/// Positions processed per tile: the output strips of one tile stay in L1
/// while all `k` inputs are accumulated into them.
const TILE: usize = 4096;

/// `outputs[r] = sum_c coeffs[r * k + c] * inputs[c]` over the whole length
/// (the caller has checked all slices have equal length and that
/// `coeffs.len() == outputs.len() * inputs.len()`).
pub(crate) fn mul_matrix(coeffs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    let len = outputs.first().map_or(0, |o| o.len());
    let mut start = 0;
    while start < len {
        let end = (start + TILE).min(len);
        mul_matrix_range(coeffs, inputs, outputs, start, end);
        start = end;
    }
}

/// Same as [`mul_matrix`], restricted to positions `start..end`. Also used
/// by the SIMD kernels for the bytes that do not fill a whole vector.
pub(crate) fn mul_matrix_range(
    coeffs: &[u8],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    let k = inputs.len();
    if k == 0 || start >= end {
        return;
    }
    for (row, out) in coeffs.chunks_exact(k).zip(outputs.iter_mut()) {
        let out = &mut out[start..end];
        let mut coefs = row.iter().zip(inputs);
        if let Some((&c, inp)) = coefs.next() {
            let t = &MUL[c as usize];
            for (o, &x) in out.iter_mut().zip(&inp[start..end]) {
                *o = t[x as usize];
            }
        }
        for (&c, inp) in coefs {
            match c {
                0 => {}
                1 => {
                    for (o, &x) in out.iter_mut().zip(&inp[start..end]) {
                        *o ^= x;
                    }
                }
                _ => {
                    let t = &MUL[c as usize];
                    for (o, &x) in out.iter_mut().zip(&inp[start..end]) {
                        *o ^= t[x as usize];
                    }
                }
            }
        }
    }
}

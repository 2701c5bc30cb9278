//! aarch64 NEON kernel: split-nibble `TBL` lookups (the NEON analogue of the
//! AVX2 `PSHUFB` kernel, with the same [`NIBBLE`] tables).
//!
//! This module is only compiled when NEON is enabled at compile time for the
//! target (`cfg(target_feature = "neon")`, true for all mainstream aarch64
//! targets), so no run-time detection is needed: the caller may invoke the
//! `#[target_feature(enable = "neon")]` entry point unconditionally.
//!
//! **Testing**: no aarch64 hardware was available while writing it. It has
//! been type-checked and clippy-checked for `aarch64-unknown-linux-gnu`, and
//! the crate's test suite (which compares every kernel against the scalar
//! one) passed under QEMU user-mode emulation:
//!
//! ```text
//! apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
//! rustup target add aarch64-unknown-linux-gnu
//! CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
//! CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
//!   cargo test -p lafs-fec --target aarch64-unknown-linux-gnu
//! ```
//!
//! Its speed on real hardware has not been measured.

use core::arch::aarch64::*;

use super::row_groups;
use super::scalar::mul_matrix_range;
use super::tile_width;
use crate::gf::NIBBLE;

/// Rows per group: 4 rows × 2 vectors = 8 accumulators, 4 nibble vectors,
/// 2 tables and a mask within 32 vector registers.
const MAX_ROWS: usize = 4;

/// NEON implementation of [`super::Kernel::mul_matrix`]; the caller has
/// checked that all slices have the same non-zero length, that `inputs` is
/// non-empty and that `coeffs.len() == outputs.len() * inputs.len()`.
#[target_feature(enable = "neon")]
pub(super) fn mul_matrix(coeffs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    let k = inputs.len();
    let len = outputs[0].len();
    let groups = row_groups(outputs.len(), MAX_ROWS);
    let tile = tile_width(k, groups.len(), len);
    let mut start = 0;
    while start < len {
        let end = (start + tile).min(len);
        for &(row0, r) in &groups {
            let rows = &coeffs[row0 * k..(row0 + r) * k];
            let outs = &mut outputs[row0..row0 + r];
            let done = match r {
                1 => group::<1>(rows, inputs, outs, start, end),
                2 => group::<2>(rows, inputs, outs, start, end),
                3 => group::<3>(rows, inputs, outs, start, end),
                _ => group::<4>(rows, inputs, outs, start, end),
            };
            mul_matrix_range(rows, inputs, outs, done, end);
        }
        start = end;
    }
}

/// Computes positions `start..` (in 32- then 16-byte steps) of the `R` rows
/// whose coefficients are `rows` (row-major `R × k`); returns where it
/// stopped (the caller handles the `< 16` remaining bytes).
#[target_feature(enable = "neon")]
fn group<const R: usize>(
    rows: &[u8],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) -> usize {
    let k = inputs.len();
    assert!(k > 0);
    assert_eq!(rows.len(), R * k);
    assert_eq!(outs.len(), R);
    assert!(start <= end);
    assert!(inputs.iter().all(|s| s.len() >= end));
    assert!(outs.iter().all(|s| s.len() >= end));
    let outp: [*mut u8; R] = core::array::from_fn(|i| outs[i].as_mut_ptr());
    let tables: Vec<[&[u8; 32]; R]> = (0..k)
        .map(|c| core::array::from_fn(|i| &NIBBLE[rows[i * k + c] as usize]))
        .collect();
    let load_tables = |t: &[u8; 32]| {
        // SAFETY: both 16-byte loads are within the 32-byte array `t`.
        unsafe { (vld1q_u8(t.as_ptr()), vld1q_u8(t.as_ptr().add(16))) }
    };
    let mask = vdupq_n_u8(0x0f);
    let mul = |lo, hi, x: uint8x16_t| {
        veorq_u8(
            vqtbl1q_u8(lo, vandq_u8(x, mask)),
            vqtbl1q_u8(hi, vshrq_n_u8::<4>(x)),
        )
    };

    let mut pos = start;
    while pos + 32 <= end {
        let mut acc = [[vdupq_n_u8(0); 2]; R];
        for (inp, t) in inputs.iter().zip(&tables) {
            // SAFETY: pos + 32 <= end <= inp.len() (checked above).
            let (x0, x1) = unsafe {
                let p = inp.as_ptr().add(pos);
                (vld1q_u8(p), vld1q_u8(p.add(16)))
            };
            for i in 0..R {
                let (lo, hi) = load_tables(t[i]);
                acc[i][0] = veorq_u8(acc[i][0], mul(lo, hi, x0));
                acc[i][1] = veorq_u8(acc[i][1], mul(lo, hi, x1));
            }
        }
        for i in 0..R {
            // SAFETY: pos + 32 <= end <= outs[i].len() (checked above), and
            // outp[i] points into the exclusively borrowed outs[i].
            unsafe {
                let p = outp[i].add(pos);
                vst1q_u8(p, acc[i][0]);
                vst1q_u8(p.add(16), acc[i][1]);
            }
        }
        pos += 32;
    }
    if pos + 16 <= end {
        let mut acc = [vdupq_n_u8(0); R];
        for (inp, t) in inputs.iter().zip(&tables) {
            // SAFETY: pos + 16 <= end <= inp.len() (checked above).
            let x = unsafe { vld1q_u8(inp.as_ptr().add(pos)) };
            for i in 0..R {
                let (lo, hi) = load_tables(t[i]);
                acc[i] = veorq_u8(acc[i], mul(lo, hi, x));
            }
        }
        for i in 0..R {
            // SAFETY: pos + 16 <= end <= outs[i].len() (checked above).
            unsafe { vst1q_u8(outp[i].add(pos), acc[i]) };
        }
        pos += 16;
    }
    pos
}

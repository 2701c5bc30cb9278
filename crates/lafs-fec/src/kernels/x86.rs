//! x86-64 kernels: GFNI affine on AVX-512 and AVX2, split-nibble PSHUFB on
//! AVX2.
//!
//! Multiplying a byte by a constant `c` in GF(2^8) is a linear map over
//! GF(2), i.e. an 8×8 bit matrix; `GF2P8AFFINEQB` applies such a matrix to
//! every byte of a vector in one instruction, whatever the field polynomial
//! (unlike `GF2P8MULB`, which is fixed to 0x11B). Without GFNI we use two
//! 16-entry `PSHUFB` lookups (low and high nibble).
//!
//! Each `*_mul_matrix` entry point splits the output rows into groups of at
//! most `MAX_ROWS_*` rows; a group is computed by a `group_*::<R>` function
//! that, for a strip of positions, keeps `R × 2` accumulators in registers,
//! loads each input vector once, and stores each output vector once. When
//! there is more than one group, positions are processed in tiles so that
//! the input strips of a tile are still in cache for the next group.
//!
//! Outputs totalling at least [`STREAM_MIN_OUTPUT`] bytes are written with
//! non-temporal (streaming) stores when all output slices share the same
//! alignment: such outputs do not fit in the private caches anyway, and
//! streaming avoids reading every destination line before overwriting it.

use core::arch::x86_64::*;

use super::scalar::mul_matrix_range;
use super::{row_groups, tile_width};
use crate::gf::{GFNI_MATRIX, NIBBLE};

/// Minimum total output size (bytes) for streaming stores. Measured on the
/// development machine (Xeon with AVX-512 and GFNI, 2 MiB L2 per core):
/// neutral for 128 KiB–512 KiB outputs, +30–50 % for outputs of 1 MiB and
/// more (3-of-10 encode and decode with 1 MiB segments). Smaller outputs
/// keep regular stores so that callers find them in cache.
const STREAM_MIN_OUTPUT: usize = 512 * 1024;

/// Checks the preconditions every `group_*` function relies on for the
/// in-bounds-ness of its raw loads and stores.
#[inline(always)]
fn check_group<T, const R: usize>(
    consts: &[[T; R]],
    inputs: &[&[u8]],
    outs: &[&mut [u8]],
    start: usize,
    end: usize,
    nt_align: Option<usize>,
) {
    assert!(!inputs.is_empty());
    assert_eq!(consts.len(), inputs.len());
    assert_eq!(outs.len(), R);
    assert!(start <= end);
    assert!(inputs.iter().all(|s| s.len() >= end));
    assert!(outs.iter().all(|s| s.len() >= end));
    if let Some(align) = nt_align {
        assert!(outs.iter().all(|o| {
            (o.as_ptr() as usize)
                .wrapping_add(start)
                .is_multiple_of(align)
        }));
    }
}

/// Constants of the rows `row0..row0 + r`, laid out input-major
/// (`flat[c * r + i]` belongs to input `c`, row `row0 + i`), so that
/// `flat.as_chunks::<R>()` yields one `[T; R]` per input.
fn group_consts<T>(
    coeffs: &[u8],
    k: usize,
    (row0, r): (usize, usize),
    f: impl Fn(u8) -> T,
) -> Vec<T> {
    (0..k)
        .flat_map(|c| (0..r).map(move |i| (c, i)))
        .map(|(c, i)| f(coeffs[(row0 + i) * k + c]))
        .collect()
}

/// Calls `$f::<R>` for the runtime row count `$r` (one of the listed
/// literals), passing the group constants `$consts` as `&[[T; R]]`.
macro_rules! with_rows {
    ($r:expr, [$($n:literal),*], $f:ident($consts:expr, $i:expr, $o:expr, $s:expr, $e:expr, $nt:expr)) => {
        match $r {
            $($n => $f::<$n>($consts.as_chunks::<$n>().0, $i, $o, $s, $e, $nt),)*
            _ => unreachable!("row groups never exceed the kernel's maximum"),
        }
    };
}

/// The position loop shared by all x86 kernels: decides whether to use
/// streaming stores, peels the unaligned head if so, and walks `tile`-wide
/// position ranges, calling `run(outputs, start, end, streaming)`. Returns
/// whether streaming stores were used (the caller then issues `SFENCE`).
#[inline(always)]
fn drive(
    outputs: &mut [&mut [u8]],
    tile: usize,
    mut run: impl FnMut(&mut [&mut [u8]], usize, usize, bool),
) -> bool {
    let len = outputs[0].len();
    let misalign = outputs[0].as_ptr() as usize % 64;
    let stream = len.saturating_mul(outputs.len()) >= STREAM_MIN_OUTPUT
        && outputs.iter().all(|o| o.as_ptr() as usize % 64 == misalign);
    let mut start = 0;
    if stream {
        start = ((64 - misalign) % 64).min(len);
        if start > 0 {
            run(outputs, 0, start, false);
        }
    }
    while start < len {
        let end = start.saturating_add(tile).min(len);
        run(outputs, start, end, stream);
        start = end;
    }
    stream
}

// ---------------------------------------------------------------------------
// GFNI + AVX-512

/// Rows per group for the AVX-512 kernel: 8 rows × 2 vectors = 16
/// accumulators + 4 inputs out of 32 zmm registers (the matrices are
/// broadcast straight from memory by the affine instructions).
const MAX_ROWS_512: usize = 8;

/// GFNI/AVX-512 implementation of [`super::Kernel::mul_matrix`]. The caller
/// has checked that all slices have the same non-zero length, that `inputs`
/// is non-empty and that `coeffs.len() == outputs.len() * inputs.len()`.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
pub(super) fn gfni_avx512_mul_matrix(coeffs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    let k = inputs.len();
    let groups = row_groups(outputs.len(), MAX_ROWS_512);
    let consts: Vec<Vec<u64>> = groups
        .iter()
        .map(|&g| group_consts(coeffs, k, g, |c| GFNI_MATRIX[c as usize]))
        .collect();
    let tile = tile_width(k, groups.len(), outputs[0].len());
    let streamed = drive(outputs, tile, |outputs, start, end, nt| {
        for (&(row0, r), m) in groups.iter().zip(&consts) {
            let outs = &mut outputs[row0..row0 + r];
            with_rows!(
                r,
                [1, 2, 3, 4, 5, 6, 7, 8],
                group_512(m, inputs, outs, start, end, nt)
            );
        }
    });
    if streamed {
        // Order the weakly-ordered streaming stores before anything the
        // caller does next (e.g. handing the buffers to another thread).
        _mm_sfence();
    }
}

/// Loads two consecutive 64-byte vectors at `p`.
///
/// # Safety
///
/// `p..p + 128` must be readable.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load2_512(p: *const u8) -> [__m512i; 2] {
    // SAFETY: the caller guarantees p..p + 128 is readable.
    unsafe {
        [
            _mm512_loadu_si512(p.cast()),
            _mm512_loadu_si512(p.add(64).cast()),
        ]
    }
}

/// `outs[i][start..end] = sum_c mats[c][i] · inputs[c][start..end]` for the
/// `R` rows of one group: 128 bytes per step, then masked 64-byte steps for
/// the tail. Inputs are consumed in pairs so that one `VPTERNLOGQ` adds two
/// products to an accumulator. With `nt`, the full 128-byte steps use
/// streaming stores, which requires `outs[i][start..]` to be 64-byte
/// aligned.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
fn group_512<const R: usize>(
    mats: &[[u64; R]],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
    nt: bool,
) {
    check_group(mats, inputs, outs, start, end, nt.then_some(64));
    let outp: [*mut u8; R] = core::array::from_fn(|i| outs[i].as_mut_ptr());
    let (first_in, rest_in) = (inputs[0], &inputs[1..]);
    let (first_m, rest_m) = (&mats[0], &mats[1..]);
    let pairs_in = rest_in.chunks_exact(2);
    let pairs_m = rest_m.chunks_exact(2);
    let (last_in, last_m) = (pairs_in.remainder(), pairs_m.remainder());
    let mul =
        |x: __m512i, m: u64| _mm512_gf2p8affine_epi64_epi8::<0>(x, _mm512_set1_epi64(m as i64));
    let xor3 = |a, b, c| _mm512_ternarylogic_epi64::<0x96>(a, b, c);

    let mut pos = start;
    while pos + 128 <= end {
        // SAFETY: pos + 128 <= end <= the length of every input (checked
        // above); the same holds for all loads of this step.
        let x = unsafe { load2_512(first_in.as_ptr().add(pos)) };
        let mut acc: [[__m512i; 2]; R] =
            core::array::from_fn(|i| [mul(x[0], first_m[i]), mul(x[1], first_m[i])]);
        for (inp, m) in pairs_in.clone().zip(pairs_m.clone()) {
            // SAFETY: see above.
            let (a, b) = unsafe {
                (
                    load2_512(inp[0].as_ptr().add(pos)),
                    load2_512(inp[1].as_ptr().add(pos)),
                )
            };
            for i in 0..R {
                for v in 0..2 {
                    acc[i][v] = xor3(acc[i][v], mul(a[v], m[0][i]), mul(b[v], m[1][i]));
                }
            }
        }
        if let ([inp], [m]) = (last_in, last_m) {
            // SAFETY: see above.
            let a = unsafe { load2_512(inp.as_ptr().add(pos)) };
            for i in 0..R {
                for v in 0..2 {
                    acc[i][v] = _mm512_xor_si512(acc[i][v], mul(a[v], m[i]));
                }
            }
        }
        for i in 0..R {
            // SAFETY: pos + 128 <= end <= outs[i].len() (checked above), and
            // outp[i] points into the exclusively borrowed outs[i]. With nt,
            // outp[i] + start is 64-byte aligned (checked above) and
            // pos - start is a multiple of 128, so the streaming stores are
            // aligned as they must be.
            unsafe {
                let p = outp[i].add(pos);
                if nt {
                    _mm512_stream_si512(p.cast(), acc[i][0]);
                    _mm512_stream_si512(p.add(64).cast(), acc[i][1]);
                } else {
                    _mm512_storeu_si512(p.cast(), acc[i][0]);
                    _mm512_storeu_si512(p.add(64).cast(), acc[i][1]);
                }
            }
        }
        pos += 128;
    }
    // At most two more (possibly partial) 64-byte vectors, with masking.
    while pos < end {
        let n = (end - pos).min(64);
        let mask: __mmask64 = if n == 64 { !0 } else { (1u64 << n) - 1 };
        let load = |inp: &[u8]| {
            // SAFETY: the masked load only reads bytes pos..pos + n, and
            // pos + n <= end <= inp.len(); masked-off bytes are not accessed
            // (AVX-512 masked loads suppress faults on them).
            unsafe { _mm512_maskz_loadu_epi8(mask, inp.as_ptr().add(pos).cast()) }
        };
        let x = load(first_in);
        let mut acc: [__m512i; R] = core::array::from_fn(|i| mul(x, first_m[i]));
        for (inp, m) in rest_in.iter().zip(rest_m) {
            let x = load(inp);
            for i in 0..R {
                acc[i] = _mm512_xor_si512(acc[i], mul(x, m[i]));
            }
        }
        for i in 0..R {
            // SAFETY: the masked store only writes bytes pos..pos + n of
            // outs[i], and pos + n <= end <= outs[i].len().
            unsafe { _mm512_mask_storeu_epi8(outp[i].add(pos).cast(), mask, acc[i]) };
        }
        pos += n;
    }
}

// ---------------------------------------------------------------------------
// 256-bit kernels

/// Rows per group for the 256-bit kernels: 4 rows × 2 vectors = 8
/// accumulators, plus inputs and constants, within 16 ymm registers.
const MAX_ROWS_256: usize = 4;

/// Loads two consecutive 32-byte vectors at `p`.
///
/// # Safety
///
/// `p..p + 64` must be readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load2_256(p: *const u8) -> [__m256i; 2] {
    // SAFETY: the caller guarantees p..p + 64 is readable.
    unsafe {
        [
            _mm256_loadu_si256(p.cast()),
            _mm256_loadu_si256(p.add(32).cast()),
        ]
    }
}

/// Stores `v` at `p`, streaming (then `p` must be 32-byte aligned) or not.
///
/// # Safety
///
/// `p..p + 32` must be writable and not aliased; with `nt`, `p` must be
/// 32-byte aligned.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_256(p: *mut u8, v: __m256i, nt: bool) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if nt {
            _mm256_stream_si256(p.cast(), v);
        } else {
            _mm256_storeu_si256(p.cast(), v);
        }
    }
}

/// Shared body of the two 256-bit kernels: groups, tiles, streaming, and
/// the scalar tail for the last `< 32` bytes of each row.
macro_rules! mul_matrix_256 {
    ($coeffs:ident, $inputs:ident, $outputs:ident, $group:ident, $make_const:expr) => {{
        let k = $inputs.len();
        let groups = row_groups($outputs.len(), MAX_ROWS_256);
        let consts: Vec<Vec<_>> = groups
            .iter()
            .map(|&g| group_consts($coeffs, k, g, $make_const))
            .collect();
        let tile = tile_width(k, groups.len(), $outputs[0].len());
        let streamed = drive($outputs, tile, |outputs, start, end, nt| {
            for (&(row0, r), m) in groups.iter().zip(&consts) {
                let outs = &mut outputs[row0..row0 + r];
                let done = with_rows!(r, [1, 2, 3, 4], $group(m, $inputs, outs, start, end, nt));
                let rows = &$coeffs[row0 * k..(row0 + r) * k];
                mul_matrix_range(rows, $inputs, outs, done, end);
            }
        });
        if streamed {
            // Order the weakly-ordered streaming stores before anything the
            // caller does next (e.g. handing the buffers to another thread).
            _mm_sfence();
        }
    }};
}

// ---------------------------------------------------------------------------
// GFNI + AVX2

/// GFNI/AVX2 implementation of [`super::Kernel::mul_matrix`]; same contract
/// as [`gfni_avx512_mul_matrix`].
#[target_feature(enable = "avx2,gfni")]
pub(super) fn gfni_avx2_mul_matrix(coeffs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    // Matrices pre-broadcast to 32 bytes, so that the affine instructions
    // can take them as memory operands (VEX has no embedded broadcast).
    mul_matrix_256!(
        coeffs,
        inputs,
        outputs,
        group_gfni_256,
        |c| [GFNI_MATRIX[c as usize]; 4]
    )
}

/// Like [`group_512`] with 256-bit vectors, 64 bytes per step then one
/// 32-byte step; returns the position where it stopped (the caller handles
/// the remaining `< 32` bytes with scalar code).
#[target_feature(enable = "avx2,gfni")]
fn group_gfni_256<const R: usize>(
    mats: &[[[u64; 4]; R]],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
    nt: bool,
) -> usize {
    check_group(mats, inputs, outs, start, end, nt.then_some(32));
    let outp: [*mut u8; R] = core::array::from_fn(|i| outs[i].as_mut_ptr());
    let (first_in, rest_in) = (inputs[0], &inputs[1..]);
    let (first_m, rest_m) = (&mats[0], &mats[1..]);
    let mul = |x: __m256i, m: &[u64; 4]| {
        // SAFETY: a 32-byte load from a 32-byte array.
        let m = unsafe { _mm256_loadu_si256(m.as_ptr().cast()) };
        _mm256_gf2p8affine_epi64_epi8::<0>(x, m)
    };

    let mut pos = start;
    while pos + 64 <= end {
        // SAFETY: pos + 64 <= end <= first_in.len() (checked above).
        let x = unsafe { load2_256(first_in.as_ptr().add(pos)) };
        let mut acc: [[__m256i; 2]; R] =
            core::array::from_fn(|i| [mul(x[0], &first_m[i]), mul(x[1], &first_m[i])]);
        for (inp, m) in rest_in.iter().zip(rest_m) {
            // SAFETY: pos + 64 <= end <= inp.len() (checked above).
            let x = unsafe { load2_256(inp.as_ptr().add(pos)) };
            for i in 0..R {
                for v in 0..2 {
                    acc[i][v] = _mm256_xor_si256(acc[i][v], mul(x[v], &m[i]));
                }
            }
        }
        for i in 0..R {
            // SAFETY: pos + 64 <= end <= outs[i].len() (checked above);
            // outp[i] points into the exclusively borrowed outs[i]; with nt,
            // outp[i] + start is 32-byte aligned (checked above) and
            // pos - start is a multiple of 64.
            unsafe {
                store_256(outp[i].add(pos), acc[i][0], nt);
                store_256(outp[i].add(pos + 32), acc[i][1], nt);
            }
        }
        pos += 64;
    }
    if pos + 32 <= end {
        // SAFETY: pos + 32 <= end <= first_in.len() (checked above).
        let x = unsafe { _mm256_loadu_si256(first_in.as_ptr().add(pos).cast()) };
        let mut acc: [__m256i; R] = core::array::from_fn(|i| mul(x, &first_m[i]));
        for (inp, m) in rest_in.iter().zip(rest_m) {
            // SAFETY: pos + 32 <= end <= inp.len() (checked above).
            let x = unsafe { _mm256_loadu_si256(inp.as_ptr().add(pos).cast()) };
            for i in 0..R {
                acc[i] = _mm256_xor_si256(acc[i], mul(x, &m[i]));
            }
        }
        for i in 0..R {
            // SAFETY: as for the 64-byte steps, with pos + 32 <= end.
            unsafe { store_256(outp[i].add(pos), acc[i], nt) };
        }
        pos += 32;
    }
    pos
}

// ---------------------------------------------------------------------------
// AVX2 split-nibble PSHUFB

/// AVX2 (PSHUFB) implementation of [`super::Kernel::mul_matrix`]; same
/// contract as [`gfni_avx512_mul_matrix`].
#[target_feature(enable = "avx2")]
pub(super) fn avx2_mul_matrix(coeffs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    mul_matrix_256!(coeffs, inputs, outputs, group_avx2, |c| NIBBLE[c as usize])
}

/// Loads the low- and high-nibble tables of one constant, each broadcast to
/// both 128-bit lanes (PSHUFB looks up within lanes).
#[inline]
#[target_feature(enable = "avx2")]
fn nibble_tables(t: &[u8; 32]) -> (__m256i, __m256i) {
    // SAFETY: both 16-byte loads are within the 32-byte array `t`.
    unsafe {
        let p = t.as_ptr();
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(16).cast())),
        )
    }
}

/// Nibbles of every byte of `x`: `(x & 15, x >> 4)`.
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles(x: __m256i) -> (__m256i, __m256i) {
    let mask = _mm256_set1_epi8(0x0f);
    (
        _mm256_and_si256(x, mask),
        _mm256_and_si256(_mm256_srli_epi16::<4>(x), mask),
    )
}

/// Split-nibble product of every byte by the constant whose tables are
/// `(lo, hi)`, given the byte's nibbles `(xl, xh)`.
#[inline]
#[target_feature(enable = "avx2")]
fn nibble_mul((lo, hi): (__m256i, __m256i), (xl, xh): (__m256i, __m256i)) -> __m256i {
    _mm256_xor_si256(_mm256_shuffle_epi8(lo, xl), _mm256_shuffle_epi8(hi, xh))
}

/// PSHUFB analogue of [`group_gfni_256`]; returns where it stopped.
#[target_feature(enable = "avx2")]
fn group_avx2<const R: usize>(
    tabs: &[[[u8; 32]; R]],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
    nt: bool,
) -> usize {
    check_group(tabs, inputs, outs, start, end, nt.then_some(32));
    let outp: [*mut u8; R] = core::array::from_fn(|i| outs[i].as_mut_ptr());

    let mut pos = start;
    while pos + 64 <= end {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for (inp, t) in inputs.iter().zip(tabs) {
            // SAFETY: pos + 64 <= end <= inp.len() (checked above).
            let x = unsafe { load2_256(inp.as_ptr().add(pos)) };
            let x = [nibbles(x[0]), nibbles(x[1])];
            for i in 0..R {
                let tab = nibble_tables(&t[i]);
                for v in 0..2 {
                    acc[i][v] = _mm256_xor_si256(acc[i][v], nibble_mul(tab, x[v]));
                }
            }
        }
        for i in 0..R {
            // SAFETY: pos + 64 <= end <= outs[i].len() (checked above);
            // outp[i] points into the exclusively borrowed outs[i]; with nt,
            // outp[i] + start is 32-byte aligned (checked above) and
            // pos - start is a multiple of 64.
            unsafe {
                store_256(outp[i].add(pos), acc[i][0], nt);
                store_256(outp[i].add(pos + 32), acc[i][1], nt);
            }
        }
        pos += 64;
    }
    if pos + 32 <= end {
        let mut acc = [_mm256_setzero_si256(); R];
        for (inp, t) in inputs.iter().zip(tabs) {
            // SAFETY: pos + 32 <= end <= inp.len() (checked above).
            let x = nibbles(unsafe { _mm256_loadu_si256(inp.as_ptr().add(pos).cast()) });
            for i in 0..R {
                acc[i] = _mm256_xor_si256(acc[i], nibble_mul(nibble_tables(&t[i]), x));
            }
        }
        for i in 0..R {
            // SAFETY: as for the 64-byte steps, with pos + 32 <= end.
            unsafe { store_256(outp[i].add(pos), acc[i], nt) };
        }
        pos += 32;
    }
    pos
}

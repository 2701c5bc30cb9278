//! x86-64 kernels: GFNI affine on AVX-512 and AVX2, split-nibble PSHUFB on
//! AVX2.
//!
//! Multiplying a byte by a constant `c` in GF(2^8) is a linear map over
//! GF(2), i.e. an 8×8 bit matrix; `GF2P8AFFINEQB` applies such a matrix to
//! every byte of a vector in one instruction (independently of the field
//! polynomial, unlike `GF2P8MULB`, which is fixed to 0x11B). Without GFNI we
//! use two 16-entry `PSHUFB` lookups (low and high nibble).
//!
//! Each `*_mul_matrix` entry point splits the output rows into groups of at
//! most `MAX_ROWS` rows; a group is computed by a `group_*::<R>` function
//! that, for a strip of positions, keeps `R × STRIP` accumulators in
//! registers, loads each input vector once, and stores each output vector
//! once. When there is more than one group, positions are processed in
//! tiles so that the input strips of a tile are still in cache for the next
//! group.

use core::arch::x86_64::*;

use super::scalar::mul_matrix_range;
use super::{row_groups, tile_width};
use crate::gf::{GFNI_MATRIX, NIBBLE};

/// Checks the preconditions every `group_*` function relies on for the
/// in-bounds-ness of its raw loads and stores.
#[inline(always)]
fn check_group<T, const R: usize>(
    consts: &[[T; R]],
    inputs: &[&[u8]],
    outs: &[&mut [u8]],
    start: usize,
    end: usize,
) {
    assert!(!inputs.is_empty());
    assert_eq!(consts.len(), inputs.len());
    assert_eq!(outs.len(), R);
    assert!(start <= end);
    assert!(inputs.iter().all(|s| s.len() >= end));
    assert!(outs.iter().all(|s| s.len() >= end));
}

/// Per-group constants, laid out input-major: `consts[c][i]` is the
/// constant for input `c` and row `row0 + i` of the group.
fn group_consts<T: Copy, const R: usize>(
    coeffs: &[u8],
    k: usize,
    row0: usize,
    table: &[T; 256],
) -> Vec<[T; R]> {
    (0..k)
        .map(|c| core::array::from_fn(|i| table[coeffs[(row0 + i) * k + c] as usize]))
        .collect()
}

/// Dispatches on the group size `$r` (a runtime value in `1..=8`) to the
/// monomorphised `$f::<R>`, building that group's constants from `$table`.
/// Expands to an expression evaluating to `Vec<Group>`.
macro_rules! build_groups {
    ($groups:expr, $coeffs:expr, $k:expr, $table:expr, [$($n:literal => $variant:ident),*]) => {
        $groups
            .iter()
            .map(|&(row0, r)| match r {
                $($n => Group::$variant(group_consts::<_, $n>($coeffs, $k, row0, $table)),)*
                _ => unreachable!("row groups are at most MAX_ROWS"),
            })
            .collect::<Vec<_>>()
    };
}

// ---------------------------------------------------------------------------
// GFNI + AVX-512

/// Rows per group for the AVX-512 kernel: 8 rows × 2 vectors = 16
/// accumulators + 2 inputs out of 32 zmm registers (the matrices are
/// broadcast straight from memory).
const MAX_ROWS_512: usize = 8;

enum Group512 {
    R1(Vec<[u64; 1]>),
    R2(Vec<[u64; 2]>),
    R3(Vec<[u64; 3]>),
    R4(Vec<[u64; 4]>),
    R5(Vec<[u64; 5]>),
    R6(Vec<[u64; 6]>),
    R7(Vec<[u64; 7]>),
    R8(Vec<[u64; 8]>),
}

/// GFNI/AVX-512 implementation of [`super::Kernel::mul_matrix`]. The caller
/// has checked that all slices have the same non-zero length, that `inputs`
/// is non-empty and `coeffs.len() == outputs.len() * inputs.len()`.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
pub(super) fn gfni_avx512_mul_matrix(coeffs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    use Group512 as Group;
    let k = inputs.len();
    let len = outputs[0].len();
    let groups = row_groups(outputs.len(), MAX_ROWS_512);
    let consts = build_groups!(groups, coeffs, k, &GFNI_MATRIX,
        [1 => R1, 2 => R2, 3 => R3, 4 => R4, 5 => R5, 6 => R6, 7 => R7, 8 => R8]);
    let tile = tile_width(k, groups.len(), len);
    // Streaming (non-temporal) stores for outputs too big to stay in cache,
    // if every output has the same alignment: the main loop then starts at
    // the first 64-byte-aligned output position.
    let misalign = outputs[0].as_ptr() as usize % 64;
    let stream = len * outputs.len() >= stream_threshold()
        && outputs.iter().all(|o| o.as_ptr() as usize % 64 == misalign);
    let mut start = 0;
    if stream {
        let head = ((64 - misalign) % 64).min(len);
        run_groups_512::<false>(&groups, &consts, inputs, outputs, 0, head);
        start = head;
    }
    while start < len {
        let end = (start + tile).min(len);
        if stream {
            run_groups_512::<true>(&groups, &consts, inputs, outputs, start, end);
        } else {
            run_groups_512::<false>(&groups, &consts, inputs, outputs, start, end);
        }
        start = end;
    }
    if stream {
        // Order the weakly-ordered streaming stores before anything the
        // caller does next (e.g. publishing the buffers to another thread).
        _mm_sfence();
    }
}

fn stream_threshold() -> usize {
    static T: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("LAFS_FEC_NT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX)
    })
}

#[target_feature(enable = "avx512f,avx512bw,gfni")]
fn run_groups_512<const NT: bool>(
    groups: &[(usize, usize)],
    consts: &[Group512],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    for (&(row0, r), g) in groups.iter().zip(consts) {
        let outs = &mut outputs[row0..row0 + r];
        match g {
            Group512::R1(m) => group_512::<1, NT>(m, inputs, outs, start, end),
            Group512::R2(m) => group_512::<2, NT>(m, inputs, outs, start, end),
            Group512::R3(m) => group_512::<3, NT>(m, inputs, outs, start, end),
            Group512::R4(m) => group_512::<4, NT>(m, inputs, outs, start, end),
            Group512::R5(m) => group_512::<5, NT>(m, inputs, outs, start, end),
            Group512::R6(m) => group_512::<6, NT>(m, inputs, outs, start, end),
            Group512::R7(m) => group_512::<7, NT>(m, inputs, outs, start, end),
            Group512::R8(m) => group_512::<8, NT>(m, inputs, outs, start, end),
        }
    }
}

/// `outs[i][start..end] = sum_c mats[c][i] · inputs[c][start..end]` for the
/// `R` rows of one group, 128 bytes per step, masked loads/stores for the
/// tail.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
fn group_512<const R: usize, const NT: bool>(
    mats: &[[u64; R]],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    check_group(mats, inputs, outs, start, end);
    let outp: [*mut u8; R] = core::array::from_fn(|i| outs[i].as_mut_ptr());
    let (first_in, rest_in) = (inputs[0], &inputs[1..]);
    let (first_m, rest_m) = (&mats[0], &mats[1..]);
    let mul =
        |x: __m512i, m: u64| _mm512_gf2p8affine_epi64_epi8::<0>(x, _mm512_set1_epi64(m as i64));

    let mut pos = start;
    while pos + 128 <= end {
        // SAFETY: pos + 128 <= end <= first_in.len() (checked above).
        let (x0, x1) = unsafe {
            let p = first_in.as_ptr().add(pos);
            (
                _mm512_loadu_si512(p.cast()),
                _mm512_loadu_si512(p.add(64).cast()),
            )
        };
        let mut acc: [[__m512i; 2]; R] =
            core::array::from_fn(|i| [mul(x0, first_m[i]), mul(x1, first_m[i])]);
        for (inp, m) in rest_in.iter().zip(rest_m) {
            // SAFETY: pos + 128 <= end <= inp.len() (checked above).
            let (x0, x1) = unsafe {
                let p = inp.as_ptr().add(pos);
                (
                    _mm512_loadu_si512(p.cast()),
                    _mm512_loadu_si512(p.add(64).cast()),
                )
            };
            for i in 0..R {
                acc[i][0] = _mm512_xor_si512(acc[i][0], mul(x0, m[i]));
                acc[i][1] = _mm512_xor_si512(acc[i][1], mul(x1, m[i]));
            }
        }
        for i in 0..R {
            // SAFETY: pos + 128 <= end <= outs[i].len() (checked above), and
            // outp[i] points into the exclusively borrowed outs[i].
            unsafe {
                let p = outp[i].add(pos);
                if NT {
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
        // SAFETY: the masked load only touches bytes pos..pos + n, and
        // pos + n <= end <= first_in.len(); masked-off bytes are not accessed
        // (AVX-512 masked loads suppress faults on them).
        let x = unsafe { _mm512_maskz_loadu_epi8(mask, first_in.as_ptr().add(pos).cast()) };
        let mut acc: [__m512i; R] = core::array::from_fn(|i| mul(x, first_m[i]));
        for (inp, m) in rest_in.iter().zip(rest_m) {
            // SAFETY: as above, bytes pos..pos + n of inp, within inp.len().
            let x = unsafe { _mm512_maskz_loadu_epi8(mask, inp.as_ptr().add(pos).cast()) };
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
// GFNI + AVX2

/// Rows per group for the 256-bit kernels: 4 rows × 2 vectors = 8
/// accumulators, plus inputs and constants, within 16 ymm registers.
const MAX_ROWS_256: usize = 4;

enum Group256<T> {
    R1(Vec<[T; 1]>),
    R2(Vec<[T; 2]>),
    R3(Vec<[T; 3]>),
    R4(Vec<[T; 4]>),
}

/// GFNI/AVX2 implementation of [`super::Kernel::mul_matrix`]; same contract
/// as [`gfni_avx512_mul_matrix`].
#[target_feature(enable = "avx2,gfni")]
pub(super) fn gfni_avx2_mul_matrix(coeffs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    type Group = Group256<u64>;
    let k = inputs.len();
    let len = outputs[0].len();
    let groups = row_groups(outputs.len(), MAX_ROWS_256);
    let consts =
        build_groups!(groups, coeffs, k, &GFNI_MATRIX, [1 => R1, 2 => R2, 3 => R3, 4 => R4]);
    let tile = tile_width(k, groups.len(), len);
    let mut start = 0;
    while start < len {
        let end = (start + tile).min(len);
        for (&(row0, r), g) in groups.iter().zip(&consts) {
            let rows = &coeffs[row0 * k..(row0 + r) * k];
            let outs = &mut outputs[row0..row0 + r];
            let done = match g {
                Group::R1(m) => group_gfni_256(m, inputs, outs, start, end),
                Group::R2(m) => group_gfni_256(m, inputs, outs, start, end),
                Group::R3(m) => group_gfni_256(m, inputs, outs, start, end),
                Group::R4(m) => group_gfni_256(m, inputs, outs, start, end),
            };
            mul_matrix_range(rows, inputs, outs, done, end);
        }
        start = end;
    }
}

/// Like [`group_512`] with 256-bit vectors, 64 bytes per step then one
/// 32-byte step; returns the position where it stopped (the caller handles
/// the remaining `< 32` bytes with scalar code).
#[target_feature(enable = "avx2,gfni")]
fn group_gfni_256<const R: usize>(
    mats: &[[u64; R]],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) -> usize {
    check_group(mats, inputs, outs, start, end);
    let outp: [*mut u8; R] = core::array::from_fn(|i| outs[i].as_mut_ptr());
    let (first_in, rest_in) = (inputs[0], &inputs[1..]);
    let (first_m, rest_m) = (&mats[0], &mats[1..]);
    let mul =
        |x: __m256i, m: u64| _mm256_gf2p8affine_epi64_epi8::<0>(x, _mm256_set1_epi64x(m as i64));

    let mut pos = start;
    while pos + 64 <= end {
        // SAFETY: pos + 64 <= end <= first_in.len() (checked above).
        let (x0, x1) = unsafe {
            let p = first_in.as_ptr().add(pos);
            (
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.add(32).cast()),
            )
        };
        let mut acc: [[__m256i; 2]; R] =
            core::array::from_fn(|i| [mul(x0, first_m[i]), mul(x1, first_m[i])]);
        for (inp, m) in rest_in.iter().zip(rest_m) {
            // SAFETY: pos + 64 <= end <= inp.len() (checked above).
            let (x0, x1) = unsafe {
                let p = inp.as_ptr().add(pos);
                (
                    _mm256_loadu_si256(p.cast()),
                    _mm256_loadu_si256(p.add(32).cast()),
                )
            };
            for i in 0..R {
                acc[i][0] = _mm256_xor_si256(acc[i][0], mul(x0, m[i]));
                acc[i][1] = _mm256_xor_si256(acc[i][1], mul(x1, m[i]));
            }
        }
        for i in 0..R {
            // SAFETY: pos + 64 <= end <= outs[i].len() (checked above), and
            // outp[i] points into the exclusively borrowed outs[i].
            unsafe {
                let p = outp[i].add(pos);
                _mm256_storeu_si256(p.cast(), acc[i][0]);
                _mm256_storeu_si256(p.add(32).cast(), acc[i][1]);
            }
        }
        pos += 64;
    }
    if pos + 32 <= end {
        // SAFETY: pos + 32 <= end <= first_in.len() (checked above).
        let x = unsafe { _mm256_loadu_si256(first_in.as_ptr().add(pos).cast()) };
        let mut acc: [__m256i; R] = core::array::from_fn(|i| mul(x, first_m[i]));
        for (inp, m) in rest_in.iter().zip(rest_m) {
            // SAFETY: pos + 32 <= end <= inp.len() (checked above).
            let x = unsafe { _mm256_loadu_si256(inp.as_ptr().add(pos).cast()) };
            for i in 0..R {
                acc[i] = _mm256_xor_si256(acc[i], mul(x, m[i]));
            }
        }
        for i in 0..R {
            // SAFETY: pos + 32 <= end <= outs[i].len() (checked above).
            unsafe { _mm256_storeu_si256(outp[i].add(pos).cast(), acc[i]) };
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
    type Group = Group256<[u8; 32]>;
    let k = inputs.len();
    let len = outputs[0].len();
    let groups = row_groups(outputs.len(), MAX_ROWS_256);
    let consts = build_groups!(groups, coeffs, k, &NIBBLE, [1 => R1, 2 => R2, 3 => R3, 4 => R4]);
    let tile = tile_width(k, groups.len(), len);
    let mut start = 0;
    while start < len {
        let end = (start + tile).min(len);
        for (&(row0, r), g) in groups.iter().zip(&consts) {
            let rows = &coeffs[row0 * k..(row0 + r) * k];
            let outs = &mut outputs[row0..row0 + r];
            let done = match g {
                Group::R1(t) => group_avx2(t, inputs, outs, start, end),
                Group::R2(t) => group_avx2(t, inputs, outs, start, end),
                Group::R3(t) => group_avx2(t, inputs, outs, start, end),
                Group::R4(t) => group_avx2(t, inputs, outs, start, end),
            };
            mul_matrix_range(rows, inputs, outs, done, end);
        }
        start = end;
    }
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

/// Split-nibble product of every byte of `x` by the constant whose tables
/// are `(lo, hi)`, given `x`'s nibbles `xl = x & 15`, `xh = x >> 4`.
#[inline]
#[target_feature(enable = "avx2")]
fn nibble_mul(lo: __m256i, hi: __m256i, xl: __m256i, xh: __m256i) -> __m256i {
    _mm256_xor_si256(_mm256_shuffle_epi8(lo, xl), _mm256_shuffle_epi8(hi, xh))
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

/// PSHUFB analogue of [`group_gfni_256`]; returns where it stopped.
#[target_feature(enable = "avx2")]
fn group_avx2<const R: usize>(
    tabs: &[[[u8; 32]; R]],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) -> usize {
    check_group(tabs, inputs, outs, start, end);
    let outp: [*mut u8; R] = core::array::from_fn(|i| outs[i].as_mut_ptr());

    let mut pos = start;
    while pos + 64 <= end {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for (inp, t) in inputs.iter().zip(tabs) {
            // SAFETY: pos + 64 <= end <= inp.len() (checked above).
            let (x0, x1) = unsafe {
                let p = inp.as_ptr().add(pos);
                (
                    _mm256_loadu_si256(p.cast()),
                    _mm256_loadu_si256(p.add(32).cast()),
                )
            };
            let (l0, h0) = nibbles(x0);
            let (l1, h1) = nibbles(x1);
            for i in 0..R {
                let (lo, hi) = nibble_tables(&t[i]);
                acc[i][0] = _mm256_xor_si256(acc[i][0], nibble_mul(lo, hi, l0, h0));
                acc[i][1] = _mm256_xor_si256(acc[i][1], nibble_mul(lo, hi, l1, h1));
            }
        }
        for i in 0..R {
            // SAFETY: pos + 64 <= end <= outs[i].len() (checked above), and
            // outp[i] points into the exclusively borrowed outs[i].
            unsafe {
                let p = outp[i].add(pos);
                _mm256_storeu_si256(p.cast(), acc[i][0]);
                _mm256_storeu_si256(p.add(32).cast(), acc[i][1]);
            }
        }
        pos += 64;
    }
    if pos + 32 <= end {
        let mut acc = [_mm256_setzero_si256(); R];
        for (inp, t) in inputs.iter().zip(tabs) {
            // SAFETY: pos + 32 <= end <= inp.len() (checked above).
            let x = unsafe { _mm256_loadu_si256(inp.as_ptr().add(pos).cast()) };
            let (l, h) = nibbles(x);
            for i in 0..R {
                let (lo, hi) = nibble_tables(&t[i]);
                acc[i] = _mm256_xor_si256(acc[i], nibble_mul(lo, hi, l, h));
            }
        }
        for i in 0..R {
            // SAFETY: pos + 32 <= end <= outs[i].len() (checked above).
            unsafe { _mm256_storeu_si256(outp[i].add(pos).cast(), acc[i]) };
        }
        pos += 32;
    }
    pos
}

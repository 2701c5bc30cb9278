//! Bulk GF(2^8) matrix × vectors kernels, selected at run time.
//!
//! # Unsafe policy
//!
//! This module tree is the **only** place in the crate where `unsafe` is
//! allowed. It is needed for two things, and nothing else:
//!
//! 1. calling `#[target_feature]` functions (SIMD code compiled for CPU
//!    features that the crate's baseline target does not guarantee) — every
//!    such call site is guarded by a [`Kernel`] value, which can only be
//!    constructed after run-time feature detection succeeded;
//! 2. the raw-pointer SIMD loads and stores of `core::arch` — every one of
//!    them is preceded by explicit bounds checks (`assert!`s at the top of the
//!    function that performs them) that make the accessed range provably
//!    in bounds; for streaming (non-temporal) stores, which must be aligned,
//!    the alignment is asserted the same way. The only raw pointers are
//!    derived from the slices being processed (or from small constant
//!    tables), and output pointers only from `&mut` slices, so nothing else
//!    can alias them.
//!
//! Nothing else in the crate is `unsafe`: argument validation, matrix
//! construction and inversion, and the scalar kernel are safe code.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment
//! (`clippy::undocumented_unsafe_blocks` is enabled here).
//!
//! # Testing
//!
//! Each SIMD kernel is compared byte-for-byte against the portable scalar
//! kernel *and* against an independent naive reference (slow bit-by-bit
//! multiplication) by property tests over random matrices, random `k`/`n`
//! and lengths chosen to hit every vector-width boundary and tail path
//! (0, 1, 31, 32, 33, 63, 64, 65, 127, 128, 129, odd sizes, and lengths
//! spanning several cache tiles, with outputs at every alignment so that
//! the streaming-store path and its unaligned head are covered). See
//! `tests/kernels.rs`, `tests/known_answers.rs` and `tests/zfec_python.rs`.
//! The NEON kernel is compiled only on aarch64; it was tested under QEMU
//! user-mode emulation, not on real hardware (see its module docs).
//!
//! # The operation
//!
//! All kernels compute `out[r] = sum_c coeffs[r * k + c] * inputs[c]`
//! (byte-wise GF(2^8) products, XOR sums) for every output row `r`, where
//! `k = inputs.len()`. Encoding and decoding are both expressed this way.
//! SIMD kernels process a group of output rows at a time, keep one
//! accumulator register per (row, vector) for a strip of positions, read
//! each input vector once per group, and store each output vector once.

#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub(crate) mod scalar;

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon;

/// The implementation behind a [`Kernel`]. Private: values of the SIMD
/// variants are only ever created by [`Kernel::from_impl`] after the CPU
/// features were detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    GfniAvx2,
    #[cfg(target_arch = "x86_64")]
    GfniAvx512,
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    Neon,
}

/// All kernels compiled into this build, best first.
const ALL: &[Impl] = &[
    #[cfg(target_arch = "x86_64")]
    Impl::GfniAvx512,
    #[cfg(target_arch = "x86_64")]
    Impl::GfniAvx2,
    #[cfg(target_arch = "x86_64")]
    Impl::Avx2,
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    Impl::Neon,
    Impl::Scalar,
];

/// Names of every kernel this crate knows about on any architecture (so an
/// unavailable-but-known name can be reported as such).
const KNOWN_NAMES: &[&str] = &["gfni-avx512", "gfni-avx2", "avx2", "neon", "scalar"];

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Impl::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Impl::GfniAvx2 => "gfni-avx2",
            #[cfg(target_arch = "x86_64")]
            Impl::GfniAvx512 => "gfni-avx512",
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Impl::Neon => "neon",
        }
    }

    /// Run-time CPU feature detection for this implementation.
    fn detected(self) -> bool {
        match self {
            Impl::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Impl::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Impl::GfniAvx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("gfni")
            }
            #[cfg(target_arch = "x86_64")]
            Impl::GfniAvx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("gfni")
            }
            // NEON is part of the compile-time target features (see the cfg).
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Impl::Neon => true,
        }
    }
}

/// A kernel that is known to be runnable on this CPU.
///
/// Invariant: `self.0.detected()` returned `true` when this value was made.
/// The field is private to this module, so the only way to obtain a
/// `Kernel` is through the constructors below, which all check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kernel(Impl);

/// Why [`Kernel::by_name`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// Not a kernel name this crate knows.
    Unknown,
    /// A known kernel that is not compiled in or not supported by this CPU.
    Unavailable(&'static str),
}

impl Kernel {
    fn from_impl(imp: Impl) -> Option<Kernel> {
        imp.detected().then_some(Kernel(imp))
    }

    /// The portable scalar kernel (always available).
    pub(crate) fn scalar() -> Kernel {
        Kernel(Impl::Scalar)
    }

    /// Every kernel usable on this CPU, best first (always ends with scalar).
    pub(crate) fn available() -> Vec<Kernel> {
        ALL.iter().copied().filter_map(Kernel::from_impl).collect()
    }

    /// The best kernel usable on this CPU.
    pub(crate) fn best() -> Kernel {
        Kernel::available()
            .into_iter()
            .next()
            .unwrap_or(Kernel::scalar())
    }

    /// Looks a kernel up by its name.
    pub(crate) fn by_name(name: &str) -> Result<Kernel, LookupError> {
        if let Some(imp) = ALL.iter().copied().find(|i| i.name() == name) {
            return Kernel::from_impl(imp).ok_or(LookupError::Unavailable(imp.name()));
        }
        match KNOWN_NAMES.iter().find(|&&n| n == name) {
            Some(&n) => Err(LookupError::Unavailable(n)),
            None => Err(LookupError::Unknown),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        self.0.name()
    }

    /// Computes `outputs[r] = sum_c coeffs[r * k + c] * inputs[c]` with
    /// `k = inputs.len()`.
    ///
    /// # Panics
    ///
    /// If `coeffs.len() != outputs.len() * inputs.len()` or the slices do
    /// not all have the same length. (The public API validates its
    /// arguments first, so these are internal invariant checks.)
    pub(crate) fn mul_matrix(self, coeffs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        assert_eq!(coeffs.len(), outputs.len() * inputs.len());
        let Some(len) = outputs.first().map(|o| o.len()) else {
            return;
        };
        assert!(inputs.iter().all(|s| s.len() == len));
        assert!(outputs.iter().all(|s| s.len() == len));
        if inputs.is_empty() {
            outputs.iter_mut().for_each(|o| o.fill(0));
            return;
        }
        if len == 0 {
            return;
        }
        match self.0 {
            Impl::Scalar => scalar::mul_matrix(coeffs, inputs, outputs),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel` values are only created after
            // `Impl::detected` confirmed AVX2 on this CPU.
            Impl::Avx2 => unsafe { x86::avx2_mul_matrix(coeffs, inputs, outputs) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel` values are only created after
            // `Impl::detected` confirmed AVX2 and GFNI on this CPU.
            Impl::GfniAvx2 => unsafe { x86::gfni_avx2_mul_matrix(coeffs, inputs, outputs) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel` values are only created after
            // `Impl::detected` confirmed AVX-512F, AVX-512BW and GFNI.
            Impl::GfniAvx512 => unsafe { x86::gfni_avx512_mul_matrix(coeffs, inputs, outputs) },
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            // SAFETY: this variant only exists when NEON is enabled at
            // compile time for the target (see its `cfg`), so every CPU
            // this binary runs on has it.
            Impl::Neon => unsafe { neon::mul_matrix(coeffs, inputs, outputs) },
        }
    }
}

/// Splits `rows` output rows into groups of at most `max` rows with sizes as
/// equal as possible; returns `(first_row, rows_in_group)` pairs.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
fn row_groups(rows: usize, max: usize) -> Vec<(usize, usize)> {
    let groups = rows.div_ceil(max).max(1);
    let base = rows / groups;
    let extra = rows % groups;
    let mut out = Vec::with_capacity(groups);
    let mut start = 0;
    for g in 0..groups {
        let size = base + usize::from(g < extra);
        if size > 0 {
            out.push((start, size));
        }
        start += size;
    }
    out
}

/// Width (in bytes) of the position tiles used when the output rows are
/// processed in several groups: small enough that the `k` input strips of
/// one tile stay in L1/L2 while every group reads them, a multiple of 128
/// so that only the last tile has a partial-vector tail.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
fn tile_width(k: usize, groups: usize, len: usize) -> usize {
    if groups <= 1 {
        return len.max(1);
    }
    ((48 * 1024 / k.max(1)).clamp(2048, 16 * 1024)) & !127
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_rows() {
        for rows in 0..40 {
            for max in 1..10 {
                let g = row_groups(rows, max);
                let mut next = 0;
                for &(s, n) in &g {
                    assert_eq!(s, next);
                    assert!(n >= 1 && n <= max);
                    next += n;
                }
                assert_eq!(next, rows);
            }
        }
        assert_eq!(row_groups(7, 4), vec![(0, 4), (4, 3)]);
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(Kernel::by_name("scalar"), Ok(Kernel::scalar()));
        assert_eq!(Kernel::by_name("bogus"), Err(LookupError::Unknown));
        for k in Kernel::available() {
            assert_eq!(Kernel::by_name(k.name()), Ok(k));
        }
        #[cfg(target_arch = "x86_64")]
        assert!(matches!(
            Kernel::by_name("neon"),
            Err(LookupError::Unavailable("neon"))
        ));
        assert_eq!(Kernel::available().last(), Some(&Kernel::scalar()));
    }
}

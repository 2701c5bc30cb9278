//! zfec-compatible systematic erasure coding over GF(2^8), with run-time
//! selected SIMD kernels.
//!
//! # Goals
//!
//! * **Bit-exact compatibility with zfec** (the C library used by
//!   Tahoe-LAFS): the same field (polynomial x^8+x^4+x^3+x^2+1, generator 2),
//!   the same encoding matrix, hence the same shares for every `k`, `n`.
//!   Shares `0..k` are the input blocks themselves (systematic code); share
//!   `k + i` is row `k + i` of zfec's encoding matrix applied to the blocks.
//! * **Speed**: bulk work runs through the fastest kernel the CPU supports,
//!   chosen at run time: GFNI affine transforms on AVX-512 or AVX2,
//!   split-nibble `PSHUFB` tables on AVX2, `TBL` on NEON (aarch64), or a
//!   portable table-driven scalar loop. See [`available_kernels`].
//! * **No panics on bad input**: every public function validates its
//!   arguments and returns a [`FecError`].
//!
//! # Non-goals
//!
//! * zfec's file-splitting helpers (`filefec`), its share header format, and
//!   padding of the last segment — those belong to the callers (Tahoe's
//!   share layout is handled elsewhere in lafs).
//! * Other codes or fields (e.g. Reed–Solomon over GF(2^16), Leopard).
//! * Allocation-free decoding: `decode` builds a small (at most 128×128)
//!   matrix per call, which is negligible next to the bulk data work.
//!
//! # Unsafe policy
//!
//! The crate is compiled with `unsafe_code = "deny"`. The only exception is
//! the private `kernels` module, which opts in with `#![allow(unsafe_code)]`
//! to call `#[target_feature]` SIMD code after run-time feature detection and
//! to perform bounds-checked raw-pointer vector loads/stores. Every unsafe
//! block there has a `// SAFETY:` justification, and every SIMD kernel is
//! property-tested against the scalar reference (see that module's docs).
//!
//! # Kernel selection
//!
//! [`Fec::new`] uses the best available kernel, unless the environment
//! variable `LAFS_FEC_KERNEL` names another one (`scalar`, `avx2`,
//! `gfni-avx2`, `gfni-avx512`, `neon`; `auto` or empty means the default).
//! If the named kernel is unknown or unsupported on this CPU, an error
//! message is printed to stderr once and the best kernel is used instead.
//! [`Fec::with_kernel`] selects a kernel explicitly and returns an error if
//! it is unavailable.
//!
//! # Performance notes
//!
//! For each group of output rows, the SIMD kernels read each input vector
//! once, accumulate all `k` products in registers and store each output
//! vector once. On x86-64, when the outputs of one call total 512 KiB or
//! more and all output slices have the same alignment modulo 64, they are
//! written with non-temporal (streaming) stores: 1.3–2× faster for 1 MiB
//! segments on the development machine, at the price of the outputs not
//! being in cache afterwards. Run `cargo bench -p lafs-fec` for numbers on your
//! machine (`LAFS_FEC_KERNEL` does not affect the benchmark, which runs
//! every available kernel).
//!
//! # Example
//!
//! ```
//! use lafs_fec::Fec;
//! let fec = Fec::new(3, 5)?;
//! let data: [&[u8]; 3] = [&[1, 2], &[3, 4], &[5, 6]];
//! let (mut p3, mut p4) = ([0u8; 2], [0u8; 2]);
//! fec.encode(&data, &mut [&mut p3, &mut p4])?;
//! assert_eq!((p3, p4), ([0x09, 0x2a], [0x11, 0xd2]));
//!
//! // Recover from shares 1, 3 and 4 (any k of the n, any order).
//! let (mut b0, mut b1, mut b2) = ([0u8; 2], [0u8; 2], [0u8; 2]);
//! fec.decode(&[(4, &p4[..]), (1, data[1]), (3, &p3[..])], &mut [&mut b0, &mut b1, &mut b2])?;
//! assert_eq!([b0, b1, b2], [[1, 2], [3, 4], [5, 6]]);
//! # Ok::<(), lafs_fec::FecError>(())
//! ```

mod gf;
mod kernels;

use std::sync::OnceLock;

use kernels::{Kernel, LookupError};

/// Largest supported `n` (number of shares), as in zfec.
pub const MAX_SHARES: usize = 256;

/// Name of the environment variable that can force a kernel for
/// [`Fec::new`].
pub const KERNEL_ENV_VAR: &str = "LAFS_FEC_KERNEL";

/// Errors returned by this crate. No function of this crate panics on bad
/// input; it returns one of these instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FecError {
    /// `k` and `n` must satisfy `1 <= k <= n <= 256`.
    #[error("invalid FEC parameters k={k}, n={n} (need 1 <= k <= n <= 256)")]
    InvalidParameters {
        /// Requested number of data blocks.
        k: usize,
        /// Requested number of shares.
        n: usize,
    },
    /// A slice-of-slices argument has the wrong number of elements.
    #[error("expected {expected} {what} slice(s), got {actual}")]
    WrongSliceCount {
        /// Which argument (`"data"`, `"parity"`, `"output"`, `"share"`).
        what: &'static str,
        /// Required count.
        expected: usize,
        /// Count passed.
        actual: usize,
    },
    /// Slices that must all have the same length do not.
    #[error("{what} slice {index} has length {actual}, expected {expected}")]
    LengthMismatch {
        /// Which argument (`"data"`, `"parity"`, `"output"`, `"share"`).
        what: &'static str,
        /// Position of the offending slice in its argument.
        index: usize,
        /// Length of the first slice of the input.
        expected: usize,
        /// Length of the offending slice.
        actual: usize,
    },
    /// A share number is not in the allowed range.
    #[error("share number {share} out of range {min}..{max}")]
    ShareNumberOutOfRange {
        /// The share number passed.
        share: usize,
        /// Smallest allowed value.
        min: usize,
        /// One past the largest allowed value.
        max: usize,
    },
    /// The same share number was given twice.
    #[error("duplicate share number {share}")]
    DuplicateShare {
        /// The repeated share number.
        share: usize,
    },
    /// The decoding matrix is not invertible. Cannot happen for distinct
    /// valid share numbers (zfec's code is MDS); kept as a defensive error.
    #[error("decoding matrix is singular")]
    SingularMatrix,
    /// [`Fec::with_kernel`] was given a name this crate does not know.
    #[error("unknown FEC kernel {0:?} (known: gfni-avx512, gfni-avx2, avx2, neon, scalar)")]
    UnknownKernel(String),
    /// [`Fec::with_kernel`] was given a kernel this CPU/build cannot run.
    #[error("FEC kernel {0:?} is not available on this CPU or build")]
    KernelUnavailable(&'static str),
}

/// Names of the kernels usable on this machine, best first. The last entry
/// is always `"scalar"`.
pub fn available_kernels() -> Vec<&'static str> {
    Kernel::available().into_iter().map(Kernel::name).collect()
}

/// Default kernel: `LAFS_FEC_KERNEL` if set and usable, else the best one.
/// Computed once per process.
fn default_kernel() -> Kernel {
    static DEFAULT: OnceLock<Kernel> = OnceLock::new();
    *DEFAULT.get_or_init(|| match std::env::var(KERNEL_ENV_VAR) {
        Ok(name) if !name.is_empty() && name != "auto" => match Kernel::by_name(&name) {
            Ok(k) => k,
            Err(e) => {
                let best = Kernel::best();
                let why = match e {
                    LookupError::Unknown => "is not a known kernel",
                    LookupError::Unavailable(_) => "is not available on this CPU/build",
                };
                eprintln!(
                    "lafs-fec: error: {KERNEL_ENV_VAR}={name:?} {why}; using {:?} instead",
                    best.name()
                );
                best
            }
        },
        _ => Kernel::best(),
    })
}

/// A zfec-compatible `k`-of-`n` encoder/decoder.
///
/// Cheap to clone (the encoding matrix is at most 255×255 bytes);
/// `Send + Sync`, so one instance can serve many threads.
#[derive(Clone)]
pub struct Fec {
    k: usize,
    n: usize,
    /// Rows `k..n` of zfec's encoding matrix, row-major, `(n - k) × k`.
    /// (Rows `0..k` are the identity.)
    parity_matrix: Vec<u8>,
    kernel: Kernel,
}

impl std::fmt::Debug for Fec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fec")
            .field("k", &self.k)
            .field("n", &self.n)
            .field("kernel", &self.kernel.name())
            .finish_non_exhaustive()
    }
}

impl Fec {
    /// Creates a `k`-of-`n` code (`1 <= k <= n <= 256`) using the default
    /// kernel (see the [crate docs](crate#kernel-selection)).
    pub fn new(k: usize, n: usize) -> Result<Fec, FecError> {
        Fec::build(k, n, default_kernel())
    }

    /// Creates a `k`-of-`n` code that uses the named kernel (one of
    /// [`available_kernels`]).
    pub fn with_kernel(k: usize, n: usize, kernel: &str) -> Result<Fec, FecError> {
        let kernel = Kernel::by_name(kernel).map_err(|e| match e {
            LookupError::Unknown => FecError::UnknownKernel(kernel.to_owned()),
            LookupError::Unavailable(name) => FecError::KernelUnavailable(name),
        })?;
        Fec::build(k, n, kernel)
    }

    fn build(k: usize, n: usize, kernel: Kernel) -> Result<Fec, FecError> {
        if k == 0 || k > n || n > MAX_SHARES {
            return Err(FecError::InvalidParameters { k, n });
        }
        // zfec: an n×k matrix whose row 0 is [1, 0, ..., 0] and whose row
        // r + 1 is [alpha^(r * c) for c in 0..k]; i.e. the Vandermonde matrix
        // on the points 0, alpha^0, alpha^1, ... . The encoding matrix is
        // that matrix times the inverse of its top k×k block.
        let point = |row: usize| if row == 0 { 0 } else { gf::alpha_pow(row - 1) };
        let xs: Vec<u8> = (0..k).map(point).collect();
        let top_inv = gf::invert_vandermonde(&xs).ok_or(FecError::SingularMatrix)?;
        let bottom: Vec<u8> = (k..n)
            .flat_map(|row| (0..k).map(move |c| gf::alpha_pow((row - 1) * c)))
            .collect();
        let parity_matrix = gf::matmul(&bottom, &top_inv, n - k, k, k);
        Ok(Fec {
            k,
            n,
            parity_matrix,
            kernel,
        })
    }

    /// Number of data blocks needed to decode.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Total number of shares.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Name of the kernel in use (`"gfni-avx512"`, `"gfni-avx2"`, `"avx2"`,
    /// `"neon"` or `"scalar"`).
    pub fn kernel_name(&self) -> &'static str {
        self.kernel.name()
    }

    /// Row `share` (`k <= share < n`) of the encoding matrix.
    fn parity_row(&self, share: usize) -> &[u8] {
        let r = share - self.k;
        &self.parity_matrix[r * self.k..(r + 1) * self.k]
    }

    /// Computes parity shares `k..n`. `data`: exactly `k` slices of equal
    /// length; `parity`: exactly `n - k` slices of that length; `parity[i]`
    /// receives share `k + i`.
    pub fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), FecError> {
        let len = check_inputs("data", data, self.k)?;
        check_outputs("parity", parity, self.n - self.k, len)?;
        self.kernel.mul_matrix(&self.parity_matrix, data, parity);
        Ok(())
    }

    /// Computes only the listed shares, e.g. for repair. `out[i]` receives
    /// share `share_nums[i]`.
    ///
    /// Share numbers are normally parity shares (`k..n`), but primary shares
    /// (`0..k`, which are copies of the data blocks) are accepted too.
    /// Share numbers must be distinct and `< n`; `out` must have as many
    /// slices as `share_nums`, each as long as the data slices.
    pub fn encode_shares(
        &self,
        data: &[&[u8]],
        share_nums: &[usize],
        out: &mut [&mut [u8]],
    ) -> Result<(), FecError> {
        let len = check_inputs("data", data, self.k)?;
        check_outputs("output", out, share_nums.len(), len)?;
        check_share_nums(share_nums, self.n)?;
        let mut coeffs = Vec::new();
        let mut parity_out: Vec<&mut [u8]> = Vec::new();
        for (&share, o) in share_nums.iter().zip(out.iter_mut()) {
            if share < self.k {
                o.copy_from_slice(data[share]);
            } else {
                coeffs.extend_from_slice(self.parity_row(share));
                parity_out.push(o);
            }
        }
        self.kernel.mul_matrix(&coeffs, data, &mut parity_out);
        Ok(())
    }

    /// Reconstructs primary blocks `0..k` from exactly `k` distinct shares,
    /// given as `(share number, bytes)` in any order. `out` must hold
    /// exactly `k` slices of the share length; `out[i]` receives block `i`.
    pub fn decode(&self, shares: &[(usize, &[u8])], out: &mut [&mut [u8]]) -> Result<(), FecError> {
        let k = self.k;
        if shares.len() != k {
            return Err(FecError::WrongSliceCount {
                what: "share",
                expected: k,
                actual: shares.len(),
            });
        }
        let len = shares[0].1.len();
        for (index, &(_, s)) in shares.iter().enumerate() {
            if s.len() != len {
                return Err(FecError::LengthMismatch {
                    what: "share",
                    index,
                    expected: len,
                    actual: s.len(),
                });
            }
        }
        check_outputs("output", out, k, len)?;
        let nums: Vec<usize> = shares.iter().map(|&(n, _)| n).collect();
        check_share_nums(&nums, self.n)?;

        // Primary blocks we have are copied; the others ("missing") are
        // solved for from the parity shares. With P = present primary
        // blocks, M = missing ones, Q = parity shares given (|Q| = |M|):
        //   s_Q = E[Q,P] d_P + E[Q,M] d_M  =>  d_M = E[Q,M]^-1 (s_Q + E[Q,P] s_P)
        // so only an |M|×|M| matrix needs inverting.
        let mut have = vec![false; k];
        let mut parity: Vec<(usize, &[u8])> = Vec::new();
        let mut primary: Vec<(usize, &[u8])> = Vec::new();
        for &(num, bytes) in shares {
            if num < k {
                have[num] = true;
                out[num].copy_from_slice(bytes);
                primary.push((num, bytes));
            } else {
                parity.push((num, bytes));
            }
        }
        let missing: Vec<usize> = (0..k).filter(|&i| !have[i]).collect();
        let m = missing.len();
        if m == 0 {
            return Ok(());
        }
        debug_assert_eq!(parity.len(), m);
        let e_qm: Vec<u8> = parity
            .iter()
            .flat_map(|&(q, _)| missing.iter().map(move |&j| self.parity_row(q)[j]))
            .collect();
        let inv = gf::invert_matrix(&e_qm, m).ok_or(FecError::SingularMatrix)?;
        // Coefficients of each missing block over the inputs [Q..., P...].
        let mut coeffs = Vec::with_capacity(m * k);
        for a in 0..m {
            let inv_row = &inv[a * m..(a + 1) * m];
            coeffs.extend_from_slice(inv_row);
            for &(p, _) in &primary {
                let c = inv_row.iter().zip(&parity).fold(0u8, |acc, (&f, &(q, _))| {
                    acc ^ gf::mul(f, self.parity_row(q)[p])
                });
                coeffs.push(c);
            }
        }
        let inputs: Vec<&[u8]> = parity.iter().chain(&primary).map(|&(_, s)| s).collect();
        let mut outputs: Vec<&mut [u8]> = out
            .iter_mut()
            .zip(&have)
            .filter(|(_, h)| !**h)
            .map(|(o, _)| &mut **o)
            .collect();
        self.kernel.mul_matrix(&coeffs, &inputs, &mut outputs);
        Ok(())
    }
}

/// Checks that `slices` has `count` elements of equal length; returns it.
fn check_inputs(what: &'static str, slices: &[&[u8]], count: usize) -> Result<usize, FecError> {
    if slices.len() != count {
        return Err(FecError::WrongSliceCount {
            what,
            expected: count,
            actual: slices.len(),
        });
    }
    let len = slices.first().map_or(0, |s| s.len());
    for (index, s) in slices.iter().enumerate() {
        if s.len() != len {
            return Err(FecError::LengthMismatch {
                what,
                index,
                expected: len,
                actual: s.len(),
            });
        }
    }
    Ok(len)
}

/// Checks that `slices` has `count` elements, each of length `len`.
fn check_outputs(
    what: &'static str,
    slices: &[&mut [u8]],
    count: usize,
    len: usize,
) -> Result<(), FecError> {
    if slices.len() != count {
        return Err(FecError::WrongSliceCount {
            what,
            expected: count,
            actual: slices.len(),
        });
    }
    for (index, s) in slices.iter().enumerate() {
        if s.len() != len {
            return Err(FecError::LengthMismatch {
                what,
                index,
                expected: len,
                actual: s.len(),
            });
        }
    }
    Ok(())
}

/// Checks share numbers are `< n` and distinct.
fn check_share_nums(nums: &[usize], n: usize) -> Result<(), FecError> {
    let mut seen = [false; MAX_SHARES];
    for &share in nums {
        if share >= n {
            return Err(FecError::ShareNumberOutOfRange {
                share,
                min: 0,
                max: n,
            });
        }
        if std::mem::replace(&mut seen[share], true) {
            return Err(FecError::DuplicateShare { share });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}

    #[test]
    fn fec_is_send_sync_clone_debug() {
        assert_send_sync::<Fec>();
        assert_send_sync::<FecError>();
    }

    #[test]
    fn parity_matrix_is_mds_for_small_codes() {
        // Every square submatrix formed by parity rows and data columns must
        // be invertible for the code to be MDS (any k shares decode).
        for n in 2..=8usize {
            for k in 1..n {
                let f = Fec::with_kernel(k, n, "scalar").unwrap();
                let rows = n - k;
                for rmask in 1u32..(1 << rows) {
                    for cmask in 1u32..(1 << k) {
                        if rmask.count_ones() != cmask.count_ones() {
                            continue;
                        }
                        let m = rmask.count_ones() as usize;
                        let sub: Vec<u8> = (0..rows)
                            .filter(|r| rmask & (1 << r) != 0)
                            .flat_map(|r| {
                                let row = f.parity_row(k + r);
                                (0..k)
                                    .filter(move |c| cmask & (1 << c) != 0)
                                    .map(move |c| row[c])
                            })
                            .collect();
                        assert!(gf::invert_matrix(&sub, m).is_some(), "k={k} n={n}");
                    }
                }
            }
        }
    }

    #[test]
    fn k_equals_n_has_no_parity() {
        let f = Fec::new(4, 4).unwrap();
        let d: Vec<Vec<u8>> = (0..4).map(|i| vec![i as u8; 5]).collect();
        let refs: Vec<&[u8]> = d.iter().map(|v| &v[..]).collect();
        f.encode(&refs, &mut []).unwrap();
    }
}

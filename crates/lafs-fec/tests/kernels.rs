//! Property tests: every kernel agrees with the scalar kernel and with an
//! independent naive implementation, and any k of n shares decode.

mod common;

use common::{decode, encode, naive_encode, random_blocks};
use lafs_fec::{Fec, available_kernels};
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// (k, n), biased toward small codes and the edges k = 1, k = n, n = 256.
fn params() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        4 => (1usize..=12).prop_flat_map(|n| (1..=n, Just(n))),
        1 => (1usize..=256).prop_map(|n| (1, n)),
        1 => (1usize..=256).prop_map(|n| (n, n)),
        1 => (1usize..=256).prop_map(|k| (k, 256)),
        1 => (1usize..=256).prop_flat_map(|n| (1..=n, Just(n))),
    ]
}

/// Buffer lengths hitting every vector-width boundary, plus arbitrary ones.
/// Large `k * (n - k)` products get shorter buffers to bound the run time.
fn length(k: usize, n: usize) -> BoxedStrategy<usize> {
    let edges = select(vec![
        0usize, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 95, 96, 127, 128, 129, 191, 192, 255,
        256, 257, 1000, 1023, 1025,
    ]);
    let work = k * (n - k).max(1);
    if work > 2000 {
        prop_oneof![2 => edges, 1 => 0usize..700].boxed()
    } else {
        prop_oneof![2 => edges, 1 => 0usize..3000, 1 => 3000usize..40_000].boxed()
    }
}

fn case() -> impl Strategy<Value = (usize, usize, usize, u64)> {
    params().prop_flat_map(|(k, n)| (Just(k), Just(n), length(k, n), any::<u64>()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every kernel's parity equals the scalar kernel's.
    #[test]
    fn encode_matches_scalar((k, n, len, seed) in case()) {
        let data = random_blocks(seed, k, len);
        let reference = encode(&Fec::with_kernel(k, n, "scalar").unwrap(), &data);
        for kernel in available_kernels() {
            let fec = Fec::with_kernel(k, n, kernel).unwrap();
            prop_assert_eq!(fec.kernel_name(), kernel);
            let parity = encode(&fec, &data);
            prop_assert!(parity == reference, "kernel {} k={} n={} len={}", kernel, k, n, len);
        }
    }

    /// The scalar kernel equals a naive, independently written encoder.
    #[test]
    fn scalar_matches_naive(k in 1usize..=10, extra in 0usize..=6, len in 0usize..80, seed: u64) {
        let n = k + extra;
        let data = random_blocks(seed, k, len);
        let all = naive_encode(k, n, &data);
        prop_assert_eq!(&all[..k], &data[..]);
        let parity = encode(&Fec::with_kernel(k, n, "scalar").unwrap(), &data);
        prop_assert_eq!(&all[k..], &parity[..]);
    }

    /// Any k distinct shares, in any order, decode to the data (every
    /// kernel), and `encode_shares` reproduces any subset of shares.
    #[test]
    fn any_k_shares_decode(
        (k, n, len, seed) in case(),
        picks in proptest::collection::vec(any::<Index>(), 256),
    ) {
        let data = random_blocks(seed, k, len);
        let scalar = Fec::with_kernel(k, n, "scalar").unwrap();
        let parity = encode(&scalar, &data);
        let all: Vec<Vec<u8>> = data.iter().chain(&parity).cloned().collect();
        // Random subset of k share numbers in random order (partial
        // Fisher–Yates driven by `picks`).
        let mut nums: Vec<usize> = (0..n).collect();
        for (i, pick) in picks.iter().enumerate().take(k) {
            let j = i + pick.index(n - i);
            nums.swap(i, j);
        }
        let chosen: Vec<(usize, Vec<u8>)> =
            nums[..k].iter().map(|&s| (s, all[s].clone())).collect();
        for kernel in available_kernels() {
            let fec = Fec::with_kernel(k, n, kernel).unwrap();
            let decoded = decode(&fec, &chosen);
            prop_assert!(decoded == data, "kernel {} k={} n={} len={} shares {:?}",
                kernel, k, n, len, &nums[..k]);

            // encode_shares for the complementary (not chosen) shares.
            let want: Vec<usize> = nums[k..].to_vec();
            let mut out = vec![vec![0u8; len]; want.len()];
            let mut out_refs: Vec<&mut [u8]> = out.iter_mut().map(|b| &mut b[..]).collect();
            fec.encode_shares(&common::refs(&data), &want, &mut out_refs).unwrap();
            for (s, o) in want.iter().zip(&out) {
                prop_assert!(o == &all[*s], "kernel {} encode_shares share {}", kernel, s);
            }
        }
    }

    /// Decoding from parity-only shares (the hardest case) agrees between
    /// every kernel and scalar, byte for byte, even for garbage shares.
    #[test]
    fn decode_matches_scalar((k, n, len, seed) in case(), shift in 0usize..256) {
        prop_assume!(n > k);
        // k share numbers, as many parity shares as possible, rotated.
        let mut nums: Vec<usize> = (0..n).rev().take(k).collect();
        nums.rotate_left(shift % k);
        let shares: Vec<(usize, Vec<u8>)> = nums
            .iter()
            .zip(random_blocks(seed, k, len))
            .map(|(&s, b)| (s, b))
            .collect();
        let reference = decode(&Fec::with_kernel(k, n, "scalar").unwrap(), &shares);
        for kernel in available_kernels() {
            let fec = Fec::with_kernel(k, n, kernel).unwrap();
            prop_assert!(decode(&fec, &shares) == reference, "kernel {}", kernel);
        }
    }
}

/// Lengths large enough to span several position tiles when the output rows
/// are split into several register groups, for codes with many rows.
#[test]
fn multi_tile_configurations() {
    for &(k, n, len) in &[
        (3usize, 10usize, 50_001usize),
        (3, 20, 70_000),
        (10, 14, 40_003),
        (20, 40, 10_007),
        (128, 256, 5_000),
        (200, 256, 3_333),
    ] {
        let data = random_blocks(k as u64 * 7919 + n as u64, k, len);
        let scalar = Fec::with_kernel(k, n, "scalar").unwrap();
        let reference = encode(&scalar, &data);
        let all: Vec<Vec<u8>> = data.iter().chain(&reference).cloned().collect();
        // Use the last k shares: as many parity shares as possible.
        let shares: Vec<(usize, Vec<u8>)> = (n - k..n).map(|s| (s, all[s].clone())).collect();
        for kernel in available_kernels() {
            let fec = Fec::with_kernel(k, n, kernel).unwrap();
            assert!(
                encode(&fec, &data) == reference,
                "{kernel} k={k} n={n} len={len}"
            );
            assert!(decode(&fec, &shares) == data, "{kernel} decode k={k} n={n}");
        }
    }
}

/// `Fec::new` honours the default selection and reports a known kernel.
#[test]
fn default_kernel_is_available() {
    let fec = Fec::new(3, 10).unwrap();
    let kernels = available_kernels();
    assert!(kernels.contains(&fec.kernel_name()));
    assert_eq!(kernels.last(), Some(&"scalar"));
    if std::env::var_os("LAFS_FEC_KERNEL").is_none() {
        assert_eq!(fec.kernel_name(), kernels[0]);
    }
}

/// Outputs large enough for the streaming-store path, at every alignment:
/// all outputs equally misaligned (streaming with a peeled head) and
/// differently misaligned (regular stores).
#[test]
fn large_outputs_at_all_alignments() {
    let (k, n, len) = (3usize, 10usize, 80_001usize);
    let data = random_blocks(99, k, len);
    let reference = encode(&Fec::with_kernel(k, n, "scalar").unwrap(), &data);
    let data_refs = common::refs(&data);
    for kernel in available_kernels() {
        let fec = Fec::with_kernel(k, n, kernel).unwrap();
        for offset in (0..64).step_by(7).chain([1, 32, 63]) {
            for mixed in [false, true] {
                let mut bufs: Vec<Vec<u8>> = (0..n - k).map(|_| vec![0xEEu8; len + 64]).collect();
                let mut outs: Vec<&mut [u8]> = bufs
                    .iter_mut()
                    .enumerate()
                    .map(|(i, b)| {
                        // Align each slice to 64 within its buffer, then shift.
                        let base = b.as_ptr().align_offset(64);
                        let o = (base + offset + if mixed { i * 5 } else { 0 }) % 64;
                        &mut b[o..o + len]
                    })
                    .collect();
                fec.encode(&data_refs, &mut outs).unwrap();
                for (o, r) in outs.iter().zip(&reference) {
                    assert!(**o == r[..], "{kernel} offset {offset} mixed {mixed}");
                }
            }
        }
    }
}

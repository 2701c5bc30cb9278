//! Encode/decode throughput for every kernel available on this machine.
//!
//! Throughput is reported in bytes of *input*: the data blocks for encode,
//! the `k` shares for decode. Segments are 1 MiB, split into `k` blocks
//! rounded up (as Tahoe does), e.g. 3 × 349,526 bytes for k = 3.
//!
//! Run with `cargo bench -p lafs-fec`; restrict with a filter such as
//! `cargo bench -p lafs-fec -- gfni-avx512`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lafs_fec::{Fec, available_kernels};

const SEGMENT: usize = 1 << 20;

fn blocks(count: usize, len: usize, seed: u8) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            (0..len)
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed ^ i as u8))
                .collect()
        })
        .collect()
}

fn bench_code(c: &mut Criterion, k: usize, n: usize, decode_from: &[&[usize]]) {
    let len = SEGMENT.div_ceil(k);
    let data = blocks(k, len, 7);
    for kernel in available_kernels() {
        let fec = Fec::with_kernel(k, n, kernel).expect("kernel listed as available");
        let mut group = c.benchmark_group(format!("{k}-of-{n}/{kernel}"));
        group.throughput(Throughput::Bytes((k * len) as u64));

        let data_refs: Vec<&[u8]> = data.iter().map(|b| &b[..]).collect();
        let mut parity = vec![vec![0u8; len]; n - k];
        group.bench_function("encode", |b| {
            b.iter(|| {
                let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(|p| &mut p[..]).collect();
                fec.encode(black_box(&data_refs), &mut outs)
                    .expect("encode");
            })
        });

        let all: Vec<&[u8]> = data.iter().chain(&parity).map(|b| &b[..]).collect();
        for nums in decode_from {
            let shares: Vec<(usize, &[u8])> = nums.iter().map(|&s| (s, all[s])).collect();
            let mut out = vec![vec![0u8; len]; k];
            let name = format!(
                "decode[{}]",
                nums.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            group.bench_function(name, |b| {
                b.iter(|| {
                    let mut outs: Vec<&mut [u8]> = out.iter_mut().map(|o| &mut o[..]).collect();
                    fec.decode(black_box(&shares), &mut outs).expect("decode");
                })
            });
            assert!(out == data, "decode is wrong for {kernel}");
        }
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_code(c, 3, 10, &[&[7, 8, 9], &[3, 5, 9]]);
    bench_code(c, 10, 14, &[&[4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]);
}

criterion_group! {
    name = fec;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(fec);

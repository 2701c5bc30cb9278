//! Known-answer tests (values produced by zfec), for every kernel.

mod common;

use common::{decode, encode};
use lafs_fec::{Fec, available_kernels};

fn blocks(b: &[&[u8]]) -> Vec<Vec<u8>> {
    b.iter().map(|x| x.to_vec()).collect()
}

#[test]
fn zfec_k3_n5() {
    for kernel in available_kernels() {
        let fec = Fec::with_kernel(3, 5, kernel).unwrap();
        let data = blocks(&[&[0x01, 0x02], &[0x03, 0x04], &[0x05, 0x06]]);
        let parity = encode(&fec, &data);
        assert_eq!(
            parity,
            blocks(&[&[0x09, 0x2a], &[0x11, 0xd2]]),
            "kernel {kernel}"
        );
    }
}

#[test]
fn zfec_k2_n4() {
    for kernel in available_kernels() {
        let fec = Fec::with_kernel(2, 4, kernel).unwrap();
        assert_eq!(
            encode(&fec, &blocks(&[&[0x01], &[0x00]])),
            blocks(&[&[0x03], &[0x05]]),
            "kernel {kernel}"
        );
        assert_eq!(
            encode(&fec, &blocks(&[&[0x00], &[0x01]])),
            blocks(&[&[0x02], &[0x04]]),
            "kernel {kernel}"
        );
    }
}

#[test]
fn zfec_k3_n5_decode_every_subset() {
    let data = blocks(&[&[0x01, 0x02], &[0x03, 0x04], &[0x05, 0x06]]);
    let all = [
        data[0].clone(),
        data[1].clone(),
        data[2].clone(),
        vec![0x09, 0x2a],
        vec![0x11, 0xd2],
    ];
    for kernel in available_kernels() {
        let fec = Fec::with_kernel(3, 5, kernel).unwrap();
        for a in 0..5 {
            for b in 0..5 {
                for c in 0..5 {
                    if a == b || b == c || a == c {
                        continue;
                    }
                    let shares = [
                        (a, all[a].clone()),
                        (b, all[b].clone()),
                        (c, all[c].clone()),
                    ];
                    assert_eq!(
                        decode(&fec, &shares),
                        data,
                        "kernel {kernel} shares {a},{b},{c}"
                    );
                }
            }
        }
    }
}

/// The systematic property and a longer known answer: k=2, n=4 over 300
/// bytes is just the single-byte answers, repeated.
#[test]
fn zfec_k2_n4_long() {
    for kernel in available_kernels() {
        let fec = Fec::with_kernel(2, 4, kernel).unwrap();
        let data = vec![vec![0x01; 300], vec![0x00; 300]];
        assert_eq!(encode(&fec, &data), vec![vec![0x03; 300], vec![0x05; 300]]);
        let data = vec![vec![0x00; 301], vec![0x01; 301]];
        assert_eq!(encode(&fec, &data), vec![vec![0x02; 301], vec![0x04; 301]]);
    }
}

/// A longer known answer (77-byte blocks, so every kernel runs its vector
/// loop and its tail), produced with Python zfec 1.6:
/// `zfec.Encoder(3, 7).encode(data)` with
/// `data[i][j] = ((i * 77 + j) * 37 + 11) % 256`.
#[test]
fn zfec_k3_n7_77_bytes() {
    const PARITY: [&str; 4] = [
        "a78ee68f446714c2a5fb80043c0185a0d0040b71ba9097752f167e07cb829c2a3d7308865e891d58581589f9d2081f5d3e9ef69fb30a6a06b5eb900e517f95b0c09d011c578087a5b61c1317db",
        "ceb98600a87783566aeb175bd9e6642f38954c09b201d00746211e88afb50b03f2639f7ffd6efc6ab0f26881c09958f521a99610cd3d0a4d7afb07f7936f743f287ae0436b11c0b0a98d5498bf",
        "a6b87480bb3833ed3ca4a7d708ebe6a420aaf0cbae3e6cd02e20ec080eb4bbb6a42c2fcda6637eefa8ffea4353a6e4307ba86490e33cf8e02cb4b7450c20f6b4307762cf742e7c7bf3b2e8181e",
        "a41b45abe2077884e39bec1aafae96b563d45d9aa640c1af2c83dd23e817f07a7b1364dd10260e5bebba9a128ed849bd420b55bbd09fc94bf38bfc55371f86a573321202cb50d153cacc4533f8",
    ];
    let data: Vec<Vec<u8>> = (0..3usize)
        .map(|i| {
            (0..77usize)
                .map(|j| (((i * 77 + j) * 37 + 11) % 256) as u8)
                .collect()
        })
        .collect();
    let expected: Vec<Vec<u8>> = PARITY.iter().map(|h| hex::decode(h).unwrap()).collect();
    for kernel in available_kernels() {
        let fec = Fec::with_kernel(3, 7, kernel).unwrap();
        assert_eq!(encode(&fec, &data), expected, "kernel {kernel}");
        let shares: Vec<(usize, Vec<u8>)> = [6, 4, 5]
            .iter()
            .map(|&s| (s, expected[s - 3].clone()))
            .collect();
        assert_eq!(decode(&fec, &shares), data, "kernel {kernel}");
    }
}

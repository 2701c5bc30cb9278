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

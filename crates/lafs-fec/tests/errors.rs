//! Invalid input must produce `Err`, never a panic.

use lafs_fec::{Fec, FecError};

#[test]
fn bad_parameters() {
    for (k, n) in [
        (0, 0),
        (0, 1),
        (3, 2),
        (1, 257),
        (257, 257),
        (usize::MAX, usize::MAX),
    ] {
        assert_eq!(
            Fec::new(k, n).unwrap_err(),
            FecError::InvalidParameters { k, n }
        );
        assert!(Fec::with_kernel(k, n, "scalar").is_err());
    }
    assert!(Fec::new(1, 1).is_ok());
    assert!(Fec::new(1, 256).is_ok());
    assert!(Fec::new(256, 256).is_ok());
}

#[test]
fn bad_kernel_names() {
    assert!(matches!(
        Fec::with_kernel(3, 5, "nope"),
        Err(FecError::UnknownKernel(_))
    ));
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        Fec::with_kernel(3, 5, "neon").unwrap_err(),
        FecError::KernelUnavailable("neon")
    );
}

#[test]
fn encode_errors() {
    let fec = Fec::new(3, 5).unwrap();
    let a = [0u8; 4];
    let b = [0u8; 5];
    let (mut p, mut q, mut r) = ([0u8; 4], [0u8; 4], [0u8; 5]);
    // Wrong number of data slices.
    assert!(matches!(
        fec.encode(&[&a, &a], &mut [&mut p, &mut q]),
        Err(FecError::WrongSliceCount {
            expected: 3,
            actual: 2,
            ..
        })
    ));
    assert!(
        fec.encode(&[&a, &a, &a, &a], &mut [&mut p, &mut q])
            .is_err()
    );
    assert!(fec.encode(&[], &mut []).is_err());
    // Wrong number of parity slices.
    assert!(fec.encode(&[&a, &a, &a], &mut [&mut p]).is_err());
    assert!(
        fec.encode(&[&a, &a, &a], &mut [&mut p, &mut q, &mut r])
            .is_err()
    );
    // Unequal lengths.
    assert!(matches!(
        fec.encode(&[&a, &b, &a], &mut [&mut p, &mut q]),
        Err(FecError::LengthMismatch {
            index: 1,
            expected: 4,
            actual: 5,
            ..
        })
    ));
    assert!(fec.encode(&[&a, &a, &a], &mut [&mut p, &mut r]).is_err());
    fec.encode(&[&a, &a, &a], &mut [&mut p, &mut q]).unwrap();
}

#[test]
fn encode_shares_errors() {
    let fec = Fec::new(3, 5).unwrap();
    let a = [7u8; 4];
    let (mut p, mut q) = ([0u8; 4], [0u8; 4]);
    assert!(matches!(
        fec.encode_shares(&[&a, &a, &a], &[5], &mut [&mut p]),
        Err(FecError::ShareNumberOutOfRange { share: 5, .. })
    ));
    assert!(matches!(
        fec.encode_shares(&[&a, &a, &a], &[4, 4], &mut [&mut p, &mut q]),
        Err(FecError::DuplicateShare { share: 4 })
    ));
    assert!(
        fec.encode_shares(&[&a, &a, &a], &[3, 4], &mut [&mut p])
            .is_err()
    );
    assert!(fec.encode_shares(&[&a, &a], &[3], &mut [&mut p]).is_err());
    let mut short = [0u8; 3];
    assert!(
        fec.encode_shares(&[&a, &a, &a], &[3], &mut [&mut short])
            .is_err()
    );
    assert!(
        fec.encode_shares(&[&a, &a, &a], &[usize::MAX], &mut [&mut p])
            .is_err()
    );
    fec.encode_shares(&[&a, &a, &a], &[], &mut []).unwrap();
    fec.encode_shares(&[&a, &a, &a], &[4, 0], &mut [&mut p, &mut q])
        .unwrap();
    assert_eq!(q, a);
}

#[test]
fn decode_errors() {
    let fec = Fec::new(3, 5).unwrap();
    let s = [1u8; 4];
    let t = [1u8; 6];
    let mut o = [[0u8; 4]; 3];
    let mut long = [0u8; 6];
    let [o0, o1, o2] = &mut o;
    // Wrong number of shares.
    assert!(fec.decode(&[(0, &s), (1, &s)], &mut [o0, o1, o2]).is_err());
    assert!(fec.decode(&[], &mut [o0, o1, o2]).is_err());
    assert!(
        fec.decode(&[(0, &s), (1, &s), (2, &s), (3, &s)], &mut [o0, o1, o2])
            .is_err()
    );
    // Duplicate share numbers.
    assert!(matches!(
        fec.decode(&[(0, &s), (3, &s), (3, &s)], &mut [o0, o1, o2]),
        Err(FecError::DuplicateShare { share: 3 })
    ));
    assert!(
        fec.decode(&[(1, &s), (1, &s), (1, &s)], &mut [o0, o1, o2])
            .is_err()
    );
    // Out of range.
    assert!(matches!(
        fec.decode(&[(0, &s), (1, &s), (5, &s)], &mut [o0, o1, o2]),
        Err(FecError::ShareNumberOutOfRange { share: 5, .. })
    ));
    assert!(
        fec.decode(&[(0, &s), (1, &s), (usize::MAX, &s)], &mut [o0, o1, o2])
            .is_err()
    );
    // Unequal share lengths, wrong output lengths/counts.
    assert!(matches!(
        fec.decode(&[(0, &s), (3, &t), (4, &s)], &mut [o0, o1, o2]),
        Err(FecError::LengthMismatch { index: 1, .. })
    ));
    assert!(
        fec.decode(&[(0, &s), (3, &s), (4, &s)], &mut [o0, o1, &mut long])
            .is_err()
    );
    assert!(
        fec.decode(&[(0, &s), (3, &s), (4, &s)], &mut [o0, o1])
            .is_err()
    );
    // Outputs were not written by the failed calls.
    assert_eq!(o, [[0u8; 4]; 3]);
    let [o0, o1, o2] = &mut o;
    fec.decode(&[(0, &s), (3, &s), (4, &s)], &mut [o0, o1, o2])
        .unwrap();
}

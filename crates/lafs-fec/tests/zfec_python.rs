//! Cross-check against the reference C implementation, through Python
//! zfec installed in the Tahoe-LAFS virtualenv at
//! `~/.cache/lafs/tahoe-venv` (override with `LAFS_TAHOE_VENV`).
//!
//! This test FAILS (it does not skip) when that virtualenv or its `zfec`
//! module is missing: a silently skipped compatibility check is worse than
//! a loud one.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{decode, encode, random_blocks};
use lafs_fec::{Fec, available_kernels};

const SCRIPT: &str = r#"
import sys, zfec
for line in sys.stdin:
    k, n, blocks = line.split()
    k, n = int(k), int(n)
    data = [bytes.fromhex(b) for b in blocks.split(",")]
    shares = zfec.Encoder(k, n).encode(data)
    print(",".join(bytes(s).hex() for s in shares))
    sys.stdout.flush()
"#;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("LAFS_TAHOE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/lafs/tahoe-venv")
        });
    venv.join("bin/python")
}

#[test]
fn matches_python_zfec() {
    let python = venv_python();
    assert!(
        python.exists(),
        "zfec cross-check needs the Tahoe-LAFS virtualenv with zfec: {} does not exist \
         (create it, or point LAFS_TAHOE_VENV at one)",
        python.display()
    );
    let cases: &[(usize, usize, usize)] = &[
        (1, 1, 5),
        (1, 10, 17),
        (2, 4, 1),
        (3, 5, 2),
        (3, 10, 1000),
        (4, 4, 9),
        (10, 14, 333),
        (25, 100, 64),
        (100, 256, 33),
        (128, 256, 65),
        (255, 256, 7),
        (256, 256, 3),
    ];
    let inputs: Vec<Vec<Vec<u8>>> = cases
        .iter()
        .map(|&(k, n, len)| random_blocks((k * 1000 + n) as u64, k, len))
        .collect();
    let mut stdin_text = String::new();
    for (&(k, n, _), data) in cases.iter().zip(&inputs) {
        let hexes: Vec<String> = data.iter().map(hex::encode).collect();
        stdin_text.push_str(&format!("{k} {n} {}\n", hexes.join(",")));
    }
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin_text.as_bytes())
        .expect("write to python");
    let output = child.wait_with_output().expect("python output");
    assert!(
        output.status.success(),
        "python zfec failed (is zfec installed in the venv?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        cases.len(),
        "python printed the wrong number of lines"
    );

    for ((&(k, n, len), data), line) in cases.iter().zip(&inputs).zip(lines) {
        let zfec_shares: Vec<Vec<u8>> = line
            .split(',')
            .map(|h| hex::decode(h).expect("hex from python"))
            .collect();
        assert_eq!(zfec_shares.len(), n);
        assert_eq!(&zfec_shares[..k], &data[..], "zfec is systematic");
        for kernel in available_kernels() {
            let fec = Fec::with_kernel(k, n, kernel).unwrap();
            let parity = encode(&fec, data);
            assert!(
                parity[..] == zfec_shares[k..],
                "{kernel}: parity differs from zfec for k={k} n={n} len={len}"
            );
            // Decode from zfec's last k shares.
            let shares: Vec<(usize, Vec<u8>)> =
                (n - k..n).map(|s| (s, zfec_shares[s].clone())).collect();
            assert!(
                decode(&fec, &shares) == *data,
                "{kernel}: decode k={k} n={n}"
            );
        }
    }
}

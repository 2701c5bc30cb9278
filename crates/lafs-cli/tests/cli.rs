//! The `lafs` binary, run as a user would: exit statuses, output formats, error lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn lafs(args: &[&str]) -> Output {
    lafs_stdin(args, None)
}

fn lafs_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lafs"))
        .args(args)
        // No node: HOME points at an empty directory.
        .env("HOME", scratch_dir("home"))
        .env_remove("LAFS_NODE_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lafs");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        pipe.write_all(data).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lafs-cli-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn write_file(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch_dir("files").join(name);
    std::fs::write(&p, data).expect("write");
    p
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf8")
}

fn vector_data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/chk-known-answers.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("json")
}

#[test]
fn dry_run_matches_stock_caps() {
    let v = vectors();
    for name in [
        "CHK-56",
        "CHK-1000",
        "CHK-3MiB+12345",
        "CHK-k7N13-maxseg4096",
        "CHK-k2N5",
        "CHK-1000-convA",
    ] {
        let case = &v["cases"][name];
        let n = case["n"].as_u64().unwrap() as usize;
        let file = write_file(name, &vector_data(n));
        let k = case["k"].to_string();
        let total = case["N"].to_string();
        let maxseg = case["maxseg"].to_string();
        let secret = if name.ends_with("convA") {
            "ifaucqkbifaucqkbifaucqkbie" // base32 of 16 x 'A'
        } else {
            "aaaaaaaaaaaaaaaaaaaaaaaaaa"
        };
        let o = lafs(&[
            "put",
            "--dry-run",
            "--shares-needed",
            &k,
            "--shares-total",
            &total,
            "--max-segment-size",
            &maxseg,
            "--convergence-secret-base32",
            secret,
            file.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), case["cap"].as_str().unwrap(), "{name}");
        assert!(
            stderr(&o).is_empty(),
            "{name}: unexpected stderr {}",
            stderr(&o)
        );
    }
}

#[test]
fn dry_run_defaults_zero_secret_and_says_so() {
    let v = vectors();
    let data = vector_data(1000);
    let file = write_file("d1000", &data);
    let o = lafs(&["put", "--dry-run", file.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        v["cases"]["CHK-1000"]["cap"].as_str().unwrap()
    );
    assert!(
        stderr(&o).contains("zero convergence secret"),
        "{}",
        stderr(&o)
    );
    // Standard input gives the same cap.
    let o = lafs_stdin(&["put", "--dry-run", "-"], Some(&data));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        v["cases"]["CHK-1000"]["cap"].as_str().unwrap()
    );
}

#[test]
fn dry_run_small_files_are_literal() {
    let v = vectors();
    let file = write_file("d55", &vector_data(55));
    let o = lafs(&["put", "--dry-run", file.to_str().unwrap()]);
    assert_eq!(
        stdout(&o).trim(),
        v["cases"]["LIT-55"]["cap"].as_str().unwrap()
    );
    let o = lafs_stdin(&["put", "--dry-run", "-"], Some(b""));
    assert_eq!(stdout(&o).trim(), "URI:LIT:");
}

#[test]
fn dry_run_convergence_secret_file_in_tahoe_format() {
    let secret = write_file("conv", b"ifaucqkbifaucqkbifaucqkbie\n");
    let file = write_file("d1000b", &vector_data(1000));
    let o = lafs(&[
        "put",
        "--dry-run",
        "--convergence-secret-file",
        secret.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        vectors()["cases"]["CHK-1000-convA"]["cap"]
            .as_str()
            .unwrap()
    );
}

#[test]
fn dry_run_json() {
    let file = write_file("d56", &vector_data(56));
    let o = lafs(&["put", "--dry-run", "--json", file.to_str().unwrap()]);
    let j: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(j["cap"], vectors()["cases"]["CHK-56"]["cap"]);
    assert_eq!(j["size"], 56);
    assert_eq!(j["storage_index"], "jfkklbgrshpkgd2o6utcietf2u");
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    let file = write_file("d100", &vector_data(100));
    let f = file.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["put", "--dry-run", "--shares-needed", "0", f],
        vec!["put", "--dry-run", "--shares-needed", "11", f],
        vec![
            "put",
            "--dry-run",
            "--shares-total",
            "257",
            "--shares-needed",
            "3",
            f,
        ],
        vec!["put", "--dry-run", "--max-segment-size", "0", f],
        vec!["put", "--dry-run", "--max-segment-size", "12XB", f],
        vec![
            "put",
            "--dry-run",
            "--convergence-secret-base32",
            "not base32!",
            f,
        ],
        vec!["put", "--dry-run", "/nonexistent/file"],
        vec!["put", "--dry-run", "/"],
        vec!["cap", "show", "URI:CHK:bad"],
        vec!["nosuchcommand"],
    ];
    for args in cases {
        let o = lafs(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
    }
}

#[test]
fn malformed_caps_exit_2_naming_the_problem() {
    let si = "jfkklbgrshpkgd2o6utcietf2u";
    let key = "l6zwjsbrrtopphmwkisghpjwqy";
    let h = "p5th2xpblm4deqn4evxkb32e3cauj53chncuwnigeqagspxmsczq";
    let cases = [
        // (cap, a word the one-line error must contain)
        (format!("URI:CHK:{key}:{h}:3:10"), "field"),
        (format!("URI:CHK:{key}:{h}:3:10:56:7"), "field"),
        (format!("URI:CHK:{key}:{h}:11:10:56"), "exceed"),
        (format!("URI:CHK:{key}:{h}:3:300:56"), "256"),
        (format!("URI:CHK:{key}:{h}:0:10:56"), "k"),
        (
            format!("URI:CHK:{}:{h}:3:10:56", key.replace('l', "1")),
            "base32",
        ),
        (format!("URI:CHK:{}b:{h}:3:10:56", &key[..25]), "canonical"),
        (format!("URI:CHK-Verifier:{si}:{h}:3:10:x"), "size"),
        ("URI:SSK:abc:def".to_string(), "base32"),
        ("URI:NEWKIND:whatever".to_string(), "unknown"),
        ("not a cap".to_string(), "unknown"),
    ];
    for (cap, word) in &cases {
        for sub in [&["cap", "show"][..], &["cap", "diminish"][..]] {
            let mut args = sub.to_vec();
            args.push(cap);
            let o = lafs(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{cap}: {err}");
            assert_eq!(err.lines().count(), 1, "{cap}: not one line: {err}");
            assert!(
                err.to_lowercase().contains(word),
                "{cap}: {err:?} lacks {word:?}"
            );
            assert!(!err.contains(key), "{cap}: the error leaks the key: {err}");
        }
    }
}

#[test]
fn cap_show_fields() {
    let chk = vectors()["cases"]["CHK-56"]["cap"]
        .as_str()
        .unwrap()
        .to_string();
    let o = lafs(&["cap", "show", &chk]);
    assert!(o.status.success());
    let j: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["kind"], "CHK");
    assert_eq!(j["storage_index"], "jfkklbgrshpkgd2o6utcietf2u");
    assert_eq!(j["needed_shares"], 3);
    assert_eq!(j["total_shares"], 10);
    assert_eq!(j["size"], 56);
    assert_eq!(j["readonly"], true);

    let ssk =
        "URI:SSK:ambqgaydambqgaydambqgaydam:aqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqca";
    let j: Value = serde_json::from_str(&stdout(&lafs(&["cap", "show", ssk]))).unwrap();
    assert_eq!(j["kind"], "SSK");
    assert_eq!(j["readonly"], false);
    assert_eq!(j["storage_index"], "am5coqpf2njzwdni7uj7haq6fm");

    let lit = vectors()["cases"]["LIT-55"]["cap"]
        .as_str()
        .unwrap()
        .to_string();
    let j: Value = serde_json::from_str(&stdout(&lafs(&["cap", "show", &lit]))).unwrap();
    assert_eq!(j["kind"], "LIT");
    assert_eq!(j["size"], 55);
    assert_eq!(j["storage_index"], Value::Null);
}

#[test]
fn cap_diminish_chain() {
    let ssk =
        "URI:SSK:ambqgaydambqgaydambqgaydam:aqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqca";
    let fp = "aqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqca";
    let ro = stdout(&lafs(&["cap", "diminish", ssk]));
    assert_eq!(
        ro.trim(),
        format!("URI:SSK-RO:iosg2ayya4fhrlkfzsjqywrfaq:{fp}")
    );
    let v1 = stdout(&lafs(&["cap", "diminish", "--verify", ssk]));
    let v2 = stdout(&lafs(&["cap", "diminish", "--verify", ro.trim()]));
    assert_eq!(
        v1.trim(),
        format!("URI:SSK-Verifier:am5coqpf2njzwdni7uj7haq6fm:{fp}")
    );
    assert_eq!(v1, v2);
    let dir = format!("URI:DIR2:ambqgaydambqgaydambqgaydam:{fp}");
    let dro = stdout(&lafs(&["cap", "diminish", &dir]));
    assert_eq!(
        dro.trim(),
        format!("URI:DIR2-RO:iosg2ayya4fhrlkfzsjqywrfaq:{fp}")
    );
    let chk = vectors()["cases"]["CHK-56"]["cap"]
        .as_str()
        .unwrap()
        .to_string();
    let o = lafs(&["cap", "diminish", "--verify", &chk]);
    assert_eq!(
        stdout(&o).trim(),
        vectors()["cases"]["CHK-56"]["vcap"].as_str().unwrap()
    );
    // LIT has no verify cap: a usage error, not a crash.
    let lit = vectors()["cases"]["LIT-55"]["cap"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        lafs(&["cap", "diminish", "--verify", &lit]).status.code(),
        Some(2)
    );
}

#[test]
fn put_without_dry_run_fails_clearly() {
    let file = write_file("d60", &vector_data(60));
    let o = lafs(&["put", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--dry-run"));
}

#[test]
fn help_everywhere() {
    for args in [
        &["--help"][..],
        &["put", "--help"][..],
        &["cap", "--help"][..],
        &["cap", "show", "--help"][..],
        &["cap", "diminish", "--help"][..],
    ] {
        let o = lafs(args);
        assert!(o.status.success(), "{args:?}");
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
    let o = lafs(&["--version"]);
    assert!(stdout(&o).starts_with("lafs "));
}

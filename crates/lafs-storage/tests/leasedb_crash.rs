//! Crash safety: a child process (this test binary, re-executed) commits lease database
//! operations with the default durability and reports each one after it returned; the parent
//! SIGKILLs it mid-stream and checks that every acknowledged change survived and that the
//! database opens cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_storage::leasedb::{AccountId, LeaseDb, ShareState, SqliteLeaseDb};
use lafs_storage::types::{ShareKind, StorageIndex};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const T0: i64 = 1_700_000_000;
const CHILD_ENV: &str = "LAFS_LEASEDB_CRASH_CHILD";

fn si(i: u32) -> StorageIndex {
    let mut b = [3u8; 16];
    b[..4].copy_from_slice(&i.to_be_bytes());
    StorageIndex(b)
}

/// The child's side: runs only when re-executed by the parent with `CHILD_ENV` set.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut db = SqliteLeaseDb::open(Path::new(&path), T0).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0u32.. {
        db.add_new_share(&si(i), 0, ShareKind::Immutable, 100)
            .unwrap();
        db.add_or_renew_lease(&si(i), 0, AccountId::ANONYMOUS, T0, T0 + 1000)
            .unwrap();
        db.mark_share_stable(&si(i), 0, 200).unwrap();
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_changes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    drop(SqliteLeaseDb::open(&path, T0).unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ack = |line: std::io::Result<String>| -> Option<u32> {
        line.ok()?.strip_prefix("ack ")?.parse().ok()
    };
    let mut last = None;
    for line in lines.by_ref() {
        if let Some(i) = ack(line) {
            last = Some(i);
            if i >= 30 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-operation
    let status = child.wait().unwrap();
    assert!(!status.success());
    // Anything acknowledged before the kill landed is still in the pipe.
    for line in lines {
        if let Some(i) = ack(line) {
            last = Some(i);
        }
    }
    let last = last.expect("the child acknowledged some operations");

    let mut db = SqliteLeaseDb::open(&path, T0 + 1).expect("opens cleanly after the crash");
    for i in 0..=last {
        let rec = db
            .get_share(&si(i), 0)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged share {i} lost"));
        assert_eq!(
            (rec.state, rec.used_space),
            (ShareState::Stable, 200),
            "share {i}"
        );
        assert_eq!(db.get_leases(&si(i), 0).unwrap().len(), 1, "lease {i}");
    }
    // At most the one unacknowledged operation in flight beyond that.
    let totals = db.totals().unwrap();
    let n = totals.coming.shares + totals.stable.shares;
    assert!(
        n == u64::from(last) + 1 || n == u64::from(last) + 2,
        "{n} shares after ack {last}"
    );
    db.check_integrity().unwrap();
}

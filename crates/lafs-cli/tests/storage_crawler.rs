//! `lafs storage crawler` and `lafs storage crawl-now` against a running `lafs run` server:
//! shares copied into and removed from its storage directory by hand, seen through the CLI
//! while the server runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{LAFS, LafsServer, Scratch, run_ok, run_with_timeout};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn lafs(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(LAFS);
    c.arg("-d").arg(dir).args(args);
    c
}

fn status(dir: &Path) -> Value {
    let out = run_ok(
        &mut lafs(dir, &["storage", "crawler", "--json"]),
        Duration::from_secs(30),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn crawl_now(dir: &Path) -> Value {
    let out = run_ok(
        &mut lafs(
            dir,
            &[
                "storage",
                "crawl-now",
                "--wait",
                "--timeout",
                "120",
                "--json",
            ],
        ),
        Duration::from_secs(150),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A storage index directory with share files in stock's v1 immutable container format:
/// header (version 1, data length, 0 leases), then data.
fn write_share(shares: &Path, si: &str, shnum: u32, data: &[u8]) {
    let dir = shares.join(&si[..2]).join(si);
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(dir.join(shnum.to_string()), bytes).unwrap();
}

#[test]
fn crawler_cli_sees_shares_added_and_removed_by_hand_while_the_server_runs() {
    let scratch = Scratch::new("crawler-cli");
    let dir = scratch.join("node");
    let mut server = LafsServer::init(&dir, "crawled");

    // Before the server ever ran there is no lease database: a clear usage error.
    let out = run_with_timeout(
        &mut lafs(&dir, &["storage", "crawler"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no lease database"), "{err}");

    server.start();
    let shares = dir.join("storage/shares");
    let sis = [
        "aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "mfrggzdfmztwq2lknnwg23tpoa",
        "7777777777777777777777777q",
    ];
    for (i, si) in sis.iter().enumerate() {
        write_share(&shares, si, 0, &vec![i as u8; 100 + i]);
        write_share(&shares, si, 7, &vec![i as u8; 100 + i]);
    }
    // A share with a garbage header.
    std::fs::write(shares.join("mf/mfrggzdfmztwq2lknnwg23tpoa/9"), b"junk").unwrap();

    let cycle = crawl_now(&dir);
    let st = status(&dir);
    let adopted: u64 = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["adopted"].as_u64().unwrap())
        .sum();
    assert_eq!(adopted, 7, "{st:#}");
    assert_eq!(cycle["shares_seen"], 7, "{cycle:#}");
    assert_eq!(cycle["corrupt"], 1, "{cycle:#}");
    assert_eq!(st["last_cycle"]["cycle"], cycle["cycle"]);
    assert!(st["cycles_completed"].as_u64().unwrap() >= 1);
    assert!(st["gc_blocked"].is_null(), "{st:#}");

    // Removed by hand: the next crawl drops them.
    std::fs::remove_dir_all(shares.join("77")).unwrap();
    let cycle = crawl_now(&dir);
    assert_eq!(cycle["vanished"], 2, "{cycle:#}");
    assert_eq!(cycle["shares_seen"], 5, "{cycle:#}");
    assert_eq!(cycle["adopted"], 0, "{cycle:#}");

    // The text form.
    let out = run_ok(
        &mut lafs(&dir, &["storage", "crawler"]),
        Duration::from_secs(30),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cycles completed"), "{text}");
    assert!(text.contains("2 vanished"), "{text}");

    server.stop();
    // Readable with the server stopped too; the request without --wait is queued.
    assert!(status(&dir)["cycles_completed"].as_u64().unwrap() >= 2);
    run_ok(
        &mut lafs(&dir, &["storage", "crawl-now"]),
        Duration::from_secs(30),
    );
    assert_eq!(status(&dir)["pending_requests"], 1);
}

fn accounts_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["storage", "accounts"];
    all.extend_from_slice(args);
    let out = run_ok(&mut lafs(dir, &all), Duration::from_secs(30));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn accounts_cli_lists_and_controls_accounts_while_the_server_runs() {
    let scratch = Scratch::new("accounts-cli");
    let dir = scratch.join("node");
    let mut server = LafsServer::init(&dir, "accounts");
    server.start();
    let shares = dir.join("storage/shares");
    write_share(&shares, "aaaaaaaaaaaaaaaaaaaaaaaaaa", 0, &[1; 100]);
    write_share(&shares, "aaaaaaaaaaaaaaaaaaaaaaaaaa", 1, &[1; 100]);
    write_share(&shares, "mfrggzdfmztwq2lknnwg23tpoa", 0, &[2; 50]);
    crawl_now(&dir);

    let list = accounts_json(&dir, &["list", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:#?}");
    assert_eq!(list[0]["name"], "anonymous");
    assert_eq!(list[1]["name"], "starter");
    // The crawler's adopted shares are the starter account's.
    assert_eq!(list[1]["used"], 250);
    assert_eq!(list[1]["shares"], 3);
    assert_eq!(list[1]["leases"], 3);
    for key in ["id", "name", "enabled", "quota", "used", "shares", "leases"] {
        assert!(list[0].get(key).is_some(), "{key} in {:#}", list[0]);
    }
    assert_eq!(list[0]["quota"], Value::Null);

    let out = run_ok(
        &mut lafs(
            &dir,
            &[
                "storage",
                "accounts",
                "add",
                "--pubkey",
                "v0-testkey",
                "--name",
                "alice",
                "--quota",
                "5GB",
            ],
        ),
        Duration::from_secs(30),
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(id, "2");
    let a = accounts_json(&dir, &["show", "v0-testkey", "--json"]);
    assert_eq!(
        (a["id"].as_i64(), a["quota"].as_u64()),
        (Some(2), Some(5_000_000_000))
    );
    run_ok(
        &mut lafs(&dir, &["storage", "accounts", "set-quota", "2", "100MiB"]),
        Duration::from_secs(30),
    );
    run_ok(
        &mut lafs(&dir, &["storage", "accounts", "disable", "2"]),
        Duration::from_secs(30),
    );
    let a = accounts_json(&dir, &["show", "2", "--json"]);
    assert_eq!(a["quota"], 100 << 20);
    assert_eq!(a["enabled"], false);
    run_ok(
        &mut lafs(&dir, &["storage", "accounts", "enable", "2"]),
        Duration::from_secs(30),
    );
    run_ok(
        &mut lafs(&dir, &["storage", "accounts", "set-quota", "2", "none"]),
        Duration::from_secs(30),
    );
    let a = accounts_json(&dir, &["show", "2", "--json"]);
    assert_eq!(
        (a["enabled"].as_bool(), a["quota"].is_null()),
        (Some(true), true)
    );
    // Bad input: clear usage errors, nothing changed.
    for args in [
        vec!["storage", "accounts", "set-quota", "2", "lots"],
        vec!["storage", "accounts", "show", "99"],
        vec!["storage", "accounts", "disable", "no-such-key"],
        vec!["storage", "accounts", "add", "--pubkey", "v0-testkey"],
    ] {
        let out = run_with_timeout(&mut lafs(&dir, &args), Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        accounts_json(&dir, &["list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    server.stop();
}

#[test]
fn lafs_run_rebuilds_a_garbage_leasedb_and_loses_no_share() {
    let scratch = Scratch::new("crawler-rebuild");
    let dir = scratch.join("node");
    let mut server = LafsServer::init(&dir, "rebuild");
    server.start();
    let shares = dir.join("storage/shares");
    write_share(&shares, "aaaaaaaaaaaaaaaaaaaaaaaaaa", 0, &[1; 100]);
    write_share(&shares, "mfrggzdfmztwq2lknnwg23tpoa", 3, &[2; 50]);
    crawl_now(&dir);
    server.stop();
    let db = dir.join("storage/leasedb.sqlite");
    std::fs::write(&db, vec![0x42u8; 10_000]).unwrap();
    // A new name, so a new log: LafsServer::start would otherwise find the first run's
    // "listening" line in the appended log before the restart has opened its database.
    let mut server = LafsServer::existing(&dir, "rebuild-2");
    server.start();
    let st = status(&dir);
    assert!(
        !st["gc_blocked"].is_null(),
        "GC blocked after a rebuild: {st:#}"
    );
    let cycle = crawl_now(&dir);
    let st = status(&dir);
    let adopted: u64 = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["adopted"].as_u64().unwrap())
        .sum();
    assert_eq!(adopted, 2, "{st:#}");
    assert_eq!(cycle["shares_seen"], 2);
    assert!(st["gc_blocked"].is_null(), "{st:#}");
    assert_eq!(common::count_share_files(&shares), 2);
    // The damaged file was set aside, not deleted.
    let aside = std::fs::read_dir(dir.join("storage"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(aside, "the corrupt database is kept for forensics");
    server.stop();
}

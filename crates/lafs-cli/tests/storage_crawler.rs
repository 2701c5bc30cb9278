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

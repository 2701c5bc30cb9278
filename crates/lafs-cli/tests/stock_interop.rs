//! Stock Tahoe-LAFS 1.20 against lafs storage servers, through stock's own CLI:
//!
//! - a stock client storing and reading everything (immutable, directories, MDMF; check,
//!   verify, deep-check with leases) on a grid of ten `lafs run` servers;
//! - `lafs run` taking over the directory of a stock storage node, with the stock client (same
//!   `servers.yaml`, same NURL) reading back what stock stored and writing more.
//!
//! Stock Tahoe comes from the venv `interop/tahoe-venv.sh` creates (`scripts/test-all.sh` runs
//! it; `LAFS_TAHOE_VENV` overrides its location). Without it these tests fail, they never skip.
//! Every process is killed when its guard drops, on success and on failure; failures print the
//! servers' and nodes' logs. `LAFS_TEST_KEEP=1` keeps the scratch directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    LafsServer, Scratch, StockClient, StockStorageNode, assert_same_bytes, random_bytes, run_ok,
    tahoe_venv,
};
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const CONNECT_LIMIT: Duration = Duration::from_secs(60);

/// Writes `len` random bytes to `scratch/files/name`.
fn data_file(scratch: &Scratch, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    let dir = scratch.join("files");
    fs::create_dir_all(&dir).unwrap();
    let data = random_bytes(len);
    let path = dir.join(name);
    fs::write(&path, &data).unwrap();
    (path, data)
}

/// Where `tahoe get` writes `name`.
fn out_file(scratch: &Scratch, name: &str) -> PathBuf {
    let dir = scratch.join("got");
    fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The names `tahoe ls ALIAS:PATH` prints.
fn ls(client: &StockClient, path: &str) -> BTreeSet<String> {
    client
        .tahoe_stdout(&["ls", path])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Parses deep-check's last line, `done: N objects checked, H healthy, U unhealthy`.
fn deep_check_counts(out: &str) -> (u64, u64, u64) {
    let line = out
        .lines()
        .rfind(|l| l.starts_with("done:"))
        .unwrap_or_else(|| panic!("no summary line in deep-check output:\n{out}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 3, "unexpected deep-check summary {line:?}");
    (nums[0], nums[1], nums[2])
}

fn step(start: Instant, what: &str) {
    eprintln!("[{:6.1}s] {what}", start.elapsed().as_secs_f64());
}

#[test]
fn stock_client_on_ten_lafs_servers() {
    const SERVERS: usize = 10;
    let t0 = Instant::now();
    tahoe_venv();
    let scratch = Scratch::new("interop-ten");

    // Ten lafs storage servers, and the stock client created meanwhile.
    let mut servers: Vec<LafsServer> = (0..SERVERS)
        .map(|i| LafsServer::init(&scratch.join(&format!("lafs{i}")), &format!("lafs{i}")))
        .collect();
    let entries: String = servers.iter().map(LafsServer::announcement).collect();
    let client_dir = scratch.join("client");
    let mut client = thread::scope(|s| {
        let client = s.spawn(|| StockClient::create(&client_dir, 3, 7, 10, &entries));
        for srv in &mut servers {
            srv.spawn();
        }
        for srv in &mut servers {
            srv.wait_ready(Duration::from_secs(30));
        }
        client.join().expect("create the stock client")
    });
    step(t0, "servers ready, client created");
    client.spawn();
    client.wait_connected(SERVERS, CONNECT_LIMIT);
    step(t0, "client connected to all servers");

    // Immutable files: LIT (0 bytes), and CHK of 56 bytes, 1 MiB + 1, 20 MiB.
    let mut caps = Vec::new();
    for (name, len) in [
        ("empty", 0),
        ("small", 56),
        ("mib1", MIB + 1),
        ("mib20", 20 * MIB),
    ] {
        let (path, data) = data_file(&scratch, name, len);
        let cap = client.put(&[], &path, None);
        if len == 0 {
            assert_eq!(cap, "URI:LIT:", "empty file");
        } else {
            assert!(
                cap.starts_with("URI:CHK:") && cap.ends_with(&format!(":3:10:{len}")),
                "{name}: unexpected cap {cap}"
            );
        }
        step(t0, &format!("put {name} ({len} bytes)"));
        caps.push((name, cap, data));
    }
    for (name, cap, data) in &caps {
        let got = client.get(cap, &out_file(&scratch, name));
        assert_same_bytes(&format!("get {name}"), &got, data);
        step(t0, &format!("got {name} back"));
    }
    let cap_of = |want: &str| {
        caps.iter()
            .find(|(n, _, _)| *n == want)
            .map(|(_, c, _)| c.clone())
            .unwrap()
    };

    // MDMF: put, read, overwrite in place (different size), read again.
    let (mdmf_path, mdmf_data) = data_file(&scratch, "mdmf-v1", MIB + 3);
    let mdmf = client.put(&["--format=MDMF"], &mdmf_path, None);
    assert!(mdmf.starts_with("URI:MDMF:"), "MDMF cap {mdmf}");
    let got = client.get(&mdmf, &out_file(&scratch, "mdmf-v1"));
    assert_same_bytes("MDMF first version", &got, &mdmf_data);
    let (mdmf2_path, mdmf2_data) = data_file(&scratch, "mdmf-v2", MIB + 4096 + 7);
    client.put(&[], &mdmf2_path, Some(&mdmf));
    let got = client.get(&mdmf, &out_file(&scratch, "mdmf-v2"));
    assert_same_bytes("MDMF after modification", &got, &mdmf2_data);
    step(t0, "MDMF put, modify, get");

    // A directory (SDMF mutable file, written with read-test-write on every change).
    let dircap = client.tahoe_stdout(&["mkdir"]);
    assert!(dircap.starts_with("URI:DIR2:"), "dircap {dircap}");
    client.tahoe(&["add-alias", "grid", &dircap]);
    client.tahoe(&["ln", &cap_of("small"), "grid:small.bin"]);
    client.tahoe(&["ln", &cap_of("empty"), "grid:empty"]);
    client.tahoe(&["ln", &mdmf, "grid:mdmf.bin"]);
    let (child_path, child_data) = data_file(&scratch, "child", 300 * 1024 + 11);
    let child_cap = client.put(&[], &child_path, Some("grid:child.bin"));
    client.tahoe(&["mkdir", "grid:sub"]);
    client.tahoe(&["ln", &cap_of("mib1"), "grid:sub/mib1.bin"]);
    assert_eq!(
        ls(&client, "grid:"),
        names(&["child.bin", "empty", "mdmf.bin", "small.bin", "sub"])
    );
    assert_eq!(ls(&client, "grid:sub"), names(&["mib1.bin"]));
    let got = client.get("grid:child.bin", &out_file(&scratch, "child"));
    assert_same_bytes("directory child", &got, &child_data);
    let got = client.get("grid:sub/mib1.bin", &out_file(&scratch, "sub-mib1"));
    assert_same_bytes("nested child", &got, &caps[2].2);
    step(t0, "directory built, listed, read");

    // Checker and verifier: every server holds one good share of the 1 MiB file.
    let r = client.check(&cap_of("mib1"), true);
    assert_eq!(r["results"]["healthy"], true, "check --verify: {r:#}");
    assert_eq!(r["results"]["count-shares-good"], 10, "{r:#}");
    assert_eq!(r["results"]["count-good-share-hosts"], 10, "{r:#}");
    assert_eq!(r["results"]["count-corrupt-shares"], 0, "{r:#}");
    let r = client.check(&mdmf, true);
    assert_eq!(r["results"]["healthy"], true, "MDMF check --verify: {r:#}");
    assert_eq!(r["results"]["count-shares-good"], 10, "{r:#}");
    let r = client.check(&child_cap, true);
    assert_eq!(r["results"]["healthy"], true, "child check --verify: {r:#}");

    // Deep check adding leases: root, sub, and the 5 files below (LIT included) are healthy.
    let out = client.tahoe_stdout(&["deep-check", "--add-lease", "grid:"]);
    let (checked, healthy, unhealthy) = deep_check_counts(&out);
    assert!(
        checked == 7 && healthy == checked && unhealthy == 0,
        "deep-check: {out}"
    );
    step(t0, "check --verify and deep-check --add-lease");

    // The shares really are on the lafs servers, spread over all of them: 10 shares of each of
    // the 7 non-LIT files and directories.
    let counts: Vec<usize> = servers.iter().map(LafsServer::share_files).collect();
    assert!(
        counts.iter().all(|&c| c > 0) && counts.iter().sum::<usize>() == 70,
        "share files per server: {counts:?}"
    );
    for srv in &mut servers {
        srv.proc().assert_running();
    }
    step(t0, &format!("share files per server: {counts:?}"));
}

#[test]
fn lafs_takes_over_a_stock_storage_node() {
    let t0 = Instant::now();
    tahoe_venv();
    let scratch = Scratch::new("interop-takeover");

    // A stock storage node and a stock 1-of-1 client using it.
    let mut node = StockStorageNode::create(&scratch.join("stock"), "stock1");
    let client_dir = scratch.join("client");
    node.start();
    let mut client = StockClient::create(&client_dir, 1, 1, 1, &node.announcement());
    client.spawn();
    client.wait_connected(1, CONNECT_LIMIT);
    step(t0, "stock node and client up");

    // Store things through stock.
    let mut files = Vec::new();
    for (name, len) in [("empty", 0), ("small", 56), ("mib1", MIB + 1)] {
        let (path, data) = data_file(&scratch, name, len);
        let cap = client.put(&[], &path, None);
        files.push((name, cap, data));
    }
    let dircap = client.tahoe_stdout(&["mkdir"]);
    assert!(dircap.starts_with("URI:DIR2:"), "dircap {dircap}");
    client.tahoe(&["add-alias", "grid", &dircap]);
    let (child1_path, child1_data) = data_file(&scratch, "child1", 5000);
    client.put(&[], &child1_path, Some("grid:child1"));
    let (mdmf_path, mdmf_data) = data_file(&scratch, "mdmf-v1", 256 * 1024 + 5);
    let mdmf = client.put(&["--format=MDMF"], &mdmf_path, None);
    assert!(mdmf.starts_with("URI:MDMF:"), "MDMF cap {mdmf}");
    // Shares: 56 bytes, 1 MiB + 1, the directory, its child, the MDMF file (LIT has none).
    let shares_dir = node.dir.join("storage/shares");
    let stock_shares = common::count_share_files(&shares_dir);
    assert_eq!(stock_shares, 5, "share files on the stock node");
    step(t0, "files stored on the stock node");

    // Replace the stock node with lafs, on the same directory (same cert, swissnum, port).
    node.stop();
    step(t0, "stock node stopped");
    let mut lafs = LafsServer::existing(&node.dir, "stock1-on-lafs");
    let addr = lafs.start();
    assert_eq!(addr, node.addr(), "lafs listens where the stock node did");
    client.wait_connected(1, CONNECT_LIMIT);
    step(t0, "lafs serving the stock node's directory");

    // One crawl adopts every share stock wrote (before any client request touched them).
    run_ok(
        Command::new(common::LAFS).arg("-d").arg(&node.dir).args([
            "storage",
            "crawl-now",
            "--wait",
            "--timeout",
            "120",
        ]),
        Duration::from_secs(150),
    );
    let out = run_ok(
        Command::new(common::LAFS).arg("-d").arg(&node.dir).args([
            "storage",
            "crawler",
            "--json",
            "--history",
            "10",
        ]),
        Duration::from_secs(30),
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let adopted: u64 = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["adopted"].as_u64().unwrap())
        .sum();
    assert_eq!(adopted, 5, "every stock share adopted: {status:#}");
    assert_eq!(status["last_cycle"]["shares_seen"], 5, "{status:#}");
    assert_eq!(status["last_cycle"]["corrupt"], 0, "{status:#}");
    assert!(status["cycles_completed"].as_u64().unwrap() >= 1);
    step(t0, "one crawl adopted every stock share");

    // Everything stock stored reads back byte-identical through lafs.
    for (name, cap, data) in &files {
        let got = client.get(cap, &out_file(&scratch, name));
        assert_same_bytes(&format!("get {name} via lafs"), &got, data);
    }
    assert_eq!(ls(&client, "grid:"), names(&["child1"]));
    let got = client.get("grid:child1", &out_file(&scratch, "child1"));
    assert_same_bytes("directory child via lafs", &got, &child1_data);
    let got = client.get(&mdmf, &out_file(&scratch, "mdmf-v1"));
    assert_same_bytes("MDMF via lafs", &got, &mdmf_data);
    let r = client.check(&files[2].1, true);
    assert_eq!(
        r["results"]["healthy"], true,
        "check --verify via lafs: {r:#}"
    );
    assert_eq!(r["results"]["count-shares-good"], 1, "{r:#}");
    step(t0, "stock's data read back through lafs");

    // Mutable writes to stock-written shares through lafs: a new directory child, a new MDMF
    // version; and a new immutable upload.
    let (child2_path, child2_data) = data_file(&scratch, "child2", 70_000);
    client.put(&[], &child2_path, Some("grid:child2"));
    assert_eq!(ls(&client, "grid:"), names(&["child1", "child2"]));
    let got = client.get("grid:child2", &out_file(&scratch, "child2"));
    assert_same_bytes("new child via lafs", &got, &child2_data);
    let (mdmf2_path, mdmf2_data) = data_file(&scratch, "mdmf-v2", 300 * 1024 + 1);
    client.put(&[], &mdmf2_path, Some(&mdmf));
    let got = client.get(&mdmf, &out_file(&scratch, "mdmf-v2"));
    assert_same_bytes("MDMF modified via lafs", &got, &mdmf2_data);
    let (new_path, new_data) = data_file(&scratch, "new", 200_000);
    let new_cap = client.put(&[], &new_path, None);
    let got = client.get(&new_cap, &out_file(&scratch, "new"));
    assert_same_bytes("new upload via lafs", &got, &new_data);
    // lafs kept stock's layout: mutable shares were changed in place, two new immutable ones.
    assert_eq!(
        common::count_share_files(&shares_dir),
        stock_shares + 2,
        "share files after the writes through lafs"
    );
    step(t0, "writes through lafs");

    // The stock client sent no client certificate: everything it leased is the anonymous
    // account's, and no other account was created.
    let lafs_cmd = |args: &[&str]| {
        let mut c = Command::new(common::LAFS);
        c.arg("-d")
            .arg(&node.dir)
            .args(["storage", "accounts"])
            .args(args);
        c
    };
    let out = run_ok(&mut lafs_cmd(&["list", "--json"]), Duration::from_secs(30));
    let accounts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accounts = accounts.as_array().unwrap();
    assert_eq!(accounts.len(), 2, "{accounts:#?}");
    assert_eq!(accounts[0]["name"], "anonymous");
    assert!(
        accounts[0]["used"].as_u64().unwrap() > 200_000,
        "the stock client's uploads are anonymous: {accounts:#?}"
    );
    // With anonymous use disabled, the stock client can no longer upload, but still reads.
    run_ok(
        &mut lafs_cmd(&["disable", "anonymous"]),
        Duration::from_secs(30),
    );
    let (refused_path, _) = data_file(&scratch, "refused", 100_000);
    let out = common::run_with_timeout(
        common::tahoe_cmd()
            .arg("-d")
            .arg(&client.dir)
            .arg("put")
            .arg(&refused_path),
        Duration::from_secs(180),
    );
    assert!(
        !out.status.success(),
        "upload with anonymous disabled must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = client.get(&new_cap, &out_file(&scratch, "new-again"));
    assert_same_bytes("read with anonymous disabled", &got, &new_data);
    step(
        t0,
        "stock client is anonymous; refused uploads when anonymous is disabled",
    );

    lafs.stop();
    step(t0, "lafs stopped cleanly");
}

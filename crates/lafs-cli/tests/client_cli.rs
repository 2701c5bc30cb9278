//! The client as a user meets it: `lafs local-grid` (ten real storage servers and a client in
//! one process, real sockets), `lafs put`/`lafs get` through the web API, the web API itself
//! (ranges, `?t=json`, welcome JSON and HTML), `lafs init` of client nodes, and the errors a
//! user sees (node not running, caps that are malformed or name nothing, unhappy uploads).
//!
//! One grid serves the whole round-trip test (creating ten servers is the slow part); the
//! error tests need no grid or a tiny one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client_common;
mod common;

use client_common::{
    LafsClient, LocalGrid, get, http, lafs, lafs_stdin, ok_stdout, put, text, try_http,
};
use common::{LafsServer, Scratch, assert_same_bytes, free_port, random_bytes};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: usize = 1 << 20;

fn data_file(scratch: &Scratch, name: &str, data: &[u8]) -> PathBuf {
    let dir = scratch.join("files");
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

fn one_line_error(o: &std::process::Output, code: i32, what: &str) -> String {
    let err = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: exit {:?}, stderr {err:?}",
        o.status
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err:?}"
    );
    assert!(err.starts_with("lafs: "), "{what}: {err:?}");
    err
}

fn cap_storage_index(cap: &str) -> String {
    let v: Value =
        serde_json::from_str(&ok_stdout(&lafs(&["cap", "show", cap]), "cap show")).unwrap();
    v["storage_index"].as_str().unwrap().to_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn local_grid_put_get_ranges_json_and_restart() {
    let scratch = Scratch::new("local-grid");
    let grid_dir = scratch.join("grid");
    let log = scratch.join("local-grid.log");
    let mut grid = LocalGrid::start(&grid_dir, 10, &log);
    let client = grid.client_dir();
    let web = grid.web;

    // What it tells the user to try.
    let cd = client.display().to_string();
    assert!(
        grid.stdout.contains(&format!("-d {cd} put FILE")),
        "{}",
        grid.stdout
    );
    assert!(grid.stdout.contains(&format!("-d {cd} get CAP OUTFILE")));
    assert!(grid.stdout.contains("(created now)"));

    // Welcome JSON: stock's keys plus this node's own status.
    let v = http(web, "GET", "/?t=json", &[], b"").json();
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 10);
    for srv in servers {
        assert!(srv["nodeid"].as_str().unwrap().starts_with("v0-"), "{srv}");
        assert!(srv["nickname"].as_str().unwrap().starts_with("storage-"));
        assert_eq!(srv["connection_status"], "connected");
        assert!(srv["available_space"].as_u64().unwrap() > 0, "{srv}");
        assert!(srv["version"].as_str().unwrap().starts_with("lafs/"));
        assert!(srv["last_received_data"].as_f64().unwrap() > 1.0e9);
    }
    assert_eq!(v["introducers"]["statuses"], Value::Array(vec![]));
    let node = &v["node"];
    assert_eq!(node["servers_connected"], 10);
    assert_eq!(node["nickname"], "local-grid-client");
    assert!(node["nodeid"].as_str().unwrap().starts_with("v0-"));
    assert_eq!(
        node["shares"],
        serde_json::json!({"needed": 3, "happy": 7, "total": 10})
    );

    // The HTML page a person reads.
    let page = http(web, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = text(&page.body);
    assert!(html.contains("<table"), "{html}");
    for i in 1..=10 {
        assert!(
            html.contains(&format!("storage-{i:02}")),
            "storage-{i:02} missing"
        );
    }
    assert_eq!(html.matches("<tr class=\"up\">").count(), 10, "{html}");

    // Round trips, with -d before and after the subcommand.
    let big = 12 * MIB + 7;
    let mut caps = Vec::new();
    for (i, len) in [0, 55, 56, MIB + 1, big].into_iter().enumerate() {
        let data = random_bytes(len);
        let file = data_file(&scratch, &format!("f{len}"), &data);
        let cap = if i % 2 == 0 {
            put(&client, &file)
        } else {
            let o = lafs(&["put", s(&file), "-d", &cd]);
            ok_stdout(&o, "put with -d after")
        };
        if len <= 55 {
            assert!(cap.starts_with("URI:LIT:"), "{len}: {cap}");
        } else {
            assert!(cap.starts_with("URI:CHK:"), "{len}: {cap}");
            assert!(cap.ends_with(&format!(":3:10:{len}")), "{cap}");
        }
        let out = scratch.join(&format!("out{len}"));
        let got = if i % 2 == 0 {
            let o = lafs(&["get", &cap, s(&out), "--node-directory", &cd]);
            ok_stdout(&o, "get with --node-directory after");
            fs::read(&out).unwrap()
        } else {
            get(&client, &cap, &out)
        };
        assert_same_bytes(&format!("{len} bytes"), &got, &data);
        caps.push((len, cap, data));
    }
    let (_, big_cap, big_data) = caps.last().cloned().unwrap();
    // The node's caps are the ones stock would make: same as the offline computation with the
    // node's convergence secret and stock's parameters (multi-segment file).
    let big_file = scratch.join("files").join(format!("f{big}"));
    let secret = client.join("private/convergence");
    let dry = lafs(&[
        "put",
        "--dry-run",
        "--convergence-secret-file",
        s(&secret),
        s(&big_file),
    ]);
    assert_eq!(ok_stdout(&dry, "dry run"), big_cap);

    // `get` to standard output; `put --json`; `put -` from standard input gives the same cap
    // (convergent encryption) as the file did.
    let (_, mib_cap, mib_data) = caps[3].clone();
    let o = lafs(&["-d", &cd, "get", &mib_cap]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_same_bytes("get to stdout", &o.stdout, &mib_data);
    let o = lafs_stdin(&["-d", &cd, "put", "-"], mib_data.clone());
    assert_eq!(ok_stdout(&o, "put -"), mib_cap);
    let file = data_file(&scratch, "json", &mib_data);
    let j: Value = serde_json::from_str(&ok_stdout(
        &lafs(&["-d", &cd, "put", "--json", s(&file)]),
        "put --json",
    ))
    .unwrap();
    assert_eq!(j["cap"], mib_cap.as_str());
    assert_eq!(j["size"], MIB + 1);

    // The web API directly: PUT /uri answers the cap.
    let small = random_bytes(4096);
    let r = http(web, "PUT", "/uri", &[], &small);
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let small_cap = text(&r.body);
    assert!(small_cap.starts_with("URI:CHK:"), "{small_cap}");
    let r = http(web, "GET", &format!("/uri/{small_cap}"), &[], b"");
    assert_eq!(r.status, 200);
    assert_same_bytes("GET /uri/$CAP", &r.body, &small);
    // Escaped caps (as stock's CLI sends them) work too.
    let escaped = small_cap.replace(':', "%3A");
    let r = http(web, "GET", &format!("/uri/{escaped}"), &[], b"");
    assert_same_bytes("escaped cap", &r.body, &small);

    // ?t=json shapes.
    let j = http(web, "GET", &format!("/uri/{big_cap}?t=json"), &[], b"").json();
    assert_eq!(j[0], "filenode");
    let m = &j[1];
    assert_eq!(m["mutable"], false);
    assert_eq!(m["format"], "CHK");
    assert_eq!(m["size"], big);
    assert_eq!(m["ro_uri"], big_cap.as_str());
    assert!(
        m["verify_uri"]
            .as_str()
            .unwrap()
            .starts_with("URI:CHK-Verifier:")
    );
    assert!(m.get("rw_uri").is_none());
    let (_, lit_cap, _) = &caps[1];
    let j = http(web, "GET", &format!("/uri/{lit_cap}?t=json"), &[], b"").json();
    assert_eq!(j[1]["size"], 55);
    assert_eq!(j[1]["ro_uri"], lit_cap.as_str());
    assert!(
        j[1].get("verify_uri").is_none(),
        "stock gives LIT no verify cap"
    );

    // Byte ranges: 206 with Content-Range, only the bytes asked for.
    let seg = 128 * 1024;
    let size = big as u64;
    for (range, first, last) in [
        ("bytes=0-0", 0u64, 0u64),
        ("bytes=1000-300000", 1000, 300_000),
        (
            &format!("bytes={}-{}", 3 * seg - 5, 3 * seg + 5) as &str,
            3 * seg as u64 - 5,
            3 * seg as u64 + 5,
        ),
        ("bytes=-100", size - 100, size - 1),
        (
            &format!("bytes={}-", size - 10) as &str,
            size - 10,
            size - 1,
        ),
        (
            &format!("bytes={}-{}", size - 3, size + 1000) as &str,
            size - 3,
            size - 1,
        ),
        ("bytes=5-9, 20-30", 5, 9),
    ] {
        let r = http(
            web,
            "GET",
            &format!("/uri/{big_cap}"),
            &[("Range", range)],
            b"",
        );
        assert_eq!(r.status, 206, "{range}: {}", text(&r.body));
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/{size}").as_str()),
            "{range}"
        );
        assert_same_bytes(range, &r.body, &big_data[first as usize..=last as usize]);
    }
    let r = http(
        web,
        "GET",
        &format!("/uri/{big_cap}"),
        &[("Range", &format!("bytes={size}-{}", size + 10))],
        b"",
    );
    assert_eq!(r.status, 416);
    // Stock quirk kept: an open range starting at the end has last < first, does not parse,
    // and is ignored.
    let r = http(
        web,
        "HEAD",
        &format!("/uri/{big_cap}"),
        &[("Range", &format!("bytes={size}-"))],
        b"",
    );
    assert_eq!(r.status, 200);
    let r = http(
        web,
        "GET",
        &format!("/uri/{lit_cap}"),
        &[("Range", "bytes=50-60")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 50-54/55"));
    // A header that does not parse is ignored, as stock does.
    let r = http(
        web,
        "HEAD",
        &format!("/uri/{big_cap}"),
        &[("Range", "bytes=9-1")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(size.to_string().as_str()));
    assert!(r.body.is_empty(), "HEAD has no body");

    // Errors: malformed caps are 400, caps of files nobody stored are 410, and neither
    // echoes the cap.
    let r = http(web, "GET", "/uri/URI:CHK:notacap", &[], b"");
    assert_eq!(r.status, 400, "{}", text(&r.body));
    let unknown = data_file(&scratch, "never-stored", &random_bytes(5000));
    let ghost = ok_stdout(&lafs(&["put", "--dry-run", s(&unknown)]), "dry run");
    let r = http(web, "GET", &format!("/uri/{ghost}"), &[], b"");
    assert_eq!(r.status, 410, "{}", text(&r.body));
    let ghost_key = ghost.split(':').nth(2).unwrap();
    assert!(!text(&r.body).contains(ghost_key), "error echoes the cap");
    let out = scratch.join("ghost.out");
    let o = lafs(&["-d", &cd, "get", &ghost, s(&out)]);
    let err = one_line_error(&o, 1, "get of a cap nobody stored");
    assert!(err.contains("410"), "{err}");
    assert!(!err.contains(ghost_key), "{err}");
    assert!(!out.exists(), "a failed get leaves no file");
    let o = lafs(&["-d", &cd, "get", "URI:CHK:bad", s(&out)]);
    one_line_error(&o, 2, "get of a malformed cap");
    let r = http(web, "GET", "/nowhere", &[], b"");
    assert_eq!(r.status, 404);
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains(ghost_key) && !log_text.contains(big_cap.split(':').nth(2).unwrap()),
        "caps in the log"
    );
    assert!(
        fs::read_dir(client.join("private/tmp")).unwrap().count() == 0,
        "spool files left behind"
    );

    // A download that goes bad after it started: every share's block of segment 11 is
    // corrupted on disk. The first 11 MiB stream out (correct), then the node cuts the
    // response short; `lafs get` says so in one line and leaves no file.
    let bad = random_bytes(12 * MIB + 11);
    let bad_file = data_file(&scratch, "goes-bad", &bad);
    let bad_cap = put(&client, &bad_file);
    let si = cap_storage_index(&bad_cap);
    // Stock's container header (0x0c) and share header v1 (0x24); 1 MiB segments rounded up
    // to a multiple of k = 3 give blocks of 349,526 bytes.
    let offset = 0x0c + 0x24 + 11 * 349_526 + 100;
    let mut corrupted = 0;
    for i in 1..=10 {
        let d = grid_dir
            .join(format!("storage-{i:02}/storage/shares"))
            .join(&si[..2])
            .join(&si);
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let mut b = fs::read(e.path()).unwrap();
            for x in &mut b[offset..offset + 64] {
                *x ^= 0xff;
            }
            fs::write(e.path(), &b).unwrap();
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 10, "shares of the file found on disk");
    let r = http(web, "GET", &format!("/uri/{bad_cap}"), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(bad.len().to_string().as_str())
    );
    assert!(
        r.body.len() >= 11 * MIB && r.body.len() < bad.len(),
        "got {} bytes",
        r.body.len()
    );
    assert_same_bytes(
        "prefix before the bad segment",
        &r.body,
        &bad[..r.body.len()],
    );
    let out = scratch.join("goes-bad.out");
    let o = lafs(&["-d", &cd, "get", &bad_cap, s(&out)]);
    let err = one_line_error(&o, 1, "download that breaks off");
    assert!(err.contains("broke off"), "{err}");
    assert!(!out.exists(), "a broken download leaves no file");

    // SIGTERM stops everything cleanly; the second run reuses the grid (same web address,
    // same files).
    let status = grid.proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "local-grid exited with {status}");
    assert!(
        try_http(web, "GET", "/", &[], b"").is_err(),
        "still serving"
    );
    let again = LocalGrid::start(&grid_dir, 10, &scratch.join("local-grid-2.log"));
    assert_eq!(again.web, web, "the web port is kept");
    assert!(again.stdout.contains("(reused)"), "{}", again.stdout);
    let got = get(&client, &big_cap, &scratch.join("again"));
    assert_same_bytes("after restart", &got, &big_data);
}

#[test]
fn put_and_get_without_a_running_node_fail_in_one_line() {
    let scratch = Scratch::new("no-node");
    let file = data_file(&scratch, "f", &random_bytes(1000));
    let f = s(&file);

    // Not a node directory at all.
    let empty = scratch.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let o = lafs(&["-d", s(&empty), "put", f]);
    let err = one_line_error(&o, 1, "put in a non-node dir");
    assert!(err.contains("not a node directory"), "{err}");

    // A client node never started.
    let node = scratch.join("node");
    let o = lafs(&[
        "init",
        "--web",
        &format!("127.0.0.1:{}", free_port()),
        s(&node),
    ]);
    ok_stdout(&o, "init");
    for args in [
        vec!["-d", s(&node), "put", f],
        vec!["put", f, "-d", s(&node)],
        vec!["get", "URI:LIT:nbswy3dp", "-d", s(&node)],
    ] {
        let o = lafs(&args);
        let err = one_line_error(&o, 1, "never started");
        assert!(
            err.contains("has not run yet") && err.contains("lafs run"),
            "{err}"
        );
    }

    // Started once, not running now (node.url names a port nobody listens on); found through
    // LAFS_NODE_DIR.
    fs::write(
        node.join("node.url"),
        format!("http://127.0.0.1:{}/\n", free_port()),
    )
    .unwrap();
    let o = common::run_with_timeout(
        client_common::lafs_cmd()
            .env("LAFS_NODE_DIR", &node)
            .args(["put", f]),
        Duration::from_secs(30),
    );
    let err = one_line_error(&o, 1, "not running");
    assert!(err.contains("is not running"), "{err}");
}

#[test]
fn init_writes_a_client_node_like_stock() {
    let scratch = Scratch::new("init-client");
    let node = scratch.join("c");
    let o = lafs(&[
        "init",
        "--shares-needed",
        "2",
        "--shares-happy",
        "4",
        "--shares-total",
        "5",
        s(&node),
    ]);
    ok_stdout(&o, "init");
    let cfg = fs::read_to_string(node.join("tahoe.cfg")).unwrap();
    for line in [
        "shares.needed = 2",
        "shares.happy = 4",
        "shares.total = 5",
        "web.port = tcp:3456:interface=127.0.0.1",
        "enabled = false",
    ] {
        assert!(cfg.contains(line), "{line} missing from:\n{cfg}");
    }
    // Secrets in stock's format: base32 of 32 bytes, lowercase, unpadded, newline.
    for name in ["secret", "convergence"] {
        let t = fs::read_to_string(node.join("private").join(name)).unwrap();
        assert!(t.ends_with('\n'));
        let t = t.trim();
        assert_eq!(t.len(), 52, "{name}: {t}");
        assert!(
            t.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)),
            "{name}: {t}"
        );
    }
    let yaml = fs::read_to_string(node.join("private/servers.yaml")).unwrap();
    assert!(yaml.contains("# ") && yaml.contains("storage:"), "{yaml}");

    // Both: storage enabled, client settings, servers.yaml.
    let both = scratch.join("both");
    ok_stdout(
        &lafs(&[
            "init",
            "--client",
            "--storage",
            "--web",
            "127.0.0.1:0",
            s(&both),
        ]),
        "init both",
    );
    let cfg = fs::read_to_string(both.join("tahoe.cfg")).unwrap();
    assert!(
        cfg.contains("enabled = true") && cfg.contains("shares.needed = 3"),
        "{cfg}"
    );
    assert!(both.join("private/servers.yaml").exists());

    // Storage only: no client settings, no web, no servers.yaml.
    let stor = scratch.join("stor");
    ok_stdout(&lafs(&["init", "--storage", s(&stor)]), "init storage");
    let cfg = fs::read_to_string(stor.join("tahoe.cfg")).unwrap();
    assert!(!cfg.contains("shares.needed"), "{cfg}");
    assert!(!stor.join("private/servers.yaml").exists());

    // Impossible shares settings are refused, and nothing is created.
    let bad = scratch.join("bad");
    let o = lafs(&[
        "init",
        "--shares-needed",
        "7",
        "--shares-total",
        "5",
        s(&bad),
    ]);
    one_line_error(&o, 2, "k > N");
    assert!(!bad.exists());
}

#[test]
fn upload_without_enough_servers_fails_clearly() {
    let scratch = Scratch::new("unhappy");
    // Two real servers; one is stopped before the upload, so happiness 2 cannot be reached.
    let mut a = LafsServer::init(&scratch.join("a"), "a");
    let mut b = LafsServer::init(&scratch.join("b"), "b");
    a.start();
    b.start();
    let entries = format!("{}{}", a.announcement(), b.announcement());
    let mut client = LafsClient::create(&scratch.join("client"), 1, 2, 2, &entries);
    client.start(2);
    b.stop();
    let file = data_file(&scratch, "f", &random_bytes(MIB));
    let o = lafs(&["-d", s(&client.dir), "put", s(&file)]);
    let err = one_line_error(&o, 1, "unhappy put");
    assert!(err.contains("500") && err.contains("shares.happy"), "{err}");
    assert!(err.contains("b ("), "names the failed server: {err}");
    // The one good server holds nothing: the allocation was aborted.
    assert_eq!(a.share_files(), 0);
    // The welcome JSON shows which server is down, and why.
    let v = http(client.web, "GET", "/?t=json", &[], b"").json();
    let by_nick = |n: &str| {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["nickname"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_nick("a")["connected"], true);
    let down = by_nick("b");
    assert_eq!(down["connected"], false, "{down}");
    assert!(
        down["connection_status"]
            .as_str()
            .unwrap()
            .starts_with("disconnected: "),
        "{down}"
    );
    assert_eq!(v["node"]["servers_connected"], 1);
    // With the server back, the same put works.
    let addr = b.start();
    common::poll(
        "b to listen again",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            if common::listening(addr) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    );
    let cap = put(&client.dir, &file);
    assert!(
        cap.starts_with("URI:CHK:1:2:") || cap.contains(":1:2:"),
        "{cap}"
    );
}

#[test]
fn client_and_storage_in_one_node() {
    let scratch = Scratch::new("both");
    let dir = scratch.join("both");
    let web = format!("127.0.0.1:{}", free_port());
    ok_stdout(
        &lafs(&[
            "init",
            "--client",
            "--storage",
            "--web",
            &web,
            "--shares-needed",
            "1",
            "--shares-happy",
            "1",
            "--shares-total",
            "2",
            s(&dir),
        ]),
        "init --client --storage",
    );
    // The node stores on itself.
    let ann = ok_stdout(&lafs(&["storage", "announcement", s(&dir)]), "announcement");
    let entry: String = ann.lines().map(|l| format!("  {l}\n")).collect();
    fs::write(
        dir.join("private/servers.yaml"),
        format!("storage:\n{entry}"),
    )
    .unwrap();
    let log = scratch.join("both.log");
    let mut cmd = client_common::lafs_cmd();
    cmd.arg("run").arg(&dir).env("LAFS_LOG", "info");
    let mut proc = common::Proc::spawn("lafs run (client and storage)", cmd, &log);
    client_common::wait_connected(&mut proc, web.parse().unwrap(), 1);
    let data = random_bytes(300_000);
    let file = data_file(&scratch, "f", &data);
    let cap = put(&dir, &file);
    assert!(cap.ends_with(":1:2:300000"), "{cap}");
    assert_same_bytes("own shares", &get(&dir, &cap, &scratch.join("out")), &data);
    assert!(common::count_share_files(&dir.join("storage/shares")) == 2);
    // The same web port serves the client and the storage server's pages.
    let addr: std::net::SocketAddr = web.parse().unwrap();
    let st = client_common::http(addr, "GET", "/storage?t=json", &[], b"").json();
    assert_eq!(st["totals"]["stable"]["shares"], 2, "{st:#}");
    let key = ok_stdout(&lafs(&["-d", s(&dir), "account", "key"]), "account key");
    let mine: Vec<_> = st["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["pubkey"] == key.trim())
        .collect();
    assert_eq!(mine.len(), 1, "{st:#}");
    assert_eq!(mine[0]["shares"], 2, "{st:#}");
    assert_eq!(mine[0]["used"], st["totals"]["stable"]["used"], "{st:#}");
    let home = client_common::http(addr, "GET", "/", &[], b"");
    assert!(client_common::text(&home.body).contains("href=\"/storage\""));
    let r = client_common::http(addr, "GET", "/storage/accounts?t=html", &[], b"");
    assert_eq!(r.status, 400);
    let r = client_common::http(addr, "POST", "/storage", &[], b"");
    assert_eq!(r.status, 405);
    let status = proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

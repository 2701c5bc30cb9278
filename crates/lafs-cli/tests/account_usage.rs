//! Accounts seen from the client: two lafs client nodes, each with its own account key made
//! by `lafs init`, upload to four `lafs run` servers. Each client's usage, as
//! `lafs account usage --json` sums it over the grid, must equal what the operators see with
//! `lafs storage accounts list --json` for that key on each server, and both must equal the
//! share data on the servers' disks, counted independently from the share files. The storage
//! nodes' web pages (`/storage`, `/storage/accounts`, as JSON and as HTML rendered by headless
//! Chromium, with a screenshot) must show the same numbers as the operator's CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client_common;
mod common;

use client_common::{LafsClient, http, lafs, node_addr, ok_stdout, put};
use common::{LafsServer, Scratch, random_bytes};
use lafs_storage::leasedb::{LeaseDb, SqliteLeaseDb};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Bytes of share data of storage index `si` on the server in `dir`: every complete share
/// file's length minus its 12-byte container header.
fn share_data_on_disk(dir: &Path, si: &str) -> u64 {
    let d = dir.join("storage/shares").join(&si[..2]).join(si);
    std::fs::read_dir(d).map_or(0, |rd| {
        rd.flatten().map(|e| e.metadata().unwrap().len() - 12).sum()
    })
}

fn storage_index_of(cap: &str) -> String {
    let o = lafs(&["cap", "show", cap]);
    let v: Value = serde_json::from_str(&ok_stdout(&o, "lafs cap show")).unwrap();
    v["storage_index"].as_str().unwrap().to_owned()
}

fn json(args: &[&str]) -> Value {
    let o = lafs(args);
    serde_json::from_str(&ok_stdout(&o, &args.join(" "))).unwrap()
}

#[test]
fn two_clients_see_their_own_exact_usage() {
    let scratch = Scratch::new("account-usage");
    let mut servers: Vec<LafsServer> = (0..4)
        .map(|i| LafsServer::init_web(&scratch.join(&format!("s{i}")), &format!("s{i}")))
        .collect();
    for s in &mut servers {
        s.start();
    }
    let entries: String = servers.iter_mut().map(|s| s.announcement()).collect();
    let mut clients: Vec<LafsClient> = ["alice", "bob"]
        .iter()
        .map(|n| LafsClient::create(&scratch.join(n), 2, 3, 4, &entries))
        .collect();
    for c in &mut clients {
        c.start(4);
    }
    let keys: Vec<String> = clients
        .iter()
        .map(|c| {
            let o = lafs(&["-d", c.dir.to_str().unwrap(), "account", "key"]);
            ok_stdout(&o, "lafs account key").trim().to_owned()
        })
        .collect();
    assert_ne!(keys[0], keys[1]);
    for k in &keys {
        assert!(k.starts_with("pub-v0-") && k.len() == 59, "{k}");
    }

    // Alice stores two files, Bob one; sizes differ so that mixing them up shows.
    let mut sis: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for (who, size) in [(0, 100_000), (0, 7_000), (1, 300_000)] {
        let f = scratch.join(&format!("f{who}-{size}"));
        std::fs::write(&f, random_bytes(size)).unwrap();
        let cap = put(&clients[who].dir, &f);
        sis[who].push(storage_index_of(&cap));
    }

    for (who, c) in clients.iter().enumerate() {
        let on_disk: u64 = servers
            .iter()
            .flat_map(|s| sis[who].iter().map(|si| share_data_on_disk(&s.dir, si)))
            .sum();
        let shares_on_disk = 4 * sis[who].len() as u64;
        assert!(on_disk > 0);

        // What the client sums over the grid.
        let u = json(&["-d", c.dir.to_str().unwrap(), "account", "usage", "--json"]);
        assert_eq!(u["account"], keys[who].as_str());
        assert_eq!(u["total"]["used"].as_u64(), Some(on_disk), "{u:#}");
        assert_eq!(u["total"]["shares"].as_u64(), Some(shares_on_disk), "{u:#}");
        let rows = u["servers"].as_array().unwrap();
        assert_eq!(rows.len(), 4);

        // What each server's operator sees for that key, server by server.
        let mut operator_total = 0;
        for s in &servers {
            let list = json(&[
                "storage",
                "accounts",
                "-d",
                s.dir.to_str().unwrap(),
                "list",
                "--json",
            ]);
            let mine = list
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["pubkey"] == keys[who].as_str())
                .unwrap_or_else(|| panic!("{} has no account for {}: {list:#}", s.name, keys[who]));
            let used = mine["used"].as_u64().unwrap();
            let disk: u64 = sis[who]
                .iter()
                .map(|si| share_data_on_disk(&s.dir, si))
                .sum();
            assert_eq!(used, disk, "{}: {mine:#}", s.name);
            let row = rows
                .iter()
                .find(|r| r["name"] == s.name.as_str())
                .unwrap_or_else(|| panic!("no row for {} in {u:#}", s.name));
            assert_eq!(row["used"].as_u64(), Some(used), "{row:#}");
            assert_eq!(row["status"], "ok");
            operator_total += used;
            // Nothing of this client's is filed under the anonymous account.
            let anon = &list.as_array().unwrap()[0];
            assert_eq!(anon["name"], "anonymous");
            assert_eq!(anon["used"], 0, "{anon:#}");
        }
        assert_eq!(operator_total, on_disk);
    }
    for s in &servers {
        pages_agree_with_cli(s, None);
    }

    // A quota refuses the upload that would cross it, clearly, leaving nothing behind.
    let alice = clients[0].dir.to_str().unwrap().to_owned();
    for s in &servers {
        let d = s.dir.to_str().unwrap();
        let o = lafs(&[
            "storage",
            "accounts",
            "-d",
            d,
            "set-quota",
            &keys[0],
            "200KB",
        ]);
        ok_stdout(&o, "set-quota");
    }
    let big = scratch.join("big");
    std::fs::write(&big, random_bytes(900_000)).unwrap();
    let o = lafs(&["-d", &alice, "put", big.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("quota"), "{err}");
    eprintln!("quota refusal: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let incoming = |s: &LafsServer| -> usize {
        fn walk(p: &Path) -> usize {
            std::fs::read_dir(p).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
        }
        // Staged uploads are unnamed files where the filesystem has them: the lease
        // database's COMING shares count them either way.
        let db = s.dir.join("storage/leasedb.sqlite");
        let coming = SqliteLeaseDb::open_admin(&db)
            .and_then(|mut d| d.totals())
            .unwrap_or_else(|e| panic!("{}: {e}", db.display()))
            .coming
            .shares;
        walk(&s.dir.join("storage/shares/incoming")) + coming as usize
    };
    for s in &servers {
        assert_eq!(incoming(s), 0, "{} kept a partial upload", s.name);
    }
    // A small file still fits.
    let small = scratch.join("small");
    std::fs::write(&small, random_bytes(2_000)).unwrap();
    put(&clients[0].dir, &small);

    // A disabled account cannot upload, but can still read.
    let bob = clients[1].dir.to_str().unwrap().to_owned();
    let bobs = scratch.join("bobs");
    std::fs::write(&bobs, random_bytes(50_000)).unwrap();
    let bob_cap = put(&clients[1].dir, &bobs);
    for s in &servers {
        let d = s.dir.to_str().unwrap();
        ok_stdout(
            &lafs(&["storage", "accounts", "-d", d, "disable", &keys[1]]),
            "disable",
        );
    }
    let o = lafs(&["-d", &bob, "put", small.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("disabled"), "{err}");
    eprintln!("disabled refusal: {err}");
    let back = client_common::get(&clients[1].dir, &bob_cap, &scratch.join("bobs.out"));
    assert_eq!(back, std::fs::read(&bobs).unwrap());

    // After quota and disable, the pages still agree with the CLI, and render in a browser.
    for (i, s) in servers.iter().enumerate() {
        let shot = (i == 0).then(|| scratch.join("storage-page.png"));
        pages_agree_with_cli(s, shot.as_deref());
    }

    // Text output for people, and a clear failure when no server answers.
    let o = lafs(&["-d", clients[0].dir.to_str().unwrap(), "account", "usage"]);
    let t = ok_stdout(&o, "lafs account usage");
    assert!(t.contains(&keys[0]) && t.contains("total"), "{t}");
    for s in &mut servers {
        s.stop();
    }
    let o = lafs(&["-d", clients[0].dir.to_str().unwrap(), "account", "usage"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no server reported"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("unreachable"));
}

/// `1234567` as `1,234,567` (written here independently of the server's formatting).
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checks the storage node's web pages against `lafs storage accounts list --json`: the JSON
/// pages must hold exactly the CLI's account objects; the HTML pages (as served, and as
/// Chromium's DOM after rendering when `screenshot` is given) must show each account's used
/// bytes, shares, leases, quota and state, and the totals. A screenshot is taken to `screenshot`.
fn pages_agree_with_cli(s: &LafsServer, screenshot: Option<&Path>) {
    let d = s.dir.to_str().unwrap();
    let cli = json(&["storage", "accounts", "-d", d, "list", "--json"]);
    let cli = cli.as_array().unwrap();
    let addr = node_addr(&s.dir);

    let r = http(addr, "GET", "/storage/accounts?t=json", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let page = r.json();
    assert_eq!(page["accounts"].as_array().unwrap(), cli, "{}", s.name);

    let r = http(addr, "GET", "/storage?t=json", &[], b"");
    assert_eq!(r.status, 200);
    let status = r.json();
    assert_eq!(status["accounts"].as_array().unwrap(), cli, "{}", s.name);
    assert_eq!(status["node"]["nickname"], s.name.as_str());
    assert!(status["crawler"]["cycles_completed"].is_u64(), "{status:#}");
    assert!(status["gc"]["history"].is_array(), "{status:#}");
    let leases: u64 = cli.iter().map(|a| a["leases"].as_u64().unwrap()).sum();
    assert_eq!(
        status["totals"]["leases"].as_u64(),
        Some(leases),
        "{status:#}"
    );
    assert!(leases > 0);

    // A storage-only node has no client: `/` leads to the storage page, client paths 404.
    let r = http(addr, "GET", "/", &[], b"");
    assert_eq!((r.status, r.header("location")), (303, Some("/storage")));
    assert_eq!(
        http(addr, "GET", "/uri/URI:LIT:nbswy3dp", &[], b"").status,
        404
    );

    let mut htmls = Vec::new();
    for path in ["/storage", "/storage/accounts"] {
        let r = http(addr, "GET", path, &[], b"");
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        htmls.push((path.to_string(), String::from_utf8(r.body).unwrap()));
    }
    if let Some(png) = screenshot {
        let url = format!("http://{addr}/storage");
        htmls.push(("chromium DOM of /storage".into(), chromium_dom(&url)));
        chromium_screenshot(&url, png);
    }
    for (what, html) in &htmls {
        for a in cli {
            let id = a["id"].as_u64().unwrap();
            let used = a["used"].as_u64().unwrap();
            let want = [
                format!(
                    "id=\"account-{id}-used\" data-bytes=\"{used}\">({} bytes)<",
                    thousands(used)
                ),
                format!("id=\"account-{id}-shares\">{}<", a["shares"]),
                format!("id=\"account-{id}-leases\">{}<", a["leases"]),
                match a["quota"].as_u64() {
                    Some(q) => format!("id=\"account-{id}-quota\" data-bytes=\"{q}\""),
                    None => format!("id=\"account-{id}-quota\">none<"),
                },
                format!(
                    "<tr class=\"{0}\" id=\"account-{id}\">",
                    if a["enabled"] == true {
                        "enabled"
                    } else {
                        "disabled"
                    }
                ),
            ];
            for w in want {
                assert!(html.contains(&w), "{}: {what} lacks {w}:\n{html}", s.name);
            }
        }
        let w = format!("id=\"accounts-total-leases\">{leases}<");
        assert!(html.contains(&w), "{}: {what} lacks {w}:\n{html}", s.name);
    }
}

/// The Chromium binary: `LAFS_CHROMIUM`, else `chromium`, `chromium-browser` or
/// `google-chrome` on the PATH. Missing, the test fails under `CI=true` (the README's test
/// command installs it) and otherwise skips the browser checks with a message.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LAFS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "headless Chromium is needed for the web page checks (apt-get install chromium)"
        );
        eprintln!("SKIPPED the Chromium checks: no chromium on the PATH (set LAFS_CHROMIUM)");
    }
    found
}

fn chromium_cmd(extra: &[&str], url: &str, profile: &Path) -> Option<std::process::Output> {
    let bin = chromium()?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url);
    let o = common::run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "chromium {extra:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(o)
}

fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    chromium_cmd(&["--dump-dom"], url, profile.path())
        .map(|o| String::from_utf8(o.stdout).unwrap())
        .unwrap_or_default()
}

/// Takes a 1280x900 screenshot; checks it is a PNG of that size with more than one colour's
/// worth of bytes (a blank page compresses to a few hundred).
fn chromium_screenshot(url: &str, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let arg = format!("--screenshot={}", png.display());
    if chromium_cmd(
        &[&arg, "--window-size=1280,900", "--hide-scrollbars"],
        url,
        profile.path(),
    )
    .is_none()
    {
        return;
    }
    let b = std::fs::read(png).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    assert_eq!((w, h), (1280, 900));
    assert!(
        b.len() > 10_000,
        "screenshot looks blank ({} bytes)",
        b.len()
    );
    eprintln!("screenshot of {url}: {} ({} bytes)", png.display(), b.len());
}

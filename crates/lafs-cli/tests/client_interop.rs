//! The lafs client against stock Tahoe-LAFS 1.20, through each side's own CLI:
//!
//! - ten stock storage servers: `lafs put` stores, stock's `tahoe get` reads (and its web API
//!   serves byte ranges); with the same convergence secret both clients make the same caps;
//! - ten lafs storage servers: `tahoe put` stores, `lafs get` reads (and lafs's web API serves
//!   byte ranges);
//! - a mixed grid of five of each, both ways.
//!
//! Leases: a stock client sharing the lafs client's `private/secret` renews the leases lafs
//! took on stock servers (`tahoe check --add-lease` leaves one lease per share), while one
//! with its own secret adds a second: lafs derives lease secrets exactly as stock does.
//!
//! Sizes: 0, 55 (literal), 56, 1 MiB, 1 MiB + 1, 50 MiB. The servers are started once for the
//! whole file (creating twenty nodes is the slow part) and shared by the three grids; each
//! grid gets its own pair of clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client_common;
mod common;

use client_common::{LafsClient, get, http, put, text};
use common::{LafsServer, Scratch, StockClient, StockStorageNode, assert_same_bytes, random_bytes};
use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

const MIB: usize = 1 << 20;
const SIZES: [usize; 6] = [0, 55, 56, MIB, MIB + 1, 50 * MIB];

struct Files {
    files: Vec<(usize, PathBuf, Vec<u8>)>,
}

impl Files {
    fn new(scratch: &Scratch, tag: &str) -> Self {
        let dir = scratch.join(&format!("files-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        let files = SIZES
            .iter()
            .map(|&n| {
                let data = random_bytes(n);
                let p = dir.join(format!("f{n}"));
                fs::write(&p, &data).unwrap();
                (n, p, data)
            })
            .collect();
        Self { files }
    }
}

/// Reads bytes of `cap` through a web API with a Range header and checks them.
fn check_ranges(web: std::net::SocketAddr, cap: &str, data: &[u8], who: &str) {
    let size = data.len();
    for (first, last) in [
        (0, 0),
        (1000, 200_000),
        (size - 300_000, size - 1),
        (size / 2, size / 2 + 131_072),
    ] {
        let r = http(
            web,
            "GET",
            &format!("/uri/{cap}"),
            &[("Range", &format!("bytes={first}-{last}"))],
            b"",
        );
        assert_eq!(
            r.status,
            206,
            "{who} range {first}-{last}: {}",
            text(&r.body)
        );
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/{size}").as_str()),
            "{who}"
        );
        assert_same_bytes(
            &format!("{who} range {first}-{last}"),
            &r.body,
            &data[first..=last],
        );
    }
}

/// The lease count of every share file of storage index `si` on stock servers (stock's
/// immutable share header: version, unused, number of leases; big-endian u32s).
fn stock_lease_counts(servers: &[&StockStorageNode], si: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for n in servers {
        let d = n.dir.join("storage/shares").join(&si[..2]).join(si);
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let b = fs::read(e.path()).unwrap();
                out.push(u32::from_be_bytes(b[8..12].try_into().unwrap()));
            }
        }
    }
    out
}

/// What leases a stock client's `tahoe check --add-lease` should leave on stock-held shares
/// of a file the lafs client stored: 1 each when both clients share `private/secret` (the
/// same lease secrets: the lease is renewed), 2 each when they do not (a second lease).
#[derive(Clone, Copy)]
enum Leases {
    Shared,
    Separate,
}

/// `lafs put` on `lafs`, `tahoe get` on `stock`; then `tahoe put` on `stock`, `lafs get` on
/// `lafs`. Byte ranges of the largest file through both web APIs. Leases checked on the 1 MiB
/// file.
fn both_ways(
    scratch: &Scratch,
    tag: &str,
    lafs: &LafsClient,
    stock: &StockClient,
    same_caps: bool,
    stock_servers: &[&StockStorageNode],
    leases: Leases,
) {
    let files = Files::new(scratch, tag);
    let out_dir = scratch.join(&format!("out-{tag}"));
    fs::create_dir_all(&out_dir).unwrap();
    for (n, path, data) in &files.files {
        let cap = put(&lafs.dir, path);
        if *n == MIB && !stock_servers.is_empty() {
            stock.tahoe(&["check", "--add-lease", &cap]);
            let si = cap_storage_index(&cap);
            let counts = stock_lease_counts(stock_servers, &si);
            assert!(!counts.is_empty(), "{tag}: no shares on stock servers");
            let want = match leases {
                Leases::Shared => 1,
                Leases::Separate => 2,
            };
            assert!(
                counts.iter().all(|&c| c == want),
                "{tag}: lease counts {counts:?}, want {want} each"
            );
        }
        let got = stock.get(&cap, &out_dir.join(format!("stock-got-{n}")));
        assert_same_bytes(
            &format!("{tag}: lafs put, stock get, {n} bytes"),
            &got,
            data,
        );
        if *n == 50 * MIB {
            check_ranges(stock.web, &cap, data, &format!("{tag}: stock web API"));
        }
        let stock_cap = stock.put(&[], path, None);
        if same_caps {
            assert_eq!(
                stock_cap, cap,
                "{tag}: {n} bytes: same convergence, different caps"
            );
        }
        let got = get(
            &lafs.dir,
            &stock_cap,
            &out_dir.join(format!("lafs-got-{n}")),
        );
        assert_same_bytes(
            &format!("{tag}: stock put, lafs get, {n} bytes"),
            &got,
            data,
        );
        if *n == 50 * MIB {
            check_ranges(lafs.web, &stock_cap, data, &format!("{tag}: lafs web API"));
        }
    }
}

/// Stock's own CLI pointed at the lafs client node (it finds the web API through `node.url`).
fn stock_cli_on_lafs_node(scratch: &Scratch, lafs: &LafsClient) {
    let data = random_bytes(MIB + 3);
    let file = scratch.join("stock-cli-file");
    fs::write(&file, &data).unwrap();
    let out = common::run_ok(
        common::tahoe_cmd()
            .arg("-d")
            .arg(&lafs.dir)
            .arg("put")
            .arg(&file),
        Duration::from_secs(120),
    );
    let cap = text(&out.stdout).trim().to_owned();
    assert!(cap.starts_with("URI:CHK:"), "tahoe put via lafs: {cap:?}");
    let got = scratch.join("stock-cli-got");
    common::run_ok(
        common::tahoe_cmd()
            .arg("-d")
            .arg(&lafs.dir)
            .args(["get", &cap])
            .arg(&got),
        Duration::from_secs(120),
    );
    assert_same_bytes(
        "tahoe put/get through a lafs node",
        &fs::read(&got).unwrap(),
        &data,
    );
}

fn cap_storage_index(cap: &str) -> String {
    let o = client_common::lafs(&["cap", "show", cap]);
    let v: serde_json::Value =
        serde_json::from_str(&client_common::ok_stdout(&o, "cap show")).unwrap();
    v["storage_index"].as_str().unwrap().to_owned()
}

fn entries<'a>(list: impl IntoIterator<Item = &'a String>) -> String {
    list.into_iter().cloned().collect()
}

#[test]
fn lafs_client_and_stock_client_on_stock_lafs_and_mixed_grids() {
    let scratch = Scratch::new("client-interop");
    // Ten stock and ten lafs storage servers, created and started in parallel.
    let mut stock: Vec<StockStorageNode> = thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let dir = scratch.join(&format!("stock{i}"));
                s.spawn(move || {
                    let mut n = StockStorageNode::create(&dir, &format!("stock{i}"));
                    n.start();
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ours: Vec<LafsServer> = (0..10)
        .map(|i| LafsServer::init(&scratch.join(&format!("lafs{i}")), &format!("lafs{i}")))
        .collect();
    for s in &mut ours {
        s.spawn();
    }
    for s in &mut ours {
        s.wait_ready(Duration::from_secs(30));
    }
    let stock_ann: Vec<String> = stock.iter().map(StockStorageNode::announcement).collect();
    let lafs_ann: Vec<String> = ours.iter().map(LafsServer::announcement).collect();

    let all_stock: Vec<&StockStorageNode> = stock.iter().collect();
    let grids = [
        (
            "stock-servers",
            entries(&stock_ann),
            true,
            &all_stock[..],
            Leases::Shared,
        ),
        (
            "lafs-servers",
            entries(&lafs_ann),
            false,
            &[][..],
            Leases::Separate,
        ),
        (
            "mixed",
            entries(stock_ann[..5].iter().chain(&lafs_ann[..5])),
            false,
            &all_stock[..5],
            Leases::Separate,
        ),
    ];
    for (tag, yaml, same_caps, stock_servers, leases) in grids {
        let mut lafs = LafsClient::create(
            &scratch.join(&format!("lafs-client-{tag}")),
            3,
            7,
            10,
            &yaml,
        );
        let mut stock_client = StockClient::create(
            &scratch.join(&format!("stock-client-{tag}")),
            3,
            7,
            10,
            &yaml,
        );
        if same_caps {
            // Same convergence secret: both clients must produce the same caps.
            fs::copy(
                lafs.dir.join("private/convergence"),
                stock_client.dir.join("private/convergence"),
            )
            .unwrap();
        }
        if let Leases::Shared = leases {
            // Same lease secret: stock's lease renewal must find lafs's leases.
            fs::copy(
                lafs.dir.join("private/secret"),
                stock_client.dir.join("private/secret"),
            )
            .unwrap();
        }
        lafs.start(10);
        stock_client.spawn();
        stock_client.wait_connected(10, Duration::from_secs(60));
        both_ways(
            &scratch,
            tag,
            &lafs,
            &stock_client,
            same_caps,
            stock_servers,
            leases,
        );
        if tag == "lafs-servers" {
            stock_cli_on_lafs_node(&scratch, &lafs);
        }
        stock_client.proc().terminate(Duration::from_secs(30));
        lafs.proc
            .as_mut()
            .unwrap()
            .terminate(Duration::from_secs(30));
    }
    drop(all_stock);
    for s in &mut stock {
        s.stop();
    }
    for s in &mut ours {
        s.stop();
    }
}

//! Fault tests on an in-process grid over real sockets: ten real lafs storage servers (disk
//! backend, SQLite leasedb, TLS), each behind a TCP proxy that can hang or kill it, reached
//! through a `Grid` loaded from a real `servers.yaml` exactly as the client node does. The
//! engine's logic is covered exhaustively in `engine_local.rs`; this file checks that the
//! same promises hold when the faults are on the wire and on disk:
//! - servers killed mid-upload: success while happiness holds; a clear error and aborted
//!   allocations on the survivors when it cannot;
//! - 7 of 10 servers hung: the download finishes from the other 3, long before any timeout;
//! - every byte of one share corrupted on disk in turn: the download is still right and the
//!   corruption is reported to the server; all shares corrupt: a clear error, no wrong bytes;
//! - a server presenting another certificate than its NURL pins is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{LafsServer, Proxy, ProxyMode};
use lafs_client::download::{DownloadConfig, DownloadError, download};
use lafs_client::store::Store;
use lafs_client::upload::{KeyChoice, UploadConfig, UploadError, UploadOutcome, upload_file};
use lafs_client::{ClientOptions, Grid, Timeouts};
use lafs_core::cap::{Cap, ChkCap};
use lafs_protocol::StorageIndex;
use lafs_storage::leasedb::ShareState;
use tokio::sync::mpsc;

const SECRET: &[u8] = b"lease secret of the test client";

/// Ten servers, ten proxies, and a client grid that knows the servers by the proxies'
/// addresses.
struct TestGrid {
    servers: Vec<LafsServer>,
    proxies: Vec<Proxy>,
    grid: Grid,
    _node: tempfile::TempDir,
}

/// Long enough that a test finishing "within seconds" proves no timeout was waited for.
fn patient() -> ClientOptions {
    ClientOptions {
        timeouts: Timeouts {
            connect: Duration::from_secs(120),
            control: Duration::from_secs(120),
            write: Duration::from_secs(120),
            read_test_write: Duration::from_secs(120),
            read_response: Duration::from_secs(120),
            read_idle: Duration::from_secs(120),
        },
        ..ClientOptions::default()
    }
}

impl TestGrid {
    /// `n` servers; the NURL of server `wrong_cert` (if any) pins another certificate.
    async fn start(n: usize, wrong_cert: Option<usize>) -> TestGrid {
        let mut servers = Vec::new();
        let mut proxies = Vec::new();
        for _ in 0..n {
            let s = LafsServer::start().await;
            let target = std::net::SocketAddr::from(([127, 0, 0, 1], s.nurl.port));
            proxies.push(Proxy::start(target).await);
            servers.push(s);
        }
        let tubid = lafs_core::base32::encode(&[5; 20]);
        let mut yaml = String::from("storage:\n");
        for (i, (s, p)) in servers.iter().zip(&proxies).enumerate() {
            let mut nurl = p.nurl(&s.nurl);
            if wrong_cert == Some(i) {
                let (other, _) = common::self_signed();
                let elsewhere = common::nurl_for(&other, p.addr, common::SWISSNUM);
                nurl = elsewhere;
            }
            yaml.push_str(&format!(
                "  server-{i}:\n    ann:\n      nickname: s{i}\n      \
                 anonymous-storage-FURL: pb://{tubid}@tcp:127.0.0.1:1/{}\n      \
                 anonymous-storage-NURLs: [\"{nurl}\"]\n",
                common::SWISSNUM
            ));
        }
        let node = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(node.path().join("private")).unwrap();
        std::fs::write(node.path().join("private/servers.yaml"), yaml).unwrap();
        let grid = Grid::load(node.path(), &patient()).unwrap();
        TestGrid {
            servers,
            proxies,
            grid,
            _node: node,
        }
    }

    fn stores(&self) -> Vec<Store> {
        self.grid
            .servers()
            .iter()
            .map(|s| s.clone() as Store)
            .collect()
    }

    /// Index of a server by its `server-N` id.
    fn index_of(name: &str) -> usize {
        name.trim_start_matches("s")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("server name {name}"))
    }

    fn shares_dir(&self, i: usize) -> PathBuf {
        self.servers[i].root.path().join("storage/shares")
    }

    /// Complete share files of `si` on server `i`.
    fn share_files(&self, i: usize, si: &StorageIndex) -> Vec<PathBuf> {
        let b32 = si.to_string();
        let dir = self.shares_dir(i).join(&b32[..2]).join(&b32);
        std::fs::read_dir(dir).map_or_else(
            |_| Vec::new(),
            |rd| rd.flatten().map(|e| e.path()).collect(),
        )
    }

    /// Uploads in progress on server `i`: shares its lease database has COMING, plus files
    /// under `shares/incoming` (staged uploads have no name there where the filesystem has
    /// unnamed files, so the database is the observable that always counts).
    async fn incoming(&self, i: usize) -> usize {
        let coming = self.servers[i]
            .db
            .shares_in_state(ShareState::Coming, 1000)
            .await
            .unwrap()
            .len();
        coming + self.incoming_files(i)
    }

    /// Files under `shares/incoming` of server `i`.
    fn incoming_files(&self, i: usize) -> usize {
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
        walk(&self.shares_dir(i).join("incoming"))
    }
}

fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn put(stores: &[Store], bytes: &[u8]) -> Result<UploadOutcome, UploadError> {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    upload_file(
        stores,
        &UploadConfig::default(),
        &KeyChoice::Random,
        SECRET,
        f.path(),
        None,
    )
    .await
}

async fn get(stores: Vec<Store>, cap: &ChkCap) -> Result<Vec<u8>, DownloadError> {
    let (tx, mut rx) = mpsc::channel(4);
    let cap = cap.clone();
    let task =
        tokio::spawn(
            async move { download(&stores, &cap, None, &DownloadConfig::default(), tx).await },
        );
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.extend_from_slice(&b);
    }
    task.await.unwrap()?;
    Ok(out)
}

fn chk(cap: &Cap) -> ChkCap {
    match cap {
        Cap::Chk(c) => c.clone(),
        _ => panic!("expected a CHK cap"),
    }
}

fn si(cap: &ChkCap) -> StorageIndex {
    StorageIndex::from(lafs_core::hashutil::storage_index_from_key(&cap.key))
}

/// Waits until every proxy in `which` has forwarded at least `bytes` of upload traffic.
async fn until_uploading(g: &TestGrid, which: &[usize], bytes: u64) {
    let t = Instant::now();
    while which
        .iter()
        .any(|&i| g.proxies[i].upstream_bytes.load(Ordering::Relaxed) < bytes)
    {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the upload never reached servers {which:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_killed_mid_upload() {
    let g = TestGrid::start(10, None).await;
    let stores = g.stores();

    // Two servers die while their shares are being written: 8 remain, happiness 7 holds.
    let d = data(24 << 20, 1);
    let base: Vec<u64> = g
        .proxies
        .iter()
        .map(|p| p.upstream_bytes.load(Ordering::Relaxed))
        .collect();
    let upload = tokio::spawn({
        let (stores, d) = (stores.clone(), d.clone());
        async move { put(&stores, &d).await }
    });
    until_uploading(&g, &[0, 1], base[0].max(base[1]) + (2 << 20)).await;
    g.proxies[0].set(ProxyMode::Cut);
    g.proxies[1].set(ProxyMode::Cut);
    let out = upload
        .await
        .unwrap()
        .expect("8 of 10 servers still make 7 happy");
    assert!(out.happiness >= 7, "happiness {}", out.happiness);
    for name in out.placement.keys() {
        let i = TestGrid::index_of(name);
        assert!(
            i >= 2,
            "{name} was killed but is reported as holding shares"
        );
    }
    let cap = chk(&out.cap);
    assert_eq!(get(stores.clone(), &cap).await.unwrap(), d);

    // Four die: 6 remain, below happiness: a clear error, and the survivors hold nothing of
    // the file, neither complete shares nor uploads in progress.
    g.proxies[0].set(ProxyMode::Pass);
    g.proxies[1].set(ProxyMode::Pass);
    // Servers 0 and 1 still hold the staged shares the first upload could not abort.
    let mut incoming_before = Vec::new();
    for i in 0..10 {
        incoming_before.push(g.incoming(i).await);
    }
    assert!(
        incoming_before[0] > 0 && incoming_before[1] > 0,
        "{incoming_before:?}"
    );
    let d2 = data(24 << 20, 2);
    let base: Vec<u64> = g
        .proxies
        .iter()
        .map(|p| p.upstream_bytes.load(Ordering::Relaxed))
        .collect();
    let upload = tokio::spawn({
        let (stores, d2) = (stores.clone(), d2.clone());
        async move { put(&stores, &d2).await }
    });
    let victims = [2, 3, 4, 5];
    let from = victims.iter().map(|&i| base[i]).max().unwrap();
    until_uploading(&g, &victims, from + (2 << 20)).await;
    for i in victims {
        g.proxies[i].set(ProxyMode::Cut);
    }
    let e = upload.await.unwrap().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, UploadError::NotHappy { .. }), "{msg}");
    assert!(msg.contains("shares.happy is 7"), "{msg}");
    for i in (0..10).filter(|i| !victims.contains(i)) {
        assert_eq!(
            g.incoming(i).await,
            incoming_before[i],
            "server {i} kept an unfinished upload"
        );
    }
    // Nothing was acknowledged as a file: no survivor lists a complete share of it. (Its
    // storage index is only known to the upload, so look for any share not of the first
    // file.)
    let first = si(&cap).to_string();
    for i in (0..10).filter(|i| !victims.contains(i)) {
        for e in std::fs::read_dir(g.shares_dir(i)).unwrap().flatten() {
            if e.file_name() == "incoming" {
                continue;
            }
            for si_dir in std::fs::read_dir(e.path()).unwrap().flatten() {
                assert_eq!(
                    si_dir.file_name().to_string_lossy(),
                    first,
                    "server {i} holds a share of the failed upload"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_of_ten_servers_hung() {
    let g = TestGrid::start(10, None).await;
    let d = data(3 << 20, 3);
    let out = put(&g.stores(), &d).await.unwrap();
    let cap = chk(&out.cap);
    // Seven servers stop answering, on the connections the upload left open and on new ones.
    for p in &g.proxies[3..] {
        p.set(ProxyMode::Hang);
    }
    let t = Instant::now();
    assert_eq!(get(g.stores(), &cap).await.unwrap(), d);
    // Through a fresh client too (no pooled connections: TLS handshakes that never finish).
    let fresh = Grid::load(g._node.path(), &patient()).unwrap();
    let stores: Vec<Store> = fresh.servers().iter().map(|s| s.clone() as Store).collect();
    assert_eq!(get(stores, &cap).await.unwrap(), d);
    // Every timeout is 120 s: finishing well before means no hung server was waited for.
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "two downloads with 7 of 10 servers hung took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_of_a_share_corrupted_on_disk_in_turn() {
    let g = TestGrid::start(10, None).await;
    // A small file (one segment) keeps a share short, so flipping each byte stays quick.
    let d = data(200, 4);
    let out = put(&g.stores(), &d).await.unwrap();
    let cap = chk(&out.cap);
    let si = si(&cap);
    let victim = 0;
    let files = g.share_files(victim, &si);
    assert_eq!(files.len(), 1, "{files:?}");
    let path = files[0].clone();
    let shnum: u16 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
    let original = std::fs::read(&path).unwrap();
    // The disk container's own header (12 bytes) is the server's business; the share the
    // client reads starts after it.
    const CONTAINER_HEADER: usize = 12;
    // The victim answers first so its share is always among the k used; the others answer
    // a little later and provide the spare.
    for p in &g.proxies[1..] {
        p.set(ProxyMode::Delay(Duration::from_millis(3)));
    }
    let db = &g.servers[victim].db;
    let lsi = lafs_storage::types::StorageIndex(*si.as_bytes());
    let mut reported = 0u64;
    let len = original.len() - CONTAINER_HEADER;
    for at in CONTAINER_HEADER..original.len() {
        let mut bad = original.clone();
        bad[at] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        let got = get(g.stores(), &cap)
            .await
            .unwrap_or_else(|e| panic!("byte {at} flipped: {e}"));
        assert!(got == d, "wrong bytes with byte {at} of the share flipped");
        // A report reaches the server's lease database; clear it for the next byte.
        let rec = db.get_share(lsi, shnum).await.unwrap().unwrap();
        if let Some(reason) = rec.corrupt_reason {
            assert!(reason.contains("reported by a client"), "{reason}");
            reported += 1;
            db.clear_share_corrupt(lsi, shnum).await.unwrap();
        }
    }
    std::fs::write(&path, &original).unwrap();
    eprintln!("{reported} of {len} flipped bytes reported as corruption");
    // Everything the download reads is verified: header, UEB, hash chain, block tree,
    // crypttext tree and blocks. Only areas it never reads (the plaintext hash tree stock
    // still lays out) go unnoticed.
    assert!(
        reported > len as u64 / 2,
        "only {reported} of {len} corruptions reported"
    );

    // Every share corrupt (one byte of block data each): a clear error, never wrong bytes.
    for i in 0..10 {
        for p in g.share_files(i, &si) {
            let mut b = std::fs::read(&p).unwrap();
            b[CONTAINER_HEADER + 0x44 + 3] ^= 0xff;
            std::fs::write(&p, b).unwrap();
        }
    }
    let e = get(g.stores(), &cap).await.unwrap_err();
    assert!(matches!(e, DownloadError::NotEnoughShares { .. }), "{e}");
    assert!(e.to_string().contains("hash"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_wrong_certificate_is_refused() {
    let g = TestGrid::start(10, Some(3)).await;
    assert_eq!(g.grid.refresh().await, 9);
    let s3 = g.grid.get("server-3").unwrap().status().snapshot();
    assert!(!s3.connected);
    let why = s3.last_error.expect("an error is recorded").1;
    assert!(why.contains("does not match the SPKI hash"), "{why}");
    // Uploads go to the nine others; server 3 never receives a byte of share data.
    let d = data(1 << 20, 5);
    let out = put(&g.stores(), &d).await.unwrap();
    assert!(!out.placement.contains_key("s3"), "{:?}", out.placement);
    let si = si(&chk(&out.cap));
    assert!(g.share_files(3, &si).is_empty());
    assert_eq!(g.incoming(3).await, 0);
    assert_eq!(get(g.stores(), &chk(&out.cap)).await.unwrap(), d);
}

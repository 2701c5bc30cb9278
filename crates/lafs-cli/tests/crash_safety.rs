//! Crash safety of the storage server: `lafs run` is killed with SIGKILL at random moments
//! while many clients upload at once, then restarted, over several rounds. After each
//! restart:
//! - `incoming/` holds nothing (partial uploads are cleaned up at start);
//! - every share whose final write was acknowledged (201) reads back intact, in this round
//!   and every later one;
//! - a share whose upload was cut short is either absent or (if it completed on the server
//!   before the kill and only the answer was lost) listed AND complete: no partial share is
//!   ever listed or served;
//! - the leasedb agrees with the disk: no share left COMING, every STABLE share is a file of
//!   the recorded size, every share file is STABLE in the leasedb.
//!
//! SIGKILL keeps the kernel's page cache, so this shows the server's protocol (commit only
//! after every byte, rename into place, leasedb state changes in the right order), not
//! power-loss durability; the server fsyncs before answering 201 for that (see
//! `backend::disk`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{LafsServer, Scratch};
use lafs_client::gbs::{AllocateSecrets, ClientOptions, ShareKind, Timeouts, WriteProgress};
use lafs_client::servers::parse_servers_yaml;
use lafs_client::{Grid, GridServer};
use lafs_protocol::{LeaseSecret, ShareNum, StorageIndex, UploadSecret};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A small deterministic generator (tests must be reproducible from the printed seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn share_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| (r.next() >> 29) as u8).collect()
}

#[derive(Debug, Clone)]
struct Upload {
    si: StorageIndex,
    shnum: ShareNum,
    seed: u64,
    len: usize,
}

fn grid_for(server: &LafsServer) -> Arc<GridServer> {
    let yaml = format!("storage:\n{}", server.announcement());
    let file = parse_servers_yaml(&yaml).unwrap();
    let opts = ClientOptions {
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            control: Duration::from_secs(5),
            write: Duration::from_secs(10),
            read_test_write: Duration::from_secs(10),
            read_response: Duration::from_secs(10),
            read_idle: Duration::from_secs(10),
        },
        get_retries: 0,
        ..ClientOptions::default()
    };
    let grid = Grid::new(file, &opts);
    grid.servers()[0].clone()
}

/// Uploads one share in random-sized pieces; `true` once the server acknowledged it complete.
async fn upload(server: &GridServer, u: &Upload, rng_seed: u64) -> bool {
    let data = share_bytes(u.seed, u.len);
    let secrets = AllocateSecrets {
        lease_renew: LeaseSecret::from_bytes([1; 32]),
        lease_cancel: LeaseSecret::from_bytes([2; 32]),
        upload: UploadSecret::new(u.seed.to_be_bytes().to_vec()).unwrap(),
    };
    let shares = BTreeSet::from([u.shnum]);
    let Ok(a) = server
        .client()
        .allocate(u.si, &secrets, &shares, u.len as u64)
        .await
    else {
        return false;
    };
    if !a.allocated.contains(&u.shnum) {
        return false;
    }
    let mut rng = Rng(rng_seed | 1);
    let mut at = 0usize;
    while at < data.len() {
        let n = (1 + rng.below(200_000) as usize).min(data.len() - at);
        let chunk = Bytes::copy_from_slice(&data[at..at + n]);
        match server
            .client()
            .write_share_chunk(u.si, u.shnum, &secrets.upload, at as u64, chunk)
            .await
        {
            Ok(WriteProgress::Complete) => return at + n == data.len(),
            Ok(WriteProgress::Incomplete(_)) => at += n,
            Err(_) => return false,
        }
    }
    false
}

fn files_under(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(p) else {
        return out;
    };
    for e in rd.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Checks every invariant against the restarted server. `acked` must read back; `cut`
/// must be absent or complete.
async fn check(dir: &Path, server: &GridServer, acked: &[Upload], cut: &[Upload]) {
    let shares_dir = dir.join("storage/shares");
    let incoming = files_under(&shares_dir.join("incoming"));
    assert!(incoming.is_empty(), "incoming/ not cleaned: {incoming:?}");

    for u in acked {
        let want = share_bytes(u.seed, u.len);
        let got = server
            .client()
            .read_share(ShareKind::Immutable, u.si, u.shnum, 0, u.len as u64 + 10)
            .await
            .unwrap_or_else(|e| panic!("acknowledged share {} {} lost: {e}", u.si, u.shnum.get()));
        assert!(
            got == want,
            "acknowledged share {} {} changed",
            u.si,
            u.shnum.get()
        );
    }
    for u in cut {
        let listed = server
            .client()
            .list_shares(ShareKind::Immutable, u.si)
            .await
            .unwrap();
        if listed.contains(&u.shnum) {
            let want = share_bytes(u.seed, u.len);
            let got = server
                .client()
                .read_share(ShareKind::Immutable, u.si, u.shnum, 0, u.len as u64 + 10)
                .await
                .unwrap();
            assert!(
                got == want,
                "share {} {} is listed but not complete ({} of {} bytes)",
                u.si,
                u.shnum.get(),
                got.len(),
                u.len
            );
        } else {
            // Not there: reading it must not serve anything either.
            assert!(
                server
                    .client()
                    .read_share(ShareKind::Immutable, u.si, u.shnum, 0, 10)
                    .await
                    .is_err(),
                "unlisted share {} {} is served",
                u.si,
                u.shnum.get()
            );
        }
    }

    // The leasedb against the disk (every storage index was touched above, so shares the
    // server found on disk have been adopted).
    let db = rusqlite::Connection::open_with_flags(
        dir.join("storage/leasedb.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut rows: BTreeMap<(String, u32), (String, i64)> = BTreeMap::new();
    let mut q = db
        .prepare("SELECT storage_index, shnum, state, used_space FROM shares")
        .unwrap();
    let it = q
        .query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, u32>(1)?),
                (r.get::<_, String>(2)?, r.get::<_, i64>(3)?),
            ))
        })
        .unwrap();
    for row in it {
        let (k, v) = row.unwrap();
        rows.insert(k, v);
    }
    let mut on_disk: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for f in files_under(&shares_dir) {
        if f.starts_with(shares_dir.join("incoming")) {
            continue;
        }
        let shnum: u32 = f.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let si = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        on_disk.insert((si, shnum), std::fs::metadata(&f).unwrap().len());
    }
    for ((si, shnum), (state, _)) in &rows {
        assert_ne!(
            state, "coming",
            "share {si} {shnum} left COMING after restart"
        );
        if state == "stable" {
            assert!(
                on_disk.contains_key(&(si.clone(), *shnum)),
                "leasedb says {si} {shnum} is STABLE but there is no file"
            );
        }
    }
    for (si, shnum) in on_disk.keys() {
        let state = rows.get(&(si.clone(), *shnum)).map(|r| r.0.as_str());
        assert_eq!(
            state,
            Some("stable"),
            "share file {si}/{shnum} is not STABLE in the leasedb"
        );
    }
}

#[test]
fn sigkill_during_concurrent_uploads_loses_nothing_acknowledged() {
    let rounds: u64 = std::env::var("LAFS_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("LAFS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test: LAFS_CRASH_SEED={seed} LAFS_CRASH_ROUNDS={rounds}");
    let scratch = Scratch::new("crash");
    let dir = scratch.join("node");
    let mut server = LafsServer::init(&dir, "crashy");
    server.start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = grid_for(&server);
    let mut rng = Rng(seed | 1);
    let mut acked_all: Vec<Upload> = Vec::new();
    let mut killed_mid_flight = 0;
    for round in 0..rounds {
        // 30 uploads at once, 1 B to 4 MiB, some sharing a storage index.
        let uploads: Vec<Upload> = (0..30)
            .map(|i| {
                let mut si = [0u8; 16];
                si[..8].copy_from_slice(&rng.next().to_be_bytes());
                si[8] = round as u8;
                si[9] = (i / 3) as u8;
                let len = match rng.below(4) {
                    0 => rng.below(100) as usize + 1,
                    1 => rng.below(64 << 10) as usize + 1,
                    _ => rng.below(4 << 20) as usize + 1,
                };
                Upload {
                    si: StorageIndex::from(si),
                    shnum: ShareNum::new((i % 3) as u8),
                    seed: rng.next(),
                    len,
                }
            })
            .collect();
        let acked = Arc::new(Mutex::new(Vec::new()));
        // Kill once a random number of uploads were acknowledged (plus a little), so every
        // round kills with some uploads done and others at every stage of progress.
        let kill_at_acks = rng.below(30) as usize;
        let jitter = Duration::from_millis(rng.below(40));
        rt.block_on(async {
            let mut js = tokio::task::JoinSet::new();
            for u in uploads.clone() {
                let (client, acked, s) = (client.clone(), acked.clone(), rng.next());
                js.spawn(async move {
                    if upload(&client, &u, s).await {
                        acked.lock().unwrap().push(u);
                    }
                });
            }
            let t = std::time::Instant::now();
            while acked.lock().unwrap().len() < kill_at_acks
                && t.elapsed() < Duration::from_secs(20)
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(jitter).await;
            server.proc().kill_now();
            while js.join_next().await.is_some() {}
        });
        let acked: Vec<Upload> = acked.lock().unwrap().clone();
        let acked_keys: BTreeSet<(StorageIndex, ShareNum)> =
            acked.iter().map(|u| (u.si, u.shnum)).collect();
        let cut: Vec<Upload> = uploads
            .into_iter()
            .filter(|u| !acked_keys.contains(&(u.si, u.shnum)))
            .collect();
        if !cut.is_empty() {
            killed_mid_flight += 1;
        }
        eprintln!(
            "round {round}: killed after {kill_at_acks} acks + {jitter:?}: {} acknowledged, {} cut short",
            acked.len(),
            cut.len()
        );
        acked_all.extend(acked);
        server.start();
        rt.block_on(check(&dir, &client, &acked_all, &cut));
    }
    assert!(
        killed_mid_flight > 0,
        "no round killed the server while uploads were in flight"
    );
    server.stop();
}

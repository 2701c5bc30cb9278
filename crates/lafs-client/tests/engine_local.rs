//! Upload and download engines against real storage servers (SQLite leasedb, memory backend)
//! called in process, with faults injected at the store boundary. The same engines over
//! HTTPS against real servers are tested elsewhere; this file covers the engine's logic
//! quickly and exhaustively.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use bytes::Bytes;
use lafs_client::download::{DownloadConfig, DownloadError, download};
use lafs_client::store::{Allocated, ShareStore, Store, StoreError, StoreErrorKind, StoreResult};
use lafs_client::upload::{KeyChoice, UploadConfig, UploadError, upload_file};
use lafs_core::cap::Cap;
use lafs_core::chk::{EncodingParams, encode_bytes};
use lafs_core::hashutil::LeaseSecrets;
use lafs_protocol::{ShareNum, StorageIndex};
use lafs_storage::backend::memory::MemoryBackend;
use lafs_storage::leasedb::{AccountId, LeaseDbHandle, OpenOptions, Synchronous};
use lafs_storage::server::{ServerConfig, StorageServer, SystemClock};
use lafs_storage::types::ShareKind;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

const SECRET: &[u8] = b"client secret";
const CONVERGENCE: &[u8] = b"convergence secret";

/// What a store does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Every request fails as unreachable.
    Down,
    /// Requests never answer.
    Hang,
    /// Reads of this share return this byte flipped (absolute share offset).
    Flip(u8, u64),
    /// Writes fail after this many succeeded.
    DieAfterWrites(u64),
}

#[derive(Debug)]
struct LocalStore {
    name: String,
    seed: [u8; 20],
    server: Arc<StorageServer>,
    fault: std::sync::Mutex<Fault>,
    writes: AtomicU64,
    /// Delay before answering share lists, in milliseconds.
    list_delay_ms: AtomicU64,
    corrupt_reports: std::sync::Mutex<Vec<(u8, String)>>,
}

fn si_of(si: StorageIndex) -> lafs_storage::types::StorageIndex {
    lafs_storage::types::StorageIndex(*si.as_bytes())
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(StoreErrorKind::Protocol, e.to_string())
}

impl LocalStore {
    async fn check(&self) -> StoreResult<()> {
        let f = *self.fault.lock().unwrap();
        match f {
            Fault::Down => Err(StoreError::new(
                StoreErrorKind::Unreachable,
                format!("{}: connection refused", self.name),
            )),
            Fault::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                unreachable!()
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ShareStore for LocalStore {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn lease_seed(&self) -> [u8; 20] {
        self.seed
    }
    fn permutation_seed(&self) -> Vec<u8> {
        self.seed.to_vec()
    }
    async fn max_immutable_share_size(&self) -> StoreResult<u64> {
        self.check().await?;
        Ok(self.server.space().await.map_err(err)?.max_immutable)
    }
    async fn allocate(
        &self,
        si: StorageIndex,
        _lease: &LeaseSecrets,
        upload_secret: &[u8],
        shares: &BTreeSet<ShareNum>,
        allocated_size: u64,
    ) -> StoreResult<Allocated> {
        self.check().await?;
        let nums = shares.iter().map(|n| u16::from(n.get())).collect();
        let (have, alloc) = self
            .server
            .allocate(
                AccountId::ANONYMOUS,
                &si_of(si),
                &nums,
                allocated_size,
                upload_secret,
            )
            .await
            .map_err(err)?;
        let conv = |s: BTreeSet<u16>| s.into_iter().map(|n| ShareNum::new(n as u8)).collect();
        Ok(Allocated {
            already_have: conv(have),
            allocated: conv(alloc),
        })
    }
    async fn write(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &[u8],
        offset: u64,
        data: Bytes,
    ) -> StoreResult<bool> {
        self.check().await?;
        let fault = *self.fault.lock().unwrap();
        if let Fault::DieAfterWrites(n) = fault
            && self.writes.fetch_add(1, Ordering::SeqCst) >= n
        {
            *self.fault.lock().unwrap() = Fault::Down;
            return Err(StoreError::new(StoreErrorKind::Unreachable, "died"));
        }
        let out = self
            .server
            .write(
                &si_of(si),
                u16::from(shnum.get()),
                upload_secret,
                offset,
                data,
            )
            .await
            .map_err(err)?;
        Ok(out.complete)
    }
    async fn abort(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &[u8],
    ) -> StoreResult<()> {
        self.server
            .abort(&si_of(si), u16::from(shnum.get()), upload_secret)
            .await
            .map_err(err)
    }
    async fn list_shares(&self, si: StorageIndex) -> StoreResult<BTreeSet<ShareNum>> {
        self.check().await?;
        let delay = self.list_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let s = self
            .server
            .list_shares(&si_of(si), ShareKind::Immutable)
            .await
            .map_err(err)?;
        Ok(s.into_iter().map(|n| ShareNum::new(n as u8)).collect())
    }
    async fn read(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> StoreResult<Bytes> {
        self.check().await?;
        let sh = u16::from(shnum.get());
        let size = self
            .server
            .share_size(ShareKind::Immutable, &si_of(si), sh)
            .await
            .map_err(err)?;
        let len = len.min(size.saturating_sub(offset));
        let mut b = if len == 0 {
            Bytes::new()
        } else {
            self.server
                .read(ShareKind::Immutable, &si_of(si), sh, offset, len)
                .await
                .map_err(err)?
        };
        let fault = *self.fault.lock().unwrap();
        if let Fault::Flip(s, at) = fault
            && s == shnum.get()
            && at >= offset
            && at < offset + b.len() as u64
        {
            let mut v = b.to_vec();
            v[(at - offset) as usize] ^= 0x01;
            b = Bytes::from(v);
        }
        Ok(b)
    }
    async fn advise_corrupt(
        &self,
        _si: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> StoreResult<()> {
        self.corrupt_reports
            .lock()
            .unwrap()
            .push((shnum.get(), reason.to_owned()));
        Ok(())
    }
}

struct Grid {
    stores: Vec<Arc<LocalStore>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Grid {
    async fn new(n: usize, cfg: ServerConfig) -> Self {
        let mut stores = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let opts = OpenOptions {
                synchronous: Synchronous::Normal,
                ..OpenOptions::default()
            };
            let db =
                LeaseDbHandle::open_sqlite(&dir.path().join("leasedb.sqlite"), 1_700_000_000, opts)
                    .await
                    .unwrap();
            let server = StorageServer::new(
                Arc::new(MemoryBackend::new()),
                db,
                cfg.clone(),
                Arc::new(SystemClock),
            );
            server.startup().await.unwrap();
            let mut seed = [0u8; 20];
            seed[0] = i as u8;
            seed[1] = 0x5a;
            stores.push(Arc::new(LocalStore {
                name: format!("server{i}"),
                seed,
                server: Arc::new(server),
                fault: std::sync::Mutex::new(Fault::None),
                writes: AtomicU64::new(0),
                list_delay_ms: AtomicU64::new(0),
                corrupt_reports: std::sync::Mutex::new(Vec::new()),
            }));
            dirs.push(dir);
        }
        Self {
            stores,
            _dirs: dirs,
        }
    }

    fn stores(&self) -> Vec<Store> {
        self.stores.iter().map(|s| s.clone() as Store).collect()
    }

    fn set(&self, i: usize, f: Fault) {
        *self.stores[i].fault.lock().unwrap() = f;
    }

    async fn share_count(&self, si: StorageIndex) -> usize {
        let mut n = 0;
        for s in &self.stores {
            n += s
                .server
                .list_shares(&si_of(si), ShareKind::Immutable)
                .await
                .unwrap()
                .len();
        }
        n
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

fn small_cfg() -> UploadConfig {
    UploadConfig {
        max_segment_size: 4096,
        batch_size: 10_000,
        encode_workers: 2,
        ..UploadConfig::default()
    }
}

async fn put(grid: &Grid, cfg: &UploadConfig, bytes: &[u8]) -> Result<Cap, UploadError> {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    let key = KeyChoice::Convergent(CONVERGENCE.to_vec());
    upload_file(&grid.stores(), cfg, &key, SECRET, f.path(), None)
        .await
        .map(|o| o.cap)
}

async fn get(grid: &Grid, cap: &Cap, range: Option<(u64, u64)>) -> Result<Vec<u8>, DownloadError> {
    let Cap::Chk(chk) = cap else {
        let Cap::Lit(l) = cap else {
            panic!("unexpected cap")
        };
        let (a, b) = range.unwrap_or((0, l.data.len() as u64));
        return Ok(l.data[a as usize..b as usize].to_vec());
    };
    let (tx, mut rx) = mpsc::channel(4);
    let stores = grid.stores();
    let chk = chk.clone();
    let cfg = DownloadConfig {
        locate_timeout: Duration::from_secs(5),
        ..DownloadConfig::default()
    };
    let task = tokio::spawn(async move { download(&stores, &chk, range, &cfg, tx).await });
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.extend_from_slice(&b);
    }
    task.await.unwrap()?;
    Ok(out)
}

fn si_of_cap(cap: &Cap) -> StorageIndex {
    let Cap::Chk(c) = cap else { panic!("not CHK") };
    StorageIndex::from(lafs_core::hashutil::storage_index_from_key(&c.key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_at_boundary_sizes_with_the_stock_cap() {
    let grid = Grid::new(10, ServerConfig::default()).await;
    let cfg = small_cfg();
    for (i, size) in [0usize, 1, 55, 56, 4095, 4096, 4097, 3 * 4096 + 1, 100_000]
        .into_iter()
        .enumerate()
    {
        let d = data(size, i as u64);
        let cap = put(&grid, &cfg, &d).await.unwrap();
        // The cap is the one the in-memory (stock-checked) encoder gives.
        let params = EncodingParams {
            needed_shares: 3,
            total_shares: 10,
            max_segment_size: 4096,
        };
        let want = encode_bytes(&d, &params, CONVERGENCE).unwrap().cap;
        assert_eq!(cap.to_string(), want.to_string(), "size {size}");
        assert_eq!(get(&grid, &cap, None).await.unwrap(), d, "size {size}");
        if size > 55 {
            assert_eq!(grid.share_count(si_of_cap(&cap)).await, 10, "size {size}");
        }
        if size >= 3 {
            for (a, b) in [(0, 1), (1, size as u64 - 1), (size as u64 / 2, size as u64)] {
                let got = get(&grid, &cap, Some((a, b))).await.unwrap();
                assert_eq!(got, d[a as usize..b as usize], "size {size} range {a}-{b}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_servers_fail_clearly_and_leave_nothing_allocated() {
    let grid = Grid::new(10, ServerConfig::default()).await;
    for i in 0..4 {
        grid.set(i, Fault::Down);
    }
    let d = data(50_000, 7);
    let e = put(&grid, &small_cfg(), &d).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            UploadError::NotHappy {
                achieved: 6,
                wanted: 7,
                ..
            }
        ),
        "{msg}"
    );
    for i in 0..4 {
        assert!(msg.contains(&format!("server{i}: unreachable")), "{msg}");
    }
    // Nothing stays allocated: re-uploading with every server up works.
    for i in 0..4 {
        grid.set(i, Fault::None);
    }
    let cap = put(&grid, &small_cfg(), &d).await.unwrap();
    assert_eq!(get(&grid, &cap, None).await.unwrap(), d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_mid_upload_is_survived_while_happiness_holds() {
    let grid = Grid::new(10, ServerConfig::default()).await;
    grid.set(3, Fault::DieAfterWrites(2));
    let d = data(200_000, 9);
    let cap = put(&grid, &small_cfg(), &d).await.unwrap();
    assert_eq!(get(&grid, &cap, None).await.unwrap(), d);
    // Four dying: happiness 6 < 7, the upload fails and aborts its allocations.
    let grid = Grid::new(10, ServerConfig::default()).await;
    for i in 0..4 {
        grid.set(i, Fault::DieAfterWrites(1));
    }
    let e = put(&grid, &small_cfg(), &d).await.unwrap_err();
    assert!(matches!(e, UploadError::NotHappy { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_servers_do_not_slow_a_download() {
    let grid = Grid::new(10, ServerConfig::default()).await;
    let d = data(100_000, 11);
    let cap = put(&grid, &small_cfg(), &d).await.unwrap();
    for i in 0..7 {
        grid.set(i, Fault::Hang);
    }
    let t = std::time::Instant::now();
    assert_eq!(get(&grid, &cap, None).await.unwrap(), d);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_byte_anywhere_in_a_share_is_detected_and_routed_around() {
    let grid = Grid::new(10, ServerConfig::default()).await;
    // Two segments, so every area of a share is small and the loop stays quick.
    let d = data(6_000, 13);
    let cap = put(&grid, &small_cfg(), &d).await.unwrap();
    let si = si_of_cap(&cap);
    // Find a server holding a share and that share's length.
    let mut holder = None;
    for (i, s) in grid.stores.iter().enumerate() {
        let shares = s
            .server
            .list_shares(&si_of(si), ShareKind::Immutable)
            .await
            .unwrap();
        if let Some(&sh) = shares.iter().next() {
            let len = s
                .server
                .share_size(ShareKind::Immutable, &si_of(si), sh)
                .await
                .unwrap();
            holder = Some((i, sh as u8, len));
            break;
        }
    }
    let (i, sh, len) = holder.unwrap();
    // That server answers first, so its share is always one of the k used; the others
    // answer a little later and provide the spare.
    for (j, s) in grid.stores.iter().enumerate() {
        if j != i {
            s.list_delay_ms.store(5, Ordering::SeqCst);
        }
    }
    let mut reported = 0;
    for at in 0..len {
        grid.set(i, Fault::Flip(sh, at));
        let got = get(&grid, &cap, None).await.unwrap();
        assert!(got == d, "wrong bytes with byte {at} of share {sh} flipped");
        reported = grid.stores[i].corrupt_reports.lock().unwrap().len();
    }
    grid.set(i, Fault::None);
    // Every byte the download reads is checked, and a flip in it is reported: the header,
    // blocks, hash chain, block tree, crypttext tree (read from the first share) and UEB.
    // Only the unused plaintext-hash-tree area and bytes past what is read go unnoticed.
    eprintln!("{reported} of {len} flipped bytes reported as corruption");
    assert!(
        reported as u64 > len / 2,
        "only {reported} of {len} corruptions reported"
    );
    // All shares corrupt: a clear error, never wrong bytes.
    for s in &grid.stores {
        let shares = s
            .server
            .list_shares(&si_of(si), ShareKind::Immutable)
            .await
            .unwrap();
        if let Some(&sh) = shares.iter().next() {
            *s.fault.lock().unwrap() = Fault::Flip(sh as u8, 0x44 + 10);
        }
    }
    let e = get(&grid, &cap, None).await.unwrap_err();
    assert!(matches!(e, DownloadError::NotEnoughShares { .. }), "{e}");
    assert!(e.to_string().contains("hash"), "{e}");
}

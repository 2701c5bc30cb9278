//! Accounting-crawler benchmark (run by `bench/crawl.sh`; figures in BENCHMARKS.md).
//!
//! Generates N synthetic shares on disk (stock v1 immutable containers, K per storage index,
//! in Tahoe's layout), then measures with the real disk backend and SQLite lease database:
//! 1. the first crawl on an empty lease database (adopts every share), unthrottled;
//! 2. a steady-state crawl (nothing to adopt), unthrottled;
//! 3. resumption: a cycle stopped half-way, the server reopened, the cycle finished;
//! 4. uploads (allocate + write of 64 KiB shares through the server, in process) alone, then
//!    with the throttled crawler running beside them: upload rate, process CPU, crawl rate.
//!
//! Usage: crawl_bench DIR [SHARES=1000000] [PER_SI=4] [LOAD_SECONDS=20]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::crawler::{Crawler, CrawlerConfig, Step};
use lafs_storage::leasedb::{AccountId, LeaseDbHandle, OpenOptions};
use lafs_storage::server::{Clock, ServerConfig, StorageServer, SystemClock};
use lafs_storage::types::StorageIndex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cpu_seconds() -> f64 {
    // utime + stime (fields 14 and 15 of /proc/self/stat), in clock ticks of 1/100 s.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn generate(shares_dir: &Path, n: u64, per_si: u64) {
    let marker = shares_dir.join(format!(".generated-{n}-{per_si}"));
    if marker.exists() {
        println!(
            "shares: reusing {n} generated shares in {}",
            shares_dir.display()
        );
        return;
    }
    let _ = std::fs::remove_dir_all(shares_dir);
    let t = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut container = Vec::new();
    container.extend_from_slice(&1u32.to_be_bytes());
    container.extend_from_slice(&100u32.to_be_bytes());
    container.extend_from_slice(&0u32.to_be_bytes());
    container.extend_from_slice(&[0x5a; 100]);
    let mut made = 0;
    while made < n {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&rng.next().to_be_bytes());
        b[8..].copy_from_slice(&rng.next().to_be_bytes());
        let si = StorageIndex(b);
        let name = si.to_base32();
        let dir = shares_dir.join(&name[..2]).join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        for sh in 0..per_si.min(n - made) {
            std::fs::write(dir.join(sh.to_string()), &container).unwrap();
            made += 1;
        }
    }
    std::fs::write(&marker, b"").unwrap();
    println!(
        "shares: generated {n} ({per_si} per storage index) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

async fn open(storage: &Path) -> Arc<StorageServer> {
    let (db, _) = LeaseDbHandle::open_sqlite_or_rebuild(
        &storage.join("leasedb.sqlite"),
        SystemClock.now(),
        OpenOptions::default(),
    )
    .await
    .unwrap();
    let backend = Arc::new(DiskBackend::open(storage.to_path_buf()).unwrap());
    let s = Arc::new(StorageServer::new(
        backend,
        db,
        ServerConfig::default(),
        Arc::new(SystemClock),
    ));
    s.startup().await.unwrap();
    s
}

async fn close(s: Arc<StorageServer>) {
    let db = s.leasedb().clone();
    drop(s);
    db.close().await.unwrap();
}

fn unthrottled() -> CrawlerConfig {
    CrawlerConfig {
        cpu_fraction: 1.0,
        min_cycle_interval: Duration::ZERO,
        ..CrawlerConfig::default()
    }
}

async fn timed_cycle(label: &str, s: &Arc<StorageServer>, n: u64) {
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let e = Crawler::new(s.clone(), unthrottled())
        .run_full_cycle()
        .await
        .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    assert_eq!(e.counters.shares_seen, n, "every share seen");
    println!(
        "{label}: {n} shares in {wall:.1} s = {:.0} shares/s; adopted {}; CPU {cpu:.1} s ({:.0}% of one core); peak RSS so far {:.0} MiB",
        n as f64 / wall,
        e.counters.adopted,
        100.0 * cpu / wall,
        peak_rss_mib()
    );
}

async fn uploads_for(s: &Arc<StorageServer>, secs: u64, salt: u64) -> u64 {
    let data = Bytes::from(vec![0x42u8; 64 * 1024]);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = Rng(0x1234_5678 ^ salt);
    let mut n = 0;
    while Instant::now() < deadline {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&rng.next().to_be_bytes());
        b[8..].copy_from_slice(&rng.next().to_be_bytes());
        let si = StorageIndex(b);
        let shnums: BTreeSet<u16> = [0].into();
        s.allocate(AccountId::ANONYMOUS, &si, &shnums, 65536, b"u")
            .await
            .unwrap();
        let out = s.write(&si, 0, b"u", 0, data.clone()).await.unwrap();
        assert!(out.complete);
        n += 1;
    }
    n
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .expect("usage: crawl_bench DIR [SHARES] [PER_SI] [LOAD_SECONDS]"),
    );
    let n: u64 = args.get(2).map_or(1_000_000, |v| v.parse().unwrap());
    let per_si: u64 = args.get(3).map_or(4, |v| v.parse().unwrap());
    let load_secs: u64 = args.get(4).map_or(20, |v| v.parse().unwrap());
    let storage = dir.join("storage");
    generate(&storage.join("shares"), n, per_si);
    for f in ["leasedb.sqlite", "leasedb.sqlite-wal", "leasedb.sqlite-shm"] {
        let _ = std::fs::remove_file(storage.join(f));
    }
    // Page cache warm-up is not part of the measurement: the first pass reads inodes from
    // disk, later passes mostly from cache (as on a server that has run for a while).
    let s = open(&storage).await;
    timed_cycle("first crawl (empty lease database, adopts all)", &s, n).await;
    timed_cycle("steady-state crawl", &s, n).await;

    // Resume after a restart mid-cycle.
    let mut c = Crawler::new(s.clone(), unthrottled());
    let t0 = Instant::now();
    let mut seen_before = 0;
    for _ in 0..512 {
        if let Step::CycleFinished(_) = c.step().await.unwrap() {
            unreachable!()
        }
    }
    seen_before += s
        .leasedb()
        .crawler_state()
        .await
        .unwrap()
        .counters
        .shares_seen;
    drop(c);
    close(s).await;
    let s = open(&storage).await;
    let mut c = Crawler::new(s.clone(), unthrottled());
    let entry = loop {
        if let Step::CycleFinished(e) = c.step().await.unwrap() {
            break e;
        }
    };
    println!(
        "resume: stopped after 512/1024 prefixes ({seen_before} shares), reopened, finished: cycle saw {} shares (expected {n}) in {:.1} s total",
        entry.counters.shares_seen,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(entry.counters.shares_seen, n);

    // Uploads alone, then with the throttled crawler beside them.
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let alone = uploads_for(&s, load_secs, 1).await;
    let cpu_alone = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let throttled = CrawlerConfig {
        min_cycle_interval: Duration::ZERO,
        ..CrawlerConfig::default()
    };
    let before = s.leasedb().crawler_state().await.unwrap();
    let task = tokio::spawn(Crawler::new(s.clone(), throttled).run(stop_rx));
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let with = uploads_for(&s, load_secs, 2).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu_with = (cpu_seconds() - c0) / wall;
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let after = s.leasedb().crawler_state().await.unwrap();
    let hist = s.leasedb().crawler_history(100).await.unwrap();
    let finished: u64 = hist
        .iter()
        .filter(|h| h.cycle >= before.cycle && h.cycle < after.cycle)
        .map(|h| h.counters.shares_seen)
        .sum();
    let crawled = finished + after.counters.shares_seen
        - if before.cycle == after.cycle {
            before.counters.shares_seen
        } else {
            0
        };
    println!(
        "uploads of 64 KiB shares for {load_secs} s: alone {:.1}/s (process CPU {:.0}% of one core); with the throttled crawler (10%) {:.1}/s (process CPU {:.0}%), crawler meanwhile {:.0} shares/s",
        alone as f64 / load_secs as f64,
        100.0 * cpu_alone,
        with as f64 / load_secs as f64,
        100.0 * cpu_with,
        crawled as f64 / wall
    );
    println!("peak RSS: {:.0} MiB", peak_rss_mib());
    close(s).await;
    // The upload phase added shares to the generated set: the next run must generate anew
    // (reusing them failed its "every share seen" check).
    let _ = std::fs::remove_file(
        storage
            .join("shares")
            .join(format!(".generated-{n}-{per_si}")),
    );
}

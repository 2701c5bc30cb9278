//! GBS load generator: drives allocate+PATCH and range GETs against every server of a
//! `servers.yaml`, one server after another, and prints one JSON line per server and phase.
//!
//! ```text
//! gbs_load SERVERS_YAML [--bulk-mib 256] [--share-mib 16] [--small 1000] [--small-size 4096]
//!          [--parallel 8]
//! ```
//! Phases: `bulk_write` (shares of `--share-mib` MiB written in 1 MiB PATCHes, `--parallel`
//! shares at once), `bulk_read` (the same bytes read back in 1 MiB ranges, checked),
//! `small_write` (`--small` shares of `--small-size` bytes: one allocate and one PATCH each),
//! `small_read` (each read back whole). Used by `bench/storage.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use lafs_client::gbs::{AllocateSecrets, ClientOptions, ShareKind, WriteProgress};
use lafs_client::servers::read_servers_yaml;
use lafs_client::{Grid, GridServer};
use lafs_protocol::{LeaseSecret, ShareNum, StorageIndex, UploadSecret};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

struct Args {
    yaml: String,
    bulk_mib: u64,
    share_mib: u64,
    small: u64,
    small_size: u64,
    parallel: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        yaml: String::new(),
        bulk_mib: 256,
        share_mib: 16,
        small: 1000,
        small_size: 4096,
        parallel: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--bulk-mib" => a.bulk_mib = num(),
            "--share-mib" => a.share_mib = num(),
            "--small" => a.small = num(),
            "--small-size" => a.small_size = num(),
            "--parallel" => a.parallel = num() as usize,
            "-h" | "--help" => {
                eprintln!(
                    "usage: gbs_load SERVERS_YAML [--bulk-mib N] [--share-mib N] [--small N] [--small-size BYTES] [--parallel N]"
                );
                std::process::exit(0);
            }
            _ if a.yaml.is_empty() => a.yaml = arg,
            _ => {
                eprintln!("unexpected argument {arg}");
                std::process::exit(2);
            }
        }
    }
    if a.yaml.is_empty() {
        eprintln!("usage: gbs_load SERVERS_YAML [options]");
        std::process::exit(2);
    }
    a
}

fn si(run: u64, n: u64) -> StorageIndex {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&run.to_be_bytes());
    b[8..].copy_from_slice(&n.to_be_bytes());
    StorageIndex::from(b)
}

fn secrets(n: u64) -> AllocateSecrets {
    AllocateSecrets {
        lease_renew: LeaseSecret::from_bytes([1; 32]),
        lease_cancel: LeaseSecret::from_bytes([2; 32]),
        upload: UploadSecret::new(n.to_be_bytes().to_vec()).unwrap(),
    }
}

fn pattern(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Bytes::from(v)
}

async fn write_share(s: &GridServer, si: StorageIndex, n: u64, size: u64, chunk: &Bytes) {
    let sec = secrets(n);
    let sh = ShareNum::new(0);
    let a = s
        .client()
        .allocate(si, &sec, &BTreeSet::from([sh]), size)
        .await
        .expect("allocate");
    assert!(a.allocated.contains(&sh), "not allocated");
    let mut at = 0;
    while at < size {
        let n = (chunk.len() as u64).min(size - at) as usize;
        let p = s
            .client()
            .write_share_chunk(si, sh, &sec.upload, at, chunk.slice(..n))
            .await
            .expect("write");
        at += n as u64;
        assert_eq!(matches!(p, WriteProgress::Complete), at == size);
    }
}

fn report(server: &str, phase: &str, ops: u64, bytes: u64, t: Instant) {
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"server\":\"{server}\",\"phase\":\"{phase}\",\"ops\":{ops},\"bytes\":{bytes},\"seconds\":{secs:.3},\"mb_per_s\":{:.1},\"ops_per_s\":{:.1}}}",
        bytes as f64 / secs / 1e6,
        ops as f64 / secs
    );
}

async fn run_one(s: Arc<GridServer>, a: &Args, run: u64) {
    let name = s.nickname().to_owned();
    let mib = 1u64 << 20;
    let share = a.share_mib * mib;
    let shares = (a.bulk_mib / a.share_mib).max(1);
    let chunk = pattern(run, mib as usize);
    // Bulk write.
    let t = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.parallel));
    let mut js = tokio::task::JoinSet::new();
    for n in 0..shares {
        let (s, chunk, sem) = (s.clone(), chunk.clone(), sem.clone());
        js.spawn(async move {
            let _p = sem.acquire().await;
            write_share(&s, si(run, n), n, share, &chunk).await;
        });
    }
    while let Some(r) = js.join_next().await {
        r.unwrap();
    }
    report(&name, "bulk_write", shares, shares * share, t);
    // Bulk read, 1 MiB ranges, checked.
    let t = Instant::now();
    let mut js = tokio::task::JoinSet::new();
    for n in 0..shares {
        for off in (0..share).step_by(mib as usize) {
            let (s, chunk, sem) = (s.clone(), chunk.clone(), sem.clone());
            js.spawn(async move {
                let _p = sem.acquire().await;
                let b = s
                    .client()
                    .read_share(ShareKind::Immutable, si(run, n), ShareNum::new(0), off, mib)
                    .await
                    .expect("read");
                assert!(b == chunk, "read back differs");
            });
        }
    }
    while let Some(r) = js.join_next().await {
        r.unwrap();
    }
    report(
        &name,
        "bulk_read",
        shares * (share / mib),
        shares * share,
        t,
    );
    // Small shares.
    let small = pattern(run + 1, a.small_size as usize);
    let base = 1 << 32;
    let sem = Arc::new(tokio::sync::Semaphore::new(a.parallel * 2));
    let t = Instant::now();
    let mut js = tokio::task::JoinSet::new();
    for n in 0..a.small {
        let (s, small, sem) = (s.clone(), small.clone(), sem.clone());
        js.spawn(async move {
            let _p = sem.acquire().await;
            let len = small.len() as u64;
            write_share(&s, si(run, base + n), n, len, &small).await;
        });
    }
    while let Some(r) = js.join_next().await {
        r.unwrap();
    }
    report(&name, "small_write", a.small, a.small * a.small_size, t);
    let t = Instant::now();
    let mut js = tokio::task::JoinSet::new();
    for n in 0..a.small {
        let (s, small, sem) = (s.clone(), small.clone(), sem.clone());
        js.spawn(async move {
            let _p = sem.acquire().await;
            let b = s
                .client()
                .read_share(
                    ShareKind::Immutable,
                    si(run, base + n),
                    ShareNum::new(0),
                    0,
                    small.len() as u64,
                )
                .await
                .expect("read small");
            assert!(b == small, "small read differs");
        });
    }
    while let Some(r) = js.join_next().await {
        r.unwrap();
    }
    report(&name, "small_read", a.small, a.small * a.small_size, t);
}

fn main() {
    let a = parse_args();
    let file = read_servers_yaml(std::path::Path::new(&a.yaml)).expect("servers.yaml");
    let opts = ClientOptions {
        max_connections: a.parallel * 2,
        ..ClientOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    rt.block_on(async {
        let grid = Grid::new(file, &opts);
        for s in grid.servers() {
            run_one(s.clone(), &a, run).await;
        }
    });
}

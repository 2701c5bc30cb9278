//! Shared helpers of the backend conformance suite: backend selection, data generation,
//! upload/read helpers, a tiny `join_all`, and the stock Tahoe oracle.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::task::Poll;

use bytes::Bytes;
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::backend::memory::MemoryBackend;
use lafs_storage::backend::{Backend, MutableWrite, WriteVector};
use lafs_storage::types::{ShareNum, StorageIndex};
use tempfile::TempDir;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;

/// One backend under test, with whatever must live as long as it (a temporary directory).
pub struct Harness {
    pub name: String,
    pub backend: Box<dyn Backend>,
    /// The node's `storage/` directory, for disk backends.
    pub storage_dir: Option<PathBuf>,
    _dir: Option<TempDir>,
}

impl Harness {
    pub fn b(&self) -> &dyn Backend {
        self.backend.as_ref()
    }
}

/// Backends named by `LAFS_TEST_BACKENDS` (comma-separated; default `memory,disk`).
pub fn selected_backends() -> Vec<String> {
    let list = std::env::var("LAFS_TEST_BACKENDS").unwrap_or_else(|_| "memory,disk".into());
    let names: Vec<String> = list
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(!names.is_empty(), "LAFS_TEST_BACKENDS names no backend");
    names
}

fn disk(name: &str, configure: impl FnOnce(DiskBackend) -> DiskBackend) -> Harness {
    let dir = tempfile::tempdir().expect("temporary directory");
    let storage = dir.path().join("storage");
    let backend = configure(DiskBackend::open(storage.clone()).expect("open disk backend"));
    Harness {
        name: name.into(),
        backend: Box::new(backend),
        storage_dir: Some(storage),
        _dir: Some(dir),
    }
}

/// A fresh, empty backend by name. Adding a backend is one arm here.
pub fn make(name: &str) -> Harness {
    match name {
        "memory" => Harness {
            name: name.into(),
            backend: Box::new(MemoryBackend::new()),
            storage_dir: None,
            _dir: None,
        },
        "disk" => disk(name, |b| b),
        // Every existing mutable share modified in place / rewritten as a whole.
        "disk.inplace" => disk(name, |b| b.with_mutable_rewrite_limit(0)),
        "disk.rewrite" => disk(name, |b| b.with_mutable_rewrite_limit(u64::MAX)),
        other => panic!(
            "unknown backend {other:?} in LAFS_TEST_BACKENDS \
             (known: memory, disk, disk.inplace, disk.rewrite)"
        ),
    }
}

/// A storage index from a number (spread over prefixes).
pub fn si(n: u64) -> StorageIndex {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(8) {
        x ^= x >> 31;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 29;
        chunk.copy_from_slice(&x.to_be_bytes());
    }
    StorageIndex(out)
}

/// Deterministic bytes (never zero, so zero-filled holes are recognisable).
pub fn pattern(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 255) as u8 + 1
        })
        .collect()
}

/// Uploads a complete immutable share in chunks of `chunk` bytes; returns the committed size.
pub async fn put_immutable_chunked(
    b: &dyn Backend,
    si: &StorageIndex,
    shnum: ShareNum,
    data: &[u8],
    chunk: usize,
) -> u64 {
    let mut up = b
        .start_immutable(si, shnum, data.len() as u64)
        .await
        .expect("start_immutable");
    for (i, c) in data.chunks(chunk.max(1)).enumerate() {
        up.write((i * chunk) as u64, Bytes::copy_from_slice(c))
            .await
            .expect("write");
    }
    up.commit().await.expect("commit")
}

/// Uploads a complete immutable share.
pub async fn put_immutable(b: &dyn Backend, si: &StorageIndex, shnum: ShareNum, data: &[u8]) {
    let size = put_immutable_chunked(b, si, shnum, data, 256 * 1024).await;
    assert_eq!(size, data.len() as u64, "{}: committed size", b.name());
}

/// Reads a whole share in chunks (exercising ranged reads) and checks nothing follows.
pub async fn read_all(b: &dyn Backend, si: &StorageIndex, shnum: ShareNum) -> Vec<u8> {
    const CHUNK: u64 = 300_001;
    let mut out = Vec::new();
    loop {
        let got = b
            .read(si, shnum, out.len() as u64, CHUNK)
            .await
            .expect("read");
        assert!(got.len() as u64 <= CHUNK);
        if got.is_empty() {
            return out;
        }
        out.extend_from_slice(&got);
    }
}

/// A mutable write.
pub fn mw(writes: &[(u64, &[u8])], new_length: Option<u64>, we: u8) -> MutableWrite {
    MutableWrite {
        writes: writes
            .iter()
            .map(|(offset, data)| WriteVector {
                offset: *offset,
                data: Bytes::copy_from_slice(data),
            })
            .collect(),
        new_length,
        write_enabler: [we; 32],
        nodeid: [0x4e; 20],
    }
}

/// Applies a mutable write to a model of the share data (Tahoe's semantics).
pub fn model_apply(model: &mut Vec<u8>, w: &MutableWrite) {
    if w.new_length == Some(0) {
        model.clear();
        return;
    }
    for v in &w.writes {
        let end = v.offset as usize + v.data.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        model[v.offset as usize..end].copy_from_slice(&v.data);
    }
    if let Some(n) = w.new_length
        && (n as usize) < model.len()
    {
        model.truncate(n as usize);
    }
}

/// Polls all futures concurrently on the current task and returns their outputs in order.
pub async fn join_all<'a, T>(futs: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>) -> Vec<T> {
    let mut futs: Vec<_> = futs.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Stock Tahoe-LAFS 1.20 (the interop venv) running `tests/data/stock_shares.py`.

fn venv_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("LAFS_TAHOE_VENV") {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set and LAFS_TAHOE_VENV neither");
    Path::new(&home).join(".cache/lafs/tahoe-venv")
}

/// The venv's python, or a failure telling how to create it.
fn stock_python() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "stock Tahoe-LAFS venv not found at {}: run `interop/tahoe-venv.sh` (it installs \
         tahoe-lafs==1.20.0 there), or point LAFS_TAHOE_VENV at an existing one",
        venv.display()
    );
    python
}

/// Runs `stock_shares.py` with `args`; returns its stdout, failing with its stderr.
pub fn run_stock(args: &[&std::ffi::OsStr]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stock_shares.py");
    let out = Command::new(stock_python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run stock python");
    assert!(
        out.status.success(),
        "stock_shares.py {:?} failed ({}):\n{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

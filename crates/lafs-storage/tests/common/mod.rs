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
use lafs_storage::backend::{Backend, MutableWrite, WriteData, WriteVector};
use lafs_storage::types::{ShareNum, StorageIndex};
use tempfile::TempDir;

pub mod fault_proxy;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;

/// One backend under test, with whatever must live as long as it (a temporary directory).
pub struct Harness {
    pub name: String,
    pub backend: Box<dyn Backend>,
    /// The node's `storage/` directory, for disk backends.
    pub storage_dir: Option<PathBuf>,
    _dir: Option<TempDir>,
    /// A server the backend talks to (s3s-fs for cloud backends), stopped on drop.
    _server: Option<S3sFs>,
}

impl Harness {
    pub fn b(&self) -> &dyn Backend {
        self.backend.as_ref()
    }
}

/// Backends named by `LAFS_TEST_BACKENDS` (comma-separated; default
/// `memory,disk,disk.named,cloud.s3`).
pub fn selected_backends() -> Vec<String> {
    let list = std::env::var("LAFS_TEST_BACKENDS")
        .unwrap_or_else(|_| "memory,disk,disk.named,cloud.s3".into());
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
        _server: None,
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
            _server: None,
        },
        "disk" => disk(name, |b| b),
        // Uploads staged under stock's `incoming/` paths (where unnamed files are missing).
        "disk.named" => disk(name, DiskBackend::with_named_staging),
        // Every existing mutable share modified in place / rewritten as a whole.
        "disk.inplace" => disk(name, |b| b.with_mutable_rewrite_limit(0)),
        "disk.rewrite" => disk(name, |b| b.with_mutable_rewrite_limit(u64::MAX)),
        // Small chunks, so that the boundary sizes cross many chunk boundaries cheaply.
        "cloud.s3" => cloud_s3(name, CLOUD_TEST_CHUNK),
        other => panic!(
            "unknown backend {other:?} in LAFS_TEST_BACKENDS \
             (known: memory, disk, disk.named, disk.inplace, disk.rewrite, cloud.s3)"
        ),
    }
}

/// Whether `name` can run here; a cloud backend without s3s-fs is skipped locally (with a
/// message) and fails under CI.
pub fn available(name: &str) -> bool {
    !name.starts_with("cloud.") || s3s_fs_binary().is_some()
}

/// Chunk size of the `cloud.s3` test backend.
pub const CLOUD_TEST_CHUNK: u64 = 16 * 1024;

/// Access key and secret the test s3s-fs servers accept.
pub const S3_ACCESS_KEY: &str = "lafs-test-access";
pub const S3_SECRET_KEY: &str = "lafs-test-secret-0123456789";
/// The bucket the test backends use.
pub const S3_BUCKET: &str = "lafs";

/// The s3s-fs binary: `LAFS_S3S_FS`, else `~/.cache/lafs/s3s-root/bin/s3s-fs` (made by
/// `interop/s3s-fs.sh`). Missing: `None` locally (the caller skips, saying so), a test
/// failure when `CI=true`.
pub fn s3s_fs_binary() -> Option<PathBuf> {
    let path = match std::env::var_os("LAFS_S3S_FS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(&std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/lafs/s3s-root/bin/s3s-fs"),
    };
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "s3s-fs not found at {}: run `interop/s3s-fs.sh` (it builds s3s-fs 0.14.1 into \
         ~/.cache/lafs/s3s-root), or point LAFS_S3S_FS at the binary",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED (cloud backend): {msg}");
    None
}

/// An s3s-fs server on 127.0.0.1 with a temporary root holding the bucket [`S3_BUCKET`];
/// killed on drop.
pub struct S3sFs {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The port.
    pub port: u16,
    /// The directory holding the bucket's objects as files.
    pub bucket_dir: PathBuf,
    _root: TempDir,
}

impl std::fmt::Debug for S3sFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3sFs")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl S3sFs {
    /// Starts a server, or `None` if the binary is missing (see [`s3s_fs_binary`]).
    pub fn start() -> Option<Self> {
        let bin = s3s_fs_binary()?;
        let root = tempfile::tempdir().expect("temporary directory");
        let bucket_dir = root.path().join(S3_BUCKET);
        std::fs::create_dir(&bucket_dir).expect("create bucket directory");
        for _ in 0..5 {
            let port = lafs_testkit::free_port();
            let mut child = Command::new(&bin)
                .arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(port.to_string())
                .arg("--access-key")
                .arg(S3_ACCESS_KEY)
                .arg("--secret-key")
                .arg(S3_SECRET_KEY)
                .arg(root.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start s3s-fs");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Someone listens; make sure it is ours (another test's server could
                    // have taken the port while ours failed to bind).
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    return Some(Self {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        port,
                        bucket_dir,
                        _root: root,
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start");
    }

    /// Settings for a backend on this server's bucket, through `endpoint` (this server's,
    /// or a proxy in front of it).
    pub fn settings(&self, endpoint: &str) -> lafs_storage::backend::cloud::S3Settings {
        lafs_storage::backend::cloud::S3Settings {
            bucket: S3_BUCKET.into(),
            url: Some(endpoint.into()),
            region: Some("us-east-1".into()),
            access_key_id: S3_ACCESS_KEY.into(),
            secret_access_key: S3_SECRET_KEY.into(),
            path_style: true,
        }
    }

    /// Every object in the bucket (relative key, size), sorted.
    pub fn objects(&self) -> Vec<(String, u64)> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, u64)>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if md.is_dir() {
                    walk(&p, base, out);
                } else if let Ok(rel) = p.strip_prefix(base) {
                    let rel = rel.to_string_lossy().to_string();
                    // s3s-fs keeps internal files (metadata, uploads) under dot-names.
                    if !rel.split('/').any(|c| c.starts_with('.')) {
                        out.push((rel, md.len()));
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.bucket_dir, &self.bucket_dir, &mut out);
        out.sort();
        out
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cloud_s3(name: &str, chunk: u64) -> Harness {
    let server = S3sFs::start().expect("s3s-fs (check `available` first)");
    let opts = lafs_storage::backend::cloud::CloudOptions {
        chunk_size: chunk,
        ..Default::default()
    };
    let backend = lafs_storage::backend::cloud::CloudBackend::s3(
        &server.settings(&server.endpoint.clone()),
        opts,
    )
    .expect("cloud backend");
    Harness {
        name: name.into(),
        backend: Box::new(backend),
        storage_dir: None,
        _dir: None,
        _server: Some(server),
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

/// A mutable write. Writes of more than 100 bytes come from a spool file (as a large
/// read-test-write's do), smaller ones from memory.
pub fn mw(writes: &[(u64, &[u8])], new_length: Option<u64>, we: u8) -> MutableWrite {
    MutableWrite {
        writes: writes
            .iter()
            .map(|(offset, data)| WriteVector {
                offset: *offset,
                data: if data.len() > 100 {
                    WriteData::in_temp_file(data).unwrap()
                } else {
                    Bytes::copy_from_slice(data).into()
                },
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
        let data = v.data.read_blocking(0, u64::MAX).unwrap();
        let end = v.offset as usize + data.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        model[v.offset as usize..end].copy_from_slice(&data);
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

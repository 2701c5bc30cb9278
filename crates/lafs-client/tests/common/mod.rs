//! Shared helpers of the lafs-client integration tests: a real lafs storage server started
//! in-process (real TLS on loopback, disk backend, SQLite lease database), a stock Tahoe-LAFS
//! 1.20 storage node run from the virtualenv that `interop/tahoe-venv.sh` makes, the venv's
//! python for cross-checks, and misbehaving TLS servers for fault tests.
//!
//! A missing venv fails the tests that need it (it is never silently skipped): run
//! `interop/tahoe-venv.sh` or `scripts/test-all.sh` first, or point `LAFS_TAHOE_VENV` at a venv
//! with tahoe-lafs 1.20.0.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lafs_protocol::{Nurl, SpkiHash, Swissnum};
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::frontend::{self, Frontend, Limits};
use lafs_storage::leasedb::{LeaseDbHandle, OpenOptions};
use lafs_storage::server::{ServerConfig, StorageServer, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const SWISSNUM: &str = "abcdefghijklmnopqrstuvwxyz234567";

/// Deterministic test bytes, never all equal.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A self-signed certificate and key (DER) from rcgen.
pub fn self_signed() -> (Vec<u8>, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (ck.cert.der().to_vec(), ck.signing_key.serialize_der())
}

/// A lafs storage server running in this process until dropped.
pub struct LafsServer {
    pub nurl: Nurl,
    pub root: tempfile::TempDir,
    /// The server's lease database (the same handle the server uses).
    pub db: LeaseDbHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for LafsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

impl LafsServer {
    pub async fn start() -> LafsServer {
        let root = tempfile::tempdir().unwrap();
        let backend = Arc::new(DiskBackend::open(root.path().join("storage")).unwrap());
        let db = LeaseDbHandle::open_sqlite(
            &root.path().join("leasedb.sqlite"),
            now(),
            OpenOptions::default(),
        )
        .await
        .unwrap();
        let server = Arc::new(StorageServer::new(
            backend,
            db.clone(),
            ServerConfig::default(),
            Arc::new(SystemClock),
        ));
        server.startup().await.unwrap();
        let (cert, key) = self_signed();
        let tls = frontend::tls_config(&cert, &key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let swissnum: Swissnum = SWISSNUM.parse().unwrap();
        let fe = Arc::new(Frontend::new(server, swissnum.clone(), Limits::default()));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(frontend::serve(
            listener,
            tls,
            fe,
            stop_rx,
            Duration::from_secs(1),
        ));
        let nurl = nurl_for(&cert, addr, SWISSNUM);
        LafsServer {
            nurl,
            root,
            db,
            stop,
            task,
        }
    }
}

pub fn nurl_for(cert_der: &[u8], addr: SocketAddr, swissnum: &str) -> Nurl {
    format!(
        "pb://{}@{}:{}/{swissnum}#v=1",
        SpkiHash::of_cert_der(cert_der).unwrap(),
        addr.ip(),
        addr.port()
    )
    .parse()
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Stock Tahoe

/// The stock venv; panics with instructions if it is missing.
pub fn tahoe_venv() -> PathBuf {
    let venv = match std::env::var_os("LAFS_TAHOE_VENV") {
        Some(v) => PathBuf::from(v),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lafs/tahoe-venv")
        }
    };
    assert!(
        venv.join("bin/tahoe").is_file(),
        "stock Tahoe-LAFS venv not found at {}: run interop/tahoe-venv.sh (or scripts/test-all.sh), \
         or set LAFS_TAHOE_VENV",
        venv.display()
    );
    venv
}

/// Runs `script` with the venv's python, `args` after it; returns stdout (panics on failure).
pub fn stock_python(script: &str, args: &[&str]) -> String {
    let python = tahoe_venv().join("bin/python");
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "stock python failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

use lafs_testkit::free_port;

/// A stock Tahoe-LAFS 1.20 storage node (`tahoe create-node`, `tahoe run`), killed on drop.
pub struct StockNode {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Drop for StockNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("run.log")).unwrap_or_default();
            eprintln!("--- stock node log:\n{log}");
        }
    }
}

impl StockNode {
    pub fn start() -> StockNode {
        let venv = tahoe_venv();
        let dir = tempfile::Builder::new()
            .prefix("lafs-client-stock-")
            .tempdir()
            .unwrap();
        let node = dir.path().join("node");
        let port = free_port();
        let web = free_port();
        let out = Command::new(venv.join("bin/tahoe"))
            .arg("create-node")
            .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
            .arg(format!("--location=tcp:127.0.0.1:{port}"))
            .arg(format!("--webport=tcp:{web}:interface=127.0.0.1"))
            .arg("--nickname=stock")
            .arg(&node)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tahoe create-node: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
        let child = Command::new(venv.join("bin/tahoe"))
            .args(["run", "--allow-stdin-close"])
            .arg(&node)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut n = StockNode { dir, port, child };
        let furl = node.join("private/storage.furl");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = n.child.try_wait().unwrap() {
                panic!("stock node exited early: {s}");
            }
            if furl.is_file() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stock node did not start in time"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        n
    }

    pub fn node_dir(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    /// Its NURL, built from its files as a stock client's announcement would have it.
    pub fn nurl(&self) -> Nurl {
        let node = self.node_dir();
        let pem = std::fs::read(node.join("private/node.pem")).unwrap();
        let cert = lafs_protocol::pem_certificate_der(&pem).unwrap();
        let furl = std::fs::read_to_string(node.join("private/storage.furl")).unwrap();
        let swissnum = furl.trim().rsplit_once('/').unwrap().1.to_owned();
        nurl_for(
            &cert,
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            &swissnum,
        )
    }

    pub fn furl(&self) -> String {
        std::fs::read_to_string(self.node_dir().join("private/storage.furl"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Misbehaving servers

/// A TLS server on loopback that reads each request's head and hands the stream to `respond`
/// (which writes whatever it likes). Counts the bytes `respond` managed to write in total.
pub struct EvilServer {
    pub addr: SocketAddr,
    pub cert: Vec<u8>,
    pub written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EvilServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Stream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// What an evil server does with a connection once it has read a request head (the head's
/// text is passed along).
#[derive(Clone, Copy, Debug)]
pub enum Evil {
    /// Never answers.
    Silent,
    /// Sends a 206 announcing `bytes 0-99/*`, then endless bytes (chunked).
    EndlessRead,
    /// Announces a Content-Range larger than asked for.
    BigContentRange,
    /// Sends 200 application/cbor and then an endless body.
    EndlessCbor,
    /// Sends 206 with the right headers, 10 bytes, then goes silent.
    StallMidBody,
}

impl EvilServer {
    pub async fn start(evil: Evil) -> EvilServer {
        let (cert, key) = self_signed();
        let tls = frontend::tls_config(&cert, &key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let w = w.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let _ = respond(evil, &mut s, &w).await;
                    // Keep the connection open (silently) until the client gives up.
                    tokio::time::sleep(Duration::from_secs(300)).await;
                });
            }
        });
        EvilServer {
            addr,
            cert,
            written,
            task,
        }
    }

    pub fn nurl(&self) -> Nurl {
        nurl_for(&self.cert, self.addr, SWISSNUM)
    }
}

async fn respond(evil: Evil, s: &mut Stream, written: &AtomicU64) -> std::io::Result<()> {
    match evil {
        Evil::Silent => Ok(()),
        Evil::EndlessRead => {
            endless(
                s,
                written,
                "HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\n\
                 Content-Range: bytes 0-99/*\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await
        }
        Evil::EndlessCbor => {
            endless(
                s,
                written,
                "HTTP/1.1 200 OK\r\nContent-Type: application/cbor\r\n\
                 Transfer-Encoding: chunked\r\n\r\n",
            )
            .await
        }
        Evil::BigContentRange => {
            s.write_all(
                b"HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\n\
                  Content-Range: bytes 0-1048575/*\r\nContent-Length: 1048576\r\n\r\n",
            )
            .await?;
            s.write_all(&[0u8; 1000]).await?;
            s.flush().await
        }
        Evil::StallMidBody => {
            s.write_all(
                b"HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\n\
                  Content-Range: bytes 0-99/*\r\nContent-Length: 100\r\n\r\n0123456789",
            )
            .await?;
            s.flush().await
        }
    }
}

async fn endless(s: &mut Stream, written: &AtomicU64, head: &str) -> std::io::Result<()> {
    let chunk = vec![0x41u8; 64 * 1024];
    s.write_all(head.as_bytes()).await?;
    loop {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        s.write_all(&chunk).await?;
        s.write_all(b"\r\n").await?;
        written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

/// A plain TCP listener that accepts connections and never says anything (not even TLS).
pub async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    (addr, task)
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of a real server, for faults on real sockets

/// What a [`Proxy`] does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards both ways.
    Pass,
    /// Forwards, but holds each chunk the client sends for this long first (so every
    /// request to this server answers later than to the others).
    Delay(Duration),
    /// Accepts and reads but never forwards anything again, on new and existing connections
    /// alike, keeping them open: a hung server.
    Hang,
    /// Resets existing connections and refuses new ones: a server killed.
    Cut,
}

/// A TCP relay on 127.0.0.1 in front of `target` (TLS passes through untouched, so the NURL
/// of the real server works with the proxy's port), whose behaviour tests switch at any time.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<std::sync::Mutex<ProxyMode>>,
    changed: watch::Sender<ProxyMode>,
    /// Bytes forwarded from the client to the server.
    pub upstream_bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.changed.send(ProxyMode::Cut);
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(std::sync::Mutex::new(ProxyMode::Pass));
        let (changed, _) = watch::channel(ProxyMode::Pass);
        let upstream_bytes = Arc::new(AtomicU64::new(0));
        let (m, ch, up) = (mode.clone(), changed.clone(), upstream_bytes.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let now = *m.lock().unwrap();
                match now {
                    ProxyMode::Cut => drop(client),
                    ProxyMode::Hang => {
                        tokio::spawn(hold(client));
                    }
                    ProxyMode::Pass | ProxyMode::Delay(_) => {
                        tokio::spawn(relay(client, target, m.clone(), ch.subscribe(), up.clone()));
                    }
                }
            }
        });
        Proxy {
            addr,
            mode,
            changed,
            upstream_bytes,
            task,
        }
    }

    pub fn set(&self, mode: ProxyMode) {
        *self.mode.lock().unwrap() = mode;
        self.changed.send_replace(mode);
    }

    /// The real server's NURL with this proxy's address.
    pub fn nurl(&self, real: &Nurl) -> Nurl {
        let mut n = real.clone();
        n.port = self.addr.port();
        n
    }
}

/// Reads and discards everything, answers nothing, until the peer goes away.
async fn hold(mut s: tokio::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
}

async fn relay(
    client: tokio::net::TcpStream,
    target: SocketAddr,
    mode: Arc<std::sync::Mutex<ProxyMode>>,
    mut changed: watch::Receiver<ProxyMode>,
    upstream_bytes: Arc<AtomicU64>,
) {
    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = match *mode.lock().unwrap() {
                ProxyMode::Delay(d) => Some(d),
                _ => None,
            };
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
            upstream_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    let down = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    // Switching to Hang or Cut stops forwarding on this connection at once.
    let stop = async {
        loop {
            if changed.changed().await.is_err() {
                return ProxyMode::Cut;
            }
            let m = *changed.borrow();
            if matches!(m, ProxyMode::Hang | ProxyMode::Cut) {
                return m;
            }
        }
    };
    let stopped = tokio::select! {
        _ = async { tokio::join!(up, down) } => None,
        m = stop => Some(m),
    };
    if stopped == Some(ProxyMode::Hang) {
        // Keep both sockets open and silent until the client gives up.
        let mut buf = vec![0u8; 64 * 1024];
        while cr.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        drop((cw, sr, sw));
    }
}

//! Adversarial tests of the HTTPS storage frontend (reliability.md rows "GBS parsing", "auth",
//! "allocation", "floods", "write-once").
//!
//! Every test runs a real server on loopback: real TLS (a self-signed rcgen certificate), real
//! sockets, a real SQLite lease database and a [`DiskBackend`] in a temporary directory. The
//! client is hand-written HTTP/1.1 over a pinned tokio-rustls connection, so it can send what a
//! well-behaved client library would refuse to. Each hostile request is checked for the status
//! the GBS spec (or stock Tahoe) gives it, and for having changed nothing: the temporary
//! directory holding the storage directory and some sentinel files next to it is compared byte
//! for byte before and after, and so are the lease database's rows for the storage indexes
//! involved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lafs_protocol::{
    AllocateRequest, AllocateResponse, CborBody, ContentRange, ReadTestWriteRequest,
    ReadTestWriteResponse, ReadVector, SecretKind, ShareList, ShareNum, SpkiHash, StorageIndex,
    Swissnum, TestVector, TestWriteVectors, VersionResponse, WriteResponse, WriteVector,
    authorization_header_value,
};
use lafs_storage::backend::Backend;
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::backend::memory::MemoryBackend;
use lafs_storage::frontend::{self, Frontend, Limits};
use lafs_storage::leasedb::{LeaseDbHandle, OpenOptions};
use lafs_storage::server::{ServerConfig, StorageServer, SystemClock};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;

const SWISSNUM: &str = "abcdefghijklmnopqrstuvwxyz234567";
const CBOR: &str = "application/cbor";
const RENEW: [u8; 32] = [0x11; 32];
const CANCEL: [u8; 32] = [0x22; 32];
const UPLOAD: &[u8] = b"the-upload-secret-20";
/// The status of a successful allocation: 200, as stock answers.
const ALLOCATED: u16 = 200;
/// Longest any single exchange may take before the test fails.
const IO_LIMIT: Duration = Duration::from_secs(10);

type Headers = Vec<(String, String)>;

fn swissnum() -> Swissnum {
    SWISSNUM.parse().unwrap()
}

fn si(n: u8) -> StorageIndex {
    let mut b = [0x5a; 16];
    b[0] = n;
    StorageIndex::from_bytes(b)
}

fn storage_si(si: StorageIndex) -> lafs_storage::types::StorageIndex {
    lafs_storage::types::StorageIndex(*si.as_bytes())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn hdr(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

fn auth() -> (String, String) {
    hdr("Authorization", authorization_header_value(&swissnum()))
}

fn secret(kind: SecretKind, bytes: &[u8]) -> (String, String) {
    hdr("X-Tahoe-Authorization", kind.header_value(bytes))
}

/// Standard padded base64 (borrowed from the secret header encoder).
fn b64(bytes: &[u8]) -> String {
    let v = SecretKind::Upload.header_value(bytes);
    v.split_once(' ').unwrap().1.to_owned()
}

fn cbor_headers() -> Headers {
    vec![hdr("Content-Type", CBOR), hdr("Accept", CBOR)]
}

fn allocate_headers(upload: &[u8]) -> Headers {
    let mut h = vec![
        secret(SecretKind::LeaseRenew, &RENEW),
        secret(SecretKind::LeaseCancel, &CANCEL),
        secret(SecretKind::Upload, upload),
    ];
    h.extend(cbor_headers());
    h
}

fn rtw_headers(we: &[u8]) -> Headers {
    let mut h = vec![
        secret(SecretKind::LeaseRenew, &RENEW),
        secret(SecretKind::LeaseCancel, &CANCEL),
        secret(SecretKind::WriteEnabler, we),
    ];
    h.extend(cbor_headers());
    h
}

fn allocate_body(shnums: &[u8], size: u64) -> Vec<u8> {
    AllocateRequest {
        share_numbers: shnums.iter().map(|&n| ShareNum::new(n)).collect(),
        allocated_size: size,
    }
    .encode()
}

/// A read-test-write request writing `data` at `offset` of share `shnum`, reading `0..64` of
/// every existing share.
fn rtw_write(shnum: u8, offset: u64, data: &[u8]) -> ReadTestWriteRequest {
    let mut req = ReadTestWriteRequest::default();
    req.test_write_vectors.insert(
        ShareNum::new(shnum),
        TestWriteVectors {
            test: vec![],
            write: vec![WriteVector {
                offset,
                data: data.to_vec(),
            }],
            new_length: None,
        },
    );
    req.read_vector.push(ReadVector {
        offset: 0,
        size: 64,
    });
    req
}

/// Builds an HTTP/1.1 request. `Host`, `Content-Length` (for methods with a body) and
/// `Connection: close` are added unless given.
fn build(method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        out.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("content-length")
        && !has("transfer-encoding")
        && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut v = out.into_bytes();
    v.extend_from_slice(body);
    v
}

// ---- a minimal CBOR writer for hand-made bodies ----

fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    if n < 24 {
        vec![m | n as u8]
    } else if n <= 0xff {
        vec![m | 24, n as u8]
    } else if n <= 0xffff {
        let mut v = vec![m | 25];
        v.extend_from_slice(&(n as u16).to_be_bytes());
        v
    } else if n <= 0xffff_ffff {
        let mut v = vec![m | 26];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v
    } else {
        let mut v = vec![m | 27];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }
}

fn ctext(s: &str) -> Vec<u8> {
    let mut v = head(3, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
    v
}

fn cuint(n: u64) -> Vec<u8> {
    head(0, n)
}

fn cset(items: &[u64]) -> Vec<u8> {
    let mut v = vec![0xd9, 0x01, 0x02];
    v.extend(head(4, items.len() as u64));
    for &i in items {
        v.extend(cuint(i));
    }
    v
}

fn cmap(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = head(5, pairs.len() as u64);
    for (k, val) in pairs {
        v.extend_from_slice(k);
        v.extend_from_slice(val);
    }
    v
}

fn alloc_map(shares: Vec<u8>, size: Vec<u8>) -> Vec<u8> {
    cmap(&[
        (ctext("share-numbers"), shares),
        (ctext("allocated-size"), size),
    ])
}

// ---- TLS client ----

/// Accepts exactly the certificate whose SPKI hash is pinned (what a GBS client checks).
#[derive(Debug)]
struct PinnedSpki {
    pin: SpkiHash,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedSpki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match SpkiHash::of_cert_der(end_entity.as_ref()) {
            Ok(h) if h.ct_eq(&self.pin) => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::General("SPKI does not match the pin".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_config(pin: SpkiHash) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedSpki { pin, provider }))
        .with_no_client_auth();
    cfg.enable_sni = false; // as stock clients
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One HTTP response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn cbor<T: CborBody>(&self) -> T {
        T::decode(&self.body).unwrap_or_else(|e| panic!("bad CBOR response ({e}): {self:?}"))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[track_caller]
fn check(r: &Resp, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: expected {status}, got {} ({:?})",
        r.status,
        r.text()
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response: head, then `Content-Length` bytes (or nothing for 204/304, or up to
/// EOF when there is no length).
async fn read_response<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Resp> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before a complete response head ({:?})",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    match length {
        _ if status == 204 || status == 304 || status < 200 => body.clear(),
        Some(len) => {
            while body.len() < len {
                let n = r.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => loop {
            match r.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        },
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Reads until the peer closes; returns how long that took (from `since`) and what was read.
/// Fails if the connection is still open after `limit`.
async fn wait_closed<S: AsyncRead + Unpin>(
    s: &mut S,
    since: Instant,
    limit: Duration,
) -> Result<(Duration, Vec<u8>), String> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let r = tokio::time::timeout_at((since + limit).into(), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    match r {
        Ok(()) => Ok((since.elapsed(), got)),
        Err(_) => Err(format!(
            "connection still open after {limit:?} (read {:?})",
            String::from_utf8_lossy(&got)
        )),
    }
}

/// Connects to one server; cheap to clone into tasks.
#[derive(Clone, Debug)]
struct Client {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    async fn try_tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    async fn tls(&self) -> TlsStream<TcpStream> {
        self.try_tls().await.expect("TLS connect")
    }

    /// Sends `request` on a new connection and reads one response.
    async fn try_raw(&self, request: &[u8]) -> std::io::Result<Resp> {
        let fut = async {
            let stream = self.try_tls().await?;
            let (mut rd, mut wr) = tokio::io::split(stream);
            let write = async {
                // The server may answer (and close) before reading everything.
                let _ = wr.write_all(request).await;
                let _ = wr.flush().await;
                wr
            };
            let (_wr, resp) = tokio::join!(write, read_response(&mut rd));
            resp
        };
        tokio::time::timeout(IO_LIMIT, fut)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    async fn raw(&self, request: &[u8]) -> Resp {
        match self.try_raw(request).await {
            Ok(r) => r,
            Err(e) => panic!(
                "request {:?} failed: {e}",
                String::from_utf8_lossy(&request[..request.len().min(200)])
            ),
        }
    }

    /// A request with the right `Authorization` and the given extra headers.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Resp {
        let mut h = vec![auth()];
        h.extend_from_slice(headers);
        self.raw(&build(method, path, &h, body)).await
    }

    async fn version(&self) -> VersionResponse {
        let r = self
            .send("GET", "/storage/v1/version", &cbor_headers(), b"")
            .await;
        check(&r, 200, "GET version");
        r.cbor()
    }

    async fn allocate(&self, si: StorageIndex, shnums: &[u8], size: u64, upload: &[u8]) -> Resp {
        self.send(
            "POST",
            &format!("/storage/v1/immutable/{si}"),
            &allocate_headers(upload),
            &allocate_body(shnums, size),
        )
        .await
    }

    async fn patch(
        &self,
        si: StorageIndex,
        shnum: u8,
        offset: u64,
        data: &[u8],
        upload: &[u8],
    ) -> Resp {
        let cr = ContentRange::for_write(offset, data.len() as u64).unwrap();
        self.send(
            "PATCH",
            &format!("/storage/v1/immutable/{si}/{shnum}"),
            &[
                secret(SecretKind::Upload, upload),
                hdr("Content-Range", cr.to_header_value()),
                hdr("Accept", CBOR),
            ],
            data,
        )
        .await
    }

    async fn read(&self, kind: &str, si: StorageIndex, shnum: u8, range: Option<&str>) -> Resp {
        let mut h = vec![];
        if let Some(r) = range {
            h.push(hdr("Range", r));
        }
        self.send("GET", &format!("/storage/v1/{kind}/{si}/{shnum}"), &h, b"")
            .await
    }

    async fn list(&self, kind: &str, si: StorageIndex) -> Vec<u8> {
        let r = self
            .send(
                "GET",
                &format!("/storage/v1/{kind}/{si}/shares"),
                &cbor_headers(),
                b"",
            )
            .await;
        check(&r, 200, "list shares");
        r.cbor::<ShareList>().0.iter().map(|n| n.get()).collect()
    }

    async fn rtw(&self, si: StorageIndex, we: &[u8], req: &ReadTestWriteRequest) -> Resp {
        self.send(
            "POST",
            &format!("/storage/v1/mutable/{si}/read-test-write"),
            &rtw_headers(we),
            &req.encode(),
        )
        .await
    }

    /// Allocates and writes a complete immutable share.
    async fn upload_share(&self, si: StorageIndex, shnum: u8, data: &[u8]) {
        let r = self.allocate(si, &[shnum], data.len() as u64, UPLOAD).await;
        check(&r, ALLOCATED, "allocate");
        let a: AllocateResponse = r.cbor();
        assert!(a.allocated.contains(&ShareNum::new(shnum)), "{a:?}");
        let r = self.patch(si, shnum, 0, data, UPLOAD).await;
        check(&r, 201, "complete upload");
    }
}

/// Files and directories under a root (lease database files excluded).
type Tree = BTreeMap<PathBuf, Option<Vec<u8>>>;

fn tree(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with("leasedb") {
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// The observable state: every file under the temporary root, and the lease database's share
/// and lease rows for some storage indexes.
#[derive(Debug, PartialEq)]
struct State {
    files: Tree,
    db: String,
}

/// A storage server on loopback.
#[derive(Debug)]
struct TestServer {
    client: Client,
    root: tempfile::TempDir,
    server: Arc<StorageServer>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Deref for TestServer {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl TestServer {
    async fn start(cfg: ServerConfig, limits: Limits) -> TestServer {
        Self::start_with(None, cfg, limits).await
    }

    /// `backend`: `None` for a [`DiskBackend`] in `<root>/storage`.
    async fn start_with(
        backend: Option<Arc<dyn Backend>>,
        cfg: ServerConfig,
        limits: Limits,
    ) -> TestServer {
        let root = tempfile::tempdir().unwrap();
        // Targets for path traversal: siblings of the storage directory.
        let outside = root.path().join("outside");
        std::fs::create_dir_all(outside.join("etc")).unwrap();
        std::fs::write(outside.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(outside.join("sentinel"), b"do not touch").unwrap();
        let backend = match backend {
            Some(b) => b,
            None => Arc::new(DiskBackend::open(root.path().join("storage")).unwrap()),
        };
        let db = LeaseDbHandle::open_sqlite(
            &root.path().join("leasedb.sqlite"),
            now(),
            OpenOptions::default(),
        )
        .await
        .unwrap();
        let server = Arc::new(StorageServer::new(backend, db, cfg, Arc::new(SystemClock)));
        server.startup().await.unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_der = ck.cert.der().to_vec();
        let tls = frontend::tls_config(&cert_der, &ck.signing_key.serialize_der()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fe = Arc::new(Frontend::new(server.clone(), swissnum(), limits));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(frontend::serve(
            listener,
            tls,
            fe,
            stop_rx,
            Duration::from_secs(1),
        ));
        let client = Client {
            addr,
            tls: client_config(SpkiHash::of_cert_der(&cert_der).unwrap()),
        };
        TestServer {
            client,
            root,
            server,
            stop,
            task,
        }
    }

    fn storage_dir(&self) -> PathBuf {
        self.root.path().join("storage")
    }

    async fn state(&self, sis: &[StorageIndex]) -> State {
        let db = self.server.leasedb();
        let mut out = String::new();
        for &si in sis {
            let si = storage_si(si);
            for rec in db.get_shares(si).await.unwrap() {
                let leases = db.get_leases(si, rec.shnum).await.unwrap();
                out.push_str(&format!("{rec:?} {leases:?}\n"));
            }
        }
        State {
            files: tree(self.root.path()),
            db: out,
        }
    }

    #[track_caller]
    fn assert_files_unchanged(&self, before: &Tree, what: &str) {
        let after = tree(self.root.path());
        if &after != before {
            let changed: Vec<_> = after
                .keys()
                .chain(before.keys())
                .filter(|k| after.get(*k) != before.get(*k))
                .collect();
            panic!("{what}: files changed: {changed:?}");
        }
    }
}

fn short_limits(secs: u64) -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(secs),
        header_timeout: Duration::from_secs(secs),
        body_timeout: Duration::from_secs(secs),
        stall_timeout: Duration::from_secs(secs),
        ..Limits::default()
    }
}

// ============================================================================================
// auth
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swissnum_is_required_on_every_endpoint_and_nothing_changes_without_it() {
    let srv = TestServer::start(ServerConfig::default(), Limits::default()).await;
    let (si_done, si_up, si_mut) = (si(1), si(2), si(3));
    let done = pattern(50, 1);
    srv.upload_share(si_done, 0, &done).await;
    check(
        &srv.allocate(si_up, &[0], 10, UPLOAD).await,
        ALLOCATED,
        "allocate",
    );
    let we = [7u8; 32];
    let r = srv.rtw(si_mut, &we, &rtw_write(0, 0, b"mutable")).await;
    check(&r, 200, "create mutable");
    assert!(r.cbor::<ReadTestWriteResponse>().success);
    let sis = [si_done, si_up, si_mut];
    let before = srv.state(&sis).await;

    // Authorization variants on GET version: all 401.
    let good = authorization_header_value(&swissnum());
    let bad_auth: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        (
            "other swissnum",
            Some(format!("Tahoe-LAFS {}", b64(&[b'b'; 32]))),
        ),
        ("scheme only", Some("Tahoe-LAFS".into())),
        (
            "lower-case scheme",
            Some(good.replacen("Tahoe-LAFS", "tahoe-lafs", 1)),
        ),
        ("Basic", Some(good.replacen("Tahoe-LAFS", "Basic", 1))),
        ("two spaces", Some(good.replacen(' ', "  ", 1))),
        (
            "swissnum not base64",
            Some(format!("Tahoe-LAFS {SWISSNUM}")),
        ),
        (
            "unpadded base64",
            Some(good.trim_end_matches('=').to_owned()),
        ),
        (
            "base64 of swissnum plus newline",
            Some(format!(
                "Tahoe-LAFS {}",
                b64(format!("{SWISSNUM}\n").as_bytes())
            )),
        ),
        ("truncated", Some(good[..good.len() - 2].to_owned())),
        ("extended", Some(format!("{good}{}", "A".repeat(1000)))),
        ("8 KiB of junk", Some("x".repeat(8192))),
        (
            "swissnum prefix",
            Some(format!("Tahoe-LAFS {}", b64(&SWISSNUM.as_bytes()[..31]))),
        ),
    ];
    for (what, value) in &bad_auth {
        let mut h = cbor_headers();
        if let Some(v) = value {
            h.push(hdr("Authorization", v.clone()));
        }
        let r = srv.raw(&build("GET", "/storage/v1/version", &h, b"")).await;
        check(&r, 401, what);
    }
    // Two Authorization headers: the first one counts (as stock).
    let r = srv
        .raw(&build(
            "GET",
            "/storage/v1/version",
            &[
                hdr("Authorization", "Tahoe-LAFS d3Jvbmc="),
                hdr("Authorization", good.clone()),
            ],
            b"",
        ))
        .await;
    check(&r, 401, "wrong first Authorization header");
    // Not UTF-8: 400, as stock.
    let mut req = b"GET /storage/v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
    req.extend_from_slice(b"Authorization: Tahoe-LAFS \xff\xfe\xfd\r\n\r\n");
    check(&srv.raw(&req).await, 400, "non-UTF-8 Authorization");

    // Every endpoint, with everything right but the swissnum (missing, then wrong).
    let wrong = hdr(
        "Authorization",
        authorization_header_value(&"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap()),
    );
    let rtw_body = rtw_write(0, 0, b"EVIL").encode();
    let patch_headers = vec![
        secret(SecretKind::Upload, UPLOAD),
        hdr("Content-Range", "bytes 0-9/*"),
    ];
    let lease_headers = vec![
        secret(SecretKind::LeaseRenew, &RENEW),
        secret(SecretKind::LeaseCancel, &CANCEL),
    ];
    let endpoints: Vec<(&str, String, Headers, Vec<u8>)> = vec![
        ("GET", "/storage/v1/version".into(), cbor_headers(), vec![]),
        (
            "POST",
            format!("/storage/v1/immutable/{si_up}"),
            allocate_headers(UPLOAD),
            allocate_body(&[1, 2], 10),
        ),
        (
            "PATCH",
            format!("/storage/v1/immutable/{si_up}/0"),
            patch_headers,
            b"0123456789".to_vec(),
        ),
        (
            "PUT",
            format!("/storage/v1/immutable/{si_up}/0/abort"),
            vec![secret(SecretKind::Upload, UPLOAD)],
            vec![],
        ),
        (
            "GET",
            format!("/storage/v1/immutable/{si_done}/shares"),
            cbor_headers(),
            vec![],
        ),
        (
            "GET",
            format!("/storage/v1/immutable/{si_done}/0"),
            vec![],
            vec![],
        ),
        (
            "POST",
            format!("/storage/v1/immutable/{si_done}/0/corrupt"),
            vec![hdr("Content-Type", CBOR)],
            cmap(&[(ctext("reason"), ctext("it is bad"))]),
        ),
        (
            "PUT",
            format!("/storage/v1/lease/{si_done}"),
            lease_headers,
            vec![],
        ),
        (
            "POST",
            format!("/storage/v1/mutable/{si_mut}/read-test-write"),
            rtw_headers(&we),
            rtw_body,
        ),
        (
            "GET",
            format!("/storage/v1/mutable/{si_mut}/shares"),
            cbor_headers(),
            vec![],
        ),
        (
            "GET",
            format!("/storage/v1/mutable/{si_mut}/0"),
            vec![],
            vec![],
        ),
        (
            "POST",
            format!("/storage/v1/mutable/{si_mut}/0/corrupt"),
            vec![hdr("Content-Type", CBOR)],
            cmap(&[(ctext("reason"), ctext("it is bad"))]),
        ),
        (
            "GET",
            "/storage/lafs/v1/account/usage".into(),
            cbor_headers(),
            vec![],
        ),
    ];
    for (method, path, headers, body) in &endpoints {
        for with_wrong in [false, true] {
            let mut h = headers.clone();
            if with_wrong {
                h.push(wrong.clone());
            }
            let r = srv.raw(&build(method, path, &h, body)).await;
            check(
                &r,
                401,
                &format!("{method} {path} (wrong swissnum: {with_wrong})"),
            );
            assert!(
                find(&r.body, &done).is_none() && find(&r.body, b"mutable").is_none(),
                "{method} {path}: share data in a 401"
            );
        }
    }
    assert_eq!(
        srv.state(&sis).await,
        before,
        "state changed by unauthorized requests"
    );

    // Routing comes first (as stock): unknown paths are 404 and known paths with another
    // method 405, with or without a swissnum.
    for (method, path, status) in [
        ("GET", "/", 404),
        ("GET", "/storage/v1/nope", 404),
        ("GET", "/storage/v2/version", 404),
        ("DELETE", "/storage/v1/version", 405),
        ("POST", "/storage/v1/version", 405),
        ("DELETE", &format!("/storage/v1/immutable/{si_done}/0"), 405),
    ] {
        let r = srv.raw(&build(method, path, &[], b"")).await;
        check(&r, status, &format!("{method} {path} without a swissnum"));
        let r = srv.send(method, path, &[], b"").await;
        check(&r, status, &format!("{method} {path} with the swissnum"));
    }
    let r = srv.send("DELETE", "/storage/v1/version", &[], b"").await;
    assert_eq!(r.header("allow"), Some("GET, HEAD"), "{r:?}");
    // The lafs usage extension needs the swissnum too, and then reports the anonymous
    // account's usage (the uploads above were anonymous).
    let path = "/storage/lafs/v1/account/usage";
    let r = srv.raw(&build("GET", path, &cbor_headers(), b"")).await;
    check(&r, 401, "account usage without a swissnum");
    let r = srv.send("GET", path, &cbor_headers(), b"").await;
    check(&r, 200, "account usage");
    let u: lafs_protocol::AccountUsage = r.cbor();
    assert!(u.share_count >= 1 && u.used_bytes > 0, "{u:?}");
    assert_eq!(u.quota_bytes, None);

    // Everything still works with the right swissnum.
    assert_eq!(srv.read("immutable", si_done, 0, None).await.body, done);
    let r = srv.patch(si_up, 0, 0, &[9; 10], UPLOAD).await;
    check(
        &r,
        201,
        "complete the upload the unauthorized requests targeted",
    );
    let r = srv.read("mutable", si_mut, 0, None).await;
    check(&r, 200, "read mutable");
    assert_eq!(r.body, b"mutable");
}

// ============================================================================================
// paths
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_are_4xx_and_touch_nothing() {
    let srv = TestServer::start(ServerConfig::default(), Limits::default()).await;
    let s = si(9);
    let data = pattern(40, 9);
    srv.upload_share(s, 0, &data).await;
    let before = srv.state(&[s]).await;
    let good = s.to_string();
    let upper = good.to_uppercase();
    let noncanonical = {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut b = good.clone().into_bytes();
        let last = b[25];
        let idx = ALPHABET.iter().position(|&c| c == last).unwrap();
        b[25] = ALPHABET[idx ^ 1];
        String::from_utf8(b).unwrap()
    };
    let long_8k = format!("/storage/v1/immutable/{}", "a".repeat(8 * 1024));
    let long_64k = format!("/storage/v1/immutable/{good}/{}", "0/".repeat(32 * 1024));
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "GET",
            format!("/storage/v1/immutable/{}/shares", &good[..25]),
            400,
        ),
        ("GET", format!("/storage/v1/immutable/{good}a/shares"), 400),
        ("GET", format!("/storage/v1/immutable/{upper}/shares"), 400),
        ("GET", format!("/storage/v1/immutable/{upper}/0"), 400),
        (
            "GET",
            format!("/storage/v1/immutable/{noncanonical}/0"),
            400,
        ),
        (
            "GET",
            format!("/storage/v1/immutable/{}18/0", &good[..24]),
            400,
        ),
        (
            "GET",
            "/storage/v1/immutable/../../../etc/passwd".into(),
            400,
        ),
        (
            "GET",
            "/storage/v1/immutable/../../outside/sentinel".into(),
            400,
        ),
        (
            "GET",
            format!("/storage/v1/immutable/{good}/../../../../outside/sentinel"),
            400,
        ),
        (
            "GET",
            "/storage/v1/immutable/%2e%2e/%2e%2e/%2e%2e/etc/passwd".into(),
            400,
        ),
        ("GET", format!("/storage/v1/immutable/{good}%2f0"), 400),
        (
            "GET",
            format!("/storage/v1/immutable/{good}/..%2f..%2foutside%2fsentinel"),
            400,
        ),
        (
            "GET",
            format!("/storage/v1/immutable/%2e%2e%2f{good}/0"),
            400,
        ),
        ("GET", "//storage/v1/version".into(), 404),
        ("GET", "/storage//v1/version".into(), 404),
        ("GET", "/storage/v1/version/".into(), 404),
        ("GET", "/storage/v1/./version".into(), 400),
        ("GET", "/storage/v1/version/../version".into(), 400),
        ("GET", format!("/storage/v1/immutable/{good}//0"), 404),
        ("GET", format!("/storage/v1/immutable/{good}/0/"), 404),
        ("GET", format!("/storage/v1/immutable/{good}/256"), 404),
        (
            "GET",
            format!("/storage/v1/immutable/{good}/99999999999999999999999999"),
            404,
        ),
        ("GET", format!("/storage/v1/immutable/{good}/-1"), 404),
        ("GET", format!("/storage/v1/immutable/{good}/+0"), 404),
        ("GET", format!("/storage/v1/immutable/{good}/0x0"), 404),
        ("GET", format!("/storage/v1/immutable/{good}/%30"), 400),
        ("GET", format!("/storage/v1/immutable/{good}/0%00"), 400),
        (
            "GET",
            format!("/storage/v1/immutable/{good}/0/abort/x"),
            404,
        ),
        (
            "GET",
            format!("/storage/v1/mutable/{good}/../{good}/0"),
            400,
        ),
        ("GET", long_8k.clone(), 400),
        // hyper's limit on request targets (64 KiB).
        ("GET", long_64k.clone(), 414),
        (
            "PATCH",
            "/storage/v1/immutable/../../outside/sentinel".into(),
            400,
        ),
        (
            "POST",
            "/storage/v1/immutable/..%2f..%2foutside".into(),
            400,
        ),
        (
            "POST",
            "/storage/v1/mutable/../../outside/read-test-write".into(),
            400,
        ),
        ("PUT", "/storage/v1/lease/../../outside".into(), 400),
        ("PUT", format!("/storage/v1/immutable/{good}/../abort"), 400),
        ("OPTIONS", "*".into(), 404),
    ];
    let mut table = Vec::new();
    for (method, path, status) in &cases {
        let mut h = vec![
            secret(SecretKind::Upload, UPLOAD),
            hdr("Content-Range", "bytes 0-3/*"),
        ];
        if *method == "POST" {
            h = allocate_headers(UPLOAD);
        }
        let body: &[u8] = if *method == "PATCH" { b"EVIL" } else { b"" };
        let r = srv.send(method, path, &h, body).await;
        table.push(format!("{method} {:.80} -> {}", path, r.status));
        check(&r, *status, &format!("{method} {path:.100}"));
        srv.assert_files_unchanged(&before.files, path);
    }

    // Bytes an HTTP parser must refuse: hyper answers 400 before we see the request.
    let auth_line = format!("Authorization: {}\r\n", auth().1);
    for raw_target in [
        &b"/storage/v1/immutable/\xff\xfe/0"[..],
        b"/storage/v1/immutable/ /0",
        b"/storage/v1/immutable/\\..\\..\\outside",
        b"/storage/v1/immutable/\x00",
    ] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(raw_target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        req.extend_from_slice(auth_line.as_bytes());
        req.extend_from_slice(b"\r\n");
        let r = srv.try_raw(&req).await;
        let status = r.as_ref().map(|r| r.status);
        table.push(format!(
            "GET {:?} -> {status:?}",
            String::from_utf8_lossy(raw_target)
        ));
        if let Ok(st) = status {
            assert!((400..500).contains(&st), "{raw_target:?}: {st}");
        }
    }
    // A 1 MiB request target: over hyper's head limit, refused (431) or the connection closed.
    let huge = format!("/storage/v1/immutable/{}", "a".repeat(1 << 20));
    let r = srv.try_raw(&build("GET", &huge, &[auth()], b"")).await;
    let status = r.as_ref().map(|r| r.status);
    table.push(format!("GET <1 MiB path> -> {status:?}"));
    if let Ok(st) = status {
        assert!((400..500).contains(&st), "1 MiB path: {st}");
    }
    // The query string is ignored, as stock (not a way out either).
    let r = srv
        .send(
            "GET",
            &format!("/storage/v1/immutable/{good}/0?p=../../etc/passwd"),
            &[],
            b"",
        )
        .await;
    check(&r, 200, "query string ignored");
    assert_eq!(r.body, data);
    // Absolute-form targets are routed by their path.
    let r = srv
        .send(
            "GET",
            "https://localhost/storage/v1/version",
            &cbor_headers(),
            b"",
        )
        .await;
    table.push(format!("GET absolute-form version -> {}", r.status));
    check(&r, 200, "absolute-form target");

    assert_eq!(
        srv.state(&[s]).await,
        before,
        "state changed by hostile paths"
    );
    assert_eq!(srv.read("immutable", s, 0, None).await.body, data);
    eprintln!("paths:\n  {}", table.join("\n  "));
}

// ============================================================================================
// allocation
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_above_the_advertised_maximum_or_free_space_are_refused() {
    // A size limit below the disk's free space.
    let cfg = ServerConfig {
        max_immutable_share_size: 1 << 20,
        ..ServerConfig::default()
    };
    let srv = TestServer::start(cfg, Limits::default()).await;
    let v = srv.version().await;
    assert_eq!(v.maximum_immutable_share_size, 1 << 20, "{v:?}");
    assert!(v.available_space > 1 << 20, "{v:?}");
    let s = si(20);
    let before = srv.state(&[s]).await;
    for size in [v.maximum_immutable_share_size + 1, 1 << 40, u64::MAX] {
        let r = srv.allocate(s, &[0, 1, 2], size, UPLOAD).await;
        check(&r, ALLOCATED, "allocate above the maximum");
        let a: AllocateResponse = r.cbor();
        assert!(
            a.allocated.is_empty() && a.already_have.is_empty(),
            "{size}: {a:?}"
        );
        assert_eq!(
            srv.state(&[s]).await,
            before,
            "allocation of {size} left traces"
        );
    }
    // Exactly the maximum is fine; aborting it leaves nothing behind.
    let r = srv
        .allocate(s, &[0], v.maximum_immutable_share_size, UPLOAD)
        .await;
    check(&r, ALLOCATED, "allocate the maximum");
    assert_eq!(r.cbor::<AllocateResponse>().allocated.len(), 1);
    let r = srv
        .send(
            "PUT",
            &format!("/storage/v1/immutable/{s}/0/abort"),
            &[secret(SecretKind::Upload, UPLOAD)],
            b"",
        )
        .await;
    check(&r, 200, "abort");
    assert_eq!(srv.state(&[s]).await, before, "abort left traces");
    drop(srv);

    // Reserved space larger than the disk: nothing available, nothing allocated.
    let cfg = ServerConfig {
        reserved_space: u64::MAX / 2,
        ..ServerConfig::default()
    };
    let srv = TestServer::start(cfg, Limits::default()).await;
    let v = srv.version().await;
    assert_eq!(v.available_space, 0, "{v:?}");
    assert_eq!(v.maximum_immutable_share_size, 0, "{v:?}");
    let before = srv.state(&[s]).await;
    for size in [1, 1000, 1 << 30] {
        let r = srv.allocate(s, &[0, 1], size, UPLOAD).await;
        check(&r, ALLOCATED, "allocate on a full server");
        let a: AllocateResponse = r.cbor();
        assert!(a.allocated.is_empty(), "{size}: {a:?}");
    }
    // Creating a mutable share needs space too.
    let r = srv.rtw(s, &[1; 32], &rtw_write(0, 0, b"data")).await;
    assert!(
        (400..500).contains(&r.status),
        "mutable create on a full server: {r:?}"
    );
    eprintln!("mutable create on a full server -> {}", r.status);
    assert_eq!(srv.state(&[s]).await, before, "full server changed");
    assert!(srv.list("mutable", s).await.is_empty());
    drop(srv);

    // Space promised to an upload in progress is held until it is aborted (memory backend:
    // exact capacity).
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::with_capacity_limit(1 << 20));
    let srv =
        TestServer::start_with(Some(backend), ServerConfig::default(), Limits::default()).await;
    let size = 600 * 1024;
    let a: AllocateResponse = srv.allocate(si(21), &[0], size, UPLOAD).await.cbor();
    assert_eq!(a.allocated.len(), 1);
    let v = srv.version().await;
    assert!(v.available_space < size, "{v:?}");
    let a: AllocateResponse = srv.allocate(si(22), &[0], size, UPLOAD).await.cbor();
    assert!(
        a.allocated.is_empty(),
        "space of the first upload reused: {a:?}"
    );
    // Two shares of one request that only fit one at a time.
    let a: AllocateResponse = srv
        .allocate(si(23), &[0, 1], 300 * 1024, UPLOAD)
        .await
        .cbor();
    assert_eq!(a.allocated.len(), 1, "{a:?}");
    let r = srv
        .send(
            "PUT",
            &format!("/storage/v1/immutable/{}/0/abort", si(21)),
            &[secret(SecretKind::Upload, UPLOAD)],
            b"",
        )
        .await;
    check(&r, 200, "abort");
    let a: AllocateResponse = srv.allocate(si(22), &[0], size, UPLOAD).await.cbor();
    assert_eq!(a.allocated.len(), 1, "space not released by abort: {a:?}");
}

// ============================================================================================
// immutable uploads
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_writes_are_authenticated_bounded_and_write_once() {
    let srv = TestServer::start(ServerConfig::default(), Limits::default()).await;
    let s = si(30);
    let data = pattern(100, 30);
    check(
        &srv.allocate(s, &[0], 100, UPLOAD).await,
        ALLOCATED,
        "allocate",
    );
    let path = format!("/storage/v1/immutable/{s}/0");

    // Refused writes: each changes nothing.
    let mut refused: Vec<(String, Headers, Vec<u8>, u16)> = vec![
        (
            "wrong upload secret".into(),
            vec![
                secret(SecretKind::Upload, b"not-the-upload-secret"),
                hdr("Content-Range", "bytes 0-9/*"),
            ],
            data[..10].to_vec(),
            401,
        ),
        (
            "upload secret of another length".into(),
            vec![
                secret(SecretKind::Upload, &UPLOAD[..19]),
                hdr("Content-Range", "bytes 0-9/*"),
            ],
            data[..10].to_vec(),
            401,
        ),
        (
            "missing upload secret".into(),
            vec![hdr("Content-Range", "bytes 0-9/*")],
            data[..10].to_vec(),
            400,
        ),
        (
            "extra lease secret".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                secret(SecretKind::LeaseRenew, &RENEW),
                hdr("Content-Range", "bytes 0-9/*"),
            ],
            data[..10].to_vec(),
            400,
        ),
        (
            "upload secret twice".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                secret(SecretKind::Upload, UPLOAD),
                hdr("Content-Range", "bytes 0-9/*"),
            ],
            data[..10].to_vec(),
            400,
        ),
        (
            "past the allocated size".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                hdr("Content-Range", "bytes 95-104/*"),
            ],
            vec![1; 10],
            416,
        ),
        (
            "starting at the allocated size".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                hdr("Content-Range", "bytes 100-100/*"),
            ],
            vec![1],
            416,
        ),
        (
            "at u64::MAX".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                hdr(
                    "Content-Range",
                    "bytes 18446744073709551615-18446744073709551615/*",
                ),
            ],
            vec![1],
            416,
        ),
        (
            "range of 2^64 bytes".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                hdr("Content-Range", "bytes 0-18446744073709551615/*"),
            ],
            vec![1],
            413,
        ),
        (
            "range above the write limit".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                hdr("Content-Range", "bytes 0-99999999/*"),
            ],
            vec![1],
            413,
        ),
        (
            "body shorter than Content-Range".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                hdr("Content-Range", "bytes 0-9/*"),
            ],
            data[..5].to_vec(),
            416,
        ),
        (
            "body longer than Content-Range".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                hdr("Content-Range", "bytes 0-9/*"),
            ],
            data[..20].to_vec(),
            413,
        ),
        (
            "empty body".into(),
            vec![
                secret(SecretKind::Upload, UPLOAD),
                hdr("Content-Range", "bytes 0-9/*"),
            ],
            vec![],
            416,
        ),
    ];
    for (what, cr) in [
        ("missing Content-Range", None),
        ("reversed", Some("bytes 5-1/*")),
        ("other units", Some("items 0-9/*")),
        ("multiple ranges", Some("bytes 0-4/*, bytes 5-9/*")),
        ("'=' form", Some("bytes=0-9/*")),
        ("no length", Some("bytes 0-9")),
        ("open end", Some("bytes 0-/*")),
        ("suffix", Some("bytes -10/*")),
        ("upper-case units", Some("Bytes 0-9/*")),
        ("unsatisfied form", Some("bytes */100")),
        ("first past complete length", Some("bytes 0-9/0")),
        ("empty", Some("")),
        ("negative", Some("bytes -1-8/*")),
        ("hex", Some("bytes 0x0-0x9/*")),
    ] {
        let mut h = vec![secret(SecretKind::Upload, UPLOAD)];
        if let Some(cr) = cr {
            h.push(hdr("Content-Range", cr));
        }
        refused.push((format!("Content-Range {what}"), h, data[..10].to_vec(), 416));
    }
    refused.push((
        "two Content-Range headers".into(),
        vec![
            secret(SecretKind::Upload, UPLOAD),
            hdr("Content-Range", "bytes 0-9/*"),
            hdr("Content-Range", "bytes 0-9/*"),
        ],
        data[..10].to_vec(),
        416,
    ));
    let before = srv.state(&[s]).await;
    for (what, h, body, status) in &refused {
        let r = srv.send("PATCH", &path, h, body).await;
        check(&r, *status, what);
        assert_eq!(srv.state(&[s]).await, before, "{what} changed something");
    }
    // Share numbers and storage indexes that were not allocated.
    for (what, p) in [
        ("unallocated share", format!("/storage/v1/immutable/{s}/1")),
        (
            "unknown storage index",
            format!("/storage/v1/immutable/{}/0", si(31)),
        ),
    ] {
        let r = srv
            .send(
                "PATCH",
                &p,
                &[
                    secret(SecretKind::Upload, UPLOAD),
                    hdr("Content-Range", "bytes 0-9/*"),
                ],
                &data[..10],
            )
            .await;
        check(&r, 404, what);
    }
    assert_eq!(srv.state(&[s, si(31)]).await.files, before.files);

    // A first write, then overlapping ones.
    let r = srv.patch(s, 0, 0, &data[..10], UPLOAD).await;
    check(&r, 200, "first write");
    let w: WriteResponse = r.cbor();
    assert_eq!(w.required.len(), 1);
    assert_eq!((w.required[0].begin, w.required[0].end), (10, 100));
    let before = srv.state(&[s]).await;
    let mut conflicting = data[5..15].to_vec();
    conflicting[0] ^= 0xff;
    let r = srv.patch(s, 0, 5, &conflicting, UPLOAD).await;
    check(&r, 409, "overlap with different bytes");
    assert_eq!(
        srv.state(&[s]).await,
        before,
        "a conflicting write changed something"
    );
    let mut conflicting = data[..10].to_vec();
    conflicting[9] ^= 1;
    check(
        &srv.patch(s, 0, 0, &conflicting, UPLOAD).await,
        409,
        "rewrite with one bit flipped",
    );
    let r = srv.patch(s, 0, 0, &data[..10], UPLOAD).await;
    check(&r, 200, "identical rewrite");
    let r = srv.patch(s, 0, 5, &data[5..15], UPLOAD).await;
    check(&r, 200, "identical overlap extending the data");
    let w: WriteResponse = r.cbor();
    assert_eq!((w.required[0].begin, w.required[0].end), (15, 100));
    // A write past the allocation, overlapping correctly: still refused whole.
    let before = srv.state(&[s]).await;
    let mut past = data[90..].to_vec();
    past.push(0);
    check(
        &srv.patch(s, 0, 90, &past, UPLOAD).await,
        416,
        "past the end",
    );
    assert_eq!(srv.state(&[s]).await, before);

    // Finish, read back.
    let r = srv.patch(s, 0, 15, &data[15..], UPLOAD).await;
    check(&r, 201, "complete");
    assert!(r.cbor::<WriteResponse>().required.is_empty());
    let r = srv.read("immutable", s, 0, None).await;
    check(&r, 200, "read back");
    assert_eq!(r.body, data);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    // A complete share is immutable: writes and aborts are refused, bytes unchanged.
    let before = srv.state(&[s]).await;
    let mut other = data.clone();
    other[50] ^= 0x55;
    for (what, d) in [("identical", &data), ("different", &other)] {
        let r = srv.patch(s, 0, 0, d, UPLOAD).await;
        check(&r, 405, &format!("{what} write to a complete share"));
    }
    let r = srv
        .send(
            "PUT",
            &format!("/storage/v1/immutable/{s}/0/abort"),
            &[secret(SecretKind::Upload, UPLOAD)],
            b"",
        )
        .await;
    check(&r, 405, "abort of a complete share");
    // Re-allocating a complete share reports it; nothing is allocated.
    let r = srv.allocate(s, &[0], 100, b"another-secret").await;
    let a: AllocateResponse = r.cbor();
    assert!(
        a.allocated.is_empty() && a.already_have.contains(&ShareNum::new(0)),
        "{a:?}"
    );
    let after = srv.state(&[s]).await;
    assert_eq!(after.files, before.files, "complete share changed");
    assert_eq!(srv.read("immutable", s, 0, None).await.body, data);

    // Abort with the wrong secret leaves the upload in place.
    let s2 = si(32);
    check(
        &srv.allocate(s2, &[3], 20, UPLOAD).await,
        ALLOCATED,
        "allocate",
    );
    check(
        &srv.patch(s2, 3, 0, &data[..10], UPLOAD).await,
        200,
        "write",
    );
    let before = srv.state(&[s2]).await;
    let r = srv
        .send(
            "PUT",
            &format!("/storage/v1/immutable/{s2}/3/abort"),
            &[secret(SecretKind::Upload, b"wrong")],
            b"",
        )
        .await;
    check(&r, 401, "abort with a wrong secret");
    assert_eq!(srv.state(&[s2]).await, before);
    check(
        &srv.patch(s2, 3, 10, &data[10..20], UPLOAD).await,
        201,
        "complete",
    );
    assert_eq!(srv.read("immutable", s2, 3, None).await.body, &data[..20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_overlapping_patches_conflict_and_bytes_never_change() {
    let srv = TestServer::start(ServerConfig::default(), Limits::default()).await;
    for round in 0..4u8 {
        let s = si(40 + round);
        let size = 8192usize;
        check(
            &srv.allocate(s, &[0], size as u64, UPLOAD).await,
            ALLOCATED,
            "allocate",
        );
        // Eight clients race to write the first half, each with its own bytes; two more write
        // the same bytes as client 0.
        let mut set = JoinSet::new();
        for i in 0..10u8 {
            let c = srv.client.clone();
            let fill = if i >= 8 { 0 } else { i };
            set.spawn(async move {
                let half = pattern(size / 2, fill);
                (fill, c.patch(s, 0, 0, &half, UPLOAD).await.status)
            });
        }
        let mut ok = Vec::new();
        let mut conflicts = 0;
        while let Some(r) = set.join_next().await {
            let (fill, status) = r.unwrap();
            match status {
                200 => ok.push(fill),
                409 => conflicts += 1,
                other => panic!("round {round}: unexpected status {other}"),
            }
        }
        // Exactly one distinct content won; everyone else conflicted.
        ok.sort_unstable();
        ok.dedup();
        assert_eq!(
            ok.len(),
            1,
            "round {round}: several contents accepted: {ok:?}"
        );
        let winner = ok[0];
        let expected_ok = if winner == 0 { 3 } else { 1 };
        assert_eq!(conflicts, 10 - expected_ok, "round {round}");
        // Complete the share; the first half is the winner's.
        let second = pattern(size / 2, 200);
        check(
            &srv.patch(s, 0, size as u64 / 2, &second, UPLOAD).await,
            201,
            "complete",
        );
        let r = srv.read("immutable", s, 0, None).await;
        check(&r, 200, "read back");
        let mut expected = pattern(size / 2, winner);
        expected.extend_from_slice(&second);
        assert_eq!(
            r.body, expected,
            "round {round}: stored bytes are not the winner's"
        );
    }
}

// ============================================================================================
// reads
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ranges_follow_stock() {
    let srv = TestServer::start(ServerConfig::default(), Limits::default()).await;
    let s = si(50);
    let data = pattern(100, 50);
    srv.upload_share(s, 0, &data).await;
    check(
        &srv.allocate(s, &[1], 10, UPLOAD).await,
        ALLOCATED,
        "allocate share 1",
    );
    let before = srv.state(&[s]).await;
    for range in [
        "bytes=5-",
        "bytes=-5",
        "bytes=0-1,3-4",
        "bytes=0-1, 3-4",
        "bytes=5-1",
        "items=0-1",
        "bytes",
        "bytes=",
        "bytes=a-b",
        "bytes=0x0-0x5",
        "bytes=-1-5",
        "bytes=99999999999999999999999-1",
        "garbage",
        "",
    ] {
        let r = srv.read("immutable", s, 0, Some(range)).await;
        check(&r, 416, &format!("Range {range:?}"));
        assert!(find(&r.body, &data[..8]).is_none());
    }
    let r = srv
        .send(
            "GET",
            &format!("/storage/v1/immutable/{s}/0"),
            &[hdr("Range", "bytes=0-1"), hdr("Range", "bytes=0-1")],
            b"",
        )
        .await;
    check(&r, 416, "two Range headers");

    // Past the end: 204, empty. At the end: 204. Overrun: truncated 206.
    for range in [
        "bytes=100-100",
        "bytes=200-300",
        "bytes=18446744073709551615-18446744073709551615",
    ] {
        let r = srv.read("immutable", s, 0, Some(range)).await;
        check(&r, 204, range);
        assert!(
            r.body.is_empty() && r.header("content-range").is_none(),
            "{r:?}"
        );
    }
    let r = srv.read("immutable", s, 0, Some("bytes=90-200")).await;
    check(&r, 206, "overrun");
    assert_eq!(r.header("content-range"), Some("bytes 90-99/*"));
    assert_eq!(r.body, &data[90..]);
    let r = srv
        .read("immutable", s, 0, Some("bytes=0-18446744073709551615"))
        .await;
    check(&r, 206, "0-u64::MAX");
    assert_eq!(r.body, data);
    let r = srv.read("immutable", s, 0, Some("bytes=7-7")).await;
    check(&r, 206, "one byte");
    assert_eq!(r.body, &data[7..8]);

    // No such share.
    for (kind, si_, sh, what) in [
        ("immutable", s, 7, "unknown share number"),
        ("immutable", si(51), 0, "unknown storage index"),
        ("immutable", s, 1, "upload in progress"),
        ("mutable", s, 0, "immutable share read as mutable"),
    ] {
        let r = srv.read(kind, si_, sh, None).await;
        check(&r, 404, what);
        let r = srv.read(kind, si_, sh, Some("bytes=0-10")).await;
        check(&r, 404, what);
    }
    assert_eq!(srv.state(&[s]).await, before);
}

// ============================================================================================
// CBOR
// ============================================================================================

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cbor_is_400_quickly_with_bounded_memory() {
    let limits = Limits {
        max_rtw_body: 1 << 20,
        ..Limits::default()
    };
    let srv = TestServer::start(ServerConfig::default(), limits).await;
    let s = si(60);
    let m = si(61);
    let we = [3u8; 32];
    let hwm0 = vm_hwm_kib();

    // The hand-made encoder is right: this body allocates.
    let ok_body = alloc_map(cset(&[0]), cuint(10));
    assert_eq!(ok_body, allocate_body(&[0], 10));
    let r = srv
        .send(
            "POST",
            &format!("/storage/v1/immutable/{}", si(62)),
            &allocate_headers(UPLOAD),
            &ok_body,
        )
        .await;
    check(&r, ALLOCATED, "hand-made allocate body");

    let nested = |n: usize, open: &[u8], close: &[u8]| -> Vec<u8> {
        let mut v = Vec::with_capacity(n * open.len() + close.len());
        for _ in 0..n {
            v.extend_from_slice(open);
        }
        v.extend_from_slice(close);
        v
    };
    let huge_len = |major: u8, n: u64| -> Vec<u8> {
        let mut v = head(major, n);
        v.extend_from_slice(b"tiny");
        v
    };
    let mut trailing = ok_body.clone();
    trailing.push(0);
    let allocate_cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("break", vec![0xff]),
        ("reserved info", vec![0x1c]),
        ("truncated", ok_body[..ok_body.len() - 1].to_vec()),
        ("trailing byte", trailing),
        ("8000 nested arrays", nested(8000, &[0x81], &[0x00])),
        (
            "2000 nested sets",
            nested(2000, &[0xd9, 0x01, 0x02, 0x81], &[0x80]),
        ),
        ("8000 nested maps", nested(4000, &[0xa1, 0x00], &[0x00])),
        ("array of 2^40 items", huge_len(4, 1 << 40)),
        ("array of u64::MAX items", huge_len(4, u64::MAX)),
        ("map of 2^62 pairs", huge_len(5, 1 << 62)),
        ("map of u64::MAX pairs", huge_len(5, u64::MAX)),
        ("byte string of u64::MAX bytes", huge_len(2, u64::MAX)),
        ("text of 2^40 bytes", huge_len(3, 1 << 40)),
        (
            "set of 2^40 share numbers",
            alloc_map(
                {
                    let mut v = vec![0xd9, 0x01, 0x02];
                    v.extend(head(4, 1 << 40));
                    v
                },
                cuint(10),
            ),
        ),
        (
            "invalid UTF-8 key",
            cmap(&[(vec![0x62, 0xff, 0xfe], cuint(1))]),
        ),
        ("indefinite map", {
            let mut v = vec![0xbf];
            v.extend(ctext("share-numbers"));
            v.extend(cset(&[0]));
            v.extend(ctext("allocated-size"));
            v.extend(cuint(10));
            v.push(0xff);
            v
        }),
        (
            "indefinite byte string",
            alloc_map(cset(&[0]), vec![0x5f, 0x41, 0x00, 0xff]),
        ),
        (
            "float size",
            alloc_map(cset(&[0]), vec![0xfb, 0x40, 0x24, 0, 0, 0, 0, 0, 0]),
        ),
        (
            "bignum size",
            alloc_map(cset(&[0]), {
                let mut v = vec![0xc2, 0x49, 1];
                v.extend_from_slice(&[0; 8]);
                v
            }),
        ),
        ("self-described", {
            let mut v = vec![0xd9, 0xd9, 0xf7];
            v.extend_from_slice(&ok_body);
            v
        }),
        ("undefined size", alloc_map(cset(&[0]), vec![0xf7])),
        ("text size", alloc_map(cset(&[0]), ctext("10"))),
        ("negative size", alloc_map(cset(&[0]), vec![0x20])),
        ("null size", alloc_map(cset(&[0]), vec![0xf6])),
        ("untagged share set", alloc_map(vec![0x81, 0x00], cuint(10))),
        (
            "tag 258 on a map",
            alloc_map(vec![0xd9, 0x01, 0x02, 0xa0], cuint(10)),
        ),
        (
            "text share number",
            alloc_map(vec![0xd9, 0x01, 0x02, 0x81, 0x61, b'0'], cuint(10)),
        ),
        ("share number 256", alloc_map(cset(&[256]), cuint(10))),
        (
            "share number 2^64-1",
            alloc_map(cset(&[u64::MAX]), cuint(10)),
        ),
        (
            "300 share numbers",
            alloc_map(
                cset(&(0..300).map(|i| i % 256).collect::<Vec<_>>()),
                cuint(10),
            ),
        ),
        (
            "8000 share numbers",
            alloc_map(cset(&vec![0; 8000 - 40]), cuint(10)),
        ),
        (
            "unknown key",
            cmap(&[
                (ctext("share-numbers"), cset(&[0])),
                (ctext("allocated-size"), cuint(10)),
                (ctext("extra"), cuint(1)),
            ]),
        ),
        (
            "duplicate key",
            cmap(&[
                (ctext("share-numbers"), cset(&[0])),
                (ctext("allocated-size"), cuint(10)),
                (ctext("allocated-size"), cuint(10)),
            ]),
        ),
        ("missing key", cmap(&[(ctext("share-numbers"), cset(&[0]))])),
        (
            "byte-string keys",
            cmap(&[
                (
                    {
                        let mut v = head(2, 13);
                        v.extend_from_slice(b"share-numbers");
                        v
                    },
                    cset(&[0]),
                ),
                (
                    {
                        let mut v = head(2, 14);
                        v.extend_from_slice(b"allocated-size");
                        v
                    },
                    cuint(10),
                ),
            ]),
        ),
        (
            "integer keys",
            cmap(&[(cuint(0), cset(&[0])), (cuint(1), cuint(10))]),
        ),
        ("top-level array", vec![0x82, 0x80, 0x0a]),
        ("top-level null", vec![0xf6]),
        ("top-level integer", vec![0x0a]),
        (
            "JSON",
            br#"{"share-numbers": [0], "allocated-size": 10}"#.to_vec(),
        ),
    ];
    let mut slowest = Duration::ZERO;
    let mut table = Vec::new();
    for (what, body) in &allocate_cases {
        assert!(body.len() <= 8192, "{what}: {} bytes", body.len());
        let t = Instant::now();
        let r = srv
            .send(
                "POST",
                &format!("/storage/v1/immutable/{s}"),
                &allocate_headers(UPLOAD),
                body,
            )
            .await;
        let took = t.elapsed();
        slowest = slowest.max(took);
        table.push(format!("allocate {what} -> {} in {took:?}", r.status));
        check(&r, 400, &format!("allocate: {what}"));
        assert!(
            took < Duration::from_secs(2),
            "allocate: {what} took {took:?}"
        );
    }
    // Duplicate set members: a set cannot have them; stock's decoder builds a Python set and
    // accepts them. Either is fine; nothing may break.
    let r = srv
        .send(
            "POST",
            &format!("/storage/v1/immutable/{}", si(63)),
            &allocate_headers(UPLOAD),
            &alloc_map(cset(&[5, 5]), cuint(10)),
        )
        .await;
    table.push(format!("allocate duplicate set members -> {}", r.status));
    assert!(r.status == 400 || r.status == ALLOCATED, "{r:?}");

    // Read-test-write: larger bodies (limit 1 MiB here).
    let deep = nested(100_000, &[0x81], &[0x00]);
    let mut many_items = cmap(&[(ctext("test-write-vectors"), vec![0xa0])]);
    many_items[0] = 0xa2;
    many_items.extend(ctext("read-vector"));
    let n = (1 << 20) - 64;
    many_items.extend(head(4, n as u64));
    many_items.extend(std::iter::repeat_n(0u8, n));
    let tw = |shares: Vec<u8>| -> Vec<u8> {
        cmap(&[
            (ctext("test-write-vectors"), shares),
            (ctext("read-vector"), vec![0x80]),
        ])
    };
    let twv = |test: Vec<u8>, write: Vec<u8>| -> Vec<u8> {
        cmap(&[
            (ctext("test"), test),
            (ctext("write"), write),
            (ctext("new-length"), vec![0xf6]),
        ])
    };
    let write_vec = |offset: Vec<u8>, data: Vec<u8>| -> Vec<u8> {
        let mut v = vec![0x81];
        v.extend(cmap(&[(ctext("offset"), offset), (ctext("data"), data)]));
        v
    };
    let mut bytes10 = head(2, 10);
    bytes10.extend_from_slice(&[7; 10]);
    let rtw_cases: Vec<(&str, Vec<u8>)> = vec![
        ("10_000 nested arrays", nested(10_000, &[0x81], &[0x00])),
        ("100_000 nested arrays", deep),
        ("array of 2^40 items", huge_len(4, 1 << 40)),
        ("1M-item read vector", many_items),
        (
            "write data of 2^60 bytes",
            tw(cmap(&[(
                cuint(0),
                twv(vec![0x80], write_vec(cuint(0), huge_len(2, 1 << 60))),
            )])),
        ),
        (
            "31 test vectors",
            tw(cmap(&[(
                cuint(0),
                twv(
                    {
                        let one = cmap(&[
                            (ctext("offset"), cuint(0)),
                            (ctext("size"), cuint(1)),
                            (ctext("specimen"), vec![0x41, 0]),
                        ]);
                        let mut v = head(4, 31);
                        for _ in 0..31 {
                            v.extend_from_slice(&one);
                        }
                        v
                    },
                    vec![0x80],
                ),
            )])),
        ),
        (
            "31 read vectors",
            cmap(&[
                (ctext("test-write-vectors"), vec![0xa0]),
                (ctext("read-vector"), {
                    let one = cmap(&[(ctext("offset"), cuint(0)), (ctext("size"), cuint(1))]);
                    let mut v = head(4, 31);
                    for _ in 0..31 {
                        v.extend_from_slice(&one);
                    }
                    v
                }),
            ]),
        ),
        (
            "share number 256",
            tw(cmap(&[(
                cuint(256),
                twv(vec![0x80], write_vec(cuint(0), bytes10.clone())),
            )])),
        ),
        (
            "text share number",
            tw(cmap(&[(
                ctext("0"),
                twv(vec![0x80], write_vec(cuint(0), bytes10.clone())),
            )])),
        ),
        (
            "text data",
            tw(cmap(&[(
                cuint(0),
                twv(vec![0x80], write_vec(cuint(0), ctext("data"))),
            )])),
        ),
        (
            "write past the maximum mutable size",
            tw(cmap(&[(
                cuint(0),
                twv(vec![0x80], write_vec(cuint(u64::MAX - 5), bytes10.clone())),
            )])),
        ),
        ("unknown top-level key", {
            let mut v = tw(vec![0xa0]);
            v[0] = 0xa3;
            v.extend(ctext("extra"));
            v.push(0);
            v
        }),
        (
            "missing new-length",
            tw(cmap(&[(
                cuint(0),
                cmap(&[(ctext("test"), vec![0x80]), (ctext("write"), vec![0x80])]),
            )])),
        ),
    ];
    for (what, body) in &rtw_cases {
        let t = Instant::now();
        let r = srv
            .send(
                "POST",
                &format!("/storage/v1/mutable/{m}/read-test-write"),
                &rtw_headers(&we),
                body,
            )
            .await;
        let took = t.elapsed();
        slowest = slowest.max(took);
        table.push(format!(
            "rtw {what} ({} bytes) -> {} in {took:?}",
            body.len(),
            r.status
        ));
        check(&r, 400, &format!("read-test-write: {what}"));
        assert!(took < Duration::from_secs(2), "rtw: {what} took {took:?}");
    }
    // Over the body limits: 413.
    let r = srv
        .send(
            "POST",
            &format!("/storage/v1/mutable/{m}/read-test-write"),
            &rtw_headers(&we),
            &vec![0x80; (1 << 20) + 1],
        )
        .await;
    check(&r, 413, "read-test-write body over the limit");
    let r = srv
        .send(
            "POST",
            &format!("/storage/v1/immutable/{s}/0/corrupt"),
            &[hdr("Content-Type", CBOR)],
            &vec![0x80; 32 * 1024 + 1],
        )
        .await;
    check(&r, 413, "corruption advisory over the limit");

    // The server is fine, memory stayed bounded, nothing was stored.
    srv.version().await;
    assert!(srv.list("immutable", s).await.is_empty());
    assert!(srv.list("mutable", m).await.is_empty());
    let st = srv.state(&[s, m]).await;
    assert!(st.db.is_empty(), "{}", st.db);
    let grew = vm_hwm_kib().saturating_sub(hwm0);
    table.push(format!("VmHWM grew by {grew} KiB; slowest {slowest:?}"));
    eprintln!("cbor:\n  {}", table.join("\n  "));
    assert!(grew < 256 * 1024, "peak memory grew by {grew} KiB");
}

// ============================================================================================
// body limits, media types, secrets
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limits_media_types_and_secrets() {
    let srv = TestServer::start(ServerConfig::default(), short_limits(2)).await;
    let s = si(70);
    let path = format!("/storage/v1/immutable/{s}");
    let body = allocate_body(&[0], 10);
    let with = |extra: &[(String, String)]| -> Headers {
        let mut h = vec![
            secret(SecretKind::LeaseRenew, &RENEW),
            secret(SecretKind::LeaseCancel, &CANCEL),
            secret(SecretKind::Upload, UPLOAD),
        ];
        h.extend_from_slice(extra);
        h
    };
    let mut padded = body.clone();
    padded.resize(8193, 0);
    let mut cases: Vec<(&str, Headers, Vec<u8>, u16)> = vec![
        (
            "body of 8193 bytes",
            with(&cbor_headers()),
            padded.clone(),
            413,
        ),
        (
            "body of 64 KiB",
            with(&cbor_headers()),
            vec![0; 64 * 1024],
            413,
        ),
        (
            "declared 1 TB, sent 10 bytes",
            with(&[hdr("Content-Length", "1000000000000")]),
            body.clone(),
            413,
        ),
        (
            "chunked, 9000 bytes",
            with(&[hdr("Transfer-Encoding", "chunked")]),
            {
                let mut v = format!("{:x}\r\n", 9000).into_bytes();
                v.extend(vec![0; 9000]);
                v.extend_from_slice(b"\r\n0\r\n\r\n");
                v
            },
            413,
        ),
        (
            "Content-Type text/plain",
            with(&[hdr("Content-Type", "text/plain")]),
            body.clone(),
            415,
        ),
        (
            "Content-Type application/json",
            with(&[hdr("Content-Type", "application/json")]),
            body.clone(),
            415,
        ),
        (
            "Content-Type application/cbor-seq",
            with(&[hdr("Content-Type", "application/cbor-seq")]),
            body.clone(),
            415,
        ),
        (
            "Accept text/html",
            with(&[hdr("Content-Type", CBOR), hdr("Accept", "text/html")]),
            body.clone(),
            406,
        ),
        (
            "Accept application/cbor;q=0",
            with(&[hdr("Accept", "application/cbor;q=0, text/html")]),
            body.clone(),
            406,
        ),
        (
            "missing upload secret",
            vec![
                secret(SecretKind::LeaseRenew, &RENEW),
                secret(SecretKind::LeaseCancel, &CANCEL),
                hdr("Content-Type", CBOR),
            ],
            body.clone(),
            400,
        ),
        (
            "lease secret of 31 bytes",
            vec![
                secret(SecretKind::LeaseRenew, &RENEW[..31]),
                secret(SecretKind::LeaseCancel, &CANCEL),
                secret(SecretKind::Upload, UPLOAD),
            ],
            body.clone(),
            400,
        ),
        (
            "upload secret of 2 KiB",
            vec![
                secret(SecretKind::LeaseRenew, &RENEW),
                secret(SecretKind::LeaseCancel, &CANCEL),
                secret(SecretKind::Upload, &[1; 2048]),
            ],
            body.clone(),
            400,
        ),
        (
            "empty upload secret",
            vec![
                secret(SecretKind::LeaseRenew, &RENEW),
                secret(SecretKind::LeaseCancel, &CANCEL),
                hdr("X-Tahoe-Authorization", "upload-secret "),
            ],
            body.clone(),
            400,
        ),
        (
            "unknown secret name",
            with(&[hdr("X-Tahoe-Authorization", "admin-secret AAAA")]),
            body.clone(),
            400,
        ),
        (
            "write enabler on allocate",
            with(&[secret(SecretKind::WriteEnabler, &[0; 32])]),
            body.clone(),
            400,
        ),
        (
            "secret not base64",
            vec![
                secret(SecretKind::LeaseRenew, &RENEW),
                secret(SecretKind::LeaseCancel, &CANCEL),
                hdr("X-Tahoe-Authorization", "upload-secret !!!!"),
            ],
            body.clone(),
            400,
        ),
        (
            "secret without a value",
            with(&[hdr("X-Tahoe-Authorization", "lease-renew-secret")]),
            body.clone(),
            400,
        ),
    ];
    // Absent Content-Type is accepted as CBOR (stock); check that it really allocates, on
    // another storage index.
    let r = srv
        .send(
            "POST",
            &format!("/storage/v1/immutable/{}", si(71)),
            &with(&[]),
            &body,
        )
        .await;
    check(&r, ALLOCATED, "allocate without Content-Type");
    let before = srv.state(&[s]).await;
    let mut table = Vec::new();
    for (what, h, b, status) in cases.drain(..) {
        let t = Instant::now();
        let r = srv.send("POST", &path, &h, &b).await;
        table.push(format!("{what} -> {} in {:?}", r.status, t.elapsed()));
        check(&r, status, what);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what} took {:?}",
            t.elapsed()
        );
        assert_eq!(srv.state(&[s]).await, before, "{what} changed something");
    }
    // Request smuggling shapes: refused by the HTTP parser or ignored, never half-applied.
    for (what, extra) in [
        (
            "Content-Length and Transfer-Encoding",
            vec![
                hdr("Content-Length", body.len().to_string()),
                hdr("Transfer-Encoding", "chunked"),
            ],
        ),
        (
            "two different Content-Lengths",
            vec![
                hdr("Content-Length", body.len().to_string()),
                hdr("Content-Length", "3"),
            ],
        ),
        ("negative Content-Length", vec![hdr("Content-Length", "-1")]),
        ("huge chunk size", vec![hdr("Transfer-Encoding", "chunked")]),
    ] {
        let b = if what == "huge chunk size" {
            b"ffffffffffffffffffff\r\n0\r\n\r\n".to_vec()
        } else {
            body.clone()
        };
        let r = srv
            .try_raw(&build(
                "POST",
                &path,
                &[auth()]
                    .iter()
                    .cloned()
                    .chain(with(&extra))
                    .collect::<Vec<_>>(),
                &b,
            ))
            .await;
        let status = r.as_ref().map(|r| r.status);
        table.push(format!("{what} -> {status:?}"));
        if let Ok(st) = status {
            assert!((400..500).contains(&st), "{what}: {st}");
        }
        assert_eq!(srv.state(&[s]).await, before, "{what} changed something");
    }
    // Wrong media types on the other CBOR endpoints.
    let m = si(72);
    let r = srv
        .send(
            "POST",
            &format!("/storage/v1/mutable/{m}/read-test-write"),
            &[
                secret(SecretKind::LeaseRenew, &RENEW),
                secret(SecretKind::LeaseCancel, &CANCEL),
                secret(SecretKind::WriteEnabler, &[1; 32]),
                hdr("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &rtw_write(0, 0, b"x").encode(),
        )
        .await;
    check(&r, 415, "read-test-write with a form body");
    let r = srv
        .send(
            "POST",
            &format!("/storage/v1/mutable/{m}/read-test-write"),
            &[
                secret(SecretKind::LeaseRenew, &RENEW),
                secret(SecretKind::LeaseCancel, &CANCEL),
                secret(SecretKind::WriteEnabler, &[1; 32]),
                hdr("Accept", "text/html"),
            ],
            &rtw_write(0, 0, b"x").encode(),
        )
        .await;
    check(&r, 406, "read-test-write accepting only HTML");
    for p in [
        "/storage/v1/version".to_owned(),
        format!("/storage/v1/immutable/{s}/shares"),
        format!("/storage/v1/mutable/{m}/shares"),
    ] {
        let r = srv
            .send("GET", &p, &[hdr("Accept", "text/html")], b"")
            .await;
        check(&r, 406, &format!("GET {p} accepting only HTML"));
    }
    assert!(srv.list("mutable", m).await.is_empty());
    eprintln!("limits:\n  {}", table.join("\n  "));
}

// ============================================================================================
// mutable
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_write_enabler_changes_nothing() {
    let srv = TestServer::start(ServerConfig::default(), Limits::default()).await;
    let m = si(80);
    let we = [0xaa; 32];
    let bad = [0xbb; 32];
    let r = srv.rtw(m, &we, &rtw_write(0, 0, b"hello world")).await;
    check(&r, 200, "create");
    assert!(r.cbor::<ReadTestWriteResponse>().success);
    let before = srv.state(&[m]).await;

    let mut delete = ReadTestWriteRequest::default();
    delete.test_write_vectors.insert(
        ShareNum::new(0),
        TestWriteVectors {
            new_length: Some(0),
            ..TestWriteVectors::default()
        },
    );
    let read_only = ReadTestWriteRequest {
        read_vector: vec![ReadVector {
            offset: 0,
            size: 100,
        }],
        ..ReadTestWriteRequest::default()
    };
    for (what, req) in [
        ("overwrite", rtw_write(0, 0, b"EVIL")),
        ("append", rtw_write(0, 11, b"EVIL")),
        ("create another share", rtw_write(1, 0, b"EVIL")),
        ("delete", delete.clone()),
        ("read only", read_only.clone()),
    ] {
        let r = srv.rtw(m, &bad, &req).await;
        check(&r, 401, &format!("wrong write enabler: {what}"));
        assert!(find(&r.body, b"hello").is_none(), "{what}: data leaked");
        assert_eq!(srv.state(&[m]).await, before, "{what} changed something");
    }
    // Malformed write enablers: 400.
    let body = rtw_write(0, 0, b"EVIL").encode();
    let p = format!("/storage/v1/mutable/{m}/read-test-write");
    for (what, h) in [
        (
            "missing",
            vec![
                secret(SecretKind::LeaseRenew, &RENEW),
                secret(SecretKind::LeaseCancel, &CANCEL),
            ],
        ),
        ("31 bytes", rtw_headers(&we[..31])),
        ("33 bytes", rtw_headers(&[0xaa; 33])),
        ("twice", {
            let mut h = rtw_headers(&we);
            h.push(secret(SecretKind::WriteEnabler, &we));
            h
        }),
        ("with an upload secret", {
            let mut h = rtw_headers(&we);
            h.push(secret(SecretKind::Upload, UPLOAD));
            h
        }),
    ] {
        let r = srv.send("POST", &p, &h, &body).await;
        check(&r, 400, &format!("write enabler {what}"));
        assert_eq!(srv.state(&[m]).await, before, "{what} changed something");
    }
    // Right write enabler, failing test: nothing written, the read still answered.
    let mut req = rtw_write(0, 0, b"EVIL");
    req.test_write_vectors
        .get_mut(&ShareNum::new(0))
        .unwrap()
        .test
        .push(TestVector {
            offset: 0,
            size: 5,
            specimen: b"HELLO".to_vec(),
        });
    let r = srv.rtw(m, &we, &req).await;
    check(&r, 200, "failing test");
    let out: ReadTestWriteResponse = r.cbor();
    assert!(!out.success);
    assert_eq!(out.data[&ShareNum::new(0)], vec![b"hello world".to_vec()]);
    assert_eq!(srv.state(&[m]).await.files, before.files);
    let r = srv.read("mutable", m, 0, None).await;
    assert_eq!(r.body, b"hello world");
    assert_eq!(srv.list("mutable", m).await, vec![0]);

    // Mutable writes to a storage index holding immutable shares are refused.
    let s = si(81);
    srv.upload_share(s, 0, b"immutable").await;
    let before = srv.state(&[s]).await;
    let r = srv.rtw(s, &we, &rtw_write(1, 0, b"mutable")).await;
    eprintln!(
        "read-test-write on an immutable storage index -> {}",
        r.status
    );
    assert!((400..500).contains(&r.status), "{r:?}");
    assert_eq!(srv.state(&[s]).await, before);
}

// ============================================================================================
// floods, idle and slow clients
// ============================================================================================

/// GET version every 100 ms until `stop`; every answer must be 200 within two seconds.
async fn keep_probing(c: Client, stop: watch::Receiver<bool>) -> usize {
    let mut n = 0;
    while !*stop.borrow() {
        let t = Instant::now();
        let r = c
            .try_raw(&build(
                "GET",
                "/storage/v1/version",
                &[auth(), hdr("Accept", CBOR)],
                b"",
            ))
            .await;
        let took = t.elapsed();
        match r {
            Ok(r) if r.status == 200 && took < Duration::from_secs(2) => n += 1,
            other => panic!("probe failed after {took:?}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

/// Writes `bytes` one at a time, `every` apart, until a write fails; returns how many were
/// written.
async fn trickle<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8], every: Duration) -> usize {
    for (i, b) in bytes.iter().enumerate() {
        if w.write_all(std::slice::from_ref(b)).await.is_err() || w.flush().await.is_err() {
            return i;
        }
        tokio::time::sleep(every).await;
    }
    bytes.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_are_closed_while_others_are_served() {
    let timeout = Duration::from_secs(1);
    let srv = TestServer::start(ServerConfig::default(), short_limits(1)).await;
    let limit = Duration::from_secs(5);
    let (stop_tx, stop_rx) = watch::channel(false);
    let probe = tokio::spawn(keep_probing(srv.client.clone(), stop_rx));
    let c = srv.client.clone();
    let auth_line = format!("Authorization: {}\r\n", auth().1);

    let no_handshake = async {
        let t = Instant::now();
        let mut tcp = TcpStream::connect(c.addr).await.unwrap();
        wait_closed(&mut tcp, t, limit).await
    };
    let idle_tls = async {
        let mut s = c.tls().await;
        let t = Instant::now();
        wait_closed(&mut s, t, limit).await
    };
    let partial_handshake = async {
        // A ClientHello record header promising more than is sent.
        let t = Instant::now();
        let mut tcp = TcpStream::connect(c.addr).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        wait_closed(&mut tcp, t, limit).await
    };
    let partial_request = async {
        let mut s = c.tls().await;
        let t = Instant::now();
        s.write_all(b"GET /storage/v1/version HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        s.flush().await.unwrap();
        wait_closed(&mut s, t, limit).await
    };
    let slow_headers = async {
        let s = c.tls().await;
        let t = Instant::now();
        let (mut rd, mut wr) = tokio::io::split(s);
        let req = format!("GET /storage/v1/version HTTP/1.1\r\nHost: localhost\r\n{auth_line}\r\n");
        let writer = async { trickle(&mut wr, req.as_bytes(), Duration::from_millis(200)).await };
        let (sent, closed) = tokio::join!(writer, wait_closed(&mut rd, t, limit));
        let closed = closed?;
        if sent >= req.len() {
            return Err(format!(
                "server waited for all {sent} bytes of a slow request"
            ));
        }
        Ok(closed)
    };
    let slow_body = async {
        let s = c.tls().await;
        let t = Instant::now();
        let (mut rd, mut wr) = tokio::io::split(s);
        let mut h = vec![auth()];
        h.extend(allocate_headers(UPLOAD));
        let body = allocate_body(&[0], 10);
        let req = build(
            "POST",
            &format!("/storage/v1/immutable/{}", si(90)),
            &h,
            &body,
        );
        let split = req.len() - body.len() + 2;
        wr.write_all(&req[..split]).await.unwrap();
        wr.flush().await.unwrap();
        let writer = async { trickle(&mut wr, &req[split..], Duration::from_millis(300)).await };
        let reader = async {
            let r = read_response(&mut rd).await;
            let at = t.elapsed();
            let closed = wait_closed(&mut rd, t, limit).await;
            (r, at, closed)
        };
        let (sent, (r, at, closed)) = tokio::join!(writer, reader);
        Ok::<_, String>((
            sent,
            r.map(|r| r.status).map_err(|e| e.to_string()),
            at,
            closed?,
        ))
    };
    let slow_patch = async {
        let s = c.tls().await;
        let t = Instant::now();
        let (mut rd, mut wr) = tokio::io::split(s);
        let h = vec![
            auth(),
            secret(SecretKind::Upload, UPLOAD),
            hdr("Content-Range", "bytes 0-99/*"),
        ];
        let req = build(
            "PATCH",
            &format!("/storage/v1/immutable/{}/0", si(91)),
            &h,
            &[0u8; 100],
        );
        let split = req.len() - 100;
        wr.write_all(&req[..split]).await.unwrap();
        wr.flush().await.unwrap();
        let writer = async { trickle(&mut wr, &req[split..], Duration::from_millis(300)).await };
        let reader = async {
            let r = read_response(&mut rd).await;
            let at = t.elapsed();
            (r, at)
        };
        let (sent, (r, at)) = tokio::join!(writer, reader);
        (sent, r.map(|r| r.status).map_err(|e| e.to_string()), at)
    };
    let (a, b, d, e, f, g, h) = tokio::join!(
        no_handshake,
        idle_tls,
        partial_handshake,
        partial_request,
        slow_headers,
        slow_body,
        slow_patch
    );
    stop_tx.send(true).unwrap();
    let probes = probe.await.unwrap();

    let mut table = Vec::new();
    for (what, r) in [
        ("TCP, no TLS handshake", a),
        ("TLS, no request", b),
        ("half a ClientHello", d),
        ("half a request head", e),
        ("request head, one byte every 200 ms", f),
    ] {
        let (took, got) = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        let first_line = String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        table.push(format!("{what}: closed after {took:?} {first_line:?}"));
        assert!(
            took >= timeout / 2 && took < timeout * 4,
            "{what}: closed after {took:?}"
        );
    }
    let (sent, status, at, (closed_after, _)) = g.unwrap_or_else(|e| panic!("slow body: {e}"));
    table.push(format!(
        "allocate body one byte every 300 ms: {status:?} after {at:?} ({sent} bytes sent), closed after {closed_after:?}"
    ));
    assert!(at < timeout * 4, "slow allocate body answered after {at:?}");
    assert!(
        matches!(status, Ok(st) if (400..500).contains(&st)),
        "{status:?}"
    );
    let (sent, status, at) = h;
    table.push(format!(
        "PATCH body one byte every 300 ms: {status:?} after {at:?} ({sent} bytes sent)"
    ));
    assert!(at < timeout * 4, "slow PATCH body answered after {at:?}");
    assert!(
        matches!(status, Ok(st) if (400..500).contains(&st)),
        "{status:?}"
    );
    table.push(format!("{probes} probes served meanwhile"));
    eprintln!("slow clients:\n  {}", table.join("\n  "));
    assert!(probes >= 5, "{probes}");
    assert!(
        tree(&srv.storage_dir())
            .keys()
            .all(|p| p.starts_with("shares"))
    );
    assert!(srv.list("immutable", si(90)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_do_not_block_service() {
    let srv = TestServer::start(ServerConfig::default(), short_limits(3)).await;
    let t0 = Instant::now();
    let mut idle_tls = Vec::new();
    for _ in 0..50 {
        idle_tls.push(srv.tls().await);
    }
    let mut idle_tcp = Vec::new();
    for _ in 0..50 {
        idle_tcp.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    let opened = t0.elapsed();
    // Normal work is served at once.
    let t = Instant::now();
    srv.version().await;
    let s = si(100);
    srv.upload_share(s, 0, &pattern(1000, 1)).await;
    assert_eq!(
        srv.read("immutable", s, 0, None).await.body,
        pattern(1000, 1)
    );
    let served = t.elapsed();
    assert!(served < Duration::from_secs(2), "served after {served:?}");
    // And the idle connections are closed within bounded time.
    let mut set = JoinSet::new();
    for mut c in idle_tls {
        set.spawn(async move {
            wait_closed(&mut c, t0, Duration::from_secs(10))
                .await
                .map(|x| x.0)
        });
    }
    for mut c in idle_tcp {
        set.spawn(async move {
            wait_closed(&mut c, t0, Duration::from_secs(10))
                .await
                .map(|x| x.0)
        });
    }
    let mut latest = Duration::ZERO;
    while let Some(r) = set.join_next().await {
        latest = latest.max(r.unwrap().unwrap());
    }
    eprintln!(
        "100 idle connections opened in {opened:?}; work served in {served:?}; all closed by {latest:?}"
    );
    assert!(latest < Duration::from_secs(3) + opened + Duration::from_secs(3));
    srv.version().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_resumes_when_idle_connections_fill_every_slot() {
    let limits = Limits {
        max_connections: 8,
        ..short_limits(1)
    };
    let srv = TestServer::start(ServerConfig::default(), limits).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(srv.tls().await);
    }
    // Connections over the limit are dropped until the idle ones time out; then served.
    let t = Instant::now();
    let mut refused = 0;
    let r = loop {
        match srv
            .try_raw(&build(
                "GET",
                "/storage/v1/version",
                &[auth(), hdr("Accept", CBOR)],
                b"",
            ))
            .await
        {
            Ok(r) => break r,
            Err(_) => refused += 1,
        }
        assert!(t.elapsed() < Duration::from_secs(5), "never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    check(&r, 200, "version after the slots freed");
    eprintln!(
        "slots full: {refused} attempts refused, served after {:?}",
        t.elapsed()
    );
    drop(idle);
}

/// A client that requests a large share and then stops reading would hold its connection
/// slot forever if writes had no timeout; `max_connections` such clients would stop service.
/// The stall timeout frees their slots. (The response streams, so a stalled reader holds a
/// few chunks, not the share.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_eventually_closed() {
    let limits = Limits {
        max_connections: 2,
        ..short_limits(1)
    };
    let srv = TestServer::start(ServerConfig::default(), limits).await;
    let s = si(110);
    let size = 8 << 20;
    check(
        &srv.allocate(s, &[0], size as u64, UPLOAD).await,
        ALLOCATED,
        "allocate",
    );
    check(
        &srv.patch(s, 0, 0, &vec![7; size], UPLOAD).await,
        201,
        "upload",
    );
    let mut stalled = Vec::new();
    let t0 = Instant::now();
    for _ in 0..2 {
        // The upload's connections may hold their slots for a moment after their responses
        // (the server drops connections over the limit): retry briefly.
        let mut c = loop {
            match srv.try_tls().await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(t0.elapsed() < Duration::from_secs(5), "TLS connect: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let req = build(
            "GET",
            &format!("/storage/v1/immutable/{s}/0"),
            &[auth()],
            b"",
        );
        c.write_all(&req).await.unwrap();
        stalled.push(c); // never read
    }
    let t = Instant::now();
    let req = build(
        "GET",
        "/storage/v1/version",
        &[auth(), hdr("Accept", CBOR)],
        b"",
    );
    while srv.try_raw(&req).await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "stalled readers still hold every connection slot"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);
}

/// Reads larger than one streaming chunk (512 KiB) come back whole and in order, for whole
/// shares and for ranges that start and end inside chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_reads_stream_every_byte_in_order() {
    let srv = TestServer::start(ServerConfig::default(), Limits::default()).await;
    let s = si(111);
    // Not periodic (unlike `pattern`), so a repeated or reordered chunk shows.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..(3 << 20) + 12_345)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    srv.upload_share(s, 0, &data).await;
    let r = srv.read("immutable", s, 0, None).await;
    check(&r, 200, "whole share");
    assert!(r.body == data, "whole share differs");
    for (a, b) in [
        (1, 524_288),
        (524_287, 1_048_577),
        (100_000, data.len() - 3),
    ] {
        let r = srv
            .read("immutable", s, 0, Some(&format!("bytes={a}-{b}")))
            .await;
        check(&r, 206, "range");
        assert!(r.body == data[a..=b], "range {a}-{b} differs");
    }
}

// ============================================================================================
// Large read-test-write bodies
// ============================================================================================

/// A read-test-write body for share 0, made piece by piece (never held whole): `n` write
/// vectors of `block` bytes at consecutive offsets (vector `i` filled with `fill(i)`), then
/// `tests` (an encoded test array: after the writes, so it can only be evaluated once all the
/// data has arrived), then `extra` top-level pairs (encoded, counted by `extra_pairs`).
struct BigRtw {
    n: usize,
    block: usize,
    fill: fn(usize) -> u8,
    tests: Vec<u8>,
    extra_pairs: u64,
    extra: Vec<u8>,
}

impl BigRtw {
    fn prefix(&self) -> Vec<u8> {
        let mut v = head(5, 2 + self.extra_pairs);
        v.extend(ctext("test-write-vectors"));
        v.extend(head(5, 1));
        v.extend(cuint(0));
        v.extend(head(5, 3));
        v.extend(ctext("write"));
        v.extend(head(4, self.n as u64));
        v
    }

    fn vector_head(&self, i: usize) -> Vec<u8> {
        let mut v = head(5, 2);
        v.extend(ctext("offset"));
        v.extend(cuint((i * self.block) as u64));
        v.extend(ctext("data"));
        v.extend(head(2, self.block as u64));
        v
    }

    fn suffix(&self) -> Vec<u8> {
        let mut v = ctext("test");
        v.extend_from_slice(&self.tests);
        v.extend(ctext("new-length"));
        v.push(0xf6);
        v.extend(ctext("read-vector"));
        v.push(0x80);
        v.extend_from_slice(&self.extra);
        v
    }

    fn len(&self) -> u64 {
        let vectors: usize = (0..self.n)
            .map(|i| self.vector_head(i).len() + self.block)
            .sum();
        (self.prefix().len() + vectors + self.suffix().len()) as u64
    }

    fn pieces(&self) -> impl Iterator<Item = Vec<u8>> + Send + '_ {
        std::iter::once(self.prefix())
            .chain((0..self.n).map(|i| {
                let mut v = self.vector_head(i);
                v.resize(v.len() + self.block, (self.fill)(i));
                v
            }))
            .chain(std::iter::once(self.suffix()))
    }

    fn expected(&self, from: usize, to: usize) -> Vec<u8> {
        (from..to).map(|p| (self.fill)(p / self.block)).collect()
    }
}

impl Client {
    /// POSTs `rtw` to `si`, streaming its body. `declared` is the Content-Length sent (more
    /// than the body to cut it off: the write side is then closed).
    async fn rtw_streamed(
        &self,
        si: StorageIndex,
        we: &[u8],
        rtw: &BigRtw,
        declared: u64,
    ) -> std::io::Result<Resp> {
        let stream = self.try_tls().await?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut h = vec![auth()];
        h.extend(rtw_headers(we));
        h.push(hdr("Content-Length", declared.to_string()));
        let request_head = build(
            "POST",
            &format!("/storage/v1/mutable/{si}/read-test-write"),
            &h,
            b"",
        );
        let write = async move {
            let _ = async {
                wr.write_all(&request_head).await?;
                for p in rtw.pieces() {
                    wr.write_all(&p).await?;
                }
                wr.flush().await?;
                if declared > rtw.len() {
                    wr.shutdown().await?;
                }
                Ok::<_, std::io::Error>(())
            }
            .await;
            wr
        };
        let fut = async {
            let (_wr, resp) = tokio::join!(write, read_response(&mut rd));
            resp
        };
        tokio::time::timeout(Duration::from_secs(300), fut)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }
}

fn spool_limits(dir: &Path) -> Limits {
    Limits {
        spool_dir: Some(dir.to_path_buf()),
        ..Limits::default()
    }
}

/// A stock client creating a mutable file sends the whole share in one request; 80 MiB is over
/// the 64 MiB the frontend used to hold in memory (twice: body and decoded copy). Now the
/// write data is spooled, so the process's peak memory barely moves, and the share reads
/// back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_sized_read_test_write_streams_with_bounded_memory() {
    let spool = tempfile::tempdir().unwrap();
    let srv = TestServer::start(ServerConfig::default(), spool_limits(spool.path())).await;
    let m = si(120);
    let we = [9u8; 32];
    let rtw = BigRtw {
        n: 640,
        block: 128 << 10,
        fill: |i| (i * 37 % 251) as u8,
        tests: vec![0x80],
        extra_pairs: 0,
        extra: vec![],
    };
    let size = rtw.n * rtw.block;
    let hwm0 = vm_hwm_kib();
    let r = srv.rtw_streamed(m, &we, &rtw, rtw.len()).await.unwrap();
    let grew_mib = (vm_hwm_kib() - hwm0) / 1024;
    check(&r, 200, "80 MiB read-test-write");
    let out: ReadTestWriteResponse = r.cbor();
    assert!(out.success, "{out:?}");
    eprintln!("peak memory grew by {grew_mib} MiB for an 80 MiB body");
    assert!(
        grew_mib < 40,
        "peak memory grew by {grew_mib} MiB for an 80 MiB body"
    );
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "spool left behind"
    );
    let step = 4 << 20;
    for from in (0..size).step_by(step) {
        let to = (from + step).min(size);
        let r = srv
            .read("mutable", m, 0, Some(&format!("bytes={}-{}", from, to - 1)))
            .await;
        check(&r, 206, "read back");
        assert!(r.body == rtw.expected(from, to), "bytes {from}..{to}");
    }
}

/// Tests, decoding and the body's arrival all come before any write: a request that fails
/// at its very end (a test after 3 MiB of spooled data, a bad key after them, a body cut off)
/// changes nothing, on disk or in the lease database, and leaves no spool file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_read_test_write_that_fails_at_the_end_changes_nothing() {
    let spool = tempfile::tempdir().unwrap();
    let srv = TestServer::start(ServerConfig::default(), spool_limits(spool.path())).await;
    let m = si(121);
    let we = [8u8; 32];
    let first = BigRtw {
        n: 24,
        block: 128 << 10,
        fill: |i| i as u8,
        tests: vec![0x80],
        extra_pairs: 0,
        extra: vec![],
    };
    let r = srv.rtw_streamed(m, &we, &first, first.len()).await.unwrap();
    check(&r, 200, "create");
    assert!(r.cbor::<ReadTestWriteResponse>().success);
    let before = srv.state(&[m]).await;

    let failing_test = {
        let mut t = head(4, 1);
        t.extend(cmap(&[
            (ctext("offset"), cuint(0)),
            (ctext("size"), cuint(4)),
            (ctext("specimen"), {
                let mut b = head(2, 4);
                b.extend_from_slice(b"nope");
                b
            }),
        ]));
        t
    };
    let rewrite = |tests: Vec<u8>, extra_pairs: u64, extra: Vec<u8>| BigRtw {
        n: 24,
        block: 128 << 10,
        fill: |i| 200 - i as u8,
        tests,
        extra_pairs,
        extra,
    };
    let b = rewrite(failing_test, 0, vec![]);
    let r = srv.rtw_streamed(m, &we, &b, b.len()).await.unwrap();
    check(&r, 200, "failing test");
    let out: ReadTestWriteResponse = r.cbor();
    assert!(!out.success, "the test must fail");
    assert_eq!(srv.state(&[m]).await, before, "after a failing test");

    let mut bad_key = ctext("extra");
    bad_key.push(0);
    let b = rewrite(vec![0x80], 1, bad_key);
    let r = srv.rtw_streamed(m, &we, &b, b.len()).await.unwrap();
    check(&r, 400, "unknown key after the data");
    assert_eq!(srv.state(&[m]).await, before, "after a bad key");

    let b = rewrite(vec![0x80], 0, vec![]);
    let r = srv.rtw_streamed(m, &we, &b, b.len() + 100).await;
    if let Ok(r) = &r {
        assert!(r.status >= 400, "cut-off body answered {}", r.status);
    }
    // The server notices the cut-off body when it reads on; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(srv.state(&[m]).await, before, "after a cut-off body");
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);

    // And the share is still the first version.
    let r = srv.read("mutable", m, 0, Some("bytes=0-1048575")).await;
    check(&r, 206, "read");
    assert!(r.body == first.expected(0, 1 << 20));
}

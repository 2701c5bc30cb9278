//! The GBS (HTTP storage protocol v1) client for one storage server.
//!
//! A [`StorageClient`] is built from a NURL and is cheap to clone (all clones share one
//! connection pool and one [`ServerStatus`]). It speaks exactly what stock's
//! `allmydata.storage.http_client` sends: `Authorization: Tahoe-LAFS <base64 swissnum>` on
//! every request, per-operation secrets in repeated `X-Tahoe-Authorization` headers in stock's
//! order, `Accept: application/cbor` on every request, CBOR bodies with
//! `Content-Type: application/cbor`, `Content-Range` on writes and a closed `Range` on reads.
//!
//! Transport: HTTP/1.1 over TLS pinned to the NURL's SPKI hash ([`tls`]), through hyper-util's
//! pooled client, so concurrent requests to one server use several connections (one HTTP/2
//! connection tops out near 340 MiB/s on loopback; several HTTP/1.1 ones do not, and stock
//! servers speak only HTTP/1.1). [`ClientOptions::max_connections`] bounds the requests in
//! flight to one server, and with them the connections.
//!
//! Robustness, because servers fail and some are hostile:
//! - time limits on everything ([`Timeouts`]): connecting (TCP + TLS), whole small exchanges,
//!   whole writes, and for reads the wait for the response head and every silence in the
//!   body, so a server that stops mid-body is noticed without a limit on big reads;
//! - bounded responses: CBOR bodies are read up to the limit of their type
//!   ([`lafs_protocol::CborBody::LIMITS`]), error bodies up to 10,000 bytes (as stock), and a
//!   read's body may not exceed the `Content-Range` it announced, which may not exceed the
//!   range asked for: a server sending more is a [`ErrorKind::Protocol`] error after at most
//!   one read buffer, never a memory blow-up;
//! - retries only where safe: a GET (version, list, read) that failed to connect or lost its
//!   connection is retried [`ClientOptions::get_retries`] times. Nothing else is retried here:
//!   a PATCH or POST may have taken effect. Timeouts are not retried either (a hung server
//!   would double the wait); the caller, who has other servers, decides.
//!
//! Non-goals: choosing servers, retrying against other servers, upload/download logic.

mod error;
mod tls;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lafs_protocol::{
    ACCEPT_CBOR, AdviseCorruptRequest, AllocateRequest, AllocateResponse, CBOR_MIME_TYPE, CborBody,
    ContentRange, Endpoint, ErrorBody, LeaseSecret, Nurl, NurlScheme, OCTET_STREAM_MIME_TYPE,
    ReadTestWriteRequest, ReadTestWriteResponse, RequiredRange, Secrets, ShareList, ShareNum,
    StorageIndex, UploadSecret, VersionResponse, WriteEnabler, WriteResponse,
    X_TAHOE_AUTHORIZATION, authorization_header_value, content_type_is, format_range, limits,
};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::client::TlsStream;

pub use error::{ErrorKind, GbsError};

use crate::status::ServerStatus;

/// Time limits for GBS calls. Each is the longest the named step may take; a call that
/// exceeds one fails with [`ErrorKind::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake of a new connection.
    pub connect: Duration,
    /// A whole small exchange: version, allocate, list, abort, lease, advise corrupt.
    pub control: Duration,
    /// A whole immutable write (PATCH): sending the body and getting the answer.
    pub write: Duration,
    /// A whole mutable read-test-write.
    pub read_test_write: Duration,
    /// A read: from sending the request to the response head.
    pub read_response: Duration,
    /// A read: the longest silence while the body arrives.
    pub read_idle: Duration,
}

impl Default for Timeouts {
    /// Shorter than stock's 60 s: a client with other servers to ask gains nothing by waiting
    /// that long for one.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            control: Duration::from_secs(30),
            write: Duration::from_secs(60),
            read_test_write: Duration::from_secs(60),
            read_response: Duration::from_secs(30),
            read_idle: Duration::from_secs(30),
        }
    }
}

/// How a [`StorageClient`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Time limits.
    pub timeouts: Timeouts,
    /// Most requests in flight to this server at once (and so most connections); more wait.
    pub max_connections: usize,
    /// How many times a GET that could not connect, or lost its connection, is tried again.
    pub get_retries: u32,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// The TLS client certificate to present: the client's account on lafs servers. `None`:
    /// no certificate, the anonymous account (what stock clients use).
    pub identity: Option<ClientIdentity>,
}

/// A self-signed TLS client certificate and its private key (ed25519 for a lafs account).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_der", &format_args!("{} bytes", self.cert_der.len()))
            .field("key_der", &"<redacted>")
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeouts: Timeouts::default(),
            max_connections: 8,
            get_retries: 1,
            pool_idle_timeout: Duration::from_secs(60),
            identity: None,
        }
    }
}

/// Immutable or mutable: the two share namespaces, which have parallel read/list/corrupt
/// endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareKind {
    /// `/storage/v1/immutable/...`
    Immutable,
    /// `/storage/v1/mutable/...`
    Mutable,
}

/// The secrets of an immutable allocation. The upload secret authorizes the writes and
/// aborts of this upload; the lease secrets (derived per server, see
/// `lafs_core::hashutil`) let the client renew or cancel its lease later.
#[derive(Debug, Clone)]
pub struct AllocateSecrets {
    /// `lease-renew-secret`.
    pub lease_renew: LeaseSecret,
    /// `lease-cancel-secret`.
    pub lease_cancel: LeaseSecret,
    /// `upload-secret`.
    pub upload: UploadSecret,
}

/// The secrets of a mutable read-test-write.
#[derive(Debug, Clone)]
pub struct MutableSecrets {
    /// `write-enabler` for this server.
    pub write_enabler: WriteEnabler,
    /// `lease-renew-secret`.
    pub lease_renew: LeaseSecret,
    /// `lease-cancel-secret`.
    pub lease_cancel: LeaseSecret,
}

/// The answer to an immutable write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteProgress {
    /// Every byte of the share is written; the server committed it (201).
    Complete,
    /// Still missing these ranges (200).
    Incomplete(Vec<RequiredRange>),
}

// ---------------------------------------------------------------------------------------------
// Connector: TCP + pinned TLS to one fixed address, whatever the URI says.

/// A pooled connection.
struct TlsConn(TokioIo<TlsStream<TcpStream>>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// Why a new connection failed (carried through hyper-util's error as its source).
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Tcp(std::io::Error),
    #[error("the server's key does not match the pinned SPKI hash")]
    PinMismatch,
    #[error("{0}")]
    Tls(String),
    #[error("connecting took longer than {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
struct PinnedConnector {
    host: Arc<str>,
    port: u16,
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl PinnedConnector {
    async fn connect(self) -> Result<TlsConn, ConnectError> {
        let tcp = TcpStream::connect((&*self.host, self.port))
            .await
            .map_err(ConnectError::Tcp)?;
        let _ = tcp.set_nodelay(true);
        // No SNI is sent (see `tls`); the name only satisfies the API.
        let name = rustls::pki_types::ServerName::try_from("gbs.invalid")
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| {
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            match inner {
                Some(err) if *err == tls::PIN_MISMATCH => ConnectError::PinMismatch,
                Some(err) => ConnectError::Tls(err.to_string()),
                None => ConnectError::Tls(e.to_string()),
            }
        })?;
        Ok(TlsConn(TokioIo::new(tls)))
    }
}

impl tower_service::Service<Uri> for PinnedConnector {
    type Response = TlsConn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let limit = this.timeout;
            tokio::time::timeout(limit, this.connect())
                .await
                .unwrap_or(Err(ConnectError::Timeout(limit)))
        })
    }
}

/// Maps hyper-util's error (a failed connect, or a connection lost mid-exchange).
fn client_error_kind(e: &hyper_util::client::legacy::Error) -> ErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(c) = s.downcast_ref::<ConnectError>() {
            return match c {
                ConnectError::Tcp(io) => ErrorKind::Connect(io.to_string()),
                ConnectError::PinMismatch => ErrorKind::PinMismatch,
                ConnectError::Tls(m) => ErrorKind::Tls(m.clone()),
                ConnectError::Timeout(after) => ErrorKind::Timeout {
                    what: "connecting",
                    after: *after,
                },
            };
        }
        source = s.source();
    }
    let detail = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string());
    ErrorKind::Connect(format!("connection lost: {detail}"))
}

// ---------------------------------------------------------------------------------------------
// The client.

struct Inner {
    name: Arc<str>,
    base: String,
    auth: HeaderValue,
    http: Client<PinnedConnector, Full<Bytes>>,
    opts: ClientOptions,
    slots: Arc<Semaphore>,
    status: Arc<ServerStatus>,
}

/// A GBS client for one storage server. Clones share the connection pool and status.
#[derive(Clone)]
pub struct StorageClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StorageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the swissnum.
        f.debug_struct("StorageClient")
            .field("name", &self.inner.name)
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// Largest error body read (stock's client reads 10,000 bytes).
const MAX_ERROR_BODY: usize = limits::STOCK_CLIENT_MAX_ERROR_BODY;
/// Time allowed to read an error body once the status is known.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a read of share data delivers into.
trait ReadSink: Send {
    /// The server announced `len` bytes (at most what was asked for).
    fn start(&mut self, len: usize);
    /// The next bytes; the total never exceeds the announced length.
    fn put(&mut self, data: &[u8]);
}

struct SliceSink<'a> {
    buf: &'a mut [u8],
    filled: usize,
}

impl ReadSink for SliceSink<'_> {
    fn start(&mut self, _len: usize) {
        self.filled = 0;
    }
    fn put(&mut self, data: &[u8]) {
        self.buf[self.filled..self.filled + data.len()].copy_from_slice(data);
        self.filled += data.len();
    }
}

impl ReadSink for BytesMut {
    fn start(&mut self, len: usize) {
        self.clear();
        self.reserve(len);
    }
    fn put(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
    }
}

impl StorageClient {
    /// A client for the server at `nurl`, called `name` in errors and status (use
    /// [`crate::servers::ServerEntry::display_name`]). Connects lazily, on the first call.
    pub fn new(
        nurl: &Nurl,
        name: impl Into<String>,
        opts: ClientOptions,
    ) -> Result<Self, GbsError> {
        let name: Arc<str> = Arc::from(name.into());
        let fail = |kind| GbsError::new(name.clone(), "configure".into(), kind);
        if nurl.scheme != NurlScheme::Pb {
            return Err(fail(ErrorKind::Unsupported(
                "Tor NURLs (pb+tor://) are not supported".into(),
            )));
        }
        let tls = tls::client_config(nurl.spki_hash, opts.identity.as_ref())
            .map_err(|e| fail(ErrorKind::Tls(e.to_string())))?;
        let connector = PinnedConnector {
            host: Arc::from(nurl.host.as_str()),
            port: nurl.port,
            tls: tokio_rustls::TlsConnector::from(tls),
            timeout: opts.timeouts.connect,
        };
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(opts.pool_idle_timeout)
            .pool_max_idle_per_host(opts.max_connections)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let mut auth =
            HeaderValue::from_str(&authorization_header_value(&nurl.swissnum)).map_err(|_| {
                fail(ErrorKind::Unsupported(
                    "swissnum is not a header value".into(),
                ))
            })?;
        auth.set_sensitive(true);
        Ok(StorageClient {
            inner: Arc::new(Inner {
                status: Arc::new(ServerStatus::new(name.to_string())),
                name,
                base: format!("https://{}", nurl.authority()),
                auth,
                http,
                slots: Arc::new(Semaphore::new(opts.max_connections.max(1))),
                opts,
            }),
        })
    }

    /// The name used in errors and status.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This server's shared status.
    pub fn status(&self) -> &Arc<ServerStatus> {
        &self.inner.status
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    fn error(&self, ep: &Endpoint, kind: ErrorKind) -> GbsError {
        GbsError::new(self.inner.name.clone(), ep.to_string(), kind)
    }

    /// Records the outcome in the status and wraps the error.
    fn finish<T>(&self, ep: &Endpoint, r: Result<T, ErrorKind>) -> Result<T, GbsError> {
        match r {
            Ok(v) => {
                self.inner.status.record_contact();
                Ok(v)
            }
            Err(kind) => {
                let e = self.error(ep, kind);
                match e.kind() {
                    // The server answered: it is there, it just said no.
                    ErrorKind::Http { status, .. } if *status < 500 => {
                        self.inner.status.record_contact();
                    }
                    ErrorKind::Http { .. } | ErrorKind::Protocol(_) => {
                        self.inner.status.record_contact();
                        self.inner.status.record_error(&e.to_string());
                    }
                    _ => self.inner.status.record_error(&e.to_string()),
                }
                Err(e)
            }
        }
    }

    fn build(
        &self,
        ep: &Endpoint,
        secrets: Option<&Secrets>,
        body: Option<Bytes>,
        cbor_body: bool,
    ) -> Result<Request<Full<Bytes>>, ErrorKind> {
        let uri = format!("{}{}", self.inner.base, ep.path());
        let mut req = Request::builder()
            .method(ep.method())
            .uri(uri)
            .header(AUTHORIZATION, self.inner.auth.clone());
        if let Some(secrets) = secrets {
            for v in secrets.header_values() {
                let mut v = HeaderValue::from_str(&v)
                    .map_err(|_| ErrorKind::Unsupported("secret header".into()))?;
                v.set_sensitive(true);
                req = req.header(X_TAHOE_AUTHORIZATION, v);
            }
        }
        req = req.header(ACCEPT, ACCEPT_CBOR);
        if cbor_body {
            req = req.header(CONTENT_TYPE, CBOR_MIME_TYPE);
        }
        req.body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ErrorKind::Unsupported(format!("cannot build request: {e}")))
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, ErrorKind> {
        self.inner
            .http
            .request(req)
            .await
            .map_err(|e| client_error_kind(&e))
    }

    /// A request slot ([`ClientOptions::max_connections`]). The semaphore is never closed;
    /// if it were, requests would simply go unthrottled.
    async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.slots.clone().acquire_owned().await.ok()
    }

    /// Runs `f` under the whole-exchange limit `limit`.
    async fn within<T>(
        &self,
        limit: Duration,
        what: &'static str,
        f: impl Future<Output = Result<T, ErrorKind>>,
    ) -> Result<T, ErrorKind> {
        let _permit = self.permit().await;
        tokio::time::timeout(limit, f)
            .await
            .unwrap_or(Err(ErrorKind::Timeout { what, after: limit }))
    }

    /// Sends a request whose answer is CBOR of type `T` with one of the `ok` statuses.
    async fn cbor_call<T: CborBody>(
        &self,
        ep: &Endpoint,
        secrets: Option<&Secrets>,
        body: Option<Vec<u8>>,
        ok: &[StatusCode],
    ) -> Result<(StatusCode, T), ErrorKind> {
        let cbor_body = body.is_some();
        let req = self.build(ep, secrets, body.map(Bytes::from), cbor_body)?;
        let resp = self.send(req).await?;
        let status = resp.status();
        if !ok.contains(&status) {
            return Err(http_error(resp).await);
        }
        if !content_type_is(resp.headers(), CBOR_MIME_TYPE) {
            return Err(ErrorKind::Protocol(format!(
                "answer to {ep} is not CBOR (Content-Type {:?})",
                resp.headers().get(CONTENT_TYPE)
            )));
        }
        let bytes = read_limited(resp.into_body(), T::LIMITS.max_len, None).await?;
        let value = T::decode(&bytes).map_err(|e| ErrorKind::Protocol(format!("bad body: {e}")))?;
        Ok((status, value))
    }

    /// Sends a request whose answer has no body of interest.
    async fn empty_call(
        &self,
        ep: &Endpoint,
        secrets: Option<&Secrets>,
        body: Option<Vec<u8>>,
        ok: StatusCode,
    ) -> Result<(), ErrorKind> {
        let cbor_body = body.is_some();
        let req = self.build(ep, secrets, body.map(Bytes::from), cbor_body)?;
        let resp = self.send(req).await?;
        if resp.status() != ok {
            return Err(http_error(resp).await);
        }
        // Drain a small body so the connection can be reused; refuse a large one.
        read_limited(resp.into_body(), MAX_ERROR_BODY, None).await?;
        Ok(())
    }

    /// Whether a GET that ended with `r` should be tried again (a connection failure, and
    /// retries left); counts the retry.
    fn retry_get<T>(&self, r: &Result<T, ErrorKind>, tries: &mut u32) -> bool {
        match r {
            Err(ErrorKind::Connect(m)) if *tries < self.inner.opts.get_retries => {
                tracing::debug!(server = %self.inner.name, error = %m, "retrying a GET");
                *tries += 1;
                true
            }
            _ => false,
        }
    }

    /// Retries `attempt` on connection failures, for GETs only.
    async fn with_get_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T, ErrorKind>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ErrorKind>>,
    {
        let mut tries = 0;
        loop {
            let r = attempt().await;
            if !self.retry_get(&r, &mut tries) {
                return r;
            }
        }
    }

    // ---- general ----

    /// `GET /storage/v1/version`: the server's limits, free space and software version. Also
    /// recorded in [`StorageClient::status`].
    pub async fn version(&self) -> Result<VersionResponse, GbsError> {
        let ep = Endpoint::Version;
        let t = &self.inner.opts.timeouts;
        let r = self
            .with_get_retries(|| {
                self.within(t.control, "version", async {
                    Ok(self
                        .cbor_call::<VersionResponse>(&ep, None, None, &[StatusCode::OK])
                        .await?
                        .1)
                })
            })
            .await;
        let v = self.finish(&ep, r)?;
        self.inner.status.record_version(&v);
        Ok(v)
    }

    /// `GET /storage/lafs/v1/account/usage` (lafs extension): what this client's account
    /// uses on the server and its quota. `Ok(None)` from a server without the extension
    /// (stock answers 404).
    pub async fn account_usage(&self) -> Result<Option<lafs_protocol::AccountUsage>, GbsError> {
        let ep = Endpoint::LafsAccountUsage;
        let t = &self.inner.opts.timeouts;
        let r = self
            .with_get_retries(|| {
                self.within(t.control, "account usage", async {
                    Ok(self
                        .cbor_call::<lafs_protocol::AccountUsage>(
                            &ep,
                            None,
                            None,
                            &[StatusCode::OK],
                        )
                        .await?
                        .1)
                })
            })
            .await;
        match self.finish(&ep, r) {
            Ok(u) => Ok(Some(u)),
            Err(e) if matches!(e.kind(), ErrorKind::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /storage/v1/lease/:si`: adds a lease on every share of `si` the server holds, or
    /// renews the one with this renew secret. [`ErrorKind::Http`] 404 if it holds none.
    pub async fn add_or_renew_lease(
        &self,
        si: StorageIndex,
        renew: &LeaseSecret,
        cancel: &LeaseSecret,
    ) -> Result<(), GbsError> {
        let ep = Endpoint::LeaseAddOrRenew { si };
        let secrets = Secrets {
            lease_renew: Some(renew.clone()),
            lease_cancel: Some(cancel.clone()),
            ..Secrets::default()
        };
        let r = self
            .within(
                self.inner.opts.timeouts.control,
                "lease",
                self.empty_call(&ep, Some(&secrets), None, StatusCode::NO_CONTENT),
            )
            .await;
        self.finish(&ep, r)
    }

    // ---- immutable ----

    /// `POST /storage/v1/immutable/:si`: allocates `share_numbers` of `allocated_size` bytes
    /// each. The answer lists the shares allocated for this upload and every complete share
    /// the server already has (requested or not).
    pub async fn allocate(
        &self,
        si: StorageIndex,
        secrets: &AllocateSecrets,
        share_numbers: &BTreeSet<ShareNum>,
        allocated_size: u64,
    ) -> Result<AllocateResponse, GbsError> {
        let ep = Endpoint::ImmutableAllocate { si };
        let secrets = Secrets {
            lease_renew: Some(secrets.lease_renew.clone()),
            lease_cancel: Some(secrets.lease_cancel.clone()),
            upload: Some(secrets.upload.clone()),
            write_enabler: None,
        };
        let body = AllocateRequest {
            share_numbers: share_numbers.clone(),
            allocated_size,
        }
        .encode();
        // Stock and lafs answer 200; 201 is accepted too (an older reading of the spec).
        let r = self
            .within(self.inner.opts.timeouts.control, "allocate", async {
                Ok(self
                    .cbor_call::<AllocateResponse>(
                        &ep,
                        Some(&secrets),
                        Some(body),
                        &[StatusCode::OK, StatusCode::CREATED],
                    )
                    .await?
                    .1)
            })
            .await;
        self.finish(&ep, r)
    }

    /// `PATCH /storage/v1/immutable/:si/:sh`: writes `data` at `offset` (`data` is sent as
    /// is, without copying). Writing bytes already written with the same content is
    /// harmless; different content is [`ErrorKind::Http`] 409. An empty `data` is refused
    /// locally (HTTP cannot express an empty range).
    pub async fn write_share_chunk(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &UploadSecret,
        offset: u64,
        data: Bytes,
    ) -> Result<WriteProgress, GbsError> {
        let ep = Endpoint::ImmutableWrite { si, shnum };
        let Some(range) = ContentRange::for_write(offset, data.len() as u64) else {
            return Err(self.error(
                &ep,
                ErrorKind::Unsupported("an empty or overflowing write".into()),
            ));
        };
        let secrets = Secrets {
            upload: Some(upload_secret.clone()),
            ..Secrets::default()
        };
        let r = self
            .within(self.inner.opts.timeouts.write, "write", async {
                let mut req = self.build(&ep, Some(&secrets), Some(data), false)?;
                let range = HeaderValue::from_str(&range.to_header_value())
                    .map_err(|_| ErrorKind::Unsupported("Content-Range".into()))?;
                req.headers_mut().insert(CONTENT_RANGE, range);
                let resp = self.send(req).await?;
                let status = resp.status();
                if status != StatusCode::OK && status != StatusCode::CREATED {
                    return Err(http_error(resp).await);
                }
                if !content_type_is(resp.headers(), CBOR_MIME_TYPE) {
                    return Err(ErrorKind::Protocol("write answer is not CBOR".into()));
                }
                let body =
                    read_limited(resp.into_body(), WriteResponse::LIMITS.max_len, None).await?;
                let w = WriteResponse::decode(&body)
                    .map_err(|e| ErrorKind::Protocol(format!("bad body: {e}")))?;
                Ok(if status == StatusCode::CREATED {
                    WriteProgress::Complete
                } else {
                    WriteProgress::Incomplete(w.required)
                })
            })
            .await;
        self.finish(&ep, r)
    }

    /// `PUT /storage/v1/immutable/:si/:sh/abort`: abandons an unfinished upload of a share
    /// (404 if there is none, 405 if it is already complete).
    pub async fn abort_upload(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &UploadSecret,
    ) -> Result<(), GbsError> {
        let ep = Endpoint::ImmutableAbort { si, shnum };
        let secrets = Secrets {
            upload: Some(upload_secret.clone()),
            ..Secrets::default()
        };
        let r = self
            .within(
                self.inner.opts.timeouts.control,
                "abort",
                self.empty_call(&ep, Some(&secrets), None, StatusCode::OK),
            )
            .await;
        self.finish(&ep, r)
    }

    /// `GET /storage/v1/{immutable,mutable}/:si/shares`: the share numbers held (empty for an
    /// unknown storage index).
    pub async fn list_shares(
        &self,
        kind: ShareKind,
        si: StorageIndex,
    ) -> Result<BTreeSet<ShareNum>, GbsError> {
        let ep = match kind {
            ShareKind::Immutable => Endpoint::ImmutableListShares { si },
            ShareKind::Mutable => Endpoint::MutableListShares { si },
        };
        let t = &self.inner.opts.timeouts;
        let r = self
            .with_get_retries(|| {
                self.within(t.control, "list shares", async {
                    Ok(self
                        .cbor_call::<ShareList>(&ep, None, None, &[StatusCode::OK])
                        .await?
                        .1
                        .0)
                })
            })
            .await;
        self.finish(&ep, r)
    }

    /// `GET /storage/v1/{immutable,mutable}/:si/:sh` with `Range`: reads up to `buf.len()`
    /// bytes at `offset` into `buf` and returns how many arrived. Fewer than asked means the
    /// share ended (0: `offset` is at or past its end). The body is streamed into `buf` as it
    /// arrives; a server announcing or sending more than asked is a protocol error.
    /// [`ErrorKind::Http`] 404 if the server has no such share.
    pub async fn read_share_into(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, GbsError> {
        let ep = read_endpoint(kind, si, shnum);
        let len = buf.len() as u64;
        let mut sink = SliceSink { buf, filled: 0 };
        let mut tries = 0;
        let r = loop {
            let r = self.read_once(&ep, offset, len, &mut sink).await;
            if !self.retry_get(&r, &mut tries) {
                break r;
            }
        };
        self.finish(&ep, r.map(|()| sink.filled))
    }

    /// Like [`StorageClient::read_share_into`], into a new buffer of at most `len` bytes
    /// (allocated to the size the server announces, not to `len`).
    pub async fn read_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, GbsError> {
        let ep = read_endpoint(kind, si, shnum);
        let mut out = BytesMut::new();
        let mut tries = 0;
        let r = loop {
            let r = self.read_once(&ep, offset, len, &mut out).await;
            if !self.retry_get(&r, &mut tries) {
                break r;
            }
        };
        self.finish(&ep, r.map(|()| out.freeze()))
    }

    async fn read_once(
        &self,
        ep: &Endpoint,
        offset: u64,
        len: u64,
        sink: &mut dyn ReadSink,
    ) -> Result<(), ErrorKind> {
        sink.start(0);
        let Some(range) = format_range(offset, len) else {
            return Ok(()); // nothing to read
        };
        let t = &self.inner.opts.timeouts;
        let _permit = self.permit().await;
        let mut req = self.build(ep, None, None, false)?;
        let range =
            HeaderValue::from_str(&range).map_err(|_| ErrorKind::Unsupported("Range".into()))?;
        req.headers_mut().insert(RANGE, range);
        let resp = tokio::time::timeout(t.read_response, self.send(req))
            .await
            .unwrap_or(Err(ErrorKind::Timeout {
                what: "the read's response",
                after: t.read_response,
            }))?;
        match resp.status() {
            StatusCode::NO_CONTENT => return Ok(()),
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => {
                return Err(ErrorKind::Protocol(
                    "the server ignored the Range header (200)".into(),
                ));
            }
            _ => return Err(http_error(resp).await),
        }
        if !content_type_is(resp.headers(), OCTET_STREAM_MIME_TYPE) {
            return Err(ErrorKind::Protocol(
                "read answer is not application/octet-stream".into(),
            ));
        }
        let cr = resp
            .headers()
            .get(CONTENT_RANGE)
            .ok_or_else(|| ErrorKind::Protocol("206 without Content-Range".into()))
            .and_then(|v| {
                ContentRange::parse(v.as_bytes())
                    .map_err(|_| ErrorKind::Protocol("malformed Content-Range".into()))
            })?;
        if cr.first != offset || cr.last >= offset.saturating_add(len) {
            return Err(ErrorKind::Protocol(format!(
                "Content-Range {}-{} is not within the requested {}-{}",
                cr.first,
                cr.last,
                offset,
                offset.saturating_add(len) - 1
            )));
        }
        let expected = cr.len();
        if let Some(cl) = resp.headers().get(CONTENT_LENGTH)
            && cl.to_str().ok().and_then(|s| s.parse::<u64>().ok()) != Some(expected)
        {
            return Err(ErrorKind::Protocol(
                "Content-Length disagrees with Content-Range".into(),
            ));
        }
        let expected = usize::try_from(expected)
            .map_err(|_| ErrorKind::Protocol("range too large for memory".into()))?;
        sink.start(expected);
        let mut body = resp.into_body();
        let mut got = 0usize;
        loop {
            let frame = tokio::time::timeout(t.read_idle, body.frame())
                .await
                .map_err(|_| ErrorKind::Timeout {
                    what: "the read's body (server went silent)",
                    after: t.read_idle,
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| ErrorKind::Connect(format!("connection lost: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if data.len() > expected - got {
                    return Err(ErrorKind::Protocol(
                        "the server sent more than its Content-Range".into(),
                    ));
                }
                sink.put(&data);
                got += data.len();
            }
        }
        if got != expected {
            return Err(ErrorKind::Protocol(format!(
                "the body ended after {got} of {expected} bytes"
            )));
        }
        Ok(())
    }

    /// `POST /storage/v1/{immutable,mutable}/:si/:sh/corrupt`: tells the server a share
    /// looks corrupt. `reason` is cut to 32757 bytes, the most a stock server accepts (an
    /// empty one becomes "unspecified"); it must not contain secrets.
    pub async fn advise_corrupt_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<(), GbsError> {
        let ep = match kind {
            ShareKind::Immutable => Endpoint::ImmutableAdvise { si, shnum },
            ShareKind::Mutable => Endpoint::MutableAdvise { si, shnum },
        };
        // The spec allows 32765 bytes, but stock servers (and lafs's) take bodies of at most
        // 32768 bytes, and the CBOR map around the text costs 11: 32757 is what fits.
        let max = limits::MAX_ADVISE_CORRUPT_BODY - 11;
        let mut reason = if reason.is_empty() {
            "unspecified".to_owned()
        } else {
            reason.to_owned()
        };
        if reason.len() > max {
            let mut cut = max;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        let body = AdviseCorruptRequest { reason }.encode();
        let r = self
            .within(
                self.inner.opts.timeouts.control,
                "advise corrupt",
                self.empty_call(&ep, None, Some(body), StatusCode::OK),
            )
            .await;
        self.finish(&ep, r)
    }

    // ---- mutable ----

    /// `POST /storage/v1/mutable/:si/read-test-write`: for every share in the request, the
    /// tests must all pass for any write to happen; reads are answered from the shares as
    /// they were before the writes. `success` false means a test failed (nothing written).
    /// [`ErrorKind::Http`] 401 for a wrong write enabler.
    pub async fn read_test_write(
        &self,
        si: StorageIndex,
        secrets: &MutableSecrets,
        request: &ReadTestWriteRequest,
    ) -> Result<ReadTestWriteResponse, GbsError> {
        let ep = Endpoint::MutableReadTestWrite { si };
        let secrets = Secrets {
            lease_renew: Some(secrets.lease_renew.clone()),
            lease_cancel: Some(secrets.lease_cancel.clone()),
            upload: None,
            write_enabler: Some(secrets.write_enabler.clone()),
        };
        let body = request.encode();
        let r = self
            .within(
                self.inner.opts.timeouts.read_test_write,
                "read-test-write",
                async {
                    Ok(self
                        .cbor_call::<ReadTestWriteResponse>(
                            &ep,
                            Some(&secrets),
                            Some(body),
                            &[StatusCode::OK],
                        )
                        .await?
                        .1)
                },
            )
            .await;
        self.finish(&ep, r)
    }
}

fn read_endpoint(kind: ShareKind, si: StorageIndex, shnum: ShareNum) -> Endpoint {
    match kind {
        ShareKind::Immutable => Endpoint::ImmutableRead { si, shnum },
        ShareKind::Mutable => Endpoint::MutableRead { si, shnum },
    }
}

/// Reads a whole body of at most `limit` bytes; more is a protocol error (after reading at
/// most one frame past the limit). `idle` bounds each wait for a frame.
async fn read_limited(
    mut body: Incoming,
    limit: usize,
    idle: Option<Duration>,
) -> Result<Bytes, ErrorKind> {
    let mut out = BytesMut::new();
    loop {
        let next = body.frame();
        let frame = match idle {
            Some(d) => tokio::time::timeout(d, next)
                .await
                .map_err(|_| ErrorKind::Timeout {
                    what: "the answer's body",
                    after: d,
                })?,
            None => next.await,
        };
        let Some(frame) = frame else {
            return Ok(out.freeze());
        };
        let frame = frame.map_err(|e| ErrorKind::Connect(format!("connection lost: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if data.len() > limit - out.len() {
                return Err(ErrorKind::Protocol(format!(
                    "answer larger than {limit} bytes"
                )));
            }
            out.extend_from_slice(&data);
        }
    }
}

/// Turns an unexpected status into [`ErrorKind::Http`], with the server's message if it sends
/// a short one (CBOR `{"error": ...}` from lafs extensions, text from others).
async fn http_error(resp: Response<Incoming>) -> ErrorKind {
    let status = resp.status().as_u16();
    let is_cbor = content_type_is(resp.headers(), CBOR_MIME_TYPE);
    let message =
        match read_limited(resp.into_body(), MAX_ERROR_BODY, Some(ERROR_BODY_TIMEOUT)).await {
            Ok(body) if is_cbor => ErrorBody::decode(&body)
                .map(|b| b.error)
                .unwrap_or_default(),
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(_) => String::new(),
        };
    ErrorKind::Http {
        status,
        message: error::sanitize_message(&message),
    }
}

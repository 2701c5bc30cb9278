//! The account-facing frontend: HTTPS, the swissnum check, parsing every request into a typed
//! [`Endpoint`] before anything else happens, body limits and timeouts. The GBS status of every
//! failure is decided in one place ([`error_status`]).
//!
//! Clients pin the server's SPKI; the server presents the node's self-signed certificate and
//! speaks HTTP/1.1 (as stock Tahoe does). Every request is made on behalf of an account: a
//! client that presents an ed25519 self-signed TLS client certificate acts for the account of
//! that public key ([`account_key_of_cert`]; the TLS handshake proves it holds the private key,
//! so nothing else about the certificate matters); a client without one (every stock Tahoe
//! client) acts for the anonymous account. The server is asked for a certificate but never
//! requires one, and only ed25519 is accepted, so any other client certificate fails the
//! handshake rather than being silently treated as anonymous.

use crate::server::{ServerError, StorageServer, TestWrite};
use crate::spool::{Spool, WriteData};
use crate::types::{ShareKind, StorageIndex};
use bytes::Bytes;
use http::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use lafs_protocol::{
    AdviseCorruptRequest, AllocateRequest, AllocateResponse, BodyKind, ByteRange, CborBody,
    ContentRange, Endpoint, ProtocolError, ReadPlan, ReadTestWriteResponse, RequiredRange,
    RtwDecoder, SecretKind, Secrets, ShareList, ShareNum, StreamLimits, StreamedRtw, Swissnum,
    VersionResponse, WriteResponse,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod io;
pub use io::{ChannelBody, StallGuard};

/// How much of a share one step of a streamed read fetches from the backend.
const READ_CHUNK: u64 = 512 << 10;
/// Chunks a streamed read may have waiting for the client.
const READ_DEPTH: usize = 2;

/// Re-exported so callers need no direct rustls dependency.
pub use rustls::ServerConfig as RustlsServerConfig;

/// Limits that protect the server from slow, idle or greedy clients.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to send request headers; also closes idle keep-alive connections.
    pub header_timeout: Duration,
    /// Time allowed to send a request body.
    pub body_timeout: Duration,
    /// Largest immutable-write (PATCH) body.
    pub max_write_body: u64,
    /// Largest read-test-write body. Its write data is spooled to a temporary file (see
    /// [`crate::spool`]), so this bounds the disk one request may use, not memory; a stock
    /// client sends a whole mutable share in one request, so this is also the largest mutable
    /// share a client can create in one step.
    pub max_rtw_body: u64,
    /// Where read-test-write data is spooled (the system's temporary directory if `None`;
    /// a node uses its storage directory).
    pub spool_dir: Option<std::path::PathBuf>,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Time a response write may stay blocked (the client not reading) before the connection
    /// is closed.
    pub stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(20),
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(120),
            max_write_body: 16 << 20,
            max_rtw_body: 16 << 30,
            spool_dir: None,
            max_connections: 1024,
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// The node's one certificate, served to every client.
///
/// A resolver rather than `with_single_cert`, because rustls checks certificates it is given
/// that way with webpki, which refuses the X.509 v1 certificates stock Tahoe nodes have; a
/// node directory taken over from stock must keep its certificate (clients pin its key).
#[derive(Debug)]
struct NodeCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for NodeCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (32 bytes) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The account key of a client certificate: `pub-v0-` + base32 of the raw ed25519 public key
/// (the form Tahoe uses for ed25519 public keys, and what operators pass to
/// `lafs storage accounts add --pubkey`); `None` if the certificate holds no ed25519 key.
pub fn account_key_of_cert(cert_der: &[u8]) -> Option<String> {
    let spki = lafs_protocol::spki_der_from_cert_der(cert_der).ok()?;
    let raw = spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    (raw.len() == 32).then(|| format!("pub-v0-{}", lafs_core::base32::encode(raw)))
}

/// Accepts any client certificate holding an ed25519 key (self-signed; the key *is* the
/// identity) and checks the handshake signature with it; clients may present none.
#[derive(Debug)]
struct AccountKeyVerifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for AccountKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match account_key_of_cert(end_entity.as_ref()) {
            Some(_) => Ok(rustls::server::danger::ClientCertVerified::assertion()),
            None => Err(rustls::Error::General(
                "client certificate must hold an ed25519 key".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }
}

/// Builds the TLS configuration from the node's certificate and PKCS#8 key.
pub fn tls_config(cert_der: &[u8], key_der: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cert = rustls::pki_types::CertificateDer::from(cert_der.to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.to_vec().into());
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("node.pem private key: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(vec![cert], signing_key);
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(AccountKeyVerifier {
            provider: rustls::crypto::aws_lc_rs::default_provider().into(),
        }))
        .with_cert_resolver(Arc::new(NodeCertificate(Arc::new(certified))));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The HTTP side of a storage server.
#[derive(Debug)]
pub struct Frontend {
    server: Arc<StorageServer>,
    swissnum: Swissnum,
    limits: Limits,
}

type Resp = Response<BoxBody<Bytes, std::io::Error>>;

fn full(data: Bytes) -> BoxBody<Bytes, std::io::Error> {
    Full::new(data).map_err(|never| match never {}).boxed()
}

fn si_of(si: lafs_protocol::StorageIndex) -> StorageIndex {
    StorageIndex(*si.as_bytes())
}

fn shnum_of(n: ShareNum) -> u16 {
    u16::from(n.get())
}

/// The status a server error becomes on the wire.
pub fn error_status(e: &ServerError) -> StatusCode {
    match e {
        ServerError::NotFound => StatusCode::NOT_FOUND,
        ServerError::WrongUploadSecret | ServerError::WrongWriteEnabler => StatusCode::UNAUTHORIZED,
        ServerError::Conflict => StatusCode::CONFLICT,
        ServerError::AlreadyComplete => StatusCode::METHOD_NOT_ALLOWED,
        ServerError::OutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
        ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ServerError::Refused(_) => StatusCode::FORBIDDEN,
        ServerError::Backend(b) if b.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
        ServerError::Corrupt(_) | ServerError::Backend(_) | ServerError::LeaseDb(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn text(status: StatusCode, msg: &str) -> Resp {
    let mut r = Response::new(full(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn protocol_error(e: &ProtocolError) -> Resp {
    let mut r = text(e.status(), &e.to_string());
    if let ProtocolError::MethodNotAllowed { allow } = e {
        r.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
    r
}

fn server_error(e: &ServerError) -> Resp {
    let status = error_status(e);
    if status.is_server_error() {
        tracing::error!(error = %e, "request failed");
    }
    text(status, &e.to_string())
}

fn cbor<T: CborBody>(status: StatusCode, body: &T) -> Resp {
    let mut r = Response::new(full(Bytes::from(body.encode())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/cbor"));
    r
}

enum Failure {
    Protocol(ProtocolError),
    Server(ServerError),
}

impl From<ProtocolError> for Failure {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<ServerError> for Failure {
    fn from(e: ServerError) -> Self {
        Self::Server(e)
    }
}

impl Frontend {
    /// A frontend for `server` that accepts requests carrying `swissnum`.
    pub fn new(server: Arc<StorageServer>, swissnum: Swissnum, limits: Limits) -> Self {
        Self {
            server,
            swissnum,
            limits,
        }
    }

    async fn body(&self, req: Request<Incoming>, max: u64) -> Result<Bytes, ProtocolError> {
        // A declared length over the limit is refused at once, not after waiting for (and
        // counting) the body.
        let declared = hyper::body::Body::size_hint(req.body()).lower();
        if declared > max {
            return Err(ProtocolError::PayloadTooLarge {
                len: declared,
                limit: max,
            });
        }
        // Frames are gathered into one buffer sized from the declared length (a share write
        // is typically 512 KiB in TLS-record-sized frames): no regrowth copies, and a body
        // that arrives as one frame is passed on without a copy.
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let mut body = req.into_body();
        let gather = async {
            let mut first: Option<Bytes> = None;
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| {
                    ProtocolError::InvalidBody("request body could not be read".into())
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let have = first.as_ref().map_or(0, Bytes::len) + buf.len();
                if have.saturating_add(data.len()) > max {
                    return Err(ProtocolError::PayloadTooLarge {
                        len: (max as u64).saturating_add(1),
                        limit: max as u64,
                    });
                }
                match first.take() {
                    None if buf.is_empty() => first = Some(data),
                    None => buf.extend_from_slice(&data),
                    Some(f) => {
                        buf.reserve_exact(declared.max(f.len() + data.len()));
                        buf.extend_from_slice(&f);
                        buf.extend_from_slice(&data);
                    }
                }
            }
            Ok(first.unwrap_or_else(|| Bytes::from(buf)))
        };
        match tokio::time::timeout(self.limits.body_timeout, gather).await {
            Err(_) => Err(ProtocolError::InvalidBody("request body timed out".into())),
            Ok(r) => r,
        }
    }

    /// Reads and decodes a read-test-write body as it arrives (see [`crate::spool`]): the
    /// small parts are kept, write data goes to a spool. Memory stays bounded whatever the
    /// body's size. The body may take `body_timeout` plus 4 s per MiB received (a client
    /// sending a large share at a quarter of a MiB per second or more is never cut off).
    async fn rtw_body(&self, req: Request<Incoming>) -> Result<(StreamedRtw, WriteData), Failure> {
        let max = self.limits.max_rtw_body;
        let hint = hyper::body::Body::size_hint(req.body());
        if hint.lower() > max {
            return Err(ProtocolError::PayloadTooLarge {
                len: hint.lower(),
                limit: max,
            }
            .into());
        }
        let mut decoder = RtwDecoder::new(StreamLimits::new(max), hint.exact());
        let mut spool = Spool::new(self.limits.spool_dir.clone());
        let spool_failed = |e: std::io::Error| Failure::Server(ServerError::Backend(e.into()));
        let mut body = req.into_body();
        let started = tokio::time::Instant::now();
        loop {
            let allowed =
                self.limits.body_timeout + Duration::from_secs(4 * (decoder.consumed() >> 20));
            let left = allowed.saturating_sub(started.elapsed());
            let frame = match tokio::time::timeout(left, body.frame()).await {
                Err(_) => {
                    return Err(ProtocolError::InvalidBody("request body timed out".into()).into());
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    return Err(ProtocolError::InvalidBody(
                        "request body could not be read".into(),
                    )
                    .into());
                }
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(bytes) = frame.into_data() {
                decoder.feed(&bytes, &mut |d| spool.push(d))?;
                spool.flush_if_full().await.map_err(spool_failed)?;
            }
        }
        let r = decoder.finish()?;
        let data = spool.finish().await.map_err(spool_failed)?;
        Ok((r, data))
    }

    /// Serves one request for a client without a client certificate (the anonymous account).
    pub async fn handle(&self, req: Request<Incoming>) -> Resp {
        self.handle_as(req, None).await
    }

    /// Serves one request for the client whose account key (see [`account_key_of_cert`]) is
    /// `client_key`, or for the anonymous account.
    pub async fn handle_as(&self, req: Request<Incoming>, client_key: Option<&str>) -> Resp {
        match self.dispatch(req, client_key).await {
            Ok(r) => r,
            Err(Failure::Protocol(e)) => protocol_error(&e),
            Err(Failure::Server(e)) => server_error(&e),
        }
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        client_key: Option<&str>,
    ) -> Result<Resp, Failure> {
        let method = req.method().clone();
        let endpoint = Endpoint::parse(&method, req.uri().path())?;
        lafs_protocol::check_authorization(req.headers(), &self.swissnum)?;
        let secrets = Secrets::from_headers(req.headers(), endpoint.required_secrets())?;
        let account = self.server.account_for_key(client_key).await?;
        let head = method == Method::HEAD;
        if endpoint.response_is_cbor() {
            lafs_protocol::check_accept_cbor(req.headers())?;
        }
        let server = &self.server;
        match endpoint {
            Endpoint::Version => {
                let space = server.space().await?;
                Ok(cbor(
                    StatusCode::OK,
                    &VersionResponse {
                        maximum_immutable_share_size: space.max_immutable,
                        maximum_mutable_share_size: space.max_mutable,
                        available_space: space.available,
                        application_version: server
                            .config()
                            .application_version
                            .as_bytes()
                            .to_vec(),
                    },
                ))
            }
            Endpoint::ImmutableAllocate { si } => {
                lafs_protocol::check_request_content_type(req.headers())?;
                let max = match endpoint.request_body() {
                    BodyKind::Cbor { max_len } => max_len,
                    _ => 8192,
                };
                let body = self.body(req, max).await?;
                let a: AllocateRequest =
                    lafs_protocol::decode_limited(&body, &AllocateRequest::LIMITS)?;
                let upload = secrets
                    .upload
                    .as_ref()
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_default();
                let shnums: BTreeSet<u16> = a.share_numbers.iter().map(|&n| shnum_of(n)).collect();
                let (have, allocated) = server
                    .allocate(account, &si_of(si), &shnums, a.allocated_size, &upload)
                    .await?;
                let to_set = |s: BTreeSet<u16>| -> BTreeSet<ShareNum> {
                    s.into_iter()
                        .filter_map(|n| u8::try_from(n).ok().map(ShareNum::new))
                        .collect()
                };
                // 200 as stock (`_send_encoded` keeps Twisted's default code).
                Ok(cbor(
                    StatusCode::OK,
                    &AllocateResponse {
                        already_have: to_set(have),
                        allocated: to_set(allocated),
                    },
                ))
            }
            Endpoint::ImmutableWrite { si, shnum } => {
                let range = ContentRange::from_headers(req.headers())?;
                if range.len() > self.limits.max_write_body {
                    return Err(ProtocolError::PayloadTooLarge {
                        len: range.len(),
                        limit: self.limits.max_write_body,
                    }
                    .into());
                }
                let body = self.body(req, range.len()).await?;
                if body.len() as u64 != range.len() {
                    return Err(ProtocolError::RangeNotSatisfiable.into());
                }
                let upload = secrets
                    .upload
                    .as_ref()
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_default();
                let out = server
                    .write(&si_of(si), shnum_of(shnum), &upload, range.first, body)
                    .await?;
                let required = out
                    .required
                    .iter()
                    .map(|&(begin, end)| RequiredRange { begin, end })
                    .collect();
                let status = if out.complete {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(cbor(status, &WriteResponse { required }))
            }
            Endpoint::ImmutableAbort { si, shnum } => {
                let upload = secrets
                    .upload
                    .as_ref()
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_default();
                server.abort(&si_of(si), shnum_of(shnum), &upload).await?;
                Ok(text(StatusCode::OK, "aborted"))
            }
            Endpoint::ImmutableListShares { si } | Endpoint::MutableListShares { si } => {
                let kind = if matches!(endpoint, Endpoint::ImmutableListShares { .. }) {
                    ShareKind::Immutable
                } else {
                    ShareKind::Mutable
                };
                let shares = server.list_shares(&si_of(si), kind).await?;
                let set = shares
                    .into_iter()
                    .filter_map(|n| u8::try_from(n).ok().map(ShareNum::new))
                    .collect();
                Ok(cbor(StatusCode::OK, &ShareList(set)))
            }
            Endpoint::ImmutableRead { si, shnum } | Endpoint::MutableRead { si, shnum } => {
                let kind = if matches!(endpoint, Endpoint::ImmutableRead { .. }) {
                    ShareKind::Immutable
                } else {
                    ShareKind::Mutable
                };
                let range = ByteRange::from_headers(req.headers())?;
                let (si, shnum) = (si_of(si), shnum_of(shnum));
                let size = server.share_size(kind, &si, shnum).await?;
                let plan = ReadPlan::new(range, size);
                let (start, end) = match plan {
                    ReadPlan::Whole => (0, size),
                    ReadPlan::Partial { start, end } => (start, end),
                    ReadPlan::Empty => (0, 0),
                };
                let len = end.saturating_sub(start);
                let body = if len == 0 || head {
                    full(Bytes::new())
                } else {
                    // The first chunk is read here, so a share that cannot be read gets an
                    // error status; the rest streams (a failure later closes the connection,
                    // which the client sees as a short body, never as good data).
                    let first_len = len.min(READ_CHUNK);
                    let first = server.read(kind, &si, shnum, start, first_len).await?;
                    if first_len == len {
                        full(first)
                    } else {
                        let (tx, body) = ChannelBody::channel(len, READ_DEPTH);
                        let server = server.clone();
                        tokio::spawn(async move {
                            if tx.send(Ok(first)).await.is_err() {
                                return;
                            }
                            let mut at = start + first_len;
                            while at < end {
                                let n = (end - at).min(READ_CHUNK);
                                let chunk = server
                                    .read_more(&si, shnum, at, n)
                                    .await
                                    .map_err(|e| std::io::Error::other(e.to_string()));
                                let failed = chunk.is_err();
                                if tx.send(chunk).await.is_err() || failed {
                                    return;
                                }
                                at += n;
                            }
                        });
                        body.boxed()
                    }
                };
                let mut r = Response::new(body);
                if head {
                    r.headers_mut()
                        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
                }
                *r.status_mut() = plan.status();
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                if let Some(cr) = plan.content_range()
                    && let Ok(v) = HeaderValue::from_str(&cr)
                {
                    r.headers_mut().insert(CONTENT_RANGE, v);
                }
                Ok(r)
            }
            Endpoint::ImmutableAdvise { si, shnum } | Endpoint::MutableAdvise { si, shnum } => {
                let kind = if matches!(endpoint, Endpoint::ImmutableAdvise { .. }) {
                    ShareKind::Immutable
                } else {
                    ShareKind::Mutable
                };
                lafs_protocol::check_request_content_type(req.headers())?;
                let body = self
                    .body(req, AdviseCorruptRequest::LIMITS.max_len as u64)
                    .await?;
                let a: AdviseCorruptRequest =
                    lafs_protocol::decode_limited(&body, &AdviseCorruptRequest::LIMITS)?;
                server
                    .advise_corrupt(kind, &si_of(si), shnum_of(shnum), &a.reason)
                    .await?;
                Ok(text(StatusCode::OK, "noted"))
            }
            Endpoint::LeaseAddOrRenew { si } => {
                server.add_or_renew_lease(account, &si_of(si)).await?;
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                Ok(r)
            }
            Endpoint::MutableReadTestWrite { si } => {
                lafs_protocol::check_request_content_type(req.headers())?;
                let (r, data) = self.rtw_body(req).await?;
                let we = secrets
                    .write_enabler
                    .as_ref()
                    .map(|w| *w.as_bytes())
                    .ok_or(ProtocolError::BadSecrets(
                        lafs_protocol::SecretsError::Missing(SecretKind::WriteEnabler),
                    ))?;
                let tw: BTreeMap<u16, TestWrite> = r
                    .test_write_vectors
                    .iter()
                    .map(|(&n, v)| {
                        (
                            shnum_of(n),
                            TestWrite {
                                tests: v
                                    .test
                                    .iter()
                                    .map(|t| (t.offset, t.size, Bytes::from(t.specimen.clone())))
                                    .collect(),
                                writes: v
                                    .write
                                    .iter()
                                    .map(|w| (w.offset, data.slice(w.start, w.start + w.len)))
                                    .collect(),
                                new_length: v.new_length,
                            },
                        )
                    })
                    .collect();
                let reads: Vec<(u64, u64)> =
                    r.read_vector.iter().map(|v| (v.offset, v.size)).collect();
                let out = server
                    .read_test_write(account, &si_of(si), &we, &tw, &reads)
                    .await?;
                let data = out
                    .data
                    .into_iter()
                    .filter_map(|(n, v)| {
                        u8::try_from(n).ok().map(|n| {
                            (
                                ShareNum::new(n),
                                v.into_iter().map(|b| b.to_vec()).collect(),
                            )
                        })
                    })
                    .collect();
                Ok(cbor(
                    StatusCode::OK,
                    &ReadTestWriteResponse {
                        success: out.success,
                        data,
                    },
                ))
            }
            Endpoint::LafsAccountUsage => {
                let (usage, quota) = server.account_usage(account).await?;
                Ok(cbor(
                    StatusCode::OK,
                    &lafs_protocol::AccountUsage {
                        used_bytes: usage.used_space,
                        share_count: usage.leases,
                        quota_bytes: quota,
                    },
                ))
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown` turns true, then stops accepting and
/// waits (up to `grace`) for requests in flight to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    frontend: Arc<Frontend>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(frontend.limits.max_connections));
    let mut conns = tokio::task::JoinSet::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    drop(tcp); // over the connection limit
                    continue;
                };
                let acceptor = acceptor.clone();
                let fe = frontend.clone();
                let stop = stop_rx.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    serve_connection(acceptor, tcp, peer, fe, stop).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
    Ok(())
}

async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    fe: Arc<Frontend>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(fe.limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let client_key: Option<Arc<str>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| account_key_of_cert(c.as_ref()))
        .map(Arc::from);
    let io = hyper_util::rt::TokioIo::new(StallGuard::new(tls, fe.limits.stall_timeout));
    let header_timeout = fe.limits.header_timeout;
    let service = hyper::service::service_fn(move |req| {
        let fe = fe.clone();
        let key = client_key.clone();
        async move { Ok::<_, std::convert::Infallible>(fe.handle_as(req, key.as_deref()).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended"); }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

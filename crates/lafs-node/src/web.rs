//! The web API of a client node: the subset of stock Tahoe's `docs/frontends/webapi.rst` that
//! immutable files need, with stock's paths, statuses and JSON shapes, so stock's CLI, scripts
//! and browsers work against a lafs node.
//!
//! | request | answer |
//! |---|---|
//! | `PUT /uri` (body: the file) | 200, the cap as `text/plain` |
//! | `GET`/`HEAD /uri/$CAP` (also `/cap/$CAP`) | 200, the file; with `Range: bytes=` 206 and `Content-Range`, 416 past the end |
//! | `GET /uri/$CAP?t=json` | `["filenode", {"mutable", "format", "size", "ro_uri", "verify_uri"}]` |
//! | `GET /uri?uri=$CAP` | 303 to `/uri/$CAP` |
//! | `GET /?t=json` | stock's welcome JSON (`introducers`, `servers`) plus `node`: this node's own status |
//! | `GET /` | a welcome page a person can read: this node and a table of its servers |
//! | `GET /storage` (`?t=json`) | a storage node's status: space, totals, accounts, crawler, garbage collection ([`crate::storage_status`]) |
//! | `GET /storage/accounts` (`?t=json`) | its accounts with their usage, quota, state, last request |
//!
//! A node with a web port serves the client routes if it runs a client and the storage routes
//! if it runs a storage server; a storage-only node's `/` redirects to `/storage`. The storage
//! pages show account public keys and usage: like the web API itself, they are for whoever can
//! reach the web port (loopback by default).
//!
//! Why it looks the way it does:
//! - Plain hyper (HTTP/1.1), no framework: a handful of routes, and the two bodies that
//!   matter (upload spool, download stream) need hand-written body handling either way.
//! - Uploads are spooled to a 0600 file under the node directory first: the convergent key
//!   hashes the whole file before encoding (two passes), and a request body can be read only
//!   once. Memory stays at hyper's frame size; the file is deleted whatever happens (drop of
//!   the temp file, and a sweep at start-up after a crash).
//! - Downloads stream: the engine sends verified plaintext through a small channel, which is
//!   the response body. The response head waits for the first chunk, so "no shares" is a
//!   clean 410 with a message (stock's status for unrecoverable files); an error after that
//!   cuts the connection short of `Content-Length`, which every client notices.
//! - Ranges follow stock's parser: a header that does not parse is ignored (whole file, 200),
//!   only the first of several ranges is served, a start past the end is 416.
//! - Caps are secrets: they are never logged (requests are logged by route, not path) and
//!   error messages never echo them.
//! - Mutable files and directories are not supported yet: 501 with a message saying so.

use crate::client::{ClientNode, VERSION};
use crate::storage_status::{self as status, StorageInfo, html_escape, human_size};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use lafs_client::download::{DownloadConfig, DownloadError, download};
use lafs_client::upload::UploadError;
use lafs_core::cap::{Cap, ChkCap};
use lafs_storage::server::StorageServer;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A response body: small and whole, or streamed.
pub type Body = BoxBody<Bytes, io::Error>;

/// How many connections the web server serves at once; more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 256;

/// Serves the web API on `listener` until `shutdown` turns true; requests in flight get
/// `grace` to finish.
pub async fn serve_web(
    listener: TcpListener,
    app: Arc<WebApp>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            accepted = listener.accept() => {
                let (tcp, _peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "web: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // At the limit, wait for a connection to end (or for shutdown).
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                };
                let app = app.clone();
                let mut stop = stop_rx.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    let _ = tcp.set_nodelay(true);
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let svc = hyper::service::service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(handle(&app, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(60))
                        // HTTP/1.0 clients may shut down their sending side and wait.
                        .half_close(true)
                        .serve_connection(io, svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
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

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// A short error in stock's style: plain text, one line and a newline.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// Decodes `%XX` escapes (and nothing else); `None` if the result is not UTF-8 or an escape
/// is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The query's `key=value` pairs, decoded (`+` is a space, as in forms).
fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((
                percent_decode(&k.replace('+', " "))?,
                percent_decode(&v.replace('+', " "))?,
            ))
        })
        .collect()
}

fn arg<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// What a node's web server serves: the client's web API, the storage node's status pages,
/// or both.
#[derive(Debug)]
pub struct WebApp {
    /// The client, if the node runs one.
    pub client: Option<Arc<ClientNode>>,
    /// The storage server, if the node runs one.
    pub storage: Option<StoragePages>,
}

/// The storage server behind `/storage` and `/storage/accounts`.
#[derive(Debug)]
pub struct StoragePages {
    /// The running server (its lease database is what the pages show).
    pub server: Arc<StorageServer>,
    /// Settings and identity shown on the pages.
    pub info: StorageInfo,
}

/// Routes one request. Logs the route and status, never the path (it holds caps).
async fn handle(app: &WebApp, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = query_pairs(req.uri().query());
    let (route, resp) = match (path.as_str(), &app.client, &app.storage) {
        ("/storage" | "/storage/", _, Some(st)) => {
            ("/storage", storage_page(st, &method, &query, false).await)
        }
        ("/storage/accounts" | "/storage/accounts/", _, Some(st)) => (
            "/storage/accounts",
            storage_page(st, &method, &query, true).await,
        ),
        ("/", None, Some(_)) => ("/", redirect_to_storage(req.uri().query())),
        (_, None, _) => (
            "other",
            error(
                StatusCode::NOT_FOUND,
                "Not found (this node runs a storage server only: see /storage)",
            ),
        ),
        ("/", Some(node), _) => ("/", welcome(node, app.storage.is_some(), &method, &query)),
        ("/uri" | "/uri/" | "/cap" | "/cap/", Some(node), _) => {
            ("/uri", uri_root(node, req, &query).await)
        }
        (p, Some(node), _) if p.starts_with("/uri/") || p.starts_with("/cap/") => {
            let rest = &p[5..];
            (
                "/uri/$CAP",
                file(node, &method, req.headers(), rest, &query).await,
            )
        }
        _ => ("other", error(StatusCode::NOT_FOUND, "Not found")),
    };
    tracing::info!(method = %method, route, status = resp.status().as_u16(), "web request");
    resp
}

/// A storage-only node's `/`: its storage page (`?t=json` kept).
fn redirect_to_storage(query: Option<&str>) -> Response<Body> {
    let to = match query {
        Some(q) if !q.is_empty() => format!("/storage?{q}"),
        _ => "/storage".to_string(),
    };
    let mut r = error(StatusCode::SEE_OTHER, "See /storage");
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `/storage` and `/storage/accounts`, as HTML or (`?t=json`) JSON. Each request reads the
/// lease database once, on its own thread, so the numbers on a page agree with each other.
async fn storage_page(
    st: &StoragePages,
    method: &Method,
    query: &[(String, String)],
    accounts_only: bool,
) -> Response<Body> {
    if *method != Method::GET && *method != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    let t = arg(query, "t").unwrap_or("");
    if !matches!(t, "" | "json") {
        return error(StatusCode::BAD_REQUEST, "unsupported t= (use t=json)");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let snap = match st
        .server
        .leasedb()
        .call(move |db| status::Snapshot::read(db, status::PAGE_HISTORY, now))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "storage page: reading the lease database failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the lease database cannot be read right now",
            );
        }
    };
    let available = if accounts_only {
        None
    } else {
        match st.server.space().await {
            Ok(s) if s.available != u64::MAX => Some(s.available),
            _ => None,
        }
    };
    match (t, accounts_only) {
        ("json", true) => storage_json(&status::accounts_page_json(&snap)),
        ("json", false) => storage_json(&status::status_json(&st.info, available, &snap)),
        (_, true) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status::accounts_html(&st.info, &snap),
        ),
        (_, false) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status::status_html(&st.info, available, &snap),
        ),
    }
}

fn storage_json(v: &serde_json::Value) -> Response<Body> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    respond(StatusCode::OK, "application/json; charset=utf-8", text)
}

fn not_allowed(allow: &str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
    if let Ok(v) = HeaderValue::from_str(allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Uploads

async fn uri_root(
    node: &ClientNode,
    req: Request<Incoming>,
    query: &[(String, String)],
) -> Response<Body> {
    match *req.method() {
        Method::PUT => {
            if let Some(f) = arg(query, "format").filter(|f| !f.eq_ignore_ascii_case("chk")) {
                return error(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("format={f}: this node stores immutable (CHK) files only"),
                );
            }
            if arg(query, "mutable").is_some_and(|m| m == "true" || m == "1") {
                return error(
                    StatusCode::NOT_IMPLEMENTED,
                    "mutable files are not supported by this node yet",
                );
            }
            let length = req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            put_file(node, length, req.into_body()).await
        }
        Method::GET | Method::HEAD => match arg(query, "uri") {
            // Stock's form target: redirect to the file's own URL.
            Some(cap) if !cap.is_empty() => {
                let mut r = error(StatusCode::SEE_OTHER, "see the Location header");
                let loc = format!("/uri/{}", cap.trim());
                match HeaderValue::from_str(&loc) {
                    Ok(v) => {
                        r.headers_mut().insert(header::LOCATION, v);
                        r
                    }
                    Err(_) => error(StatusCode::BAD_REQUEST, "Invalid cap"),
                }
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                "GET /uri needs ?uri=$CAP; PUT /uri stores a file",
            ),
        },
        _ => not_allowed("GET, HEAD, PUT"),
    }
}

/// Spools the body to a private file, uploads it, answers with the cap.
///
/// With a `Content-Length`, the convergent key is hashed as the body arrives, so the upload
/// starts encoding at once instead of reading the whole spooled file first.
async fn put_file(node: &ClientNode, length: Option<u64>, mut body: Incoming) -> Response<Body> {
    // The convergent key is hashed on a thread of its own while the body is written to the
    // spool, so receiving is not slowed by hashing (SHA-256 is the slowest step here).
    let (hash_tx, hash_task) = match length.and_then(|n| node.key_hasher(n)) {
        Some(mut h) => {
            // Frames are slices of hyper's read buffer (up to ~400 KiB each) and keep it
            // alive while queued: a short queue bounds memory when the hasher falls behind.
            let (tx, mut rx) = mpsc::channel::<Bytes>(8);
            let task = tokio::task::spawn_blocking(move || {
                while let Some(b) = rx.blocking_recv() {
                    h.update(&b);
                }
                h.finalize()
            });
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let spool = match node.spool_file() {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "web: cannot create a spool file");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e);
        }
    };
    let file = match spool.as_file().try_clone() {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("spool file: {e}"),
            );
        }
    };
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the request body was cut short after {received} bytes: {e}"),
                );
            }
        };
        if let Ok(data) = frame.into_data() {
            received += data.len() as u64;
            if let Err(e) = out.write_all(&data).await {
                tracing::error!(error = %e, "web: cannot write the spool file");
                return error(
                    StatusCode::INSUFFICIENT_STORAGE,
                    format!("cannot spool the upload on the node: {e}"),
                );
            }
            if let Some(tx) = &hash_tx {
                // The hasher only stops early if it panicked; the key is then computed by
                // the upload itself.
                let _ = tx.send(data).await;
            }
        }
    }
    drop(hash_tx);
    if let Err(e) = out.flush().await {
        return error(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("cannot spool the upload on the node: {e}"),
        );
    }
    drop(out);
    // Only a body of exactly the announced length was hashed as the key expects.
    let key = match hash_task {
        Some(t) if Some(received) == length => t.await.ok(),
        _ => None,
    };
    let result = node.upload(spool.path(), key).await;
    // Deleting a big file can take a moment; keep it off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(spool)).await;
    match result {
        Ok(outcome) => {
            tracing::info!(
                size = outcome.size,
                happiness = outcome.happiness,
                "web: upload done"
            );
            respond(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                outcome.cap.to_string(),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "web: upload failed");
            // Stock answers 500 for an unhappy upload too.
            let prefix = match e {
                UploadError::NotHappy { .. } => "UploadUnhappinessError: ",
                _ => "",
            };
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("{prefix}{e}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// The file part of a cap path: `$CAP` or `$CAP/` (no child paths: directories are not
/// supported yet).
enum Target {
    Lit(Vec<u8>),
    Chk(ChkCap),
}

/// An error answer before any body was sent.
#[derive(Debug)]
struct WebError(StatusCode, String);

impl WebError {
    fn response(self) -> Response<Body> {
        error(self.0, self.1)
    }
}

fn parse_target(raw: &str) -> Result<(Cap, Target), WebError> {
    let decoded = percent_decode(raw)
        .ok_or_else(|| WebError(StatusCode::BAD_REQUEST, "Invalid cap: bad %-escape".into()))?;
    let (cap_text, child) = decoded.split_once('/').unwrap_or((decoded.as_str(), ""));
    let cap: Cap = cap_text
        .trim()
        .parse()
        .map_err(|e| WebError(StatusCode::BAD_REQUEST, format!("Invalid cap: {e}")))?;
    let target = match &cap {
        Cap::Lit(l) => Target::Lit(l.data.clone()),
        Cap::Chk(c) => Target::Chk(c.clone()),
        Cap::Dir(_) => {
            return Err(WebError(
                StatusCode::NOT_IMPLEMENTED,
                "directories are not supported by this node yet".into(),
            ));
        }
        Cap::Ssk(_) | Cap::SskRo(_) | Cap::Mdmf(_) | Cap::MdmfRo(_) => {
            return Err(WebError(
                StatusCode::NOT_IMPLEMENTED,
                "mutable files are not supported by this node yet".into(),
            ));
        }
        Cap::ChkVerifier(_) | Cap::SskVerifier(_) | Cap::MdmfVerifier(_) => {
            return Err(WebError(
                StatusCode::BAD_REQUEST,
                "a verify cap cannot read a file's contents".into(),
            ));
        }
        Cap::Unknown(_) => {
            return Err(WebError(
                StatusCode::BAD_REQUEST,
                "Invalid cap: unknown kind".into(),
            ));
        }
    };
    if !child.is_empty() {
        return Err(WebError(
            StatusCode::BAD_REQUEST,
            "files have no children (path after the cap)".into(),
        ));
    }
    Ok((cap, target))
}

async fn file(
    node: &ClientNode,
    method: &Method,
    headers: &http::HeaderMap,
    raw_cap: &str,
    query: &[(String, String)],
) -> Response<Body> {
    if *method != Method::GET && *method != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    let (cap, target) = match parse_target(raw_cap) {
        Ok(x) => x,
        Err(e) => return e.response(),
    };
    match arg(query, "t").unwrap_or("") {
        "" => {}
        "json" => return file_json(&cap),
        "uri" | "readonly-uri" => {
            return respond(StatusCode::OK, "text/plain; charset=utf-8", cap.to_string());
        }
        _ => return error(StatusCode::BAD_REQUEST, "unsupported t= for a file"),
    }
    let size = match &target {
        Target::Lit(d) => d.len() as u64,
        Target::Chk(c) => c.size,
    };
    let (status, first, last) = match headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| parse_range(h, size))
    {
        None => (StatusCode::OK, 0, size.checked_sub(1)),
        Some((first, _)) if first >= size => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "First beyond end of file",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, first, Some(last.min(size - 1))),
    };
    let len = last.map_or(0, |l| l + 1 - first);
    let mut head = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, len);
    if let (StatusCode::PARTIAL_CONTENT, Some(last)) = (status, last) {
        head = head.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        );
    }
    let body = if *method == Method::HEAD || len == 0 {
        full(Bytes::new())
    } else {
        match target {
            Target::Lit(d) => full(Bytes::from(d).slice(first as usize..(first + len) as usize)),
            Target::Chk(c) => match start_download(node, c, first, first + len).await {
                Ok(b) => b,
                Err(e) => return e.response(),
            },
        }
    };
    head.body(body)
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// Stock's range parser (`FileDownloader.parse_range_header`): the first range of a
/// `bytes=` header as inclusive `(first, last)`, `None` if the header does not parse (and is
/// then ignored). `last` may exceed the file; `first` may be past its end (416).
pub fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let (units, set) = header.split_once('=')?;
    if units.trim() != "bytes" {
        return None;
    }
    let mut ranges = Vec::new();
    for r in set.split(',') {
        let (a, b) = r.trim().split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        let (first, last) = if a.is_empty() {
            let n: u64 = b.parse().ok()?;
            (size.saturating_sub(n), size.checked_sub(1)?)
        } else {
            let first: u64 = a.parse().ok()?;
            let last = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                b.parse().ok()?
            };
            (first, last)
        };
        if last < first {
            return None;
        }
        ranges.push((first, last));
    }
    ranges.first().copied()
}

/// The verified plaintext of a CHK download as a response body.
#[derive(Debug)]
struct DownloadBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    task: Option<JoinHandle<Result<(), DownloadError>>>,
}

impl hyper::body::Body for DownloadBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(b) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                let Some(task) = this.task.as_mut() else {
                    return Poll::Ready(None);
                };
                match Pin::new(task).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(r) => {
                        this.task = None;
                        match r {
                            Ok(Ok(())) => Poll::Ready(None),
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "web: download failed mid-way; cutting the response short");
                                Poll::Ready(Some(Err(io::Error::other("download failed"))))
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "web: download task failed");
                                Poll::Ready(Some(Err(io::Error::other("download failed"))))
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Drop for DownloadBody {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn download_status(e: &DownloadError) -> StatusCode {
    match e {
        DownloadError::NotEnoughShares { .. } => StatusCode::GONE,
        DownloadError::BadRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Starts the download of bytes `start..end` and waits for its first chunk, so that a file
/// that cannot be read gets an error status rather than a broken 200.
async fn start_download(
    node: &ClientNode,
    cap: ChkCap,
    start: u64,
    end: u64,
) -> Result<Body, WebError> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let stores = node.stores();
    let mut task = tokio::spawn(async move {
        download(
            &stores,
            &cap,
            Some((start, end)),
            &DownloadConfig::default(),
            tx,
        )
        .await
    });
    let first = match rx.recv().await {
        Some(b) => b,
        None => {
            let r = (&mut task).await;
            return Err(match r {
                Ok(Ok(())) => WebError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the download ended without data".into(),
                ),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "web: download failed");
                    let status = download_status(&e);
                    let prefix = if status == StatusCode::GONE {
                        "NotEnoughSharesError: "
                    } else {
                        ""
                    };
                    WebError(status, format!("{prefix}{e}"))
                }
                Err(e) => WebError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            });
        }
    };
    Ok(DownloadBody {
        first: Some(first),
        rx,
        task: Some(task),
    }
    .boxed())
}

/// Stock's `?t=json` for a file node (`web/filenode.py` `_file_json_metadata`). Stock names
/// every immutable format `CHK`, literal files included, and gives literal files no verify
/// cap; so do we.
fn file_json(cap: &Cap) -> Response<Body> {
    let mut meta = serde_json::Map::new();
    meta.insert("mutable".into(), false.into());
    meta.insert("format".into(), "CHK".into());
    if let Some(size) = cap.size() {
        meta.insert("size".into(), size.into());
    }
    meta.insert("ro_uri".into(), cap.to_string().into());
    if let Cap::Chk(c) = cap {
        meta.insert(
            "verify_uri".into(),
            Cap::ChkVerifier(c.verifier()).to_string().into(),
        );
    }
    let v = serde_json::json!(["filenode", meta]);
    json_response(&v)
}

fn json_response(v: &serde_json::Value) -> Response<Body> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    respond(StatusCode::OK, "text/plain; charset=utf-8", text)
}

// ---------------------------------------------------------------------------------------------
// Welcome

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The welcome JSON: stock's keys (`introducers`, `servers` with `nodeid`,
/// `connection_status`, `available_space`, `nickname`, `version`, `last_received_data`), and
/// lafs additions (`connected` per server, `node`, `skipped_servers`).
pub fn welcome_json(node: &ClientNode) -> serde_json::Value {
    let grid = node.grid();
    let servers: Vec<serde_json::Value> = grid
        .servers()
        .iter()
        .map(|s| {
            let st = s.status().snapshot();
            let status = if st.connected {
                "connected".to_string()
            } else if let Some((_, e)) = &st.last_error {
                format!("disconnected: {e}")
            } else {
                "not contacted yet".to_string()
            };
            serde_json::json!({
                "nodeid": s.id(),
                "nickname": s.nickname(),
                "connection_status": status,
                "connected": st.connected,
                "since": st.since.map(epoch),
                "last_received_data": st.last_contact.map(epoch),
                "available_space": st.version.as_ref().map(|v| v.available_space),
                "version": st.version.as_ref().map(|v| v.application_version.clone()),
            })
        })
        .collect();
    let skipped: Vec<serde_json::Value> = grid
        .skipped()
        .iter()
        .map(|s| serde_json::json!({"nodeid": s.id, "reason": s.reason}))
        .collect();
    let u = node.upload_config();
    serde_json::json!({
        "introducers": {"statuses": []},
        "servers": servers,
        "skipped_servers": skipped,
        "node": {
            "nickname": node.nickname(),
            "nodeid": node.node_id(),
            "version": VERSION,
            "servers_connected": grid.connected_count(),
            "servers_known": grid.servers().len(),
            "shares": {"needed": u.needed_shares, "happy": u.happy, "total": u.total_shares},
        },
    })
}

fn welcome(
    node: &ClientNode,
    with_storage: bool,
    method: &Method,
    query: &[(String, String)],
) -> Response<Body> {
    if *method != Method::GET && *method != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    match arg(query, "t").unwrap_or("") {
        "json" => {
            let text = serde_json::to_string_pretty(&welcome_json(node)).unwrap_or_default();
            respond(
                StatusCode::OK,
                "application/json; charset=utf-8",
                text + "\n",
            )
        }
        "" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            welcome_html(node, with_storage),
        ),
        _ => error(
            StatusCode::BAD_REQUEST,
            "unsupported t= for the welcome page",
        ),
    }
}

fn ago(t: Option<SystemTime>) -> String {
    let Some(t) = t else { return "never".into() };
    let s = SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// A page a person can read: who this node is, how it stores files, and every server's state.
/// Plain HTML and CSS; it refreshes itself every 30 s.
pub fn welcome_html(node: &ClientNode, with_storage: bool) -> String {
    let grid = node.grid();
    let u = node.upload_config();
    let mut rows = String::new();
    for s in grid.servers() {
        let st = s.status().snapshot();
        let (class, state) = if st.connected {
            ("up", "connected".to_string())
        } else if let Some((_, e)) = &st.last_error {
            ("down", format!("disconnected: {e}"))
        } else {
            ("down", "not contacted yet".to_string())
        };
        let space = st
            .version
            .as_ref()
            .map_or("?".into(), |v| human_size(v.available_space));
        let version = st
            .version
            .as_ref()
            .map_or(String::new(), |v| v.application_version.clone());
        rows.push_str(&format!(
            "<tr class=\"{class}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            html_escape(s.nickname()),
            html_escape(s.id()),
            html_escape(&state),
            ago(st.last_contact),
            space,
            html_escape(&version),
        ));
    }
    for s in grid.skipped() {
        rows.push_str(&format!(
            "<tr class=\"down\"><td></td><td><code>{}</code></td><td>not used: {}</td><td></td><td></td><td></td></tr>\n",
            html_escape(&s.id),
            html_escape(&s.reason)
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"6\">No servers: list them in <code>private/servers.yaml</code> and restart the node.</td></tr>\n");
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>lafs node {nick}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: .3em .8em; border-bottom: 1px solid #ddd; }}
tr.up td:nth-child(3) {{ color: #176f2c; }}
tr.down td:nth-child(3) {{ color: #a01818; }}
code {{ font-size: .9em; }}
</style></head>
<body>
<h1>lafs client node {nick}</h1>
<p>{version} &middot; node id <code>{id}</code> &middot; node directory <code>{dir}</code></p>
<p>Files are stored as {total} shares, any {needed} of which rebuild the file; an upload
needs shares on at least {happy} servers. Connected to <strong>{up}</strong> of {known} servers.</p>
<h2>Storage servers</h2>
<table>
<tr><th>Nickname</th><th>Server id</th><th>Connection</th><th>Last contact</th><th>Available space</th><th>Version</th></tr>
{rows}</table>
<p>Store a file: <code>lafs -d {dir} put FILE</code> &middot; read it back: <code>lafs -d {dir} get CAP OUTFILE</code>
&middot; machine-readable status: <a href="/?t=json">/?t=json</a>{storage_link}</p>
</body></html>
"#,
        nick = html_escape(node.nickname()),
        version = VERSION,
        id = html_escape(node.node_id()),
        dir = html_escape(&node.dir().display().to_string()),
        total = u.total_shares,
        needed = u.needed_shares,
        happy = u.happy,
        up = grid.connected_count(),
        known = grid.servers().len(),
        storage_link = if with_storage {
            " &middot; this node's storage server: <a href=\"/storage\">/storage</a>"
        } else {
            ""
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_stock() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-1000", 100), Some((0, 99)));
        assert_eq!(parse_range("bytes=50-2000", 100), Some((50, 2000)));
        assert_eq!(parse_range("bytes=5-9, 20-30", 100), Some((5, 9)));
        assert_eq!(parse_range("bytes=200-300", 100), Some((200, 300)));
        assert_eq!(parse_range("bytes=9-5", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=a-b", 100), None);
        assert_eq!(parse_range("bytes", 100), None);
        assert_eq!(parse_range("bytes=-5", 0), None);
    }

    #[test]
    fn queries_and_escapes() {
        let q = query_pairs(Some("t=json&uri=URI%3ALIT%3Anbswy3dp&x"));
        assert_eq!(arg(&q, "t"), Some("json"));
        assert_eq!(arg(&q, "uri"), Some("URI:LIT:nbswy3dp"));
        assert_eq!(arg(&q, "x"), Some(""));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

//! Talking to a running node's web API, as stock's CLI does: the node directory's `node.url`
//! says where it listens, and every transfer streams through it (plain HTTP on loopback, one
//! connection per command).
//!
//! Bodies stream both ways with bounded memory: uploads are read by a thread in 256 KiB
//! chunks into a small channel that is the request body; downloads are written as frames
//! arrive.

use crate::error::{CliError, CliResult};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A node's web API.
#[derive(Debug, Clone)]
pub struct NodeApi {
    dir: PathBuf,
    /// `http://HOST:PORT/` as in `node.url`.
    url: String,
    /// `HOST:PORT` to connect to.
    authority: String,
}

/// How a message should tell the user to start the node.
fn start_hint(dir: &Path) -> String {
    format!("start it with: lafs run {}", dir.display())
}

impl NodeApi {
    /// Reads `DIR/node.url`.
    pub fn from_dir(dir: &Path) -> CliResult<Self> {
        let path = dir.join("node.url");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let why = if dir.join("tahoe.cfg").exists() {
                    format!(
                        "the node in {} has not run yet (no node.url)",
                        dir.display()
                    )
                } else {
                    format!(
                        "{} is not a node directory (create one with lafs init, or give -d DIR)",
                        dir.display()
                    )
                };
                return Err(CliError::failed(format!(
                    "{why}; {}; lafs put --dry-run computes a cap offline",
                    start_hint(dir)
                )));
            }
            Err(e) => return Err(CliError::failed(format!("{}: {e}", path.display()))),
        };
        let url = text.trim().to_string();
        let authority = url
            .strip_prefix("http://")
            .map(|r| r.trim_end_matches('/').to_string())
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| {
                CliError::failed(format!(
                    "{}: expected http://HOST:PORT/, found {url:?}",
                    path.display()
                ))
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            url,
            authority,
        })
    }

    /// Sends one request on a new connection and returns the response head (the body streams).
    pub async fn send<B>(&self, req: Request<B>) -> CliResult<Response<Incoming>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| {
                CliError::failed(format!(
                    "the node in {} is not running (nothing answers at {}: {e}); {}",
                    self.dir.display(),
                    self.url,
                    start_hint(&self.dir)
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| CliError::failed(format!("web API at {}: {e}", self.url)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = req;
        if let Ok(v) = http::HeaderValue::from_str(&self.authority) {
            req.headers_mut().insert(http::header::HOST, v);
        }
        sender.send_request(req).await.map_err(|e| {
            CliError::failed(format!("the node at {} dropped the request: {e}", self.url))
        })
    }
}

/// Turns an error response into one line: `STATUS: first line of the body`.
pub async fn error_line(resp: Response<Incoming>) -> String {
    let status = resp.status();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(d) = frame.into_data() {
            text.extend_from_slice(&d);
            if text.len() > 64 * 1024 {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&text);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let reason = status.canonical_reason().unwrap_or("");
    if line.is_empty() {
        format!("{} {reason}", status.as_u16())
    } else {
        format!("{} {reason}: {line}", status.as_u16())
    }
}

/// Whether a status is a success for a transfer.
pub fn ok(status: StatusCode) -> bool {
    status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT
}

/// A request body fed by a thread through a small channel.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl ChannelBody {
    /// A body and the sender that feeds it (at most `depth` chunks wait).
    pub fn new(depth: usize) -> (mpsc::Sender<io::Result<Bytes>>, Self) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, Self { rx })
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

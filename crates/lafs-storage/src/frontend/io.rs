//! Connection plumbing that keeps slow or stalled peers from holding resources.
//!
//! - [`StallGuard`] wraps a connection's byte stream and fails a write that makes no progress
//!   for the stall timeout: a client that requests a share and stops reading cannot hold its
//!   connection (or its slot) forever. Reads are not guarded here: hyper's header timeout and
//!   the frontend's body timeout cover them.
//! - [`ChannelBody`] is a response body fed chunk by chunk by a producer task through a small
//!   bounded channel, so a read of a large range never holds more than a few chunks in memory.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::Sleep;

/// A byte stream whose writes time out when the peer stops accepting data.
#[derive(Debug)]
pub struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    /// Armed when a write (or flush/shutdown) first returns `Pending`; disarmed on progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    /// Guards `inner`: a write that stays blocked for `timeout` fails with `TimedOut`.
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
        }
    }

    fn on_write<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.deadline = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "peer stopped reading",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.on_write(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.on_write(cx, r)
    }
}

/// A response body produced elsewhere, one chunk at a time.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
}

impl ChannelBody {
    /// A body of exactly `len` bytes and the sender that feeds it. `depth` chunks may wait in
    /// the channel; the producer blocks (and so holds no more memory) while they do.
    pub fn channel(len: u64, depth: usize) -> (mpsc::Sender<io::Result<Bytes>>, Self) {
        let (tx, rx) = mpsc::channel(depth.max(1));
        (tx, Self { rx, remaining: len })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                if n > self.remaining {
                    self.remaining = 0;
                    return Poll::Ready(Some(Err(io::Error::other("response body overran"))));
                }
                self.remaining -= n;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            // The producer stopped early: an error, so the connection is closed rather than a
            // short body passed off as complete.
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "response body ended early",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_blocked_write_times_out_and_progress_resets_the_clock() {
        // A duplex pipe with a 16-byte buffer that nobody reads.
        let (a, mut b) = tokio::io::duplex(16);
        let mut g = StallGuard::new(a, Duration::from_secs(5));
        g.write_all(&[1; 16]).await.unwrap();
        // Drain a little after 4 s: the pending write progresses, so no timeout.
        let drain = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let mut buf = [0u8; 16];
            tokio::io::AsyncReadExt::read_exact(&mut b, &mut buf)
                .await
                .unwrap();
            b // keep the reader alive but never read again
        });
        g.write_all(&[2; 16]).await.unwrap();
        let _b = drain.await.unwrap();
        let t = tokio::time::Instant::now();
        let e = g.write_all(&[3; 16]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn channel_body_delivers_exactly_its_length_or_fails() {
        let (tx, body) = ChannelBody::channel(6, 2);
        tokio::spawn(async move {
            tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
            tx.send(Ok(Bytes::from_static(b"def"))).await.unwrap();
        });
        assert_eq!(body.collect().await.unwrap().to_bytes(), &b"abcdef"[..]);

        let (tx, body) = ChannelBody::channel(6, 2);
        tokio::spawn(async move {
            tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        });
        assert!(body.collect().await.is_err(), "short body must be an error");

        let (tx, body) = ChannelBody::channel(2, 2);
        tokio::spawn(async move {
            tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        });
        assert!(body.collect().await.is_err(), "long body must be an error");
    }
}

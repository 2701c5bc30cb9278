//! The object store as the cloud backend sees it: get a byte range, put, delete, list a
//! prefix; each call retried with backoff when a retry may help.
//!
//! Why our own retry loop rather than OpenDAL's `RetryLayer`: the backend also has to retry
//! failures OpenDAL does not see as errors (a body shorter than the range asked for, which
//! a proxy or a dying connection can produce), a listing has to resume after the last key
//! it saw rather than from the start, and the tests need to set the policy precisely.
//!
//! What is retried: OpenDAL errors it marks temporary (HTTP 5xx, 499, connection resets,
//! the timeout layer's timeouts) or rate-limited (429, SlowDown), and short bodies. Not
//! retried: every other 4xx (403 bad credentials, 404, 400 ...), which the same request
//! would only get again.
//!
//! Secrets: error messages name the operation, the object key (storage indexes and share
//! numbers, which are not secret) and OpenDAL's error *kind* only. OpenDAL's own `Display`
//! is never used: it carries the request URI and the service's response body.

use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use opendal::{ErrorKind, Operator};

use crate::backend::{BackendError, BackendResult};

/// How failed object-store requests are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `n` (1-based): exponential, capped, with up to 50 %
    /// random jitter so that many uploads failing together do not retry in lockstep.
    fn delay(&self, n: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
        let d = exp.min(self.max_delay);
        let jitter = random_u64() % 1000;
        d.mul_f64(0.5 + jitter as f64 / 2000.0)
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per instance from the OS; good enough for jitter.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// One failed attempt: the error to report, and whether to try again.
struct Failure {
    error: BackendError,
    retry: bool,
}

fn classify(op: &str, key: &str, e: &opendal::Error) -> Failure {
    let retry = e.is_temporary() || e.kind() == ErrorKind::RateLimited;
    let error = match e.kind() {
        ErrorKind::NotFound => BackendError::NotFound,
        kind => BackendError::Io {
            message: format!(
                "object store {op} of {key} failed ({kind}{})",
                if retry { ", temporary" } else { "" }
            ),
            transient: retry,
        },
    };
    Failure { error, retry }
}

fn short_body(op: &str, key: &str, got: usize, want: u64) -> Failure {
    Failure {
        error: BackendError::Io {
            message: format!("object store {op} of {key} returned {got} of {want} bytes"),
            transient: true,
        },
        retry: true,
    }
}

/// An object's key and size, from a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Listed {
    pub key: String,
    pub size: u64,
}

/// A bucket, with retries.
#[derive(Clone, Debug)]
pub(super) struct Store {
    op: Operator,
    retry: RetryPolicy,
}

impl Store {
    pub fn new(op: Operator, retry: RetryPolicy) -> Self {
        Self { op, retry }
    }

    /// Runs `attempt` until it succeeds, fails permanently, or attempts run out.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> BackendResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(f) if f.retry && n < self.retry.max_attempts => {
                    tracing::debug!(attempt = n, error = %f.error, "retrying object store request");
                    tokio::time::sleep(self.retry.delay(n)).await;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    /// Exactly the bytes `[start, end)` of `key` (the caller knows the object is at least
    /// `end` bytes long; fewer bytes is a truncated response, and retried).
    pub async fn get_range(&self, key: &str, start: u64, end: u64) -> BackendResult<Bytes> {
        if start >= end {
            return Ok(Bytes::new());
        }
        self.retrying(|| async move {
            let buf = self
                .op
                .read_with(key)
                .range(start..end)
                .await
                .map_err(|e| classify("read", key, &e))?;
            if buf.len() as u64 != end - start {
                return Err(short_body("read", key, buf.len(), end - start));
            }
            Ok(buf.to_bytes())
        })
        .await
    }

    /// Stores `data` as `key`, replacing any object there.
    pub async fn put(&self, key: &str, data: Bytes) -> BackendResult<()> {
        self.retrying(|| {
            let data = data.clone();
            async move {
                self.op
                    .write(key, data)
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("write", key, &e))
            }
        })
        .await
    }

    /// Deletes `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> BackendResult<()> {
        self.retrying(|| async move {
            match self.op.delete(key).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(classify("delete", key, &e)),
            }
        })
        .await
    }

    /// Every object under `prefix` (which ends with `/`), in key order. Pages through the
    /// listing; a failed page is retried from the last key seen.
    pub async fn list_all(&self, prefix: &str) -> BackendResult<Vec<Listed>> {
        let mut out = Vec::new();
        self.list_pages(prefix, None, |l| {
            out.push(l);
            true
        })
        .await?;
        Ok(out)
    }

    /// Calls `each` for the objects under `prefix` after `start_after`, in key order, until
    /// it returns false or the listing ends. Pages through the listing; a failed page is
    /// retried from the last key seen.
    pub async fn list_pages(
        &self,
        prefix: &str,
        start_after: Option<String>,
        mut each: impl FnMut(Listed) -> bool,
    ) -> BackendResult<()> {
        let mut last = start_after;
        let mut failures = 0;
        loop {
            let step: Result<bool, Failure> = async {
                let mut req = self.op.lister_with(prefix).recursive(true);
                if let Some(l) = &last {
                    req = req.start_after(l);
                }
                let mut lister = req.await.map_err(|e| classify("list", prefix, &e))?;
                while let Some(entry) = lister
                    .try_next()
                    .await
                    .map_err(|e| classify("list", prefix, &e))?
                {
                    let key = entry.path();
                    if key.ends_with('/') || !key.starts_with(prefix) {
                        continue;
                    }
                    // A listing that resumes must not repeat what was seen.
                    if last.as_deref().is_some_and(|l| key <= l) {
                        continue;
                    }
                    last = Some(key.to_string());
                    let more = each(Listed {
                        key: key.to_string(),
                        size: entry.metadata().content_length(),
                    });
                    if !more {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            .await;
            match step {
                Ok(_) => return Ok(()),
                Err(f) if f.retry && failures + 1 < self.retry.max_attempts => {
                    failures += 1;
                    tracing::debug!(attempt = failures, error = %f.error, "retrying object store listing");
                    tokio::time::sleep(self.retry.delay(failures)).await;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    /// The "directories" right under `prefix` (common prefixes of a delimited listing),
    /// with their trailing `/`.
    pub async fn list_dirs(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.retrying(|| async move {
            let mut out = Vec::new();
            let mut lister = self
                .op
                .lister_with(prefix)
                .await
                .map_err(|e| classify("list", prefix, &e))?;
            while let Some(entry) = lister
                .try_next()
                .await
                .map_err(|e| classify("list", prefix, &e))?
            {
                let key = entry.path();
                if key.ends_with('/') && key.len() > prefix.len() && key.starts_with(prefix) {
                    out.push(key.to_string());
                }
            }
            Ok(out)
        })
        .await
    }
}

//! The errors of GBS calls.
//!
//! Rules (checked by tests): an error names the server (nickname and short id) and the
//! operation (method and path: storage indexes are not secret), never the swissnum, a secret
//! header, a cap or share bytes; a server's own error text is cut to a short line of printable
//! characters. [`GbsError::is_retryable`] lets callers decide mechanically whether the same
//! request may succeed later (another server is usually the better choice).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection: refused, unreachable, reset, closed early.
    Connect(String),
    /// The server's TLS key is not the one its NURL pins.
    PinMismatch,
    /// Any other TLS failure (bad handshake signature, no common cipher...).
    Tls(String),
    /// The server did not answer (or went silent mid-body) within the time allowed.
    Timeout {
        /// Which limit ran out.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The server answered with an unexpected HTTP status.
    Http {
        /// The status code.
        status: u16,
        /// The server's explanation, sanitized and truncated (possibly empty).
        message: String,
    },
    /// The server broke the protocol: wrong content type, undecodable or oversized body,
    /// more bytes than asked for, a missing header.
    Protocol(String),
    /// The client cannot be used as configured (e.g. a Tor NURL).
    Unsupported(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Connect(m) => write!(f, "cannot connect: {m}"),
            ErrorKind::PinMismatch => f.write_str(
                "refused at TLS: the server's key does not match the SPKI hash in its NURL",
            ),
            ErrorKind::Tls(m) => write!(f, "TLS failed: {m}"),
            ErrorKind::Timeout { what, after } => {
                write!(f, "timed out: {what} took longer than {after:?}")
            }
            ErrorKind::Http { status, message } if message.is_empty() => {
                write!(f, "HTTP {status}")
            }
            ErrorKind::Http { status, message } => write!(f, "HTTP {status}: {message}"),
            ErrorKind::Protocol(m) => write!(f, "protocol error: {m}"),
            ErrorKind::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

/// A failed GBS call: which server, which operation, what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GbsError {
    server: Arc<str>,
    operation: String,
    kind: ErrorKind,
}

impl fmt::Display for GbsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "storage server {}: {}: {}",
            self.server, self.operation, self.kind
        )
    }
}

impl std::error::Error for GbsError {}

impl GbsError {
    pub(crate) fn new(server: Arc<str>, operation: String, kind: ErrorKind) -> Self {
        GbsError {
            server,
            operation,
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The server's display name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The operation, e.g. `GET /storage/v1/version`.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The HTTP status, for [`ErrorKind::Http`].
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Http { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Whether trying again later might succeed: connection failures, timeouts, and HTTP
    /// 408, 429 and 5xx. A pin mismatch, another TLS failure, a 4xx answer or a protocol
    /// violation will not change by retrying.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            ErrorKind::Connect(_) | ErrorKind::Timeout { .. } => true,
            ErrorKind::Http { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            ErrorKind::PinMismatch
            | ErrorKind::Tls(_)
            | ErrorKind::Protocol(_)
            | ErrorKind::Unsupported(_) => false,
        }
    }
}

/// Longest server-provided message kept in an error.
const MAX_MESSAGE_CHARS: usize = 200;

/// A server's error text made safe to show: printable characters only, one line, at most
/// [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn sanitize_message(raw: &str) -> String {
    let mut out = String::new();
    for (i, c) in raw.trim().chars().enumerate() {
        if i == MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_retryability() {
        let e = |kind| {
            GbsError::new(
                "stor1 (abcdefgh)".into(),
                "GET /storage/v1/version".into(),
                kind,
            )
        };
        let timeout = e(ErrorKind::Timeout {
            what: "response",
            after: Duration::from_secs(3),
        });
        assert_eq!(
            timeout.to_string(),
            "storage server stor1 (abcdefgh): GET /storage/v1/version: timed out: response took longer than 3s"
        );
        assert!(timeout.is_retryable());
        assert!(e(ErrorKind::Connect("connection refused".into())).is_retryable());
        assert!(!e(ErrorKind::PinMismatch).is_retryable());
        let unauthorized = e(ErrorKind::Http {
            status: 401,
            message: String::new(),
        });
        assert!(!unauthorized.is_retryable());
        assert_eq!(unauthorized.status(), Some(401));
        assert!(unauthorized.to_string().ends_with("HTTP 401"));
        assert!(
            e(ErrorKind::Http {
                status: 503,
                message: "busy".into()
            })
            .is_retryable()
        );
        assert!(!e(ErrorKind::Protocol("x".into())).is_retryable());
    }

    #[test]
    fn messages_are_sanitized() {
        assert_eq!(sanitize_message(" a\nb\x1b[31m "), "a b [31m");
        let long = "x".repeat(1000);
        assert_eq!(
            sanitize_message(&long).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }
}

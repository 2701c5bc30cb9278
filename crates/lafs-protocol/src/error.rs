//! The protocol's errors and the one mapping from errors to HTTP status codes.
//!
//! Rules:
//! - Every way a request can be refused is a variant here, and [`ProtocolError::status`] is the
//!   only place that turns one into a status code. The server answers with that status; the
//!   client uses [`ProtocolError::UnexpectedStatus`] for statuses it did not expect.
//! - Messages never contain secrets (swissnums, lease secrets, upload secrets, write
//!   enablers); they may contain storage indexes and share numbers.
//! - Bodies: stock answers errors with a short text body (e.g. `Wrong Authorization header`),
//!   an HTML page (404/405 from its router) or nothing, and stock clients ignore error bodies.
//!   A lafs server may send `to_string()` as `text/plain` on GBS v1 endpoints; lafs extension
//!   endpoints send a CBOR [`crate::ErrorBody`].

use http::StatusCode;

use crate::cbor::CborError;
use crate::headers::SecretsError;

/// Why a GBS request or response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// No endpoint has this path (404).
    #[error("no such endpoint")]
    UnknownEndpoint,
    /// A path segment that should be a storage index is not 26 characters of canonical base32
    /// (400, as the acceptance names; stock answers 404 because no route matches, and
    /// stock clients never send one).
    #[error("invalid storage index")]
    InvalidStorageIndex,
    /// A path under `/storage/` with a `.` or `..` segment, a percent-escape or a backslash:
    /// an attempt at path traversal (400). Nothing is looked up for it.
    #[error("invalid path")]
    InvalidPath,
    /// A share number in a path is above 255. 404, as stock answers for a share it does not
    /// have.
    #[error("share number out of range")]
    ShareNumberOutOfRange,
    /// The path exists but not for this method (405). `allow` is the value for the `Allow`
    /// header.
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed {
        /// The methods the path accepts, as an `Allow` header value.
        allow: &'static str,
    },
    /// Missing or wrong `Authorization` header (401).
    #[error("wrong Authorization header")]
    Unauthorized,
    /// The `Authorization` header is not UTF-8 (400, as stock).
    #[error("bad Authorization header")]
    MalformedAuthorization,
    /// The `X-Tahoe-Authorization` headers are not exactly the secrets the endpoint needs, or
    /// one is malformed (400).
    #[error("bad X-Tahoe-Authorization headers: {0}")]
    BadSecrets(#[from] SecretsError),
    /// The request body is not `application/cbor` (415).
    #[error("unsupported Content-Type (only application/cbor is accepted)")]
    UnsupportedMediaType,
    /// The client does not accept `application/cbor` (406).
    #[error("not acceptable (responses are application/cbor)")]
    NotAcceptable,
    /// The request body is larger than the endpoint allows (413).
    #[error("body of {len} bytes is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The body's length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The body is not CBOR within the limits (400).
    #[error("malformed CBOR: {0}")]
    MalformedCbor(CborError),
    /// The body is CBOR but does not match the endpoint's schema (400).
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// A `Range` or `Content-Range` header this protocol does not support: missing where
    /// required, not `bytes`, several ranges, open-ended or reversed (416).
    #[error("unsatisfiable or unsupported range")]
    RangeNotSatisfiable,
    /// The share, bucket or storage index does not exist (404).
    #[error("not found")]
    NotFound,
    /// The upload secret does not match the one the upload was allocated with (401).
    #[error("wrong upload secret")]
    WrongUploadSecret,
    /// The write enabler does not match the mutable share's (401).
    #[error("wrong write enabler")]
    WrongWriteEnabler,
    /// An immutable write overlaps already-written data with different bytes (409).
    #[error("write conflicts with data already written")]
    ConflictingWrite,
    /// `abort` on an immutable share whose upload has completed (405, as the spec says).
    #[error("upload already complete")]
    AlreadyComplete,
    /// The server failed (500). The message is for logs; do not put secrets in it.
    #[error("internal error: {0}")]
    Internal(String),
    /// The server cannot serve now; try again later (503).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Client side: the server answered with a status the endpoint does not define.
    #[error("unexpected HTTP status {0}")]
    UnexpectedStatus(u16),
}

impl ProtocolError {
    /// The HTTP status a server answers with. The single place that maps protocol errors to
    /// statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownEndpoint | Self::ShareNumberOutOfRange | Self::NotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed { .. } | Self::AlreadyComplete => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized | Self::WrongUploadSecret | Self::WrongWriteEnabler => {
                StatusCode::UNAUTHORIZED
            }
            Self::MalformedAuthorization
            | Self::InvalidStorageIndex
            | Self::InvalidPath
            | Self::BadSecrets(_)
            | Self::MalformedCbor(_)
            | Self::InvalidBody(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::ConflictingWrite => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnexpectedStatus(code) => {
                StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        }
    }

    /// Whether retrying the same request later may succeed (server-side trouble: 5xx, 408,
    /// 429). Everything else is permanent: the request itself is wrong.
    pub fn is_retryable(&self) -> bool {
        let status = self.status();
        status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl From<CborError> for ProtocolError {
    fn from(e: CborError) -> Self {
        match e {
            CborError::TooLarge { len, limit } => Self::PayloadTooLarge {
                len: len as u64,
                limit: limit as u64,
            },
            other => Self::MalformedCbor(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::SecretKind;

    #[test]
    fn statuses() {
        let cases: Vec<(ProtocolError, u16)> = vec![
            (ProtocolError::UnknownEndpoint, 404),
            (ProtocolError::InvalidStorageIndex, 400),
            (ProtocolError::InvalidPath, 400),
            (ProtocolError::ShareNumberOutOfRange, 404),
            (ProtocolError::NotFound, 404),
            (ProtocolError::MethodNotAllowed { allow: "GET, HEAD" }, 405),
            (ProtocolError::AlreadyComplete, 405),
            (ProtocolError::Unauthorized, 401),
            (ProtocolError::WrongUploadSecret, 401),
            (ProtocolError::WrongWriteEnabler, 401),
            (ProtocolError::MalformedAuthorization, 400),
            (
                ProtocolError::BadSecrets(SecretsError::Missing(SecretKind::Upload)),
                400,
            ),
            (ProtocolError::MalformedCbor(CborError::Truncated), 400),
            (ProtocolError::InvalidBody("x".into()), 400),
            (ProtocolError::UnsupportedMediaType, 415),
            (ProtocolError::NotAcceptable, 406),
            (ProtocolError::PayloadTooLarge { len: 2, limit: 1 }, 413),
            (ProtocolError::RangeNotSatisfiable, 416),
            (ProtocolError::ConflictingWrite, 409),
            (ProtocolError::Internal("x".into()), 500),
            (ProtocolError::Unavailable("x".into()), 503),
            (ProtocolError::UnexpectedStatus(418), 418),
            (ProtocolError::UnexpectedStatus(42), 502),
        ];
        for (e, code) in cases {
            assert_eq!(e.status().as_u16(), code, "{e:?}");
            assert_eq!(e.is_retryable(), code >= 500, "{e:?}");
        }
        assert!(ProtocolError::UnexpectedStatus(429).is_retryable());
    }

    #[test]
    fn too_large_cbor_is_413() {
        let e: ProtocolError = CborError::TooLarge { len: 9, limit: 8 }.into();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let e: ProtocolError = CborError::TooDeep.into();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}

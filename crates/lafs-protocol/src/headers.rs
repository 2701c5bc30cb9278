//! Request and response headers: authorization, per-operation secrets, ranges, media types.
//!
//! Parsers take header values as bytes (HTTP allows obs-text) and never panic. Stock's parsing
//! (werkzeug and `http_server.py`) was probed on a running stock 1.20 node; where stock accepts
//! something by accident, the difference is noted at the function.

use std::fmt;

use data_encoding::BASE64;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderMap, HeaderName, StatusCode};
use subtle::ConstantTimeEq;

use crate::error::ProtocolError;
use crate::limits;
use crate::nurl::Swissnum;

/// The media type of every CBOR body.
pub const CBOR_MIME_TYPE: &str = "application/cbor";
/// The media type of share data (reads; stock sends it on every read response).
pub const OCTET_STREAM_MIME_TYPE: &str = "application/octet-stream";
/// The `Accept` value clients send. Exactly this: stock servers answer 406 to `*/*`,
/// `application/*`, `APPLICATION/CBOR` or anything that does not put `application/cbor` first.
pub const ACCEPT_CBOR: &str = CBOR_MIME_TYPE;
/// The authorization scheme in `Authorization: Tahoe-LAFS <base64 swissnum>`.
pub const AUTHORIZATION_SCHEME: &str = "Tahoe-LAFS";
/// The header that carries per-operation secrets, one per header line.
pub const X_TAHOE_AUTHORIZATION: HeaderName = HeaderName::from_static("x-tahoe-authorization");

fn trim_ows(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |p| p + 1);
    &b[start..end.max(start)]
}

// ---- Authorization ----

/// The `Authorization` value for a swissnum: `Tahoe-LAFS ` + base64 of the swissnum's ASCII
/// (stock `swissnum_auth_header`). The result is a credential: do not log it.
pub fn authorization_header_value(swissnum: &Swissnum) -> String {
    format!(
        "{AUTHORIZATION_SCHEME} {}",
        BASE64.encode(swissnum.as_str().as_bytes())
    )
}

/// Whether an `Authorization` value grants access to the service with `swissnum`, compared in
/// constant time (the lengths are public: the expected value's length follows from the
/// swissnum's). Like stock, the whole header value is compared, so the scheme is
/// case-sensitive and no extra whitespace is allowed.
pub fn swissnum_matches(header_value: &[u8], swissnum: &Swissnum) -> bool {
    let expected = authorization_header_value(swissnum);
    header_value.ct_eq(expected.as_bytes()).into()
}

/// The server's check of the first `Authorization` header: missing or wrong is 401; not UTF-8
/// is 400 (as stock).
pub fn check_authorization(headers: &HeaderMap, swissnum: &Swissnum) -> Result<(), ProtocolError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(ProtocolError::Unauthorized);
    };
    let value = value.as_bytes();
    if std::str::from_utf8(value).is_err() {
        return Err(ProtocolError::MalformedAuthorization);
    }
    if swissnum_matches(value, swissnum) {
        Ok(())
    } else {
        Err(ProtocolError::Unauthorized)
    }
}

// ---- X-Tahoe-Authorization secrets ----

/// The kinds of per-operation secret (stock `Secrets` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretKind {
    /// `lease-renew-secret`, 32 bytes.
    LeaseRenew,
    /// `lease-cancel-secret`, 32 bytes.
    LeaseCancel,
    /// `upload-secret`, any non-empty length (stock clients send 20 bytes).
    Upload,
    /// `write-enabler`, 32 bytes.
    WriteEnabler,
}

impl SecretKind {
    /// Every kind, in the order stock clients send them.
    pub const ALL: [SecretKind; 4] = [
        SecretKind::LeaseRenew,
        SecretKind::LeaseCancel,
        SecretKind::Upload,
        SecretKind::WriteEnabler,
    ];

    /// The name used in the header.
    pub const fn name(self) -> &'static str {
        match self {
            SecretKind::LeaseRenew => "lease-renew-secret",
            SecretKind::LeaseCancel => "lease-cancel-secret",
            SecretKind::Upload => "upload-secret",
            SecretKind::WriteEnabler => "write-enabler",
        }
    }

    fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name().as_bytes() == name)
    }

    /// One `X-Tahoe-Authorization` value: `<name> <base64(secret)>`. A credential: do not log.
    pub fn header_value(self, secret: &[u8]) -> String {
        format!("{} {}", self.name(), BASE64.encode(secret))
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the `X-Tahoe-Authorization` headers were refused (all 400). Never holds secret bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The endpoint needs this secret and it was not sent.
    #[error("missing {0}")]
    Missing(SecretKind),
    /// The endpoint does not take this secret (stock: the set must match exactly).
    #[error("unexpected {0}")]
    Unexpected(SecretKind),
    /// Sent more than once. Stock keeps the last; lafs refuses the ambiguity.
    #[error("{0} sent more than once")]
    Repeated(SecretKind),
    /// A name that is not one of the four.
    #[error("unknown secret name")]
    UnknownName,
    /// Not `<name> <base64>`.
    #[error("malformed header value")]
    Malformed,
    /// The value is not padded standard base64.
    #[error("{0} is not valid base64")]
    BadBase64(SecretKind),
    /// The value decodes to no bytes.
    #[error("{0} is empty")]
    Empty(SecretKind),
    /// The value has the wrong length.
    #[error("{kind} must be {expected} bytes, got {got}")]
    WrongLength {
        /// Which secret.
        kind: SecretKind,
        /// Its required length.
        expected: usize,
        /// The length sent.
        got: usize,
    },
    /// An upload secret longer than [`limits::MAX_UPLOAD_SECRET_LEN`].
    #[error("{0} is too long")]
    TooLong(SecretKind),
}

macro_rules! fixed_secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps the 32 secret bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The secret bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Constant-time comparison (`==` is not constant-time).
            pub fn ct_eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }

            fn from_slice(b: &[u8], kind: SecretKind) -> Result<Self, SecretsError> {
                <[u8; 32]>::try_from(b)
                    .map(Self)
                    .map_err(|_| SecretsError::WrongLength {
                        kind,
                        expected: 32,
                        got: b.len(),
                    })
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

fixed_secret!(
    /// A lease renew or cancel secret (32 bytes). `Debug` does not show it.
    LeaseSecret
);
fixed_secret!(
    /// A mutable share's write enabler (32 bytes; see [`limits::WRITE_ENABLER_LEN`] for why
    /// lafs requires exactly 32). `Debug` does not show it.
    WriteEnabler
);

/// An immutable upload's secret: 1 to [`limits::MAX_UPLOAD_SECRET_LEN`] bytes. `Debug` does
/// not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadSecret(Vec<u8>);

impl UploadSecret {
    /// Wraps secret bytes, refusing empty and over-long ones.
    pub fn new(bytes: Vec<u8>) -> Result<Self, SecretsError> {
        if bytes.is_empty() {
            Err(SecretsError::Empty(SecretKind::Upload))
        } else if bytes.len() > limits::MAX_UPLOAD_SECRET_LEN {
            Err(SecretsError::TooLong(SecretKind::Upload))
        } else {
            Ok(Self(bytes))
        }
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time comparison (`==` is not; lengths are compared in variable time).
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for UploadSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UploadSecret(<redacted>)")
    }
}

/// The per-operation secrets of one request. After [`Secrets::parse`] with an endpoint's
/// [`crate::Endpoint::required_secrets`], exactly those fields are `Some`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// `lease-renew-secret`.
    pub lease_renew: Option<LeaseSecret>,
    /// `lease-cancel-secret`.
    pub lease_cancel: Option<LeaseSecret>,
    /// `upload-secret`.
    pub upload: Option<UploadSecret>,
    /// `write-enabler`.
    pub write_enabler: Option<WriteEnabler>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Secrets {
    /// Parses `X-Tahoe-Authorization` values and requires exactly the `required` kinds.
    ///
    /// Each value is `<name> <base64>`, surrounding whitespace ignored; stock also tolerates
    /// extra spaces before the base64 (its decoder skips them), and so do we. The base64 is
    /// the standard alphabet with padding, as stock's client sends and stock's server
    /// requires. Lease secrets and write enablers must decode to 32 bytes, upload secrets to
    /// 1..=1024 bytes. A name sent twice is refused (stock keeps the last one).
    pub fn parse<'a, I>(values: I, required: &[SecretKind]) -> Result<Secrets, SecretsError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut secrets = Secrets::default();
        for raw in values {
            let value = trim_ows(raw);
            let space = value
                .iter()
                .position(|&b| b == b' ')
                .ok_or(SecretsError::Malformed)?;
            let kind = SecretKind::from_name(&value[..space]).ok_or(SecretsError::UnknownName)?;
            if secrets.has(kind) {
                return Err(SecretsError::Repeated(kind));
            }
            let encoded = trim_ows(&value[space + 1..]);
            let bytes = BASE64
                .decode(encoded)
                .map_err(|_| SecretsError::BadBase64(kind))?;
            if bytes.is_empty() {
                return Err(SecretsError::Empty(kind));
            }
            match kind {
                SecretKind::LeaseRenew => {
                    secrets.lease_renew = Some(LeaseSecret::from_slice(&bytes, kind)?);
                }
                SecretKind::LeaseCancel => {
                    secrets.lease_cancel = Some(LeaseSecret::from_slice(&bytes, kind)?);
                }
                SecretKind::Upload => secrets.upload = Some(UploadSecret::new(bytes)?),
                SecretKind::WriteEnabler => {
                    secrets.write_enabler = Some(WriteEnabler::from_slice(&bytes, kind)?);
                }
            }
        }
        for kind in SecretKind::ALL {
            match (required.contains(&kind), secrets.has(kind)) {
                (true, false) => return Err(SecretsError::Missing(kind)),
                (false, true) => return Err(SecretsError::Unexpected(kind)),
                _ => {}
            }
        }
        Ok(secrets)
    }

    /// [`Secrets::parse`] over every `X-Tahoe-Authorization` header of a request.
    pub fn from_headers(
        headers: &HeaderMap,
        required: &[SecretKind],
    ) -> Result<Secrets, ProtocolError> {
        let values = headers
            .get_all(X_TAHOE_AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes());
        Ok(Self::parse(values, required)?)
    }

    /// Whether a secret of this kind is present.
    pub fn has(&self, kind: SecretKind) -> bool {
        match kind {
            SecretKind::LeaseRenew => self.lease_renew.is_some(),
            SecretKind::LeaseCancel => self.lease_cancel.is_some(),
            SecretKind::Upload => self.upload.is_some(),
            SecretKind::WriteEnabler => self.write_enabler.is_some(),
        }
    }

    /// The kinds present, in stock's order.
    pub fn kinds(&self) -> Vec<SecretKind> {
        SecretKind::ALL
            .into_iter()
            .filter(|&k| self.has(k))
            .collect()
    }

    /// The `X-Tahoe-Authorization` values to send, in the order stock clients send them.
    /// Credentials: do not log them.
    pub fn header_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = &self.lease_renew {
            out.push(SecretKind::LeaseRenew.header_value(s.as_bytes()));
        }
        if let Some(s) = &self.lease_cancel {
            out.push(SecretKind::LeaseCancel.header_value(s.as_bytes()));
        }
        if let Some(s) = &self.upload {
            out.push(SecretKind::Upload.header_value(s.as_bytes()));
        }
        if let Some(s) = &self.write_enabler {
            out.push(SecretKind::WriteEnabler.header_value(s.as_bytes()));
        }
        out
    }
}

// ---- Range, Content-Range ----

/// Parses a decimal number of ASCII digits, saturating at `u64::MAX` (a range past any share's
/// end is clipped anyway; stock takes arbitrary integers).
fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn split_once(b: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == sep)?;
    Some((&b[..i], &b[i + 1..]))
}

/// A closed byte range from a `Range: bytes=first-last` request header (both inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub first: u64,
    /// Last byte, inclusive; `first <= last`.
    pub last: u64,
}

impl ByteRange {
    /// Parses a `Range` value. Accepted, as stock's werkzeug does: units `bytes` in any case,
    /// optional spaces or tabs around the units, `=`, `-` and numbers; exactly one range with
    /// both ends. Multiple ranges, suffix (`-5`) or open (`5-`) ranges, `first > last`, other
    /// units or anything else is [`ProtocolError::RangeNotSatisfiable`] (416, as stock).
    pub fn parse(value: &[u8]) -> Result<ByteRange, ProtocolError> {
        let bad = ProtocolError::RangeNotSatisfiable;
        let (units, spec) = split_once(value, b'=').ok_or(bad.clone())?;
        if !trim_ows(units).eq_ignore_ascii_case(b"bytes") || spec.contains(&b',') {
            return Err(bad);
        }
        let (first, last) = split_once(trim_ows(spec), b'-').ok_or(bad.clone())?;
        let first = parse_decimal(trim_ows(first)).ok_or(bad.clone())?;
        let last = parse_decimal(trim_ows(last)).ok_or(bad.clone())?;
        if first > last {
            return Err(bad);
        }
        Ok(ByteRange { first, last })
    }

    /// The request's `Range`, if any. More than one `Range` header is 416.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<ByteRange>, ProtocolError> {
        let mut values = headers.get_all(RANGE).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Self::parse(v.as_bytes()).map(Some),
            (Some(_), Some(_)) => Err(ProtocolError::RangeNotSatisfiable),
        }
    }

    /// The `Range` value: `bytes=first-last`.
    pub fn to_header_value(&self) -> String {
        format!("bytes={}-{}", self.first, self.last)
    }
}

/// [`ByteRange::parse`] of an optional header value (`None`: no `Range`, read everything).
pub fn parse_range(value: Option<&[u8]>) -> Result<Option<ByteRange>, ProtocolError> {
    value.map(ByteRange::parse).transpose()
}

/// The client's `Range` value for reading `len` bytes at `offset` (stock's `read_share_chunk`):
/// `bytes=offset-(offset+len-1)`. `None` for `len == 0` (HTTP cannot express an empty range)
/// or a range past `u64::MAX`.
pub fn format_range(offset: u64, len: u64) -> Option<String> {
    let last = offset.checked_add(len.checked_sub(1)?)?;
    Some(
        ByteRange {
            first: offset,
            last,
        }
        .to_header_value(),
    )
}

/// How a server answers a read of a share of known length (stock `read_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPlan {
    /// No `Range`: 200 with the whole share.
    Whole,
    /// 206 with bytes `start..end` and `Content-Range: bytes start-(end-1)/*`. A range past
    /// the end is cut at the end: the downloader reads past share ends on purpose.
    Partial {
        /// First byte.
        start: u64,
        /// One past the last byte; `start < end <= share length`.
        end: u64,
    },
    /// The range starts at or after the end: 204, empty body (`Content-Range` cannot express
    /// an empty range).
    Empty,
}

impl ReadPlan {
    /// Plans the answer to a read of a share of `share_len` bytes.
    pub fn new(range: Option<ByteRange>, share_len: u64) -> ReadPlan {
        let Some(range) = range else {
            return ReadPlan::Whole;
        };
        let end = range.last.saturating_add(1).min(share_len);
        if range.first >= end {
            ReadPlan::Empty
        } else {
            ReadPlan::Partial {
                start: range.first,
                end,
            }
        }
    }

    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            ReadPlan::Whole => StatusCode::OK,
            ReadPlan::Partial { .. } => StatusCode::PARTIAL_CONTENT,
            ReadPlan::Empty => StatusCode::NO_CONTENT,
        }
    }

    /// The `Content-Range` value, for [`ReadPlan::Partial`] only.
    pub fn content_range(&self) -> Option<String> {
        match *self {
            ReadPlan::Partial { start, end } => Some(
                ContentRange {
                    first: start,
                    last: end.saturating_sub(1),
                    complete_length: None,
                }
                .to_header_value(),
            ),
            _ => None,
        }
    }
}

/// A `Content-Range: bytes first-last/length` header (both ends inclusive): on an immutable
/// write (PATCH) request, and on a 206 read response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte.
    pub first: u64,
    /// Last byte, inclusive; `first <= last`.
    pub last: u64,
    /// The complete length, or `None` for `*` (what stock always sends).
    pub complete_length: Option<u64>,
}

impl ContentRange {
    /// The range of a write of `len` bytes at `offset` (stock's `write_share_chunk`):
    /// `bytes offset-(offset+len-1)/*`. `None` for `len == 0` or past `u64::MAX`.
    pub fn for_write(offset: u64, len: u64) -> Option<ContentRange> {
        let last = offset.checked_add(len.checked_sub(1)?)?;
        Some(ContentRange {
            first: offset,
            last,
            complete_length: None,
        })
    }

    /// Parses a value the way stock's werkzeug does: units exactly `bytes` (case-sensitive,
    /// as stock compares them), one space, `first-last`, `/`, then `*` or a length (with
    /// `first` below it; werkzeug does not check `last` against it, and neither do we).
    /// Spaces or tabs around the numbers are allowed. `bytes */len` (unsatisfied-range form),
    /// `first > last` and anything else is [`ProtocolError::RangeNotSatisfiable`] (416; stock
    /// fails with 500 on `*/len`).
    pub fn parse(value: &[u8]) -> Result<ContentRange, ProtocolError> {
        let bad = ProtocolError::RangeNotSatisfiable;
        let (units, rest) = split_once(trim_ows(value), b' ').ok_or(bad.clone())?;
        if units != b"bytes" {
            return Err(bad);
        }
        let (range, length) = split_once(rest, b'/').ok_or(bad.clone())?;
        let complete_length = match trim_ows(length) {
            b"*" => None,
            digits => Some(parse_decimal(digits).ok_or(bad.clone())?),
        };
        let (first, last) = split_once(range, b'-').ok_or(bad.clone())?;
        let first = parse_decimal(trim_ows(first)).ok_or(bad.clone())?;
        let last = parse_decimal(trim_ows(last)).ok_or(bad.clone())?;
        if first > last || complete_length.is_some_and(|len| first >= len) {
            return Err(bad);
        }
        Ok(ContentRange {
            first,
            last,
            complete_length,
        })
    }

    /// The request's `Content-Range`. Missing, repeated or malformed is 416 (stock answers 416
    /// to a PATCH without one).
    pub fn from_headers(headers: &HeaderMap) -> Result<ContentRange, ProtocolError> {
        let mut values = headers.get_all(CONTENT_RANGE).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => Self::parse(v.as_bytes()),
            _ => Err(ProtocolError::RangeNotSatisfiable),
        }
    }

    /// Number of bytes in the range (at least 1 for a parsed range; saturates for
    /// `0-u64::MAX`).
    pub fn len(&self) -> u64 {
        self.last.saturating_sub(self.first).saturating_add(1)
    }

    /// Always false: a content range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The value: `bytes first-last/*` or `bytes first-last/length`.
    pub fn to_header_value(&self) -> String {
        match self.complete_length {
            None => format!("bytes {}-{}/*", self.first, self.last),
            Some(len) => format!("bytes {}-{}/{len}", self.first, self.last),
        }
    }
}

// ---- Content-Type, Accept ----

/// The media type of a `Content-Type` value (before any `;` parameters), trimmed.
fn media_type(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    trim_ows(&value[..end])
}

/// Whether the first `Content-Type` header names `mime` (case-insensitive, parameters
/// ignored). The client uses this on responses: stock clients require `application/cbor` on
/// CBOR responses and `application/octet-stream` on reads.
pub fn content_type_is(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| media_type(v.as_bytes()).eq_ignore_ascii_case(mime.as_bytes()))
}

/// The server's check of a CBOR request body's `Content-Type` (first header): absent is
/// accepted as CBOR (stock does so); `application/cbor` with any parameters is accepted;
/// anything else is 415. Stock compares case-sensitively; media types are case-insensitive
/// (RFC 9110), so we accept `Application/CBOR` too.
pub fn check_request_content_type(headers: &HeaderMap) -> Result<(), ProtocolError> {
    match headers.get(CONTENT_TYPE) {
        None => Ok(()),
        Some(v) if media_type(v.as_bytes()).eq_ignore_ascii_case(CBOR_MIME_TYPE.as_bytes()) => {
            Ok(())
        }
        Some(_) => Err(ProtocolError::UnsupportedMediaType),
    }
}

/// Parses a quality value (RFC 9110: `0`, `1`, `0.ddd`, `1.000`) into thousandths.
fn parse_qvalue(b: &[u8]) -> Option<u16> {
    let (int, frac) = match split_once(b, b'.') {
        Some((i, f)) => (i, f),
        None => (b, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether the request's `Accept` headers allow an `application/cbor` response, by RFC 9110
/// content negotiation: no `Accept` means anything; otherwise the most specific matching
/// range (`application/cbor`, then `application/*`, then `*/*`) decides, and `q=0` refuses.
/// Elements with a malformed `q` are ignored (as werkzeug does).
///
/// Stock servers are stricter: they take the first `Accept` header, sort it by quality, and
/// require the best entry to be exactly `application/cbor`, so `*/*` gets 406 from stock. We
/// follow the spec here; clients must send [`ACCEPT_CBOR`] to talk to stock.
pub fn accepts_cbor(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    // (specificity, quality) of the most specific matching range seen so far.
    let mut best: Option<(u8, u16)> = None;
    for value in values {
        for element in value.as_bytes().split(|&b| b == b',') {
            let mut parts = element.split(|&b| b == b';');
            let range = trim_ows(parts.next().unwrap_or_default());
            let specificity = if range.eq_ignore_ascii_case(CBOR_MIME_TYPE.as_bytes()) {
                3
            } else if range.eq_ignore_ascii_case(b"application/*") {
                2
            } else if range == b"*/*" {
                1
            } else {
                continue;
            };
            let mut quality = Some(1000);
            for param in parts {
                if let Some((name, v)) = split_once(trim_ows(param), b'=')
                    && trim_ows(name).eq_ignore_ascii_case(b"q")
                {
                    quality = parse_qvalue(trim_ows(v));
                }
            }
            let Some(quality) = quality else { continue };
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, quality));
            } else if let Some((s, q)) = best
                && s == specificity
            {
                best = Some((s, q.max(quality)));
            }
        }
    }
    best.is_some_and(|(_, q)| q > 0)
}

/// [`accepts_cbor`] as a check: 406 if the client does not accept CBOR. Stock checks `Accept`
/// only on endpoints that answer with CBOR (see [`crate::Endpoint::response_is_cbor`]), and
/// only after doing the work; a lafs server should check before.
pub fn check_accept_cbor(headers: &HeaderMap) -> Result<(), ProtocolError> {
    if accepts_cbor(headers) {
        Ok(())
    } else {
        Err(ProtocolError::NotAcceptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn swissnum() -> Swissnum {
        "g44v5ghvq7fx65wsuvuhuyrgjioef6rw".parse().unwrap()
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn authorization() {
        let s = swissnum();
        let good = authorization_header_value(&s);
        assert_eq!(
            good,
            "Tahoe-LAFS ZzQ0djVnaHZxN2Z4NjV3c3V2dWh1eXJnamlvZWY2cnc="
        );
        assert!(swissnum_matches(good.as_bytes(), &s));
        assert!(!swissnum_matches(b"", &s));
        assert!(!swissnum_matches(good.to_lowercase().as_bytes(), &s));
        assert!(!swissnum_matches(format!("{good} ").as_bytes(), &s));
        let other: Swissnum = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        assert!(!swissnum_matches(good.as_bytes(), &other));

        assert_eq!(
            check_authorization(&headers(&[]), &s),
            Err(ProtocolError::Unauthorized)
        );
        assert_eq!(
            check_authorization(&headers(&[("authorization", good.as_bytes())]), &s),
            Ok(())
        );
        assert_eq!(
            check_authorization(&headers(&[("authorization", b"Tahoe-LAFS xx")]), &s),
            Err(ProtocolError::Unauthorized)
        );
        assert_eq!(
            check_authorization(&headers(&[("authorization", b"Tahoe-LAFS \xff")]), &s),
            Err(ProtocolError::MalformedAuthorization)
        );
        // The first header counts, as in stock.
        assert_eq!(
            check_authorization(
                &headers(&[("authorization", b"x"), ("authorization", good.as_bytes())]),
                &s
            ),
            Err(ProtocolError::Unauthorized)
        );
    }

    const RENEW: [u8; 32] = [1; 32];
    const CANCEL: [u8; 32] = [2; 32];

    fn all_lease_and_upload() -> Vec<String> {
        vec![
            SecretKind::LeaseRenew.header_value(&RENEW),
            SecretKind::LeaseCancel.header_value(&CANCEL),
            SecretKind::Upload.header_value(b"upload"),
        ]
    }

    fn parse(values: &[String], required: &[SecretKind]) -> Result<Secrets, SecretsError> {
        Secrets::parse(values.iter().map(|v| v.as_bytes()), required)
    }

    const ALLOC: [SecretKind; 3] = [
        SecretKind::LeaseRenew,
        SecretKind::LeaseCancel,
        SecretKind::Upload,
    ];

    #[test]
    fn secrets_exact_set() {
        let s = parse(&all_lease_and_upload(), &ALLOC).unwrap();
        assert_eq!(s.lease_renew.as_ref().unwrap().as_bytes(), &RENEW);
        assert_eq!(s.lease_cancel.as_ref().unwrap().as_bytes(), &CANCEL);
        assert_eq!(s.upload.as_ref().unwrap().as_bytes(), b"upload");
        assert!(s.write_enabler.is_none());
        assert_eq!(s.header_values(), all_lease_and_upload());
        assert_eq!(
            format!("{s:?}"),
            "Secrets { kinds: [LeaseRenew, LeaseCancel, Upload] }"
        );
        assert!(!format!("{:?}", s.lease_renew).contains("1, 1"));

        assert_eq!(
            parse(&all_lease_and_upload()[..2], &ALLOC),
            Err(SecretsError::Missing(SecretKind::Upload))
        );
        assert_eq!(
            parse(&all_lease_and_upload(), &ALLOC[..2]),
            Err(SecretsError::Unexpected(SecretKind::Upload))
        );
        assert_eq!(parse(&[], &[]), Ok(Secrets::default()));
        let mut twice = all_lease_and_upload();
        twice.push(SecretKind::LeaseRenew.header_value(&RENEW));
        assert_eq!(
            parse(&twice, &ALLOC),
            Err(SecretsError::Repeated(SecretKind::LeaseRenew))
        );
    }

    #[test]
    fn secrets_values() {
        let req = [SecretKind::Upload];
        let one = |v: &str| parse(&[v.to_owned()], &req);
        assert!(one("upload-secret dXBsb2Fk").is_ok());
        // Surrounding and extra inner spaces are tolerated, as stock does.
        assert!(one("  upload-secret   dXBsb2Fk  ").is_ok());
        assert_eq!(one("upload-secret"), Err(SecretsError::Malformed));
        assert_eq!(one("upload-secret "), Err(SecretsError::Malformed));
        assert_eq!(
            one("Upload-Secret dXBsb2Fk"),
            Err(SecretsError::UnknownName)
        );
        assert_eq!(
            one("upload-secret dXBsb2F"),
            Err(SecretsError::BadBase64(SecretKind::Upload))
        );
        // Unpadded and URL-safe base64 are refused, as stock does.
        assert_eq!(
            one("upload-secret dXBsb2E"),
            Err(SecretsError::BadBase64(SecretKind::Upload))
        );
        assert_eq!(
            one("upload-secret __8="),
            Err(SecretsError::BadBase64(SecretKind::Upload))
        );
        assert_eq!(
            one("upload-secret ="),
            Err(SecretsError::BadBase64(SecretKind::Upload))
        );
        let long = SecretKind::Upload.header_value(&[0; 1025]);
        assert_eq!(one(&long), Err(SecretsError::TooLong(SecretKind::Upload)));
        assert!(one(&SecretKind::Upload.header_value(&[0; 1024])).is_ok());

        let lease = [SecretKind::LeaseRenew, SecretKind::LeaseCancel];
        let short = vec![
            SecretKind::LeaseRenew.header_value(&[0; 31]),
            SecretKind::LeaseCancel.header_value(&CANCEL),
        ];
        assert_eq!(
            parse(&short, &lease),
            Err(SecretsError::WrongLength {
                kind: SecretKind::LeaseRenew,
                expected: 32,
                got: 31
            })
        );
        let short = vec![
            SecretKind::LeaseRenew.header_value(&RENEW),
            SecretKind::LeaseCancel.header_value(&[0; 33]),
        ];
        assert_eq!(
            parse(&short, &lease),
            Err(SecretsError::WrongLength {
                kind: SecretKind::LeaseCancel,
                expected: 32,
                got: 33
            })
        );
        let we = [SecretKind::WriteEnabler];
        assert_eq!(
            parse(&[SecretKind::WriteEnabler.header_value(b"12345")], &we),
            Err(SecretsError::WrongLength {
                kind: SecretKind::WriteEnabler,
                expected: 32,
                got: 5
            })
        );
        assert!(parse(&[SecretKind::WriteEnabler.header_value(&[9; 32])], &we).is_ok());
    }

    #[test]
    fn secrets_from_headers() {
        let values = all_lease_and_upload();
        let h = headers(&[
            ("x-tahoe-authorization", values[0].as_bytes()),
            ("X-Tahoe-Authorization", values[1].as_bytes()),
            ("x-tahoe-authorization", values[2].as_bytes()),
        ]);
        assert!(Secrets::from_headers(&h, &ALLOC).is_ok());
        let e = Secrets::from_headers(&h, &[]).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        // One header holding two comma-separated secrets is malformed (stock: 400).
        let joined = format!("{}, {}", values[0], values[1]);
        let h = headers(&[("x-tahoe-authorization", joined.as_bytes())]);
        assert!(Secrets::from_headers(&h, &ALLOC[..2]).is_err());
    }

    #[test]
    fn ranges() {
        let r = |s: &str| ByteRange::parse(s.as_bytes());
        assert_eq!(r("bytes=0-9"), Ok(ByteRange { first: 0, last: 9 }));
        assert_eq!(
            r("bytes=47-47"),
            Ok(ByteRange {
                first: 47,
                last: 47
            })
        );
        // Accepted by stock too: any case, spaces.
        assert_eq!(r("BYTES=0-1"), Ok(ByteRange { first: 0, last: 1 }));
        assert_eq!(r("bytes = 0 - 1 "), Ok(ByteRange { first: 0, last: 1 }));
        assert_eq!(
            r("bytes=0-99999999999999999999999"),
            Ok(ByteRange {
                first: 0,
                last: u64::MAX
            })
        );
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=0-",
            "bytes=-5",
            "bytes=0-1,5-6",
            "bytes=0-1,",
            "bytes=5-1",
            "items=0-1",
            "bytes=+1-2",
            "bytes=0x1-2",
            "bytes=1",
            "bytes=a-b",
            "bytes=٠-١",
        ] {
            assert_eq!(r(bad), Err(ProtocolError::RangeNotSatisfiable), "{bad:?}");
        }
        assert_eq!(parse_range(None), Ok(None));
        assert_eq!(format_range(10, 90).unwrap(), "bytes=10-99");
        assert_eq!(format_range(10, 0), None);
        assert_eq!(format_range(u64::MAX, 2), None);
        assert_eq!(
            ByteRange::from_headers(&headers(&[
                ("range", b"bytes=0-1"),
                ("range", b"bytes=0-1")
            ])),
            Err(ProtocolError::RangeNotSatisfiable)
        );
        assert_eq!(ByteRange::from_headers(&headers(&[])), Ok(None));
    }

    #[test]
    fn read_plans() {
        // The answers a stock server gave for a 48-byte share.
        let plan = |r: Option<(u64, u64)>| {
            ReadPlan::new(r.map(|(first, last)| ByteRange { first, last }), 48)
        };
        assert_eq!(plan(None), ReadPlan::Whole);
        assert_eq!(plan(None).status(), StatusCode::OK);
        assert_eq!(plan(None).content_range(), None);
        let p = plan(Some((0, 9)));
        assert_eq!(p, ReadPlan::Partial { start: 0, end: 10 });
        assert_eq!(p.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(p.content_range().unwrap(), "bytes 0-9/*");
        assert_eq!(
            plan(Some((40, 99))).content_range().unwrap(),
            "bytes 40-47/*"
        );
        assert_eq!(
            plan(Some((47, 47))).content_range().unwrap(),
            "bytes 47-47/*"
        );
        assert_eq!(
            plan(Some((0, u64::MAX))).content_range().unwrap(),
            "bytes 0-47/*"
        );
        assert_eq!(plan(Some((48, 99))), ReadPlan::Empty);
        assert_eq!(plan(Some((48, 99))).status(), StatusCode::NO_CONTENT);
        assert_eq!(
            ReadPlan::new(Some(ByteRange { first: 0, last: 0 }), 0),
            ReadPlan::Empty
        );
    }

    #[test]
    fn content_ranges() {
        let c = |s: &str| ContentRange::parse(s.as_bytes());
        let cr = c("bytes 100-115/*").unwrap();
        assert_eq!(
            (cr.first, cr.last, cr.complete_length, cr.len()),
            (100, 115, None, 16)
        );
        assert_eq!(cr.to_header_value(), "bytes 100-115/*");
        assert_eq!(ContentRange::for_write(100, 16), Some(cr));
        assert_eq!(ContentRange::for_write(100, 0), None);
        assert_eq!(c("bytes 0-15/48").unwrap().complete_length, Some(48));
        assert_eq!(
            c("bytes 0-15/48").unwrap().to_header_value(),
            "bytes 0-15/48"
        );
        // Accepted by stock too.
        assert!(c("bytes  32-33/*").is_ok());
        assert!(c("bytes 16-31/20").is_ok());
        assert!(c(" bytes 1-2/* ").is_ok());
        for bad in [
            "",
            "bytes",
            "bytes 0-15",
            "bytes 15-0/*",
            "Bytes 0-1/*",
            "items 0-1/*",
            "bytes */48",
            "bytes 0-/*",
            "bytes -1/*",
            "bytes 20-30/20",
            "bytes 0-1/x",
            "bytes 0-1/-1",
            "bytes\t0-1/*",
        ] {
            assert_eq!(c(bad), Err(ProtocolError::RangeNotSatisfiable), "{bad:?}");
        }
        assert_eq!(
            ContentRange::from_headers(&headers(&[])),
            Err(ProtocolError::RangeNotSatisfiable)
        );
        assert!(ContentRange::from_headers(&headers(&[("content-range", b"bytes 0-0/*")])).is_ok());
        assert_eq!(c("bytes 0-18446744073709551615/*").unwrap().len(), u64::MAX);
    }

    #[test]
    fn content_types() {
        assert_eq!(check_request_content_type(&headers(&[])), Ok(()));
        for ok in [
            "application/cbor",
            "application/cbor; charset=x",
            "Application/CBOR",
        ] {
            assert_eq!(
                check_request_content_type(&headers(&[("content-type", ok.as_bytes())])),
                Ok(()),
                "{ok}"
            );
        }
        for bad in ["application/json", "", "application/cbor+x", "text/plain"] {
            assert_eq!(
                check_request_content_type(&headers(&[("content-type", bad.as_bytes())])),
                Err(ProtocolError::UnsupportedMediaType),
                "{bad}"
            );
        }
        let h = headers(&[("content-type", b"application/octet-stream")]);
        assert!(content_type_is(&h, OCTET_STREAM_MIME_TYPE));
        assert!(!content_type_is(&h, CBOR_MIME_TYPE));
        assert!(!content_type_is(&headers(&[]), CBOR_MIME_TYPE));
    }

    #[test]
    fn accept() {
        let acc = |v: &[&str]| {
            let pairs: Vec<(&str, &[u8])> = v.iter().map(|s| ("accept", s.as_bytes())).collect();
            accepts_cbor(&headers(&pairs))
        };
        assert!(acc(&[]));
        for ok in [
            "application/cbor",
            "APPLICATION/CBOR",
            "application/cbor, */*;q=0.5",
            "application/json, application/cbor",
            "*/*",
            "application/*",
            "application/cbor;q=0.001",
            "application/cbor;q=1.000",
            "text/html, */*;q=0.1",
            "*/*;q=0, application/cbor",
            "application/cbor;q=0, application/cbor;q=1",
        ] {
            assert!(acc(&[ok]), "{ok}");
        }
        assert!(acc(&["text/html", "application/cbor"]));
        for bad in [
            "",
            "application/json",
            "application/cbor;q=0",
            "application/cbor;q=0.000",
            "application/cbor;q=0, */*",
            "application/*;q=0",
            "*/*;q=0",
            "application/cbor;q=2",
            "application/cbor;q=bad",
            "text/*",
        ] {
            assert!(!acc(&[bad]), "{bad}");
        }
        assert_eq!(
            check_accept_cbor(&headers(&[("accept", b"text/plain")])),
            Err(ProtocolError::NotAcceptable)
        );
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"1.001"), None);
        assert_eq!(parse_qvalue(b"0.0001"), None);
    }
}

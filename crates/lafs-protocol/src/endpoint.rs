//! Requests routed into a typed [`Endpoint`] before anything else looks at them.
//!
//! Routing follows stock's server (werkzeug routes in `http_server.py`), checked on a running
//! stock 1.20 node:
//! - unknown path: 404; known path with another method: 405 with `Allow` (before the
//!   `Authorization` check, as in stock);
//! - `HEAD` is allowed wherever `GET` is (werkzeug adds it), answered without a body;
//! - the query string is ignored;
//! - a share number is one or more ASCII digits (leading zeros allowed, as stock); anything
//!   else there means no route matches: 404;
//! - a storage index segment must be `[a-z2-7]{26}` with canonical trailing bits; anything
//!   else is [`ProtocolError::InvalidStorageIndex`] (400, as the storage-server issue's
//!   acceptance names; stock answers 404 because no route matches);
//! - a path under `/storage/` with a `.` or `..` segment, a `%` escape or a backslash is
//!   [`ProtocolError::InvalidPath`] (400) before any routing: traversal attempts are refused
//!   loudly, whatever their shape;
//! - a share number above 255 matches the route and is reported as
//!   [`ProtocolError::ShareNumberOutOfRange`] (404, what stock answers for a share it does
//!   not have) after the method check.
//!
//! Stricter than stock, invisibly to stock clients (which never send these): no
//! percent-decoding (stock decodes `%2f` into `/` before routing), no empty segments (stock
//! accepts `//storage/v1/version`), no trailing slash (stock 404s too), no non-ASCII digits.
//! A path that reaches a handler therefore contains nothing but the segments above.
//!
//! Paths under `/storage/lafs/v1/` are lafs extensions (see the crate documentation).

use std::fmt;

use http::Method;

use crate::error::ProtocolError;
use crate::headers::SecretKind;
use crate::ids::{ShareNum, StorageIndex};
use crate::limits;

/// One GBS operation, with its path parameters parsed.
///
/// Success statuses (stock): `Version`, `ImmutableAllocate`, list and corrupt endpoints,
/// `ImmutableAbort` and `MutableReadTestWrite` answer 200; `ImmutableWrite` 200 while the
/// share is incomplete and 201 once complete; reads 200 (no `Range`), 206 or 204 (see
/// [`crate::ReadPlan`]); `LeaseAddOrRenew` 204.
///
/// Deliberately exhaustive (no `#[non_exhaustive]`): a new endpoint should break the build of
/// every `match` in the server until it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /storage/v1/version`
    Version,
    /// `POST /storage/v1/immutable/:si`: allocate buckets ([`crate::AllocateRequest`]).
    ImmutableAllocate {
        /// Storage index.
        si: StorageIndex,
    },
    /// `PATCH /storage/v1/immutable/:si/:sh`: write share data (`Content-Range`).
    ImmutableWrite {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
    },
    /// `PUT /storage/v1/immutable/:si/:sh/abort`
    ImmutableAbort {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
    },
    /// `GET /storage/v1/immutable/:si/shares`
    ImmutableListShares {
        /// Storage index.
        si: StorageIndex,
    },
    /// `GET /storage/v1/immutable/:si/:sh` (optional `Range`).
    ImmutableRead {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
    },
    /// `POST /storage/v1/immutable/:si/:sh/corrupt` ([`crate::AdviseCorruptRequest`]).
    ImmutableAdvise {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
    },
    /// `PUT /storage/v1/lease/:si`
    LeaseAddOrRenew {
        /// Storage index.
        si: StorageIndex,
    },
    /// `POST /storage/v1/mutable/:si/read-test-write` ([`crate::ReadTestWriteRequest`]).
    MutableReadTestWrite {
        /// Storage index.
        si: StorageIndex,
    },
    /// `GET /storage/v1/mutable/:si/shares`
    MutableListShares {
        /// Storage index.
        si: StorageIndex,
    },
    /// `GET /storage/v1/mutable/:si/:sh` (optional `Range`).
    MutableRead {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
    },
    /// `POST /storage/v1/mutable/:si/:sh/corrupt` ([`crate::AdviseCorruptRequest`]).
    MutableAdvise {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
    },
    /// `GET /storage/lafs/v1/account/usage`: lafs extension, the caller's account usage
    /// ([`crate::AccountUsage`]). Stock servers answer 404.
    LafsAccountUsage,
}

/// What a request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body is expected (one that is sent is ignored, as stock does).
    None,
    /// A CBOR body of at most `max_len` bytes (413 beyond); its `Content-Type` is checked
    /// ([`crate::check_request_content_type`]).
    Cbor {
        /// The stock limit (for read-test-write, stock's 2^48: pick a limit of your own).
        max_len: u64,
    },
    /// Raw share data, length given by `Content-Range`; `Content-Type` is not checked.
    ShareData,
}

const ALLOW_GET: &str = "GET, HEAD";
const ALLOW_POST: &str = "POST";
const ALLOW_PUT: &str = "PUT";
const ALLOW_GET_PATCH: &str = "GET, HEAD, PATCH";

/// A path with its parameters, before the method is looked at.
enum Route {
    Version,
    Immutable(StorageIndex),
    ImmutableShares(StorageIndex),
    ImmutableShare(StorageIndex, Option<ShareNum>),
    ImmutableAbort(StorageIndex, Option<ShareNum>),
    ImmutableCorrupt(StorageIndex, Option<ShareNum>),
    Lease(StorageIndex),
    MutableRtw(StorageIndex),
    MutableShares(StorageIndex),
    MutableShare(StorageIndex, Option<ShareNum>),
    MutableCorrupt(StorageIndex, Option<ShareNum>),
    AccountUsage,
}

fn route(path: &str) -> Result<Route, ProtocolError> {
    let unknown = ProtocolError::UnknownEndpoint;
    let rest = path.strip_prefix("/storage/").ok_or(unknown.clone())?;
    if rest
        .split('/')
        .any(|seg| seg == "." || seg == ".." || seg.contains(['%', '\\']))
    {
        return Err(ProtocolError::InvalidPath);
    }
    // At most 6 segments exist; stop splitting early on long junk.
    let segments: Vec<&str> = rest.splitn(7, '/').collect();
    let si = |s: &str| s.parse::<StorageIndex>();
    let sh = |s: &str| ShareNum::parse_segment(s).map_err(|()| ProtocolError::UnknownEndpoint);
    Ok(match segments.as_slice() {
        ["v1", "version"] => Route::Version,
        ["v1", "immutable", s] => Route::Immutable(si(s)?),
        ["v1", "immutable", s, "shares"] => Route::ImmutableShares(si(s)?),
        ["v1", "immutable", s, n] => Route::ImmutableShare(si(s)?, sh(n)?),
        ["v1", "immutable", s, n, "abort"] => Route::ImmutableAbort(si(s)?, sh(n)?),
        ["v1", "immutable", s, n, "corrupt"] => Route::ImmutableCorrupt(si(s)?, sh(n)?),
        ["v1", "lease", s] => Route::Lease(si(s)?),
        ["v1", "mutable", s, "read-test-write"] => Route::MutableRtw(si(s)?),
        ["v1", "mutable", s, "shares"] => Route::MutableShares(si(s)?),
        ["v1", "mutable", s, n] => Route::MutableShare(si(s)?, sh(n)?),
        ["v1", "mutable", s, n, "corrupt"] => Route::MutableCorrupt(si(s)?, sh(n)?),
        ["lafs", "v1", "account", "usage"] => Route::AccountUsage,
        _ => return Err(unknown),
    })
}

impl Endpoint {
    /// Routes a request. `path` is the request target's path; a query string (`?...`), if
    /// included, is ignored as stock does. `HEAD` routes like `GET`.
    ///
    /// Errors: [`ProtocolError::UnknownEndpoint`] (404) for any path that is not exactly one
    /// of the endpoints, [`ProtocolError::MethodNotAllowed`] (405) for a known path with
    /// another method, [`ProtocolError::ShareNumberOutOfRange`] (404) for a share number above
    /// 255. A fuzz target can call this directly.
    pub fn parse(method: &Method, path: &str) -> Result<Endpoint, ProtocolError> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let route = route(path)?;
        let is_get = *method == Method::GET || *method == Method::HEAD;
        let not_allowed = |allow| Err(ProtocolError::MethodNotAllowed { allow });
        let shnum = |n: Option<ShareNum>| n.ok_or(ProtocolError::ShareNumberOutOfRange);
        match route {
            Route::Version if is_get => Ok(Endpoint::Version),
            Route::Version => not_allowed(ALLOW_GET),
            Route::Immutable(si) if *method == Method::POST => {
                Ok(Endpoint::ImmutableAllocate { si })
            }
            Route::Immutable(_) => not_allowed(ALLOW_POST),
            Route::ImmutableShares(si) if is_get => Ok(Endpoint::ImmutableListShares { si }),
            Route::ImmutableShares(_) => not_allowed(ALLOW_GET),
            Route::ImmutableShare(si, n) if is_get => Ok(Endpoint::ImmutableRead {
                si,
                shnum: shnum(n)?,
            }),
            Route::ImmutableShare(si, n) if *method == Method::PATCH => {
                Ok(Endpoint::ImmutableWrite {
                    si,
                    shnum: shnum(n)?,
                })
            }
            Route::ImmutableShare(..) => not_allowed(ALLOW_GET_PATCH),
            Route::ImmutableAbort(si, n) if *method == Method::PUT => {
                Ok(Endpoint::ImmutableAbort {
                    si,
                    shnum: shnum(n)?,
                })
            }
            Route::ImmutableAbort(..) => not_allowed(ALLOW_PUT),
            Route::ImmutableCorrupt(si, n) if *method == Method::POST => {
                Ok(Endpoint::ImmutableAdvise {
                    si,
                    shnum: shnum(n)?,
                })
            }
            Route::ImmutableCorrupt(..) => not_allowed(ALLOW_POST),
            Route::Lease(si) if *method == Method::PUT => Ok(Endpoint::LeaseAddOrRenew { si }),
            Route::Lease(_) => not_allowed(ALLOW_PUT),
            Route::MutableRtw(si) if *method == Method::POST => {
                Ok(Endpoint::MutableReadTestWrite { si })
            }
            Route::MutableRtw(_) => not_allowed(ALLOW_POST),
            Route::MutableShares(si) if is_get => Ok(Endpoint::MutableListShares { si }),
            Route::MutableShares(_) => not_allowed(ALLOW_GET),
            Route::MutableShare(si, n) if is_get => Ok(Endpoint::MutableRead {
                si,
                shnum: shnum(n)?,
            }),
            Route::MutableShare(..) => not_allowed(ALLOW_GET),
            Route::MutableCorrupt(si, n) if *method == Method::POST => {
                Ok(Endpoint::MutableAdvise {
                    si,
                    shnum: shnum(n)?,
                })
            }
            Route::MutableCorrupt(..) => not_allowed(ALLOW_POST),
            Route::AccountUsage if is_get => Ok(Endpoint::LafsAccountUsage),
            Route::AccountUsage => not_allowed(ALLOW_GET),
        }
    }

    /// The method a client sends.
    pub fn method(&self) -> Method {
        match self {
            Endpoint::Version
            | Endpoint::ImmutableListShares { .. }
            | Endpoint::ImmutableRead { .. }
            | Endpoint::MutableListShares { .. }
            | Endpoint::MutableRead { .. }
            | Endpoint::LafsAccountUsage => Method::GET,
            Endpoint::ImmutableAllocate { .. }
            | Endpoint::ImmutableAdvise { .. }
            | Endpoint::MutableReadTestWrite { .. }
            | Endpoint::MutableAdvise { .. } => Method::POST,
            Endpoint::ImmutableWrite { .. } => Method::PATCH,
            Endpoint::ImmutableAbort { .. } | Endpoint::LeaseAddOrRenew { .. } => Method::PUT,
        }
    }

    /// The path a client requests (canonical: share numbers without leading zeros).
    pub fn path(&self) -> String {
        match self {
            Endpoint::Version => "/storage/v1/version".to_owned(),
            Endpoint::ImmutableAllocate { si } => format!("/storage/v1/immutable/{si}"),
            Endpoint::ImmutableWrite { si, shnum } | Endpoint::ImmutableRead { si, shnum } => {
                format!("/storage/v1/immutable/{si}/{shnum}")
            }
            Endpoint::ImmutableAbort { si, shnum } => {
                format!("/storage/v1/immutable/{si}/{shnum}/abort")
            }
            Endpoint::ImmutableListShares { si } => format!("/storage/v1/immutable/{si}/shares"),
            Endpoint::ImmutableAdvise { si, shnum } => {
                format!("/storage/v1/immutable/{si}/{shnum}/corrupt")
            }
            Endpoint::LeaseAddOrRenew { si } => format!("/storage/v1/lease/{si}"),
            Endpoint::MutableReadTestWrite { si } => {
                format!("/storage/v1/mutable/{si}/read-test-write")
            }
            Endpoint::MutableListShares { si } => format!("/storage/v1/mutable/{si}/shares"),
            Endpoint::MutableRead { si, shnum } => format!("/storage/v1/mutable/{si}/{shnum}"),
            Endpoint::MutableAdvise { si, shnum } => {
                format!("/storage/v1/mutable/{si}/{shnum}/corrupt")
            }
            Endpoint::LafsAccountUsage => "/storage/lafs/v1/account/usage".to_owned(),
        }
    }

    /// The `X-Tahoe-Authorization` secrets the endpoint requires, exactly (stock
    /// `_authorized_route` declarations, which match the spec).
    pub fn required_secrets(&self) -> &'static [SecretKind] {
        use SecretKind::*;
        match self {
            Endpoint::ImmutableAllocate { .. } => &[LeaseRenew, LeaseCancel, Upload],
            Endpoint::ImmutableWrite { .. } | Endpoint::ImmutableAbort { .. } => &[Upload],
            Endpoint::LeaseAddOrRenew { .. } => &[LeaseRenew, LeaseCancel],
            Endpoint::MutableReadTestWrite { .. } => &[LeaseRenew, LeaseCancel, WriteEnabler],
            _ => &[],
        }
    }

    /// The request body the endpoint takes, with stock's size limit.
    pub fn request_body(&self) -> BodyKind {
        match self {
            Endpoint::ImmutableAllocate { .. } => BodyKind::Cbor {
                max_len: limits::MAX_ALLOCATE_BODY as u64,
            },
            Endpoint::ImmutableAdvise { .. } | Endpoint::MutableAdvise { .. } => BodyKind::Cbor {
                max_len: limits::MAX_ADVISE_CORRUPT_BODY as u64,
            },
            Endpoint::MutableReadTestWrite { .. } => BodyKind::Cbor {
                max_len: limits::MAX_READ_TEST_WRITE_BODY_STOCK,
            },
            Endpoint::ImmutableWrite { .. } => BodyKind::ShareData,
            _ => BodyKind::None,
        }
    }

    /// Whether a successful answer is a CBOR body, so `Accept` must allow CBOR (stock checks
    /// `Accept` exactly on these). Reads answer `application/octet-stream`; abort, lease and
    /// corrupt answer with an empty body.
    pub fn response_is_cbor(&self) -> bool {
        matches!(
            self,
            Endpoint::Version
                | Endpoint::ImmutableAllocate { .. }
                | Endpoint::ImmutableWrite { .. }
                | Endpoint::ImmutableListShares { .. }
                | Endpoint::MutableReadTestWrite { .. }
                | Endpoint::MutableListShares { .. }
                | Endpoint::LafsAccountUsage
        )
    }

    /// Whether this is a lafs extension (under `/storage/lafs/`), which stock servers lack.
    pub fn is_lafs_extension(&self) -> bool {
        matches!(self, Endpoint::LafsAccountUsage)
    }

    /// The storage index the request is about, if any.
    pub fn storage_index(&self) -> Option<StorageIndex> {
        match *self {
            Endpoint::ImmutableAllocate { si }
            | Endpoint::ImmutableWrite { si, .. }
            | Endpoint::ImmutableAbort { si, .. }
            | Endpoint::ImmutableListShares { si }
            | Endpoint::ImmutableRead { si, .. }
            | Endpoint::ImmutableAdvise { si, .. }
            | Endpoint::LeaseAddOrRenew { si }
            | Endpoint::MutableReadTestWrite { si }
            | Endpoint::MutableListShares { si }
            | Endpoint::MutableRead { si, .. }
            | Endpoint::MutableAdvise { si, .. } => Some(si),
            Endpoint::Version | Endpoint::LafsAccountUsage => None,
        }
    }
}

impl fmt::Display for Endpoint {
    /// `METHOD path`, for logs (holds no secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method(), self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SI: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn si() -> StorageIndex {
        SI.parse().unwrap()
    }

    fn all() -> Vec<Endpoint> {
        let si = si();
        let shnum = ShareNum::new(7);
        vec![
            Endpoint::Version,
            Endpoint::ImmutableAllocate { si },
            Endpoint::ImmutableWrite { si, shnum },
            Endpoint::ImmutableAbort { si, shnum },
            Endpoint::ImmutableListShares { si },
            Endpoint::ImmutableRead { si, shnum },
            Endpoint::ImmutableAdvise { si, shnum },
            Endpoint::LeaseAddOrRenew { si },
            Endpoint::MutableReadTestWrite { si },
            Endpoint::MutableListShares { si },
            Endpoint::MutableRead { si, shnum },
            Endpoint::MutableAdvise { si, shnum },
            Endpoint::LafsAccountUsage,
        ]
    }

    #[test]
    fn paths_round_trip() {
        for e in all() {
            assert_eq!(Endpoint::parse(&e.method(), &e.path()), Ok(e), "{e}");
            if e.method() == Method::GET {
                assert_eq!(Endpoint::parse(&Method::HEAD, &e.path()), Ok(e), "{e}");
            }
            let with_query = format!("{}?x=1&share=3", e.path());
            assert_eq!(Endpoint::parse(&e.method(), &with_query), Ok(e), "{e}");
        }
    }

    #[test]
    fn known_paths() {
        let p = |m: Method, path: &str| Endpoint::parse(&m, path);
        assert_eq!(
            p(
                Method::GET,
                "/storage/v1/immutable/aaaaaaaaaaaaaaaaaaaaaaaaaa/007"
            ),
            Ok(Endpoint::ImmutableRead {
                si: si(),
                shnum: ShareNum::new(7)
            })
        );
        assert_eq!(
            Endpoint::ImmutableRead {
                si: si(),
                shnum: ShareNum::new(7)
            }
            .path(),
            format!("/storage/v1/immutable/{SI}/7")
        );
        assert_eq!(
            Endpoint::MutableReadTestWrite { si: si() }.to_string(),
            format!("POST /storage/v1/mutable/{SI}/read-test-write")
        );
    }

    #[test]
    fn wrong_methods() {
        // The Allow values stock sends (order aside).
        let cases = [
            (Method::POST, "/storage/v1/version".to_owned(), "GET, HEAD"),
            (
                Method::OPTIONS,
                "/storage/v1/version".to_owned(),
                "GET, HEAD",
            ),
            (Method::GET, format!("/storage/v1/immutable/{SI}"), "POST"),
            (
                Method::POST,
                format!("/storage/v1/immutable/{SI}/shares"),
                "GET, HEAD",
            ),
            (
                Method::POST,
                format!("/storage/v1/immutable/{SI}/0"),
                "GET, HEAD, PATCH",
            ),
            (
                Method::PUT,
                format!("/storage/v1/immutable/{SI}/0"),
                "GET, HEAD, PATCH",
            ),
            (
                Method::GET,
                format!("/storage/v1/immutable/{SI}/0/abort"),
                "PUT",
            ),
            (
                Method::GET,
                format!("/storage/v1/immutable/{SI}/0/corrupt"),
                "POST",
            ),
            (Method::GET, format!("/storage/v1/lease/{SI}"), "PUT"),
            (
                Method::GET,
                format!("/storage/v1/mutable/{SI}/read-test-write"),
                "POST",
            ),
            (
                Method::PATCH,
                format!("/storage/v1/mutable/{SI}/3"),
                "GET, HEAD",
            ),
            (
                Method::DELETE,
                format!("/storage/v1/mutable/{SI}/shares"),
                "GET, HEAD",
            ),
            (
                Method::GET,
                format!("/storage/v1/mutable/{SI}/3/corrupt"),
                "POST",
            ),
            (
                Method::POST,
                "/storage/lafs/v1/account/usage".to_owned(),
                "GET, HEAD",
            ),
            // The method is checked before the share number's range, as stock routes first.
            (
                Method::POST,
                format!("/storage/v1/immutable/{SI}/300"),
                "GET, HEAD, PATCH",
            ),
        ];
        for (m, path, allow) in cases {
            let e = Endpoint::parse(&m, &path).unwrap_err();
            assert_eq!(e, ProtocolError::MethodNotAllowed { allow }, "{m} {path}");
            assert_eq!(e.status().as_u16(), 405);
        }
    }

    #[test]
    fn unknown_paths() {
        let bad_si = [
            SI.to_uppercase(),
            SI[..25].to_owned(),
            format!("{SI}a"),
            format!("{}b", &SI[..25]),
            format!("{}..", &SI[..24]),
        ];
        let paths: Vec<String> = vec![
            "".into(),
            "/".into(),
            "/storage".into(),
            "/storage/".into(),
            "/storage/v1".into(),
            "/storage/v1/".into(),
            "/storage/v1/version/".into(),
            "//storage/v1/version".into(),
            "/storage//v1/version".into(),
            "/storage/v1/nothing".into(),
            "/storage/v2/version".into(),
            "/Storage/v1/version".into(),
            "storage/v1/version".into(),
            format!("/storage/v1/immutable/{SI}/"),
            format!("/storage/v1/immutable/{SI}/-1"),
            format!("/storage/v1/immutable/{SI}/+1"),
            format!("/storage/v1/immutable/{SI}/1.0"),
            format!("/storage/v1/immutable/{SI}/١"),
            format!("/storage/v1/immutable/{SI}/0/abort/"),
            format!("/storage/v1/immutable/{SI}/0/abort/x"),
            format!("/storage/v1/immutable/{SI}/shares/x"),
            format!("/storage/v1/mutable/{SI}/3/abort"),
            format!("/storage/v1/mutable/{SI}"),
            format!("/storage/v1/lease/{SI}/0"),
            format!("/storage/v1/lease"),
            "/storage/lafs/v1/account".into(),
            "/storage/lafs/v1/account/usage/".into(),
            "/storage/lafs/v2/account/usage".into(),
        ];
        let mut si_paths = Vec::new();
        for s in &bad_si {
            si_paths.push(format!("/storage/v1/immutable/{s}"));
            si_paths.push(format!("/storage/v1/immutable/{s}/shares"));
            si_paths.push(format!("/storage/v1/immutable/{s}/0/abort"));
            si_paths.push(format!("/storage/v1/mutable/{s}/0"));
            si_paths.push(format!("/storage/v1/mutable/{s}/read-test-write"));
            si_paths.push(format!("/storage/v1/lease/{s}"));
        }
        let traversal = [
            format!("/storage/v1/immutable/{SI}/../{SI}/shares"),
            format!("/storage/v1/immutable/{SI}/./shares"),
            format!("/storage/v1/immutable/{SI}/%31"),
            format!("/storage/v1/immutable/{SI}%2fshares"),
            "/storage/v1/immutable/../../../etc/passwd".into(),
            "/storage/v1/immutable/%2e%2e/x/0".into(),
            format!("/storage/v1/mutable/{SI}/..\\..\\x"),
            "/storage/v1/version/../version".into(),
            format!("/storage/v1/immutable/%61{}", &SI[1..]),
        ];
        for m in [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
        ] {
            for path in &paths {
                let e = Endpoint::parse(&m, path).unwrap_err();
                assert_eq!(e, ProtocolError::UnknownEndpoint, "{m} {path}");
                assert_eq!(e.status().as_u16(), 404);
            }
            for path in &si_paths {
                let e = Endpoint::parse(&m, path).unwrap_err();
                assert_eq!(e, ProtocolError::InvalidStorageIndex, "{m} {path}");
                assert_eq!(e.status().as_u16(), 400);
            }
            for path in &traversal {
                let e = Endpoint::parse(&m, path).unwrap_err();
                assert_eq!(e, ProtocolError::InvalidPath, "{m} {path}");
                assert_eq!(e.status().as_u16(), 400);
            }
        }
    }

    #[test]
    fn share_number_range() {
        for n in ["256", "300", "99999999999999999999"] {
            for (m, path) in [
                (Method::GET, format!("/storage/v1/immutable/{SI}/{n}")),
                (Method::PATCH, format!("/storage/v1/immutable/{SI}/{n}")),
                (Method::PUT, format!("/storage/v1/immutable/{SI}/{n}/abort")),
                (
                    Method::POST,
                    format!("/storage/v1/immutable/{SI}/{n}/corrupt"),
                ),
                (Method::GET, format!("/storage/v1/mutable/{SI}/{n}")),
                (
                    Method::POST,
                    format!("/storage/v1/mutable/{SI}/{n}/corrupt"),
                ),
            ] {
                let e = Endpoint::parse(&m, &path).unwrap_err();
                assert_eq!(e, ProtocolError::ShareNumberOutOfRange, "{m} {path}");
                assert_eq!(e.status().as_u16(), 404);
            }
        }
        assert!(Endpoint::parse(&Method::GET, &format!("/storage/v1/mutable/{SI}/255")).is_ok());
    }

    #[test]
    fn metadata() {
        use SecretKind::*;
        for e in all() {
            let secrets = e.required_secrets();
            let body = e.request_body();
            match e {
                Endpoint::ImmutableAllocate { .. } => {
                    assert_eq!(secrets, [LeaseRenew, LeaseCancel, Upload]);
                    assert_eq!(body, BodyKind::Cbor { max_len: 8192 });
                }
                Endpoint::ImmutableWrite { .. } => {
                    assert_eq!(secrets, [Upload]);
                    assert_eq!(body, BodyKind::ShareData);
                }
                Endpoint::ImmutableAbort { .. } => {
                    assert_eq!(secrets, [Upload]);
                    assert_eq!(body, BodyKind::None);
                }
                Endpoint::LeaseAddOrRenew { .. } => assert_eq!(secrets, [LeaseRenew, LeaseCancel]),
                Endpoint::MutableReadTestWrite { .. } => {
                    assert_eq!(secrets, [LeaseRenew, LeaseCancel, WriteEnabler]);
                    assert_eq!(body, BodyKind::Cbor { max_len: 1 << 48 });
                }
                Endpoint::ImmutableAdvise { .. } | Endpoint::MutableAdvise { .. } => {
                    assert!(secrets.is_empty());
                    assert_eq!(body, BodyKind::Cbor { max_len: 32768 });
                }
                _ => {
                    assert!(secrets.is_empty(), "{e}");
                    assert_eq!(body, BodyKind::None, "{e}");
                }
            }
            assert_eq!(
                e.is_lafs_extension(),
                e.path().starts_with("/storage/lafs/")
            );
            assert_eq!(e.storage_index().is_some(), e.path().contains(SI));
        }
        let cbor: Vec<bool> = all().iter().map(Endpoint::response_is_cbor).collect();
        assert_eq!(
            cbor,
            [
                true, true, true, false, true, false, false, false, true, true, false, false, true
            ]
        );
    }
}

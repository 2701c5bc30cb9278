//! The GBS ("Great Black Swamp") HTTP storage protocol, version 1, as spoken by stock
//! Tahoe-LAFS 1.20: the types and codecs that lafs's storage server and storage client share.
//!
//! Goals:
//! - Wire compatibility with stock Tahoe-LAFS 1.20, byte for byte where bytes are observable:
//!   request paths, CBOR bodies (including tag 258 for sets and byte-string keys in the version
//!   message), the `Authorization`/`X-Tahoe-Authorization` headers, `Range`/`Content-Range`,
//!   NURLs and FURLs, the SPKI hash and the tub id. Golden tests hold values computed by stock
//!   (`tests/stock/*.py` regenerate them).
//! - Parse at the edge into types: a request becomes an [`Endpoint`] holding a [`StorageIndex`]
//!   and a [`ShareNum`], never a path string; secrets become [`Secrets`]; bodies become structs.
//!   Nothing that is not exactly a valid path segment reaches a caller (no `..`, `/`, `%2f`).
//! - Hostile input is routine: every parser here is a total function over bytes that returns a
//!   typed error and never panics; CBOR decoding first checks structure against
//!   [`DecodeLimits`] (size, nesting, item count, declared lengths against the remaining input)
//!   before anything is allocated for it.
//! - One place maps errors to HTTP: [`ProtocolError::status`].
//!
//! Non-goals:
//! - I/O. There is no socket, no runtime and no TLS stack here; the server and client crates
//!   drive these types. Streaming bodies (share data) never pass through this crate, except
//!   as slices [`RtwDecoder`] hands straight back to its caller.
//! - Policy. Whether a share exists, how much space there is, what a lease is worth: those are
//!   the server's. This crate says how such answers look on the wire.
//! - JSON bodies. The spec says servers SHOULD accept JSON; stock never does, so neither do we.
//!
//! Where the spec and stock disagree, this crate follows stock (observed on a running stock
//! 1.20 node); where stock accepts malformed input by accident (trailing bytes after a CBOR
//! body, share numbers above 255, duplicate secret headers, percent-encoded paths) we refuse it,
//! which no stock client can notice because no stock client sends such input. Each case is
//! documented where it is decided.
//!
//! # lafs extensions
//! Paths under `/storage/lafs/v1/` are reserved for lafs-only endpoints. Stock servers answer
//! 404 there, so a lafs client learns whether a server supports an extension by asking. The
//! version message cannot advertise extensions: stock clients reject any key they do not know
//! in it. Extension endpoints report errors with a CBOR [`ErrorBody`].

mod cbor;
mod endpoint;
mod error;
mod headers;
mod ids;
pub mod limits;
mod messages;
mod nurl;
pub mod rtw_stream;
mod x509;

pub use cbor::{CborBody, CborError, DecodeLimits, check_structure, decode_limited};
pub use endpoint::{BodyKind, Endpoint};
pub use error::ProtocolError;
pub use headers::{
    ACCEPT_CBOR, AUTHORIZATION_SCHEME, ByteRange, CBOR_MIME_TYPE, ContentRange, LeaseSecret,
    OCTET_STREAM_MIME_TYPE, ReadPlan, SecretKind, Secrets, SecretsError, UploadSecret,
    WriteEnabler, X_TAHOE_AUTHORIZATION, accepts_cbor, authorization_header_value,
    check_accept_cbor, check_authorization, check_request_content_type, content_type_is,
    format_range, parse_range, swissnum_matches,
};
pub use ids::{ShareNum, StorageIndex};
pub use messages::{
    AccountUsage, AdviseCorruptRequest, AllocateRequest, AllocateResponse, ErrorBody,
    ReadTestWriteRequest, ReadTestWriteResponse, ReadVector, RequiredRange, ShareList, TestVector,
    TestWriteVectors, V1_KEY, VersionResponse, WriteResponse, WriteVector,
};
pub use nurl::{Furl, LocationHint, Nurl, NurlError, NurlScheme, SpkiHash, Swissnum, TubId};
pub use rtw_stream::{DataWrite, RtwDecoder, StreamLimits, StreamedRtw, StreamedShare};
pub use x509::{CertError, PemBlock, pem_blocks, pem_certificate_der, spki_der_from_cert_der};

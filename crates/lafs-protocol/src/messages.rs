//! The CBOR bodies of GBS requests and responses.
//!
//! Each type encodes to exactly what stock sends (keys in stock's order, byte-string keys in
//! the version message, tag 258 on sets, integer keys for share numbers) and decodes what
//! stock's schemas accept, minus accidents (see [`crate::CborBody`] and the crate docs).
//! Request bodies (decoded by a server) refuse unknown keys, as stock's closed CDDL maps do;
//! response bodies (decoded by a client) ignore unknown keys, so a later server may add some.
//! The version message is the exception that proves the rule: stock clients refuse unknown
//! keys there, so a lafs server must never add any.

use std::collections::{BTreeMap, BTreeSet};

use ciborium::value::Value;

use crate::cbor::{
    CborBody, Codec, DecodeLimits, Fields, KeyType, bytes_map, get_array, get_bool, get_bytes,
    get_share_map, get_share_set, get_text, get_uint, share_map, share_set, text_map, uint,
};
use crate::error::ProtocolError;
use crate::ids::ShareNum;
use crate::limits::{self, MAX_CBOR_DEPTH};

/// Limits for small responses with bounded schemas.
const SMALL_RESPONSE: DecodeLimits = DecodeLimits::new(64 * 1024, MAX_CBOR_DEPTH, 4096);

// ---- version ----

/// The version message's outer key (a byte string on the wire).
pub const V1_KEY: &str = "http://allmydata.org/tahoe/protocols/storage/v1";

/// `GET /storage/v1/version` response:
/// `{'http://allmydata.org/tahoe/protocols/storage/v1' => {'maximum-immutable-share-size' =>
/// uint, 'maximum-mutable-share-size' => uint, 'available-space' => uint},
/// 'application-version' => bstr}`, all keys byte strings.
///
/// Stock clients refuse any other key, so this is all a server may send. They then add four
/// flags the HTTP protocol implies (`tolerates-immutable-read-overrun`,
/// `delete-mutable-shares-with-zero-length-writev`, `fills-holes-with-zero-bytes`,
/// `prevents-read-past-end-of-share-data`, all true): a lafs server must behave accordingly.
/// A server is writable for an upload only if `maximum_immutable_share_size` is at least the
/// share size. Stock sends its free space as both `maximum-immutable-share-size` and
/// `available-space`, [`limits::STOCK_MAX_MUTABLE_SHARE_SIZE`] and `tahoe-lafs/1.20.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionResponse {
    /// Largest immutable share the server accepts now.
    pub maximum_immutable_share_size: u64,
    /// Largest mutable share.
    pub maximum_mutable_share_size: u64,
    /// Free space, bytes.
    pub available_space: u64,
    /// Software name and version, e.g. `b"tahoe-lafs/1.20.0"`.
    pub application_version: Vec<u8>,
}

impl Codec for VersionResponse {
    fn to_value(&self) -> Value {
        bytes_map(vec![
            (
                V1_KEY.as_bytes(),
                bytes_map(vec![
                    (
                        b"maximum-immutable-share-size",
                        uint(self.maximum_immutable_share_size),
                    ),
                    (
                        b"maximum-mutable-share-size",
                        uint(self.maximum_mutable_share_size),
                    ),
                    (b"available-space", uint(self.available_space)),
                ]),
            ),
            (
                b"application-version",
                Value::Bytes(self.application_version.clone()),
            ),
        ])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut outer = Fields::new(value, "version", KeyType::Bytes)?;
        let application_version =
            get_bytes(outer.require("application-version")?, "application-version")?;
        let mut v1 = Fields::new(outer.require(V1_KEY)?, "version v1", KeyType::Bytes)?;
        let mut field = |name: &str| get_uint(v1.require(name)?, name);
        Ok(VersionResponse {
            maximum_immutable_share_size: field("maximum-immutable-share-size")?,
            maximum_mutable_share_size: field("maximum-mutable-share-size")?,
            available_space: field("available-space")?,
            application_version,
        })
    }
}

impl CborBody for VersionResponse {
    const LIMITS: DecodeLimits = SMALL_RESPONSE;
}

// ---- immutable ----

/// `POST /storage/v1/immutable/:si` request: `{share-numbers: #6.258([0*256 uint]),
/// allocated-size: uint}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateRequest {
    /// Shares to allocate.
    pub share_numbers: BTreeSet<ShareNum>,
    /// Size of each share, bytes.
    pub allocated_size: u64,
}

impl Codec for AllocateRequest {
    fn to_value(&self) -> Value {
        text_map(vec![
            ("share-numbers", share_set(&self.share_numbers)),
            ("allocated-size", uint(self.allocated_size)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "allocate request", KeyType::Text)?;
        let share_numbers = get_share_set(f.require("share-numbers")?, "share-numbers")?;
        let allocated_size = get_uint(f.require("allocated-size")?, "allocated-size")?;
        f.close()?;
        Ok(AllocateRequest {
            share_numbers,
            allocated_size,
        })
    }
}

impl CborBody for AllocateRequest {
    const LIMITS: DecodeLimits = DecodeLimits::new(
        limits::MAX_ALLOCATE_BODY,
        MAX_CBOR_DEPTH,
        limits::MAX_ALLOCATE_BODY,
    );
}

/// `POST /storage/v1/immutable/:si` response: `{already-have: #6.258([...]), allocated:
/// #6.258([...])}`. `already_have` lists every complete share the server holds for the
/// storage index, requested or not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllocateResponse {
    /// Complete shares the server already has.
    pub already_have: BTreeSet<ShareNum>,
    /// Shares allocated for this upload.
    pub allocated: BTreeSet<ShareNum>,
}

impl Codec for AllocateResponse {
    fn to_value(&self) -> Value {
        text_map(vec![
            ("already-have", share_set(&self.already_have)),
            ("allocated", share_set(&self.allocated)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "allocate response", KeyType::Text)?;
        Ok(AllocateResponse {
            already_have: get_share_set(f.require("already-have")?, "already-have")?,
            allocated: get_share_set(f.require("allocated")?, "allocated")?,
        })
    }
}

impl CborBody for AllocateResponse {
    const LIMITS: DecodeLimits = SMALL_RESPONSE;
}

/// A byte range still to upload, `begin..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredRange {
    /// First byte.
    pub begin: u64,
    /// One past the last byte.
    pub end: u64,
}

/// `PATCH /storage/v1/immutable/:si/:sh` response: `{required: [0* {begin: uint, end:
/// uint}]}`, the ranges still missing (empty with status 201 once the share is complete).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteResponse {
    /// Missing ranges, in order.
    pub required: Vec<RequiredRange>,
}

impl Codec for WriteResponse {
    fn to_value(&self) -> Value {
        let ranges = self
            .required
            .iter()
            .map(|r| text_map(vec![("begin", uint(r.begin)), ("end", uint(r.end))]))
            .collect();
        text_map(vec![("required", Value::Array(ranges))])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "write response", KeyType::Text)?;
        let required = get_array(f.require("required")?, "required", usize::MAX)?
            .into_iter()
            .map(|r| {
                let mut r = Fields::new(r, "required range", KeyType::Text)?;
                Ok(RequiredRange {
                    begin: get_uint(r.require("begin")?, "begin")?,
                    end: get_uint(r.require("end")?, "end")?,
                })
            })
            .collect::<Result<_, ProtocolError>>()?;
        Ok(WriteResponse { required })
    }
}

impl CborBody for WriteResponse {
    const LIMITS: DecodeLimits = DecodeLimits::new(1024 * 1024, MAX_CBOR_DEPTH, 1 << 16);
}

/// `GET /storage/v1/{immutable,mutable}/:si/shares` response: `#6.258([0*256 uint])` (empty
/// for an unknown storage index).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareList(pub BTreeSet<ShareNum>);

impl Codec for ShareList {
    fn to_value(&self) -> Value {
        share_set(&self.0)
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        get_share_set(value, "share list").map(ShareList)
    }
}

impl CborBody for ShareList {
    const LIMITS: DecodeLimits = SMALL_RESPONSE;
}

/// `POST /storage/v1/{immutable,mutable}/:si/:sh/corrupt` request: `{reason: tstr .size
/// (1..32765)}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdviseCorruptRequest {
    /// What the client found wrong (1 to 32765 bytes of UTF-8).
    pub reason: String,
}

impl Codec for AdviseCorruptRequest {
    fn to_value(&self) -> Value {
        text_map(vec![("reason", Value::Text(self.reason.clone()))])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "corruption advisory", KeyType::Text)?;
        let reason = get_text(f.require("reason")?, "reason")?;
        f.close()?;
        let (min, max) = limits::REASON_LEN;
        if reason.len() < min || reason.len() > max {
            return Err(ProtocolError::InvalidBody(format!(
                "reason: {} bytes, must be {min} to {max}",
                reason.len()
            )));
        }
        Ok(AdviseCorruptRequest { reason })
    }
}

impl CborBody for AdviseCorruptRequest {
    const LIMITS: DecodeLimits =
        DecodeLimits::new(limits::MAX_ADVISE_CORRUPT_BODY, MAX_CBOR_DEPTH, 16);
}

// ---- mutable ----

/// A test: the share's bytes `offset..offset+size` (clipped to the share's end; a missing
/// share reads as empty) must equal `specimen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestVector {
    /// Offset in the share.
    pub offset: u64,
    /// Bytes to compare.
    pub size: u64,
    /// The expected bytes.
    pub specimen: Vec<u8>,
}

/// A write of `data` at `offset` (holes are zero-filled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteVector {
    /// Offset in the share.
    pub offset: u64,
    /// Bytes to write.
    pub data: Vec<u8>,
}

/// A read of `offset..offset+size` from every share (clipped to each share's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadVector {
    /// Offset in the share.
    pub offset: u64,
    /// Bytes to read.
    pub size: u64,
}

/// The tests and writes for one share of a read-test-write request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestWriteVectors {
    /// At most 30 tests.
    pub test: Vec<TestVector>,
    /// Writes, any number.
    pub write: Vec<WriteVector>,
    /// If set, the share's new length (only ever shrinks it; 0 deletes the share).
    pub new_length: Option<u64>,
}

/// `POST /storage/v1/mutable/:si/read-test-write` request:
/// `{"test-write-vectors": {0*256 share_number: {"test": [0*30 {offset, size, specimen}],
/// "write": [* {offset, data}], "new-length": uint / null}}, "read-vector": [0*30 {offset,
/// size}]}` with integer share-number keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadTestWriteRequest {
    /// Per-share tests and writes.
    pub test_write_vectors: BTreeMap<ShareNum, TestWriteVectors>,
    /// Reads, done before any write, on every existing share.
    pub read_vector: Vec<ReadVector>,
}

fn offset_size(v: Value, what: &'static str) -> Result<(Fields, u64, u64), ProtocolError> {
    let mut f = Fields::new(v, what, KeyType::Text)?;
    let offset = get_uint(f.require("offset")?, "offset")?;
    let size = get_uint(f.require("size")?, "size")?;
    Ok((f, offset, size))
}

impl Codec for TestWriteVectors {
    fn to_value(&self) -> Value {
        let test = self
            .test
            .iter()
            .map(|t| {
                text_map(vec![
                    ("offset", uint(t.offset)),
                    ("size", uint(t.size)),
                    ("specimen", Value::Bytes(t.specimen.clone())),
                ])
            })
            .collect();
        let write = self
            .write
            .iter()
            .map(|w| {
                text_map(vec![
                    ("offset", uint(w.offset)),
                    ("data", Value::Bytes(w.data.clone())),
                ])
            })
            .collect();
        text_map(vec![
            ("test", Value::Array(test)),
            ("write", Value::Array(write)),
            ("new-length", self.new_length.map_or(Value::Null, uint)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "test-write vectors", KeyType::Text)?;
        let test = get_array(f.require("test")?, "test", limits::MAX_TEST_VECTORS)?
            .into_iter()
            .map(|t| {
                let (mut t, offset, size) = offset_size(t, "test vector")?;
                let specimen = get_bytes(t.require("specimen")?, "specimen")?;
                t.close()?;
                Ok(TestVector {
                    offset,
                    size,
                    specimen,
                })
            })
            .collect::<Result<_, ProtocolError>>()?;
        let write = get_array(f.require("write")?, "write", usize::MAX)?
            .into_iter()
            .map(|w| {
                let mut w = Fields::new(w, "write vector", KeyType::Text)?;
                let offset = get_uint(w.require("offset")?, "offset")?;
                let data = get_bytes(w.require("data")?, "data")?;
                w.close()?;
                Ok(WriteVector { offset, data })
            })
            .collect::<Result<_, ProtocolError>>()?;
        let new_length = match f.require("new-length")? {
            Value::Null => None,
            v => Some(get_uint(v, "new-length")?),
        };
        f.close()?;
        Ok(TestWriteVectors {
            test,
            write,
            new_length,
        })
    }
}

impl Codec for ReadTestWriteRequest {
    fn to_value(&self) -> Value {
        let reads = self
            .read_vector
            .iter()
            .map(|r| text_map(vec![("offset", uint(r.offset)), ("size", uint(r.size))]))
            .collect();
        text_map(vec![
            (
                "test-write-vectors",
                share_map(&self.test_write_vectors, Codec::to_value),
            ),
            ("read-vector", Value::Array(reads)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "read-test-write request", KeyType::Text)?;
        let test_write_vectors =
            get_share_map(f.require("test-write-vectors")?, "test-write-vectors")?
                .into_iter()
                .map(|(n, v)| Ok((n, TestWriteVectors::from_value(v)?)))
                .collect::<Result<_, ProtocolError>>()?;
        let read_vector = get_array(
            f.require("read-vector")?,
            "read-vector",
            limits::MAX_READ_VECTORS,
        )?
        .into_iter()
        .map(|r| {
            let (r, offset, size) = offset_size(r, "read vector")?;
            r.close()?;
            Ok(ReadVector { offset, size })
        })
        .collect::<Result<_, ProtocolError>>()?;
        f.close()?;
        Ok(ReadTestWriteRequest {
            test_write_vectors,
            read_vector,
        })
    }
}

impl CborBody for ReadTestWriteRequest {
    /// `max_len` is stock's 2^48 (on 64-bit targets); a server should lower it with
    /// [`DecodeLimits::with_max_len`]. Items are bounded at 2^21 (a lafs policy: about
    /// 400,000 write vectors, several times what stock's MDMF publisher sends for a 1 GiB
    /// file).
    const LIMITS: DecodeLimits = DecodeLimits::new(
        if (usize::MAX as u64) < limits::MAX_READ_TEST_WRITE_BODY_STOCK {
            usize::MAX
        } else {
            limits::MAX_READ_TEST_WRITE_BODY_STOCK as usize
        },
        MAX_CBOR_DEPTH,
        1 << 21,
    );
}

/// `POST /storage/v1/mutable/:si/read-test-write` response: `{"success": bool, "data":
/// {0*256 share_number: [0* bstr]}}`: whether all tests passed (and the writes were done),
/// and for every share the server had, the read vector's results from before the writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadTestWriteResponse {
    /// Whether the tests passed and the writes happened.
    pub success: bool,
    /// Read results per existing share, one entry per read vector.
    pub data: BTreeMap<ShareNum, Vec<Vec<u8>>>,
}

impl Codec for ReadTestWriteResponse {
    fn to_value(&self) -> Value {
        text_map(vec![
            ("success", Value::Bool(self.success)),
            (
                "data",
                share_map(&self.data, |reads| {
                    Value::Array(reads.iter().map(|r| Value::Bytes(r.clone())).collect())
                }),
            ),
        ])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "read-test-write response", KeyType::Text)?;
        let success = get_bool(f.require("success")?, "success")?;
        let data = get_share_map(f.require("data")?, "data")?
            .into_iter()
            .map(|(n, reads)| {
                let reads = get_array(reads, "data", usize::MAX)?
                    .into_iter()
                    .map(|r| get_bytes(r, "data"))
                    .collect::<Result<_, _>>()?;
                Ok((n, reads))
            })
            .collect::<Result<_, ProtocolError>>()?;
        Ok(ReadTestWriteResponse { success, data })
    }
}

impl CborBody for ReadTestWriteResponse {
    /// Stock clients read at most 30 MiB of response.
    const LIMITS: DecodeLimits =
        DecodeLimits::new(limits::STOCK_CLIENT_MAX_RESPONSE, MAX_CBOR_DEPTH, 1 << 16);
}

// ---- lafs extensions ----

/// lafs extension, `GET /storage/lafs/v1/account/usage` response: `{"used-bytes": uint,
/// "share-count": uint, "quota-bytes": uint / null}`, the usage on this server of the account
/// the request acts for: the account of the ed25519 key of the client's TLS certificate, or
/// the anonymous account without one. `used-bytes` is the sum of the sizes of the shares the
/// account leases (each counted in full), `share-count` the number of those shares. Same
/// authorization as the GBS endpoints (the swissnum); stock servers answer 404.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountUsage {
    /// Bytes of share data held for the account (including allocated, unfinished uploads).
    pub used_bytes: u64,
    /// Number of shares held.
    pub share_count: u64,
    /// The account's quota in bytes, if it has one.
    pub quota_bytes: Option<u64>,
}

impl Codec for AccountUsage {
    fn to_value(&self) -> Value {
        text_map(vec![
            ("used-bytes", uint(self.used_bytes)),
            ("share-count", uint(self.share_count)),
            ("quota-bytes", self.quota_bytes.map_or(Value::Null, uint)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "account usage", KeyType::Text)?;
        Ok(AccountUsage {
            used_bytes: get_uint(f.require("used-bytes")?, "used-bytes")?,
            share_count: get_uint(f.require("share-count")?, "share-count")?,
            quota_bytes: match f.require("quota-bytes")? {
                Value::Null => None,
                v => Some(get_uint(v, "quota-bytes")?),
            },
        })
    }
}

impl CborBody for AccountUsage {
    const LIMITS: DecodeLimits = SMALL_RESPONSE;
}

/// lafs extension: the body of an error answer from an extension endpoint, `{"error":
/// tstr}` (`application/cbor`, with the status from [`ProtocolError::status`]). Stock's GBS
/// v1 endpoints send short text or nothing instead, and stock clients ignore error bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
}

impl From<&ProtocolError> for ErrorBody {
    fn from(e: &ProtocolError) -> Self {
        ErrorBody {
            error: e.to_string(),
        }
    }
}

impl Codec for ErrorBody {
    fn to_value(&self) -> Value {
        text_map(vec![("error", Value::Text(self.error.clone()))])
    }

    fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let mut f = Fields::new(value, "error body", KeyType::Text)?;
        Ok(ErrorBody {
            error: get_text(f.require("error")?, "error")?,
        })
    }
}

impl CborBody for ErrorBody {
    const LIMITS: DecodeLimits =
        DecodeLimits::new(limits::STOCK_CLIENT_MAX_ERROR_BODY, MAX_CBOR_DEPTH, 16);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::decode_limited;

    fn set(ns: &[u8]) -> BTreeSet<ShareNum> {
        ns.iter().copied().map(ShareNum::new).collect()
    }

    fn round_trip<T: CborBody + PartialEq + std::fmt::Debug>(v: &T) {
        let bytes = v.encode();
        assert_eq!(&T::decode(&bytes).unwrap(), v);
    }

    #[test]
    fn round_trips() {
        round_trip(&VersionResponse {
            maximum_immutable_share_size: 1,
            maximum_mutable_share_size: u64::MAX,
            available_space: 0,
            application_version: b"lafs/0.1.0".to_vec(),
        });
        round_trip(&AllocateRequest {
            share_numbers: set(&[0, 255]),
            allocated_size: 5,
        });
        round_trip(&AllocateResponse::default());
        round_trip(&WriteResponse {
            required: vec![RequiredRange { begin: 0, end: 1 }],
        });
        round_trip(&ShareList(set(&[1, 2, 3])));
        round_trip(&AdviseCorruptRequest {
            reason: "x".repeat(32757),
        });
        let mut rtw = ReadTestWriteRequest::default();
        rtw.test_write_vectors.insert(
            ShareNum::new(9),
            TestWriteVectors {
                test: vec![TestVector {
                    offset: 1,
                    size: 2,
                    specimen: vec![3],
                }],
                write: vec![WriteVector {
                    offset: 4,
                    data: vec![5; 100],
                }],
                new_length: Some(0),
            },
        );
        rtw.read_vector.push(ReadVector { offset: 7, size: 8 });
        round_trip(&rtw);
        let mut resp = ReadTestWriteResponse::default();
        resp.data.insert(ShareNum::new(0), vec![vec![], vec![1]]);
        round_trip(&resp);
        round_trip(&AccountUsage {
            used_bytes: 1,
            share_count: 2,
            quota_bytes: None,
        });
        round_trip(&AccountUsage {
            used_bytes: 1,
            share_count: 2,
            quota_bytes: Some(3),
        });
        round_trip(&ErrorBody::from(&ProtocolError::NotFound));
    }

    fn cbor(v: &Value) -> Vec<u8> {
        crate::cbor::encode_value(v)
    }

    fn invalid<T: CborBody + std::fmt::Debug>(v: &Value) {
        let e = T::decode(&cbor(v)).unwrap_err();
        assert!(matches!(e, ProtocolError::InvalidBody(_)), "{e:?}");
        assert_eq!(e.status().as_u16(), 400);
    }

    #[test]
    fn schema_violations() {
        let ok_alloc = |extra: Vec<(&str, Value)>| {
            let mut entries = vec![
                ("share-numbers", share_set(&set(&[1]))),
                ("allocated-size", uint(1)),
            ];
            entries.extend(extra);
            text_map(entries)
        };
        assert!(AllocateRequest::decode(&cbor(&ok_alloc(vec![]))).is_ok());
        invalid::<AllocateRequest>(&ok_alloc(vec![("x", uint(1))]));
        invalid::<AllocateRequest>(&text_map(vec![("allocated-size", uint(1))]));
        invalid::<AllocateRequest>(&text_map(vec![
            ("share-numbers", Value::Array(vec![uint(1)])),
            ("allocated-size", uint(1)),
        ]));
        invalid::<AllocateRequest>(&text_map(vec![
            ("share-numbers", share_set(&set(&[1]))),
            ("allocated-size", Value::Integer((-1).into())),
        ]));
        invalid::<AllocateRequest>(&bytes_map(vec![
            (b"share-numbers", share_set(&set(&[1]))),
            (b"allocated-size", uint(1)),
        ]));
        // Share number 300: stock allocates it; lafs refuses.
        invalid::<AllocateRequest>(&text_map(vec![
            (
                "share-numbers",
                Value::Tag(258, Box::new(Value::Array(vec![uint(300)]))),
            ),
            ("allocated-size", uint(1)),
        ]));

        invalid::<AdviseCorruptRequest>(&text_map(vec![("reason", Value::Text(String::new()))]));
        invalid::<AdviseCorruptRequest>(&text_map(vec![("reason", Value::Bytes(b"x".to_vec()))]));
        // Over 32765 bytes only fits a body larger than stock's 32768-byte limit.
        let long = cbor(&text_map(vec![("reason", Value::Text("x".repeat(32766)))]));
        let roomy = AdviseCorruptRequest::LIMITS.with_max_len(1 << 20);
        assert!(matches!(
            decode_limited::<AdviseCorruptRequest>(&long, &roomy),
            Err(ProtocolError::InvalidBody(_))
        ));
        assert!(matches!(
            AdviseCorruptRequest::decode(&long),
            Err(ProtocolError::PayloadTooLarge { .. })
        ));

        let twv = |test_count: usize, new_length: Value| {
            text_map(vec![
                (
                    "test-write-vectors",
                    Value::Map(vec![(
                        uint(3),
                        text_map(vec![
                            (
                                "test",
                                Value::Array(vec![
                                    text_map(vec![
                                        ("offset", uint(0)),
                                        ("size", uint(1)),
                                        ("specimen", Value::Bytes(vec![])),
                                    ]);
                                    test_count
                                ]),
                            ),
                            ("write", Value::Array(vec![])),
                            ("new-length", new_length),
                        ]),
                    )]),
                ),
                ("read-vector", Value::Array(vec![])),
            ])
        };
        assert!(ReadTestWriteRequest::decode(&cbor(&twv(30, Value::Null))).is_ok());
        invalid::<ReadTestWriteRequest>(&twv(31, Value::Null));
        invalid::<ReadTestWriteRequest>(&twv(1, Value::Text("1".into())));
        let text_key = text_map(vec![
            ("test-write-vectors", text_map(vec![("3", Value::Null)])),
            ("read-vector", Value::Array(vec![])),
        ]);
        invalid::<ReadTestWriteRequest>(&text_key);
        let reads = text_map(vec![
            ("test-write-vectors", Value::Map(vec![])),
            (
                "read-vector",
                Value::Array(vec![
                    text_map(vec![("offset", uint(0)), ("size", uint(1))]);
                    31
                ]),
            ),
        ]);
        invalid::<ReadTestWriteRequest>(&reads);

        // Responses ignore unknown keys.
        let resp = text_map(vec![
            ("already-have", share_set(&set(&[]))),
            ("allocated", share_set(&set(&[2]))),
            ("future", uint(1)),
        ]);
        assert_eq!(
            AllocateResponse::decode(&cbor(&resp)).unwrap().allocated,
            set(&[2])
        );
    }

    #[test]
    fn limits_apply_per_type() {
        // The spec says `.size (1..32765)` keeps the body within 32768 bytes; the encoding
        // adds 11 bytes, so 32757 is the longest reason stock's 32768-byte limit lets in.
        let big = AdviseCorruptRequest {
            reason: "x".repeat(32757),
        }
        .encode();
        assert_eq!(big.len(), limits::MAX_ADVISE_CORRUPT_BODY);
        let too_big = AdviseCorruptRequest {
            reason: "x".repeat(32758),
        }
        .encode();
        assert_eq!(
            AdviseCorruptRequest::decode(&too_big),
            Err(ProtocolError::PayloadTooLarge {
                len: 32769,
                limit: 32768
            })
        );
        let small = DecodeLimits::new(10, 8, 100);
        assert!(matches!(
            decode_limited::<AdviseCorruptRequest>(&big, &small),
            Err(ProtocolError::PayloadTooLarge { len: _, limit: 10 })
        ));
        let limits = ReadTestWriteRequest::LIMITS.with_max_len(100);
        assert_eq!(limits.max_len, 100);
        assert_eq!(limits.max_items, 1 << 21);
    }
}

//! Size and count limits of the protocol, with where each comes from.
//!
//! "Stock" means Tahoe-LAFS 1.20: `src/allmydata/storage/http_server.py` (the server's
//! `read_encoded(max_size=...)` calls and the CDDL schemas in `_SCHEMAS`) and
//! `src/allmydata/storage/http_client.py` (`limited_content`, the client's schemas).
//! "lafs" marks a policy of ours where stock has none.

/// Largest `POST /storage/v1/immutable/:si` (allocate) request body. Stock:
/// `allocate_buckets` reads with `max_size=8192`; a larger body is answered 413.
pub const MAX_ALLOCATE_BODY: usize = 8192;

/// Largest `POST .../:si/:sh/corrupt` request body. Stock: `max_size=32768` (413 beyond).
pub const MAX_ADVISE_CORRUPT_BODY: usize = 32768;

/// Largest `POST /storage/v1/mutable/:si/read-test-write` request body stock accepts:
/// `max_size=2**48`, i.e. no practical limit (stock clients send whole mutable shares in one
/// request). A lafs server holds the decoded body in memory and should pass a smaller limit
/// of its own to [`crate::decode_limited`].
pub const MAX_READ_TEST_WRITE_BODY_STOCK: u64 = 1 << 48;

/// Stock's default for any other CBOR request body (`read_encoded`'s `max_size` default,
/// 1 MiB). No stock endpoint uses the default today; lafs extension endpoints do.
pub const MAX_OTHER_BODY: usize = 1024 * 1024;

/// At most this many share numbers in an allocate request, in a share-number set and as keys
/// of a read-test-write request or response. Stock CDDL: `#6.258([0*256 uint])`,
/// `{0*256 share_number: ...}`.
pub const MAX_SHARES: usize = 256;

/// At most this many test vectors per share in a read-test-write request.
/// Stock CDDL: `"test": [0*30 {...}]`.
pub const MAX_TEST_VECTORS: usize = 30;

/// At most this many read vectors in a read-test-write request.
/// Stock CDDL: `"read-vector": [0*30 {...}]`.
pub const MAX_READ_VECTORS: usize = 30;

/// Bounds (inclusive, in UTF-8 bytes) of a corruption advisory's `reason`.
/// Stock CDDL: `reason: tstr .size (1..32765)`. The spec says this keeps the encoded body
/// within [`MAX_ADVISE_CORRUPT_BODY`]; it does not (the map, key and string header add 11
/// bytes), so in practice stock refuses reasons over 32757 bytes with 413.
pub const REASON_LEN: (usize, usize) = (1, 32765);

/// Largest response body a stock client reads (`limited_content`'s `max_length`, 30 MiB);
/// error bodies are read up to [`STOCK_CLIENT_MAX_ERROR_BODY`]. A lafs server must not send
/// larger CBOR responses to stock clients.
pub const STOCK_CLIENT_MAX_RESPONSE: usize = 30 * 1024 * 1024;

/// Largest error response body a stock client reads (`decode_cbor`, `max_length=10_000`).
pub const STOCK_CLIENT_MAX_ERROR_BODY: usize = 10_000;

/// Stock clients time out a request after 60 s of silence (`limited_content` and
/// `StorageClient.request`'s default `timeout`).
pub const STOCK_CLIENT_TIMEOUT_SECS: u64 = 60;

/// Length of a lease renew or cancel secret. Stock: `_extract_secrets` refuses other lengths
/// with 400 ("Lease secrets must be 32 bytes long").
pub const LEASE_SECRET_LEN: usize = 32;

/// Length of a write enabler. Stock's HTTP layer accepts any non-empty length, but its mutable
/// container stores the write enabler in a fixed 32-byte field, zero-padding a shorter one, so
/// a shorter write enabler never matches again (seen on a running stock node). Stock clients
/// always send 32 bytes (a tagged SHA-256d hash); lafs requires exactly that.
pub const WRITE_ENABLER_LEN: usize = 32;

/// Length of the upload secret stock clients send (`urandom(20)` in `storage_client.py`).
/// Stock servers accept any non-empty length.
pub const STOCK_UPLOAD_SECRET_LEN: usize = 20;

/// Longest upload secret lafs accepts (lafs policy; stock has no limit beyond the HTTP
/// header size). The server keeps one per share being uploaded.
pub const MAX_UPLOAD_SECRET_LEN: usize = 1024;

/// `maximum-mutable-share-size` as stock announces it (`MAX_MUTABLE_SHARE_SIZE` in
/// `storage/mutable.py`: 69105 TB).
pub const STOCK_MAX_MUTABLE_SHARE_SIZE: u64 = 69_105 * 1000 * 1000 * 1000 * 1000;

/// Deepest CBOR nesting any GBS body needs: a read-test-write request is map > map > map >
/// array > map (5 levels); sets add a tag level. lafs policy.
pub const MAX_CBOR_DEPTH: usize = 8;

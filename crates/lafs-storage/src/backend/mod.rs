//! Where share bytes live: an async trait at share level.
//!
//! A backend stores *share data* (the bytes GBS serves) plus, for mutable shares, the write
//! enabler. It knows nothing of leases, accounts or share states: those live in the lease
//! database and the server. Implementations: [`disk`] (Tahoe's on-disk layout and container
//! formats), [`cloud`] (S3-compatible object stores, chunked, in the layout of Tahoe's cloud
//! backend branch), [`memory`] (tests), [`discard`] (benchmarks: accepts and forgets).
//!
//! Contract, for every implementation (checked by the conformance suite):
//! - an immutable share becomes visible to `list_shares`/`read` only after
//!   [`ImmutableUpload::commit`] returned, and is durable when it returns;
//! - `read` clips at the end of the share and returns an empty buffer at or past it;
//! - `write_mutable` is not atomic across shares; the server serializes modifications of one
//!   share and evaluates test vectors before writing;
//! - errors carry whether a retry may help ([`BackendError::is_transient`]).

pub mod cloud;
pub mod discard;
pub mod disk;
pub mod memory;

use crate::types::{ShareKind, ShareNum, StorageIndex};
use async_trait::async_trait;
use bytes::Bytes;

/// A complete share as a backend lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredShare {
    /// Share number.
    pub shnum: ShareNum,
    /// Immutable or mutable.
    pub kind: ShareKind,
    /// Length of the share data in bytes.
    pub size: u64,
    /// Set when the container header is unreadable: the share is listed (it exists) but
    /// reads fail with this reason.
    pub corrupt: Option<String>,
}

pub use crate::spool::WriteData;

/// One write of a mutable test-and-write.
#[derive(Clone, Debug)]
pub struct WriteVector {
    /// Offset in the share data.
    pub offset: u64,
    /// Bytes to write (holes before them read as zeros): possibly a region of a spool file,
    /// which implementations read piece by piece, so a large write never sits in memory.
    pub data: WriteData,
}

/// A mutable write: create-or-modify one share.
#[derive(Clone, Debug)]
pub struct MutableWrite {
    /// Writes, applied in order.
    pub writes: Vec<WriteVector>,
    /// Truncate to this length after the writes (only shrinks; 0 deletes the share).
    pub new_length: Option<u64>,
    /// Write enabler to record if the share is created by this write.
    pub write_enabler: [u8; 32],
    /// Server node id (20 bytes) recorded in Tahoe's mutable container.
    pub nodeid: [u8; 20],
}

/// Backend failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No such share.
    #[error("no such share")]
    NotFound,
    /// A share exists where a new one was to be created.
    #[error("share already exists")]
    AlreadyExists,
    /// The stored bytes are not a valid container.
    #[error("corrupt share container: {0}")]
    Corrupt(String),
    /// Out of space.
    #[error("no space left for the share")]
    NoSpace,
    /// The request does not fit the share (e.g. write past the allocated size).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// I/O or service failure; `transient` says whether a retry may help.
    #[error("storage backend failure: {message}")]
    Io {
        /// What failed (no secrets, no share bytes).
        message: String,
        /// Retrying may succeed.
        transient: bool,
    },
}

impl BackendError {
    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Io {
                transient: true,
                ..
            }
        )
    }
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::NotFound => Self::NotFound,
            K::StorageFull | K::QuotaExceeded => Self::NoSpace,
            K::Interrupted | K::TimedOut | K::WouldBlock => Self::Io {
                message: e.to_string(),
                transient: true,
            },
            _ => Self::Io {
                message: e.to_string(),
                transient: false,
            },
        }
    }
}

/// Result alias.
pub type BackendResult<T> = Result<T, BackendError>;

/// End offset of a staged write of `len` bytes at `offset`, refused beyond `allocated`.
pub(crate) fn staged_write_end(offset: u64, len: usize, allocated: u64) -> BackendResult<u64> {
    offset
        .checked_add(len as u64)
        .filter(|end| *end <= allocated)
        .ok_or_else(|| {
            BackendError::Invalid(format!(
                "write of {len} bytes at offset {offset} exceeds the allocated size {allocated}"
            ))
        })
}

/// A staged immutable share upload. Dropping it without commit aborts it.
#[async_trait]
pub trait ImmutableUpload: Send + std::fmt::Debug {
    /// Writes `data` at `offset` (within the allocated size).
    async fn write(&mut self, offset: u64, data: Bytes) -> BackendResult<()>;
    /// Reads back staged bytes (the server compares overlapping writes with them).
    async fn read(&mut self, offset: u64, len: u64) -> BackendResult<Bytes> {
        let _ = (offset, len);
        Err(BackendError::Invalid(
            "this backend cannot read staged uploads".into(),
        ))
    }
    /// Makes the share durable and visible; returns its size.
    async fn commit(self: Box<Self>) -> BackendResult<u64>;
    /// Discards the staged data.
    async fn abort(self: Box<Self>) -> BackendResult<()>;
}

/// Share storage.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Short name for logs and status pages (`disk`, `memory`, ...).
    fn name(&self) -> &'static str;

    /// Complete shares of a storage index (in-progress uploads excluded), by share number.
    async fn list_shares(&self, si: &StorageIndex) -> BackendResult<Vec<StoredShare>>;

    /// Up to `len` bytes at `offset` of a complete share's data, clipped at its end.
    async fn read(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> BackendResult<Bytes>;

    /// Starts staging an immutable share of at most `allocated_size` bytes. Fails with
    /// [`BackendError::AlreadyExists`] if a complete share is there.
    async fn start_immutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        allocated_size: u64,
    ) -> BackendResult<Box<dyn ImmutableUpload>>;

    /// The write enabler recorded in a mutable share, if the share exists.
    async fn mutable_write_enabler(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> BackendResult<Option<[u8; 32]>>;

    /// Creates or modifies a mutable share, durably; returns its new size (0 = deleted).
    async fn write_mutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        write: MutableWrite,
    ) -> BackendResult<u64>;

    /// Deletes a complete share (immutable or mutable). Missing is not an error.
    async fn delete(&self, si: &StorageIndex, shnum: ShareNum) -> BackendResult<()>;

    /// Storage indexes in ascending order after `after`, at most `limit` (for crawling).
    async fn list_storage_indexes(
        &self,
        after: Option<StorageIndex>,
        limit: usize,
    ) -> BackendResult<Vec<StorageIndex>>;

    /// Free space the backend can still use, if it knows.
    async fn available_space(&self) -> BackendResult<Option<u64>>;

    /// Removes staged uploads left by a crash (called once at start).
    async fn clean_incoming(&self) -> BackendResult<()>;
}

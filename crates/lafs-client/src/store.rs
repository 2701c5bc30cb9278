//! What upload and download need from one storage server, as a trait.
//!
//! The GBS client implements it over HTTPS; tests may wrap it to inject faults. The engine
//! never sees URLs, TLS or CBOR: only storage indexes, share numbers, byte ranges and errors
//! that say whether trying again (or elsewhere) makes sense.

use async_trait::async_trait;
use bytes::Bytes;
use lafs_core::hashutil::LeaseSecrets;
use lafs_protocol::{ShareNum, StorageIndex};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Why a request to one server failed, in terms the engine acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Could not connect, or the connection broke.
    Unreachable,
    /// The server did not answer in time.
    Timeout,
    /// The server refused (full, read-only, too large, quota...).
    Refused,
    /// The share or storage index is not there.
    NotFound,
    /// Anything else the server said that the engine cannot fix (bad status, bad body).
    Protocol,
}

/// A failed request to one server. `message` names the server and never holds secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// What went wrong.
    pub kind: StoreErrorKind,
    /// A one-line explanation.
    pub message: String,
}

impl StoreError {
    /// A new error.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The message with what kind of failure it was, for errors that list servers.
    pub fn describe(&self) -> String {
        match self.kind {
            StoreErrorKind::Timeout => format!("timed out ({})", self.message),
            StoreErrorKind::Unreachable => format!("unreachable ({})", self.message),
            StoreErrorKind::Refused => format!("refused ({})", self.message),
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// Result of a store request.
pub type StoreResult<T> = Result<T, StoreError>;

/// Answer to an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocated {
    /// Shares the server already holds complete.
    pub already_have: BTreeSet<ShareNum>,
    /// Shares it reserved space for, to be written now.
    pub allocated: BTreeSet<ShareNum>,
}

/// One storage server as the upload and download engines use it.
#[async_trait]
pub trait ShareStore: Send + Sync + fmt::Debug {
    /// A short human name for messages (nickname and short id).
    fn name(&self) -> String;
    /// The 20 bytes that lease secrets are bound to (the tub id of the server's FURL).
    fn lease_seed(&self) -> [u8; 20];
    /// The server's seed on the permuted ring.
    fn permutation_seed(&self) -> Vec<u8>;
    /// The largest immutable share the server accepts (from its version answer).
    async fn max_immutable_share_size(&self) -> StoreResult<u64>;
    /// Reserves space for `shares` of `allocated_size` bytes each.
    async fn allocate(
        &self,
        si: StorageIndex,
        lease: &LeaseSecrets,
        upload_secret: &[u8],
        shares: &BTreeSet<ShareNum>,
        allocated_size: u64,
    ) -> StoreResult<Allocated>;
    /// Writes `data` at `offset` of an allocated share; `true` once the share is complete
    /// (and durable on the server).
    async fn write(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &[u8],
        offset: u64,
        data: Bytes,
    ) -> StoreResult<bool>;
    /// Gives up an allocated, incomplete share.
    async fn abort(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload_secret: &[u8],
    ) -> StoreResult<()>;
    /// The complete immutable shares the server holds for `si`.
    async fn list_shares(&self, si: StorageIndex) -> StoreResult<BTreeSet<ShareNum>>;
    /// Reads `len` bytes at `offset` of a share. Fewer bytes only past the share's end.
    async fn read(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> StoreResult<Bytes>;
    /// Tells the server a share is corrupt.
    async fn advise_corrupt(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> StoreResult<()>;
}

/// A shared handle on a store.
pub type Store = Arc<dyn ShareStore>;

mod grid_impl {
    //! The real thing: a grid server reached over GBS.
    use super::*;
    use crate::gbs::{AllocateSecrets, ErrorKind, GbsError, ShareKind, WriteProgress};
    use crate::grid::GridServer;
    use lafs_protocol::{LeaseSecret, UploadSecret};

    fn store_error(e: GbsError) -> StoreError {
        let kind = match e.kind() {
            ErrorKind::Connect(_) | ErrorKind::PinMismatch | ErrorKind::Tls(_) => {
                StoreErrorKind::Unreachable
            }
            ErrorKind::Timeout { .. } => StoreErrorKind::Timeout,
            ErrorKind::Http { status: 404, .. } => StoreErrorKind::NotFound,
            ErrorKind::Http { status, .. } if (400..500).contains(status) => {
                StoreErrorKind::Refused
            }
            _ => StoreErrorKind::Protocol,
        };
        StoreError::new(kind, e.to_string())
    }

    fn to_upload_secret(b: &[u8]) -> StoreResult<UploadSecret> {
        UploadSecret::new(b.to_vec())
            .map_err(|e| StoreError::new(StoreErrorKind::Protocol, e.to_string()))
    }

    #[async_trait]
    impl ShareStore for GridServer {
        fn name(&self) -> String {
            self.entry().display_name()
        }
        fn lease_seed(&self) -> [u8; 20] {
            *GridServer::lease_seed(self).as_bytes()
        }
        fn permutation_seed(&self) -> Vec<u8> {
            GridServer::permutation_seed(self).to_vec()
        }
        async fn max_immutable_share_size(&self) -> StoreResult<u64> {
            let v = self.client().version().await.map_err(store_error)?;
            Ok(v.maximum_immutable_share_size)
        }
        async fn allocate(
            &self,
            si: StorageIndex,
            lease: &LeaseSecrets,
            upload_secret: &[u8],
            shares: &BTreeSet<ShareNum>,
            allocated_size: u64,
        ) -> StoreResult<Allocated> {
            let secrets = AllocateSecrets {
                lease_renew: LeaseSecret::from_bytes(lease.renew),
                lease_cancel: LeaseSecret::from_bytes(lease.cancel),
                upload: to_upload_secret(upload_secret)?,
            };
            let a = self
                .client()
                .allocate(si, &secrets, shares, allocated_size)
                .await
                .map_err(store_error)?;
            Ok(Allocated {
                already_have: a.already_have,
                allocated: a.allocated,
            })
        }
        async fn write(
            &self,
            si: StorageIndex,
            shnum: ShareNum,
            secret: &[u8],
            offset: u64,
            data: Bytes,
        ) -> StoreResult<bool> {
            let p = self
                .client()
                .write_share_chunk(si, shnum, &to_upload_secret(secret)?, offset, data)
                .await
                .map_err(store_error)?;
            Ok(matches!(p, WriteProgress::Complete))
        }
        async fn abort(&self, si: StorageIndex, shnum: ShareNum, secret: &[u8]) -> StoreResult<()> {
            self.client()
                .abort_upload(si, shnum, &to_upload_secret(secret)?)
                .await
                .map_err(store_error)
        }
        async fn list_shares(&self, si: StorageIndex) -> StoreResult<BTreeSet<ShareNum>> {
            self.client()
                .list_shares(ShareKind::Immutable, si)
                .await
                .map_err(store_error)
        }
        async fn read(
            &self,
            si: StorageIndex,
            shnum: ShareNum,
            offset: u64,
            len: u64,
        ) -> StoreResult<Bytes> {
            self.client()
                .read_share(ShareKind::Immutable, si, shnum, offset, len)
                .await
                .map_err(store_error)
        }
        async fn advise_corrupt(
            &self,
            si: StorageIndex,
            shnum: ShareNum,
            reason: &str,
        ) -> StoreResult<()> {
            self.client()
                .advise_corrupt_share(ShareKind::Immutable, si, shnum, reason)
                .await
                .map_err(store_error)
        }
    }
}

//! A backend that throws immutable share data away, for benchmarks of the network path
//! (Tahoe's `[storage]debug_discard = True`).
//!
//! # Goals
//! - Immutable uploads behave as usual up to the bytes: bounds are checked, a share becomes
//!   visible at commit, `AlreadyExists` and in-progress conflicts are reported, and the
//!   committed *size* is remembered so `list_shares` (and the upload's "already have" logic
//!   above it) works. Reads of an immutable share return zeros, clipped at that size.
//! - Mutable shares are kept, in memory (stock's discard mode also only discards immutable
//!   data): a mutable client must read back what it wrote, or it cannot work at all.
//!
//! # Non-goals
//! - Keeping anything across restarts, or reporting free space (`available_space` is
//!   `None`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use super::memory::MemoryBackend;
use super::{Backend, BackendError, BackendResult, ImmutableUpload, MutableWrite, StoredShare};
use crate::types::{ShareKind, ShareNum, StorageIndex};

/// A buffer of zeros served without allocating for reads up to its size.
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

#[derive(Debug, Default)]
struct Sizes {
    /// Committed immutable share sizes.
    immutable: BTreeMap<StorageIndex, BTreeMap<ShareNum, u64>>,
    staged: HashSet<(StorageIndex, ShareNum)>,
}

/// Accepts immutable shares and forgets their bytes; keeps mutable shares in memory.
#[derive(Clone, Debug, Default)]
pub struct DiscardBackend {
    sizes: Arc<Mutex<Sizes>>,
    mutable: MemoryBackend,
}

impl DiscardBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Sizes> {
        lock(&self.sizes)
    }

    fn immutable_size(&self, si: &StorageIndex, shnum: ShareNum) -> Option<u64> {
        self.lock()
            .immutable
            .get(si)
            .and_then(|m| m.get(&shnum))
            .copied()
    }
}

fn lock(m: &Mutex<Sizes>) -> MutexGuard<'_, Sizes> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn zeros(n: u64) -> Bytes {
    match usize::try_from(n) {
        Ok(n) if n <= ZEROS.len() => Bytes::from_static(&ZEROS[..n]),
        Ok(n) => Bytes::from(vec![0u8; n]),
        Err(_) => Bytes::new(),
    }
}

#[async_trait]
impl Backend for DiscardBackend {
    fn name(&self) -> &'static str {
        "discard"
    }

    async fn list_shares(&self, si: &StorageIndex) -> BackendResult<Vec<StoredShare>> {
        let mut out = self.mutable.list_shares(si).await?;
        if let Some(m) = self.lock().immutable.get(si) {
            out.extend(m.iter().map(|(shnum, size)| StoredShare {
                shnum: *shnum,
                kind: ShareKind::Immutable,
                size: *size,
                corrupt: None,
            }));
        }
        out.sort_by_key(|s| s.shnum);
        Ok(out)
    }

    async fn read(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> BackendResult<Bytes> {
        match self.immutable_size(si, shnum) {
            Some(size) if offset >= size => Ok(Bytes::new()),
            Some(size) => Ok(zeros(len.min(size - offset))),
            None => self.mutable.read(si, shnum, offset, len).await,
        }
    }

    async fn start_immutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        allocated_size: u64,
    ) -> BackendResult<Box<dyn ImmutableUpload>> {
        let mutable_exists = self
            .mutable
            .list_shares(si)
            .await?
            .iter()
            .any(|s| s.shnum == shnum);
        let mut sizes = self.lock();
        if mutable_exists
            || sizes
                .immutable
                .get(si)
                .is_some_and(|m| m.contains_key(&shnum))
        {
            return Err(BackendError::AlreadyExists);
        }
        if !sizes.staged.insert((*si, shnum)) {
            return Err(BackendError::Io {
                message: format!("an upload of share {si}/{shnum} is already in progress"),
                transient: true,
            });
        }
        Ok(Box::new(DiscardUpload {
            backend: self.clone(),
            si: *si,
            shnum,
            allocated: allocated_size,
            end: 0,
            finished: false,
        }))
    }

    async fn mutable_write_enabler(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> BackendResult<Option<[u8; 32]>> {
        if self.immutable_size(si, shnum).is_some() {
            return Err(BackendError::Invalid(
                "the share is immutable, not mutable".into(),
            ));
        }
        self.mutable.mutable_write_enabler(si, shnum).await
    }

    async fn write_mutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        write: MutableWrite,
    ) -> BackendResult<u64> {
        if self.immutable_size(si, shnum).is_some() {
            return Err(BackendError::Invalid(
                "the share is immutable, not mutable".into(),
            ));
        }
        self.mutable.write_mutable(si, shnum, write).await
    }

    async fn delete(&self, si: &StorageIndex, shnum: ShareNum) -> BackendResult<()> {
        {
            let mut sizes = self.lock();
            if let Some(m) = sizes.immutable.get_mut(si) {
                m.remove(&shnum);
                if m.is_empty() {
                    sizes.immutable.remove(si);
                }
            }
        }
        self.mutable.delete(si, shnum).await
    }

    async fn list_storage_indexes(
        &self,
        after: Option<StorageIndex>,
        limit: usize,
    ) -> BackendResult<Vec<StorageIndex>> {
        let mut all: BTreeSet<StorageIndex> = self
            .mutable
            .list_storage_indexes(after, limit)
            .await?
            .into_iter()
            .collect();
        {
            use std::ops::Bound;
            let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
            let sizes = self.lock();
            all.extend(
                sizes
                    .immutable
                    .range((lower, Bound::Unbounded))
                    .map(|(si, _)| *si)
                    .take(limit),
            );
        }
        Ok(all.into_iter().take(limit).collect())
    }

    async fn available_space(&self) -> BackendResult<Option<u64>> {
        Ok(None)
    }

    async fn clean_incoming(&self) -> BackendResult<()> {
        self.lock().staged.clear();
        self.mutable.clean_incoming().await
    }
}

/// A staged upload whose bytes go nowhere.
#[derive(Debug)]
struct DiscardUpload {
    backend: DiscardBackend,
    si: StorageIndex,
    shnum: ShareNum,
    allocated: u64,
    end: u64,
    finished: bool,
}

impl DiscardUpload {
    fn unstage(&mut self) {
        self.backend.lock().staged.remove(&(self.si, self.shnum));
        self.finished = true;
    }
}

#[async_trait]
impl ImmutableUpload for DiscardUpload {
    /// Discarded bytes read back as zeros (so only all-zero rewrites "match").
    async fn read(&mut self, offset: u64, len: u64) -> BackendResult<Bytes> {
        let end = offset.saturating_add(len).min(self.end);
        let n = usize::try_from(end.saturating_sub(offset)).unwrap_or(0);
        Ok(Bytes::from(vec![0u8; n]))
    }

    async fn write(&mut self, offset: u64, data: Bytes) -> BackendResult<()> {
        let end = super::staged_write_end(offset, data.len(), self.allocated)?;
        if !data.is_empty() {
            self.end = self.end.max(end);
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> BackendResult<u64> {
        let mutable_exists = self
            .backend
            .mutable
            .list_shares(&self.si)
            .await?
            .iter()
            .any(|s| s.shnum == self.shnum);
        self.unstage();
        let mut sizes = self.backend.lock();
        let shares = sizes.immutable.entry(self.si).or_default();
        if mutable_exists || shares.contains_key(&self.shnum) {
            if shares.is_empty() {
                sizes.immutable.remove(&self.si);
            }
            return Err(BackendError::AlreadyExists);
        }
        shares.insert(self.shnum, self.end);
        Ok(self.end)
    }

    async fn abort(mut self: Box<Self>) -> BackendResult<()> {
        self.unstage();
        Ok(())
    }
}

impl Drop for DiscardUpload {
    fn drop(&mut self) {
        if !self.finished {
            self.unstage();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::WriteVector;

    fn si(b: u8) -> StorageIndex {
        StorageIndex([b; 16])
    }

    #[tokio::test]
    async fn remembers_sizes_and_reads_zeros() {
        let b = DiscardBackend::new();
        let mut up = b.start_immutable(&si(1), 3, 1_000_000).await.unwrap();
        assert!(b.list_shares(&si(1)).await.unwrap().is_empty());
        up.write(0, Bytes::from(vec![7u8; 600_000])).await.unwrap();
        up.write(600_000, Bytes::from(vec![7u8; 400_000]))
            .await
            .unwrap();
        assert!(matches!(
            up.write(999_999, Bytes::from_static(b"xy")).await,
            Err(BackendError::Invalid(_))
        ));
        let staged = up.read(999_990, 100).await.unwrap();
        assert_eq!(&staged[..], &[0u8; 10]);
        assert_eq!(up.commit().await.unwrap(), 1_000_000);
        let listed = b.list_shares(&si(1)).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].shnum, listed[0].size), (3, 1_000_000));
        let r = b.read(&si(1), 3, 999_000, 5_000).await.unwrap();
        assert_eq!(r.len(), 1_000);
        assert!(r.iter().all(|x| *x == 0));
        assert_eq!(b.read(&si(1), 3, 0, 400_000).await.unwrap().len(), 400_000);
        assert!(b.read(&si(1), 3, 1_000_000, 5).await.unwrap().is_empty());
        assert!(matches!(
            b.start_immutable(&si(1), 3, 10).await,
            Err(BackendError::AlreadyExists)
        ));
        assert_eq!(b.list_storage_indexes(None, 10).await.unwrap(), vec![si(1)]);
        b.delete(&si(1), 3).await.unwrap();
        assert!(b.list_shares(&si(1)).await.unwrap().is_empty());
        assert!(b.list_storage_indexes(None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn abort_drop_and_in_progress() {
        let b = DiscardBackend::new();
        let up = b.start_immutable(&si(2), 0, 10).await.unwrap();
        let second = b.start_immutable(&si(2), 0, 10).await.unwrap_err();
        assert!(second.is_transient());
        drop(up);
        let up = b.start_immutable(&si(2), 0, 10).await.unwrap();
        up.abort().await.unwrap();
        assert!(b.list_shares(&si(2)).await.unwrap().is_empty());
        assert_eq!(b.available_space().await.unwrap(), None);
    }

    #[tokio::test]
    async fn keeps_mutable_shares() {
        let b = DiscardBackend::new();
        let w = MutableWrite {
            writes: vec![WriteVector {
                offset: 0,
                data: Bytes::from_static(b"mutable").into(),
            }],
            new_length: None,
            write_enabler: [5; 32],
            nodeid: [6; 20],
        };
        assert_eq!(b.write_mutable(&si(3), 1, w).await.unwrap(), 7);
        assert_eq!(&b.read(&si(3), 1, 0, 100).await.unwrap()[..], b"mutable");
        assert_eq!(
            b.mutable_write_enabler(&si(3), 1).await.unwrap(),
            Some([5; 32])
        );
        assert!(matches!(
            b.start_immutable(&si(3), 1, 10).await,
            Err(BackendError::AlreadyExists)
        ));
        let mut up = b.start_immutable(&si(0), 2, 10).await.unwrap();
        up.write(0, Bytes::from_static(b"abc")).await.unwrap();
        up.commit().await.unwrap();
        assert_eq!(
            b.list_storage_indexes(None, 10).await.unwrap(),
            vec![si(0), si(3)]
        );
        assert_eq!(
            b.list_storage_indexes(Some(si(0)), 10).await.unwrap(),
            vec![si(3)]
        );
        assert_eq!(b.list_storage_indexes(None, 1).await.unwrap(), vec![si(0)]);
    }
}

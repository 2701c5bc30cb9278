//! Shares in memory, for fast tests of everything above the backend.
//!
//! # Goals
//! - The same observable behaviour as [`disk`](super::disk) (the conformance suite in
//!   `tests/backend_conformance.rs` runs against both): staged uploads invisible until
//!   commit, clipped reads, zero-filled holes, truncation and deletion through `new_length`,
//!   the same errors for the same mistakes.
//! - A simulated full disk: [`MemoryBackend::with_capacity_limit`] makes writes fail with
//!   [`BackendError::NoSpace`] once share data (committed and staged) would exceed the limit,
//!   and [`Backend::available_space`] report what is left.
//! - Corruption on demand: [`MemoryBackend::mark_corrupt`] makes a share list as corrupt and
//!   fail reads, as an unreadable container on disk does.
//!
//! # Non-goals
//! - Persistence, container formats, realistic performance. Share data is held in one
//!   `Vec<u8>` per share.
//!
//! Cloning a `MemoryBackend` shares its contents. Locks are never held across an `.await`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, BackendError, BackendResult, ImmutableUpload, MutableWrite, StoredShare};
use crate::types::{ShareKind, ShareNum, StorageIndex};

#[derive(Debug)]
struct MemShare {
    kind: ShareKind,
    data: Vec<u8>,
    write_enabler: Option<[u8; 32]>,
    corrupt: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    shares: BTreeMap<StorageIndex, BTreeMap<ShareNum, MemShare>>,
    staged: HashSet<(StorageIndex, ShareNum)>,
    /// Bytes of share data held (committed and staged).
    used: u64,
    limit: Option<u64>,
}

impl Inner {
    /// Accounts for `more` bytes, or fails with `NoSpace` past the limit.
    fn reserve(&mut self, more: u64) -> BackendResult<()> {
        let used = self.used.checked_add(more).ok_or(BackendError::NoSpace)?;
        if self.limit.is_some_and(|l| used > l) {
            return Err(BackendError::NoSpace);
        }
        self.used = used;
        Ok(())
    }

    fn release(&mut self, less: u64) {
        self.used = self.used.saturating_sub(less);
    }

    fn share(&self, si: &StorageIndex, shnum: ShareNum) -> Option<&MemShare> {
        self.shares.get(si).and_then(|m| m.get(&shnum))
    }

    fn remove(&mut self, si: &StorageIndex, shnum: ShareNum) {
        if let Some(m) = self.shares.get_mut(si) {
            if let Some(s) = m.remove(&shnum) {
                self.used = self.used.saturating_sub(s.data.len() as u64);
            }
            if m.is_empty() {
                self.shares.remove(si);
            }
        }
    }
}

/// Grows `v` to `len` zero-filled bytes without aborting on allocation failure.
fn grow(v: &mut Vec<u8>, len: u64) -> BackendResult<()> {
    let len = usize::try_from(len).map_err(|_| BackendError::NoSpace)?;
    if len > v.len() {
        v.try_reserve(len - v.len())
            .map_err(|_| BackendError::NoSpace)?;
        v.resize(len, 0);
    }
    Ok(())
}

fn to_len(n: usize) -> u64 {
    n as u64
}

/// In-memory share storage.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryBackend {
    /// An empty backend without a space limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty backend holding at most `bytes` bytes of share data.
    pub fn with_capacity_limit(bytes: u64) -> Self {
        let b = Self::default();
        b.lock().limit = Some(bytes);
        b
    }

    /// Marks a stored share corrupt (for tests): it stays listed, with this reason, and reads
    /// fail with [`BackendError::Corrupt`]. Returns whether the share exists.
    pub fn mark_corrupt(&self, si: &StorageIndex, shnum: ShareNum, reason: &str) -> bool {
        let mut inner = self.lock();
        match inner.shares.get_mut(si).and_then(|m| m.get_mut(&shnum)) {
            Some(s) => {
                s.corrupt = Some(reason.to_string());
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way that
        // matters for tests; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

fn readable(s: &MemShare) -> BackendResult<&MemShare> {
    match &s.corrupt {
        Some(r) => Err(BackendError::Corrupt(r.clone())),
        None => Ok(s),
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn list_shares(&self, si: &StorageIndex) -> BackendResult<Vec<StoredShare>> {
        let inner = self.lock();
        Ok(inner
            .shares
            .get(si)
            .map(|m| {
                m.iter()
                    .map(|(shnum, s)| StoredShare {
                        shnum: *shnum,
                        kind: s.kind,
                        size: if s.corrupt.is_some() {
                            0
                        } else {
                            to_len(s.data.len())
                        },
                        corrupt: s.corrupt.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn read(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> BackendResult<Bytes> {
        let inner = self.lock();
        let s = readable(inner.share(si, shnum).ok_or(BackendError::NotFound)?)?;
        let size = to_len(s.data.len());
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = offset.saturating_add(len).min(size);
        // Both bounds are at most `data.len()`, so they fit a usize.
        let (start, end) = (offset as usize, end as usize);
        Ok(Bytes::copy_from_slice(&s.data[start..end]))
    }

    async fn start_immutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        allocated_size: u64,
    ) -> BackendResult<Box<dyn ImmutableUpload>> {
        let mut inner = self.lock();
        if inner.share(si, shnum).is_some() {
            return Err(BackendError::AlreadyExists);
        }
        if !inner.staged.insert((*si, shnum)) {
            return Err(BackendError::Io {
                message: format!("an upload of share {si}/{shnum} is already in progress"),
                transient: true,
            });
        }
        Ok(Box::new(MemoryUpload {
            inner: self.inner.clone(),
            si: *si,
            shnum,
            allocated: allocated_size,
            data: Vec::new(),
            finished: false,
        }))
    }

    async fn mutable_write_enabler(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> BackendResult<Option<[u8; 32]>> {
        let inner = self.lock();
        let Some(s) = inner.share(si, shnum) else {
            return Ok(None);
        };
        let s = readable(s)?;
        match (s.kind, s.write_enabler) {
            (ShareKind::Mutable, Some(we)) => Ok(Some(we)),
            _ => Err(BackendError::Invalid(
                "the share is immutable, not mutable".into(),
            )),
        }
    }

    async fn write_mutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        write: MutableWrite,
    ) -> BackendResult<u64> {
        // The write data, in memory (this backend holds shares there anyway).
        let mut datas = Vec::with_capacity(write.writes.len());
        for v in &write.writes {
            datas.push(v.data.read(0, v.data.len()).await?);
        }
        let mut inner = self.lock();
        let existing = match inner.share(si, shnum) {
            Some(s) => {
                let s = readable(s)?;
                if s.kind != ShareKind::Mutable {
                    return Err(BackendError::Invalid(
                        "the share is immutable, not mutable".into(),
                    ));
                }
                Some(to_len(s.data.len()))
            }
            None => None,
        };
        if write.new_length == Some(0) {
            inner.remove(si, shnum);
            return Ok(0);
        }
        let old_len = existing.unwrap_or(0);
        let mut max_end = old_len;
        for v in &write.writes {
            let end = v.offset.checked_add(v.data.len()).ok_or_else(|| {
                BackendError::Invalid(format!("mutable write at offset {} is too large", v.offset))
            })?;
            max_end = max_end.max(end);
        }
        let final_len = match write.new_length {
            Some(n) if n < max_end => n,
            _ => max_end,
        };
        if final_len > old_len {
            inner.reserve(final_len - old_len)?;
        } else {
            inner.release(old_len - final_len);
        }
        let mut fresh = MemShare {
            kind: ShareKind::Mutable,
            data: Vec::new(),
            write_enabler: Some(write.write_enabler),
            corrupt: None,
        };
        let share = match inner.shares.get_mut(si).and_then(|m| m.get_mut(&shnum)) {
            Some(s) => s,
            None => &mut fresh,
        };
        // Grow first (the only fallible step), so a failure changes nothing.
        if let Err(e) = grow(&mut share.data, max_end) {
            if final_len > old_len {
                inner.release(final_len - old_len);
            } else {
                inner.used += old_len - final_len;
            }
            return Err(e);
        }
        for (v, d) in write.writes.iter().zip(&datas) {
            // `offset + len <= max_end <= data.len()`, so these fit a usize.
            let start = v.offset as usize;
            share.data[start..start + d.len()].copy_from_slice(d);
        }
        share.data.truncate(final_len as usize);
        if existing.is_none() {
            inner.shares.entry(*si).or_default().insert(shnum, fresh);
        }
        Ok(final_len)
    }

    async fn delete(&self, si: &StorageIndex, shnum: ShareNum) -> BackendResult<()> {
        self.lock().remove(si, shnum);
        Ok(())
    }

    async fn list_storage_indexes(
        &self,
        after: Option<StorageIndex>,
        limit: usize,
    ) -> BackendResult<Vec<StorageIndex>> {
        use std::ops::Bound;
        let inner = self.lock();
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        Ok(inner
            .shares
            .range((lower, Bound::Unbounded))
            .filter(|(_, m)| !m.is_empty())
            .map(|(si, _)| *si)
            .take(limit)
            .collect())
    }

    async fn available_space(&self) -> BackendResult<Option<u64>> {
        let inner = self.lock();
        Ok(inner.limit.map(|l| l.saturating_sub(inner.used)))
    }

    async fn clean_incoming(&self) -> BackendResult<()> {
        // Uploads in memory do not survive a restart; forget any left behind (e.g. leaked
        // with `mem::forget` to simulate a crash). Their reserved space is leaked with them.
        self.lock().staged.clear();
        Ok(())
    }
}

/// A staged immutable upload in memory.
#[derive(Debug)]
struct MemoryUpload {
    inner: Arc<Mutex<Inner>>,
    si: StorageIndex,
    shnum: ShareNum,
    allocated: u64,
    data: Vec<u8>,
    finished: bool,
}

impl MemoryUpload {
    fn discard(&mut self) {
        let mut inner = lock(&self.inner);
        inner.release(to_len(self.data.len()));
        inner.staged.remove(&(self.si, self.shnum));
        self.data = Vec::new();
        self.finished = true;
    }
}

#[async_trait]
impl ImmutableUpload for MemoryUpload {
    async fn read(&mut self, offset: u64, len: u64) -> BackendResult<Bytes> {
        let size = self.data.len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(size);
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(size);
        Ok(Bytes::copy_from_slice(&self.data[start..end]))
    }

    async fn write(&mut self, offset: u64, data: Bytes) -> BackendResult<()> {
        let end = super::staged_write_end(offset, data.len(), self.allocated)?;
        if data.is_empty() {
            return Ok(());
        }
        let old = to_len(self.data.len());
        if end > old {
            lock(&self.inner).reserve(end - old)?;
            if let Err(e) = grow(&mut self.data, end) {
                lock(&self.inner).release(end - old);
                return Err(e);
            }
        }
        // `end <= data.len()` now, so both bounds fit a usize.
        let start = offset as usize;
        self.data[start..start + data.len()].copy_from_slice(&data);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> BackendResult<u64> {
        let mut inner = lock(&self.inner);
        inner.staged.remove(&(self.si, self.shnum));
        if inner.share(&self.si, self.shnum).is_some() {
            inner.release(to_len(self.data.len()));
            self.finished = true;
            return Err(BackendError::AlreadyExists);
        }
        let size = to_len(self.data.len());
        let data = std::mem::take(&mut self.data);
        inner.shares.entry(self.si).or_default().insert(
            self.shnum,
            MemShare {
                kind: ShareKind::Immutable,
                data,
                write_enabler: None,
                corrupt: None,
            },
        );
        self.finished = true;
        Ok(size)
    }

    async fn abort(mut self: Box<Self>) -> BackendResult<()> {
        self.discard();
        Ok(())
    }
}

impl Drop for MemoryUpload {
    fn drop(&mut self) {
        if !self.finished {
            self.discard();
        }
    }
}

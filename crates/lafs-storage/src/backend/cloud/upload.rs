//! An immutable share upload: chunks are filled in memory and stored as they complete, a
//! few at a time; chunk 0 (which makes the share visible) is stored last, at commit.
//!
//! Memory held: chunk 0, the partial chunks (one when writes arrive in order, as Tahoe
//! clients send them; at most [`CloudOptions::max_pending_chunks`] otherwise), and the
//! chunks being uploaded (at most [`CloudOptions::max_in_flight`]). A chunk that fails to
//! upload goes back to the partial set, so the next write or the commit retries it.
//!
//! [`CloudOptions::max_pending_chunks`]: super::CloudOptions::max_pending_chunks
//! [`CloudOptions::max_in_flight`]: super::CloudOptions::max_in_flight

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use super::container::IMMUTABLE_HEADER_LEN;
use super::{Shared, keys};
use crate::backend::{BackendError, BackendResult, ImmutableUpload, staged_write_end};
use crate::types::{ShareNum, StorageIndex};

/// The header the Tahoe cloud branch writes: container version 1, size field 0 (unused
/// since Tahoe 1.3), no leases.
const HEADER: [u8; 12] = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];

/// A chunk being filled: its bytes so far and which of them were written.
#[derive(Debug, Default)]
struct Partial {
    buf: Vec<u8>,
    /// Written ranges within the chunk, sorted and disjoint.
    covered: Vec<(u64, u64)>,
}

impl Partial {
    fn full(data: &[u8]) -> Self {
        Self {
            buf: data.to_vec(),
            covered: vec![(0, data.len() as u64)],
        }
    }

    fn put(&mut self, at: usize, data: &[u8]) {
        let end = at + data.len();
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[at..end].copy_from_slice(data);
        let (mut a, mut b) = (at as u64, end as u64);
        let mut merged = Vec::with_capacity(self.covered.len() + 1);
        for &(x, y) in &self.covered {
            if y < a || x > b {
                merged.push((x, y));
            } else {
                a = a.min(x);
                b = b.max(y);
            }
        }
        merged.push((a, b));
        merged.sort_unstable();
        self.covered = merged;
    }

    fn is_full(&self, chunk: u64) -> bool {
        self.covered.first() == Some(&(0, chunk))
    }

    /// The chunk's bytes, zero-filled or cut to `len`.
    fn into_bytes(mut self, len: u64) -> Bytes {
        self.buf.resize(len as usize, 0);
        Bytes::from(self.buf)
    }
}

type PutResult = (u64, BackendResult<()>);

/// A staged immutable share in the bucket.
#[derive(Debug)]
pub(super) struct CloudUpload {
    shared: Arc<Shared>,
    si: StorageIndex,
    shnum: ShareNum,
    allocated: u64,
    chunk: u64,
    /// Container length so far: header plus up to the highest byte written.
    end: u64,
    partial: BTreeMap<u64, Partial>,
    in_flight: BTreeMap<u64, Bytes>,
    tasks: JoinSet<PutResult>,
    /// Chunks stored, with their lengths.
    stored: BTreeMap<u64, u64>,
    finished: bool,
}

impl CloudUpload {
    /// Starts an upload: refuses an existing share, removes leftovers of earlier attempts
    /// at the same share, and records the upload marker.
    pub async fn start(
        shared: Arc<Shared>,
        si: StorageIndex,
        shnum: ShareNum,
        allocated: u64,
    ) -> BackendResult<Self> {
        shared.stage(&si, shnum).await?;
        let r = async {
            let listed = shared.list_chunks(&si).await?;
            if let Some(chunks) = listed.get(&shnum) {
                if chunks.contains_key(&0) {
                    return Err(BackendError::AlreadyExists);
                }
                shared
                    .delete_chunks(&si, shnum, chunks.keys().copied())
                    .await?;
            }
            shared
                .store
                .put(&keys::incoming_key(&si, shnum), Bytes::new())
                .await
        }
        .await;
        if let Err(e) = r {
            shared.unstage(&si, shnum);
            return Err(e);
        }
        let chunk = shared.opts.chunk_size;
        let mut partial = BTreeMap::new();
        partial.insert(0, Partial::full(&HEADER));
        Ok(Self {
            shared,
            si,
            shnum,
            allocated,
            chunk,
            end: IMMUTABLE_HEADER_LEN,
            partial,
            in_flight: BTreeMap::new(),
            tasks: JoinSet::new(),
            stored: BTreeMap::new(),
            finished: false,
        })
    }

    fn key(&self, k: u64) -> String {
        keys::chunk_key(&self.si, self.shnum, k)
    }

    /// Books the result of one finished chunk upload.
    fn settle(&mut self, r: Result<PutResult, tokio::task::JoinError>) -> BackendResult<()> {
        let (k, r) = r.map_err(|e| BackendError::Io {
            message: format!("chunk upload task failed: {e}"),
            transient: true,
        })?;
        let Some(data) = self.in_flight.remove(&k) else {
            return Ok(());
        };
        match r {
            Ok(()) => {
                self.stored.insert(k, data.len() as u64);
                Ok(())
            }
            Err(e) => {
                self.partial.insert(k, Partial::full(&data));
                Err(e)
            }
        }
    }

    /// Waits for one chunk upload to finish.
    async fn join_one(&mut self) -> BackendResult<()> {
        match self.tasks.join_next().await {
            Some(r) => self.settle(r),
            None => Ok(()),
        }
    }

    /// Books finished uploads without waiting.
    fn reap(&mut self) -> BackendResult<()> {
        while let Some(r) = self.tasks.try_join_next() {
            self.settle(r)?;
        }
        Ok(())
    }

    /// Waits for every chunk upload; the first error is returned after all finished.
    async fn drain(&mut self) -> BackendResult<()> {
        let mut first = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = self.settle(r)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Starts uploading chunk `k` (removed from the partial set) as `len` bytes, once fewer
    /// than `max_in_flight` uploads are running.
    async fn ship(&mut self, k: u64, len: u64) -> BackendResult<()> {
        while self.tasks.len() >= self.shared.opts.max_in_flight {
            self.join_one().await?;
        }
        let Some(p) = self.partial.remove(&k) else {
            return Ok(());
        };
        let data = p.into_bytes(len);
        self.in_flight.insert(k, data.clone());
        let shared = self.shared.clone();
        let key = self.key(k);
        self.tasks
            .spawn(async move { (k, shared.store.put(&key, data).await) });
        Ok(())
    }

    /// Makes chunk `k` a partial chunk again if it is stored or being stored (a write out of
    /// order landed in it).
    async fn reopen(&mut self, k: u64) -> BackendResult<()> {
        while self.in_flight.contains_key(&k) {
            self.join_one().await?;
        }
        if self.partial.contains_key(&k) {
            return Ok(());
        }
        if let Some(len) = self.stored.get(&k).copied() {
            let data = self.shared.store.get_range(&self.key(k), 0, len).await?;
            self.stored.remove(&k);
            self.partial.insert(k, Partial::full(&data));
        }
        Ok(())
    }

    /// Cuts the oldest partial chunks loose when too many are held (writes out of order).
    async fn evict(&mut self) -> BackendResult<()> {
        while self.partial.len() > self.shared.opts.max_pending_chunks + 1 {
            let Some(k) = self.partial.keys().copied().find(|k| *k != 0) else {
                break;
            };
            self.ship(k, self.chunk).await?;
        }
        Ok(())
    }

    /// Best-effort removal of everything this upload stored, then of its marker. The marker
    /// stays if anything fails, for [`Backend::clean_incoming`](crate::backend::Backend).
    async fn cleanup(shared: &Shared, si: StorageIndex, shnum: ShareNum) {
        let r = async {
            let listed = shared.list_chunks(&si).await?;
            if let Some(chunks) = listed.get(&shnum)
                && !chunks.contains_key(&0)
            {
                shared
                    .delete_chunks(&si, shnum, chunks.keys().copied())
                    .await?;
            }
            shared.store.delete(&keys::incoming_key(&si, shnum)).await
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(si = %si, shnum, error = %e, "could not remove an abandoned upload; it is removed at the next start");
        }
        shared.unstage(&si, shnum);
    }

    async fn commit_inner(&mut self) -> BackendResult<u64> {
        // A share that appeared meanwhile (the server never lets that happen; the trait
        // contract says the commit fails and leaves it alone).
        if self
            .shared
            .list_chunks(&self.si)
            .await?
            .get(&self.shnum)
            .is_some_and(|c| c.contains_key(&0))
        {
            return Err(BackendError::AlreadyExists);
        }
        let c = self.chunk;
        let total = self.end;
        let last = (total - 1) / c;
        let len_of = |k: u64| if k == last { total - k * c } else { c };
        let pending: Vec<u64> = self.partial.keys().copied().filter(|k| *k != 0).collect();
        for k in pending {
            self.ship(k, len_of(k)).await?;
        }
        // Chunks no write touched (holes) are zeros.
        for k in 1..=last {
            if !self.stored.contains_key(&k) && !self.in_flight.contains_key(&k) {
                self.partial.insert(k, Partial::default());
                self.ship(k, len_of(k)).await?;
            }
        }
        self.drain().await?;
        // A last chunk pushed out early as a full chunk is cut to its real length.
        if last > 0
            && let Some(len) = self.stored.get(&last).copied()
            && len != len_of(last)
        {
            let keep = len.min(len_of(last));
            let data = self
                .shared
                .store
                .get_range(&self.key(last), 0, keep)
                .await?;
            let mut b = BytesMut::from(&data[..]);
            b.resize(len_of(last) as usize, 0);
            self.shared.store.put(&self.key(last), b.freeze()).await?;
        }
        let first = self
            .partial
            .remove(&0)
            .unwrap_or_else(|| Partial::full(&HEADER));
        let first = first.into_bytes(total.min(c));
        // Every other chunk is confirmed: now the share becomes visible.
        self.shared.store.put(&self.key(0), first).await?;
        self.shared.cache_forget(&self.si, self.shnum);
        if let Err(e) = self
            .shared
            .store
            .delete(&keys::incoming_key(&self.si, self.shnum))
            .await
        {
            tracing::warn!(si = %self.si, shnum = self.shnum, error = %e, "could not remove an upload marker; it is removed at the next start");
        }
        Ok(total - IMMUTABLE_HEADER_LEN)
    }
}

#[async_trait]
impl ImmutableUpload for CloudUpload {
    async fn write(&mut self, offset: u64, data: Bytes) -> BackendResult<()> {
        let end = staged_write_end(offset, data.len(), self.allocated)?;
        if data.is_empty() {
            return Ok(());
        }
        self.reap()?;
        let c = self.chunk;
        let mut pos = IMMUTABLE_HEADER_LEN + offset;
        let mut rest = &data[..];
        while !rest.is_empty() {
            let k = pos / c;
            let within = pos % c;
            let n = ((c - within) as usize).min(rest.len());
            self.reopen(k).await?;
            let p = self.partial.entry(k).or_default();
            p.put(within as usize, &rest[..n]);
            let full = k != 0 && p.is_full(c);
            pos += n as u64;
            rest = &rest[n..];
            if full {
                self.ship(k, c).await?;
            }
        }
        self.end = self.end.max(IMMUTABLE_HEADER_LEN + end);
        self.evict().await
    }

    async fn read(&mut self, offset: u64, len: u64) -> BackendResult<Bytes> {
        let c = self.chunk;
        let start = IMMUTABLE_HEADER_LEN.saturating_add(offset).min(self.end);
        let end = start.saturating_add(len).min(self.end);
        let mut out = BytesMut::with_capacity((end - start) as usize);
        let mut pos = start;
        while pos < end {
            let k = pos / c;
            let a = pos - k * c;
            let b = end.min((k + 1) * c) - k * c;
            let (a_us, b_us) = (a as usize, b as usize);
            if let Some(p) = self.partial.get(&k) {
                let have = p.buf.len().min(b_us);
                if a_us < have {
                    out.extend_from_slice(&p.buf[a_us..have]);
                }
                out.resize(out.len() + (b_us - have.max(a_us)), 0);
            } else if let Some(d) = self.in_flight.get(&k) {
                let have = d.len().min(b_us);
                if a_us < have {
                    out.extend_from_slice(&d[a_us..have]);
                }
                out.resize(out.len() + (b_us - have.max(a_us)), 0);
            } else if let Some(&stored) = self.stored.get(&k) {
                let upto = b.min(stored);
                if a < upto {
                    let d = self.shared.store.get_range(&self.key(k), a, upto).await?;
                    out.extend_from_slice(&d);
                }
                out.resize(out.len() + (b - upto.max(a)) as usize, 0);
            } else {
                out.resize(out.len() + (b_us - a_us), 0);
            }
            pos = k * c + b;
        }
        Ok(out.freeze())
    }

    async fn commit(mut self: Box<Self>) -> BackendResult<u64> {
        self.finished = true;
        let r = self.commit_inner().await;
        match r {
            Ok(size) => {
                self.shared.unstage(&self.si, self.shnum);
                Ok(size)
            }
            Err(e) => {
                let _ = self.drain().await;
                Self::cleanup(&self.shared, self.si, self.shnum).await;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> BackendResult<()> {
        self.finished = true;
        let _ = self.drain().await;
        Self::cleanup(&self.shared, self.si, self.shnum).await;
        Ok(())
    }
}

impl Drop for CloudUpload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Let running chunk uploads finish (aborting them could let a request land after
        // the cleanup), then remove what was stored. The share stays "being staged" until
        // then, so a new upload of it cannot race the cleanup.
        let shared = self.shared.clone();
        let (si, shnum) = (self.si, self.shnum);
        let mut tasks = std::mem::take(&mut self.tasks);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let (tx, rx) = tokio::sync::watch::channel(());
                super::lock(&shared.staged).insert((si, shnum), super::Slot::Cleaning(rx));
                h.spawn(async move {
                    while tasks.join_next().await.is_some() {}
                    Self::cleanup(&shared, si, shnum).await;
                    drop(tx);
                });
            }
            Err(_) => {
                tasks.detach_all();
                shared.unstage(&si, shnum);
            }
        }
    }
}

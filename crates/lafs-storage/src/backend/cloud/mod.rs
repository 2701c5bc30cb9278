//! Shares in an S3-compatible object store (and, through the same code, any store OpenDAL
//! speaks), chunked, in the layout of Tahoe's never-merged cloud backend.
//!
//! # Goals
//! - **Serve a bucket written by the Tahoe cloud-backend branch** (2237.cloud-backend-s4-
//!   merged.4), and write buckets that branch can serve. A share is its usual container
//!   (immutable: `>LLL` header, data at 0x0c; mutable: the 468-byte header with four lease
//!   slots, data, an extra-lease count) cut into chunks: chunk 0 is the object
//!   `shares/<si[:2]>/<si>/<shnum>`, chunk `k` is `.../<shnum>.<k>` ([`keys`]). Every chunk
//!   but the last has the size of chunk 0, which is how a reader learns the chunk size; a
//!   share's container length is the sum of its chunks. lafs writes immutable containers
//!   as version 1 and new mutable ones with the v1 magic, the versions the branch reads; it
//!   reads v1 and v2 of both (so shares copied from a disk backend work too) and ignores
//!   leases (they live in the lease database).
//! - **Bounded memory whatever the share size.** An immutable upload holds chunk 0, the
//!   chunk being filled and at most [`CloudOptions::max_in_flight`] chunks being uploaded;
//!   writes out of order keep at most [`CloudOptions::max_pending_chunks`] partial chunks
//!   and push older ones to the bucket (read back and rewritten if a later write lands in
//!   them). Reads fetch only the byte ranges of the chunks a request covers. A mutable
//!   test-and-write reads (only the kept part of) and rewrites only the chunks its writes,
//!   and a length change, touch.
//! - **A share is visible only when complete.** Chunk 0 is written last (at commit, after
//!   every other chunk is confirmed), and a share exists iff its chunk 0 does: listings
//!   ignore chunks without a chunk 0. (The branch wrote chunk 0 first, so a crash left a
//!   truncated share; lafs never does.) An upload in progress also has a marker object
//!   `incoming/<si[:2]>/<si>/<shnum>`, deleted on commit or abort; after a crash
//!   [`Backend::clean_incoming`] finds the markers and deletes the chunks of shares that
//!   never got their chunk 0, without listing the whole bucket.
//! - **Mutable writes survive a crash as well as the disk backend's in-place writes do.**
//!   A growing write stores the new chunks before chunk 0 (which holds the data length); a
//!   shrinking one stores chunk 0 first and trims or deletes later chunks afterwards. At
//!   every moment the recorded length fits the stored chunks; bytes inside it may be torn,
//!   which Tahoe's signed mutable format detects.
//! - **Failures** are retried with backoff where a retry may help ([`store`]); a permanent
//!   failure is a [`BackendError::Io`], which the server answers with a 5xx, and an upload
//!   that fails to commit stays invisible (the server keeps it COMING). Errors never carry
//!   credentials, request URLs or share bytes.
//!
//! # Non-goals
//! - Several servers (or a server and anything else) writing one bucket: the backend caches
//!   share metadata (container header, chunk sizes) and trusts its own writes, as the
//!   branch did ("Multiple storage servers cannot share the same bucket").
//! - Atomic mutable writes across chunks (object stores have no multi-object transaction;
//!   see above for what holds instead).
//! - Reporting free space: object stores have none to report.

mod keys;
mod mutable;
mod store;
mod upload;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};

use super::disk::container::{self, Container, PROBE_LEN};
use super::{Backend, BackendError, BackendResult, ImmutableUpload, MutableWrite, StoredShare};
use crate::types::{ShareKind, ShareNum, StorageIndex};

pub use store::RetryPolicy;

/// The Tahoe cloud branch's default chunk size.
pub const DEFAULT_CHUNK_SIZE: u64 = 512 * 1024;

/// Share metadata entries cached at most (the cache is emptied when it fills up).
const META_CACHE_LIMIT: usize = 4096;

/// Tuning of the cloud backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloudOptions {
    /// Size of the chunks new shares are cut into (existing shares keep theirs).
    pub chunk_size: u64,
    /// Chunk uploads (or reads) in flight at once, per share operation.
    pub max_in_flight: usize,
    /// Partial chunks an immutable upload keeps in memory besides chunk 0 when writes
    /// arrive out of order; the oldest beyond this go to the bucket.
    pub max_pending_chunks: usize,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// Limit of one whole request.
    pub request_timeout: Duration,
    /// Limit of one read or write of a request body without progress.
    pub io_timeout: Duration,
    /// Bytes of whole immutable-share chunks kept after a read (0: none). A downloader
    /// reads a share in many small ranges (blocks, then hash-tree nodes near the end of
    /// the share, again for every segment); with the chunk kept, those cost one request to
    /// the object store per chunk instead of one each.
    pub read_cache_bytes: usize,
    /// Chunks fetched ahead into the read cache after a read of an immutable share (the
    /// next ones in the share), so that a sequential reader finds them there: object stores
    /// answer each request after a round trip of milliseconds.
    pub read_ahead_chunks: u64,
}

impl Default for CloudOptions {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_in_flight: 4,
            max_pending_chunks: 4,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(120),
            io_timeout: Duration::from_secs(30),
            read_cache_bytes: 8 << 20,
            read_ahead_chunks: 2,
        }
    }
}

/// How to reach an S3-compatible bucket (`[storage] backend = cloud.s3`).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `s3.bucket`.
    pub bucket: String,
    /// `s3.url`: the service endpoint (default `https://s3.amazonaws.com`).
    pub url: Option<String>,
    /// `s3.region` (default `us-east-1`).
    pub region: Option<String>,
    /// `s3.access_key_id`.
    pub access_key_id: String,
    /// The secret key (`private/s3secret`).
    pub secret_access_key: String,
    /// Path-style addressing (`https://host/bucket/key`, default) rather than virtual-host
    /// style (`https://bucket.host/key`).
    pub path_style: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("url", &self.url)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// What is known about one stored share.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ShareMeta {
    container: Container,
    /// Size of chunk 0 (the chunk size when the share has several chunks).
    first_chunk: u64,
    /// Number of chunks.
    chunks: u64,
    /// Container length: the sum of the chunk sizes.
    total: u64,
}

impl ShareMeta {
    fn kind(&self) -> ShareKind {
        match self.container {
            Container::Immutable(_) => ShareKind::Immutable,
            Container::Mutable(_) => ShareKind::Mutable,
        }
    }

    /// Chunk size for reading: any value works for a one-chunk share.
    fn read_chunk_size(&self) -> u64 {
        self.first_chunk.max(1)
    }
}

/// A staged share: uploading, or being cleaned up (the receiver reports when done).
#[derive(Debug)]
enum Slot {
    Uploading,
    Cleaning(tokio::sync::watch::Receiver<()>),
}

/// A share as listed: metadata, or why its container is unreadable.
type Scanned = BTreeMap<ShareNum, Result<ShareMeta, String>>;

#[derive(Debug)]
struct Shared {
    store: store::Store,
    opts: CloudOptions,
    /// Shares being uploaded, or being cleaned up after an upload was dropped.
    staged: Mutex<HashMap<(StorageIndex, ShareNum), Slot>>,
    meta: Mutex<HashMap<(StorageIndex, ShareNum), ShareMeta>>,
    chunks: Mutex<ChunkCache>,
}

/// Whole chunks of immutable shares, least recently used evicted first, bounded in bytes.
/// Keyed by the share's container length too, so a share replaced by one of another size
/// never serves the old bytes; entries of a share go whenever its metadata is forgotten
/// (deletion, a new upload, a failed read).
#[derive(Debug, Default)]
struct ChunkCache {
    budget: usize,
    used: usize,
    tick: u64,
    entries: HashMap<ChunkKey, (u64, Bytes)>,
    /// Chunks being fetched ahead.
    fetching: std::collections::HashSet<ChunkKey>,
}

/// Share, its container length, chunk number.
type ChunkKey = (StorageIndex, ShareNum, u64, u64);

impl ChunkCache {
    fn get(&mut self, key: &ChunkKey) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(t, b)| {
            *t = tick;
            b.clone()
        })
    }

    fn put(&mut self, key: ChunkKey, bytes: Bytes) {
        if bytes.len() > self.budget || self.entries.contains_key(&key) {
            return;
        }
        while self.used + bytes.len() > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((_, b)) = self.entries.remove(&oldest) {
                self.used -= b.len();
            }
        }
        self.tick += 1;
        self.used += bytes.len();
        self.entries.insert(key, (self.tick, bytes));
    }

    /// Claims `key` for a fetch ahead unless it is cached or being fetched.
    fn claim(&mut self, key: ChunkKey) -> bool {
        !self.entries.contains_key(&key) && self.fetching.insert(key)
    }

    fn forget_share(&mut self, si: &StorageIndex, shnum: ShareNum) {
        let mut freed = 0;
        self.entries.retain(|k, (_, b)| {
            let keep = !(k.0 == *si && k.1 == shnum);
            if !keep {
                freed += b.len();
            }
            keep
        });
        self.used -= freed;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(message: String) -> BackendError {
    BackendError::Io {
        message,
        transient: false,
    }
}

impl Shared {
    fn cache_get(&self, si: &StorageIndex, shnum: ShareNum) -> Option<ShareMeta> {
        lock(&self.meta).get(&(*si, shnum)).cloned()
    }

    fn cache_put(&self, si: &StorageIndex, shnum: ShareNum, m: ShareMeta) {
        let mut c = lock(&self.meta);
        if c.len() >= META_CACHE_LIMIT {
            c.clear();
        }
        c.insert((*si, shnum), m);
    }

    /// Puts a whole chunk in the read cache, only while the share is still the one whose
    /// metadata are cached (not deleted or replaced meanwhile).
    fn keep_chunk(&self, key: ChunkKey, bytes: Bytes) {
        let current = lock(&self.meta).get(&(key.0, key.1)).map(|x| x.total) == Some(key.2);
        if current {
            lock(&self.chunks).put(key, bytes);
        }
    }

    /// Starts fetching the `read_ahead_chunks` chunks after `last` into the read cache.
    fn read_ahead(self: &Arc<Self>, si: &StorageIndex, shnum: ShareNum, m: &ShareMeta, last: u64) {
        if !matches!(m.container, Container::Immutable(_)) || self.opts.read_cache_bytes == 0 {
            return;
        }
        let chunk = m.read_chunk_size();
        for k in last + 1..=last.saturating_add(self.opts.read_ahead_chunks) {
            if k.saturating_mul(chunk) >= m.total {
                break;
            }
            let key = (*si, shnum, m.total, k);
            if !lock(&self.chunks).claim(key) {
                continue;
            }
            let me = self.clone();
            let len = chunk.min(m.total - k * chunk);
            let object = keys::chunk_key(si, shnum, k);
            tokio::spawn(async move {
                // A failure here costs nothing: the read that needs the chunk fetches it.
                if let Ok(c) = me.store.get_range(&object, 0, len).await
                    && c.len() as u64 == len
                {
                    me.keep_chunk(key, c);
                }
                lock(&me.chunks).fetching.remove(&key);
            });
        }
    }

    fn cache_forget(&self, si: &StorageIndex, shnum: ShareNum) {
        lock(&self.meta).remove(&(*si, shnum));
        lock(&self.chunks).forget_share(si, shnum);
    }

    /// Chunk sizes of every share of `si` found in the bucket, by share and chunk number.
    async fn list_chunks(
        &self,
        si: &StorageIndex,
    ) -> BackendResult<BTreeMap<ShareNum, BTreeMap<u64, u64>>> {
        let mut out: BTreeMap<ShareNum, BTreeMap<u64, u64>> = BTreeMap::new();
        for l in self.store.list_all(&keys::si_prefix(si)).await? {
            if let Some((s, shnum, chunk)) = keys::parse_chunk_key(&l.key)
                && s == *si
            {
                out.entry(shnum).or_default().insert(chunk, l.size);
            }
        }
        Ok(out)
    }

    /// Metadata of a share from its chunk sizes; `None` if it has no chunk 0 (an upload in
    /// progress or the leftovers of one).
    async fn meta_of(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        chunks: &BTreeMap<u64, u64>,
    ) -> BackendResult<Option<Result<ShareMeta, String>>> {
        let Some(&first) = chunks.get(&0) else {
            return Ok(None);
        };
        // The share is the run of chunks 0, 1, 2, ...; anything after a gap is debris.
        let mut n = 0u64;
        let mut total = 0u64;
        let mut last = 0u64;
        while let Some(&size) = chunks.get(&n) {
            total = total.saturating_add(size);
            last = size;
            n += 1;
        }
        if n > 1 && (last > first || (1..n - 1).any(|k| chunks.get(&k) != Some(&first))) {
            return Ok(Some(Err(format!(
                "chunk sizes of the share do not match its first chunk ({first} bytes)"
            ))));
        }
        let head = self
            .store
            .get_range(
                &keys::chunk_key(si, shnum, 0),
                0,
                first.min(PROBE_LEN as u64),
            )
            .await?;
        Ok(Some(
            container::parse(&head, total)
                .map(|container| ShareMeta {
                    container,
                    first_chunk: first,
                    chunks: n,
                    total,
                })
                .map_err(|u| u.reason),
        ))
    }

    /// Every share of `si`, read fresh from the bucket (and cached).
    async fn scan(&self, si: &StorageIndex) -> BackendResult<Scanned> {
        let listed = self.list_chunks(si).await?;
        let metas =
            futures_util::stream::iter(listed.into_iter().map(|(shnum, chunks)| async move {
                self.meta_of(si, shnum, &chunks)
                    .await
                    .map(|m| m.map(|m| (shnum, m)))
            }))
            .buffered(self.opts.max_in_flight.max(1))
            .try_collect::<Vec<_>>()
            .await?;
        let mut out = Scanned::new();
        for (shnum, m) in metas.into_iter().flatten() {
            match &m {
                Ok(meta) => self.cache_put(si, shnum, meta.clone()),
                Err(_) => self.cache_forget(si, shnum),
            }
            out.insert(shnum, m);
        }
        Ok(out)
    }

    /// One share, read fresh from the bucket: `None` if absent, `Corrupt` if unreadable.
    async fn fresh_meta(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> BackendResult<Option<ShareMeta>> {
        let listed = self.list_chunks(si).await?;
        let Some(chunks) = listed.get(&shnum) else {
            self.cache_forget(si, shnum);
            return Ok(None);
        };
        match self.meta_of(si, shnum, chunks).await? {
            None => {
                self.cache_forget(si, shnum);
                Ok(None)
            }
            Some(Ok(m)) => {
                self.cache_put(si, shnum, m.clone());
                Ok(Some(m))
            }
            Some(Err(reason)) => {
                self.cache_forget(si, shnum);
                Err(BackendError::Corrupt(reason))
            }
        }
    }

    /// One share, from the cache or the bucket.
    async fn meta(&self, si: &StorageIndex, shnum: ShareNum) -> BackendResult<Option<ShareMeta>> {
        match self.cache_get(si, shnum) {
            Some(m) => Ok(Some(m)),
            None => self.fresh_meta(si, shnum).await,
        }
    }

    /// Reads container bytes `[start, end)` of a share cut into `chunk`-byte chunks,
    /// fetching only the ranges needed, a few chunks at a time. With `cached` (immutable
    /// shares, whose chunks never change), whole chunks are fetched and kept in the chunk
    /// cache, and chunks found there are not fetched again.
    async fn read_container(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        m: &ShareMeta,
        start: u64,
        end: u64,
    ) -> BackendResult<Bytes> {
        if start >= end {
            return Ok(Bytes::new());
        }
        let chunk = m.read_chunk_size();
        let cached =
            matches!(m.container, Container::Immutable(_)) && self.opts.read_cache_bytes > 0;
        let first = start / chunk;
        let last = (end - 1) / chunk;
        let parts = futures_util::stream::iter((first..=last).map(|k| {
            let a = start.max(k * chunk) - k * chunk;
            let b = end.min((k + 1) * chunk) - k * chunk;
            let key = keys::chunk_key(si, shnum, k);
            async move {
                if !cached {
                    return self.store.get_range(&key, a, b).await;
                }
                let ck = (*si, shnum, m.total, k);
                let hit = lock(&self.chunks).get(&ck);
                let whole = match hit {
                    Some(c) => c,
                    None => {
                        let len = chunk.min(m.total.saturating_sub(k * chunk));
                        let c = self.store.get_range(&key, 0, len).await?;
                        if (c.len() as u64) < b {
                            return Err(BackendError::Io {
                                message: format!(
                                    "chunk {k} of the share is shorter than listed (changed meanwhile?)"
                                ),
                                transient: true,
                            });
                        }
                        self.keep_chunk(ck, c.clone());
                        c
                    }
                };
                Ok(whole.slice(a as usize..b as usize))
            }
        }))
        .buffered(self.opts.max_in_flight.max(1))
        .try_collect::<Vec<Bytes>>()
        .await?;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().unwrap_or_default());
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    /// Deletes every chunk of a share, chunk 0 first so that it stops being visible at once.
    async fn delete_share(&self, si: &StorageIndex, shnum: ShareNum) -> BackendResult<()> {
        self.cache_forget(si, shnum);
        let listed = self.list_chunks(si).await?;
        let Some(chunks) = listed.get(&shnum) else {
            return Ok(());
        };
        if chunks.contains_key(&0) {
            self.store.delete(&keys::chunk_key(si, shnum, 0)).await?;
        }
        self.delete_chunks(si, shnum, chunks.keys().copied().filter(|k| *k > 0))
            .await
    }

    /// Deletes the given chunks, a few at a time.
    async fn delete_chunks(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        chunks: impl Iterator<Item = u64>,
    ) -> BackendResult<()> {
        futures_util::stream::iter(chunks.map(|k| {
            let key = keys::chunk_key(si, shnum, k);
            async move { self.store.delete(&key).await }
        }))
        .buffer_unordered(self.opts.max_in_flight.max(1))
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
    }

    fn unstage(&self, si: &StorageIndex, shnum: ShareNum) {
        lock(&self.staged).remove(&(*si, shnum));
    }

    /// Marks a share as being uploaded. Waits for the cleanup of a dropped upload of the
    /// same share (so that a new upload can start at once without racing it); fails
    /// transiently if another upload is in progress.
    async fn stage(&self, si: &StorageIndex, shnum: ShareNum) -> BackendResult<()> {
        loop {
            let mut rx = {
                let mut staged = lock(&self.staged);
                match staged.get(&(*si, shnum)) {
                    None => {
                        staged.insert((*si, shnum), Slot::Uploading);
                        return Ok(());
                    }
                    Some(Slot::Uploading) => {
                        return Err(BackendError::Io {
                            message: format!(
                                "an upload of share {si}/{shnum} is already in progress"
                            ),
                            transient: true,
                        });
                    }
                    Some(Slot::Cleaning(rx)) => rx.clone(),
                }
            };
            // Resolves (with an error) when the cleanup drops its sender.
            let _ = rx.changed().await;
        }
    }
}

/// Shares in an object store.
#[derive(Clone, Debug)]
pub struct CloudBackend {
    shared: Arc<Shared>,
}

impl CloudBackend {
    /// A backend on an S3-compatible bucket. Nothing is sent until the first operation.
    pub fn s3(settings: &S3Settings, opts: CloudOptions) -> BackendResult<Self> {
        // Without this every request fails: OpenDAL 0.59 needs its HTTP transport
        // installed explicitly when its auto-registration feature is off.
        opendal::install_default();
        let mut b = opendal::services::S3::default()
            .bucket(&settings.bucket)
            .endpoint(
                settings
                    .url
                    .as_deref()
                    .unwrap_or("https://s3.amazonaws.com"),
            )
            .region(settings.region.as_deref().unwrap_or("us-east-1"))
            .access_key_id(&settings.access_key_id)
            .secret_access_key(&settings.secret_access_key)
            // Credentials come from tahoe.cfg and private/s3secret only, never from the
            // environment, ~/.aws or an instance metadata service.
            .disable_config_load()
            .disable_ec2_metadata();
        if !settings.path_style {
            b = b.enable_virtual_host_style();
        }
        let op = opendal::Operator::new(b)
            .map_err(|e| io_err(format!("object store configuration: {}", e.kind())))?;
        Ok(Self::from_operator(op, opts))
    }

    /// A backend on any OpenDAL operator (another service, or a test double).
    pub fn from_operator(op: opendal::Operator, opts: CloudOptions) -> Self {
        let op = op.layer(
            opendal::layers::TimeoutLayer::new()
                .with_timeout(opts.request_timeout)
                .with_io_timeout(opts.io_timeout),
        );
        let opts = CloudOptions {
            chunk_size: opts.chunk_size.max(PROBE_LEN as u64),
            max_in_flight: opts.max_in_flight.max(1),
            ..opts
        };
        Self {
            shared: Arc::new(Shared {
                store: store::Store::new(op, opts.retry),
                staged: Mutex::new(HashMap::new()),
                meta: Mutex::new(HashMap::new()),
                chunks: Mutex::new(ChunkCache {
                    budget: opts.read_cache_bytes,
                    ..ChunkCache::default()
                }),
                opts,
            }),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &CloudOptions {
        &self.shared.opts
    }
}

#[async_trait]
impl Backend for CloudBackend {
    fn name(&self) -> &'static str {
        "cloud"
    }

    async fn list_shares(&self, si: &StorageIndex) -> BackendResult<Vec<StoredShare>> {
        Ok(self
            .shared
            .scan(si)
            .await?
            .into_iter()
            .map(|(shnum, m)| match m {
                Ok(m) => StoredShare {
                    shnum,
                    kind: m.kind(),
                    size: m.container.data_len(),
                    corrupt: None,
                },
                Err(reason) => StoredShare {
                    shnum,
                    kind: ShareKind::Immutable,
                    size: 0,
                    corrupt: Some(reason),
                },
            })
            .collect())
    }

    async fn read(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> BackendResult<Bytes> {
        let m = self
            .shared
            .meta(si, shnum)
            .await?
            .ok_or(BackendError::NotFound)?;
        let size = m.container.data_len();
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = offset.saturating_add(len).min(size);
        let base = m.container.data_offset();
        let r = self
            .shared
            .read_container(si, shnum, &m, base + offset, base + end)
            .await;
        match &r {
            Err(BackendError::NotFound) => self.shared.cache_forget(si, shnum),
            Ok(_) => {
                let last = (base + end - 1) / m.read_chunk_size();
                self.shared.read_ahead(si, shnum, &m, last);
            }
            Err(_) => {}
        }
        r
    }

    async fn start_immutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        allocated_size: u64,
    ) -> BackendResult<Box<dyn ImmutableUpload>> {
        upload::CloudUpload::start(self.shared.clone(), *si, shnum, allocated_size)
            .await
            .map(|u| Box::new(u) as Box<dyn ImmutableUpload>)
    }

    async fn mutable_write_enabler(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> BackendResult<Option<[u8; 32]>> {
        match self.shared.meta(si, shnum).await? {
            None => Ok(None),
            Some(ShareMeta {
                container: Container::Mutable(h),
                ..
            }) => Ok(Some(h.write_enabler)),
            Some(_) => Err(BackendError::Invalid(
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
        mutable::write(&self.shared, si, shnum, write).await
    }

    async fn delete(&self, si: &StorageIndex, shnum: ShareNum) -> BackendResult<()> {
        self.shared.delete_share(si, shnum).await
    }

    async fn list_storage_indexes(
        &self,
        after: Option<StorageIndex>,
        limit: usize,
    ) -> BackendResult<Vec<StorageIndex>> {
        let mut out: Vec<StorageIndex> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Object keys sort in ASCII order of the base32 names, which is not the byte order
        // of storage indexes (base32 digits sort before letters in ASCII, after them in
        // value). So: find the prefix directories that exist, visit them in value order from
        // `after`'s, and within each list every object, keep the storage indexes having a
        // share with a chunk 0, and sort those.
        let mut prefixes: Vec<(u16, String)> = self
            .shared
            .store
            .list_dirs(keys::SHARES)
            .await?
            .into_iter()
            .filter_map(|d| keys::parse_prefix_dir(&d).map(|v| (v, d)))
            .collect();
        prefixes.sort();
        let from = after.as_ref().map_or(0, keys::prefix_value);
        for (value, dir) in prefixes {
            if value < from {
                continue;
            }
            let mut found = std::collections::BTreeSet::new();
            self.shared
                .store
                .list_pages(&dir, None, |l| {
                    if let Some((si, _, 0)) = keys::parse_chunk_key(&l.key)
                        && after.is_none_or(|a| si > a)
                    {
                        found.insert(si);
                    }
                    true
                })
                .await?;
            for si in found {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(si);
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    async fn available_space(&self) -> BackendResult<Option<u64>> {
        Ok(None)
    }

    async fn clean_incoming(&self) -> BackendResult<()> {
        let mut markers = Vec::new();
        self.shared
            .store
            .list_pages(keys::INCOMING, None, |l| {
                markers.push(l.key);
                true
            })
            .await?;
        // Called once at start, before any upload: every marker is a leftover (and so is
        // any upload of this process still listed as staged, e.g. one leaked in a test).
        lock(&self.shared.staged).clear();
        for key in markers {
            if let Some((si, shnum)) = keys::parse_incoming_key(&key) {
                let listed = self.shared.list_chunks(&si).await?;
                if let Some(chunks) = listed.get(&shnum)
                    && !chunks.contains_key(&0)
                {
                    self.shared
                        .delete_chunks(&si, shnum, chunks.keys().copied())
                        .await?;
                }
                tracing::info!(si = %si, shnum, "removed an upload interrupted by a restart");
            }
            self.shared.store.delete(&key).await?;
        }
        Ok(())
    }
}

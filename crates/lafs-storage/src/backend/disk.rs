//! Shares on a local filesystem, in stock Tahoe-LAFS's layout and container formats.
//!
//! # Goals
//! - **A stock server can take the directory back, and we can take stock's.** Layout
//!   `storage/shares/<si[:2]>/<si>/<shnum>` (base32 storage index, decimal share number);
//!   containers exactly as stock 1.20 writes them (the private `container` module documents
//!   the byte layouts). Uploads in progress are staged in unnamed files (Linux `O_TMPFILE`
//!   in `storage/shares/incoming/`) where the filesystem has them, else (or with
//!   [`DiskBackend::with_named_staging`]) where stock stages them,
//!   `storage/shares/incoming/<si[:2]>/<si>/<shnum>`; stock clears `incoming/` when it
//!   starts, so neither matters to it.
//!   Verified against stock 1.20 (its `StorageServer`, `BucketWriter`, `ShareFile` and
//!   `MutableShareFile` run from a virtualenv; `tests/backend_conformance.rs`):
//!   - new immutable shares are **version 2** containers (`>LLL` = 2, min(2^32-1, allocated
//!     size), lease count) with data at 0x0c and 72-byte lease records at the end (v2 stores
//!     blake2b hashes of the lease secrets; v1 stores them in clear; same sizes). Stock writes
//!     the header at allocation with the *allocated* size, adds its lease right after the
//!     allocated region, and never touches the header at completion, so a stock share whose
//!     client wrote less than it allocated serves the allocated length (zero-filled).
//!   - new mutable shares are **version 2** containers (magic `Tahoe mutable container v2\n`
//!     followed by `c3 55 21 99 25`), data at 468, the extra-lease block (a u32 count) right
//!     after the data.
//!   - lafs writes the same containers **without leases** (lease count 0, empty lease
//!     slots): leases live only in the lease database. It never writes an immutable container
//!     larger than the data written: at commit the file holds exactly the bytes up to the
//!     highest byte written, and the header's size field is set to that length, so the
//!     served share length is what the client wrote, for lafs and for stock alike.
//!   - reading accepts immutable v1 and v2 and mutable v1 and v2, ignoring leases (share
//!     data length = file size - 0x0c - 72 * lease count for immutable shares; the header's
//!     data length for mutable ones). Leases already in stock containers are preserved when
//!     lafs modifies a mutable share (and so is the container version).
//!   - a file with any other header (unknown version, too short, a length that does not fit
//!     the file) is listed with `corrupt: Some(reason)`, size 0, and kind `Mutable` if it
//!     starts with a mutable magic, else `Immutable` (stock's `get_share_file` also assumes
//!     immutable); reads, write-enabler lookups and mutable writes of it fail with
//!     [`BackendError::Corrupt`]; `delete` removes it.
//! - **Durability.** An immutable share is visible only after `commit`, and durable when it
//!   returns: fsync the staged file while (on a second thread) the share directory is
//!   created and its parent fsynced (also when it exists already: a concurrent upload that
//!   created it may still be syncing), then give the file its name without replacing anything
//!   (`linkat` of the unnamed file, then fsync it again for its new link count; or
//!   `renameat2(RENAME_NOREPLACE)`, or `link`+`unlink`, of a named one), fsync the share
//!   directory. A crash before that leaves no share: an unnamed file is freed by the
//!   kernel (on ext4 without a journal, by the next fsck), a named one is removed by
//!   [`Backend::clean_incoming`] at start (stock does the same). Unnamed staging writes
//!   less metadata per share (no staging directories to create, sync and remove): on the
//!   project's VM, 134 instead of 155-164 disk writes per 4 KiB upload to ten local
//!   servers, and a fifth to a third less time. The 1024 prefix
//!   directories are created when the backend opens, so a commit creates at most the
//!   storage index directory. So that the fsync at commit does not wait for the whole share
//!   to reach the disk, each [`WRITEBACK_BYTES`] written to a staged share start the
//!   kernel's writeback of that range at once (`posix_fadvise(DONTNEED)`, which on Linux
//!   writes dirty pages back without waiting and never drops a dirty page): the disk works
//!   while the upload is still arriving. Large shares that arrive in order (as clients
//!   send them) skip the page cache altogether: they are written with `O_DIRECT` in
//!   aligned 512 KiB chunks (the private `direct` module), which saves the server a copy
//!   of every byte and the kernel its writeback; anything else (a write out of order, a
//!   read while staged, the tail at commit) goes through the page cache as before.
//!
//!   Mutable writes (the server holds the share's lock): a new share, or an existing one whose
//!   container stays at or below [`DEFAULT_MUTABLE_REWRITE_LIMIT`], is written whole to a
//!   temporary file under `incoming/lafs-mutable-tmp/`, fsynced, renamed into place (a new
//!   share without replacing anything) and the directory fsynced: after a crash, the old or
//!   the new share. Larger shares (MDMF can be gigabytes) are modified in place, never
//!   rewritten: (1) if the data grows past the extra-lease block, the block is copied past
//!   the new end and its offset updated, fsync; (2) holes over possibly stale bytes are
//!   zero-filled and the data written, fsync; (3) the new data length is written, fsync.
//!   After a crash the recorded length is the old or the new one and never exposes stale
//!   bytes; bytes overwritten inside the old length may be torn (part old, part new), which
//!   Tahoe's signed and hashed mutable share format detects: readers reject the share and
//!   the client's next publish or repair rewrites it.
//! - **Safety.** Paths are only built from a [`StorageIndex`]'s base32 and a numeric share
//!   number. Listing accepts only canonical names (lower-case base32 under the matching
//!   prefix, canonical decimal share numbers), skips symlinks and non-directories, and share
//!   files are opened with `O_NOFOLLOW`.
//! - **Never block the runtime, never hold a share in memory.** Every filesystem call runs
//!   on tokio's blocking pool; reads read only the requested (clipped) range; mutable
//!   rewrites copy with `copy_file_range` where available.
//!
//! # Non-goals
//! - Leases in containers (never written), the write-enabler check (the server's), test
//!   vectors (the server evaluates them before calling [`Backend::write_mutable`]),
//!   detection of conflicting immutable overwrites (the server tracks written ranges; here
//!   the last write wins).
//! - Windows: this backend uses Unix positional I/O and `O_NOFOLLOW`.
//! - Locking between processes: one server owns a storage directory.
//! - Durable directory removal: `delete` fsyncs the share directory (the unlink is durable)
//!   but not the removal of an emptied storage index directory; one that reappears after a
//!   crash is empty, and empty directories list no storage index.
//!
//! # Concurrency
//! The server serialises operations on one share. Operations on different shares may run
//! concurrently, including in the same directories: directory creation and removal races
//! are retried. Staging a share that is already being staged fails with a transient error
//! (an in-memory registry of the shares being staged: one process owns the directory).
//! Dropping an upload without committing frees its staged file synchronously (closing an
//! unnamed one; one unlink and up to two `rmdir`s for a named one, as `tempfile` does), so
//! that a new upload of the same share can start at once; call
//! [`ImmutableUpload::abort`] to do it on the blocking pool instead.

pub(crate) mod container;
mod direct;
mod fsutil;
mod layout;
mod mutable;

use std::collections::HashSet;
use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use self::container::{Container, IMMUTABLE_HEADER_LEN, MAX_DATA_LEN};
use self::direct::DirectAppender;
use self::fsutil::{ensure_share_dir_durable, fsync_dir, open_share, probe, remove_dir_if_empty};
use self::layout::Layout;
use super::{Backend, BackendError, BackendResult, ImmutableUpload, MutableWrite, StoredShare};
use crate::types::{PREFIXES, ShareKind, ShareNum, StorageIndex};

/// Mutable shares whose container (header, data, extra leases) stays at or below this many
/// bytes are rewritten atomically; larger ones are modified in place.
pub const DEFAULT_MUTABLE_REWRITE_LIMIT: u64 = 1024 * 1024;

/// Maps an I/O error to a [`BackendError`], naming what failed. Out-of-space errors become
/// [`BackendError::NoSpace`]; interrupted and timed-out ones are transient.
pub(crate) fn io_ctx(what: impl Display) -> impl Fn(io::Error) -> BackendError {
    move |e| match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => BackendError::NoSpace,
        kind => BackendError::Io {
            message: format!("{what}: {e}"),
            transient: matches!(
                kind,
                ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock
            ),
        },
    }
}

/// Runs blocking filesystem work on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> BackendResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> BackendResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Io {
            message: format!("disk backend task failed: {e}"),
            transient: false,
        })?
}

/// Parses the container of an open share file.
fn container_of(file: &File) -> BackendResult<Container> {
    let (head, file_len) = probe(file).map_err(io_ctx("read share header"))?;
    container::parse(&head, file_len).map_err(|u| BackendError::Corrupt(u.reason))
}

/// Shares in a Tahoe-style `storage/` directory.
#[derive(Debug, Clone)]
pub struct DiskBackend {
    layout: Arc<Layout>,
    mutable_rewrite_limit: u64,
    staging: Staging,
    /// Shares being staged now: a second upload of one of them is refused.
    uploading: Arc<Mutex<HashSet<(StorageIndex, ShareNum)>>>,
}

impl DiskBackend {
    /// Opens (creating `shares/`, `shares/incoming/` and the prefix directories if needed)
    /// the node's `storage/` directory. Blocking; call it at start-up.
    pub fn open(storage_dir: PathBuf) -> BackendResult<Self> {
        let layout = Layout::new(&storage_dir);
        fs::create_dir_all(&layout.incoming)
            .map_err(io_ctx(format!("create {}", layout.incoming.display())))?;
        create_prefix_dirs(&layout.shares).map_err(io_ctx(format!(
            "create prefix directories in {}",
            layout.shares.display()
        )))?;
        let staging = fsutil::probe_unnamed(&layout.incoming);
        Ok(Self {
            layout: Arc::new(layout),
            mutable_rewrite_limit: DEFAULT_MUTABLE_REWRITE_LIMIT,
            staging,
            uploading: Arc::default(),
        })
    }

    /// Stages uploads as stock does, at `incoming/<si[:2]>/<si>/<shnum>`, even where unnamed
    /// staging works (tests of the named path, and operators who want to see uploads in
    /// progress).
    pub fn with_named_staging(mut self) -> Self {
        self.staging = Staging::Named;
        self
    }

    /// Sets the largest mutable container rewritten atomically as a whole (default
    /// [`DEFAULT_MUTABLE_REWRITE_LIMIT`]); 0 modifies every existing share in place.
    pub fn with_mutable_rewrite_limit(mut self, bytes: u64) -> Self {
        self.mutable_rewrite_limit = bytes;
        self
    }

    /// The `storage/shares` directory.
    pub fn shares_dir(&self) -> &std::path::Path {
        &self.layout.shares
    }
}

#[async_trait]
impl Backend for DiskBackend {
    fn name(&self) -> &'static str {
        "disk"
    }

    async fn list_shares(&self, si: &StorageIndex) -> BackendResult<Vec<StoredShare>> {
        let layout = self.layout.clone();
        let si = *si;
        blocking(move || {
            let files = layout::share_files(&layout, &si).map_err(io_ctx("list shares"))?;
            let mut out = Vec::with_capacity(files.len());
            for (shnum, path) in files {
                // Gone or replaced by a non-file since the listing: not a share.
                let Some(file) = open_share(&path, false).map_err(io_ctx("open share"))? else {
                    continue;
                };
                let (head, file_len) = probe(&file).map_err(io_ctx("read share header"))?;
                out.push(match container::parse(&head, file_len) {
                    Ok(c) => StoredShare {
                        shnum,
                        kind: match c {
                            Container::Immutable(_) => ShareKind::Immutable,
                            Container::Mutable(_) => ShareKind::Mutable,
                        },
                        size: c.data_len(),
                        corrupt: None,
                    },
                    Err(u) => StoredShare {
                        shnum,
                        kind: if u.looks_mutable {
                            ShareKind::Mutable
                        } else {
                            ShareKind::Immutable
                        },
                        size: 0,
                        corrupt: Some(u.reason),
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    async fn read(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> BackendResult<Bytes> {
        let layout = self.layout.clone();
        let si = *si;
        blocking(move || {
            let file = layout::open_share_file(&layout, &si, shnum, false)
                .map_err(io_ctx("open share"))?
                .ok_or(BackendError::NotFound)?;
            let c = container_of(&file)?;
            let data_len = c.data_len();
            if offset >= data_len || len == 0 {
                return Ok(Bytes::new());
            }
            let n = len.min(data_len - offset);
            let n = usize::try_from(n)
                .map_err(|_| BackendError::Invalid(format!("read of {n} bytes is too large")))?;
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, c.data_offset() + offset)
                .map_err(|e| match e.kind() {
                    // Only possible if the file shrank under us.
                    ErrorKind::UnexpectedEof => {
                        BackendError::Corrupt("share file shorter than its header says".into())
                    }
                    _ => io_ctx("read share")(e),
                })?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn start_immutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        allocated_size: u64,
    ) -> BackendResult<Box<dyn ImmutableUpload>> {
        if allocated_size > MAX_DATA_LEN {
            return Err(BackendError::Invalid(format!(
                "allocated size {allocated_size} is too large"
            )));
        }
        let layout = self.layout.clone();
        let si = *si;
        let staging = self.staging;
        let claim = Uploading::claim(&self.uploading, si, shnum)?;
        let (file, direct) = blocking({
            let layout = layout.clone();
            move || {
                let file = create_staged(&layout, staging, &si, shnum, allocated_size)?;
                // Large shares that arrive in order bypass the page cache (see `direct`).
                let direct = if allocated_size >= direct::MIN_SHARE {
                    let path = match staging {
                        Staging::Named => layout.incoming_path(&si, shnum),
                        Staging::Unnamed => fsutil::fd_path(&file),
                    };
                    DirectAppender::open(&path, &container::immutable_header(allocated_size))
                } else {
                    None
                };
                Ok((file, direct))
            }
        })
        .await?;
        Ok(Box::new(DiskUpload {
            layout,
            staging,
            _claim: claim,
            si,
            shnum,
            allocated: allocated_size,
            staged: Arc::new(tokio::sync::Mutex::new(Staged {
                file,
                end: 0,
                unflushed: None,
                direct,
            })),
            finished: false,
        }))
    }

    async fn mutable_write_enabler(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> BackendResult<Option<[u8; 32]>> {
        let layout = self.layout.clone();
        let si = *si;
        blocking(move || {
            let Some(file) = layout::open_share_file(&layout, &si, shnum, false)
                .map_err(io_ctx("open share"))?
            else {
                return Ok(None);
            };
            let (h, _) = mutable::mutable_header(&file)?;
            Ok(Some(h.write_enabler))
        })
        .await
    }

    async fn write_mutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        write: MutableWrite,
    ) -> BackendResult<u64> {
        let layout = self.layout.clone();
        let limit = self.mutable_rewrite_limit;
        let si = *si;
        blocking(move || mutable::write(&layout, limit, &si, shnum, &write)).await
    }

    async fn delete(&self, si: &StorageIndex, shnum: ShareNum) -> BackendResult<()> {
        let layout = self.layout.clone();
        let si = *si;
        blocking(move || {
            let path = layout.share_path(&si, shnum);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => Ok(()), // not a share
                Ok(_) => mutable::remove_share_file(&layout, &si, &path),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_ctx("delete share")(e)),
            }
        })
        .await
    }

    async fn list_storage_indexes(
        &self,
        after: Option<StorageIndex>,
        limit: usize,
    ) -> BackendResult<Vec<StorageIndex>> {
        let layout = self.layout.clone();
        blocking(move || {
            layout::storage_indexes(&layout, after, limit).map_err(io_ctx("list storage indexes"))
        })
        .await
    }

    async fn available_space(&self) -> BackendResult<Option<u64>> {
        let layout = self.layout.clone();
        blocking(move || {
            let st = rustix::fs::statvfs(&layout.shares)
                .map_err(|e| io_ctx("statvfs")(io::Error::from(e)))?;
            Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
        })
        .await
    }

    async fn clean_incoming(&self) -> BackendResult<()> {
        // Whatever was staging before (a crash, or an upload never dropped) is gone.
        self.uploading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let layout = self.layout.clone();
        blocking(move || {
            match fs::remove_dir_all(&layout.incoming) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_ctx("remove incoming")(e)),
            }
            fs::create_dir_all(&layout.incoming).map_err(io_ctx("create incoming"))
        })
        .await
    }
}

/// Creates those of the 1024 prefix directories `shares/<si[:2]>` that do not exist, durably.
/// Storing a share then never creates one (and fsyncs `shares/` for it): on a young server
/// most uploads would otherwise land in a new prefix and pay one more fsync. Stock Tahoe
/// creates them lazily and reads a tree that has all of them. Whatever is in the way of one
/// is left alone (storing a share there fails with a clear error, as before).
fn create_prefix_dirs(shares: &std::path::Path) -> io::Result<()> {
    let mut made = false;
    for p in 0..PREFIXES {
        match fs::create_dir(shares.join(StorageIndex::first_with_prefix(p).prefix())) {
            Ok(()) => made = true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if made {
        fsync_dir(shares)?;
        if let Some(storage) = shares.parent() {
            fsync_dir(storage)?;
        }
    }
    Ok(())
}

/// A share being staged, registered with its backend until dropped. One server owns a
/// storage directory, so this registry (not the filesystem, which has no name for an unnamed
/// staged file) is what refuses a second concurrent upload of a share.
struct Uploading {
    set: Arc<Mutex<HashSet<(StorageIndex, ShareNum)>>>,
    key: (StorageIndex, ShareNum),
}

impl std::fmt::Debug for Uploading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Uploading").field(&self.key).finish()
    }
}

impl Uploading {
    fn claim(
        set: &Arc<Mutex<HashSet<(StorageIndex, ShareNum)>>>,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> BackendResult<Self> {
        let mut held = set.lock().unwrap_or_else(PoisonError::into_inner);
        if !held.insert((si, shnum)) {
            return Err(BackendError::Io {
                message: format!("an upload of share {si}/{shnum} is already in progress"),
                transient: true,
            });
        }
        Ok(Self {
            set: set.clone(),
            key: (si, shnum),
        })
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Where uploads are staged until they commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staging {
    /// Stock's staging path, `incoming/<si[:2]>/<si>/<shnum>`, renamed into place.
    Named,
    /// An unnamed file (`O_TMPFILE`) in `incoming/`, linked into place at commit: no staging
    /// directories to create, sync and remove, nothing to clean up after a crash.
    Unnamed,
}

/// Creates the staged file of a new upload with stock's allocation header.
fn create_staged(
    layout: &Layout,
    staging: Staging,
    si: &StorageIndex,
    shnum: ShareNum,
    allocated: u64,
) -> BackendResult<File> {
    match fs::symlink_metadata(layout.share_path(si, shnum)) {
        Ok(_) => return Err(BackendError::AlreadyExists),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_ctx("check share")(e)),
    }
    if staging == Staging::Unnamed {
        let file =
            fsutil::create_unnamed(&layout.incoming).map_err(io_ctx("create staged share"))?;
        file.write_all_at(&container::immutable_header(allocated), 0)
            .map_err(io_ctx("write staged share header"))?;
        return Ok(file);
    }
    let path = layout.incoming_path(si, shnum);
    let mut attempts = 0;
    let file = loop {
        fs::create_dir_all(layout.incoming_si_dir(si)).map_err(io_ctx("create incoming"))?;
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => break f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(BackendError::Io {
                    message: format!("an upload of share {si}/{shnum} is already in progress"),
                    transient: true,
                });
            }
            // A concurrent commit removed the (then empty) incoming directory.
            Err(e) if e.kind() == ErrorKind::NotFound && attempts < 3 => attempts += 1,
            Err(e) => return Err(io_ctx("create staged share")(e)),
        }
    };
    if let Err(e) = file.write_all_at(&container::immutable_header(allocated), 0) {
        drop(file);
        remove_staged(layout, si, shnum);
        return Err(io_ctx("write staged share header")(e));
    }
    Ok(file)
}

/// Removes a staged file and its then-empty incoming directories.
fn remove_staged(layout: &Layout, si: &StorageIndex, shnum: ShareNum) {
    let _ = fs::remove_file(layout.incoming_path(si, shnum));
    remove_dir_if_empty(&layout.incoming_si_dir(si));
    remove_dir_if_empty(&layout.incoming_prefix_dir(si));
}

/// The staged file and the end of the data written so far (updated by the blocking task that
/// did the write, so a write whose future was dropped still counts once it finishes).
#[derive(Debug)]
struct Staged {
    file: File,
    end: u64,
    /// The data range written since writeback was last started, if any.
    unflushed: Option<(u64, u64)>,
    /// Direct writes while the data arrives in order; `None` once anything else happened.
    direct: Option<DirectAppender>,
}

/// Bytes written to a staged share between two starts of the kernel's writeback.
pub const WRITEBACK_BYTES: u64 = 4 << 20;

impl Staged {
    /// Writes `data` at data offset `offset`: appended directly while the share arrives in
    /// order, else (after spilling the direct tail) the ordinary way.
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let at = IMMUTABLE_HEADER_LEN + offset;
        if let Some(d) = self.direct.as_mut() {
            if d.next_offset() == at {
                match d.append(data) {
                    Ok(()) => {
                        self.end = self.end.max(offset + data.len() as u64);
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "disk: direct write failed, writing through the page cache");
                    }
                }
            }
            self.spill()?;
        }
        self.file.write_all_at(data, at)?;
        self.written(offset, offset + data.len() as u64);
        Ok(())
    }

    /// Ends direct writes: the bytes they still buffer go to the file the ordinary way.
    fn spill(&mut self) -> io::Result<()> {
        if let Some(d) = &self.direct {
            d.spill(&self.file)?;
            self.direct = None;
        }
        Ok(())
    }

    /// Notes that data bytes `start..end` were written and starts their writeback once
    /// [`WRITEBACK_BYTES`] have accumulated. A hint: failure changes nothing (the fsync at
    /// commit still makes everything durable).
    fn written(&mut self, start: u64, end: u64) {
        self.end = self.end.max(end);
        let (lo, hi) = match self.unflushed {
            Some((lo, hi)) => (lo.min(start), hi.max(end)),
            None => (start, end),
        };
        if hi - lo < WRITEBACK_BYTES {
            self.unflushed = Some((lo, hi));
            return;
        }
        self.unflushed = None;
        #[cfg(target_os = "linux")]
        {
            let len = std::num::NonZeroU64::new(hi - lo);
            let _ = rustix::fs::fadvise(
                &self.file,
                IMMUTABLE_HEADER_LEN + lo,
                len,
                rustix::fs::Advice::DontNeed,
            );
        }
    }
}

/// A staged immutable upload on disk.
#[derive(Debug)]
struct DiskUpload {
    layout: Arc<Layout>,
    staging: Staging,
    /// Released when the upload ends, however it ends.
    _claim: Uploading,
    si: StorageIndex,
    shnum: ShareNum,
    allocated: u64,
    /// Held by each write's blocking task, so commit and abort wait for stray writes.
    staged: Arc<tokio::sync::Mutex<Staged>>,
    /// Committed or aborted: nothing to clean up on drop.
    finished: bool,
}

/// What a commit attempt did.
struct CommitOutcome {
    renamed: bool,
    result: BackendResult<u64>,
}

fn commit_blocking(
    layout: &Layout,
    staging: Staging,
    si: &StorageIndex,
    shnum: ShareNum,
    allocated: u64,
    staged: &Staged,
) -> CommitOutcome {
    let not_renamed = |e| CommitOutcome {
        renamed: false,
        result: Err(e),
    };
    let end = staged.end;
    if end != allocated {
        // Stock records the allocated size; we record what the share holds.
        if let Err(e) = staged
            .file
            .write_all_at(&container::immutable_size_field(end), 4)
        {
            return not_renamed(io_ctx("update staged share header")(e));
        }
    }
    let to = layout.share_path(si, shnum);
    let dir = layout.si_dir(si);
    // The file is exactly header + data up to the highest byte written. Its fsync and the
    // creation of the share directory are independent: one waits for the other's disk.
    let (synced, dir_made) = std::thread::scope(|scope| {
        let job =
            std::thread::Builder::new().spawn_scoped(scope, || ensure_share_dir_durable(&dir));
        let synced = staged.file.sync_all();
        let made = match job {
            Ok(job) => job
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("directory task panicked"))),
            // No thread to spare: one after the other.
            Err(_) => ensure_share_dir_durable(&dir),
        };
        (synced, made)
    });
    if let Err(e) = synced {
        return not_renamed(io_ctx("fsync staged share")(e));
    }
    if let Err(e) = dir_made {
        return not_renamed(io_ctx("create share directory")(e));
    }
    let mut attempts = 0;
    loop {
        let placed = match staging {
            Staging::Named => fsutil::rename_no_replace(&layout.incoming_path(si, shnum), &to),
            Staging::Unnamed => fsutil::link_unnamed(&staged.file, &to),
        };
        match placed {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return not_renamed(BackendError::AlreadyExists);
            }
            // The share directory was removed by a concurrent delete: recreate and retry.
            Err(e) if e.kind() == ErrorKind::NotFound && attempts < 3 => {
                attempts += 1;
                if let Err(e) = ensure_share_dir_durable(&dir) {
                    return not_renamed(io_ctx("create share directory")(e));
                }
            }
            Err(e) => return not_renamed(io_ctx("put share into place")(e)),
        }
    }
    let linked = match staging {
        Staging::Named => {
            remove_dir_if_empty(&layout.incoming_si_dir(si));
            remove_dir_if_empty(&layout.incoming_prefix_dir(si));
            Ok(())
        }
        // The link raised the file's link count, which is the file's own metadata: without a
        // journal to commit it with the directory, only syncing the file makes it durable.
        Staging::Unnamed => staged.file.sync_all(),
    };
    CommitOutcome {
        renamed: true,
        result: linked
            .map_err(io_ctx("fsync linked share"))
            .and_then(|()| fsync_dir(&dir).map_err(io_ctx("fsync share directory")))
            .map(|()| end),
    }
}

#[async_trait]
impl ImmutableUpload for DiskUpload {
    async fn read(&mut self, offset: u64, len: u64) -> BackendResult<Bytes> {
        let mut staged = self.staged.clone().lock_owned().await;
        let end = offset.saturating_add(len).min(staged.end);
        if end <= offset {
            return Ok(Bytes::new());
        }
        let n = usize::try_from(end - offset)
            .map_err(|_| BackendError::Invalid("read too large".into()))?;
        blocking(move || {
            staged.spill().map_err(io_ctx("write staged share"))?;
            let mut buf = vec![0u8; n];
            staged
                .file
                .read_exact_at(&mut buf, IMMUTABLE_HEADER_LEN + offset)
                .map_err(io_ctx("read staged share"))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn write(&mut self, offset: u64, data: Bytes) -> BackendResult<()> {
        super::staged_write_end(offset, data.len(), self.allocated)?;
        if data.is_empty() {
            return Ok(());
        }
        let mut staged = self.staged.clone().lock_owned().await;
        blocking(move || {
            staged
                .write(offset, &data)
                .map_err(io_ctx("write staged share"))
        })
        .await
    }

    async fn commit(mut self: Box<Self>) -> BackendResult<u64> {
        let mut staged = self.staged.clone().lock_owned().await;
        let layout = self.layout.clone();
        let (si, shnum, allocated, staging) = (self.si, self.shnum, self.allocated, self.staging);
        let outcome = tokio::task::spawn_blocking(move || match staged.spill() {
            Ok(()) => commit_blocking(&layout, staging, &si, shnum, allocated, &staged),
            Err(e) => CommitOutcome {
                renamed: false,
                result: Err(io_ctx("write staged share")(e)),
            },
        })
        .await
        .map_err(|e| BackendError::Io {
            message: format!("disk backend task failed: {e}"),
            transient: false,
        })?;
        // Once renamed, the staged path is gone (or belongs to nobody): never clean it up.
        self.finished = outcome.renamed;
        outcome.result
    }

    async fn abort(mut self: Box<Self>) -> BackendResult<()> {
        let _staged = self.staged.clone().lock_owned().await;
        self.finished = true;
        if self.staging == Staging::Unnamed {
            return Ok(()); // closing the file frees it
        }
        let layout = self.layout.clone();
        let (si, shnum) = (self.si, self.shnum);
        blocking(move || {
            remove_staged(&layout, &si, shnum);
            Ok(())
        })
        .await
    }
}

impl Drop for DiskUpload {
    fn drop(&mut self) {
        if !self.finished && self.staging == Staging::Named {
            remove_staged(&self.layout, &self.si, self.shnum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large share that arrives in order goes to the file with `O_DIRECT` (the test
    /// directory is on a filesystem that has it), and a read while staged ends that.
    #[tokio::test]
    async fn in_order_uploads_of_large_shares_bypass_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let b = DiskBackend::open(dir.path().join("storage")).unwrap();
        let si = StorageIndex([7u8; 16]);
        let len = 3 * direct::CHUNK as u64 + 100;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let up = b.start_immutable(&si, 0, len).await.unwrap();
        let disk = format!("{up:?}");
        assert!(disk.contains("DirectAppender"), "no direct writer: {disk}");
        let mut up = up;
        let half = len / 2;
        up.write(0, Bytes::copy_from_slice(&data[..half as usize]))
            .await
            .unwrap();
        up.write(half, Bytes::copy_from_slice(&data[half as usize..]))
            .await
            .unwrap();
        let debug = format!("{up:?}");
        assert!(
            debug.contains(&format!("direct_bytes: {}", 3 * direct::CHUNK)),
            "{debug}"
        );
        assert_eq!(&up.read(5, 3).await.unwrap()[..], &data[5..8]);
        assert!(!format!("{up:?}").contains("DirectAppender"));
        assert_eq!(up.commit().await.unwrap(), len);
        let got = b.read(&si, 0, 0, len).await.unwrap();
        assert!(got[..] == data[..]);
    }

    /// Small shares are written the ordinary way.
    #[tokio::test]
    async fn small_shares_do_not_use_direct_io() {
        let dir = tempfile::tempdir().unwrap();
        let b = DiskBackend::open(dir.path().join("storage")).unwrap();
        let up = b
            .start_immutable(&StorageIndex([8u8; 16]), 0, direct::MIN_SHARE - 1)
            .await
            .unwrap();
        assert!(!format!("{up:?}").contains("DirectAppender"));
    }
}

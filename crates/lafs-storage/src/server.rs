//! The storage server proper: the share state machine between the frontend and a backend.
//!
//! Every share has a state in the lease database (leasedb.rst): NONE (no row), COMING (being
//! written; counts as leased, never collected), STABLE, GOING (being deleted; may not be
//! re-created until it is gone). Transitions:
//! - allocate: NONE -> COMING (with a lease for the requesting account);
//! - last byte of an immutable upload written and made durable: COMING -> STABLE;
//! - abort, or an upload abandoned for [`ServerConfig::upload_timeout`]: COMING -> NONE;
//! - first mutable write: NONE -> STABLE (written durably before the row is made);
//! - a mutable write to length 0: STABLE -> GOING -> NONE.
//!
//! A share found in the backend but missing from the database is adopted when first
//! requested (the "3a" rule): added with a starter lease, STABLE (complete shares only reach the
//! backend's listing once committed). Modifications of one storage index's mutable shares are
//! serialized. Leases are added or renewed for the requesting account on allocation, on mutable
//! writes and on `add-or-renew-lease`; renew/cancel secrets are checked for form by the
//! protocol layer and not stored.

use crate::backend::{
    Backend, BackendError, ImmutableUpload, MutableWrite, WriteData, WriteVector,
};
use crate::leasedb::{AccountId, AdoptOutcome, Lease, LeaseDbError, LeaseDbHandle, ShareState};
use crate::ranges::RangeSet;
use crate::types::{ShareKind, ShareNum, StorageIndex};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Lease length granted on add or renew (stock: 31 days).
pub const LEASE_DURATION: Duration = Duration::from_secs(31 * 24 * 60 * 60);

/// Seconds since the Unix epoch; injected so tests can move time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// Server policy.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Space to keep free on the backend (`[storage] reserved_space`).
    pub reserved_space: u64,
    /// Refuse new shares and mutable writes (`[storage] readonly`).
    pub readonly: bool,
    /// Largest immutable share accepted.
    pub max_immutable_share_size: u64,
    /// Largest mutable share accepted.
    pub max_mutable_share_size: u64,
    /// This server's 20-byte node id (recorded in mutable containers).
    pub nodeid: [u8; 20],
    /// Version string announced to clients.
    pub application_version: String,
    /// Uploads idle this long are aborted.
    pub upload_timeout: Duration,
    /// A client key without an account gets one created (`true`, the default) or is refused
    /// (`[storage] accounts.unknown_keys = refuse`).
    pub accept_unknown_keys: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            reserved_space: 0,
            readonly: false,
            max_immutable_share_size: 1 << 50,
            max_mutable_share_size: 69_105 * 1000 * 1000 * 1000 * 1000,
            nodeid: [0; 20],
            application_version: format!("lafs/{}", env!("CARGO_PKG_VERSION")),
            upload_timeout: Duration::from_secs(30 * 60),
            accept_unknown_keys: true,
        }
    }
}

/// Why a request failed; the frontend maps each to a GBS status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No such share or upload (404).
    #[error("no such share")]
    NotFound,
    /// The upload secret does not match the allocation's (401).
    #[error("wrong upload secret")]
    WrongUploadSecret,
    /// The write enabler does not match the share's (401).
    #[error("wrong write enabler")]
    WrongWriteEnabler,
    /// A write overlaps bytes already written with different bytes (409).
    #[error("write conflicts with data already written")]
    Conflict,
    /// Abort of a share already complete (405).
    #[error("share is already complete")]
    AlreadyComplete,
    /// A write outside the allocated size (416).
    #[error("write outside the allocated size")]
    OutOfRange,
    /// Bad request (400).
    #[error("{0}")]
    BadRequest(String),
    /// Read-only server or disabled account (403? stock: 400-class refusal).
    #[error("{0}")]
    Refused(String),
    /// A share whose container is corrupt (500 with a clear reason).
    #[error("share is corrupt: {0}")]
    Corrupt(String),
    /// Backend failure (500, or 503 if transient).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Lease database failure (500).
    #[error("lease database: {0}")]
    LeaseDb(#[from] LeaseDbError),
}

/// Result alias.
pub type ServerResult<T> = Result<T, ServerError>;

/// What [`StorageServer::reconcile_share`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Nothing needed doing (any more).
    Nothing,
    /// The share was gone from the backend: its row and leases were removed.
    Vanished,
    /// The share's recorded size was corrected.
    Resized,
    /// An interrupted deletion was finished; this many bytes were freed.
    Collected(u64),
}

/// Outcome of an immutable write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The share is complete and durable.
    pub complete: bool,
    /// Ranges still to be written (`[begin, end)`).
    pub required: Vec<(u64, u64)>,
}

/// One mutable share's tests and writes.
#[derive(Debug, Clone, Default)]
pub struct TestWrite {
    /// `(offset, specimen)` pairs: the share's bytes at offset (clipped) must equal specimen;
    /// the length tested is `size`.
    pub tests: Vec<(u64, u64, Bytes)>,
    /// Writes (their data possibly spooled to a file).
    pub writes: Vec<(u64, WriteData)>,
    /// New length (only shrinks; 0 deletes).
    pub new_length: Option<u64>,
}

/// Result of read-test-write.
#[derive(Debug, Clone, Default)]
pub struct RtwOutcome {
    /// All tests passed and the writes were applied.
    pub success: bool,
    /// For every existing share, the read vector's data (read before writing).
    pub data: BTreeMap<ShareNum, Vec<Bytes>>,
}

/// Availability figures for the version response.
#[derive(Debug, Clone, Copy)]
pub struct SpaceInfo {
    /// Space a client may use now.
    pub available: u64,
    /// Largest immutable share accepted.
    pub max_immutable: u64,
    /// Largest mutable share accepted.
    pub max_mutable: u64,
}

#[derive(Debug)]
struct Upload {
    staged: Option<Box<dyn ImmutableUpload>>,
    allocated_size: u64,
    upload_secret: Vec<u8>,
    written: RangeSet,
    last_activity: Instant,
}

type UploadKey = (StorageIndex, ShareNum);

/// The storage server.
#[derive(Debug)]
pub struct StorageServer {
    backend: Arc<dyn Backend>,
    db: LeaseDbHandle,
    cfg: ServerConfig,
    clock: Arc<dyn Clock>,
    uploads: Mutex<HashMap<UploadKey, Arc<tokio::sync::Mutex<Upload>>>>,
    mutable_locks: Mutex<HashMap<StorageIndex, Weak<tokio::sync::Mutex<()>>>>,
    /// When each account's `last_seen` was last written (at most once a minute each: a
    /// database write per request would cost an fsync per request).
    last_seen: Mutex<HashMap<AccountId, i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl StorageServer {
    /// A server over `backend` and `db`. Call [`startup`](Self::startup) before serving.
    pub fn new(
        backend: Arc<dyn Backend>,
        db: LeaseDbHandle,
        cfg: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            backend,
            db,
            cfg,
            clock,
            uploads: Mutex::new(HashMap::new()),
            mutable_locks: Mutex::new(HashMap::new()),
            last_seen: Mutex::new(HashMap::new()),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The lease database.
    pub fn leasedb(&self) -> &LeaseDbHandle {
        &self.db
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// The clock the server (and its crawler) reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Makes the lease database agree with the backend for one share the crawler found
    /// different (STABLE in the database but missing from the backend, or of another size;
    /// or GOING and still present), re-checking both under the storage index's modification
    /// lock so that a concurrent mutable write is never mistaken for a change made behind
    /// the server's back. Returns what was done.
    pub async fn reconcile_share(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> ServerResult<Reconciled> {
        let guard = self.mutable_lock(si);
        let _held = guard.lock().await;
        let Some(rec) = self.db.get_share(*si, shnum).await? else {
            return Ok(Reconciled::Nothing);
        };
        let listed = self.backend.list_shares(si).await?;
        let found = listed.iter().find(|s| s.shnum == shnum);
        match (rec.state, found) {
            (ShareState::Stable, None) => {
                self.db.remove_share(*si, shnum).await?;
                tracing::warn!(si = %si, shnum, "a share vanished from the backend; its lease database entry and leases are removed");
                Ok(Reconciled::Vanished)
            }
            (ShareState::Stable, Some(s)) if s.corrupt.is_none() && s.size != rec.used_space => {
                self.db.change_share_space(*si, shnum, s.size).await?;
                Ok(Reconciled::Resized)
            }
            (ShareState::Going, None) => {
                // A deletion that crashed after the backend delete: finish it.
                self.db.remove_share(*si, shnum).await?;
                Ok(Reconciled::Nothing)
            }
            (ShareState::Going, Some(_)) => {
                // A deletion that crashed before the backend delete: finish it.
                self.backend.delete(si, shnum).await?;
                self.db.remove_share(*si, shnum).await?;
                Ok(Reconciled::Collected(rec.used_space))
            }
            _ => Ok(Reconciled::Nothing),
        }
    }

    /// Garbage-collects one share if it is STABLE and unleased: STABLE -> GOING (atomically
    /// with the unleased check), backend delete, GOING -> NONE. Returns its size if it was
    /// deleted. A backend failure leaves it GOING; the crawler finishes the deletion later.
    pub async fn collect_if_unleased(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> ServerResult<Option<u64>> {
        let guard = self.mutable_lock(si);
        let _held = guard.lock().await;
        let Some(rec) = self.db.mark_share_going_if_unleased(*si, shnum).await? else {
            return Ok(None);
        };
        self.backend.delete(si, shnum).await?;
        self.db.remove_share(*si, shnum).await?;
        tracing::info!(si = %si, shnum, bytes = rec.used_space, "garbage-collected an unleased share");
        Ok(Some(rec.used_space))
    }

    /// Recovers from a crash: COMING immutable shares whose upload never completed are
    /// forgotten (their staged bytes are removed); COMING shares that did complete in the
    /// backend become STABLE.
    pub async fn startup(&self) -> ServerResult<()> {
        self.backend.clean_incoming().await?;
        loop {
            let coming = self.db.shares_in_state(ShareState::Coming, 1000).await?;
            if coming.is_empty() {
                break;
            }
            for rec in coming {
                let listed = self.backend.list_shares(&rec.storage_index).await?;
                match listed.iter().find(|s| s.shnum == rec.shnum) {
                    Some(s) if s.corrupt.is_none() => {
                        self.db
                            .mark_share_stable(rec.storage_index, rec.shnum, s.size)
                            .await?;
                    }
                    _ => self.forget(rec.storage_index, rec.shnum).await?,
                }
            }
        }
        Ok(())
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// COMING -> GOING -> NONE for a write that will never complete.
    async fn forget(&self, si: StorageIndex, shnum: ShareNum) -> ServerResult<()> {
        self.db.abandon_share(si, shnum).await?;
        self.db.remove_share(si, shnum).await?;
        Ok(())
    }

    fn lease_times(&self) -> (i64, i64) {
        let now = self.now();
        (now, now + LEASE_DURATION.as_secs() as i64)
    }

    /// What `account` uses on this server and its quota (the lafs usage extension endpoint).
    pub async fn account_usage(
        &self,
        account: AccountId,
    ) -> ServerResult<(crate::leasedb::AccountUsage, Option<u64>)> {
        let usage = self.db.account_usage(account).await?;
        let quota = self.db.get_account(account).await?.and_then(|a| a.quota);
        Ok((usage, quota))
    }

    /// The account a request acts for: the anonymous account without a client key, else the
    /// key's account, created on first use unless the server refuses unknown keys.
    pub async fn account_for_key(&self, key: Option<&str>) -> ServerResult<AccountId> {
        let id = self.resolve_account(key).await?;
        let now = self.now();
        let due = {
            let mut seen = lock(&self.last_seen);
            let last = seen.entry(id).or_insert(i64::MIN);
            let due = now.saturating_sub(*last) >= 60;
            if due {
                *last = now;
            }
            due
        };
        if due {
            self.db.touch_account_last_seen(id, now).await?;
        }
        Ok(id)
    }

    async fn resolve_account(&self, key: Option<&str>) -> ServerResult<AccountId> {
        let Some(key) = key else {
            return Ok(AccountId::ANONYMOUS);
        };
        if let Some(a) = self.db.get_account_by_pubkey(key.to_string()).await? {
            return Ok(a.id);
        }
        if !self.cfg.accept_unknown_keys {
            return Err(ServerError::Refused(
                "this server accepts only client keys its operator has added (lafs storage accounts add)".into(),
            ));
        }
        match self
            .db
            .create_account(Some(key.to_string()), "client".into(), self.now())
            .await
        {
            Ok(id) => {
                tracing::info!(account = %id, "created an account for a new client key");
                Ok(id)
            }
            // Two first requests raced: the other one created it.
            Err(LeaseDbError::DuplicatePubkey(id)) => Ok(id),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses a disabled or unknown account, or one whose usage plus `growth` bytes would
    /// exceed its quota. Reads stay allowed for everyone (anyone with the cap can read).
    async fn check_account(&self, account: AccountId, growth: u64) -> ServerResult<()> {
        let Some(a) = self.db.get_account(account).await? else {
            return Err(ServerError::Refused(format!("unknown account {account}")));
        };
        if !a.enabled {
            return Err(ServerError::Refused(format!(
                "account {account} ({}) is disabled on this server",
                a.name
            )));
        }
        if let Some(quota) = a.quota
            && growth > 0
        {
            let used = self.db.account_usage(account).await?.used_space;
            if used.saturating_add(growth) > quota {
                return Err(ServerError::Refused(format!(
                    "quota exceeded: account {account} ({}) uses {used} of its {quota} bytes and this needs {growth} more",
                    a.name
                )));
            }
        }
        Ok(())
    }

    /// Space and size limits.
    pub async fn space(&self) -> ServerResult<SpaceInfo> {
        let available = self.available_space().await?;
        let max_immutable = if self.cfg.readonly {
            0
        } else {
            self.cfg.max_immutable_share_size.min(available)
        };
        Ok(SpaceInfo {
            available,
            max_immutable,
            max_mutable: self.cfg.max_mutable_share_size,
        })
    }

    async fn available_space(&self) -> ServerResult<u64> {
        if self.cfg.readonly {
            return Ok(0);
        }
        let free = self.backend.available_space().await?.unwrap_or(u64::MAX);
        let pending: u64 = {
            let uploads: Vec<_> = lock(&self.uploads).values().cloned().collect();
            let mut sum = 0u64;
            for u in uploads {
                if let Ok(u) = u.try_lock() {
                    let written: u64 = u
                        .written
                        .intersections(0, u.allocated_size)
                        .iter()
                        .map(|(a, b)| b - a)
                        .sum();
                    sum = sum.saturating_add(u.allocated_size - written);
                }
            }
            sum
        };
        Ok(free
            .saturating_sub(self.cfg.reserved_space)
            .saturating_sub(pending))
    }

    /// Reconciles one storage index with the database: shares present in the backend but
    /// unknown to the database are adopted with a starter lease; corrupt ones are recorded.
    async fn adopt_unknown(
        &self,
        si: &StorageIndex,
    ) -> ServerResult<Vec<crate::backend::StoredShare>> {
        let listed = self.backend.list_shares(si).await?;
        if listed.is_empty() {
            return Ok(listed);
        }
        let known: BTreeMap<ShareNum, ShareState> = self
            .db
            .get_shares(*si)
            .await?
            .into_iter()
            .map(|r| (r.shnum, r.state))
            .collect();
        for s in &listed {
            if known.contains_key(&s.shnum) {
                continue;
            }
            let outcome = self
                .db
                .adopt_share(*si, s.shnum, s.kind, s.size, true, self.now())
                .await?;
            if let AdoptOutcome::Adopted(_) = outcome {
                tracing::info!(si = %si, shnum = s.shnum, "adopted a share found in the backend");
            }
            if let Some(reason) = &s.corrupt {
                self.db
                    .mark_share_corrupt(*si, s.shnum, reason.clone())
                    .await?;
            }
        }
        Ok(listed)
    }

    /// Complete shares of `kind` at `si` (corrupt ones included: they exist).
    pub async fn list_shares(
        &self,
        si: &StorageIndex,
        kind: ShareKind,
    ) -> ServerResult<BTreeSet<ShareNum>> {
        let listed = self.adopt_unknown(si).await?;
        let going: BTreeSet<ShareNum> = self
            .db
            .get_shares(*si)
            .await?
            .into_iter()
            .filter(|r| r.state == ShareState::Going)
            .map(|r| r.shnum)
            .collect();
        Ok(listed
            .into_iter()
            .filter(|s| (s.kind == kind || s.corrupt.is_some()) && !going.contains(&s.shnum))
            .map(|s| s.shnum)
            .collect())
    }

    /// Allocates immutable shares for upload, adding or renewing the account's leases on
    /// shares already here. Returns `(already_have, allocated)`.
    pub async fn allocate(
        &self,
        account: AccountId,
        si: &StorageIndex,
        shnums: &BTreeSet<ShareNum>,
        allocated_size: u64,
        upload_secret: &[u8],
    ) -> ServerResult<(BTreeSet<ShareNum>, BTreeSet<ShareNum>)> {
        self.check_account(account, 0).await?;
        let listed = self.adopt_unknown(si).await?;
        let have: BTreeSet<ShareNum> = listed
            .iter()
            .filter(|s| s.kind == ShareKind::Immutable && s.corrupt.is_none())
            .map(|s| s.shnum)
            .collect();
        let states: BTreeMap<ShareNum, ShareState> = self
            .db
            .get_shares(*si)
            .await?
            .into_iter()
            .map(|r| (r.shnum, r.state))
            .collect();
        let (renewed, expires) = self.lease_times();
        let mut already = BTreeSet::new();
        for &shnum in shnums {
            if have.contains(&shnum) && states.get(&shnum) != Some(&ShareState::Going) {
                self.db
                    .add_or_renew_lease(*si, shnum, account, renewed, expires)
                    .await?;
                already.insert(shnum);
            }
        }
        // Every complete share counts as already-have, requested or not (stock behaviour).
        for s in &have {
            if states.get(s) != Some(&ShareState::Going) {
                already.insert(*s);
            }
        }
        let mut allocated = BTreeSet::new();
        if self.cfg.readonly || allocated_size > self.cfg.max_immutable_share_size {
            return Ok((already, allocated));
        }
        // The quota covers the whole request or nothing: no half-stored upload.
        let new = shnums
            .iter()
            .filter(|n| {
                !have.contains(n)
                    && !states.contains_key(n)
                    && !lock(&self.uploads).contains_key(&(*si, **n))
            })
            .count() as u64;
        self.check_account(account, new.saturating_mul(allocated_size))
            .await?;
        let mut remaining = self.available_space().await?;
        for &shnum in shnums {
            if have.contains(&shnum) || states.contains_key(&shnum) {
                continue; // complete, in progress (COMING) or being deleted (GOING)
            }
            if lock(&self.uploads).contains_key(&(*si, shnum)) {
                continue;
            }
            if remaining < allocated_size {
                break;
            }
            match self
                .db
                .start_upload(
                    *si,
                    shnum,
                    ShareKind::Immutable,
                    allocated_size,
                    Lease {
                        account_id: account,
                        renewal_time: renewed,
                        expiration_time: expires,
                    },
                )
                .await
            {
                Ok(()) => {}
                Err(LeaseDbError::ShareGoing { .. } | LeaseDbError::ShareExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            let staged = match self
                .backend
                .start_immutable(si, shnum, allocated_size)
                .await
            {
                Ok(s) => s,
                Err(BackendError::AlreadyExists) => {
                    self.forget(*si, shnum).await?;
                    continue;
                }
                Err(e) => {
                    self.forget(*si, shnum).await?;
                    return Err(e.into());
                }
            };
            let upload = Upload {
                staged: Some(staged),
                allocated_size,
                upload_secret: upload_secret.to_vec(),
                written: RangeSet::new(),
                last_activity: Instant::now(),
            };
            lock(&self.uploads).insert((*si, shnum), Arc::new(tokio::sync::Mutex::new(upload)));
            remaining -= allocated_size;
            allocated.insert(shnum);
        }
        Ok((already, allocated))
    }

    fn upload(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> Option<Arc<tokio::sync::Mutex<Upload>>> {
        lock(&self.uploads).get(&(*si, shnum)).cloned()
    }

    /// Writes `data` at `offset` of an allocated share. Overlapping bytes already written
    /// must be identical. When the whole allocation is written the share is made durable
    /// and STABLE before this returns `complete`.
    pub async fn write(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        upload_secret: &[u8],
        offset: u64,
        data: Bytes,
    ) -> ServerResult<WriteOutcome> {
        let Some(up) = self.upload(si, shnum) else {
            return Err(self.missing_upload_error(si, shnum).await);
        };
        let mut guard = up.lock().await;
        let u = &mut *guard;
        if u.staged.is_none() {
            return Err(ServerError::NotFound);
        }
        if !ct_eq(&u.upload_secret, upload_secret) {
            return Err(ServerError::WrongUploadSecret);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= u.allocated_size)
            .ok_or(ServerError::OutOfRange)?;
        // Overlaps must match what is there; only the gaps are written.
        for (a, b) in u.written.intersections(offset, end) {
            let Some(staged) = u.staged.as_mut() else {
                return Err(ServerError::NotFound);
            };
            let existing = staged.read(a, b - a).await?;
            let new = &data[(a - offset) as usize..(b - offset) as usize];
            if existing.as_ref() != new {
                return Err(ServerError::Conflict);
            }
        }
        for (a, b) in u.written.gaps(offset, end) {
            let part = data.slice((a - offset) as usize..(b - offset) as usize);
            if let Some(staged) = u.staged.as_mut() {
                staged.write(a, part).await?;
            }
        }
        u.written.insert(offset, end);
        u.last_activity = Instant::now();
        let allocated = u.allocated_size;
        if !u.written.covers(0, allocated) {
            return Ok(WriteOutcome {
                complete: false,
                required: u.written.gaps(0, allocated),
            });
        }
        let Some(staged) = u.staged.take() else {
            return Err(ServerError::NotFound);
        };
        let size = staged.commit().await?;
        lock(&self.uploads).remove(&(*si, shnum));
        self.db.mark_share_stable(*si, shnum, size).await?;
        Ok(WriteOutcome {
            complete: true,
            required: Vec::new(),
        })
    }

    async fn missing_upload_error(&self, si: &StorageIndex, shnum: ShareNum) -> ServerError {
        match self.backend.list_shares(si).await {
            Ok(l) if l.iter().any(|s| s.shnum == shnum) => ServerError::AlreadyComplete,
            _ => ServerError::NotFound,
        }
    }

    /// Aborts an upload in progress: the staged bytes are dropped and the share is NONE.
    pub async fn abort(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        upload_secret: &[u8],
    ) -> ServerResult<()> {
        let Some(up) = self.upload(si, shnum) else {
            return Err(self.missing_upload_error(si, shnum).await);
        };
        let mut u = up.lock().await;
        if !ct_eq(&u.upload_secret, upload_secret) {
            return Err(ServerError::WrongUploadSecret);
        }
        let Some(staged) = u.staged.take() else {
            return Err(self.missing_upload_error(si, shnum).await);
        };
        lock(&self.uploads).remove(&(*si, shnum));
        staged.abort().await?;
        self.forget(*si, shnum).await?;
        Ok(())
    }

    /// Aborts uploads idle longer than the configured timeout; returns how many.
    pub async fn reap_idle_uploads(&self) -> ServerResult<usize> {
        let all: Vec<(UploadKey, Arc<tokio::sync::Mutex<Upload>>)> = lock(&self.uploads)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut n = 0;
        for ((si, shnum), up) in all {
            let Ok(mut u) = up.try_lock() else { continue };
            if u.last_activity.elapsed() < self.cfg.upload_timeout {
                continue;
            }
            if let Some(staged) = u.staged.take() {
                lock(&self.uploads).remove(&(si, shnum));
                staged.abort().await?;
                self.forget(si, shnum).await?;
                tracing::info!(si = %si, shnum, "aborted an abandoned upload");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Reads up to `len` bytes at `offset` of a complete share of `kind`.
    pub async fn read(
        &self,
        kind: ShareKind,
        si: &StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> ServerResult<Bytes> {
        // A share the lease database knows as STABLE is read straight from the backend: no
        // listing of the storage index per read (on an object store, a listing of every
        // chunk of every share: a 1 GiB share has 2,048). A share that vanished fails to
        // read (NotFound) and one whose container turns out corrupt is recorded as such by
        // `read_more`, as the listing would have found. `corrupt_reason` is not consulted:
        // clients can set it (`advise_corrupt`), and a client's word must not make a share
        // unreadable for everyone.
        match self.db.get_share(*si, shnum).await? {
            Some(rec) if rec.state == ShareState::Going => return Err(ServerError::NotFound),
            Some(rec) if rec.state == ShareState::Stable => {
                if rec.kind != kind {
                    return Err(ServerError::NotFound);
                }
                return self.read_more(si, shnum, offset, len).await;
            }
            _ => {}
        }
        let listed = self.adopt_unknown(si).await?;
        let Some(share) = listed.iter().find(|s| s.shnum == shnum) else {
            return Err(ServerError::NotFound);
        };
        if let Some(reason) = &share.corrupt {
            return Err(ServerError::Corrupt(reason.clone()));
        }
        if share.kind != kind {
            return Err(ServerError::NotFound);
        }
        if let Some(rec) = self.db.get_share(*si, shnum).await?
            && rec.state == ShareState::Going
        {
            return Err(ServerError::NotFound);
        }
        self.read_more(si, shnum, offset, len).await
    }

    /// Continues a read that [`StorageServer::read`] started: the share's state was checked
    /// then, so this goes straight to the backend (a share collected meanwhile fails to read,
    /// which ends the stream with an error). Corruption found here is recorded as in `read`.
    pub async fn read_more(
        &self,
        si: &StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> ServerResult<Bytes> {
        match self.backend.read(si, shnum, offset, len).await {
            Ok(b) => Ok(b),
            // Gone from the backend (deleted by hand, or collected meanwhile): the crawler
            // reconciles the lease database; the client sees what a listing would show.
            Err(BackendError::NotFound) => Err(ServerError::NotFound),
            Err(BackendError::Corrupt(reason)) => {
                self.db
                    .mark_share_corrupt(*si, shnum, reason.clone())
                    .await?;
                Err(ServerError::Corrupt(reason))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Length of a complete share's data.
    pub async fn share_size(
        &self,
        kind: ShareKind,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> ServerResult<u64> {
        // As in `read`: a STABLE share's size is the lease database's (set when the share was
        // committed, kept current by mutable writes, corrected by the crawler), so a read
        // request costs no listing of the storage index. A share that vanished or went
        // corrupt meanwhile fails at the read that follows.
        match self.db.get_share(*si, shnum).await? {
            Some(rec) if rec.state == ShareState::Going => return Err(ServerError::NotFound),
            Some(rec) if rec.state == ShareState::Stable => {
                return if rec.kind == kind {
                    Ok(rec.used_space)
                } else {
                    Err(ServerError::NotFound)
                };
            }
            _ => {}
        }
        let listed = self.adopt_unknown(si).await?;
        match listed.iter().find(|s| s.shnum == shnum) {
            Some(s) if s.corrupt.is_some() => {
                Err(ServerError::Corrupt(s.corrupt.clone().unwrap_or_default()))
            }
            Some(s) if s.kind == kind => Ok(s.size),
            _ => Err(ServerError::NotFound),
        }
    }

    /// Records a client's report that a share is corrupt.
    pub async fn advise_corrupt(
        &self,
        kind: ShareKind,
        si: &StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> ServerResult<()> {
        let listed = self.adopt_unknown(si).await?;
        if !listed
            .iter()
            .any(|s| s.shnum == shnum && (s.kind == kind || s.corrupt.is_some()))
        {
            return Err(ServerError::NotFound);
        }
        let reason: String = reason.chars().take(1000).collect();
        tracing::warn!(si = %si, shnum, kind = kind.as_str(), reason = %reason, "client reports a corrupt share");
        self.db
            .mark_share_corrupt(*si, shnum, format!("reported by a client: {reason}"))
            .await?;
        Ok(())
    }

    /// Adds or renews the account's lease on every share of `si`.
    pub async fn add_or_renew_lease(
        &self,
        account: AccountId,
        si: &StorageIndex,
    ) -> ServerResult<()> {
        self.check_account(account, 0).await?;
        let listed = self.adopt_unknown(si).await?;
        if listed.is_empty() {
            return Err(ServerError::NotFound);
        }
        let (renewed, expires) = self.lease_times();
        let n = self
            .db
            .add_or_renew_leases_for_si(*si, account, renewed, expires)
            .await?;
        if n == 0 {
            return Err(ServerError::NotFound);
        }
        Ok(())
    }

    fn mutable_lock(&self, si: &StorageIndex) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.mutable_locks);
        if let Some(l) = locks.get(si).and_then(Weak::upgrade) {
            return l;
        }
        locks.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(*si, Arc::downgrade(&l));
        l
    }

    /// Mutable read-test-write: reads `read_vector` from every existing share, evaluates
    /// every test, and only if all pass applies every write. Serialized per storage index.
    pub async fn read_test_write(
        &self,
        account: AccountId,
        si: &StorageIndex,
        write_enabler: &[u8; 32],
        tw: &BTreeMap<ShareNum, TestWrite>,
        read_vector: &[(u64, u64)],
    ) -> ServerResult<RtwOutcome> {
        let guard = self.mutable_lock(si);
        let _held = guard.lock().await;
        let listed = self.adopt_unknown(si).await?;
        let existing: BTreeMap<ShareNum, u64> = listed
            .iter()
            .filter(|s| s.kind == ShareKind::Mutable && s.corrupt.is_none())
            .map(|s| (s.shnum, s.size))
            .collect();
        if listed.iter().any(|s| s.kind == ShareKind::Immutable) {
            return Err(ServerError::BadRequest(
                "storage index holds immutable shares".into(),
            ));
        }
        for &shnum in existing.keys() {
            let we = self.backend.mutable_write_enabler(si, shnum).await?;
            if let Some(we) = we
                && !ct_eq(&we, write_enabler)
            {
                return Err(ServerError::WrongWriteEnabler);
            }
        }
        let mut out = RtwOutcome::default();
        for (&shnum, &size) in &existing {
            let mut reads = Vec::with_capacity(read_vector.len());
            for &(offset, len) in read_vector {
                if offset >= size {
                    reads.push(Bytes::new());
                } else {
                    reads.push(self.backend.read(si, shnum, offset, len).await?);
                }
            }
            out.data.insert(shnum, reads);
        }
        // Tests: equality with the existing bytes, clipped at the share's end; a missing
        // share reads as empty.
        for (&shnum, v) in tw {
            for (offset, size, specimen) in &v.tests {
                let actual = match existing.get(&shnum) {
                    Some(&len) if *offset < len => {
                        self.backend.read(si, shnum, *offset, *size).await?
                    }
                    _ => Bytes::new(),
                };
                if actual != *specimen {
                    return Ok(out);
                }
            }
        }
        out.success = true;
        let has_changes = tw
            .values()
            .any(|v| !v.writes.is_empty() || v.new_length.is_some());
        if has_changes && self.cfg.readonly {
            return Err(ServerError::Refused(
                "this storage server is read-only".into(),
            ));
        }
        if has_changes {
            let growth: u64 = tw
                .iter()
                .map(|(shnum, v)| {
                    let end = v
                        .writes
                        .iter()
                        .map(|(o, d)| o.saturating_add(d.len()))
                        .max()
                        .unwrap_or(0);
                    end.saturating_sub(existing.get(shnum).copied().unwrap_or(0))
                })
                .fold(0u64, u64::saturating_add);
            self.check_account(account, growth).await?;
        }
        let (renewed, expires) = self.lease_times();
        for (&shnum, v) in tw {
            if v.writes.is_empty() && v.new_length.is_none() {
                continue;
            }
            let is_new = !existing.contains_key(&shnum);
            let end = v
                .writes
                .iter()
                .map(|(o, d)| o.saturating_add(d.len()))
                .max()
                .unwrap_or(0);
            if end > self.cfg.max_mutable_share_size {
                return Err(ServerError::BadRequest(
                    "mutable share would exceed the maximum size".into(),
                ));
            }
            if is_new && v.writes.is_empty() {
                continue; // truncating a share that does not exist
            }
            let growth = end.saturating_sub(existing.get(&shnum).copied().unwrap_or(0));
            if growth > 0 && growth > self.available_space().await? {
                return Err(ServerError::Refused(
                    "not enough space for the mutable write".into(),
                ));
            }
            let new_size = self
                .backend
                .write_mutable(
                    si,
                    shnum,
                    MutableWrite {
                        writes: v
                            .writes
                            .iter()
                            .map(|(offset, data)| WriteVector {
                                offset: *offset,
                                data: data.clone(),
                            })
                            .collect(),
                        new_length: v.new_length,
                        write_enabler: *write_enabler,
                        nodeid: self.cfg.nodeid,
                    },
                )
                .await?;
            if new_size == 0 {
                if !is_new {
                    self.db.mark_share_going(*si, shnum).await.ok();
                    self.db.remove_share(*si, shnum).await?;
                }
                continue;
            }
            if is_new {
                // A concurrent reader or the crawler may have adopted the share between the
                // backend write and here (it is already STABLE then): only its size is ours.
                match self
                    .db
                    .add_new_share(*si, shnum, ShareKind::Mutable, new_size)
                    .await
                {
                    Ok(())
                    | Err(LeaseDbError::ShareExists {
                        state: ShareState::Coming,
                        ..
                    }) => self.db.mark_share_stable(*si, shnum, new_size).await?,
                    Err(LeaseDbError::ShareExists { .. }) => {
                        self.db.change_share_space(*si, shnum, new_size).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                self.db.change_share_space(*si, shnum, new_size).await?;
            }
            self.db
                .add_or_renew_lease(*si, shnum, account, renewed, expires)
                .await?;
        }
        Ok(out)
    }
}

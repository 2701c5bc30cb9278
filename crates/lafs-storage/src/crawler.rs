//! The accounting crawler: walks the backend slowly and keeps the lease database true to it;
//! expires leases and collects unleased shares when `[storage] expire.enabled` says so.
//!
//! # Why it exists
//! The lease database is metadata *about* the backend, and either can change behind the
//! other's back: an operator copies a stock Tahoe storage directory in, restores a backup,
//! deletes a directory by hand, or the database is lost and rebuilt. Requests repair what they
//! touch (the server's "3a" adoption on first request), but only a walk over everything finds
//! the rest. Tahoe's never-merged accounting crawler could not adopt a share it did not know;
//! this one does, and it is the only thing that ever deletes a share for want of a lease.
//!
//! # What one cycle does
//! 1. **Start** (state saved, so a restart does not redo it): with an expiry policy, remove
//!    the expired leases ([`LeaseDb::remove_expired_leases`](crate::leasedb::LeaseDb)), then
//!    collect every STABLE share left without a lease, unless the GC block is set (a database
//!    created or rebuilt since the last complete cycle: the crawl must first have re-adopted
//!    every share). Collection is STABLE → GOING (atomically with "still unleased", so a lease
//!    added meanwhile wins) → backend delete → NONE. COMING shares count as leased and are
//!    never candidates. In dry-run mode nothing is removed; the cycle's counters say what would
//!    have been.
//! 2. **Walk** the 1024 two-character prefixes in storage-index order, one prefix per step.
//!    For each: read the database's rows of the prefix, *then* list the backend's shares of
//!    every storage index either side knows, and reconcile:
//!    - in the backend, not in the database → adopted STABLE with a starter lease (one
//!      transaction per prefix); a container with an unreadable header is recorded corrupt
//!      (the server never serves it as good). Backends list only complete shares (staged
//!      uploads live elsewhere and are removed at start, as stock does), so the "incomplete →
//!      COMING" case cannot arise from a listing;
//!    - STABLE in the database, gone from the backend → row and leases removed, logged;
//!    - STABLE with another size (a mutable share changed out of band) → size corrected;
//!    - GOING (a deletion interrupted by a crash) → the deletion is finished.
//!
//!    Reading the database before the backend means a share that completes in between is
//!    seen as COMING-in-database (left alone) or already-known (adoption is insert-if-absent),
//!    never as "vanished". Every change to an existing row is re-checked under the storage
//!    index's modification lock ([`StorageServer::reconcile_share`]), so a concurrent mutable
//!    write is never mistaken for an out-of-band change.
//! 3. **Finish**: the history entry is appended, the state reset, crawl requests answered and
//!    the GC block lifted if this was the cycle it waited for, in one transaction.
//!
//! # Pace, resumption, control
//! - After each prefix the position (the last storage index of that prefix) and the counters
//!   are saved, so a restart resumes at the next prefix. Memory is bounded by one prefix's
//!   shares (1/1024 of the store) plus one backend listing batch.
//! - Throttled to [`CrawlerConfig::cpu_fraction`] of wall time: after a step that took `t`,
//!   it sleeps `t × (1/f − 1)`; requests are never queued behind the crawler for long because
//!   one step is one prefix. A new cycle starts no sooner than
//!   [`CrawlerConfig::min_cycle_interval`] after the previous one started.
//! - `lafs storage crawl-now` runs in another process and talks to the running server through
//!   the database: it inserts a `crawler_requests` row, which the crawler polls; while a request
//!   is open the crawler runs unthrottled until a cycle that *started after the request*
//!   finishes, which marks the request done. No extra port or socket is needed, and the request
//!   survives a restart.

use crate::backend::BackendError;
use crate::leasedb::{
    AdoptOutcome, CrawlerCounters, CrawlerHistoryEntry, CrawlerState, ExpiryPolicy, FoundShare,
    LeaseDbError, ShareRecord, ShareState,
};
use crate::server::{Reconciled, ServerError, StorageServer};
use crate::types::{ShareNum, StorageIndex};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub use crate::types::PREFIXES;

/// Crawler settings.
#[derive(Clone, Debug)]
pub struct CrawlerConfig {
    /// Fraction of wall time the crawler may work when not asked to hurry (0 < f ≤ 1).
    pub cpu_fraction: f64,
    /// A cycle starts no sooner than this after the previous one started.
    pub min_cycle_interval: Duration,
    /// How often an idle crawler looks for `crawl-now` requests.
    pub poll_interval: Duration,
    /// History entries kept.
    pub history_retain: u32,
    /// Storage indexes fetched from the backend per listing call.
    pub list_batch: usize,
    /// Lease expiry (and so garbage collection); `None` = `expire.enabled = false`.
    pub expiry: Option<ExpiryPolicy>,
    /// Report what expiry and collection would remove, remove nothing.
    pub gc_dry_run: bool,
}

impl Default for CrawlerConfig {
    fn default() -> Self {
        Self {
            // Tahoe's crawlers default to 10% of the CPU.
            cpu_fraction: 0.1,
            min_cycle_interval: Duration::from_secs(60 * 60),
            poll_interval: Duration::from_secs(2),
            history_retain: 32,
            list_batch: 512,
            expiry: None,
            gc_dry_run: false,
        }
    }
}

/// Crawler failures (each step is retried later; nothing is left half-done).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrawlerError {
    /// Lease database failure.
    #[error(transparent)]
    LeaseDb(#[from] LeaseDbError),
    /// Backend failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Server-level failure while reconciling or collecting.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Result alias.
pub type CrawlerResult<T> = Result<T, CrawlerError>;

/// What one [`Crawler::step`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// One prefix was processed (`prefix` is its index, 0..1024).
    Prefix(u16),
    /// The cycle finished.
    CycleFinished(CrawlerHistoryEntry),
}

/// The prefix (first 10 bits) of a storage index, as a number.
pub fn prefix_index(si: &StorageIndex) -> u16 {
    (u16::from(si.0[0]) << 2) | (u16::from(si.0[1]) >> 6)
}

/// The largest storage index with prefix `p`: the crawler's saved position after `p`.
pub fn prefix_last(p: u16) -> StorageIndex {
    let mut b = [0xffu8; 16];
    b[0] = (p >> 2) as u8;
    b[1] = (((p & 3) << 6) as u8) | 0x3f;
    StorageIndex(b)
}

/// The two-character prefix directory name of prefix number `p`.
pub fn prefix_name(p: u16) -> String {
    StorageIndex::first_with_prefix(p).prefix()
}

/// The prefix a cycle at `position` processes next (`PREFIXES` when the walk is done).
pub fn next_prefix(position: Option<StorageIndex>) -> u16 {
    position.map_or(0, |p| prefix_index(&p) + 1)
}

/// Backend storage indexes read ahead of the walk, for one cycle.
#[derive(Debug, Default)]
struct Lookahead {
    cycle: Option<u64>,
    buf: VecDeque<StorageIndex>,
    /// Where the next listing continues (`None` with an empty buffer: from the walk position).
    last: Option<StorageIndex>,
    exhausted: bool,
}

/// The accounting crawler of one server.
#[derive(Debug)]
pub struct Crawler {
    server: Arc<StorageServer>,
    cfg: CrawlerConfig,
    ahead: Lookahead,
}

impl Crawler {
    /// A crawler for `server`.
    pub fn new(server: Arc<StorageServer>, cfg: CrawlerConfig) -> Self {
        Self {
            server,
            cfg,
            ahead: Lookahead::default(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &CrawlerConfig {
        &self.cfg
    }

    fn now(&self) -> i64 {
        self.server.clock().now()
    }

    /// Runs until `shutdown` turns true: throttled, waiting between cycles, answering
    /// `crawl-now` requests. Errors are logged and the step retried after a pause.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pause = match self.tick().await {
                Ok(pause) => {
                    failures = 0;
                    pause
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "accounting crawler step failed; retrying later");
                    self.cfg.poll_interval * failures.min(30)
                }
            };
            if pause.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            // Sleep in slices of the poll interval, so a crawl-now request cuts a long pause
            // short.
            let deadline = Instant::now() + pause;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(left.min(self.cfg.poll_interval)) => {}
                    r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
                }
                let db = self.server.leasedb();
                if db.open_crawl_requests().await.is_ok_and(|r| !r.is_empty()) {
                    break;
                }
            }
        }
    }

    /// One turn of [`Crawler::run`]: a step if one is due; returns how long to pause.
    async fn tick(&mut self) -> CrawlerResult<Duration> {
        let db = self.server.leasedb().clone();
        let state = db.crawler_state().await?;
        let urgent = !db.open_crawl_requests().await?.is_empty();
        if urgent {
            // The answering cycle must start after the request: the next one if a cycle is
            // under way, else the one about to start.
            let cycle = if state.in_cycle() {
                state.cycle + 1
            } else {
                state.cycle
            };
            db.claim_crawl_requests(cycle).await?;
        } else if !state.in_cycle()
            && let Some(last) = db.crawler_history(1).await?.first()
        {
            let due = last
                .start_time
                .saturating_add(self.cfg.min_cycle_interval.as_secs() as i64);
            let now = self.now();
            if now < due {
                let wait = Duration::from_secs((due - now) as u64);
                return Ok(wait.min(self.cfg.poll_interval));
            }
        }
        let started = Instant::now();
        self.step().await?;
        if urgent {
            return Ok(Duration::ZERO);
        }
        let f = self.cfg.cpu_fraction.clamp(0.001, 1.0);
        let pause = started.elapsed().mul_f64(1.0 / f - 1.0);
        Ok(pause.min(Duration::from_secs(60)))
    }

    /// Runs, unthrottled, until a cycle that started during this call has finished (finishing
    /// a cycle under way first); returns that cycle's history entry. For `crawl-now`, tests
    /// and benchmarks.
    pub async fn run_full_cycle(&mut self) -> CrawlerResult<CrawlerHistoryEntry> {
        let state = self.server.leasedb().crawler_state().await?;
        let mut fresh = !state.in_cycle();
        loop {
            if let Step::CycleFinished(entry) = self.step().await? {
                if fresh {
                    return Ok(entry);
                }
                fresh = true;
            }
        }
    }

    /// Does the next unit of work: starts a cycle if none is under way, processes one
    /// prefix, or finishes the cycle. Progress is saved before it returns.
    pub async fn step(&mut self) -> CrawlerResult<Step> {
        let db = self.server.leasedb().clone();
        let mut state = db.crawler_state().await?;
        if !state.in_cycle() {
            self.begin_cycle(&mut state).await?;
        }
        let p = next_prefix(state.position);
        if p >= PREFIXES {
            let entry = db
                .finish_crawl_cycle(self.now(), self.cfg.history_retain)
                .await?;
            self.ahead = Lookahead::default();
            let c = &entry.counters;
            tracing::info!(
                cycle = entry.cycle,
                shares = c.shares_seen,
                adopted = c.adopted,
                vanished = c.vanished,
                corrupt = c.corrupt,
                leases_expired = c.leases_expired,
                collected = c.shares_collected,
                dry_run = c.gc_dry_run,
                "accounting crawler finished a cycle"
            );
            return Ok(Step::CycleFinished(entry));
        }
        if self.ahead.cycle != Some(state.cycle) {
            self.ahead = Lookahead {
                cycle: Some(state.cycle),
                ..Lookahead::default()
            };
        }
        self.process_prefix(p, &mut state.counters).await?;
        state.position = Some(prefix_last(p));
        state.updated_at = Some(self.now());
        db.save_crawler_state(state).await?;
        Ok(Step::Prefix(p))
    }

    /// Starts a cycle: expiry and collection (or their dry run), then saves the state.
    async fn begin_cycle(&mut self, state: &mut CrawlerState) -> CrawlerResult<()> {
        let db = self.server.leasedb().clone();
        let now = self.now();
        state.cycle_start_time = Some(now);
        state.updated_at = Some(now);
        state.counters = CrawlerCounters::default();
        if let Some(policy) = self.cfg.expiry {
            if self.cfg.gc_dry_run {
                let preview = db.expiry_preview(policy, now).await?;
                state.counters.gc_dry_run = true;
                state.counters.leases_expired = preview.leases;
                state.counters.shares_collected = preview.shares;
                state.counters.bytes_collected = preview.bytes;
                tracing::info!(
                    leases = preview.leases,
                    shares = preview.shares,
                    bytes = preview.bytes,
                    "lease expiry dry run: would remove these leases and collect these shares"
                );
            } else {
                state.counters.leases_expired = db.remove_expired_leases(policy, now).await?;
                self.collect(&mut state.counters).await?;
            }
        }
        db.save_crawler_state(state.clone()).await?;
        Ok(())
    }

    /// Deletes every STABLE share without a lease, unless GC is blocked.
    async fn collect(&mut self, counters: &mut CrawlerCounters) -> CrawlerResult<()> {
        let db = self.server.leasedb().clone();
        let mut tried: BTreeSet<(StorageIndex, ShareNum)> = BTreeSet::new();
        loop {
            let candidates = match db.gc_candidates(256).await {
                Ok(c) => c,
                Err(LeaseDbError::GcBlocked(block)) => {
                    tracing::info!(
                        until_cycle = block.until_cycle,
                        "garbage collection blocked until the lease database has been confirmed by a full crawl"
                    );
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let fresh: Vec<ShareRecord> = candidates
                .into_iter()
                .filter(|r| tried.insert((r.storage_index, r.shnum)))
                .collect();
            if fresh.is_empty() {
                return Ok(());
            }
            for rec in fresh {
                match self
                    .server
                    .collect_if_unleased(&rec.storage_index, rec.shnum)
                    .await
                {
                    Ok(Some(bytes)) => {
                        counters.shares_collected += 1;
                        counters.bytes_collected += bytes;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(si = %rec.storage_index, shnum = rec.shnum, error = %e, "garbage collection of a share failed; retried next cycle");
                    }
                }
            }
        }
    }

    /// The backend's storage indexes with prefix `p`, in order.
    async fn backend_prefix(&mut self, p: u16) -> CrawlerResult<Vec<StorageIndex>> {
        let backend = self.server.backend().clone();
        let batch = self.cfg.list_batch.max(1);
        loop {
            while self
                .ahead
                .buf
                .front()
                .is_some_and(|si| prefix_index(si) < p)
            {
                self.ahead.buf.pop_front();
            }
            let covered = self.ahead.exhausted
                || self.ahead.buf.back().is_some_and(|si| prefix_index(si) > p);
            if covered {
                break;
            }
            // Continue the listing, but never from before this prefix (a resumed cycle).
            let floor = p.checked_sub(1).map(prefix_last);
            let after = match (self.ahead.last, floor) {
                (Some(last), Some(floor)) => Some(last.max(floor)),
                (last, floor) => last.or(floor),
            };
            let got = backend.list_storage_indexes(after, batch).await?;
            self.ahead.exhausted = got.len() < batch;
            if let Some(last) = got.last() {
                self.ahead.last = Some(*last);
            }
            self.ahead.buf.extend(got);
        }
        let mut out = Vec::new();
        while let Some(si) = self.ahead.buf.front().copied() {
            if prefix_index(&si) != p {
                break;
            }
            out.push(si);
            self.ahead.buf.pop_front();
        }
        Ok(out)
    }

    /// Reconciles every storage index of prefix `p`.
    async fn process_prefix(&mut self, p: u16, c: &mut CrawlerCounters) -> CrawlerResult<()> {
        let db = self.server.leasedb().clone();
        // Database first, backend second: see the module documentation.
        let mut known: BTreeMap<StorageIndex, Vec<ShareRecord>> = BTreeMap::new();
        for rec in db.get_shares_for_prefix(prefix_name(p)).await? {
            known.entry(rec.storage_index).or_default().push(rec);
        }
        let mut sis: BTreeSet<StorageIndex> = known.keys().copied().collect();
        sis.extend(self.backend_prefix(p).await?);
        let backend = self.server.backend().clone();
        let mut found = Vec::new();
        let mut suspects = Vec::new();
        for si in sis {
            let listed = backend.list_shares(&si).await?;
            let rows = known.remove(&si).unwrap_or_default();
            for s in &listed {
                c.shares_seen += 1;
                c.bytes_seen += s.size;
                if s.corrupt.is_some() {
                    c.corrupt += 1;
                }
                match rows.iter().find(|r| r.shnum == s.shnum) {
                    None => found.push(FoundShare {
                        storage_index: si,
                        shnum: s.shnum,
                        kind: s.kind,
                        used_space: s.size,
                        corrupt: s.corrupt.clone(),
                    }),
                    Some(r) => {
                        if let (Some(reason), None) = (&s.corrupt, &r.corrupt_reason) {
                            db.mark_share_corrupt(si, s.shnum, reason.clone()).await?;
                        }
                        let resized = r.state == ShareState::Stable
                            && s.corrupt.is_none()
                            && r.used_space != s.size;
                        if resized || r.state == ShareState::Going {
                            suspects.push((si, s.shnum));
                        }
                    }
                }
            }
            for r in &rows {
                if r.state != ShareState::Coming && !listed.iter().any(|s| s.shnum == r.shnum) {
                    suspects.push((si, r.shnum));
                }
            }
        }
        if !found.is_empty() {
            let outcomes = db.adopt_shares(found.clone(), self.now()).await?;
            for (f, o) in found.iter().zip(outcomes) {
                if let AdoptOutcome::Adopted(_) = o {
                    c.adopted += 1;
                    tracing::debug!(si = %f.storage_index, shnum = f.shnum, "adopted a share found in the backend");
                }
            }
        }
        for (si, shnum) in suspects {
            match self.server.reconcile_share(&si, shnum).await? {
                Reconciled::Vanished => c.vanished += 1,
                Reconciled::Collected(bytes) => {
                    c.shares_collected += 1;
                    c.bytes_collected += bytes;
                }
                Reconciled::Resized | Reconciled::Nothing => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_storage_index_order_and_names() {
        for p in [0u16, 1, 2, 3, 4, 511, 1022, 1023] {
            let first = StorageIndex::first_with_prefix(p);
            let last = prefix_last(p);
            assert_eq!(prefix_index(&first), p);
            assert_eq!(prefix_index(&last), p);
            assert_eq!(first.prefix(), last.prefix());
            assert_eq!(prefix_name(p), last.prefix());
            if p > 0 {
                assert!(prefix_last(p - 1) < first);
            }
        }
        assert_eq!(prefix_name(0), "aa");
        assert_eq!(prefix_name(1023), "77");
        assert_eq!(next_prefix(None), 0);
        assert_eq!(next_prefix(Some(prefix_last(5))), 6);
        assert_eq!(next_prefix(Some(prefix_last(1023))), PREFIXES);
        let names: BTreeSet<String> = (0..PREFIXES).map(prefix_name).collect();
        assert_eq!(names.len(), usize::from(PREFIXES));
    }
}

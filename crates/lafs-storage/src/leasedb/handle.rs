//! [`LeaseDbHandle`]: async access to a [`LeaseDb`] owned by one dedicated OS thread.
//!
//! SQLite calls block (disk I/O, fsync, lock waits, `quick_check` at open), so none of them
//! may run on a tokio worker. The handle sends boxed closures over a bounded channel to a
//! thread that owns the database and runs them one at a time, in order; each answer comes back
//! on a oneshot channel. One writer thread is also what SQLite wants: no lock contention inside
//! the process, and prepared statements stay cached on the one connection.
//!
//! - Sending waits (asynchronously) when 256 jobs are queued: memory stays bounded under load.
//! - Dropping a call's future does **not** cancel the operation once it has been queued: it
//!   runs and its result is discarded. Callers must not assume "future dropped" means "not
//!   done".
//! - A panicking job is reported as [`LeaseDbError::Panicked`]; the worker keeps serving (a
//!   half-done rusqlite transaction rolls back when its guard unwinds).
//! - When the last handle is dropped the worker finishes the queued jobs, closes the database
//!   and exits. [`LeaseDbHandle::close`] does the same and waits for it, reporting close errors;
//!   calls made on other clones afterwards fail with [`LeaseDbError::Closed`].

use super::{
    Account, AccountId, AccountSummary, AccountUsage, AdoptOutcome, CrawlRequest,
    CrawlerHistoryEntry, CrawlerState, DbInfo, ExpiryPolicy, ExpiryPreview, FoundShare, GcBlock,
    Lease, LeaseDb, LeaseDbError, OpenOptions, Result, ShareRecord, ShareState, SqliteLeaseDb,
    Totals, UnixTime, set_aside_and_recreate,
};
use crate::types::{ShareKind, ShareNum, StorageIndex};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the worker before senders wait.
const QUEUE: usize = 256;

type Job = Box<dyn FnOnce(&mut dyn LeaseDb) + Send + 'static>;

enum Msg {
    Job(Job),
    Close(oneshot::Sender<Result<()>>),
}

/// Async, cloneable access to a lease database running on its own thread.
#[derive(Clone, Debug)]
pub struct LeaseDbHandle {
    tx: mpsc::Sender<Msg>,
}

/// What [`LeaseDbHandle::open_sqlite_or_rebuild`] had to do.
#[derive(Debug)]
pub struct RebuildReport {
    /// Why the old database was refused.
    pub reason: LeaseDbError,
    /// Where its files were moved (`None` if nothing was there to move).
    pub set_aside: Option<PathBuf>,
}

fn worker(mut db: Box<dyn LeaseDb>, mut rx: mpsc::Receiver<Msg>) {
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Job(job) => job(db.as_mut()),
            Msg::Close(done) => {
                // Refuse whatever is still queued: their callers get `Closed`.
                rx.close();
                let _ = done.send(db.close());
                return;
            }
        }
    }
    if let Err(e) = db.close() {
        tracing::warn!(error = %e, "closing the lease database failed");
    }
}

fn spawn_thread(f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("lafs-leasedb".into())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| LeaseDbError::Io {
            path: PathBuf::from("<leasedb thread>"),
            source: e,
        })
}

impl LeaseDbHandle {
    /// Moves `db` onto a new worker thread.
    pub fn spawn(db: Box<dyn LeaseDb>) -> Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        spawn_thread(move || worker(db, rx))?;
        Ok(Self { tx })
    }

    /// Opens (or creates) the SQLite database at `path` on the worker thread.
    pub async fn open_sqlite(path: &Path, now: UnixTime, opts: OpenOptions) -> Result<Self> {
        let path = path.to_path_buf();
        Self::start(move || SqliteLeaseDb::open_with(&path, now, &opts).map(|db| (db, ())))
            .await
            .map(|(h, ())| h)
    }

    /// Opens the SQLite database at `path`; if it is detectably corrupt, sets it aside and
    /// creates a fresh one (GC blocked until a full crawl), reporting what happened. A newer
    /// schema or an I/O error is returned as is: those are not reasons to discard a database.
    pub async fn open_sqlite_or_rebuild(
        path: &Path,
        now: UnixTime,
        opts: OpenOptions,
    ) -> Result<(Self, Option<RebuildReport>)> {
        let path = path.to_path_buf();
        Self::start(move || match SqliteLeaseDb::open_with(&path, now, &opts) {
            Ok(db) => Ok((db, None)),
            Err(reason) if reason.is_corrupt() => {
                tracing::error!(error = %reason, "lease database is corrupt; setting it aside and rebuilding");
                let (db, set_aside) = set_aside_and_recreate(&path, now, &opts)?;
                Ok((db, Some(RebuildReport { reason, set_aside })))
            }
            Err(e) => Err(e),
        })
        .await
    }

    /// Runs `open` on a new worker thread, which then serves the database it returns.
    async fn start<D, T>(
        open: impl FnOnce() -> Result<(D, T)> + Send + 'static,
    ) -> Result<(Self, T)>
    where
        D: LeaseDb + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        spawn_thread(move || {
            let opened =
                catch_unwind(AssertUnwindSafe(open)).unwrap_or(Err(LeaseDbError::Panicked));
            match opened {
                Ok((db, extra)) => {
                    if ready_tx.send(Ok(extra)).is_ok() {
                        worker(Box::new(db), rx);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })?;
        let extra = ready_rx.await.map_err(|_| LeaseDbError::Closed)??;
        Ok((Self { tx }, extra))
    }

    /// Runs `f` on the worker thread with exclusive access to the database and returns its
    /// result. Several calls inside one `f` run back to back (nothing else interleaves), but
    /// each is its own transaction.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut dyn LeaseDb) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let result =
                catch_unwind(AssertUnwindSafe(|| f(db))).unwrap_or(Err(LeaseDbError::Panicked));
            let _ = reply_tx.send(result);
        });
        self.tx
            .send(Msg::Job(job))
            .await
            .map_err(|_| LeaseDbError::Closed)?;
        reply_rx.await.map_err(|_| LeaseDbError::Closed)?
    }

    /// Finishes the jobs queued before this call, closes the database, and stops the worker.
    pub async fn close(self) -> Result<()> {
        let (done_tx, done_rx) = oneshot::channel();
        self.tx
            .send(Msg::Close(done_tx))
            .await
            .map_err(|_| LeaseDbError::Closed)?;
        done_rx.await.map_err(|_| LeaseDbError::Closed)?
    }

    /// True once the worker has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    // ---- the LeaseDb operations, asynchronously ----

    /// See [`LeaseDb::add_new_share`].
    pub async fn add_new_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
    ) -> Result<()> {
        self.call(move |db| db.add_new_share(&si, shnum, kind, used_space))
            .await
    }

    /// See [`LeaseDb::start_upload`].
    pub async fn start_upload(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
        lease: Lease,
    ) -> Result<()> {
        self.call(move |db| db.start_upload(&si, shnum, kind, used_space, lease))
            .await
    }

    /// See [`LeaseDb::mark_share_coming`].
    pub async fn mark_share_coming(&self, si: StorageIndex, shnum: ShareNum) -> Result<()> {
        self.call(move |db| db.mark_share_coming(&si, shnum)).await
    }

    /// See [`LeaseDb::mark_share_stable`].
    pub async fn mark_share_stable(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        used_space: u64,
    ) -> Result<()> {
        self.call(move |db| db.mark_share_stable(&si, shnum, used_space))
            .await
    }

    /// See [`LeaseDb::mark_share_going`].
    pub async fn mark_share_going(&self, si: StorageIndex, shnum: ShareNum) -> Result<()> {
        self.call(move |db| db.mark_share_going(&si, shnum)).await
    }

    /// See [`LeaseDb::abandon_share`].
    pub async fn abandon_share(&self, si: StorageIndex, shnum: ShareNum) -> Result<()> {
        self.call(move |db| db.abandon_share(&si, shnum)).await
    }

    /// See [`LeaseDb::remove_share`].
    pub async fn remove_share(&self, si: StorageIndex, shnum: ShareNum) -> Result<()> {
        self.call(move |db| db.remove_share(&si, shnum)).await
    }

    /// See [`LeaseDb::change_share_space`].
    pub async fn change_share_space(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        used_space: u64,
    ) -> Result<()> {
        self.call(move |db| db.change_share_space(&si, shnum, used_space))
            .await
    }

    /// See [`LeaseDb::mark_share_corrupt`].
    pub async fn mark_share_corrupt(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        reason: String,
    ) -> Result<()> {
        self.call(move |db| db.mark_share_corrupt(&si, shnum, &reason))
            .await
    }

    /// See [`LeaseDb::clear_share_corrupt`].
    pub async fn clear_share_corrupt(&self, si: StorageIndex, shnum: ShareNum) -> Result<()> {
        self.call(move |db| db.clear_share_corrupt(&si, shnum))
            .await
    }

    /// See [`LeaseDb::get_share`].
    pub async fn get_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> Result<Option<ShareRecord>> {
        self.call(move |db| db.get_share(&si, shnum)).await
    }

    /// See [`LeaseDb::get_shares`].
    pub async fn get_shares(&self, si: StorageIndex) -> Result<Vec<ShareRecord>> {
        self.call(move |db| db.get_shares(&si)).await
    }

    /// See [`LeaseDb::get_shares_for_prefix`].
    pub async fn get_shares_for_prefix(&self, prefix: String) -> Result<Vec<ShareRecord>> {
        self.call(move |db| db.get_shares_for_prefix(&prefix)).await
    }

    /// See [`LeaseDb::shares_in_state`].
    pub async fn shares_in_state(&self, state: ShareState, limit: u32) -> Result<Vec<ShareRecord>> {
        self.call(move |db| db.shares_in_state(state, limit)).await
    }

    /// See [`LeaseDb::adopt_share`].
    pub async fn adopt_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
        complete: bool,
        now: UnixTime,
    ) -> Result<AdoptOutcome> {
        self.call(move |db| db.adopt_share(&si, shnum, kind, used_space, complete, now))
            .await
    }

    /// See [`LeaseDb::add_or_renew_lease`].
    pub async fn add_or_renew_lease(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        account: AccountId,
        renewal_time: UnixTime,
        expiration_time: UnixTime,
    ) -> Result<()> {
        self.call(move |db| {
            db.add_or_renew_lease(&si, shnum, account, renewal_time, expiration_time)
        })
        .await
    }

    /// See [`LeaseDb::add_or_renew_leases_for_si`].
    pub async fn add_or_renew_leases_for_si(
        &self,
        si: StorageIndex,
        account: AccountId,
        renewal_time: UnixTime,
        expiration_time: UnixTime,
    ) -> Result<u64> {
        self.call(move |db| {
            db.add_or_renew_leases_for_si(&si, account, renewal_time, expiration_time)
        })
        .await
    }

    /// See [`LeaseDb::add_starter_lease`].
    pub async fn add_starter_lease(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        now: UnixTime,
    ) -> Result<()> {
        self.call(move |db| db.add_starter_lease(&si, shnum, now))
            .await
    }

    /// See [`LeaseDb::get_leases`].
    pub async fn get_leases(&self, si: StorageIndex, shnum: ShareNum) -> Result<Vec<Lease>> {
        self.call(move |db| db.get_leases(&si, shnum)).await
    }

    /// See [`LeaseDb::remove_expired_leases`].
    pub async fn remove_expired_leases(&self, policy: ExpiryPolicy, now: UnixTime) -> Result<u64> {
        self.call(move |db| db.remove_expired_leases(&policy, now))
            .await
    }

    /// See [`LeaseDb::unleased_stable_shares`].
    pub async fn unleased_stable_shares(&self, limit: u32) -> Result<Vec<ShareRecord>> {
        self.call(move |db| db.unleased_stable_shares(limit)).await
    }

    /// See [`LeaseDb::gc_candidates`].
    pub async fn gc_candidates(&self, limit: u32) -> Result<Vec<ShareRecord>> {
        self.call(move |db| db.gc_candidates(limit)).await
    }

    /// See [`LeaseDb::adopt_shares`].
    pub async fn adopt_shares(
        &self,
        found: Vec<FoundShare>,
        now: UnixTime,
    ) -> Result<Vec<AdoptOutcome>> {
        self.call(move |db| db.adopt_shares(&found, now)).await
    }

    /// See [`LeaseDb::mark_share_going_if_unleased`].
    pub async fn mark_share_going_if_unleased(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> Result<Option<ShareRecord>> {
        self.call(move |db| db.mark_share_going_if_unleased(&si, shnum))
            .await
    }

    /// See [`LeaseDb::expiry_preview`].
    pub async fn expiry_preview(
        &self,
        policy: ExpiryPolicy,
        now: UnixTime,
    ) -> Result<ExpiryPreview> {
        self.call(move |db| db.expiry_preview(&policy, now)).await
    }

    /// See [`LeaseDb::request_crawl`].
    pub async fn request_crawl(&self, now: UnixTime) -> Result<i64> {
        self.call(move |db| db.request_crawl(now)).await
    }

    /// See [`LeaseDb::claim_crawl_requests`].
    pub async fn claim_crawl_requests(&self, cycle: u64) -> Result<u64> {
        self.call(move |db| db.claim_crawl_requests(cycle)).await
    }

    /// See [`LeaseDb::open_crawl_requests`].
    pub async fn open_crawl_requests(&self) -> Result<Vec<CrawlRequest>> {
        self.call(|db| db.open_crawl_requests()).await
    }

    /// See [`LeaseDb::create_account`].
    pub async fn create_account(
        &self,
        pubkey: Option<String>,
        name: String,
        now: UnixTime,
    ) -> Result<AccountId> {
        self.call(move |db| db.create_account(pubkey.as_deref(), &name, now))
            .await
    }

    /// See [`LeaseDb::get_account`].
    pub async fn get_account(&self, id: AccountId) -> Result<Option<Account>> {
        self.call(move |db| db.get_account(id)).await
    }

    /// See [`LeaseDb::get_account_by_pubkey`].
    pub async fn get_account_by_pubkey(&self, pubkey: String) -> Result<Option<Account>> {
        self.call(move |db| db.get_account_by_pubkey(&pubkey)).await
    }

    /// See [`LeaseDb::list_accounts`].
    pub async fn list_accounts(&self) -> Result<Vec<AccountSummary>> {
        self.call(|db| db.list_accounts()).await
    }

    /// See [`LeaseDb::account_usage`].
    pub async fn account_usage(&self, id: AccountId) -> Result<AccountUsage> {
        self.call(move |db| db.account_usage(id)).await
    }

    /// See [`LeaseDb::set_account_enabled`].
    pub async fn set_account_enabled(&self, id: AccountId, enabled: bool) -> Result<()> {
        self.call(move |db| db.set_account_enabled(id, enabled))
            .await
    }

    /// See [`LeaseDb::set_account_quota`].
    pub async fn set_account_quota(&self, id: AccountId, quota: Option<u64>) -> Result<()> {
        self.call(move |db| db.set_account_quota(id, quota)).await
    }

    /// See [`LeaseDb::touch_account_last_seen`].
    pub async fn touch_account_last_seen(&self, id: AccountId, now: UnixTime) -> Result<()> {
        self.call(move |db| db.touch_account_last_seen(id, now))
            .await
    }

    /// See [`LeaseDb::crawler_state`].
    pub async fn crawler_state(&self) -> Result<CrawlerState> {
        self.call(|db| db.crawler_state()).await
    }

    /// See [`LeaseDb::save_crawler_state`].
    pub async fn save_crawler_state(&self, state: CrawlerState) -> Result<()> {
        self.call(move |db| db.save_crawler_state(&state)).await
    }

    /// See [`LeaseDb::finish_crawl_cycle`].
    pub async fn finish_crawl_cycle(
        &self,
        end_time: UnixTime,
        retain: u32,
    ) -> Result<CrawlerHistoryEntry> {
        self.call(move |db| db.finish_crawl_cycle(end_time, retain))
            .await
    }

    /// See [`LeaseDb::crawler_history`].
    pub async fn crawler_history(&self, n: u32) -> Result<Vec<CrawlerHistoryEntry>> {
        self.call(move |db| db.crawler_history(n)).await
    }

    /// See [`LeaseDb::gc_block`].
    pub async fn gc_block(&self) -> Result<Option<GcBlock>> {
        self.call(|db| db.gc_block()).await
    }

    /// See [`LeaseDb::block_gc_until_full_crawl`].
    pub async fn block_gc_until_full_crawl(&self, now: UnixTime) -> Result<GcBlock> {
        self.call(move |db| db.block_gc_until_full_crawl(now)).await
    }

    /// See [`LeaseDb::clear_gc_block`].
    pub async fn clear_gc_block(&self) -> Result<()> {
        self.call(|db| db.clear_gc_block()).await
    }

    /// See [`LeaseDb::check_integrity`].
    pub async fn check_integrity(&self) -> Result<()> {
        self.call(|db| db.check_integrity()).await
    }

    /// See [`LeaseDb::totals`].
    pub async fn totals(&self) -> Result<Totals> {
        self.call(|db| db.totals()).await
    }

    /// See [`LeaseDb::info`].
    pub async fn info(&self) -> Result<DbInfo> {
        self.call(|db| db.info()).await
    }
}

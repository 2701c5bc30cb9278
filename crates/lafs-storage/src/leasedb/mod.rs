//! The lease database (leasedb): leases, share states, accounts and crawler progress.
//!
//! This is the storage-server redesign Tahoe-LAFS planned (`docs/proposed/leasedb.rst`,
//! ticket #1528) and never merged: leases move out of share containers into a database, and
//! every share carries an explicit state. Share *bytes* stay in the backend; the leasedb only
//! holds metadata about them.
//!
//! # Goals
//! - **Leases only here.** A share container never holds a lease; renewing a lease never
//!   touches share data.
//! - **Explicit share state machine** (below), enforced by the database layer itself, so a
//!   caller bug cannot make the garbage collector delete a share that is being written
//!   (Tahoe #1921) or re-create one that is being deleted.
//! - **Fail-safe.** Losing or corrupting the leasedb loses no share: the accounting crawler
//!   re-adopts every share it finds in the backend, with a starter lease. Corruption is
//!   detected at [`SqliteLeaseDb::open`] and reported as [`LeaseDbError::Corrupt`] so the
//!   server can [`set_aside_and_recreate`]; a (re)created database blocks garbage collection
//!   ([`GcBlock`]) until one full crawler cycle has confirmed the backend contents.
//! - **Per-account accounting**: usage = sum of the sizes of the shares an account leases, in
//!   full (no pro-rating, as `accounting-overview.txt` decided), cheap enough to query per
//!   request.
//! - **Never block the async runtime**: [`LeaseDbHandle`] runs every operation on one dedicated
//!   OS thread that owns the connection.
//! - **Versioned schema**: an ordered migration list applied in one transaction at open; a
//!   database newer than this program is refused ([`LeaseDbError::NewerSchema`]), never
//!   downgraded and never set aside.
//! - **Injected clock**: every time is an integer Unix timestamp passed in by the caller.
//!
//! # Non-goals
//! - Storing share data, write enablers, or anything needed to *read* a share.
//! - Policy: quotas are stored and reported here but enforced by the server (it also knows the
//!   in-flight allocations); expiration *policy* is chosen by the server and passed in as an
//!   [`ExpiryPolicy`].
//! - Sharing one SQLite file between server processes. SQLite's locking keeps a second
//!   connection from an admin tool safe ([`SqliteLeaseDb::open_admin`]: `lafs storage
//!   crawler`, `crawl-now` and `accounts` read, and write small rows such as crawl requests
//!   and account settings), but creation and set-aside assume one owning server process. A shared
//!   database for several servers is planned as an *added* PostgreSQL implementation of
//!   [`LeaseDb`]; the SQL here is kept portable for that reason (`ON CONFLICT ... DO UPDATE`
//!   and `LIMIT` exist in both; no `INSERT OR REPLACE`, no SQLite-only functions).
//! - Hierarchical account labels (`accounting-overview.txt`'s `1.4.2`): accounts are flat.
//!
//! # Share states
//! ```text
//! from    to      call                          trigger
//! NONE    COMING  add_new_share                 a client starts creating a share
//! NONE    COMING  adopt_share(complete=false)   the crawler finds a partial share
//! NONE    STABLE  adopt_share(complete=true)    the crawler finds a complete share
//! COMING  STABLE  mark_share_stable             every byte is durably written
//! STABLE  COMING  mark_share_coming             a mutable share is being modified
//! STABLE  GOING   mark_share_going              unleased (GC), or mutable truncated to 0
//! COMING  GOING   abandon_share                 a write failed or was aborted
//! GOING   NONE    remove_share                  the backend objects are deleted
//! STABLE  NONE    remove_share                  the crawler: the share vanished
//! ```
//! - NONE is the absence of a row. COMING: being written (or a mutable share being modified);
//!   treated as leased, never a GC candidate, and never removed (`remove_share` refuses it).
//!   STABLE: complete, leased or not. GOING: being deleted; no re-creation, no new leases.
//! - `abandon_share` (COMING → GOING) resolves the design document's open question "what if a
//!   write fails permanently": the server marks the share GOING, deletes the objects, then
//!   removes the row. It is a separate, explicit call so that nothing that looks for deletion
//!   candidates can ever reach a COMING share.
//! - `remove_share` works from STABLE (the crawler noticed the share vanished) and GOING (the
//!   deletion finished) and deletes the share's leases with it (`ON DELETE CASCADE`).
//! - Corruption is recorded (`corrupt_reason`) without changing the state.
//!
//! # Schema (version [`SCHEMA_VERSION`])
//! ```text
//! schema_version (version)                                 one row
//! leasedb_meta   (id=1, created_at, gc_blocked_since NULL, gc_blocked_until_cycle NULL)
//! shares         (storage_index TEXT base32 26, shnum, prefix = si[:2],
//!                 share_type 'immutable'|'mutable', state 'coming'|'stable'|'going',
//!                 used_space, corrupt_reason NULL)            PK (storage_index, shnum)
//! leases         (storage_index, shnum, account_id, renewal_time, expiration_time)
//!                 PK (storage_index, shnum, account_id)
//!                 FK (storage_index, shnum) → shares ON DELETE CASCADE; FK account_id → accounts
//! accounts       (id PK, pubkey UNIQUE NULL, name, creation_time, enabled 0|1,
//!                 quota NULL, last_seen NULL)     rows 0 = anonymous, 1 = starter
//! crawler_state  (id=1, cycle, position NULL = last storage index done, cycle_start_time NULL,
//!                 counters of the running cycle)
//! crawler_history(cycle PK, start_time, end_time, counters)
//!   (v2: crawler_state.gc_dry_run, crawler_state.updated_at, crawler_history.gc_dry_run)
//! crawler_requests(id PK, requested_at, started_cycle NULL, done_at NULL)    v2: crawl-now
//! indexes: shares(prefix), shares(state), leases(account_id), leases(expiration_time),
//!          leases(renewal_time)
//! ```
//! Storage indexes are stored once-encoded (26 lowercase base32 characters, the same string
//! as the backend's directory name) and parsed back strictly; an unparsable row is reported as
//! [`LeaseDbError::InvalidRow`], never skipped silently.
//!
//! # Durability
//! WAL journal with `synchronous=FULL` by default: every commit fsyncs the WAL before the call
//! returns, so an acknowledged lease or state change survives power loss, not just a process
//! crash (WAL with `NORMAL` may lose the last commits on power loss). Losing a lease renewal
//! the server acknowledged could let the garbage collector delete a share its owner believes
//! protected, so the extra fsync per commit (a few milliseconds on a disk, nothing on SSDs
//! with power-loss protection) is worth it. [`OpenOptions::synchronous`] can relax this.
//! Two operations are relaxed on purpose: [`LeaseDb::start_upload`] (an upload in progress
//! does not survive a crash; the durable commit that ends it carries this one), which saves a
//! third of the fsyncs of a small upload, and [`LeaseDb::save_crawler_state`] (progress that
//! a power loss may set back a few prefixes).
//!
//! # Differences from Tahoe's never-merged branch (`2237.cloud-backend-s4-merged.4`)
//! - Storage indexes are typed ([`StorageIndex`]) and encoded exactly once; the branch's
//!   crawler passed an already-encoded index to `add_starter_lease`, which encoded it again.
//! - [`LeaseDb::adopt_share`] inserts a discovered *complete* share as STABLE (the branch
//!   inserted COMING, so discovered shares could never be collected) and adds its starter
//!   lease in the same transaction (the branch committed the share and the lease separately;
//!   with STABLE adoption a crash in between would leave an unleased, collectable share).
//! - `add_new_share` refuses an existing row (the branch used `INSERT OR REPLACE`, silently
//!   re-creating GOING shares, which the design forbids).
//! - Leases reference their share with `ON DELETE CASCADE` (the branch enabled foreign keys
//!   but deleted leases by hand before the share), and the account foreign key is checked up
//!   front with a typed error.
//! - Lease renewal never shortens a lease or moves its renewal time back (stock Tahoe's rule);
//!   the branch allowed backdating.
//! - `synchronous=FULL` instead of `NORMAL` (see Durability); every operation is one
//!   transaction (the branch committed per row when renewing, and pruned and appended crawler
//!   history in separate commits).
//! - The built-in accounts are named in a `name` column; the branch stored "anonymous" and
//!   "starter" in the public-key column.
//! - Crawler state and history live in the database, so a rebuilt database also restarts the
//!   crawler, and GC stays blocked until a cycle started after the rebuild has finished.

mod handle;
mod ops;
mod schema;
mod sqlite;

pub use handle::{LeaseDbHandle, RebuildReport};
pub use schema::SCHEMA_VERSION;
pub use sqlite::{IntegrityCheck, OpenOptions, SqliteLeaseDb, Synchronous, set_aside_and_recreate};

use crate::types::{ShareKind, ShareNum, StorageIndex};
use std::fmt;
use std::path::PathBuf;

/// Integer Unix time in seconds (UTC). The server owns the clock and passes it in.
pub type UnixTime = i64;

/// How long a starter lease (given to shares the crawler discovers) lasts: 60 days, as in
/// Tahoe's leasedb branch.
pub const STARTER_LEASE_DURATION: i64 = 60 * 24 * 60 * 60;

/// Largest `used_space` accepted for one share: 1 PiB. Keeps every sum of sizes (usage,
/// totals) far from `i64` overflow: 8192 shares of this size would be needed.
pub const MAX_SHARE_SPACE: u64 = 1 << 50;

/// Longest `corrupt_reason` stored, in bytes (reasons may come from clients).
pub const MAX_CORRUPT_REASON_LEN: usize = 1024;

/// An account's number in the lease database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub i64);

impl AccountId {
    /// The anonymous account: every client without an account of its own.
    pub const ANONYMOUS: Self = Self(0);
    /// The starter account: holds the leases the crawler gives to discovered shares.
    pub const STARTER: Self = Self(1);
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// State of a share that has a row (NONE is `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShareState {
    /// Being written or modified; treated as leased.
    Coming,
    /// Completely written and not being modified or deleted.
    Stable,
    /// Being deleted; may not be re-created until removed.
    Going,
}

impl ShareState {
    /// The name stored in the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Coming => "coming",
            Self::Stable => "stable",
            Self::Going => "going",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "coming" => Some(Self::Coming),
            "stable" => Some(Self::Stable),
            "going" => Some(Self::Going),
            _ => None,
        }
    }
}

impl ShareState {
    /// Upper-case name, as the design document writes states.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Coming => "COMING",
            Self::Stable => "STABLE",
            Self::Going => "GOING",
        }
    }
}

impl fmt::Display for ShareState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One row of `shares`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareRecord {
    /// Storage index.
    pub storage_index: StorageIndex,
    /// Share number.
    pub shnum: ShareNum,
    /// Immutable or mutable.
    pub kind: ShareKind,
    /// Current state.
    pub state: ShareState,
    /// Bytes the share occupies (what it costs every account leasing it).
    pub used_space: u64,
    /// Set when the share was found or reported corrupt.
    pub corrupt_reason: Option<String>,
}

/// One lease on one share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The account holding the lease.
    pub account_id: AccountId,
    /// When it was last added or renewed.
    pub renewal_time: UnixTime,
    /// When it expires (unless the expiry policy ends it earlier).
    pub expiration_time: UnixTime,
}

/// One row of `accounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Account number.
    pub id: AccountId,
    /// Public key identifying the account's owner (`None` for the built-in accounts).
    pub pubkey: Option<String>,
    /// Operator-facing name.
    pub name: String,
    /// When the account was created (0 for the built-in accounts).
    pub creation_time: UnixTime,
    /// Disabled accounts should be refused new allocations and leases by the server.
    pub enabled: bool,
    /// Upper bound on usage in bytes, if any.
    pub quota: Option<u64>,
    /// Last time the server saw a request from this account.
    pub last_seen: Option<UnixTime>,
}

/// What one account uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountUsage {
    /// Sum of `used_space` of every share the account leases, each counted in full.
    pub used_space: u64,
    /// Number of leases (= number of shares leased: at most one lease per account and share).
    pub leases: u64,
    /// Number of distinct storage indexes leased ("buckets").
    pub storage_indexes: u64,
}

/// An account with its usage, as listed for the status page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account.
    pub account: Account,
    /// Its usage.
    pub usage: AccountUsage,
}

/// Which leases [`LeaseDb::remove_expired_leases`] removes (Tahoe's `[storage] expire.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryMode {
    /// `expire.mode = age` without override: a lease ends at its own `expiration_time`
    /// (removed when `expiration_time < now`).
    ExpirationTime,
    /// `expire.mode = age` with `override_lease_duration`: removed when
    /// `renewal_time < now - override_lease_duration`.
    Age {
        /// Seconds a lease lasts after its last renewal.
        override_lease_duration: i64,
    },
    /// `expire.mode = cutoff-date`: removed when `renewal_time < cutoff`.
    CutoffDate {
        /// Leases not renewed since this time are removed.
        cutoff: UnixTime,
    },
}

/// Expiry policy: the mode plus which kinds of share it applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Which leases count as expired.
    pub mode: ExpiryMode,
    /// Apply to leases on immutable shares (`expire.immutable`).
    pub immutable: bool,
    /// Apply to leases on mutable shares (`expire.mutable`).
    pub mutable: bool,
}

impl ExpiryPolicy {
    /// The mode, applied to every kind of share.
    pub fn all(mode: ExpiryMode) -> Self {
        Self {
            mode,
            immutable: true,
            mutable: true,
        }
    }
}

/// What [`LeaseDb::adopt_share`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptOutcome {
    /// The share had no row; it was added in this state with a starter lease.
    Adopted(ShareState),
    /// The share already had a row (in this state); nothing was changed.
    AlreadyKnown(ShareState),
}

/// Counters of one crawler cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrawlerCounters {
    /// Shares examined in the backend.
    pub shares_seen: u64,
    /// Bytes of those shares.
    pub bytes_seen: u64,
    /// Shares found in the backend but not in the database (given starter leases).
    pub adopted: u64,
    /// Shares in the database (STABLE) that had vanished from the backend.
    pub vanished: u64,
    /// Shares found corrupt.
    pub corrupt: u64,
    /// Leases removed by the expiry policy.
    pub leases_expired: u64,
    /// Unleased shares deleted.
    pub shares_collected: u64,
    /// Bytes of those shares.
    pub bytes_collected: u64,
    /// The cycle ran with `expire.dry_run`: `leases_expired`, `shares_collected` and
    /// `bytes_collected` count what *would* have been removed; nothing was.
    pub gc_dry_run: bool,
}

/// Persistent crawler progress (one row).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrawlerState {
    /// Number of the current (or next) cycle, from 0.
    pub cycle: u64,
    /// Last storage index completely processed in this cycle; `None` before the first.
    pub position: Option<StorageIndex>,
    /// When the current cycle started; `None` between cycles.
    pub cycle_start_time: Option<UnixTime>,
    /// Counters of the current cycle so far.
    pub counters: CrawlerCounters,
    /// When the crawler last saved progress (`None` between cycles).
    pub updated_at: Option<UnixTime>,
}

impl CrawlerState {
    /// True while a cycle is under way (started and not finished).
    pub fn in_cycle(&self) -> bool {
        self.cycle_start_time.is_some() || self.position.is_some()
    }
}

/// A finished crawler cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrawlerHistoryEntry {
    /// Cycle number.
    pub cycle: u64,
    /// When it started.
    pub start_time: UnixTime,
    /// When it finished.
    pub end_time: UnixTime,
    /// What it found and did.
    pub counters: CrawlerCounters,
}

/// A request for a full crawler cycle, made by `lafs storage crawl-now` through the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrawlRequest {
    /// Request number.
    pub id: i64,
    /// When it was made.
    pub requested_at: UnixTime,
    /// The cycle that answers it (the first to start after it), once the crawler saw it.
    pub started_cycle: Option<u64>,
    /// When that cycle finished.
    pub done_at: Option<UnixTime>,
}

/// What an expiry policy would remove now ([`LeaseDb::expiry_preview`], for dry runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpiryPreview {
    /// Leases the policy would remove.
    pub leases: u64,
    /// STABLE shares that would be left without a lease (and so collected).
    pub shares: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One share the crawler found in the backend, for [`LeaseDb::adopt_shares`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundShare {
    /// Storage index.
    pub storage_index: StorageIndex,
    /// Share number.
    pub shnum: ShareNum,
    /// Immutable or mutable.
    pub kind: ShareKind,
    /// Size the backend reports.
    pub used_space: u64,
    /// Why its container is unreadable, if it is.
    pub corrupt: Option<String>,
}

/// Garbage collection is blocked: the database was (re)created and has not yet been confirmed
/// against the backend by a full crawler cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcBlock {
    /// When the block was set (the database's creation or rebuild time).
    pub since: UnixTime,
    /// The block lifts when this crawler cycle (the first to start after `since`) finishes.
    pub until_cycle: u64,
}

/// Number and size of shares in one state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateTotals {
    /// Number of shares.
    pub shares: u64,
    /// Sum of their `used_space`.
    pub used_space: u64,
}

/// Totals for the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Shares being written.
    pub coming: StateTotals,
    /// Complete shares.
    pub stable: StateTotals,
    /// Shares being deleted.
    pub going: StateTotals,
    /// Shares with a `corrupt_reason`, whatever their state.
    pub corrupt_shares: u64,
    /// Number of leases.
    pub leases: u64,
    /// Number of accounts (including the two built-in ones).
    pub accounts: u64,
}

impl Totals {
    /// Total used space of shares in every state.
    pub fn used_space(&self) -> u64 {
        self.coming.used_space + self.stable.used_space + self.going.used_space
    }
}

/// Facts about the database itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbInfo {
    /// Schema version in use.
    pub schema_version: u32,
    /// When this database was created (fresh or rebuilt).
    pub created_at: UnixTime,
    /// Set while garbage collection is blocked.
    pub gc_block: Option<GcBlock>,
}

/// Lease database errors.
///
/// `Corrupt` means "set this database aside and rebuild" ([`set_aside_and_recreate`]);
/// `NewerSchema` means "refuse to start" (a newer program wrote it; never discard it). The
/// share-state errors are the state machine refusing a transition and are permanent;
/// [`LeaseDbError::is_transient`] tells which failures a retry may fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseDbError {
    /// The share has no row.
    #[error("share {si} #{shnum} is not in the lease database")]
    NoSuchShare {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
    },
    /// The share is being deleted: it cannot be re-created, leased or resized until removed.
    #[error("share {si} #{shnum} is being deleted (GOING): no re-creation or lease while GOING")]
    ShareGoing {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
    },
    /// `add_new_share` on a share that already has a row.
    #[error("share {si} #{shnum} already exists ({state})")]
    ShareExists {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
        /// Its current state.
        state: ShareState,
    },
    /// The state machine does not allow this transition.
    #[error("share {si} #{shnum}: no transition from {from} to {to}")]
    InvalidTransition {
        /// Storage index.
        si: StorageIndex,
        /// Share number.
        shnum: ShareNum,
        /// Current state.
        from: ShareState,
        /// Requested state (`NONE` for removal).
        to: &'static str,
    },
    /// The account does not exist.
    #[error("no account {0} in the lease database")]
    NoSuchAccount(AccountId),
    /// `create_account` with a public key that already has an account.
    #[error("an account with this public key already exists ({0})")]
    DuplicatePubkey(AccountId),
    /// A value does not fit the database (a size above [`MAX_SHARE_SPACE`], a time or count
    /// beyond `i64`).
    #[error("{0} is out of range for the lease database")]
    OutOfRange(&'static str),
    /// A stored row cannot be parsed (hand-edited or damaged database).
    #[error("invalid row in lease database table {table}: {reason}")]
    InvalidRow {
        /// Table name.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `finish_crawl_cycle` without a cycle under way, or similar misuse.
    #[error("crawler state: {0}")]
    CrawlerState(&'static str),
    /// Garbage collection is blocked until a full crawler cycle completes.
    #[error(
        "garbage collection blocked until crawler cycle {} completes (lease database created at {})",
        .0.until_cycle, .0.since
    )]
    GcBlocked(GcBlock),
    /// The database was written by a newer version of this program. Refuse to start; do not
    /// set it aside.
    #[error(
        "lease database {path} has schema version {found}, newer than the {supported} this \
         program knows; refusing to open it (no downgrades)"
    )]
    NewerSchema {
        /// Database file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Newest version this program knows.
        supported: u32,
    },
    /// The database is detectably corrupt (or not a lease database at all): set it aside and
    /// rebuild from the backend.
    #[error("lease database {path} is corrupt: {reason}")]
    Corrupt {
        /// Database file.
        path: PathBuf,
        /// What was detected.
        reason: String,
    },
    /// Any other SQLite failure (busy, I/O error reported by SQLite, misuse).
    #[error("lease database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A filesystem operation around the database failed.
    #[error("lease database {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The [`LeaseDbHandle`] worker has shut down.
    #[error("lease database worker has shut down")]
    Closed,
    /// An operation panicked on the worker thread (the worker keeps running).
    #[error("lease database operation panicked")]
    Panicked,
}

impl LeaseDbError {
    /// True if retrying the same operation later may succeed (lock contention, I/O trouble).
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Self::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::DiskFull)
            ),
            Self::Io { .. } => true,
            _ => false,
        }
    }

    /// True if the database should be set aside and rebuilt.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }
}

/// Result alias for this module.
pub type Result<T, E = LeaseDbError> = std::result::Result<T, E>;

/// The lease database operations the server uses.
///
/// Synchronous by design: an implementation owns its connection and is driven from one thread
/// ([`LeaseDbHandle`] puts it on a dedicated OS thread and exposes `async` methods). Every
/// method is atomic: it either fully happens or leaves the database unchanged.
pub trait LeaseDb: Send + fmt::Debug {
    // ---- share lifecycle ----

    /// NONE → COMING: a client starts creating a share. Refuses an existing row:
    /// [`LeaseDbError::ShareGoing`] while GOING, [`LeaseDbError::ShareExists`] otherwise.
    fn add_new_share(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
    ) -> Result<()>;

    /// NONE → COMING with `lease` (the uploading account's), in one transaction: an
    /// immutable upload starts. Refuses what [`LeaseDb::add_new_share`] and
    /// [`LeaseDb::add_or_renew_lease`] refuse, changing nothing.
    ///
    /// Unlike every other operation, the commit need not be durable when the call returns:
    /// an upload in progress never survives a crash (the server discards staged shares and
    /// their COMING rows at start), and the durable [`LeaseDb::mark_share_stable`] that ends
    /// the upload makes this change durable with it. If power fails after the backend
    /// committed the share but before `mark_share_stable`, the row may be missing; the share
    /// is then found and adopted with a starter lease, as any share without a row is. The
    /// client was never told the upload succeeded.
    fn start_upload(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
        lease: Lease,
    ) -> Result<()>;

    /// STABLE → COMING: a mutable share is about to be modified.
    fn mark_share_coming(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()>;

    /// COMING → STABLE: every byte is durably written; records the final size.
    fn mark_share_stable(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        used_space: u64,
    ) -> Result<()>;

    /// STABLE → GOING: the share is about to be deleted (unleased, or a mutable share
    /// truncated to zero).
    fn mark_share_going(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()>;

    /// COMING → GOING: a write failed or was aborted; the partial share will be deleted.
    fn abandon_share(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()>;

    /// GOING or STABLE → NONE: deletes the row and its leases. Refuses COMING.
    fn remove_share(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()>;

    /// Records a new size for a COMING or STABLE share.
    fn change_share_space(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        used_space: u64,
    ) -> Result<()>;

    /// Records that the share is corrupt (state unchanged). The reason is truncated to
    /// [`MAX_CORRUPT_REASON_LEN`] bytes.
    fn mark_share_corrupt(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<()>;

    /// Clears a corruption mark (after a successful rewrite).
    fn clear_share_corrupt(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()>;

    /// One share's row.
    fn get_share(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<Option<ShareRecord>>;

    /// Every share of one storage index, by share number.
    fn get_shares(&mut self, si: &StorageIndex) -> Result<Vec<ShareRecord>>;

    /// Every share whose storage index starts with `prefix` (two base32 characters), ordered.
    fn get_shares_for_prefix(&mut self, prefix: &str) -> Result<Vec<ShareRecord>>;

    /// Up to `limit` shares in `state`, ordered by storage index and share number (startup
    /// recovery: finish deletions left GOING, inspect COMING shares).
    fn shares_in_state(&mut self, state: ShareState, limit: u32) -> Result<Vec<ShareRecord>>;

    /// NONE → STABLE (complete) or NONE → COMING (incomplete), with a starter lease, in one
    /// transaction: the crawler found the share in the backend but not in the database.
    /// Existing rows are left alone. An incomplete share adopted as COMING stays protected
    /// until the server either finishes it (`mark_share_stable`) or gives up on it
    /// (`abandon_share`).
    fn adopt_share(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
        complete: bool,
        now: UnixTime,
    ) -> Result<AdoptOutcome>;

    // ---- leases ----

    /// Adds a lease, or renews the account's existing one. Renewal never moves
    /// `renewal_time` or `expiration_time` backwards. Refuses GOING shares and unknown
    /// accounts.
    fn add_or_renew_lease(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        account: AccountId,
        renewal_time: UnixTime,
        expiration_time: UnixTime,
    ) -> Result<()>;

    /// Adds or renews the account's lease on every COMING or STABLE share of `si`; returns
    /// how many shares that was (0: nothing to lease, GBS answers 404).
    fn add_or_renew_leases_for_si(
        &mut self,
        si: &StorageIndex,
        account: AccountId,
        renewal_time: UnixTime,
        expiration_time: UnixTime,
    ) -> Result<u64>;

    /// A starter lease: account [`AccountId::STARTER`], from `now` for
    /// [`STARTER_LEASE_DURATION`].
    fn add_starter_lease(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        now: UnixTime,
    ) -> Result<()> {
        self.add_or_renew_lease(
            si,
            shnum,
            AccountId::STARTER,
            now,
            now + STARTER_LEASE_DURATION,
        )
    }

    /// The leases on one share, by account.
    fn get_leases(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<Vec<Lease>>;

    /// Removes every lease the policy considers expired at `now`; returns how many.
    fn remove_expired_leases(&mut self, policy: &ExpiryPolicy, now: UnixTime) -> Result<u64>;

    /// Adopts every share in `found` that has no row (STABLE, with a starter lease, and its
    /// corrupt reason recorded), in one transaction; shares with a row are left alone.
    /// Returns one outcome per share, in order.
    fn adopt_shares(&mut self, found: &[FoundShare], now: UnixTime) -> Result<Vec<AdoptOutcome>>;

    /// STABLE → GOING only if the share still has no lease, atomically (a lease added after
    /// the GC chose the share wins). Returns the share's record (before the change) if it was
    /// marked, `None` if it is leased, missing or not STABLE.
    fn mark_share_going_if_unleased(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> Result<Option<ShareRecord>>;

    /// What [`LeaseDb::remove_expired_leases`] would remove now, and which STABLE shares
    /// would then have no lease; changes nothing.
    fn expiry_preview(&mut self, policy: &ExpiryPolicy, now: UnixTime) -> Result<ExpiryPreview>;

    /// Up to `limit` STABLE shares with no lease, ordered. COMING shares count as leased and
    /// are never returned. Does not look at the GC block: use [`LeaseDb::gc_candidates`] to
    /// choose shares to delete.
    fn unleased_stable_shares(&mut self, limit: u32) -> Result<Vec<ShareRecord>>;

    /// [`LeaseDb::unleased_stable_shares`], unless garbage collection is blocked
    /// ([`LeaseDbError::GcBlocked`]). The block guards this query only: client-requested
    /// deletions (a mutable share truncated to zero) still go through `mark_share_going`.
    fn gc_candidates(&mut self, limit: u32) -> Result<Vec<ShareRecord>>;

    // ---- accounts ----

    /// Creates an account; refuses a public key that already has one.
    fn create_account(
        &mut self,
        pubkey: Option<&str>,
        name: &str,
        now: UnixTime,
    ) -> Result<AccountId>;

    /// One account.
    fn get_account(&mut self, id: AccountId) -> Result<Option<Account>>;

    /// The account with this public key.
    fn get_account_by_pubkey(&mut self, pubkey: &str) -> Result<Option<Account>>;

    /// Every account with its usage, by id.
    fn list_accounts(&mut self) -> Result<Vec<AccountSummary>>;

    /// One account's usage.
    fn account_usage(&mut self, id: AccountId) -> Result<AccountUsage>;

    /// Enables or disables an account.
    fn set_account_enabled(&mut self, id: AccountId, enabled: bool) -> Result<()>;

    /// Sets or removes an account's quota.
    fn set_account_quota(&mut self, id: AccountId, quota: Option<u64>) -> Result<()>;

    /// Records that the account was seen at `now` (never moves backwards).
    fn touch_account_last_seen(&mut self, id: AccountId, now: UnixTime) -> Result<()>;

    // ---- crawler ----

    /// The crawler's saved progress.
    fn crawler_state(&mut self) -> Result<CrawlerState>;

    /// Saves the crawler's progress (cycle number, position, start time, counters).
    ///
    /// Like [`LeaseDb::start_upload`], the commit need not be durable when the call returns
    /// (the next ordinary commit makes it so): a power loss may undo the newest saves, and the
    /// crawler then repeats those prefixes, which is harmless (every step is idempotent and
    /// makes its own changes durably). A cycle's 1024 saves cost no fsync of their own.
    fn save_crawler_state(&mut self, state: &CrawlerState) -> Result<()>;

    /// Ends the current cycle at `end_time`, atomically: appends its history entry (built
    /// from the saved state), keeps only the newest `retain` entries, resets the state to the
    /// next cycle, and lifts the GC block if this cycle was the one it waited for.
    fn finish_crawl_cycle(
        &mut self,
        end_time: UnixTime,
        retain: u32,
    ) -> Result<CrawlerHistoryEntry>;

    /// The newest `n` history entries, newest first.
    fn crawler_history(&mut self, n: u32) -> Result<Vec<CrawlerHistoryEntry>>;

    /// Records a request for a full crawler cycle (from another process); returns its id.
    fn request_crawl(&mut self, now: UnixTime) -> Result<i64>;

    /// Assigns every request not yet seen to `cycle` (the cycle that will answer it); returns
    /// how many there were.
    fn claim_crawl_requests(&mut self, cycle: u64) -> Result<u64>;

    /// Requests not yet answered (`done_at` unset), oldest first.
    fn open_crawl_requests(&mut self) -> Result<Vec<CrawlRequest>>;

    /// One request.
    fn get_crawl_request(&mut self, id: i64) -> Result<Option<CrawlRequest>>;

    // ---- fail-safety ----

    /// The GC block, if set.
    fn gc_block(&mut self) -> Result<Option<GcBlock>>;

    /// Blocks garbage collection until a crawler cycle that starts after now has finished.
    fn block_gc_until_full_crawl(&mut self, now: UnixTime) -> Result<GcBlock>;

    /// Lifts the GC block (operator override).
    fn clear_gc_block(&mut self) -> Result<()>;

    /// Full consistency check of the store; `Corrupt` if it fails.
    fn check_integrity(&mut self) -> Result<()>;

    // ---- status ----

    /// Totals for the status page.
    fn totals(&mut self) -> Result<Totals>;

    /// Schema version, creation time, GC block.
    fn info(&mut self) -> Result<DbInfo>;

    /// Closes the store, reporting any error a plain drop would swallow.
    fn close(self: Box<Self>) -> Result<()>;
}

//! The SQLite lease database: opening, creating, corruption detection, set-aside.
//!
//! [`SqliteLeaseDb::open`] sorts the file at `path` into one of:
//! - **missing**: a fresh database is built under a temporary name (`<name>.creating`),
//!   fsynced, and renamed into place, so a crash during creation never leaves a half-built
//!   file at `path`. Stray `-wal`/`-shm`/`-journal` files without their database are moved
//!   aside first (SQLite would otherwise replay a foreign WAL into the new file).
//! - **opens fine**: header, `PRAGMA quick_check` (configurable), application id, schema
//!   version (migrated forward if older), every table and singleton row present.
//! - **detectably corrupt**: zero-length or truncated header, not an SQLite file, SQLite
//!   reports `SQLITE_CORRUPT`/`SQLITE_NOTADB`, the check fails, a foreign application id,
//!   missing tables or rows → [`LeaseDbError::Corrupt`]. The caller then uses
//!   [`set_aside_and_recreate`].
//! - **newer schema** → [`LeaseDbError::NewerSchema`]: neither opened nor set aside.
//! - anything else (permissions, I/O, locked) → [`LeaseDbError::Io`]/[`LeaseDbError::Sqlite`]:
//!   not corruption, so nothing is set aside.
//!
//! Every newly created database starts with a [`GcBlock`](super::GcBlock): a missing file is
//! indistinguishable from a lost one.

use super::schema::{self, Empty, MIGRATIONS};
use super::{
    Account, AccountId, AccountSummary, AccountUsage, AdoptOutcome, CrawlRequest,
    CrawlerHistoryEntry, CrawlerState, DbInfo, ExpiryPolicy, ExpiryPreview, FoundShare, GcBlock,
    Lease, LeaseDb, LeaseDbError, Result, ShareRecord, ShareState, Totals, UnixTime, ops,
};
use crate::types::{ShareKind, ShareNum, StorageIndex};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `PRAGMA application_id` of a lafs lease database ("LAFS").
pub(crate) const APPLICATION_ID: i32 = 0x4c41_4653;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Files SQLite keeps next to a database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `PRAGMA synchronous` in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL at every commit: acknowledged changes survive power loss. The default.
    #[default]
    Full,
    /// fsync only at checkpoints: survives a process crash, may lose the newest commits on
    /// power loss (still consistent). For tests and benchmarks.
    Normal,
}

/// How much to verify when opening an existing database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// Header, application id, schema version and tables only.
    None,
    /// `PRAGMA quick_check` (every page, not index contents): the default.
    #[default]
    Quick,
    /// `PRAGMA integrity_check` and `PRAGMA foreign_key_check`.
    Full,
}

/// Options for [`SqliteLeaseDb::open_with`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Verification when opening an existing database.
    pub check: IntegrityCheck,
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            check: IntegrityCheck::Quick,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The SQLite implementation of [`LeaseDb`].
#[derive(Debug)]
pub struct SqliteLeaseDb {
    conn: Connection,
    path: PathBuf,
    synchronous: Synchronous,
    /// `synchronous` is lowered to NORMAL for a relaxed transaction and not yet restored.
    relaxed: bool,
}

fn io_err(path: &Path, source: std::io::Error) -> LeaseDbError {
    LeaseDbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> LeaseDbError {
    LeaseDbError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Turns SQLite's "this is not a (healthy) database" errors into [`LeaseDbError::Corrupt`].
fn classify(path: &Path, e: LeaseDbError) -> LeaseDbError {
    match e {
        LeaseDbError::Sqlite(ref inner)
            if matches!(
                inner.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ) =>
        {
            corrupt(path, inner.to_string())
        }
        other => other,
    }
}

/// `path` with `suffix` appended to its file name (`leasedb.sqlite` + `-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path, e)),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A name `base`, `base.1`, `base.2`, ... for which neither the file nor its side files exist.
fn unused_name(path: &Path, base: &str) -> Result<PathBuf> {
    for n in 0u32.. {
        let candidate = if n == 0 {
            path.with_file_name(base)
        } else {
            path.with_file_name(format!("{base}.{n}"))
        };
        let mut taken = exists(&candidate)?;
        for side in SIDE_FILES {
            taken = taken || exists(&with_suffix(&candidate, side))?;
        }
        if !taken {
            return Ok(candidate);
        }
    }
    unreachable!("u32 names exhausted")
}

/// Moves `path` (if present) and its side files to `<name>.<tag>-<now>`; returns the new
/// name if anything was moved.
fn move_aside(path: &Path, tag: &str, now: UnixTime) -> Result<Option<PathBuf>> {
    let name = path
        .file_name()
        .ok_or_else(|| corrupt(path, "path has no file name"))?
        .to_string_lossy()
        .into_owned();
    let main = exists(path)?;
    let mut sides = Vec::new();
    for side in SIDE_FILES {
        if exists(&with_suffix(path, side))? {
            sides.push(side);
        }
    }
    if !main && sides.is_empty() {
        return Ok(None);
    }
    let target = unused_name(path, &format!("{name}.{tag}-{now}"))?;
    if main {
        fs::rename(path, &target).map_err(|e| io_err(path, e))?;
    }
    for side in sides {
        let from = with_suffix(path, side);
        fs::rename(&from, with_suffix(&target, side)).map_err(|e| io_err(&from, e))?;
    }
    sync_dir(parent_dir(path))?;
    tracing::warn!(from = %path.display(), to = %target.display(), "lease database files moved aside");
    Ok(Some(target))
}

fn configure(conn: &Connection, opts: &OpenOptions) -> Result<()> {
    conn.busy_timeout(opts.busy_timeout)?;
    // Room for every statement of `ops` (the default cache holds 16).
    conn.set_prepared_statement_cache_capacity(64);
    // Plans never depend on bound values: without this, SQLite re-prepares some cached
    // statements each time a parameter is bound (a fifth of the lease database's CPU on
    // small uploads), and our queries have one good plan whatever the values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Stricter b-tree sanity checks as pages are read: corruption becomes an error early.
    conn.pragma_update(None, "cell_size_check", true)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(io_err(
            Path::new(conn.path().unwrap_or("")),
            std::io::Error::other(format!("cannot use WAL journal mode (got {mode})")),
        ));
    }
    let sync = match opts.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    Ok(())
}

fn run_check(conn: &Connection, path: &Path, full: bool) -> Result<()> {
    let mut messages: Vec<String> = Vec::new();
    let pragma = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    conn.pragma_query(None, pragma, |r| {
        messages.push(r.get(0)?);
        Ok(())
    })?;
    if messages != ["ok"] {
        let shown: Vec<&str> = messages.iter().take(3).map(String::as_str).collect();
        return Err(corrupt(
            path,
            format!("{pragma} failed: {}", shown.join("; ")),
        ));
    }
    if full {
        let mut violations = 0u64;
        conn.pragma_query(None, "foreign_key_check", |_| {
            violations += 1;
            Ok(())
        })?;
        if violations > 0 {
            return Err(corrupt(
                path,
                format!("{violations} foreign key violations"),
            ));
        }
    }
    Ok(())
}

/// Refuses files that cannot be a database before handing them to SQLite (which would treat
/// a zero-length file as a new, empty database).
fn check_header(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(corrupt(path, "not a regular file"));
    }
    if meta.len() == 0 {
        return Err(corrupt(path, "zero-length file"));
    }
    let mut header = [0u8; 100];
    let mut f = fs::File::open(path).map_err(|e| io_err(path, e))?;
    if let Err(e) = f.read_exact(&mut header) {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                Err(corrupt(path, "file shorter than an SQLite header"))
            }
            _ => Err(io_err(path, e)),
        };
    }
    if &header[..16] != SQLITE_MAGIC {
        return Err(corrupt(path, "not an SQLite database (bad header)"));
    }
    Ok(())
}

impl SqliteLeaseDb {
    /// Opens (or, if missing, creates) the lease database at `path` with default options.
    /// `now` is recorded as the creation time if a database is created.
    pub fn open(path: &Path, now: UnixTime) -> Result<Self> {
        Self::open_with(path, now, &OpenOptions::default())
    }

    /// [`SqliteLeaseDb::open`] with explicit options.
    pub fn open_with(path: &Path, now: UnixTime, opts: &OpenOptions) -> Result<Self> {
        if !exists(path)? {
            create_fresh(path, now, opts)?;
        }
        let conn = open_existing(path, opts).map_err(|e| classify(path, e))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            synchronous: opts.synchronous,
            relaxed: false,
        })
    }

    /// Opens an existing database for an administration tool running next to the server
    /// (`lafs storage crawler`, `crawl-now`): never creates one (a missing file is
    /// [`LeaseDbError::Io`] with `NotFound`), never sets one aside, skips the page check (the
    /// server did it at start), and waits up to `busy_timeout` for the server's write lock.
    /// SQLite's WAL mode lets this second connection read while the server writes.
    pub fn open_admin(path: &Path) -> Result<Self> {
        if !exists(path)? {
            return Err(io_err(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no lease database (has this storage server run yet?)",
                ),
            ));
        }
        let opts = OpenOptions {
            check: IntegrityCheck::None,
            ..OpenOptions::default()
        };
        let conn = open_existing(path, &opts).map_err(|e| classify(path, e))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            synchronous: opts.synchronous,
            relaxed: false,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn run<T>(&mut self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.restore_synchronous()?;
        f(&mut self.conn).map_err(|e| classify(&self.path, e))
    }

    /// Runs one transaction whose commit does not fsync the WAL (`synchronous=NORMAL` for its
    /// duration). It is still atomic and survives a process crash; the next ordinary commit
    /// fsyncs the WAL, which holds this commit's frames before its own, so it becomes durable
    /// then at the latest. Only for changes a power loss may undo without harm.
    fn run_relaxed<T>(&mut self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.restore_synchronous()?;
        if self.synchronous == Synchronous::Full {
            self.relaxed = true;
            self.conn
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(|e| classify(&self.path, e.into()))?;
        }
        let out = f(&mut self.conn).map_err(|e| classify(&self.path, e));
        let restored = self.restore_synchronous();
        let out = out?;
        restored?;
        Ok(out)
    }

    /// Puts `synchronous` back to FULL after a relaxed transaction. Until that succeeds no
    /// other operation runs, so no ordinary commit is ever made without its fsync.
    fn restore_synchronous(&mut self) -> Result<()> {
        if self.relaxed {
            self.conn
                .pragma_update(None, "synchronous", "FULL")
                .map_err(|e| classify(&self.path, e.into()))?;
            self.relaxed = false;
        }
        Ok(())
    }

    /// The connection's current `PRAGMA synchronous` (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA).
    pub fn synchronous_level(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(|e| classify(&self.path, e.into()))
    }
}

fn open_existing(path: &Path, opts: &OpenOptions) -> Result<Connection> {
    check_header(path)?;
    // No CREATE flag: if the file vanished since we looked, fail rather than create an empty
    // database without the creation ritual.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    configure(&conn, opts)?;
    match opts.check {
        IntegrityCheck::None => {}
        IntegrityCheck::Quick => run_check(&conn, path, false)?,
        IntegrityCheck::Full => run_check(&conn, path, true)?,
    }
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if app_id != APPLICATION_ID {
        return Err(corrupt(
            path,
            format!("application_id {app_id:#x}: not a lafs lease database"),
        ));
    }
    schema::migrate(&mut conn, MIGRATIONS, path, Empty::Refuse)?;
    schema::verify(&conn, path)?;
    Ok(conn)
}

/// Builds a new database next to `path` and renames it into place.
fn create_fresh(path: &Path, now: UnixTime, opts: &OpenOptions) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| corrupt(path, "path has no file name"))?
        .to_string_lossy()
        .into_owned();
    // Side files without their database belong to a lost database: never let SQLite replay
    // them into the new one.
    move_aside(path, "orphaned", now)?;
    let tmp = path.with_file_name(format!("{name}.creating"));
    for leftover in
        std::iter::once(tmp.clone()).chain(SIDE_FILES.iter().map(|s| with_suffix(&tmp, s)))
    {
        match fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&leftover, e)),
        }
    }
    let build = || -> Result<()> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&tmp, flags)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        configure(&conn, opts)?;
        schema::migrate(&mut conn, MIGRATIONS, &tmp, Empty::Initialise)?;
        conn.execute(
            "UPDATE leasedb_meta SET created_at = ?1, gc_blocked_since = ?1, gc_blocked_until_cycle = 0 WHERE id = 1",
            [now],
        )?;
        // Closing the last connection checkpoints the WAL into the file and deletes it.
        conn.close().map_err(|(_, e)| e)?;
        Ok(())
    };
    build()?;
    if exists(&with_suffix(&tmp, "-wal"))? {
        return Err(io_err(
            &tmp,
            std::io::Error::other("WAL not checkpointed after creating the database"),
        ));
    }
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(parent_dir(path))?;
    tracing::info!(path = %path.display(), "created lease database; GC blocked until a full crawl");
    Ok(())
}

/// Moves the database at `path` and its `-wal`/`-shm`/`-journal` files aside to
/// `<name>.corrupt-<now>` (adding `.1`, `.2`, ... if taken), then creates a fresh one, whose
/// GC stays blocked until a full crawl. Returns the new database and where the old files went
/// (`None` if there was nothing to move). The old files are kept for forensics, never deleted.
/// No connection to the old database may be open (an `open` that returned `Corrupt` holds
/// none).
pub fn set_aside_and_recreate(
    path: &Path,
    now: UnixTime,
    opts: &OpenOptions,
) -> Result<(SqliteLeaseDb, Option<PathBuf>)> {
    let aside = move_aside(path, "corrupt", now)?;
    let db = SqliteLeaseDb::open_with(path, now, opts)?;
    Ok((db, aside))
}

impl LeaseDb for SqliteLeaseDb {
    fn add_new_share(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
    ) -> Result<()> {
        self.run(|c| ops::add_new_share(c, si, shnum, kind, used_space))
    }

    fn start_upload(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
        lease: Lease,
    ) -> Result<()> {
        self.run_relaxed(|c| {
            ops::add_new_share_leased(c, si, shnum, kind, used_space, Some(&lease))
        })
    }

    fn mark_share_coming(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()> {
        self.run(|c| ops::mark_share_coming(c, si, shnum))
    }

    fn mark_share_stable(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        used_space: u64,
    ) -> Result<()> {
        self.run(|c| ops::mark_share_stable(c, si, shnum, used_space))
    }

    fn mark_share_going(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()> {
        self.run(|c| ops::mark_share_going(c, si, shnum))
    }

    fn abandon_share(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()> {
        self.run(|c| ops::abandon_share(c, si, shnum))
    }

    fn remove_share(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()> {
        self.run(|c| ops::remove_share(c, si, shnum))
    }

    fn change_share_space(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        used_space: u64,
    ) -> Result<()> {
        self.run(|c| ops::change_share_space(c, si, shnum, used_space))
    }

    fn mark_share_corrupt(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<()> {
        self.run(|c| ops::set_share_corrupt(c, si, shnum, Some(reason)))
    }

    fn clear_share_corrupt(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<()> {
        self.run(|c| ops::set_share_corrupt(c, si, shnum, None))
    }

    fn get_share(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<Option<ShareRecord>> {
        self.run(|c| ops::get_share(c, si, shnum))
    }

    fn get_shares(&mut self, si: &StorageIndex) -> Result<Vec<ShareRecord>> {
        self.run(|c| ops::get_shares(c, si))
    }

    fn get_shares_for_prefix(&mut self, prefix: &str) -> Result<Vec<ShareRecord>> {
        self.run(|c| ops::get_shares_for_prefix(c, prefix))
    }

    fn shares_in_state(&mut self, state: ShareState, limit: u32) -> Result<Vec<ShareRecord>> {
        self.run(|c| ops::shares_in_state(c, state, limit))
    }

    fn adopt_share(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        kind: ShareKind,
        used_space: u64,
        complete: bool,
        now: UnixTime,
    ) -> Result<AdoptOutcome> {
        self.run(|c| ops::adopt_share(c, si, shnum, kind, used_space, complete, now))
    }

    fn add_or_renew_lease(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
        account: AccountId,
        renewal_time: UnixTime,
        expiration_time: UnixTime,
    ) -> Result<()> {
        self.run(|c| ops::add_or_renew_lease(c, si, shnum, account, renewal_time, expiration_time))
    }

    fn add_or_renew_leases_for_si(
        &mut self,
        si: &StorageIndex,
        account: AccountId,
        renewal_time: UnixTime,
        expiration_time: UnixTime,
    ) -> Result<u64> {
        self.run(|c| ops::add_or_renew_leases_for_si(c, si, account, renewal_time, expiration_time))
    }

    fn get_leases(&mut self, si: &StorageIndex, shnum: ShareNum) -> Result<Vec<Lease>> {
        self.run(|c| ops::get_leases(c, si, shnum))
    }

    fn remove_expired_leases(&mut self, policy: &ExpiryPolicy, now: UnixTime) -> Result<u64> {
        self.run(|c| ops::remove_expired_leases(c, policy, now))
    }

    fn unleased_stable_shares(&mut self, limit: u32) -> Result<Vec<ShareRecord>> {
        self.run(|c| ops::unleased_stable_shares(c, limit))
    }

    fn gc_candidates(&mut self, limit: u32) -> Result<Vec<ShareRecord>> {
        self.run(|c| ops::gc_candidates(c, limit))
    }

    fn adopt_shares(&mut self, found: &[FoundShare], now: UnixTime) -> Result<Vec<AdoptOutcome>> {
        self.run(|c| ops::adopt_shares(c, found, now))
    }

    fn mark_share_going_if_unleased(
        &mut self,
        si: &StorageIndex,
        shnum: ShareNum,
    ) -> Result<Option<ShareRecord>> {
        self.run(|c| ops::mark_share_going_if_unleased(c, si, shnum))
    }

    fn expiry_preview(&mut self, policy: &ExpiryPolicy, now: UnixTime) -> Result<ExpiryPreview> {
        self.run(|c| ops::expiry_preview(c, policy, now))
    }

    fn create_account(
        &mut self,
        pubkey: Option<&str>,
        name: &str,
        now: UnixTime,
    ) -> Result<AccountId> {
        self.run(|c| ops::create_account(c, pubkey, name, now))
    }

    fn get_account(&mut self, id: AccountId) -> Result<Option<Account>> {
        self.run(|c| ops::get_account(c, id))
    }

    fn get_account_by_pubkey(&mut self, pubkey: &str) -> Result<Option<Account>> {
        self.run(|c| ops::get_account_by_pubkey(c, pubkey))
    }

    fn list_accounts(&mut self) -> Result<Vec<AccountSummary>> {
        self.run(|c| ops::list_accounts(c))
    }

    fn account_usage(&mut self, id: AccountId) -> Result<AccountUsage> {
        self.run(|c| ops::account_usage(c, id))
    }

    fn set_account_enabled(&mut self, id: AccountId, enabled: bool) -> Result<()> {
        self.run(|c| ops::set_account_enabled(c, id, enabled))
    }

    fn set_account_quota(&mut self, id: AccountId, quota: Option<u64>) -> Result<()> {
        self.run(|c| ops::set_account_quota(c, id, quota))
    }

    fn touch_account_last_seen(&mut self, id: AccountId, now: UnixTime) -> Result<()> {
        self.run(|c| ops::touch_account_last_seen(c, id, now))
    }

    fn crawler_state(&mut self) -> Result<CrawlerState> {
        self.run(|c| ops::crawler_state(c))
    }

    fn save_crawler_state(&mut self, state: &CrawlerState) -> Result<()> {
        self.run_relaxed(|c| ops::save_crawler_state(c, state))
    }

    fn finish_crawl_cycle(
        &mut self,
        end_time: UnixTime,
        retain: u32,
    ) -> Result<CrawlerHistoryEntry> {
        self.run(|c| ops::finish_crawl_cycle(c, end_time, retain))
    }

    fn crawler_history(&mut self, n: u32) -> Result<Vec<CrawlerHistoryEntry>> {
        self.run(|c| ops::crawler_history(c, n))
    }

    fn request_crawl(&mut self, now: UnixTime) -> Result<i64> {
        self.run(|c| ops::request_crawl(c, now))
    }

    fn claim_crawl_requests(&mut self, cycle: u64) -> Result<u64> {
        self.run(|c| ops::claim_crawl_requests(c, cycle))
    }

    fn open_crawl_requests(&mut self) -> Result<Vec<CrawlRequest>> {
        self.run(|c| ops::open_crawl_requests(c))
    }

    fn get_crawl_request(&mut self, id: i64) -> Result<Option<CrawlRequest>> {
        self.run(|c| ops::get_crawl_request(c, id))
    }

    fn gc_block(&mut self) -> Result<Option<GcBlock>> {
        self.run(|c| ops::gc_block(c))
    }

    fn block_gc_until_full_crawl(&mut self, now: UnixTime) -> Result<GcBlock> {
        self.run(|c| ops::block_gc_until_full_crawl(c, now))
    }

    fn clear_gc_block(&mut self) -> Result<()> {
        self.run(|c| ops::clear_gc_block(c))
    }

    fn check_integrity(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.run(|c| run_check(c, &path, true))
    }

    fn totals(&mut self) -> Result<Totals> {
        self.run(ops::totals)
    }

    fn info(&mut self) -> Result<DbInfo> {
        self.run(ops::info)
    }

    fn close(self: Box<Self>) -> Result<()> {
        let path = self.path;
        self.conn
            .close()
            .map_err(|(_, e)| classify(&path, e.into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn side_file_names() {
        assert_eq!(
            with_suffix(Path::new("/a/leasedb.sqlite"), "-wal"),
            Path::new("/a/leasedb.sqlite-wal")
        );
        assert_eq!(parent_dir(Path::new("leasedb.sqlite")), Path::new("."));
    }

    #[test]
    fn classify_only_touches_corruption_codes() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        assert!(matches!(
            classify(Path::new("x"), busy.into()),
            LeaseDbError::Sqlite(_)
        ));
        let notadb = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(26), None);
        assert!(classify(Path::new("x"), notadb.into()).is_corrupt());
        let corrupt = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(11), None);
        assert!(classify(Path::new("x"), corrupt.into()).is_corrupt());
    }

    #[test]
    fn busy_is_transient() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        assert!(LeaseDbError::from(busy).is_transient());
        assert!(!LeaseDbError::Closed.is_transient());
    }
}

//! Lease database files: creation, migrations, version refusal, corruption detection,
//! set-aside and the rebuild (GC-blocked-until-full-crawl) marker. Real SQLite files in
//! temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_storage::leasedb::{
    AccountId, CrawlerState, IntegrityCheck, LeaseDb, LeaseDbError, LeaseDbHandle, OpenOptions,
    SCHEMA_VERSION, ShareState, SqliteLeaseDb, Synchronous, set_aside_and_recreate,
};
use lafs_storage::types::{ShareKind, StorageIndex};
use std::fs;
use std::path::{Path, PathBuf};

const T0: i64 = 1_700_000_000;

fn opts() -> OpenOptions {
    OpenOptions {
        synchronous: Synchronous::Normal,
        ..OpenOptions::default()
    }
}

fn si(n: u16) -> StorageIndex {
    let mut b = [0u8; 16];
    b[..2].copy_from_slice(&n.to_be_bytes());
    b[15] = 0x5a;
    StorageIndex(b)
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("leasedb.sqlite")
}

fn open(path: &Path) -> Result<SqliteLeaseDb, LeaseDbError> {
    SqliteLeaseDb::open_with(path, T0, &opts())
}

/// A database with enough rows to span many pages, closed cleanly (WAL checkpointed).
fn populated(path: &Path, shares: u16) {
    let mut db = open(path).unwrap();
    for n in 0..shares {
        db.adopt_share(
            &si(n),
            0,
            ShareKind::Immutable,
            1000 + u64::from(n),
            true,
            T0,
        )
        .unwrap();
        db.mark_share_corrupt(&si(n), 0, &"padding so that rows are wide ".repeat(4))
            .unwrap();
    }
    Box::new(db).close().unwrap();
    assert!(
        !path.with_file_name("leasedb.sqlite-wal").exists(),
        "WAL checkpointed on close"
    );
}

fn expect_corrupt(r: Result<SqliteLeaseDb, LeaseDbError>, needle: &str) {
    match r {
        Err(LeaseDbError::Corrupt { reason, .. }) => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} should mention {needle:?}"
            )
        }
        other => panic!("expected Corrupt mentioning {needle:?}, got {other:?}"),
    }
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn fresh_database_has_builtin_accounts_and_blocks_gc() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut db = open(&path).unwrap();
    let anon = db.get_account(AccountId::ANONYMOUS).unwrap().unwrap();
    let starter = db.get_account(AccountId::STARTER).unwrap().unwrap();
    assert_eq!(
        (anon.name.as_str(), anon.pubkey.as_deref(), anon.enabled),
        ("anonymous", None, true)
    );
    assert_eq!(
        (starter.name.as_str(), starter.pubkey.as_deref()),
        ("starter", None)
    );
    assert_eq!(db.list_accounts().unwrap().len(), 2);
    let info = db.info().unwrap();
    assert_eq!(info.schema_version, SCHEMA_VERSION);
    assert_eq!(info.created_at, T0);
    let block = info.gc_block.expect("a new database blocks GC");
    assert_eq!((block.since, block.until_cycle), (T0, 0));
    assert_eq!(db.crawler_state().unwrap(), CrawlerState::default());
    // WAL, foreign keys, no leftovers from the creation ritual.
    let conn = raw(&path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("creating")), "{names:?}");
}

#[test]
fn foreign_keys_are_enforced_on_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(&db_path(&dir)).unwrap();
    // A lease on a share that does not exist is refused by the typed check...
    assert!(matches!(
        db.add_or_renew_lease(&si(1), 0, AccountId::ANONYMOUS, T0, T0 + 10),
        Err(LeaseDbError::NoSuchShare { .. })
    ));
    // ...and a lease for an unknown account by the explicit check (FK is the backstop).
    db.add_new_share(&si(1), 0, ShareKind::Immutable, 10)
        .unwrap();
    assert!(matches!(
        db.add_or_renew_lease(&si(1), 0, AccountId(77), T0, T0 + 10),
        Err(LeaseDbError::NoSuchAccount(AccountId(77)))
    ));
}

#[test]
fn reopening_is_idempotent_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let mut db = open(&path).unwrap();
        db.add_new_share(&si(1), 3, ShareKind::Mutable, 77).unwrap();
        db.create_account(Some("pk-alice"), "alice", T0).unwrap();
    }
    for i in 0..3 {
        let mut db = SqliteLeaseDb::open_with(&path, T0 + 1000 + i, &opts()).unwrap();
        let info = db.info().unwrap();
        assert_eq!(info.schema_version, SCHEMA_VERSION);
        assert_eq!(info.created_at, T0, "reopening is not re-creating");
        assert_eq!(
            db.get_share(&si(1), 3).unwrap().unwrap().state,
            ShareState::Coming
        );
        assert_eq!(db.list_accounts().unwrap().len(), 3);
    }
    let conn = raw(&path);
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open(&path).unwrap());
    raw(&path)
        .execute(
            "UPDATE schema_version SET version = ?1",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
    match open(&path) {
        Err(LeaseDbError::NewerSchema {
            found, supported, ..
        }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("{other:?}"),
    }
    // The rebuild path must not treat it as corruption either.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let r = rt.block_on(LeaseDbHandle::open_sqlite_or_rebuild(&path, T0, opts()));
    assert!(matches!(r, Err(LeaseDbError::NewerSchema { .. })), "{r:?}");
    let version: u32 = raw(&path)
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1, "never downgraded");
    assert_eq!(
        fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("corrupt")
            })
            .count(),
        0
    );
}

#[test]
fn garbage_bytes_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    fs::write(
        &path,
        b"this is not a database, it is a shopping list\n".repeat(200),
    )
    .unwrap();
    expect_corrupt(open(&path), "not an SQLite database");
}

#[test]
fn garbage_after_a_valid_header_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    populated(&path, 50);
    let mut bytes = fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(100) {
        *b ^= 0xa5;
    }
    fs::write(&path, bytes).unwrap();
    assert!(open(&path).unwrap_err().is_corrupt());
}

#[test]
fn zero_length_file_is_corrupt_not_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    fs::write(&path, b"").unwrap();
    expect_corrupt(open(&path), "zero-length");
}

#[test]
fn short_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    fs::write(&path, b"SQLite format 3\0").unwrap();
    expect_corrupt(open(&path), "shorter than an SQLite header");
}

#[test]
fn truncated_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    populated(&path, 2000);
    let len = fs::metadata(&path).unwrap().len();
    assert!(
        len > 100_000,
        "test database too small to truncate meaningfully: {len}"
    );
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    assert!(open(&path).unwrap_err().is_corrupt());
    // Even without the quick check, something on the way in notices.
    let no_check = OpenOptions {
        check: IntegrityCheck::None,
        ..opts()
    };
    let r = SqliteLeaseDb::open_with(&path, T0, &no_check).and_then(|mut db| {
        db.totals()?;
        db.unleased_stable_shares(10_000)?;
        db.check_integrity()
    });
    assert!(r.unwrap_err().is_corrupt());
}

#[test]
fn missing_table_is_corrupt() {
    for table in ["crawler_history", "leases"] {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        populated(&path, 5);
        raw(&path)
            .execute_batch(&format!("DROP TABLE {table}"))
            .unwrap();
        expect_corrupt(open(&path), &format!("table {table} is missing"));
    }
}

#[test]
fn missing_builtin_account_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open(&path).unwrap());
    raw(&path)
        .execute("DELETE FROM accounts WHERE id = 1", [])
        .unwrap();
    expect_corrupt(open(&path), "starter account");
}

#[test]
fn someone_elses_sqlite_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    raw(&path)
        .execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup');")
        .unwrap();
    expect_corrupt(open(&path), "not a lafs lease database");
    // An empty SQLite database (valid header, no tables) as well.
    let path2 = dir.path().join("empty.sqlite");
    raw(&path2)
        .execute_batch("PRAGMA user_version = 1")
        .unwrap();
    assert!(open(&path2).unwrap_err().is_corrupt());
}

#[test]
fn io_trouble_is_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("leasedb.sqlite");
    let e = open(&path).unwrap_err();
    assert!(!e.is_corrupt(), "{e:?}");
    assert!(
        matches!(e, LeaseDbError::Io { .. } | LeaseDbError::Sqlite(_)),
        "{e:?}"
    );
}

#[test]
fn set_aside_keeps_the_old_files_and_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    fs::write(&path, b"garbage".repeat(100)).unwrap();
    fs::write(path.with_file_name("leasedb.sqlite-wal"), b"old wal").unwrap();
    fs::write(path.with_file_name("leasedb.sqlite-shm"), b"old shm").unwrap();
    assert!(open(&path).unwrap_err().is_corrupt());

    let now = T0 + 500;
    let (mut db, aside) = set_aside_and_recreate(&path, now, &opts()).unwrap();
    let aside = aside.expect("something was set aside");
    assert_eq!(
        aside,
        dir.path().join(format!("leasedb.sqlite.corrupt-{now}"))
    );
    assert_eq!(fs::read(&aside).unwrap(), b"garbage".repeat(100));
    assert_eq!(
        fs::read(dir.path().join(format!("leasedb.sqlite.corrupt-{now}-wal"))).unwrap(),
        b"old wal"
    );
    assert_eq!(
        fs::read(dir.path().join(format!("leasedb.sqlite.corrupt-{now}-shm"))).unwrap(),
        b"old shm"
    );
    let info = db.info().unwrap();
    assert_eq!(info.created_at, now);
    assert_eq!(info.gc_block.unwrap().since, now);
    assert_eq!(db.list_accounts().unwrap().len(), 2);
    drop(db);

    // A second set-aside in the same second does not overwrite the first.
    let (_db, aside2) = set_aside_and_recreate(&path, now, &opts()).unwrap();
    assert_eq!(
        aside2.unwrap(),
        dir.path().join(format!("leasedb.sqlite.corrupt-{now}.1"))
    );
    assert_eq!(fs::read(&aside).unwrap(), b"garbage".repeat(100));
}

#[test]
fn orphaned_wal_is_not_replayed_into_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    // A real database with uncheckpointed WAL content, whose main file is then lost.
    {
        let mut db = open(&path).unwrap();
        db.add_new_share(&si(9), 0, ShareKind::Immutable, 1)
            .unwrap();
        let wal = path.with_file_name("leasedb.sqlite-wal");
        assert!(
            fs::metadata(&wal).unwrap().len() > 0,
            "the write is still in the WAL"
        );
        fs::copy(&wal, dir.path().join("saved-wal")).unwrap();
    }
    fs::remove_file(&path).unwrap();
    fs::copy(
        dir.path().join("saved-wal"),
        path.with_file_name("leasedb.sqlite-wal"),
    )
    .unwrap();
    let mut db = SqliteLeaseDb::open_with(&path, T0 + 7, &opts()).unwrap();
    assert_eq!(
        db.totals().unwrap().coming.shares,
        0,
        "nothing replayed from the foreign WAL"
    );
    db.check_integrity().unwrap();
    assert!(
        dir.path()
            .join(format!("leasedb.sqlite.orphaned-{}-wal", T0 + 7))
            .exists()
    );
}

#[test]
fn async_open_or_rebuild_sets_aside_corrupt_databases() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    fs::write(&path, b"").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let (h, report) = LeaseDbHandle::open_sqlite_or_rebuild(&path, T0, opts())
            .await
            .unwrap();
        let report = report.expect("rebuilt");
        assert!(report.reason.is_corrupt());
        assert_eq!(fs::metadata(report.set_aside.unwrap()).unwrap().len(), 0);
        assert!(h.gc_block().await.unwrap().is_some());
        h.close().await.unwrap();
        // A healthy database opens without a rebuild.
        let (h, report) = LeaseDbHandle::open_sqlite_or_rebuild(&path, T0, opts())
            .await
            .unwrap();
        assert!(report.is_none());
        h.close().await.unwrap();
    });
}

#[test]
fn gc_stays_blocked_until_a_cycle_started_after_the_rebuild_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(&db_path(&dir)).unwrap();
    db.adopt_share(&si(1), 0, ShareKind::Immutable, 5, true, T0)
        .unwrap();
    db.remove_expired_leases(
        &lafs_storage::leasedb::ExpiryPolicy::all(lafs_storage::leasedb::ExpiryMode::CutoffDate {
            cutoff: T0 + 1,
        }),
        T0 + 1,
    )
    .unwrap();
    assert_eq!(
        db.unleased_stable_shares(10).unwrap().len(),
        1,
        "the query itself ignores the block"
    );
    assert!(matches!(db.gc_candidates(10), Err(LeaseDbError::GcBlocked(b)) if b.until_cycle == 0));

    // Cycle 0 runs and finishes: the block lifts.
    let mut st = db.crawler_state().unwrap();
    st.cycle_start_time = Some(T0 + 10);
    db.save_crawler_state(&st).unwrap();
    assert!(db.gc_candidates(10).is_err(), "still blocked mid-cycle");
    db.finish_crawl_cycle(T0 + 20, 10).unwrap();
    assert_eq!(db.gc_block().unwrap(), None);
    assert_eq!(db.gc_candidates(10).unwrap().len(), 1);

    // Blocking again in the middle of cycle 1: cycle 1 does not count, cycle 2 does.
    let mut st = db.crawler_state().unwrap();
    assert_eq!(st.cycle, 1);
    st.cycle_start_time = Some(T0 + 30);
    st.position = Some(si(1));
    db.save_crawler_state(&st).unwrap();
    let block = db.block_gc_until_full_crawl(T0 + 35).unwrap();
    assert_eq!(block.until_cycle, 2);
    db.finish_crawl_cycle(T0 + 40, 10).unwrap();
    assert_eq!(
        db.gc_block().unwrap(),
        Some(block),
        "cycle 1 started before the block"
    );
    let mut st = db.crawler_state().unwrap();
    st.cycle_start_time = Some(T0 + 50);
    db.save_crawler_state(&st).unwrap();
    db.finish_crawl_cycle(T0 + 60, 10).unwrap();
    assert_eq!(db.gc_block().unwrap(), None);

    // Operator override.
    db.block_gc_until_full_crawl(T0 + 70).unwrap();
    db.clear_gc_block().unwrap();
    assert!(db.gc_candidates(10).is_ok());
}

#[test]
fn the_block_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open(&path).unwrap());
    let mut db = open(&path).unwrap();
    assert!(db.gc_block().unwrap().is_some());
    let mut st = db.crawler_state().unwrap();
    st.cycle_start_time = Some(T0);
    db.save_crawler_state(&st).unwrap();
    db.finish_crawl_cycle(T0 + 1, 5).unwrap();
    drop(db);
    assert_eq!(open(&path).unwrap().gc_block().unwrap(), None);
}

#[test]
fn full_integrity_check_passes_on_a_healthy_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    populated(&path, 100);
    let full = OpenOptions {
        check: IntegrityCheck::Full,
        synchronous: Synchronous::Full,
        ..OpenOptions::default()
    };
    let mut db = SqliteLeaseDb::open_with(&path, T0, &full).unwrap();
    db.check_integrity().unwrap();
    assert_eq!(db.totals().unwrap().stable.shares, 100);
}

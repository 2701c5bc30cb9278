//! The async lease database handle: concurrency from many tasks, never blocking the runtime,
//! typed errors across the thread boundary, panics, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_storage::leasedb::{
    AccountId, LeaseDbError, LeaseDbHandle, OpenOptions, ShareState, Synchronous,
};
use lafs_storage::types::{ShareKind, StorageIndex};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T0: i64 = 1_700_000_000;

fn si(n: u16) -> StorageIndex {
    let mut b = [7u8; 16];
    b[..2].copy_from_slice(&n.to_be_bytes());
    StorageIndex(b)
}

fn opts() -> OpenOptions {
    OpenOptions {
        synchronous: Synchronous::Normal,
        ..OpenOptions::default()
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn wal(path: &Path) -> PathBuf {
    path.with_file_name("leasedb.sqlite-wal")
}

#[test]
fn handle_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<LeaseDbHandle>();
}

/// 1000 operations from 50 tasks on a single-threaded runtime, some of them deliberately slow
/// (400 ms inside the database closure), while a timer task must keep ticking. If any
/// operation ran on the runtime thread, the timer would stall for at least 400 ms.
#[test]
fn many_tasks_one_runtime_thread_and_the_timer_keeps_ticking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    current_thread().block_on(async {
        let h = LeaseDbHandle::open_sqlite(&path, T0, opts()).await.unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_millis(5));
                let mut last = Instant::now();
                let (mut ticks, mut max_gap) = (0u32, Duration::ZERO);
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    interval.tick().await;
                    let now = Instant::now();
                    max_gap = max_gap.max(now - last);
                    last = now;
                    ticks += 1;
                }
                (ticks, max_gap)
            })
        };
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..50u16 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                for shnum in 0..10u16 {
                    h.add_new_share(si(t), shnum, ShareKind::Immutable, 100)
                        .await
                        .unwrap();
                    h.add_or_renew_lease(si(t), shnum, AccountId::ANONYMOUS, T0, T0 + 1000)
                        .await
                        .unwrap();
                }
            }));
        }
        for _ in 0..3 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.call(|db| {
                    std::thread::sleep(Duration::from_millis(400));
                    db.totals()
                })
                .await
                .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ticks, max_gap) = ticker.await.unwrap();
        assert!(
            elapsed >= Duration::from_millis(1200),
            "the slow jobs ran: {elapsed:?}"
        );
        assert!(
            max_gap < Duration::from_millis(250),
            "runtime blocked for {max_gap:?}"
        );
        assert!(
            ticks >= 100,
            "timer ticked only {ticks} times in {elapsed:?}"
        );

        let totals = h.totals().await.unwrap();
        assert_eq!(
            (
                totals.coming.shares,
                totals.coming.used_space,
                totals.leases
            ),
            (500, 50_000, 500)
        );
        assert_eq!(
            h.account_usage(AccountId::ANONYMOUS)
                .await
                .unwrap()
                .used_space,
            50_000
        );
        h.close().await.unwrap();
    });
}

#[test]
fn errors_cross_the_thread_boundary_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    current_thread().block_on(async {
        let h = LeaseDbHandle::open_sqlite(&path, T0, opts()).await.unwrap();
        h.add_new_share(si(1), 0, ShareKind::Immutable, 1)
            .await
            .unwrap();
        h.mark_share_stable(si(1), 0, 1).await.unwrap();
        h.mark_share_going(si(1), 0).await.unwrap();
        let e = h
            .add_new_share(si(1), 0, ShareKind::Immutable, 1)
            .await
            .unwrap_err();
        assert!(matches!(e, LeaseDbError::ShareGoing { .. }), "{e:?}");
        assert!(matches!(
            h.gc_candidates(10).await,
            Err(LeaseDbError::GcBlocked(_))
        ));
        assert_eq!(
            h.get_share(si(1), 0).await.unwrap().unwrap().state,
            ShareState::Going
        );
        // Several operations back to back in one job.
        let n = h
            .call(|db| {
                db.remove_share(&si(1), 0)?;
                db.add_new_share(&si(1), 0, ShareKind::Immutable, 2)?;
                Ok(db.get_shares(&si(1))?.len())
            })
            .await
            .unwrap();
        assert_eq!(n, 1);
    });
}

#[test]
fn a_panicking_job_does_not_kill_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    current_thread().block_on(async {
        let h = LeaseDbHandle::open_sqlite(&path, T0, opts()).await.unwrap();
        let r: Result<(), _> = h
            .call(|db| {
                db.add_new_share(&si(2), 0, ShareKind::Immutable, 1)?;
                panic!("boom");
            })
            .await;
        assert!(matches!(r, Err(LeaseDbError::Panicked)), "{r:?}");
        assert_eq!(
            h.get_shares(si(2)).await.unwrap().len(),
            1,
            "work before the panic stays committed"
        );
        assert!(!h.is_closed());
    });
}

#[test]
fn close_waits_for_queued_work_and_then_refuses_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    current_thread().block_on(async {
        let h = LeaseDbHandle::open_sqlite(&path, T0, opts()).await.unwrap();
        let other = h.clone();
        let queued = {
            let h = h.clone();
            tokio::spawn(async move {
                h.call(|db| {
                    std::thread::sleep(Duration::from_millis(100));
                    db.add_new_share(&si(3), 0, ShareKind::Immutable, 9)
                })
                .await
            })
        };
        tokio::task::yield_now().await; // let the slow job get queued first
        h.close().await.unwrap();
        queued.await.unwrap().unwrap();
        assert!(
            !wal(&path).exists(),
            "closed cleanly: WAL checkpointed and removed"
        );
        assert!(matches!(other.totals().await, Err(LeaseDbError::Closed)));
        assert!(other.is_closed());
        let h = LeaseDbHandle::open_sqlite(&path, T0, opts()).await.unwrap();
        assert_eq!(h.get_share(si(3), 0).await.unwrap().unwrap().used_space, 9);
    });
}

#[test]
fn dropping_the_last_handle_shuts_the_worker_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    let rt = current_thread();
    let h = rt
        .block_on(LeaseDbHandle::open_sqlite(&path, T0, opts()))
        .unwrap();
    let h2 = h.clone();
    rt.block_on(h.add_new_share(si(4), 0, ShareKind::Mutable, 5))
        .unwrap();
    assert!(wal(&path).exists());
    drop(h);
    rt.block_on(h2.totals()).unwrap();
    drop(h2);
    // The worker closes the connection, which checkpoints and deletes the WAL.
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal(&path).exists() {
        assert!(
            Instant::now() < deadline,
            "worker did not close the database"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn open_reports_corruption_through_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    std::fs::write(&path, vec![0xffu8; 8192]).unwrap();
    let r = current_thread().block_on(LeaseDbHandle::open_sqlite(&path, T0, opts()));
    assert!(r.unwrap_err().is_corrupt());
}

#[test]
fn works_from_a_multi_threaded_runtime_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let h = LeaseDbHandle::open_sqlite(&path, T0, opts()).await.unwrap();
        let acct = h
            .create_account(Some("pk".into()), "acct".into(), T0)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..20u16 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.adopt_share(si(100 + t), 0, ShareKind::Immutable, 10, true, T0)
                    .await
                    .unwrap();
                h.add_or_renew_lease(si(100 + t), 0, acct, T0, T0 + 5)
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let usage = h.account_usage(acct).await.unwrap();
        assert_eq!((usage.used_space, usage.leases), (200, 20));
        h.close().await.unwrap();
    });
}

/// `LeaseDbHandle::spawn` accepts any `LeaseDb`, e.g. one opened synchronously.
#[test]
fn spawn_an_already_open_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    let db = lafs_storage::leasedb::SqliteLeaseDb::open_with(&path, T0, &opts()).unwrap();
    let h = LeaseDbHandle::spawn(Box::new(db)).unwrap();
    let info = current_thread().block_on(h.info()).unwrap();
    assert_eq!(info.created_at, T0);
}

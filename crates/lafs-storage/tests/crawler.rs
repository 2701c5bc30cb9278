//! Accounting crawler scenarios against the real disk backend and real SQLite: shares copied in
//! or removed by hand, a lost or damaged lease database, lease expiry with an injected clock,
//! dry runs, resumption, and crawl requests from another connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::crawler::{Crawler, CrawlerConfig, PREFIXES, Step};
use lafs_storage::leasedb::{
    AccountId, ExpiryMode, ExpiryPolicy, LeaseDb, LeaseDbHandle, OpenOptions, ShareState,
    SqliteLeaseDb, Synchronous,
};
use lafs_storage::server::{Clock, ServerConfig, ServerError, StorageServer, TestWrite};
use lafs_storage::types::{ShareKind, ShareNum, StorageIndex};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const T0: i64 = 1_700_000_000;
const DAY: i64 = 24 * 60 * 60;

#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl TestClock {
    fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

struct Node {
    _dir: tempfile::TempDir,
    storage: PathBuf,
    clock: Arc<TestClock>,
}

fn opts() -> OpenOptions {
    OpenOptions {
        synchronous: Synchronous::Normal,
        ..OpenOptions::default()
    }
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        Self {
            _dir: dir,
            storage,
            clock: Arc::new(TestClock(AtomicI64::new(T0))),
        }
    }

    fn db_path(&self) -> PathBuf {
        self.storage.join("leasedb.sqlite")
    }

    fn shares(&self) -> PathBuf {
        self.storage.join("shares")
    }

    /// Opens the server as `lafs run` does: rebuild a corrupt database, recover, serve.
    async fn start(&self) -> (Arc<StorageServer>, bool) {
        let (db, rebuilt) =
            LeaseDbHandle::open_sqlite_or_rebuild(&self.db_path(), self.clock.now(), opts())
                .await
                .unwrap();
        let backend = Arc::new(DiskBackend::open(self.storage.clone()).unwrap());
        let s = Arc::new(StorageServer::new(
            backend,
            db,
            ServerConfig::default(),
            self.clock.clone(),
        ));
        s.startup().await.unwrap();
        (s, rebuilt.is_some())
    }
}

async fn stop(s: Arc<StorageServer>) {
    let db = s.leasedb().clone();
    drop(s);
    db.close().await.unwrap();
}

fn crawler(s: &Arc<StorageServer>, expiry: Option<ExpiryPolicy>, dry_run: bool) -> Crawler {
    Crawler::new(
        s.clone(),
        CrawlerConfig {
            expiry,
            gc_dry_run: dry_run,
            list_batch: 3,
            ..CrawlerConfig::default()
        },
    )
}

fn si(n: u8) -> StorageIndex {
    // Spread over several prefixes (the first byte picks the prefix).
    let mut b = [n; 16];
    b[0] = n.wrapping_mul(37);
    StorageIndex(b)
}

async fn upload(
    s: &StorageServer,
    account: AccountId,
    si: StorageIndex,
    shnum: ShareNum,
    len: usize,
) {
    let shnums: BTreeSet<ShareNum> = [shnum].into();
    let (_, alloc) = s
        .allocate(account, &si, &shnums, len as u64, b"secret")
        .await
        .unwrap();
    assert_eq!(alloc, shnums);
    let data = Bytes::from(vec![shnum as u8; len]);
    let out = s.write(&si, shnum, b"secret", 0, data).await.unwrap();
    assert!(out.complete);
}

async fn write_mutable(s: &StorageServer, si: StorageIndex, shnum: ShareNum, len: usize) {
    let tw: BTreeMap<ShareNum, TestWrite> = [(
        shnum,
        TestWrite {
            writes: vec![(0, Bytes::from(vec![7u8; len]).into())],
            ..TestWrite::default()
        },
    )]
    .into();
    let out = s
        .read_test_write(AccountId::ANONYMOUS, &si, &[9; 32], &tw, &[])
        .await
        .unwrap();
    assert!(out.success);
}

async fn state(s: &StorageServer, si: StorageIndex, shnum: ShareNum) -> Option<ShareState> {
    s.leasedb()
        .get_share(si, shnum)
        .await
        .unwrap()
        .map(|r| r.state)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn share_dir(shares: &Path, si: &StorageIndex) -> PathBuf {
    shares.join(si.prefix()).join(si.to_base32())
}

#[tokio::test]
async fn shares_copied_in_by_hand_are_adopted_with_starter_leases() {
    // Make shares on one node, then copy its share directories into another node's.
    let origin = Node::new();
    let (src, _) = origin.start().await;
    for n in 1..=4u8 {
        upload(&src, AccountId::ANONYMOUS, si(n), 0, 100 + usize::from(n)).await;
        upload(&src, AccountId::ANONYMOUS, si(n), 3, 100 + usize::from(n)).await;
    }
    write_mutable(&src, si(9), 1, 500).await;
    stop(src).await;

    let node = Node::new();
    let (s, _) = node.start().await;
    upload(&s, AccountId::ANONYMOUS, si(20), 0, 10).await;
    for n in [1u8, 2, 3, 4, 9] {
        copy_dir(
            &share_dir(&origin.shares(), &si(n)),
            &share_dir(&node.shares(), &si(n)),
        );
    }
    assert_eq!(
        state(&s, si(1), 0).await,
        None,
        "not known before the crawl"
    );
    let entry = crawler(&s, None, false).run_full_cycle().await.unwrap();
    assert_eq!(entry.counters.adopted, 9);
    assert_eq!(entry.counters.shares_seen, 10);
    assert_eq!(entry.counters.vanished, 0);
    for n in 1..=4u8 {
        for shnum in [0, 3] {
            let rec = s.leasedb().get_share(si(n), shnum).await.unwrap().unwrap();
            assert_eq!(rec.state, ShareState::Stable);
            assert_eq!(rec.kind, ShareKind::Immutable);
            assert_eq!(rec.used_space, 100 + u64::from(n));
            let leases = s.leasedb().get_leases(si(n), shnum).await.unwrap();
            assert_eq!(leases.len(), 1);
            assert_eq!(leases[0].account_id, AccountId::STARTER);
            assert_eq!(leases[0].renewal_time, T0);
        }
    }
    let m = s.leasedb().get_share(si(9), 1).await.unwrap().unwrap();
    assert_eq!(
        (m.kind, m.state, m.used_space),
        (ShareKind::Mutable, ShareState::Stable, 500)
    );
    // The share the server made itself keeps its own lease only.
    let own = s.leasedb().get_leases(si(20), 0).await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].account_id, AccountId::ANONYMOUS);
    // Adopted shares are served.
    let b = s
        .read(ShareKind::Immutable, &si(2), 3, 0, 1000)
        .await
        .unwrap();
    assert_eq!(b.len(), 102);
    // A second cycle finds nothing new.
    let again = crawler(&s, None, false).run_full_cycle().await.unwrap();
    assert_eq!(
        (again.counters.adopted, again.counters.shares_seen),
        (0, 10)
    );
    stop(s).await;
}

#[tokio::test]
async fn shares_removed_by_hand_disappear_with_their_leases() {
    let node = Node::new();
    let (s, _) = node.start().await;
    for n in 1..=3u8 {
        upload(&s, AccountId::ANONYMOUS, si(n), 0, 50).await;
    }
    write_mutable(&s, si(8), 2, 40).await;
    std::fs::remove_dir_all(share_dir(&node.shares(), &si(2))).unwrap();
    std::fs::remove_dir_all(share_dir(&node.shares(), &si(8))).unwrap();
    let entry = crawler(&s, None, false).run_full_cycle().await.unwrap();
    assert_eq!(entry.counters.vanished, 2);
    assert_eq!(entry.counters.shares_seen, 2);
    assert_eq!(state(&s, si(2), 0).await, None);
    assert_eq!(state(&s, si(8), 2).await, None);
    assert!(s.leasedb().get_leases(si(2), 0).await.unwrap().is_empty());
    assert_eq!(state(&s, si(1), 0).await, Some(ShareState::Stable));
    assert_eq!(state(&s, si(3), 0).await, Some(ShareState::Stable));
    let usage = s
        .leasedb()
        .account_usage(AccountId::ANONYMOUS)
        .await
        .unwrap();
    assert_eq!((usage.leases, usage.used_space), (2, 100));
    stop(s).await;
}

#[tokio::test]
async fn corrupt_and_resized_shares_are_recorded() {
    let node = Node::new();
    let (s, _) = node.start().await;
    upload(&s, AccountId::ANONYMOUS, si(1), 0, 50).await;
    // A file with a garbage header appears next to it.
    std::fs::write(share_dir(&node.shares(), &si(1)).join("5"), b"garbage").unwrap();
    let entry = crawler(&s, None, false).run_full_cycle().await.unwrap();
    assert_eq!(entry.counters.corrupt, 1);
    assert_eq!(entry.counters.adopted, 1);
    let rec = s.leasedb().get_share(si(1), 5).await.unwrap().unwrap();
    assert!(rec.corrupt_reason.is_some());
    assert!(matches!(
        s.read(ShareKind::Immutable, &si(1), 5, 0, 10).await,
        Err(ServerError::Corrupt(_))
    ));
    // A mutable share replaced out of band by a larger one: the recorded size follows.
    write_mutable(&s, si(8), 0, 100).await;
    let other = Node::new();
    let (o, _) = other.start().await;
    write_mutable(&o, si(8), 0, 300).await;
    stop(o).await;
    let target = share_dir(&node.shares(), &si(8)).join("0");
    std::fs::copy(share_dir(&other.shares(), &si(8)).join("0"), &target).unwrap();
    crawler(&s, None, false).run_full_cycle().await.unwrap();
    let m = s.leasedb().get_share(si(8), 0).await.unwrap().unwrap();
    assert_eq!(m.used_space, 300);
    stop(s).await;
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Deleted,
    Truncated,
    Garbage,
}

#[tokio::test]
async fn damaged_leasedb_is_rebuilt_and_loses_nothing() {
    for damage in [Damage::Deleted, Damage::Truncated, Damage::Garbage] {
        let node = Node::new();
        let (s, rebuilt) = node.start().await;
        assert!(!rebuilt);
        for n in 1..=5u8 {
            upload(&s, AccountId::ANONYMOUS, si(n), 1, 64).await;
        }
        write_mutable(&s, si(30), 0, 80).await;
        // Lift the creation GC block, so the block seen later is the rebuild's.
        crawler(&s, None, false).run_full_cycle().await.unwrap();
        stop(s).await;
        let db = node.db_path();
        match damage {
            Damage::Deleted => {
                std::fs::remove_file(&db).unwrap();
            }
            Damage::Truncated => {
                let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
                f.set_len(1000).unwrap();
            }
            Damage::Garbage => {
                std::fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
            }
        }
        node.clock.set(T0 + 400 * DAY);
        let (s, rebuilt) = node.start().await;
        assert_eq!(
            rebuilt,
            !matches!(damage, Damage::Deleted),
            "{damage:?}: a missing file is created, a damaged one set aside"
        );
        assert!(
            s.leasedb().gc_block().await.unwrap().is_some(),
            "{damage:?}"
        );
        // An expiry policy that expires every lease immediately, GC on.
        let all = Some(ExpiryPolicy::all(ExpiryMode::Age {
            override_lease_duration: 0,
        }));
        let mut c = crawler(&s, all, false);
        let first = c.run_full_cycle().await.unwrap();
        assert_eq!(first.counters.adopted, 6, "{damage:?}");
        assert_eq!(first.counters.shares_collected, 0, "{damage:?}: GC blocked");
        assert!(s.leasedb().gc_block().await.unwrap().is_none());
        for n in 1..=5u8 {
            assert_eq!(state(&s, si(n), 1).await, Some(ShareState::Stable));
            let b = s
                .read(ShareKind::Immutable, &si(n), 1, 0, 100)
                .await
                .unwrap();
            assert_eq!(b, Bytes::from(vec![1u8; 64]), "{damage:?}");
        }
        assert_eq!(state(&s, si(30), 0).await, Some(ShareState::Stable));
        // Renewed by their owner, the shares survive expiry after the block lifted.
        node.clock.set(T0 + 401 * DAY);
        for n in 1..=5u8 {
            s.add_or_renew_lease(AccountId::ANONYMOUS, &si(n))
                .await
                .unwrap();
        }
        let mut c = crawler(
            &s,
            Some(ExpiryPolicy::all(ExpiryMode::ExpirationTime)),
            false,
        );
        node.clock.set(T0 + 470 * DAY); // starter leases (60 days) expired, owners' (31) too
        let second = c.run_full_cycle().await.unwrap();
        assert_eq!(second.counters.shares_collected, 6, "{damage:?}");
        stop(s).await;
    }
}

#[tokio::test]
async fn lease_expiry_with_injected_clock_collects_exactly_the_expired_shares() {
    let node = Node::new();
    let (s, _) = node.start().await;
    let alice = s
        .leasedb()
        .create_account(Some("pk-alice".into()), "alice".into(), T0)
        .await
        .unwrap();
    upload(&s, AccountId::ANONYMOUS, si(1), 0, 10).await; // expires T0 + 31 days
    upload(&s, AccountId::ANONYMOUS, si(2), 0, 20).await;
    upload(&s, alice, si(2), 1, 30).await;
    write_mutable(&s, si(3), 0, 40).await;
    // A share being uploaded whose lease expires too: COMING is never collected.
    let shnums: BTreeSet<ShareNum> = [4].into();
    s.allocate(AccountId::ANONYMOUS, &si(5), &shnums, 10, b"s")
        .await
        .unwrap();
    // Lift the creation block with a cycle that expires nothing yet.
    let policy = ExpiryPolicy::all(ExpiryMode::ExpirationTime);
    crawler(&s, Some(policy), false)
        .run_full_cycle()
        .await
        .unwrap();
    // Ten days later the anonymous client renews si(2) and si(3); alice does nothing.
    node.clock.set(T0 + 10 * DAY);
    s.add_or_renew_lease(AccountId::ANONYMOUS, &si(2))
        .await
        .unwrap();
    write_mutable(&s, si(3), 0, 40).await;
    node.clock.set(T0 + 32 * DAY);
    // Dry run first: reports, removes nothing.
    let dry = crawler(&s, Some(policy), true)
        .run_full_cycle()
        .await
        .unwrap();
    assert!(dry.counters.gc_dry_run);
    assert_eq!(dry.counters.shares_collected, 1);
    assert_eq!(dry.counters.bytes_collected, 10);
    assert_eq!(
        dry.counters.leases_expired, 3,
        "si1#0 anon, si5#4 anon and si2#1 alice"
    );
    assert_eq!(state(&s, si(1), 0).await, Some(ShareState::Stable));
    assert!(node.shares().join(si(1).prefix()).exists());
    // The real thing.
    let real = crawler(&s, Some(policy), false)
        .run_full_cycle()
        .await
        .unwrap();
    assert!(!real.counters.gc_dry_run);
    assert_eq!(real.counters.leases_expired, 3);
    assert_eq!(real.counters.shares_collected, 1);
    assert_eq!(real.counters.bytes_collected, 10);
    assert_eq!(state(&s, si(1), 0).await, None);
    assert!(!share_dir(&node.shares(), &si(1)).exists());
    // si(2)#1 lost alice's lease but kept the anonymous renewal on the storage index.
    assert_eq!(state(&s, si(2), 1).await, Some(ShareState::Stable));
    assert_eq!(state(&s, si(3), 0).await, Some(ShareState::Stable));
    assert_eq!(state(&s, si(5), 4).await, Some(ShareState::Coming));
    assert_eq!(s.leasedb().account_usage(alice).await.unwrap().leases, 0);
    // The upload still completes.
    let out = s
        .write(&si(5), 4, b"s", 0, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    assert!(out.complete);
    // The collected share is gone for good: a later crawl does not resurrect it.
    let after = crawler(&s, Some(policy), false)
        .run_full_cycle()
        .await
        .unwrap();
    assert_eq!(after.counters.adopted, 0);
    assert_eq!(state(&s, si(1), 0).await, None);
    stop(s).await;
}

#[tokio::test]
async fn crawler_resumes_after_restart_mid_cycle() {
    let node = Node::new();
    let (s, _) = node.start().await;
    for n in 1..=40u8 {
        upload(&s, AccountId::ANONYMOUS, si(n), 0, 10).await;
    }
    // A fresh database copy without these rows: make them all "found".
    stop(s).await;
    std::fs::remove_file(node.db_path()).unwrap();
    let (s, _) = node.start().await;
    let mut c = crawler(&s, None, false);
    let mut steps = 0;
    while steps < 300 {
        match c.step().await.unwrap() {
            Step::Prefix(_) => steps += 1,
            Step::CycleFinished(_) => panic!("cycle finished too early"),
        }
    }
    let mid = s.leasedb().crawler_state().await.unwrap();
    assert!(mid.in_cycle());
    assert!(mid.counters.shares_seen < 40);
    stop(s).await;
    // Restart: the cycle continues where it stopped and counts every share once.
    let (s, _) = node.start().await;
    let mut c = crawler(&s, None, false);
    let mut prefixes = 0;
    let entry = loop {
        match c.step().await.unwrap() {
            Step::Prefix(p) => {
                assert!(p >= 300);
                prefixes += 1;
            }
            Step::CycleFinished(e) => break e,
        }
    };
    assert_eq!(prefixes, usize::from(PREFIXES) - 300);
    assert_eq!(entry.cycle, 0);
    assert_eq!(entry.counters.shares_seen, 40);
    assert_eq!(entry.counters.adopted, 40);
    assert!(s.leasedb().gc_block().await.unwrap().is_none());
    stop(s).await;
}

#[tokio::test]
async fn crawl_request_from_another_connection_runs_a_cycle_at_once() {
    let node = Node::new();
    let (s, _) = node.start().await;
    upload(&s, AccountId::ANONYMOUS, si(1), 0, 10).await;
    // A crawler that would take days per cycle when left alone.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let c = Crawler::new(
        s.clone(),
        CrawlerConfig {
            cpu_fraction: 0.001,
            min_cycle_interval: Duration::from_secs(365 * 24 * 3600),
            poll_interval: Duration::from_millis(50),
            ..CrawlerConfig::default()
        },
    );
    let task = tokio::spawn(c.run(stop_rx));
    // Wait until its first cycle is under way (it starts at once: there is no history).
    for _ in 0..200 {
        if s.leasedb().crawler_state().await.unwrap().in_cycle() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.leasedb().crawler_state().await.unwrap().in_cycle());
    // The admin tool's connection (as `lafs storage crawl-now` opens it).
    std::fs::remove_dir_all(share_dir(&node.shares(), &si(1))).unwrap();
    let path = node.db_path();
    let id = tokio::task::spawn_blocking(move || {
        let mut admin = SqliteLeaseDb::open_admin(&path).unwrap();
        admin.request_crawl(T0).unwrap()
    })
    .await
    .unwrap();
    let path = node.db_path();
    let done = tokio::task::spawn_blocking(move || {
        let mut admin = SqliteLeaseDb::open_admin(&path).unwrap();
        for _ in 0..600 {
            let r = admin.get_crawl_request(id).unwrap().unwrap();
            if r.done_at.is_some() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .await
    .unwrap()
    .expect("the crawl request is answered");
    let hist = s.leasedb().crawler_history(10).await.unwrap();
    // The request arrived mid-cycle: that cycle finished (unthrottled) and a whole new one ran.
    assert_eq!(done.started_cycle, Some(1));
    assert_eq!(hist.iter().map(|h| h.cycle).collect::<Vec<_>>(), vec![1, 0]);
    assert_eq!(hist.iter().map(|h| h.counters.vanished).sum::<u64>(), 1);
    assert_eq!(state(&s, si(1), 0).await, None);
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    // A missing database is not created by the admin tool.
    assert!(SqliteLeaseDb::open_admin(&node.storage.join("nope.sqlite")).is_err());
    assert!(!node.storage.join("nope.sqlite").exists());
    stop(s).await;
}

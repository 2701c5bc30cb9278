//! Property test of the accounting crawler and garbage collector: random sequences of create /
//! write / abort / add-lease / mutable write / clock advance / expire+collect / crawl / partial
//! crawl / delete-out-of-band / add-out-of-band / crash-and-restart against the real server on
//! the disk backend and real SQLite, checking after every step:
//! - no leased or COMING share is ever deleted (a share leased past the expiry point survives
//!   expiry; COMING rows survive everything but their own abort or completion and a crash);
//! - nothing is left GOING, and a collected share never comes back unless re-created;
//! - per-account usage from the database equals a recount from the rows and leases;
//! - after a full crawl the database agrees with the backend exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::crawler::{Crawler, CrawlerConfig};
use lafs_storage::leasedb::{
    AccountId, ExpiryMode, ExpiryPolicy, LeaseDbHandle, OpenOptions, ShareRecord, ShareState,
    Synchronous,
};
use lafs_storage::server::{Clock, ServerConfig, StorageServer, TestWrite};
use lafs_storage::types::{ShareNum, StorageIndex};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const T0: i64 = 1_700_000_000;
const DAY: i64 = 86_400;
/// Storage indexes 0 and 1 hold immutable shares, 2 mutable ones, 3 shares added by hand.
const SIS: u8 = 4;

#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        si: u8,
        shnum: u8,
        len: u8,
        account: u8,
    },
    Write {
        upload: u8,
    },
    Abort {
        upload: u8,
    },
    AddLease {
        si: u8,
        account: u8,
    },
    Mutable {
        shnum: u8,
        len: u8,
        account: u8,
    },
    Advance {
        days: u8,
    },
    Expire,
    Crawl,
    CrawlSteps {
        steps: u16,
    },
    DeleteOutOfBand {
        si: u8,
    },
    AddOutOfBand {
        si: u8,
        shnum: u8,
        len: u8,
    },
    CrashRestart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2u8, 0..3u8, 1..60u8, 0..3u8)
            .prop_map(|(si, shnum, len, account)| Op::Create { si, shnum, len, account }),
        4 => any::<u8>().prop_map(|upload| Op::Write { upload }),
        1 => any::<u8>().prop_map(|upload| Op::Abort { upload }),
        2 => (0..SIS, 0..3u8).prop_map(|(si, account)| Op::AddLease { si, account }),
        2 => (0..3u8, 0..60u8, 0..3u8)
            .prop_map(|(shnum, len, account)| Op::Mutable { shnum, len, account }),
        3 => (0..40u8).prop_map(|days| Op::Advance { days }),
        2 => Just(Op::Expire),
        2 => Just(Op::Crawl),
        1 => (1..1024u16).prop_map(|steps| Op::CrawlSteps { steps }),
        1 => (0..SIS).prop_map(|si| Op::DeleteOutOfBand { si }),
        2 => (0..SIS, 0..3u8, 1..60u8).prop_map(|(si, shnum, len)| Op::AddOutOfBand { si, shnum, len }),
        1 => Just(Op::CrashRestart),
    ]
}

fn si(n: u8) -> StorageIndex {
    let mut b = [n.wrapping_mul(61).wrapping_add(3); 16];
    b[15] = n;
    StorageIndex(b)
}

type Key = (StorageIndex, ShareNum);

#[derive(Debug, Default)]
struct Snap {
    backend: BTreeMap<Key, u64>,
    rows: BTreeMap<Key, ShareRecord>,
    /// Latest expiration time of each share's leases, and the accounts holding them.
    leases: BTreeMap<Key, (i64, BTreeSet<AccountId>)>,
}

struct World {
    _dir: tempfile::TempDir,
    storage: PathBuf,
    clock: Arc<TestClock>,
    server: Option<Arc<StorageServer>>,
    accounts: Vec<AccountId>,
    uploads: Vec<(StorageIndex, ShareNum, u8)>,
    crawler: Option<Crawler>,
}

fn opts() -> OpenOptions {
    OpenOptions {
        synchronous: Synchronous::Normal,
        ..OpenOptions::default()
    }
}

fn write_v1_share(shares: &Path, si: &StorageIndex, shnum: ShareNum, len: usize) {
    let name = si.to_base32();
    let dir = shares.join(&name[..2]).join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&(len as u32).to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend(std::iter::repeat_n(0xabu8, len));
    std::fs::write(dir.join(shnum.to_string()), bytes).unwrap();
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut w = Self {
            _dir: dir,
            storage,
            clock: Arc::new(TestClock(AtomicI64::new(T0))),
            server: None,
            accounts: vec![AccountId::ANONYMOUS],
            uploads: Vec::new(),
            crawler: None,
        };
        w.start().await;
        let s = w.s().clone();
        for name in ["alice", "bob"] {
            let id = s
                .leasedb()
                .create_account(Some(format!("pk-{name}")), name.into(), T0)
                .await
                .unwrap();
            w.accounts.push(id);
        }
        w
    }

    fn s(&self) -> &Arc<StorageServer> {
        self.server.as_ref().unwrap()
    }

    async fn start(&mut self) {
        let (db, _) = LeaseDbHandle::open_sqlite_or_rebuild(
            &self.storage.join("leasedb.sqlite"),
            self.clock.now(),
            opts(),
        )
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
        self.server = Some(s);
    }

    fn crawler(&mut self, expiry: bool) -> &mut Crawler {
        let s = self.s().clone();
        self.crawler.insert(Crawler::new(
            s,
            CrawlerConfig {
                list_batch: 2,
                expiry: expiry.then(|| ExpiryPolicy::all(ExpiryMode::ExpirationTime)),
                ..CrawlerConfig::default()
            },
        ))
    }

    async fn snap(&self) -> Snap {
        let s = self.s();
        let mut snap = Snap::default();
        for n in 0..SIS {
            let si = si(n);
            for sh in s.backend().list_shares(&si).await.unwrap() {
                snap.backend.insert((si, sh.shnum), sh.size);
            }
            for rec in s.leasedb().get_shares(si).await.unwrap() {
                let key = (si, rec.shnum);
                let leases = s.leasedb().get_leases(si, rec.shnum).await.unwrap();
                if !leases.is_empty() {
                    let latest = leases.iter().map(|l| l.expiration_time).max().unwrap();
                    let who = leases.iter().map(|l| l.account_id).collect();
                    snap.leases.insert(key, (latest, who));
                }
                snap.rows.insert(key, rec);
            }
        }
        snap
    }

    /// Usage from the database's aggregate queries equals a recount from rows and leases.
    async fn check_usage(&self, snap: &Snap) {
        let listed = self.s().leasedb().list_accounts().await.unwrap();
        for a in &listed {
            let mut used = 0;
            let mut leases = 0;
            for (key, (_, who)) in &snap.leases {
                if who.contains(&a.account.id) {
                    used += snap.rows[key].used_space;
                    leases += 1;
                }
            }
            assert_eq!(
                (a.usage.used_space, a.usage.leases),
                (used, leases),
                "usage of account {}",
                a.account.id
            );
            let single = self
                .s()
                .leasedb()
                .account_usage(a.account.id)
                .await
                .unwrap();
            assert_eq!(single, a.usage);
        }
    }

    /// After a full crawl: every backend share is a STABLE row of the same size and every
    /// STABLE row is in the backend; COMING rows are exactly the open uploads.
    fn check_agreement(&self, snap: &Snap) {
        let stable: BTreeMap<Key, u64> = snap
            .rows
            .iter()
            .filter(|(_, r)| r.state == ShareState::Stable)
            .map(|(k, r)| (*k, r.used_space))
            .collect();
        assert_eq!(
            stable, snap.backend,
            "database and backend after a full crawl"
        );
        let coming: BTreeSet<Key> = snap
            .rows
            .iter()
            .filter(|(_, r)| r.state == ShareState::Coming)
            .map(|(k, _)| *k)
            .collect();
        let open: BTreeSet<Key> = self.uploads.iter().map(|(s, n, _)| (*s, *n)).collect();
        assert_eq!(coming, open, "COMING rows are the open uploads");
    }
}

async fn run_ops(ops: Vec<Op>) {
    let mut w = World::new().await;
    // Shares collected by GC, which must not come back unless re-created.
    let mut collected: BTreeSet<Key> = BTreeSet::new();
    for (i, op) in ops.into_iter().enumerate() {
        let before = w.snap().await;
        let now = w.clock.now();
        // Shares the op may legitimately remove.
        let mut exempt: BTreeSet<Key> = BTreeSet::new();
        let mut recreated: BTreeSet<Key> = BTreeSet::new();
        let mut full_crawl = false;
        let mut expiry_at = None;
        match op.clone() {
            Op::Create {
                si: n,
                shnum,
                len,
                account,
            } => {
                let a = w.accounts[usize::from(account)];
                let shnums: BTreeSet<ShareNum> = [ShareNum::from(shnum)].into();
                let (_, alloc) = w
                    .s()
                    .allocate(a, &si(n), &shnums, u64::from(len), b"up")
                    .await
                    .unwrap();
                if !alloc.is_empty() {
                    w.uploads.push((si(n), ShareNum::from(shnum), len));
                    recreated.insert((si(n), ShareNum::from(shnum)));
                }
            }
            Op::Write { upload } => {
                if !w.uploads.is_empty() {
                    let k = usize::from(upload) % w.uploads.len();
                    let (s_i, shnum, len) = w.uploads.remove(k);
                    let data = Bytes::from(vec![len; usize::from(len)]);
                    let out = w.s().write(&s_i, shnum, b"up", 0, data).await.unwrap();
                    assert!(out.complete);
                    recreated.insert((s_i, shnum));
                }
            }
            Op::Abort { upload } => {
                if !w.uploads.is_empty() {
                    let k = usize::from(upload) % w.uploads.len();
                    let (s_i, shnum, _) = w.uploads.remove(k);
                    w.s().abort(&s_i, shnum, b"up").await.unwrap();
                    exempt.insert((s_i, shnum));
                }
            }
            Op::AddLease { si: n, account } => {
                let a = w.accounts[usize::from(account)];
                let _ = w.s().add_or_renew_lease(a, &si(n)).await;
            }
            Op::Mutable {
                shnum,
                len,
                account,
            } => {
                let a = w.accounts[usize::from(account)];
                let shnum = ShareNum::from(shnum);
                let tw: BTreeMap<ShareNum, TestWrite> = [(
                    shnum,
                    TestWrite {
                        writes: if len == 0 {
                            vec![]
                        } else {
                            vec![(0, Bytes::from(vec![len; usize::from(len)]).into())]
                        },
                        new_length: (len == 0).then_some(0),
                        ..TestWrite::default()
                    },
                )]
                .into();
                // A share added by hand may carry another write enabler: refused, fine.
                let _ = w.s().read_test_write(a, &si(2), &[5; 32], &tw, &[]).await;
                exempt.insert((si(2), shnum));
                recreated.insert((si(2), shnum));
            }
            Op::Advance { days } => {
                w.clock.0.fetch_add(i64::from(days) * DAY, Ordering::SeqCst);
            }
            Op::Expire => {
                expiry_at = Some(now);
                w.crawler(true).run_full_cycle().await.unwrap();
                full_crawl = true;
            }
            Op::Crawl => {
                w.crawler(false).run_full_cycle().await.unwrap();
                full_crawl = true;
            }
            Op::CrawlSteps { steps } => {
                let c = w.crawler(false);
                for _ in 0..steps {
                    c.step().await.unwrap();
                }
            }
            Op::DeleteOutOfBand { si: n } => {
                let name = si(n).to_base32();
                let dir = w.storage.join("shares").join(&name[..2]).join(&name);
                let _ = std::fs::remove_dir_all(dir);
                for sh in 0..3 {
                    exempt.insert((si(n), sh));
                }
            }
            Op::AddOutOfBand { si: n, shnum, len } => {
                let key = (si(n), ShareNum::from(shnum));
                // An operator restores a share that is neither present nor being written.
                if !before.backend.contains_key(&key) && !before.rows.contains_key(&key) {
                    let shares = w.storage.join("shares");
                    write_v1_share(&shares, &si(n), key.1, usize::from(len));
                    recreated.insert(key);
                }
            }
            Op::CrashRestart => {
                let s = w.server.take().unwrap();
                w.crawler = None;
                let db = s.leasedb().clone();
                drop(s);
                db.close().await.unwrap();
                for (s_i, shnum, _) in w.uploads.drain(..) {
                    exempt.insert((s_i, shnum));
                }
                w.start().await;
            }
        }
        let after = w.snap().await;
        let ctx = format!("step {i}: {op:?}");
        // Nothing is left GOING.
        for (k, r) in &after.rows {
            assert_ne!(r.state, ShareState::Going, "{ctx}: {k:?} left GOING");
        }
        // Leased or COMING shares are never deleted.
        for (k, r) in &before.rows {
            if exempt.contains(k) {
                continue;
            }
            match r.state {
                ShareState::Coming => assert!(
                    after.rows.contains_key(k),
                    "{ctx}: COMING share {k:?} was removed"
                ),
                ShareState::Stable => {
                    let protected = match (before.leases.get(k), expiry_at) {
                        (None, _) => false,
                        (Some(_), None) => true,
                        (Some((latest, _)), Some(t)) => *latest >= t,
                    };
                    if protected && before.backend.contains_key(k) {
                        assert!(
                            after.backend.contains_key(k),
                            "{ctx}: leased share {k:?} was deleted"
                        );
                    }
                }
                ShareState::Going => unreachable!(),
            }
        }
        // Collected shares stay gone unless re-created.
        for k in before.backend.keys() {
            if !after.backend.contains_key(k) && expiry_at.is_some() {
                collected.insert(*k);
            }
        }
        for k in &recreated {
            collected.remove(k);
        }
        for k in &collected {
            assert!(
                !after.backend.contains_key(k) && !after.rows.contains_key(k),
                "{ctx}: collected share {k:?} came back"
            );
        }
        w.check_usage(&after).await;
        if full_crawl {
            w.check_agreement(&after);
        }
    }
    let s = w.server.take().unwrap();
    let db = s.leasedb().clone();
    drop(w.crawler.take());
    drop(s);
    db.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn crawler_and_gc_keep_every_invariant(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_ops(ops));
    }
}

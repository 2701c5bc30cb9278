//! The share state machine of the storage server, against real SQLite and both the memory and
//! the disk backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use lafs_storage::backend::Backend;
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::backend::memory::MemoryBackend;
use lafs_storage::leasedb::{AccountId, LeaseDbHandle, OpenOptions, ShareState};
use lafs_storage::server::{ServerConfig, ServerError, StorageServer, SystemClock, TestWrite};
use lafs_storage::types::{ShareKind, StorageIndex};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

struct Env {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    backend: Arc<dyn Backend>,
}

impl Env {
    fn new(disk: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let backend: Arc<dyn Backend> = if disk {
            Arc::new(DiskBackend::open(path.join("storage")).unwrap())
        } else {
            Arc::new(MemoryBackend::new())
        };
        Self {
            _dir: dir,
            path,
            backend,
        }
    }

    async fn server(&self, cfg: ServerConfig) -> StorageServer {
        let opts = OpenOptions {
            synchronous: lafs_storage::leasedb::Synchronous::Normal,
            ..OpenOptions::default()
        };
        let db = LeaseDbHandle::open_sqlite(&self.path.join("leasedb.sqlite"), 1_700_000_000, opts)
            .await
            .unwrap();
        let s = StorageServer::new(self.backend.clone(), db, cfg, Arc::new(SystemClock));
        s.startup().await.unwrap();
        s
    }
}

fn si(n: u8) -> StorageIndex {
    StorageIndex([n; 16])
}

fn set(v: &[u16]) -> BTreeSet<u16> {
    v.iter().copied().collect()
}

async fn state(s: &StorageServer, si: StorageIndex, shnum: u16) -> Option<ShareState> {
    s.leasedb()
        .get_share(si, shnum)
        .await
        .unwrap()
        .map(|r| r.state)
}

async fn both(f: impl AsyncFn(bool)) {
    f(false).await;
    f(true).await;
}

#[tokio::test]
async fn upload_lifecycle() {
    both(async |disk| {
        let env = Env::new(disk);
        let s = env.server(ServerConfig::default()).await;
        let a = AccountId::ANONYMOUS;
        let (have, alloc) = s
            .allocate(a, &si(1), &set(&[0, 1]), 10, b"up")
            .await
            .unwrap();
        assert!(have.is_empty());
        assert_eq!(alloc, set(&[0, 1]));
        assert_eq!(state(&s, si(1), 0).await, Some(ShareState::Coming));
        // COMING shares are leased and not listed.
        assert_eq!(s.leasedb().get_leases(si(1), 0).await.unwrap().len(), 1);
        assert!(
            s.list_shares(&si(1), ShareKind::Immutable)
                .await
                .unwrap()
                .is_empty()
        );
        // A second allocation of an in-progress share allocates nothing.
        let (_, again) = s.allocate(a, &si(1), &set(&[0]), 10, b"up2").await.unwrap();
        assert!(again.is_empty());

        let out = s
            .write(&si(1), 0, b"up", 0, Bytes::from_static(b"01234"))
            .await
            .unwrap();
        assert!(!out.complete);
        assert_eq!(out.required, vec![(5, 10)]);
        // Wrong secret, conflict, out of range: refused, nothing changes.
        assert!(matches!(
            s.write(&si(1), 0, b"xx", 5, Bytes::from_static(b"56789"))
                .await,
            Err(ServerError::WrongUploadSecret)
        ));
        assert!(matches!(
            s.write(&si(1), 0, b"up", 3, Bytes::from_static(b"XX"))
                .await,
            Err(ServerError::Conflict)
        ));
        assert!(matches!(
            s.write(&si(1), 0, b"up", 8, Bytes::from_static(b"abc"))
                .await,
            Err(ServerError::OutOfRange)
        ));
        // Identical overlap is fine; the last byte completes the share.
        let out = s
            .write(&si(1), 0, b"up", 3, Bytes::from_static(b"3456789"))
            .await
            .unwrap();
        assert!(out.complete);
        assert_eq!(state(&s, si(1), 0).await, Some(ShareState::Stable));
        assert_eq!(
            s.list_shares(&si(1), ShareKind::Immutable).await.unwrap(),
            set(&[0])
        );
        assert_eq!(
            s.read(ShareKind::Immutable, &si(1), 0, 2, 100)
                .await
                .unwrap(),
            Bytes::from_static(b"23456789")
        );
        assert!(matches!(
            s.abort(&si(1), 0, b"up").await,
            Err(ServerError::AlreadyComplete)
        ));
        // Abort the other one: NONE again, and it can be allocated afresh.
        s.abort(&si(1), 1, b"up").await.unwrap();
        assert_eq!(state(&s, si(1), 1).await, None);
        let other = s
            .leasedb()
            .create_account(Some("key-7".into()), "seven".into(), 1)
            .await
            .unwrap();
        let (have, alloc) = s
            .allocate(other, &si(1), &set(&[0, 1]), 10, b"u3")
            .await
            .unwrap();
        assert_eq!(have, set(&[0]));
        assert_eq!(alloc, set(&[1]));
        // The second account now holds a lease on the complete share too.
        let leases = s.leasedb().get_leases(si(1), 0).await.unwrap();
        assert!(leases.iter().any(|l| l.account_id == other), "{leases:?}");
    })
    .await;
}

#[tokio::test]
async fn crash_recovery_forgets_incomplete_uploads() {
    both(async |disk| {
        let env = Env::new(disk);
        {
            let s = env.server(ServerConfig::default()).await;
            s.allocate(AccountId::ANONYMOUS, &si(2), &set(&[0, 1]), 4, b"u")
                .await
                .unwrap();
            s.write(&si(2), 0, b"u", 0, Bytes::from_static(b"ab"))
                .await
                .unwrap();
            s.write(&si(2), 1, b"u", 0, Bytes::from_static(b"abcd"))
                .await
                .unwrap();
            // "Crash": the server is dropped with share 0 incomplete.
        }
        let s = env.server(ServerConfig::default()).await;
        assert_eq!(state(&s, si(2), 0).await, None);
        assert_eq!(state(&s, si(2), 1).await, Some(ShareState::Stable));
        assert_eq!(
            s.list_shares(&si(2), ShareKind::Immutable).await.unwrap(),
            set(&[1])
        );
        let (_, alloc) = s
            .allocate(AccountId::ANONYMOUS, &si(2), &set(&[0]), 4, b"v")
            .await
            .unwrap();
        assert_eq!(alloc, set(&[0]));
    })
    .await;
}

#[tokio::test]
async fn shares_unknown_to_the_leasedb_are_adopted() {
    both(async |disk| {
        let env = Env::new(disk);
        // A share put straight into the backend (as if copied in by hand).
        let mut up = env.backend.start_immutable(&si(3), 5, 3).await.unwrap();
        up.write(0, Bytes::from_static(b"xyz")).await.unwrap();
        up.commit().await.unwrap();
        let s = env.server(ServerConfig::default()).await;
        assert_eq!(state(&s, si(3), 5).await, None);
        assert_eq!(
            s.list_shares(&si(3), ShareKind::Immutable).await.unwrap(),
            set(&[5])
        );
        assert_eq!(state(&s, si(3), 5).await, Some(ShareState::Stable));
        let leases = s.leasedb().get_leases(si(3), 5).await.unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].account_id, AccountId::STARTER);
    })
    .await;
}

#[tokio::test]
async fn going_shares_are_not_recreated_or_served() {
    let env = Env::new(false);
    let s = env.server(ServerConfig::default()).await;
    s.allocate(AccountId::ANONYMOUS, &si(4), &set(&[0]), 2, b"u")
        .await
        .unwrap();
    s.write(&si(4), 0, b"u", 0, Bytes::from_static(b"ok"))
        .await
        .unwrap();
    s.leasedb().mark_share_going(si(4), 0).await.unwrap();
    assert!(matches!(
        s.read(ShareKind::Immutable, &si(4), 0, 0, 2).await,
        Err(ServerError::NotFound)
    ));
    let (have, alloc) = s
        .allocate(AccountId::ANONYMOUS, &si(4), &set(&[0]), 2, b"u")
        .await
        .unwrap();
    assert!(have.is_empty() && alloc.is_empty());
}

#[tokio::test]
async fn readonly_and_size_limits_refuse_allocations() {
    let env = Env::new(false);
    let s = env
        .server(ServerConfig {
            readonly: true,
            ..ServerConfig::default()
        })
        .await;
    let (_, alloc) = s
        .allocate(AccountId::ANONYMOUS, &si(5), &set(&[0]), 2, b"u")
        .await
        .unwrap();
    assert!(alloc.is_empty());
    assert_eq!(s.space().await.unwrap().max_immutable, 0);
    drop(s);
    let env = Env::new(false);
    let s = env
        .server(ServerConfig {
            reserved_space: u64::MAX - 10,
            ..ServerConfig::default()
        })
        .await;
    let (_, alloc) = s
        .allocate(AccountId::ANONYMOUS, &si(5), &set(&[0]), 100, b"u")
        .await
        .unwrap();
    assert!(
        alloc.is_empty(),
        "allocation beyond free space minus reserved space"
    );
    let env = Env::new(false);
    let s = env
        .server(ServerConfig {
            max_immutable_share_size: 50,
            ..ServerConfig::default()
        })
        .await;
    let (_, alloc) = s
        .allocate(AccountId::ANONYMOUS, &si(5), &set(&[0]), 51, b"u")
        .await
        .unwrap();
    assert!(alloc.is_empty());
}

fn tw(tests: &[(u64, &[u8])], writes: &[(u64, &[u8])], new_length: Option<u64>) -> TestWrite {
    TestWrite {
        tests: tests
            .iter()
            .map(|(o, s)| (*o, s.len() as u64, Bytes::copy_from_slice(s)))
            .collect(),
        writes: writes
            .iter()
            .map(|(o, d)| (*o, Bytes::copy_from_slice(d).into()))
            .collect(),
        new_length,
    }
}

#[tokio::test]
async fn mutable_read_test_write() {
    both(async |disk| {
        let env = Env::new(disk);
        let s = env.server(ServerConfig::default()).await;
        let a = AccountId::ANONYMOUS;
        let we = [9u8; 32];
        // Create (first publish tests that the share is empty).
        let mut v = BTreeMap::new();
        v.insert(0u16, tw(&[(0, b"")], &[(0, b"hello"), (8, b"!")], None));
        let out = s
            .read_test_write(a, &si(6), &we, &v, &[(0, 5)])
            .await
            .unwrap();
        assert!(out.success);
        assert!(out.data.is_empty());
        assert_eq!(state(&s, si(6), 0).await, Some(ShareState::Stable));
        assert_eq!(
            s.list_shares(&si(6), ShareKind::Mutable).await.unwrap(),
            set(&[0])
        );
        assert_eq!(
            s.read(ShareKind::Mutable, &si(6), 0, 0, 100).await.unwrap(),
            Bytes::from_static(b"hello\0\0\0!")
        );
        // A failing test changes nothing and reports the reads.
        let mut v = BTreeMap::new();
        v.insert(0u16, tw(&[(0, b"HELLO")], &[(0, b"bye")], None));
        let out = s
            .read_test_write(a, &si(6), &we, &v, &[(0, 5)])
            .await
            .unwrap();
        assert!(!out.success);
        assert_eq!(out.data[&0], vec![Bytes::from_static(b"hello")]);
        assert_eq!(
            s.read(ShareKind::Mutable, &si(6), 0, 0, 5).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        // Wrong write enabler: refused.
        assert!(matches!(
            s.read_test_write(a, &si(6), &[1u8; 32], &v, &[]).await,
            Err(ServerError::WrongWriteEnabler)
        ));
        // Used space follows the writes; length 0 deletes.
        let mut v = BTreeMap::new();
        v.insert(0u16, tw(&[(0, b"hello")], &[(0, b"HELLO")], Some(5)));
        assert!(
            s.read_test_write(a, &si(6), &we, &v, &[])
                .await
                .unwrap()
                .success
        );
        assert_eq!(
            s.leasedb()
                .get_share(si(6), 0)
                .await
                .unwrap()
                .unwrap()
                .used_space,
            5
        );
        let mut v = BTreeMap::new();
        v.insert(0u16, tw(&[], &[], Some(0)));
        assert!(
            s.read_test_write(a, &si(6), &we, &v, &[])
                .await
                .unwrap()
                .success
        );
        assert_eq!(state(&s, si(6), 0).await, None);
        assert!(
            s.list_shares(&si(6), ShareKind::Mutable)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn leases_renew_per_account() {
    let env = Env::new(false);
    let s = env.server(ServerConfig::default()).await;
    assert!(matches!(
        s.add_or_renew_lease(AccountId::ANONYMOUS, &si(8)).await,
        Err(ServerError::NotFound)
    ));
    s.allocate(AccountId::ANONYMOUS, &si(8), &set(&[0]), 1, b"u")
        .await
        .unwrap();
    s.write(&si(8), 0, b"u", 0, Bytes::from_static(b"z"))
        .await
        .unwrap();
    let five = s
        .leasedb()
        .create_account(Some("key-5".into()), "five".into(), 1)
        .await
        .unwrap();
    s.add_or_renew_lease(five, &si(8)).await.unwrap();
    let accounts: BTreeSet<AccountId> = s
        .leasedb()
        .get_leases(si(8), 0)
        .await
        .unwrap()
        .iter()
        .map(|l| l.account_id)
        .collect();
    assert_eq!(accounts, [AccountId::ANONYMOUS, five].into_iter().collect());
}

/// Reads of a share the lease database knows as STABLE go straight to the backend: they must
/// still answer exactly as a listing would: wrong kind and vanished shares are NotFound (not
/// a server error), a client's corruption report does not make the share unreadable, and a
/// container corrupted on disk is refused and recorded.
#[tokio::test]
async fn reads_of_known_shares() {
    both(async |disk| {
        let env = Env::new(disk);
        let s = env.server(ServerConfig::default()).await;
        let a = AccountId::ANONYMOUS;
        s.allocate(a, &si(7), &set(&[0, 1]), 6, b"up")
            .await
            .unwrap();
        for n in [0, 1] {
            let out = s
                .write(&si(7), n, b"up", 0, Bytes::from_static(b"abcdef"))
                .await
                .unwrap();
            assert!(out.complete);
            assert_eq!(state(&s, si(7), n).await, Some(ShareState::Stable));
        }
        let seven = si(7);
        let read = |n: u16| s.read(ShareKind::Immutable, &seven, n, 1, 3);
        assert_eq!(read(0).await.unwrap(), Bytes::from_static(b"bcd"));
        assert_eq!(
            s.share_size(ShareKind::Immutable, &seven, 0).await.unwrap(),
            6
        );
        assert!(matches!(
            s.share_size(ShareKind::Mutable, &seven, 0).await,
            Err(ServerError::NotFound)
        ));
        // A mutable share's size follows its writes (at its own storage index: one index
        // holds one kind of share).
        let we = [3u8; 32];
        let eight = si(8);
        for (writes, length, want) in [
            (&[(0u64, &b"hello"[..]), (8, b"!")][..], None, 9),
            (&[(20, &b"x"[..])][..], None, 21),
            (&[][..], Some(4), 4),
        ] {
            let mut v = BTreeMap::new();
            v.insert(2u16, tw(&[], writes, length));
            let out = s.read_test_write(a, &eight, &we, &v, &[]).await.unwrap();
            assert!(out.success);
            assert_eq!(
                s.share_size(ShareKind::Mutable, &eight, 2).await.unwrap(),
                want
            );
            let whole = s.read(ShareKind::Mutable, &eight, 2, 0, 100).await.unwrap();
            assert_eq!(whole.len() as u64, want);
        }
        assert!(matches!(
            s.read(ShareKind::Mutable, &si(7), 0, 0, 3).await,
            Err(ServerError::NotFound)
        ));
        // A client's report alone leaves the share readable.
        s.advise_corrupt(ShareKind::Immutable, &si(7), 0, "it looked wrong to me")
            .await
            .unwrap();
        assert_eq!(read(0).await.unwrap(), Bytes::from_static(b"bcd"));
        // Deleted behind the server's back: NotFound, as before the database knew of it.
        env.backend.delete(&si(7), 1).await.unwrap();
        assert!(matches!(read(1).await, Err(ServerError::NotFound)));
        if disk {
            // A container header overwritten with garbage: refused and recorded as corrupt.
            let path = env
                .path
                .join("storage/shares")
                .join(&si(7).to_string()[..2])
                .join(si(7).to_string())
                .join("0");
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[..4].copy_from_slice(&[0xff; 4]);
            std::fs::write(&path, bytes).unwrap();
            assert!(matches!(read(0).await, Err(ServerError::Corrupt(_))));
            let rec = s.leasedb().get_share(si(7), 0).await.unwrap().unwrap();
            assert!(rec.corrupt_reason.is_some(), "{rec:?}");
        }
    })
    .await;
}

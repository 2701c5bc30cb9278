//! Account control in the server, against real SQLite and the disk backend: a disabled
//! account cannot allocate, write or add leases but can read; a quota refuses the allocation
//! or mutable growth that would cross it, leaving nothing half-stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::leasedb::{AccountId, LeaseDbHandle, OpenOptions, Synchronous};
use lafs_storage::server::{ServerConfig, ServerError, StorageServer, SystemClock, TestWrite};
use lafs_storage::types::{ShareKind, ShareNum, StorageIndex};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

async fn server(dir: &std::path::Path) -> StorageServer {
    let opts = OpenOptions {
        synchronous: Synchronous::Normal,
        ..OpenOptions::default()
    };
    let db = LeaseDbHandle::open_sqlite(&dir.join("leasedb.sqlite"), 1_700_000_000, opts)
        .await
        .unwrap();
    // Named staging, so that uploads in progress are files a test can count.
    let backend = Arc::new(
        DiskBackend::open(dir.join("storage"))
            .unwrap()
            .with_named_staging(),
    );
    let s = StorageServer::new(backend, db, ServerConfig::default(), Arc::new(SystemClock));
    s.startup().await.unwrap();
    s
}

fn si(n: u8) -> StorageIndex {
    StorageIndex([n; 16])
}

fn set(v: &[ShareNum]) -> BTreeSet<ShareNum> {
    v.iter().copied().collect()
}

fn mutable(len: usize) -> BTreeMap<ShareNum, TestWrite> {
    [(
        0,
        TestWrite {
            writes: vec![(0, Bytes::from(vec![3u8; len]).into())],
            ..TestWrite::default()
        },
    )]
    .into()
}

fn refused(r: Result<impl std::fmt::Debug, ServerError>, what: &str) -> String {
    match r {
        Err(ServerError::Refused(m)) => m,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn disabled_account_cannot_write_but_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let db = s.leasedb().clone();
    let alice = db
        .create_account(Some("pk-a".into()), "alice".into(), 1)
        .await
        .unwrap();
    s.allocate(alice, &si(1), &set(&[0]), 5, b"u")
        .await
        .unwrap();
    s.write(&si(1), 0, b"u", 0, Bytes::from_static(b"hello"))
        .await
        .unwrap();
    db.set_account_enabled(alice, false).await.unwrap();
    let m = refused(
        s.allocate(alice, &si(2), &set(&[0]), 5, b"u").await,
        "allocate",
    );
    assert!(m.contains("disabled"), "{m}");
    refused(s.add_or_renew_lease(alice, &si(1)).await, "add lease");
    refused(
        s.read_test_write(alice, &si(3), &[1; 32], &mutable(10), &[])
            .await,
        "mutable write",
    );
    assert!(db.get_shares(si(2)).await.unwrap().is_empty());
    assert!(db.get_shares(si(3)).await.unwrap().is_empty());
    // Reads stay allowed.
    let b = s
        .read(ShareKind::Immutable, &si(1), 0, 0, 10)
        .await
        .unwrap();
    assert_eq!(b, Bytes::from_static(b"hello"));
    // Other accounts are unaffected; re-enabled, alice works again.
    s.allocate(AccountId::ANONYMOUS, &si(2), &set(&[0]), 5, b"u")
        .await
        .unwrap();
    db.set_account_enabled(alice, true).await.unwrap();
    s.add_or_renew_lease(alice, &si(1)).await.unwrap();
    // The anonymous account (stock clients) can be disabled too.
    db.set_account_enabled(AccountId::ANONYMOUS, false)
        .await
        .unwrap();
    refused(
        s.allocate(AccountId::ANONYMOUS, &si(4), &set(&[0]), 5, b"u")
            .await,
        "anonymous allocate",
    );
}

#[tokio::test]
async fn quota_refuses_the_allocation_or_growth_that_would_cross_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let db = s.leasedb().clone();
    let bob = db
        .create_account(Some("pk-b".into()), "bob".into(), 1)
        .await
        .unwrap();
    db.set_account_quota(bob, Some(1000)).await.unwrap();
    // 3 x 300 fits.
    let (_, got) = s
        .allocate(bob, &si(1), &set(&[0, 1, 2]), 300, b"u")
        .await
        .unwrap();
    assert_eq!(got, set(&[0, 1, 2]));
    assert_eq!(db.account_usage(bob).await.unwrap().used_space, 900);
    // 2 x 300 more does not: refused whole, nothing allocated or staged.
    let m = refused(
        s.allocate(bob, &si(2), &set(&[0, 1]), 300, b"u").await,
        "allocate over quota",
    );
    assert!(m.contains("quota"), "{m}");
    assert!(db.get_shares(si(2)).await.unwrap().is_empty());
    assert_eq!(db.account_usage(bob).await.unwrap().used_space, 900);
    let incoming = dir.path().join("storage/shares/incoming");
    let staged = std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        staged, 1,
        "only the first allocation's prefix dir is staged"
    );
    // Completing the first upload keeps usage (sizes as written).
    for shnum in 0..3 {
        s.write(&si(1), shnum, b"u", 0, Bytes::from(vec![1u8; 300]))
            .await
            .unwrap();
    }
    // Mutable growth: 90 bytes fit, then growing to 200 does not.
    let anon_we = [7u8; 32];
    let out = s
        .read_test_write(bob, &si(9), &anon_we, &mutable(90), &[])
        .await
        .unwrap();
    assert!(out.success);
    assert_eq!(db.account_usage(bob).await.unwrap().used_space, 990);
    refused(
        s.read_test_write(bob, &si(9), &anon_we, &mutable(200), &[])
            .await,
        "mutable growth over quota",
    );
    let b = s
        .read(ShareKind::Mutable, &si(9), 0, 0, 1000)
        .await
        .unwrap();
    assert_eq!(b.len(), 90, "the refused write changed nothing");
    // Raising the quota lets it through.
    db.set_account_quota(bob, None).await.unwrap();
    s.read_test_write(bob, &si(9), &anon_we, &mutable(200), &[])
        .await
        .unwrap();
}

//! Lease database operations: the share state machine, leases, accounts and usage, adoption,
//! expiry, crawler state and history, totals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_storage::leasedb::{
    AccountId, AccountUsage, AdoptOutcome, CrawlerCounters, CrawlerState, ExpiryMode, ExpiryPolicy,
    Lease, LeaseDb, LeaseDbError, MAX_CORRUPT_REASON_LEN, OpenOptions, STARTER_LEASE_DURATION,
    ShareState, SqliteLeaseDb, Synchronous,
};
use lafs_storage::types::{ShareKind, StorageIndex};

const T0: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

fn si(n: u8) -> StorageIndex {
    StorageIndex([n; 16])
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    db: SqliteLeaseDb,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    let opts = OpenOptions {
        synchronous: Synchronous::Normal,
        ..OpenOptions::default()
    };
    let mut db = SqliteLeaseDb::open_with(&path, T0, &opts).unwrap();
    db.clear_gc_block().unwrap();
    Fixture {
        _dir: dir,
        path,
        db,
    }
}

fn state(db: &mut SqliteLeaseDb, s: &StorageIndex, shnum: u16) -> Option<ShareState> {
    db.get_share(s, shnum).unwrap().map(|r| r.state)
}

fn stable_share(db: &mut SqliteLeaseDb, s: &StorageIndex, shnum: u16, kind: ShareKind, size: u64) {
    db.add_new_share(s, shnum, kind, size).unwrap();
    db.mark_share_stable(s, shnum, size).unwrap();
}

#[test]
fn immutable_lifecycle_none_coming_stable_going_none() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(1);
    assert_eq!(state(&mut db, &s, 0), None);
    db.add_new_share(&s, 0, ShareKind::Immutable, 100).unwrap();
    assert_eq!(state(&mut db, &s, 0), Some(ShareState::Coming));
    db.mark_share_stable(&s, 0, 1234).unwrap();
    let rec = db.get_share(&s, 0).unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.used_space, rec.kind),
        (ShareState::Stable, 1234, ShareKind::Immutable)
    );
    db.mark_share_going(&s, 0).unwrap();
    assert_eq!(state(&mut db, &s, 0), Some(ShareState::Going));
    db.remove_share(&s, 0).unwrap();
    assert_eq!(state(&mut db, &s, 0), None);
    // NONE again: the share may be created anew.
    db.add_new_share(&s, 0, ShareKind::Immutable, 100).unwrap();
}

#[test]
fn no_recreation_while_going_and_no_duplicates() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(2);
    stable_share(&mut db, &s, 0, ShareKind::Immutable, 10);
    assert!(matches!(
        db.add_new_share(&s, 0, ShareKind::Immutable, 10),
        Err(LeaseDbError::ShareExists {
            state: ShareState::Stable,
            ..
        })
    ));
    db.add_new_share(&s, 1, ShareKind::Immutable, 10).unwrap();
    assert!(matches!(
        db.add_new_share(&s, 1, ShareKind::Immutable, 10),
        Err(LeaseDbError::ShareExists {
            state: ShareState::Coming,
            ..
        })
    ));
    db.mark_share_going(&s, 0).unwrap();
    let e = db
        .add_new_share(&s, 0, ShareKind::Immutable, 10)
        .unwrap_err();
    assert!(matches!(e, LeaseDbError::ShareGoing { .. }), "{e:?}");
    assert!(e.to_string().contains("GOING"), "{e}");
    // GOING shares take no leases, no resizing, no adoption changes.
    assert!(matches!(
        db.add_or_renew_lease(&s, 0, AccountId::ANONYMOUS, T0, T0 + DAY),
        Err(LeaseDbError::ShareGoing { .. })
    ));
    assert!(matches!(
        db.change_share_space(&s, 0, 5),
        Err(LeaseDbError::ShareGoing { .. })
    ));
    assert_eq!(
        db.adopt_share(&s, 0, ShareKind::Immutable, 10, true, T0)
            .unwrap(),
        AdoptOutcome::AlreadyKnown(ShareState::Going)
    );
    assert_eq!(state(&mut db, &s, 0), Some(ShareState::Going));
}

#[test]
fn invalid_transitions_are_refused_and_change_nothing() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(3);
    let missing = si(4);
    for r in [
        db.mark_share_stable(&missing, 0, 1),
        db.mark_share_going(&missing, 0),
        db.mark_share_coming(&missing, 0),
        db.abandon_share(&missing, 0),
        db.remove_share(&missing, 0),
        db.change_share_space(&missing, 0, 1),
        db.mark_share_corrupt(&missing, 0, "x"),
    ] {
        assert!(matches!(r, Err(LeaseDbError::NoSuchShare { .. })), "{r:?}");
    }

    db.add_new_share(&s, 0, ShareKind::Immutable, 1).unwrap();
    // COMING is never deleted or collected directly (Tahoe #1921).
    assert!(matches!(
        db.remove_share(&s, 0),
        Err(LeaseDbError::InvalidTransition {
            from: ShareState::Coming,
            to: "NONE",
            ..
        })
    ));
    assert!(matches!(
        db.mark_share_going(&s, 0),
        Err(LeaseDbError::InvalidTransition {
            from: ShareState::Coming,
            to: "GOING",
            ..
        })
    ));
    assert_eq!(state(&mut db, &s, 0), Some(ShareState::Coming));
    db.mark_share_stable(&s, 0, 1).unwrap();
    assert!(matches!(
        db.mark_share_stable(&s, 0, 1),
        Err(LeaseDbError::InvalidTransition { .. })
    ));
    assert!(matches!(
        db.abandon_share(&s, 0),
        Err(LeaseDbError::InvalidTransition { .. })
    ));
    // Immutable shares are never modified.
    assert!(matches!(
        db.mark_share_coming(&s, 0),
        Err(LeaseDbError::InvalidTransition { .. })
    ));
    db.mark_share_going(&s, 0).unwrap();
    assert!(matches!(
        db.mark_share_stable(&s, 0, 1),
        Err(LeaseDbError::InvalidTransition { .. })
    ));
    assert!(matches!(
        db.mark_share_going(&s, 0),
        Err(LeaseDbError::InvalidTransition { .. })
    ));
    assert_eq!(state(&mut db, &s, 0), Some(ShareState::Going));
}

#[test]
fn mutable_modification_and_abandon() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(5);
    stable_share(&mut db, &s, 2, ShareKind::Mutable, 1000);
    db.mark_share_coming(&s, 2).unwrap();
    assert_eq!(state(&mut db, &s, 2), Some(ShareState::Coming));
    db.change_share_space(&s, 2, 3000).unwrap();
    db.mark_share_stable(&s, 2, 2500).unwrap();
    assert_eq!(db.get_share(&s, 2).unwrap().unwrap().used_space, 2500);
    // A failed write: COMING -> GOING -> NONE.
    db.add_new_share(&s, 3, ShareKind::Mutable, 10).unwrap();
    db.abandon_share(&s, 3).unwrap();
    assert_eq!(state(&mut db, &s, 3), Some(ShareState::Going));
    db.remove_share(&s, 3).unwrap();
    assert_eq!(
        db.get_shares(&s)
            .unwrap()
            .iter()
            .map(|r| r.shnum)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn vanished_stable_share_is_removed_with_its_leases() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(6);
    stable_share(&mut db, &s, 0, ShareKind::Immutable, 50);
    db.add_or_renew_lease(&s, 0, AccountId::ANONYMOUS, T0, T0 + DAY)
        .unwrap();
    db.add_starter_lease(&s, 0, T0).unwrap();
    assert_eq!(db.get_leases(&s, 0).unwrap().len(), 2);
    db.remove_share(&s, 0).unwrap();
    assert!(db.get_leases(&s, 0).unwrap().is_empty());
    assert_eq!(
        db.totals().unwrap().leases,
        0,
        "cascade removed every lease"
    );
    // Re-adding the share does not resurrect old leases.
    db.add_new_share(&s, 0, ShareKind::Immutable, 50).unwrap();
    assert!(db.get_leases(&s, 0).unwrap().is_empty());
}

#[test]
fn cascade_is_enforced_by_the_schema_itself() {
    let Fixture { mut db, path, _dir } = fixture();
    let s = si(7);
    stable_share(&mut db, &s, 0, ShareKind::Immutable, 50);
    db.add_or_renew_lease(&s, 0, AccountId::ANONYMOUS, T0, T0 + DAY)
        .unwrap();
    drop(db);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    conn.execute("DELETE FROM shares", []).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM leases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn lease_upsert_renews_and_never_goes_backwards() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(8);
    stable_share(&mut db, &s, 0, ShareKind::Immutable, 10);
    db.add_or_renew_lease(&s, 0, AccountId::ANONYMOUS, T0, T0 + 31 * DAY)
        .unwrap();
    db.add_or_renew_lease(&s, 0, AccountId::ANONYMOUS, T0 + DAY, T0 + 32 * DAY)
        .unwrap();
    assert_eq!(
        db.get_leases(&s, 0).unwrap(),
        vec![Lease {
            account_id: AccountId::ANONYMOUS,
            renewal_time: T0 + DAY,
            expiration_time: T0 + 32 * DAY
        }]
    );
    // The clock jumped back: nothing moves backwards.
    db.add_or_renew_lease(&s, 0, AccountId::ANONYMOUS, T0 - 10 * DAY, T0 + 5 * DAY)
        .unwrap();
    assert_eq!(
        db.get_leases(&s, 0).unwrap(),
        vec![Lease {
            account_id: AccountId::ANONYMOUS,
            renewal_time: T0 + DAY,
            expiration_time: T0 + 32 * DAY
        }]
    );
    // One lease per account per share.
    db.add_starter_lease(&s, 0, T0).unwrap();
    let leases = db.get_leases(&s, 0).unwrap();
    assert_eq!(leases.len(), 2);
    assert_eq!(
        leases[1],
        Lease {
            account_id: AccountId::STARTER,
            renewal_time: T0,
            expiration_time: T0 + STARTER_LEASE_DURATION
        }
    );
    // A COMING share can be leased too.
    db.add_new_share(&s, 1, ShareKind::Immutable, 10).unwrap();
    db.add_or_renew_lease(&s, 1, AccountId::ANONYMOUS, T0, T0 + DAY)
        .unwrap();
}

#[test]
fn leases_for_a_whole_storage_index() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(9);
    stable_share(&mut db, &s, 0, ShareKind::Immutable, 10);
    stable_share(&mut db, &s, 1, ShareKind::Immutable, 10);
    stable_share(&mut db, &s, 2, ShareKind::Immutable, 10);
    db.add_new_share(&s, 3, ShareKind::Immutable, 10).unwrap();
    db.mark_share_going(&s, 2).unwrap();
    assert_eq!(
        db.add_or_renew_leases_for_si(&s, AccountId::ANONYMOUS, T0, T0 + DAY)
            .unwrap(),
        3
    );
    assert_eq!(
        db.get_leases(&s, 2).unwrap().len(),
        0,
        "GOING share not leased"
    );
    assert_eq!(db.get_leases(&s, 3).unwrap().len(), 1);
    assert_eq!(
        db.add_or_renew_leases_for_si(&si(10), AccountId::ANONYMOUS, T0, T0 + DAY)
            .unwrap(),
        0
    );
    assert!(matches!(
        db.add_or_renew_leases_for_si(&s, AccountId(99), T0, T0 + DAY),
        Err(LeaseDbError::NoSuchAccount(_))
    ));
}

#[test]
fn usage_counts_every_leased_share_in_full() {
    let Fixture { mut db, _dir, .. } = fixture();
    let alice = db.create_account(Some("pk-alice"), "alice", T0).unwrap();
    let bob = db.create_account(Some("pk-bob"), "bob", T0).unwrap();
    assert_eq!((alice, bob), (AccountId(2), AccountId(3)));
    let (a, b, c) = (si(20), si(21), si(22));
    stable_share(&mut db, &a, 0, ShareKind::Immutable, 1000);
    stable_share(&mut db, &a, 1, ShareKind::Immutable, 1000);
    stable_share(&mut db, &b, 0, ShareKind::Mutable, 300);
    db.add_new_share(&c, 0, ShareKind::Immutable, 7).unwrap();
    for (acct, s, n) in [
        (alice, a, 0),
        (alice, a, 1),
        (alice, b, 0),
        (bob, a, 1),
        (bob, b, 0),
        (bob, c, 0),
    ] {
        db.add_or_renew_lease(&s, n, acct, T0, T0 + DAY).unwrap();
    }
    assert_eq!(
        db.account_usage(alice).unwrap(),
        AccountUsage {
            used_space: 2300,
            leases: 3,
            storage_indexes: 2
        }
    );
    assert_eq!(
        db.account_usage(bob).unwrap(),
        AccountUsage {
            used_space: 1307,
            leases: 3,
            storage_indexes: 3
        }
    );
    assert_eq!(
        db.account_usage(AccountId::ANONYMOUS).unwrap(),
        AccountUsage::default()
    );
    let list = db.list_accounts().unwrap();
    assert_eq!(
        list.iter().map(|s| s.account.id).collect::<Vec<_>>(),
        vec![AccountId(0), AccountId(1), alice, bob]
    );
    assert_eq!(list[2].usage.used_space, 2300);
    assert_eq!(list[3].usage.used_space, 1307);
    assert_eq!(list[0].usage, AccountUsage::default());
    // Usage follows size changes and removals.
    db.change_share_space(&b, 0, 500).unwrap();
    assert_eq!(db.account_usage(alice).unwrap().used_space, 2500);
    db.mark_share_going(&a, 1).unwrap();
    db.remove_share(&a, 1).unwrap();
    assert_eq!(
        db.account_usage(alice).unwrap(),
        AccountUsage {
            used_space: 1500,
            leases: 2,
            storage_indexes: 2
        }
    );
    assert_eq!(
        db.account_usage(bob).unwrap(),
        AccountUsage {
            used_space: 507,
            leases: 2,
            storage_indexes: 2
        }
    );
    assert!(matches!(
        db.account_usage(AccountId(42)),
        Err(LeaseDbError::NoSuchAccount(_))
    ));
}

#[test]
fn unleased_stable_excludes_coming_and_leased() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(30);
    stable_share(&mut db, &s, 0, ShareKind::Immutable, 1); // unleased, stable -> candidate
    stable_share(&mut db, &s, 1, ShareKind::Immutable, 1); // leased
    db.add_or_renew_lease(&s, 1, AccountId::ANONYMOUS, T0, T0 + DAY)
        .unwrap();
    db.add_new_share(&s, 2, ShareKind::Immutable, 1).unwrap(); // COMING, unleased
    stable_share(&mut db, &s, 3, ShareKind::Mutable, 1);
    db.mark_share_coming(&s, 3).unwrap(); // being modified, unleased
    stable_share(&mut db, &s, 4, ShareKind::Immutable, 1);
    db.mark_share_going(&s, 4).unwrap(); // already going
    stable_share(&mut db, &si(31), 0, ShareKind::Immutable, 1); // candidate
    let got: Vec<_> = db
        .unleased_stable_shares(100)
        .unwrap()
        .iter()
        .map(|r| (r.storage_index, r.shnum))
        .collect();
    // Ordered by the stored (base32) storage index, as the crawler walks prefixes.
    let mut want = vec![(s, 0), (si(31), 0)];
    want.sort_by_key(|(s, n)| (s.to_base32(), *n));
    assert_eq!(got, want);
    assert_eq!(db.unleased_stable_shares(1).unwrap().len(), 1);
    assert_eq!(db.gc_candidates(100).unwrap().len(), 2);
}

#[test]
fn adopt_share_complete_incomplete_and_known() {
    let Fixture { mut db, path, _dir } = fixture();
    let s = si(40);
    assert_eq!(
        db.adopt_share(&s, 0, ShareKind::Immutable, 500, true, T0)
            .unwrap(),
        AdoptOutcome::Adopted(ShareState::Stable)
    );
    assert_eq!(
        db.adopt_share(&s, 1, ShareKind::Mutable, 20, false, T0)
            .unwrap(),
        AdoptOutcome::Adopted(ShareState::Coming)
    );
    assert_eq!(
        db.adopt_share(&s, 0, ShareKind::Immutable, 999, false, T0 + 5)
            .unwrap(),
        AdoptOutcome::AlreadyKnown(ShareState::Stable)
    );
    let rec = db.get_share(&s, 0).unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.used_space),
        (ShareState::Stable, 500),
        "existing rows untouched"
    );
    let starter = Lease {
        account_id: AccountId::STARTER,
        renewal_time: T0,
        expiration_time: T0 + STARTER_LEASE_DURATION,
    };
    assert_eq!(db.get_leases(&s, 0).unwrap(), vec![starter]);
    assert_eq!(db.get_leases(&s, 1).unwrap(), vec![starter]);
    assert_eq!(
        db.account_usage(AccountId::STARTER).unwrap().used_space,
        520
    );
    // The storage index is stored once-encoded: the 26-character form, the backend's
    // directory name, and nothing else.
    drop(db);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut stmt = conn.prepare("SELECT storage_index, prefix FROM shares UNION ALL SELECT storage_index, '' FROM leases").unwrap();
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 4);
    for (stored, prefix) in rows {
        assert_eq!(stored, s.to_base32());
        assert_eq!(stored.len(), 26);
        assert!(prefix.is_empty() || prefix == s.prefix());
    }
}

#[test]
fn corrupt_reason_is_recorded_bounded_and_clearable() {
    let Fixture { mut db, _dir, .. } = fixture();
    let s = si(50);
    stable_share(&mut db, &s, 0, ShareKind::Immutable, 1);
    db.mark_share_corrupt(&s, 0, "bad header").unwrap();
    let rec = db.get_share(&s, 0).unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.corrupt_reason.as_deref()),
        (ShareState::Stable, Some("bad header"))
    );
    let long = "é".repeat(MAX_CORRUPT_REASON_LEN);
    db.mark_share_corrupt(&s, 0, &long).unwrap();
    let stored = db
        .get_share(&s, 0)
        .unwrap()
        .unwrap()
        .corrupt_reason
        .unwrap();
    assert!(
        stored.len() <= MAX_CORRUPT_REASON_LEN && long.starts_with(&stored) && !stored.is_empty()
    );
    assert_eq!(db.totals().unwrap().corrupt_shares, 1);
    db.clear_share_corrupt(&s, 0).unwrap();
    assert_eq!(db.get_share(&s, 0).unwrap().unwrap().corrupt_reason, None);
}

#[test]
fn expiry_modes_and_share_kinds() {
    let Fixture { mut db, _dir, .. } = fixture();
    let (imm, m) = (si(60), si(61));
    stable_share(&mut db, &imm, 0, ShareKind::Immutable, 1);
    stable_share(&mut db, &m, 0, ShareKind::Mutable, 1);
    let setup = |db: &mut SqliteLeaseDb| {
        for s in [&imm, &m] {
            db.add_or_renew_lease(s, 0, AccountId::ANONYMOUS, T0, T0 + 31 * DAY)
                .unwrap();
            db.add_or_renew_lease(s, 0, AccountId::STARTER, T0 + 10 * DAY, T0 + 70 * DAY)
                .unwrap();
        }
    };
    setup(&mut db);
    let all = |mode| ExpiryPolicy::all(mode);
    // Expiration time: valid through its expiration second.
    assert_eq!(
        db.remove_expired_leases(&all(ExpiryMode::ExpirationTime), T0 + 31 * DAY)
            .unwrap(),
        0
    );
    assert_eq!(
        db.remove_expired_leases(&all(ExpiryMode::ExpirationTime), T0 + 31 * DAY + 1)
            .unwrap(),
        2
    );
    assert_eq!(db.totals().unwrap().leases, 2);
    setup(&mut db);
    // Age: renewed more than 5 days before now.
    let age = all(ExpiryMode::Age {
        override_lease_duration: 5 * DAY,
    });
    assert_eq!(db.remove_expired_leases(&age, T0 + 5 * DAY).unwrap(), 0);
    assert_eq!(db.remove_expired_leases(&age, T0 + 6 * DAY).unwrap(), 2);
    setup(&mut db);
    // Cutoff date, mutable shares only.
    let cutoff = ExpiryPolicy {
        mode: ExpiryMode::CutoffDate {
            cutoff: T0 + 20 * DAY,
        },
        immutable: false,
        mutable: true,
    };
    assert_eq!(db.remove_expired_leases(&cutoff, T0).unwrap(), 2);
    assert_eq!(db.get_leases(&imm, 0).unwrap().len(), 2);
    assert!(db.get_leases(&m, 0).unwrap().is_empty());
    let nothing = ExpiryPolicy {
        immutable: false,
        mutable: false,
        ..cutoff
    };
    assert_eq!(
        db.remove_expired_leases(&nothing, T0 + 1000 * DAY).unwrap(),
        0
    );
    let imm_only = ExpiryPolicy {
        immutable: true,
        mutable: false,
        ..cutoff
    };
    assert_eq!(db.remove_expired_leases(&imm_only, T0).unwrap(), 2);
    assert_eq!(db.unleased_stable_shares(10).unwrap().len(), 2);
}

#[test]
fn accounts_crud() {
    let Fixture { mut db, _dir, .. } = fixture();
    let id = db.create_account(Some("pk-carol"), "carol", T0).unwrap();
    assert!(
        matches!(db.create_account(Some("pk-carol"), "again", T0), Err(LeaseDbError::DuplicatePubkey(x)) if x == id)
    );
    let anon2 = db.create_account(None, "no key", T0).unwrap();
    let anon3 = db.create_account(None, "no key either", T0).unwrap();
    assert_ne!(anon2, anon3, "NULL public keys do not collide");
    let acct = db.get_account_by_pubkey("pk-carol").unwrap().unwrap();
    assert_eq!(
        (
            acct.id,
            acct.name.as_str(),
            acct.creation_time,
            acct.enabled
        ),
        (id, "carol", T0, true)
    );
    assert_eq!((acct.quota, acct.last_seen), (None, None));
    db.set_account_enabled(id, false).unwrap();
    db.set_account_quota(id, Some(5 << 30)).unwrap();
    db.touch_account_last_seen(id, T0 + 100).unwrap();
    db.touch_account_last_seen(id, T0 + 50).unwrap(); // never backwards
    let acct = db.get_account(id).unwrap().unwrap();
    assert_eq!(
        (acct.enabled, acct.quota, acct.last_seen),
        (false, Some(5 << 30), Some(T0 + 100))
    );
    db.set_account_quota(id, None).unwrap();
    assert_eq!(db.get_account(id).unwrap().unwrap().quota, None);
    assert!(db.get_account_by_pubkey("nobody").unwrap().is_none());
    assert!(db.get_account(AccountId(1000)).unwrap().is_none());
    for r in [
        db.set_account_enabled(AccountId(1000), true),
        db.set_account_quota(AccountId(1000), None),
        db.touch_account_last_seen(AccountId(1000), T0),
    ] {
        assert!(
            matches!(r, Err(LeaseDbError::NoSuchAccount(AccountId(1000)))),
            "{r:?}"
        );
    }
    assert!(matches!(
        db.set_account_quota(id, Some(u64::MAX)),
        Err(LeaseDbError::OutOfRange(_))
    ));
}

#[test]
fn crawler_state_and_history() {
    let Fixture { mut db, _dir, .. } = fixture();
    assert!(matches!(
        db.finish_crawl_cycle(T0, 3),
        Err(LeaseDbError::CrawlerState(_))
    ));
    for cycle in 0..5u64 {
        let mut st = db.crawler_state().unwrap();
        assert_eq!(st.cycle, cycle);
        assert!(!st.in_cycle());
        st.cycle_start_time = Some(T0 + cycle as i64 * 100);
        st.position = Some(si(cycle as u8));
        st.counters = CrawlerCounters {
            shares_seen: 10 + cycle,
            adopted: cycle,
            ..Default::default()
        };
        db.save_crawler_state(&st).unwrap();
        assert_eq!(db.crawler_state().unwrap(), st);
        let entry = db
            .finish_crawl_cycle(T0 + cycle as i64 * 100 + 50, 3)
            .unwrap();
        assert_eq!(
            (entry.cycle, entry.start_time, entry.counters.shares_seen),
            (cycle, T0 + cycle as i64 * 100, 10 + cycle)
        );
    }
    let hist = db.crawler_history(10).unwrap();
    assert_eq!(
        hist.iter().map(|h| h.cycle).collect::<Vec<_>>(),
        vec![4, 3, 2],
        "newest first, 3 retained"
    );
    assert_eq!(hist[0].counters.adopted, 4);
    assert_eq!(hist[0].end_time, T0 + 450);
    assert_eq!(db.crawler_history(1).unwrap().len(), 1);
    assert_eq!(
        db.crawler_state().unwrap(),
        CrawlerState {
            cycle: 5,
            ..Default::default()
        }
    );
}

#[test]
fn totals_and_prefix_queries() {
    let Fixture { mut db, _dir, .. } = fixture();
    stable_share(&mut db, &si(70), 0, ShareKind::Immutable, 100);
    stable_share(&mut db, &si(70), 1, ShareKind::Immutable, 100);
    db.add_new_share(&si(71), 0, ShareKind::Mutable, 7).unwrap();
    stable_share(&mut db, &si(72), 0, ShareKind::Immutable, 30);
    db.mark_share_going(&si(72), 0).unwrap();
    db.add_starter_lease(&si(70), 0, T0).unwrap();
    let t = db.totals().unwrap();
    assert_eq!((t.coming.shares, t.coming.used_space), (1, 7));
    assert_eq!((t.stable.shares, t.stable.used_space), (2, 200));
    assert_eq!((t.going.shares, t.going.used_space), (1, 30));
    assert_eq!((t.leases, t.accounts, t.used_space()), (1, 2, 237));
    let prefix = si(70).prefix();
    let shares = db.get_shares_for_prefix(&prefix).unwrap();
    assert!(shares.iter().all(|r| r.storage_index.prefix() == prefix));
    assert!(shares.iter().any(|r| r.storage_index == si(70)));
    let going = db.shares_in_state(ShareState::Going, 10).unwrap();
    assert_eq!(going.len(), 1);
    assert_eq!(going[0].storage_index, si(72));
}

#[test]
fn sizes_beyond_i64_are_refused() {
    let Fixture { mut db, _dir, .. } = fixture();
    assert!(matches!(
        db.add_new_share(&si(80), 0, ShareKind::Immutable, u64::MAX),
        Err(LeaseDbError::OutOfRange(_))
    ));
    assert_eq!(db.get_share(&si(80), 0).unwrap(), None);
}

#[test]
fn state_changes_survive_reopening() {
    let Fixture { mut db, path, _dir } = fixture();
    stable_share(&mut db, &si(90), 0, ShareKind::Immutable, 5);
    db.add_or_renew_lease(&si(90), 0, AccountId::ANONYMOUS, T0, T0 + DAY)
        .unwrap();
    std::mem::forget(db); // no clean close: the WAL is all there is
    let mut db = SqliteLeaseDb::open(&path, T0).unwrap();
    assert_eq!(state(&mut db, &si(90), 0), Some(ShareState::Stable));
    assert_eq!(db.get_leases(&si(90), 0).unwrap().len(), 1);
}

/// A lease of `account` renewed at T0 for a day.
fn lease(account: AccountId) -> Lease {
    Lease {
        account_id: account,
        renewal_time: T0,
        expiration_time: T0 + DAY,
    }
}

#[test]
fn relaxed_commits_start_upload_and_crawler_progress_then_restore_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasedb.sqlite");
    // The server's default: FULL, which start_upload lowers for its own commit only.
    let mut db = SqliteLeaseDb::open(&path, T0).unwrap();
    assert_eq!(db.synchronous_level().unwrap(), 2);
    let s = si(40);
    db.start_upload(
        &s,
        3,
        ShareKind::Immutable,
        500,
        lease(AccountId::ANONYMOUS),
    )
    .unwrap();
    assert_eq!(db.synchronous_level().unwrap(), 2);
    let rec = db.get_share(&s, 3).unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.used_space, rec.kind),
        (ShareState::Coming, 500, ShareKind::Immutable)
    );
    assert_eq!(
        db.get_leases(&s, 3).unwrap(),
        vec![Lease {
            account_id: AccountId::ANONYMOUS,
            renewal_time: T0,
            expiration_time: T0 + DAY,
        }]
    );
    // Refusals change nothing and leave FULL in place.
    let e = db
        .start_upload(&s, 3, ShareKind::Immutable, 9, lease(AccountId(77)))
        .unwrap_err();
    assert!(matches!(e, LeaseDbError::ShareExists { .. }), "{e:?}");
    let e = db
        .start_upload(&s, 4, ShareKind::Immutable, 9, lease(AccountId(77)))
        .unwrap_err();
    assert!(matches!(e, LeaseDbError::NoSuchAccount(_)), "{e:?}");
    assert_eq!(db.get_share(&s, 4).unwrap(), None);
    assert_eq!(db.synchronous_level().unwrap(), 2);
    db.mark_share_stable(&s, 3, 480).unwrap();
    db.mark_share_going(&s, 3).unwrap();
    let e = db
        .start_upload(&s, 3, ShareKind::Immutable, 9, lease(AccountId::ANONYMOUS))
        .unwrap_err();
    assert!(matches!(e, LeaseDbError::ShareGoing { .. }), "{e:?}");
    assert_eq!(state(&mut db, &s, 3), Some(ShareState::Going));
    // A relaxed commit is a real commit: there after reopening.
    db.start_upload(&s, 5, ShareKind::Immutable, 7, lease(AccountId::ANONYMOUS))
        .unwrap();
    // The crawler's progress is saved the same way.
    let mut st = db.crawler_state().unwrap();
    st.cycle_start_time = Some(T0);
    st.position = Some(si(41));
    db.save_crawler_state(&st).unwrap();
    assert_eq!(db.synchronous_level().unwrap(), 2);
    drop(db);
    let mut db = SqliteLeaseDb::open(&path, T0).unwrap();
    assert_eq!(state(&mut db, &s, 5), Some(ShareState::Coming));
    assert_eq!(db.get_leases(&s, 5).unwrap().len(), 1);
    assert_eq!(db.crawler_state().unwrap(), st);
    assert_eq!(db.synchronous_level().unwrap(), 2);
}

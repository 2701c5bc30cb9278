//! Model test: random operation sequences (including restarts and crashes) against the SQLite
//! lease database and a plain in-memory model; states, leases, usage per account, GC
//! candidates and totals must agree after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_storage::leasedb::{
    AccountId, AdoptOutcome, ExpiryMode, ExpiryPolicy, Lease, LeaseDb, LeaseDbError,
    MAX_SHARE_SPACE, OpenOptions, STARTER_LEASE_DURATION, ShareState, SqliteLeaseDb, Synchronous,
};
use lafs_storage::types::{ShareKind, StorageIndex};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const T0: i64 = 1_700_000_000;
const SIS: u8 = 3;
const SHNUMS: u16 = 3;
/// Accounts 0..=3 exist (2 and 3 are created by the test); 4 does not.
const ACCOUNTS: i64 = 5;

fn si(i: u8) -> StorageIndex {
    StorageIndex([i.wrapping_mul(37).wrapping_add(1); 16])
}

fn kind(mutable: bool) -> ShareKind {
    if mutable {
        ShareKind::Mutable
    } else {
        ShareKind::Immutable
    }
}

#[derive(Clone, Debug)]
enum Op {
    AddNew {
        s: u8,
        n: u16,
        mutable: bool,
        size: u64,
    },
    MarkComing {
        s: u8,
        n: u16,
    },
    MarkStable {
        s: u8,
        n: u16,
        size: u64,
    },
    MarkGoing {
        s: u8,
        n: u16,
    },
    Abandon {
        s: u8,
        n: u16,
    },
    Remove {
        s: u8,
        n: u16,
    },
    ChangeSpace {
        s: u8,
        n: u16,
        size: u64,
    },
    Corrupt {
        s: u8,
        n: u16,
    },
    Lease {
        s: u8,
        n: u16,
        acct: i64,
        renew: i64,
        dur: i64,
    },
    LeaseSi {
        s: u8,
        acct: i64,
        renew: i64,
        dur: i64,
    },
    Adopt {
        s: u8,
        n: u16,
        mutable: bool,
        size: u64,
        complete: bool,
        now: i64,
    },
    Expire {
        mode: u8,
        t: i64,
        immutable: bool,
        mutable: bool,
    },
    Reopen {
        crash: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SIS;
    let n = 0..SHNUMS;
    let size = prop_oneof![4 => Just(0u64), 16 => 1u64..5000, 2 => Just(MAX_SHARE_SPACE), 1 => Just(MAX_SHARE_SPACE + 1), 1 => Just(u64::MAX)];
    let t = 0i64..200;
    prop_oneof![
        4 => (s.clone(), n.clone(), any::<bool>(), size.clone())
            .prop_map(|(s, n, mutable, size)| Op::AddNew { s, n, mutable, size }),
        1 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::MarkComing { s, n }),
        3 => (s.clone(), n.clone(), size.clone()).prop_map(|(s, n, size)| Op::MarkStable { s, n, size }),
        2 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::MarkGoing { s, n }),
        1 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Abandon { s, n }),
        2 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Remove { s, n }),
        1 => (s.clone(), n.clone(), size.clone()).prop_map(|(s, n, size)| Op::ChangeSpace { s, n, size }),
        1 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Corrupt { s, n }),
        4 => (s.clone(), n.clone(), 0..ACCOUNTS, t.clone(), 0i64..100)
            .prop_map(|(s, n, acct, renew, dur)| Op::Lease { s, n, acct, renew, dur }),
        1 => (s.clone(), 0..ACCOUNTS, t.clone(), 0i64..100)
            .prop_map(|(s, acct, renew, dur)| Op::LeaseSi { s, acct, renew, dur }),
        2 => (s.clone(), n.clone(), any::<bool>(), size, any::<bool>(), t.clone())
            .prop_map(|(s, n, mutable, size, complete, now)| Op::Adopt { s, n, mutable, size, complete, now }),
        2 => (0u8..3, t, any::<bool>(), any::<bool>())
            .prop_map(|(mode, t, immutable, mutable)| Op::Expire { mode, t, immutable, mutable }),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
    ]
}

/// Error kinds the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Err {
    NoSuchShare,
    ShareGoing,
    ShareExists,
    InvalidTransition,
    NoSuchAccount,
    OutOfRange,
}

fn err_kind(e: &LeaseDbError) -> Err {
    match e {
        LeaseDbError::NoSuchShare { .. } => Err::NoSuchShare,
        LeaseDbError::ShareGoing { .. } => Err::ShareGoing,
        LeaseDbError::ShareExists { .. } => Err::ShareExists,
        LeaseDbError::InvalidTransition { .. } => Err::InvalidTransition,
        LeaseDbError::NoSuchAccount(_) => Err::NoSuchAccount,
        LeaseDbError::OutOfRange(_) => Err::OutOfRange,
        other => panic!("unexpected error {other:?}"),
    }
}

/// Successful results, made comparable.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Unit,
    Count(u64),
    Adopt(AdoptOutcome),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MShare {
    kind: ShareKind,
    state: ShareState,
    used: u64,
    corrupt: bool,
}

#[derive(Debug, Default)]
struct Model {
    shares: BTreeMap<(u8, u16), MShare>,
    /// (s, n, account) -> (renewal, expiration)
    leases: BTreeMap<(u8, u16, i64), (i64, i64)>,
}

impl Model {
    fn upsert(&mut self, key: (u8, u16, i64), renew: i64, exp: i64) {
        let e = self.leases.entry(key).or_insert((renew, exp));
        e.0 = e.0.max(renew);
        e.1 = e.1.max(exp);
    }

    fn share(&self, s: u8, n: u16) -> Result<&MShare, Err> {
        self.shares.get(&(s, n)).ok_or(Err::NoSuchShare)
    }

    fn apply(&mut self, op: &Op) -> Result<Out, Err> {
        use ShareState::*;
        let fits = |size: u64| {
            if size > MAX_SHARE_SPACE {
                Err(Err::OutOfRange)
            } else {
                Ok(())
            }
        };
        match *op {
            Op::AddNew {
                s,
                n,
                mutable,
                size,
            } => {
                fits(size)?;
                match self.shares.get(&(s, n)) {
                    Some(MShare { state: Going, .. }) => Err(Err::ShareGoing),
                    Some(_) => Err(Err::ShareExists),
                    None => {
                        self.shares.insert(
                            (s, n),
                            MShare {
                                kind: kind(mutable),
                                state: Coming,
                                used: size,
                                corrupt: false,
                            },
                        );
                        Ok(Out::Unit)
                    }
                }
            }
            Op::MarkComing { s, n } => {
                let sh = self.share(s, n)?;
                if sh.state != Stable || sh.kind != ShareKind::Mutable {
                    return Err(Err::InvalidTransition);
                }
                self.shares.get_mut(&(s, n)).unwrap().state = Coming;
                Ok(Out::Unit)
            }
            Op::MarkStable { s, n, size } => {
                fits(size)?;
                if self.share(s, n)?.state != Coming {
                    return Err(Err::InvalidTransition);
                }
                let sh = self.shares.get_mut(&(s, n)).unwrap();
                sh.state = Stable;
                sh.used = size;
                Ok(Out::Unit)
            }
            Op::MarkGoing { s, n } | Op::Abandon { s, n } => {
                let from = if matches!(op, Op::MarkGoing { .. }) {
                    Stable
                } else {
                    Coming
                };
                if self.share(s, n)?.state != from {
                    return Err(Err::InvalidTransition);
                }
                self.shares.get_mut(&(s, n)).unwrap().state = Going;
                Ok(Out::Unit)
            }
            Op::Remove { s, n } => {
                if self.share(s, n)?.state == Coming {
                    return Err(Err::InvalidTransition);
                }
                self.shares.remove(&(s, n));
                self.leases.retain(|k, _| (k.0, k.1) != (s, n));
                Ok(Out::Unit)
            }
            Op::ChangeSpace { s, n, size } => {
                fits(size)?;
                if self.share(s, n)?.state == Going {
                    return Err(Err::ShareGoing);
                }
                self.shares.get_mut(&(s, n)).unwrap().used = size;
                Ok(Out::Unit)
            }
            Op::Corrupt { s, n } => {
                self.share(s, n)?;
                self.shares.get_mut(&(s, n)).unwrap().corrupt = true;
                Ok(Out::Unit)
            }
            Op::Lease {
                s,
                n,
                acct,
                renew,
                dur,
            } => {
                if self.share(s, n)?.state == Going {
                    return Err(Err::ShareGoing);
                }
                if acct >= 4 {
                    return Err(Err::NoSuchAccount);
                }
                self.upsert((s, n, acct), T0 + renew, T0 + renew + dur);
                Ok(Out::Unit)
            }
            Op::LeaseSi {
                s,
                acct,
                renew,
                dur,
            } => {
                if acct >= 4 {
                    return Err(Err::NoSuchAccount);
                }
                let targets: Vec<u16> = self
                    .shares
                    .iter()
                    .filter(|((ss, _), sh)| *ss == s && sh.state != Going)
                    .map(|((_, n), _)| *n)
                    .collect();
                for n in &targets {
                    self.upsert((s, *n, acct), T0 + renew, T0 + renew + dur);
                }
                Ok(Out::Count(targets.len() as u64))
            }
            Op::Adopt {
                s,
                n,
                mutable,
                size,
                complete,
                now,
            } => {
                fits(size)?;
                if let Some(sh) = self.shares.get(&(s, n)) {
                    return Ok(Out::Adopt(AdoptOutcome::AlreadyKnown(sh.state)));
                }
                let state = if complete { Stable } else { Coming };
                self.shares.insert(
                    (s, n),
                    MShare {
                        kind: kind(mutable),
                        state,
                        used: size,
                        corrupt: false,
                    },
                );
                self.upsert((s, n, 1), T0 + now, T0 + now + STARTER_LEASE_DURATION);
                Ok(Out::Adopt(AdoptOutcome::Adopted(state)))
            }
            Op::Expire {
                mode,
                t,
                immutable,
                mutable,
            } => {
                let now = T0 + t;
                let before = self.leases.len();
                let shares = &self.shares;
                self.leases.retain(|&(s, n, _), &mut (renew, exp)| {
                    let k = shares[&(s, n)].kind;
                    let applies = match k {
                        ShareKind::Immutable => immutable,
                        ShareKind::Mutable => mutable,
                    };
                    let expired = match mode {
                        0 => exp < now,
                        1 => renew < now - 50,
                        _ => renew < T0 + t,
                    };
                    !(applies && expired)
                });
                Ok(Out::Count((before - self.leases.len()) as u64))
            }
            Op::Reopen { .. } => Ok(Out::Unit),
        }
    }
}

fn policy(mode: u8, t: i64, immutable: bool, mutable: bool) -> (ExpiryPolicy, i64) {
    let mode = match mode {
        0 => ExpiryMode::ExpirationTime,
        1 => ExpiryMode::Age {
            override_lease_duration: 50,
        },
        _ => ExpiryMode::CutoffDate { cutoff: T0 + t },
    };
    (
        ExpiryPolicy {
            mode,
            immutable,
            mutable,
        },
        T0 + t,
    )
}

fn apply_db(db: &mut SqliteLeaseDb, op: &Op) -> Result<Out, LeaseDbError> {
    Ok(match *op {
        Op::AddNew {
            s,
            n,
            mutable,
            size,
        } => db
            .add_new_share(&si(s), n, kind(mutable), size)
            .map(|_| Out::Unit)?,
        Op::MarkComing { s, n } => db.mark_share_coming(&si(s), n).map(|_| Out::Unit)?,
        Op::MarkStable { s, n, size } => {
            db.mark_share_stable(&si(s), n, size).map(|_| Out::Unit)?
        }
        Op::MarkGoing { s, n } => db.mark_share_going(&si(s), n).map(|_| Out::Unit)?,
        Op::Abandon { s, n } => db.abandon_share(&si(s), n).map(|_| Out::Unit)?,
        Op::Remove { s, n } => db.remove_share(&si(s), n).map(|_| Out::Unit)?,
        Op::ChangeSpace { s, n, size } => {
            db.change_share_space(&si(s), n, size).map(|_| Out::Unit)?
        }
        Op::Corrupt { s, n } => db
            .mark_share_corrupt(&si(s), n, "model says so")
            .map(|_| Out::Unit)?,
        Op::Lease {
            s,
            n,
            acct,
            renew,
            dur,
        } => db
            .add_or_renew_lease(&si(s), n, AccountId(acct), T0 + renew, T0 + renew + dur)
            .map(|_| Out::Unit)?,
        Op::LeaseSi {
            s,
            acct,
            renew,
            dur,
        } => Out::Count(db.add_or_renew_leases_for_si(
            &si(s),
            AccountId(acct),
            T0 + renew,
            T0 + renew + dur,
        )?),
        Op::Adopt {
            s,
            n,
            mutable,
            size,
            complete,
            now,
        } => Out::Adopt(db.adopt_share(&si(s), n, kind(mutable), size, complete, T0 + now)?),
        Op::Expire {
            mode,
            t,
            immutable,
            mutable,
        } => {
            let (p, now) = policy(mode, t, immutable, mutable);
            Out::Count(db.remove_expired_leases(&p, now)?)
        }
        Op::Reopen { .. } => unreachable!("handled by the driver"),
    })
}

fn compare(db: &mut SqliteLeaseDb, model: &Model) {
    let mut unleased = BTreeSet::new();
    let mut stable = (0u64, 0u64);
    for s in 0..SIS {
        let got: BTreeMap<u16, MShare> = db
            .get_shares(&si(s))
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.shnum,
                    MShare {
                        kind: r.kind,
                        state: r.state,
                        used: r.used_space,
                        corrupt: r.corrupt_reason.is_some(),
                    },
                )
            })
            .collect();
        let want: BTreeMap<u16, MShare> = model
            .shares
            .iter()
            .filter(|((ss, _), _)| *ss == s)
            .map(|((_, n), sh)| (*n, sh.clone()))
            .collect();
        assert_eq!(got, want, "shares of si {s}");
        for n in 0..SHNUMS {
            let got = db.get_leases(&si(s), n).unwrap();
            let want: Vec<Lease> = model
                .leases
                .iter()
                .filter(|((ss, nn, _), _)| (*ss, *nn) == (s, n))
                .map(|((_, _, a), (r, e))| Lease {
                    account_id: AccountId(*a),
                    renewal_time: *r,
                    expiration_time: *e,
                })
                .collect();
            assert_eq!(got, want, "leases of si {s} #{n}");
        }
    }
    for ((s, n), sh) in &model.shares {
        if sh.state == ShareState::Stable {
            stable = (stable.0 + 1, stable.1 + sh.used);
            if !model.leases.keys().any(|k| (k.0, k.1) == (*s, *n)) {
                unleased.insert((si(*s), *n));
            }
        }
    }
    for acct in 0..4 {
        let (mut used, mut count, mut sis) = (0u64, 0u64, BTreeSet::new());
        for (s, n, _) in model.leases.keys().filter(|k| k.2 == acct) {
            used += model.shares[&(*s, *n)].used;
            count += 1;
            sis.insert(*s);
        }
        let usage = db.account_usage(AccountId(acct)).unwrap();
        assert_eq!(
            (usage.used_space, usage.leases, usage.storage_indexes),
            (used, count, sis.len() as u64),
            "usage of {acct}"
        );
    }
    let got: BTreeSet<_> = db
        .unleased_stable_shares(1000)
        .unwrap()
        .into_iter()
        .map(|r| (r.storage_index, r.shnum))
        .collect();
    assert_eq!(got, unleased, "GC candidates");
    let totals = db.totals().unwrap();
    assert_eq!((totals.stable.shares, totals.stable.used_space), stable);
    assert_eq!(totals.leases, model.leases.len() as u64);
    assert_eq!(
        totals.coming.shares + totals.stable.shares + totals.going.shares,
        model.shares.len() as u64
    );
}

/// Real files, on tmpfs when there is one: each case creates a database (several fsyncs), and
/// fsync latency on a busy disk would dominate the run time.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

fn open(path: &Path) -> SqliteLeaseDb {
    let opts = OpenOptions {
        synchronous: Synchronous::Normal,
        ..OpenOptions::default()
    };
    SqliteLeaseDb::open_with(path, T0, &opts).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn leasedb_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = scratch_dir();
        let path = dir.path().join("leasedb.sqlite");
        let mut db = open(&path);
        assert_eq!(db.create_account(Some("a"), "a", T0).unwrap(), AccountId(2));
        assert_eq!(db.create_account(Some("b"), "b", T0).unwrap(), AccountId(3));
        let mut model = Model::default();
        for op in &ops {
            if let Op::Reopen { crash } = *op {
                if crash {
                    // No clean close: what is committed must be in the WAL.
                    std::mem::forget(db);
                } else {
                    drop(db);
                }
                db = open(&path);
                compare(&mut db, &model);
                continue;
            }
            let want = model.apply(op);
            let got = apply_db(&mut db, op).map_err(|e| err_kind(&e));
            prop_assert_eq!(got, want, "op {:?}", op);
            compare(&mut db, &model);
        }
    }
}

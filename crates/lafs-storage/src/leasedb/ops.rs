//! The operations of [`LeaseDb`](super::LeaseDb) as SQL over one connection.
//!
//! Every function is atomic: multi-statement operations run in one `BEGIN IMMEDIATE`
//! transaction (taking the write lock up front, so a read-then-write never fails half-way on
//! lock upgrade); single statements rely on autocommit. Storage indexes are encoded once, here,
//! with [`StorageIndex::to_base32`] and parsed back strictly.

use super::{
    Account, AccountId, AccountSummary, AccountUsage, AdoptOutcome, CrawlRequest, CrawlerCounters,
    CrawlerHistoryEntry, CrawlerState, DbInfo, ExpiryMode, ExpiryPolicy, ExpiryPreview, FoundShare,
    GcBlock, Lease, LeaseDbError, MAX_CORRUPT_REASON_LEN, MAX_SHARE_SPACE, Result,
    STARTER_LEASE_DURATION, ShareRecord, ShareState, StateTotals, Totals, UnixTime,
};
use crate::types::{ShareKind, ShareNum, StorageIndex};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| LeaseDbError::OutOfRange(what))
}

fn space(v: u64) -> Result<i64> {
    if v > MAX_SHARE_SPACE {
        return Err(LeaseDbError::OutOfRange("used_space"));
    }
    to_i64(v, "used_space")
}

fn invalid(table: &'static str, reason: String) -> LeaseDbError {
    LeaseDbError::InvalidRow { table, reason }
}

fn to_u64(v: i64, table: &'static str, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| invalid(table, format!("negative {what} {v}")))
}

fn parse_si(s: &str, table: &'static str) -> Result<StorageIndex> {
    StorageIndex::from_base32(s).ok_or_else(|| invalid(table, format!("bad storage index {s:?}")))
}

fn parse_kind(s: &str) -> Result<ShareKind> {
    match s {
        "immutable" => Ok(ShareKind::Immutable),
        "mutable" => Ok(ShareKind::Mutable),
        _ => Err(invalid("shares", format!("bad share_type {s:?}"))),
    }
}

fn parse_state(s: &str) -> Result<ShareState> {
    ShareState::parse(s).ok_or_else(|| invalid("shares", format!("bad state {s:?}")))
}

fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CORRUPT_REASON_LEN {
        return reason;
    }
    let mut end = MAX_CORRUPT_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

// ---------------------------------------------------------------------------------------------
// shares

const SHARE_COLS: &str = "storage_index, shnum, share_type, state, used_space, corrupt_reason";

type RawShare = (String, i64, String, String, i64, Option<String>);

fn raw_share(r: &Row<'_>) -> rusqlite::Result<RawShare> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn share_from_raw((si, shnum, kind, state, used, corrupt): RawShare) -> Result<ShareRecord> {
    Ok(ShareRecord {
        storage_index: parse_si(&si, "shares")?,
        shnum: ShareNum::try_from(shnum)
            .map_err(|_| invalid("shares", format!("bad shnum {shnum}")))?,
        kind: parse_kind(&kind)?,
        state: parse_state(&state)?,
        used_space: to_u64(used, "shares", "used_space")?,
        corrupt_reason: corrupt,
    })
}

fn query_shares(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<ShareRecord>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let raws = stmt
        .query_map(params, raw_share)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter().map(share_from_raw).collect()
}

/// State and kind of an existing row.
#[derive(Clone, Copy, Debug)]
struct Current {
    state: ShareState,
    kind: ShareKind,
}

fn current(conn: &Connection, si_s: &str, shnum: ShareNum) -> Result<Option<Current>> {
    let row = conn
        .prepare_cached(
            "SELECT state, share_type FROM shares WHERE storage_index = ?1 AND shnum = ?2",
        )?
        .query_row(params![si_s, shnum], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    row.map(|(state, kind)| {
        Ok(Current {
            state: parse_state(&state)?,
            kind: parse_kind(&kind)?,
        })
    })
    .transpose()
}

fn insert_share(
    tx: &Transaction<'_>,
    si_s: &str,
    shnum: ShareNum,
    kind: ShareKind,
    state: ShareState,
    used_space: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO shares (storage_index, shnum, prefix, share_type, state, used_space, corrupt_reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
    )?
    .execute(params![si_s, shnum, &si_s[..2], kind.as_str(), state.as_str(), used_space])?;
    Ok(())
}

pub(crate) fn add_new_share(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
    kind: ShareKind,
    used_space: u64,
) -> Result<()> {
    add_new_share_leased(conn, si, shnum, kind, used_space, None)
}

/// NONE → COMING, with `lease` if given, in one transaction.
pub(crate) fn add_new_share_leased(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
    kind: ShareKind,
    used_space: u64,
    lease: Option<&Lease>,
) -> Result<()> {
    let used = space(used_space)?;
    let si_s = si.to_base32();
    let tx = begin(conn)?;
    match current(&tx, &si_s, shnum)? {
        Some(Current {
            state: ShareState::Going,
            ..
        }) => {
            return Err(LeaseDbError::ShareGoing { si: *si, shnum });
        }
        Some(c) => {
            return Err(LeaseDbError::ShareExists {
                si: *si,
                shnum,
                state: c.state,
            });
        }
        None => {}
    }
    if let Some(l) = lease {
        require_account(&tx, l.account_id)?;
    }
    insert_share(&tx, &si_s, shnum, kind, ShareState::Coming, used)?;
    if let Some(l) = lease {
        upsert_lease(
            &tx,
            &si_s,
            shnum,
            l.account_id,
            l.renewal_time,
            l.expiration_time,
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Moves a share to `to` if `allowed` accepts its current state (and kind); optionally
/// records a new `used_space` at the same time.
fn transition(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
    to: ShareState,
    allowed: impl Fn(Current) -> bool,
    used_space: Option<u64>,
) -> Result<()> {
    let used = used_space.map(space).transpose()?;
    let si_s = si.to_base32();
    let tx = begin(conn)?;
    let cur = current(&tx, &si_s, shnum)?.ok_or(LeaseDbError::NoSuchShare { si: *si, shnum })?;
    if !allowed(cur) {
        return Err(LeaseDbError::InvalidTransition {
            si: *si,
            shnum,
            from: cur.state,
            to: to.label(),
        });
    }
    match used {
        Some(used) => tx
            .prepare_cached(
                "UPDATE shares SET state = ?3, used_space = ?4 WHERE storage_index = ?1 AND shnum = ?2",
            )?
            .execute(params![si_s, shnum, to.as_str(), used])?,
        None => tx
            .prepare_cached("UPDATE shares SET state = ?3 WHERE storage_index = ?1 AND shnum = ?2")?
            .execute(params![si_s, shnum, to.as_str()])?,
    };
    tx.commit()?;
    Ok(())
}

pub(crate) fn mark_share_coming(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
) -> Result<()> {
    transition(
        conn,
        si,
        shnum,
        ShareState::Coming,
        |c| c.state == ShareState::Stable && c.kind == ShareKind::Mutable,
        None,
    )
}

pub(crate) fn mark_share_stable(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
    used_space: u64,
) -> Result<()> {
    transition(
        conn,
        si,
        shnum,
        ShareState::Stable,
        |c| c.state == ShareState::Coming,
        Some(used_space),
    )
}

pub(crate) fn mark_share_going(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
) -> Result<()> {
    transition(
        conn,
        si,
        shnum,
        ShareState::Going,
        |c| c.state == ShareState::Stable,
        None,
    )
}

pub(crate) fn abandon_share(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
) -> Result<()> {
    transition(
        conn,
        si,
        shnum,
        ShareState::Going,
        |c| c.state == ShareState::Coming,
        None,
    )
}

pub(crate) fn remove_share(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
) -> Result<()> {
    let si_s = si.to_base32();
    let tx = begin(conn)?;
    let cur = current(&tx, &si_s, shnum)?.ok_or(LeaseDbError::NoSuchShare { si: *si, shnum })?;
    if cur.state == ShareState::Coming {
        return Err(LeaseDbError::InvalidTransition {
            si: *si,
            shnum,
            from: cur.state,
            to: "NONE",
        });
    }
    // Leases go with the share: ON DELETE CASCADE, in this transaction.
    tx.prepare_cached("DELETE FROM shares WHERE storage_index = ?1 AND shnum = ?2")?
        .execute(params![si_s, shnum])?;
    tx.commit()?;
    Ok(())
}

pub(crate) fn change_share_space(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
    used_space: u64,
) -> Result<()> {
    let used = space(used_space)?;
    let si_s = si.to_base32();
    let tx = begin(conn)?;
    let cur = current(&tx, &si_s, shnum)?.ok_or(LeaseDbError::NoSuchShare { si: *si, shnum })?;
    if cur.state == ShareState::Going {
        return Err(LeaseDbError::ShareGoing { si: *si, shnum });
    }
    tx.prepare_cached("UPDATE shares SET used_space = ?3 WHERE storage_index = ?1 AND shnum = ?2")?
        .execute(params![si_s, shnum, used])?;
    tx.commit()?;
    Ok(())
}

pub(crate) fn set_share_corrupt(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
    reason: Option<&str>,
) -> Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE shares SET corrupt_reason = ?3 WHERE storage_index = ?1 AND shnum = ?2",
        )?
        .execute(params![si.to_base32(), shnum, reason.map(truncate_reason)])?;
    if n == 0 {
        return Err(LeaseDbError::NoSuchShare { si: *si, shnum });
    }
    Ok(())
}

pub(crate) fn get_share(
    conn: &Connection,
    si: &StorageIndex,
    shnum: ShareNum,
) -> Result<Option<ShareRecord>> {
    let sql = format!("SELECT {SHARE_COLS} FROM shares WHERE storage_index = ?1 AND shnum = ?2");
    Ok(query_shares(conn, &sql, params![si.to_base32(), shnum])?
        .into_iter()
        .next())
}

pub(crate) fn get_shares(conn: &Connection, si: &StorageIndex) -> Result<Vec<ShareRecord>> {
    let sql = format!("SELECT {SHARE_COLS} FROM shares WHERE storage_index = ?1 ORDER BY shnum");
    query_shares(conn, &sql, params![si.to_base32()])
}

pub(crate) fn get_shares_for_prefix(conn: &Connection, prefix: &str) -> Result<Vec<ShareRecord>> {
    let sql =
        format!("SELECT {SHARE_COLS} FROM shares WHERE prefix = ?1 ORDER BY storage_index, shnum");
    query_shares(conn, &sql, params![prefix])
}

pub(crate) fn shares_in_state(
    conn: &Connection,
    state: ShareState,
    limit: u32,
) -> Result<Vec<ShareRecord>> {
    let sql = format!(
        "SELECT {SHARE_COLS} FROM shares WHERE state = ?1 ORDER BY storage_index, shnum LIMIT ?2"
    );
    query_shares(conn, &sql, params![state.as_str(), limit])
}

pub(crate) fn adopt_share(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
    kind: ShareKind,
    used_space: u64,
    complete: bool,
    now: UnixTime,
) -> Result<AdoptOutcome> {
    let used = space(used_space)?;
    let si_s = si.to_base32();
    let tx = begin(conn)?;
    if let Some(c) = current(&tx, &si_s, shnum)? {
        return Ok(AdoptOutcome::AlreadyKnown(c.state));
    }
    let state = if complete {
        ShareState::Stable
    } else {
        ShareState::Coming
    };
    insert_share(&tx, &si_s, shnum, kind, state, used)?;
    upsert_lease(
        &tx,
        &si_s,
        shnum,
        AccountId::STARTER,
        now,
        now.saturating_add(STARTER_LEASE_DURATION),
    )?;
    tx.commit()?;
    Ok(AdoptOutcome::Adopted(state))
}

pub(crate) fn adopt_shares(
    conn: &mut Connection,
    found: &[FoundShare],
    now: UnixTime,
) -> Result<Vec<AdoptOutcome>> {
    let tx = begin(conn)?;
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        let used = space(f.used_space)?;
        let si_s = f.storage_index.to_base32();
        if let Some(c) = current(&tx, &si_s, f.shnum)? {
            out.push(AdoptOutcome::AlreadyKnown(c.state));
            continue;
        }
        insert_share(&tx, &si_s, f.shnum, f.kind, ShareState::Stable, used)?;
        upsert_lease(
            &tx,
            &si_s,
            f.shnum,
            AccountId::STARTER,
            now,
            now.saturating_add(STARTER_LEASE_DURATION),
        )?;
        if let Some(reason) = &f.corrupt {
            tx.prepare_cached(
                "UPDATE shares SET corrupt_reason = ?3 WHERE storage_index = ?1 AND shnum = ?2",
            )?
            .execute(params![si_s, f.shnum, truncate_reason(reason)])?;
        }
        out.push(AdoptOutcome::Adopted(ShareState::Stable));
    }
    tx.commit()?;
    Ok(out)
}

pub(crate) fn mark_share_going_if_unleased(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
) -> Result<Option<ShareRecord>> {
    let si_s = si.to_base32();
    let tx = begin(conn)?;
    let sql = format!(
        "SELECT {SHARE_COLS} FROM shares s WHERE s.storage_index = ?1 AND s.shnum = ?2 \
         AND s.state = 'stable' AND NOT EXISTS \
         (SELECT 1 FROM leases l WHERE l.storage_index = s.storage_index AND l.shnum = s.shnum)"
    );
    let Some(rec) = query_shares(&tx, &sql, params![si_s, shnum])?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    tx.prepare_cached("UPDATE shares SET state = 'going' WHERE storage_index = ?1 AND shnum = ?2")?
        .execute(params![si_s, shnum])?;
    tx.commit()?;
    Ok(Some(rec))
}

// ---------------------------------------------------------------------------------------------
// leases

/// Insert, or renew without ever moving either time backwards (stock Tahoe only renews to a
/// later expiration). Portable upsert: SQLite >= 3.24 and PostgreSQL >= 9.5.
const UPSERT_LEASE_TAIL: &str = "ON CONFLICT (storage_index, shnum, account_id) DO UPDATE SET \
     renewal_time = CASE WHEN excluded.renewal_time > leases.renewal_time \
                    THEN excluded.renewal_time ELSE leases.renewal_time END, \
     expiration_time = CASE WHEN excluded.expiration_time > leases.expiration_time \
                    THEN excluded.expiration_time ELSE leases.expiration_time END";

fn upsert_lease(
    tx: &Transaction<'_>,
    si_s: &str,
    shnum: ShareNum,
    account: AccountId,
    renewal_time: UnixTime,
    expiration_time: UnixTime,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO leases (storage_index, shnum, account_id, renewal_time, expiration_time) \
         VALUES (?1, ?2, ?3, ?4, ?5) {UPSERT_LEASE_TAIL}"
    );
    tx.prepare_cached(&sql)?.execute(params![
        si_s,
        shnum,
        account.0,
        renewal_time,
        expiration_time
    ])?;
    Ok(())
}

fn require_account(conn: &Connection, id: AccountId) -> Result<()> {
    let found = conn
        .prepare_cached("SELECT id FROM accounts WHERE id = ?1")?
        .query_row([id.0], |r| r.get::<_, i64>(0))
        .optional()?;
    found.map(|_| ()).ok_or(LeaseDbError::NoSuchAccount(id))
}

pub(crate) fn add_or_renew_lease(
    conn: &mut Connection,
    si: &StorageIndex,
    shnum: ShareNum,
    account: AccountId,
    renewal_time: UnixTime,
    expiration_time: UnixTime,
) -> Result<()> {
    let si_s = si.to_base32();
    let tx = begin(conn)?;
    match current(&tx, &si_s, shnum)? {
        None => return Err(LeaseDbError::NoSuchShare { si: *si, shnum }),
        Some(Current {
            state: ShareState::Going,
            ..
        }) => {
            return Err(LeaseDbError::ShareGoing { si: *si, shnum });
        }
        Some(_) => {}
    }
    require_account(&tx, account)?;
    upsert_lease(&tx, &si_s, shnum, account, renewal_time, expiration_time)?;
    tx.commit()?;
    Ok(())
}

pub(crate) fn add_or_renew_leases_for_si(
    conn: &mut Connection,
    si: &StorageIndex,
    account: AccountId,
    renewal_time: UnixTime,
    expiration_time: UnixTime,
) -> Result<u64> {
    let si_s = si.to_base32();
    let tx = begin(conn)?;
    require_account(&tx, account)?;
    let n: i64 = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM shares WHERE storage_index = ?1 AND state <> 'going'",
        )?
        .query_row([&si_s], |r| r.get(0))?;
    let sql = format!(
        "INSERT INTO leases (storage_index, shnum, account_id, renewal_time, expiration_time) \
         SELECT storage_index, shnum, ?2, ?3, ?4 FROM shares \
         WHERE storage_index = ?1 AND state <> 'going' {UPSERT_LEASE_TAIL}"
    );
    tx.prepare_cached(&sql)?
        .execute(params![si_s, account.0, renewal_time, expiration_time])?;
    tx.commit()?;
    to_u64(n, "shares", "count")
}

pub(crate) fn get_leases(
    conn: &Connection,
    si: &StorageIndex,
    shnum: ShareNum,
) -> Result<Vec<Lease>> {
    let mut stmt = conn.prepare_cached(
        "SELECT account_id, renewal_time, expiration_time FROM leases \
         WHERE storage_index = ?1 AND shnum = ?2 ORDER BY account_id",
    )?;
    let leases = stmt
        .query_map(params![si.to_base32(), shnum], |r| {
            Ok(Lease {
                account_id: AccountId(r.get(0)?),
                renewal_time: r.get(1)?,
                expiration_time: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(leases)
}

pub(crate) fn remove_expired_leases(
    conn: &Connection,
    policy: &ExpiryPolicy,
    now: UnixTime,
) -> Result<u64> {
    let (condition, cutoff) = match policy.mode {
        ExpiryMode::ExpirationTime => ("expiration_time < ?1", now),
        ExpiryMode::Age {
            override_lease_duration,
        } => (
            "renewal_time < ?1",
            now.saturating_sub(override_lease_duration),
        ),
        ExpiryMode::CutoffDate { cutoff } => ("renewal_time < ?1", cutoff),
    };
    let kind_filter = match (policy.immutable, policy.mutable) {
        (false, false) => return Ok(0),
        (true, true) => String::new(),
        (immutable, _) => format!(
            " AND EXISTS (SELECT 1 FROM shares s WHERE s.storage_index = leases.storage_index \
             AND s.shnum = leases.shnum AND s.share_type = '{}')",
            if immutable { "immutable" } else { "mutable" }
        ),
    };
    let sql = format!("DELETE FROM leases WHERE {condition}{kind_filter}");
    let n = conn.prepare_cached(&sql)?.execute([cutoff])?;
    Ok(n as u64)
}

/// The `WHERE` condition (on `leases`) selecting the leases `policy` expires, with its
/// parameter; `None` if the policy applies to no kind of share.
fn expired_condition(policy: &ExpiryPolicy, now: UnixTime, alias: &str) -> Option<(String, i64)> {
    let (condition, cutoff) = match policy.mode {
        ExpiryMode::ExpirationTime => ("expiration_time < ?1", now),
        ExpiryMode::Age {
            override_lease_duration,
        } => (
            "renewal_time < ?1",
            now.saturating_sub(override_lease_duration),
        ),
        ExpiryMode::CutoffDate { cutoff } => ("renewal_time < ?1", cutoff),
    };
    let kind_filter = match (policy.immutable, policy.mutable) {
        (false, false) => return None,
        (true, true) => String::new(),
        (immutable, _) => format!(
            " AND EXISTS (SELECT 1 FROM shares ks WHERE ks.storage_index = {alias}.storage_index \
             AND ks.shnum = {alias}.shnum AND ks.share_type = '{}')",
            if immutable { "immutable" } else { "mutable" }
        ),
    };
    Some((format!("{alias}.{condition}{kind_filter}"), cutoff))
}

pub(crate) fn expiry_preview(
    conn: &mut Connection,
    policy: &ExpiryPolicy,
    now: UnixTime,
) -> Result<ExpiryPreview> {
    let Some((cond, cutoff)) = expired_condition(policy, now, "l") else {
        return Ok(ExpiryPreview::default());
    };
    let tx = conn.transaction()?;
    let leases: i64 = tx
        .prepare(&format!("SELECT COUNT(*) FROM leases l WHERE {cond}"))?
        .query_row([cutoff], |r| r.get(0))?;
    // Shares every lease of which would expire (or that have none): collected afterwards.
    let (shares, bytes): (i64, i64) = tx
        .prepare(&format!(
            "SELECT COUNT(*), COALESCE(SUM(s.used_space), 0) FROM shares s \
             WHERE s.state = 'stable' AND NOT EXISTS (SELECT 1 FROM leases l \
             WHERE l.storage_index = s.storage_index AND l.shnum = s.shnum AND NOT ({cond}))"
        ))?
        .query_row([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?;
    tx.commit()?;
    Ok(ExpiryPreview {
        leases: to_u64(leases, "leases", "count")?,
        shares: to_u64(shares, "shares", "count")?,
        bytes: to_u64(bytes, "shares", "used_space sum")?,
    })
}

pub(crate) fn unleased_stable_shares(conn: &Connection, limit: u32) -> Result<Vec<ShareRecord>> {
    // COMING shares count as leased: only STABLE rows are candidates.
    let sql = format!(
        "SELECT {SHARE_COLS} FROM shares s WHERE s.state = 'stable' AND NOT EXISTS \
         (SELECT 1 FROM leases l WHERE l.storage_index = s.storage_index AND l.shnum = s.shnum) \
         ORDER BY s.storage_index, s.shnum LIMIT ?1"
    );
    query_shares(conn, &sql, params![limit])
}

pub(crate) fn gc_candidates(conn: &mut Connection, limit: u32) -> Result<Vec<ShareRecord>> {
    // One read transaction: the block and the candidates come from the same snapshot.
    let tx = conn.transaction()?;
    if let Some(block) = gc_block(&tx)? {
        return Err(LeaseDbError::GcBlocked(block));
    }
    let shares = unleased_stable_shares(&tx, limit)?;
    tx.commit()?;
    Ok(shares)
}

// ---------------------------------------------------------------------------------------------
// accounts

const ACCOUNT_COLS: &str = "id, pubkey, name, creation_time, enabled, quota, last_seen";

type RawAccount = (
    i64,
    Option<String>,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

fn raw_account(r: &Row<'_>) -> rusqlite::Result<RawAccount> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn account_from_raw(
    (id, pubkey, name, creation_time, enabled, quota, last_seen): RawAccount,
) -> Result<Account> {
    Ok(Account {
        id: AccountId(id),
        pubkey,
        name,
        creation_time,
        enabled: enabled != 0,
        quota: quota.map(|q| to_u64(q, "accounts", "quota")).transpose()?,
        last_seen,
    })
}

fn query_account(
    conn: &Connection,
    sql: &str,
    param: impl rusqlite::ToSql,
) -> Result<Option<Account>> {
    let raw = conn
        .prepare_cached(sql)?
        .query_row([param], raw_account)
        .optional()?;
    raw.map(account_from_raw).transpose()
}

pub(crate) fn create_account(
    conn: &mut Connection,
    pubkey: Option<&str>,
    name: &str,
    now: UnixTime,
) -> Result<AccountId> {
    let tx = begin(conn)?;
    if let Some(pk) = pubkey {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE pubkey = ?1");
        if let Some(existing) = query_account(&tx, &sql, pk)? {
            return Err(LeaseDbError::DuplicatePubkey(existing.id));
        }
    }
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO accounts (pubkey, name, creation_time, enabled) VALUES (?1, ?2, ?3, 1) RETURNING id",
        )?
        .query_row(params![pubkey, name, now], |r| r.get(0))?;
    tx.commit()?;
    Ok(AccountId(id))
}

pub(crate) fn get_account(conn: &Connection, id: AccountId) -> Result<Option<Account>> {
    query_account(
        conn,
        &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1"),
        id.0,
    )
}

pub(crate) fn get_account_by_pubkey(conn: &Connection, pubkey: &str) -> Result<Option<Account>> {
    query_account(
        conn,
        &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE pubkey = ?1"),
        pubkey,
    )
}

fn usage_from(leases: i64, sis: i64, used: i64) -> Result<AccountUsage> {
    Ok(AccountUsage {
        used_space: to_u64(used, "shares", "used_space sum")?,
        leases: to_u64(leases, "leases", "count")?,
        storage_indexes: to_u64(sis, "leases", "count")?,
    })
}

pub(crate) fn list_accounts(conn: &Connection) -> Result<Vec<AccountSummary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.pubkey, a.name, a.creation_time, a.enabled, a.quota, a.last_seen, \
                COUNT(l.account_id), COUNT(DISTINCT l.storage_index), COALESCE(SUM(s.used_space), 0) \
         FROM accounts a \
         LEFT JOIN leases l ON l.account_id = a.id \
         LEFT JOIN shares s ON s.storage_index = l.storage_index AND s.shnum = l.shnum \
         GROUP BY a.id, a.pubkey, a.name, a.creation_time, a.enabled, a.quota, a.last_seen \
         ORDER BY a.id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                raw_account(r)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(raw, leases, sis, used)| {
            Ok(AccountSummary {
                account: account_from_raw(raw)?,
                usage: usage_from(leases, sis, used)?,
            })
        })
        .collect()
}

pub(crate) fn account_usage(conn: &mut Connection, id: AccountId) -> Result<AccountUsage> {
    let tx = conn.transaction()?;
    require_account(&tx, id)?;
    let (leases, sis, used) = tx
        .prepare_cached(
            "SELECT COUNT(*), COUNT(DISTINCT l.storage_index), COALESCE(SUM(s.used_space), 0) \
             FROM leases l JOIN shares s ON s.storage_index = l.storage_index AND s.shnum = l.shnum \
             WHERE l.account_id = ?1",
        )?
        .query_row([id.0], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
    tx.commit()?;
    usage_from(leases, sis, used)
}

fn update_account(
    conn: &Connection,
    id: AccountId,
    sql: &str,
    value: impl rusqlite::ToSql,
) -> Result<()> {
    let n = conn.prepare_cached(sql)?.execute(params![id.0, value])?;
    if n == 0 {
        require_account(conn, id)?;
    }
    Ok(())
}

pub(crate) fn set_account_enabled(conn: &Connection, id: AccountId, enabled: bool) -> Result<()> {
    update_account(
        conn,
        id,
        "UPDATE accounts SET enabled = ?2 WHERE id = ?1",
        i64::from(enabled),
    )
}

pub(crate) fn set_account_quota(
    conn: &Connection,
    id: AccountId,
    quota: Option<u64>,
) -> Result<()> {
    let quota = quota.map(|q| to_i64(q, "quota")).transpose()?;
    update_account(
        conn,
        id,
        "UPDATE accounts SET quota = ?2 WHERE id = ?1",
        quota,
    )
}

pub(crate) fn touch_account_last_seen(
    conn: &Connection,
    id: AccountId,
    now: UnixTime,
) -> Result<()> {
    update_account(
        conn,
        id,
        "UPDATE accounts SET last_seen = ?2 WHERE id = ?1 AND (last_seen IS NULL OR last_seen < ?2)",
        now,
    )
}

// ---------------------------------------------------------------------------------------------
// crawler

const COUNTER_COLS: &str = "shares_seen, bytes_seen, adopted, vanished, corrupt, leases_expired, shares_collected, bytes_collected, gc_dry_run";

fn counters_at(r: &Row<'_>, first: usize) -> rusqlite::Result<[i64; 9]> {
    let mut c = [0i64; 9];
    for (i, slot) in c.iter_mut().enumerate() {
        *slot = r.get(first + i)?;
    }
    Ok(c)
}

fn counters_from(c: [i64; 9], table: &'static str) -> Result<CrawlerCounters> {
    let u = |v: i64| to_u64(v, table, "counter");
    Ok(CrawlerCounters {
        shares_seen: u(c[0])?,
        bytes_seen: u(c[1])?,
        adopted: u(c[2])?,
        vanished: u(c[3])?,
        corrupt: u(c[4])?,
        leases_expired: u(c[5])?,
        shares_collected: u(c[6])?,
        bytes_collected: u(c[7])?,
        gc_dry_run: c[8] != 0,
    })
}

fn counters_to(c: &CrawlerCounters) -> Result<[i64; 9]> {
    let i = |v: u64| to_i64(v, "crawler counter");
    Ok([
        i(c.shares_seen)?,
        i(c.bytes_seen)?,
        i(c.adopted)?,
        i(c.vanished)?,
        i(c.corrupt)?,
        i(c.leases_expired)?,
        i(c.shares_collected)?,
        i(c.bytes_collected)?,
        i64::from(c.gc_dry_run),
    ])
}

pub(crate) fn crawler_state(conn: &Connection) -> Result<CrawlerState> {
    let sql = format!(
        "SELECT cycle, position, cycle_start_time, updated_at, {COUNTER_COLS} FROM crawler_state WHERE id = 1"
    );
    let (cycle, position, start, updated_at, counters) =
        conn.prepare_cached(&sql)?.query_row([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                counters_at(r, 4)?,
            ))
        })?;
    Ok(CrawlerState {
        cycle: to_u64(cycle, "crawler_state", "cycle")?,
        position: position
            .map(|p| parse_si(&p, "crawler_state"))
            .transpose()?,
        cycle_start_time: start,
        counters: counters_from(counters, "crawler_state")?,
        updated_at,
    })
}

pub(crate) fn save_crawler_state(conn: &Connection, state: &CrawlerState) -> Result<()> {
    let c = counters_to(&state.counters)?;
    conn.prepare_cached(
        "UPDATE crawler_state SET cycle = ?1, position = ?2, cycle_start_time = ?3, \
         shares_seen = ?4, bytes_seen = ?5, adopted = ?6, vanished = ?7, corrupt = ?8, \
         leases_expired = ?9, shares_collected = ?10, bytes_collected = ?11, gc_dry_run = ?12, \
         updated_at = ?13 WHERE id = 1",
    )?
    .execute(params![
        to_i64(state.cycle, "crawler cycle")?,
        state.position.map(|p| p.to_base32()),
        state.cycle_start_time,
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        c[6],
        c[7],
        c[8],
        state.updated_at,
    ])?;
    Ok(())
}

pub(crate) fn finish_crawl_cycle(
    conn: &mut Connection,
    end_time: UnixTime,
    retain: u32,
) -> Result<CrawlerHistoryEntry> {
    let tx = begin(conn)?;
    let state = crawler_state(&tx)?;
    let start_time = state.cycle_start_time.ok_or(LeaseDbError::CrawlerState(
        "finish_crawl_cycle without a cycle start time",
    ))?;
    let entry = CrawlerHistoryEntry {
        cycle: state.cycle,
        start_time,
        end_time,
        counters: state.counters,
    };
    let cycle = to_i64(state.cycle, "crawler cycle")?;
    let c = counters_to(&state.counters)?;
    tx.prepare_cached("DELETE FROM crawler_history WHERE cycle = ?1")?
        .execute([cycle])?;
    tx.prepare_cached(&format!(
        "INSERT INTO crawler_history (cycle, start_time, end_time, {COUNTER_COLS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        cycle, start_time, end_time, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    ])?;
    tx.prepare_cached(
        "DELETE FROM crawler_history WHERE cycle NOT IN \
         (SELECT cycle FROM crawler_history ORDER BY cycle DESC LIMIT ?1)",
    )?
    .execute([retain])?;
    save_crawler_state(
        &tx,
        &CrawlerState {
            cycle: state.cycle + 1,
            position: None,
            cycle_start_time: None,
            counters: Default::default(),
            updated_at: None,
        },
    )?;
    // Requests this cycle answers are done; keep the newest 100 answered ones.
    tx.prepare_cached(
        "UPDATE crawler_requests SET done_at = ?2 \
         WHERE done_at IS NULL AND started_cycle IS NOT NULL AND started_cycle <= ?1",
    )?
    .execute(params![cycle, end_time])?;
    tx.prepare_cached(
        "DELETE FROM crawler_requests WHERE done_at IS NOT NULL AND id NOT IN \
         (SELECT id FROM crawler_requests WHERE done_at IS NOT NULL ORDER BY id DESC LIMIT 100)",
    )?
    .execute([])?;
    // The cycle that just finished started after the block was set if its number reached
    // `until_cycle` (see `block_gc_until_full_crawl`).
    tx.prepare_cached(
        "UPDATE leasedb_meta SET gc_blocked_since = NULL, gc_blocked_until_cycle = NULL \
         WHERE id = 1 AND gc_blocked_until_cycle IS NOT NULL AND gc_blocked_until_cycle <= ?1",
    )?
    .execute([cycle])?;
    tx.commit()?;
    Ok(entry)
}

pub(crate) fn crawler_history(conn: &Connection, n: u32) -> Result<Vec<CrawlerHistoryEntry>> {
    let sql = format!(
        "SELECT cycle, start_time, end_time, {COUNTER_COLS} FROM crawler_history ORDER BY cycle DESC LIMIT ?1"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map([n], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                counters_at(r, 3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(cycle, start_time, end_time, c)| {
            Ok(CrawlerHistoryEntry {
                cycle: to_u64(cycle, "crawler_history", "cycle")?,
                start_time,
                end_time,
                counters: counters_from(c, "crawler_history")?,
            })
        })
        .collect()
}

fn request_from_row(r: &Row<'_>) -> rusqlite::Result<(i64, i64, Option<i64>, Option<i64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn request_from_raw(
    (id, requested_at, started, done_at): (i64, i64, Option<i64>, Option<i64>),
) -> Result<CrawlRequest> {
    Ok(CrawlRequest {
        id,
        requested_at,
        started_cycle: started
            .map(|c| to_u64(c, "crawler_requests", "started_cycle"))
            .transpose()?,
        done_at,
    })
}

pub(crate) fn request_crawl(conn: &Connection, now: UnixTime) -> Result<i64> {
    Ok(conn
        .prepare_cached("INSERT INTO crawler_requests (requested_at) VALUES (?1) RETURNING id")?
        .query_row([now], |r| r.get(0))?)
}

pub(crate) fn claim_crawl_requests(conn: &Connection, cycle: u64) -> Result<u64> {
    let n = conn
        .prepare_cached(
            "UPDATE crawler_requests SET started_cycle = ?1 \
             WHERE started_cycle IS NULL AND done_at IS NULL",
        )?
        .execute([to_i64(cycle, "crawler cycle")?])?;
    Ok(n as u64)
}

pub(crate) fn open_crawl_requests(conn: &Connection) -> Result<Vec<CrawlRequest>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, requested_at, started_cycle, done_at FROM crawler_requests \
         WHERE done_at IS NULL ORDER BY id",
    )?;
    let rows = stmt
        .query_map([], request_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(request_from_raw).collect()
}

pub(crate) fn get_crawl_request(conn: &Connection, id: i64) -> Result<Option<CrawlRequest>> {
    conn.prepare_cached(
        "SELECT id, requested_at, started_cycle, done_at FROM crawler_requests WHERE id = ?1",
    )?
    .query_row([id], request_from_row)
    .optional()?
    .map(request_from_raw)
    .transpose()
}

// ---------------------------------------------------------------------------------------------
// fail-safety and status

pub(crate) fn gc_block(conn: &Connection) -> Result<Option<GcBlock>> {
    let (since, until) = conn
        .prepare_cached(
            "SELECT gc_blocked_since, gc_blocked_until_cycle FROM leasedb_meta WHERE id = 1",
        )?
        .query_row([], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
    match (since, until) {
        (None, None) => Ok(None),
        (Some(since), Some(until)) => Ok(Some(GcBlock {
            since,
            until_cycle: to_u64(until, "leasedb_meta", "gc_blocked_until_cycle")?,
        })),
        _ => Err(invalid("leasedb_meta", "GC block half set".into())),
    }
}

pub(crate) fn block_gc_until_full_crawl(conn: &mut Connection, now: UnixTime) -> Result<GcBlock> {
    let tx = begin(conn)?;
    let state = crawler_state(&tx)?;
    // A cycle already under way started before now and proves nothing: wait for the next.
    let mut until_cycle = if state.in_cycle() {
        state.cycle + 1
    } else {
        state.cycle
    };
    if let Some(existing) = gc_block(&tx)? {
        until_cycle = until_cycle.max(existing.until_cycle);
    }
    let block = GcBlock {
        since: now,
        until_cycle,
    };
    tx.prepare_cached(
        "UPDATE leasedb_meta SET gc_blocked_since = ?1, gc_blocked_until_cycle = ?2 WHERE id = 1",
    )?
    .execute(params![now, to_i64(until_cycle, "crawler cycle")?])?;
    tx.commit()?;
    Ok(block)
}

pub(crate) fn clear_gc_block(conn: &Connection) -> Result<()> {
    conn.execute("UPDATE leasedb_meta SET gc_blocked_since = NULL, gc_blocked_until_cycle = NULL WHERE id = 1", [])?;
    Ok(())
}

pub(crate) fn totals(conn: &mut Connection) -> Result<Totals> {
    let tx = conn.transaction()?;
    let mut totals = Totals::default();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT state, COUNT(*), COALESCE(SUM(used_space), 0) FROM shares GROUP BY state",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (state, n, used) in rows {
            let t = StateTotals {
                shares: to_u64(n, "shares", "count")?,
                used_space: to_u64(used, "shares", "sum")?,
            };
            match parse_state(&state)? {
                ShareState::Coming => totals.coming = t,
                ShareState::Stable => totals.stable = t,
                ShareState::Going => totals.going = t,
            }
        }
    }
    let count = |sql: &str| -> Result<u64> {
        let n: i64 = tx.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
        to_u64(n, "shares", "count")
    };
    totals.corrupt_shares = count("SELECT COUNT(*) FROM shares WHERE corrupt_reason IS NOT NULL")?;
    totals.leases = count("SELECT COUNT(*) FROM leases")?;
    totals.accounts = count("SELECT COUNT(*) FROM accounts")?;
    tx.commit()?;
    Ok(totals)
}

pub(crate) fn info(conn: &mut Connection) -> Result<DbInfo> {
    let tx = conn.transaction()?;
    let version: i64 = tx.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?;
    let created_at: i64 = tx.query_row(
        "SELECT created_at FROM leasedb_meta WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let gc_block = gc_block(&tx)?;
    tx.commit()?;
    Ok(DbInfo {
        schema_version: u32::try_from(version)
            .map_err(|_| invalid("schema_version", format!("bad version {version}")))?,
        created_at,
        gc_block,
    })
}

//! What a storage node tells its operator: accounts with their usage, totals, the accounting
//! crawler's progress and history, and garbage collection. One snapshot of the lease database
//! feeds every view of it, so the CLI (`lafs storage accounts`, `lafs storage crawler`), the
//! JSON pages and the HTML pages (`/storage`, `/storage/accounts` on the node's web port)
//! always agree.
//!
//! JSON field names are contracts (scripts and acceptance checks read them): accounts have
//! `id`, `name`, `pubkey`, `enabled`, `quota` (bytes or null), `used` (bytes), `shares`,
//! `leases`, `storage_indexes`, `created`, `last_seen` (Unix seconds or null); the crawler has
//! `cycles_completed` and `last_cycle` {`shares_seen`, `adopted`, `vanished`, `corrupt`, ...}.
//!
//! The pages are plain HTML and CSS (no script), escaped throughout: account names are chosen
//! by operators but public keys come from clients, and neither may inject markup.

use crate::config::ExpireConfig;
use lafs_storage::crawler::{PREFIXES, next_prefix};
use lafs_storage::leasedb::{
    AccountSummary, CrawlerCounters, CrawlerHistoryEntry, CrawlerState, ExpiryMode, GcBlock,
    LeaseDb, LeaseDbError, Totals,
};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Cycles of crawler history the pages show.
pub const PAGE_HISTORY: u32 = 10;

/// Everything about a storage node that does not come from its lease database.
#[derive(Clone, Debug)]
pub struct StorageInfo {
    /// `[node] nickname`.
    pub nickname: String,
    /// `v0-...`: the server id clients list in `servers.yaml`.
    pub server_id: String,
    /// `[storage] backend`.
    pub backend: String,
    /// `[storage] reserved_space`.
    pub reserved_space: u64,
    /// `[storage] readonly`.
    pub readonly: bool,
    /// `[storage] expire.*`.
    pub expire: ExpireConfig,
}

/// One consistent read of the lease database.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When it was taken (Unix seconds).
    pub now: i64,
    /// Every account with its usage, by id.
    pub accounts: Vec<AccountSummary>,
    /// Shares, bytes and leases by state.
    pub totals: Totals,
    /// The crawler's current position and counters.
    pub crawler: CrawlerState,
    /// Finished cycles, newest first.
    pub history: Vec<CrawlerHistoryEntry>,
    /// Set while garbage collection waits for a full crawl after a rebuild.
    pub gc_block: Option<GcBlock>,
    /// `crawl-now` requests not yet answered.
    pub pending_requests: usize,
}

impl Snapshot {
    /// Reads everything the views need, keeping `history` finished cycles.
    pub fn read(db: &mut dyn LeaseDb, history: u32, now: i64) -> Result<Self, LeaseDbError> {
        Ok(Self {
            now,
            accounts: db.list_accounts()?,
            totals: db.totals()?,
            crawler: db.crawler_state()?,
            history: db.crawler_history(history.max(1))?,
            gc_block: db.gc_block()?,
            pending_requests: db.open_crawl_requests()?.len(),
        })
    }

    /// Fraction of the current cycle done (0 between cycles).
    pub fn progress(&self) -> (u64, f64) {
        let done = u64::from(next_prefix(self.crawler.position).min(PREFIXES));
        (done, done as f64 / f64::from(PREFIXES))
    }

    /// Shares per second in the current cycle so far, once it has run a second.
    pub fn rate(&self) -> Option<f64> {
        match (self.crawler.cycle_start_time, self.crawler.updated_at) {
            (Some(s), Some(u)) if u > s => {
                Some(self.crawler.counters.shares_seen as f64 / (u - s) as f64)
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// One account as `lafs storage accounts list --json` and `/storage/accounts?t=json` show it.
pub fn account_json(s: &AccountSummary) -> Value {
    json!({
        "id": s.account.id.0,
        "name": s.account.name,
        "pubkey": s.account.pubkey,
        "enabled": s.account.enabled,
        "quota": s.account.quota,
        "used": s.usage.used_space,
        "shares": s.usage.leases,
        "leases": s.usage.leases,
        "storage_indexes": s.usage.storage_indexes,
        "created": s.account.creation_time,
        "last_seen": s.account.last_seen,
    })
}

/// A cycle's counters.
pub fn counters_json(c: &CrawlerCounters) -> Value {
    json!({
        "shares_seen": c.shares_seen,
        "bytes_seen": c.bytes_seen,
        "adopted": c.adopted,
        "vanished": c.vanished,
        "corrupt": c.corrupt,
        "leases_expired": c.leases_expired,
        "shares_collected": c.shares_collected,
        "bytes_collected": c.bytes_collected,
        "gc_dry_run": c.gc_dry_run,
    })
}

/// A finished cycle: its counters plus `cycle`, `start_time`, `end_time`.
pub fn entry_json(e: &CrawlerHistoryEntry) -> Value {
    let mut v = counters_json(&e.counters);
    if let Value::Object(m) = &mut v {
        m.insert("cycle".into(), json!(e.cycle));
        m.insert("start_time".into(), json!(e.start_time));
        m.insert("end_time".into(), json!(e.end_time));
    }
    v
}

/// The crawler's status (`lafs storage crawler --json`, `crawler` in `/storage?t=json`).
pub fn crawler_json(s: &Snapshot) -> Value {
    let (done, progress) = s.progress();
    json!({
        "cycles_completed": s.crawler.cycle,
        "current_cycle": {
            "cycle": s.crawler.cycle,
            "in_progress": s.crawler.in_cycle(),
            "prefixes_done": done,
            "prefixes": PREFIXES,
            "progress": progress,
            "start_time": s.crawler.cycle_start_time,
            "updated_at": s.crawler.updated_at,
            "shares_per_second": s.rate(),
            "counters": counters_json(&s.crawler.counters),
        },
        "last_cycle": s.history.first().map(entry_json),
        "history": s.history.iter().map(entry_json).collect::<Vec<_>>(),
        "gc_blocked": s.gc_block.map(|b| json!({"since": b.since, "until_cycle": b.until_cycle})),
        "pending_requests": s.pending_requests,
    })
}

/// Totals over the whole node.
pub fn totals_json(t: &Totals) -> Value {
    let state =
        |x: &lafs_storage::leasedb::StateTotals| json!({"shares": x.shares, "used": x.used_space});
    json!({
        "shares": t.coming.shares + t.stable.shares + t.going.shares,
        "used": t.used_space(),
        "leases": t.leases,
        "accounts": t.accounts,
        "corrupt_shares": t.corrupt_shares,
        "coming": state(&t.coming),
        "stable": state(&t.stable),
        "going": state(&t.going),
    })
}

/// `/storage/accounts?t=json`.
pub fn accounts_page_json(s: &Snapshot) -> Value {
    json!({
        "accounts": s.accounts.iter().map(account_json).collect::<Vec<_>>(),
        "totals": totals_json(&s.totals),
        "now": s.now,
    })
}

fn expiry_json(e: &ExpireConfig) -> Value {
    let (mode, param) = match e.mode {
        ExpiryMode::ExpirationTime => ("age", Value::Null),
        ExpiryMode::Age {
            override_lease_duration,
        } => (
            "age",
            json!({"override_lease_duration": override_lease_duration}),
        ),
        ExpiryMode::CutoffDate { cutoff } => ("cutoff-date", json!({"cutoff_date": cutoff})),
    };
    json!({
        "enabled": e.enabled,
        "mode": mode,
        "parameters": param,
        "immutable": e.immutable,
        "mutable": e.mutable,
        "dry_run": e.dry_run,
    })
}

/// A cycle's garbage collection, for the GC history.
fn gc_entry_json(e: &CrawlerHistoryEntry) -> Value {
    json!({
        "cycle": e.cycle,
        "end_time": e.end_time,
        "leases_expired": e.counters.leases_expired,
        "shares_collected": e.counters.shares_collected,
        "bytes_collected": e.counters.bytes_collected,
        "dry_run": e.counters.gc_dry_run,
    })
}

/// `/storage?t=json`: the node, totals, accounts, crawler and garbage collection.
/// `available_space` is `None` when the backend cannot tell (object stores).
pub fn status_json(info: &StorageInfo, available_space: Option<u64>, s: &Snapshot) -> Value {
    json!({
        "node": {
            "nickname": info.nickname,
            "server_id": info.server_id,
            "version": crate::client::VERSION,
            "backend": info.backend,
            "reserved_space": info.reserved_space,
            "readonly": info.readonly,
            "available_space": available_space,
        },
        "now": s.now,
        "totals": totals_json(&s.totals),
        "accounts": s.accounts.iter().map(account_json).collect::<Vec<_>>(),
        "crawler": crawler_json(s),
        "gc": {
            "expiry": expiry_json(&info.expire),
            "blocked": s.gc_block.map(|b| json!({"since": b.since, "until_cycle": b.until_cycle})),
            "history": s.history.iter().map(gc_entry_json).collect::<Vec<_>>(),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Text helpers

/// `YYYY-MM-DD HH:MM:SS UTC` (Hinnant's civil_from_days).
pub fn utc(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// One line of a cycle's findings, for people.
pub fn counters_text(c: &CrawlerCounters) -> String {
    let gc = if c.gc_dry_run {
        format!(
            "dry run: would expire {} leases and collect {} shares ({} bytes)",
            c.leases_expired, c.shares_collected, c.bytes_collected
        )
    } else {
        format!(
            "{} leases expired, {} shares collected ({} bytes)",
            c.leases_expired, c.shares_collected, c.bytes_collected
        )
    };
    format!(
        "{} shares seen ({} bytes), {} adopted, {} vanished, {} corrupt; {gc}",
        c.shares_seen, c.bytes_seen, c.adopted, c.vanished, c.corrupt
    )
}

/// Escapes text for HTML content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Decimal SI units, as Tahoe's pages show sizes (`12.3 MB`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ago(now: i64, t: Option<i64>) -> String {
    let Some(t) = t else {
        return "never".into();
    };
    let s = (now - t).max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A size cell: the human figure, and the exact byte count (what the JSON says) beside it.
fn size_cell(id: &str, n: u64) -> String {
    format!(
        "<td class=\"num\">{} <span class=\"exact\" id=\"{id}\" data-bytes=\"{n}\">({} bytes)</span></td>",
        human_size(n),
        grouped(n)
    )
}

const STYLE: &str = r#"<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 78em; }
table { border-collapse: collapse; margin-bottom: 1em; }
th, td { text-align: left; padding: .3em .8em; border-bottom: 1px solid #ddd; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; }
.exact { color: #777; font-size: .85em; }
tr.disabled td { color: #999; }
.bad { color: #a01818; }
.good { color: #176f2c; }
code { font-size: .9em; word-break: break-all; }
nav a { margin-right: 1em; }
</style>"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"60\">\n<title>{title}</title>\n{STYLE}</head>\n<body>\n<nav><a href=\"/storage\">Storage</a><a href=\"/storage/accounts\">Accounts</a><a href=\"/storage?t=json\">JSON</a></nav>\n{body}</body></html>\n"
    )
}

fn accounts_table(s: &Snapshot, out: &mut String) {
    out.push_str("<table id=\"accounts\">\n<tr><th class=\"num\">Id</th><th>Name</th><th>State</th><th class=\"num\">Used</th><th class=\"num\">Shares</th><th class=\"num\">Leases</th><th class=\"num\">Storage indexes</th><th class=\"num\">Quota</th><th>Last seen</th><th>Public key</th></tr>\n");
    for a in &s.accounts {
        let id = a.account.id.0;
        let (class, state) = if a.account.enabled {
            ("enabled", "enabled")
        } else {
            ("disabled", "disabled")
        };
        let quota = match a.account.quota {
            Some(q) => size_cell(&format!("account-{id}-quota"), q),
            None => format!("<td class=\"num\" id=\"account-{id}-quota\">none</td>"),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\" id=\"account-{id}\"><td class=\"num\">{id}</td><td>{name}</td><td>{state}</td>{used}<td class=\"num\" id=\"account-{id}-shares\">{shares}</td><td class=\"num\" id=\"account-{id}-leases\">{leases}</td><td class=\"num\">{sis}</td>{quota}<td>{seen}</td><td><code>{key}</code></td></tr>",
            name = html_escape(&a.account.name),
            used = size_cell(&format!("account-{id}-used"), a.usage.used_space),
            shares = a.usage.leases,
            leases = a.usage.leases,
            sis = a.usage.storage_indexes,
            seen = html_escape(&ago(s.now, a.account.last_seen)),
            key = html_escape(a.account.pubkey.as_deref().unwrap_or("(built-in)")),
        );
    }
    let t = &s.totals;
    let _ = writeln!(
        out,
        "<tr id=\"accounts-totals\"><th></th><th>All shares</th><th></th>{used}<th class=\"num\" id=\"accounts-total-shares\">{shares}</th><th class=\"num\" id=\"accounts-total-leases\">{leases}</th><th></th><th></th><th></th><th></th></tr>\n</table>",
        used = size_cell("accounts-total-used", t.used_space()),
        shares = t.coming.shares + t.stable.shares + t.going.shares,
        leases = t.leases,
    );
    out.push_str("<p>An account's usage is the sum of the sizes of the shares it holds a lease on, each counted in full; a share leased by two accounts counts for both, and shares with no lease (kept until garbage collection) for none, so the total can differ from the sum of the rows.</p>\n");
}

fn crawler_section(s: &Snapshot, out: &mut String) {
    let (done, progress) = s.progress();
    out.push_str("<h2>Accounting crawler</h2>\n<ul>\n");
    let _ = writeln!(
        out,
        "<li>Cycles completed: <strong id=\"crawler-cycles\">{}</strong></li>",
        s.crawler.cycle
    );
    if s.crawler.in_cycle() {
        let _ = writeln!(
            out,
            "<li>Cycle {} under way: {:.1}% ({done} of {PREFIXES} prefixes), started {}{}</li>",
            s.crawler.cycle,
            progress * 100.0,
            s.crawler
                .cycle_start_time
                .map(utc)
                .unwrap_or_else(|| "?".into()),
            s.rate()
                .map(|r| format!(", {r:.0} shares/s"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "<li>So far: {}</li>",
            html_escape(&counters_text(&s.crawler.counters))
        );
    } else {
        out.push_str("<li>No cycle under way.</li>\n");
    }
    if s.pending_requests > 0 {
        let _ = writeln!(
            out,
            "<li>Full crawls requested and not yet started: {}</li>",
            s.pending_requests
        );
    }
    out.push_str("</ul>\n");
    if s.history.is_empty() {
        out.push_str("<p>No cycle has completed yet.</p>\n");
        return;
    }
    out.push_str("<table id=\"crawler-history\">\n<tr><th class=\"num\">Cycle</th><th>Finished</th><th class=\"num\">Seconds</th><th class=\"num\">Shares seen</th><th class=\"num\">Adopted</th><th class=\"num\">Vanished</th><th class=\"num\">Corrupt</th></tr>\n");
    for h in &s.history {
        let c = &h.counters;
        let corrupt_class = if c.corrupt > 0 { " bad" } else { "" };
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num{corrupt_class}\">{}</td></tr>",
            h.cycle,
            utc(h.end_time),
            h.end_time - h.start_time,
            c.shares_seen,
            c.adopted,
            c.vanished,
            c.corrupt
        );
    }
    out.push_str("</table>\n");
}

fn gc_section(info: &StorageInfo, s: &Snapshot, out: &mut String) {
    out.push_str("<h2>Lease expiry and garbage collection</h2>\n<ul>\n");
    let e = &info.expire;
    if e.enabled {
        let mode = match e.mode {
            ExpiryMode::ExpirationTime => "leases end at their own expiration time".to_string(),
            ExpiryMode::Age {
                override_lease_duration,
            } => format!("leases end {override_lease_duration} s after their last renewal"),
            ExpiryMode::CutoffDate { cutoff } => {
                format!("leases not renewed since {} end", utc(cutoff))
            }
        };
        let kinds = match (e.immutable, e.mutable) {
            (true, true) => "immutable and mutable shares",
            (true, false) => "immutable shares only",
            (false, true) => "mutable shares only",
            (false, false) => "no shares",
        };
        let _ = writeln!(
            out,
            "<li>Expiry <strong class=\"good\">enabled</strong>{}: {mode}; applies to {kinds}.</li>",
            if e.dry_run {
                " as a <strong>dry run</strong> (reports, removes nothing)"
            } else {
                ""
            }
        );
    } else {
        out.push_str("<li>Expiry <strong>disabled</strong> (<code>[storage] expire.enabled</code>): leases never end and no share is collected.</li>\n");
    }
    if let Some(b) = s.gc_block {
        let _ = writeln!(
            out,
            "<li class=\"bad\">Collection blocked until crawler cycle {} completes: the lease database was created or rebuilt at {}.</li>",
            b.until_cycle,
            utc(b.since)
        );
    }
    out.push_str("</ul>\n");
    if s.history.is_empty() {
        return;
    }
    out.push_str("<table id=\"gc-history\">\n<tr><th class=\"num\">Cycle</th><th>Finished</th><th class=\"num\">Leases expired</th><th class=\"num\">Shares collected</th><th class=\"num\">Bytes collected</th><th></th></tr>\n");
    for h in &s.history {
        let c = &h.counters;
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            h.cycle,
            utc(h.end_time),
            c.leases_expired,
            c.shares_collected,
            grouped(c.bytes_collected),
            if c.gc_dry_run {
                "dry run: would have"
            } else {
                ""
            }
        );
    }
    out.push_str("</table>\n");
}

/// `/storage`: the node, totals, accounts, crawler and garbage collection.
pub fn status_html(info: &StorageInfo, available_space: Option<u64>, s: &Snapshot) -> String {
    let mut b = String::new();
    let nick = html_escape(&info.nickname);
    let _ = writeln!(b, "<h1>lafs storage node {nick}</h1>");
    let _ = writeln!(
        b,
        "<p>{} &middot; server id <code>{}</code> &middot; backend <code>{}</code> &middot; as of {}</p>",
        crate::client::VERSION,
        html_escape(&info.server_id),
        html_escape(&info.backend),
        utc(s.now)
    );
    let t = &s.totals;
    b.push_str("<h2>Space</h2>\n<table id=\"space\">\n");
    let _ = writeln!(
        b,
        "<tr><th>Shares stored</th><td class=\"num\" id=\"stored-shares\">{}</td></tr>",
        t.stable.shares
    );
    let _ = writeln!(
        b,
        "<tr><th>Used by stored shares</th>{}</tr>",
        size_cell("stored-used", t.stable.used_space)
    );
    let _ = writeln!(
        b,
        "<tr><th>Shares being written</th><td class=\"num\">{} ({})</td></tr>",
        t.coming.shares,
        human_size(t.coming.used_space)
    );
    if t.going.shares > 0 {
        let _ = writeln!(
            b,
            "<tr><th>Shares being deleted</th><td class=\"num\">{} ({})</td></tr>",
            t.going.shares,
            human_size(t.going.used_space)
        );
    }
    let _ = writeln!(
        b,
        "<tr><th>Corrupt shares</th><td class=\"num{}\">{}</td></tr>",
        if t.corrupt_shares > 0 { " bad" } else { "" },
        t.corrupt_shares
    );
    let _ = writeln!(
        b,
        "<tr><th>Leases</th><td class=\"num\" id=\"total-leases\">{}</td></tr>",
        t.leases
    );
    let _ = writeln!(
        b,
        "<tr><th>Accounts</th><td class=\"num\">{}</td></tr>",
        t.accounts
    );
    let available = match available_space {
        Some(n) => size_cell("available-space", n),
        None => "<td class=\"num\" id=\"available-space\">unknown (object store)</td>".into(),
    };
    let _ = writeln!(b, "<tr><th>Available to clients</th>{available}</tr>");
    let _ = writeln!(
        b,
        "<tr><th>Reserved space</th><td class=\"num\">{}</td></tr>",
        human_size(info.reserved_space)
    );
    if info.readonly {
        b.push_str(
            "<tr><th>Mode</th><td class=\"bad\">read-only: no new shares are accepted</td></tr>\n",
        );
    }
    b.push_str("</table>\n<h2>Accounts</h2>\n");
    accounts_table(s, &mut b);
    crawler_section(s, &mut b);
    gc_section(info, s, &mut b);
    page(&format!("lafs storage {nick}"), &b)
}

/// `/storage/accounts`: the accounts table alone.
pub fn accounts_html(info: &StorageInfo, s: &Snapshot) -> String {
    let mut b = String::new();
    let nick = html_escape(&info.nickname);
    let _ = writeln!(b, "<h1>Accounts of storage node {nick}</h1>");
    let _ = writeln!(
        b,
        "<p>As of {}. Operators change them with <code>lafs storage accounts</code>.</p>",
        utc(s.now)
    );
    accounts_table(s, &mut b);
    page(&format!("lafs storage {nick}: accounts"), &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lafs_storage::leasedb::{Account, AccountId, AccountUsage};

    #[test]
    fn utc_formats() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_237_334_400 + 3661), "2009-03-18 01:01:01 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_234_567), "1.2 MB");
        assert_eq!(ago(100, Some(40)), "1 min ago");
        assert_eq!(ago(100, None), "never");
    }

    fn snapshot(name: &str, pubkey: &str) -> Snapshot {
        let account = Account {
            id: AccountId(2),
            pubkey: Some(pubkey.into()),
            name: name.into(),
            creation_time: 5,
            enabled: false,
            quota: Some(1_000_000),
            last_seen: Some(90),
        };
        Snapshot {
            now: 100,
            accounts: vec![AccountSummary {
                account,
                usage: AccountUsage {
                    used_space: 123_456,
                    leases: 7,
                    storage_indexes: 3,
                },
            }],
            totals: Totals::default(),
            crawler: CrawlerState::default(),
            history: Vec::new(),
            gc_block: None,
            pending_requests: 0,
        }
    }

    fn info() -> StorageInfo {
        StorageInfo {
            nickname: "<b>n</b>".into(),
            server_id: "v0-x".into(),
            backend: "disk".into(),
            reserved_space: 0,
            readonly: false,
            expire: ExpireConfig {
                enabled: false,
                mode: ExpiryMode::ExpirationTime,
                immutable: true,
                mutable: true,
                dry_run: false,
            },
        }
    }

    #[test]
    fn pages_escape_what_operators_and_clients_chose() {
        let s = snapshot("<script>alert(1)</script>", "pub-\"><img src=x>");
        for html in [
            status_html(&info(), Some(1), &s),
            accounts_html(&info(), &s),
        ] {
            assert!(!html.contains("<script>alert"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("<b>n</b>"), "{html}");
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            assert!(html.contains("id=\"account-2-used\" data-bytes=\"123456\">(123,456 bytes)"));
            assert!(html.contains("<td>disabled</td>"));
            assert!(html.contains("10 s ago"));
        }
        let j = accounts_page_json(&s);
        assert_eq!(j["accounts"][0]["used"], 123_456);
        assert_eq!(j["accounts"][0]["enabled"], false);
        assert_eq!(j["accounts"][0]["quota"], 1_000_000);
        assert_eq!(j["accounts"][0]["last_seen"], 90);
    }
}

//! `lafs storage crawler` and `lafs storage crawl-now`: watching and driving the accounting
//! crawler of a storage node, whether or not its server is running.
//!
//! Both talk to the server through its lease database (`DIR/storage/leasedb.sqlite`) rather
//! than a control port: SQLite's WAL mode lets this second process read while the server
//! writes; the crawler saves its progress and history there after every step, and polls a
//! `crawler_requests` table for `crawl-now`. Nothing new listens on the network, nothing needs
//! authenticating beyond the file permissions of the node directory, and a request made while
//! the server is stopped is answered when it starts.

use crate::error::{CliError, CliResult};
use clap::Args;
use lafs_storage::crawler::{PREFIXES, next_prefix};
use lafs_storage::leasedb::{
    CrawlerCounters, CrawlerHistoryEntry, LeaseDb, LeaseDbError, SqliteLeaseDb,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct CrawlerArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Cycles of history to show.
    #[arg(long, default_value_t = 5, value_name = "N")]
    history: u32,
}

#[derive(Debug, Args)]
pub struct CrawlNowArgs {
    /// Wait until the requested cycle has finished, then print what it found.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds (exit 1; the request stays queued).
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    timeout: Option<u64>,
    /// With --wait: print the finished cycle as JSON.
    #[arg(long, requires = "wait")]
    json: bool,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("storage").join("leasedb.sqlite")
}

pub fn open(dir: &Path) -> CliResult<SqliteLeaseDb> {
    let path = db_path(dir);
    SqliteLeaseDb::open_admin(&path).map_err(|e| match e {
        LeaseDbError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            CliError::usage(format!(
                "{} has no lease database: is it a storage node that has run?",
                dir.display()
            ))
        }
        other => CliError::failed(other.to_string()),
    })
}

fn db_err(e: LeaseDbError) -> CliError {
    CliError::failed(e.to_string())
}

/// `YYYY-MM-DD HH:MM:SS UTC` (Hinnant's civil_from_days).
fn utc(t: i64) -> String {
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

fn counters_json(c: &CrawlerCounters) -> Value {
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

fn entry_json(e: &CrawlerHistoryEntry) -> Value {
    let mut v = counters_json(&e.counters);
    if let Value::Object(m) = &mut v {
        m.insert("cycle".into(), json!(e.cycle));
        m.insert("start_time".into(), json!(e.start_time));
        m.insert("end_time".into(), json!(e.end_time));
    }
    v
}

fn counters_text(c: &CrawlerCounters) -> String {
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

pub fn run_crawler(dir: &Path, a: &CrawlerArgs) -> CliResult {
    let mut db = open(dir)?;
    let state = db.crawler_state().map_err(db_err)?;
    let history = db.crawler_history(a.history.max(1)).map_err(db_err)?;
    let block = db.gc_block().map_err(db_err)?;
    let pending = db.open_crawl_requests().map_err(db_err)?.len();
    let done = u64::from(next_prefix(state.position).min(PREFIXES));
    let progress = done as f64 / f64::from(PREFIXES);
    let elapsed = match (state.cycle_start_time, state.updated_at) {
        (Some(s), Some(u)) if u > s => Some(u - s),
        _ => None,
    };
    let rate = elapsed.map(|e| state.counters.shares_seen as f64 / e as f64);
    if a.json {
        let v = json!({
            "lease_database": db_path(dir).display().to_string(),
            "cycles_completed": state.cycle,
            "current_cycle": {
                "cycle": state.cycle,
                "in_progress": state.in_cycle(),
                "prefixes_done": done,
                "prefixes": PREFIXES,
                "progress": progress,
                "start_time": state.cycle_start_time,
                "updated_at": state.updated_at,
                "shares_per_second": rate,
                "counters": counters_json(&state.counters),
            },
            "last_cycle": history.first().map(entry_json),
            "history": history.iter().map(entry_json).collect::<Vec<_>>(),
            "gc_blocked": block.map(|b| json!({"since": b.since, "until_cycle": b.until_cycle})),
            "pending_requests": pending,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("Accounting crawler of {}", dir.display());
    println!("  cycles completed: {}", state.cycle);
    if state.in_cycle() {
        let since = state.cycle_start_time.map(utc).unwrap_or_default();
        println!(
            "  cycle {}: {:.1}% done ({done}/{PREFIXES} prefixes), started {since}",
            state.cycle,
            progress * 100.0
        );
        println!("    so far: {}", counters_text(&state.counters));
        if let Some(r) = rate {
            println!("    rate: {r:.0} shares/s");
        }
    } else {
        println!("  no cycle under way");
    }
    match block {
        Some(b) => println!(
            "  garbage collection: blocked until cycle {} completes (lease database created {})",
            b.until_cycle,
            utc(b.since)
        ),
        None => println!("  garbage collection: allowed (when [storage] expire.enabled)"),
    }
    if pending > 0 {
        println!("  crawl-now requests waiting: {pending}");
    }
    match history.first() {
        Some(last) => {
            println!(
                "Last cycle ({}): {} to {} ({} s)",
                last.cycle,
                utc(last.start_time),
                utc(last.end_time),
                last.end_time - last.start_time
            );
            println!("  {}", counters_text(&last.counters));
        }
        None => println!("No cycle has completed yet."),
    }
    if history.len() > 1 {
        println!("Earlier cycles:");
        for h in &history[1..] {
            println!(
                "  {} ({}): {}",
                h.cycle,
                utc(h.end_time),
                counters_text(&h.counters)
            );
        }
    }
    Ok(())
}

pub fn run_crawl_now(dir: &Path, a: &CrawlNowArgs) -> CliResult {
    let mut db = open(dir)?;
    let id = db.request_crawl(now()).map_err(db_err)?;
    if !a.wait {
        println!(
            "Requested a full crawl (request {id}); the running storage server starts it within seconds, unthrottled (a stopped one when it starts)."
        );
        return Ok(());
    }
    let started = Instant::now();
    let limit = a.timeout.map(Duration::from_secs);
    loop {
        let r = db
            .get_crawl_request(id)
            .map_err(db_err)?
            .ok_or_else(|| CliError::failed(format!("crawl request {id} disappeared")))?;
        if r.done_at.is_some() {
            let cycle = r.started_cycle.unwrap_or_default();
            let entry = db
                .crawler_history(64)
                .map_err(db_err)?
                .into_iter()
                .find(|h| h.cycle == cycle);
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entry.as_ref().map(entry_json))
                        .unwrap_or_default()
                );
            } else if let Some(e) = entry {
                println!(
                    "Crawl cycle {} finished: {}",
                    e.cycle,
                    counters_text(&e.counters)
                );
            } else {
                println!("Crawl cycle {cycle} finished.");
            }
            return Ok(());
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            return Err(CliError::failed(format!(
                "the crawl (request {id}) has not finished yet; is the storage server running? The request stays queued."
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_formats() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_237_334_400 + 3661), "2009-03-18 01:01:01 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}

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
use lafs_node::storage_status::{Snapshot, counters_text, crawler_json, entry_json, utc};
use lafs_storage::crawler::PREFIXES;
use lafs_storage::leasedb::{LeaseDb, LeaseDbError, SqliteLeaseDb};
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

pub fn run_crawler(dir: &Path, a: &CrawlerArgs) -> CliResult {
    let mut db = open(dir)?;
    let snap = Snapshot::read(&mut db, a.history.max(1), now()).map_err(db_err)?;
    let state = &snap.crawler;
    let history = &snap.history;
    let block = snap.gc_block;
    let pending = snap.pending_requests;
    let (done, progress) = snap.progress();
    let rate = snap.rate();
    if a.json {
        let mut v = crawler_json(&snap);
        if let Value::Object(m) = &mut v {
            m.insert(
                "lease_database".into(),
                json!(db_path(dir).display().to_string()),
            );
        }
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

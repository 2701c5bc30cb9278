//! `lafs storage accounts ...`: the operator's view and control of a storage node's accounts,
//! through its lease database (like `lafs storage crawler`, it works while the server runs;
//! the server reads an account's `enabled` flag and quota at every allocation, write and lease,
//! so changes apply to the next request).
//!
//! Accounts are named by number, by `anonymous` / `starter`, or by public key.

use crate::error::{CliError, CliResult};
use crate::size::parse_size;
use clap::{Args, Subcommand};
use lafs_node::storage_status::account_json;
use lafs_storage::leasedb::{AccountId, AccountSummary, LeaseDb, LeaseDbError, SqliteLeaseDb};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Args)]
pub struct AccountsArgs {
    #[command(subcommand)]
    command: AccountsCommand,
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Every account with its usage (the anonymous and starter accounts included).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One account.
    Show {
        /// Account number, `anonymous`, `starter`, or public key.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Creates an account for a client's public key.
    Add {
        /// The client's public key (as `lafs account key` prints it).
        #[arg(long)]
        pubkey: String,
        /// A name for operators.
        #[arg(long)]
        name: Option<String>,
        /// Quota (5GB, 100MiB, ...).
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
    },
    /// Lets an account allocate, write and add leases again.
    Enable {
        /// Account number, `anonymous`, `starter`, or public key.
        id: String,
    },
    /// Refuses the account's allocations, writes and leases (reads stay allowed).
    Disable {
        /// Account number, `anonymous`, `starter`, or public key.
        id: String,
    },
    /// Sets an account's quota (`none` removes it).
    SetQuota {
        /// Account number, `anonymous`, `starter`, or public key.
        id: String,
        /// 5GB, 100MiB, ... or `none`.
        size: String,
    },
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn db_err(e: LeaseDbError) -> CliError {
    match e {
        LeaseDbError::NoSuchAccount(id) => CliError::usage(format!("no account {id}")),
        LeaseDbError::DuplicatePubkey(id) => {
            CliError::usage(format!("that public key already has account {id}"))
        }
        other => CliError::failed(other.to_string()),
    }
}

fn resolve(db: &mut SqliteLeaseDb, id: &str) -> CliResult<AccountId> {
    match id {
        "anonymous" => return Ok(AccountId::ANONYMOUS),
        "starter" => return Ok(AccountId::STARTER),
        _ => {}
    }
    if let Ok(n) = id.parse::<i64>() {
        return match db.get_account(AccountId(n)).map_err(db_err)? {
            Some(a) => Ok(a.id),
            None => Err(CliError::usage(format!("no account {n}"))),
        };
    }
    match db.get_account_by_pubkey(id).map_err(db_err)? {
        Some(a) => Ok(a.id),
        None => Err(CliError::usage("no account has that public key")),
    }
}

fn summary_line(s: &AccountSummary) -> String {
    format!(
        "{:>4}  {:<16} {:<8} {:>14} {:>14} {:>8}",
        s.account.id.0,
        s.account.name,
        if s.account.enabled {
            "enabled"
        } else {
            "disabled"
        },
        s.usage.used_space,
        s.account
            .quota
            .map_or_else(|| "-".to_string(), |q| q.to_string()),
        s.usage.leases,
    )
}

fn find(db: &mut SqliteLeaseDb, id: AccountId) -> CliResult<AccountSummary> {
    db.list_accounts()
        .map_err(db_err)?
        .into_iter()
        .find(|s| s.account.id == id)
        .ok_or_else(|| CliError::usage(format!("no account {id}")))
}

pub fn run(dir: &Path, a: &AccountsArgs) -> CliResult {
    let mut db = crate::storage_admin::open(dir)?;
    match &a.command {
        AccountsCommand::List { json } => {
            let all = db.list_accounts().map_err(db_err)?;
            if *json {
                let v: Vec<Value> = all.iter().map(account_json).collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!(
                    "{:>4}  {:<16} {:<8} {:>14} {:>14} {:>8}",
                    "id", "name", "state", "used (bytes)", "quota", "shares"
                );
                for s in &all {
                    println!("{}", summary_line(s));
                }
            }
        }
        AccountsCommand::Show { id, json } => {
            let id = resolve(&mut db, id)?;
            let s = find(&mut db, id)?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&account_json(&s)).unwrap_or_default()
                );
            } else {
                println!("account {}: {}", s.account.id, s.account.name);
                println!(
                    "  public key: {}",
                    s.account.pubkey.as_deref().unwrap_or("(built-in)")
                );
                println!(
                    "  {}",
                    if s.account.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    }
                );
                println!(
                    "  used: {} bytes in {} shares of {} storage indexes",
                    s.usage.used_space, s.usage.leases, s.usage.storage_indexes
                );
                match s.account.quota {
                    Some(q) => println!("  quota: {q} bytes"),
                    None => println!("  quota: none"),
                }
            }
        }
        AccountsCommand::Add {
            pubkey,
            name,
            quota,
        } => {
            let key = pubkey.trim();
            if key.is_empty() || key.len() > 200 || key.chars().any(char::is_whitespace) {
                return Err(CliError::usage(
                    "--pubkey: expected a public key as `lafs account key` prints it",
                ));
            }
            let quota = quota
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(CliError::usage)?;
            let name = name.clone().unwrap_or_else(|| "account".to_string());
            let id = db.create_account(Some(key), &name, now()).map_err(db_err)?;
            if quota.is_some() {
                db.set_account_quota(id, quota).map_err(db_err)?;
            }
            println!("{id}");
        }
        AccountsCommand::Enable { id } => {
            let id = resolve(&mut db, id)?;
            db.set_account_enabled(id, true).map_err(db_err)?;
        }
        AccountsCommand::Disable { id } => {
            let id = resolve(&mut db, id)?;
            db.set_account_enabled(id, false).map_err(db_err)?;
        }
        AccountsCommand::SetQuota { id, size } => {
            let id = resolve(&mut db, id)?;
            let quota = if size.eq_ignore_ascii_case("none") {
                None
            } else {
                Some(parse_size(size).map_err(CliError::usage)?)
            };
            db.set_account_quota(id, quota).map_err(db_err)?;
        }
    }
    Ok(())
}

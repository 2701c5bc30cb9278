//! `lafs account key|usage`: the client's own account on the grid's lafs servers.
//!
//! `key` prints the public key a client node presents (made on first use), in the form
//! operators pass to `lafs storage accounts add --pubkey`. `usage` asks every server of the
//! node's `servers.yaml`, in parallel, what the account uses there (the lafs extension
//! endpoint `GET /storage/lafs/v1/account/usage`) and sums the answers. Stock servers do not
//! report usage; they are listed as such, as are servers that could not be reached. The
//! command needs the node directory, not a running node.

use crate::error::{CliError, CliResult};
use clap::{Args, Subcommand};
use lafs_client::Grid;
use lafs_node::account::AccountKey;
use lafs_node::config::NodeConfig;
use serde_json::{Value, json};
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Print this client's account key (`pub-v0-...`), creating it if the node has none yet.
    Key,
    /// Show what this client's account uses on each server of the grid, and the total.
    Usage(UsageArgs),
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Print JSON: `{"account", "servers": [{"id", "name", "status", "used", "shares",
    /// "quota"}], "total": {"used", "shares"}}`.
    #[arg(long)]
    json: bool,
}

pub fn run(dir: &Path, cmd: &AccountCommand) -> CliResult {
    match cmd {
        AccountCommand::Key => key(dir),
        AccountCommand::Usage(args) => usage(dir, args),
    }
}

fn node_config(dir: &Path) -> CliResult<NodeConfig> {
    if !NodeConfig::path(dir).is_file() {
        return Err(CliError::failed(format!(
            "{} is not a node directory (no tahoe.cfg); make one with `lafs init`",
            dir.display()
        )));
    }
    NodeConfig::load(dir).map_err(|e| CliError::failed(e.to_string()))
}

fn key(dir: &Path) -> CliResult {
    node_config(dir)?;
    let key = AccountKey::load_or_create(dir).map_err(|e| CliError::failed(e.to_string()))?;
    println!("{}", key.public_id());
    Ok(())
}

fn usage(dir: &Path, args: &UsageArgs) -> CliResult {
    let cfg = node_config(dir)?;
    let anonymous = cfg.ini.get("client", "account").map(str::trim) == Some("anonymous");
    let opts =
        lafs_node::client::client_options(&cfg).map_err(|e| CliError::failed(e.to_string()))?;
    let account = if anonymous {
        "anonymous".to_owned()
    } else {
        AccountKey::load_or_create(dir)
            .map_err(|e| CliError::failed(e.to_string()))?
            .public_id()
    };
    let grid = Grid::load(dir, &opts).map_err(|e| {
        CliError::failed(format!(
            "{}: {e}",
            dir.join("private").join("servers.yaml").display()
        ))
    })?;
    if grid.servers().is_empty() {
        return Err(CliError::failed(format!(
            "no storage servers in {}",
            dir.join("private").join("servers.yaml").display()
        )));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    let answers = rt.block_on(async {
        let asks = grid.servers().iter().map(|s| {
            let s = s.clone();
            async move { (s.clone(), s.client().account_usage().await) }
        });
        futures_join_all(asks).await
    });
    let mut rows = Vec::new();
    let (mut used, mut shares, mut answered) = (0u64, 0u64, 0usize);
    for (server, answer) in answers {
        let name = server.nickname().to_owned();
        let row = match answer {
            Ok(Some(u)) => {
                answered += 1;
                used += u.used_bytes;
                shares += u.share_count;
                json!({"id": server.id(), "name": name, "status": "ok", "used": u.used_bytes,
                       "shares": u.share_count, "quota": u.quota_bytes})
            }
            Ok(None) => json!({"id": server.id(), "name": name, "status": "does not report usage",
                               "used": null, "shares": null, "quota": null}),
            Err(e) => json!({"id": server.id(), "name": name,
                             "status": format!("unreachable: {}", e.kind()),
                             "used": null, "shares": null, "quota": null}),
        };
        rows.push(row);
    }
    let out = json!({"account": account, "servers": rows,
                     "total": {"used": used, "shares": shares}});
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_table(&out);
    }
    if answered == 0 {
        return Err(CliError::failed("no server reported this account's usage"));
    }
    Ok(())
}

async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn print_table(out: &Value) {
    println!("account {}", out["account"].as_str().unwrap_or(""));
    println!(
        "{:<24} {:>14} {:>8} {:>14}  status",
        "server", "used", "shares", "quota"
    );
    for r in out["servers"].as_array().into_iter().flatten() {
        let num = |v: &Value| v.as_u64().map_or("-".to_owned(), |n| n.to_string());
        let quota = if r["status"] == "ok" && r["quota"].is_null() {
            "none".to_owned()
        } else {
            num(&r["quota"])
        };
        println!(
            "{:<24} {:>14} {:>8} {:>14}  {}",
            r["name"].as_str().unwrap_or(""),
            num(&r["used"]),
            num(&r["shares"]),
            quota,
            r["status"].as_str().unwrap_or("")
        );
    }
    println!(
        "{:<24} {:>14} {:>8}",
        "total",
        out["total"]["used"].as_u64().unwrap_or(0),
        out["total"]["shares"].as_u64().unwrap_or(0)
    );
}

//! `lafs init`, `lafs run`, `lafs storage ...`: creating and running nodes.

use crate::error::{CliError, CliResult};
use clap::{Args, Subcommand};
use lafs_node::config::NodeConfig;
use lafs_node::node::{InitOptions, NodeError, announcement_yaml, ensure_identity, init};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Run a storage server in this node.
    #[arg(long)]
    storage: bool,
    /// Run a client in this node (the default unless --storage is given).
    #[arg(long)]
    client: bool,
    /// Address the storage server listens on [default: 127.0.0.1 and a free port].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
    /// Address clients connect to, if not the listen address.
    #[arg(long, value_name = "HOST:PORT")]
    location: Option<String>,
    /// Nickname shown to clients and on status pages.
    #[arg(long, value_name = "NAME")]
    nickname: Option<String>,
    /// Serve the web server at this address: the client's web API, and a storage node's
    /// status pages (/storage, /storage/accounts) [default for client nodes:
    /// 127.0.0.1:3456; storage-only nodes serve none].
    #[arg(long, value_name = "HOST:PORT")]
    web: Option<SocketAddr>,
    /// Shares needed to read a file (k).
    #[arg(long, value_name = "K")]
    shares_needed: Option<u16>,
    /// Servers that must hold shares for an upload to succeed.
    #[arg(long, value_name = "H")]
    shares_happy: Option<u16>,
    /// Shares produced per file (N).
    #[arg(long, value_name = "N")]
    shares_total: Option<u16>,
    /// The node directory to create.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The node directory [default: --node-directory].
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Print the servers.yaml entry that lets a client (stock Tahoe or lafs) use this server.
    Announcement {
        /// The storage node's directory [default: --node-directory].
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Show the accounting crawler's progress, rate and last cycles' findings (works while
    /// the server runs).
    Crawler(crate::storage_admin::CrawlerArgs),
    /// Ask the running server for a full crawl cycle now, unthrottled (after a restore).
    CrawlNow(crate::storage_admin::CrawlNowArgs),
    /// List and control the accounts of this storage node (works while the server runs).
    Accounts(crate::accounts_cmd::AccountsArgs),
}

pub fn node_error(e: NodeError) -> CliError {
    match e {
        NodeError::Usage(_) | NodeError::Exists(_) | NodeError::Config(_) => {
            CliError::usage(e.to_string())
        }
        _ => CliError::failed(e.to_string()),
    }
}

pub fn default_dir(node_dir: Option<&Path>) -> PathBuf {
    node_dir.map(Path::to_path_buf).unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".lafs"))
            .unwrap_or_else(|| PathBuf::from(".lafs"))
    })
}

pub fn run_init(a: &InitArgs) -> CliResult {
    let shares = match (a.shares_needed, a.shares_happy, a.shares_total) {
        (None, None, None) => None,
        (k, h, n) => {
            let (k, h, n) = (k.unwrap_or(3), h.unwrap_or(7), n.unwrap_or(10));
            if k == 0 || k > n || n > 256 || h == 0 || h > n {
                return Err(CliError::usage(format!(
                    "need 1 <= shares-needed ({k}) <= shares-total ({n}) <= 256 and 1 <= shares-happy ({h}) <= shares-total"
                )));
            }
            Some((k, h, n))
        }
    };
    let opts = InitOptions {
        storage: a.storage,
        client: a.client || !a.storage,
        listen: a.listen,
        location: a.location.clone(),
        nickname: a.nickname.clone(),
        web: a.web,
        shares,
    };
    init(&a.dir, &opts).map_err(node_error)?;
    let kind = match (opts.client, opts.storage) {
        (true, true) => "client and storage node",
        (false, true) => "storage node",
        _ => "client node",
    };
    eprintln!("created a {kind} in {}", a.dir.display());
    if opts.client {
        eprintln!(
            "list its storage servers in {}, then start it with: lafs run {}",
            a.dir.join("private").join("servers.yaml").display(),
            a.dir.display()
        );
    }
    if opts.storage {
        eprintln!(
            "start it with: lafs run {0}\nclients use it through the entry printed by: lafs storage announcement {0}",
            a.dir.display()
        );
    }
    Ok(())
}

pub fn load(dir: &Path) -> CliResult<NodeConfig> {
    if !NodeConfig::path(dir).exists() {
        return Err(CliError::usage(format!(
            "{} is not a node directory (no tahoe.cfg); create one with lafs init",
            dir.display()
        )));
    }
    NodeConfig::load(dir).map_err(|e| CliError::usage(e.to_string()))
}

pub fn run_announcement(dir: &Path) -> CliResult {
    let cfg = load(dir)?;
    if !cfg.storage.enabled {
        return Err(CliError::usage(format!(
            "{} does not run a storage server",
            dir.display()
        )));
    }
    let location = cfg
        .tub_location
        .first()
        .cloned()
        .ok_or_else(|| CliError::usage("tahoe.cfg has no [node] tub.location"))?;
    let id = ensure_identity(dir, &location).map_err(node_error)?;
    print!("{}", announcement_yaml(&cfg, &id).map_err(node_error)?);
    Ok(())
}

pub fn init_logging(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LAFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))
}

/// How long requests in flight may take to finish after SIGINT/SIGTERM.
pub const GRACE: Duration = Duration::from_secs(10);

pub fn run_node(dir: &Path) -> CliResult {
    let cfg = load(dir)?;
    let runs_client = cfg.web_port.is_some() && cfg.client_enabled;
    if !cfg.storage.enabled && !runs_client {
        return Err(CliError::usage(format!(
            "{} runs neither a storage server ([storage] enabled) nor a client ([node] web.port)",
            dir.display()
        )));
    }
    init_logging("info");
    let rt = runtime()?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let node = lafs_node::run::start_node(&cfg, rx, GRACE)
            .await
            .map_err(node_error)?;
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("lafs: shutting down (requests in flight get up to 10 s)");
            let _ = tx.send(true);
        });
        if let Some(addr) = node.storage_addr {
            eprintln!(
                "lafs: storage server for {} listening on {addr}",
                dir.display()
            );
        }
        if let Some(url) = &node.web_url {
            if node.client {
                eprintln!("lafs: client node for {} web API at {url}", dir.display());
            }
            if node.storage_addr.is_some() {
                eprintln!("lafs: storage status pages at {url}storage");
            }
        }
        node.wait().await.map_err(node_error)
    })
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

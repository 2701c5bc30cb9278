//! `lafs local-grid`: a whole grid on loopback in one process, for trying lafs and for tests.
//!
//! The first run creates `DIR` (default `~/.lafs-local-grid`, outside any checkout so a
//! `cargo run` leaves the work tree clean) with `storage-01` .. `storage-NN`, each exactly
//! what `lafs init --storage` makes (free loopback ports chosen then and kept), and `client`,
//! what `lafs init` makes, whose `servers.yaml` lists every server as `lafs storage
//! announcement` prints it. The client is created last: a directory with `client/tahoe.cfg`
//! is complete, and an interrupted creation resumes where it stopped. Later runs reuse the
//! directories as they are (`--servers` and `--web` only matter the first time).
//!
//! Every node then runs as tasks on one runtime: the storage servers first (their sockets are
//! bound before the client starts), then the client's web API. SIGINT/SIGTERM stop them all,
//! letting requests in flight finish for a few seconds.

use crate::error::{CliError, CliResult};
use crate::node_cmd::{GRACE, init_logging, load, node_error, runtime, wait_for_signal};
use clap::Args;
use lafs_node::config::NodeConfig;
use lafs_node::node::{DEFAULT_WEB, InitOptions, announcement_yaml, ensure_identity, init};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct LocalGridArgs {
    /// Storage servers to create (first run only).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    servers: u16,
    /// Address of the client's web API (first run only) [default: 127.0.0.1:3456, or a free
    /// port if that one is taken].
    #[arg(long, value_name = "HOST:PORT")]
    web: Option<SocketAddr>,
    /// The grid's directory [default: ~/.lafs-local-grid].
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".lafs-local-grid"))
        .unwrap_or_else(|| PathBuf::from("lafs-local-grid"))
}

fn storage_name(i: usize) -> String {
    format!("storage-{i:02}")
}

/// The storage node directories of an existing grid, in order.
fn storage_dirs(dir: &Path) -> CliResult<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CliError::failed(format!("{}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("storage-"))
                && p.join("tahoe.cfg").is_file()
        })
        .collect();
    out.sort();
    Ok(out)
}

fn web_address(asked: Option<SocketAddr>) -> CliResult<SocketAddr> {
    if let Some(a) = asked {
        if a.port() != 0 {
            return Ok(a);
        }
        // Port 0: choose one now and keep it, so the URL stays the same across runs.
        return std::net::TcpListener::bind(a)
            .and_then(|l| l.local_addr())
            .map_err(|e| CliError::failed(format!("no free port for the web API at {a}: {e}")));
    }
    let default: SocketAddr = DEFAULT_WEB
        .parse()
        .map_err(|_| CliError::failed("bad built-in web address"))?;
    if std::net::TcpListener::bind(default).is_ok() {
        return Ok(default);
    }
    let l = std::net::TcpListener::bind((default.ip(), 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| CliError::failed(format!("no free port for the web API: {e}")))?;
    eprintln!("lafs: {DEFAULT_WEB} is taken; the web API gets {l}");
    Ok(l)
}

/// Creates what is missing of the grid in `dir`.
fn create(dir: &Path, args: &LocalGridArgs) -> CliResult {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    let n = usize::from(args.servers);
    let mut entries = String::from("storage:\n");
    for i in 1..=n {
        let sdir = dir.join(storage_name(i));
        if !sdir.join("tahoe.cfg").exists() {
            init(
                &sdir,
                &InitOptions {
                    storage: true,
                    nickname: Some(storage_name(i)),
                    ..InitOptions::default()
                },
            )
            .map_err(node_error)?;
        }
        let cfg = load(&sdir)?;
        let location = cfg.tub_location.first().cloned().unwrap_or_default();
        let id = ensure_identity(&sdir, &location).map_err(node_error)?;
        for line in announcement_yaml(&cfg, &id).map_err(node_error)?.lines() {
            entries.push_str("  ");
            entries.push_str(line);
            entries.push('\n');
        }
    }
    let happy = args.servers.min(7);
    let cdir = dir.join("client");
    if cdir.exists() {
        // A creation interrupted while making the client: start it over.
        std::fs::remove_dir_all(&cdir)
            .map_err(|e| CliError::failed(format!("cannot remove {}: {e}", cdir.display())))?;
    }
    // Build the client next to its final place and move it in when complete.
    let tmp = dir.join(".client.creating");
    let _ = std::fs::remove_dir_all(&tmp);
    init(
        &tmp,
        &InitOptions {
            client: true,
            nickname: Some("local-grid-client".into()),
            web: Some(web_address(args.web)?),
            shares: Some((happy.min(3), happy, 10)),
            ..InitOptions::default()
        },
    )
    .map_err(node_error)?;
    lafs_node::identity::write_private(
        &tmp.join("private").join("servers.yaml"),
        entries.as_bytes(),
    )
    .map_err(|e| CliError::failed(e.to_string()))?;
    std::fs::rename(&tmp, &cdir)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", cdir.display())))?;
    Ok(())
}

/// Prefers `lafs` when it is the binary on `PATH`, else the full path of this binary.
fn program_name() -> String {
    let me = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| {
            let cand = p.join("lafs");
            cand.is_file()
                && me.as_ref().is_some_and(|m| {
                    std::fs::canonicalize(&cand).ok() == std::fs::canonicalize(m).ok()
                })
        })
    });
    match me {
        Some(m) if !on_path => m.display().to_string(),
        _ => "lafs".into(),
    }
}

pub fn run(args: &LocalGridArgs) -> CliResult {
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    let fresh = !dir.join("client").join("tahoe.cfg").is_file();
    if fresh {
        create(&dir, args)?;
    }
    let storage = storage_dirs(&dir)?;
    let client_dir = dir.join("client");
    let client_cfg = load(&client_dir)?;
    let storage_cfgs: Vec<NodeConfig> =
        storage.iter().map(|d| load(d)).collect::<Result<_, _>>()?;
    init_logging("warn");
    let rt = runtime()?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut nodes = Vec::new();
        for cfg in &storage_cfgs {
            let node = lafs_node::run::start_node(cfg, rx.clone(), GRACE)
                .await
                .map_err(node_error)?;
            nodes.push(node);
        }
        let client = lafs_node::run::start_node(&client_cfg, rx.clone(), GRACE)
            .await
            .map_err(node_error)?;
        let url = client.web_url.clone().unwrap_or_default();
        nodes.push(client);
        let lafs = program_name();
        let cd = client_dir.display();
        println!(
            "lafs local grid: {} storage servers and a client node in {} ({})",
            storage_cfgs.len(),
            dir.display(),
            if fresh { "created now" } else { "reused" }
        );
        println!("web: {url}");
        println!("try:");
        println!("  {lafs} -d {cd} put FILE");
        println!("  {lafs} -d {cd} get CAP OUTFILE");
        println!("Ctrl-C stops the grid.");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("lafs: stopping the local grid");
            let _ = tx.send(true);
        });
        let mut first = Ok(());
        for n in nodes {
            let r = n.wait().await.map_err(node_error);
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

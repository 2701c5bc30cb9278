//! `lafs`: the command-line porcelain.
//!
//! Exit status: 0 on success, 1 on failure, 2 on bad usage (including malformed caps and
//! arguments). Errors are one line on stderr and never contain secrets.

mod account_cmd;
mod accounts_cmd;
mod cap_cmd;
mod error;
mod local_grid;
mod node_cmd;
mod put;
mod size;
mod storage_admin;
mod transfer;
mod webapi;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A least-authority file store, compatible with Tahoe-LAFS.
#[derive(Debug, Parser)]
#[command(name = "lafs", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Node directory [default: ~/.lafs]
    #[arg(
        short = 'd',
        long = "node-directory",
        global = true,
        env = "LAFS_NODE_DIR"
    )]
    node_directory: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store a file on the grid through the running node and print its cap (offline with
    /// --dry-run).
    Put(put::PutArgs),
    /// Read a file from the grid through the running node.
    Get(transfer::GetArgs),
    /// Create (first time) and run a whole grid on loopback in one process: storage servers
    /// and a client node.
    LocalGrid(local_grid::LocalGridArgs),
    /// Inspect and transform capability strings.
    #[command(subcommand)]
    Cap(cap_cmd::CapCommand),
    /// Create a node directory (client, storage server, or both).
    Init(node_cmd::InitArgs),
    /// Run a node in the foreground until interrupted (SIGINT/SIGTERM stop it cleanly).
    Run(node_cmd::RunArgs),
    /// This client's account on the grid's lafs servers: its key and its usage.
    #[command(subcommand)]
    Account(account_cmd::AccountCommand),
    /// Storage server tools.
    #[command(subcommand)]
    Storage(node_cmd::StorageCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Put(args) => put::run(&args, cli.node_directory.as_deref()),
        Command::Get(args) => {
            transfer::get(&node_cmd::default_dir(cli.node_directory.as_deref()), &args)
        }
        Command::LocalGrid(args) => local_grid::run(&args),
        Command::Cap(cmd) => cap_cmd::run(&cmd),
        Command::Init(args) => node_cmd::run_init(&args),
        Command::Run(args) => node_cmd::run_node(
            &args
                .dir
                .unwrap_or_else(|| node_cmd::default_dir(cli.node_directory.as_deref())),
        ),
        Command::Account(cmd) => {
            account_cmd::run(&node_cmd::default_dir(cli.node_directory.as_deref()), &cmd)
        }
        Command::Storage(node_cmd::StorageCommand::Crawler(args)) => {
            storage_admin::run_crawler(&node_cmd::default_dir(cli.node_directory.as_deref()), &args)
        }
        Command::Storage(node_cmd::StorageCommand::Accounts(args)) => {
            accounts_cmd::run(&node_cmd::default_dir(cli.node_directory.as_deref()), &args)
        }
        Command::Storage(node_cmd::StorageCommand::CrawlNow(args)) => storage_admin::run_crawl_now(
            &node_cmd::default_dir(cli.node_directory.as_deref()),
            &args,
        ),
        Command::Storage(node_cmd::StorageCommand::Announcement { dir }) => {
            node_cmd::run_announcement(
                &dir.unwrap_or_else(|| node_cmd::default_dir(cli.node_directory.as_deref())),
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lafs: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

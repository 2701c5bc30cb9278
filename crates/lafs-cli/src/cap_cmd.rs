//! `lafs cap show|diminish`: offline capability tools.

use crate::error::{CliError, CliResult};
use clap::Subcommand;
use lafs_core::base32;
use lafs_core::cap::Cap;
use serde_json::{Map, Value, json};

#[derive(Debug, Subcommand)]
pub enum CapCommand {
    /// Print a cap's fields as JSON (kind, storage index, k, N, size, ...).
    Show {
        /// The capability string.
        cap: String,
    },
    /// Print the read-only cap of a write cap (or, with --verify, the verify cap).
    Diminish {
        /// Print the verify cap instead of the read-only cap.
        #[arg(long)]
        verify: bool,
        /// The capability string.
        cap: String,
    },
}

/// Parses a cap from the command line; unknown kinds are refused (exit 2).
fn parse_known(s: &str) -> CliResult<Cap> {
    let cap: Cap = s
        .trim()
        .parse()
        .map_err(|e| CliError::usage(format!("malformed cap: {e}")))?;
    if let Cap::Unknown(_) = cap {
        return Err(CliError::usage(
            "unknown cap kind (expected URI:LIT, URI:CHK, URI:SSK, URI:MDMF, URI:DIR2... forms)",
        ));
    }
    Ok(cap)
}

/// The JSON description of a cap (no secret key material beyond what the cap string holds
/// in the derived caps).
pub fn describe(cap: &Cap) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), json!(cap.kind()));
    m.insert(
        "storage_index".into(),
        cap.storage_index()
            .map(|si| json!(base32::encode(&si)))
            .unwrap_or(Value::Null),
    );
    m.insert("readonly".into(), json!(cap.is_readonly()));
    m.insert("mutable".into(), json!(cap.is_mutable()));
    m.insert("directory".into(), json!(cap.is_directory()));
    m.insert("verifier".into(), json!(cap.is_verifier()));
    if let Some(k) = cap.needed_shares() {
        m.insert("needed_shares".into(), json!(k));
    }
    if let Some(n) = cap.total_shares() {
        m.insert("total_shares".into(), json!(n));
    }
    if let Some(size) = cap.size() {
        m.insert("size".into(), json!(size));
    }
    if let Some(ro) = cap.readonly() {
        m.insert("readonly_cap".into(), json!(ro.to_string()));
    }
    if let Some(v) = cap.verifier() {
        m.insert("verify_cap".into(), json!(v.to_string()));
    }
    Value::Object(m)
}

pub fn run(cmd: &CapCommand) -> CliResult {
    match cmd {
        CapCommand::Show { cap } => {
            let cap = parse_known(cap)?;
            println!("{}", describe(&cap));
        }
        CapCommand::Diminish { verify, cap } => {
            let cap = parse_known(cap)?;
            let out = if *verify {
                cap.verifier().ok_or_else(|| {
                    CliError::usage(format!("a {} cap has no verify cap", cap.kind()))
                })?
            } else {
                cap.readonly().ok_or_else(|| {
                    CliError::usage(format!("a {} cap has no read-only form", cap.kind()))
                })?
            };
            println!("{out}");
        }
    }
    Ok(())
}

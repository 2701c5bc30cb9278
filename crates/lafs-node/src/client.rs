//! The client side of a node: its secrets, its grid (from `private/servers.yaml`) and its
//! upload settings, shared by every request of the web API.
//!
//! Secrets follow stock Tahoe byte for byte, so a node directory made by stock works here and
//! leases taken by either client match on every server:
//!
//! - `private/secret` (lease secret) and `private/convergence` hold base32 (lowercase,
//!   unpadded) text of 32 random bytes; stock strips whitespace and decodes both
//!   (`client.py`, `init_secrets`: `base32.a2b(...)`), and so do we. A missing file is
//!   created in that format, as stock does on first start.
//! - The decoded lease secret is what `lafs_core::hashutil::lease_secrets` takes as the
//!   client secret; the decoded convergence secret keys convergent encryption.
//!
//! Uploads read a seekable file twice (the convergent key hashes the whole file first), so the
//! web API spools request bodies into [`ClientNode::spool_dir`]: under the node directory
//! (`private/tmp/`, mode 0700, files 0600), never in a shared `/tmp`, because the spooled
//! bytes are plaintext.

use crate::account::AccountKey;
use crate::config::NodeConfig;
use crate::identity::{load_or_create, new_secret_file};
use crate::node::NodeError;
use lafs_client::store::Store;
use lafs_client::upload::{KeyChoice, UploadConfig, UploadError, UploadOutcome, upload_file};
use lafs_client::{ClientOptions, Grid};
use lafs_core::base32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The software version this node reports.
pub const VERSION: &str = concat!("lafs/", env!("CARGO_PKG_VERSION"));

/// A running client node's state.
pub struct ClientNode {
    dir: PathBuf,
    nickname: String,
    node_id: String,
    grid: Arc<Grid>,
    upload: UploadConfig,
    convergence: Vec<u8>,
    lease_secret: Vec<u8>,
    spool_dir: PathBuf,
}

impl std::fmt::Debug for ClientNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientNode")
            .field("dir", &self.dir)
            .field("servers", &self.grid.servers().len())
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, source: std::io::Error) -> NodeError {
    NodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads (or creates, as stock does) a base32 secret in `private/NAME` and decodes it.
fn secret(dir: &Path, name: &str) -> Result<Vec<u8>, NodeError> {
    let path = dir.join("private").join(name);
    let text = load_or_create(
        &path,
        |t| Ok(t.to_string()),
        || {
            let t = new_secret_file()?;
            Ok((t.clone(), t))
        },
    )?;
    let decoded = base32::decode(text.trim()).map_err(|e| {
        NodeError::Usage(format!(
            "{}: not a base32 secret ({e}); stock Tahoe would refuse it too",
            path.display()
        ))
    })?;
    if decoded.is_empty() {
        return Err(NodeError::Usage(format!(
            "{}: empty secret",
            path.display()
        )));
    }
    Ok(decoded)
}

/// The GBS client settings of the node in `cfg.dir`: with its account key as TLS client
/// certificate (made on first use) unless `[client] account = anonymous`.
pub fn client_options(cfg: &NodeConfig) -> Result<ClientOptions, NodeError> {
    let identity = match cfg.ini.get("client", "account").map(str::trim) {
        None | Some("key") => Some(AccountKey::load_or_create(&cfg.dir)?.identity()?),
        Some("anonymous") => None,
        Some(other) => {
            return Err(NodeError::Usage(format!(
                "[client] account = {other:?}: expected `key` (the default) or `anonymous`"
            )));
        }
    };
    Ok(ClientOptions {
        identity,
        ..ClientOptions::default()
    })
}

impl ClientNode {
    /// Sets up the client of the node in `cfg.dir`: secrets, `servers.yaml`, spool directory
    /// (emptied of files a crash left behind).
    pub fn open(cfg: &NodeConfig) -> Result<Self, NodeError> {
        let dir = cfg.dir.clone();
        let lease_secret = secret(&dir, "secret")?;
        let convergence = secret(&dir, "convergence")?;
        let grid = Grid::load(&dir, &client_options(cfg)?).map_err(|e| {
            NodeError::Usage(format!(
                "{}: {e}",
                dir.join("private").join("servers.yaml").display()
            ))
        })?;
        let spool_dir = dir.join("private").join("tmp");
        std::fs::create_dir_all(&spool_dir).map_err(|e| io(&spool_dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&spool_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io(&spool_dir, e))?;
        }
        if let Ok(entries) = std::fs::read_dir(&spool_dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("upload-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let node_id = std::fs::read_to_string(dir.join("node.pubkey"))
            .ok()
            .map(|t| t.trim().trim_start_matches("pub-").to_string())
            .unwrap_or_default();
        let c = cfg.client;
        let upload = UploadConfig {
            needed_shares: c.shares_needed,
            happy: c.shares_happy,
            total_shares: c.shares_total,
            // Stock 1.20's segment size (`DEFAULT_IMMUTABLE_MAX_SEGMENT_SIZE`, 1 MiB): it is
            // part of the convergent key, so anything else gives the same file another cap.
            max_segment_size: lafs_core::chk::DEFAULT_MAX_SEGMENT_SIZE,
            ..UploadConfig::default()
        };
        Ok(Self {
            dir,
            nickname: cfg.nickname.clone(),
            node_id,
            grid: Arc::new(grid),
            upload,
            convergence,
            lease_secret,
            spool_dir,
        })
    }

    /// The node directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `[node] nickname`.
    pub fn nickname(&self) -> &str {
        &self.nickname
    }

    /// This node's id (`v0-...`, from `node.pubkey`), empty if it has none.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The servers of `servers.yaml` with their status.
    pub fn grid(&self) -> &Arc<Grid> {
        &self.grid
    }

    /// `[client] shares.*` as the uploader uses them.
    pub fn upload_config(&self) -> &UploadConfig {
        &self.upload
    }

    /// Where request bodies are spooled before upload.
    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// Every server, as the upload and download engines take them.
    pub fn stores(&self) -> Vec<Store> {
        self.grid
            .servers()
            .iter()
            .map(|s| s.clone() as Store)
            .collect()
    }

    /// A new spool file (0600, deleted when dropped).
    pub fn spool_file(&self) -> Result<tempfile::NamedTempFile, NodeError> {
        tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.spool_dir)
            .map_err(|e| io(&self.spool_dir, e))
    }

    /// The convergent key hasher for a file of `size` bytes (fed while the file arrives, it
    /// gives [`ClientNode::upload`] the key without a pass over the spooled file); `None` for
    /// literal-sized files.
    pub fn key_hasher(&self, size: u64) -> Option<lafs_core::chk::ConvergentKeyHasher> {
        lafs_client::upload::convergent_key_hasher(&self.upload, &self.convergence, size)
    }

    /// Uploads the file at `path` with convergent encryption and this node's settings;
    /// `key` is its convergent key if already computed (see [`ClientNode::key_hasher`]).
    pub async fn upload(
        &self,
        path: &Path,
        key: Option<[u8; 16]>,
    ) -> Result<UploadOutcome, UploadError> {
        let key = match key {
            Some(k) => KeyChoice::Known(k),
            None => KeyChoice::Convergent(self.convergence.clone()),
        };
        upload_file(
            &self.stores(),
            &self.upload,
            &key,
            &self.lease_secret,
            path,
            None,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_decoded_like_stock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("private")).unwrap();
        // What stock's _make_secret writes: base32 of 32 bytes and a newline.
        let raw = [7u8; 32];
        std::fs::write(
            dir.path().join("private/secret"),
            format!("{}\n", base32::encode(&raw)),
        )
        .unwrap();
        assert_eq!(secret(dir.path(), "secret").unwrap(), raw.to_vec());
        // A missing one is created in the same format.
        let made = secret(dir.path(), "convergence").unwrap();
        assert_eq!(made.len(), 32);
        let text = std::fs::read_to_string(dir.path().join("private/convergence")).unwrap();
        assert_eq!(base32::decode(text.trim()).unwrap(), made);
        std::fs::write(dir.path().join("private/secret"), "not base32!\n").unwrap();
        let e = secret(dir.path(), "secret").unwrap_err().to_string();
        assert!(e.contains("base32"), "{e}");
    }
}

//! The grid as one client node sees it: a [`StorageClient`] and status for every usable server
//! of `servers.yaml`, built once when the node starts and shared by every upload, download
//! and page.
//!
//! Servers are kept in `servers.yaml`'s (sorted) order; [`Grid::permuted`] gives a file's
//! ring order. A server with several NURLs is reached through the first one (stock races
//! them all once and keeps the winner; every NURL of a server names the same service, so
//! the first is as good as any on a local or static grid).
//!
//! Status is kept fresh by [`Grid::refresh`] (one `GET /storage/v1/version` per server, in
//! parallel) and as a side effect of every other request. [`Grid::spawn_refresher`] runs it
//! periodically on the current tokio runtime, like stock's polling of HTTP servers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lafs_protocol::{StorageIndex, TubId};

use crate::gbs::{ClientOptions, StorageClient};
use crate::ring;
use crate::servers::{ServerEntry, ServersError, ServersFile, SkippedServer, read_servers_yaml};
use crate::status::{ServerStatus, StatusSnapshot};

/// One server of the grid.
#[derive(Debug)]
pub struct GridServer {
    entry: ServerEntry,
    client: StorageClient,
}

impl GridServer {
    /// Its entry in `servers.yaml`.
    pub fn entry(&self) -> &ServerEntry {
        &self.entry
    }

    /// The server id (`servers.yaml` key).
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// Its nickname (possibly empty).
    pub fn nickname(&self) -> &str {
        &self.entry.nickname
    }

    /// The tub id that seeds this server's lease secrets and write enablers.
    pub fn lease_seed(&self) -> &TubId {
        &self.entry.tubid
    }

    /// Its seed on the permuted ring.
    pub fn permutation_seed(&self) -> &[u8] {
        &self.entry.permutation_seed
    }

    /// The GBS client.
    pub fn client(&self) -> &StorageClient {
        &self.client
    }

    /// Its shared status.
    pub fn status(&self) -> &Arc<ServerStatus> {
        self.client.status()
    }
}

/// Every usable server of a client node.
#[derive(Debug, Default)]
pub struct Grid {
    servers: Vec<Arc<GridServer>>,
    skipped: Vec<SkippedServer>,
}

impl Grid {
    /// Builds clients for the servers of a parsed `servers.yaml`. Servers whose first NURL
    /// cannot be used (a Tor NURL) join [`Grid::skipped`].
    pub fn new(file: ServersFile, opts: &ClientOptions) -> Grid {
        let mut grid = Grid {
            servers: Vec::new(),
            skipped: file.skipped,
        };
        for entry in file.servers {
            let Some(nurl) = entry.nurls.first() else {
                grid.skipped.push(SkippedServer {
                    id: entry.id.clone(),
                    reason: "no NURL".into(),
                });
                continue;
            };
            match StorageClient::new(nurl, entry.display_name(), opts.clone()) {
                Ok(client) => grid.servers.push(Arc::new(GridServer { entry, client })),
                Err(e) => grid.skipped.push(SkippedServer {
                    id: entry.id.clone(),
                    reason: e.kind().to_string(),
                }),
            }
        }
        for s in &grid.skipped {
            tracing::warn!(server = %s.id, reason = %s.reason, "servers.yaml: server not used");
        }
        grid
    }

    /// Loads `<node_dir>/private/servers.yaml`. A missing file is an empty grid (as stock).
    pub fn load(node_dir: &Path, opts: &ClientOptions) -> Result<Grid, ServersError> {
        match read_servers_yaml(&node_dir.join("private").join("servers.yaml")) {
            Ok(file) => Ok(Grid::new(file, opts)),
            Err(e) if e.is_not_found() => Ok(Grid::default()),
            Err(e) => Err(e),
        }
    }

    /// The servers, in `servers.yaml` order (sorted by id).
    pub fn servers(&self) -> &[Arc<GridServer>] {
        &self.servers
    }

    /// Entries of `servers.yaml` that are not used, and why.
    pub fn skipped(&self) -> &[SkippedServer] {
        &self.skipped
    }

    /// The server with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<GridServer>> {
        self.servers.iter().find(|s| s.id() == id)
    }

    /// All servers in the ring order of a file (connected or not: filtering is the
    /// caller's choice).
    pub fn permuted(&self, si: &StorageIndex) -> Vec<Arc<GridServer>> {
        ring::permuted(si.as_bytes(), &self.servers, |s| s.permutation_seed())
            .into_iter()
            .cloned()
            .collect()
    }

    /// Polls every server's version in parallel (each within its control timeout) and
    /// returns how many answered. Results land in each server's status.
    pub async fn refresh(&self) -> usize {
        let mut tasks = tokio::task::JoinSet::new();
        for s in &self.servers {
            let client = s.client().clone();
            tasks.spawn(async move { client.version().await.is_ok() });
        }
        let mut ok = 0;
        while let Some(r) = tasks.join_next().await {
            if matches!(r, Ok(true)) {
                ok += 1;
            }
        }
        ok
    }

    /// Runs [`Grid::refresh`] now and then every `interval`, until the handle is aborted.
    pub fn spawn_refresher(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let grid = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                grid.refresh().await;
            }
        })
    }

    /// Every server's status, in [`Grid::servers`] order.
    pub fn statuses(&self) -> Vec<StatusSnapshot> {
        self.servers.iter().map(|s| s.status().snapshot()).collect()
    }

    /// How many servers answered their last exchange.
    pub fn connected_count(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.status().is_connected())
            .count()
    }
}

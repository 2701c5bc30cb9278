//! Running a node: the storage server with its lease database and backend, the client with
//! its web API, or both, until told to stop.
//!
//! A node runs a storage server when `[storage] enabled = true` and a client when
//! `[node] web.port` is set (a client is only reachable through its web API; `lafs init`
//! gives client nodes a web port and storage-only nodes none). Every service of a node, and
//! several nodes (`lafs local-grid`), can share one process and one tokio runtime: each
//! service is a task that stops when the shared shutdown signal turns true.

use crate::client::ClientNode;
use crate::config::{NodeConfig, S3Config};
use crate::node::{NodeError, ensure_identity};
use crate::storage_status::StorageInfo;
use crate::web::{StoragePages, WebApp};
use lafs_storage::backend::Backend;
use lafs_storage::backend::cloud::{CloudBackend, CloudOptions, S3Settings};
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::crawler::{Crawler, CrawlerConfig};
use lafs_storage::frontend::{self, Frontend, Limits, RustlsServerConfig};
use lafs_storage::leasedb::{LeaseDbHandle, OpenOptions};
use lafs_storage::server::{ServerConfig, StorageServer, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A storage server set up from a node directory, ready to serve.
#[derive(Debug)]
pub struct StorageService {
    /// The server.
    pub server: Arc<StorageServer>,
    /// Where it listens.
    pub listener: tokio::net::TcpListener,
    /// Its TLS configuration.
    pub tls: Arc<RustlsServerConfig>,
    /// The HTTP frontend.
    pub frontend: Arc<Frontend>,
    /// The accounting crawler's settings (`[storage] expire.*`).
    pub crawler: CrawlerConfig,
    /// What the storage status pages show about this node.
    pub info: StorageInfo,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Opens everything a storage node needs: identity, lease database (set aside and rebuilt if
/// corrupt), share backend, crash recovery; binds the listening socket.
pub async fn open_storage(cfg: &NodeConfig) -> Result<StorageService, NodeError> {
    let location = cfg
        .tub_location
        .first()
        .cloned()
        .ok_or_else(|| NodeError::Usage("tahoe.cfg has no [node] tub.location".into()))?;
    let id = ensure_identity(&cfg.dir, &location)?;
    let expire = cfg.expire()?;
    let accept_unknown_keys = cfg.accept_unknown_keys()?;
    let listen = cfg
        .tub_port
        .ok_or_else(|| NodeError::Usage("tahoe.cfg has no [node] tub.port".into()))?;
    let storage_dir = cfg.dir.join("storage");
    std::fs::create_dir_all(&storage_dir).map_err(|e| NodeError::Io {
        path: storage_dir.display().to_string(),
        source: e,
    })?;
    let backend = open_backend(cfg, &storage_dir)?;
    let db_path = storage_dir.join("leasedb.sqlite");
    let (db, rebuilt) =
        LeaseDbHandle::open_sqlite_or_rebuild(&db_path, now(), OpenOptions::default())
            .await
            .map_err(|e| NodeError::Usage(format!("lease database {}: {e}", db_path.display())))?;
    if let Some(r) = rebuilt {
        tracing::warn!(reason = %r.reason, "the lease database was corrupt and has been set aside; it will be rebuilt from the shares");
    }
    let server_cfg = ServerConfig {
        reserved_space: cfg.storage.reserved_space,
        readonly: cfg.storage.readonly,
        nodeid: id.tls.tubid_bytes(),
        accept_unknown_keys,
        ..ServerConfig::default()
    };
    let server = Arc::new(StorageServer::new(
        backend,
        db,
        server_cfg,
        Arc::new(SystemClock),
    ));
    server
        .startup()
        .await
        .map_err(|e| NodeError::Usage(format!("storage recovery: {e}")))?;
    let tls = frontend::tls_config(&id.tls.cert_der, &id.tls.key_der).map_err(NodeError::Usage)?;
    let swissnum = id
        .swissnum
        .parse()
        .map_err(|_| NodeError::Usage("private/storage.furl: malformed swissnum".into()))?;
    let limits = Limits {
        spool_dir: Some(storage_dir.clone()),
        ..Limits::default()
    };
    let fe = Arc::new(Frontend::new(server.clone(), swissnum, limits));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| NodeError::Io {
            path: format!("listen {listen}"),
            source: e,
        })?;
    let crawler = CrawlerConfig {
        expiry: expire.policy(),
        gc_dry_run: expire.dry_run,
        ..CrawlerConfig::default()
    };
    let info = StorageInfo {
        nickname: cfg.nickname.clone(),
        server_id: id.key.server_id(),
        backend: cfg.storage.backend.clone(),
        reserved_space: cfg.storage.reserved_space,
        readonly: cfg.storage.readonly,
        expire,
    };
    Ok(StorageService {
        server,
        listener,
        tls,
        frontend: fe,
        crawler,
        info,
    })
}

/// The share backend `[storage] backend` names: `disk` (in `storage/`) or `cloud.s3` (the
/// lease database stays in `storage/` either way).
fn open_backend(
    cfg: &NodeConfig,
    storage_dir: &std::path::Path,
) -> Result<Arc<dyn Backend>, NodeError> {
    match cfg.storage.backend.as_str() {
        "cloud.s3" => {
            let s3 =
                S3Config::from_ini(&cfg.ini, &NodeConfig::path(&cfg.dir).display().to_string())
                    .map_err(|e| NodeError::Usage(e.to_string()))?;
            let secret_path = cfg.dir.join("private").join("s3secret");
            let secret = std::fs::read_to_string(&secret_path).map_err(|e| NodeError::Io {
                path: secret_path.display().to_string(),
                source: e,
            })?;
            let settings = S3Settings {
                bucket: s3.bucket,
                url: s3.url,
                region: s3.region,
                access_key_id: s3.access_key_id,
                secret_access_key: secret.trim().to_string(),
                path_style: s3.path_style,
            };
            let opts = CloudOptions {
                chunk_size: s3.chunk_size,
                ..CloudOptions::default()
            };
            let b = CloudBackend::s3(&settings, opts)
                .map_err(|e| NodeError::Usage(format!("storage backend: {e}")))?;
            Ok(Arc::new(b))
        }
        _ => {
            let b = DiskBackend::open(storage_dir.to_path_buf())
                .map_err(|e| NodeError::Usage(format!("storage backend: {e}")))?;
            Ok(Arc::new(b))
        }
    }
}

/// Serves until `shutdown` turns true; in-flight requests get `grace` to finish.
pub async fn serve_storage(
    svc: StorageService,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), NodeError> {
    let reaper_server = svc.server.clone();
    let mut reaper_stop = shutdown.clone();
    let reaper = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {
                    if let Err(e) = reaper_server.reap_idle_uploads().await {
                        tracing::warn!(error = %e, "reaping idle uploads failed");
                    }
                }
                _ = reaper_stop.changed() => break,
            }
        }
    });
    // The accounting crawler saves its position after every step, so stopping it anywhere
    // loses at most one prefix of work.
    let crawler = tokio::spawn(Crawler::new(svc.server.clone(), svc.crawler).run(shutdown.clone()));
    let r = frontend::serve(svc.listener, svc.tls, svc.frontend, shutdown, grace)
        .await
        .map_err(|e| NodeError::Io {
            path: "storage server".into(),
            source: e,
        });
    reaper.abort();
    if tokio::time::timeout(grace, crawler).await.is_err() {
        tracing::warn!("the accounting crawler did not stop in time");
    }
    r
}

/// A node whose services are running.
#[derive(Debug)]
pub struct RunningNode {
    /// Where its storage server listens, if it runs one.
    pub storage_addr: Option<SocketAddr>,
    /// Its web server's URL (as written to `node.url`), if it has a web port.
    pub web_url: Option<String>,
    /// Whether it runs a client (whose web API is at `web_url`).
    pub client: bool,
    tasks: tokio::task::JoinSet<Result<(), NodeError>>,
}

impl RunningNode {
    /// Waits until every service has stopped; returns the first error.
    pub async fn wait(mut self) -> Result<(), NodeError> {
        let mut first = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            let r = r.unwrap_or_else(|e| Err(NodeError::Usage(format!("service failed: {e}"))));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// The URL of a web server listening on `addr` (loopback when it listens everywhere).
pub fn web_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    match ip {
        std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{}/", addr.port()),
        std::net::IpAddr::V4(v4) => format!("http://{v4}:{}/", addr.port()),
    }
}

/// Starts the services of the node in `cfg` (storage server, client web API, or both) as
/// tasks on the current runtime. With a web port, the web server also serves the storage
/// status pages (`/storage`, `/storage/accounts`) of a node that runs a storage server. Sockets are bound before this returns, so a caller that
/// starts storage nodes first and clients afterwards (one process, `lafs local-grid`) never
/// has a client find its servers missing. Writes `node.url` once the web API listens.
pub async fn start_node(
    cfg: &NodeConfig,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Result<RunningNode, NodeError> {
    let runs_client = cfg.web_port.is_some() && cfg.client_enabled;
    if !cfg.storage.enabled && !runs_client {
        return Err(NodeError::Usage(format!(
            "{}: this node runs neither a storage server ([storage] enabled) nor a client ([node] web.port)",
            cfg.dir.display()
        )));
    }
    let mut running = RunningNode {
        storage_addr: None,
        web_url: None,
        client: runs_client,
        tasks: tokio::task::JoinSet::new(),
    };
    let mut pages = None;
    if cfg.storage.enabled {
        let svc = open_storage(cfg).await?;
        running.storage_addr = svc.listener.local_addr().ok();
        if cfg.web_port.is_some() {
            pages = Some(StoragePages {
                server: svc.server.clone(),
                info: svc.info.clone(),
            });
        }
        let stop = shutdown.clone();
        running
            .tasks
            .spawn(async move { serve_storage(svc, stop, grace).await });
    }
    if let Some(web) = cfg.web_port {
        let node = if runs_client {
            Some(Arc::new(ClientNode::open(cfg)?))
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind(web)
            .await
            .map_err(|e| NodeError::Io {
                path: format!("web.port {web}"),
                source: e,
            })?;
        let addr = listener.local_addr().map_err(|e| NodeError::Io {
            path: format!("web.port {web}"),
            source: e,
        })?;
        let url = web_url(addr);
        let url_file = cfg.dir.join("node.url");
        std::fs::write(&url_file, format!("{url}\n")).map_err(|e| NodeError::Io {
            path: url_file.display().to_string(),
            source: e,
        })?;
        running.web_url = Some(url);
        if let Some(node) = &node {
            let refresher = node.grid().spawn_refresher(Duration::from_secs(10));
            let mut stop = shutdown.clone();
            running.tasks.spawn(async move {
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
                refresher.abort();
                Ok(())
            });
        }
        let app = Arc::new(WebApp {
            client: node,
            storage: pages,
        });
        let stop = shutdown.clone();
        running.tasks.spawn(async move {
            crate::web::serve_web(listener, app, stop, grace)
                .await
                .map_err(|e| NodeError::Io {
                    path: "web server".into(),
                    source: e,
                })
        });
    }
    Ok(running)
}

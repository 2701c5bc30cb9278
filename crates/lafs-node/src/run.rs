//! Running a node: the storage server with its lease database and backend, until told to stop.

use crate::config::{NodeConfig, S3Config};
use crate::node::{NodeError, ensure_identity};
use lafs_storage::backend::Backend;
use lafs_storage::backend::cloud::{CloudBackend, CloudOptions, S3Settings};
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::crawler::{Crawler, CrawlerConfig};
use lafs_storage::frontend::{self, Frontend, Limits, RustlsServerConfig};
use lafs_storage::leasedb::{LeaseDbHandle, OpenOptions};
use lafs_storage::server::{ServerConfig, StorageServer, SystemClock};
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
    let fe = Arc::new(Frontend::new(server.clone(), swissnum, Limits::default()));
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
    Ok(StorageService {
        server,
        listener,
        tls,
        frontend: fe,
        crawler,
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

//! Creating node directories and the identity a running node presents.

use crate::config::NodeConfig;
use crate::identity::{
    IdentityError, NodeKey, TlsIdentity, load_or_create, new_secret_file, new_swissnum,
    write_private,
};
use crate::ini::Ini;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Options of `lafs init`.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Run a storage server.
    pub storage: bool,
    /// Run a client (web API, uploads).
    pub client: bool,
    /// Address the storage server listens on (default: 127.0.0.1 and a free port).
    pub listen: Option<SocketAddr>,
    /// `host:port` clients are told to connect to (default: the listen address).
    pub location: Option<String>,
    /// Nickname shown to clients.
    pub nickname: Option<String>,
    /// Address of the web server, if any.
    pub web: Option<SocketAddr>,
    /// `[client] shares.needed`, `shares.happy`, `shares.total`.
    pub shares: Option<(u16, u16, u16)>,
}

/// Why a node directory could not be created or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The directory already holds a node.
    #[error("{0} already contains a node (tahoe.cfg exists)")]
    Exists(String),
    /// Bad option.
    #[error("{0}")]
    Usage(String),
    /// Identity files.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Error.
        source: std::io::Error,
    },
}

fn io(path: &Path, source: std::io::Error) -> NodeError {
    NodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn free_port(ip: std::net::IpAddr) -> Result<u16, NodeError> {
    let l = std::net::TcpListener::bind((ip, 0)).map_err(|e| io(Path::new("listen"), e))?;
    Ok(l.local_addr()
        .map_err(|e| io(Path::new("listen"), e))?
        .port())
}

fn endpoint_string(addr: &SocketAddr) -> String {
    format!("tcp:{}:interface={}", addr.port(), addr.ip())
}

/// The web address a client node gets unless told otherwise (stock's `create-client` default).
pub const DEFAULT_WEB: &str = "127.0.0.1:3456";

/// What a new client node's `private/servers.yaml` says until servers are added.
pub const EMPTY_SERVERS_YAML: &str = "\
# The storage servers this client uses, in stock Tahoe-LAFS's format (the same file works for
# stock and lafs clients). Each server's entry is what `lafs storage announcement DIR` prints
# on the server (for a stock server: its NURL, FURL, and permutation seed), indented under
# `storage:`, for example:
#
# storage:
#   v0-SERVERID:
#     ann:
#       nickname: \"server1\"
#       anonymous-storage-FURL: \"pb://...\"
#       anonymous-storage-NURLs:
#       - \"pb://SPKIHASH@HOST:PORT/SWISSNUM#v=1\"
#       permutation-seed-base32: ...
#
# The node reads this file when it starts: restart it after changing it.
storage: {}
";

/// Creates a node directory (like `tahoe create-node`), including its identity files. A node
/// asked to be neither a client nor a storage server is a client (as `lafs init` without
/// flags).
pub fn init(dir: &Path, opts: &InitOptions) -> Result<PathBuf, NodeError> {
    let mut opts = opts.clone();
    if !opts.storage {
        opts.client = true;
    }
    if opts.client && opts.web.is_none() {
        opts.web = DEFAULT_WEB.parse().ok();
    }
    let opts = &opts;
    if let Some((k, h, n)) = opts.shares
        && (k == 0 || k > n || n > 256 || h == 0 || h > n)
    {
        return Err(NodeError::Usage(format!(
            "need 1 <= shares-needed ({k}) <= shares-total ({n}) <= 256 and 1 <= shares-happy ({h}) <= shares-total"
        )));
    }
    if NodeConfig::path(dir).exists() {
        return Err(NodeError::Exists(dir.display().to_string()));
    }
    for sub in ["", "private", "storage"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("private");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io(&p, e))?;
    }
    let listen = match opts.listen {
        Some(a) if a.port() != 0 => a,
        Some(a) => SocketAddr::new(a.ip(), free_port(a.ip())?),
        None => {
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            SocketAddr::new(ip, free_port(ip)?)
        }
    };
    let location = match &opts.location {
        Some(l) => l.clone(),
        None if listen.ip().is_unspecified() => {
            return Err(NodeError::Usage(
                "--listen on all interfaces needs --location HOST:PORT (the address clients use)"
                    .into(),
            ));
        }
        None => format!("{}:{}", listen.ip(), listen.port()),
    };
    if location.contains(',') || !location.contains(':') {
        return Err(NodeError::Usage(format!(
            "--location {location:?}: expected HOST:PORT"
        )));
    }
    let mut ini = Ini::default();
    let nickname = opts.nickname.clone().unwrap_or_default();
    ini.set("node", "nickname", &nickname);
    ini.set("node", "tub.port", &endpoint_string(&listen));
    ini.set("node", "tub.location", &format!("tcp:{location}"));
    ini.set(
        "node",
        "web.port",
        &opts.web.map(|w| endpoint_string(&w)).unwrap_or_default(),
    );
    ini.set("node", "reveal-IP-address", "true");
    if opts.client {
        let (k, h, n) = opts.shares.unwrap_or((3, 7, 10));
        ini.set("client", "shares.needed", &k.to_string());
        ini.set("client", "shares.happy", &h.to_string());
        ini.set("client", "shares.total", &n.to_string());
    } else if opts.web.is_some() {
        // A storage-only node with a web port serves its storage pages, not a client.
        ini.set("client", "enabled", "false");
    }
    ini.set(
        "storage",
        "enabled",
        if opts.storage { "true" } else { "false" },
    );
    ini.set("storage", "reserved_space", "1G");
    ini.set("storage", "backend", "disk");
    let mut text = String::from("# A lafs node; the format is stock Tahoe-LAFS's tahoe.cfg.\n");
    text.push_str(&ini.to_text());
    write_private(&NodeConfig::path(dir), text.as_bytes())?;
    ensure_identity(dir, &format!("tcp:{location}"))?;
    if opts.client {
        let servers = dir.join("private").join("servers.yaml");
        if !servers.exists() {
            write_private(&servers, EMPTY_SERVERS_YAML.as_bytes())?;
        }
        crate::account::AccountKey::load_or_create(dir)?;
    }
    Ok(dir.to_path_buf())
}

/// The identity a node presents, loaded (or, for a node never run, created).
#[derive(Debug)]
pub struct Identity {
    /// TLS certificate and key.
    pub tls: TlsIdentity,
    /// ed25519 node key.
    pub key: NodeKey,
    /// Swissnum of the storage service.
    pub swissnum: String,
    /// The storage FURL (`pb://tubid@hints/swissnum`).
    pub storage_furl: String,
}

/// Loads the node's identity files, creating missing ones as stock Tahoe does on first start.
/// `location` is `tub.location` (used for a new storage FURL).
pub fn ensure_identity(dir: &Path, location: &str) -> Result<Identity, NodeError> {
    let private = dir.join("private");
    let pem = private.join("node.pem");
    let tls = if pem.exists() {
        TlsIdentity::load(&pem)?
    } else {
        let id = TlsIdentity::generate()?;
        write_private(&pem, id.to_pem().as_bytes())?;
        id
    };
    let privkey = private.join("node.privkey");
    let key = load_or_create(
        &privkey,
        |t| NodeKey::parse_private(t, &privkey),
        || {
            let k = NodeKey::generate()?;
            let s = format!("{}\n", k.private_string());
            Ok((k, s))
        },
    )?;
    // Files derived from the keys: rewritten only when missing or different.
    for (name, text) in [
        ("node.pubkey", format!("{}\n", key.public_string())),
        ("my_nodeid", format!("{}\n", tls.tubid())),
        (
            "permutation-seed",
            format!("{}\n", key.permutation_seed_base32()),
        ),
    ] {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            write_private(&path, text.as_bytes())?;
        }
    }
    for name in ["secret", "convergence"] {
        let p = private.join(name);
        load_or_create(&p, |_| Ok(()), || Ok(((), new_secret_file()?)))?;
    }
    let furl_path = private.join("storage.furl");
    let storage_furl = load_or_create(
        &furl_path,
        |t| Ok(t.trim().to_string()),
        || {
            let f = format!("pb://{}@{}/{}", tls.tubid(), location, new_swissnum()?);
            Ok((f.clone(), format!("{f}\n")))
        },
    )?;
    let swissnum = storage_furl
        .rsplit('/')
        .next()
        .filter(|s| s.len() == 32)
        .ok_or_else(|| NodeError::Usage(format!("{}: malformed FURL", furl_path.display())))?
        .to_string();
    Ok(Identity {
        tls,
        key,
        swissnum,
        storage_furl,
    })
}

/// The NURLs clients use: one per `tcp:HOST:PORT` location hint.
pub fn storage_nurls(cfg: &NodeConfig, id: &Identity) -> Result<Vec<String>, NodeError> {
    let spki = id.tls.spki_hash()?;
    let mut out = Vec::new();
    for hint in &cfg.tub_location {
        let Some(hp) = hint.strip_prefix("tcp:") else {
            continue;
        };
        let hp = if hp.contains(':') && hp.matches(':').count() > 1 && !hp.starts_with('[') {
            // IPv6 literal: bracket the host part.
            let (h, p) = hp.rsplit_once(':').unwrap_or((hp, ""));
            format!("[{h}]:{p}")
        } else {
            hp.to_string()
        };
        out.push(format!("pb://{}@{}/{}#v=1", spki, hp, id.swissnum));
    }
    Ok(out)
}

fn yaml_quote(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The `servers.yaml` entry for this storage node (what goes under `storage:`).
pub fn announcement_yaml(cfg: &NodeConfig, id: &Identity) -> Result<String, NodeError> {
    let nurls = storage_nurls(cfg, id)?;
    let mut y = format!("{}:\n  ann:\n", id.key.server_id());
    y.push_str(&format!("    nickname: {}\n", yaml_quote(&cfg.nickname)));
    y.push_str(&format!(
        "    anonymous-storage-FURL: {}\n",
        yaml_quote(&id.storage_furl)
    ));
    y.push_str("    anonymous-storage-NURLs:\n");
    for n in nurls {
        y.push_str(&format!("    - {}\n", yaml_quote(&n)));
    }
    y.push_str(&format!(
        "    permutation-seed-base32: {}\n",
        id.key.permutation_seed_base32()
    ));
    Ok(y)
}

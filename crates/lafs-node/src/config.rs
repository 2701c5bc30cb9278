//! Typed node configuration read from `tahoe.cfg` (stock Tahoe's keys where they exist).

use crate::ini::{Ini, IniError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// File trouble.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Error.
        source: std::io::Error,
    },
    /// Syntax.
    #[error("{path}: {source}")]
    Syntax {
        /// File.
        path: String,
        /// Error.
        source: IniError,
    },
    /// A value that does not parse.
    #[error("{path}: [{section}] {key} = {value:?}: {message}")]
    Value {
        /// File.
        path: String,
        /// Section.
        section: String,
        /// Key.
        key: String,
        /// The value.
        value: String,
        /// What is wrong.
        message: String,
    },
}

/// Tahoe's `parse_abbreviated_size`: `1G` = 10^9, `1GiB` = 2^30, `100MB`, `5000`.
pub fn parse_abbreviated_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err("expected a size like 100MiB or 5GB".into());
    }
    let mut unit = unit.trim().to_ascii_uppercase();
    if unit.ends_with('B') {
        unit.pop();
    }
    let mult: u64 = match unit.as_str() {
        "" | "I" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "KI" => 1 << 10,
        "MI" => 1 << 20,
        "GI" => 1 << 30,
        "TI" => 1 << 40,
        "PI" => 1 << 50,
        "EI" => 1 << 60,
        _ => return Err(format!("unknown unit {unit:?}")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| "too large".into())
}

/// Parses a Twisted endpoint string as Tahoe uses for `tub.port` / `web.port`
/// (`tcp:PORT`, `tcp:PORT:interface=HOST`, `tcp:interface=HOST:port=PORT`) into an address.
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    let mut parts = s.split(':');
    if parts.next() != Some("tcp") {
        return Err("only tcp: endpoints are supported".into());
    }
    let mut port = None;
    let mut host = "0.0.0.0".to_string();
    for p in parts {
        if let Some(h) = p.strip_prefix("interface=") {
            host = h.replace('\\', "");
        } else if let Some(v) = p.strip_prefix("port=") {
            port = Some(v.to_string());
        } else if port.is_none() && p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() {
            port = Some(p.to_string());
        } else if p.starts_with("backlog=") {
        } else {
            return Err(format!("unsupported endpoint option {p:?}"));
        }
    }
    let port: u16 = port
        .ok_or("no port")?
        .parse()
        .map_err(|_| "bad port".to_string())?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| format!("bad interface {host:?}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// `[storage]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// Run a storage server.
    pub enabled: bool,
    /// Bytes to keep free.
    pub reserved_space: u64,
    /// Accept no new shares.
    pub readonly: bool,
    /// `disk` (default), later `cloud.s3`, ...
    pub backend: String,
}

/// `[client]` settings: how this node encodes and spreads the files it uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// `shares.needed` (k, default 3).
    pub shares_needed: u16,
    /// `shares.happy` (default 7).
    pub shares_happy: u16,
    /// `shares.total` (N, default 10).
    pub shares_total: u16,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            shares_needed: 3,
            shares_happy: 7,
            shares_total: 10,
        }
    }
}

/// Everything a node reads from `tahoe.cfg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node directory.
    pub dir: PathBuf,
    /// `[node] nickname`.
    pub nickname: String,
    /// `[node] tub.port`: where the storage server listens.
    pub tub_port: Option<SocketAddr>,
    /// `[node] tub.location`: `tcp:HOST:PORT` hints announced to clients (comma-separated).
    pub tub_location: Vec<String>,
    /// `[node] web.port`: where the web server listens, if any.
    pub web_port: Option<SocketAddr>,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[client]`.
    pub client: ClientConfig,
    /// The raw file, for sections other layers read.
    pub ini: Ini,
}

impl NodeConfig {
    /// Path of `tahoe.cfg` in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("tahoe.cfg")
    }

    /// Reads `DIR/tahoe.cfg`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = Self::path(dir);
        let p = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: p.clone(),
            source,
        })?;
        let ini = Ini::parse(&text).map_err(|source| ConfigError::Syntax {
            path: p.clone(),
            source,
        })?;
        Self::from_ini(dir, ini, &p)
    }

    fn from_ini(dir: &Path, ini: Ini, p: &str) -> Result<Self, ConfigError> {
        let bad = |section: &str, key: &str, value: &str, message: String| ConfigError::Value {
            path: p.to_string(),
            section: section.into(),
            key: key.into(),
            value: value.into(),
            message,
        };
        let boolean = |section: &str, key: &str, default: bool| -> Result<bool, ConfigError> {
            match ini.get(section, key).map(|v| v.trim().to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if v.is_empty() => Ok(default),
                Some(v) => match v.as_str() {
                    "true" | "yes" | "on" | "1" => Ok(true),
                    "false" | "no" | "off" | "0" => Ok(false),
                    _ => Err(bad(section, key, &v, "expected true or false".into())),
                },
            }
        };
        let endpoint = |key: &str| -> Result<Option<SocketAddr>, ConfigError> {
            match ini.get("node", key).map(str::trim) {
                None | Some("") | Some("none") | Some("disabled") => Ok(None),
                Some(v) => parse_endpoint(v)
                    .map(Some)
                    .map_err(|m| bad("node", key, v, m)),
            }
        };
        let reserved_space = match ini.get("storage", "reserved_space").map(str::trim) {
            None | Some("") => 0,
            Some(v) => {
                parse_abbreviated_size(v).map_err(|m| bad("storage", "reserved_space", v, m))?
            }
        };
        let backend = ini
            .get("storage", "backend")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("disk")
            .to_string();
        if backend != "disk" {
            return Err(bad(
                "storage",
                "backend",
                &backend,
                "unsupported storage backend (this build has: disk)".into(),
            ));
        }
        let client = client_config(&ini, &bad)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            nickname: ini.get("node", "nickname").unwrap_or("").trim().to_string(),
            tub_port: endpoint("tub.port")?,
            tub_location: ini
                .get("node", "tub.location")
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            web_port: endpoint("web.port")?,
            storage: StorageConfig {
                enabled: boolean("storage", "enabled", false)?,
                reserved_space,
                readonly: boolean("storage", "readonly", false)?,
                backend,
            },
            client,
            ini,
        })
    }
}

/// Reads `[client] shares.*` (stock's defaults 3/7/10) and checks they make sense together,
/// so a bad file fails at start-up rather than at the first upload.
fn client_config(
    ini: &Ini,
    bad: &dyn Fn(&str, &str, &str, String) -> ConfigError,
) -> Result<ClientConfig, ConfigError> {
    let d = ClientConfig::default();
    let num = |key: &str, default: u16| -> Result<u16, ConfigError> {
        match ini.get("client", key).map(str::trim) {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| bad("client", key, v, "expected a number from 1 to 256".into())),
        }
    };
    let c = ClientConfig {
        shares_needed: num("shares.needed", d.shares_needed)?,
        shares_happy: num("shares.happy", d.shares_happy)?,
        shares_total: num("shares.total", d.shares_total)?,
    };
    if c.shares_needed > c.shares_total {
        return Err(bad(
            "client",
            "shares.needed",
            &c.shares_needed.to_string(),
            format!("more than shares.total ({})", c.shares_total),
        ));
    }
    if c.shares_happy > c.shares_total {
        return Err(bad(
            "client",
            "shares.happy",
            &c.shares_happy.to_string(),
            format!("more than shares.total ({})", c.shares_total),
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_tahoe() {
        assert_eq!(parse_abbreviated_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_abbreviated_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_abbreviated_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_abbreviated_size("5000"), Ok(5000));
        assert_eq!(parse_abbreviated_size("10k"), Ok(10_000));
        assert!(parse_abbreviated_size("1.5G").is_err());
        assert!(parse_abbreviated_size("G").is_err());
        assert!(parse_abbreviated_size("9999999999E").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("tcp:47900:interface=127.0.0.1"),
            Ok("127.0.0.1:47900".parse().unwrap())
        );
        assert_eq!(
            parse_endpoint("tcp:3456"),
            Ok("0.0.0.0:3456".parse().unwrap())
        );
        assert_eq!(
            parse_endpoint("tcp:interface=10.0.0.1:port=80"),
            Ok("10.0.0.1:80".parse().unwrap())
        );
        assert!(parse_endpoint("unix:/tmp/x").is_err());
        assert!(parse_endpoint("tcp:99999").is_err());
    }

    #[test]
    fn stock_config_loads() {
        let text = "[node]\nnickname = stock1\nweb.port = tcp:3456:interface=127.0.0.1\ntub.port = tcp:47999:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:47999\n[storage]\nenabled = true\nreserved_space = 1G\n";
        let ini = Ini::parse(text).unwrap();
        let c = NodeConfig::from_ini(Path::new("/x"), ini, "tahoe.cfg").unwrap();
        assert_eq!(c.nickname, "stock1");
        assert_eq!(c.tub_port, Some("127.0.0.1:47999".parse().unwrap()));
        assert_eq!(c.tub_location, vec!["tcp:127.0.0.1:47999".to_string()]);
        assert!(c.storage.enabled);
        assert_eq!(c.storage.reserved_space, 1_000_000_000);
        assert_eq!(c.storage.backend, "disk");
        assert_eq!(c.client, ClientConfig::default());
        let shares =
            Ini::parse("[client]\nshares.needed = 2\nshares.happy = 4\nshares.total = 5\n")
                .unwrap();
        let c = NodeConfig::from_ini(Path::new("/x"), shares, "tahoe.cfg").unwrap();
        assert_eq!(
            (
                c.client.shares_needed,
                c.client.shares_happy,
                c.client.shares_total
            ),
            (2, 4, 5)
        );
        for text in [
            "[client]\nshares.needed = 11\n",
            "[client]\nshares.total = 0\n",
            "[client]\nshares.happy = x\n",
        ] {
            let e = NodeConfig::from_ini(Path::new("/x"), Ini::parse(text).unwrap(), "tahoe.cfg")
                .unwrap_err()
                .to_string();
            assert!(e.contains("[client] shares."), "{e}");
        }
        let bad = Ini::parse("[storage]\nenabled = maybe\n").unwrap();
        let e = NodeConfig::from_ini(Path::new("/x"), bad, "tahoe.cfg")
            .unwrap_err()
            .to_string();
        assert!(e.contains("enabled") && e.contains("maybe"), "{e}");
    }
}

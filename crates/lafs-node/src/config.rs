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
    /// `disk` (default) or `cloud.s3` (settings: [`S3Config::from_ini`]).
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
    /// `[client] enabled` (lafs; default true): whether a node with a web port runs a client.
    /// `lafs init --storage --web` writes `false`: such a node's web server shows only its
    /// storage pages.
    pub client_enabled: bool,
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
        // `s3` is the Tahoe cloud branch's alias of `cloud.s3`.
        let backend = if backend == "s3" {
            "cloud.s3".to_string()
        } else {
            backend
        };
        match backend.as_str() {
            "disk" => {}
            "cloud.s3" => {
                S3Config::from_ini(&ini, p)?;
            }
            _ => {
                return Err(bad(
                    "storage",
                    "backend",
                    &backend,
                    "unsupported storage backend (this build has: disk, cloud.s3)".into(),
                ));
            }
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
            client_enabled: boolean("client", "enabled", true)?,
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

// ---------------------------------------------------------------------------------------------
// [storage] expire.*: lease expiry and garbage collection, with stock Tahoe's keys and meaning
// (docs/garbage-collection.rst): off by default; when enabled, `expire.mode` is required;
// `age` mode expires a lease at its own expiration time, or `override_lease_duration` after its
// last renewal; `cutoff-date` mode expires leases last renewed before `expire.cutoff_date`
// (UTC midnight starting that day); `expire.immutable`/`expire.mutable` choose the share kinds.
// `expire.dry_run` is a lafs addition: report what would be collected, remove nothing.

/// Stock Tahoe's `parse_duration`: `<n> day(s)`, `<n> month(s)` (31 days), `<n> mo`,
/// `<n> year(s)` (365 days); returns seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    const DAY: i64 = 24 * 60 * 60;
    let t = s.trim();
    let t = t.strip_suffix('s').unwrap_or(t);
    let (num, unit) = if let Some(n) = t.strip_suffix("day") {
        (n, DAY)
    } else if let Some(n) = t.strip_suffix("month") {
        (n, 31 * DAY)
    } else if let Some(n) = t.strip_suffix("mo") {
        (n, 31 * DAY)
    } else if let Some(n) = t.strip_suffix("year") {
        (n, 365 * DAY)
    } else {
        return Err("no unit (like day, month, or year)".into());
    };
    num.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| "expected a whole number before the unit".into())
}

/// `YYYY-MM-DD` as the Unix time of the UTC midnight that starts the day.
pub fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || format!("expected a date like 2024-01-31, got {s:?}");
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let num = |v: &str, len: usize| -> Result<i64, String> {
        if v.len() != len || !v.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        v.parse::<i64>().map_err(|_| bad())
    };
    let (y, m, d) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return Err(bad());
    }
    // Days from 1970-01-01 (proleptic Gregorian; Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) * 86_400)
}

/// `[storage] expire.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireConfig {
    /// `expire.enabled`.
    pub enabled: bool,
    /// `expire.mode` and its parameter.
    pub mode: lafs_storage::leasedb::ExpiryMode,
    /// `expire.immutable`.
    pub immutable: bool,
    /// `expire.mutable`.
    pub mutable: bool,
    /// `expire.dry_run` (lafs): report, do not remove.
    pub dry_run: bool,
}

impl ExpireConfig {
    /// The policy the crawler applies, if expiry is enabled.
    pub fn policy(&self) -> Option<lafs_storage::leasedb::ExpiryPolicy> {
        self.enabled.then_some(lafs_storage::leasedb::ExpiryPolicy {
            mode: self.mode,
            immutable: self.immutable,
            mutable: self.mutable,
        })
    }
}

impl NodeConfig {
    /// Reads `[storage] expire.*` (validated even when expiry is disabled, as stock does for
    /// the mode it reads).
    pub fn expire(&self) -> Result<ExpireConfig, ConfigError> {
        use lafs_storage::leasedb::ExpiryMode;
        let p = Self::path(&self.dir).display().to_string();
        let get = |key: &str| {
            self.ini
                .get("storage", key)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let bad = |key: &str, value: &str, message: String| ConfigError::Value {
            path: p.clone(),
            section: "storage".into(),
            key: key.into(),
            value: value.into(),
            message,
        };
        let boolean = |key: &str, default: bool| -> Result<bool, ConfigError> {
            match get(key).map(str::to_ascii_lowercase) {
                None => Ok(default),
                Some(v) => match v.as_str() {
                    "true" | "yes" | "on" | "1" => Ok(true),
                    "false" | "no" | "off" | "0" => Ok(false),
                    _ => Err(bad(key, &v, "expected true or false".into())),
                },
            }
        };
        let enabled = boolean("expire.enabled", false)?;
        let mode_name = match get("expire.mode") {
            Some(m) => m.to_string(),
            None if enabled => {
                return Err(bad(
                    "expire.mode",
                    "",
                    "required when expire.enabled is true (age or cutoff-date)".into(),
                ));
            }
            None => "age".into(),
        };
        let mode = match mode_name.as_str() {
            "age" => match get("expire.override_lease_duration") {
                None => ExpiryMode::ExpirationTime,
                Some(v) => ExpiryMode::Age {
                    override_lease_duration: parse_duration(v)
                        .map_err(|m| bad("expire.override_lease_duration", v, m))?,
                },
            },
            "cutoff-date" => {
                let v = get("expire.cutoff_date").ok_or_else(|| {
                    bad(
                        "expire.cutoff_date",
                        "",
                        "required when expire.mode is cutoff-date".into(),
                    )
                })?;
                ExpiryMode::CutoffDate {
                    cutoff: parse_date(v).map_err(|m| bad("expire.cutoff_date", v, m))?,
                }
            }
            other => {
                return Err(bad(
                    "expire.mode",
                    other,
                    "expected age or cutoff-date".into(),
                ));
            }
        };
        Ok(ExpireConfig {
            enabled,
            mode,
            immutable: boolean("expire.immutable", true)?,
            mutable: boolean("expire.mutable", true)?,
            dry_run: boolean("expire.dry_run", false)?,
        })
    }
}

impl NodeConfig {
    /// `[storage] accounts.unknown_keys` (lafs): `accept` (default) creates an account for a
    /// client key seen for the first time; `refuse` serves only keys the operator added.
    pub fn accept_unknown_keys(&self) -> Result<bool, ConfigError> {
        match self
            .ini
            .get("storage", "accounts.unknown_keys")
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            None | Some("accept") => Ok(true),
            Some("refuse") => Ok(false),
            Some(other) => Err(ConfigError::Value {
                path: Self::path(&self.dir).display().to_string(),
                section: "storage".into(),
                key: "accounts.unknown_keys".into(),
                value: other.into(),
                message: "expected accept or refuse".into(),
            }),
        }
    }
}

#[cfg(test)]
mod expire_tests {
    use super::*;
    use lafs_storage::leasedb::ExpiryMode;

    fn load(text: &str) -> Result<ExpireConfig, ConfigError> {
        let ini = Ini::parse(text).unwrap();
        NodeConfig::from_ini(Path::new("/x"), ini, "tahoe.cfg")
            .unwrap()
            .expire()
    }

    #[test]
    fn durations_and_dates_follow_tahoe() {
        assert_eq!(parse_duration("60 days"), Ok(60 * 86_400));
        assert_eq!(parse_duration("1 day"), Ok(86_400));
        assert_eq!(parse_duration("2 months"), Ok(62 * 86_400));
        assert_eq!(parse_duration("3mo"), Ok(93 * 86_400));
        assert_eq!(parse_duration("1 year"), Ok(365 * 86_400));
        assert!(parse_duration("60").is_err());
        assert!(parse_duration("x days").is_err());
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2009-03-18"), Ok(1_237_334_400));
        assert_eq!(parse_date("2000-02-29"), Ok(951_782_400));
        assert!(parse_date("2001-02-29").is_err());
        assert!(parse_date("2009-3-18").is_err());
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn expire_keys() {
        let off = load("[storage]\nenabled = true\n").unwrap();
        assert!(!off.enabled && off.policy().is_none());
        let age = load("[storage]\nexpire.enabled = true\nexpire.mode = age\n").unwrap();
        assert_eq!(age.mode, ExpiryMode::ExpirationTime);
        assert!(age.policy().is_some_and(|p| p.immutable && p.mutable));
        let o = load("[storage]\nexpire.enabled = true\nexpire.mode = age\nexpire.override_lease_duration = 60 days\nexpire.mutable = false\nexpire.dry_run = true\n").unwrap();
        assert_eq!(
            o.mode,
            ExpiryMode::Age {
                override_lease_duration: 60 * 86_400
            }
        );
        assert!(!o.mutable && o.immutable && o.dry_run);
        let ini = Ini::parse("[storage]\naccounts.unknown_keys = refuse\n").unwrap();
        let n = NodeConfig::from_ini(Path::new("/x"), ini, "tahoe.cfg").unwrap();
        assert!(!n.accept_unknown_keys().unwrap());
        let ini = Ini::parse("[storage]\naccounts.unknown_keys = maybe\n").unwrap();
        let n = NodeConfig::from_ini(Path::new("/x"), ini, "tahoe.cfg").unwrap();
        assert!(n.accept_unknown_keys().is_err());
        let c = load("[storage]\nexpire.enabled = true\nexpire.mode = cutoff-date\nexpire.cutoff_date = 2009-03-18\n").unwrap();
        assert_eq!(
            c.mode,
            ExpiryMode::CutoffDate {
                cutoff: 1_237_334_400
            }
        );
        for bad in [
            "[storage]\nexpire.enabled = true\n",
            "[storage]\nexpire.enabled = true\nexpire.mode = cutoff-date\n",
            "[storage]\nexpire.enabled = true\nexpire.mode = sometimes\n",
            "[storage]\nexpire.enabled = true\nexpire.mode = age\nexpire.override_lease_duration = 60\n",
            "[storage]\nexpire.enabled = perhaps\n",
        ] {
            let e = load(bad).unwrap_err().to_string();
            assert!(e.contains("expire."), "{e}");
        }
    }
}

/// `[storage] backend = cloud.s3` settings, with the Tahoe cloud branch's key names
/// (`s3.bucket`, `s3.access_key_id`, `s3.url`; the secret key is `private/s3secret`) plus
/// `s3.region`, `s3.path_style` (default true: `URL/bucket/key` rather than
/// `bucket.HOST/key`) and `s3.chunk_size` (default 512 KiB, the branch's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// `s3.bucket`.
    pub bucket: String,
    /// `s3.access_key_id`.
    pub access_key_id: String,
    /// `s3.url` (the branch's default: Amazon).
    pub url: Option<String>,
    /// `s3.region`.
    pub region: Option<String>,
    /// `s3.path_style`.
    pub path_style: bool,
    /// `s3.chunk_size` in bytes.
    pub chunk_size: u64,
}

impl S3Config {
    /// Reads the `s3.*` keys of `[storage]`; `path` names the file in errors.
    pub fn from_ini(ini: &Ini, path: &str) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            ini.get("storage", key)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let bad = |key: &str, value: &str, message: &str| ConfigError::Value {
            path: path.to_string(),
            section: "storage".into(),
            key: key.into(),
            value: value.into(),
            message: message.into(),
        };
        let required =
            |key: &str| get(key).ok_or_else(|| bad(key, "", "required with backend = cloud.s3"));
        let path_style = match get("s3.path_style").map(|v| v.to_ascii_lowercase()) {
            None => true,
            Some(v) => match v.as_str() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => return Err(bad("s3.path_style", &v, "expected true or false")),
            },
        };
        let chunk_size = match get("s3.chunk_size") {
            None => 512 * 1024,
            Some(v) => match parse_abbreviated_size(&v) {
                Ok(n) if (4096..=(64 << 20)).contains(&n) => n,
                Ok(_) => return Err(bad("s3.chunk_size", &v, "must be 4KiB .. 64MiB")),
                Err(m) => return Err(bad("s3.chunk_size", &v, &m)),
            },
        };
        if let Some(u) = get("s3.url")
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(bad("s3.url", &u, "expected an http:// or https:// URL"));
        }
        Ok(Self {
            bucket: required("s3.bucket")?,
            access_key_id: required("s3.access_key_id")?,
            url: get("s3.url"),
            region: get("s3.region"),
            path_style,
            chunk_size,
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

#[cfg(test)]
mod cloud_tests {
    use super::*;

    #[test]
    fn cloud_s3_settings() {
        let text = "[storage]\nenabled = true\nbackend = cloud.s3\ns3.bucket = shares\ns3.access_key_id = AKID\ns3.url = http://127.0.0.1:9000\ns3.region = garage\ns3.path_style = false\ns3.chunk_size = 64KiB\n";
        let ini = Ini::parse(text).unwrap();
        let c = NodeConfig::from_ini(Path::new("/x"), ini.clone(), "tahoe.cfg").unwrap();
        assert_eq!(c.storage.backend, "cloud.s3");
        let s3 = S3Config::from_ini(&ini, "tahoe.cfg").unwrap();
        assert_eq!(
            s3,
            S3Config {
                bucket: "shares".into(),
                access_key_id: "AKID".into(),
                url: Some("http://127.0.0.1:9000".into()),
                region: Some("garage".into()),
                path_style: false,
                chunk_size: 64 * 1024,
            }
        );
        // The branch's alias, and its defaults.
        let ini =
            Ini::parse("[storage]\nbackend = s3\ns3.bucket = b\ns3.access_key_id = k\n").unwrap();
        let c = NodeConfig::from_ini(Path::new("/x"), ini.clone(), "tahoe.cfg").unwrap();
        assert_eq!(c.storage.backend, "cloud.s3");
        let s3 = S3Config::from_ini(&ini, "tahoe.cfg").unwrap();
        assert!(s3.path_style && s3.url.is_none() && s3.chunk_size == 512 * 1024);
        for (text, key) in [
            (
                "[storage]\nbackend = cloud.s3\ns3.access_key_id = k\n",
                "s3.bucket",
            ),
            (
                "[storage]\nbackend = cloud.s3\ns3.bucket = b\n",
                "s3.access_key_id",
            ),
            (
                "[storage]\nbackend = cloud.s3\ns3.bucket = b\ns3.access_key_id = k\ns3.chunk_size = 10\n",
                "s3.chunk_size",
            ),
            (
                "[storage]\nbackend = cloud.s3\ns3.bucket = b\ns3.access_key_id = k\ns3.url = ftp://x\n",
                "s3.url",
            ),
            ("[storage]\nbackend = cloud.msazure\n", "backend"),
        ] {
            let e = NodeConfig::from_ini(Path::new("/x"), Ini::parse(text).unwrap(), "tahoe.cfg")
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}

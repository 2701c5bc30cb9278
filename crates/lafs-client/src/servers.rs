//! `private/servers.yaml`: the static list of storage servers, in stock Tahoe's format, so one
//! file serves stock and lafs clients alike.
//!
//! ```yaml
//! storage:
//!   v0-<52 base32 chars>:              # server id
//!     ann:
//!       nickname: stor1
//!       anonymous-storage-FURL: pb://<tubid>@tcp:127.0.0.1:47900/<swissnum>
//!       anonymous-storage-NURLs: [ "pb://<spki>@127.0.0.1:47900/<swissnum>#v=1" ]
//!       permutation-seed-base32: <base32>
//! ```
//!
//! What each field is for, following stock (`client.load_static_servers`,
//! `storage_client._parse_announcement`, `HTTPNativeStorageServer`):
//! - the server id names the server (status pages, errors) and may seed the ring;
//! - the FURL is required even though lafs never speaks Foolscap: its tub id seeds lease
//!   secrets and mutable write enablers, so two clients must agree on it;
//! - the NURLs say where and how to reach the GBS (HTTPS) service; a server without any is
//!   Foolscap-only, which lafs cannot talk to: it is reported in
//!   [`ServersFile::skipped`] and left out;
//! - the permutation seed places the server on the ring ([`crate::ring`]): base32-decoded
//!   `permutation-seed-base32` if present, else the decoded key of a `v0-<key>` id, else
//!   `sha256(server id)` (stock logs that clients may then disagree).
//!
//! Stock skips a server whose entry it cannot use and carries on; so do we, with the reason
//! recorded. A file that is not YAML, or whose shape is wrong above the entries, is an error.
//! Unknown keys are ignored (stock has `connections:` and grid-manager certificates there).
//! YAML aliases are refused, and nesting is bounded, so a small file cannot expand into a
//! large tree.
//!
//! The parser is `yaml-rust2` (pure Rust, maintained, a few small dependencies): serde_yaml
//! is unmaintained, and a hand-written subset parser would refuse files that PyYAML accepts.

use std::path::Path;

use lafs_core::base32;
use lafs_protocol::{Nurl, TubId};
use sha2::{Digest, Sha256};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::{Yaml, YamlLoader};

/// Largest `servers.yaml` read (a grid of thousands of servers fits in a few MiB).
pub const MAX_FILE_SIZE: u64 = 16 << 20;
/// Deepest nesting of YAML collections accepted.
const MAX_DEPTH: usize = 32;

/// Why `servers.yaml` could not be used at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServersError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("{path} is larger than {MAX_FILE_SIZE} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// Not YAML, or YAML we refuse (aliases, deep nesting, several documents).
    #[error("servers.yaml is not valid: {0}")]
    Syntax(String),
    /// Valid YAML of the wrong shape.
    #[error("servers.yaml: {0}")]
    Shape(String),
}

impl ServersError {
    /// Whether the file does not exist (stock treats that as "no static servers").
    pub fn is_not_found(&self) -> bool {
        matches!(self, ServersError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// One usable server from `servers.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    /// The server id (the key under `storage:`), e.g. `v0-<base32 key>`.
    pub id: String,
    /// Its nickname, possibly empty.
    pub nickname: String,
    /// The FURL's tub id: the seed of lease secrets and write enablers.
    pub tubid: TubId,
    /// Where to reach its GBS service, in file order (at least one).
    pub nurls: Vec<Nurl>,
    /// Its seed on the permuted ring.
    pub permutation_seed: Vec<u8>,
}

impl ServerEntry {
    /// Stock's short name: the first 8 characters of the id after a `v0-` prefix.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// The nickname if there is one, else the short id: what errors and logs call it.
    pub fn display_name(&self) -> String {
        if self.nickname.is_empty() {
            self.short_id().to_owned()
        } else {
            format!("{} ({})", self.nickname, self.short_id())
        }
    }
}

/// Stock's short form of a server id.
pub fn short_id(id: &str) -> &str {
    let rest = id.strip_prefix("v0-").unwrap_or(id);
    match rest.char_indices().nth(8) {
        Some((i, _)) => &rest[..i],
        None => rest,
    }
}

/// A server entry that was left out, and why (never contains the swissnum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedServer {
    /// The server id.
    pub id: String,
    /// Why it cannot be used.
    pub reason: String,
}

/// The parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServersFile {
    /// Usable servers, sorted by id (stock's processing order).
    pub servers: Vec<ServerEntry>,
    /// Entries left out.
    pub skipped: Vec<SkippedServer>,
}

/// Reads and parses `path` (normally `<node>/private/servers.yaml`).
pub fn read_servers_yaml(path: &Path) -> Result<ServersFile, ServersError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| ServersError::Io {
        path: shown.clone(),
        source,
    })?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(ServersError::TooLarge { path: shown });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ServersError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_servers_yaml(&text)
}

/// Refuses aliases (which the loader would expand by copying) and deep nesting.
fn prescan(text: &str) -> Result<(), ServersError> {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| ServersError::Syntax(e.to_string()))?;
        match event {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(ServersError::Syntax("more than one YAML document".into()));
                }
            }
            Event::Alias(_) => {
                return Err(ServersError::Syntax(format!(
                    "YAML aliases are not supported (line {})",
                    mark.line()
                )));
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ServersError::Syntax(format!(
                        "nested deeper than {MAX_DEPTH} levels (line {})",
                        mark.line()
                    )));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// A scalar as the text PyYAML would have given a string for (numbers and booleans as
/// written); `None` for collections and null.
fn scalar_text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(map: &'a yaml_rust2::yaml::Hash, key: &str) -> Option<&'a Yaml> {
    map.get(&Yaml::String(key.to_owned()))
        .filter(|v| !matches!(v, Yaml::Null))
}

/// Parses the text of a `servers.yaml`.
pub fn parse_servers_yaml(text: &str) -> Result<ServersFile, ServersError> {
    prescan(text)?;
    let docs = YamlLoader::load_from_str(text).map_err(|e| ServersError::Syntax(e.to_string()))?;
    let root = match docs.into_iter().next() {
        None | Some(Yaml::Null) => return Ok(ServersFile::default()),
        Some(Yaml::Hash(h)) => h,
        Some(_) => return Err(ServersError::Shape("the top level is not a mapping".into())),
    };
    let storage = match get(&root, "storage") {
        None => return Ok(ServersFile::default()),
        Some(Yaml::Hash(h)) => h,
        Some(_) => return Err(ServersError::Shape("`storage` is not a mapping".into())),
    };
    let mut out = ServersFile::default();
    for (key, value) in storage {
        let Some(id) = scalar_text(key).filter(|s| !s.is_empty()) else {
            out.skipped.push(SkippedServer {
                id: format!("{key:?}"),
                reason: "the server id is not a string".into(),
            });
            continue;
        };
        match parse_entry(&id, value) {
            Ok(entry) => out.servers.push(entry),
            Err(reason) => out.skipped.push(SkippedServer { id, reason }),
        }
    }
    out.servers.sort_by(|a, b| a.id.cmp(&b.id));
    out.skipped.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn parse_entry(id: &str, value: &Yaml) -> Result<ServerEntry, String> {
    let Yaml::Hash(server) = value else {
        return Err("the entry is not a mapping".into());
    };
    let Some(Yaml::Hash(ann)) = get(server, "ann") else {
        return Err("no `ann` mapping".into());
    };
    let nickname = get(ann, "nickname")
        .and_then(scalar_text)
        .unwrap_or_default();
    let furl = get(ann, "anonymous-storage-FURL")
        .and_then(scalar_text)
        .ok_or("no anonymous-storage-FURL (its tub id seeds lease secrets)")?;
    let tubid = furl_tubid(&furl)?;
    let nurl_texts: Vec<String> = match get(ann, "anonymous-storage-NURLs") {
        None => Vec::new(),
        Some(Yaml::Array(a)) => a.iter().filter_map(scalar_text).collect(),
        Some(_) => return Err("anonymous-storage-NURLs is not a list".into()),
    };
    if nurl_texts.is_empty() {
        return Err(
            "no anonymous-storage-NURLs: a Foolscap-only server, which lafs cannot use".into(),
        );
    }
    let mut nurls = Vec::new();
    let mut bad = Vec::new();
    for (i, text) in nurl_texts.iter().enumerate() {
        // The error names the position, not the NURL: the NURL holds the swissnum.
        match text.parse::<Nurl>() {
            Ok(n) => nurls.push(n),
            Err(e) => bad.push(format!("NURL #{}: {e}", i + 1)),
        }
    }
    if nurls.is_empty() {
        return Err(format!("no usable NURL ({})", bad.join("; ")));
    }
    if !bad.is_empty() {
        tracing::warn!(server = %short_id(id), problems = %bad.join("; "), "servers.yaml: some NURLs ignored");
    }
    let permutation_seed = permutation_seed(id, get(ann, "permutation-seed-base32"))?;
    Ok(ServerEntry {
        id: id.to_owned(),
        nickname,
        tubid,
        nurls,
        permutation_seed,
    })
}

/// The tub id of a FURL (`pb://<tubid>@...`): stock reads just that part.
fn furl_tubid(furl: &str) -> Result<TubId, String> {
    let rest = furl
        .strip_prefix("pb://")
        .ok_or("the FURL does not start with pb://")?;
    let (tubid, _) = rest.split_once('@').ok_or("the FURL has no `@`")?;
    tubid
        .to_ascii_lowercase()
        .parse()
        .map_err(|e| format!("the FURL's tub id: {e}"))
}

/// The ring seed, as stock's `_parse_announcement` derives it.
fn permutation_seed(id: &str, announced: Option<&Yaml>) -> Result<Vec<u8>, String> {
    if let Some(seed) = announced {
        let text = scalar_text(seed).ok_or("permutation-seed-base32 is not a string")?;
        return base32::decode(&text).map_err(|e| format!("permutation-seed-base32: {e}"));
    }
    if let Some(key) = id.strip_prefix("v0-")
        && key.len() == 52
        && key.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        // Stock decodes it and fails (skipping the server) if it is not base32.
        return base32::decode(key).map_err(|e| format!("the v0- server id's key: {e}"));
    }
    Ok(Sha256::digest(id.as_bytes()).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPKI: &str = "Xok43PpKFfFU7DXowRCewMJ2UMoevoSgRPvTOa3N8oU";
    const SWISS: &str = "g44v5ghvq7fx65wsuvuhuyrgjioef6rw";
    const TUBID: &str = "nhmtzltnlduhbd4yzkbgdx3rsxqmmhzi";
    const KEY: &str = "tt7evqgi6aulcqkfzpmnmr4d6v7glrmimmh2qpj3xmsn5bqjxtqa";

    fn nurl(port: u16) -> String {
        format!("pb://{SPKI}@127.0.0.1:{port}/{SWISS}#v=1")
    }

    fn furl() -> String {
        format!("pb://{TUBID}@tcp:127.0.0.1:47900/{SWISS}")
    }

    #[test]
    fn parses_stock_and_lafs_shapes() {
        let seed = base32::encode(KEY.as_bytes());
        let yaml = format!(
            "storage:\n  v0-{KEY}:\n    ann:\n      nickname: \"stor1\"\n      \
             anonymous-storage-FURL: \"{}\"\n      anonymous-storage-NURLs:\n      - \"{}\"\n      \
             permutation-seed-base32: {seed}\n  \
             other-server:\n    ann:\n      anonymous-storage-FURL: {}\n      \
             anonymous-storage-NURLs: [ \"{}\", \"{}\" ]\n    connections:\n      tcp: tor\n",
            furl(),
            nurl(1),
            furl(),
            nurl(2),
            nurl(3),
        );
        let f = parse_servers_yaml(&yaml).unwrap();
        assert!(f.skipped.is_empty(), "{:?}", f.skipped);
        assert_eq!(f.servers.len(), 2);
        let other = &f.servers[0];
        assert_eq!(other.id, "other-server");
        assert_eq!(other.nickname, "");
        assert_eq!(other.nurls.len(), 2);
        assert_eq!(other.nurls[1].port, 3);
        assert_eq!(
            other.permutation_seed,
            Sha256::digest(b"other-server").to_vec()
        );
        assert_eq!(other.display_name(), "other-se");
        let stor = &f.servers[1];
        assert_eq!(stor.nickname, "stor1");
        assert_eq!(stor.tubid.to_string(), TUBID);
        assert_eq!(stor.permutation_seed, KEY.as_bytes());
        assert_eq!(stor.short_id(), &KEY[..8]);
        assert_eq!(stor.display_name(), format!("stor1 ({})", &KEY[..8]));
    }

    #[test]
    fn seed_from_v0_id_without_announced_seed() {
        let yaml = format!(
            "storage:\n  v0-{KEY}:\n    ann:\n      anonymous-storage-FURL: {}\n      \
             anonymous-storage-NURLs: [\"{}\"]\n",
            furl(),
            nurl(1)
        );
        let f = parse_servers_yaml(&yaml).unwrap();
        assert_eq!(
            f.servers[0].permutation_seed,
            base32::decode(KEY).unwrap(),
            "raw key bytes, not the ASCII"
        );
    }

    #[test]
    fn bad_entries_are_skipped_with_reasons() {
        let yaml = format!(
            "storage:\n  \
             foolscap-only:\n    ann:\n      anonymous-storage-FURL: {furl}\n  \
             no-ann:\n    nickname: x\n  \
             no-furl:\n    ann:\n      anonymous-storage-NURLs: [\"{n}\"]\n  \
             bad-nurl:\n    ann:\n      anonymous-storage-FURL: {furl}\n      anonymous-storage-NURLs: [\"pb://nope\"]\n  \
             bad-seed:\n    ann:\n      anonymous-storage-FURL: {furl}\n      anonymous-storage-NURLs: [\"{n}\"]\n      permutation-seed-base32: \"1!\"\n  \
             good:\n    ann:\n      anonymous-storage-FURL: {furl}\n      anonymous-storage-NURLs: [\"{n}\"]\n",
            furl = furl(),
            n = nurl(1)
        );
        let f = parse_servers_yaml(&yaml).unwrap();
        assert_eq!(f.servers.len(), 1);
        assert_eq!(f.servers[0].id, "good");
        let reasons: Vec<(&str, &str)> = f
            .skipped
            .iter()
            .map(|s| (s.id.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|(id, r)| *id == "foolscap-only" && r.contains("Foolscap-only"))
        );
        assert!(
            reasons
                .iter()
                .any(|(id, r)| *id == "no-ann" && r.contains("ann"))
        );
        assert!(
            reasons
                .iter()
                .any(|(id, r)| *id == "no-furl" && r.contains("FURL"))
        );
        assert!(
            reasons
                .iter()
                .any(|(id, r)| *id == "bad-nurl" && r.contains("NURL #1"))
        );
        assert!(
            reasons
                .iter()
                .any(|(id, r)| *id == "bad-seed" && r.contains("permutation-seed"))
        );
        for s in &f.skipped {
            assert!(!s.reason.contains(SWISS), "swissnum leaked: {}", s.reason);
        }
    }

    #[test]
    fn whole_file_errors() {
        assert!(matches!(
            parse_servers_yaml("storage: [1, 2]"),
            Err(ServersError::Shape(_))
        ));
        assert!(matches!(
            parse_servers_yaml("- a\n- b\n"),
            Err(ServersError::Shape(_))
        ));
        assert!(matches!(
            parse_servers_yaml("storage: {a: [}"),
            Err(ServersError::Syntax(_))
        ));
        assert!(matches!(
            parse_servers_yaml("a: &x [1]\nb: *x\n"),
            Err(ServersError::Syntax(_))
        ));
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            parse_servers_yaml(&deep),
            Err(ServersError::Syntax(_))
        ));
        assert!(matches!(
            parse_servers_yaml("---\na: 1\n---\nb: 2\n"),
            Err(ServersError::Syntax(_))
        ));
        assert_eq!(parse_servers_yaml("").unwrap(), ServersFile::default());
        assert_eq!(
            parse_servers_yaml("other: 1").unwrap(),
            ServersFile::default()
        );
        assert_eq!(
            parse_servers_yaml("storage:").unwrap(),
            ServersFile::default()
        );
        let missing = read_servers_yaml(Path::new("/nonexistent/servers.yaml")).unwrap_err();
        assert!(missing.is_not_found());
    }

    #[test]
    fn short_ids() {
        assert_eq!(short_id("v0-abcdefghijk"), "abcdefgh");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id("ééééééééé"), "éééééééé");
    }
}

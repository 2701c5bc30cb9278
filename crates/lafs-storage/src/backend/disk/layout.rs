//! Tahoe's directory layout under `storage/shares/`, and strict parsing of the names found
//! there. Paths are only ever built from a [`StorageIndex`] (its base32) and a share number;
//! names read from disk are accepted only if they parse back to exactly those forms.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::{ShareNum, StorageIndex};

/// Name of the staging directory inside `shares/` (stock's, too).
pub(super) const INCOMING: &str = "incoming";
/// Directory under `incoming/` for temporary copies of mutable shares being rewritten.
/// Stock removes all of `incoming/` at start, so leftovers never confuse it.
const MUTABLE_TMP: &str = "lafs-mutable-tmp";

/// Paths of one storage directory.
#[derive(Debug)]
pub(super) struct Layout {
    /// `storage/shares`.
    pub shares: PathBuf,
    /// `storage/shares/incoming`.
    pub incoming: PathBuf,
    tmp_counter: AtomicU64,
}

impl Layout {
    pub fn new(storage_dir: &Path) -> Self {
        let shares = storage_dir.join("shares");
        let incoming = shares.join(INCOMING);
        Self {
            shares,
            incoming,
            tmp_counter: AtomicU64::new(0),
        }
    }

    /// `shares/<si[:2]>`.
    pub fn prefix_dir(&self, si: &StorageIndex) -> PathBuf {
        self.shares.join(si.prefix())
    }

    /// `shares/<si[:2]>/<si>`.
    pub fn si_dir(&self, si: &StorageIndex) -> PathBuf {
        self.prefix_dir(si).join(si.to_base32())
    }

    /// `shares/<si[:2]>/<si>/<shnum>`.
    pub fn share_path(&self, si: &StorageIndex, shnum: ShareNum) -> PathBuf {
        self.si_dir(si).join(shnum.to_string())
    }

    /// `shares/incoming/<si[:2]>`.
    pub fn incoming_prefix_dir(&self, si: &StorageIndex) -> PathBuf {
        self.incoming.join(si.prefix())
    }

    /// `shares/incoming/<si[:2]>/<si>`.
    pub fn incoming_si_dir(&self, si: &StorageIndex) -> PathBuf {
        self.incoming_prefix_dir(si).join(si.to_base32())
    }

    /// `shares/incoming/<si[:2]>/<si>/<shnum>`: where stock stages an upload, and so do we.
    pub fn incoming_path(&self, si: &StorageIndex, shnum: ShareNum) -> PathBuf {
        self.incoming_si_dir(si).join(shnum.to_string())
    }

    /// `shares/incoming/lafs-mutable-tmp`.
    pub fn mutable_tmp_dir(&self) -> PathBuf {
        self.incoming.join(MUTABLE_TMP)
    }

    /// A fresh temporary path for rewriting a mutable share.
    pub fn mutable_tmp_path(&self, si: &StorageIndex, shnum: ShareNum) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.mutable_tmp_dir()
            .join(format!("{si}.{shnum}.{}.{n}", std::process::id()))
    }
}

/// Rank of a base32 character in Tahoe's alphabet (`a`..`z`, `2`..`7`), which is also the
/// order of the bits it encodes.
fn b32_rank(c: u8) -> Option<u8> {
    match c {
        b'a'..=b'z' => Some(c - b'a'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    }
}

/// Sort key of a prefix directory name (`shares/<xy>`), or `None` if it is not one.
fn prefix_key(name: &OsStr) -> Option<(u8, u8)> {
    let b = name.to_str()?.as_bytes();
    if b.len() != 2 {
        return None;
    }
    Some((b32_rank(b[0])?, b32_rank(b[1])?))
}

/// The share number a file name stands for: canonical decimal only (`0`, `7`, `255`; not
/// `007`, `+7`, `7.tmp`), as lafs writes them.
pub(super) fn parse_shnum(name: &OsStr) -> Option<ShareNum> {
    let s = name.to_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Whether `path` is a real directory (not a symlink to one).
pub(super) fn is_real_dir(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens the share file of `(si, shnum)` like [`open_share`](super::fsutil::open_share),
/// refusing to go through a prefix or storage index directory that is a symlink.
pub(super) fn open_share_file(
    layout: &Layout,
    si: &StorageIndex,
    shnum: ShareNum,
    write: bool,
) -> io::Result<Option<std::fs::File>> {
    if !is_real_dir(&layout.prefix_dir(si))? || !is_real_dir(&layout.si_dir(si))? {
        return Ok(None);
    }
    super::fsutil::open_share(&layout.share_path(si, shnum), write)
}

/// Share files of one storage index directory: `(shnum, path)` for regular files (symlinks
/// are skipped) with canonical share-number names, sorted by number.
pub(super) fn share_files(
    layout: &Layout,
    si: &StorageIndex,
) -> io::Result<Vec<(ShareNum, PathBuf)>> {
    if !is_real_dir(&layout.prefix_dir(si))? {
        return Ok(Vec::new());
    }
    let dir = layout.si_dir(si);
    if !is_real_dir(&dir)? {
        return Ok(Vec::new());
    }
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(shnum) = parse_shnum(&entry.file_name()) else {
            continue;
        };
        if entry.file_type()?.is_file() {
            out.push((shnum, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

/// Whether a storage index directory holds at least one share-named regular file.
fn has_share(dir: &Path) -> io::Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if parse_shnum(&entry.file_name()).is_some() && entry.file_type()?.is_file() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Storage indexes holding at least one share, ascending (byte order, which is base32
/// alphabet order), strictly after `after`, at most `limit`. Walks prefix directories in
/// order and stops as soon as `limit` are found. Anything that is not a real directory with a
/// canonical name (`incoming`, stray files, symlinks, upper case, wrong prefix) is skipped.
pub(super) fn storage_indexes(
    layout: &Layout,
    after: Option<StorageIndex>,
    limit: usize,
) -> io::Result<Vec<StorageIndex>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let entries = match fs::read_dir(&layout.shares) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let after_key = after
        .as_ref()
        .and_then(|si| prefix_key(OsStr::new(&si.prefix())));
    let mut prefixes = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(key) = prefix_key(&name) else {
            continue;
        };
        if after_key.is_some_and(|a| key < a) || !entry.file_type()?.is_dir() {
            continue;
        }
        prefixes.push((key, entry.path(), name));
    }
    prefixes.sort_unstable_by_key(|(k, _, _)| *k);
    for (_, dir, prefix_name) in prefixes {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(si) = name.to_str().and_then(StorageIndex::from_base32) else {
                continue;
            };
            if OsStr::new(&si.prefix()) != prefix_name.as_os_str()
                || after.is_some_and(|a| si <= a)
                || !entry.file_type()?.is_dir()
            {
                continue;
            }
            found.push((si, entry.path()));
        }
        found.sort_unstable_by_key(|(si, _)| *si);
        for (si, path) in found {
            if has_share(&path)? {
                out.push(si);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_numbers_are_canonical_decimal() {
        for (name, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("255", Some(255)),
            ("65535", Some(65535)),
            ("65536", None),
            ("007", None),
            ("00", None),
            ("+7", None),
            ("-1", None),
            (" 7", None),
            ("7.tmp", None),
            ("", None),
            ("..", None),
        ] {
            assert_eq!(parse_shnum(OsStr::new(name)), want, "{name:?}");
        }
    }

    #[test]
    fn prefix_order_is_byte_order() {
        let mut sis: Vec<StorageIndex> = [0u8, 1, 0x07, 0x08, 0x7f, 0x80, 0xc0, 0xf8, 0xff]
            .iter()
            .map(|b| StorageIndex([*b; 16]))
            .collect();
        sis.sort();
        let keys: Vec<_> = sis
            .iter()
            .map(|si| prefix_key(OsStr::new(&si.prefix())).unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(prefix_key(OsStr::new("in")), Some((8, 13)));
        assert_eq!(prefix_key(OsStr::new("incoming")), None);
        assert_eq!(prefix_key(OsStr::new("A2")), None);
        assert_eq!(prefix_key(OsStr::new("a1")), None);
    }
}

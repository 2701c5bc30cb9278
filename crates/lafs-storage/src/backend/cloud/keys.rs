//! Object names, as the Tahoe cloud-backend branch (2237.cloud-backend-s4-merged.4) lays them
//! out, plus lafs's own upload markers.
//!
//! - chunk 0 of share `N` of storage index `SI`: `shares/<SI[:2]>/<SI>/<N>`;
//! - chunk `k > 0`: `shares/<SI[:2]>/<SI>/<N>.<k>`;
//! - an upload in progress: `incoming/<SI[:2]>/<SI>/<N>` (lafs only; the branch kept this
//!   in memory and lost it on a crash).
//!
//! Names are only ever built from a [`StorageIndex`] and numbers, and names read back from a
//! listing are accepted only in exactly those canonical forms (lower-case base32, decimal
//! without leading zeros), so a stray object can never be mistaken for a share.

use crate::types::{ShareNum, StorageIndex};

/// Prefix of every share object.
pub(super) const SHARES: &str = "shares/";
/// Prefix of upload markers.
pub(super) const INCOMING: &str = "incoming/";

/// `shares/<si[:2]>/<si>/`: the prefix of every chunk of every share of `si`.
pub(super) fn si_prefix(si: &StorageIndex) -> String {
    format!("{SHARES}{}/{}/", si.prefix(), si.to_base32())
}

/// The object holding chunk `chunk` of a share.
pub(super) fn chunk_key(si: &StorageIndex, shnum: ShareNum, chunk: u64) -> String {
    if chunk == 0 {
        format!("{}{shnum}", si_prefix(si))
    } else {
        format!("{}{shnum}.{chunk}", si_prefix(si))
    }
}

/// The marker of an upload in progress.
pub(super) fn incoming_key(si: &StorageIndex, shnum: ShareNum) -> String {
    format!("{INCOMING}{}/{}/{shnum}", si.prefix(), si.to_base32())
}

fn canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Parses `<si[:2]>/<si>/` followed by `rest`, returning the storage index and `rest`.
fn parse_si_path(path: &str) -> Option<(StorageIndex, &str)> {
    let (prefix, rest) = path.split_once('/')?;
    let (si_str, rest) = rest.split_once('/')?;
    let si = StorageIndex::from_base32(si_str)?;
    (si.to_base32() == si_str && si.prefix() == prefix).then_some((si, rest))
}

/// Parses a share object key into (storage index, share number, chunk number).
pub(super) fn parse_chunk_key(key: &str) -> Option<(StorageIndex, ShareNum, u64)> {
    let (si, name) = parse_si_path(key.strip_prefix(SHARES)?)?;
    let (sh, chunk) = match name.split_once('.') {
        Some((sh, c)) => (sh, canonical_u64(c).filter(|c| *c > 0)?),
        None => (name, 0),
    };
    let shnum = ShareNum::try_from(canonical_u64(sh)?).ok()?;
    Some((si, shnum, chunk))
}

/// The value (10 bits, in storage index byte order) of the two-character prefix of `si`.
pub(super) fn prefix_value(si: &StorageIndex) -> u16 {
    (u16::from(si.0[0]) << 2) | u16::from(si.0[1] >> 6)
}

/// Parses a prefix directory `shares/<p>/` into its value (see [`prefix_value`]).
pub(super) fn parse_prefix_dir(dir: &str) -> Option<u16> {
    let p = dir.strip_prefix(SHARES)?.strip_suffix('/')?;
    let digit = |c: u8| -> Option<u16> {
        match c {
            b'a'..=b'z' => Some(u16::from(c - b'a')),
            b'2'..=b'7' => Some(u16::from(c - b'2') + 26),
            _ => None,
        }
    };
    match p.as_bytes() {
        [a, b] => Some((digit(*a)? << 5) | digit(*b)?),
        _ => None,
    }
}

/// Parses an upload marker key.
pub(super) fn parse_incoming_key(key: &str) -> Option<(StorageIndex, ShareNum)> {
    let (si, name) = parse_si_path(key.strip_prefix(INCOMING)?)?;
    let shnum = ShareNum::try_from(canonical_u64(name)?).ok()?;
    Some((si, shnum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si() -> StorageIndex {
        StorageIndex([7u8; 16])
    }

    #[test]
    fn keys_follow_the_branch_layout() {
        let s = si().to_base32();
        assert_eq!(chunk_key(&si(), 3, 0), format!("shares/{}/{s}/3", &s[..2]));
        assert_eq!(
            chunk_key(&si(), 3, 12),
            format!("shares/{}/{s}/3.12", &s[..2])
        );
        assert_eq!(parse_chunk_key(&chunk_key(&si(), 3, 0)), Some((si(), 3, 0)));
        assert_eq!(
            parse_chunk_key(&chunk_key(&si(), 255, 7)),
            Some((si(), 255, 7))
        );
        assert_eq!(parse_incoming_key(&incoming_key(&si(), 9)), Some((si(), 9)));
        for bytes in [[0u8; 16], [0xff; 16], [0x80; 16], [0x07; 16], [0x3e; 16]] {
            let s = StorageIndex(bytes);
            let dir = format!("{SHARES}{}/", s.prefix());
            assert_eq!(parse_prefix_dir(&dir), Some(prefix_value(&s)), "{dir}");
        }
        assert_eq!(parse_prefix_dir("shares/a1/"), None);
        assert_eq!(parse_prefix_dir("shares/abc/"), None);
    }

    #[test]
    fn rejects_non_canonical_names() {
        let s = si().to_base32();
        let p = &s[..2];
        for bad in [
            format!("shares/{p}/{s}/03"),
            format!("shares/{p}/{s}/3.0"),
            format!("shares/{p}/{s}/3.01"),
            format!("shares/{p}/{s}/3."),
            format!("shares/{p}/{s}/x"),
            format!("shares/{p}/{s}/70000"),
            format!("shares/{p}/{}/3", s.to_uppercase()),
            format!("shares/zz/{s}/3"),
            format!("shares/{p}/{s}/3/4"),
            format!("other/{p}/{s}/3"),
        ] {
            assert_eq!(parse_chunk_key(&bad), None, "{bad}");
        }
    }
}

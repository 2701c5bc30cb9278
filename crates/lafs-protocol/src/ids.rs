//! The two identifiers every storage request carries: storage index and share number.

use std::fmt;
use std::str::FromStr;

use lafs_core::base32;

use crate::error::ProtocolError;

/// A storage index: 16 bytes, written in paths as 26 characters of canonical lower-case base32.
///
/// The only way to make one from text is [`StorageIndex::from_str`], which accepts exactly
/// `[a-z2-7]{26}` with zero trailing bits, so a `StorageIndex` is always safe to use as a path
/// component (stock's route converter is the same regex plus `si_a2b`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageIndex([u8; 16]);

impl StorageIndex {
    /// Length in bytes.
    pub const LEN: usize = 16;
    /// Length of the base32 form.
    pub const ENCODED_LEN: usize = 26;

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The canonical base32 form (26 characters).
    pub fn to_base32(&self) -> String {
        base32::encode(&self.0)
    }
}

impl FromStr for StorageIndex {
    type Err = ProtocolError;

    /// Parses exactly 26 characters of canonical base32. Anything else is
    /// [`ProtocolError::InvalidStorageIndex`] (404, as stock: its route does not match).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != Self::ENCODED_LEN {
            return Err(ProtocolError::InvalidStorageIndex);
        }
        base32::decode_array::<16>(s)
            .map(Self)
            .map_err(|_| ProtocolError::InvalidStorageIndex)
    }
}

impl fmt::Display for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base32())
    }
}

impl fmt::Debug for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageIndex({self})")
    }
}

impl From<[u8; 16]> for StorageIndex {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

/// A share number, 0 to 255.
///
/// Tahoe's erasure coding produces at most 256 shares (zfec's limit), numbered from 0, for both
/// immutable and mutable files. Stock's server takes any unsigned integer and answers 404 for
/// shares it does not have (or, on allocation, creates them); lafs refuses numbers above 255 in
/// bodies (400) and answers 404 for them in paths, which is what stock answers for a share that
/// does not exist.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareNum(u8);

impl ShareNum {
    /// The largest share number.
    pub const MAX: ShareNum = ShareNum(u8::MAX);

    /// Wraps a share number.
    pub const fn new(n: u8) -> Self {
        Self(n)
    }

    /// The number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Parses a path segment the way stock's route does (`int(signed=False)`: one or more
    /// decimal digits, leading zeros allowed) but ASCII digits only.
    ///
    /// `Ok(None)` is a well-formed number above 255 (stock: route matches, no such share);
    /// `Err(())` is not a number at all (stock: no route matches).
    pub(crate) fn parse_segment(s: &str) -> Result<Option<ShareNum>, ()> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let mut value: u32 = 0;
        for b in s.bytes() {
            value = value * 10 + u32::from(b - b'0');
            if value > u32::from(u8::MAX) {
                return Ok(None);
            }
        }
        Ok(u8::try_from(value).ok().map(ShareNum))
    }
}

impl From<u8> for ShareNum {
    fn from(n: u8) -> Self {
        Self(n)
    }
}

impl From<ShareNum> for u8 {
    fn from(n: ShareNum) -> Self {
        n.0
    }
}

impl TryFrom<u64> for ShareNum {
    type Error = ProtocolError;

    fn try_from(n: u64) -> Result<Self, Self::Error> {
        u8::try_from(n)
            .map(ShareNum)
            .map_err(|_| ProtocolError::InvalidBody(format!("share number {n} is above 255")))
    }
}

impl fmt::Display for ShareNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for ShareNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareNum({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_index_round_trip() {
        let si = StorageIndex::from_bytes([0u8; 16]);
        assert_eq!(si.to_string(), "aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(
            "aaaaaaaaaaaaaaaaaaaaaaaaaa"
                .parse::<StorageIndex>()
                .unwrap(),
            si
        );
        let si = StorageIndex::from_bytes(*b"0123456789abcdef");
        assert_eq!(si.to_string().parse::<StorageIndex>().unwrap(), si);
        assert_eq!(format!("{si:?}"), format!("StorageIndex({si})"));
    }

    #[test]
    fn storage_index_rejects() {
        for bad in [
            "",
            "aaaaaaaaaaaaaaaaaaaaaaaaa",   // 25
            "aaaaaaaaaaaaaaaaaaaaaaaaaaa", // 27
            "AAAAAAAAAAAAAAAAAAAAAAAAAA",  // upper case: stock 404s too
            "aaaaaaaaaaaaaaaaaaaaaaaaab",  // non-zero trailing bits
            "aaaaaaaaaaaaaaaaaaaaaaaaa1",
            "aaaaaaaaaaaaaaaaaaaaaaaa..",
            "aaaaaaaaaaaaaaaaaaaaaaa%2f",
            "aaaaaaaaaaaaaaaaaaaaaaaaé",
        ] {
            assert_eq!(
                bad.parse::<StorageIndex>(),
                Err(ProtocolError::InvalidStorageIndex),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn share_segments() {
        assert_eq!(ShareNum::parse_segment("0"), Ok(Some(ShareNum(0))));
        assert_eq!(ShareNum::parse_segment("007"), Ok(Some(ShareNum(7))));
        assert_eq!(ShareNum::parse_segment("255"), Ok(Some(ShareNum(255))));
        assert_eq!(ShareNum::parse_segment("256"), Ok(None));
        assert_eq!(
            ShareNum::parse_segment("99999999999999999999999999"),
            Ok(None)
        );
        for bad in ["", "-1", "+1", "1a", " 1", "١", "0x1"] {
            assert_eq!(ShareNum::parse_segment(bad), Err(()), "{bad:?}");
        }
        assert!(ShareNum::try_from(256u64).is_err());
        assert_eq!(ShareNum::try_from(255u64).unwrap(), ShareNum::MAX);
    }
}

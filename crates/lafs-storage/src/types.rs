//! Small value types shared by the storage layers.

use lafs_core::base32;
use std::fmt;

/// A storage index: 16 bytes naming one file's shares on every server.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageIndex(pub [u8; 16]);

impl StorageIndex {
    /// Parses the 26-character base32 form, refusing anything else (so it is safe as a path
    /// component).
    pub fn from_base32(s: &str) -> Option<Self> {
        base32::decode_array::<16>(s).ok().map(Self)
    }

    /// The 26-character base32 form.
    pub fn to_base32(&self) -> String {
        base32::encode(&self.0)
    }

    /// The two-character prefix directory used by Tahoe's disk layout.
    pub fn prefix(&self) -> String {
        self.to_base32()[..2].to_string()
    }

    /// The smallest storage index whose prefix (top 10 bits) is number `p` (< [`PREFIXES`]).
    pub fn first_with_prefix(p: u16) -> Self {
        let mut b = [0u8; 16];
        b[0] = (p >> 2) as u8;
        b[1] = ((p & 3) << 6) as u8;
        StorageIndex(b)
    }
}

/// Number of two-character prefixes (10 bits of the storage index), and so of prefix
/// directories in Tahoe's disk layout and of accounting-crawler steps per cycle.
pub const PREFIXES: u16 = 1024;

impl fmt::Debug for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SI({})", self.to_base32())
    }
}

impl fmt::Display for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base32())
    }
}

/// A share number (0..=255).
pub type ShareNum = u16;

/// Immutable (CHK) or mutable (SDMF/MDMF) share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShareKind {
    /// Written once, then read-only.
    Immutable,
    /// Modified by test-and-write with a write enabler.
    Mutable,
}

impl ShareKind {
    /// Stable name used in the lease database.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Immutable => "immutable",
            Self::Mutable => "mutable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_index_parsing_is_strict() {
        let si = StorageIndex([0u8; 16]);
        assert_eq!(StorageIndex::from_base32(&si.to_base32()), Some(si));
        assert_eq!(si.prefix(), "aa");
        for bad in [
            "",
            "..",
            "../../etc/passwd",
            "aaaaaaaaaaaaaaaaaaaaaaaaa",
            "AAAAAAAAAAAAAAAAAAAAAAAAAA",
            "aaaaaaaaaaaaaaaaaaaaaaaaab",
            "aaaaaaaaaaaaaaaaaaaaaaaaa/",
        ] {
            assert_eq!(StorageIndex::from_base32(bad), None, "{bad}");
        }
    }
}

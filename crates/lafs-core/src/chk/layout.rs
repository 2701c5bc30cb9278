//! The immutable share layout: what a storage server holds for one share and serves over GBS.
//!
//! ```text
//! v1: >LLLLLLLLL  version=1, block_size, data_size, then offsets of
//!                 data (0x24), plaintext hash tree (unused, zero), crypttext hash tree,
//!                 block hash tree, share hash chain, URI extension (4-byte length + UEB)
//! v2: >LQQQQQQQQ  the same with 8-byte fields, data at 0x44, 8-byte UEB length
//! ```
//! Version 2 is used only when some value does not fit in 32 bits, as stock Tahoe does.
//! Trees are stored complete, padded to a power of two leaves: `(2*next_pow2(n)-1)*32` bytes.
//! The share hash chain is a list of `>H index` + 32-byte hash entries.

use crate::hashtree::{Hash, tree_node_count};

/// Header size of a v1 share.
pub const V1_HEADER_LEN: u64 = 0x24;
/// Header size of a v2 share.
pub const V2_HEADER_LEN: u64 = 0x44;
/// Bytes per share-hash-chain entry.
pub const SHARE_HASH_ENTRY_LEN: u64 = 2 + 32;

/// Why a share's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Shorter than its header or than the offsets it declares.
    #[error("share is truncated ({0})")]
    Truncated(&'static str),
    /// Version field other than 1 or 2.
    #[error("unknown share version {0}")]
    UnknownVersion(u32),
    /// Offsets that are out of order or do not fit the declared sizes.
    #[error("share header is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// Offsets of one share's sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareLayout {
    /// 1 or 2.
    pub version: u32,
    /// Size of blocks of full segments.
    pub block_size: u64,
    /// Total size of all blocks.
    pub data_size: u64,
    /// Offset of the first block.
    pub data: u64,
    /// Offset of the unused plaintext hash tree.
    pub plaintext_hash_tree: u64,
    /// Offset of the crypttext hash tree.
    pub crypttext_hash_tree: u64,
    /// Offset of this share's block hash tree.
    pub block_hashes: u64,
    /// Offset of the share hash chain.
    pub share_hashes: u64,
    /// Offset of the UEB length field.
    pub uri_extension: u64,
}

impl ShareLayout {
    /// The layout a writer uses for a share with these sizes.
    pub fn new(block_size: u64, data_size: u64, num_segments: u64, num_share_hashes: u64) -> Self {
        let tree =
            tree_node_count(usize::try_from(num_segments).unwrap_or(usize::MAX >> 1)) as u64 * 32;
        let build = |version: u32, header: u64| {
            let data = header;
            let plaintext_hash_tree = data + data_size;
            let crypttext_hash_tree = plaintext_hash_tree + tree;
            let block_hashes = crypttext_hash_tree + tree;
            let share_hashes = block_hashes + tree;
            let uri_extension = share_hashes + num_share_hashes * SHARE_HASH_ENTRY_LEN;
            ShareLayout {
                version,
                block_size,
                data_size,
                data,
                plaintext_hash_tree,
                crypttext_hash_tree,
                block_hashes,
                share_hashes,
                uri_extension,
            }
        };
        let v1 = build(1, V1_HEADER_LEN);
        let limit = 1u64 << 32;
        if block_size < limit && data_size < limit && v1.uri_extension < limit {
            v1
        } else {
            build(2, V2_HEADER_LEN)
        }
    }

    /// Header length for this version.
    pub fn header_len(&self) -> u64 {
        if self.version == 1 {
            V1_HEADER_LEN
        } else {
            V2_HEADER_LEN
        }
    }

    /// Width of the UEB length prefix.
    pub fn ueb_length_len(&self) -> u64 {
        if self.version == 1 { 4 } else { 8 }
    }

    /// Size of each of the three segment-tree areas.
    pub fn tree_area_len(&self) -> u64 {
        self.crypttext_hash_tree - self.plaintext_hash_tree
    }

    /// Total share length given the UEB length.
    pub fn share_len(&self, ueb_len: u64) -> u64 {
        self.uri_extension + self.ueb_length_len() + ueb_len
    }

    /// The header bytes.
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(V2_HEADER_LEN as usize);
        out.extend_from_slice(&self.version.to_be_bytes());
        let fields = [
            self.block_size,
            self.data_size,
            self.data,
            self.plaintext_hash_tree,
            self.crypttext_hash_tree,
            self.block_hashes,
            self.share_hashes,
            self.uri_extension,
        ];
        for f in fields {
            if self.version == 1 {
                // new() only picks v1 when every field fits.
                out.extend_from_slice(&(f as u32).to_be_bytes());
            } else {
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        out
    }

    /// Parses a header from the start of a share (at least [`V2_HEADER_LEN`] bytes, or
    /// [`V1_HEADER_LEN`] for v1) and checks the offsets are in order.
    pub fn parse(data: &[u8]) -> Result<Self, LayoutError> {
        if data.len() < 4 {
            return Err(LayoutError::Truncated("header"));
        }
        let version = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let (width, header) = match version {
            1 => (4usize, V1_HEADER_LEN),
            2 => (8usize, V2_HEADER_LEN),
            v => return Err(LayoutError::UnknownVersion(v)),
        };
        if (data.len() as u64) < header {
            return Err(LayoutError::Truncated("header"));
        }
        let field = |i: usize| -> u64 {
            let start = 4 + i * width;
            let b = &data[start..start + width];
            b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        };
        let l = ShareLayout {
            version,
            block_size: field(0),
            data_size: field(1),
            data: field(2),
            plaintext_hash_tree: field(3),
            crypttext_hash_tree: field(4),
            block_hashes: field(5),
            share_hashes: field(6),
            uri_extension: field(7),
        };
        use LayoutError::Inconsistent as I;
        if l.data != header {
            return Err(I("data offset is not right after the header"));
        }
        if l.data.checked_add(l.data_size) != Some(l.plaintext_hash_tree) {
            return Err(I("data size disagrees with offsets"));
        }
        if !(l.plaintext_hash_tree <= l.crypttext_hash_tree
            && l.crypttext_hash_tree <= l.block_hashes
            && l.block_hashes <= l.share_hashes
            && l.share_hashes <= l.uri_extension)
        {
            return Err(I("offsets out of order"));
        }
        if !(l.block_hashes - l.crypttext_hash_tree).is_multiple_of(32)
            || !(l.share_hashes - l.block_hashes).is_multiple_of(32)
            || !(l.uri_extension - l.share_hashes).is_multiple_of(SHARE_HASH_ENTRY_LEN)
        {
            return Err(I("hash areas are not whole hashes"));
        }
        Ok(l)
    }
}

/// Serializes a share hash chain.
pub fn pack_share_hash_chain(entries: &[(usize, Hash)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * SHARE_HASH_ENTRY_LEN as usize);
    for (i, h) in entries {
        // Indexes are below 2*256, checked by the caller's tree.
        out.extend_from_slice(&(*i as u16).to_be_bytes());
        out.extend_from_slice(h);
    }
    out
}

/// Parses a share hash chain (entries in any order).
pub fn parse_share_hash_chain(data: &[u8]) -> Result<Vec<(usize, Hash)>, LayoutError> {
    if !data.len().is_multiple_of(SHARE_HASH_ENTRY_LEN as usize) {
        return Err(LayoutError::Inconsistent("share hash chain length"));
    }
    Ok(data
        .chunks_exact(SHARE_HASH_ENTRY_LEN as usize)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(&c[2..]);
            (usize::from(u16::from_be_bytes([c[0], c[1]])), h)
        })
        .collect())
}

/// Parses a run of 32-byte hashes.
pub fn parse_hashes(data: &[u8]) -> Result<Vec<Hash>, LayoutError> {
    if !data.len().is_multiple_of(32) {
        return Err(LayoutError::Inconsistent("hash area is not whole hashes"));
    }
    Ok(data
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_header_for_56_byte_file() {
        // shared/vectors CHK-56: share0_head_hex
        let l = ShareLayout::new(19, 19, 1, 5);
        assert_eq!(
            hex::encode(l.header_bytes()),
            "000000010000001300000013000000240000003700000057000000770000009700000141"
        );
        assert_eq!(l.share_len(308), 633);
        assert_eq!(ShareLayout::parse(&l.header_bytes()).unwrap(), l);
    }

    #[test]
    fn v2_when_too_big() {
        let l = ShareLayout::new(1 << 20, 5 << 30, 5 << 10, 5);
        assert_eq!(l.version, 2);
        assert_eq!(l.data, 0x44);
        assert_eq!(l.header_bytes().len(), 0x44);
        assert_eq!(ShareLayout::parse(&l.header_bytes()).unwrap(), l);
        assert_eq!(l.share_len(300), l.uri_extension + 8 + 300);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            ShareLayout::parse(&[0, 0]),
            Err(LayoutError::Truncated("header"))
        );
        assert_eq!(
            ShareLayout::parse(&[0, 0, 0, 3, 0, 0]),
            Err(LayoutError::UnknownVersion(3))
        );
        let mut h = ShareLayout::new(19, 19, 1, 5).header_bytes();
        h[15] = 0x25; // data offset
        assert!(matches!(
            ShareLayout::parse(&h),
            Err(LayoutError::Inconsistent(_))
        ));
        let mut h = ShareLayout::new(19, 19, 1, 5).header_bytes();
        h[35] = 0x01; // uri_extension before share_hashes
        assert!(matches!(
            ShareLayout::parse(&h),
            Err(LayoutError::Inconsistent(_))
        ));
        assert!(parse_share_hash_chain(&[0; 35]).is_err());
    }
}

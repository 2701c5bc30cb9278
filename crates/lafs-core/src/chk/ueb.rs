//! The URI extension block (UEB): the per-file metadata every share carries, whose hash is
//! in the cap.
//!
//! Packed as `key:netstring(value)` for each key in sorted order; integers in decimal ASCII,
//! hashes as raw 32 bytes.

use crate::hashtree::Hash;
use crate::netstring::split_netstring;

/// UEBs of this many bytes or more are refused (stock Tahoe's limit).
pub const MAX_UEB_LEN: usize = 2000;

/// A parsed URI extension block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ueb {
    /// Codec name; always `crs`.
    pub codec_name: String,
    /// `(segment_size, k, N)` of full segments.
    pub codec_params: (u64, u16, u16),
    /// `(padded tail size, k, N)` of the last segment.
    pub tail_codec_params: (u64, u16, u16),
    /// SHA-256d of the whole ciphertext (absent in very old files).
    pub crypttext_hash: Option<Hash>,
    /// Root of the crypttext segment tree.
    pub crypttext_root_hash: Hash,
    /// Root of the share hash tree (leaves: each share's block-tree root).
    pub share_root_hash: Hash,
    /// k.
    pub needed_shares: u16,
    /// N.
    pub total_shares: u16,
    /// Number of segments.
    pub num_segments: u64,
    /// Size of full segments.
    pub segment_size: u64,
    /// File size.
    pub size: u64,
}

/// Why a UEB was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UebError {
    /// Too big.
    #[error("URI extension block of {0} bytes exceeds the {MAX_UEB_LEN}-byte limit")]
    TooLong(usize),
    /// Not `key:netstring` pairs.
    #[error("malformed URI extension block: {0}")]
    Malformed(&'static str),
    /// A required key is absent.
    #[error("URI extension block lacks {0}")]
    Missing(&'static str),
    /// A field has a bad value.
    #[error("URI extension block has a bad {0}")]
    BadField(&'static str),
    /// Fields contradict each other.
    #[error("URI extension block is inconsistent: {0}")]
    Inconsistent(&'static str),
}

fn parse_u64(v: &[u8], field: &'static str) -> Result<u64, UebError> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return Err(UebError::BadField(field));
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(UebError::BadField(field))
}

fn parse_u16(v: &[u8], field: &'static str) -> Result<u16, UebError> {
    u16::try_from(parse_u64(v, field)?).map_err(|_| UebError::BadField(field))
}

fn parse_hash(v: &[u8], field: &'static str) -> Result<Hash, UebError> {
    v.try_into().map_err(|_| UebError::BadField(field))
}

fn parse_codec_params(v: &[u8], field: &'static str) -> Result<(u64, u16, u16), UebError> {
    let mut it = v.split(|&b| b == b'-');
    let (Some(a), Some(b), Some(c), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(UebError::BadField(field));
    };
    Ok((
        parse_u64(a, field)?,
        parse_u16(b, field)?,
        parse_u16(c, field)?,
    ))
}

impl Ueb {
    /// Packs in stock Tahoe's byte format.
    pub fn pack(&self) -> Vec<u8> {
        let mut fields: Vec<(&str, Vec<u8>)> = vec![
            ("codec_name", self.codec_name.as_bytes().to_vec()),
            (
                "codec_params",
                format!(
                    "{}-{}-{}",
                    self.codec_params.0, self.codec_params.1, self.codec_params.2
                )
                .into_bytes(),
            ),
            ("crypttext_root_hash", self.crypttext_root_hash.to_vec()),
            ("needed_shares", self.needed_shares.to_string().into_bytes()),
            ("num_segments", self.num_segments.to_string().into_bytes()),
            ("segment_size", self.segment_size.to_string().into_bytes()),
            ("share_root_hash", self.share_root_hash.to_vec()),
            ("size", self.size.to_string().into_bytes()),
            (
                "tail_codec_params",
                format!(
                    "{}-{}-{}",
                    self.tail_codec_params.0, self.tail_codec_params.1, self.tail_codec_params.2
                )
                .into_bytes(),
            ),
            ("total_shares", self.total_shares.to_string().into_bytes()),
        ];
        if let Some(h) = self.crypttext_hash {
            fields.push(("crypttext_hash", h.to_vec()));
        }
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(400);
        for (k, v) in fields {
            out.extend_from_slice(k.as_bytes());
            out.push(b':');
            crate::netstring::write_netstring(&mut out, &v);
        }
        out
    }

    /// Parses and checks internal consistency (not the hash: see [`crate::hashutil::ueb_hash`]).
    pub fn parse(data: &[u8]) -> Result<Self, UebError> {
        if data.len() >= MAX_UEB_LEN {
            return Err(UebError::TooLong(data.len()));
        }
        let mut codec_name = None;
        let mut codec_params = None;
        let mut tail_codec_params = None;
        let mut crypttext_hash = None;
        let mut crypttext_root_hash = None;
        let mut share_root_hash = None;
        let mut needed_shares = None;
        let mut total_shares = None;
        let mut num_segments = None;
        let mut segment_size = None;
        let mut size = None;
        let mut rest = data;
        while !rest.is_empty() {
            let colon = rest
                .iter()
                .position(|&b| b == b':')
                .ok_or(UebError::Malformed("key without ':'"))?;
            let key = &rest[..colon];
            let (value, tail) = split_netstring(&rest[colon + 1..])
                .map_err(|_| UebError::Malformed("bad netstring value"))?;
            rest = tail;
            fn set<T>(slot: &mut Option<T>, v: T) -> Result<(), UebError> {
                if slot.replace(v).is_some() {
                    return Err(UebError::Malformed("duplicate key"));
                }
                Ok(())
            }
            match key {
                b"codec_name" => set(
                    &mut codec_name,
                    String::from_utf8(value.to_vec())
                        .map_err(|_| UebError::BadField("codec_name"))?,
                )?,
                b"codec_params" => set(
                    &mut codec_params,
                    parse_codec_params(value, "codec_params")?,
                )?,
                b"tail_codec_params" => set(
                    &mut tail_codec_params,
                    parse_codec_params(value, "tail_codec_params")?,
                )?,
                b"crypttext_hash" => {
                    set(&mut crypttext_hash, parse_hash(value, "crypttext_hash")?)?
                }
                b"crypttext_root_hash" => set(
                    &mut crypttext_root_hash,
                    parse_hash(value, "crypttext_root_hash")?,
                )?,
                b"share_root_hash" => {
                    set(&mut share_root_hash, parse_hash(value, "share_root_hash")?)?
                }
                b"needed_shares" => set(&mut needed_shares, parse_u16(value, "needed_shares")?)?,
                b"total_shares" => set(&mut total_shares, parse_u16(value, "total_shares")?)?,
                b"num_segments" => set(&mut num_segments, parse_u64(value, "num_segments")?)?,
                b"segment_size" => set(&mut segment_size, parse_u64(value, "segment_size")?)?,
                b"size" => set(&mut size, parse_u64(value, "size")?)?,
                // Older versions wrote plaintext hashes and other keys; they are not used.
                _ => {}
            }
        }
        let ueb = Ueb {
            codec_name: codec_name.ok_or(UebError::Missing("codec_name"))?,
            codec_params: codec_params.ok_or(UebError::Missing("codec_params"))?,
            tail_codec_params: tail_codec_params.ok_or(UebError::Missing("tail_codec_params"))?,
            crypttext_hash,
            crypttext_root_hash: crypttext_root_hash
                .ok_or(UebError::Missing("crypttext_root_hash"))?,
            share_root_hash: share_root_hash.ok_or(UebError::Missing("share_root_hash"))?,
            needed_shares: needed_shares.ok_or(UebError::Missing("needed_shares"))?,
            total_shares: total_shares.ok_or(UebError::Missing("total_shares"))?,
            num_segments: num_segments.ok_or(UebError::Missing("num_segments"))?,
            segment_size: segment_size.ok_or(UebError::Missing("segment_size"))?,
            size: size.ok_or(UebError::Missing("size"))?,
        };
        ueb.check()?;
        Ok(ueb)
    }

    fn check(&self) -> Result<(), UebError> {
        use UebError::Inconsistent as I;
        if self.codec_name != "crs" {
            return Err(UebError::BadField("codec_name"));
        }
        let (k, n) = (self.needed_shares, self.total_shares);
        if k == 0 || k > n || n > 256 {
            return Err(I("needed/total shares out of range"));
        }
        if self.codec_params != (self.segment_size, k, n) {
            return Err(I("codec_params disagree with segment_size or share counts"));
        }
        if self.segment_size == 0 || !self.segment_size.is_multiple_of(u64::from(k)) {
            return Err(I("segment_size is not a positive multiple of k"));
        }
        if self.num_segments != self.size.div_ceil(self.segment_size) {
            return Err(I("num_segments disagrees with size and segment_size"));
        }
        let tail = super::tail_size(self.size, self.segment_size);
        let padded_tail = tail.next_multiple_of(u64::from(k));
        if self.tail_codec_params != (padded_tail, k, n) {
            return Err(I("tail_codec_params disagree with size"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ueb {
        Ueb {
            codec_name: "crs".into(),
            codec_params: (57, 3, 10),
            tail_codec_params: (57, 3, 10),
            crypttext_hash: Some([1; 32]),
            crypttext_root_hash: [2; 32],
            share_root_hash: [3; 32],
            needed_shares: 3,
            total_shares: 10,
            num_segments: 1,
            segment_size: 57,
            size: 56,
        }
    }

    #[test]
    fn round_trip() {
        let u = sample();
        let packed = u.pack();
        assert!(packed.starts_with(b"codec_name:3:crs,codec_params:7:57-3-10,crypttext_hash:32:"));
        assert_eq!(Ueb::parse(&packed).unwrap(), u);
    }

    #[test]
    fn rejects() {
        let good = sample().pack();
        assert_eq!(Ueb::parse(&vec![b'a'; 2000]), Err(UebError::TooLong(2000)));
        assert!(Ueb::parse(b"codec_name").is_err());
        assert!(Ueb::parse(b"codec_name:99:crs,").is_err());
        let mut dup = good.clone();
        dup.extend_from_slice(b"size:2:56,");
        assert_eq!(Ueb::parse(&dup), Err(UebError::Malformed("duplicate key")));
        let mut bad = sample();
        bad.num_segments = 2;
        assert!(matches!(
            Ueb::parse(&bad.pack()),
            Err(UebError::Inconsistent(_))
        ));
        let mut bad = sample();
        bad.needed_shares = 11;
        assert!(matches!(
            Ueb::parse(&bad.pack()),
            Err(UebError::Inconsistent(_))
        ));
        let s = String::from_utf8_lossy(&good).replace("size:2:56", "size:2:5x");
        assert_eq!(Ueb::parse(s.as_bytes()), Err(UebError::BadField("size")));
        // unknown keys are tolerated
        let mut extra = b"aaa_unknown:1:x,".to_vec();
        extra.extend_from_slice(&good);
        assert_eq!(Ueb::parse(&extra).unwrap(), sample());
    }
}

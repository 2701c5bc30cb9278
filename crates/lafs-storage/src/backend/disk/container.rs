//! Tahoe's share container formats, as pure functions over bytes.
//!
//! Layouts (verified against stock Tahoe-LAFS 1.20, see the module docs of [`super`]):
//!
//! ```text
//! immutable (v1 and v2 identical but for how lease secrets are stored):
//!   0x00  u32  container version (1 or 2; stock 1.20 writes 2)
//!   0x04  u32  share data length, saturated at 2^32-1 (unused by readers since Tahoe 1.3)
//!   0x08  u32  number of lease records at the end of the file
//!   0x0c       share data
//!   end - 72*n n lease records of 72 bytes
//!   share data length = file size - 0x0c - 72 * number of leases
//!
//! mutable (v1 and v2 identical but for the magic and how lease secrets are stored):
//!   0     32   magic: "Tahoe mutable container v1\n" + 75 09 44 03 8e
//!                  or "Tahoe mutable container v2\n" + c3 55 21 99 25 (stock 1.20 writes v2)
//!   32    20   nodeid of the server that recorded the write enabler
//!   52    32   write enabler
//!   84    u64  share data length
//!   92    u64  offset of the extra-lease block (count u32 + 92-byte records), after the data
//!   100   368  four 92-byte lease slots
//!   468        share data
//! ```
//!
//! All integers are big-endian. Nothing here does I/O.

/// Length of the immutable container header.
pub(crate) const IMMUTABLE_HEADER_LEN: u64 = 0x0c;
/// Size of one lease record in an immutable container (both versions).
pub(crate) const IMMUTABLE_LEASE_LEN: u64 = 72;
/// The immutable container version stock Tahoe 1.20 writes for new shares.
pub(crate) const IMMUTABLE_VERSION_NEW: u32 = 2;

/// Length of the fixed mutable header (magic, nodeid, write enabler, two u64 fields).
pub(crate) const MUTABLE_HEADER_LEN: u64 = 100;
/// Size of one lease record in a mutable container (both versions).
pub(crate) const MUTABLE_LEASE_LEN: u64 = 92;
/// Offset of the share data in a mutable container (after four lease slots).
pub(crate) const MUTABLE_DATA_OFFSET: u64 = MUTABLE_HEADER_LEN + 4 * MUTABLE_LEASE_LEN;
/// Offset of the data-length field in a mutable container.
pub(crate) const MUTABLE_DATA_LEN_FIELD: u64 = 84;
/// Offset of the extra-lease-offset field in a mutable container.
pub(crate) const MUTABLE_EXTRA_LEASE_FIELD: u64 = 92;

/// Mutable container magic, version 1.
pub(crate) const MUTABLE_MAGIC_V1: [u8; 32] = *b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e";
/// Mutable container magic, version 2 (`tagged_hash("allmydata_mutable_container_header",
/// "Tahoe mutable container v2\n")[:5]` as the binary tail); stock 1.20 writes this one.
pub(crate) const MUTABLE_MAGIC_V2: [u8; 32] = *b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";

/// How many header bytes [`parse`] wants to see (fewer if the file is shorter).
pub(crate) const PROBE_LEN: usize = MUTABLE_HEADER_LEN as usize;

/// Largest share data length lafs accepts, so that every file offset fits an `i64` with room
/// for the header and lease blocks.
pub(crate) const MAX_DATA_LEN: u64 = (i64::MAX as u64) / 2;

/// A parsed immutable container header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ImmutableHeader {
    /// Container version (1 or 2).
    pub version: u32,
    /// Number of lease records at the end of the file.
    pub num_leases: u32,
    /// Share data length, derived from the file size.
    pub data_len: u64,
}

/// A parsed mutable container header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MutableHeader {
    /// The 32-byte magic (v1 or v2), kept when the share is rewritten.
    pub magic: [u8; 32],
    /// Nodeid recorded with the write enabler.
    pub nodeid: [u8; 20],
    /// The write enabler.
    pub write_enabler: [u8; 32],
    /// Share data length.
    pub data_len: u64,
    /// Offset of the extra-lease block.
    pub extra_lease_offset: u64,
}

/// A share container, recognised from its first bytes and the file size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    /// Immutable container.
    Immutable(ImmutableHeader),
    /// Mutable container.
    Mutable(MutableHeader),
}

impl Container {
    /// File offset of the share data.
    pub fn data_offset(&self) -> u64 {
        match self {
            Self::Immutable(_) => IMMUTABLE_HEADER_LEN,
            Self::Mutable(_) => MUTABLE_DATA_OFFSET,
        }
    }

    /// Share data length.
    pub fn data_len(&self) -> u64 {
        match self {
            Self::Immutable(h) => h.data_len,
            Self::Mutable(h) => h.data_len,
        }
    }
}

/// Why a file is not a usable container, plus whether it looked mutable (for listing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unreadable {
    /// The file starts with a mutable magic but the rest does not fit.
    pub looks_mutable: bool,
    /// Human-readable reason (no share bytes, no secrets).
    pub reason: String,
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Whether `prefix` starts with a mutable container magic (either version).
pub(crate) fn is_mutable_magic(prefix: &[u8]) -> bool {
    prefix.len() >= 32 && (prefix[..32] == MUTABLE_MAGIC_V1 || prefix[..32] == MUTABLE_MAGIC_V2)
}

/// Recognises a container from its first bytes (`probe`, up to [`PROBE_LEN`]) and the file
/// size. Mutable magic first (as stock's `get_share_file` does), then immutable versions 1
/// and 2; anything else is unreadable.
pub(crate) fn parse(probe: &[u8], file_len: u64) -> Result<Container, Unreadable> {
    let bad = |looks_mutable, reason: String| Unreadable {
        looks_mutable,
        reason,
    };
    if is_mutable_magic(probe) {
        if probe.len() < PROBE_LEN {
            return Err(bad(
                true,
                format!("mutable container header truncated ({file_len} bytes)"),
            ));
        }
        let data_len = be_u64(&probe[84..92]);
        let extra_lease_offset = be_u64(&probe[92..100]);
        let fits = MUTABLE_DATA_OFFSET
            .checked_add(data_len)
            .is_some_and(|end| end <= file_len);
        if !fits || data_len > MAX_DATA_LEN {
            return Err(bad(
                true,
                format!(
                    "mutable container claims {data_len} data bytes but the file has {file_len}"
                ),
            ));
        }
        let mut magic = [0u8; 32];
        magic.copy_from_slice(&probe[..32]);
        let mut nodeid = [0u8; 20];
        nodeid.copy_from_slice(&probe[32..52]);
        let mut write_enabler = [0u8; 32];
        write_enabler.copy_from_slice(&probe[52..84]);
        return Ok(Container::Mutable(MutableHeader {
            magic,
            nodeid,
            write_enabler,
            data_len,
            extra_lease_offset,
        }));
    }
    if probe.len() < 4 {
        return Err(bad(
            false,
            format!("share file too short ({file_len} bytes)"),
        ));
    }
    let version = be_u32(&probe[..4]);
    if version != 1 && version != 2 {
        return Err(bad(
            false,
            format!("unknown share container version {version}"),
        ));
    }
    if probe.len() < IMMUTABLE_HEADER_LEN as usize {
        return Err(bad(
            false,
            format!("immutable container header truncated ({file_len} bytes)"),
        ));
    }
    let num_leases = be_u32(&probe[8..12]);
    let overhead = IMMUTABLE_HEADER_LEN + IMMUTABLE_LEASE_LEN * u64::from(num_leases);
    let Some(data_len) = file_len.checked_sub(overhead) else {
        return Err(bad(
            false,
            format!("immutable container of {file_len} bytes cannot hold {num_leases} leases"),
        ));
    };
    Ok(Container::Immutable(ImmutableHeader {
        version,
        num_leases,
        data_len,
    }))
}

/// The 12-byte header lafs writes for an immutable share: version 2, the size saturated at
/// 2^32-1, no leases.
pub(crate) fn immutable_header(size: u64) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&IMMUTABLE_VERSION_NEW.to_be_bytes());
    h[4..8].copy_from_slice(&immutable_size_field(size));
    h
}

/// The saturated size field of an immutable header.
pub(crate) fn immutable_size_field(size: u64) -> [u8; 4] {
    u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes()
}

/// The 100-byte fixed mutable header.
pub(crate) fn mutable_header(h: &MutableHeader) -> [u8; 100] {
    let mut out = [0u8; 100];
    out[..32].copy_from_slice(&h.magic);
    out[32..52].copy_from_slice(&h.nodeid);
    out[52..84].copy_from_slice(&h.write_enabler);
    out[84..92].copy_from_slice(&h.data_len.to_be_bytes());
    out[92..100].copy_from_slice(&h.extra_lease_offset.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lafs_core::hashutil::tagged_hash;

    #[test]
    fn mutable_magics_are_stocks() {
        let tail = tagged_hash(
            b"allmydata_mutable_container_header",
            b"Tahoe mutable container v2\n",
        );
        assert_eq!(&MUTABLE_MAGIC_V2[27..], &tail[..5]);
        assert_eq!(&MUTABLE_MAGIC_V1[27..], &[0x75, 0x09, 0x44, 0x03, 0x8e]);
        assert_eq!(MUTABLE_DATA_OFFSET, 468);
    }

    #[test]
    fn immutable_round_trip() {
        let mut file = immutable_header(5).to_vec();
        file.extend_from_slice(b"hello");
        assert_eq!(
            parse(&file, file.len() as u64),
            Ok(Container::Immutable(ImmutableHeader {
                version: 2,
                num_leases: 0,
                data_len: 5
            }))
        );
        assert_eq!(immutable_size_field(1 << 40), [0xff; 4]);
    }

    #[test]
    fn immutable_with_leases() {
        let mut file = vec![0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 2];
        file.extend_from_slice(&[7u8; 3]);
        file.extend_from_slice(&[9u8; 144]);
        let c = parse(&file, file.len() as u64).unwrap();
        assert_eq!(c.data_len(), 3);
        assert_eq!(c.data_offset(), 12);
        // Too many leases for the file.
        file[11] = 3;
        assert!(parse(&file, file.len() as u64).is_err());
    }

    #[test]
    fn rejects_garbage() {
        for probe in [
            &b""[..],
            b"\0\0\0",
            b"\0\0\0\x03\0\0\0\0\0\0\0\0",
            b"\0\0\0\x02\0\0",
        ] {
            let e = parse(probe, probe.len() as u64).unwrap_err();
            assert!(!e.looks_mutable, "{probe:?}");
        }
        let e = parse(&MUTABLE_MAGIC_V1, 32).unwrap_err();
        assert!(e.looks_mutable);
    }

    #[test]
    fn mutable_round_trip_and_bounds() {
        let h = MutableHeader {
            magic: MUTABLE_MAGIC_V2,
            nodeid: [1; 20],
            write_enabler: [2; 32],
            data_len: 10,
            extra_lease_offset: 478,
        };
        let bytes = mutable_header(&h);
        assert_eq!(parse(&bytes, 482), Ok(Container::Mutable(h)));
        assert!(parse(&bytes, 477).unwrap_err().looks_mutable);
        let mut huge = h;
        huge.data_len = u64::MAX;
        assert!(parse(&mutable_header(&huge), u64::MAX).is_err());
    }
}

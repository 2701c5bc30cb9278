//! Mutable share writes on disk (blocking; run on the blocking pool).
//!
//! Three paths, chosen per write (the server holds the share's lock, so nothing else writes
//! this share meanwhile):
//! - **create**: the whole new container is written to a temporary file under
//!   `incoming/lafs-mutable-tmp/`, fsynced, renamed into place without replacing anything,
//!   and the share directory fsynced. A crash leaves either no share or the complete one.
//! - **rewrite** (existing share whose new container is at most the rewrite limit): the same,
//!   copying header, lease slots, the kept data and the extra-lease block into the temporary
//!   file and renaming it over the old one. Atomic: old or new share after a crash.
//! - **in place** (larger shares: MDMF can be gigabytes): only the touched byte ranges are
//!   written. Order: (1) if the data grows past the extra-lease block, copy that block to
//!   its new offset past the new data, update the offset field, fsync; (2) zero-fill holes
//!   that may hold stale bytes, write the data, fsync; (3) write the new data length, fsync.
//!   After a crash the recorded length is the old or the new one, and bytes past the
//!   recorded length are never exposed with stale content; bytes overwritten within the old
//!   length may be torn (part old, part new). Tahoe's mutable format tolerates that: every
//!   share version is signed and hashed, so readers reject a torn share and the client's next
//!   publish or repair rewrites it.
//!
//! Leases are never written; existing ones (from stock Tahoe) are carried along unchanged so
//! that stock can take the directory back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::container::{
    self, Container, MAX_DATA_LEN, MUTABLE_DATA_LEN_FIELD, MUTABLE_DATA_OFFSET,
    MUTABLE_EXTRA_LEASE_FIELD, MUTABLE_HEADER_LEN, MUTABLE_LEASE_LEN, MUTABLE_MAGIC_V2,
    MutableHeader,
};
use super::fsutil::{
    ensure_dir_durable, ensure_share_dir_durable, fsync_dir, probe, remove_dir_if_empty,
    rename_no_replace, write_zeros_at,
};
use super::io_ctx;
use super::layout::{self, Layout};
use crate::backend::{BackendError, BackendResult, MutableWrite};
use crate::types::{ShareNum, StorageIndex};

/// At most this many extra leases are carried over when a share is rewritten (a sanity
/// bound against a garbage count; stock shares have a handful).
const MAX_EXTRA_LEASES: u64 = 1 << 16;

/// Largest data end any write reaches, and the final data length after `new_length`.
pub(super) fn plan(old_len: u64, w: &MutableWrite) -> BackendResult<(u64, u64)> {
    let mut end = old_len;
    for v in &w.writes {
        let e = v
            .offset
            .checked_add(v.data.len())
            .filter(|e| *e <= MAX_DATA_LEN)
            .ok_or_else(|| {
                BackendError::Invalid(format!("mutable write at offset {} is too large", v.offset))
            })?;
        end = end.max(e);
    }
    let final_len = match w.new_length {
        Some(n) if n < end => n,
        _ => end,
    };
    Ok((end, final_len))
}

/// The mutable header of an open share file; `Invalid` for an immutable share, `Corrupt`
/// for an unreadable one. Also returns the file size.
pub(super) fn mutable_header(file: &File) -> BackendResult<(MutableHeader, u64)> {
    let (head, file_len) = probe(file).map_err(io_ctx("read share header"))?;
    match container::parse(&head, file_len) {
        Ok(Container::Mutable(h)) => Ok((h, file_len)),
        Ok(Container::Immutable(_)) => Err(BackendError::Invalid(
            "the share is immutable, not mutable".into(),
        )),
        Err(u) => Err(BackendError::Corrupt(u.reason)),
    }
}

/// Writes one mutable share (see the module docs). `rewrite_limit` is the largest container
/// rewritten as a whole.
pub(super) fn write(
    layout: &Layout,
    rewrite_limit: u64,
    si: &StorageIndex,
    shnum: ShareNum,
    w: &MutableWrite,
) -> BackendResult<u64> {
    let path = layout.share_path(si, shnum);
    let existing =
        layout::open_share_file(layout, si, shnum, true).map_err(io_ctx("open mutable share"))?;
    if w.new_length == Some(0) {
        if let Some(file) = existing {
            mutable_header(&file)?;
            drop(file);
            remove_share_file(layout, si, &path)?;
        }
        return Ok(0);
    }
    let Some(file) = existing else {
        let (_, final_len) = plan(0, w)?;
        create(layout, si, shnum, w, final_len)?;
        return Ok(final_len);
    };
    let (header, file_len) = mutable_header(&file)?;
    let (max_end, final_len) = plan(header.data_len, w)?;
    let (block, block_ok) = read_extra_leases(&file, &header, file_len)?;
    let container_len = MUTABLE_DATA_OFFSET
        .saturating_add(max_end)
        .saturating_add(block.len() as u64);
    if container_len <= rewrite_limit {
        rewrite(layout, si, shnum, &file, &header, &block, w, final_len)?;
    } else {
        in_place(
            &file, &header, file_len, block, block_ok, w, max_end, final_len,
        )?;
    }
    Ok(final_len)
}

/// Removes a share file and, if it was the last, its storage index directory.
pub(super) fn remove_share_file(
    layout: &Layout,
    si: &StorageIndex,
    path: &Path,
) -> BackendResult<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_ctx("remove share")(e)),
    }
    let dir = layout.si_dir(si);
    match fsync_dir(&dir) {
        Ok(()) => {}
        // A concurrent delete of the last other share removed the directory: nothing left
        // to make durable.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_ctx("fsync share directory")(e)),
    }
    remove_dir_if_empty(&dir);
    Ok(())
}

/// The extra-lease block (count + records) of an existing share, with the count clamped to
/// what the file holds, and whether the recorded offset was valid. An invalid or unreadable
/// block is replaced by an empty one (count 0).
fn read_extra_leases(
    file: &File,
    h: &MutableHeader,
    file_len: u64,
) -> BackendResult<(Vec<u8>, bool)> {
    let empty = (vec![0u8; 4], false);
    let elo = h.extra_lease_offset;
    if elo < MUTABLE_DATA_OFFSET + h.data_len || elo.checked_add(4).is_none_or(|e| e > file_len) {
        return Ok(empty);
    }
    let mut count = [0u8; 4];
    file.read_exact_at(&mut count, elo)
        .map_err(io_ctx("read extra-lease count"))?;
    let fits = (file_len - elo - 4) / MUTABLE_LEASE_LEN;
    let n = u64::from(u32::from_be_bytes(count))
        .min(fits)
        .min(MAX_EXTRA_LEASES);
    let mut block = vec![0u8; 4 + (n * MUTABLE_LEASE_LEN) as usize];
    file.read_exact_at(&mut block[4..], elo + 4)
        .map_err(io_ctx("read extra leases"))?;
    block[..4].copy_from_slice(&u32::try_from(n).unwrap_or(0).to_be_bytes());
    Ok((block, true))
}

/// Applies the write vectors, in order, to a container file at the data offset.
fn apply_writes(file: &File, w: &MutableWrite) -> io::Result<()> {
    for v in &w.writes {
        v.data.write_to(file, MUTABLE_DATA_OFFSET + v.offset)?;
    }
    Ok(())
}

/// Ends a freshly written container at `final_len` data bytes followed by `block`.
fn finish_tail(file: &File, final_len: u64, block: &[u8]) -> io::Result<()> {
    let elo = MUTABLE_DATA_OFFSET + final_len;
    file.set_len(elo)?;
    file.write_all_at(block, elo)?;
    file.sync_all()
}

/// Runs `fill` on a new temporary file, then renames it to the share path (without
/// replacing anything if `create`), fsyncing the share directory. The temporary file is
/// removed on any failure.
fn install(
    layout: &Layout,
    si: &StorageIndex,
    shnum: ShareNum,
    create: bool,
    fill: impl FnOnce(&File) -> io::Result<()>,
) -> BackendResult<()> {
    let tmp_dir = layout.mutable_tmp_dir();
    fs::create_dir_all(&tmp_dir).map_err(io_ctx("create mutable temporary directory"))?;
    let tmp = layout.mutable_tmp_path(si, shnum);
    let result = (|| {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_ctx("create mutable temporary file"))?;
        fill(&file).map_err(io_ctx("write mutable temporary file"))?;
        drop(file);
        let dir = layout.si_dir(si);
        let path = layout.share_path(si, shnum);
        let mut attempts = 0;
        loop {
            // A rewrite replaces a share whose directory was made durable with it.
            if create {
                ensure_share_dir_durable(&dir)
            } else {
                ensure_dir_durable(&dir)
            }
            .map_err(io_ctx("create share directory"))?;
            let renamed = if create {
                rename_no_replace(&tmp, &path)
            } else {
                fs::rename(&tmp, &path)
            };
            match renamed {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(BackendError::AlreadyExists);
                }
                // A concurrent delete of the last other share removed the directory.
                Err(e) if e.kind() == ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(io_ctx("rename mutable share into place")(e)),
            }
        }
        fsync_dir(&dir).map_err(io_ctx("fsync share directory"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn create(
    layout: &Layout,
    si: &StorageIndex,
    shnum: ShareNum,
    w: &MutableWrite,
    final_len: u64,
) -> BackendResult<()> {
    let header = MutableHeader {
        magic: MUTABLE_MAGIC_V2,
        nodeid: w.nodeid,
        write_enabler: w.write_enabler,
        data_len: final_len,
        extra_lease_offset: MUTABLE_DATA_OFFSET + final_len,
    };
    install(layout, si, shnum, true, |file| {
        file.write_all_at(&container::mutable_header(&header), 0)?;
        file.write_all_at(&[0u8; 4 * MUTABLE_LEASE_LEN as usize], MUTABLE_HEADER_LEN)?;
        apply_writes(file, w)?;
        finish_tail(file, final_len, &[0u8; 4])
    })
}

#[allow(clippy::too_many_arguments)]
fn rewrite(
    layout: &Layout,
    si: &StorageIndex,
    shnum: ShareNum,
    old: &File,
    old_header: &MutableHeader,
    block: &[u8],
    w: &MutableWrite,
    final_len: u64,
) -> BackendResult<()> {
    let header = MutableHeader {
        data_len: final_len,
        extra_lease_offset: MUTABLE_DATA_OFFSET + final_len,
        ..*old_header
    };
    install(layout, si, shnum, false, |file| {
        file.write_all_at(&container::mutable_header(&header), 0)?;
        let mut slots = [0u8; 4 * MUTABLE_LEASE_LEN as usize];
        old.read_exact_at(&mut slots, MUTABLE_HEADER_LEN)?;
        file.write_all_at(&slots, MUTABLE_HEADER_LEN)?;
        let keep = old_header.data_len.min(final_len);
        let mut src = old;
        src.seek(SeekFrom::Start(MUTABLE_DATA_OFFSET))?;
        let mut dst = file;
        dst.seek(SeekFrom::Start(MUTABLE_DATA_OFFSET))?;
        let copied = io::copy(&mut src.take(keep), &mut dst)?;
        if copied != keep {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "mutable share shorter than its header",
            ));
        }
        apply_writes(file, w)?;
        finish_tail(file, final_len, block)
    })
}

#[allow(clippy::too_many_arguments)]
fn in_place(
    file: &File,
    h: &MutableHeader,
    old_file_len: u64,
    block: Vec<u8>,
    block_ok: bool,
    w: &MutableWrite,
    max_end: u64,
    final_len: u64,
) -> BackendResult<()> {
    let ctx = io_ctx("write mutable share in place");
    // (1) Move the extra-lease block out of the way of the new data.
    let new_elo = MUTABLE_DATA_OFFSET + max_end;
    if !block_ok || new_elo > h.extra_lease_offset {
        file.write_all_at(&block, new_elo).map_err(&ctx)?;
        file.write_all_at(&new_elo.to_be_bytes(), MUTABLE_EXTRA_LEASE_FIELD)
            .map_err(&ctx)?;
        file.sync_data().map_err(&ctx)?;
    }
    // (2) Data. Holes are zero-filled where the file may hold stale bytes (below its old
    // end: truncated data, the old lease block); beyond that the file reads as zeros.
    let mut cur = h.data_len;
    for v in &w.writes {
        if v.offset > cur {
            let start = MUTABLE_DATA_OFFSET + cur;
            let stop = (MUTABLE_DATA_OFFSET + v.offset).min(old_file_len);
            if stop > start {
                write_zeros_at(file, start, stop - start).map_err(&ctx)?;
            }
        }
        v.data
            .write_to(file, MUTABLE_DATA_OFFSET + v.offset)
            .map_err(&ctx)?;
        cur = cur.max(v.offset + v.data.len());
    }
    debug_assert_eq!(cur, max_end);
    if !w.writes.is_empty() {
        file.sync_data().map_err(&ctx)?;
    }
    // (3) The new length.
    if final_len != h.data_len {
        file.write_all_at(&final_len.to_be_bytes(), MUTABLE_DATA_LEN_FIELD)
            .map_err(&ctx)?;
        file.sync_data().map_err(&ctx)?;
    }
    Ok(())
}

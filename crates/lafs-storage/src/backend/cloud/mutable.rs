//! Mutable test-and-write on a chunked container: only the chunks the writes (and a length
//! change) touch are read and rewritten.
//!
//! The new container is the old one with: the writes applied (clipped to the new length),
//! the data length and extra-lease offset fields updated, old bytes past the new data
//! length (data cut off, extra leases) gone, and a zero extra-lease count after the data.
//! So a chunk is *dirty* if a write lands in it, or, when the length or container size
//! changes, if it is chunk 0 (the header) or lies in `[kept_end, new_total)` (the region
//! whose old bytes are not kept). A dirty chunk's new bytes are: the old bytes below
//! `kept_end` (read only if the writes do not cover them all), the writes, zeros.
//!
//! Order, so that the recorded length always fits the stored chunks: chunks that grow or
//! keep their length, then chunk 0, then chunks that shrink, then chunks past the new end
//! are deleted. A new share's chunk 0 goes last, which is what makes it exist.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use super::container::{
    Container, MAX_DATA_LEN, MUTABLE_DATA_OFFSET, MUTABLE_HEADER_LEN, MUTABLE_MAGIC_V1,
    MutableHeader, mutable_header,
};
use super::{Shared, keys};
use crate::backend::{BackendError, BackendResult, MutableWrite, WriteData};
use crate::types::{ShareNum, StorageIndex};

/// Size of the extra-lease count after the data.
const EXTRA_LEASE_COUNT_LEN: u64 = 4;

/// One write, in container coordinates, clipped to the new length.
struct RawWrite {
    pos: u64,
    data: WriteData,
}

/// Whether `[a, b)` is covered by the (sorted) writes.
fn covered(writes: &[RawWrite], a: u64, b: u64) -> bool {
    let mut at = a;
    for w in writes {
        let end = w.pos + w.data.len();
        if w.pos <= at && end > at {
            at = end;
        }
        if at >= b {
            return true;
        }
    }
    at >= b
}

/// What one dirty chunk must become.
struct Plan<'a> {
    si: &'a StorageIndex,
    shnum: ShareNum,
    chunk: u64,
    new_total: u64,
    kept_end: u64,
    /// Writes in request order (later ones win where they overlap).
    writes: &'a [RawWrite],
    /// The same writes sorted by position (for coverage checks).
    sorted: &'a [RawWrite],
    /// Header fields to set in chunk 0: the full header for a new share, else the length
    /// fields.
    header: MutableHeader,
    new_share: bool,
}

impl Plan<'_> {
    fn new_len(&self, k: u64) -> u64 {
        (self.new_total - k * self.chunk).min(self.chunk)
    }

    async fn build(&self, shared: &Shared, k: u64) -> BackendResult<Bytes> {
        let start = k * self.chunk;
        let end = start + self.new_len(k);
        let mut buf = vec![0u8; (end - start) as usize];
        let keep_to = end.min(self.kept_end);
        if start < keep_to && !covered(self.sorted, start, keep_to) {
            let old = shared
                .store
                .get_range(&keys::chunk_key(self.si, self.shnum, k), 0, keep_to - start)
                .await?;
            buf[..old.len()].copy_from_slice(&old);
        }
        for w in self.writes {
            let wend = w.pos + w.data.len();
            let (a, b) = (w.pos.max(start), wend.min(end));
            if a < b {
                let piece = w.data.read(a - w.pos, b - w.pos).await?;
                buf[(a - start) as usize..(b - start) as usize].copy_from_slice(&piece);
            }
        }
        if k == 0 {
            let h = mutable_header(&self.header);
            if self.new_share {
                buf[..h.len()].copy_from_slice(&h);
            } else {
                buf[84..100].copy_from_slice(&h[84..100]);
            }
        }
        Ok(Bytes::from(buf))
    }
}

/// Stores the given dirty chunks, a few at a time.
async fn store_chunks(shared: &Shared, plan: &Plan<'_>, chunks: &[u64]) -> BackendResult<()> {
    futures_util::stream::iter(chunks.iter().copied().map(|k| async move {
        let data = plan.build(shared, k).await?;
        shared
            .store
            .put(&keys::chunk_key(plan.si, plan.shnum, k), data)
            .await
    }))
    .buffer_unordered(shared.opts.max_in_flight)
    .try_collect::<Vec<()>>()
    .await
    .map(|_| ())
}

/// Creates or modifies a mutable share; returns its new data length (0: deleted).
pub(super) async fn write(
    shared: &Shared,
    si: &StorageIndex,
    shnum: ShareNum,
    w: MutableWrite,
) -> BackendResult<u64> {
    let existing = shared.fresh_meta(si, shnum).await?;
    let old = match &existing {
        None => None,
        Some(m) => match m.container {
            Container::Mutable(h) => Some((m.clone(), h)),
            Container::Immutable(_) => {
                return Err(BackendError::Invalid(
                    "the share is immutable, not mutable".into(),
                ));
            }
        },
    };
    if w.new_length == Some(0) {
        if old.is_some() {
            shared.delete_share(si, shnum).await?;
        }
        return Ok(0);
    }
    let old_len = old.as_ref().map_or(0, |(_, h)| h.data_len);
    let mut max_end = old_len;
    for v in &w.writes {
        let end = v
            .offset
            .checked_add(v.data.len())
            .filter(|e| *e <= MAX_DATA_LEN)
            .ok_or_else(|| {
                BackendError::Invalid(format!("mutable write at offset {} is too large", v.offset))
            })?;
        max_end = max_end.max(end);
    }
    let new_len = match w.new_length {
        Some(n) if n < max_end => n,
        _ => max_end,
    };
    let new_total = MUTABLE_DATA_OFFSET + new_len + EXTRA_LEASE_COUNT_LEN;
    let opts_chunk = shared.opts.chunk_size;
    // Existing shares keep their chunk size; a one-chunk share may grow into larger chunks.
    let chunk = match &old {
        Some((m, _)) if m.chunks > 1 => m.first_chunk,
        Some((m, _)) => m.first_chunk.max(opts_chunk),
        None => opts_chunk,
    };
    let (old_total, old_chunks) = old.as_ref().map_or((0, 0), |(m, _)| (m.total, m.chunks));
    let kept_end = if old.is_some() {
        MUTABLE_DATA_OFFSET + old_len.min(new_len)
    } else {
        0
    };

    let mut writes: Vec<RawWrite> = w
        .writes
        .iter()
        .filter_map(|v| {
            let end = (v.offset + v.data.len()).min(new_len);
            (v.offset < end).then(|| RawWrite {
                pos: MUTABLE_DATA_OFFSET + v.offset,
                data: v.data.slice(0, end - v.offset),
            })
        })
        .collect();
    writes.sort_by_key(|w| w.pos);
    // Applied in request order, so later writes win where they overlap.
    let ordered: Vec<RawWrite> = w
        .writes
        .iter()
        .filter_map(|v| {
            let end = (v.offset + v.data.len()).min(new_len);
            (v.offset < end).then(|| RawWrite {
                pos: MUTABLE_DATA_OFFSET + v.offset,
                data: v.data.slice(0, end - v.offset),
            })
        })
        .collect();

    let mut dirty = std::collections::BTreeSet::new();
    for wr in &writes {
        let last = (wr.pos + wr.data.len() - 1) / chunk;
        dirty.extend(wr.pos / chunk..=last);
    }
    let reshaped = old.is_none() || new_len != old_len || old_total != new_total;
    if reshaped {
        dirty.insert(0);
        dirty.extend(kept_end / chunk..=(new_total - 1) / chunk);
    }
    let header = match &old {
        Some((_, h)) => MutableHeader {
            data_len: new_len,
            extra_lease_offset: MUTABLE_DATA_OFFSET + new_len,
            ..*h
        },
        None => MutableHeader {
            magic: MUTABLE_MAGIC_V1,
            nodeid: w.nodeid,
            write_enabler: w.write_enabler,
            data_len: new_len,
            extra_lease_offset: MUTABLE_DATA_OFFSET + new_len,
        },
    };
    debug_assert!(MUTABLE_HEADER_LEN <= chunk);
    let plan = Plan {
        si,
        shnum,
        chunk,
        new_total,
        kept_end,
        writes: &ordered,
        sorted: &writes,
        header,
        new_share: old.is_none(),
    };
    let old_len_of = |k: u64| -> u64 {
        if k >= old_chunks {
            0
        } else {
            (old_total - k * chunk).min(chunk)
        }
    };
    let (grow, shrink): (Vec<u64>, Vec<u64>) = dirty
        .iter()
        .copied()
        .filter(|k| *k != 0)
        .partition(|k| plan.new_len(*k) >= old_len_of(*k));
    shared.cache_forget(si, shnum);
    store_chunks(shared, &plan, &grow).await?;
    if dirty.contains(&0) {
        store_chunks(shared, &plan, &[0]).await?;
    }
    store_chunks(shared, &plan, &shrink).await?;
    let new_chunks = new_total.div_ceil(chunk);
    if old_chunks > new_chunks {
        shared
            .delete_chunks(si, shnum, new_chunks..old_chunks)
            .await?;
    }
    Ok(new_len)
}

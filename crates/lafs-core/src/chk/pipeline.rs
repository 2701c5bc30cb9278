//! Encoding segments on several threads while keeping their order.
//!
//! The caller supplies segment plaintext (`read`) and consumes encoded segments (`sink`),
//! both on the calling thread and in segment order; encryption, erasure coding and block
//! hashing run on `workers` scoped threads. At most `workers + 2` segments are in flight (one
//! being encoded per worker, one queued, one waiting for its turn in order), so memory is
//! bounded by the segment size and the worker count, not the file size.

use super::{ChkEncoder, ChkError, EncodedSegment, SegmentEncoder};
use std::collections::BTreeMap;
use std::sync::{Mutex, mpsc};

type Job = (u64, Vec<u8>, EncodedSegment);
type Done = (Vec<u8>, Result<EncodedSegment, ChkError>);

/// Runs every segment of `encoder`'s plan through the segment encoder on `workers` threads.
///
/// `read(index, buf)` must fill `buf` (cleared) with segment `index`'s plaintext;
/// `sink(segment)` receives each encoded segment in order (after the encoder took it).
/// The first error stops the pipeline and is returned.
pub fn encode_segments<E, R, S>(
    encoder: &mut ChkEncoder,
    workers: usize,
    mut read: R,
    mut sink: S,
) -> Result<(), E>
where
    E: From<ChkError> + Send,
    R: FnMut(u64, &mut Vec<u8>) -> Result<(), E>,
    S: FnMut(&EncodedSegment) -> Result<(), E>,
{
    let nseg = encoder.plan().num_segments;
    let seg_enc: SegmentEncoder = encoder.segment_encoder().clone();
    if workers <= 1 || nseg <= 1 {
        let mut buf = Vec::new();
        let mut seg = EncodedSegment::default();
        for i in 0..nseg {
            buf.clear();
            read(i, &mut buf)?;
            seg_enc.encode(i, &buf, &mut seg)?;
            encoder.push(&seg)?;
            sink(&seg)?;
        }
        return Ok(());
    }
    let max_in_flight = workers + 2;
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(max_in_flight);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Done)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            let seg_enc = &seg_enc;
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((i, plain, mut seg)) = job else { return };
                    let r = seg_enc.encode(i, &plain, &mut seg).map(|()| seg);
                    if done_tx.send((i, (plain, r))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut free: Vec<(Vec<u8>, EncodedSegment)> = Vec::new();
        let mut pending: BTreeMap<u64, EncodedSegment> = BTreeMap::new();
        let mut next_read = 0u64;
        let mut next_push = 0u64;
        let result = (|| -> Result<(), E> {
            while next_push < nseg {
                while next_read < nseg && next_read - next_push < max_in_flight as u64 {
                    let (mut buf, seg) = free.pop().unwrap_or_default();
                    buf.clear();
                    read(next_read, &mut buf)?;
                    if job_tx.send((next_read, buf, seg)).is_err() {
                        return Err(ChkError::Usage("encoder worker stopped".into()).into());
                    }
                    next_read += 1;
                }
                let Ok((i, (plain, r))) = done_rx.recv() else {
                    return Err(ChkError::Usage("encoder workers stopped".into()).into());
                };
                pending.insert(i, r?);
                free.push((plain, EncodedSegment::default()));
                while let Some(seg) = pending.remove(&next_push) {
                    encoder.push(&seg)?;
                    sink(&seg)?;
                    next_push += 1;
                    if let Some(slot) = free.last_mut() {
                        slot.1 = seg;
                    }
                }
            }
            Ok(())
        })();
        drop(job_tx);
        result
    })
}

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
/// `read(index, buf)` must make `buf` exactly segment `index`'s plaintext (it holds an
/// earlier segment's bytes, or nothing: resize it and overwrite every byte);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::Cap;
    use crate::chk::{EncodingParams, Plan, encode_bytes};

    /// The threaded pipeline reuses plaintext and segment buffers; whatever a buffer held
    /// before must not reach the shares (a short last segment follows full ones).
    #[test]
    fn threaded_encoding_equals_the_reference_with_reused_buffers() {
        let params = EncodingParams {
            needed_shares: 3,
            total_shares: 7,
            max_segment_size: 4096,
        };
        let secret = b"pipeline test secret";
        for size in [56usize, 4095, 4096, 4097, 3 * 4096 + 1, 11 * 4096 + 1000] {
            let plain: Vec<u8> = (0..size).map(|i| (i * 31 + size) as u8).collect();
            let reference = encode_bytes(&plain, &params, secret).expect("reference");
            let plan = Plan::new(size as u64, &params).expect("plan");
            let mut kh = plan.convergence_hasher(secret);
            kh.update(&plain);
            for workers in [1, 2, 3] {
                let mut enc = ChkEncoder::new(plan.clone(), kh.clone().finalize()).expect("enc");
                let mut shares = vec![enc.share_header(); 7];
                encode_segments::<ChkError, _, _>(
                    &mut enc,
                    workers,
                    |i, buf| {
                        let start = (i * plan.segment_size) as usize;
                        let len = plan.segment_len(i) as usize;
                        // Garbage where the segment goes: the encoder must overwrite it all.
                        buf.resize(len, 0xEE);
                        buf.copy_from_slice(&plain[start..start + len]);
                        Ok(())
                    },
                    |seg| {
                        for (shnum, share) in shares.iter_mut().enumerate() {
                            share.extend_from_slice(seg.block(shnum));
                        }
                        Ok(())
                    },
                )
                .expect("pipeline");
                let fin = enc.finish().expect("finish");
                for (share, trailer) in shares.iter_mut().zip(&fin.trailers) {
                    share.extend_from_slice(trailer);
                }
                assert_eq!(
                    Cap::Chk(fin.cap),
                    reference.cap,
                    "size {size} workers {workers}"
                );
                assert_eq!(shares, reference.shares, "size {size} workers {workers}");
            }
        }
    }
}

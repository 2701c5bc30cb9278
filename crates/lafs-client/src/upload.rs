//! Immutable (CHK) upload: choose servers, encode, write shares in parallel.
//!
//! 1. Key: convergent (a first pass over the file hashes it with the convergence secret and
//!    the encoding parameters, as stock does, so the same file gets the same cap) or random.
//! 2. Server selection (servers of happiness): every server is asked for its version (the
//!    share size it accepts) in parallel; servers that cannot take a share of this size are
//!    read-only and only asked which shares they hold. [`share_placement`] plans, the planned
//!    servers are asked to allocate, servers that refuse become read-only and the plan is
//!    redone until it stops changing. Below `shares.happy` the upload fails before a byte of
//!    share data is sent, and every allocation is aborted.
//! 3. Encoding runs on worker threads (`lafs_core::chk::pipeline`); each share's bytes are
//!    batched (1 MiB writes, as stock batches) and written by one task per share, all shares
//!    in parallel, with small bounded queues between the encoder and the writers: memory is
//!    bounded by the batch size and the number of shares, never by the file size.
//! 4. A server that fails mid-upload loses its shares; the upload goes on while the shares
//!    still written reach `shares.happy`, else it stops and aborts every allocation. Success
//!    is reported only after every remaining share's final write was acknowledged (servers
//!    acknowledge a complete share only once it is durable).

use crate::happiness::{Candidate, happiness, share_placement};
use crate::ring::permuted_indexes;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use lafs_core::cap::{Cap, ChkCap};
use lafs_core::chk::{ChkEncoder, ChkError, EncodingParams, Plan, lit_cap, pipeline};
use lafs_core::hashutil::{LeaseSecrets, lease_secrets, storage_index_from_key};
use lafs_protocol::{ShareNum, StorageIndex};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Files of at most this many bytes become `URI:LIT:` caps and touch no server.
pub const LIT_THRESHOLD: u64 = 55;

/// Encoding threads used by default at most: more cores would add memory (one segment in
/// flight each) faster than speed, since the servers and TLS need the other cores.
pub const MAX_DEFAULT_ENCODE_WORKERS: usize = 3;

/// How an upload encodes and spreads a file.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// k: shares needed to read the file (`shares.needed`).
    pub needed_shares: u16,
    /// Servers that must hold distinct shares for the upload to succeed (`shares.happy`).
    pub happy: u16,
    /// N: shares written (`shares.total`).
    pub total_shares: u16,
    /// Largest segment (stock 1.20: 1 MiB). Part of the convergent key: with another value
    /// the same file gets another cap than stock gives it.
    pub max_segment_size: u64,
    /// Most bytes per write request (stock batches 1 MB). Each share holds at most one batch
    /// being filled, one queued and one in flight, so this bounds the upload's memory.
    pub batch_size: usize,
    /// Threads that encrypt, erasure-code and hash segments. Each holds a segment and its
    /// encoded blocks (about 4.5 MiB at stock's 1 MiB segments), so the default is capped.
    pub encode_workers: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            needed_shares: 3,
            happy: 7,
            total_shares: 10,
            max_segment_size: EncodingParams::default().max_segment_size,
            batch_size: 512 << 10,
            encode_workers: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(MAX_DEFAULT_ENCODE_WORKERS),
        }
    }
}

/// Where the encryption key comes from.
#[derive(Clone)]
pub enum KeyChoice {
    /// Convergent encryption with this secret (`private/convergence`).
    Convergent(Vec<u8>),
    /// A fresh random key.
    Random,
    /// A key already computed, e.g. by [`ConvergentKeyHasher`] fed while the file arrived
    /// (see [`convergent_key_hasher`]); saves the upload its first pass over the file.
    Known([u8; 16]),
}

/// The hasher of the convergent key `upload_file` would derive with `cfg` and `secret` for a
/// file of `size` bytes, for callers that see the bytes before the file is complete. `None`
/// if `cfg` is invalid or the file is small enough to be a literal cap (no key needed).
pub fn convergent_key_hasher(
    cfg: &UploadConfig,
    secret: &[u8],
    size: u64,
) -> Option<lafs_core::chk::ConvergentKeyHasher> {
    if size <= LIT_THRESHOLD {
        return None;
    }
    let params = EncodingParams {
        needed_shares: cfg.needed_shares,
        total_shares: cfg.total_shares,
        max_segment_size: cfg.max_segment_size,
    };
    params.validate().ok()?;
    Some(Plan::new(size, &params).ok()?.convergence_hasher(secret))
}

impl fmt::Debug for KeyChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Convergent(_) => f.write_str("Convergent(..)"),
            Self::Random => f.write_str("Random"),
            Self::Known(_) => f.write_str("Known(..)"),
        }
    }
}

/// A successful upload.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// The read cap.
    pub cap: Cap,
    /// File size.
    pub size: u64,
    /// Happiness of the final layout (0 for literal files).
    pub happiness: usize,
    /// For each server (by name), the shares it holds now.
    pub placement: BTreeMap<String, BTreeSet<u8>>,
}

/// Why an upload failed. Messages name servers, never secrets or caps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The encoding parameters are unusable.
    #[error("bad encoding parameters: {0}")]
    Params(String),
    /// Too few servers took (or kept) shares.
    #[error("{}", not_happy_message(*achieved, *wanted, *servers, problems))]
    NotHappy {
        /// Happiness reached.
        achieved: usize,
        /// `shares.happy`.
        wanted: u16,
        /// Servers known.
        servers: usize,
        /// Per server, what went wrong (`name: why`).
        problems: Vec<String>,
    },
    /// Encoding failed (a bug or a changing input file).
    #[error("encoding failed: {0}")]
    Encode(#[from] ChkError),
}

fn not_happy_message(achieved: usize, wanted: u16, servers: usize, problems: &[String]) -> String {
    let mut m = if servers < usize::from(wanted) {
        format!(
            "not enough servers: {servers} known, shares.happy needs {wanted} servers holding distinct shares"
        )
    } else {
        format!(
            "upload failed: shares could be placed on only {achieved} distinct server(s), shares.happy is {wanted}"
        )
    };
    if !problems.is_empty() {
        m.push_str(". Servers: ");
        m.push_str(&problems.join("; "));
    }
    m
}

/// Progress callback: bytes of the file encoded so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// One server during an upload.
#[derive(Debug)]
struct Slot {
    store: Store,
    name: String,
    lease: LeaseSecrets,
    upload_secret: [u8; 32],
    writable: bool,
    /// Complete shares it holds (from allocate's already-have or its share list).
    existing: BTreeSet<ShareNum>,
    /// Shares it allocated for us.
    allocated: BTreeSet<ShareNum>,
    /// Why it dropped out, if it did.
    problem: Option<String>,
}

impl Slot {
    fn fail(&mut self, why: String) {
        if self.problem.is_none() {
            self.problem = Some(why);
        }
        self.writable = false;
    }
}

/// Uploads the file at `path` to `servers` and returns its cap.
pub async fn upload_file(
    servers: &[Store],
    cfg: &UploadConfig,
    key: &KeyChoice,
    client_secret: &[u8],
    path: &Path,
    progress: Option<Progress>,
) -> Result<UploadOutcome, UploadError> {
    let read_err = |source| UploadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size <= LIT_THRESHOLD {
        let mut data = Vec::with_capacity(size as usize);
        (&file)
            .take(LIT_THRESHOLD + 1)
            .read_to_end(&mut data)
            .map_err(read_err)?;
        if data.len() as u64 != size {
            return Err(read_err(std::io::Error::other(
                "the file changed while reading",
            )));
        }
        if let Some(p) = &progress {
            p(size);
        }
        return Ok(UploadOutcome {
            cap: lit_cap(&data),
            size,
            happiness: 0,
            placement: BTreeMap::new(),
        });
    }
    let params = EncodingParams {
        needed_shares: cfg.needed_shares,
        total_shares: cfg.total_shares,
        max_segment_size: cfg.max_segment_size,
    };
    params
        .validate()
        .map_err(|e| UploadError::Params(e.to_string()))?;
    if cfg.happy == 0 || cfg.happy > cfg.total_shares || cfg.happy < cfg.needed_shares {
        return Err(UploadError::Params(format!(
            "shares.happy must be between shares.needed ({}) and shares.total ({}), not {}",
            cfg.needed_shares, cfg.total_shares, cfg.happy
        )));
    }
    let plan = Plan::new(size, &params)?;
    let file = Arc::new(file);
    let key = match key {
        KeyChoice::Random => {
            let mut k = [0u8; 16];
            getrandom::fill(&mut k)
                .map_err(|e| UploadError::Params(format!("no randomness: {e}")))?;
            k
        }
        KeyChoice::Convergent(secret) => {
            let (f, plan, secret) = (file.clone(), plan.clone(), secret.clone());
            tokio::task::spawn_blocking(move || convergent_key(&f, &plan, &secret, size))
                .await
                .map_err(|e| read_err(std::io::Error::other(e.to_string())))?
                .map_err(read_err)?
        }
        KeyChoice::Known(k) => *k,
    };
    let si = StorageIndex::from(storage_index_from_key(&key));
    let share_size = plan.share_size();

    // Servers in ring order for this file.
    let seeds: Vec<Vec<u8>> = servers.iter().map(|s| s.permutation_seed()).collect();
    let mut slots: Vec<Slot> = permuted_indexes(si.as_bytes(), &seeds)
        .into_iter()
        .map(|i| {
            let store = servers[i].clone();
            let mut upload_secret = [0u8; 32];
            let _ = getrandom::fill(&mut upload_secret);
            Slot {
                name: store.name(),
                lease: lease_secrets(client_secret, si.as_bytes(), &store.lease_seed()),
                store,
                upload_secret,
                writable: false,
                existing: BTreeSet::new(),
                allocated: BTreeSet::new(),
                problem: None,
            }
        })
        .collect();

    select_servers(&mut slots, si, share_size, cfg).await;
    let holdings = holdings(&slots);
    let achieved = happiness(&holdings);
    if achieved < usize::from(cfg.happy) {
        abort_all(&slots, si).await;
        return Err(not_happy(&slots, achieved, cfg.happy));
    }

    // Targets: every share we allocated, on every server that allocated it.
    let mut targets = Vec::new();
    let mut writers = tokio::task::JoinSet::new();
    for (slot_index, slot) in slots.iter().enumerate() {
        for &shnum in &slot.allocated {
            let (tx, rx) = mpsc::channel::<(u64, Bytes)>(1);
            targets.push(Target {
                slot: slot_index,
                shnum,
                tx: Some(tx),
                buf: Vec::with_capacity(cfg.batch_size.max(plan.block_size as usize)),
                offset: 0,
            });
            let (store, secret) = (slot.store.clone(), slot.upload_secret);
            writers.spawn(async move {
                let r = write_share(&store, si, shnum, &secret, rx).await;
                (slot_index, shnum, r)
            });
        }
    }

    // Encode on worker threads, feeding the writers.
    let existing: Vec<BTreeSet<ShareNum>> = slots.iter().map(|s| s.existing.clone()).collect();
    let happy = usize::from(cfg.happy);
    let batch = cfg.batch_size;
    let workers = cfg.encode_workers.max(1);
    let encoded = {
        let file = file.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            encode_and_feed(
                &file, plan, key, workers, batch, happy, &existing, targets, progress,
            )
        })
    };
    let encode_result = encoded
        .await
        .map_err(|e| UploadError::Encode(ChkError::Usage(format!("encoder stopped: {e}"))));

    // Collect the writers' results, whatever the encoder did.
    let mut completed: BTreeSet<(usize, ShareNum)> = BTreeSet::new();
    while let Some(joined) = writers.join_next().await {
        let Ok((slot_index, shnum, r)) = joined else {
            continue;
        };
        match r {
            Ok(true) => {
                completed.insert((slot_index, shnum));
            }
            Ok(false) => slots[slot_index].fail(format!(
                "share {} was not complete after its last write",
                shnum.get()
            )),
            Err(WriteFailure::Store(e)) => slots[slot_index].fail(e.message),
            Err(WriteFailure::Dropped) => {}
        }
    }
    let cap = match encode_result.and_then(|r| r) {
        Ok(cap) => cap,
        Err(e) => {
            abort_incomplete(&slots, si, &completed).await;
            return Err(match e {
                UploadError::NotHappy { achieved, .. } => not_happy(&slots, achieved, cfg.happy),
                other => other,
            });
        }
    };
    // The final layout: what servers held before, plus what they acknowledged complete.
    let mut final_layout: Vec<BTreeSet<ShareNum>> =
        slots.iter().map(|s| s.existing.clone()).collect();
    for &(slot_index, shnum) in &completed {
        final_layout[slot_index].insert(shnum);
    }
    let achieved = happiness(&final_layout);
    if achieved < usize::from(cfg.happy) {
        abort_incomplete(&slots, si, &completed).await;
        return Err(not_happy(&slots, achieved, cfg.happy));
    }
    let placement = slots
        .iter()
        .zip(&final_layout)
        .filter(|(_, held)| !held.is_empty())
        .map(|(s, held)| (s.name.clone(), held.iter().map(|n| n.get()).collect()))
        .collect();
    Ok(UploadOutcome {
        cap: Cap::Chk(cap),
        size,
        happiness: achieved,
        placement,
    })
}

fn convergent_key(file: &File, plan: &Plan, secret: &[u8], size: u64) -> std::io::Result<[u8; 16]> {
    use std::os::unix::fs::FileExt;
    let mut h = plan.convergence_hasher(secret);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < size {
        let want = buf.len().min((size - at) as usize);
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(std::io::Error::other("the file shrank while reading"));
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize())
}

fn holdings(slots: &[Slot]) -> Vec<BTreeSet<ShareNum>> {
    slots
        .iter()
        .map(|s| s.existing.union(&s.allocated).copied().collect())
        .collect()
}

fn not_happy(slots: &[Slot], achieved: usize, wanted: u16) -> UploadError {
    UploadError::NotHappy {
        achieved,
        wanted,
        servers: slots.len(),
        problems: slots
            .iter()
            .filter_map(|s| s.problem.as_ref().map(|p| format!("{}: {p}", s.name)))
            .collect(),
    }
}

/// Asks servers for their limits, then plans and allocates until the plan is stable.
async fn select_servers(slots: &mut [Slot], si: StorageIndex, share_size: u64, cfg: &UploadConfig) {
    // Versions, in parallel.
    let mut js = tokio::task::JoinSet::new();
    for (i, s) in slots.iter().enumerate() {
        let store = s.store.clone();
        js.spawn(async move { (i, store.max_immutable_share_size().await) });
    }
    while let Some(j) = js.join_next().await {
        let Ok((i, r)) = j else { continue };
        match r {
            Ok(max) if max >= share_size => slots[i].writable = true,
            Ok(max) => {
                slots[i].problem = Some(format!(
                    "accepts shares of at most {max} bytes, this file needs {share_size}"
                ));
            }
            Err(e) => slots[i].fail(e.describe()),
        }
    }
    // Read-only (but reachable) servers may still hold shares of this file.
    let mut js = tokio::task::JoinSet::new();
    for (i, s) in slots.iter().enumerate() {
        if !s.writable
            && s.problem
                .as_deref()
                .is_some_and(|p| p.starts_with("accepts"))
        {
            let store = s.store.clone();
            js.spawn(async move { (i, store.list_shares(si).await) });
        }
    }
    while let Some(j) = js.join_next().await {
        if let Ok((i, Ok(have))) = j {
            slots[i].existing = have;
        }
    }
    // Plan, allocate, repeat while something changes.
    for _round in 0..=(slots.len() + usize::from(cfg.total_shares)) {
        let candidates: Vec<Candidate> = slots
            .iter()
            .map(|s| Candidate {
                writable: s.writable,
                existing: s.existing.union(&s.allocated).copied().collect(),
            })
            .collect();
        let plan = share_placement(&candidates, cfg.total_shares);
        let mut js = tokio::task::JoinSet::new();
        for (server, shares) in plan.by_server() {
            let s = &slots[server];
            if !s.writable {
                continue;
            }
            let ask: BTreeSet<ShareNum> = shares
                .difference(&candidates[server].existing)
                .copied()
                .collect();
            if ask.is_empty() {
                continue;
            }
            let (store, lease, secret) = (s.store.clone(), s.lease.clone(), s.upload_secret);
            js.spawn(async move {
                let r = store.allocate(si, &lease, &secret, &ask, share_size).await;
                (server, ask, r)
            });
        }
        if js.is_empty() {
            return;
        }
        while let Some(j) = js.join_next().await {
            let Ok((i, ask, r)) = j else { continue };
            let s = &mut slots[i];
            match r {
                Ok(a) => {
                    s.existing.extend(a.already_have.iter().copied());
                    s.allocated.extend(a.allocated.iter().copied());
                    // Shares it holds complete need no upload.
                    let have = s.existing.clone();
                    s.allocated.retain(|n| !have.contains(n));
                    let refused = ask
                        .iter()
                        .any(|n| !a.already_have.contains(n) && !a.allocated.contains(n));
                    if refused {
                        s.writable = false;
                        s.problem
                            .get_or_insert_with(|| "refused to allocate (full?)".to_owned());
                    }
                }
                Err(e) => {
                    s.fail(e.describe());
                    s.existing.clear();
                    // Whatever it allocated is lost to us; try to release it later.
                }
            }
        }
    }
}

async fn abort_all(slots: &[Slot], si: StorageIndex) {
    abort_incomplete(slots, si, &BTreeSet::new()).await;
}

/// Aborts every allocation that did not complete (best effort, in parallel).
async fn abort_incomplete(
    slots: &[Slot],
    si: StorageIndex,
    completed: &BTreeSet<(usize, ShareNum)>,
) {
    let mut js = tokio::task::JoinSet::new();
    for (i, s) in slots.iter().enumerate() {
        for &shnum in &s.allocated {
            if completed.contains(&(i, shnum)) {
                continue;
            }
            let (store, secret) = (s.store.clone(), s.upload_secret);
            js.spawn(async move {
                let _ = store.abort(si, shnum, &secret).await;
            });
        }
    }
    while js.join_next().await.is_some() {}
}

enum WriteFailure {
    Store(StoreError),
    /// The encoder gave up on this share (the upload failed elsewhere).
    Dropped,
}

/// Writes one share from its queue; `Ok(true)` when the server reported it complete.
async fn write_share(
    store: &Store,
    si: StorageIndex,
    shnum: ShareNum,
    secret: &[u8],
    mut rx: mpsc::Receiver<(u64, Bytes)>,
) -> Result<bool, WriteFailure> {
    let mut complete = false;
    let mut wrote_any = false;
    while let Some((offset, data)) = rx.recv().await {
        wrote_any = true;
        complete = store
            .write(si, shnum, secret, offset, data)
            .await
            .map_err(WriteFailure::Store)?;
    }
    if wrote_any {
        Ok(complete)
    } else {
        Err(WriteFailure::Dropped)
    }
}

/// One share being fed to its writer.
struct Target {
    slot: usize,
    shnum: ShareNum,
    tx: Option<mpsc::Sender<(u64, Bytes)>>,
    buf: Vec<u8>,
    offset: u64,
}

impl Target {
    /// Sends the batch if it reached `min` bytes; false if the writer is gone.
    fn flush(&mut self, min: usize) -> bool {
        if self.buf.len() < min.max(1) {
            return self.tx.is_some();
        }
        let Some(tx) = &self.tx else { return false };
        let cap = self.buf.capacity();
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(cap));
        let len = data.len() as u64;
        if tx.blocking_send((self.offset, Bytes::from(data))).is_err() {
            self.tx = None;
            return false;
        }
        self.offset += len;
        true
    }
}

#[allow(clippy::too_many_arguments)]
fn encode_and_feed(
    file: &File,
    plan: Plan,
    key: [u8; 16],
    workers: usize,
    batch: usize,
    happy: usize,
    existing: &[BTreeSet<ShareNum>],
    mut targets: Vec<Target>,
    progress: Option<Progress>,
) -> Result<ChkCap, UploadError> {
    use std::os::unix::fs::FileExt;
    let mut enc = ChkEncoder::new(plan.clone(), key)?;
    let header = enc.share_header();
    for t in &mut targets {
        t.buf.extend_from_slice(&header);
    }
    let done = AtomicU64::new(0);
    // Happiness of what is still being written plus what servers already held.
    let still_happy = |targets: &[Target]| -> usize {
        let mut layout: Vec<BTreeSet<ShareNum>> = existing.to_vec();
        for t in targets.iter().filter(|t| t.tx.is_some()) {
            layout[t.slot].insert(t.shnum);
        }
        happiness(&layout)
    };
    let check = |targets: &mut Vec<Target>, min: usize| -> Result<(), UploadError> {
        let mut lost = false;
        for t in targets.iter_mut() {
            if t.tx.is_some() && !t.flush(min) {
                lost = true;
            }
        }
        if lost {
            let achieved = still_happy(targets);
            if achieved < happy {
                return Err(UploadError::NotHappy {
                    achieved,
                    wanted: 0,
                    servers: 0,
                    problems: Vec::new(),
                });
            }
        }
        Ok(())
    };
    pipeline::encode_segments(
        &mut enc,
        workers,
        |index, buf: &mut Vec<u8>| -> Result<(), UploadError> {
            let len = plan.segment_len(index) as usize;
            let at = index * plan.segment_size;
            buf.resize(len, 0);
            file.read_exact_at(buf, at)
                .map_err(|source| UploadError::Read {
                    path: PathBuf::from("<input>"),
                    source,
                })
        },
        |seg| {
            // Send a batch before this block would make it larger than `batch` (or than
            // one block), so buffers never grow past their first allocation.
            let block_len = seg.block(0).len();
            check(&mut targets, batch.saturating_sub(block_len) + 1)?;
            for t in targets.iter_mut().filter(|t| t.tx.is_some()) {
                t.buf
                    .extend_from_slice(seg.block(usize::from(t.shnum.get())));
            }
            let n = done.fetch_add(plan.segment_len(seg.index), Ordering::Relaxed)
                + plan.segment_len(seg.index);
            if let Some(p) = &progress {
                p(n);
            }
            Ok(())
        },
    )?;
    let fin = enc.finish()?;
    for t in targets.iter_mut().filter(|t| t.tx.is_some()) {
        t.buf
            .extend_from_slice(&fin.trailers[usize::from(t.shnum.get())]);
    }
    check(&mut targets, 0)?;
    // Dropping the senders tells the writers the share is all sent.
    drop(targets);
    Ok(fin.cap)
}

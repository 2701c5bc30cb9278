//! Immutable (CHK) download: first k servers that answer, verified blocks, streamed plaintext.
//!
//! 1. Every server is asked for its shares of the file, in parallel; the download starts as
//!    soon as k distinct shares are known (preferring shares on distinct servers), so hung
//!    servers cost nothing unless they are needed. Answers that arrive later become spares.
//! 2. For each share used: its header, the URI extension block (checked against the cap's
//!    hash: the root of all trust), its share hash chain, its block hash tree and (from one
//!    share) the crypttext hash tree. Any failure makes the share bad: the server is told
//!    (`advise_corrupt` when the bytes were wrong) and a spare takes its place, without
//!    restarting the file.
//! 3. Segments are fetched `depth` ahead (k block reads each, in parallel), verified block
//!    by block, decoded, checked against the crypttext tree, decrypted and sent in order.
//!    A byte range fetches only the segments it overlaps.
//!
//! Wrong bytes from servers lead to another share or to a clear error, never to wrong
//! plaintext: every block is checked against hashes that chain up to the cap.

use crate::ring::permuted_indexes;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use lafs_core::cap::ChkCap;
use lafs_core::chk::ChkDecoder;
use lafs_core::chk::layout::{ShareLayout, parse_hashes, parse_share_hash_chain};
use lafs_protocol::{ShareNum, StorageIndex};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// Largest header a CHK share has (v2).
const HEADER_LEN: u64 = 0x44;
/// Bytes read at the start of every share: its header, and for shares up to this size
/// everything else too.
const HEAD_READ: u64 = 64 * 1024;
/// Bytes read at the URI extension offset: its length field and the block (stock UEBs are a
/// few hundred bytes; the decoder refuses longer ones).
const UEB_READ: u64 = 8 + 4096;

/// How a download behaves.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// Segments fetched ahead of the one being decoded.
    pub depth: usize,
    /// How long to wait for share lists before giving up on finding k shares.
    pub locate_timeout: Duration,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        Self {
            depth: 4,
            locate_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a download failed. Never carries plaintext, keys or caps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// Fewer than k good shares could be found or used.
    #[error("{}", not_enough(*needed, *found, problems))]
    NotEnoughShares {
        /// k.
        needed: u16,
        /// Good shares found.
        found: usize,
        /// What went wrong, per server or share.
        problems: Vec<String>,
    },
    /// The requested range is outside the file.
    #[error("range {start}-{end} is outside the file ({size} bytes)")]
    BadRange {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// File size.
        size: u64,
    },
    /// The receiver went away.
    #[error("download cancelled")]
    Cancelled,
}

fn not_enough(needed: u16, found: usize, problems: &[String]) -> String {
    let mut m = format!("not enough good shares: need {needed}, found {found} usable");
    if !problems.is_empty() {
        m.push_str(". Problems: ");
        m.push_str(&problems.join("; "));
    }
    m
}

/// Shares as servers report them, filled in by a background task.
#[derive(Debug, Default)]
struct Located {
    /// `(server index, share)` in the order answers arrived.
    found: Vec<(usize, ShareNum)>,
    /// Servers that have answered (or failed).
    answered: usize,
    problems: Vec<String>,
}

/// A share in use.
#[derive(Debug, Clone)]
struct Active {
    server: usize,
    shnum: ShareNum,
    layout: ShareLayout,
    /// The share's first bytes (up to [`HEAD_READ`]), read in one request at set-up.
    head: Head,
}

/// The first bytes of a share. Small shares (most files are small) arrive whole in the first
/// read, so setting a share up and reading its blocks costs one round trip instead of five.
#[derive(Debug, Clone)]
struct Head(Bytes);

impl Head {
    /// Whether the read returned less than asked: then it is the whole share.
    fn is_whole(&self) -> bool {
        (self.0.len() as u64) < HEAD_READ
    }

    /// `len` bytes at `offset` as the server would return them, if the head holds them.
    fn get(&self, offset: u64, len: u64) -> Option<Bytes> {
        let have = self.0.len() as u64;
        let end = offset.checked_add(len)?;
        if end <= have {
            Some(self.0.slice(offset as usize..end as usize))
        } else if self.is_whole() {
            // Past the end of the share: the server answers with what there is.
            Some(self.0.slice(offset.min(have) as usize..))
        } else {
            None
        }
    }
}

/// Streams the plaintext of `cap`'s bytes `start..end` (the whole file if `None`) into `out`
/// in order. Returns when done, on error (which is also returned), or when `out` closes.
pub async fn download(
    servers: &[Store],
    cap: &ChkCap,
    range: Option<(u64, u64)>,
    cfg: &DownloadConfig,
    out: mpsc::Sender<Bytes>,
) -> Result<(), DownloadError> {
    let (start, end) = range.unwrap_or((0, cap.size));
    if start > end || end > cap.size {
        return Err(DownloadError::BadRange {
            start,
            end,
            size: cap.size,
        });
    }
    if start == end {
        return Ok(());
    }
    let si = StorageIndex::from(lafs_core::hashutil::storage_index_from_key(&cap.key));
    let seeds: Vec<Vec<u8>> = servers.iter().map(|s| s.permutation_seed()).collect();
    let order = permuted_indexes(si.as_bytes(), &seeds);
    let stores: Vec<Store> = order.iter().map(|&i| servers[i].clone()).collect();
    let names: Vec<String> = stores.iter().map(|s| s.name()).collect();

    // Ask everyone; answers land in `located` as they come.
    let located = Arc::new(Mutex::new(Located::default()));
    let news = Arc::new(Notify::new());
    let mut askers = tokio::task::JoinSet::new();
    for (i, s) in stores.iter().enumerate() {
        let (s, located, news, name) = (s.clone(), located.clone(), news.clone(), names[i].clone());
        askers.spawn(async move {
            let r = s.list_shares(si).await;
            if let Ok(mut l) = located.lock() {
                l.answered += 1;
                match r {
                    Ok(set) => l.found.extend(set.into_iter().map(|n| (i, n))),
                    Err(e) => l.problems.push(format!("{name}: {}", e.describe())),
                }
            }
            news.notify_one();
        });
    }
    let result = Session {
        stores: &stores,
        names: &names,
        cap,
        si,
        located: &located,
        news: &news,
        n_servers: stores.len(),
        cfg,
        used: BTreeSet::new(),
        bad: Vec::new(),
        decoder: None,
        crypttext_ok: false,
    }
    .run(start, end, &out)
    .await;
    askers.abort_all();
    result
}

struct Session<'a> {
    stores: &'a [Store],
    names: &'a [String],
    cap: &'a ChkCap,
    si: StorageIndex,
    located: &'a Mutex<Located>,
    news: &'a Notify,
    n_servers: usize,
    cfg: &'a DownloadConfig,
    /// `(server, share)` pairs already tried.
    used: BTreeSet<(usize, ShareNum)>,
    /// Problems with shares we tried.
    bad: Vec<String>,
    decoder: Option<ChkDecoder>,
    crypttext_ok: bool,
}

/// Blocks of one segment: `(slot, the share read, result)`.
type Fetched = Vec<(usize, (usize, ShareNum), Result<Bytes, StoreError>)>;

impl Session<'_> {
    fn problems(&self) -> Vec<String> {
        let mut p = self.bad.clone();
        if let Ok(l) = self.located.lock() {
            p.extend(l.problems.iter().cloned());
        }
        p
    }

    fn fail(&self, found: usize) -> DownloadError {
        DownloadError::NotEnoughShares {
            needed: self.cap.needed_shares,
            found,
            problems: self.problems(),
        }
    }

    /// The next untried share, preferring share numbers not in `active` and servers not
    /// already used; waits for more answers if none is known yet.
    async fn next_candidate(&mut self, active: &[Active]) -> Option<(usize, ShareNum)> {
        let deadline = tokio::time::Instant::now() + self.cfg.locate_timeout;
        loop {
            let notified = self.news.notified();
            let (pick, all_answered) = {
                let l = self.located.lock().ok()?;
                let in_use_sh: BTreeSet<ShareNum> = active.iter().map(|a| a.shnum).collect();
                let in_use_srv: BTreeSet<usize> = active.iter().map(|a| a.server).collect();
                let fresh = |&&(srv, sh): &&(usize, ShareNum)| {
                    !self.used.contains(&(srv, sh)) && !in_use_sh.contains(&sh)
                };
                let pick = l
                    .found
                    .iter()
                    .filter(fresh)
                    .find(|(srv, _)| !in_use_srv.contains(srv))
                    .or_else(|| l.found.iter().find(fresh))
                    .copied();
                (pick, l.answered >= self.n_servers)
            };
            if pick.is_some() || all_answered {
                return pick;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    async fn read(
        &self,
        server: usize,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, String> {
        self.stores[server]
            .read(self.si, shnum, offset, len)
            .await
            .map_err(|e| e.describe())
    }

    /// Bytes `offset..offset + len` of a share: from its head if there, else from the server.
    async fn read_via(
        &self,
        head: &Head,
        server: usize,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, String> {
        match head.get(offset, len) {
            Some(b) => Ok(b),
            None => self.read(server, shnum, offset, len).await,
        }
    }

    /// Reads what share `shnum` on `server` needs before its blocks can be verified.
    async fn set_up(&mut self, server: usize, shnum: ShareNum) -> Result<Active, (String, bool)> {
        let sh = u16::from(shnum.get());
        let head = Head(
            self.read(server, shnum, 0, HEAD_READ)
                .await
                .map_err(|e| (e, false))?,
        );
        let header = head.get(0, HEADER_LEN).unwrap_or_default();
        let layout = ShareLayout::parse(&header).map_err(|e| (format!("bad header: {e}"), true))?;
        if self.decoder.is_none() {
            let ueb_area = self
                .read_via(&head, server, shnum, layout.uri_extension, UEB_READ)
                .await
                .map_err(|e| (e, false))?;
            let len_len = layout.ueb_length_len() as usize;
            if ueb_area.len() < len_len {
                return Err(("truncated URI extension".into(), true));
            }
            let len = ueb_area[..len_len]
                .iter()
                .fold(0u64, |a, &b| (a << 8) | u64::from(b));
            let Some(ueb) = usize::try_from(len)
                .ok()
                .and_then(|l| ueb_area.get(len_len..len_len.checked_add(l)?))
            else {
                return Err(("truncated URI extension".into(), true));
            };
            let d = ChkDecoder::new(self.cap, ueb).map_err(|e| (e.to_string(), true))?;
            self.decoder = Some(d);
        }
        let Some(dec) = self.decoder.as_mut() else {
            return Err(("no decoder".into(), false));
        };
        dec.check_layout(sh, &layout)
            .map_err(|e| (e.to_string(), true))?;
        // Share hash chain, then the block tree, then (once) the crypttext tree.
        let chain_len = layout.uri_extension.saturating_sub(layout.share_hashes);
        let tree_len = layout.share_hashes.saturating_sub(layout.block_hashes);
        let ct_len = layout
            .block_hashes
            .saturating_sub(layout.crypttext_hash_tree);
        let stores_read = |off, len| self.read_via(&head, server, shnum, off, len);
        let (chain, tree, ct) = tokio::join!(
            stores_read(layout.share_hashes, chain_len),
            stores_read(layout.block_hashes, tree_len),
            async {
                if self.crypttext_ok {
                    Ok(Bytes::new())
                } else {
                    stores_read(layout.crypttext_hash_tree, ct_len).await
                }
            }
        );
        let (chain, tree, ct) = (
            chain.map_err(|e| (e, false))?,
            tree.map_err(|e| (e, false))?,
            ct.map_err(|e| (e, false))?,
        );
        let Some(dec) = self.decoder.as_mut() else {
            return Err(("no decoder".into(), false));
        };
        let chain = parse_share_hash_chain(&chain).map_err(|e| (e.to_string(), true))?;
        dec.add_share_hashes(sh, &chain)
            .map_err(|e| (e.to_string(), true))?;
        let tree: Vec<(usize, [u8; 32])> = parse_hashes(&tree)
            .map_err(|e| (e.to_string(), true))?
            .into_iter()
            .enumerate()
            .collect();
        dec.add_block_hashes(sh, &tree)
            .map_err(|e| (e.to_string(), true))?;
        if !self.crypttext_ok {
            let ct: Vec<(usize, [u8; 32])> = parse_hashes(&ct)
                .map_err(|e| (e.to_string(), true))?
                .into_iter()
                .enumerate()
                .collect();
            dec.add_crypttext_hashes(&ct)
                .map_err(|e| (e.to_string(), true))?;
            self.crypttext_ok = true;
        }
        Ok(Active {
            server,
            shnum,
            layout,
            head,
        })
    }

    /// Finds a working share to add to `active`.
    async fn add_share(&mut self, active: &[Active]) -> Result<Active, DownloadError> {
        loop {
            let Some((server, shnum)) = self.next_candidate(active).await else {
                return Err(self.fail(active.len()));
            };
            self.used.insert((server, shnum));
            match self.set_up(server, shnum).await {
                Ok(a) => return Ok(a),
                Err((why, corrupt)) => self.reject(server, shnum, why, corrupt),
            }
        }
    }

    fn reject(&mut self, server: usize, shnum: ShareNum, why: String, corrupt: bool) {
        self.bad.push(format!(
            "{} share {}: {why}",
            self.names[server],
            shnum.get()
        ));
        if corrupt {
            let (store, si) = (self.stores[server].clone(), self.si);
            let reason = why.clone();
            tokio::spawn(async move {
                let _ = store.advise_corrupt(si, shnum, &reason).await;
            });
        }
    }

    fn fetch(
        &self,
        active: &[Active],
        segment: u64,
        slots: &[usize],
    ) -> tokio::task::JoinHandle<Fetched> {
        let Some(dec) = &self.decoder else {
            return tokio::spawn(async { Vec::new() });
        };
        let plan = dec.plan();
        let len = plan.block_len(segment);
        let reads: Vec<_> = slots
            .iter()
            .map(|&slot| {
                let a = &active[slot];
                let store = self.stores[a.server].clone();
                let (si, shnum) = (self.si, a.shnum);
                let offset = a.layout.data + segment * plan.block_size;
                let from = (a.server, a.shnum);
                let cached = a.head.get(offset, len);
                async move {
                    let r = match cached {
                        Some(b) => Ok(b),
                        None => store.read(si, shnum, offset, len).await,
                    };
                    (slot, from, r)
                }
            })
            .collect();
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(reads.len());
            let mut js = tokio::task::JoinSet::new();
            for r in reads {
                js.spawn(r);
            }
            while let Some(Ok(x)) = js.join_next().await {
                out.push(x);
            }
            out
        })
    }

    async fn run(
        mut self,
        start: u64,
        end: u64,
        out: &mpsc::Sender<Bytes>,
    ) -> Result<(), DownloadError> {
        let k = usize::from(self.cap.needed_shares);
        let mut active: Vec<Active> = Vec::with_capacity(k);
        while active.len() < k {
            let a = self.add_share(&active).await?;
            active.push(a);
        }
        let Some(plan) = self.decoder.as_ref().map(|d| d.plan().clone()) else {
            return Err(self.fail(0));
        };
        let first = start / plan.segment_size;
        let last = (end - 1) / plan.segment_size;
        let all: Vec<usize> = (0..k).collect();
        let mut ahead: VecDeque<(u64, tokio::task::JoinHandle<Fetched>)> = VecDeque::new();
        let mut next_fetch = first;
        for segment in first..=last {
            while next_fetch <= last && ahead.len() < self.cfg.depth.max(1) {
                ahead.push_back((next_fetch, self.fetch(&active, next_fetch, &all)));
                next_fetch += 1;
            }
            let Some((seg, handle)) = ahead.pop_front() else {
                break;
            };
            debug_assert_eq!(seg, segment);
            let mut fetched = handle.await.unwrap_or_default();
            // Verified blocks by slot.
            let mut blocks: Vec<Option<Bytes>> = vec![None; k];
            loop {
                let mut retry = Vec::new();
                for (slot, from, r) in fetched.drain(..) {
                    let a = &active[slot];
                    if (a.server, a.shnum) != from {
                        // Prefetched from a share replaced since: read it again.
                        retry.push(slot);
                        continue;
                    }
                    let sh = u16::from(a.shnum.get());
                    let verdict = match r {
                        Ok(b) => match self
                            .decoder
                            .as_mut()
                            .map(|d| d.verify_block(sh, segment, &b))
                        {
                            Some(Ok(())) => {
                                blocks[slot] = Some(b);
                                continue;
                            }
                            Some(Err(e)) => (e.to_string(), true),
                            None => ("no decoder".to_owned(), false),
                        },
                        Err(e) => (e.describe(), false),
                    };
                    let (server, shnum) = (a.server, a.shnum);
                    self.reject(
                        server,
                        shnum,
                        format!("segment {segment}: {}", verdict.0),
                        verdict.1,
                    );
                    // Replace the share in this slot; later prefetches of the old share are
                    // re-fetched when they fail to verify.
                    let others: Vec<Active> = active
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != slot)
                        .map(|(_, a)| a.clone())
                        .collect();
                    active[slot] = self.add_share(&others).await?;
                    retry.push(slot);
                }
                if retry.is_empty() {
                    break;
                }
                fetched = self
                    .fetch(&active, segment, &retry)
                    .await
                    .unwrap_or_default();
            }
            let verified: Vec<(u16, &[u8])> = active
                .iter()
                .zip(&blocks)
                .filter_map(|(a, b)| b.as_deref().map(|b| (u16::from(a.shnum.get()), b)))
                .collect();
            let Some(dec) = self.decoder.as_mut() else {
                return Err(self.fail(0));
            };
            let plain = match dec.decode_segment(segment, &verified) {
                Ok((_, plain)) => plain,
                // Every block passed its hash check, so the crypttext tree itself (from one
                // share) disagrees: nothing a retry fixes.
                Err(e) => {
                    self.bad.push(format!("segment {segment}: {e}"));
                    return Err(self.fail(k));
                }
            };
            let seg_start = segment * plan.segment_size;
            let a = start.saturating_sub(seg_start) as usize;
            let b = (end - seg_start).min(plain.len() as u64) as usize;
            let mut plain = plain;
            plain.truncate(b);
            let chunk = Bytes::from(plain).slice(a..);
            if out.send(chunk).await.is_err() {
                return Err(DownloadError::Cancelled);
            }
        }
        Ok(())
    }
}

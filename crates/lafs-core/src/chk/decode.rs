//! Decoding CHK files: any k verified shares back to verified plaintext.
//!
//! Trust flows from the cap: the cap holds H(UEB); the UEB holds the share-tree root and the
//! crypttext-tree root; a share's hash chain ties its block-tree root to the share-tree root;
//! the block tree ties every block to that root. A block is used only once its hash is
//! connected to the cap, and every decoded segment is checked against the crypttext tree
//! before it is decrypted. Wrong bytes from a server can therefore cause an error, never
//! wrong plaintext.

use super::layout::{self, ShareLayout};
use super::ueb::Ueb;
use super::{ChkError, Plan};
use crate::cap::ChkCap;
use crate::crypto::aes_ctr_xor;
use crate::hashtree::{Hash, IncompleteHashTree};
use crate::hashutil::{TaggedHasher, block_hash, crypttext_segment_hash, tags, ueb_hash};
use lafs_fec::Fec;
use std::collections::BTreeMap;

/// Verifies and decodes the segments of one CHK file.
#[derive(Debug)]
pub struct ChkDecoder {
    key: [u8; 16],
    ueb: Ueb,
    plan: Plan,
    fec: Fec,
    share_tree: IncompleteHashTree,
    crypttext_tree: IncompleteHashTree,
    block_trees: BTreeMap<u16, IncompleteHashTree>,
}

impl ChkDecoder {
    /// Starts from the cap and a UEB fetched from any share; refuses a UEB whose hash is not
    /// the cap's or whose fields disagree with it.
    pub fn new(cap: &ChkCap, ueb_bytes: &[u8]) -> Result<Self, ChkError> {
        if ueb_hash(ueb_bytes) != cap.ueb_hash {
            return Err(ChkError::UebHashMismatch);
        }
        let ueb = Ueb::parse(ueb_bytes)?;
        if ueb.needed_shares != cap.needed_shares || ueb.total_shares != cap.total_shares {
            return Err(ChkError::CapMismatch("share counts"));
        }
        if ueb.size != cap.size {
            return Err(ChkError::CapMismatch("size"));
        }
        let plan = Plan::from_ueb(&ueb);
        let fec = Fec::new(
            usize::from(plan.needed_shares),
            usize::from(plan.total_shares),
        )?;
        let nseg = usize::try_from(plan.num_segments)
            .map_err(|_| ChkError::CapMismatch("number of segments"))?;
        let mut share_tree = IncompleteHashTree::new(usize::from(plan.total_shares));
        share_tree
            .set_root(ueb.share_root_hash)
            .map_err(|_| ChkError::UebHashMismatch)?;
        let mut crypttext_tree = IncompleteHashTree::new(nseg);
        crypttext_tree
            .set_root(ueb.crypttext_root_hash)
            .map_err(|_| ChkError::UebHashMismatch)?;
        Ok(Self {
            key: cap.key,
            ueb,
            plan,
            fec,
            share_tree,
            crypttext_tree,
            block_trees: BTreeMap::new(),
        })
    }

    /// The verified UEB.
    pub fn ueb(&self) -> &Ueb {
        &self.ueb
    }

    /// The sizes the UEB implies.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Checks a share header against the plan.
    pub fn check_layout(&self, shnum: u16, l: &ShareLayout) -> Result<(), ChkError> {
        let bad = |reason: &str| ChkError::BadShare {
            shnum,
            reason: reason.to_string(),
        };
        if l.block_size != self.plan.block_size || l.data_size != self.plan.share_data_size {
            return Err(bad("header sizes disagree with the URI extension block"));
        }
        let tree = crate::hashtree::tree_node_count(self.crypttext_tree.num_leaves()) as u64 * 32;
        if l.block_hashes - l.crypttext_hash_tree < tree || l.share_hashes - l.block_hashes < tree {
            return Err(bad("hash tree areas are too small"));
        }
        Ok(())
    }

    /// Accepts share `shnum`'s hash chain (which includes its own leaf: the root of its block
    /// tree), checking it against the share-tree root.
    pub fn add_share_hashes(
        &mut self,
        shnum: u16,
        chain: &[(usize, Hash)],
    ) -> Result<(), ChkError> {
        if shnum >= self.plan.total_shares {
            return Err(ChkError::BadShare {
                shnum,
                reason: "share number out of range".into(),
            });
        }
        self.share_tree
            .set_hashes(chain, &[])
            .map_err(|e| ChkError::BadShare {
                shnum,
                reason: format!("share hash chain: {e}"),
            })?;
        let Some(root) = self.share_tree.leaf(usize::from(shnum)).copied() else {
            return Err(ChkError::BadShare {
                shnum,
                reason: "share hash chain lacks this share's block-tree root".into(),
            });
        };
        let mut t = IncompleteHashTree::new(self.crypttext_tree.num_leaves());
        t.set_root(root).map_err(|e| ChkError::BadShare {
            shnum,
            reason: e.to_string(),
        })?;
        self.block_trees.insert(shnum, t);
        Ok(())
    }

    /// Accepts block-tree nodes of share `shnum` (untrusted; checked against its root).
    pub fn add_block_hashes(
        &mut self,
        shnum: u16,
        hashes: &[(usize, Hash)],
    ) -> Result<(), ChkError> {
        let t = self.block_trees.get_mut(&shnum).ok_or(ChkError::BadShare {
            shnum,
            reason: "block hashes given before the share hash chain".into(),
        })?;
        t.set_hashes(hashes, &[]).map_err(|e| ChkError::BadShare {
            shnum,
            reason: format!("block hash tree: {e}"),
        })
    }

    /// Block-tree node indexes still needed to verify block `segment` of share `shnum`.
    pub fn needed_block_hashes(&self, shnum: u16, segment: u64) -> Vec<usize> {
        match self.block_trees.get(&shnum) {
            Some(t) => t.needed_hashes(segment as usize, true),
            None => Vec::new(),
        }
    }

    /// Accepts crypttext-tree nodes (untrusted; checked against the UEB's root).
    pub fn add_crypttext_hashes(&mut self, hashes: &[(usize, Hash)]) -> Result<(), ChkError> {
        self.crypttext_tree
            .set_hashes(hashes, &[])
            .map_err(|_| ChkError::CrypttextMismatch("crypttext hash tree"))
    }

    /// Crypttext-tree node indexes still needed to verify segment `segment`.
    pub fn needed_crypttext_hashes(&self, segment: u64) -> Vec<usize> {
        self.crypttext_tree.needed_hashes(segment as usize, false)
    }

    /// Checks one block against share `shnum`'s verified block tree.
    pub fn verify_block(&mut self, shnum: u16, segment: u64, block: &[u8]) -> Result<(), ChkError> {
        if segment >= self.plan.num_segments {
            return Err(ChkError::Usage(format!(
                "segment {segment} is past the end"
            )));
        }
        if block.len() as u64 != self.plan.block_len(segment) {
            return Err(ChkError::BadShare {
                shnum,
                reason: format!("block {segment} has the wrong length"),
            });
        }
        let t = self.block_trees.get_mut(&shnum).ok_or(ChkError::BadShare {
            shnum,
            reason: "no verified block tree".into(),
        })?;
        t.set_hashes(&[], &[(segment as usize, block_hash(block))])
            .map_err(|e| ChkError::BadShare {
                shnum,
                reason: format!("block {segment} fails its hash check ({e})"),
            })
    }

    /// Decodes segment `segment` from k blocks that passed [`verify_block`](Self::verify_block),
    /// checks it against the crypttext tree and returns `(ciphertext, plaintext)`.
    pub fn decode_segment(
        &mut self,
        segment: u64,
        blocks: &[(u16, &[u8])],
    ) -> Result<(Vec<u8>, Vec<u8>), ChkError> {
        let k = usize::from(self.plan.needed_shares);
        if blocks.len() != k {
            return Err(ChkError::Usage(format!(
                "decode_segment needs exactly {k} blocks, got {}",
                blocks.len()
            )));
        }
        let block_len = self.plan.block_len(segment) as usize;
        let mut padded = vec![0u8; block_len * k];
        {
            let shares: Vec<(usize, &[u8])> =
                blocks.iter().map(|&(s, b)| (usize::from(s), b)).collect();
            let mut out: Vec<&mut [u8]> = if block_len == 0 {
                Vec::new()
            } else {
                padded.chunks_exact_mut(block_len).collect()
            };
            if block_len > 0 {
                self.fec.decode(&shares, &mut out)?;
            }
        }
        padded.truncate(self.plan.segment_len(segment) as usize);
        let leaf = crypttext_segment_hash(&padded);
        self.crypttext_tree
            .set_hashes(&[], &[(segment as usize, leaf)])
            .map_err(|_| ChkError::CrypttextMismatch("segment hash"))?;
        let mut plain = padded.clone();
        aes_ctr_xor(&self.key, segment * self.plan.segment_size, &mut plain);
        Ok((padded, plain))
    }
}

/// A share held in memory, split into its sections.
struct ShareView<'a> {
    shnum: u16,
    data: &'a [u8],
    layout: ShareLayout,
}

impl<'a> ShareView<'a> {
    fn parse(shnum: u16, data: &'a [u8]) -> Result<Self, ChkError> {
        let layout = ShareLayout::parse(data).map_err(|e| ChkError::BadShare {
            shnum,
            reason: e.to_string(),
        })?;
        Ok(Self {
            shnum,
            data,
            layout,
        })
    }

    fn range(&self, start: u64, end: u64, what: &str) -> Result<&'a [u8], ChkError> {
        let s = usize::try_from(start).ok();
        let e = usize::try_from(end).ok();
        match (s, e) {
            (Some(s), Some(e)) if s <= e && e <= self.data.len() => Ok(&self.data[s..e]),
            _ => Err(ChkError::BadShare {
                shnum: self.shnum,
                reason: format!("truncated: {what} is past the end of the share"),
            }),
        }
    }

    fn ueb(&self) -> Result<&'a [u8], ChkError> {
        let l = &self.layout;
        let len_bytes = self.range(
            l.uri_extension,
            l.uri_extension + l.ueb_length_len(),
            "URI extension length",
        )?;
        let len = len_bytes.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
        if len >= super::ueb::MAX_UEB_LEN as u64 {
            return Err(ChkError::BadShare {
                shnum: self.shnum,
                reason: format!("URI extension block of {len} bytes is too long"),
            });
        }
        let start = l.uri_extension + l.ueb_length_len();
        self.range(start, start + len, "URI extension block")
    }

    fn hashes(&self, start: u64, end: u64, what: &str) -> Result<Vec<(usize, Hash)>, ChkError> {
        let bytes = self.range(start, end, what)?;
        Ok(layout::parse_hashes(bytes)
            .map_err(|e| ChkError::BadShare {
                shnum: self.shnum,
                reason: e.to_string(),
            })?
            .into_iter()
            .enumerate()
            .collect())
    }

    fn block(&self, plan: &Plan, segment: u64) -> Result<&'a [u8], ChkError> {
        let start = self.layout.data + segment * plan.block_size;
        self.range(start, start + plan.block_len(segment), "block")
    }
}

/// Decodes a whole file from in-memory shares `(share number, bytes as served)`, verifying
/// every hash. Bad shares are skipped while at least k good ones remain.
pub fn decode_bytes(cap: &ChkCap, shares: &[(u16, &[u8])]) -> Result<Vec<u8>, ChkError> {
    let mut problems: Vec<String> = Vec::new();
    let mut views = Vec::new();
    for &(shnum, data) in shares {
        match ShareView::parse(shnum, data) {
            Ok(v) => views.push(v),
            Err(e) => problems.push(e.to_string()),
        }
    }
    // The first share whose UEB matches the cap sets up the decoder.
    let mut decoder = None;
    for v in &views {
        match v.ueb().and_then(|u| ChkDecoder::new(cap, u)) {
            Ok(d) => {
                decoder = Some(d);
                break;
            }
            Err(e) => problems.push(format!("share {}: {e}", v.shnum)),
        }
    }
    let Some(mut dec) = decoder else {
        return Err(ChkError::NotEnoughShares {
            segment: 0,
            needed: cap.needed_shares,
            usable: 0,
            details: problems.iter().map(|p| format!("; {p}")).collect(),
        });
    };
    let plan = dec.plan().clone();
    let mut good: Vec<&ShareView> = Vec::new();
    let mut have_crypttext_tree = false;
    for v in &views {
        if good.iter().any(|g| g.shnum == v.shnum) {
            continue;
        }
        let l = &v.layout;
        let result = dec.check_layout(v.shnum, l).and_then(|()| {
            let chain_bytes = v.range(l.share_hashes, l.uri_extension, "share hash chain")?;
            let chain =
                layout::parse_share_hash_chain(chain_bytes).map_err(|e| ChkError::BadShare {
                    shnum: v.shnum,
                    reason: e.to_string(),
                })?;
            dec.add_share_hashes(v.shnum, &chain)?;
            let tree_len = l.block_hashes - l.crypttext_hash_tree;
            let blocks = v.hashes(l.block_hashes, l.block_hashes + tree_len, "block hash tree")?;
            dec.add_block_hashes(v.shnum, &blocks)
        });
        match result {
            Ok(()) => good.push(v),
            Err(e) => problems.push(e.to_string()),
        }
        // Every share carries a copy of the crypttext tree; the first copy that checks out
        // against the UEB is used. A bad copy does not make the share's blocks unusable.
        if !have_crypttext_tree {
            let ct = v
                .hashes(l.crypttext_hash_tree, l.block_hashes, "crypttext hash tree")
                .and_then(|ct| dec.add_crypttext_hashes(&ct));
            match ct {
                Ok(()) => have_crypttext_tree = true,
                Err(e) => problems.push(format!("share {}: {e}", v.shnum)),
            }
        }
    }
    if !have_crypttext_tree {
        return Err(ChkError::NotEnoughShares {
            segment: 0,
            needed: plan.needed_shares,
            usable: 0,
            details: problems.iter().map(|p| format!("; {p}")).collect(),
        });
    }
    let k = usize::from(plan.needed_shares);
    let mut out = Vec::with_capacity(usize::try_from(plan.size).unwrap_or(0));
    let mut crypttext_hasher = TaggedHasher::new(tags::CRYPTTEXT);
    let mut bad: Vec<u16> = Vec::new();
    for segment in 0..plan.num_segments {
        let mut blocks: Vec<(u16, &[u8])> = Vec::with_capacity(k);
        for v in &good {
            if blocks.len() == k {
                break;
            }
            if bad.contains(&v.shnum) {
                continue;
            }
            let verified = v
                .block(&plan, segment)
                .and_then(|b| dec.verify_block(v.shnum, segment, b).map(|()| b));
            match verified {
                Ok(b) => blocks.push((v.shnum, b)),
                Err(e) => {
                    bad.push(v.shnum);
                    problems.push(e.to_string());
                }
            }
        }
        if blocks.len() < k {
            return Err(ChkError::NotEnoughShares {
                segment,
                needed: plan.needed_shares,
                usable: blocks.len(),
                details: problems.iter().map(|p| format!("; {p}")).collect(),
            });
        }
        let (ciphertext, plain) = dec.decode_segment(segment, &blocks)?;
        crypttext_hasher.update(&ciphertext);
        out.extend_from_slice(&plain);
    }
    if let Some(expected) = dec.ueb().crypttext_hash
        && crypttext_hasher.finalize() != expected
    {
        return Err(ChkError::CrypttextMismatch("whole-file hash"));
    }
    Ok(out)
}

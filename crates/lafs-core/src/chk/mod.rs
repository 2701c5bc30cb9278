//! CHK immutable files: encoding a plaintext into N shares and decoding any k of them.
//!
//! The pipeline, as in stock Tahoe:
//! 1. key = convergent hash of the whole plaintext (or a random key);
//! 2. per segment: AES-CTR encrypt, hash the ciphertext segment (crypttext tree leaf),
//!    zero-pad the tail to a multiple of k, split into k blocks, erasure-code to N blocks,
//!    hash every block (block tree leaves);
//! 3. at the end: per share a block hash tree, one share hash tree over their roots, the
//!    crypttext tree, the UEB (which names all roots), and the cap `URI:CHK:key:H(UEB):k:N:size`.
//!
//! Everything here is a state machine over byte buffers. [`SegmentEncoder`] is stateless and
//! `Sync`, so segments can be encoded on several threads; [`ChkEncoder`] takes the results in
//! order. Memory is bounded by the segments in flight plus 32 bytes per segment per share for
//! the hash trees that are written at the end of every share.

mod decode;
pub mod layout;
pub mod pipeline;
pub mod ueb;

pub use decode::{ChkDecoder, decode_bytes};

use crate::cap::{Cap, ChkCap};
use crate::crypto::aes_ctr_xor_into;
use crate::hashtree::{Hash, HashTree, needed_hashes_stock_order};
use crate::hashutil::{
    TaggedHasher, block_hash, convergence_hasher, crypttext_segment_hash, tags, ueb_hash,
};
use lafs_fec::{Fec, FecError};
use layout::ShareLayout;
use ueb::{Ueb, UebError};

/// Files of at most this many bytes are stored in the cap itself (`URI:LIT:`).
pub const LIT_THRESHOLD: u64 = 55;
/// Stock Tahoe's default maximum segment size (1 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 1 << 20;

/// Erasure-coding parameters of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodingParams {
    /// k: shares needed to read the file.
    pub needed_shares: u16,
    /// N: shares produced.
    pub total_shares: u16,
    /// Upper bound on the segment size (the actual one is adjusted to the file and to k).
    pub max_segment_size: u64,
}

impl Default for EncodingParams {
    fn default() -> Self {
        Self {
            needed_shares: 3,
            total_shares: 10,
            max_segment_size: DEFAULT_MAX_SEGMENT_SIZE,
        }
    }
}

impl EncodingParams {
    /// Checks `1 <= k <= N <= 256` and a positive segment size.
    pub fn validate(&self) -> Result<(), ChkError> {
        let (k, n) = (self.needed_shares, self.total_shares);
        if k == 0 {
            return Err(ChkError::BadParams(
                "shares needed (k) must be at least 1".into(),
            ));
        }
        if n > 256 {
            return Err(ChkError::BadParams(format!(
                "shares total (N={n}) must be at most 256"
            )));
        }
        if k > n {
            return Err(ChkError::BadParams(format!(
                "shares needed (k={k}) must not exceed shares total (N={n})"
            )));
        }
        if self.max_segment_size == 0 {
            return Err(ChkError::BadParams(
                "maximum segment size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Why encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChkError {
    /// Invalid parameters.
    #[error("invalid encoding parameters: {0}")]
    BadParams(String),
    /// The erasure coder refused its input.
    #[error("erasure coding failed: {0}")]
    Fec(#[from] FecError),
    /// A malformed UEB.
    #[error(transparent)]
    Ueb(#[from] UebError),
    /// A UEB whose hash is not the one in the cap.
    #[error("URI extension block does not match the cap (wrong file or corrupt share)")]
    UebHashMismatch,
    /// A UEB whose fields disagree with the cap.
    #[error("URI extension block disagrees with the cap about {0}")]
    CapMismatch(&'static str),
    /// A share that cannot be used.
    #[error("share {shnum} is unusable: {reason}")]
    BadShare {
        /// Share number.
        shnum: u16,
        /// What was wrong.
        reason: String,
    },
    /// Fewer than k usable shares.
    #[error("not enough good shares for segment {segment}: need {needed}, have {usable}{details}")]
    NotEnoughShares {
        /// Segment being decoded.
        segment: u64,
        /// k.
        needed: u16,
        /// Usable shares found.
        usable: usize,
        /// Why the others were rejected (`; share N: reason` items).
        details: String,
    },
    /// The decoded ciphertext does not match the crypttext hashes.
    #[error("decoded ciphertext fails its hash check ({0})")]
    CrypttextMismatch(&'static str),
    /// Input of the wrong length or in the wrong order.
    #[error("{0}")]
    Usage(String),
}

/// Size of the last segment (before padding) of a file of `size` bytes.
pub(crate) fn tail_size(size: u64, segment_size: u64) -> u64 {
    match size % segment_size {
        0 => segment_size,
        t => t,
    }
}

/// Every size derived from the file size and the encoding parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// k.
    pub needed_shares: u16,
    /// N.
    pub total_shares: u16,
    /// File size in bytes.
    pub size: u64,
    /// Adjusted segment size: `next_multiple(min(max_segment_size, size), k)`.
    pub segment_size: u64,
    /// `ceil(size / segment_size)`.
    pub num_segments: u64,
    /// Bytes in the last segment.
    pub tail_size: u64,
    /// The last segment zero-padded to a multiple of k.
    pub padded_tail_size: u64,
    /// Block size of full segments.
    pub block_size: u64,
    /// Block size of the last segment.
    pub tail_block_size: u64,
    /// Bytes of blocks in each share.
    pub share_data_size: u64,
    /// Entries in each share's hash chain.
    pub num_share_hashes: u64,
    /// The share layout.
    pub layout: ShareLayout,
}

impl Plan {
    /// Plans the encoding of a file of `size` bytes (`size` must be above 0).
    pub fn new(size: u64, params: &EncodingParams) -> Result<Self, ChkError> {
        params.validate()?;
        if size == 0 {
            return Err(ChkError::BadParams("a CHK file cannot be empty".into()));
        }
        let k = u64::from(params.needed_shares);
        let segment_size = params.max_segment_size.min(size).next_multiple_of(k);
        Ok(Self::from_parts(
            params.needed_shares,
            params.total_shares,
            size,
            segment_size,
        ))
    }

    /// The plan a UEB describes.
    pub fn from_ueb(ueb: &Ueb) -> Self {
        Self::from_parts(
            ueb.needed_shares,
            ueb.total_shares,
            ueb.size,
            ueb.segment_size,
        )
    }

    fn from_parts(k: u16, n: u16, size: u64, segment_size: u64) -> Self {
        let kk = u64::from(k);
        let num_segments = size.div_ceil(segment_size);
        let tail = tail_size(size, segment_size);
        let padded_tail_size = tail.next_multiple_of(kk);
        let block_size = segment_size / kk;
        let tail_block_size = padded_tail_size / kk;
        let share_data_size = block_size * (num_segments - 1) + tail_block_size;
        let num_share_hashes = needed_hashes_stock_order(usize::from(n), 0, true).len() as u64;
        let layout = ShareLayout::new(block_size, share_data_size, num_segments, num_share_hashes);
        Self {
            needed_shares: k,
            total_shares: n,
            size,
            segment_size,
            num_segments,
            tail_size: tail,
            padded_tail_size,
            block_size,
            tail_block_size,
            share_data_size,
            num_share_hashes,
            layout,
        }
    }

    /// Plaintext bytes in segment `index`.
    pub fn segment_len(&self, index: u64) -> u64 {
        if index + 1 == self.num_segments {
            self.tail_size
        } else {
            self.segment_size
        }
    }

    /// Block size of segment `index`.
    pub fn block_len(&self, index: u64) -> u64 {
        if index + 1 == self.num_segments {
            self.tail_block_size
        } else {
            self.block_size
        }
    }

    /// The UEB of a file with this plan and these hashes.
    pub fn ueb(
        &self,
        crypttext_hash: Hash,
        crypttext_root_hash: Hash,
        share_root_hash: Hash,
    ) -> Ueb {
        Ueb {
            codec_name: "crs".into(),
            codec_params: (self.segment_size, self.needed_shares, self.total_shares),
            tail_codec_params: (self.padded_tail_size, self.needed_shares, self.total_shares),
            crypttext_hash: Some(crypttext_hash),
            crypttext_root_hash,
            share_root_hash,
            needed_shares: self.needed_shares,
            total_shares: self.total_shares,
            num_segments: self.num_segments,
            segment_size: self.segment_size,
            size: self.size,
        }
    }

    /// Length of every share of the file, known before encoding (the UEB's length does not
    /// depend on its hash values): what an uploader allocates on servers.
    pub fn share_size(&self) -> u64 {
        let ueb_len = self.ueb([0; 32], [0; 32], [0; 32]).pack().len() as u64;
        self.layout.share_len(ueb_len)
    }

    /// Offset of block `index` within a share.
    pub fn block_offset(&self, index: u64) -> u64 {
        self.layout.data + index * self.block_size
    }

    /// The tag-bound hasher that yields the convergent key for this plan.
    pub fn convergence_hasher(&self, convergence_secret: &[u8]) -> ConvergentKeyHasher {
        ConvergentKeyHasher(convergence_hasher(
            self.needed_shares,
            self.total_shares,
            self.segment_size,
            convergence_secret,
        ))
    }
}

/// Derives a file's convergent encryption key from its plaintext, streamed in.
#[derive(Clone, Debug)]
pub struct ConvergentKeyHasher(TaggedHasher);

impl ConvergentKeyHasher {
    /// Feeds plaintext.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The 16-byte AES key.
    pub fn finalize(self) -> [u8; 16] {
        self.0.finalize_key()
    }
}

/// Reusable buffers holding one encoded segment.
#[derive(Clone, Debug, Default)]
pub struct EncodedSegment {
    /// Segment number.
    pub index: u64,
    /// Unpadded ciphertext length.
    len: usize,
    /// Block length.
    block_len: usize,
    /// Ciphertext, zero-padded to k blocks: blocks 0..k are slices of it.
    padded: Vec<u8>,
    /// Blocks k..N, back to back.
    parity: Vec<u8>,
    /// Hash of each of the N blocks.
    pub block_hashes: Vec<Hash>,
    /// Crypttext tree leaf for this segment.
    pub crypttext_leaf: Hash,
}

impl EncodedSegment {
    /// The unpadded ciphertext of the segment.
    pub fn ciphertext(&self) -> &[u8] {
        &self.padded[..self.len]
    }

    /// Block for share `shnum`.
    pub fn block(&self, shnum: usize) -> &[u8] {
        let k_bytes = self.padded.len();
        let k = k_bytes.checked_div(self.block_len).unwrap_or(0);
        if shnum < k {
            &self.padded[shnum * self.block_len..(shnum + 1) * self.block_len]
        } else {
            let j = shnum - k;
            &self.parity[j * self.block_len..(j + 1) * self.block_len]
        }
    }
}

/// Encodes single segments; stateless, so it can be shared by worker threads.
#[derive(Clone, Debug)]
pub struct SegmentEncoder {
    plan: Plan,
    key: [u8; 16],
    fec: Fec,
}

impl SegmentEncoder {
    /// Encrypts, erasure-codes and hashes segment `index` of the plaintext into `out`.
    pub fn encode(
        &self,
        index: u64,
        plaintext: &[u8],
        out: &mut EncodedSegment,
    ) -> Result<(), ChkError> {
        let plan = &self.plan;
        if index >= plan.num_segments {
            return Err(ChkError::Usage(format!("segment {index} is past the end")));
        }
        if plaintext.len() as u64 != plan.segment_len(index) {
            return Err(ChkError::Usage(format!(
                "segment {index} has {} bytes, expected {}",
                plaintext.len(),
                plan.segment_len(index)
            )));
        }
        let k = usize::from(plan.needed_shares);
        let n = usize::from(plan.total_shares);
        let block_len = plan.block_len(index) as usize;
        out.index = index;
        out.len = plaintext.len();
        out.block_len = block_len;
        // The buffers are reused from segment to segment: resizing zero-fills only growth
        // (so the padding past the ciphertext is zero), and every other byte is overwritten
        // here (ciphertext) or by the erasure coder (parity).
        let len = plaintext.len();
        out.padded.resize(len, 0);
        aes_ctr_xor_into(
            &self.key,
            index * plan.segment_size,
            plaintext,
            &mut out.padded,
        );
        out.crypttext_leaf = crypttext_segment_hash(&out.padded);
        out.padded.resize(block_len * k, 0);
        out.parity.resize(block_len * (n - k), 0);
        {
            let data: Vec<&[u8]> = out.padded.chunks_exact(block_len.max(1)).collect();
            let mut parity: Vec<&mut [u8]> = if block_len == 0 {
                Vec::new()
            } else {
                out.parity.chunks_exact_mut(block_len).collect()
            };
            if block_len > 0 {
                self.fec.encode(&data, &mut parity)?;
            }
        }
        out.block_hashes.clear();
        for shnum in 0..n {
            out.block_hashes.push(block_hash(out.block(shnum)));
        }
        Ok(())
    }
}

/// Collects encoded segments in order and produces the hash trees, UEB and cap.
#[derive(Debug)]
pub struct ChkEncoder {
    plan: Plan,
    key: [u8; 16],
    segment_encoder: SegmentEncoder,
    crypttext_hasher: TaggedHasher,
    crypttext_leaves: Vec<Hash>,
    /// `block_hashes[shnum][segment]`.
    block_hashes: Vec<Vec<Hash>>,
    next_segment: u64,
}

/// The end of an encoding: what every share needs after its blocks, and the cap.
#[derive(Debug)]
pub struct FinishedEncoding {
    /// The read cap.
    pub cap: ChkCap,
    /// The packed UEB.
    pub ueb: Vec<u8>,
    /// Per share, the bytes from the plaintext-hash-tree offset to the end of the share.
    pub trailers: Vec<Vec<u8>>,
}

impl ChkEncoder {
    /// Starts encoding with `key` (convergent or random).
    pub fn new(plan: Plan, key: [u8; 16]) -> Result<Self, ChkError> {
        let fec = Fec::new(
            usize::from(plan.needed_shares),
            usize::from(plan.total_shares),
        )?;
        let n = usize::from(plan.total_shares);
        let nseg = usize::try_from(plan.num_segments)
            .map_err(|_| ChkError::BadParams("too many segments".into()))?;
        Ok(Self {
            segment_encoder: SegmentEncoder {
                plan: plan.clone(),
                key,
                fec,
            },
            crypttext_hasher: TaggedHasher::new(tags::CRYPTTEXT),
            crypttext_leaves: Vec::with_capacity(nseg.min(1 << 20)),
            block_hashes: vec![Vec::with_capacity(nseg.min(1 << 20)); n],
            next_segment: 0,
            plan,
            key,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// A segment encoder to run on any thread.
    pub fn segment_encoder(&self) -> &SegmentEncoder {
        &self.segment_encoder
    }

    /// The header every share starts with.
    pub fn share_header(&self) -> Vec<u8> {
        self.plan.layout.header_bytes()
    }

    /// Takes the next segment, in order.
    pub fn push(&mut self, seg: &EncodedSegment) -> Result<(), ChkError> {
        if seg.index != self.next_segment {
            return Err(ChkError::Usage(format!(
                "segment {} pushed, expected {}",
                seg.index, self.next_segment
            )));
        }
        self.crypttext_hasher.update(seg.ciphertext());
        self.crypttext_leaves.push(seg.crypttext_leaf);
        for (per_share, h) in self.block_hashes.iter_mut().zip(&seg.block_hashes) {
            per_share.push(*h);
        }
        self.next_segment += 1;
        Ok(())
    }

    /// Builds the trees, the UEB and the cap once every segment was pushed.
    pub fn finish(self) -> Result<FinishedEncoding, ChkError> {
        let plan = &self.plan;
        if self.next_segment != plan.num_segments {
            return Err(ChkError::Usage(format!(
                "finish after {} of {} segments",
                self.next_segment, plan.num_segments
            )));
        }
        let crypttext_tree = HashTree::new(&self.crypttext_leaves);
        let block_trees: Vec<HashTree> =
            self.block_hashes.iter().map(|l| HashTree::new(l)).collect();
        let roots: Vec<Hash> = block_trees.iter().map(HashTree::root).collect();
        let share_tree = HashTree::new(&roots);
        let ueb = plan.ueb(
            self.crypttext_hasher.finalize(),
            crypttext_tree.root(),
            share_tree.root(),
        );
        let ueb_bytes = ueb.pack();
        let cap = ChkCap {
            key: self.key,
            ueb_hash: ueb_hash(&ueb_bytes),
            needed_shares: plan.needed_shares,
            total_shares: plan.total_shares,
            size: plan.size,
        };
        let layout = &plan.layout;
        let tree_area = layout.tree_area_len() as usize;
        let crypttext_bytes = crypttext_tree.to_bytes();
        let mut trailers = Vec::with_capacity(block_trees.len());
        for (shnum, tree) in block_trees.iter().enumerate() {
            let chain: Vec<(usize, Hash)> =
                needed_hashes_stock_order(usize::from(plan.total_shares), shnum, true)
                    .into_iter()
                    .map(|i| (i, share_tree.nodes()[i]))
                    .collect();
            let mut t = Vec::with_capacity(3 * tree_area + chain.len() * 34 + ueb_bytes.len() + 8);
            t.resize(tree_area, 0);
            t.extend_from_slice(&crypttext_bytes);
            t.extend_from_slice(&tree.to_bytes());
            t.extend_from_slice(&layout::pack_share_hash_chain(&chain));
            if layout.version == 1 {
                t.extend_from_slice(&(ueb_bytes.len() as u32).to_be_bytes());
            } else {
                t.extend_from_slice(&(ueb_bytes.len() as u64).to_be_bytes());
            }
            t.extend_from_slice(&ueb_bytes);
            trailers.push(t);
        }
        Ok(FinishedEncoding {
            cap,
            ueb: ueb_bytes,
            trailers,
        })
    }
}

/// A whole file encoded in memory (tests, small files).
#[derive(Debug)]
pub struct EncodedFile {
    /// `URI:LIT:` for files of at most 55 bytes, else `URI:CHK:`.
    pub cap: Cap,
    /// Share `i`'s bytes as a storage server serves them; empty for LIT.
    pub shares: Vec<Vec<u8>>,
}

/// The cap of a literal (small) file.
pub fn lit_cap(data: &[u8]) -> Cap {
    Cap::Lit(crate::cap::LitCap {
        data: data.to_vec(),
    })
}

/// Encodes a whole in-memory plaintext with a convergent key (reference path; streaming
/// callers use [`ChkEncoder`] or [`pipeline`]).
pub fn encode_bytes(
    plaintext: &[u8],
    params: &EncodingParams,
    convergence_secret: &[u8],
) -> Result<EncodedFile, ChkError> {
    params.validate()?;
    if plaintext.len() as u64 <= LIT_THRESHOLD {
        return Ok(EncodedFile {
            cap: lit_cap(plaintext),
            shares: Vec::new(),
        });
    }
    let plan = Plan::new(plaintext.len() as u64, params)?;
    let mut kh = plan.convergence_hasher(convergence_secret);
    kh.update(plaintext);
    let mut enc = ChkEncoder::new(plan.clone(), kh.finalize())?;
    let header = enc.share_header();
    let n = usize::from(plan.total_shares);
    let mut shares: Vec<Vec<u8>> = vec![header; n];
    let mut seg = EncodedSegment::default();
    let mut offset = 0usize;
    for index in 0..plan.num_segments {
        let len = plan.segment_len(index) as usize;
        enc.segment_encoder()
            .encode(index, &plaintext[offset..offset + len], &mut seg)?;
        offset += len;
        for (shnum, share) in shares.iter_mut().enumerate() {
            share.extend_from_slice(seg.block(shnum));
        }
        enc.push(&seg)?;
    }
    let fin = enc.finish()?;
    for (share, trailer) in shares.iter_mut().zip(&fin.trailers) {
        share.extend_from_slice(trailer);
    }
    Ok(EncodedFile {
        cap: Cap::Chk(fin.cap),
        shares,
    })
}

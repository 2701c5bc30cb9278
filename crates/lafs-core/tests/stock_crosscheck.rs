//! Cross-check of the lafs CHK encoder/decoder against stock Tahoe-LAFS 1.20.
//!
//! Stock Tahoe runs in-process in a Python virtualenv (`interop/tahoe-venv.sh` creates it;
//! `interop/tahoe_chk_oracle.py` drives stock's own `Encoder`, `EncryptAnUploadable` and
//! `WriteBucketProxy`). For a batch of seeded random cases this test requires:
//!
//! - the lafs cap string equals stock's (`URI:LIT` up to 55 bytes, else `URI:CHK`), and so
//!   does the verify cap;
//! - every lafs share is byte-identical to stock's (a mismatch names the case, the share, the
//!   first differing offset and the layout region it falls in);
//! - lafs decodes a random k-subset of the *stock* shares back to the plaintext;
//! - (second test) a one-byte corruption of one share of that subset makes decoding fail
//!   instead of returning wrong bytes.
//!
//! Environment:
//! - `LAFS_TAHOE_VENV`: the venv (default `~/.cache/lafs/tahoe-venv`). A missing venv fails
//!   the test; it is never skipped.
//! - `LAFS_CROSSCHECK_SEED`: the RNG seed (decimal or 0x-hex); a fresh one is printed on
//!   every run so a failure can be replayed.
//! - `LAFS_CROSSCHECK_KEEP`: keep the temporary directory (plaintexts, manifest, stock
//!   shares) and print its path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_core::cap::{Cap, ChkCap};
use lafs_core::chk::{EncodingParams, decode_bytes, encode_bytes};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Stock makes files of at most this many bytes literal caps.
const LIT_THRESHOLD: u64 = 55;
const MAX_FILE: u64 = 8 * MIB;
/// Stock's default maximum segment size.
const DEFAULT_MAX_SEGMENT: u64 = MIB;
const HASH: u64 = 32;

// ---------------------------------------------------------------------------------------
// Environment: the stock venv, the oracle, a scratch directory.

fn venv_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("LAFS_TAHOE_VENV") {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set and LAFS_TAHOE_VENV neither");
    Path::new(&home).join(".cache/lafs/tahoe-venv")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python, or a failure telling how to create it.
fn stock_python() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "stock Tahoe-LAFS venv not found at {}: run `interop/tahoe-venv.sh` (it installs \
         tahoe-lafs==1.20.0 there, ~30 s), or point LAFS_TAHOE_VENV at an existing one",
        venv.display()
    );
    python
}

/// A directory under the system temp dir, removed on drop (also when the test panics).
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(label: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("lafs-{label}-{}-{nanos:x}", std::process::id()));
        fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("LAFS_CROSSCHECK_KEEP").is_some() {
            eprintln!("keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seeded randomness (splitmix64; no extra crates).

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        let span = hi - lo + 1;
        if span == 0 {
            return self.next_u64();
        }
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64
    }

    /// In `lo..=hi`, every power-of-two octave equally likely.
    fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let octave = |x: u64| u64::from(63 - x.max(1).leading_zeros());
        let e = self.range(octave(lo), octave(hi)) as u32;
        let from = (1u64 << e).max(lo);
        let to = if e >= 63 {
            hi
        } else {
            ((1u64 << (e + 1)) - 1).min(hi)
        };
        self.range(from, to.max(from))
    }

    fn percent(&mut self, p: u64) -> bool {
        self.range(0, 99) < p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.range(0, xs.len() as u64 - 1) as usize]
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// `count` distinct values from `0..n`, in random order.
    fn sample(&mut self, n: u16, count: u16) -> Vec<u16> {
        let mut all: Vec<u16> = (0..n).collect();
        for i in 0..usize::from(count) {
            let j = self.range(i as u64, u64::from(n) - 1) as usize;
            all.swap(i, j);
        }
        all.truncate(usize::from(count));
        all
    }
}

fn seed_from_env() -> u64 {
    match std::env::var("LAFS_CROSSCHECK_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("LAFS_CROSSCHECK_SEED={s:?} is not a u64"))
        }
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            Rng(nanos ^ (u64::from(std::process::id()) << 32)).next_u64()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cases and what they cost.

#[derive(Clone, Debug)]
struct Case {
    name: String,
    size: u64,
    k: u16,
    n: u16,
    max_segment_size: u64,
    convergence: Vec<u8>,
    data_seed: u64,
}

fn next_multiple(x: u64, m: u64) -> u64 {
    x.div_ceil(m) * m
}

impl Case {
    fn is_lit(&self) -> bool {
        self.size <= LIT_THRESHOLD
    }

    /// The segment size stock settles on: `next_multiple(min(max_segment_size, size), k)`.
    fn segment_size(&self) -> u64 {
        next_multiple(self.max_segment_size.min(self.size), u64::from(self.k))
    }

    fn num_segments(&self) -> u64 {
        if self.is_lit() {
            0
        } else {
            self.size.div_ceil(self.segment_size())
        }
    }

    /// Bytes of all N shares together (close upper bound).
    fn share_bytes(&self) -> u64 {
        if self.is_lit() {
            return 0;
        }
        let tree = (2 * self.num_segments().next_power_of_two() - 1) * HASH;
        let chain = (u64::from(self.n).next_power_of_two().trailing_zeros() as u64 + 1) * 34;
        let one = 0x44 + self.size.div_ceil(u64::from(self.k)) + 3 * tree + chain + 8 + 400;
        one * u64::from(self.n)
    }

    /// Rough wall time of stock's encoder for this case, in microseconds (measured: ~330 µs
    /// per segment plus ~28 µs per block, plus ~10 ns per share byte).
    fn oracle_cost_us(&self) -> u64 {
        self.num_segments() * (330 + 28 * u64::from(self.n)) + self.share_bytes() / 100
    }

    fn plaintext(&self) -> Vec<u8> {
        let mut data = vec![0u8; self.size as usize];
        Rng(self.data_seed).fill(&mut data);
        data
    }

    fn describe(&self) -> String {
        format!(
            "{}: size={} k={} n={} max_segment_size={} (segment {} x {}) convergence={}",
            self.name,
            self.size,
            self.k,
            self.n,
            self.max_segment_size,
            if self.is_lit() {
                0
            } else {
                self.segment_size()
            },
            self.num_segments(),
            hex::encode(&self.convergence)
        )
    }
}

#[derive(Clone, Copy)]
struct Budget {
    /// Per-case ceiling on estimated stock encoding time.
    case_cost_us: u64,
    /// Per-case ceiling on the bytes of all shares.
    case_share_bytes: u64,
}

impl Budget {
    fn allows(&self, c: &Case) -> bool {
        c.oracle_cost_us() <= self.case_cost_us && c.share_bytes() <= self.case_share_bytes
    }

    /// Largest size (<= `MAX_FILE`) the budget allows for these parameters (cost grows with
    /// size), or None if not even a 56-byte file fits.
    fn max_size(&self, k: u16, n: u16, max_segment_size: u64) -> Option<u64> {
        let probe = |size| Case {
            name: String::new(),
            size,
            k,
            n,
            max_segment_size,
            convergence: Vec::new(),
            data_seed: 0,
        };
        let (mut lo, mut hi) = (LIT_THRESHOLD + 1, MAX_FILE);
        if !self.allows(&probe(lo)) {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.allows(&probe(mid)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(lo)
    }
}

fn random_convergence(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.range(0, 9) {
        0 => 0,
        1 => rng.range(1, 64) as usize,
        2..=4 => 16,
        _ => 32, // what a stock node keeps in private/convergence
    };
    let mut secret = vec![0u8; len];
    if len != 16 || rng.percent(70) {
        rng.fill(&mut secret);
    }
    secret
}

fn random_kn(rng: &mut Rng) -> (u16, u16) {
    let n = match rng.range(0, 9) {
        0..=1 => rng.range(1, 4),
        2..=5 => rng.range(5, 16),
        6..=7 => rng.range(17, 64),
        _ => rng.range(65, 256),
    } as u16;
    let k = match rng.range(0, 9) {
        0 => 1,
        1 => n,
        _ => rng.range(1, u64::from(n)) as u16,
    };
    (k, n)
}

fn random_max_segment(rng: &mut Rng) -> u64 {
    match rng.range(0, 9) {
        0 => rng.range(1, 16),
        1..=3 => rng.range(17, 4096),
        4..=5 => rng.range(4097, 128 * KIB),
        6 => 128 * KIB,
        7 => DEFAULT_MAX_SEGMENT,
        _ => rng.range(128 * KIB, 2 * MIB),
    }
}

/// A file size for these parameters, biased toward the boundaries that matter, within
/// `56..=max`.
fn boundary_size(rng: &mut Rng, k: u16, max_segment_size: u64, max: u64) -> u64 {
    let k = u64::from(k);
    let lo = LIT_THRESHOLD + 1;
    let clamp = |s: u64| s.clamp(lo, max);
    // Segment size of any file at least max_segment_size long.
    let seg = next_multiple(max_segment_size, k);
    match rng.range(0, 9) {
        0 => rng.range(lo, max),
        1 => rng.log_range(lo, max),
        2..=4 => {
            // Exact multiples of the segment size, and one byte either side (a one-byte
            // tail, or a tail one byte short).
            let m = rng.range(1, (max / seg).max(1));
            clamp((seg * m).saturating_add_signed(rng.range(0, 2) as i64 - 1))
        }
        5 => clamp(max_segment_size + rng.range(0, 1)), // mss itself: padded single segment
        6 => {
            // Multiples of k, and one past.
            let m = rng.range(lo.div_ceil(k), (max / k).max(lo.div_ceil(k)));
            clamp(k * m + rng.range(0, 1))
        }
        7 => clamp(lo + rng.range(0, 2 * k)), // small files, possibly shorter than k
        _ => clamp(max),
    }
}

fn make_case(rng: &mut Rng, name: String, size: u64, k: u16, n: u16, mss: u64) -> Case {
    Case {
        name,
        size,
        k,
        n,
        max_segment_size: mss,
        convergence: random_convergence(rng),
        data_seed: rng.next_u64(),
    }
}

fn add(cases: &mut Vec<Case>, rng: &mut Rng, label: &str, size: u64, k: u16, n: u16, mss: u64) {
    let name = format!("{:02}-{label}", cases.len());
    let case = make_case(rng, name, size, k, n, mss);
    cases.push(case);
}

/// Hand-picked shapes first (each with some randomness inside), then random ones until
/// `count`, keeping the estimated stock time under `total_cost_us` and the bytes of all
/// shares under `total_share_bytes`.
fn generate_cases(
    rng: &mut Rng,
    count: usize,
    budget: Budget,
    total_cost_us: u64,
    total_share_bytes: u64,
) -> Vec<Case> {
    let mut cases = Vec::new();
    let c = &mut cases;

    // Literal caps and the first CHK size.
    add(c, rng, "lit-empty", 0, 3, 10, DEFAULT_MAX_SEGMENT);
    add(c, rng, "lit-1", 1, 3, 10, DEFAULT_MAX_SEGMENT);
    add(c, rng, "lit-55", 55, 3, 10, DEFAULT_MAX_SEGMENT);
    let s = rng.range(2, 54);
    add(c, rng, "lit-random", s, 1, 1, DEFAULT_MAX_SEGMENT);
    add(c, rng, "chk-56", 56, 3, 10, DEFAULT_MAX_SEGMENT);
    // Share-count extremes.
    let s = rng.range(56, 100 * KIB);
    let mss = random_max_segment(rng).max(64);
    add(c, rng, "k1n1-zero-conv", s, 1, 1, mss);
    if let Some(last) = c.last_mut() {
        last.convergence = vec![0; 16];
    }
    let k = rng.range(2, 40) as u16;
    let s = rng.range(56, 200 * KIB);
    add(c, rng, "k-eq-n", s, k, k, 16 * KIB);
    let k = rng.range(1, 16) as u16;
    let s = rng.range(56, 20 * KIB * u64::from(k));
    add(c, rng, "n256", s, k, 256, 64 * KIB);
    let s = rng.range(56, 200 * KIB);
    let mss = rng.range(4 * KIB, 64 * KIB);
    add(c, rng, "k255n256", s, 255, 256, mss);
    let s = rng.range(56, 20 * KIB);
    let mss = rng.range(1, 8 * KIB);
    add(c, rng, "k256n256", s, 256, 256, mss);
    // Fewer bytes than k: one segment of k bytes, one-byte blocks.
    let k = rng.range(57, 256) as u16;
    let s = rng.range(56, u64::from(k) - 1);
    let n = rng.range(u64::from(k), 256) as u16;
    add(c, rng, "size-lt-k", s, k, n, DEFAULT_MAX_SEGMENT);
    // Tiny segments: max segment size 1, and below k.
    let k = rng.range(1, 6) as u16;
    let s = rng.range(56, 1200);
    let n = k + rng.range(0, 6) as u16;
    add(c, rng, "mss-1", s, k, n, 1);
    let k = rng.range(5, 40) as u16;
    let s = rng.range(200, 2000);
    let mss = rng.range(1, u64::from(k) - 1);
    add(c, rng, "mss-lt-k", s, k, 2 * k, mss);
    // Segment boundaries with a small segment size.
    let (k, n) = (rng.range(1, 12) as u16, rng.range(12, 20) as u16);
    let mss = rng.range(100, 4096);
    let seg = next_multiple(mss, u64::from(k));
    let m = rng.range(2, 40);
    add(c, rng, "seg-exact", seg * m, k, n, mss);
    add(c, rng, "seg-plus-1", seg * m + 1, k, n, mss);
    add(c, rng, "seg-minus-1", seg * m - 1, k, n, mss);
    add(c, rng, "one-seg-exact", seg.max(56), k, n, seg.max(56));
    let mss = next_multiple(rng.range(1000, 50_000), 7) + 3; // not a multiple of 7
    add(c, rng, "size-eq-mss-padded", mss, 7, 13, mss);
    // Stock defaults on big files.
    add(c, rng, "8MiB-default", MAX_FILE, 3, 10, DEFAULT_MAX_SEGMENT);
    let s = rng.range(7 * MIB, MAX_FILE);
    add(c, rng, "8MiB-seg128k", s, 5, 12, 128 * KIB);
    let s = rng.range(MIB, 3 * MIB);
    add(c, rng, "default-1-3MiB", s, 3, 10, DEFAULT_MAX_SEGMENT);
    let s = 2 * next_multiple(DEFAULT_MAX_SEGMENT, 3) + 1;
    add(c, rng, "default-tail-1", s, 3, 10, DEFAULT_MAX_SEGMENT);

    let mut cost: u64 = cases.iter().map(Case::oracle_cost_us).sum();
    let mut bytes: u64 = cases.iter().map(Case::share_bytes).sum();
    let mut attempts = 0;
    while cases.len() < count && attempts < 10_000 {
        attempts += 1;
        let name = format!("{:02}-random", cases.len());
        if rng.percent(4) {
            let size = rng.range(0, LIT_THRESHOLD);
            cases.push(make_case(rng, name, size, 3, 10, DEFAULT_MAX_SEGMENT));
            continue;
        }
        // Share what is left of the totals among the remaining cases (a case may take up
        // to twice its even share).
        let remaining = (count - cases.len()) as u64;
        let this = Budget {
            case_cost_us: budget
                .case_cost_us
                .min(total_cost_us.saturating_sub(cost) * 2 / remaining),
            case_share_bytes: budget
                .case_share_bytes
                .min(total_share_bytes.saturating_sub(bytes) * 2 / remaining),
        };
        let (k, n) = random_kn(rng);
        let mss = random_max_segment(rng);
        let Some(max) = this.max_size(k, n, mss) else {
            continue;
        };
        let size = boundary_size(rng, k, mss, max);
        let case = make_case(rng, name, size, k, n, mss);
        cost += case.oracle_cost_us();
        bytes += case.share_bytes();
        cases.push(case);
    }
    cases
}

// ---------------------------------------------------------------------------------------
// Running the oracle.

struct StockOutput {
    dir: PathBuf,
}

#[derive(Debug)]
struct StockCase {
    cap: String,
    verify_cap: Option<String>,
    shares: Vec<Vec<u8>>,
}

impl StockOutput {
    /// Stock's result for one case, or the reason stock refused it.
    fn load(&self, case: &Case) -> Result<StockCase, String> {
        let dir = self.dir.join(&case.name);
        if let Ok(err) = fs::read_to_string(dir.join("error")) {
            return Err(format!("stock Tahoe refused the case:\n{err}"));
        }
        let cap =
            fs::read_to_string(dir.join("cap")).map_err(|e| format!("oracle wrote no cap: {e}"))?;
        let info: Value = serde_json::from_slice(
            &fs::read(dir.join("info.json")).map_err(|e| format!("no info.json: {e}"))?,
        )
        .map_err(|e| format!("bad info.json: {e}"))?;
        let verify_cap = info["verify_cap"].as_str().map(str::to_owned);
        let mut shares = Vec::new();
        if !case.is_lit() {
            for i in 0..case.n {
                shares.push(
                    fs::read(dir.join(format!("share.{i}")))
                        .map_err(|e| format!("oracle wrote no share {i}: {e}"))?,
                );
            }
        }
        Ok(StockCase {
            cap,
            verify_cap,
            shares,
        })
    }
}

/// Writes the plaintexts and the manifest, runs stock's encoder once over all cases.
fn run_oracle(scratch: &Path, cases: &[Case]) -> StockOutput {
    let python = stock_python();
    let script = repo_root().join("interop/tahoe_chk_oracle.py");
    assert!(
        script.exists(),
        "oracle script missing: {}",
        script.display()
    );

    let plain = scratch.join("plain");
    fs::create_dir_all(&plain).expect("mkdir plain");
    let mut manifest = Vec::new();
    for c in cases {
        let file = plain.join(&c.name);
        fs::write(&file, c.plaintext()).expect("write plaintext");
        manifest.push(json!({
            "name": c.name,
            "file": file.to_str().expect("utf-8 temp path"),
            "k": c.k,
            "n": c.n,
            "max_segment_size": c.max_segment_size,
            "convergence_hex": hex::encode(&c.convergence),
        }));
    }
    let manifest_path = scratch.join("manifest.json");
    fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).expect("manifest json"),
    )
    .expect("write manifest");

    let out = scratch.join("stock");
    let result = Command::new(&python)
        .arg(&script)
        .arg("encode")
        .arg(&manifest_path)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    // Status 1 means "some case was refused"; those cases carry an `error` file and fail
    // individually. Anything else is the oracle itself breaking.
    if !(result.status.success() || result.status.code() == Some(1)) {
        panic!(
            "stock oracle failed ({}):\n{}",
            result.status,
            String::from_utf8_lossy(&result.stderr)
        );
    }
    StockOutput { dir: out }
}

// ---------------------------------------------------------------------------------------
// Share layout, for naming where two shares differ and where to corrupt one.

struct Layout {
    version: u32,
    block_size: u64,
    data: u64,
    plaintext_tree: u64,
    crypttext_tree: u64,
    block_tree: u64,
    share_chain: u64,
    ueb_len_field: u64,
    ueb_len_size: u64,
    ueb_end: u64,
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

impl Layout {
    /// Reads the offset table of a share as served (v1 `>LLLLLLLLL`, v2 `>LQQQQQQQQ`).
    fn parse(share: &[u8]) -> Option<Layout> {
        let version = u32::try_from(be(share.get(0..4)?)).ok()?;
        let (w, header) = match version {
            1 => (4, 0x24),
            2 => (8, 0x44),
            _ => return None,
        };
        let field = |i: usize| -> Option<u64> {
            let at = 4 + w * i;
            share.get(at..at + w).map(be)
        };
        let ueb_len_field = field(7)?;
        let ueb_len_size = w as u64;
        let ueb_len =
            be(share.get(ueb_len_field as usize..(ueb_len_field + ueb_len_size) as usize)?);
        let l = Layout {
            version,
            block_size: field(0)?,
            data: field(2)?,
            plaintext_tree: field(3)?,
            crypttext_tree: field(4)?,
            block_tree: field(5)?,
            share_chain: field(6)?,
            ueb_len_field,
            ueb_len_size,
            ueb_end: ueb_len_field + ueb_len_size + ueb_len,
        };
        (l.data == header
            && l.data <= l.plaintext_tree
            && l.plaintext_tree <= l.crypttext_tree
            && l.crypttext_tree <= l.block_tree
            && l.block_tree <= l.share_chain
            && l.share_chain <= l.ueb_len_field)
            .then_some(l)
    }

    fn header_fields(&self) -> Vec<(&'static str, u64, u64)> {
        let w = if self.version == 1 { 4 } else { 8 };
        let names = [
            "block size",
            "share data size",
            "offset of data",
            "offset of plaintext hash tree",
            "offset of crypttext hash tree",
            "offset of block hashes",
            "offset of share hashes",
            "offset of UEB",
        ];
        let mut out = vec![("version", 0, 4)];
        for (i, name) in names.into_iter().enumerate() {
            out.push((name, 4 + w * i as u64, 4 + w * (i as u64 + 1)));
        }
        out
    }

    /// Human description of the byte at `off`.
    fn region_of(&self, off: u64, share: &[u8]) -> String {
        if off < self.data {
            for (name, a, b) in self.header_fields() {
                if (a..b).contains(&off) {
                    return format!("header (v{}): {name}", self.version);
                }
            }
        }
        let node = |start: u64| (off - start) / HASH;
        if off < self.plaintext_tree {
            let rel = off - self.data;
            let bs = self.block_size.max(1);
            return format!(
                "data: block of segment {} (byte {} of the block)",
                rel / bs,
                rel % bs
            );
        }
        if off < self.crypttext_tree {
            return "plaintext hash tree (unused, zero-filled)".into();
        }
        if off < self.block_tree {
            return format!("crypttext hash tree, node {}", node(self.crypttext_tree));
        }
        if off < self.share_chain {
            return format!("block hash tree, node {}", node(self.block_tree));
        }
        if off < self.ueb_len_field {
            let rel = off - self.share_chain;
            let entry = rel / 34;
            let at = (self.share_chain + entry * 34) as usize;
            let index = share.get(at..at + 2).map_or(u64::MAX, be);
            let part = if rel % 34 < 2 { "index" } else { "hash" };
            return format!(
                "share hash chain, entry {entry} ({part}; stock's entry is for node {index})"
            );
        }
        if off < self.ueb_len_field + self.ueb_len_size {
            return "UEB length".into();
        }
        if off < self.ueb_end {
            let ueb_start = self.ueb_len_field + self.ueb_len_size;
            let ueb = &share[ueb_start as usize..self.ueb_end as usize];
            let key = ueb_key_at(ueb, (off - ueb_start) as usize).unwrap_or("?");
            return format!("UEB, in the record of {key:?}");
        }
        "past the end of stock's share".into()
    }

    /// Where to corrupt a share, and what a reader must then do. The expectations follow
    /// what stock's downloader (immutable/downloader/share.py) necessarily consumes:
    ///
    /// - From every share it uses: the version and the offsets leading to this share's own
    ///   data, its blocks, its share hash chain (every entry is checked against what is
    ///   already known) and every real leaf of its block hash tree (each is read either as
    ///   the leaf being verified or as a sibling). One corrupted share must make decoding
    ///   fail.
    /// - From one share only, whichever comes first: the UEB and the crypttext hash tree
    ///   leaves. Corrupted in one share, decoding may succeed (correct bytes) or fail;
    ///   corrupted identically in every share of the subset, it must fail.
    /// - Never necessarily: interior tree nodes and padding leaves (recomputable, and
    ///   skipped once known), the unused plaintext hash tree, and the block size, share
    ///   data size and plaintext-tree offset fields ("not used when reading").
    ///   Only wrong bytes (or a panic) are failures there.
    fn corruption_targets(&self, num_segments: u64) -> Vec<Target> {
        use Expect::{MustFail, NotWrong};
        use Spread::{EveryShare, OneShare};
        let mut out = Vec::new();
        let mut add = |region: String, start: u64, end: u64, spread, expect| {
            if start < end {
                out.push(Target {
                    region,
                    start,
                    end,
                    spread,
                    expect,
                });
            }
        };
        for (name, a, b) in self.header_fields() {
            let region = format!("header: {name}");
            match name {
                "block size" | "share data size" | "offset of plaintext hash tree" => {
                    add(region, a, b, OneShare, NotWrong);
                }
                "offset of crypttext hash tree" | "offset of UEB" => {
                    add(region.clone(), a, b, OneShare, NotWrong);
                    add(region, a, b, EveryShare, MustFail);
                }
                _ => add(region, a, b, OneShare, MustFail),
            }
        }
        add(
            "data".into(),
            self.data,
            self.plaintext_tree,
            OneShare,
            MustFail,
        );
        add(
            "plaintext hash tree (unused)".into(),
            self.plaintext_tree,
            self.crypttext_tree,
            OneShare,
            NotWrong,
        );
        // Both segment trees: (2 * p - 1) nodes, the last p of them leaves, the first
        // `num_segments` of those real.
        for (tree, start, end) in [
            ("crypttext hash tree", self.crypttext_tree, self.block_tree),
            ("block hash tree", self.block_tree, self.share_chain),
        ] {
            let leaves = start + ((end - start) / HASH).div_ceil(2).saturating_sub(1) * HASH;
            let real_end = (leaves + num_segments * HASH).min(end);
            add(
                format!("{tree}: interior nodes"),
                start,
                leaves,
                OneShare,
                NotWrong,
            );
            add(
                format!("{tree}: padding leaves"),
                real_end,
                end,
                OneShare,
                NotWrong,
            );
            let region = format!("{tree}: leaves");
            if tree == "block hash tree" {
                add(region, leaves, real_end, OneShare, MustFail);
            } else {
                add(region.clone(), leaves, real_end, OneShare, NotWrong);
                add(region, leaves, real_end, EveryShare, MustFail);
            }
        }
        add(
            "share hash chain".into(),
            self.share_chain,
            self.ueb_len_field,
            OneShare,
            MustFail,
        );
        let ueb = self.ueb_len_field + self.ueb_len_size;
        for (region, a, b) in [
            ("UEB length", self.ueb_len_field, ueb),
            ("UEB", ueb, self.ueb_end),
        ] {
            add(region.into(), a, b, OneShare, NotWrong);
            add(region.into(), a, b, EveryShare, MustFail);
        }
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Spread {
    /// One byte of one share of the subset.
    OneShare,
    /// The same byte, flipped the same way, in every share of the subset.
    EveryShare,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Decoding must return an error.
    MustFail,
    /// Decoding may succeed or fail, but must never return other bytes than the file's.
    NotWrong,
}

struct Target {
    region: String,
    start: u64,
    end: u64,
    spread: Spread,
    expect: Expect,
}

/// Which `key:netstring,` record of a UEB holds byte `at`.
fn ueb_key_at(ueb: &[u8], at: usize) -> Option<&str> {
    let mut pos = 0;
    while pos < ueb.len() {
        let colon = pos + ueb[pos..].iter().position(|&b| b == b':')?;
        let key = std::str::from_utf8(&ueb[pos..colon]).ok()?;
        let colon2 = colon + 1 + ueb[colon + 1..].iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&ueb[colon + 1..colon2])
            .ok()?
            .parse()
            .ok()?;
        let end = colon2 + 1 + len + 1; // value and ','
        if at < end {
            return Some(key);
        }
        pos = end;
    }
    None
}

/// `None` if equal, else a description of the first difference.
fn describe_share_mismatch(stock: &[u8], ours: &[u8]) -> Option<String> {
    if stock == ours {
        return None;
    }
    let first = stock
        .iter()
        .zip(ours)
        .position(|(a, b)| a != b)
        .unwrap_or(stock.len().min(ours.len()));
    let differing = stock.iter().zip(ours).filter(|(a, b)| a != b).count();
    let region = match Layout::parse(stock) {
        Some(l) => l.region_of(first as u64, stock),
        None => "unparseable stock header".into(),
    };
    let window = |s: &[u8]| hex::encode(&s[first.min(s.len())..(first + 8).min(s.len())]);
    Some(format!(
        "first difference at offset {first} (0x{first:x}) in {region}; stock {} bytes, lafs {} \
         bytes, {differing} differing bytes in the common length; stock[{first}..]={} \
         lafs[{first}..]={}",
        stock.len(),
        ours.len(),
        window(stock),
        window(ours),
    ))
}

fn parse_chk(cap: &str) -> Result<ChkCap, String> {
    match cap.parse::<Cap>() {
        Ok(Cap::Chk(c)) => Ok(c),
        Ok(other) => Err(format!("stock cap parsed as {}, not CHK", other.kind())),
        Err(e) => Err(format!("lafs cannot parse stock's cap: {e}")),
    }
}

fn decode_guarded(
    cap: &ChkCap,
    shares: &[(u16, &[u8])],
) -> Result<Result<Vec<u8>, String>, String> {
    catch_unwind(AssertUnwindSafe(|| decode_bytes(cap, shares)))
        .map(|r| r.map_err(|e| e.to_string()))
        .map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-string panic".into())
        })
}

// ---------------------------------------------------------------------------------------
// The checks.

/// Everything wrong with one case (empty when it passes).
fn check_case(case: &Case, stock: &StockCase, plaintext: &[u8], rng: &mut Rng) -> Vec<String> {
    let mut problems = Vec::new();
    let params = EncodingParams {
        needed_shares: case.k,
        total_shares: case.n,
        max_segment_size: case.max_segment_size,
    };
    let encoded = match catch_unwind(AssertUnwindSafe(|| {
        encode_bytes(plaintext, &params, &case.convergence)
    })) {
        Ok(Ok(e)) => Some(e),
        Ok(Err(e)) => {
            problems.push(format!("lafs encode_bytes failed: {e}"));
            None
        }
        Err(_) => {
            problems.push("lafs encode_bytes panicked".into());
            None
        }
    };

    if let Some(enc) = &encoded {
        let ours = enc.cap.to_string();
        if ours != stock.cap {
            problems.push(format!(
                "cap differs:\n      stock {}\n      lafs  {ours}",
                stock.cap
            ));
        }
        if let (Cap::Chk(c), Some(vcap)) = (&enc.cap, &stock.verify_cap) {
            let ours = Cap::ChkVerifier(c.verifier()).to_string();
            if &ours != vcap {
                problems.push(format!(
                    "verify cap differs:\n      stock {vcap}\n      lafs  {ours}"
                ));
            }
        }
        if enc.shares.len() != stock.shares.len() {
            problems.push(format!(
                "lafs made {} shares, stock {}",
                enc.shares.len(),
                stock.shares.len()
            ));
        }
        let mut bad_shares = 0;
        for (i, (s, o)) in stock.shares.iter().zip(&enc.shares).enumerate() {
            if let Some(why) = describe_share_mismatch(s, o) {
                bad_shares += 1;
                if bad_shares <= 3 {
                    problems.push(format!("share {i} differs: {why}"));
                }
            }
        }
        if bad_shares > 3 {
            problems.push(format!(
                "... {bad_shares} of {} shares differ in all",
                stock.shares.len()
            ));
        }
    }

    // Decode stock's output with lafs.
    if case.is_lit() {
        match stock.cap.parse::<Cap>() {
            Ok(Cap::Lit(lit)) if lit.data == plaintext => {}
            Ok(Cap::Lit(_)) => problems.push("stock LIT cap parses to other bytes".into()),
            Ok(other) => problems.push(format!("stock cap parsed as {}, not LIT", other.kind())),
            Err(e) => problems.push(format!("lafs cannot parse stock's LIT cap: {e}")),
        }
    } else {
        match parse_chk(&stock.cap) {
            Err(e) => problems.push(e),
            Ok(cap) => {
                let subset = rng.sample(case.n, case.k);
                let shares: Vec<(u16, &[u8])> = subset
                    .iter()
                    .map(|&i| (i, stock.shares[usize::from(i)].as_slice()))
                    .collect();
                match decode_guarded(&cap, &shares) {
                    Ok(Ok(data)) if data == plaintext => {}
                    Ok(Ok(data)) => problems.push(format!(
                        "decode_bytes of stock shares {} returned WRONG bytes ({} bytes, \
                         want {})",
                        show_subset(&subset),
                        data.len(),
                        plaintext.len()
                    )),
                    Ok(Err(e)) => problems.push(format!(
                        "decode_bytes of stock shares {} failed: {e}",
                        show_subset(&subset)
                    )),
                    Err(p) => problems.push(format!(
                        "decode_bytes of stock shares {} panicked: {p}",
                        show_subset(&subset)
                    )),
                }
            }
        }
    }
    problems
}

fn show_subset(subset: &[u16]) -> String {
    if subset.len() <= 12 {
        format!("{subset:?}")
    } else {
        format!("{:?}... ({} shares)", &subset[..10], subset.len())
    }
}

fn report(seed: u64, failures: &[(String, Vec<String>)], total: usize) -> String {
    let mut msg = format!(
        "{} of {total} cases disagree with stock Tahoe-LAFS 1.20 (seed {seed:#x}; replay with \
         LAFS_CROSSCHECK_SEED={seed:#x}):\n",
        failures.len()
    );
    for (case, problems) in failures {
        let _ = writeln!(msg, "\n  {case}");
        for p in problems {
            let _ = writeln!(msg, "    - {p}");
        }
    }
    msg
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[test]
fn lafs_chk_matches_stock_tahoe() {
    let started = Instant::now();
    stock_python(); // fail fast, before generating anything
    let seed = seed_from_env();
    eprintln!("stock_crosscheck: seed {seed:#x} (replay with LAFS_CROSSCHECK_SEED={seed:#x})");
    let mut rng = Rng(seed);
    let budget = Budget {
        case_cost_us: 1_500_000,
        case_share_bytes: 32 * MIB,
    };
    let cases = generate_cases(&mut rng, 40, budget, 25_000_000, 320 * MIB);
    let est: u64 = cases.iter().map(Case::oracle_cost_us).sum();
    let bytes: u64 = cases.iter().map(Case::share_bytes).sum();
    eprintln!(
        "{} cases, {:.1} MiB of plaintext, ~{:.0} MiB of shares, stock estimate {:.1}s",
        cases.len(),
        cases.iter().map(|c| c.size).sum::<u64>() as f64 / MIB as f64,
        bytes as f64 / MIB as f64,
        est as f64 / 1e6
    );

    let scratch = ScratchDir::new("crosscheck");
    let t = Instant::now();
    let stock = run_oracle(&scratch.path, &cases);
    let oracle_time = t.elapsed();

    let t = Instant::now();
    let mut failures = Vec::new();
    for case in &cases {
        let plaintext = fs::read(scratch.path.join("plain").join(&case.name)).expect("plaintext");
        let problems = match stock.load(case) {
            Ok(s) => check_case(case, &s, &plaintext, &mut rng),
            Err(e) => vec![e],
        };
        eprintln!(
            "  {} {}",
            if problems.is_empty() { "ok  " } else { "FAIL" },
            case.describe()
        );
        if !problems.is_empty() {
            failures.push((case.describe(), problems));
        }
    }
    eprintln!(
        "stock oracle {}, lafs checks {}, total {}",
        secs(oracle_time),
        secs(t.elapsed()),
        secs(started.elapsed())
    );
    assert!(
        failures.is_empty(),
        "{}",
        report(seed, &failures, cases.len())
    );
}

#[test]
fn lafs_decode_rejects_corrupted_stock_shares() {
    let started = Instant::now();
    stock_python();
    let seed = seed_from_env();
    eprintln!(
        "stock_crosscheck corruption: seed {seed:#x} (replay with LAFS_CROSSCHECK_SEED={seed:#x})"
    );
    let mut rng = Rng(seed ^ 0x5eed_c0de_0bad_f00d); // not the same cases as the other test
    // Small multi-segment files with varied k/N (so trees have padding leaves and chains of
    // several entries), plus the k = N = 1 corner.
    let mut cases = Vec::new();
    for i in 0..10 {
        let (k, n) = match i {
            0 => (1, 1),
            1 => (3, 10),
            2 => (255, 256),
            _ => {
                let n = rng.range(2, 40) as u16;
                (rng.range(1, u64::from(n)) as u16, n)
            }
        };
        let choices = [rng.range(1, 64), rng.range(64, 4096), 128 * KIB];
        let mss = rng.pick(&choices);
        let max = Budget {
            case_cost_us: 300_000,
            case_share_bytes: 4 * MIB,
        }
        .max_size(k, n, mss)
        .unwrap_or(LIT_THRESHOLD + 1)
        .min(300 * KIB);
        let size = boundary_size(&mut rng, k, mss, max);
        cases.push(make_case(
            &mut rng,
            format!("{i:02}-corrupt"),
            size,
            k,
            n,
            mss,
        ));
    }

    let scratch = ScratchDir::new("crosscheck-corrupt");
    let stock = run_oracle(&scratch.path, &cases);

    let mut failures = Vec::new();
    let mut decodes = 0;
    for case in &cases {
        let plaintext = fs::read(scratch.path.join("plain").join(&case.name)).expect("plaintext");
        let mut problems = Vec::new();
        let stock_case = match stock.load(case) {
            Ok(s) => s,
            Err(e) => {
                failures.push((case.describe(), vec![e]));
                continue;
            }
        };
        let cap = match parse_chk(&stock_case.cap) {
            Ok(c) => c,
            Err(e) => {
                failures.push((case.describe(), vec![e]));
                continue;
            }
        };
        let subset = rng.sample(case.n, case.k);
        let layout =
            Layout::parse(&stock_case.shares[usize::from(subset[0])]).expect("stock share layout");
        let mut undetected_optional = 0;
        for t in layout.corruption_targets(case.num_segments()) {
            let offset = rng.range(t.start, t.end - 1) as usize;
            let flip = rng.range(1, 255) as u8;
            let victims: Vec<u16> = match t.spread {
                Spread::OneShare => vec![rng.pick(&subset)],
                Spread::EveryShare => subset.clone(),
            };
            let corrupted: Vec<(u16, Vec<u8>)> = victims
                .iter()
                .map(|&i| {
                    let mut share = stock_case.shares[usize::from(i)].clone();
                    share[offset] ^= flip;
                    (i, share)
                })
                .collect();
            let shares: Vec<(u16, &[u8])> = subset
                .iter()
                .map(|&i| match corrupted.iter().find(|(j, _)| *j == i) {
                    Some((_, bad)) => (i, bad.as_slice()),
                    None => (i, stock_case.shares[usize::from(i)].as_slice()),
                })
                .collect();
            decodes += 1;
            let whose = match t.spread {
                Spread::OneShare => format!("share {}", victims[0]),
                Spread::EveryShare => "every share".to_owned(),
            };
            let what = format!(
                "{whose}, byte {offset} ^ {flip:#04x} ({}), subset {}",
                t.region,
                show_subset(&subset)
            );
            match decode_guarded(&cap, &shares) {
                Ok(Err(_)) => {}
                Ok(Ok(data)) if data != plaintext => {
                    problems.push(format!("{what}: decode returned WRONG bytes"));
                }
                Ok(Ok(_)) if t.expect == Expect::MustFail => problems.push(format!(
                    "{what}: corruption went undetected (decode returned the correct \
                     plaintext, but stock's reader necessarily consumes these bytes)"
                )),
                Ok(Ok(_)) => undetected_optional += 1,
                Err(p) => problems.push(format!("{what}: decode panicked: {p}")),
            }
        }
        let note = if undetected_optional > 0 {
            format!(
                "\n       ({undetected_optional} corruptions of bytes a reader may skip went \
                 unnoticed; the correct plaintext came back)"
            )
        } else {
            String::new()
        };
        eprintln!(
            "  {} {}{note}",
            if problems.is_empty() { "ok  " } else { "FAIL" },
            case.describe()
        );
        if !problems.is_empty() {
            failures.push((case.describe(), problems));
        }
    }
    eprintln!("{decodes} corrupted decodes in {}", secs(started.elapsed()));
    assert!(
        failures.is_empty(),
        "{}",
        report(seed, &failures, cases.len())
    );
}

//! Incremental decoding of read-test-write request bodies, for servers that must not hold them.
//!
//! A stock client creating a mutable file sends the whole share in one read-test-write request
//! (about 34 MiB per server for a 100 MiB MDMF file at 3-of-10, the whole file at 1-of-1), so
//! decoding it as one [`ReadTestWriteRequest`] value would make a server's memory grow with
//! the file. [`RtwDecoder`] is fed the body as it arrives, in pieces of any size, and keeps only
//! the small parts (share numbers, test vectors, read vectors, offsets, `new-length`); the
//! bytes of every write vector's `data` are handed to the caller as they arrive, concatenated
//! in body order into one *data stream* (which a server spools to disk), and each write vector
//! records where in that stream its data lies ([`DataWrite`]).
//!
//! It accepts exactly the bodies [`crate::decode_limited`] accepts for a
//! [`ReadTestWriteRequest`] within the same limits (the `rtw_stream` fuzz target checks this
//! on arbitrary input and arbitrary splits), with two bounds of its own: test specimens and
//! keys together may use at most [`StreamLimits::max_small_bytes`], and the body as a whole
//! at most [`StreamLimits::max_len`]. It refuses as early as the input allows: an unknown key,
//! a wrong type or a count over a schema limit is refused at its header, before the rest of
//! the body is read. Write vectors that continue the previous one of the same share (next
//! offset, next bytes of the stream) are merged, which changes nothing (writes apply in
//! order) and keeps the decoded form small for stock's MDMF publishes, which send one write
//! vector per block.
//!
//! Like the rest of this crate it does no I/O and never panics on input; work is linear in the
//! body and memory is bounded by the limits, not by the body.

use std::collections::BTreeMap;

use crate::cbor::CborError;
use crate::error::ProtocolError;
use crate::ids::ShareNum;
use crate::limits::{MAX_READ_VECTORS, MAX_SHARES, MAX_TEST_VECTORS};
use crate::messages::{ReadTestWriteRequest, ReadVector, TestVector};
use crate::{CborBody, DecodeLimits};

/// Bounds for [`RtwDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Largest body, in bytes (413 beyond).
    pub max_len: u64,
    /// Most CBOR data items (as [`DecodeLimits::max_items`]).
    pub max_items: u64,
    /// Most bytes of keys and test specimens held in memory.
    pub max_small_bytes: u64,
}

impl StreamLimits {
    /// The item bound of [`ReadTestWriteRequest`], a body of at most `max_len` bytes and 1 MiB
    /// of keys and specimens (stock's specimens are checkstrings of a few dozen bytes).
    pub fn new(max_len: u64) -> Self {
        let l: DecodeLimits = ReadTestWriteRequest::LIMITS;
        Self {
            max_len,
            max_items: l.max_items as u64,
            max_small_bytes: 1 << 20,
        }
    }
}

/// One write vector whose data went to the data stream: `len` bytes written at share offset
/// `offset`, found at `start..start + len` of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataWrite {
    /// Offset in the share.
    pub offset: u64,
    /// Position of the data in the data stream.
    pub start: u64,
    /// Length of the data.
    pub len: u64,
}

/// The tests and writes for one share, with write data left in the data stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamedShare {
    /// At most 30 tests.
    pub test: Vec<TestVector>,
    /// Writes, in request order (adjacent ones merged).
    pub write: Vec<DataWrite>,
    /// New length, if given.
    pub new_length: Option<u64>,
}

/// A decoded read-test-write request whose write data is in the data stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamedRtw {
    /// Per-share tests and writes.
    pub test_write_vectors: BTreeMap<ShareNum, StreamedShare>,
    /// Reads.
    pub read_vector: Vec<ReadVector>,
    /// Length of the data stream.
    pub data_len: u64,
}

/// Where a container sits in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    Shares,
    Share,
    Tests,
    Test,
    Writes,
    Write,
    Reads,
    Read,
}

/// A key of one of the schema's struct-like maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    TestWriteVectors,
    ReadVector,
    Test,
    Write,
    NewLength,
    Offset,
    Size,
    Specimen,
    Data,
}

impl Field {
    fn lookup(ctx: Ctx, key: &[u8]) -> Option<(Field, u8)> {
        let f = match (ctx, key) {
            (Ctx::Top, b"test-write-vectors") => (Field::TestWriteVectors, 1),
            (Ctx::Top, b"read-vector") => (Field::ReadVector, 2),
            (Ctx::Share, b"test") => (Field::Test, 1),
            (Ctx::Share, b"write") => (Field::Write, 2),
            (Ctx::Share, b"new-length") => (Field::NewLength, 4),
            (Ctx::Test | Ctx::Write | Ctx::Read, b"offset") => (Field::Offset, 1),
            (Ctx::Test | Ctx::Read, b"size") => (Field::Size, 2),
            (Ctx::Test, b"specimen") => (Field::Specimen, 4),
            (Ctx::Write, b"data") => (Field::Data, 2),
            _ => return None,
        };
        Some(f)
    }
}

fn required(ctx: Ctx) -> u8 {
    match ctx {
        Ctx::Top | Ctx::Write | Ctx::Read => 0b11,
        Ctx::Share | Ctx::Test => 0b111,
        Ctx::Shares | Ctx::Tests | Ctx::Writes | Ctx::Reads => 0,
    }
}

fn what(ctx: Ctx) -> &'static str {
    match ctx {
        Ctx::Top => "read-test-write request",
        Ctx::Shares => "test-write-vectors",
        Ctx::Share => "test-write vectors",
        Ctx::Tests => "test",
        Ctx::Test => "test vector",
        Ctx::Writes => "write",
        Ctx::Write => "write vector",
        Ctx::Reads => "read-vector",
        Ctx::Read => "read vector",
    }
}

/// An open container: items (arrays) or pairs (maps) left, the key whose value is next, the
/// keys seen so far (struct-like maps).
#[derive(Debug)]
struct Frame {
    ctx: Ctx,
    left: u64,
    key: Option<Field>,
    seen: u8,
}

/// What the bytes being read belong to.
#[derive(Debug)]
enum Lex {
    /// A header: the bytes so far (at most 9).
    Head { buf: [u8; 9], have: usize },
    /// A key or specimen being collected.
    Small { left: u64, buf: Vec<u8>, key: bool },
    /// Write data being passed through.
    Data { left: u64 },
    /// The top-level item is complete.
    Done,
}

/// Fields of the test, write or read vector being decoded.
#[derive(Debug, Default)]
struct Item {
    offset: u64,
    size: u64,
    specimen: Vec<u8>,
    data_start: u64,
    data_len: u64,
}

/// The incremental read-test-write decoder (see the module docs).
#[derive(Debug)]
pub struct RtwDecoder {
    limits: StreamLimits,
    /// Exact body length, if the caller knows it (a declared length past it is refused early).
    body_len: Option<u64>,
    consumed: u64,
    items: u64,
    small: u64,
    lex: Lex,
    stack: Vec<Frame>,
    started: bool,
    out: StreamedRtw,
    share: Option<(ShareNum, StreamedShare)>,
    pending_shnum: Option<ShareNum>,
    item: Item,
}

fn invalid(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidBody(msg.into())
}

fn head_len(info: u8) -> Result<usize, CborError> {
    match info {
        0..=23 => Ok(0),
        24 => Ok(1),
        25 => Ok(2),
        26 => Ok(4),
        27 => Ok(8),
        28..=30 => Err(CborError::Reserved),
        _ => Err(CborError::Indefinite),
    }
}

fn type_name(major: u8, info: u8) -> &'static str {
    match (major, info) {
        (0 | 1, _) => "integer",
        (2, _) => "byte string",
        (3, _) => "text string",
        (4, _) => "array",
        (5, _) => "map",
        (6, _) => "tagged item",
        (_, 20 | 21) => "boolean",
        (_, 22) => "null",
        _ => "other",
    }
}

impl RtwDecoder {
    /// A decoder within `limits`; `body_len` is the body's exact length if known.
    pub fn new(limits: StreamLimits, body_len: Option<u64>) -> Self {
        Self {
            limits,
            body_len,
            consumed: 0,
            items: 0,
            small: 0,
            lex: Lex::Head {
                buf: [0; 9],
                have: 0,
            },
            stack: Vec::new(),
            started: false,
            out: StreamedRtw::default(),
            share: None,
            pending_shnum: None,
            item: Item::default(),
        }
    }

    /// Body bytes taken so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Takes the next piece of the body; write data in it is passed to `data`, in order.
    /// After an error the decoder must not be fed again.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        data: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ProtocolError> {
        let total = self.consumed.saturating_add(input.len() as u64);
        if total > self.limits.max_len {
            return Err(ProtocolError::PayloadTooLarge {
                len: total,
                limit: self.limits.max_len,
            });
        }
        if self.body_len.is_some_and(|l| total > l) {
            return Err(
                CborError::TrailingBytes(usize::try_from(total).unwrap_or(usize::MAX)).into(),
            );
        }
        while !input.is_empty() {
            match &mut self.lex {
                Lex::Done => {
                    let at = usize::try_from(self.consumed).unwrap_or(usize::MAX);
                    return Err(CborError::TrailingBytes(at).into());
                }
                Lex::Head { buf, have } => {
                    if *have == 0 {
                        buf[0] = input[0];
                        *have = 1;
                        input = &input[1..];
                        self.consumed += 1;
                    }
                    let need = 1 + head_len(buf[0] & 0x1f)?;
                    let n = (need - *have).min(input.len());
                    buf[*have..*have + n].copy_from_slice(&input[..n]);
                    *have += n;
                    input = &input[n..];
                    self.consumed += n as u64;
                    if *have == need {
                        let b = *buf;
                        let major = b[0] >> 5;
                        let info = b[0] & 0x1f;
                        let arg = if need == 1 {
                            u64::from(info)
                        } else {
                            b[1..need]
                                .iter()
                                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
                        };
                        self.lex = Lex::Head {
                            buf: [0; 9],
                            have: 0,
                        };
                        self.on_head(major, info, arg)?;
                    }
                }
                Lex::Small { left, buf, key } => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    buf.extend_from_slice(&input[..n]);
                    *left -= n as u64;
                    input = &input[n..];
                    self.consumed += n as u64;
                    if *left == 0 {
                        let (buf, key) = (std::mem::take(buf), *key);
                        self.lex = Lex::Head {
                            buf: [0; 9],
                            have: 0,
                        };
                        if key {
                            self.on_key(&buf)?;
                        } else {
                            self.item.specimen = buf;
                            self.value_done()?;
                        }
                    }
                }
                Lex::Data { left } => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    data(&input[..n]);
                    *left -= n as u64;
                    input = &input[n..];
                    self.consumed += n as u64;
                    self.out.data_len += n as u64;
                    if *left == 0 {
                        self.lex = Lex::Head {
                            buf: [0; 9],
                            have: 0,
                        };
                        self.value_done()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The decoded request, if the body ended exactly at the end of its top-level item.
    pub fn finish(self) -> Result<StreamedRtw, ProtocolError> {
        match self.lex {
            Lex::Done => Ok(self.out),
            _ => Err(CborError::Truncated.into()),
        }
    }

    /// Bytes of body left, if known.
    fn remaining(&self) -> u64 {
        let by_limit = self.limits.max_len - self.consumed;
        self.body_len
            .map_or(by_limit, |l| l.saturating_sub(self.consumed))
    }

    /// Refuses a string declaring more bytes than the body can still hold.
    fn check_declared(&self, len: u64) -> Result<(), ProtocolError> {
        if len <= self.remaining() {
            return Ok(());
        }
        if self.body_len.is_none() {
            return Err(ProtocolError::PayloadTooLarge {
                len: self.consumed.saturating_add(len),
                limit: self.limits.max_len,
            });
        }
        Err(CborError::Truncated.into())
    }

    fn start_small(&mut self, len: u64, key: bool) -> Result<(), ProtocolError> {
        self.check_declared(len)?;
        self.small = self.small.saturating_add(len);
        if self.small > self.limits.max_small_bytes {
            return Err(invalid(format!(
                "keys and test specimens exceed {} bytes",
                self.limits.max_small_bytes
            )));
        }
        if len == 0 {
            if key {
                return self.on_key(&[]);
            }
            self.item.specimen = Vec::new();
            return self.value_done();
        }
        self.lex = Lex::Small {
            left: len,
            buf: Vec::with_capacity(usize::try_from(len.min(4096)).unwrap_or(0)),
            key,
        };
        Ok(())
    }

    fn push(&mut self, ctx: Ctx, count: u64) -> Result<(), ProtocolError> {
        let pairs = matches!(
            ctx,
            Ctx::Top | Ctx::Shares | Ctx::Share | Ctx::Test | Ctx::Write | Ctx::Read
        );
        let children = if pairs {
            count.checked_mul(2).ok_or(CborError::TooManyItems)?
        } else {
            count
        };
        // Every child is an item: a count that cannot fit the item bound (or the body) is
        // refused now rather than after reading towards it.
        if children > self.limits.max_items - self.items {
            return Err(CborError::TooManyItems.into());
        }
        if children > self.remaining() {
            return Err(CborError::Truncated.into());
        }
        let max = match ctx {
            Ctx::Shares => MAX_SHARES as u64,
            Ctx::Tests => MAX_TEST_VECTORS as u64,
            Ctx::Reads => MAX_READ_VECTORS as u64,
            _ => u64::MAX,
        };
        if count > max {
            return Err(invalid(format!(
                "{}: {count} entries, at most {max} allowed",
                what(ctx)
            )));
        }
        match ctx {
            Ctx::Test | Ctx::Write | Ctx::Read => self.item = Item::default(),
            Ctx::Share => {
                let n = self
                    .pending_shnum
                    .ok_or_else(|| invalid("share without number"))?;
                self.share = Some((n, StreamedShare::default()));
            }
            _ => {}
        }
        self.stack.push(Frame {
            ctx,
            left: count,
            key: None,
            seen: 0,
        });
        if count == 0 {
            return self.close();
        }
        Ok(())
    }

    fn on_head(&mut self, major: u8, info: u8, arg: u64) -> Result<(), ProtocolError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(CborError::TooManyItems.into());
        }
        if major == 6 {
            return Err(invalid("tags are not allowed in a read-test-write request"));
        }
        if major == 7 && !matches!(info, 20..=22) {
            return Err(CborError::UnsupportedSimple.into());
        }
        let got = type_name(major, info);
        let Some(frame) = self.stack.last() else {
            if self.started {
                return Err(CborError::TrailingBytes(0).into());
            }
            self.started = true;
            if major != 5 {
                return Err(invalid(format!(
                    "{}: expected a map, got a {got}",
                    what(Ctx::Top)
                )));
            }
            return self.push(Ctx::Top, arg);
        };
        let (ctx, key) = (frame.ctx, frame.key);
        match ctx {
            Ctx::Top | Ctx::Share | Ctx::Test | Ctx::Write | Ctx::Read => match key {
                None => {
                    if major != 3 {
                        return Err(invalid(format!(
                            "{}: keys must be text strings, got a {got}",
                            what(ctx)
                        )));
                    }
                    if arg > 64 {
                        return Err(invalid(format!("{}: unexpected key", what(ctx))));
                    }
                    self.start_small(arg, true)
                }
                Some(field) => self.on_value(field, major, info, arg, got),
            },
            Ctx::Shares => match self.pending_shnum {
                None => {
                    if major != 0 {
                        return Err(invalid(format!(
                            "test-write-vectors: expected an unsigned integer, got a {got}"
                        )));
                    }
                    let n = u8::try_from(arg).map_err(|_| {
                        invalid(format!(
                            "test-write-vectors: share number {arg} is above 255"
                        ))
                    })?;
                    let n = ShareNum::new(n);
                    if self.out.test_write_vectors.contains_key(&n) {
                        return Err(invalid(format!(
                            "test-write-vectors: share {n} appears twice"
                        )));
                    }
                    self.pending_shnum = Some(n);
                    Ok(())
                }
                Some(_) => self.expect_container(major, 5, Ctx::Share, arg, got),
            },
            Ctx::Tests => self.expect_container(major, 5, Ctx::Test, arg, got),
            Ctx::Writes => self.expect_container(major, 5, Ctx::Write, arg, got),
            Ctx::Reads => self.expect_container(major, 5, Ctx::Read, arg, got),
        }
    }

    fn expect_container(
        &mut self,
        major: u8,
        want: u8,
        ctx: Ctx,
        arg: u64,
        got: &str,
    ) -> Result<(), ProtocolError> {
        if major != want {
            let w = if want == 5 { "a map" } else { "an array" };
            return Err(invalid(format!("{}: expected {w}, got a {got}", what(ctx))));
        }
        self.push(ctx, arg)
    }

    fn on_value(
        &mut self,
        field: Field,
        major: u8,
        info: u8,
        arg: u64,
        got: &str,
    ) -> Result<(), ProtocolError> {
        match field {
            Field::TestWriteVectors => self.expect_container(major, 5, Ctx::Shares, arg, got),
            Field::ReadVector => self.expect_container(major, 4, Ctx::Reads, arg, got),
            Field::Test => self.expect_container(major, 4, Ctx::Tests, arg, got),
            Field::Write => self.expect_container(major, 4, Ctx::Writes, arg, got),
            Field::NewLength => {
                let v = match (major, info) {
                    (0, _) => Some(arg),
                    (7, 22) => None,
                    _ => {
                        return Err(invalid(format!(
                            "new-length: expected an unsigned integer, got a {got}"
                        )));
                    }
                };
                if let Some((_, s)) = &mut self.share {
                    s.new_length = v;
                }
                self.value_done()
            }
            Field::Offset | Field::Size => {
                if major != 0 {
                    let name = if field == Field::Offset {
                        "offset"
                    } else {
                        "size"
                    };
                    return Err(invalid(format!(
                        "{name}: expected an unsigned integer, got a {got}"
                    )));
                }
                if field == Field::Offset {
                    self.item.offset = arg;
                } else {
                    self.item.size = arg;
                }
                self.value_done()
            }
            Field::Specimen => {
                if major != 2 {
                    return Err(invalid(format!(
                        "specimen: expected a byte string, got a {got}"
                    )));
                }
                self.start_small(arg, false)
            }
            Field::Data => {
                if major != 2 {
                    return Err(invalid(format!(
                        "data: expected a byte string, got a {got}"
                    )));
                }
                self.check_declared(arg)?;
                self.item.data_start = self.out.data_len;
                self.item.data_len = arg;
                if arg == 0 {
                    return self.value_done();
                }
                self.lex = Lex::Data { left: arg };
                Ok(())
            }
        }
    }

    fn on_key(&mut self, key: &[u8]) -> Result<(), ProtocolError> {
        let Some(frame) = self.stack.last_mut() else {
            return Err(invalid("key outside a map"));
        };
        let Some((field, bit)) = Field::lookup(frame.ctx, key) else {
            return Err(invalid(format!(
                "{}: unexpected key {:?}",
                what(frame.ctx),
                String::from_utf8_lossy(key)
            )));
        };
        if frame.seen & bit != 0 {
            return Err(invalid(format!(
                "{}: key {:?} appears twice",
                what(frame.ctx),
                String::from_utf8_lossy(key)
            )));
        }
        frame.seen |= bit;
        frame.key = Some(field);
        Ok(())
    }

    /// A value (scalar or closed container) is complete in the top frame.
    fn value_done(&mut self) -> Result<(), ProtocolError> {
        let Some(frame) = self.stack.last_mut() else {
            self.lex = Lex::Done;
            return Ok(());
        };
        frame.key = None;
        if frame.ctx == Ctx::Shares {
            self.pending_shnum = None;
        }
        frame.left -= 1;
        if frame.left == 0 {
            return self.close();
        }
        Ok(())
    }

    /// The top frame has all its items: check it, hand its result up, and complete it as a
    /// value of its parent.
    fn close(&mut self) -> Result<(), ProtocolError> {
        let Some(frame) = self.stack.pop() else {
            return Err(invalid("unbalanced container"));
        };
        let need = required(frame.ctx);
        if frame.seen & need != need {
            let missing = match frame.ctx {
                Ctx::Top if frame.seen & 1 == 0 => "test-write-vectors",
                Ctx::Top => "read-vector",
                Ctx::Share if frame.seen & 1 == 0 => "test",
                Ctx::Share if frame.seen & 2 == 0 => "write",
                Ctx::Share => "new-length",
                _ if frame.seen & 1 == 0 => "offset",
                Ctx::Write => "data",
                Ctx::Test if frame.seen & 2 == 0 => "size",
                Ctx::Test => "specimen",
                _ => "size",
            };
            return Err(invalid(format!(
                "{}: missing key {missing:?}",
                what(frame.ctx)
            )));
        }
        match frame.ctx {
            Ctx::Share => {
                if let Some((n, s)) = self.share.take() {
                    self.out.test_write_vectors.insert(n, s);
                }
            }
            Ctx::Test => {
                let it = std::mem::take(&mut self.item);
                if let Some((_, s)) = &mut self.share {
                    s.test.push(TestVector {
                        offset: it.offset,
                        size: it.size,
                        specimen: it.specimen,
                    });
                }
            }
            Ctx::Write => {
                let it = std::mem::take(&mut self.item);
                if let Some((_, s)) = &mut self.share {
                    let w = DataWrite {
                        offset: it.offset,
                        start: it.data_start,
                        len: it.data_len,
                    };
                    match s.write.last_mut() {
                        Some(last)
                            if last.offset.checked_add(last.len) == Some(w.offset)
                                && last.start + last.len == w.start =>
                        {
                            last.len += w.len;
                        }
                        _ => s.write.push(w),
                    }
                }
            }
            Ctx::Read => {
                let it = std::mem::take(&mut self.item);
                self.out.read_vector.push(ReadVector {
                    offset: it.offset,
                    size: it.size,
                });
            }
            Ctx::Top | Ctx::Shares | Ctx::Tests | Ctx::Writes | Ctx::Reads => {}
        }
        self.value_done()
    }
}

/// Decodes a whole body held in memory, fed in pieces of `piece` bytes (tests and fuzzing);
/// returns the request and the data stream.
pub fn decode_in_pieces(
    body: &[u8],
    limits: StreamLimits,
    piece: usize,
) -> Result<(StreamedRtw, Vec<u8>), ProtocolError> {
    let mut d = RtwDecoder::new(limits, Some(body.len() as u64));
    let mut stream = Vec::new();
    for part in body.chunks(piece.max(1)) {
        d.feed(part, &mut |b| stream.extend_from_slice(b))?;
    }
    Ok((d.finish()?, stream))
}

/// The request as [`ReadTestWriteRequest`] decodes it, with write vectors merged as
/// [`RtwDecoder`] merges them, as `(share, new length, tests, writes as (offset, data))` (for
/// comparing the two decoders).
pub fn merged_writes(r: &ReadTestWriteRequest) -> BTreeMap<ShareNum, Vec<(u64, Vec<u8>)>> {
    r.test_write_vectors
        .iter()
        .map(|(n, v)| {
            let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
            for w in &v.write {
                match out.last_mut() {
                    Some((off, d)) if off.checked_add(d.len() as u64) == Some(w.offset) => {
                        d.extend_from_slice(&w.data)
                    }
                    _ => out.push((w.offset, w.data.clone())),
                }
            }
            (*n, out)
        })
        .collect()
}

/// [`merged_writes`] for a streamed request and its data stream.
pub fn streamed_writes(r: &StreamedRtw, stream: &[u8]) -> BTreeMap<ShareNum, Vec<(u64, Vec<u8>)>> {
    r.test_write_vectors
        .iter()
        .map(|(n, v)| {
            let ws = v
                .write
                .iter()
                .map(|w| {
                    let a = usize::try_from(w.start).unwrap_or(usize::MAX);
                    let b = usize::try_from(w.start + w.len).unwrap_or(usize::MAX);
                    (w.offset, stream.get(a..b).unwrap_or_default().to_vec())
                })
                .collect();
            (*n, ws)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::messages::{TestWriteVectors, WriteVector};
    use crate::{CborBody, decode_limited};

    fn sample() -> ReadTestWriteRequest {
        let mut r = ReadTestWriteRequest::default();
        r.test_write_vectors.insert(
            ShareNum::new(3),
            TestWriteVectors {
                test: vec![TestVector {
                    offset: 0,
                    size: 4,
                    specimen: b"abcd".to_vec(),
                }],
                write: vec![
                    WriteVector {
                        offset: 0,
                        data: vec![1; 300],
                    },
                    WriteVector {
                        offset: 300,
                        data: vec![2; 70_000],
                    },
                    WriteVector {
                        offset: 10,
                        data: vec![],
                    },
                    WriteVector {
                        offset: 11,
                        data: vec![3; 5],
                    },
                ],
                new_length: Some(9),
            },
        );
        r.test_write_vectors.insert(
            ShareNum::new(200),
            TestWriteVectors {
                test: vec![],
                write: vec![WriteVector {
                    offset: 1 << 40,
                    data: vec![9; 17],
                }],
                new_length: None,
            },
        );
        r.read_vector = vec![ReadVector { offset: 1, size: 2 }];
        r
    }

    fn same(r: &ReadTestWriteRequest, s: &StreamedRtw, stream: &[u8]) {
        assert_eq!(merged_writes(r), streamed_writes(s, stream));
        assert_eq!(r.read_vector, s.read_vector);
        assert_eq!(
            r.test_write_vectors.keys().collect::<Vec<_>>(),
            s.test_write_vectors.keys().collect::<Vec<_>>()
        );
        for (n, v) in &r.test_write_vectors {
            let t = &s.test_write_vectors[n];
            assert_eq!(v.test, t.test);
            assert_eq!(v.new_length, t.new_length);
        }
        assert_eq!(s.data_len, stream.len() as u64);
    }

    #[test]
    fn agrees_with_the_whole_body_decoder_at_every_split() {
        let r = sample();
        let body = r.encode();
        for piece in [1, 2, 3, 7, 64, 1000, body.len()] {
            let (s, stream) = decode_in_pieces(&body, StreamLimits::new(1 << 30), piece).unwrap();
            same(&r, &s, &stream);
        }
        let (s, _) = decode_in_pieces(&body, StreamLimits::new(1 << 30), 5).unwrap();
        // 0..300 and 300..70300 merge; the empty write at 10 does not continue them.
        assert_eq!(s.test_write_vectors[&ShareNum::new(3)].write.len(), 3);
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        let body = sample().encode();
        for cut in 0..body.len() {
            let mut d = RtwDecoder::new(StreamLimits::new(1 << 30), None);
            let fed = d.feed(&body[..cut], &mut |_| {});
            assert!(fed.is_err() || d.finish().is_err(), "cut at {cut}");
        }
        let mut long = body.clone();
        long.push(0);
        assert!(decode_in_pieces(&long, StreamLimits::new(1 << 30), 4).is_err());
        assert!(
            decode_limited::<ReadTestWriteRequest>(&long, &ReadTestWriteRequest::LIMITS).is_err()
        );
    }

    #[test]
    fn limits_are_enforced_at_the_header() {
        let body = sample().encode();
        // Body limit: 413 as soon as the body passes it.
        let e = decode_in_pieces(&body, StreamLimits::new(100), 4096).unwrap_err();
        assert!(matches!(e, ProtocolError::PayloadTooLarge { .. }), "{e:?}");
        // A data string longer than the limit allows is refused at its header, before its
        // bytes arrive.
        let mut d = RtwDecoder::new(StreamLimits::new(1000), None);
        let cut = body
            .windows(5)
            .position(|w| w == [0x5a, 0, 1, 0x11, 0x70])
            .unwrap()
            + 5;
        let e = d.feed(&body[..cut], &mut |_| {}).unwrap_err();
        assert!(matches!(e, ProtocolError::PayloadTooLarge { .. }), "{e:?}");
        // Specimens are bounded.
        let small = StreamLimits {
            max_small_bytes: 40,
            ..StreamLimits::new(1 << 30)
        };
        assert!(decode_in_pieces(&body, small, 4096).is_err());
        // Items are bounded.
        let few = StreamLimits {
            max_items: 20,
            ..StreamLimits::new(1 << 30)
        };
        assert!(decode_in_pieces(&body, few, 4096).is_err());
    }
}

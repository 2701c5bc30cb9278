//! Bounded CBOR decoding and the [`CborBody`] trait that every GBS body implements.
//!
//! Decoding is two passes over a body that is already in memory:
//! 1. [`check_structure`] walks the bytes without allocating for them (iteratively, so nesting
//!    cannot overflow the stack) and refuses anything outside [`DecodeLimits`] or outside the
//!    CBOR subset GBS uses: unsigned and negative integers, byte and text strings (valid
//!    UTF-8), definite-length arrays and maps, tag 258 (a set) directly on an array, `false`,
//!    `true` and `null`. Declared lengths are checked against the input that is left, so a
//!    header claiming a 4 GiB string in a 10-byte body is refused before any allocation.
//!    Indefinite lengths, floats, other tags and other simple values are refused: cbor2 (which
//!    stock uses to encode) never produces them for GBS messages.
//! 2. ciborium builds a `Value` tree (now bounded by the checked limits) and each body type
//!    converts it, checking the schema the way stock's CDDL does: required keys, key types
//!    (text keys, byte-string keys in the version message, integer share-number keys), no
//!    duplicate keys, no unknown keys in requests, list and set lengths.
//!
//! Encoding builds the same `Value` tree and serialises it with ciborium, which, like cbor2,
//! writes integers and lengths in their shortest form and maps in the order given; bodies put
//! their keys in the order stock's dicts have them, so encodings are byte-identical to stock's.
//! One exception: stock writes sets in CPython set iteration order (e.g. `{7, 200}` as
//! `[200, 7]`), while we write them in ascending order. Set order carries no meaning, and
//! every decoder (stock's and ours) accepts any order.

use std::collections::{BTreeMap, BTreeSet};

use ciborium::value::{Integer, Value};

use crate::error::ProtocolError;
use crate::ids::ShareNum;
use crate::limits;

/// The tag that marks a CBOR array as a set (IANA registry; the GBS spec requires it).
pub(crate) const SET_TAG: u64 = 258;

/// Bounds for decoding one CBOR body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest body, in bytes; a larger one is [`CborError::TooLarge`] (HTTP 413).
    pub max_len: usize,
    /// Deepest nesting of arrays, maps and tags (the top-level container is depth 1).
    pub max_depth: usize,
    /// Most data items in the whole body, counting every container, key and value.
    pub max_items: usize,
}

impl DecodeLimits {
    /// Limits with the given bounds.
    pub const fn new(max_len: usize, max_depth: usize, max_items: usize) -> Self {
        Self {
            max_len,
            max_depth,
            max_items,
        }
    }

    /// These limits with a different `max_len` (for a server that sets its own body limit).
    pub const fn with_max_len(self, max_len: usize) -> Self {
        Self { max_len, ..self }
    }
}

/// Why a CBOR body was refused before its schema was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// Longer than [`DecodeLimits::max_len`] (HTTP 413).
    #[error("{len} bytes is more than the limit of {limit}")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input ends inside an item, or an item declares more content than is left.
    #[error("truncated, or a declared length is larger than the rest of the input")]
    Truncated,
    /// Bytes follow the top-level item.
    #[error("trailing bytes after the CBOR item at offset {0}")]
    TrailingBytes(usize),
    /// Nested deeper than [`DecodeLimits::max_depth`].
    #[error("nested too deeply")]
    TooDeep,
    /// More items than [`DecodeLimits::max_items`].
    #[error("too many items")]
    TooManyItems,
    /// An indefinite-length item or a stray "break".
    #[error("indefinite-length items are not supported")]
    Indefinite,
    /// Additional information 28 to 30, which CBOR reserves.
    #[error("reserved additional information")]
    Reserved,
    /// A tag other than 258.
    #[error("unsupported tag {0}")]
    UnsupportedTag(u64),
    /// Tag 258 (set) on something other than an array.
    #[error("tag 258 (set) must enclose an array")]
    SetNotArray,
    /// A float, `undefined` or another simple value.
    #[error("floats and simple values other than false/true/null are not supported")]
    UnsupportedSimple,
    /// A text string that is not UTF-8.
    #[error("text string is not valid UTF-8")]
    InvalidUtf8,
    /// The tree builder failed after the structure check passed (should not happen).
    #[error("CBOR decoding failed: {0}")]
    Decode(String),
}

/// Reads the header at `*pos`: major type, additional information, argument.
fn read_header(bytes: &[u8], pos: &mut usize) -> Result<(u8, u8, u64), CborError> {
    let ib = *bytes.get(*pos).ok_or(CborError::Truncated)?;
    *pos += 1;
    let major = ib >> 5;
    let info = ib & 0x1f;
    let width = match info {
        0..=23 => return Ok((major, info, u64::from(info))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        28..=30 => return Err(CborError::Reserved),
        _ => return Err(CborError::Indefinite),
    };
    let end = pos.checked_add(width).ok_or(CborError::Truncated)?;
    let arg_bytes = bytes.get(*pos..end).ok_or(CborError::Truncated)?;
    *pos = end;
    let arg = arg_bytes
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    Ok((major, info, arg))
}

/// Checks that `bytes` is exactly one CBOR item of the subset GBS uses, within `limits`.
///
/// Never allocates in proportion to declared lengths and never recurses; cost is linear in
/// the input. A fuzz target can call this directly.
pub fn check_structure(bytes: &[u8], limits: &DecodeLimits) -> Result<(), CborError> {
    if bytes.len() > limits.max_len {
        return Err(CborError::TooLarge {
            len: bytes.len(),
            limit: limits.max_len,
        });
    }
    let mut pos = 0usize;
    let mut items = 0usize;
    // Items still expected in each open container (a map of n pairs expects 2n).
    let mut open: Vec<u64> = Vec::new();
    loop {
        let (major, info, arg) = read_header(bytes, &mut pos)?;
        items += 1;
        if items > limits.max_items {
            return Err(CborError::TooManyItems);
        }
        let remaining = (bytes.len() - pos) as u64;
        let children = match major {
            0 | 1 => None,
            2 | 3 => {
                if arg > remaining {
                    return Err(CborError::Truncated);
                }
                let end = pos + arg as usize;
                if major == 3 && std::str::from_utf8(&bytes[pos..end]).is_err() {
                    return Err(CborError::InvalidUtf8);
                }
                pos = end;
                None
            }
            // Every item takes at least one byte, so a count above what is left is a lie.
            4 => {
                if arg > remaining {
                    return Err(CborError::Truncated);
                }
                Some(arg)
            }
            5 => {
                let n = arg.checked_mul(2).ok_or(CborError::Truncated)?;
                if n > remaining {
                    return Err(CborError::Truncated);
                }
                Some(n)
            }
            6 => {
                if arg != SET_TAG {
                    return Err(CborError::UnsupportedTag(arg));
                }
                match bytes.get(pos) {
                    None => return Err(CborError::Truncated),
                    Some(b) if b >> 5 != 4 => return Err(CborError::SetNotArray),
                    Some(_) => Some(1),
                }
            }
            _ => match info {
                20..=22 => None,
                _ => return Err(CborError::UnsupportedSimple),
            },
        };
        if let Some(n) = children {
            if open.len() >= limits.max_depth {
                return Err(CborError::TooDeep);
            }
            if n > 0 {
                open.push(n);
                continue;
            }
        }
        // One item is complete; close every container it completes.
        loop {
            match open.last_mut() {
                None => {
                    return if pos == bytes.len() {
                        Ok(())
                    } else {
                        Err(CborError::TrailingBytes(pos))
                    };
                }
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

mod sealed {
    use ciborium::value::Value;

    use crate::error::ProtocolError;

    /// How a body maps to and from a CBOR value tree. Private: the public API is bytes.
    pub trait Codec: Sized {
        fn to_value(&self) -> Value;
        fn from_value(value: Value) -> Result<Self, ProtocolError>;
    }
}

pub(crate) use sealed::Codec;

/// A GBS message body: encodes to the bytes stock sends and decodes within limits.
pub trait CborBody: sealed::Codec {
    /// The limits [`CborBody::decode`] applies: the stock limit for request bodies, and a
    /// generous bound for responses (they come from a server the client chose).
    const LIMITS: DecodeLimits;

    /// The CBOR encoding.
    fn encode(&self) -> Vec<u8> {
        encode_value(&self.to_value())
    }

    /// Decodes with [`CborBody::LIMITS`].
    fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        decode_limited(bytes, &Self::LIMITS)
    }
}

/// Decodes a body of type `T` within `limits`: 413 if too long, 400 for anything malformed or
/// not matching the schema. A fuzz target can call this for each body type.
pub fn decode_limited<T: CborBody>(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<T, ProtocolError> {
    check_structure(bytes, limits)?;
    let value: Value =
        ciborium::from_reader(bytes).map_err(|e| CborError::Decode(format!("{e:?}")))?;
    T::from_value(value)
}

pub(crate) fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match ciborium::into_writer(value, &mut out) {
        Ok(()) => out,
        // Serialising a `Value` into a `Vec` has no failure mode.
        Err(e) => unreachable!("CBOR encoding into memory failed: {e:?}"),
    }
}

// ---- building values ----

pub(crate) fn uint(n: u64) -> Value {
    Value::Integer(Integer::from(n))
}

pub(crate) fn text_map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

pub(crate) fn bytes_map(entries: Vec<(&[u8], Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Bytes(k.to_vec()), v))
            .collect(),
    )
}

pub(crate) fn share_set(set: &BTreeSet<ShareNum>) -> Value {
    Value::Tag(
        SET_TAG,
        Box::new(Value::Array(
            set.iter().map(|n| uint(u64::from(n.get()))).collect(),
        )),
    )
}

pub(crate) fn share_map<T>(map: &BTreeMap<ShareNum, T>, f: impl Fn(&T) -> Value) -> Value {
    Value::Map(
        map.iter()
            .map(|(n, v)| (uint(u64::from(n.get())), f(v)))
            .collect(),
    )
}

// ---- reading values ----

fn invalid(msg: String) -> ProtocolError {
    ProtocolError::InvalidBody(msg)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "integer",
        Value::Bytes(_) => "byte string",
        Value::Text(_) => "text string",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Tag(..) => "tagged item",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        _ => "other",
    }
}

pub(crate) fn get_uint(v: Value, what: &str) -> Result<u64, ProtocolError> {
    match v {
        Value::Integer(i) => {
            u64::try_from(i).map_err(|_| invalid(format!("{what}: expected an unsigned integer")))
        }
        other => Err(invalid(format!(
            "{what}: expected an unsigned integer, got a {}",
            type_name(&other)
        ))),
    }
}

pub(crate) fn get_share_num(v: Value, what: &str) -> Result<ShareNum, ProtocolError> {
    let n = get_uint(v, what)?;
    ShareNum::try_from(n).map_err(|_| invalid(format!("{what}: share number {n} is above 255")))
}

pub(crate) fn get_bytes(v: Value, what: &str) -> Result<Vec<u8>, ProtocolError> {
    match v {
        Value::Bytes(b) => Ok(b),
        other => Err(invalid(format!(
            "{what}: expected a byte string, got a {}",
            type_name(&other)
        ))),
    }
}

pub(crate) fn get_text(v: Value, what: &str) -> Result<String, ProtocolError> {
    match v {
        Value::Text(s) => Ok(s),
        other => Err(invalid(format!(
            "{what}: expected a text string, got a {}",
            type_name(&other)
        ))),
    }
}

pub(crate) fn get_bool(v: Value, what: &str) -> Result<bool, ProtocolError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(invalid(format!(
            "{what}: expected a boolean, got a {}",
            type_name(&other)
        ))),
    }
}

pub(crate) fn get_array(v: Value, what: &str, max: usize) -> Result<Vec<Value>, ProtocolError> {
    match v {
        Value::Array(a) if a.len() <= max => Ok(a),
        Value::Array(a) => Err(invalid(format!(
            "{what}: {} entries, at most {max} allowed",
            a.len()
        ))),
        other => Err(invalid(format!(
            "{what}: expected an array, got a {}",
            type_name(&other)
        ))),
    }
}

/// A tag-258 set of share numbers (stock CDDL `#6.258([0*256 uint])`). Repeated members are
/// merged, as cbor2 does when it builds a Python `set`.
pub(crate) fn get_share_set(v: Value, what: &str) -> Result<BTreeSet<ShareNum>, ProtocolError> {
    match v {
        Value::Tag(SET_TAG, inner) => get_array(*inner, what, limits::MAX_SHARES)?
            .into_iter()
            .map(|n| get_share_num(n, what))
            .collect(),
        Value::Tag(tag, _) => Err(invalid(format!("{what}: expected tag 258, got tag {tag}"))),
        other => Err(invalid(format!(
            "{what}: expected a set (tag 258), got a {}",
            type_name(&other)
        ))),
    }
}

/// A map keyed by share number (stock CDDL `{0*256 share_number: ...}`), without repeats.
pub(crate) fn get_share_map(
    v: Value,
    what: &str,
) -> Result<BTreeMap<ShareNum, Value>, ProtocolError> {
    let entries = match v {
        Value::Map(m) => m,
        other => {
            return Err(invalid(format!(
                "{what}: expected a map, got a {}",
                type_name(&other)
            )));
        }
    };
    if entries.len() > limits::MAX_SHARES {
        return Err(invalid(format!("{what}: more than 256 shares")));
    }
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let n = get_share_num(k, what)?;
        if out.insert(n, v).is_some() {
            return Err(invalid(format!("{what}: share {n} appears twice")));
        }
    }
    Ok(out)
}

/// Which CBOR type a struct-like map uses for its keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Text,
    Bytes,
}

/// The entries of a struct-like map, taken out by name.
pub(crate) struct Fields {
    what: &'static str,
    entries: BTreeMap<Vec<u8>, Value>,
}

impl Fields {
    /// Reads a map whose keys are all of `key_type`, refusing repeated keys.
    pub(crate) fn new(
        v: Value,
        what: &'static str,
        key_type: KeyType,
    ) -> Result<Self, ProtocolError> {
        let pairs = match v {
            Value::Map(m) => m,
            other => {
                return Err(invalid(format!(
                    "{what}: expected a map, got a {}",
                    type_name(&other)
                )));
            }
        };
        let mut entries = BTreeMap::new();
        for (k, v) in pairs {
            let key = match (key_type, k) {
                (KeyType::Text, Value::Text(s)) => s.into_bytes(),
                (KeyType::Bytes, Value::Bytes(b)) => b,
                (KeyType::Text, other) => {
                    return Err(invalid(format!(
                        "{what}: keys must be text strings, got a {}",
                        type_name(&other)
                    )));
                }
                (KeyType::Bytes, other) => {
                    return Err(invalid(format!(
                        "{what}: keys must be byte strings, got a {}",
                        type_name(&other)
                    )));
                }
            };
            if entries.contains_key(&key) {
                return Err(invalid(format!(
                    "{what}: key {:?} appears twice",
                    String::from_utf8_lossy(&key)
                )));
            }
            entries.insert(key, v);
        }
        Ok(Self { what, entries })
    }

    pub(crate) fn take(&mut self, name: &str) -> Option<Value> {
        self.entries.remove(name.as_bytes())
    }

    pub(crate) fn require(&mut self, name: &str) -> Result<Value, ProtocolError> {
        self.take(name)
            .ok_or_else(|| invalid(format!("{}: missing key {name:?}", self.what)))
    }

    /// Refuses keys nobody took (stock's CDDL maps are closed).
    pub(crate) fn close(self) -> Result<(), ProtocolError> {
        match self.entries.keys().next() {
            None => Ok(()),
            Some(k) => Err(invalid(format!(
                "{}: unexpected key {:?}",
                self.what,
                String::from_utf8_lossy(k)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: DecodeLimits = DecodeLimits::new(1 << 20, 8, 1 << 16);

    fn check(hex_str: &str) -> Result<(), CborError> {
        check_structure(&hex::decode(hex_str).unwrap(), &L)
    }

    #[test]
    fn accepts_the_subset() {
        for ok in [
            "00",
            "17",
            "1818",
            "1b0000001cbe991a14",
            "20",           // -1
            "40",           // h''
            "4161",         // h'61'
            "60",           // ""
            "6161",         // "a"
            "80",           // []
            "a0",           // {}
            "f4",           // false
            "f5",           // true
            "f6",           // null
            "d9010280",     // 258([])
            "d90102820102", // 258([1, 2])
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert_eq!(check("a2616101616282f6f5"), Ok(()));
        assert_eq!(check("818181818180"), Ok(()));
    }

    #[test]
    fn refuses_what_is_outside() {
        let cases = [
            ("", CborError::Truncated),
            ("18", CborError::Truncated),
            ("1b00000000", CborError::Truncated),
            ("42ff", CborError::Truncated),
            ("5bffffffffffffffff00", CborError::Truncated),
            ("9bffffffffffffffff00", CborError::Truncated),
            ("bbffffffffffffffff00", CborError::Truncated),
            ("bb7fffffffffffffff00", CborError::Truncated),
            ("8201", CborError::Truncated),
            ("a101", CborError::Truncated),
            ("0000", CborError::TrailingBytes(1)),
            ("80ff", CborError::TrailingBytes(1)),
            ("1c", CborError::Reserved),
            ("1f", CborError::Indefinite),
            ("5f", CborError::Indefinite),
            ("9f01ff", CborError::Indefinite),
            ("bf", CborError::Indefinite),
            ("ff", CborError::Indefinite),
            ("c1", CborError::UnsupportedTag(1)),
            ("c249010000000000000000", CborError::UnsupportedTag(2)),
            ("d90102a0", CborError::SetNotArray),
            ("d9010201", CborError::SetNotArray),
            ("d90102", CborError::Truncated),
            ("f7", CborError::UnsupportedSimple),
            ("f0", CborError::UnsupportedSimple),
            ("f820", CborError::UnsupportedSimple),
            ("f93c00", CborError::UnsupportedSimple),
            ("fb3ff0000000000000", CborError::UnsupportedSimple),
            ("62c328", CborError::InvalidUtf8),
        ];
        for (input, want) in cases {
            assert_eq!(check(input), Err(want.clone()), "{input}");
        }
    }

    #[test]
    fn limits_apply() {
        let deep = "81".repeat(8) + "00";
        assert_eq!(check(&deep), Ok(()));
        let deeper = "81".repeat(9) + "00";
        assert_eq!(check(&deeper), Err(CborError::TooDeep));
        // An empty container also counts as a level.
        assert_eq!(check(&("81".repeat(8) + "80")), Err(CborError::TooDeep));
        // Tags count as a level.
        assert_eq!(
            check(&("81".repeat(7) + "d9010280")),
            Err(CborError::TooDeep)
        );
        // Very deep input is refused without recursion.
        let very_deep = vec![0x81u8; 1_000_000];
        assert_eq!(
            check_structure(&very_deep, &DecodeLimits::new(usize::MAX, 8, usize::MAX)),
            Err(CborError::TooDeep)
        );
        let items = DecodeLimits::new(100, 8, 3);
        assert_eq!(check_structure(&[0x82, 0, 0], &items), Ok(()));
        assert_eq!(
            check_structure(&[0x83, 0, 0, 0], &items),
            Err(CborError::TooManyItems)
        );
        let small = DecodeLimits::new(2, 8, 10);
        assert_eq!(
            check_structure(&[0x82, 0, 0], &small),
            Err(CborError::TooLarge { len: 3, limit: 2 })
        );
    }

    #[test]
    fn value_readers() {
        assert_eq!(get_uint(uint(5), "x").unwrap(), 5);
        assert!(get_uint(Value::Integer((-1).into()), "x").is_err());
        assert!(get_uint(Value::Text("5".into()), "x").is_err());
        assert!(get_share_num(uint(256), "x").is_err());
        let set = get_share_set(
            Value::Tag(
                SET_TAG,
                Box::new(Value::Array(vec![uint(3), uint(1), uint(3)])),
            ),
            "x",
        )
        .unwrap();
        assert_eq!(
            set.into_iter().map(ShareNum::get).collect::<Vec<_>>(),
            [1, 3]
        );
        assert!(get_share_set(Value::Array(vec![]), "x").is_err());
        assert!(get_share_set(Value::Tag(259, Box::new(Value::Array(vec![]))), "x").is_err());
        let too_many = Value::Tag(SET_TAG, Box::new(Value::Array(vec![uint(0); 257])));
        assert!(get_share_set(too_many, "x").is_err());
        let dup = Value::Map(vec![(uint(1), Value::Null), (uint(1), Value::Null)]);
        assert!(get_share_map(dup, "x").is_err());
        let text_key = Value::Map(vec![(Value::Text("1".into()), Value::Null)]);
        assert!(get_share_map(text_key, "x").is_err());

        let mut f = Fields::new(
            text_map(vec![("a", uint(1)), ("b", uint(2))]),
            "m",
            KeyType::Text,
        )
        .unwrap();
        assert_eq!(get_uint(f.require("a").unwrap(), "a").unwrap(), 1);
        assert!(f.require("zz").is_err());
        assert!(f.close().is_err());
        let dup = Value::Map(vec![
            (Value::Text("a".into()), Value::Null),
            (Value::Text("a".into()), Value::Null),
        ]);
        assert!(Fields::new(dup, "m", KeyType::Text).is_err());
        assert!(Fields::new(bytes_map(vec![(b"a", uint(1))]), "m", KeyType::Text).is_err());
        assert!(Fields::new(text_map(vec![("a", uint(1))]), "m", KeyType::Bytes).is_err());
    }
}

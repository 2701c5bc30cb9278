//! Tahoe-LAFS capability strings ("caps"): parse, format, diminish.
//!
//! A cap is the whole authority to a file or directory, written as ASCII. This module reads
//! and writes every cap kind stock Tahoe-LAFS 1.20 knows, byte for byte, and derives the
//! weaker caps from the stronger ones (write → read → verify).
//!
//! # Grammar
//!
//! `b32(n)` is Tahoe's base32 (lower case, unpadded, canonical trailing bits) of exactly `n`
//! bytes: 26 characters for 16 bytes, 52 for 32. `num` is one or more ASCII digits.
//!
//! ```text
//! cap        = [ "ro." | "imm." ] known / unknown
//! known      = "URI:" kind ":" body
//!
//! kind         body                                           what it is
//! LIT          b32(any length, may be empty)                  the file's bytes themselves
//! CHK          b32(16 key) ":" b32(32 UEB hash) ":" k ":" N ":" size
//! CHK-Verifier b32(16 SI)  ":" b32(32 UEB hash) ":" k ":" N ":" size
//! SSK          b32(16 writekey) ":" b32(32 fingerprint)
//! SSK-RO       b32(16 readkey)  ":" b32(32 fingerprint)
//! SSK-Verifier b32(16 SI)       ":" b32(32 fingerprint)
//! MDMF, MDMF-RO, MDMF-Verifier  as the SSK kinds, optionally followed by ":" and anything
//!                               (an old extension, e.g. ":3:131073"), ignored and dropped
//! DIR2, DIR2-RO, DIR2-Verifier                 wrap SSK, SSK-RO, SSK-Verifier bodies
//! DIR2-MDMF, DIR2-MDMF-RO, DIR2-MDMF-Verifier  wrap the MDMF bodies
//! DIR2-CHK, DIR2-CHK-Verifier, DIR2-LIT        wrap CHK, CHK-Verifier, LIT bodies
//! ```
//!
//! `k` (needed shares) and `N` (total shares) must satisfy `1 <= k <= N <= 256`; `size`
//! must fit in a `u64`. Leading zeros in numbers are accepted and dropped, as stock does.
//!
//! Anything that does not start with a known `URI:<kind>:` (after an optional prefix) is an
//! [`Cap::Unknown`] cap, kept verbatim so it can be stored and handed back unchanged. A known
//! kind whose body does not follow the grammar is an error ([`CapError`]), never `Unknown`.
//!
//! # Prefixes
//!
//! `ro.` says "only a read cap may follow", `imm.` says "only an immutable cap may follow".
//! When the cap that follows honours the claim, the prefix is accepted and dropped (the
//! canonical string has no prefix, as in stock). When it does not (`ro.` on a write cap,
//! `imm.` on any mutable write or read cap), parsing fails with
//! [`CapError::InconsistentPrefix`]; stock makes such a cap an unusable "unknown" node that
//! carries that error. Verifier caps satisfy both prefixes. Only one prefix is stripped:
//! `ro.imm.URI:…` is an unknown cap.
//!
//! # Secret hygiene
//!
//! Writekeys, readkeys, CHK keys and the data of literal caps are secrets: whoever reads
//! them can read (or write) the file. Storage indexes, fingerprints, UEB hashes and the
//! `k`/`N`/`size` numbers are not. Therefore:
//!
//! - [`Display`](std::fmt::Display) prints the full cap string: that is its purpose.
//! - `Debug` never prints secrets: key-holding types show their storage index instead, a
//!   literal cap shows its length, an unknown cap shows only its leading kind label.
//! - [`CapError`] messages name the kind, the field and the problem, and never quote the
//!   cap or a secret field (not even the offending character of a secret field).

use crate::base32::{self, Base32Error};
use crate::hashutil::{
    HASH_LEN, KEY_LEN, mutable_readkey, mutable_storage_index, storage_index_from_key,
};
use std::fmt;
use std::str::FromStr;

#[cfg(test)]
mod tests;

/// Largest number of shares (`N`) an erasure-coded cap may name (zfec's limit).
pub const MAX_SHARES: u16 = 256;

/// The `ro.` prefix: "the cap that follows is read-only".
pub const READONLY_PREFIX: &str = "ro.";
/// The `imm.` prefix: "the cap that follows is immutable".
pub const IMMUTABLE_PREFIX: &str = "imm.";

/// Why a cap string was refused.
///
/// Messages name the cap kind, the field and the problem; they never contain the cap string
/// or any secret it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapError {
    /// The body does not have the number of `:`-separated fields the kind needs.
    #[error(
        "{kind} cap: expected {}{expected} ':'-separated fields after the prefix, found {found}",
        if *.exact { "" } else { "at least " }
    )]
    FieldCount {
        /// The cap kind, as [`Cap::kind`] names it.
        kind: &'static str,
        /// How many fields the kind needs.
        expected: usize,
        /// `false` when more fields are allowed (MDMF extensions).
        exact: bool,
        /// How many fields there were.
        found: usize,
    },
    /// A field is empty.
    #[error("{kind} cap: {field} field is empty")]
    EmptyField {
        /// The cap kind.
        kind: &'static str,
        /// The field's name.
        field: &'static str,
    },
    /// A base32 field is malformed.
    #[error("{kind} cap: {field} field is not valid base32: {problem}")]
    Base32 {
        /// The cap kind.
        kind: &'static str,
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        problem: Base32Problem,
    },
    /// A numeric field holds something other than ASCII digits.
    #[error(
        "{kind} cap: {field} field is not a decimal number (unexpected character at position {position})"
    )]
    NotDecimal {
        /// The cap kind.
        kind: &'static str,
        /// The field's name.
        field: &'static str,
        /// Byte offset of the first non-digit within the field.
        position: usize,
    },
    /// A numeric field is larger than its type allows.
    #[error("{kind} cap: {field} field is too large (at most {max})")]
    NumberTooLarge {
        /// The cap kind.
        kind: &'static str,
        /// The field's name.
        field: &'static str,
        /// The largest value accepted.
        max: u64,
    },
    /// `k` (needed shares) is zero.
    #[error("{kind} cap: needed shares (k) is 0, must be at least 1")]
    NeededSharesZero {
        /// The cap kind.
        kind: &'static str,
    },
    /// `N` (total shares) is above [`MAX_SHARES`].
    #[error("{kind} cap: total shares (N) is {total}, must be at most 256")]
    TooManyShares {
        /// The cap kind.
        kind: &'static str,
        /// The value found.
        total: u16,
    },
    /// `k` is larger than `N`.
    #[error("{kind} cap: needed shares (k={needed}) exceeds total shares (N={total})")]
    NeededExceedsTotal {
        /// The cap kind.
        kind: &'static str,
        /// `k`.
        needed: u16,
        /// `N`.
        total: u16,
    },
    /// A `ro.` prefix on a write cap, or an `imm.` prefix on a mutable cap.
    #[error(
        "{prefix} prefix is not allowed on a {kind} cap: {}",
        if *.prefix == IMMUTABLE_PREFIX { "it is not immutable" } else { "it is a write cap" }
    )]
    InconsistentPrefix {
        /// [`READONLY_PREFIX`] or [`IMMUTABLE_PREFIX`].
        prefix: &'static str,
        /// The cap kind that followed the prefix.
        kind: &'static str,
    },
}

/// What is wrong with a base32 field (see [`CapError::Base32`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base32Problem {
    /// The field must have exactly `expected` characters.
    #[error("expected {expected} characters, found {found}")]
    WrongLength {
        /// Characters needed.
        expected: usize,
        /// Characters found (bytes, for non-ASCII input).
        found: usize,
    },
    /// No byte string encodes to this many characters.
    #[error("invalid length ({found} characters encode no whole number of bytes)")]
    InvalidLength {
        /// Characters found.
        found: usize,
    },
    /// A character outside `a-z2-7`. The character itself is only reported for fields that
    /// are not secret.
    #[error("invalid character{} at position {position}", match .character {
        Some(c) => format!(" {c:?}"),
        None => String::new(),
    })]
    BadCharacter {
        /// Byte offset within the field.
        position: usize,
        /// The character, `None` when the field is a secret.
        character: Option<char>,
    },
    /// The unused trailing bits of the last character are not zero.
    #[error("non-canonical encoding (trailing bits are not zero)")]
    NonCanonical,
}

/// A literal cap (`URI:LIT:`): the file's bytes are in the cap itself.
///
/// `data` is secret: `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct LitCap {
    /// The file's contents.
    pub data: Vec<u8>,
}

impl LitCap {
    /// The file's size.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

impl fmt::Debug for LitCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LitCap")
            .field("len", &self.data.len())
            .finish()
    }
}

/// An immutable file read cap (`URI:CHK:`).
///
/// `key` is secret: `Debug` shows the storage index instead. Fields are public; values
/// built by hand are printed as they are, only parsing checks `1 <= k <= N <= 256`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChkCap {
    /// AES-128 key of the file.
    pub key: [u8; KEY_LEN],
    /// Hash of the URI extension block.
    pub ueb_hash: [u8; HASH_LEN],
    /// `k`: shares needed to rebuild the file.
    pub needed_shares: u16,
    /// `N`: shares written.
    pub total_shares: u16,
    /// The file's size in bytes.
    pub size: u64,
}

impl ChkCap {
    /// The storage index: a tagged hash of the key.
    pub fn storage_index(&self) -> [u8; KEY_LEN] {
        storage_index_from_key(&self.key)
    }

    /// The verify cap of this file.
    pub fn verifier(&self) -> ChkVerifierCap {
        ChkVerifierCap {
            storage_index: self.storage_index(),
            ueb_hash: self.ueb_hash,
            needed_shares: self.needed_shares,
            total_shares: self.total_shares,
            size: self.size,
        }
    }
}

impl fmt::Debug for ChkCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChkCap")
            .field("storage_index", &B32(&self.storage_index()))
            .field("needed_shares", &self.needed_shares)
            .field("total_shares", &self.total_shares)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// An immutable file verify cap (`URI:CHK-Verifier:`). Holds no secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChkVerifierCap {
    /// The storage index.
    pub storage_index: [u8; KEY_LEN],
    /// Hash of the URI extension block.
    pub ueb_hash: [u8; HASH_LEN],
    /// `k`.
    pub needed_shares: u16,
    /// `N`.
    pub total_shares: u16,
    /// The file's size in bytes.
    pub size: u64,
}

impl fmt::Debug for ChkVerifierCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChkVerifierCap")
            .field("storage_index", &B32(&self.storage_index))
            .field("ueb_hash", &B32(&self.ueb_hash))
            .field("needed_shares", &self.needed_shares)
            .field("total_shares", &self.total_shares)
            .field("size", &self.size)
            .finish()
    }
}

/// A mutable write cap: the body of `URI:SSK:` and `URI:MDMF:` (and of the directory caps
/// wrapping them).
///
/// `writekey` is secret: `Debug` shows the storage index instead.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MutableWriteCap {
    /// The writekey (a tagged hash of the RSA private key).
    pub writekey: [u8; KEY_LEN],
    /// Hash of the RSA public key.
    pub fingerprint: [u8; HASH_LEN],
}

impl MutableWriteCap {
    /// The readkey, a tagged hash of the writekey.
    pub fn readkey(&self) -> [u8; KEY_LEN] {
        mutable_readkey(&self.writekey)
    }

    /// The storage index, a tagged hash of the readkey.
    pub fn storage_index(&self) -> [u8; KEY_LEN] {
        mutable_storage_index(&self.readkey())
    }

    /// The matching read cap.
    pub fn readonly(&self) -> MutableReadCap {
        MutableReadCap {
            readkey: self.readkey(),
            fingerprint: self.fingerprint,
        }
    }

    /// The matching verify cap.
    pub fn verifier(&self) -> MutableVerifierCap {
        MutableVerifierCap {
            storage_index: self.storage_index(),
            fingerprint: self.fingerprint,
        }
    }
}

impl fmt::Debug for MutableWriteCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutableWriteCap")
            .field("storage_index", &B32(&self.storage_index()))
            .field("fingerprint", &B32(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// A mutable read cap: the body of `URI:SSK-RO:` and `URI:MDMF-RO:`.
///
/// `readkey` is secret: `Debug` shows the storage index instead.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MutableReadCap {
    /// The readkey.
    pub readkey: [u8; KEY_LEN],
    /// Hash of the RSA public key.
    pub fingerprint: [u8; HASH_LEN],
}

impl MutableReadCap {
    /// The storage index, a tagged hash of the readkey.
    pub fn storage_index(&self) -> [u8; KEY_LEN] {
        mutable_storage_index(&self.readkey)
    }

    /// The matching verify cap.
    pub fn verifier(&self) -> MutableVerifierCap {
        MutableVerifierCap {
            storage_index: self.storage_index(),
            fingerprint: self.fingerprint,
        }
    }
}

impl fmt::Debug for MutableReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutableReadCap")
            .field("storage_index", &B32(&self.storage_index()))
            .field("fingerprint", &B32(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// A mutable verify cap: the body of `URI:SSK-Verifier:` and `URI:MDMF-Verifier:`. Holds no
/// secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MutableVerifierCap {
    /// The storage index.
    pub storage_index: [u8; KEY_LEN],
    /// Hash of the RSA public key.
    pub fingerprint: [u8; HASH_LEN],
}

impl fmt::Debug for MutableVerifierCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutableVerifierCap")
            .field("storage_index", &B32(&self.storage_index))
            .field("fingerprint", &B32(&self.fingerprint))
            .finish()
    }
}

/// A directory cap: a file cap whose file holds a serialized directory.
///
/// Every file cap kind has a directory form (`URI:SSK:` ↔ `URI:DIR2:`, `URI:CHK:` ↔
/// `URI:DIR2-CHK:`, …); the inner cap is never a directory or an unknown cap.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DirCap {
    inner: Box<Cap>,
}

impl DirCap {
    /// Wraps a file cap; gives it back if it is a directory or an unknown cap.
    pub fn new(filenode_cap: Cap) -> Result<Self, Cap> {
        match filenode_cap {
            Cap::Dir(_) | Cap::Unknown(_) => Err(filenode_cap),
            file => Ok(Self {
                inner: Box::new(file),
            }),
        }
    }

    /// The cap of the file holding the directory (stock: `get_filenode_cap`).
    pub fn filenode_cap(&self) -> &Cap {
        &self.inner
    }

    /// Unwraps the file cap.
    pub fn into_filenode_cap(self) -> Cap {
        *self.inner
    }

    /// Wraps a cap already known to be a file cap.
    fn wrap(file: Cap) -> Cap {
        debug_assert!(!matches!(file, Cap::Dir(_) | Cap::Unknown(_)));
        Cap::Dir(Self {
            inner: Box::new(file),
        })
    }
}

impl fmt::Debug for DirCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DirCap").field(&self.inner).finish()
    }
}

/// A parsed capability.
///
/// Parse with [`str::parse`]; [`Display`](fmt::Display) gives the canonical string (no
/// `ro.`/`imm.` prefix, no MDMF extension, numbers without leading zeros), which is what
/// stock Tahoe prints for the same cap. `Debug` never shows secrets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Cap {
    /// `URI:LIT:`
    Lit(LitCap),
    /// `URI:CHK:`
    Chk(ChkCap),
    /// `URI:CHK-Verifier:`
    ChkVerifier(ChkVerifierCap),
    /// `URI:SSK:`
    Ssk(MutableWriteCap),
    /// `URI:SSK-RO:`
    SskRo(MutableReadCap),
    /// `URI:SSK-Verifier:`
    SskVerifier(MutableVerifierCap),
    /// `URI:MDMF:`
    Mdmf(MutableWriteCap),
    /// `URI:MDMF-RO:`
    MdmfRo(MutableReadCap),
    /// `URI:MDMF-Verifier:`
    MdmfVerifier(MutableVerifierCap),
    /// Any `URI:DIR2*:` cap.
    Dir(DirCap),
    /// A cap of a kind this version does not know, kept verbatim (prefix included).
    Unknown(String),
}

/// How a cap's body is laid out, shared by a file kind and its directory form.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Body {
    Lit,
    Chk,
    ChkVerifier,
    Ssk,
    SskRo,
    SskVerifier,
    Mdmf,
    MdmfRo,
    MdmfVerifier,
}

impl Body {
    /// Write caps: refused after `ro.` and `imm.`.
    fn is_write(self) -> bool {
        matches!(self, Body::Ssk | Body::Mdmf)
    }

    /// Mutable read caps: refused after `imm.`.
    fn is_mutable_read(self) -> bool {
        matches!(self, Body::SskRo | Body::MdmfRo)
    }

    fn file_kind(self) -> &'static str {
        match self {
            Body::Lit => "LIT",
            Body::Chk => "CHK",
            Body::ChkVerifier => "CHK-Verifier",
            Body::Ssk => "SSK",
            Body::SskRo => "SSK-RO",
            Body::SskVerifier => "SSK-Verifier",
            Body::Mdmf => "MDMF",
            Body::MdmfRo => "MDMF-RO",
            Body::MdmfVerifier => "MDMF-Verifier",
        }
    }

    fn dir_kind(self) -> &'static str {
        match self {
            Body::Lit => "DIR2-LIT",
            Body::Chk => "DIR2-CHK",
            Body::ChkVerifier => "DIR2-CHK-Verifier",
            Body::Ssk => "DIR2",
            Body::SskRo => "DIR2-RO",
            Body::SskVerifier => "DIR2-Verifier",
            Body::Mdmf => "DIR2-MDMF",
            Body::MdmfRo => "DIR2-MDMF-RO",
            Body::MdmfVerifier => "DIR2-MDMF-Verifier",
        }
    }

    const ALL: [Body; 9] = [
        Body::Lit,
        Body::Chk,
        Body::ChkVerifier,
        Body::Ssk,
        Body::SskRo,
        Body::SskVerifier,
        Body::Mdmf,
        Body::MdmfRo,
        Body::MdmfVerifier,
    ];

    /// Finds the body layout of a `URI:<token>:` kind, and whether it is a directory.
    fn lookup(token: &str) -> Option<(Body, bool)> {
        Body::ALL.into_iter().find_map(|b| {
            if b.file_kind() == token {
                Some((b, false))
            } else if b.dir_kind() == token {
                Some((b, true))
            } else {
                None
            }
        })
    }
}

/// Test-only cap prefixes stock refuses after a `ro.` (writeable) or `imm.` (both) prefix.
const FUTURE_TEST_WRITEABLE: &str = "x-tahoe-future-test-writeable";
const FUTURE_TEST_MUTABLE: &str = "x-tahoe-future-test-mutable";

impl FromStr for Cap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Stock strips at most one prefix, `imm.` first.
        let (prefix, rest) = if let Some(rest) = s.strip_prefix(IMMUTABLE_PREFIX) {
            (Some(IMMUTABLE_PREFIX), rest)
        } else if let Some(rest) = s.strip_prefix(READONLY_PREFIX) {
            (Some(READONLY_PREFIX), rest)
        } else {
            (None, s)
        };
        let allow_write = prefix.is_none();
        let allow_mutable = prefix != Some(IMMUTABLE_PREFIX);

        let known = rest
            .strip_prefix("URI:")
            .and_then(|r| r.split_once(':'))
            .and_then(|(token, body)| Body::lookup(token).map(|found| (found, body)));
        let Some(((layout, is_dir), body)) = known else {
            // Stock's hooks for testing how future caps behave behind a prefix.
            if let Some(p) = prefix {
                let refused = if rest.starts_with("x-tahoe-future-test-writeable:") {
                    Some(FUTURE_TEST_WRITEABLE)
                } else if rest.starts_with("x-tahoe-future-test-mutable:") && !allow_mutable {
                    Some(FUTURE_TEST_MUTABLE)
                } else {
                    None
                };
                if let Some(kind) = refused {
                    return Err(CapError::InconsistentPrefix { prefix: p, kind });
                }
            }
            return Ok(Cap::Unknown(s.to_owned()));
        };

        let kind = if is_dir {
            layout.dir_kind()
        } else {
            layout.file_kind()
        };
        // Like stock, the prefix is checked before the fields are.
        if let Some(p) = prefix
            && ((layout.is_write() && !allow_write) || (layout.is_mutable_read() && !allow_mutable))
        {
            return Err(CapError::InconsistentPrefix { prefix: p, kind });
        }
        let file = parse_body(layout, kind, body)?;
        Ok(if is_dir { DirCap::wrap(file) } else { file })
    }
}

/// Parses the part after `URI:<kind>:` into a file cap.
fn parse_body(layout: Body, kind: &'static str, body: &str) -> Result<Cap, CapError> {
    match layout {
        Body::Lit => {
            let data = base32::decode(body).map_err(|e| CapError::Base32 {
                kind,
                field: "data",
                problem: base32_problem(e, true),
            })?;
            Ok(Cap::Lit(LitCap { data }))
        }
        Body::Chk | Body::ChkVerifier => {
            let fields = split_fields::<5>(kind, body)?;
            let secret = layout == Body::Chk;
            let first_name = if secret { "key" } else { "storage index" };
            let first = parse_b32::<KEY_LEN>(kind, first_name, secret, fields[0])?;
            let ueb_hash = parse_b32::<HASH_LEN>(kind, "UEB hash", false, fields[1])?;
            let needed_shares = parse_share_count(kind, "needed shares (k)", fields[2])?;
            let total_shares = parse_share_count(kind, "total shares (N)", fields[3])?;
            let size = parse_decimal(kind, "size", fields[4])?;
            check_share_counts(kind, needed_shares, total_shares)?;
            Ok(if secret {
                Cap::Chk(ChkCap {
                    key: first,
                    ueb_hash,
                    needed_shares,
                    total_shares,
                    size,
                })
            } else {
                Cap::ChkVerifier(ChkVerifierCap {
                    storage_index: first,
                    ueb_hash,
                    needed_shares,
                    total_shares,
                    size,
                })
            })
        }
        Body::Ssk
        | Body::SskRo
        | Body::SskVerifier
        | Body::Mdmf
        | Body::MdmfRo
        | Body::MdmfVerifier => {
            let mdmf = matches!(layout, Body::Mdmf | Body::MdmfRo | Body::MdmfVerifier);
            let (key_field, fp_field) = if mdmf {
                // MDMF: anything after a third ':' is an extension, ignored (stock's regexp
                // ends in `(:|$)`) and not printed back.
                let mut it = body.splitn(3, ':');
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => (a, b),
                    _ => {
                        return Err(CapError::FieldCount {
                            kind,
                            expected: 2,
                            exact: false,
                            found: field_count(body),
                        });
                    }
                }
            } else {
                let [a, b] = split_fields::<2>(kind, body)?;
                (a, b)
            };
            let (key_name, secret) = match layout {
                Body::Ssk | Body::Mdmf => ("writekey", true),
                Body::SskRo | Body::MdmfRo => ("readkey", true),
                _ => ("storage index", false),
            };
            let key = parse_b32::<KEY_LEN>(kind, key_name, secret, key_field)?;
            let fingerprint = parse_b32::<HASH_LEN>(kind, "fingerprint", false, fp_field)?;
            Ok(match layout {
                Body::Ssk => Cap::Ssk(MutableWriteCap {
                    writekey: key,
                    fingerprint,
                }),
                Body::Mdmf => Cap::Mdmf(MutableWriteCap {
                    writekey: key,
                    fingerprint,
                }),
                Body::SskRo => Cap::SskRo(MutableReadCap {
                    readkey: key,
                    fingerprint,
                }),
                Body::MdmfRo => Cap::MdmfRo(MutableReadCap {
                    readkey: key,
                    fingerprint,
                }),
                Body::SskVerifier => Cap::SskVerifier(MutableVerifierCap {
                    storage_index: key,
                    fingerprint,
                }),
                _ => Cap::MdmfVerifier(MutableVerifierCap {
                    storage_index: key,
                    fingerprint,
                }),
            })
        }
    }
}

/// Number of `:`-separated fields in a body (an empty body has none).
fn field_count(body: &str) -> usize {
    if body.is_empty() {
        0
    } else {
        body.split(':').count()
    }
}

/// Splits a body into exactly `N` fields.
fn split_fields<'a, const N: usize>(
    kind: &'static str,
    body: &'a str,
) -> Result<[&'a str; N], CapError> {
    let mut out = [""; N];
    let mut it = body.split(':');
    let wrong = || CapError::FieldCount {
        kind,
        expected: N,
        exact: true,
        found: field_count(body),
    };
    if body.is_empty() {
        return Err(wrong());
    }
    for slot in &mut out {
        *slot = it.next().ok_or_else(wrong)?;
    }
    if it.next().is_some() {
        return Err(wrong());
    }
    Ok(out)
}

/// Decodes a base32 field of exactly `N` bytes.
fn parse_b32<const N: usize>(
    kind: &'static str,
    field: &'static str,
    secret: bool,
    s: &str,
) -> Result<[u8; N], CapError> {
    if s.is_empty() {
        return Err(CapError::EmptyField { kind, field });
    }
    let expected = base32::encoded_len(N);
    let err = |problem| CapError::Base32 {
        kind,
        field,
        problem,
    };
    if s.len() != expected {
        return Err(err(Base32Problem::WrongLength {
            expected,
            found: s.len(),
        }));
    }
    base32::decode_array::<N>(s).map_err(|e| err(base32_problem(e, secret)))
}

/// Converts a base32 error, dropping the offending character of a secret field.
fn base32_problem(e: Base32Error, secret: bool) -> Base32Problem {
    match e {
        Base32Error::BadCharacter(c, position) => Base32Problem::BadCharacter {
            position,
            character: (!secret).then_some(c),
        },
        Base32Error::NonCanonical => Base32Problem::NonCanonical,
        Base32Error::BadLength(found) => Base32Problem::InvalidLength { found },
        Base32Error::WrongSize { expected, got } => Base32Problem::WrongLength {
            expected: base32::encoded_len(expected),
            found: base32::encoded_len(got),
        },
    }
}

/// Parses a non-empty run of ASCII digits (leading zeros allowed, as in stock).
fn parse_decimal(kind: &'static str, field: &'static str, s: &str) -> Result<u64, CapError> {
    if s.is_empty() {
        return Err(CapError::EmptyField { kind, field });
    }
    if let Some(position) = s.bytes().position(|b| !b.is_ascii_digit()) {
        return Err(CapError::NotDecimal {
            kind,
            field,
            position,
        });
    }
    s.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(CapError::NumberTooLarge {
                kind,
                field,
                max: u64::MAX,
            })
    })
}

/// Parses `k` or `N`; values above 256 are reported by [`check_share_counts`].
fn parse_share_count(kind: &'static str, field: &'static str, s: &str) -> Result<u16, CapError> {
    let v = parse_decimal(kind, field, s)?;
    u16::try_from(v).map_err(|_| CapError::NumberTooLarge {
        kind,
        field,
        max: u64::from(MAX_SHARES),
    })
}

/// Requires `1 <= k <= N <= 256`.
fn check_share_counts(kind: &'static str, needed: u16, total: u16) -> Result<(), CapError> {
    if needed == 0 {
        Err(CapError::NeededSharesZero { kind })
    } else if total > MAX_SHARES {
        Err(CapError::TooManyShares { kind, total })
    } else if needed > total {
        Err(CapError::NeededExceedsTotal {
            kind,
            needed,
            total,
        })
    } else {
        Ok(())
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cap::Unknown(s) => f.write_str(s),
            Cap::Dir(d) => {
                write!(f, "URI:{}:", self.kind())?;
                d.inner.fmt_body(f)
            }
            file => {
                write!(f, "URI:{}:", file.kind())?;
                file.fmt_body(f)
            }
        }
    }
}

impl Cap {
    /// Writes the part after `URI:<kind>:` of a file cap.
    fn fmt_body(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cap::Lit(c) => f.write_str(&base32::encode(&c.data)),
            Cap::Chk(c) => fmt_chk(
                f,
                &c.key,
                &c.ueb_hash,
                c.needed_shares,
                c.total_shares,
                c.size,
            ),
            Cap::ChkVerifier(c) => fmt_chk(
                f,
                &c.storage_index,
                &c.ueb_hash,
                c.needed_shares,
                c.total_shares,
                c.size,
            ),
            Cap::Ssk(c) | Cap::Mdmf(c) => fmt_mutable(f, &c.writekey, &c.fingerprint),
            Cap::SskRo(c) | Cap::MdmfRo(c) => fmt_mutable(f, &c.readkey, &c.fingerprint),
            Cap::SskVerifier(c) | Cap::MdmfVerifier(c) => {
                fmt_mutable(f, &c.storage_index, &c.fingerprint)
            }
            // Not file caps; `Display` handles them without calling this.
            Cap::Dir(d) => d.inner.fmt_body(f),
            Cap::Unknown(s) => f.write_str(s),
        }
    }

    /// The body layout of this cap, or of the file cap inside a directory cap.
    fn layout(&self) -> Option<Body> {
        Some(match self {
            Cap::Lit(_) => Body::Lit,
            Cap::Chk(_) => Body::Chk,
            Cap::ChkVerifier(_) => Body::ChkVerifier,
            Cap::Ssk(_) => Body::Ssk,
            Cap::SskRo(_) => Body::SskRo,
            Cap::SskVerifier(_) => Body::SskVerifier,
            Cap::Mdmf(_) => Body::Mdmf,
            Cap::MdmfRo(_) => Body::MdmfRo,
            Cap::MdmfVerifier(_) => Body::MdmfVerifier,
            Cap::Dir(d) => return d.inner.layout(),
            Cap::Unknown(_) => return None,
        })
    }

    /// The kind's stable name, as used in JSON: the token after `URI:` (`"CHK"`,
    /// `"SSK-RO"`, `"DIR2-MDMF-Verifier"`, …), or `"unknown"`.
    pub fn kind(&self) -> &'static str {
        match (self, self.layout()) {
            (Cap::Dir(_), Some(b)) => b.dir_kind(),
            (_, Some(b)) => b.file_kind(),
            (_, None) => "unknown",
        }
    }

    /// The storage index of the file (or directory) the cap points to. `None` for literal
    /// caps (no shares are stored) and unknown caps.
    pub fn storage_index(&self) -> Option<[u8; KEY_LEN]> {
        match self {
            Cap::Lit(_) | Cap::Unknown(_) => None,
            Cap::Chk(c) => Some(c.storage_index()),
            Cap::ChkVerifier(c) => Some(c.storage_index),
            Cap::Ssk(c) | Cap::Mdmf(c) => Some(c.storage_index()),
            Cap::SskRo(c) | Cap::MdmfRo(c) => Some(c.storage_index()),
            Cap::SskVerifier(c) | Cap::MdmfVerifier(c) => Some(c.storage_index),
            Cap::Dir(d) => d.inner.storage_index(),
        }
    }

    /// `false` for caps that grant write access (SSK, MDMF, DIR2, DIR2-MDMF) and for
    /// unknown caps (nothing is known about them); `true` for every other kind, verifiers
    /// included (as in stock).
    pub fn is_readonly(&self) -> bool {
        self.layout().is_some_and(|b| !b.is_write())
    }

    /// `true` for mutable write and read caps (SSK, SSK-RO, MDMF, MDMF-RO and their
    /// directory forms). As in stock, verify caps are not mutable, even those of mutable
    /// files: use [`Cap::is_verifier`] and the kind to tell what a verifier points to.
    pub fn is_mutable(&self) -> bool {
        self.layout()
            .is_some_and(|b| b.is_write() || b.is_mutable_read())
    }

    /// `true` for `URI:DIR2*` caps.
    pub fn is_directory(&self) -> bool {
        matches!(self, Cap::Dir(_))
    }

    /// `true` for verify caps (`*-Verifier`), files and directories.
    pub fn is_verifier(&self) -> bool {
        matches!(
            self.layout(),
            Some(Body::ChkVerifier | Body::SskVerifier | Body::MdmfVerifier)
        )
    }

    /// `k` of CHK caps (files, directories, verifiers).
    pub fn needed_shares(&self) -> Option<u16> {
        match self {
            Cap::Chk(c) => Some(c.needed_shares),
            Cap::ChkVerifier(c) => Some(c.needed_shares),
            Cap::Dir(d) => d.inner.needed_shares(),
            _ => None,
        }
    }

    /// `N` of CHK caps (files, directories, verifiers).
    pub fn total_shares(&self) -> Option<u16> {
        match self {
            Cap::Chk(c) => Some(c.total_shares),
            Cap::ChkVerifier(c) => Some(c.total_shares),
            Cap::Dir(d) => d.inner.total_shares(),
            _ => None,
        }
    }

    /// The size in bytes, for caps that carry it: CHK, CHK-Verifier, LIT (its data length),
    /// and their directory forms (the size of the serialized directory). Mutable caps do
    /// not carry a size.
    pub fn size(&self) -> Option<u64> {
        match self {
            Cap::Lit(c) => Some(c.size()),
            Cap::Chk(c) => Some(c.size),
            Cap::ChkVerifier(c) => Some(c.size),
            Cap::Dir(d) => d.inner.size(),
            _ => None,
        }
    }

    /// Diminishes to a read cap: SSK → SSK-RO, MDMF → MDMF-RO, DIR2 → DIR2-RO, DIR2-MDMF →
    /// DIR2-MDMF-RO. Read caps (CHK, LIT, *-RO and their directory forms) and verify caps
    /// return themselves, as stock's `get_readonly` does. Unknown caps give `None` (stock:
    /// `UnknownURI.get_readonly()` is `None`).
    pub fn readonly(&self) -> Option<Cap> {
        match self {
            Cap::Ssk(c) => Some(Cap::SskRo(c.readonly())),
            Cap::Mdmf(c) => Some(Cap::MdmfRo(c.readonly())),
            Cap::Dir(d) => d.inner.readonly().map(DirCap::wrap),
            Cap::Unknown(_) => None,
            other => Some(other.clone()),
        }
    }

    /// Diminishes to a verify cap: CHK → CHK-Verifier, SSK/SSK-RO → SSK-Verifier,
    /// MDMF/MDMF-RO → MDMF-Verifier, each directory form to its `DIR2*-Verifier`. Verify
    /// caps return themselves. Literal caps (file or directory) and unknown caps have none.
    ///
    /// (Stock 1.20 returns itself for file verifiers and DIR2-Verifier, but its
    /// `get_verify_cap()` on DIR2-CHK-Verifier and DIR2-MDMF-Verifier builds an object that
    /// fails an assertion when printed; here they return themselves too.)
    pub fn verifier(&self) -> Option<Cap> {
        match self {
            Cap::Lit(_) | Cap::Unknown(_) => None,
            Cap::Chk(c) => Some(Cap::ChkVerifier(c.verifier())),
            Cap::Ssk(c) => Some(Cap::SskVerifier(c.verifier())),
            Cap::SskRo(c) => Some(Cap::SskVerifier(c.verifier())),
            Cap::Mdmf(c) => Some(Cap::MdmfVerifier(c.verifier())),
            Cap::MdmfRo(c) => Some(Cap::MdmfVerifier(c.verifier())),
            Cap::ChkVerifier(_) | Cap::SskVerifier(_) | Cap::MdmfVerifier(_) => Some(self.clone()),
            Cap::Dir(d) => d.inner.verifier().map(DirCap::wrap),
        }
    }
}

impl fmt::Debug for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, payload): (&str, &dyn fmt::Debug) = match self {
            Cap::Lit(c) => ("Lit", c),
            Cap::Chk(c) => ("Chk", c),
            Cap::ChkVerifier(c) => ("ChkVerifier", c),
            Cap::Ssk(c) => ("Ssk", c),
            Cap::SskRo(c) => ("SskRo", c),
            Cap::SskVerifier(c) => ("SskVerifier", c),
            Cap::Mdmf(c) => ("Mdmf", c),
            Cap::MdmfRo(c) => ("MdmfRo", c),
            Cap::MdmfVerifier(c) => ("MdmfVerifier", c),
            Cap::Dir(d) => ("Dir", d),
            Cap::Unknown(s) => {
                // An unknown cap may be a secret: show only its kind label and length.
                return f
                    .debug_struct("Unknown")
                    .field("label", &unknown_label(s))
                    .field("len", &s.len())
                    .finish_non_exhaustive();
            }
        };
        f.debug_tuple(name).field(payload).finish()
    }
}

/// The leading label of an unknown cap (`"URI:NEW-KIND"`, `"ro.x-tahoe-future-foo"`): for
/// strings starting (after a prefix) with `URI:` or `x-tahoe-`, the text up to the next
/// `:`, if that is short and made of label characters. Empty otherwise.
fn unknown_label(s: &str) -> &str {
    let (prefix, rest) = if let Some(r) = s.strip_prefix(IMMUTABLE_PREFIX) {
        (IMMUTABLE_PREFIX.len(), r)
    } else if let Some(r) = s.strip_prefix(READONLY_PREFIX) {
        (READONLY_PREFIX.len(), r)
    } else {
        (0, s)
    };
    let (skip, rest) = match rest.strip_prefix("URI:") {
        Some(r) => (4, r),
        None if rest.starts_with("x-tahoe-") => (0, rest),
        // Not a recognisable scheme: the first field might be a secret.
        None => return "",
    };
    let Some(end) = rest.find(':') else {
        return "";
    };
    let label = &rest[..end];
    let ok = label.len() <= 40
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { &s[..prefix + skip + end] } else { "" }
}

fn fmt_chk(
    f: &mut fmt::Formatter<'_>,
    first: &[u8; KEY_LEN],
    ueb_hash: &[u8; HASH_LEN],
    needed: u16,
    total: u16,
    size: u64,
) -> fmt::Result {
    write!(
        f,
        "{}:{}:{needed}:{total}:{size}",
        base32::encode(first),
        base32::encode(ueb_hash)
    )
}

fn fmt_mutable(
    f: &mut fmt::Formatter<'_>,
    key: &[u8; KEY_LEN],
    fingerprint: &[u8; HASH_LEN],
) -> fmt::Result {
    write!(f, "{}:{}", base32::encode(key), base32::encode(fingerprint))
}

/// Shows bytes as base32 in `Debug` output (only used for non-secret values).
struct B32<'a>(&'a [u8]);

impl fmt::Debug for B32<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", base32::encode(self.0))
    }
}

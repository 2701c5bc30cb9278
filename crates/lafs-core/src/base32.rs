//! Tahoe's base32: RFC 4648 alphabet in lower case, no padding, canonical trailing bits.
//!
//! A string whose unused trailing bits are not zero is rejected, so every value has exactly
//! one spelling (caps are compared as strings).

use data_encoding::{Encoding, Specification};
use std::sync::OnceLock;

fn encoding() -> &'static Encoding {
    static ENC: OnceLock<Encoding> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
        spec.check_trailing_bits = true;
        #[allow(clippy::expect_used)]
        spec.encoding()
            .expect("static base32 specification is valid")
    })
}

/// Why a base32 string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base32Error {
    /// A character outside `a-z2-7`.
    #[error("invalid base32 character {0:?} at position {1}")]
    BadCharacter(char, usize),
    /// A length no byte string encodes to.
    #[error("invalid base32 length {0}")]
    BadLength(usize),
    /// Unused trailing bits were not zero.
    #[error("non-canonical base32 (trailing bits are not zero)")]
    NonCanonical,
    /// Decoded to an unexpected number of bytes.
    #[error("expected {expected} bytes of base32, got {got}")]
    WrongSize {
        /// The size the field needs.
        expected: usize,
        /// The size it decoded to.
        got: usize,
    },
}

/// Encodes bytes as lower-case unpadded base32.
pub fn encode(data: &[u8]) -> String {
    encoding().encode(data)
}

/// Number of base32 characters that encode `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

/// Decodes lower-case unpadded base32, requiring canonical trailing bits.
pub fn decode(s: &str) -> Result<Vec<u8>, Base32Error> {
    let bytes = s.as_bytes();
    if let Some(pos) = bytes
        .iter()
        .position(|b| !matches!(b, b'a'..=b'z' | b'2'..=b'7'))
    {
        let ch = s[pos..].chars().next().unwrap_or('\u{fffd}');
        return Err(Base32Error::BadCharacter(ch, pos));
    }
    encoding().decode(bytes).map_err(|e| match e.kind {
        data_encoding::DecodeKind::Trailing => Base32Error::NonCanonical,
        data_encoding::DecodeKind::Length => Base32Error::BadLength(s.len()),
        _ => Base32Error::BadLength(s.len()),
    })
}

/// Decodes base32 that must hold exactly `N` bytes.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], Base32Error> {
    if s.len() != encoded_len(N) {
        return Err(Base32Error::WrongSize {
            expected: N,
            got: s.len() * 5 / 8,
        });
    }
    let v = decode(s)?;
    v.try_into().map_err(|v: Vec<u8>| Base32Error::WrongSize {
        expected: N,
        got: v.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(&[0u8; 16]), "aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(encode(b"hello"), "nbswy3dp");
        assert_eq!(decode("nbswy3dp").unwrap(), b"hello");
        assert_eq!(encoded_len(16), 26);
        assert_eq!(encoded_len(32), 52);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            decode("NBSWY3DP"),
            Err(Base32Error::BadCharacter('N', 0))
        ));
        assert!(matches!(
            decode("nbsw1"),
            Err(Base32Error::BadCharacter('1', 4))
        ));
        assert!(matches!(
            decode("nbswy3dp="),
            Err(Base32Error::BadCharacter('=', 8))
        ));
        // 26 chars for 16 bytes leave 2 unused bits; 'b' sets one of them.
        let mut s = encode(&[0u8; 16]);
        s.pop();
        s.push('b');
        assert_eq!(decode(&s), Err(Base32Error::NonCanonical));
        assert!(matches!(decode("a"), Err(Base32Error::BadLength(1))));
        assert!(matches!(
            decode_array::<16>("aaaa"),
            Err(Base32Error::WrongSize { expected: 16, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let s = encode(&data);
            prop_assert_eq!(s.len(), encoded_len(data.len()));
            prop_assert_eq!(decode(&s).unwrap(), data);
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = decode(&s);
        }
    }
}

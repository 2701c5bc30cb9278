//! Netstrings as Tahoe uses them: `b"%d:%s,"`.

/// Returns `len(s):s,`.
pub fn netstring(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 12);
    write_netstring(&mut out, s);
    out
}

/// Appends `len(s):s,` to `out`.
pub fn write_netstring(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
    out.push(b',');
}

/// Why a netstring could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetstringError {
    /// The length prefix is missing, too long or not decimal.
    #[error("malformed netstring length")]
    BadLength,
    /// The data ends before the declared length.
    #[error("netstring truncated")]
    Truncated,
    /// The data is not followed by `,`.
    #[error("netstring not terminated by ','")]
    MissingComma,
}

/// Splits one netstring off the front of `data`, returning its payload and the rest.
pub fn split_netstring(data: &[u8]) -> Result<(&[u8], &[u8]), NetstringError> {
    let colon = data
        .iter()
        .take(21)
        .position(|&b| b == b':')
        .ok_or(NetstringError::BadLength)?;
    let digits = &data[..colon];
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return Err(NetstringError::BadLength);
    }
    let len: usize = std::str::from_utf8(digits)
        .map_err(|_| NetstringError::BadLength)?
        .parse()
        .map_err(|_| NetstringError::BadLength)?;
    let rest = &data[colon + 1..];
    if rest.len() < len.saturating_add(1) {
        return Err(NetstringError::Truncated);
    }
    if rest[len] != b',' {
        return Err(NetstringError::MissingComma);
    }
    Ok((&rest[..len], &rest[len + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known() {
        assert_eq!(netstring(b""), b"0:,");
        assert_eq!(netstring(b"abc"), b"3:abc,");
        assert_eq!(
            split_netstring(b"3:abc,xy").unwrap(),
            (&b"abc"[..], &b"xy"[..])
        );
        assert_eq!(split_netstring(b"3:ab"), Err(NetstringError::Truncated));
        assert_eq!(
            split_netstring(b"3:abcd"),
            Err(NetstringError::MissingComma)
        );
        assert_eq!(split_netstring(b"x:"), Err(NetstringError::BadLength));
        assert_eq!(split_netstring(b"03:abc,"), Err(NetstringError::BadLength));
        assert_eq!(
            split_netstring(b"99999999999999999999:"),
            Err(NetstringError::BadLength)
        );
        assert_eq!(split_netstring(b"9999:ab,"), Err(NetstringError::Truncated));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..64), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut ns = netstring(&data);
            ns.extend_from_slice(&tail);
            let (a, b) = split_netstring(&ns).unwrap();
            prop_assert_eq!(a, &data[..]);
            prop_assert_eq!(b, &tail[..]);
        }
    }
}

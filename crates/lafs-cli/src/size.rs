//! Human sizes with Tahoe's rules (`parse_abbreviated_size`): `1048576`, `128KiB`, `5GB`,
//! `100MiB`, `1G`. K, M, G, T, P, E (optionally followed by B) are powers of 1000; KiB, MiB,
//! GiB, TiB, PiB, EiB are powers of 1024. Case-insensitive; a space before the unit is allowed.

/// Parses a byte count (the rules of `tahoe.cfg`, shared with the node configuration).
pub fn parse_size(s: &str) -> Result<u64, String> {
    lafs_node::config::parse_abbreviated_size(s).map_err(|e| format!("invalid size {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_follow_tahoe() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("128KiB"), Ok(128 << 10));
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("1k"), Ok(1000));
        assert_eq!(parse_size("2 kb"), Ok(2000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000TiB").is_err());
    }
}

//! Human sizes with Tahoe's rules (`parse_abbreviated_size`): `1048576`, `128KiB`, `5GB`,
//! `100MiB`, `1G`. K, M, G, T, P, E (optionally followed by B) are powers of 1000; KiB, MiB,
//! GiB, TiB, PiB, EiB are powers of 1024. Case-insensitive; a space before the unit is allowed.

/// Parses a byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid size {s:?}: expected a number like 100MiB or 5GB"
        ));
    }
    let mut unit = unit.trim().to_ascii_uppercase();
    if unit.ends_with('B') {
        unit.pop();
    }
    let mult: u64 = match unit.as_str() {
        "" | "I" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "KI" => 1 << 10,
        "MI" => 1 << 20,
        "GI" => 1 << 30,
        "TI" => 1 << 40,
        "PI" => 1 << 50,
        "EI" => 1 << 60,
        _ => return Err(format!("invalid size {s:?}: unknown unit")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
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

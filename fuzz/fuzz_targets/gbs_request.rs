//! The request line and headers a GBS server parses before anything else: method + path into
//! an endpoint, secrets headers, Range and Content-Range. No panic; accepted values are
//! consistent (an endpoint's own path parses back to it).
#![no_main]

use lafs_protocol::{ByteRange, ContentRange, Endpoint, SecretKind, Secrets};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let methods = [
        http::Method::GET,
        http::Method::POST,
        http::Method::PUT,
        http::Method::PATCH,
        http::Method::HEAD,
        http::Method::DELETE,
    ];
    let method = &methods[usize::from(data[0]) % methods.len()];
    let rest = &data[1..];
    if let Ok(path) = std::str::from_utf8(rest) {
        if let Ok(ep) = Endpoint::parse(method, path) {
            let again = Endpoint::parse(&ep.method(), &ep.path()).expect("own path parses");
            assert_eq!(again, ep);
        }
    }
    let _ = ByteRange::parse(rest);
    if let Ok(cr) = ContentRange::parse(rest) {
        assert!(cr.len() > 0 || cr.is_empty());
    }
    // Header values split on newlines, as repeated X-Tahoe-Authorization headers.
    let values: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    let kinds = [
        SecretKind::LeaseRenew,
        SecretKind::LeaseCancel,
        SecretKind::Upload,
        SecretKind::WriteEnabler,
    ];
    let required: Vec<SecretKind> = kinds
        .iter()
        .enumerate()
        .filter(|(i, _)| data[0] & (1 << i) != 0)
        .map(|(_, k)| *k)
        .collect();
    if let Ok(s) = Secrets::parse(values.iter().copied(), &required) {
        for k in &required {
            assert!(s.has(*k));
        }
    }
});

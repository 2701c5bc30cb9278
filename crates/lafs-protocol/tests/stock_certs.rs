//! SPKI hashes and tub ids of real certificates, compared with what stock computes.
//!
//! `tests/data/stock-node-cert.pem` is the certificate from `private/node.pem` of a node made
//! by stock Tahoe-LAFS 1.20 (`tahoe create-node --port tcp:47999 --location
//! tcp:127.0.0.1:47999`, then run once: stock writes `node.pem` on first start). Stock
//! recorded the tub id in `my_nodeid` and the FURL below in `private/storage.furl`; the SPKI
//! hash and NURL are what `allmydata.storage.http_common.get_spki_hash` and
//! `http_server.build_nurl` return for it. The other two certificates and all expected values
//! come from `tests/stock/gen_certs.py` (stock's `get_spki_hash`, foolscap's `digest32` of the
//! SHA-1 digest).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_protocol::{
    CertError, Furl, Nurl, SpkiHash, TubId, pem_blocks, pem_certificate_der, spki_der_from_cert_der,
};

const STOCK_PEM: &[u8] = include_bytes!("data/stock-node-cert.pem");
const EC_PEM: &[u8] = include_bytes!("data/ec-p256-cert.pem");
const ED25519_PEM: &[u8] = include_bytes!("data/ed25519-cert.pem");

/// `get_spki(cert)` of the stock node certificate (an RSA-2048 key).
const STOCK_SPKI_DER_HEX: &str = "30820122300d06092a864886f70d01010105000382010f003082010a0282010100\
    9958d1ed5e06f46cc30fe423ef3c4f918eea15cd1131180e24c54d193f19a2008557a31ab9b77cb4b3b815436a1421\
    6119ac5d0b3fe4feffa69ddd0b62e28263e46618770eb22f41e170347c4f34b70cb278413bb1723dadfef3caca41d2\
    e86c66bf998e60766771154e7a937d84a8a923fb9c029ce2020bc0d70f89f367c66cb5108267513153de631e44317d\
    7fb2c8b4469434d22ca69c549b88be7b07d0a1d9d02bda46dfc9933be1580a802f8f91c7e9583f4fc5ee081bf5bf67\
    76872c2fa982d3616870aaa244cd2f08d0b75b1cc822b168baeb07b995bb020e80cde089958d00c11cdc97ea324cba\
    4da33ae923cd1347723d7063a66941c176fa5c25050203010001";

#[test]
fn stock_node_certificate() {
    let der = pem_certificate_der(STOCK_PEM).unwrap();
    assert_eq!(der.len(), 678);
    assert_eq!(
        hex::encode(spki_der_from_cert_der(&der).unwrap()),
        STOCK_SPKI_DER_HEX
    );
    let spki = SpkiHash::of_cert_der(&der).unwrap();
    assert_eq!(
        spki.to_string(),
        "Xok43PpKFfFU7DXowRCewMJ2UMoevoSgRPvTOa3N8oU"
    );
    let tubid = TubId::of_cert_der(&der).unwrap();
    assert_eq!(tubid.to_string(), "4fjr4zgdclfvnxjiir2smepzevanrstv");

    // private/storage.furl of that node, and the NURL stock builds for it.
    let furl: Furl =
        "pb://4fjr4zgdclfvnxjiir2smepzevanrstv@tcp:127.0.0.1:47999/g44v5ghvq7fx65wsuvuhuyrgjioef6rw"
            .parse()
            .unwrap();
    assert_eq!(furl.tubid, tubid);
    let nurls = furl.nurls(spki);
    assert_eq!(
        nurls.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "pb://Xok43PpKFfFU7DXowRCewMJ2UMoevoSgRPvTOa3N8oU@127.0.0.1:47999/g44v5ghvq7fx65wsuvuhuyrgjioef6rw#v=1"
        ]
    );
    // build_nurl("::1", ...) as hyperlink writes it.
    let v6: Nurl = "pb://Xok43PpKFfFU7DXowRCewMJ2UMoevoSgRPvTOa3N8oU@[::1]:47999/g44v5ghvq7fx65wsuvuhuyrgjioef6rw#v=1"
        .parse()
        .unwrap();
    assert_eq!(v6.spki_hash, spki);
    assert_eq!(v6.host, "::1");
}

#[test]
fn node_pem_with_key() {
    // A stock node.pem holds the certificate, then the private key. Stand in a dummy key.
    let mut node_pem = STOCK_PEM.to_vec();
    node_pem
        .extend_from_slice(b"-----BEGIN PRIVATE KEY-----\nAAECAw==\n-----END PRIVATE KEY-----\n");
    let blocks = pem_blocks(&node_pem).unwrap();
    assert_eq!(
        blocks.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(),
        ["CERTIFICATE", "PRIVATE KEY"]
    );
    assert!(!format!("{blocks:?}").contains("AAECAw"));
    assert_eq!(
        pem_certificate_der(&node_pem).unwrap(),
        pem_certificate_der(STOCK_PEM).unwrap()
    );
    // Key first works too.
    let mut key_first =
        b"-----BEGIN PRIVATE KEY-----\nAAECAw==\n-----END PRIVATE KEY-----\n".to_vec();
    key_first.extend_from_slice(STOCK_PEM);
    assert_eq!(
        pem_certificate_der(&key_first).unwrap(),
        pem_certificate_der(STOCK_PEM).unwrap()
    );
}

#[test]
fn other_key_types() {
    for (pem, spki, tubid) in [
        (
            EC_PEM,
            "t68O8GV6O81A17IvRMmeFY0Z_xEK2bTc8wjMA6vJIE0",
            "a7lzww2neib4s2djwas2vns2rzr4ohgk",
        ),
        (
            ED25519_PEM,
            "lkm4eJ72JYbuKZ-cEhVHItANbtoR0U3h2a8SNZQF5_Y",
            "555yn5enute6ofegzhajhyyaytv6k7qb",
        ),
    ] {
        let der = pem_certificate_der(pem).unwrap();
        assert_eq!(SpkiHash::of_cert_der(&der).unwrap().to_string(), spki);
        assert_eq!(TubId::of_cert_der(&der).unwrap().to_string(), tubid);
    }
}

/// Minimal DER encoding of one element (for rebuilding test certificates).
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match contents.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(contents);
    out
}

/// Splits a DER SEQUENCE's contents into its elements.
fn elements(mut contents: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !contents.is_empty() {
        let (len, header) = match contents[1] {
            n @ 0..=0x7f => (usize::from(n), 2),
            0x81 => (usize::from(contents[2]), 3),
            0x82 => (
                (usize::from(contents[2]) << 8) | usize::from(contents[3]),
                4,
            ),
            _ => unreachable!(),
        };
        out.push(&contents[..header + len]);
        contents = &contents[header + len..];
    }
    out
}

fn contents(element: &[u8]) -> &[u8] {
    match element[1] {
        0..=0x7f => &element[2..],
        0x81 => &element[3..],
        0x82 => &element[4..],
        _ => unreachable!(),
    }
}

#[test]
fn version_field_is_optional() {
    // Foolscap makes version 1 certificates: no `[0] version` field. The P-256 certificate
    // (made by `cryptography`) is version 3 and has it. Add one to the stock certificate too.
    let cert = pem_certificate_der(STOCK_PEM).unwrap();
    let top = elements(contents(&cert));
    let tbs = elements(contents(top[0]));
    assert_eq!(
        tbs[0][0], 0x02,
        "the stock certificate starts with its serial number"
    );
    let ec = pem_certificate_der(EC_PEM).unwrap();
    assert_eq!(elements(contents(elements(contents(&ec))[0]))[0][0], 0xa0);

    let version = der(0xa0, &der(0x02, &[2]));
    let tbs_v3 = der(0x30, &[version.as_slice(), &tbs.concat()].concat());
    let cert_v3 = der(0x30, &[tbs_v3.as_slice(), top[1], top[2]].concat());
    assert_eq!(
        hex::encode(spki_der_from_cert_der(&cert_v3).unwrap()),
        STOCK_SPKI_DER_HEX
    );
}

#[test]
fn malformed_certificates() {
    let cert = pem_certificate_der(STOCK_PEM).unwrap();
    // Every truncation fails cleanly.
    for len in 0..cert.len() {
        assert!(spki_der_from_cert_der(&cert[..len]).is_err(), "{len}");
    }
    let mut trailing = cert.clone();
    trailing.push(0);
    assert!(matches!(
        spki_der_from_cert_der(&trailing),
        Err(CertError::BadDer(_))
    ));
    // Swapping subject and SPKI (fields 4 and 5 of a version 1 certificate) breaks the shape.
    let top = elements(contents(&cert));
    let tbs = elements(contents(top[0]));
    let mut swapped: Vec<&[u8]> = tbs.clone();
    swapped.swap(4, 5);
    let bad = der(
        0x30,
        &[der(0x30, &swapped.concat()).as_slice(), top[1], top[2]].concat(),
    );
    assert!(spki_der_from_cert_der(&bad).is_err());
    // The PEM text itself is not DER.
    assert!(TubId::of_cert_der(STOCK_PEM).is_err());
    assert!(SpkiHash::of_cert_der(STOCK_PEM).is_err());
}

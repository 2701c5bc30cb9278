//! Identity files: ours round-trip, and stock Tahoe's are read the way stock reads them.
//! `tests/data/stock-*` were written by a stock Tahoe-LAFS 1.20 node on its first start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_node::identity::{NodeKey, TlsIdentity, write_private};
use std::path::Path;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn stock_node_pem_gives_stock_tubid() {
    let id = TlsIdentity::load(&data("stock-node.pem")).unwrap();
    // The tub id in the stock node's storage FURL.
    let furl = std::fs::read_to_string(data("stock-storage.furl")).unwrap();
    let tubid = furl
        .trim()
        .strip_prefix("pb://")
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    assert_eq!(id.tubid(), tubid);
    assert_eq!(id.tubid().len(), 32);
    assert!(!format!("{id:?}").contains("PRIVATE"));
}

#[test]
fn stock_ed25519_key_gives_stock_pubkey_and_seed() {
    let path = data("stock-node.privkey");
    let key = NodeKey::parse_private(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    let pubkey = std::fs::read_to_string(data("stock-node.pubkey")).unwrap();
    assert_eq!(key.public_string(), pubkey.trim());
    let seed = std::fs::read_to_string(data("stock-permutation-seed")).unwrap();
    assert_eq!(key.permutation_seed_base32(), seed.trim());
    assert!(NodeKey::parse_private("priv-v1-abc", &path).is_err());
    assert!(NodeKey::parse_private("priv-v0-notbase32!", &path).is_err());
}

#[test]
fn generated_identity_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let id = TlsIdentity::generate().unwrap();
    let path = dir.path().join("node.pem");
    write_private(&path, id.to_pem().as_bytes()).unwrap();
    let back = TlsIdentity::load(&path).unwrap();
    assert_eq!(back.cert_der, id.cert_der);
    assert_eq!(back.key_der, id.key_der);
    assert_eq!(back.tubid(), id.tubid());
    assert_eq!(back.spki_hash().unwrap(), id.spki_hash().unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(text.contains("-----BEGIN PRIVATE KEY-----\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "node.pem must be private");
    }
    // Two generated identities differ.
    assert_ne!(TlsIdentity::generate().unwrap().tubid(), id.tubid());
}

#[test]
fn corrupt_pem_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.pem");
    std::fs::write(&path, "not a pem").unwrap();
    let e = TlsIdentity::load(&path).unwrap_err().to_string();
    assert!(e.contains("node.pem"), "{e}");
    std::fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(TlsIdentity::load(&path).is_err());
}

//! Accounts over real TLS: a client presenting an ed25519 self-signed certificate acts for the
//! account of that key (created on first use, or refused by policy); a client without one acts
//! for the anonymous account; other key types fail the handshake. Usage per account is exact,
//! and control (disable, quota) applies at the next request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_protocol::{AllocateRequest, CborBody, SecretKind, ShareNum, Swissnum};
use lafs_storage::backend::disk::DiskBackend;
use lafs_storage::frontend::{self, Frontend, Limits, account_key_of_cert};
use lafs_storage::leasedb::{AccountId, LeaseDbHandle, OpenOptions};
use lafs_storage::server::{ServerConfig, StorageServer, SystemClock};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SWISSNUM: &str = "abcdefghijklmnopqrstuvwxyz234567";

/// The test trusts the server it started (pinning is tested elsewhere).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client identity: a self-signed certificate for a fresh key of `alg`.
fn identity(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

fn client(id: Option<&(Vec<u8>, Vec<u8>)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut cfg = match id {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.clone())],
                PrivateKeyDer::Pkcs8(key.clone().into()),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Allocates shares 0..n of `size` bytes at storage index `[si; 16]`; returns the status.
async fn allocate(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    si: u8,
    n: u8,
    size: u64,
) -> std::io::Result<u16> {
    let tcp = TcpStream::connect(addr).await?;
    let mut s = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let body = AllocateRequest {
        share_numbers: (0..n).map(ShareNum::new).collect(),
        allocated_size: size,
    }
    .encode();
    let si_s = lafs_protocol::StorageIndex::from_bytes([si; 16]).to_string();
    let swiss: Swissnum = SWISSNUM.parse().unwrap();
    let mut req = format!(
        "POST /storage/v1/immutable/{si_s} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n",
        lafs_protocol::authorization_header_value(&swiss)
    );
    for (kind, v) in [
        (SecretKind::LeaseRenew, [1u8; 32].as_slice()),
        (SecretKind::LeaseCancel, &[2u8; 32]),
        (SecretKind::Upload, &[3u8; 32]),
    ] {
        req.push_str(&format!(
            "X-Tahoe-Authorization: {}\r\n",
            kind.header_value(v)
        ));
    }
    req.push_str(&format!(
        "Content-Type: application/cbor\r\nAccept: application/cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).await?;
    s.write_all(&body).await?;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

async fn start(accept_unknown_keys: bool) -> (tempfile::TempDir, Arc<StorageServer>, SocketAddr) {
    let root = tempfile::tempdir().unwrap();
    let db = LeaseDbHandle::open_sqlite(
        &root.path().join("leasedb.sqlite"),
        1_700_000_000,
        OpenOptions::default(),
    )
    .await
    .unwrap();
    let backend = Arc::new(DiskBackend::open(root.path().join("storage")).unwrap());
    let cfg = ServerConfig {
        accept_unknown_keys,
        ..ServerConfig::default()
    };
    let server = Arc::new(StorageServer::new(backend, db, cfg, Arc::new(SystemClock)));
    server.startup().await.unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = frontend::tls_config(ck.cert.der(), &ck.signing_key.serialize_der()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fe = Arc::new(Frontend::new(
        server.clone(),
        SWISSNUM.parse().unwrap(),
        Limits::default(),
    ));
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(frontend::serve(
        listener,
        tls,
        fe,
        rx,
        Duration::from_secs(1),
    ));
    std::mem::forget(stop); // served until the runtime ends with the test
    (root, server, addr)
}

#[tokio::test]
async fn client_keys_select_accounts_and_usage_is_exact() {
    let (_root, server, addr) = start(true).await;
    let db = server.leasedb().clone();
    let alice = identity(&rcgen::PKCS_ED25519);
    let bob = identity(&rcgen::PKCS_ED25519);
    let alice_key = account_key_of_cert(&alice.0).unwrap();
    assert!(alice_key.starts_with("pub-v0-"), "{alice_key}");
    assert_eq!(
        allocate(addr, &client(Some(&alice)), 1, 2, 100)
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        allocate(addr, &client(Some(&bob)), 2, 3, 70).await.unwrap(),
        200
    );
    assert_eq!(allocate(addr, &client(None), 3, 1, 5).await.unwrap(), 200);
    // Alice again: same account, more shares.
    assert_eq!(
        allocate(addr, &client(Some(&alice)), 4, 1, 11)
            .await
            .unwrap(),
        200
    );
    let a = db.get_account_by_pubkey(alice_key).await.unwrap().unwrap();
    let b = db
        .get_account_by_pubkey(account_key_of_cert(&bob.0).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(a.id, b.id);
    assert!(a.last_seen.is_some(), "last seen is recorded");
    let usage = |id| {
        let db = db.clone();
        async move { db.account_usage(id).await.unwrap() }
    };
    assert_eq!(
        (usage(a.id).await.used_space, usage(a.id).await.leases),
        (211, 3)
    );
    assert_eq!(
        (usage(b.id).await.used_space, usage(b.id).await.leases),
        (210, 3)
    );
    assert_eq!(usage(AccountId::ANONYMOUS).await.used_space, 5);
    // A quota on bob refuses the allocation that would cross it; disabling alice refuses hers;
    // disabling anonymous refuses clients without a key (stock Tahoe clients).
    db.set_account_quota(b.id, Some(250)).await.unwrap();
    assert_eq!(
        allocate(addr, &client(Some(&bob)), 5, 1, 50).await.unwrap(),
        403
    );
    assert_eq!(usage(b.id).await.used_space, 210, "nothing half-stored");
    db.set_account_enabled(a.id, false).await.unwrap();
    assert_eq!(
        allocate(addr, &client(Some(&alice)), 6, 1, 1)
            .await
            .unwrap(),
        403
    );
    db.set_account_enabled(AccountId::ANONYMOUS, false)
        .await
        .unwrap();
    assert_eq!(allocate(addr, &client(None), 7, 1, 1).await.unwrap(), 403);
    assert_eq!(
        allocate(addr, &client(Some(&bob)), 8, 1, 10).await.unwrap(),
        200
    );
    // A non-ed25519 client certificate fails the handshake (never silently anonymous).
    let ecdsa = identity(&rcgen::PKCS_ECDSA_P256_SHA256);
    assert!(account_key_of_cert(&ecdsa.0).is_none());
    let r = allocate(addr, &client(Some(&ecdsa)), 9, 1, 1).await;
    assert!(!matches!(r, Ok(200)), "{r:?}");
}

#[tokio::test]
async fn unknown_keys_can_be_refused() {
    let (_root, server, addr) = start(false).await;
    let carol = identity(&rcgen::PKCS_ED25519);
    assert_eq!(
        allocate(addr, &client(Some(&carol)), 1, 1, 10)
            .await
            .unwrap(),
        403
    );
    assert_eq!(server.leasedb().list_accounts().await.unwrap().len(), 2);
    // Added by the operator, the key is accepted.
    server
        .leasedb()
        .create_account(account_key_of_cert(&carol.0), "carol".into(), 1)
        .await
        .unwrap();
    assert_eq!(
        allocate(addr, &client(Some(&carol)), 1, 1, 10)
            .await
            .unwrap(),
        200
    );
    assert_eq!(allocate(addr, &client(None), 2, 1, 10).await.unwrap(), 200);
}

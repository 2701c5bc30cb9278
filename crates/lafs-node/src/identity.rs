//! A node's long-lived identity, in stock Tahoe's file formats so a node directory can move
//! between stock Tahoe and lafs in either direction:
//! - `private/node.pem`: self-signed RSA-2048 TLS certificate (CN `newpb_thingy`) followed by
//!   its PKCS#8 private key. The tub id is base32(SHA-1(certificate DER)) and the GBS NURL
//!   pins SHA-256 of the certificate's SubjectPublicKeyInfo.
//! - `private/node.privkey` (`priv-v0-<b32 seed>`), `node.pubkey` (`pub-v0-<b32 key>`): the
//!   ed25519 node key; the server id is `v0-<b32 key>`.
//! - `my_nodeid` (the tub id), `permutation-seed` (base32 of the ASCII base32 public key).
//! - `private/secret` (lease secret) and `private/convergence`: base32 of 32 random bytes.
//! - `private/storage.furl`: `pb://<tubid>@<location>/<swissnum>`; the swissnum authorizes
//!   storage requests.
//!
//! Every file is written with [`write_private`]: temp file, fsync, rename, fsync directory.

use lafs_core::base32;
use std::fs;
use std::io::Write;
use std::path::Path;

/// Why an identity file could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file exists but is not in the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong (never the secret itself).
        message: String,
    },
    /// Key or certificate generation failed.
    #[error("cannot generate keys: {0}")]
    Generate(String),
}

fn io_err(path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn format_err(path: &Path, message: impl Into<String>) -> IdentityError {
    IdentityError::Format {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Fills a buffer from the OS random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| IdentityError::Generate(e.to_string()))?;
    Ok(b)
}

/// Writes `data` to `path` durably and readable only by the owner: temp file, fsync,
/// rename, fsync of the directory.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), IdentityError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A name of its own per writer: two processes (say `lafs run` and `lafs storage
    // announcement` on a fresh node) may write the same file at once; each rename is atomic.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(data).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// The TLS identity: certificate and private key DER.
#[derive(Clone)]
pub struct TlsIdentity {
    /// Certificate, DER.
    pub cert_der: Vec<u8>,
    /// Private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsIdentity {{ tubid: {} }}", self.tubid())
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl TlsIdentity {
    /// A new RSA-2048 key and self-signed certificate like the ones stock Tahoe makes.
    pub fn generate() -> Result<Self, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "newpb_thingy");
        params.distinguished_name = dn;
        // Clients check only the SPKI pin, never validity; use a long one anyway.
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2999, 1, 1);
        let serial: [u8; 8] = random_bytes()?;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params
            .self_signed(&key)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    /// `node.pem` text: certificate, then private key (stock's order).
    pub fn to_pem(&self) -> String {
        format!(
            "{}{}",
            pem("CERTIFICATE", &self.cert_der),
            pem("PRIVATE KEY", &self.key_der)
        )
    }

    /// Reads `node.pem` (stock's or ours).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = fs::read(path).map_err(|e| io_err(path, e))?;
        let blocks = lafs_protocol::pem_blocks(&text)
            .map_err(|e| format_err(path, format!("not PEM: {e}")))?;
        let mut cert_der = None;
        let mut key_der = None;
        for b in blocks {
            match b.label.as_str() {
                "CERTIFICATE" if cert_der.is_none() => cert_der = Some(b.der),
                "PRIVATE KEY" if key_der.is_none() => key_der = Some(b.der),
                _ => {}
            }
        }
        let cert_der = cert_der.ok_or_else(|| format_err(path, "no CERTIFICATE block"))?;
        let key_der = key_der.ok_or_else(|| format_err(path, "no PRIVATE KEY block"))?;
        lafs_protocol::spki_der_from_cert_der(&cert_der)
            .map_err(|e| format_err(path, format!("bad certificate: {e}")))?;
        Ok(Self { cert_der, key_der })
    }

    /// The Foolscap tub id: base32(SHA-1(certificate DER)), 32 characters.
    pub fn tubid(&self) -> String {
        base32::encode(&self.tubid_bytes())
    }

    /// The 20 bytes of the tub id (seeds clients' lease secrets and write enablers).
    pub fn tubid_bytes(&self) -> [u8; 20] {
        use sha1::Digest;
        sha1::Sha1::digest(&self.cert_der).into()
    }

    /// The SPKI hash clients pin (unpadded URL-safe base64 of SHA-256 of the SPKI DER).
    pub fn spki_hash(&self) -> Result<lafs_protocol::SpkiHash, IdentityError> {
        lafs_protocol::SpkiHash::of_cert_der(&self.cert_der)
            .map_err(|e| IdentityError::Generate(e.to_string()))
    }
}

/// The ed25519 node key (server id `v0-<b32 public key>`).
#[derive(Clone)]
pub struct NodeKey {
    seed: [u8; 32],
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.server_id())
    }
}

impl NodeKey {
    /// A new random key.
    pub fn generate() -> Result<Self, IdentityError> {
        Ok(Self {
            seed: random_bytes()?,
        })
    }

    /// Parses `priv-v0-<b32>`.
    pub fn parse_private(text: &str, path: &Path) -> Result<Self, IdentityError> {
        let b32 = text
            .trim()
            .strip_prefix("priv-v0-")
            .ok_or_else(|| format_err(path, "expected priv-v0-..."))?;
        let seed = base32::decode_array::<32>(b32)
            .map_err(|_| format_err(path, "malformed ed25519 private key"))?;
        Ok(Self { seed })
    }

    /// `priv-v0-<b32 seed>`.
    pub fn private_string(&self) -> String {
        format!("priv-v0-{}", base32::encode(&self.seed))
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&self.seed)
            .verifying_key()
            .to_bytes()
    }

    /// `v0-<b32 public key>`: the server id clients use.
    pub fn server_id(&self) -> String {
        format!("v0-{}", base32::encode(&self.public_key()))
    }

    /// `pub-v0-<b32 public key>` as in `node.pubkey`.
    pub fn public_string(&self) -> String {
        format!("pub-{}", self.server_id())
    }

    /// What stock announces as `permutation-seed-base32`: base32 of the ASCII base32 public
    /// key (the server id without its `v0-` prefix).
    pub fn permutation_seed_base32(&self) -> String {
        base32::encode(base32::encode(&self.public_key()).as_bytes())
    }
}

/// A 32-character base32 swissnum (160 random bits), as Foolscap makes them.
pub fn new_swissnum() -> Result<String, IdentityError> {
    Ok(base32::encode(&random_bytes::<20>()?))
}

/// base32 of 32 random bytes plus a newline: `private/secret` and `private/convergence`.
pub fn new_secret_file() -> Result<String, IdentityError> {
    Ok(format!("{}\n", base32::encode(&random_bytes::<32>()?)))
}

/// Loads the file at `path` with `parse`, or creates it with `make` (written privately).
pub fn load_or_create<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, IdentityError>,
    make: impl FnOnce() -> Result<(T, String), IdentityError>,
) -> Result<T, IdentityError> {
    match fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (value, text) = make()?;
            write_private(path, text.as_bytes())?;
            Ok(value)
        }
        Err(e) => Err(io_err(path, e)),
    }
}

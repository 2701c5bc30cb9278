//! The client's account key: an ed25519 key in `private/account_key.pem`, presented to lafs
//! storage servers as a self-signed TLS client certificate. A lafs server files the client's
//! leases, usage and quota under that key (`pub-v0-<base32 public key>`, the form operators
//! pass to `lafs storage accounts add --pubkey`); stock servers ignore client certificates.
//!
//! The file is made on first use (0600, written durably). Its first line names the format and
//! its version (`lafs account key v1`), the rest is the PKCS#8 private key in PEM. Setting
//! `[client] account = anonymous` in `tahoe.cfg` presents no certificate: the client then uses
//! every server's anonymous account, as stock clients do.

use crate::identity::{IdentityError, load_or_create};
use lafs_client::ClientIdentity;
use std::path::{Path, PathBuf};

/// First line of the key file: the format and its version.
const MAGIC: &str = "lafs account key v1";

/// The key file, relative to the node directory.
pub const ACCOUNT_KEY_FILE: &str = "private/account_key.pem";

/// A client's account key.
pub struct AccountKey {
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccountKey({})", self.public_id())
    }
}

fn format_err(path: &Path, message: &str) -> IdentityError {
    IdentityError::Format {
        path: path.display().to_string(),
        message: message.to_owned(),
    }
}

impl AccountKey {
    /// The path of the key file of node directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(ACCOUNT_KEY_FILE)
    }

    /// Reads the node's account key, creating it the first time.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let path = Self::path(dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| IdentityError::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        load_or_create(
            &path,
            |text| Self::parse(&path, text),
            || {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                    .map_err(|e| IdentityError::Generate(e.to_string()))?;
                let text = format!("{MAGIC}\n{}", key.serialize_pem());
                Ok((AccountKey { key }, text))
            },
        )
    }

    /// Reads the node's account key; `None` if it has none yet.
    pub fn load(dir: &Path) -> Result<Option<Self>, IdentityError> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(IdentityError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, IdentityError> {
        let Some((first, rest)) = text.split_once('\n') else {
            return Err(format_err(path, "empty or truncated account key file"));
        };
        if first.trim() != MAGIC {
            return Err(format_err(
                path,
                &format!("not a lafs account key (its first line must be `{MAGIC}`)"),
            ));
        }
        let key = rcgen::KeyPair::from_pem(rest)
            .map_err(|_| format_err(path, "malformed private key"))?;
        if !key.is_compatible(&rcgen::PKCS_ED25519) {
            return Err(format_err(path, "the account key must be an ed25519 key"));
        }
        Ok(AccountKey { key })
    }

    /// The account's id on lafs servers: `pub-v0-` + base32 of the raw public key.
    pub fn public_id(&self) -> String {
        format!(
            "pub-v0-{}",
            lafs_core::base32::encode(self.key.public_key_raw())
        )
    }

    /// A fresh self-signed certificate for the key, as the TLS client identity.
    pub fn identity(&self) -> Result<ClientIdentity, IdentityError> {
        let params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&self.key)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(ClientIdentity {
            cert_der: cert.der().to_vec(),
            key_der: self.key.serialize_der(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_reloaded_identically() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AccountKey::load(dir.path()).unwrap().is_none());
        let a = AccountKey::load_or_create(dir.path()).unwrap();
        let id = a.public_id();
        assert!(id.starts_with("pub-v0-") && id.len() == 7 + 52, "{id}");
        let b = AccountKey::load_or_create(dir.path()).unwrap();
        assert_eq!(b.public_id(), id);
        let text = std::fs::read_to_string(AccountKey::path(dir.path())).unwrap();
        assert!(text.starts_with("lafs account key v1\n-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(AccountKey::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The certificate carries the key the server turns into the same account id.
        let ident = a.identity().unwrap();
        assert_eq!(
            lafs_storage::frontend::account_key_of_cert(&ident.cert_der).as_deref(),
            Some(id.as_str())
        );
        // Another node's key is another account.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            AccountKey::load_or_create(other.path())
                .unwrap()
                .public_id(),
            id
        );
    }

    #[test]
    fn bad_files_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("private")).unwrap();
        let path = AccountKey::path(dir.path());
        for (text, want) in [
            ("", "empty"),
            (
                "something else\nsecret-material\n",
                "not a lafs account key",
            ),
            (
                "lafs account key v1\nsecret-material\n",
                "malformed private key",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = AccountKey::load_or_create(dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("secret-material"), "{e}");
            // Nothing was overwritten.
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }
}

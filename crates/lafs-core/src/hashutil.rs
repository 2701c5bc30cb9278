//! Tahoe's tagged SHA-256d hashes and the key derivations built on them.
//!
//! `tagged_hash(tag, val) = SHA256(SHA256(netstring(tag) || val))`, truncated where a
//! derivation says so. Only the tag is netstring-framed.

use crate::netstring::{netstring, write_netstring};
use sha2::{Digest, Sha256};

/// Length of a full hash.
pub const HASH_LEN: usize = 32;
/// Length of AES keys, storage indexes and other 128-bit values.
pub const KEY_LEN: usize = 16;

/// Every tag Tahoe uses, by purpose.
#[allow(missing_docs)]
pub mod tags {
    pub const STORAGE_INDEX: &[u8] = b"allmydata_immutable_key_to_storage_index_v1";
    pub const CONVERGENT_ENCRYPTION: &[u8] =
        b"allmydata_immutable_content_to_key_with_added_secret_v1+";
    pub const BLOCK: &[u8] = b"allmydata_encoded_subshare_v1";
    pub const UEB: &[u8] = b"allmydata_uri_extension_v1";
    pub const CRYPTTEXT: &[u8] = b"allmydata_crypttext_v1";
    pub const CRYPTTEXT_SEGMENT: &[u8] = b"allmydata_crypttext_segment_v1";
    pub const CLIENT_RENEWAL: &[u8] = b"allmydata_client_renewal_secret_v1";
    pub const CLIENT_CANCEL: &[u8] = b"allmydata_client_cancel_secret_v1";
    pub const FILE_RENEWAL: &[u8] = b"allmydata_file_renewal_secret_v1";
    pub const FILE_CANCEL: &[u8] = b"allmydata_file_cancel_secret_v1";
    pub const BUCKET_RENEWAL: &[u8] = b"allmydata_bucket_renewal_secret_v1";
    pub const BUCKET_CANCEL: &[u8] = b"allmydata_bucket_cancel_secret_v1";
    pub const MUTABLE_WRITEKEY: &[u8] = b"allmydata_mutable_privkey_to_writekey_v1";
    pub const MUTABLE_READKEY: &[u8] = b"allmydata_mutable_writekey_to_readkey_v1";
    pub const MUTABLE_STORAGE_INDEX: &[u8] = b"allmydata_mutable_readkey_to_storage_index_v1";
    pub const MUTABLE_PUBKEY: &[u8] = b"allmydata_mutable_pubkey_to_fingerprint_v1";
    pub const MUTABLE_DATAKEY: &[u8] = b"allmydata_mutable_readkey_to_datakey_v1";
    pub const MUTABLE_WRITE_ENABLER_MASTER: &[u8] =
        b"allmydata_mutable_writekey_to_write_enabler_master_v1";
    pub const MUTABLE_WRITE_ENABLER: &[u8] =
        b"allmydata_mutable_write_enabler_master_and_nodeid_to_write_enabler_v1";
    pub const DIRNODE_CHILD_WRITECAP: &[u8] =
        b"allmydata_mutable_writekey_and_salt_to_dirnode_child_capkey_v1";
    pub const DIRNODE_CHILD_SALT: &[u8] = b"allmydata_dirnode_child_rwcap_to_salt_v1";
    pub const MERKLE_INTERNAL: &[u8] = b"Merkle tree internal node";
    pub const MERKLE_EMPTY_LEAF: &[u8] = b"Merkle tree empty leaf";
}

/// A streaming tagged SHA-256d hasher.
#[derive(Clone, Debug)]
pub struct TaggedHasher {
    inner: Sha256,
}

impl TaggedHasher {
    /// Starts a hash with `netstring(tag)` already fed.
    pub fn new(tag: &[u8]) -> Self {
        let mut inner = Sha256::new();
        inner.update(netstring(tag));
        Self { inner }
    }

    /// Feeds more data.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// Returns the full 32-byte SHA-256d.
    pub fn finalize(self) -> [u8; HASH_LEN] {
        Sha256::digest(self.inner.finalize()).into()
    }

    /// Returns the first 16 bytes of the SHA-256d.
    pub fn finalize_key(self) -> [u8; KEY_LEN] {
        truncate16(&self.finalize())
    }
}

fn truncate16(h: &[u8; HASH_LEN]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(&h[..KEY_LEN]);
    out
}

/// `SHA256d(netstring(tag) || val)`.
pub fn tagged_hash(tag: &[u8], val: &[u8]) -> [u8; HASH_LEN] {
    let mut h = TaggedHasher::new(tag);
    h.update(val);
    h.finalize()
}

/// `tagged_hash` truncated to 16 bytes.
pub fn tagged_hash16(tag: &[u8], val: &[u8]) -> [u8; KEY_LEN] {
    truncate16(&tagged_hash(tag, val))
}

/// `SHA256d(netstring(tag) || netstring(a) || netstring(b))`.
pub fn tagged_pair_hash(tag: &[u8], a: &[u8], b: &[u8]) -> [u8; HASH_LEN] {
    let mut buf = Vec::with_capacity(a.len() + b.len() + 24);
    write_netstring(&mut buf, a);
    write_netstring(&mut buf, b);
    tagged_hash(tag, &buf)
}

/// SHA-256d of raw bytes.
pub fn sha256d(data: &[u8]) -> [u8; HASH_LEN] {
    Sha256::digest(Sha256::digest(data)).into()
}

/// Storage index of an immutable (CHK) file from its AES key.
pub fn storage_index_from_key(key: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    tagged_hash16(tags::STORAGE_INDEX, key)
}

/// Hash of one encoded block (a share's piece of one segment).
pub fn block_hash(block: &[u8]) -> [u8; HASH_LEN] {
    tagged_hash(tags::BLOCK, block)
}

/// Leaf of the crypttext hash tree for one (unpadded) ciphertext segment.
pub fn crypttext_segment_hash(segment: &[u8]) -> [u8; HASH_LEN] {
    tagged_hash(tags::CRYPTTEXT_SEGMENT, segment)
}

/// Hash of a URI extension block.
pub fn ueb_hash(ueb: &[u8]) -> [u8; HASH_LEN] {
    tagged_hash(tags::UEB, ueb)
}

/// Streaming hasher that yields the convergent encryption key of a file.
///
/// The tag binds the convergence secret and the encoding parameters `k`, `N` and the
/// *adjusted* segment size, so the same file with other parameters gets another key.
pub fn convergence_hasher(
    needed_shares: u16,
    total_shares: u16,
    segment_size: u64,
    convergence_secret: &[u8],
) -> TaggedHasher {
    let mut tag = tags::CONVERGENT_ENCRYPTION.to_vec();
    write_netstring(&mut tag, convergence_secret);
    write_netstring(
        &mut tag,
        format!("{needed_shares},{total_shares},{segment_size}").as_bytes(),
    );
    TaggedHasher::new(&tag)
}

/// Lease renewal and cancel secrets a client presents to one server for one storage index.
#[derive(Clone, PartialEq, Eq)]
pub struct LeaseSecrets {
    /// Renews the lease.
    pub renew: [u8; HASH_LEN],
    /// Cancels the lease (unused by GBS, still sent).
    pub cancel: [u8; HASH_LEN],
}

impl std::fmt::Debug for LeaseSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseSecrets(..)")
    }
}

/// Derives the lease secrets exactly as stock Tahoe does.
///
/// `client_secret` is the node's `private/secret`; `server_id` is the 20-byte tubid of the
/// server's announced FURL.
pub fn lease_secrets(
    client_secret: &[u8],
    storage_index: &[u8; KEY_LEN],
    server_id: &[u8; 20],
) -> LeaseSecrets {
    let derive = |client_tag: &[u8], file_tag: &[u8], bucket_tag: &[u8]| {
        // Stock Tahoe passes the secret as the *tag* here.
        let crs = tagged_hash(client_secret, client_tag);
        let frs = tagged_pair_hash(file_tag, &crs, storage_index);
        tagged_pair_hash(bucket_tag, &frs, server_id)
    };
    LeaseSecrets {
        renew: derive(
            tags::CLIENT_RENEWAL,
            tags::FILE_RENEWAL,
            tags::BUCKET_RENEWAL,
        ),
        cancel: derive(tags::CLIENT_CANCEL, tags::FILE_CANCEL, tags::BUCKET_CANCEL),
    }
}

/// Write enabler for a mutable share on one server.
pub fn write_enabler(writekey: &[u8; KEY_LEN], server_id: &[u8; 20]) -> [u8; HASH_LEN] {
    let master = tagged_hash(tags::MUTABLE_WRITE_ENABLER_MASTER, writekey);
    tagged_pair_hash(tags::MUTABLE_WRITE_ENABLER, &master, server_id)
}

/// Mutable read key from the write key.
pub fn mutable_readkey(writekey: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    tagged_hash16(tags::MUTABLE_READKEY, writekey)
}

/// Mutable storage index from the read key.
pub fn mutable_storage_index(readkey: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    tagged_hash16(tags::MUTABLE_STORAGE_INDEX, readkey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base32;

    #[test]
    fn tagged_hash_known_answer() {
        assert_eq!(
            hex::encode(tagged_hash(b"tag", b"value")),
            "64b0cafcfe5f99653ae63b644191c890600965073ef48bf9b24f9e623c940229"
        );
    }

    #[test]
    fn storage_index_known_answer() {
        assert_eq!(
            base32::encode(&storage_index_from_key(&[0u8; 16])),
            "2k6avpjga3dho3zsjo6nnkt7n4"
        );
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut h = TaggedHasher::new(b"t");
        h.update(b"ab");
        h.update(b"cd");
        assert_eq!(h.finalize(), tagged_hash(b"t", b"abcd"));
    }

    #[test]
    fn lease_secrets_known_answer() {
        let si: [u8; 16] = core::array::from_fn(|i| i as u8);
        let s = lease_secrets(&[1u8; 32], &si, &[2u8; 20]);
        assert_eq!(
            base32::encode(&s.renew),
            "zthlg3qzu5jldhlnv7hvsuacorwdi2y66dl7td6adaoj76wyrzgq"
        );
        assert_eq!(
            base32::encode(&s.cancel),
            "kfcug4iftra523flu2zs3zahfp2pj22tx4l2lbxpjyrui66ecs6q"
        );
        assert_eq!(format!("{s:?}"), "LeaseSecrets(..)");
    }

    #[test]
    fn write_enabler_known_answer() {
        assert_eq!(
            base32::encode(&write_enabler(&[3u8; 16], &[2u8; 20])),
            "3d7cq7wd3vazk7f6cu47mopb3wcwupez5itqzu4gzbjp4ntt3uha"
        );
    }

    #[test]
    fn mutable_keys_known_answer() {
        let rk = mutable_readkey(&[3u8; 16]);
        assert_eq!(base32::encode(&rk), "iosg2ayya4fhrlkfzsjqywrfaq");
        assert_eq!(
            base32::encode(&mutable_storage_index(&rk)),
            "am5coqpf2njzwdni7uj7haq6fm"
        );
    }
}

//! The cloud backend's object layout, against a real S3 server (s3s-fs): shares as the Tahoe
//! cloud-backend branch (2237.cloud-backend-s4-merged.4) wrote them are served (chunk size
//! taken from chunk 0, leases in the container ignored, v1 containers), and what lafs writes
//! is what that branch reads (v1 immutable header, chunk 0 at `shares/<si[:2]>/<si>/<n>`,
//! chunk k at `<n>.<k>`, every chunk but the last of the configured size). Plus data sizes
//! around the chunk boundaries of the container (whose 12-byte header shifts them).
//!
//! The objects of the "branch" are written with OpenDAL straight into the bucket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lafs_storage::backend::Backend;
use lafs_storage::backend::cloud::{CloudBackend, CloudOptions};
use lafs_storage::types::{ShareKind, StorageIndex};

const CHUNK: u64 = 4096;

fn backend(server: &S3sFs, chunk: u64) -> CloudBackend {
    CloudBackend::s3(
        &server.settings(&server.endpoint),
        CloudOptions {
            chunk_size: chunk,
            ..CloudOptions::default()
        },
    )
    .unwrap()
}

fn raw_operator(server: &S3sFs) -> opendal::Operator {
    opendal::install_default();
    let b = opendal::services::S3::default()
        .bucket(S3_BUCKET)
        .endpoint(&server.endpoint)
        .region("us-east-1")
        .access_key_id(S3_ACCESS_KEY)
        .secret_access_key(S3_SECRET_KEY)
        .disable_config_load()
        .disable_ec2_metadata();
    opendal::Operator::new(b).unwrap()
}

fn key(si: &StorageIndex, shnum: u16, chunk: usize) -> String {
    let s = si.to_base32();
    if chunk == 0 {
        format!("shares/{}/{s}/{shnum}", &s[..2])
    } else {
        format!("shares/{}/{s}/{shnum}.{chunk}", &s[..2])
    }
}

/// Stores `container` cut into `chunk`-byte objects, as the branch did.
async fn put_chunked(
    op: &opendal::Operator,
    si: &StorageIndex,
    shnum: u16,
    container: &[u8],
    chunk: usize,
) {
    for (i, c) in container.chunks(chunk).enumerate() {
        op.write(&key(si, shnum, i), c.to_vec()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_bucket_written_by_the_tahoe_cloud_branch() {
    let Some(server) = S3sFs::start() else { return };
    let op = raw_operator(&server);
    let s = si(1);

    // Immutable v1 container with one lease record at the end (the branch tolerates leases
    // in containers copied from a disk backend), in 8 KiB chunks.
    let data = pattern(20_000, 1);
    let mut imm = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    imm.extend_from_slice(&data);
    imm.extend_from_slice(&[0x77; 72]);
    put_chunked(&op, &s, 2, &imm, 8192).await;

    // Mutable v1 container (the branch's create_empty_share + writev), in 8 KiB chunks.
    let mdata = pattern(30_000, 2);
    let mut mutable = b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e".to_vec();
    mutable.extend_from_slice(&[0x4e; 20]); // nodeid
    mutable.extend_from_slice(&[0x33; 32]); // write enabler
    mutable.extend_from_slice(&(mdata.len() as u64).to_be_bytes());
    mutable.extend_from_slice(&(468 + mdata.len() as u64).to_be_bytes());
    mutable.extend_from_slice(&[0u8; 368]);
    mutable.extend_from_slice(&mdata);
    mutable.extend_from_slice(&[0, 0, 0, 0]);
    put_chunked(&op, &s, 5, &mutable, 8192).await;

    // Debris the branch could leave (a crash after some chunks): no chunk 0, never a share.
    op.write(&key(&s, 7, 3), vec![1u8; 100]).await.unwrap();

    // Served with a different configured chunk size: existing shares keep theirs.
    let b = backend(&server, CHUNK);
    let listed = b.list_shares(&s).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        (listed[0].shnum, listed[0].kind, listed[0].size),
        (2, ShareKind::Immutable, 20_000)
    );
    assert_eq!(
        (listed[1].shnum, listed[1].kind, listed[1].size),
        (5, ShareKind::Mutable, 30_000)
    );
    assert!(listed.iter().all(|l| l.corrupt.is_none()));
    assert_eq!(read_all(&b, &s, 2).await, data);
    assert_eq!(read_all(&b, &s, 5).await, mdata);
    assert_eq!(
        b.mutable_write_enabler(&s, 5).await.unwrap(),
        Some([0x33; 32])
    );
    assert_eq!(b.list_storage_indexes(None, 10).await.unwrap(), vec![s]);

    // A test-and-write in the middle keeps the 8 KiB chunking and only that chunk changes.
    let mut model = mdata.clone();
    let w = mw(&[(10_000, b"patched")], None, 0x33);
    model_apply(&mut model, &w);
    b.write_mutable(&s, 5, w).await.unwrap();
    assert_eq!(read_all(&b, &s, 5).await, model);
    let sizes: Vec<(String, u64)> = server
        .objects()
        .into_iter()
        .filter(|(k, _)| k.contains(&format!("{}/5", s.to_base32())))
        .collect();
    assert_eq!(sizes.len(), mutable.len().div_ceil(8192), "{sizes:?}");
    assert!(sizes.iter().any(|(_, n)| *n == 8192));

    // Unreadable containers are listed as corrupt, not served.
    op.write(&key(&s, 9, 0), vec![0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let listed = b.list_shares(&s).await.unwrap();
    let bad = listed.iter().find(|l| l.shnum == 9).unwrap();
    assert!(bad.corrupt.is_some(), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_what_the_tahoe_cloud_branch_reads() {
    let Some(server) = S3sFs::start() else { return };
    let b = backend(&server, CHUNK);
    let op = raw_operator(&server);
    let s = si(2);
    let data = pattern(3 * CHUNK + 100, 3);
    put_immutable(&b, &s, 4, &data).await;
    // v1 header, zero size field, no leases; then the data; chunks of CHUNK bytes.
    let mut container = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    container.extend_from_slice(&data);
    let mut got = Vec::new();
    for (i, want) in container.chunks(CHUNK as usize).enumerate() {
        let obj = op.read(&key(&s, 4, i)).await.unwrap().to_vec();
        assert!(obj == want, "chunk {i}");
        got.extend_from_slice(&obj);
    }
    assert_eq!(got.len(), container.len());
    assert!(
        op.read(&key(&s, 4, container.len().div_ceil(CHUNK as usize)))
            .await
            .is_err()
    );
    // No upload marker left behind.
    assert!(
        server
            .objects()
            .iter()
            .all(|(k, _)| k.starts_with("shares/")),
        "{:?}",
        server.objects()
    );

    // A new mutable share: v1 magic (the branch checks for it), header, 4 empty lease slots,
    // data, extra-lease count 0.
    let mdata = pattern(2 * CHUNK, 4);
    b.write_mutable(&s, 6, mw(&[(0, &mdata)], None, 0x21))
        .await
        .unwrap();
    let mut whole = Vec::new();
    for i in 0.. {
        match op.read(&key(&s, 6, i)).await {
            Ok(c) => whole.extend_from_slice(&c.to_vec()),
            Err(_) => break,
        }
    }
    assert_eq!(
        &whole[..32],
        b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e"
    );
    assert_eq!(&whole[32..52], &[0x4e; 20]);
    assert_eq!(&whole[52..84], &[0x21; 32]);
    assert_eq!(whole[84..92], (mdata.len() as u64).to_be_bytes());
    assert_eq!(whole[92..100], (468 + mdata.len() as u64).to_be_bytes());
    assert!(whole[100..468].iter().all(|b| *b == 0));
    assert!(whole[468..468 + mdata.len()] == mdata[..]);
    assert_eq!(&whole[468 + mdata.len()..], &[0, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_around_container_chunk_boundaries() {
    let Some(server) = S3sFs::start() else { return };
    let b = backend(&server, CHUNK);
    // Immutable: the container is 12 + size bytes.
    let c = CHUNK;
    for (i, size) in [
        0,
        1,
        c - 13,
        c - 12,
        c - 11,
        2 * c - 12,
        2 * c - 11,
        37 * c + 5,
    ]
    .into_iter()
    .enumerate()
    {
        let s = si(100 + i as u64);
        let data = pattern(size, i as u64);
        // Writes of odd sizes straddle the chunk boundaries.
        assert_eq!(put_immutable_chunked(&b, &s, 0, &data, 1000).await, size);
        assert_eq!(read_all(&b, &s, 0).await, data, "size {size}");
        let objects = (12 + size).div_ceil(c);
        let n = server
            .objects()
            .iter()
            .filter(|(k, _)| k.contains(&s.to_base32()))
            .count() as u64;
        assert_eq!(n, objects, "size {size}");
    }
    // Mutable: the container is 468 + size + 4 bytes; grow across boundaries one write at a
    // time, then shrink back across them.
    let s = si(200);
    let mut model = Vec::new();
    for (i, size) in [c - 472, c - 471, c - 470, 3 * c - 472, 3 * c - 471, 10 * c]
        .into_iter()
        .enumerate()
    {
        let start = model.len() as u64;
        let add = pattern(size - start, 50 + i as u64);
        let w = mw(&[(start, &add)], None, 1);
        model_apply(&mut model, &w);
        assert_eq!(b.write_mutable(&s, 3, w).await.unwrap(), size);
        assert_eq!(read_all(&b, &s, 3).await, model, "grown to {size}");
    }
    for size in [3 * c - 471, c - 470, c - 471, 1] {
        let w = mw(&[], Some(size), 1);
        model_apply(&mut model, &w);
        assert_eq!(b.write_mutable(&s, 3, w).await.unwrap(), size);
        assert_eq!(read_all(&b, &s, 3).await, model, "shrunk to {size}");
        let n = server
            .objects()
            .iter()
            .filter(|(k, _)| k.contains(&s.to_base32()))
            .count() as u64;
        assert_eq!(n, (468 + size + 4).div_ceil(c), "chunks at {size}");
    }
}

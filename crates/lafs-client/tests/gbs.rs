//! The GBS client against real servers: a lafs storage server in-process (real TLS on
//! loopback, disk backend, SQLite lease database) and a stock Tahoe-LAFS 1.20 storage node.
//! The same scenario runs against both: every endpoint, several PATCHes per share, range
//! reads (inside, across and past the end), abort, list, leases, corruption advisories,
//! mutable read-test-write and reads, and the error kinds a caller relies on (401, 404, wrong
//! SPKI pin).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::{LafsServer, StockNode, pattern};
use lafs_client::gbs::{AllocateSecrets, MutableSecrets, WriteProgress};
use lafs_client::{ClientOptions, ErrorKind, ShareKind, StorageClient};
use lafs_protocol::{
    LeaseSecret, Nurl, ReadTestWriteRequest, ReadVector, RequiredRange, ShareNum, SpkiHash,
    StorageIndex, TestVector, TestWriteVectors, UploadSecret, WriteEnabler, WriteVector,
};

fn sh(n: u8) -> ShareNum {
    ShareNum::new(n)
}

fn set(ns: &[u8]) -> BTreeSet<ShareNum> {
    ns.iter().copied().map(ShareNum::new).collect()
}

fn si(n: u8) -> StorageIndex {
    let mut b = [0x3c; 16];
    b[0] = n;
    b[15] = std::process::id() as u8;
    StorageIndex::from_bytes(b)
}

fn alloc_secrets(upload: u8) -> AllocateSecrets {
    AllocateSecrets {
        lease_renew: LeaseSecret::from_bytes([0x11; 32]),
        lease_cancel: LeaseSecret::from_bytes([0x22; 32]),
        upload: UploadSecret::new(vec![upload; 20]).unwrap(),
    }
}

fn mutable_secrets(we: u8) -> MutableSecrets {
    MutableSecrets {
        write_enabler: WriteEnabler::from_bytes([we; 32]),
        lease_renew: LeaseSecret::from_bytes([0x33; 32]),
        lease_cancel: LeaseSecret::from_bytes([0x44; 32]),
    }
}

fn client(nurl: &Nurl) -> StorageClient {
    StorageClient::new(nurl, "test-server", ClientOptions::default()).unwrap()
}

fn http_status(e: &lafs_client::GbsError) -> Option<u16> {
    match e.kind() {
        ErrorKind::Http { status, .. } => Some(*status),
        _ => None,
    }
}

/// Every endpoint against one server. `app` is the expected application-version prefix.
async fn scenario(nurl: &Nurl, app: &str) {
    let c = client(nurl);

    // version
    let v = c.version().await.unwrap();
    assert!(
        String::from_utf8_lossy(&v.application_version).starts_with(app),
        "{v:?}"
    );
    assert!(v.maximum_immutable_share_size > 1 << 20);
    let status = c.status().snapshot();
    assert!(status.connected && status.last_contact.is_some());
    assert_eq!(status.version.unwrap().available_space, v.available_space);

    // allocate
    let fsi = si(1);
    let secrets = alloc_secrets(0x55);
    let size = 1000u64;
    let a = c
        .allocate(fsi, &secrets, &set(&[0, 1, 2]), size)
        .await
        .unwrap();
    assert_eq!(a.allocated, set(&[0, 1, 2]));
    assert!(a.already_have.is_empty());

    // share 0 in three PATCHes, out of order
    let data0 = Bytes::from(pattern(size as usize, 0));
    let up = &secrets.upload;
    let p = c
        .write_share_chunk(fsi, sh(0), up, 0, data0.slice(0..400))
        .await
        .unwrap();
    assert_eq!(
        p,
        WriteProgress::Incomplete(vec![RequiredRange {
            begin: 400,
            end: 1000
        }])
    );
    let p = c
        .write_share_chunk(fsi, sh(0), up, 600, data0.slice(600..))
        .await
        .unwrap();
    assert_eq!(
        p,
        WriteProgress::Incomplete(vec![RequiredRange {
            begin: 400,
            end: 600
        }])
    );
    let p = c
        .write_share_chunk(fsi, sh(0), up, 400, data0.slice(400..600))
        .await
        .unwrap();
    assert_eq!(p, WriteProgress::Complete);

    // share 1 in one go; share 2 aborted
    let data1 = Bytes::from(pattern(size as usize, 1));
    assert_eq!(
        c.write_share_chunk(fsi, sh(1), up, 0, data1.clone())
            .await
            .unwrap(),
        WriteProgress::Complete
    );
    c.write_share_chunk(fsi, sh(2), up, 0, Bytes::from_static(b"partial"))
        .await
        .unwrap();
    c.abort_upload(fsi, sh(2), up).await.unwrap();
    assert_eq!(
        c.list_shares(ShareKind::Immutable, fsi).await.unwrap(),
        set(&[0, 1])
    );
    assert!(
        c.list_shares(ShareKind::Immutable, si(99))
            .await
            .unwrap()
            .is_empty()
    );

    // reads: whole, inside, past the end, at the end, into a buffer
    let im = ShareKind::Immutable;
    assert_eq!(c.read_share(im, fsi, sh(0), 0, size).await.unwrap(), data0);
    assert_eq!(
        c.read_share(im, fsi, sh(1), 100, 200).await.unwrap(),
        data1.slice(100..300)
    );
    assert_eq!(
        c.read_share(im, fsi, sh(0), 900, 500).await.unwrap(),
        data0.slice(900..)
    );
    assert!(
        c.read_share(im, fsi, sh(0), size, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(c.read_share(im, fsi, sh(0), 5, 0).await.unwrap().is_empty());
    let mut buf = vec![0u8; 64];
    let n = c
        .read_share_into(im, fsi, sh(1), 960, &mut buf)
        .await
        .unwrap();
    assert_eq!(n, 40);
    assert_eq!(&buf[..40], &data1[960..]);
    let e = c.read_share(im, fsi, sh(7), 0, 10).await.unwrap_err();
    assert_eq!(http_status(&e), Some(404), "{e}");
    assert!(!e.is_retryable());

    // a second allocation sees the complete shares
    let a = c
        .allocate(fsi, &alloc_secrets(0x57), &set(&[0, 1, 3]), size)
        .await
        .unwrap();
    assert_eq!(a.already_have, set(&[0, 1]));
    assert_eq!(a.allocated, set(&[3]));
    // wrong upload secret on an upload in progress: 401, nothing written
    let e = c
        .write_share_chunk(fsi, sh(3), &alloc_secrets(0x66).upload, 0, data1.clone())
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), Some(401), "{e}");
    let e = c
        .abort_upload(fsi, sh(3), &alloc_secrets(0x66).upload)
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), Some(401), "{e}");
    c.abort_upload(fsi, sh(3), &alloc_secrets(0x57).upload)
        .await
        .unwrap();

    // leases
    c.add_or_renew_lease(
        fsi,
        &LeaseSecret::from_bytes([0x77; 32]),
        &LeaseSecret::from_bytes([0x78; 32]),
    )
    .await
    .unwrap();
    let e = c
        .add_or_renew_lease(
            si(98),
            &LeaseSecret::from_bytes([0x77; 32]),
            &LeaseSecret::from_bytes([0x78; 32]),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), Some(404), "{e}");

    // corruption advisories
    c.advise_corrupt_share(im, fsi, sh(0), "block hash mismatch in segment 0")
        .await
        .unwrap();
    c.advise_corrupt_share(im, fsi, sh(1), &"x".repeat(40_000))
        .await
        .unwrap();
    let e = c
        .advise_corrupt_share(im, fsi, sh(9), "nope")
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), Some(404), "{e}");

    // mutable: create, read back, failed test, wrong write enabler
    let msi = si(2);
    let ms = mutable_secrets(0x99);
    let content = pattern(3000, 7);
    let mut create = ReadTestWriteRequest::default();
    create.test_write_vectors.insert(
        sh(0),
        TestWriteVectors {
            test: vec![TestVector {
                offset: 0,
                size: 1,
                specimen: vec![],
            }],
            write: vec![WriteVector {
                offset: 0,
                data: content.clone(),
            }],
            new_length: None,
        },
    );
    create.read_vector.push(ReadVector {
        offset: 0,
        size: 10,
    });
    let r = c.read_test_write(msi, &ms, &create).await.unwrap();
    assert!(r.success);
    assert!(r.data.is_empty(), "no share existed before: {r:?}");
    let mu = ShareKind::Mutable;
    assert_eq!(
        c.read_share(mu, msi, sh(0), 0, 5000).await.unwrap(),
        content
    );
    assert_eq!(
        c.read_share(mu, msi, sh(0), 10, 20).await.unwrap(),
        content[10..30]
    );
    assert_eq!(c.list_shares(mu, msi).await.unwrap(), set(&[0]));

    let mut stale = ReadTestWriteRequest::default();
    stale.test_write_vectors.insert(
        sh(0),
        TestWriteVectors {
            test: vec![TestVector {
                offset: 0,
                size: 4,
                specimen: b"nope".to_vec(),
            }],
            write: vec![WriteVector {
                offset: 0,
                data: b"overwritten".to_vec(),
            }],
            new_length: None,
        },
    );
    stale.read_vector.push(ReadVector { offset: 0, size: 4 });
    let r = c.read_test_write(msi, &ms, &stale).await.unwrap();
    assert!(!r.success);
    assert_eq!(
        r.data,
        BTreeMap::from([(sh(0), vec![content[..4].to_vec()])])
    );
    let e = c
        .read_test_write(msi, &mutable_secrets(0x98), &create)
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), Some(401), "{e}");
    assert_eq!(
        c.read_share(mu, msi, sh(0), 0, 4).await.unwrap(),
        content[..4],
        "nothing changed"
    );
    c.advise_corrupt_share(mu, msi, sh(0), "bad signature")
        .await
        .unwrap();

    // wrong swissnum: 401, and the error does not show either swissnum
    let mut bad = nurl.clone();
    bad.swissnum = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz".parse().unwrap();
    let e = client(&bad).version().await.unwrap_err();
    assert_eq!(http_status(&e), Some(401), "{e}");
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains(nurl.swissnum.as_str()) && !text.contains("zzzzzzzz"),
        "{text}"
    );

    // wrong pin: refused at TLS
    let mut wrong_pin = nurl.clone();
    wrong_pin.spki_hash = SpkiHash::from_bytes([7; 32]);
    let wc = client(&wrong_pin);
    let e = wc.version().await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::PinMismatch, "{e}");
    assert!(!e.is_retryable());
    let st = wc.status().snapshot();
    assert!(!st.connected);
    assert!(st.last_error.unwrap().1.contains("SPKI"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lafs_server_every_endpoint() {
    let server = LafsServer::start().await;
    scenario(&server.nurl, "lafs/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_server_every_endpoint() {
    let node = tokio::task::spawn_blocking(StockNode::start).await.unwrap();
    scenario(&node.nurl(), "tahoe-lafs/1.20").await;
    drop(node);
}

/// Many concurrent reads of one share through one client: all correct, and the pool keeps the
/// requests in flight within `max_connections`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_share_the_pool() {
    let server = LafsServer::start().await;
    let c = client(&server.nurl);
    let tsi = si(3);
    let secrets = alloc_secrets(0x01);
    let data = Bytes::from(pattern(1 << 20, 3));
    c.allocate(tsi, &secrets, &set(&[0]), data.len() as u64)
        .await
        .unwrap();
    for (i, chunk) in data.chunks(256 * 1024).enumerate() {
        c.write_share_chunk(
            tsi,
            sh(0),
            &secrets.upload,
            (i * 256 * 1024) as u64,
            data.slice(i * 256 * 1024..i * 256 * 1024 + chunk.len()),
        )
        .await
        .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32u64 {
        let c = c.clone();
        tasks.spawn(async move {
            let off = i * 30_000;
            (
                off,
                c.read_share(ShareKind::Immutable, tsi, sh(0), off, 100_000)
                    .await,
            )
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (off, got) = r.unwrap();
        let off = off as usize;
        assert_eq!(got.unwrap(), data.slice(off..off + 100_000));
    }
}

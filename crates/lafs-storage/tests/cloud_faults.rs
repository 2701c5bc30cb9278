//! The cloud backend against a real S3 server (s3s-fs, which checks SigV4 signatures) through
//! a fault-injecting proxy ([`common::fault_proxy`]): which failures are retried (5xx,
//! throttling, resets, truncated bodies, timeouts) and which are not (other 4xx); what a
//! permanent failure leaves behind (no visible share, nothing blocking a new upload); that
//! errors carry no secrets; and that reads and mutable writes touch only the chunks they
//! need (the proxy's request log).
//!
//! s3s-fs comes from `LAFS_S3S_FS` or `~/.cache/lafs/s3s-root/bin/s3s-fs`
//! (`interop/s3s-fs.sh`); missing, these tests skip with a message locally and fail under
//! `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::fault_proxy::{Fault, FaultProxy};
use common::*;
use lafs_storage::backend::cloud::{CloudBackend, CloudOptions, RetryPolicy};
use lafs_storage::backend::{Backend, BackendError};
use lafs_storage::types::ShareKind;

const CHUNK: u64 = 4096;

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
    }
}

struct Rig {
    server: S3sFs,
    proxy: FaultProxy,
    b: CloudBackend,
}

async fn rig_with(opts: CloudOptions) -> Option<Rig> {
    let server = S3sFs::start()?;
    let proxy = FaultProxy::start(server.port).await;
    let b = CloudBackend::s3(&server.settings(&proxy.endpoint), opts).unwrap();
    Some(Rig { server, proxy, b })
}

async fn rig() -> Option<Rig> {
    rig_with(CloudOptions {
        chunk_size: CHUNK,
        retry: fast_retries(5),
        ..CloudOptions::default()
    })
    .await
}

fn faults(log: &[common::fault_proxy::Seen]) -> usize {
    log.iter().filter(|s| s.fault.is_some()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_retry_5xx_throttling_and_resets() {
    let Some(r) = rig().await else { return };
    let s = si(1);
    let data = pattern(10 * CHUNK + 5, 1);
    r.proxy.add("PUT", ".3", Fault::Status(503), 2);
    r.proxy.add("PUT", ".5", Fault::Status(429), 1);
    r.proxy.add("PUT", ".7", Fault::Reset, 2);
    r.proxy.add("PUT", ".8", Fault::Status(500), 1);
    put_immutable(&r.b, &s, 0, &data).await;
    assert_eq!(
        faults(&r.proxy.take_log()),
        6,
        "every injected fault was hit"
    );
    assert_eq!(read_all(&r.b, &s, 0).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_retry_truncated_bodies_resets_and_5xx() {
    let Some(r) = rig().await else { return };
    let s = si(2);
    let data = pattern(6 * CHUNK, 2);
    put_immutable(&r.b, &s, 0, &data).await;
    r.proxy.take_log();
    r.proxy.add("GET", ".2", Fault::Truncate, 2);
    r.proxy.add("GET", ".3", Fault::Reset, 1);
    r.proxy.add("GET", ".4", Fault::Status(503), 2);
    r.proxy.add("GET", "list-type", Fault::Status(503), 2);
    // A fresh backend (no cached metadata) so that the listing is exercised too.
    let b2 = CloudBackend::s3(
        &r.server.settings(&r.proxy.endpoint),
        CloudOptions {
            chunk_size: CHUNK,
            retry: fast_retries(5),
            ..CloudOptions::default()
        },
    )
    .unwrap();
    let listed = b2.list_shares(&s).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
    let got = b2.read(&s, 0, 0, u64::MAX).await.unwrap();
    assert!(got[..] == data[..], "contents after retries");
    assert_eq!(faults(&r.proxy.take_log()), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retried() {
    let Some(r) = rig_with(CloudOptions {
        chunk_size: CHUNK,
        retry: fast_retries(5),
        request_timeout: Duration::from_millis(500),
        io_timeout: Duration::from_millis(500),
        ..CloudOptions::default()
    })
    .await
    else {
        return;
    };
    let s = si(3);
    let data = pattern(3 * CHUNK, 3);
    put_immutable(&r.b, &s, 0, &data).await;
    r.proxy
        .add("GET", ".1", Fault::Delay(Duration::from_secs(3)), 1);
    assert_eq!(read_all(&r.b, &s, 0).await, data);
    assert_eq!(faults(&r.proxy.take_log()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_4xx_are_not_retried() {
    let Some(r) = rig().await else { return };
    let s = si(4);
    r.proxy.add("PUT", "incoming/", Fault::Status(403), 100);
    let e = r.b.start_immutable(&s, 0, 10).await.unwrap_err();
    assert!(!e.is_transient(), "403 is permanent: {e}");
    let puts = r
        .proxy
        .take_log()
        .into_iter()
        .filter(|l| l.method == "PUT")
        .count();
    assert_eq!(puts, 1, "no retry of a 403");
    // Nothing left staged: once the service accepts requests again the upload can start.
    r.proxy.clear();
    put_immutable(&r.b, &s, 0, b"after 403").await;
    assert_eq!(read_all(&r.b, &s, 0).await, b"after 403");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_leaves_no_visible_share() {
    let Some(r) = rig().await else { return };
    let s = si(5);
    let data = pattern(8 * CHUNK, 5);
    // Chunk 2 never gets stored: more 503s than attempts.
    r.proxy.add("PUT", "/0.2", Fault::Status(503), 1000);
    let mut up = r.b.start_immutable(&s, 0, data.len() as u64).await.unwrap();
    let mut failed = None;
    for (i, c) in data.chunks(CHUNK as usize).enumerate() {
        if let Err(e) = up
            .write((i * CHUNK as usize) as u64, Bytes::copy_from_slice(c))
            .await
        {
            failed = Some(e);
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => up.commit().await.unwrap_err(),
    };
    assert!(
        matches!(
            e,
            BackendError::Io {
                transient: true,
                ..
            }
        ),
        "a 5xx that outlasts the retries is a transient backend error: {e:?}"
    );
    let msg = e.to_string();
    assert!(
        !msg.contains(S3_SECRET_KEY) && !msg.contains("Signature"),
        "{msg}"
    );
    // Never visible, neither in the share listing nor to the crawler.
    assert!(r.b.list_shares(&s).await.unwrap().is_empty());
    assert!(r.b.list_storage_indexes(None, 10).await.unwrap().is_empty());
    assert!(matches!(
        r.b.read(&s, 0, 0, 10).await,
        Err(BackendError::NotFound)
    ));
    r.proxy.clear();
    // Nothing left blocks a new upload of the same share.
    r.b.clean_incoming().await.unwrap();
    put_immutable(&r.b, &s, 0, &data).await;
    assert_eq!(read_all(&r.b, &s, 0).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_without_leaking_them() {
    let Some(server) = S3sFs::start() else { return };
    let mut settings = server.settings(&server.endpoint);
    settings.secret_access_key = "wrong-secret-do-not-print-me".into();
    let b = CloudBackend::s3(
        &settings,
        CloudOptions {
            chunk_size: CHUNK,
            retry: fast_retries(3),
            ..CloudOptions::default()
        },
    )
    .unwrap();
    let e = b.list_shares(&si(6)).await.unwrap_err();
    let msg = format!("{e} {e:?}");
    assert!(!e.is_transient(), "{msg}");
    assert!(!msg.contains("wrong-secret-do-not-print-me"), "{msg}");
    assert!(
        !msg.contains("X-Amz-Signature") && !msg.contains("Signature="),
        "{msg}"
    );
    // Debug of the settings redacts the secret too.
    assert!(!format!("{settings:?}").contains("wrong-secret-do-not-print-me"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fetch_only_the_chunks_they_need() {
    // (Fetching ahead is a separate request, tested below.)
    let Some(r) = rig_with(CloudOptions {
        chunk_size: CHUNK,
        retry: fast_retries(5),
        read_ahead_chunks: 0,
        ..CloudOptions::default()
    })
    .await
    else {
        return;
    };
    let s = si(7);
    let data = pattern(64 * CHUNK, 7);
    put_immutable(&r.b, &s, 0, &data).await;
    r.b.list_shares(&s).await.unwrap(); // metadata cached
    r.proxy.take_log();
    // 100 bytes straddling the boundary of chunks 20 and 21 (container offset = data + 12).
    let at = 21 * CHUNK - 12 - 50;
    let got = r.b.read(&s, 0, at, 100).await.unwrap();
    assert_eq!(&got[..], &data[at as usize..at as usize + 100]);
    let log = r.proxy.take_log();
    let targets: Vec<&str> = log.iter().map(|l| l.target.as_str()).collect();
    assert_eq!(log.len(), 2, "{targets:?}");
    assert!(log.iter().all(|l| l.method == "GET"));
    assert!(targets.iter().any(|t| t.ends_with("/0.20")), "{targets:?}");
    assert!(targets.iter().any(|t| t.ends_with("/0.21")), "{targets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_writes_touch_only_their_chunks() {
    let Some(r) = rig().await else { return };
    let s = si(8);
    let size = 40 * CHUNK;
    let mut model = pattern(size, 8);
    r.b.write_mutable(&s, 1, mw(&[(0, &model)], None, 9))
        .await
        .unwrap();
    r.proxy.take_log();
    // Same length, bytes in the middle of one chunk: only that chunk is read and written.
    let at = 17 * CHUNK + 100;
    let w = mw(&[(at, b"middle")], None, 9);
    model_apply(&mut model, &w);
    assert_eq!(r.b.write_mutable(&s, 1, w).await.unwrap(), size);
    let log = r.proxy.take_log();
    let puts: Vec<&str> = log
        .iter()
        .filter(|l| l.method == "PUT")
        .map(|l| l.target.as_str())
        .collect();
    // Container offset of the data is 468.
    let k = (468 + at) / CHUNK;
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert!(puts[0].ends_with(&format!("/1.{k}")), "{puts:?}");
    let gets = log.iter().filter(|l| l.method == "GET").count();
    assert!(gets <= 3, "listing, header and one chunk at most: {log:?}");
    // Growing by one byte touches chunk 0 (the length), the old last chunk and the new end.
    let w = mw(&[(size, b"+")], None, 9);
    model_apply(&mut model, &w);
    r.b.write_mutable(&s, 1, w).await.unwrap();
    let puts = r
        .proxy
        .take_log()
        .into_iter()
        .filter(|l| l.method == "PUT")
        .count();
    assert!(puts <= 3, "{puts} chunks rewritten to grow by one byte");
    // Truncating to a third deletes the chunks past the end.
    let w = mw(&[], Some(size / 3), 9);
    model_apply(&mut model, &w);
    r.b.write_mutable(&s, 1, w).await.unwrap();
    let listed = r.b.list_shares(&s).await.unwrap();
    assert_eq!(listed[0].size, size / 3);
    assert_eq!(listed[0].kind, ShareKind::Mutable);
    assert_eq!(read_all(&r.b, &s, 1).await, model);
    let objects = r.server.objects();
    let chunks = objects.iter().filter(|(k, _)| k.contains("/1")).count() as u64;
    assert_eq!(chunks, (468 + size / 3 + 4).div_ceil(CHUNK), "{objects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_5xx_and_keeps_the_share_coming() {
    use lafs_storage::frontend::error_status;
    use lafs_storage::leasedb::{AccountId, LeaseDbHandle, OpenOptions, ShareState};
    use lafs_storage::server::{ServerConfig, StorageServer, SystemClock};
    use std::sync::Arc;

    let Some(r) = rig().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = LeaseDbHandle::open_sqlite(
        &dir.path().join("leasedb.sqlite"),
        1_700_000_000,
        OpenOptions::default(),
    )
    .await
    .unwrap();
    let server = StorageServer::new(
        Arc::new(r.b.clone()),
        db,
        ServerConfig::default(),
        Arc::new(SystemClock),
    );
    server.startup().await.unwrap();
    let s = si(9);
    let data = pattern(5 * CHUNK, 9);
    let len = data.len() as u64;
    let shnums = [0u16].into_iter().collect();
    server
        .allocate(AccountId::ANONYMOUS, &s, &shnums, len, b"secret")
        .await
        .unwrap();
    // The object store fails every chunk upload from now on.
    r.proxy.add("PUT", "/0", Fault::Status(503), 10_000);
    let mut err = None;
    for (i, c) in data.chunks(CHUNK as usize).enumerate() {
        let off = (i * CHUNK as usize) as u64;
        if let Err(e) = server
            .write(&s, 0, b"secret", off, Bytes::copy_from_slice(c))
            .await
        {
            err = Some(e);
            break;
        }
    }
    let e = err.expect("a write (or the commit) fails");
    let status = error_status(&e);
    assert!(status.is_server_error(), "{status} for {e}");
    let row = server.leasedb().get_share(s, 0).await.unwrap().unwrap();
    assert_eq!(row.state, ShareState::Coming, "never STABLE");
    assert!(
        r.b.list_shares(&s).await.unwrap().is_empty(),
        "never visible"
    );
    assert!(
        server
            .read(ShareKind::Immutable, &s, 0, 0, 10)
            .await
            .is_err()
    );
}

/// Small reads inside one chunk of an immutable share (a downloader's blocks and hash-tree
/// nodes) cost one request per chunk: the chunk cache keeps whole chunks, least recently used
/// out first within its byte budget, never serves a deleted share's bytes, and leaves mutable
/// shares (which change in place) alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chunk_cache_saves_requests_and_stays_coherent() {
    let Some(r) = rig_with(CloudOptions {
        chunk_size: CHUNK,
        retry: fast_retries(5),
        read_cache_bytes: 3 * CHUNK as usize,
        read_ahead_chunks: 0,
        ..CloudOptions::default()
    })
    .await
    else {
        return;
    };
    let s = si(9);
    let data = pattern(64 * CHUNK, 9);
    put_immutable(&r.b, &s, 0, &data).await;
    r.b.list_shares(&s).await.unwrap();
    r.proxy.take_log();
    let read = |at: u64, len: u64| {
        let b = &r.b;
        async move { b.read(&s, 0, at, len).await.unwrap() }
    };
    let gets = |r: &Rig| {
        r.proxy
            .take_log()
            .iter()
            .filter(|l| l.method == "GET")
            .count()
    };
    // Ten small reads inside chunk 5 and three inside the last chunk: two requests.
    for i in 0..10 {
        let at = 5 * CHUNK + i * 300;
        assert_eq!(
            &read(at, 200).await[..],
            &data[at as usize..at as usize + 200]
        );
    }
    for i in 0..3 {
        let at = 64 * CHUNK - 12 - 1000 + i * 200;
        assert_eq!(
            &read(at, 100).await[..],
            &data[at as usize..at as usize + 100]
        );
    }
    assert_eq!(gets(&r), 2);
    // Budget of three chunks: two more evict the oldest (chunk 5); the last chunk stays.
    read(10 * CHUNK, 10).await;
    read(11 * CHUNK, 10).await;
    assert_eq!(gets(&r), 2);
    read(5 * CHUNK + 1, 10).await;
    assert_eq!(gets(&r), 1, "chunk 5 was evicted");
    // Deleted, then stored again with other bytes of the same length: the new bytes.
    r.b.delete(&s, 0).await.unwrap();
    assert!(matches!(
        r.b.read(&s, 0, 5 * CHUNK, 10).await,
        Err(BackendError::NotFound)
    ));
    let other = pattern(64 * CHUNK, 10);
    assert_ne!(other, data);
    put_immutable(&r.b, &s, 0, &other).await;
    let at = 5 * CHUNK + 1;
    assert_eq!(
        &read(at, 10).await[..],
        &other[at as usize..at as usize + 10]
    );
    assert_eq!(read_all(&r.b, &s, 0).await, other);

    // Mutable shares are read from the store every time.
    let m = si(10);
    let v1 = pattern(8 * CHUNK, 11);
    r.b.write_mutable(&m, 0, mw(&[(0, &v1)], None, 3))
        .await
        .unwrap();
    let first = r.b.read(&m, 0, 100, 10).await.unwrap();
    assert_eq!(&first[..], &v1[100..110]);
    r.b.write_mutable(&m, 0, mw(&[(100, b"0123456789")], None, 3))
        .await
        .unwrap();
    assert_eq!(&r.b.read(&m, 0, 100, 10).await.unwrap()[..], b"0123456789");
}

/// A sequential reader finds the next chunks already fetched: each chunk is requested once,
/// ahead of the read that needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_reads_find_the_next_chunks_fetched_ahead() {
    let Some(r) = rig_with(CloudOptions {
        chunk_size: CHUNK,
        retry: fast_retries(5),
        read_ahead_chunks: 2,
        ..CloudOptions::default()
    })
    .await
    else {
        return;
    };
    let s = si(11);
    let data = pattern(32 * CHUNK, 11);
    put_immutable(&r.b, &s, 0, &data).await;
    r.b.list_shares(&s).await.unwrap();
    r.proxy.take_log();
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    let read = |at: u64| {
        let b = &r.b;
        async move { b.read(&s, 0, at, 100).await.unwrap() }
    };
    // A read in chunk 20 (container offsets; data starts at 12) fetches 20, then 21 and 22.
    let at = 20 * CHUNK;
    assert_eq!(&read(at).await[..], &data[at as usize..at as usize + 100]);
    settle().await;
    let mut fetched: Vec<String> = r.proxy.take_log().into_iter().map(|l| l.target).collect();
    fetched.sort();
    assert_eq!(fetched.len(), 3, "{fetched:?}");
    for k in [20, 21, 22] {
        assert!(
            fetched.iter().any(|t| t.ends_with(&format!("/0.{k}"))),
            "{fetched:?}"
        );
    }
    // Reading on through 21 and 22 requests only what lies further ahead.
    for k in [21, 22] {
        let at = k * CHUNK + 7;
        assert_eq!(&read(at).await[..], &data[at as usize..at as usize + 100]);
    }
    settle().await;
    let log: Vec<String> = r.proxy.take_log().into_iter().map(|l| l.target).collect();
    assert!(
        !log.iter()
            .any(|t| t.ends_with("/0.21") || t.ends_with("/0.22")),
        "chunks fetched ahead were requested again: {log:?}"
    );
    assert!(
        log.iter()
            .all(|t| t.ends_with("/0.23") || t.ends_with("/0.24")),
        "{log:?}"
    );
    assert_eq!(read_all(&r.b, &s, 0).await, data);
}

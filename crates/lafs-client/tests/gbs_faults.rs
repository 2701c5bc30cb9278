//! The GBS client against servers that misbehave: one that never answers (at TCP, or after
//! TLS), one that goes silent mid-body, ones that send endless or oversized bodies, and one
//! that is not listening. Each must end in the right error kind within the configured time,
//! and the client must stop reading an endless body early (the server counts what it got
//! to send). Time limits in these tests are generous upper bounds on configured timeouts,
//! not performance assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Evil, EvilServer, black_hole, nurl_for, self_signed};
use lafs_client::{ClientOptions, ErrorKind, ShareKind, StorageClient, Timeouts};
use lafs_protocol::{ShareNum, StorageIndex};

fn short_timeouts() -> ClientOptions {
    ClientOptions {
        timeouts: Timeouts {
            connect: Duration::from_millis(500),
            control: Duration::from_millis(700),
            write: Duration::from_millis(700),
            read_test_write: Duration::from_millis(700),
            read_response: Duration::from_millis(700),
            read_idle: Duration::from_millis(500),
        },
        ..ClientOptions::default()
    }
}

const SI: StorageIndex = StorageIndex::from_bytes([9; 16]);

fn assert_timeout(e: &lafs_client::GbsError, started: Instant, what_contains: &str) {
    match e.kind() {
        ErrorKind::Timeout { what, .. } => assert!(what.contains(what_contains), "{e}"),
        other => panic!("expected a timeout, got {other:?}: {e}"),
    }
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_that_never_answers_tls() {
    let (addr, _hole) = black_hole().await;
    let (cert, _) = self_signed();
    let c = StorageClient::new(
        &nurl_for(&cert, addr, common::SWISSNUM),
        "hole",
        short_timeouts(),
    )
    .unwrap();
    let t = Instant::now();
    let e = c.version().await.unwrap_err();
    assert_timeout(&e, t, "connecting");
    let st = c.status().snapshot();
    assert!(!st.connected && st.last_error.is_some());
}

#[tokio::test]
async fn server_that_never_answers_http() {
    let s = EvilServer::start(Evil::Silent).await;
    let c = StorageClient::new(&s.nurl(), "silent", short_timeouts()).unwrap();
    let t = Instant::now();
    assert_timeout(&c.version().await.unwrap_err(), t, "version");
    let t = Instant::now();
    let e = c
        .read_share(ShareKind::Immutable, SI, ShareNum::new(0), 0, 100)
        .await
        .unwrap_err();
    assert_timeout(&e, t, "response");
}

#[tokio::test]
async fn server_that_stalls_mid_body() {
    let s = EvilServer::start(Evil::StallMidBody).await;
    let c = StorageClient::new(&s.nurl(), "staller", short_timeouts()).unwrap();
    let t = Instant::now();
    let e = c
        .read_share(ShareKind::Immutable, SI, ShareNum::new(0), 0, 100)
        .await
        .unwrap_err();
    assert_timeout(&e, t, "silent");
}

#[tokio::test]
async fn endless_read_body_is_cut_off() {
    let s = EvilServer::start(Evil::EndlessRead).await;
    let c = StorageClient::new(&s.nurl(), "endless", ClientOptions::default()).unwrap();
    let e = c
        .read_share(ShareKind::Immutable, SI, ShareNum::new(0), 0, 100)
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Protocol(_)), "{e}");
    assert!(e.to_string().contains("more than"), "{e}");
    // Give the server a moment to notice the closed connection, then check it could not
    // push more than a few socket buffers' worth.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = s.written.load(Ordering::Relaxed);
    assert!(
        sent < 64 << 20,
        "server sent {sent} bytes before the client stopped"
    );
}

#[tokio::test]
async fn endless_cbor_body_is_cut_off() {
    let s = EvilServer::start(Evil::EndlessCbor).await;
    let c = StorageClient::new(&s.nurl(), "endless", ClientOptions::default()).unwrap();
    let e = c.version().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Protocol(_)), "{e}");
    assert!(e.to_string().contains("larger than"), "{e}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = s.written.load(Ordering::Relaxed);
    assert!(
        sent < 64 << 20,
        "server sent {sent} bytes before the client stopped"
    );
    let st = c.status().snapshot();
    assert!(st.last_error.is_some());
}

#[tokio::test]
async fn content_range_beyond_the_request_is_refused() {
    let s = EvilServer::start(Evil::BigContentRange).await;
    let c = StorageClient::new(&s.nurl(), "liar", ClientOptions::default()).unwrap();
    let mut buf = [0u8; 100];
    let e = c
        .read_share_into(ShareKind::Immutable, SI, ShareNum::new(0), 0, &mut buf)
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Protocol(_)), "{e}");
    assert!(e.to_string().contains("Content-Range"), "{e}");
}

#[tokio::test]
async fn nobody_listening_is_a_retryable_connect_error() {
    let port = std::net::SocketAddr::from(([127, 0, 0, 1], lafs_testkit::free_port()));
    let (cert, _) = self_signed();
    let c = StorageClient::new(
        &nurl_for(&cert, port, common::SWISSNUM),
        "gone",
        short_timeouts(),
    )
    .unwrap();
    let e = c.version().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Connect(_)), "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("gone"), "names the server: {e}");
}

#[test]
fn tor_nurls_are_refused_up_front() {
    let (cert, _) = self_signed();
    let mut n = nurl_for(&cert, "127.0.0.1:1".parse().unwrap(), common::SWISSNUM);
    n.scheme = lafs_protocol::NurlScheme::PbTor;
    let e = StorageClient::new(&n, "tor", ClientOptions::default()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Unsupported(_)), "{e}");
}

//! A grid on the cloud backend, end to end: one s3s-fs (a real S3 server checking SigV4
//! signatures) holding ten buckets, ten `lafs run` servers with `[storage] backend =
//! cloud.s3` (one bucket each, 64 KiB chunks so that every share spans many chunks), and a
//! stock Tahoe-LAFS 1.20 client putting and getting files of 0 B .. 100 MiB, an MDMF file
//! modified in place, and checking with `--verify`. The shares must be objects in the
//! buckets, never files in the servers' `storage/` directories.
//!
//! Needs stock Tahoe (`interop/tahoe-venv.sh`; missing, the test fails) and s3s-fs
//! (`interop/s3s-fs.sh` or `LAFS_S3S_FS`; missing, the test skips locally with a message and
//! fails under `CI=true`). `LAFS_CLOUD_GRID_MAX_MIB` lowers the largest file (default 100).
//! `LAFS_CLOUD_GRID_S3="URL REGION KEY SECRET"` runs the grid on another S3 service instead
//! (buckets `lafs-0` .. `lafs-9` must exist; `bench/garage.sh` does this with Garage).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    ExternalS3, LafsServer, S3sFsServer, Scratch, StockClient, assert_same_bytes, random_bytes,
    tahoe_venv, use_cloud_s3, use_cloud_s3_at,
};
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn step(start: Instant, what: &str) {
    eprintln!("[{:6.1}s] {what}", start.elapsed().as_secs_f64());
}

#[test]
fn stock_client_on_ten_cloud_s3_servers() {
    const SERVERS: usize = 10;
    let t0 = Instant::now();
    tahoe_venv();
    let scratch = Scratch::new("cloud-grid");
    let external = ExternalS3::from_env("LAFS_CLOUD_GRID_S3");
    let mut s3 = None;
    if external.is_none() {
        match S3sFsServer::start(&scratch.join("s3")) {
            Some(s) => s3 = Some(s),
            None => return,
        }
    }
    let max_mib: usize = std::env::var("LAFS_CLOUD_GRID_MAX_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);

    let mut servers: Vec<LafsServer> = (0..SERVERS)
        .map(|i| {
            let dir = scratch.join(&format!("lafs{i}"));
            let srv = LafsServer::init(&dir, &format!("lafs{i}"));
            let bucket = format!("lafs-{i}");
            match (&s3, &external) {
                (Some(s3), _) => {
                    s3.create_bucket(&bucket);
                    use_cloud_s3(&dir, &s3.endpoint, &bucket, "64KiB");
                }
                (None, Some(ext)) => use_cloud_s3_at(&dir, ext, &bucket, "64KiB"),
                (None, None) => unreachable!(),
            }
            srv
        })
        .collect();
    let entries: String = servers.iter().map(LafsServer::announcement).collect();
    let client_dir = scratch.join("client");
    let mut client = thread::scope(|s| {
        let client = s.spawn(|| StockClient::create(&client_dir, 3, 7, 10, &entries));
        for srv in &mut servers {
            srv.spawn();
        }
        for srv in &mut servers {
            srv.wait_ready(Duration::from_secs(30));
        }
        client.join().expect("create the stock client")
    });
    client.spawn();
    client.wait_connected(SERVERS, Duration::from_secs(60));
    step(t0, "ten cloud.s3 servers up, client connected");

    let files = scratch.join("files");
    fs::create_dir_all(&files).unwrap();
    let mut sizes = vec![0, 1, 56, 64 * 1024 - 1, 64 * 1024 + 1, MIB + 1, 20 * MIB];
    if max_mib > 20 {
        sizes.push(max_mib * MIB);
    }
    for len in sizes {
        let data = random_bytes(len);
        let path = files.join(format!("f{len}"));
        fs::write(&path, &data).unwrap();
        let out = client.tahoe_timeout(&["put", path.to_str().unwrap()], Duration::from_secs(900));
        let cap = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(cap.starts_with("URI:"), "put {len}: {cap:?}");
        step(t0, &format!("put {len} bytes"));
        let got_path = files.join(format!("got{len}"));
        client.tahoe_timeout(
            &["get", &cap, got_path.to_str().unwrap()],
            Duration::from_secs(900),
        );
        let got = fs::read(&got_path).unwrap();
        assert_same_bytes(&format!("get {len}"), &got, &data);
        fs::remove_file(&got_path).unwrap();
        fs::remove_file(&path).unwrap();
        step(t0, &format!("got {len} bytes back"));
        if len == MIB + 1 {
            let r = client.check(&cap, true);
            assert_eq!(r["results"]["healthy"], true, "check --verify: {r:#}");
            assert_eq!(r["results"]["count-shares-good"], 10, "{r:#}");
        }
    }

    // MDMF: put, modify in place with a different size, read back, verify.
    let v1 = random_bytes(MIB + 3);
    let p1 = files.join("mdmf1");
    fs::write(&p1, &v1).unwrap();
    let mdmf = client.put(&["--format=MDMF"], &p1, None);
    assert!(mdmf.starts_with("URI:MDMF:"), "{mdmf}");
    let v2 = random_bytes(2 * MIB + 4099);
    let p2 = files.join("mdmf2");
    fs::write(&p2, &v2).unwrap();
    client.put(&[], &p2, Some(&mdmf));
    let got = client.get(&mdmf, &files.join("mdmf-got"));
    assert_same_bytes("MDMF after modification", &got, &v2);
    let r = client.check(&mdmf, true);
    assert_eq!(r["results"]["healthy"], true, "MDMF check --verify: {r:#}");
    step(t0, "MDMF put, modify, get, verify");

    // The shares are objects in every bucket, and nothing in the servers' directories.
    for (i, srv) in servers.iter_mut().enumerate() {
        if let Some(s3) = &s3 {
            assert!(
                s3.share_objects(&format!("lafs-{i}")) > 0,
                "bucket lafs-{i}"
            );
        }
        assert_eq!(srv.share_files(), 0, "share files on disk at {}", srv.name);
        srv.proc().assert_running();
    }
    if let Some(s3) = &mut s3 {
        s3.proc().assert_running();
    }
    step(t0, "shares are objects in all ten buckets");
}

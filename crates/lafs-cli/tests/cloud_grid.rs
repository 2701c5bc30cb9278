//! A grid on the cloud backend, end to end: one s3s-fs (a real S3 server checking SigV4
//! signatures) holding ten buckets, ten `lafs run` servers with `[storage] backend =
//! cloud.s3` (one bucket each, 64 KiB chunks so that every share spans many chunks), and two
//! clients on them, a stock Tahoe-LAFS 1.20 client and a lafs client node (`lafs run`), each
//! with its own convergence secret so that both really store shares.
//!
//! For every size from 0 B to 100 MiB (0, 1, 56, 64 KiB +- 1, 1 MiB + 1, 20 MiB, 100 MiB):
//! `tahoe put` then `tahoe get` and `lafs get` of that cap; `lafs put` then `lafs get` and
//! `tahoe get` of that cap; all bytes compared. The 100 MiB file skips the two same-client
//! round trips (stock put -> lafs get and lafs put -> stock get cover every step once, and
//! each 100 MiB transfer is slow). Byte ranges of the 20 MiB file through the lafs client's
//! web API, for both caps; `tahoe check --verify` of both 1 MiB + 1 caps. Then an MDMF file
//! (stock client) put, modified in place and verified. The shares must be objects in the
//! buckets, never files in the servers' `storage/` directories.
//!
//! Needs stock Tahoe (`interop/tahoe-venv.sh`; missing, the test fails) and s3s-fs
//! (`interop/s3s-fs.sh` or `LAFS_S3S_FS`; missing, the test skips locally with a message and
//! fails under `CI=true`). `LAFS_CLOUD_GRID_MAX_MIB` lowers the largest file (default 100).
//! `LAFS_CLOUD_GRID_S3="URL REGION KEY SECRET"` runs the grid on another S3 service instead
//! (buckets `lafs-0` .. `lafs-9` must exist; `bench/garage.sh` does this with Garage).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client_common;
mod common;

use client_common::{LafsClient, http, lafs_cmd, ok_stdout, text};
use common::{
    ExternalS3, LafsServer, S3sFsServer, Scratch, StockClient, assert_same_bytes, random_bytes,
    run_with_timeout, tahoe_venv, use_cloud_s3, use_cloud_s3_at,
};
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// How long one put or get may take (100 MiB through ten cloud.s3 servers on a busy machine).
const TRANSFER: Duration = Duration::from_secs(900);

fn step(start: Instant, what: &str) {
    eprintln!("[{:6.1}s] {what}", start.elapsed().as_secs_f64());
}

/// `lafs -d DIR put FILE`: the cap.
fn lafs_put(dir: &Path, file: &Path) -> String {
    let o = run_with_timeout(lafs_cmd().arg("-d").arg(dir).arg("put").arg(file), TRANSFER);
    let cap = ok_stdout(&o, &format!("lafs put {}", file.display()));
    assert!(cap.starts_with("URI:"), "lafs put printed {cap:?}");
    cap
}

/// `lafs -d DIR get CAP OUT`: the bytes written (OUT is removed afterwards).
fn lafs_get(dir: &Path, cap: &str, out: &Path) -> Vec<u8> {
    let _ = fs::remove_file(out);
    let o = run_with_timeout(
        lafs_cmd().arg("-d").arg(dir).args(["get", cap]).arg(out),
        TRANSFER,
    );
    ok_stdout(&o, &format!("lafs get {cap}"));
    let got = fs::read(out).unwrap();
    fs::remove_file(out).unwrap();
    got
}

/// `tahoe put FILE`: the cap.
fn stock_put(client: &StockClient, file: &Path) -> String {
    let out = client.tahoe_timeout(&["put", file.to_str().unwrap()], TRANSFER);
    let cap = text(&out.stdout).trim().to_owned();
    assert!(
        cap.starts_with("URI:"),
        "tahoe put {}: {cap:?}",
        file.display()
    );
    cap
}

/// `tahoe get CAP OUT`: the bytes written (OUT is removed afterwards).
fn stock_get(client: &StockClient, cap: &str, out: &Path) -> Vec<u8> {
    let _ = fs::remove_file(out);
    client.tahoe_timeout(&["get", cap, out.to_str().unwrap()], TRANSFER);
    let got = fs::read(out).unwrap();
    fs::remove_file(out).unwrap();
    got
}

/// Byte ranges of `cap` through the web API at `web` (first, last and middle bytes, a range
/// across segments, the tail), each checked against `data`.
fn check_ranges(web: SocketAddr, cap: &str, data: &[u8], who: &str) {
    let size = data.len();
    for (first, last) in [
        (0, 0),
        (1000, 200_000),
        (size / 2, size / 2 + 131_072),
        (size - 300_000, size - 1),
    ] {
        let r = http(
            web,
            "GET",
            &format!("/uri/{cap}"),
            &[("Range", &format!("bytes={first}-{last}"))],
            b"",
        );
        assert_eq!(
            r.status,
            206,
            "{who} range {first}-{last}: {}",
            text(&r.body)
        );
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/{size}").as_str()),
            "{who}"
        );
        assert_same_bytes(
            &format!("{who} range {first}-{last}"),
            &r.body,
            &data[first..=last],
        );
    }
}

#[test]
fn lafs_and_stock_clients_on_ten_cloud_s3_servers() {
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
    let (mut client, mut lafs) = thread::scope(|s| {
        let client = s.spawn(|| StockClient::create(&client_dir, 3, 7, 10, &entries));
        let lafs = s.spawn(|| LafsClient::create(&scratch.join("lafs-client"), 3, 7, 10, &entries));
        for srv in &mut servers {
            srv.spawn();
        }
        for srv in &mut servers {
            srv.wait_ready(Duration::from_secs(30));
        }
        (
            client.join().expect("create the stock client"),
            lafs.join().expect("create the lafs client"),
        )
    });
    client.spawn();
    lafs.start(SERVERS);
    client.wait_connected(SERVERS, Duration::from_secs(60));
    step(
        t0,
        "ten cloud.s3 servers up, stock and lafs clients connected",
    );

    let files = scratch.join("files");
    fs::create_dir_all(&files).unwrap();
    let mut sizes = vec![0, 1, 56, 64 * 1024 - 1, 64 * 1024 + 1, MIB + 1, 20 * MIB];
    if max_mib > 20 {
        sizes.push(max_mib * MIB);
    }
    for len in sizes {
        // The largest file gets only the cross-client transfers.
        let largest = len > 20 * MIB;
        let data = random_bytes(len);
        let path = files.join(format!("f{len}"));
        fs::write(&path, &data).unwrap();
        let got_path = files.join(format!("got{len}"));

        let stock_cap = stock_put(&client, &path);
        step(t0, &format!("stock put {len} bytes"));
        if !largest {
            let got = stock_get(&client, &stock_cap, &got_path);
            assert_same_bytes(&format!("stock put, stock get, {len} bytes"), &got, &data);
        }
        let got = lafs_get(&lafs.dir, &stock_cap, &got_path);
        assert_same_bytes(&format!("stock put, lafs get, {len} bytes"), &got, &data);
        step(t0, &format!("{len} bytes from the stock put read back"));

        let lafs_cap = lafs_put(&lafs.dir, &path);
        step(t0, &format!("lafs put {len} bytes"));
        if len > 55 {
            // Different convergence secrets: the lafs client stored its own shares.
            assert_ne!(
                lafs_cap, stock_cap,
                "{len} bytes: same cap from both clients"
            );
        } else {
            assert_eq!(lafs_cap, stock_cap, "{len} bytes: literal caps differ");
        }
        if !largest {
            let got = lafs_get(&lafs.dir, &lafs_cap, &got_path);
            assert_same_bytes(&format!("lafs put, lafs get, {len} bytes"), &got, &data);
        }
        let got = stock_get(&client, &lafs_cap, &got_path);
        assert_same_bytes(&format!("lafs put, stock get, {len} bytes"), &got, &data);
        step(t0, &format!("{len} bytes from the lafs put read back"));
        fs::remove_file(&path).unwrap();

        if len == MIB + 1 {
            for (who, cap) in [("stock", &stock_cap), ("lafs", &lafs_cap)] {
                let r = client.check(cap, true);
                assert_eq!(
                    r["results"]["healthy"], true,
                    "{who} put, check --verify: {r:#}"
                );
                assert_eq!(r["results"]["count-shares-good"], 10, "{who} put: {r:#}");
            }
            step(t0, "check --verify of both 1 MiB + 1 files");
        }
        if len == 20 * MIB {
            check_ranges(lafs.web, &stock_cap, &data, "lafs web API, stock put");
            check_ranges(lafs.web, &lafs_cap, &data, "lafs web API, lafs put");
            step(
                t0,
                "byte ranges of the 20 MiB files through the lafs web API",
            );
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
    lafs.proc.as_mut().unwrap().assert_running();
    if let Some(s3) = &mut s3 {
        s3.proc().assert_running();
    }
    step(t0, "shares are objects in all ten buckets");
}

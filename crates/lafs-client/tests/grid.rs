//! A `Grid` built from a real `servers.yaml` naming three in-process lafs servers, one server
//! that is not running and one Foolscap-only entry: the usable servers get clients, the
//! Foolscap-only one is reported, refresh polls everyone in parallel and the status shows
//! who answered; the ring order is a permutation that depends on the storage index.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::LafsServer;
use lafs_client::{ClientOptions, Grid, Timeouts};
use lafs_core::base32;
use lafs_protocol::StorageIndex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_from_servers_yaml() {
    let servers = [
        LafsServer::start().await,
        LafsServer::start().await,
        LafsServer::start().await,
    ];
    let dead_port = lafs_testkit::free_port();
    let tubid = base32::encode(&[5; 20]);
    let mut yaml = String::from("storage:\n");
    let mut entry = |id: &str, nick: &str, nurl: Option<String>| {
        yaml.push_str(&format!(
            "  {id}:\n    ann:\n      nickname: {nick}\n      \
             anonymous-storage-FURL: pb://{tubid}@tcp:127.0.0.1:1/{}\n",
            common::SWISSNUM
        ));
        if let Some(n) = nurl {
            yaml.push_str(&format!("      anonymous-storage-NURLs: [\"{n}\"]\n"));
        }
    };
    for (i, s) in servers.iter().enumerate() {
        entry(
            &format!("server-{i}"),
            &format!("nick{i}"),
            Some(s.nurl.to_string()),
        );
    }
    let mut dead = servers[0].nurl.clone();
    dead.port = dead_port;
    entry("server-dead", "dead", Some(dead.to_string()));
    entry("server-foolscap", "old", None);

    let node = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(node.path().join("private")).unwrap();
    std::fs::write(node.path().join("private/servers.yaml"), yaml).unwrap();
    let opts = ClientOptions {
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            ..Timeouts::default()
        },
        ..ClientOptions::default()
    };
    let grid = Grid::load(node.path(), &opts).unwrap();
    assert_eq!(grid.servers().len(), 4);
    assert_eq!(grid.skipped().len(), 1);
    assert_eq!(grid.skipped()[0].id, "server-foolscap");
    assert_eq!(grid.connected_count(), 0, "nothing contacted yet");

    assert_eq!(grid.refresh().await, 3);
    assert_eq!(grid.connected_count(), 3);
    let statuses = grid.statuses();
    let dead = grid.get("server-dead").unwrap().status().snapshot();
    assert!(!dead.connected);
    assert!(dead.last_error.unwrap().1.contains("cannot connect"));
    for s in statuses.iter().filter(|s| s.name.starts_with("nick")) {
        assert!(s.connected, "{s:?}");
        assert!(
            s.version
                .as_ref()
                .unwrap()
                .application_version
                .starts_with("lafs/")
        );
    }
    assert_eq!(grid.get("server-1").unwrap().nickname(), "nick1");

    let a = grid.permuted(&StorageIndex::from_bytes([1; 16]));
    let ids = |v: &[std::sync::Arc<lafs_client::GridServer>]| {
        v.iter().map(|s| s.id().to_owned()).collect::<Vec<_>>()
    };
    let mut sorted = ids(&a);
    sorted.sort();
    assert_eq!(sorted, ids(grid.servers()));
    let differs =
        (2..20u8).any(|i| ids(&grid.permuted(&StorageIndex::from_bytes([i; 16]))) != ids(&a));
    assert!(differs, "every storage index gave the same order");

    // A missing servers.yaml is an empty grid; a broken one is an error.
    let empty = tempfile::tempdir().unwrap();
    assert!(
        Grid::load(empty.path(), &opts)
            .unwrap()
            .servers()
            .is_empty()
    );
    std::fs::create_dir_all(empty.path().join("private")).unwrap();
    std::fs::write(empty.path().join("private/servers.yaml"), "storage: [").unwrap();
    assert!(Grid::load(empty.path(), &opts).is_err());
}

//! The permuted ring against stock Tahoe-LAFS 1.20 run in the venv: the same servers (with
//! every kind of seed: announced `permutation-seed-base32`, `v0-` ids without one, other ids,
//! random seeds) parsed from one `servers.yaml` by us and given to stock's own
//! `_parse_announcement` and `permute_server_hash`, must come out in the same order for many
//! storage indexes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use lafs_client::ring;
use lafs_client::servers::parse_servers_yaml;
use lafs_core::base32;

struct Rng(u64);

impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

const STOCK_ORDER: &str = r#"
import json, sys
from allmydata.storage_client import _parse_announcement
from allmydata.util.hashutil import permute_server_hash
d = json.loads(sys.argv[1])
seeds = {}
for s in d["servers"]:
    ann = s["ann"]
    seeds[s["id"]] = _parse_announcement(
        s["id"].encode("utf-8"), ann["anonymous-storage-FURL"].encode("utf-8"), ann)[1]
out = []
for si in d["sis"]:
    b = bytes.fromhex(si)
    out.append(sorted(seeds, key=lambda i: permute_server_hash(b, seeds[i])))
print(json.dumps(out))
"#;

#[test]
fn ring_order_matches_stock() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let spki = "Xok43PpKFfFU7DXowRCewMJ2UMoevoSgRPvTOa3N8oU";
    let swiss = "g44v5ghvq7fx65wsuvuhuyrgjioef6rw";
    let mut yaml = String::from("storage:\n");
    let mut servers = Vec::new();
    for i in 0..16 {
        let key = base32::encode(&rng.bytes(32));
        let tubid = base32::encode(&rng.bytes(20));
        let (id, seed) = match i % 4 {
            // What stock and lafs servers announce: base32 of the ASCII key.
            0 => (format!("v0-{key}"), Some(base32::encode(key.as_bytes()))),
            // A v0- id without a seed: the decoded key.
            1 => (format!("v0-{key}"), None),
            // Any other id without a seed: sha256 of the id.
            2 => (format!("server-{i}"), None),
            // Any id with a random seed.
            _ => (format!("custom {i}"), Some(base32::encode(&rng.bytes(20)))),
        };
        let furl = format!("pb://{tubid}@tcp:127.0.0.1:{}/{swiss}", 4000 + i);
        let nurl = format!("pb://{spki}@127.0.0.1:{}/{swiss}#v=1", 4000 + i);
        yaml.push_str(&format!(
            "  \"{id}\":\n    ann:\n      anonymous-storage-FURL: {furl}\n      \
             anonymous-storage-NURLs: [\"{nurl}\"]\n"
        ));
        let mut ann = serde_json::json!({ "anonymous-storage-FURL": furl });
        if let Some(seed) = &seed {
            yaml.push_str(&format!("      permutation-seed-base32: {seed}\n"));
            ann["permutation-seed-base32"] = seed.clone().into();
        }
        servers.push(serde_json::json!({ "id": id, "ann": ann }));
    }
    let file = parse_servers_yaml(&yaml).unwrap();
    assert!(file.skipped.is_empty(), "{:?}", file.skipped);
    assert_eq!(file.servers.len(), 16);

    let sis: Vec<Vec<u8>> = (0..40).map(|_| rng.bytes(16)).collect();
    let input = serde_json::json!({
        "servers": servers,
        "sis": sis.iter().map(hex::encode).collect::<Vec<_>>(),
    });
    let stock: Vec<Vec<String>> =
        serde_json::from_str(&common::stock_python(STOCK_ORDER, &[&input.to_string()])).unwrap();
    assert_eq!(stock.len(), sis.len());
    for (si, want) in sis.iter().zip(&stock) {
        let ours: Vec<String> = ring::permuted(si, &file.servers, |s| &s.permutation_seed)
            .into_iter()
            .map(|s| s.id.clone())
            .collect();
        assert_eq!(&ours, want, "storage index {}", hex::encode(si));
    }
}

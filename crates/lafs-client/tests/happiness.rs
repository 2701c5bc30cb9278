//! Servers of happiness: property tests against a brute-force maximum matching, and a
//! cross-check against stock Tahoe-LAFS 1.20's own functions (`happinessutil.
//! servers_of_happiness`, `happiness_upload.share_placement` and `calculate_happiness`) run
//! in the venv on random small grids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use lafs_client::happiness::{Candidate, happiness, layout_after, share_placement};
use lafs_protocol::ShareNum;
use proptest::prelude::*;

/// The largest matching, by trying everything: server `i` may take any share in `adj[i]`.
fn brute_max(adj: &[BTreeSet<u8>]) -> usize {
    fn go(i: usize, adj: &[BTreeSet<u8>], used: &mut BTreeSet<u8>) -> usize {
        if i == adj.len() {
            return 0;
        }
        let mut best = go(i + 1, adj, used);
        for &s in &adj[i] {
            if used.insert(s) {
                best = best.max(1 + go(i + 1, adj, used));
                used.remove(&s);
            }
        }
        best
    }
    go(0, adj, &mut BTreeSet::new())
}

fn nums(s: &BTreeSet<ShareNum>) -> BTreeSet<u8> {
    s.iter().map(|n| n.get()).collect()
}

/// The graph an upload can realise: read-only servers with what they hold, writable ones with
/// every share.
fn upload_graph(cands: &[Candidate], n: u8) -> Vec<BTreeSet<u8>> {
    cands
        .iter()
        .map(|c| {
            if c.writable {
                (0..n).collect()
            } else {
                nums(&c.existing).into_iter().filter(|&s| s < n).collect()
            }
        })
        .collect()
}

fn candidates(max_servers: usize, max_n: u8) -> impl Strategy<Value = (Vec<Candidate>, u8)> {
    (1..=max_n).prop_flat_map(move |n| {
        let cand = (any::<bool>(), proptest::collection::btree_set(0..n, 0..4)).prop_map(
            |(writable, ex)| Candidate {
                writable,
                existing: ex.into_iter().map(ShareNum::new).collect(),
            },
        );
        (proptest::collection::vec(cand, 0..=max_servers), Just(n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/happiness.proptest-regressions",
            ),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn happiness_is_the_maximum_matching(
        layout in proptest::collection::vec(proptest::collection::btree_set(0u8..8, 0..5), 0..7)
    ) {
        let holdings: Vec<BTreeSet<ShareNum>> = layout
            .iter()
            .map(|s| s.iter().copied().map(ShareNum::new).collect())
            .collect();
        prop_assert_eq!(happiness(&holdings), brute_max(&layout));
    }

    #[test]
    fn placement_is_optimal_and_valid((cands, n) in candidates(7, 8)) {
        let p = share_placement(&cands, u16::from(n));
        // Optimal: the plan's happiness is the best any upload could reach.
        prop_assert_eq!(p.happiness, brute_max(&upload_graph(&cands, n)));
        // The plan's happiness is its number of distinct servers (stock calculate_happiness).
        let distinct: BTreeSet<usize> = p.shares.values().copied().collect();
        prop_assert_eq!(p.happiness, distinct.len());
        // Every share is placed or reported, never both.
        for sh in 0..n {
            let s = ShareNum::new(sh);
            prop_assert!(p.shares.contains_key(&s) != p.unplaced.contains(&s));
        }
        prop_assert!(p.shares.keys().all(|s| s.get() < n));
        // Shares go to read-only servers only where they already are.
        for (s, &server) in &p.shares {
            prop_assert!(cands[server].writable || cands[server].existing.contains(s));
        }
        // Nothing is unplaced while a writable server exists.
        if cands.iter().any(|c| c.writable) {
            prop_assert!(p.unplaced.is_empty());
        }
        // Doing the plan reaches at least the planned happiness.
        prop_assert!(happiness(&layout_after(&cands, &p)) >= p.happiness);
    }
}

const STOCK_HAPPINESS: &str = r#"
import json, sys
from allmydata.immutable.happiness_upload import share_placement, calculate_happiness
from allmydata.util.happinessutil import servers_of_happiness
out = []
for case in json.loads(sys.stdin.read()):
    n = case["n"]
    servers = case["servers"]
    writable = set(i for i, s in enumerate(servers) if s["writable"])
    readonly = set(i for i, s in enumerate(servers) if not s["writable"])
    existing = {i: set(s["existing"]) for i, s in enumerate(servers) if s["existing"]}
    sharemap = {}
    for i, shs in existing.items():
        for sh in shs:
            sharemap.setdefault(sh, set()).add(i)
    layout = servers_of_happiness(sharemap)
    planned = effective = None
    if writable:
        try:
            placement = share_placement(writable, readonly, set(range(n)), existing)
            planned = calculate_happiness(placement)
            after = {sh: set(v) for sh, v in sharemap.items()}
            for sh, server in placement.items():
                if server in writable or sh in existing.get(server, set()):
                    after.setdefault(sh, set()).add(server)
            effective = servers_of_happiness(after)
        except Exception as e:
            planned = effective = "error: %r" % (e,)
    out.append({"layout": layout, "planned": planned, "effective": effective})
print(json.dumps(out))
"#;

#[test]
fn matches_stock_functions() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = candidates(8, 10);
    let mut cases: Vec<(Vec<Candidate>, u8)> = (0..300)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    // Fresh uploads of every shape up to 12 servers and 10 shares.
    for servers in 1..=12 {
        for n in [1u8, 2, 3, 5, 7, 10] {
            cases.push((
                vec![
                    Candidate {
                        writable: true,
                        existing: BTreeSet::new()
                    };
                    servers
                ],
                n,
            ));
        }
    }
    let json: Vec<serde_json::Value> = cases
        .iter()
        .map(|(cands, n)| {
            serde_json::json!({
                "n": n,
                "servers": cands.iter().map(|c| serde_json::json!({
                    "writable": c.writable,
                    "existing": nums(&c.existing).into_iter().collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let python = common::tahoe_venv().join("bin/python");
    let mut child = std::process::Command::new(python)
        .args(["-c", STOCK_HAPPINESS])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::Value::Array(json).to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "stock python failed");
    let stock: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stock.len(), cases.len());

    let mut better_than_stock = 0;
    let mut compared_fresh = 0;
    for ((cands, n), st) in cases.iter().zip(&stock) {
        let ctx = format!("n={n} candidates={cands:?} stock={st}");
        // The measure of a layout: identical.
        let existing: Vec<BTreeSet<ShareNum>> = cands.iter().map(|c| c.existing.clone()).collect();
        assert_eq!(
            happiness(&existing) as u64,
            st["layout"].as_u64().unwrap(),
            "{ctx}"
        );
        let Some(stock_effective) = st["effective"].as_u64() else {
            assert!(
                st["effective"].is_null() || st["effective"].is_string(),
                "{ctx}"
            );
            continue;
        };
        let p = share_placement(cands, u16::from(*n));
        let ours = happiness(&layout_after(cands, &p)) as u64;
        // Our plan never leaves a worse layout than stock's.
        assert!(
            ours >= stock_effective,
            "ours {ours} < stock {stock_effective}: {ctx}"
        );
        if ours > stock_effective {
            better_than_stock += 1;
        }
        // Fresh uploads (nothing anywhere, nothing read-only): the same planned happiness.
        if cands.iter().all(|c| c.writable && c.existing.is_empty()) {
            compared_fresh += 1;
            assert_eq!(p.happiness as u64, st["planned"].as_u64().unwrap(), "{ctx}");
        }
    }
    eprintln!(
        "{} cases; {compared_fresh} fresh uploads equal to stock; {better_than_stock} where \
         our layout is happier than stock's",
        cases.len()
    );
    assert!(
        compared_fresh > 0,
        "the generator made no fresh-upload case"
    );
}

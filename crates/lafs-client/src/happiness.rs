//! Servers of happiness: where an upload puts its shares, and how good a layout is.
//!
//! Tahoe's measure of a layout (docs/specifications/servers-of-happiness.rst) is the size of
//! a maximum matching in the bipartite graph of servers and the shares they hold: the largest
//! number of servers that each hold a *different* share. An upload succeeds only if that
//! number reaches `shares.happy`, which guarantees that any `k` of those servers can rebuild
//! the file. Counting servers or shares alone is not enough: ten shares on one server, or the
//! same share on ten servers, both have happiness 1.
//!
//! [`happiness`] computes the measure of any layout (stock `servers_of_happiness`).
//! [`share_placement`] plans an upload the way the specification describes and stock's
//! `happiness_upload.share_placement` intends:
//! 1. a maximum matching between read-only servers and the shares they already hold (those
//!    servers cannot take new shares, but what they hold still counts);
//! 2. a maximum matching between writable servers and the shares they already hold, among the
//!    shares step 1 left (keeping shares where they are saves uploading them again);
//! 3. the remaining writable servers and shares paired off in ring order (shares nobody holds
//!    first);
//! 4. shares still without a server ("homeless", when there are more shares than servers)
//!    go where a copy already is, else to the least-loaded writable server.
//!
//! Steps 1-3 give a maximum matching of the whole graph (read-only servers joined to what
//! they hold, writable servers to every share): a larger read-only matching never lowers the
//! best total, because each read-only match costs writable servers at most one share.
//! Property tests check the result against a brute-force maximum.
//!
//! Deliberate differences from stock 1.20, which no stock client can observe (placement is a
//! client's private choice; only the resulting layout's happiness matters, and ours is never
//! lower, see `tests/happiness_stock.rs`):
//! - stock's `_servermap_flow_graph` shares one adjacency list between all servers, so it
//!   believes every server holds every existing share, and may "place" a share on a
//!   read-only server that does not have it; here each server has only its own edges;
//! - stock iterates Python sets of server ids (order varies between runs); here servers are
//!   considered in the order given (the permuted ring), so the plan is deterministic;
//! - homeless shares go to the least-loaded writable server (stock: least loaded among the
//!   servers that already hold shares, else round robin), and a homeless share a read-only
//!   server already holds stays there instead of being uploaded again.
//!
//! No I/O here: the uploader asks the servers, builds [`Candidate`]s, calls
//! [`share_placement`], allocates, marks servers that refused as read-only and plans again.

use std::collections::{BTreeMap, BTreeSet};

use lafs_protocol::ShareNum;

/// A server the upload may use, as the uploader found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    /// Whether the server accepts new shares of this size (`maximum-immutable-share-size`
    /// at least the share size, and it has not refused an allocation).
    pub writable: bool,
    /// The shares of this file it already holds.
    pub existing: BTreeSet<ShareNum>,
}

/// An upload plan: one server for each share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Share number to server (an index into the candidate list). A share mapped to a
    /// server that already holds it means "renew it there".
    pub shares: BTreeMap<ShareNum, usize>,
    /// Shares no server can take (only when no server is writable).
    pub unplaced: BTreeSet<ShareNum>,
    /// The plan's happiness: the number of distinct servers in `shares` (stock
    /// `calculate_happiness`), which is also the size of the maximum matching it was built
    /// from.
    pub happiness: usize,
}

impl Placement {
    /// The plan grouped by server: which shares to ask each one for.
    pub fn by_server(&self) -> BTreeMap<usize, BTreeSet<ShareNum>> {
        let mut out: BTreeMap<usize, BTreeSet<ShareNum>> = BTreeMap::new();
        for (&sh, &server) in &self.shares {
            out.entry(server).or_default().insert(sh);
        }
        out
    }
}

/// Maximum bipartite matching (Kuhn's augmenting paths). `adj[left]` lists right vertices in
/// preference order; returns `right -> left` for matched right vertices. Left vertices are
/// tried in order, so earlier ones (earlier on the ring) win ties. O(V * E): at most 512
/// servers and 256 shares here.
fn max_matching(adj: &[Vec<usize>], right_count: usize) -> Vec<Option<usize>> {
    fn augment(
        u: usize,
        adj: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for &v in &adj[u] {
            if seen[v] {
                continue;
            }
            seen[v] = true;
            if owner[v].is_none_or(|w| augment(w, adj, seen, owner)) {
                owner[v] = Some(u);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; right_count];
    for u in 0..adj.len() {
        let mut seen = vec![false; right_count];
        augment(u, adj, &mut seen, &mut owner);
    }
    owner
}

/// The happiness of a layout: the size of a maximum matching between servers and the shares
/// each holds (stock `happinessutil.servers_of_happiness`). `holdings[i]` is what server `i`
/// holds; servers holding nothing simply do not count.
pub fn happiness(holdings: &[BTreeSet<ShareNum>]) -> usize {
    let adj: Vec<Vec<usize>> = holdings
        .iter()
        .map(|s| s.iter().map(|n| usize::from(n.get())).collect())
        .collect();
    max_matching(&adj, 256).iter().flatten().count()
}

/// The layout an upload following `placement` would leave: what each candidate already
/// holds, plus the shares placed on it if it can take them (a writable server, or one that
/// already holds that share). Its [`happiness`] is the upload's effective happiness if every
/// allocation succeeds.
pub fn layout_after(candidates: &[Candidate], placement: &Placement) -> Vec<BTreeSet<ShareNum>> {
    let mut out: Vec<BTreeSet<ShareNum>> = candidates.iter().map(|c| c.existing.clone()).collect();
    for (&sh, &server) in &placement.shares {
        if let Some(c) = candidates.get(server)
            && c.writable
        {
            out[server].insert(sh);
        }
    }
    out
}

/// Plans where the `total_shares` shares (numbers `0..total_shares`) of an upload go, over
/// `candidates` in ring order. See the module documentation for the algorithm.
///
/// Existing shares numbered `total_shares` or above are ignored. `total_shares` above 256 is
/// treated as 256 (share numbers are one byte).
pub fn share_placement(candidates: &[Candidate], total_shares: u16) -> Placement {
    let n = usize::from(total_shares.min(256));
    let in_range = |sh: &ShareNum| usize::from(sh.get()) < n;
    let mut assigned: Vec<Option<usize>> = vec![None; n];
    let mut used = vec![false; candidates.len()];

    // Steps 1 and 2: read-only holders, then writable holders, each a maximum matching over
    // the shares still free.
    for writable_phase in [false, true] {
        let lefts: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].writable == writable_phase && !used[i])
            .collect();
        let adj: Vec<Vec<usize>> = lefts
            .iter()
            .map(|&i| {
                candidates[i]
                    .existing
                    .iter()
                    .filter(|sh| in_range(sh))
                    .map(|sh| usize::from(sh.get()))
                    .filter(|&sh| assigned[sh].is_none())
                    .collect()
            })
            .collect();
        for (sh, left) in max_matching(&adj, n).into_iter().enumerate() {
            if let Some(left) = left {
                assigned[sh] = Some(lefts[left]);
                used[lefts[left]] = true;
            }
        }
    }

    // Step 3: the remaining writable servers and shares, paired in order.
    let free_servers: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].writable && !used[i])
        .collect();
    // Shares nobody holds first: a held one left homeless can stay where its copy is.
    let held = |sh: usize| {
        candidates
            .iter()
            .any(|c| c.existing.contains(&ShareNum::new(sh as u8)))
    };
    let mut free_shares: Vec<usize> = (0..n).filter(|&sh| assigned[sh].is_none()).collect();
    free_shares.sort_by_key(|&sh| (held(sh), sh));
    for (&server, &sh) in free_servers.iter().zip(free_shares.iter()) {
        assigned[sh] = Some(server);
        used[server] = true;
    }
    let happiness = used.iter().filter(|&&u| u).count();

    // Step 4: homeless shares.
    let mut load = vec![0usize; candidates.len()];
    for s in assigned.iter().flatten() {
        load[*s] += 1;
    }
    let mut unplaced = BTreeSet::new();
    for (sh, slot) in assigned.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let share = ShareNum::new(sh as u8);
        let least_loaded = |pred: &dyn Fn(&Candidate) -> bool| {
            (0..candidates.len())
                .filter(|&i| pred(&candidates[i]))
                .min_by_key(|&i| (load[i], i))
        };
        let target = least_loaded(&|c| c.writable && c.existing.contains(&share))
            .or_else(|| least_loaded(&|c| c.existing.contains(&share)))
            .or_else(|| least_loaded(&|c| c.writable));
        match target {
            Some(server) => {
                *slot = Some(server);
                load[server] += 1;
            }
            None => {
                unplaced.insert(share);
            }
        }
    }

    Placement {
        shares: assigned
            .into_iter()
            .enumerate()
            .filter_map(|(sh, s)| s.map(|s| (ShareNum::new(sh as u8), s)))
            .collect(),
        unplaced,
        happiness,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ns: &[u8]) -> BTreeSet<ShareNum> {
        ns.iter().map(|&n| ShareNum::new(n)).collect()
    }

    fn rw(ns: &[u8]) -> Candidate {
        Candidate {
            writable: true,
            existing: set(ns),
        }
    }

    fn ro(ns: &[u8]) -> Candidate {
        Candidate {
            writable: false,
            existing: set(ns),
        }
    }

    #[test]
    fn spec_example() {
        // From servers_of_happiness's documentation: happiness 5.
        let layout = vec![
            set(&[1, 2, 3, 4]),
            set(&[6]),
            set(&[3]),
            set(&[4]),
            set(&[2]),
        ];
        assert_eq!(happiness(&layout), 5);
        assert_eq!(happiness(&[set(&[0, 1, 2, 3])]), 1);
        assert_eq!(happiness(&[set(&[0]), set(&[0]), set(&[0])]), 1);
        assert_eq!(happiness(&[]), 0);
    }

    #[test]
    fn fresh_upload_goes_round_the_ring() {
        let cands = vec![rw(&[]); 4];
        let p = share_placement(&cands, 10);
        assert_eq!(p.happiness, 4);
        assert!(p.unplaced.is_empty());
        assert_eq!(p.shares.len(), 10);
        // Shares 0..4 go to servers 0..4 in order, the rest spread evenly.
        for i in 0..4u8 {
            assert_eq!(p.shares[&ShareNum::new(i)], usize::from(i));
        }
        let loads: Vec<usize> = p.by_server().values().map(BTreeSet::len).collect();
        assert_eq!(loads, vec![3, 3, 2, 2]);

        let many = vec![rw(&[]); 20];
        let p = share_placement(&many, 10);
        assert_eq!(p.happiness, 10);
        assert!(
            p.shares.values().all(|&s| s < 10),
            "first servers on the ring"
        );
    }

    #[test]
    fn existing_shares_stay_put() {
        // Server 2 holds share 0: it keeps it, and nobody uploads share 0 again.
        let cands = vec![rw(&[]), rw(&[]), rw(&[0]), rw(&[])];
        let p = share_placement(&cands, 4);
        assert_eq!(p.shares[&ShareNum::new(0)], 2);
        assert_eq!(p.happiness, 4);
    }

    #[test]
    fn read_only_servers_count_only_what_they_hold() {
        // Two read-only servers, one holding share 1; stock's shared adjacency list would
        // also "place" share 1 or 0 on the empty read-only server.
        let cands = vec![ro(&[1]), ro(&[]), rw(&[])];
        let p = share_placement(&cands, 3);
        assert_eq!(p.happiness, 2);
        assert_eq!(p.shares[&ShareNum::new(1)], 0);
        assert!(p.shares.values().all(|&s| s != 1), "{p:?}");
        assert_eq!(happiness(&layout_after(&cands, &p)), 2);
    }

    #[test]
    fn no_writable_servers() {
        let cands = vec![ro(&[0]), ro(&[])];
        let p = share_placement(&cands, 3);
        assert_eq!(p.happiness, 1);
        assert_eq!(p.unplaced, set(&[1, 2]));
        assert_eq!(share_placement(&[], 3).unplaced, set(&[0, 1, 2]));
    }

    #[test]
    fn homeless_share_held_read_only_is_not_uploaded_again() {
        // One writable server; read-only server 0 holds shares 0 and 1: share 0 matches
        // there, share 1 is homeless and stays where it is.
        let cands = vec![ro(&[0, 1]), rw(&[])];
        let p = share_placement(&cands, 3);
        assert_eq!(p.happiness, 2);
        assert_eq!(p.shares[&ShareNum::new(0)], 0);
        assert_eq!(p.shares[&ShareNum::new(1)], 0);
        assert_eq!(p.shares[&ShareNum::new(2)], 1);
    }

    #[test]
    fn shares_out_of_range_are_ignored() {
        let cands = vec![rw(&[200]), rw(&[])];
        let p = share_placement(&cands, 2);
        assert_eq!(p.shares.len(), 2);
        assert_eq!(p.happiness, 2);
    }
}

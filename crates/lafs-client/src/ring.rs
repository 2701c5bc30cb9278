//! Tahoe's permuted ring: the per-file order in which a client considers servers.
//!
//! Every file (storage index) sees the servers in its own pseudo-random order, so load spreads
//! over the grid while any client holding the same server list computes the same order
//! without talking to anyone. Stock (`StorageFarmBroker.get_servers_for_psi`) sorts the
//! connected servers by `sha1(peer_selection_index + permutation_seed)`, where the peer
//! selection index of an immutable or mutable file is its storage index, and the seed comes
//! from the server's announcement (see [`crate::servers`] for how it is derived).
//!
//! Uploads and downloads must agree with stock's order: a lafs uploader that put shares on
//! the "wrong" servers would still be readable (downloaders ask everyone eventually), but
//! stock downloaders would need more round trips, and repairs would move shares around.
//!
//! Ties (two servers announcing the same seed) are broken by the servers' positions in the
//! input list, so the order is total and deterministic. Stock's `preferred-peers` (servers
//! sorted first) is not modelled here: a caller that wants it partitions the result.

use sha1::{Digest, Sha1};

/// `sha1(peer_selection_index + seed)`: a server's position on the ring for one file (stock's
/// `hashutil.permute_server_hash`).
pub fn permute_server_hash(peer_selection_index: &[u8], seed: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(peer_selection_index);
    h.update(seed);
    h.finalize().into()
}

/// The indexes of `seeds` in ring order for `peer_selection_index` (a storage index): sorted
/// by [`permute_server_hash`], ties by index.
pub fn permuted_indexes<S: AsRef<[u8]>>(peer_selection_index: &[u8], seeds: &[S]) -> Vec<usize> {
    let mut keyed: Vec<([u8; 20], usize)> = seeds
        .iter()
        .enumerate()
        .map(|(i, s)| (permute_server_hash(peer_selection_index, s.as_ref()), i))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// `items` in ring order, given how to get each one's permutation seed.
pub fn permuted<'a, T>(
    peer_selection_index: &[u8],
    items: &'a [T],
    seed: impl Fn(&T) -> &[u8],
) -> Vec<&'a T> {
    let seeds: Vec<&[u8]> = items.iter().map(&seed).collect();
    permuted_indexes(peer_selection_index, &seeds)
        .into_iter()
        .map(|i| &items[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha1_of_concatenation() {
        // sha1(b"abc") split at every point gives the same hash.
        let want = "a9993e364706816aba3e25717850c26c9cd0d89d";
        for cut in 0..=3 {
            let (a, b) = b"abc".split_at(cut);
            assert_eq!(hex::encode(permute_server_hash(a, b)), want);
        }
    }

    #[test]
    fn order_sorts_by_hash_and_breaks_ties_by_position() {
        let si = [7u8; 16];
        let seeds: Vec<Vec<u8>> = vec![b"one".to_vec(), b"two".to_vec(), b"one".to_vec()];
        let order = permuted_indexes(&si, &seeds);
        let hashes: Vec<[u8; 20]> = order
            .iter()
            .map(|&i| permute_server_hash(&si, &seeds[i]))
            .collect();
        assert!(hashes.windows(2).all(|w| w[0] <= w[1]));
        let p0 = order.iter().position(|&i| i == 0).unwrap();
        let p2 = order.iter().position(|&i| i == 2).unwrap();
        assert_eq!(p2, p0 + 1, "equal seeds stay in input order");
        let items = ["a", "b", "c"];
        let by_item = permuted(&si, &items, |s| match *s {
            "b" => b"two",
            _ => b"one",
        });
        assert_eq!(by_item.len(), 3);
    }

    #[test]
    fn different_files_see_different_orders() {
        let seeds: Vec<Vec<u8>> = (0u8..10).map(|i| vec![i; 32]).collect();
        let a = permuted_indexes(&[1u8; 16], &seeds);
        let b = permuted_indexes(&[2u8; 16], &seeds);
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }
}

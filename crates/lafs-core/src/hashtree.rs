//! Merkle hash trees in Tahoe's layout.
//!
//! A tree over `n` leaves is a complete binary tree stored in an array: the root at index 0,
//! the children of node `i` at `2i+1` and `2i+2`. The leaves are padded to a power of two with
//! `tagged_hash("Merkle tree empty leaf", "%d" % i)`; interior nodes are
//! `tagged_pair_hash("Merkle tree internal node", left, right)`.
//!
//! [`HashTree`] is a complete tree built from all leaves (the encoder's side);
//! [`IncompleteHashTree`] is filled in hash by hash from an untrusted source and checks every
//! hash it is given against a trusted root (the decoder's side).

use crate::hashutil::{HASH_LEN, tagged_hash, tagged_pair_hash, tags};

/// A 32-byte hash.
pub type Hash = [u8; HASH_LEN];

/// The hash of the padding leaf at leaf index `i`.
pub fn empty_leaf_hash(i: usize) -> Hash {
    tagged_hash(tags::MERKLE_EMPTY_LEAF, i.to_string().as_bytes())
}

/// Hash of an interior node from its two children.
pub fn pair_hash(left: &Hash, right: &Hash) -> Hash {
    tagged_pair_hash(tags::MERKLE_INTERNAL, left, right)
}

/// Smallest power of two `>= n` (1 for 0).
pub fn roundup_pow2(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

/// Number of nodes in a tree over `num_leaves` leaves.
pub fn tree_node_count(num_leaves: usize) -> usize {
    2 * roundup_pow2(num_leaves) - 1
}

fn parent(i: usize) -> usize {
    (i - 1) / 2
}

fn sibling(i: usize) -> usize {
    if i % 2 == 1 { i + 1 } else { i - 1 }
}

/// The node indexes needed to validate leaf `leafnum` of a tree over `num_leaves` leaves,
/// bottom-up: the siblings on the path to the root, then (if asked) the leaf itself.
fn needed_in_insertion_order(num_leaves: usize, leafnum: usize, include_leaf: bool) -> Vec<usize> {
    let first_leaf = roundup_pow2(num_leaves) - 1;
    let leaf = first_leaf + leafnum;
    let mut out = Vec::new();
    let mut here = leaf;
    while here != 0 {
        out.push(sibling(here));
        here = parent(here);
    }
    if include_leaf {
        out.push(leaf);
    }
    out
}

/// The hashes needed to validate a leaf, in ascending index order (mutable shares use this).
pub fn needed_hashes_sorted(num_leaves: usize, leafnum: usize, include_leaf: bool) -> Vec<usize> {
    let mut v = needed_in_insertion_order(num_leaves, leafnum, include_leaf);
    v.sort_unstable();
    v
}

/// The hashes needed to validate a leaf, in the order stock Tahoe writes them into immutable
/// shares.
///
/// Stock Tahoe collects these indexes in a Python `set` and writes them in the set's
/// iteration order, which for small integers is fixed by CPython's hash-table layout. Readers
/// accept any order; writing byte-identical shares needs this one.
pub fn needed_hashes_stock_order(
    num_leaves: usize,
    leafnum: usize,
    include_leaf: bool,
) -> Vec<usize> {
    python_small_int_set_order(&needed_in_insertion_order(
        num_leaves,
        leafnum,
        include_leaf,
    ))
}

/// Iteration order of a CPython (3.x) `set` of distinct non-negative small integers built by
/// adding `items` one by one to an empty set.
///
/// Emulates CPython's open addressing: the hash of a small int is the int, slots are probed
/// linearly (up to 9 further slots when they fit in the table) and then by the perturbed
/// recurrence `i = 5i + 1 + perturb`; the table starts at 8 slots and grows to the next power
/// of two above `4 * used` when it is 60% full, re-inserting entries in slot order.
pub fn python_small_int_set_order(items: &[usize]) -> Vec<usize> {
    const LINEAR_PROBES: usize = 9;
    const PERTURB_SHIFT: u32 = 5;

    fn insert(table: &mut [Option<usize>], key: usize) -> bool {
        let mask = table.len() - 1;
        let mut i = key & mask;
        let mut perturb = key;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for slot in &mut table[i..=i + probes] {
                match *slot {
                    None => {
                        *slot = Some(key);
                        return true;
                    }
                    Some(k) if k == key => return false,
                    Some(_) => {}
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i.wrapping_mul(5).wrapping_add(1).wrapping_add(perturb)) & mask;
        }
    }

    let mut table: Vec<Option<usize>> = vec![None; 8];
    let mut used = 0usize;
    for &key in items {
        if insert(&mut table, key) {
            used += 1;
            let mask = table.len() - 1;
            if used * 5 >= mask * 3 {
                let minused = if used > 50_000 { used * 2 } else { used * 4 };
                let mut newsize = 8;
                while newsize <= minused {
                    newsize <<= 1;
                }
                let old = std::mem::replace(&mut table, vec![None; newsize]);
                for k in old.into_iter().flatten() {
                    insert(&mut table, k);
                }
            }
        }
    }
    table.into_iter().flatten().collect()
}

/// A complete hash tree built from all of its leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTree {
    nodes: Vec<Hash>,
    num_leaves: usize,
}

impl HashTree {
    /// Builds the tree over `leaves`, padding to a power of two with empty-leaf hashes.
    pub fn new(leaves: &[Hash]) -> Self {
        let width = roundup_pow2(leaves.len());
        let first_leaf = width - 1;
        let mut nodes = vec![[0u8; HASH_LEN]; 2 * width - 1];
        nodes[first_leaf..first_leaf + leaves.len()].copy_from_slice(leaves);
        for i in leaves.len()..width {
            nodes[first_leaf + i] = empty_leaf_hash(i);
        }
        for i in (0..first_leaf).rev() {
            nodes[i] = pair_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]);
        }
        Self {
            nodes,
            num_leaves: leaves.len(),
        }
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.nodes[0]
    }

    /// All nodes, root first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Number of real (unpadded) leaves.
    pub fn num_leaves(&self) -> usize {
        self.num_leaves
    }

    /// Node `i`.
    pub fn get(&self, i: usize) -> Option<&Hash> {
        self.nodes.get(i)
    }

    /// The nodes concatenated, as stored in shares.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }
}

/// Why a hash tree refused some hashes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashTreeError {
    /// A hash did not match what the rest of the tree implies.
    #[error("hash mismatch at node {0}")]
    BadHash(usize),
    /// Not enough hashes were given to connect a node to the root.
    #[error("not enough hashes to validate node {0}")]
    NotEnoughHashes(usize),
    /// A node index outside the tree.
    #[error("hash index {0} is outside the tree")]
    OutOfRange(usize),
}

/// A hash tree filled from an untrusted source, checked against a trusted root.
///
/// Every hash accepted has been connected to the root through hashes already trusted; a
/// batch that fails leaves the tree as it was.
#[derive(Clone, Debug)]
pub struct IncompleteHashTree {
    nodes: Vec<Option<Hash>>,
    first_leaf: usize,
    num_leaves: usize,
}

impl IncompleteHashTree {
    /// An empty tree over `num_leaves` leaves.
    pub fn new(num_leaves: usize) -> Self {
        let width = roundup_pow2(num_leaves);
        Self {
            nodes: vec![None; 2 * width - 1],
            first_leaf: width - 1,
            num_leaves,
        }
    }

    /// Number of real leaves.
    pub fn num_leaves(&self) -> usize {
        self.num_leaves
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a tree has at least its root.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Node `i` if known.
    pub fn get(&self, i: usize) -> Option<&Hash> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    /// Known leaf hash.
    pub fn leaf(&self, leafnum: usize) -> Option<&Hash> {
        self.get(self.first_leaf + leafnum)
    }

    /// Node indexes still needed to validate leaf `leafnum` (ascending).
    pub fn needed_hashes(&self, leafnum: usize, include_leaf: bool) -> Vec<usize> {
        needed_hashes_sorted(self.num_leaves, leafnum, include_leaf)
            .into_iter()
            .filter(|&i| self.nodes[i].is_none())
            .collect()
    }

    /// Sets the trusted root.
    pub fn set_root(&mut self, root: Hash) -> Result<(), HashTreeError> {
        self.set_hashes(&[(0, root)], &[])
    }

    /// Adds `hashes` (by node index) and `leaves` (by leaf number), validating every one of
    /// them against the nodes already known. All or nothing.
    pub fn set_hashes(
        &mut self,
        hashes: &[(usize, Hash)],
        leaves: &[(usize, Hash)],
    ) -> Result<(), HashTreeError> {
        let mut added: Vec<usize> = Vec::new();
        let result = self.set_hashes_inner(hashes, leaves, &mut added);
        if result.is_err() {
            for i in added {
                self.nodes[i] = None;
            }
        }
        result
    }

    fn set_hashes_inner(
        &mut self,
        hashes: &[(usize, Hash)],
        leaves: &[(usize, Hash)],
        added: &mut Vec<usize>,
    ) -> Result<(), HashTreeError> {
        let mut pending: Vec<usize> = Vec::new();
        let leaf_items = leaves.iter().map(|&(l, h)| {
            if l >= self.num_leaves.max(1) {
                (usize::MAX, h)
            } else {
                (self.first_leaf + l, h)
            }
        });
        for (i, h) in hashes.iter().copied().chain(leaf_items) {
            let slot = self.nodes.get_mut(i).ok_or(HashTreeError::OutOfRange(i))?;
            match slot {
                Some(existing) if *existing != h => return Err(HashTreeError::BadHash(i)),
                Some(_) => {}
                None => {
                    *slot = Some(h);
                    added.push(i);
                    pending.push(i);
                }
            }
        }
        // Validate deepest nodes first: each new node must combine with its sibling into a
        // parent that matches (or becomes) a known node, up to a trusted one.
        pending.sort_unstable_by(|a, b| b.cmp(a));
        let mut queue = std::collections::BTreeSet::new();
        queue.extend(pending);
        while let Some(i) = queue.pop_last() {
            if i == 0 {
                continue;
            }
            let sib = sibling(i);
            let Some(sib_hash) = self.nodes[sib] else {
                return Err(HashTreeError::NotEnoughHashes(i));
            };
            let (l, r) = if i < sib { (i, sib) } else { (sib, i) };
            let Some(lh) = self.nodes[l] else {
                return Err(HashTreeError::NotEnoughHashes(l));
            };
            let rh = if r == sib {
                sib_hash
            } else {
                self.nodes[r].unwrap_or(sib_hash)
            };
            let p = parent(i);
            let computed = pair_hash(&lh, &rh);
            match self.nodes[p] {
                Some(existing) => {
                    if existing != computed {
                        return Err(HashTreeError::BadHash(p));
                    }
                }
                None => {
                    self.nodes[p] = Some(computed);
                    added.push(p);
                    queue.insert(p);
                }
            }
            queue.remove(&sib);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u8) -> Hash {
        tagged_hash(b"L", &[i])
    }

    #[test]
    fn known_root_and_empty_leaf() {
        let t = HashTree::new(&[leaf(0), leaf(1), leaf(2)]);
        assert_eq!(
            hex::encode(t.root()),
            "3e42e58877220a06143d1449a4d14fa271832f5753a8baf692e69a87cae8a533"
        );
        assert_eq!(
            hex::encode(empty_leaf_hash(3)),
            "9ed59076b6bee6b75864630c3c20cff6934efe03a60a7fd28b69542fb13a68a3"
        );
        assert_eq!(t.nodes().len(), 7);
        assert_eq!(t.nodes()[6], empty_leaf_hash(3));
    }

    #[test]
    fn single_leaf_tree_is_the_leaf() {
        let t = HashTree::new(&[leaf(9)]);
        assert_eq!(t.root(), leaf(9));
        assert_eq!(t.nodes().len(), 1);
    }

    #[test]
    fn stock_share_hash_chain_orders() {
        // Orders observed in shares written by stock Tahoe 1.20 (shared/vectors).
        assert_eq!(
            needed_hashes_stock_order(10, 0, true),
            vec![2, 4, 8, 15, 16]
        );
        assert_eq!(needed_hashes_stock_order(5, 0, true), vec![8, 2, 4, 7]);
        assert_eq!(
            needed_hashes_stock_order(100, 0, true),
            vec![128, 32, 64, 2, 4, 8, 16, 127]
        );
        assert_eq!(
            needed_hashes_stock_order(13, 0, true),
            vec![2, 4, 8, 15, 16]
        );
        assert_eq!(needed_hashes_stock_order(1, 0, true), vec![0]);
    }

    #[test]
    fn python_set_order_matches_cpython_examples() {
        // Expected orders printed by CPython 3.11 for sets built by successive add().
        let cases: &[(&[usize], &[usize])] = &[
            (&[8, 0], &[8, 0]),
            (&[16, 8, 0], &[16, 8, 0]),
            (&[3, 3, 1], &[1, 3]),
            (
                &[261, 367, 542, 29, 476, 255, 53, 160, 115, 380],
                &[160, 261, 367, 115, 53, 380, 476, 29, 542, 255],
            ),
            (
                &[252, 389, 556, 104, 587, 255, 13, 221],
                &[389, 104, 587, 556, 13, 252, 221, 255],
            ),
            (
                &[286, 186, 398, 163, 73, 142, 455],
                &[163, 455, 73, 398, 142, 186, 286],
            ),
            (&[135, 1, 5], &[1, 5, 135]),
            (&[220, 169, 170, 296], &[296, 169, 170, 220]),
            (
                &[203, 552, 209, 186, 201, 392],
                &[552, 201, 392, 203, 209, 186],
            ),
        ];
        for (items, expected) in cases {
            assert_eq!(python_small_int_set_order(items), *expected, "{items:?}");
        }
    }

    #[test]
    fn incomplete_tree_validates_leaves() {
        let leaves: Vec<Hash> = (0..5).map(leaf).collect();
        let full = HashTree::new(&leaves);
        let mut t = IncompleteHashTree::new(5);
        t.set_root(full.root()).unwrap();
        let needed = t.needed_hashes(3, false);
        let hashes: Vec<(usize, Hash)> = needed.iter().map(|&i| (i, full.nodes()[i])).collect();
        // Wrong leaf: refused, tree unchanged.
        assert!(matches!(
            t.set_hashes(&hashes, &[(3, leaf(99))]),
            Err(HashTreeError::BadHash(_))
        ));
        assert_eq!(t.needed_hashes(3, false), needed);
        // Missing sibling: refused.
        assert!(matches!(
            t.set_hashes(&hashes[1..], &[(3, leaves[3])]),
            Err(HashTreeError::NotEnoughHashes(_))
        ));
        t.set_hashes(&hashes, &[(3, leaves[3])]).unwrap();
        assert_eq!(t.leaf(3), Some(&leaves[3]));
        assert!(t.needed_hashes(3, false).is_empty());
        // A forged sibling of an already-validated path is refused.
        let mut forged = full.nodes()[needed[0]];
        forged[0] ^= 1;
        assert!(t.set_hashes(&[(needed[0], forged)], &[]).is_err());
        assert!(t.set_hashes(&[(1000, forged)], &[]).is_err());
        assert!(t.set_hashes(&[], &[(7, forged)]).is_err());
    }

    #[test]
    fn every_leaf_validates_with_its_chain() {
        for n in 1..20usize {
            let leaves: Vec<Hash> = (0..n as u8).map(leaf).collect();
            let full = HashTree::new(&leaves);
            for (l, leaf_hash) in leaves.iter().enumerate() {
                let mut t = IncompleteHashTree::new(n);
                t.set_root(full.root()).unwrap();
                let hashes: Vec<(usize, Hash)> = needed_hashes_stock_order(n, l, false)
                    .into_iter()
                    .map(|i| (i, full.nodes()[i]))
                    .collect();
                t.set_hashes(&hashes, &[(l, *leaf_hash)]).unwrap();
            }
        }
    }
}

//! A set of half-open byte ranges, for tracking what an upload has written.

/// Disjoint, sorted, merged `[start, end)` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// Empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `[start, end)`.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.ranges {
            if b < s {
                out.push((a, b));
            } else if e < a {
                if !placed {
                    out.push((s, e));
                    placed = true;
                }
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            out.push((s, e));
        }
        self.ranges = out;
    }

    /// The parts of `[start, end)` already in the set.
    pub fn intersections(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        self.ranges
            .iter()
            .filter_map(|&(a, b)| {
                let (s, e) = (a.max(start), b.min(end));
                (s < e).then_some((s, e))
            })
            .collect()
    }

    /// The parts of `[start, end)` not in the set.
    pub fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut pos = start;
        for &(a, b) in &self.ranges {
            if b <= pos {
                continue;
            }
            if a >= end {
                break;
            }
            if a > pos {
                out.push((pos, a.min(end)));
            }
            pos = pos.max(b);
            if pos >= end {
                break;
            }
        }
        if pos < end {
            out.push((pos, end));
        }
        out
    }

    /// Whether `[start, end)` is entirely in the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        self.gaps(start, end).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn basics() {
        let mut r = RangeSet::new();
        r.insert(10, 20);
        r.insert(30, 40);
        assert_eq!(r.gaps(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        r.insert(20, 30);
        assert_eq!(r.gaps(0, 50), vec![(0, 10), (40, 50)]);
        assert!(r.covers(10, 40));
        assert!(!r.covers(9, 40));
        assert_eq!(r.intersections(15, 35), vec![(15, 35)]);
        r.insert(5, 5);
        assert_eq!(r.gaps(0, 10), vec![(0, 10)]);
    }

    proptest! {
        #[test]
        fn matches_a_bitmap(ops in proptest::collection::vec((0u64..64, 0u64..64), 0..20), q in (0u64..64, 0u64..64)) {
            let mut r = RangeSet::new();
            let mut bits = [false; 64];
            for (a, b) in ops {
                let (a, b) = (a.min(b), a.max(b));
                r.insert(a, b);
                for bit in &mut bits[a as usize..b as usize] { *bit = true; }
            }
            let (s, e) = (q.0.min(q.1), q.0.max(q.1));
            let mut gap_bits = [false; 64];
            for (a, b) in r.gaps(s, e) { for bit in &mut gap_bits[a as usize..b as usize] { *bit = true; } }
            let mut in_bits = [false; 64];
            for (a, b) in r.intersections(s, e) { for bit in &mut in_bits[a as usize..b as usize] { *bit = true; } }
            for i in s as usize..e as usize {
                prop_assert_eq!(gap_bits[i], !bits[i]);
                prop_assert_eq!(in_bits[i], bits[i]);
            }
            prop_assert_eq!(r.covers(s, e), (s as usize..e as usize).all(|i| bits[i]));
        }
    }
}

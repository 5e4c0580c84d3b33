//! Batches of window indices: optional seeded shuffle, optional drop of the last partial batch.

use crate::seeded::SplitMix64;

/// The order a split is walked in, in batches (the teacher's pass sizes are its own
/// `BatchOptions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchOrder {
    /// Visit windows in a seeded random order instead of in order.
    pub shuffle: bool,
    /// Seed of the shuffle; the same seed gives the same order on every machine.
    pub seed: u64,
    /// Drop the final batch when it is smaller than the batch size.
    pub drop_last: bool,
}

/// Iterator over batches of window indices. Holds one index per window, never the data.
#[derive(Debug, Clone)]
pub struct BatchIter {
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    drop_last: bool,
}

impl BatchIter {
    /// Batches over `0..windows`. `batch_size` 0 is treated as 1.
    pub fn new(windows: usize, batch_size: usize, options: BatchOrder) -> BatchIter {
        let mut order: Vec<usize> = (0..windows).collect();
        if options.shuffle {
            shuffle(&mut order, options.seed);
        }
        BatchIter {
            order,
            batch_size: batch_size.max(1),
            next: 0,
            drop_last: options.drop_last,
        }
    }

    /// Number of batches this iterator yields in total.
    pub fn num_batches(&self) -> usize {
        let full = self.order.len() / self.batch_size;
        let partial =
            usize::from(!self.order.len().is_multiple_of(self.batch_size) && !self.drop_last);
        full + partial
    }
}

impl Iterator for BatchIter {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let remaining = self.order.len() - self.next;
        if remaining == 0 || (self.drop_last && remaining < self.batch_size) {
            return None;
        }
        let end = self.next + remaining.min(self.batch_size);
        let batch = self.order[self.next..end].to_vec();
        self.next = end;
        Some(batch)
    }
}

/// Fisher–Yates with [`SplitMix64`]: a fixed, documented generator so that a seed means the
/// same order in every version of this crate, independent of other crates' RNG choices.
fn shuffle(order: &mut [usize], seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_with_partial_last_batch() {
        let batches: Vec<_> = BatchIter::new(5, 2, BatchOrder::default()).collect();
        assert_eq!(batches, vec![vec![0, 1], vec![2, 3], vec![4]]);
        let it = BatchIter::new(
            5,
            2,
            BatchOrder {
                drop_last: true,
                ..Default::default()
            },
        );
        assert_eq!(it.num_batches(), 2);
        assert_eq!(it.count(), 2);
    }

    #[test]
    fn seeded_shuffle_is_a_reproducible_permutation() {
        let opts = BatchOrder {
            shuffle: true,
            seed: 7,
            drop_last: false,
        };
        let a: Vec<usize> = BatchIter::new(100, 16, opts).flatten().collect();
        let b: Vec<usize> = BatchIter::new(100, 16, opts).flatten().collect();
        let c: Vec<usize> = BatchIter::new(100, 16, BatchOrder { seed: 8, ..opts })
            .flatten()
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}

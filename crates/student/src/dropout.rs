//! Dropout whose masks are a function of a seed, not of the process's random stream.
//!
//! Burn draws dropout masks from its backend's generator, which is one per process (Flex,
//! CubeCL): two runs training at once in one process would interleave their draws, and
//! neither run could be reproduced. Here a training step opens a [`mask_seeds`] scope on
//! its thread; each draw inside it re-seeds the generator with `mix(step seed, draw index)`
//! under one process-wide lock, so a mask depends only on the step's seed and the draw's
//! place in the forward pass, whatever else the process is doing.
//!
//! A pack of runs (see the `pack` module) opens the scope with one step seed per run and
//! draws each run's part of a mask (its slice of the first axis) from its own seed: each run
//! gets the masks it gets alone.

use std::cell::RefCell;
use std::sync::Mutex;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};

use crate::parallel::mix;

/// Serialises (re-seed, draw) pairs of every thread of the process.
static DRAW: Mutex<()> = Mutex::new(());

thread_local! {
    /// The open scope's (step seed of each run, index of the next draw).
    static SCOPE: RefCell<Option<(Vec<u64>, u64)>> = const { RefCell::new(None) };
}

/// Runs `f` with the dropout masks of this thread drawn from `seeds` (one per run of the
/// model): the k-th draw inside uses, for run `r`'s part, the generator seeded with
/// `mix(seeds[r], k)`. Scopes do not nest; the previous one is restored afterwards.
pub(crate) fn mask_seeds<R>(seeds: &[u64], f: impl FnOnce() -> R) -> R {
    let previous = SCOPE.with(|scope| scope.replace(Some((seeds.to_vec(), 0))));
    let result = f();
    SCOPE.with(|scope| *scope.borrow_mut() = previous);
    result
}

/// The seed of each run's part of this thread's next draw, when a scope is open.
fn next_seeds() -> Option<Vec<u64>> {
    SCOPE.with(|scope| {
        let mut scope = scope.borrow_mut();
        let (seeds, draw) = scope.as_mut()?;
        let current = *draw;
        *draw += 1;
        Some(seeds.iter().map(|&s| mix(s, current, 2)).collect())
    })
}

/// Inverted dropout (kept values scaled by `1 / (1 - prob)`), active on autodiff devices
/// only, with masks drawn as the module documentation says.
#[derive(Module, Debug)]
pub struct SeededDropout {
    prob: f64,
}

impl SeededDropout {
    /// Dropout with probability `prob` in [0, 1) (checked by `DualConfig::validate`).
    pub fn new(prob: f64) -> Self {
        SeededDropout { prob }
    }

    /// `x` with each element zeroed with probability `prob`, the rest scaled up.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.prob == 0.0 || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let draw = |part: &Tensor<D>, seed: Option<u64>| {
            if let Some(seed) = seed {
                part.device().seed(seed);
            }
            part.random_like(Distribution::Bernoulli(keep))
        };
        let mask = {
            // A poisoned lock only means another thread panicked between its re-seed and
            // draw; the generator itself is still usable.
            let _draw = DRAW.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match next_seeds() {
                Some(seeds) if seeds.len() > 1 => {
                    let rows = x.dims()[0] / seeds.len();
                    let parts = seeds
                        .iter()
                        .enumerate()
                        .map(|(r, &seed)| draw(&x.clone().narrow(0, r * rows, rows), Some(seed)))
                        .collect();
                    Tensor::cat(parts, 0)
                }
                seeds => draw(&x, seeds.and_then(|s| s.first().copied())),
            }
        };
        x * mask * (1.0 / keep)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::{SeededDropout, mask_seeds};
    use crate::state_dict::tensor_to_vec;

    fn masks(seed: u64) -> Vec<f32> {
        let device = Device::flex().autodiff();
        let dropout = SeededDropout::new(0.5);
        let x = Tensor::<2>::ones([8, 64], &device);
        mask_seeds(&[seed], || {
            let a = dropout.forward(x.clone());
            let b = dropout.forward(x.clone());
            tensor_to_vec(Tensor::cat(vec![a, b], 0)).expect("f32")
        })
    }

    #[test]
    fn masks_depend_on_the_seed_and_the_draw_not_on_other_threads() {
        let alone = masks(7);
        // Other threads drawing meanwhile (from their own seeds and from none) change nothing.
        let busy: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let noise: Vec<_> = (0..3)
                .map(|i| scope.spawn(move || (0..20).for_each(|_| drop(masks(100 + i)))))
                .collect();
            let mine: Vec<_> = (0..4).map(|_| scope.spawn(|| masks(7))).collect();
            noise.into_iter().for_each(|h| h.join().expect("noise"));
            mine.into_iter().map(|h| h.join().expect("mine")).collect()
        });
        assert!(busy.iter().all(|m| *m == alone));
        // Two draws of one scope differ, and another seed gives other masks.
        let (first, second) = alone.split_at(alone.len() / 2);
        assert_ne!(first, second);
        assert_ne!(masks(8), alone);
        // Kept values are scaled by 1 / (1 - p); about half are dropped.
        assert!(alone.iter().all(|&v| v == 0.0 || v == 2.0));
        let kept = alone.iter().filter(|&&v| v == 2.0).count() as f64 / alone.len() as f64;
        assert!((0.35..0.65).contains(&kept), "kept {kept}");
    }
}

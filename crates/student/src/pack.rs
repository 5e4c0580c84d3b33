//! Several runs of one shape as ONE model: every parameter of the student has a leading
//! stack axis (its branches, see the `paired` module), and packing concatenates the runs
//! along it, run after run. A packed model runs each operation once for all its runs — one
//! kernel launch where separate runs would make one each, which is what bounds a model this
//! small on a GPU — while each run's numbers stay its own: no operation mixes rows of two runs.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Every float parameter of a module, flattened, by module path.
struct Collector {
    path: Vec<String>,
    tensors: BTreeMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collector {
    crate::module_path::track_module_path!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        let n = value.shape().num_elements();
        self.tensors.insert(self.path.join("."), value.reshape([n]));
    }
}

/// Replaces each parameter with a tensor computed from it, keeping its autodiff and
/// require-grad flags (the result is a new leaf).
struct Replace<F> {
    path: Vec<String>,
    replace: F,
}

impl<F: FnMut(&str, Tensor<1>, &[usize]) -> (Tensor<1>, Vec<usize>)> ModuleMapper for Replace<F> {
    crate::module_path::track_module_path!();

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        param.map(|value| {
            let autodiff = value.is_autodiff();
            let require_grad = value.is_require_grad();
            let dims = value.dims();
            let flat = value.inner().reshape([dims.iter().product::<usize>()]);
            let (flat, new_dims) = (self.replace)(&path, flat, &dims);
            let new_dims: [usize; D] = new_dims.try_into().expect("rank is kept");
            let t = flat.reshape(new_dims);
            let t = if autodiff { t.autodiff() } else { t };
            t.set_require_grad(require_grad)
        })
    }
}

/// The modules' parameters concatenated along their leading axis, in the order given. The
/// modules must have the same structure and shapes (checked by the caller).
pub(crate) fn concat<M: Module>(mut modules: Vec<M>) -> M {
    if modules.len() == 1 {
        return modules.pop().expect("one module");
    }
    let mut parts: BTreeMap<String, Vec<Tensor<1>>> = BTreeMap::new();
    for module in &modules {
        let mut collector = Collector {
            path: Vec::new(),
            tensors: BTreeMap::new(),
        };
        module.visit(&mut collector);
        for (path, tensor) in collector.tensors {
            parts.entry(path).or_default().push(tensor);
        }
    }
    let count = modules.len();
    let template = modules.swap_remove(0);
    template.map(&mut Replace {
        path: Vec::new(),
        replace: |path: &str, _: Tensor<1>, dims: &[usize]| {
            let tensors = parts
                .remove(path)
                .expect("every module has every parameter");
            let mut dims = dims.to_vec();
            dims[0] *= count;
            (Tensor::cat(tensors, 0), dims)
        },
    })
}

/// Part `index` of `parts` equal parts of every parameter along its leading axis.
pub(crate) fn part<M: Module>(module: M, index: usize, parts: usize) -> M {
    module.map(&mut Replace {
        path: Vec::new(),
        replace: |_: &str, flat: Tensor<1>, dims: &[usize]| {
            let n = flat.shape().num_elements() / parts;
            let mut dims = dims.to_vec();
            dims[0] /= parts;
            (flat.narrow(0, index * n, n), dims)
        },
    })
}

/// `reduce` (a whole-tensor reduction) of each run's part of `t`, whose first axis holds
/// `runs` equal parts: `[runs]`. Each part is reduced whole, as one run's tensor alone is:
/// the same sums in the same order, and fast on Burn's CUDA backend, where a reduction along
/// a long axis into few outputs is not.
fn per_run<const D: usize>(
    t: Tensor<D>,
    runs: usize,
    reduce: impl Fn(Tensor<D>) -> Tensor<1>,
) -> Tensor<1> {
    if runs == 1 {
        return reduce(t);
    }
    let rows = t.dims()[0] / runs;
    let parts = (0..runs)
        .map(|r| reduce(t.clone().narrow(0, r * rows, rows)))
        .collect();
    Tensor::cat(parts, 0)
}

/// Sum of each run's part of `t` (see [`per_run`]): `[runs]`.
pub(crate) fn run_sums<const D: usize>(t: Tensor<D>, runs: usize) -> Tensor<1> {
    per_run(t, runs, Tensor::sum)
}

/// Mean of each run's part of `t` (see [`per_run`]): `[runs]`.
pub(crate) fn run_means<const D: usize>(t: Tensor<D>, runs: usize) -> Tensor<1> {
    per_run(t, runs, Tensor::mean)
}

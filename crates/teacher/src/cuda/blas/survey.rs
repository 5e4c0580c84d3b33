//! What the engine's products could gain from another cuBLASLt algorithm: every candidate the
//! heuristic offers for the linear layers of GPT-2 small and Llama-3.2-1B, timed, checked
//! against the first, and described (the survey behind [`Blas::tune`]). Needs a GPU:
//! `cargo test --release -p timekd-teacher --features cuda --lib blas -- --ignored --nocapture`.

use cudarc::driver::CudaContext;
use half::f16;
use timekd_data::seeded::SplitMix64;

use super::*;

impl Blas {
    /// Times the first `count` algorithms the heuristic offers for `y = x · w + b` at shape
    /// `(m, n, k)` (rank 0 is the heuristic's first), `reps` products each; `check` sees each
    /// product before the next runs. The survey behind [`tune`](Self::tune).
    #[allow(clippy::too_many_arguments)]
    fn time_algorithms(
        &mut self,
        stream: &std::sync::Arc<CudaStream>,
        pointers: (u64, u64, u64, u64),
        (m, n, k): (usize, usize, usize),
        epilogue: Epilogue,
        count: usize,
        reps: usize,
        check: impl FnMut(usize) -> Result<(), CudaError>,
    ) -> Result<Vec<f32>, CudaError> {
        let shape = Shape { m, n, k, epilogue };
        let plan = self.descriptors(shape)?;
        let algorithms = self.algorithms(&plan, shape, count)?;
        self.time(stream, &plan, &algorithms, pointers, reps, check)
    }

    /// The configuration of the `rank`-th algorithm the heuristic offers for `shape` (id,
    /// tile, stages, split-K and cluster shape, as cuBLASLt numbers them), for the survey.
    fn describe(
        &self,
        (m, n, k): (usize, usize, usize),
        epilogue: Epilogue,
        rank: usize,
    ) -> Result<String, CudaError> {
        use sys::cublasLtMatmulAlgoConfigAttributes_t as Config;
        let shape = Shape { m, n, k, epilogue };
        let plan = self.descriptors(shape)?;
        let algorithms = self.algorithms(&plan, shape, rank + 1)?;
        let Some(algo) = algorithms.get(rank) else {
            return Ok("(none)".into());
        };
        let attribute = |attr| config(algo, attr).map_or(-1, i64::from);
        Ok(format!(
            "id {} tile {} stages {} split-K {} cluster {}",
            attribute(Config::CUBLASLT_ALGO_CONFIG_ID),
            attribute(Config::CUBLASLT_ALGO_CONFIG_TILE_ID),
            attribute(Config::CUBLASLT_ALGO_CONFIG_STAGES_ID),
            attribute(Config::CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
            attribute(Config::CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID),
        ))
    }
}

/// Rows of the timed products: a full pass of the engine is up to 65,536 tokens.
const ROWS: usize = 32_768;

/// `len` f16 values drawn uniformly from [-1, 1).
fn random_halves(rng: &mut SplitMix64, len: usize) -> Vec<f16> {
    (0..len)
        .map(|_| f16::from_f32((2.0 * rng.next_f64() - 1.0) as f32))
        .collect()
}

/// What the engine's products could gain from another cuBLASLt algorithm: for the linear
/// layers of GPT-2 small and Llama-3.2-1B (f16, 32,768 rows), every algorithm the
/// heuristic offers (up to 16) is timed, and its product must equal the heuristic's
/// first choice (the one the engine runs) within f16 accumulation-order differences.
#[test]
#[ignore = "needs an NVIDIA GPU"]
fn the_heuristics_algorithms_compute_the_same_products_and_are_timed() {
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.new_stream().unwrap();
    let mut blas = Blas::new(&stream, GemmType::F16).unwrap();
    let shapes = [
        ("GPT-2 small q|k|v", 2304, 768, Epilogue::Bias),
        ("GPT-2 small attention out", 768, 768, Epilogue::Bias),
        ("GPT-2 small MLP up + GELU", 3072, 768, Epilogue::BiasGelu),
        ("GPT-2 small MLP down", 768, 3072, Epilogue::Bias),
        ("Llama-3.2-1B q|k|v", 3072, 2048, Epilogue::Bias),
        ("Llama-3.2-1B attention out", 2048, 2048, Epilogue::Bias),
        ("Llama-3.2-1B gate|up", 16384, 2048, Epilogue::Bias),
        ("Llama-3.2-1B down", 2048, 8192, Epilogue::Bias),
    ];
    let mut rng = SplitMix64::new(0);
    println!("{}", ctx.name().unwrap());
    for (name, n, k, epilogue) in shapes {
        let x = DeviceBuffer::from_slice(&stream, &random_halves(&mut rng, ROWS * k)).unwrap();
        // Weights at the scale of a trained layer's (1/sqrt(k)), so products stay O(1).
        let scale = f16::from_f32(1.0 / (k as f32).sqrt());
        let w: Vec<f16> = random_halves(&mut rng, k * n)
            .into_iter()
            .map(|v| v * scale)
            .collect();
        let w = DeviceBuffer::from_slice(&stream, &w).unwrap();
        let bias = DeviceBuffer::from_slice(&stream, &random_halves(&mut rng, n)).unwrap();
        let y = DeviceBuffer::new(&stream, ROWS * n * 2).unwrap();
        let mut first: Vec<f32> = Vec::new();
        let mut worst = 0f32;
        let mut product = vec![f16::ZERO; ROWS * n];
        let millis = blas
            .time_algorithms(
                &stream,
                (x.ptr(), w.ptr(), bias.ptr(), y.ptr()),
                (ROWS, n, k),
                epilogue,
                16,
                20,
                |rank| {
                    y.download(&stream, &mut product)?;
                    let values: Vec<f32> = product.iter().map(|v| v.to_f32()).collect();
                    if rank == 0 {
                        first = values;
                    } else {
                        let scale = first.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let diff = values
                            .iter()
                            .zip(&first)
                            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                        worst = worst.max(diff / scale);
                    }
                    Ok(())
                },
            )
            .unwrap();
        let flops = 2.0 * (ROWS * n * k) as f64;
        let rates: Vec<String> = millis
            .iter()
            .map(|ms| format!("{:.0}", flops / (*ms as f64 * 1e-3) / 1e12))
            .collect();
        let (best_rank, best) =
            millis
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::INFINITY),
                    |b, (r, ms)| if ms < b.1 { (r, ms) } else { b },
                );
        println!(
            "{name:28} [{ROWS} x {k}] x [{k} x {n}]: {} algorithms, TFLOP/s {} \
             (first {:.3} ms, best {:.3} ms: {:.2}x); largest difference from the first {worst:.1e}",
            millis.len(),
            rates.join(" "),
            millis[0],
            best,
            millis[0] / best
        );
        for rank in [0, best_rank] {
            let config = blas.describe((ROWS, n, k), epilogue, rank).unwrap();
            println!("    rank {rank}: {config}");
        }
        assert!(
            worst <= 1e-2,
            "{name}: an algorithm's product differs from the first's by {worst:.1e} of its largest value"
        );
    }
}

//! The engine's own kernels (`kernels.cu`, `attention.cu`, `attention_wgmma.cu`), compiled by
//! NVRTC for the device at load time.

use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

use super::CudaError;
use super::attention::TILE_BYTES;

/// The CUDA C++ source, built into the binary: the helpers and row kernels, then attention
/// (the Hopper kernel last: it builds on the others' helpers, and only for `compute_90a`).
const SOURCE: &str = concat!(
    include_str!("kernels.cu"),
    include_str!("attention.cu"),
    include_str!("attention_wgmma.cu")
);

/// Row widths `d / 128` with their own norm kernels (`kernels.cu`'s `LN_WIDTH`).
const NORM_VECTOR_WIDTHS: [usize; 6] = [6, 8, 10, 16, 20, 24];

/// The row width `d / 128` of the norm kernels for rows of `d` elements, where it is one of
/// [`NORM_VECTOR_WIDTHS`] (else the generic kernels serve).
fn norm_width(d: usize) -> Option<usize> {
    let n = d / 128;
    (d.is_multiple_of(128) && NORM_VECTOR_WIDTHS.contains(&n)).then_some(n)
}

/// `kernels.cu` with the norm kernels for rows of `d` instantiated: only the model's width,
/// since every instantiation costs NVRTC time at each load (all six doubled it, 2.0 -> 4.0 s).
fn source(d: usize) -> String {
    match norm_width(d) {
        Some(n) => format!("{SOURCE}\nLN_WIDTH({n})\n"),
        None => SOURCE.to_string(),
    }
}

/// Dynamic shared memory of the Hopper attention kernel (`attention_wgmma.cu` checks at compile
/// time that its layout fits): three stages of a 64-key K and V tile (8 KiB each), their key
/// types (f32), and up to 1 KiB to align the first stage for the 128-byte swizzle.
pub(super) const WGMMA_SHARED_BYTES: u32 = 3 * 2 * 8192 + 3 * 64 * 4 + 1024;

/// The environment variable that, set to `mma`, keeps the Hopper attention off (the
/// `mma.sync` kernel serves every GPU): a way to compare the two, or to step around a fault.
pub const ATTENTION_ENV: &str = "TIMEKD_CUDA_ATTENTION";

/// Whether the device of compute capability `major.minor` gets the wgmma attention: Hopper
/// (9.0, whose `sm_90a` features it needs) unless [`ATTENTION_ENV`] asks for `mma`.
fn uses_wgmma((major, minor): (i32, i32), setting: Option<&str>) -> bool {
    (major, minor) == (9, 0) && setting != Some("mma")
}

/// The NVRTC program of the engine's kernels: what the engine compiles at load
/// (`Kernels::load`), and what `examples/kernel_program.rs` writes out for checks without a GPU
/// (NVRTC and ptxas: `scripts/kernel-report.sh`).
#[derive(Debug, Clone)]
pub struct KernelProgram {
    /// The CUDA C++ source: the row kernels with the norms of the model's width, attention.
    pub source: String,
    /// NVRTC's options (architecture, language, defines, fused multiply-adds).
    pub options: Vec<String>,
    /// Whether the program holds the wgmma attention (compiled for `compute_90a`).
    pub wgmma: bool,
}

impl KernelProgram {
    /// Compiles the program with NVRTC (as `file_name`, which its errors name) and loads it
    /// into `ctx`.
    pub(super) fn load(
        self,
        ctx: &Arc<CudaContext>,
        file_name: &str,
    ) -> Result<Arc<CudaModule>, CudaError> {
        let options = CompileOptions {
            options: self.options,
            name: Some(file_name.to_string()),
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(self.source, options)
            .map_err(|e| CudaError::Compile(format!("{e:?}")))?;
        ctx.load_module(ptx).map_err(CudaError::driver)
    }
}

/// The program for a model `d_model` wide on a device of compute capability `(major, minor)`;
/// `attention` is the [`ATTENTION_ENV`] setting (`Some("mma")` leaves wgmma out).
pub fn kernel_program(
    d_model: usize,
    (major, minor): (i32, i32),
    attention: Option<&str>,
) -> KernelProgram {
    let wgmma = uses_wgmma((major, minor), attention);
    // Hopper's wgmma is an architecture-specific feature: compute_90a, not compute_90.
    let arch_suffix = if wgmma { "a" } else { "" };
    KernelProgram {
        source: source(d_model),
        options: vec![
            format!("--gpu-architecture=compute_{major}{minor}{arch_suffix}"),
            "-std=c++17".to_string(),
            format!("-DWGMMA_SMEM_BYTES={WGMMA_SHARED_BYTES}"),
            format!("-DTILE_WORK_BYTES={TILE_BYTES}"),
            // Fused multiply-adds, not fast math: divisions stay IEEE (the attention's exponentials
            // are `ex2.approx` by choice: `exp2_ftz` in attention.cu).
            "--fmad=true".to_string(),
        ],
        wgmma,
    }
}

/// The name suffix of the norm kernels for rows of `d` elements.
fn norm_suffix(d: usize) -> String {
    norm_width(d).map_or("any".to_string(), |n| n.to_string())
}

/// Handles of the kernels of `kernels.cu` a model uses.
pub(crate) struct Kernels {
    pub embed_f16: CudaFunction,
    pub embed_f32: CudaFunction,
    pub ln_f16: CudaFunction,
    pub ln_f16_out_f32: CudaFunction,
    pub ln_f32: CudaFunction,
    pub gather_rows: CudaFunction,
    pub copy_keys_values: CudaFunction,
    pub gelu_f16: CudaFunction,
    pub gelu_f32: CudaFunction,
    pub swiglu_f16: CudaFunction,
    pub swiglu_f32: CudaFunction,
    pub rotary_f16: CudaFunction,
    pub rotary_f32: CudaFunction,
    pub attention_simt_f16: CudaFunction,
    pub attention_simt_f32: CudaFunction,
    pub attention_mma_f16_hd64: CudaFunction,
    pub attention_mma_split_f16_hd64: CudaFunction,
    pub attention_mma_f16_hd128: CudaFunction,
    /// The wgmma attention for 64-wide heads (Hopper only; `None` elsewhere).
    pub attention_wgmma_f16_hd64: Option<CudaFunction>,
    /// Keeps the module loaded as long as the handles live.
    _module: Arc<CudaModule>,
}

impl Kernels {
    /// Compiles the kernels for `ctx`'s device (its own compute capability) and loads them,
    /// the norms those for rows of `d_model`.
    pub fn load(ctx: &Arc<CudaContext>, d_model: usize) -> Result<Self, CudaError> {
        let (major, minor) = ctx.compute_capability().map_err(CudaError::driver)?;
        if major < 8 {
            return Err(CudaError::Unsupported(format!(
                "compute capability {major}.{minor}: the engine's tensor-core kernels need 8.0 \
                 or newer (Ampere, Hopper); use the Burn path (`--engine burn`)"
            )));
        }
        let setting = std::env::var(ATTENTION_ENV).ok();
        let program = kernel_program(d_model, (major, minor), setting.as_deref());
        let wgmma = program.wgmma;
        let module = program.load(ctx, "timekd_kernels.cu")?;
        let get = |name: &str| module.load_function(name).map_err(CudaError::driver);
        let norm = |types: &str| get(&format!("ln_{types}_{}", norm_suffix(d_model)));
        // `name` with each attribute of `attributes` set.
        let with = |name: &str, attributes: &[(CUfunction_attribute, i32)]| {
            let kernel = get(name)?;
            for &(attribute, value) in attributes {
                kernel
                    .set_attribute(attribute, value)
                    .map_err(CudaError::driver)?;
            }
            Ok::<_, CudaError>(kernel)
        };
        // Several blocks an SM (four of the mma kernels' 37 KiB, three of the wgmma one's
        // 49 KiB) need the largest shared-memory carveout.
        let carveout = (
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
            100,
        );
        let max_carveout = |name: &str| with(name, &[carveout]);
        let dynamic_shared = (
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            WGMMA_SHARED_BYTES as i32,
        );
        let wgmma_kernel = |name: &str| with(name, &[carveout, dynamic_shared]);
        Ok(Kernels {
            embed_f16: get("embed_f16")?,
            embed_f32: get("embed_f32")?,
            ln_f16: norm("f16")?,
            ln_f16_out_f32: norm("f16_out_f32")?,
            ln_f32: norm("f32")?,
            gather_rows: get("gather_rows")?,
            copy_keys_values: get("copy_keys_values")?,
            gelu_f16: get("gelu_f16")?,
            gelu_f32: get("gelu_f32")?,
            swiglu_f16: get("swiglu_f16")?,
            swiglu_f32: get("swiglu_f32")?,
            rotary_f16: get("rotary_f16")?,
            rotary_f32: get("rotary_f32")?,
            attention_simt_f16: get("attention_simt_f16")?,
            attention_simt_f32: get("attention_simt_f32")?,
            attention_mma_f16_hd64: max_carveout("attention_mma_f16_hd64")?,
            attention_mma_split_f16_hd64: max_carveout("attention_mma_split_f16_hd64")?,
            attention_mma_f16_hd128: get("attention_mma_f16_hd128")?,
            attention_wgmma_f16_hd64: wgmma
                .then(|| wgmma_kernel("attention_wgmma_f16_hd64"))
                .transpose()?,
            _module: module,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{WGMMA_SHARED_BYTES, kernel_program, norm_suffix, source, uses_wgmma};

    #[test]
    fn the_program_targets_the_device_and_names_its_shared_memory() {
        let hopper = kernel_program(768, (9, 0), None);
        assert!(hopper.wgmma);
        assert!(
            hopper
                .options
                .contains(&"--gpu-architecture=compute_90a".to_string())
        );
        let define = format!("-DWGMMA_SMEM_BYTES={WGMMA_SHARED_BYTES}");
        assert!(hopper.options.contains(&define));
        assert!(hopper.source.ends_with("\nLN_WIDTH(6)\n"));
        let mma = kernel_program(768, (9, 0), Some("mma"));
        assert!(!mma.wgmma);
        assert!(
            mma.options
                .contains(&"--gpu-architecture=compute_90".to_string())
        );
        let ampere = kernel_program(2048, (8, 0), None);
        assert!(
            ampere
                .options
                .contains(&"--gpu-architecture=compute_80".to_string())
        );
    }

    #[test]
    fn only_hopper_gets_the_wgmma_attention_and_the_setting_can_refuse_it() {
        assert!(uses_wgmma((9, 0), None));
        assert!(uses_wgmma((9, 0), Some("wgmma")));
        assert!(!uses_wgmma((9, 0), Some("mma")));
        // Ampere, Ada, Blackwell: sm_90a's wgmma is not theirs.
        for cc in [(8, 0), (8, 6), (8, 9), (10, 0), (12, 0)] {
            assert!(!uses_wgmma(cc, None), "{cc:?}");
        }
    }

    #[test]
    fn rows_of_the_common_widths_take_their_own_norm_kernel_and_others_the_generic_one() {
        // GPT-2 small, medium, large; Llama-3.2-1B; GPT-2 xl (1600 = 12.5 x 128); 3B; a tiny model.
        let cases = [
            (768, "6"),
            (1024, "8"),
            (1280, "10"),
            (2048, "16"),
            (1600, "any"),
            (3072, "24"),
            (64, "any"),
            (4096, "any"),
        ];
        for (d, suffix) in cases {
            assert_eq!(norm_suffix(d), suffix, "d = {d}");
            // The source instantiates exactly the kernels the name asks for.
            let instantiated = source(d).matches("\nLN_WIDTH(").count();
            assert_eq!(instantiated, usize::from(suffix != "any"), "d = {d}");
            if suffix != "any" {
                assert!(source(d).ends_with(&format!("\nLN_WIDTH({suffix})\n")));
            }
        }
    }
}

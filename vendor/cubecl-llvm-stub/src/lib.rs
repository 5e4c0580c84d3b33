//! Stand-in for `cubecl-llvm` 0.11.3 in timekd-rs: the items cubecl-cuda 0.11.3 names, with
//! no LLVM behind them. See `README.md`.
//!
//! cubecl-cuda compiles kernels either to CUDA C++ for NVRTC (its `cpp` feature) or through
//! LLVM to PTX. timekd builds it with `cpp`, so nothing here is called at run time; should the
//! LLVM arm ever be selected, compiling a kernel fails with [`LLVM_NOT_BUILT`].

#[cfg(feature = "amdgpu")]
compile_error!(
    "cubecl-llvm is replaced by timekd-rs's stand-in (vendor/cubecl-llvm-stub), which serves \
     cubecl-cuda only: the AMD (burn `rocm`) backend needs the real crate, which downloads LLVM"
);

use cubecl_core::environment::backtrace::BackTrace;
use cubecl_core::ir::amd::GfxArch;
use cubecl_core::ir::attributes::BufferIOAttr;
use cubecl_core::ir::nvidia::SmArch;
use cubecl_core::prelude::KernelDefinition;
use cubecl_core::{CompilationError, Compiler};

/// Why every compilation through this crate fails.
pub const LLVM_NOT_BUILT: &str = "cubecl's LLVM kernel path is not built in timekd-rs: \
    `cubecl-llvm` is replaced by a stand-in (vendor/cubecl-llvm-stub) because the real crate \
    downloads LLVM at build time. Build with the `cuda` feature of timekd-cli, which selects \
    cubecl-cuda's CUDA C++ (NVRTC) backend.";

/// The NVPTX target's pieces that cubecl-cuda names.
pub mod nvptx {
    /// The PTX ISA version the LLVM backend would emit.
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version. Without LLVM nothing emits PTX itself (NVRTC picks its own), so
        /// no value of this type exists.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum PtxVersion {}

        impl PtxVersion {
            /// The newest version a driver loads: always `None`, there is no LLVM to emit it.
            pub fn for_driver(_driver: i32) -> Option<Self> {
                None
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match *self {}
            }
        }
    }
}

/// Pieces shared between targets that cubecl-cuda names.
pub mod shared {
    /// What a device advertises, narrowed to what the LLVM backend lowers.
    pub mod lowered_features {
        use cubecl_core::ir::DeviceProperties;

        /// The GPU target a device's features are narrowed for.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            Nvptx,
        }

        /// Leaves `props` as they are: this stand-in lowers nothing, and every kernel it is
        /// asked to compile fails with [`crate::LLVM_NOT_BUILT`] whatever is advertised.
        pub fn restrict_features(_props: &mut DeviceProperties, _target: GpuTarget) {}
    }
}

/// The LLVM compilation targets cubecl-cuda asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlvmTarget {
    Nvptx,
}

/// The LLVM-backed kernel compiler. Compiling always fails with [`LLVM_NOT_BUILT`].
#[derive(Clone, Debug)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

/// Options cubecl-cuda fills in for the LLVM backend.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMDGPU architecture, `None` for NVPTX.
    pub arch: Option<GfxArch>,
    /// The NVPTX architecture compiled for.
    pub sm_arch: Option<SmArch>,
    /// PTX version to emit.
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    /// Pass scalars and static metadata in the kernel parameter block.
    pub grid_constants: bool,
}

/// A compiled PTX module, as cubecl-cuda reads it. Never produced here.
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// NUL-terminated PTX assembly.
    pub ptx: Vec<core::ffi::c_char>,
    /// Kernel entry point symbol.
    pub entrypoint: String,
    /// IR for logging and cache keys.
    pub ir: String,
    /// Shared memory required per launch, in bytes.
    pub shared_memory_size: usize,
    /// Buffer access modes in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// What the LLVM compiler produces. Never produced here.
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    NvptxCode(NvptxModule),
}

impl core::fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
        }
    }
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        Err(CompilationError::Generic {
            reason: LLVM_NOT_BUILT.to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    fn extension(&self) -> &'static str {
        match self.target {
            LlvmTarget::Nvptx => "ll",
        }
    }

    fn lang_tag(&self) -> &'static str {
        match self.target {
            LlvmTarget::Nvptx => "llvm",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ptx_version_is_chosen_without_llvm() {
        assert_eq!(nvptx::ptx_version::PtxVersion::for_driver(13000), None);
    }

    #[test]
    fn the_compiler_names_its_target_language() {
        let compiler = PlironCompiler {
            target: LlvmTarget::Nvptx,
        };
        assert_eq!(compiler.lang_tag(), "llvm");
        assert_eq!(compiler.extension(), "ll");
    }
}

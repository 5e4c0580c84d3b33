//! Where the work runs: `--device`, `--precision` and `--max-gpu-mem`.
//!
//! Burn 0.22 picks the backend at run time from the [`Device`]: the CPU is burn's Flex backend,
//! a GPU is the cubecl CUDA runtime, which exists only in binaries built with the `cuda`
//! feature. Creating a CUDA device on a machine without one panics in a background thread, so
//! GPUs are always enumerated first and a missing one is a clear error instead.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::tensor::Device;
use timekd_teacher::Precision as TeacherPrecision;

/// What to tell a user who asked for a GPU from a binary built without CUDA.
const NO_CUDA_BUILT: &str = "this timekd binary was built without CUDA support; run with \
    --device cpu, or use a binary built with `--features cuda` (scripts/gpu-build.sh)";

/// What to tell a user who asked for a GPU on a machine that has none.
const NO_CUDA_FOUND: &str = "no CUDA device found (no NVIDIA GPU or driver visible: check \
    nvidia-smi and CUDA_VISIBLE_DEVICES); run with --device cpu";

/// The `--device` argument: `cpu`, `cuda` (= `cuda:0`), `cuda:N` or `cuda:all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(Gpus),
}

/// Which CUDA devices a [`DeviceSpec::Cuda`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpus {
    /// One device, by its CUDA index (after `CUDA_VISIBLE_DEVICES`).
    Index(usize),
    /// Every device found: one worker each.
    All,
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let spec = match lower.as_str() {
            "cpu" => Some(DeviceSpec::Cpu),
            "cuda" => Some(DeviceSpec::Cuda(Gpus::Index(0))),
            "cuda:all" => Some(DeviceSpec::Cuda(Gpus::All)),
            other => other
                .strip_prefix("cuda:")
                .filter(|index| index.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|index| index.parse().ok())
                .map(|index| DeviceSpec::Cuda(Gpus::Index(index))),
        };
        spec.ok_or_else(|| {
            format!(
                "unknown device `{text}`: expected cpu, cuda, cuda:N (N = 0, 1, ...) or cuda:all"
            )
        })
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(Gpus::Index(index)) => write!(f, "cuda:{index}"),
            DeviceSpec::Cuda(Gpus::All) => f.write_str("cuda:all"),
        }
    }
}

impl DeviceSpec {
    /// The devices to run on, one worker each, after checking that they exist. Never
    /// creates a CUDA device that enumeration did not find.
    pub fn devices(self) -> Result<Vec<Device>> {
        match self {
            DeviceSpec::Cpu => Ok(vec![Device::flex()]),
            DeviceSpec::Cuda(gpus) => pick(gpus, cuda_devices()),
        }
    }
}

impl DeviceSpec {
    /// The CUDA ordinal of each of the `count` devices [`devices`](Self::devices) returned
    /// (`None` on the CPU).
    pub fn cuda_ordinals(self, count: usize) -> Vec<Option<usize>> {
        match self {
            DeviceSpec::Cpu => vec![None; count],
            DeviceSpec::Cuda(Gpus::Index(index)) => vec![Some(index); count],
            DeviceSpec::Cuda(Gpus::All) => (0..count).map(Some).collect(),
        }
    }
}

/// The entries of `found` (CUDA devices in index order) that `gpus` names, or why there are
/// none.
fn pick<T>(gpus: Gpus, mut found: Vec<T>) -> Result<Vec<T>> {
    let spec = DeviceSpec::Cuda(gpus);
    if found.is_empty() {
        let why = if cfg!(feature = "cuda") {
            NO_CUDA_FOUND
        } else {
            NO_CUDA_BUILT
        };
        bail!("--device {spec}: {why}");
    }
    match gpus {
        Gpus::All => Ok(found),
        Gpus::Index(index) if index < found.len() => Ok(vec![found.swap_remove(index)]),
        Gpus::Index(_) => {
            let count = found.len();
            let last = count - 1;
            let plural = if count == 1 { "" } else { "s" };
            bail!(
                "--device {spec}: this machine has {count} CUDA device{plural} \
                 (cuda:0 to cuda:{last}); pick one of them or cuda:all"
            )
        }
    }
}

/// The CUDA devices this machine has, in index order. Enumeration only loads the driver: it
/// neither creates a context nor panics where there is no GPU.
#[cfg(feature = "cuda")]
fn cuda_devices() -> Vec<Device> {
    Device::enumerate(burn::tensor::DeviceType::Cuda).into_vec()
}

/// Without the `cuda` feature there is no CUDA runtime to ask.
#[cfg(not(feature = "cuda"))]
fn cuda_devices() -> Vec<Device> {
    Vec::new()
}

/// Free memory in bytes of the GPUs `gpus` names (the smallest), from `nvidia-smi`; `None`
/// when it cannot tell (no nvidia-smi, no such GPU).
pub fn gpu_free_memory(gpus: Gpus) -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let free_mib: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.trim().parse().ok())
        .collect::<Option<_>>()?;
    // nvidia-smi lists every GPU; CUDA indices count only CUDA_VISIBLE_DEVICES's.
    let visible: Vec<usize> = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|entry| entry.trim().parse().ok())
            .collect::<Option<_>>()?,
        _ => (0..free_mib.len()).collect(),
    };
    let chosen = match gpus {
        Gpus::All => visible.iter().map(|&i| free_mib.get(i).copied()).min()?,
        Gpus::Index(index) => free_mib.get(*visible.get(index)?).copied(),
    };
    chosen.map(|mib| mib << 20)
}

/// One GPU, as [`list_gpus`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Its CUDA index: `--device cuda:{index}`.
    pub index: usize,
    /// The name the driver reports, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
}

impl fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cuda:{}  {}", self.index, self.name)
    }
}

/// Every CUDA device of this machine, with its name; empty where the machine has none. This
/// opens each device (a CUDA context per GPU), so call it for listings, not per batch. An error
/// when the binary was built without the `cuda` feature.
#[cfg(feature = "cuda")]
pub fn list_gpus() -> Result<Vec<GpuInfo>> {
    Ok(cuda_devices()
        .iter()
        .enumerate()
        .map(|(index, device)| GpuInfo {
            index,
            name: device
                .identity()
                .map_or_else(|| "(unnamed CUDA device)".to_string(), |id| id.name),
        })
        .collect())
}

/// Without the `cuda` feature no GPU can be used, which is an error rather than an empty list.
#[cfg(not(feature = "cuda"))]
pub fn list_gpus() -> Result<Vec<GpuInfo>> {
    bail!("{NO_CUDA_BUILT}")
}

/// The `--precision` argument: the float type of the teacher's matrix products.
///
/// `f32` means f32 accuracy on every device: on a GPU the products run as three TF32
/// tensor-core products (see [`timekd_teacher::Precision::F32Split`]). `tf32` is the GPU's
/// plain f32 path, whose tensor cores round inputs to TF32 (≈1e-3 relative error after a
/// few layers); on the CPU it equals `f32`. `f16` halves weights, activations and cached
/// keys/values (the residual stream and LayerNorms stay f32): 2.5e-3 from f32 on an H100.
///
/// `bf16` is refused with the reason: its 8-bit mantissa measured 1.6e-2 (CPU) and 1.8e-2
/// (H100) from f32, over the project's 1e-2 bar for half precision; f16 is as fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Tf32,
    F16,
}

/// Why `--precision bf16` is refused.
const NO_BF16: &str = "--precision bf16 is not offered: bfloat16's 8-bit mantissa puts the \
    embeddings 1.6e-2 to 1.8e-2 (relative L2) from f32, over the 1e-2 bar for half precision; \
    use f16 (2.2e-3, as fast, and the residual stream stays f32 so GPT-2's large activations \
    do not overflow)";

impl FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "f16" => Ok(Precision::F16),
            "bf16" => Err(NO_BF16.to_string()),
            _ => Err(format!(
                "unknown precision `{text}`: expected f32, tf32 or f16"
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::F16 => "f16",
        })
    }
}

impl Precision {
    /// How the teacher computes this precision on `device`.
    pub fn teacher(self, device: DeviceSpec) -> TeacherPrecision {
        match (self, device) {
            (Precision::F32, DeviceSpec::Cuda(_)) => TeacherPrecision::F32Split,
            (Precision::F32 | Precision::Tf32, _) => TeacherPrecision::F32,
            (Precision::F16, _) => TeacherPrecision::F16,
        }
    }
}

/// A memory size such as `--max-gpu-mem 24GiB`, in bytes.
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`), decimal units (`KB`, `MB`, `GB`, `TB`) and `B`,
/// case-insensitive, with an optional fraction (`1.5GiB`) and space (`24 GiB`). A unit is
/// required: a bare number is too easy to get wrong by a factor of 2^30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemSize(u64);

impl MemSize {
    const UNITS: [(&'static str, u64); 9] = [
        ("b", 1),
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("tib", 1 << 40),
        ("kb", 1_000),
        ("mb", 1_000_000),
        ("gb", 1_000_000_000),
        ("tb", 1_000_000_000_000),
    ];

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for MemSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| format!("invalid memory size `{text}`: {why}");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        if number.is_empty() {
            return Err(invalid(
                "expected a number and a unit, e.g. 24GiB or 512MiB",
            ));
        }
        if unit.is_empty() {
            return Err(invalid("a unit is required, e.g. 24GiB or 512MiB"));
        }
        let Some(&(_, scale)) = Self::UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(invalid(
                "unknown unit: use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB",
            ));
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(invalid("not a number"));
        }
        let too_large = || invalid("too large");
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        // The fraction exactly, as an integer over a power of ten, so `1.25GiB` is 1.25 * 2^30
        // with no float rounding; anything below one byte is dropped.
        if fraction.len() > 18 {
            return Err(invalid("too many decimals"));
        }
        let fraction_bytes = if fraction.is_empty() {
            0
        } else {
            let numerator: u128 = fraction.parse().map_err(|_| invalid("not a number"))?;
            let denominator = 10u128.pow(fraction.len() as u32);
            // < scale, so it fits a u64.
            (numerator * u128::from(scale) / denominator) as u64
        };
        let bytes = whole
            .checked_mul(scale)
            .and_then(|bytes| bytes.checked_add(fraction_bytes))
            .ok_or_else(too_large)?;
        if bytes == 0 {
            return Err(invalid("must be more than zero"));
        }
        Ok(MemSize(bytes))
    }
}

impl fmt::Display for MemSize {
    /// In the largest binary unit that keeps at least one whole unit, with up to two decimals:
    /// `24 GiB`, `1.5 GiB`, `512 MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, scale) = [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ]
        .into_iter()
        .find(|&(_, scale)| self.0 >= scale)
        .unwrap_or(("B", 1));
        if self.0.is_multiple_of(scale) {
            write!(f, "{} {name}", self.0 / scale)
        } else {
            let value = format!("{:.2}", self.0 as f64 / scale as f64);
            let value = value.trim_end_matches('0').trim_end_matches('.');
            write!(f, "{value} {name}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn device_specs_parse() {
        let cases = [
            ("cpu", DeviceSpec::Cpu),
            ("CPU", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(Gpus::Index(0))),
            ("cuda:0", DeviceSpec::Cuda(Gpus::Index(0))),
            ("cuda:3", DeviceSpec::Cuda(Gpus::Index(3))),
            (" cuda:12 ", DeviceSpec::Cuda(Gpus::Index(12))),
            ("cuda:all", DeviceSpec::Cuda(Gpus::All)),
            ("CUDA:ALL", DeviceSpec::Cuda(Gpus::All)),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<DeviceSpec>(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_device_specs_are_rejected_with_the_choices() {
        for text in [
            "", "gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:x", "cuda:1:2", "cuda0", "cpu:0",
        ] {
            let err = text.parse::<DeviceSpec>().unwrap_err();
            assert!(err.contains("expected cpu, cuda, cuda:N"), "{text}: {err}");
        }
        // More than a usize holds.
        assert!(
            "cuda:99999999999999999999999"
                .parse::<DeviceSpec>()
                .is_err()
        );
    }

    #[test]
    fn device_specs_display_as_they_parse() {
        for text in ["cpu", "cuda:0", "cuda:7", "cuda:all"] {
            assert_eq!(text.parse::<DeviceSpec>().unwrap().to_string(), text);
        }
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap().to_string(), "cuda:0");
    }

    #[test]
    fn cpu_resolves_to_flex() {
        assert_eq!(DeviceSpec::Cpu.devices().unwrap(), vec![Device::flex()]);
    }

    #[test]
    fn no_gpu_is_a_clear_error() {
        let err = pick::<u8>(Gpus::All, Vec::new()).unwrap_err().to_string();
        assert!(err.starts_with("--device cuda:all: "), "{err}");
        assert!(err.contains("--device cpu"), "{err}");
        if cfg!(feature = "cuda") {
            assert!(err.contains("no CUDA device found"), "{err}");
        } else {
            assert!(err.contains("built without CUDA support"), "{err}");
            assert!(err.contains("--features cuda"), "{err}");
        }
    }

    #[test]
    fn gpus_are_picked_by_index_or_all() {
        let found = || vec!["gpu0", "gpu1", "gpu2"];
        assert_eq!(pick(Gpus::Index(0), found()).unwrap(), ["gpu0"]);
        assert_eq!(pick(Gpus::Index(2), found()).unwrap(), ["gpu2"]);
        assert_eq!(pick(Gpus::All, found()).unwrap(), found());

        let err = pick(Gpus::Index(3), found()).unwrap_err().to_string();
        assert!(
            err.contains("--device cuda:3: this machine has 3 CUDA devices"),
            "{err}"
        );
        assert!(err.contains("cuda:0 to cuda:2"), "{err}");
        let err = pick(Gpus::Index(1), vec!["gpu0"]).unwrap_err().to_string();
        assert!(
            err.contains("has 1 CUDA device (cuda:0 to cuda:0)"),
            "{err}"
        );
    }

    #[test]
    fn a_cuda_spec_never_panics_on_this_machine() {
        // Enumeration first: on a machine without a GPU (or a binary without CUDA) this is an
        // error, never the background-thread panic of creating a device that is not there.
        let result = DeviceSpec::Cuda(Gpus::All).devices();
        if cfg!(not(feature = "cuda")) {
            assert!(result.is_err());
            assert!(list_gpus().is_err());
        } else if let Ok(gpus) = list_gpus() {
            assert_eq!(result.map(|devices| devices.len()).unwrap_or(0), gpus.len());
        }
    }

    #[test]
    fn gpu_info_displays_its_device_argument() {
        let gpu = GpuInfo {
            index: 1,
            name: "NVIDIA H100 80GB HBM3".to_string(),
        };
        assert_eq!(gpu.to_string(), "cuda:1  NVIDIA H100 80GB HBM3");
    }

    #[test]
    fn precisions_parse_and_map_to_the_teacher() {
        let gpu = DeviceSpec::Cuda(Gpus::Index(0));
        let cases = [
            (
                "f32",
                Precision::F32,
                TeacherPrecision::F32,
                TeacherPrecision::F32Split,
            ),
            (
                "TF32",
                Precision::Tf32,
                TeacherPrecision::F32,
                TeacherPrecision::F32,
            ),
            (
                "f16",
                Precision::F16,
                TeacherPrecision::F16,
                TeacherPrecision::F16,
            ),
        ];
        for (text, precision, on_cpu, on_gpu) in cases {
            assert_eq!(text.parse::<Precision>(), Ok(precision));
            assert_eq!(precision.teacher(DeviceSpec::Cpu), on_cpu);
            assert_eq!(precision.teacher(gpu), on_gpu);
            assert_eq!(precision.to_string(), text.trim().to_ascii_lowercase());
        }
        for text in ["", "fp16", "f64", "half", "int8"] {
            let err = text.parse::<Precision>().unwrap_err();
            assert!(err.contains("expected f32, tf32 or f16"), "{text}: {err}");
        }
        let err = " BF16".parse::<Precision>().unwrap_err();
        assert!(
            err.contains("bf16 is not offered") && err.contains("use f16"),
            "{err}"
        );
    }

    #[test]
    fn memory_sizes_parse() {
        let cases = [
            ("24GiB", 24 << 30),
            ("512MiB", 512 << 20),
            ("512mib", 512 << 20),
            ("24 GiB", 24 << 30),
            (" 1.5GiB ", 3 << 29),
            (".5KiB", 512),
            ("2.KiB", 2048),
            ("1TiB", 1 << 40),
            ("64KiB", 64 << 10),
            ("24GB", 24_000_000_000),
            ("1.25MB", 1_250_000),
            ("1.25GiB", 5 << 28),
            ("0.333333333333333333KiB", 341),
            ("100B", 100),
            ("1.999B", 1),
        ];
        for (text, bytes) in cases {
            assert_eq!(
                text.parse::<MemSize>().map(MemSize::bytes),
                Ok(bytes),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_memory_sizes_are_rejected() {
        let cases = [
            ("24", "a unit is required"),
            ("GiB", "expected a number"),
            ("", "expected a number"),
            ("24XB", "unknown unit"),
            ("24 G", "unknown unit"),
            ("-1GiB", "expected a number"),
            ("1.2.3GiB", "not a number"),
            (".GiB", "not a number"),
            ("0GiB", "more than zero"),
            ("0.1B", "more than zero"),
            ("1.0000000000000000001GiB", "too many decimals"),
            ("99999999999TiB", "too large"),
            ("99999999999999999999999B", "too large"),
        ];
        for (text, why) in cases {
            let err = text.parse::<MemSize>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains(&format!("`{text}`")), "{text}: {err}");
        }
    }

    #[test]
    fn memory_sizes_display_in_binary_units() {
        let cases = [
            ("24GiB", "24 GiB"),
            ("1.5GiB", "1.5 GiB"),
            ("512MiB", "512 MiB"),
            ("24GB", "22.35 GiB"),
            ("1000B", "1000 B"),
            ("1024B", "1 KiB"),
            ("2TiB", "2 TiB"),
        ];
        for (text, shown) in cases {
            assert_eq!(
                text.parse::<MemSize>().unwrap().to_string(),
                shown,
                "{text}"
            );
        }
    }

    #[test]
    fn clap_parses_the_arguments_through_from_str() {
        #[derive(Parser, Debug)]
        struct Args {
            #[arg(long, default_value = "cpu")]
            device: DeviceSpec,
            #[arg(long, default_value = "f32")]
            precision: Precision,
            #[arg(long)]
            max_gpu_mem: Option<MemSize>,
        }
        let args = Args::try_parse_from([
            "timekd",
            "--device",
            "cuda:all",
            "--precision",
            "f16",
            "--max-gpu-mem",
            "24GiB",
        ])
        .unwrap();
        assert_eq!(args.device, DeviceSpec::Cuda(Gpus::All));
        assert_eq!(args.precision, Precision::F16);
        assert_eq!(args.max_gpu_mem.map(MemSize::bytes), Some(24 << 30));

        let defaults = Args::try_parse_from(["timekd"]).unwrap();
        assert_eq!(defaults.device, DeviceSpec::Cpu);
        assert_eq!(defaults.precision, Precision::F32);

        let err = Args::try_parse_from(["timekd", "--device", "tpu"]).unwrap_err();
        assert!(err.to_string().contains("expected cpu, cuda"), "{err}");
    }
}

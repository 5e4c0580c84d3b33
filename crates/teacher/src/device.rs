//! Where the work runs: a [`DeviceSpec`] (`cpu`, `cuda`, `cuda:N`, `cuda:all`) resolved to
//! Burn devices, for extraction (one worker per device) and for training (which takes the
//! resolved `&[Device]`, so the student needs no dependency on this crate).
//!
//! Burn 0.22 picks the backend at run time from the [`Device`]: the CPU is burn's Flex
//! backend, a GPU is the cubecl CUDA runtime, which exists only in builds with this crate's
//! `cuda` feature. Creating a CUDA device on a machine without one panics in a background
//! thread, so GPUs are always enumerated first and a missing one is a clear error instead.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// What to tell a user who asked for a GPU from a binary built without CUDA.
const NO_CUDA_BUILT: &str = "this timekd binary was built without CUDA support; run with \
    --device cpu, or use a binary built with `--features cuda` (scripts/gpu-build.sh)";

/// What to tell a user who asked for a GPU on a machine that has none.
const NO_CUDA_FOUND: &str = "no CUDA device found (no NVIDIA GPU or driver visible: check \
    nvidia-smi and CUDA_VISIBLE_DEVICES); run with --device cpu";

/// A device that was asked for and cannot be used; the message says why and what to pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--device {spec}: {reason}")]
pub struct DeviceError {
    /// The device asked for.
    pub spec: DeviceSpec,
    /// Why it cannot be used.
    pub reason: String,
}

/// Where to run: `cpu`, `cuda` (= `cuda:0`), `cuda:N` or `cuda:all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// Burn's Flex CPU backend.
    Cpu,
    /// One or every CUDA GPU.
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

/// One resolved device: the Burn device and, on a GPU, its CUDA ordinal (which the
/// teacher's CUDA engine opens).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerDevice {
    /// The Burn device.
    pub device: Device,
    /// The CUDA index, `None` on the CPU.
    pub cuda_ordinal: Option<usize>,
}

impl WorkerDevice {
    /// The spec naming this one device (`cpu` or `cuda:N`), as `--device` takes it.
    pub fn spec(&self) -> DeviceSpec {
        self.cuda_ordinal.map_or(DeviceSpec::Cpu, |ordinal| {
            DeviceSpec::Cuda(Gpus::Index(ordinal))
        })
    }
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
    /// Whether this names GPUs.
    pub fn is_gpu(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }

    /// The devices to run on, one worker each, after checking that they exist. Never
    /// creates a CUDA device that enumeration did not find.
    pub fn devices(self) -> Result<Vec<Device>, DeviceError> {
        Ok(self.workers()?.into_iter().map(|w| w.device).collect())
    }

    /// [`devices`](Self::devices) with each GPU's CUDA ordinal.
    pub fn workers(self) -> Result<Vec<WorkerDevice>, DeviceError> {
        match self {
            DeviceSpec::Cpu => Ok(vec![WorkerDevice {
                device: Device::flex(),
                cuda_ordinal: None,
            }]),
            DeviceSpec::Cuda(gpus) => {
                let found: Vec<WorkerDevice> = cuda_devices()
                    .into_iter()
                    .enumerate()
                    .map(|(ordinal, device)| WorkerDevice {
                        device,
                        cuda_ordinal: Some(ordinal),
                    })
                    .collect();
                pick(gpus, found)
            }
        }
    }
}

/// The entries of `found` (CUDA devices in index order) that `gpus` names, or why there are
/// none.
fn pick<T>(gpus: Gpus, mut found: Vec<T>) -> Result<Vec<T>, DeviceError> {
    let spec = DeviceSpec::Cuda(gpus);
    let error = |reason: String| DeviceError { spec, reason };
    if found.is_empty() {
        let why = if cfg!(feature = "cuda") {
            NO_CUDA_FOUND
        } else {
            NO_CUDA_BUILT
        };
        return Err(error(why.to_string()));
    }
    match gpus {
        Gpus::All => Ok(found),
        Gpus::Index(index) if index < found.len() => Ok(vec![found.swap_remove(index)]),
        Gpus::Index(_) => {
            let count = found.len();
            let last = count - 1;
            let plural = if count == 1 { "" } else { "s" };
            Err(error(format!(
                "this machine has {count} CUDA device{plural} (cuda:0 to cuda:{last}); pick one \
                 of them or cuda:all"
            )))
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

/// Free memory in bytes of the GPUs `gpus` names (the smallest), as their driver reports it
/// (`cuMemGetInfo`: other processes' allocations counted); `None` when it cannot tell (no
/// such GPU, no driver).
#[cfg(feature = "cuda")]
pub fn gpu_free_memory(gpus: Gpus) -> Option<u64> {
    let free = |ordinal: usize| {
        crate::cuda::device_memory(ordinal)
            .ok()
            .map(|(free, _)| free)
    };
    match gpus {
        Gpus::Index(index) => free(index),
        Gpus::All => {
            let count = cudarc::driver::CudaContext::device_count().ok()?;
            (0..count as usize)
                .map(free)
                .collect::<Option<Vec<u64>>>()?
                .into_iter()
                .min()
        }
    }
}

/// Without the `cuda` feature there is no GPU to ask.
#[cfg(not(feature = "cuda"))]
pub fn gpu_free_memory(_gpus: Gpus) -> Option<u64> {
    None
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
/// opens each device (a CUDA context per GPU), so call it for listings, not per batch. An
/// error when this crate was built without the `cuda` feature.
#[cfg(feature = "cuda")]
pub fn list_gpus() -> Result<Vec<GpuInfo>, DeviceError> {
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
pub fn list_gpus() -> Result<Vec<GpuInfo>, DeviceError> {
    Err(DeviceError {
        spec: DeviceSpec::Cuda(Gpus::All),
        reason: NO_CUDA_BUILT.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_worker_is_named_by_the_spec_of_its_one_device() {
        let cpu = DeviceSpec::Cpu.workers().unwrap();
        assert_eq!(cpu[0].spec(), DeviceSpec::Cpu);
        let gpu = WorkerDevice {
            device: Device::flex(),
            cuda_ordinal: Some(3),
        };
        assert_eq!(gpu.spec().to_string(), "cuda:3");
    }

    #[test]
    fn cpu_resolves_to_flex() {
        assert_eq!(DeviceSpec::Cpu.devices().unwrap(), vec![Device::flex()]);
        assert_eq!(DeviceSpec::Cpu.workers().unwrap()[0].cuda_ordinal, None);
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
}

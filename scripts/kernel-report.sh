#!/usr/bin/env bash
# What ptxas makes of the CUDA engine's kernels, on a machine without a GPU: registers, spills
# and shared memory per kernel, and ptxas's performance notes (C75xx: a kernel's wgmma
# serialised, which a GPU run only shows as a slow kernel).
#
#   scripts/kernel-report.sh                            # GPT-2 small's width on Hopper (9.0)
#   D_MODEL=2048 CAPABILITY=8.0 scripts/kernel-report.sh  # Llama-3.2-1B's width on an A100
#   ONLY=attention scripts/kernel-report.sh             # the kernels whose name matches
#   ATTENTION=mma scripts/kernel-report.sh              # as with TIMEKD_CUDA_ATTENTION=mma
#   SCA_N=21 scripts/kernel-report.sh                   # the fused SCA's kernels for 21 variables
#
# The program is the one the engine compiles (examples/kernel_program.rs writes it out). NVRTC
# and ptxas come from NVIDIA's pip wheels (nvidia-cuda-nvrtc-cu12, nvidia-cuda-nvcc-cu12),
# downloaded once into TOOLS (default ~/.cache/timekd/cuda-tools). Builds into target-cuda/,
# as scripts/gpu-build.sh does. Exits 1 when ptxas serialised a kernel's wgmma.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools="${TOOLS:-$HOME/.cache/timekd/cuda-tools}"
version=12.9.86

# unpack NAME WHEEL: NVIDIA's wheel WHEEL (this version) unpacked into $tools/NAME.
unpack() {
    local name=$1 wheel=$2
    [[ -e "$tools/$name/.unpacked" ]] && return
    mkdir -p "$tools/wheels" "$tools/$name"
    echo "kernel-report: downloading $wheel $version into $tools" >&2
    python3 -m pip download --no-deps --quiet "$wheel==$version" -d "$tools/wheels"
    python3 -m zipfile -e "$tools/wheels/${wheel//-/_}-$version"-*.whl "$tools/$name"
    touch "$tools/$name/.unpacked"
}
unpack nvrtc nvidia-cuda-nvrtc-cu12
unpack nvcc nvidia-cuda-nvcc-cu12
nvrtc="$tools/nvrtc/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
ptxas="$tools/nvcc/nvidia/cuda_nvcc/bin/ptxas"
chmod +x "$ptxas"

cargo xtask setup >&2  # libhdf5-dev, which the teacher crate's default `store` feature links
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
CARGO_TARGET_DIR=target-cuda cargo run --release --quiet -p timekd-teacher --features cuda \
    --example kernel_program -- "$work" "${D_MODEL:-768}" "${CAPABILITY:-9.0}" \
    ${SCA_N:+sca=$SCA_N} ${ATTENTION:-} >&2

python3 - "$work" "$nvrtc" "$ptxas" "${ONLY:-}" <<'PY'
import ctypes, re, subprocess, sys

work, nvrtc_path, ptxas, only = sys.argv[1:5]
source = open(f"{work}/kernels.cu", "rb").read()
options = [o.encode() for o in open(f"{work}/options.txt").read().split()]

nvrtc = ctypes.CDLL(nvrtc_path)
prog = ctypes.c_void_p()
nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source, b"timekd_kernels.cu", 0, None, None)
status = nvrtc.nvrtcCompileProgram(prog, len(options), (ctypes.c_char_p * len(options))(*options))
size = ctypes.c_size_t()
nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
log = ctypes.create_string_buffer(size.value)
nvrtc.nvrtcGetProgramLog(prog, log)
if log.value.strip():
    print(log.value.decode())
if status:
    sys.exit(f"kernel-report: NVRTC failed (status {status})")
nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size))
ptx = ctypes.create_string_buffer(size.value)
nvrtc.nvrtcGetPTX(prog, ptx)
open(f"{work}/kernels.ptx", "wb").write(ptx.value)

arch = next(o.decode() for o in options if o.startswith(b"--gpu-architecture="))
sm = arch.split("=compute_")[1]
run = subprocess.run([ptxas, f"-arch=sm_{sm}", "-v", f"{work}/kernels.ptx", "-o", f"{work}/kernels.cubin"],
                     capture_output=True, text=True)
if run.returncode:
    sys.exit(f"kernel-report: ptxas failed:\n{run.stderr}")

kernels, notes, current = {}, [], None
for line in run.stderr.splitlines():
    if m := re.search(r"Compiling entry function '(\w+)'", line):
        current = m.group(1)
        kernels[current] = {}
    elif m := re.search(r"\((C\d+)\) (.*)", line):
        notes.append((m.group(1), m.group(2)))
    elif current and (m := re.search(r"Used (\d+) registers", line)):
        kernels[current]["registers"] = int(m.group(1))
        if s := re.search(r"(\d+) bytes smem", line):
            kernels[current]["smem"] = int(s.group(1))
    elif current and (m := re.search(r"(\d+) bytes spill stores", line)):
        kernels[current]["spills"] = int(m.group(1))

print(f"ptxas sm_{sm}, {' '.join(o.decode() for o in options)}")
print(f"{'kernel':36} {'registers':>9} {'spill B':>8} {'static smem B':>14}")
for name, k in kernels.items():
    if only and not re.search(only, name):
        continue
    print(f"{name:36} {k.get('registers', 0):9} {k.get('spills', 0):8} {k.get('smem', 0):14}")
serialised = False
for code, text in notes:
    print(f"{code}: {text}")
    serialised |= "serialized" in text
sys.exit(1 if serialised else 0)
PY

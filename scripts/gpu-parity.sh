#!/usr/bin/env bash
# GPU against CPU: stored embeddings of every --precision compared with a CPU f32 store of the
# same windows, for the tiny test model and a GPT-2-small-shaped random model. Run it on the
# GPU machine with a CUDA build (scripts/gpu-build.sh); needs python3 with h5py and numpy.
#
#   scripts/gpu-parity.sh [TIMEKD]            # default .gpu/timekd
#   WINDOWS=64 SMALL_WINDOWS=16 scripts/gpu-parity.sh
#
# Prints, per model and precision, the largest relative L2 error over windows (each window's
# [N, d] embedding against the CPU's) and the largest absolute error.
set -euo pipefail

timekd="${1:-.gpu/timekd}"
windows="${WINDOWS:-64}"
small_windows="${SMALL_WINDOWS:-16}"
work="${WORK:-/tmp/timekd-parity}"
mkdir -p "$work"

random_model="$work/gpt2-small-random"
[[ -f "$random_model/model.safetensors" ]] ||
    "$timekd" random-model --seed 0 --out "$random_model" >/dev/null

extract() { # name model windows device precision
    "$timekd" extract --data ETTh1 --output-len 24 --split train --model "$2" \
        --max-windows "$3" --device "$4" --precision "$5" --overwrite \
        --out "$work/$1/$4-$5" 2>&1 | grep -E "windows/s|error" || true
}

compare() { # name
    python3 - "$work/$1" <<'PY'
import glob, os, sys
import h5py, numpy as np
root = sys.argv[1]
def load(tag):
    (path,) = glob.glob(os.path.join(root, tag, "*", "*", "train.h5"))
    with h5py.File(path, "r") as f:
        return f["embeddings"][...].astype(np.float64)
ref = load("cpu-f32")
for tag in ["cuda-f32", "cuda-tf32", "cuda-f16"]:
    try:
        got = load(tag)
    except ValueError:
        print(f"  {tag:<10} missing"); continue
    err = np.linalg.norm((got - ref).reshape(len(ref), -1), axis=1) / np.linalg.norm(ref.reshape(len(ref), -1), axis=1)
    print(f"  {tag:<10} max rel L2 {err.max():.3e}  mean {err.mean():.3e}  max abs {np.abs(got - ref).max():.3e}  ({len(ref)} windows)")
PY
}

for case in "tiny:models/tiny-gpt2:$windows" "gpt2-small-random:$random_model:$small_windows"; do
    IFS=: read -r name model count <<<"$case"
    echo "== $name ($count ETTh1 train windows, H = 24)"
    extract "$name" "$model" "$count" cpu f32
    for precision in f32 tf32 f16; do
        extract "$name" "$model" "$count" cuda "$precision"
    done
    compare "$name"
done

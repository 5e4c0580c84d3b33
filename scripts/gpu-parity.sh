#!/usr/bin/env bash
# GPU against CPU: stored embeddings from the GPU (every engine and precision) compared with
# CPU f32 stores of the same windows, for the tiny test model, GPT-2-small-shaped and
# GPT-2-xl-width random models and the LLaMA (CUDA engine and Burn) and BERT (Burn's CUDA
# backend, the engine it runs on) fixtures, short and long prompts, one H at a time and all
# lengths in one pass.
#
#   scripts/gpu-parity.sh --make-refs target/release/timekd   # on a CPU machine: the references
#   scripts/gpu-parity.sh [TIMEKD]                            # on the GPU machine (default .gpu/timekd)
#   ONLY='^small' scripts/gpu-parity.sh                        # the cases whose name matches
#
# References go to REF (default .bench/ref; carry it to the GPU machine). Both sides make the
# random model themselves (`timekd random-model --seed 0` is deterministic). Needs python3 with
# h5py and numpy on the GPU side. Prints, per case, engine and precision, the largest relative L2
# error over windows (each window's [N, d] embedding against the CPU's) and the largest absolute
# error; exits 1 when one is over its bound (f32 1e-4, f16 1e-2, tf32 5e-3).
set -euo pipefail

make_refs=0
if [[ "${1:-}" == "--make-refs" ]]; then
    make_refs=1
    shift
fi
timekd="${1:-.gpu/timekd}"
ref="${REF:-.bench/ref}"
work="${WORK:-/tmp/timekd-parity}"
weather="${WEATHER:-../shared/data/weather.csv}"
mkdir -p "$work"
random_model="$work/gpt2-small-random"
[[ -f "$random_model/model.safetensors" ]] ||
    "$timekd" random-model --seed 0 --out "$random_model" >/dev/null
# GPT-2 xl's width (1600, 25 heads), two blocks.
xl_model="$work/gpt2-xl-width-random"
[[ -f "$xl_model/model.safetensors" ]] ||
    "$timekd" random-model --seed 0 --layers 2 --width 1600 --heads 25 --out "$xl_model" >/dev/null

families=crates/teacher/tests/fixtures/families
# name | data | H (a list: one pass for all) | model | windows
cases=(
    "tiny|ETTh1|24|models/tiny-gpt2|64"
    "tiny-weather-192|$weather|192|models/tiny-gpt2|32"
    "tiny-all-lengths|ETTh1|24,36,48,96,192|models/tiny-gpt2|32"
    "small|ETTh1|24|$random_model|4"
    "small-192|ETTh1|192|$random_model|2"
    "xl-width|ETTh1|24,36,48,96,192|$xl_model|4"
    "llama|ETTh1|24|$families/llama|32"
    "llama-all-lengths|ETTh1|24,36,48,96,192|$families/llama|16"
    "bert|ETTh1|24|$families/bert|32"
)

extract() { # out data lengths model windows device precision engine
    "$timekd" extract --data "$2" --output-len "$3" --split train --model "$4" \
        --max-windows "$5" --device "$6" --precision "$7" --engine "$8" --overwrite \
        --out "$1" 2>&1 | grep -E "windows/s|engine|error|Error" || true
}

if ((make_refs)); then
    for case in "${cases[@]}"; do
        IFS='|' read -r name data lengths model windows <<<"$case"
        [[ "$name" =~ ${ONLY:-.} ]] || continue
        # One H at a time on the CPU: the all-lengths GPU pass is compared with these.
        for h in ${lengths//,/ }; do
            echo "== reference $name H=$h"
            extract "$ref/$name" "$data" "$h" "$model" "$windows" cpu f32 burn
        done
    done
    exit 0
fi

status=0
compare() { # case-name gpu-dir label bound
    python3 - "$ref/$1" "$2" "$3" "$4" <<'PY' || status=1
import glob, os, sys
import h5py, numpy as np
ref_root, got_root, label, bound = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
worst = 0.0
for ref_path in sorted(glob.glob(os.path.join(ref_root, "*", "*", "train.h5"))):
    rel = os.path.relpath(ref_path, ref_root)
    got_path = os.path.join(got_root, rel)
    if not os.path.exists(got_path):
        print(f"  {label:<22} {rel}: MISSING"); worst = float("inf"); continue
    with h5py.File(ref_path, "r") as f: ref = f["embeddings"][...].astype(np.float64)
    with h5py.File(got_path, "r") as f: got = f["embeddings"][...].astype(np.float64)
    n = len(ref)
    if got.shape != ref.shape or not np.isfinite(got).all():
        print(f"  {label:<22} {rel}: shape {got.shape} vs {ref.shape} or non-finite values"); worst = float("inf"); continue
    err = np.linalg.norm((got - ref).reshape(n, -1), axis=1) / np.linalg.norm(ref.reshape(n, -1), axis=1)
    worst = max(worst, err.max())
    print(f"  {label:<22} {rel:<18} max rel L2 {err.max():.3e}  mean {err.mean():.3e}  max abs {np.abs(got - ref).max():.3e}  ({n} windows)")
ok = worst <= bound
print(f"  {label:<22} worst {worst:.3e} (bound {bound:.0e}) {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
}

for case in "${cases[@]}"; do
    IFS='|' read -r name data lengths model windows <<<"$case"
    [[ "$name" =~ ${ONLY:-.} ]] || continue
    echo "== $name (ETTh1/weather train, H = $lengths, $windows windows)"
    runs=("cuda:f32:1e-4" "cuda:f16:1e-2" "cuda:tf32:5e-3" "burn:f16:1e-2")
    # LLaMA runs on the CUDA engine (Burn once more for comparison); BERT on Burn only.
    case "$model" in
        "$families"/llama) runs=("cuda:f32:1e-4" "cuda:f16:1e-2" "burn:f16:1e-2") ;;
        "$families"/*) runs=("burn:f32:1e-4" "burn:f16:1e-2") ;;
    esac
    for run in "${runs[@]}"; do
        IFS=: read -r engine precision bound <<<"$run"
        # Burn's path is only the comparison point for GPT-2: once, on the short case.
        if [[ "$engine" == burn && "$name" != tiny && "$model" != "$families"/* ]]; then continue; fi
        out="$work/$name/$engine-$precision"
        rm -rf "$out"
        extract "$out" "$data" "$lengths" "$model" "$windows" cuda "$precision" "$engine"
        compare "$name" "$out" "$engine $precision" "$bound"
    done
done
exit $status

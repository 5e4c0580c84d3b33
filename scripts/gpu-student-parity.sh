#!/usr/bin/env bash
# The student on the GPU against the same binary on the CPU: one epoch of ETTh1 H=24 on the
# first 256 windows, dropout off and no shuffling (so both runs compute the same function),
# then the train/val losses and test MSE of both side by side with their relative gaps.
# Run it on the GPU machine with a CUDA build (scripts/gpu-build.sh; it has both backends).
#
#   scripts/gpu-student-parity.sh [TIMEKD]      # default .gpu/timekd
#   TRAIN_ENGINE=burn scripts/gpu-student-parity.sh   # Burn's CUDA backend instead of the
#                                                      # student's engine (--train-engine)
#
# It extracts the tiny model's stores first (GPU, f32) unless WORK already holds them.
set -euo pipefail

timekd="${1:-.gpu/timekd}"
work="${WORK:-/tmp/timekd-student-parity}"
mkdir -p "$work"
for split in train val; do
    "$timekd" extract --data ETTh1 --output-len 24 --split "$split" --model models/tiny-gpt2 \
        --max-windows 256 --device cuda --precision f32 --out "$work/stores" 2>&1 | tail -1
done
for device in cpu cuda; do
    rm -rf "$work/run-$device"
    "$timekd" train --data ETTh1 --output-len 24 --stores "$work/stores" --device "$device" \
        --epochs 1 --max-windows 256 --dropout 0 --no-shuffle --batch-size 16 --channel 64 \
        --train-engine "${TRAIN_ENGINE:-auto}" --run-dir "$work/run-$device" 2>&1 | grep -E "^epoch|rror" || true
done
python3 - "$work" <<'PY'
import json, sys
root = sys.argv[1]
def numbers(device):
    m = json.loads(open(f"{root}/run-{device}/metrics.jsonl").readline())
    t = json.load(open(f"{root}/run-{device}/test.json"))
    return {"train loss": m["train"]["total"], "val loss": m["val"]["total"], "test MSE": t["mse"]}
cpu, gpu = numbers("cpu"), numbers("cuda")
for key in cpu:
    gap = abs(gpu[key] - cpu[key]) / abs(cpu[key])
    print(f"{key:<11} cpu {cpu[key]:.6f}  gpu {gpu[key]:.6f}  relative gap {gap:.2e}")
PY

#!/usr/bin/env bash
# On the GPU machine: a LLaMA-3.2-1B-shaped teacher (SIZE=3b: -3B-shaped; random bf16 weights,
# made here with transformers) through `timekd extract` (f16, --max-gpu-mem 24GiB; each engine of ENGINES:
# `cuda`, the CUDA engine, by default; add `burn` for Burn's CUDA backend) and through the
# Hugging Face anchor (batched LlamaModel, SDPA, the calibrated mask;
# scripts/bench/llama_reference.py) on the same prompts: weather train, H = 96, WINDOWS windows
# (21 variables each); then every H of weather, train + val, in one pass (ours only, the first
# engine), for the projection. Peak GPU memory sampled with nvidia-smi.
#
#   scripts/bench/llama-gpu.sh [TIMEKD]    # WEATHER=weather.csv WINDOWS=128 ENGINES="cuda burn" SIZE=3b
set -euo pipefail
timekd="${1:-.gpu/timekd}"
work="${WORK:-/tmp/timekd-llama}"
weather="${WEATHER:-../shared/data/weather.csv}"
windows="${WINDOWS:-128}"
# Rates after the first REPORT_AFTER windows (model load and warm-up excluded, as the
# reference excludes its own), beside the whole run's.
report_after="${REPORT_AFTER:-16}"
engines="${ENGINES:-cuda}"
size="${SIZE:-1b}"
model="$work/llama-$size-shaped"
mkdir -p "$work"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
[[ -f "$model/config.json" ]] ||
    python3 scripts/bench/make_llama_shaped.py "$model" \
        crates/teacher/tests/fixtures/families/llama/tokenizer.json --size "$size"
list=$(seq -s, 0 $((windows - 1)))
"$timekd" prompts --data "$weather" --output-len 96 --windows "$list" --model "$model" \
    >"$work/prompts.jsonl"
python3 scripts/bench/llama_reference.py "$work/prompts.jsonl" "$model" --dtype f16 2>&1 |
    grep -v -i warn || true

peak() { # command...: runs it, prints the peak of nvidia-smi's memory.used while it ran
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$work/mem.log" &
    local sampler=$!
    local start end
    start=$(date +%s.%N)
    "$@" 2>&1 | grep -E " in [0-9.]+ s =|steady|engine|error|Error" | tail -4 || true
    end=$(date +%s.%N)
    kill "$sampler" 2>/dev/null || true
    echo "  wall $(python3 -c "print(f\"{$end - $start:.1f}\")") s, peak GPU memory $(sort -n "$work/mem.log" | tail -1) MiB"
}

for engine in $engines; do
    for pass in 1 2; do
        echo "== timekd extract, weather train H=96, $windows windows, f16, $engine (pass $pass)"
        peak "$timekd" extract --data "$weather" --output-len 96 --split train --model "$model" \
            --max-windows "$windows" --device cuda:0 --precision f16 --max-gpu-mem 24GiB \
            --engine "$engine" --report-after "$report_after" --overwrite --out "$work/ours-$engine"
    done
done
first="${engines%% *}"
echo "== timekd extract, weather every H (24,36,48,96,192), train + val, $windows windows each, one pass, $first"
peak "$timekd" extract --data "$weather" --output-len 24,36,48,96,192 --split all \
    --model "$model" --max-windows "$windows" --device cuda:0 --precision f16 \
    --max-gpu-mem 24GiB --engine "$first" --report-after "$((5 * report_after))" --overwrite \
    --out "$work/ours-all"

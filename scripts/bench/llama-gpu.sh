#!/usr/bin/env bash
# On the GPU machine, in one command: every output length of weather (H = 24,36,48,96,192),
# train + val, the first WINDOWS windows of each split, through
#   1. the Hugging Face anchor: batched LlamaModel (SDPA, the calibrated mask;
#      scripts/bench/llama_reference.py) over every GT and HD prompt of those windows, each
#      prompt whole (one embedding = one window at one H);
#   2. `timekd extract` with a LLaMA-3.2-1B-shaped teacher (SIZE=3b: -3B-shaped; random bf16
#      weights made here with transformers), f16, --max-gpu-mem 24GiB, one pass for every H,
#      on ENGINE (cuda: the CUDA engine, by default; burn: Burn's CUDA backend);
#   3. the same extraction with a GPT-2-small-shaped teacher (`timekd random-model`), on
#      GPT2_WINDOWS windows of each split (default 512: GPT-2 small is ~15x faster, and a
#      steady rate needs many chunks after the first REPORT_AFTER embeddings);
# then a summary: embeddings/s (the whole run, and after the first REPORT_AFTER embeddings:
# model load and warm-up excluded, as the anchor excludes its own), the ratio to the anchor,
# peak GPU memory (nvidia-smi, sampled every 200 ms), and the projected time of the whole
# dataset (209,523 embeddings: 183,564 train + 25,959 val over the five H).
#
#   scripts/bench/llama-gpu.sh [TIMEKD]   # WEATHER=weather.csv WINDOWS=48 GPT2_WINDOWS=512 SIZE=3b ENGINE=burn
set -euo pipefail
timekd="${1:-.gpu/timekd}"
work="${WORK:-/tmp/timekd-llama}"
weather="${WEATHER:-../shared/data/weather.csv}"
windows="${WINDOWS:-48}"
gpt2_windows="${GPT2_WINDOWS:-512}"
lengths=24,36,48,96,192
report_after="${REPORT_AFTER:-160}"
engine="${ENGINE:-cuda}"
size="${SIZE:-1b}"
whole_dataset=209523
llama="$work/llama-$size-shaped"
gpt2="$work/gpt2-small-shaped"
mkdir -p "$work"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
[[ -f "$llama/config.json" ]] ||
    python3 scripts/bench/make_llama_shaped.py "$llama" \
        crates/teacher/tests/fixtures/families/llama/tokenizer.json --size "$size"
[[ -f "$gpt2/config.json" ]] || "$timekd" random-model --out "$gpt2"

list=$(seq -s, 0 $((windows - 1)))
: >"$work/prompts.jsonl"
for split in train val; do
    for h in ${lengths//,/ }; do
        "$timekd" prompts --data "$weather" --output-len "$h" --split "$split" --windows "$list" \
            --model "$llama" | OUTPUT_LEN="$h" python3 -c '
import json, os, sys
h = int(os.environ["OUTPUT_LEN"])
for line in sys.stdin:
    record = json.loads(line)
    record["output_len"] = h
    print(json.dumps(record))' >>"$work/prompts.jsonl"
    done
done
echo "== Hugging Face LlamaModel, every H, train + val, $windows windows each"
python3 scripts/bench/llama_reference.py "$work/prompts.jsonl" "$llama" --dtype f16 2>&1 |
    grep -v -i warn | tee "$work/reference.log" || true

peak() { # name command...: runs it, keeps its rate lines and peak memory in $work/name.log
    local name=$1
    shift
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$work/mem.log" &
    local sampler=$!
    "$@" 2>&1 | grep -E " in [0-9.]+ s =|steady|engine|error|Error" | tail -4 | tee "$work/$name.log" || true
    kill "$sampler" 2>/dev/null || true
    echo "peak GPU memory $(sort -n "$work/mem.log" | tail -1) MiB" | tee -a "$work/$name.log"
}

for teacher in llama gpt2; do
    model=$llama count=$windows
    [[ $teacher == gpt2 ]] && model=$gpt2 count=$gpt2_windows
    echo "== timekd extract, $teacher, every H, train + val, $count windows each, f16, $engine"
    peak "$teacher" "$timekd" extract --data "$weather" --output-len "$lengths" --split all \
        --model "$model" --max-windows "$count" --device cuda:0 --precision f16 \
        --max-gpu-mem 24GiB --engine "$engine" --report-after "$report_after" --overwrite \
        --out "$work/ours-$teacher"
done

echo "== summary (one command; embeddings = windows x H; whole dataset $whole_dataset embeddings)"
python3 - "$work" "$whole_dataset" <<'EOF'
import re, sys
work, whole = sys.argv[1], int(sys.argv[2])
def rate(path, pattern):
    found = re.findall(pattern, open(path).read())
    return float(found[-1]) if found else None
anchor = rate(f"{work}/reference.log", r"([0-9.]+) embeddings/s")
print(f"{'':40} {'emb/s':>8} {'x anchor':>9} {'projected':>10} {'peak MiB':>9}")
if anchor:
    print(f"{'Hugging Face LlamaModel (after warm-up)':40} {anchor:8.2f} {'1.00x':>9} "
          f"{whole / anchor / 60:8.1f} m")
for teacher in ["llama", "gpt2"]:
    log = f"{work}/{teacher}.log"
    whole_run = rate(log, r"(?m)^[0-9]+ embeddings in [0-9.]+ s = ([0-9.]+) embeddings/s")
    steady = rate(log, r"steady state.* = ([0-9.]+) embeddings/s")
    peak = rate(log, r"peak GPU memory ([0-9]+) MiB")
    for label, value in [("whole run", whole_run), ("steady", steady)]:
        if value is None:
            continue
        ratio = f"{value / anchor:.2f}x" if anchor and teacher == "llama" else "-"
        print(f"{'timekd ' + teacher + ', ' + label:40} {value:8.2f} {ratio:>9} "
              f"{whole / value / 60:8.1f} m {peak or 0:9.0f}")
EOF

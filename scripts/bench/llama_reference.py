#!/usr/bin/env python3
"""The Hugging Face anchor for LLaMA teachers: batched `LlamaModel` (SDPA) with the calibrated
mask, over the prompts `timekd prompts --model DIR` prints, timed on one GPU.

    timekd prompts --data weather.csv --output-len 96 --windows 0,1,...,31 --model DIR > p.jsonl
    python3 scripts/bench/llama_reference.py p.jsonl DIR [--dtype f16] [--batch-tokens 65536]

Prompts (every GT and HD prompt of the file, ids and token types as timekd tokenised them)
are sorted by length and cut into batches of at most `--batch-tokens` padded tokens (64
prompts at most), right-padded. Attention gets the release's calibration (−100 where the
query's and key's types differ) on top of the causal mask, padding keys blocked; it is
applied by wrapping `torch.nn.functional.scaled_dot_product_attention` (as
`scripts/make-teacher-fixtures.py` does), so the model runs transformers' own SDPA path.
Each prompt's last real token's final state is gathered. One warm-up batch, then the whole
set timed (CUDA synchronised); prints prompts/s, tokens/s, windows/s (a window being
`variables` GT/HD pairs) and embeddings/s (an embedding being one window at one output
length: lines may carry an `output_len` key, as `scripts/bench/llama-gpu.sh` adds when it
concatenates several H; without it every line counts for one H).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from transformers import LlamaModel

_sdpa = F.scaled_dot_product_attention
_bias = {"value": None}


def calibrated_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
    return _sdpa(query, key, value, attn_mask=_bias["value"], dropout_p=0.0, is_causal=False,
                 **kwargs)


F.scaled_dot_product_attention = calibrated_sdpa
torch.nn.functional.scaled_dot_product_attention = calibrated_sdpa


def batches(prompts, batch_tokens, max_prompts=64):
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i][0]))
    batch = []
    for i in order:
        longest = len(prompts[i][0])
        if batch and ((len(batch) + 1) * longest > batch_tokens or len(batch) == max_prompts):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def run_batch(model, prompts, members, dtype, device):
    t = max(len(prompts[i][0]) for i in members)
    b = len(members)
    ids = torch.zeros(b, t, dtype=torch.long)
    types = torch.zeros(b, t)
    valid = torch.zeros(b, t, dtype=torch.bool)
    for row, i in enumerate(members):
        p_ids, p_types = prompts[i]
        ids[row, : len(p_ids)] = torch.tensor(p_ids)
        types[row, : len(p_ids)] = torch.tensor(p_types, dtype=torch.float)
        valid[row, : len(p_ids)] = True
    ids, types, valid = ids.to(device), types.to(device), valid.to(device)
    bias = (types[:, :, None] - types[:, None, :]).abs() * -100.0
    blocked = torch.ones(t, t, dtype=torch.bool, device=device).triu(1)[None] | ~valid[:, None, :]
    bias = bias.masked_fill(blocked, float("-inf"))[:, None].to(dtype)
    _bias["value"] = bias
    out = model(input_ids=ids, return_dict=True).last_hidden_state
    last = torch.tensor([len(prompts[i][0]) - 1 for i in members], device=device)
    return out[torch.arange(b, device=device), last]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("prompts")
    parser.add_argument("model")
    parser.add_argument("--dtype", default="f16", choices=["f16", "bf16", "f32"])
    parser.add_argument("--batch-tokens", type=int, default=65536)
    args = parser.parse_args()
    dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]
    lines = [json.loads(line) for line in open(args.prompts) if line.strip()]
    prompts = []
    for line in lines:
        prompts.append((line["gt_ids"], line["gt_token_types"]))
        prompts.append((line["hd_ids"], line["hd_token_types"]))
    windows = len({(line["split"], line["window"]) for line in lines})
    embeddings = len({(line["split"], line["window"], line.get("output_len")) for line in lines})
    device = torch.device("cuda")
    model = LlamaModel.from_pretrained(args.model, dtype=dtype, attn_implementation="sdpa")
    model = model.to(device).eval()
    plan = list(batches(prompts, args.batch_tokens))
    with torch.no_grad():
        run_batch(model, prompts, plan[-1], dtype, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for members in plan:
            run_batch(model, prompts, members, dtype, device)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    tokens = sum(len(p[0]) for p in prompts)
    print(f"hf LlamaModel sdpa {args.dtype}: {len(prompts)} prompts ({tokens} tokens, "
          f"{windows} windows) in {elapsed:.2f} s: {len(prompts) / elapsed:.1f} prompts/s, "
          f"{tokens / elapsed:.0f} tokens/s, {windows / elapsed:.2f} windows/s, "
          f"{embeddings} embeddings: {embeddings / elapsed:.2f} embeddings/s, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, "
          f"{torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A random checkpoint shaped like meta-llama/Llama-3.2-1B (16 blocks, width 2048, 32 heads of
64 over 8 KV heads, MLP 8192) or -3B (`--size 3b`: 28 blocks, width 3072, 24 heads of 128 over
8 KV heads, MLP 8192), vocab 128256, llama3 rope scaling, tied embeddings, bf16, for
benchmarks; the tokenizer is the given `tokenizer.json` (its ids index the first rows).

    python3 scripts/bench/make_llama_shaped.py OUT_DIR TOKENIZER_JSON [--size 1b|3b]
"""
import argparse
import shutil

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SIZES = {
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, head_dim=64),
    "3b": dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, head_dim=128),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("tokenizer")
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    args = parser.parse_args()
    config = LlamaConfig(
        vocab_size=128256, intermediate_size=8192, num_key_value_heads=8,
        max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, **SIZES[args.size],
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True)
    shutil.copy(args.tokenizer, f"{args.out}/tokenizer.json")
    print(f"{args.out}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")


if __name__ == "__main__":
    main()

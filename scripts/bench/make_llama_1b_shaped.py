#!/usr/bin/env python3
"""A random checkpoint shaped like meta-llama/Llama-3.2-1B (16 blocks, width 2048, 32 heads,
8 KV heads, MLP 8192, vocab 128256, llama3 rope scaling, tied embeddings), bf16, for
benchmarks; the tokenizer is the given `tokenizer.json` (its ids index the first rows).

    python3 scripts/bench/make_llama_1b_shaped.py OUT_DIR TOKENIZER_JSON
"""
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    out, tokenizer = sys.argv[1], sys.argv[2]
    config = LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64,
        max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(tokenizer, f"{out}/tokenizer.json")
    print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")


if __name__ == "__main__":
    main()

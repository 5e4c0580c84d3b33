#!/usr/bin/env python3
"""Golden teacher states from Hugging Face `transformers` for the LLaMA and BERT families.

    pip install torch transformers safetensors   # or a machine that has them (the GPU box)
    python3 scripts/make-teacher-fixtures.py crates/teacher/tests/fixtures

For each family this builds a small random model of the family's real architecture, writes it
as a checkpoint directory the way the hub ships one, and records what `transformers` computes
for the teacher's prompts:

- `families/llama/`: `LlamaForCausalLM` (2 layers, width 64, 4 heads, 2 KV heads: grouped
  query attention; SwiGLU MLP 128; RMSNorm; rotary positions with LLaMA-3's `llama3` scaling,
  its `original_max_position_embeddings` shortened to 64 so that the prompts' ~300 positions
  cross all three bands of the scaling; tied embeddings as Llama-3.2-1B/3B). Tokenizer: the
  byte-level BPE of `tokenizers/byte-level-bpe` (LLaMA-3's layout, `<|begin_of_text|>` first).
- `families/bert/`: `BertForMaskedLM` (2 layers, width 64, 4 heads, MLP 128, exact GELU,
  post-LayerNorm; the checkpoint's names start with `bert.` as bert-base-uncased's do).
  Tokenizer: the WordPiece of `tokenizers/wordpiece` (`[CLS]` first).

Each directory gets `config.json`, `model.safetensors`, `tokenizer.json` and `expected.json`:

- `prompts`: for every GT/HD prompt pair of the tokenizer fixture (ids and token types are
  taken from it: it is their one owner; they are checked against the tokenizer here), the
  calibrated final state of each prompt's last token (`gt_state`, `hd_state`: after the final
  norm for LLaMA, BERT's last layer output; the SCA is not applied). Prompts are what the
  teacher runs: special tokens after the text (BERT's `[SEP]`) left off.
- `plain`: every position's final state of the first GT prompt without the calibration (plain
  causal LLaMA / plain bidirectional BERT).

The calibration is the release's: −100 added to the attention score wherever the query's and
the key's token types differ, on top of the causal mask (LLaMA) or alone (BERT: every token
sees every other). It is applied by wrapping `torch.nn.functional.scaled_dot_product_attention`
(the models run with `attn_implementation="sdpa"`): the wrapper replaces the mask
`transformers` built for the one-prompt batch with the causal (or empty) mask plus the
calibration, and counts its calls so that a model that did not go through it is caught.

Weights are random (seeded), every tensor perturbed so that no norm weight is exactly one and
no bias exactly zero, stored in f32; the states are computed in f64 from those f32 weights.
"""
import json
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

SEED = 20251206
CALIBRATION_PENALTY = -100.0

_sdpa = F.scaled_dot_product_attention
_bias = {"value": None, "calls": 0}


def calibrated_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
    bias = _bias["value"]
    assert bias is not None, "the calibration bias is not set"
    assert query.shape[-2] == bias.shape[-2] and key.shape[-2] == bias.shape[-1], (
        query.shape, key.shape, bias.shape)
    _bias["calls"] += 1
    return _sdpa(query, key, value, attn_mask=bias.to(query.dtype), dropout_p=0.0,
                 is_causal=False, **kwargs)


F.scaled_dot_product_attention = calibrated_sdpa
torch.nn.functional.scaled_dot_product_attention = calibrated_sdpa


def attention_bias(types, causal, calibrated):
    t = torch.tensor(types, dtype=torch.float64)
    bias = torch.zeros(len(types), len(types), dtype=torch.float64)
    if calibrated:
        bias = (t[:, None] - t[None, :]).abs() * CALIBRATION_PENALTY
    if causal:
        future = torch.ones_like(bias, dtype=torch.bool).triu(1)
        bias = bias.masked_fill(future, float("-inf"))
    return bias[None, None]


def states(model, ids, types, causal, calibrated, layers):
    """Final hidden states [t, d] of one prompt."""
    _bias["value"] = attention_bias(types, causal, calibrated)
    _bias["calls"] = 0
    with torch.no_grad():
        out = model.base_model(input_ids=torch.tensor([ids]), return_dict=True)
    assert _bias["calls"] == layers, f"attention ran {_bias['calls']} times outside the wrapper"
    return out.last_hidden_state[0]


def perturbed(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05)
    return model


def build(cls, config):
    try:
        return cls._from_config(config, attn_implementation="sdpa")
    except TypeError:
        config._attn_implementation = "sdpa"
        return cls(config)


def llama(vocab):
    return LlamaForCausalLM, LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rms_norm_eps=1e-5, rope_theta=500000.0, hidden_act="silu", tie_word_embeddings=True,
        attention_bias=False, mlp_bias=False, initializer_range=0.1,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        bos_token_id=0, eos_token_id=0,
    ), True


def bert(vocab):
    return BertForMaskedLM, BertConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=1024, type_vocab_size=2,
        hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=0.1,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    ), False


def main():
    root = Path(sys.argv[1])
    print(f"torch {torch.__version__}")
    import transformers
    print(f"transformers {transformers.__version__}")
    for name, family, tokenizer_kind in [("llama", llama, "byte-level-bpe"),
                                         ("bert", bert, "wordpiece")]:
        source = root / "tokenizers" / tokenizer_kind
        tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        pairs = json.loads((source / "expected.json").read_text())
        cls, config, causal = family(tokenizer.get_vocab_size())
        torch.manual_seed(SEED)
        model = perturbed(build(cls, config), SEED + 1).eval()
        target = root / "families" / name
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(target), safe_serialization=True)
        for extra in ("generation_config.json",):
            (target / extra).unlink(missing_ok=True)
        shutil.copy(source / "tokenizer.json", target / "tokenizer.json")
        model = model.double()
        layers = config.num_hidden_layers
        prompts = []
        for p in pairs:
            for k in ("gt", "hd"):
                encoding = tokenizer.encode(p[f"{k}_prompt"])
                end = max(i + 1 for i, m in enumerate(encoding.special_tokens_mask) if m == 0)
                assert encoding.ids[:end] == p[f"{k}_ids"], (name, k)
            row = {key: p[key] for key in ("window", "column", "output_len")}
            for k in ("gt", "hd"):
                ids, types = p[f"{k}_ids"], p[f"{k}_token_types"]
                last = states(model, ids, types, causal, True, layers)[-1]
                row |= {f"{k}_ids": ids, f"{k}_types": types, f"{k}_state": last.tolist()}
            prompts.append(row)
        first = pairs[0]
        plain = states(model, first["gt_ids"], first["gt_token_types"], causal, False, layers)
        calibrated = torch.tensor(prompts[0]["gt_state"], dtype=torch.float64)
        moved = (plain[-1] - calibrated).norm() / calibrated.norm()
        assert moved > 1e-3, f"{name}: the calibration changed the last state by only {moved}"
        expected = {
            "family": name,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "prompts": prompts,
            "plain": {"ids": first["gt_ids"], "states": plain.tolist()},
        }
        (target / "expected.json").write_text(json.dumps(expected) + "\n")
        print(f"{name}: {len(prompts)} prompt pairs, {sum(p.numel() for p in model.parameters())} "
              f"parameters; the calibration moves the first GT state by {moved:.3f} (rel. L2)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden token ids and types from Hugging Face's `tokenizers` for the teacher's prompts.

    target/debug/timekd prompts --data ETTh1 --output-len 24 --windows 0,300,2000 \
        --columns OT,HUFL,LULL > /tmp/prompts.jsonl
    pip install tokenizers
    python3 scripts/make-tokenizer-fixtures.py /tmp/prompts.jsonl 24 crates/teacher/tests/fixtures/tokenizers

Trains three small tokenizers of the kinds the paper's teachers ship, on the prompts
themselves (small vocabularies, so numbers split into several tokens as they do in real
checkpoints), and writes for each `<kind>/tokenizer.json` and `<kind>/expected.json`: every
prompt's window, column and output length (the second argument, the prompts' `--output-len`),
its ids (with the special tokens the checkpoint's post-processor puts before the text, as
`tokenizer(text)` gives them; those it puts after the text, BERT's `[SEP]`, left off: the
teacher's embedding is the state of the text's last token), token strings and token types.

- `byte-level-bpe`: LLaMA-3's tokenizer.json layout (pre-tokenizer: LLaMA-3's split regex,
  then byte-level; byte-level decoder; `<|begin_of_text|>` first), the GPT-2 family's
  byte-level alphabet (`Ġ` = space).
- `metaspace-bpe`: LLaMA-1/2's SentencePiece layout (`▁` = word start, digits split; `<s>`
  first).
- `wordpiece`: BERT's layout (lower-cased, punctuation split apart, `##` continuations;
  `[CLS]` first; its `[SEP]` last is left off, see above).

Token types follow the rule `timekd_teacher::PromptTokenizer` documents, written here again
from token strings, compared whole (as the release does for GPT-2: a merged `>,` closes
nothing): the opening token is the one the tokenizer gives for `<` in `a <` (its
spelling of a space followed by `<`: `Ġ<`, `▁<`, or `<` where spaces are dropped), the closing
token is `>`; a walk over the GT prompt, then the HD prompt from where it ended, marks the
opening and closing tokens and everything between them as time series (1), the rest as
language (0).
"""
import json
import sys
from pathlib import Path

from tokenizers import (
    Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers,
)

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def byte_level_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|begin_of_text|>"], show_progress=False,
    )
    return tok, trainer, "<|begin_of_text|> $A"


def metaspace_bpe():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # LLaMA-1/2's SentencePiece models split digits (`split_digits`).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>"], show_progress=False
    )
    return tok, trainer, "<s> $A"


def wordpiece():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
        show_progress=False,
    )
    return tok, trainer, "[CLS] $A [SEP]"


class without_trailing_specials:
    """An encoding's ids and tokens up to its last token that is not special."""

    def __init__(self, encoding):
        mask = encoding.special_tokens_mask
        end = max((i + 1 for i, m in enumerate(mask) if m == 0), default=0)
        self.ids, self.tokens = encoding.ids[:end], encoding.tokens[:end]


def types(tok, gt_ids, hd_ids):
    probe = tok.encode("a <", add_special_tokens=False).ids
    open_id, close_id = probe[-1], tok.token_to_id(">")
    assert tok.id_to_token(open_id).endswith("<"), tok.id_to_token(open_id)
    inside = False
    out = []
    for ids in (gt_ids, hd_ids):
        walk = []
        for i in ids:
            if i == open_id:
                inside = True
                walk.append(1)
            elif i == close_id:
                inside = False
                walk.append(1)
            else:
                walk.append(1 if inside else 0)
        out.append(walk)
    return out


def main():
    prompts_file, output_len, out_dir = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    prompts = [json.loads(line) for line in prompts_file.read_text().splitlines() if line]
    corpus = [p[k] for p in prompts for k in ("gt_prompt", "hd_prompt")]
    for name, make in [
        ("byte-level-bpe", byte_level_bpe),
        ("metaspace-bpe", metaspace_bpe),
        ("wordpiece", wordpiece),
    ]:
        tok, trainer, template = make()
        tok.train_from_iterator(corpus, trainer)
        specials = [t for t in template.split() if t != "$A"]
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(t, tok.token_to_id(t)) for t in specials]
        )
        target = out_dir / name
        target.mkdir(parents=True, exist_ok=True)
        tok.save(str(target / "tokenizer.json"))
        expected = []
        for p in prompts:
            gt = without_trailing_specials(tok.encode(p["gt_prompt"], add_special_tokens=True))
            hd = without_trailing_specials(tok.encode(p["hd_prompt"], add_special_tokens=True))
            gt_types, hd_types = types(tok, gt.ids, hd.ids)
            expected.append(
                {
                    "window": p["window"],
                    "column": p["column"],
                    "output_len": output_len,
                    "gt_prompt": p["gt_prompt"],
                    "hd_prompt": p["hd_prompt"],
                    "gt_ids": gt.ids,
                    "hd_ids": hd.ids,
                    "gt_tokens": gt.tokens,
                    "hd_tokens": hd.tokens,
                    "gt_token_types": gt_types,
                    "hd_token_types": hd_types,
                }
            )
        (target / "expected.json").write_text(json.dumps(expected, indent=None) + "\n")
        spans = sum(t for e in expected for t in e["gt_token_types"])
        print(f"{name}: vocab {tok.get_vocab_size()}, {len(expected)} prompt pairs, "
              f"{spans} time-series tokens in the GT prompts")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks the teacher's CUDA engine kernels (crates/teacher/src/cuda/kernels.cu) against
PyTorch references on the GPU machine: compiled with NVRTC through CuPy, run on fresh random
inputs, compared in float64. Needs the GPU machine's torch + cupy; builds nothing else.

    python3 scripts/gpu-kernels-check.py            # all checks, a table at the end
    python3 scripts/gpu-kernels-check.py --bench    # also times the attention kernels

Exit status 1 when any check is over its bound. Every output buffer is poisoned with NaN
before a kernel runs, so an element a kernel fails to write shows as an error."""
import math
import sys
import time
from pathlib import Path

import cupy as cp
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SRC = (ROOT / "crates/teacher/src/cuda/kernels.cu").read_text()
torch.manual_seed(0)
rng = np.random.default_rng(0)
dev = "cuda"
module = cp.RawModule(code=SRC, options=("-std=c++17", "--use_fast_math"), backend="nvrtc")
results = []


def fn(name):
    return module.get_function(name)


def ptr(t):
    return np.uint64(t.data_ptr())


def check(name, got, ref, bound):
    got, ref = got.double(), ref.double()
    finite = bool(torch.isfinite(got).all())
    err = float((got - ref).norm() / ref.norm().clamp_min(1e-30)) if finite else float("nan")
    ok = finite and err <= bound
    results.append((name, err, bound, ok))
    print(f"{name:58s} rel L2 {err:.2e} (bound {bound:.0e}) {'ok' if ok else 'FAIL'}", flush=True)


def launch(name, grid, block, args, smem=0):
    fn(name)(grid, block, args, shared_mem=smem)
    torch.cuda.synchronize()


def i32(x):
    return np.int32(x)


def f32(x):
    return np.float32(x)


# ---- embeddings + LayerNorm --------------------------------------------------------------
def check_embed_ln(d, rows, dtype):
    V, P = 500, 64
    wte = torch.randn(V, d, device=dev)
    wpe = torch.randn(P, d, device=dev) * 0.1
    ids = torch.randint(0, V, (rows,), device=dev, dtype=torch.int32)
    pos = torch.randint(0, P, (rows,), device=dev, dtype=torch.int32)
    h = torch.full((rows, d), float("nan"), device=dev)
    warps = 4
    launch("embed", ((rows + warps - 1) // warps,), (32 * warps,),
           (ptr(ids), ptr(pos), ptr(wte), ptr(wpe), ptr(h), i32(rows), i32(d)))
    ref_h = wte[ids.long()] + wpe[pos.long()]
    check(f"embed d={d}", h, ref_h, 1e-7)
    # residual add + LN, with a large offset (GPT-2's residual stream has big values)
    h = (ref_h * 30 + 200).contiguous()
    delta = torch.randn(rows, d, device=dev).to(dtype)
    w, b = torch.randn(d, device=dev), torch.randn(d, device=dev)
    out = torch.full((rows, d), float("nan"), device=dev, dtype=dtype)
    ref_h2 = h.double() + delta.double()
    ref = torch.nn.functional.layer_norm(ref_h2, (d,), w.double(), b.double(), 1e-5)
    kernel = "add_ln_f16" if dtype == torch.float16 else "add_ln_f32"
    launch(kernel, ((rows + warps - 1) // warps,), (32 * warps,),
           (ptr(h), ptr(delta), ptr(w), ptr(b), ptr(out), i32(rows), i32(d), f32(1e-5)))
    check(f"add_ln {dtype} d={d} (residual)", h, ref_h2, 1e-7)
    check(f"add_ln {dtype} d={d} (normed)", out, ref, 1e-3 if dtype == torch.float16 else 1e-6)
    if dtype == torch.float16:
        out32 = torch.full((rows, d), float("nan"), device=dev)
        h2 = ref_h2.float().contiguous()
        launch("add_ln_f16_out_f32", ((rows + warps - 1) // warps,), (32 * warps,),
               (ptr(h2), np.uint64(0), ptr(w), ptr(b), ptr(out32), i32(rows), i32(d), f32(1e-5)))
        check(f"add_ln_f16_out_f32 d={d} (no delta)", out32, ref, 1e-6)


# ---- gather, GELU ------------------------------------------------------------------------
def check_gather_gelu():
    src = torch.randn(100, 96, device=dev)
    rows = torch.tensor([5, 0, 99, 42], device=dev, dtype=torch.int32)
    dst = torch.full((4, 96), float("nan"), device=dev)
    launch("gather_rows", (1,), (128,), (ptr(src), ptr(rows), ptr(dst), i32(4), i32(96)))
    check("gather_rows", dst, src[rows.long()], 0.0)
    for dtype, name in ((torch.float16, "gelu_f16"), (torch.float32, "gelu_f32")):
        for tanh_form in (1, 0):
            x = (torch.randn(4097, device=dev) * 3).to(dtype)
            ref = torch.nn.functional.gelu(x.double(), approximate="tanh" if tanh_form else "none")
            launch(name, (8,), (256,), (ptr(x), np.uint64(x.numel()), i32(tanh_form)))
            check(f"{name} tanh={tanh_form}", x, ref, 1e-3 if dtype == torch.float16 else 1e-6)


# ---- cuBLASLt's GELU epilogue -------------------------------------------------------------
def check_gelu_epilogue():
    """The engine fuses GPT-2's tanh GELU into cuBLASLt's GELU_BIAS epilogue; PyTorch's
    _addmm_activation(use_gelu=True) runs that same epilogue on CUDA. It must be the tanh form."""
    a = torch.randn(512, 768, device=dev).half()
    w = (torch.randn(768, 3072, device=dev) * 0.05).half()
    b = torch.randn(3072, device=dev).half()
    got = torch._addmm_activation(b, a, w, use_gelu=True)
    pre = a.double() @ w.double() + b.double()
    check("cuBLASLt GELU epilogue vs tanh GELU", got, torch.nn.functional.gelu(pre, approximate="tanh"), 2e-3)
    err_exact = float((got.double() - torch.nn.functional.gelu(pre)).norm() / got.double().norm())
    print(f"  (against the exact erf GELU it is {err_exact:.2e})", flush=True)


# ---- attention ---------------------------------------------------------------------------
def attention_case(n_seq, pre_lens, own_lens, heads, hd, dtype, type_p=0.6):
    """Random packed projections for sequences that continue cached prefixes (pre_len 0 =
    none). Returns the buffers and a float64 reference output for every own token."""
    d = heads * hd
    ld = 3 * d
    pre_rows = sum(pre_lens)
    own_rows = sum(own_lens)
    pre = (torch.randn(max(pre_rows, 1), ld, device=dev) * 1.5).to(dtype)
    own = (torch.randn(own_rows, ld, device=dev) * 1.5).to(dtype)
    pre_types = (torch.rand(max(pre_rows, 1), device=dev) < type_p).to(torch.uint8)
    own_types = (torch.rand(own_rows, device=dev) < type_p).to(torch.uint8)
    info, ref = [], torch.zeros(own_rows, d, device=dev, dtype=torch.float64)
    ps = os_ = 0
    scale = 1.0 / math.sqrt(hd)
    for s in range(n_seq):
        p, n = pre_lens[s], own_lens[s]
        info.append([ps, p, os_, n, 0])
        k = torch.cat([pre[ps:ps + p, d:2 * d], own[os_:os_ + n, d:2 * d]]).double()
        v = torch.cat([pre[ps:ps + p, 2 * d:], own[os_:os_ + n, 2 * d:]]).double()
        kt = torch.cat([pre_types[ps:ps + p], own_types[os_:os_ + n]])
        q = own[os_:os_ + n, :d].double()
        qt = own_types[os_:os_ + n]
        causal = torch.arange(p + n, device=dev)[None, :] <= (p + torch.arange(n, device=dev))[:, None]
        pen = (qt[:, None] != kt[None, :]).double() * -100.0
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            sc = q[:, sl] @ k[:, sl].T * scale + pen
            sc = sc.masked_fill(~causal, float("-inf"))
            ref[os_:os_ + n, sl] = torch.softmax(sc, dim=1) @ v[:, sl]
        ps += p
        os_ += n
    seqs = torch.tensor(info, device=dev, dtype=torch.int32)
    return dict(pre=pre, own=own, pre_types=pre_types, own_types=own_types, seqs=seqs,
                ref=ref, d=d, ld=ld, scale=scale, own_rows=own_rows, info=info)


def run_mma(c):
    tiles = [[s, q0] for s, (_, _, _, n, _) in enumerate(c["info"]) for q0 in range(0, n, 64)]
    tiles_t = torch.tensor(tiles, device=dev, dtype=torch.int32)
    out = torch.full((c["own_rows"], c["d"]), float("nan"), device=dev, dtype=torch.float16)
    heads = c["d"] // 64
    fn("attention_mma_f16")((len(tiles), heads), (128,),
                            (ptr(c["pre"]), ptr(c["pre_types"]), ptr(c["own"]), ptr(c["own_types"]),
                             ptr(out), ptr(c["seqs"]), ptr(tiles_t), i32(c["d"]), i32(c["ld"]),
                             f32(c["scale"]), f32(-100.0)))
    return out, len(tiles), heads


def run_simt(c, hd, last_only=False):
    items = []
    for s, (_, _, _, n, _) in enumerate(c["info"]):
        if last_only:
            items.append([s, n - 1, s])
        else:
            items += [[s, i, c["info"][s][2] + i] for i in range(n)]
    items_t = torch.tensor(items, device=dev, dtype=torch.int32)
    rows = len(c["info"]) if last_only else c["own_rows"]
    dtype = c["own"].dtype
    out = torch.full((rows, c["d"]), float("nan"), device=dev, dtype=dtype)
    max_keys = max(p + n for _, p, _, n, _ in c["info"])
    warps = 4
    name = "attention_simt_f16" if dtype == torch.float16 else "attention_simt_f32"
    fn(name)(((len(items) + warps - 1) // warps, c["d"] // hd), (32 * warps,),
             (ptr(c["pre"]), ptr(c["pre_types"]), ptr(c["own"]), ptr(c["own_types"]), ptr(out),
              ptr(c["seqs"]), ptr(items_t), i32(len(items)), i32(c["d"]), i32(c["ld"]), i32(hd),
              f32(c["scale"]), f32(-100.0), i32(max_keys)),
             shared_mem=warps * (hd + max_keys) * 4)
    torch.cuda.synchronize()
    return out


def last_rows(c):
    return torch.stack([c["ref"][o + n - 1] for _, _, o, n, _ in c["info"]])


def check_attention():
    shapes = [  # (name, prefix lengths, own lengths)
        ("prefix pass (no cache)", [0, 0, 0, 0], [239, 64, 1, 300]),
        ("suffix pass (cached prefix)", [240, 231, 250, 1, 64], [60, 12, 413, 1, 65]),
        ("long GT suffix", [250, 250], [420, 7]),
    ]
    for name, pre_lens, own_lens in shapes:
        c = attention_case(len(own_lens), pre_lens, own_lens, 12, 64, torch.float16)
        out, _, _ = run_mma(c)
        torch.cuda.synchronize()
        check(f"attention_mma_f16 {name}", out, c["ref"], 2e-3)
        check(f"attention_simt_f16 {name}", run_simt(c, 64), c["ref"], 2e-3)
        check(f"attention_simt_f16 last rows {name}", run_simt(c, 64, True), last_rows(c), 2e-3)
    for hd, heads in ((8, 4), (64, 12), (32, 3)):
        c = attention_case(3, [17, 0, 40], [9, 33, 1], heads, hd, torch.float32)
        check(f"attention_simt_f32 hd={hd}", run_simt(c, hd), c["ref"], 1e-5)
        check(f"attention_simt_f32 last rows hd={hd}", run_simt(c, hd, True), last_rows(c), 1e-5)


def bench_attention():
    # ETTh1 H=24-like suffix pass: 230 GT suffixes of 50 tokens + their HD suffixes, and a
    # prefix pass of 256 prefixes of 240 tokens.
    for name, pre_lens, own_lens in (
        ("prefix pass 256 x 240", [0] * 256, [240] * 256),
        ("suffix pass 512 x (240 + 50)", [240] * 512, [50] * 512),
        ("suffix pass 128 x (250 + 420)", [250] * 128, [420] * 128),
    ):
        c = attention_case(len(own_lens), pre_lens, own_lens, 12, 64, torch.float16)
        flops = sum(4 * 768 * n * (p + (n + 1) / 2) for p, n in zip(pre_lens, own_lens))
        tiles = [[s, q0] for s, (_, _, _, n, _) in enumerate(c["info"]) for q0 in range(0, n, 64)]
        tiles_t = torch.tensor(tiles, device=dev, dtype=torch.int32)
        out = torch.empty((c["own_rows"], c["d"]), device=dev, dtype=torch.float16)
        args = (ptr(c["pre"]), ptr(c["pre_types"]), ptr(c["own"]), ptr(c["own_types"]), ptr(out),
                ptr(c["seqs"]), ptr(tiles_t), i32(c["d"]), i32(c["ld"]), f32(c["scale"]), f32(-100.0))
        k = fn("attention_mma_f16")
        for _ in range(3):
            k((len(tiles), 12), (128,), args)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        reps = 20
        start.record()
        for _ in range(reps):
            k((len(tiles), 12), (128,), args)
        end.record()
        torch.cuda.synchronize()
        dt = start.elapsed_time(end) / 1e3 / reps
        print(f"bench attention_mma_f16 {name}: {dt * 1e3:.3f} ms, {flops / dt / 1e12:.1f} TFLOP/s "
              f"(causal work only)", flush=True)


print(torch.cuda.get_device_name(0), torch.__version__, "cupy", cp.__version__, flush=True)
for d in (32, 768):
    for dtype in (torch.float16, torch.float32):
        check_embed_ln(d, 37, dtype)
check_gather_gelu()
check_gelu_epilogue()
check_attention()
if "--bench" in sys.argv:
    bench_attention()
bad = [r for r in results if not r[3]]
print(f"\n{len(results) - len(bad)} of {len(results)} kernel checks passed")
sys.exit(1 if bad else 0)

"""The correctness grid of the CPU end-to-end issue, through attncc.attention.

Every value of every axis appears (sequence lengths 1, 17, 128, 1000, 2048; head
dims 64 and 128; no mask, causal, additive mask; MHA, GQA 4:1 and 8:1, MQA;
fp32, bf16, fp16; query and KV lengths that differ), checked with
FlashAttention's criterion against float64 (see test_numerics.close_enough).
The full cartesian product would take ~10 minutes of JIT time on 2 cores, so
the axes are rotated across cases instead.
"""
import pytest
import torch

import attncc
from test_numerics import close_enough, rand, reference, torch_sdpa

DT = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
# (Lq, Lk, D, mask, Hq, Hkv, dtype)
GRID = [
    (1, 1, 64, "none", 8, 8, "f32"),
    (1, 1000, 128, "causal", 8, 1, "bf16"),      # decode-like: one query, long KV, MQA
    (17, 17, 64, "bias", 8, 2, "f16"),            # GQA 4:1
    (17, 128, 128, "none", 8, 1, "f32"),          # GQA 8:1 (= MQA for 8 heads)
    (128, 128, 64, "causal", 8, 8, "bf16"),
    (128, 17, 128, "bias", 4, 1, "f32"),
    (1000, 1000, 64, "causal", 8, 2, "f32"),
    (1000, 2048, 128, "none", 8, 1, "f16"),
    (2048, 2048, 64, "bias", 2, 1, "bf16"),
    (2048, 2048, 128, "causal", 8, 1, "f16"),
    (2048, 1000, 64, "none", 4, 4, "f16"),
]


@pytest.mark.parametrize("Lq,Lk,D,mask,Hq,Hkv,dt", GRID,
                         ids=lambda v: str(v))
def test_grid(Lq, Lk, D, mask, Hq, Hkv, dt):
    dtype = DT[dt]
    q = rand(1, Hq, Lq, D, dtype=dtype, seed=1)
    k = rand(1, Hkv, Lk, D, dtype=dtype, seed=2)
    v = rand(1, Hkv, Lk, D, dtype=dtype, seed=3)
    bias = rand(1, 1, Lq, Lk, dtype=dtype, seed=4) if mask == "bias" else None
    causal = mask == "causal"
    out = attncc.attention(q, k, v, causal=causal, attn_mask=bias)
    close_enough(out, reference(q, k, v, mask=bias, causal=causal),
                 torch_sdpa(q, k, v, mask=bias, causal=causal))


def test_stages_and_unroll_give_identical_results():
    """Pipelining and unrolling move work, they do not change any arithmetic:
    every num_stages in 1..4 and unroll in {1, 2, 4} gives bit-identical output."""
    q = rand(1, 4, 300, 64, dtype=torch.float32, seed=1)
    k = rand(1, 2, 300, 64, dtype=torch.float32, seed=2)
    v = rand(1, 2, 300, 64, dtype=torch.float32, seed=3)
    outs = {}
    for stages in (1, 2, 3, 4):
        for unroll in (1, 2, 4):
            outs[stages, unroll] = attncc.attention(q, k, v, causal=True, block_m=64,
                                                    block_n=32, num_stages=stages,
                                                    unroll=unroll)
    first = outs[1, 1]
    close_enough(first, reference(q, k, v, causal=True), torch_sdpa(q, k, v, causal=True))
    for key, out in outs.items():
        assert torch.equal(out, first), f"num_stages, unroll = {key} differs"


def test_fully_masked_rows_are_zero_not_nan():
    q = rand(1, 2, 40, 64, dtype=torch.float32, seed=1)
    k = rand(1, 2, 70, 64, dtype=torch.float32, seed=2)
    v = rand(1, 2, 70, 64, dtype=torch.float32, seed=3)
    keep = torch.ones(1, 1, 40, 70, dtype=torch.bool)
    keep[..., 5, :] = False            # query 5 sees no key
    keep[..., 30:, :] = False          # neither do queries 30..39
    out = attncc.attention(q, k, v, attn_mask=keep)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, :, 5], torch.zeros_like(out[:, :, 5]))
    assert torch.equal(out[:, :, 30:], torch.zeros_like(out[:, :, 30:]))
    rows = [i for i in range(30) if i != 5]
    ref = reference(q, k, v, mask=keep)[:, :, rows]
    assert (out[:, :, rows].double() - ref).abs().max().item() < 1e-5

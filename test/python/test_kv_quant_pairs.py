"""fp8 KV caches under a bf16 query on AVX-512-BF16 (class x86-64-v4-bf16):
decode reads K/V in place with the vdpbf16ps form (attn-tile
`kv-in-place-pairs`), each fp8 row widened to bf16 by byte tables as it is
loaded (AVX-512 VBMI's vpermi2b; docs/quantized-kv.md). IR and assembly on any
host; exactness (every fp8 value of K and of V) and the numerics against
float64 (flash-attn's criterion) where the host runs that class."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

import attncc
from attncc.compiler import compile_graph
from attncc.options import CompileOptions
from attncc.targets import cpu as cpu_target
from test_kv_quant import FP8, FORMS, PAGED, finite_values, run_case, run_paged_fp8

BF16 = "x86-64-v4-bf16"
MISSING = cpu_target.missing_features(cpu_target.ISAS[BF16])
needs_bf16 = pytest.mark.skipif(bool(MISSING), reason="this host cannot run x86-64-v4-bf16 "
                                f"code: it lacks {', '.join(MISSING)} (IR and assembly "
                                "checked on any host)")
IR_TYPE = {"e4m3": "f8E4M3FN", "e5m2": "f8E5M2"}
QK = r"transposed pairs scale \S+ into %\S+ : memref<\d+x\d+xbf16>, memref<\?x\d+x{}"
PV = r"pairs into %\S+ accumulate : memref<\d+x\d+xbf16>, memref<\?x\d+x{}"


def _decode(fp8: str, q_dtype: str = "bf16", cpu: str = BF16, group: int = 4):
    """A decode kernel as attncc.attention compiles it: the query heads of a
    KV head packed as the rows of one query block (Lq = the GQA group)."""
    g = attncc.Graph("fp8_decode")
    q = g.input("q", (None, 8, None, 128), q_dtype)
    k = g.input("k", (None, 8, None, 128), IR_TYPE[fp8])
    v = g.input("v", (None, 8, None, 128), IR_TYPE[fp8])
    g.output(g.attention(q, k, v))
    return compile_graph(g, CompileOptions(cpu=cpu, num_threads=1), "cpu", stop_after="llvm",
                         query_len=group)


@pytest.mark.parametrize("fp8", sorted(FP8))
def test_fp8_decode_under_bf16_is_vdpbf16ps_on_any_host(fp8):
    c = _decode(fp8)
    tiled = c.ir("tiled")
    assert re.search(QK.format(IR_TYPE[fp8]), tiled), tiled
    assert re.search(PV.format(IR_TYPE[fp8]), tiled), tiled
    assert "attn.copy_tile %arg1" not in tiled            # K/V still read in place
    asm = cpu_target.assembly(c.ir("llvm"), cpu_target.ISAS[BF16])
    assert re.search(r"\bvdpbf16ps\s+", asm)
    assert re.search(r"\bvperm[it]2b\s+", asm)             # the byte tables
    assert not re.search(r"\bvcvtph2ps\s+", asm)           # no f16 -> f32 on the way
    for call in ("__truncsfbf2", "__extendhfsf2"):
        assert call not in asm


@pytest.mark.parametrize("q_dtype, cpu", [("f32", BF16), ("f16", BF16), ("bf16", "x86-64-v4"),
                                          ("bf16", "x86-64-v3"), ("bf16", "x86-64-v4-amx")])
def test_other_queries_and_classes_keep_f32_dot_products(q_dtype, cpu):
    tiled = _decode("e4m3", q_dtype, cpu).ir("tiled")
    assert "transposed into" in tiled and "pairs" not in tiled


def _one_key(fp8: str, kvals: torch.Tensor, vvals: torch.Tensor, D: int):
    """Sequences of one key: key b holds kvals[b] in column 0, value b holds
    vvals[b] in every column; the query is (1, 0, ...)."""
    B = kvals.numel()
    k = torch.zeros(B, 1, 1, D, dtype=torch.uint8).view(FP8[fp8])
    v = torch.zeros(B, 1, 1, D, dtype=torch.uint8).view(FP8[fp8])
    k[:, 0, 0, 0] = kvals
    v[:, 0, 0, :] = vvals[:, None]
    q = torch.zeros(B, 2, 1, D, dtype=torch.bfloat16)
    q[..., 0] = 1.0
    return q, k, v


@needs_bf16
@pytest.mark.parametrize("fp8", sorted(FP8))
@pytest.mark.parametrize("D", [32, 64, 96, 128])
def test_every_fp8_value_is_exact_in_the_pairs_form(fp8, D):
    """With one key the softmax weight is 1, so the output is V and the LSE
    is the score q . k * scale = k[0] * scale: both exact for every finite
    fp8 value (subnormals, zeros, the largest) through the byte tables and
    E4M3's deferred 2^8 (on the sums' scale for K, one FMA for V). Head dims
    32 and 96 take the 32-value steps, 96 also a last 16-column vector."""
    vals = finite_values(FP8[fp8])
    rev = vals.view(torch.uint8).flip(0).view(FP8[fp8])
    q, k, v = _one_key(fp8, vals, rev, D)
    out, lse = attncc.attention(q, k, v, scale=0.125, return_lse=True, kv_in_place=True,
                                num_splits=1, num_threads=1, cpu=BF16)
    want_v = rev.float().to(torch.bfloat16)
    bad = (out[:, :, 0, :] != want_v[:, None, None]).any(-1).any(-1)
    assert not bad.any(), f"{fp8} D={D}: wrong V for {rev[bad][:4].float().tolist()}"
    want_lse = vals.float() * 0.125
    bad = (lse[:, :, 0] != want_lse[:, None]).any(1)
    assert not bad.any(), f"{fp8} D={D}: wrong LSE for {vals[bad][:4].float().tolist()}"


@needs_bf16
@pytest.mark.parametrize("form", ["decode_gqa", "decode_split"])
@pytest.mark.parametrize("fp8", sorted(FP8))
@pytest.mark.parametrize("k_scale", [1.0, 0.02])
def test_pairs_decode_matches_reference(form, fp8, k_scale):
    # v_scale 1: a bf16 query with v_scale != 1 takes the f32-output route
    # (its query widened to f32), which is not this form.
    c, kw = FORMS[form]
    run_case(replace(c, dtype="bf16"), fp8, k_scale=k_scale, v_scale=1.0, cpu=BF16,
             kv_in_place=True, **kw)


@needs_bf16
@pytest.mark.parametrize("name", sorted(PAGED))
@pytest.mark.parametrize("fp8", sorted(FP8))
def test_paged_pairs_match_reference(name, fp8):
    b = PAGED[name]
    run_paged_fp8(replace(b, dtype="bf16", options={**b.options, "cpu": BF16}), fp8, 0.03, 1.0)

"""Quantized KV caches (docs/quantized-kv.md): fp8 K and V (float8_e4m3fn,
float8_e5m2) with per-tensor k_scale / v_scale under a float32, float16 or
bfloat16 query, through attncc.attention, varlen_attention, paged_attention
and paged_kv_append on the CPU.

What must hold: every finite fp8 value is widened exactly (an attention over
one key returns V itself); results match a float64 reference on the
dequantized K/V (k * k_scale, v * v_scale) within flash-attn's criterion in
every form the kernels take (prefill copies, decode in place, split-KV, paged
gathers and in-place pages), with every score variant; one kernel serves a
decode loop; the cache write quantizes as vLLM's does (saturating); bad
combinations are refused by name."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from torch.nn.attention.bias import causal_lower_right

import attncc
from attncc.errors import InputError
from attncc.frontend import kv_quant
from property_budget import examples, property_seed
from ragged_testing import Batch, check as ragged_check, make, paged_cache
from test_variants import Case, make_inputs
from test_variants import reference as variants_reference

FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
WIDE = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
FLOOR = {"f32": 1e-5, "f16": 1e-3, "bf16": 1e-3}
PROPERTY_SEED = property_seed(20261207)


def finite_values(dt: torch.dtype) -> torch.Tensor:
    """Every finite value of an fp8 dtype, as its bytes (NaN and inf left out)."""
    b = torch.arange(256, dtype=torch.uint8).view(dt)
    return b[torch.isfinite(b.float())]


@pytest.mark.parametrize("fp8", sorted(FP8))
@pytest.mark.parametrize("L", [1, 20])
def test_every_fp8_value_widens_exactly(fp8, L):
    """With one key the softmax weight is exactly 1 and the output is V: every
    finite value (subnormals, both zeros, the largest) comes back as torch's
    own widening, times v_scale. L = 1 reads V in place (decode), L = 20
    through the packing copy; 250 columns leave a tail of partial vectors."""
    dt = FP8[fp8]
    vals = finite_values(dt)
    n = 250
    rows = [vals[i:i + n] for i in range(0, vals.numel(), n)]
    for r in rows:
        v = torch.zeros(1, 1, 1, n, dtype=torch.uint8).view(dt)
        v[0, 0, 0, :r.numel()] = r
        q = torch.randn(1, 2, L, 16)
        k = torch.randn(1, 1, 1, 16).to(dt)
        for v_scale in (None, 0.5):
            out = attncc.attention(q, k, v, v_scale=v_scale)
            want = v.float().expand(1, 2, L, n) * (v_scale or 1.0)
            assert torch.equal(out, want), \
                f"{fp8} L={L}: first bad value {v.float().flatten()[(out != want).flatten(-1).any(0).any(0).any(0)][:4]}"


def quantized(k: torch.Tensor, v: torch.Tensor, fp8: str, k_scale, v_scale):
    """fp8 K/V and their exact dequantized values (float64); [B, Hkv] scale
    tensors (per sequence and KV head) or numbers."""
    if isinstance(k_scale, torch.Tensor):
        (kq, kd), (vq, vd) = quantize_rows(k, fp8, k_scale), quantize_rows(v, fp8, v_scale)
        return kq, vq, kd, vd
    kq = kv_quant.quantize(k, FP8[fp8], k_scale)
    vq = kv_quant.quantize(v, FP8[fp8], v_scale)
    return kq, vq, kq.double() * k_scale, vq.double() * v_scale


def reporting(where: str, run, *args) -> None:
    """run(*args); a failure names the configuration (hypothesis prints the seed)."""
    try:
        run(*args)
    except Exception as e:
        raise AssertionError(f"failing configuration: {where}: {e}") from e


def per_head(s, c: Case):
    """A [B, Hkv] tensor of scales around s (0.5 s to 1.5 s)."""
    g = torch.Generator().manual_seed(c.seed + 1)
    return s * (0.5 + torch.rand(c.batch, c.kv_heads, generator=g))


def spread(s):
    return s[:, :, None, None] if isinstance(s, torch.Tensor) else s


def check_against(c: Case, out, q, kd, vd, slopes, sinks, where: dict) -> None:
    """flash-attn's criterion on the dequantized K/V: error <= 2x the same
    attention computed in the query's dtype + a floor (times max |V|)."""
    ref = variants_reference(c, q, kd, vd, slopes, sinks)
    same = variants_reference(c, q, kd.to(q.dtype), vd.to(q.dtype), slopes, sinks,
                              dtype=q.dtype)
    assert out.shape == ref.shape and out.dtype == q.dtype, where
    assert torch.isfinite(out).all(), where
    err = (out.double() - ref).abs().max().item()
    # the floor relative to V's magnitude (calibrated caches hold large values)
    floor = FLOOR[c.dtype] * max(1.0, vd.abs().max().item())
    bound = 2 * (same.double() - ref).abs().max().item() + floor
    assert err <= bound, json.dumps(dict(where, err=err, bound=bound))


def run_case(c: Case, fp8: str, k_scale: float, v_scale: float, **kw) -> None:
    q, k, v, slopes, sinks = make_inputs(replace(c, dtype="f32"))
    q = q.to(WIDE[c.dtype])
    # Values spread like a calibrated cache's: k / k_scale fills the fp8 range.
    k, v = k.float() * (60 * spread(k_scale)), v.float() * (60 * spread(v_scale))
    kq, vq, kd, vd = quantized(k, v, fp8, k_scale, v_scale)
    mask = causal_lower_right(c.lq, c.lk) if c.causal and c.align == "bottom_right" else None
    out = attncc.attention(q, kq, vq, causal=c.causal and mask is None, attn_mask=mask,
                           window=c.window, softcap=c.softcap, alibi_slopes=slopes, sinks=sinks,
                           k_scale=k_scale, v_scale=v_scale, **kw)
    check_against(c, out, q, kd, vd, slopes, sinks,
                  dict(case=c.describe(), fp8=fp8, k_scale=str(k_scale), v_scale=str(v_scale),
                       kw=str(kw)))


FORMS = {
    # GQA decode: one query row, K/V read in place, the query heads packed
    "decode_gqa": (Case(batch=3, kv_heads=2, group=4, lq=1, lk=300, head_dim=64), {}),
    # the same, its KV range split over workers and merged with the LSEs
    "decode_split": (Case(batch=1, kv_heads=2, group=4, lq=1, lk=700, head_dim=64),
                     {"num_splits": 3}),
    # a prefill chunk against a cache: K/V through the packing copies
    "chunk_causal": (Case(batch=2, kv_heads=2, group=2, lq=33, lk=90, head_dim=32,
                          causal=True, align="bottom_right"), {}),
    "prefill_causal_d128": (Case(batch=1, kv_heads=1, group=2, lq=70, lk=70, head_dim=128,
                                 causal=True), {}),
    "window_softcap_sinks": (Case(batch=1, kv_heads=2, group=2, lq=9, lk=120, head_dim=32,
                                  causal=True, align="bottom_right", window=(40, 0),
                                  softcap=20.0, sinks=True), {}),
    "alibi": (Case(batch=2, kv_heads=2, group=1, lq=5, lk=64, head_dim=32, alibi=True), {}),
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("fp8", sorted(FP8))
@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_attention_fp8_forms(form, fp8, dtype):
    c, kw = FORMS[form]
    run_case(replace(c, dtype=dtype), fp8, k_scale=0.02, v_scale=0.05, **kw)


def test_lse_includes_k_scale():
    """return_lse gives the log-sum-exp of the real scores: q . (k k_scale) * scale."""
    c = Case(batch=1, kv_heads=2, group=2, lq=1, lk=200, head_dim=64)
    q, k, v, _, _ = make_inputs(c)
    kq, vq, kd, vd = quantized(k * 6, v, "e4m3", 0.1, 1.0)
    out, lse = attncc.attention(q, kq, vq, k_scale=0.1, return_lse=True)
    s = (q.double() @ kd.repeat_interleave(2, 1).mT) * 64 ** -0.5
    assert torch.allclose(lse.double(), torch.logsumexp(s, -1), atol=1e-4, rtol=1e-5)


def test_decode_loop_compiles_once_and_fast_path_keeps_scales_apart():
    """A decode loop over a growing fp8 cache compiles one kernel; unit
    scales take the fast path, other scales the full one (never a recipe
    compiled for another scale)."""
    g = torch.Generator().manual_seed(5)
    cache_k = kv_quant.quantize(torch.randn(2, 2, 64, 64, generator=g) * 30, FP8["e4m3"], 1.0)
    cache_v = kv_quant.quantize(torch.randn(2, 2, 64, 64, generator=g) * 30, FP8["e4m3"], 1.0)
    q = torch.randn(2, 8, 1, 64, generator=g)
    attncc.attention(q, cache_k[:, :, :40], cache_v[:, :, :40])
    before = attncc.cache_info()["compiled"]
    for S in range(41, 64):
        k, v = cache_k[:, :, :S], cache_v[:, :, :S]
        plain = attncc.attention(q, k, v)
        scaled = attncc.attention(q, k, v, k_scale=0.5, v_scale=2.0)
        c = Case(batch=2, kv_heads=2, group=4, lq=1, lk=S, head_dim=64)
        check_against(c, plain, q, k.double(), v.double(), None, None, dict(S=S))
        check_against(c, scaled, q, k.double() * 0.5, v.double() * 2.0, None, None,
                      dict(S=S, scaled=True))
    # one more kernel: the scaled calls' (k_scale joins the compiled scale)
    assert attncc.cache_info()["compiled"] - before <= 1


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_per_tensor_scales_take_the_fast_path_per_value(dtype, monkeypatch):
    """Calls with per-tensor float scales replay their recorded kernel (the
    fast path, counted by a spy on fast_path.run), each k_scale value its
    own recipe, every result right; v_scale under a bf16 query takes the
    f32-output route (its inner f32 call is replayed) and is right too."""
    from attncc.frontend import fast_path
    replays = []
    real_run = fast_path.run
    monkeypatch.setattr(fast_path, "run", lambda r, *a: replays.append(r) or real_run(r, *a))
    g = torch.Generator().manual_seed(9)
    k8 = kv_quant.quantize(torch.randn(1, 2, 300, 64, generator=g) * 30, FP8["e5m2"], 1.0)
    v8 = kv_quant.quantize(torch.randn(1, 2, 300, 64, generator=g) * 30, FP8["e5m2"], 1.0)
    q = torch.randn(1, 8, 1, 64, generator=g).to(WIDE[dtype])
    c = Case(batch=1, kv_heads=2, group=4, lq=1, lk=300, head_dim=64, dtype=dtype)
    calls = [(0.5, None), (0.25, None), (0.5, 3.0), (0.25, 3.0)]
    for ks, vs in calls:           # the first call of each records its recipe
        attncc.attention(q, k8, v8, k_scale=ks, v_scale=vs)
    replays.clear()
    for _ in range(2):
        for ks, vs in calls:
            out = attncc.attention(q, k8, v8, k_scale=ks, v_scale=vs)
            check_against(c, out, q, k8.double() * ks, v8.double() * (vs or 1.0), None, None,
                          dict(k_scale=ks, v_scale=vs))
    assert len(replays) == 2 * len(calls)
    # one recipe per call kind (under bf16 the v_scale calls' are their f32 inner calls')
    assert len({id(r) for r in replays}) == len(calls)


# -- ragged and paged ----------------------------------------------------------------------

def ragged_fp8(b: Batch, fp8: str, k_scale: float, v_scale: float):
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    # real values ~N(0, 1) (ragged_testing's floors are absolute): k / k_scale
    # spreads over fp8's range for the small scales
    kq, vq, kd, vd = quantized(k.float(), v.float(), fp8, k_scale, v_scale)
    return q, kq, vq, kd, vd, cu_q, cu_k, slopes, sinks


PAGED = {
    "decode_p16_nhd": Batch(((1, 1), (1, 33), (1, 300), (1, 17)), kv_heads=2, group=4,
                            causal=True, page_size=16, head_dim=64),
    "decode_p1_hnd": Batch(((1, 5), (1, 130)), kv_heads=2, group=4, causal=True, page_size=1,
                           layout="HND", head_dim=64),
    "chunked_p5_variants": Batch(((3, 3), (0, 5), (20, 90), (1, 40)), causal=True, page_size=5,
                                 window=(30, 0), softcap=15.0, sinks=True, return_lse=True,
                                 options={"block_m": 16}),
}


@pytest.mark.parametrize("name", sorted(PAGED))
@pytest.mark.parametrize("fp8", sorted(FP8))
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_paged_fp8(name, fp8, dtype):
    run_paged_fp8(replace(PAGED[name], dtype=dtype), fp8, 0.03, 0.01)


def run_paged_fp8(b: Batch, fp8: str, k_scale: float, v_scale: float) -> None:
    q, kq, vq, kd, vd, cu_q, cu_k, slopes, sinks = ragged_fp8(b, fp8, k_scale, v_scale)
    # The cache is built in f32 from exact fp8 values (garbage pages included,
    # saturated to fp8's range), then stored as fp8: the same bytes.
    kc, vc, table, lens = paged_cache(b, kq.float(), vq.float(), cu_k)
    kc, vc = kv_quant.quantize(kc, FP8[fp8], 1.0), kv_quant.quantize(vc, FP8[fp8], 1.0)
    kw = dict(causal=b.causal, window=b.window, softcap=b.softcap, alibi_slopes=slopes,
              sinks=sinks, layout=b.layout, return_lse=b.return_lse, k_scale=k_scale,
              v_scale=v_scale, **b.options)
    if all(lq == 1 for lq, _ in b.lengths):
        out = attncc.paged_attention(q, kc, vc, table, lens, **kw)
    else:
        out = attncc.paged_attention(q, kc, vc, table, lens, cu_seqlens_q=cu_q,
                                     max_seqlen_q=max(lq for lq, _ in b.lengths), **kw)
    out, lse = out if b.return_lse else (out, None)
    ragged_check(b, out, q, kd, vd, cu_q, cu_k, slopes, sinks, lse)


def test_property_paged_fp8(capsys):
    """Ragged batches (decode-only or mixed) against fp8 pages of any size in
    shuffled order, both layouts, both fp8 dtypes, 16/32-bit queries."""
    with capsys.disabled():
        print(f"\ntest_kv_quant paged property: seed {PROPERTY_SEED}")
    lengths = st.lists(st.tuples(st.integers(0, 20), st.integers(1, 300)).map(
        lambda t: (min(t), t[1]) if t[0] % 3 else (1, t[1])), min_size=1, max_size=4)

    @seed(PROPERTY_SEED)
    @settings(max_examples=examples(12), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(lengths=lengths, page=st.integers(1, 256), layout=st.sampled_from(["NHD", "HND"]),
           fp8=st.sampled_from(sorted(FP8)), dtype=st.sampled_from(["f32", "bf16", "f16"]),
           k_scale=st.sampled_from([1.0, 0.02]), v_scale=st.sampled_from([1.0, 0.3]),
           seed_=st.integers(0, 2 ** 16))
    def prop(lengths, page, layout, fp8, dtype, k_scale, v_scale, seed_):
        b = Batch(tuple(lengths), causal=True, page_size=page, layout=layout, dtype=dtype,
                  seed=seed_, head_dim=64, options={"block_m": 16})
        reporting(f"{b.describe()} fp8={fp8} k_scale={k_scale} v_scale={v_scale}",
                  run_paged_fp8, b, fp8, k_scale, v_scale)

    prop()


@pytest.mark.parametrize("fp8", sorted(FP8))
def test_varlen_fp8_mixed_prefill_and_decode(fp8):
    b = Batch(((30, 30), (1, 200), (1, 1), (12, 64)), kv_heads=2, group=2, causal=True,
              head_dim=64, dtype="bf16")
    q, kq, vq, kd, vd, cu_q, cu_k, slopes, sinks = ragged_fp8(b, fp8, 0.02, 0.04)
    out = attncc.varlen_attention(q, kq, vq, cu_q, cu_k, 30, 200, causal=True, k_scale=0.02,
                                  v_scale=0.04)
    ragged_check(b, out, q, kd, vd, cu_q, cu_k, slopes, sinks)


@pytest.mark.parametrize("fp8", sorted(FP8))
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("per_head", [False, True])
def test_paged_kv_append_quantizes_and_saturates(fp8, layout, per_head):
    """Appending to an fp8 cache stores k / k_scale rounded as torch rounds,
    saturated at the dtype's largest value (not NaN / inf); attention over
    the cache then equals the dequantized tokens'. Scales per tensor, or per
    KV head ([Hkv], the same tensors for the write and the attention)."""
    ks = torch.tensor([0.25, 0.125]) if per_head else 0.25
    vs = torch.tensor([0.5, 2.0]) if per_head else 0.5
    ksh, vsh = (s.view(-1, 1) if per_head else s for s in (ks, vs))   # per row of k[t]
    dt = FP8[fp8]
    top = torch.finfo(dt).max
    g = torch.Generator().manual_seed(11)
    P, Hkv, D, T = 4, 2, 32, 10
    k = torch.randn(T, Hkv, D, generator=g) * 3
    v = torch.randn(T, Hkv, D, generator=g) * 3
    k[0, 0, :4] = torch.tensor([1e6, -1e6, top * 0.5 * 0.25, 0.0])   # saturates / exact
    shape = (3, P, Hkv, D) if layout == "NHD" else (3, Hkv, P, D)
    kc = torch.zeros(shape, dtype=torch.uint8).view(dt)
    vc = torch.zeros(shape, dtype=torch.uint8).view(dt)
    slots = torch.tensor([8, 9, 10, 11, 0, 1, 2, 3, 4, 5], dtype=torch.int32)
    attncc.paged_kv_append(kc, vc, k, v, slots, layout=layout, k_scale=ks, v_scale=vs)
    kn = kc if layout == "NHD" else kc.transpose(1, 2)
    vn = vc if layout == "NHD" else vc.transpose(1, 2)
    for t, s in enumerate(slots.tolist()):
        want_k = (k[t] / ksh).clamp(-top, top).to(dt)
        want_v = (v[t] / vsh).clamp(-top, top).to(dt)
        assert torch.equal(kn[s // P, s % P].view(torch.uint8), want_k.view(torch.uint8))
        assert torch.equal(vn[s // P, s % P].view(torch.uint8), want_v.view(torch.uint8))
    assert kn[2, 0, 0, 0].float() == top and kn[2, 0, 0, 1].float() == -top
    table = torch.tensor([[2, 0, 1]], dtype=torch.int32)
    q = torch.randn(1, 4, D, generator=g)
    out = attncc.paged_attention(q, kc, vc, table, torch.tensor([T], dtype=torch.int32),
                                 layout=layout, k_scale=ks, v_scale=vs)
    order = [8, 9, 10, 11, 0, 1, 2, 3, 4, 5]
    kd = torch.stack([kn[s // P, s % P] for s in order]).double() * ksh
    vd = torch.stack([vn[s // P, s % P] for s in order]).double() * vsh
    c = Case(batch=1, kv_heads=Hkv, group=2, lq=1, lk=T, head_dim=D)
    check_against(c, out.view(1, 4, 1, D), q.view(1, 4, 1, D), kd.transpose(0, 1)[None],
                  vd.transpose(0, 1)[None], None, None, dict(fp8=fp8, layout=layout))


# -- every ISA class --------------------------------------------------------------------------

@pytest.mark.parametrize("name,widen", [("x86-64-v3", r"vcvtph2ps\s+%xmm\d+, %ymm"),
                                        ("x86-64-v4", r"vcvtph2ps\s+%(x|y)mm\d+, %(y|z)mm"),
                                        ("aarch64", r"fcvtl2?\s+v\d+\.4s")])
@pytest.mark.parametrize("form", ["prefill", "kv_in_place", "paged"])
@pytest.mark.parametrize("fp8", ["f8E4M3FN", "f8E5M2"])
def test_fp8_kernels_compile_for_every_class(name, widen, form, fp8):
    """fp8 K/V widen through the class's own f16 -> f32 instruction (F16C's
    vcvtph2ps, Arm's fcvtl), never a runtime library call, in the copying
    prefill form, the in-place decode form and the paged gather, whichever
    host compiles them (assembly of the forced class)."""
    import re
    from attncc.compiler import compile_graph
    from attncc.options import CompileOptions
    from attncc.targets import cpu as cpu_target
    g = attncc.Graph("fp8_attention")
    if form == "paged":
        q = g.input("q", (None, 4, None, 64), "bf16")
        k = g.input("k", (None, 2, None, 64), fp8)
        v = g.input("v", (None, 2, None, 64), fp8)
        work = g.input("work", (None, 7), "i32")
        table = g.input("block_table", (None, None), "i32")
        g.output(g.ragged_attention(q, k, v, work, block_table=table, scale=0.125))
        opts = CompileOptions(cpu=name)
    else:
        q = g.input("q", (None, 4, None, 64), "f32")
        k = g.input("k", (None, 2, None, 64), fp8)
        v = g.input("v", (None, 2, None, 64), fp8)
        g.output(g.attention(q, k, v, mask="causal"))
        opts = CompileOptions(cpu=name, **({"block_m": 4, "kv_in_place": True}
                                           if form == "kv_in_place" else {}))
    c = compile_graph(g, opts, stop_after="llvm")
    asm = cpu_target.assembly(c.ir("llvm"), cpu_target.ISAS[name])
    assert re.search(widen, asm), f"no {widen} in the {name} assembly ({form}, {fp8})"
    assert "__extendhfsf2" not in asm and "__extendbfsf2" not in asm


# -- per-(sequence, KV head) scales (FlashAttention-3's k_descale / v_descale) ------------

def quantize_rows(x: torch.Tensor, fp8: str, s: torch.Tensor, rows=None):
    """x ([B, Hkv, S, D], or packed [T, Hkv, D] with rows[t] its sequence)
    quantized with s [sequences, Hkv]; returns (fp8 bytes, their real values)."""
    f = (s[:, :, None, None] if rows is None else s[rows][:, :, None]).double()
    xq = kv_quant.quantize(x.double() / f, FP8[fp8], 1.0)
    return xq, xq.double() * f


@pytest.mark.parametrize("form", ["prefill_causal", "decode_gqa", "decode_split_lse"])
@pytest.mark.parametrize("fp8", sorted(FP8))
@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_attention_per_head_scales(form, fp8, dtype):
    """[B, Hkv] scales, each sequence and KV head its own, against float64
    attention on the dequantized K/V."""
    c = {"prefill_causal": Case(batch=2, kv_heads=2, group=2, lq=40, lk=70, head_dim=64,
                                causal=True),
         "decode_gqa": Case(batch=3, kv_heads=2, group=4, lq=1, lk=300, head_dim=128),
         "decode_split_lse": Case(batch=1, kv_heads=4, group=1, lq=1, lk=700, head_dim=64)}[form]
    c = replace(c, dtype=dtype)
    q, k, v, slopes, sinks = make_inputs(replace(c, dtype="f32"))
    q = q.to(WIDE[dtype])
    g = torch.Generator().manual_seed(7)
    ks = torch.rand(c.batch, c.kv_heads, generator=g) * 0.1 + 0.005
    vs = torch.rand(c.batch, c.kv_heads, generator=g) * 0.1 + 0.005
    kq, kd = quantize_rows(k * 30 * ks[:, :, None, None], fp8, ks)
    vq, vd = quantize_rows(v * 30 * vs[:, :, None, None], fp8, vs)
    kw = dict(return_lse=True, num_splits=4) if form == "decode_split_lse" else {}
    got = attncc.attention(q, kq, vq, causal=c.causal, k_scale=ks, v_scale=vs, **kw)
    out, lse = got if kw else (got, None)
    where = dict(case=c.describe(), fp8=fp8, form=form)
    check_against(c, out, q, kd, vd, slopes, sinks, where)
    if lse is not None:   # the log-sum-exp of the real scores, k_scale included
        s = (q.double() @ kd.repeat_interleave(c.group, 1)
             .transpose(-1, -2)) * c.head_dim ** -0.5
        torch.testing.assert_close(lse.double(), s.logsumexp(-1), rtol=1e-5, atol=1e-4)


def test_v_scale_rounds_a_16_bit_output_once():
    """A per-tensor v_scale under a bf16 query: the output is the f32 result
    rounded once (within half a bf16 ulp of the float64 reference plus f32's
    error), not rounded, scaled and rounded again."""
    torch.manual_seed(3)
    q = torch.randn(2, 8, 33, 64).bfloat16()
    k8 = torch.randn(2, 8, 90, 64).mul(20).to(torch.float8_e4m3fn)
    v8 = torch.randn(2, 8, 90, 64).mul(20).to(torch.float8_e4m3fn)
    out = attncc.attention(q, k8, v8, k_scale=0.01, v_scale=0.37)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.double(), k8.double() * 0.01, v8.double() * 0.37)
    half_ulp = 2.0 ** (torch.floor(torch.log2(ref.abs().clamp_min(1e-30))) - 8)
    excess = (out.double() - ref).abs() - half_ulp
    assert excess.max().item() <= 1e-5 + 1e-5 * ref.abs().max().item(), excess.max()


@pytest.mark.parametrize("paged", [False, True])
@pytest.mark.parametrize("fp8", sorted(FP8))
@pytest.mark.parametrize("per", ["sequence", "kv_head"])
def test_ragged_per_head_scales(paged, fp8, per):
    """[sequences, Hkv] scales (or [Hkv], every sequence's) in varlen and
    paged calls (decode tokens and prefill chunks in one batch; the scale
    follows each token's sequence)."""
    b = Batch(((20, 20), (1, 150), (0, 9), (1, 1), (7, 60)), kv_heads=2, group=2, causal=True,
              head_dim=64, dtype="bf16", page_size=7, softcap=20.0)
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    g = torch.Generator().manual_seed(11)
    n = len(b.lengths) if per == "sequence" else 1
    ks, vs = (torch.rand(n, 2, generator=g) * 0.05 + 0.01 for _ in range(2))
    ks, vs = ks.expand(len(b.lengths), 2), vs.expand(len(b.lengths), 2)
    rows = kv_quant.token_rows(cu_k[:-1].long(), (cu_k[1:] - cu_k[:-1]).long(), k.shape[0])
    kq, kd = quantize_rows(k.float() * 25 * ks[rows][:, :, None], fp8, ks, rows)
    vq, vd = quantize_rows(v.float() * 25 * vs[rows][:, :, None], fp8, vs, rows)
    if per == "kv_head":
        ks, vs = ks[0], vs[0]
    kw = dict(causal=True, softcap=20.0, k_scale=ks, v_scale=vs)
    if paged:
        kc, vc, table, lens = paged_cache(b, kq.float(), vq.float(), cu_k)
        kc, vc = kv_quant.quantize(kc, FP8[fp8], 1.0), kv_quant.quantize(vc, FP8[fp8], 1.0)
        out = attncc.paged_attention(q, kc, vc, table, lens, cu_seqlens_q=cu_q,
                                     max_seqlen_q=20, **kw)
    else:
        out = attncc.varlen_attention(q, kq, vq, cu_q, cu_k, 20, 150, **kw)
    assert out.dtype == torch.bfloat16
    ragged_check(b, out, q, kd, vd, cu_q, cu_k, slopes, sinks)


def test_per_kv_head_scales_broadcast_over_sequences():
    """[Hkv] scales (or [1, Hkv]) are every sequence's: the same result as
    the [B, Hkv] tensor repeating them."""
    g = torch.Generator().manual_seed(4)
    q = torch.randn(3, 8, 5, 64, generator=g).bfloat16()
    k8 = (torch.randn(3, 2, 90, 64, generator=g) * 20).to(torch.float8_e4m3fn)
    v8 = (torch.randn(3, 2, 90, 64, generator=g) * 20).to(torch.float8_e4m3fn)
    ks, vs = torch.tensor([0.02, 0.05]), torch.tensor([0.3, 0.1])
    want = attncc.attention(q, k8, v8, causal=True, k_scale=ks.expand(3, 2),
                            v_scale=vs.expand(3, 2))
    for a, b in ((ks, vs), (ks[None], vs[None])):
        assert torch.equal(attncc.attention(q, k8, v8, causal=True, k_scale=a, v_scale=b), want)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.double(), (k8.double() * ks.double().view(1, 2, 1, 1)).repeat_interleave(4, 1),
        (v8.double() * vs.double().view(1, 2, 1, 1)).repeat_interleave(4, 1), is_causal=True)
    assert (want.double() - ref).abs().max().item() < 2e-2 * ref.abs().max().item()


def test_per_head_scales_compile_nothing_new_per_value():
    """Per-head scales are run-time values: new values reuse the kernel."""
    q = torch.randn(2, 8, 1, 64)
    k8 = torch.randn(2, 2, 64, 64).to(torch.float8_e5m2)
    attncc.attention(q, k8, k8, k_scale=torch.full((2, 2), 0.5), v_scale=torch.ones(2, 2))
    before = attncc.cache_info()
    for i in range(3):
        s = torch.rand(2, 2) + 0.1
        attncc.attention(q, k8, k8, k_scale=s, v_scale=s * 2)
    after = attncc.cache_info()
    assert after["compiled"] == before["compiled"], (before, after)


# -- bad input -----------------------------------------------------------------------------

def test_refusals_name_the_problem():
    q = torch.randn(1, 4, 3, 32)
    k8 = torch.randn(1, 2, 9, 32).to(torch.float8_e4m3fn)
    with pytest.raises(InputError, match="q has dtype torch.float8_e4m3fn"):
        attncc.attention(k8, k8, k8)
    with pytest.raises(InputError, match="one fp8 dtype"):
        attncc.attention(q, k8, k8.float().to(torch.float8_e5m2))
    with pytest.raises(InputError, match="one fp8 dtype"):
        attncc.attention(q, k8, k8.float())
    with pytest.raises(InputError, match="one dtype"):
        attncc.attention(q.bfloat16(), k8.float(), k8.float())
    with pytest.raises(InputError, match="apply to fp8 K/V"):
        attncc.attention(q, k8.float(), k8.float(), k_scale=0.5)
    for bad in (0.0, -1.0, float("nan"), float("inf"), torch.ones(3), True, "1"):
        with pytest.raises(InputError, match="k_scale"):
            attncc.attention(q, k8, k8, k_scale=bad)
    assert attncc.attention(q, k8, k8, v_scale=torch.tensor([2.0])).shape == (1, 4, 3, 32)
    for bad, what in ((torch.ones(1, 3), r"\[sequences, 2\]"), (torch.ones(2, 2), "2 rows"),
                      (-torch.ones(1, 2), "positive"), (torch.ones(1, 2, dtype=torch.int32),
                                                        "float tensor")):
        with pytest.raises(InputError, match=what):
            attncc.attention(q, k8, k8, v_scale=bad)
    with pytest.raises(InputError, match="CPU only"):
        attncc.attention(q, k8, k8, target="sm_80")
    qp = torch.randn(2, 4, 32)
    kc = torch.zeros(4, 16, 2, 32, dtype=torch.float8_e5m2)
    table = torch.zeros(2, 1, dtype=torch.int32)
    lens = torch.ones(2, dtype=torch.int32)
    with pytest.raises(InputError, match="CPU only"):
        attncc.paged_attention(qp, kc, kc, table, lens, target="sm_90a")
    with pytest.raises(InputError, match="v_scale"):
        attncc.paged_attention(qp, kc, kc, table, lens, v_scale=-2.0)
    with pytest.raises(InputError, match="float8_e4m3fn / float8_e5m2"):
        attncc.paged_attention(qp, kc.view(torch.uint8), kc.view(torch.uint8), table, lens)
    with pytest.raises(InputError, match="per tensor or per KV head"):
        attncc.paged_kv_append(kc, kc, qp[:, :2], qp[:, :2], torch.zeros(2, dtype=torch.int32),
                               k_scale=torch.ones(2, 2))
    with pytest.raises(InputError, match=r"k_scale must be one number, a \[2\]"):
        attncc.paged_kv_append(kc, kc, qp[:, :2], qp[:, :2], torch.zeros(2, dtype=torch.int32),
                               k_scale=torch.ones(3))
    with pytest.raises(InputError, match="expected float32, float16 or bfloat16"):
        attncc.paged_kv_append(kc, kc, qp[:, :2].to(torch.float8_e5m2),
                               qp[:, :2].to(torch.float8_e5m2), torch.zeros(2, dtype=torch.int32))


def test_dialect_refuses_fp8_query():
    """A graph with an fp8 query is refused by the attn.attention verifier."""
    from attncc.errors import AttnccError
    g = attncc.Graph("fp8_query")
    q = g.input("q", (1, 2, 4, 16), "f8E4M3FN")
    with pytest.raises(AttnccError, match="8-bit floats are for key and value only"):
        g.output(g.attention(q, q, q))
        attncc.compile_graph(g)


# -- property ------------------------------------------------------------------------------

def test_property_fp8_attention(capsys):
    with capsys.disabled():
        print(f"\ntest_kv_quant property: seed {PROPERTY_SEED}")

    @seed(PROPERTY_SEED)
    @settings(max_examples=examples(20), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(fp8=st.sampled_from(sorted(FP8)), dtype=st.sampled_from(sorted(WIDE)),
           batch=st.integers(1, 3), kv_heads=st.integers(1, 3), group=st.sampled_from([1, 2, 4]),
           lq=st.integers(1, 40), lk=st.integers(1, 400), head_dim=st.sampled_from([32, 64, 128]),
           causal=st.booleans(), softcap=st.sampled_from([None, 30.0]),
           k_scale=st.sampled_from([1.0, 0.01, 3.0]), v_scale=st.sampled_from([1.0, 0.07]),
           heads=st.booleans(), seed_=st.integers(0, 2 ** 16))
    def prop(fp8, dtype, batch, kv_heads, group, lq, lk, head_dim, causal, softcap, k_scale,
             v_scale, heads, seed_):
        c = Case(batch=batch, kv_heads=kv_heads, group=group, lq=min(lq, lk), lk=lk,
                 head_dim=head_dim, dtype=dtype, causal=causal,
                 align="bottom_right" if causal else "top_left", softcap=softcap, seed=seed_)
        if heads:   # one scale per sequence and KV head (FlashAttention-3's descale)
            k_scale, v_scale = per_head(k_scale, c), per_head(v_scale, c)
        reporting(f"{c.describe()} fp8={fp8} k_scale={k_scale} v_scale={v_scale}",
                  run_case, c, fp8, k_scale, v_scale)

    prop()

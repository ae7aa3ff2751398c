"""attncc.compile(fn) and attncc.attention(q, k, v): behaviour, caching, and
the errors bad input gets (clear Python exceptions, never an abort)."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F

import attncc
from attncc import (AttnccError, CaptureError, CompileError, CompiledFunction, InputError,
                    InputTypeError, OptionError)
from attncc.api import _ATTENTION_CACHE
from attncc.compiler import CompiledAttention


def qkv(B=1, H=2, L=32, S=32, D=16, hkv=None, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=g).to(dtype).to(device)  # noqa: E731
    hkv = hkv or H
    return mk(B, H, L, D), mk(B, hkv, S, D), mk(B, hkv, S, D)


def naive(q, k, v):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return torch.softmax(s, dim=-1) @ v


# -- attncc.compile -----------------------------------------------------------------------

def test_compile_keeps_signature_and_name():
    def my_attention(q, k, v, *, causal=False):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    c = attncc.compile(my_attention)
    assert isinstance(c, CompiledFunction)
    assert inspect.signature(c) == inspect.signature(my_attention)
    assert c.__name__ == "my_attention"
    assert c.__wrapped__ is my_attention


def test_compile_as_decorator_with_and_without_options():
    @attncc.compile
    def a(q, k, v):
        return naive(q, k, v)

    @attncc.compile(block_m=32, num_stages=1)
    def b(q, k, v):
        return naive(q, k, v)
    assert isinstance(a, CompiledFunction) and isinstance(b, CompiledFunction)
    assert b.options.block_m == 32 and b.options.num_stages == 1


def test_call_runs_and_caches_per_signature():
    c = attncc.compile(naive)
    q, k, v = qkv()
    out = c(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    c(q, k, v)
    assert c.cache_info() == {"signatures": 1, "hits": 1, "misses": 1}
    c(*qkv(L=48))                       # new shape: new signature
    c(*qkv(dtype=torch.float16))        # new dtype: new signature
    assert c.cache_info()["signatures"] == 3
    c.cache_clear()
    assert c.cache_info()["signatures"] == 0


def test_kwargs_and_defaults_are_bound():
    def fn(q, k, v, scale=None, causal=False):
        return F.scaled_dot_product_attention(q, k, v, scale=scale, is_causal=causal)
    c = attncc.compile(fn)
    q, k, v = qkv()
    c(q, k, v=v, causal=True)
    c(q, k, v, None, True)               # same signature, positionally
    assert c.cache_info()["signatures"] == 1
    c(q, k, v, scale=0.5)                # a constant is part of the signature
    assert c.cache_info()["signatures"] == 2


def test_lower_on_meta_tensors_gives_every_stage():
    c = attncc.compile(naive, block_m=32, block_n=16, num_stages=2, unroll=2)
    compiled = c.lower(*qkv(L=64, S=64, device="meta"))
    assert isinstance(compiled, CompiledAttention)
    for stage in ("graph", "fused", "tiled", "pipelined", "llvm"):
        assert compiled.ir(stage)
    assert "attn.attention" in compiled.ir("fused")
    assert compiled.options.block_m == 32 and compiled.options.unroll == 2
    assert "attn.softmax" in compiled.ir("graph")
    # lowering does not run anything; running on meta is refused
    with pytest.raises(InputError, match="meta tensors carry no data"):
        c(*qkv(device="meta"))


def test_stop_after():
    c = attncc.compile(naive, stop_after="fused")
    compiled = c.lower(*qkv(device="meta"))
    assert list(compiled.stages) == ["graph", "fused"]
    with pytest.raises(CompileError, match="stop_after='fused'"):
        c(*qkv())
    with pytest.raises(OptionError, match="unknown stage"):
        attncc.compile(naive, stop_after="ptx-ish")


def test_capture_exposes_graph():
    cap = attncc.compile(naive).capture(*qkv(device="meta"))
    text = str(cap.graph)
    assert "attn.matmul" in text and "attn.softmax" in text


def test_mask_input_structure_checked_per_call():
    def fn(q, k, v, keep):
        s = q @ k.mT / math.sqrt(q.size(-1))
        return torch.softmax(s.masked_fill(~keep, float("-inf")), -1) @ v
    c = attncc.compile(fn)
    q, k, v = qkv()
    causal = torch.ones(32, 32, dtype=torch.bool).tril()
    c(q, k, v, causal)
    assert "mask causal" in c.lower(q, k, v, causal).ir("fused")
    other = causal.clone()
    other[5, 0] = False
    c(q, k, v, other)
    assert "mask bias" in c.lower(q, k, v, other).ir("fused")
    full = torch.ones(32, 32, dtype=torch.bool)
    assert "mask none" in c.lower(q, k, v, full).ir("fused")
    assert c.cache_info()["signatures"] == 1   # one capture, several kernels


# -- attncc.compile errors -----------------------------------------------------------------

def test_compile_bad_options():
    with pytest.raises(OptionError, match="block_m must be a power of two"):
        attncc.compile(naive, block_m=48)
    with pytest.raises(OptionError, match="num_stages"):
        attncc.compile(naive, num_stages=9)
    with pytest.raises(OptionError, match=r"unknown option\(s\) \['blockm'\]"):
        attncc.compile(naive, blockm=64)
    with pytest.raises(OptionError, match="unknown target 'gpu9'"):
        attncc.compile(naive, target="gpu9")
    with pytest.raises(InputTypeError, match="takes a function"):
        attncc.compile(42)


def test_compile_bad_inputs():
    c = attncc.compile(naive)
    q, k, v = qkv()
    with pytest.raises(InputError, match="dtype torch.float64"):
        c(q.double(), k.double(), v.double())
    with pytest.raises(InputError, match="one device"):
        c(q, k, v.to("meta"))
    with pytest.raises(InputTypeError, match="missing a required argument: 'v'"):
        c(q, k)
    with pytest.raises(InputTypeError, match="argument 'v' is a list"):
        c(q, k, [1.0, v])
    with pytest.raises(InputTypeError, match="takes no tensors"):
        c(1.0, 2.0, 3.0)
    with pytest.raises(CaptureError, match="could not trace naive"):
        c(q, k[..., :8], v)               # torch itself rejects the shapes
    assert isinstance(CaptureError("x"), AttnccError)


def test_compile_not_attention():
    c = attncc.compile(lambda q, k, v: q @ k.mT @ v)
    with pytest.raises(CaptureError, match="not an attention computation"):
        c(*qkv())


# -- attncc.attention ----------------------------------------------------------------------

def test_attention_runs_and_caches():
    attncc.api.clear_caches()
    q, k, v = qkv()
    out = attncc.attention(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    hits = attncc.cache_info()["hits"]
    attncc.attention(q, k, v)      # (served by the fast path, which counts as a hit)
    assert len(_ATTENTION_CACHE) == 1 and attncc.cache_info()["hits"] == hits + 1
    attncc.attention(q, k, v, causal=True)
    attncc.attention(q, k, v, block_m=32)
    attncc.attention(q, k, v, scale=0.3)
    assert len(_ATTENTION_CACHE) == 4


def test_attention_gqa_mqa_shapes():
    q, k, v = qkv(H=8, hkv=2)
    assert attncc.attention(q, k, v).shape == q.shape
    q, k, v = qkv(H=8, hkv=1, L=20, S=40)
    assert attncc.attention(q, k, v, causal=True).shape == (1, 8, 20, 16)


def test_attention_value_head_dim_may_differ():
    q, k, _ = qkv(D=16)
    v = torch.randn(1, 2, 32, 24)
    assert attncc.attention(q, k, v).shape == (1, 2, 32, 24)


def test_attention_empty():
    q, k, v = qkv(L=0)
    assert attncc.attention(q, k, v).shape == (1, 2, 0, 16)
    q, k, v = qkv(S=0)
    assert torch.equal(attncc.attention(q, k, v), torch.zeros(1, 2, 32, 16))


@pytest.mark.parametrize("call, exc, message", [
    (lambda q, k, v: attncc.attention(q.numpy(), k, v), InputTypeError, "q must be a torch.Tensor"),
    (lambda q, k, v: attncc.attention(q[0], k, v), InputError, r"q must have shape \[batch, heads, seq, head_dim\]; got shape \(2, 32, 16\)"),
    (lambda q, k, v: attncc.attention(q.double(), k.double(), v.double()), InputError, "q has dtype torch.float64"),
    (lambda q, k, v: attncc.attention(q.int(), k.int(), v.int()), InputError, "q has dtype torch.int32"),
    (lambda q, k, v: attncc.attention(q, k.half(), v), InputError, "one dtype"),
    (lambda q, k, v: attncc.attention(q, k[..., :8], v), InputError, r"head_dim of q \(16\) and k \(8\) differ"),
    (lambda q, k, v: attncc.attention(q, k, v[:, :, :5]), InputError, "different sequence lengths"),
    (lambda q, k, v: attncc.attention(q, k.expand(2, -1, -1, -1), v), InputError, "batch sizes differ"),
    (lambda q, k, v: attncc.attention(q.repeat(1, 3, 1, 1), k.repeat(1, 2, 1, 1), v.repeat(1, 2, 1, 1)), InputError, "not a multiple"),
    (lambda q, k, v: attncc.attention(q, k, v[:, :1]), InputError, "different numbers of heads"),
    (lambda q, k, v: attncc.attention(q, k, v, causal=True, attn_mask=torch.ones(32, 32, dtype=torch.bool)), InputError, "not both"),
    (lambda q, k, v: attncc.attention(q, k, v, attn_mask=torch.ones(31, 32)), InputError, "does not broadcast"),
    (lambda q, k, v: attncc.attention(q, k, v, attn_mask=torch.ones(1, 1, 1, 32, 32)), InputError, "rank 5"),
    (lambda q, k, v: attncc.attention(q, k, v, attn_mask=torch.ones(32, 32, dtype=torch.int64)), InputError, "attn_mask has dtype torch.int64"),
    (lambda q, k, v: attncc.attention(q, k, v, attn_mask=[[True]]), InputTypeError, "attn_mask must be a torch.Tensor"),
    (lambda q, k, v: attncc.attention(q, k, v, causal=1), InputTypeError, "causal must be a bool"),
    (lambda q, k, v: attncc.attention(q, k, v, scale="0.1"), InputError, "scale must be a finite number"),
    (lambda q, k, v: attncc.attention(q, k, v, scale=float("nan")), InputError, "scale must be a finite number"),
    (lambda q, k, v: attncc.attention(q.to("meta"), k.to("meta"), v.to("meta")), InputError, "meta tensors"),
    (lambda q, k, v: attncc.attention(q, k, v.to("meta")), InputError, "one device"),
    (lambda q, k, v: attncc.attention(q, k, v, block_m=7), OptionError, "block_m must be a power of two"),
    (lambda q, k, v: attncc.attention(q, k, v, unroll=3), OptionError, "unroll must be 1, 2, 4 or 8"),
    (lambda q, k, v: attncc.attention(q, k, v, num_threads=0), OptionError, "num_threads"),
    (lambda q, k, v: attncc.attention(q, k, v, blocks=64), OptionError, "unknown option"),
    (lambda q, k, v: attncc.attention(q, k, v, target="tpu"), OptionError, "unknown target 'tpu'"),
])
def test_attention_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call(*qkv())


def test_errors_are_attncc_errors():
    for exc in (InputError, InputTypeError, OptionError, CaptureError):
        assert issubclass(exc, AttnccError)
    assert issubclass(InputTypeError, TypeError) and issubclass(InputError, ValueError)


def test_gpu_targets_refuse_cpu_tensors():
    from attncc.targets import TARGETS
    q, k, v = qkv()
    for target in (t for t in TARGETS if t != "cpu"):
        with pytest.raises(InputError, match=f"tensors are on cpu but the target is '{target}'"):
            attncc.attention(q, k, v, target=target)
        with pytest.raises(InputError, match="tensors are on cpu"):
            attncc.compile(naive, target=target)(q, k, v)


def test_compiling_a_compiled_function_recompiles_the_original():
    import math

    @attncc.compile(block_m=32)
    def attn_fn(q, k, v):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        return torch.softmax(s, dim=-1) @ v

    again = attncc.compile(attn_fn, block_m=16, stop_after="fused")
    assert again.fn is attn_fn.fn
    q = torch.randn(1, 2, 16, 8)
    assert "attn.attention" in again.lower(q, q, q).ir("fused")


def test_a_call_without_a_causal_bias_does_not_import_dynamo():
    # torch.nn.attention.bias imports torch._dynamo (seconds): attncc looks
    # CausalBias up only once the user's code has imported it, so the first
    # call of a kernel from the disk cache stays in milliseconds.
    import subprocess
    import sys
    code = ("import sys, torch, attncc\n"
            "q = torch.randn(1, 4, 3, 16); k = torch.randn(1, 2, 5, 16)\n"
            "attncc.attention(q, k, k)\n"
            "attncc.attention(q, k, k, attn_mask=torch.ones(3, 5, dtype=torch.bool))\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"

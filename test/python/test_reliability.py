"""Bad input gets a clear error, never a silent wrong answer (issue: reliability)."""
from __future__ import annotations

import pytest
import torch

import attncc
from attncc.errors import InputError
from attncc.options import CompileOptions, OptionError


@pytest.mark.parametrize("which", ["q", "k", "v", "attn_mask"])
def test_inputs_that_require_grad_are_refused_in_grad_mode(which):
    t = {n: torch.randn(1, 2, 8, 16) for n in "qkv"}
    t["attn_mask"] = torch.zeros(8, 8)
    t[which].requires_grad_(True)
    with pytest.raises(InputError, match=f"'{which}' requires grad, but attncc has no backward"):
        attncc.attention(t["q"], t["k"], t["v"], attn_mask=t["attn_mask"])
    with torch.no_grad():
        out = attncc.attention(t["q"], t["k"], t["v"], attn_mask=t["attn_mask"])
    assert not out.requires_grad
    with torch.inference_mode():
        attncc.attention(t["q"], t["k"], t["v"], attn_mask=t["attn_mask"])


def test_compiled_functions_refuse_grad_too():
    @attncc.compile
    def attn(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.25, dim=-1) @ v

    q = torch.randn(1, 2, 8, 16, requires_grad=True)
    k = v = torch.randn(1, 2, 8, 16)
    with pytest.raises(InputError, match="'q' requires grad"):
        attn(q, k, v)
    with torch.no_grad():
        ref = torch.softmax(q @ k.transpose(-2, -1) * 0.25, dim=-1) @ v
        assert torch.allclose(attn(q, k, v), ref, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(unroll=True), dict(unroll=2.0), dict(num_stages=True),
                                dict(num_stages=2.0), dict(num_threads=True),
                                dict(num_threads=2.0)])
def test_bool_and_float_options_are_refused_where_they_enter(kw):
    with pytest.raises(OptionError, match=next(iter(kw))):
        CompileOptions(**kw)
    with pytest.raises(OptionError):
        attncc.attention(*(torch.randn(1, 1, 4, 8) for _ in range(3)), **kw)


@pytest.mark.parametrize("wrap", [lambda o: [o], lambda o: (o,), lambda o: {"out": o},
                                  lambda o: {"a": [o]}, lambda o: o])
def test_compiled_functions_keep_the_return_structure(wrap):
    def attn(q, k, v):
        return wrap(torch.softmax(q @ k.transpose(-2, -1) * 0.25, dim=-1) @ v)

    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))
    got, want = attncc.compile(attn)(q, k, v), attn(q, k, v)
    assert type(got) is type(want)
    flat_got, spec_got = torch.utils._pytree.tree_flatten(got)
    flat_want, spec_want = torch.utils._pytree.tree_flatten(want)
    assert spec_got == spec_want and len(flat_got) == 1
    assert torch.allclose(flat_got[0], flat_want[0], atol=1e-5)


def _poke(t, index, value):
    t = t.clone()
    t[index] = value
    return t


@pytest.mark.parametrize("case", ["overflow", "q nan", "k +inf", "k -inf", "v nan"])
@pytest.mark.parametrize("causal", [False, True])
def test_non_finite_values_give_torchs_nan_pattern(case, causal):
    # docs/numerics.md
    import torch.nn.functional as F

    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 24, 16) for _ in range(3))
    if case == "overflow":
        q, k = q * 1e20, k * 1e20
    elif case == "q nan":
        q = _poke(q, (0, 1, 5, 2), float("nan"))
    elif case == "k +inf":
        k = _poke(k, (0, 0, 7, 1), float("inf"))
    elif case == "k -inf":
        k = _poke(k, (0, 0, 7, 1), float("-inf"))
    elif case == "v nan":
        v = _poke(v, (0, 1, 9, 0), float("nan"))
    got = attncc.attention(q, k, v, causal=causal)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert torch.isnan(want).any() and torch.isnan(got).any()
    if case == "overflow":
        # q.k sums +inf and -inf products: which scores are NaN rather than
        # +-inf depends on the summation order, so only "NaN rows, like torch"
        # is promised; where both are finite they agree.
        both = torch.isfinite(want) & torch.isfinite(got)
        assert torch.allclose(got[both], want[both], atol=1e-4, rtol=1e-4)
        return
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    finite = torch.isfinite(want)
    assert torch.allclose(got[finite], want[finite], atol=1e-4, rtol=1e-4)


# -- captured values are guarded, never stale ------------------------------------------------

SCALE = 0.25


def _global_scale_attention(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) * SCALE, dim=-1) @ v


def _ref(q, k, v, scale, bias=None):
    s = q @ k.transpose(-2, -1) * scale
    if bias is not None:
        s = s + bias
    return torch.softmax(s, dim=-1) @ v


def test_a_changed_global_scale_recompiles():
    global SCALE
    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))
    f = attncc.compile(_global_scale_attention)
    try:
        SCALE = 0.25
        assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.25), atol=1e-5)
        SCALE = 2.0
        assert torch.allclose(f(q, k, v), _ref(q, k, v, 2.0), atol=1e-5)
        SCALE = 0.25
        assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.25), atol=1e-5)
    finally:
        SCALE = 0.25


def test_module_attributes_are_guarded():
    # attncc.compile(module): the module's own attributes, parameters and
    # buffers that forward reads are part of the key (a changed self.scale
    # kept computing with the old one: errors of ~1.5).
    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = 0.25
            self.bias = torch.nn.Parameter(torch.zeros(8, 8), requires_grad=False)

        def forward(self, q, k, v):
            return torch.softmax(q @ k.transpose(-2, -1) * self.scale + self.bias, -1) @ v

    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))
    m = Attn()
    f = attncc.compile(m)
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.25, m.bias), atol=1e-5)
    m.scale = 0.5
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.5, m.bias), atol=1e-5)
    m.bias.data = torch.randn(8, 8)            # new storage, same Parameter
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.5, m.bias), atol=1e-5)


def test_submodule_attributes_are_guarded():
    # attributes of submodules forward names (directly or through a container)
    # are part of the key too: a changed self.inner.scale kept the old kernel.
    class Inner(torch.nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, s):
            return s * self.scale

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner(0.25)
            self.layers = torch.nn.ModuleList([Inner(1.0)])

        def forward(self, q, k, v):
            s = self.inner(q @ k.transpose(-2, -1))
            for layer in self.layers:
                s = layer(s)
            return torch.softmax(s, -1) @ v

    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))
    m = Attn()
    f = attncc.compile(m)
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.25), atol=1e-5)
    m.inner.scale = 0.5
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.5), atol=1e-5)
    m.layers[0].scale = 2.0
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 1.0), atol=1e-5)
    m.inner = Inner(0.125)
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.25), atol=1e-5)


def test_closed_over_values_are_guarded():
    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))
    bias = torch.zeros(8, 8)
    scale = 0.5

    def attn(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * scale + bias, dim=-1) @ v

    f = attncc.compile(attn)
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.5, bias), atol=1e-5)
    bias[:, :4] = -1e9                         # modified in place
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.5, bias), atol=1e-5)
    bias = torch.randn(8, 8)                   # rebound
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.5, bias), atol=1e-5)
    scale = 0.125
    assert torch.allclose(f(q, k, v), _ref(q, k, v, 0.125, bias), atol=1e-5)


def test_random_ops_inside_the_function_are_refused():
    from attncc.errors import CaptureError

    def noisy(q, k, v):
        s = q @ k.transpose(-2, -1) * 0.25 + torch.randn(8, 8) * 0.01
        return torch.softmax(s, dim=-1) @ v

    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))
    with pytest.raises(CaptureError, match=r"calls the random op aten::randn: its values would be drawn once and frozen"):
        attncc.compile(noisy)(q, k, v)


@pytest.mark.parametrize("shape", [(1, 2, 0, 16), (0, 2, 8, 16), (1, 0, 8, 16)])
def test_empty_outputs_through_compile(shape):
    @attncc.compile
    def attn(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.25, dim=-1) @ v

    B, H, L, D = shape
    q = torch.randn(B, H, L, D)
    k = v = torch.randn(B, H, 8, D)
    out = attn(q, k, v)
    assert out.shape == (B, H, L, D) and out.dtype == torch.float32


def test_capture_errors_are_not_preceded_by_torch_tracebacks():
    import subprocess
    import sys

    code = ("import torch, attncc\n"
            "def bad(q, k, v):\n"
            "    return torch.softmax(q @ k * 0.25, dim=-1) @ v\n"
            "try:\n"
            "    attncc.compile(bad)(*(torch.randn(1, 2, 4, 16) for _ in range(3)))\n"
            "except attncc.errors.CaptureError as e:\n"
            "    print('clean:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "clean: could not trace bad" in proc.stdout
    assert "Traceback" not in proc.stderr and "fake_tensor" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("kw,same", [(dict(num_stages=True), dict(num_stages=1)),
                                     (dict(unroll=2.0), dict(unroll=2))])
def test_option_cache_does_not_take_a_bool_or_float_for_an_int(kw, same):
    # True == 1 and 2.0 == 2 as dict keys: the cached options of the int must
    # not answer for the bool or float (which are refused).
    q = torch.randn(1, 1, 4, 8)
    attncc.attention(q, q, q, **same)
    with pytest.raises(OptionError, match=next(iter(kw))):
        attncc.attention(q, q, q, **kw)


@pytest.mark.parametrize("fill", [-65504.0, -1e9, float(torch.finfo(torch.float32).min)])
@pytest.mark.parametrize("two_parts", [False, True])
def test_fully_masked_rows_with_finite_fills_match_eager(fill, two_parts):
    # masked_fill makes a fully masked row all `fill`: eager's softmax is
    # uniform there (the mean of V). The bias attncc builds must hide the
    # scores for that (at -65504 it did not: errors of ~1), and two fill parts
    # must not sum to -inf (zeros instead of the mean).
    def attn(q, k, v, m, pad):
        s = (q @ k.transpose(-2, -1)) * 0.25
        s = s.masked_fill(~m, fill)
        if two_parts:
            s = s.masked_fill(pad, fill)
        return torch.softmax(s, dim=-1) @ v

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))
    m = torch.ones(8, 8, dtype=torch.bool).tril()
    m[3] = False                                   # a padded query row
    pad = torch.zeros(8, 8, dtype=torch.bool)
    pad[:, 6] = True
    out = attncc.compile(attn)(q, k, v, m, pad)
    ref = attn(q.double(), k.double(), v.double(), m, pad)
    assert (out.double() - ref).abs().max().item() < 1e-5

"""`torch.ops.attncc.attention` and `attention_call`, what the integrations
call: the direct (dispatcher-free) path in plain eager inference, the
operator everywhere else, the same results and the same call count."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right
from torch.utils._python_dispatch import TorchDispatchMode

import attncc
from attncc.integrations import op


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _qkv(L, S, Hq=8, Hkv=2, D=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, Hq, L, D, generator=g), torch.randn(1, Hkv, S, D, generator=g),
            torch.randn(1, Hkv, S, D, generator=g))


def _ref(q, k, v, mask=None, causal=False):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask,
                                          is_causal=causal, enable_gqa=True).float()


@pytest.mark.parametrize("L,S,causal", [(1, 40, "bottom_right"), (5, 40, "bottom_right"),
                                         (40, 40, "bottom_right"), (40, 40, "top_left"),
                                         (1, 40, "none")])
def test_eager_call_skips_the_dispatcher_and_matches(L, S, causal):
    q, k, v = _qkv(L, S)
    before = op.calls()
    with torch.inference_mode():
        rec = _Recorder()
        out = op.attention_call(q, k, v, None, causal, None, -1, -1, None, None)
    if causal == "bottom_right" and L not in (1, S):
        want = _ref(q, k, v, mask=causal_lower_right(L, S)._materialize())
    else:
        want = _ref(q, k, v, causal=causal != "none" and L > 1)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    assert op.calls() == before + 1
    # The same call under a dispatch mode goes through the operator.
    with torch.inference_mode(), rec:
        again = op.attention_call(q, k, v, None, causal, None, -1, -1, None, None)
    assert "attncc.attention.default" in rec.ops, rec.ops
    assert op.calls() == before + 2
    torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_inputs_that_need_grad_go_through_the_operator():
    q, k, v = _qkv(3, 20)
    q.requires_grad_(True)
    out = op.attention_call(q, k, v, None, "top_left", None, -1, -1, None, None)
    assert out.grad_fn is not None     # the operator's autograd node, which refuses backward
    with pytest.raises(attncc.InputError, match="no backward"):
        out.sum().backward()
    with torch.no_grad():              # grad mode off: direct, and no graph
        out = op.attention_call(q, k, v, None, "top_left", None, -1, -1, None, None)
    assert out.grad_fn is None


def test_bad_causal_names_the_choices():
    q, k, v = _qkv(1, 8)
    with torch.inference_mode(), pytest.raises(attncc.InputError, match="causal must be one of"):
        op.attention_call(q, k, v, None, "lower_right", None, -1, -1, None, None)
    mask = torch.ones(1, 1, 1, 8, dtype=torch.bool)
    with torch.inference_mode(), pytest.raises(attncc.InputError, match="takes no attn_mask"):
        op.attention_call(q, k, v, mask, "bottom_right", None, -1, -1, None, None)

"""Capture of plain PyTorch code that is not (supported) attention: each case
is refused with a CaptureError that names the op and the user's line. Also how
often the conversion runs."""
import pytest
import torch
import torch.nn.functional as F

from attncc import CaptureError
from attncc.frontend import capture

from test_capture import L, S, SCALE, _line_of, check, fused, qkv


# -- errors ------------------------------------------------------------------------------------

def test_unsupported_op_names_op_and_line():
    def fn(q, k, v):
        s = q @ k.mT * SCALE
        s = torch.sigmoid(s) * 10.0  # not a score modifier attncc knows
        return torch.softmax(s, -1) @ v
    with pytest.raises(CaptureError) as e:
        capture(fn, *qkv())
    msg = str(e.value)
    assert "aten.sigmoid" in msg
    assert f"{__file__}:{_line_of(fn, 'torch.sigmoid')}" in msg
    assert "torch.sigmoid(s)" in msg


def test_no_softmax_is_not_attention():
    def fn(q, k, v):
        return (q @ k.mT * SCALE) @ v
    with pytest.raises(CaptureError, match="not an attention computation: it has no softmax"):
        capture(fn, *qkv())


def test_softmax_over_wrong_axis_is_not_attention():
    def fn(q, k, v):
        return torch.softmax(q @ k.mT * SCALE, dim=-2) @ v
    with pytest.raises(CaptureError, match="not an attention computation.*attn.softmax"):
        capture(fn, *qkv())


def test_result_not_depending_on_attention():
    with pytest.raises(CaptureError, match="not an attention computation"):
        capture(lambda q, k, v: q * 2.0, *qkv())


def test_dropout_in_training_mode():
    def fn(q, k, v):
        p = F.dropout(torch.softmax(q @ k.mT, -1), p=0.1, training=True)
        return p @ v
    with pytest.raises(CaptureError, match="dropout"):
        capture(fn, *qkv())


def test_dropout_eval_is_identity():
    def fn(q, k, v):
        return F.dropout(torch.softmax(q @ k.mT * SCALE, -1), p=0.1, training=False) @ v
    check(fused(fn, *qkv()))


def test_mask_from_scores_rejected_with_line():
    def fn(q, k, v):
        s = q @ k.mT
        s = s.masked_fill(s > 3.0, float("-inf"))
        return torch.softmax(s, -1) @ v
    with pytest.raises(CaptureError) as e:
        capture(fn, *qkv())
    assert f":{_line_of(fn, 's > 3.0')}" in str(e.value)


def test_positive_fill_rejected():
    def fn(q, k, v):
        s = (q @ k.mT).masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), 5.0)
        return torch.softmax(s, -1) @ v
    with pytest.raises(CaptureError, match="fill value 5.0"):
        capture(fn, *qkv())


@pytest.mark.parametrize("fill", [-5.0, -1e4])
def test_fill_that_does_not_dwarf_the_scores_rejected(fill):
    # A fill becomes -inf or an added bias; masked_fill replaces the scores,
    # the same only for fills at most finfo(float16).min (a fill of -5 gave
    # errors of ~1, -1e4 on a fully masked row).
    def fn(q, k, v):
        s = (q @ k.mT).masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), fill)
        return torch.softmax(s, -1) @ v
    with pytest.raises(CaptureError, match="fill value .*finfo\\(float16\\).min"):
        capture(fn, *qkv())


def test_trace_error_names_user_line():
    def fn(q, k, v):
        s = q @ k  # wrong: no transpose, shapes do not match
        return torch.softmax(s, -1) @ v
    with pytest.raises(CaptureError) as e:
        capture(fn, *qkv(d=8))
    assert f"{__file__}:{_line_of(fn, 'q @ k')}" in str(e.value)


def test_float64_input_rejected():
    from attncc import InputError
    q, k, v = qkv(torch.float64)
    with pytest.raises(InputError, match="float64"):
        capture(lambda q, k, v: torch.softmax(q @ k.mT, -1) @ v, q, k, v)


def test_einsum_unsupported_equation():
    def fn(q, k, v):
        s = torch.einsum("bhqd,bhkd->bhkq", q, k)
        return torch.softmax(s, -1) @ v
    with pytest.raises(CaptureError, match="einsum 'bhqd,bhkd->bhkq'"):
        capture(fn, *qkv())


def test_two_outputs_rejected():
    def fn(q, k, v):
        p = torch.softmax(q @ k.mT, -1)
        return p @ v, p
    with pytest.raises(CaptureError, match="returns 2 tensors"):
        capture(fn, *qkv())


def test_non_tensor_argument_rejected():
    from attncc import InputTypeError

    def fn(q, k, v, extra):
        return torch.softmax(q @ k.mT, -1) @ v
    with pytest.raises(InputTypeError, match="argument 'extra' is a object"):
        capture(fn, *qkv(), object())


def test_the_converter_runs_once_when_inputs_come_in_order(monkeypatch):
    """The conversion runs once for a function whose inputs are met in
    argument order, and twice only when a graph argument has to move."""
    from attncc.frontend import convert

    runs = []
    real = convert.Converter.run
    monkeypatch.setattr(convert.Converter, "run", lambda self: runs.append(1) or real(self))

    def plain(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * SCALE, -1) @ v

    capture(plain, *qkv())
    assert len(runs) == 1

    def mask_first(q, k, v, m):
        s = (q @ k.transpose(-2, -1)).masked_fill(m, float("-inf"))
        return torch.softmax(s * SCALE, -1) @ v

    runs.clear()
    m = torch.rand(L, S) > 0.5
    cap = capture(mask_first, *qkv(), m)
    assert len(runs) == 2   # the mask is met before v: built again with v first
    names = [i.name for i in cap.base.inputs]
    assert names[:3] == ["q", "k", "v"], names

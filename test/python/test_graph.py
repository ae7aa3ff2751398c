"""The graph builder: IR it prints, and the errors it raises on bad input."""
import pytest
import torch

import attncc
from attncc import Graph, GraphError


def build_chain(dtype="f16", mask="causal"):
    g = Graph("attention")
    q = g.input("q", (1, 8, 128, 64), dtype)
    k = g.input("k", (1, 8, 256, 64), dtype)
    v = g.input("v", (1, 8, 256, 64), dtype)
    s = g.scale(g.matmul(q, k, transpose_rhs=True, dtype="f32"), 0.125)
    if mask != "none":
        s = g.mask(s, mask, window=16 if mask == "sliding_window" else None)
    p = g.softmax(s)
    g.output(g.cast(g.matmul(p, g.cast(v, "f32")), dtype))
    return g


def test_prints_graph_ir():
    text = str(build_chain())
    assert "func.func @attention(%arg0: tensor<1x8x128x64xf16>" in text
    for snippet in ("attn.matmul %arg0, %arg1 transpose_rhs", "attn.scale %0 by 1.250000e-01",
                    "attn.mask %1 causal", "attn.softmax %2 axis -1",
                    "-> tensor<1x8x128x64xf16>"):
        assert snippet in text


def test_ir_reparses_in_a_fresh_context():
    from mlir import ir

    text = str(build_chain(mask="sliding_window"))
    with attncc.mlir_context():
        m = ir.Module.parse(text)
        assert str(m) == text


def test_torch_dtypes_accepted():
    g = Graph()
    q = g.input("q", (1, 2, 4, 8), torch.bfloat16)
    assert q.dtype == "bf16"


def test_dynamic_dims():
    g = Graph()
    q = g.input("q", (None, 4, None, 64), "f32")
    k = g.input("k", (None, 1, None, 64), "f32")
    o = g.attention(q, k, k, mask="causal")
    g.output(o)
    assert "tensor<?x4x?x64xf32>" in str(g)
    assert "kv_group 4" in str(g)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda g, a, b: g.matmul(a, b, transpose_rhs=True), "contraction dimensions differ: lhs has 64, rhs has 256"),
        (lambda g, a, b: g.softmax(a, axis=4), "axis 4 is out of range for rank 4"),
        (lambda g, a, b: g.mask(a, "sliding_window"), "requires a window"),
        (lambda g, a, b: g.mask(a, "diagonal"), "unknown mask kind 'diagonal'"),
        (lambda g, a, b: g.repeat_heads(a, 0), "repeats must be at least 1"),
        (lambda g, a, b: g.attention(a, b, b), "query and key head_dim differ"),
        (lambda g, a, b: g.matmul(a, 3), "rhs must be a graph Value, got int"),
    ],
)
def test_bad_graphs_raise_graph_error(build, message):
    g = Graph()
    a = g.input("a", (1, 8, 128, 64), "f32")
    b = g.input("b", (1, 8, 64, 256), "f32")
    with pytest.raises(GraphError, match=message):
        build(g, a, b)


def test_integer_inputs_rejected_by_the_verifier():
    g = Graph()
    a = g.input("a", (1, 1, 4, 4), "i32")
    with pytest.raises(GraphError, match="must be ranked tensor of floating-point values"):
        g.softmax(a)


def test_unknown_dtype():
    with pytest.raises(GraphError, match="unsupported dtype 'f8'"):
        Graph().input("a", (1, 1, 4, 4), "f8")


def test_values_of_other_graphs_rejected():
    g1, g2 = Graph(), Graph()
    a = g1.input("a", (1, 1, 4, 4), "f32")
    with pytest.raises(GraphError, match="belongs to another graph"):
        g2.softmax(a)


def test_no_ops_after_output():
    g = Graph()
    a = g.input("a", (1, 1, 4, 4), "f32")
    g.output(a)
    with pytest.raises(GraphError, match="already has its outputs"):
        g.softmax(a)

"""The compile driver runs every stage up to the one asked for, with the options given."""
import pytest

from attncc import Graph, GraphError
from attncc.compiler import compile_graph
from attncc.options import CompileOptions, OptionError
from attncc import pipeline


def causal_graph(L=100, D=16, hq=4, hkv=2):
    g = Graph("attention")
    q = g.input("q", (1, hq, L, D), "f16")
    k = g.input("k", (1, hkv, L, D), "f16")
    v = g.input("v", (1, hkv, L, D), "f16")
    g.output(g.attention(q, k, v, mask="causal"))
    return g


def test_stage_table_order():
    assert pipeline.STAGE_NAMES[:4] == ("graph", "fused", "tiled", "pipelined")


def test_stages_reflect_options():
    c = compile_graph(causal_graph(), CompileOptions(block_m=32, block_n=16, num_stages=3,
                                                     unroll=2), stop_after="pipelined")
    assert list(c.stages) == ["graph", "fused", "tiled", "pipelined"]
    tiled = c.ir("tiled")
    assert "memref.alloc() : memref<32x16xf32>" in tiled  # Q tile: block_m x head_dim
    assert "attn.kv_loop" in tiled and "attn.part" not in tiled
    piped = c.ir("pipelined")
    assert "memref<3x16x16xf32>" in piped  # K/V buffers with num_stages slots
    for part in ("prologue", "kernel", "epilogue"):
        assert f'attn.part = "{part}"' in piped
    assert "attn.unrolled_copy = 1" in piped
    assert set(c.stage_seconds) >= {"graph", "fused", "tiled", "pipelined"}
    with pytest.raises(ValueError, match="unknown or unreached stage 'llvm'"):
        c.ir("llvm")


def test_one_stage_means_no_pipelining():
    c = compile_graph(causal_graph(), CompileOptions(block_m=32, block_n=16, num_stages=1),
                      stop_after="pipelined")
    assert "attn.part" not in c.ir("pipelined")


@pytest.mark.parametrize("kwargs, message", [
    (dict(block_m=48), "block_m must be a power of two in \\[1, 256\\], got 48"),
    (dict(block_n=8), "block_n must be a power of two in \\[16, 256\\], got 8"),
    (dict(num_stages=0), "num_stages must be an integer in \\[1, 4\\], got 0"),
    (dict(num_stages=5), "num_stages must be an integer in \\[1, 4\\], got 5"),
    (dict(unroll=3), "unroll must be 1, 2, 4 or 8, got 3"),
    (dict(num_threads=0), "num_threads must be a positive integer"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(OptionError, match=message):
        CompileOptions(**kwargs)


def test_unknown_option():
    with pytest.raises(OptionError, match="unknown option\\(s\\) \\['blockm'\\]"):
        CompileOptions.from_kwargs({"blockm": 64})


def test_unfinished_graph():
    g = Graph()
    g.input("q", (1, 1, 4, 4), "f32")
    with pytest.raises(GraphError, match="has no outputs"):
        compile_graph(g)


@pytest.mark.parametrize("target, query_len, num_warps, expected", [
    ("cpu", 1000, None, (256, 64)),   # long queries: 256-row blocks on the CPU
    ("cpu", 17, None, (32, 64)),      # short queries: the next power of two
    ("cpu", 1, None, (1, 64)),        # decode: one row (GQA packs the group: 4 rows for 4)
    ("cpu", None, None, (256, 64)),   # dynamic length
    ("gpu", 1000, None, (64, 64)),    # GPU: 4 warps of 16 rows
    ("gpu", 1000, 8, (128, 64)),      # GPU: 16 rows per warp
])
def test_block_sizes_resolve_per_target(target, query_len, num_warps, expected):
    o = CompileOptions(num_warps=num_warps).resolved(target, query_len)
    assert (o.block_m, o.block_n) == expected


def test_explicit_block_sizes_win():
    o = CompileOptions(block_m=32, block_n=128).resolved("cpu", 4096)
    assert (o.block_m, o.block_n) == (32, 128)


def test_compiled_kernel_reports_resolved_options():
    c = compile_graph(causal_graph(L=100), stop_after="tiled")
    assert (c.options.block_m, c.options.block_n) == (128, 64)
    assert "memref.alloc() : memref<128x16xf32>" in c.ir("tiled")

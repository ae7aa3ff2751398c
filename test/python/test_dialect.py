"""The attn dialect and passes inside the mlir Python bindings (one MLIR copy)."""
import pytest
from mlir import ir

import attncc
from attncc import CompileError, pipeline
from attncc.compiler import run_stages
from attncc.dialects import attn as attn_d

from test_graph import build_chain


def test_dialect_ops_resolve_to_generated_classes():
    with attncc.mlir_context():
        m = ir.Module.parse(str(build_chain()))
        ops = list(m.body.operations[0].regions[0].blocks[0].operations)
        assert isinstance(ops[0], attn_d.MatmulOp)
        assert ops[0].transpose_rhs
        assert isinstance(ops[2], attn_d.MaskOp)
        assert attn_d.MaskKind(ops[2].kind.value) == attn_d.MaskKind.causal


def test_attn_fuse_runs_from_python():
    with attncc.mlir_context():
        m = ir.Module.parse(str(build_chain()))
        stages = run_stages(m, "cpu", {}, "chain", until="fused").stages
    assert set(stages) == {"graph", "fused"}
    fused = stages["fused"]
    assert "attn.attention %arg0, %arg1, %arg2 scale 1.250000e-01 mask causal kv_group 1" in fused
    assert "attn.softmax" not in fused


def test_invalid_ir_raises_not_aborts():
    with attncc.mlir_context():
        with pytest.raises(ir.MLIRError, match="kv_group 2 does not match"):
            ir.Module.parse("""
              func.func @f(%q: tensor<1x8x4x8xf32>, %k: tensor<1x2x4x8xf32>) -> tensor<1x8x4x8xf32> {
                %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 2
                  : tensor<1x8x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32> -> tensor<1x8x4x8xf32>
                return %0 : tensor<1x8x4x8xf32>
              }""")


def test_unknown_pass_raises_compile_error():
    with attncc.mlir_context():
        m = ir.Module.parse("module {}")
        with pytest.raises(CompileError, match="attn-nonexistent"):
            pipeline.run_passes(m, "attn-nonexistent")


def test_unknown_stage():
    with attncc.mlir_context():
        m = ir.Module.parse("module {}")
        with pytest.raises(ValueError, match="unknown stage 'bogus'"):
            run_stages(m, "cpu", {}, "f", until="bogus")

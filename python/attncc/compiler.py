"""Compiles an attention Graph through the pipeline to a runnable kernel.

    kernel = compile_graph(graph, CompileOptions(block_m=64), target="cpu")
    out = kernel(q, k, v)          # torch tensors in, torch tensor out
    kernel.ir("tiled")             # IR at any stage it went through
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from mlir import ir

from . import context as _context
from . import pipeline
from .errors import CompileError, GraphError
from .graph import Graph
from .options import CompileOptions

TARGETS = ("cpu", "sm_80", "sm_90a", "cuda")  # GPU targets: python/attncc/gpu.py


@dataclass
class OutputSpec:
    shape: tuple[Optional[int], ...]
    dtype: str


@dataclass
class CompiledAttention:
    """A compiled attention graph: the IR of each stage, timings, and (for the
    CPU) a callable kernel."""

    name: str
    target: str
    options: CompileOptions
    stages: dict[str, str]
    stage_seconds: dict[str, float]
    output: OutputSpec
    _kernel: Any = field(default=None, repr=False)
    # GPU targets: PTX text, cubin bytes (when ptxas exists) and launch metadata
    # (kernel name, grid, block, shared memory, registers; see attncc.gpu).
    ptx: Optional[str] = field(default=None, repr=False)
    cubin: Optional[bytes] = field(default=None, repr=False)
    metadata: dict = field(default_factory=dict, repr=False)

    def ir(self, stage: str) -> str:
        if stage not in self.stages:
            raise ValueError(f"unknown or unreached stage {stage!r}; this kernel has "
                             f"{list(self.stages)}")
        return self.stages[stage]

    def __call__(self, *tensors):
        if self._kernel is None:
            raise CompileError(f"target {self.target!r} kernels cannot run in this process")
        return self._kernel(*tensors)


def output_spec(graph: Graph) -> OutputSpec:
    """The one output of a finished attention graph (GraphError otherwise)."""
    if not graph._finished:
        raise GraphError("the graph has no outputs; call graph.output(...) first")
    results = graph.func.type.results
    if len(results) != 1:
        raise GraphError(f"an attention graph has one output, this one has {len(results)}")
    out_t = ir.RankedTensorType(results[0])
    return OutputSpec(
        tuple(None if ir.ShapedType.is_dynamic_size(d) else d for d in out_t.shape),
        str(out_t.element_type))


def compile_graph(graph: Graph, options: Optional[CompileOptions] = None,
                  target: str = "cpu", stop_after: Optional[str] = None) -> CompiledAttention:
    """Runs the pipeline on `graph` (finished with `output`) for `target`."""
    options = options or CompileOptions()
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; expected one of {TARGETS}")
    output = output_spec(graph)
    query_len = output.shape[2] if len(output.shape) == 4 else None
    options = options.resolved("cpu" if target == "cpu" else "gpu", query_len)
    if target != "cpu":
        from .gpu import compile_graph_gpu

        return compile_graph_gpu(graph, options, target, stop_after)
    last = stop_after or pipeline.STAGE_NAMES[-1]
    text = str(graph.module)
    with _context.mlir_context():
        module = ir.Module.parse(text)
        stages: dict[str, str] = {}
        seconds: dict[str, float] = {}
        for stage in pipeline.STAGES:
            t0 = time.perf_counter()
            pipeline.run_passes(module, stage.passes(options.as_dict()),
                                what=f"stage '{stage.name}'")
            seconds[stage.name] = time.perf_counter() - t0
            stages[stage.name] = str(module)
            if stage.name == last:
                break
        kernel = None
        if last == pipeline.STAGE_NAMES[-1] and "llvm" in pipeline.STAGE_NAMES:
            from .runtime.cpu import CpuKernel

            t0 = time.perf_counter()
            kernel = CpuKernel(module, graph.name, output=output,
                               num_threads=options.num_threads)
            seconds["jit"] = time.perf_counter() - t0
    return CompiledAttention(graph.name, target, options, stages, seconds, output, kernel)

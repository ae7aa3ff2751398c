"""Compiles an attention Graph through the pipeline to a runnable kernel.

    kernel = compile_graph(graph, CompileOptions(block_m=64), target="cpu")
    out = kernel(q, k, v)          # torch tensors in, torch tensor out
    kernel.ir("tiled")             # IR at any stage it went through
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

from mlir import ir

from . import context as _context
from . import pipeline
from .errors import CompileError, GraphError
from .graph import Graph
from .kernel_cache import KernelCache, cache_key
from .options import CompileOptions
from .runtime.cpu import CpuKernel, EmptyKernel
from .targets import cpu as cpu_target

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
    return _compile_cpu(graph, options, output, stop_after)


def cpu_cache_target(isa: cpu_target.CpuIsa) -> str:
    """What a CPU kernel is made for, in its cache key: the ISA class and the
    host as LLVM's JIT sees it (the object code is compiled for that CPU)."""
    host = cpu_target.host_cpu()
    return f"{isa.name};{host.triple};{host.name};{','.join(sorted(host.features))}"


def _compile_cpu(graph: Graph, options: CompileOptions, output: OutputSpec,
                 stop_after: Optional[str]) -> CompiledAttention:
    """Kernels are JIT-compiled when the pipeline runs to its end: always
    without `stop_after` (a class the host cannot run is then an error before
    any JIT), and with stop_after='llvm' where the host can run it (elsewhere
    the IR is the product)."""
    isa = cpu_target.resolve(options.cpu)
    last = stop_after or pipeline.STAGE_NAMES[-1]
    full = last == pipeline.STAGE_NAMES[-1]
    if full and stop_after is None:
        cpu_target.check_runnable(isa)   # before any JIT
    elif full and cpu_target.missing_features(isa):
        full = False
    text = str(graph.module)
    opts = options.as_dict()
    metadata = dict(isa.as_dict(), host_cpu=cpu_target.host_cpu().name,
                    num_threads=options.num_threads)
    cache = KernelCache.default("cpu") if full else None
    key = cache_key(text, opts, cpu_cache_target(isa)) if cache else None
    if cache:
        t0 = time.perf_counter()
        hit = cache.get(key)
        if hit is not None:
            try:
                kernel = hit.get("_kernel")   # loaded before in this process
                if not isinstance(kernel, CpuKernel):
                    kernel = CpuKernel.from_object(hit["object"], graph.name, hit["arg_types"],
                                                   hit["externals"], output=output,
                                                   num_threads=options.num_threads)
                    hit["_kernel"] = kernel
            except (CompileError, KeyError, TypeError) as e:
                warnings.warn(f"attncc kernel cache: entry {key[:16]} cannot be loaded ({e}); "
                              "recompiling", RuntimeWarning, stacklevel=3)
            else:
                return CompiledAttention(graph.name, "cpu", options, hit["stages"],
                                         {"cache": time.perf_counter() - t0}, output, kernel,
                                         metadata=hit.get("metadata", metadata))
    with _context.mlir_context():
        module = ir.Module.parse(text)
        stages: dict[str, str] = {}
        seconds: dict[str, float] = {}
        for stage in pipeline.STAGES:
            t0 = time.perf_counter()
            pipeline.run_passes(module, stage.passes(opts), what=f"stage '{stage.name}'")
            seconds[stage.name] = time.perf_counter() - t0
            stages[stage.name] = str(module)
            if stage.name == last:
                break
        kernel = None
        if full and 0 in output.shape:
            # Nothing to compute (a zero-length query, batch or head dim): the
            # tile program has no tile ops left and no kernel is needed.
            kernel = EmptyKernel(output)
        elif full:
            t0 = time.perf_counter()
            kernel = CpuKernel(module, graph.name, output=output,
                               num_threads=options.num_threads,
                               function_attributes=cpu_target.llvm_function_attributes(
                                   isa, forced=options.cpu != "host"),
                               keep_object=cache is not None)
            seconds["jit"] = time.perf_counter() - t0
    if cache and isinstance(kernel, CpuKernel) and kernel.object is not None:
        cache.put(key, {"stages": stages, "metadata": metadata, "object": kernel.object,
                        "arg_types": kernel.arg_types, "externals": kernel.externals,
                        "_kernel": kernel})
    return CompiledAttention(graph.name, "cpu", options, stages, seconds, output, kernel,
                             metadata=metadata)

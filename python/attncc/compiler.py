"""The compile driver: one walk over the stage table (attncc.pipeline) for
every target, used by the API, the CLI and the tests.

    kernel = compile_graph(graph, CompileOptions(block_m=64), target="cpu")
    out = kernel(q, k, v)          # torch tensors in, torch tensor out
    kernel.ir("tiled")             # IR at any stage it went through

`run_stages` is the walk itself: it runs each stage's passes (one at a time
when a per-pass hook is given, as `attncc explain` does), calls the stage's
hooks for what it produces besides IR (launch metadata, PTX, the cubin), and
times each stage. `compile_graph` adds what a kernel needs around it: options
resolved once for the target, the kernel cache, and the runtime kernel.
"""
from __future__ import annotations

import gc
import os
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from mlir import ir
from mlir.passmanager import PassManager

from . import context as _context
from . import pipeline
from ._version import __version__
from .errors import CompileError, GraphError
from .graph import Graph
from .options import (CPU_MIN_TASK_WORK, CPU_MIN_TASK_WORK_ASYNC, CompileOptions,
                      OptionError)
from .pipeline import Products, Stage
from .runtime.cpu import CpuKernel, EmptyKernel
from .runtime.cuda import CudaKernel
from .runtime import openmp
from .runtime.kernel_cache import KernelCache, cache_key
from .targets import TARGETS
from .targets import cpu as cpu_target
from .targets import gpu as gpu_target
from .targets import kind as target_kind


@dataclass
class OutputSpec:
    shape: tuple[Optional[int], ...]
    dtype: str


@dataclass
class CompiledAttention:
    """A compiled attention graph: the IR of each stage, timings, and a
    callable kernel (CPU: runs here; GPU: runs where CUDA is)."""

    name: str
    target: str
    options: CompileOptions
    stages: dict[str, str]
    stage_seconds: dict[str, float]
    output: OutputSpec
    _kernel: Any = field(default=None, repr=False)
    # GPU targets: PTX text, cubin bytes (when ptxas exists) and launch metadata
    # (kernel name, grid, block, shared memory, registers; attncc.targets.gpu).
    # CPU: the ISA class, host CPU and threads.
    ptx: Optional[str] = field(default=None, repr=False)
    cubin: Optional[bytes] = field(default=None, repr=False)
    metadata: dict = field(default_factory=dict, repr=False)

    def ir(self, stage: str) -> str:
        if stage not in self.stages:
            raise ValueError(f"unknown or unreached stage {stage!r}; this kernel has "
                             f"{list(self.stages)}")
        return self.stages[stage]

    def __call__(self, *tensors, **kwargs):
        if self._kernel is None:
            raise CompileError(f"target {self.target!r} kernels cannot run in this process")
        return self._kernel(*tensors, **kwargs)


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


# -- the walk over the stage table ------------------------------------------------------------

@dataclass
class PassEvent:
    """One pass (or tool) run by `run_stages` with a per-pass hook."""

    stage: str
    index: int          # 1-based, over the whole walk
    pipeline: str       # the pass with its anchor, e.g. func.func(attn-pipeline{num-stages=3})
    name: str           # the pass argument (e.g. attn-pipeline), or the tool (ptxas)
    seconds: float
    module: ir.Module   # after the pass
    text: Optional[str] = None   # a tool's report


@dataclass
class StageRun:
    stages: dict[str, str]          # IR (or a tool's report) after each stage
    seconds: dict[str, float]
    products: Products


def stage_options(options: CompileOptions, target: str) -> dict[str, Any]:
    """The pass options of resolved `options` for `target` (the GPU chip added)."""
    opts = options.as_dict()
    if target_kind(target) == "gpu":
        opts["chip"] = gpu_target.chip_for_target(target)
        return opts
    isa = cpu_target.resolve(options.cpu)
    if isa.bf16_pairs:
        # bf16 tiles and AMX / vdpbf16ps matmuls where the shapes fit (attn-tile bf16-pairs).
        opts["bf16_pairs"] = True
    if isa.bf16_dot:
        # bf16 decode (kv-in-place) on vdpbf16ps: K/V rows never widened to f32
        # (attn-tile kv-in-place-pairs; docs/cpu-backend.md).
        opts["kv_in_place_pairs"] = True
    # Diagonal KV blocks run on the rows that see their keys (attn-tile
    # skip-masked-rows; causal S1024 prefill, docs/cpu-backend.md).
    opts["skip_masked_rows"] = True
    if (options.num_threads or 1) > 1:
        # The grid as at most num_threads tasks, their count chosen at run
        # time from the work (attn-tile cpu-tasks): a short call runs inline.
        # Run on torch's OpenMP threads where its runtime is found, else on
        # the async runtime's pool (targets/cpu.py llvm_passes).
        omp = openmp.runtime() is not None
        opts["cpu_tasks"] = options.num_threads
        opts["min_task_work"] = CPU_MIN_TASK_WORK if omp else CPU_MIN_TASK_WORK_ASYNC
        opts["cpu_threading"] = "omp" if omp else "async"
    return opts


def _stages(target: str, until: Optional[str]) -> list[Stage]:
    stages = list(pipeline.stages_for(target))
    names = [s.name for s in stages]
    if until is not None and until not in names:
        raise OptionError(f"unknown stage {until!r} for target {target!r}; expected one of "
                           f"{names}")
    return stages[:names.index(until) + 1] if until else stages


def run_stages(module: ir.Module, target: str, opts: dict[str, Any], func_name: str, *,
               until: Optional[str] = None, start_after: Optional[str] = None,
               keep_ir: bool = True,
               on_pass: Optional[Callable[[PassEvent], None]] = None) -> StageRun:
    """Lowers `module` in place through the stages of `target` (after
    `start_after`, up to `until`), with pass options `opts` (stage_options)."""
    stages = _stages(target, until)
    if start_after is not None:
        stages = stages[[s.name for s in stages].index(start_after) + 1:]
    run = StageRun({}, {}, Products(func_name))
    index = 0
    for stage in stages:
        t0 = time.perf_counter()
        if stage.tool is not None:
            text = stage.tool(module, opts, run.products)
            index += 1
            if on_pass:
                command = stage.tool_command(opts)
                on_pass(PassEvent(stage.name, index, command, command.split()[0],
                                  time.perf_counter() - t0, module, text))
        else:
            passes = stage.passes(opts)
            what = f"stage '{stage.name}'"
            if on_pass is None:
                pipeline.run_passes(module, passes, what=what)
            else:
                for element in pipeline.expand(passes):
                    index += 1
                    name = pipeline.pass_name(element)
                    p0 = time.perf_counter()
                    pipeline.run_passes(module, element, what=f"pass {name} ({what})")
                    on_pass(PassEvent(stage.name, index, element, name,
                                      time.perf_counter() - p0, module))
            if stage.collect is not None:
                stage.collect(module, opts, run.products)
            text = str(module) if keep_ir else ""
        run.seconds[stage.name] = time.perf_counter() - t0
        run.stages[stage.name] = text
    return run


def timing_report(module: ir.Module, target: str, opts: dict[str, Any], stage_name: str) -> str:
    """MLIR's own timing report (PassManager.enable_timing) of one stage's
    passes, run on `module` (at the stage before it). MLIR prints the report
    on stderr when the pass manager goes; it is captured here."""
    stage = next(s for s in pipeline.stages_for(target) if s.name == stage_name)
    text = stage.passes(opts)
    if stage.tool is not None or not text:
        return ""
    with module.context:
        pm = PassManager.parse(f"builtin.module({text})")
        pm.enable_timing()
        with tempfile.TemporaryFile() as tmp:
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
            try:
                pm.run(module.operation)
                del pm
                gc.collect()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            return tmp.read().decode(errors="replace")


# -- kernels ----------------------------------------------------------------------------------

_STATS_LOCK = threading.Lock()
_STATS: dict[str, Any] = {"compiled": {}, "memory_hits": 0, "disk_hits": 0}


def _count(what: str, target: Optional[str] = None) -> None:
    with _STATS_LOCK:
        if what == "compiled":
            _STATS["compiled"][target] = _STATS["compiled"].get(target, 0) + 1
        else:
            _STATS[what] += 1


def compile_stats() -> dict[str, Any]:
    """Per-process counters of `compile_graph`: pipelines run (kernels
    compiled, by target; a `stop_after` lowering counts too) and kernels
    found in the kernel caches instead (in this process's memory, or on
    disk). Never reset."""
    with _STATS_LOCK:
        return {"compiled": dict(_STATS["compiled"]), "memory_hits": _STATS["memory_hits"],
                "disk_hits": _STATS["disk_hits"]}


def _lookup(cache: KernelCache, key: str) -> Optional[dict[str, Any]]:
    hit, where = cache.lookup(key)
    if where is not None:
        _count(f"{where}_hits")
    return hit

def compile_graph(graph: Graph, options: Optional[CompileOptions] = None,
                  target: str = "cpu", stop_after: Optional[str] = None, *,
                  fused: Optional[str] = None,
                  query_len: Optional[int] = None, split_kv: bool = False,
                  lse: bool = False, heads_inner: bool = False,
                  strided_kv: bool = False) -> CompiledAttention:
    """Runs the pipeline on `graph` (finished with `output`) for `target`.

    `fused`: the IR of stage 'fused' when the caller has it already (the
    frontend checks every captured graph at that stage), so it is not made
    twice. Kernels are made when the pipeline runs to its end.

    `query_len`: when the graph's query length is dynamic, the length the
    defaults (the query block size: CompileOptions.resolved) are chosen for;
    the kernel runs for any length, best in that length's bucket.

    `lse`, `split_kv`: attn-tile's kernel forms (attncc.attention's
    return_lse and num_splits): the kernel takes, after `out`, an f32 `lse`
    [B, H, L] and, with split_kv, the workspaces `part` [P * B, H, L, Dv] and
    `part_lse` [P * B, H, L] (P, the split count, is their leading size / B),
    passed with `kernel(*inputs, extra=(lse, part, part_lse))`.

    `heads_inner`: attn-tile's heads-inner form of a ragged decode kernel on
    the CPU (one grid point per work item, its heads looped inside the KV
    loop; attncc.frontend.ragged_schedule.heads_inner says when).

    `strided_kv`: the CPU kernel takes K and V of any strides but a unit
    innermost one (attn-tile strided-kv: views such as MLA's V = K[..., :Dv]
    run without a copy); dense K/V are faster with the default."""
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; expected one of {TARGETS}")
    output = output_spec(graph)
    if len(output.shape) == 4 and output.shape[2] is not None:
        query_len = output.shape[2]
    elt, head_dim = _query_facts(graph)
    options = (options or CompileOptions()).resolved(target, query_len, elt, head_dim)
    names = pipeline.stage_names(target)
    last = stop_after or names[-1]
    if last not in names:
        raise CompileError(f"unknown stage {last!r} for target {target!r}; expected one of "
                           f"{list(names)}")
    full = last == names[-1]
    opts = stage_options(options, target)
    if split_kv or lse:   # only then: the keys of the plain kernels stay as they were
        opts.update(split_kv=bool(split_kv), lse=bool(lse))
    if strided_kv:
        if target_kind(target) != "cpu":
            raise CompileError("strided_kv is a CPU form (attn-tile strided-kv); the GPU "
                               "targets take dense K/V")
        opts["strided_kv"] = True
    if heads_inner:
        if target_kind(target) != "cpu":
            raise CompileError("heads_inner is a CPU form (attn-tile heads-inner)")
        opts["heads_inner"] = True
    if target_kind(target) == "cpu":
        return _compile_cpu(graph, options, opts, output, last, full, stop_after, fused)
    return _compile_gpu(graph, options, opts, target, output, last, full, fused)


def _query_facts(graph: Graph) -> tuple[Optional[str], Optional[int]]:
    """Element type and head dim of the graph's first 4-D input (q, as the
    API and captured graphs order them): some GPU defaults depend on them."""
    for t in graph.func.type.inputs:
        try:
            rt = ir.RankedTensorType(t)
        except ValueError:
            continue
        if rt.rank == 4:
            d = rt.shape[-1]
            return str(rt.element_type), None if ir.ShapedType.is_dynamic_size(d) else d
    return None, None


def _lower(graph: Graph, target: str, opts: dict[str, Any], last: str,
           fused: Optional[str]) -> tuple[ir.Module, StageRun]:
    """Parses the graph (or its fused IR) and runs the stages up to `last`;
    the module is valid inside the caller's mlir_context."""
    text = str(graph.module)
    start = None
    if fused is not None and last != "graph":
        module, start = ir.Module.parse(fused), "fused"
    else:
        module = ir.Module.parse(text)
    run = run_stages(module, target, opts, graph.name, until=last, start_after=start)
    if start is not None:
        run.stages = {"graph": text, "fused": fused, **run.stages}
    return module, run


def _compile_cpu(graph, options, opts, output, last, full, stop_after, fused):
    """CPU kernels are JIT-compiled when the pipeline runs to its end: always
    without `stop_after` (a class the host cannot run is then an error before
    any JIT), and with stop_after='llvm' where the host can run it (elsewhere
    the IR is the product)."""
    isa = cpu_target.resolve(options.cpu)
    if full and stop_after is None:
        cpu_target.check_runnable(isa)   # before any JIT
    elif full and cpu_target.missing_features(isa):
        full = False
    metadata = dict(isa.as_dict(), host_cpu=cpu_target.host_cpu().name,
                    num_threads=options.num_threads)
    cache = KernelCache.default("cpu") if full else None
    key = cache_key(str(graph.module), opts, cpu_target.cache_target(isa)) if cache else None
    if cache:
        t0 = time.perf_counter()
        hit = _lookup(cache, key)
        if hit is not None:
            try:
                kernel = hit.get("_kernel")   # loaded before in this process
                if not isinstance(kernel, CpuKernel):
                    kernel = CpuKernel.from_object(hit["object"], graph.name, hit["arg_types"],
                                                   hit["externals"], output=output,
                                                   num_threads=options.num_threads,
                                                   context=graph.context)
                    hit["_kernel"] = kernel
            except (CompileError, KeyError, TypeError) as e:
                warnings.warn(f"attncc kernel cache: entry {key[:16]} cannot be loaded ({e}); "
                              "recompiling", RuntimeWarning, stacklevel=4)
            else:
                return CompiledAttention(graph.name, "cpu", options, hit["stages"],
                                         {"cache": time.perf_counter() - t0}, output, kernel,
                                         metadata=hit.get("metadata", metadata))
    _count("compiled", "cpu")
    with _context.mlir_context():
        module, run = _lower(graph, "cpu", opts, last, fused)
        kernel = None
        if full and 0 in output.shape:
            # Nothing to compute (a zero-length query, batch or head dim): the
            # tile program has no tile ops left and no kernel is needed.
            kernel = EmptyKernel(output)
        elif full:
            t0 = time.perf_counter()
            kernel = CpuKernel(module, graph.name, output=output,
                               num_threads=options.num_threads,
                               pipeline=cpu_target.jit_pipeline(options.llvm_opt),
                               codegen_level=cpu_target.JIT_CODEGEN_LEVEL,
                               function_attributes=cpu_target.llvm_function_attributes(
                                   isa, forced=options.cpu != "host"),
                               keep_object=cache is not None)
            run.seconds["jit"] = time.perf_counter() - t0
    if cache and isinstance(kernel, CpuKernel) and kernel.object is not None:
        cache.put(key, {"stages": run.stages, "metadata": metadata, "object": kernel.object,
                        "arg_types": kernel.arg_types, "externals": kernel.externals,
                        "_kernel": kernel})
    return CompiledAttention(graph.name, "cpu", options, run.stages, run.seconds, output,
                             kernel, metadata=metadata)


def _compile_gpu(graph, options, opts, target, output, last, full, fused):
    chip = opts["chip"]
    cache = KernelCache.default("gpu") if full else None
    key = cache_key(str(graph.module), opts, gpu_target.cache_target(chip)) if cache else None
    if cache:
        hit = _lookup(cache, key)
        if hit is not None:
            return CompiledAttention(graph.name, target, options, hit["stages"], {"cache": 0.0},
                                     output, CudaKernel(hit["metadata"], hit["ptx"], hit["cubin"]),
                                     ptx=hit["ptx"], cubin=hit["cubin"], metadata=hit["metadata"])
    _count("compiled", target)
    with _context.mlir_context():
        _, run = _lower(graph, target, opts, last, fused)
    p = run.products
    if p.metadata:
        p.metadata.update(chip=chip, ptx_features=gpu_target.CHIPS[chip].ptx_features,
                          num_warps=options.num_warps, block_m=options.block_m,
                          block_n=options.block_n, num_stages=options.num_stages,
                          output_dtype=output.dtype, compiler=__version__)
    kernel = CudaKernel(p.metadata, p.ptx, p.cubin) if full else None
    if cache:
        cache.put(key, {"stages": run.stages, "metadata": p.metadata, "ptx": p.ptx,
                        "cubin": p.cubin})
    return CompiledAttention(graph.name, target, options, run.stages, run.seconds, output,
                             kernel, ptx=p.ptx, cubin=p.cubin, metadata=p.metadata)

"""The compilation pipeline, declared once: stage names, the passes that
produce each stage from the previous one, and their options.

The Python API, the tests and the docs read this table; `attncc-opt` runs the
same pass names (see docs/pipeline.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping

from mlir import ir
from mlir.passmanager import PassManager

from .errors import CompileError
from .targets import cpu as cpu_target


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    # Textual pass pipeline (nested under builtin.module) producing this
    # stage from the previous one, given the compile options.
    passes: Callable[[Mapping[str, object]], str]
    # "passes": run `passes`; "ptxas": assemble the PTX of stage 'ptx' into a
    # cubin with ptxas (python/attncc/gpu.py), no MLIR pass.
    kind: str = "passes"


def default_num_threads() -> int:
    """Threads for the CPU grid when the options leave it open: as many as torch
    uses (its intra-op pool), else the CPUs this process may run on."""
    try:
        import torch

        return max(1, torch.get_num_threads())
    except ImportError:  # pragma: no cover
        return max(1, len(os.sched_getaffinity(0)))


def _cpu_llvm_passes(o: Mapping[str, object]) -> str:
    """attn-lower-to-cpu, then upstream conversions to the LLVM dialect.

    Threads: upstream async-parallel-for splits the grid `scf.parallel` into
    tasks for the async runtime's thread pool (`num-workers` = num_threads sizes
    the split; `min-task-size=1` because one grid point is a whole query block,
    not one element). With one thread the grid stays a serial loop. The kernel
    gets a C interface (`_mlir_ciface_<name>`) for the runtime."""
    threads = o.get("num_threads") or default_num_threads()
    isa = cpu_target.resolve(str(o.get("cpu") or "host"))
    width = o.get("vector_width") or isa.vector_width
    parallel = ""
    if int(threads) > 1:
        parallel = (f"async-parallel-for{{async-dispatch=true num-workers={int(threads)} "
                    "min-task-size=1},async-to-async-runtime,async-runtime-ref-counting,"
                    "async-runtime-ref-counting-opt,arith-expand,convert-async-to-llvm,")
    # arith-expand{include-bf16}: f32 <-> bf16 conversions as integer code
    # (round to nearest even, NaN kept), since LLVM lowers `fptrunc to bfloat`
    # to a call of compiler-rt's __truncsfbf2 on hosts without AVX-512-BF16,
    # which the JIT cannot resolve. f16 needs nothing: F16C (part of every
    # class of targets/cpu.py) and NEON convert natively.
    return (f"attn-lower-to-cpu{{vector-width={int(width)} micro-rows={isa.micro_rows} "
            f"micro-vectors={isa.micro_vectors} isa={isa.name}}},canonicalize,cse,"
            "func.func(convert-linalg-to-loops,llvm-request-c-wrappers),"
            + parallel +
            "expand-strided-metadata,lower-affine,convert-scf-to-cf,arith-expand{include-bf16=true},"
            "convert-vector-to-llvm{reassociate-fp-reductions=1},finalize-memref-to-llvm,"
            "convert-math-to-llvm,convert-arith-to-llvm,convert-index-to-llvm,"
            "convert-cf-to-llvm,convert-func-to-llvm,reconcile-unrealized-casts")


STAGES: tuple[Stage, ...] = (
    Stage("graph", "attn graph ops as built from Python or captured from torch",
          lambda o: ""),
    Stage("fused", "the chain fused into attn.attention",
          lambda o: "func.func(attn-fuse),canonicalize,cse"),
    Stage("tiled", "grid x KV-block loop with online softmax on tile buffers",
          lambda o: f"attn-tile{{block-m={o.get('block_m') or 64} block-n={o.get('block_n') or 64}}},"
                    "canonicalize,cse"),
    Stage("pipelined", "K/V copies multi-buffered and software-pipelined; KV loop unrolled",
          lambda o: f"func.func(attn-pipeline{{num-stages={o.get('num_stages', 2)}}},"
                    f"attn-unroll{{factor={o.get('unroll', 1)}}}),canonicalize,cse"),
    Stage("llvm", "CPU: tile ops as vector code (attn-lower-to-cpu), then the LLVM dialect",
          _cpu_llvm_passes),
)

STAGE_NAMES = tuple(s.name for s in STAGES)


# GPU (NVVM) targets share the stages up to 'pipelined' and continue with these
# (see docs/gpu.md). `o["chip"]` is sm_80 or sm_90a (set by compile_graph from
# the target); the PTX ISA version each chip needs comes from gpu.CHIPS, which
# also guards the LLVM aborts of unsupported chip/feature pairs.
def _gpu_passes(o: Mapping[str, object]) -> str:
    warps = o.get("num_warps") or int(o.get("block_m") or 64) // 16
    mma = str(o.get("mma") or "auto").replace("_", "-")
    tma = "false" if o.get("tma") is False else "true"
    return (f"attn-lower-to-gpu{{chip={o.get('chip', 'sm_80')} num-warps={int(warps)} mma={mma} "
            f"tma={tma}}},"
            "canonicalize,cse")


def _ptx_passes(o: Mapping[str, object]) -> str:
    from .gpu import nvvm_pipeline

    return nvvm_pipeline(str(o.get("chip", "sm_80")))


GPU_STAGES: tuple[Stage, ...] = (
    Stage("gpu", "GPU: one gpu.launch (outlined gpu.func): sm_80 cp.async + ldmatrix + mma.sync, "
                 "sm_90a TMA + mbarriers + wgmma (attn-lower-to-gpu)", _gpu_passes),
    Stage("ptx", "GPU: NVVM and PTX (gpu-lower-to-nvvm-pipeline, format=isa); PTX text in "
                 "the gpu.binary", _ptx_passes),
    Stage("cubin", "GPU: the PTX assembled by ptxas into a cubin", lambda o: "", kind="ptxas"),
)


def stages_for(target: str) -> tuple[Stage, ...]:
    """The stage list of a target: STAGES for the CPU; the shared stages up to
    'pipelined' followed by GPU_STAGES for the GPU targets."""
    if target == "cpu":
        return STAGES
    common = STAGES[:STAGE_NAMES.index("pipelined") + 1]
    return common + GPU_STAGES


def run_passes(module: ir.Module, pipeline: str, *, what: str = "pipeline") -> None:
    """Runs `pipeline` (inside builtin.module(...)) on `module` in place, raising
    CompileError with MLIR's diagnostics on failure."""
    if not pipeline:
        return
    ctx = module.context
    with ctx:
        try:
            pm = PassManager.parse(f"builtin.module({pipeline})")
            pm.run(module.operation)
        except ir.MLIRError as e:
            raise CompileError(f"{what} failed: {_diagnostics(e)}") from None
        except ValueError as e:  # pipeline text errors
            raise CompileError(f"{what}: {e}") from None


def lower(module: ir.Module, to: str, options: Mapping[str, object] | None = None,
          *, keep: bool = True) -> dict[str, str]:
    """Lowers `module` (at stage 'graph') in place up to stage `to`; returns
    the IR text of every stage passed through (when keep)."""
    if to not in STAGE_NAMES:
        raise ValueError(f"unknown stage {to!r}; expected one of {STAGE_NAMES}")
    options = options or {}
    seen: dict[str, str] = {}
    for stage in STAGES:
        run_passes(module, stage.passes(options), what=f"stage '{stage.name}'")
        if keep:
            seen[stage.name] = str(module)
        if stage.name == to:
            break
    return seen


def _diagnostics(e: ir.MLIRError) -> str:
    parts = []
    for d in e.error_diagnostics:
        parts.append(f"{d.location}: {d.message}")
        parts.extend(f"  note: {n.message}" for n in d.notes)
    return "\n".join(parts) or str(e)

"""The compilation pipeline, declared once: stage names, the passes that
produce each stage from the previous one, and what a stage produces besides
its IR (launch metadata after 'gpu', PTX after 'ptx', the cubin of ptxas).

The compile driver (attncc.compiler.run_stages) walks this table for the API,
the CLI and the tests; `attncc-opt` runs the same pass names (docs/pipeline.md).
Pass options come from resolved CompileOptions (CompileOptions.resolved is the
one place a default lives), as a dict with the GPU chip added.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from mlir import ir
from mlir.passmanager import PassManager

from .errors import CompileError
from .targets import cpu as cpu_target
from .targets import gpu as gpu_target
from .targets import kind as target_kind

Options = Mapping[str, Any]


@dataclass
class Products:
    """What the stages of one compilation produce besides their IR."""

    func_name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    ptx: Optional[str] = None
    cubin: Optional[bytes] = None


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    # Textual pass pipeline (nested under builtin.module) producing this
    # stage from the previous one, given the resolved options.
    passes: Callable[[Options], str] = lambda o: ""
    # A stage made by a tool instead of MLIR passes (ptxas): returns the
    # stage's text (the tool's report) and fills `Products`.
    tool: Optional[Callable[[ir.Module, Options, Products], str]] = None
    tool_command: Callable[[Options], str] = lambda o: ""
    # Reads what the stage produced (after its passes) into `Products`.
    collect: Optional[Callable[[ir.Module, Options, Products], None]] = None


def _tile_passes(o: Options) -> str:
    # The kernel forms of attncc.attention (compile_graph's split_kv / lse).
    form = "".join(f" {flag}=true" for key, flag in (("lse", "lse"), ("split_kv", "split-kv"),
                                                      ("kv_in_place", "kv-in-place"),
                                                      ("bf16_pairs", "bf16-pairs"),
                                                      ("kv_in_place_pairs", "kv-in-place-pairs"),
                                                      ("heads_inner", "heads-inner"),
                                                      ("skip_masked_rows", "skip-masked-rows"))
                   if o.get(key))
    if o.get("strided_kv") and not o.get("chip"):   # K/V views on the CPU (Passes.td)
        form += " strided-kv=true"
    if o.get("cpu_tasks"):
        form += f" cpu-tasks={int(o['cpu_tasks'])}"
        if o.get("min_task_work"):
            form += f" min-task-work={int(o['min_task_work'])}"
    return f"attn-tile{{block-m={o['block_m']} block-n={o['block_n']}{form}}},canonicalize,cse"


def _pipeline_passes(o: Options) -> str:
    # Paged (gather_tile) KV loops are pipelined on the GPU only (cp.async);
    # on the CPU it made paged decode slower (Passes.td, attn-pipeline).
    gathers = " gathers=true" if o.get("chip") else ""
    return (f"func.func(attn-pipeline{{num-stages={o['num_stages']}{gathers}}},"
            f"attn-unroll{{factor={o['unroll']}}}),canonicalize,cse")


def _gpu_metadata(module: ir.Module, o: Options, p: Products) -> None:
    p.metadata.update(gpu_target.kernel_metadata(module, p.func_name))


def _ptx(module: ir.Module, o: Options, p: Products) -> None:
    p.ptx = gpu_target.extract_ptx(module)


def _ptxas(module: ir.Module, o: Options, p: Products) -> str:
    text, p.cubin, resources = gpu_target.run_ptxas(p.ptx or "", str(o["chip"]))
    p.metadata.update(resources)
    return text


COMMON_STAGES: tuple[Stage, ...] = (
    Stage("graph", "attn graph ops as built from Python or captured from torch"),
    Stage("fused", "the chain fused into attn.attention",
          lambda o: "func.func(attn-fuse),canonicalize,cse"),
    Stage("tiled", "grid x KV-block loop with online softmax on tile buffers", _tile_passes),
    Stage("pipelined", "K/V copies multi-buffered and software-pipelined; KV loop unrolled",
          _pipeline_passes),
)

CPU_STAGES: tuple[Stage, ...] = (
    Stage("llvm", "CPU: tile ops as vector code (attn-lower-to-cpu), then the LLVM dialect",
          cpu_target.llvm_passes),
)

# GPU (NVVM) targets share the stages up to 'pipelined' and continue with
# these (docs/gpu.md).
GPU_STAGES: tuple[Stage, ...] = (
    Stage("gpu", "GPU: one gpu.launch (outlined gpu.func): sm_80 cp.async + ldmatrix + mma.sync, "
                 "sm_90a TMA + mbarriers + wgmma (attn-lower-to-gpu)", gpu_target.lowering_passes,
          collect=_gpu_metadata),
    Stage("ptx", "GPU: NVVM and PTX (gpu-lower-to-nvvm-pipeline, format=isa); PTX text in "
                 "the gpu.binary", gpu_target.ptx_passes, collect=_ptx),
    Stage("cubin", "GPU: the PTX assembled by ptxas into a cubin", tool=_ptxas,
          tool_command=lambda o: f"ptxas -arch={o['chip']} -O3 -v"),
)

STAGES = COMMON_STAGES + CPU_STAGES          # the CPU target's stages
STAGE_NAMES = tuple(s.name for s in STAGES)


def stages_for(target: str) -> tuple[Stage, ...]:
    """The stage list of a target (attncc.targets.TARGETS)."""
    return STAGES if target_kind(target) == "cpu" else COMMON_STAGES + GPU_STAGES


def stage_names(target: str) -> tuple[str, ...]:
    return tuple(s.name for s in stages_for(target))


# -- running passes -------------------------------------------------------------------------

def run_passes(module: ir.Module, pipeline: str, *, what: str = "pipeline") -> None:
    """Runs `pipeline` (inside builtin.module(...)) on `module` in place, raising
    CompileError with MLIR's diagnostics on failure."""
    if not pipeline:
        return
    with module.context:
        try:
            pm = PassManager.parse(f"builtin.module({pipeline})")
            pm.run(module.operation)
        except ir.MLIRError as e:
            raise CompileError(f"{what} failed: {diagnostics(e)}") from None
        except ValueError as e:  # pipeline text errors
            raise CompileError(f"{what}: {e}") from None


def diagnostics(e: ir.MLIRError) -> str:
    parts = []
    for d in e.error_diagnostics:
        parts.append(f"{d.location}: {d.message}")
        parts.extend(f"  note: {n.message}" for n in d.notes)
    return "\n".join(parts) or str(e)


def split_top(text: str) -> list[str]:
    """Splits 'a,b{x=1,y},c(d,e)' at the top-level commas."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _flatten(element: str) -> list[str]:
    """'func.func(a,b)' -> ['func.func(a)', 'func.func(b)']; 'a{..}' -> ['a{..}']."""
    brace = element.find("{")
    paren = element.find("(")
    if paren != -1 and (brace == -1 or paren < brace) and element.endswith(")"):
        anchor, inner = element[:paren], element[paren + 1:-1]
        return [f"{anchor}({p})" for e in split_top(inner) for p in _flatten(e)]
    return [element]


def pass_name(element: str) -> str:
    """'func.func(attn-pipeline{num-stages=3})' -> 'attn-pipeline'."""
    while "(" in element and (element.find("{") == -1 or element.find("(") < element.find("{")):
        element = element[element.index("(") + 1:-1]
    return element.split("{", 1)[0].strip()


def expand(pipeline_text: str) -> list[str]:
    """The passes of a stage pipeline (inside builtin.module) one by one, in
    MLIR's canonical form: registered pipelines such as
    gpu-lower-to-nvvm-pipeline become their passes."""
    if not pipeline_text:
        return []
    pm = PassManager.parse(f"builtin.module({pipeline_text})")
    text = str(pm)
    prefix = "builtin.module("
    if text.startswith(prefix) and text.endswith(")"):
        text = text[len(prefix):-1]
    return [p for e in split_top(text) for p in _flatten(e)]

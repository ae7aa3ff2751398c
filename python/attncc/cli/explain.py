"""The pass pipeline of a compilation, pass by pass: each stage's pipeline
(pipeline.STAGES / stages_for) is parsed by MLIR's PassManager, printed back in
its canonical, fully expanded form (registered pipelines such as
gpu-lower-to-nvvm-pipeline become their passes), split into its passes, and
run one pass at a time on the module, timing each run and keeping the IR
after it, as `mlir-opt --mlir-print-ir-after-all --mlir-timing` would show.
`mlir_timing_report` gives MLIR's own timing report of a stage
(PassManager.enable_timing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from mlir import ir

from .. import pipeline
from ..compiler import PassEvent, run_stages, stage_options, timing_report
from ..context import mlir_context
from ..options import CompileOptions


@dataclass
class PassRun:
    stage: str
    index: int             # 1-based, over the whole compilation
    pipeline: str          # the pass with its anchor, e.g. func.func(attn-pipeline{num-stages=3})
    name: str              # the pass argument, e.g. attn-pipeline
    seconds: float
    ir_after: Optional[str]
    changed: bool


split_top, pass_name, expand = pipeline.split_top, pipeline.pass_name, pipeline.expand


def run_pass_by_pass(graph_ir: str, target: str, options: dict,
                     keep_ir: Callable[[str, str], bool] = lambda stage, name: True,
                     until: Optional[str] = None) -> list[PassRun]:
    """A PassRun per pass of every stage after 'graph' (up to `until`), from
    the compile driver's per-pass hook. The GPU stage 'cubin' (ptxas, no MLIR
    pass) is a PassRun named 'ptxas'."""
    opts = stage_options(CompileOptions(**options), target)
    runs: list[PassRun] = []
    before = [graph_ir]

    def on_pass(e: PassEvent) -> None:
        after = e.text if e.text is not None else str(e.module)
        changed = e.text is not None or after != before[0]
        if e.text is None:
            before[0] = after
        runs.append(PassRun(e.stage, e.index, e.pipeline, e.name, e.seconds, after if keep_ir(e.stage, e.name) else None, changed))

    with mlir_context():
        module = ir.Module.parse(graph_ir)
        run_stages(module, target, opts, _func_name(module), until=until, start_after="graph",
                   keep_ir=False, on_pass=on_pass)
    return runs


def mlir_timing_report(graph_ir: str, target: str, options: dict, stage_name: str) -> str:
    """MLIR's own timing report (PassManager.enable_timing) of one stage's
    pipeline, run on the module lowered up to the stage before it."""
    opts = stage_options(CompileOptions(**options), target)
    names = pipeline.stage_names(target)
    with mlir_context():
        module = ir.Module.parse(graph_ir)
        previous = names[names.index(stage_name) - 1]
        run_stages(module, target, opts, _func_name(module), until=previous,
                   start_after="graph", keep_ir=False)
        return timing_report(module, target, opts, stage_name)


def _func_name(module: ir.Module) -> str:
    return ir.StringAttr(module.body.operations[0].attributes["sym_name"]).value

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

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional


@dataclass
class PassRun:
    stage: str
    index: int             # 1-based, over the whole compilation
    pipeline: str          # the pass with its anchor, e.g. func.func(attn-pipeline{num-stages=3})
    name: str              # the pass argument, e.g. attn-pipeline
    seconds: float
    ir_after: Optional[str]
    changed: bool


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
    """The passes of a stage pipeline (inside builtin.module), canonical form."""
    from mlir.passmanager import PassManager

    if not pipeline_text:
        return []
    pm = PassManager.parse(f"builtin.module({pipeline_text})")
    text = str(pm)
    prefix = "builtin.module("
    if text.startswith(prefix) and text.endswith(")"):
        text = text[len(prefix):-1]
    return [p for e in split_top(text) for p in _flatten(e)]


def run_pass_by_pass(graph_ir: str, target: str, options: dict,
                     keep_ir: Callable[[str, str], bool] = lambda stage, name: True,
                     until: Optional[str] = None,
                     on_pass: Optional[Callable[[PassRun], None]] = None) -> Iterator[PassRun]:
    """Yields a PassRun per pass of every stage after 'graph' (up to `until`).
    The GPU stage 'cubin' (ptxas, no MLIR pass) is a PassRun named 'ptxas'."""
    from mlir import ir

    from .. import gpu, pipeline
    from ..context import mlir_context
    from ..errors import CompileError

    opts = dict(options)
    if target != "cpu":
        opts["chip"] = gpu.chip_for_target(target)
    index = 0
    with mlir_context():
        module = ir.Module.parse(graph_ir)
        before = str(module)
        for stage in pipeline.stages_for(target):
            if stage.kind == "ptxas":
                index += 1
                ptx = gpu.extract_ptx(module)
                t0 = time.perf_counter()
                try:
                    _, report = gpu.assemble(ptx, opts["chip"])
                    log = report.log
                except gpu.PtxasNotFound as e:
                    log = f"// cubin not produced: {e}"
                yield PassRun(stage.name, index, f"ptxas -arch={opts['chip']} -O3 -v", "ptxas",
                              time.perf_counter() - t0,
                              log if keep_ir(stage.name, "ptxas") else None, True)
            else:
                for element in expand(stage.passes(opts)):
                    index += 1
                    name = pass_name(element)
                    from mlir.passmanager import PassManager

                    pm = PassManager.parse(f"builtin.module({element})")
                    t0 = time.perf_counter()
                    try:
                        pm.run(module.operation)
                    except ir.MLIRError as e:
                        raise CompileError(f"pass {name} (stage '{stage.name}') failed: "
                                           f"{pipeline._diagnostics(e)}") from None
                    secs = time.perf_counter() - t0
                    after = str(module)
                    run = PassRun(stage.name, index, element, name, secs,
                                  after if keep_ir(stage.name, name) else None, after != before)
                    before = after
                    yield run
            if stage.name == until:
                break


def mlir_timing_report(graph_ir: str, target: str, options: dict, stage_name: str) -> str:
    """MLIR's own timing report (PassManager.enable_timing) of one stage's
    pipeline, run on the module lowered up to the stage before it. The report
    is printed by MLIR on stderr (file descriptor 2), captured here."""
    from mlir import ir
    from mlir.passmanager import PassManager

    from .. import gpu, pipeline
    from ..context import mlir_context

    opts = dict(options)
    if target != "cpu":
        opts["chip"] = gpu.chip_for_target(target)
    with mlir_context():
        module = ir.Module.parse(graph_ir)
        for stage in pipeline.stages_for(target):
            if stage.kind != "passes":
                return ""
            text = stage.passes(opts)
            if stage.name != stage_name:
                pipeline.run_passes(module, text, what=f"stage '{stage.name}'")
                continue
            if not text:
                return ""
            pm = PassManager.parse(f"builtin.module({text})")
            pm.enable_timing()
            with tempfile.TemporaryFile() as tmp:
                saved = os.dup(2)
                os.dup2(tmp.fileno(), 2)
                try:
                    pm.run(module.operation)
                    del pm                     # the report is printed when the manager goes
                    import gc

                    gc.collect()
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
                tmp.seek(0)
                return tmp.read().decode(errors="replace")
    return ""

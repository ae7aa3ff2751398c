"""attncc explain: the pass pipeline of a compilation, with the time of each
pass and the IR after it (like mlir-opt --mlir-print-ir-after-all
--mlir-timing).

    attncc explain attn.py                          # every pass, every IR
    attncc explain attn.py --pass attn-pipeline     # the IR after attn-pipeline only
    attncc explain attn.py --target sm_90a --no-ir  # the pass table only
    attncc explain attn.py --num-stages 3 --stage pipelined --schedule

Each stage's pass pipeline (the table in attncc/pipeline.py) is parsed by
MLIR's PassManager and printed back fully expanded, then run one pass at a
time on the module; the time of a pass is the wall time of its run
(including the verifier). --mlir-timing adds MLIR's own report of each stage
(PassManager.enable_timing).
"""
from __future__ import annotations

import io
import sys

from .errors import CliError
from .inputs import (describe_options, examples_for, load_program, lower, options_from_args,
                     target_from_args, validated_options)


def run(args) -> int:
    from .. import pipeline
    from . import explain as ex_mod
    from . import schedule as sched

    prog = load_program(args.source)
    target = target_from_args(args, prog, "cpu")
    opts = options_from_args(args, prog)
    copts = validated_options(opts)
    names = [s.name for s in pipeline.stages_for(target)]
    for s in list(args.stages) + ([args.until] if args.until else []):
        if s not in names:
            raise CliError(f"unknown stage {s!r} for target {target}; expected one of "
                           f"{', '.join(names)}")
    ex = examples_for(prog, args.shape, args.dtype)
    graph_c = lower(prog, ex, target, opts, stop_after="graph")
    graph_ir = graph_c.ir("graph")
    copts = graph_c.options  # block sizes resolved for the target and shapes
    from ..context import mlir_context

    from ..compiler import stage_options

    known: set[str] = set()
    stage_opts = stage_options(copts, target)
    with mlir_context():
        for stage in pipeline.stages_for(target):
            if stage.tool is not None:
                known.add(stage.tool_command(stage_opts).split()[0])
            else:
                known.update(ex_mod.pass_name(p) for p in ex_mod.expand(stage.passes(stage_opts)))
            if stage.name == args.until:
                break
    for p in args.passes:
        if p not in known:
            raise CliError(f"no pass {p!r} in the pipeline of {target}; its passes: "
                           f"{', '.join(sorted(known))}")

    def wanted(stage: str, name: str) -> bool:
        if args.no_ir:
            return False
        if args.passes and name not in args.passes:
            return False
        if args.stages and stage not in args.stages:
            return False
        return True

    out = io.StringIO() if args.output != "-" else sys.stdout
    from ..errors import CompileError

    runs = []
    try:
        for r in ex_mod.run_pass_by_pass(graph_ir, target, copts.as_dict(), keep_ir=wanted,
                                         until=args.until):
            runs.append(r)
    except CompileError as e:
        raise CliError(str(e), code=1) from None
    total = sum(r.seconds for r in runs) or 1e-12
    out.write(f"attncc explain: {prog.where} on {target} ({describe_options(opts)}); "
              f"inputs {ex.describe()}\n\n")
    w = max([len(r.name) for r in runs] + [4])
    out.write(f"{'#':>3}  {'stage':<10} {'pass':<{w}} {'ms':>9} {'%':>6}  changed\n")
    stage_tot: dict[str, float] = {}
    for r in runs:
        stage_tot[r.stage] = stage_tot.get(r.stage, 0.0) + r.seconds
        out.write(f"{r.index:>3}  {r.stage:<10} {r.name:<{w}} {r.seconds * 1e3:>9.2f} "
                  f"{100 * r.seconds / total:>5.1f}%  {'yes' if r.changed else 'no'}\n")
    out.write(f"     {'total':<10} {'':<{w}} {total * 1e3:>9.2f}\n")
    out.write("     per stage: " + ", ".join(f"{s} {t * 1e3:.1f} ms" for s, t in stage_tot.items())
              + "\n")
    if not args.no_ir:
        shown = 0
        for r in runs:
            if r.ir_after is None:
                continue
            if args.after_change and not r.changed:
                continue
            shown += 1
            out.write(f"\n// -----// IR Dump After {r.name} (stage {r.stage}, pass {r.index}, "
                      f"{r.seconds * 1e3:.2f} ms){'' if r.changed else ' (no change)'} //----- //\n")
            out.write(f"// {r.pipeline}\n")
            out.write(r.ir_after if r.ir_after.endswith("\n") else r.ir_after + "\n")
        if not shown:
            out.write("\n(no IR printed: no pass matched the filters)\n")
    if args.mlir_timing:
        for stage in pipeline.stages_for(target):
            if stage.tool is not None or not stage.passes(stage_opts):
                continue
            rep = ex_mod.mlir_timing_report(graph_ir, target, copts.as_dict(), stage.name)
            out.write(f"\n// MLIR timing report of stage {stage.name}\n{rep}")
            if stage.name == args.until:
                break
    if args.schedule:
        pipelined = lower(prog, ex, target, opts, stop_after="pipelined").ir("pipelined")
        s = sched.read_schedule(pipelined, block_n=copts.block_n)
        out.write("\n// software-pipelined schedule (from the attn.part / attn.iteration / "
                  "attn.unrolled_copy tags)\n")
        out.write("\n".join(sched.summary(s)) + "\n\n" + sched.render_text(sched.timeline(s))
                  + "\n")
    if args.output != "-":
        try:
            with open(args.output, "w") as f:
                f.write(out.getvalue())
        except OSError as e:
            raise CliError(f"cannot write {args.output}: {e.strerror}") from None
        print(f"attncc explain: wrote {args.output}", file=sys.stderr)
    return 0

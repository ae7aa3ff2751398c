"""attncc compile: compile an attention function and write what a stage made.

    attncc compile attn.py --target sm_90a --emit ptx -o attn.ptx
    attncc compile attn.py:causal --shape 1x8x1024x64 --emit pipelined
    attncc compile attn.py --target sm_80 --emit cubin -o attn.cubin
    attncc compile attn.py --num-stages 3 --emit schedule -o schedule.svg

--emit takes a stage of the target's pipeline (graph, fused, tiled,
pipelined, then llvm on the CPU; gpu, ptx, cubin on sm_80/sm_90a), or sass
(the cubin disassembled, where cuobjdump/nvdisasm is found), schedule (the
software-pipelined schedule read from the pipelined IR: a table, or an SVG
picture when OUT ends in .svg) or metadata (JSON: options, stage times and,
on GPUs, the launch and ptxas facts).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import CliError
from .inputs import (describe_options, examples_for, load_program, lower, options_from_args,
                     target_from_args, validated_options)

EXTRA = ("sass", "schedule", "metadata")


def _stage_names(target: str) -> list[str]:
    from .. import pipeline

    return [s.name for s in pipeline.stages_for(target)]


def _write(out: str, data, binary: bool = False) -> str:
    if out == "-":
        if binary:
            raise CliError("a cubin is binary: write it to a file with -o FILE.cubin")
        sys.stdout.write(data if data.endswith("\n") else data + "\n")
        return "stdout"
    path = Path(out)
    if path.parent and not path.parent.exists():
        raise CliError(f"cannot write {out}: no such directory {path.parent}")
    try:
        if binary:
            path.write_bytes(data)
        else:
            path.write_text(data if data.endswith("\n") else data + "\n")
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror}") from None
    return str(path)


def run(args) -> int:
    prog = load_program(args.source)
    target = target_from_args(args, prog, "cpu")
    opts = options_from_args(args, prog)
    validated_options(opts)
    names = _stage_names(target)
    emit = args.emit or names[-1]
    if emit not in names and emit not in EXTRA:
        raise CliError(f"unknown stage {emit!r} for target {target}; expected one of "
                       f"{', '.join(names + list(EXTRA))}")
    if emit == "sass" and target == "cpu":
        raise CliError("--emit sass needs a GPU target (sm_80 or sm_90a)")
    ex = examples_for(prog, args.shape, args.dtype)
    stop = None if emit in EXTRA or emit in ("ptx", "cubin") else emit
    if emit == "schedule":
        stop = "pipelined"
    c = lower(prog, ex, target, opts, stop_after=stop)
    what = f"stage '{emit}'"
    if emit == "cubin":
        if c.cubin is None:
            raise CliError("no cubin: ptxas was not found (install the CUDA toolkit or set "
                           "ATTNCC_PTXAS); --emit ptx gives the PTX", code=1)
        where = _write(args.output, c.cubin, binary=True)
        size = len(c.cubin)
    elif emit == "ptx":
        where = _write(args.output, c.ptx)
        size = len(c.ptx)
    elif emit == "sass":
        from .stats import disassemble, find_disassembler

        if c.cubin is None:
            raise CliError("no cubin to disassemble: ptxas was not found", code=1)
        if find_disassembler() is None:
            raise CliError("no disassembler: put cuobjdump or nvdisasm (CUDA toolkit) on PATH, "
                           "or set ATTNCC_DISASSEMBLER", code=1)
        sass = disassemble(c.cubin)
        if sass is None:
            raise CliError("the disassembler failed on the cubin", code=1)
        where = _write(args.output, sass)
        size = len(sass)
    elif emit == "schedule":
        from . import schedule as sched

        s = sched.read_schedule(c.ir("pipelined"), block_n=c.options.block_n)
        tl = sched.timeline(s)
        title = f"{prog.where} ({describe_options(opts)})"
        if args.output.endswith(".svg"):
            text = sched.render_svg(tl, title)
        else:
            text = "\n".join(sched.summary(s)) + "\n\n" + sched.render_text(tl)
        where = _write(args.output, text)
        size = len(text)
    elif emit == "metadata":
        md = {"function": prog.where, "target": target, "inputs": ex.describe(),
              "options": c.options.as_dict(), "stage_seconds": c.stage_seconds,
              "stages": list(c.stages), "output": {"shape": list(c.output.shape),
                                                   "dtype": c.output.dtype}}
        if c.metadata:
            md["gpu"] = c.metadata
        text = json.dumps(md, indent=2, default=str)
        where = _write(args.output, text)
        size = len(text)
    else:
        text = c.ir(emit)
        where = _write(args.output, text)
        size = len(text)
    if where != "stdout":
        print(f"attncc compile: wrote {what} of {prog.where} ({target}, "
              f"{describe_options(opts)}; inputs {ex.describe()}) to {where} ({size} bytes)",
              file=sys.stderr)
    return 0

"""attncc compare: two (or more) compilations side by side.

    attncc compare attn.py --target sm_90a --a "num_stages=1" --b "num_stages=3"
    attncc compare attn.py --target sm_90a --b triton --html report.html
    attncc compare attn.py causal.py --target sm_80         # two functions
    attncc compare attn.py --sweep num_stages=1,2,3 --sweep block_n=32,64

Each build is attncc at some options (SPEC: comma-separated NAME=VALUE
overrides of the command's options) or the Triton reference for the same
attention (SPEC 'triton' or 'triton:num_stages=3,block_m=128'; needs
`pip install 'attncc[triton]'`, skipped with a message without it).

The table shows, per build: threads and grid; registers, spills, stack and
shared memory (from the same ptxas -v for every GPU build); the static
instruction mix of the PTX (CPU: of the LLVM dialect IR): tensor-core ops,
async copies, ldmatrix, shared/global loads and stores, barriers, shuffles,
exp2, total; SASS instruction counts where cuobjdump/nvdisasm is found (PATH,
$CUDA_HOME/bin, or the copy in Triton's wheel; n/a otherwise); compile time.
--diff STAGE prints the unified diff of a stage between A and B; --html writes
a self-contained report with the table, an instruction-mix chart, a picture
of each attncc build's software-pipelined schedule and the diffs of every
stage the builds share.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from .builds import Build, build_attncc, build_triton
from .errors import CliError
from .inputs import (Examples, Program, describe_options, examples_for, examples_from_file,
                     load_program, options_from_args, parse_option_spec, target_from_args,
                     validated_options)
from .progress import Progress


def _spec(text: Optional[str], base: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """('attncc'|'triton', options) of a build SPEC."""
    text = (text or "").strip()
    kind = "attncc"
    low = text.lower()
    if low == "triton" or low.startswith("triton:"):
        kind = "triton"
        text = text[len("triton"):].lstrip(":")
    elif low.startswith("attncc:"):
        text = text[len("attncc:"):]
    opts = dict(base)
    opts.update(parse_option_spec(text))
    return kind, opts


def _labels(n: int) -> list[str]:
    return [chr(ord("A") + i) if i < 26 else f"#{i + 1}" for i in range(n)]


def run(args) -> int:
    from . import report
    from . import schedule as sched
    from .cmd_run import sweep_configs

    if len(args.sources) > 2:
        raise CliError("compare takes one or two FILE.py[:FUNCTION]")
    prog_a = load_program(args.sources[0])
    prog_b = load_program(args.sources[1]) if len(args.sources) == 2 else prog_a
    target = target_from_args(args, prog_a, "sm_90a")
    base = options_from_args(args, prog_a)
    validated_options(base)
    ex_a = examples_for(prog_a, args.shape, args.dtype)
    ex_b = ex_a
    if prog_b is not prog_a and not args.shape:
        ex_b = examples_from_file(prog_b) or ex_a

    # (program, examples, kind, options) per build
    plan: list[tuple[Program, Examples, str, dict[str, Any]]] = []
    if args.sweep:
        if args.a or args.b or args.config or prog_b is not prog_a:
            raise CliError("--sweep makes the builds itself: give it without --a/--b/--config "
                           "and with one FILE")
        for cfg in sweep_configs(base, args.sweep):
            plan.append((prog_a, ex_a, "attncc", cfg))
    else:
        specs = [args.a, args.b] + list(args.config)
        if prog_b is prog_a and args.a is None and args.b is None and not args.config:
            raise CliError("nothing to compare: give --a/--b SPECs (e.g. --a num_stages=1 "
                           "--b num_stages=3, or --b triton), --sweep, or a second FILE")
        for i, spec in enumerate(specs):
            kind, opts = _spec(spec, base if i == 0 or prog_b is prog_a
                               else options_from_args(args, prog_b))
            prog, ex = (prog_b, ex_b) if (i == 1 and prog_b is not prog_a) else (prog_a, ex_a)
            if kind == "attncc":
                validated_options(opts)
            plan.append((prog, ex, kind, opts))
    if any(kind == "triton" for _, _, kind, _ in plan) and target == "cpu":
        raise CliError("the Triton reference is a GPU kernel: use --target sm_80 or sm_90a")

    builds: list[Build] = []
    labels = _labels(len(plan))
    facts = None
    with Progress(len(plan), "compare", mode=args.progress) as bar:
        for label, (prog, ex, kind, opts) in zip(labels, plan):
            if kind == "attncc":
                b = build_attncc(label, prog, ex, target, opts)
                facts = facts or b.facts
            else:
                if facts is None:       # the attention Triton should compute
                    from .inputs import attention_facts, lower

                    facts = attention_facts(lower(prog, ex, target, opts,
                                                  stop_after="fused").ir("fused"))
                b = build_triton(label, facts, target, opts)
            builds.append(b)
            bar.update(note=f"{label}: {b.kind} {describe_options(b.options)}"
                       + (" (skipped)" if b.skipped else ""))

    for b in builds:
        if b.skipped:
            print(f"attncc compare: skipped {b.label} ({b.kind}): {b.skipped}", file=sys.stderr)
    header = [f"attncc compare: {prog_a.where}"
              + (f" vs {prog_b.where}" if prog_b is not prog_a else "")
              + f" on {target}",
              f"attention: {facts.describe() if facts else 'n/a'}; inputs {ex_a.describe()}"]
    print(report.render_text(builds, header))

    live = [b for b in builds if not b.skipped]
    default_stage = "pipelined" if target == "cpu" else "ptx"
    if args.diff is not None:
        stage = args.diff or default_stage
        if len(live) < 2:
            print("\n(no diff: fewer than two builds)")
        else:
            a, b = live[0], live[1]
            common = report.common_stages(a, b)
            if stage not in common:
                raise CliError(f"no stage {stage!r} in both {a.label} and {b.label}; stages "
                               f"they share: {', '.join(common) or 'none'}")
            lines = report.unified_diff(a, b, stage, args.context)
            print(f"\n-- diff of stage {stage}: {a.label} -> {b.label}"
                  + (" (debug info removed)" if stage == "ptx" else "") + " --")
            print("\n".join(lines) if lines else "(identical)")

    pictures = []
    for b in builds:
        if b.kind == "attncc" and b.schedule is not None:
            tl = sched.timeline(b.schedule, args.kv_blocks)
            pictures.append((f"{b.label}: {describe_options(b.options)}",
                             sched.render_svg(tl, f"{b.label}: {prog_a.name} on {target}, "
                                                  f"{describe_options(b.options)}")))
    if args.html:
        from .._version import __version__
        from ..targets.gpu import ptxas_version
        from .stats import find_disassembler

        dis = find_disassembler()
        meta = [("function", prog_a.where + (f" vs {prog_b.where}" if prog_b is not prog_a
                                              else "")),
                ("target", target),
                ("attention", facts.describe() if facts else "n/a"),
                ("inputs", ex_a.describe()),
                ("attncc", __version__),
                ("ptxas", ptxas_version() if target != "cpu" else "n/a"),
                ("disassembler", dis[1] if dis else "none (SASS n/a)")]
        text = report.render_html(builds, title=f"attncc compare: {prog_a.name} on {target}",
                                  meta=meta, diff_stage=args.diff or default_stage,
                                  context=args.context, schedules=pictures)
        _write(args.html, text)
        print(f"\nwrote {args.html}", file=sys.stderr)
    if args.json:
        _write(args.json, json.dumps(_as_json(builds, target), indent=2, default=str))
    return 0


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror}") from None


def _as_json(builds: list[Build], target: str) -> dict:
    out = {"target": target, "builds": []}
    for b in builds:
        d: dict[str, Any] = {"label": b.label, "kind": b.kind, "options": b.options,
                             "skipped": b.skipped}
        if b.stats is not None:
            s = b.stats
            d.update(registers=s.registers, spill_store_bytes=s.spill_store_bytes,
                     spill_load_bytes=s.spill_load_bytes, stack_frame_bytes=s.stack_frame_bytes,
                     shared_bytes=s.shared_bytes, threads=s.threads, grid=s.grid,
                     mix_source=s.mix_source, mix=s.mix, sass=s.sass, sass_note=s.sass_note,
                     compile_seconds=s.compile_seconds)
        if b.schedule is not None:
            d["schedule"] = {"num_stages": b.schedule.num_stages, "lead": b.schedule.lead,
                             "unroll": b.schedule.unroll}
        out["builds"].append(d)
    return out

"""The software-pipelined schedule of a compiled kernel, read from its IR, as
a table or an SVG picture.

attn-pipeline tags the ops it places with `attn.part` ("prologue", "kernel",
"epilogue") and `attn.iteration`; attn-unroll tags the copies it makes of the
KV loop body with `attn.unrolled_copy`. `read_schedule` collects those tags
from the 'pipelined' IR (nothing is assumed about the schedule: the lead of
the copies is the number of prologue iterations the IR holds, the unroll
factor is the number of unrolled copies in the loop), and `timeline` lays the
ops out over time for a KV loop of N iterations: which KV block's tiles are
loaded and which KV block is computed on at each step, in the prologue, the
steady state (the scf.for, and the remainder loop of the unroll) and the
epilogue.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Optional

PARTS = ("prologue", "kernel", "remainder", "epilogue")
PART_TITLES = {"prologue": "prologue", "kernel": "steady state (scf.for)",
               "remainder": "remainder loop", "epilogue": "epilogue"}
COLORS = {"load": "#4e79a7", "compute": "#f28e2b"}
PART_FILL = {"prologue": "#eef3fa", "kernel": "#f4f4f4", "remainder": "#fbf3e6",
             "epilogue": "#fdf0e6"}


@dataclass(frozen=True)
class TaggedOp:
    """One attn op inside the pipelined KV loop structure."""

    name: str                    # attn.copy_tile
    label: str                   # copy K
    kind: str                    # load | compute
    part: str                    # prologue | kernel | remainder | epilogue
    iteration: int               # attn.iteration (prologue/epilogue index; 0 in the loop)
    unrolled_copy: Optional[int]  # attn.unrolled_copy (inferred for ops nested in an scf.if)
    predicated: bool             # under an scf.if


@dataclass
class Schedule:
    num_stages: int
    lead: int                    # KV iterations whose copies run ahead of the compute
    unroll: int
    ops: list[TaggedOp]
    kv_blocks: Optional[int] = None   # KV blocks of the longest query block, when static
    block_n: Optional[int] = None
    causal: bool = False

    def part(self, name: str) -> list[TaggedOp]:
        return [o for o in self.ops if o.part == name]

    def prologue(self) -> dict[int, list[TaggedOp]]:
        return _group(self.part("prologue"), lambda o: o.iteration)

    def epilogue(self) -> dict[int, list[TaggedOp]]:
        return _group(self.part("epilogue"), lambda o: o.iteration)

    def kernel(self) -> dict[int, list[TaggedOp]]:
        return _group(self.part("kernel"), lambda o: o.unrolled_copy or 0)

    @property
    def has_remainder(self) -> bool:
        return bool(self.part("remainder"))


def _group(ops, key) -> dict[int, list[TaggedOp]]:
    out: dict[int, list[TaggedOp]] = {}
    for o in ops:
        out.setdefault(key(o), []).append(o)
    return dict(sorted(out.items()))


def _label(op, func_args) -> str:
    name = op.name
    if name == "attn.copy_tile":
        src = op.operands[0]
        role = None
        try:
            from mlir import ir

            if isinstance(src, ir.BlockArgument) and src.owner.owner is not None:
                role = {1: "K", 2: "V"}.get(src.arg_number)
        except Exception:  # pragma: no cover
            role = None
        if role is None:
            role = "K" if "transposed" in op.attributes else "tile"
        return f"copy {role}"
    if name == "attn.tile_matmul":
        return "P·V" if "accumulate" in op.attributes else "Q·Kᵀ"
    return {"attn.tile_softmax": "softmax", "attn.tile_mask": "mask", "attn.tile_bias": "bias",
            "attn.tile_store": "store"}.get(name, name.removeprefix("attn."))


def read_schedule(pipelined_ir: str, *, block_n: Optional[int] = None) -> Schedule:
    """Collects the pipelining tags of the 'pipelined' stage IR."""
    from mlir import ir

    from ..context import mlir_context

    with mlir_context():
        module = ir.Module.parse(pipelined_ir)
        ops: list[TaggedOp] = []
        num_stages = 1
        loops_seen = 0
        lk = None
        causal = "causal" in pipelined_ir

        def int_attr(op, name):
            if name in op.attributes:
                return int(ir.IntegerAttr(op.attributes[name]).value)
            return None

        def walk(op, loop_part: Optional[str], predicated: bool, last_copy: list):
            nonlocal loops_seen, num_stages
            for region in op.regions:
                for block in region.blocks:
                    for child in block.operations:
                        child = child.operation
                        name = child.name
                        if name == "scf.for" and "attn.kv_loop" in child.attributes:
                            ns = int_attr(child, "attn.num_stages")
                            if ns:
                                num_stages = max(num_stages, ns)
                            part = "kernel" if loops_seen == 0 else "remainder"
                            loops_seen += 1
                            walk(child, part, False, [None])
                            continue
                        if name.startswith("attn.") and name not in ("attn.tile_store",):
                            tag = ir.StringAttr(child.attributes["attn.part"]).value \
                                if "attn.part" in child.attributes else None
                            if tag is not None or loop_part is not None:
                                part = loop_part or tag
                                copy = int_attr(child, "attn.unrolled_copy")
                                if copy is None and part == "kernel":
                                    copy = last_copy[0]
                                elif copy is not None:
                                    last_copy[0] = copy
                                kind = "load" if name == "attn.copy_tile" else "compute"
                                ops.append(TaggedOp(name, _label(child, None), kind, part,
                                                    int_attr(child, "attn.iteration") or 0,
                                                    copy if part == "kernel" else None,
                                                    predicated))
                        walk(child, loop_part, predicated or name == "scf.if", last_copy)

        for top in module.body.operations:
            top = top.operation
            if top.name == "func.func":
                ftype = ir.FunctionType(ir.TypeAttr(top.attributes["function_type"]).value)
                if len(ftype.inputs) > 1:
                    try:
                        k_t = ir.MemRefType(ftype.inputs[1])
                    except ValueError:
                        k_t = None
                    if k_t is not None and k_t.rank == 4 and \
                            not ir.ShapedType.is_dynamic_size(k_t.shape[2]):
                        lk = k_t.shape[2]
            walk(top, None, False, [None])
    lead = len({o.iteration for o in ops if o.part == "prologue"})
    copies = {o.unrolled_copy for o in ops if o.part == "kernel" and o.unrolled_copy is not None}
    unroll = max(copies) + 1 if copies else 1
    if num_stages == 1 and lead:
        num_stages = lead + 1
    kv_blocks = -(-lk // block_n) if (lk is not None and block_n) else None
    return Schedule(num_stages=num_stages, lead=lead, unroll=unroll, ops=ops,
                    kv_blocks=kv_blocks, block_n=block_n, causal=causal)


# ----------------------------------------------------------------------------- timeline

@dataclass
class Cell:
    step: int                # column (time step)
    lane: str                # load | compute
    part: str
    kv: int                  # KV block (loop iteration) the ops work on
    ir_iteration: int        # the ops' attn.iteration
    unrolled_copy: Optional[int]
    ops: list[str]
    active: bool             # False: predicated off (that KV block does not exist)
    slot: Optional[int] = None   # K/V buffer slot (kv mod num_stages) of a load


@dataclass
class Timeline:
    schedule: Schedule
    n: int                   # KV iterations drawn
    cells: list[Cell] = field(default_factory=list)
    parts: list[tuple[str, int, int]] = field(default_factory=list)   # (part, first, last step)
    gap_after: Optional[int] = None       # steady-state steps elided after this step
    steps: int = 0


def _labels(ops: list[TaggedOp]) -> list[str]:
    seen: list[str] = []
    for o in ops:
        lab = o.label + ("?" if o.predicated and o.part in ("kernel", "remainder") else "")
        if lab not in seen:
            seen.append(lab)
    return seen


def timeline(s: Schedule, n: Optional[int] = None, max_kernel_steps: int = 8) -> Timeline:
    """Lays the schedule out for a KV loop of `n` iterations (default: the
    kernel's KV blocks when static, else 8)."""
    n = n if n is not None else (s.kv_blocks or 8)
    tl = Timeline(s, n)
    step = 0
    pro = s.prologue()
    if pro:
        first = step
        for it, ops in pro.items():
            tl.cells.append(Cell(step, "load", "prologue", it, it, None, _labels(ops), it < n,
                                 slot=it % s.num_stages))
            step += 1
        tl.parts.append(("prologue", first, step - 1))
    kern = s.kernel()
    loop_iters = max(n - s.lead, 0)
    main_iters = (loop_iters // s.unroll) * s.unroll if s.has_remainder or s.unroll > 1 \
        else loop_iters
    if not s.has_remainder and s.unroll > 1:
        main_iters = loop_iters            # divisible static trip count: no remainder loop
    rem_iters = loop_iters - main_iters
    remainder = s.part("remainder")
    # Elide the middle of a long steady state.
    keep = list(range(main_iters))
    if main_iters > max_kernel_steps:
        head = max(2 * s.unroll, 3)
        tail = max(s.unroll, 2)
        keep = list(range(head)) + list(range(main_iters - tail, main_iters))
    for part, count, source in (("kernel", main_iters, None), ("remainder", rem_iters, remainder)):
        if count <= 0:
            continue
        first = step
        indices = keep if part == "kernel" else range(count)
        prev = None
        for k in indices:
            if prev is not None and k != prev + 1:
                tl.gap_after = step - 1
            prev = k
            it = k + (main_iters if part == "remainder" else 0)
            if part == "kernel":
                copy = k % s.unroll
                ops = kern.get(copy, kern.get(0, []))
            else:
                copy = None
                ops = source
            loads = [o for o in ops if o.kind == "load"]
            comps = [o for o in ops if o.kind == "compute"]
            if loads:
                kv = it + s.lead
                tl.cells.append(Cell(step, "load", part, kv, 0, copy if s.unroll > 1 else None,
                                     _labels(loads), kv < n, slot=kv % s.num_stages))
            if comps:
                tl.cells.append(Cell(step, "compute", part, it, 0, copy if s.unroll > 1 else None,
                                     _labels(comps), True))
            step += 1
        tl.parts.append((part, first, step - 1))
    epi = s.epilogue()
    if epi:
        first = step
        for e, ops in epi.items():
            kv = n - s.lead + e
            tl.cells.append(Cell(step, "compute", "epilogue", kv, e, None, _labels(ops), kv >= 0))
            step += 1
        tl.parts.append(("epilogue", first, step - 1))
    tl.steps = step
    return tl


# ----------------------------------------------------------------------------- text

def summary(s: Schedule) -> list[str]:
    """The schedule in words, part by part, with the ops the IR holds."""
    lines = []
    if s.lead == 0:
        lines.append(f"not software-pipelined (num_stages={s.num_stages}): each KV block is "
                     "loaded, then computed on" + (f"; loop unrolled x{s.unroll}"
                                                   if s.unroll > 1 else ""))
    else:
        lines.append(f"{s.num_stages} stages: the copies of KV block i+{s.lead} are issued while "
                     f"block i is computed on ({s.num_stages} K/V buffer slots)"
                     + (f"; steady state unrolled x{s.unroll}" if s.unroll > 1 else ""))
    for it, ops in s.prologue().items():
        lines.append(f"  prologue  iteration {it}: {', '.join(_labels(ops))}")
    for c, ops in s.kernel().items():
        what = f"unrolled copy {c}" if s.unroll > 1 else "body"
        loads = _labels([o for o in ops if o.kind == "load"])
        comps = _labels([o for o in ops if o.kind == "compute"])
        ahead = f"block i+{s.lead}" if s.lead else "block i"
        lines.append(f"  scf.for   {what}: loads {', '.join(loads) or '-'} ({ahead}) | "
                     f"compute {', '.join(comps) or '-'} (block i)")
    if s.has_remainder:
        lines.append(f"  remainder loop: {', '.join(_labels(s.part('remainder')))}")
    for it, ops in s.epilogue().items():
        lines.append(f"  epilogue  iteration {it}: {', '.join(_labels(ops))}")
    return lines


def render_text(tl: Timeline) -> str:
    """A table: one column per time step, rows part / load / compute."""
    cols: list[list[str]] = []
    for step in range(tl.steps):
        cells = [c for c in tl.cells if c.step == step]
        part = cells[0].part if cells else ""
        row = [str(step), {"kernel": "loop", "remainder": "rem"}.get(part, part[:8])]
        for lane in ("load", "compute"):
            c = next((c for c in cells if c.lane == lane), None)
            if c is None:
                row.append("-")
            elif not c.active:
                row.append(f"({c.kv})off")
            else:
                row.append(f"#{c.kv}" + (f"@{c.slot}" if lane == "load" and tl.schedule.lead
                                         else ""))
        cols.append(row)
        if tl.gap_after == step:
            cols.append(["...", "", "...", "..."])
    heads = ["step", "part", "load", "compute"]
    width = max([len(h) for h in heads])
    widths = [max(len(x) for x in r) for r in cols]
    out = []
    for i, h in enumerate(heads):
        cells = " ".join(r[i].ljust(w) for r, w in zip(cols, widths))
        out.append(f"{h.ljust(width)}  {cells}".rstrip())
    s = tl.schedule
    out.append(f"(#i = KV block i{', @s = buffer slot s' if s.lead else ''}; {tl.n} KV blocks"
               f"{' for the last query block (causal: earlier blocks visit fewer)' if s.causal else ''})")
    return "\n".join(out)


# ----------------------------------------------------------------------------- SVG

def render_svg(tl: Timeline, title: str = "") -> str:
    """A hand-written SVG of the timeline: two lanes (K/V loads, compute) over
    time steps, shaded by part; each cell carries data-* attributes with its
    tags (data-part, data-lane, data-kv, data-ir-iteration,
    data-unrolled-copy, data-ops, data-active) and a <title> tooltip."""
    s = tl.schedule
    cw, ch, gap_w = 66, 40, 30
    left, top = 120, 58
    lanes = {"load": top + 26, "compute": top + 26 + ch + 16}

    def x_of(step: int) -> int:
        x = left + step * cw
        if tl.gap_after is not None and step > tl.gap_after:
            x += gap_w
        return x

    bottom = lanes["compute"] + ch + 26
    legend_lines = summary(s)
    width = max(x_of(max(tl.steps - 1, 0)) + cw + 20, 20 + int(8.5 * len(title)),
                20 + int(6.6 * len(legend_lines[0])),
                20 + max([int(6.8 * len(ln.strip())) for ln in legend_lines[1:]] + [0]))
    height = bottom + 18 * len(legend_lines) + 30
    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="attncc-schedule" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
           f'font-size="12" data-num-stages="{s.num_stages}" data-lead="{s.lead}" '
           f'data-unroll="{s.unroll}" data-kv-blocks="{tl.n}">']
    out.append(f"<title>{esc(title or 'software-pipelined schedule')}</title>")
    out.append(f'<text x="10" y="18" font-size="14" font-weight="bold">{esc(title)}</text>')
    out.append(f'<text x="10" y="36" fill="#555">{esc(legend_lines[0])}</text>')
    # Part bands.
    for part, first, last in tl.parts:
        x0, x1 = x_of(first) - 2, x_of(last) + cw - 2
        name = PART_TITLES[part]
        if part == "kernel" and s.unroll > 1:
            name += f", unrolled x{s.unroll}"
        if len(name) * 7 > x1 - x0:       # a narrow band: a short name
            name = {"remainder": "rem.", "prologue": "pro.", "epilogue": "epi.",
                    "kernel": "loop"}[part]
        out.append(f'<g class="part" data-part="{part}"><rect x="{x0}" y="{top}" '
                   f'width="{x1 - x0}" height="{bottom - top - 14}" fill="{PART_FILL[part]}" '
                   f'stroke="#ccc"/><text x="{x0 + 4}" y="{top + 15}" fill="#333">'
                   f'{esc(name)}</text></g>')
    if tl.gap_after is not None:
        gx = x_of(tl.gap_after) + cw + 2
        for lane_y in lanes.values():
            out.append(f'<text x="{gx + 6}" y="{lane_y + ch / 2 + 4}" fill="#777">…</text>')
    for lane, y in lanes.items():
        name = "K/V loads" if lane == "load" else "compute"
        out.append(f'<text x="10" y="{y + ch / 2 + 4}" font-weight="bold" '
                   f'fill="{COLORS[lane]}">{name}</text>')
    # Load -> compute links of one KV block.
    loads = {c.kv: c for c in tl.cells if c.lane == "load" and c.active}
    for c in tl.cells:
        if c.lane == "compute" and c.active and c.kv in loads and loads[c.kv].step != c.step:
            ld = loads[c.kv]
            out.append(f'<line class="link" x1="{x_of(ld.step) + cw / 2 - 2}" '
                       f'y1="{lanes["load"] + ch}" x2="{x_of(c.step) + cw / 2 - 2}" '
                       f'y2="{lanes["compute"]}" stroke="#999" stroke-dasharray="3,2"/>')
    for c in tl.cells:
        x, y = x_of(c.step), lanes[c.lane]
        color = COLORS[c.lane]
        attrs = (f'class="cell" data-part="{c.part}" data-lane="{c.lane}" data-step="{c.step}" '
                 f'data-kv="{c.kv}" data-ir-iteration="{c.ir_iteration}" '
                 f'data-unrolled-copy="{"" if c.unrolled_copy is None else c.unrolled_copy}" '
                 f'data-ops="{esc(", ".join(c.ops))}" data-active="{str(c.active).lower()}"')
        tip = (f"{c.part} step {c.step}: {', '.join(c.ops)} of KV block {c.kv}"
               f" (attn.part={'kernel' if c.part == 'remainder' else c.part}, "
               f"attn.iteration={c.ir_iteration}"
               + (f", attn.unrolled_copy={c.unrolled_copy}" if c.unrolled_copy is not None else "")
               + (f", buffer slot {c.slot}" if c.slot is not None and s.lead else "")
               + ("" if c.active else "; predicated off: no such KV block") + ")")
        if c.active:
            body = (f'<rect x="{x}" y="{y}" width="{cw - 4}" height="{ch}" rx="4" fill="{color}"/>'
                    f'<text x="{x + (cw - 4) / 2}" y="{y + 16}" fill="#fff" text-anchor="middle" '
                    f'font-weight="bold">#{c.kv}</text>')
            sub = (f"slot {c.slot}" if c.lane == "load" and s.lead else
                   (f"copy {c.unrolled_copy}" if c.unrolled_copy is not None else ""))
            if sub:
                body += (f'<text x="{x + (cw - 4) / 2}" y="{y + 32}" fill="#fff" '
                         f'text-anchor="middle" font-size="10">{esc(sub)}</text>')
        else:
            body = (f'<rect x="{x}" y="{y}" width="{cw - 4}" height="{ch}" rx="4" fill="none" '
                    f'stroke="{color}" stroke-dasharray="4,3"/>'
                    f'<text x="{x + (cw - 4) / 2}" y="{y + 24}" fill="{color}" '
                    f'text-anchor="middle" font-size="10">off</text>')
        out.append(f"<g {attrs}><title>{esc(tip)}</title>{body}</g>")
    # Time axis.
    ay = bottom - 8
    out.append(f'<line x1="{left}" y1="{ay}" x2="{width - 14}" y2="{ay}" stroke="#333" '
               f'marker-end="url(#arrow)"/>')
    out.append('<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="6" refY="3" '
               'orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#333"/></marker></defs>')
    out.append(f'<text x="10" y="{ay + 4}" fill="#333">time →</text>')
    for i, line in enumerate(legend_lines[1:]):
        out.append(f'<text x="10" y="{bottom + 18 + 18 * i}" fill="#333" '
                   f'font-family="monospace" font-size="11">{esc(line.strip())}</text>')
    note = (f"#i: KV block i of {tl.n}" + (" (the longest query block; causal blocks before it "
                                             "visit fewer)" if s.causal else "")
            + ("; dashed: predicated off" if any(not c.active for c in tl.cells) else ""))
    out.append(f'<text x="10" y="{height - 10}" fill="#777" font-size="11">{esc(note)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def svg_cells(svg: str) -> list[dict[str, str]]:
    """The data-* attributes of the cells of a picture (for tests and tools)."""
    cells = []
    for m in re.finditer(r'<g class="cell" ([^>]*)>', svg):
        cells.append(dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1))))
    return cells

"""The comparison of builds as a plain-text table, a unified diff, and a
self-contained HTML report (inline CSS, inline SVG pictures)."""
from __future__ import annotations

import datetime
import difflib
import html
from dataclasses import dataclass, field
from typing import Optional

from .builds import Build, stage_text
from .inputs import describe_options

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")


@dataclass
class Row:
    label: str
    values: list[Optional[float]] | list   # numbers, strings or None (n/a)
    section: Optional[str] = None           # a heading row when set
    numeric: bool = True
    lower_is_better: Optional[bool] = None


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def table_rows(builds: list[Build]) -> list[Row]:
    ok = [b for b in builds]
    rows: list[Row] = []

    def per(fn):
        out = []
        for b in ok:
            if b.skipped or b.stats is None:
                out.append(None)
            else:
                try:
                    out.append(fn(b))
                except (KeyError, TypeError):
                    out.append(None)
        return out

    rows.append(Row("kernel", [], section="kernel"))
    rows.append(Row("compiler", [("skipped: " + b.kind) if b.skipped else
                                 ("Triton " + str(b.compiled.metadata.get("triton"))
                                  if b.kind == "triton" else "attncc") for b in ok],
                    numeric=False))
    rows.append(Row("options", [describe_options(b.options) for b in ok], numeric=False))
    rows.append(Row("threads / block", per(lambda b: b.stats.threads)))
    rows.append(Row("grid", per(lambda b: "x".join(map(str, b.stats.grid)) if b.stats.grid
                                else None), numeric=False))
    rows.append(Row("resources (ptxas -v)", [], section="resources"))
    rows.append(Row("registers / thread", per(lambda b: b.stats.registers), lower_is_better=True))
    rows.append(Row("spill stores (bytes)", per(lambda b: b.stats.spill_store_bytes),
                    lower_is_better=True))
    rows.append(Row("spill loads (bytes)", per(lambda b: b.stats.spill_load_bytes),
                    lower_is_better=True))
    rows.append(Row("stack frame (bytes)", per(lambda b: b.stats.stack_frame_bytes),
                    lower_is_better=True))
    rows.append(Row("shared memory (bytes)", per(lambda b: b.stats.shared_bytes)))
    sources = {b.stats.mix_source for b in ok if b.stats is not None}
    mix_keys: list[str] = []
    for b in ok:
        if b.stats is not None:
            for k in b.stats.mix:
                if k not in mix_keys:
                    mix_keys.append(k)
    rows.append(Row(f"instruction mix ({' / '.join(sorted(sources)) or 'n/a'}, static counts)", [],
                    section="mix"))
    for k in mix_keys:
        rows.append(Row(k, per(lambda b, k=k: b.stats.mix.get(k))))
    notes = {b.stats.sass_note for b in ok if b.stats is not None and b.stats.sass is not None}
    rows.append(Row("SASS instruction counts (static"
                    + (f", {', '.join(sorted(n.split(' (')[0] for n in notes))}" if notes else "")
                    + ")", [], section="sass"))
    sass_keys: list[str] = []
    for b in ok:
        if b.stats is not None and b.stats.sass:
            for k in b.stats.sass:
                if k not in sass_keys:
                    sass_keys.append(k)
    if not sass_keys:
        reasons = {b.stats.sass_note for b in ok if b.stats is not None}
        rows.append(Row("SASS", [None for _ in ok], numeric=False))
        if reasons:
            rows[-1].label = f"SASS ({'; '.join(sorted(reasons))})"
    for k in sass_keys:
        rows.append(Row(k, per(lambda b, k=k: (b.stats.sass or {}).get(k))))
    rows.append(Row("compile", [], section="compile"))
    rows.append(Row("compile time (s, wall)", per(lambda b: b.stats.compile_seconds),
                    lower_is_better=True))
    rows.append(Row("from attncc's kernel cache", per(lambda b: None if b.stats.cached is None
                                                      else ("yes" if b.stats.cached else "no")),
                    numeric=False))
    # Rows that are n/a for every build (a CPU build's registers) say nothing;
    # nor does a section left empty.
    kept: list[Row] = []
    for r in rows:
        if not r.section and r.values and all(v is None for v in r.values) and \
                not r.label.startswith("SASS"):
            continue
        kept.append(r)
    return [r for i, r in enumerate(kept)
            if not r.section or (i + 1 < len(kept) and not kept[i + 1].section)]


def _delta(vals) -> str:
    if len(vals) != 2 or not all(isinstance(v, (int, float)) for v in vals) or \
            any(isinstance(v, bool) for v in vals):
        return ""
    d = vals[1] - vals[0]
    if isinstance(d, float):
        return f"{d:+.2f}"
    return f"{d:+d}" if d else "0"


def render_text(builds: list[Build], header: list[str]) -> str:
    rows = table_rows(builds)
    two = len(builds) == 2 and not any(b.skipped for b in builds)
    heads = [b.label for b in builds] + (["B - A" if [b.label for b in builds] == ["A", "B"]
                                          else f"{builds[1].label} - {builds[0].label}"]
                                         if two else [])
    body = []
    for r in rows:
        if r.section:
            body.append((r.label, None))
            continue
        cells = [_fmt(v) for v in r.values] + ([_fmt(None) if False else _delta(r.values)]
                                               if two else [])
        body.append((r.label, cells))
    w0 = max([len(lab) for lab, _ in body] + [10])
    widths = [len(h) for h in heads]
    for _, cells in body:
        if cells:
            widths = [max(w, len(c)) for w, c in zip(widths, cells)]
    widths = [min(w, 64) for w in widths]
    out = list(header)
    out.append("")
    for i, b in enumerate(builds):
        out.append(f"  {b.title}" + (f"  [skipped: {b.skipped}]" if b.skipped else ""))
    out.append("")
    out.append(" " * w0 + "  " + "  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    for lab, cells in body:
        if cells is None:
            out.append(f"-- {lab} --")
            continue
        out.append(lab.ljust(w0) + "  " + "  ".join(
            (c if len(c) <= w else c[:w - 1] + "…").ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(out)


def unified_diff(a: Build, b: Build, stage: str, context: int = 3) -> list[str]:
    ta, tb = stage_text(a, stage), stage_text(b, stage)
    return list(difflib.unified_diff(ta.splitlines(), tb.splitlines(),
                                     fromfile=f"{a.label}: {stage} ({describe_options(a.options)})",
                                     tofile=f"{b.label}: {stage} ({describe_options(b.options)})",
                                     n=context, lineterm=""))


def common_stages(a: Build, b: Build) -> list[str]:
    return [s for s in a.stages if s in b.stages]


# ----------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px;
       color: #222; max-width: 1400px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 15px; }
.meta { color: #555; font-size: 13px; } .meta code { background: #f3f3f3; padding: 1px 4px; }
table.compare { border-collapse: collapse; font-size: 13px; }
table.compare th, table.compare td { border: 1px solid #ddd; padding: 3px 10px; text-align: right; }
table.compare td.label, table.compare th.label { text-align: left; }
table.compare tr.section td { background: #f0f0f0; font-weight: bold; text-align: left; }
table.compare td.better { background: #e3f3e3; } table.compare td.worse { background: #fbe4e4; }
table.compare td.na { color: #999; }
.skipped { color: #a33; }
pre.diff { font-size: 12px; background: #fafafa; border: 1px solid #ddd; padding: 8px;
           overflow-x: auto; max-height: 700px; }
pre.diff .add { background: #e6ffec; } pre.diff .del { background: #ffebe9; }
pre.diff .hunk { color: #0550ae; } pre.diff .file { font-weight: bold; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: bold; }
.schedule { overflow-x: auto; border: 1px solid #eee; padding: 6px; margin-bottom: 12px; }
.note { color: #666; font-size: 12px; }
"""


def _mix_chart(builds: list[Build]) -> str:
    """Grouped horizontal bars: one group per instruction category, one bar per build."""
    live = [b for b in builds if not b.skipped and b.stats is not None]
    if not live:
        return ""
    keys: list[str] = []
    for b in live:
        for k in b.stats.mix:
            if not k.startswith("total") and k not in keys:
                keys.append(k)
    keys = [k for k in keys if any(b.stats.mix.get(k) for b in live)]
    if not keys:
        return ""
    bar_h, gap, left, width = 12, 10, 260, 420
    group_h = bar_h * len(live) + gap
    height = 30 + group_h * len(keys) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="mix-chart" width="{left + width + 80}" '
           f'height="{height}" font-family="sans-serif" font-size="11">',
           "<title>instruction mix (static counts)</title>"]
    x = left
    for i, b in enumerate(live):
        out.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{PALETTE[i % 10]}"/>'
                   f'<text x="{x + 14}" y="15">{html.escape(b.label)}</text>')
        x += 30 + 7 * len(b.label)
    for gi, k in enumerate(keys):
        y0 = 30 + gi * group_h
        top = max(b.stats.mix.get(k, 0) for b in live) or 1
        out.append(f'<text x="{left - 8}" y="{y0 + group_h / 2}" text-anchor="end">'
                   f'{html.escape(k.strip())}</text>')
        for i, b in enumerate(live):
            v = b.stats.mix.get(k, 0)
            w = max(1, int(width * v / top)) if v else 0
            y = y0 + i * bar_h
            out.append(f'<g class="bar" data-build="{html.escape(b.label)}" '
                       f'data-category="{html.escape(k.strip())}" data-value="{v}">'
                       f'<rect x="{left}" y="{y}" width="{w}" height="{bar_h - 2}" '
                       f'fill="{PALETTE[i % 10]}"/><text x="{left + w + 4}" y="{y + bar_h - 3}">'
                       f'{v}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def _diff_html(lines: list[str], limit: int = 20000) -> str:
    out = []
    for line in lines[:limit]:
        cls = ("file" if line.startswith(("+++", "---")) else "add" if line.startswith("+")
               else "del" if line.startswith("-") else "hunk" if line.startswith("@@") else "")
        esc = html.escape(line)
        out.append(f'<span class="{cls}">{esc}</span>' if cls else esc)
    if len(lines) > limit:
        out.append(f"... {len(lines) - limit} more diff lines not shown")
    return "\n".join(out)


def render_html(builds: list[Build], *, title: str, meta: list[tuple[str, str]],
                diff_stage: Optional[str], context: int = 3,
                schedules: Optional[list[tuple[str, str]]] = None) -> str:
    rows = table_rows(builds)
    two = len(builds) == 2 and not any(b.skipped for b in builds)
    esc = html.escape
    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>{esc(title)}</title>", f"<style>{CSS}</style></head><body>",
         f"<h1>{esc(title)}</h1>", '<p class="meta">']
    h.append("<br>".join(f"{esc(k)}: <code>{esc(v)}</code>" for k, v in meta))
    h.append(f"<br>generated: <code>{datetime.datetime.now().isoformat(timespec='seconds')}"
             "</code></p>")
    h.append("<h2>Builds</h2><ul>")
    for b in builds:
        h.append(f"<li><b>{esc(b.label)}</b>: {esc(b.title.split(': ', 1)[1])}"
                 + (f' <span class="skipped">skipped: {esc(b.skipped)}</span>' if b.skipped else "")
                 + "</li>")
    h.append("</ul>")
    h.append('<h2>Side by side</h2><table class="compare"><thead><tr><th class="label"></th>')
    for b in builds:
        h.append(f"<th>{esc(b.label)}</th>")
    if two:
        h.append(f"<th>{esc(builds[1].label)} − {esc(builds[0].label)}</th>")
    h.append("</tr></thead><tbody>")
    for r in rows:
        if r.section:
            h.append(f'<tr class="section"><td colspan="{len(builds) + 1 + two}">'
                     f"{esc(r.label)}</td></tr>")
            continue
        h.append(f'<tr><td class="label">{esc(r.label.strip())}</td>')
        nums = [v for v in r.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for v in r.values:
            cls = "na" if v is None else ""
            if r.lower_is_better is not None and len(nums) == len(r.values) and len(set(nums)) > 1:
                best = min(nums) if r.lower_is_better else max(nums)
                worst = max(nums) if r.lower_is_better else min(nums)
                cls = "better" if v == best else "worse" if v == worst else ""
            h.append(f'<td class="{cls}">{esc(_fmt(v))}</td>')
        if two:
            h.append(f"<td>{esc(_delta(r.values))}</td>")
        h.append("</tr>")
    h.append("</tbody></table>")
    h.append('<p class="note">Counts are static (instructions in the PTX/SASS text, not '
             "executed instructions). Registers, spills and stack come from the same ptxas "
             "(<code>ptxas -v</code>) for every GPU build.</p>")
    chart = _mix_chart(builds)
    if chart:
        h.append("<h2>Instruction mix</h2>")
        h.append(chart)
    if schedules:
        h.append("<h2>Software-pipelined schedule</h2>")
        h.append('<p class="note">Read from the <code>pipelined</code> IR: the '
                 "<code>attn.part</code> / <code>attn.iteration</code> tags of attn-pipeline "
                 "and the <code>attn.unrolled_copy</code> tags of attn-unroll. Blue: K/V tile "
                 "copies (cp.async on the GPU) of KV block #i into buffer slot s; orange: the "
                 "compute of block #i (Q·Kᵀ, mask, softmax, P·V). Hover a cell for its tags."
                 "</p>")
        for label, svg in schedules:
            h.append(f"<h3>{esc(label)}</h3><div class=\"schedule\">{svg}</div>")
    live = [b for b in builds if not b.skipped]
    if len(live) >= 2:
        a, b = live[0], live[1]
        stages = common_stages(a, b)
        h.append(f"<h2>Diffs: {esc(a.label)} → {esc(b.label)}</h2>")
        if not stages:
            h.append('<p class="note">The two builds share no stage.</p>')
        for s in stages:
            lines = unified_diff(a, b, s, context)
            adds = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
            dels = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
            opened = " open" if s == diff_stage else ""
            note = " (debug info removed)" if s == "ptx" else ""
            h.append(f'<details{opened} data-stage="{esc(s)}"><summary>stage {esc(s)}{note}: '
                     f"+{adds} −{dels} lines</summary>")
            h.append(f'<pre class="diff">{_diff_html(lines) if lines else "(identical)"}</pre>'
                     "</details>")
    h.append("</body></html>")
    return "\n".join(h)

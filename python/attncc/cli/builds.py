"""One compilation as the commands see it (attncc at some options, or the
Triton reference): its stages' text, resources, instruction mix, schedule."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from ..options import CompileOptions
from .errors import CliError
from .inputs import (AttentionFacts, Examples, Program, attention_facts, describe_options,
                     lower)
from .stats import KernelStats, cpu_stats, gpu_stats


@dataclass
class Build:
    label: str
    kind: str                       # attncc | triton
    target: str
    options: dict[str, Any]
    stages: dict[str, str] = field(default_factory=dict)
    stats: Optional[KernelStats] = None
    schedule: Any = None            # schedule.Schedule (attncc)
    facts: Optional[AttentionFacts] = None
    compiled: Any = None
    skipped: Optional[str] = None   # why it was not built
    seconds: float = 0.0

    @property
    def title(self) -> str:
        who = "Triton reference" if self.kind == "triton" else "attncc"
        return f"{self.label}: {who}, {describe_options(self.options)}"


def strip_ptx_debug(ptx: str) -> str:
    """PTX without .loc/.file lines and .debug sections (for diffs)."""
    out, in_debug, depth = [], False, 0
    for line in ptx.splitlines():
        s = line.strip()
        if s.startswith(".section") and ".debug" in s:
            in_debug, depth = True, 0
            if s.endswith("{ }") or s.endswith("{\t}") or re.search(r"\{\s*\}$", s):
                in_debug = False
            continue
        if in_debug:
            depth += s.count("{") - s.count("}")
            if depth <= 0 and "}" in s:
                in_debug = False
            continue
        if s.startswith((".loc", ".file")):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def build_attncc(label: str, prog: Program, ex: Examples, target: str,
                 options: dict[str, Any], *, with_sass: bool = True) -> Build:
    from . import schedule as sched

    b = Build(label, "attncc", target, dict(options))
    t0 = time.perf_counter()
    c = lower(prog, ex, target, options)
    b.seconds = time.perf_counter() - t0
    b.compiled = c
    b.stages = {name: text for name, text in c.stages.items()}
    if target == "cpu":
        b.stats = cpu_stats(c.ir("llvm"))
    else:
        if c.ptx:
            b.stages["ptx"] = c.ptx
        b.stats = gpu_stats(c.ptx or "", c.cubin, c.metadata, target, disasm=with_sass)
        if b.stats.sass_text:
            b.stages["sass"] = b.stats.sass_text
    b.stats.compile_seconds = b.seconds
    b.stats.cached = "cache" in c.stage_seconds
    b.facts = attention_facts(c.ir("fused"))
    b.schedule = sched.read_schedule(c.ir("pipelined"), block_n=c.options.block_n)
    return b


def triton_unsupported_reason(f: AttentionFacts) -> Optional[str]:
    if f.mask not in ("none", "causal") or f.bias:
        what = "bias" if f.bias else f.mask
        return f"the Triton reference has no {what} mask (it covers none and causal)"
    if f.kv_group != 1:
        return f"the Triton reference is multi-head only (this attention has GQA group {f.kv_group})"
    if None in f.q_shape or None in f.k_shape:
        return "the Triton reference needs static shapes"
    if f.q_shape[2] != f.k_shape[2]:
        return (f"the Triton reference needs as many queries as keys (here {f.q_shape[2]} "
                f"and {f.k_shape[2]})")
    if f.dtype not in ("f16", "bf16", "f32"):
        return f"the Triton reference takes f16, bf16 or f32, not {f.dtype}"
    return None


def build_triton(label: str, facts: AttentionFacts, target: str, options: dict[str, Any],
                 *, with_sass: bool = True) -> Build:
    """The Triton reference for the same attention; a skipped Build (with the
    reason) when Triton is missing or the problem is outside what it covers."""
    from ..reference import triton_attention as ta

    if target == "cpu":
        raise CliError("the Triton reference is a GPU kernel: use --target sm_80 or sm_90a")
    # The same defaults as attncc's GPU kernels (CompileOptions.resolved).
    r = CompileOptions.from_kwargs({k: v for k, v in options.items() if v is not None}
                                   ).resolved(target, None)
    opts = {"block_m": r.block_m, "block_n": r.block_n, "num_stages": r.num_stages,
            "num_warps": r.num_warps}
    b = Build(label, "triton", target, opts)
    if not ta.available():
        b.skipped = ("Triton is not installed; install it with `pip install 'attncc[triton]'` "
                     f"(triton=={ta.TRITON_VERSION})")
        return b
    why = triton_unsupported_reason(facts)
    if why:
        b.skipped = why
        return b
    B, H, L, D = facts.q_shape
    spec = ta.AttentionSpec(batch=B, heads=H, seq=L, head_dim=D, dtype=facts.dtype,
                            causal=facts.mask == "causal", input_precision=r.input_precision)
    t0 = time.perf_counter()
    try:
        k = ta.compile_attention(spec, target, block_m=opts["block_m"], block_n=opts["block_n"],
                                 num_stages=opts["num_stages"], num_warps=opts["num_warps"])
    except (ta.TritonUnsupported, ta.TritonUnavailable) as e:
        b.skipped = str(e)
        return b
    b.seconds = time.perf_counter() - t0
    b.options["num_warps"] = k.options["num_warps"]
    b.compiled = k
    b.facts = facts
    b.stages = dict(k.stages)
    b.stages.pop("source", None)
    b.stats = gpu_stats(k.ptx, None, k.metadata, target, assemble_if_needed=True,
                        disasm=with_sass)
    b.stats.compile_seconds = b.seconds
    if b.stats.sass_text:
        b.stages["sass"] = b.stats.sass_text
    return b


def stage_text(b: Build, stage: str) -> str:
    text = b.stages[stage]
    return strip_ptx_debug(text) if stage == "ptx" else text

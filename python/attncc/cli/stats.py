"""What a compiled kernel is made of: resources (registers, spills, shared
memory, from ptxas), the static instruction mix of its PTX (or, on the CPU, of
its LLVM dialect IR) and, where a disassembler is found, of its SASS.

Counts are static: instructions in the text, not instructions executed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

# (row label, regex on the PTX opcode). Categories overlap only where the
# label says so ("tensor-core ops" is the sum of the two mma rows).
PTX_MIX: tuple[tuple[str, str], ...] = (
    ("tensor-core ops (mma.sync + wgmma)", r"^(mma\.sync|wgmma\.mma_async|tcgen05\.mma)"),
    ("  mma.sync", r"^mma\.sync"),
    ("  wgmma.mma_async", r"^wgmma\.mma_async"),
    ("async copies (cp.async)", r"^cp\.async\.c[ag]\."),
    ("TMA copies (cp.async.bulk)", r"^cp\.async\.bulk(?!\.commit|\.wait)"),
    ("async commit/wait", r"^(cp\.async\.(commit_group|wait_group|wait_all)|"
                          r"cp\.async\.bulk\.(commit_group|wait_group)|wgmma\.(commit_group|wait_group|fence))"),
    ("ldmatrix", r"^ldmatrix"),
    ("shared loads (ld.shared)", r"^ld\.shared"),
    ("shared stores (st.shared)", r"^st\.shared"),
    ("global loads (ld.global)", r"^ld\.global"),
    ("global stores (st.global)", r"^st\.global"),
    ("local (stack) loads/stores", r"^(ld|st)\.local"),
    ("barriers (bar/barrier/mbarrier)", r"^(bar\.|barrier\.|mbarrier\.)"),
    ("shuffles (shfl.sync)", r"^shfl\.sync"),
    ("exp2 (ex2.approx)", r"^ex2\.approx"),
)

SASS_MIX: tuple[tuple[str, str], ...] = (
    ("HMMA (mma.sync)", r"^HMMA"),
    ("HGMMA (wgmma)", r"^HGMMA"),
    ("LDGSTS (cp.async)", r"^LDGSTS"),
    ("UTMALDG (TMA)", r"^UTMA"),
    ("LDSM (ldmatrix)", r"^LDSM"),
    ("LDS", r"^LDS(\.|$)"),
    ("STS", r"^STS(\.|$)"),
    ("LDG", r"^LDG(\.|$)"),
    ("STG", r"^STG(\.|$)"),
    ("BAR / SYNCS", r"^(BAR|SYNCS)"),
    ("MUFU.EX2", r"^MUFU\.EX2"),
    ("SHFL", r"^SHFL"),
)

# CPU: the 'llvm' stage (LLVM dialect).
LLVM_MIX: tuple[tuple[str, str], ...] = (
    ("FMAs (llvm.intr.fma/fmuladd)", r"^llvm\.intr\.(fma|fmuladd)$"),
    ("loads (llvm.load)", r"^llvm\.load$"),
    ("stores (llvm.store)", r"^llvm\.store$"),
    ("shuffles (llvm.shufflevector)", r"^llvm\.shufflevector$"),
    ("calls (llvm.call)", r"^llvm\.call$"),
    ("branches (llvm.br/cond_br)", r"^llvm\.(br|cond_br)$"),
)


def _count(opcodes: list[str], mix) -> dict[str, int]:
    out = {}
    for label, rx in mix:
        r = re.compile(rx)
        out[label] = sum(1 for op in opcodes if r.search(op))
    return out


_PTX_PRED = re.compile(r"^@!?%\w+\s+")


def ptx_opcodes(ptx: str) -> list[str]:
    """The opcodes of the PTX instructions (directives, labels, debug sections
    and braces skipped; an instruction may span lines up to its ';')."""
    ops = []
    in_debug = False
    pending = ""
    for raw in ptx.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if not pending:
            if line.startswith(".section"):
                in_debug = ".debug" in line
                continue
            if in_debug or line[0] in ".{})$" or line.endswith(":"):
                continue
        pending = f"{pending} {line}" if pending else line
        if ";" not in pending:
            continue
        stmt, pending = pending.split(";", 1)[0], ""
        stmt = _PTX_PRED.sub("", stmt.strip())
        if stmt:
            ops.append(stmt.split(None, 1)[0])
    return ops


def ptx_mix(ptx: str) -> dict[str, int]:
    ops = ptx_opcodes(ptx)
    out = _count(ops, PTX_MIX)
    out["total PTX instructions"] = len(ops)
    return out


_SASS_LINE = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;")


def sass_opcodes(sass: str) -> list[str]:
    ops = []
    for m in _SASS_LINE.finditer(sass):
        text = m.group(1).strip()
        if text.startswith("@"):
            text = text.split(None, 1)[1] if " " in text else ""
        if text:
            ops.append(text.split(None, 1)[0])
    return ops


def sass_mix(sass: str) -> dict[str, int]:
    ops = [o for o in sass_opcodes(sass) if o != "NOP"]
    out = _count(ops, SASS_MIX)
    out["total SASS instructions (no NOP)"] = len(ops)
    return out


_LLVM_OP = re.compile(r"(?:^|=\s*)(llvm\.[\w.]+)")


def llvm_mix(llvm_ir: str) -> dict[str, int]:
    ops = []
    for line in llvm_ir.splitlines():
        m = _LLVM_OP.search(line.strip())
        if m and not m.group(1).startswith(("llvm.func", "llvm.mlir.global")):
            ops.append(m.group(1))
    out = _count(ops, LLVM_MIX)
    out["total LLVM dialect ops"] = len(ops)
    return out


# ----------------------------------------------------------------------------- disassembler

def find_disassembler() -> Optional[tuple[str, str]]:
    """('cuobjdump'|'nvdisasm', path): $ATTNCC_DISASSEMBLER (a path, or "none"),
    then PATH, $CUDA_HOME/bin, /usr/local/cuda/bin, then the copies Triton's
    wheel bundles (triton/backends/nvidia/bin)."""
    env = os.environ.get("ATTNCC_DISASSEMBLER")
    if env:
        if env.lower() in ("none", "0", "off"):
            return None
        if os.access(env, os.X_OK):
            return ("nvdisasm" if "nvdisasm" in Path(env).name else "cuobjdump", env)
        return None
    dirs: list[Optional[str]] = []
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            dirs.append(str(Path(root) / "bin"))
    try:
        import importlib.util

        spec = importlib.util.find_spec("triton")
        if spec and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                dirs.append(str(Path(loc) / "backends" / "nvidia" / "bin"))
    except Exception:  # pragma: no cover
        pass
    for tool in ("cuobjdump", "nvdisasm"):
        found = shutil.which(tool)
        if found:
            return tool, found
    for d in dirs:
        for tool in ("cuobjdump", "nvdisasm"):
            p = Path(d) / tool
            if p.is_file() and os.access(p, os.X_OK):
                return tool, str(p)
    return None


def disassemble(cubin: bytes) -> Optional[str]:
    """SASS text of a cubin, or None without a disassembler (or if it fails)."""
    tool = find_disassembler()
    if tool is None or not cubin:
        return None
    kind, exe = tool
    with tempfile.TemporaryDirectory(prefix="attncc-sass-") as d:
        f = Path(d) / "kernel.cubin"
        f.write_bytes(cubin)
        cmd = [exe, "-sass", str(f)] if kind == "cuobjdump" else [exe, "-c", str(f)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        if proc.returncode != 0:
            return None
        return proc.stdout


# ----------------------------------------------------------------------------- one kernel

@dataclass
class KernelStats:
    """Resources and instruction mix of one compilation (None = n/a)."""

    registers: Optional[int] = None
    spill_store_bytes: Optional[int] = None
    spill_load_bytes: Optional[int] = None
    stack_frame_bytes: Optional[int] = None
    shared_bytes: Optional[int] = None
    threads: Optional[int] = None
    grid: Optional[list] = None
    mix: dict[str, int] = field(default_factory=dict)        # PTX (GPU) or LLVM dialect (CPU)
    mix_source: str = ""
    sass: Optional[dict[str, int]] = None
    sass_note: str = ""
    sass_text: Optional[str] = field(default=None, repr=False)
    compile_seconds: Optional[float] = None
    cached: Optional[bool] = None             # attncc's GPU kernel cache served it
    notes: list[str] = field(default_factory=list)


def gpu_stats(ptx: str, cubin: Optional[bytes], metadata: dict[str, Any], chip: str,
              *, assemble_if_needed: bool = False, disasm: bool = True) -> KernelStats:
    """Stats of a GPU kernel. attncc's metadata carries ptxas' numbers; for a
    kernel without them (Triton's) `assemble_if_needed` runs attncc's ptxas on
    the PTX, so both kernels are measured by the same ptxas."""
    from ..targets import gpu

    st = KernelStats(mix=ptx_mix(ptx), mix_source="PTX")
    md = dict(metadata)
    if "registers" not in md and assemble_if_needed:
        try:
            cub, rep = gpu.assemble(ptx, chip)
        except gpu.PtxasNotFound:
            st.notes.append("ptxas not found: registers and spills n/a")
        except Exception as e:  # ptxas rejected it
            st.notes.append(f"ptxas failed: {str(e).splitlines()[-1][:200]}")
        else:
            cubin = cub
            md.update(registers=rep.registers, spill_store_bytes=rep.spill_store_bytes,
                      spill_load_bytes=rep.spill_load_bytes,
                      stack_frame_bytes=rep.stack_frame_bytes,
                      static_smem_bytes=rep.static_smem_bytes)
    st.registers = md.get("registers")
    st.spill_store_bytes = md.get("spill_store_bytes")
    st.spill_load_bytes = md.get("spill_load_bytes")
    st.stack_frame_bytes = md.get("stack_frame_bytes")
    if "shared_bytes" in md:
        st.shared_bytes = int(md["shared_bytes"]) + int(md.get("static_smem_bytes") or 0)
    block = md.get("block")
    if block:
        st.threads = int(block[0]) * int(block[1]) * int(block[2])
    st.grid = md.get("grid")
    if not disasm:
        st.sass_note = "not disassembled"
    elif cubin:
        tool = find_disassembler()
        sass = disassemble(cubin) if tool else None
        if sass:
            st.sass = sass_mix(sass)
            st.sass_text = sass
            st.sass_note = f"{Path(tool[1]).name} ({tool[1]})"
        else:
            st.sass_note = "no disassembler (cuobjdump/nvdisasm) found" if tool is None \
                else f"{tool[0]} failed"
    else:
        st.sass_note = "no cubin (ptxas not found)"
    return st


def cpu_stats(llvm_ir: str) -> KernelStats:
    st = KernelStats(mix=llvm_mix(llvm_ir), mix_source="LLVM dialect IR")
    st.sass_note = "CPU target"
    return st

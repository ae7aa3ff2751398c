"""The GPU targets (NVVM path): chips, the passes of stages 'gpu' and 'ptx',
ptxas (stage 'cubin'), and the launch metadata of a compiled kernel, read
from the IR through the MLIR bindings.

Targets (attncc.targets.TARGETS): "sm_80" (Ampere and newer of major 8: A100,
A10, L4, RTX 30/40), "sm_90a" (Hopper: wgmma + TMA + mbarriers with whole
warpgroups, see docs/gpu.md) and "cuda" (the current torch device's
architecture, else sm_80).

Abort hazards guarded here, before MLIR is reached (each kills the process with
an LLVM fatal error instead of raising): an NVPTX chip without a PTX ISA
version it supports (sm_80 needs +ptx70 or newer; the pipeline's default is
+ptx60), sm_90a without +ptx80 or newer (attncc uses +ptx83: the TMA kernel
fences its tensor maps with fence.proxy.tensormap, PTX ISA 8.3), and unknown
chips.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from mlir import ir
from mlir.dialects import gpu as gpu_d

from ..errors import AttnccError, CompileError
from ..runtime.grid import eval_expr
from . import GPU_TARGETS


@dataclass(frozen=True)
class Chip:
    name: str
    ptx_features: str        # PTX ISA version for NVPTX (guards the LLVM abort)
    max_smem_per_block: int  # bytes of dynamic shared memory a block may opt into
    max_regs_per_thread: int
    regs_per_sm: int
    max_threads_per_block: int


CHIPS: dict[str, Chip] = {
    "sm_80": Chip("sm_80", "+ptx70", 163 * 1024, 255, 65536, 1024),
    "sm_90a": Chip("sm_90a", "+ptx83", 227 * 1024, 255, 65536, 1024),
}


class PtxasNotFound(AttnccError, FileNotFoundError):
    """No ptxas: the cubin (and ptxas' resource report) cannot be produced."""


def chip_for_target(target: str) -> str:
    """sm_80 / sm_90a as given; "cuda": the current torch device's
    architecture (major 9 -> sm_90a, anything else -> sm_80, whose cubin runs
    on every major-8 GPU and whose PTX the driver can JIT for newer ones)."""
    if target in CHIPS:
        return target
    if target != "cuda":
        raise CompileError(f"unknown GPU target {target!r}; expected one of {GPU_TARGETS}")
    try:
        import torch

        if torch.cuda.is_available():
            major, _ = torch.cuda.get_device_capability()
            return "sm_90a" if major == 9 else "sm_80"
    except Exception:  # pragma: no cover - torch without CUDA support
        pass
    return "sm_80"


def nvvm_pipeline(chip: str) -> str:
    """The upstream NVVM pipeline producing PTX (format=isa) for `chip`."""
    info = CHIPS.get(chip)
    if info is None:
        # Never hand an unknown chip to NVPTX: it may abort the process.
        raise CompileError(f"unknown GPU chip {chip!r}; expected one of {sorted(CHIPS)}")
    return (f"gpu-lower-to-nvvm-pipeline{{cubin-chip={info.name} "
            f"cubin-features={info.ptx_features} cubin-format=isa opt-level=3}}")


def lowering_passes(o: Mapping[str, Any]) -> str:
    """Stage 'gpu': attn-lower-to-gpu for the options' chip (resolved options:
    `chip` and `num_warps` are filled in by CompileOptions.resolved)."""
    mma = str(o["mma"]).replace("_", "-")
    tma = "true" if o["tma"] else "false"
    precision = o.get("input_precision") or "tf32"
    return (f"attn-lower-to-gpu{{chip={o['chip']} num-warps={int(o['num_warps'])} mma={mma} "
            f"tma={tma} input-precision={precision}}},canonicalize,cse")


def ptx_passes(o: Mapping[str, Any]) -> str:
    """Stage 'ptx': upstream's NVVM pipeline for the options' chip."""
    return nvvm_pipeline(str(o["chip"]))


# --------------------------------------------------------------------------- PTX, ptxas

def extract_ptx(module: ir.Module) -> str:
    """The PTX text of the (single) gpu.binary of the 'ptx' stage."""
    texts = []
    for op in module.body.operations:
        o = op.operation
        if o.name == "gpu.binary":
            for obj in ir.ArrayAttr(o.attributes["objects"]):
                texts.append(gpu_d.ObjectAttr(obj).object.decode())
    if len(texts) != 1:
        raise CompileError(f"expected one GPU binary object with PTX, found {len(texts)}")
    return texts[0]


def find_ptxas() -> Optional[str]:
    """ptxas from $ATTNCC_PTXAS, PATH, $CUDA_HOME/bin or /usr/local/cuda/bin."""
    env = os.environ.get("ATTNCC_PTXAS")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("ptxas")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.access(Path(root) / "bin" / "ptxas", os.X_OK):
            return str(Path(root) / "bin" / "ptxas")
    return None


@dataclass(frozen=True)
class PtxasReport:
    registers: int
    stack_frame_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int
    static_smem_bytes: int
    barriers: int
    log: str


_INFO = {
    "registers": re.compile(r"Used (\d+) registers"),
    "stack_frame_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_store_bytes": re.compile(r"(\d+) bytes spill stores"),
    "spill_load_bytes": re.compile(r"(\d+) bytes spill loads"),
    "static_smem_bytes": re.compile(r"(\d+) bytes smem"),
    "barriers": re.compile(r"used (\d+) barriers"),
}


def parse_ptxas_log(log: str) -> PtxasReport:
    """The resources of the module's kernels (split-KV has two): spill bytes
    added up, the rest the largest of any kernel."""
    vals = {}
    for k, rx in _INFO.items():
        found = [int(m) for m in rx.findall(log)]
        vals[k] = (sum(found) if k.startswith("spill") else max(found)) if found else 0
    return PtxasReport(log=log, **vals)


def assemble(ptx: str, chip: str, ptxas: Optional[str] = None) -> tuple[bytes, PtxasReport]:
    """Runs ptxas -v on `ptx`; returns the cubin and ptxas' resource report."""
    exe = ptxas or find_ptxas()
    if exe is None:
        raise PtxasNotFound("ptxas not found (set ATTNCC_PTXAS, add the CUDA toolkit's bin/ to "
                            "PATH, or set CUDA_HOME); the PTX is available as .ptx, and the CUDA "
                            "driver can load PTX without a cubin")
    with tempfile.TemporaryDirectory(prefix="attncc-ptxas-") as d:
        src, dst = Path(d) / "kernel.ptx", Path(d) / "kernel.cubin"
        src.write_text(ptx)
        proc = subprocess.run([exe, f"-arch={chip}", "-O3", "-v", str(src), "-o", str(dst)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError(f"ptxas failed for {chip}:\n{proc.stderr.strip()}")
        return dst.read_bytes(), parse_ptxas_log(proc.stderr + proc.stdout)


def ptxas_version(ptxas: Optional[str] = None) -> str:
    exe = ptxas or find_ptxas()
    if exe is None:
        return "none"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    except OSError:  # pragma: no cover
        return "none"
    m = re.search(r"V(\d+\.\d+\.\d+)", out)
    return m.group(1) if m else out.strip()[-40:]


# --------------------------------------------------------------------------- ptxas stage

def cache_target(chip: str) -> str:
    """What a GPU kernel is made for, in its cache key."""
    return f"{chip};ptxas={ptxas_version()}"


def run_ptxas(ptx: str, chip: str) -> tuple[str, Optional[bytes], dict[str, Any]]:
    """Stage 'cubin': ptxas' report (or why there is none), the cubin, and the
    resources it reports for the launch metadata."""
    try:
        cubin, report = assemble(ptx, chip)
    except PtxasNotFound as e:
        return f"// cubin not produced: {e}", None, {"ptxas": None}
    return report.log, cubin, {
        "registers": report.registers, "spill_store_bytes": report.spill_store_bytes,
        "spill_load_bytes": report.spill_load_bytes,
        "stack_frame_bytes": report.stack_frame_bytes, "barriers": report.barriers,
        "ptxas": ptxas_version()}


# --------------------------------------------------------------------------- metadata

_ARITH = {"arith.addi": "add", "arith.subi": "sub", "arith.muli": "mul", "arith.divui": "div",
          "arith.divsi": "div", "arith.floordivsi": "div", "arith.ceildivui": "ceildiv",
          "arith.ceildivsi": "ceildiv", "arith.remui": "rem", "arith.remsi": "rem",
          "arith.minsi": "min", "arith.minui": "min", "arith.maxsi": "max", "arith.maxui": "max"}


def _grid_expr(v: ir.Value) -> Any:
    """A host index value as an int, or an expression over argument shapes
    (attncc.runtime.grid)."""
    if isinstance(v, ir.BlockArgument):
        raise CompileError("a grid size is a function argument; attncc grids depend on shapes only")
    op = v.owner
    name = op.name
    if name == "arith.constant":
        return int(ir.IntegerAttr(op.attributes["value"]).value)
    if name == "memref.dim":
        src, idx = op.operands
        if not isinstance(src, ir.BlockArgument):
            raise CompileError("grid size from the shape of a non-argument buffer")
        return ["dim", src.arg_number, _grid_expr(idx)]
    if name in _ARITH:
        a, b = op.operands
        ea, eb = _grid_expr(a), _grid_expr(b)
        if isinstance(ea, int) and isinstance(eb, int):
            return eval_expr([_ARITH[name], ea, eb], [])
        return [_ARITH[name], ea, eb]
    if name == "arith.index_cast":
        return _grid_expr(op.operands[0])
    raise CompileError(f"cannot express the grid size computed by {name} for the runtime")


def memref_arg(t: ir.Type) -> tuple[list[Optional[int]], str]:
    """Shape (None for dynamic sizes) and element type of a memref argument:
    identity layout, or (ragged / paged kernels) strided with offset 0,
    whose strides the runtime passes from the tensor."""
    shape, elt, _ = memref_arg_layout(t)
    return shape, elt


def memref_arg_layout(t: ir.Type) -> tuple[list[Optional[int]], str, Optional[str]]:
    """memref_arg and the argument's layout: None (contiguous), "rows"
    (strided, unit innermost stride: rows the kernel may read by cp.async)
    or "any" (strided)."""
    try:
        m = ir.MemRefType(t)
    except ValueError:
        raise CompileError(f"kernel argument type {t} is not a memref") from None
    layout = m.layout
    if m.memory_space is not None:
        raise CompileError(f"kernel argument type {t} is not in global memory")
    strided = None
    if isinstance(layout, ir.StridedLayoutAttr):
        if layout.offset != 0:
            raise CompileError(f"kernel argument type {t}: a strided argument needs offset 0")
        strided = "rows" if layout.strides and layout.strides[-1] == 1 else "any"
    elif not (isinstance(layout, ir.AffineMapAttr)
              and layout.value == ir.AffineMap.get_identity(m.rank)):
        raise CompileError(f"kernel argument type {t} is neither identity-layout nor strided")
    shape = [None if ir.ShapedType.is_dynamic_size(d) else d for d in m.shape]
    return shape, str(m.element_type), strided


def kernel_metadata(module: ir.Module, func_name: str) -> dict[str, Any]:
    """Launch facts of the 'gpu' stage (after outlining): per launch (in host
    order: the attention kernel, then, for split-KV, the combine) the kernel
    symbol, grid (expressions over the argument shapes), block, dynamic
    shared memory and which host arguments the kernel takes as memref
    descriptors; the first launch's facts also at the top level."""
    host = None
    for op in module.body.operations:
        o = op.operation
        if o.name == "func.func" and ir.StringAttr(o.attributes["sym_name"]).value == func_name:
            host = o
    if host is None:
        raise CompileError(f"no host function {func_name!r} in the GPU stage")
    found = [op.operation for op in host.regions[0].blocks[0].operations
             if op.operation.name == "gpu.launch_func"]
    if not found:
        # Static shapes with a 0-sized dim (a query length of 0, say) fold the
        # launch away: there is no kernel to emit.
        raise CompileError(f"no GPU kernel launch in {func_name!r}: with these static shapes "
                           "the attention does no work (a dimension of size 0, such as a "
                           "query length of 0?); compile with the shapes it will run on, or "
                           "dynamic ones")
    modules = {ir.SymbolRefAttr(lf.attributes["kernel"]).value[0] for lf in found}
    if len(modules) != 1:
        raise CompileError(f"the launches of {func_name!r} use several gpu.modules: {modules}")
    launches = [_launch_metadata(lf) for lf in found]
    roles = {}
    if "attn.gpu_args" in host.attributes:
        d = ir.DictAttr(host.attributes["attn.gpu_args"])
        for name in ("q", "k", "v", "bias", "out", "lse"):
            if name in d:
                roles[name] = int(ir.IntegerAttr(d[name]).value)
    host_args = []
    for a in host.regions[0].blocks[0].arguments:
        shape, elt, strided = memref_arg_layout(a.type)
        host_args.append({"shape": shape, "dtype": elt, **({"strided": strided} if strided else {})})
    return {**launches[0], "launches": launches, "host_args": host_args, "roles": roles}


def _launch_metadata(lf) -> dict[str, Any]:
    seg = list(ir.DenseI32ArrayAttr(lf.attributes["operandSegmentSizes"]))
    ops = list(lf.operands)
    parts, pos = [], 0
    for n in seg:
        parts.append(ops[pos:pos + n])
        pos += n
    # asyncDependencies, grid x/y/z, block x/y/z, cluster x/y/z, dynamicSharedMemorySize, args, asyncObject
    grid = [_grid_expr(p[0]) for p in parts[1:4]]
    block = [_grid_expr(p[0]) for p in parts[4:7]]
    if not all(isinstance(b, int) for b in block):
        raise CompileError("the thread block size must be static")
    smem = _grid_expr(parts[10][0]) if parts[10] else 0
    args = []
    for a in parts[11]:
        if not isinstance(a, ir.BlockArgument):
            args.append(_tensor_map_arg(a))
            continue
        shape, elt = memref_arg(a.type)
        args.append({"arg": a.arg_number, "shape": shape, "dtype": elt})
    kernel = ir.SymbolRefAttr(lf.attributes["kernel"])
    return {"kernel": kernel.value[-1], "gpu_module": kernel.value[0], "grid": grid,
            "block": block, "shared_bytes": smem, "kernel_args": args}


# TensorMapDescriptorType has no accessors in MLIR 22's Python bindings: its
# fields are read from the printed type (the box also from the op's operands).
_TENSOR_MAP = re.compile(r"<tensor = memref<([0-9x]+)x(f16|bf16), [^>]*>>, swizzle = (\w+), "
                         r"l2promo = (\w+), oob = (\w+), interleave = (\w+)>")


def _tensor_map_arg(value) -> dict:
    """A kernel argument made by `nvgpu.tma.create.descriptor` in the host
    function: which host tensor it describes and the box, for the runtime to
    encode the CUtensorMap (cuTensorMapEncodeTiled) at launch."""
    op = value.owner
    if hasattr(op, "name") and op.name == "builtin.unrealized_conversion_cast":
        value = op.operands[0]  # passed to the kernel as a pointer
        op = value.owner
    if not hasattr(op, "name") or op.name != "nvgpu.tma.create.descriptor":
        raise CompileError("kernel arguments must be the function's buffers or TMA descriptors")
    src = op.operands[0]
    while not isinstance(src, ir.BlockArgument):
        cast = src.owner
        if cast.name != "memref.cast":
            raise CompileError("a TMA descriptor must describe one of the function's buffers")
        src = cast.operands[0]
    m = _TENSOR_MAP.search(str(value.type))
    if not m:
        raise CompileError(f"unexpected TMA descriptor type {value.type}")
    box, elt, swizzle, l2, oob, interleave = m.groups()
    return {"arg": src.arg_number, "tensor_map": {
        "box": [int(d) for d in box.split("x")], "dtype": elt, "swizzle": swizzle,
        "l2promo": l2, "oob": oob, "interleave": interleave}}

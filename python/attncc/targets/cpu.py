"""CPU ISA classes: what attn-lower-to-cpu's code generation follows.

The host is read from LLVM itself (`llvm::sys::getProcessTriple`,
`getHostCPUName`, `getHostCPUFeatures`, through the native extension), i.e.
the facts MLIR's ExecutionEngine uses to pick its target machine, not from
/proc/cpuinfo. A small table maps it to an ISA class, which fixes the f32
lanes per vector and the tile_matmul register block:

    class          lanes  registers  block (rows x vectors)  accumulators
    x86-64-v3        8       16           6 x 2                  12
    x86-64-v4       16       32           6 x 4                  24
    x86-64-v4-bf16  16       32           6 x 4                  24   + vdpbf16ps
    x86-64-v4-amx   16       32           6 x 4                  24   + AMX bf16 tiles
    aarch64          4       32           6 x 4                  24

(an AVX2 6 x 2 block is the classic 6x16 SGEMM kernel: 12 accumulators, two
loads of b and one broadcast of a fill 15 of the 16 ymm registers.)
x86-64-v4-amx (Sapphire Rapids and later) is x86-64-v4 plus AMX: bf16
prefill keeps bf16 tiles and runs both matmuls on AMX tiles (attn-tile
`bf16-pairs`, attn-lower-to-cpu `amx`; docs/cpu-backend.md); f32 code is
x86-64-v4's. Running it also needs the OS's permission for AMX tile data
(runtime/amx.py). x86-64-v4-bf16 (AVX-512-BF16 without AMX, or where the OS
refuses AMX: Cooper Lake, AMD Zen 4 and later) runs the same bf16 program's
matmuls as vdpbf16ps register blocks (attn-lower-to-cpu `bf16-dot`); the host
gets it only where vdpbf16ps is as fast as an FMA (AMD Zen 4 and later,
`vdpbf16ps_pays`), elsewhere it is a class to force. The
`cpu` compile option forces a class ("host" picks one): kernels for any class
compile on any host and their IR and assembly can be checked; running needs a
host with the class's features (`check_runnable`).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from .._attncc import host_cpu as _native_host_cpu
from ..runtime import amx
from ..errors import CompileError


@dataclass(frozen=True)
class CpuIsa:
    name: str                 # the `cpu` option's value
    arch: str                 # LLVM triple architecture
    vector_width: int         # f32 lanes per vector
    vector_registers: int
    micro_rows: int           # tile_matmul register block
    micro_vectors: int
    llvm_cpu: str             # target-cpu when the class is forced
    requires: tuple[str, ...]  # LLVM feature names a host needs to run it
    amx: bool = False         # bf16 matmuls on AMX tiles
    bf16_dot: bool = False    # bf16 matmuls as vdpbf16ps (AVX-512-BF16)
    llvm_features: tuple[str, ...] = ()  # added to llvm_cpu's when the class is forced

    @property
    def vector_bits(self) -> int:
        return 32 * self.vector_width

    def as_dict(self) -> dict:
        return {"isa": self.name, "vector_width": self.vector_width,
                "vector_registers": self.vector_registers,
                "micro_kernel": [self.micro_rows, self.micro_vectors],
                "bf16_matmul": "amx" if self.amx else "vdpbf16ps" if self.bf16_dot
                else "f32 fma"}

    @property
    def bf16_pairs(self) -> bool:
        """bf16 prefill keeps bf16 tiles, matmuls on pairs (attn-tile bf16-pairs)."""
        return self.amx or self.bf16_dot

    @property
    def native_bf16(self) -> bool:
        """f32 -> bf16 in one instruction (AVX-512-BF16's vcvtneps2bf16)."""
        return "avx512bf16" in self.requires


ISAS: dict[str, CpuIsa] = {
    "x86-64-v3": CpuIsa("x86-64-v3", "x86_64", 8, 16, 6, 2, "x86-64-v3", ("avx2", "fma", "f16c")),
    "x86-64-v4": CpuIsa("x86-64-v4", "x86_64", 16, 32, 6, 4, "x86-64-v4",
                        ("avx512f", "avx512bw", "avx512vl", "avx512dq")),
    # VBMI: fp8 K/V widened to bf16 by byte tables (vpermi2b, CpuBf16Dot.cpp);
    # every host of this class (AMD Zen 4 and later, vdpbf16ps_pays) has it,
    # Cooper Lake, the LLVM CPU of its other features, does not.
    "x86-64-v4-bf16": CpuIsa("x86-64-v4-bf16", "x86_64", 16, 32, 6, 4, "cooperlake",
                             ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512bf16",
                              "avx512vbmi"),
                             bf16_dot=True, llvm_features=("+avx512vbmi",)),
    "x86-64-v4-amx": CpuIsa("x86-64-v4-amx", "x86_64", 16, 32, 6, 4, "sapphirerapids",
                            ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512bf16",
                             "amx-tile", "amx-bf16"), amx=True),
    "aarch64": CpuIsa("aarch64", "aarch64", 4, 32, 6, 4, "generic", ("neon",)),
}
CPU_CHOICES = ("host",) + tuple(ISAS)


@dataclass(frozen=True)
class HostCpu:
    triple: str
    name: str
    features: frozenset[str]   # enabled LLVM features, without the '+'

    @property
    def arch(self) -> str:
        return self.triple.split("-", 1)[0]

    def describe(self) -> str:
        isa = host_isa(self)
        interesting = sorted(f for f in self.features if f.startswith(("avx", "amx", "fma", "f16c",
                                                                      "neon", "sve", "bf16")))
        return f"{self.name} ({self.triple}; class {isa.name}; {' '.join(interesting)})"


@functools.lru_cache(maxsize=1)
def host_cpu() -> HostCpu:
    """The host as LLVM's JIT targets it."""
    triple, name, feats = _native_host_cpu().split(";", 2)
    return HostCpu(triple, name, frozenset(f[1:] for f in feats.split(",") if f))


def host_isa(host: HostCpu | None = None) -> CpuIsa:
    """The widest class of the table the host can run."""
    host = host or host_cpu()
    for name in ("x86-64-v4-amx", "x86-64-v4-bf16", "x86-64-v4", "x86-64-v3", "aarch64"):
        isa = ISAS[name]
        if isa.bf16_dot and not vdpbf16ps_pays(host):
            continue
        if not missing_features(isa, host):
            return isa
    raise CompileError(f"the host CPU {host.name} ({host.triple}) has none of the ISA classes "
                       f"attncc generates code for ({', '.join(ISAS)}; x86 needs AVX2 and FMA)")


def vdpbf16ps_pays(host: HostCpu) -> bool:
    """Whether x86-64-v4-bf16 beats x86-64-v4's f32 FMAs for bf16 on `host`:
    on AMD Zen 4 and later one vdpbf16ps (two products per f32 lane) issues
    at the rate of an FMA, and bf16 prefill ran 1.6-1.8x faster than on f32
    FMAs (Zen 5, docs/benchmarks.md); on Intel's Emerald Rapids (AMX forced
    off) it ran 1.7x slower (one port for vdpbf16ps, two for FMAs), so Intel
    hosts keep AMX or f32 FMAs."""
    name = host.name
    return name.startswith("znver") and name[5:].isdigit() and int(name[5:]) >= 4


def resolve(cpu: str) -> CpuIsa:
    """The ISA class of the `cpu` option."""
    if cpu == "host":
        return host_isa()
    try:
        return ISAS[cpu]
    except KeyError:
        raise CompileError(f"unknown cpu {cpu!r}; expected one of {CPU_CHOICES}") from None


def missing_features(isa: CpuIsa, host: HostCpu | None = None) -> list[str]:
    """What the host lacks to run code of `isa` (the architecture counts as one)."""
    host = host or host_cpu()
    if host.arch != isa.arch:
        return [f"an {isa.arch} CPU (this host is {host.arch})"]
    missing = [f for f in isa.requires if f not in host.features]
    if isa.amx and not missing and host == host_cpu():
        why = amx.tile_permission()   # asked for once per process
        if why:
            missing.append(f"AMX tile data ({why})")
    return missing


def check_runnable(isa: CpuIsa) -> None:
    """CompileError, before any JIT, when this host cannot run `isa`'s code."""
    missing = missing_features(isa)
    if missing:
        host = host_cpu()
        raise CompileError(
            f"cpu={isa.name!r} kernels need {', '.join(missing)}, which this host "
            f"({host.name}) lacks; compile with stop_after='llvm' to look at the IR, or "
            f"attncc.targets.cpu.assembly(...) for its assembly")


def llvm_function_attributes(isa: CpuIsa, forced: bool) -> dict[str, object]:
    """LLVM function attributes for the kernel's functions: the legal and
    preferred vector width (LLVM's tuning for AVX-512 server parts prefers 256
    bits and would split 16-lane vectors), and, for a forced class, its target
    CPU with the wider classes' features turned off, so that a host with
    AVX-512 really runs AVX2 code for cpu='x86-64-v3'.

    `optsize`: LLVM's size-aware heuristics (mainly no loop unrolling of its
    own). attn-lower-to-cpu already emits the unrolled register blocks, so
    LLVM's unrolling of their loops only grew the code: with `optsize` the
    JIT takes half the time (0.7-1.1 s -> 0.36-0.56 s per prefill kernel on
    the AVX-512 + AMX host) and the kernels ran at the same speed in A/B runs
    (prefill fp32/bf16, contiguous and paged decode; docs/cpu-backend.md)."""
    attrs: dict[str, object] = {"vector_bits": isa.vector_bits, "optsize": True}
    if forced:
        attrs["target_cpu"] = isa.llvm_cpu
        if isa.name == "x86-64-v3":
            attrs["target_features"] = ["-avx512f"]
        elif isa.llvm_features:
            attrs["target_features"] = list(isa.llvm_features)
    return attrs


# LLVM IR passes of the CPU JIT (CompileOptions.llvm_opt; runtime/KernelJit.cpp).
# "light" cleans up the translated IR (repeated address arithmetic, constant
# folds, dead blocks) and leaves the rest to code generation: on Zen 4 the
# JIT took half the time; decode (memory-bound) ran as fast, prefill 1-2.5%
# slower than with default<O3>, so only the decode form defaults to it
# (CompileOptions.resolved; docs/cpu-backend.md "Compile time").
#
# instcombine as LLVM's default pipelines run it, without `verify-fixpoint`:
# the textual `instcombine` verifies that one iteration reached a fixpoint
# and otherwise stops the process with a fatal error (an LLVM testing aid),
# which a paged decode kernel of the AVX-512 classes hit on the AVX-512 + AMX
# host (test_llvm_opt.py::test_light_pipeline_*).
LLVM_OPT_PIPELINES = {
    "light": "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg)",
    "O1": "default<O1>",
    "O2": "default<O2>",
    "O3": "default<O3>",
}
LLVM_OPT = tuple(LLVM_OPT_PIPELINES)
# Code generation level of the JIT (llvm::CodeGenOptLevel::Aggressive, as
# MLIR's ExecutionEngine at O3): measured no slower to compile than O1/O2.
JIT_CODEGEN_LEVEL = 3


def jit_pipeline(llvm_opt: Optional[str]) -> str:
    """The PassBuilder text of `llvm_opt` (resolved CompileOptions.llvm_opt;
    None, unresolved options: MLIR's ExecutionEngine's default<O3>)."""
    return LLVM_OPT_PIPELINES[llvm_opt or "O3"]


def cache_target(isa: CpuIsa) -> str:
    """What a CPU kernel is made for, in its cache key: the ISA class and the
    host as LLVM's JIT sees it (the object code is compiled for that CPU)."""
    host = host_cpu()
    return f"{isa.name};{host.triple};{host.name};{','.join(sorted(host.features))}"


def llvm_passes(o: Mapping[str, object]) -> str:
    """Stage 'llvm': attn-lower-to-cpu for the options' ISA class, then
    upstream conversions to the LLVM dialect (resolved options: `num_threads`
    is filled in by CompileOptions.resolved).

    Threads (`cpu_threading`, set by compiler.stage_options): "omp" runs the
    grids on an OpenMP team of torch's own threads (attn-parallel-to-omp: the
    grid points split by two trailing thread arguments, the runtime calls
    the kernel from each thread of a GOMP_parallel region); "async" (no
    OpenMP runtime in the process) keeps upstream async-parallel-for, whose
    tasks run on the async runtime's pool (`num-workers` = num_threads sizes
    the split; `min-task-size=1` because one grid point is a whole query
    block). With one thread the grid stays a serial loop. The kernel gets a C
    interface (`_mlir_ciface_<name>`) for the runtime."""
    threads = int(o["num_threads"])
    isa = resolve(str(o["cpu"]))
    width = o.get("vector_width") or isa.vector_width
    parallel = ""
    if threads > 1 and o.get("cpu_threading") == "omp":
        parallel = "attn-parallel-to-omp,"
    elif threads > 1:
        parallel = (f"async-parallel-for{{async-dispatch=true num-workers={threads} "
                    "min-task-size=1},async-to-async-runtime,async-runtime-ref-counting,"
                    "async-runtime-ref-counting-opt,arith-expand,convert-async-to-llvm,")
    # arith-expand{include-bf16}: f32 <-> bf16 conversions as integer code
    # (round to nearest even, NaN kept), since LLVM lowers `fptrunc to bfloat`
    # to a call of compiler-rt's __truncsfbf2 on hosts without AVX-512-BF16,
    # which the JIT cannot resolve. f16 needs nothing: F16C (part of every
    # class of this table) and NEON convert natively. The AMX and bf16
    # classes have AVX-512-BF16: native vcvtneps2bf16 (P is rounded per KV
    # block there).
    bf16_lowering = " amx=true" if isa.amx else " bf16-dot=true" if isa.bf16_dot else ""
    vector_llvm = " enable-amx" if isa.amx else " enable-x86vector" if isa.bf16_dot else ""
    return (f"attn-lower-to-cpu{{vector-width={int(width)} micro-rows={isa.micro_rows} "
            f"micro-vectors={isa.micro_vectors} isa={isa.name}{bf16_lowering}}},canonicalize,cse,"
            "func.func(convert-linalg-to-loops,llvm-request-c-wrappers),"
            + parallel +
            "expand-strided-metadata,lower-affine,convert-scf-to-cf,"
            f"arith-expand{{include-bf16={'false' if isa.native_bf16 else 'true'}}},"
            f"convert-vector-to-llvm{{reassociate-fp-reductions=1{vector_llvm}}},"
            "finalize-memref-to-llvm,"
            "convert-math-to-llvm,convert-arith-to-llvm,convert-index-to-llvm,"
            "convert-cf-to-llvm,convert-func-to-llvm,reconcile-unrealized-casts")


# -- assembly of any class, for checks on hosts that cannot run it -----------------------------

_TRIPLES = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}


def _tool(name: str, package: str) -> str:
    import importlib

    try:
        mod = importlib.import_module(package)
        for base in mod.__path__:
            cand = Path(base) / "bin" / name
            if cand.is_file():
                return str(cand)
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise CompileError(f"{name} not found (from the {package} wheel or PATH)")
    return found


def assembly(llvm_module_text: str, isa: CpuIsa) -> str:
    """Assembly of an LLVM-dialect module (stage 'llvm') for `isa`, through
    mlir-translate, opt and llc from the wheels (O3), whatever the host."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.mlir"
        src.write_text(llvm_module_text)
        ll = subprocess.run([_tool("mlir-translate", "mlir"), "--mlir-to-llvmir", str(src)],
                            capture_output=True, text=True)
        if ll.returncode:
            raise CompileError(f"mlir-translate failed: {ll.stderr.strip()}")
        target = [f"-mtriple={_TRIPLES[isa.arch]}", f"-mcpu={isa.llvm_cpu}"]
        if isa.llvm_features:
            target.append(f"-mattr={','.join(isa.llvm_features)}")
        # opt's O3 pipeline first, as the JIT's: it also splits the async
        # runtime's coroutines, which llc alone cannot lower.
        opt = subprocess.run([_tool("opt", "llvm"), "-O3", *target, "-S", "-o", "-"],
                             input=ll.stdout, capture_output=True, text=True)
        if opt.returncode:
            raise CompileError(f"opt failed: {opt.stderr.strip()[:2000]}")
        asm = subprocess.run([_tool("llc", "llvm"), "-O3", *target, "-o", "-"],
                             input=opt.stdout, capture_output=True, text=True)
        if asm.returncode:
            raise CompileError(f"llc failed: {asm.stderr.strip()[:2000]}")
        return asm.stdout

"""Compile options: validated once, hashed into cache keys."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping, Optional

import torch

from .errors import AttnccError
from .targets import kind as target_kind
from .targets.cpu import CPU_CHOICES, LLVM_OPT


class OptionError(AttnccError, ValueError):
    """A compile option is out of range or unknown."""


# Triton's names (tl.dot's input_precision).
INPUT_PRECISIONS = ("tf32", "tf32x3", "ieee")


# The largest CPU query block that reads K/V in place by default (kv_in_place):
# below it a packed K/V block serves too few query rows to pay for its copy.
KV_IN_PLACE_MAX_ROWS = 16
# GPU KV block for f32 (TF32) inputs with head dim >= 128: at 64 keys the
# kernel needs more than 255 registers and spills (40-168 bytes, ptxas 13.0);
# at 32 keys it fits (203-228 registers, sm_80 and sm_90a, tf32 and tf32x3).
GPU_F32_WIDE_HEAD_BLOCK_N = 32

# CPU: the K/V work (K elements read x max(1, block_m / 4), attn-tile's
# taskWork) below which a call runs on one thread, and the work of one task
# above it: attn-tile min-task-work, and the team size the runtime asks of
# torch's OpenMP pool (frontend/split_kv.team_size). 2^15 elements is ~6 us
# of decode on one core (AMD Zen 4), a few times what a region on torch's
# warm team costs; 2^17 kept calls of up to 25 us on one thread (measured
# there: B1 Hq8/Hkv2 D64 decode at 1024 keys 49 -> 34 us, Hq32/Hkv8 D128 at
# 128 keys 48 -> 34 us; docs/cpu-backend.md "Threads").
CPU_MIN_TASK_WORK = 1 << 15
# The same for kernels on the async runtime's pool (no OpenMP runtime in the
# process), whose idle workers sleep: a 2-task grid cost ~150 us more there.
CPU_MIN_TASK_WORK_ASYNC = 1 << 17

_FROM_KWARGS: dict = {}   # CompileOptions.cached


def _torch_threads() -> int:
    return max(1, torch.get_num_threads())


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _power_of_two(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class CompileOptions:
    """Options of the tiled, pipelined program.

    block_m: query rows per block (power of two; CPU 1..256, GPU 16..256;
        None: the target's default, see `resolved`).
    block_n: keys per KV block (power of two, 16..256; None: the target's default).
    num_stages: K/V buffers in flight in the software pipeline (1..4; 1 = no pipelining).
    unroll: unroll factor of the KV loop (1, 2, 4 or 8).
    num_threads: CPU threads for the grid (None: all cores torch uses).
    num_warps: GPU warps per thread block (1, 2, 4, 8 or 16; each warp owns 16
        query rows, so block_m must be 16 * num_warps; None: block_m // 16).
    mma: GPU tensor-core instructions: "auto" (wgmma on sm_90a when num_warps
        is a multiple of 4, else mma.sync), "wgmma" (sm_90a only) or
        "mma_sync". Ignored on the CPU.
    tma: with wgmma, load the Q/K/V tiles with TMA on mbarriers (True) or
        with cp.async (False). Ignored elsewhere.
    input_precision: how f32 inputs are multiplied (Triton's `input_precision`;
        f16/bf16 inputs ignore it). GPU: "tf32" (the default: tensor cores
        with operands rounded to TF32, 10 mantissa bits) or "tf32x3" (each
        operand split into two TF32 parts, three MMAs per product: about
        fp32 accuracy for 3x the tensor-core work); "ieee" (exact fp32 FMA)
        is not implemented on the GPU and is refused there. CPU: every value
        is accepted and the CPU computes in fp32 (FMA) regardless, i.e. at
        least as accurately as asked; `resolved` records "ieee". None: the
        target's default.
    kv_in_place: read K and V where they are stored (Q.K^T as dot products
        over K's rows, P.V on V's rows) instead of copying each KV block
        into packed f32 tile buffers (attn-tile's kv-in-place form). CPU
        only; None: on when the query block has at most
        KV_IN_PLACE_MAX_ROWS rows (decode, where a packed K/V block would
        serve only a few query rows), off otherwise.
    cpu: the CPU ISA class code is generated for: "host" (the class of the
        CPU LLVM's JIT targets), or one of attncc.targets.cpu.ISAS
        ("x86-64-v3": AVX2/FMA, "x86-64-v4": AVX-512, "x86-64-v4-amx": AVX-512
        with bf16 on AMX, "x86-64-v4-bf16": bf16 on vdpbf16ps, "aarch64": NEON) to
        force it; kernels of a class the host cannot run compile but do not
        run. Ignored by the GPU targets. The default is "host", or the
        environment variable ATTNCC_CPU where it is set (read when the
        options are made): with ATTNCC_CPU=x86-64-v3 a whole program or test
        suite runs AVX2 code on an AVX-512 host (how CI checks the AVX2
        kernels there, .ci/run).
    llvm_opt: the LLVM IR passes the CPU JIT runs on a kernel before code
        generation (always at LLVM's highest level): "light" (SROA, early
        CSE, instcombine, simplifycfg) or LLVM's default pipelines "O1", "O2",
        "O3" (what MLIR's ExecutionEngine runs). None: "light" for the decode
        form (kv_in_place: bound by memory, and compiled inside generate
        loops; half the JIT time), "O3" otherwise (prefill ran 1-2.5% faster
        with it; docs/cpu-backend.md "Compile time"). Ignored by the GPU
        targets.
    """

    block_m: Optional[int] = None
    block_n: Optional[int] = None
    num_stages: int = 2
    unroll: int = 1
    num_threads: Optional[int] = None
    num_warps: Optional[int] = None
    mma: str = "auto"
    tma: bool = True
    cpu: str = field(default_factory=lambda: os.environ.get("ATTNCC_CPU") or "host")
    input_precision: Optional[str] = None
    kv_in_place: Optional[bool] = None
    llvm_opt: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n"):
            v = getattr(self, name)
            if v is None:
                continue
            lo = 1 if name == "block_m" else 16
            if not isinstance(v, int) or isinstance(v, bool) or not _power_of_two(v) or not lo <= v <= 256:
                raise OptionError(f"{name} must be a power of two in [{lo}, 256], got {v!r}")
        if not _is_int(self.num_stages) or not 1 <= self.num_stages <= 4:
            raise OptionError(f"num_stages must be an integer in [1, 4], got {self.num_stages!r}")
        if not _is_int(self.unroll) or self.unroll not in (1, 2, 4, 8):
            raise OptionError(f"unroll must be 1, 2, 4 or 8, got {self.unroll!r}")
        if self.num_threads is not None and (not _is_int(self.num_threads)
                                             or self.num_threads < 1):
            raise OptionError(f"num_threads must be a positive integer, got {self.num_threads!r}")
        if self.num_warps is not None:
            if (not isinstance(self.num_warps, int) or isinstance(self.num_warps, bool)
                    or self.num_warps not in (1, 2, 4, 8, 16)):
                raise OptionError(f"num_warps must be 1, 2, 4, 8 or 16, got {self.num_warps!r}")
            if self.block_m is not None and self.block_m != 16 * self.num_warps:
                raise OptionError(f"num_warps={self.num_warps} needs block_m={16 * self.num_warps} "
                                  f"(each warp owns 16 query rows), got block_m={self.block_m}")

        if self.mma not in ("auto", "wgmma", "mma_sync"):
            raise OptionError(f"mma must be 'auto', 'wgmma' or 'mma_sync', got {self.mma!r}")
        if not isinstance(self.tma, bool):
            raise OptionError(f"tma must be True or False, got {self.tma!r}")
        if self.input_precision is not None and self.input_precision not in INPUT_PRECISIONS:
            raise OptionError(f"input_precision must be one of {INPUT_PRECISIONS} (or None), "
                              f"got {self.input_precision!r}")
        if self.kv_in_place is not None and not isinstance(self.kv_in_place, bool):
            raise OptionError(f"kv_in_place must be True, False or None, got {self.kv_in_place!r}")
        if self.llvm_opt is not None and self.llvm_opt not in LLVM_OPT:
            raise OptionError(f"llvm_opt must be one of {LLVM_OPT} (or None), got "
                              f"{self.llvm_opt!r}")
        if self.cpu not in CPU_CHOICES:
            where = " (from the environment variable ATTNCC_CPU)" \
                if self.cpu == os.environ.get("ATTNCC_CPU") else ""
            raise OptionError(f"cpu must be one of {CPU_CHOICES}, got {self.cpu!r}{where}")

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> "CompileOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise OptionError(f"unknown option(s) {unknown}; expected some of {sorted(known)}")
        return cls(**kwargs)

    @classmethod
    def cached(cls, kwargs: Mapping[str, Any]) -> "CompileOptions":
        """`from_kwargs`, made once per distinct set of keyword options (the
        attention APIs are called per layer per step; making and checking the
        options each time took ~20 us). Unhashable values are not cached. The
        key holds each value's type: True == 1 and 2.0 == 2 as dict keys, but
        num_stages=True must be refused even after num_stages=1 was cached.
        ATTNCC_CPU (the cpu default) is part of the key: options made after it
        changes follow it."""
        try:
            key = (tuple(sorted((k, type(v), v) for k, v in kwargs.items())),
                   os.environ.get("ATTNCC_CPU"))
            hash(key)
        except TypeError:
            return cls.from_kwargs(kwargs)
        opts = _FROM_KWARGS.get(key)
        if opts is None:
            opts = cls.from_kwargs(kwargs)
            if len(_FROM_KWARGS) < 256:
                _FROM_KWARGS[key] = opts
        return opts

    def resolved(self, target: str, query_len: Optional[int], elt: Optional[str] = None,
                 head_dim: Optional[int] = None) -> "CompileOptions":
        """These options with every default filled in for `target` (a target of
        attncc.targets.TARGETS, or its kind "cpu" / "gpu"): the one place a
        default lives; the pipeline's passes read the result.

        CPU: 256 query rows per block (each K/V tile copied into a packed
        buffer then serves 256 rows; measured fastest on every row of
        docs/benchmarks.md), fewer for short queries so that decode does not
        compute a 256-row tile; 64 keys per block; threads: torch's intra-op
        thread count now (`torch.set_num_threads` is honoured); input_precision
        "ieee" (what the CPU computes whatever was asked). GPU: 16 rows per
        warp (num_warps given) or 64, and 64 keys (32 for f32 inputs, `elt`,
        with `head_dim` >= 128: their 64 x 64 kernel needs more than 255
        registers and spills, 64 x 32 fits, docs/gpu.md); num_warps =
        block_m / 16; input_precision "tf32" (Triton's default; "ieee" is
        refused)."""
        kind = target if target in ("cpu", "gpu") else target_kind(target)
        bm, bn = self.block_m, self.block_n
        threads, warps = self.num_threads, self.num_warps
        precision = self.input_precision
        in_place = self.kv_in_place
        llvm_opt = self.llvm_opt
        if kind == "cpu":
            if threads is None:
                threads = _torch_threads()
            if bm is None:
                bm = self.query_block(target, query_len)
            precision = "ieee"
            if in_place is None:
                in_place = bm <= KV_IN_PLACE_MAX_ROWS
            if llvm_opt is None:
                llvm_opt = "light" if in_place else "O3"
        else:
            if bm is None:
                bm = self.query_block(target, query_len)
            if bm < 16:
                raise OptionError(f"block_m must be at least 16 on the GPU targets (each warp "
                                  f"owns 16 query rows), got {bm}")
            if in_place:
                raise OptionError("kv_in_place=True is a CPU form (K/V read in place by the "
                                  "vector code); the GPU targets copy K/V tiles to shared memory")
            in_place = False
            if warps is None:
                warps = bm // 16
            if precision == "ieee":
                raise OptionError("input_precision='ieee' (exact fp32 FMA) is not implemented on "
                                  "the GPU targets; use 'tf32x3' (3xTF32 on tensor cores, about "
                                  "fp32 accuracy) or 'tf32'")
            if precision is None:
                precision = "tf32"
            if bn is None and elt == "f32" and head_dim is not None and head_dim >= 128:
                bn = GPU_F32_WIDE_HEAD_BLOCK_N
        return replace(self, block_m=bm, block_n=64 if bn is None else bn, num_threads=threads,
                       num_warps=warps, input_precision=precision, kv_in_place=in_place,
                       llvm_opt=llvm_opt)

    def query_block(self, target: str, query_len: Optional[int]) -> int:
        """The query rows per block `resolved` gives for a query of
        `query_len` rows (None: unknown). It is constant over a bucket of
        lengths (CPU: the next power of two in [1, 256]; GPU: one bucket), so
        kernels compiled for a dynamic query length are keyed by it: a decode
        step (1 row) and a prefill get their own kernel, not one per length."""
        if self.block_m is not None:
            return self.block_m
        kind = target if target in ("cpu", "gpu") else target_kind(target)
        if kind == "cpu":
            if query_len is None:
                return 256
            return min(256, 1 << max(0, query_len - 1).bit_length())
        return 16 * self.num_warps if self.num_warps else 64

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

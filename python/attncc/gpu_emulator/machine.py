"""The emulator's machine model: value types, memory spaces (global, the
block's dynamic shared memory with its per-element race bookkeeping, private
per-thread buffers) and the per-block execution state.

Values are numpy arrays with one row per thread of the block (`State.T`);
bf16 is held as float32 rounded to bf16. Shared memory is modeled in 2-byte
units (f16 / bf16 tiles); an f32 element takes two units and lives in the
first (f32 views have their strides and offsets in units: `MemRef.unit`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DYN = -9223372036854775808  # ShapedType::kDynamic


class SimError(AssertionError):
    pass


# --------------------------------------------------------------------------- types

def round_bf16(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    lsb = (bits >> 16) & 1
    bits = ((bits + 0x7FFF + lsb) & 0xFFFF0000).astype(np.uint32)
    return bits.view(np.float32)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    return (round_bf16(x).view(np.uint32) >> 16).astype(np.uint32)


def bits_bf16(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


_VEC = re.compile(r"vector<([0-9x]+)x([a-z0-9]+)>")


@dataclass(frozen=True)
class Ty:
    kind: str                    # "int", "bool", "f32", "f16", "bf16", "memref", "other"
    shape: tuple[int, ...] = ()  # vector shape


def parse_type(t: str) -> Ty:
    m = _VEC.fullmatch(t)
    if m:
        base = parse_type(m.group(2))
        return Ty(base.kind, tuple(int(d) for d in m.group(1).split("x")))
    if t in ("index", "i64", "i32", "i16", "i8"):
        return Ty("int")
    if t == "i1":
        return Ty("bool")
    if t in ("f32", "f16", "bf16"):
        return Ty(t)
    if t.startswith("memref<"):
        return Ty("memref")
    return Ty("other")


def np_dtype(kind: str):
    return {"int": np.int64, "bool": np.bool_, "f32": np.float32, "f16": np.float16,
            "bf16": np.float32}[kind]


def memref_elt(t: str) -> str:
    m = re.match(r"memref<((?:[0-9?]+x)*)([a-z0-9]+)", t)
    return m.group(2)


# --------------------------------------------------------------------------- memory

@dataclass
class Shared:
    """Dynamic shared memory in 2-byte units (f16/bf16 tiles)."""
    data: np.ndarray
    w_epoch: np.ndarray
    w_thread: np.ndarray
    r_epoch: np.ndarray
    r_thread: np.ndarray
    inflight: np.ndarray
    fenced: np.ndarray = None      # no generic-proxy write since a fence.proxy.async
    fence_epoch: np.ndarray = None  # barrier epoch of that fence
    async_r: np.ndarray = None     # unretired wgmma reads
    base: int = 0                  # byte address of element 0 in the shared window
    tma_inflight: np.ndarray = None  # a TMA load is writing it (not landed)
    tma_src: np.ndarray = None     # landed TMA data: index into State.completions, else -1

    @staticmethod
    def make(nbytes: int, base: int = 0) -> "Shared":
        n = max(1, nbytes // 2)
        return Shared(np.zeros(n, np.float32), np.full(n, -1, np.int64), np.full(n, -1, np.int64),
                      np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n, bool),
                      np.ones(n, bool), np.full(n, -1, np.int64), np.zeros(n, np.int32), base,
                      np.zeros(n, bool), np.full(n, -1, np.int64))


@dataclass
class MemRef:
    buf: Any                 # np.ndarray (global: flat; private: [T, n]) or Shared
    space: str               # "global", "shared", "private"
    elt: str                 # "f32", "f16", "bf16", "int", ...
    offset: int
    sizes: list[int]
    strides: list[int]
    ptr_elems: int = 0       # part of `offset` held by the aligned pointer (memref.view's shift)
    stamps: Any = None       # private memrefs: def time of each element (wgmma fence checks)
    unit: int = 1            # shared memrefs: 2-byte units per element (2 for f32)

    def linear(self, idx: list[np.ndarray]) -> np.ndarray:
        lin = np.int64(self.offset)
        for i, s in zip(idx, self.strides):
            lin = lin + np.asarray(i, np.int64) * s
        return lin


def identity_strides(sizes: list[int]) -> list[int]:
    strides, acc = [], 1
    for s in reversed(sizes):
        strides.append(acc)
        acc *= s
    return list(reversed(strides))


def memref_shape(t: str) -> list[int]:
    m = re.match(r"memref<((?:[0-9?]+x)*)", t)
    dims = [d for d in m.group(1).split("x") if d]
    return [DYN if d == "?" else int(d) for d in dims]


# --------------------------------------------------------------------------- state

@dataclass
class State:
    T: int
    env: dict
    mask: np.ndarray
    shared: Shared | None = None
    epoch: int = 0
    pending: list = field(default_factory=list)   # copies not yet committed
    groups: list = field(default_factory=list)    # committed, not yet retired
    block: tuple[int, int, int] = (0, 0, 0)
    grid: tuple[int, int, int] = (1, 1, 1)
    stats: dict = field(default_factory=dict)
    # wgmma
    wg_pending: list = field(default_factory=list)  # issued, not committed
    wg_groups: list = field(default_factory=list)   # committed, not retired
    clock: int = 0                                  # def times of values (stamps)
    stamp: dict = field(default_factory=dict)       # slot -> def time
    wg_fence: int = -1                              # clock of the last wgmma.fence
    # TMA / mbarriers
    mbars: dict = field(default_factory=dict)       # mbarrier.create slot -> MBarrierGroup
    completions: list = field(default_factory=list)  # (group, barrier, phase) of landed TMA data
    tmap_fenced: dict = field(default_factory=dict)  # id(TensorMap) -> threads that fenced it


def uniform(x, st: State, what: str) -> int:
    a = np.asarray(x)
    if a.ndim == 0:
        return int(a)
    act = a[st.mask] if a.shape[0] == st.T else a
    if act.size == 0:
        return int(a.flat[0])
    if not np.all(act == act.flat[0]):
        raise SimError(f"{what}: value differs across threads but must be uniform")
    return int(act.flat[0])


def struct_len(t: str) -> int | None:
    """Number of fields of an !llvm.struct<(f32, ...)> type string, else None."""
    m = re.fullmatch(r"!llvm\.struct<\((.*)\)>", t)
    if not m:
        return None
    fields = [f.strip() for f in m.group(1).split(",")]
    if any(f != "f32" for f in fields):
        raise SimError(f"only structs of f32 are modeled: {t}")
    return len(fields)

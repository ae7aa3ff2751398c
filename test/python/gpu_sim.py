"""A SIMT emulator for the GPU kernels attncc generates (the "gpu" stage:
host function + outlined gpu.func with gpu / nvgpu / nvvm / arith / vector /
memref / scf ops), so that their numerics can be checked on a machine without
a GPU.

All threads of a block run in lockstep over numpy arrays with one row per
thread (warp-collective ops see the whole warp); divergent scf.if runs both
sides under an active-thread mask. The meaning of ldmatrix and mma.sync comes
from the PTX ISA tables in ptx_isa.py (not from attncc's C++).

Shared memory is checked for races, the way the hardware could expose them:
  * cp.async data lands only when a `cp.async.wait_group` retires its group
    (reading a destination before that is an error: "in flight");
  * a thread reading shared data written by another thread (or a cp.async it
    issued) since the last barrier is a read-after-write race;
  * a cp.async issued to a location another thread read since the last
    barrier is a write-after-read race.

sm_90a warpgroup MMA (wgmma, PTX ISA "Asynchronous Warpgroup Level Matrix
Multiply-Accumulate"; layouts and descriptors from ptx_isa.py) is modeled as
asynchronous:
  * the registers of a wgmma.mma_async result (`Pending`) may be used by
    other ops only after a wgmma.wait_group retired its wgmma-group
    (they may flow into another wgmma of the same shape as its accumulator);
  * accumulator and A-fragment registers written by a non-wgmma op need a
    wgmma.fence between that write and the wgmma (data-movement ops such as
    insertvalue / extractvalue / private loads and stores keep the time of
    the op that computed the value);
  * wgmma reads shared memory through the async proxy: data written by
    cp.async (generic proxy) needs, after it landed, a fence.proxy.async by
    the writing thread and then a barrier before a wgmma reads it; shared
    data an unretired wgmma reads must not be overwritten, and after its
    wait_group only after a barrier (each warp's share may finish on its own).
Shared memory starts at byte address `Shared.base` (what
memref.extract_aligned_pointer_as_index of gpu.dynamic_shared_memory returns;
0 unless Program(smem_base=...)); wgmma descriptors and swizzles use these
absolute addresses.

sm_90a TMA loads on mbarriers (PTX ISA "cp.async.bulk.tensor", "mbarrier";
tensor maps per cuTensorMapEncodeTiled; the box / out-of-bound / swizzle
math is ptx_isa.py's):
  * nvgpu.tma.create.descriptor in the host function makes a `TensorMap`
    (the global tensor, its dims and strides, the box, swizzle, oob fill);
    casts to / from !llvm.ptr pass it through to the kernel, which checks it
    against the descriptor type it expects. The map lives in global memory,
    copied there from the host (MLIR's mgpuTensorMapEncodeTiledMemref,
    attncc's runtime), so a thread must fence it (nvgpu.tma.fence.descriptor:
    fence.proxy.tensormap::generic.acquire) before its TMA loads use it
    (waivable: "tensormap-fence");
  * mbarriers live in static shared memory, per block (`MBarrierGroup`):
    init(count) sets pending arrivals = count, tx-count 0, phase 0;
    arrive.expect_tx(bytes) adds bytes to the tx-count, then arrives; a phase
    completes when pending arrivals and tx-count are both 0 (the parity flips,
    pending arrivals reset to count);
  * a TMA load reads its box at issue (zero fill out of bounds) and lands it
    (complete-tx of its bytes) only when some thread waits on its mbarrier
    and the wait's phase is not complete yet: try_wait.parity(P) returns at
    once when the current phase's parity differs from P (the phase with
    parity P completed), else lands the barrier's loads in issue order until
    the phase completes; if it cannot complete that way (missing arrive or
    expect_tx, too many bytes expected) no other thread can make it complete
    in lockstep: "deadlock". Loads the completing phase does not cover stay
    in flight; reading their destination is an error ("in flight"), and so is
    a kernel that exits with loads in flight;
  * TMA-written data is visible to the threads that observed the completion
    of its phase (their wait), or to all threads after a later gpu.barrier;
    wgmma / ldmatrix / memref.load reads by other threads are errors;
  * mbarrier.init must be made visible by a gpu.barrier before other threads
    use the barrier, and to the async proxy (the TMA's complete-tx) by a
    fence.proxy.async / fence.mbarrier_init of the initializing thread
    (waivable: "mbarrier-init-fence"); an arrive or TMA load toward phase P must be ordered (by
    a gpu.barrier) after the other threads' waits on phase P - 1, else the
    phase could complete before a slow thread waits and that thread would
    wait, with the same parity, for phase P + 1 (parity aliasing); more
    arrivals than the init count in one phase are an error;
  * a TMA load into shared memory any thread (or a wgmma) read since the last
    barrier (write-after-read), that an unretired wgmma reads, that another
    copy is still writing, or whose last generic-proxy write was not followed
    by fence.proxy.async is an error; its destination must be aligned as its
    swizzle mode requires (1024 bytes for 128-byte swizzle) in absolute
    shared addresses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from mlir import ir

import ptx_isa as isa

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


# --------------------------------------------------------------------------- wgmma values

@dataclass(eq=False)
class WgToken:
    """One executed wgmma.mma_async (all warpgroups of the block, in lockstep)."""
    n: int                                     # the N of m64nNk16
    reads: list = field(default_factory=list)  # (warpgroup, shared element indices)
    retired: bool = False
    clock: int = -1                            # State.clock at retirement


class Pending:
    """One f32 register (all threads) of a wgmma.mma_async result. Until a
    wgmma.wait_group retires its group, any use other than flowing into a
    wgmma of the same shape (or through scf / extractvalue / insertvalue)
    raises SimError; afterwards it behaves like the numpy array it holds."""
    __slots__ = ("val", "tok")

    def __init__(self, val: np.ndarray, tok: WgToken):
        self.val = val
        self.tok = tok

    def get(self) -> np.ndarray:
        if not self.tok.retired:
            raise SimError("reads the result of a wgmma.mma_async before a wgmma.wait_group "
                           "retired it (missing commit_group / wait_group)")
        return self.val

    def __array__(self, dtype=None, copy=None):
        v = self.get()
        return v if dtype is None else v.astype(dtype)

    def __getattr__(self, name):
        return getattr(self.get(), name)


def _forward(name):
    def f(self, *args):
        return getattr(self.get(), name)(*args)
    f.__name__ = name
    return f


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor",
           "lshift", "rshift"):
    for _p in ("__%s__", "__r%s__"):
        setattr(Pending, _p % _n, _forward(_p % _n))
for _n in ("__neg__", "__pos__", "__abs__", "__invert__", "__lt__", "__le__", "__gt__", "__ge__",
           "__eq__", "__ne__", "__getitem__", "__len__", "__float__", "__int__", "__bool__",
           "__iter__"):
    setattr(Pending, _n, _forward(_n))
Pending.__hash__ = None


def _struct_len(t: str) -> int | None:
    """Number of fields of an !llvm.struct<(f32, ...)> type string, else None."""
    m = re.fullmatch(r"!llvm\.struct<\((.*)\)>", t)
    if not m:
        return None
    fields = [f.strip() for f in m.group(1).split(",")]
    if any(f != "f32" for f in fields):
        raise SimError(f"only structs of f32 are modeled: {t}")
    return len(fields)


def _int_bits(t: str) -> int:
    if t == "index":
        return 64
    m = re.fullmatch(r"i(\d+)", t)
    if not m:
        raise SimError(f"integer type expected, got {t}")
    return int(m.group(1))


def _unsigned(x: np.ndarray, bits: int) -> np.ndarray:
    return np.asarray(x, np.int64).astype(np.uint64) & np.uint64((1 << bits) - 1)


def _from_unsigned(u: np.ndarray, bits: int) -> np.ndarray:
    """Back to the emulator's int64 values: i<64 stay non-negative, i64/index
    wrap to two's complement."""
    u = np.asarray(u, np.uint64) & np.uint64((1 << bits) - 1)
    return u.astype(np.int64)


# Ops whose emulation only moves data (no instruction computes a new value on
# the GPU): the def time of their results is that of their operands.
_MOVES = {"llvm.insertvalue", "llvm.extractvalue", "vector.extract", "vector.insert",
          "vector.from_elements", "vector.to_elements", "vector.bitcast", "vector.shape_cast",
          "vector.broadcast", "arith.bitcast", "builtin.unrealized_conversion_cast"}
_NO_DEF = {"arith.constant", "llvm.mlir.constant", "llvm.mlir.undef", "nvvm.wgmma.mma_async",
           "llvm.inline_asm"}

_WGMMA_ASM = re.compile(
    r"\s*wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k16\.f32\.(f16|bf16)\.(f16|bf16)\s+"
    r"\{([^}]*)\}\s*,\s*\{([^}]*)\}\s*,\s*\$(\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)"
    r"\s*,\s*(-?\d+)\s*;?\s*")


def _asm_refs(text: str) -> list[int]:
    refs = [r.strip() for r in text.split(",")]
    if not all(re.fullmatch(r"\$\d+", r) for r in refs):
        raise SimError(f"inline asm operand list {text!r} not modeled")
    return [int(r[1:]) for r in refs]


def _walk_names(op, acc: set):
    acc.add(op.name)
    for r in op.regions:
        for b in r.blocks:
            for o in b.operations:
                _walk_names(o.operation, acc)
    return acc


# --------------------------------------------------------------------------- TMA values

_TMAP_TYPE = re.compile(r"tensor = memref<([0-9x]+)x(f16|bf16|f32)[,>].*swizzle = (\w+), "
                        r"l2promo = (\w+), oob = (\w+), interleave = (\w+)")


def parse_tensormap_type(t: str) -> dict:
    """Fields of an !nvgpu.tensormap.descriptor<...> type string."""
    m = _TMAP_TYPE.search(t)
    if not m or "tensormap.descriptor" not in t:
        raise SimError(f"not a tensor map descriptor type: {t}")
    box, elt, swizzle, l2, oob, interleave = m.groups()
    return dict(box=[int(d) for d in box.split("x")], elt=elt, swizzle=swizzle, l2promo=l2,
                oob=oob, interleave=interleave)


@dataclass(eq=False)
class TensorMap:
    """What cuTensorMapEncodeTiled encodes for one global tensor (made by
    nvgpu.tma.create.descriptor in the host function)."""
    buf: np.ndarray     # the flat global buffer
    offset: int         # element offset of the tensor's first element in buf
    elt: str
    enc: dict           # ptx_isa.encode_tensor_map: dims / strides / box innermost first
    kind: dict          # parse_tensormap_type of the descriptor type
    oob: str


@dataclass(eq=False)
class MBarrierGroup:
    """The mbarrier objects of one nvgpu.mbarrier.create in one block (static
    shared memory): per barrier the expected arrival count, pending arrivals,
    tx-count, number of completed phases (the current phase's parity is its
    low bit), the TMA loads that have not landed, and per thread the number
    of completed phases the thread has observed."""
    n: int
    T: int
    count: np.ndarray = None
    pending: np.ndarray = None
    tx: np.ndarray = None
    phase: np.ndarray = None
    inited: np.ndarray = None
    init_epoch: np.ndarray = None
    init_thread: np.ndarray = None
    loads: list = None
    observed: np.ndarray = None
    wait_epoch: np.ndarray = None    # [n, T] barrier epoch of each thread's last wait
    init_fenced: np.ndarray = None   # a proxy fence by the init thread followed mbarrier.init
    arrived: np.ndarray = None       # [n, T] phase of each thread's last arrival

    def __post_init__(self):
        n = self.n
        self.count = np.zeros(n, np.int64)
        self.pending = np.zeros(n, np.int64)
        self.tx = np.zeros(n, np.int64)
        self.phase = np.zeros(n, np.int64)
        self.inited = np.zeros(n, bool)
        self.init_epoch = np.full(n, -1, np.int64)
        self.init_thread = np.full(n, -1, np.int64)
        self.loads = [[] for _ in range(n)]
        self.observed = np.zeros((n, self.T), np.int64)
        self.wait_epoch = np.full((n, self.T), -1, np.int64)
        self.arrived = np.full((n, self.T), -1, np.int64)
        self.init_fenced = np.zeros(n, bool)

    def state(self, b: int) -> str:
        return (f"barrier {b}: phase {int(self.phase[b])} (parity {int(self.phase[b]) & 1}), "
                f"pending arrivals {int(self.pending[b])} of {int(self.count[b])}, "
                f"tx-count {int(self.tx[b])}, {len(self.loads[b])} TMA load(s) not landed")


TX_LIMIT = (1 << 20) - 1   # PTX ISA: tx-count range [-(2^20 - 1), 2^20 - 1]


# --------------------------------------------------------------------------- compiler

class Program:
    """Compiles the ops of a module into closures once; run() executes."""

    # Checks a test may waive while a known kernel bug is open (by name).
    WAIVABLE = frozenset({"wgmma-a-fence", "wgmma-acc-fence", "mbarrier-init-fence",
                          "tensormap-fence"})

    def __init__(self, module: ir.Module, smem_base: int = 0, waive=()):
        self.module = module  # keeps the ops alive
        self.smem_base = smem_base
        self.waive = frozenset(waive)
        if not self.waive <= self.WAIVABLE:
            raise ValueError(f"unknown checks {sorted(self.waive - self.WAIVABLE)}")
        names = _walk_names(module.operation, set())
        # Def-time stamps of values, for the wgmma.fence checks.
        self.track = any(n.startswith("nvvm.wgmma") or n == "llvm.inline_asm" for n in names)
        self.slots: dict[Any, int] = {}
        self.funcs: dict[str, Any] = {}
        self.kernels: dict[str, Any] = {}
        for op in module.body.operations:
            o = op.operation
            if o.name == "func.func":
                self.funcs[ir.StringAttr(o.attributes["sym_name"]).value] = o
            elif o.name == "gpu.module":
                mod = ir.StringAttr(o.attributes["sym_name"]).value
                for k in o.regions[0].blocks[0].operations:
                    k = k.operation
                    if k.name == "gpu.func":
                        name = ir.StringAttr(k.attributes["sym_name"]).value
                        self.kernels[f"{mod}::{name}"] = (k, self.compile_block(k.regions[0].blocks[0]))
        self.host = {n: self.compile_block(f.regions[0].blocks[0]) for n, f in self.funcs.items()}

    def slot(self, v) -> int:
        s = self.slots.get(v)
        if s is None:
            s = self.slots[v] = len(self.slots)
        return s

    def compile_block(self, block) -> list[Callable]:
        return [self.compile_op(op.operation) for op in block.operations]

    # ---- helpers
    def ins(self, o):
        return [self.slot(v) for v in o.operands]

    def outs(self, o):
        return [self.slot(r) for r in o.results]

    def compile_op(self, o) -> Callable:
        name = o.name
        fn = getattr(self, "op_" + name.replace(".", "_"), None)
        if fn is None:
            raise SimError(f"the emulator does not know {name}")
        run = fn(o)
        if self.track:
            run = self._stamped(o, run)
        return run

    def _stamped(self, o, run):
        """Records when the values an op defines were computed (st.stamp),
        for the wgmma.fence checks; see _MOVES."""
        name = o.name
        outs = self.outs(o)
        if name in ("scf.for", "scf.if", "scf.yield") or name.startswith("nvvm.wgmma"):
            return run  # handled by the op itself
        if name == "memref.store":
            v, m, *idx = self.ins(o)

            def store(st):
                run(st)
                mr = st.env[m]
                if mr.stamps is not None:
                    lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))[st.mask]
                    mr.stamps[np.unique(lin)] = st.stamp.get(v, -1)
            return store
        if not outs:
            return run
        if name in _NO_DEF:
            def nodef(st):
                run(st)
                for x in outs:
                    st.stamp[x] = -1
            return nodef
        if name in _MOVES:
            srcs = self.ins(o)

            def move(st):
                run(st)
                t = max([st.stamp.get(i, -1) for i in srcs], default=-1)
                for x in outs:
                    st.stamp[x] = t
            return move
        if name == "memref.load":
            m, *idx = self.ins(o)

            def load(st):
                run(st)
                mr = st.env[m]
                if mr.stamps is not None:
                    lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))[st.mask]
                    st.stamp[outs[0]] = int(mr.stamps[np.unique(lin)].max()) if lin.size else -1
                else:
                    st.clock += 1
                    st.stamp[outs[0]] = st.clock
            return load

        def compute(st):
            run(st)
            st.clock += 1
            for x in outs:
                st.stamp[x] = st.clock
        return compute

    # ---- arith
    def op_arith_constant(self, o):
        out = self.slots_out1(o)
        attr = o.attributes["value"]
        ty = parse_type(str(o.results[0].type))
        if ty.shape:
            dense = ir.DenseElementsAttr(attr)
            if not dense.is_splat:
                raise SimError("non-splat vector constants are not supported")
            sv = dense.get_splat_value()
            val = float(ir.FloatAttr(sv).value) if ty.kind in ("f32", "f16", "bf16") else int(ir.IntegerAttr(sv).value)
            const = np.full(ty.shape, val, dtype=np_dtype(ty.kind))
        elif ty.kind in ("f32", "f16", "bf16"):
            const = np.dtype(np_dtype(ty.kind)).type(ir.FloatAttr(attr).value)
        elif ty.kind == "bool":
            const = np.bool_(ir.BoolAttr(attr).value) if isinstance(attr, ir.BoolAttr) else np.bool_(ir.IntegerAttr(attr).value)
        else:
            const = np.int64(ir.IntegerAttr(attr).value)

        def run(st):
            if ty.shape:
                st.env[out] = np.broadcast_to(const, (st.T,) + ty.shape)
            else:
                st.env[out] = np.full(st.T, const)
        return run

    def slots_out1(self, o):
        return self.slot(o.results[0])

    def _binary(self, o, f):
        a, b = self.ins(o)
        out = self.slots_out1(o)

        def run(st):
            st.env[out] = f(st.env[a], st.env[b])
        return run

    def op_arith_addi(self, o): return self._binary(o, lambda x, y: x + y)
    def op_arith_subi(self, o): return self._binary(o, lambda x, y: x - y)
    def op_arith_muli(self, o): return self._binary(o, lambda x, y: x * y)
    def op_arith_divui(self, o): return self._binary(o, lambda x, y: x // y)
    def op_arith_remui(self, o): return self._binary(o, lambda x, y: x % y)
    def op_arith_divsi(self, o): return self._binary(o, lambda x, y: np.trunc(x / y).astype(np.int64))
    def op_arith_remsi(self, o): return self._binary(o, lambda x, y: np.fmod(x, y))
    def op_arith_floordivsi(self, o): return self._binary(o, lambda x, y: x // y)
    def op_arith_ceildivsi(self, o): return self._binary(o, lambda x, y: -((-x) // y))
    def op_arith_minsi(self, o): return self._binary(o, np.minimum)
    def op_arith_maxsi(self, o): return self._binary(o, np.maximum)
    def op_arith_minui(self, o): return self._binary(o, np.minimum)
    def op_arith_maxui(self, o): return self._binary(o, np.maximum)
    def op_arith_andi(self, o): return self._binary(o, lambda x, y: x & y)
    def op_arith_ori(self, o): return self._binary(o, lambda x, y: x | y)
    def op_arith_xori(self, o): return self._binary(o, lambda x, y: x ^ y)
    def op_arith_addf(self, o): return self._binary(o, lambda x, y: (x + y).astype(x.dtype))
    def op_arith_subf(self, o): return self._binary(o, lambda x, y: (x - y).astype(x.dtype))
    def op_arith_mulf(self, o): return self._binary(o, lambda x, y: (x * y).astype(x.dtype))
    def op_arith_divf(self, o):
        def div(x, y):
            with np.errstate(divide="ignore", invalid="ignore"):
                return (x / y).astype(x.dtype)
        return self._binary(o, div)

    def op_arith_maximumf(self, o):
        return self._binary(o, np.maximum)  # NaN-propagating, like arith.maximumf

    def op_arith_minimumf(self, o):
        return self._binary(o, np.minimum)

    def op_arith_negf(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)

        def run(st):
            st.env[out] = -st.env[a]
        return run

    _ICMP = {0: "eq", 1: "ne", 2: "slt", 3: "sle", 4: "sgt", 5: "sge", 6: "ult", 7: "ule", 8: "ugt", 9: "uge"}
    _OPS = {"eq": np.equal, "ne": np.not_equal, "slt": np.less, "sle": np.less_equal,
            "sgt": np.greater, "sge": np.greater_equal, "ult": np.less, "ule": np.less_equal,
            "ugt": np.greater, "uge": np.greater_equal}

    def op_arith_cmpi(self, o):
        pred = self._ICMP[ir.IntegerAttr(o.attributes["predicate"]).value]
        return self._binary(o, self._OPS[pred])

    _FCMP = {1: "oeq", 2: "ogt", 3: "oge", 4: "olt", 5: "ole", 6: "one", 13: "une"}

    def op_arith_cmpf(self, o):
        pred = self._FCMP[ir.IntegerAttr(o.attributes["predicate"]).value]
        f = {"oeq": np.equal, "ogt": np.greater, "oge": np.greater_equal, "olt": np.less,
             "ole": np.less_equal, "one": np.not_equal, "une": np.not_equal}[pred]
        return self._binary(o, f)

    def op_arith_select(self, o):
        c, a, b = self.ins(o)
        out = self.slots_out1(o)

        def run(st):
            cond = st.env[c]
            x, y = st.env[a], st.env[b]
            if np.ndim(x) > 1:
                cond = cond.reshape(cond.shape + (1,) * (np.ndim(x) - 1))
            st.env[out] = np.where(cond, x, y)
        return run

    def op_arith_truncf(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        kind = parse_type(str(o.results[0].type)).kind

        def run(st):
            x = np.asarray(st.env[a], np.float32)
            st.env[out] = x.astype(np.float16) if kind == "f16" else round_bf16(x) if kind == "bf16" else x
        return run

    def op_arith_extf(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)

        def run(st):
            st.env[out] = np.asarray(st.env[a]).astype(np.float32)
        return run

    def op_arith_index_cast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)

        def run(st):
            st.env[out] = np.asarray(st.env[a]).astype(np.int64)
        return run

    op_arith_index_castui = op_arith_index_cast

    def _shift(self, o, f):
        a, b = self.ins(o)
        out = self.slots_out1(o)
        bits = _int_bits(str(o.results[0].type))

        def run(st):
            x, n = _unsigned(st.env[a], bits), _unsigned(st.env[b], bits)
            if np.any(n >= bits):
                raise SimError("shift amount >= bit width (poison)")
            st.env[out] = _from_unsigned(f(x, n, bits), bits)
        return run

    def op_arith_shli(self, o):
        return self._shift(o, lambda x, n, bits: x << n)

    def op_arith_shrui(self, o):
        return self._shift(o, lambda x, n, bits: x >> n)

    def op_arith_shrsi(self, o):
        def f(x, n, bits):
            neg = (x >> np.uint64(bits - 1)) & np.uint64(1)
            ones = np.uint64((1 << bits) - 1)
            fill = np.where(neg.astype(bool), ones ^ (ones >> n), np.uint64(0))
            return (x >> n) | fill
        return self._shift(o, f)

    def op_arith_extui(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        bits = _int_bits(str(o.operands[0].type))

        def run(st):
            st.env[out] = _from_unsigned(_unsigned(st.env[a], bits), 64)
        return run

    def op_arith_trunci(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        bits = _int_bits(str(o.results[0].type))

        def run(st):
            st.env[out] = _from_unsigned(_unsigned(st.env[a], bits), bits)
        return run

    # ---- affine
    def op_affine_apply(self, o):
        amap = ir.AffineMapAttr(o.attributes["map"]).value
        if len(amap.results) != 1:
            raise SimError("multi-result affine.apply")
        nd = amap.n_dims
        expr = self._affine(amap.results[0], nd)
        ins, out = self.ins(o), self.slots_out1(o)

        def run(st):
            st.env[out] = expr([st.env[i] for i in ins])
        return run

    def _affine(self, e, nd):
        if isinstance(e, ir.AffineConstantExpr):
            v = ir.AffineConstantExpr(e).value
            return lambda xs: np.int64(v)
        if isinstance(e, ir.AffineDimExpr):
            p = ir.AffineDimExpr(e).position
            return lambda xs: xs[p]
        if isinstance(e, ir.AffineSymbolExpr):
            p = ir.AffineSymbolExpr(e).position
            return lambda xs: xs[nd + p]
        for cls, f in ((ir.AffineAddExpr, lambda a, b: a + b), (ir.AffineMulExpr, lambda a, b: a * b),
                       (ir.AffineModExpr, lambda a, b: np.mod(a, b)),
                       (ir.AffineFloorDivExpr, lambda a, b: np.floor_divide(a, b)),
                       (ir.AffineCeilDivExpr, lambda a, b: -np.floor_divide(-a, b))):
            if isinstance(e, cls):
                be = cls(e)
                l, r = self._affine(be.lhs, nd), self._affine(be.rhs, nd)
                return lambda xs, l=l, r=r, f=f: f(l(xs), r(xs))
        raise SimError(f"affine expression {e}")

    # ---- gpu
    def op_gpu_thread_id(self, o):
        out = self.slots_out1(o)
        dim = str(o.attributes["dimension"])

        def run(st):
            st.env[out] = np.arange(st.T, dtype=np.int64) if dim.endswith("x>") else np.zeros(st.T, np.int64)
        return run

    def op_gpu_block_id(self, o):
        out = self.slots_out1(o)
        d = "xyz".index(str(o.attributes["dimension"])[-2])

        def run(st):
            st.env[out] = np.full(st.T, st.block[d], np.int64)
        return run

    def op_gpu_dynamic_shared_memory(self, o):
        out = self.slots_out1(o)

        def run(st):
            st.env[out] = MemRef(st.shared, "shared", "i8", 0, [DYN], [1])  # aligned pointer: base
        return run

    def op_gpu_barrier(self, o):
        def run(st):
            if not np.all(st.mask):
                raise SimError("gpu.barrier in divergent control flow")
            st.epoch += 1
            # Completed mbarrier phases one thread observed are ordered
            # before everything any thread does after the barrier.
            for grp in st.mbars.values():
                grp.observed[:] = grp.observed.max(axis=1, keepdims=True)
            st.stats["barriers"] = st.stats.get("barriers", 0) + 1
        return run

    def op_gpu_shuffle(self, o):
        v, off, width = self.ins(o)
        out, valid = self.outs(o)
        mode = str(o.attributes["mode"])
        if "xor" not in mode:
            raise SimError(f"shuffle mode {mode}")

        def run(st):
            x = st.env[v]
            k = uniform(st.env[off], st, "shuffle offset")
            if uniform(st.env[width], st, "shuffle width") != 32:
                raise SimError("shuffle width must be 32")
            lanes = np.arange(st.T)
            src = (lanes // 32) * 32 + ((lanes % 32) ^ k)
            st.env[out] = x[src]
            st.env[valid] = np.ones(st.T, bool)
        return run

    def op_gpu_return(self, o):
        return lambda st: None

    op_gpu_terminator = op_gpu_return

    # ---- memref
    def op_memref_view(self, o):
        src, shift, *sizes = self.ins(o)
        out = self.slots_out1(o)
        t = str(o.results[0].type)
        shape, elt = memref_shape(t), memref_elt(t)
        if elt not in ("f16", "bf16"):
            raise SimError("only f16/bf16 views of shared memory are modeled")

        def run(st):
            m = st.env[src]
            b = uniform(st.env[shift], st, "view byte shift")
            if b % 2:
                raise SimError("misaligned view")
            # The shift lives in the aligned pointer (the result's layout offset is 0).
            st.env[out] = MemRef(m.buf, m.space, elt, b // 2, list(shape), identity_strides(shape),
                                 ptr_elems=m.ptr_elems + b // 2)
        return run

    def op_memref_alloca(self, o):
        out = self.slots_out1(o)
        t = str(o.results[0].type)
        shape = memref_shape(t)
        ety = re.match(r"memref<(?:[0-9]+x)*(vector<[^>]+>|[a-z0-9]+)", t).group(1)
        vt = parse_type(ety)

        def run(st):
            n = int(np.prod(shape))
            buf = np.zeros((st.T, n) + vt.shape, dtype=np_dtype(vt.kind))
            st.env[out] = MemRef(buf, "private", vt.kind, 0, list(shape), identity_strides(shape),
                                 stamps=np.full(n, -1, np.int64) if self.track else None)
        return run

    def op_memref_subview(self, o):
        src, *dyn = self.ins(o)
        out = self.slots_out1(o)
        offs = list(ir.DenseI64ArrayAttr(o.attributes["static_offsets"]))
        sizes = list(ir.DenseI64ArrayAttr(o.attributes["static_sizes"]))
        strides = list(ir.DenseI64ArrayAttr(o.attributes["static_strides"]))
        rtype = str(o.results[0].type)
        rshape = memref_shape(rtype)

        def run(st):
            m = st.env[src]
            it = iter(dyn)
            vals = []
            for group in (offs, sizes, strides):
                vals.append([uniform(st.env[next(it)], st, "subview operand") if x == DYN else x
                             for x in group])
            o_, s_, k_ = vals
            offset = m.offset + sum(a * b for a, b in zip(o_, m.strides))
            nstr = [a * b for a, b in zip(k_, m.strides)]
            # Rank reduction: drop unit dims not in the result.
            keep = [i for i, s in enumerate(s_) if not (s == 1 and len(s_) > len(rshape))]
            while len(keep) > len(rshape):
                for i in keep:
                    if s_[i] == 1:
                        keep.remove(i)
                        break
            st.env[out] = MemRef(m.buf, m.space, m.elt, offset, [s_[i] for i in keep],
                                 [nstr[i] for i in keep], ptr_elems=m.ptr_elems, stamps=m.stamps)
        return run

    def op_memref_cast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)

        def run(st):
            st.env[out] = st.env[a]
        return run

    def op_memref_extract_aligned_pointer_as_index(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)

        def run(st):
            m = st.env[a]
            if m.space != "shared":
                raise SimError("extract_aligned_pointer_as_index is modeled for shared memory only")
            # Byte address in the shared window: the dynamic shared memory base
            # plus the byte shift of memref.view (2-byte elements).
            st.env[out] = np.full(st.T, m.buf.base + 2 * m.ptr_elems, np.int64)
        return run

    def op_memref_extract_strided_metadata(self, o):
        (a,), outs = self.ins(o), self.outs(o)
        rank = (len(outs) - 2) // 2

        def run(st):
            m = st.env[a]
            if len(m.sizes) != rank:
                raise SimError("extract_strided_metadata: rank mismatch")
            st.env[outs[0]] = MemRef(m.buf, m.space, m.elt, m.ptr_elems, [], [], ptr_elems=m.ptr_elems,
                                     stamps=m.stamps)
            # Elements past the aligned pointer (hardware: the layout offset).
            st.env[outs[1]] = np.full(st.T, m.offset - m.ptr_elems, np.int64)
            for i in range(rank):
                st.env[outs[2 + i]] = np.full(st.T, m.sizes[i], np.int64)
                st.env[outs[2 + rank + i]] = np.full(st.T, m.strides[i], np.int64)
        return run

    def op_memref_dim(self, o):
        m, d = self.ins(o)
        out = self.slots_out1(o)

        def run(st):
            st.env[out] = np.full(st.T, st.env[m].sizes[uniform(st.env[d], st, "dim")], np.int64)
        return run

    def op_memref_load(self, o):
        m, *idx = self.ins(o)
        out = self.slots_out1(o)

        def run(st):
            mr = st.env[m]
            lin = mr.linear([st.env[i] for i in idx])
            if mr.space == "private":
                st.env[out] = mr.buf[np.arange(st.T), np.broadcast_to(lin, (st.T,))]
            elif mr.space == "global":
                safe = np.where(st.mask, lin, 0)
                st.env[out] = mr.buf[safe]
            else:
                # Shared (generic proxy), with the race checks of ldmatrix.
                t = np.nonzero(st.mask)[0]
                flat = np.broadcast_to(lin, (st.T,))[t]
                if flat.size and (flat.min() < 0 or flat.max() >= mr.buf.data.size):
                    raise SimError("memref.load outside dynamic shared memory")
                self._generic_read(st, flat, t, "memref.load")
                v = np.zeros(st.T, np.float32)
                v[t] = mr.buf.data[flat]
                st.env[out] = v.astype(np.float16) if mr.elt == "f16" else v
        return run

    def op_memref_store(self, o):
        v, m, *idx = self.ins(o)

        def run(st):
            mr = st.env[m]
            lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))
            val = st.env[v]
            if mr.space == "private":
                t = np.arange(st.T)[st.mask]
                mr.buf[t, lin[st.mask]] = np.asarray(val)[st.mask] if np.ndim(val) else val
            elif mr.space == "global":
                mr.buf[lin[st.mask]] = np.asarray(val)[st.mask]
            else:
                raise SimError("memref.store to shared memory is not modeled")
        return run

    def op_memref_dealloc(self, o):
        return lambda st: None

    # ---- vector
    def op_vector_extract(self, o):
        src, *dyn = self.ins(o)
        if dyn:
            raise SimError("dynamic vector.extract")
        pos = tuple(ir.DenseI64ArrayAttr(o.attributes["static_position"]))
        out = self.slots_out1(o)

        def run(st):
            st.env[out] = st.env[src][(slice(None),) + pos]
        return run

    def op_vector_insert(self, o):
        val, dst, *dyn = self.ins(o)
        if dyn:
            raise SimError("dynamic vector.insert")
        pos = tuple(ir.DenseI64ArrayAttr(o.attributes["static_position"]))
        out = self.slots_out1(o)

        def run(st):
            r = np.array(st.env[dst], copy=True)
            r[(slice(None),) + pos] = st.env[val]
            st.env[out] = r
        return run

    def op_vector_from_elements(self, o):
        ins, out = self.ins(o), self.slots_out1(o)
        shape = parse_type(str(o.results[0].type)).shape

        def run(st):
            st.env[out] = np.stack([np.broadcast_to(st.env[i], (st.T,)) for i in ins], axis=1).reshape((st.T,) + shape)
        return run

    def op_vector_to_elements(self, o):
        (a,), outs = self.ins(o), self.outs(o)

        def run(st):
            x = st.env[a].reshape(st.T, -1)
            for i, s in enumerate(outs):
                st.env[s] = x[:, i]
        return run

    def op_vector_broadcast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        shape = parse_type(str(o.results[0].type)).shape

        def run(st):
            x = np.asarray(st.env[a])
            st.env[out] = np.broadcast_to(x.reshape((st.T,) + (1,) * len(shape)), (st.T,) + shape).copy()
        return run

    def op_vector_bitcast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        src_t = parse_type(str(o.operands[0].type))
        dst_t = parse_type(str(o.results[0].type))
        if not (src_t.kind in ("bf16", "f16") and src_t.shape == (2,) and dst_t.kind == "int"
                and dst_t.shape == (1,)):
            raise SimError("only vector<2xbf16|f16> -> vector<1xi32> bitcasts are modeled")

        def run(st):
            x = st.env[a]
            if src_t.kind == "bf16":
                b = bf16_bits(x)
            else:
                b = np.asarray(x).astype(np.float16).view(np.uint16).astype(np.uint32)
            st.env[out] = (b[:, 0] | (b[:, 1] << 16)).astype(np.int64).reshape(st.T, 1)
        return run

    def op_vector_store(self, o):
        v, m, *idx = self.ins(o)

        def run(st):
            mr = st.env[m]
            if mr.space != "global":
                raise SimError("vector.store outside global memory")
            x = st.env[v]
            lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))
            n = x.shape[1]
            t = np.nonzero(st.mask)[0]
            for e in range(n):
                mr.buf[lin[t] + e] = x[t, e]
        return run

    # ---- llvm / nvvm
    def op_llvm_call_intrinsic(self, o):
        name = ir.StringAttr(o.attributes["intrin"]).value
        ins, out = self.ins(o), self.slots_out1(o)
        if name not in ("llvm.nvvm.ex2.approx.ftz.f", "llvm.nvvm.ex2.approx.f"):
            raise SimError(f"intrinsic {name}")

        def run(st):
            with np.errstate(over="ignore"):
                st.env[out] = np.exp2(st.env[ins[0]].astype(np.float32)).astype(np.float32)
        return run

    def op_llvm_extractvalue(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        pos = list(ir.DenseI64ArrayAttr(o.attributes["position"]))

        def run(st):
            st.env[out] = st.env[a][pos[0]]
        return run

    def op_llvm_insertvalue(self, o):
        c, v = self.ins(o)
        out = self.slots_out1(o)
        pos = list(ir.DenseI64ArrayAttr(o.attributes["position"]))
        if len(pos) != 1:
            raise SimError("nested llvm.insertvalue positions are not modeled")

        def run(st):
            r = list(st.env[c])
            r[pos[0]] = st.env[v]
            st.env[out] = tuple(r)
        return run

    def _llvm_fill(self, o, value: float):
        out = self.slots_out1(o)
        t = str(o.results[0].type)
        n = _struct_len(t)
        kind = parse_type(t)
        if n is None and (kind.kind not in ("f32", "int") or kind.shape):
            raise SimError(f"{o.name} of {t}")

        def run(st):
            if n is None:
                st.env[out] = np.full(st.T, value if kind.kind == "f32" else 0,
                                      np.float32 if kind.kind == "f32" else np.int64)
            else:
                st.env[out] = tuple(np.full(st.T, value, np.float32) for _ in range(n))
        return run

    def op_llvm_mlir_zero(self, o):
        return self._llvm_fill(o, 0.0)

    def op_llvm_mlir_undef(self, o):
        return self._llvm_fill(o, np.nan)  # reading it shows up as NaN

    op_llvm_mlir_poison = op_llvm_mlir_undef

    def op_llvm_mlir_constant(self, o):
        out = self.slots_out1(o)
        t = parse_type(str(o.results[0].type))
        attr = o.attributes["value"]
        if t.shape:
            raise SimError("vector llvm.mlir.constant")
        const = (np.float32(ir.FloatAttr(attr).value) if t.kind == "f32"
                 else np.int64(ir.IntegerAttr(attr).value))

        def run(st):
            st.env[out] = np.full(st.T, const)
        return run

    # ---- wgmma (sm_90a)
    def op_nvvm_wgmma_fence_aligned(self, o):
        def run(st):
            if not np.all(st.mask):
                raise SimError("wgmma.fence in divergent control flow")
            st.clock += 1
            st.wg_fence = st.clock
        return run

    def op_nvvm_wgmma_commit_group_sync_aligned(self, o):
        def run(st):
            if not np.all(st.mask):
                raise SimError("wgmma.commit_group in divergent control flow")
            st.wg_groups.append(st.wg_pending)
            st.wg_pending = []
        return run

    def op_nvvm_wgmma_wait_group_sync_aligned(self, o):
        n = ir.IntegerAttr(o.attributes["group"]).value

        def run(st):
            if not np.all(st.mask):
                raise SimError("wgmma.wait_group in divergent control flow")
            while len(st.wg_groups) > n:
                self._retire_wgmma(st, st.wg_groups.pop(0))
        return run

    @staticmethod
    def _retire_wgmma(st: State, group):
        sh = st.shared
        st.clock += 1
        for tok in group:
            tok.retired = True
            tok.clock = st.clock
            for g, idx in tok.reads:
                sh.async_r[idx] -= 1
                # Read on behalf of all 128 threads of warpgroup g (each warp's
                # share of the wgmma may finish on its own): as for several
                # readers (-2), any write before the next barrier is a race.
                sh.r_thread[idx] = -2
                sh.r_epoch[idx] = st.epoch

    def op_nvvm_fence_proxy(self, o):
        kind = str(o.attributes["kind"])
        space = str(o.attributes["space"]) if "space" in o.attributes else ""
        # fence.proxy.async{.shared::cta}: generic <-> async proxy, shared memory
        # of this CTA (plain .async covers all state spaces).
        if re.search(r"<([\w.]+)>", kind).group(1) not in ("async", "async.shared") \
                or (space and "cta" not in space):
            raise SimError(f"fence.proxy {kind} {space} is not modeled")

        def run(st):
            sh = st.shared
            # Orders this thread's landed generic-proxy writes before later
            # async-proxy (wgmma) accesses.
            cand = ~sh.fenced & ~sh.inflight
            if not np.all(st.mask):
                cand &= np.isin(sh.w_thread, np.nonzero(st.mask)[0])
            sh.fenced[cand] = True
            sh.fence_epoch[cand] = st.epoch
            self._fence_mbarrier_inits(st)
            st.stats["fence.proxy.async"] = st.stats.get("fence.proxy.async", 0) + 1
        return run

    @staticmethod
    def _fence_mbarrier_inits(st: State):
        """A proxy fence (or fence.mbarrier_init) by a thread makes the
        mbarrier.init operations it performed before visible to the async
        proxy (the TMA unit's complete-tx)."""
        act = np.nonzero(st.mask)[0]
        for grp in st.mbars.values():
            grp.init_fenced |= grp.inited & np.isin(grp.init_thread, act)

    def op_nvvm_fence_mbarrier_init(self, o):
        def run(st):
            self._fence_mbarrier_inits(st)
        return run

    @staticmethod
    def _wgmma_tables(n: int):
        """Per thread of a warpgroup (128) and register: (row, col) of D
        (n/2 registers) and of A in registers (8 halves)."""
        dr = np.zeros((128, n // 2), np.int64)
        dc = np.zeros((128, n // 2), np.int64)
        ar = np.zeros((128, 8), np.int64)
        ac = np.zeros((128, 8), np.int64)
        for t in range(128):
            for i in range(n // 2):
                dr[t, i], dc[t, i] = isa.wgmma_d(t // 32, t % 32, i)
            for i in range(8):
                ar[t, i], ac[t, i] = isa.wgmma_a(t // 32, t % 32, i)
        return dr, dc, ar, ac

    def _wgmma_smem(self, st: State, desc_val, rows: int, cols: int, k_major: bool,
                    mn_is_row: bool, what: str):
        """Reads a [rows x cols] operand (A: m x k, B: k x n) per warpgroup
        through its descriptor. Returns values [G, rows, cols] and the shared
        element indices per warpgroup."""
        sh = st.shared
        G = st.T // 128
        d = np.asarray(desc_val, np.int64).reshape(G, 128)
        vals = np.zeros((G, rows, cols), np.float32)
        idxs = []
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        mn, k = (r, c) if mn_is_row else (c, r)
        for g in range(G):
            if not np.all(d[g] == d[g, 0]):
                raise SimError(f"wgmma {what} descriptor differs across the warpgroup")
            desc = int(d[g, 0]) & ((1 << 64) - 1)
            try:
                addr = isa.wgmma_smem_address(mn, k, desc, k_major)
            except ValueError as e:
                raise SimError(f"wgmma {what}: {e}")
            fields = isa.decode_descriptor(desc)
            rel = addr - sh.base
            if np.any(rel < 0) or np.any(rel // 2 >= sh.data.size):
                raise SimError(f"wgmma {what} reads outside dynamic shared memory "
                               f"(descriptor {fields})")
            idx = (rel // 2).astype(np.int64)
            if np.unique(idx).size != idx.size:
                raise SimError(f"wgmma {what}: two elements at one address (descriptor {fields})")
            vals[g] = sh.data[idx]
            idxs.append(idx.reshape(-1))
        return vals, idxs

    def _wgmma_check_reads(self, st: State, idxs):
        sh = st.shared
        flat = np.concatenate(idxs)
        if np.any(sh.inflight[flat]):
            raise SimError("wgmma reads shared memory a cp.async has not finished writing "
                           "(missing cp.async.wait_group)")
        if np.any(sh.tma_inflight[flat]):
            raise SimError("wgmma reads shared memory a TMA load has not finished writing "
                           "(in flight: no mbarrier wait completed the phase that covers it)")
        for g, idx in enumerate(idxs):
            # Read on behalf of every thread of warpgroup g.
            self._check_tma_visible(st, idx, np.arange(128 * g, 128 * g + 128), "wgmma",
                                    per_element=False)
        if np.any(sh.w_epoch[flat] == st.epoch):
            raise SimError("wgmma reads shared data written since the last barrier (missing barrier)")
        if not np.all(sh.fenced[flat]):
            raise SimError("generic-proxy write not fenced before wgmma read (missing "
                           "fence.proxy.async by the writing thread after its data landed)")
        if np.any(sh.fence_epoch[flat] == st.epoch):
            raise SimError("fence.proxy.async not followed by a barrier before the wgmma read")

    def _wgmma(self, st: State, n: int, tables, A_src, descB, b_kmajor: bool, C, scale_a: int,
               scale_b: int, acc_slots, a_slots) -> tuple:
        """Executes m64n{n}k16 for every warpgroup. A_src: ("smem", descA,
        k_major) or ("regs", [T, 8] float32 halves). C: list of n/2 per-thread
        registers or None (scale-d false). Returns the result registers."""
        if not np.all(st.mask):
            raise SimError("wgmma.mma_async in divergent control flow")
        if st.T % 128:
            raise SimError("wgmma needs whole warpgroups (block size a multiple of 128)")
        if st.wg_fence < 0:
            raise SimError("wgmma.mma_async before any wgmma.fence")
        # Registers written by non-wgmma ops since the last wgmma.fence.
        for slot in ([] if "wgmma-a-fence" in self.waive else a_slots):
            if st.stamp.get(slot, -1) >= st.wg_fence:
                raise SimError("wgmma A-fragment registers written by a non-wgmma op after the "
                               "last wgmma.fence (the fence must come between them)")
        if C is not None:
            for slot in ([] if "wgmma-acc-fence" in self.waive else acc_slots):
                if st.stamp.get(slot, -1) >= st.wg_fence:
                    raise SimError("wgmma accumulator registers written by a non-wgmma op after "
                                   "the last wgmma.fence (the fence must come between them)")
            for x in C:
                # Only same-shape wgmma chains are ordered without a fence.
                if isinstance(x, Pending) and x.tok.n != n and not (
                        x.tok.retired and x.tok.clock < st.wg_fence):
                    raise SimError("wgmma accumulator from a wgmma of another shape without a "
                                   "wait_group and a wgmma.fence in between")
        G = st.T // 128
        dr, dc, ar, ac = tables
        B, idxB = self._wgmma_smem(st, descB, 16, n, b_kmajor, mn_is_row=False, what="B")
        if A_src[0] == "smem":
            A, idxA = self._wgmma_smem(st, A_src[1], 64, 16, A_src[2], mn_is_row=True, what="A")
        else:
            halves = A_src[1].reshape(G, 128, 8)
            A = np.zeros((G, 64, 16), np.float32)
            A[:, ar, ac] = halves
            idxA = [np.zeros(0, np.int64)] * G
        reads = [np.concatenate([a, b]) for a, b in zip(idxA, idxB)]
        self._wgmma_check_reads(st, reads)
        D = (scale_a * A.astype(np.float64)) @ (scale_b * B.astype(np.float64))
        if C is not None:
            Cr = np.stack([x.val if isinstance(x, Pending) else np.asarray(x, np.float32)
                           for x in C], 1).reshape(G, 128, n // 2)
            Cm = np.zeros((G, 64, n), np.float64)
            Cm[:, dr, dc] = Cr
            D = D + Cm
        D = D.astype(np.float32)
        regs = D[:, dr, dc].reshape(st.T, n // 2)
        tok = WgToken(n)
        sh = st.shared
        for g, idx in enumerate(reads):
            u = np.unique(idx)
            sh.async_r[u] += 1
            tok.reads.append((g, u))
        st.wg_pending.append(tok)
        st.stats["wgmma"] = st.stats.get("wgmma", 0) + 1
        st.stats["wgmma.warpgroups"] = st.stats.get("wgmma.warpgroups", 0) + G
        return tuple(Pending(regs[:, i].copy(), tok) for i in range(n // 2))

    def op_nvvm_wgmma_mma_async(self, o):
        acc, da, db = self.ins(o)
        out = self.slots_out1(o)
        a = {k: str(o.attributes[k]) for k in ("shape", "typeA", "typeB", "typeD", "scaleD",
                                               "scaleA", "scaleB", "layoutA", "layoutB")}
        m = re.search(r"m = (\d+), n = (\d+), k = (\d+)", a["shape"])
        M, n, K = (int(x) for x in m.groups())
        ta, tb = (re.search(r"<(\w+)>", a[k]).group(1) for k in ("typeA", "typeB"))
        if (M, K) != (64, 16) or ta != tb or ta not in ("f16", "bf16") or "f32" not in a["typeD"]:
            raise SimError(f"wgmma.mma_async {a} is not modeled")
        if _struct_len(str(o.results[0].type)) != n // 2:
            raise SimError("wgmma.mma_async result is not n/2 f32")
        scale_d = "one" in a["scaleD"]
        scale_a = -1 if "neg" in a["scaleA"] else 1
        scale_b = -1 if "neg" in a["scaleB"] else 1
        a_kmajor = "row" in a["layoutA"]
        b_kmajor = "col" in a["layoutB"]
        tables = self._wgmma_tables(n)

        def run(st):
            C = list(st.env[acc]) if scale_d else None
            st.env[out] = self._wgmma(st, n, tables, ("smem", st.env[da], a_kmajor), st.env[db],
                                      b_kmajor, C, scale_a, scale_b, [acc], [])
            st.stamp[out] = -1
        return run

    def op_llvm_inline_asm(self, o):
        text = ir.StringAttr(o.attributes["asm_string"]).value
        cons = ir.StringAttr(o.attributes["constraints"]).value.split(",")
        ins = self.ins(o)
        out = self.slots_out1(o) if len(o.results) else None
        m = _WGMMA_ASM.fullmatch(text)
        if m is None:
            raise SimError(f"inline asm not modeled: {text!r}")
        n = int(m.group(1))
        ta, tb = m.group(2), m.group(3)
        drefs, arefs, bref = _asm_refs(m.group(4)), _asm_refs(m.group(5)), int(m.group(6))
        scale_d, scale_a, scale_b, trans_b = (int(m.group(i)) for i in range(7, 11))
        n_out = sum(1 for c in cons if c.startswith("="))
        inputs = cons[n_out:]

        def bad(why):
            return SimError(f"inline wgmma ({text[:60]}...): {why}")
        if ta != tb:
            raise bad("mixed A/B types")
        if len(inputs) != len(ins):
            raise bad("constraints do not match the operands")
        if out is None or _struct_len(str(o.results[0].type)) != n // 2 or n_out != n // 2:
            raise bad("result is not n/2 f32 outputs")
        if any(c != "=f" for c in cons[:n_out]) or drefs != list(range(n // 2)):
            raise bad("D must be the outputs $0..$(n/2-1) in order, constraint =f")
        if scale_d not in (0, 1) or scale_a not in (1, -1) or scale_b not in (1, -1) \
                or trans_b not in (0, 1):
            raise bad("immediates out of range")

        def input_of(ref, want):
            j = ref - n_out
            if not 0 <= j < len(inputs) or inputs[j] != want:
                raise bad(f"${ref} is not an input with constraint {want}")
            return ins[j]
        a_slots = [input_of(r, "r") for r in arefs]
        if len(a_slots) != 4:
            raise bad("A needs four .b32 registers")
        b_slot = input_of(bref, "l")
        # Output i reads its initial value from the input tied to it ("i").
        acc_slots = []
        for i in range(n // 2):
            tied = [j for j, c in enumerate(inputs) if c == str(i)]
            if len(tied) != 1:
                raise bad(f"output ${i} is not tied to exactly one input")
            acc_slots.append(ins[tied[0]])
        if len(acc_slots) + 5 != len(ins):
            raise bad("unexpected extra operands")
        tables = self._wgmma_tables(n)

        def unpack(x):
            x = np.asarray(x, np.int64)
            lo, hi = x & 0xFFFF, (x >> 16) & 0xFFFF
            if ta == "bf16":
                return np.stack([bits_bf16(lo), bits_bf16(hi)], 1)
            f = lambda b: b.astype(np.uint16).view(np.float16).astype(np.float32)
            return np.stack([f(lo), f(hi)], 1)

        def run(st):
            halves = np.concatenate([unpack(st.env[s]) for s in a_slots], 1)   # a0..a7
            C = [st.env[s] for s in acc_slots] if scale_d else None
            st.env[out] = self._wgmma(st, n, tables, ("regs", halves), st.env[b_slot],
                                      trans_b == 0, C, scale_a, scale_b, acc_slots, a_slots)
            st.stamp[out] = -1
        return run

    # ---- nvgpu
    def op_nvgpu_device_async_copy(self, o):
        seg = list(ir.DenseI32ArrayAttr(o.attributes["operandSegmentSizes"]))
        ins = self.ins(o)
        dst, ins = ins[0], ins[1:]
        didx, ins = ins[:seg[1]], ins[seg[1]:]
        src, ins = ins[0], ins[1:]
        sidx, ins = ins[:seg[3]], ins[seg[3]:]
        nsrc = ins[0] if seg[4] else None
        ndst = ir.IntegerAttr(o.attributes["dstElements"]).value
        tok = self.slots_out1(o)

        def run(st):
            dm, sm = st.env[dst], st.env[src]
            if dm.space != "shared":
                raise SimError("cp.async destination must be shared memory")
            dl = np.broadcast_to(dm.linear([st.env[i] for i in didx]), (st.T,))
            sl = np.broadcast_to(sm.linear([st.env[i] for i in sidx]), (st.T,))
            n = np.broadcast_to(st.env[nsrc] if nsrc is not None else ndst, (st.T,))
            sh = st.shared
            t = np.nonzero(st.mask)[0]
            e = np.arange(ndst)
            d = dl[t][:, None] + e                      # [threads, ndst]
            has = e[None, :] < n[t][:, None]
            src_idx = np.where(has, sl[t][:, None] + e, 0)
            vals = np.where(has, sm.buf[src_idx], 0).astype(np.float32)
            if np.any(sh.async_r[d] > 0):
                raise SimError("cp.async overwrites shared data an unretired wgmma.mma_async reads "
                               "(missing wgmma.wait_group)")
            # Write-after-read: another thread (or a wgmma) read these since
            # the last barrier.
            bad = (sh.r_epoch[d] == st.epoch) & (sh.r_thread[d] != t[:, None])
            if np.any(bad):
                raise SimError("cp.async overwrites shared data another thread read since the "
                               "last barrier (missing barrier)")
            if np.any(sh.inflight[d]) or np.any(sh.tma_inflight[d]):
                raise SimError("two cp.async in flight to one location")
            sh.inflight[d] = True
            st.pending.append((np.broadcast_to(t[:, None], d.shape), d, vals))
            st.env[tok] = None
            st.stats["cp.async"] = st.stats.get("cp.async", 0) + 1
        return run

    def op_nvgpu_device_async_create_group(self, o):
        tok = self.slots_out1(o)

        def run(st):
            if not np.all(st.mask):
                raise SimError("cp.async.commit_group in divergent control flow")
            st.groups.append(st.pending)
            st.pending = []
            st.env[tok] = None
        return run

    def op_nvgpu_device_async_wait(self, o):
        n = ir.IntegerAttr(o.attributes["numGroups"]).value if "numGroups" in o.attributes else 0

        def run(st):
            while len(st.groups) > n:
                self._retire(st, st.groups.pop(0))
        return run

    @staticmethod
    def _retire(st: State, group):
        sh = st.shared
        for t, d, vals in group:
            sh.data[d] = vals
            sh.inflight[d] = False
            sh.w_epoch[d] = st.epoch
            sh.w_thread[d] = t
            sh.fenced[d] = False   # a generic-proxy write
            sh.tma_src[d] = -1

    # ---- TMA and mbarriers (sm_90a)
    def op_nvgpu_tma_create_descriptor(self, o):
        src, *box_slots = self.ins(o)
        out = self.slots_out1(o)
        kind = parse_tensormap_type(str(o.results[0].type))

        def run(st):
            m = st.env[src]
            if not isinstance(m, MemRef) or m.space != "global":
                raise SimError("tma.create.descriptor of a tensor that is not in global memory")
            box = [uniform(st.env[b], st, "box dimension") for b in box_slots]
            if box != kind["box"]:
                raise SimError(f"tma.create.descriptor: box {box} differs from the descriptor "
                               f"type's {kind['box']}")
            if m.elt != kind["elt"]:
                raise SimError(f"tma.create.descriptor: {m.elt} tensor, {kind['elt']} descriptor")
            if kind["oob"] not in ("zero", "nan"):
                raise SimError(f"oob fill {kind['oob']} is not modeled")
            eb = 4 if m.elt == "f32" else 2
            try:
                enc = isa.encode_tensor_map(m.sizes, m.strides, eb, box, kind["swizzle"],
                                            kind["interleave"], base_addr=eb * m.offset)
            except ValueError as e:
                raise SimError(f"cuTensorMapEncodeTiled would fail: {e}")
            st.env[out] = TensorMap(m.buf, m.offset, m.elt, enc, kind, kind["oob"])
            st.stats["tensor maps"] = st.stats.get("tensor maps", 0) + 1
        return run

    def op_builtin_unrealized_conversion_cast(self, o):
        ins, outs = self.ins(o), self.outs(o)
        src_t = [str(v.type) for v in o.operands]
        dst_t = [str(r.type) for r in o.results]
        if len(ins) != 1 or len(outs) != 1 or not any("tensormap.descriptor" in t
                                                       for t in src_t + dst_t):
            raise SimError(f"unrealized_conversion_cast {src_t} -> {dst_t} is not modeled")
        want = parse_tensormap_type(dst_t[0]) if "tensormap.descriptor" in dst_t[0] else None
        (a,), (out,) = ins, outs

        def run(st):
            v = st.env[a]
            if not isinstance(v, TensorMap):
                raise SimError("a tensor map pointer that does not come from tma.create.descriptor")
            if want is not None and v.kind != want:
                raise SimError(f"tensor map argument {v.kind} does not match the descriptor type "
                               f"the kernel expects {want}")
            st.env[out] = v
        return run

    def op_memref_expand_shape(self, o):
        src, *dyn = self.ins(o)
        out = self.slots_out1(o)
        oshape = list(ir.DenseI64ArrayAttr(o.attributes["static_output_shape"]))
        if dyn or DYN in oshape:
            raise SimError("memref.expand_shape with dynamic sizes is not modeled")
        reassoc = [[ir.IntegerAttr(d).value for d in ir.ArrayAttr(g)]
                   for g in ir.ArrayAttr(o.attributes["reassociation"])]

        def run(st):
            m = st.env[src]
            if len(reassoc) != len(m.sizes):
                raise SimError("expand_shape: reassociation does not match the source rank")
            sizes, strides = [], []
            for i, dims in enumerate(reassoc):
                if int(np.prod([oshape[d] for d in dims])) != m.sizes[i]:
                    raise SimError(f"expand_shape: {[oshape[d] for d in dims]} does not cover "
                                   f"source dim {i} of size {m.sizes[i]}")
                acc, ss = m.strides[i], []
                for d in reversed(dims):
                    ss.append(acc)
                    acc *= oshape[d]
                sizes += [oshape[d] for d in dims]
                strides += list(reversed(ss))
            st.env[out] = MemRef(m.buf, m.space, m.elt, m.offset, sizes, strides,
                                 ptr_elems=m.ptr_elems, stamps=m.stamps)
        return run

    def op_nvgpu_mbarrier_create(self, o):
        out = self.slots_out1(o)
        m = re.search(r"num_barriers = (\d+)", str(o.results[0].type))
        n = int(m.group(1)) if m else 1

        def run(st):
            # Static shared memory: one group per op and block.
            grp = st.mbars.get(out)
            if grp is None:
                grp = st.mbars[out] = MBarrierGroup(n, st.T)
            st.env[out] = grp
        return run

    @staticmethod
    def _issuers(st: State, pred) -> np.ndarray:
        """Threads that execute an op with an optional predicate operand."""
        act = st.mask.copy()
        if pred is not None:
            act &= np.broadcast_to(np.asarray(st.env[pred], bool), (st.T,))
        return np.nonzero(act)[0]

    @staticmethod
    def _per_thread(st: State, slot, t) -> list[int]:
        return [int(x) for x in np.broadcast_to(np.asarray(st.env[slot]), (st.T,))[t]]

    @staticmethod
    def _mbar_check(st: State, grp: MBarrierGroup, b: int, threads, what: str):
        if not 0 <= b < grp.n:
            raise SimError(f"{what}: mbarrier index {b} out of range (num_barriers = {grp.n})")
        if not grp.inited[b]:
            raise SimError(f"{what} on mbarrier {b} before its mbarrier.init")
        if grp.init_epoch[b] == st.epoch and np.any(np.asarray(threads) != grp.init_thread[b]):
            raise SimError(f"{what}: mbarrier {b} used by a thread other than the one that "
                           f"initialized it before a barrier made mbarrier.init visible "
                           f"(missing gpu.barrier after mbarrier.init)")

    @staticmethod
    def _mbar_check_next_phase(st: State, grp: MBarrierGroup, b: int, issuer: int, what: str):
        """An arrive or TMA load that lets phase P of barrier b complete must
        come after (a barrier after) every other thread's wait on phase P - 1:
        a thread whose wait is not ordered before it could see phase P
        complete first and then wait, with the same parity, on phase P + 1
        (parity aliasing). Threads that arrive on phase P themselves are
        ordered by their own arrival."""
        others = np.arange(grp.T) != issuer
        late = others & (grp.wait_epoch[b] == st.epoch) & (grp.arrived[b] != grp.phase[b])
        if np.any(late):
            raise SimError(f"{what} for the next phase of mbarrier {b} while thread(s) "
                           f"{np.nonzero(late)[0][:4].tolist()}... waited on its previous phase "
                           f"since the last barrier: not ordered after their waits (missing "
                           f"barrier; the phase could complete before they wait: parity "
                           f"aliasing)")

    @staticmethod
    def _mbar_try_complete(grp: MBarrierGroup, b: int) -> bool:
        """Completes the current phase of barrier b if nothing is pending."""
        if grp.pending[b] == 0 and grp.tx[b] == 0:
            grp.phase[b] += 1
            grp.pending[b] = grp.count[b]
            return True
        return False

    def op_nvgpu_mbarrier_init(self, o):
        ins = self.ins(o)
        bars, count, bid = ins[:3]
        pred = ins[3] if len(ins) > 3 else None

        def run(st):
            grp = st.env[bars]
            t = self._issuers(st, pred)
            ids, counts = self._per_thread(st, bid, t), self._per_thread(st, count, t)
            if len(set(ids)) != len(ids):
                raise SimError("mbarrier.init of one mbarrier by several threads")
            for ti, b, c in zip(t, ids, counts):
                if not 0 <= b < grp.n:
                    raise SimError(f"mbarrier.init: index {b} out of range "
                                   f"(num_barriers = {grp.n})")
                if grp.inited[b]:
                    raise SimError(f"mbarrier.init of mbarrier {b}, which is already initialized")
                if not 1 <= c <= TX_LIMIT:
                    raise SimError(f"mbarrier.init: count {c} out of range [1, 2^20 - 1]")
                grp.count[b] = grp.pending[b] = c
                grp.tx[b] = grp.phase[b] = 0
                grp.observed[b] = 0
                grp.wait_epoch[b] = grp.arrived[b] = -1
                grp.init_fenced[b] = False
                grp.inited[b] = True
                grp.init_epoch[b] = st.epoch
                grp.init_thread[b] = ti
        return run

    def op_nvgpu_mbarrier_arrive_expect_tx(self, o):
        ins = self.ins(o)
        bars, txc, bid = ins[:3]
        pred = ins[3] if len(ins) > 3 else None

        def run(st):
            grp = st.env[bars]
            t = self._issuers(st, pred)
            for ti, b, n in zip(t, self._per_thread(st, bid, t), self._per_thread(st, txc, t)):
                self._mbar_check(st, grp, b, [ti], "mbarrier.arrive.expect_tx")
                self._mbar_check_next_phase(st, grp, b, ti, "mbarrier.arrive.expect_tx")
                grp.arrived[b, ti] = grp.phase[b]
                # expect-tx(n), then arrive-on.
                grp.tx[b] += n
                if not -TX_LIMIT <= grp.tx[b] <= TX_LIMIT:
                    raise SimError(f"mbarrier tx-count out of range ({grp.state(b)})")
                if grp.pending[b] == 0:
                    raise SimError(f"mbarrier.arrive.expect_tx: more arrivals than the mbarrier's "
                                   f"count in one phase ({grp.state(b)}; a second fill of the "
                                   f"slot before a wait, or the wrong barrier)")
                grp.pending[b] -= 1
                self._mbar_try_complete(grp, b)
                st.stats["mbarrier.arrive"] = st.stats.get("mbarrier.arrive", 0) + 1
        return run

    def op_nvgpu_tma_async_load(self, o):
        seg = list(ir.DenseI32ArrayAttr(o.attributes["operandSegmentSizes"]))
        ins = self.ins(o)
        parts, pos = [], 0
        for n in seg:
            parts.append(ins[pos:pos + n])
            pos += n
        (dst,), (bars,), (tmap,), coords, (bid,), mcast, pred = parts
        if mcast:
            raise SimError("TMA multicast is not modeled")
        pred = pred[0] if pred else None

        def run(st):
            t = self._issuers(st, pred)
            if t.size == 0:
                return
            dm, tm, grp = st.env[dst], st.env[tmap], st.env[bars]
            sh = st.shared
            if not isinstance(tm, TensorMap):
                raise SimError("tma.async.load without a tensor map")
            if dm.space != "shared":
                raise SimError("tma.async.load destination must be shared memory")
            if tm.enc["elem_bytes"] != 2:
                raise SimError("TMA loads of 4-byte elements are not modeled (2-byte shared units)")
            if dm.sizes != tm.kind["box"] or dm.elt != tm.elt:
                raise SimError(f"tma.async.load: destination {dm.sizes}x{dm.elt} is not the box "
                               f"{tm.kind['box']}x{tm.elt}")
            if dm.strides != identity_strides(dm.sizes):
                raise SimError(f"tma.async.load: destination strides {dm.strides} are not dense: "
                               f"the box lands densely from the start address")
            dst_addr = sh.base + 2 * dm.offset
            try:
                addr = isa.tma_smem_address(tm.enc, dst_addr).reshape(-1)
            except ValueError as e:
                raise SimError(f"tma.async.load: {e}")
            d = (addr - sh.base) // 2
            if d.min() < 0 or d.max() >= sh.data.size:
                raise SimError("tma.async.load writes outside dynamic shared memory")
            nbytes = isa.tma_box_bytes(tm.enc)
            cs = [self._per_thread(st, c, t) for c in coords]
            for k, (ti, b) in enumerate(zip(t, self._per_thread(st, bid, t))):
                self._mbar_check(st, grp, b, [ti], "tma.async.load")
                xy = [c[k] for c in cs]
                if any(not -(1 << 31) <= c < 1 << 31 for c in xy):
                    raise SimError(f"tma.async.load: coordinates {xy} do not fit in int32")
                src, ok = isa.tma_tile_source(tm.enc, xy)
                fill = np.nan if tm.oob == "nan" else 0.0
                vals = np.where(ok, tm.buf[tm.offset + src], fill).astype(np.float32).reshape(-1)
                if np.any(sh.async_r[d] > 0):
                    raise SimError("TMA load overwrites shared data an unretired wgmma.mma_async "
                                   "reads (missing wgmma.wait_group)")
                if np.any(sh.r_epoch[d] == st.epoch):
                    raise SimError("TMA load overwrites shared data a thread read since the last "
                                   "barrier (write-after-read race: missing barrier)")
                if np.any(sh.inflight[d]) or np.any(sh.tma_inflight[d]):
                    raise SimError("TMA load into shared memory another copy is still writing "
                                   "(two copies in flight to one location)")
                self._mbar_check_next_phase(st, grp, b, ti, "tma.async.load")
                fenced = st.tmap_fenced.get(id(tm))
                if (fenced is None or not fenced[ti]) and "tensormap-fence" not in self.waive:
                    raise SimError(
                        "tma.async.load through a tensor map the host copied to global memory, "
                        "without a fence.proxy.tensormap::generic.acquire (nvgpu.tma.fence."
                        "descriptor) by the issuing thread in this block (CUDA Programming Guide, "
                        "TMA: a fence before any thread accesses a tensor map copied to global "
                        "memory with cudaMemcpy)")
                if not grp.init_fenced[b] and "mbarrier-init-fence" not in self.waive:
                    raise SimError(
                        f"tma.async.load completes (complete-tx, async proxy) on mbarrier {b}, "
                        f"whose mbarrier.init (generic proxy) no fence.proxy.async.shared::cta or "
                        f"fence.mbarrier_init by the initializing thread made visible to the async "
                        f"proxy (CUDA Programming Guide, TMA: 'make initialized barrier visible in "
                        f"async proxy')")
                if not np.all(sh.fenced[d]):
                    raise SimError("TMA load overwrites shared data written through the generic "
                                   "proxy without a fence.proxy.async")
                sh.tma_inflight[d] = True
                grp.loads[b].append((d, vals, nbytes))
                st.stats["tma"] = st.stats.get("tma", 0) + 1
                st.stats["tma.oob"] = st.stats.get("tma.oob", 0) + int(ok.size - ok.sum())
        return run

    def op_nvgpu_tma_fence_descriptor(self, o):
        (tmap,) = self.ins(o)

        def run(st):
            tm = st.env[tmap]
            if not isinstance(tm, TensorMap):
                raise SimError("tma.fence.descriptor without a tensor map")
            st.tmap_fenced.setdefault(id(tm), np.zeros(st.T, bool))[st.mask] = True
        return run

    def op_nvgpu_tma_prefetch_descriptor(self, o):
        return lambda st: None   # a cache hint

    def _land_tma(self, st: State, grp: MBarrierGroup, b: int, load):
        """One TMA load's data lands; complete-tx of its bytes on barrier b."""
        d, vals, nbytes = load
        sh = st.shared
        sh.data[d] = vals
        sh.tma_inflight[d] = False
        sh.w_epoch[d] = -1       # an async-proxy write; visibility via the mbarrier
        sh.w_thread[d] = -1
        sh.fenced[d] = True
        sh.fence_epoch[d] = -1
        st.completions.append((grp, b, int(grp.phase[b])))
        sh.tma_src[d] = len(st.completions) - 1
        grp.tx[b] -= nbytes
        if grp.tx[b] < -TX_LIMIT:
            raise SimError(f"mbarrier tx-count out of range ({grp.state(b)})")

    def op_nvgpu_mbarrier_try_wait_parity(self, o):
        bars, parity, _ticks, bid = self.ins(o)

        def run(st):
            t = np.nonzero(st.mask)[0]
            if t.size == 0:
                return
            grp = st.env[bars]
            b = uniform(st.env[bid], st, "mbarrier index")
            p = uniform(st.env[parity], st, "phase parity") & 1
            self._mbar_check(st, grp, b, t, "mbarrier.try_wait.parity")
            if (int(grp.phase[b]) & 1) == p:
                # The current phase (parity p) is not complete: the loads on
                # this barrier land, in issue order, until it completes.
                done = False
                while grp.loads[b] and not done:
                    self._land_tma(st, grp, b, grp.loads[b].pop(0))
                    done = self._mbar_try_complete(grp, b)
                if not done:
                    if grp.pending[b] > 0:
                        why = ("arrivals missing: no (or too few) arrive.expect_tx for this phase "
                               "before the wait, or a wait on the wrong barrier / parity")
                    elif grp.tx[b] > 0:
                        why = ("the tx-count expects more bytes than the TMA loads issued on this "
                               "barrier bring (or the loads come after the wait)")
                    else:
                        why = "the TMA loads on this barrier bring more bytes than expected"
                    div = "" if np.all(st.mask) else " (a divergent wait)"
                    raise SimError(
                        f"deadlock: mbarrier.try_wait.parity({p}) on mbarrier {b} waits for a "
                        f"phase that can never complete{div}: {why} ({grp.state(b)})")
            # Otherwise the phase with parity p is the one before the current
            # phase: complete, the wait returns at once.
            grp.observed[b, t] = np.maximum(grp.observed[b, t], grp.phase[b])
            grp.wait_epoch[b, t] = st.epoch
            st.stats["mbarrier.wait"] = st.stats.get("mbarrier.wait", 0) + 1
        return run

    def _check_tma_visible(self, st: State, idx, readers, what: str, per_element: bool = True):
        """TMA-landed data must have its mbarrier phase's completion observed
        by each reading thread (or a gpu.barrier after some thread did)."""
        sh = st.shared
        src = sh.tma_src[idx]
        sel = src >= 0
        if not np.any(sel):
            return
        for cid in np.unique(src[sel]):
            grp, b, ph = st.completions[cid]
            r = readers[src == cid] if per_element else readers
            if np.any(grp.observed[b, r] <= ph):
                raise SimError(f"{what} reads TMA-loaded data without having waited on its "
                               f"mbarrier {b} (phase {ph}; missing mbarrier.try_wait.parity by "
                               f"the reading threads or a barrier after it)")

    def op_nvgpu_ldmatrix(self, o):
        m, *idx = self.ins(o)
        out = self.slots_out1(o)
        tiles = ir.IntegerAttr(o.attributes["numTiles"]).value
        trans = ir.BoolAttr(o.attributes["transpose"]).value
        elt = parse_type(str(o.results[0].type)).kind
        # Per lane l and element (j, e): the address lane and the column offset.
        addr_lane = np.zeros((32, tiles, 2), np.int64)
        col_off = np.zeros((32, tiles, 2), np.int64)
        for lane in range(32):
            for j in range(tiles):
                for e in range(2):
                    r, c = isa.ldmatrix_element(lane, e, trans)
                    addr_lane[lane, j, e] = isa.ldmatrix_address_lane(j, r)
                    col_off[lane, j, e] = c

        def run(st):
            if not np.all(st.mask):
                raise SimError("ldmatrix in divergent control flow")
            mr = st.env[m]
            if mr.space != "shared":
                raise SimError("ldmatrix source must be shared memory")
            lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))
            W = st.T // 32
            lin_w = lin.reshape(W, 32)
            addrs = lin_w[:, addr_lane] + col_off[None]   # [W, 32, tiles, 2]
            if (lin_w % 8).any():
                raise SimError("ldmatrix row address not 16-byte aligned")
            flat = addrs.reshape(-1)
            sh = st.shared
            reader = np.repeat(np.arange(st.T), tiles * 2)
            self._generic_read(st, flat, reader, "ldmatrix")
            vals = sh.data[flat].reshape(st.T, tiles, 2)
            st.env[out] = vals.astype(np.float16) if elt == "f16" else vals
            st.stats["ldmatrix"] = st.stats.get("ldmatrix", 0) + 1
        return run

    def _generic_read(self, st: State, flat, reader, what: str):
        """Race checks of a generic-proxy read of shared elements `flat` by
        threads `reader` (same shape); records the reads."""
        sh = st.shared
        if np.any(sh.inflight[flat]):
            raise SimError(f"{what} reads shared memory a cp.async has not finished writing "
                           "(missing cp.async.wait_group)")
        if np.any(sh.tma_inflight[flat]):
            raise SimError(f"{what} reads shared memory a TMA load has not finished writing "
                           "(in flight: no mbarrier wait completed the phase that covers it)")
        self._check_tma_visible(st, flat, reader, what)
        raw = (sh.w_epoch[flat] == st.epoch) & (sh.w_thread[flat] != reader)
        if np.any(raw):
            raise SimError(f"{what} reads shared data another thread wrote since the last "
                           "barrier (missing barrier)")
        same = sh.r_epoch[flat] == st.epoch
        sh.r_thread[flat] = np.where(same & (sh.r_thread[flat] != reader), -2, reader)
        sh.r_epoch[flat] = st.epoch

    @staticmethod
    def _mma(st: State, A: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
        """A: [T, 8] a0..a7, B: [T, 4] b0..b3, C: [T, 4] c0..c3 (float32) -> D [T, 4]."""
        W = st.T // 32
        Am = np.zeros((W, 16, 16), np.float32)
        Bm = np.zeros((W, 16, 8), np.float32)
        Cm = np.zeros((W, 16, 8), np.float32)
        A = A.reshape(W, 32, 8)
        B = B.reshape(W, 32, 4)
        C = C.reshape(W, 32, 4)
        for lane in range(32):
            for i in range(8):
                r, c = isa.mma_a(lane, i)
                Am[:, r, c] = A[:, lane, i]
            for i in range(4):
                r, c = isa.mma_b(lane, i)
                Bm[:, r, c] = B[:, lane, i]
                r, c = isa.mma_c(lane, i)
                Cm[:, r, c] = C[:, lane, i]
        Dm = (Am.astype(np.float64) @ Bm.astype(np.float64) + Cm).astype(np.float32)
        D = np.zeros((W, 32, 4), np.float32)
        for lane in range(32):
            for i in range(4):
                r, c = isa.mma_c(lane, i)
                D[:, lane, i] = Dm[:, r, c]
        st.stats["mma"] = st.stats.get("mma", 0) + 1
        return D.reshape(st.T, 4)

    def op_nvgpu_mma_sync(self, o):
        a, b, c = self.ins(o)
        out = self.slots_out1(o)
        shape = list(ir.ArrayAttr(o.attributes["mmaShape"]))
        if [ir.IntegerAttr(x).value for x in shape] != [16, 8, 16]:
            raise SimError("only m16n8k16 is modeled")

        def run(st):
            if not np.all(st.mask):
                raise SimError("mma.sync in divergent control flow")
            A = st.env[a].astype(np.float32).reshape(st.T, 8)   # [r][e] = a_{2r+e}
            B = st.env[b].astype(np.float32).reshape(st.T, 4)
            C = st.env[c].astype(np.float32).reshape(st.T, 4)
            st.env[out] = self._mma(st, A, B, C).reshape(st.T, 2, 2)
        return run

    def op_nvvm_mma_sync(self, o):
        ins = self.ins(o)
        if len(ins) != 10:
            raise SimError("nvvm.mma.sync: expected 4 A, 2 B, 4 C operands")
        out = self.slots_out1(o)

        def unpack(x):
            x = np.asarray(x, np.int64)
            return np.stack([bits_bf16(x & 0xFFFF), bits_bf16((x >> 16) & 0xFFFF)], 1)

        def run(st):
            if not np.all(st.mask):
                raise SimError("mma.sync in divergent control flow")
            A = np.concatenate([unpack(st.env[i]) for i in ins[0:4]], 1)
            B = np.concatenate([unpack(st.env[i]) for i in ins[4:6]], 1)
            C = np.stack([np.asarray(st.env[i], np.float32) for i in ins[6:10]], 1)
            D = self._mma(st, A, B, C)
            st.env[out] = tuple(D[:, i] for i in range(4))
        return run

    # ---- scf
    def op_scf_yield(self, o):
        ins = self.ins(o)
        track = self.track

        def run(st):
            st.env["__yield__"] = [st.env[i] for i in ins]
            if track:
                st.env["__ystamp__"] = [st.stamp.get(i, -1) for i in ins]
        return run

    def op_scf_if(self, o):
        (c,) = self.ins(o)
        outs = self.outs(o)
        then_b = self.compile_block(o.regions[0].blocks[0])
        else_b = self.compile_block(o.regions[1].blocks[0]) if len(o.regions[1].blocks) else []

        track = self.track

        def body(st, steps):
            for s in steps:
                s(st)
            return st.env.pop("__yield__", []), st.env.pop("__ystamp__", [-1] * len(outs))

        def merge(cond, x, y):
            if isinstance(x, tuple):
                return tuple(merge(cond, a, b) for a, b in zip(x, y))
            cc = cond.reshape(cond.shape + (1,) * (np.ndim(x) - 1))
            return np.where(cc, x, y)

        def run(st):
            cond = np.broadcast_to(st.env[c], (st.T,))
            act = cond[st.mask]
            if act.size == 0:
                return
            if np.all(act) or not np.any(act):
                res, stamps = body(st, then_b if act[0] else else_b)
                for s, v, t in zip(outs, res, stamps):
                    st.env[s] = v
                    if track:
                        st.stamp[s] = t
                return
            saved = st.mask
            st.mask = saved & cond
            r1, t1 = body(st, then_b)
            st.mask = saved & ~cond
            r2, t2 = body(st, else_b)
            st.mask = saved
            for s, x, y, a, b in zip(outs, r1, r2, t1, t2):
                st.env[s] = merge(cond, x, y)
                if track:
                    st.stamp[s] = max(a, b)
        return run

    def op_scf_for(self, o):
        lb, ub, step, *inits = self.ins(o)
        blk = o.regions[0].blocks[0]
        iv = self.slot(blk.arguments[0])
        iters = [self.slot(a) for a in list(blk.arguments)[1:]]
        outs = self.outs(o)
        steps = self.compile_block(blk)

        track = self.track

        def run(st):
            lo = uniform(st.env[lb], st, "loop bound")
            hi = uniform(st.env[ub], st, "loop bound")
            sp = uniform(st.env[step], st, "loop step")
            vals = [st.env[i] for i in inits]
            stamps = [st.stamp.get(i, -1) for i in inits] if track else []
            for i in range(lo, hi, sp):
                st.env[iv] = np.full(st.T, i, np.int64)
                for s, v in zip(iters, vals):
                    st.env[s] = v
                for s, t in zip(iters, stamps):
                    st.stamp[s] = t
                for s in steps:
                    s(st)
                vals = st.env.pop("__yield__", [])
                stamps = st.env.pop("__ystamp__", [])
            for s, v in zip(outs, vals):
                st.env[s] = v
            for s, t in zip(outs, stamps):
                st.stamp[s] = t
        return run

    # ---- host side
    def op_func_return(self, o):
        return lambda st: None

    def op_gpu_launch_func(self, o):
        seg = list(ir.DenseI32ArrayAttr(o.attributes["operandSegmentSizes"]))
        ins = self.ins(o)
        pos = 0
        parts = []
        for n in seg:
            parts.append(ins[pos:pos + n])
            pos += n
        # asyncDeps, gx, gy, gz, bx, by, bz, cx, cy, cz, dynSmem, args, asyncObject
        grid, block, smem, args = parts[1:4], parts[4:7], parts[10], parts[11]
        ref = str(o.attributes["kernel"]).lstrip("@").replace("::@", "::")

        def run(st):
            g = [uniform(st.env[x[0]], st, "grid") for x in grid]
            bl = [uniform(st.env[x[0]], st, "block") for x in block]
            nbytes = uniform(st.env[smem[0]], st, "smem") if smem else 0
            if bl[1] != 1 or bl[2] != 1:
                raise SimError("only 1-D thread blocks are modeled")
            kop, ksteps = self.kernels[ref]
            kargs = list(kop.regions[0].blocks[0].arguments)
            vals = [st.env[a] for a in args]
            st.stats["launch"] = dict(grid=g, block=bl, smem=nbytes)
            for bz in range(g[2]):
                for by in range(g[1]):
                    for bx in range(g[0]):
                        ks = State(T=bl[0], env={}, mask=np.ones(bl[0], bool),
                                   shared=Shared.make(nbytes, self.smem_base), block=(bx, by, bz),
                                   grid=tuple(g),
                                   stats=st.stats)
                        for ka, v in zip(kargs, vals):
                            ks.env[self.slot(ka)] = v
                        for s in ksteps:
                            s(ks)
                        if ks.pending or any(ks.groups):
                            self._retire(ks, [c for grp in ks.groups for c in grp] + ks.pending)
                        for grp in ks.mbars.values():
                            for b in range(grp.n):
                                if grp.loads[b]:
                                    raise SimError("the kernel exits with TMA loads in flight that "
                                                   "no thread waited for (" + grp.state(b) + ")")
        return run

    # ---- entry point
    def run(self, func: str, *arrays: np.ndarray, elts: list[str]) -> dict:
        """Runs host function `func` on numpy arrays (one per memref argument,
        outputs written in place). bf16 data is float32 rounded to bf16."""
        f = self.funcs[func]
        args = list(f.regions[0].blocks[0].arguments)
        st = State(T=1, env={}, mask=np.ones(1, bool))
        for a, arr, elt in zip(args, arrays, elts):
            shape = list(arr.shape)
            st.env[self.slot(a)] = MemRef(arr.reshape(-1), "global", elt, 0, shape, identity_strides(shape))
        for s in self.host[func]:
            s(st)
        return st.stats

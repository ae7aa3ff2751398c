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

    @staticmethod
    def make(nbytes: int) -> "Shared":
        n = max(1, nbytes // 2)
        return Shared(np.zeros(n, np.float32), np.full(n, -1, np.int64), np.full(n, -1, np.int64),
                      np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n, bool))


@dataclass
class MemRef:
    buf: Any                 # np.ndarray (global: flat; private: [T, n]) or Shared
    space: str               # "global", "shared", "private"
    elt: str                 # "f32", "f16", "bf16", "int", ...
    offset: int
    sizes: list[int]
    strides: list[int]

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


# --------------------------------------------------------------------------- compiler

class Program:
    """Compiles the ops of a module into closures once; run() executes."""

    def __init__(self, module: ir.Module):
        self.module = module  # keeps the ops alive
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
        return fn(o)

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
            st.env[out] = MemRef(st.shared, "shared", "i8", 0, [DYN], [1])
        return run

    def op_gpu_barrier(self, o):
        def run(st):
            if not np.all(st.mask):
                raise SimError("gpu.barrier in divergent control flow")
            st.epoch += 1
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
            st.env[out] = MemRef(m.buf, m.space, elt, b // 2, list(shape), identity_strides(shape))
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
            st.env[out] = MemRef(buf, "private", vt.kind, 0, list(shape), identity_strides(shape))
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
                                 [nstr[i] for i in keep])
        return run

    def op_memref_cast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)

        def run(st):
            st.env[out] = st.env[a]
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
                raise SimError("memref.load from shared memory is not modeled")
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
        if not (src_t.kind == "bf16" and src_t.shape == (2,) and dst_t.kind == "int" and dst_t.shape == (1,)):
            raise SimError("only vector<2xbf16> -> vector<1xi32> bitcasts are modeled")

        def run(st):
            x = st.env[a]
            b = bf16_bits(x)
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
            # Write-after-read: another thread read these since the last barrier.
            bad = (sh.r_epoch[d] == st.epoch) & (sh.r_thread[d] != t[:, None])
            if np.any(bad):
                raise SimError("cp.async overwrites shared data another thread read since the "
                               "last barrier (missing barrier)")
            if np.any(sh.inflight[d]):
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
            if np.any(sh.inflight[flat]):
                raise SimError("ldmatrix reads shared memory a cp.async has not finished writing "
                               "(missing cp.async.wait_group)")
            raw = (sh.w_epoch[flat] == st.epoch) & (sh.w_thread[flat] != reader)
            if np.any(raw):
                raise SimError("ldmatrix reads shared data another thread wrote since the last "
                               "barrier (missing barrier)")
            same = sh.r_epoch[flat] == st.epoch
            sh.r_thread[flat] = np.where(same & (sh.r_thread[flat] != reader), -2, reader)
            sh.r_epoch[flat] = st.epoch
            vals = sh.data[flat].reshape(st.T, tiles, 2)
            st.env[out] = vals.astype(np.float16) if elt == "f16" else vals
            st.stats["ldmatrix"] = st.stats.get("ldmatrix", 0) + 1
        return run

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

        def run(st):
            st.env["__yield__"] = [st.env[i] for i in ins]
        return run

    def op_scf_if(self, o):
        (c,) = self.ins(o)
        outs = self.outs(o)
        then_b = self.compile_block(o.regions[0].blocks[0])
        else_b = self.compile_block(o.regions[1].blocks[0]) if len(o.regions[1].blocks) else []

        def body(st, steps):
            for s in steps:
                s(st)
            return st.env.pop("__yield__", [])

        def run(st):
            cond = np.broadcast_to(st.env[c], (st.T,))
            act = cond[st.mask]
            if act.size == 0:
                return
            if np.all(act) or not np.any(act):
                res = body(st, then_b if act[0] else else_b)
                for s, v in zip(outs, res):
                    st.env[s] = v
                return
            saved = st.mask
            st.mask = saved & cond
            r1 = body(st, then_b)
            st.mask = saved & ~cond
            r2 = body(st, else_b)
            st.mask = saved
            for s, x, y in zip(outs, r1, r2):
                cc = cond.reshape(cond.shape + (1,) * (np.ndim(x) - 1))
                st.env[s] = np.where(cc, x, y)
        return run

    def op_scf_for(self, o):
        lb, ub, step, *inits = self.ins(o)
        blk = o.regions[0].blocks[0]
        iv = self.slot(blk.arguments[0])
        iters = [self.slot(a) for a in list(blk.arguments)[1:]]
        outs = self.outs(o)
        steps = self.compile_block(blk)

        def run(st):
            lo = uniform(st.env[lb], st, "loop bound")
            hi = uniform(st.env[ub], st, "loop bound")
            sp = uniform(st.env[step], st, "loop step")
            vals = [st.env[i] for i in inits]
            for i in range(lo, hi, sp):
                st.env[iv] = np.full(st.T, i, np.int64)
                for s, v in zip(iters, vals):
                    st.env[s] = v
                for s in steps:
                    s(st)
                vals = st.env.pop("__yield__", [])
            for s, v in zip(outs, vals):
                st.env[s] = v
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
                                   shared=Shared.make(nbytes), block=(bx, by, bz), grid=tuple(g),
                                   stats=st.stats)
                        for ka, v in zip(kargs, vals):
                            ks.env[self.slot(ka)] = v
                        for s in ksteps:
                            s(ks)
                        if ks.pending or any(ks.groups):
                            self._retire(ks, [c for grp in ks.groups for c in grp] + ks.pending)
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

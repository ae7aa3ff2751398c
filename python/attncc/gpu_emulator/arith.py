"""Scalar and index arithmetic: the arith and affine dialects (integers as
int64 per thread, with explicit wrap-around for shifts and i<64 casts)."""
from __future__ import annotations

import re

import numpy as np
from mlir import ir

from .machine import SimError, np_dtype, parse_type, round_bf16

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


class ArithOps:
    """arith.* and affine.apply handlers (mixin of Program)."""

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
    def op_arith_ceildivui(self, o): return self._binary(o, lambda x, y: -((-x) // y))
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

    def op_arith_bitcast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        src, dst = str(o.operands[0].type), str(o.results[0].type)
        if (src, dst) not in (("i32", "f32"), ("f32", "i32")):
            raise SimError(f"only i32 <-> f32 bitcasts are modeled, got {src} -> {dst}")

        def run(st):
            x = np.asarray(st.env[a])
            if src == "i32":
                st.env[out] = (x.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
            else:
                st.env[out] = x.astype(np.float32).view(np.uint32).astype(np.int64)
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

    def op_arith_sitofp(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        ty = parse_type(str(o.results[0].type))
        if ty.shape or ty.kind != "f32":
            raise SimError(f"arith.sitofp to {o.results[0].type}: only scalar f32 is modeled")

        def run(st):
            st.env[out] = np.asarray(st.env[a]).astype(np.float32)  # round to nearest
        return run

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

    # ---- math (integer)
    def op_math_cttz(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        bits = _int_bits(str(o.results[0].type))

        def run(st):
            x = _unsigned(st.env[a], bits)
            low = x & (~x + np.uint64(1))           # the lowest set bit (0 for 0)
            n = np.where(low == 0, bits, np.log2(np.maximum(low, 1).astype(np.float64)))
            st.env[out] = np.asarray(n).astype(np.int64)
        return run

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

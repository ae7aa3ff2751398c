"""sm_90a warpgroup MMA (wgmma, PTX ISA "Asynchronous Warpgroup Level Matrix
Multiply-Accumulate"; layouts and descriptors from ptx_isa.py), modeled as
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
Both nvvm.wgmma.mma_async and the inline-asm form
(`wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16,bf16}` with A in registers)
are modeled.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from mlir import ir

from . import ptx_isa as isa
from .machine import SimError, State, bits_bf16, struct_len

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

_WGMMA_ASM = re.compile(
    r"\s*wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k16\.f32\.(f16|bf16)\.(f16|bf16)\s+"
    r"\{([^}]*)\}\s*,\s*\{([^}]*)\}\s*,\s*\$(\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)"
    r"\s*,\s*(-?\d+)\s*;?\s*")


def _asm_refs(text: str) -> list[int]:
    refs = [r.strip() for r in text.split(",")]
    if not all(re.fullmatch(r"\$\d+", r) for r in refs):
        raise SimError(f"inline asm operand list {text!r} not modeled")
    return [int(r[1:]) for r in refs]

class WgmmaOps:
    """nvvm.wgmma.*, the inline-asm wgmma and nvvm.fence.proxy (mixin of Program)."""

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
        if struct_len(str(o.results[0].type)) != n // 2:
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
        if out is None or struct_len(str(o.results[0].type)) != n // 2 or n_out != n // 2:
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

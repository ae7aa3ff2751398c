"""sm_90a mbarriers (PTX ISA "mbarrier"), in static shared memory, per block
(`MBarrierGroup`):
  * init(count) sets pending arrivals = count, tx-count 0, phase 0;
    arrive.expect_tx(bytes) adds bytes to the tx-count, then arrives; a phase
    completes when pending arrivals and tx-count are both 0 (the parity flips,
    pending arrivals reset to count);
  * try_wait.parity(P) returns at once when the current phase's parity
    differs from P (the phase with parity P completed), else lands the
    barrier's TMA loads in issue order until the phase completes; if it
    cannot complete that way (missing arrive or expect_tx, too many bytes
    expected) no other thread can make it complete in lockstep: "deadlock";
  * mbarrier.init must be made visible by a gpu.barrier before other threads
    use the barrier, and to the async proxy (the TMA's complete-tx) by a
    fence.proxy.async / fence.mbarrier_init of the initializing thread
    (waivable: "mbarrier-init-fence"); an arrive or TMA load toward phase P
    must be ordered (by a gpu.barrier) after the other threads' waits on
    phase P - 1, else the phase could complete before a slow thread waits and
    that thread would wait, with the same parity, for phase P + 1 (parity
    aliasing); more arrivals than the init count in one phase are an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .machine import SimError, State, uniform

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

class MBarrierOps:
    """nvgpu.mbarrier.* and nvvm.fence.mbarrier_init (mixin of Program)."""

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

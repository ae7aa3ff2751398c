"""A SIMT emulator for the GPU kernels attncc generates (the "gpu" stage:
host function + outlined gpu.func with gpu / nvgpu / nvvm / arith / vector /
memref / scf / llvm ops), so that their numerics and their synchronization
can be checked on a machine without a GPU.

    from attncc.gpu_emulator import Program
    prog = Program(ir.Module.parse(gpu_stage_ir))     # inside an MLIR context
    stats = prog.run("attention", q, k, v, out, elts=["f16"] * 4)

`run` executes the host function on numpy arrays (one per memref argument,
outputs written in place; bf16 data is float32 rounded to bf16); each
gpu.launch_func runs every block of its grid in turn. All threads of a block
run in lockstep over numpy arrays with one row per thread (warp-collective
ops see the whole warp); divergent scf.if runs both sides under an
active-thread mask. It returns counters (launch shape, barriers, cp.async,
ldmatrix, mma, wgmma, tma, ...).

What it checks (a violation raises `SimError`, an AssertionError):
  * the meaning of ldmatrix, mma.sync, wgmma descriptors / fragments and TMA
    tensor maps, boxes and swizzles comes from the PTX ISA tables of
    `ptx_isa` (encoded from the PTX ISA document, not from attncc's C++);
  * shared-memory races: read-after-write and write-after-read between
    threads without a barrier, reads of data a cp.async / TMA load has not
    finished writing (memref.py, cp_async.py);
  * the asynchronous protocols of sm_90a: wgmma groups, wgmma.fence and the
    generic / async proxy fences (wgmma.py), TMA tensor-map fences, mbarrier
    phases, tx-counts, parity aliasing and deadlocks (tma.py, mbarrier.py);
  * uniformity of values that must be uniform (loop bounds, shuffle offsets,
    descriptors per warpgroup), collective ops in divergent control flow,
    alignment of ldmatrix rows and TMA destinations.
Some checks can be waived by name while a known kernel bug is open
(`Program.WAIVABLE`, `Program(..., waive=...)`).

What it does not model: timing or performance (bank conflicts, occupancy,
latency); the memory model beyond the rules above (no global-memory races,
no inter-block communication: blocks run one after another); independent
thread scheduling (lockstep only); shuffle modes other than xor over a full
warp; 2-D / 3-D thread blocks; mma shapes other than m16n8k16; wgmma other
than m64nNk16 f16 / bf16 -> f32; TMA multicast and 4-byte TMA elements;
stores to shared memory other than cp.async / TMA; non-splat vector
constants; intrinsics other than ex2, rcp and lg2. An op it does not know raises
SimError ("the emulator does not know ...").

Layout: machine.py (values, memory spaces, block state), interpreter.py (op
dispatch, def-time stamps, scf), one mixin of op handlers per ISA area
(arith.py, vector.py, memref.py, lanes.py, cp_async.py, mma.py, wgmma.py,
tma.py, mbarrier.py), program.py (`Program`: the mixins composed, host side,
run()), ptx_isa.py (the PTX ISA layout tables).

This package is a leaf component: it imports only the standard library,
numpy and the upstream `mlir` Python bindings, nothing else from attncc
(keep it that way; test/python/gpu_emulator/test_emu_package.py checks it).
"""
from __future__ import annotations

from . import ptx_isa
from .machine import MemRef, Shared, SimError, State, bf16_bits, bits_bf16, round_bf16
from .program import Program
from .tma import TensorMap
from .mbarrier import MBarrierGroup
from .wgmma import Pending, WgToken

__all__ = ["Program", "SimError", "round_bf16", "bf16_bits", "bits_bf16", "Pending", "WgToken",
           "TensorMap", "MBarrierGroup", "MemRef", "Shared", "State", "ptx_isa"]

"""Numerics of the generated GPU kernels without a GPU: the 'gpu' stage (the
kernel attncc hands to the NVVM pipeline) runs in the SIMT emulator
(attncc.gpu_emulator: lockstep threads, ldmatrix/mma.sync per the PTX ISA
tables, cp.async landing only at wait_group, shared-memory race checks) and is
compared with a float64 SDPA reference. The sm_90a kernels (warpgroup MMA:
wgmma.mma_async with shared-memory descriptors and 128-byte swizzle, inline
PTX wgmma with A in registers, fence.proxy.async) run the same way, with the
emulator's wgmma model (async results, wgmma.fence / proxy-fence checks), in
both flavours: K/V/Q tiles by cp.async, and by TMA loads on mbarriers (tensor
maps made in the host function, 128-byte swizzle and zero fill per
cuTensorMapEncodeTiled, loads landing only at the mbarrier wait that
completes their phase, deadlock / in-flight / write-after-read checks).

What this does not cover: the NVVM/PTX lowering below the 'gpu' stage and the
hardware itself; those are covered by ptxas (test_gpu_compile.py) and by
`pytest -m gpu` on a machine with a GPU (test_gpu_device.py)."""
import dataclasses
import math
import re

import numpy as np
import pytest
import torch
from mlir import ir

from attncc import gpu_emulator as emu
from attncc import context
from gpu_testing import Config, emulate

CASES = {
    "causal-f16-d64": Config(),
    "none-f16-d64": Config(mask="none"),
    "bias-f16-d64": Config(mask="bias"),
    "gqa-causal": Config(H=4, Hkv=2),
    "mqa-none": Config(H=4, Hkv=1, mask="none", Lq=70),
    "bf16-causal": Config(dtype="bf16"),
    "bf16-bias-d128": Config(dtype="bf16", D=128, mask="bias", Lq=80),
    "d128-causal": Config(D=128),
    "causal-lq-ne-lk": Config(Lq=37, Lk=150),
    "tails-none": Config(Lq=37, Lk=150, mask="none"),
    "one-stage": Config(num_stages=1, Lq=150),
    "three-stages-long": Config(num_stages=3, block_n=32, mask="none", Lq=300, H=1),
    "four-stages-causal": Config(num_stages=4, block_n=16, Lq=200, H=1),
    "unroll2-causal": Config(num_stages=3, block_n=32, unroll=2, Lq=260, H=1),
    "8-warps-128x64-3-stages-d128": Config(D=128, block_m=128, block_n=64, num_stages=3, Lq=300, H=1),
    "sliding-window": Config(mask="sliding_window", window=40, Lq=200, block_n=32, num_stages=3, H=1),
    "bias-2d-f16-broadcast": Config(mask="bias", bias_shape=(100, 100), bias_dtype="f16"),
    "bias-head-broadcast": Config(mask="bias", bias_shape=(1, 1, 100, 100), H=2, Hkv=1),
    "dynamic-lengths": Config(dynamic=True, Lq=90, H=2),
    "tiny": Config(Lq=5, H=1),
    "batch2": Config(B=2, H=1, Lq=64, mask="none"),
}


@pytest.mark.parametrize("cfg", list(CASES.values()), ids=list(CASES))
def test_emulated_kernel_matches_sdpa(cfg):
    compiled = cfg.compile("sm_80", stop_after="gpu")
    ts = cfg.inputs()
    out, stats = emulate(compiled.ir("gpu"), cfg, ts)
    ref = cfg.reference(ts)
    err = (out.double() - ref).abs().max().item()
    assert err < cfg.tolerance(), f"max abs error {err}"
    # One thread block per (query block, head, batch); canonicalization drops
    # grid dimensions of extent 1, the remaining ones map to x, y, z.
    launch = stats["launch"]
    assert math.prod(launch["grid"]) == -(-cfg.Lq // cfg.block_m) * cfg.H * cfg.B
    assert launch["block"] == [2 * cfg.block_m, 1, 1]
    assert stats["mma"] > 0 and stats["cp.async"] > 0 and stats["ldmatrix"] > 0


def _kernel_lines(cfg):
    return cfg.compile("sm_80", stop_after="gpu").ir("gpu").split("\n")


def _run(cfg, lines):
    ts = cfg.inputs()
    out, _ = emulate("\n".join(lines), cfg, ts)
    return (out.double() - cfg.reference(ts)).abs().max().item()


MUTANT_CFG = Config(num_stages=3, block_n=32, mask="none", Lq=200, H=1)


def _sync_points(lines):
    """(cp.async wait lines, Q barrier, loop WAR barrier, loop wait barrier)
    of a pipelined cp.async kernel, checked to come in that order."""
    waits = [i for i, l in enumerate(lines) if "device_async_wait" in l]
    bars = [i for i, l in enumerate(lines) if "gpu.barrier" in l]
    q_bar, war_bar, wait_bar = bars[0], bars[1], bars[2]
    assert waits[0] < q_bar < war_bar < waits[1] < wait_bar
    return waits, q_bar, war_bar, wait_bar


@pytest.mark.parametrize("mutation,message", [
    ("wait_one_less", "has not finished writing"),
    ("drop_war_barrier", "overwrites shared data another thread read"),
    ("drop_wait_barrier", "another thread wrote since the last barrier"),
    ("drop_q_barrier", "another thread wrote since the last barrier"),
])
def test_emulator_catches_broken_synchronization(mutation, message):
    # The emulator's race checks are what make "no error" above meaningful:
    # each of these single edits of a correct kernel must be caught.
    lines = _kernel_lines(MUTANT_CFG)
    # Order in the kernel: Q wait + barrier, loop: WAR barrier, copies, wait +
    # barrier, epilogue waits + barriers.
    waits, q_bar, war_bar, wait_bar = _sync_points(lines)
    if mutation == "wait_one_less":
        lines[waits[1]] = re.sub(r"numGroups = (\d+)",
                                 lambda m: f"numGroups = {int(m.group(1)) + 1}", lines[waits[1]])
    else:
        drop = {"drop_war_barrier": war_bar, "drop_wait_barrier": wait_bar, "drop_q_barrier": q_bar}
        del lines[drop[mutation]]
    with pytest.raises(emu.SimError, match=message):
        _run(MUTANT_CFG, lines)


def test_emulator_unmutated_kernel_is_clean():
    assert _run(MUTANT_CFG, _kernel_lines(MUTANT_CFG)) < MUTANT_CFG.tolerance()


# --------------------------------------------------------------------------- sm_90a (wgmma)

# A representative subset of CASES; the wgmma path needs whole warpgroups
# (num_warps = block_m / 16 a multiple of 4).
SM90_CASES = {
    "causal-f16-d64": Config(),
    "none-f16-d64": Config(mask="none"),
    "bias-f16-d64": Config(mask="bias"),
    "bf16-causal": Config(dtype="bf16"),
    "bf16-bias-d128": Config(dtype="bf16", D=128, mask="bias", Lq=80),
    "d128-causal": Config(D=128),
    "gqa-causal": Config(H=4, Hkv=2),
    "mqa-none": Config(H=4, Hkv=1, mask="none", Lq=70),
    "tails-none": Config(Lq=37, Lk=150, mask="none"),
    "causal-lq-ne-lk": Config(Lq=37, Lk=150),
    "8-warps-128x64-3-stages-d128": Config(D=128, block_m=128, block_n=64, num_stages=3, Lq=300, H=1),
    "8-warps-bf16-none-d64": Config(dtype="bf16", block_m=128, mask="none", Lq=150, H=1),
    "three-stages-bn32": Config(num_stages=3, block_n=32, mask="none", Lq=200, H=1),
    "one-stage": Config(num_stages=1, Lq=150, H=1),
    "sliding-window": Config(mask="sliding_window", window=40, Lq=200, block_n=32, num_stages=3, H=1),
    "dynamic-lengths": Config(dynamic=True, Lq=90, H=1),
    "unroll2-3-stages": Config(unroll=2, num_stages=3, block_n=32, Lq=260, H=1),
}

# Dynamic shared memory at a 16-byte but not 1024-byte aligned address: the
# kernel must align its 128-byte-swizzled tiles itself.
UNALIGNED_SMEM = 0x230

# The fences of the CUDA Programming Guide's TMA section that the emulator
# checks (test_tma_kernel_fences): the mbarrier inits made visible to the
# async proxy (fence.proxy.async.shared::cta before the barrier), and the
# tensor maps the host copied to global memory acquired for the tensormap
# proxy (nvgpu.tma.fence.descriptor) before their first use in each block.
TMA_FENCE_CHECKS = ("mbarrier-init-fence", "tensormap-fence")




def _emulate(gpu_ir: str, cfg: Config, ts, smem_base: int = 0, waive=()):
    def arr(t):
        return t.float().numpy().copy() if t.dtype == torch.bfloat16 else t.numpy().copy()
    out = np.zeros((cfg.B, cfg.H, cfg.Lq, cfg.D), np.float16 if cfg.dtype == "f16" else np.float32)
    elts = [cfg.dtype] * 3 + ([cfg.bias_dtype] if cfg.mask == "bias" else []) + [cfg.dtype]
    with context.mlir_context():
        prog = emu.Program(ir.Module.parse(gpu_ir), smem_base=smem_base, waive=waive)
        stats = prog.run("attention", *[arr(t) for t in ts], out, elts=elts)
    return torch.from_numpy(out.astype(np.float32)), stats


@pytest.mark.parametrize("tma", [False, True], ids=["cp.async", "tma"])
@pytest.mark.parametrize("cfg", list(SM90_CASES.values()), ids=list(SM90_CASES))
def test_emulated_sm90a_kernel_matches_sdpa(cfg, tma):
    cfg = dataclasses.replace(cfg, tma=tma)
    compiled = cfg.compile("sm_90a", stop_after="gpu")
    ts = cfg.inputs()
    smem_base = UNALIGNED_SMEM if cfg.num_stages == 3 else 0
    out, stats = _emulate(compiled.ir("gpu"), cfg, ts, smem_base, ())
    err = (out.double() - cfg.reference(ts)).abs().max().item()
    assert err < cfg.tolerance(), f"max abs error {err}"
    launch = stats["launch"]
    assert math.prod(launch["grid"]) == -(-cfg.Lq // cfg.block_m) * cfg.H * cfg.B
    assert launch["block"] == [2 * cfg.block_m, 1, 1]
    # The warpgroup path: wgmma for both products, no warp-level mma.sync.
    assert stats["wgmma"] > 0 and "mma" not in stats and "ldmatrix" not in stats
    if not tma:
        assert stats["cp.async"] > 0 and stats["fence.proxy.async"] > 0 and "tma" not in stats
        return
    # TMA: every tile by a box load on an mbarrier, nothing by cp.async;
    # Q, K and V each through one tensor map.
    assert stats["tma"] > 0 and stats["mbarrier.wait"] > 0 and "cp.async" not in stats
    assert stats["tensor maps"] == 3
    # Tiles reaching past the end of the sequence come back zero-filled
    # (out-of-bound rows of the box), which the results above depend on.
    tails = cfg.Lq % cfg.block_m or cfg.lk % cfg.block_n
    assert (stats["tma.oob"] > 0) == bool(tails)


SM90_MUTANT_CFG = Config(num_stages=3, block_n=32, mask="none", Lq=200, H=1, block_m=128, tma=False)


def _sm90_lines(cfg):
    return cfg.compile("sm_90a", stop_after="gpu").ir("gpu").split("\n")


@pytest.mark.parametrize("mutation,message", [
    ("drop_proxy_fences", "generic-proxy write not fenced before wgmma read"),
    ("proxy_fence_after_barrier", "fence.proxy.async not followed by a barrier"),
    ("drop_wgmma_waits", "before a wgmma.wait_group retired it"),
    ("drop_wgmma_fences", "before any wgmma.fence"),
    ("drop_pv_wgmma_fence", "registers written by a non-wgmma op after the last"),
    ("wait_one_less", "cp.async has not finished writing"),
    ("drop_war_barrier", "overwrites shared data another thread read"),
    ("drop_wait_barrier", "wgmma reads shared data written since the last barrier"),
])
def test_emulator_catches_broken_wgmma_kernel(mutation, message):
    # Two warpgroups share the K/V tiles, so the barriers matter across them.
    lines = _sm90_lines(SM90_MUTANT_CFG)
    # Order: Q/K/V waits + proxy fence + barrier, loop: WAR barrier, copies,
    # wait + proxy fence + barrier, wgmmas; epilogue the same without copies.
    waits, q_bar, war_bar, wait_bar = _sync_points(lines)
    assert "nvvm.fence.proxy" in lines[wait_bar - 1]
    if mutation == "proxy_fence_after_barrier":
        lines.insert(wait_bar + 1, lines.pop(wait_bar - 1))
    elif mutation == "drop_pv_wgmma_fence":
        # The second wgmma.fence of the loop body (before P.V): O was rescaled
        # by the softmax update since the fence before Q.K^T.
        fences = [i for i, l in enumerate(lines) if "wgmma.fence.aligned" in l and i > wait_bar]
        del lines[fences[1]]
    elif mutation == "wait_one_less":
        lines[waits[1]] = re.sub(r"numGroups = (\d+)",
                                 lambda m: f"numGroups = {int(m.group(1)) + 1}", lines[waits[1]])
    elif mutation.startswith("drop_") and mutation.endswith("_barrier"):
        del lines[{"drop_war_barrier": war_bar, "drop_wait_barrier": wait_bar}[mutation]]
    else:
        key = {"drop_proxy_fences": "nvvm.fence.proxy", "drop_wgmma_waits": "wgmma.wait.group",
               "drop_wgmma_fences": "wgmma.fence.aligned"}[mutation]
        lines = [l for l in lines if key not in l]
    with pytest.raises(emu.SimError, match=message):
        _run90(SM90_MUTANT_CFG, lines)


def _run90(cfg, lines, waive=()):
    ts = cfg.inputs()
    out, _ = _emulate("\n".join(lines), cfg, ts, waive=waive)
    return (out.double() - cfg.reference(ts)).abs().max().item()


def test_emulator_unmutated_wgmma_kernel_is_clean():
    assert _run90(SM90_MUTANT_CFG, _sm90_lines(SM90_MUTANT_CFG)) < SM90_MUTANT_CFG.tolerance()


def test_sm90a_pv_fragments_written_before_the_wgmma_fence():
    # PTX ISA, wgmma.fence: required "between a register access by a thread in
    # the warpgroup and any wgmma.mma_async instruction that accesses the same
    # registers, either as accumulator or input register containing fragments
    # of matrix A". (ptxas otherwise injects warpgroup.arrive, C7519.)
    cfg = dataclasses.replace(SM90_CASES["causal-f16-d64"], tma=False)
    assert _run90(cfg, _sm90_lines(cfg)) < cfg.tolerance()


# --------------------------------------------------------------------------- sm_90a TMA

SM90_TMA_MUTANT_CFG = Config(num_stages=3, block_n=32, mask="none", Lq=200, H=1, block_m=128,
                             tma=True)


def _tma_mutate(lines: list[str], mutation: str, stages: int) -> list[str]:
    """One edit of the TMA kernel. Its order: mbarrier.init x (S + 1),
    gpu.barrier, Q expect_tx + loads, prologue K/V fills, Q wait; KV loop:
    gpu.barrier (slot free), expect_tx + K/V loads, wait, Q.K^T wgmmas, ...;
    epilogue waits."""
    lines = list(lines)
    find = lambda key, lo=0, hi=None: [i for i, l in enumerate(lines[:hi]) if key in l and i >= lo]
    loop_end = find("{attn.kv_loop")[0]
    loop = find("scf.for", hi=loop_end)[-1]
    init_bar = find("gpu.barrier", lo=find("nvgpu.mbarrier.init")[-1])[0]
    q_wait = find("mbarrier.try_wait.parity")[0]
    war_bar = find("gpu.barrier", lo=loop)[0]
    expect = find("mbarrier.arrive.expect_tx", lo=loop)[0]
    wait = find("mbarrier.try_wait.parity", lo=loop)[0]
    assert init_bar < q_wait < loop < war_bar < expect < wait < loop_end
    assert "%false" in lines[q_wait]
    m = re.search(r"try_wait\.parity (%\w+)\[(%\w+)\], (%\w+),", lines[wait])
    bars, slot, parity = m.groups()
    if mutation == "flip_q_parity":
        lines[q_wait] = lines[q_wait].replace("%false", "%mut_true")
        lines.insert(q_wait, "%mut_true = arith.constant true")
    elif mutation == "flip_loop_parity":
        lines[wait] = lines[wait].replace(f"], {parity},", "], %mut_flip,")
        lines[wait:wait] = ["%mut_true = arith.constant true",
                            f"%mut_flip = arith.xori {parity}, %mut_true : i1"]
    elif mutation == "wrong_slot":
        # Waits on the next slot: (c + 1) % S instead of c % S.
        lines[wait] = lines[wait].replace(f"{bars}[{slot}]", f"{bars}[%mut_slot]")
        lines[wait:wait] = ["%mut_one = arith.constant 1 : index",
                            f"%mut_s = arith.constant {stages} : index",
                            f"%mut_next = arith.addi {slot}, %mut_one : index",
                            "%mut_slot = arith.remui %mut_next, %mut_s : index"]
    elif mutation == "drop_war_barrier":
        del lines[war_bar]
    elif mutation == "war_barrier_before_pv":
        # The slot barrier moves from the top of the loop body to before P.V:
        # waits are still ordered before the next fill, but V is read after it.
        pv_fence = find("wgmma.fence.aligned", hi=find("llvm.inline_asm", lo=wait)[0])[-1]
        lines.insert(pv_fence, lines[war_bar])
        del lines[war_bar]
    elif mutation == "drop_init_barrier":
        del lines[init_bar]
    elif mutation == "drop_expect_tx":
        del lines[expect]
    elif mutation == "drop_q_wait":
        del lines[q_wait]
    elif mutation in ("expect_fewer_bytes", "expect_more_bytes"):
        bytes_ = re.search(r"expect_tx %\w+\[%\w+\], (%\w+)", lines[expect]).group(1)
        n = int(re.search(r"\d+", bytes_.split("_")[0]).group(0))
        n = n // 2 if mutation == "expect_fewer_bytes" else 2 * n
        lines[expect] = lines[expect].replace(f"], {bytes_},", "], %mut_bytes,")
        lines.insert(expect, f"%mut_bytes = arith.constant {n} : index")
    elif mutation == "wait_after_qk":
        # The wait moves below the Q.K^T wgmmas (nvvm.wgmma.mma_async; P.V is
        # inline PTX) that read the slot.
        pv = find("llvm.inline_asm", lo=wait)[0]
        last_qk = find("nvvm.wgmma.mma_async", lo=wait, hi=pv)[-1]
        lines.insert(last_qk, lines.pop(wait))
    elif mutation == "unaligned_tiles":
        # The tiles at the dynamic shared memory base, not the next 1024-byte
        # boundary (0 instead of (-base) & 1023).
        pad = find("%c1023 : index")[0]
        lines[pad] = re.sub(r"arith\.andi (%\w+), %c1023", r"arith.andi \1, %c0", lines[pad])
    else:
        raise ValueError(mutation)
    return lines


@pytest.mark.parametrize("mutation,message", [
    ("flip_q_parity", "wgmma reads shared memory a TMA load has not finished writing"),
    ("flip_loop_parity", "wgmma reads shared memory a TMA load has not finished writing"),
    ("wrong_slot", "wgmma reads shared memory a TMA load has not finished writing"),
    ("drop_q_wait", "wgmma reads shared memory a TMA load has not finished writing"),
    ("wait_after_qk", "wgmma reads shared memory a TMA load has not finished writing"),
    ("expect_fewer_bytes", "wgmma reads shared memory a TMA load has not finished writing"),
    ("drop_war_barrier", "arrive.expect_tx for the next phase of mbarrier .* not ordered after "
                         "their waits"),
    ("war_barrier_before_pv",
     "TMA load overwrites shared data a thread read since the last barrier"),
    ("drop_expect_tx", "deadlock: mbarrier.try_wait.parity.*arrivals missing"),
    ("expect_more_bytes", "deadlock: mbarrier.try_wait.parity.*expects more bytes"),
    ("drop_init_barrier", "before a barrier made mbarrier.init visible"),
    ("unaligned_tiles", "is not 1024-byte aligned"),
])
def test_emulator_catches_broken_tma_kernel(mutation, message):
    cfg = SM90_TMA_MUTANT_CFG
    lines = _tma_mutate(_sm90_lines(cfg), mutation, cfg.num_stages)
    ts = cfg.inputs()
    with pytest.raises(emu.SimError, match=message):
        _emulate("\n".join(lines), cfg, ts, smem_base=UNALIGNED_SMEM)


def test_emulator_unmutated_tma_kernel_is_clean():
    cfg = SM90_TMA_MUTANT_CFG
    ts = cfg.inputs()
    out, stats = _emulate("\n".join(_sm90_lines(cfg)), cfg, ts, smem_base=UNALIGNED_SMEM)
    assert (out.double() - cfg.reference(ts)).abs().max().item() < cfg.tolerance()
    # Q: one [128, 64] box; K and V: one [32, 64] box per KV block of each of
    # the two query blocks; one wait for Q and one per KV block.
    kv_blocks = -(-cfg.lk // cfg.block_n)
    grid = -(-cfg.Lq // cfg.block_m)
    assert stats["tma"] == grid * (1 + 2 * kv_blocks)
    assert stats["mbarrier.wait"] == grid * (1 + kv_blocks)


def test_tma_tail_rows_are_read_and_must_be_zero():
    # The kernel relies on the tensor map's zero fill for the rows past the
    # end of K/V (emitTmaCopy: they are copy_tile's `valid`): the same kernel
    # with NaN fill (CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA) gives
    # NaN, so the emulator really fills and the kernel really reads them.
    cfg = dataclasses.replace(SM90_CASES["tails-none"], tma=True)
    text = cfg.compile("sm_90a", stop_after="gpu").ir("gpu")
    ts = cfg.inputs()
    out, stats = _emulate(text, cfg, ts)
    assert (out.double() - cfg.reference(ts)).abs().max().item() < cfg.tolerance()
    assert stats["tma.oob"] > 0
    out, _ = _emulate(text.replace("oob = zero", "oob = nan"), cfg, ts)
    assert torch.isnan(out).any()


@pytest.mark.parametrize("check", TMA_FENCE_CHECKS)
def test_tma_kernel_fences(check):
    # The kernel passes each check alone (the other waived) and both together
    # (every other TMA test), and fails it without its fence.
    cfg = dataclasses.replace(SM90_CASES["causal-f16-d64"], tma=True)
    text = cfg.compile("sm_90a", stop_after="gpu").ir("gpu")
    others = [c for c in TMA_FENCE_CHECKS if c != check]
    out, _ = _emulate(text, cfg, cfg.inputs(), waive=others)
    assert (out.double() - cfg.reference(cfg.inputs())).abs().max().item() < cfg.tolerance()
    lines = text.split("\n")
    if check == "tensormap-fence":
        lines = [l for l in lines if "nvgpu.tma.fence.descriptor" not in l]
    else:
        first = next(i for i, l in enumerate(lines) if "nvvm.fence.proxy" in l)
        assert "mbarrier.init" in lines[first - 1]  # the fence right after the inits
        del lines[first]
    with pytest.raises(emu.SimError):
        _emulate("\n".join(lines), cfg, cfg.inputs(), waive=others)

"""Numerics of the generated GPU kernels without a GPU: the 'gpu' stage (the
kernel attncc hands to the NVVM pipeline) runs in the SIMT emulator
(gpu_sim.py: lockstep threads, ldmatrix/mma.sync per the PTX ISA tables,
cp.async landing only at wait_group, shared-memory race checks) and is
compared with a float64 SDPA reference.

What this does not cover: the NVVM/PTX lowering below the 'gpu' stage and the
hardware itself; those are covered by ptxas (test_gpu_compile.py) and by
`pytest -m gpu` on a machine with a GPU (test_gpu_device.py)."""
import math
import re

import pytest
import torch

import gpu_sim
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
    waits = [i for i, l in enumerate(lines) if "device_async_wait" in l]
    bars = [i for i, l in enumerate(lines) if "gpu.barrier" in l]
    # Order in the kernel: Q wait + barrier, loop: WAR barrier, copies, wait +
    # barrier, epilogue waits + barriers.
    q_bar, war_bar, wait_bar = bars[0], bars[1], bars[2]
    assert waits[0] < q_bar < war_bar < waits[1] < wait_bar
    if mutation == "wait_one_less":
        lines[waits[1]] = re.sub(r"numGroups = (\d+)",
                                 lambda m: f"numGroups = {int(m.group(1)) + 1}", lines[waits[1]])
    else:
        drop = {"drop_war_barrier": war_bar, "drop_wait_barrier": wait_bar, "drop_q_barrier": q_bar}
        del lines[drop[mutation]]
    with pytest.raises(gpu_sim.SimError, match=message):
        _run(MUTANT_CFG, lines)


def test_emulator_unmutated_kernel_is_clean():
    assert _run(MUTANT_CFG, _kernel_lines(MUTANT_CFG)) < MUTANT_CFG.tolerance()

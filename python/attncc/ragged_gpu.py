"""Ragged (varlen) batches and paged KV caches on the GPU targets (issue 12).

attncc.ragged checks the user's tensors and index tensors (on the host) and
calls `run` here for a GPU target. The GPU kernel is attn.ragged_attention's
tile program lowered by attn-lower-to-gpu: a grid of (heads, work items),
each work item one query block of one sequence (the work table, built on the
host and copied to the device, rows longest-first), K/V rows copied by
cp.async, for a paged cache each row from its page through the block table
(docs/ragged-paged.md). ragged._run plans the launches for both kinds of
target: decode tokens in one launch whose blocks are the G query heads of a
KV head (split-KV across the SMs, merged with the LSEs), the other
sequences in one launch of 16 * num_warps-row query blocks.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch



def workers(q: torch.Tensor) -> int:
    """The split-KV plan's workers: the device's SMs (1 for host tensors, the
    tests' emulated launches: split only when forced)."""
    if q.device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(q.device).multi_processor_count


def work_on(work: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A schedule's work table on `device`: copied once and kept with the host
    table (attncc's own, never written after it is built; plans reuse their
    schedules across layers), so the layers of a step share one copy instead
    of a host-to-device copy each. The user's tensors are copied per call
    (they may be rewritten in place between calls)."""
    if work.device == device:
        return work
    kept = getattr(work, "_attncc_on", None)
    if kept is None or kept.device != device:
        kept = work.to(device)
        work._attncc_on = kept
    return kept


def launch(compiled: Any, inputs: list[torch.Tensor], out: torch.Tensor,
           extra: tuple[torch.Tensor, ...],
           runner: Optional[Callable[[Any, list[torch.Tensor]], None]] = None) -> None:
    """Launches the compiled kernel on inputs (q, k, v, work, [block_table],
    [slopes], [sinks]), out and the extra outputs (lse), the small host
    tensors (work and block tables, slopes, sinks) copied to out's device
    (the work table once per schedule: work_on).
    `runner`: another way to run the compiled kernel's arguments (the GPU
    emulator in the tests); default the CUDA runtime."""
    if not out.numel():
        return
    device = out.device
    args = [work_on(t, device) if i == 3 else t if t.device == device else t.to(device)
            for i, t in enumerate(inputs)] + [out, *extra]
    if runner is not None:
        runner(compiled, args)
    else:
        compiled._kernel.run_args(*args)

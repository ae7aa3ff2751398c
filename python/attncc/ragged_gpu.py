"""Ragged (varlen) batches and paged KV caches on the GPU targets (issue 12).

attncc.ragged checks the user's tensors and index tensors (on the host) and
calls `run` here for a GPU target. The GPU kernel is attn.ragged_attention's
tile program lowered by attn-lower-to-gpu: a grid of (heads, work items),
each work item one query block of one sequence (the work table, built on the
host and copied to the device, rows longest-first), K/V rows copied by
cp.async, for a paged cache each row from its page through the block table
(docs/ragged-paged.md). One launch serves the whole batch, prefill chunks
and decode tokens alike: a decode token is a work item with one valid row.

Not on the GPU (yet): split-KV for ragged / paged decode (num_splits > 1 is
refused), the CPU's decode form (the GQA group as the rows of one block).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from .errors import InputError


@dataclass
class GpuLaunch:
    """The host arguments of one ragged / paged GPU launch, in the kernel's
    order (q, k, v, work, [block_table], [alibi_slopes], [sinks], out, [lse]),
    and the tensors the API returns (`out` [T, Hq, Dv], `lse` [Hq, T] or None)."""

    args: list[torch.Tensor]
    out: torch.Tensor
    lse: Optional[torch.Tensor]


def check_splits(num_splits: Optional[int]) -> None:
    if num_splits not in (None, 1):
        raise InputError(f"num_splits={num_splits}: split-KV for ragged / paged attention runs "
                         "on the CPU target only; on the GPU targets use None or 1")


def launch_args(q: torch.Tensor, k4: torch.Tensor, v4: torch.Tensor, work: torch.Tensor,
                table: Optional[torch.Tensor], slopes: Optional[torch.Tensor],
                sink: Optional[torch.Tensor], return_lse: bool) -> GpuLaunch:
    """Views and device copies for the kernel: q [T, Hq, D] seen as
    [1, Hq, T, D], the output likewise, lse [Hq, T] as [1, Hq, T]; the work
    table, block table, slopes and sinks copied to q's device."""
    device = q.device
    T, Hq = q.shape[0], q.shape[1]
    out = q.new_empty((T, Hq, v4.shape[3]))
    lse = torch.empty((Hq, T), dtype=torch.float32, device=device) if return_lse else None
    args = [q.permute(1, 0, 2).unsqueeze(0), k4, v4, work.to(device)]
    args += [t.to(device).contiguous() for t in (table, slopes, sink) if t is not None]
    args.append(out.permute(1, 0, 2).unsqueeze(0))
    if lse is not None:
        args.append(lse.unsqueeze(0))
    return GpuLaunch(args, out, lse)


def run(compiled: Any, launch: GpuLaunch,
        runner: Optional[Callable[[Any, list[torch.Tensor]], None]] = None):
    """Runs the compiled kernel on the launch's arguments (`runner`: another
    way to run the compiled kernel's arguments, e.g. the GPU emulator in the
    tests; default the CUDA runtime)."""
    if launch.out.numel():
        if runner is not None:
            runner(compiled, launch.args)
        else:
            compiled._kernel.run_args(*launch.args)
    return (launch.out, launch.lse) if launch.lse is not None else launch.out

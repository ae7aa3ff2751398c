"""Split-KV (flash decoding) and the log-sum-exp output of `attncc.attention`.

When batch x heads x query blocks cannot keep the CPU's threads (the GPU's
SMs) busy (a decode step has one query block per KV head), the KV range of each query
block is cut into `P` splits that run as separate grid points; each leaves a
normalized partial output and its log-sum-exp in f32 workspaces, and a
combine grid in the same kernel merges them (passes/AttnTileSplit.cpp,
`attn.tile_combine`; on the GPU a second launch, passes/GpuSplitKv.cpp). `P` is a run-time value (the workspace's size), so a
decode loop over a growing KV cache compiles one kernel.

The kernel *form* (plain, plain + LSE, split) is chosen from what the kernel
is keyed on anyway (the query-length bucket), never from B, L or S, so calls
that differ in those share a kernel; the split count, a run-time value, looks
at the grid, the threads and S (see `plan`).

The decode tokens of `varlen_attention` / `paged_attention` split through
their work table instead (`decode_token_splits`, `split_pieces`): each piece
is a work item with its own LSE, merged in torch (`merge_pieces`).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from ..errors import InputTypeError
from ..options import CPU_MIN_TASK_WORK, OptionError

MAX_SPLITS = 256
# Fewest KV blocks a split gets from the heuristic: a split's fixed costs
# (Q copy, partial store, its share of the combine) stay small next to them.
MIN_BLOCKS_PER_SPLIT = 4
# Grid points per thread the heuristic aims at (load balance across threads).
TASKS_PER_THREAD = 4
# The CPU's varlen/paged decode pieces cost about 0.15 ms a call (Q copies,
# partial outputs, the merge in torch: merge_pieces; the same on one thread):
# a piece must read at least this many bytes of K and V for the split to pay. Measured on
# AMD Zen 4 (B1, one KV head, G4, D128, page 16, 2 threads, split 2 against
# none): 8 MiB of K/V per point (bf16 16k keys, fp32 8k) 0.78-0.90x, 16 MiB
# (bf16 32k, fp32 16k) 1.05-1.26x (docs/benchmarks.md, eleventh session).
CPU_MIN_PIECE_BYTES = 8 << 20
# Kernels whose query block has at most this many rows (the CPU's decode
# bucket, CompileOptions.query_block) get the split form by default.
DECODE_BLOCK_M = 16
# CUDA's limit on a grid's y and z dimensions.
GPU_MAX_GRID_Z = 65535


def check_args(return_lse: Any, num_splits: Any) -> None:
    if not isinstance(return_lse, bool):
        raise InputTypeError(f"return_lse must be a bool, got {type(return_lse).__name__}")
    if num_splits is None:
        return
    if isinstance(num_splits, bool) or not isinstance(num_splits, int) or \
            not 1 <= num_splits <= MAX_SPLITS:
        raise OptionError(f"num_splits must be None (chosen from the shapes) or an integer in "
                          f"[1, {MAX_SPLITS}], got {num_splits!r}")


@dataclass(frozen=True)
class Plan:
    split_kernel: bool   # the split-KV kernel form (else the plain one)
    splits: int          # P, the run-time split count (1 with the plain form)
    team: int = 1        # CPU threads the call asks for (team_size)


def plan(target: str, kind: str, threads: int, block_m: int, block_n: int, B: int, H: int,
         L: int, S: int, D: int, num_splits: Optional[int]) -> Plan:
    """The kernel form, split count and team size of one call.

    Forced (`num_splits` given): 1 is the plain kernel, P > 1 the split one.
    On the GPU (`kind` "cuda", `threads` = the device's SM count): the split
    form when the call has one query block (L <= block_m: decode, so that a
    decode loop keeps one kernel), with P = enough splits for about two
    blocks per SM, at most one per MIN_BLOCKS_PER_SPLIT KV blocks (P = 1:
    the split kernel writes the output itself, the combine returns at once).
    Otherwise (CPU): the split
    form for the decode bucket (block_m <= DECODE_BLOCK_M) and for calls of
    one query block (L <= block_m: MLA's decode packs its 16-128 query heads
    into one block over one latent KV head, a grid of B points; at B1 the
    split form was what kept the second thread busy, 18-24 -> 15 ms fp32 at
    Hq128 KV 4k on the AVX2 host). With the default block_m (L's bucket) both
    are properties of the bucket: B, L and S do not choose the form, so a
    decode loop, or calls of other batch sizes, keep one kernel. P = 1 (the
    combine then only copies) unless the grid
    B * H * ceil(L / block_m) leaves threads idle: fewer than TASKS_PER_THREAD
    points per thread and not a multiple of the threads (decode's grid
    points are equal work, and the team deals them out evenly). Then the
    fewest splits that make the points a multiple of the threads or reach
    TASKS_PER_THREAD per thread, at most one per MIN_BLOCKS_PER_SPLIT KV
    blocks. Splits only spread work over threads: each costs a Q copy, a
    partial output and its share of the combine (measured: 2 KV heads on 2
    threads, KV 1k-4k, are 10-15% slower at P=2 or 4 than at P=1), and
    where the call's work is too small for more than one thread
    (`team_size`), P is 1."""
    if kind == "cuda":
        # The split kernel's grid z is splits x B (at most 65535 blocks).
        if num_splits is not None:
            if num_splits > 1 and num_splits * B > GPU_MAX_GRID_Z:
                raise OptionError(f"num_splits={num_splits} with batch {B} needs "
                                  f"{num_splits * B} thread blocks in the GPU grid's z "
                                  f"dimension (at most {GPU_MAX_GRID_Z})")
            return Plan(num_splits > 1, num_splits, 1)
        if L > block_m:
            return Plan(False, 1, 1)
        grid = B * H
        by_sms = -(-2 * threads // grid) if grid else 1
        by_length = max(1, -(-S // block_n) // MIN_BLOCKS_PER_SPLIT)
        by_grid = max(1, GPU_MAX_GRID_Z // max(B, 1))
        return Plan(True, max(1, min(by_sms, by_length, by_grid, MAX_SPLITS)), 1)
    if num_splits is not None:
        return Plan(num_splits > 1, num_splits,
                    team_size(threads, block_m, B, H, L, S, D, num_splits))
    if kind != "cpu" or (block_m > DECODE_BLOCK_M and L > block_m):
        return Plan(False, 1, team_size(threads, block_m, B, H, L, S, D, 1))
    grid = B * H * -(-L // block_m)
    want = TASKS_PER_THREAD * threads
    if grid == 0 or grid >= want or grid % threads == 0 or threads <= 1:
        return Plan(True, 1, team_size(threads, block_m, B, H, L, S, D, 1))
    by_threads = next(p for p in range(2, want + 1)
                      if (grid * p) % threads == 0 or grid * p >= want)
    by_length = max(1, -(-S // block_n) // MIN_BLOCKS_PER_SPLIT)
    splits = max(1, min(by_threads, by_length, MAX_SPLITS))
    team = team_size(threads, block_m, B, H, L, S, D, splits)
    if team == 1:
        return Plan(True, 1, 1)
    return Plan(True, splits, team)



# -- varlen / paged decode tokens (ragged.py): pieces through the work table ----------------

def decode_token_splits(num_splits: Optional[int], items: int, kn: torch.Tensor, threads: int,
                        align: int, min_piece_keys: int = 1) -> int:
    """Split-KV for the packed decode launch of varlen/paged attention
    (ragged.py): how many pieces a decode token's keys may be cut into (1:
    none). Forced by `num_splits`; otherwise as `plan` chooses for
    `attncc.attention`: only where the
    grid (tokens x KV heads) leaves threads idle, the fewest splits that
    make it a multiple of the threads or reach TASKS_PER_THREAD points per
    thread, at most one per MIN_BLOCKS_PER_SPLIT x 64 keys of the longest
    sequence, one per `align` keys and one per `min_piece_keys` keys (the
    CPU's CPU_MIN_PIECE_BYTES, ragged_schedule.schedule)."""
    if num_splits is not None:
        return num_splits
    want = TASKS_PER_THREAD * threads
    if items == 0 or threads <= 1 or items >= want or items % threads == 0:
        return 1
    longest = int(kn.max())
    by_length = min(longest // (MIN_BLOCKS_PER_SPLIT * 64), longest // align,
                    longest // max(1, min_piece_keys))
    by_threads = next(p for p in range(2, want + 1)
                      if (items * p) % threads == 0 or items * p >= want)
    return max(1, min(by_threads, by_length, MAX_SPLITS))


def split_pieces(ks: np.ndarray, kn: np.ndarray, splits: int, align: int):
    """Each decode token's keys [ks, ks + kn) cut into at most `splits` pieces
    of a multiple of `align` keys (page and KV-block aligned when ks is):
    (token of each piece, piece start, piece length), int64 numpy arrays
    (the plan's host arithmetic, ragged_schedule.schedule), tokens in order.
    A token without keys keeps one empty piece (its row is zeros, its LSE -inf)."""
    ks, kn = np.asarray(ks, dtype=np.int64), np.asarray(kn, dtype=np.int64)
    chunk = ((kn + splits - 1) // splits + align - 1) // align * align
    chunk = np.maximum(chunk, align)
    count = np.maximum((kn + chunk - 1) // chunk, 1)
    tok = np.repeat(np.arange(kn.size), count)
    first = np.cumsum(count) - count
    start = (np.arange(tok.size) - first[tok]) * chunk[tok]
    return tok, ks[tok] + start, np.minimum(np.maximum(kn[tok] - start, 0), chunk[tok])


def pieces_per_token(tok: torch.Tensor, n: int) -> int:
    """c where token t of `n` has pieces [t c, (t + 1) c) in `tok` (the token
    of each piece; split_pieces' order when every token is cut alike), else 0."""
    pieces = tok.numel()
    if n and pieces % n == 0 and bool(
            (tok == torch.arange(n, device=tok.device).repeat_interleave(pieces // n)).all()):
        return pieces // n
    return 0


def merge_pieces(o: torch.Tensor, lse: torch.Tensor, tok: torch.Tensor, n: int):
    """Partial outputs o [pieces, ...rows, Dv] (each normalized over its own
    keys) and their LSEs [pieces, ...rows] merged per token as flash decoding
    does: weights exp(lse - max), in f32. Returns (out [n, ...], lse [n, ...]),
    on o's device (`tok` may be a host tensor)."""
    tok = tok.to(o.device)
    per_token = pieces_per_token(tok, n)
    if per_token:
        return merge_uniform(o, lse, n, per_token)
    m = torch.full((n,) + lse.shape[1:], -math.inf, device=o.device).scatter_reduce(
        0, tok.view(-1, *([1] * (lse.dim() - 1))).expand_as(lse), lse, "amax")
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w = torch.exp(lse - m[tok])
    den = torch.zeros_like(m).index_add_(0, tok, w)
    num = torch.zeros((n,) + o.shape[1:], dtype=torch.float32, device=o.device).index_add_(
        0, tok, w.unsqueeze(-1) * o.float())
    out = num / torch.where(den > 0, den, torch.ones_like(den)).unsqueeze(-1)
    return out, m + torch.log(den)


def merge_uniform(o: torch.Tensor, lse: torch.Tensor, n: int, c: int):
    """merge_pieces where token t has pieces [t c, (t + 1) c) (a split of
    equal lengths, the common decode step; a plan knows it, Decode.per_token):
    reductions over a reshaped dimension instead of scatters, ~30 us less per
    call."""
    o = o.view(n, c, *o.shape[1:])
    lse = lse.view(n, c, *lse.shape[1:])
    # A token without keys has max -inf: clamped to a finite value, its
    # weights are exp(-inf) = 0, its output 0 and its LSE -inf. Otherwise the
    # largest weight is 1, so den >= 1 and clamping it at 1 changes nothing.
    m = lse.amax(1).clamp_min(torch.finfo(torch.float32).min)
    w = torch.exp(lse - m.unsqueeze(1))
    den = w.sum(1)
    out = (w.unsqueeze(-1) * o.float()).sum(1) / den.clamp_min(1.0).unsqueeze(-1)
    return out, m + torch.log(den)


def team_size(threads: int, block_m: int, B: int, H: int, L: int, S: int, D: int,
              splits: int) -> int:
    """How many of torch's OpenMP threads a CPU call asks for: the grid's
    K/V work (as attn-tile's taskWork: points x keys per point x D x
    max(1, block_m / 4)) in tasks of CPU_MIN_TASK_WORK, at least 1, at most
    `threads` and the grid points. A short decode step runs on the calling
    thread alone; the kernel is correct on a team of any size."""
    points = B * H * -(-L // block_m) * splits
    work = points * -(-S // splits) * D * max(1, block_m // 4)
    return max(1, min(threads, -(-work // CPU_MIN_TASK_WORK), points))


def launch(kernel: Any, inputs: list, Dv: int, plan: Plan, lse_form: bool, threads: int,
           reuse: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Runs `kernel` (plain, lse or split form; `lse_form`: it takes the
    workspaces) on `inputs` (q first) as `plan` says: on a team of
    `plan.team` threads where `threads` > 1, with the form's workspaces
    (`reuse`: see `workspaces`). Returns the output and the workspaces."""
    kw = {"threads": plan.team} if threads > 1 else {}
    if not lse_form:
        return kernel(*inputs, **kw), ()
    extra = workspaces(inputs[0], Dv, plan.splits, plan.split_kernel, reuse=reuse)
    return kernel(*inputs, extra=extra, trusted_extra=True, **kw), extra


def workspaces(q: torch.Tensor, Dv: int, splits: int, split_kernel: bool,
               reuse: bool = False) -> tuple[torch.Tensor, ...]:
    """The arguments after `out` of the lse / split kernel forms: lse [B, H, L]
    and, for the split form, part [P * B, H, L, Dv] and part_lse [P * B, H, L]
    (all f32; every element is written by the kernel). `reuse`: the caller
    does not keep them (no lse returned), so the calling thread's previous
    workspaces of these shapes serve again (a decode loop allocates nothing
    per step; thread-local, as two threads may run kernels at once)."""
    B, H, L = q.shape[:3]
    key = (B, H, L, Dv, splits, split_kernel, q.device)
    if reuse:
        pool = _pool()
        got = pool.get(key)
        if got is not None:
            return got
    f32 = dict(dtype=torch.float32, device=q.device)
    lse = torch.empty((B, H, L), **f32)
    made: tuple[torch.Tensor, ...] = (lse,)
    if split_kernel:
        made = (lse, torch.empty((splits * B, H, L, Dv), **f32),
                torch.empty((splits * B, H, L), **f32))
    if reuse:
        if len(pool) >= _POOL_SIZE:
            pool.pop(next(iter(pool)))
        pool[key] = made
    return made


# Workspaces kept per thread: a few shapes (a model's layers share theirs).
_POOL_SIZE = 8
_LOCAL = threading.local()


def _pool() -> dict:
    pool = getattr(_LOCAL, "pool", None)
    if pool is None:
        pool = _LOCAL.pool = {}
    return pool

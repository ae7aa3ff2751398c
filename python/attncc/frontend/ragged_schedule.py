"""The launches of one varlen/paged call, computed from its index data alone.

`schedule` turns a batch's checked index data (per-sequence query starts and
lengths, KV block rows, key starts and lengths) and the call's configuration
(heads, variants, options, threads) into a `Schedule`: the packed decode
launch (its work table, static page size and split-KV pieces) and one launch
per query block size for the other sequences (attn.ragged_attention's work
tables). It reads no Q/K/V data, so a plan (`RaggedPlan`, made by
attncc.plan_paged / attncc.plan_varlen) computes it once per generate step and
every layer reuses it (FlashInfer's plan/run split); a call without a plan
computes it per call (attncc.ragged._run).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import InputError
from ..options import CompileOptions
from ..targets import kind as target_kind
from . import split_kv


@dataclass(frozen=True)
class Decode:
    """Decode tokens (one query row, no ALiBi): the G query heads of a KV head
    are the rows of one block. `tokens`: their query rows; `pieces`: None (one
    work item per token, the output written in place) or the token index of
    each split-KV piece (outputs merged with their LSEs). Computed once per
    plan for the calls (the torch ops a call saves run after the kernel, from
    cold caches, docs/benchmarks.md): `piece_rows`, the query row of each
    piece (tokens[pieces]); `per_token`, c where token t has pieces
    [t c, (t + 1) c) (else 0); `all_rows`, the decode tokens are every query
    row, in order (the merged output is then copied, not scattered)."""
    work: torch.Tensor
    page: Optional[int]
    tokens: torch.Tensor
    pieces: Optional[torch.Tensor]
    heads_inner: bool = False
    piece_rows: Optional[torch.Tensor] = None
    per_token: int = 0
    all_rows: bool = False


@dataclass(frozen=True)
class Group:
    """The other sequences of one query block size `bm`."""
    bm: int
    page: Optional[int]
    work: torch.Tensor


@dataclass(frozen=True)
class Schedule:
    decode: Optional[Decode]
    groups: tuple[Group, ...]


def work_table(bm: int, q_start: np.ndarray, lq: np.ndarray, kb: np.ndarray,
               k_start: np.ndarray, lk: np.ndarray, packed_rows: int = 0) -> torch.Tensor:
    """The [blocks, 7] int32 table (qb, qr, qn, kb, kr, kn, pos) of every
    query block, longest KV ranges first (the grid's tasks are split in
    order: long blocks first balance the threads' loads). `packed_rows` > 0:
    decode with the GQA group as the query rows (q seen as [T, Hkv, G, D]).
    int64 numpy inputs, one entry per sequence."""
    if packed_rows:
        keep = lq > 0
        work = np.zeros((int(keep.sum()), 7), dtype=np.int32)
        work[:, 0], work[:, 2], work[:, 3], work[:, 4], work[:, 5] = (
            q_start[keep], packed_rows, kb[keep], k_start[keep], lk[keep])
    else:
        nb = (lq + bm - 1) // bm
        seq = np.repeat(np.arange(lq.size), nb)
        first = np.cumsum(nb) - nb
        m0 = (np.arange(seq.size) - first[seq]) * bm
        work = np.stack([np.zeros_like(seq), q_start[seq] + m0,
                         np.minimum(lq[seq] - m0, bm), kb[seq], k_start[seq], lk[seq],
                         m0 + lk[seq] - lq[seq]], 1).astype(np.int32)
    if len(work) > 1:
        work = work[np.argsort(-work[:, 5], kind="stable")]
    return torch.from_numpy(np.ascontiguousarray(work))


def query_blocks(lq: np.ndarray, opts: CompileOptions, target: str = "cpu") -> np.ndarray:
    """CompileOptions.query_block of every sequence's query length, vectorised
    (the next power of two in [16, 256] unless block_m is given; a decode
    token that reaches the general launch, i.e. with ALiBi, gets one-row
    tiles: 16 rows cost it 16x the dot products, 3.8x the time measured)."""
    if opts.block_m is not None or target_kind(target) == "gpu":   # the GPU: one size
        return np.full_like(lq, opts.query_block(target, None))
    p2 = np.exp2(np.ceil(np.log2(np.maximum(lq, 1).astype(np.float64))))
    return np.where(lq == 1, 1, np.clip(p2, 16, 256).astype(np.int64))


@functools.lru_cache(maxsize=256)
def _kv_in_place(opts: CompileOptions, query_len: int) -> bool:
    return bool(opts.resolved("cpu", query_len).kv_in_place)


def heads_inner(opts: CompileOptions, G: int, Hkv: int, interleaved: bool, paged: bool,
                page: Optional[int], target: str = "cpu") -> bool:
    """Whether the packed decode launch runs one grid point per token with
    its KV heads in a loop inside the KV loop (attn-tile heads-inner) instead
    of one grid point per (token, KV head): on the CPU, where K/V's heads
    interleave by row (`interleaved`: NHD pages, packed [tokens, Hkv, D]
    K/V, a head's rows Hkv x D elements apart) and are read in place (packed
    K/V, or pages of a static size `page`). One point then reads each KV
    block's rows of every head together, i.e. whole pages in order, where a
    point per head read 256-byte pieces 2 KiB apart. Not for rows gathered
    one by one (other page sizes): measured slower there (docs/ragged-paged.md)."""
    return (target_kind(target) == "cpu" and Hkv > 1 and interleaved
            and (not paged or page is not None) and _kv_in_place(opts, G))


def static_page(opts: CompileOptions, query_len: int, page_size: int,
                k_start: np.ndarray, target: str = "cpu") -> Optional[int]:
    """The page size to compile into a paged kernel, or None (any page size).
    A static power-of-two page size lets the in-place form (small query
    blocks: decode) read K/V pages where they are; its work items must start
    at page-aligned keys (attn.ragged_attention's contract)."""
    if page_size < 16 or page_size & (page_size - 1) or target_kind(target) != "cpu":
        return None
    if not _kv_in_place(opts, query_len):
        return None
    return page_size if bool((k_start % page_size == 0).all()) else None


# Fewer decode tokens than CPU threads keep their heads inside (one grid
# point per token) only where a split gives pieces of at least this many bytes
# of K and V; otherwise a point per (token, KV head) fills the threads without
# the split's fixed cost (~0.15 ms a call). Measured (Zen 4, 2 threads, B1
# Hq32/Hkv8 D128 page 16 NHD, plans; docs/ragged-paged.md): heads inside
# unsplit ran on one thread (bf16 KV 1k 0.204 ms against 0.128 a point per
# head); split in 8 MiB pieces (KV 4k) 0.53 against 0.41; 16 MiB (8k) a tie;
# 32 MiB (16k, past the L3) 2.13 against 3.08, where a point per head reads
# 256-byte pieces 2 KiB apart from DRAM.
INNER_MIN_PIECE_BYTES = 16 << 20


def _decode_splits(num_splits: Optional[int], kn: np.ndarray, Hkv: int, inner: bool,
                   threads: int, align: int, key_bytes: int, target: str,
                   min_piece_bytes: int) -> int:
    """split_kv.decode_token_splits for the packed decode launch: its grid
    points (one per token with heads inside, else per token and KV head) and
    on the CPU the fewest keys of a piece (`min_piece_bytes` of K and V)."""
    points = kn.size * (1 if inner else Hkv)
    min_keys = 1
    if key_bytes > 0 and target_kind(target) == "cpu":
        point_bytes = key_bytes * (Hkv if inner else 1)    # per key of a grid point
        min_keys = -(-min_piece_bytes // point_bytes)
    return split_kv.decode_token_splits(num_splits, points, kn, threads, align, min_keys)


def schedule(q_start, lq, kb, k_start, lk, *, page_size: int, paged: bool, G: int, Hkv: int,
             sides, alibi: bool, sinks: bool, opts: CompileOptions, threads: int,
             packed_ok: bool, num_splits: Optional[int], target: str,
             interleaved: bool = False, key_bytes: int = 0) -> Schedule:
    """The launches of a batch (host index arrays, numpy or torch, one entry
    per sequence; computed in numpy: a decode step runs this once per step,
    and numpy's per-operation cost on a few entries is a fraction of
    torch's). Decode tokens without ALiBi (a per-head term on every score)
    run packed: the G query heads of a KV head are the rows of one block, so
    each K/V tile is packed once per KV head. A window then only trims the key
    range (every row of a sequence sits at the last key), and causal masks
    nothing. With G = 1 (MHA) too: the tile then has one row, where the
    general launch's smallest query block has 16 (measured: B8 H8 D128 KV 4k
    bf16 paged decode, 22 ms in 16-row tiles, see docs/ragged-paged.md).
    The others run in one launch per query block size, so that a decode token
    or a short chunk batched with a long prefill does not compute a 256-row
    block for its one row (a 2k-prefill + 31-decode batch ran 100x slower
    that way). `packed_ok`: the GPU packs only groups that fit its block.
    `interleaved`: K/V's heads interleave by row (heads_inner). `key_bytes`:
    the bytes of K and V per key and KV head ((D + Dv) x element size); on
    the CPU a split piece then reads at least CPU_MIN_PIECE_BYTES (0: no such
    bound)."""
    q_start, lq, kb, k_start, lk = (np.asarray(x, dtype=np.int64)
                                    for x in (q_start, lq, kb, k_start, lk))
    rest = lq > 0
    dec = lq == 1
    decode = None
    if packed_ok and not alibi and dec.any():
        align = max(256, page_size if paged and page_size & (page_size - 1) == 0 else 1)
        ks, kn = k_start[dec], lk[dec]
        if sides is not None and sides[0] >= 0:
            trim = np.maximum(kn - 1 - sides[0], 0)
            ks, kn = ks + trim, kn - trim
        # The static page size (and with it heads-inner, whose grid point
        # count the split rule takes) from the unsplit keys: a split keeps
        # page alignment (pieces are multiples of `align`, itself a multiple
        # of any static page size).
        page = static_page(opts, G, page_size, ks, target) if paged else None
        inner = heads_inner(opts, G, Hkv, interleaved, paged, page, target)
        few = inner and kn.size < threads
        splits = _decode_splits(num_splits, kn, Hkv, inner, threads, align, key_bytes, target,
                                INNER_MIN_PIECE_BYTES if few else split_kv.CPU_MIN_PIECE_BYTES)
        if few and splits == 1:
            inner = False
            splits = _decode_splits(num_splits, kn, Hkv, inner, threads, align, key_bytes,
                                    target, split_kv.CPU_MIN_PIECE_BYTES)
        rest = rest & ~dec
        qd, tok = q_start[dec], None
        if splits > 1:
            tok, ks, kn = split_kv.split_pieces(ks, kn, splits, align)
            if tok.size == qd.size:   # nothing was long enough to cut
                tok = None
        if tok is None and sinks:   # one piece per token: the LSE path (the sink joins it)
            tok = np.arange(qd.size)
        if tok is None:
            work = work_table(0, qd, lq[dec], kb[dec], ks, kn, packed_rows=G)
        else:
            n = tok.size
            work = work_table(0, np.arange(n), np.ones(n, dtype=np.int64), kb[dec][tok], ks,
                              kn, packed_rows=G)
        pieces = piece_rows = None
        per_token = 0
        if tok is not None:
            pieces, piece_rows = torch.from_numpy(tok), torch.from_numpy(qd[tok])
            per_token = split_kv.pieces_per_token(pieces, qd.size)
        all_rows = not rest.any() and bool((qd == np.arange(qd.size)).all())
        decode = Decode(work, page, torch.from_numpy(qd), pieces, inner, piece_rows,
                        per_token, all_rows)
    groups = []
    if rest.any():
        blocks = query_blocks(lq, opts, target)
        for bm in np.unique(blocks[rest]).tolist():
            sel = rest & (blocks == bm)
            page = static_page(opts, int(bm), page_size, k_start[sel], target) if paged \
                else None
            got = opts.query_block(target, int(bm))
            groups.append(Group(int(bm), page, work_table(got, q_start[sel], lq[sel], kb[sel],
                                                          k_start[sel], lk[sel])))
    return Schedule(decode, tuple(groups))


# -- plans: the index data of one step, shared by its layers ---------------------------------

class RaggedPlan:
    """The checked index data of one ragged batch (int64 numpy arrays, one
    entry per sequence) and the launches computed from it, memoized per
    configuration (FlashInfer's plan/run split): built once per generate
    step, passed to every layer's call with `plan=`, which then skips the
    index checks and the work tables (about 0.3 ms of Python per call,
    docs/ragged-paged.md). A plan holds host copies of the index tensors
    taken when it was built: later writes to them are not seen (a new step
    builds a new plan)."""

    _MAX_SCHEDULES = 16

    def __init__(self, q_start: np.ndarray, lq: np.ndarray, kb: np.ndarray,
                 k_start: np.ndarray, lk: np.ndarray, q_tokens: int) -> None:
        self.q_start, self.lq, self.kb, self.k_start, self.lk = q_start, lq, kb, k_start, lk
        self.q_tokens = q_tokens
        self.batch = lq.size
        self._schedules: dict = {}

    def _check_q(self, q_tokens: int) -> None:
        if q_tokens != self.q_tokens:
            raise InputError(f"q has {q_tokens} tokens; the plan has {self.q_tokens}")

    def _schedule(self, config: dict, key: Optional[tuple] = None) -> Schedule:
        """`key`: the configuration's memo key where the caller keeps it."""
        key = tuple(sorted(config.items())) if key is None else key
        hit = self._schedules.get(key)
        if hit is None:
            hit = schedule(self.q_start, self.lq, self.kb, self.k_start, self.lk, **config)
            if len(self._schedules) >= self._MAX_SCHEDULES:
                self._schedules.pop(next(iter(self._schedules)))
            self._schedules[key] = hit
        return hit


class PagedPlan(RaggedPlan):
    """A paged batch's plan (attncc.plan_paged): the block table and lengths
    of every sequence; a call checks the cache's page size and page count
    against it."""

    def __init__(self, table: torch.Tensor, lens: np.ndarray, cq: np.ndarray,
                 page_size: int, bad_page: Optional[tuple[int, int, int]]) -> None:
        lq = cq[1:] - cq[:-1]
        super().__init__(cq[:-1], lq, np.arange(lens.size), np.zeros_like(lens), lens,
                         int(cq[-1]))
        self.table = table
        self.page_size = page_size
        self._bad_page = bad_page      # (seq, index, page): the largest used entry

    def __repr__(self) -> str:
        return (f"PagedPlan(batch={self.batch}, q_tokens={self.q_tokens}, "
                f"page_size={self.page_size})")

    def _check_cache(self, num_pages: int, page_size: int, q_tokens: int) -> None:
        if page_size != self.page_size:
            raise InputError(f"the cache's page_size is {page_size}; the plan was made for "
                             f"{self.page_size}")
        self._check_q(q_tokens)
        if self._bad_page is not None and self._bad_page[2] >= num_pages:
            s, i, v = self._bad_page
            raise InputError(f"block_table[{s}, {i}] = {v} is not a page of the cache "
                             f"(0 <= page < {num_pages})")


class VarlenPlan(RaggedPlan):
    """A packed ragged batch's plan (attncc.plan_varlen); a call checks q's
    and k's token counts against it."""

    def __init__(self, q_start: np.ndarray, lq: np.ndarray, kb: np.ndarray,
                 k_start: np.ndarray, lk: np.ndarray, q_tokens: int,
                 k_tokens: int) -> None:
        super().__init__(q_start, lq, kb, k_start, lk, q_tokens)
        self.k_tokens = k_tokens

    def __repr__(self) -> str:
        return (f"VarlenPlan(batch={self.batch}, q_tokens={self.q_tokens}, "
                f"k_tokens={self.k_tokens})")

    def _check_tokens(self, q_tokens: int, k_tokens: int) -> None:
        self._check_q(q_tokens)
        if k_tokens != self.k_tokens:
            raise InputError(f"k has {k_tokens} tokens; the plan has {self.k_tokens}")

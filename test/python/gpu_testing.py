"""Shared helpers of the GPU tests: attention graphs of a config, compilation
for a GPU target, emulated runs (attncc.gpu_emulator) and the float64 reference."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

import attncc
from attncc import compiler, context, options
from mlir import ir

from attncc import gpu_emulator as emu


@dataclass(frozen=True)
class Config:
    dtype: str = "f16"
    D: int = 64
    mask: str = "causal"          # causal | none | bias | sliding_window
    B: int = 1
    H: int = 2
    Hkv: Optional[int] = None     # GQA/MQA when < H
    Lq: int = 100
    Lk: Optional[int] = None
    block_m: int = 64
    block_n: int = 64
    num_stages: int = 2
    unroll: int = 1
    tma: bool = True            # sm_90a wgmma kernel: TMA loads (False: cp.async)
    window: Optional[int] = None  # sliding_window: keys (i - window, i]
    bias_shape: Optional[tuple] = None   # default (1, H, Lq, Lk); broadcast dims allowed
    bias_dtype: str = "f32"
    dynamic: bool = False         # sequence lengths as '?' in the graph
    input_precision: Optional[str] = None  # f32 inputs: tf32 | tf32x3 (None: the default)

    def with_(self, **kw) -> "Config":
        return replace(self, **kw)

    @property
    def hkv(self) -> int:
        return self.Hkv or self.H

    @property
    def lk(self) -> int:
        return self.Lk or self.Lq

    def options(self) -> options.CompileOptions:
        return options.CompileOptions(block_m=self.block_m, block_n=self.block_n,
                                      num_stages=self.num_stages, unroll=self.unroll,
                                      tma=self.tma, input_precision=self.input_precision)

    def graph(self) -> attncc.Graph:
        g = attncc.Graph()
        lq, lk = (None, None) if self.dynamic else (self.Lq, self.lk)
        q = g.input("q", (self.B, self.H, lq, self.D), self.dtype)
        k = g.input("k", (self.B, self.hkv, lk, self.D), self.dtype)
        v = g.input("v", (self.B, self.hkv, lk, self.D), self.dtype)
        kw = {}
        if self.mask == "bias":
            kw["bias"] = g.input("bias", self._bias_shape(), self.bias_dtype)
        if self.mask == "sliding_window":
            kw["window"] = self.window
        g.output(g.attention(q, k, v, mask=self.mask, **kw))
        return g

    def _bias_shape(self) -> tuple:
        return self.bias_shape or (1, self.H, self.Lq, self.lk)

    def compile(self, target: str = "sm_80", stop_after: Optional[str] = None):
        return compiler.compile_graph(self.graph(), self.options(), target, stop_after=stop_after)

    def inputs(self, seed: int = 0) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        tdt = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[self.dtype]
        q = torch.randn(self.B, self.H, self.Lq, self.D, generator=gen).to(tdt)
        k = torch.randn(self.B, self.hkv, self.lk, self.D, generator=gen).to(tdt)
        v = torch.randn(self.B, self.hkv, self.lk, self.D, generator=gen).to(tdt)
        ts = [q, k, v]
        if self.mask == "bias":
            bdt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[self.bias_dtype]
            ts.append(torch.randn(*self._bias_shape(), generator=gen).to(bdt))
        return ts

    def reference(self, ts: list[torch.Tensor]) -> torch.Tensor:
        q, k, v = (t.double() for t in ts[:3])
        rep = self.H // self.hkv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        mask = None
        if self.mask == "causal":
            mask = torch.ones(self.Lq, self.lk, dtype=torch.bool).tril()
        elif self.mask == "bias":
            mask = ts[3].double()
        elif self.mask == "sliding_window":
            i = torch.arange(self.Lq)[:, None]
            j = torch.arange(self.lk)[None, :]
            mask = (j <= i) & (j > i - self.window)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def tolerance(self) -> float:
        if self.dtype == "f32":
            # TF32 keeps 10 mantissa bits, as f16 does (with f32's range);
            # 3xTF32 is fp32-level (see docs/numerics.md).
            return 2e-5 if self.input_precision == "tf32x3" else 4e-3
        return 2e-2 if self.dtype == "bf16" else 4e-3


def emulate(gpu_stage_ir: str, cfg: Config, ts: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Runs the 'gpu' stage IR in the SIMT emulator on CPU tensors."""
    elts = [cfg.dtype] * 3 + ([cfg.bias_dtype] if cfg.mask == "bias" else []) + [cfg.dtype]
    return emulate_tensors(gpu_stage_ir, ts, elts[:-1], (cfg.B, cfg.H, cfg.Lq, cfg.D), cfg.dtype)


def emulate_tensors(gpu_stage_ir: str, ts: list[torch.Tensor], elts: list[str], out_shape: tuple,
                    out_elt: str, smem_base: int = 0) -> tuple[torch.Tensor, dict]:
    """Runs the host function 'attention' of a 'gpu' stage in the emulator on
    CPU tensors `ts` (element types `elts`: f16, bf16, f32) and a zeroed output
    of `out_shape` / `out_elt`; returns the output (f32) and the run's stats."""
    def arr(t):
        return t.float().numpy().copy() if t.dtype == torch.bfloat16 else t.numpy().copy()

    out, _, stats = emulate_with_outputs(gpu_stage_ir, ts, elts, out_shape, out_elt,
                                         smem_base=smem_base)
    return out, stats


def emulate_with_outputs(gpu_stage_ir: str, ts: list[torch.Tensor], elts: list[str],
                         out_shape: tuple, out_elt: str, after_out: tuple[tuple, ...] = (),
                         smem_base: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    """`emulate_tensors` for kernels that take f32 arguments after `out` (the
    lse form: `after_out` = their shapes). Those start as NaN, so an element
    the kernel does not write shows. Returns (out, [after_out...], stats)."""
    def arr(t):
        return t.float().numpy().copy() if t.dtype == torch.bfloat16 else t.numpy().copy()

    out_np = np.zeros(out_shape, np.float16 if out_elt == "f16" else np.float32)
    extra = [np.full(shape, np.nan, np.float32) for shape in after_out]
    with context.mlir_context():
        prog = emu.Program(ir.Module.parse(gpu_stage_ir), smem_base=smem_base)
        stats = prog.run("attention", *[arr(t) for t in ts], out_np, *extra,
                         elts=list(elts) + [out_elt] + ["f32"] * len(extra))
    return (torch.from_numpy(out_np.astype(np.float32)), [torch.from_numpy(e) for e in extra],
            stats)

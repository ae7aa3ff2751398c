"""Triton's tutorial-style fused attention, compiled ahead of time (no GPU needed).

    from attncc.reference import triton_attention as ta
    spec = ta.AttentionSpec(batch=1, heads=8, kv_heads=8, seq=1024, head_dim=64,
                            dtype="f16", causal=True)
    k = ta.compile_attention(spec, chip="sm_90a", block_m=128, block_n=64, num_stages=3)
    k.ptx, k.cubin, k.stages["ttgir"], k.metadata["shared"]

The kernel follows Triton's fused-attention tutorial (06-fused-attention.py):
online softmax in base 2, a causal mask handled as an off-diagonal phase
without masking plus a diagonal phase with it, `tl.range` over KV blocks
software-pipelined by Triton with `num_stages`. GQA is a KV-head index
(`head // group`). Like the tutorial it assumes seq_q == seq_k and sequence
lengths that are multiples of the block sizes; other shapes are rejected with
`TritonUnsupported`.

Compilation is `triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`
with `tt.divisibility` hints on pointers and strides (DESIGN.md section 3).
Triton is an optional dependency (`pip install 'attncc[triton]'`); without it
`compile_attention` raises `TritonUnavailable`.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import AttnccError

TRITON_VERSION = "3.9.0"     # the version this module was written and tested against

# attncc chip -> Triton CUDA compute capability.
CAPABILITY = {"sm_80": 80, "sm_90a": 90}
_TT_DTYPE = {"f16": "fp16", "bf16": "bf16"}


class TritonUnavailable(AttnccError, ImportError):
    """Triton is not installed: the reference kernel cannot be compiled."""


class TritonUnsupported(AttnccError, ValueError):
    """The attention shape or options are outside what the reference kernel covers."""


def available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def triton_version() -> Optional[str]:
    try:
        import triton
    except Exception:
        return None
    return getattr(triton, "__version__", "?")


@dataclass(frozen=True)
class AttentionSpec:
    """The attention problem: [batch, heads, seq, head_dim] q, [batch, kv_heads, seq, head_dim] k/v."""

    batch: int
    heads: int
    kv_heads: int
    seq: int
    head_dim: int
    dtype: str = "f16"          # f16 | bf16
    causal: bool = False
    scale: Optional[float] = None

    @property
    def sm_scale(self) -> float:
        return self.scale if self.scale is not None else 1.0 / math.sqrt(self.head_dim)


@dataclass
class TritonKernel:
    """An AOT-compiled Triton kernel: IR of its stages, PTX, cubin, metadata."""

    name: str
    chip: str
    spec: AttentionSpec
    options: dict[str, Any]
    stages: dict[str, str]            # ttir, ttgir, llir, ptx (text)
    ptx: str
    cubin: Optional[bytes]
    metadata: dict[str, Any] = field(default_factory=dict)
    grid: tuple[int, int, int] = (1, 1, 1)


@functools.lru_cache(maxsize=1)
def _kernels():
    """(triton, attn_fwd), importing Triton on first use."""
    try:
        import triton

        from . import _triton_kernels
    except Exception as e:  # ImportError, or a broken install
        raise TritonUnavailable(f"Triton is not installed ({e}); install it with "
                                f"`pip install 'attncc[triton]'` (triton=={TRITON_VERSION})") from None
    return triton, _triton_kernels.attn_fwd


def _common_ptx_version(capability: int) -> int:
    from triton.backends.nvidia import compiler as nv

    version = nv.ptx_get_version(nv.get_ptxas(capability).version)
    from ..gpu import ptxas_version

    ours = ptxas_version()   # "13.0.88", or "none"
    parts = ours.split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        version = min(version, nv.ptx_get_version(f"{parts[0]}.{parts[1]}"))
    return version


def check_spec(spec: AttentionSpec, block_m: int, block_n: int) -> None:
    """Raises TritonUnsupported for problems the tutorial kernel does not cover."""
    if spec.dtype not in _TT_DTYPE:
        raise TritonUnsupported(f"the Triton reference takes f16 or bf16 inputs, not {spec.dtype}")
    if spec.head_dim not in (16, 32, 64, 128, 256):
        raise TritonUnsupported(f"the Triton reference needs a head dim of 16..256 (power of two), "
                                f"got {spec.head_dim}")
    if spec.kv_heads <= 0 or spec.heads % spec.kv_heads:
        raise TritonUnsupported(f"{spec.heads} query heads are not a multiple of "
                                f"{spec.kv_heads} KV heads")
    if spec.seq % block_m or spec.seq % block_n:
        raise TritonUnsupported(f"the Triton reference (like the tutorial) needs the sequence "
                                f"length ({spec.seq}) to be a multiple of block_m={block_m} "
                                f"and block_n={block_n}")
    if spec.causal and block_m % block_n:
        raise TritonUnsupported("a causal Triton reference needs block_m to be a multiple of block_n")


def compile_attention(spec: AttentionSpec, chip: str = "sm_90a", *, block_m: int = 128,
                      block_n: int = 64, num_stages: int = 3, num_warps: Optional[int] = None,
                      ptx_version: Optional[int] = None) -> TritonKernel:
    """Compiles the tutorial attention for `spec` on `chip` (sm_80 or sm_90a)
    ahead of time. `ptx_version` None picks the newest PTX ISA version that both
    Triton's bundled ptxas (which makes its cubin) and attncc's ptxas (which
    `attncc compare` runs on both kernels) read."""
    if chip not in CAPABILITY:
        raise TritonUnsupported(f"the Triton reference targets {sorted(CAPABILITY)}, not {chip!r}")
    check_spec(spec, block_m, block_n)
    triton, attn_fwd = _kernels()
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    warps = num_warps or (8 if block_m >= 128 and spec.head_dim >= 128 else 4)
    ptr = "*" + _TT_DTYPE[spec.dtype]
    names = attn_fwd.arg_names
    signature: dict[str, str] = {}
    for n in names:
        if n in ("Q", "K", "V", "Out"):
            signature[n] = ptr
        elif n == "sm_scale":
            signature[n] = "fp32"
        elif n.isupper() and n not in ("H", "N_CTX"):
            signature[n] = "constexpr"
        else:
            signature[n] = "i32"
    constexprs = {"GROUP": spec.heads // spec.kv_heads, "HEAD_DIM": spec.head_dim,
                  "BLOCK_M": block_m, "BLOCK_N": block_n, "STAGE": 3 if spec.causal else 1,
                  "NUM_STAGES": num_stages}
    # Pointers 16-byte aligned, strides and N_CTX multiples of 16 (contiguous
    # [B, H, L, D] tensors with D >= 16 and L a multiple of the blocks).
    hinted = [i for i, n in enumerate(names)
              if signature[n].startswith("*") or n.startswith("stride_") or n == "N_CTX"]
    attrs = {(i,): [["tt.divisibility", 16]] for i in hinted}
    src = ASTSource(fn=attn_fwd, signature=signature, constexprs=constexprs, attrs=attrs)
    target = GPUTarget("cuda", CAPABILITY[chip], 32)
    options: dict[str, Any] = {"num_warps": warps, "num_stages": num_stages}
    options["ptx_version"] = ptx_version or _common_ptx_version(CAPABILITY[chip])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # Triton 3.9's TRITON_DEFAULT_FP_FUSION notice
            compiled = triton.compile(src, target=target, options=options)
    except Exception as e:  # Triton's errors are plain exceptions with long messages
        msg = str(e).strip().splitlines()
        raise TritonUnsupported(f"Triton failed to compile the reference kernel: "
                                f"{msg[-1] if msg else type(e).__name__}") from None
    asm = compiled.asm
    stages = {k: v for k, v in asm.items() if isinstance(v, str)}
    meta = compiled.metadata
    metadata = {"shared_bytes": int(getattr(meta, "shared", 0)), "num_warps": warps,
                "num_stages": num_stages, "block_m": block_m, "block_n": block_n,
                "kernel": getattr(meta, "name", "attn_fwd"), "triton": triton_version()}
    grid = (spec.seq // block_m, spec.batch * spec.heads, 1)
    return TritonKernel(name=metadata["kernel"], chip=chip, spec=spec,
                        options=dict(block_m=block_m, block_n=block_n, num_stages=num_stages,
                                     num_warps=warps),
                        stages=stages, ptx=asm["ptx"],
                        cubin=asm.get("cubin") if isinstance(asm.get("cubin"), bytes) else None,
                        metadata=metadata, grid=grid)


def run_attention(q, k, v, *, causal: bool = False, scale: Optional[float] = None,
                  block_m: int = 64, block_n: int = 64, num_stages: int = 2,
                  num_warps: int = 4):
    """Runs the reference kernel through Triton's launcher (needs a CUDA GPU,
    or TRITON_INTERPRET=1 set before attncc.reference.triton_attention is first
    used, which runs it on CPU tensors in Triton's interpreter)."""
    import torch

    triton, attn_fwd = _kernels()
    B, H, L, D = q.shape
    spec = AttentionSpec(B, H, k.shape[1], L, D, {torch.float16: "f16", torch.bfloat16: "bf16"}
                         .get(q.dtype, str(q.dtype)), causal, scale)
    check_spec(spec, block_m, block_n)
    q, k, v = (t.contiguous() for t in (q, k, v))
    o = torch.empty_like(q)
    grid = (L // block_m, B * H, 1)
    attn_fwd[grid](q, k, v, o, spec.sm_scale, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3],
                   *o.stride()[:3], H, L, GROUP=H // k.shape[1], HEAD_DIM=D, BLOCK_M=block_m,
                   BLOCK_N=block_n, STAGE=3 if causal else 1, NUM_STAGES=num_stages,
                   num_warps=num_warps, num_stages=num_stages)
    return o

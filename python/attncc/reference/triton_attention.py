"""Triton's tutorial-style fused attention as a reference, compiled ahead of time (no GPU needed).

    from attncc.reference import triton_attention as ta
    spec = ta.AttentionSpec(batch=1, heads=8, seq=1024, head_dim=64, dtype="f16", causal=True)
    k = ta.compile_attention(spec, chip="sm_90a", block_m=128, block_n=64, num_stages=3)
    k.ptx, k.cubin, k.stages["ttgir"], k.metadata["shared_bytes"]

The kernel (`_triton_kernels.py`, written for this project after the structure
of Triton's fused-attention tutorial; it lived in bench/triton_attention.py,
which re-exports it) is the baseline of `attncc compare --b triton`,
bench/gpu_kernel_report.py and bench/gpu_attention.py.

Compilation is `triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`
with `tt.divisibility` hints on pointers and strides (DESIGN.md section 3).
Triton is an optional dependency (`pip install 'attncc[triton]'`); without it
`compile_attention` raises `TritonUnavailable`, and this module still imports.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import AttnccError

TRITON_VERSION = "3.9.0"     # the version this module was written and tested against

# attncc chip -> Triton CUDA compute capability.
CAPABILITY = {"sm_80": 80, "sm_90a": 90}
_TT_DTYPE = {"f16": "fp16", "bf16": "bf16", "f32": "fp32"}


class TritonUnavailable(AttnccError, ImportError):
    """Triton is not installed: the reference kernel cannot be compiled."""


class TritonUnsupported(AttnccError, ValueError):
    """The attention problem or options are outside what the reference kernel covers."""


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


# ----------------------------------------------------------------- the bench interface

def compile_aot(arch: int = 90, head_dim: int = 128, causal: bool = True, dtype: str = "fp16",
                block_m: int = 128, block_n: int = 64, num_warps: int = 8, num_stages: int = 3,
                ptx_version: Optional[int] = 90, input_precision: Optional[str] = None):
    """triton.compile for GPUTarget("cuda", arch, 32) without a GPU; returns
    Triton's CompiledKernel (`.asm["ptx"]`, `.metadata.shared`). Pointers and
    strides carry divisibility-by-16 hints (what the JIT would infer for
    contiguous tensors of these shapes). ptx_version None: the newest PTX ISA
    that Triton's ptxas for `arch` and attncc's ptxas both read."""
    triton, attn_fwd = _kernels()
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    ptr = f"*{dtype}"
    signature = {"Q": ptr, "K": ptr, "V": ptr, "Out": ptr, "sm_scale": "fp32",
                 "stride_h": "i32", "stride_m": "i32", "N_CTX": "i32",
                 "HEAD_DIM": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr",
                 "CAUSAL": "constexpr", "INPUT_PRECISION": "constexpr"}
    constexprs = {"HEAD_DIM": head_dim, "BLOCK_M": block_m, "BLOCK_N": block_n, "CAUSAL": causal,
                  "INPUT_PRECISION": input_precision if dtype == "fp32" else None}
    div16 = [["tt.divisibility", 16]]
    attrs = {(i,): div16 for i in (0, 1, 2, 3, 5, 6, 7)}
    src = ASTSource(fn=attn_fwd, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": num_warps, "num_stages": num_stages,
               "ptx_version": ptx_version or common_ptx_version(arch)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Triton 3.9's TRITON_DEFAULT_FP_FUSION notice
        return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def launch(q, k, v, causal: bool, block_m: int = 128, block_n: int = 64, num_warps: int = 8,
           num_stages: int = 3, input_precision: Optional[str] = None):
    """Runs the kernel (JIT) on CUDA tensors [B, H, N, D] (or on CPU tensors
    in Triton's interpreter, TRITON_INTERPRET=1 set before Triton is imported)."""
    import torch

    triton, attn_fwd = _kernels()
    B, H, N, D = q.shape
    q, k, v = (t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    grid = (triton.cdiv(N, block_m), B * H)
    attn_fwd[grid](q, k, v, out, D ** -0.5, N * D, D, N, HEAD_DIM=D, BLOCK_M=block_m,
                   BLOCK_N=block_n, CAUSAL=causal,
                   INPUT_PRECISION=input_precision if q.dtype == torch.float32 else None,
                   num_warps=num_warps, num_stages=num_stages)
    return out


def common_ptx_version(capability: int) -> int:
    """The newest PTX ISA version read by both Triton's ptxas for `capability`
    (its cubin) and attncc's ptxas (`attncc compare` runs it on both kernels)."""
    _kernels()
    from triton.backends.nvidia import compiler as nv

    from ..targets.gpu import ptxas_version

    version = nv.ptx_get_version(nv.get_ptxas(capability).version)
    parts = ptxas_version().split(".")   # "13.0.88", or "none"
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        version = min(version, nv.ptx_get_version(f"{parts[0]}.{parts[1]}"))
    return version


# ----------------------------------------------------------------- attncc compare

@dataclass(frozen=True)
class AttentionSpec:
    """The attention problem: q, k, v of shape [batch, heads, seq, head_dim]."""

    batch: int
    heads: int
    seq: int
    head_dim: int
    dtype: str = "f16"          # f16 | bf16 | f32
    causal: bool = False
    input_precision: Optional[str] = None   # f32: tl.dot's input_precision (None: Triton's default)


@dataclass
class TritonKernel:
    """An AOT-compiled reference kernel: IR of Triton's stages, PTX, cubin, metadata."""

    name: str
    chip: str
    spec: AttentionSpec
    options: dict[str, Any]
    stages: dict[str, str]            # ttir, ttgir, llir, ptx (text)
    ptx: str
    cubin: Optional[bytes]
    metadata: dict[str, Any] = field(default_factory=dict)


def check_spec(spec: AttentionSpec, block_m: int, block_n: int) -> None:
    """Raises TritonUnsupported for problems the reference kernel does not cover.

    Without a causal mask its KV loop masks nothing, so a last partial KV block
    would let zero-filled keys into the softmax: the sequence length must be a
    multiple of block_n (as in Triton's tutorial). With the mask, the
    off-diagonal pass must end on a KV block boundary: block_m a multiple of
    block_n."""
    if spec.dtype not in _TT_DTYPE:
        raise TritonUnsupported(f"the Triton reference takes f16, bf16 or f32 inputs, not {spec.dtype}")
    if spec.head_dim not in (16, 32, 64, 128, 256):
        raise TritonUnsupported("the Triton reference needs a head dim of 16, 32, 64, 128 or 256, "
                                f"got {spec.head_dim}")
    if not spec.causal and spec.seq % block_n:
        raise TritonUnsupported(f"the Triton reference without a causal mask needs the sequence "
                                f"length ({spec.seq}) to be a multiple of block_n={block_n}")
    if spec.causal and block_m % block_n:
        raise TritonUnsupported(f"the causal Triton reference needs block_m ({block_m}) to be a "
                                f"multiple of block_n ({block_n})")


def compile_attention(spec: AttentionSpec, chip: str = "sm_90a", *, block_m: int = 128,
                      block_n: int = 64, num_stages: int = 3,
                      num_warps: Optional[int] = None) -> TritonKernel:
    """Compiles the reference attention for `spec` on `chip` (sm_80 or sm_90a)."""
    if chip not in CAPABILITY:
        raise TritonUnsupported(f"the Triton reference targets {sorted(CAPABILITY)}, not {chip!r}")
    check_spec(spec, block_m, block_n)
    warps = num_warps or max(1, block_m // 16)
    try:
        compiled = compile_aot(arch=CAPABILITY[chip], head_dim=spec.head_dim, causal=spec.causal,
                               dtype=_TT_DTYPE[spec.dtype], block_m=block_m, block_n=block_n,
                               num_warps=warps, num_stages=num_stages, ptx_version=None,
                               input_precision=spec.input_precision)
    except TritonUnavailable:
        raise
    except Exception as e:  # Triton's errors are plain exceptions with long messages
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise TritonUnsupported("Triton failed to compile the reference kernel: "
                                f"{lines[0] if lines else type(e).__name__}") from None
    asm = compiled.asm
    meta = compiled.metadata
    metadata = {"shared_bytes": int(getattr(meta, "shared", 0)), "num_warps": warps,
                "num_stages": num_stages, "block_m": block_m, "block_n": block_n,
                "kernel": getattr(meta, "name", "attn_fwd"), "triton": triton_version(),
                "grid": [-(-spec.seq // block_m), spec.batch * spec.heads, 1],
                "block": [32 * warps, 1, 1]}
    cubin = asm.get("cubin")
    return TritonKernel(name=metadata["kernel"], chip=chip, spec=spec,
                        options=dict(block_m=block_m, block_n=block_n, num_stages=num_stages,
                                     num_warps=warps),
                        stages={k: v for k, v in asm.items() if isinstance(v, str)},
                        ptx=asm["ptx"], cubin=cubin if isinstance(cubin, bytes) else None,
                        metadata=metadata)

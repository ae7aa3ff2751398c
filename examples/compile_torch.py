"""Compile plain PyTorch attention code with attncc: capture, look at the IR,
run, compare with torch.

    python examples/compile_torch.py
"""
import math

import torch
import torch.nn.functional as F

import attncc


@attncc.compile(block_m=64, block_n=64)
def attention(q, k, v):
    # GQA, HF style: repeat each KV head for its group of query heads.
    n = q.shape[1] // k.shape[1]
    k = k[:, :, None].expand(-1, -1, n, -1, -1).flatten(1, 2)
    v = v.repeat_interleave(n, dim=1)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    causal = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril()
    s = s.masked_fill(~causal, torch.finfo(s.dtype).min)
    return F.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype) @ v


def main() -> None:
    q = torch.randn(1, 8, 256, 64, dtype=torch.bfloat16)
    k = torch.randn(1, 2, 256, 64, dtype=torch.bfloat16)
    v = torch.randn(1, 2, 256, 64, dtype=torch.bfloat16)

    compiled = attention.lower(q, k, v)
    print("// ===== captured graph =====")
    print(compiled.ir("graph"))
    print("// ===== fused =====")
    print(compiled.ir("fused"))

    out = attention(q, k, v)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True,
                                         enable_gqa=True)
    print("max |attncc - float64| =", (out.double() - ref).abs().max().item())
    print("max |attncc - attncc.attention| =",
          (out - attncc.attention(q, k, v, causal=True)).abs().max().item())


if __name__ == "__main__":
    main()

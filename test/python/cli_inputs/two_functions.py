"""Two attention functions: the command line needs FILE.py:FUNCTION."""
import torch
import torch.nn.functional as F


def full(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def causal(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def example_inputs():
    return [torch.empty(1, 2, 64, 64, dtype=torch.float16, device="meta") for _ in range(3)]

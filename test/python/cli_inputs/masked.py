"""Attention with a boolean mask argument (True = keep), real CPU inputs."""
import torch


def attention(q, k, v, mask):
    s = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v


def example_inputs():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 48, 32, generator=g) for _ in range(3))
    mask = torch.rand(1, 1, 48, 48, generator=g) < 0.7
    mask |= torch.eye(48, dtype=torch.bool)            # no fully masked row
    return q, k, v, mask

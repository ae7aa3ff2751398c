"""An attention function without example_inputs(): shapes come from --shape."""
import torch


def attention(q, k, v, scale=0.125):
    return torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1) @ v

"""Capture of plain PyTorch attention code as attn graphs.

    from attncc.frontend import capture
    cap = capture(fn, q, k, v)      # traces fn (torch.export), maps ATen ops to attn ops
    print(cap.graph)                # the graph-level IR

Modules: trace (torch.export on fake tensors), aten (the ops we know),
convert (FX graph -> attn Graph), masks (causal / sliding-window recognition,
biases), host (the torch-side computations: masks, layout changes of inputs),
capture (argument binding, per-signature captures, the fused-stage check).
"""
from ..errors import CaptureError
from .capture import Bound, Capture, bind, capture, check_attention, check_tensors
from .masks import MaskClass

__all__ = ["CaptureError", "Capture", "capture", "MaskClass", "bind", "check_tensors",
           "check_attention", "Bound"]

"""`torch.compile(model, backend="attncc")`: attncc's kernels for the
attention, inductor for the rest.

The backend is registered through torch's `torch_dynamo_backends` entry
point (pyproject.toml), so no import is needed. Dynamo hands it the captured
FX graph (torch-level ops); each `scaled_dot_product_attention` call in it,
and each hand-written attention (matmul, scale, soft-cap, mask, softmax,
matmul: fx_patterns.py), becomes a call of `torch.ops.attncc.attention`
(integrations/op.py), and the
graph goes on to inductor (`compile_fx`), which sees the operator as an
opaque kernel with a shape-only fake implementation. Calls that already are
`torch.ops.attncc.attention` (a transformers model with
attn_implementation="attncc") pass through unchanged.

Under `dynamic=True` the batch and sequence lengths stay symbolic: attncc's
kernels are dynamic in them too (one kernel per structure and query-length
bucket), so a generate loop neither recompiles graphs nor kernels.

What attncc lacks is refused while compiling, naming it (dropout_p that is
not 0, an `is_causal` that is a traced value), never left to
another attention silently.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional, Sequence

import torch
from torch import fx

from ..errors import InputError
from . import op as _op  # noqa: F401  (defines torch.ops.attncc.attention)
from .fx_patterns import attention_shapes, replace_eager_attention

_SDPA = {torch.nn.functional.scaled_dot_product_attention,
         torch._C._nn.scaled_dot_product_attention}
_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
              "enable_gqa")
_STATS = {"graphs": 0, "replaced": 0}
_LOCK = threading.Lock()


def stats() -> dict[str, int]:
    """Graphs this backend compiled and attention calls it replaced with
    attncc's operator, in this process (never reset)."""
    with _LOCK:
        return dict(_STATS)


def _sdpa_args(node: fx.Node) -> dict[str, Any]:
    args = dict(zip(_SDPA_ARGS, node.args))
    args.update(node.kwargs)
    unknown = set(args) - set(_SDPA_ARGS)
    if unknown:
        raise InputError(f"scaled_dot_product_attention with {sorted(unknown)}: attncc does "
                         "not support these arguments")
    return args


def _constant(args: dict, name: str, default: Any, node: fx.Node) -> Any:
    value = args.get(name, default)
    if isinstance(value, fx.Node):
        raise InputError(f"scaled_dot_product_attention at {node.meta.get('stack_trace', '?')}"
                         f": {name} is a traced value; attncc needs a constant")
    return value


def replace_attention(gm: fx.GraphModule) -> int:
    """Replaces the graph's `scaled_dot_product_attention` calls with
    `torch.ops.attncc.attention`; returns how many."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _SDPA:
            continue
        args = _sdpa_args(node)
        # attncc takes [B, H, L, D] with one batch size; torch's other ranks
        # ([B*H, L, D], ...) and broadcasts are left to inductor.
        qkv = [args[n].meta.get("example_value") if isinstance(args[n], fx.Node) else None
               for n in ("query", "key", "value")]
        if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in qkv) or \
                not attention_shapes(*qkv):
            continue
        if _constant(args, "dropout_p", 0.0, node):
            raise InputError("attncc has no attention dropout (scaled_dot_product_attention "
                             f"with dropout_p={args['dropout_p']}): call model.eval()")
        causal = _constant(args, "is_causal", False, node)
        # A scale may be a traced float (dynamo lifts float attributes under
        # dynamic=True): it reaches the operator as a number at run time.
        scale = args.get("scale")
        if scale is not None and not isinstance(scale, fx.Node):
            scale = float(scale)
        mask = args.get("attn_mask")
        if causal and mask is not None:
            raise InputError("scaled_dot_product_attention with both attn_mask and is_causal")
        # enable_gqa needs nothing: attncc takes Hq = n * Hkv heads as they are.
        with gm.graph.inserting_before(node):
            new = gm.graph.call_function(
                torch.ops.attncc.attention.default,
                (args["query"], args["key"], args["value"], mask,
                 "top_left" if causal else "none",
                 scale, -1, -1, None, None))
        new.meta.update(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        count += 1
    if count:
        gm.graph.lint()
        gm.recompile()
    return count


def attncc_backend(gm: fx.GraphModule, example_inputs: Sequence[Any],
                   rest: Optional[Callable] = None, **kwargs: Any) -> Callable:
    """The dynamo backend: attention to attncc, the rest to `rest`
    (inductor's `compile_fx` by default)."""
    n = replace_attention(gm) + replace_eager_attention(gm)
    with _LOCK:
        _STATS["graphs"] += 1
        _STATS["replaced"] += n
    if rest is None:
        from torch._inductor.compile_fx import compile_fx
        return compile_fx(gm, example_inputs, **kwargs)
    return rest(gm, example_inputs)

"""Capturing a user function on example inputs: binding its arguments,
tracing it once per input signature, and building (and checking) the attn
graph for each classification of its masks.

    cap = capture(fn, q, k, v)          # torch tensors (real or device="meta")
    cap.graph                           # the attn Graph (masks as classified on these inputs)
    lowered = cap.lowered_for(tensors)  # the graph for other inputs of the same signature
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from mlir import ir

from ..compiler import run_stages
from ..context import mlir_context
from ..errors import CaptureError, CompileError, InputError, InputTypeError
from . import aten as A
from .convert import Converter, Lowered
from .host import HostEvaluator
from .masks import BIAS, MaskClass, build_bias, classify
from .trace import Traced, trace

SUPPORTED_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


# -- arguments ---------------------------------------------------------------------

@dataclass
class Bound:
    """A call's arguments: the flat tensors, and a key of everything else."""

    tensors: list[torch.Tensor]
    names: list[str]                  # a name for each tensor ("q", "args[1]", ...)
    key: tuple                        # shapes/dtypes/devices/strides-kind + constants
    call: Callable[[Sequence[torch.Tensor]], Any]   # fn on substituted tensors


def _const_key(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device)):
        return (type(value).__name__, value)
    if isinstance(value, (tuple, list)) and not any(isinstance(v, torch.Tensor) for v in value):
        return (type(value).__name__, tuple(_const_key(name, v) for v in value))
    raise InputTypeError(
        f"argument '{name}' is a {type(value).__name__}; attncc compiles functions of torch "
        "tensors and Python constants (numbers, bools, strings, None, dtypes)")


_NO_SIGNATURE = object()


def signature_of(fn: Callable) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def bind(fn: Callable, args: Sequence[Any], kwargs: dict[str, Any],
         sig: Any = _NO_SIGNATURE) -> Bound:
    """Binds a call of `fn` (with `sig`, `inspect.signature(fn)` unless given)."""
    if sig is _NO_SIGNATURE:
        sig = signature_of(fn)
    if sig is not None:
        try:
            ba = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise InputTypeError(f"{getattr(fn, '__name__', 'fn')}(): {e}") from None
        ba.apply_defaults()
        items = list(ba.arguments.items())
        kinds = {p.name: p.kind for p in sig.parameters.values()}
    else:
        items = [(f"args[{i}]", a) for i, a in enumerate(args)] + list(kwargs.items())
        kinds = {}
    tensors: list[torch.Tensor] = []
    names: list[str] = []
    key: list[Any] = []

    def visit(name: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            tensors.append(value)
            names.append(name)
            key.append(("T", tuple(value.shape), value.dtype, value.device.type,
                        value.device.index))
            return ("__tensor__", len(tensors) - 1)
        key.append((name, _const_key(name, value)))
        return value

    flat_items = []
    for name, value in items:
        kind = kinds.get(name)
        if kind == inspect.Parameter.VAR_POSITIONAL:
            flat_items.append((name, tuple(visit(f"{name}[{i}]", v) for i, v in enumerate(value))))
        elif kind == inspect.Parameter.VAR_KEYWORD:
            flat_items.append((name, {k: visit(k, v) for k, v in value.items()}))
        else:
            flat_items.append((name, visit(name, value)))

    def sub(x, ts):
        if isinstance(x, tuple) and len(x) == 2 and x[0] == "__tensor__":
            return ts[x[1]]
        if isinstance(x, tuple):
            return tuple(sub(v, ts) for v in x)
        if isinstance(x, dict):
            return {k: sub(v, ts) for k, v in x.items()}
        return x

    def call(ts: Sequence[torch.Tensor]) -> Any:
        if sig is None:
            pos = [sub(v, ts) for n, v in flat_items if n.startswith("args[")]
            kw = {n: sub(v, ts) for n, v in flat_items if not n.startswith("args[")}
            return fn(*pos, **kw)
        new = inspect.BoundArguments(sig, {n: sub(v, ts) for n, v in flat_items})
        return fn(*new.args, **new.kwargs)

    return Bound(tensors, names, tuple(key), call)


def target_device_type(target: str) -> str:
    """The torch device type a target's kernels run on: 'cpu' for the CPU,
    'cuda' for the GPU targets (sm_80, sm_90a, cuda)."""
    return "cpu" if target == "cpu" else "cuda"


def check_tensors(bound: Bound, *, allow_meta: bool, target: str = "cpu") -> torch.device:
    """Dtypes and devices of a call's tensors; the device they are on."""
    if not bound.tensors:
        raise InputTypeError("the function takes no tensors; attncc compiles attention on "
                             "torch tensors")
    devices = {t.device for t in bound.tensors}
    if len(devices) > 1:
        listing = ", ".join(f"'{n}' on {t.device}" for n, t in zip(bound.names, bound.tensors))
        raise InputError(f"all tensors must be on one device; got {listing}")
    device = devices.pop()
    if device.type == "meta" and not allow_meta:
        raise InputError("meta tensors carry no data: they can be lowered "
                         "(compiled_fn.lower(...)) but not run")
    if device.type not in ("meta", target_device_type(target)):
        raise InputError(f"tensors are on {device} but the target is '{target}'")
    for name, t in zip(bound.names, bound.tensors):
        if t.is_floating_point() and t.dtype not in SUPPORTED_FLOATS:
            raise InputError(f"argument '{name}' has dtype {t.dtype}; attncc supports "
                             "torch.float32, torch.float16 and torch.bfloat16")
        if t.is_complex():
            raise InputError(f"argument '{name}' is complex ({t.dtype}); not supported")
        if t.layout != torch.strided:
            raise InputError(f"argument '{name}' has layout {t.layout}; only dense "
                             "(strided) tensors are supported")
    check_no_grad(zip(bound.names, bound.tensors))
    return device


def check_no_grad(named_tensors) -> None:
    """attncc kernels have no backward: a result that silently drops the
    gradient would be a wrong answer, so inputs that require grad with grad
    mode on are refused (torch.no_grad() / inference_mode() or .detach())."""
    if not torch.is_grad_enabled():
        return
    for name, t in named_tensors:
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise InputError(f"'{name}' requires grad, but attncc has no backward pass; call "
                             "it under torch.no_grad() or torch.inference_mode(), or pass "
                             f"{name}.detach()")


# -- the fused-stage check -------------------------------------------------------------

def check_attention(lowered: Lowered, fn_name: str, fn_where: str) -> str:
    """Raises CaptureError unless attn-fuse turns the graph into exactly one
    `attn.attention` with nothing else computing (a scale of the bias input
    is part of it). Returns the IR of stage 'fused', which the compiler then
    starts from (it is the same for every target)."""
    text = str(lowered.graph.module)
    with mlir_context():
        module = ir.Module.parse(text)
        try:
            run_stages(module, "cpu", {}, lowered.graph.name, until="fused", keep_ir=False)
        except CompileError as e:
            raise CaptureError(f"{fn_name} ({fn_where}): attn-fuse failed: {e}") from None
        fused = str(module)
        func = module.body.operations[0]
        ops = [op.operation for op in func.regions[0].blocks[0].operations]
        attention = [op for op in ops if op.name == "attn.attention"]
        allowed = {"attn.attention", "func.return"}
        others = []
        for op in ops:
            if op.name in allowed:
                continue
            if op.name == "attn.scale" and _scales_bias_arg(op, attention):
                continue
            others.append(op.name)
    graph_has_softmax = "attn.softmax" in text
    if len(attention) == 1 and not others:
        return fused
    if not graph_has_softmax:
        why = "it has no softmax"
    elif len(attention) > 1:
        why = f"it computes {len(attention)} attentions"
    else:
        kinds = sorted(set(others))
        why = ("after attn-fuse these ops are still computed: " + ", ".join(kinds) +
               " (attncc compiles softmax(Q @ K^T * scale + mask) @ V: a softmax over the "
               "last axis of Q @ K^T, then a matmul with V)")
    raise CaptureError(f"{fn_name} ({fn_where}) is not an attention computation: {why}")


def _scales_bias_arg(op: ir.Operation, attention: list) -> bool:
    """`op` (an attn.scale) scales a function argument into the bias of an
    attention op: attn-fuse's form of a bias applied before a scale."""
    if not isinstance(op.operands[0].owner, ir.Block):
        return False
    result = op.results[0]
    users = [getattr(u.owner, "operation", u.owner).name for u in result.uses]
    return bool(users) and all(n == "attn.attention" for n in users)


# -- captures ---------------------------------------------------------------------------

class Capture:
    """`fn` traced for one input signature. Masks that depend on the inputs
    are classified per call (see masks.py); each classification gets its own
    graph, built and checked once."""

    def __init__(self, fn: Callable, bound: Bound, device: torch.device,
                 bottom_right: bool = True) -> None:
        self.fn = fn
        # masks recognised as bottom-right aligned only where the target has them
        self.bottom_right = bottom_right
        trace_device = torch.device("cpu") if device.type == "meta" else device
        self.traced: Traced = trace(fn, bound.tensors, bound.call, trace_device)
        self.host = HostEvaluator(self.traced)
        self.names = list(bound.names)
        self._lowered: dict[tuple, Lowered] = {}
        self._fused: dict[tuple, str] = {}       # IR of stage 'fused' per classification
        base, fused = self._build({})
        self.slots = base.slots
        self.dynamic = [i for i, s in enumerate(base.slots) if s.dynamic]
        self._lowered[self._key({})] = base
        self._fused[self._key({})] = fused

    @property
    def graph(self):
        """The graph with input-dependent masks as biases."""
        return self._lowered[self._key({})].graph

    @property
    def base(self) -> Lowered:
        return self._lowered[self._key({})]

    def _key(self, classes: dict[int, MaskClass]) -> tuple:
        return tuple(classes.get(i, BIAS) for i in getattr(self, "dynamic", ()))

    def _build(self, classes: dict[int, MaskClass]) -> tuple[Lowered, str]:
        """The graph of one classification, and its IR at stage 'fused'."""
        first = Converter(self.traced, self.host, self.names, classes,
                          bottom_right=self.bottom_right)
        lowered = first.run()
        plan = first.sorted_plan()
        if [p[0] for p in plan] != [p[0] for p in first.plan]:
            # Graph arguments are fixed when they are created: the inputs
            # were discovered out of order (e.g. a mask before an argument),
            # so the graph is built again with them in argument order.
            lowered = Converter(self.traced, self.host, self.names, classes, plan=plan,
                                bottom_right=self.bottom_right).run()
        return lowered, check_attention(lowered, self.traced.fn_name, self.traced.fn_where)

    def classify(self, tensors: Sequence[torch.Tensor], env: dict) -> dict[int, MaskClass]:
        """Classes of the input-dependent masks for these tensors."""
        out = {}
        device = tensors[0].device
        if device.type == "meta":
            return out
        for i in self.dynamic:
            slot = self.slots[i]
            values = self.host.run(list(slot.nodes), tensors, device, env)
            out[i] = classify(slot.parts, values, slot.L, slot.S, self.bottom_right)
        return out

    def lowered(self, classes: dict[int, MaskClass]) -> Lowered:
        key = self._key(classes)
        if key not in self._lowered:
            self._lowered[key], self._fused[key] = self._build(classes)
        return self._lowered[key]

    def fused(self, classes: dict[int, MaskClass]) -> str:
        """The IR of stage 'fused' of `lowered(classes)` (checked when built)."""
        self.lowered(classes)
        return self._fused[self._key(classes)]

    def lowered_for(self, tensors: Sequence[torch.Tensor]) -> Lowered:
        return self.lowered(self.classify(tensors, {}))

    def graph_inputs(self, lowered: Lowered, tensors: Sequence[torch.Tensor],
                     env: dict) -> list[torch.Tensor]:
        """The kernel's arguments (graph-input order) for a call with `tensors`."""
        device = tensors[0].device
        out = []
        for spec in lowered.inputs:
            if spec.kind == "arg":
                x = tensors[spec.arg]
            elif spec.kind == "host":
                (x,) = self.host.run([spec.node], tensors, device, env)
            elif spec.kind == "host_mT":
                (x,) = self.host.run([spec.node], tensors, device, env)
                x = x.mT
            elif spec.kind == "host_sinks":     # [1, H, 1, 1]-like -> f32 [H]
                (x,) = self.host.run([spec.node], tensors, device, env)
                x = x.reshape(-1).to(torch.float32)
            else:
                slot = lowered.slots[spec.slot]
                values = self.host.run(list(slot.nodes), tensors, device, env)
                x = build_bias(slot.parts, values)
                if x.dtype != slot.bias_dtype:
                    x = x.to(slot.bias_dtype)
            if spec.pad:
                x = x.reshape((1,) * spec.pad + tuple(x.shape))
            out.append(x.contiguous())
        return out

    def finish(self, lowered: Lowered, out: torch.Tensor, tensors: Sequence[torch.Tensor],
               env: dict) -> torch.Tensor:
        """Applies the layout ops that follow the attention in `fn` to the
        kernel's output."""
        if tuple(out.shape) != lowered.out_shape:   # rank-3 attention computed as rank 4
            out = out.reshape(lowered.out_shape)
        for node in lowered.post:
            rest = [self._host_arg(a, tensors, out.device, env) for a in node.args[1:]]
            kw = {k: self._host_arg(a, tensors, out.device, env) for k, a in node.kwargs.items()}
            out = A.functional(node.target)(out, *rest, **kw)
        spec = self.traced.out_spec
        if spec is not None and not spec.is_leaf():   # fn returned [out], (out,), {"o": out}
            out = torch.utils._pytree.tree_unflatten([out], spec)
        return out

    def _host_arg(self, a: Any, tensors, device, env) -> Any:
        if isinstance(a, torch.fx.Node):
            return self.host.run([a], tensors, device, env)[0]
        if isinstance(a, (list, tuple)):
            return type(a)(self._host_arg(x, tensors, device, env) for x in a)
        return a


def capture(fn: Callable, *args: Any, **kwargs: Any) -> Capture:
    """Traces `fn(*args, **kwargs)` (example tensors: real or `device="meta"`)
    and maps it to an attn graph: `capture(fn, q, k, v).graph`."""
    bound = bind(fn, args, kwargs)
    device = check_tensors(bound, allow_meta=True)
    return Capture(fn, bound, device)

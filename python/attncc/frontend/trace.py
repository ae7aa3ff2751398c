"""Tracing a user function into an ATen-level FX graph with `torch.export`.

Why `torch.export` (non-strict), and not `torch.fx.symbolic_trace`:

* Real attention code computes with shapes and dtypes: `math.sqrt(q.size(-1))`,
  `torch.finfo(q.dtype).min`, `torch.ones(L, S, dtype=torch.bool).tril()` with
  `L, S = scores.shape[-2:]`. Symbolic tracing hands the function proxies, so
  `math.sqrt(proxy)` and `torch.finfo(proxy)` fail. Export runs the function on
  fake tensors with concrete shapes: those lines just run, and the masks built
  from them become ordinary graph nodes that we can evaluate.
* Export normalizes the many spellings to a few ATen ops (`@`, `torch.matmul`
  and `Tensor.matmul` -> `aten.matmul`; `F.softmax`, `torch.softmax` and
  `Tensor.softmax` -> `aten.softmax.int`; `.float()`, `.to(dtype)` ->
  `aten.to.dtype`), while its default (pre-dispatch) IR keeps the high-level
  ops we want to see whole: `matmul`, `einsum`, `softmax`, `repeat_interleave`,
  `mT` and `scaled_dot_product_attention` are not decomposed.
* In-place ops come back threaded (`s.masked_fill_(...)` produces a node that
  later uses refer to), closed-over tensors come back as lifted constants, and
  every node carries `stack_trace`, so errors can name the user's line.

The function is traced on fake tensors (`FakeTensorMode`) of the example
inputs' shapes, dtypes and strides on the trace device: no data is read or
allocated, so `device="meta"` examples work too. Each tensor argument gets its
own fake tensor, so two arguments that happen to be the same tensor object are
still two graph inputs.
"""
from __future__ import annotations

import contextlib
import logging

import inspect
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import fx

from ..errors import CaptureError

_FRONTEND_DIR = str(Path(__file__).resolve().parent)
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)\n(?P<code>[^\n]*)')


@dataclass
class Traced:
    """An exported function: its FX graph, which placeholder is which tensor
    argument, and the constants it closed over."""

    graph: fx.Graph
    user_inputs: dict[fx.Node, int]      # placeholder -> index into the flat tensor args
    constants: dict[fx.Node, torch.Tensor]
    output: fx.Node
    fn_where: str                        # "file:line" of the function's definition
    fn_name: str
    trace_device: torch.device
    # How fn's return value nests its one tensor (a bare tensor, a list, a
    # dict, ...): the compiled function returns the same structure.
    out_spec: Any = None


def function_location(fn: Callable) -> tuple[str, str]:
    """(name, "file:line") of a Python callable, as best we can tell."""
    target = inspect.unwrap(fn)
    if isinstance(target, torch.nn.Module):
        target = type(target).forward
    elif not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(target):
        target = getattr(type(target), "__call__", target)
    name = getattr(target, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    code = getattr(inspect.unwrap(target), "__code__", None)
    if code is None:
        return name, "<unknown>"
    return name, f"{code.co_filename}:{code.co_firstlineno}"


def node_location(node: Optional[fx.Node]) -> Optional[str]:
    """`file:line` and the code line of the user's frame that made `node`:
    the innermost frame of its stack trace outside attncc's frontend and torch
    (an `nn.Dropout` module names the user's line that called it)."""
    if node is None:
        return None
    st = node.meta.get("stack_trace") if hasattr(node, "meta") else None
    if not st:
        return None
    frames = [m for m in _FRAME.finditer(st)
              if not m["file"].startswith((_FRONTEND_DIR, _TORCH_DIR))]
    if not frames:
        return None
    m = frames[-1]
    code = m["code"].strip()
    return f"{m['file']}:{m['line']}" + (f": {code}" if code else "")


def _register_anchor(fn: Callable) -> None:
    """Asks FX to keep the frames of `fn` in node stack traces. Export keeps
    only frames of functions named `forward` by default; the user's function
    is registered as an anchor so that its lines are recorded as well."""
    register = getattr(getattr(fx, "proxy", None), "_register_stack_trace_anchor", None)
    if register is None:
        return
    target = inspect.unwrap(fn)
    if isinstance(target, torch.nn.Module):
        target = type(target).forward
    elif inspect.ismethod(target):
        target = target.__func__
    elif not inspect.isfunction(target) and callable(target):
        target = getattr(type(target), "__call__", target)
    try:
        register(target)
    except Exception:  # pragma: no cover - best effort, private API
        pass


class _Wrapper(torch.nn.Module):
    def __init__(self, call: Callable[[Sequence[torch.Tensor]], Any]) -> None:
        super().__init__()
        self._call = call

    def forward(self, *tensors):
        return self._call(tensors)


def fake_like(mode, t: torch.Tensor, device: torch.device) -> torch.Tensor:
    with mode:
        return torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype,
                                   device=device)


def trace(fn: Callable, tensors: Sequence[torch.Tensor],
          call: Callable[[Sequence[torch.Tensor]], Any], device: torch.device) -> Traced:
    """Exports `call(tensors)` (which calls `fn`) on fake copies of `tensors`."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    fn_name, fn_where = function_location(fn)
    _register_anchor(fn)
    mode = FakeTensorMode()
    fakes = tuple(fake_like(mode, t, device) for t in tensors)
    try:
        with _quiet_fake_tensor_log():
            ep = torch.export.export(_Wrapper(call), fakes, strict=False)
    except CaptureError:
        raise
    except Exception as e:  # torch raises many kinds; name the user's line
        raise CaptureError(f"could not trace {fn_name} ({fn_where}): "
                           f"{_short(e)}{_user_frame(e, fn_where)}") from e

    from torch.export.graph_signature import InputKind

    gm = ep.graph_module
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    specs = ep.graph_signature.input_specs
    if len(specs) != len(placeholders):  # pragma: no cover - export invariant
        raise CaptureError(f"could not trace {fn_name} ({fn_where}): unexpected export signature")
    user_inputs: dict[fx.Node, int] = {}
    constants: dict[fx.Node, torch.Tensor] = {}
    k = 0
    for node, spec in zip(placeholders, specs):
        if spec.kind == InputKind.USER_INPUT:
            user_inputs[node] = k
            k += 1
        elif spec.kind in (InputKind.CONSTANT_TENSOR, InputKind.BUFFER, InputKind.PARAMETER):
            value = ep.constants.get(spec.target) if spec.target in ep.constants \
                else ep.state_dict.get(spec.target)
            if not isinstance(value, torch.Tensor):
                raise CaptureError(f"{fn_name} ({fn_where}) uses a constant of type "
                                   f"{type(value).__name__} ({spec.target}); expected a tensor")
            constants[node] = value.detach()
        else:
            raise CaptureError(f"{fn_name} ({fn_where}) has an input of kind {spec.kind.name}; "
                               "attncc captures functions of tensors")
    output = next(n for n in gm.graph.nodes if n.op == "output")
    _refuse_random_ops(gm.graph, fn_name, fn_where)
    out_spec = ep.module_call_graph[0].signature.out_spec
    return Traced(gm.graph, user_inputs, constants, output, fn_where, fn_name, device, out_spec)


# Ops whose values differ per call: captured, they would be computed once and
# frozen into the kernel's inputs. Dropout is handled (refused in training
# mode) by the converter.
_RANDOM_OPS = {"rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "randperm",
               "normal", "uniform", "bernoulli", "multinomial", "poisson", "exponential",
               "geometric", "cauchy", "log_normal", "random"}


def _refuse_random_ops(graph: fx.Graph, fn_name: str, fn_where: str) -> None:
    for node in graph.nodes:
        schema = getattr(node.target, "_schema", None) if node.op == "call_function" else None
        if schema is None:
            continue
        op = schema.name.split("::")[-1].rstrip("_")
        if op in _RANDOM_OPS:
            where = ""
            trace = node.meta.get("stack_trace") or ""
            frames = [m for m in _FRAME.finditer(trace) if m.group("file") == fn_where.rsplit(":", 1)[0]]
            if frames:
                f = frames[-1]
                where = f"\n  at {f.group('file')}:{f.group('line')}: {f.group('code').strip()}"
            raise CaptureError(f"{fn_name} ({fn_where}) calls the random op {schema.name}: its "
                               "values would be drawn once and frozen into the compiled kernel; "
                               "draw them outside and pass them as an argument" + where)


@contextlib.contextmanager
def _quiet_fake_tensor_log():
    """torch logs a 25-line traceback at ERROR level for every op whose meta
    function fails (a shape error in the user's code) before raising; the
    CaptureError that follows says the same in two lines."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _short(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    lines = text.splitlines()
    text = "\n".join(lines[:6]) + ("\n..." if len(lines) > 6 else "")
    return f"{type(e).__name__}: {text}"


def _user_frame(e: BaseException, fn_where: str) -> str:
    """The innermost frame of the exception in the user's file, if any."""
    user_file = fn_where.rsplit(":", 1)[0]
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == user_file]
    if not frames:
        return ""
    f = frames[-1]
    return f"\n  at {f.filename}:{f.lineno}: {(f.line or '').strip()}"

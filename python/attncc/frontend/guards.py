"""What a captured function reads besides its arguments, as a cache key.

torch.export bakes the values a function reads from its globals and closure
(a Python float used as the scale, a closed-over mask tensor) into the graph
it captures. A compiled function whose kernel was built from old values would
silently keep computing with them, so, like torch.compile's guards, the values
are part of the key of the compiled-function cache: a changed global number, a
rebound or in-place-modified closed-over tensor (its version counter moves)
gives a recompile, never a stale result.

Guarded: globals named by fn's code (and the code objects nested in it),
closure cells and, for an nn.Module, its own attributes, parameters and
buffers named by forward's code (`self.scale`, `self.sinks`), whose value is
a number, bool, string, None, a tuple of those, or a tensor (identity,
version, storage: `.data = ...` moves it). Submodules that forward names
(`self.inner(...)`, `self.inner.scale`) are guarded the same way with the
names of both forwards, and the children of a container it names
(`nn.ModuleList`, `nn.Sequential`, `nn.ModuleDict`) all of them, recursively.
Functions and other objects are not looked into.
"""
from __future__ import annotations

import types
from typing import Any, Callable, Iterator

import torch

_SCALARS = (bool, int, float, complex, str, type(None))


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _code_objects(c)


def _function_of(fn: Callable) -> types.FunctionType | None:
    if isinstance(fn, torch.nn.Module):
        fn = type(fn).forward
    fn = getattr(fn, "__func__", fn)                 # bound methods
    return fn if isinstance(fn, types.FunctionType) else None


def _value_key(value: Any) -> Any:
    """A hashable stand-in for `value`, or None when it is not guarded."""
    if isinstance(value, _SCALARS):
        return ("v", type(value).__name__, value)
    if isinstance(value, torch.Tensor):
        # identity and version: rebinding or modifying in place both change it
        ptr = value.data_ptr() if value.layout == torch.strided else None   # sparse: none
        return ("t", id(value), value._version, ptr, tuple(value.shape), value.dtype)
    if isinstance(value, tuple) and all(isinstance(v, _SCALARS) for v in value):
        return ("v", "tuple", value)
    return None


_CONTAINERS = (torch.nn.ModuleList, torch.nn.Sequential, torch.nn.ModuleDict)


def _forward_names(module: torch.nn.Module) -> set[str]:
    f = _function_of(module)
    return {n for c in _code_objects(f.__code__) for n in c.co_names} if f else set()


def _module_key(module: torch.nn.Module, path: str, names: set[str], key: list,
                seen: set[int]) -> None:
    """Appends the guarded attributes of `module` named in `names`, then those of
    the submodules named there (with their own forward's names added)."""
    if id(module) in seen:
        return
    seen.add(id(module))
    for name in sorted(names):
        for where in (module.__dict__, module._parameters, module._buffers):
            if name in where:
                k = _value_key(where[name])
                if k is not None:
                    key.append(("attribute", path + name, k))
                break
    container = isinstance(module, _CONTAINERS)
    for name, sub in module._modules.items():
        if sub is not None and (container or name in names):
            key.append(("module", path + name, id(sub)))      # a replaced submodule
            _module_key(sub, f"{path}{name}.", names | _forward_names(sub), key, seen)


def guard_key(fn: Callable) -> tuple:
    """The guarded outside values `fn` reads, as a hashable tuple."""
    f = _function_of(fn)
    if f is None:
        return ()
    key: list[Any] = []
    names = sorted({n for c in _code_objects(f.__code__) for n in c.co_names})
    for name in names:
        if name in f.__globals__:
            k = _value_key(f.__globals__[name])
            if k is not None:
                key.append(("global", name, k))
    if isinstance(fn, torch.nn.Module):
        _module_key(fn, "", set(names), key, set())
    for name, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:   # an empty cell
            continue
        k = _value_key(value)
        if k is not None:
            key.append(("closure", name, k))
    return tuple(key)

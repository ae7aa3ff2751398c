"""MLIR contexts with the attn dialect and passes registered.

The dialect and passes are linked against the MLIR copy inside the `mlir`
wheel (libMLIRPythonCAPI.so), so they share its registries: see docs/build.md.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from mlir import ir
from mlir._mlir_libs._mlir import globals as _mlir_globals

from ._attncc import register_dialect, register_passes

_mlir_globals.append_dialect_search_prefix("attncc.dialects")
register_passes()


def new_context() -> ir.Context:
    """A fresh context with the attn dialect loaded (upstream dialects are
    registered by the bindings themselves)."""
    ctx = ir.Context()
    register_dialect(ctx)
    ctx.allow_unregistered_dialects = False
    return ctx


_graphs = threading.local()


def graph_context() -> ir.Context:
    """The context Graphs are built in: one per thread, made on first use.
    Making a context costs 6-8 ms (every upstream dialect is registered in
    it), which was a fifth of a new process's first call of a kernel it had
    on disk (docs/cpu-backend.md); graphs are small and their types and
    attributes are uniqued, so sharing one costs little memory. Lowering
    still runs in a context of its own (`mlir_context`)."""
    ctx = getattr(_graphs, "context", None)
    if ctx is None:
        ctx = _graphs.context = new_context()
    return ctx


@contextlib.contextmanager
def mlir_context() -> Iterator[ir.Context]:
    """`with mlir_context() as ctx:` a new context, entered with an unknown
    location, and always exited (a context left entered at interpreter exit
    crashes MLIR's finalization)."""
    ctx = new_context()
    with ctx, ir.Location.unknown():
        yield ctx

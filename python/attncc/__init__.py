"""attncc: an MLIR attention compiler for Python users.

`import attncc` registers the attn dialect and passes in the `mlir` Python
bindings (one MLIR in the process).
"""
from . import _devbuild

_devbuild.extend(__path__, "python")  # _attncc*.so of a development build
_devbuild.add_runtime(__path__)      # attncc.runtime from runtime/ when not installed

from .errors import (AttnccError, CaptureError, CompileError, GraphError, InputError,
                     InputTypeError)
from .graph import Graph, Value
from .context import new_context, mlir_context
from .options import CompileOptions, OptionError
from .api import CompiledFunction, attention, cache_info, clear_caches, compile
from .ragged import (PagedPlan, VarlenPlan, paged_attention, paged_kv_append, plan_paged,
                     plan_varlen, varlen_attention)
from ._version import __version__

__all__ = ["AttnccError", "CaptureError", "CompileError", "GraphError", "InputError",
           "InputTypeError", "OptionError", "Graph", "Value", "new_context", "mlir_context",
           "CompileOptions", "CompiledFunction", "attention", "cache_info", "clear_caches",
           "compile", "varlen_attention", "paged_attention", "paged_kv_append", "plan_paged",
           "PagedPlan", "plan_varlen", "VarlenPlan"]

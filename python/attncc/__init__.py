"""attncc: an MLIR attention compiler for Python users.

`import attncc` registers the attn dialect and passes in the `mlir` Python
bindings (one MLIR in the process).
"""
from . import _devbuild

_devbuild.extend(__path__, "python")  # _attncc*.so of a development build

from .errors import (AttnccError, CaptureError, CompileError, GraphError, InputError,
                     InputTypeError)
from .graph import Graph, Value
from .context import new_context, mlir_context
from .options import CompileOptions, OptionError
from .api import CompiledFunction, attention, compile

__all__ = ["AttnccError", "CaptureError", "CompileError", "GraphError", "InputError",
           "InputTypeError", "OptionError", "Graph", "Value", "new_context", "mlir_context",
           "CompileOptions", "CompiledFunction", "attention", "compile"]
__version__ = "0.1.0"

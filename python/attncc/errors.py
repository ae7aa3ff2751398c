"""Exceptions raised by attncc."""


class AttnccError(Exception):
    """Base class of attncc's errors."""


class GraphError(AttnccError, ValueError):
    """An attention graph is malformed: wrong ranks, shapes, dtypes or attributes."""


class CompileError(AttnccError):
    """MLIR rejected the program; the message carries MLIR's diagnostics."""


class CaptureError(AttnccError, ValueError):
    """A Python function could not be captured as an attention graph; the
    message names the op and the user's source line."""


class InputError(AttnccError, ValueError):
    """Inputs given to a compiled function or to `attncc.attention` are not
    acceptable: wrong shapes, dtypes or devices."""


class InputTypeError(InputError, TypeError):
    """An input is not a tensor (or another type attncc cannot take)."""

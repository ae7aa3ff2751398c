"""Exceptions raised by attncc."""


class AttnccError(Exception):
    """Base class of attncc's errors."""


class GraphError(AttnccError, ValueError):
    """An attention graph is malformed: wrong ranks, shapes, dtypes or attributes."""


class CompileError(AttnccError):
    """MLIR rejected the program; the message carries MLIR's diagnostics."""

"""Element types: names, torch dtypes and MLIR types."""
from __future__ import annotations

from typing import Any

from mlir import ir

from .errors import GraphError

# name -> MLIR type constructor. Float types are what attention computes on;
# integers are accepted here so that the verifier (not this table) says why
# they are rejected.
_MLIR_TYPES = {
    "f64": ir.F64Type.get,
    "f32": ir.F32Type.get,
    "f16": ir.F16Type.get,
    "bf16": ir.BF16Type.get,
    # fp8: key and value only (quantized KV caches, docs/quantized-kv.md)
    "f8E4M3FN": ir.Float8E4M3FNType.get,
    "f8E5M2": ir.Float8E5M2Type.get,
    "i32": lambda: ir.IntegerType.get_signless(32),
    "i64": lambda: ir.IntegerType.get_signless(64),
}

_TORCH_NAMES = {
    "float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16",
    "int32": "i32", "int64": "i64",
    "float8_e4m3fn": "f8E4M3FN", "float8_e5m2": "f8E5M2",
}


def dtype_name(dtype: Any) -> str:
    """Normalizes 'f16', 'float16' or torch.float16 to 'f16'."""
    name = str(dtype)
    name = name.removeprefix("torch.")
    name = _TORCH_NAMES.get(name, name)
    if name not in _MLIR_TYPES:
        raise GraphError(f"unsupported dtype {dtype!r}; expected one of {sorted(_MLIR_TYPES)}")
    return name


def mlir_type(dtype: Any) -> ir.Type:
    """The MLIR element type of `dtype` (needs an active context)."""
    return _MLIR_TYPES[dtype_name(dtype)]()


def name_of_mlir_type(t: ir.Type) -> str:
    return str(t)

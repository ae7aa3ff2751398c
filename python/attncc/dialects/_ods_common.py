"""Generated op bindings import helpers from a sibling `_ods_common`; they live in mlir's."""
from mlir.dialects import _ods_common as _upstream

globals().update({k: v for k, v in vars(_upstream).items() if not k.startswith("__")})

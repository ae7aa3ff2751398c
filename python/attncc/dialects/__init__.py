"""MLIR dialect bindings generated from attncc's ODS (see dialects/attn/AttnOps.td)."""
from .. import _devbuild

_devbuild.extend(__path__, "dialects/attn")  # generated bindings of a development build

"""The `attn` dialect's op classes (generated) and its enums."""
from ._attn_ops_gen import *  # noqa: F401,F403
from ._attn_enum_gen import *  # noqa: F401,F403

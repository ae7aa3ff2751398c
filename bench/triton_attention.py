"""The tutorial-style Triton fused attention of the bench scripts now lives in
attncc (python/attncc/reference/triton_attention.py, kernels in
_triton_kernels.py), where `attncc compare --b triton` uses it too. This module
keeps `import triton_attention as ta` of bench/gpu_kernel_report.py and
bench/gpu_attention.py working: `ta.compile_aot(...)`, `ta.launch(...)`,
`ta.attn_fwd`.
"""
from __future__ import annotations

import triton  # noqa: F401  (ImportError without Triton, as the bench scripts expect)

from attncc.reference._triton_kernels import _attn_block, attn_fwd  # noqa: F401
from attncc.reference.triton_attention import compile_aot, launch  # noqa: F401

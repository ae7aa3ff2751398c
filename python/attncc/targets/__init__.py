"""The targets attncc compiles for, declared once (the API, the CLI and the
compile driver read this table), and below it what each target's code
generation depends on: `cpu` (ISA classes, the LLVM stage's passes) and `gpu`
(chips, the NVVM stages, ptxas, launch metadata)."""
from __future__ import annotations

CPU_TARGETS = ("cpu",)
GPU_TARGETS = ("sm_80", "sm_90a", "cuda")
TARGETS = CPU_TARGETS + GPU_TARGETS


def kind(target: str) -> str:
    """"cpu" or "gpu" (ValueError for an unknown target)."""
    if target in CPU_TARGETS:
        return "cpu"
    if target in GPU_TARGETS:
        return "gpu"
    raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")

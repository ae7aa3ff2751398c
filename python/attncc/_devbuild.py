"""Finds native pieces in a development build when attncc is not installed.

An installed attncc carries `_attncc*.so` and the generated op bindings in its
own folders. Running from a source checkout instead (`PYTHONPATH=python`),
they are in the CMake build folder: `$ATTNCC_BUILD_DIR`, or `build/` at the
repository root. We append those folders to the package paths, after the
package's own, so an installed copy always wins.
"""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent.parent


def build_dir() -> Path | None:
    env = os.environ.get("ATTNCC_BUILD_DIR")
    cand = Path(env) if env else _REPO / "build"
    return cand if (cand / "CMakeCache.txt").is_file() else None


def extend(package_path: list[str], subdir: str) -> None:
    b = build_dir()
    if b is not None and (b / subdir).is_dir():
        package_path.append(str(b / subdir))


def add_runtime(package_path: list[str]) -> None:
    """Running from a source checkout, `attncc.runtime` lives in the top-level
    runtime/ folder (an installed attncc carries it in its own folder)."""
    here = Path(package_path[0])
    src = _REPO / "runtime" / "python" / "attncc"
    if not (here / "runtime").is_dir() and (src / "runtime").is_dir() \
            and str(src) not in package_path:
        package_path.append(str(src))

"""docs/tutorial.md cannot rot: its ```python blocks that start with `# FILE`
are written to FILE, and its ```sh blocks are run in order, with bash -e, in a
fresh directory, `attncc` being this checkout's command line. A block right
after `<!-- requires: TOOL -->` is skipped when TOOL (ptxas, triton) is missing."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import attncc
from attncc.targets import gpu as agpu
from attncc.reference import triton_attention as ta

DOC = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
_BLOCK = re.compile(r"(?:<!--\s*requires:\s*(?P<req>[\w, ]+)\s*-->\s*\n)?```(?P<lang>\w+)\n"
                    r"(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str, list[str]]]:
    out = []
    for m in _BLOCK.finditer(DOC.read_text()):
        req = [r.strip() for r in (m.group("req") or "").split(",") if r.strip()]
        out.append((m.group("lang"), m.group("body"), req))
    return out


def _have(tool: str) -> bool:
    return {"ptxas": agpu.find_ptxas() is not None, "triton": ta.available()}.get(tool, False)


def test_the_tutorial_covers_every_command():
    shells = "\n".join(body for lang, body, _ in blocks() if lang == "sh")
    for command in ("compile", "run", "compare", "explain"):
        assert re.search(rf"^attncc {command} ", shells, re.M), command
    assert any(lang == "python" and body.startswith("# ") for lang, body, _ in blocks())


def test_tutorial_commands_run(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "attncc"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m attncc.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    pkg_root = str(Path(attncc.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
    env["ATTNCC_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("ATTNCC_PROGRESS", None)
    ran = 0
    for lang, body, req in blocks():
        if lang == "python" and body.startswith("# "):
            name = body.splitlines()[0][2:].strip()
            (work / name).write_text(body)
        elif lang == "sh":
            if any(not _have(r) for r in req):
                continue
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, (f"tutorial block failed:\n{body}\n--- stdout\n"
                                          f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
            assert "Traceback" not in proc.stderr
            ran += 1
    assert ran >= 8
    assert (work / "report.html").read_text().count('class="attncc-schedule"') == 2
    assert (work / "schedule.svg").read_text().startswith("<svg")

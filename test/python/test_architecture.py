"""The shape of the code, checked: imports point down the layers and form no
cycle (import-linter contracts in pyproject.toml), no source file grows past
the size a reader can hold, and docs/pipeline.md names files that exist."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600
SOURCE_DIRS = ("python", "runtime", "passes", "dialects", "capi", "tools", "test", "bench",
               "examples")
SOURCE_SUFFIXES = {".py", ".cpp", ".h", ".td"}


def _lint_imports(config: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_imports_point_down_the_layers_and_form_no_cycle():
    pytest.importorskip("importlinter", reason="import-linter is in the [test] extra")
    proc = _lint_imports(ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract is not vacuous: the same layers with `targets` above
    `compiler` (which imports targets) are reported broken."""
    pytest.importorskip("importlinter", reason="import-linter is in the [test] extra")
    text = (ROOT / "pyproject.toml").read_text()
    layers = text[text.index("layers = ["):]
    swapped = layers.replace('  "compiler",\n', "  \"targets\",\n", 1).replace(
        '  "targets",\n  "runtime"', '  "compiler",\n  "runtime"', 1)
    assert swapped != layers
    config = tmp_path / "pyproject.toml"
    config.write_text(text.replace(layers, swapped))
    proc = _lint_imports(config)
    assert proc.returncode != 0
    assert "attncc.targets is not allowed to import attncc.compiler" not in proc.stdout
    assert re.search(r"attncc\.compiler is not allowed to import attncc\.targets", proc.stdout)


def _sources():
    for d in SOURCE_DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            if path.suffix in SOURCE_SUFFIXES and path.is_file() and not any(
                    part in ("build", "Output", "__pycache__") or part.startswith(".")
                    for part in path.relative_to(ROOT).parts):
                yield path


def test_no_source_file_over_600_lines():
    sources = list(_sources())
    assert len(sources) > 50
    long = {str(p.relative_to(ROOT)): n for p in sources
            if (n := len(p.read_text(errors="replace").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by responsibility): {long}"


def test_pipeline_doc_names_files_that_exist():
    doc = (ROOT / "docs" / "pipeline.md").read_text()
    named = set(re.findall(r"`((?:python|runtime|passes|dialects|test)/[\w./-]+\.(?:py|cpp|h|td|mlir))`",
                           doc))
    assert len(named) >= 10, named
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"docs/pipeline.md names files that do not exist: {missing}"

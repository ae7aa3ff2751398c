"""The README's main job (examples/quickstart.py) keeps working."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_runs_and_checks_against_torch():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for stage in ("graph", "fused", "tiled", "pipelined", "llvm", "jit"):
        assert f"  {stage} " in out
    assert "check against torch: OK" in out
    assert "attn.attention" in out and "attn.kv_loop" in out


def test_hf_generate_matches_eager():
    import pytest
    pytest.importorskip("transformers",
                        reason="transformers is not installed (pip install 'attncc[transformers]')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "hf_generate.py")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "check against eager: OK" in proc.stdout, proc.stdout
    assert "attncc kernels compiled: " in proc.stdout

"""Runs the lit/FileCheck suite (test/**/*.mlir) so that one pytest command runs everything."""
import os
import subprocess
import sys
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parents[1]


def test_lit_suite():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, "-c", "from lit.main import main; main()", "-q", "-j2", str(TEST_DIR)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"lit failed:\n{proc.stdout}\n{proc.stderr}"

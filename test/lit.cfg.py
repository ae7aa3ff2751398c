# -*- Python -*- lit configuration for attncc's MLIR tests.
import os
import subprocess
import sys

import lit.formats

config.name = "attncc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.excludes = ["lit.cfg.py", "python", "Output"]


def _tool(kind, name):
    code = f"import attncc.tools as t; print(t.{kind}('{name}'))"
    return subprocess.check_output([sys.executable, "-c", code], text=True).strip()


opt = os.environ.get("ATTNCC_OPT") or _tool("tool_path", "attncc-opt")
config.substitutions.append(("attncc-opt", opt))
config.substitutions.append(("FileCheck", _tool("llvm_tool_path", "FileCheck")))
config.substitutions.append(("not ", _tool("llvm_tool_path", "not") + " "))

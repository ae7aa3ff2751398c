import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Running from a source checkout: use the development build's package.
try:
    import attncc  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "python"))

# Kernel caches of the whole run in a fresh directory: tests see cold caches
# (no kernel compiled by an earlier run or by the user), and subprocesses
# inherit it.
import atexit
import shutil
import tempfile

_CACHE = tempfile.mkdtemp(prefix="attncc-test-cache-")
os.environ["ATTNCC_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

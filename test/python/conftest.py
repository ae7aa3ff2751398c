import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Running from a source checkout: use the development build's package.
try:
    import attncc  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "python"))

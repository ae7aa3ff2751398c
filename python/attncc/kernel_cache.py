"""Kernel cache of the GPU targets: in-process and on disk.

Key: SHA-256 of the graph's IR, the compile options, the chip, and the
compiler's identity (attncc version, the MLIR wheel, a fingerprint of the
native extension, the ptxas version) - a rebuilt attncc or another ptxas never
reuses old kernels.

On disk: one JSON file per kernel under `$ATTNCC_CACHE_DIR` (default
`~/.cache/attncc`)/gpu/, holding the PTX, the cubin (base64), the metadata and
the IR of every stage (zlib), with a checksum of its payload. Writes go to a
temporary file in the same directory and are published with os.replace, so a
reader never sees half a file; an entry that fails to parse or to match its
checksum is deleted and recompiled. `ATTNCC_CACHE=0` turns the disk cache off.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any, Optional

FORMAT = 1


@functools.lru_cache(maxsize=1)
def compiler_identity() -> str:
    from . import __version__
    from .gpu import ptxas_version

    parts = [f"attncc={__version__}"]
    try:
        from importlib.metadata import version

        parts.append(f"mlir={version('xtc-mlir-python-bindings')}")
    except Exception:  # pragma: no cover
        parts.append("mlir=?")
    try:
        from . import _attncc

        data = Path(_attncc.__file__).read_bytes()
        parts.append("native=" + hashlib.sha256(data).hexdigest()[:16])
    except Exception:  # pragma: no cover
        parts.append("native=?")
    parts.append(f"ptxas={ptxas_version()}")
    return ";".join(parts)


def cache_key(graph_ir: str, options: dict[str, Any], chip: str) -> str:
    opts = {k: v for k, v in sorted(options.items()) if k != "num_threads"}  # CPU-only
    blob = json.dumps({"graph": graph_ir, "options": opts, "chip": chip,
                       "compiler": compiler_identity()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _encode(entry: dict[str, Any]) -> dict[str, Any]:
    stages = zlib.compress(json.dumps(entry["stages"]).encode())
    payload = {
        "metadata": entry["metadata"],
        "ptx": entry["ptx"],
        "cubin": base64.b64encode(entry["cubin"]).decode() if entry["cubin"] is not None else None,
        "stages": base64.b64encode(stages).decode(),
    }
    body = json.dumps(payload, sort_keys=True)
    return {"format": FORMAT, "checksum": hashlib.sha256(body.encode()).hexdigest(), "payload": payload}


def _decode(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("format") != FORMAT:
        raise ValueError("format")
    payload = doc["payload"]
    if hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest() != doc["checksum"]:
        raise ValueError("checksum")
    return {
        "metadata": payload["metadata"],
        "ptx": payload["ptx"],
        "cubin": base64.b64decode(payload["cubin"]) if payload["cubin"] is not None else None,
        "stages": json.loads(zlib.decompress(base64.b64decode(payload["stages"]))),
    }


class KernelCache:
    def __init__(self, directory: Optional[Path]):
        self.directory = directory
        self.memory: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.hits = {"memory": 0, "disk": 0}
        self.misses = 0

    _default: Optional["KernelCache"] = None

    @classmethod
    def default(cls) -> "KernelCache":
        """The process-wide cache for the current environment settings."""
        directory = None
        if os.environ.get("ATTNCC_CACHE", "1") != "0":
            root = os.environ.get("ATTNCC_CACHE_DIR") or os.path.join(
                os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "attncc")
            directory = Path(root) / "gpu"
        if cls._default is None or cls._default.directory != directory:
            cls._default = KernelCache(directory)
        return cls._default

    def path(self, key: str) -> Optional[Path]:
        return self.directory / f"{key}.json" if self.directory else None

    def get(self, key: str) -> Optional[dict[str, Any]]:
        with self.lock:
            if key in self.memory:
                self.hits["memory"] += 1
                return self.memory[key]
        p = self.path(key)
        if p is not None and p.is_file():
            try:
                entry = _decode(json.loads(p.read_text()))
            except (ValueError, KeyError, TypeError, OSError, zlib.error):
                # Corrupt or stale: drop it; the caller recompiles and rewrites.
                try:
                    p.unlink()
                except OSError:
                    pass
            else:
                with self.lock:
                    self.memory[key] = entry
                    self.hits["disk"] += 1
                return entry
        self.misses += 1
        return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        with self.lock:
            self.memory[key] = entry
        p = self.path(key)
        if p is None:
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=p.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(_encode(entry), f)
                os.replace(tmp, p)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            pass  # a read-only or full cache directory only costs recompilation

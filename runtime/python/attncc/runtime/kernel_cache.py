"""Kernel cache of every target: in-process and on disk.

Key: SHA-256 of the graph's IR, the compile options, what the code was made
for (the GPU chip and ptxas version; the CPU's ISA class, host CPU name and
features) and the compiler's identity (attncc version, the MLIR wheel, a
fingerprint of the native extension): a rebuilt attncc, another ptxas or
another CPU never reuses old kernels.

On disk: one JSON file per kernel under `$ATTNCC_CACHE_DIR` (default
`~/.cache/attncc`)/<gpu|cpu>/, holding the entry (bytes such as a cubin or an
object file base64-encoded, the IR of every stage zlib-compressed) with a
checksum of its payload. Writes go to a temporary file in the same directory
and are published with os.replace, so a reader never sees half a file; an
entry that fails to parse or to match its checksum (corrupt, truncated, from
another format) is deleted and recompiled. A directory that cannot be read or
written costs recompilation and one warning per process, never an error.
`ATTNCC_CACHE=0` turns the disk cache off.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import os
import tempfile
import threading
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from .._version import __version__

FORMAT = 3   # 3: the entry names its key


@functools.lru_cache(maxsize=1)
def compiler_identity() -> str:
    parts = [f"attncc={__version__}"]
    try:
        from importlib.metadata import version

        parts.append(f"mlir={version('xtc-mlir-python-bindings')}")
    except Exception:  # pragma: no cover
        parts.append("mlir=?")
    try:
        data = Path(importlib.util.find_spec("attncc._attncc").origin).read_bytes()
        parts.append("native=" + hashlib.sha256(data).hexdigest()[:16])
    except Exception:  # pragma: no cover
        parts.append("native=?")
    return ";".join(parts)


def cache_key(graph_ir: str, options: dict[str, Any], target: str) -> str:
    """`target`: what the code is made for (chip and ptxas version; CPU ISA
    class, host CPU name and features)."""
    blob = json.dumps({"graph": graph_ir, "options": dict(sorted(options.items())),
                       "target": target, "compiler": compiler_identity()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _encode(entry: dict[str, Any], key: str) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for k, v in entry.items():
        if k.startswith("_"):   # in-process only (a loaded kernel)
            continue
        if k == "stages":
            v = {"zlib": base64.b64encode(zlib.compress(json.dumps(dict(v)).encode())).decode()}
        elif isinstance(v, (bytes, bytearray)):
            v = {"base64": base64.b64encode(v).decode()}
        payload[k] = v
    body = json.dumps(payload, sort_keys=True)
    return {"format": FORMAT, "key": key, "checksum": hashlib.sha256(body.encode()).hexdigest(),
            "payload": payload}


def _decode(doc: Any, key: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not an attncc kernel-cache entry of this format")
    # A file copied or renamed onto another key's name would run another
    # kernel (same arguments, other mask: wrong numbers, silently).
    if doc.get("key") != key:
        raise ValueError("the entry was stored under another key")
    payload = doc["payload"]
    if not isinstance(payload, dict) or hashlib.sha256(
            json.dumps(payload, sort_keys=True).encode()).hexdigest() != doc["checksum"]:
        raise ValueError("checksum")
    entry: dict[str, Any] = {}
    for k, v in payload.items():
        if k == "stages":
            v = LazyStages(v["zlib"])
        elif isinstance(v, dict) and set(v) == {"base64"}:
            v = base64.b64decode(v["base64"])
        entry[k] = v
    return entry


class LazyStages(Mapping):
    """The IR of every stage of a cached kernel, decompressed on first use:
    running a cached kernel does not need it (a few ms per new process)."""

    def __init__(self, blob: str) -> None:
        self._blob: Optional[str] = blob
        self._stages: dict[str, str] = {}

    def _load(self) -> dict[str, str]:
        if self._blob is not None:
            self._stages = json.loads(zlib.decompress(base64.b64decode(self._blob)))
            self._blob = None
        return self._stages

    def __getitem__(self, key: str) -> str:
        return self._load()[key]

    def __iter__(self):
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


_WARNED: set[str] = set()


def _warn_once(what: str, message: str) -> None:
    if what not in _WARNED:
        _WARNED.add(what)
        warnings.warn(f"attncc kernel cache: {message}", RuntimeWarning, stacklevel=4)


class KernelCache:
    def __init__(self, directory: Optional[Path]):
        self.directory = directory
        self.memory: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.hits = {"memory": 0, "disk": 0}
        self.misses = 0

    _defaults: dict[str, "KernelCache"] = {}

    @classmethod
    def default(cls, kind: str = "gpu") -> "KernelCache":
        """The process-wide cache of `kind` ("gpu" or "cpu") for the current
        environment settings."""
        directory = None
        if os.environ.get("ATTNCC_CACHE", "1") != "0":
            root = os.environ.get("ATTNCC_CACHE_DIR") or os.path.join(
                os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "attncc")
            directory = Path(root) / kind
        cur = cls._defaults.get(kind)
        if cur is None or cur.directory != directory:
            cur = cls._defaults[kind] = KernelCache(directory)
        return cur

    def path(self, key: str) -> Optional[Path]:
        return self.directory / f"{key}.json" if self.directory else None

    def get(self, key: str) -> Optional[dict[str, Any]]:
        return self.lookup(key)[0]

    def lookup(self, key: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
        """The entry of `key` and where it was found ("memory" or "disk"),
        or (None, None)."""
        with self.lock:
            if key in self.memory:
                self.hits["memory"] += 1
                return self.memory[key], "memory"
        p = self.path(key)
        try:
            present = p is not None and p.is_file()
        except OSError:
            present = False
        if present:
            try:
                entry = _decode(json.loads(p.read_text()), key)
            except PermissionError as e:
                _warn_once(f"read:{self.directory}", f"cannot read {p} ({e}); compiling instead")
            except (ValueError, KeyError, TypeError, AttributeError, OSError, zlib.error,
                    UnicodeDecodeError) as e:
                # Corrupt or stale: drop it; the caller recompiles and rewrites.
                _warn_once(f"corrupt:{self.directory}",
                           f"dropped an unreadable entry {p.name} ({type(e).__name__}: {e}); "
                           "recompiling")
                try:
                    p.unlink()
                except OSError:
                    pass
            else:
                with self.lock:
                    self.memory[key] = entry
                    self.hits["disk"] += 1
                return entry, "disk"
        self.misses += 1
        return None, None

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
                    json.dump(_encode(entry, key), f)
                os.replace(tmp, p)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as e:  # a read-only or full cache directory only costs recompilation
            _warn_once(f"write:{self.directory}", f"cannot write to {p.parent} ({e}); kernels "
                       "are kept in memory only")

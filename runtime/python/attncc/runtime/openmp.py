"""The OpenMP runtime torch loaded, for running CPU kernels on torch's own
threads (docs/cpu-backend.md, "Threads").

torch's CPU build parallelizes with OpenMP (libgomp in the Linux wheels; libomp
or Intel's libiomp5 elsewhere, which also export the GNU `GOMP_*` entry points).
A kernel made by attn-parallel-to-omp is called from every thread of one
`GOMP_parallel` region of that runtime (the native `attnccRunOnTeam`), and calls
`GOMP_barrier` between its grids. The library is found among those mapped in
this process (torch loads it on import, privately, so not by name lookup) and
opened again with RTLD_NOLOAD: the same copy, never a second runtime.
"""
from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from typing import Optional

_NAMES = ("libgomp", "libomp", "libiomp5")


@dataclass(frozen=True)
class OpenMP:
    path: str
    parallel: int             # GOMP_parallel
    barrier: int              # GOMP_barrier
    thread_num: int           # omp_get_thread_num
    num_threads: int          # omp_get_num_threads


def _mapped_libraries() -> list[str]:
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    return sorted(paths)


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _library_of(addr: int) -> Optional[str]:
    """The path of the mapped library that holds code address `addr` (dladdr)."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (OSError, AttributeError):
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    info = _DlInfo()
    if not dladdr(ctypes.c_void_p(addr), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def torch_openmp_path(mapped: Optional[list[str]] = None) -> Optional[str]:
    """The OpenMP library torch's own parallel regions run on: `GOMP_parallel`
    as libtorch_cpu's dependencies resolve it (dlsym on its handle), located
    with dladdr. Other copies may be mapped beside it (Python packages bundle
    their own libgomp: sentencepiece, which vLLM pulls in, loads one whose
    path sorts before torch's); a kernel team on one of those would run on a
    second thread pool whose threads spin against torch's, on the same cores."""
    for path in mapped if mapped is not None else _mapped_libraries():
        if not os.path.basename(path).startswith("libtorch_cpu"):
            continue
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
            fn = lib.GOMP_parallel
        except (OSError, AttributeError):
            return None
        return _library_of(ctypes.cast(fn, ctypes.c_void_p).value)
    return None


def _entry_points(path: str) -> Optional[OpenMP]:
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
    except OSError:
        return None
    addrs = []
    for sym in ("GOMP_parallel", "GOMP_barrier", "omp_get_thread_num", "omp_get_num_threads"):
        fn = getattr(lib, sym, None)
        if fn is None:
            return None
        addrs.append(ctypes.cast(fn, ctypes.c_void_p).value)
    return OpenMP(path, *addrs)


@functools.lru_cache(maxsize=None)
def runtime() -> Optional[OpenMP]:
    """The OpenMP runtime in this process with the entry points a team run
    needs, or None (no OpenMP runtime mapped, or not on Linux): kernels then
    keep upstream async-parallel-for. torch's own runtime (torch_openmp_path)
    where it is found, else the first mapped OpenMP library."""
    import torch  # noqa: F401  (loads torch's OpenMP runtime)

    mapped = _mapped_libraries()
    candidates = [p for p in mapped if any(os.path.basename(p).startswith(n) for n in _NAMES)]
    own = torch_openmp_path(mapped)
    if own is not None:      # torch's first; the sort is stable
        candidates.sort(key=lambda p: os.path.realpath(p) != own)
    for path in candidates:
        found = _entry_points(path)
        if found is not None:
            return found
    return None

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
    return sorted(p for p in paths if any(os.path.basename(p).startswith(n) for n in _NAMES))


@functools.lru_cache(maxsize=None)
def runtime() -> Optional[OpenMP]:
    """The OpenMP runtime in this process with the entry points a team run
    needs, or None (no OpenMP runtime mapped, or not on Linux): kernels then
    keep upstream async-parallel-for."""
    import torch  # noqa: F401  (loads torch's OpenMP runtime)

    for path in _mapped_libraries():
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        except OSError:
            continue
        addrs = []
        for sym in ("GOMP_parallel", "GOMP_barrier", "omp_get_thread_num", "omp_get_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is None:
                break
            addrs.append(ctypes.cast(fn, ctypes.c_void_p).value)
        else:
            return OpenMP(path, *addrs)
    return None

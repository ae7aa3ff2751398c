"""Permission to use Intel AMX tiles in this process.

Linux (5.16 and later) gives a process AMX tile data only on request: until
it calls `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, its first
`ldtilecfg` / `tileloadd` is killed with SIGILL. The permission is for the
whole process (all its threads, OpenMP's included) and is asked for once,
before the first AMX kernel is compiled or loaded (targets/cpu.py); oneDNN
asks for it the same way. Where it is refused, or on another OS or
architecture, the AMX class is not chosen for the host and forcing it is an
error naming the reason.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
from typing import Optional

_SYS_ARCH_PRCTL = 158          # x86-64 syscall number
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


@functools.lru_cache(maxsize=1)
def tile_permission() -> Optional[str]:
    """None once this process may use AMX tiles; otherwise why not."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"AMX needs x86-64 Linux (this is {platform.system()} {platform.machine()})"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
        err = ctypes.get_errno()
        return f"the kernel refused AMX tile data (arch_prctl: {os.strerror(err)})"
    return None

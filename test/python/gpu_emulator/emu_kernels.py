"""Helpers of the emulator's unit tests: a one-kernel module around a
hand-written kernel body, and a run of it in attncc.gpu_emulator."""
from __future__ import annotations

import numpy as np
from mlir import ir

from attncc import gpu_emulator as emu

WG = "#gpu.address_space<workgroup>"
DSM = f"memref<?xi8, {WG}>"


def module(body: str, args: list[tuple[str, str]], threads: int = 32,
           blocks: tuple[int, int, int] = (1, 1, 1), smem: int = 0) -> str:
    """A module whose host function @main(args...) launches kernel @k::@kern
    (body: the kernel's ops, ending before gpu.return) on a 1-D block of
    `threads` threads; args: (name without %, memref type)."""
    params = ", ".join(f"%{n}: {t}" for n, t in args)
    passed = ", ".join(f"%{n} : {t}" for n, t in args)
    consts = sorted({1, threads, *blocks})
    cdefs = "\n    ".join(f"%h{c} = arith.constant {c} : index" for c in consts)
    gx, gy, gz = (f"%h{b}" for b in blocks)
    return f"""
module attributes {{gpu.container_module}} {{
  func.func @main({params}) {{
    {cdefs}
    %smem = arith.constant {smem} : i32
    gpu.launch_func @k::@kern blocks in ({gx}, {gy}, {gz}) threads in (%h{threads}, %h1, %h1)
        dynamic_shared_memory_size %smem args({passed})
    return
  }}
  gpu.module @k {{
    gpu.func @kern({params}) kernel {{
      {body}
      gpu.return
    }}
  }}
}}
"""


def run(text: str, *arrays: np.ndarray, elts: list[str], smem_base: int = 0) -> dict:
    """Runs @main on `arrays` (written in place); returns the emulator's stats."""
    with ir.Context(), ir.Location.unknown():
        prog = emu.Program(ir.Module.parse(text), smem_base=smem_base)
        return prog.run("main", *arrays, elts=elts)


def program(text: str) -> "emu.Program":
    """Only compiles (checks that happen when ops are compiled)."""
    with ir.Context(), ir.Location.unknown():
        return emu.Program(ir.Module.parse(text))

"""The machine's fp32 FMA peak, measured: a JIT-compiled loop of independent
vector FMAs on every thread of the team attncc's kernels run on.

torch.mm is the benchmarks' GEMM limit (issue 9), but a BLAS need not reach
the hardware's limit: on AMD Zen 5, MKL's sgemm (torch) and OpenBLAS (numpy)
both run at about half of the FMA rate, and attncc's prefill then shows more
than 100% "of GEMM". This loop is what the vector units can do at most: per
thread, `accumulators` independent chains (enough to cover FMA latency times
the FMA ports) of the ISA class's vector width, compiled by the same MLIR/LLVM
path and function attributes as the kernels (targets.cpu), run through
runtime.cpu.CpuKernel on torch's OpenMP team.

    python bench/fma_peak.py      # prints GFLOP/s for the host's class
"""
from __future__ import annotations

import time

import torch

from attncc.context import mlir_context
from attncc.ir import Module
from attncc.runtime.cpu import CpuKernel
from attncc.targets import cpu as cpu_target
from mlir.passmanager import PassManager

_ITERS = 1 << 20


def _module_text(lanes: int, accumulators: int, iters: int) -> str:
    vec = f"vector<{lanes}xf32>"
    body = "\n".join(f"      %n{j} = vector.fma %a{j}, %m, %c : {vec}" for j in range(accumulators))
    nexts = ", ".join(f"%n{j}" for j in range(accumulators))
    types = ", ".join([vec] * accumulators)
    inits = ", ".join(f"%a{j} = %x" for j in range(accumulators))
    stores = "\n".join(
        f"    %i{j} = arith.constant {j * lanes} : index\n"
        f"    vector.store %r#{j}, %o[%t, %i{j}] : memref<?x{accumulators * lanes}xf32>, {vec}"
        for j in range(accumulators))
    return f"""
module {{
  func.func @fma_peak(%xm: memref<{lanes}xf32>, %o: memref<?x{accumulators * lanes}xf32>,
                      %t: index, %team: index)
      attributes {{llvm.emit_c_interface,
                   attn.arg_types = [memref<{lanes}xf32>, memref<?x{accumulators * lanes}xf32>,
                                     index, index]}} {{
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %cn = arith.constant {iters} : index
    %x = vector.load %xm[%c0] : memref<{lanes}xf32>, {vec}
    %m = arith.constant dense<0.999999> : {vec}
    %c = arith.constant dense<0.000001> : {vec}
    %r:{accumulators} = scf.for %i = %c0 to %cn step %c1 iter_args({inits}) -> ({types}) {{
{body}
      scf.yield {nexts} : {types}
    }}
{stores}
    return
  }}
}}"""


def fma_peak_flops(threads: int, isa: cpu_target.CpuIsa | None = None, tries: int = 5) -> float:
    """fp32 FLOP/s of `threads` threads running independent FMAs (best of `tries`)."""
    isa = isa or cpu_target.host_isa()
    lanes = isa.vector_width
    # Chains to hide FMA latency (4 cycles) on two FMA ports: 8; leave
    # registers for the multiplier and the addend.
    accumulators = min(12, isa.vector_registers - 4)
    with mlir_context():
        module = Module.parse(_module_text(lanes, accumulators, _ITERS))
        PassManager.parse(
            "builtin.module(convert-scf-to-cf,convert-vector-to-llvm,finalize-memref-to-llvm,"
            "convert-arith-to-llvm,convert-index-to-llvm,convert-cf-to-llvm,"
            "convert-func-to-llvm,reconcile-unrealized-casts)").run(module.operation)
        kernel = CpuKernel(module, "fma_peak", num_threads=threads,
                           function_attributes=cpu_target.llvm_function_attributes(isa, False))
    x = torch.ones(lanes)
    out = torch.empty(threads, accumulators * lanes)
    kernel.run(x, out)
    best = best_seconds(lambda: kernel.run(x, out), tries)
    assert torch.isfinite(out).all()
    return 2 * lanes * accumulators * _ITERS * threads / best


def best_seconds(fn, tries: int) -> float:
    """The shortest of `tries` timed calls of fn (a limit: a busy neighbour
    only ever slows a call down)."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    threads = torch.get_num_threads()
    isa = cpu_target.host_isa()
    print(f"host: {cpu_target.host_cpu().describe()}")
    print(f"fp32 FMA peak ({isa.vector_width} lanes, {threads} threads): "
          f"{fma_peak_flops(threads, isa) / 1e9:.1f} GFLOP/s")

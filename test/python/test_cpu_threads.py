"""CPU kernels on torch's OpenMP threads (attn-parallel-to-omp + the native
attnccRunOnTeam; docs/cpu-backend.md, "Threads"): the kernels that run on a team,
a team of any size giving the same result, the combine of split-KV after the
team barrier, cached objects, the team size the API asks for, and the async
runtime kept where no OpenMP runtime is loaded."""
from __future__ import annotations

import pytest
import torch

import attncc
from attncc import api
from attncc import compiler
from attncc.compiler import compile_graph
from attncc.frontend import split_kv
from attncc.graph import Graph
from attncc.options import CPU_MIN_TASK_WORK, CPU_MIN_TASK_WORK_ASYNC, CompileOptions
from attncc.runtime import openmp
from attncc.runtime.cpu import CpuKernel

needs_omp = pytest.mark.skipif(openmp.runtime() is None,
                               reason="no OpenMP runtime loaded by torch in this process")


def reference(q, k, v):
    g = q.shape[1] // k.shape[1]
    k, v = (t.double().repeat_interleave(g, dim=1) for t in (k, v))
    return torch.softmax(q.double() @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ v


def decode_inputs(S, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, 8, 1, 64, generator=g)
    k = torch.randn(B, 2, S, 64, generator=g)
    v = torch.randn(B, 2, S, 64, generator=g)
    return q, k, v


def last_kernel():
    return list(api._ATTENTION_CACHE._d.values())[-1]._kernel


@needs_omp
@pytest.mark.parametrize("num_splits", [None, 1, 3])
def test_team_kernel_matches_reference(num_splits):
    """Two threads: the kernel takes the team arguments; with P > 1 splits the
    combine grid runs after GOMP_barrier and reads every thread's partials."""
    q, k, v = decode_inputs(700)
    out = attncc.attention(q, k, v, num_splits=num_splits, num_threads=2)
    kern = last_kernel()
    assert kern.team_args == 2 and kern.arg_types[-2:] == ["index", "index"]
    # The split form (a grid, then the combine) waits for the team in between;
    # num_splits=1 is the plain kernel, one grid.
    assert ("GOMP_barrier" in kern.externals) == (num_splits != 1)
    assert not any(f.startswith("mlirAsyncRuntime") for f in kern.externals)
    torch.testing.assert_close(out.double(), reference(q, k, v), rtol=1e-5, atol=1e-5)


@needs_omp
def test_team_of_any_size_gives_the_same_result():
    """The grid points are split by the team the runtime asks for, whatever
    its size: 1, 2 and a larger team than the kernel was made for (capped)."""
    q, k, v = decode_inputs(3000, B=3, seed=1)
    attncc.attention(q, k, v, num_splits=4, num_threads=2)
    kern = last_kernel()
    packed = q.reshape(3, 2, 4, 64)
    extra = split_kv.workspaces(packed, 64, 4, True)
    outs = [kern(packed, k, v, extra=extra, threads=t).clone() for t in (1, 2, 8)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    torch.testing.assert_close(outs[0].reshape(3, 8, 1, 64).double(), reference(q, k, v),
                               rtol=1e-5, atol=1e-5)


@needs_omp
def test_prefill_on_a_team():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, 200, 32, generator=g) for _ in range(3))
    out = attncc.attention(q, k, v, causal=True, num_threads=2)
    assert last_kernel().team_args == 2
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                                            is_causal=True)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_one_thread_has_no_team():
    q, k, v = decode_inputs(64)
    attncc.attention(q, k, v, num_threads=1)
    kern = last_kernel()
    assert kern.team_args == 0 and "index" not in kern.arg_types
    assert not any(f.startswith(("GOMP", "mlirAsyncRuntime")) for f in kern.externals)


@needs_omp
def test_cached_object_runs_on_a_team():
    """The object code of a team kernel (the kernel cache's form) links
    GOMP_barrier from torch's runtime and runs in a later load."""
    g = Graph("attention")
    q = g.input("q", (None, 2, None, 32), "f32")
    k = g.input("k", (None, 2, None, 32), "f32")
    v = g.input("v", (None, 2, None, 32), "f32")
    g.output(g.attention(q, k, v, scale=32 ** -0.5))
    c = compile_graph(g, CompileOptions(num_threads=2), "cpu", query_len=100, split_kv=True,
                      lse=True)
    first = c._kernel
    assert first.team_args == 2 and first.object is not None
    again = CpuKernel.from_object(first.object, "attention", first.arg_types, first.externals,
                                  output=first._output, num_threads=2)
    gen = torch.Generator().manual_seed(3)
    qt, kt, vt = (torch.randn(1, 2, 100, 32, generator=gen) for _ in range(3))
    extra = split_kv.workspaces(qt, 32, 2, True)
    out = again(qt, kt, vt, extra=extra, threads=2)
    ref = torch.nn.functional.scaled_dot_product_attention(qt.double(), kt.double(), vt.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_team_size_follows_the_work():
    # A short decode step: one thread; a long one: every thread; never more
    # threads than grid points.
    assert split_kv.team_size(2, 4, 1, 8, 4, 16, 128, 1) == 1
    assert split_kv.team_size(2, 4, 1, 8, 4, 4096, 128, 1) == 2
    assert split_kv.team_size(16, 4, 1, 1, 4, 1 << 20, 128, 1) == 1
    # Exactly at the threshold: one task's work.
    assert split_kv.team_size(4, 4, 1, 1, 4, CPU_MIN_TASK_WORK // 128, 128, 1) == 1
    assert split_kv.team_size(4, 4, 1, 1, 4, CPU_MIN_TASK_WORK // 128 + 1, 128, 1) == 1
    assert split_kv.team_size(4, 4, 1, 2, 4, CPU_MIN_TASK_WORK // 128 + 1, 128, 1) == 2


def test_task_work_follows_the_threading(monkeypatch):
    """Tasks on torch's OpenMP team are small (a region on the warm team
    starts in microseconds); on the async pool, whose workers sleep, larger."""
    options = CompileOptions(num_threads=2)
    omp = compiler.stage_options(options, "cpu")
    assert (omp["cpu_threading"], omp["min_task_work"]) == ("omp", CPU_MIN_TASK_WORK)
    monkeypatch.setattr(openmp, "runtime", lambda: None)
    pool = compiler.stage_options(options, "cpu")
    assert (pool["cpu_threading"], pool["min_task_work"]) == ("async", CPU_MIN_TASK_WORK_ASYNC)
    assert CPU_MIN_TASK_WORK < CPU_MIN_TASK_WORK_ASYNC


@pytest.mark.parametrize("llvm_opt", [None, "light"])
def test_async_runtime_where_no_openmp(monkeypatch, llvm_opt):
    """Without an OpenMP runtime in the process the kernel keeps upstream
    async-parallel-for on the async runtime's pool (its coroutines lowered
    by LLVM's coro passes, which the light pipeline adds)."""
    monkeypatch.setattr(openmp, "runtime", lambda: None)
    monkeypatch.setenv("ATTNCC_CACHE", "0")
    g = Graph("attention")
    q = g.input("q", (1, 2, 96, 32), "f32")
    k = g.input("k", (1, 2, 96, 32), "f32")
    v = g.input("v", (1, 2, 96, 32), "f32")
    g.output(g.attention(q, k, v, scale=32 ** -0.5, mask="causal"))
    c = compile_graph(g, CompileOptions(num_threads=2, block_m=32, block_n=32,
                                        llvm_opt=llvm_opt), "cpu")
    assert c._kernel.team_args == 0
    assert any(f.startswith("mlirAsyncRuntime") for f in c._kernel.externals)
    gen = torch.Generator().manual_seed(4)
    qt, kt, vt = (torch.randn(1, 2, 96, 32, generator=gen) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(qt.double(), kt.double(), vt.double(),
                                                            is_causal=True)
    torch.testing.assert_close(c(qt, kt, vt).double(), ref, rtol=1e-5, atol=1e-5)


_PICK = """
import ctypes, os, sys
import torch
copy = sys.argv[1]
ctypes.CDLL(copy, mode=os.RTLD_LOCAL)      # a second libgomp, as a package bundles one
import attncc
from attncc.runtime import openmp
# The copy first among the mapped libraries, as sentencepiece's sorted before
# torch's in vLLM's venv (here the order of the paths depends on the machine).
real = openmp._mapped_libraries
openmp._mapped_libraries = lambda: sorted(real(), key=lambda p: p != copy)
mapped = [p for p in openmp._mapped_libraries() if os.path.basename(p).startswith("libgomp")]
print(mapped[0])
print(openmp.runtime().path)
q, k, v = (torch.randn(2, 4, 300, 32, generator=torch.Generator().manual_seed(i))
           for i in range(3))
out = attncc.attention(q, k, v, causal=True, num_threads=2)
ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                                       is_causal=True)
print(float((out.double() - ref).abs().max()))
"""


@needs_omp
def test_team_runs_on_torchs_openmp_beside_another_copy(tmp_path):
    """A process with two libgomp copies mapped (sentencepiece, which vLLM
    pulls in, bundles one whose path sorts before torch's): kernels run on
    the copy torch's own regions use. On the other copy's team (a second
    thread pool spinning against torch's) vLLM's steps ran 8x slower."""
    import os
    import subprocess
    import sys
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    own = sorted(f for f in os.listdir(lib) if f.startswith("libgomp"))
    if not own:
        pytest.skip(f"this torch has no libgomp of its own in {lib}")
    copy = tmp_path / "aaa" / "libgomp-bundled.so.1"
    copy.parent.mkdir()
    copy.write_bytes(open(os.path.join(lib, own[0]), "rb").read())
    proc = subprocess.run([sys.executable, "-c", _PICK, str(copy)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, chosen, err = proc.stdout.split()
    assert first == str(copy)                   # the copy comes first among the mapped ones
    assert os.path.realpath(chosen) == os.path.realpath(os.path.join(lib, own[0]))
    assert float(err) < 1e-5

"""CPU kernels kept on disk: a new process runs a kernel it compiled before
without compiling; corrupt, foreign, unreadable and read-only caches cost a
recompile and one warning, never an error."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F

from attncc import Graph
from attncc.runtime import kernel_cache
from attncc.compiler import compile_graph
from attncc.runtime.kernel_cache import KernelCache
from attncc.options import CompileOptions


def _graph(L=48, D=32, mask="causal"):
    g = Graph("attention")
    q, k, v = (g.input(n, (1, 2, L, D), "f32") for n in "qkv")
    g.output(g.attention(q, k, v, mask=mask))
    return g


def _check(c, L=48, D=32):
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, L, D) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    assert (c(q, k, v).double() - ref).abs().max().item() < 1e-5


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ATTNCC_CACHE", raising=False)
    KernelCache._defaults.clear()
    kernel_cache._WARNED.clear()
    yield tmp_path / "cpu"
    KernelCache._defaults.clear()


def _fresh_process_cache():
    """What a new process sees: no in-memory entries."""
    KernelCache._defaults.clear()
    kernel_cache._WARNED.clear()


def test_memory_and_disk_hits(cache_dir):
    opts = CompileOptions(num_threads=2)
    first = compile_graph(_graph(), opts)
    assert "jit" in first.stage_seconds
    files = list(cache_dir.glob("*.json"))
    assert len(files) == 1 and not list(cache_dir.glob("*.tmp"))
    again = compile_graph(_graph(), opts)
    assert "cache" in again.stage_seconds and KernelCache.default("cpu").hits["memory"] == 1
    assert again.ir("tiled") == first.ir("tiled") and again.metadata == first.metadata
    _fresh_process_cache()
    disk = compile_graph(_graph(), opts)
    assert "cache" in disk.stage_seconds and KernelCache.default("cpu").hits["disk"] == 1
    _check(disk)
    # another option, another kernel
    compile_graph(_graph(), CompileOptions(num_threads=1))
    assert len(list(cache_dir.glob("*.json"))) == 2


def test_a_new_process_does_not_recompile(cache_dir):
    code = textwrap.dedent("""
        import json, torch
        import attncc
        from attncc.runtime.kernel_cache import KernelCache
        torch.manual_seed(0)
        q, k, v = (torch.randn(1, 2, 64, 32) for _ in range(3))
        out = attncc.attention(q, k, v, causal=True, num_threads=2)
        ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(),
                                                               v.double(), is_causal=True)
        err = (out.double() - ref).abs().max().item()
        print(json.dumps({"hits": KernelCache.default("cpu").hits, "misses": KernelCache.default("cpu").misses, "err": err}))
    """)
    env = dict(os.environ, ATTNCC_CACHE_DIR=str(cache_dir.parent))
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                      capture_output=True, text=True).stdout.splitlines()[-1])
            for _ in range(2)]
    assert runs[0]["hits"]["disk"] == 0 and runs[0]["misses"] == 1
    assert runs[1]["hits"]["disk"] == 1 and runs[1]["misses"] == 0
    assert runs[0]["err"] < 1e-5 and runs[1]["err"] < 1e-5
    # The disk hit returns before the pipeline runs: nothing was compiled. How
    # long that takes is reported by bench/cpu_attention.py, not asserted here.


@pytest.mark.parametrize("content", [b"", b"garbage", b"[]", b"null", b"42", b'{"format": 2}',
                                     b"\xff\xfe\x00", None])
def test_corrupt_or_foreign_entries_are_recompiled_with_a_warning(cache_dir, content):
    opts = CompileOptions(num_threads=1)
    compile_graph(_graph(), opts)
    (path,) = cache_dir.glob("*.json")
    if content is None:   # valid JSON with a bad checksum: one base64 digit of the object changed
        doc = json.loads(path.read_text())
        b64 = doc["payload"]["object"]["base64"]
        i = len(b64) // 2
        doc["payload"]["object"]["base64"] = b64[:i] + ("B" if b64[i] == "A" else "A") + b64[i + 1:]
        path.write_text(json.dumps(doc))
    else:
        path.write_bytes(content)
    _fresh_process_cache()
    with pytest.warns(RuntimeWarning, match="kernel cache"):
        again = compile_graph(_graph(), opts)
    assert "jit" in again.stage_seconds
    _check(again)
    assert json.loads(path.read_text())["format"] == kernel_cache.FORMAT   # rewritten


def test_an_object_that_does_not_load_is_recompiled(cache_dir):
    # A well-formed entry (checksum matches) whose object code is not an object.
    opts = CompileOptions(num_threads=1)
    compile_graph(_graph(), opts)
    (path,) = cache_dir.glob("*.json")
    entry = kernel_cache._decode(json.loads(path.read_text()), path.stem)
    entry["object"] = b"\x7fELF not really"
    path.write_text(json.dumps(kernel_cache._encode(entry, path.stem)))
    _fresh_process_cache()
    with pytest.warns(RuntimeWarning, match="cannot be loaded"):
        again = compile_graph(_graph(), opts)
    assert "jit" in again.stage_seconds
    _check(again)


def test_an_entry_under_another_key_is_recompiled(cache_dir):
    # An entry copied onto another kernel's file (a non-causal kernel under the
    # causal one's key: same arguments) ran silently with wrong numbers; an
    # entry names its key now.
    opts = CompileOptions(num_threads=1)
    compile_graph(_graph(), opts)
    (causal,) = cache_dir.glob("*.json")
    compile_graph(_graph(mask="none"), opts)
    (plain,) = set(cache_dir.glob("*.json")) - {causal}
    causal.write_bytes(plain.read_bytes())
    _fresh_process_cache()
    with pytest.warns(RuntimeWarning, match="another key"):
        again = compile_graph(_graph(), opts)
    assert "jit" in again.stage_seconds
    _check(again)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes read-only directories")
def test_read_only_cache_compiles_in_memory_with_one_warning(cache_dir):
    cache_dir.mkdir(parents=True)
    cache_dir.chmod(0o500)
    try:
        with pytest.warns(RuntimeWarning, match="cannot write"):
            c = compile_graph(_graph(), CompileOptions(num_threads=1))
        _check(c)
    finally:
        cache_dir.chmod(0o700)


def test_unwritable_cache_compiles_in_memory_with_one_warning(tmp_path, monkeypatch):
    # A cache path under a regular file cannot be created, even by root.
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(blocker / "cache"))
    KernelCache._defaults.clear()
    kernel_cache._WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = compile_graph(_graph(), CompileOptions(num_threads=1))
        b = compile_graph(_graph(L=40), CompileOptions(num_threads=1))
    msgs = [str(w.message) for w in caught if "kernel cache" in str(w.message)]
    assert len(msgs) == 1 and "cannot write" in msgs[0]
    _check(a)
    _check(b, L=40)
    KernelCache._defaults.clear()


def test_cache_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNCC_CACHE", "0")
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path / "off"))
    KernelCache._defaults.clear()
    compile_graph(_graph(), CompileOptions(num_threads=1))
    assert KernelCache.default("cpu").directory is None
    assert not (tmp_path / "off").exists()
    KernelCache._defaults.clear()


def test_key_names_the_host_and_class():
    from attncc.targets import cpu as cpu_target

    t = cpu_target.cache_target(cpu_target.host_isa())
    host = cpu_target.host_cpu()
    assert host.name in t and cpu_target.host_isa().name in t and host.triple in t
    a = kernel_cache.cache_key("ir", {"x": 1}, t)
    assert a != kernel_cache.cache_key("ir", {"x": 1}, t.replace(host.name, "other"))

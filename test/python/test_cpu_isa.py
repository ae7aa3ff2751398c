"""CPU code generation follows the host's ISA class, and any class can be forced.

Every class compiles on every host and its IR and assembly are checked here;
kernels run only where the host has the class's features (the others are
skipped for running with the reason). bf16 and f16 kernels need no runtime
library on any class.
"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import attncc
from attncc.runtime import openmp
from attncc import Graph
from attncc.compiler import compile_graph
from attncc.errors import CompileError
from attncc.options import CompileOptions, OptionError
from attncc.targets import cpu as cpu_target

HOST = cpu_target.host_cpu()


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _graph(dtype="f32", L=80, S=80, D=64, mask="causal"):
    g = Graph("attention")
    q = g.input("q", (1, 2, L, D), dtype)
    k = g.input("k", (1, 2, S, D), dtype)
    v = g.input("v", (1, 2, S, D), dtype)
    g.output(g.attention(q, k, v, mask=mask))
    return g


def _runnable(isa: cpu_target.CpuIsa):
    missing = cpu_target.missing_features(isa)
    return pytest.mark.skipif(bool(missing), reason=f"this host ({HOST.name}) cannot run "
                              f"{isa.name} code: it lacks {', '.join(missing)}")


def test_host_is_read_from_llvm_and_agrees_with_the_kernel():
    # LLVM's view of the host (what the JIT targets) agrees with /proc/cpuinfo
    # on the features that decide the class.
    flags = _cpuinfo_flags()
    if HOST.arch == "x86_64" and flags:
        for feature, flag in (("avx2", "avx2"), ("fma", "fma"), ("avx512f", "avx512f"),
                              ("avx512bw", "avx512bw"), ("avx512bf16", "avx512_bf16")):
            assert (feature in HOST.features) == (flag in flags), feature
    isa = cpu_target.host_isa()
    assert not cpu_target.missing_features(isa)
    amx = cpu_target.ISAS["x86-64-v4-amx"]
    if not cpu_target.missing_features(amx):
        assert isa.name == "x86-64-v4-amx"    # AMX features and the OS's permission
    elif "avx512f" in HOST.features and "avx512bw" in HOST.features:
        fast_dot = "avx512bf16" in HOST.features and cpu_target.vdpbf16ps_pays(HOST)
        assert isa.name == ("x86-64-v4-bf16" if fast_dot else "x86-64-v4")
    elif "avx2" in HOST.features:
        assert isa.name == "x86-64-v3"


def test_the_table_fits_the_registers():
    for isa in cpu_target.ISAS.values():
        # accumulators + one row of b + the broadcast of a stay in registers
        assert isa.micro_rows * isa.micro_vectors + isa.micro_vectors + 1 <= isa.vector_registers


@pytest.mark.parametrize("name", sorted(cpu_target.ISAS))
def test_every_class_compiles_on_any_host_with_its_width_recorded(name):
    isa = cpu_target.ISAS[name]
    c = compile_graph(_graph(), CompileOptions(cpu=name), stop_after="llvm")
    llvm = c.ir("llvm")
    attr = re.search(r"attn\.cpu = \{([^}]*)\}", llvm).group(1)
    assert f'isa = "{name}"' in attr and f"vector_width = {isa.vector_width} : i64" in attr
    assert f"micro_kernel = array<i64: {isa.micro_rows}, {isa.micro_vectors}>" in attr
    assert f"vector<{isa.vector_width}xf32>" in c.ir("llvm")
    # the widest f32 vector of the kernel is the class's
    widths = {int(w) for w in re.findall(r"vector<(\d+)xf32>", llvm)}
    assert max(widths) == isa.vector_width


@pytest.mark.parametrize("name,pattern,absent", [
    ("x86-64-v3", r"vfmadd\d+ps\s+%ymm", r"%zmm"),
    ("x86-64-v4", r"vfmadd\d+ps\s+%zmm", None),
    ("aarch64", r"fmla\s+v\d+\.4s", None),
])
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_assembly_of_every_class(name, pattern, absent, dtype):
    isa = cpu_target.ISAS[name]
    c = compile_graph(_graph(dtype), CompileOptions(cpu=name), stop_after="llvm")
    asm = cpu_target.assembly(c.ir("llvm"), isa)
    assert re.search(pattern, asm), f"no {pattern} in the {name} assembly"
    if absent:
        assert not re.search(absent, asm), f"{absent} in the {name} assembly"
    # no runtime library for the conversions
    assert "__truncsfbf2" not in asm and "__truncsfhf2" not in asm and "__extendhfsf2" not in asm


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_half_conversions_need_no_library_call(dtype):
    c = compile_graph(_graph(dtype), CompileOptions(), stop_after="llvm")
    declared = re.findall(r"llvm\.func @(\w+)\([^)]*\)[^{]*$", c.ir("llvm"), re.M)
    assert not [d for d in declared if "bf" in d or "hf" in d], declared


@pytest.mark.parametrize("name", sorted(cpu_target.ISAS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_forced_classes_run_where_the_host_can(name, dtype, request):
    isa = cpu_target.ISAS[name]
    missing = cpu_target.missing_features(isa)
    if missing:
        pytest.skip(f"this host ({HOST.name}) cannot run {name} code: it lacks "
                    f"{', '.join(missing)} (its IR and assembly are checked above)")
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 77, 64, dtype=dtype) for _ in range(3))
    out = attncc.attention(q, k, v, causal=True, cpu=name)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    assert (out.double() - ref).abs().max().item() < tol


def test_a_class_the_host_cannot_run_is_a_clear_error_before_any_jit():
    foreign = next(i for i in cpu_target.ISAS.values() if cpu_target.missing_features(i))
    with pytest.raises(CompileError, match=rf"cpu='{foreign.name}' kernels need .* which this "
                                           r"host .* lacks"):
        compile_graph(_graph(), CompileOptions(cpu=foreign.name))
    q = torch.randn(1, 1, 8, 64)
    with pytest.raises(CompileError, match="lacks"):
        attncc.attention(q, q, q, cpu=foreign.name)


def test_unknown_cpu_option():
    with pytest.raises(OptionError, match="cpu must be one of"):
        CompileOptions(cpu="pentium")
    with pytest.raises(OptionError, match="cpu must be one of"):
        attncc.attention(torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 8),
                         torch.randn(1, 1, 4, 8), cpu="avx9")


def test_metadata_names_the_class_and_host():
    c = compile_graph(_graph(), CompileOptions())
    md = c.metadata
    isa = cpu_target.resolve(CompileOptions().cpu)   # the host's, or ATTNCC_CPU's
    assert md["isa"] == isa.name and md["vector_width"] == isa.vector_width
    assert md["host_cpu"] == HOST.name and md["num_threads"] >= 1


def test_forced_class_code_is_really_that_class():
    # cpu='x86-64-v3' on any x86 host gets target-cpu x86-64-v3 without AVX-512.
    if HOST.arch != "x86_64":
        pytest.skip("x86 only")
    attrs = cpu_target.llvm_function_attributes(cpu_target.ISAS["x86-64-v3"], forced=True)
    assert attrs == {"vector_bits": 256, "optsize": True, "target_cpu": "x86-64-v3",
                     "target_features": ["-avx512f"]}
    assert cpu_target.llvm_function_attributes(cpu_target.host_isa(), forced=False) == {
        "vector_bits": cpu_target.host_isa().vector_bits, "optsize": True}


def test_function_attributes_reach_the_llvm_functions():
    # What the JIT sees: prefer/min-legal vector width and optsize (LLVM's
    # own unrolling off: attn-lower-to-cpu emits the unrolled blocks) on every
    # defined function, once, next to what was there; declarations untouched.
    from mlir import ir
    from attncc.context import mlir_context
    from attncc.runtime import cpu as rt
    with mlir_context():
        m = ir.Module.parse("""
          llvm.func @ext(f32) -> f32
          llvm.func @k() attributes {passthrough = ["presplitcoroutine"]} { llvm.return }
        """)
        attrs = cpu_target.llvm_function_attributes(cpu_target.ISAS["x86-64-v3"], forced=True)
        rt._set_function_attributes(m, attrs)
        rt._set_function_attributes(m, attrs)
        text = str(m)
    decl, defn = [line for line in text.splitlines() if "llvm.func" in line]
    assert "passthrough" not in decl
    assert defn.count('"optsize"') == 1 and '"presplitcoroutine"' in defn
    assert '["min-legal-vector-width", "256"]' in defn
    assert 'prefer_vector_width = "256"' in defn and 'target_cpu = "x86-64-v3"' in defn


def test_torch_thread_count_is_honoured():
    # Kernels left to the default use torch's thread count at the time of the
    # call: one thread means a serial grid (no thread runtime), two a grid split
    # over a team of torch's OpenMP threads (the async runtime where torch has
    # no OpenMP runtime).
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 40, 32) for _ in range(3))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = compile_graph(_graph(), CompileOptions())
        a = attncc.attention(q, k, v)
        torch.set_num_threads(2)
        two = compile_graph(_graph(), CompileOptions())
        b = attncc.attention(q, k, v)
    finally:
        torch.set_num_threads(before)
    assert one.options.num_threads == 1 and "mlirAsyncRuntime" not in one.ir("llvm")
    assert one._kernel.team_args == 0
    assert two.options.num_threads == 2
    if openmp.runtime() is not None:
        assert two._kernel.team_args == 2 and "mlirAsyncRuntime" not in two.ir("llvm")
    else:
        assert "mlirAsyncRuntime" in two.ir("llvm")
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(cpu_target.ISAS))
@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_half_bias_rows_need_no_library_call(name, dtype):
    # A bf16 bias whose rows end in a partial chunk: a masked load of 16-bit
    # floats became __truncsfbf2 on AVX2 (found by the fuzzer).
    g = Graph("attention")
    q = g.input("q", (1, 1, 1, 16), dtype)
    k = g.input("k", (1, 1, 40, 16), dtype)
    v = g.input("v", (1, 1, 40, 16), dtype)
    b = g.input("mask", (1, 1, 1, 40), dtype)
    g.output(g.attention(q, k, v, mask="none", bias=b))
    c = compile_graph(g, CompileOptions(cpu=name, num_threads=1), stop_after="pipelined")
    from attncc import context, pipeline
    from mlir import ir

    with context.mlir_context():
        m = ir.Module.parse(c.ir("pipelined"))
        pipeline.run_passes(m, pipeline.STAGES[-1].passes(c.options.as_dict()))
        llvm = str(m)
    asm = cpu_target.assembly(llvm, cpu_target.ISAS[name])
    assert "__truncsfbf2" not in asm and "__truncsfhf2" not in asm and "__extendhfsf2" not in asm


def _ragged_graph(paged: bool, page=None):
    g = Graph("ragged_attention")
    q = g.input("q", (None, 4, None, 64), "bf16")
    k = g.input("k", (None, 2, page, 64), "bf16")
    v = g.input("v", (None, 2, page, 64), "bf16")
    work = g.input("work", (None, 7), "i32")
    table = g.input("block_table", (None, None), "i32") if paged else None
    g.output(g.ragged_attention(q, k, v, work, block_table=table, scale=0.125))
    return g


@pytest.mark.parametrize("name,pattern,absent", [
    ("x86-64-v3", r"vfmadd\d+ps\s+%ymm", r"%zmm"),
    ("x86-64-v4", r"vfmadd\d+ps\s+%zmm", None),
    ("aarch64", r"fmla\s+v\d+\.4s", None),
])
@pytest.mark.parametrize("form", ["split_kv", "paged", "kv_in_place", "paged_in_place"])
def test_inference_forms_compile_for_every_class(name, pattern, absent, form):
    """The split-KV combine, the paged gather and the in-place decode form's
    dot products (contiguous, and on pages read in place with prefetches;
    added for decode and serving) follow the ISA class like the rest of the
    kernel, whichever host compiles them."""
    isa = cpu_target.ISAS[name]
    if form == "split_kv":
        c = compile_graph(_graph("bf16"), CompileOptions(cpu=name), stop_after="llvm",
                          split_kv=True)
        assert "attn.tile_combine" in c.ir("tiled")
    elif form == "kv_in_place":
        c = compile_graph(_graph("bf16"), CompileOptions(cpu=name, block_m=4, kv_in_place=True),
                          stop_after="llvm")
        assert "transposed into" in c.ir("tiled")
        # The dot products of a 4-row block reduce by shuffle trees sized to
        # the class's lanes: their first round swaps half of each vector
        # (4 rows x 2 keys on 8 lanes, 4 x 4 on 16, 4 x 1 on 4; on aarch64 the
        # softmax's 4-row groups use the same masks, so there the lit tests
        # are the check).
        first_round = {"x86-64-v3": "0, 1, 2, 3, 8, 9, 10, 11",
                       "x86-64-v4": ", ".join(map(str, [*range(8), *range(16, 24)])),
                       "aarch64": "0, 1, 4, 5"}[name]
        assert re.search(r"llvm\.shufflevector %\S+, %\S+ \[" + first_round + r"\]",
                         c.ir("llvm"))
    elif form == "paged_in_place":   # decode on pages of 16, read in place, prefetched
        c = compile_graph(_ragged_graph(paged=True, page=16),
                          CompileOptions(cpu=name, block_m=4, kv_in_place=True), stop_after="llvm")
        assert "transposed into" in c.ir("tiled") and "attn.gather_tile" not in c.ir("tiled")
        # The products prefetch the next block's pages (tile_matmul's
        # prefetch view), lowered to the prefetch intrinsic.
        assert re.search(r"transposed into %\S+ prefetch %", c.ir("tiled"))
        assert "llvm.intr.prefetch" in c.ir("llvm")
    else:
        c = compile_graph(_ragged_graph(paged=True), CompileOptions(cpu=name),
                          stop_after="llvm")
        assert "attn.gather_tile" in c.ir("tiled")
    asm = cpu_target.assembly(c.ir("llvm"), isa)
    assert re.search(pattern, asm), f"no {pattern} in the {name} assembly"
    if absent:
        assert not re.search(absent, asm), f"{absent} in the {name} assembly"
    assert "__truncsfbf2" not in asm and "__extendhfsf2" not in asm


def test_environment_sets_the_default_class(monkeypatch):
    """ATTNCC_CPU is the default of the cpu option (how CI runs the suite on
    AVX2 code on an AVX-512 host); an explicit cpu= still wins."""
    monkeypatch.setenv("ATTNCC_CPU", "x86-64-v3")
    assert CompileOptions().cpu == "x86-64-v3"
    assert CompileOptions(cpu="host").cpu == "host"
    assert CompileOptions.cached({}).cpu == "x86-64-v3"
    monkeypatch.delenv("ATTNCC_CPU")
    assert CompileOptions().cpu == "host"
    # The per-kwargs memo of the attention APIs follows the variable too.
    assert CompileOptions.cached({}).cpu == "host"
    monkeypatch.setenv("ATTNCC_CPU", "x86-64-v3")
    assert CompileOptions.cached({}).cpu == "x86-64-v3"


def test_environment_class_reaches_the_kernel(monkeypatch):
    if HOST.arch != "x86_64" or cpu_target.missing_features(cpu_target.ISAS["x86-64-v3"]):
        pytest.skip("needs an x86 host that runs AVX2 code")
    monkeypatch.setenv("ATTNCC_CPU", "x86-64-v3")
    c = compile_graph(_graph(), CompileOptions())
    assert c.metadata["isa"] == "x86-64-v3" and c.metadata["vector_width"] == 8


def test_bad_environment_class_is_an_option_error(monkeypatch):
    monkeypatch.setenv("ATTNCC_CPU", "pentium")
    with pytest.raises(OptionError, match=r"'pentium' \(from the environment variable ATTNCC_CPU\)"):
        CompileOptions()

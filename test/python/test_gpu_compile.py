"""Static checks of the GPU kernels (no GPU needed): every supported config
compiles to PTX that ptxas assembles for sm_80 and sm_90a without spills,
with the expected instruction mix, shared-memory buffers and resources within
the architecture's limits; bad inputs give clear errors; the kernel cache."""
import ctypes
import itertools
import json
import os
import re

import pytest
import torch

import attncc
from attncc.targets import gpu as agpu
from attncc.errors import CompileError
from attncc.options import CompileOptions, OptionError

from gpu_testing import Config

needs_ptxas = pytest.mark.skipif(agpu.find_ptxas() is None, reason="ptxas (CUDA toolkit) not installed")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path / "cache"))


CONFIGS = [Config(dtype=dt, D=d, mask=m, H=4, Hkv=hkv, Lq=300)
           for dt, d, m, hkv in itertools.product(("f16", "bf16"), (64, 128), ("causal", "none", "bias"),
                                                 (None, 2))]


def _id(c: Config) -> str:
    return f"{c.dtype}-d{c.D}-{c.mask}-{'gqa' if c.Hkv else 'mha'}"


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


@needs_ptxas
@pytest.mark.parametrize("chip", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_ptx_assembles_without_spills(cfg, chip):
    c = cfg.compile(chip)
    md = c.metadata
    info = agpu.CHIPS[chip]
    # ptxas -arch=<chip> accepted it (the cubin exists) and reported no spills.
    assert c.cubin and c.cubin[:4] == b"\x7fELF"
    assert md["spill_store_bytes"] == 0 and md["spill_load_bytes"] == 0, c.ir("cubin")
    assert md["stack_frame_bytes"] == 0, c.ir("cubin")
    # Launch configuration and limits.
    threads = md["block"][0]
    assert md["block"] == [32 * md["num_warps"], 1, 1] and threads == 2 * cfg.block_m
    assert md["registers"] <= info.max_regs_per_thread
    assert md["registers"] * threads <= info.regs_per_sm
    assert md["shared_bytes"] <= info.max_smem_per_block
    # num_stages K and V buffers of block_n x head_dim (2 bytes) + the Q tile.
    tile = cfg.block_n * cfg.D * 2
    # sm_90a (wgmma): 1 KiB more, to start the tiles on a 1024-byte boundary.
    align = 1024 if chip == "sm_90a" else 0
    assert md["shared_bytes"] == cfg.block_m * cfg.D * 2 + 2 * cfg.num_stages * tile + align
    # Grid: (query blocks, heads, batch).
    assert md["grid"] == [-(-cfg.Lq // cfg.block_m), cfg.H, cfg.B]
    # Instruction mix.
    ptx = c.ptx
    assert f".target {chip}" in ptx
    elt = "f16" if cfg.dtype == "f16" else "bf16"
    if chip == "sm_80":
        assert _count(rf"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.{elt}\.{elt}\.f32", ptx) > 0
        assert _count(r"ldmatrix\.sync\.aligned\.m8n8\.x4\.shared\.b16", ptx) > 0
        assert _count(r"ldmatrix\.sync\.aligned\.m8n8\.x4\.trans\.shared\.b16", ptx) > 0
        assert _count(r"wgmma", ptx) == 0
    else:
        # Q.K^T: m64n{block_n}k16 from two descriptors; P.V: m64n{D}k16 with A
        # in registers ({4 regs}) and B transposed (last immediate 1).
        assert _count(rf"wgmma\.mma_async\.sync\.aligned\.m64n{cfg.block_n}k16\.f32\.{elt}\.{elt} "
                      r"\{[^}]*\}, %rd\d+, %rd\d+", ptx) > 0
        assert _count(rf"wgmma\.mma_async\.sync\.aligned\.m64n{cfg.D}k16\.f32\.{elt}\.{elt} "
                      r"\{[^}]*\}, \{%r\d+, %r\d+, %r\d+, %r\d+\}, %rd\d+, 1, 1, 1, 1;", ptx) > 0
        assert _count(r"wgmma\.fence\.sync\.aligned", ptx) > 0
        assert _count(r"wgmma\.commit_group\.sync\.aligned", ptx) > 0
        assert _count(r"wgmma\.wait_group\.sync\.aligned", ptx) > 0
        assert _count(r"mma\.sync|ldmatrix", ptx) == 0
    if chip == "sm_80":
        assert _count(r"cp\.async\.cg\.shared\.global", ptx) > 0
        assert _count(r"cp\.async\.commit_group", ptx) > 0
        assert _count(r"cp\.async\.wait_group", ptx) > 0
    else:
        # TMA boxes on mbarriers instead of cp.async: one mbarrier per K/V
        # slot plus one for Q, initialized by one thread.
        assert _count(r"cp\.async\.bulk\.tensor\.4d\.shared::cluster\.global\.mbarrier::complete_tx::bytes",
                      ptx) > 0
        assert _count(r"mbarrier\.init\.shared\.b64", ptx) == cfg.num_stages + 1
        assert _count(r"mbarrier\.arrive\.expect_tx\.shared\.b64", ptx) > 0
        assert _count(r"mbarrier\.try_wait\.parity\.shared\.b64", ptx) > 0
        assert _count(r"cp\.async\.cg|cp\.async\.wait_group", ptx) == 0
        # The tensor maps are kernel arguments made in the host function.
        maps = [a for a in md["kernel_args"] if "tensor_map" in a]
        assert {a["arg"] for a in maps} == {0, 1, 2}
        assert all(a["tensor_map"]["swizzle"] == "swizzle_128b" and a["tensor_map"]["oob"] == "zero"
                   for a in maps)
    assert _count(r"bar\.sync", ptx) > 0
    assert _count(r"shfl\.sync\.bfly", ptx) > 0
    assert _count(r"ex2\.approx", ptx) > 0
    assert ".local" not in ptx  # no stack arrays: the fragments live in registers


@needs_ptxas
def test_mma_count_matches_the_tile_shapes():
    # Per KV iteration and warp: Q.K^T is (block_n / 8) x (D / 16) mma, P.V
    # (D / 8) x (block_n / 16); the steady state plus a one-iteration epilogue
    # (2 stages) hold two iterations' worth.
    cfg = Config(D=64, mask="none", Lq=512)
    c = cfg.compile("sm_80")
    per_iter = (cfg.block_n // 8) * (cfg.D // 16) + (cfg.D // 8) * (cfg.block_n // 16)
    assert _count(r"mma\.sync\.aligned", c.ptx) == 2 * per_iter
    # Copies: Q (64 x 64 / 8 chunks over 128 threads = 4 per thread) +
    # (prologue + steady state) x (K + V) x 4.
    assert _count(r"cp\.async\.cg\.shared\.global", c.ptx) == 4 + 2 * 2 * 4


@needs_ptxas
@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_waits_follow_the_pipeline_depth(stages):
    cfg = Config(D=64, mask="none", Lq=512, block_n=32, num_stages=stages)
    c = cfg.compile("sm_80", stop_after="gpu")
    gpu_ir = c.ir("gpu")
    waits = [int(n) for n in re.findall(r"device_async_wait %\S+ \{numGroups = (\d+) : i32\}", gpu_ir)]
    # Q: behind the prologue's stages - 1 groups; steady state: stages - 1 in
    # flight; epilogue iterations e: stages - 2 - e.
    expected = [stages - 1, stages - 1] + [stages - 2 - e for e in range(stages - 1)]
    assert waits == expected
    smem = re.search(r"memref<(\d+)x32x64xf16, #gpu.address_space<workgroup>>", gpu_ir)
    assert smem and int(smem.group(1)) == stages  # num_stages K/V slots


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_hopper_slots_and_mbarriers_follow_the_pipeline_depth(stages):
    # sm_90a + TMA: num_stages K and V slots, one mbarrier per slot plus Q's,
    # one wait per Q.K^T (steady state + epilogue) plus Q's.
    cfg = Config(D=64, mask="none", Lq=512, block_n=32, num_stages=stages)
    gpu_ir = cfg.compile("sm_90a", stop_after="gpu").ir("gpu")
    assert f"num_barriers = {stages + 1}>" in gpu_ir
    slots = re.findall(r"memref<(\d+)x32x64xf16, #gpu.address_space<workgroup>>", gpu_ir)
    assert slots and {int(n) for n in slots} == {stages}
    # Waits: Q's, then the steady state's Q.K^T and the stages - 1 epilogue
    # iterations'. expect_tx: Q's, then the stages - 1 prologue iterations' and
    # the steady state's K+V.
    assert _count(r"nvgpu\.mbarrier\.try_wait\.parity", gpu_ir) == 1 + stages
    assert _count(r"nvgpu\.mbarrier\.arrive\.expect_tx", gpu_ir) == 1 + stages


@needs_ptxas
def test_hopper_kernel_report_config():
    # The kernel-quality config of bench/gpu_kernel_report.py.
    cfg = Config(D=128, mask="causal", H=8, Lq=1024, block_m=128, block_n=64, num_stages=3)
    c = cfg.compile("sm_90a")
    md = c.metadata
    assert md["block"] == [256, 1, 1]
    assert md["shared_bytes"] == 128 * 1024 + 1024  # + the 1 KiB alignment pad of wgmma tiles
    assert md["spill_store_bytes"] == 0 and md["registers"] <= 255
    assert "wgmma.mma_async" in c.ptx and "mma.sync" not in c.ptx


# --------------------------------------------------------------------------- errors

def test_f64_attention_is_rejected_with_a_clear_message():
    # (f32 runs as TF32: test_gpu_tf32.py; f64 inputs with an f32 output get
    # "element type 'f64' is not supported": attn-lower-to-gpu-invalid.mlir.)
    with pytest.raises(CompileError, match="the output must be f16, bf16 or f32"):
        Config(dtype="f64").compile("sm_80", stop_after="gpu")


def test_unsupported_head_dim_is_rejected():
    with pytest.raises(CompileError, match="head dim 96 is not supported on the GPU"):
        Config(D=96).compile("sm_80")


def test_num_warps_must_match_block_m():
    with pytest.raises(OptionError, match="num_warps=8 needs block_m=128"):
        CompileOptions(block_m=64, num_warps=8)
    with pytest.raises(OptionError, match="num_warps must be"):
        CompileOptions(block_m=64, num_warps=3)


def test_unknown_target_and_chip_are_errors_not_aborts():
    with pytest.raises(CompileError, match="unknown target"):
        Config().compile("sm_75")
    with pytest.raises(CompileError, match="unknown GPU chip"):
        agpu.nvvm_pipeline("sm_75")
    for chip, info in agpu.CHIPS.items():
        assert f"cubin-features={info.ptx_features}" in agpu.nvvm_pipeline(chip)
    assert agpu.CHIPS["sm_90a"].ptx_features >= "+ptx83"  # fence.proxy.tensormap (TMA)


def test_stage_lists_are_target_dependent():
    from attncc import pipeline

    gpu = [s.name for s in pipeline.stages_for("sm_80")]
    assert gpu[-3:] == ["gpu", "ptx", "cubin"] and "llvm" not in gpu
    assert [s.name for s in pipeline.stages_for("cpu")] == list(pipeline.STAGE_NAMES)
    c = Config().compile("sm_80", stop_after="gpu")
    assert "gpu.launch_func" in c.ir("gpu") and "nvgpu.mma.sync" in c.ir("gpu")
    assert c.ptx is None and c._kernel is None
    with pytest.raises(CompileError, match="unknown stage"):
        Config().compile("sm_80", stop_after="llvm")


def test_missing_ptxas_gives_ptx_and_a_clear_cubin_message(monkeypatch):
    monkeypatch.setenv("ATTNCC_PTXAS", "/nonexistent/ptxas")
    c = Config().compile("sm_80")
    assert c.ptx and ".entry attention_kernel" in c.ptx
    assert c.cubin is None
    assert "ptxas not found" in c.ir("cubin")
    with pytest.raises(agpu.PtxasNotFound, match="ptxas not found"):
        agpu.assemble(c.ptx, "sm_80")


# --------------------------------------------------------------------------- metadata

@needs_ptxas
def test_metadata_describes_the_launch():
    c = Config(mask="bias", Lq=130, H=2).compile("sm_80")
    md = c.metadata
    assert md["kernel"] == "attention_kernel" and f".entry {md['kernel']}" in c.ptx
    assert md["roles"] == {"q": 0, "k": 1, "v": 2, "bias": 3, "out": 4}
    assert [a["arg"] for a in md["kernel_args"]] == [0, 1, 2, 3, 4]
    assert md["grid"] == [3, 2, 1] and md["num_warps"] == 4
    # PTX parameters: one memref descriptor (2 pointers + offset + 2 x rank) per argument.
    entry = c.ptx[c.ptx.index(".entry"):c.ptx.index(")", c.ptx.index(".entry"))]
    assert entry.count(".param") == sum(3 + 2 * len(a["shape"]) for a in md["kernel_args"])
    json.dumps(md)  # cacheable as JSON


def test_dynamic_sequence_length_grid_is_an_expression():
    g = attncc.Graph()
    q = g.input("q", (1, 2, None, 64), "f16")
    k = g.input("k", (1, 2, None, 64), "f16")
    g.output(g.attention(q, k, k, mask="causal"))
    from attncc.compiler import compile_graph

    c = compile_graph(g, CompileOptions(), "sm_80", stop_after="gpu")
    from attncc.runtime.grid import eval_expr
    from attncc.targets.gpu import kernel_metadata
    from attncc import context
    from mlir import ir

    with context.mlir_context():
        md = kernel_metadata(ir.Module.parse(c.ir("gpu")), "attention")
    shapes = [(1, 2, 1000, 64), (1, 2, 1000, 64), (1, 2, 1000, 64)]
    assert [eval_expr(e, shapes) for e in md["grid"]] == [16, 2, 1]
    shapes = [(1, 2, 65, 64)] * 3
    assert eval_expr(md["grid"][0], shapes) == 2


# --------------------------------------------------------------------------- cache

@needs_ptxas
def test_kernel_cache_memory_disk_and_corruption(tmp_path, monkeypatch):
    from attncc.runtime import kernel_cache
    from attncc.runtime.kernel_cache import KernelCache

    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path / "c2"))
    cfg = Config(Lq=64, H=1)
    first = cfg.compile("sm_80")
    cache = KernelCache.default()
    files = list((tmp_path / "c2" / "gpu").glob("*.json"))
    assert len(files) == 1 and not list((tmp_path / "c2" / "gpu").glob("*.tmp"))
    # In-process hit.
    again = cfg.compile("sm_80")
    assert again.stage_seconds == {"cache": 0.0} and cache.hits["memory"] == 1
    assert again.ptx == first.ptx and again.cubin == first.cubin and again.metadata == first.metadata
    assert again.ir("gpu") == first.ir("gpu")
    # Disk hit in a "new process" (fresh cache object).
    KernelCache._defaults.clear()
    disk = cfg.compile("sm_80")
    assert KernelCache.default().hits["disk"] == 1 and disk.cubin == first.cubin
    # A different option is a different kernel.
    cfg.with_(num_stages=3).compile("sm_80")
    assert len(list((tmp_path / "c2" / "gpu").glob("*.json"))) == 2
    # Corrupt entry: recompiled and rewritten.
    files[0].write_text(files[0].read_text()[:-40] + "garbage")
    KernelCache._defaults.clear()
    fixed = cfg.compile("sm_80")
    assert "cache" not in fixed.stage_seconds and fixed.cubin == first.cubin
    assert json.loads(files[0].read_text())["format"] == kernel_cache.FORMAT


def test_disk_cache_can_be_disabled(tmp_path, monkeypatch):
    from attncc.runtime.kernel_cache import KernelCache

    monkeypatch.setenv("ATTNCC_CACHE", "0")
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path / "off"))
    Config(Lq=32, H=1).compile("sm_80")
    assert KernelCache.default().directory is None
    assert not (tmp_path / "off").exists()


# --------------------------------------------------------------------------- runtime without CUDA

def test_launch_without_cuda_raises_a_clear_error():
    from attncc.runtime.cuda import CudaUnavailable, cuda_available

    c = Config(Lq=32, H=1).compile("sm_80")
    ts = Config(Lq=32, H=1).inputs()
    ok, why = cuda_available()
    if ok:
        pytest.skip("a CUDA device is present; this checks the error path without one")
    assert why
    # CPU tensors: a clear input error.
    with pytest.raises(attncc.errors.InputError, match="GPU kernels take CUDA tensors"):
        c(*ts)
    # Tensors that claim to be on CUDA cannot even be made here; calling the
    # launcher directly reports the missing device.
    with pytest.raises(CudaUnavailable, match="no CUDA device|cuda-bindings"):
        c._kernel._launch([t for t in ts], torch.device("cuda", 0))


def test_kernel_parameters_follow_the_memref_descriptor_convention():
    c = Config(Lq=40, H=1, mask="none").compile("sm_80")
    ts = Config(Lq=40, H=1, mask="none").inputs()
    out = torch.empty(1, 1, 40, 64, dtype=torch.float16)
    params, keep = c._kernel.pack_params(ts + [out])
    # 4 memrefs of rank 4: (ptr, ptr, offset, 4 sizes, 4 strides) each.
    assert len(keep) == 4 * 11
    assert keep[0].value == ts[0].data_ptr() and keep[2].value == 0
    assert [x.value for x in keep[3:7]] == [1, 1, 40, 64] and [x.value for x in keep[7:11]] == [2560, 2560, 64, 1]
    grid, block, smem = c._kernel.launch_config([tuple(t.shape) for t in ts + [out]])
    assert grid == [1, 1, 1] and block == [128, 1, 1] and smem == c.metadata["shared_bytes"]


class _FakeHandle:
    def __init__(self, v):
        self.v = v

    def __int__(self):
        return self.v


class _FakeDriver:
    """Records the driver calls of attncc.runtime.cuda (host logic only: no
    kernel runs, no result is produced)."""

    class CUfunction_attribute:
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

    class CUstream(_FakeHandle):
        pass

    # Enum members as their names: the recorded calls show what was asked.
    class CUtensorMapDataType:
        CU_TENSOR_MAP_DATA_TYPE_FLOAT16 = "FLOAT16"
        CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = "BFLOAT16"

    class CUtensorMapInterleave:
        CU_TENSOR_MAP_INTERLEAVE_NONE = "INTERLEAVE_NONE"

    class CUtensorMapSwizzle:
        CU_TENSOR_MAP_SWIZZLE_128B = "SWIZZLE_128B"

    class CUtensorMapL2promotion:
        CU_TENSOR_MAP_L2_PROMOTION_L2_128B = "L2_128B"

    class CUtensorMapFloatOOBfill:
        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = "OOB_FILL_NONE"

    cuuint64_t = int
    cuuint32_t = int
    nparams = 4 * 11

    def __init__(self):
        self.calls = []
        self.ctx = _FakeHandle(0)

    def _rec(self, name, *args, ret=()):
        self.calls.append((name, args))
        return (0, *ret)

    def cuInit(self, flags):
        return self._rec("cuInit", flags)

    def cuCtxGetCurrent(self):
        return self._rec("cuCtxGetCurrent", ret=(self.ctx,))

    def cuDeviceGet(self, i):
        return self._rec("cuDeviceGet", i, ret=(_FakeHandle(i),))

    def cuDevicePrimaryCtxRetain(self, dev):
        return self._rec("cuDevicePrimaryCtxRetain", dev, ret=(_FakeHandle(77),))

    def cuCtxSetCurrent(self, ctx):
        self.ctx = ctx
        return self._rec("cuCtxSetCurrent", int(ctx))

    def cuModuleLoadData(self, image):
        return self._rec("cuModuleLoadData", bytes(image[:16]), len(image), ret=(_FakeHandle(5),))

    def cuModuleGetFunction(self, module, name):
        return self._rec("cuModuleGetFunction", name, ret=(_FakeHandle(6),))

    def cuFuncSetAttribute(self, fn, attr, value):
        return self._rec("cuFuncSetAttribute", attr, value)

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        # Decode the void** array while the caller keeps it alive.
        n = self.nparams
        ptrs = (ctypes.c_void_p * n).from_address(params)
        vals = [ctypes.c_int64.from_address(p).value for p in ptrs]
        return self._rec("cuLaunchKernel", (gx, gy, gz), (bx, by, bz), smem, int(stream), vals)

    def cuTensorMapEncodeTiled(self, dtype, rank, address, dims, strides, box, element_strides,
                               interleave, swizzle, l2, oob):
        self._rec("cuTensorMapEncodeTiled", dtype, rank, address, list(dims), list(strides),
                  list(box), list(element_strides), interleave, swizzle, l2, oob)
        n = sum(1 for name, _ in self.calls if name == "cuTensorMapEncodeTiled")
        return 0, type("CUtensorMap", (), {"opaque": [n] * 16})()

    def cuGetErrorName(self, err):
        return (0, b"CUDA_ERROR_FAKE")


def _recording_driver(monkeypatch):
    import contextlib

    import attncc.runtime.cuda as rc

    fake = _FakeDriver()
    monkeypatch.setattr(rc, "_driver", lambda: fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: type("S", (), {"cuda_stream": 1234})())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    uploads = []

    def device_bytes(blob, device):  # no CUDA memory here: record the bytes
        uploads.append(blob)
        return None, 0x7000 * len(uploads)
    monkeypatch.setattr(rc, "_device_bytes", device_bytes)
    return fake, uploads


def test_runtime_driver_calls_with_a_recording_driver(monkeypatch):
    fake, uploads = _recording_driver(monkeypatch)
    cfg = Config(D=128, block_m=128, block_n=64, num_stages=3, Lq=300, H=2, mask="none")
    c = cfg.compile("sm_90a")
    ts = cfg.inputs()
    out = torch.empty(1, 2, 300, 128, dtype=torch.float16)
    fake.nparams = 3 + 11  # three tensor maps, the output's memref descriptor
    c._kernel._launch(ts + [out], torch.device("cuda", 0))
    c._kernel._launch(ts + [out], torch.device("cuda", 0))
    names = [n for n, _ in fake.calls]
    # Loaded once (cubin: the device is sm_90), 129 KiB of shared memory opted
    # in (128 KiB of tiles + the 1 KiB alignment pad).
    assert names.count("cuModuleLoadData") == 1 and names.count("cuLaunchKernel") == 2
    load = dict(fake.calls)["cuModuleLoadData"]
    assert load[0][:4] == b"\x7fELF" and load[1] == len(c.cubin)
    assert dict(fake.calls)["cuModuleGetFunction"] == (b"attention_kernel",)
    assert c.metadata["shared_bytes"] == 129 * 1024
    assert dict(fake.calls)["cuFuncSetAttribute"] == (8, 129 * 1024)
    # Per launch, one TMA tensor map per input, encoded for its tensor: dims
    # and byte strides innermost first, a box of 64 columns x block rows.
    encodes = [a for n, a in fake.calls if n == "cuTensorMapEncodeTiled"]
    assert len(encodes) == 6
    for (dtype, rank, address, dims, strides, box, estr, il, sw, l2, oob), t, rows in zip(
            encodes[:3], ts, (128, 64, 64)):
        assert (dtype, rank, address) == ("FLOAT16", 4, t.data_ptr())
        assert dims == list(reversed(t.shape)) and strides == [2 * x for x in reversed(t.stride()[:-1])]
        assert box == [64, rows, 1, 1] and estr == [1, 1, 1, 1]
        assert (il, sw, l2, oob) == ("INTERLEAVE_NONE", "SWIZZLE_128B", "L2_128B", "OOB_FILL_NONE")
    # The three 128-byte maps go to device memory together, each launch its own.
    assert len(uploads) == 2 and all(len(u) == 3 * 128 for u in uploads)
    assert uploads[0][:8] == (1).to_bytes(8, "little") and uploads[0][256:264] == (3).to_bytes(8, "little")
    grid, block, smem, stream, vals = [a for n, a in fake.calls if n == "cuLaunchKernel"][-1]
    assert grid == (3, 2, 1) and block == (256, 1, 1) and smem == 129 * 1024 and stream == 1234
    # Parameters: the maps' device addresses, then (ptr, ptr, offset, sizes,
    # strides) of the output.
    assert vals[:3] == [0xE000, 0xE000 + 128, 0xE000 + 256]
    d = vals[3:]
    assert d[0] == d[1] == out.data_ptr() and d[2] == 0
    assert d[3:7] == list(out.shape) and d[7:11] == list(out.stride())


def test_runtime_memref_parameters_with_a_recording_driver(monkeypatch):
    # The cp.async kernels (sm_80, or tma=False) take every tensor as a memref.
    fake, uploads = _recording_driver(monkeypatch)
    cfg = Config(D=128, block_m=128, block_n=64, num_stages=3, Lq=300, H=2, mask="none", tma=False)
    c = cfg.compile("sm_90a")
    ts = cfg.inputs()
    out = torch.empty(1, 2, 300, 128, dtype=torch.float16)
    c._kernel._launch(ts + [out], torch.device("cuda", 0))
    assert not uploads and "cuTensorMapEncodeTiled" not in [n for n, _ in fake.calls]
    grid, block, smem, stream, vals = dict(fake.calls)["cuLaunchKernel"]
    assert grid == (3, 2, 1) and smem == 129 * 1024
    # Descriptors: (ptr, ptr, offset, sizes, strides) for q, k, v, out.
    for i, t in enumerate(ts + [out]):
        d = vals[11 * i:11 * (i + 1)]
        assert d[0] == d[1] == t.data_ptr() and d[2] == 0
        assert d[3:7] == list(t.shape) and d[7:11] == list(t.stride())

"""f32 inputs on the GPU (TF32 tensor cores, `input_precision`) and the
register budget of the largest sm_80 kernel.

* the emulator runs the 'gpu' stage of the f32 kernels (mma.sync m16n8k8
  .tf32 on operands rounded by cvt.rna.tf32.f32, per the PTX ISA) against a
  float64 reference: "tf32" within a TF32-level tolerance (and measurably less
  accurate than "tf32x3": the rounding is really there), "tf32x3" within an
  fp32-level one; one dynamic-length kernel each, run at two lengths that are
  not multiples of the block sizes;
* ptxas assembles them for sm_80 and sm_90a with 0 spills;
* the option's validation, its CPU meaning, and the refused combinations.
"""
import pytest
import torch

from attncc import compiler
from attncc.errors import CompileError
from attncc.options import CompileOptions, OptionError
from attncc.targets import gpu as agpu

from gpu_testing import Config, emulate

needs_ptxas = pytest.mark.skipif(agpu.find_ptxas() is None, reason="ptxas (CUDA toolkit) not installed")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path / "cache"))


# One dynamic-length kernel per precision; lengths 37 x 150 and 70 x 70 (not
# multiples of block_m = 64 / block_n = 32), causal (rows past the keys'
# diagonal, a masked tail block) with 3 pipeline stages.
DYN = Config(dtype="f32", D=64, mask="causal", H=1, block_n=32, num_stages=3, dynamic=True)
LENGTHS = [(37, 150), (70, 70)]


def _emulated_errors(precision):
    cfg = DYN.with_(input_precision=precision)
    ir_text = cfg.compile("sm_80", stop_after="gpu").ir("gpu")
    errs = []
    for lq, lk in LENGTHS:
        run = cfg.with_(Lq=lq, Lk=lk)
        ts = run.inputs(seed=lq)
        out, stats = emulate(ir_text, run, ts)
        errs.append((out.double() - run.reference(ts)).abs().max().item())
        assert stats["mma.tf32"] > 0 and "mma" not in stats and "ldmatrix" not in stats
        # Every MMA operand went through cvt.rna.tf32.f32 (the emulator counts
        # operands with low bits set, which the hardware would truncate).
        assert stats.get("tf32.unrounded", 0) == 0
    return cfg, errs


@pytest.fixture(scope="module")
def tf32_errors():
    return _emulated_errors("tf32")


@pytest.fixture(scope="module")
def tf32x3_errors():
    return _emulated_errors("tf32x3")


def test_tf32_kernel_matches_float64_at_tf32_accuracy(tf32_errors):
    cfg, errs = tf32_errors
    assert max(errs) < cfg.tolerance(), errs        # 4e-3: what f16 (10 mantissa bits) gets


def test_tf32x3_kernel_matches_float64_at_fp32_accuracy(tf32x3_errors):
    cfg, errs = tf32x3_errors
    assert max(errs) < cfg.tolerance(), errs        # 2e-5


def test_tf32_rounding_is_visible_and_tf32x3_removes_it(tf32_errors, tf32x3_errors):
    # TF32's 2^-11 operand rounding shows in the output (above 1e-4), and
    # 3xTF32 is at least 30x closer: neither tolerance is vacuous.
    for e1, e3 in zip(tf32_errors[1], tf32x3_errors[1]):
        assert e1 > 1e-4 and e3 * 30 < e1, (e1, e3)


@needs_ptxas
@pytest.mark.parametrize("chip,precision,D", [
    (chip, precision, D) for chip in ("sm_80", "sm_90a") for precision in ("tf32", "tf32x3")
    for D in (64, 128)])
def test_f32_kernels_assemble_without_spills(chip, precision, D):
    # Default blocks (64 x 64, 2 stages; 64 x 32 for head dim 128, whose
    # 64 x 64 kernel needs more than 255 registers): the f32 tiles need 4
    # bytes an element.
    BN = 32 if D >= 128 else 64
    cfg = Config(dtype="f32", D=D, mask="causal", H=2, Lq=300, block_m=None, block_n=None,
                 input_precision=precision)
    c = compiler.compile_graph(cfg.graph(), CompileOptions(input_precision=precision), chip)
    md = c.metadata
    assert md["spill_store_bytes"] == 0 and md["spill_load_bytes"] == 0, c.ir("cubin")
    assert md["stack_frame_bytes"] == 0, c.ir("cubin")
    assert md["shared_bytes"] == (64 * D + 2 * 2 * BN * D) * 4
    assert md["shared_bytes"] <= agpu.CHIPS[chip].max_smem_per_block
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in c.ptx
    assert "cvt.rna.tf32.f32" in c.ptx
    assert "ldmatrix" not in c.ptx and "wgmma" not in c.ptx and "m16n8k16" not in c.ptx
    # 3xTF32: three MMAs per product, the small parts from a second cvt.
    n_mma = c.ptx.count("mma.sync.aligned.m16n8k8")
    n_cvt = c.ptx.count("cvt.rna.tf32.f32")
    if precision == "tf32x3":
        assert n_mma % 3 == 0 and "sub.f32" in c.ptx or "sub.rn.f32" in c.ptx
    assert n_cvt > 0 and n_mma > 0


@needs_ptxas
def test_sm80_128x64_3_stage_d128_causal_kernel_does_not_spill():
    # The largest sm_80 configuration: 8 warps, 128 x 64 blocks, 3 stages,
    # head dim 128, causal (it used to need 255 registers and spill 20 + 20 B).
    for dtype in ("f16", "bf16"):
        cfg = Config(dtype=dtype, D=128, mask="causal", H=2, Lq=1024, block_m=128, block_n=64,
                     num_stages=3)
        md = cfg.compile("sm_80").metadata
        report = agpu.parse_ptxas_log(cfg.compile("sm_80").ir("cubin"))
        assert report.spill_store_bytes == 0 and report.spill_load_bytes == 0, report.log
        assert report.stack_frame_bytes == 0, report.log
        assert md["registers"] == report.registers <= 255


# --------------------------------------------------------------------------- the option

def test_input_precision_is_validated():
    for bad in ("fp32", "TF32", 32, True):
        with pytest.raises(OptionError, match="input_precision must be one of"):
            CompileOptions(input_precision=bad)


def test_input_precision_defaults_per_target():
    assert CompileOptions().resolved("sm_80", 100).input_precision == "tf32"
    assert CompileOptions(input_precision="tf32x3").resolved("sm_90a", 100).input_precision == "tf32x3"
    # The CPU computes in fp32 whatever is asked (at least the asked accuracy).
    for p in (None, "tf32", "tf32x3", "ieee"):
        assert CompileOptions(input_precision=p).resolved("cpu", 100).input_precision == "ieee"


def test_ieee_is_refused_on_the_gpu():
    with pytest.raises(OptionError, match="input_precision='ieee'.*not implemented on the GPU"):
        CompileOptions(input_precision="ieee").resolved("sm_80", 100)
    with pytest.raises(OptionError, match="input_precision='ieee'"):
        Config(dtype="f32", input_precision="ieee").compile("sm_80", stop_after="gpu")


def test_cpu_accepts_tf32_and_computes_fp32():
    cfg = Config(dtype="f32", D=64, mask="causal", H=1, Lq=40, input_precision="tf32")
    c = compiler.compile_graph(cfg.graph(), cfg.options(), "cpu")
    ts = cfg.inputs()
    out = c(*ts)
    assert (out.double() - cfg.reference(ts)).abs().max().item() < 2e-5


def test_wgmma_refuses_f32_inputs():
    cfg = Config(dtype="f32", D=64, mask="none", H=1, Lq=64)
    opts = CompileOptions(block_m=64, block_n=64, mma="wgmma")
    with pytest.raises(CompileError, match="mma=wgmma does not take f32 inputs"):
        compiler.compile_graph(cfg.graph(), opts, "sm_90a", stop_after="gpu")


def test_triton_reference_gets_the_same_input_precision():
    # `attncc compare --b triton` passes input_precision to the reference's
    # tl.dot: 3xTF32 there too is three tf32 MMAs per product.
    from attncc.reference import triton_attention as ta
    if not ta.available():
        pytest.skip("Triton is not installed")
    counts = {}
    for p in ("tf32", "tf32x3"):
        spec = ta.AttentionSpec(batch=1, heads=1, seq=128, head_dim=64, dtype="f32", causal=False,
                                input_precision=p)
        k = ta.compile_attention(spec, "sm_80", block_m=64, block_n=32, num_stages=2)
        counts[p] = k.ptx.count("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32")
    assert counts["tf32"] > 0 and counts["tf32x3"] == 3 * counts["tf32"], counts


@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
def test_f32_head_dim_128_default_blocks_run(precision):
    # Head dim 128 at the f32 defaults (64 x 32 blocks, 2 stages): the kernel
    # that fits in registers computes what the float64 reference does.
    cfg = Config(dtype="f32", D=128, mask="causal", H=1, block_m=None, block_n=None,
                 dynamic=True, input_precision=precision)
    compiled = compiler.compile_graph(cfg.graph(), CompileOptions(input_precision=precision),
                                      "sm_80", stop_after="gpu")
    assert compiled.options.block_n == 32 and compiled.options.block_m == 64
    ir_text = compiled.ir("gpu")
    for lq, lk in [(37, 150), (70, 70)]:
        run = cfg.with_(Lq=lq, Lk=lk)
        ts = run.inputs(seed=lq)
        out, stats = emulate(ir_text, run, ts)
        err = (out.double() - run.reference(ts)).abs().max().item()
        assert err < run.tolerance(), (precision, lq, lk, err)
        assert stats.get("tf32.unrounded", 0) == 0

"""The emulator's TF32 pieces against numpy and the PTX ISA text:
cvt.rna.tf32.f32 rounding, mma.sync m16n8k8 .tf32 fragments, and the
accounting of operands that were not rounded to TF32."""
import numpy as np
import pytest

from attncc.gpu_emulator import mma, ptx_isa as isa
from attncc.gpu_emulator.machine import State


@pytest.mark.parametrize("bits,expected", [
    (0x3F801000, 0x3F802000),   # exactly half an ulp: ties away from zero
    (0xBF801000, 0xBF802000),   # the same for a negative value
    (0x3F800FFF, 0x3F800000),   # below half: down
    (0x3F801001, 0x3F802000),   # above half: up
    (0x3F803000, 0x3F804000),   # tie with an odd TF32 mantissa: away (not to even)
    (0x7F7FFFFF, 0x7F800000),   # past the largest TF32: Inf
    (0x7F800000, 0x7F800000),   # Inf stays
    (0x7FC00001, 0x7FFFFFFF),   # NaN: canonical NaN
    (0x00000FFF, 0x00000000),   # subnormal, below half
])
def test_cvt_rna_tf32(bits, expected):
    out = isa.cvt_rna_tf32(np.array([bits], np.uint32))[0]
    assert int(out) == expected, hex(int(out))


def test_cvt_rna_tf32_error_is_half_an_ulp_of_10_mantissa_bits():
    x = np.random.default_rng(0).standard_normal(10000).astype(np.float32)
    r = isa.cvt_rna_tf32(x.view(np.uint32)).view(np.float32)
    rel = np.abs(r.astype(np.float64) - x) / np.abs(x)
    assert rel.max() <= 2.0 ** -11 * (1 + 1e-6)
    assert rel.max() > 2.0 ** -12          # it does round
    assert np.all((r.view(np.uint32) & 0x1FFF) == 0)


def _fragments(A, B, C):
    """Per-lane registers of two warps from whole matrices, by the ISA tables."""
    fa, fb, fc = np.zeros((64, 4)), np.zeros((64, 2)), np.zeros((64, 4))
    for w in range(2):
        for lane in range(32):
            for i in range(4):
                fa[32 * w + lane, i] = A[w][isa.mma_tf32_a(lane, i)]
                fc[32 * w + lane, i] = C[w][isa.mma_c(lane, i)]
            for i in range(2):
                fb[32 * w + lane, i] = B[w][isa.mma_tf32_b(lane, i)]
    return fa.astype(np.float32), fb.astype(np.float32), fc.astype(np.float32)


def test_mma_m16n8k8_tf32_is_a_16x8x8_matrix_product():
    rng = np.random.default_rng(1)
    A, B, C = rng.standard_normal((2, 16, 8)), rng.standard_normal((2, 8, 8)), rng.standard_normal((2, 16, 8))
    st = State(T=64, env={}, mask=np.ones(64, bool))
    D = mma.MmaOps._mma_tf32(st, *_fragments(A, B, C))
    ref = A @ B + C
    for w in range(2):
        for lane in range(32):
            for i in range(4):
                assert abs(D[32 * w + lane, i] - ref[w][isa.mma_c(lane, i)]) < 1e-5


def test_tf32_operands_drop_the_low_bits_and_count_unrounded_ones():
    st = State(T=32, env={}, mask=np.ones(32, bool))
    x = np.full(32, 0x3F800FFF, np.int64)            # 1 + 4095 * 2^-23: not a TF32 value
    v = mma.MmaOps._tf32_operand(st, x)
    assert np.all(v == 1.0) and st.stats["tf32.unrounded"] == 32
    st2 = State(T=32, env={}, mask=np.ones(32, bool))
    mma.MmaOps._tf32_operand(st2, np.full(32, 0x3F802000, np.int64))
    assert "tf32.unrounded" not in st2.stats

"""The @triton.jit kernels of attncc.reference.triton_attention: a
tutorial-style fused attention forward (moved here from bench/triton_attention.py).

One program per (query block, batch x head), Q kept in registers, an online
softmax in base 2, and for causal attention two passes over the keys
(off-diagonal blocks without masks, then the diagonal block with the mask).
Tensors are contiguous [batch, heads, seq, head_dim] with one sequence length.
INPUT_PRECISION is tl.dot's (fp32 inputs: "tf32", "tf32x3" or "ieee"; None:
Triton's default), so that a comparison runs both compilers at one precision.

This module imports triton at its top (attncc imports it only when Triton is
used) and defines the kernels at module level, so that Triton's interpreter
(TRITON_INTERPRET=1) resolves the inner call.
"""
import triton
import triton.language as tl


@triton.jit
def _attn_block(acc, l_i, m_i, q, K, V, base, stride_m, start_m, qk_scale, lo, hi, N_CTX,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                MASKED: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        cols = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(K + base + cols[None, :] * stride_m + offs_d[:, None],
                    mask=cols[None, :] < N_CTX, other=0.0)
        qk = tl.dot(q, k, input_precision=INPUT_PRECISION)
        if MASKED:
            keep = (offs_m[:, None] >= cols[None, :]) & (cols[None, :] < N_CTX)
            qk = qk * qk_scale + tl.where(keep, 0.0, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            qk = qk - m_new[:, None]
        else:
            m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            qk = qk * qk_scale - m_new[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = tl.load(V + base + cols[:, None] * stride_m + offs_d[None, :],
                    mask=cols[:, None] < N_CTX, other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=INPUT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def attn_fwd(Q, K, V, Out, sm_scale, stride_h, stride_m, N_CTX,
             HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr = None):
    start_m = tl.program_id(0)
    base = tl.program_id(1).to(tl.int64) * stride_h
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + base + offs_m[:, None] * stride_m + offs_d[None, :],
                mask=offs_m[:, None] < N_CTX, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    qk_scale = sm_scale * 1.44269504  # exp(x) = exp2(x * log2(e))
    if CAUSAL:
        # Blocks left of the diagonal need no mask; the diagonal block does.
        acc, l_i, m_i = _attn_block(acc, l_i, m_i, q, K, V, base, stride_m, start_m, qk_scale,
                                    0, start_m * BLOCK_M, N_CTX, HEAD_DIM, BLOCK_M, BLOCK_N, False,
                                    INPUT_PRECISION)
        acc, l_i, m_i = _attn_block(acc, l_i, m_i, q, K, V, base, stride_m, start_m, qk_scale,
                                    start_m * BLOCK_M, tl.minimum((start_m + 1) * BLOCK_M, N_CTX),
                                    N_CTX, HEAD_DIM, BLOCK_M, BLOCK_N, True,
                                    INPUT_PRECISION)
    else:
        acc, l_i, m_i = _attn_block(acc, l_i, m_i, q, K, V, base, stride_m, start_m, qk_scale,
                                    0, N_CTX, N_CTX, HEAD_DIM, BLOCK_M, BLOCK_N, False,
                                    INPUT_PRECISION)
    acc = acc / l_i[:, None]
    tl.store(Out + base + offs_m[:, None] * stride_m + offs_d[None, :], acc.to(Out.dtype.element_ty),
             mask=offs_m[:, None] < N_CTX)

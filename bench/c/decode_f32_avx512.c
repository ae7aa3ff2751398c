/* A hand-written fp32 decode attention kernel (AVX-512F intrinsics, OpenMP):
 * the yardstick of bench/decode_yardstick.py, not part of attncc.
 *
 * One query token, GQA group of R = 4 query heads per KV head, D = 128:
 * q [P][R][D], K/V [P][L][D] (P = batch x KV heads), out [P][R][D]. Each grid
 * point runs flash-decoding's loop over 64-key blocks: Q.K^T one key row at a
 * time (4 x 8 FMAs and a lane reduction per head), an online softmax with a
 * vector exp, P.V as two sweeps of 4 x 4 accumulators. With `prefetch`, the
 * key row 16 rows ahead is prefetched into L2 (prefetcht1) in the Q.K^T loop
 * and the value row 16 ahead in the first P.V sweep: the software prefetch
 * attncc's kernels emit (passes/CpuMatmul.cpp). It answers one question: how
 * much of a plain streaming read of the same bytes does a decode kernel
 * written by hand reach on this host, beside attncc's.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#define D 128
#define BN 64
#define R 4
#define AHEAD 16
#include "decode_common.h"

static inline __m512 vexp(__m512 x) {  /* Cephes expf, |rel err| < 2e-7 */
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), 0);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
  __m512 p = _mm512_set1_ps(exp_poly[0]);
  for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(exp_poly[i]));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

static void point(const float *q, const float *K, const float *V, float *out, int L,
                  int prefetch, float scale) {
  __m512 o[R][8];
  float m[R], l[R], p[R][BN] __attribute__((aligned(64)));
  for (int r = 0; r < R; r++) {
    m[r] = -INFINITY; l[r] = 0;
    for (int c = 0; c < 8; c++) o[r][c] = _mm512_setzero_ps();
  }
  const float *Klast = K + (size_t)(L - 1) * D, *Vlast = V + (size_t)(L - 1) * D;
  for (int n0 = 0; n0 < L; n0 += BN) {
    int nb = L - n0 < BN ? L - n0 : BN;
    const float *Kb = K + (size_t)n0 * D, *Vb = V + (size_t)n0 * D;
    for (int k = 0; k < nb; k++) {
      const float *kr = Kb + (size_t)k * D;
      if (prefetch) prefetch_row(kr + AHEAD * D, Klast);
      __m512 a[R];
      for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
      for (int c = 0; c < 8; c++) {
        __m512 kv = _mm512_loadu_ps(kr + 16 * c);
        for (int r = 0; r < R; r++) a[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * D + 16 * c), kv, a[r]);
      }
      for (int r = 0; r < R; r++) p[r][k] = _mm512_reduce_add_ps(a[r]) * scale;
    }
    for (int k = nb; k < BN; k++)
      for (int r = 0; r < R; r++) p[r][k] = -INFINITY;
    for (int r = 0; r < R; r++) {
      __m512 mv = _mm512_max_ps(_mm512_max_ps(_mm512_load_ps(p[r]), _mm512_load_ps(p[r] + 16)),
                                _mm512_max_ps(_mm512_load_ps(p[r] + 32), _mm512_load_ps(p[r] + 48)));
      float mx = _mm512_reduce_max_ps(mv);
      if (m[r] > mx) mx = m[r];
      __m512 mxv = _mm512_set1_ps(mx), sv = _mm512_setzero_ps();
      for (int c = 0; c < 4; c++) {
        __m512 e = vexp(_mm512_sub_ps(_mm512_load_ps(p[r] + 16 * c), mxv));
        _mm512_store_ps(p[r] + 16 * c, e);
        sv = _mm512_add_ps(sv, e);
      }
      float corr = expf(m[r] - mx);
      l[r] = l[r] * corr + _mm512_reduce_add_ps(sv);
      m[r] = mx;
      for (int c = 0; c < 8; c++) o[r][c] = _mm512_mul_ps(o[r][c], _mm512_set1_ps(corr));
    }
    for (int h = 0; h < 2; h++)
      for (int k = 0; k < nb; k++) {
        const float *vr = Vb + (size_t)k * D + 64 * h;
        if (prefetch && h == 0) prefetch_row(Vb + (size_t)(k + AHEAD) * D, Vlast);
        __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
        __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
        for (int r = 0; r < R; r++) {
          __m512 pb = _mm512_set1_ps(p[r][k]);
          o[r][4 * h] = _mm512_fmadd_ps(pb, v0, o[r][4 * h]);
          o[r][4 * h + 1] = _mm512_fmadd_ps(pb, v1, o[r][4 * h + 1]);
          o[r][4 * h + 2] = _mm512_fmadd_ps(pb, v2, o[r][4 * h + 2]);
          o[r][4 * h + 3] = _mm512_fmadd_ps(pb, v3, o[r][4 * h + 3]);
        }
      }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < 8; c++)
      _mm512_storeu_ps(out + r * D + 16 * c, _mm512_mul_ps(o[r][c], _mm512_set1_ps(1.0f / l[r])));
}

void decode(const float *q, const float *K, const float *V, float *out, int P, int L,
            int prefetch, float scale, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int pt = 0; pt < P; pt++)
    point(q + (size_t)pt * R * D, K + (size_t)pt * L * D, V + (size_t)pt * L * D,
          out + (size_t)pt * R * D, L, prefetch, scale);
}

/* A hand-written fp32 decode attention kernel (AVX2 + FMA intrinsics, OpenMP):
 * the AVX2 yardstick of bench/decode_yardstick.py, not part of attncc.
 *
 * Same problem and interface as decode_f32_avx512.c: one query token, GQA group
 * of R = 4 query heads per KV head, D = 128, q [P][R][D], K/V [P][L][D],
 * out [P][R][D]. With 16 ymm registers the blocking differs: Q.K^T takes two key
 * rows at a time (4 x 2 accumulators, q's vectors loaded from L1, an hadd tree
 * per 4 x 2 block), the online softmax a vector exp, and P.V runs as sweeps of
 * 2 of D's 16 vectors over the block's keys with 4 x 2 accumulators kept in a
 * row buffer between sweeps (the first sweep streams V, the others hit L1/L2).
 * With `prefetch`, the key rows AHEAD rows ahead are prefetched into L2
 * (prefetcht1) in the Q.K^T loop and the value row AHEAD ahead in the first P.V
 * sweep, as attncc's kernels do. BN (keys per block) and AHEAD can be set with
 * -D to try other shapes of the same loop.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#define D 128
#ifndef BN
#define BN 64
#endif
#ifndef AHEAD
#define AHEAD 16
#endif
#define R 4
#define NV (D / 8)
#define VG 2 /* vectors of D per P.V sweep */
#include "decode_common.h"

static inline __m256 vexp(__m256 x) { /* Cephes expf, |rel err| < 2e-7 */
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
  __m256 p = _mm256_set1_ps(exp_poly[0]);
  for (int i = 1; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(exp_poly[i]));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

/* [r0k0, r0k1, r1k0, r1k1] from rows r0, r1's accumulators of keys k0, k1. */
static inline __m128 dots2x2(__m256 a00, __m256 a01, __m256 a10, __m256 a11) {
  __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a00, a01), _mm256_hadd_ps(a10, a11));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

static void point(const float *q, const float *K, const float *V, float *out, int L,
                  int prefetch, float scale) {
  float o[R][D] __attribute__((aligned(32)));
  float m[R], l[R], corr[R], p[R][BN] __attribute__((aligned(32)));
  for (int r = 0; r < R; r++) {
    m[r] = -INFINITY; l[r] = 0;
    for (int d = 0; d < D; d++) o[r][d] = 0;
  }
  const float *Klast = K + (size_t)(L - 1) * D, *Vlast = V + (size_t)(L - 1) * D;
  for (int n0 = 0; n0 < L; n0 += BN) {
    int nb = L - n0 < BN ? L - n0 : BN;
    const float *Kb = K + (size_t)n0 * D, *Vb = V + (size_t)n0 * D;
    int k = 0;
    for (; k + 1 < nb; k += 2) {
      const float *k0 = Kb + (size_t)k * D, *k1 = k0 + D;
      if (prefetch) {
        prefetch_row(k0 + AHEAD * D, Klast);
        prefetch_row(k1 + AHEAD * D, Klast);
      }
      __m256 a[R][2];
      for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
      for (int c = 0; c < NV; c++) {
        __m256 kv0 = _mm256_loadu_ps(k0 + 8 * c), kv1 = _mm256_loadu_ps(k1 + 8 * c);
        for (int r = 0; r < R; r++) {
          __m256 qv = _mm256_loadu_ps(q + r * D + 8 * c);
          a[r][0] = _mm256_fmadd_ps(qv, kv0, a[r][0]);
          a[r][1] = _mm256_fmadd_ps(qv, kv1, a[r][1]);
        }
      }
      __m128 s01 = _mm_mul_ps(dots2x2(a[0][0], a[0][1], a[1][0], a[1][1]), _mm_set1_ps(scale));
      __m128 s23 = _mm_mul_ps(dots2x2(a[2][0], a[2][1], a[3][0], a[3][1]), _mm_set1_ps(scale));
      float t[8] __attribute__((aligned(16)));
      _mm_store_ps(t, s01); _mm_store_ps(t + 4, s23);
      for (int r = 0; r < R; r++) { p[r][k] = t[2 * r]; p[r][k + 1] = t[2 * r + 1]; }
    }
    for (; k < nb; k++) { /* an odd last key */
      const float *k0 = Kb + (size_t)k * D;
      for (int r = 0; r < R; r++) {
        __m256 a = _mm256_setzero_ps();
        for (int c = 0; c < NV; c++)
          a = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + 8 * c), _mm256_loadu_ps(k0 + 8 * c), a);
        p[r][k] = hsum(a) * scale;
      }
    }
    for (k = nb; k < BN; k++)
      for (int r = 0; r < R; r++) p[r][k] = -INFINITY;
    for (int r = 0; r < R; r++) {
      __m256 mv = _mm256_load_ps(p[r]);
      for (int c = 1; c < BN / 8; c++) mv = _mm256_max_ps(mv, _mm256_load_ps(p[r] + 8 * c));
      float mx = hmax(mv);
      if (m[r] > mx) mx = m[r];
      __m256 mxv = _mm256_set1_ps(mx), sv = _mm256_setzero_ps();
      for (int c = 0; c < BN / 8; c++) {
        __m256 e = vexp(_mm256_sub_ps(_mm256_load_ps(p[r] + 8 * c), mxv));
        _mm256_store_ps(p[r] + 8 * c, e);
        sv = _mm256_add_ps(sv, e);
      }
      corr[r] = expf(m[r] - mx);
      l[r] = l[r] * corr[r] + hsum(sv);
      m[r] = mx;
    }
    for (int g = 0; g < NV / VG; g++) {
      __m256 acc[R][VG];
      for (int r = 0; r < R; r++)
        for (int j = 0; j < VG; j++)
          acc[r][j] = _mm256_mul_ps(_mm256_load_ps(o[r] + 8 * (VG * g + j)), _mm256_set1_ps(corr[r]));
      for (int kk = 0; kk < nb; kk++) {
        const float *vr = Vb + (size_t)kk * D + 8 * VG * g;
        if (prefetch && g == 0) prefetch_row(Vb + (size_t)(kk + AHEAD) * D, Vlast);
        __m256 v0 = _mm256_loadu_ps(vr), v1 = _mm256_loadu_ps(vr + 8);
        for (int r = 0; r < R; r++) {
          __m256 pb = _mm256_broadcast_ss(&p[r][kk]);
          acc[r][0] = _mm256_fmadd_ps(pb, v0, acc[r][0]);
          acc[r][1] = _mm256_fmadd_ps(pb, v1, acc[r][1]);
        }
      }
      for (int r = 0; r < R; r++)
        for (int j = 0; j < VG; j++) _mm256_store_ps(o[r] + 8 * (VG * g + j), acc[r][j]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++)
      _mm256_storeu_ps(out + r * D + 8 * c,
                       _mm256_mul_ps(_mm256_load_ps(o[r] + 8 * c), _mm256_set1_ps(1.0f / l[r])));
}

void decode(const float *q, const float *K, const float *V, float *out, int P, int L,
            int prefetch, float scale, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int pt = 0; pt < P; pt++)
    point(q + (size_t)pt * R * D, K + (size_t)pt * L * D, V + (size_t)pt * L * D,
          out + (size_t)pt * R * D, L, prefetch, scale);
}

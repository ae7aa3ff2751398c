/* What the hand-written decode kernels of bench/decode_yardstick.py share
 * (decode_f32_avx512.c, decode_f32_avx2.c): the constants of their vector exp
 * and the software prefetch of a K/V row. Include after defining D. */
#ifndef ATTNCC_BENCH_DECODE_COMMON_H
#define ATTNCC_BENCH_DECODE_COMMON_H
#include <immintrin.h>

/* Cephes expf (|rel err| < 2e-7): n = round(x log2 e), r = x - n ln 2 in two
 * parts, exp(r) = 1 + r + r^2 (c0 r^5 + ... + c5), then scaled by 2^n. */
#define EXP_LOG2E 1.44269504f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440e-4f
static const float exp_poly[6] = {1.9875691500E-4f, 1.3981999507E-3f, 8.3334519073E-3f,
                                  4.1665795894E-2f, 1.6666665459E-1f, 5.0000001201E-1f};

/* The row of D floats at `row` (clamped to `last`) into L2 (prefetcht1), one
 * prefetch per 64-byte line, as attncc's kernels prefetch K/V rows. */
static inline void prefetch_row(const float *row, const float *last) {
  const char *c = (const char *)(row < last ? row : last);
  for (int i = 0; i < D * 4; i += 64) _mm_prefetch(c + i, _MM_HINT_T1);
}
#endif

/* How cheaply can an fp8 (E4M3) KV cache feed vdpbf16ps? A probe, not part of attncc
 * (docs/quantized-kv.md, docs/benchmarks.md twenty-eighth session). One thread, 512 key
 * rows of D 128 in L2, 4 query rows (a GQA group): ns per key row of Q.K^T, five ways:
 *  f32    : byte -> f16 bits (sext, shl 7, and) -> vcvtph2ps -> 4 FMAs per 16 elements
 *           (what attncc's kernels do for fp8 K/V today, CpuEmitter::fp8ToF32)
 *  cvtbf  : the same to f32, then vcvtne2ps2bf16 -> 4 vdpbf16ps per 32 elements (the
 *           pairs form tried and not adopted)
 *  table  : AVX-512 VBMI: the bf16 high and low bytes of each value looked up by its low
 *           7 bits (two vpermi2b over 128-byte tables), the sign or'ed in, bytes
 *           interleaved in-lane (vpunpck{l,h}bw; the query permuted once to that order)
 *  table2 : the same lookups, the words assembled in natural order by two vpermt2b (no
 *           query permutation): 5 byte ops per 64 values, exact
 *  bf16   : bf16 key rows as stored (twice the bytes)
 * Needs AVX-512-BF16 and VBMI (Zen 4, Sapphire Rapids; not Cooper Lake):
 *   gcc -O3 -march=native bench/c/fp8_widen_probe.c -lm -o /tmp/fp8_widen && /tmp/fp8_widen
 * Zen 4 (znver4), 2026-12-07: f32 10.6, cvtbf 11.0, table 6.9, table2 6.6, bf16 6.5 ns:
 * the table route makes fp8 as cheap as bf16 per key while it reads half the bytes. */
#include <immintrin.h>
#if !defined(__AVX512VBMI__) || !defined(__AVX512BF16__)
#error "needs AVX-512 VBMI and BF16 (compile with -march=native on such a host)"
#endif
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <math.h>
#define D 128
#define R 4
#define L 512
static uint8_t k8[L * D] __attribute__((aligned(64)));
static uint16_t kb[L * D] __attribute__((aligned(64)));
static float qf[R][D] __attribute__((aligned(64)));
static uint16_t qb[R][D] __attribute__((aligned(64))), qp[R][D] __attribute__((aligned(64)));
static uint8_t thi[128] __attribute__((aligned(64))), tlo[128] __attribute__((aligned(64)));
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static float e4m3(uint8_t b) {
  int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  float v = e ? ldexpf(1 + m / 8.f, e - 7) : ldexpf(m / 8.f, -6);
  return s ? -v : v;
}
static uint16_t bf(float f) { uint32_t u; memcpy(&u, &f, 4); return u >> 16; }  /* exact here */
static float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

__attribute__((noinline)) static void f32(float *out) {
  __m512 acc[R] = {0};
  const __m256i mask = _mm256_set1_epi16((short)0xBF80);
  for (int j = 0; j < L; ++j)
    for (int d = 0; d < D; d += 16) {
      __m256i w = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)&k8[j * D + d]));
      w = _mm256_and_si256(_mm256_slli_epi16(w, 7), mask);
      __m512 kv = _mm512_cvtph_ps(w);
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_load_ps(&qf[r][d]), kv, acc[r]);
    }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]) * 256.f;
}
__attribute__((noinline)) static void cvtbf(float *out) {
  __m512 acc[R] = {0};
  const __m512i mask = _mm512_set1_epi16((short)0xBF80);
  for (int j = 0; j < L; ++j)
    for (int d = 0; d < D; d += 32) {
      __m512i w = _mm512_cvtepi8_epi16(_mm256_load_si256((const __m256i *)&k8[j * D + d]));
      w = _mm512_and_si512(_mm512_slli_epi16(w, 7), mask);
      __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(w));
      __m512 hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(w, 1));
      __m512bh kv = _mm512_cvtne2ps_pbh(hi, lo);
      for (int r = 0; r < R; ++r)
        acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_load_si512(&qb[r][d]), kv);
    }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]) * 256.f;
}
/* The byte-table widening shared by `table` and `table2`: the bf16 high and low bytes
 * of the 64 values of x (vpermi2b by the low 7 bits), the sign or'ed into the high
 * ones; `natural` assembles the words in value order (two vpermt2b), otherwise in
 * vpunpck{l,h}bw's in-lane order (the query permuted to match, qp). */
static void table_dots(float *out, int natural) {
  __m512 acc[R] = {0};
  const __m512i hA = _mm512_load_si512(thi), hB = _mm512_load_si512(thi + 64);
  const __m512i lA = _mm512_load_si512(tlo), lB = _mm512_load_si512(tlo + 64);
  const __m512i sign = _mm512_set1_epi8((char)0x80);
  uint8_t a[64] __attribute__((aligned(64))), b[64] __attribute__((aligned(64)));
  for (int i = 0; i < 32; ++i) {   /* word i: (l[i], h[i]); 64 + i selects h */
    a[2 * i] = i; a[2 * i + 1] = 64 + i; b[2 * i] = 32 + i; b[2 * i + 1] = 96 + i;
  }
  const __m512i i0 = _mm512_load_si512(a), i1 = _mm512_load_si512(b);
  uint16_t (*q)[D] = natural ? qb : qp;
  for (int j = 0; j < L; ++j)
    for (int d = 0; d < D; d += 64) {
      __m512i x = _mm512_load_si512(&k8[j * D + d]);
      __m512i h = _mm512_permutex2var_epi8(hA, x, hB);   /* index bits 0..6 */
      __m512i l = _mm512_permutex2var_epi8(lA, x, lB);
      h = _mm512_ternarylogic_epi32(h, x, sign, 0xF8);   /* h | (x & 0x80) */
      __m512bh w0 = (__m512bh)(natural ? _mm512_permutex2var_epi8(l, i0, h)
                                       : _mm512_unpacklo_epi8(l, h));
      __m512bh w1 = (__m512bh)(natural ? _mm512_permutex2var_epi8(l, i1, h)
                                       : _mm512_unpackhi_epi8(l, h));
      for (int r = 0; r < R; ++r) {
        acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_load_si512(&q[r][d]), w0);
        acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_load_si512(&q[r][d + 32]), w1);
      }
    }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]);
}
__attribute__((noinline)) static void table(float *out) { table_dots(out, 0); }
__attribute__((noinline)) static void table2(float *out) { table_dots(out, 1); }
__attribute__((noinline)) static void bf16(float *out) {
  __m512 acc[R] = {0};
  for (int j = 0; j < L; ++j)
    for (int d = 0; d < D; d += 32) {
      __m512bh kv = (__m512bh)_mm512_load_si512(&kb[j * D + d]);
      for (int r = 0; r < R; ++r)
        acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_load_si512(&qb[r][d]), kv);
    }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]);
}
int main(void) {
  uint32_t s = 12345;
  for (int i = 0; i < L * D; ++i) {
    s = s * 1103515245u + 12345u;
    uint8_t b = (s >> 16) & 0xFF;
    if ((b & 0x7F) == 0x7F) b ^= 1;                    /* no NaN */
    k8[i] = b; kb[i] = bf(e4m3(b));
  }
  for (int r = 0; r < R; ++r)
    for (int d = 0; d < D; ++d) {
      s = s * 1103515245u + 12345u;
      float v = ((s >> 8) & 0xFFFF) / 65536.f - 0.5f;
      qb[r][d] = bf(v); uint32_t u = (uint32_t)qb[r][d] << 16; memcpy(&qf[r][d], &u, 4);
    }
  /* the unpack order: word i of w0 is element 16 (i / 8) + i % 8, of w1 that + 8 */
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < D; c += 64)
      for (int i = 0; i < 32; ++i) {
        qp[r][c + i] = qb[r][c + 16 * (i / 8) + i % 8];
        qp[r][c + 32 + i] = qb[r][c + 16 * (i / 8) + 8 + i % 8];
      }
  for (int b = 0; b < 128; ++b) { uint16_t v = bf(e4m3(b)); thi[b] = v >> 8; tlo[b] = v & 0xFF; }
  enum { N = 5 };
  void (*fn[N])(float *) = {f32, cvtbf, table, table2, bf16};
  const char *name[N] = {"f32", "cvtbf", "table", "table2", "bf16"};
  float out[N][R]; double best[N] = {1e9, 1e9, 1e9, 1e9, 1e9};
  for (int round = 0; round < 30; ++round)
    for (int v = 0; v < N; ++v) {
      double t = now();
      for (int it = 0; it < 50; ++it) fn[v](out[v]);
      t = (now() - t) / 50;
      if (t < best[v]) best[v] = t;
    }
  for (int v = 0; v < N; ++v)
    printf("%-6s %6.2f ns a key row (4 x 128 dot products)  sums %.6g %.6g\n", name[v],
           best[v] / L * 1e9, out[v][0], out[v][3]);
  return 0;
}

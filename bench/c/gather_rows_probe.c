/* What does gathering paged K rows one by one cost on this CPU? A probe, not part of
 * attncc (docs/ragged-paged.md, docs/benchmarks.md twenty-ninth session). Page size 1,
 * NHD: one 2 KiB page per token (8 KV heads x 128 bf16), pages in shuffled order; for each
 * head, 64-row blocks in 16-row chunks, as attncc's gathered decode walks them. ns per
 * 256-byte row, one thread, best of 30, five ways:
 *  copy16k : each row copied (8 x 32-byte loads and stores) into a 64-row [64, 128] tile
 *            (16 KiB, attncc's gather_tile today), the tile then read once (the products)
 *  copy4k  : the same into a 16-row tile (4 KiB) read after each chunk
 *  load    : the rows only loaded (4 x 64-byte loads, summed): reading them in place
 * each with the next block's rows prefetched into L2 one chunk at a time (prefetcht2, as
 * attncc does), and copy4k also without. Usage (any x86-64 with AVX-512F):
 *   gcc -O2 -march=native bench/c/gather_rows_probe.c -o /tmp/gather && /tmp/gather [S]
 * S = tokens (2048: K of 8 heads 4 MiB, in L3; 256: in L2).
 * Zen 4 (znver4), 2026-12-07, three runs, S 2048: copy16k 8.0-8.2, copy4k 7.2-7.3 (no
 * prefetch 6.1-6.4), load 5.1-5.2 ns; S 256 (in L2) 7.7, 6.9 (5.4), 4.7: the cost is each
 * row's way into L1 and the copies' stores into a tile (16 KiB, 32 with V's: all of L1),
 * not DRAM; attncc's page-1 decode gathers K and V rows at ~7.3 ns each in cache. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define H 8
#define ROW 256 /* bytes: D 128 bf16 */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

enum { COPY16K, COPY4K, LOAD };

static double run(const char *cache, const int *table, int S, char *tile, int mode, int pf,
                  float *sink) {
  double best = 1e9;
  for (int rep = 0; rep < 30; rep++) {
    __m512 acc = _mm512_setzero_ps();
    double t0 = now();
    for (int h = 0; h < H; h++)
      for (int b = 0; b < S; b += 64) {
        for (int c = 0; c < 64; c += 16) {
          if (pf)
            for (int r = 0; r < 16; r++) {
              int t = b + 64 + c + r < S ? b + 64 + c + r : S - 1;
              const char *p = cache + ((size_t)table[t] * H + h) * ROW;
              for (int l = 0; l < ROW; l += 64)
                _mm_prefetch(p + l, _MM_HINT_T2);
            }
          for (int r = 0; r < 16; r++) {
            const char *p = cache + ((size_t)table[b + c + r] * H + h) * ROW;
            if (mode == LOAD) {
              for (int l = 0; l < ROW; l += 64)
                acc = _mm512_add_ps(acc, _mm512_loadu_ps((const float *)(p + l)));
              continue;
            }
            char *d = tile + (mode == COPY4K ? r : c + r) * ROW;
            for (int l = 0; l < ROW; l += 32)
              _mm256_store_si256((__m256i *)(d + l), _mm256_loadu_si256((const __m256i *)(p + l)));
          }
          if (mode == COPY4K)
            for (int r = 0; r < 16; r++)
              for (int l = 0; l < ROW; l += 64)
                acc = _mm512_add_ps(acc, _mm512_load_ps((const float *)(tile + r * ROW + l)));
        }
        if (mode == COPY16K)
          for (int r = 0; r < 64; r++)
            for (int l = 0; l < ROW; l += 64)
              acc = _mm512_add_ps(acc, _mm512_load_ps((const float *)(tile + r * ROW + l)));
      }
    double dt = now() - t0;
    if (dt < best)
      best = dt;
    *sink += _mm512_reduce_add_ps(acc);
  }
  return best * 1e9 / ((double)S * H);
}

int main(int argc, char **argv) {
  int S = argc > 1 ? atoi(argv[1]) : 2048;
  if (S < 64 || S % 64) {
    fprintf(stderr, "S: a multiple of 64\n");
    return 1;
  }
  char *cache, *tile;
  if (posix_memalign((void **)&cache, 4096, (size_t)S * H * ROW) ||
      posix_memalign((void **)&tile, 4096, 64 * ROW))
    return 1;
  memset(cache, 0, (size_t)S * H * ROW);
  int *table = malloc(sizeof(int) * S);
  for (int i = 0; i < S; i++)
    table[i] = i;
  srand(0);
  for (int i = S - 1; i > 0; i--) {
    int j = rand() % (i + 1), t = table[i];
    table[i] = table[j];
    table[j] = t;
  }
  float sink = 0;
  printf("S %d: ns per 256-byte row, 1 thread\n", S);
  printf("copy16k %.2f\n", run(cache, table, S, tile, COPY16K, 1, &sink));
  printf("copy4k  %.2f\n", run(cache, table, S, tile, COPY4K, 1, &sink));
  printf("copy4k, no prefetch %.2f\n", run(cache, table, S, tile, COPY4K, 0, &sink));
  printf("load    %.2f\n", run(cache, table, S, tile, LOAD, 1, &sink));
  return sink == 12345.f;
}

/* Reads alone, no arithmetic: what this host gives a decode kernel's K/V
 * reads at page size 1 (issue 12), against the same bytes laid out
 * contiguously. Not part of attncc; a yardstick for bench/paged_attention.py.
 *
 * bf16 B8 Hkv8 D128 KV 4096 (256-byte rows), K and V caches of 64 MiB each,
 * 6 copies cycled so every pass reads DRAM; pages of one token in a shuffled
 * order (NHD: a page holds the 8 heads' rows, 2 KiB). Modes, in rotation:
 *   contig            [B, H, L, D]: per (sequence, head), 64 K rows then 64 V rows
 *   paged1 per head   the same order of rows, each found through the block table
 *   paged1 heads in   per sequence, each page's 8 rows at once (2 KiB reads)
 *   paged1 +prefetch  per head, the next 64-row block's rows prefetched (prefetcht1)
 *                     before each block, as attncc's gathers do
 * Prints the median GB/s of each mode over 15 passes. AVX-512F or AVX2.
 *
 *   cc -O3 -march=native -fopenmp bench/c/paged_read.c -o /tmp/paged_read
 *   OMP_NUM_THREADS=2 /tmp/paged_read
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <stdint.h>
#include <string.h>
#define B 8
#define H 8
#define L 4096
#define ROW 256   /* bf16 D128 bytes */
#define NC 6
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#ifdef __AVX512F__ /* 64-byte vectors; AVX2 hosts read the same bytes with 32-byte ones */
typedef __m512i vec;
#define VZERO _mm512_setzero_si512
#define VSUM _mm512_reduce_add_epi32
static inline vec rd(const char*p, vec a){ return _mm512_add_epi32(_mm512_add_epi32(a,_mm512_loadu_si512(p)),_mm512_loadu_si512(p+64)) ; }
static inline vec row(const char*p, vec a){ a=rd(p,a); return rd(p+128,a); }
#else
typedef __m256i vec;
#define VZERO _mm256_setzero_si256
static inline int VSUM(vec a){ int x[8]; _mm256_storeu_si256((vec*)x,a); return x[0]+x[1]+x[2]+x[3]+x[4]+x[5]+x[6]+x[7]; }
static inline vec rd(const char*p, vec a){ return _mm256_add_epi32(_mm256_add_epi32(a,_mm256_loadu_si256((const vec*)p)),_mm256_loadu_si256((const vec*)(p+32))); }
static inline vec row(const char*p, vec a){ a=rd(p,a); a=rd(p+64,a); a=rd(p+128,a); return rd(p+192,a); }
#endif
int main(){
  size_t per=(size_t)B*H*L*ROW; /* one cache (K or V), 64 MiB */
  char *K[NC],*V[NC]; for(int c=0;c<NC;c++){K[c]=aligned_alloc(4096,per);V[c]=aligned_alloc(4096,per); for(size_t i=0;i<per;i+=8){*(uint64_t*)(K[c]+i)=i;*(uint64_t*)(V[c]+i)=i*3;}}
  int *tab=malloc(sizeof(int)*B*L); for(int i=0;i<B*L;i++)tab[i]=i; srand(1); for(int i=B*L-1;i>0;i--){int j=rand()%(i+1);int t=tab[i];tab[i]=tab[j];tab[j]=t;}
  const char*names[4]={"contig","paged1 per head","paged1 heads in","paged1 +prefetch"};
  double res[4][16]; int nres[4]={0}; long check=0;
  for(int it=0;it<4*16;it++){ int mode=it%4, c=it%NC; int sink=0; double t=now();
    #pragma omp parallel for schedule(static) reduction(+:sink)
    for(int pt=0;pt<(mode==2?B:B*H);pt++){ vec a=VZERO();
      if(mode==0){ const char*k=K[c]+(size_t)pt*L*ROW,*v=V[c]+(size_t)pt*L*ROW; for(int n0=0;n0<L;n0+=64){for(int t=n0;t<n0+64;t++)a=row(k+(size_t)t*ROW,a); for(int t=n0;t<n0+64;t++)a=row(v+(size_t)t*ROW,a);} }
      else if(mode==1||mode==3){ int b=pt/H,h=pt%H; for(int n0=0;n0<L;n0+=64){
          if(mode==3&&n0+64<L) for(int t=n0+64;t<n0+128;t++){size_t o=((size_t)tab[b*L+t]*H+h)*ROW; _mm_prefetch(K[c]+o,_MM_HINT_T1);_mm_prefetch(K[c]+o+64,_MM_HINT_T1);_mm_prefetch(K[c]+o+128,_MM_HINT_T1);_mm_prefetch(K[c]+o+192,_MM_HINT_T1);}
          for(int t=n0;t<n0+64;t++)a=row(K[c]+((size_t)tab[b*L+t]*H+h)*ROW,a);
          if(mode==3&&n0+64<L) for(int t=n0+64;t<n0+128;t++){size_t o=((size_t)tab[b*L+t]*H+h)*ROW; _mm_prefetch(V[c]+o,_MM_HINT_T1);_mm_prefetch(V[c]+o+64,_MM_HINT_T1);_mm_prefetch(V[c]+o+128,_MM_HINT_T1);_mm_prefetch(V[c]+o+192,_MM_HINT_T1);}
          for(int t=n0;t<n0+64;t++)a=row(V[c]+((size_t)tab[b*L+t]*H+h)*ROW,a);} }
      else { int b=pt; for(int n0=0;n0<L;n0+=64){ for(int t=n0;t<n0+64;t++){const char*p=K[c]+(size_t)tab[b*L+t]*H*ROW; for(int h=0;h<H;h++)a=row(p+h*ROW,a);} for(int t=n0;t<n0+64;t++){const char*p=V[c]+(size_t)tab[b*L+t]*H*ROW; for(int h=0;h<H;h++)a=row(p+h*ROW,a);} } }
      sink+=VSUM(a); }
    t=now()-t; check+=sink; if(it>=4) res[mode][nres[mode]++]=2.0*per/t/1e9;}
  for(int m=0;m<4;m++){ int n=nres[m]; for(int i=0;i<n;i++)for(int j=i+1;j<n;j++)if(res[m][j]<res[m][i]){double x=res[m][i];res[m][i]=res[m][j];res[m][j]=x;}
    if(m==0)printf("checksum %ld (the reads are used)\n",check);
    printf("%-18s median %.1f GB/s (min %.1f, max %.1f, %d passes)\n",names[m],res[m][n/2],res[m][0],res[m][n-1],n);}
}

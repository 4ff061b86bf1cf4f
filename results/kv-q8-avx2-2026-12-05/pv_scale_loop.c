// The AVX2 Q8_0 P·V loop (3 queries, 12 accumulators, one 32-value block per pass) in variants, on 256 rows in cache.
// clang -O2 -mavx2 -mfma -mf16c pv_scale_loop.c -o /tmp/v && /tmp/v
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
typedef struct { uint16_t d; int8_t qs[32]; } block_q8_0;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define NQ 3
// A: the scale by _cvtsh_ss (vpinsrw)
__attribute__((noinline)) void varA(const float *p, size_t pstride, int j0, int j1, const char *values, size_t rb, int b, float *out) {
    __m256 a[NQ][4];
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) a[i][u] = _mm256_setzero_ps();
    for (int j = j0; j < j1; j++) {
        const block_q8_0 *block = (const block_q8_0 *)(values + (size_t)j * rb) + b;
        const __m256 scale = _mm256_set1_ps(_cvtsh_ss(block->d));
        const float *pr = p + j;
        for (int u = 0; u < 4; u++) {
            __asm__("" : "+r"(pr));
            const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(block->qs + 8*u)))), scale);
            for (int i = 0; i < NQ; i++) a[i][u] = _mm256_fmadd_ps(_mm256_broadcast_ss(pr + (size_t)i * pstride), v, a[i][u]);
        }
    }
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) _mm256_storeu_ps(out + i*64 + 32*b + 8*u, a[i][u]);
}
// E: the scale broadcast (vpbroadcastw + vcvtph2ps), as half_set1_avx
__attribute__((noinline)) void varE(const float *p, size_t pstride, int j0, int j1, const char *values, size_t rb, int b, float *out) {
    __m256 a[NQ][4];
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) a[i][u] = _mm256_setzero_ps();
    for (int j = j0; j < j1; j++) {
        const block_q8_0 *block = (const block_q8_0 *)(values + (size_t)j * rb) + b;
        const __m256 scale = _mm256_cvtph_ps(_mm_set1_epi16((short)block->d));
        const float *pr = p + j;
        for (int u = 0; u < 4; u++) {
            __asm__("" : "+r"(pr));
            const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(block->qs + 8*u)))), scale);
            for (int i = 0; i < NQ; i++) a[i][u] = _mm256_fmadd_ps(_mm256_broadcast_ss(pr + (size_t)i * pstride), v, a[i][u]);
        }
    }
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) _mm256_storeu_ps(out + i*64 + 32*b + 8*u, a[i][u]);
}
// B: p transposed beforehand: pt[j*4 + i], broadcast from contiguous memory
__attribute__((noinline)) void varB(const float *pt, int j0, int j1, const char *values, size_t rb, int b, float *out) {
    __m256 a[NQ][4];
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) a[i][u] = _mm256_setzero_ps();
    for (int j = j0; j < j1; j++) {
        const block_q8_0 *block = (const block_q8_0 *)(values + (size_t)j * rb) + b;
        const __m256 scale = _mm256_set1_ps(_cvtsh_ss(block->d));
        const float *pr = pt + 4*j;
        for (int u = 0; u < 4; u++) {
            __asm__("" : "+r"(pr));
            const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(block->qs + 8*u)))), scale);
            for (int i = 0; i < NQ; i++) a[i][u] = _mm256_fmadd_ps(_mm256_broadcast_ss(pr + i), v, a[i][u]);
        }
    }
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) _mm256_storeu_ps(out + i*64 + 32*b + 8*u, a[i][u]);
}
// C: no scale (timing only)
__attribute__((noinline)) void varC(const float *p, size_t pstride, int j0, int j1, const char *values, size_t rb, int b, float *out) {
    __m256 a[NQ][4];
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) a[i][u] = _mm256_setzero_ps();
    for (int j = j0; j < j1; j++) {
        const block_q8_0 *block = (const block_q8_0 *)(values + (size_t)j * rb) + b;
        const float *pr = p + j;
        for (int u = 0; u < 4; u++) {
            __asm__("" : "+r"(pr));
            const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(block->qs + 8*u))));
            for (int i = 0; i < NQ; i++) a[i][u] = _mm256_fmadd_ps(_mm256_broadcast_ss(pr + (size_t)i * pstride), v, a[i][u]);
        }
    }
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) _mm256_storeu_ps(out + i*64 + 32*b + 8*u, a[i][u]);
}
// D: only FMAs with fixed v (timing only)
__attribute__((noinline)) void varD(const float *p, size_t pstride, int j0, int j1, const char *values, size_t rb, int b, float *out) {
    __m256 a[NQ][4];
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) a[i][u] = _mm256_setzero_ps();
    __m256 v = _mm256_set1_ps(1.0f);
    for (int j = j0; j < j1; j++) {
        const float *pr = p + j;
        for (int u = 0; u < 4; u++) {
            __asm__("" : "+r"(pr));
            for (int i = 0; i < NQ; i++) a[i][u] = _mm256_fmadd_ps(_mm256_broadcast_ss(pr + (size_t)i * pstride), v, a[i][u]);
        }
    }
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) _mm256_storeu_ps(out + i*64 + 32*b + 8*u, a[i][u]);
}
int main() {
    const int count = 256, rb = 68; char *vals = malloc(count * rb); for (int i = 0; i < count*rb; i++) vals[i] = rand();
    for (int j = 0; j < count; j++) { uint16_t h = 0x2000; memcpy(vals + j*rb, &h, 2); memcpy(vals + j*rb + 34, &h, 2); }
    float *p = malloc(3*8000*4), *pt = malloc(4*count*4), out[192]; for (int i = 0; i < 3*8000; i++) p[i] = 0.001f; for (int i=0;i<4*count;i++) pt[i]=0.001f;
    for (int round = 0; round < 3; round++) {
        double tE=1e9,tA=1e9,tB=1e9,tC=1e9,tD=1e9;
        for (int k = 0; k < 5; k++) {
            double t0=now(); for (int r=0;r<20000;r++) for (int b=0;b<2;b++) varA(p, 8000, 0, count, vals, rb, b, out); double t=now()-t0; if(t<tA)tA=t;
            t0=now(); for (int r=0;r<20000;r++) for (int b=0;b<2;b++) varE(p, 8000, 0, count, vals, rb, b, out); t=now()-t0; if(t<tE)tE=t;
            t0=now(); for (int r=0;r<20000;r++) for (int b=0;b<2;b++) varB(pt, 0, count, vals, rb, b, out); t=now()-t0; if(t<tB)tB=t;
            t0=now(); for (int r=0;r<20000;r++) for (int b=0;b<2;b++) varC(p, 8000, 0, count, vals, rb, b, out); t=now()-t0; if(t<tC)tC=t;
            t0=now(); for (int r=0;r<20000;r++) for (int b=0;b<2;b++) varD(p, 8000, 0, count, vals, rb, b, out); t=now()-t0; if(t<tD)tD=t;
        }
        double rows = 20000.0*count;
        printf("E(scale broadcast) %.2f ns/row: A %.2f  B(p transposed) %.2f  C(no scale) %.2f  D(fma only) %.2f\n", tE*1e9/rows, tA*1e9/rows, tB*1e9/rows, tC*1e9/rows, tD*1e9/rows);
    }
}

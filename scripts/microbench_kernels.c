// Single-thread timing of the decode kernels at every SIMD level the CPU has, on random data of the default
// model's shapes: the Q4_1 matvec (576 columns; a 98 MB matrix streamed from DRAM and a 512-row one in cache), the
// Q8_0 matvec of the output matrix's type (512 rows in cache), the Q4_1 matmul of 8 tokens (a batched decode step; 512
// rows in cache)
// and single-token attention over 8,000 keys for 90 KV heads (30 layers x 3; scores and P·V, 3 queries each), with
// f16 rows and with q8_0 rows (rk_kv_scores on Q8_0 queries, rk_kv_pv_chunked).
// Best of 5. Build and run from the repository root:
//   clang -O2 -ISources/CKernels/include scripts/microbench_kernels.c Sources/CKernels/kernels.c -lm -o /tmp/mbk && /tmp/mbk
#include "CKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define BEST(var, expr) do { double t0_ = now(); expr; double t_ = now() - t0_; if (t_ < var) var = t_; } while (0)

int main(void) {
    const int n = 576, nb = n / 32, d = 64, count = 8000, heads = 90, nq = 3;
    const size_t rowBytes = (size_t)nb * 20, bigRows = 272000, smallRows = 512, perHead = (size_t)count * d;
    unsigned char *w = malloc(bigRows * rowBytes);
    for (size_t i = 0; i < bigRows * rowBytes; i++) w[i] = (unsigned char)rand();
    for (size_t r = 0; r < bigRows; r++)
        for (int b = 0; b < nb; b++) { unsigned short *h = (unsigned short *)(w + r * rowBytes + b * 20); h[0] = 0x2000; h[1] = 0xA000; }
    const size_t q8Rows = 512, q8RowBytes = (size_t)nb * 34;
    unsigned char *w8 = malloc(q8Rows * q8RowBytes);
    for (size_t i = 0; i < q8Rows * q8RowBytes; i++) w8[i] = (unsigned char)rand();
    for (size_t r = 0; r < q8Rows; r++)
        for (int b = 0; b < nb; b++) { unsigned short *h = (unsigned short *)(w8 + r * q8RowBytes + b * 34); h[0] = 0x2000; }
    float x[576], q[3 * 64], out[3 * 64];
    for (int i = 0; i < n; i++) x[i] = (rand() % 1000) / 500.0f - 1;
    for (int i = 0; i < nq * d; i++) q[i] = (rand() % 100) / 100.0f;
    unsigned char xq[36 * 18];
    rk_quantize_row_q8_1(x, xq, n);
    unsigned char xq0[18 * 34], xq8[8 * 18 * 36];
    for (int t = 0; t < 8; t++) rk_quantize_row_q8_1(x, xq8 + t * 18 * 36, n);
    rk_quantize_row_q8_0(x, xq0, n);
    float *y = malloc(bigRows * sizeof(float));
    uint16_t *keys = malloc(perHead * heads * 2), *values = malloc(perHead * heads * 2);
    for (size_t i = 0; i < perHead * heads; i++) { keys[i] = 0x3000 + (rand() & 0x3ff); values[i] = 0x3000 + (rand() & 0x3ff); }
    const size_t pstride = (count + 63) / 64 * 64;
    float *p = calloc(nq * pstride, sizeof(float)), *scores = malloc(nq * pstride * sizeof(float));
    for (int i = 0; i < nq; i++) for (int j = 0; j < count; j++) p[i * pstride + j] = 1.0f / count;
    float *acc = aligned_alloc(64, (size_t)nq * d * 32 * sizeof(float));
    const size_t q8Row = rk_kv_row_bytes(8, d);
    unsigned char *keys8 = malloc(q8Row * count * heads), *values8 = malloc(q8Row * count * heads), q8[3 * 72];
    float row[64];
    for (size_t r = 0; r < (size_t)count * heads; r++) {
        for (int c = 0; c < d; c++) row[c] = (rand() % 2000) / 1000.0f - 1;
        rk_kv_quantize_row(8, row, keys8 + r * q8Row, d);
        for (int c = 0; c < d; c++) row[c] = (rand() % 2000) / 1000.0f - 1;
        rk_kv_quantize_row(8, row, values8 + r * q8Row, d);
    }
    for (int i = 0; i < nq; i++) rk_quantize_row_q8_0(q + i * d, q8 + i * (d / 32 * 34), d);
    const char *names[] = {"portable", "avx2", "avx512"};
    for (int level = rk_simd_level(); level >= 1; level--) {
        rk_limit_simd(level);
        double dram = 1e9, cache = 1e9, cache8 = 1e9, batch8 = 1e9, sc = 1e9, pv = 1e9, sc8 = 1e9, pv8 = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            BEST(dram, rk_matmul_quant(3, w, rowBytes, 0, (int)bigRows, xq, 0, 1, y, 0, n));
            BEST(cache8, for (int k = 0; k < 200; k++) rk_matmul_quant(8, w8, q8RowBytes, 0, (int)q8Rows, xq0, 0, 1, y, 0, n));
            BEST(batch8, for (int k = 0; k < 50; k++) rk_matmul_quant(3, w, rowBytes, 0, (int)smallRows, xq8, 18 * 36, 8, y, smallRows, n));
            BEST(cache, for (int k = 0; k < 200; k++) rk_matmul_quant(3, w, rowBytes, 0, (int)smallRows, xq, 0, 1, y, 0, n));
            BEST(sc, for (int h = 0; h < heads; h++) rk_attn_scores(q, d, nq, keys + h * perHead, d, 0, count, 0.125f, scores, pstride, 0));
            BEST(pv, for (int h = 0; h < heads; h++) { rk_attn_pv_lanes(p, pstride, nq, count, values + h * perHead, d, 0, 32, acc);
                                                       rk_attn_pv_reduce(acc, nq, d, out, d); });
            BEST(sc8, for (int h = 0; h < heads; h++) rk_kv_scores(8, q8, nq, keys8 + h * q8Row * count, d, 0, count, 0.125f, scores, pstride));
            BEST(pv8, for (int h = 0; h < heads; h++) rk_kv_pv_chunked(8, p, pstride, nq, count, values8 + h * q8Row * count, d, out, d));
        }
        printf("%-8s matvec: DRAM %.2f ms (%.1f GB/s), in cache %.2f ns per block-row; q8_0 in cache %.2f ns per block-row; 8 tokens in cache %.3f ns per block-row-token | attention at 8,000: f16 scores %.2f ms, P·V %.2f ms; q8_0 scores %.2f ms, P·V %.2f ms\n",
               names[level], dram * 1e3, bigRows * rowBytes / dram / 1e9, cache / 200 * 1e9 / (smallRows * nb), cache8 / 200 * 1e9 / (q8Rows * nb), batch8 / 50 * 1e9 / (smallRows * nb * 8), sc * 1e3, pv * 1e3,
               sc8 * 1e3, pv8 * 1e3);
    }
    return 0;
}

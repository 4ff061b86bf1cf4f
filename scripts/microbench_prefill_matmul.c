// Single-thread timing of a prompt's matmul on the signed quantized formats Gemma 3 270M stores (Q5_0 and
// Q4_0 rows of 640 columns against 128 tokens; Q8_0 beside them), at every SIMD level the CPU has, best of 7,
// and a checksum of the output bits so that two builds can be compared. Build and run from the repository root:
//   clang -O2 -ISources/CKernels/include scripts/microbench_prefill_matmul.c Sources/CKernels/kernels.c -lm -lpthread -o /tmp/mbp && /tmp/mbp
#include "CKernels.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(void) {
    const int n = 640, nb = n / 32, rows = 2048, tokens = 128;
    const struct { int type; int bytes; const char *name; } types[] = {{6, 22, "q5_0"}, {2, 18, "q4_0"}, {8, 34, "q8_0"}};
    float *x = malloc((size_t)tokens * n * sizeof(float)), *y = malloc((size_t)tokens * rows * sizeof(float));
    unsigned char *xq = malloc((size_t)tokens * nb * 34);
    srand(1);
    for (int i = 0; i < tokens * n; i++) x[i] = (rand() % 2000) / 500.0f - 2;
    for (int t = 0; t < tokens; t++) rk_quantize_row_q8_0(x + (size_t)t * n, xq + (size_t)t * nb * 34, n);
    const char *levels[] = {"portable", "avx2", "avx512"};
    for (int k = 0; k < 3; k++) {
        const size_t rowBytes = (size_t)nb * types[k].bytes;
        unsigned char *w = malloc(rows * rowBytes);
        for (size_t i = 0; i < rows * rowBytes; i++) w[i] = (unsigned char)rand();
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < nb; b++) { uint16_t h = 0x2000 + (rand() & 0xff); memcpy(w + r * rowBytes + (size_t)b * types[k].bytes, &h, 2); }
        for (int level = rk_simd_level(); level >= 1; level--) {
            rk_limit_simd(level);
            double best = 1e9;
            for (int rep = 0; rep < 7; rep++) {
                const double t0 = now();
                rk_matmul_quant(types[k].type, w, rowBytes, 0, rows, xq, (size_t)nb * 34, tokens, y, rows, n);
                const double t = now() - t0;
                if (t < best) best = t;
            }
            uint64_t sum = 0;
            for (int i = 0; i < tokens * rows; i++) { uint32_t b; memcpy(&b, y + i, 4); sum = sum * 1000003u + b; }
            printf("%-5s %-8s %d rows x %d columns x %d tokens: %.3f ms (%.2f ns per block-row-token)  bits %016llx\n", types[k].name,
                   levels[level], rows, n, tokens, best * 1e3, best * 1e9 / ((double)rows * nb * tokens), (unsigned long long)sum);
        }
        free(w);
    }
    return 0;
}

// Single-thread rk_attn_values (f16 probabilities over 256 chosen f16 value rows, d = 64), as `topk`, `h2o`, `quest`
// and `sparq` at budget 256 call it (Attention.subset) for each of 270 query heads (30 layers x 9) per token; rows
// from an 8,000-row cache per head. Best of 7 rounds of 20 tokens.
// clang -O2 -ISources/CKernels/include attn_values_bench.c <kernels.c before or after> -lm -lpthread -o /tmp/values_{old,new}
#include "CKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
    const int d = 64, rows = 8000, count = 256, heads = 270, kvHeads = 90;
    uint16_t *values = malloc((size_t)kvHeads * rows * d * 2), p[256];
    for (size_t i = 0; i < (size_t)kvHeads * rows * d; i++) values[i] = 0x3000 + (rand() & 0x3ff);
    for (int j = 0; j < count; j++) p[j] = 0x1c00 + (rand() & 0xff);
    int32_t *slots = malloc(sizeof(int32_t) * count * heads);
    for (int i = 0; i < count * heads; i++) slots[i] = rand() % rows;
    float out[64];
    for (int batched = 0; batched < 2; batched++) {
        double best = 1e9;
        for (int r = 0; r < 7; r++) {
            double t0 = now();
            for (int t = 0; t < 20; t++)
                for (int h = 0; h < heads; h++) rk_attn_values(p, values + (size_t)(h / 3) * rows * d, slots + h * count, count, d, out, batched);
            double e = (now() - t0) / 20; if (e < best) best = e;
        }
        printf("rk_attn_values batched=%d: %.3f ms per token (270 heads x 256 rows)\n", batched, best * 1e3);
    }
    return 0;
}

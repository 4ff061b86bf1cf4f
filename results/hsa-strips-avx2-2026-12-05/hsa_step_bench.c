// HSA selection step kernels, timed per KV group step with their data coming from memory as in a decode step:
// 90 distinct groups' page metadata and key/value rows (one decode token's worth at SmolLM2's shape), 3.2 MB of
// other memory read between layers (the layer's weights), one thread. Build against a checkout's kernels:
//   clang -O2 -march=x86-64 -I$SRC/include [-DGATHER_PER_ARRAY] hsa_step_bench.c $SRC/pool.c $SRC/memory.c -lm -lpthread
// with KERNELS=$SRC/kernels.c passed as -DKERNELS='"…"'; GATHER_PER_ARRAY for checkouts whose rk_gather_rows took
// one array at a time (before a882aec). Arguments: kept tokens (1379 at 8,000 of context), page size (3).
#include KERNELS
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
enum { NG = 90, D = 64, G = 3, K1 = 34, K2 = 128 };
int main(int argc, char **argv) {
    int tokens = argc > 1 ? atoi(argv[1]) : 1379, P = argc > 2 ? atoi(argv[2]) : 3;
    int pages = (tokens + P - 1) / P;
    uint16_t **meta = malloc(NG * sizeof *meta), **kv = malloc(NG * sizeof *kv);
    srand(1);
    for (int g = 0; g < NG; g++) {
        meta[g] = malloc((size_t)2 * D * pages * 2);
        for (size_t i = 0; i < (size_t)2 * D * pages; i++) meta[g][i] = float_to_half((rand() / (float)RAND_MAX - 0.5f) * 4);
        kv[g] = malloc((size_t)2 * tokens * D * 2);
        for (size_t i = 0; i < (size_t)2 * tokens * D; i++) kv[g][i] = float_to_half(rand() / (float)RAND_MAX - 0.5f);
    }
    size_t flushN = 3200000 / 8; double *flush = malloc(flushN * 8); for (size_t i = 0; i < flushN; i++) flush[i] = i;
    float coef[K1 * G]; for (int i = 0; i < K1 * G; i++) coef[i] = rand() / (float)RAND_MAX - 0.5f;
    float *scores = malloc(G * pages * 4), *probs = malloc(G * pages * 4), *omega = malloc(pages * 4);
    int32_t order[4096], slots[K2]; char *rows = aligned_alloc(64, 2 * K2 * D * 2);
    const uint16_t *strips[K1];
    double t[4] = {0}, sink = 0;
    const int reps = 20;
    for (int rep = 0; rep < reps; rep++)
        for (int g = 0; g < NG; g++) {
            if (g % 3 == 0) for (size_t i = 0; i < flushN; i += 8) sink += flush[i];
            double t0 = now();
            for (int r = 0; r < K1; r++) strips[r] = meta[g] + (size_t)((r * 7 + g) % (2 * D)) * pages;
            for (int i = 0; i < G * pages; i++) scores[i] = 0;
            rk_strip_scores((const void *const *)strips, NULL, K1, coef, G, scores, pages, 0, pages);
            double t1 = now();
            for (int h = 0; h < G; h++) rk_hsa_page_probabilities(scores + h * pages, pages, 0.3f, P, P, G, probs + h * pages);
            double t2 = now();
            for (int p = 0; p < pages; p++) omega[p] = probs[p] + probs[pages + p] + probs[2 * pages + p];
            int n = rk_top_indices(omega, pages, (K2 + P - 1) / P + 1, order), c = 0;
            for (int o = 0; o < n && c < K2; o++)
                for (int s = order[o] * P; s < order[o] * P + P && c < K2 && s < tokens; s++) slots[c++] = s;
            double t3 = now();
#ifdef GATHER_PER_ARRAY
            rk_gather_rows(kv[g], D * 2, slots, c, rows);
            rk_gather_rows(kv[g] + (size_t)tokens * D, D * 2, slots, c, rows + c * D * 2);
#else
            rk_gather_rows(kv[g], kv[g] + (size_t)tokens * D, D * 2, slots, c, rows, rows + c * D * 2);
#endif
            double t4 = now();
            t[0] += t1 - t0; t[1] += t2 - t1; t[2] += t3 - t2; t[3] += t4 - t3;
            sink += rows[7];
        }
    double n = (double)reps * NG;
    printf("tokens %d pages %d: page scores %.2f us, softmax %.2f, top pages %.2f, gather %.2f, total %.2f (%d)\n", tokens, pages,
           t[0] / n * 1e6, t[1] / n * 1e6, t[2] / n * 1e6, t[3] / n * 1e6, (t[0] + t[1] + t[2] + t[3]) / n * 1e6, sink > 0);
}

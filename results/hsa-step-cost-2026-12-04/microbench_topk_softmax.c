#include "CKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <math.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
    int ns[] = {64, 464, 735, 2000}, ks[] = {35, 65, 45, 130};
    float *v = malloc(4000 * 4); int32_t out[4000];
    float s[3*480], pr[3*480];
    for (int c = 0; c < 4; c++) {
        int n = ns[c], k = ks[c];
        for (int i = 0; i < n; i++) v[i] = expf((rand() % 10000) / 1000.0f) * 1e-3f;
        double best = 1e9;
        for (int r = 0; r < 20; r++) { double t0 = now(); for (int it = 0; it < 1000; it++) { v[it % n] += 1e-9f; rk_top_indices(v, n, k, out); } double t = (now() - t0) / 1000; if (t < best) best = t; }
        printf("top n=%d k=%d: %.2f us\n", n, k, best * 1e6);
    }
    for (int i = 0; i < 3*480; i++) s[i] = (rand() % 10000) / 1000.0f;
    double best = 1e9;
    for (int r = 0; r < 20; r++) { double t0 = now(); for (int it = 0; it < 1000; it++) for (int h = 0; h < 3; h++) rk_hsa_page_probabilities(s + h*480, 480, 0.3f, 3, 2, 3, pr + h*480); double t = (now() - t0) / 1000; if (t < best) best = t; }
    printf("page probabilities 3 heads x 480 pages: %.2f us\n", best * 1e6);
    return 0;
}

// SIMD kernels with run-time dispatch: an AVX2/FMA/F16C path and a portable path.
// Block formats follow GGML (ggml-common.h): all scales are IEEE half precision.
#include "CKernels.h"
#include <pthread.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define RK_X86 1
#define RK_AVX2 __attribute__((target("avx2,fma,f16c")))
#define RK_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#else
#define RK_X86 0
#endif

typedef struct { uint16_t d; int8_t qs[32]; } block_q8_0;
typedef struct { uint16_t d; uint16_t s; int8_t qs[32]; } block_q8_1;
typedef struct { uint16_t d; uint16_t m; uint8_t qs[16]; } block_q4_1;
typedef struct { uint16_t d; uint8_t qs[16]; } block_q4_0;
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 size");
_Static_assert(sizeof(block_q8_1) == 36, "q8_1 size");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 size");
_Static_assert(sizeof(block_q4_0) == 18, "q4_0 size");
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0;
// A Q4_0/Q5_0 block unpacked for a prompt's matmul: d, and each element's stored value (w + 8, w + 16) as a byte.
// Unpacking every row once per call (rather than once per tile) is the bulk of what the signed formats cost
// above Q8_0's plain bytes.
typedef struct { uint16_t d; uint16_t pad; uint8_t u[32]; } block_u32;
_Static_assert(sizeof(block_u32) == 36, "u32 size");
// K-quants: 256-element super-blocks of eight 32-element sub-blocks (Q6_K: sixteen of 16), activations in Q8_K.
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } block_q8_K;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } block_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } block_q6_K;
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 size");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K size");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K size");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K size");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K size");

// A thread's scratch buffer grown to at least `bytes` (64-byte aligned, contents not kept). Running out of memory
// here cannot be reported to the caller: the process says so on stderr and exits with EX_OSERR.
static void *grow_scratch(void **buffer, size_t *capacity, size_t bytes) {
    if (bytes > *capacity) {
        free(*buffer);
        *buffer = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!*buffer) {
            fprintf(stderr, "rocketkv: out of memory (%zu bytes of kernel scratch)\n", bytes);
            exit(71);
        }
        *capacity = bytes;
    }
    return *buffer;
}

// ---- half precision, bit exact (round to nearest even) ----

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) { bits = sign; }
        else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000 | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f; memcpy(&f, &bits, 4); return f;
}

static inline uint16_t float_to_half(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, abs = x & 0x7fffffff;
    if (abs >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0));
    if (abs >= 0x477ff000) return (uint16_t)(sign | 0x7c00);  // overflows to infinity
    if (abs < 0x38800000) {  // subnormal or zero in half
        if (abs < 0x33000000) return (uint16_t)sign;
        uint32_t e = abs >> 23, m = (abs & 0x7fffff) | 0x800000, shift = 126 - e;
        // value = m * 2^(e-150); half subnormal unit = 2^-24 -> q = m * 2^(e-126) = m >> (126 - e)
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
    uint32_t rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

// ---- dispatch ----

// Atomics: any thread may be the first to ask (every one computes the same level), and tests change the limit.
static _Atomic int simd_level = -1;
static _Atomic int simd_limit = 2;

// The CPU's level: 2 = AVX-512 (F/BW/VL/DQ/VNNI) on top of AVX2, 1 = AVX2/FMA/F16C, 0 = portable C.
// ROCKETKV_SIMD=portable|avx2 caps it (for A/B measurements in one binary).
int rk_simd_level(void) {
    int known = atomic_load_explicit(&simd_level, memory_order_relaxed);
    if (known < 0) {
#if RK_X86
        __builtin_cpu_init();
        const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
        const int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                           __builtin_cpu_supports("avx512vnni");
        int level = avx512 ? 2 : avx2 ? 1 : 0;
        const char *cap = getenv("ROCKETKV_SIMD");
        if (cap && strcmp(cap, "portable") == 0) level = 0;
        else if (cap && strcmp(cap, "avx2") == 0 && level > 1) level = 1;
        known = level;
#else
        known = 0;
#endif
        atomic_store_explicit(&simd_level, known, memory_order_relaxed);
    }
    const int limit = atomic_load_explicit(&simd_limit, memory_order_relaxed);
    return known < limit ? known : limit;
}

void rk_limit_simd(int level) { atomic_store_explicit(&simd_limit, level < 0 ? 2 : level, memory_order_relaxed); }

// ---- portable paths ----

static void quantize_q8_0_portable(const float *x, block_q8_0 *y, int n) {
    for (int b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
        y[b].d = float_to_half(d);
        for (int j = 0; j < 32; j++) y[b].qs[j] = (int8_t)nearbyintf(x[b * 32 + j] * id);
    }
}

static void quantize_q8_1_portable(const float *x, block_q8_1 *y, int n) {
    for (int b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
        int sum = 0;
        for (int j = 0; j < 32; j++) { y[b].qs[j] = (int8_t)nearbyintf(x[b * 32 + j] * id); sum += y[b].qs[j]; }
        y[b].d = float_to_half(d);
        y[b].s = float_to_half(d * (float)sum);
    }
}

static float dot_q4_1_q8_1_portable(int n, const block_q4_1 *w, const block_q8_1 *x) {
    float sum = 0;
    for (int b = 0; b < n / 32; b++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (w[b].qs[j] & 0x0f) * x[b].qs[j] + (w[b].qs[j] >> 4) * x[b].qs[j + 16];
        }
        sum += half_to_float(w[b].d) * half_to_float(x[b].d) * (float)sumi + half_to_float(w[b].m) * half_to_float(x[b].s);
    }
    return sum;
}

static float dot_q8_0_q8_0_portable(int n, const block_q8_0 *w, const block_q8_0 *x) {
    float sum = 0;
    for (int b = 0; b < n / 32; b++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += w[b].qs[j] * x[b].qs[j];
        sum += half_to_float(w[b].d) * half_to_float(x[b].d) * (float)sumi;
    }
    return sum;
}

static float dot_q4_0_q8_0_portable(int n, const block_q4_0 *w, const block_q8_0 *x) {
    float sum = 0;
    for (int b = 0; b < n / 32; b++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((w[b].qs[j] & 0x0f) - 8) * x[b].qs[j] + ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + 16];
        }
        sum += half_to_float(w[b].d) * half_to_float(x[b].d) * (float)sumi;
    }
    return sum;
}

static inline float hsum8_batched(const float a[8]);

// The twin of ggml's AVX2 ggml_vec_dot_q5_0_q8_0 (and tinyBLAS's Q5_0 tiles): per block one FMA of d_w·d_x into
// 8 lanes (lane k = Σ of the products of elements 4k…4k+3), the lanes summed as hsum_float_8 does.
static float dot_q5_0_q8_0_portable(int n, const block_q5_0 *w, const block_q8_0 *x) {
    float acc[8] = {0};
    for (int b = 0; b < n / 32; b++) {
        uint32_t qh;
        memcpy(&qh, w[b].qh, 4);
        int32_t lane[8] = {0};
        for (int e = 0; e < 32; e++) {
            const int q = ((w[b].qs[e % 16] >> (4 * (e / 16))) & 15) | (int)((qh >> e) & 1) << 4;
            lane[e / 4] += (q - 16) * x[b].qs[e];
        }
        const float d = half_to_float(w[b].d) * half_to_float(x[b].d);
        for (int k = 0; k < 8; k++) acc[k] = fmaf(d, (float)lane[k], acc[k]);
    }
    return hsum8_batched(acc);
}

static float dot_f32_portable(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_f16_f32_portable(const uint16_t *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += half_to_float(a[i]) * b[i];
    return s;
}

// ---- AVX2 paths ----
#if RK_X86

RK_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

RK_AVX2 static inline float half_to_float_avx(uint16_t h) { return _cvtsh_ss(h); }
// An f16 in all eight lanes, through a broadcast. clang emits _cvtsh_ss as vpinsrw into whichever register it deems
// free, and vpinsrw waits for that register's old value: in a loop of FMA chains that can be an accumulator's, which
// ties each iteration to the last (AVX2 Q8_0 P·V: 12.97 → 7.24 ns per row). A broadcast writes the whole register;
// the empty asm keeps clang from folding it back into vpinsrw. (The weight tiles measured slower with it: they keep
// _cvtsh_ss.)
RK_AVX2 static inline __m256 half_set1_avx(uint16_t h) {
    __m128i v = _mm_set1_epi16((short)h);
    __asm__("" : "+x"(v));
    return _mm256_cvtph_ps(v);
}
RK_AVX2 static inline uint16_t float_to_half_avx(float f) { return (uint16_t)_cvtss_sh(f, 0); }

// Quantizes one block of 32 floats: returns the int8 vector and the scale (as llama.cpp's AVX2 path).
RK_AVX2 static inline __m256i quantize_block_avx(const float *x, float *d_out) {
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign_bit, v0);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign_bit, v1));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign_bit, v2));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign_bit, v3));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    *d_out = amax / 127.f;
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), _MM_ROUND_NEAREST));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), _MM_ROUND_NEAREST));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), _MM_ROUND_NEAREST));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), _MM_ROUND_NEAREST));
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    // packs interleave 128-bit lanes; restore element order
    return _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

RK_AVX2 static void quantize_q8_0_avx2(const float *x, block_q8_0 *y, int n) {
    for (int b = 0; b < n / 32; b++) {
        float d;
        __m256i q = quantize_block_avx(x + b * 32, &d);
        y[b].d = float_to_half_avx(d);
        _mm256_storeu_si256((__m256i *)y[b].qs, q);
    }
}

RK_AVX2 static void quantize_q8_1_avx2(const float *x, block_q8_1 *y, int n) {
    for (int b = 0; b < n / 32; b++) {
        float d;
        __m256i q = quantize_block_avx(x + b * 32, &d);
        y[b].d = float_to_half_avx(d);
        _mm256_storeu_si256((__m256i *)y[b].qs, q);
        __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
        __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        s = _mm_hadd_epi32(s, s); s = _mm_hadd_epi32(s, s);
        y[b].s = float_to_half_avx(d * (float)_mm_cvtsi128_si32(s));
    }
}

// Sum of products of unsigned bytes `u` and signed bytes `s`, as 8 floats.
// Unsigned × signed bytes summed four at a time: 8 int32 lanes (lane k = Σ of bytes 4k..4k+3).
RK_AVX2 static inline __m256i mul_sum_us8_epi32(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

RK_AVX2 static inline __m256 mul_sum_us8_ps(__m256i u, __m256i s) { return _mm256_cvtepi32_ps(mul_sum_us8_epi32(u, s)); }

// Low nibbles in the low 128 bits, high nibbles in the high 128: the 16 bytes loaded into both halves and the
// high half shifted by 4 (one variable shift instead of a shift and a lane insert).
RK_AVX2 static inline __m256i unpack_nibbles(const uint8_t *qs) {
    const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(bytes, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0f));
}

RK_AVX2 static float dot_q4_1_q8_1_avx2(int n, const block_q4_1 *w, const block_q8_1 *x) {
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int b = 0; b < n / 32; b++) {
        const float dw = half_to_float_avx(w[b].d), dx = half_to_float_avx(x[b].d);
        summs += half_to_float_avx(w[b].m) * half_to_float_avx(x[b].s);
        __m256i qw = unpack_nibbles(w[b].qs);
        __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), mul_sum_us8_ps(qw, qx), acc);
    }
    return hsum_ps(acc) + summs;
}

RK_AVX2 static float dot_f32_avx2(const float *a, const float *b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

RK_AVX2 static float dot_f16_f32_avx2(const uint16_t *a, const float *b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 a1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        acc0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += half_to_float_avx(a[i]) * b[i];
    return s;
}

// One strip value as a float: an f16 bit pattern (scales == NULL) or int8 times its strip's scale.
static inline float strip_value(const void *strip, const float *scales, int s, int i) {
    return scales ? (float)((const int8_t *)strip)[i] * scales[s] : half_to_float(((const uint16_t *)strip)[i]);
}

RK_AVX2 static inline __m256 strip_load8(const void *strip, const float *scales, int s, int i) {
    if (!scales) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)strip + i)));
    const __m128i q = _mm_loadl_epi64((const __m128i *)((const int8_t *)strip + i));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(scales[s]));
}

RK_AVX512 static inline __m512 strip_load16(const void *strip, const float *scales, int s, int i) {
    if (!scales) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)strip + i)));
    const __m128i q = _mm_loadu_si128((const __m128i *)((const int8_t *)strip + i));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(scales[s]));
}

// Pages i … i + 8·U of up to 4 rows, their accumulators in registers over all strips: U = 2 gives each row two
// independent FMA chains (one chain per row waited on the FMA latency at every strip). Every page's sum still
// runs over the strips in order, so U does not change a bit.
RK_AVX2 static inline __attribute__((always_inline)) void strip_scores_pages_avx2(const void *const *strips, const float *scales, int nstrips,
                                                                                  const float *a, int rows, float *y, size_t ystride,
                                                                                  int i, int prefetch, const int U) {
    const int bytes = scales ? 1 : 2;
    for (int r0 = 0; r0 < rows; r0 += 4) {
        const int nr = rows - r0 < 4 ? rows - r0 : 4;
        __m256 acc[4][2];
        for (int r = 0; r < nr; r++)
            for (int u = 0; u < U; u++) acc[r][u] = _mm256_loadu_ps(y + (size_t)(r0 + r) * ystride + i + 8 * u);
        for (int s = 0; s < nstrips; s++) {
            if (r0 == 0 && prefetch) _mm_prefetch((const char *)strips[s] + (size_t)i * bytes + 256, _MM_HINT_T0);
            __m256 vx[2];
            for (int u = 0; u < U; u++) vx[u] = strip_load8(strips[s], scales, s, i + 8 * u);
            for (int r = 0; r < nr; r++) {
                const __m256 c = _mm256_set1_ps(a[(size_t)s * rows + r0 + r]);
                for (int u = 0; u < U; u++) acc[r][u] = _mm256_fmadd_ps(c, vx[u], acc[r][u]);
            }
        }
        for (int r = 0; r < nr; r++)
            for (int u = 0; u < U; u++) _mm256_storeu_ps(y + (size_t)(r0 + r) * ystride + i + 8 * u, acc[r][u]);
    }
}

RK_AVX2 static void strip_scores_avx2(const void *const *strips, const float *scales, int nstrips, const float *a, int rows,
                                      float *y, size_t ystride, int i0, int n) {
    int i = i0;
    for (; i + 16 <= n; i += 16) strip_scores_pages_avx2(strips, scales, nstrips, a, rows, y, ystride, i, (i - i0) % 32 == 0, 2);
    for (; i + 8 <= n; i += 8) strip_scores_pages_avx2(strips, scales, nstrips, a, rows, y, ystride, i, (i - i0) % 32 == 0, 1);
    for (; i < n; i++)
        for (int r = 0; r < rows; r++) {
            float acc = y[(size_t)r * ystride + i];
            for (int s = 0; s < nstrips; s++) acc = fmaf(a[(size_t)s * rows + r], strip_value(strips[s], scales, s, i), acc);
            y[(size_t)r * ystride + i] = acc;
        }
}

// The same sums 16 pages to a register, two registers per row: each broadcast coefficient serves 32 pages.
RK_AVX512 static void strip_scores_avx512(const void *const *strips, const float *scales, int nstrips, const float *a, int rows,
                                          float *y, size_t ystride, int i0, int n) {
    const int bytes = scales ? 1 : 2;
    int i = i0;
    for (; i + 32 <= n; i += 32)
        for (int r0 = 0; r0 < rows; r0 += 4) {
            const int nr = rows - r0 < 4 ? rows - r0 : 4;
            __m512 acc[4][2];
            for (int r = 0; r < nr; r++)
                for (int u = 0; u < 2; u++) acc[r][u] = _mm512_loadu_ps(y + (size_t)(r0 + r) * ystride + i + 16 * u);
            for (int s = 0; s < nstrips; s++) {
                if (r0 == 0) _mm_prefetch((const char *)strips[s] + (size_t)i * bytes + 256, _MM_HINT_T0);
                const __m512 x0 = strip_load16(strips[s], scales, s, i), x1 = strip_load16(strips[s], scales, s, i + 16);
                for (int r = 0; r < nr; r++) {
                    const __m512 c = _mm512_set1_ps(a[(size_t)s * rows + r0 + r]);
                    acc[r][0] = _mm512_fmadd_ps(c, x0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(c, x1, acc[r][1]);
                }
            }
            for (int r = 0; r < nr; r++)
                for (int u = 0; u < 2; u++) _mm512_storeu_ps(y + (size_t)(r0 + r) * ystride + i + 16 * u, acc[r][u]);
        }
    if (i < n) strip_scores_avx2(strips, scales, nstrips, a, rows, y, ystride, i, n);
}

RK_AVX2 static void f32_to_f16_avx2(const float *x, uint16_t *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0));
    for (; i < n; i++) y[i] = float_to_half_avx(x[i]);
}

RK_AVX2 static void f16_to_f32_avx2(const uint16_t *x, float *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = half_to_float_avx(x[i]);
}
#endif

typedef float (*quant_dot_fn)(int, const void *, const void *);

// ---- Register-tiled matrix products on quantized blocks (prefill GEMM and decode matvec) ----
// A tile of TR weight rows × TT tokens keeps one __m256 accumulator per output and walks the blocks in
// order: for every output the sequence of floating-point operations is exactly the row-dot's
// (fmadd(d_w·d_x, Σ int8 products as 8 floats, acc) per block, hsum at the end, Q4_1's scalar Σ m·s added
// last), so results are bit-identical to rk_vec_dot_* while each weight block is unpacked once per TT
// tokens and each activation block loaded once per TR rows.
#if RK_X86
// The 8 float lanes of one block's int8 products (lane k = Σ of bytes 4k..4k+3), as the row-dots compute them.
RK_AVX2 static inline __m256 pair_q4_1(__m256i qw, __m256i qx) { return mul_sum_us8_ps(qw, qx); }
RK_AVX2 static inline __m256 pair_signed(__m256i qw, __m256i qx) {
    return mul_sum_us8_ps(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
}

// `dx[b * ts + j]` (and `sx`, Q8_1's d·Σq) hold the activation scales of the tile's token j at block b as
// floats: the product d_w·d_x is then one vmulps of two broadcasts (the same single rounding as the scalar
// product), and Q4_1's Σ m·s terms of a 2×4 tile advance as one 8-lane FMA (lane i·4+j), each lane the
// scalar chain of the row-dot.
// Fetch the rows two tiles ahead, too short a stream for the hardware prefetcher (rows are nb blocks, so the
// tile's next TR rows start 2·TR rows on; TR blocks' bytes per block step). Decode needs it at one token and at a
// batch's eight alike: without it an 8-token tile waited on memory (SmolLM2, 8 sequences: BENCHMARKS.md, 2026-12-04
// evening).
#define RK_TILE_PREFETCH(TR, WBLOCK)                                                                              \
    do {                                                                                                          \
        const char *ahead = w + (size_t)2 * TR * wstride;                                                         \
        for (size_t o = (size_t)b * TR * sizeof(WBLOCK) & ~(size_t)63; o < (size_t)(b + 1) * TR * sizeof(WBLOCK); o += 64) \
            _mm_prefetch(ahead + o, _MM_HINT_T0);                                                                 \
    } while (0)

// OFFSET (the unpacked Q4_0/Q5_0 rows of a prompt, block_u32): the weights are the stored unsigned bytes
// u = w + offset and `extra` holds each token block's 8 lanes of −offset·Σx (`lane_offsets`), added to the int32
// lanes before they become floats, so the lanes are the exact Σ w·x of PAIR's signed form: the same bits without
// its two sign operations per pair (u ≤ 31 keeps maddubs' int16 sums below 2^15).
#define RK_TILE_KERNEL(NAME, TR, TT, WBLOCK, XBLOCK, LOADW, PAIR, HAS_MIN, OFFSET)                               \
RK_AVX2 static void NAME(int nb, const char *w, size_t wstride, const char *x, size_t xstride,                  \
                         const float *dx, const void *extra, int ts, float *y, size_t ystride) {                 \
    const float *sx = (const float *)extra;                                                                       \
    const __m256i *corr = (const __m256i *)extra;                                                                 \
    __m256 acc[TR][TT];                                                                                           \
    float summs[TR][TT];                                                                                          \
    __m256 summv = _mm256_setzero_ps();                                                                           \
    for (int i = 0; i < TR; i++) for (int j = 0; j < TT; j++) { acc[i][j] = _mm256_setzero_ps(); summs[i][j] = 0; } \
    for (int b = 0; b < nb; b++) {                                                                                \
        RK_TILE_PREFETCH(TR, WBLOCK);                                                                             \
        __m256i qw[TR]; __m256 dw[TR]; float mw[TR];                                                              \
        for (int i = 0; i < TR; i++) {                                                                            \
            const WBLOCK *wb = (const WBLOCK *)(w + (size_t)i * wstride) + b;                                     \
            qw[i] = LOADW(wb); dw[i] = _mm256_set1_ps(_cvtsh_ss(wb->d));                                          \
            if (HAS_MIN) mw[i] = _cvtsh_ss(((const block_q4_1 *)wb)->m);                                          \
        }                                                                                                         \
        if (HAS_MIN) {                                                                                            \
            if (TR == 2 && TT == 4) {                                                                             \
                const __m256 mv = _mm256_set_m128(_mm_set1_ps(mw[TR - 1]), _mm_set1_ps(mw[0]));                   \
                const __m256 sv = _mm256_broadcast_ps((const __m128 *)(sx + (size_t)b * ts));                     \
                summv = _mm256_fmadd_ps(mv, sv, summv);                                                           \
            } else {                                                                                              \
                for (int j = 0; j < TT; j++) for (int i = 0; i < TR; i++) summs[i][j] += mw[i] * sx[(size_t)b * ts + j]; \
            }                                                                                                     \
        }                                                                                                         \
        for (int j = 0; j < TT; j++) {                                                                            \
            const XBLOCK *xb = (const XBLOCK *)(x + (size_t)j * xstride) + b;                                     \
            const __m256i qx = _mm256_loadu_si256((const __m256i *)xb->qs);                                       \
            const __m256 dxj = _mm256_broadcast_ss(dx + (size_t)b * ts + j);                                      \
            const __m256i cj = OFFSET ? _mm256_loadu_si256(corr + (size_t)b * ts + j) : _mm256_setzero_si256();   \
            for (int i = 0; i < TR; i++) {                                                                        \
                const __m256 dot = OFFSET ? _mm256_cvtepi32_ps(_mm256_add_epi32(cj, mul_sum_us8_epi32(qw[i], qx)))  \
                                          : PAIR(qw[i], qx);                                                      \
                acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(dw[i], dxj), dot, acc[i][j]);                          \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    float lanes[8];                                                                                               \
    if (HAS_MIN && TR == 2 && TT == 4) _mm256_storeu_ps(lanes, summv);                                            \
    for (int i = 0; i < TR; i++) for (int j = 0; j < TT; j++) {                                                   \
        const float m = HAS_MIN ? ((TR == 2 && TT == 4) ? lanes[(i * TT + j) & 7] : summs[i][j]) : 0;             \
        y[(size_t)j * ystride + i] = HAS_MIN ? hsum_ps(acc[i][j]) + m : hsum_ps(acc[i][j]);                       \
    }                                                                                                             \
}

// Q4_1's decode tile, 4 rows × 1 token, with the four rows' block scales taken together: their (d, m) halves loaded
// into one register and converted at once, d_w·d_x of the four rows one vmulps, their four Σ m·s chains one FMA (row
// i in lane 2i + 1), and each row's product broadcast from a stack copy by a load (a load port, where the shuffles
// clang would otherwise emit take vector ALUs). One thread's AVX2 matvec is bound by its vector operations more than
// by memory: converting and multiplying each row's scale alone cost 1.47 ns per block-row in cache (medians), this
// 1.35 (results/q4-scales-avx2-2026-12-05/). Each output sees the row-dot's operations in its order: the same bits.
// The signed formats' 4 × 1 tiles, with d alone, gained nothing this way (Q8_0: 1.29 → 1.34 ns, signed-variant.txt),
// nor did the 2 × 4 tiles' eight products (1.03 → 1.47 ns per block-row-token, tile2x4-variant.txt).
RK_AVX2 static void tile_q4_1_4x1(int nb, const char *w, size_t wstride, const char *x, size_t xstride,
                                  const float *dx, const void *extra, int ts, float *y, size_t ystride) {
    (void)xstride; (void)ystride;
    const float *sx = (const float *)extra;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 summv = _mm256_setzero_ps();
    _Alignas(32) float prod[8];
    for (int b = 0; b < nb; b++) {
        RK_TILE_PREFETCH(4, block_q4_1);
        const block_q4_1 *wb[4];
        uint32_t dm[4];
        for (int i = 0; i < 4; i++) {
            wb[i] = (const block_q4_1 *)(w + (size_t)i * wstride) + b;
            memcpy(&dm[i], wb[i], 4);
        }
        const __m256 scales = _mm256_cvtph_ps(_mm_setr_epi32((int)dm[0], (int)dm[1], (int)dm[2], (int)dm[3]));
        summv = _mm256_fmadd_ps(scales, _mm256_broadcast_ss(sx + (size_t)b * ts), summv);
        _mm256_store_ps(prod, _mm256_mul_ps(scales, _mm256_broadcast_ss(dx + (size_t)b * ts)));
        __asm__ volatile("" : : "r"(prod) : "memory");   // keep the broadcasts loads, not shuffles
        const __m256i qx = _mm256_loadu_si256((const __m256i *)((const block_q8_1 *)x + b)->qs);
        for (int i = 0; i < 4; i++)
            acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(prod + 2 * i), pair_q4_1(unpack_nibbles(wb[i]->qs), qx), acc[i]);
    }
    _Alignas(32) float lanes[8];
    _mm256_store_ps(lanes, summv);
    for (int i = 0; i < 4; i++) y[i] = hsum_ps(acc[i]) + lanes[2 * i + 1];
}

RK_AVX2 static inline __m256i loadw_q4_1(const block_q4_1 *b) { return unpack_nibbles(b->qs); }
RK_AVX2 static inline __m256i loadw_q4_0(const block_q4_0 *b) { return _mm256_sub_epi8(unpack_nibbles(b->qs), _mm256_set1_epi8(8)); }
RK_AVX2 static inline __m256i loadw_q8_0(const block_q8_0 *b) { return _mm256_loadu_si256((const __m256i *)b->qs); }
// Q5_0: the nibbles with the fifth bits from qh (bit e for element e), less 16, as ggml's bytes_from_bits_32 forms them.
RK_AVX2 static inline __m256i loadw_q5_0(const block_q5_0 *b) {
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
    return _mm256_or_si256(unpack_nibbles(b->qs), _mm256_andnot_si256(set, _mm256_set1_epi8((char)0xF0)));
}

// Row dots of the signed formats against Q8_0 (ggml_vec_dot_q{4,5,8}_0_q8_0 on AVX2): one FMA of d_w·d_x and the
// block's 8 lanes of int8 products per block, hsum at the end.
#define RK_SIGNED_ROW_DOT(NAME, WBLOCK, LOADW)                                                                    \
RK_AVX2 static float NAME(int n, const WBLOCK *w, const block_q8_0 *x) {                                          \
    __m256 acc = _mm256_setzero_ps();                                                                             \
    for (int b = 0; b < n / 32; b++) {                                                                            \
        const float d = half_to_float_avx(w[b].d) * half_to_float_avx(x[b].d);                                    \
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);                                          \
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), pair_signed(LOADW(&w[b]), qx), acc);                             \
    }                                                                                                             \
    return hsum_ps(acc);                                                                                          \
}
RK_SIGNED_ROW_DOT(dot_q8_0_q8_0_avx2, block_q8_0, loadw_q8_0)
RK_SIGNED_ROW_DOT(dot_q4_0_q8_0_avx2, block_q4_0, loadw_q4_0)
RK_SIGNED_ROW_DOT(dot_q5_0_q8_0_avx2, block_q5_0, loadw_q5_0)

RK_TILE_KERNEL(tile_q4_1_2x4, 2, 4, block_q4_1, block_q8_1, loadw_q4_1, pair_q4_1, 1, 0)
RK_TILE_KERNEL(tile_q4_0_2x4, 2, 4, block_q4_0, block_q8_0, loadw_q4_0, pair_signed, 0, 0)
RK_TILE_KERNEL(tile_q4_0_4x1, 4, 1, block_q4_0, block_q8_0, loadw_q4_0, pair_signed, 0, 0)
RK_TILE_KERNEL(tile_q8_0_2x4, 2, 4, block_q8_0, block_q8_0, loadw_q8_0, pair_signed, 0, 0)
RK_TILE_KERNEL(tile_q8_0_4x1, 4, 1, block_q8_0, block_q8_0, loadw_q8_0, pair_signed, 0, 0)
RK_TILE_KERNEL(tile_q5_0_2x4, 2, 4, block_q5_0, block_q8_0, loadw_q5_0, pair_signed, 0, 0)
RK_TILE_KERNEL(tile_q5_0_4x1, 4, 1, block_q5_0, block_q8_0, loadw_q5_0, pair_signed, 0, 0)
RK_AVX2 static inline __m256i loadw_u32(const block_u32 *b) { return _mm256_loadu_si256((const __m256i *)b->u); }
RK_TILE_KERNEL(tile_u32_2x4, 2, 4, block_u32, block_q8_0, loadw_u32, pair_signed, 0, 1)
RK_TILE_KERNEL(tile_u32_4x1, 4, 1, block_u32, block_q8_0, loadw_u32, pair_signed, 0, 1)

// `rows` rows of Q4_0 (type 2) or Q5_0 (type 6) as block_u32, row after row (once per prompt matmul, so the
// AVX2 form serves the AVX-512 tiles too).
RK_AVX2 static void unpack_rows_u32(int type, const char *w, size_t wstride, int rows, int nb, block_u32 *out) {
    const size_t block = type == 6 ? sizeof(block_q5_0) : sizeof(block_q4_0);
    for (int i = 0; i < rows; i++) {
        const char *row = w + (size_t)i * wstride;
        for (int b = 0; b < nb; b++) {
            const __m256i u = type == 6 ? _mm256_add_epi8(loadw_q5_0((const block_q5_0 *)row + b), _mm256_set1_epi8(16))
                                        : unpack_nibbles(((const block_q4_0 *)row + b)->qs);
            block_u32 *o = out + (size_t)i * nb + b;
            memcpy(&o->d, row + (size_t)b * block, 2);
            o->pad = 0;
            _mm256_storeu_si256((__m256i *)o->u, u);
        }
    }
}

// AVX-512 tiles: a pair of weight rows shares one 512-bit register (row 2p in lanes 0–7, row 2p+1 in lanes
// 8–15) against the activation block in both halves, and VNNI's vpdpbusd forms each int32 lane (four byte
// products) as maddubs + madd do: the pair sums stay below 2^15 for these formats, so nothing saturates.
// Every lane then takes the AVX2 tile's operations in its order, so the bits are the same. Q4_1 (unsigned
// weights; `extra` holds s_x, and each output's Σ m·s chain is lane 8h + j of summ[p] for row 2p + h, token j, or
// for one token lane 2p + h of summ1, one 256-bit FMA per block where decode reads the weights):
#define RK_TILE512_Q4_1_KERNEL(NAME, TR, TT)                                                                       \
RK_AVX512 static void NAME(int nb, const char *w, size_t wstride, const char *x, size_t xstride,                \
                           const float *dx, const void *extra, int ts, float *y, size_t ystride) {               \
    enum { NP = TR / 2 };                                                                                         \
    const float *sx = (const float *)extra;                                                                       \
    __m512 acc[NP][TT], summ[NP];                                                                                 \
    __m256 summ1 = _mm256_setzero_ps();                                                                           \
    for (int p = 0; p < NP; p++) for (int j = 0; j < TT; j++) acc[p][j] = _mm512_setzero_ps();                    \
    for (int p = 0; p < NP; p++) summ[p] = _mm512_setzero_ps();                                                   \
    for (int b = 0; b < nb; b++) {                                                                                \
        RK_TILE_PREFETCH(TR, block_q4_1);                                                                         \
        const __m512 scales = _mm512_castps256_ps512(tile_scales(w, wstride, (size_t)b * sizeof(block_q4_1), TR)); \
        __m512i qw[NP]; __m512 dw[NP];                                                                            \
        for (int p = 0; p < NP; p++) {                                                                            \
            qw[p] = nibbles2(((const block_q4_1 *)(w + (size_t)(2 * p) * wstride) + b)->qs,                       \
                             ((const block_q4_1 *)(w + (size_t)(2 * p + 1) * wstride) + b)->qs);                  \
            dw[p] = pair_scales(scales, p);                                                                       \
        }                                                                                                         \
        const __m512 sv = TT == 1 ? _mm512_setzero_ps()                                                           \
                                  : _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps((__mmask8)((1u << TT) - 1), sx + (size_t)b * ts)); \
        if (TT == 1)                                                                                              \
            summ1 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(_mm512_castps512_ps256(scales), _mm256_setr_epi32(1, 3, 5, 7, 7, 7, 7, 7)), \
                                    _mm256_set1_ps(sx[(size_t)b * ts]), summ1);                                   \
        else for (int p = 0; p < NP; p++)   /* m of rows 2p, 2p + 1: lanes 4p + 1, 4p + 3 of tile_scales */     \
            summ[p] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_set_epi32(4 * p + 3, 4 * p + 3, 4 * p + 3, 4 * p + 3, 4 * p + 3, 4 * p + 3, 4 * p + 3, 4 * p + 3, \
                                                                              4 * p + 1, 4 * p + 1, 4 * p + 1, 4 * p + 1, 4 * p + 1, 4 * p + 1, 4 * p + 1, 4 * p + 1), scales), \
                                      sv, summ[p]);                                                               \
        for (int j = 0; j < TT; j++) {                                                                            \
            const block_q8_1 *xb = (const block_q8_1 *)(x + (size_t)j * xstride) + b;                             \
            const __m512i qx = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xb->qs));               \
            const __m512 dxj = _mm512_set1_ps(dx[(size_t)b * ts + j]);                                            \
            for (int p = 0; p < NP; p++) {                                                                        \
                const __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qw[p], qx));    \
                acc[p][j] = _mm512_fmadd_ps(_mm512_mul_ps(dw[p], dxj), dot, acc[p][j]);                           \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    float one[8];                                                                                                 \
    _mm256_storeu_ps(one, summ1);                                                                                 \
    for (int p = 0; p < NP; p++) {                                                                                \
        float lanes[16];                                                                                          \
        _mm512_storeu_ps(lanes, summ[p]);                                                                         \
        for (int j = 0; j < TT; j++) {                                                                            \
            const float r[2] = {hsum_ps(_mm512_castps512_ps256(acc[p][j])), hsum_ps(_mm512_extractf32x8_ps(acc[p][j], 1))}; \
            for (int h = 0; h < 2; h++) y[(size_t)j * ystride + 2 * p + h] = r[h] + (TT == 1 ? one[2 * p + h] : lanes[8 * h + j]); \
        }                                                                                                         \
    }                                                                                                             \
}

// The signed formats (Q4_0, Q5_0, Q8_0) go in as the unsigned bytes the file stores, u = w + OFF (the raw
// nibble, the raw 5-bit value, w ^ 0x80), and each lane's vpdpbusd starts from −OFF·Σ of its four activations
// (`extra`: 8 int32 per token and block, made once per token by the driver), so the lane ends as the exact
// Σ w·x the AVX2 path forms: the same float steps, the same bits, and no sign work per weight or token. Four
// rows (two registers) per tile share each activation load.
#define RK_TILE512_OFFSET_KERNEL(NAME, TR, TT, WBLOCK, LOADU2, PREFETCH)                                         \
RK_AVX512 static void NAME(int nb, const char *w, size_t wstride, const char *x, size_t xstride,                \
                           const float *dx, const void *extra, int ts, float *y, size_t ystride) {               \
    enum { NP = TR / 2 };                                                                                         \
    const __m256i *corr = (const __m256i *)extra;                                                                 \
    __m512 acc[NP][TT];                                                                                           \
    for (int p = 0; p < NP; p++) for (int j = 0; j < TT; j++) acc[p][j] = _mm512_setzero_ps();                    \
    for (int b = 0; b < nb; b++) {                                                                                \
        if (PREFETCH) RK_TILE_PREFETCH(TR, WBLOCK);                                                               \
        const __m512 scales = _mm512_castps256_ps512(tile_scales(w, wstride, (size_t)b * sizeof(WBLOCK), TR));   \
        __m512i qw[NP]; __m512 dw[NP];                                                                            \
        for (int p = 0; p < NP; p++) {                                                                            \
            qw[p] = LOADU2((const WBLOCK *)(w + (size_t)(2 * p) * wstride) + b, (const WBLOCK *)(w + (size_t)(2 * p + 1) * wstride) + b); \
            dw[p] = pair_scales(scales, p);                                                                       \
        }                                                                                                         \
        for (int j = 0; j < TT; j++) {                                                                            \
            const block_q8_0 *xb = (const block_q8_0 *)(x + (size_t)j * xstride) + b;                             \
            const __m512i qx = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xb->qs));               \
            const __m512i cj = _mm512_broadcast_i64x4(_mm256_loadu_si256(corr + (size_t)b * ts + j));             \
            const __m512 dxj = _mm512_set1_ps(dx[(size_t)b * ts + j]);                                            \
            for (int p = 0; p < NP; p++) {                                                                        \
                const __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(cj, qw[p], qx));                        \
                acc[p][j] = _mm512_fmadd_ps(_mm512_mul_ps(dw[p], dxj), dot, acc[p][j]);                           \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    for (int p = 0; p < NP; p++) for (int j = 0; j < TT; j++) {                                                   \
        y[(size_t)j * ystride + 2 * p] = hsum_ps(_mm512_castps512_ps256(acc[p][j]));                              \
        y[(size_t)j * ystride + 2 * p + 1] = hsum_ps(_mm512_extractf32x8_ps(acc[p][j], 1));                       \
    }                                                                                                             \
}

// Block `off` of rows 0…rows-1 (2 or 4): its first two halves (d, and Q4_1's m) as floats, row i in lanes 2i, 2i + 1.
RK_AVX512 static inline __m256 tile_scales(const char *w, size_t wstride, size_t off, int rows) {
    int32_t h[4] = {0, 0, 0, 0};
    for (int i = 0; i < rows; i++) memcpy(&h[i], w + (size_t)i * wstride + off, 4);
    return _mm256_cvtph_ps(_mm_set_epi32(h[3], h[2], h[1], h[0]));
}

// Rows 2p and 2p + 1's d (lanes 4p and 4p + 2 of tile_scales), each across its half of a 512-bit register.
RK_AVX512 static inline __m512 pair_scales(__m512 scales, int p) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(4 * p + 2, 4 * p + 2, 4 * p + 2, 4 * p + 2, 4 * p + 2, 4 * p + 2, 4 * p + 2, 4 * p + 2,
                                                  4 * p, 4 * p, 4 * p, 4 * p, 4 * p, 4 * p, 4 * p, 4 * p), scales);
}

// Two rows' 32 weights as bytes, row a in the low 256 bits: nibble formats put each row's 16 bytes in both
// 128-bit halves and shift the upper copy by 4 (low nibbles are elements 0–15, high nibbles 16–31).
RK_AVX512 static inline __m512i nibbles2(const uint8_t *a, const uint8_t *b) {
    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a))),
                                            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b)), 1);
    const __m512i shifts = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi16(both, shifts), _mm512_set1_epi8(0x0f));
}
// The stored (unsigned) bytes of two rows: Q4_0's nibbles (w + 8), Q8_0's w ^ 0x80 (w + 128), Q5_0's nibble with
// its fifth bit from qh (w + 16; bit e of qh for element e, as ggml's bytes_from_bits_32 spreads it).
RK_AVX512 static inline __m512i loadu2_q4_0(const block_q4_0 *a, const block_q4_0 *b) { return nibbles2(a->qs, b->qs); }
RK_AVX512 static inline __m512i loadu2_q8_0(const block_q8_0 *a, const block_q8_0 *b) {
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a->qs)),
                                               _mm256_loadu_si256((const __m256i *)b->qs), 1), _mm512_set1_epi8((char)0x80));
}
RK_AVX512 static inline __m512i loadu2_q5_0(const block_q5_0 *a, const block_q5_0 *b) {
    uint32_t ha, hb;
    memcpy(&ha, a->qh, 4);
    memcpy(&hb, b->qh, 4);
    const __mmask64 high = (__mmask64)ha | (__mmask64)hb << 32;
    const __m512i q = nibbles2(a->qs, b->qs);
    return _mm512_mask_add_epi8(q, high, q, _mm512_set1_epi8(16));
}

RK_TILE512_Q4_1_KERNEL(tile512_q4_1_4x8, 4, 8)
RK_TILE512_Q4_1_KERNEL(tile512_q4_1_4x4, 4, 4)
RK_TILE512_Q4_1_KERNEL(tile512_q4_1_4x1, 4, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q4_0_4x4, 4, 4, block_q4_0, loadu2_q4_0, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q4_0_4x1, 4, 1, block_q4_0, loadu2_q4_0, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q4_0_4x8, 4, 8, block_q4_0, loadu2_q4_0, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q8_0_4x4, 4, 4, block_q8_0, loadu2_q8_0, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q8_0_4x1, 4, 1, block_q8_0, loadu2_q8_0, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q8_0_4x8, 4, 8, block_q8_0, loadu2_q8_0, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q5_0_4x4, 4, 4, block_q5_0, loadu2_q5_0, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q5_0_4x1, 4, 1, block_q5_0, loadu2_q5_0, 1)
RK_TILE512_OFFSET_KERNEL(tile512_q5_0_4x8, 4, 8, block_q5_0, loadu2_q5_0, 1)

RK_AVX512 static inline __m512i loadu2_u32(const block_u32 *a, const block_u32 *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a->u)), _mm256_loadu_si256((const __m256i *)b->u), 1);
}
RK_TILE512_OFFSET_KERNEL(tile512_u32_4x8, 4, 8, block_u32, loadu2_u32, 0)
RK_TILE512_OFFSET_KERNEL(tile512_u32_4x4, 4, 4, block_u32, loadu2_u32, 0)
RK_TILE512_OFFSET_KERNEL(tile512_u32_4x1, 4, 1, block_u32, loadu2_u32, 0)

// −offset × the sum of each lane's four activation bytes (8 lanes): where the AVX-512 tiles start a lane that
// multiplies stored bytes u = w + offset, so that it ends at Σ w·x. |x| ≤ 127 keeps maddubs' int16 pairs exact.
RK_AVX2 static inline __m256i lane_offsets(int offset, const block_q8_0 *x) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8((char)offset), _mm256_loadu_si256((const __m256i *)x->qs));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(-1));
}

typedef void (*tile_fn)(int, const char *, size_t, const char *, size_t, const float *, const void *, int, float *, size_t);
typedef struct { tile_fn tile; int tokens; } tile_tier;

// Rows [0, rows) (a multiple of 4) × tokens [t0, t1), the activation table made from token t0 with column stride
// ts (`extra` advancing extra_bytes a column): tiers of `tile_rows` rows × 8 or 4 tokens (token groups outer, so
// a group's activations stay in L1 while the rows pass), then the narrow tile (4 rows × 1 token) for the rest.
RK_AVX2 static void run_tiles(const tile_tier tiers[2], int tile_rows, tile_fn narrow, int nb, const char *w, size_t wstride, int rows,
                              const char *x, size_t xstride, int t0, int t1, const float *dx, const char *extra, size_t extra_bytes,
                              int ts, float *y, size_t ystride) {
    int t = t0;
    for (int k = 0; k < 2; k++)
        for (; tiers[k].tile && t + tiers[k].tokens <= t1; t += tiers[k].tokens)
            for (int r = 0; r < rows; r += tile_rows)
                tiers[k].tile(nb, w + (size_t)r * wstride, wstride, x + (size_t)t * xstride, xstride, dx + (t - t0),
                              extra + (size_t)(t - t0) * extra_bytes, ts, y + (size_t)t * ystride + r, ystride);
    for (; t < t1; t++)
        for (int r = 0; r < rows; r += 4)
            narrow(nb, w + (size_t)r * wstride, wstride, x + (size_t)t * xstride, xstride, dx + (t - t0),
                   extra + (size_t)(t - t0) * extra_bytes, ts, y + (size_t)t * ystride + r, ystride);
}

// Rows [r0, r1) × all tokens with the tiles; rows past the last multiple of 4 take the row-dot.
RK_AVX2 static void matmul_quant_tiled(int type, const char *w, size_t wstride, int r0, int r1,
                                       const char *x, size_t xstride, int ntok, float *y, size_t ystride, int n,
                                       quant_dot_fn dot) {
    tile_fn wider = NULL, big, narrow;   // big_rows × 8 tokens, big_rows × 4, 4 × 1
    const int wide = rk_simd_level() >= 2;
    switch (type) {
    case 2: big = wide ? tile512_q4_0_4x4 : tile_q4_0_2x4; narrow = wide ? tile512_q4_0_4x1 : tile_q4_0_4x1; if (wide) wider = tile512_q4_0_4x8; break;
    case 3: big = wide ? tile512_q4_1_4x4 : tile_q4_1_2x4; narrow = wide ? tile512_q4_1_4x1 : tile_q4_1_4x1; if (wide) wider = tile512_q4_1_4x8; break;
    case 6: big = wide ? tile512_q5_0_4x4 : tile_q5_0_2x4; narrow = wide ? tile512_q5_0_4x1 : tile_q5_0_4x1; if (wide) wider = tile512_q5_0_4x8; break;
    default: big = wide ? tile512_q8_0_4x4 : tile_q8_0_2x4; narrow = wide ? tile512_q8_0_4x1 : tile_q8_0_4x1; if (wide) wider = tile512_q8_0_4x8; break;
    }
    // Q4_0/Q5_0 in a prompt: each chunk of rows (about 32 KB unpacked) is unpacked once and meets every token, the
    // table covering all of them. Otherwise token blocks of 32 keep their table in L2 while every row passes.
    const int unpack = (type == 2 || type == 6) && ntok >= 32;
    // The AVX-512 tiles of the signed formats and every unpacked tile take stored bytes u = w + offset and start
    // each lane at −offset·Σx.
    const int offset = type == 3 || !(wide || unpack) ? 0 : type == 2 ? 8 : type == 6 ? 16 : 128;
    const int big_rows = wide ? 4 : 2, nb = n / 32, r4 = r0 + (r1 - r0) / 4 * 4;
    const int TB = unpack ? ntok : 32;
    const int fit = (32768 / (nb * (int)sizeof(block_u32))) & ~3, chunk_rows = fit > 4 ? fit : 4;
    // Per token and block the table holds d_x, then Q4_1's s_x or the signed formats' 8 lane offsets; then the
    // unpacked rows.
    static __thread void *table_tls = NULL;
    static __thread size_t table_cap = 0;
    const size_t need = (size_t)nb * TB * 9 + (unpack ? (size_t)chunk_rows * nb * sizeof(block_u32) / sizeof(float) : 0);
    float *table = grow_scratch(&table_tls, &table_cap, need * sizeof(float));
    float *dx = table, *sx = table + (size_t)nb * TB;
    int32_t *corr = (int32_t *)sx;
    block_u32 *rows_u32 = (block_u32 *)(table + (size_t)nb * TB * 9);
    const tile_tier tiers[2] = {{wider, 8}, {big, 4}};
    const char *extra = offset ? (const char *)corr : (const char *)sx;
    const size_t extra_bytes = offset ? 32 : sizeof(float);
    for (int t0 = 0; t0 < ntok; t0 += TB) {
        const int t1 = t0 + TB < ntok ? t0 + TB : ntok;
        for (int t = t0; t < t1; t++) {
            const char *xt = x + (size_t)t * xstride;
            for (int b = 0; b < nb; b++) {
                if (type == 3) {
                    const block_q8_1 *xb = (const block_q8_1 *)xt + b;
                    dx[b * TB + (t - t0)] = _cvtsh_ss(xb->d);
                    sx[b * TB + (t - t0)] = _cvtsh_ss(xb->s);
                } else {
                    const block_q8_0 *xb = (const block_q8_0 *)xt + b;
                    dx[b * TB + (t - t0)] = _cvtsh_ss(xb->d);
                    if (offset) _mm256_storeu_si256((__m256i *)(corr + ((size_t)b * TB + (t - t0)) * 8), lane_offsets(offset, xb));
                }
            }
        }
        if (unpack) {
            const tile_tier unpacked[2] = {{wide ? tile512_u32_4x8 : tile_u32_2x4, wide ? 8 : 4}, {wide ? tile512_u32_4x4 : NULL, 4}};
            for (int rc = r0; rc < r4; rc += chunk_rows) {
                const int rows = r4 - rc < chunk_rows ? r4 - rc : chunk_rows;
                unpack_rows_u32(type, w + (size_t)rc * wstride, wstride, rows, nb, rows_u32);
                run_tiles(unpacked, big_rows, wide ? tile512_u32_4x1 : tile_u32_4x1, nb, (const char *)rows_u32, (size_t)nb * sizeof(block_u32), rows,
                          x, xstride, t0, t1, dx, extra, extra_bytes, TB, y + rc, ystride);
            }
        } else {
            run_tiles(tiers, big_rows, narrow, nb, w + (size_t)r0 * wstride, wstride, r4 - r0, x, xstride, t0, t1, dx, extra, extra_bytes,
                      TB, y + r0, ystride);
        }
        for (int t = t0; t < t1; t++)
            for (int r = r4; r < r1; r++) y[(size_t)t * ystride + r] = dot(n, w + (size_t)r * wstride, x + (size_t)t * xstride);
    }
}
#endif

// ---- K-quants against Q8_K activations (Q4_K, Q5_K, Q6_K) ----
// llama.cpp quantizes activations per 256-block with quantize_row_q8_K_ref (its x86 quantize_row_q8_K) and takes
// each output as one ggml_vec_dot_q{4,5,6}_K_q8_K. Its AVX2 kernels sum the integer products of a super-block in
// 8 int32 lanes (lane l holds the elements e with e % 32 / 4 == l, each product times its sub-block scale), then:
//   acc[l] = fma(d_x·d_w, float(lane l), acc[l]) for every super-block, result = hsum_float_8(acc) plus
//   Q4_K: 4 lanes accm[k] = fma(−d_x·dmin_w, float(m[2k]·Σx(2k) + m[2k+1]·Σx(2k+1)), accm[k]), added as
//         (accm0 + accm2) + (accm1 + accm3) (Σx(s): the activations' sum over sub-block s, from bsums);
//   Q5_K: one scalar summs = fma(−d_x·dmin_w, float(Σ_s m[s]·Σx(s)), summs) (GCC contracts `summs += dmin * i`);
//   Q6_K: nothing; its lanes hold the products of the unsigned 6-bit values, and the −32 offset is taken off
//         lane m as 32·(Σx(2m)·scale[2m] + Σx(2m+1)·scale[2m+1]) (Σx(j): activations' sum over elements 16j..16j+15).
// The integer lanes are exact whatever the order, so the portable path gives the same bits with plain loops.

// ggml's nearest_int: round to nearest, ties to even, through the mantissa of x + 1.5·2^23 (|x| < 2^22).
static inline int nearest_int(float x) {
    const float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

// `positive_ties`: the sign of the largest magnitude is + whenever +amax occurs (ggml_quantize_mat_q8_K_4x8's AVX2
// masks), instead of the sign of its first occurrence (quantize_row_q8_K_ref). Nothing else differs: its
// _mm256_round_ps is nearest-even as nearest_int, its saturating packs never bind below −127.
static void quantize_q8_K(const float *x, void *vy, int n, int positive_ties) {
#pragma clang fp contract(off)
    block_q8_K *y = (block_q8_K *)vy;
    for (int b = 0; b < n / 256; b++, x += 256) {
        float max = 0, amax = 0;   // the first element of the largest magnitude, with its sign
        for (int j = 0; j < 256; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (positive_ties && max < 0)
            for (int j = 0; j < 256; j++)
                if (x[j] == amax) { max = amax; break; }
        memset(y[b].bsums, 0, sizeof y[b].bsums);
        if (amax == 0) {
            y[b].d = 0;
            memset(y[b].qs, 0, 256);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < 256; j++) {
            const float v = iscale * x[j];
            const int q = nearest_int(v);
            y[b].qs[j] = (int8_t)(q < 127 ? q : 127);
            y[b].bsums[j / 16] += y[b].qs[j];
        }
        y[b].d = 1 / iscale;
    }
}

#if RK_X86
// quantize_q8_K 16 at a time: the same first-largest element, the same products and nearest_int steps, and the
// int8 store truncating as the scalar cast does.
RK_AVX512 static void quantize_q8_K_avx512(const float *x, void *vy, int n, int positive_ties) {
#pragma clang fp contract(off)
    block_q8_K *y = (block_q8_K *)vy;
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int b = 0; b < n / 256; b++, x += 256) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < 256; j += 16) m = _mm512_max_ps(_mm512_and_ps(_mm512_loadu_ps(x + j), abs_mask), m);   // NaN lanes keep m
        const float amax = _mm512_reduce_max_ps(m);
        if (amax == 0) {
            memset(y[b].bsums, 0, sizeof y[b].bsums);
            y[b].d = 0;
            memset(y[b].qs, 0, 256);
            continue;
        }
        float max = amax;
        for (int j = 0; j < 256; j += 16) {
            const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_loadu_ps(x + j), abs_mask), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (hit) { max = x[j + __builtin_ctz(hit)]; break; }
        }
        if (positive_ties && max < 0)
            for (int j = 0; j < 256; j += 16)
                if (_mm512_cmp_ps_mask(_mm512_loadu_ps(x + j), _mm512_set1_ps(amax), _CMP_EQ_OQ)) { max = amax; break; }
        const float iscale = -127.f / max;
        const __m512 iv = _mm512_set1_ps(iscale);
        for (int j = 0; j < 256; j += 16) {
            const __m512 v = _mm512_add_ps(_mm512_mul_ps(iv, _mm512_loadu_ps(x + j)), _mm512_set1_ps(12582912.f));
            __m512i q = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x00400000));
            q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(y[b].qs + j), _mm512_cvtepi32_epi8(q));
            y[b].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(_mm512_cvtepi32_epi8(q)));
        }
        y[b].d = 1 / iscale;
    }
}
#define RK_Q8_K(x, y, n, ties) (rk_simd_level() >= 2 ? quantize_q8_K_avx512 : quantize_q8_K)(x, y, n, ties)
#else
#define RK_Q8_K(x, y, n, ties) quantize_q8_K(x, y, n, ties)
#endif
void rk_quantize_row_q8_K(const float *x, void *y, int n) { RK_Q8_K(x, y, n, 0); }
void rk_quantize_row_q8_K_x4(const float *x, void *y, int n) { RK_Q8_K(x, y, n, 1); }
#undef RK_Q8_K

// The 6-bit scales (bytes 0–7) and mins (bytes 8–15) of Q4_K/Q5_K's eight sub-blocks (ggml's get_scale_min_k4).
static inline void scales_mins_k4(const uint8_t *q, uint8_t sm[16]) {
    for (int j = 0; j < 4; j++) {
        sm[j] = q[j] & 63;
        sm[8 + j] = q[j + 4] & 63;
        sm[4 + j] = (q[j + 8] & 15) | (q[j] >> 6) << 4;
        sm[12 + j] = (q[j + 8] >> 4) | (q[j + 4] >> 6) << 4;
    }
}

// Q4_K/Q5_K's min terms as _mm_madd_epi16 pairs them: out[k] = m[2k]·Σx(2k) + m[2k+1]·Σx(2k+1).
static inline void min_pairs(const uint8_t sm[16], const int16_t bsums[16], int32_t out[4]) {
    for (int k = 0; k < 4; k++)
        out[k] = sm[8 + 2 * k] * (bsums[4 * k] + bsums[4 * k + 1]) + sm[9 + 2 * k] * (bsums[4 * k + 2] + bsums[4 * k + 3]);
}

// One super-block's 8 integer lanes. Q4_K and Q5_K share a layout (qh NULL for Q4_K): sub-block s is nibble s % 2
// of qs[32·(s / 2) + e % 32], Q5_K's fifth bit is bit s of qh[e % 32].
static void lanes_k4_portable(const uint8_t sm[16], const uint8_t *qs, const uint8_t *qh, const int8_t *q8, int32_t lane[8]) {
    for (int l = 0; l < 8; l++) lane[l] = 0;
    for (int e = 0; e < 256; e++) {
        const int s = e / 32, i = e % 32;
        const int q = ((qs[32 * (s / 2) + i] >> (4 * (s % 2))) & 15) | (qh ? ((qh[i] >> s) & 1) << 4 : 0);
        lane[i / 4] += sm[s] * q * q8[e];
    }
}

// Q6_K: element e = 128g + r has low bits nibble r / 64 of ql[64g + r % 64], high bits 2·(r / 32) of qh[32g + r % 32],
// value q − 32, scale scales[e / 16]. The lanes sum scale·q·x; the offset comes off per lane from the activations' sums
// of 16, as ggml's AVX2 kernel pairs them (lane m: groups 2m and 2m + 1).
static void q6_K_offsets(const block_q6_K *w, const int16_t bsums[16], int32_t lane[8]) {
    for (int m = 0; m < 8; m++) lane[m] -= 32 * (bsums[2 * m] * w->scales[2 * m] + bsums[2 * m + 1] * w->scales[2 * m + 1]);
}

static void lanes_q6_K_portable(const block_q6_K *w, const int8_t *q8, const int16_t bsums[16], int32_t lane[8]) {
    for (int l = 0; l < 8; l++) lane[l] = 0;
    for (int e = 0; e < 256; e++) {
        const int g = e / 128, r = e % 128;
        const int q = ((w->ql[64 * g + r % 64] >> (4 * (r / 64))) & 15) | ((w->qh[32 * g + r % 32] >> (2 * (r / 32))) & 3) << 4;
        lane[e % 32 / 4] += w->scales[e / 16] * q * q8[e];
    }
    q6_K_offsets(w, bsums, lane);
}

#if RK_X86
// The same lanes with ggml's AVX2 integer steps (maddubs then madd with the sub-block scale; no step saturates:
// pairs of products stay below 2^15 for these formats and |q8| ≤ 127).
RK_AVX2 static void lanes_k4_avx2(const uint8_t sm[16], const uint8_t *qs, const uint8_t *qh, const int8_t *q8, int32_t lane[8]) {
    const __m256i m4 = _mm256_set1_epi8(15), hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        __m256i q[2] = {_mm256_and_si256(bits, m4), _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4)};
        for (int h = 0; h < 2; h++) {
            const __m256i bit = _mm256_set1_epi8((char)(1 << (2 * j + h)));
            if (qh) q[h] = _mm256_or_si256(q[h], _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), bit), _mm256_set1_epi8(16)));
            const __m256i p16 = _mm256_maddubs_epi16(q[h], _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32 * h)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_set1_epi16(sm[2 * j + h]), p16));
        }
    }
    _mm256_storeu_si256((__m256i *)lane, sumi);
}

// A Q6_K super-block's values as 8 vectors of 32 (q[k] holds elements 32k … 32k + 31, unsigned 0…63).
RK_AVX2 static inline void unpack_q6_K_avx2(const block_q6_K *w, __m256i q[8]) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    for (int g = 0; g < 2; g++) {
        const __m256i low[2] = {_mm256_loadu_si256((const __m256i *)(w->ql + 64 * g)), _mm256_loadu_si256((const __m256i *)(w->ql + 64 * g + 32))};
        const __m256i high = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * g));
        for (int j = 0; j < 4; j++) {
            const __m256i lo = _mm256_and_si256(j < 2 ? low[j] : _mm256_srli_epi16(low[j - 2], 4), m4);
            const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(high, _mm_cvtsi32_si128(2 * j)), m3), 4);
            q[4 * g + j] = _mm256_or_si256(lo, hi);
        }
    }
}

// The lanes of one Q6_K super-block against the activations q8 (scale of elements 0–15 of each 32, then 16–31).
RK_AVX2 static inline void lanes_q6_K_unpacked_avx2(const block_q6_K *w, const __m256i q[8], const int8_t *q8,
                                                    const int16_t bsums[16], int32_t lane[8]) {
    __m256i sumi = _mm256_setzero_si256();
    for (int k = 0; k < 8; k++) {
        const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(w->scales[2 * k + 1]), _mm_set1_epi16(w->scales[2 * k]));
        const __m256i p16 = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(q8 + 32 * k)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale, p16));
    }
    _mm256_storeu_si256((__m256i *)lane, sumi);
    q6_K_offsets(w, bsums, lane);
}

RK_AVX2 static void lanes_q6_K_avx2(const block_q6_K *w, const int8_t *q8, const int16_t bsums[16], int32_t lane[8]) {
    __m256i q[8];
    unpack_q6_K_avx2(w, q);
    lanes_q6_K_unpacked_avx2(w, q, q8, bsums, lane);
}
#endif

// The float steps of the K-quant dots (kind 4, 5, 6), around each level's integer lanes.
#define RK_K_DOT(NAME, ATTRIBUTES, TO_FLOAT, LANES_K4, LANES_Q6)                                                   \
ATTRIBUTES static float NAME(int kind, int n, const void *w, const void *vx) {                                    \
    _Pragma("clang fp contract(off)")                                                                             \
    const block_q8_K *x = (const block_q8_K *)vx;                                                                 \
    float acc[8] = {0}, accm[4] = {0}, summs = 0;                                                                 \
    for (int b = 0; b < n / 256; b++) {                                                                           \
        int32_t lane[8], mins[4];                                                                                 \
        float d, dmin = 0;                                                                                        \
        if (kind == 6) {                                                                                          \
            const block_q6_K *wb = (const block_q6_K *)w + b;                                                     \
            LANES_Q6(wb, x[b].qs, x[b].bsums, lane);                                                              \
            d = x[b].d * TO_FLOAT(wb->d);                                                                         \
        } else {                                                                                                  \
            const block_q4_K *w4 = (const block_q4_K *)w + b;                                                     \
            const block_q5_K *w5 = (const block_q5_K *)w + b;                                                     \
            if (kind == 5) w4 = (const block_q4_K *)w5;   /* Q5_K's d, dmin and scales lie as Q4_K's */           \
            uint8_t sm[16];                                                                                       \
            scales_mins_k4(w4->scales, sm);                                                                       \
            if (kind == 4) LANES_K4(sm, w4->qs, NULL, x[b].qs, lane); else LANES_K4(sm, w5->qs, w5->qh, x[b].qs, lane); \
            min_pairs(sm, x[b].bsums, mins);                                                                      \
            d = x[b].d * TO_FLOAT(w4->d);                                                                         \
            dmin = -x[b].d * TO_FLOAT(w4->dmin);                                                                  \
        }                                                                                                         \
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);                                     \
        if (kind == 4) for (int k = 0; k < 4; k++) accm[k] = fmaf(dmin, (float)mins[k], accm[k]);                 \
        if (kind == 5) summs = fmaf(dmin, (float)((mins[0] + mins[1]) + (mins[2] + mins[3])), summs);             \
    }                                                                                                             \
    const float s = hsum8_batched(acc);                                                                           \
    return kind == 4 ? s + ((accm[0] + accm[2]) + (accm[1] + accm[3])) : kind == 5 ? s + summs : s;               \
}
RK_K_DOT(dot_k_portable, , half_to_float, lanes_k4_portable, lanes_q6_K_portable)
#if RK_X86
RK_K_DOT(dot_k_avx2, RK_AVX2, half_to_float_avx, lanes_k4_avx2, lanes_q6_K_avx2)
#endif

// ---- K-quants in a batch: llama.cpp's tiled K-quant matmul ----
// For ≥ 8 activation rows, ggml_compute_forward_mul_mat hands Q4_K (when not repacked), Q5_K and Q6_K matrices to
// ggml-cpu/tiled (tiled_run_microtile_avx2), which sums each super-block's integer products in full before any float
// step: per super-block the exact dot S (Q6_K: with its −32 offset; Q4_K/Q5_K: Σ scale·q·x, and the min term
// M = Σ_s min_s·Σx(s)), then res = d_w·float(S), Q4_K/Q5_K: res = fma(−dmin_w, float(M), res), and
// acc = fma(res, d_x, acc) from acc = 0, super-blocks in order. The lanes give S exactly whatever their split.
#define RK_K_TILED(NAME, ATTRIBUTES, TO_FLOAT, LANES_K4, LANES_Q6)                                                 \
ATTRIBUTES static float NAME(int kind, int n, const void *w, const void *vx) {                                    \
    _Pragma("clang fp contract(off)")                                                                             \
    const block_q8_K *x = (const block_q8_K *)vx;                                                                 \
    float acc = 0;                                                                                                \
    for (int b = 0; b < n / 256; b++) {                                                                           \
        int32_t lane[8], mins[4] = {0};                                                                           \
        float res;                                                                                                \
        if (kind == 6) {                                                                                          \
            const block_q6_K *wb = (const block_q6_K *)w + b;                                                     \
            LANES_Q6(wb, x[b].qs, x[b].bsums, lane);                                                              \
            res = TO_FLOAT(wb->d) * (float)sum_lanes(lane);                                                       \
        } else {                                                                                                  \
            const block_q4_K *w4 = (const block_q4_K *)w + b;                                                     \
            const block_q5_K *w5 = (const block_q5_K *)w + b;                                                     \
            if (kind == 5) w4 = (const block_q4_K *)w5;                                                           \
            uint8_t sm[16];                                                                                       \
            scales_mins_k4(w4->scales, sm);                                                                       \
            if (kind == 4) LANES_K4(sm, w4->qs, NULL, x[b].qs, lane); else LANES_K4(sm, w5->qs, w5->qh, x[b].qs, lane); \
            min_pairs(sm, x[b].bsums, mins);                                                                      \
            res = TO_FLOAT(w4->d) * (float)sum_lanes(lane);                                                       \
            res = fmaf(-TO_FLOAT(w4->dmin), (float)(mins[0] + mins[1] + mins[2] + mins[3]), res);                 \
        }                                                                                                         \
        acc = fmaf(res, x[b].d, acc);                                                                             \
    }                                                                                                             \
    return acc;                                                                                                   \
}

static inline int32_t sum_lanes(const int32_t lane[8]) {
    int32_t s = 0;
    for (int l = 0; l < 8; l++) s += lane[l];
    return s;
}

RK_K_TILED(dot_k_tiled_portable, , half_to_float, lanes_k4_portable, lanes_q6_K_portable)
#if RK_X86
RK_K_TILED(dot_k_tiled_avx2, RK_AVX2, half_to_float_avx, lanes_k4_avx2, lanes_q6_K_avx2)
#endif

#if RK_X86
// dot_k_tiled for Q6_K and up to 4 tokens at once: each super-block's 6-bit values are unpacked once for all of
// them; every token's integer S and float steps are dot_k_tiled's, so the bits are too.
RK_AVX2 static void dot4_q6_K_tiled_avx2(int n, const void *w, const char *x, size_t xstride, int ntok, const int gemm[4],
                                         float out[4]) {
#pragma clang fp contract(off)
    (void)gemm;   // one order for every token
    const block_q6_K *wb = (const block_q6_K *)w;
    float acc[4] = {0};
    for (int b = 0; b < n / 256; b++) {
        __m256i q[8];
        unpack_q6_K_avx2(wb + b, q);
        const float dw = half_to_float_avx(wb[b].d);
        for (int t = 0; t < ntok; t++) {
            const block_q8_K *xt = (const block_q8_K *)(x + (size_t)t * xstride) + b;
            int32_t lane[8];
            lanes_q6_K_unpacked_avx2(wb + b, q, xt->qs, xt->bsums, lane);
            acc[t] = fmaf(dw * (float)sum_lanes(lane), xt->d, acc[t]);
        }
    }
    for (int t = 0; t < ntok; t++) out[t] = acc[t];
}
#endif

// ---- Q4_K as llama.cpp's CPU_REPACK buffer computes it ----
// On an AVX2 build, ggml_repack_get_optimal_repack_type stores every Q4_K matrix whose row count is a multiple of 8
// as block_q4_Kx8 (8 rows interleaved) and multiplies it with ggml_gemv_q4_K_8x8_q8_K (one activation row) or
// ggml_gemm_q4_K_8x8_q8_K (4 activation rows at a time). Both form, per pair p of sub-blocks (2p, 2p+1), the exact
// integers I_p = Σ scale·q·q8 and M_p = m[2p]·Σx(2p) + m[2p+1]·Σx(2p+1), and one f32 accumulator each for d and dmin:
//   gemv: per super-block  acc = fma(float(I_0+I_1+I_2+I_3), d_w·d_x, acc), accm = fma(float(M_0+…+M_3), dmin_w·d_x, accm);
//   gemm: per pair p       acc = fma(float(I_p), d_w·d_x, acc),            accm = fma(float(M_p), dmin_w·d_x, accm);
// and return acc − accm. (The integers are exact in any order: no int16 step exceeds 16 products of ≤ 15·127.)
static void pairs_q4_K_portable(const uint8_t sm[16], const uint8_t *qs, const int8_t *q8, int32_t out[4]) {
    for (int p = 0; p < 4; p++) {
        int32_t lo = 0, hi = 0;
        for (int i = 0; i < 32; i++) {
            lo += (qs[32 * p + i] & 15) * q8[64 * p + i];
            hi += (qs[32 * p + i] >> 4) * q8[64 * p + 32 + i];
        }
        out[p] = sm[2 * p] * lo + sm[2 * p + 1] * hi;
    }
}

#if RK_X86
// The sums of four vectors of 8 int32 lanes, out[i] = Σ lanes of s[i] (exact: integer additions in any order).
RK_AVX2 static inline void hsum4_epi32(const __m256i s[4], int32_t out[4]) {
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    _mm_storeu_si128((__m128i *)out, _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)));
}

RK_AVX2 static void pairs_q4_K_avx2(const uint8_t sm[16], const uint8_t *qs, const int8_t *q8, int32_t out[4]) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i s[4];
    for (int p = 0; p < 4; p++) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
        const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(bits, m4), _mm256_loadu_si256((const __m256i *)(q8 + 64 * p)));
        const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), _mm256_loadu_si256((const __m256i *)(q8 + 64 * p + 32)));
        s[p] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_set1_epi16(sm[2 * p]), lo), _mm256_madd_epi16(_mm256_set1_epi16(sm[2 * p + 1]), hi));
    }
    hsum4_epi32(s, out);
}

// dot_q4_K_repacked for up to 4 tokens at once (x rows `xstride` bytes apart, token t in the gemm order when
// gemm[t]): each super-block's scales and nibbles are unpacked once for all of them; every token's integers and
// float steps are dot_q4_K_repacked's, so the bits are too.
RK_AVX2 static void dot4_q4_K_repacked_avx2(int n, const void *w, const char *x, size_t xstride, int ntok, const int gemm[4],
                                            float out[4]) {
#pragma clang fp contract(off)
    const block_q4_K *wb = (const block_q4_K *)w;
    const __m256i m4 = _mm256_set1_epi8(15);
    float acc[4] = {0}, accm[4] = {0};
    for (int b = 0; b < n / 256; b++) {
        uint8_t sm[16];
        scales_mins_k4(wb[b].scales, sm);
        __m256i lo[4], hi[4];
        for (int p = 0; p < 4; p++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(wb[b].qs + 32 * p));
            lo[p] = _mm256_and_si256(bits, m4);
            hi[p] = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        }
        const float dw = half_to_float_avx(wb[b].d), dminw = half_to_float_avx(wb[b].dmin);
        for (int t = 0; t < ntok; t++) {
            const block_q8_K *xt = (const block_q8_K *)(x + (size_t)t * xstride) + b;
            __m256i s[4];
            for (int p = 0; p < 4; p++) {
                const __m256i l = _mm256_maddubs_epi16(lo[p], _mm256_loadu_si256((const __m256i *)(xt->qs + 64 * p)));
                const __m256i h = _mm256_maddubs_epi16(hi[p], _mm256_loadu_si256((const __m256i *)(xt->qs + 64 * p + 32)));
                s[p] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_set1_epi16(sm[2 * p]), l), _mm256_madd_epi16(_mm256_set1_epi16(sm[2 * p + 1]), h));
            }
            int32_t I[4], M[4];
            hsum4_epi32(s, I);
            min_pairs(sm, xt->bsums, M);
            const float d = dw * xt->d, dmin = dminw * xt->d;
            if (gemm[t]) {
                for (int p = 0; p < 4; p++) {
                    acc[t] = fmaf((float)I[p], d, acc[t]);
                    accm[t] = fmaf((float)M[p], dmin, accm[t]);
                }
            } else {
                acc[t] = fmaf((float)(I[0] + I[1] + I[2] + I[3]), d, acc[t]);
                accm[t] = fmaf((float)(M[0] + M[1] + M[2] + M[3]), dmin, accm[t]);
            }
        }
    }
    for (int t = 0; t < ntok; t++) out[t] = acc[t] - accm[t];
}
#endif

#if RK_X86
// ---- The 4-token K-quant kernels on AVX-512 VNNI ----
// The same integers and float steps as dot4_q4_K_repacked_avx2 and dot4_q6_K_tiled_avx2, with fewer instructions:
// vpdpbusd takes a sub-block pair (64 bytes) at once, each of its int32 lanes (four products, |·| < 2^15) is
// scaled by vpmaddwd against (scale, 0), and the four tokens' sums are reduced together, so their float steps
// run as one 4-lane vector (lane t: token t, each lane the scalar chain). Tokens past ntok repeat the last one.

// Σ of each vector's 16 lanes, as lanes 0–3 (exact: integer additions in any order).
RK_AVX512 static inline __m128i hsum4_epi32_512(const __m512i s[4]) {
    __m256i f[4];
    for (int i = 0; i < 4; i++) f[i] = _mm256_add_epi32(_mm512_castsi512_si256(s[i]), _mm512_extracti64x4_epi64(s[i], 1));
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(f[0], f[1]), _mm256_hadd_epi32(f[2], f[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

// Sub-block scales as vpmaddwd multipliers: int32 lane l of 16 holds (bytes[idx[l]] as int16, 0).
RK_AVX512 static inline __m512i scale_lanes(__m128i bytes, __m128i idx, int is_signed) {
    const __m128i picked = _mm_shuffle_epi8(bytes, idx);
    return is_signed ? _mm512_and_si512(_mm512_cvtepi8_epi32(picked), _mm512_set1_epi32(0xffff)) : _mm512_cvtepu8_epi32(picked);
}

// Q4_K against tokens four at a time, transposed: per super-block, chunk c of the activations (elements 16c …
// 16c + 15) is 64 bytes whose 4-byte group g holds the four tokens side by side (byte 16g + 4t + k), so one
// vpdpbusd against the weights' group g repeated four times gives lane (g, t) of all four tokens, and the
// lanes of a sub-block pair reduce to the tokens' I_p as one 4-lane vector with no horizontal sums per token.
// Each quad also carries its tokens' d_x and, per pair, Σx of both sub-blocks as int16 halves.
typedef struct { int8_t q[16][64]; float d[4]; int32_t sums[4][4]; } quad_q8_K;

static void pack_quad_q8_K(const char *x, size_t xstride, int ntok, int nb, quad_q8_K *out) {
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < 4; t++) {   // tokens past ntok repeat the last one
            const block_q8_K *xb = (const block_q8_K *)(x + (size_t)(t < ntok ? t : ntok - 1) * xstride) + b;
            for (int e = 0; e < 256; e += 4) memcpy(&out[b].q[e / 16][e % 16 / 4 * 16 + 4 * t], xb->qs + e, 4);
            out[b].d[t] = xb->d;
            for (int p = 0; p < 4; p++) {
                const uint16_t lo = (uint16_t)(xb->bsums[4 * p] + xb->bsums[4 * p + 1]), hi = (uint16_t)(xb->bsums[4 * p + 2] + xb->bsums[4 * p + 3]);
                out[b].sums[p][t] = (int32_t)((uint32_t)lo | (uint32_t)hi << 16);
            }
        }
}

#define RK_QUADS 8   // the driver's token block: 32 tokens per weight row's unpacking
// One weight row against `nq` (1 … RK_QUADS) quads `qstride` apart; quad i in the gemm order when gemm[i]. The integers
// and float steps of every token are dot_q4_K_repacked's (lane t of each vector is token t's scalar chain).
RK_AVX512 static void quads_q4_K_avx512(int nb, const block_q4_K *wb, const quad_q8_K *xq, size_t qstride, int nq,
                                      const int gemm[RK_QUADS], float out[4 * RK_QUADS]) {
#pragma clang fp contract(off)
    const __m512i rep = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m128i m4 = _mm_set1_epi8(15);
    __m128 acc[RK_QUADS], accm[RK_QUADS];
    for (int i = 0; i < RK_QUADS; i++) acc[i] = accm[i] = _mm_setzero_ps();
    for (int b = 0; b < nb; b++) {
        uint8_t sm[16];
        scales_mins_k4(wb[b].scales, sm);
        __m128 d[RK_QUADS], dmin[RK_QUADS];
        __m128i Isum[RK_QUADS], Msum[RK_QUADS];
        for (int i = 0; i < RK_QUADS; i++) Isum[i] = Msum[i] = _mm_setzero_si128();
        for (int i = 0; i < nq; i++) {
            const __m128 dx = _mm_loadu_ps(xq[i * qstride + b].d);
            d[i] = _mm_mul_ps(_mm_set1_ps(half_to_float_avx(wb[b].d)), dx);
            dmin[i] = _mm_mul_ps(_mm_set1_ps(half_to_float_avx(wb[b].dmin)), dx);
        }
        for (int p = 0; p < 4; p++) {
            // Chunks 4p, 4p + 1: sub-block 2p (low nibbles); 4p + 2, 4p + 3: sub-block 2p + 1 (high nibbles).
            const __m128i bits[2] = {_mm_loadu_si128((const __m128i *)(wb[b].qs + 32 * p)), _mm_loadu_si128((const __m128i *)(wb[b].qs + 32 * p + 16))};
            __m512i W[4];
            for (int c = 0; c < 4; c++) {
                const __m128i nib = _mm_and_si128(c < 2 ? bits[c] : _mm_srli_epi16(bits[c - 2], 4), m4);
                W[c] = _mm512_permutexvar_epi32(rep, _mm512_castsi128_si512(nib));
            }
            const __m512i scale_lo = _mm512_set1_epi32(sm[2 * p]), scale_hi = _mm512_set1_epi32(sm[2 * p + 1]);
            const __m128i mins = _mm_set1_epi32(sm[8 + 2 * p] | sm[9 + 2 * p] << 16);
            for (int i = 0; i < nq; i++) {
                const quad_q8_K *X = xq + i * qstride + b;
                const __m512i lo = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), W[0], _mm512_loadu_si512(X->q[4 * p])), W[1], _mm512_loadu_si512(X->q[4 * p + 1]));
                const __m512i hi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), W[2], _mm512_loadu_si512(X->q[4 * p + 2])), W[3], _mm512_loadu_si512(X->q[4 * p + 3]));
                const __m512i s = _mm512_add_epi32(_mm512_madd_epi16(lo, scale_lo), _mm512_madd_epi16(hi, scale_hi));
                const __m256i s2 = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
                const __m128i I = _mm_add_epi32(_mm256_castsi256_si128(s2), _mm256_extracti128_si256(s2, 1));
                const __m128i M = _mm_madd_epi16(_mm_loadu_si128((const __m128i *)X->sums[p]), mins);
                if (gemm[i]) {
                    acc[i] = _mm_fmadd_ps(_mm_cvtepi32_ps(I), d[i], acc[i]);
                    accm[i] = _mm_fmadd_ps(_mm_cvtepi32_ps(M), dmin[i], accm[i]);
                } else {
                    Isum[i] = _mm_add_epi32(Isum[i], I);
                    Msum[i] = _mm_add_epi32(Msum[i], M);
                }
            }
        }
        for (int i = 0; i < nq; i++)
            if (!gemm[i]) {
                acc[i] = _mm_fmadd_ps(_mm_cvtepi32_ps(Isum[i]), d[i], acc[i]);
                accm[i] = _mm_fmadd_ps(_mm_cvtepi32_ps(Msum[i]), dmin[i], accm[i]);
            }
    }
    for (int i = 0; i < nq; i++) _mm_storeu_ps(out + 4 * i, _mm_sub_ps(acc[i], accm[i]));
}

// Rows [r0, r1) × all tokens through quads_q4_K_avx512; tokens below gemm_tokens (a multiple of 4, or ≥ ntok) in
// the gemm order. Token blocks of 4·RK_QUADS stay in L2 while the rows pass over them.
RK_AVX512 static void matmul_q4_K_quads(const char *w, size_t wstride, int r0, int r1, const char *x, size_t xstride, int ntok,
                                      int gemm_tokens, float *y, size_t ystride, int n) {
    const int nb = n / 256, nq = (ntok + 3) / 4;
    static __thread void *buffer_tls = NULL;
    static __thread size_t capacity = 0;
    quad_q8_K *buffer = grow_scratch(&buffer_tls, &capacity, (size_t)nq * nb * sizeof(quad_q8_K));
    for (int q = 0; q < nq; q++) pack_quad_q8_K(x + (size_t)4 * q * xstride, xstride, ntok - 4 * q < 4 ? ntok - 4 * q : 4, nb, buffer + (size_t)q * nb);
    for (int q = 0; q < nq; q += RK_QUADS) {
        const int k = nq - q < RK_QUADS ? nq - q : RK_QUADS;
        int gemm[RK_QUADS];
        for (int i = 0; i < RK_QUADS; i++) gemm[i] = 4 * (q + i) < gemm_tokens;
        for (int r = r0; r < r1; r++) {
            float out[4 * RK_QUADS];
            quads_q4_K_avx512(nb, (const block_q4_K *)(w + (size_t)r * wstride), buffer + (size_t)q * nb, nb, k, gemm, out);
            for (int t = 4 * q; t < 4 * (q + k) && t < ntok; t++) y[(size_t)t * ystride + r] = out[t - 4 * q];
        }
    }
}

RK_AVX512 static void dot4_q6_K_tiled_avx512(int n, const void *w, const char *x, size_t xstride, int ntok, const int gemm[4],
                                           float out[4]) {
#pragma clang fp contract(off)
    (void)gemm;   // one order for every token
    const block_q6_K *wb = (const block_q6_K *)w;
    const block_q8_K *xs[4];
    for (int t = 0; t < 4; t++) xs[t] = (const block_q8_K *)(x + (size_t)(t < ntok ? t : ntok - 1) * xstride);
    __m128 acc = _mm_setzero_ps();
    for (int b = 0; b < n / 256; b++) {
        __m256i q32[8];
        unpack_q6_K_avx2(wb + b, q32);
        const __m128i sc = _mm_loadu_si128((const __m128i *)wb[b].scales);
        __m512i q[4], scale[4];
        for (int k = 0; k < 4; k++) {   // elements 64k … 64k + 63; lane l's four take scale 4k + l / 4
            q[k] = _mm512_inserti64x4(_mm512_castsi256_si512(q32[2 * k]), q32[2 * k + 1], 1);
            scale[k] = scale_lanes(sc, _mm_set_epi32(0x01010101 * (4 * k + 3), 0x01010101 * (4 * k + 2), 0x01010101 * (4 * k + 1), 0x01010101 * (4 * k)), 1);
        }
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
        __m512i S[4];
        float dx[4];
        for (int t = 0; t < 4; t++) {
            const block_q8_K *xt = xs[t] + b;
            __m512i s = _mm512_setzero_si512();
            for (int k = 0; k < 4; k++)
                s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q[k], _mm512_loadu_si512(xt->qs + 64 * k)), scale[k]));
            // The −32 offset: 32·Σ_j scale_j·Σx(j), in the low half's lanes.
            const __m256i offsets = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xt->bsums), sc16), 5);
            S[t] = _mm512_sub_epi32(s, _mm512_zextsi256_si512(offsets));
            dx[t] = xt->d;
        }
        const __m128 res = _mm_mul_ps(_mm_set1_ps(half_to_float_avx(wb[b].d)), _mm_cvtepi32_ps(hsum4_epi32_512(S)));
        acc = _mm_fmadd_ps(res, _mm_loadu_ps(dx), acc);
    }
    float r[4];
    _mm_storeu_ps(r, acc);
    for (int t = 0; t < ntok; t++) out[t] = r[t];
}
#endif

#define RK_Q4K_REPACK_DOT(NAME, ATTRIBUTES, TO_FLOAT, PAIRS)                                                      \
ATTRIBUTES static float NAME(int n, const void *w, const void *vx, int gemm) {                                     \
    _Pragma("clang fp contract(off)")                                                                             \
    const block_q4_K *wb = (const block_q4_K *)w;                                                                 \
    const block_q8_K *x = (const block_q8_K *)vx;                                                                 \
    float acc = 0, accm = 0;                                                                                      \
    for (int b = 0; b < n / 256; b++) {                                                                           \
        uint8_t sm[16];                                                                                           \
        int32_t I[4], M[4];                                                                                       \
        scales_mins_k4(wb[b].scales, sm);                                                                         \
        PAIRS(sm, wb[b].qs, x[b].qs, I);                                                                          \
        min_pairs(sm, x[b].bsums, M);                                                                             \
        const float d = TO_FLOAT(wb[b].d) * x[b].d, dmin = TO_FLOAT(wb[b].dmin) * x[b].d;                         \
        if (gemm) {                                                                                               \
            for (int p = 0; p < 4; p++) {                                                                         \
                acc = fmaf((float)I[p], d, acc);                                                                  \
                accm = fmaf((float)M[p], dmin, accm);                                                             \
            }                                                                                                     \
        } else {                                                                                                  \
            acc = fmaf((float)(I[0] + I[1] + I[2] + I[3]), d, acc);                                               \
            accm = fmaf((float)(M[0] + M[1] + M[2] + M[3]), dmin, accm);                                          \
        }                                                                                                         \
    }                                                                                                             \
    return acc - accm;                                                                                            \
}
RK_Q4K_REPACK_DOT(dot_q4_K_repacked_portable, , half_to_float, pairs_q4_K_portable)
#if RK_X86
RK_Q4K_REPACK_DOT(dot_q4_K_repacked_avx2, RK_AVX2, half_to_float_avx, pairs_q4_K_avx2)
#endif

// ---- public entry points ----

#if RK_X86
#define DISPATCH(avx, portable) (rk_simd_level() ? (avx) : (portable))
#else
#define DISPATCH(avx, portable) (portable)
#endif

void rk_quantize_row_q8_0(const float *x, void *y, int n) { DISPATCH(quantize_q8_0_avx2, quantize_q8_0_portable)(x, y, n); }
void rk_quantize_row_q8_1(const float *x, void *y, int n) { DISPATCH(quantize_q8_1_avx2, quantize_q8_1_portable)(x, y, n); }
float rk_vec_dot_q4_1_q8_1(int n, const void *w, const void *x) { return DISPATCH(dot_q4_1_q8_1_avx2, dot_q4_1_q8_1_portable)(n, w, x); }
float rk_vec_dot_q8_0_q8_0(int n, const void *w, const void *x) { return DISPATCH(dot_q8_0_q8_0_avx2, dot_q8_0_q8_0_portable)(n, w, x); }
float rk_vec_dot_q4_0_q8_0(int n, const void *w, const void *x) { return DISPATCH(dot_q4_0_q8_0_avx2, dot_q4_0_q8_0_portable)(n, w, x); }
float rk_vec_dot_q5_0_q8_0(int n, const void *w, const void *x) { return DISPATCH(dot_q5_0_q8_0_avx2, dot_q5_0_q8_0_portable)(n, w, x); }
float rk_vec_dot_q4_K_q8_K(int n, const void *w, const void *x) { return DISPATCH(dot_k_avx2, dot_k_portable)(4, n, w, x); }
float rk_vec_dot_q5_K_q8_K(int n, const void *w, const void *x) { return DISPATCH(dot_k_avx2, dot_k_portable)(5, n, w, x); }
float rk_vec_dot_q6_K_q8_K(int n, const void *w, const void *x) { return DISPATCH(dot_k_avx2, dot_k_portable)(6, n, w, x); }
float rk_vec_dot_q4_K_q8_K_tiled(int n, const void *w, const void *x) { return DISPATCH(dot_k_tiled_avx2, dot_k_tiled_portable)(4, n, w, x); }
float rk_vec_dot_q5_K_q8_K_tiled(int n, const void *w, const void *x) { return DISPATCH(dot_k_tiled_avx2, dot_k_tiled_portable)(5, n, w, x); }
float rk_vec_dot_q6_K_q8_K_tiled(int n, const void *w, const void *x) { return DISPATCH(dot_k_tiled_avx2, dot_k_tiled_portable)(6, n, w, x); }
float rk_vec_dot_q4_K_q8_K_repacked(int n, const void *w, const void *x, int gemm) {
    return DISPATCH(dot_q4_K_repacked_avx2, dot_q4_K_repacked_portable)(n, w, x, gemm);
}
float rk_dot_f32(const float *a, const float *b, int n) { return DISPATCH(dot_f32_avx2, dot_f32_portable)(a, b, n); }
float rk_dot_f16_f32(const uint16_t *a, const float *b, int n) { return DISPATCH(dot_f16_f32_avx2, dot_f16_f32_portable)(a, b, n); }

void rk_strip_scores(const void *const *strips, const float *scales, int nstrips, const float *a, int rows, float *y,
                     size_t ystride, int i0, int n) {
#if RK_X86
    if (rk_simd_level() >= 2) { strip_scores_avx512(strips, scales, nstrips, a, rows, y, ystride, i0, n); return; }
    if (rk_simd_level()) { strip_scores_avx2(strips, scales, nstrips, a, rows, y, ystride, i0, n); return; }
#endif
    for (int r = 0; r < rows; r++)
        for (int i = i0; i < n; i++) {
            float acc = y[(size_t)r * ystride + i];
            for (int s = 0; s < nstrips; s++) acc = fmaf(a[(size_t)s * rows + r], strip_value(strips[s], scales, s, i), acc);
            y[(size_t)r * ystride + i] = acc;
        }
}

void rk_f32_to_f16(const float *x, uint16_t *y, int n) {
#if RK_X86
    if (rk_simd_level()) { f32_to_f16_avx2(x, y, n); return; }
#endif
    for (int i = 0; i < n; i++) y[i] = float_to_half(x[i]);
}

void rk_f16_to_f32(const uint16_t *x, float *y, int n) {
#if RK_X86
    if (rk_simd_level()) { f16_to_f32_avx2(x, y, n); return; }
#endif
    for (int i = 0; i < n; i++) y[i] = half_to_float(x[i]);
}

// The row-dot llama.cpp uses for weights of GGML type `type` in a batch of `ntok` activation rows (NULL for a type
// without an integer kernel): its tiled K-quant matmul from 8 rows on, ggml_vec_dot below.
static quant_dot_fn quant_dot(int type, int ntok) {
    if (ntok >= 8)
        switch (type) {
        case 12: return rk_vec_dot_q4_K_q8_K_tiled;
        case 13: return rk_vec_dot_q5_K_q8_K_tiled;
        case 14: return rk_vec_dot_q6_K_q8_K_tiled;
        }
    switch (type) {
    case 2: return rk_vec_dot_q4_0_q8_0;
    case 3: return rk_vec_dot_q4_1_q8_1;
    case 6: return rk_vec_dot_q5_0_q8_0;
    case 8: return rk_vec_dot_q8_0_q8_0;
    case 12: return rk_vec_dot_q4_K_q8_K;
    case 13: return rk_vec_dot_q5_K_q8_K;
    case 14: return rk_vec_dot_q6_K_q8_K;
    default: return NULL;
    }
}

#if RK_X86
// A kernel giving one weight row's dots with up to 4 consecutive tokens (gemm[i]: token i in the gemm order).
typedef void (*dot4_fn)(int n, const void *w, const char *x, size_t xstride, int ntok, const int gemm[4], float out[4]);

// Rows [r0, r1) × all tokens through a 4-token kernel: token blocks of 32 stay in L2 while the rows pass over them,
// each row unpacked once per 4 tokens; tokens below `gemm_tokens` in the gemm order.
static void matmul_dot4(dot4_fn dot4, const char *w, size_t wstride, int r0, int r1, const char *x, size_t xstride,
                        int ntok, int gemm_tokens, float *y, size_t ystride, int n) {
    for (int t0 = 0; t0 < ntok; t0 += 32) {
        const int t1 = t0 + 32 < ntok ? t0 + 32 : ntok;
        for (int r = r0; r < r1; r++) {
            for (int t = t0; t < t1; t += 4) {
                const int k = t1 - t < 4 ? t1 - t : 4;
                const int gemm[4] = {t < gemm_tokens, t + 1 < gemm_tokens, t + 2 < gemm_tokens, t + 3 < gemm_tokens};
                float out[4];
                dot4(n, w + (size_t)r * wstride, x + (size_t)t * xstride, xstride, k, gemm, out);
                for (int i = 0; i < k; i++) y[(size_t)(t + i) * ystride + r] = out[i];
            }
        }
    }
}
#endif

// One row-dot per output of rows [r0, r1) and tokens [0, ntok).
static void matmul_rows(quant_dot_fn dot, const char *wb, size_t wstride, int r0, int r1, const char *xb, size_t xstride,
                        int ntok, float *y, size_t ystride, int n) {
    for (int r = r0; r < r1; r++) {
        const void *row = wb + (size_t)r * wstride;
        for (int t = 0; t < ntok; t++) y[(size_t)t * ystride + r] = dot(n, row, xb + (size_t)t * xstride);
    }
}

int rk_matmul_quant(int type, const void *w, size_t wstride, int r0, int r1,
                    const void *x, size_t xstride, int ntok, float *y, size_t ystride, int n) {
    const quant_dot_fn dot = quant_dot(type, ntok);
    if (!dot) return -1;
#if RK_X86
    if (rk_simd_level() && type < 12) {
        matmul_quant_tiled(type, (const char *)w, wstride, r0, r1, (const char *)x, xstride, ntok, y, ystride, n, dot);
        return 0;
    }
#endif
#if RK_X86
    if (rk_simd_level() && type == 14 && ntok >= 8) {   // Q6_K in a batch: 4 tokens per unpacked row
        matmul_dot4(rk_simd_level() >= 2 ? dot4_q6_K_tiled_avx512 : dot4_q6_K_tiled_avx2, (const char *)w, wstride, r0, r1,
                    (const char *)x, xstride, ntok, 0, y, ystride, n);
        return 0;
    }
#endif
    // K-quants (and the portable level): row-dots over token blocks of 32, whose activations stay in L2 while
    // every row of the range passes over them.
    for (int t0 = 0; t0 < ntok; t0 += 32)
        matmul_rows(dot, (const char *)w, wstride, r0, r1, (const char *)x + (size_t)t0 * xstride, xstride,
                    ntok - t0 < 32 ? ntok - t0 : 32, y + (size_t)t0 * ystride, ystride, n);
    return 0;
}

int rk_matmul_q4_K_repacked(const void *w, size_t wstride, int r0, int r1, const void *x, size_t xstride, int ntok,
                            int gemm_tokens, float *y, size_t ystride, int n) {
    const char *wb = (const char *)w, *xb = (const char *)x;
#if RK_X86
    if (rk_simd_level()) {   // 4 tokens per unpacked weight row
        // A quad of tokens in one order each (and enough tokens to fill one): the transposed AVX-512 kernel.
        if (rk_simd_level() >= 2 && ntok >= 4 && (gemm_tokens % 4 == 0 || gemm_tokens >= ntok))
            matmul_q4_K_quads(wb, wstride, r0, r1, xb, xstride, ntok, gemm_tokens, y, ystride, n);
        else
            matmul_dot4(dot4_q4_K_repacked_avx2, wb, wstride, r0, r1, xb, xstride, ntok, gemm_tokens, y, ystride, n);
        return 0;
    }
#endif
    for (int t0 = 0; t0 < ntok; t0 += 32) {   // token blocks of 32 stay in L2 while the rows pass over them
        const int t1 = t0 + 32 < ntok ? t0 + 32 : ntok;
        for (int r = r0; r < r1; r++) {
            const void *row = wb + (size_t)r * wstride;
            for (int t = t0; t < t1; t++)
                y[(size_t)t * ystride + r] = rk_vec_dot_q4_K_q8_K_repacked(n, row, xb + (size_t)t * xstride, t < gemm_tokens);
        }
    }
    return 0;
}

// The plain reference: one row-dot per output (tests compare the tiled kernels with it bit for bit).
int rk_matmul_quant_reference(int type, const void *w, size_t wstride, int r0, int r1,
                              const void *x, size_t xstride, int ntok, float *y, size_t ystride, int n) {
    const quant_dot_fn dot = quant_dot(type, ntok);
    if (!dot) return -1;
    matmul_rows(dot, (const char *)w, wstride, r0, r1, (const char *)x, xstride, ntok, y, ystride, n);
    return 0;
}

int rk_matmul_float(int type, const void *w, size_t wstride, int r0, int r1,
                    const float *x, size_t xstride, int ntok, float *y, size_t ystride, int n) {
    if (type != 0 && type != 1) return -1;
    const char *wb = (const char *)w;
    for (int r = r0; r < r1; r++) {
        const void *row = wb + (size_t)r * wstride;
        for (int t = 0; t < ntok; t++) {
            const float *xt = x + (size_t)t * xstride;
            y[(size_t)t * ystride + r] = type == 0 ? rk_dot_f32((const float *)row, xt, n) : rk_dot_f16_f32((const uint16_t *)row, xt, n);
        }
    }
    return 0;
}

// ---- Attention in llama.cpp's arithmetic ----
// Horizontal sums of 8 lanes in the two orders ggml uses.
static inline float hsum8_batched(const float a[8]) {   // tinyBLAS: lo+hi, then movehl, then movehdup
    float u0 = a[0] + a[4], u1 = a[1] + a[5], u2 = a[2] + a[6], u3 = a[3] + a[7];
    return (u0 + u2) + (u1 + u3);
}
static inline float hsum8_single(const float a[8]) {    // GGML_F32x8_REDUCE: lo+hi, then two hadds
    float u0 = a[0] + a[4], u1 = a[1] + a[5], u2 = a[2] + a[6], u3 = a[3] + a[7];
    return (u0 + u1) + (u2 + u3);
}

static float attn_dot_portable(const uint16_t *a, const uint16_t *b, int n, int batched) {
    if (batched) {
        float acc[8] = {0};
        for (int i = 0; i < n; i++) acc[i % 8] = fmaf(half_to_float(a[i]), half_to_float(b[i]), acc[i % 8]);
        return hsum8_batched(acc);
    }
    float acc[4][8] = {{0}};
    for (int i = 0; i < n; i++) acc[(i / 8) % 4][i % 8] = fmaf(half_to_float(a[i]), half_to_float(b[i]), acc[(i / 8) % 4][i % 8]);
    float s[8];
    for (int l = 0; l < 8; l++) s[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    return hsum8_single(s);
}

// ggml's vectorised expf (a polynomial after range reduction; ≤ 1.5 ulp), one lane at a time.
static float expf_ggml_portable(float x) {
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    uint32_t zb; memcpy(&zb, &z, 4);
    const uint32_t e = zb << 23;
    uint32_t one; const float onef = 1.0f; memcpy(&one, &onef, 4);
    uint32_t kb = e + one; float k; memcpy(&k, &kb, 4);
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u, 0x1.ffffecp-1f * b);
    if (!(fabsf(n) > 126)) return fmaf(j, k, k);
    const uint32_t g = (n <= 0) ? 0x82000000u : 0;
    uint32_t s1b = g + 0x7f000000u, s2b = e - g;
    float s1, s2; memcpy(&s1, &s1b, 4); memcpy(&s2, &s2b, 4);
    if (fabsf(n) > 192) return s1 * s1;
    return fmaf(s2, j, s2) * s1;
}

static void attn_softmax_portable(float *x, int n) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++) max = fmaxf(max, x[i]);
    double sum = 0;
    for (int i = 0; i < n; i += 8) {
        float v[8];
        for (int l = 0; l < 8; l++) v[l] = i + l < n ? expf_ggml_portable(x[i + l] - max) : 0.0f;
        for (int l = 0; l < 8 && i + l < n; l++) x[i + l] = v[l];
        sum += (double)hsum8_batched(v);   // the same order as the softmax's own lo+hi/movehl/movehdup sum
    }
    const float scale = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= scale;
}

static void attn_values_portable(const uint16_t *p, const uint16_t *v, const int32_t *slots, int count, int d, float *out, int batched) {
    for (int i = 0; i < d; i++) {
        if (batched) {
            float acc[8] = {0};
            for (int j = 0; j < count; j++) acc[j % 8] = fmaf(half_to_float(v[(size_t)(slots ? slots[j] : j) * d + i]), half_to_float(p[j]), acc[j % 8]);
            out[i] = hsum8_batched(acc);
        } else {
            float acc[4][8] = {{0}};
            for (int j = 0; j < count; j++) {
                float *a = &acc[(j / 8) % 4][j % 8];
                *a = fmaf(half_to_float(v[(size_t)(slots ? slots[j] : j) * d + i]), half_to_float(p[j]), *a);
            }
            float s[8];
            for (int l = 0; l < 8; l++) s[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
            out[i] = hsum8_single(s);
        }
    }
}

#if RK_X86
RK_AVX2 static inline __m256 expf_ggml_avx2(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.f), n);
    const __m256 c = _mm256_cmp_ps(absn, _mm256_set1_ps(126), _CMP_GT_OQ);
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(c)) return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 dmask = _mm256_cmp_ps(absn, _mm256_set1_ps(192), _CMP_GT_OQ);
    return _mm256_or_ps(_mm256_and_ps(dmask, _mm256_mul_ps(s1, s1)),
                        _mm256_andnot_ps(dmask, _mm256_or_ps(_mm256_and_ps(c, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                                             _mm256_andnot_ps(c, _mm256_fmadd_ps(k, j, k)))));
}

RK_AVX2 static inline float hsum8_batched_avx(__m256 v) { return hsum_ps(v); }
RK_AVX2 static inline float hsum8_single_avx(__m256 v) {
    __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 t1 = _mm_hadd_ps(t0, t0);
    return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

RK_AVX2 static float attn_dot_avx2(const uint16_t *a, const uint16_t *b, int n, int batched) {
    if (batched) {
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < n; i += 8)
            acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))),
                                  _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc);
        return hsum8_batched_avx(acc);
    }
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int i = 0; i < n; i += 32)
        for (int j = 0; j < 4; j++)
            acc[j] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8 * j))),
                                     _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8 * j))), acc[j]);
    acc[0] = _mm256_add_ps(acc[0], acc[2]);
    acc[1] = _mm256_add_ps(acc[1], acc[3]);
    return hsum8_single_avx(_mm256_add_ps(acc[0], acc[1]));
}

RK_AVX2 static void attn_softmax_avx2(float *x, int n) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++) max = fmaxf(max, x[i]);
    double sum = 0;
    const __m256 vmax = _mm256_set1_ps(max);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = expf_ggml_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, v);
        sum += (double)hsum8_batched_avx(v);
    }
    if (i < n) {  // zero-padded last chunk, as llama.cpp's masked, padded row
        float tmp[8];
        for (int l = 0; l < 8; l++) tmp[l] = i + l < n ? x[i + l] : -INFINITY;
        __m256 v = expf_ggml_avx2(_mm256_sub_ps(_mm256_loadu_ps(tmp), vmax));
        _mm256_storeu_ps(tmp, v);
        for (int l = 0; i + l < n; l++) x[i + l] = tmp[l];
        sum += (double)hsum8_batched_avx(v);
    }
    const __m256 scale = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), scale));
    for (; i < n; i++) x[i] *= (float)(1.0 / sum);
}

RK_AVX2 static void attn_values_avx2(const uint16_t *p, const uint16_t *v, const int32_t *slots, int count, int d, float *out, int batched) {
    for (int c = 0; c < d; c += 8) {   // 8 output dimensions at a time
        __m256 acc[4][8];
        for (int a = 0; a < 4; a++) for (int l = 0; l < 8; l++) acc[a][l] = _mm256_setzero_ps();
        for (int j = 0; j < count; j++) {
            const __m256 pj = half_set1_avx(p[j]);   // not _cvtsh_ss, whose vpinsrw chained each row to the last
            const __m256 vj = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + (size_t)(slots ? slots[j] : j) * d + c)));
            __m256 *a = batched ? &acc[0][j % 8] : &acc[(j / 8) % 4][j % 8];
            *a = _mm256_fmadd_ps(vj, pj, *a);
        }
        __m256 s[8];
        for (int l = 0; l < 8; l++)
            s[l] = batched ? acc[0][l] : _mm256_add_ps(_mm256_add_ps(acc[0][l], acc[2][l]), _mm256_add_ps(acc[1][l], acc[3][l]));
        const __m256 u0 = _mm256_add_ps(s[0], s[4]), u1 = _mm256_add_ps(s[1], s[5]);
        const __m256 u2 = _mm256_add_ps(s[2], s[6]), u3 = _mm256_add_ps(s[3], s[7]);
        const __m256 r = batched ? _mm256_add_ps(_mm256_add_ps(u0, u2), _mm256_add_ps(u1, u3))
                                 : _mm256_add_ps(_mm256_add_ps(u0, u1), _mm256_add_ps(u2, u3));
        _mm256_storeu_ps(out + c, r);
    }
}
#endif

// The SIMD chains read whole chunks (32 elements in single-token order, 8 batched; 8 output dimensions of
// values): other head dims take the portable path, which computes the same lanes.
float rk_attn_dot(const uint16_t *a, const uint16_t *b, int n, int batched) {
    if (n % (batched ? 8 : 32) != 0) return attn_dot_portable(a, b, n, batched);
    return DISPATCH(attn_dot_avx2, attn_dot_portable)(a, b, n, batched);
}
void rk_attn_softmax(float *x, int n) { DISPATCH(attn_softmax_avx2, attn_softmax_portable)(x, n); }
void rk_attn_values(const uint16_t *p, const uint16_t *v, const int32_t *slots, int count, int d, float *out, int batched) {
    if (d % 8 != 0) { attn_values_portable(p, v, slots, count, d, out, batched); return; }
    DISPATCH(attn_values_avx2, attn_values_portable)(p, v, slots, count, d, out, batched);
}

// SwiGLU: silu(x) = x / (1 + exp(-x)) with ggml's vector exp in 8-wide chunks, libm expf for the tail.
static void swiglu_portable(float *gate, const float *up, int n) {
    const int chunked = n & ~7;
    int i = 0;
    for (; i < chunked; i++) gate[i] = (gate[i] / (1.0f + expf_ggml_portable(0.0f - gate[i]))) * up[i];
    for (; i < n; i++) gate[i] = (gate[i] / (1.0f + expf(-gate[i]))) * up[i];
}

#if RK_X86
RK_AVX2 static void swiglu_avx2(float *gate, const float *up, int n) {
    int i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(gate + i);
        __m256 silu = _mm256_div_ps(x, _mm256_add_ps(one, expf_ggml_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x))));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) gate[i] = (gate[i] / (1.0f + expf(-gate[i]))) * up[i];
}
#endif

void rk_swiglu(float *gate, const float *up, int n) { DISPATCH(swiglu_avx2, swiglu_portable)(gate, up, n); }

// ---- RMSNorm over rows ----
// ggml's rms_norm (Σ x² summed in double in element order, scale = 1/√(mean + ε)) then ggml_mul by the weight,
// for `rows` rows `xstride` apart into rows `ostride` apart (out may be x). Eight rows at a time, so their eight
// dependent chains of double additions overlap instead of running one after another; each row's additions stay
// in order, so the bits are those of one row at a time (Ops.rmsNorm, its twin in the tests).
#define RK_NORM_ROWS(M)                                                                                           \
    do {                                                                                                          \
        double sum[M] = {0};                                                                                      \
        for (int i = 0; i < n; i++)                                                                               \
            for (int r = 0; r < M; r++) { const float v = x[(size_t)(r0 + r) * xstride + i]; sum[r] += (double)(v * v); } \
        for (int r = 0; r < M; r++) {                                                                             \
            const float scale = 1.0f / sqrtf((float)(sum[r] / (double)n) + epsilon);                             \
            const float *xr = x + (size_t)(r0 + r) * xstride;                                                     \
            float *o = out + (size_t)(r0 + r) * ostride;                                                          \
            for (int i = 0; i < n; i++) o[i] = (xr[i] * scale) * weight[i];                                       \
        }                                                                                                         \
    } while (0)

void rk_rms_norm_rows(const float *x, size_t xstride, int rows, const float *weight, float epsilon, int n, float *out, size_t ostride) {
#pragma clang fp contract(off)
    int r0 = 0;
    for (; r0 + 8 <= rows; r0 += 8) RK_NORM_ROWS(8);
    for (; r0 + 4 <= rows; r0 += 4) RK_NORM_ROWS(4);
    for (; r0 < rows; r0++) RK_NORM_ROWS(1);
}
#undef RK_NORM_ROWS

// ---- GELU-gated feed-forward (Gemma) ----
// ggml's f32 GELU (GGML_GELU_FP16) rounds its input to f16 and reads f16(gelu(x)) from a table of every f16 x,
// gelu(x) = 0.5x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))) as GCC compiles it (the inner 1 + a·x·x fused into one
// FMA); inputs ≤ −10 give 0 and ≥ 10 give x.
static uint16_t gelu_table[(1 << 16) + 2];   // + 2: a 32-bit gather of the last entry reads past it
static pthread_once_t gelu_table_once = PTHREAD_ONCE_INIT;

float rk_gelu_formula(float x) {
#pragma clang fp contract(off)
    const float inner = fmaf(0.044715f * x, x, 1.0f);
    return (0.5f * x) * (1.0f + tanhf((0.79788456080286535587989211986876f * x) * inner));
}

static void fill_gelu_table(void) {
    for (int i = 0; i < (1 << 16); i++) gelu_table[i] = float_to_half(rk_gelu_formula(half_to_float((uint16_t)i)));
}

static void geglu_portable(float *gate, const float *up, int n) {
#pragma clang fp contract(off)
    for (int i = 0; i < n; i++) {
        const float x = gate[i];
        if (x <= -10.0f) gate[i] = 0.0f;
        else if (x >= 10.0f) gate[i] = x * up[i];
        else gate[i] = half_to_float(gelu_table[float_to_half(x)]) * up[i];
    }
}

#if RK_X86
// 8 at a time: F16C rounds to nearest even as float_to_half does, and a gather reads the table.
RK_AVX2 static void geglu_avx2(float *gate, const float *up, int n) {
#pragma clang fp contract(off)
    const __m256 low = _mm256_set1_ps(-10.0f), high = _mm256_set1_ps(10.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(gate + i), u = _mm256_loadu_ps(up + i);
        const __m256i idx = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m256i g32 = _mm256_and_si256(_mm256_i32gather_epi32((const int *)gelu_table, idx, 2), _mm256_set1_epi32(0xffff));
        const __m256 g = _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(g32), _mm256_extracti128_si256(g32, 1)));
        __m256 r = _mm256_blendv_ps(_mm256_mul_ps(g, u), _mm256_mul_ps(x, u), _mm256_cmp_ps(x, high, _CMP_GE_OQ));
        r = _mm256_blendv_ps(r, _mm256_setzero_ps(), _mm256_cmp_ps(x, low, _CMP_LE_OQ));
        _mm256_storeu_ps(gate + i, r);
    }
    geglu_portable(gate + i, up + i, n - i);
}
#endif

void rk_geglu(float *gate, const float *up, int n) {
    pthread_once(&gelu_table_once, fill_gelu_table);
    DISPATCH(geglu_avx2, geglu_portable)(gate, up, n);
}

// ---- memory bandwidth probe ----
#if RK_X86
RK_AVX2 static uint64_t stream_read_avx2(const void *p, size_t bytes) {
    const __m256i *v = (const __m256i *)p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < bytes / 32; i += 8) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256(v + i));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256(v + i + 2));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256(v + i + 4));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256(v + i + 6));
        a0 = _mm256_xor_si256(a0, _mm256_load_si256(v + i + 1));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256(v + i + 3));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256(v + i + 5));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256(v + i + 7));
    }
    __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}
#endif

uint64_t rk_stream_read(const void *p, size_t bytes) {
#if RK_X86
    if (rk_simd_level()) return stream_read_avx2(p, bytes);
#endif
    const uint64_t *v = (const uint64_t *)p;
    uint64_t a = 0;
    for (size_t i = 0; i < bytes / 8; i++) a ^= v[i];
    return a;
}

// ---- Attention of several queries per key/value load (prefill and decode), llama.cpp's orders ----
// Each score is the same FMA chain as rk_attn_dot (one accumulator, or four for single-token order) and
// the same horizontal sum, done for 8 keys at once by a transposed reduction that performs exactly the
// per-lane additions of hsum8_batched / hsum8_single. Each output of the P·V product is the same FMA
// chain as rk_attn_values (lane j mod 8, or j mod 32), each value row converted once for a group of
// queries; rows past a query's count multiply a zero probability, which leaves its accumulators as they were.

static __thread void *attn_tls[2] = {NULL, NULL};
static __thread size_t attn_tls_cap[2] = {0, 0};
static float *attn_scratch(int which, size_t floats) { return grow_scratch(&attn_tls[which], &attn_tls_cap[which], floats * sizeof(float)); }

static void attn_scores_portable(const float *q, size_t qstride, int nq, const uint16_t *keys, int d, int j0, int j1,
                                 float scale, float *scores, size_t sstride, int batched) {
    uint16_t qh[RK_MAX_HEAD_DIM];
    for (int i = 0; i < nq; i++) {
        for (int c = 0; c < d; c++) qh[c] = float_to_half(q[(size_t)i * qstride + c]);
        for (int j = j0; j < j1; j++) scores[(size_t)i * sstride + j] = attn_dot_portable(keys + (size_t)j * d, qh, d, batched) * scale;
    }
}

#if RK_X86
RK_AVX2 static inline __m256 attn_reduce8(const __m256 s[8], int batched) {
    __m256 u[4];
    for (int k = 0; k < 4; k++) {
        u[k] = _mm256_add_ps(_mm256_permute2f128_ps(s[2 * k], s[2 * k + 1], 0x20), _mm256_permute2f128_ps(s[2 * k], s[2 * k + 1], 0x31));
        if (batched) u[k] = _mm256_permute_ps(u[k], 0xD8);   // [u0 u2 u1 u3]: pairs (u0+u2), (u1+u3)
    }
    const __m256 r = _mm256_hadd_ps(_mm256_hadd_ps(u[0], u[1]), _mm256_hadd_ps(u[2], u[3]));
    return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Products of one f16 key with NQ queries (f32, already rounded to f16), left as 8-lane vectors for
// attn_reduce8: s[i * sstride]. Single-token order keeps four accumulators per query (chunks c mod 4),
// batched order one; the key is converted once and every query's chain stays in registers.
#define RK_INLINE __attribute__((always_inline)) inline
RK_AVX2 static RK_INLINE __m256 load_half8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

RK_AVX2 static RK_INLINE void key_dots_single(const uint16_t *key, const float *qf, int d, const int NQ, __m256 *s, int sstride) {
    __m256 a[3][4];
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) a[i][u] = _mm256_setzero_ps();
    for (int c = 0; c < d; c += 32) {
        const __m256 k0 = load_half8(key + c), k1 = load_half8(key + c + 8), k2 = load_half8(key + c + 16), k3 = load_half8(key + c + 24);
        for (int i = 0; i < NQ; i++) {
            const float *q = qf + (size_t)i * d + c;
            a[i][0] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(q), a[i][0]);
            a[i][1] = _mm256_fmadd_ps(k1, _mm256_loadu_ps(q + 8), a[i][1]);
            a[i][2] = _mm256_fmadd_ps(k2, _mm256_loadu_ps(q + 16), a[i][2]);
            a[i][3] = _mm256_fmadd_ps(k3, _mm256_loadu_ps(q + 24), a[i][3]);
        }
    }
    for (int i = 0; i < NQ; i++) s[i * sstride] = _mm256_add_ps(_mm256_add_ps(a[i][0], a[i][2]), _mm256_add_ps(a[i][1], a[i][3]));
}

RK_AVX2 static RK_INLINE void key_dots_batched(const uint16_t *key, const float *qf, int d, const int NQ, __m256 *s, int sstride) {
    __m256 a[12];
    for (int i = 0; i < NQ; i++) a[i] = _mm256_setzero_ps();
    for (int c = 0; c < d; c += 8) {
        const __m256 k = load_half8(key + c);
        for (int i = 0; i < NQ; i++) a[i] = _mm256_fmadd_ps(k, _mm256_loadu_ps(qf + (size_t)i * d + c), a[i]);
    }
    for (int i = 0; i < NQ; i++) s[i * sstride] = a[i];
}

// Eight keys' 8-lane vectors of one query reduced to their scores, scaled, and the first m stored at out.
RK_AVX2 static inline void store_scores8(const __m256 s[8], int batched, __m256 vscale, float *out, int m) {
    const __m256 r = _mm256_mul_ps(attn_reduce8(s, batched), vscale);
    if (m == 8) _mm256_storeu_ps(out, r);
    else { float tmp[8]; _mm256_storeu_ps(tmp, r); for (int k = 0; k < m; k++) out[k] = tmp[k]; }
}

// One query group (≤ 3 single-order or ≤ 12 batched queries) against keys [j0, j1), 8 keys per reduction.
#define RK_SCORES_GROUP(NAME, DOTS, NQ)                                                                           \
RK_AVX2 static void NAME(const float *qf, const uint16_t *keys, int d, int j0, int j1, __m256 vscale,            \
                         float *scores, size_t sstride, int batched) {                                          \
    __m256 s[NQ * 8];                                                                                           \
    for (int jb = j0; jb < j1; jb += 8) {                                                                       \
        const int m = j1 - jb < 8 ? j1 - jb : 8;                                                                \
        /* These eight keys' bytes, 8 KB ahead: one thread's stream does not keep enough lines in flight alone  \
           (an AVX2-only EPYC host: 0.93x the time over 8,000 keys; BENCHMARKS.md, 2026-12-05). */              \
        const char *ahead = (const char *)(keys + (size_t)jb * d) + 8192;                                       \
        for (int line = 0; line < 16 * d; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);                  \
        for (int k = 0; k < 8; k++) {                                                                           \
            if (k < m) DOTS(keys + (size_t)(jb + k) * d, qf, d, NQ, s + k, 8);                                  \
            else for (int i = 0; i < NQ; i++) s[i * 8 + k] = _mm256_setzero_ps();                               \
        }                                                                                                       \
        for (int i = 0; i < NQ; i++) store_scores8(s + i * 8, batched, vscale, scores + (size_t)i * sstride + jb, m); \
    }                                                                                                           \
}
RK_SCORES_GROUP(scores_single1, key_dots_single, 1)
RK_SCORES_GROUP(scores_single2, key_dots_single, 2)
RK_SCORES_GROUP(scores_single3, key_dots_single, 3)
RK_SCORES_GROUP(scores_batched1, key_dots_batched, 1)
RK_SCORES_GROUP(scores_batched4, key_dots_batched, 4)
RK_SCORES_GROUP(scores_batched12, key_dots_batched, 12)

// AVX-512, batched order: two keys share a register (key a's 8 lanes, then key b's) against the query chunk in both
// halves, so each lane keeps the AVX2 chain (one FMA per 8 dims, in order) at half the FMAs; attn_reduce8 then
// sees the same 8 vectors per query.
RK_AVX512 static RK_INLINE void key_pair_dots_batched(const uint16_t *ka, const uint16_t *kb, const float *qf, int d, const int NQ,
                                                      __m512 *s, int sstride) {
    __m512 a[12];
    for (int i = 0; i < NQ; i++) a[i] = _mm512_setzero_ps();
    for (int c = 0; c < d; c += 8) {
        const __m512 k = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(ka + c))),
                                                                 _mm_loadu_si128((const __m128i *)(kb + c)), 1));
        for (int i = 0; i < NQ; i++) a[i] = _mm512_fmadd_ps(k, _mm512_broadcast_f32x8(_mm256_loadu_ps(qf + (size_t)i * d + c)), a[i]);
    }
    for (int i = 0; i < NQ; i++) s[i * sstride] = a[i];
}

#define RK_SCORES512_GROUP(NAME, NQ)                                                                              \
RK_AVX512 static void NAME(const float *qf, const uint16_t *keys, int d, int j0, int j1, __m256 vscale,          \
                           float *scores, size_t sstride) {                                                       \
    __m512 s[NQ * 4];                                                                                           \
    for (int jb = j0; jb < j1; jb += 8) {                                                                       \
        const int m = j1 - jb < 8 ? j1 - jb : 8;                                                                \
        for (int p = 0; p < 4; p++) {   /* keys 2p, 2p + 1 of the eight (a lone last key pairs with itself) */  \
            if (2 * p < m) key_pair_dots_batched(keys + (size_t)(jb + 2 * p) * d, keys + (size_t)(jb + (2 * p + 1 < m ? 2 * p + 1 : 2 * p)) * d, \
                                                 qf, d, NQ, s + p, 4);                                          \
            else for (int i = 0; i < NQ; i++) s[i * 4 + p] = _mm512_setzero_ps();                              \
        }                                                                                                       \
        for (int i = 0; i < NQ; i++) {                                                                          \
            __m256 v[8];                                                                                        \
            for (int p = 0; p < 4; p++) {                                                                       \
                v[2 * p] = _mm512_castps512_ps256(s[i * 4 + p]);                                                \
                v[2 * p + 1] = _mm512_extractf32x8_ps(s[i * 4 + p], 1);                                         \
            }                                                                                                   \
            store_scores8(v, 1, vscale, scores + (size_t)i * sstride + jb, m);                                  \
        }                                                                                                       \
    }                                                                                                           \
}
RK_SCORES512_GROUP(scores512_batched1, 1)
RK_SCORES512_GROUP(scores512_batched4, 4)
RK_SCORES512_GROUP(scores512_batched12, 12)

RK_AVX2 static void attn_scores_avx2(const float *q, size_t qstride, int nq, const uint16_t *keys, int d, int j0, int j1,
                                     float scale, float *scores, size_t sstride, int batched) {
    float *qf = attn_scratch(0, (size_t)nq * d);
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < d; c += 8)
            _mm256_storeu_ps(qf + (size_t)i * d + c, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(q + (size_t)i * qstride + c), 0)));
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int i = 0; i < nq;) {
        const float *qi = qf + (size_t)i * d;
        float *si = scores + (size_t)i * sstride;
        const int left = nq - i;
        if (!batched) {
            if (left >= 3) { scores_single3(qi, keys, d, j0, j1, vscale, si, sstride, 0); i += 3; }
            else if (left == 2) { scores_single2(qi, keys, d, j0, j1, vscale, si, sstride, 0); i += 2; }
            else { scores_single1(qi, keys, d, j0, j1, vscale, si, sstride, 0); i += 1; }
        } else if (rk_simd_level() >= 2) {
            if (left >= 12) { scores512_batched12(qi, keys, d, j0, j1, vscale, si, sstride); i += 12; }
            else if (left >= 4) { scores512_batched4(qi, keys, d, j0, j1, vscale, si, sstride); i += 4; }
            else { scores512_batched1(qi, keys, d, j0, j1, vscale, si, sstride); i += 1; }
        } else {
            if (left >= 12) { scores_batched12(qi, keys, d, j0, j1, vscale, si, sstride, 1); i += 12; }
            else if (left >= 4) { scores_batched4(qi, keys, d, j0, j1, vscale, si, sstride, 1); i += 4; }
            else { scores_batched1(qi, keys, d, j0, j1, vscale, si, sstride, 1); i += 1; }
        }
    }
}

// Products with value rows of NQ probability rows, for one lane (rows j ≡ l mod lanes) and 32 output
// dimensions: a[i][u] += v_j[8u..8u+8) · p_i[j], the value row converted once for all queries.
#define RK_PV_GROUP(NAME, NQ)                                                                                     \
RK_AVX2 static void NAME(const float *p, size_t pstride, const uint16_t *values, int d, int j0, int j1, int lanes, \
                         float *acc, size_t astride, int fresh) {                                                         \
    __m256 a[NQ][4];                                                                                            \
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) a[i][u] = fresh ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + 8 * ((size_t)i * astride + (size_t)u * lanes)); \
    for (int j = j0; j < j1; j += lanes) {                                                                      \
        const uint16_t *v = values + (size_t)j * d;                                                             \
        const float *pr = p + j;                                                                                \
        for (int h = 0; h < 4; h += 2) {   /* two chunks at a time: 12 accumulators + 3 registers fit in 16 */ \
            /* The barrier makes the second half broadcast p again instead of keeping NQ broadcasts live        \
               across both halves, which spilled an accumulator through the stack on every row. */              \
            __asm__("" : "+r"(pr));                                                                             \
            const __m256 v0 = load_half8(v + 8 * h), v1 = load_half8(v + 8 * h + 8);                            \
            for (int i = 0; i < NQ; i++) {                                                                      \
                const __m256 pj = _mm256_broadcast_ss(pr + (size_t)i * pstride);                                \
                a[i][h] = _mm256_fmadd_ps(v0, pj, a[i][h]);                                                     \
                a[i][h + 1] = _mm256_fmadd_ps(v1, pj, a[i][h + 1]);                                             \
            }                                                                                                   \
        }                                                                                                       \
    }                                                                                                           \
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) _mm256_storeu_ps(acc + 8 * ((size_t)i * astride + (size_t)u * lanes), a[i][u]); \
}
RK_PV_GROUP(pv_group1, 1)
RK_PV_GROUP(pv_group2, 2)
RK_PV_GROUP(pv_group3, 3)

typedef void (*pv_group_fn)(const float *, size_t, const uint16_t *, int, int, int, int, float *, size_t, int);

// AVX-512: the same per-lane chains for 64 (U = 4) or 32 (U = 2) dims of a row in one pass, a register
// holding chunks 2u and 2u + 1 (16 dims) of one lane.
#define RK_PV512_GROUP(NAME, NQ, U)                                                                               \
RK_AVX512 static void NAME(const float *p, size_t pstride, const uint16_t *values, int d, int j0, int j1, int lanes, \
                           float *acc, size_t astride, int fresh) {                                               \
    __m512 a[NQ][U];                                                                                            \
    for (int i = 0; i < NQ; i++) for (int u = 0; u < U; u++) {                                                  \
        const float *ap = acc + 8 * ((size_t)i * astride + (size_t)(2 * u) * lanes);                           \
        a[i][u] = fresh ? _mm512_setzero_ps() : _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(ap)), _mm256_loadu_ps(ap + 8 * lanes), 1); \
    }                                                                                                           \
    for (int j = j0; j < j1; j += lanes) {                                                                      \
        const uint16_t *v = values + (size_t)j * d;                                                             \
        __m512 vv[U];                                                                                           \
        for (int u = 0; u < U; u++) vv[u] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + 16 * u))); \
        for (int i = 0; i < NQ; i++) {                                                                          \
            const __m512 pj = _mm512_set1_ps(p[(size_t)i * pstride + j]);                                       \
            for (int u = 0; u < U; u++) a[i][u] = _mm512_fmadd_ps(vv[u], pj, a[i][u]);                          \
        }                                                                                                       \
    }                                                                                                           \
    for (int i = 0; i < NQ; i++) for (int u = 0; u < U; u++) {                                                  \
        float *ap = acc + 8 * ((size_t)i * astride + (size_t)(2 * u) * lanes);                                 \
        _mm256_storeu_ps(ap, _mm512_castps512_ps256(a[i][u]));                                                  \
        _mm256_storeu_ps(ap + 8 * lanes, _mm512_extractf32x8_ps(a[i][u], 1));                                   \
    }                                                                                                           \
}
RK_PV512_GROUP(pv512_group1, 1, 4)
RK_PV512_GROUP(pv512_group2, 2, 4)
RK_PV512_GROUP(pv512_group3, 3, 4)
RK_PV512_GROUP(pv512_group4, 4, 4)
RK_PV512_GROUP(pv512_half_group1, 1, 2)
RK_PV512_GROUP(pv512_half_group2, 2, 2)
RK_PV512_GROUP(pv512_half_group3, 3, 2)
RK_PV512_GROUP(pv512_half_group4, 4, 2)

// P·V accumulators over the rows of lanes [l0, l1) of `lanes` (lane = row mod lanes): A[i][chunk][lane]
// holds one 8-float accumulator of dims 8·chunk…, the FMA chain of that lane in row order. Tiles of rows
// stay in cache while every lane and query group passes over them; rows past count are skipped (they would
// add a zero probability times a zero row). A pass covers `step` chunks of a row for up to `widest` queries
// (`group[n - 1]` for n of them: 3 fit AVX2's 16 registers, 4 AVX-512's 32).
static void attn_pv_lanes_simd(const float *p, size_t pstride, int nq, int count, const uint16_t *values, int d,
                               int lanes, int l0, int l1, float *A, int step, const pv_group_fn group[4], int widest) {
    enum { TILE = 512 };
    const int nc = d / 8, span = l1 - l0;
    const size_t astride = (size_t)nc * lanes;
    for (int t0 = 0; t0 == 0 || t0 < count; t0 += TILE) {   // the first tile sets the accumulators, even when empty
        const int t1 = count - t0 < TILE ? count : t0 + TILE;
        for (int g = 0; g < nc; g += step)
            for (int i = 0; i < nq;) {
                const int n = nq - i >= widest ? widest : nq - i;
                int ahead = t0 + TILE + l0, col = 0;   // next tile's rows of these lanes, in row order
                for (int l = l0; l < l1; l++) {
                    // A lane walks the tile with a `lanes`-row stride, which defeats the hardware prefetcher:
                    // meanwhile fetch TILE / lanes of the next tile's rows (once per tile and chunk group, not
                    // again for each further query group).
                    for (int k = 0; i == 0 && k < TILE / lanes && ahead < count; k++) {
                        for (int line = 0; line < step / 4; line++)
                            _mm_prefetch((const char *)(values + (size_t)ahead * d + 8 * g + 32 * line), _MM_HINT_T1);
                        if (++col == span) { col = 0; ahead += lanes - span + 1; } else ahead++;
                    }
                    group[n - 1](p + (size_t)i * pstride, pstride, values + 8 * g, d, t0 + l, t1, lanes,
                                 A + 8 * ((size_t)i * astride + (size_t)g * lanes + l), astride, t0 == 0);
                }
                i += n;
            }
    }
}

// The P·V lanes with the widest passes the CPU has: whole 64-dim rows (AVX-512), else 32 dims.
static void attn_pv_lanes_x86(const float *p, size_t pstride, int nq, int count, const uint16_t *values, int d,
                               int lanes, int l0, int l1, float *A) {
    static const pv_group_fn avx2[4] = {pv_group1, pv_group2, pv_group3, NULL};
    static const pv_group_fn wide[4] = {pv512_group1, pv512_group2, pv512_group3, pv512_group4};
    static const pv_group_fn half[4] = {pv512_half_group1, pv512_half_group2, pv512_half_group3, pv512_half_group4};
    if (rk_simd_level() < 2) attn_pv_lanes_simd(p, pstride, nq, count, values, d, lanes, l0, l1, A, 4, avx2, 3);
    else if (d % 64 == 0) attn_pv_lanes_simd(p, pstride, nq, count, values, d, lanes, l0, l1, A, 8, wide, 4);
    else attn_pv_lanes_simd(p, pstride, nq, count, values, d, lanes, l0, l1, A, 4, half, 4);
}

// out[i][0..<d] from the accumulators of all lanes, summed in ggml's reduction order.
RK_AVX2 static void attn_pv_reduce_avx2(const float *A, int nq, int d, int lanes, float *out, size_t ostride) {
    const int nc = d / 8, batched = lanes == 8;
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < nc; c++) {
            const float *a = A + 8 * ((size_t)i * nc + c) * lanes;
#define LANE(l) _mm256_loadu_ps(a + 8 * (l))
            __m256 s[8];
            for (int l = 0; l < 8; l++)
                s[l] = batched ? LANE(l) : _mm256_add_ps(_mm256_add_ps(LANE(l), LANE(16 + l)), _mm256_add_ps(LANE(8 + l), LANE(24 + l)));
#undef LANE
            const __m256 u0 = _mm256_add_ps(s[0], s[4]), u1 = _mm256_add_ps(s[1], s[5]);
            const __m256 u2 = _mm256_add_ps(s[2], s[6]), u3 = _mm256_add_ps(s[3], s[7]);
            const __m256 r = batched ? _mm256_add_ps(_mm256_add_ps(u0, u2), _mm256_add_ps(u1, u3))
                                     : _mm256_add_ps(_mm256_add_ps(u0, u1), _mm256_add_ps(u2, u3));
            _mm256_storeu_ps(out + (size_t)i * ostride + 8 * c, r);
        }
}

RK_AVX2 static void attn_pv_avx2(const float *p, size_t pstride, int nq, int count, const uint16_t *values, int d,
                                 float *out, size_t ostride, int batched) {
    const int lanes = batched ? 8 : 32;
    float *A = attn_scratch(1, (size_t)nq * d * lanes);
    attn_pv_lanes_x86(p, pstride, nq, count, values, d, lanes, 0, lanes, A);
    attn_pv_reduce_avx2(A, nq, d, lanes, out, ostride);
}
#endif

void rk_attn_scores(const float *q, size_t qstride, int nq, const uint16_t *keys, int d, int j0, int j1,
                    float scale, float *scores, size_t sstride, int batched) {
#if RK_X86
    if (rk_simd_level() && d % 32 == 0) { attn_scores_avx2(q, qstride, nq, keys, d, j0, j1, scale, scores, sstride, batched); return; }
#endif
    attn_scores_portable(q, qstride, nq, keys, d, j0, j1, scale, scores, sstride, batched);
}

#if RK_X86
RK_AVX2 static void round_to_half_avx2(float *x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0)));
    for (; i < n; i++) x[i] = _cvtsh_ss(_cvtss_sh(x[i], 0));
}
#endif

void rk_attn_probs(float *x, int n, int masked, int padded) {
    for (int i = 0; i < masked && i < n; i++) x[i] = -INFINITY;   // exp gives exactly 0 for them
    rk_attn_softmax(x, n);
#if RK_X86
    if (rk_simd_level()) round_to_half_avx2(x, n); else
#endif
    for (int i = 0; i < n; i++) x[i] = half_to_float(float_to_half(x[i]));
    for (int i = n; i < padded; i++) x[i] = 0;
}

void rk_attn_pv(const float *p, size_t pstride, int nq, int count, const uint16_t *values, int d,
                float *out, size_t ostride, int batched) {
#if RK_X86
    if (rk_simd_level() && d % 32 == 0) {
        attn_pv_avx2(p, pstride, nq, count, values, d, out, ostride, batched);
        return;
    }
#endif
    uint16_t *ph = (uint16_t *)malloc(sizeof(uint16_t) * (count > 0 ? count : 1));
    for (int i = 0; i < nq; i++) {
        for (int j = 0; j < count; j++) ph[j] = float_to_half(p[(size_t)i * pstride + j]);
        attn_values_portable(ph, values, NULL, count, d, out + (size_t)i * ostride, batched);
    }
    free(ph);
}

// The portable twins keep the AVX2 layout, A[i][d / 8][32][8], and attn_values_portable's arithmetic.
static void attn_pv_lanes_portable(const float *p, size_t pstride, int nq, int count, const uint16_t *values, int d,
                                   int l0, int l1, float *A) {
    const int nc = d / 8;
    for (int i = 0; i < nq; i++)
        for (int l = l0; l < l1; l++) {
            float *a = A + 8 * ((size_t)i * nc * 32 + l);   // chunk c at a + 8·32·c
            for (int c = 0; c < nc; c++) for (int e = 0; e < 8; e++) a[256 * c + e] = 0;
            for (int j = l; j < count; j += 32) {
                const float pj = p[(size_t)i * pstride + j];
                for (int x = 0; x < d; x++)
                    a[256 * (x / 8) + x % 8] = fmaf(half_to_float(values[(size_t)j * d + x]), pj, a[256 * (x / 8) + x % 8]);
            }
        }
}

static void attn_pv_reduce_portable(const float *A, int nq, int d, float *out, size_t ostride) {
    const int nc = d / 8;
    for (int i = 0; i < nq; i++)
        for (int x = 0; x < d; x++) {
            const float *a = A + 8 * ((size_t)i * nc + x / 8) * 32 + x % 8;   // lane l at a[8·l]
            float s[8];
            for (int l = 0; l < 8; l++) s[l] = (a[8 * l] + a[8 * (16 + l)]) + (a[8 * (8 + l)] + a[8 * (24 + l)]);
            out[(size_t)i * ostride + x] = hsum8_single(s);
        }
}

void rk_attn_pv_lanes(const float *p, size_t pstride, int nq, int count, const uint16_t *values, int d,
                      int lane0, int lane1, float *acc) {
#if RK_X86
    if (rk_simd_level() && d % 32 == 0) { attn_pv_lanes_x86(p, pstride, nq, count, values, d, 32, lane0, lane1, acc); return; }
#endif
    attn_pv_lanes_portable(p, pstride, nq, count, values, d, lane0, lane1, acc);
}

void rk_attn_pv_reduce(const float *acc, int nq, int d, float *out, size_t ostride) {
#if RK_X86
    if (rk_simd_level() && d % 32 == 0) { attn_pv_reduce_avx2(acc, nq, d, 32, out, ostride); return; }
#endif
    attn_pv_reduce_portable(acc, nq, d, out, ostride);
}

void rk_attn_causal(const float *q, size_t qstride, const int32_t *counts, int masked, int nq, const uint16_t *keys,
                    const uint16_t *values, int d, float scale, float *out, size_t ostride, int batched) {
    int maxcount = 0;
    for (int i = 0; i < nq; i++) if (counts[i] > maxcount) maxcount = counts[i];
    const size_t pstride = ((size_t)maxcount + 63) / 64 * 64;
    static __thread void *sbuf_tls = NULL;
    static __thread size_t scap = 0;
    float *sbuf = grow_scratch(&sbuf_tls, &scap, (size_t)nq * pstride * sizeof(float));
    rk_attn_scores(q, qstride, nq, keys, d, 0, maxcount, scale, sbuf, pstride, batched);
    for (int i = 0; i < nq; i++) rk_attn_probs(sbuf + (size_t)i * pstride, counts[i], masked, (int)pstride);
    rk_attn_pv(sbuf, pstride, nq, maxcount, values, d, out, ostride, batched);
}

// One row's lines requested (its last byte too: a row need not start on a line).
static inline void prefetch_row(const char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(row + o, 0, 3);
    __builtin_prefetch(row + bytes - 1, 0, 3);
}

static inline void copy_row(char *to, const char *from, size_t bytes) {
    if (bytes % 32 == 0) for (size_t o = 0; o < bytes; o += 32) memcpy(to + o, from + o, 32);   // inlined moves, no call per row
    else memcpy(to, from, bytes);
}

void rk_gather_rows(const void *keys, const void *values, size_t key_bytes, size_t value_bytes, const int32_t *slots, int n,
                    void *key_rows, void *value_rows) {
    // Rows requested ahead of the copy, keys and values together, so that many misses are in flight at once
    // (HSA's rows are runs of a few slots scattered over the cache: the copy waits on memory latency, not bandwidth).
    enum { AHEAD = 16 };
    const char *k = keys, *v = values;
    for (int i = 0; i < n + AHEAD; i++) {
        if (i < n) {
            prefetch_row(k + (size_t)slots[i] * key_bytes, key_bytes);
            prefetch_row(v + (size_t)slots[i] * value_bytes, value_bytes);
        }
        if (i < AHEAD) continue;
        const int j = i - AHEAD;
        copy_row((char *)key_rows + (size_t)j * key_bytes, k + (size_t)slots[j] * key_bytes, key_bytes);
        copy_row((char *)value_rows + (size_t)j * value_bytes, v + (size_t)slots[j] * value_bytes, value_bytes);
    }
}

// ---- HSA (ROCKETKV.md §4) ----

#if RK_X86
// expf as glibc computes it on CPUs with FMA (sysdeps/ieee754/flt-32/e_expf.c, the __expf_fma variant), four
// lanes in double precision: x·32/ln2 = k + r, exp(x) = 2^(k/32) · (1 + C2·r + C1·r² + C0·r³) with a 32-entry
// table for 2^(i/32) (its entries minus i << 47, as glibc stores them), the same fused operations in the same
// order, so every result has glibc's bits. Lanes with |x| ≥ 80 (overflow, underflow, inf, NaN) go to libm.
static const uint64_t expf_table[32] = {
    0x3ff0000000000000ULL, 0x3fefd9b0d3158574ULL, 0x3fefb5586cf9890fULL, 0x3fef9301d0125b51ULL,
    0x3fef72b83c7d517bULL, 0x3fef54873168b9aaULL, 0x3fef387a6e756238ULL, 0x3fef1e9df51fdee1ULL,
    0x3fef06fe0a31b715ULL, 0x3feef1a7373aa9cbULL, 0x3feedea64c123422ULL, 0x3feece086061892dULL,
    0x3feebfdad5362a27ULL, 0x3feeb42b569d4f82ULL, 0x3feeab07dd485429ULL, 0x3feea47eb03a5585ULL,
    0x3feea09e667f3bcdULL, 0x3fee9f75e8ec5f74ULL, 0x3feea11473eb0187ULL, 0x3feea589994cce13ULL,
    0x3feeace5422aa0dbULL, 0x3feeb737b0cdc5e5ULL, 0x3feec49182a3f090ULL, 0x3feed503b23e255dULL,
    0x3feee89f995ad3adULL, 0x3feeff76f2fb5e47ULL, 0x3fef199bdd85529cULL, 0x3fef3720dcef9069ULL,
    0x3fef5818dcfba487ULL, 0x3fef7c97337b9b5fULL, 0x3fefa4afa2a490daULL, 0x3fefd0765b6e4540ULL,
};
RK_AVX2 static inline __m128 expf_glibc4(__m128 x) {
    const __m256d inv_ln2_n = _mm256_set1_pd(0x1.71547652b82fep+5), shift = _mm256_set1_pd(0x1.8p+52);
    const __m256d xd = _mm256_cvtps_pd(x);
    const __m256d kd = _mm256_fmadd_pd(inv_ln2_n, xd, shift);
    const __m256i ki = _mm256_castpd_si256(kd);
    const __m256d r = _mm256_fmsub_pd(inv_ln2_n, xd, _mm256_sub_pd(kd, shift));
    const __m256i t = _mm256_add_epi64(_mm256_i64gather_epi64((const long long *)expf_table, _mm256_and_si256(ki, _mm256_set1_epi64x(31)), 8),
                                       _mm256_slli_epi64(ki, 47));
    const __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(0x1.c6af84b912394p-20), _mm256_set1_pd(0x1.ebfce50fac4f3p-13));
    const __m256d r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(0x1.62e42ff0c52d6p-6), _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(z, r2, y);
    y = _mm256_mul_pd(y, _mm256_castsi256_pd(t));
    __m128 result = _mm256_cvtpd_ps(y);
    const __m128i large = _mm_cmpgt_epi32(_mm_and_si128(_mm_castps_si128(x), _mm_set1_epi32(0x7fffffff)), _mm_set1_epi32(0x429fffff));
    const int lanes = _mm_movemask_ps(_mm_castsi128_ps(large));
    if (lanes) {
        float in[4], out[4];
        _mm_storeu_ps(in, x);
        _mm_storeu_ps(out, result);
        for (int k = 0; k < 4; k++) if (lanes >> k & 1) out[k] = expf(in[k]);
        result = _mm_loadu_ps(out);
    }
    return result;
}

RK_AVX2 static void expf_array_avx2(const float *x, float *y, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(y + i, expf_glibc4(_mm_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = expf(x[i]);
}

// expf_glibc4's operations on eight lanes; the table entries picked by two two-register permutes.
RK_AVX512 static void expf_array_avx512(const float *x, float *y, int n) {
    const __m512d inv_ln2_n = _mm512_set1_pd(0x1.71547652b82fep+5), shift = _mm512_set1_pd(0x1.8p+52);
    const __m512i t0 = _mm512_loadu_si512(expf_table), t1 = _mm512_loadu_si512(expf_table + 8);
    const __m512i t2 = _mm512_loadu_si512(expf_table + 16), t3 = _mm512_loadu_si512(expf_table + 24);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xs = _mm256_loadu_ps(x + i);
        const __m512d xd = _mm512_cvtps_pd(xs);
        const __m512d kd = _mm512_fmadd_pd(inv_ln2_n, xd, shift);
        const __m512i ki = _mm512_castpd_si512(kd);
        const __m512d r = _mm512_fmsub_pd(inv_ln2_n, xd, _mm512_sub_pd(kd, shift));
        const __m512i index = _mm512_and_si512(ki, _mm512_set1_epi64(31));
        const __m512i entry = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(index, _mm512_set1_epi64(16)),
                                                      _mm512_permutex2var_epi64(t0, index, t1), _mm512_permutex2var_epi64(t2, index, t3));
        const __m512i t = _mm512_add_epi64(entry, _mm512_slli_epi64(ki, 47));
        const __m512d z = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.c6af84b912394p-20), _mm512_set1_pd(0x1.ebfce50fac4f3p-13));
        const __m512d r2 = _mm512_mul_pd(r, r);
        __m512d e = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.62e42ff0c52d6p-6), _mm512_set1_pd(1.0));
        e = _mm512_fmadd_pd(z, r2, e);
        e = _mm512_mul_pd(e, _mm512_castsi512_pd(t));
        const __m256i large = _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_castps_si256(xs), _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x429fffff));
        const int lanes = _mm256_movemask_ps(_mm256_castsi256_ps(large));
        float in[8];   // y may be x: the large lanes' arguments kept before the store
        if (lanes) _mm256_storeu_ps(in, xs);
        _mm256_storeu_ps(y + i, _mm512_cvtpd_ps(e));
        for (int k = 0; k < 8; k++) if (lanes >> k & 1) y[i + k] = expf(in[k]);
    }
    if (i < n) expf_array_avx2(x + i, y + i, n - i);
}
#endif

static void expf_array_portable(const float *x, float *y, int n) { for (int i = 0; i < n; i++) y[i] = expf(x[i]); }

void rk_expf_array(const float *x, float *y, int n) {
#if RK_X86
    if (rk_simd_level() >= 2) { expf_array_avx512(x, y, n); return; }
#endif
    DISPATCH(expf_array_avx2, expf_array_portable)(x, y, n);
}

// HSA's softmax normaliser z = Σ_p n_p·e_p in double, summed in eight chains (page p in chain p mod 8, in page
// order: a single chain waits four cycles per page), joined pairwise as below.
static inline double join_chains(const double c[8]) { return ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7])); }

// One head's page softmax (HSA steps 6–7): logits s·inv, minus their maximum, exp, each page weighted by its token
// count in a double sum (join_chains' order), then scaled by 1/(z·G).
static void hsa_page_probabilities_portable(const float *s, int pages, float inv, int page_size, int last_page_tokens,
                                            int group_size, float *out) {
#pragma clang fp contract(off)
    float m = -INFINITY;
    for (int p = 0; p < pages; p++) {
        out[p] = s[p] * inv;
        m = out[p] >= m ? out[p] : m;
    }
    for (int p = 0; p < pages; p++) out[p] = out[p] - m;
    rk_expf_array(out, out, pages);
    double chains[8] = {0};
    for (int p = 0; p < pages; p++) chains[p % 8] += (double)(p + 1 < pages ? page_size : last_page_tokens) * (double)out[p];
    const float scale = (float)(1.0 / (join_chains(chains) * (double)group_size));
    for (int p = 0; p < pages; p++) out[p] = out[p] * scale;
}

#if RK_X86
// The same operations lane by lane: the maximum is the portable loop's select (x ≥ m, so NaN never wins; of +0 and
// −0 either may, and x − (±0) differs only for x = −0, whose exp is 1 both ways), exp is glibc's (rk_expf_array), and
// the double sum keeps the eight chains.
RK_AVX2 static void hsa_page_probabilities_avx2(const float *s, int pages, float inv, int page_size, int last_page_tokens,
                                                int group_size, float *out) {
#pragma clang fp contract(off)
    const __m256 vinv = _mm256_set1_ps(inv);
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int p = 0;
    for (; p + 8 <= pages; p += 8) {
        const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + p), vinv);
        _mm256_storeu_ps(out + p, x);
        vm = _mm256_blendv_ps(vm, x, _mm256_cmp_ps(x, vm, _CMP_GE_OQ));
    }
    float lanes[8], m = -INFINITY;
    _mm256_storeu_ps(lanes, vm);
    for (int i = 0; i < 8; i++) m = lanes[i] >= m ? lanes[i] : m;
    for (; p < pages; p++) {
        out[p] = s[p] * inv;
        m = out[p] >= m ? out[p] : m;
    }
    const __m256 vmax = _mm256_set1_ps(m);
    for (p = 0; p + 8 <= pages; p += 8) _mm256_storeu_ps(out + p, _mm256_sub_ps(_mm256_loadu_ps(out + p), vmax));
    for (; p < pages; p++) out[p] = out[p] - m;
    rk_expf_array(out, out, pages);
    const __m256d n = _mm256_set1_pd((double)page_size);
    __m256d c0 = _mm256_setzero_pd(), c1 = _mm256_setzero_pd();
    for (p = 0; p + 8 < pages; p += 8) {   // pages before the last one, eight at a time
        c0 = _mm256_add_pd(c0, _mm256_mul_pd(n, _mm256_cvtps_pd(_mm_loadu_ps(out + p))));
        c1 = _mm256_add_pd(c1, _mm256_mul_pd(n, _mm256_cvtps_pd(_mm_loadu_ps(out + p + 4))));
    }
    double chains[8];
    _mm256_storeu_pd(chains, c0);
    _mm256_storeu_pd(chains + 4, c1);
    for (; p < pages; p++) chains[p % 8] += (double)(p + 1 < pages ? page_size : last_page_tokens) * (double)out[p];
    const float scale = (float)(1.0 / (join_chains(chains) * (double)group_size));
    const __m256 vscale = _mm256_set1_ps(scale);
    for (p = 0; p + 8 <= pages; p += 8) _mm256_storeu_ps(out + p, _mm256_mul_ps(_mm256_loadu_ps(out + p), vscale));
    for (; p < pages; p++) out[p] = out[p] * scale;
}
#endif

void rk_hsa_page_probabilities(const float *s, int pages, float inv, int page_size, int last_page_tokens,
                               int group_size, float *out) {
    DISPATCH(hsa_page_probabilities_avx2, hsa_page_probabilities_portable)(s, pages, inv, page_size, last_page_tokens, group_size, out);
}

// Bounds compared as floats (as the f32 keys they widen by), f16 bit patterns stored.
#define RK_PAGE_BOUNDS(NAME, ATTRIBUTES, TO_FLOAT)                                                              \
ATTRIBUTES static void NAME(uint16_t *minimum, uint16_t *maximum, size_t stride, const uint16_t *key, int d, int opens) { \
    for (int i = 0; i < d; i++) {                                                                               \
        uint16_t *lo = minimum + (size_t)i * stride, *hi = maximum + (size_t)i * stride;                        \
        if (opens) { *lo = key[i]; *hi = key[i]; continue; }                                                    \
        const float k = TO_FLOAT(key[i]);                                                                       \
        if (k < TO_FLOAT(*lo)) *lo = key[i];                                                                    \
        if (k > TO_FLOAT(*hi)) *hi = key[i];                                                                    \
    }                                                                                                           \
}
RK_PAGE_BOUNDS(page_bounds_add_portable, , half_to_float)
#if RK_X86
RK_PAGE_BOUNDS(page_bounds_add_f16c, RK_AVX2, half_to_float_avx)
#endif

void rk_page_bounds_add_f16(uint16_t *minimum, uint16_t *maximum, size_t stride, const uint16_t *key, int d, int opens) {
    DISPATCH(page_bounds_add_f16c, page_bounds_add_portable)(minimum, maximum ? maximum : minimum, stride, key, d, opens);
}

// x on a grid of step s as int8, rounded down (mode < 0), up (mode > 0) or to nearest even; the bound is the float
// (float)q · s, so q steps until that lies on the right side of x. Needs |x| ≤ 127·s (then q stays in range).
static int8_t q8_bound(float x, float s, int mode) {
    if (s == 0) return 0;
    double q = (double)x / (double)s;
    q = mode < 0 ? floor(q) : mode > 0 ? ceil(q) : nearbyint(q);
    q = q > 127 ? 127 : q < -128 ? -128 : q;
    if (mode < 0) while (q > -128 && (float)q * s > x) q -= 1;
    if (mode > 0) while (q < 127 && (float)q * s < x) q += 1;
    return (int8_t)q;
}

int rk_page_bounds_add_q8(int8_t *minimum, int8_t *maximum, size_t stride, const float *scales, const float *key, int d,
                          int opens) {
    for (int i = 0; i < d; i++) {
        const float x = fabsf(rk_page_bound_value(key[i]));
        if (x > 127 * scales[i] || (maximum && x > 127 * scales[d + i])) return 1;
    }
    for (int i = 0; i < d; i++) {
        const float x = rk_page_bound_value(key[i]);
        int8_t *lo = minimum + (size_t)i * stride;
        if (!maximum) { *lo = q8_bound(x, scales[i], 0); continue; }
        int8_t *hi = maximum + (size_t)i * stride;
        if (opens || x < (float)*lo * scales[i]) *lo = q8_bound(x, scales[i], -1);
        if (opens || x > (float)*hi * scales[d + i]) *hi = q8_bound(x, scales[d + i], 1);
    }
    return 0;
}

// ---- Top-k selection (value descending, ties to the lower index, NaN as -inf) ----
// Each candidate becomes one 64-bit key that orders like its rank: the value's bits mapped to an unsigned
// order (NaN as -inf, -0 as +0) above the complemented index. The heap then compares plain integers.
static inline uint64_t rank_key(const float *v, int32_t i) {
    const float x = v[i] != v[i] ? -INFINITY : v[i] == 0 ? 0.0f : v[i];
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    const uint32_t ordered = b & 0x80000000u ? ~b : b | 0x80000000u;
    return (uint64_t)ordered << 32 | (uint32_t)~(uint32_t)i;
}
static void rank_keys_portable(const float *v, int n, uint64_t *keys) { for (int i = 0; i < n; i++) keys[i] = rank_key(v, i); }

#if RK_X86
// rank_key for 16 values at a time: NaN to −inf, −0 to +0, the bits ordered, the complemented index below.
RK_AVX512 static void rank_keys_avx512(const float *v, int n, uint64_t *keys) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u), step = _mm512_set1_epi32(16);
    __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int i = 0;
    for (; i + 16 <= n; i += 16, index = _mm512_add_epi32(index, step)) {
        __m512 x = _mm512_loadu_ps(v + i);
        x = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_ps(-INFINITY));
        x = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_EQ_OQ), _mm512_setzero_ps());
        const __m512i b = _mm512_castps_si512(x);
        const __m512i ordered = _mm512_mask_mov_epi32(_mm512_or_si512(b, sign), _mm512_test_epi32_mask(b, sign),
                                                      _mm512_xor_si512(b, _mm512_set1_epi32(-1)));
        const __m512i low = _mm512_xor_si512(index, _mm512_set1_epi32(-1));
        for (int h = 0; h < 2; h++) {
            const __m512i o = _mm512_cvtepu32_epi64(h ? _mm512_extracti64x4_epi64(ordered, 1) : _mm512_castsi512_si256(ordered));
            const __m512i l = _mm512_cvtepu32_epi64(h ? _mm512_extracti64x4_epi64(low, 1) : _mm512_castsi512_si256(low));
            _mm512_storeu_si512(keys + i + 8 * h, _mm512_or_si512(_mm512_slli_epi64(o, 32), l));
        }
    }
    for (; i < n; i++) keys[i] = rank_key(v, i);
}
#endif

static void rank_keys(const float *v, int n, uint64_t *keys) {
#if RK_X86
    if (rk_simd_level() >= 2) { rank_keys_avx512(v, n, keys); return; }
#endif
    rank_keys_portable(v, n, keys);
}

// Min-heap of keys (the worst of the heap at its root). Keys are distinct, so the result does not depend on how
// the heap arranges them; the smaller child is picked without a branch.
static void sift_worst_down(uint64_t *h, int size, int i) {
    const uint64_t x = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size) c += h[c + 1] < h[c];
        if (h[c] >= x) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

// Sorts a min-heap of k keys best first: the worst goes last, the best ends up first.
static void heap_sort_keys(uint64_t *h, int k) {
    for (int m = k - 1; m > 0; m--) {
        const uint64_t t = h[0]; h[0] = h[m]; h[m] = t;
        sift_worst_down(h, m, 0);
    }
}

// Sorts keys best first: insertion for up to 128 (one mispredicted branch per key), heap sort beyond.
static void sort_keys_descending(uint64_t *h, int k) {
    if (k <= 128) {
        for (int i = 1; i < k; i++) {
            const uint64_t x = h[i];
            int j = i;
            for (; j > 0 && h[j - 1] < x; j--) h[j] = h[j - 1];
            h[j] = x;
        }
        return;
    }
    for (int i = k / 2 - 1; i >= 0; i--) sift_worst_down(h, k, i);
    heap_sort_keys(h, k);
}

// Moves the k largest of the distinct keys a[0..n) to a[0..k), in any order (0 < k < n): quickselect with
// median-of-three pivots and a branch-free partition through `tmp` (n keys). Returns 0 if it gave up after
// 64 rounds (an adversarial order), with a[] still a permutation of the keys.
static int select_largest_keys(uint64_t *a, int n, int k, uint64_t *tmp) {
    int lo = 0, hi = n;   // the k-th largest lies in a[lo..hi), everything before lo is larger
    for (int round = 0; hi - lo > 16; round++) {
        if (round == 64) return 0;
        const uint64_t x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
        const uint64_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int above = 0, below = 0;
        uint64_t *low = tmp + (hi - lo);   // the keys below the pivot, written from the back of tmp
        for (int i = lo; i < hi; i++) {
            const uint64_t v = a[i];
            tmp[above] = v;
            low[-1 - below] = v;
            above += v > pivot;
            below += v < pivot;
        }
        memcpy(a + lo, tmp, (size_t)above * sizeof *a);
        a[lo + above] = pivot;
        for (int i = 0; i < below; i++) a[lo + above + 1 + i] = low[-1 - i];
        const int split = lo + above;   // the pivot's rank
        if (k <= split) hi = split;
        else if (k == split + 1) return 1;
        else lo = split + 1;
    }
    sort_keys_descending(a + lo, hi - lo);
    return 1;
}

// The heap selection: one pass keeping the k best in a min-heap, then heap sort (the reference the
// quickselect path is tested against, and its fallback).
static void top_keys_heap(const float *values, int n, int k, uint64_t *h) {
    for (int i = 0; i < k; i++) h[i] = rank_key(values, i);
    for (int i = k / 2 - 1; i >= 0; i--) sift_worst_down(h, k, i);
    for (int i = k; i < n; i++) {
        const uint64_t key = rank_key(values, i);
        if (key > h[0]) { h[0] = key; sift_worst_down(h, k, 0); }
    }
    heap_sort_keys(h, k);
}

int rk_top_indices_heap(const float *values, int n, int k, int32_t *out) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    uint64_t *h = (uint64_t *)malloc((size_t)k * sizeof(uint64_t));
    top_keys_heap(values, n, k, h);
    for (int i = 0; i < k; i++) out[i] = (int32_t)~(uint32_t)h[i];
    free(h);
    return k;
}

// Keeps the keys of a[0..n) above a pivot that about 2k of them should pass (the 2k/n quantile of 64 evenly
// spaced samples) in tmp, and returns how many passed; fewer than k means the estimate failed.
static int keys_above_sampled_pivot(const uint64_t *a, int n, int k, uint64_t *tmp) {
    enum { SAMPLES = 64 };
    const int rank = (int)(2 * (int64_t)k * SAMPLES / n);   // the pivot is the sample of this rank, best first
    uint64_t best[SAMPLES];   // the rank + 1 best samples so far, best first
    int kept = 0;
    for (int i = 0; i < SAMPLES; i++) {
        const uint64_t x = a[(int64_t)i * n / SAMPLES];
        int j;
        if (kept <= rank) j = kept++;
        else if (x > best[rank]) j = rank;
        else continue;
        for (; j > 0 && best[j - 1] < x; j--) best[j] = best[j - 1];
        best[j] = x;
    }
    const uint64_t pivot = best[rank];
    int count = 0;
    for (int i = 0; i < n; i++) {   // branch-free: each key written, kept only if above
        tmp[count] = a[i];
        count += a[i] > pivot;
    }
    return count;
}

static __thread void *top_tls = NULL;
static __thread size_t top_tls_cap = 0;

int rk_top_indices(const float *values, int n, int k, int32_t *out) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    uint64_t *a = grow_scratch(&top_tls, &top_tls_cap, 3 * (size_t)n * sizeof(uint64_t)), *tmp = a + n;
    rank_keys(values, n, a);
    // A few best of many (HSA's top pages): most keys are dropped in one pass below a sampled pivot first.
    int m = 0;
    if (n >= 256 && 4 * k <= n) m = keys_above_sampled_pivot(a, n, k, tmp);
    uint64_t *keys = a;
    int candidates = n;
    if (m >= k) { keys = tmp; candidates = m; tmp += m; }
    if (k == candidates || select_largest_keys(keys, candidates, k, tmp)) sort_keys_descending(keys, k);
    else top_keys_heap(values, n, k, keys = a);
    for (int i = 0; i < k; i++) out[i] = (int32_t)~(uint32_t)keys[i];
    return k;
}

// ---- KV rows in ggml blocks (Q8_0, Q4_0) ----
// Keys are scored as llama.cpp's flash attention scores a quantized K: the query quantized to Q8_0, then the
// integer row-dot (its AVX2 order: per block one fmadd of d_k·d_q into 8 lanes of int sums, hsum at the end,
// which the portable path repeats lane for lane). Values are dequantized (exactly: a half scale times a small
// integer fits a float) and accumulated with one fused multiply-add per element and row, rows in order, so
// every level gives the same bits. Fast paths: AVX2 scores through the quantized matmul's tiles (keys as weight
// rows, queries as tokens); AVX-512 scores eight keys × up to four queries per pass with their lane sums reduced
// together, and AVX-512 P·V keeping up to four queries' accumulators for 64 columns in registers over all rows.

size_t rk_kv_row_bytes(int type, int d) {
    switch (type) {
    case RK_KV_Q8_0: return (size_t)d / 32 * sizeof(block_q8_0);
    case RK_KV_Q4_0: return (size_t)d / 32 * sizeof(block_q4_0);
    default: return (size_t)d * sizeof(uint16_t);
    }
}

// ggml's quantize_row_q4_0_ref: the scale from the element of largest magnitude (sign kept), d = max / −8.
static void quantize_q4_0(const float *x, block_q4_0 *y, int n) {
    for (int b = 0; b < n / 32; b++) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            const float v = x[b * 32 + j];
            if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
        }
        const float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = float_to_half(d);
        for (int j = 0; j < 16; j++) {
            const int lo = (int8_t)(x[b * 32 + j] * id + 8.5f), hi = (int8_t)(x[b * 32 + 16 + j] * id + 8.5f);
            y[b].qs[j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
        }
    }
}

void rk_kv_quantize_row(int type, const float *x, void *y, int d) {
    switch (type) {
    case RK_KV_Q8_0: rk_quantize_row_q8_0(x, y, d); break;
    case RK_KV_Q4_0: quantize_q4_0(x, (block_q4_0 *)y, d); break;
    default: rk_f32_to_f16(x, (uint16_t *)y, d);
    }
}

// Element e of block b of a quantized row, as an integer (Q4_0: low nibbles are elements 0–15, high 16–31).
static inline int kv_element(int type, const void *row, int b, int e) {
    if (type == RK_KV_Q8_0) return ((const block_q8_0 *)row)[b].qs[e];
    const uint8_t q = ((const block_q4_0 *)row)[b].qs[e % 16];
    return (e < 16 ? q & 0x0f : q >> 4) - 8;
}

static inline float kv_scale(int type, const void *row, int b) {
    return half_to_float(type == RK_KV_Q8_0 ? ((const block_q8_0 *)row)[b].d : ((const block_q4_0 *)row)[b].d);
}

void rk_kv_dequantize_row(int type, const void *x, float *y, int d) {
    if (type != RK_KV_Q8_0 && type != RK_KV_Q4_0) { rk_f16_to_f32((const uint16_t *)x, y, d); return; }
    for (int b = 0; b < d / 32; b++) {
        const float s = kv_scale(type, x, b);
        for (int e = 0; e < 32; e++) y[b * 32 + e] = s * (float)kv_element(type, x, b, e);
    }
}

static float kv_dot_portable(int type, const void *row, const block_q8_0 *q, int d) {
    float acc[8] = {0};
    for (int b = 0; b < d / 32; b++) {
        int32_t lane[8] = {0};
        for (int e = 0; e < 32; e++) lane[e / 4] += kv_element(type, row, b, e) * q[b].qs[e];
        const float s = kv_scale(type, row, b) * half_to_float(q[b].d);
        for (int l = 0; l < 8; l++) acc[l] = fmaf(s, (float)lane[l], acc[l]);
    }
    return hsum8_batched(acc);
}

static void kv_scores_portable(int type, const void *q8, int nq, const void *keys, int d, int j0, int j1, float scale,
                               float *scores, size_t sstride) {
    const size_t rb = rk_kv_row_bytes(type, d), qb = (size_t)d / 32 * sizeof(block_q8_0);
    for (int j = j0; j < j1; j++)
        for (int i = 0; i < nq; i++)
            scores[(size_t)i * sstride + j] =
                kv_dot_portable(type, (const char *)keys + j * rb, (const block_q8_0 *)((const char *)q8 + i * qb), d) * scale;
}

static void kv_pv_portable(int type, const float *p, size_t pstride, int nq, int j0, int j1, const void *values, int d,
                           float *out, size_t ostride) {
    const size_t rb = rk_kv_row_bytes(type, d);
    float v[RK_MAX_HEAD_DIM];
    for (int i = 0; i < nq; i++) memset(out + (size_t)i * ostride, 0, (size_t)d * sizeof(float));
    for (int j = j0; j < j1; j++) {
        rk_kv_dequantize_row(type, (const char *)values + j * rb, v, d);
        for (int i = 0; i < nq; i++) {
            const float pj = p[(size_t)i * pstride + j];
            float *o = out + (size_t)i * ostride;
            for (int c = 0; c < d; c++) o[c] = fmaf(pj, v[c], o[c]);
        }
    }
}

#if RK_X86
// Scores are a quantized matmul of the key rows by the Q8_0 queries: the tiled kernels (keys as weight rows, queries
// as tokens) give each dot the row-dot's bits, then one multiply by the scale, as the portable path rounds it.
RK_AVX2 static void kv_scores_tiled(int type, const void *q8, int nq, const void *keys, int d, int j0, int j1, float scale,
                                    float *scores, size_t sstride) {
    rk_matmul_quant(type, keys, rk_kv_row_bytes(type, d), j0, j1, q8, (size_t)d / 32 * sizeof(block_q8_0), nq, scores, sstride, d);
    for (int i = 0; i < nq; i++)
        for (int j = j0; j < j1; j++) scores[(size_t)i * sstride + j] *= scale;
}

// Scores of NQ (≤ 4) Q8_0 queries (`dq`: their block scales, nb per query) against the keys [j0, j1) of one row
// type, eight keys per reduction: each key is read once for all the queries, where the matmul's 4 × 1 tiles read it
// once per query, with the tiles' arithmetic (pair_signed on the key's signed bytes, one FMA of d_k·d_q per block)
// and hsum_ps's additions done for eight keys at once (attn_reduce8, batched order).
#define RK_KV_SCORES_AVX2(NAME, BLOCK, LOADW, NQ)                                                                \
RK_AVX2 static void NAME(const char *q8, size_t qb, const float *dq, const char *keys, size_t rb, int nb, int j0, \
                         int j1, __m256 vscale, float *scores, size_t sstride) {                                \
    __m256 s[NQ * 8];                                                                                           \
    for (int jb = j0; jb < j1; jb += 8) {                                                                       \
        const int m = j1 - jb < 8 ? j1 - jb : 8;                                                                \
        const char *ahead = keys + (size_t)jb * rb + 8192;   /* as RK_SCORES_GROUP: 8 KB ahead */               \
        for (size_t line = 0; line < 8 * rb; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);               \
        for (int k = 0; k < 8; k++) {                                                                           \
            __m256 a[NQ];                                                                                       \
            for (int i = 0; i < NQ; i++) a[i] = _mm256_setzero_ps();                                            \
            const BLOCK *key = (const BLOCK *)(keys + (size_t)(jb + (k < m ? k : 0)) * rb);                     \
            for (int b = 0; k < m && b < nb; b++) {                                                             \
                const __m256i qw = LOADW(key + b), aw = _mm256_sign_epi8(qw, qw);                               \
                const __m256 dk = half_set1_avx(key[b].d);                                                      \
                for (int i = 0; i < NQ; i++) {                                                                  \
                    const block_q8_0 *xb = (const block_q8_0 *)(q8 + (size_t)i * qb) + b;                       \
                    const __m256 dot = mul_sum_us8_ps(aw, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xb->qs), qw)); \
                    a[i] = _mm256_fmadd_ps(_mm256_mul_ps(dk, _mm256_broadcast_ss(dq + (size_t)i * nb + b)), dot, a[i]); \
                }                                                                                               \
            }                                                                                                   \
            for (int i = 0; i < NQ; i++) s[i * 8 + k] = a[i];                                                   \
        }                                                                                                       \
        for (int i = 0; i < NQ; i++) store_scores8(s + i * 8, 1, vscale, scores + (size_t)i * sstride + jb, m); \
    }                                                                                                           \
}
RK_KV_SCORES_AVX2(kv_scores_q8_0_1, block_q8_0, loadw_q8_0, 1)
RK_KV_SCORES_AVX2(kv_scores_q8_0_2, block_q8_0, loadw_q8_0, 2)
RK_KV_SCORES_AVX2(kv_scores_q8_0_3, block_q8_0, loadw_q8_0, 3)
RK_KV_SCORES_AVX2(kv_scores_q8_0_4, block_q8_0, loadw_q8_0, 4)
RK_KV_SCORES_AVX2(kv_scores_q4_0_1, block_q4_0, loadw_q4_0, 1)
RK_KV_SCORES_AVX2(kv_scores_q4_0_2, block_q4_0, loadw_q4_0, 2)
RK_KV_SCORES_AVX2(kv_scores_q4_0_3, block_q4_0, loadw_q4_0, 3)
RK_KV_SCORES_AVX2(kv_scores_q4_0_4, block_q4_0, loadw_q4_0, 4)

// Decode's few queries (≤ 4 per KV head) by the kernels above; a prompt's many by the matmul's tiles, whose token
// blocks keep the queries in cache while the keys pass.
RK_AVX2 static void kv_scores_avx2(int type, const void *q8, int nq, const void *keys, int d, int j0, int j1, float scale,
                                   float *scores, size_t sstride) {
    typedef void (*scores_fn)(const char *, size_t, const float *, const char *, size_t, int, int, int, __m256, float *, size_t);
    static const scores_fn q8_0[4] = {kv_scores_q8_0_1, kv_scores_q8_0_2, kv_scores_q8_0_3, kv_scores_q8_0_4};
    static const scores_fn q4_0[4] = {kv_scores_q4_0_1, kv_scores_q4_0_2, kv_scores_q4_0_3, kv_scores_q4_0_4};
    if (nq > 4) { kv_scores_tiled(type, q8, nq, keys, d, j0, j1, scale, scores, sstride); return; }
    const int nb = d / 32;
    const size_t qb = (size_t)nb * sizeof(block_q8_0);
    float dq[4 * RK_MAX_HEAD_DIM / 32];
    for (int i = 0; i < nq; i++)
        for (int b = 0; b < nb; b++) dq[i * nb + b] = half_to_float_avx(((const block_q8_0 *)((const char *)q8 + i * qb))[b].d);
    (type == RK_KV_Q8_0 ? q8_0 : q4_0)[nq - 1]((const char *)q8, qb, dq, (const char *)keys, rk_kv_row_bytes(type, d), nb, j0, j1,
                                               _mm256_set1_ps(scale), scores, sstride);
}

// hsum8_batched of each of eight keys' lanes, the keys in pairs as the AVX-512 tiles hold rows (key 2p in the low
// half of pairs[p], 2p + 1 in the high half): u_m = a[m] + a[m + 4], then (u0 + u2) + (u1 + u3), for all eight at once.
RK_AVX512 static inline __m256 hsum8_batched_x8(const __m512 pairs[4]) {
    const __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(pairs[0], pairs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(pairs[0], pairs[1], _MM_SHUFFLE(3, 1, 3, 1)));   // 128-bit lane k: key k's u
    const __m512 v = _mm512_add_ps(_mm512_shuffle_f32x4(pairs[2], pairs[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(pairs[2], pairs[3], _MM_SHUFFLE(3, 1, 3, 1)));   // key 4 + k's u
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(w, v, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(w, v, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 f = _mm512_add_ps(r, _mm512_permute_ps(r, _MM_SHUFFLE(2, 3, 0, 1)));   // key k at 4k, key 4 + k at 4k + 2
    return _mm512_castps512_ps256(_mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 10, 6, 2, 12, 8, 4, 0), f));
}

// Scores of eight keys from j for NQ Q8_0 queries (`corr`: per query and block, −offset × each lane's four query
// bytes): the tiles' arithmetic (vpdpbusd on the keys' stored bytes, one fma of d_k·d_q per block and lane), with
// the eight keys' lane sums reduced together.
#define RK_KV_SCORES512(NQ)                                                                                         \
RK_AVX512 static void kv_scores512_##NQ(int type, const char *q8, size_t qb, const __m256i *corr, const char *keys,   \
                                        size_t rb, int nb, int j, float scale, float *scores, size_t sstride) {     \
    const size_t bs = type == RK_KV_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);                                 \
    __m512 acc[NQ][4];                                                                                              \
    for (int i = 0; i < NQ; i++)                                                                                    \
        for (int p = 0; p < 4; p++) acc[i][p] = _mm512_setzero_ps();                                                \
    for (int b = 0; b < nb; b++) {                                                                                  \
        uint16_t h[8];                                                                                              \
        for (int k = 0; k < 8; k++) memcpy(&h[k], keys + (size_t)(j + k) * rb + b * bs, 2);                         \
        const __m512 dk = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));           \
        __m512i qw[4]; __m512 dw[4];                                                                                \
        for (int p = 0; p < 4; p++) {                                                                               \
            const char *a = keys + (size_t)(j + 2 * p) * rb + b * bs, *c = a + rb;                                  \
            qw[p] = type == RK_KV_Q8_0 ? loadu2_q8_0((const block_q8_0 *)a, (const block_q8_0 *)c)                  \
                                       : loadu2_q4_0((const block_q4_0 *)a, (const block_q4_0 *)c);                 \
            dw[p] = _mm512_permutexvar_ps(_mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1,   \
                2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p), dk);       \
        }                                                                                                           \
        for (int i = 0; i < NQ; i++) {                                                                              \
            const block_q8_0 *xb = (const block_q8_0 *)(q8 + (size_t)i * qb) + b;                                   \
            const __m512i qx = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xb->qs));                 \
            const __m512i ci = _mm512_broadcast_i64x4(_mm256_loadu_si256(corr + (size_t)i * nb + b));               \
            const __m512 dx = _mm512_set1_ps(_cvtsh_ss(xb->d));                                                     \
            for (int p = 0; p < 4; p++)                                                                             \
                acc[i][p] = _mm512_fmadd_ps(_mm512_mul_ps(dw[p], dx), _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(ci, qw[p], qx)), acc[i][p]); \
        }                                                                                                           \
    }                                                                                                               \
    for (int i = 0; i < NQ; i++)                                                                                    \
        _mm256_storeu_ps(scores + (size_t)i * sstride + j, _mm256_mul_ps(hsum8_batched_x8(acc[i]), _mm256_set1_ps(scale))); \
}
RK_KV_SCORES512(1)
RK_KV_SCORES512(2)
RK_KV_SCORES512(3)
RK_KV_SCORES512(4)

RK_AVX512 static void kv_scores_avx512(int type, const void *q8, int nq, const void *keys, int d, int j0, int j1, float scale,
                                       float *scores, size_t sstride) {
    typedef void (*scores_fn)(int, const char *, size_t, const __m256i *, const char *, size_t, int, int, float, float *, size_t);
    static const scores_fn tiles[4] = {kv_scores512_1, kv_scores512_2, kv_scores512_3, kv_scores512_4};
    const size_t rb = rk_kv_row_bytes(type, d), qb = (size_t)d / 32 * sizeof(block_q8_0);
    const int nb = d / 32, offset = type == RK_KV_Q8_0 ? 128 : 8, j8 = j0 + (j1 - j0) / 8 * 8;
    __m256i corr[4 * RK_MAX_HEAD_DIM / 32];
    for (int i0 = 0; i0 < nq; i0 += 4) {
        const int n = nq - i0 < 4 ? nq - i0 : 4;
        const char *q = (const char *)q8 + (size_t)i0 * qb;
        for (int i = 0; i < n; i++)
            for (int b = 0; b < nb; b++) corr[i * nb + b] = lane_offsets(offset, (const block_q8_0 *)(q + i * qb) + b);
        for (int j = j0; j < j8; j += 8) tiles[n - 1](type, q, qb, corr, (const char *)keys, rb, nb, j, scale, scores + (size_t)i0 * sstride, sstride);
    }
    if (j8 < j1) kv_scores_tiled(type, q8, nq, keys, d, j8, j1, scale, scores, sstride);   // the last keys, fewer than 8
}

// half_set1_avx in sixteen lanes (here too clang's vpinsrw for _cvtsh_ss merged into an accumulator's register).
RK_AVX512 static inline __m512 half_set1_avx512(uint16_t h) {
    __m256i v = _mm256_set1_epi16((short)h);
    __asm__("" : "+x"(v));
    return _mm512_cvtph_ps(v);
}

// Sixteen values of a quantized row from element c (a multiple of 16), dequantized exactly (scale × small integer).
RK_AVX512 static inline __m512 kv_values16(int type, const char *row, int c) {
    const int b = c / 32, e = c % 32;
    if (type == RK_KV_Q8_0) {
        const block_q8_0 *block = (const block_q8_0 *)row + b;
        const __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(block->qs + e)));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(q), half_set1_avx512(block->d));
    }
    const block_q4_0 *block = (const block_q4_0 *)row + b;   // elements 0–15 are the low nibbles, 16–31 the high
    __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)block->qs));
    q = e ? _mm512_srli_epi32(q, 4) : _mm512_and_si512(q, _mm512_set1_epi32(15));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(8))), half_set1_avx512(block->d));
}

// P·V for NQ queries over 64 columns [c, c + 64) of the rows [j0, j1): the NQ × 4 accumulators stay in registers
// over all rows (one fused multiply-add per element and row, rows in order: the portable path's bits).
#define RK_KV_PV512(NQ)                                                                                             \
RK_AVX512 static void kv_pv512_##NQ(int type, const float *p, size_t pstride, int j0, int j1, const char *values,  \
                                    size_t rb, int c, float *out, size_t ostride) {                                 \
    __m512 acc[NQ][4];                                                                                              \
    for (int i = 0; i < NQ; i++)                                                                                    \
        for (int k = 0; k < 4; k++) acc[i][k] = _mm512_setzero_ps();                                                \
    for (int j = j0; j < j1; j++) {                                                                                 \
        const char *row = values + (size_t)j * rb;                                                                  \
        __m512 v[4];                                                                                                \
        for (int k = 0; k < 4; k++) v[k] = kv_values16(type, row, c + 16 * k);                                      \
        for (int i = 0; i < NQ; i++) {                                                                              \
            const __m512 pj = _mm512_set1_ps(p[(size_t)i * pstride + j]);                                          \
            for (int k = 0; k < 4; k++) acc[i][k] = _mm512_fmadd_ps(pj, v[k], acc[i][k]);                          \
        }                                                                                                           \
    }                                                                                                               \
    for (int i = 0; i < NQ; i++)                                                                                    \
        for (int k = 0; k < 4; k++) _mm512_storeu_ps(out + (size_t)i * ostride + c + 16 * k, acc[i][k]);           \
}
RK_KV_PV512(1)
RK_KV_PV512(2)
RK_KV_PV512(3)
RK_KV_PV512(4)

RK_AVX512 static void kv_pv_avx512(int type, const float *p, size_t pstride, int nq, int j0, int j1, const void *values, int d,
                                   float *out, size_t ostride) {
    typedef void (*pv_fn)(int, const float *, size_t, int, int, const char *, size_t, int, float *, size_t);
    static const pv_fn tiles[4] = {kv_pv512_1, kv_pv512_2, kv_pv512_3, kv_pv512_4};
    const size_t rb = rk_kv_row_bytes(type, d);
    for (int i = 0; i < nq; i += 4) {
        const int n = nq - i < 4 ? nq - i : 4;
        for (int c = 0; c < d; c += 64)
            tiles[n - 1](type, p + (size_t)i * pstride, pstride, j0, j1, (const char *)values, rb, c, out + (size_t)i * ostride, ostride);
    }
}

// P·V of NQ (≤ 3) queries over one block's 32 columns of the rows [j0, j1): 4·NQ accumulators stay in registers
// over all rows (one fused multiply-add per element and row from zero, rows in order: the portable path's bits),
// where a row-at-a-time loop loaded and stored every query's outputs per row (store-bound on AVX2).
#define RK_KV_PV_AVX2(NAME, BLOCK, HALF, NQ)                                                                     \
RK_AVX2 static void NAME(const float *p, size_t pstride, int j0, int j1, const char *values, size_t rb, int b,    \
                         float *out, size_t ostride) {                                                          \
    __m256 a[NQ][4];                                                                                            \
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) a[i][u] = _mm256_setzero_ps();                     \
    for (int j = j0; j < j1; j++) {                                                                             \
        const BLOCK *block = (const BLOCK *)(values + (size_t)j * rb) + b;                                      \
        const __m256 scale = half_set1_avx(block->d);                                              \
        const float *pr = p + j;                                                                                \
        const __m128i q0 = HALF(block, 0), q1 = HALF(block, 2);   /* elements 0 … 15 and 16 … 31 as int8 */      \
        for (int u = 0; u < 4; u++) {   /* 8 columns at a time: 12 accumulators + 3 registers fit in 16 */    \
            __asm__("" : "+r"(pr));   /* broadcast p again for each 8 columns (see RK_PV_GROUP) */              \
            const __m128i q = u < 2 ? q0 : q1;                                                                  \
            const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(u & 1 ? _mm_srli_si128(q, 8) : q)), scale); \
            for (int i = 0; i < NQ; i++) a[i][u] = _mm256_fmadd_ps(_mm256_broadcast_ss(pr + (size_t)i * pstride), v, a[i][u]); \
        }                                                                                                       \
    }                                                                                                           \
    for (int i = 0; i < NQ; i++) for (int u = 0; u < 4; u++) _mm256_storeu_ps(out + (size_t)i * ostride + 32 * b + 8 * u, a[i][u]); \
}
RK_AVX2 static inline __m128i half_q8_0(const block_q8_0 *block, int h) { return _mm_loadu_si128((const __m128i *)(block->qs + 8 * h)); }
// Q4_0: elements 0–15 are the low nibbles, 16–31 the high ones, less 8.
RK_AVX2 static inline __m128i half_q4_0(const block_q4_0 *block, int h) {
    const __m128i bytes = _mm_loadu_si128((const __m128i *)block->qs);
    return _mm_sub_epi8(_mm_and_si128(h ? _mm_srli_epi16(bytes, 4) : bytes, _mm_set1_epi8(15)), _mm_set1_epi8(8));
}
RK_KV_PV_AVX2(kv_pv_q8_0_1, block_q8_0, half_q8_0, 1)
RK_KV_PV_AVX2(kv_pv_q8_0_2, block_q8_0, half_q8_0, 2)
RK_KV_PV_AVX2(kv_pv_q8_0_3, block_q8_0, half_q8_0, 3)
RK_KV_PV_AVX2(kv_pv_q4_0_1, block_q4_0, half_q4_0, 1)
RK_KV_PV_AVX2(kv_pv_q4_0_2, block_q4_0, half_q4_0, 2)
RK_KV_PV_AVX2(kv_pv_q4_0_3, block_q4_0, half_q4_0, 3)

RK_AVX2 static void kv_pv_avx2(int type, const float *p, size_t pstride, int nq, int j0, int j1, const void *values, int d,
                               float *out, size_t ostride) {
    typedef void (*pv_fn)(const float *, size_t, int, int, const char *, size_t, int, float *, size_t);
    static const pv_fn q8[3] = {kv_pv_q8_0_1, kv_pv_q8_0_2, kv_pv_q8_0_3}, q4[3] = {kv_pv_q4_0_1, kv_pv_q4_0_2, kv_pv_q4_0_3};
    const pv_fn *group = type == RK_KV_Q8_0 ? q8 : q4;
    const size_t rb = rk_kv_row_bytes(type, d);
    for (int i = 0; i < nq;) {
        const int n = nq - i == 4 ? 2 : nq - i < 3 ? nq - i : 3;   // four queries as two pairs
        for (int b = 0; b < d / 32; b++)
            group[n - 1](p + (size_t)i * pstride, pstride, j0, j1, (const char *)values, rb, b, out + (size_t)i * ostride, ostride);
        i += n;
    }
}
#endif

void rk_kv_scores(int type, const void *q8, int nq, const void *keys, int d, int j0, int j1, float scale,
                  float *scores, size_t sstride) {
#if RK_X86
    if (rk_simd_level() >= 2) { kv_scores_avx512(type, q8, nq, keys, d, j0, j1, scale, scores, sstride); return; }
#endif
    DISPATCH(kv_scores_avx2, kv_scores_portable)(type, q8, nq, keys, d, j0, j1, scale, scores, sstride);
}

void rk_kv_pv(int type, const float *p, size_t pstride, int nq, int j0, int j1, const void *values, int d,
              float *out, size_t ostride) {
#if RK_X86
    if (rk_simd_level() >= 2 && d % 64 == 0) { kv_pv_avx512(type, p, pstride, nq, j0, j1, values, d, out, ostride); return; }
#endif
    DISPATCH(kv_pv_avx2, kv_pv_portable)(type, p, pstride, nq, j0, j1, values, d, out, ostride);
}

void rk_kv_pv_chunked(int type, const float *p, size_t pstride, int nq, int count, const void *values, int d,
                      float *out, size_t ostride) {
    rk_kv_pv(type, p, pstride, nq, 0, count < RK_KV_CHUNK ? count : RK_KV_CHUNK, values, d, out, ostride);
    if (count <= RK_KV_CHUNK) return;
    float *part = attn_scratch(1, (size_t)nq * d);
    for (int j0 = RK_KV_CHUNK; j0 < count; j0 += RK_KV_CHUNK) {
        rk_kv_pv(type, p, pstride, nq, j0, j0 + RK_KV_CHUNK < count ? j0 + RK_KV_CHUNK : count, values, d, part, (size_t)d);
        for (int i = 0; i < nq; i++)
            for (int c = 0; c < d; c++) out[(size_t)i * ostride + c] += part[(size_t)i * d + c];
    }
}

void rk_kv_attend(int key_type, int value_type, const float *q, size_t qstride, const int32_t *counts, int nq, const void *keys,
                  const void *values, int d, float scale, float *out, size_t ostride, float *probabilities, size_t prstride) {
    int maxcount = 0;
    for (int i = 0; i < nq; i++) if (counts[i] > maxcount) maxcount = counts[i];
    const size_t qb = (size_t)d / 32 * sizeof(block_q8_0), pstride = (size_t)maxcount;
    float *sbuf = attn_scratch(0, (size_t)nq * pstride + (size_t)nq * qb / sizeof(float) + 1);
    void *q8 = sbuf + (size_t)nq * pstride;
    for (int i = 0; i < nq; i++) rk_quantize_row_q8_0(q + (size_t)i * qstride, (char *)q8 + i * qb, d);
    rk_kv_scores(key_type, q8, nq, keys, d, 0, maxcount, scale, sbuf, pstride);
    for (int i = 0; i < nq; i++) {
        float *row = sbuf + (size_t)i * pstride;
        if (counts[i] > 0) rk_attn_softmax(row, counts[i]);
        for (int j = counts[i]; j < maxcount; j++) row[j] = 0;
        if (probabilities) memcpy(probabilities + (size_t)i * prstride, row, (size_t)counts[i] * sizeof(float));
    }
    rk_kv_pv_chunked(value_type, sbuf, pstride, nq, maxcount, values, d, out, ostride);
}

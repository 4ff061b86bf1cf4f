// Hot loops that need x86 SIMD intrinsics (AVX2/FMA/F16C, AVX-512) Swift cannot express, selected at run time.
// Each function has a plain Swift reference in Sources/RocketKV/Kernels and a test comparing the two.
#ifndef ROCKETKV_CKERNELS_H
#define ROCKETKV_CKERNELS_H
#include <float.h>
#include <stddef.h>
#include <stdint.h>

/// The kernels in use, decided once from the CPU: 2 = AVX-512 (F/BW/VL/DQ/VNNI) where it pays, else AVX2;
/// 1 = AVX2/FMA/F16C; 0 = portable C. Every level gives the same bits. `ROCKETKV_SIMD=avx2|portable` caps it.
int rk_simd_level(void);
/// Caps the level at `level` (tests run every path); a negative level removes the cap.
void rk_limit_simd(int level);

/// Quantizes `n` floats (multiple of 32) to Q8_0 blocks (34 bytes each), as llama.cpp does for activations.
void rk_quantize_row_q8_0(const float *x, void *y, int n);
/// Quantizes `n` floats (multiple of 32) to Q8_1 blocks (36 bytes: d, d*sum(q), 32 q).
void rk_quantize_row_q8_1(const float *x, void *y, int n);

/// Dot product of one Q4_1 weight row with Q8_1 activations (`n` elements).
float rk_vec_dot_q4_1_q8_1(int n, const void *w, const void *x);
/// Dot product of one Q8_0 weight row with Q8_0 activations.
float rk_vec_dot_q8_0_q8_0(int n, const void *w, const void *x);
/// Dot product of one Q4_0 weight row with Q8_0 activations.
float rk_vec_dot_q4_0_q8_0(int n, const void *w, const void *x);
/// Dot product of one Q5_0 weight row with Q8_0 activations, in ggml's AVX2 order at every level.
float rk_vec_dot_q5_0_q8_0(int n, const void *w, const void *x);

/// Quantizes `n` floats (multiple of 256) to Q8_K blocks (292 bytes: f32 d, 256 q, 16 int16 sums of 16 q) as
/// llama.cpp's quantize_row_q8_K_ref does (scale −max/127 from the first element of the largest magnitude).
void rk_quantize_row_q8_K(const float *x, void *y, int n);
/// The same as ggml_quantize_mat_q8_K_4x8 (llama.cpp's repacked Q4_K path, rows in groups of 4) does: identical
/// but for a tie of +max and −max in magnitude, where + always sets the sign.
void rk_quantize_row_q8_K_x4(const float *x, void *y, int n);
/// One Q4_K row with Q8_K activations in the float order of llama.cpp's repacked (block_q4_Kx8) AVX2 kernels:
/// ggml_gemm_q4_K_8x8_q8_K's (`gemm` ≠ 0: an fma per pair of sub-blocks) or ggml_gemv_q4_K_8x8_q8_K's (one per
/// super-block), every level giving the same bits.
float rk_vec_dot_q4_K_q8_K_repacked(int n, const void *w, const void *x, int gemm);
/// Rows [r0, r1) of a Q4_K matrix llama.cpp would repack, all `ntok` tokens: tokens below `gemm_tokens` in the
/// gemm order (their activations from rk_quantize_row_q8_K_x4), the rest in the gemv order.
int rk_matmul_q4_K_repacked(const void *w, size_t wstride, int r0, int r1, const void *x, size_t xstride, int ntok,
                            int gemm_tokens, float *y, size_t ystride, int n);
/// Dot products of one Q4_K / Q5_K / Q6_K weight row with Q8_K activations (`n` a multiple of 256): the bits of
/// ggml_vec_dot_q{4,5,6}_K_q8_K's AVX2 kernels at every level.
float rk_vec_dot_q4_K_q8_K(int n, const void *w, const void *x);
float rk_vec_dot_q5_K_q8_K(int n, const void *w, const void *x);
float rk_vec_dot_q6_K_q8_K(int n, const void *w, const void *x);
/// The same rows in the float order of llama.cpp's tiled K-quant matmul (ggml-cpu/tiled), which it takes for these
/// types in batches of 8 or more activation rows: per super-block res = d_w·S (− dmin_w·M), acc = fma(res, d_x, acc).
float rk_vec_dot_q4_K_q8_K_tiled(int n, const void *w, const void *x);
float rk_vec_dot_q5_K_q8_K_tiled(int n, const void *w, const void *x);
float rk_vec_dot_q6_K_q8_K_tiled(int n, const void *w, const void *x);

/// y[t*ystride + r] = dot(row r of W, activation row t) for r in [r0, r1), t in [0, ntok).
/// `type` is the GGML type id of W (2 = Q4_0, 3 = Q4_1, 6 = Q5_0, 8 = Q8_0, 12 = Q4_K, 13 = Q5_K, 14 = Q6_K);
/// activations are quantized to the matching Q8 format (Q8_1 for Q4_1, Q8_K for the K-quants, else Q8_0) with
/// row stride `xstride` bytes. K-quants take llama.cpp's order for the batch: ggml_vec_dot's below 8 tokens, its
/// tiled matmul's from 8. Returns 0, or -1 for an unsupported type.
int rk_matmul_quant(int type, const void *w, size_t wstride, int r0, int r1,
                    const void *x, size_t xstride, int ntok, float *y, size_t ystride, int n);

/// The same with one row-dot per output, no tiling (the reference the tiled kernels are tested against).
int rk_matmul_quant_reference(int type, const void *w, size_t wstride, int r0, int r1,
                              const void *x, size_t xstride, int ntok, float *y, size_t ystride, int n);

/// Same contract for float weights and float activations (type 0 = F32 weights, 1 = F16 weights).
int rk_matmul_float(int type, const void *w, size_t wstride, int r0, int r1,
                    const float *x, size_t xstride, int ntok, float *y, size_t ystride, int n);

float rk_dot_f32(const float *a, const float *b, int n);
/// Indices of the `k` largest of `values[0..<n]` into `out`, best first (larger value, then lower index; NaN
/// ranks as -inf). Returns min(k, n).
int rk_top_indices(const float *values, int n, int k, int32_t *out);
/// The same by a min-heap of k (the plain twin `rk_top_indices`'s quickselect is tested against).
int rk_top_indices_heap(const float *values, int n, int k, int32_t *out);
/// key_rows row i = keys row slots[i] (rows of `key_bytes` bytes), value_rows row i = values row slots[i] (rows of
/// `value_bytes`) for i < n, requesting rows ahead of the copy so that the misses of scattered rows overlap.
void rk_gather_rows(const void *keys, const void *values, size_t key_bytes, size_t value_bytes, const int32_t *slots, int n,
                    void *key_rows, void *value_rows);
/// Dot product of an f16 vector (IEEE half bit patterns) with an f32 vector.
float rk_dot_f16_f32(const uint16_t *a, const float *b, int n);
/// y[r][i] += a[s·rows + r] · strips[s][i] for strips s = 0, 1, … in order (one fused multiply-add each), for
/// `rows` rows of y (stride `ystride`) and i0 ≤ i < n. Strips hold f16 bit patterns when `scales` is NULL, else
/// int8 values, strip s's value being (float)q · scales[s] (rounded once). Each accumulator stays in a register
/// over all strips: the sequence of operations is that of one axpy per strip.
void rk_strip_scores(const void *const *strips, const float *scales, int nstrips, const float *a, int rows, float *y,
                     size_t ystride, int i0, int n);
/// y[i] = expf(x[i]) with libm's bits (glibc's algorithm, vectorised on the AVX2/FMA path); y may be x.
void rk_expf_array(const float *x, float *y, int n);
/// HSA's page probabilities for one query head (ROCKETKV.md §4.3 steps 6–8): with m = max_p s[p]·inv,
/// e[p] = expf(s[p]·inv − m) and z = Σ_p tokens(p)·e[p] (in double, page order), out[p] = e[p] · f32(1 / (z·G)),
/// where tokens(p) is `page_size` except for the last page (`last_page_tokens`). Plain IEEE operations in
/// that order (no fused multiply-adds), libm's expf.
void rk_hsa_page_probabilities(const float *s, int pages, float inv, int page_size, int last_page_tokens,
                               int group_size, float *out);
/// Widens page `page`'s bounds by one f16 key (§4.2): min row i at `minimum + i·stride`, max row at
/// `maximum + i·stride` (the same rows when `maximum` is NULL: pages of one slot); `opens` starts the page
/// at min = max = key.
void rk_page_bounds_add_f16(uint16_t *minimum, uint16_t *maximum, size_t stride, const uint16_t *key, int d, int opens);
/// The same for HSA's int8 bounds (PageMetadata `.q8`): row i's values are int8 times `scales[i]` (min rows
/// i < d, max rows d + i), a minimum rounded down and a maximum up to that grid (pages of one slot, `maximum`
/// NULL: the nearest value), NaN keys as 0 and infinities as ±FLT_MAX. Returns 1, storing nothing, when some
/// value does not fit its rows' range (|x| > 127·scale): the caller grows those scales and calls again.
/// A key value as HSA's int8 bounds take it: NaN as 0, infinities as ±FLT_MAX. The one rule for both the scales
/// (sized in Swift, PageMetadata) and the bounds (rk_page_bounds_add_q8), which must agree.
static inline float rk_page_bound_value(float x) { return x != x ? 0.0f : x < -FLT_MAX ? -FLT_MAX : x > FLT_MAX ? FLT_MAX : x; }
int rk_page_bounds_add_q8(int8_t *minimum, int8_t *maximum, size_t stride, const float *scales, const float *key, int d,
                          int opens);
void rk_f32_to_f16(const float *x, uint16_t *y, int n);
void rk_f16_to_f32(const uint16_t *x, float *y, int n);

// ---- Attention in llama.cpp's arithmetic (f16 cache, no flash attention) ----
// llama.cpp multiplies f16 K/V by f16-rounded queries/probabilities with one of two summation orders:
// batched products (prefill, `batched` = 1) keep one 8-lane FMA accumulator per output; single-token
// products (decode, `batched` = 0) keep four, 32 elements a step. Reproducing the order bit for bit
// keeps our logits within float noise of llama.cpp's instead of amplified int8 re-quantization noise.

/// Dot product of f16 vectors `a` and `b` (any n; the SIMD path for n a multiple of 32, or of 8 when batched).
/// The largest head dimension the attention kernels take (they keep a query row on the stack).
#define RK_MAX_HEAD_DIM 1024
float rk_attn_dot(const uint16_t *a, const uint16_t *b, int n, int batched);
/// In-place softmax as ggml computes it: vectorised exp over 8-wide chunks (zero-padded), sum in double.
void rk_attn_softmax(float *x, int n);
/// out[i] = Σ_j p[j]·v[row j][i] over `count` f16 probabilities; row j is `slots[j]` (or j when slots is NULL)
/// of the f16 matrix `v` with rows of `d` values.
void rk_attn_values(const uint16_t *p, const uint16_t *v, const int32_t *slots, int count, int d, float *out, int batched);

/// Several queries per key/value load, bit-identical to the per-query kernels above.
/// scores[i·sstride + j] = (k_j · f16(q_i)) · scale for keys j in [j0, j1) (q_i at q + i·qstride, d a multiple of 32).
void rk_attn_scores(const float *q, size_t qstride, int nq, const uint16_t *keys, int d, int j0, int j1,
                    float scale, float *scores, size_t sstride, int batched);
/// Softmax of x[0..<n], each probability rounded to f16 (kept as float), zeros up to `padded`. The first `masked`
/// entries are masked out (probability exactly 0) but keep their places in the sums' lanes, as the rows a
/// llama.cpp mask hides do.
void rk_attn_probs(float *x, int n, int masked, int padded);
/// out[i·ostride + c] = Σ_{j<count} p[i·pstride + j]·v_j[c] for all d dims;
/// each p row zero from its own count up to count rounded up to 64.
void rk_attn_pv(const float *p, size_t pstride, int nq, int count, const uint16_t *values, int d,
                float *out, size_t ostride, int batched);
/// rk_attn_pv in single-token order split across threads: its 32 independent accumulator lanes (lane = row
/// mod 32) for lanes [lane0, lane1) go to acc (nq·d·32 floats, [query][d / 8][lane][8]); once every lane is
/// filled, rk_attn_pv_reduce gives rk_attn_pv's out bit for bit.
void rk_attn_pv_lanes(const float *p, size_t pstride, int nq, int count, const uint16_t *values, int d,
                      int lane0, int lane1, float *acc);
void rk_attn_pv_reduce(const float *acc, int nq, int d, float *out, size_t ostride);
/// Scores, probabilities and values for `nq` queries of one KV head; query i sees rows [masked, counts[i]) (the
/// first `masked` rows take their lanes with probability 0, see rk_attn_probs).
void rk_attn_causal(const float *q, size_t qstride, const int32_t *counts, int masked, int nq, const uint16_t *keys,
                    const uint16_t *values, int d, float scale, float *out, size_t ostride, int batched);

// ---- Attention over KV rows stored in ggml blocks (32 values per block, an f16 scale) ----
// Keys are scored as llama.cpp's flash attention scores a quantized K (query quantized to Q8_0, integer
// row-dot); values are dequantized exactly and summed with f32 probabilities, one fused multiply-add per
// element and row, in chunks of RK_KV_CHUNK rows whose partial sums are added in order. Every level gives the
// same bits. `d` must be a multiple of 32.

/// Row types, as ggml type ids: RK_KV_Q8_0 (34 bytes per 32 values), RK_KV_Q4_0 (18 bytes); anything else is f16.
#define RK_KV_Q8_0 8
#define RK_KV_Q4_0 2
/// Rows per partial sum of the P·V products.
#define RK_KV_CHUNK 256
/// Bytes of one row of `d` values of `type` (f16: 2d).
size_t rk_kv_row_bytes(int type, int d);
/// Stores `d` floats as one row of `type` (Q8_0 as llama.cpp quantizes its KV cache, Q4_0 as quantize_row_q4_0_ref).
void rk_kv_quantize_row(int type, const float *x, void *y, int d);
/// The float values of one row of `type` (exact: every stored value is a float).
void rk_kv_dequantize_row(int type, const void *x, float *y, int d);
/// scores[i·sstride + j] = dot(key j, query i) · scale for j in [j0, j1), the queries as Q8_0 rows (`q8`: nq rows
/// of d/32 blocks) and key j at keys + j·rk_kv_row_bytes(type, d).
void rk_kv_scores(int type, const void *q8, int nq, const void *keys, int d, int j0, int j1, float scale,
                  float *scores, size_t sstride);
/// out[i·ostride + c] = Σ_{j0 ≤ j < j1} p[i·pstride + j] · value_j[c], rows in order (overwrites out).
void rk_kv_pv(int type, const float *p, size_t pstride, int nq, int j0, int j1, const void *values, int d,
              float *out, size_t ostride);
/// The same over rows [0, count) in chunks of RK_KV_CHUNK rows, the chunks' sums added in order.
void rk_kv_pv_chunked(int type, const float *p, size_t pstride, int nq, int count, const void *values, int d,
                      float *out, size_t ostride);
/// Attention of `nq` f32 queries over quantized rows (query i sees rows [0, counts[i])), keys of `key_type` and values
/// of `value_type` (llama.cpp's `-ctk`/`-ctv`): rk_kv_scores, a softmax per query (rk_attn_softmax, f32
/// probabilities), then rk_kv_pv_chunked. With `probabilities`, query i's probabilities go to
/// probabilities[i·prstride ..< + counts[i]].
void rk_kv_attend(int key_type, int value_type, const float *q, size_t qstride, const int32_t *counts, int nq, const void *keys,
                  const void *values, int d, float scale, float *out, size_t ostride, float *probabilities, size_t prstride);

/// gate[i] = silu(gate[i]) * up[i], with ggml's vectorised exp (llama.cpp's SwiGLU arithmetic).
void rk_swiglu(float *gate, const float *up, int n);
/// gate[i] = gelu(gate[i]) * up[i] in ggml's arithmetic (GELU through its f16 lookup table).
void rk_geglu(float *gate, const float *up, int n);
/// RMSNorm (ggml's: Σ x² in double, in order) times `weight` of `rows` rows of `n`, `xstride` apart, into rows
/// `ostride` apart (`out` may be `x`); eight rows' sums at a time, each with the bits of a lone row.
void rk_rms_norm_rows(const float *x, size_t xstride, int rows, const float *weight, float epsilon, int n, float *out, size_t ostride);
/// ggml's GELU formula in f32, as the table is built from it (the reference twin's building block).
float rk_gelu_formula(float x);

/// Reads `bytes` (a multiple of 256) as fast as possible and returns a checksum (bandwidth measurement).
uint64_t rk_stream_read(const void *p, size_t bytes);

/// Gives freed heap memory back to the operating system (malloc_trim on glibc; a no-op elsewhere).
void rk_release_free_memory(void);

/// A persistent pool of worker threads that spin briefly between jobs (low dispatch latency). Each pool holds
/// all of its state; pools on different threads run their jobs independently.
typedef struct rk_pool rk_pool;
typedef void (*rk_task_fn)(void *context, int thread_index, int thread_count);
/// A pool with `threads` threads in all (the caller of a job counts as thread 0, so `threads - 1` workers).
rk_pool *rk_pool_create(int threads);
/// Stops and joins the workers and frees the pool. Not while a job runs, nor from one of its workers.
void rk_pool_destroy(rk_pool *pool);
int rk_pool_threads(const rk_pool *pool);
/// Runs fn(context, i, n) for every thread i in [0, n) and returns when all are done. While the pool is busy
/// with another job (another thread's, or this call is nested in one), all n run on the calling thread.
/// Returns 1 when the job was spread over the pool's threads, 0 when it ran on the calling thread alone.
int rk_pool_run(rk_pool *pool, rk_task_fn fn, void *context);
/// The calling thread's current pool (NULL until set; a worker's is its own pool) / sets it, returning the previous.
rk_pool *rk_pool_current(void);
rk_pool *rk_pool_set_current(rk_pool *pool);
/// Returns the counter's value and increments it (atomically): how the threads of one job claim tasks in order.
int rk_counter_next(int32_t *counter);
/// Increments a progress count (release) / waits until it reaches `target` (acquire, spinning): how a task
/// waits for the earlier tasks it needs.
void rk_progress_add(int32_t *progress);
void rk_progress_wait(const int32_t *progress, int32_t target);

#endif

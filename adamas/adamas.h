/*
 * adamas.h - sparse attention for long-context decoding (Adamas).
 *
 * A query and every cached key are rotated by an orthonormal Hadamard matrix,
 * each coordinate is bucketized into a 2-bit code, and at decode time each query
 * head attends only to the `budget` cached tokens whose codes are nearest (L1)
 * to the query's code.  Exact softmax attention runs over that set.
 *
 * Conventions of every function below:
 *   - functions return 0 (ADAMAS_OK) or a negative adamas_status, unless they
 *     return a value by nature (documented per function);
 *   - a failing call changes none of its outputs and leaves a message naming the
 *     bad argument in adamas_last_error() (per thread);
 *   - no function prints, exits or aborts;
 *   - shapes are written row-major, outermost first: [n][n_kv_heads][head_dim].
 */
#ifndef ADAMAS_H
#define ADAMAS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(ADAMAS_BUILDING_SHARED)
#define ADAMAS_API __declspec(dllexport)
#elif defined(__GNUC__)
#define ADAMAS_API __attribute__((visibility("default")))
#else
#define ADAMAS_API
#endif

#define ADAMAS_VERSION_MAJOR 0
#define ADAMAS_VERSION_MINOR 1
#define ADAMAS_VERSION_PATCH 0

/* ---------------------------------------------------------------------------
 * Status and errors
 * ------------------------------------------------------------------------- */

enum adamas_status {
    ADAMAS_OK = 0,
    ADAMAS_EINVAL = -1,    /* an argument is out of its documented domain      */
    ADAMAS_ENOMEM = -2,    /* an allocation failed                             */
    ADAMAS_ECAPACITY = -3, /* the cache would exceed max_tokens                */
    ADAMAS_ENOTSUP = -4,   /* the requested ISA or backend is not available    */
    ADAMAS_EIO = -5,       /* reading or writing a file failed                 */
    ADAMAS_EFORMAT = -6    /* a file is malformed                              */
};

/* Name of a status ("ADAMAS_EINVAL: invalid argument"); never NULL. */
ADAMAS_API const char *adamas_strerror(int status);

/* Message of the most recent failing call on this thread, naming the bad argument;
 * "" when no call has failed on this thread.  Valid until the next failing call. */
ADAMAS_API const char *adamas_last_error(void);

/* ---------------------------------------------------------------------------
 * Kernels on single vectors
 *
 * d is the vector length: a power of two, 16 <= d <= 1024.
 * ------------------------------------------------------------------------- */

#define ADAMAS_MIN_HEAD_DIM 16
#define ADAMAS_MAX_HEAD_DIM 1024

/* Largest magnitude accepted in any vector (keys, values, queries, inputs of the
 * kernels): beyond it the f32 sums of the transform and of q.k could overflow. */
#define ADAMAS_MAX_MAGNITUDE 1.0e12f

/* In-place orthonormal Hadamard transform of x[d] (Sylvester order, stages
 * h = 1, 2, ..., d/2, then a multiplication by (float)(1/sqrt(d))).  Bit-identical
 * on every ISA.  EINVAL: x NULL, d invalid, or an element not finite or beyond
 * ADAMAS_MAX_MAGNITUDE (x unchanged). */
ADAMAS_API int adamas_hadamard_f32(float *x, size_t d);

/* Number of uint64 words of one planar 2-bit code of dimension d: 2*ceil(d/64). */
ADAMAS_API size_t adamas_code_words(size_t d);

/* Planar 2-bit code of a transformed vector xh[d] with thresholds t0 < t1 < t2:
 * code(x) = (x > t0) + (x > t1) + (x > t2).  For dimension i, word 2*(i/64) holds
 * the low bit and word 2*(i/64)+1 the high bit at bit i%64; unused bits are 0.
 * code: [adamas_code_words(d)].  EINVAL: NULL pointer, d invalid, thresholds not
 * finite and strictly increasing, or an element of xh not finite or beyond
 * ADAMAS_MAX_MAGNITUDE. */
ADAMAS_API int adamas_encode_2bit(const float *xh, size_t d, const float th[3],
                                  uint64_t *code);

/* Number of uint16 words of one interleaved code (the layout of the paper's
 * release): d/8.  0 for d not a multiple of 8. */
ADAMAS_API size_t adamas_interleaved_words(size_t d);

/* Planar code -> interleaved layout: 8 dimensions per 16-bit word, dimension i in
 * word i/8 at bits 2*(i%8) (low bit of the code) and 2*(i%8)+1 (high bit).  Store
 * the words little-endian to match the release byte for byte.
 * inter: [adamas_interleaved_words(d)].  EINVAL: NULL pointer, d invalid, or a set
 * bit beyond dimension d in the planar code. */
ADAMAS_API int adamas_codes_to_interleaved(const uint64_t *planar, size_t d, uint16_t *inter);

/* Interleaved layout -> planar code.  planar: [adamas_code_words(d)].
 * EINVAL: NULL pointer or d invalid. */
ADAMAS_API int adamas_codes_from_interleaved(const uint16_t *inter, size_t d, uint64_t *planar);

/* Exact L1 distance sum_i |a(i) - b(i)| of two planar codes of dimension d
 * (at most 3d).  Returns UINT32_MAX (and sets adamas_last_error) on a NULL pointer
 * or an invalid d. */
ADAMAS_API uint32_t adamas_l1_distance(const uint64_t *a, const uint64_t *b, size_t d);

/* The metric of the paper's CUDA kernel: popcount(lo_a ^ lo_b) + 2*popcount(hi_a ^ hi_b).
 * Equals L1 except for the code pair {1, 2}, which it counts as 3.  Returns UINT32_MAX
 * on a NULL pointer or an invalid d. */
ADAMAS_API uint32_t adamas_xorw_distance(const uint64_t *a, const uint64_t *b, size_t d);

/* Indices of the k smallest of dist[n], ties broken toward the larger index,
 * written ascending to idx[k].  Histogram (radix) selection; identical output to
 * a heap or a full sort with the same tie rule.  k == 0 is a no-op.  EINVAL: NULL
 * pointer, k > n, or n >= UINT32_MAX. */
ADAMAS_API int adamas_topk_smallest(const uint16_t *dist, size_t n, size_t k, uint32_t *idx);

/* ---------------------------------------------------------------------------
 * Instruction sets
 * ------------------------------------------------------------------------- */

/* Choose the kernels: "scalar", "avx2", "avx512", "neon", or "auto"/NULL for the
 * best this CPU has.  Without a call, the environment variable ADAMAS_ISA (same
 * names) decides at first use, else "auto".  EINVAL: unknown name; ENOTSUP: the
 * CPU or this build lacks that ISA (the previous choice stays). */
ADAMAS_API int adamas_set_isa(const char *name);

/* Name of the kernels in use ("scalar", "avx2", ...), choosing them first if no
 * call has yet; "none" when ADAMAS_ISA names an ISA that cannot run here. */
ADAMAS_API const char *adamas_isa_name(void);

/* 1 if this build and this CPU can run the named ISA ("auto" always), else 0. */
ADAMAS_API int adamas_isa_available(const char *name);

/* ---------------------------------------------------------------------------
 * KV cache and decoding
 * ------------------------------------------------------------------------- */

typedef enum { ADAMAS_F32 = 0, ADAMAS_F16 = 1, ADAMAS_BF16 = 2 } adamas_dtype;

typedef enum { ADAMAS_METRIC_L1 = 0, ADAMAS_METRIC_XORW = 1 } adamas_metric;

/* What the codes are computed from.  ADAMAS_TRANSFORM_NONE encodes the raw query and
 * keys, without the Hadamard rotation: the paper's ablation, for measuring what the
 * rotation buys; calibration then uses the RMS of the raw vectors. */
typedef enum {
    ADAMAS_TRANSFORM_HADAMARD = 0, /* codes of Hq and Hk (Adamas; the default)         */
    ADAMAS_TRANSFORM_NONE = 1      /* codes of q and k as given                        */
} adamas_transform;

typedef enum {
    ADAMAS_SELECT_ADAMAS = 0,    /* forced set + smallest code distance             */
    ADAMAS_SELECT_FULL = 1,      /* every token (dense attention)                   */
    ADAMAS_SELECT_ORACLE = 2,    /* forced set + largest exact logit q.k            */
    ADAMAS_SELECT_STREAMING = 3, /* `sink` first tokens + the most recent rest      */
    ADAMAS_SELECT_QUEST = 4      /* pages ranked by their min/max bound             */
} adamas_selector;

typedef struct {
    uint32_t n_heads;         /* query heads Hq                                     */
    uint32_t n_kv_heads;      /* key/value heads Hkv; Hq % Hkv == 0                 */
    uint32_t head_dim;        /* d: power of two, 16..1024                          */
    uint32_t max_tokens;      /* capacity, 1 .. UINT32_MAX-1                        */
    adamas_dtype kv_dtype;    /* storage of keys and values                         */
    float q_thresholds[3];    /* query bucket thresholds, t0 < t1 < t2              */
    float k_thresholds[3];    /* key bucket thresholds, t0 < t1 < t2                */
    adamas_metric metric;     /* code distance                                      */
    uint32_t page_size;       /* Quest page size P (>= 1); bounds kept on append    */
    adamas_transform transform; /* rotation before encoding (default Hadamard)      */
} adamas_cache_config;

typedef struct {
    adamas_selector selector;
    uint32_t budget;    /* B: tokens attended per query head, forced ones included   */
    uint32_t sink;      /* first tokens always attended                             */
    uint32_t recent;    /* last tokens always attended                              */
    uint32_t page_size; /* Quest: 0 or the cache's page_size                        */
    uint32_t rerank;    /* 0/1 off; R > 1: codes pick R*(B-|F|), q.k picks B-|F|    */
} adamas_decode_params;

typedef struct adamas_cache adamas_cache;

/* Defaults: f32 storage, thresholds {-10, 0, 10} for queries and keys, L1 metric,
 * Quest pages of 16 tokens, Hadamard transform. */
ADAMAS_API adamas_cache_config adamas_cache_config_default(uint32_t n_heads, uint32_t n_kv_heads,
                                                           uint32_t head_dim, uint32_t max_tokens);

/* Defaults: sink 0 (4 for ADAMAS_SELECT_STREAMING), recent 1, page_size 16, rerank 0. */
ADAMAS_API adamas_decode_params adamas_decode_params_default(adamas_selector selector,
                                                             uint32_t budget);

/* Allocate an empty cache for cfg->max_tokens tokens; *out is set only on success.
 * EINVAL: a field out of its domain (the message names it), or ADAMAS_ISA /
 * ADAMAS_BACKEND holding an unknown name; ENOMEM: the buffers cannot be allocated or
 * their size overflows size_t; ENOTSUP: ADAMAS_ISA / ADAMAS_BACKEND names an ISA or
 * backend that cannot run here. */
ADAMAS_API int adamas_cache_create(const adamas_cache_config *cfg, adamas_cache **out);

/* Free a cache; NULL is ignored. */
ADAMAS_API void adamas_cache_destroy(adamas_cache *c);

/* The configuration the cache was created with (all zero for NULL). */
ADAMAS_API adamas_cache_config adamas_cache_get_config(const adamas_cache *c);

/* Append n tokens.  k, v: [n][n_kv_heads][head_dim] f32.  Keys are encoded from
 * the f32 values given; keys and values are stored rounded to kv_dtype.
 * All or nothing: EINVAL (NULL pointer, a NaN/Inf element, one beyond
 * ADAMAS_MAX_MAGNITUDE or beyond the storage dtype's range) or ECAPACITY
 * (len + n > max_tokens) leave the cache as it was.  n == 0 is a no-op. */
ADAMAS_API int adamas_cache_append(adamas_cache *c, const float *k, const float *v, uint32_t n);

/* Number of tokens stored; 0 for NULL. */
ADAMAS_API uint32_t adamas_cache_len(const adamas_cache *c);

/* Per-head thresholds from the stored keys (an extension of the paper): for each kv
 * head, keys use {-tau*s, 0, tau*s} with s the RMS of that head's transformed stored
 * keys, and the stored keys are re-encoded with them; queries switch to per-step
 * thresholds {-tau*r, 0, tau*r} with r the RMS of the transformed query.  Later
 * appends encode with the calibrated key thresholds.  tau 0.6745 gives equal bucket
 * occupancy for Gaussian data.  A query whose transform is all zero gets the
 * thresholds {-0, 0, 0}: every code 0.  EINVAL: tau not finite and > 0, an empty
 * cache, or a head whose thresholds would be zero or overflow (all-zero keys, tau too
 * small or too large); nothing changes. */
ADAMAS_API int adamas_cache_calibrate(adamas_cache *c, float tau);

/* Key thresholds in use for kv head g (after calibration they differ per head). */
ADAMAS_API int adamas_cache_key_thresholds(const adamas_cache *c, uint32_t kv_head, float th[3]);

/* Planar code stored for token t of kv head g.  code: [adamas_code_words(head_dim)]. */
ADAMAS_API int adamas_cache_code(const adamas_cache *c, uint32_t kv_head, uint32_t token,
                                 uint64_t *code);

/* One decode step for every query head.  q: [n_heads][head_dim] f32 (finite);
 * out: [n_heads][head_dim]; selected (may be NULL): [n_heads][budget], each row the
 * attended token indices ascending, unused slots UINT32_MAX; not written for FULL.
 * Query head h reads kv head h / (n_heads / n_kv_heads).  With n tokens cached:
 * n <= budget attends to all; otherwise the selector picks `budget` tokens.
 * EINVAL: NULL pointer, empty cache, a query element not finite or beyond
 * ADAMAS_MAX_MAGNITUDE, unknown selector, a budget not
 * larger than the forced set (n > budget), page_size differing from the cache's.
 * The cache is only read: several threads may decode from one cache at once. */
ADAMAS_API int adamas_decode(const adamas_cache *c, const adamas_decode_params *p,
                             const float *q, float *out, uint32_t *selected);

/* Threads a decode step uses (OpenMP): n >= 1, or 0 for OpenMP's default
 * (OMP_NUM_THREADS, else the number of cores).  Results are the same bits for any
 * count.  Builds without OpenMP always use one thread.  EINVAL: n < 0. */
ADAMAS_API int adamas_set_num_threads(int n);

/* Threads the next decode step will use. */
ADAMAS_API int adamas_get_num_threads(void);

/* Buffers of decode steps (code distances, histograms, partial sums), reused from one
 * step to the next.  adamas_decode borrows one the cache owns; threads that decode
 * from one cache at once can each pass their own to adamas_decode_ws and so never
 * allocate.  A workspace serves any cache, one call at a time. */
typedef struct adamas_workspace adamas_workspace;

/* An empty workspace; it grows on first use.  EINVAL: out NULL; ENOMEM. */
ADAMAS_API int adamas_workspace_create(adamas_workspace **out);

/* Free a workspace; NULL is ignored. */
ADAMAS_API void adamas_workspace_destroy(adamas_workspace *ws);

/* adamas_decode with the caller's workspace (NULL: as adamas_decode).  The workspace
 * grows when a step needs more room (ENOMEM leaves everything unchanged). */
ADAMAS_API int adamas_decode_ws(const adamas_cache *c, const adamas_decode_params *p,
                                const float *q, float *out, uint32_t *selected,
                                adamas_workspace *ws);

/* ---------------------------------------------------------------------------
 * Backends
 *
 * A cache runs its decode steps on the backend chosen when it is created: "cpu" (this
 * library's kernels) or "cuda" (the optional GPU module, libadamas_cuda.so, loaded at
 * run time: from ADAMAS_CUDA_MODULE if set, else beside libadamas, else the loader's
 * search path).  A CUDA cache keeps its host storage too; its codes, distances and
 * selected sets are the same bits as the CPU's, its outputs equal within rounding.
 * ------------------------------------------------------------------------- */

/* Backend of caches created from now on: "cpu", "cuda", or "auto" (cuda when the
 * module loads and finds a device, else cpu).  Without a call, the environment
 * variable ADAMAS_BACKEND (same names) decides at first use, else "cpu".
 * EINVAL: unknown name; ENOTSUP: cuda asked for with no module or no device (the
 * message says which; the previous choice stays). */
ADAMAS_API int adamas_set_backend(const char *name);

/* Backend of caches created from now on ("cpu" or "cuda"); "none" when
 * ADAMAS_BACKEND names one that cannot run here. */
ADAMAS_API const char *adamas_backend_name(void);

/* Backend of one cache: "cpu" or "cuda"; "" for NULL. */
ADAMAS_API const char *adamas_cache_backend(const adamas_cache *c);

/* Code distance of query head `head` (q: [head_dim]) to every cached token, exactly as a
 * decode step computes it (same metric, thresholds, calibration), on the cache's
 * backend.  dist: [adamas_cache_len(c)].  EINVAL: NULL pointer, head out of range,
 * empty cache, q not finite or beyond ADAMAS_MAX_MAGNITUDE. */
ADAMAS_API int adamas_cache_distances(const adamas_cache *c, const float *q, uint32_t head,
                                      uint16_t *dist);

/* ---------------------------------------------------------------------------
 * Weight products
 *
 * For engines built on the library (tools/adamas-run): matrix rows as model files
 * store them, multiplied by the library's kernels.  Q8_0 is ggml's block format: per
 * ADAMAS_Q8_0_BLOCK weights an f16 scale s (little-endian) and 32 int8 q, 34 bytes;
 * weight j of a block is s * q[j].
 * ------------------------------------------------------------------------- */
typedef enum {
    ADAMAS_WEIGHTS_F32 = 0,
    ADAMAS_WEIGHTS_F16 = 1,
    ADAMAS_WEIGHTS_BF16 = 2,
    ADAMAS_WEIGHTS_Q8_0 = 3
} adamas_weights_type;

#define ADAMAS_Q8_0_BLOCK 32

/* Bytes of one row of cols weights; 0 for an unknown type, cols 0, cols not a
 * multiple of ADAMAS_Q8_0_BLOCK for Q8_0, or a size that overflows. */
ADAMAS_API size_t adamas_weights_row_bytes(adamas_weights_type type, size_t cols);

/* y[r] = W[r] . x for r < rows.  w: rows rows of adamas_weights_row_bytes(type, cols)
 * bytes each, back to back; x: [cols] f32; y: [rows].  Rows are spread over the
 * decode threads (adamas_set_num_threads); each y[r] is the same bits for any thread
 * count and any ISA (the fixed summation order of the attention dot products).  The
 * weights are used as they are: a NaN or infinite weight gives a NaN or infinite y[r].
 * EINVAL, y untouched: a NULL pointer, an unknown type, rows 0, cols 0 (or not a
 * multiple of ADAMAS_Q8_0_BLOCK for Q8_0), a matrix whose size overflows, an element
 * of x not finite or beyond ADAMAS_MAX_MAGNITUDE. */
ADAMAS_API int adamas_matvec(adamas_weights_type type, const void *w, size_t rows, size_t cols,
                             const float *x, float *y);

/* out[rows][cols] = W widened to f32 (exact), on the calling thread (engines call it
 * from their own threads, a panel of rows each).  EINVAL as adamas_matvec, out
 * untouched. */
ADAMAS_API int adamas_weights_to_f32(adamas_weights_type type, const void *w, size_t rows,
                                     size_t cols, float *out);

/* Half-precision helpers (IEEE binary16 and bfloat16), round to nearest even. */
ADAMAS_API uint16_t adamas_f32_to_f16(float x);
ADAMAS_API float adamas_f16_to_f32(uint16_t h);
ADAMAS_API uint16_t adamas_f32_to_bf16(float x);
ADAMAS_API float adamas_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif /* ADAMAS_H */

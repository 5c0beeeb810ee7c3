/*
 * kernels.h - the kernel table: the innermost loops, one implementation per ISA.
 *
 * The scalar entries (suffix _scalar, in adamas/) are the specification; each file in
 * simd/ fills the same table for its ISA and is tested against them.  Everything
 * above this table (cache, selection, decode) is written once and never knows the ISA.
 *
 * Contracts every implementation keeps:
 *   - hadamard, encode, scan, scan_group, emit: bit-identical to the scalar entries;
 *   - dot, page_score: bit-identical too, because they rank tokens (oracle, rerank,
 *     Quest).  Their summation order is fixed: 16 interleaved f32 partial sums,
 *     lane l = l-th element of each 16-element block, each step `acc += a*b` with
 *     the product rounded first (no FMA, as the GPU module ranks), then the lanes
 *     folded pairwise
 *     acc[l] += acc[l+8], acc[l] += acc[l+4], acc[l] += acc[l+2], acc[l] += acc[l+1];
 *   - dot_group, axpy, axpy_group (the attention's products): bit-identical too, with
 *     every multiply-add fused (fmaf, one rounding): dot_group in dot's order with
 *     `acc = fmaf(a, b, acc)` per step, axpy `y[i] = fmaf(a, row[i], y[i])`.  A fused
 *     multiply-add is one instruction where a rounded product and a sum are two, and
 *     the grouped attention of a GQA group is bound by them;
 *   - dot_q8_0: bit-identical too (the engines' products must not depend on the ISA),
 *     in the order q8_0.c specifies;
 *   - widen_q8_0: exact;
 *   - scale_max: the same products, bit for bit, and the same maximum (its sign, when
 *     it is zero, may differ: exp(x - max) does not see it);
 *   - exp_sum: within a few ulp of the scalar entry;
 *   - the grouped entries (scan_group, dot_group, axpy_group) compute for each head of
 *     a group what one call per head computes: they exist so that the heads of a GQA
 *     group read each key code or K/V row once.
 */
#ifndef ADAMAS_KERNELS_H
#define ADAMAS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* One 16-lane block: the unit of the fixed summation order. */
#define ADAMAS_DOT_LANES 16

/* ggml's Q8_0 block: an f16 scale and 32 int8 weights (q8_0.c). */
#define ADAMAS_Q8_0_BYTES 34

/* dist[j] = distance(q, codes + j*words) for j < n (uint16: at most 3*1024);
 * when hist is not NULL also hist[dist[j]] += 1. */
typedef void (*adamas_scan_fn)(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                               uint16_t *dist, uint32_t *hist);

/* The scan of a selection: `heads` query codes q + h*q_stride against the same n
 * keys.  For h < heads and j < n, in order of j, with v the distance of key j to
 * head h:
 *   - when v <= limit[h], hist[h*hist_stride + v] += 1;
 *   - dense (dist not NULL): every v is stored, dist[h*dist_stride + j] = v;
 *   - sparse (dist NULL): when v <= limit[h], the hit (first + j) << 16 | v is
 *     appended to head h's list, hits[h*hits_stride + n_hits[h]++].
 * Nothing else is written.  Sparse suits limits that have come down: most keys lie
 * far above them, and storing every distance would add two bytes per key and head to
 * the 32 bytes of a d=128 code; dense suits limits still high, where most keys would
 * be hits and each hit costs scalar steps.  first + n <= 65536. */
typedef void (*adamas_scan_group_fn)(const uint64_t *q, size_t q_stride, size_t heads,
                                     const uint64_t *codes, size_t words, size_t n,
                                     const uint16_t *limit, uint32_t *hist, size_t hist_stride,
                                     uint16_t *dist, size_t dist_stride, uint32_t first,
                                     uint32_t *hits, size_t hits_stride, uint32_t *n_hits);

/* The positions of a selection, given its threshold t: every j < cutoff with
 * dist[j] < t and every j >= cutoff with dist[j] <= t, ascending, written as base + j
 * to idx.  Exactly k positions qualify (the caller chose t and cutoff so). */
typedef void (*adamas_emit_fn)(const uint16_t *dist, uint32_t n, uint32_t t, uint32_t cutoff,
                               uint32_t base, uint32_t k, uint32_t *idx);

/* A hit of a grouped scan, from its position and its distance, and back. */
static inline uint32_t adamas_hit(uint32_t position, uint32_t distance)
{
    return position << 16 | distance;
}

static inline uint32_t adamas_hit_position(uint32_t hit)
{
    return hit >> 16;
}

static inline uint32_t adamas_hit_distance(uint32_t hit)
{
    return hit & 0xFFFFu;
}

/* q[d] . row[d], row of one storage dtype, in the fixed summation order (products
 * rounded, then added). */
typedef float (*adamas_dot_fn)(const float *q, const void *row, size_t d);

/* out[j*out_stride + r] = q[j] . rows[r] for j < heads, r < n: q[heads][d] against n
 * rows, in dot's order with fused multiply-adds. */
typedef void (*adamas_dot_group_fn)(const float *q, size_t heads, const void *const *rows,
                                    size_t n, size_t d, float *out, size_t out_stride);

/* y[d] += a * row[d], row of one storage dtype, each element one fused multiply-add. */
typedef void (*adamas_axpy_fn)(float *y, float a, const void *row, size_t d);

/* axpy(y + j*y_stride, a[j*a_stride + r], rows[r], d) for r < n in order, j < heads:
 * n rows into the sums of several heads. */
typedef void (*adamas_axpy_group_fn)(float *y, size_t y_stride, const float *a, size_t a_stride,
                                     size_t heads, const void *const *rows, size_t n,
                                     size_t d);

/* x[32 n_blocks] . the weights of n_blocks Q8_0 blocks, in q8_0.c's order. */
typedef float (*adamas_dot_q8_0_fn)(const float *x, const void *blocks, size_t n_blocks);

/* dst[32 n_blocks] = the weights of n_blocks Q8_0 blocks (exact). */
typedef void (*adamas_widen_q8_0_fn)(float *dst, const void *blocks, size_t n_blocks);

typedef struct adamas_kernels {
    const char *name;
    /* In-place Hadamard transform of x[d] (DESIGN §2). */
    void (*hadamard)(float *x, size_t d);
    /* Planar 2-bit code of xh[d]. */
    void (*encode)(const float *xh, size_t d, const float th[3], uint64_t *code);
    /* hadamard(x) then encode(x): x is left transformed. */
    void (*hadamard_encode)(float *x, size_t d, const float th[3], uint64_t *code);
    adamas_scan_fn scan[2];   /* indexed by adamas_metric */
    adamas_scan_group_fn scan_group[2]; /* indexed by adamas_metric */
    /* Whether decode lets scan_group list hits once its limits have come down (NULL:
     * yes), or has it store every distance: on tables whose hits cost more than the
     * stores they save (measured per table). */
    int (*scan_lists_hits)(void);
    adamas_emit_fn emit;      /* the positions a histogram select takes from distances */
    adamas_dot_fn dot[3];     /* indexed by adamas_dtype of the row */
    adamas_dot_group_fn dot_group[3];   /* indexed by adamas_dtype of the row */
    adamas_axpy_fn axpy[3];   /* indexed by adamas_dtype of the row */
    adamas_axpy_group_fn axpy_group[3]; /* indexed by adamas_dtype of the row */
    /* x[i] *= scale for i < n; returns the largest new x[i] (-INFINITY when n = 0). */
    float (*scale_max)(float *x, size_t n, float scale);
    /* s[i] = exp(s[i] - max) for i < n; returns the sum of the new s[i]. */
    float (*exp_sum)(float *s, size_t n, float max);
    /* Quest bound of a page: sum_i max(q_i*lo_i, q_i*hi_i), fixed summation order. */
    float (*page_score)(const float *q, const float *lo, const float *hi, size_t d);
    /* Products with the weights of a model (adamas_matvec): Q8_0 rows. */
    adamas_dot_q8_0_fn dot_q8_0;
    adamas_widen_q8_0_fn widen_q8_0;
} adamas_kernels;

/* The kernels in use: chosen at first call from ADAMAS_ISA or the CPU.
 * Returns 0, or ENOTSUP/EINVAL (with adamas_last_error set) when ADAMAS_ISA names an
 * ISA this machine cannot run. */
int adamas_kernels_get(const adamas_kernels **out);

/* The table of a named ISA if this build and CPU can run it, else NULL. */
const adamas_kernels *adamas_kernels_by_name(const char *name);

/* Scalar specification, shared by the tables that do not override an entry. */
void adamas_hadamard_scalar(float *x, size_t d);
void adamas_encode_scalar(const float *xh, size_t d, const float th[3], uint64_t *code);
void adamas_hadamard_encode_scalar(float *x, size_t d, const float th[3], uint64_t *code);
void adamas_scan_l1_scalar(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                           uint16_t *dist, uint32_t *hist);
void adamas_scan_group_l1_scalar(const uint64_t *q, size_t q_stride, size_t heads,
                                 const uint64_t *codes, size_t words, size_t n,
                                 const uint16_t *limit, uint32_t *hist, size_t hist_stride,
                                 uint16_t *dist, size_t dist_stride, uint32_t first,
                                 uint32_t *hits, size_t hits_stride, uint32_t *n_hits);
void adamas_scan_group_xorw_scalar(const uint64_t *q, size_t q_stride, size_t heads,
                                   const uint64_t *codes, size_t words, size_t n,
                                   const uint16_t *limit, uint32_t *hist, size_t hist_stride,
                                   uint16_t *dist, size_t dist_stride, uint32_t first,
                                   uint32_t *hits, size_t hits_stride, uint32_t *n_hits);
void adamas_emit_scalar(const uint16_t *dist, uint32_t n, uint32_t t, uint32_t cutoff,
                        uint32_t base, uint32_t k, uint32_t *idx);
void adamas_scan_xorw_scalar(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                             uint16_t *dist, uint32_t *hist);
float adamas_dot_f32_scalar(const float *q, const void *row, size_t d);
float adamas_dot_f16_scalar(const float *q, const void *row, size_t d);
float adamas_dot_bf16_scalar(const float *q, const void *row, size_t d);
void adamas_dot_group_f32_scalar(const float *q, size_t heads, const void *const *rows,
                                 size_t n, size_t d, float *out, size_t out_stride);
void adamas_dot_group_f16_scalar(const float *q, size_t heads, const void *const *rows,
                                 size_t n, size_t d, float *out, size_t out_stride);
void adamas_dot_group_bf16_scalar(const float *q, size_t heads, const void *const *rows,
                                  size_t n, size_t d, float *out, size_t out_stride);
void adamas_axpy_f32_scalar(float *y, float a, const void *row, size_t d);
void adamas_axpy_f16_scalar(float *y, float a, const void *row, size_t d);
void adamas_axpy_bf16_scalar(float *y, float a, const void *row, size_t d);
void adamas_axpy_group_f32_scalar(float *y, size_t y_stride, const float *a, size_t a_stride,
                                  size_t heads, const void *const *rows, size_t n, size_t d);
void adamas_axpy_group_f16_scalar(float *y, size_t y_stride, const float *a, size_t a_stride,
                                  size_t heads, const void *const *rows, size_t n, size_t d);
void adamas_axpy_group_bf16_scalar(float *y, size_t y_stride, const float *a, size_t a_stride,
                                   size_t heads, const void *const *rows, size_t n, size_t d);
float adamas_scale_max_scalar(float *x, size_t n, float scale);
float adamas_exp_sum_scalar(float *s, size_t n, float max);
float adamas_page_score_scalar(const float *q, const float *lo, const float *hi, size_t d);
float adamas_dot_q8_0_scalar(const float *x, const void *blocks, size_t n_blocks);
void adamas_widen_q8_0_scalar(float *dst, const void *blocks, size_t n_blocks);

/* The fixed fold of the 16 lane sums: l += l+8, l += l+4, l += l+2, l += l+1. */
float adamas_fold_lanes(float acc[ADAMAS_DOT_LANES]);

extern const adamas_kernels adamas_kernels_scalar;

#endif

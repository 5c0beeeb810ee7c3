/* reference.h - the Adamas specification re-written for the tests (DESIGN.md §2).
 *
 * Nothing here calls or shares code with the library.  Two kinds of reference:
 *   - the f32 pieces every backend must reproduce bit for bit (Hadamard stage order,
 *     the fixed 16-lane dot product, the Quest page bound), written from the spec;
 *   - plain, slow models of everything else: codes one dimension at a time, top-k by
 *     sorting, half precision from the number formats, a KV cache kept as f32 arrays,
 *     every selector, and attention in double precision.
 */
#ifndef ADAMAS_TEST_REFERENCE_H
#define ADAMAS_TEST_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "adamas.h"

/* ------------------------------------------------------------ Hadamard */

/* The f32 constant every transform is scaled by: (float)(1/sqrt(d)). */
float ref_hadamard_scale(size_t d);

/* In-place f32 transform of x[d]: stages h = 1, 2, ..., d/2 of butterflies
 * (a, b) -> (a + b, a - b), then one multiplication by ref_hadamard_scale(d). */
void ref_hadamard(float *x, size_t d);

/* Sylvester matrix H_d (entries +1/-1, unscaled), built from H_1 = [1],
 * H_2m = [[H_m, H_m], [H_m, -H_m]].  m: [d][d]. */
void ref_sylvester_matrix(size_t d, signed char *m);

/* y[d] = (1/sqrt(d)) * H_d x in double precision, by the explicit matrix product. */
void ref_hadamard_exact(const float *x, size_t d, double *y);

/* ------------------------------------------------------- dot products */

/* a[d] . b[d] in the fixed order: lane l sums the products a[i]*b[i] (each rounded to
 * f32) of every i with i % 16 == l, then lanes fold l += l+8, l+4, l+2, l+1. */
float ref_dot16(const float *a, const float *b, size_t d);

/* Quest bound sum_i max(q_i*lo_i, q_i*hi_i) in the same order as ref_dot16. */
float ref_page_score(const float *q, const float *lo, const float *hi, size_t d);

/* a[d] . b[d] in double precision. */
double ref_dot_exact(const float *a, const float *b, size_t d);

/* --------------------------------------------------------------- codes */

/* (x > t0) + (x > t1) + (x > t2). */
unsigned ref_bucket(float x, const float th[3]);

/* Codes of every dimension: code[i] = ref_bucket(xh[i], th).  code: [d]. */
void ref_bucketize(const float *xh, size_t d, const float th[3], uint8_t *code);

/* uint64 words of one planar code: two bit planes per 64 dimensions. */
size_t ref_code_words(size_t d);

/* Planar packing of code[d] (values 0..3): dimension i is bit i%64 of word 2*(i/64)
 * (low bit) and of word 2*(i/64)+1 (high bit); every other bit 0. */
void ref_pack_planar(const uint8_t *code, size_t d, uint64_t *planar);

/* Code of dimension i of a planar code. */
unsigned ref_planar_get(const uint64_t *planar, size_t i);

/* Code of dimension i of an interleaved code (8 dimensions per 16-bit word). */
unsigned ref_interleaved_get(const uint16_t *inter, size_t i);

/* sum_i |a[i] - b[i]|. */
uint32_t ref_l1(const uint8_t *a, const uint8_t *b, size_t d);

/* sum_i (low bits differ) + 2 * (high bits differ): the paper's kernel. */
uint32_t ref_xorw(const uint8_t *a, const uint8_t *b, size_t d);

/* ------------------------------------------------------ half precision */

/* Value of an IEEE binary16 / bfloat16 bit pattern, from the format's fields. */
float ref_f16_value(uint16_t h);
float ref_bf16_value(uint16_t h);

/* Nearest binary16 / bfloat16 of x, ties to the even significand, overflow to
 * infinity; for NaN any quiet NaN of x's sign. */
uint16_t ref_f16_bits(float x);
uint16_t ref_bf16_bits(float x);

/* x as stored with dtype t, widened back to f32. */
float ref_round_dtype(float x, adamas_dtype t);

/* ---------------------------------------------------------------- top-k */

/* The k smallest of v[n] (k <= n), ties to the larger index, written ascending to
 * idx[k]; by a full sort. */
void ref_smallest_u32(const uint32_t *v, uint32_t n, uint32_t k, uint32_t *idx);

/* The k largest of v[n], ties to the larger index, ascending; by a full sort. */
void ref_largest_f32(const float *v, uint32_t n, uint32_t k, uint32_t *idx);

/* ------------------------------------------------------ the cache model */

/* What the library's cache should hold, kept as plain arrays. */
typedef struct {
    adamas_cache_config cfg;
    uint32_t len;
    size_t token_floats;  /* n_kv_heads * head_dim                                  */
    float *keys_given;    /* [max_tokens][n_kv_heads][head_dim] keys as appended       */
    float *keys;          /* [max_tokens][n_kv_heads][head_dim] keys rounded to dtype  */
    float *values;        /* [max_tokens][n_kv_heads][head_dim] values rounded to dtype*/
    uint8_t *codes;       /* [max_tokens][n_kv_heads][head_dim] code of each dimension */
    float (*k_thresholds)[3]; /* [n_kv_heads]                                          */
    float query_tau;      /* 0: cfg.q_thresholds; > 0: per-step {-tau*r, 0, tau*r}     */
} ref_cache;

void ref_cache_init(ref_cache *r, const adamas_cache_config *cfg);
void ref_cache_free(ref_cache *r);

/* Append n tokens: k, v [n][n_kv_heads][head_dim] (storable values only). */
void ref_cache_append(ref_cache *r, const float *k, const float *v, uint32_t n);

/* Calibration as specified; returns 0, or -1 (nothing changed) when a head's
 * threshold would not be finite and > 0. */
int ref_cache_calibrate(ref_cache *r, float tau);

/* Stored key / value / per-dimension code of token t of kv head g: [head_dim]. */
const float *ref_key(const ref_cache *r, uint32_t t, uint32_t g);
const float *ref_value(const ref_cache *r, uint32_t t, uint32_t g);
const uint8_t *ref_code(const ref_cache *r, uint32_t t, uint32_t g);

/* The query's code (Hadamard, then fixed or per-step thresholds).  code: [head_dim]. */
void ref_query_code(const ref_cache *r, const float *q, uint8_t *code);

/* Element-wise min and max of the stored keys of page `page` of kv head g. */
void ref_page_bounds(const ref_cache *r, uint32_t g, uint32_t page, float *lo, float *hi);

/* The tokens a query head reading kv head g attends to, ascending; returns their
 * count.  set: [len].  Parameters must be valid (the library would accept them). */
uint32_t ref_select(const ref_cache *r, const adamas_decode_params *p, uint32_t g,
                    const float *q, uint32_t *set);

/* Softmax attention over tokens set[m] of kv head g in double precision. out: [head_dim].
 * Also returns, through logit_l1 (may be NULL), max over the set of
 * sum_i |q_i k_i| / sqrt(d): the scale of the f32 rounding of the logits. */
void ref_attend(const ref_cache *r, uint32_t g, const float *q, const uint32_t *set, uint32_t m,
                double *out, double *logit_l1);

#endif

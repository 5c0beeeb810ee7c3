/* cache_pair.h - a library cache and its reference model, fed the same tokens, and
 * the checks that compare them (codes, thresholds, decode steps). */
#ifndef ADAMAS_TEST_CACHE_PAIR_H
#define ADAMAS_TEST_CACHE_PAIR_H

#include "adamas.h"
#include "reference.h"

typedef struct {
    adamas_cache *lib;
    ref_cache ref;
} cache_pair;

/* Both caches for cfg (the library's creation must succeed). */
void pair_create(cache_pair *p, const adamas_cache_config *cfg);
void pair_destroy(cache_pair *p);

/* Append k, v [n][n_kv_heads][head_dim] to both (the library's append must succeed). */
void pair_append(cache_pair *p, const float *k, const float *v, uint32_t n);

/* Append n tokens of normal random keys and values (standard deviation key_scale,
 * value_scale), in chunks of random size. */
void pair_append_random(cache_pair *p, uint32_t n, float key_scale, float value_scale);

/* Calibrate both (must succeed). */
void pair_calibrate(cache_pair *p, float tau);

/* Every stored code (adamas_cache_code) and every head's key thresholds equal the
 * model's, bit for bit. */
void pair_check_codes(const cache_pair *p);

/* Relative output error allowed for one query head: ~1e-6 per unit of the largest
 * scaled |q|.|k| sum of the attended keys (see cache_pair.c). */
double attention_tolerance(double logit_l1);

/* One adamas_decode on poisoned out and selected buffers, against the model:
 * each selected row equals the model's set (then UINT32_MAX), FULL leaves selected
 * untouched, nothing is written past the rows, and each output row is within
 * attention_tolerance of double-precision attention over the same set.
 * Returns the largest relative error seen. */
double pair_check_decode(const cache_pair *p, const adamas_decode_params *prm, const float *q);

/* Random strictly increasing thresholds around 0, gaps of 0.2..1.5 times scale. */
void random_thresholds(float th[3], float scale);

/* A cache configuration with random q/k thresholds (scale 1) and the given shape. */
adamas_cache_config random_config(uint32_t n_heads, uint32_t n_kv_heads, uint32_t head_dim,
                                  uint32_t max_tokens, adamas_dtype dtype);

/* A query [n_heads][head_dim] of normal random values times scale (caller frees). */
float *random_query(const cache_pair *p, float scale);

#endif

/*
 * workload.h - a synthetic long-context KV cache whose keys carry the structure of
 * real models, and the exact full-attention probabilities of its query.
 *
 * Shared by `adamas demo` and the decode benchmark, so that both score selectors on
 * the same data: with the same seed and shape they build the same cache.
 *
 *   keys     N(0, 2^2) per dimension plus outlier channels of mean 12 (every 32nd
 *            dimension, as real models show and the Hadamard transform spreads out);
 *            some keys are pulled toward the mean query of their group, to a logit of
 *            `pull`: token 0 (an attention sink), 8 needles per kv head at random
 *            depths, and passages of 8 to 24 consecutive tokens (one per 2048 tokens
 *            on average) a little
 *   queries  N(0, 0.4^2); with GQA, 0.6 of each head's own direction plus 0.8 of one
 *            its group shares, as heads that share keys look for similar tokens
 *   values   N(0, 1)
 */
#ifndef ADAMAS_WORKLOAD_H
#define ADAMAS_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "adamas.h"

/* Most kv heads a workload can have. */
#define WORKLOAD_MAX_KV_HEADS 64

/* splitmix64 generator; cheap approximately-normal draws (sum of 4 uniforms, unit
 * variance) keep building a long cache quick. */
typedef struct {
    uint64_t s;
} workload_rng;

uint64_t workload_rng_next(workload_rng *r);
float workload_rng_gauss(workload_rng *r);

typedef struct {
    uint32_t tokens, heads, kv_heads, dim; /* heads % kv_heads == 0, kv_heads <= 64 */
    adamas_dtype dtype; /* storage the logits are computed over                    */
    int progress;       /* print "building cache" progress on stderr               */
} workload_config;

typedef struct {
    workload_config cfg;
    float *q;       /* [heads][dim]     the query of the decode step              */
    double *logits; /* [heads][tokens]  q.k/sqrt(d) over the keys as stored       */
    double *p_full; /* [heads][tokens]  full-attention probabilities              */
} workload;

/* Allocate the arrays of w for cfg.  ADAMAS_ENOMEM (w left empty) or 0. */
int workload_create(workload *w, const workload_config *cfg);

/* Free the arrays of w; an empty w is ignored. */
void workload_destroy(workload *w);

/* Draw the query, then cfg.tokens keys and values, appending them to each of the
 * n_caches caches (all of the workload's shape, empty, of any storage dtype), and
 * fill logits and p_full for storage dtype cfg.dtype.  Returns 0, ADAMAS_ENOMEM, or
 * the status of a failing adamas_cache_append (adamas_last_error() names it). */
int workload_fill(workload *w, adamas_cache *const *caches, size_t n_caches, workload_rng *r);

#endif

/*
 * gen.h - synthetic attention dumps with the structure real models show, so that the
 * selection lab runs with no model at hand.
 *
 * Per layer and kv head, before RoPE:
 *   keys     N(0,1) noise, plus a few outlier channels with a large constant offset
 *            (in slowly rotating channel pairs, so they stay outliers after RoPE),
 *            plus a component shared with the queries in the fast-rotating channels
 *            (after RoPE it favours nearby tokens: a recency bias);
 *   sinks    the first `sinks` tokens: a large component along a direction every
 *            query of the kv head shares (attention sinks), values near zero;
 *   needles  `needles` tokens at random depths whose keys point along the head's
 *            topic, which its queries share: the tokens a selector must find;
 *   queries  N(0,1) noise plus the sink direction, the topic and the recency part.
 * Then RoPE (Llama's rotate-half layout, frequencies rope_base^(-2i/d)) rotates the
 * queries and keys by their positions; what is written is post-RoPE, as in a dump of
 * a real model.  Every row depends only on (seed, layer, token, head): any chunk of
 * tokens can be generated alone and the file is the same bytes for the same options.
 */
#ifndef ADAMAS_GEN_H
#define ADAMAS_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "adamas.h"

typedef struct {
    uint32_t layers, tokens, heads, kv_heads, head_dim;
    adamas_dtype dtype; /* of the dump written                              */
    uint64_t seed;
    uint32_t sinks;     /* attention-sink tokens at the start (default 1)    */
    uint32_t needles;   /* planted needles per layer and kv head (default 8) */
    uint32_t outliers;  /* outlier channels per kv head (default 4)          */
    double rope_base;   /* default 500000 (Llama 3)                          */
} gen_config;

/* 2 layers, 2048 tokens, 8 query heads, 2 kv heads, d = 128, F16, seed 1. */
gen_config gen_config_default(void);

/* 0, or ADAMAS_EINVAL with a message naming the bad field in err[err_size]. */
int gen_check(const gen_config *c, char *err, size_t err_size);

/* Tokens first..first+count-1 of one layer, post-RoPE f32 (before any rounding to the
 * dump's dtype).  q: [count][heads][head_dim], k and v: [count][kv_heads][head_dim];
 * any of them may be NULL.  c must pass gen_check.  Returns 0 or ADAMAS_ENOMEM. */
int gen_rows(const gen_config *c, uint32_t layer, uint32_t first, uint32_t count, float *q,
             float *k, float *v);

/* Token positions of the needles of one layer and kv head, ascending (duplicates
 * removed); returns their count.  pos: [c->needles]. */
uint32_t gen_needles(const gen_config *c, uint32_t layer, uint32_t kv_head, uint32_t *pos);

/* Write the whole dump to path.  progress (may be NULL) is called after each layer.
 * Returns 0 or a negative adamas_status with a message in err[err_size]. */
int gen_write(const gen_config *c, const char *path,
              void (*progress)(uint32_t layers_done, void *arg), void *arg, char *err,
              size_t err_size);

#endif

/* decode.h - one decode step as the selectors and the attention see it. */
#ifndef ADAMAS_DECODE_H
#define ADAMAS_DECODE_H

#include <stdint.h>

#include "adamas.h"
#include "cache.h"
#include "kernels.h"

/* What every query head of one step shares (arguments already validated). */
typedef struct {
    const adamas_cache *cache;
    const adamas_kernels *kern;
    adamas_selector selector;
    uint32_t n;      /* tokens visible to this step                          */
    uint32_t budget; /* B                                                    */
    uint32_t sink;   /* forced first tokens (ADAMAS, ORACLE, STREAMING)      */
    uint32_t recent; /* forced last tokens (ADAMAS, ORACLE)                  */
    uint32_t rerank; /* R > 1: two-stage selection (ADAMAS)                  */
} decode_step;

/* Working memory of one query head, sized for n tokens. */
typedef struct {
    float *qh;       /* [head_dim] transformed query                          */
    uint64_t *qcode; /* [code_words] its 2-bit code                           */
    uint16_t *dist;  /* [n] code distance of each candidate token             */
    uint32_t *hist;  /* [3*head_dim + 1] histogram of dist                    */
    uint32_t *cand;  /* [n] rerank candidates, or Quest's chosen pages        */
    float *score;    /* [n] candidate logits, or Quest page scores            */
    uint32_t *set;   /* [n] attended tokens, ascending                        */
    float *logits;   /* [n] attention logits, then unnormalized probabilities */
} decode_scratch;

/* The tokens query head q (of kv head kv_head) attends to.  Returns their count m;
 * *set is w->set holding them ascending, or NULL meaning tokens 0..m-1. */
uint32_t adamas_select_tokens(const decode_step *s, uint32_t kv_head, const float *q,
                              decode_scratch *w, const uint32_t **set);

/* out[d] = softmax(q.K[set]^T / sqrt(d)) V[set] over the m tokens of set (NULL: 0..m-1)
 * of one kv head; logits: [m] scratch. */
void adamas_attend(const adamas_cache *c, const adamas_kernels *kern, uint32_t kv_head,
                   const float *q, const uint32_t *set, uint32_t m, float *logits, float *out);

#endif

/* cache.h - the KV cache as the selectors and the decode loop see it. */
#ifndef ADAMAS_CACHE_H
#define ADAMAS_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "adamas.h"
#include "gpu_module.h"

/* The accessors below return writable pointers into the cache's buffers; the
 * decode path only reads through them. */

/* The workspace adamas_decode borrows; a decoder that finds it busy (another thread
 * decoding from the same cache) uses a workspace of its own for that call. */
typedef struct {
    atomic_int busy;
    adamas_workspace *ws;
} cache_workspace;

struct adamas_cache {
    adamas_cache_config cfg;
    uint32_t len;            /* tokens stored                                          */
    uint32_t group;          /* query heads per kv head: n_heads / n_kv_heads          */
    size_t code_words;       /* uint64 words per code: 2*ceil(head_dim/64)             */
    size_t elem_size;        /* bytes per stored key or value element                  */
    size_t max_pages;        /* ceil(max_tokens / page_size)                           */
    void *keys;              /* [n_kv_heads][max_tokens][head_dim] of kv_dtype         */
    void *values;            /* [n_kv_heads][max_tokens][head_dim] of kv_dtype         */
    uint64_t *codes;         /* [n_kv_heads][max_tokens][code_words]                   */
    float *page_min;         /* [n_kv_heads][max_pages][head_dim]: Quest lower bounds  */
    float *page_max;         /* [n_kv_heads][max_pages][head_dim]: Quest upper bounds  */
    float (*k_thresholds)[3];/* [n_kv_heads]: key thresholds (per head once calibrated) */
    float query_tau;         /* 0: fixed q_thresholds; > 0: per-step {-tau*r, 0, tau*r} */
    cache_workspace *scratch;/* decode buffers, reused across steps                    */
    const adamas_gpu_module *gpu_module; /* CUDA backend: the module, else NULL          */
    adamas_gpu_cache *gpu;   /* CUDA backend: the device mirror, else NULL              */
};

static inline void *adamas_cache_key_row(const adamas_cache *c, uint32_t kv_head,
                                               uint32_t token)
{
    size_t row = (size_t)kv_head * c->cfg.max_tokens + token;
    return (char *)c->keys + row * c->cfg.head_dim * c->elem_size;
}

static inline void *adamas_cache_value_row(const adamas_cache *c, uint32_t kv_head,
                                                 uint32_t token)
{
    size_t row = (size_t)kv_head * c->cfg.max_tokens + token;
    return (char *)c->values + row * c->cfg.head_dim * c->elem_size;
}

/* Codes of tokens token, token+1, ... of one kv head. */
static inline uint64_t *adamas_cache_codes(const adamas_cache *c, uint32_t kv_head,
                                                 uint32_t token)
{
    size_t row = (size_t)kv_head * c->cfg.max_tokens + token;
    return c->codes + row * c->code_words;
}

/* A buffer of `bytes` for streaming reads (free() releases it): 2 MiB-aligned and
 * offered huge pages from 2 MiB on, cache-line aligned below.  NULL when out of
 * memory or too large. */
void *adamas_alloc_streamed(size_t bytes);

/* Offset of page `page` of one kv head in page_min and page_max. */
static inline size_t adamas_cache_page_offset(const adamas_cache *c, uint32_t kv_head,
                                              size_t page)
{
    return ((size_t)kv_head * c->max_pages + page) * c->cfg.head_dim;
}

#endif

/* workspace.c - the buffers of a decode step, allocated once and reused.
 *
 * A step needs room proportional to heads x tokens (code distances, hit lists,
 * histograms, partial sums) and to threads x tokens (scratch).  The workspace grows
 * when a step does not fit, with headroom (tokens rounded up to a power of two), so a
 * decoding loop allocates O(log n) times in all and never in a steady step. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "decode.h"
#include "error.h"

static _Atomic int requested_threads; /* 0: OpenMP's default */

int adamas_set_num_threads(int n)
{
    if (n < 0)
        return adamas_fail(ADAMAS_EINVAL, "adamas_set_num_threads: n = %d is negative", n);
    atomic_store(&requested_threads, n);
    return ADAMAS_OK;
}

int adamas_get_num_threads(void)
{
    return (int)adamas_step_threads();
}

uint32_t adamas_step_threads(void)
{
#ifdef _OPENMP
    int n = atomic_load(&requested_threads);
    return (uint32_t)(n > 0 ? n : omp_get_max_threads());
#else
    return 1;
#endif
}

int adamas_workspace_create(adamas_workspace **out)
{
    if (!out)
        return adamas_fail(ADAMAS_EINVAL, "adamas_workspace_create: out is NULL");
    adamas_workspace *ws = calloc(1, sizeof *ws);
    if (!ws)
        return adamas_fail(ADAMAS_ENOMEM, "adamas_workspace_create: out of memory");
    *out = ws;
    return ADAMAS_OK;
}

void adamas_workspace_destroy(adamas_workspace *ws)
{
    if (!ws)
        return;
    free(ws->block);
    free(ws);
}

static uint32_t ceil_div(uint32_t a, uint32_t b)
{
    return a / b + (a % b != 0);
}

static uint32_t round_up_pow2(uint32_t n)
{
    uint32_t p = 4096;
    while (p < n && p < (1u << 31))
        p *= 2;
    return p < n ? n : p;
}

/* Carve ws->block into the arrays for the capacity fields; with block NULL, only
 * return the bytes needed.  Arrays are placed widest element first, 64-byte aligned. */
static size_t carve(adamas_workspace *ws)
{
    const size_t heads = ws->cap_heads, tokens = ws->cap_tokens, threads = ws->cap_threads;
    struct {
        void **ptr;
        size_t bytes;
    } arrays[] = {
        {(void **)&ws->qcode, heads * ws->cap_words * sizeof(uint64_t)},
        {(void **)&ws->partial,
         heads * ws->attn_chunks * adamas_partial_stride(ws->cap_dim) * sizeof(float)},
        {(void **)&ws->logits, threads * heads * ADAMAS_ATTN_CHUNK * sizeof(float)},
        {(void **)&ws->score, threads * tokens * sizeof(float)},
        {(void **)&ws->hist, heads * ws->scan_chunks * ws->cap_bins * sizeof(uint32_t)},
        {(void **)&ws->hits, ws->scan_chunks * heads * ADAMAS_SCAN_CHUNK * sizeof(uint32_t)},
        {(void **)&ws->n_hits, ws->scan_chunks * heads * sizeof(uint32_t)},
        {(void **)&ws->set, heads * ws->cap_width * sizeof(uint32_t)},
        {(void **)&ws->set_len, heads * sizeof(uint32_t)},
        {(void **)&ws->limit, threads * heads * sizeof(uint16_t)},
        {(void **)&ws->seen, threads * heads * (ws->cap_bins + 1) * sizeof(uint32_t)},
        {(void **)&ws->bound, heads * sizeof(atomic_uint)},
        {(void **)&ws->scanned, heads * sizeof(atomic_uint)},
        {(void **)&ws->attended, heads * sizeof(atomic_uint)},
        {(void **)&ws->cand, threads * tokens * sizeof(uint32_t)},
        {(void **)&ws->dist, heads * tokens * sizeof(uint16_t)},
    };
    size_t offset = 0;
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        if (ws->block)
            *arrays[i].ptr = (char *)ws->block + offset;
        offset += (arrays[i].bytes + 63) / 64 * 64;
    }
    return offset;
}

static uint32_t max_u32(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

int adamas_workspace_reserve(adamas_workspace *ws, const adamas_cache *c, const decode_step *s,
                             uint32_t threads)
{
    const uint32_t heads = c->cfg.n_heads, dim = c->cfg.head_dim;
    const uint32_t width = s->dense ? 0 : s->budget;
    if (ws->block && heads <= ws->cap_heads && dim <= ws->cap_dim && s->n <= ws->cap_tokens &&
        width <= ws->cap_width && threads <= ws->cap_threads)
        return ADAMAS_OK;

    adamas_workspace grown = {0};
    grown.cap_heads = max_u32(heads, ws->cap_heads);
    grown.cap_dim = max_u32(dim, ws->cap_dim);
    grown.cap_tokens = s->n > ws->cap_tokens ? round_up_pow2(s->n) : ws->cap_tokens;
    grown.cap_width = max_u32(width, ws->cap_width);
    grown.cap_threads = max_u32(threads, ws->cap_threads);
    grown.cap_words = (uint32_t)adamas_code_words(grown.cap_dim);
    grown.cap_bins = 3 * grown.cap_dim + 1;
    grown.scan_chunks = ceil_div(grown.cap_tokens, ADAMAS_SCAN_CHUNK);
    grown.attn_chunks = ceil_div(grown.cap_tokens, ADAMAS_ATTN_CHUNK);
    size_t bytes = carve(&grown);
    grown.block = aligned_alloc(64, bytes);
    if (!grown.block)
        return adamas_fail(ADAMAS_ENOMEM,
                           "adamas_decode: cannot allocate a %zu-byte workspace for %u tokens",
                           bytes, s->n);
    carve(&grown);
    free(ws->block);
    *ws = grown;
    return ADAMAS_OK;
}

/* attention.c - exact softmax attention over a set of cached tokens, in chunks.
 *
 * A chunk yields a partial result {m, s, o}: its largest logit m, the sum s of
 * exp(logit - m) and the weighted sum o of its values.  Partials combine exactly
 * (m = max m_c, s = sum exp(m_c - m) s_c, o likewise), so long contexts split into
 * chunks that threads share, and the result does not depend on how many threads ran. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "decode.h"


/* Token of position i of a chunk. */
static inline uint32_t token_at(const uint32_t *set, uint32_t first, uint32_t i)
{
    return set ? set[i] : first + i;
}

void adamas_attend_chunk(const adamas_cache *c, const adamas_kernels *kern, uint32_t kv_head,
                         const float *q, uint32_t heads, const uint32_t *set, uint32_t first,
                         uint32_t count, float *logits, float *partial, size_t stride)
{
    const size_t d = c->cfg.head_dim, row_bytes = d * c->elem_size;
    const float scale = (float)(1.0 / sqrt((double)d));
    /* Several heads share each row: widen it to f32 once (exactly), then use the f32
     * kernels, which then compute the same bits the dtype's kernels would. */
    const bool widen = heads > 1 && c->cfg.kv_dtype != ADAMAS_F32;
    const adamas_dtype kernel_dtype = widen ? ADAMAS_F32 : c->cfg.kv_dtype;
    const adamas_dot_fn dot = kern->dot[kernel_dtype];
    const adamas_axpy_fn axpy = kern->axpy[kernel_dtype];
    float wide[ADAMAS_MAX_HEAD_DIM];

    /* logits: every key row read once for all heads */
    for (uint32_t i = 0; i < count; i++) {
        if (i + PREFETCH_ROWS < count)
            adamas_prefetch(adamas_cache_key_row(c, kv_head, token_at(set, first, i + PREFETCH_ROWS)),
                         row_bytes);
        const void *row = adamas_cache_key_row(c, kv_head, token_at(set, first, i));
        if (widen) {
            kern->widen[c->cfg.kv_dtype](wide, row, d);
            row = wide;
        }
        for (uint32_t j = 0; j < heads; j++)
            logits[(size_t)j * count + i] = dot(q + j * d, row, d) * scale;
    }
    for (uint32_t j = 0; j < heads; j++) {
        float *l = logits + (size_t)j * count, *p = partial + j * stride, max = -INFINITY;
        for (uint32_t i = 0; i < count; i++)
            max = l[i] > max ? l[i] : max;
        p[0] = max;
        p[1] = kern->exp_sum(l, count, max);
        memset(p + 2, 0, d * sizeof *p);
    }
    /* weighted values: every value row read once for all heads */
    for (uint32_t i = 0; i < count; i++) {
        if (i + PREFETCH_ROWS < count)
            adamas_prefetch(
                adamas_cache_value_row(c, kv_head, token_at(set, first, i + PREFETCH_ROWS)),
                row_bytes);
        const void *row = adamas_cache_value_row(c, kv_head, token_at(set, first, i));
        if (widen) {
            kern->widen[c->cfg.kv_dtype](wide, row, d);
            row = wide;
        }
        for (uint32_t j = 0; j < heads; j++)
            axpy(partial + j * stride + 2, logits[(size_t)j * count + i], row, d);
    }
}

void adamas_attend_combine(const float *partial, uint32_t n_chunks, size_t d, float *out)
{
    const size_t stride = adamas_partial_stride(d);
    float max = -INFINITY;
    for (uint32_t k = 0; k < n_chunks; k++)
        max = partial[k * stride] > max ? partial[k * stride] : max;
    float sum = 0.0f;
    memset(out, 0, d * sizeof *out);
    for (uint32_t k = 0; k < n_chunks; k++) {
        const float *p = partial + k * stride;
        float w = p[0] == max ? 1.0f : expf(p[0] - max);
        sum += w * p[1];
        for (size_t i = 0; i < d; i++)
            out[i] += w * p[2 + i];
    }
    for (size_t i = 0; i < d; i++)
        out[i] /= sum;
}

/* attention.c - exact softmax attention over a set of cached tokens, in chunks.
 *
 * A chunk yields a partial result {m, s, o}: its largest logit m, the sum s of
 * exp(logit - m) and the weighted sum o of its values.  Partials combine exactly
 * (m = max m_c, s = sum exp(m_c - m) s_c, o likewise), so long contexts split into
 * chunks that threads share, and the result does not depend on how many threads ran. */
#include <math.h>
#include <string.h>

#include "decode.h"


/* Rows per call of the grouped kernels, whose sums stay in registers over a batch:
 * about BATCH_BYTES of rows.  Measured (32/8 heads, d = 128, 1 thread, 32K tokens):
 * f16 rows 4 at a time 58% of the bandwidth, 8 or 16 at a time 47%, although they
 * compute faster from L1 (each 16 elements of the sums then wait on more rows still
 * arriving); f32 rows 2 at a time 70%, 4 at a time 65%. */
#define BATCH_BYTES 1024
#define MAX_BATCH_ROWS 8

/* Token of position i of a chunk. */
static inline uint32_t token_at(const uint32_t *set, uint32_t first, uint32_t i)
{
    return set ? set[i] : first + i;
}

/* Bytes between the lines a contiguous pass asks into L2 ahead: every line of f32
 * rows, one line in four of 16-bit rows.  A prefetch holds one of the core's few line
 * fill buffers, and the 16-bit rows, with twice the arithmetic per byte, leave the
 * core less time per line; the L2's own prefetchers fetch the lines between.
 * Measured side by side (d = 128, 32K tokens, caches flushed, f16): FULL on 32/8
 * heads 13.4-13.6 -> 11.7-12.1 ms on 1 thread, 6.9-7.0 -> 6.0-6.3 ms on 2; on 32/32
 * 43.5-44.2 -> 39.8-41.2 ms; one line in two 12.3-12.9 ms, in eight 12.1-12.4 ms
 * (32/8).  f32 rows took up to 8% longer with one line in two or four. */
static inline size_t l2_prefetch_stride(size_t elem_size)
{
    return elem_size >= 4 ? 64 : 256;
}

/* Row r of a pass over the rows of one kv head (its rows of token 0 at head_rows):
 * token set[r], or first + r when set is NULL.  Addressed from head_rows, not
 * through the cache's row functions: called through a pointer, those took a fifth
 * of a dense pass from L2. */
static inline const char *pass_row(const char *head_rows, size_t row_bytes,
                                   const uint32_t *set, uint32_t first, uint32_t r)
{
    return head_rows + (size_t)token_at(set, first, r) * row_bytes;
}

/* Before the batch of rows [i, i + n) of a pass over `count` rows: ask for the rows
 * PREFETCH_ROWS further on, and for those far_rows further on into L2: gathered rows
 * (set not NULL) whole, contiguous ones one line in every l2_stride bytes. */
static inline void prefetch_ahead(const char *head_rows, size_t row_bytes, size_t l2_stride,
                                  const uint32_t *set, uint32_t first, uint32_t i, uint32_t n,
                                  uint32_t count, uint32_t far_rows)
{
    for (uint32_t r = i + PREFETCH_ROWS; r < i + n + PREFETCH_ROWS && r < count; r++)
        adamas_prefetch(pass_row(head_rows, row_bytes, set, first, r), row_bytes);
    if (i + far_rows >= count)
        return;
    const uint32_t far = i + far_rows, m = count - far < n ? count - far : n;
    if (set)
        for (uint32_t r = far; r < far + m; r++)
            adamas_prefetch_l2(pass_row(head_rows, row_bytes, set, first, r), row_bytes);
    else
        adamas_prefetch_l2_every(pass_row(head_rows, row_bytes, NULL, first, far),
                                 m * row_bytes, l2_stride);
}

/* The rows of the batch [i, i + n) of a pass into rows[n]. */
static inline void batch_rows(const char *head_rows, size_t row_bytes, const uint32_t *set,
                              uint32_t first, uint32_t i, uint32_t n, const void **rows)
{
    for (uint32_t r = 0; r < n; r++)
        rows[r] = pass_row(head_rows, row_bytes, set, first, i + r);
}

void adamas_attend_chunk(const adamas_cache *c, const adamas_kernels *kern, uint32_t kv_head,
                         const float *q, uint32_t heads, const uint32_t *set, uint32_t first,
                         uint32_t count, float *logits, float *partial, size_t stride)
{
    const size_t d = c->cfg.head_dim, row_bytes = d * c->elem_size;
    const float scale = (float)(1.0 / sqrt((double)d));
    const char *keys = adamas_cache_key_row(c, kv_head, 0);
    const char *values = adamas_cache_value_row(c, kv_head, 0);
    /* The grouped kernels convert each stored row once, in registers, for all heads,
     * and take the rows a batch at a time. */
    const adamas_dot_group_fn dot = kern->dot_group[c->cfg.kv_dtype];
    const adamas_axpy_group_fn axpy = kern->axpy_group[c->cfg.kv_dtype];
    uint32_t batch = (uint32_t)(BATCH_BYTES / row_bytes);
    batch = batch < 1 ? 1 : batch > MAX_BATCH_ROWS ? MAX_BATCH_ROWS : batch;
    const void *rows[MAX_BATCH_ROWS];
    const size_t l2_stride = l2_prefetch_stride(c->elem_size);
    uint32_t far_rows =
        set ? PREFETCH_L2_GATHERED_ROWS : (uint32_t)(L2_PREFETCH_BYTES / row_bytes);
    far_rows = far_rows > PREFETCH_ROWS ? far_rows : PREFETCH_ROWS + 1;

    /* logits: every key row read once for all heads */
    for (uint32_t i = 0; i < count; i += batch) {
        const uint32_t n = count - i < batch ? count - i : batch;
        prefetch_ahead(keys, row_bytes, l2_stride, set, first, i, n, count, far_rows);
        batch_rows(keys, row_bytes, set, first, i, n, rows);
        dot(q, heads, rows, n, d, logits + i, count);
    }
    for (uint32_t j = 0; j < heads; j++) {
        float *l = logits + (size_t)j * count, *p = partial + j * stride;
        const float max = kern->scale_max(l, count, scale);
        p[0] = max;
        p[1] = kern->exp_sum(l, count, max);
        memset(p + 2, 0, d * sizeof *p);
    }
    /* weighted values: every value row read once for all heads */
    for (uint32_t i = 0; i < count; i += batch) {
        const uint32_t n = count - i < batch ? count - i : batch;
        prefetch_ahead(values, row_bytes, l2_stride, set, first, i, n, count, far_rows);
        batch_rows(values, row_bytes, set, first, i, n, rows);
        axpy(partial + 2, stride, logits + i, count, heads, rows, n, d);
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

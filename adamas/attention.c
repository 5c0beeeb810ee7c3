/* attention.c - exact softmax attention over a set of cached tokens. */
#include <math.h>
#include <string.h>

#include "decode.h"

void adamas_attend(const adamas_cache *c, const adamas_kernels *kern, uint32_t kv_head,
                   const float *q, const uint32_t *set, uint32_t m, float *logits, float *out)
{
    const size_t d = c->cfg.head_dim;
    const adamas_dot_fn dot = kern->dot[c->cfg.kv_dtype];
    const adamas_axpy_fn axpy = kern->axpy[c->cfg.kv_dtype];
    const float scale = (float)(1.0 / sqrt((double)d));

    float max = -INFINITY;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t token = set ? set[i] : i;
        logits[i] = dot(q, adamas_cache_key_row(c, kv_head, token), d) * scale;
        max = logits[i] > max ? logits[i] : max;
    }
    float sum = kern->exp_sum(logits, m, max);

    memset(out, 0, d * sizeof *out);
    for (uint32_t i = 0; i < m; i++) {
        uint32_t token = set ? set[i] : i;
        axpy(out, logits[i], adamas_cache_value_row(c, kv_head, token), d);
    }
    for (size_t i = 0; i < d; i++)
        out[i] /= sum;
}

/* workload.c - the synthetic long-context workload of workload.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"
#include "workload.h"

uint64_t workload_rng_next(workload_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

float workload_rng_gauss(workload_rng *r)
{
    uint64_t x = workload_rng_next(r);
    float sum = (float)(x & 0xffff) + (float)((x >> 16) & 0xffff) + (float)((x >> 32) & 0xffff) +
                (float)(x >> 48);
    return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

/* Stored value of x in dtype t, widened back to f32. */
static float as_stored(float x, adamas_dtype t)
{
    if (t == ADAMAS_F16)
        return adamas_f16_to_f32(adamas_f32_to_f16(x));
    if (t == ADAMAS_BF16)
        return adamas_bf16_to_f32(adamas_f32_to_bf16(x));
    return x;
}

int workload_create(workload *w, const workload_config *cfg)
{
    *w = (workload){.cfg = *cfg};
    w->q = malloc((size_t)cfg->heads * cfg->dim * sizeof *w->q);
    w->logits = malloc((size_t)cfg->heads * cfg->tokens * sizeof *w->logits);
    w->p_full = malloc((size_t)cfg->heads * cfg->tokens * sizeof *w->p_full);
    if (!w->q || !w->logits || !w->p_full) {
        workload_destroy(w);
        return ADAMAS_ENOMEM;
    }
    return 0;
}

void workload_destroy(workload *w)
{
    free(w->q);
    free(w->logits);
    free(w->p_full);
    w->q = NULL;
    w->logits = w->p_full = NULL;
}

/* Full-attention probabilities of every head from its logits. */
static void softmax_rows(workload *w)
{
    const workload_config *o = &w->cfg;
    for (uint32_t h = 0; h < o->heads; h++) {
        const double *l = w->logits + (size_t)h * o->tokens;
        double *p = w->p_full + (size_t)h * o->tokens, max = -INFINITY, sum = 0.0;
        for (uint32_t t = 0; t < o->tokens; t++)
            max = l[t] > max ? l[t] : max;
        for (uint32_t t = 0; t < o->tokens; t++)
            sum += p[t] = exp(l[t] - max);
        for (uint32_t t = 0; t < o->tokens; t++)
            p[t] /= sum;
    }
}

int workload_fill(workload *w, adamas_cache *const *caches, size_t n_caches, workload_rng *r)
{
    const workload_config *o = &w->cfg;
    const uint32_t d = o->dim, g_size = o->heads / o->kv_heads, chunk = 1024;
    const float key_scale = 2.0f, query_scale = 0.4f, outlier = 12.0f;
    enum { N_NEEDLES = 8 };
    uint32_t needles[WORKLOAD_MAX_KV_HEADS][N_NEEDLES];
    uint32_t passage_left[WORKLOAD_MAX_KV_HEADS] = {0}; /* tokens left in a passage */
    float passage_pull[WORKLOAD_MAX_KV_HEADS];

    for (size_t i = 0; i < (size_t)o->heads * d; i++)
        w->q[i] = query_scale * workload_rng_gauss(r);
    /* Query heads that share a kv head look for similar tokens: with GQA each is 0.6
     * of its own direction and 0.8 of one the group shares (the same variance).  The
     * keys are pulled toward the group's mean query, so every head of the group finds
     * them. */
    float *q_mean = malloc((size_t)o->kv_heads * d * sizeof *q_mean);
    if (!q_mean)
        return ADAMAS_ENOMEM;
    for (uint32_t g = 0; g < o->kv_heads; g++) {
        float *mean = q_mean + (size_t)g * d;
        for (uint32_t i = 0; i < d; i++)
            mean[i] = g_size > 1 ? query_scale * workload_rng_gauss(r) : 0.0f;
        for (uint32_t j = 0; j < g_size; j++) {
            float *qh = w->q + ((size_t)g * g_size + j) * d;
            for (uint32_t i = 0; i < d; i++)
                if (g_size > 1)
                    qh[i] = 0.6f * qh[i] + 0.8f * mean[i];
        }
        for (uint32_t i = 0; i < d; i++) {
            double sum = 0.0;
            for (uint32_t j = 0; j < g_size; j++)
                sum += w->q[((size_t)g * g_size + j) * d + i];
            mean[i] = (float)(sum / g_size);
        }
    }
    for (uint32_t g = 0; g < o->kv_heads; g++)
        for (int k = 0; k < N_NEEDLES; k++)
            needles[g][k] = o->tokens > 1 ? 1 + (uint32_t)(workload_rng_next(r) % (o->tokens - 1))
                                          : UINT32_MAX;

    float *k = malloc((size_t)chunk * o->kv_heads * d * sizeof *k);
    float *v = malloc((size_t)chunk * o->kv_heads * d * sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        free(q_mean);
        return ADAMAS_ENOMEM;
    }
    double t0 = cli_now();
    for (uint32_t start = 0; start < o->tokens; start += chunk) {
        uint32_t m = o->tokens - start < chunk ? o->tokens - start : chunk;
        for (uint32_t t = 0; t < m; t++)
            for (uint32_t g = 0; g < o->kv_heads; g++) {
                float *kr = k + ((size_t)t * o->kv_heads + g) * d;
                float *vr = v + ((size_t)t * o->kv_heads + g) * d;
                for (uint32_t i = 0; i < d; i++) {
                    kr[i] = key_scale * workload_rng_gauss(r) + (i % 32 == 7 ? outlier : 0.0f);
                    vr[i] = workload_rng_gauss(r);
                }
                /* pull the key toward the group's mean query: the sink, the needles,
                 * and passages of somewhat relevant tokens */
                float pull = 0.0f;
                uint32_t token = start + t;
                if (passage_left[g] == 0 && workload_rng_next(r) % 2048 == 0) {
                    passage_left[g] = 8 + (uint32_t)(workload_rng_next(r) % 17);
                    passage_pull[g] = 4.0f + 4.0f * (float)(workload_rng_next(r) >> 40) * 0x1p-24f;
                }
                if (passage_left[g] > 0) {
                    passage_left[g]--;
                    pull = passage_pull[g];
                }
                if (token == 0)
                    pull = 10.0f;
                for (int n = 0; n < N_NEEDLES; n++)
                    if (needles[g][n] == token)
                        pull = 11.0f + (float)n * 0.25f;
                if (pull > 0.0f) {
                    const float *qg = q_mean + (size_t)g * d;
                    double qq = 0.0;
                    for (uint32_t i = 0; i < d; i++)
                        qq += (double)qg[i] * qg[i];
                    float beta = (float)(pull * sqrt((double)d) / qq);
                    for (uint32_t i = 0; i < d; i++)
                        kr[i] = 0.5f * kr[i] + beta * qg[i];
                }
            }
        for (size_t i = 0; i < n_caches; i++) {
            int st = adamas_cache_append(caches[i], k, v, m);
            if (st) {
                free(k);
                free(v);
                free(q_mean);
                return st;
            }
        }
        /* full-attention logits over the keys as stored */
        for (uint32_t h = 0; h < o->heads; h++) {
            const float *qh = w->q + (size_t)h * d;
            uint32_t g = h / g_size;
            for (uint32_t t = 0; t < m; t++) {
                const float *kr = k + ((size_t)t * o->kv_heads + g) * d;
                double s = 0.0;
                for (uint32_t i = 0; i < d; i++)
                    s += (double)qh[i] * as_stored(kr[i], o->dtype);
                w->logits[(size_t)h * o->tokens + start + t] = s / sqrt((double)d);
            }
        }
        if (o->progress && ((start / chunk) % 8 == 7 || start + m == o->tokens)) {
            fprintf(stderr, "\r  building cache: %u / %u tokens (%.1f s)", start + m, o->tokens,
                    cli_now() - t0);
            fflush(stderr);
        }
    }
    if (o->progress)
        fprintf(stderr, "\n");
    free(k);
    free(v);
    free(q_mean);
    softmax_rows(w);
    return 0;
}

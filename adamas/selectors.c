/* selectors.c - which cached tokens one query head attends to.
 *
 * All selectors share the budget semantics: with n <= B every token is attended;
 * otherwise B tokens (Quest: whole pages, at most B tokens).  ADAMAS and ORACLE first
 * force the `sink` first and `recent` last tokens, then rank the candidates between
 * them, which are contiguous: [sink, n - recent). */
#include <math.h>
#include <string.h>

#include "decode.h"
#include "select.h"

/* Code of the transformed query, with the fixed or the per-step thresholds. */
static void encode_query(const decode_step *s, const float *q, decode_scratch *w)
{
    const adamas_cache *c = s->cache;
    size_t d = c->cfg.head_dim;
    const int rotate = c->cfg.transform != ADAMAS_TRANSFORM_NONE;
    memcpy(w->qh, q, d * sizeof *q);
    if (c->query_tau == 0.0f) {
        if (rotate)
            s->kern->hadamard_encode(w->qh, d, c->cfg.q_thresholds, w->qcode);
        else
            s->kern->encode(w->qh, d, c->cfg.q_thresholds, w->qcode);
        return;
    }
    /* Calibrated: thresholds {-tau*r, 0, tau*r}, r the RMS of Hq.  r goes through the
     * fixed-order dot product so that every ISA derives the same thresholds. */
    if (rotate)
        s->kern->hadamard(w->qh, d);
    float r = sqrtf(s->kern->dot[ADAMAS_F32](w->qh, w->qh, d) / (float)d);
    float edge = c->query_tau * r;
    const float th[3] = {-edge, 0.0f, edge};
    s->kern->encode(w->qh, d, th, w->qcode);
}

/* Exact logits q.k of the given tokens (positions 0..m-1 of `tokens`, or of the
 * range first..first+m-1 when tokens is NULL), in the fixed summation order. */
static void exact_logits(const decode_step *s, uint32_t kv_head, const float *q,
                         const uint32_t *tokens, uint32_t first, uint32_t m, float *score)
{
    const adamas_cache *c = s->cache;
    adamas_dot_fn dot = s->kern->dot[c->cfg.kv_dtype];
    for (uint32_t i = 0; i < m; i++) {
        uint32_t token = tokens ? tokens[i] : first + i;
        score[i] = dot(q, adamas_cache_key_row(c, kv_head, token), c->cfg.head_dim);
    }
}

/* ADAMAS: the k_free candidates nearest in code distance, optionally reranked. */
static void pick_by_codes(const decode_step *s, uint32_t kv_head, const float *q,
                          decode_scratch *w, uint32_t n_cand, uint32_t k_free, uint32_t *picked)
{
    const adamas_cache *c = s->cache;
    const uint32_t nbins = 3 * c->cfg.head_dim + 1;
    encode_query(s, q, w);
    memset(w->hist, 0, nbins * sizeof *w->hist);
    s->kern->scan[c->cfg.metric](w->qcode, adamas_cache_codes(c, kv_head, s->sink),
                                 c->code_words, n_cand, w->dist, w->hist);

    uint64_t wanted = (uint64_t)s->rerank * k_free;
    if (s->rerank <= 1 || wanted <= k_free) {
        adamas_select_smallest_hist(w->dist, n_cand, k_free, w->hist, nbins, s->sink, picked);
        return;
    }
    /* Two stages: codes shortlist R*k_free candidates, exact logits keep k_free.
     * The shortlist is ascending, so ties of the logit go to the more recent token. */
    uint32_t n_short = wanted < n_cand ? (uint32_t)wanted : n_cand;
    adamas_select_smallest_hist(w->dist, n_cand, n_short, w->hist, nbins, s->sink, w->cand);
    exact_logits(s, kv_head, q, w->cand, 0, n_short, w->score);
    adamas_select_largest_f32(w->score, n_short, k_free, picked);
    for (uint32_t i = 0; i < k_free; i++)
        picked[i] = w->cand[picked[i]];
}

/* ORACLE: the k_free candidates with the largest exact logit. */
static void pick_by_logits(const decode_step *s, uint32_t kv_head, const float *q,
                           decode_scratch *w, uint32_t n_cand, uint32_t k_free, uint32_t *picked)
{
    exact_logits(s, kv_head, q, NULL, s->sink, n_cand, w->score);
    adamas_select_largest_f32(w->score, n_cand, k_free, picked);
    for (uint32_t i = 0; i < k_free; i++)
        picked[i] += s->sink;
}

/* Write tokens [first, first + count) to set; returns count. */
static uint32_t put_range(uint32_t *set, uint32_t first, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        set[i] = first + i;
    return count;
}

/* QUEST: the newest token's page, plus the floor(B/P)-1 best other pages by the
 * upper bound sum_i max(q_i*min_i, q_i*max_i); every token of the chosen pages. */
static uint32_t select_pages(const decode_step *s, uint32_t kv_head, const float *q,
                             decode_scratch *w)
{
    const adamas_cache *c = s->cache;
    const uint32_t page = c->cfg.page_size, n_pages = (s->n + page - 1) / page;
    const uint32_t last = n_pages - 1, n_pick = s->budget / page - 1;
    for (uint32_t p = 0; p < last; p++) {
        size_t off = adamas_cache_page_offset(c, kv_head, p);
        w->score[p] = s->kern->page_score(q, c->page_min + off, c->page_max + off,
                                          c->cfg.head_dim);
    }
    if (n_pick > 0)
        adamas_select_largest_f32(w->score, last, n_pick, w->cand);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n_pick; i++)
        m += put_range(w->set + m, w->cand[i] * page, page);
    m += put_range(w->set + m, last * page, s->n - last * page);
    return m;
}

uint32_t adamas_select_tokens(const decode_step *s, uint32_t kv_head, const float *q,
                              decode_scratch *w, const uint32_t **set)
{
    const uint32_t n = s->n, budget = s->budget;
    *set = NULL;
    if (s->selector == ADAMAS_SELECT_FULL || n <= budget)
        return n;
    *set = w->set;

    if (s->selector == ADAMAS_SELECT_QUEST)
        return select_pages(s, kv_head, q, w);

    if (s->selector == ADAMAS_SELECT_STREAMING) {
        put_range(w->set, 0, s->sink);
        put_range(w->set + s->sink, n - (budget - s->sink), budget - s->sink);
        return budget;
    }

    /* ADAMAS and ORACLE: forced set, then the best k_free of the candidates. */
    const uint32_t n_cand = n - s->sink - s->recent, k_free = budget - s->sink - s->recent;
    put_range(w->set, 0, s->sink);
    if (s->selector == ADAMAS_SELECT_ORACLE)
        pick_by_logits(s, kv_head, q, w, n_cand, k_free, w->set + s->sink);
    else
        pick_by_codes(s, kv_head, q, w, n_cand, k_free, w->set + s->sink);
    put_range(w->set + s->sink + k_free, n - s->recent, s->recent);
    return budget;
}

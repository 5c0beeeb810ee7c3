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

void adamas_encode_query(const decode_step *s, const float *q, float *qh, uint64_t *qcode)
{
    const adamas_cache *c = s->cache;
    size_t d = c->cfg.head_dim;
    const int rotate = c->cfg.transform != ADAMAS_TRANSFORM_NONE;
    memcpy(qh, q, d * sizeof *q);
    if (c->query_tau == 0.0f) {
        if (rotate)
            s->kern->hadamard_encode(qh, d, c->cfg.q_thresholds, qcode);
        else
            s->kern->encode(qh, d, c->cfg.q_thresholds, qcode);
        return;
    }
    /* Calibrated: thresholds {-tau*r, 0, tau*r}, r the RMS of Hq.  r goes through the
     * fixed-order dot product so that every ISA derives the same thresholds. */
    if (rotate)
        s->kern->hadamard(qh, d);
    float r = sqrtf(s->kern->dot[ADAMAS_F32](qh, qh, d) / (float)d);
    float edge = c->query_tau * r;
    const float th[3] = {-edge, 0.0f, edge};
    s->kern->encode(qh, d, th, qcode);
}

/* Exact logits q.k of the given tokens (positions 0..m-1 of `tokens`, or of the
 * range first..first+m-1 when tokens is NULL), in the fixed summation order. */
static void exact_logits(const decode_step *s, uint32_t kv_head, const float *q,
                         const uint32_t *tokens, uint32_t first, uint32_t m, float *score)
{
    const adamas_cache *c = s->cache;
    adamas_dot_fn dot = s->kern->dot[c->cfg.kv_dtype];
    const size_t row_bytes = (size_t)c->cfg.head_dim * c->elem_size;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t token = tokens ? tokens[i] : first + i;
        if (tokens && i + PREFETCH_ROWS < m)
            adamas_prefetch(adamas_cache_key_row(c, kv_head, tokens[i + PREFETCH_ROWS]), row_bytes);
        if (tokens && i + PREFETCH_L2_GATHERED_ROWS < m)
            adamas_prefetch_l2(
                adamas_cache_key_row(c, kv_head, tokens[i + PREFETCH_L2_GATHERED_ROWS]), row_bytes);
        score[i] = dot(q, adamas_cache_key_row(c, kv_head, token), c->cfg.head_dim);
    }
}

/* ADAMAS: the k_free candidates nearest in code distance, optionally reranked.
 * scan: the scan of the candidates. */
static void pick_by_codes(const decode_step *s, uint32_t kv_head, const float *q,
                          const adamas_scanned *scan, uint32_t *picked, uint32_t *cand,
                          float *score)
{
    const uint32_t k_free = s->k_free, n_short = s->k_codes;
    if (n_short == k_free) {
        adamas_select_scanned(scan, k_free, s->sink, picked);
        return;
    }
    /* Two stages: codes shortlist R*k_free candidates, exact logits keep k_free.
     * The shortlist is ascending, so ties of the logit go to the more recent token. */
    adamas_select_scanned(scan, n_short, s->sink, cand);
    exact_logits(s, kv_head, q, cand, 0, n_short, score);
    adamas_select_largest_f32(score, n_short, k_free, picked);
    for (uint32_t i = 0; i < k_free; i++)
        picked[i] = cand[picked[i]];
}

/* ORACLE: the k_free candidates with the largest exact logit. */
static void pick_by_logits(const decode_step *s, uint32_t kv_head, const float *q,
                           uint32_t *picked, float *score)
{
    exact_logits(s, kv_head, q, NULL, s->sink, s->n_cand, score);
    adamas_select_largest_f32(score, s->n_cand, s->k_free, picked);
    for (uint32_t i = 0; i < s->k_free; i++)
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
                             uint32_t *set, uint32_t *pages, float *score)
{
    const adamas_cache *c = s->cache;
    const uint32_t page = c->cfg.page_size, n_pages = (s->n + page - 1) / page;
    const uint32_t last = n_pages - 1, n_pick = s->budget / page - 1;
    for (uint32_t p = 0; p < last; p++) {
        size_t off = adamas_cache_page_offset(c, kv_head, p);
        score[p] = s->kern->page_score(q, c->page_min + off, c->page_max + off, c->cfg.head_dim);
    }
    if (n_pick > 0)
        adamas_select_largest_f32(score, last, n_pick, pages);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n_pick; i++)
        m += put_range(set + m, pages[i] * page, page);
    m += put_range(set + m, last * page, s->n - last * page);
    return m;
}

uint32_t adamas_select_tokens(const decode_step *s, uint32_t kv_head, const float *q,
                              const adamas_scanned *scan, uint32_t *set, uint32_t *cand,
                              float *score)
{
    const uint32_t n = s->n, budget = s->budget;
    if (s->dense)
        return n;
    if (s->selector == ADAMAS_SELECT_QUEST)
        return select_pages(s, kv_head, q, set, cand, score);

    if (s->selector == ADAMAS_SELECT_STREAMING) {
        put_range(set, 0, s->sink);
        put_range(set + s->sink, n - (budget - s->sink), budget - s->sink);
        return budget;
    }

    /* ADAMAS and ORACLE: forced set, then the best k_free of the candidates. */
    put_range(set, 0, s->sink);
    if (s->selector == ADAMAS_SELECT_ORACLE)
        pick_by_logits(s, kv_head, q, set + s->sink, score);
    else
        pick_by_codes(s, kv_head, q, scan, set + s->sink, cand, score);
    put_range(set + s->sink + s->k_free, n - s->recent, s->recent);
    return budget;
}

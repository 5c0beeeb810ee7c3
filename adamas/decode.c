/* decode.c - one decode step: for each query head, select tokens, then attend.
 *
 *   query -> Hadamard + encode -> scan codes (distances, histogram) -> select
 *         -> gather the selected K/V rows -> softmax attention -> out
 */
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "error.h"
#include "validate.h"

adamas_decode_params adamas_decode_params_default(adamas_selector selector, uint32_t budget)
{
    adamas_decode_params p = {
        .selector = selector,
        .budget = budget,
        .sink = selector == ADAMAS_SELECT_STREAMING ? 4 : 0,
        .recent = 1,
        .page_size = 16,
        .rerank = 0,
    };
    return p;
}

/* Check the arguments and fill the step description; nothing is written on failure. */
static int prepare_step(const adamas_cache *c, const adamas_decode_params *p, const float *q,
                        const float *out, decode_step *s)
{
    const char *fn = "adamas_decode";
    if (!c || !p || !q || !out)
        return adamas_fail(ADAMAS_EINVAL, "%s: %s is NULL", fn,
                           !c ? "c" : !p ? "p" : !q ? "q" : "out");
    if (c->len == 0)
        return adamas_fail(ADAMAS_EINVAL, "%s: the cache is empty", fn);
    if ((unsigned)p->selector > ADAMAS_SELECT_QUEST)
        return adamas_fail(ADAMAS_EINVAL, "%s: selector = %d is unknown", fn, (int)p->selector);
    size_t n_q = (size_t)c->cfg.n_heads * c->cfg.head_dim;
    size_t bad = adamas_first_nonfinite(q, n_q);
    if (bad < n_q)
        return adamas_fail(ADAMAS_EINVAL, "%s: q[%zu][%zu] is not finite", fn,
                           bad / c->cfg.head_dim, bad % c->cfg.head_dim);
    if (p->selector == ADAMAS_SELECT_QUEST && p->page_size != 0 &&
        p->page_size != c->cfg.page_size)
        return adamas_fail(ADAMAS_EINVAL,
                           "%s: page_size = %u differs from the cache's page_size = %u", fn,
                           p->page_size, c->cfg.page_size);

    const uint32_t n = c->len, budget = p->budget;
    if (p->selector != ADAMAS_SELECT_FULL && n > budget) {
        uint64_t forced = 0;
        const char *what = "";
        switch (p->selector) {
        case ADAMAS_SELECT_ADAMAS:
        case ADAMAS_SELECT_ORACLE:
            forced = (uint64_t)p->sink + p->recent;
            what = "sink + recent";
            break;
        case ADAMAS_SELECT_STREAMING:
            forced = p->sink;
            what = "sink";
            break;
        default: /* QUEST: the newest page is forced; B must hold one page */
            forced = (uint64_t)c->cfg.page_size - 1;
            what = "page_size - 1";
            break;
        }
        if (budget <= forced)
            return adamas_fail(ADAMAS_EINVAL,
                               "%s: budget = %u is not larger than the forced set (%s = %llu)", fn,
                               budget, what, (unsigned long long)forced);
    }
    const adamas_kernels *kern;
    int st = adamas_kernels_get(&kern);
    if (st)
        return st;

    s->cache = c;
    s->kern = kern;
    s->selector = p->selector;
    s->n = n;
    s->budget = budget;
    s->sink = p->sink;
    s->recent = p->recent;
    s->rerank = p->rerank;
    return ADAMAS_OK;
}

/* One allocation holding the scratch of one query head for n tokens. */
static void *scratch_alloc(const adamas_cache *c, uint32_t n, decode_scratch *w)
{
    size_t d = c->cfg.head_dim;
    size_t bytes = c->code_words * sizeof(uint64_t) + d * sizeof(float) +
                   (3 * d + 1) * sizeof(uint32_t) +
                   (size_t)n * (2 * sizeof(uint32_t) + 2 * sizeof(float) + sizeof(uint16_t));
    char *base = malloc(bytes), *p = base;
    if (!base)
        return NULL;
    /* widest elements first, so that every array is aligned for its type */
    w->qcode = (uint64_t *)p;
    p += c->code_words * sizeof(uint64_t);
    w->qh = (float *)p;
    p += d * sizeof(float);
    w->hist = (uint32_t *)p;
    p += (3 * d + 1) * sizeof(uint32_t);
    w->cand = (uint32_t *)p;
    p += (size_t)n * sizeof(uint32_t);
    w->set = (uint32_t *)p;
    p += (size_t)n * sizeof(uint32_t);
    w->score = (float *)p;
    p += (size_t)n * sizeof(float);
    w->logits = (float *)p;
    p += (size_t)n * sizeof(float);
    w->dist = (uint16_t *)p;
    return base;
}

/* Row h of `selected`: the attended tokens ascending, then UINT32_MAX. */
static void write_selected_row(uint32_t *row, uint32_t budget, const uint32_t *set, uint32_t m)
{
    for (uint32_t i = 0; i < m; i++)
        row[i] = set ? set[i] : i;
    for (uint32_t i = m; i < budget; i++)
        row[i] = UINT32_MAX;
}

int adamas_decode(const adamas_cache *c, const adamas_decode_params *p, const float *q,
                  float *out, uint32_t *selected)
{
    decode_step s;
    int st = prepare_step(c, p, q, out, &s);
    if (st)
        return st;
    decode_scratch w;
    void *scratch = scratch_alloc(c, s.n, &w);
    if (!scratch)
        return adamas_fail(ADAMAS_ENOMEM, "adamas_decode: cannot allocate scratch for %u tokens",
                           s.n);

    const size_t d = c->cfg.head_dim;
    for (uint32_t h = 0; h < c->cfg.n_heads; h++) {
        const uint32_t kv_head = h / c->group;
        const float *qh = q + (size_t)h * d;
        const uint32_t *set;
        uint32_t m = adamas_select_tokens(&s, kv_head, qh, &w, &set);
        adamas_attend(c, s.kern, kv_head, qh, set, m, w.logits, out + (size_t)h * d);
        if (selected && s.selector != ADAMAS_SELECT_FULL)
            write_selected_row(selected + (size_t)h * s.budget, s.budget, set, m);
    }
    free(scratch);
    return ADAMAS_OK;
}

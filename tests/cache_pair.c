/* cache_pair.c - a library cache next to its reference model (see cache_pair.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_pair.h"
#include "testutil.h"

static void *test_alloc(size_t n, size_t size)
{
    void *ptr = calloc(n ? n : 1, size ? size : 1);
    cr_assert(ptr, "out of memory");
    return ptr;
}

void pair_create(cache_pair *p, const adamas_cache_config *cfg)
{
    int st = adamas_cache_create(cfg, &p->lib);
    expect(st == ADAMAS_OK, "adamas_cache_create: %s (%s)", adamas_strerror(st),
           adamas_last_error());
    ref_cache_init(&p->ref, cfg);
}

void pair_destroy(cache_pair *p)
{
    adamas_cache_destroy(p->lib);
    ref_cache_free(&p->ref);
}

void pair_append(cache_pair *p, const float *k, const float *v, uint32_t n)
{
    int st = adamas_cache_append(p->lib, k, v, n);
    expect(st == ADAMAS_OK, "adamas_cache_append of %u tokens: %s (%s)", n, adamas_strerror(st),
           adamas_last_error());
    ref_cache_append(&p->ref, k, v, n);
    expect(adamas_cache_len(p->lib) == p->ref.len, "length %u, expected %u",
           adamas_cache_len(p->lib), p->ref.len);
}

void pair_append_random(cache_pair *p, uint32_t n, float key_scale, float value_scale)
{
    size_t per_token = p->ref.token_floats;
    while (n > 0) {
        uint32_t chunk = 1 + rng_below(n < 40 ? n : 40);
        float *k = test_alloc(chunk * per_token, sizeof *k);
        float *v = test_alloc(chunk * per_token, sizeof *v);
        rng_fill_normal(k, chunk * per_token, key_scale);
        rng_fill_normal(v, chunk * per_token, value_scale);
        pair_append(p, k, v, chunk);
        free(k);
        free(v);
        n -= chunk;
    }
}

void pair_calibrate(cache_pair *p, float tau)
{
    int st = adamas_cache_calibrate(p->lib, tau);
    expect(st == ADAMAS_OK, "adamas_cache_calibrate(%g): %s (%s)", (double)tau,
           adamas_strerror(st), adamas_last_error());
    expect(ref_cache_calibrate(&p->ref, tau) == 0, "the model rejects tau = %g", (double)tau);
}

void pair_check_codes(const cache_pair *p)
{
    const ref_cache *r = &p->ref;
    size_t d = r->cfg.head_dim, words = ref_code_words(d);
    uint64_t got[32], want[32];
    for (uint32_t g = 0; g < r->cfg.n_kv_heads; g++) {
        float th[3];
        expect(adamas_cache_key_thresholds(p->lib, g, th) == ADAMAS_OK, "%s",
               adamas_last_error());
        expect(memcmp(th, r->k_thresholds[g], sizeof th) == 0,
               "kv head %u: key thresholds {%a, %a, %a}, expected {%a, %a, %a}", g,
               (double)th[0], (double)th[1], (double)th[2], (double)r->k_thresholds[g][0],
               (double)r->k_thresholds[g][1], (double)r->k_thresholds[g][2]);
        for (uint32_t t = 0; t < r->len; t++) {
            poison(got, sizeof got);
            expect(adamas_cache_code(p->lib, g, t, got) == ADAMAS_OK, "%s", adamas_last_error());
            ref_pack_planar(ref_code(r, t, g), d, want);
            for (size_t w = 0; w < words; w++)
                expect(got[w] == want[w],
                       "d=%zu kv head %u token %u word %zu: code %016llx, expected %016llx", d,
                       g, t, w, (unsigned long long)got[w], (unsigned long long)want[w]);
        }
    }
}

/* The f32 logit q.k/sqrt(d) of a key is off by about eps * sum_i |q_i k_i| / sqrt(d)
 * (= logit_l1), and an error e in the logits moves the output by about e relative to
 * it; the exponentials and the weighted sum of up to a few hundred values add a
 * constant part.  1e-6 per unit of logit_l1 plus 8e-6 comes to about 1.5e-5 for
 * unit-scale data at d = 128 and stays >10 times above what random data shows. */
double attention_tolerance(double logit_l1)
{
    return 1e-6 * (8.0 + logit_l1);
}

static int verbose(void)
{
    const char *s = getenv("ADAMAS_TEST_VERBOSE");
    return s && *s && *s != '0';
}

double pair_check_decode(const cache_pair *p, const adamas_decode_params *prm, const float *q)
{
    const ref_cache *r = &p->ref;
    const uint32_t n_heads = r->cfg.n_heads, group = n_heads / r->cfg.n_kv_heads;
    const size_t d = r->cfg.head_dim, budget = prm->budget, guard = 8;
    const size_t sel_len = (size_t)n_heads * budget + guard;

    float *out = test_alloc((size_t)n_heads * d + guard, sizeof *out);
    uint32_t *selected = test_alloc(sel_len, sizeof *selected);
    uint32_t *set = test_alloc(r->len, sizeof *set);
    double *want = test_alloc(d, sizeof *want);
    poison(out, ((size_t)n_heads * d + guard) * sizeof *out);
    for (size_t i = 0; i < sel_len; i++)
        selected[i] = POISON_U32;

    int st = adamas_decode(p->lib, prm, q, out, selected);
    expect(st == ADAMAS_OK, "adamas_decode (selector %d, budget %u, n %u): %s (%s)",
           (int)prm->selector, prm->budget, r->len, adamas_strerror(st), adamas_last_error());

    uint32_t poison_bits;
    poison(&poison_bits, sizeof poison_bits);
    double worst = 0.0;
    for (uint32_t h = 0; h < n_heads; h++) {
        const uint32_t g = h / group;
        const float *qh = q + (size_t)h * d;
        uint32_t m = ref_select(r, prm, g, qh, set);
        const uint32_t *row = selected + (size_t)h * budget;
        if (prm->selector == ADAMAS_SELECT_FULL) {
            for (size_t i = 0; i < budget; i++)
                expect(row[i] == POISON_U32, "FULL wrote selected[%u][%zu]", h, i);
        } else {
            expect(m <= budget, "model selected %u > budget %zu tokens", m, budget);
            for (uint32_t i = 0; i < m; i++)
                expect(row[i] == set[i],
                       "selector %d, n %u, budget %zu, sink %u, recent %u, rerank %u: "
                       "selected[%u][%u] = %u, expected %u",
                       (int)prm->selector, r->len, budget, prm->sink, prm->recent, prm->rerank,
                       h, i, row[i], set[i]);
            for (size_t i = m; i < budget; i++)
                expect(row[i] == UINT32_MAX, "selected[%u][%zu] = %u, expected UINT32_MAX", h,
                       i, row[i]);
        }

        double logit_l1, err = 0.0, norm = 0.0;
        ref_attend(r, g, qh, set, m, want, &logit_l1);
        const float *got = out + (size_t)h * d;
        for (size_t i = 0; i < d; i++) {
            uint32_t bits;
            memcpy(&bits, &got[i], sizeof bits);
            expect(bits != poison_bits && isfinite(got[i]), "out[%u][%zu] = %a not written", h,
                   i, (double)got[i]);
            err += (got[i] - want[i]) * (got[i] - want[i]);
            norm += want[i] * want[i];
        }
        double rel = sqrt(err / norm), tol = attention_tolerance(logit_l1);
        if (verbose())
            fprintf(stderr, "rel %.3g tol %.3g ratio %.3g (l1 %.3g, m %u, d %zu)\n", rel, tol,
                    rel / tol, logit_l1, m, d);
        expect(rel <= tol,
               "selector %d, n %u, head %u: relative error %.3g > %.3g (logit l1 %.3g, %u tokens)",
               (int)prm->selector, r->len, h, rel, tol, logit_l1, m);
        worst = fmax(worst, rel);
    }
    for (size_t i = 0; i < guard; i++) {
        expect(selected[(size_t)n_heads * budget + i] == POISON_U32,
               "adamas_decode wrote past the selected rows");
        uint32_t bits;
        memcpy(&bits, &out[(size_t)n_heads * d + i], sizeof bits);
        expect(bits == poison_bits, "adamas_decode wrote past out");
    }
    free(want);
    free(set);
    free(selected);
    free(out);
    return worst;
}

float *random_query(const cache_pair *p, float scale)
{
    size_t count = (size_t)p->ref.cfg.n_heads * p->ref.cfg.head_dim;
    float *q = test_alloc(count, sizeof *q);
    rng_fill_normal(q, count, scale);
    return q;
}

void random_thresholds(float th[3], float scale)
{
    th[1] = rng_uniform(-0.3f, 0.3f) * scale;
    th[0] = th[1] - rng_uniform(0.2f, 1.5f) * scale;
    th[2] = th[1] + rng_uniform(0.2f, 1.5f) * scale;
}

adamas_cache_config random_config(uint32_t n_heads, uint32_t n_kv_heads, uint32_t head_dim,
                                  uint32_t max_tokens, adamas_dtype dtype)
{
    adamas_cache_config cfg = adamas_cache_config_default(n_heads, n_kv_heads, head_dim,
                                                          max_tokens);
    cfg.kv_dtype = dtype;
    random_thresholds(cfg.q_thresholds, 1.0f);
    random_thresholds(cfg.k_thresholds, 1.0f);
    return cfg;
}

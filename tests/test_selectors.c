/* test_selectors.c - which tokens each selector picks, against the reference model
 * (DESIGN §2 "Selection", "Baselines", "Two-stage selection"), with ties everywhere. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "cache_pair.h"
#include "testutil.h"

TestSuite(select, .init = rng_seed_from_env);

/* A cache of n random tokens next to its model. */
static void random_pair(cache_pair *pair, uint32_t n_heads, uint32_t n_kv, uint32_t d,
                        uint32_t n, adamas_dtype dtype)
{
    adamas_cache_config cfg = random_config(n_heads, n_kv, d, n, dtype);
    pair_create(pair, &cfg);
    pair_append_random(pair, n, 1.0f, 1.0f);
}

/* Decode with a fresh random query against the model. */
static void check_step(const cache_pair *pair, const adamas_decode_params *p)
{
    float *q = random_query(pair, 1.0f);
    pair_check_decode(pair, p, q);
    free(q);
}

/* The library's selected rows for query q ([n_heads][budget]; caller frees). */
static uint32_t *selected_rows(const adamas_cache *c, const adamas_decode_params *p,
                               const float *q)
{
    adamas_cache_config cfg = adamas_cache_get_config(c);
    uint32_t *rows = malloc(sizeof *rows * cfg.n_heads * p->budget);
    float *out = malloc(sizeof *out * cfg.n_heads * cfg.head_dim);
    int st = adamas_decode(c, p, q, out, rows);
    expect(st == ADAMAS_OK, "adamas_decode: %s", adamas_last_error());
    free(out);
    return rows;
}

Test(select, adamas_picks_the_nearest_codes_for_every_head_dim_and_metric)
{
    for (uint32_t d = 16; d <= 1024; d *= 2)
        for (int metric = ADAMAS_METRIC_L1; metric <= ADAMAS_METRIC_XORW; metric++) {
            uint32_t n = 50 + rng_below(200);
            adamas_cache_config cfg = random_config(4, 2, d, n, (adamas_dtype)rng_below(3));
            cfg.metric = (adamas_metric)metric;
            cache_pair pair;
            pair_create(&pair, &cfg);
            pair_append_random(&pair, n, 1.0f, 1.0f);
            for (int step = 0; step < 3; step++) {
                adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 0);
                p.sink = rng_below(6);
                p.recent = rng_below(6);
                p.budget = p.sink + p.recent + 1 + rng_below(n - p.sink - p.recent - 1);
                check_step(&pair, &p);
            }
            pair_destroy(&pair);
        }
}

Test(select, default_thresholds_tie_most_distances_and_still_match_the_model)
{
    /* With {-10, 0, 10} and unit-scale data every code is 1 or 2: distances are twice
     * a Hamming distance and most of them tie. */
    for (int trial = 0; trial < 6; trial++) {
        uint32_t n = 100 + rng_below(300), d = 16u << rng_below(3);
        adamas_cache_config cfg = adamas_cache_config_default(2, 1, d, n);
        cfg.metric = (adamas_metric)rng_below(2);
        cache_pair pair;
        pair_create(&pair, &cfg);
        pair_append_random(&pair, n, 1.0f, 1.0f);
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS,
                                                              2 + rng_below(n - 2));
        check_step(&pair, &p);
        pair_destroy(&pair);
    }
}

/* Keys from a pool of `pool` vectors, token t taking vector pick(t): exact ties of
 * codes, logits and page bounds.  Values random. */
static void append_pooled_keys(cache_pair *pair, uint32_t n, uint32_t pool, int by_page)
{
    const size_t per_token = pair->ref.token_floats;
    float *vectors = malloc(sizeof(float) * pool * per_token);
    float *k = malloc(sizeof(float) * n * per_token), *v = malloc(sizeof(float) * n * per_token);
    rng_fill_normal(vectors, pool * per_token, 1.0f);
    rng_fill_normal(v, n * per_token, 1.0f);
    for (uint32_t t = 0; t < n; t++) {
        /* by_page: every page holds the same sequence of vectors */
        uint32_t which = by_page ? t % pair->ref.cfg.page_size % pool : rng_below(pool);
        memcpy(k + t * per_token, vectors + which * per_token, per_token * sizeof(float));
    }
    pair_append(pair, k, v, n);
    free(vectors);
    free(k);
    free(v);
}

Test(select, ties_go_to_the_more_recent_token)
{
    const adamas_selector selectors[] = {ADAMAS_SELECT_ADAMAS, ADAMAS_SELECT_ORACLE,
                                         ADAMAS_SELECT_QUEST};
    for (size_t s = 0; s < 3; s++)
        for (int trial = 0; trial < 4; trial++) {
            uint32_t n = 60 + rng_below(200), pool = 1 + rng_below(4);
            adamas_cache_config cfg = random_config(4, 2, 32, n, (adamas_dtype)rng_below(3));
            cfg.page_size = 2 + rng_below(8);
            cache_pair pair;
            pair_create(&pair, &cfg);
            append_pooled_keys(&pair, n, pool, selectors[s] == ADAMAS_SELECT_QUEST);
            adamas_decode_params p = adamas_decode_params_default(selectors[s], 0);
            p.page_size = cfg.page_size;
            p.sink = rng_below(3);
            p.rerank = selectors[s] == ADAMAS_SELECT_ADAMAS && trial % 2 ? 2 + rng_below(3) : 0;
            p.budget = (selectors[s] == ADAMAS_SELECT_QUEST ? cfg.page_size : p.sink + p.recent + 1) +
                       rng_below(n / 2);
            check_step(&pair, &p);
            pair_destroy(&pair);
        }
}

Test(select, identical_keys_select_the_sinks_and_the_most_recent_tokens)
{
    /* Every key equal: every distance and logit ties, so ADAMAS, its rerank and ORACLE
     * all fall back to the most recent candidates. */
    const uint32_t n = 80 + rng_below(100), d = 64;
    adamas_cache_config cfg = random_config(2, 1, d, n, ADAMAS_F32);
    adamas_cache *c;
    expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "%s", adamas_last_error());
    float *k = malloc(sizeof(float) * n * d), *v = malloc(sizeof(float) * n * d);
    float key[64];
    rng_fill_normal(key, d, 1.0f);
    rng_fill_normal(v, (size_t)n * d, 1.0f);
    for (uint32_t t = 0; t < n; t++)
        memcpy(k + (size_t)t * d, key, sizeof key);
    expect(adamas_cache_append(c, k, v, n) == ADAMAS_OK, "%s", adamas_last_error());
    float q[2 * 64];
    rng_fill_normal(q, 2 * d, 1.0f);
    const adamas_selector selectors[] = {ADAMAS_SELECT_ADAMAS, ADAMAS_SELECT_ADAMAS,
                                         ADAMAS_SELECT_ORACLE};
    for (int s = 0; s < 3; s++) {
        adamas_decode_params p = adamas_decode_params_default(selectors[s], 10 + rng_below(40));
        p.sink = rng_below(5);
        p.recent = rng_below(5);
        p.rerank = s == 1 ? 3 : 0;
        uint32_t *rows = selected_rows(c, &p, q);
        for (uint32_t h = 0; h < 2; h++)
            for (uint32_t i = 0; i < p.budget; i++) {
                uint32_t want = i < p.sink ? i : n - (p.budget - i);
                expect(rows[h * p.budget + i] == want,
                       "selector %d rerank %u: selected[%u][%u] = %u, expected %u", (int)p.selector,
                       p.rerank, h, i, rows[h * p.budget + i], want);
            }
        free(rows);
    }
    free(k);
    free(v);
    adamas_cache_destroy(c);
}

Test(select, forced_sink_and_recent_tokens_are_always_attended)
{
    cache_pair pair;
    uint32_t n = 100 + rng_below(200);
    random_pair(&pair, 4, 4, 32, n, ADAMAS_F32);
    for (int s = 0; s < 2; s++) {
        adamas_decode_params p = adamas_decode_params_default(
            s ? ADAMAS_SELECT_ORACLE : ADAMAS_SELECT_ADAMAS, 0);
        p.sink = 1 + rng_below(8);
        p.recent = 1 + rng_below(8);
        p.budget = p.sink + p.recent + 1 + rng_below(20);
        float *q = random_query(&pair, 1.0f);
        pair_check_decode(&pair, &p, q);
        uint32_t *rows = selected_rows(pair.lib, &p, q);
        for (uint32_t h = 0; h < 4; h++) {
            const uint32_t *row = rows + h * p.budget;
            for (uint32_t i = 0; i < p.sink; i++)
                expect(row[i] == i, "sink token %u missing from head %u", i, h);
            for (uint32_t i = 0; i < p.recent; i++)
                expect(row[p.budget - p.recent + i] == n - p.recent + i,
                       "recent token %u missing from head %u", n - p.recent + i, h);
        }
        free(rows);
        free(q);
    }
    pair_destroy(&pair);
}

Test(select, rerank_shortlists_by_code_then_keeps_the_largest_logits)
{
    for (int trial = 0; trial < 8; trial++) {
        cache_pair pair;
        uint32_t n = 80 + rng_below(300);
        random_pair(&pair, 4, 2, 16u << rng_below(4), n, (adamas_dtype)rng_below(3));
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 0);
        p.sink = rng_below(4);
        p.budget = p.sink + p.recent + 1 + rng_below(40);
        p.rerank = 2 + rng_below(trial < 6 ? 4 : 1000); /* last ones: shortlist = all */
        check_step(&pair, &p);
        pair_destroy(&pair);
    }
}

Test(select, rerank_over_every_candidate_is_the_oracle)
{
    cache_pair pair;
    uint32_t n = 100 + rng_below(200);
    random_pair(&pair, 4, 2, 64, n, ADAMAS_F16);
    adamas_decode_params rerank = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 24);
    rerank.rerank = n; /* R * (B - |F|) >= candidates */
    adamas_decode_params oracle = adamas_decode_params_default(ADAMAS_SELECT_ORACLE, 24);
    float *q = random_query(&pair, 1.0f);
    uint32_t *a = selected_rows(pair.lib, &rerank, q), *b = selected_rows(pair.lib, &oracle, q);
    for (uint32_t i = 0; i < 4 * 24; i++)
        expect(a[i] == b[i], "slot %u: rerank %u, oracle %u", i, a[i], b[i]);
    free(a);
    free(b);
    free(q);
    pair_destroy(&pair);
}

Test(select, oracle_picks_the_largest_exact_logits)
{
    for (int trial = 0; trial < 6; trial++) {
        cache_pair pair;
        uint32_t n = 50 + rng_below(300);
        random_pair(&pair, 2, 1, 16u << rng_below(5), n, (adamas_dtype)(trial % 3));
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ORACLE, 0);
        p.sink = rng_below(4);
        p.recent = rng_below(4);
        p.budget = p.sink + p.recent + 1 + rng_below(n - p.sink - p.recent - 1);
        check_step(&pair, &p);
        pair_destroy(&pair);
    }
}

Test(select, streaming_keeps_the_sinks_and_the_most_recent_tokens)
{
    cache_pair pair;
    uint32_t n = 60 + rng_below(200);
    random_pair(&pair, 2, 2, 32, n, ADAMAS_BF16);
    for (int step = 0; step < 6; step++) {
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_STREAMING, 0);
        p.sink = rng_below(8);
        p.recent = rng_below(2) ? 0 : 1000; /* ignored by STREAMING */
        p.budget = p.sink + 1 + rng_below(n - p.sink - 1);
        check_step(&pair, &p);
        float *q = random_query(&pair, 1.0f);
        uint32_t *rows = selected_rows(pair.lib, &p, q);
        for (uint32_t i = 0; i < p.budget; i++) {
            uint32_t want = i < p.sink ? i : n - (p.budget - i);
            expect(rows[i] == want, "slot %u = %u, expected %u", i, rows[i], want);
        }
        free(rows);
        free(q);
    }
    pair_destroy(&pair);
}

Test(select, quest_keeps_the_newest_page_and_the_best_bounded_pages)
{
    const uint32_t pages[] = {1, 3, 7, 16, 32};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
        for (int trial = 0; trial < 3; trial++) {
            uint32_t n = pages[i] + 1 + rng_below(300);
            adamas_cache_config cfg = random_config(4, 2, 16u << rng_below(4), n + 5,
                                                    (adamas_dtype)rng_below(3));
            cfg.page_size = pages[i];
            cache_pair pair;
            pair_create(&pair, &cfg);
            pair_append_random(&pair, n, 1.0f, 1.0f);
            adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_QUEST, 0);
            p.page_size = rng_below(2) ? 0 : pages[i];
            p.sink = rng_below(5); /* ignored by QUEST */
            p.recent = rng_below(5);
            p.budget = pages[i] + rng_below(n - pages[i]); /* P <= B < n: any remainder */
            check_step(&pair, &p);
            pair_destroy(&pair);
        }
}

Test(select, quest_with_one_page_of_budget_attends_to_the_newest_page_only)
{
    const uint32_t page = 4 + rng_below(13), n = 3 * page + 1 + rng_below(5 * page);
    adamas_cache_config cfg = random_config(2, 1, 32, n, ADAMAS_F32);
    cfg.page_size = page;
    cache_pair pair;
    pair_create(&pair, &cfg);
    pair_append_random(&pair, n, 1.0f, 1.0f);
    adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_QUEST, page + rng_below(page));
    p.page_size = 0;
    check_step(&pair, &p);
    float *q = random_query(&pair, 1.0f);
    uint32_t *rows = selected_rows(pair.lib, &p, q);
    uint32_t first = (n - 1) / page * page;
    for (uint32_t i = 0; i < p.budget; i++) {
        uint32_t want = first + i < n ? first + i : UINT32_MAX;
        expect(rows[i] == want, "slot %u = %u, expected %u", i, rows[i], want);
    }
    free(rows);
    free(q);
    pair_destroy(&pair);
}

Test(select, quest_page_bounds_come_from_the_stored_keys)
{
    /* Page 1 repeats page 0's keys lowered by less than half a unit in the last place
     * of f16 and bf16: as given its bound is lower for a positive query, as stored the
     * two pages tie and the more recent, page 1, wins. */
    const uint32_t page = 2 + rng_below(6), d = 32, n = 2 * page + 1 + rng_below(page);
    for (int dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++) {
        adamas_cache_config cfg = random_config(1, 1, d, n, (adamas_dtype)dtype);
        cfg.page_size = page;
        cache_pair pair;
        pair_create(&pair, &cfg);
        float key[32], *k = malloc(sizeof(float) * n * d), *v = malloc(sizeof(float) * n * d);
        for (uint32_t i = 0; i < d; i++) /* +-[0.5, 2] in steps of 1/8: exact in every dtype */
            key[i] = (float)(4 + (int)rng_below(13)) / 8.0f * (rng_below(2) ? 1.0f : -1.0f);
        rng_fill_normal(k, (size_t)n * d, 0.1f);
        rng_fill_normal(v, (size_t)n * d, 1.0f);
        for (uint32_t t = 0; t < 2 * page; t++)
            for (uint32_t i = 0; i < d; i++)
                k[t * d + i] = t < page ? key[i] : key[i] - fabsf(key[i]) * 0x1p-13f;
        pair_append(&pair, k, v, n);
        float q[32];
        for (uint32_t i = 0; i < d; i++)
            q[i] = rng_uniform(0.5f, 1.5f);
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_QUEST, 2 * page);
        p.page_size = 0;
        pair_check_decode(&pair, &p, q);
        uint32_t *rows = selected_rows(pair.lib, &p, q);
        uint32_t want_page = dtype == ADAMAS_F32 ? 0 : 1;
        expect(rows[0] == want_page * page, "dtype %d: first selected token %u, expected page %u",
               dtype, rows[0], want_page);
        free(rows);
        free(k);
        free(v);
        pair_destroy(&pair);
    }
}

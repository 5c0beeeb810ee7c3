/* test_decode.c - adamas_decode against the reference model: selected rows identical,
 * outputs within the attention tolerance of double precision, for every selector,
 * storage dtype and head layout. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "adamas.h"
#include "cache_pair.h"
#include "testutil.h"

TestSuite(decode, .init = rng_seed_from_env);

static const char *const selector_names[] = {"adamas", "full", "oracle", "streaming", "quest"};
static const char *const dtype_names[] = {"f32", "f16", "bf16"};

/* Decode parameters for a cache of n tokens: a random valid budget below n (or at or
 * above n when `short_cache`), random sink/recent, rerank and Quest page size. */
static adamas_decode_params random_params(adamas_selector sel, uint32_t n, uint32_t page_size,
                                          int short_cache)
{
    adamas_decode_params p = adamas_decode_params_default(sel, 0);
    p.sink = rng_below(5);
    p.recent = rng_below(4);
    p.rerank = rng_below(2) ? 0 : 1 + rng_below(6);
    p.page_size = rng_below(2) ? 0 : page_size;
    uint32_t forced = p.sink + p.recent;
    if (sel == ADAMAS_SELECT_STREAMING)
        forced = p.sink;
    if (sel == ADAMAS_SELECT_QUEST)
        forced = page_size - 1;
    if (short_cache)
        p.budget = n + rng_below(20);
    else
        p.budget = forced + 1 + rng_below(n - forced - 1); /* forced < budget < n */
    return p;
}

typedef struct {
    adamas_selector selector;
    adamas_dtype dtype;
    uint32_t n_heads, n_kv_heads, head_dim;
} decode_case;

ParameterizedTestParameters(decode, selected_rows_and_outputs_match_the_model)
{
    static decode_case cases[] = {
        {ADAMAS_SELECT_ADAMAS, ADAMAS_F32, 4, 2, 64},
        {ADAMAS_SELECT_ADAMAS, ADAMAS_F16, 8, 2, 128},
        {ADAMAS_SELECT_ADAMAS, ADAMAS_BF16, 3, 3, 32},
        {ADAMAS_SELECT_ADAMAS, ADAMAS_F32, 2, 1, 16},
        {ADAMAS_SELECT_ADAMAS, ADAMAS_F16, 2, 2, 256},
        {ADAMAS_SELECT_FULL, ADAMAS_F32, 4, 1, 64},
        {ADAMAS_SELECT_FULL, ADAMAS_F16, 2, 2, 128},
        {ADAMAS_SELECT_FULL, ADAMAS_BF16, 6, 3, 32},
        {ADAMAS_SELECT_ORACLE, ADAMAS_F32, 4, 2, 128},
        {ADAMAS_SELECT_ORACLE, ADAMAS_F16, 4, 4, 64},
        {ADAMAS_SELECT_ORACLE, ADAMAS_BF16, 8, 2, 16},
        {ADAMAS_SELECT_STREAMING, ADAMAS_F32, 4, 2, 64},
        {ADAMAS_SELECT_STREAMING, ADAMAS_F16, 2, 1, 32},
        {ADAMAS_SELECT_STREAMING, ADAMAS_BF16, 4, 4, 128},
        {ADAMAS_SELECT_QUEST, ADAMAS_F32, 4, 2, 64},
        {ADAMAS_SELECT_QUEST, ADAMAS_F16, 6, 2, 128},
        {ADAMAS_SELECT_QUEST, ADAMAS_BF16, 2, 2, 16},
    };
    return cr_make_param_array(decode_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(decode_case *dc, decode, selected_rows_and_outputs_match_the_model)
{
    cr_log_info("%s, %s, %u/%u heads, d = %u", selector_names[dc->selector],
                dtype_names[dc->dtype], dc->n_heads, dc->n_kv_heads, dc->head_dim);
    for (int trial = 0; trial < 4; trial++) {
        uint32_t n = 40 + rng_below(260), page = 1 + rng_below(24);
        adamas_cache_config cfg =
            random_config(dc->n_heads, dc->n_kv_heads, dc->head_dim, n + rng_below(30), dc->dtype);
        cfg.page_size = page;
        cache_pair pair;
        pair_create(&pair, &cfg);
        pair_append_random(&pair, n, 1.0f, 1.0f);
        for (int step = 0; step < 4; step++) {
            adamas_decode_params p = random_params(dc->selector, n, page, step == 3);
            float *q = random_query(&pair, 1.0f);
            pair_check_decode(&pair, &p, q);
            free(q);
        }
        pair_destroy(&pair);
    }
}

Test(decode, every_head_dim_matches_the_model)
{
    for (uint32_t d = 16; d <= 1024; d *= 2)
        for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
            uint32_t n = 30 + rng_below(100);
            adamas_cache_config cfg = random_config(2, 1, d, n, (adamas_dtype)rng_below(3));
            cache_pair pair;
            pair_create(&pair, &cfg);
            pair_append_random(&pair, n, 1.0f, 1.0f);
            adamas_decode_params p = random_params((adamas_selector)s, n, cfg.page_size, 0);
            float *q = random_query(&pair, 1.0f);
            pair_check_decode(&pair, &p, q);
            free(q);
            pair_destroy(&pair);
        }
}

Test(decode, error_bound_scales_with_the_magnitude_of_the_logits)
{
    /* Large keys and queries make sharp softmax weights and large logits: the f32
     * rounding of q.k grows with sum_i |q_i k_i|, and so does the bound. */
    const float scales[] = {0.01f, 0.3f, 3.0f, 12.0f};
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        uint32_t n = 100 + rng_below(300);
        adamas_cache_config cfg = random_config(4, 2, 64, n, ADAMAS_F32);
        cache_pair pair;
        pair_create(&pair, &cfg);
        pair_append_random(&pair, n, scales[i], 1.0f);
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_FULL, 0);
        float *q = random_query(&pair, scales[i]);
        pair_check_decode(&pair, &p, q);
        free(q);
        pair_destroy(&pair);
    }
}

Test(decode, a_cache_not_longer_than_the_budget_attends_to_every_token)
{
    for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
        uint32_t n = 1 + rng_below(50);
        adamas_cache_config cfg = random_config(4, 2, 32, 64, ADAMAS_F32);
        cache_pair pair;
        pair_create(&pair, &cfg);
        pair_append_random(&pair, n, 1.0f, 1.0f);
        /* budgets at or above n, even ones the forced set would reject for n > B */
        adamas_decode_params p = adamas_decode_params_default((adamas_selector)s, n + rng_below(3));
        p.sink = rng_below(2) ? 0 : 2 * p.budget;
        p.recent = rng_below(2) ? 1 : 2 * p.budget;
        float *q = random_query(&pair, 1.0f);
        pair_check_decode(&pair, &p, q);
        free(q);
        pair_destroy(&pair);
    }
}

Test(decode, full_attention_never_writes_selected)
{
    uint32_t n = 20 + rng_below(100);
    adamas_cache_config cfg = random_config(2, 2, 64, n, ADAMAS_F16);
    cache_pair pair;
    pair_create(&pair, &cfg);
    pair_append_random(&pair, n, 1.0f, 1.0f);
    /* any budget, below or above n; pair_check_decode checks the rows stay poisoned */
    const uint32_t budgets[] = {1, n / 2, n, n + 7};
    for (size_t i = 0; i < 4; i++) {
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_FULL, budgets[i]);
        float *q = random_query(&pair, 1.0f);
        pair_check_decode(&pair, &p, q);
        free(q);
    }
    pair_destroy(&pair);
}

Test(decode, query_head_h_reads_kv_head_h_over_the_group_size)
{
    /* Every value of kv head g is g + 1: the output of query head h is exactly
     * (h / group) + 1 wherever it attends. */
    const uint32_t n_kv = 1 + rng_below(4), group = 1 + rng_below(4), d = 32;
    const uint32_t n = 50 + rng_below(50);
    adamas_cache_config cfg = random_config(n_kv * group, n_kv, d, n, ADAMAS_F32);
    adamas_cache *c;
    expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "%s", adamas_last_error());
    float *k = malloc(sizeof(float) * n * n_kv * d), *v = malloc(sizeof(float) * n * n_kv * d);
    rng_fill_normal(k, (size_t)n * n_kv * d, 1.0f);
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t g = 0; g < n_kv; g++)
            for (uint32_t i = 0; i < d; i++)
                v[((size_t)t * n_kv + g) * d + i] = (float)(g + 1);
    expect(adamas_cache_append(c, k, v, n) == ADAMAS_OK, "%s", adamas_last_error());
    float *q = malloc(sizeof(float) * n_kv * group * d), *out = malloc(sizeof(float) * n_kv * group * d);
    rng_fill_normal(q, (size_t)n_kv * group * d, 1.0f);
    for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
        adamas_decode_params p = adamas_decode_params_default((adamas_selector)s, 20);
        expect(adamas_decode(c, &p, q, out, NULL) == ADAMAS_OK, "%s", adamas_last_error());
        for (uint32_t h = 0; h < n_kv * group; h++)
            for (uint32_t i = 0; i < d; i++)
                expect(fabsf(out[h * d + i] - (float)(h / group + 1)) <= 1e-6f * (h / group + 1),
                       "selector %d: out[%u][%u] = %g, expected %u (kv head %u)", s, h, i,
                       (double)out[h * d + i], h / group + 1, h / group);
    }
    free(q);
    free(out);
    free(k);
    free(v);
    adamas_cache_destroy(c);
}

Test(decode, stored_values_not_the_given_ones_are_attended)
{
    /* bf16 rounds keys and values by up to 2^-9 relative: attention over the given f32
     * values misses the tolerance, the model over the stored values meets it. */
    enum { D = 64 };
    const uint32_t n = 60 + rng_below(60);
    adamas_cache_config cfg = random_config(1, 1, D, n, ADAMAS_BF16), f32 = cfg;
    f32.kv_dtype = ADAMAS_F32;
    cache_pair pair;
    pair_create(&pair, &cfg);
    ref_cache unrounded;
    ref_cache_init(&unrounded, &f32);
    float *k = malloc(sizeof(float) * n * D), *v = malloc(sizeof(float) * n * D);
    rng_fill_normal(k, (size_t)n * D, 1.0f);
    rng_fill_normal(v, (size_t)n * D, 1.0f);
    pair_append(&pair, k, v, n);
    ref_cache_append(&unrounded, k, v, n);

    adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_FULL, 0);
    float *q = random_query(&pair, 1.0f);
    pair_check_decode(&pair, &p, q);

    float out[D];
    double given[D], l1, err = 0, norm = 0;
    uint32_t *set = malloc(n * sizeof *set);
    for (uint32_t t = 0; t < n; t++)
        set[t] = t;
    expect(adamas_decode(pair.lib, &p, q, out, NULL) == ADAMAS_OK, "%s", adamas_last_error());
    ref_attend(&unrounded, 0, q, set, n, given, &l1);
    for (int i = 0; i < D; i++) {
        err += (out[i] - given[i]) * (out[i] - given[i]);
        norm += given[i] * given[i];
    }
    expect(sqrt(err / norm) > attention_tolerance(l1),
           "decode is as close to attention over the unrounded values (%.3g) as to the stored",
           sqrt(err / norm));
    free(set);
    free(q);
    free(k);
    free(v);
    ref_cache_free(&unrounded);
    pair_destroy(&pair);
}

/* ------------------------------------------------------------ threads */

typedef struct {
    const adamas_cache *cache;
    const adamas_decode_params *params;
    const float *q;
    float *out;
    uint32_t *selected;
    int status;
} decode_job;

static void *run_decode(void *arg)
{
    decode_job *job = arg;
    for (int rep = 0; rep < 5 && job->status == ADAMAS_OK; rep++)
        job->status = adamas_decode(job->cache, job->params, job->q, job->out, job->selected);
    return NULL;
}

Test(decode, several_threads_decode_one_cache_at_once)
{
    enum { THREADS = 4, HEADS = 4, D = 64, BUDGET = 24 };
    uint32_t n = 200 + rng_below(200);
    adamas_cache_config cfg = random_config(HEADS, 2, D, n, ADAMAS_F16);
    cache_pair pair;
    pair_create(&pair, &cfg);
    pair_append_random(&pair, n, 1.0f, 1.0f);
    adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, BUDGET);
    p.rerank = 2;
    float *q = random_query(&pair, 1.0f);
    pair_check_decode(&pair, &p, q);

    float alone[HEADS * D];
    uint32_t alone_sel[HEADS * BUDGET];
    expect(adamas_decode(pair.lib, &p, q, alone, alone_sel) == ADAMAS_OK, "%s",
           adamas_last_error());
    static float outs[THREADS][HEADS * D];
    static uint32_t sels[THREADS][HEADS * BUDGET];
    decode_job jobs[THREADS];
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (decode_job){pair.lib, &p, q, outs[i], sels[i], ADAMAS_OK};
        expect(pthread_create(&tid[i], NULL, run_decode, &jobs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(tid[i], NULL);
        expect(jobs[i].status == ADAMAS_OK, "thread %d: %s", i, adamas_strerror(jobs[i].status));
        expect(memcmp(outs[i], alone, sizeof alone) == 0, "thread %d: output differs", i);
        expect(memcmp(sels[i], alone_sel, sizeof alone_sel) == 0, "thread %d: selection differs",
               i);
    }
    free(q);
    pair_destroy(&pair);
}

Test(decode, long_contexts_span_several_scan_and_attention_chunks)
{
    /* Beyond 4096 candidates the scan is split in chunks whose histograms merge, and
     * beyond 1024 attended tokens attention combines partial softmax sums: both must
     * give the model's set (heavy ties across chunk edges included) and output.
     * Adamas takes several steps on one workspace: a chunk clears its histograms only
     * up to its limits, so the bins above hold the last step's counts. */
    const uint32_t n = 4096 + 1024 + rng_below(4000);
    for (int heavy_ties = 0; heavy_ties < 2; heavy_ties++) {
        adamas_cache_config cfg = heavy_ties ? adamas_cache_config_default(4, 2, 16, n)
                                             : random_config(4, 2, 32, n, ADAMAS_F16);
        cache_pair pair;
        pair_create(&pair, &cfg);
        pair_append_random(&pair, n, 1.0f, 1.0f);
        for (int step = 0; step < 8; step++) { /* four Adamas steps, then the others */
            const adamas_selector s = step < 4 ? ADAMAS_SELECT_ADAMAS : (adamas_selector)(step - 3);
            adamas_decode_params p = adamas_decode_params_default(s, 0);
            p.page_size = 0;
            p.sink = rng_below(8);
            p.recent = 1 + rng_below(8);
            p.rerank = s == ADAMAS_SELECT_ADAMAS ? rng_below(4) : 0;
            /* sparse sets both below and above one attention chunk */
            p.budget = (rng_below(2) ? 1100 + rng_below(2000) : 32 + rng_below(200));
            float *q = random_query(&pair, 1.0f);
            pair_check_decode(&pair, &p, q);
            free(q);
        }
        pair_destroy(&pair);
    }
}

Test(decode, every_isa_matches_the_model)
{
    /* ranking is bit-identical across ISAs: every kernel table selects the model's set */
    const char *isas[] = {"scalar", "avx2", "avx512", "neon"};
    uint32_t n = 300 + rng_below(300);
    adamas_cache_config cfg = random_config(4, 2, 64, n, (adamas_dtype)rng_below(3));
    cfg.metric = (adamas_metric)rng_below(2);
    cache_pair pair;
    pair_create(&pair, &cfg);
    pair_append_random(&pair, n, 1.0f, 1.0f);
    float *q = random_query(&pair, 1.0f);
    for (int k = 0; k < 4; k++) {
        if (!adamas_isa_available(isas[k]))
            continue;
        expect(adamas_set_isa(isas[k]) == ADAMAS_OK, "%s: %s", isas[k], adamas_last_error());
        cr_log_info("isa %s", isas[k]);
        for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
            adamas_decode_params p = adamas_decode_params_default((adamas_selector)s, 40);
            p.rerank = s == ADAMAS_SELECT_ADAMAS ? 3 : 0;
            pair_check_decode(&pair, &p, q);
        }
    }
    free(q);
    pair_destroy(&pair);
}

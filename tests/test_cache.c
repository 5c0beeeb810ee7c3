/* test_cache.c - the KV cache: configuration, appends, what is stored (values rounded
 * to the dtype, codes from the keys as given), against the reference model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "cache_pair.h"
#include "testutil.h"

TestSuite(cache, .init = rng_seed_from_env);

Test(cache, config_defaults_are_the_documented_ones)
{
    uint32_t hq = 1 + rng_below(64), hkv = 1 + rng_below(8), d = 16u << rng_below(7),
             max = 1 + rng_below(100000);
    adamas_cache_config cfg = adamas_cache_config_default(hq, hkv, d, max);
    expect(cfg.n_heads == hq && cfg.n_kv_heads == hkv && cfg.head_dim == d &&
               cfg.max_tokens == max,
           "shape not kept");
    expect(cfg.kv_dtype == ADAMAS_F32, "kv_dtype %d", (int)cfg.kv_dtype);
    expect(cfg.metric == ADAMAS_METRIC_L1, "metric %d", (int)cfg.metric);
    expect(cfg.page_size == 16, "page_size %u", cfg.page_size);
    for (int j = 0; j < 3; j++) {
        const float want[3] = {-10.0f, 0.0f, 10.0f};
        expect(cfg.q_thresholds[j] == want[j] && cfg.k_thresholds[j] == want[j],
               "threshold %d: q %g k %g", j, (double)cfg.q_thresholds[j],
               (double)cfg.k_thresholds[j]);
    }
    for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
        uint32_t budget = rng_below(1000);
        adamas_decode_params p = adamas_decode_params_default((adamas_selector)s, budget);
        expect(p.selector == (adamas_selector)s && p.budget == budget, "selector %d", s);
        expect(p.sink == (s == ADAMAS_SELECT_STREAMING ? 4u : 0u), "selector %d: sink %u", s,
               p.sink);
        expect(p.recent == 1 && p.page_size == 16 && p.rerank == 0,
               "selector %d: recent %u page_size %u rerank %u", s, p.recent, p.page_size, p.rerank);
    }
}

Test(cache, get_config_returns_the_creation_config_and_thresholds_start_from_it)
{
    adamas_cache_config cfg = random_config(6, 3, 64, 100, ADAMAS_BF16);
    cfg.metric = ADAMAS_METRIC_XORW;
    cfg.page_size = 1 + rng_below(40);
    adamas_cache *c;
    expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "%s", adamas_last_error());
    adamas_cache_config got = adamas_cache_get_config(c);
    expect(memcmp(&got, &cfg, sizeof cfg) == 0, "adamas_cache_get_config differs");
    expect(adamas_cache_len(c) == 0, "new cache has %u tokens", adamas_cache_len(c));
    for (uint32_t g = 0; g < 3; g++) {
        float th[3];
        expect(adamas_cache_key_thresholds(c, g, th) == ADAMAS_OK, "%s", adamas_last_error());
        expect(memcmp(th, cfg.k_thresholds, sizeof th) == 0, "kv head %u thresholds", g);
    }
    adamas_cache_destroy(c);
}

Test(cache, codes_come_from_the_given_keys_and_the_rest_from_the_stored_ones)
{
    for (int dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++) {
        uint32_t n = 150 + rng_below(150);
        adamas_cache_config cfg = random_config(4, 2, 64, n, (adamas_dtype)dtype);
        /* thresholds where the data is dense, so that rounding moves some codes */
        const float th[3] = {-0.5f, 0.0f, 0.5f};
        memcpy(cfg.k_thresholds, th, sizeof th);
        cache_pair pair;
        pair_create(&pair, &cfg);
        pair_append_random(&pair, n, 1.0f, 1.0f);
        pair_check_codes(&pair);

        if (dtype == ADAMAS_BF16) {
            /* the check above tells the two apart: encoding the stored keys differs (for
             * bf16 in dozens of places; f16 rounds too finely to be sure of one) */
            uint32_t moved = 0;
            uint8_t code[64];
            for (uint32_t t = 0; t < n; t++)
                for (uint32_t g = 0; g < 2; g++) {
                    float x[64];
                    memcpy(x, ref_key(&pair.ref, t, g), sizeof x);
                    ref_hadamard(x, 64);
                    ref_bucketize(x, 64, th, code);
                    moved += memcmp(code, ref_code(&pair.ref, t, g), 64) != 0;
                }
            expect(moved > 0, "dtype %d: no code changes with rounding; the data is too easy",
                   dtype);
        }
        /* Quest bounds, oracle logits and attention read the stored keys */
        const adamas_selector sels[] = {ADAMAS_SELECT_QUEST, ADAMAS_SELECT_ORACLE,
                                        ADAMAS_SELECT_ADAMAS};
        for (int s = 0; s < 3; s++) {
            adamas_decode_params p = adamas_decode_params_default(sels[s], 40 + rng_below(40));
            p.rerank = 3;
            float *q = random_query(&pair, 1.0f);
            pair_check_decode(&pair, &p, q);
            free(q);
        }
        pair_destroy(&pair);
    }
}

Test(cache, one_token_attends_to_its_stored_value_exactly)
{
    /* softmax over one token is 1: out = the value as stored, bit for bit */
    for (int dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++) {
        const uint32_t d = 16u << rng_below(7);
        adamas_cache_config cfg = adamas_cache_config_default(1, 1, d, 1);
        cfg.kv_dtype = (adamas_dtype)dtype;
        adamas_cache *c;
        expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "%s", adamas_last_error());
        float k[1024], v[1024], q[1024], out[1024];
        rng_fill_normal(k, d, 1.0f);
        rng_fill_normal(v, d, 100.0f);
        rng_fill_normal(q, d, 1.0f);
        expect(adamas_cache_append(c, k, v, 1) == ADAMAS_OK, "%s", adamas_last_error());
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_FULL, 0);
        expect(adamas_decode(c, &p, q, out, NULL) == ADAMAS_OK, "%s", adamas_last_error());
        for (uint32_t i = 0; i < d; i++) {
            float want = ref_round_dtype(v[i], (adamas_dtype)dtype);
            expect(memcmp(&out[i], &want, sizeof want) == 0, "dtype %d: out[%u] = %a, stored %a",
                   dtype, i, (double)out[i], (double)want);
        }
        adamas_cache_destroy(c);
    }
}

Test(cache, appending_in_chunks_equals_appending_at_once)
{
    const uint32_t n = 100 + rng_below(200), d = 32;
    adamas_cache_config cfg = random_config(4, 2, d, n, ADAMAS_F16);
    cfg.page_size = 1 + rng_below(20);
    adamas_cache *whole, *chunked;
    expect(adamas_cache_create(&cfg, &whole) == ADAMAS_OK, "%s", adamas_last_error());
    expect(adamas_cache_create(&cfg, &chunked) == ADAMAS_OK, "%s", adamas_last_error());
    size_t per_token = 2 * d;
    float *k = malloc(sizeof(float) * n * per_token), *v = malloc(sizeof(float) * n * per_token);
    rng_fill_normal(k, n * per_token, 1.0f);
    rng_fill_normal(v, n * per_token, 1.0f);
    expect(adamas_cache_append(whole, k, v, n) == ADAMAS_OK, "%s", adamas_last_error());
    for (uint32_t t = 0; t < n;) {
        uint32_t chunk = 1 + rng_below(n - t < 17 ? n - t : 17);
        if (rng_below(4) == 0) /* empty appends in between change nothing */
            expect(adamas_cache_append(chunked, NULL, NULL, 0) == ADAMAS_OK, "%s",
                   adamas_last_error());
        expect(adamas_cache_append(chunked, k + t * per_token, v + t * per_token, chunk) ==
                   ADAMAS_OK,
               "%s", adamas_last_error());
        t += chunk;
        expect(adamas_cache_len(chunked) == t, "length %u, expected %u", adamas_cache_len(chunked),
               t);
    }
    for (uint32_t g = 0; g < 2; g++)
        for (uint32_t t = 0; t < n; t++) {
            uint64_t a[2], b[2];
            expect(adamas_cache_code(whole, g, t, a) == ADAMAS_OK, "%s", adamas_last_error());
            expect(adamas_cache_code(chunked, g, t, b) == ADAMAS_OK, "%s", adamas_last_error());
            expect(memcmp(a, b, sizeof a) == 0, "kv head %u token %u: codes differ", g, t);
        }
    float q[4 * 32], out_a[4 * 32], out_b[4 * 32];
    rng_fill_normal(q, 4 * d, 1.0f);
    for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
        adamas_decode_params p = adamas_decode_params_default((adamas_selector)s, cfg.page_size + 20);
        p.page_size = 0;
        uint32_t sel_a[4 * 64], sel_b[4 * 64];
        expect(adamas_decode(whole, &p, q, out_a, sel_a) == ADAMAS_OK, "%s", adamas_last_error());
        expect(adamas_decode(chunked, &p, q, out_b, sel_b) == ADAMAS_OK, "%s", adamas_last_error());
        expect(memcmp(out_a, out_b, sizeof out_a) == 0, "selector %d: outputs differ", s);
        if (s != ADAMAS_SELECT_FULL)
            expect(memcmp(sel_a, sel_b, 4 * p.budget * sizeof *sel_a) == 0,
                   "selector %d: selections differ", s);
    }
    free(k);
    free(v);
    adamas_cache_destroy(whole);
    adamas_cache_destroy(chunked);
}

Test(cache, a_full_cache_decodes_and_keeps_its_tokens)
{
    const uint32_t max = 30 + rng_below(100);
    adamas_cache_config cfg = random_config(2, 1, 64, max, ADAMAS_BF16);
    cache_pair pair;
    pair_create(&pair, &cfg);
    pair_append_random(&pair, max, 1.0f, 1.0f);
    expect(adamas_cache_len(pair.lib) == max, "length %u", adamas_cache_len(pair.lib));
    pair_check_codes(&pair);
    for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
        adamas_decode_params p = adamas_decode_params_default((adamas_selector)s, 20);
        float *q = random_query(&pair, 1.0f);
        pair_check_decode(&pair, &p, q);
        free(q);
    }
    pair_destroy(&pair);
}

Test(cache, largest_storable_values_are_accepted_and_larger_ones_refused)
{
    rng_seed_from_env();
    /* f16 tops out at 65504 (65520 rounds to infinity); bf16 and f32 reach beyond the
     * library's magnitude limit, which then bounds them */
    const float limit = ADAMAS_MAX_MAGNITUDE;
    const struct {
        adamas_dtype dtype;
        float largest, refused;
    } cases[] = {{ADAMAS_F16, 65504.0f, 65520.0f},
                 {ADAMAS_F16, nextafterf(65520.0f, 0.0f), 65520.0f},
                 {ADAMAS_BF16, limit, nextafterf(limit, INFINITY)},
                 {ADAMAS_F32, limit, nextafterf(limit, INFINITY)},
                 {ADAMAS_F32, limit, 3e38f}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        adamas_cache_config cfg = adamas_cache_config_default(1, 1, 16, 4);
        cfg.kv_dtype = cases[i].dtype;
        adamas_cache *c;
        expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "%s", adamas_last_error());
        float k[16] = {0}, v[16] = {0};
        float sign = rng_below(2) ? 1.0f : -1.0f;
        float *target = rng_below(2) ? v : k;
        size_t at = rng_below(16);
        target[at] = sign * cases[i].largest;
        int st = adamas_cache_append(c, k, v, 1);
        expect(st == ADAMAS_OK, "dtype %d, value %a: %s", (int)cases[i].dtype,
               (double)target[at], adamas_last_error());
        target[at] = sign * cases[i].refused;
        st = adamas_cache_append(c, k, v, 1);
        expect(st == ADAMAS_EINVAL, "dtype %d, value %a accepted", (int)cases[i].dtype,
               (double)target[at]);
        expect(adamas_cache_len(c) == 1, "length %u", adamas_cache_len(c));
        adamas_cache_destroy(c);
    }
}

Test(cache, distances_are_the_code_distances_a_decode_step_ranks_by)
{
    for (int trial = 0; trial < 6; trial++) {
        const uint32_t n = 1 + rng_below(200), n_kv = 1 + rng_below(3), group = 1 + rng_below(3);
        const uint32_t d = 16u << rng_below(5);
        adamas_cache_config cfg = random_config(n_kv * group, n_kv, d, n, (adamas_dtype)rng_below(3));
        cfg.metric = (adamas_metric)(trial % 2);
        cache_pair pair;
        pair_create(&pair, &cfg);
        pair_append_random(&pair, n, 1.0f, 1.0f);
        if (trial >= 3)
            pair_calibrate(&pair, rng_uniform(0.3f, 1.2f)); /* per-step query thresholds */
        float *q = random_query(&pair, 1.0f);
        uint16_t *dist = malloc((n + 1) * sizeof *dist);
        uint8_t qcode[512];
        for (uint32_t h = 0; h < n_kv * group; h++) {
            poison(dist, (n + 1) * sizeof *dist);
            int st = adamas_cache_distances(pair.lib, q + (size_t)h * d, h, dist);
            expect(st == ADAMAS_OK, "%s", adamas_last_error());
            ref_query_code(&pair.ref, q + (size_t)h * d, qcode);
            for (uint32_t t = 0; t < n; t++) {
                const uint8_t *kc = ref_code(&pair.ref, t, h / group);
                uint32_t want = cfg.metric == ADAMAS_METRIC_XORW ? ref_xorw(qcode, kc, d)
                                                                 : ref_l1(qcode, kc, d);
                expect(dist[t] == want, "head %u token %u: distance %u, expected %u", h, t,
                       dist[t], want);
            }
            uint16_t untouched;
            poison(&untouched, sizeof untouched);
            expect(dist[n] == untouched, "wrote past dist[%u]", n);
        }
        free(dist);
        free(q);
        pair_destroy(&pair);
    }
}

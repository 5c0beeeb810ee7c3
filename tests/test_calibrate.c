/* test_calibrate.c - adamas_cache_calibrate (DESIGN §2 "Threshold calibration"):
 * per-head key thresholds from the RMS of the transformed stored keys, stored codes
 * re-encoded, later appends encoded with them, per-step query thresholds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "cache_pair.h"
#include "testutil.h"

TestSuite(calibrate, .init = rng_seed_from_env);

/* Random tokens whose kv head g has keys of standard deviation scale * (g + 1). */
static void append_scaled_heads(cache_pair *pair, uint32_t n, float scale)
{
    const uint32_t n_kv = pair->ref.cfg.n_kv_heads, d = pair->ref.cfg.head_dim;
    const size_t per_token = pair->ref.token_floats;
    float *k = malloc(sizeof(float) * n * per_token), *v = malloc(sizeof(float) * n * per_token);
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t g = 0; g < n_kv; g++)
            rng_fill_normal(k + t * per_token + (size_t)g * d, d, scale * (float)(g + 1));
    rng_fill_normal(v, n * per_token, 1.0f);
    pair_append(pair, k, v, n);
    free(k);
    free(v);
}

Test(calibrate, key_thresholds_are_tau_times_the_rms_of_each_heads_transformed_keys)
{
    for (int dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++)
        for (uint32_t d = 16; d <= 1024; d *= 4) {
            uint32_t n = 20 + rng_below(150), n_kv = 1 + rng_below(4);
            adamas_cache_config cfg = random_config(n_kv, n_kv, d, n, (adamas_dtype)dtype);
            cache_pair pair;
            pair_create(&pair, &cfg);
            append_scaled_heads(&pair, n, rng_uniform(0.05f, 20.0f));
            float tau = rng_below(2) ? 0.6745f : rng_uniform(0.1f, 3.0f);
            pair_calibrate(&pair, tau);
            /* bit-exact thresholds per head, and every stored code re-encoded */
            pair_check_codes(&pair);
            /* the RMS follows each head's scale: head g's edge is about (g + 1) times head 0's */
            float th0[3];
            expect(adamas_cache_key_thresholds(pair.lib, 0, th0) == ADAMAS_OK, "%s",
                   adamas_last_error());
            for (uint32_t g = 1; g < n_kv; g++) {
                float th[3];
                expect(adamas_cache_key_thresholds(pair.lib, g, th) == ADAMAS_OK, "%s",
                       adamas_last_error());
                double ratio = th[2] / th0[2];
                expect(fabs(ratio / (g + 1) - 1) < 0.25, "kv head %u: edge ratio %.3f, expected ~%u",
                       g, ratio, g + 1);
                expect(th[0] == -th[2] && th[1] == 0.0f, "kv head %u: {%g, %g, %g}", g,
                       (double)th[0], (double)th[1], (double)th[2]);
            }
            pair_destroy(&pair);
        }
}

Test(calibrate, later_appends_encode_with_the_calibrated_thresholds)
{
    for (int dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++) {
        uint32_t n = 30 + rng_below(100), more = 1 + rng_below(100);
        adamas_cache_config cfg = random_config(4, 2, 64, n + more, (adamas_dtype)dtype);
        cache_pair pair;
        pair_create(&pair, &cfg);
        append_scaled_heads(&pair, n, 0.5f);
        pair_calibrate(&pair, 0.6745f);
        append_scaled_heads(&pair, more, 0.5f);
        pair_check_codes(&pair);
        pair_destroy(&pair);
    }
}

Test(calibrate, calibrating_again_uses_every_stored_key)
{
    uint32_t n = 30 + rng_below(100), more = 30 + rng_below(100);
    adamas_cache_config cfg = random_config(2, 2, 32, n + more, ADAMAS_F16);
    cache_pair pair;
    pair_create(&pair, &cfg);
    append_scaled_heads(&pair, n, 1.0f);
    pair_calibrate(&pair, 0.6745f);
    append_scaled_heads(&pair, more, 4.0f); /* louder keys raise the RMS */
    float before[3], after[3];
    expect(adamas_cache_key_thresholds(pair.lib, 0, before) == ADAMAS_OK, "%s",
           adamas_last_error());
    pair_calibrate(&pair, 1.5f);
    pair_check_codes(&pair);
    expect(adamas_cache_key_thresholds(pair.lib, 0, after) == ADAMAS_OK, "%s", adamas_last_error());
    expect(after[2] > before[2], "edge %g did not grow from %g", (double)after[2],
           (double)before[2]);
    pair_destroy(&pair);
}

Test(calibrate, queries_switch_to_per_step_thresholds_as_the_model_predicts)
{
    /* Before: fixed thresholds {-10, 0, 10} leave unit-scale codes at 1 or 2.  After:
     * four levels per step; the selections follow the model both times and change. */
    uint32_t changed = 0;
    for (int trial = 0; trial < 3; trial++) {
        const uint32_t n = 200 + rng_below(200), heads = 4;
        adamas_cache_config cfg = adamas_cache_config_default(heads, 2, 64, n);
        cfg.kv_dtype = (adamas_dtype)rng_below(3);
        cache_pair pair;
        pair_create(&pair, &cfg);
        pair_append_random(&pair, n, 1.0f, 1.0f);
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 16 + rng_below(32));
        p.rerank = trial == 2 ? 2 : 0;
        float *q = random_query(&pair, 1.0f);
        uint32_t *before = malloc(sizeof *before * heads * p.budget);
        uint32_t *after = malloc(sizeof *after * heads * p.budget);
        float *out = malloc(sizeof *out * heads * 64);
        pair_check_decode(&pair, &p, q);
        expect(adamas_decode(pair.lib, &p, q, out, before) == ADAMAS_OK, "%s", adamas_last_error());
        pair_calibrate(&pair, 0.6745f);
        pair_check_decode(&pair, &p, q);
        expect(adamas_decode(pair.lib, &p, q, out, after) == ADAMAS_OK, "%s", adamas_last_error());
        changed += memcmp(before, after, sizeof *after * heads * p.budget) != 0;
        free(out);
        free(before);
        free(after);
        free(q);
        pair_destroy(&pair);
    }
    expect(changed > 0, "calibration never changed a selection");
}

Test(calibrate, per_step_query_thresholds_make_the_selection_scale_invariant)
{
    /* r scales with the query: q and 2^s q get the same code, the same selection. */
    const uint32_t n = 150 + rng_below(150), heads = 2, d = 128;
    adamas_cache_config cfg = random_config(heads, 1, d, n, ADAMAS_F32);
    cache_pair pair;
    pair_create(&pair, &cfg);
    pair_append_random(&pair, n, 1.0f, 1.0f);
    pair_calibrate(&pair, rng_uniform(0.3f, 1.5f));
    adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 30);
    float *q = random_query(&pair, 1.0f), *loud = random_query(&pair, 1.0f);
    float power = ldexpf(1.0f, 1 + (int)rng_below(10));
    for (uint32_t i = 0; i < heads * d; i++)
        loud[i] = q[i] * power;
    pair_check_decode(&pair, &p, q);
    pair_check_decode(&pair, &p, loud);
    uint32_t sel_q[2 * 30], sel_loud[2 * 30];
    float out[2 * 128];
    expect(adamas_decode(pair.lib, &p, q, out, sel_q) == ADAMAS_OK, "%s", adamas_last_error());
    expect(adamas_decode(pair.lib, &p, loud, out, sel_loud) == ADAMAS_OK, "%s", adamas_last_error());
    expect(memcmp(sel_q, sel_loud, sizeof sel_q) == 0,
           "scaling the query by %g changed the calibrated selection", (double)power);
    free(q);
    free(loud);
    pair_destroy(&pair);
}

Test(calibrate, every_selector_matches_the_model_after_calibration)
{
    const uint32_t n = 100 + rng_below(200);
    adamas_cache_config cfg = random_config(6, 3, 64, n, (adamas_dtype)rng_below(3));
    cfg.metric = (adamas_metric)rng_below(2);
    cache_pair pair;
    pair_create(&pair, &cfg);
    append_scaled_heads(&pair, n, 0.7f);
    pair_calibrate(&pair, 0.6745f);
    for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
        adamas_decode_params p = adamas_decode_params_default((adamas_selector)s, 17 + rng_below(40));
        p.rerank = rng_below(3);
        float *q = random_query(&pair, 1.0f);
        pair_check_decode(&pair, &p, q);
        free(q);
    }
    pair_destroy(&pair);
}

Test(calibrate, an_all_zero_query_gets_all_zero_codes)
{
    /* r = 0 gives thresholds {-0, 0, 0}: every coordinate of H0 = 0 is in bucket 0, so
     * the distances are the key codes' weights and the model still predicts the set. */
    const uint32_t n = 60 + rng_below(60);
    adamas_cache_config cfg = random_config(2, 1, 32, n, ADAMAS_F32);
    cache_pair pair;
    pair_create(&pair, &cfg);
    pair_append_random(&pair, n, 1.0f, 1.0f);
    pair_calibrate(&pair, 0.6745f);
    float q[2 * 32] = {0};
    adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 20);
    pair_check_decode(&pair, &p, q);
    pair_destroy(&pair);
}

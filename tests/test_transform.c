/* test_transform.c - codes of raw vectors (adamas_cache_config.transform = NONE), the
 * paper's ablation without the Hadamard rotation, against the reference codes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "reference.h"
#include "testutil.h"

TestSuite(transform, .init = rng_seed_from_env);

/* Keys of scale 8 with an outlier channel, so that every bucket of {-10, 0, 10} is hit. */
static float *random_keys(uint32_t n, uint32_t n_kv, uint32_t d)
{
    size_t count = (size_t)n * n_kv * d;
    float *k = malloc(count * sizeof *k);
    rng_fill_normal(k, count, 8.0f);
    for (size_t i = 0; i < count; i++)
        if (i % d == 3)
            k[i] += 30.0f;
    return k;
}

static adamas_cache *raw_cache(uint32_t n_heads, uint32_t n_kv, uint32_t d, uint32_t n,
                               adamas_dtype dtype, const float *k, const float *v)
{
    adamas_cache_config cfg = adamas_cache_config_default(n_heads, n_kv, d, n);
    cfg.kv_dtype = dtype;
    cfg.transform = ADAMAS_TRANSFORM_NONE;
    adamas_cache *c = NULL;
    int st = adamas_cache_create(&cfg, &c);
    expect(st == ADAMAS_OK, "adamas_cache_create: %s", adamas_last_error());
    st = adamas_cache_append(c, k, v, n);
    expect(st == ADAMAS_OK, "adamas_cache_append: %s", adamas_last_error());
    return c;
}

/* Planar code of x[d] with thresholds th, by the reference. */
static void ref_code_of(const float *x, size_t d, const float th[3], uint64_t *code)
{
    uint8_t per_dim[ADAMAS_MAX_HEAD_DIM];
    ref_bucketize(x, d, th, per_dim);
    ref_pack_planar(per_dim, d, code);
}

Test(transform, the_default_is_the_hadamard_rotation)
{
    adamas_cache_config cfg = adamas_cache_config_default(4, 2, 64, 10);
    expect(cfg.transform == ADAMAS_TRANSFORM_HADAMARD, "default transform = %d",
           (int)cfg.transform);
}

Test(transform, an_unknown_transform_is_rejected)
{
    adamas_cache_config cfg = adamas_cache_config_default(4, 2, 64, 10);
    cfg.transform = (adamas_transform)2;
    adamas_cache *c = NULL;
    int st = adamas_cache_create(&cfg, &c);
    expect(st == ADAMAS_EINVAL && c == NULL, "status %d", st);
    expect(strstr(adamas_last_error(), "transform") != NULL, "message: %s", adamas_last_error());
}

Test(transform, none_stores_the_codes_of_the_raw_keys)
{
    for (uint32_t d = 16; d <= 1024; d *= 4)
        for (int dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++) {
            const uint32_t n = 40, n_kv = 2;
            float *k = random_keys(n, n_kv, d), *v = random_keys(n, n_kv, d);
            adamas_cache *c = raw_cache(4, n_kv, d, n, (adamas_dtype)dtype, k, v);
            const float th[3] = {-10.0f, 0.0f, 10.0f};
            uint64_t got[32], want[32];
            size_t words = adamas_code_words(d);
            for (uint32_t t = 0; t < n; t++)
                for (uint32_t g = 0; g < n_kv; g++) {
                    expect(adamas_cache_code(c, g, t, got) == ADAMAS_OK, "%s",
                           adamas_last_error());
                    ref_code_of(k + ((size_t)t * n_kv + g) * d, d, th, want);
                    expect(!memcmp(got, want, words * sizeof *got),
                           "d=%u dtype=%d token %u head %u: code differs", d, dtype, t, g);
                }
            adamas_cache_destroy(c);
            free(k);
            free(v);
        }
}

Test(transform, none_selects_by_the_codes_of_the_raw_query_and_keys)
{
    const uint32_t n = 300, n_heads = 4, n_kv = 2, d = 128;
    float *k = random_keys(n, n_kv, d), *v = random_keys(n, n_kv, d);
    adamas_cache *c = raw_cache(n_heads, n_kv, d, n, ADAMAS_F32, k, v);
    const float th[3] = {-10.0f, 0.0f, 10.0f};
    float q[4 * 128], out[4 * 128];
    rng_fill_normal(q, n_heads * d, 12.0f);

    for (int trial = 0; trial < 4; trial++) {
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 0);
        p.sink = rng_below(5);
        p.recent = 1 + rng_below(5);
        p.budget = p.sink + p.recent + 1 + rng_below(100);
        uint32_t *rows = malloc(sizeof *rows * n_heads * p.budget);
        int st = adamas_decode(c, &p, q, out, rows);
        expect(st == ADAMAS_OK, "adamas_decode: %s", adamas_last_error());

        uint32_t dist[300], pick[300], want[300];
        uint8_t qc[128];
        for (uint32_t h = 0; h < n_heads; h++) {
            uint32_t g = h / (n_heads / n_kv), m = 0;
            ref_bucketize(q + (size_t)h * d, d, th, qc);
            uint32_t first = p.sink, n_cand = n - p.sink - p.recent;
            for (uint32_t i = 0; i < n_cand; i++) {
                uint8_t kc[128];
                ref_bucketize(k + ((size_t)(first + i) * n_kv + g) * d, d, th, kc);
                dist[i] = ref_l1(qc, kc, d);
            }
            uint32_t k_free = p.budget - p.sink - p.recent;
            ref_smallest_u32(dist, n_cand, k_free, pick);
            for (uint32_t t = 0; t < p.sink; t++)
                want[m++] = t;
            for (uint32_t i = 0; i < k_free; i++)
                want[m++] = first + pick[i];
            for (uint32_t t = n - p.recent; t < n; t++)
                want[m++] = t;
            expect(m == p.budget, "m=%u", m);
            for (uint32_t i = 0; i < m; i++)
                expect(rows[(size_t)h * p.budget + i] == want[i],
                       "head %u slot %u: %u, want %u (budget %u, sink %u, recent %u)", h, i,
                       rows[(size_t)h * p.budget + i], want[i], p.budget, p.sink, p.recent);
        }
        free(rows);
    }
    adamas_cache_destroy(c);
    free(k);
    free(v);
}

Test(transform, none_calibrates_from_the_rms_of_the_raw_keys)
{
    const uint32_t n = 64, n_kv = 2, d = 64;
    float *k = random_keys(n, n_kv, d), *v = random_keys(n, n_kv, d);
    adamas_cache *c = raw_cache(4, n_kv, d, n, ADAMAS_F32, k, v);
    const float tau = 0.6745f;
    expect(adamas_cache_calibrate(c, tau) == ADAMAS_OK, "%s", adamas_last_error());
    for (uint32_t g = 0; g < n_kv; g++) {
        double sum_sq = 0.0;
        for (uint32_t t = 0; t < n; t++)
            for (uint32_t i = 0; i < d; i++) {
                double x = k[((size_t)t * n_kv + g) * d + i];
                sum_sq += x * x;
            }
        double edge = tau * sqrt(sum_sq / (n * d));
        float th[3];
        expect(adamas_cache_key_thresholds(c, g, th) == ADAMAS_OK, "%s", adamas_last_error());
        expect(fabs(th[2] - edge) <= 1e-5 * edge && th[0] == -th[2] && th[1] == 0.0f,
               "head %u: thresholds {%g, %g, %g}, want +-%g", g, th[0], th[1], th[2], edge);
        uint64_t got[2], want[2];
        for (uint32_t t = 0; t < n; t++) {
            expect(adamas_cache_code(c, g, t, got) == ADAMAS_OK, "%s", adamas_last_error());
            ref_code_of(k + ((size_t)t * n_kv + g) * d, d, th, want);
            expect(!memcmp(got, want, sizeof got), "head %u token %u: code differs", g, t);
        }
    }
    adamas_cache_destroy(c);
    free(k);
    free(v);
}

/* test_backend.c - choosing the backend, and per-token code distances. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache_pair.h"
#include "testutil.h"

Test(backend, cpu_is_the_default_and_unknown_names_are_rejected)
{
    rng_seed_from_env();
    unsetenv("ADAMAS_BACKEND");
    expect(strcmp(adamas_backend_name(), "cpu") == 0, "default backend %s", adamas_backend_name());
    expect(adamas_set_backend("tpu") == ADAMAS_EINVAL, "unknown backend accepted");
    expect(strstr(adamas_last_error(), "tpu") != NULL, "message: %s", adamas_last_error());
    expect(strcmp(adamas_backend_name(), "cpu") == 0, "a failed choice changed the backend");
    expect(adamas_set_backend("auto") == ADAMAS_OK, "auto always resolves");
    const char *name = adamas_backend_name();
    expect(!strcmp(name, "cpu") || !strcmp(name, "cuda"), "auto gave %s", name);
    expect(adamas_set_backend(NULL) == ADAMAS_OK && !strcmp(adamas_backend_name(), "cpu"),
           "NULL means cpu");
}

Test(backend, asking_for_cuda_without_a_device_is_a_clear_error)
{
    rng_seed_from_env();
    int st = adamas_set_backend("cuda");
    if (st == ADAMAS_OK)
        cr_skip_test("a CUDA device is present: the GPU suite covers this machine");
    expect(st == ADAMAS_ENOTSUP, "cuda without a device: %s", adamas_strerror(st));
    expect(strstr(adamas_last_error(), "cuda") != NULL, "message: %s", adamas_last_error());
    expect(strcmp(adamas_backend_name(), "cpu") == 0, "the backend changed to %s",
           adamas_backend_name());
}

Test(backend, a_bad_environment_variable_fails_cache_creation_with_its_name)
{
    rng_seed_from_env();
    setenv("ADAMAS_BACKEND", "quantum", 1);
    adamas_cache_config cfg = adamas_cache_config_default(2, 1, 32, 8);
    adamas_cache *c = (adamas_cache *)&cfg; /* must stay untouched */
    expect(adamas_cache_create(&cfg, &c) == ADAMAS_EINVAL, "bad ADAMAS_BACKEND accepted");
    expect(c == (adamas_cache *)&cfg, "out written on failure");
    expect(strstr(adamas_last_error(), "ADAMAS_BACKEND") != NULL, "message: %s",
           adamas_last_error());
    expect(strcmp(adamas_backend_name(), "none") == 0, "name %s", adamas_backend_name());
    setenv("ADAMAS_BACKEND", "cpu", 1);
    expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "create after fixing the variable");
    expect(strcmp(adamas_cache_backend(c), "cpu") == 0, "cache backend %s",
           adamas_cache_backend(c));
    expect(strcmp(adamas_cache_backend(NULL), "") == 0, "backend of NULL");
    adamas_cache_destroy(c);
}

Test(distances, equal_the_l1_or_xorw_of_the_reference_codes_for_every_token)
{
    rng_seed_from_env();
    for (int round = 0; round < 12; round++) {
        uint32_t d = 16u << rng_below(6), n_kv = 1 + rng_below(3), group = 1 + rng_below(3);
        adamas_cache_config cfg =
            random_config(n_kv * group, n_kv, d, 300, (adamas_dtype)rng_below(3));
        cfg.metric = (adamas_metric)rng_below(2);
        cache_pair p;
        pair_create(&p, &cfg);
        pair_append_random(&p, 1 + rng_below(299), 1.5f, 1.0f);
        if (round % 3 == 2)
            pair_calibrate(&p, 0.3f + rng_uniform(0.0f, 1.0f));
        float *q = random_query(&p, 1.0f);
        uint32_t n = adamas_cache_len(p.lib);
        uint16_t *dist = malloc((n + 1) * sizeof *dist);
        uint8_t *qcode = malloc(d);
        for (uint32_t h = 0; h < cfg.n_heads; h++) {
            poison(dist, (n + 1) * sizeof *dist);
            int st = adamas_cache_distances(p.lib, q + (size_t)h * d, h, dist);
            expect(st == ADAMAS_OK, "distances: %s", adamas_last_error());
            ref_query_code(&p.ref, q + (size_t)h * d, qcode);
            for (uint32_t t = 0; t < n; t++) {
                const uint8_t *kc = ref_code(&p.ref, t, h / group);
                uint32_t want = cfg.metric == ADAMAS_METRIC_L1 ? ref_l1(qcode, kc, d)
                                                               : ref_xorw(qcode, kc, d);
                expect(dist[t] == want, "d=%u head %u token %u: %u, want %u", d, h, t, dist[t],
                       want);
            }
            expect(dist[n] == 0xa5a5, "written past the last token");
        }
        free(dist);
        free(qcode);
        free(q);
        pair_destroy(&p);
    }
}

Test(distances, bad_arguments_are_rejected_and_nothing_is_written)
{
    rng_seed_from_env();
    adamas_cache_config cfg = random_config(4, 2, 64, 50, ADAMAS_F32);
    cache_pair p;
    pair_create(&p, &cfg);
    float *q = random_query(&p, 1.0f);
    uint16_t dist[64];
    poison(dist, sizeof dist);
    expect(adamas_cache_distances(p.lib, q, 0, dist) == ADAMAS_EINVAL, "empty cache");
    pair_append_random(&p, 40, 1.0f, 1.0f);
    expect(adamas_cache_distances(NULL, q, 0, dist) == ADAMAS_EINVAL, "NULL cache");
    expect(adamas_cache_distances(p.lib, NULL, 0, dist) == ADAMAS_EINVAL, "NULL q");
    expect(adamas_cache_distances(p.lib, q, 0, NULL) == ADAMAS_EINVAL, "NULL dist");
    expect(adamas_cache_distances(p.lib, q, 4 + rng_below(9), dist) == ADAMAS_EINVAL,
           "head out of range");
    q[rng_below(64)] = rng_below(2) ? NAN : -INFINITY;
    expect(adamas_cache_distances(p.lib, q, 1, dist) == ADAMAS_EINVAL, "non-finite q");
    expect(strstr(adamas_last_error(), "not finite") != NULL, "message: %s",
           adamas_last_error());
    for (size_t i = 0; i < 64; i++)
        expect(dist[i] == 0xa5a5, "dist[%zu] written by a failing call", i);
    free(q);
    pair_destroy(&p);
}

/* test_gpu.c - the CUDA backend against the CPU backend on the same inputs (DESIGN §4,
 * GPU): stored codes and code distances the same bits, every selector's selected
 * tokens the same, outputs within 1e-5 relative on unit-scale data.  Every test skips,
 * saying why, where the CUDA module or a device is missing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adamas.h"
#include "testutil.h"

/* The library looks for the module beside the program that links it, but Criterion's
 * workers are named "boxfort-worker": point it at the build tree's module (gpu/ beside
 * tests/) unless ADAMAS_CUDA_MODULE says where it is. */
static void suite_init(void)
{
    rng_seed_from_env();
    if (getenv("ADAMAS_CUDA_MODULE"))
        return;
    char path[4096];
    const char *module = "/../gpu/libadamas_cuda.so";
    ssize_t len = readlink("/proc/self/exe", path, sizeof path - strlen(module) - 1);
    if (len <= 0)
        return;
    path[len] = '\0';
    char *slash = strrchr(path, '/');
    if (!slash)
        return;
    strcpy(slash, module);
    if (access(path, R_OK) == 0)
        setenv("ADAMAS_CUDA_MODULE", path, 1);
}

TestSuite(gpu, .init = suite_init);

/* Skip the test unless caches can be created on the CUDA backend. */
static void require_cuda(void)
{
    if (adamas_set_backend("cuda") != ADAMAS_OK)
        cr_skip_test("the CUDA backend is not available here: %s", adamas_last_error());
    adamas_set_backend("cpu");
}

/* One cache per backend, fed the same tokens. */
typedef struct {
    adamas_cache *cpu, *gpu;
    adamas_cache_config cfg;
} twin;

static adamas_cache_config twin_config(uint32_t heads, uint32_t kv_heads, uint32_t d,
                                       uint32_t max_tokens, adamas_dtype dtype)
{
    adamas_cache_config cfg = adamas_cache_config_default(heads, kv_heads, d, max_tokens);
    cfg.kv_dtype = dtype;
    const float th[3] = {-0.6745f, rng_uniform(-0.1f, 0.1f), 0.6745f};
    memcpy(cfg.q_thresholds, th, sizeof th);
    memcpy(cfg.k_thresholds, th, sizeof th);
    return cfg;
}

static void twin_create(twin *t, const adamas_cache_config *cfg)
{
    t->cfg = *cfg;
    expect(adamas_set_backend("cpu") == ADAMAS_OK, "%s", adamas_last_error());
    expect(adamas_cache_create(cfg, &t->cpu) == ADAMAS_OK, "%s", adamas_last_error());
    expect(adamas_set_backend("cuda") == ADAMAS_OK, "%s", adamas_last_error());
    expect(adamas_cache_create(cfg, &t->gpu) == ADAMAS_OK, "%s", adamas_last_error());
    expect(strcmp(adamas_cache_backend(t->gpu), "cuda") == 0, "backend %s",
           adamas_cache_backend(t->gpu));
    adamas_set_backend("cpu");
}

static void twin_destroy(twin *t)
{
    adamas_cache_destroy(t->cpu);
    adamas_cache_destroy(t->gpu);
}

/* n tokens in chunks of random size; keys normal, or (ties) drawn from 3 vectors so
 * that many distances, logits and page bounds are equal. */
static void twin_append(twin *t, uint32_t n, int ties)
{
    const size_t row = (size_t)t->cfg.n_kv_heads * t->cfg.head_dim;
    float *k = malloc(row * n * sizeof *k), *v = malloc(row * n * sizeof *v);
    float *pool = malloc(3 * t->cfg.head_dim * sizeof *pool);
    rng_fill_normal(pool, 3 * t->cfg.head_dim, 1.0f);
    rng_fill_normal(k, row * n, 1.0f);
    rng_fill_normal(v, row * n, 1.0f);
    if (ties)
        for (size_t r = 0; r < (size_t)n * t->cfg.n_kv_heads; r++)
            memcpy(k + r * t->cfg.head_dim, pool + (r / t->cfg.n_kv_heads % 3) * t->cfg.head_dim,
                   t->cfg.head_dim * sizeof *k);
    for (uint32_t done = 0; done < n;) {
        uint32_t m = 1 + rng_below(n - done < 700 ? n - done : 700);
        expect(adamas_cache_append(t->cpu, k + done * row, v + done * row, m) == ADAMAS_OK, "%s",
               adamas_last_error());
        expect(adamas_cache_append(t->gpu, k + done * row, v + done * row, m) == ADAMAS_OK, "%s",
               adamas_last_error());
        done += m;
    }
    free(k);
    free(v);
    free(pool);
}

static void twin_calibrate(twin *t, float tau)
{
    expect(adamas_cache_calibrate(t->cpu, tau) == ADAMAS_OK, "%s", adamas_last_error());
    expect(adamas_cache_calibrate(t->gpu, tau) == ADAMAS_OK, "%s", adamas_last_error());
}

/* Every stored code, and every query head's distances to a random query. */
static void twin_check_store(const twin *t)
{
    const uint32_t n = adamas_cache_len(t->cpu), d = t->cfg.head_dim;
    expect(adamas_cache_len(t->gpu) == n, "lengths %u and %u", n, adamas_cache_len(t->gpu));
    const size_t words = adamas_code_words(d);
    uint64_t a[32], b[32];
    for (uint32_t g = 0; g < t->cfg.n_kv_heads; g++)
        for (uint32_t tok = 0; tok < n; tok++) {
            expect(adamas_cache_code(t->cpu, g, tok, a) == ADAMAS_OK, "%s", adamas_last_error());
            expect(adamas_cache_code(t->gpu, g, tok, b) == ADAMAS_OK, "%s", adamas_last_error());
            expect(memcmp(a, b, words * sizeof *a) == 0,
                   "d %u: code of kv head %u token %u differs", d, g, tok);
        }
    uint16_t *da = malloc(n * sizeof *da), *db = malloc(n * sizeof *db);
    float *q = malloc(d * sizeof *q);
    for (uint32_t h = 0; h < t->cfg.n_heads; h++) {
        rng_fill_normal(q, d, rng_uniform(0.3f, 3.0f));
        expect(adamas_cache_distances(t->cpu, q, h, da) == ADAMAS_OK, "%s", adamas_last_error());
        expect(adamas_cache_distances(t->gpu, q, h, db) == ADAMAS_OK, "%s", adamas_last_error());
        for (uint32_t tok = 0; tok < n; tok++)
            expect(da[tok] == db[tok], "d %u: distance of head %u to token %u: CPU %u, CUDA %u",
                   d, h, tok, da[tok], db[tok]);
    }
    free(da);
    free(db);
    free(q);
}

/* One decode on both: the same selected rows (nothing written past them, nothing at
 * all for FULL) and outputs within 1e-5 relative per head. */
static void twin_check_decode(const twin *t, const adamas_decode_params *p)
{
    const uint32_t heads = t->cfg.n_heads, d = t->cfg.head_dim, budget = p->budget;
    const size_t sel_n = (size_t)heads * budget;
    float *q = malloc((size_t)heads * d * sizeof *q);
    float *oa = malloc((size_t)heads * d * sizeof *oa), *ob = malloc((size_t)heads * d * sizeof *ob);
    uint32_t *sa = malloc((sel_n + 1) * sizeof *sa), *sb = malloc((sel_n + 1) * sizeof *sb);
    rng_fill_normal(q, (size_t)heads * d, 1.0f);
    poison(sa, (sel_n + 1) * sizeof *sa);
    poison(sb, (sel_n + 1) * sizeof *sb);
    expect(adamas_decode(t->cpu, p, q, oa, sa) == ADAMAS_OK, "%s", adamas_last_error());
    expect(adamas_decode(t->gpu, p, q, ob, sb) == ADAMAS_OK, "%s", adamas_last_error());
    const size_t written = p->selector == ADAMAS_SELECT_FULL ? 0 : sel_n;
    for (size_t i = 0; i < written; i++)
        expect(sa[i] == sb[i], "selector %d, B %u, R %u: selected[%zu][%zu]: CPU %u, CUDA %u",
               (int)p->selector, budget, p->rerank, i / budget, i % budget, sa[i], sb[i]);
    for (size_t i = written; i <= sel_n; i++)
        expect(sb[i] == POISON_U32, "selector %d: the CUDA decode wrote selected[%zu]",
               (int)p->selector, i);
    for (uint32_t h = 0; h < heads; h++) {
        double err = 0.0, norm = 0.0;
        for (uint32_t i = 0; i < d; i++) {
            double a = oa[(size_t)h * d + i], b = ob[(size_t)h * d + i];
            err += (a - b) * (a - b);
            norm += a * a;
        }
        double rel = sqrt(err / norm);
        expect(rel <= 1e-5, "selector %d, B %u: head %u relative error %.3g", (int)p->selector,
               budget, h, rel);
    }
    free(q);
    free(oa);
    free(ob);
    free(sa);
    free(sb);
}

/* Every selector, with forced sets and two-stage rerank, and a budget over n. */
static void twin_check_selectors(const twin *t)
{
    const uint32_t n = adamas_cache_len(t->cpu);
    const struct {
        adamas_selector s;
        uint32_t budget, sink, recent, rerank;
    } steps[] = {
        {ADAMAS_SELECT_ADAMAS, 128, 0, 1, 0},  {ADAMAS_SELECT_ADAMAS, 64, 4, 8, 0},
        {ADAMAS_SELECT_ADAMAS, 128, 0, 1, 4},  {ADAMAS_SELECT_ADAMAS, 96, 2, 2, 3},
        {ADAMAS_SELECT_ADAMAS, n + 3, 0, 1, 0}, {ADAMAS_SELECT_ORACLE, 80, 3, 5, 0},
        {ADAMAS_SELECT_STREAMING, 100, 4, 0, 0}, {ADAMAS_SELECT_QUEST, 100, 0, 1, 0},
        {ADAMAS_SELECT_FULL, 32, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        adamas_decode_params p = adamas_decode_params_default(steps[i].s, steps[i].budget);
        p.sink = steps[i].sink;
        p.recent = steps[i].recent;
        p.rerank = steps[i].rerank;
        twin_check_decode(t, &p);
    }
}

Test(gpu, codes_and_distances_are_the_cpus_bits_for_every_head_dim)
{
    require_cuda();
    for (uint32_t d = 16; d <= 1024; d *= 2) {
        adamas_dtype dtype = (adamas_dtype)rng_below(3);
        uint32_t n = 50 + rng_below(d >= 512 ? 200 : 900), kv = 1 + rng_below(3);
        adamas_cache_config cfg = twin_config(kv * (1 + rng_below(3)), kv, d, n, dtype);
        cfg.metric = rng_below(2) ? ADAMAS_METRIC_XORW : ADAMAS_METRIC_L1;
        twin t;
        twin_create(&t, &cfg);
        twin_append(&t, n, 0);
        twin_check_store(&t);
        twin_destroy(&t);
    }
}

Test(gpu, every_selector_picks_the_cpus_tokens)
{
    require_cuda();
    for (int dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++) {
        uint32_t n = 3000 + rng_below(3000);
        adamas_cache_config cfg = twin_config(8, 2, 64 << rng_below(2), n, (adamas_dtype)dtype);
        twin t;
        twin_create(&t, &cfg);
        twin_append(&t, n, 0);
        twin_check_selectors(&t);
        twin_destroy(&t);
    }
}

Test(gpu, ties_go_to_the_more_recent_token_as_on_the_cpu)
{
    require_cuda();
    uint32_t n = 1000 + rng_below(1000);
    adamas_cache_config cfg = twin_config(4, 1, 32, n, ADAMAS_F32);
    twin t;
    twin_create(&t, &cfg);
    twin_append(&t, n, 1);
    twin_check_store(&t);
    twin_check_selectors(&t);
    twin_destroy(&t);
}

Test(gpu, calibrated_caches_match_before_and_after_later_appends)
{
    require_cuda();
    uint32_t n = 800 + rng_below(800), more = 1 + rng_below(600);
    adamas_cache_config cfg = twin_config(6, 3, 128, n + more, ADAMAS_F16);
    twin t;
    twin_create(&t, &cfg);
    twin_append(&t, n, 0);
    twin_calibrate(&t, 0.6745f);
    twin_check_store(&t);
    twin_append(&t, more, 0);
    twin_check_store(&t);
    twin_check_selectors(&t);
    twin_destroy(&t);
}

Test(gpu, the_raw_transform_and_large_groups_match)
{
    require_cuda();
    uint32_t n = 600 + rng_below(600);
    adamas_cache_config cfg = twin_config(64, 1, 128, n, ADAMAS_BF16);
    cfg.transform = ADAMAS_TRANSFORM_NONE;
    twin t;
    twin_create(&t, &cfg);
    twin_append(&t, n, 0);
    twin_calibrate(&t, 0.5f);
    twin_check_store(&t);
    twin_check_selectors(&t);
    twin_destroy(&t);
}

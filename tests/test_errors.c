/* test_errors.c - every public function on every kind of bad input: the documented
 * status, a message naming the bad argument, and nothing changed (outputs untouched,
 * the cache's length, codes, thresholds and decode results as before). */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "testutil.h"

/* Validation does not depend on threads: one thread keeps the many small decode steps
 * that check "nothing changed" cheap on a loaded machine. */
static void init_errors_suite(void)
{
    rng_seed_from_env();
    cr_assert(adamas_set_num_threads(1) == ADAMAS_OK, "%s", adamas_last_error());
}

TestSuite(errors, .init = init_errors_suite);

/* ------------------------------------------------------------ messages */

static int is_word_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* msg contains `word` not as part of a longer identifier. */
static int mentions(const char *msg, const char *word)
{
    size_t len = strlen(word);
    for (const char *at = strstr(msg, word); at; at = strstr(at + 1, word)) {
        int starts = at == msg || !is_word_char(at[-1]);
        if (starts && !is_word_char(at[len]))
            return 1;
    }
    return 0;
}

static char stale[512];

/* Leave a known message behind, from a function other than `fn`, so that the message
 * after the call under test is seen to be new. */
static void forget_message(const char *fn)
{
    if (strcmp(fn, "adamas_l1_distance") == 0)
        adamas_hadamard_f32(NULL, 16);
    else
        adamas_l1_distance(NULL, NULL, 16);
    snprintf(stale, sizeof stale, "%s", adamas_last_error());
    cr_assert(stale[0], "no message to start from");
}

/* The call under test returned `want` with a fresh message that names `word`. */
#define expect_failure(got, want, word, what)                                                   \
    do {                                                                                       \
        int got_ = (got);                                                                      \
        const char *msg_ = adamas_last_error();                                                \
        expect(got_ == (want), "%s: status %d (%s), expected %s", what, got_,                  \
               adamas_strerror(got_), adamas_strerror(want));                                  \
        expect(msg_ && msg_[0] && strcmp(msg_, stale) != 0, "%s: no new message", what);       \
        expect(mentions(msg_, word), "%s: message \"%s\" does not name %s", what, msg_, word); \
    } while (0)

static int untouched(const void *buf, size_t bytes)
{
    const unsigned char *b = buf;
    for (size_t i = 0; i < bytes; i++)
        if (b[i] != 0xa5)
            return 0;
    return 1;
}

static float nonfinite(void)
{
    switch (rng_below(3)) {
    case 0: return NAN;
    case 1: return INFINITY;
    default: return -INFINITY;
    }
}

/* ------------------------------------------------------------ statuses */

Test(errors, strerror_names_every_status)
{
    const struct {
        int status;
        const char *name;
    } all[] = {{ADAMAS_OK, "ADAMAS_OK"},           {ADAMAS_EINVAL, "ADAMAS_EINVAL"},
               {ADAMAS_ENOMEM, "ADAMAS_ENOMEM"},   {ADAMAS_ECAPACITY, "ADAMAS_ECAPACITY"},
               {ADAMAS_ENOTSUP, "ADAMAS_ENOTSUP"}, {ADAMAS_EIO, "ADAMAS_EIO"},
               {ADAMAS_EFORMAT, "ADAMAS_EFORMAT"}};
    const size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = adamas_strerror(all[i].status);
        expect(s && mentions(s, all[i].name), "adamas_strerror(%d) = \"%s\"", all[i].status,
               s ? s : "(null)");
        for (size_t j = 0; j < i; j++)
            expect(strcmp(s, adamas_strerror(all[j].status)) != 0, "statuses %d and %d share \"%s\"",
                   all[i].status, all[j].status, s);
    }
    const int unknown[] = {1, -7, 42, -1000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = adamas_strerror(unknown[i]);
        expect(s && s[0], "adamas_strerror(%d) is empty", unknown[i]);
        for (size_t j = 0; j < n; j++)
            expect(strcmp(s, adamas_strerror(all[j].status)) != 0,
                   "unknown status %d named like %s", unknown[i], all[j].name);
    }
}

Test(errors, last_error_is_empty_until_a_call_fails)
{
    /* each test runs in a fresh process */
    expect(adamas_last_error() && adamas_last_error()[0] == 0, "\"%s\"", adamas_last_error());
    float x[16] = {0};
    expect(adamas_hadamard_f32(x, 16) == ADAMAS_OK, "%s", adamas_last_error());
    expect(adamas_last_error()[0] == 0, "a successful call left \"%s\"", adamas_last_error());
    expect(adamas_hadamard_f32(x, 17) == ADAMAS_EINVAL, "d = 17 accepted");
    expect(adamas_last_error()[0] != 0, "no message after a failure");
}

static void *fail_in_thread(void *arg)
{
    (void)arg;
    adamas_hadamard_f32(NULL, 16);
    return NULL;
}

Test(errors, last_error_is_kept_per_thread)
{
    forget_message("test");
    char mine[512];
    snprintf(mine, sizeof mine, "%s", adamas_last_error());
    pthread_t t;
    expect(pthread_create(&t, NULL, fail_in_thread, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    expect(strcmp(adamas_last_error(), mine) == 0, "another thread's failure replaced \"%s\" by \"%s\"",
           mine, adamas_last_error());
}

/* ------------------------------------------------------- vector kernels */

static const size_t bad_dims[] = {0, 1, 8, 15, 17, 24, 48, 100, 1023, 1025, 2048, 4096};
#define N_BAD_DIMS (sizeof bad_dims / sizeof bad_dims[0])

Test(errors, hadamard_rejects_null_bad_d_and_non_finite_input)
{
    float x[2048], copy[2048];
    forget_message("adamas_hadamard_f32");
    expect_failure(adamas_hadamard_f32(NULL, 64), ADAMAS_EINVAL, "x", "x NULL");
    for (size_t i = 0; i < N_BAD_DIMS; i++) {
        rng_fill_normal(x, 2048, 1.0f);
        memcpy(copy, x, sizeof x);
        forget_message("adamas_hadamard_f32");
        expect_failure(adamas_hadamard_f32(x, bad_dims[i]), ADAMAS_EINVAL, "d", "bad d");
        expect(memcmp(x, copy, sizeof x) == 0, "d = %zu: x changed", bad_dims[i]);
    }
    for (size_t d = 16; d <= 1024; d *= 2) {
        rng_fill_normal(x, d, 1.0f);
        size_t at = rng_below((uint32_t)d);
        x[at] = nonfinite();
        memcpy(copy, x, d * sizeof *x);
        forget_message("adamas_hadamard_f32");
        expect_failure(adamas_hadamard_f32(x, d), ADAMAS_EINVAL, "x", "non-finite x");
        expect(memcmp(x, copy, d * sizeof *x) == 0, "d = %zu: x changed", d);
    }
}

Test(errors, encode_rejects_null_bad_d_bad_thresholds_and_non_finite_input)
{
    float xh[1024], th[3] = {-1.0f, 0.0f, 1.0f};
    uint64_t code[40];
    rng_fill_normal(xh, 1024, 1.0f);
    forget_message("adamas_encode_2bit");
    expect_failure(adamas_encode_2bit(NULL, 64, th, code), ADAMAS_EINVAL, "xh", "xh NULL");
    forget_message("adamas_encode_2bit");
    expect_failure(adamas_encode_2bit(xh, 64, NULL, code), ADAMAS_EINVAL, "th", "th NULL");
    forget_message("adamas_encode_2bit");
    expect_failure(adamas_encode_2bit(xh, 64, th, NULL), ADAMAS_EINVAL, "code", "code NULL");
    for (size_t i = 0; i < N_BAD_DIMS; i++) {
        poison(code, sizeof code);
        forget_message("adamas_encode_2bit");
        expect_failure(adamas_encode_2bit(xh, bad_dims[i], th, code), ADAMAS_EINVAL, "d", "bad d");
        expect(untouched(code, sizeof code), "d = %zu: code written", bad_dims[i]);
    }
    const float bad_th[][3] = {{0, 0, 1},         {-1, 1, 1},        {1, 0, -1},
                               {-1, 2, 1},        {NAN, 0, 1},       {-1, NAN, 1},
                               {-1, 0, NAN},      {-INFINITY, 0, 1}, {-1, 0, INFINITY},
                               {-0.0f, 0.0f, 1}};
    for (size_t i = 0; i < sizeof bad_th / sizeof bad_th[0]; i++) {
        poison(code, sizeof code);
        forget_message("adamas_encode_2bit");
        expect_failure(adamas_encode_2bit(xh, 64, bad_th[i], code), ADAMAS_EINVAL, "thresholds",
                       "bad thresholds");
        expect(untouched(code, sizeof code), "thresholds %zu: code written", i);
    }
    for (size_t d = 16; d <= 1024; d *= 2) {
        float x[1024];
        rng_fill_normal(x, d, 1.0f);
        x[rng_below((uint32_t)d)] = nonfinite();
        poison(code, sizeof code);
        forget_message("adamas_encode_2bit");
        expect_failure(adamas_encode_2bit(x, d, th, code), ADAMAS_EINVAL, "xh", "non-finite xh");
        expect(untouched(code, sizeof code), "d = %zu: code written", d);
    }
}

Test(errors, interleaved_conversions_reject_null_bad_d_and_stray_bits)
{
    uint64_t planar[40] = {0};
    uint16_t inter[160];
    forget_message("adamas_codes_to_interleaved");
    expect_failure(adamas_codes_to_interleaved(NULL, 64, inter), ADAMAS_EINVAL, "planar", "NULL");
    forget_message("adamas_codes_to_interleaved");
    expect_failure(adamas_codes_to_interleaved(planar, 64, NULL), ADAMAS_EINVAL, "inter", "NULL");
    forget_message("adamas_codes_from_interleaved");
    expect_failure(adamas_codes_from_interleaved(NULL, 64, planar), ADAMAS_EINVAL, "inter", "NULL");
    forget_message("adamas_codes_from_interleaved");
    expect_failure(adamas_codes_from_interleaved(inter, 64, NULL), ADAMAS_EINVAL, "planar", "NULL");
    for (size_t i = 0; i < N_BAD_DIMS; i++) {
        poison(inter, sizeof inter);
        forget_message("adamas_codes_to_interleaved");
        expect_failure(adamas_codes_to_interleaved(planar, bad_dims[i], inter), ADAMAS_EINVAL, "d",
                       "bad d");
        expect(untouched(inter, sizeof inter), "d = %zu: inter written", bad_dims[i]);
        poison(planar, sizeof planar);
        forget_message("adamas_codes_from_interleaved");
        expect_failure(adamas_codes_from_interleaved(inter, bad_dims[i], planar), ADAMAS_EINVAL,
                       "d", "bad d");
        expect(untouched(planar, sizeof planar), "d = %zu: planar written", bad_dims[i]);
        memset(planar, 0, sizeof planar);
    }
    /* a bit beyond dimension d (d = 16, 32: the only sizes with unused bits) */
    for (size_t d = 16; d <= 32; d *= 2)
        for (int trial = 0; trial < 10; trial++) {
            uint64_t code[2];
            code[0] = rng_next() & ((1ull << d) - 1);
            code[1] = rng_next() & ((1ull << d) - 1);
            code[rng_below(2)] |= 1ull << (d + rng_below(64 - (uint32_t)d));
            poison(inter, sizeof inter);
            forget_message("adamas_codes_to_interleaved");
            expect_failure(adamas_codes_to_interleaved(code, d, inter), ADAMAS_EINVAL, "planar",
                           "stray bits");
            expect(untouched(inter, sizeof inter), "d = %zu: inter written", d);
        }
}

Test(errors, distances_return_uint32_max_on_null_or_bad_d)
{
    uint64_t a[40] = {0}, b[40] = {0};
    uint32_t (*const fns[2])(const uint64_t *, const uint64_t *, size_t) = {adamas_l1_distance,
                                                                            adamas_xorw_distance};
    const char *names[2] = {"adamas_l1_distance", "adamas_xorw_distance"};
    for (int f = 0; f < 2; f++) {
        forget_message(names[f]);
        expect_failure((int)(fns[f](NULL, b, 64) == UINT32_MAX ? ADAMAS_EINVAL : ADAMAS_OK),
                       ADAMAS_EINVAL, "a", names[f]);
        forget_message(names[f]);
        expect_failure((int)(fns[f](a, NULL, 64) == UINT32_MAX ? ADAMAS_EINVAL : ADAMAS_OK),
                       ADAMAS_EINVAL, "b", names[f]);
        for (size_t i = 0; i < N_BAD_DIMS; i++) {
            forget_message(names[f]);
            expect_failure((int)(fns[f](a, b, bad_dims[i]) == UINT32_MAX ? ADAMAS_EINVAL
                                                                         : ADAMAS_OK),
                           ADAMAS_EINVAL, "d", names[f]);
        }
    }
}

Test(errors, topk_rejects_null_pointers_k_above_n_and_huge_n)
{
    uint16_t dist[64];
    uint32_t idx[65];
    for (int i = 0; i < 64; i++)
        dist[i] = (uint16_t)rng_next();
    forget_message("adamas_topk_smallest");
    expect_failure(adamas_topk_smallest(NULL, 64, 3, idx), ADAMAS_EINVAL, "dist", "dist NULL");
    forget_message("adamas_topk_smallest");
    expect_failure(adamas_topk_smallest(dist, 64, 3, NULL), ADAMAS_EINVAL, "idx", "idx NULL");
    const size_t n = 1 + rng_below(63);
    poison(idx, sizeof idx);
    forget_message("adamas_topk_smallest");
    expect_failure(adamas_topk_smallest(dist, n, n + 1 + rng_below(10), idx), ADAMAS_EINVAL, "k",
                   "k > n");
    expect(untouched(idx, sizeof idx), "idx written");
    forget_message("adamas_topk_smallest");
    expect_failure(adamas_topk_smallest(dist, (size_t)UINT32_MAX, 1, idx), ADAMAS_EINVAL, "n",
                   "n = UINT32_MAX");
    expect(untouched(idx, sizeof idx), "idx written");
    /* k = 0 selects nothing, even from NULL */
    expect(adamas_topk_smallest(NULL, 0, 0, NULL) == ADAMAS_OK, "%s", adamas_last_error());
}

/* --------------------------------------------------------- instruction sets */

static const char *const unknown_isas[] = {"sse9", "AVX2", "scalar ", "avx", "auto2", "Scalar",
                                           "avx512f", "neon64", "cuda"};
#define N_UNKNOWN_ISAS (sizeof unknown_isas / sizeof unknown_isas[0])

/* A known ISA name this machine cannot run, or NULL. */
static const char *unavailable_isa(void)
{
    const char *known[] = {"avx512", "avx2", "neon"};
    for (int i = 0; i < 3; i++)
        if (!adamas_isa_available(known[i]))
            return known[i];
    return NULL;
}

Test(errors, set_isa_rejects_unknown_names_and_keeps_the_previous_choice)
{
    expect(adamas_set_isa("scalar") == ADAMAS_OK, "%s", adamas_last_error());
    for (size_t i = 0; i < N_UNKNOWN_ISAS; i++) {
        forget_message("adamas_set_isa");
        expect_failure(adamas_set_isa(unknown_isas[i]), ADAMAS_EINVAL, "adamas_set_isa",
                       unknown_isas[i]);
        expect(strstr(adamas_last_error(), unknown_isas[i]), "message \"%s\" lacks the name \"%s\"",
               adamas_last_error(), unknown_isas[i]);
        expect(strcmp(adamas_isa_name(), "scalar") == 0, "choice changed to %s", adamas_isa_name());
    }
    const char *missing = unavailable_isa();
    if (missing) {
        forget_message("adamas_set_isa");
        expect_failure(adamas_set_isa(missing), ADAMAS_ENOTSUP, missing, missing);
        expect(strcmp(adamas_isa_name(), "scalar") == 0, "choice changed to %s", adamas_isa_name());
    }
    expect(adamas_set_isa(NULL) == ADAMAS_OK, "NULL (auto): %s", adamas_last_error());
    expect(adamas_set_isa("auto") == ADAMAS_OK, "auto: %s", adamas_last_error());
}

Test(errors, isa_available_knows_scalar_and_no_unknown_name)
{
    expect(adamas_isa_available("scalar") == 1, "scalar unavailable");
    for (size_t i = 0; i < N_UNKNOWN_ISAS; i++)
        expect(adamas_isa_available(unknown_isas[i]) == 0, "\"%s\" available", unknown_isas[i]);
    expect(adamas_isa_available(NULL) == 0, "NULL available");
    const char *names[] = {"scalar", "avx2", "avx512", "neon"};
    for (int i = 0; i < 4; i++)
        if (adamas_isa_available(names[i])) {
            expect(adamas_set_isa(names[i]) == ADAMAS_OK, "%s: %s", names[i], adamas_last_error());
            expect(strcmp(adamas_isa_name(), names[i]) == 0, "%s in use, asked %s",
                   adamas_isa_name(), names[i]);
        }
}

/* With ADAMAS_ISA set before first use to a name that cannot run, every call that
 * needs kernels fails with `want`, changing nothing; fixing the variable or calling
 * adamas_set_isa recovers. */
static void check_bad_isa_environment(const char *name, int want)
{
    setenv("ADAMAS_ISA", name, 1);
    expect(strcmp(adamas_isa_name(), "none") == 0, "ADAMAS_ISA=%s: isa name %s", name,
           adamas_isa_name());
    float x[64], copy[64], th[3] = {-1, 0, 1};
    uint64_t code[2];
    rng_fill_normal(x, 64, 1.0f);
    memcpy(copy, x, sizeof x);
    for (int rep = 0; rep < 2; rep++) { /* not remembered: reported every time */
        forget_message("adamas_hadamard_f32");
        expect_failure(adamas_hadamard_f32(x, 64), want, "ADAMAS_ISA", "hadamard");
        expect(memcmp(x, copy, sizeof x) == 0, "x changed");
        poison(code, sizeof code);
        forget_message("adamas_encode_2bit");
        expect_failure(adamas_encode_2bit(x, 64, th, code), want, "ADAMAS_ISA", "encode");
        expect(untouched(code, sizeof code), "code written");
        adamas_cache_config cfg = adamas_cache_config_default(2, 1, 64, 10);
        adamas_cache *c = (adamas_cache *)&copy;
        forget_message("adamas_cache_create");
        expect_failure(adamas_cache_create(&cfg, &c), want, "ADAMAS_ISA", "create");
        expect(c == (adamas_cache *)&copy, "*out written");
    }
    setenv("ADAMAS_ISA", "scalar", 1);
    expect(adamas_hadamard_f32(x, 64) == ADAMAS_OK, "after fixing ADAMAS_ISA: %s",
           adamas_last_error());
    expect(strcmp(adamas_isa_name(), "scalar") == 0, "isa %s", adamas_isa_name());
}

Test(errors, an_unknown_isa_in_the_environment_fails_every_call_until_fixed)
{
    check_bad_isa_environment(unknown_isas[rng_below(N_UNKNOWN_ISAS)], ADAMAS_EINVAL);
}

Test(errors, an_unavailable_isa_in_the_environment_is_not_supported)
{
    const char *missing = unavailable_isa();
    if (!missing)
        cr_skip_test("this machine runs every ISA");
    check_bad_isa_environment(missing, ADAMAS_ENOTSUP);
}

Test(errors, set_isa_overrides_a_bad_environment)
{
    setenv("ADAMAS_ISA", "sse9", 1);
    expect(adamas_set_isa("scalar") == ADAMAS_OK, "%s", adamas_last_error());
    float x[16] = {1};
    expect(adamas_hadamard_f32(x, 16) == ADAMAS_OK, "%s", adamas_last_error());
}

/* --------------------------------------------------------- cache creation */

/* Spoil field number `which` of cfg; returns the field's name, NULL past the last. */
static const char *spoil_config(adamas_cache_config *c, int which)
{
    switch (which) {
    case 0: c->n_heads = 0; return "n_heads";
    case 1: c->n_kv_heads = 0; return "n_kv_heads";
    case 2: c->n_heads = 6; c->n_kv_heads = 4; return "n_kv_heads";
    case 3: c->n_heads = 2; c->n_kv_heads = 4; return "n_kv_heads";
    case 4: c->head_dim = 0; return "head_dim";
    case 5: c->head_dim = 8; return "head_dim";
    case 6: c->head_dim = 24; return "head_dim";
    case 7: c->head_dim = 2048; return "head_dim";
    case 8: c->head_dim = 100; return "head_dim";
    case 9: c->max_tokens = 0; return "max_tokens";
    case 10: c->max_tokens = UINT32_MAX; return "max_tokens";
    case 11: c->kv_dtype = (adamas_dtype)3; return "kv_dtype";
    case 12: c->kv_dtype = (adamas_dtype)-1; return "kv_dtype";
    case 13: c->metric = (adamas_metric)2; return "metric";
    case 14: c->q_thresholds[1] = c->q_thresholds[0]; return "q_thresholds";
    case 15: c->q_thresholds[0] = 1; c->q_thresholds[2] = -1; return "q_thresholds";
    case 16: c->q_thresholds[2] = NAN; return "q_thresholds";
    case 17: c->q_thresholds[0] = -INFINITY; return "q_thresholds";
    case 18: c->k_thresholds[2] = c->k_thresholds[1]; return "k_thresholds";
    case 19: c->k_thresholds[0] = 5; return "k_thresholds";
    case 20: c->k_thresholds[1] = NAN; return "k_thresholds";
    case 21: c->k_thresholds[2] = INFINITY; return "k_thresholds";
    case 22: c->page_size = 0; return "page_size";
    case 23: c->transform = (adamas_transform)2; return "transform";
    default: return NULL;
    }
}

Test(errors, cache_create_rejects_each_bad_config_field)
{
    for (int which = 0;; which++) {
        adamas_cache_config cfg = adamas_cache_config_default(4, 2, 64, 100);
        const char *field = spoil_config(&cfg, which);
        if (!field)
            break;
        adamas_cache *sentinel = (adamas_cache *)&cfg, *c = sentinel;
        forget_message("adamas_cache_create");
        expect_failure(adamas_cache_create(&cfg, &c), ADAMAS_EINVAL, field, field);
        expect(c == sentinel, "%s: *out written", field);
    }
    adamas_cache_config cfg = adamas_cache_config_default(4, 2, 64, 100);
    adamas_cache *c = NULL;
    forget_message("adamas_cache_create");
    expect_failure(adamas_cache_create(NULL, &c), ADAMAS_EINVAL, "cfg", "cfg NULL");
    expect(c == NULL, "*out written");
    forget_message("adamas_cache_create");
    expect_failure(adamas_cache_create(&cfg, NULL), ADAMAS_EINVAL, "out", "out NULL");
}

Test(errors, cache_create_reports_a_size_that_overflows_as_out_of_memory)
{
    adamas_cache_config cfg = adamas_cache_config_default(1u << 31, 1u << 31, 1024, UINT32_MAX - 1);
    adamas_cache *sentinel = (adamas_cache *)&cfg, *c = sentinel;
    forget_message("adamas_cache_create");
    int st = adamas_cache_create(&cfg, &c);
    expect(st == ADAMAS_ENOMEM, "status %s", adamas_strerror(st));
    expect(adamas_last_error()[0] && strcmp(adamas_last_error(), stale), "no new message");
    expect(c == sentinel, "*out written");
}

Test(errors, null_caches_are_ignored_where_documented)
{
    adamas_cache_destroy(NULL);
    expect(adamas_cache_len(NULL) == 0, "len(NULL) = %u", adamas_cache_len(NULL));
    adamas_cache_config cfg = adamas_cache_get_config(NULL);
    expect(cfg.n_heads == 0 && cfg.head_dim == 0 && cfg.max_tokens == 0,
           "get_config(NULL) is not all zero");
}

/* ------------------------------------------------- a cache and its state */

#define N_HEADS 4
#define N_KV 2
#define D 32
#define MAX_TOKENS 64
#define PER_TOKEN (N_KV * D)

typedef struct {
    uint32_t len;
    float th[N_KV][3];
    uint64_t codes[N_KV][MAX_TOKENS][2];
    float out[5][N_HEADS * D];
    uint32_t selected[5][N_HEADS * 16];
} cache_state;

static float probe_query[N_HEADS * D];

/* A cache of n random tokens (and the query used to probe it). */
static adamas_cache *make_cache(adamas_dtype dtype, uint32_t n)
{
    adamas_cache_config cfg = adamas_cache_config_default(N_HEADS, N_KV, D, MAX_TOKENS);
    cfg.kv_dtype = dtype;
    cfg.page_size = 4;
    const float th[3] = {-0.7f, 0.0f, 0.7f};
    memcpy(cfg.q_thresholds, th, sizeof th);
    memcpy(cfg.k_thresholds, th, sizeof th);
    adamas_cache *c;
    expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "%s", adamas_last_error());
    if (n) {
        float k[MAX_TOKENS * PER_TOKEN], v[MAX_TOKENS * PER_TOKEN];
        rng_fill_normal(k, n * PER_TOKEN, 1.0f);
        rng_fill_normal(v, n * PER_TOKEN, 1.0f);
        expect(adamas_cache_append(c, k, v, n) == ADAMAS_OK, "%s", adamas_last_error());
    }
    rng_fill_normal(probe_query, N_HEADS * D, 1.0f);
    return c;
}

/* Everything observable: length, thresholds, codes, and the output and selection of a
 * decode step with each selector (budget 16, below the length when it is > 16). */
static void capture(const adamas_cache *c, cache_state *s)
{
    memset(s, 0, sizeof *s);
    s->len = adamas_cache_len(c);
    for (uint32_t g = 0; g < N_KV; g++) {
        expect(adamas_cache_key_thresholds(c, g, s->th[g]) == ADAMAS_OK, "%s", adamas_last_error());
        for (uint32_t t = 0; t < s->len; t++)
            expect(adamas_cache_code(c, g, t, s->codes[g][t]) == ADAMAS_OK, "%s",
                   adamas_last_error());
    }
    if (s->len == 0)
        return;
    for (int sel = 0; sel <= ADAMAS_SELECT_QUEST; sel++) {
        adamas_decode_params p = adamas_decode_params_default((adamas_selector)sel, 16);
        p.page_size = 0;
        p.rerank = sel == ADAMAS_SELECT_ADAMAS ? 2 : 0;
        expect(adamas_decode(c, &p, probe_query, s->out[sel], s->selected[sel]) == ADAMAS_OK,
               "%s", adamas_last_error());
    }
}

static void expect_unchanged(const adamas_cache *c, const cache_state *before, const char *what)
{
    cache_state now;
    capture(c, &now);
    expect(now.len == before->len, "%s: length %u, was %u", what, now.len, before->len);
    expect(memcmp(now.th, before->th, sizeof now.th) == 0, "%s: thresholds changed", what);
    expect(memcmp(now.codes, before->codes, sizeof now.codes) == 0, "%s: codes changed", what);
    expect(memcmp(now.out, before->out, sizeof now.out) == 0, "%s: decode output changed", what);
    expect(memcmp(now.selected, before->selected, sizeof now.selected) == 0,
           "%s: selection changed", what);
    if (now.len == 0) {
        float out[N_HEADS * D];
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_FULL, 16);
        expect(adamas_decode(c, &p, probe_query, out, NULL) == ADAMAS_EINVAL,
               "%s: an empty cache decodes", what);
    }
}

/* ---------------------------------------------------------------- append */

Test(errors, append_rejects_null_pointers_and_changes_nothing)
{
    adamas_cache *c = make_cache(ADAMAS_F32, 10 + rng_below(20));
    cache_state before;
    capture(c, &before);
    float k[PER_TOKEN * 3], v[PER_TOKEN * 3];
    rng_fill_normal(k, PER_TOKEN * 3, 1.0f);
    rng_fill_normal(v, PER_TOKEN * 3, 1.0f);
    forget_message("adamas_cache_append");
    expect_failure(adamas_cache_append(NULL, k, v, 3), ADAMAS_EINVAL, "c", "c NULL");
    forget_message("adamas_cache_append");
    expect_failure(adamas_cache_append(c, NULL, v, 3), ADAMAS_EINVAL, "k", "k NULL");
    forget_message("adamas_cache_append");
    expect_failure(adamas_cache_append(c, k, NULL, 3), ADAMAS_EINVAL, "v", "v NULL");
    expect_unchanged(c, &before, "NULL append");
    /* n == 0 is a no-op, whatever the pointers */
    expect(adamas_cache_append(c, NULL, NULL, 0) == ADAMAS_OK, "%s", adamas_last_error());
    expect_unchanged(c, &before, "empty append");
    adamas_cache_destroy(c);
}

Test(errors, append_beyond_max_tokens_is_a_capacity_error_and_changes_nothing)
{
    for (uint32_t n0 = 0; n0 <= MAX_TOKENS; n0 += 1 + rng_below(20)) {
        adamas_cache *c = make_cache(ADAMAS_F16, n0);
        cache_state before;
        capture(c, &before);
        uint32_t room = MAX_TOKENS - n0;
        static float k[(MAX_TOKENS + 8) * PER_TOKEN], v[(MAX_TOKENS + 8) * PER_TOKEN];
        rng_fill_normal(k, sizeof k / sizeof *k, 1.0f);
        rng_fill_normal(v, sizeof v / sizeof *v, 1.0f);
        uint32_t too_many[] = {room + 1, room + 1 + rng_below(7), UINT32_MAX};
        for (int i = 0; i < 3; i++) {
            forget_message("adamas_cache_append");
            /* UINT32_MAX tokens are never read: the capacity check comes first */
            expect_failure(adamas_cache_append(c, k, v, too_many[i]), ADAMAS_ECAPACITY,
                           "max_tokens", "over capacity");
            expect_unchanged(c, &before, "over capacity");
        }
        /* exactly filling it works */
        expect(adamas_cache_append(c, k, v, room) == ADAMAS_OK, "%s", adamas_last_error());
        expect(adamas_cache_len(c) == MAX_TOKENS, "length %u", adamas_cache_len(c));
        forget_message("adamas_cache_append");
        expect_failure(adamas_cache_append(c, k, v, 1), ADAMAS_ECAPACITY, "max_tokens", "full");
        adamas_cache_destroy(c);
    }
}

Test(errors, append_rejects_nan_and_inf_anywhere_and_changes_nothing)
{
    for (int dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++)
        for (int trial = 0; trial < 12; trial++) {
            adamas_cache *c = make_cache((adamas_dtype)dtype, rng_below(30));
            cache_state before;
            capture(c, &before);
            uint32_t n = 1 + rng_below(8);
            float k[8 * PER_TOKEN], v[8 * PER_TOKEN];
            rng_fill_normal(k, n * PER_TOKEN, 1.0f);
            rng_fill_normal(v, n * PER_TOKEN, 1.0f);
            int in_v = trial % 2;
            float *bad = in_v ? v : k;
            bad[rng_below(n * PER_TOKEN)] = nonfinite();
            forget_message("adamas_cache_append");
            expect_failure(adamas_cache_append(c, k, v, n), ADAMAS_EINVAL, in_v ? "v" : "k",
                           "non-finite");
            expect_unchanged(c, &before, "non-finite append");
            adamas_cache_destroy(c);
        }
}

Test(errors, append_rejects_values_beyond_the_storage_dtype_and_changes_nothing)
{
    const struct {
        adamas_dtype dtype;
        float value;
    } cases[] = {
        {ADAMAS_F16, 65520.0f},        {ADAMAS_F16, 1e5f},   {ADAMAS_F16, FLT_MAX},
        {ADAMAS_F16, 70000.0f},        {ADAMAS_BF16, FLT_MAX},
        {ADAMAS_BF16, 0x1.ff0000p127f}, /* the tie above the largest bfloat rounds up to inf */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        adamas_cache *c = make_cache(cases[i].dtype, 1 + rng_below(30));
        cache_state before;
        capture(c, &before);
        uint32_t n = 1 + rng_below(8);
        float k[8 * PER_TOKEN], v[8 * PER_TOKEN];
        rng_fill_normal(k, n * PER_TOKEN, 1.0f);
        rng_fill_normal(v, n * PER_TOKEN, 1.0f);
        int in_v = rng_below(2);
        (in_v ? v : k)[rng_below(n * PER_TOKEN)] = rng_below(2) ? cases[i].value : -cases[i].value;
        forget_message("adamas_cache_append");
        expect_failure(adamas_cache_append(c, k, v, n), ADAMAS_EINVAL, in_v ? "v" : "k",
                       "beyond the dtype");
        expect_unchanged(c, &before, "out-of-range append");
        adamas_cache_destroy(c);
    }
}

/* ------------------------------------------------------------- calibrate */

Test(errors, calibrate_rejects_null_a_bad_tau_and_an_empty_cache)
{
    adamas_cache *c = make_cache(ADAMAS_BF16, 5 + rng_below(40));
    cache_state before;
    capture(c, &before);
    forget_message("adamas_cache_calibrate");
    expect_failure(adamas_cache_calibrate(NULL, 0.6745f), ADAMAS_EINVAL, "c", "c NULL");
    const float bad_tau[] = {0.0f, -0.0f, -1.0f, -FLT_MIN, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad_tau / sizeof bad_tau[0]; i++) {
        forget_message("adamas_cache_calibrate");
        expect_failure(adamas_cache_calibrate(c, bad_tau[i]), ADAMAS_EINVAL, "tau", "bad tau");
        expect_unchanged(c, &before, "bad tau");
    }
    adamas_cache_destroy(c);

    adamas_cache *empty = make_cache(ADAMAS_F32, 0);
    capture(empty, &before);
    forget_message("adamas_cache_calibrate");
    expect_failure(adamas_cache_calibrate(empty, 0.6745f), ADAMAS_EINVAL, "empty", "empty cache");
    expect_unchanged(empty, &before, "empty calibrate");
    adamas_cache_destroy(empty);
}

Test(errors, calibrate_rejects_a_head_of_all_zero_keys_and_changes_nothing)
{
    for (uint32_t zero_head = 0; zero_head < N_KV; zero_head++) {
        adamas_cache *c = make_cache(ADAMAS_F32, 0);
        uint32_t n = 1 + rng_below(30);
        float k[MAX_TOKENS * PER_TOKEN], v[MAX_TOKENS * PER_TOKEN];
        rng_fill_normal(k, n * PER_TOKEN, 1.0f);
        rng_fill_normal(v, n * PER_TOKEN, 1.0f);
        for (uint32_t t = 0; t < n; t++)
            for (uint32_t i = 0; i < D; i++)
                k[t * PER_TOKEN + zero_head * D + i] = rng_below(2) ? 0.0f : -0.0f;
        expect(adamas_cache_append(c, k, v, n) == ADAMAS_OK, "%s", adamas_last_error());
        cache_state before;
        capture(c, &before);
        forget_message("adamas_cache_calibrate");
        expect_failure(adamas_cache_calibrate(c, 0.6745f), ADAMAS_EINVAL, "head", "zero keys");
        expect_unchanged(c, &before, "all-zero head");
        adamas_cache_destroy(c);
    }
}

/* ---------------------------------------------------------- accessors */

Test(errors, accessors_reject_null_and_out_of_range_heads_and_tokens)
{
    uint32_t n = 1 + rng_below(40);
    adamas_cache *c = make_cache(ADAMAS_F16, n);
    float th[4];
    uint64_t code[3];
    forget_message("adamas_cache_key_thresholds");
    expect_failure(adamas_cache_key_thresholds(NULL, 0, th), ADAMAS_EINVAL, "c", "c NULL");
    forget_message("adamas_cache_key_thresholds");
    expect_failure(adamas_cache_key_thresholds(c, 0, NULL), ADAMAS_EINVAL, "th", "th NULL");
    const uint32_t bad_heads[] = {N_KV, N_KV + rng_below(100), UINT32_MAX};
    for (int i = 0; i < 3; i++) {
        poison(th, sizeof th);
        forget_message("adamas_cache_key_thresholds");
        expect_failure(adamas_cache_key_thresholds(c, bad_heads[i], th), ADAMAS_EINVAL, "kv_head",
                       "bad head");
        expect(untouched(th, sizeof th), "th written");
        poison(code, sizeof code);
        forget_message("adamas_cache_code");
        expect_failure(adamas_cache_code(c, bad_heads[i], 0, code), ADAMAS_EINVAL, "kv_head",
                       "bad head");
        expect(untouched(code, sizeof code), "code written");
    }
    const uint32_t bad_tokens[] = {n, n + rng_below(100), MAX_TOKENS, UINT32_MAX};
    for (int i = 0; i < 4; i++) {
        poison(code, sizeof code);
        forget_message("adamas_cache_code");
        expect_failure(adamas_cache_code(c, rng_below(N_KV), bad_tokens[i], code), ADAMAS_EINVAL,
                       "token", "bad token");
        expect(untouched(code, sizeof code), "code written");
    }
    forget_message("adamas_cache_code");
    expect_failure(adamas_cache_code(NULL, 0, 0, code), ADAMAS_EINVAL, "c", "c NULL");
    forget_message("adamas_cache_code");
    expect_failure(adamas_cache_code(c, 0, 0, NULL), ADAMAS_EINVAL, "code", "code NULL");
    adamas_cache_destroy(c);
}

/* ---------------------------------------------------------------- decode */

typedef struct {
    float out[N_HEADS * D + 4];
    uint32_t selected[N_HEADS * 64 + 4];
} decode_outputs;

static void poison_outputs(decode_outputs *o)
{
    poison(o, sizeof *o);
}

static void expect_outputs_untouched(const decode_outputs *o, const char *what)
{
    expect(untouched(o->out, sizeof o->out), "%s: out written", what);
    expect(untouched(o->selected, sizeof o->selected), "%s: selected written", what);
}

/* adamas_decode fails with EINVAL naming `word`, writes nothing, changes nothing. */
static void expect_decode_rejected(const adamas_cache *c, const adamas_decode_params *p,
                                   const float *q, const char *word, const char *what)
{
    cache_state before;
    capture(c, &before);
    decode_outputs o;
    poison_outputs(&o);
    forget_message("adamas_decode");
    expect_failure(adamas_decode(c, p, q, o.out, o.selected), ADAMAS_EINVAL, word, what);
    expect_outputs_untouched(&o, what);
    expect_unchanged(c, &before, what);
}

Test(errors, decode_rejects_null_pointers_and_an_empty_cache)
{
    adamas_cache *c = make_cache(ADAMAS_F32, 20 + rng_below(40));
    adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 16);
    decode_outputs o;
    poison_outputs(&o);
    forget_message("adamas_decode");
    expect_failure(adamas_decode(NULL, &p, probe_query, o.out, o.selected), ADAMAS_EINVAL, "c",
                   "c NULL");
    expect_outputs_untouched(&o, "c NULL");
    expect_decode_rejected(c, NULL, probe_query, "p", "p NULL");
    expect_decode_rejected(c, &p, NULL, "q", "q NULL");
    forget_message("adamas_decode");
    expect_failure(adamas_decode(c, &p, probe_query, NULL, o.selected), ADAMAS_EINVAL, "out",
                   "out NULL");
    expect_outputs_untouched(&o, "out NULL");
    adamas_cache_destroy(c);

    adamas_cache *empty = make_cache(ADAMAS_F16, 0);
    for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
        adamas_decode_params ps = adamas_decode_params_default((adamas_selector)s, 16);
        ps.page_size = 0;
        expect_decode_rejected(empty, &ps, probe_query, "empty", "empty cache");
    }
    adamas_cache_destroy(empty);
}

Test(errors, decode_rejects_a_non_finite_query_anywhere)
{
    adamas_cache *c = make_cache(ADAMAS_BF16, 1 + rng_below(60));
    for (int trial = 0; trial < 10; trial++) {
        adamas_decode_params p =
            adamas_decode_params_default((adamas_selector)rng_below(5), 8 + rng_below(8));
        p.page_size = 0;
        float q[N_HEADS * D];
        memcpy(q, probe_query, sizeof q);
        q[rng_below(N_HEADS * D)] = nonfinite();
        expect_decode_rejected(c, &p, q, "q", "non-finite q");
    }
    adamas_cache_destroy(c);
}

Test(errors, decode_rejects_an_unknown_selector)
{
    adamas_cache *c = make_cache(ADAMAS_F32, 1 + rng_below(60));
    const int bad[] = {5, 6, 100, -1};
    for (int i = 0; i < 4; i++) {
        adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 16);
        p.selector = (adamas_selector)bad[i];
        expect_decode_rejected(c, &p, probe_query, "selector", "unknown selector");
    }
    adamas_cache_destroy(c);
}

Test(errors, decode_rejects_a_quest_page_size_that_differs_from_the_cache)
{
    /* page_size 4 in the cache: 0 and 4 are accepted, anything else is not, whether
     * or not the cache is longer than the budget */
    for (uint32_t n = 10; n <= 60; n += 50) {
        adamas_cache *c = make_cache(ADAMAS_F16, n);
        const uint32_t bad[] = {1, 3, 5, 16, UINT32_MAX};
        for (int i = 0; i < 5; i++) {
            adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_QUEST, 16);
            p.page_size = bad[i];
            expect_decode_rejected(c, &p, probe_query, "page_size", "page_size");
        }
        decode_outputs o;
        for (uint32_t ok = 0; ok <= 4; ok += 4) {
            adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_QUEST, 16);
            p.page_size = ok;
            expect(adamas_decode(c, &p, probe_query, o.out, o.selected) == ADAMAS_OK,
                   "page_size %u: %s", ok, adamas_last_error());
        }
        adamas_cache_destroy(c);
    }
}

Test(errors, decode_rejects_a_budget_not_above_the_forced_set)
{
    const uint32_t n = 40 + rng_below(24);
    adamas_cache *c = make_cache((adamas_dtype)rng_below(3), n);
    for (int s = 0; s < 2; s++) { /* ADAMAS, ORACLE: B <= sink + recent */
        adamas_selector sel = s ? ADAMAS_SELECT_ORACLE : ADAMAS_SELECT_ADAMAS;
        adamas_decode_params p = adamas_decode_params_default(sel, 0);
        p.sink = rng_below(10);
        p.recent = rng_below(10);
        p.rerank = rng_below(4);
        p.budget = rng_below(p.sink + p.recent + 1); /* 0 .. sink + recent */
        expect_decode_rejected(c, &p, probe_query, "budget", "budget <= sink + recent");
        p.sink = UINT32_MAX; /* sink + recent must not wrap around */
        p.budget = 30;
        expect_decode_rejected(c, &p, probe_query, "budget", "sink near UINT32_MAX");
        /* the same parameters are fine for a cache not longer than the budget */
        p.sink = 30;
        p.budget = n;
        decode_outputs o;
        expect(adamas_decode(c, &p, probe_query, o.out, o.selected) == ADAMAS_OK,
               "n <= budget: %s", adamas_last_error());
    }
    adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_STREAMING, 0);
    p.sink = rng_below(20);
    p.budget = rng_below(p.sink + 1); /* B <= sink */
    expect_decode_rejected(c, &p, probe_query, "budget", "budget <= sink");
    p = adamas_decode_params_default(ADAMAS_SELECT_QUEST, rng_below(4)); /* B < page_size 4 */
    p.page_size = 0;
    expect_decode_rejected(c, &p, probe_query, "budget", "budget < page_size");
    adamas_cache_destroy(c);
}

Test(errors, decode_ws_rejects_what_decode_rejects_and_changes_nothing)
{
    adamas_workspace *ws = NULL;
    forget_message("adamas_workspace_create");
    expect_failure(adamas_workspace_create(NULL), ADAMAS_EINVAL, "out", "out NULL");
    expect(adamas_workspace_create(&ws) == ADAMAS_OK && ws, "%s", adamas_last_error());
    adamas_cache *c = make_cache(ADAMAS_F16, 30 + rng_below(30));
    cache_state before;
    capture(c, &before);
    adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, 16);
    p.sink = 20; /* not below the budget */
    float q[N_HEADS * D];
    memcpy(q, probe_query, sizeof q);
    struct {
        const adamas_cache *c;
        const adamas_decode_params *p;
        const float *q;
        int null_out;
        const char *word;
    } cases[] = {{NULL, &p, q, 0, "c"},
                 {c, NULL, q, 0, "p"},
                 {c, &p, NULL, 0, "q"},
                 {c, &p, q, 1, "out"},
                 {c, &p, q, 0, "budget"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        decode_outputs o;
        poison_outputs(&o);
        forget_message("adamas_decode_ws");
        expect_failure(adamas_decode_ws(cases[i].c, cases[i].p, cases[i].q,
                                        cases[i].null_out ? NULL : o.out, o.selected, ws),
                       ADAMAS_EINVAL, cases[i].word, cases[i].word);
        expect_outputs_untouched(&o, cases[i].word);
        expect_unchanged(c, &before, cases[i].word);
    }
    /* the workspace still serves a valid step, with the same bits as adamas_decode */
    p.sink = 0;
    decode_outputs a, b;
    expect(adamas_decode_ws(c, &p, q, a.out, a.selected, ws) == ADAMAS_OK, "%s",
           adamas_last_error());
    expect(adamas_decode(c, &p, q, b.out, b.selected) == ADAMAS_OK, "%s", adamas_last_error());
    expect(memcmp(a.out, b.out, sizeof(float) * N_HEADS * D) == 0, "outputs differ");
    expect(memcmp(a.selected, b.selected, sizeof(uint32_t) * N_HEADS * 16) == 0,
           "selections differ");
    adamas_workspace_destroy(ws);
    adamas_workspace_destroy(NULL);
    adamas_cache_destroy(c);
}

Test(errors, a_negative_thread_count_is_rejected)
{
    int was = adamas_get_num_threads();
    const int bad[] = {-1, -2, INT32_MIN};
    for (int i = 0; i < 3; i++) {
        forget_message("adamas_set_num_threads");
        expect_failure(adamas_set_num_threads(bad[i]), ADAMAS_EINVAL, "n", "negative n");
        expect(adamas_get_num_threads() == was, "thread count changed to %d",
               adamas_get_num_threads());
    }
}

Test(errors, cache_distances_rejects_null_bad_heads_an_empty_cache_and_a_non_finite_query)
{
    const uint32_t n = 1 + rng_below(40);
    adamas_cache *c = make_cache(ADAMAS_BF16, n);
    uint16_t dist[MAX_TOKENS + 4];
    float q[D];
    memcpy(q, probe_query, sizeof q);
    struct {
        const adamas_cache *c;
        const float *q;
        uint32_t head;
        int null_dist;
        const char *word;
    } cases[] = {{NULL, q, 0, 0, "c"},
                 {c, NULL, 0, 0, "q"},
                 {c, q, 0, 1, "dist"},
                 {c, q, N_HEADS, 0, "head"},
                 {c, q, UINT32_MAX, 0, "head"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        poison(dist, sizeof dist);
        forget_message("adamas_cache_distances");
        expect_failure(adamas_cache_distances(cases[i].c, cases[i].q, cases[i].head,
                                              cases[i].null_dist ? NULL : dist),
                       ADAMAS_EINVAL, cases[i].word, cases[i].word);
        expect(untouched(dist, sizeof dist), "%s: dist written", cases[i].word);
    }
    q[rng_below(D)] = nonfinite();
    poison(dist, sizeof dist);
    forget_message("adamas_cache_distances");
    expect_failure(adamas_cache_distances(c, q, rng_below(N_HEADS), dist), ADAMAS_EINVAL, "q",
                   "non-finite q");
    expect(untouched(dist, sizeof dist), "non-finite q: dist written");
    adamas_cache_destroy(c);

    adamas_cache *empty = make_cache(ADAMAS_F32, 0);
    poison(dist, sizeof dist);
    forget_message("adamas_cache_distances");
    expect_failure(adamas_cache_distances(empty, probe_query, 0, dist), ADAMAS_EINVAL, "empty",
                   "empty cache");
    expect(untouched(dist, sizeof dist), "empty cache: dist written");
    adamas_cache_destroy(empty);
}

/* ---------------------------------------------------------------- backends */

static const char *const unknown_backends[] = {"gpu", "CPU", "cuda ", "rocm", "metal", "cpu0"};
#define N_UNKNOWN_BACKENDS (sizeof unknown_backends / sizeof unknown_backends[0])

Test(errors, set_backend_rejects_unknown_names_and_keeps_the_previous_choice)
{
    expect(adamas_set_backend("cpu") == ADAMAS_OK, "%s", adamas_last_error());
    for (size_t i = 0; i < N_UNKNOWN_BACKENDS; i++) {
        forget_message("adamas_set_backend");
        expect_failure(adamas_set_backend(unknown_backends[i]), ADAMAS_EINVAL, "adamas_set_backend",
                       unknown_backends[i]);
        expect(strstr(adamas_last_error(), unknown_backends[i]), "message \"%s\" lacks \"%s\"",
               adamas_last_error(), unknown_backends[i]);
        expect(strcmp(adamas_backend_name(), "cpu") == 0, "backend changed to %s",
               adamas_backend_name());
    }
    forget_message("adamas_set_backend");
    int st = adamas_set_backend("cuda");
    if (st != ADAMAS_OK) { /* no module or no device here */
        expect_failure(st, ADAMAS_ENOTSUP, "cuda", "cuda unavailable");
        expect(strcmp(adamas_backend_name(), "cpu") == 0, "backend changed to %s",
               adamas_backend_name());
    }
    expect(adamas_cache_backend(NULL) && adamas_cache_backend(NULL)[0] == 0,
           "adamas_cache_backend(NULL) = \"%s\"", adamas_cache_backend(NULL));
}

Test(errors, an_unknown_backend_in_the_environment_fails_cache_creation_until_fixed)
{
    const char *name = unknown_backends[rng_below(N_UNKNOWN_BACKENDS)];
    setenv("ADAMAS_BACKEND", name, 1);
    expect(strcmp(adamas_backend_name(), "none") == 0, "ADAMAS_BACKEND=%s: backend %s", name,
           adamas_backend_name());
    adamas_cache_config cfg = adamas_cache_config_default(2, 1, 32, 10);
    for (int rep = 0; rep < 2; rep++) {
        adamas_cache *sentinel = (adamas_cache *)&cfg, *c = sentinel;
        forget_message("adamas_cache_create");
        expect_failure(adamas_cache_create(&cfg, &c), ADAMAS_EINVAL, "ADAMAS_BACKEND", name);
        expect(c == sentinel, "*out written");
    }
    setenv("ADAMAS_BACKEND", "cpu", 1);
    adamas_cache *c;
    expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "after fixing ADAMAS_BACKEND: %s",
           adamas_last_error());
    expect(strcmp(adamas_cache_backend(c), "cpu") == 0, "backend %s", adamas_cache_backend(c));
    adamas_cache_destroy(c);
}

/* A magnitude just beyond ADAMAS_MAX_MAGNITUDE, either sign. */
static float too_large(void)
{
    float x = nextafterf(ADAMAS_MAX_MAGNITUDE, INFINITY) * (1.0f + rng_uniform(0.0f, 1e6f));
    return rng_below(2) ? x : -x;
}

Test(errors, values_beyond_the_magnitude_limit_are_refused_everywhere)
{
    float x[64];
    rng_fill_normal(x, 64, 1.0f);
    size_t at = rng_below(64);
    x[at] = too_large();
    float before[64];
    memcpy(before, x, sizeof x);
    forget_message("adamas_hadamard_f32");
    expect_failure(adamas_hadamard_f32(x, 64), ADAMAS_EINVAL, "ADAMAS_MAX_MAGNITUDE", "hadamard");
    expect(memcmp(x, before, sizeof x) == 0, "hadamard changed x");

    const float th[3] = {-1.0f, 0.0f, 1.0f};
    uint64_t code[2];
    poison(code, sizeof code);
    forget_message("adamas_encode_2bit");
    expect_failure(adamas_encode_2bit(x, 64, th, code), ADAMAS_EINVAL, "ADAMAS_MAX_MAGNITUDE",
                   "encode");
    expect(untouched(code, sizeof code), "encode wrote its output");

    adamas_cache *c = make_cache((adamas_dtype)(1 + rng_below(2)), 1 + rng_below(60));
    adamas_decode_params p = adamas_decode_params_default((adamas_selector)rng_below(5), 8);
    p.page_size = 0;
    float q[N_HEADS * D];
    memcpy(q, probe_query, sizeof q);
    q[rng_below(N_HEADS * D)] = too_large();
    expect_decode_rejected(c, &p, q, "q", "query beyond the limit");
    adamas_cache_destroy(c);

    adamas_cache_config cfg = adamas_cache_config_default(1, 1, 16, 4);
    cfg.kv_dtype = rng_below(2) ? ADAMAS_F32 : ADAMAS_BF16; /* both reach past the limit */
    expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "%s", adamas_last_error());
    float k[16] = {0}, v[16] = {0};
    (rng_below(2) ? k : v)[rng_below(16)] = too_large();
    forget_message("adamas_cache_append");
    expect_failure(adamas_cache_append(c, k, v, 1), ADAMAS_EINVAL, "ADAMAS_MAX_MAGNITUDE",
                   "append");
    expect(adamas_cache_len(c) == 0, "append stored a token");
    adamas_cache_destroy(c);
}

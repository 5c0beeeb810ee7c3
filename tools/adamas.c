/*
 * adamas - command-line front end of the library.
 *
 *   adamas demo [options]   decode one step from a synthetic long-context cache with
 *                           every selector and print speed and accuracy
 *   adamas info             version, kernels in use, what this build has
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adamas.h"

/* ------------------------------------------------------------------ helpers */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* xoshiro-style generator; cheap approximately-normal draws (sum of 4 uniforms,
 * unit variance) keep building a 32K-token cache quick. */
typedef struct {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float rng_gauss(rng *r)
{
    uint64_t x = rng_next(r);
    float sum = (float)(x & 0xffff) + (float)((x >> 16) & 0xffff) + (float)((x >> 32) & 0xffff) +
                (float)(x >> 48);
    return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

static int fail(const char *what, int status)
{
    fprintf(stderr, "adamas: %s: %s\n  %s\n", what, adamas_strerror(status), adamas_last_error());
    return 1;
}

/* --------------------------------------------------------------------- demo */

typedef struct {
    uint32_t tokens, heads, kv_heads, dim;
    adamas_dtype dtype;
    uint32_t budgets[8], n_budgets;
    uint32_t reps;
    uint64_t seed;
} demo_options;

static void demo_usage(FILE *f)
{
    fprintf(f,
            "usage: adamas demo [options]\n"
            "\n"
            "Builds a synthetic long-context KV cache whose keys carry the structure of real\n"
            "models (an attention sink, a few needles that matter to the query, outlier\n"
            "channels), decodes one step with every selector and prints, per selector and\n"
            "budget: time per decode step, the share of full-attention probability mass the\n"
            "selected tokens hold, and the output error against full attention.\n"
            "\n"
            "options:\n"
            "  --tokens N      cached tokens (default 32768)\n"
            "  --heads H       query heads (default 32)\n"
            "  --kv-heads G    key/value heads (default = heads)\n"
            "  --dim D         head dimension, power of two 16..1024 (default 128)\n"
            "  --dtype T       f16, bf16 or f32 storage (default f16)\n"
            "  --budgets LIST  comma-separated budgets (default 64,128,256)\n"
            "  --reps R        timed repetitions per row; the median is shown (default 3)\n"
            "  --seed S        random seed (default 1)\n"
            "  -h, --help      this text\n");
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_demo_options(int argc, char **argv, demo_options *o)
{
    *o = (demo_options){.tokens = 32768, .heads = 32, .kv_heads = 0, .dim = 128,
                        .dtype = ADAMAS_F16, .budgets = {64, 128, 256}, .n_budgets = 3,
                        .reps = 3, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            demo_usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "adamas demo: %s needs a value (see --help)\n", a);
            return -1;
        }
        int bad = 0;
        if (!strcmp(a, "--tokens"))
            bad = parse_u32(v, &o->tokens) || o->tokens == 0;
        else if (!strcmp(a, "--heads"))
            bad = parse_u32(v, &o->heads) || o->heads == 0;
        else if (!strcmp(a, "--kv-heads"))
            bad = parse_u32(v, &o->kv_heads);
        else if (!strcmp(a, "--dim"))
            bad = parse_u32(v, &o->dim);
        else if (!strcmp(a, "--reps"))
            bad = parse_u32(v, &o->reps) || o->reps == 0;
        else if (!strcmp(a, "--seed"))
            o->seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f16"))
                o->dtype = ADAMAS_F16;
            else if (!strcmp(v, "bf16"))
                o->dtype = ADAMAS_BF16;
            else if (!strcmp(v, "f32"))
                o->dtype = ADAMAS_F32;
            else
                bad = 1;
        } else if (!strcmp(a, "--budgets")) {
            o->n_budgets = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); tok && !bad; tok = strtok(NULL, ",")) {
                if (o->n_budgets == 8 || parse_u32(tok, &o->budgets[o->n_budgets]) ||
                    o->budgets[o->n_budgets] == 0)
                    bad = 1;
                o->n_budgets++;
            }
            bad |= o->n_budgets == 0;
        } else {
            fprintf(stderr, "adamas demo: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "adamas demo: bad value \"%s\" for %s (see --help)\n", v, a);
            return -1;
        }
        i++;
    }
    if (o->kv_heads == 0)
        o->kv_heads = o->heads;
    return 0;
}

/* Stored value of x in the cache's dtype, widened back to f32. */
static float as_stored(float x, adamas_dtype t)
{
    if (t == ADAMAS_F16)
        return adamas_f16_to_f32(adamas_f32_to_f16(x));
    if (t == ADAMAS_BF16)
        return adamas_bf16_to_f32(adamas_f32_to_bf16(x));
    return x;
}

/* The synthetic workload: one query per head, keys and values per kv head, and the
 * exact full-attention logits of every query head over every token. */
typedef struct {
    const demo_options *o;
    float *q;       /* [heads][dim]                                   */
    double *logits; /* [heads][tokens] q.k/sqrt(d) over stored keys   */
    double *p_full; /* [heads][tokens] full-attention probabilities   */
} workload;

/* Keys: N(0, 2^2) per dimension plus outlier channels of mean 12 (as real models show,
 * and which the Hadamard transform spreads out).  Some keys are pulled toward the first
 * query head of their group, to a logit of `pull`: token 0 (an attention sink), 8
 * needles per kv head at random depths, and passages of 8 to 24 consecutive tokens
 * (one per 2048 tokens on average) a little.
 * Queries: N(0, 0.4^2).  Values: N(0, 1). */
static int build_cache(adamas_cache *cache, workload *w, rng *r)
{
    const demo_options *o = w->o;
    const uint32_t d = o->dim, g_size = o->heads / o->kv_heads, chunk = 1024;
    const float key_scale = 2.0f, query_scale = 0.4f, outlier = 12.0f;
    enum { N_NEEDLES = 8 };
    uint32_t needles[64][N_NEEDLES]; /* [kv_heads][N_NEEDLES] */
    uint32_t passage_left[64] = {0};  /* [kv_heads] tokens left in a relevant passage */
    float passage_pull[64];

    for (size_t i = 0; i < (size_t)o->heads * d; i++)
        w->q[i] = query_scale * rng_gauss(r);
    for (uint32_t g = 0; g < o->kv_heads; g++)
        for (int k = 0; k < N_NEEDLES; k++)
            needles[g][k] = 1 + (uint32_t)(rng_next(r) % (o->tokens - 1));

    float *k = malloc((size_t)chunk * o->kv_heads * d * sizeof *k);
    float *v = malloc((size_t)chunk * o->kv_heads * d * sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        fprintf(stderr, "adamas demo: out of memory\n");
        return 1;
    }
    double t0 = now_seconds();
    for (uint32_t start = 0; start < o->tokens; start += chunk) {
        uint32_t m = o->tokens - start < chunk ? o->tokens - start : chunk;
        for (uint32_t t = 0; t < m; t++)
            for (uint32_t g = 0; g < o->kv_heads; g++) {
                float *kr = k + ((size_t)t * o->kv_heads + g) * d;
                float *vr = v + ((size_t)t * o->kv_heads + g) * d;
                for (uint32_t i = 0; i < d; i++) {
                    kr[i] = key_scale * rng_gauss(r) + (i % 32 == 7 ? outlier : 0.0f);
                    vr[i] = rng_gauss(r);
                }
                /* pull the key toward the group's first query: the sink, the needles,
                 * and a heavy tail of 2% somewhat relevant tokens */
                float pull = 0.0f;
                uint32_t token = start + t;
                if (passage_left[g] == 0 && rng_next(r) % 2048 == 0) {
                    passage_left[g] = 8 + (uint32_t)(rng_next(r) % 17);
                    passage_pull[g] = 4.0f + 4.0f * (float)(rng_next(r) >> 40) * 0x1p-24f;
                }
                if (passage_left[g] > 0) {
                    passage_left[g]--;
                    pull = passage_pull[g];
                }
                if (token == 0)
                    pull = 10.0f;
                for (int n = 0; n < N_NEEDLES; n++)
                    if (needles[g][n] == token)
                        pull = 11.0f + (float)n * 0.25f;
                if (pull > 0.0f) {
                    const float *qg = w->q + (size_t)g * g_size * d;
                    double qq = 0.0;
                    for (uint32_t i = 0; i < d; i++)
                        qq += (double)qg[i] * qg[i];
                    float beta = (float)(pull * sqrt((double)d) / qq);
                    for (uint32_t i = 0; i < d; i++)
                        kr[i] = 0.5f * kr[i] + beta * qg[i];
                }
            }
        int st = adamas_cache_append(cache, k, v, m);
        if (st) {
            free(k);
            free(v);
            return fail("adamas_cache_append", st);
        }
        /* full-attention logits over the keys as stored */
        for (uint32_t h = 0; h < o->heads; h++) {
            const float *qh = w->q + (size_t)h * d;
            uint32_t g = h / g_size;
            for (uint32_t t = 0; t < m; t++) {
                const float *kr = k + ((size_t)t * o->kv_heads + g) * d;
                double s = 0.0;
                for (uint32_t i = 0; i < d; i++)
                    s += (double)qh[i] * as_stored(kr[i], o->dtype);
                w->logits[(size_t)h * o->tokens + start + t] = s / sqrt((double)d);
            }
        }
        if ((start / chunk) % 8 == 7 || start + m == o->tokens) {
            fprintf(stderr, "\r  building cache: %u / %u tokens (%.1f s)", start + m, o->tokens,
                    now_seconds() - t0);
            fflush(stderr);
        }
    }
    fprintf(stderr, "\n");
    free(k);
    free(v);

    for (uint32_t h = 0; h < o->heads; h++) {
        const double *l = w->logits + (size_t)h * o->tokens;
        double *p = w->p_full + (size_t)h * o->tokens, max = -INFINITY, sum = 0.0;
        for (uint32_t t = 0; t < o->tokens; t++)
            max = l[t] > max ? l[t] : max;
        for (uint32_t t = 0; t < o->tokens; t++)
            sum += p[t] = exp(l[t] - max);
        for (uint32_t t = 0; t < o->tokens; t++)
            p[t] /= sum;
    }
    return 0;
}

typedef struct {
    const char *name;
    adamas_selector selector;
    uint32_t rerank;
    int calibrated;
} demo_row;

/* Decode `reps` times, keep the median time; then score the selection.  *full_ms is
 * the time of full attention: set by the FULL row, read by the others. */
static int run_row(const adamas_cache *cache, const workload *w, const demo_row *row,
                   uint32_t budget, const float *out_full, double *full_ms, float *out,
                   uint32_t *selected)
{
    const demo_options *o = w->o;
    adamas_decode_params p = adamas_decode_params_default(row->selector, budget);
    p.rerank = row->rerank;
    double times[64];
    uint32_t reps = o->reps < 64 ? o->reps : 64;
    for (uint32_t i = 0; i < reps; i++) {
        double t0 = now_seconds();
        int st = adamas_decode(cache, &p, w->q, out, selected);
        if (st)
            return fail("adamas_decode", st);
        times[i] = now_seconds() - t0;
    }
    qsort(times, reps, sizeof *times, cmp_double);
    double ms = 1e3 * times[reps / 2];
    if (row->selector == ADAMAS_SELECT_FULL)
        *full_ms = ms;

    double mass = 0.0, err = 0.0;
    const size_t d = o->dim;
    for (uint32_t h = 0; h < o->heads; h++) {
        const double *pf = w->p_full + (size_t)h * o->tokens;
        if (row->selector == ADAMAS_SELECT_FULL) {
            mass += 1.0;
        } else {
            for (uint32_t i = 0; i < budget; i++) {
                uint32_t t = selected[(size_t)h * budget + i];
                if (t != UINT32_MAX)
                    mass += pf[t];
            }
        }
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < d; i++) {
            double a = out[h * d + i], b = out_full[h * d + i];
            num += (a - b) * (a - b);
            den += b * b;
        }
        err += sqrt(num / den);
    }
    printf("%-20s %7u %10.3f %9.1fx %9.4f %12.2e\n", row->name,
           row->selector == ADAMAS_SELECT_FULL ? o->tokens : budget, ms, *full_ms / ms,
           mass / o->heads, err / o->heads);
    return 0;
}

static int demo_main(int argc, char **argv)
{
    demo_options o;
    if (parse_demo_options(argc, argv, &o))
        return 2;
    if (o.heads % o.kv_heads || o.kv_heads > 64) {
        fprintf(stderr, "adamas demo: heads must be a multiple of kv-heads (at most 64)\n");
        return 2;
    }
    adamas_cache_config cfg = adamas_cache_config_default(o.heads, o.kv_heads, o.dim, o.tokens);
    cfg.kv_dtype = o.dtype;
    adamas_cache *cache = NULL;
    int st = adamas_cache_create(&cfg, &cache);
    if (st)
        return fail("adamas_cache_create", st);

    uint32_t max_budget = 0;
    for (uint32_t i = 0; i < o.n_budgets; i++)
        max_budget = o.budgets[i] > max_budget ? o.budgets[i] : max_budget;
    size_t hd = (size_t)o.heads * o.dim;
    workload w = {.o = &o};
    w.q = malloc(hd * sizeof *w.q);
    w.logits = malloc((size_t)o.heads * o.tokens * sizeof *w.logits);
    w.p_full = malloc((size_t)o.heads * o.tokens * sizeof *w.p_full);
    float *out_full = malloc(hd * sizeof *out_full), *out = malloc(hd * sizeof *out);
    uint32_t *selected = malloc((size_t)o.heads * max_budget * sizeof *selected);
    int rc = 1;
    if (!w.q || !w.logits || !w.p_full || !out_full || !out || !selected) {
        fprintf(stderr, "adamas demo: out of memory\n");
        goto done;
    }

    const char *dtype_name = o.dtype == ADAMAS_F16 ? "f16" : o.dtype == ADAMAS_BF16 ? "bf16" : "f32";
    printf("adamas demo: %u tokens, %u query heads, %u kv heads, d=%u, %s KV, kernels: %s\n",
           o.tokens, o.heads, o.kv_heads, o.dim, dtype_name, adamas_isa_name());
    fflush(stdout);
    rng r = {o.seed};
    if (build_cache(cache, &w, &r))
        goto done;

    static const demo_row full_row = {"full", ADAMAS_SELECT_FULL, 0, 0};
    static const demo_row rows[] = {
        {"adamas", ADAMAS_SELECT_ADAMAS, 0, 0},
        {"adamas-rerank4", ADAMAS_SELECT_ADAMAS, 4, 0},
        {"oracle", ADAMAS_SELECT_ORACLE, 0, 0},
        {"quest", ADAMAS_SELECT_QUEST, 0, 0},
        {"streaming", ADAMAS_SELECT_STREAMING, 0, 0},
        {"adamas-calibrated", ADAMAS_SELECT_ADAMAS, 0, 1},
        {"adamas-cal-rerank4", ADAMAS_SELECT_ADAMAS, 4, 1},
    };
    const size_t n_rows = sizeof rows / sizeof rows[0];

    /* full attention first: the reference output and the time to beat */
    adamas_decode_params pf = adamas_decode_params_default(ADAMAS_SELECT_FULL, 0);
    if ((st = adamas_decode(cache, &pf, w.q, out_full, NULL))) {
        fail("adamas_decode", st);
        goto done;
    }
    double full_ms = 0.0;

    printf("\n%-20s %7s %10s %10s %9s %12s\n", "selector", "budget", "ms/step", "vs full",
           "mass", "out err");
    if (run_row(cache, &w, &full_row, 0, out_full, &full_ms, out, selected))
        goto done;
    int calibrated = 0;
    for (size_t i = 0; i < n_rows; i++) {
        if (rows[i].calibrated && !calibrated) {
            /* one-way: later rows see per-head thresholds */
            if ((st = adamas_cache_calibrate(cache, 0.6745f))) {
                fail("adamas_cache_calibrate", st);
                goto done;
            }
            calibrated = 1;
        }
        for (uint32_t b = 0; b < o.n_budgets; b++)
            if (run_row(cache, &w, &rows[i], o.budgets[b], out_full, &full_ms, out, selected))
                goto done;
    }
    printf("\nmass: share of full-attention probability on the selected tokens (mean over "
           "heads);\nout err: ||o - o_full|| / ||o_full||; times: median of %u decode steps.\n",
           o.reps);
    rc = 0;
done:
    free(w.q);
    free(w.logits);
    free(w.p_full);
    free(out_full);
    free(out);
    free(selected);
    adamas_cache_destroy(cache);
    return rc;
}

/* --------------------------------------------------------------------- info */

static int info_main(void)
{
    printf("adamas-c %d.%d.%d\n", ADAMAS_VERSION_MAJOR, ADAMAS_VERSION_MINOR,
           ADAMAS_VERSION_PATCH);
    printf("kernels in use: %s\n", adamas_isa_name());
    const char *isas[] = {"scalar", "avx2", "avx512", "neon"};
    printf("kernels available:");
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
        if (adamas_isa_available(isas[i]))
            printf(" %s", isas[i]);
    printf("\n");
    return 0;
}

/* --------------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: adamas <command> [options]\n"
               "\n"
               "commands:\n"
               "  demo    decode from a synthetic 32K-token cache with every selector and\n"
               "          print time per step, attention mass captured and output error\n"
               "  info    version and the SIMD kernels this machine runs\n"
               "\n"
               "`adamas <command> --help` describes a command's options.\n"
               "Environment: ADAMAS_ISA=scalar|avx2|avx512|neon forces the kernels.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "demo"))
        return demo_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info"))
        return info_main();
    fprintf(stderr, "adamas: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}

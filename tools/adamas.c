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

#include "cli.h"
#include "adamas.h"
#include "workload.h"

/* ------------------------------------------------------------------ helpers */

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

static int parse_demo_options(int argc, char **argv, demo_options *o)
{
    *o = (demo_options){.tokens = 32768, .heads = 32, .kv_heads = 0, .dim = 128,
                        .dtype = ADAMAS_F16, .budgets = {64, 128, 256}, .n_budgets = 3,
                        .reps = 3, .seed = 1};
    for (int i = 1; i < argc; i += 2) { /* every option takes one value */
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
            bad = cli_parse_u32(v, &o->tokens) || o->tokens == 0;
        else if (!strcmp(a, "--heads"))
            bad = cli_parse_u32(v, &o->heads) || o->heads == 0;
        else if (!strcmp(a, "--kv-heads"))
            bad = cli_parse_u32(v, &o->kv_heads);
        else if (!strcmp(a, "--dim"))
            bad = cli_parse_u32(v, &o->dim);
        else if (!strcmp(a, "--reps"))
            bad = cli_parse_u32(v, &o->reps) || o->reps == 0;
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
                if (o->n_budgets == 8 || cli_parse_u32(tok, &o->budgets[o->n_budgets]) ||
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
    }
    if (o->kv_heads == 0)
        o->kv_heads = o->heads;
    return 0;
}

typedef struct {
    const char *name;
    adamas_selector selector;
    uint32_t rerank;
    int calibrated;
} demo_row;

/* Decode `reps` times after one untimed step, keep the median time; then score the
 * selection.  *full_ms is
 * the time of full attention: set by the FULL row, read by the others. */
static int run_row(const adamas_cache *cache, const demo_options *o, const workload *w,
                   const demo_row *row, uint32_t budget, const float *out_full, double *full_ms, float *out,
                   uint32_t *selected)
{
    adamas_decode_params p = adamas_decode_params_default(row->selector, budget);
    p.rerank = row->rerank;
    double times[64];
    uint32_t reps = o->reps < 64 ? o->reps : 64;
    /* one step untimed: the first step of a shape grows the cache's workspace */
    int st = adamas_decode(cache, &p, w->q, out, selected);
    if (st)
        return fail("adamas_decode", st);
    for (uint32_t i = 0; i < reps; i++) {
        double t0 = cli_now();
        if ((st = adamas_decode(cache, &p, w->q, out, selected)))
            return fail("adamas_decode", st);
        times[i] = cli_now() - t0;
    }
    qsort(times, reps, sizeof *times, cli_cmp_double);
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
    if (o.heads % o.kv_heads || o.kv_heads > WORKLOAD_MAX_KV_HEADS) {
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
    workload w;
    const workload_config wcfg = {.tokens = o.tokens, .heads = o.heads, .kv_heads = o.kv_heads,
                                  .dim = o.dim, .dtype = o.dtype, .progress = 1};
    int w_st = workload_create(&w, &wcfg);
    float *out_full = malloc(hd * sizeof *out_full), *out = malloc(hd * sizeof *out);
    uint32_t *selected = malloc((size_t)o.heads * max_budget * sizeof *selected);
    int rc = 1;
    if (w_st || !out_full || !out || !selected) {
        fprintf(stderr, "adamas demo: out of memory\n");
        goto done;
    }

    const char *dtype_name = o.dtype == ADAMAS_F16 ? "f16" : o.dtype == ADAMAS_BF16 ? "bf16" : "f32";
    printf("adamas demo: %u tokens, %u query heads, %u kv heads, d=%u, %s KV, kernels: %s\n",
           o.tokens, o.heads, o.kv_heads, o.dim, dtype_name, adamas_isa_name());
    fflush(stdout);
    workload_rng r = {o.seed};
    if ((st = workload_fill(&w, &cache, 1, &r))) {
        if (st == ADAMAS_ENOMEM)
            fprintf(stderr, "adamas demo: out of memory\n");
        else
            fail("adamas_cache_append", st);
        goto done;
    }

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
    if (run_row(cache, &o, &w, &full_row, 0, out_full, &full_ms, out, selected))
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
            if (run_row(cache, &o, &w, &rows[i], o.budgets[b], out_full, &full_ms, out, selected))
                goto done;
    }
    printf("\nmass: share of full-attention probability on the selected tokens (mean over "
           "heads);\nout err: ||o - o_full|| / ||o_full||; times: median of %u decode steps.\n",
           o.reps);
    rc = 0;
done:
    workload_destroy(&w);
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

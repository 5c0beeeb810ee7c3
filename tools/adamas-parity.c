/*
 * adamas-parity - the CUDA backend against the CPU backend, on the same inputs.
 *
 * For each case (shape, storage dtype, metric, transform, calibration, and data:
 * random unit-scale, many ties, or the structured workload of `adamas demo`), one CPU
 * cache and one CUDA cache receive the same appends; then
 *   - every stored code (adamas_cache_code) must be the same bits,
 *   - every query head's code distances (adamas_cache_distances) the same values,
 *   - for every selector, decode's selected rows the same indices, and the outputs
 *     within a relative error of 1e-5 (structured data, whose logits are large: the
 *     test suites' bound, 1e-6 * (8 + largest scaled |q|.|k| sum), if larger).
 * Prints one table row per decode; exits 0 when everything matches, 1 on a mismatch,
 * 77 when no CUDA device (or module) is available, 2 on a usage or setup error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "adamas.h"
#include "workload.h"

#define EXIT_MISMATCH 1
#define EXIT_USAGE 2
#define EXIT_SKIP 77

/* ------------------------------------------------------------------ helpers */

static const char *dtype_name(adamas_dtype t)
{
    return t == ADAMAS_F16 ? "f16" : t == ADAMAS_BF16 ? "bf16" : "f32";
}

static const char *selector_name(adamas_selector s)
{
    static const char *names[] = {"adamas", "full", "oracle", "streaming", "quest"};
    return (unsigned)s <= ADAMAS_SELECT_QUEST ? names[s] : "?";
}

static float stored(float x, adamas_dtype t)
{
    if (t == ADAMAS_F16)
        return adamas_f16_to_f32(adamas_f32_to_f16(x));
    if (t == ADAMAS_BF16)
        return adamas_bf16_to_f32(adamas_f32_to_bf16(x));
    return x;
}

/* ------------------------------------------------------------------ cases */

typedef enum { DATA_RANDOM, DATA_TIES, DATA_STRUCTURED } data_kind;

typedef struct {
    const char *name;
    uint32_t heads, kv_heads, dim, tokens;
    adamas_dtype dtype;
    adamas_metric metric;
    adamas_transform transform;
    uint32_t page_size;
    data_kind data;
    int calibrate; /* after 2/3 of the tokens, then the rest appended */
} parity_case;

/* The full sweep; --quick keeps the cases marked small and shortens them. */
static const parity_case full_cases[] = {
    {"random", 32, 32, 128, 9000, ADAMAS_F16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
    {"gqa", 32, 8, 128, 20000, ADAMAS_F32, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
    {"xorw", 8, 2, 64, 5000, ADAMAS_BF16, ADAMAS_METRIC_XORW, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
    {"structured", 16, 4, 128, 33000, ADAMAS_F16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_STRUCTURED, 1},
    {"ties", 4, 1, 32, 3000, ADAMAS_F32, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_TIES, 0},
    {"calibrated", 8, 4, 256, 3000, ADAMAS_F16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 32,
     DATA_RANDOM, 1},
    {"d16", 2, 1, 16, 700, ADAMAS_F32, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
    {"d1024", 4, 1, 1024, 600, ADAMAS_BF16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
    {"no-hadamard", 4, 2, 128, 2000, ADAMAS_F32, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_NONE, 16,
     DATA_RANDOM, 1},
    {"group64", 64, 1, 128, 1500, ADAMAS_F16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
    {"d512-xorw", 2, 2, 512, 1200, ADAMAS_F32, ADAMAS_METRIC_XORW, ADAMAS_TRANSFORM_HADAMARD, 8,
     DATA_RANDOM, 1},
    {"group96", 96, 1, 1024, 300, ADAMAS_F16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
};

static const parity_case quick_cases[] = {
    {"random", 8, 8, 128, 1500, ADAMAS_F16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
    {"gqa", 8, 2, 64, 5000, ADAMAS_F32, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_RANDOM, 0},
    {"xorw", 4, 2, 32, 900, ADAMAS_BF16, ADAMAS_METRIC_XORW, ADAMAS_TRANSFORM_HADAMARD, 8,
     DATA_RANDOM, 1},
    {"structured", 8, 2, 128, 3000, ADAMAS_F16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_STRUCTURED, 1},
    {"ties", 4, 1, 16, 600, ADAMAS_F32, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_HADAMARD, 16,
     DATA_TIES, 0},
    {"d1024", 2, 1, 1024, 300, ADAMAS_BF16, ADAMAS_METRIC_L1, ADAMAS_TRANSFORM_NONE, 16,
     DATA_RANDOM, 1},
};

/* One decode step to compare. */
typedef struct {
    adamas_selector selector;
    uint32_t budget, sink, recent, rerank;
} parity_step;

/* Budgets and forced sets of every selector; a budget of 0 means "more than n". */
static const parity_step steps[] = {
    {ADAMAS_SELECT_ADAMAS, 128, 0, 1, 0},   {ADAMAS_SELECT_ADAMAS, 64, 4, 8, 0},
    {ADAMAS_SELECT_ADAMAS, 128, 0, 1, 4},   {ADAMAS_SELECT_ADAMAS, 256, 2, 2, 2},
    {ADAMAS_SELECT_ADAMAS, 0, 0, 1, 0},     {ADAMAS_SELECT_ORACLE, 128, 0, 1, 0},
    {ADAMAS_SELECT_ORACLE, 96, 3, 5, 0},    {ADAMAS_SELECT_STREAMING, 128, 4, 0, 0},
    {ADAMAS_SELECT_QUEST, 128, 0, 1, 0},    {ADAMAS_SELECT_QUEST, 100, 0, 1, 0},
    {ADAMAS_SELECT_FULL, 128, 0, 1, 0},
};

/* ------------------------------------------------------------------ state */

typedef struct {
    int verbose;
    int failures;
    workload_rng rng;
} run_state;

typedef struct {
    const parity_case *pc;
    adamas_cache *cpu, *gpu;
    float *keys;      /* [tokens][kv_heads][dim] as appended (for the logit bound) */
    uint32_t len;
    float *q;         /* [heads][dim] */
} case_state;

static float gauss(run_state *r)
{
    return workload_rng_gauss(&r->rng);
}

static int report_api(const char *what, int st)
{
    fprintf(stderr, "adamas-parity: %s: %s\n  %s\n", what, adamas_strerror(st),
            adamas_last_error());
    return st;
}

/* Both caches, the CPU one and the CUDA one, for pc. */
static int create_caches(const parity_case *pc, case_state *cs, run_state *r)
{
    adamas_cache_config cfg = adamas_cache_config_default(pc->heads, pc->kv_heads, pc->dim,
                                                          pc->tokens);
    cfg.kv_dtype = pc->dtype;
    cfg.metric = pc->metric;
    cfg.transform = pc->transform;
    cfg.page_size = pc->page_size;
    if (pc->data != DATA_STRUCTURED) {
        /* thresholds near the quartiles of unit-scale transformed data, jittered */
        float e = 0.6745f * (1.0f + 0.1f * gauss(r));
        float mid = 0.05f * gauss(r);
        const float th[3] = {mid - e, mid, mid + e};
        memcpy(cfg.q_thresholds, th, sizeof th);
        memcpy(cfg.k_thresholds, th, sizeof th);
        cfg.k_thresholds[0] -= 0.05f;
    }
    int st;
    if ((st = adamas_set_backend("cpu")) || (st = adamas_cache_create(&cfg, &cs->cpu)))
        return report_api("creating the CPU cache", st);
    if ((st = adamas_set_backend("cuda")) || (st = adamas_cache_create(&cfg, &cs->gpu)))
        return report_api("creating the CUDA cache", st);
    adamas_set_backend("cpu");
    cs->keys = malloc((size_t)pc->tokens * pc->kv_heads * pc->dim * sizeof *cs->keys);
    cs->q = malloc((size_t)pc->heads * pc->dim * sizeof *cs->q);
    if (!cs->keys || !cs->q) {
        fprintf(stderr, "adamas-parity: out of memory\n");
        return ADAMAS_ENOMEM;
    }
    return ADAMAS_OK;
}

static void destroy_caches(case_state *cs)
{
    adamas_cache_destroy(cs->cpu);
    adamas_cache_destroy(cs->gpu);
    free(cs->keys);
    free(cs->q);
}

/* Append tokens [cs->len, end) of random or tied data to both, in chunks of random
 * size. */
static int append_synthetic(case_state *cs, uint32_t end, run_state *r)
{
    const parity_case *pc = cs->pc;
    const size_t row = (size_t)pc->kv_heads * pc->dim;
    enum { POOL = 4 };
    static float pool[POOL][ADAMAS_MAX_HEAD_DIM];
    if (pc->data == DATA_TIES && cs->len == 0)
        for (int p = 0; p < POOL; p++)
            for (uint32_t i = 0; i < pc->dim; i++)
                pool[p][i] = gauss(r);
    float *v = malloc(row * 1024 * sizeof *v);
    if (!v)
        return ADAMAS_ENOMEM;
    int st = ADAMAS_OK;
    while (cs->len < end && !st) {
        uint32_t n = 1 + (uint32_t)(workload_rng_next(&r->rng) % 1024);
        n = n < end - cs->len ? n : end - cs->len;
        float *k = cs->keys + (size_t)cs->len * row;
        for (uint32_t t = 0; t < n; t++)
            for (uint32_t g = 0; g < pc->kv_heads; g++) {
                float *kr = k + ((size_t)t * pc->kv_heads + g) * pc->dim;
                /* ties: every page repeats the same pattern of pool vectors */
                const float *src = pool[(cs->len + t) % POOL];
                for (uint32_t i = 0; i < pc->dim; i++)
                    kr[i] = pc->data == DATA_TIES ? src[i] : gauss(r);
            }
        for (size_t i = 0; i < row * n; i++)
            v[i] = gauss(r);
        if ((st = adamas_cache_append(cs->cpu, k, v, n)))
            report_api("CPU append", st);
        else if ((st = adamas_cache_append(cs->gpu, k, v, n)))
            report_api("CUDA append", st);
        else
            cs->len += n;
    }
    free(v);
    return st;
}

/* The structured workload into both caches (it draws the query too). */
static int append_structured(case_state *cs, run_state *r)
{
    const parity_case *pc = cs->pc;
    workload_config wc = {pc->tokens, pc->heads, pc->kv_heads, pc->dim, pc->dtype, 0};
    workload w;
    if (workload_create(&w, &wc))
        return ADAMAS_ENOMEM;
    adamas_cache *both[2] = {cs->cpu, cs->gpu};
    int st = workload_fill(&w, both, 2, &r->rng);
    if (st) {
        report_api("workload append", st);
    } else {
        memcpy(cs->q, w.q, (size_t)pc->heads * pc->dim * sizeof *cs->q);
        cs->len = pc->tokens;
    }
    workload_destroy(&w);
    return st;
}

/* ------------------------------------------------------------------ checks */

typedef struct {
    int codes_ok, dist_ok;
    uint32_t codes_checked;
} store_result;

/* Codes of both caches, all tokens (or, for long caches, the first and last 1024 of
 * each kv head and every 7th between); distances of every query head. */
static int check_store(case_state *cs, store_result *res, run_state *r)
{
    const parity_case *pc = cs->pc;
    const size_t words = adamas_code_words(pc->dim);
    uint64_t a[32], b[32];
    res->codes_ok = res->dist_ok = 1;
    res->codes_checked = 0;
    for (uint32_t g = 0; g < pc->kv_heads; g++)
        for (uint32_t t = 0; t < cs->len; t++) {
            int all = (size_t)cs->len * pc->kv_heads <= 40000;
            if (!all && t >= 1024 && t + 1024 < cs->len && t % 7)
                continue;
            int st;
            if ((st = adamas_cache_code(cs->cpu, g, t, a)) ||
                (st = adamas_cache_code(cs->gpu, g, t, b)))
                return report_api("adamas_cache_code", st);
            res->codes_checked++;
            if (memcmp(a, b, words * sizeof *a)) {
                if (res->codes_ok || r->verbose)
                    fprintf(stderr, "  %s: code of kv head %u token %u differs (word 0: %016llx "
                                    "vs %016llx)\n",
                            pc->name, g, t, (unsigned long long)a[0], (unsigned long long)b[0]);
                res->codes_ok = 0;
            }
        }
    uint16_t *da = malloc(cs->len * sizeof *da), *db = malloc(cs->len * sizeof *db);
    float *q = malloc(pc->dim * sizeof *q);
    if (!da || !db || !q) {
        free(da);
        free(db);
        free(q);
        return ADAMAS_ENOMEM;
    }
    int st = ADAMAS_OK;
    for (uint32_t h = 0; h < pc->heads && !st; h++) {
        for (uint32_t i = 0; i < pc->dim; i++)
            q[i] = gauss(r);
        if ((st = adamas_cache_distances(cs->cpu, q, h, da)) ||
            (st = adamas_cache_distances(cs->gpu, q, h, db))) {
            report_api("adamas_cache_distances", st);
            break;
        }
        for (uint32_t t = 0; t < cs->len; t++)
            if (da[t] != db[t]) {
                if (res->dist_ok || r->verbose)
                    fprintf(stderr, "  %s: distance of head %u to token %u: CPU %u, CUDA %u\n",
                            pc->name, h, t, da[t], db[t]);
                res->dist_ok = 0;
                break;
            }
    }
    free(da);
    free(db);
    free(q);
    return st;
}

typedef struct {
    int selected_ok;
    double max_rel, tol;
    double cpu_ms, gpu_ms;
} step_result;

/* Largest scaled |q|.|k| sum of head h over the keys as stored (the logit bound). */
static double logit_l1(const case_state *cs, const float *q, uint32_t h, const uint32_t *sel,
                       uint32_t budget)
{
    const parity_case *pc = cs->pc;
    const uint32_t g = h / (pc->heads / pc->kv_heads);
    double worst = 0.0;
    for (uint32_t i = 0; i < (sel ? budget : cs->len); i++) {
        uint32_t t = sel ? sel[i] : i;
        if (t == UINT32_MAX)
            break;
        const float *k = cs->keys + ((size_t)t * pc->kv_heads + g) * pc->dim;
        double s = 0.0;
        for (uint32_t j = 0; j < pc->dim; j++)
            s += fabs((double)q[j] * stored(k[j], pc->dtype));
        worst = fmax(worst, s / sqrt((double)pc->dim));
    }
    return worst;
}

static int check_step(case_state *cs, const parity_step *ps, uint32_t budget, step_result *res,
                      run_state *r)
{
    const parity_case *pc = cs->pc;
    const size_t out_n = (size_t)pc->heads * pc->dim, sel_n = (size_t)pc->heads * budget;
    adamas_decode_params p = adamas_decode_params_default(ps->selector, budget);
    p.sink = ps->sink;
    p.recent = ps->recent;
    p.rerank = ps->rerank;
    p.page_size = pc->page_size;
    float *oa = malloc(out_n * sizeof *oa), *ob = malloc(out_n * sizeof *ob);
    uint32_t *sa = malloc((sel_n + 1) * sizeof *sa), *sb = malloc((sel_n + 1) * sizeof *sb);
    if (!oa || !ob || !sa || !sb) {
        free(oa);
        free(ob);
        free(sa);
        free(sb);
        return ADAMAS_ENOMEM;
    }
    memset(sa, 0xa5, (sel_n + 1) * sizeof *sa);
    memset(sb, 0x5a, (sel_n + 1) * sizeof *sb);
    int st;
    double t0 = cli_now();
    if ((st = adamas_decode(cs->cpu, &p, cs->q, oa, sa))) {
        report_api("CPU decode", st);
        goto done;
    }
    double t1 = cli_now();
    if ((st = adamas_decode(cs->gpu, &p, cs->q, ob, sb))) {
        report_api("CUDA decode", st);
        goto done;
    }
    res->cpu_ms = 1e3 * (t1 - t0);
    res->gpu_ms = 1e3 * (cli_now() - t1);

    res->selected_ok = 1;
    const int full = ps->selector == ADAMAS_SELECT_FULL;
    for (size_t i = 0; i < sel_n && !full; i++)
        if (sa[i] != sb[i]) {
            fprintf(stderr, "  %s %s B=%u: selected[%zu][%zu]: CPU %u, CUDA %u\n", pc->name,
                    selector_name(ps->selector), budget, i / budget, i % budget, sa[i], sb[i]);
            res->selected_ok = 0;
            if (!r->verbose)
                break;
        }
    if (full && (sb[0] != 0x5a5a5a5au || sa[0] != 0xa5a5a5a5u))
        res->selected_ok = 0; /* FULL writes no selected row */
    if (sa[sel_n] != 0xa5a5a5a5u || sb[sel_n] != 0x5a5a5a5au)
        res->selected_ok = 0; /* nothing past the rows */

    res->max_rel = 0.0;
    res->tol = 1e-5;
    for (uint32_t h = 0; h < pc->heads; h++) {
        double err = 0.0, norm = 0.0;
        for (uint32_t i = 0; i < pc->dim; i++) {
            double a = oa[(size_t)h * pc->dim + i], b = ob[(size_t)h * pc->dim + i];
            err += (a - b) * (a - b);
            norm += a * a;
        }
        double rel = norm > 0 ? sqrt(err / norm) : sqrt(err);
        if (!(rel <= res->max_rel))
            res->max_rel = isnan(rel) ? INFINITY : fmax(rel, res->max_rel);
        if (pc->data == DATA_STRUCTURED) {
            const float *q = cs->q + (size_t)h * pc->dim;
            double l1 = logit_l1(cs, q, h, full ? NULL : sa + (size_t)h * budget, budget);
            res->tol = fmax(res->tol, 1e-6 * (8.0 + l1));
        }
    }
done:
    free(oa);
    free(ob);
    free(sa);
    free(sb);
    return st;
}

/* ------------------------------------------------------------------ driver */

static int run_case(const parity_case *pc, run_state *r)
{
    case_state cs = {.pc = pc};
    int st = create_caches(pc, &cs, r);
    if (!st) {
        if (pc->data == DATA_STRUCTURED)
            st = append_structured(&cs, r);
        else
            st = append_synthetic(&cs, pc->calibrate ? pc->tokens * 2 / 3 : pc->tokens, r);
    }
    if (!st && pc->calibrate) {
        if ((st = adamas_cache_calibrate(cs.cpu, 0.6745f)))
            report_api("CPU calibrate", st);
        else if ((st = adamas_cache_calibrate(cs.gpu, 0.6745f)))
            report_api("CUDA calibrate", st);
        else if (pc->data != DATA_STRUCTURED)
            st = append_synthetic(&cs, pc->tokens, r);
    }
    store_result sr = {0};
    if (!st)
        st = check_store(&cs, &sr, r);
    if (st) {
        destroy_caches(&cs);
        return st;
    }
    if (pc->data != DATA_STRUCTURED)
        for (size_t i = 0; i < (size_t)pc->heads * pc->dim; i++)
            cs.q[i] = gauss(r);
    if (!sr.codes_ok || !sr.dist_ok)
        r->failures++;

    char shape[64];
    snprintf(shape, sizeof shape, "%ux%u d%u %s%s%s%s", pc->heads, pc->kv_heads, pc->dim,
             dtype_name(pc->dtype), pc->metric == ADAMAS_METRIC_XORW ? " xorw" : "",
             pc->transform == ADAMAS_TRANSFORM_NONE ? " raw" : "", pc->calibrate ? " cal" : "");
    for (size_t i = 0; i < sizeof steps / sizeof steps[0] && !st; i++) {
        const parity_step *ps = &steps[i];
        uint32_t budget = ps->budget ? ps->budget : cs.len + 5;
        step_result res = {0};
        if ((st = check_step(&cs, ps, budget, &res, r)))
            break;
        int ok = sr.codes_ok && sr.dist_ok && res.selected_ok && res.max_rel <= res.tol;
        if (!(res.selected_ok && res.max_rel <= res.tol))
            r->failures++;
        char sel[48];
        snprintf(sel, sizeof sel, "%s B=%u%s", selector_name(ps->selector), budget,
                 ps->budget ? "" : " (all)");
        if (ps->rerank > 1)
            snprintf(sel + strlen(sel), sizeof sel - strlen(sel), " R=%u", ps->rerank);
        if (ps->sink || (ps->recent != 1 && ps->selector != ADAMAS_SELECT_STREAMING))
            snprintf(sel + strlen(sel), sizeof sel - strlen(sel), " s%u/r%u", ps->sink,
                     ps->recent);
        printf("%-11s %-22s %6u  %-5s %-5s  %-28s %-5s %9.2e %8.1e %8.2f %7.2f  %s\n", pc->name,
               shape, cs.len, sr.codes_ok ? "same" : "DIFF", sr.dist_ok ? "same" : "DIFF", sel,
               res.selected_ok ? "same" : "DIFF", res.max_rel, res.tol, res.cpu_ms, res.gpu_ms,
               ok ? "ok" : "MISMATCH");
        fflush(stdout);
    }
    destroy_caches(&cs);
    return st;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: adamas-parity [--quick] [--seed N] [--verbose]\n"
            "\n"
            "Runs the same inputs through a CPU cache and a CUDA cache and checks that\n"
            "codes, code distances and every selector's selected tokens are identical and\n"
            "that outputs agree within 1e-5 relative (structured data with large logits:\n"
            "the test suites' bound scaled by the logits, if larger).  Cases cover head\n"
            "dims 16..1024, f32/f16/bf16 storage, GQA groups up to 96, both metrics, the\n"
            "no-Hadamard transform, calibration, ties, and the demo's structured workload;\n"
            "steps cover ADAMAS (with sink/recent and two-stage rerank), ORACLE, STREAMING,\n"
            "QUEST, FULL, and a budget above the cache length.\n"
            "\n"
            "  --quick      smaller caches and fewer cases (the test suite's run)\n"
            "  --seed N     seed of the random inputs (default 1)\n"
            "  --verbose    report every mismatch, not only the first of each check\n"
            "  --help       this text\n"
            "\n"
            "The CUDA module is found beside libadamas, or at ADAMAS_CUDA_MODULE.\n"
            "Exit status: 0 all identical, 1 a mismatch, 2 usage or setup error,\n"
            "77 no CUDA device or module (skipped).\n");
}

int main(int argc, char **argv)
{
    run_state r = {.rng = {1}};
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--verbose")) {
            r.verbose = 1;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            char *end;
            r.rng.s = strtoull(argv[++i], &end, 10);
            if (*end) {
                usage(stderr);
                return EXIT_USAGE;
            }
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    int st = adamas_set_backend("cuda");
    if (st) {
        printf("adamas-parity: skipped: the CUDA backend is not available: %s\n",
               adamas_last_error());
        return EXIT_SKIP;
    }
    adamas_set_backend("cpu");
    printf("adamas-parity: CPU kernels %s against the CUDA module (seed %llu)\n\n",
           adamas_isa_name(), (unsigned long long)r.rng.s);
    printf("%-11s %-22s %6s  %-5s %-5s  %-28s %-5s %9s %8s %8s %7s  %s\n", "case", "shape",
           "tokens", "codes", "dist", "step", "set", "rel.err", "tol", "cpu ms", "gpu ms",
           "result");

    const parity_case *cases = quick ? quick_cases : full_cases;
    size_t n_cases = quick ? sizeof quick_cases / sizeof quick_cases[0]
                           : sizeof full_cases / sizeof full_cases[0];
    double t0 = cli_now();
    for (size_t i = 0; i < n_cases; i++)
        if ((st = run_case(&cases[i], &r)))
            return EXIT_USAGE;
    printf("\n%s: %d mismatch%s (%.1f s)\n", r.failures ? "FAILED" : "all identical", r.failures,
           r.failures == 1 ? "" : "es", cli_now() - t0);
    return r.failures ? EXIT_MISMATCH : 0;
}

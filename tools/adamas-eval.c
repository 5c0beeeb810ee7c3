/*
 * adamas-eval - how well each selector finds the keys that matter, on an attention
 * dump (dump.h): for the last M positions of every layer and query head, decoding as
 * an engine would (the cache holds keys 0..p, the query is the one at p), the recall
 * of the oracle's set, the attention mass captured and the output error against full
 * attention, per selector and budget.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "adamas.h"
#include "dump.h"

/* ---------------------------------------------------------------- selectors */

/* Each selector decodes from one of these caches (built per layer). */
enum cache_kind { CACHE_PLAIN, CACHE_XORW, CACHE_CALIBRATED, CACHE_RAW, N_CACHES };

typedef struct {
    const char *name;
    adamas_selector selector;
    uint32_t rerank;
    enum cache_kind cache;
} selector_def;

static const selector_def selector_defs[] = {
    {"adamas", ADAMAS_SELECT_ADAMAS, 0, CACHE_PLAIN},
    {"adamas-xorw", ADAMAS_SELECT_ADAMAS, 0, CACHE_XORW},
    {"adamas-calibrated", ADAMAS_SELECT_ADAMAS, 0, CACHE_CALIBRATED},
    {"adamas-rerank4", ADAMAS_SELECT_ADAMAS, 4, CACHE_PLAIN},
    {"adamas-calibrated-rerank4", ADAMAS_SELECT_ADAMAS, 4, CACHE_CALIBRATED},
    {"adamas-nohadamard", ADAMAS_SELECT_ADAMAS, 0, CACHE_RAW},
    {"quest", ADAMAS_SELECT_QUEST, 0, CACHE_PLAIN},
    {"streaming", ADAMAS_SELECT_STREAMING, 0, CACHE_PLAIN},
    {"oracle", ADAMAS_SELECT_ORACLE, 0, CACHE_PLAIN},
    {"full", ADAMAS_SELECT_FULL, 0, CACHE_PLAIN},
};
#define N_SELECTOR_DEFS (sizeof selector_defs / sizeof selector_defs[0])
/* the default list: every selector but full (whose row is the sanity check) */
#define N_DEFAULT_SELECTORS (N_SELECTOR_DEFS - 1)

#define MAX_BUDGETS 16

/* ------------------------------------------------------------------ options */

typedef struct {
    const char *dump_path, *json_path, *save_full_path;
    uint32_t budgets[MAX_BUDGETS], n_budgets;
    const selector_def *selectors[N_SELECTOR_DEFS];
    uint32_t n_selectors;
    uint32_t steps;
    uint32_t sink, recent; /* forced tokens of the adamas selectors and the oracle */
    float tau;             /* calibration */
    bool per_layer;        /* table rows per layer too */
    char *layer_list;      /* NULL: every layer */
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: adamas-eval DUMP [options]\n"
            "\n"
            "Replays the last M decode steps of every layer of an attention dump (a\n"
            "safetensors file with layers.{i}.q [N,Hq,d], layers.{i}.k and layers.{i}.v\n"
            "[N,Hkv,d]; see README.md) through the library: at position p the cache holds\n"
            "keys 0..p, appended one token at a time after a prefill of 0..N-M-1, and the\n"
            "query at p decodes with each selector and budget.  Per selector and budget:\n"
            "  recall   share of the oracle's set (same budget, same forced tokens) selected\n"
            "  mass     full-attention probability held by the selected tokens\n"
            "  out_err  ||o - o_full|| / ||o_full||, o_full computed in double precision\n"
            "averaged over every head and step of a layer, and over all layers (\"all\").\n"
            "\n"
            "options:\n"
            "  --budgets LIST    comma-separated token budgets (default 64,128,256)\n"
            "  --selectors LIST  comma-separated, or \"all\" (default): adamas, adamas-xorw,\n"
            "                    adamas-calibrated, adamas-rerank4, adamas-calibrated-rerank4,\n"
            "                    adamas-nohadamard, quest, streaming, oracle; also \"full\"\n"
            "                    (dense attention through the library: error ~1e-7)\n"
            "  --steps M         decode steps per layer: the last M positions (default 16)\n"
            "  --json OUT        write {\"results\": [{\"selector\", \"budget\", \"layer\" (\"all\"\n"
            "                    or its index), \"recall\", \"mass\", \"out_err\"}, ...]}\n"
            "  --layers LIST     layers to evaluate, e.g. 2-31 or 0,4,8 (default all)\n"
            "  --sink S          first tokens forced by the adamas selectors and the oracle\n"
            "                    (default 0; streaming keeps its 4 sinks)\n"
            "  --recent R        last tokens forced likewise (default 1)\n"
            "  --tau T           calibration constant of adamas-calibrated* (default 0.6745)\n"
            "  --per-layer       print a table row per layer too (the JSON always has them)\n"
            "  --save-full OUT   write the library's full-attention outputs to OUT, a\n"
            "                    safetensors file with layers.{i}.full [M, Hq, d] F32\n"
            "  -h, --help        this text\n"
            "\n"
            "The adamas selectors and the oracle force the --sink first and --recent last\n"
            "tokens; streaming forces 4 sinks (the oracle it is compared with too); quest\n"
            "forces the newest token's page (pages of 16 tokens, so budgets >= 16).\n"
            "adamas-calibrated* calibrate once, after the prefill.  Progress goes to stderr.\n");
}

static int parse_budgets(const char *v, options *o)
{
    char buf[512];
    if (strlen(v) >= sizeof buf)
        return -1;
    strcpy(buf, v);
    o->n_budgets = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (o->n_budgets == MAX_BUDGETS || cli_parse_u32(tok, &o->budgets[o->n_budgets]) ||
            o->budgets[o->n_budgets] == 0)
            return -1;
        o->n_budgets++;
    }
    return o->n_budgets ? 0 : -1;
}

static int parse_selectors(const char *v, options *o)
{
    char buf[512];
    if (strlen(v) >= sizeof buf)
        return -1;
    strcpy(buf, v);
    o->n_selectors = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "all")) {
            for (size_t i = 0; i < N_DEFAULT_SELECTORS; i++)
                o->selectors[i] = &selector_defs[i];
            o->n_selectors = N_DEFAULT_SELECTORS;
            continue;
        }
        const selector_def *found = NULL;
        for (size_t i = 0; i < N_SELECTOR_DEFS; i++)
            if (!strcmp(tok, selector_defs[i].name))
                found = &selector_defs[i];
        if (!found) {
            fprintf(stderr, "adamas-eval: unknown selector \"%s\" (see --help)\n", tok);
            return -1;
        }
        bool dup = false;
        for (uint32_t i = 0; i < o->n_selectors; i++)
            dup |= o->selectors[i] == found;
        if (!dup)
            o->selectors[o->n_selectors++] = found;
    }
    return o->n_selectors ? 0 : -1;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.budgets = {64, 128, 256}, .n_budgets = 3, .steps = 16, .recent = 1,
                   .tau = 0.6745f};
    parse_selectors("all", o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (a[0] != '-' || !a[1]) {
            if (o->dump_path) {
                fprintf(stderr, "adamas-eval: more than one dump given (%s, %s)\n",
                        o->dump_path, a);
                return -1;
            }
            o->dump_path = a;
            continue;
        }
        if (!strcmp(a, "--per-layer")) {
            o->per_layer = true;
            continue;
        }
        static const char *const with_value[] = {"--budgets", "--selectors", "--steps",
                                                 "--json",    "--save-full", "--layers",
                                                 "--sink",    "--recent",    "--tau"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            known |= !strcmp(a, with_value[k]);
        if (!known) {
            fprintf(stderr, "adamas-eval: unknown option %s (see --help)\n", a);
            return -1;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "adamas-eval: %s needs a value (see --help)\n", a);
            return -1;
        }
        int bad = 0;
        if (!strcmp(a, "--budgets"))
            bad = parse_budgets(v, o);
        else if (!strcmp(a, "--selectors")) {
            if (parse_selectors(v, o))
                return -1;
        } else if (!strcmp(a, "--steps"))
            bad = cli_parse_u32(v, &o->steps) || o->steps == 0;
        else if (!strcmp(a, "--json"))
            o->json_path = v;
        else if (!strcmp(a, "--save-full"))
            o->save_full_path = v;
        else if (!strcmp(a, "--layers"))
            o->layer_list = (char *)v;
        else if (!strcmp(a, "--sink"))
            bad = cli_parse_u32(v, &o->sink);
        else if (!strcmp(a, "--recent"))
            bad = cli_parse_u32(v, &o->recent);
        else if (!strcmp(a, "--tau")) {
            char *end;
            o->tau = strtof(v, &end);
            bad = !*v || *end || !(o->tau > 0.0f) || !isfinite(o->tau);
        }
        if (bad) {
            fprintf(stderr, "adamas-eval: bad value \"%s\" for %s (see --help)\n", v, a);
            return -1;
        }
        i++;
    }
    if (!o->dump_path) {
        fprintf(stderr, "adamas-eval: no dump given\n\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Layers named by "2-5,7" (each < n_layers) marked in wanted[n_layers]. */
static int parse_layers(const char *list, uint32_t n_layers, bool *wanted)
{
    if (!list) {
        for (uint32_t l = 0; l < n_layers; l++)
            wanted[l] = true;
        return 0;
    }
    char buf[1024];
    if (strlen(list) >= sizeof buf)
        return -1;
    strcpy(buf, list);
    int any = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        uint32_t lo, hi;
        char *dash = strchr(tok, '-');
        if (dash) {
            *dash = 0;
            if (cli_parse_u32(tok, &lo) || cli_parse_u32(dash + 1, &hi) || lo > hi)
                return -1;
        } else if (cli_parse_u32(tok, &lo)) {
            return -1;
        } else {
            hi = lo;
        }
        if (hi >= n_layers)
            return -1;
        for (uint32_t l = lo; l <= hi; l++)
            wanted[l] = true;
        any = 1;
    }
    return any ? 0 : -1;
}

/* --------------------------------------------------------------- the params */

static adamas_decode_params params_of(const selector_def *s, uint32_t budget, const options *o)
{
    adamas_decode_params p = adamas_decode_params_default(s->selector, budget);
    p.rerank = s->rerank;
    if (s->selector == ADAMAS_SELECT_ADAMAS || s->selector == ADAMAS_SELECT_ORACLE) {
        p.sink = o->sink;
        p.recent = o->recent;
    }
    return p;
}

/* The oracle a selector is compared with: same budget, same forced tokens (streaming:
 * its sinks and the newest token; quest: the newest token). */
static adamas_decode_params oracle_of(const adamas_decode_params *p)
{
    adamas_decode_params r = adamas_decode_params_default(ADAMAS_SELECT_ORACLE, p->budget);
    if (p->selector == ADAMAS_SELECT_ADAMAS || p->selector == ADAMAS_SELECT_ORACLE) {
        r.sink = p->sink;
        r.recent = p->recent;
    } else if (p->selector == ADAMAS_SELECT_STREAMING) {
        r.sink = p->sink;
        r.recent = 1;
    }
    return r;
}

/* A budget no cache length makes invalid, or a message. */
static const char *budget_problem(const adamas_decode_params *p, uint32_t page_size)
{
    static char msg[160];
    uint64_t forced = p->selector == ADAMAS_SELECT_QUEST       ? (uint64_t)page_size - 1
                      : p->selector == ADAMAS_SELECT_STREAMING ? p->sink
                      : p->selector == ADAMAS_SELECT_FULL      ? 0
                                                               : (uint64_t)p->sink + p->recent;
    if (p->selector == ADAMAS_SELECT_STREAMING && forced < 1)
        forced = 1; /* its oracle forces the newest token too */
    if (p->budget > forced)
        return NULL;
    snprintf(msg, sizeof msg, "budget %u is not larger than the %llu tokens it forces", p->budget,
             (unsigned long long)forced);
    return msg;
}

/* ------------------------------------------------------------------ metrics */

typedef struct {
    double recall, mass, err;
    uint64_t count; /* head-steps summed */
} sums;

/* |a ∩ b| of two ascending rows of length n padded with UINT32_MAX. */
static uint32_t overlap(const uint32_t *a, const uint32_t *b, uint32_t n)
{
    uint32_t i = 0, j = 0, common = 0;
    while (i < n && j < n && a[i] != UINT32_MAX && b[j] != UINT32_MAX) {
        if (a[i] == b[j]) {
            common++;
            i++;
            j++;
        } else if (a[i] < b[j]) {
            i++;
        } else {
            j++;
        }
    }
    return common;
}

static uint32_t row_count(const uint32_t *row, uint32_t n)
{
    uint32_t m = 0;
    while (m < n && row[m] != UINT32_MAX)
        m++;
    return m;
}

static double rel_err(const float *o, const double *ref, size_t d)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < d; i++) {
        double e = (double)o[i] - ref[i];
        num += e * e;
        den += ref[i] * ref[i];
    }
    /* an all-zero reference (all-zero values): the absolute error */
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* ------------------------------------------------------------------ runtime */

typedef struct {
    const options *o;
    const dump_file *dump;
    uint32_t n_eval_layers, eval_index; /* progress */
    double t0, last_report;
    bool tty;               /* stderr is a terminal                            */
    sums *acc;              /* [n_selectors][n_budgets][n_layers]              */
    dump_writer *full_out;  /* --save-full                                     */
} run_state;

static sums *acc_at(const run_state *r, uint32_t s, uint32_t b, uint32_t layer)
{
    return &r->acc[((size_t)s * r->o->n_budgets + b) * r->dump->n_layers + layer];
}

static int lib_fail(const char *what, uint32_t layer, int st)
{
    fprintf(stderr, "\nadamas-eval: layer %u: %s: %s\n  %s\n", layer, what, adamas_strerror(st),
            adamas_last_error());
    return 1;
}

/* Per layer working memory. */
typedef struct {
    float *k, *v;           /* [n_tokens][n_kv_heads][d] the dump's keys and values, f32 */
    float *q;               /* [n_heads][d] the query of the step                        */
    double *p_full;         /* [n_heads][n_tokens] full-attention probabilities           */
    double *o_ref;          /* [n_heads][d] full attention in double precision           */
    float *out;             /* [n_heads][d]                                              */
    uint32_t *sel, *orc;    /* [n_heads][max budget]                                     */
} layer_buffers;

/* Full attention of every head at position p, in double precision. */
static void reference_attention(const dump_file *dump, const layer_buffers *b, uint32_t p)
{
    const uint32_t d = dump->head_dim, n = p + 1, group = dump->n_heads / dump->n_kv_heads;
    const double scale = 1.0 / sqrt((double)d);
    for (uint32_t h = 0; h < dump->n_heads; h++) {
        const float *q = b->q + (size_t)h * d;
        const uint32_t g = h / group;
        double *pr = b->p_full + (size_t)h * dump->n_tokens, max = -INFINITY, sum = 0.0;
        for (uint32_t t = 0; t < n; t++) {
            const float *k = b->k + ((size_t)t * dump->n_kv_heads + g) * d;
            double s = 0.0;
            for (uint32_t i = 0; i < d; i++)
                s += (double)q[i] * k[i];
            pr[t] = s * scale;
            max = pr[t] > max ? pr[t] : max;
        }
        for (uint32_t t = 0; t < n; t++)
            sum += pr[t] = exp(pr[t] - max);
        double *o = b->o_ref + (size_t)h * d;
        memset(o, 0, d * sizeof *o);
        for (uint32_t t = 0; t < n; t++) {
            pr[t] /= sum;
            const float *v = b->v + ((size_t)t * dump->n_kv_heads + g) * d;
            for (uint32_t i = 0; i < d; i++)
                o[i] += pr[t] * v[i];
        }
    }
}

/* On a terminal one line updated in place; otherwise (a log) one line per layer. */
static void report_progress(run_state *r, uint32_t layer, uint32_t step, bool layer_done)
{
    double t = cli_now();
    if (!r->tty && !layer_done)
        return;
    if (r->tty && !layer_done && t - r->last_report < 0.5)
        return;
    r->last_report = t;
    fprintf(stderr, "%sadamas-eval: layer %u (%u of %u), step %u of %u, %.1f s%s",
            r->tty ? "\r" : "", layer, r->eval_index + 1, r->n_eval_layers, step, r->o->steps,
            t - r->t0, r->tty ? "  " : "\n");
    fflush(stderr);
}

static int eval_layer(run_state *r, uint32_t layer, adamas_cache **caches, layer_buffers *b)
{
    const options *o = r->o;
    const dump_file *dump = r->dump;
    const uint32_t N = dump->n_tokens, d = dump->head_dim, Hq = dump->n_heads;
    const uint32_t first_step = N - o->steps;
    const size_t kv_row = (size_t)dump->n_kv_heads * d;
    int st;

    dump_read_rows(&dump->k[layer], 0, N, b->k);
    dump_read_rows(&dump->v[layer], 0, N, b->v);

    /* prefill 0..first_step-1, then calibrate once (engines do it after prefill) */
    for (int c = 0; c < N_CACHES; c++)
        if (caches[c] && first_step > 0 &&
            (st = adamas_cache_append(caches[c], b->k, b->v, first_step)))
            return lib_fail("adamas_cache_append", layer, st);
    bool calibrated = false;
    if (caches[CACHE_CALIBRATED] && first_step > 0) {
        if ((st = adamas_cache_calibrate(caches[CACHE_CALIBRATED], o->tau)))
            return lib_fail("adamas_cache_calibrate", layer, st);
        calibrated = true;
    }

    for (uint32_t step = 0; step < o->steps; step++) {
        const uint32_t p = first_step + step;
        report_progress(r, layer, step, false);
        for (int c = 0; c < N_CACHES; c++)
            if (caches[c] && (st = adamas_cache_append(caches[c], b->k + (size_t)p * kv_row,
                                                       b->v + (size_t)p * kv_row, 1)))
                return lib_fail("adamas_cache_append", layer, st);
        if (caches[CACHE_CALIBRATED] && !calibrated) {
            if ((st = adamas_cache_calibrate(caches[CACHE_CALIBRATED], o->tau)))
                return lib_fail("adamas_cache_calibrate", layer, st);
            calibrated = true;
        }
        dump_read_rows(&dump->q[layer], p, 1, b->q);
        reference_attention(dump, b, p);

        if (r->full_out) {
            adamas_decode_params full = adamas_decode_params_default(ADAMAS_SELECT_FULL, 0);
            if ((st = adamas_decode(caches[CACHE_PLAIN], &full, b->q, b->out, NULL)))
                return lib_fail("adamas_decode (full)", layer, st);
            if (dump_writer_put(r->full_out, b->out, (size_t)Hq * d)) {
                fprintf(stderr, "\nadamas-eval: %s\n", dump->error);
                return 1;
            }
        }

        for (uint32_t bi = 0; bi < o->n_budgets; bi++) {
            /* the oracle set of the forced tokens last computed, reused across selectors */
            adamas_decode_params last_oracle = {.budget = 0};
            bool have_oracle = false;
            for (uint32_t si = 0; si < o->n_selectors; si++) {
                const selector_def *s = o->selectors[si];
                adamas_decode_params p_sel = params_of(s, o->budgets[bi], o);
                adamas_decode_params p_orc = oracle_of(&p_sel);
                const uint32_t B = p_sel.budget;
                if (!have_oracle || p_orc.sink != last_oracle.sink ||
                    p_orc.recent != last_oracle.recent) {
                    if ((st = adamas_decode(caches[CACHE_PLAIN], &p_orc, b->q, b->out, b->orc)))
                        return lib_fail("adamas_decode (oracle)", layer, st);
                    last_oracle = p_orc;
                    have_oracle = true;
                }
                if ((st = adamas_decode(caches[s->cache], &p_sel, b->q, b->out, b->sel)))
                    return lib_fail("adamas_decode", layer, st);
                sums *a = acc_at(r, si, bi, layer);
                for (uint32_t h = 0; h < Hq; h++) {
                    double recall = 1.0, mass = 1.0;
                    if (s->selector != ADAMAS_SELECT_FULL) {
                        const uint32_t *row = b->sel + (size_t)h * B, *orow = b->orc + (size_t)h * B;
                        const double *pr = b->p_full + (size_t)h * N;
                        uint32_t m = row_count(orow, B);
                        recall = m ? (double)overlap(row, orow, B) / m : 1.0;
                        mass = 0.0;
                        for (uint32_t i = 0; i < B && row[i] != UINT32_MAX; i++)
                            mass += pr[row[i]];
                    }
                    a->recall += recall;
                    a->mass += mass;
                    a->err += rel_err(b->out + (size_t)h * d, b->o_ref + (size_t)h * d, d);
                    a->count++;
                }
            }
        }
    }
    report_progress(r, layer, o->steps, true);
    return 0;
}

/* ------------------------------------------------------------------- output */

static cJSON *result_item(const char *selector, uint32_t budget, int layer, const sums *s)
{
    cJSON *it = cJSON_CreateObject();
    if (!it)
        return NULL;
    double n = s->count ? (double)s->count : 1.0;
    bool ok = cJSON_AddStringToObject(it, "selector", selector) &&
              cJSON_AddNumberToObject(it, "budget", budget) &&
              (layer < 0 ? cJSON_AddStringToObject(it, "layer", "all") != NULL
                         : cJSON_AddNumberToObject(it, "layer", layer) != NULL) &&
              cJSON_AddNumberToObject(it, "recall", s->recall / n) &&
              cJSON_AddNumberToObject(it, "mass", s->mass / n) &&
              cJSON_AddNumberToObject(it, "out_err", s->err / n);
    if (!ok) {
        cJSON_Delete(it);
        return NULL;
    }
    return it;
}

static int write_json(const run_state *r, const bool *wanted)
{
    const options *o = r->o;
    const dump_file *dump = r->dump;
    cJSON *root = cJSON_CreateObject(), *results = NULL;
    bool ok = root != NULL;
    ok = ok && cJSON_AddStringToObject(root, "dump", o->dump_path);
    if (ok && dump->model)
        ok = cJSON_AddStringToObject(root, "model", dump->model) != NULL;
    ok = ok && cJSON_AddNumberToObject(root, "tokens", dump->n_tokens) &&
         cJSON_AddNumberToObject(root, "steps", o->steps) &&
         cJSON_AddNumberToObject(root, "heads", dump->n_heads) &&
         cJSON_AddNumberToObject(root, "kv_heads", dump->n_kv_heads) &&
         cJSON_AddNumberToObject(root, "head_dim", dump->head_dim) &&
         cJSON_AddNumberToObject(root, "sink", o->sink) &&
         cJSON_AddNumberToObject(root, "recent", o->recent) &&
         cJSON_AddStringToObject(root, "kernels", adamas_isa_name()) &&
         (results = cJSON_AddArrayToObject(root, "results"));
    for (uint32_t s = 0; ok && s < o->n_selectors; s++)
        for (uint32_t b = 0; ok && b < o->n_budgets; b++) {
            sums all = {0};
            for (uint32_t l = 0; l < dump->n_layers; l++)
                if (wanted[l]) {
                    const sums *x = acc_at(r, s, b, l);
                    all.recall += x->recall;
                    all.mass += x->mass;
                    all.err += x->err;
                    all.count += x->count;
                }
            ok = cJSON_AddItemToArray(results,
                                      result_item(o->selectors[s]->name, o->budgets[b], -1, &all));
            for (uint32_t l = 0; ok && l < dump->n_layers; l++)
                if (wanted[l])
                    ok = cJSON_AddItemToArray(results, result_item(o->selectors[s]->name,
                                                                   o->budgets[b], (int)l,
                                                                   acc_at(r, s, b, l)));
        }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        fprintf(stderr, "adamas-eval: out of memory writing JSON\n");
        return 1;
    }
    FILE *f = fopen(o->json_path, "w");
    int bad = !f || fputs(text, f) == EOF || fputc('\n', f) == EOF;
    bad |= f && fclose(f) != 0;
    free(text);
    if (bad) {
        fprintf(stderr, "adamas-eval: cannot write %s\n", o->json_path);
        return 1;
    }
    return 0;
}

static void print_table(const run_state *r, const bool *wanted)
{
    const options *o = r->o;
    const dump_file *dump = r->dump;
    printf("\n%-26s %7s %6s %8s %8s %10s\n", "selector", "budget", "layer", "recall", "mass",
           "out_err");
    for (uint32_t s = 0; s < o->n_selectors; s++)
        for (uint32_t b = 0; b < o->n_budgets; b++) {
            sums all = {0};
            for (uint32_t l = 0; l < dump->n_layers; l++)
                if (wanted[l]) {
                    const sums *x = acc_at(r, s, b, l);
                    all.recall += x->recall;
                    all.mass += x->mass;
                    all.err += x->err;
                    all.count += x->count;
                }
            double n = all.count ? (double)all.count : 1.0;
            printf("%-26s %7u %6s %8.4f %8.4f %10.3e\n", o->selectors[s]->name, o->budgets[b],
                   "all", all.recall / n, all.mass / n, all.err / n);
            for (uint32_t l = 0; o->per_layer && l < dump->n_layers; l++)
                if (wanted[l]) {
                    const sums *x = acc_at(r, s, b, l);
                    double m = x->count ? (double)x->count : 1.0;
                    printf("%-26s %7u %6u %8.4f %8.4f %10.3e\n", o->selectors[s]->name,
                           o->budgets[b], l, x->recall / m, x->mass / m, x->err / m);
                }
        }
    printf("\nrecall: share of the oracle's set selected; mass: full-attention probability "
           "on the\nselected tokens; out_err: ||o - o_full|| / ||o_full||; means over %u "
           "heads x %u steps\nper layer.\n",
           dump->n_heads, o->steps);
}

/* --------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o))
        return 2;
    dump_file dump;
    int st = dump_open(o.dump_path, &dump);
    if (st) {
        fprintf(stderr, "adamas-eval: %s: %s: %s\n", o.dump_path, adamas_strerror(st),
                dump.error);
        return 1;
    }
    int rc = 1;
    bool *wanted = calloc(dump.n_layers, sizeof *wanted);
    adamas_cache *caches[N_CACHES] = {0};
    layer_buffers b = {0};
    run_state r = {.o = &o, .dump = &dump};
    dump_tensor_spec *full_spec = NULL;
    char (*full_names)[32] = NULL;
    if (!wanted)
        goto oom;
    if (parse_layers(o.layer_list, dump.n_layers, wanted)) {
        fprintf(stderr, "adamas-eval: bad --layers \"%s\" (the dump has layers 0..%u)\n",
                o.layer_list, dump.n_layers - 1);
        rc = 2;
        goto done;
    }
    if (o.steps > dump.n_tokens) {
        fprintf(stderr, "adamas-eval: --steps %u is more than the dump's %u tokens\n", o.steps,
                dump.n_tokens);
        rc = 2;
        goto done;
    }
    uint32_t max_budget = 0;
    for (uint32_t bi = 0; bi < o.n_budgets; bi++) {
        max_budget = o.budgets[bi] > max_budget ? o.budgets[bi] : max_budget;
        for (uint32_t si = 0; si < o.n_selectors; si++) {
            adamas_decode_params p = params_of(o.selectors[si], o.budgets[bi], &o);
            adamas_decode_params po = oracle_of(&p);
            const char *why = budget_problem(&p, 16);
            if (!why)
                why = budget_problem(&po, 16);
            if (why) {
                fprintf(stderr, "adamas-eval: %s: %s\n", o.selectors[si]->name, why);
                rc = 2;
                goto done;
            }
        }
    }

    const uint32_t N = dump.n_tokens, d = dump.head_dim, Hq = dump.n_heads;
    const size_t kv_row = (size_t)dump.n_kv_heads * d;
    /* sizes: each below the dump's own data for the same tokens, times a constant */
    b.k = malloc((size_t)N * kv_row * sizeof *b.k);
    b.v = malloc((size_t)N * kv_row * sizeof *b.v);
    b.q = malloc((size_t)Hq * d * sizeof *b.q);
    b.out = malloc((size_t)Hq * d * sizeof *b.out);
    b.o_ref = malloc((size_t)Hq * d * sizeof *b.o_ref);
    b.p_full = malloc((size_t)Hq * N * sizeof *b.p_full);
    b.sel = malloc((size_t)Hq * max_budget * sizeof *b.sel);
    b.orc = malloc((size_t)Hq * max_budget * sizeof *b.orc);
    r.acc = calloc((size_t)o.n_selectors * o.n_budgets * dump.n_layers, sizeof *r.acc);
    if (!b.k || !b.v || !b.q || !b.out || !b.o_ref || !b.p_full || !b.sel || !b.orc || !r.acc)
        goto oom;

    for (uint32_t l = 0; l < dump.n_layers; l++)
        r.n_eval_layers += wanted[l];
    if (o.save_full_path) {
        full_spec = calloc(r.n_eval_layers, sizeof *full_spec);
        full_names = calloc(r.n_eval_layers, sizeof *full_names);
        if (!full_spec || !full_names)
            goto oom;
        uint32_t i = 0;
        for (uint32_t l = 0; l < dump.n_layers; l++)
            if (wanted[l]) {
                snprintf(full_names[i], sizeof full_names[i], "layers.%u.full", l);
                full_spec[i] = (dump_tensor_spec){.name = full_names[i], .dtype = ADAMAS_F32,
                                                  .rank = 3, .shape = {o.steps, Hq, d}};
                i++;
            }
        char text[128];
        snprintf(text, sizeof text, "full attention of positions %u..%u", N - o.steps, N - 1);
        if (dump_writer_open(&r.full_out, o.save_full_path, full_spec, r.n_eval_layers,
                             "adamas-eval", text, dump.error, sizeof dump.error)) {
            fprintf(stderr, "adamas-eval: %s\n", dump.error);
            goto done;
        }
    }

    bool need[N_CACHES] = {[CACHE_PLAIN] = true};
    for (uint32_t si = 0; si < o.n_selectors; si++)
        need[o.selectors[si]->cache] = true;
    /* the cache stores the dump's values exactly: same dtype (f32 when k and v differ) */
    adamas_dtype kv_dtype = dump.k[0].dtype == dump.v[0].dtype ? dump.k[0].dtype : ADAMAS_F32;
    for (uint32_t l = 1; l < dump.n_layers; l++)
        if (dump.k[l].dtype != kv_dtype || dump.v[l].dtype != kv_dtype)
            kv_dtype = ADAMAS_F32;

    fprintf(stderr, "adamas-eval: %s: %u layers, %u tokens, %u heads, %u kv heads, d=%u, %s; "
                    "kernels %s\n",
            o.dump_path, dump.n_layers, N, Hq, dump.n_kv_heads, d, dump_dtype_name(kv_dtype),
            adamas_isa_name());
    r.t0 = cli_now();
    r.tty = isatty(fileno(stderr));
    for (uint32_t l = 0; l < dump.n_layers; l++) {
        if (!wanted[l])
            continue;
        for (int c = 0; c < N_CACHES; c++) {
            if (!need[c])
                continue;
            adamas_cache_config cfg = adamas_cache_config_default(Hq, dump.n_kv_heads, d, N);
            cfg.kv_dtype = kv_dtype;
            cfg.metric = c == CACHE_XORW ? ADAMAS_METRIC_XORW : ADAMAS_METRIC_L1;
            cfg.transform = c == CACHE_RAW ? ADAMAS_TRANSFORM_NONE : ADAMAS_TRANSFORM_HADAMARD;
            if ((st = adamas_cache_create(&cfg, &caches[c]))) {
                lib_fail("adamas_cache_create", l, st);
                goto done;
            }
        }
        if (eval_layer(&r, l, caches, &b))
            goto done;
        for (int c = 0; c < N_CACHES; c++) {
            adamas_cache_destroy(caches[c]);
            caches[c] = NULL;
        }
        r.eval_index++;
    }
    if (r.tty)
        fprintf(stderr, "\n");
    if (r.full_out) {
        st = dump_writer_close(r.full_out);
        r.full_out = NULL;
        if (st) {
            fprintf(stderr, "adamas-eval: %s\n", dump.error);
            goto done;
        }
    }

    printf("adamas-eval: %s%s%s%s: %u layers evaluated, %u tokens, %u query heads, %u kv heads, "
           "d=%u, last %u positions, kernels %s\n",
           o.dump_path, dump.model ? " (" : "", dump.model ? dump.model : "",
           dump.model ? ")" : "", r.n_eval_layers, N, Hq, dump.n_kv_heads, d, o.steps,
           adamas_isa_name());
    print_table(&r, wanted);
    if (o.json_path && write_json(&r, wanted))
        goto done;
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "adamas-eval: out of memory\n");
done:
    if (r.full_out)
        dump_writer_close(r.full_out);
    for (int c = 0; c < N_CACHES; c++)
        adamas_cache_destroy(caches[c]);
    free(b.k);
    free(b.v);
    free(b.q);
    free(b.out);
    free(b.o_ref);
    free(b.p_full);
    free(b.sel);
    free(b.orc);
    free(r.acc);
    free(wanted);
    free(full_spec);
    free(full_names);
    dump_close(&dump);
    return rc;
}

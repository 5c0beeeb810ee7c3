/*
 * adamas-run - a Llama-architecture GGUF model on the CPU, decoding through adamas.
 *
 *   adamas-run generate   [--prompt TEXT] [-n N]         text from a prompt
 *   adamas-run perplexity FILE --ctx N --tail M          held-out perplexity, bits per byte
 *   adamas-run passkey    --ctx N                        a key hidden in filler, retrieved
 *   adamas-run logits     FILE --out OUT                 every position's logits (checks)
 *
 * Every mode prefills with dense attention and decodes with the chosen selector in
 * every layer but the first --dense-layers, and prints prefill and decode tokens/s.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "adamas.h"
#include "llama.h"

#ifdef ADAMAS_HAVE_OPENBLAS
#include <cblas.h>
#endif

#ifndef ADAMAS_RUN_DEFAULT_MODEL
#define ADAMAS_RUN_DEFAULT_MODEL "tools/model/adamas-ref.gguf"
#endif
#ifndef ADAMAS_RUN_INSTALLED_MODEL
#define ADAMAS_RUN_INSTALLED_MODEL ADAMAS_RUN_DEFAULT_MODEL
#endif

/* The model used without -m: the source tree's copy when it is readable (a build
 * tree), else the one `meson install` put in the data directory. */
static const char *default_model(void)
{
    return access(ADAMAS_RUN_DEFAULT_MODEL, R_OK) == 0 ? ADAMAS_RUN_DEFAULT_MODEL
                                                       : ADAMAS_RUN_INSTALLED_MODEL;
}

/* ------------------------------------------------------------------- options */

typedef struct {
    const char *name;
    adamas_selector selector;
    uint32_t rerank;
    int calibrate;
} selector_def;

static const selector_def selectors[] = {
    {"adamas", ADAMAS_SELECT_ADAMAS, 0, 0},
    {"adamas-calibrated", ADAMAS_SELECT_ADAMAS, 0, 1},
    {"adamas-rerank4", ADAMAS_SELECT_ADAMAS, 4, 0},
    {"full", ADAMAS_SELECT_FULL, 0, 0},
    {"quest", ADAMAS_SELECT_QUEST, 0, 0},
    {"streaming", ADAMAS_SELECT_STREAMING, 0, 0},
    {"oracle", ADAMAS_SELECT_ORACLE, 0, 0},
};

typedef struct {
    const char *mode;
    const char *model_path;
    const char *file;          /* perplexity, logits: the text                   */
    const char *out_path;      /* logits: where to write them                    */
    const char *json_path;
    const char *prompt, *prompt_file, *filler_file;
    bool needle_c;             /* passkey: the key as a C string literal             */
    const selector_def *select;  /* the first of selects[]: every mode but perplexity */
    uint32_t budget, dense_layers; /* likewise the first of budgets[], dense[]         */
    const selector_def *selects[8];
    int selects_dense[8];      /* NAME:D in --select: its own dense layers; else -1   */
    uint32_t budgets[16], dense[4];
    uint32_t n_selects, n_budgets, n_dense;
    uint32_t sink, recent;
    bool sink_set, recent_set;
    float tau;
    int threads;
    adamas_dtype kv_dtype;
    uint32_t ctx, tail, windows;
    uint32_t n_generate;
    float temperature, top_p;
    uint64_t seed;
    double depths[16];
    uint32_t n_depths, trials;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: adamas-run MODE [options]\n"
            "\n"
            "Runs a Llama-architecture model from a GGUF file (F32, F16 or Q8_0 tensors,\n"
            "byte-level BPE tokenizer) on the CPU.  The prompt or context is prefilled with\n"
            "dense attention; every decode step attends through adamas with the chosen\n"
            "selector in every layer but the first --dense-layers.\n"
            "\n"
            "modes:\n"
            "  generate          continue --prompt TEXT (or --prompt-file F) for -n tokens\n"
            "  perplexity FILE   windows of --ctx N tokens of FILE: prefill the first N-M,\n"
            "                    decode the last M (--tail) one at a time, scoring each step's\n"
            "                    prediction of the token after it; prints perplexity and bits\n"
            "                    per byte\n"
            "  passkey           a 5-digit key planted at several depths of --ctx N tokens of\n"
            "                    filler; the question is decoded through the selector and the\n"
            "                    answer generated greedily; prints retrieval accuracy\n"
            "  logits FILE       the logits of every position of the first --ctx tokens of\n"
            "                    FILE (the last --tail decoded, the rest prefilled) to --out,\n"
            "                    raw little-endian f32 [tokens][vocabulary]\n"
            "\n"
            "model and attention (every mode):\n"
            "  -m, --model PATH     GGUF file (default %s)\n"
            "  --select NAME        adamas, adamas-calibrated, adamas-rerank4, full, quest,\n"
            "                       streaming, oracle (default adamas); NAME:D decodes with\n"
            "                       D dense layers whatever --dense-layers says\n"
            "  --budget B           tokens attended per query head (default 128)\n"
            "  --dense-layers N     first layers decoded with full attention (default 2)\n"
            "                       perplexity and passkey take comma-separated lists of these\n"
            "                       three and run every combination after one prefill per\n"
            "                       window or trial\n"
            "  --sink S, --recent R first and last tokens always attended by adamas and\n"
            "                       oracle (library defaults: 0 and 1; streaming: 4 sinks)\n"
            "  --tau T              calibration constant of adamas-calibrated (default 0.6745)\n"
            "  --kv f16|f32         storage of the KV cache (default f16)\n"
            "  --threads T          threads (default: OpenMP's default)\n"
            "  --json PATH          also write the results as one JSON object\n"
            "\n"
            "generate:   --prompt TEXT, --prompt-file F, -n N (default 256), --temperature T\n"
            "            (default 0: greedy), --top-p P (default 0.9), --seed S, --ctx N\n"
            "            (default: the trained context, at most 32768)\n"
            "perplexity: --ctx N (default 4096), --tail M (default 256), --windows W (default:\n"
            "            as many as the file holds, back to back; fewer are spread evenly\n"
            "            over the file, the first at its start)\n"
            "passkey:    --ctx N (default 4096), --depths LIST (default 0.1,0.3,0.5,0.7,0.9),\n"
            "            --trials K keys per depth (default 2), --seed S, --filler F (text\n"
            "            repeated as filler; default: a few plain sentences), --needle text|c\n"
            "            (text: \"The pass key is 12345. ...\" and \"What is the pass key? The\n"
            "            pass key is\"; c, for models of code: a line 'static const char\n"
            "            *pass_key = \"12345\";' and the question that line up to the quote)\n"
            "logits:     --out OUT (required), --ctx N (default: the whole file, at most the\n"
            "            trained context or 32768), --tail M (default 0)\n"
            "\n"
            "Progress goes to stderr; results and speeds to stdout (generate: the text to\n"
            "stdout, speeds to stderr).\n",
            default_model());
}

static int parse_float(const char *s, float *out)
{
    char *end;
    *out = strtof(s, &end);
    return !*s || *end || !isfinite(*out) ? -1 : 0;
}

/* A comma-separated list of at most max whole numbers, each >= min. */
static int parse_list(const char *v, uint32_t *out, uint32_t max, uint32_t *n, uint32_t min)
{
    char buf[256];
    if (strlen(v) >= sizeof buf)
        return -1;
    strcpy(buf, v);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (*n == max || cli_parse_u32(tok, &out[*n]) || out[*n] < min)
            return -1;
        (*n)++;
    }
    return *n ? 0 : -1;
}

static int parse_selectors(const char *v, options *o)
{
    char buf[256];
    if (strlen(v) >= sizeof buf)
        return -1;
    strcpy(buf, v);
    o->n_selects = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        const selector_def *found = NULL;
        int dense = -1;
        char *colon = strchr(tok, ':');
        if (colon) {
            uint32_t d;
            *colon = 0;
            if (cli_parse_u32(colon + 1, &d) || d > 4096) {
                fprintf(stderr, "adamas-run: bad dense layers in \"%s:%s\"\n", tok, colon + 1);
                return -1;
            }
            dense = (int)d;
        }
        for (size_t k = 0; k < sizeof selectors / sizeof selectors[0]; k++)
            if (!strcmp(tok, selectors[k].name))
                found = &selectors[k];
        if (!found || o->n_selects == 8) {
            fprintf(stderr, "adamas-run: unknown selector \"%s\" (see --help)\n", tok);
            return -1;
        }
        o->selects_dense[o->n_selects] = dense;
        o->selects[o->n_selects++] = found;
    }
    return o->n_selects ? 0 : -1;
}

static int parse_depths(const char *v, options *o)
{
    char buf[256];
    if (strlen(v) >= sizeof buf)
        return -1;
    strcpy(buf, v);
    o->n_depths = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *end;
        double d = strtod(tok, &end);
        if (*end || !(d >= 0.0 && d <= 1.0) || o->n_depths == 16)
            return -1;
        o->depths[o->n_depths++] = d;
    }
    return o->n_depths ? 0 : -1;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.model_path = NULL, .selects = {&selectors[0]}, .selects_dense = {-1},
                   .n_selects = 1,
                   .budgets = {128}, .n_budgets = 1, .dense = {2}, .n_dense = 1, .tau = 0.6745f, .kv_dtype = ADAMAS_F16, .ctx = 0,
                   .tail = 0, .n_generate = 256, .temperature = 0.0f, .top_p = 0.9f,
                   .seed = 1, .depths = {0.1, 0.3, 0.5, 0.7, 0.9}, .n_depths = 5, .trials = 2};
    if (argc < 2) {
        usage(stderr);
        return -1;
    }
    o->mode = argv[1];
    if (!strcmp(o->mode, "-h") || !strcmp(o->mode, "--help")) {
        usage(stdout);
        exit(0);
    }
    if (strcmp(o->mode, "generate") && strcmp(o->mode, "perplexity") &&
        strcmp(o->mode, "passkey") && strcmp(o->mode, "logits")) {
        fprintf(stderr, "adamas-run: unknown mode \"%s\" (generate, perplexity, passkey or "
                        "logits; see --help)\n", o->mode);
        return -1;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (a[0] != '-') {
            if (o->file || (strcmp(o->mode, "perplexity") && strcmp(o->mode, "logits"))) {
                fprintf(stderr, "adamas-run %s: unexpected argument \"%s\"\n", o->mode, a);
                return -1;
            }
            o->file = a;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "adamas-run: %s needs a value (see --help)\n", a);
            return -1;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            o->model_path = v;
        else if (!strcmp(a, "--select"))
            bad = parse_selectors(v, o);
        else if (!strcmp(a, "--budget"))
            bad = parse_list(v, o->budgets, 16, &o->n_budgets, 1);
        else if (!strcmp(a, "--dense-layers"))
            bad = parse_list(v, o->dense, 4, &o->n_dense, 0);
        else if (!strcmp(a, "--sink"))
            bad = cli_parse_u32(v, &o->sink), o->sink_set = true;
        else if (!strcmp(a, "--recent"))
            bad = cli_parse_u32(v, &o->recent), o->recent_set = true;
        else if (!strcmp(a, "--tau"))
            bad = parse_float(v, &o->tau) || !(o->tau > 0.0f);
        else if (!strcmp(a, "--kv")) {
            if (!strcmp(v, "f16"))
                o->kv_dtype = ADAMAS_F16;
            else if (!strcmp(v, "f32"))
                o->kv_dtype = ADAMAS_F32;
            else
                bad = 1;
        } else if (!strcmp(a, "--threads")) {
            uint32_t t;
            bad = cli_parse_u32(v, &t) || t == 0 || t > 4096;
            o->threads = (int)t;
        } else if (!strcmp(a, "--json"))
            o->json_path = v;
        else if (!strcmp(a, "--prompt"))
            o->prompt = v;
        else if (!strcmp(a, "--prompt-file"))
            o->prompt_file = v;
        else if (!strcmp(a, "--filler"))
            o->filler_file = v;
        else if (!strcmp(a, "--needle")) {
            o->needle_c = !strcmp(v, "c");
            bad = !o->needle_c && strcmp(v, "text");
        }
        else if (!strcmp(a, "--out"))
            o->out_path = v;
        else if (!strcmp(a, "-n"))
            bad = cli_parse_u32(v, &o->n_generate);
        else if (!strcmp(a, "--temperature"))
            bad = parse_float(v, &o->temperature) || o->temperature < 0.0f;
        else if (!strcmp(a, "--top-p"))
            bad = parse_float(v, &o->top_p) || !(o->top_p > 0.0f && o->top_p <= 1.0f);
        else if (!strcmp(a, "--seed"))
            o->seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--ctx"))
            bad = cli_parse_u32(v, &o->ctx) || o->ctx < 2;
        else if (!strcmp(a, "--tail"))
            bad = cli_parse_u32(v, &o->tail);
        else if (!strcmp(a, "--windows"))
            bad = cli_parse_u32(v, &o->windows) || o->windows == 0;
        else if (!strcmp(a, "--depths"))
            bad = parse_depths(v, o);
        else if (!strcmp(a, "--trials"))
            bad = cli_parse_u32(v, &o->trials) || o->trials == 0;
        else {
            fprintf(stderr, "adamas-run: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "adamas-run: bad value \"%s\" for %s (see --help)\n", v, a);
            return -1;
        }
    }
    o->select = o->selects[0];
    o->budget = o->budgets[0];
    o->dense_layers = o->selects_dense[0] >= 0 ? (uint32_t)o->selects_dense[0] : o->dense[0];
    if (strcmp(o->mode, "perplexity") && strcmp(o->mode, "passkey") &&
        o->n_selects * o->n_budgets * o->n_dense > 1) {
        fprintf(stderr, "adamas-run %s: lists of --select, --budget and --dense-layers are for "
                        "perplexity and passkey\n", o->mode);
        return -1;
    }
    bool needs_file = !strcmp(o->mode, "perplexity") || !strcmp(o->mode, "logits");
    if (needs_file && !o->file) {
        fprintf(stderr, "adamas-run %s: no text file given (see --help)\n", o->mode);
        return -1;
    }
    if (!strcmp(o->mode, "logits") && !o->out_path) {
        fprintf(stderr, "adamas-run logits: --out is required\n");
        return -1;
    }
    if (!strcmp(o->mode, "perplexity") || !strcmp(o->mode, "passkey")) {
        if (!o->ctx)
            o->ctx = 4096;
        if (!strcmp(o->mode, "perplexity") && !o->tail)
            o->tail = o->ctx < 512 ? o->ctx / 2 : 256;
        if (o->tail >= o->ctx) {
            fprintf(stderr, "adamas-run: --tail %u must be smaller than --ctx %u\n", o->tail,
                    o->ctx);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------- helpers */

/* The whole of a file, NUL-terminated; NULL with a message. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "adamas-run: cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
        }
        buf = grown;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf || err) {
        fprintf(stderr, "adamas-run: cannot read %s\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

typedef struct {
    uint64_t prefill_tokens, decode_tokens;
    double prefill_s, decode_s;
} speed;

static double rate(uint64_t n, double s)
{
    return s > 0.0 ? (double)n / s : 0.0;
}

static void print_speed(FILE *f, const speed *sp)
{
    fprintf(f, "prefill: %llu tokens in %.2f s (%.1f tokens/s); decode: %llu tokens in %.2f s "
               "(%.2f tokens/s)\n",
            (unsigned long long)sp->prefill_tokens, sp->prefill_s,
            rate(sp->prefill_tokens, sp->prefill_s), (unsigned long long)sp->decode_tokens,
            sp->decode_s, rate(sp->decode_tokens, sp->decode_s));
}

/* A progress bar on a terminal; a line per tenth otherwise. */
typedef struct {
    uint64_t total, last_tenth;
    double t0;
    bool tty;
    const char *what;
} progress;

static void progress_start(progress *p, uint64_t total, const char *what)
{
    *p = (progress){.total = total, .t0 = cli_now(), .tty = isatty(2), .what = what};
}

static void progress_show(progress *p, uint64_t done, const char *extra)
{
    double el = cli_now() - p->t0;
    if (p->tty) {
        int width = 30, filled = p->total ? (int)(width * done / p->total) : width;
        fprintf(stderr, "\r[%.*s%*s] %llu/%llu %s, %.1f s %s", filled,
                "==============================", width - filled, "", (unsigned long long)done,
                (unsigned long long)p->total, p->what, el, extra);
        if (done == p->total)
            fputc('\n', stderr);
    } else {
        uint64_t tenth = p->total ? 10 * done / p->total : 10;
        if (tenth > p->last_tenth || done == p->total) {
            fprintf(stderr, "%llu/%llu %s, %.1f s %s\n", (unsigned long long)done,
                    (unsigned long long)p->total, p->what, el, extra);
            p->last_tenth = tenth;
        }
    }
}

typedef struct {
    llama_model model;
    llama_state state;
    const options *o;
    speed sp;
} engine;

/* The tokens of the file the mode reads (--file); nonzero with a message. */
static int read_tokens(const engine *e, uint32_t **tokens, size_t *n)
{
    size_t len;
    char *text = read_file(e->o->file, &len);
    if (!text)
        return 1;
    *tokens = NULL;
    *n = 0;
    int enc = tokenizer_encode(e->model.tok, text, len, tokens, n);
    free(text);
    if (enc) {
        fprintf(stderr, "adamas-run: out of memory\n");
        free(*tokens);
        *tokens = NULL;
    }
    return enc;
}

static int engine_fail(const engine *e)
{
    fprintf(stderr, "\nadamas-run: %s\n", e->state.error);
    return 1;
}

static int engine_prefill(engine *e, const uint32_t *tokens, uint32_t n, float *all_logits)
{
    double t0 = cli_now();
    if (llama_prefill(&e->state, tokens, n, all_logits))
        return engine_fail(e);
    e->sp.prefill_s += cli_now() - t0;
    e->sp.prefill_tokens += n;
    return 0;
}

static int engine_decode(engine *e, uint32_t token)
{
    double t0 = cli_now();
    if (llama_decode(&e->state, token))
        return engine_fail(e);
    e->sp.decode_s += cli_now() - t0;
    e->sp.decode_tokens++;
    return 0;
}

static void json_common(FILE *f, const engine *e)
{
    const options *o = e->o;
    fprintf(f, "\"mode\": \"%s\", \"select\": \"%s\", \"budget\": %u, \"dense_layers\": %u, "
               "\"kv\": \"%s\", \"threads\": %d, \"prefill_tokens\": %llu, "
               "\"prefill_tokens_per_s\": %.3f, \"decode_tokens\": %llu, "
               "\"decode_tokens_per_s\": %.3f",
            o->mode, o->select->name, o->budget, o->dense_layers,
            o->kv_dtype == ADAMAS_F16 ? "f16" : "f32", o->threads,
            (unsigned long long)e->sp.prefill_tokens, rate(e->sp.prefill_tokens, e->sp.prefill_s),
            (unsigned long long)e->sp.decode_tokens, rate(e->sp.decode_tokens, e->sp.decode_s));
}

static FILE *json_open(const options *o)
{
    if (!o->json_path)
        return NULL;
    FILE *f = fopen(o->json_path, "w");
    if (!f)
        fprintf(stderr, "adamas-run: cannot create %s\n", o->json_path);
    return f;
}

/* The attention policy of one selector, budget and number of dense layers. */
static llama_attention attention_of(const options *o, const selector_def *sel, uint32_t budget,
                                    uint32_t dense_layers)
{
    llama_attention a = {
        .sparse = adamas_decode_params_default(sel->selector, budget),
        .dense_layers = dense_layers,
        .calibrate = sel->calibrate,
        .tau = o->tau,
        .kv_dtype = o->kv_dtype,
    };
    a.sparse.rerank = sel->rerank;
    if (sel->selector == ADAMAS_SELECT_ADAMAS || sel->selector == ADAMAS_SELECT_ORACLE ||
        sel->selector == ADAMAS_SELECT_STREAMING) {
        if (o->sink_set)
            a.sparse.sink = o->sink;
        if (o->recent_set)
            a.sparse.recent = o->recent;
    }
    return a;
}

/* One attention policy of a run that compares several (perplexity, passkey). */
typedef struct {
    const selector_def *select;
    uint32_t budget, dense_layers;
    llama_attention attn;
} policy;

/* Every selector x dense layers x budget of the options, full attention once (it has
 * no budget) and a selector given as NAME:D with D dense layers only, into
 * out[n_selects * n_dense * n_budgets]; returns how many. */
static size_t list_policies(const options *o, policy *out)
{
    size_t n = 0;
    for (uint32_t si = 0; si < o->n_selects; si++)
        for (uint32_t di = 0; di < o->n_dense; di++)
            for (uint32_t bi = 0; bi < o->n_budgets; bi++) {
                const selector_def *sel = o->selects[si];
                const int own = o->selects_dense[si];
                if ((sel->selector == ADAMAS_SELECT_FULL && (di > 0 || bi > 0)) ||
                    (own >= 0 && di > 0))
                    continue;
                const uint32_t dense = own >= 0 ? (uint32_t)own : o->dense[di];
                out[n] = (policy){.select = sel, .budget = o->budgets[bi], .dense_layers = dense,
                                  .attn = attention_of(o, sel, o->budgets[bi], dense)};
                n++;
            }
    return n;
}

/* "adamas/128/2": selector, budget and dense layers; "full" alone has neither. */
static const char *policy_name(const policy *p, char *buf, size_t size)
{
    if (p->select->selector == ADAMAS_SELECT_FULL)
        return p->select->name;
    snprintf(buf, size, "%s/%u/%u", p->select->name, p->budget, p->dense_layers);
    return buf;
}

static size_t max_policies(const options *o)
{
    return (size_t)o->n_selects * o->n_dense * o->n_budgets;
}

/* ------------------------------------------------------------------- sampler */

static uint64_t rng_state;

static float random_unit(void) /* xorshift*, uniform in [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static uint32_t argmax(const float *x, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

typedef struct {
    float p;
    uint32_t index;
} prob_index;

static int by_prob_desc(const void *a, const void *b)
{
    float x = ((const prob_index *)a)->p, y = ((const prob_index *)b)->p;
    return (x < y) - (x > y);
}

/* Greedy at temperature 0, else a draw from the smallest set of most likely tokens
 * whose probability reaches top_p.  scratch: [n]. */
static uint32_t sample(float *logits, uint32_t n, float temperature, float top_p,
                       prob_index *scratch)
{
    if (temperature == 0.0f)
        return argmax(logits, n);
    float max = logits[argmax(logits, n)];
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        scratch[i].p = expf((logits[i] - max) / temperature);
        scratch[i].index = i;
        sum += scratch[i].p;
    }
    qsort(scratch, n, sizeof *scratch, by_prob_desc);
    double mass = 0.0;
    uint32_t keep = 0;
    while (keep < n && (keep == 0 || mass < top_p * sum))
        mass += scratch[keep++].p;
    double r = random_unit() * mass, acc = 0.0;
    for (uint32_t i = 0; i < keep; i++) {
        acc += scratch[i].p;
        if (r < acc)
            return scratch[i].index;
    }
    return scratch[keep - 1].index;
}

static void print_token(const tokenizer *t, uint32_t token)
{
    size_t len;
    const char *piece = tokenizer_piece(t, token, &len);
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
}

/* ------------------------------------------------------------------ generate */

static int generate_main(engine *e)
{
    const options *o = e->o;
    const tokenizer *tok = e->model.tok;
    char *text = NULL;
    size_t len = 0;
    if (o->prompt_file) {
        if (!(text = read_file(o->prompt_file, &len)))
            return 1;
    } else {
        text = strdup(o->prompt ? o->prompt : "");
        len = text ? strlen(text) : 0;
    }
    uint32_t *tokens = NULL;
    size_t n = 0;
    uint32_t bos = tokenizer_bos(tok);
    int rc = 1;
    prob_index *scratch = malloc(e->model.config.vocab_size * sizeof *scratch);
    if (!text || !scratch || (len == 0 && bos == TOKEN_NONE)) {
        fprintf(stderr, "adamas-run generate: %s\n", !text || !scratch ? "out of memory"
                        : "an empty prompt needs a model with a bos token: give --prompt");
        goto done;
    }
    if (len == 0) { /* start from the bos token */
        tokens = malloc(sizeof *tokens);
        if (!tokens)
            goto done;
        tokens[n++] = bos;
    } else if (tokenizer_encode(tok, text, len, &tokens, &n)) {
        fprintf(stderr, "adamas-run generate: out of memory\n");
        goto done;
    }
    if (n + o->n_generate > e->state.max_tokens) {
        fprintf(stderr, "adamas-run generate: %zu prompt tokens and -n %u exceed the context of "
                        "%u tokens (see --ctx)\n", n, o->n_generate, e->state.max_tokens);
        goto done;
    }
    rng_state = o->seed ? o->seed : 1;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    /* every prompt token but the last is prefilled; the last is the first decode step */
    if (engine_prefill(e, tokens, (uint32_t)n - 1, NULL) || engine_decode(e, tokens[n - 1]))
        goto done;
    uint32_t eos = tokenizer_eos(tok);
    for (uint32_t i = 0; i < o->n_generate; i++) {
        uint32_t next = sample(e->state.logits, e->model.config.vocab_size, o->temperature,
                               o->top_p, scratch);
        if (next == eos)
            break;
        print_token(tok, next);
        if (i + 1 < o->n_generate && engine_decode(e, next))
            goto done;
    }
    printf("\n");
    print_speed(stderr, &e->sp);
    FILE *jf = json_open(o);
    if (jf) {
        fprintf(jf, "{");
        json_common(jf, e);
        fprintf(jf, "}\n");
        fclose(jf);
    }
    rc = 0;
done:
    free(text);
    free(tokens);
    free(scratch);
    return rc;
}

/* ---------------------------------------------------------------- perplexity */

/* -log p(target) in nats from logits[n]. */
static double nll(const float *logits, uint32_t n, uint32_t target)
{
    float max = logits[argmax(logits, n)];
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++)
        sum += exp((double)logits[i] - max);
    return log(sum) - ((double)logits[target] - max);
}

/* One attention policy of a perplexity run and what it scored. */
typedef struct {
    policy pol;
    double sum_nll, decode_s;
    uint64_t scored, bytes;
    double *window_nll;      /* [windows] the sum of -log p over each window's tail */
} ppl_config;

static int perplexity_main(engine *e)
{
    const options *o = e->o;
    uint32_t *tokens;
    size_t n;
    if (read_tokens(e, &tokens, &n))
        return 1;
    /* window w holds tokens [start[w], start[w]+N); its last decode step predicts token
     * start[w]+N.  The windows lie back to back from the start of the file; fewer of them
     * (--windows) are spread evenly over it, the first at its start, as numpy's linspace
     * places tools/train/train.py's evaluation windows (slots of N+1 tokens). */
    const uint64_t back_to_back = n > o->ctx ? (n - 1) / o->ctx : 0;
    const uint64_t slots = n / ((uint64_t)o->ctx + 1);
    uint64_t windows = back_to_back;
    const bool spread = o->windows && o->windows < back_to_back && o->windows <= slots;
    if (o->windows && windows > o->windows)
        windows = o->windows;
    if (windows == 0) {
        fprintf(stderr, "adamas-run perplexity: %s holds %zu tokens, a window needs %u + 1\n",
                o->file, n, o->ctx);
        free(tokens);
        return 1;
    }
    /* every selector x dense layers x budget (full attention once: it has no budget) */
    ppl_config *cfg = calloc(max_policies(o), sizeof *cfg);
    policy *pols = malloc(max_policies(o) * sizeof *pols);
    uint64_t *start = malloc(windows * sizeof *start);
    uint64_t *window_bytes = calloc(windows, sizeof *window_bytes);
    llama_snapshot snap = {0};
    size_t n_cfg = 0;
    int rc = 1;
    if (!cfg || !pols || !start || !window_bytes ||
        llama_snapshot_init(&snap, &e->model, o->ctx - o->tail)) {
        fprintf(stderr, "adamas-run: out of memory\n");
        goto done;
    }
    const double step = spread && windows > 1
                            ? (double)((slots - 1) * ((uint64_t)o->ctx + 1)) / (double)(windows - 1)
                            : 0.0;
    for (uint64_t w = 0; w < windows; w++)
        start[w] = !spread ? w * o->ctx
                   : w + 1 == windows && windows > 1 ? (slots - 1) * ((uint64_t)o->ctx + 1)
                                                     : (uint64_t)((double)w * step);
    n_cfg = list_policies(o, pols);
    for (size_t k = 0; k < n_cfg; k++) {
        cfg[k].pol = pols[k];
        if (!(cfg[k].window_nll = calloc(windows, sizeof(double)))) {
            fprintf(stderr, "adamas-run: out of memory\n");
            goto done;
        }
    }
    const uint32_t vocab = e->model.config.vocab_size, prefill = o->ctx - o->tail;
    progress bar;
    progress_start(&bar, windows * o->tail * n_cfg, "tokens scored");
    uint64_t done_steps = 0;
    for (uint64_t w = 0; w < windows; w++) {
        const uint32_t *win = tokens + start[w];
        e->state.attn.calibrate = 0; /* the prefill's own caches are not decoded from */
        if (w > 0 && llama_state_reset(&e->state)) {
            engine_fail(e);
            goto done;
        }
        double t0 = cli_now();
        if (llama_prefill_keep(&e->state, win, prefill, NULL, &snap)) {
            engine_fail(e);
            goto done;
        }
        e->sp.prefill_s += cli_now() - t0;
        e->sp.prefill_tokens += prefill;
        /* each policy decodes the tail from caches refilled with the prefill's keys */
        for (size_t k = 0; k < n_cfg; k++) {
            ppl_config *c = &cfg[k];
            if (llama_restore(&e->state, &c->pol.attn, &snap)) {
                engine_fail(e);
                goto done;
            }
            for (uint32_t p = prefill; p < o->ctx; p++) {
                double t1 = cli_now();
                if (engine_decode(e, win[p]))
                    goto done;
                c->decode_s += cli_now() - t1;
                uint32_t target = win[p + 1];
                size_t piece_len;
                tokenizer_piece(e->model.tok, target, &piece_len);
                double loss = nll(e->state.logits, vocab, target);
                c->sum_nll += loss;
                c->window_nll[w] += loss;
                c->bytes += piece_len;
                if (k == 0)
                    window_bytes[w] += piece_len;
                c->scored++;
                char extra[160], name[64];
                snprintf(extra, sizeof extra, "%s ppl %.4f, %.2f tokens/s",
                         policy_name(&c->pol, name, sizeof name),
                         exp(c->sum_nll / (double)c->scored), rate(c->scored, c->decode_s));
                progress_show(&bar, ++done_steps, extra);
            }
        }
    }
    FILE *jf = json_open(o);
    if (jf)
        fprintf(jf, "{\"mode\": \"perplexity\", \"file\": \"%s\", \"ctx\": %u, \"tail\": %u, "
                    "\"windows\": %llu, \"kv\": \"%s\", \"threads\": %d, \"prefill_tokens\": %llu, "
                    "\"prefill_tokens_per_s\": %.3f, ",
                o->file, o->ctx, o->tail, (unsigned long long)windows,
                o->kv_dtype == ADAMAS_F16 ? "f16" : "f32", o->threads,
                (unsigned long long)e->sp.prefill_tokens, rate(e->sp.prefill_tokens, e->sp.prefill_s));
    if (jf) {
        fprintf(jf, "\"window_starts\": [");
        for (uint64_t w = 0; w < windows; w++)
            fprintf(jf, "%s%llu", w ? ", " : "", (unsigned long long)start[w]);
        fprintf(jf, "], \"window_bytes\": [");
        for (uint64_t w = 0; w < windows; w++)
            fprintf(jf, "%s%llu", w ? ", " : "", (unsigned long long)window_bytes[w]);
        fprintf(jf, "], \"results\": [");
    }
    printf("%-18s %7s %6s %12s %14s %12s\n", "select", "budget", "dense", "perplexity",
           "bits per byte", "decode tok/s");
    for (size_t k = 0; k < n_cfg; k++) {
        const ppl_config *c = &cfg[k];
        double ppl = exp(c->sum_nll / (double)c->scored);
        double bpb = c->bytes ? c->sum_nll / log(2.0) / (double)c->bytes : 0.0;
        bool full = c->pol.select->selector == ADAMAS_SELECT_FULL;
        printf("%-18s %7u %6u %12.4f %14.4f %12.2f\n", c->pol.select->name,
               full ? 0 : c->pol.budget, full ? 0 : c->pol.dense_layers, ppl, bpb, rate(c->scored, c->decode_s));
        if (jf)
            fprintf(jf, "%s{\"select\": \"%s\", \"budget\": %u, \"dense_layers\": %u, "
                        "\"tokens_scored\": %llu, \"bytes_scored\": %llu, \"perplexity\": %.6f, "
                        "\"bits_per_byte\": %.6f, \"decode_tokens_per_s\": %.3f, "
                        "\"window_nll_nats\": [",
                    k ? ", " : "", c->pol.select->name, full ? 0 : c->pol.budget,
                    full ? 0 : c->pol.dense_layers,
                    (unsigned long long)c->scored, (unsigned long long)c->bytes, ppl, bpb,
                    rate(c->scored, c->decode_s));
        for (uint64_t w = 0; jf && w < windows; w++)
            fprintf(jf, "%s%.6f", w ? ", " : "", c->window_nll[w]);
        if (jf)
            fprintf(jf, "]}");
    }
    if (jf) {
        fprintf(jf, "]}\n");
        fclose(jf);
    }
    printf("%llu windows of %u tokens%s: %u prefilled with dense attention, the last %u "
           "decoded one at a time and scored\n",
           (unsigned long long)windows, o->ctx, spread ? " spread over the file" : "", prefill,
           o->tail);
    print_speed(stdout, &e->sp);
    rc = 0;
done:
    llama_snapshot_free(&snap);
    for (size_t k = 0; cfg && k < n_cfg; k++)
        free(cfg[k].window_nll);
    free(cfg);
    free(pols);
    free(start);
    free(window_bytes);
    free(tokens);
    return rc;
}

/* ------------------------------------------------------------------- passkey */

static const char default_filler[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back "
    "again. ";

#define PASSKEY_ANSWER 12 /* tokens generated at most */

static int append_text(const tokenizer *t, const char *s, uint32_t **tokens, size_t *n)
{
    if (tokenizer_encode(t, s, strlen(s), tokens, n)) {
        fprintf(stderr, "adamas-run: out of memory\n");
        return -1;
    }
    return 0;
}

/* The haystack of one trial: ctx - (question and answer room) tokens of filler with the
 * needle at `depth`, into *all[*n] (malloc'd), and the question into *question[*n_question]. */
static int passkey_haystack(const engine *e, const uint32_t *filler, size_t n_filler,
                            double depth, unsigned key, uint32_t **all, size_t *n,
                            uint32_t **question, size_t *n_question)
{
    const tokenizer *tok = e->model.tok;
    char needle[160];
    if (e->o->needle_c)
        snprintf(needle, sizeof needle, "\nstatic const char *pass_key = \"%05u\";\n", key);
    else
        snprintf(needle, sizeof needle,
                 "\nThe pass key is %05u. Remember it. %05u is the pass key.\n", key, key);
    uint32_t *nt = NULL;
    size_t n_needle = 0;
    int rc = 1;
    *all = NULL;
    *question = NULL;
    *n_question = 0;
    if (append_text(tok, needle, &nt, &n_needle) ||
        append_text(tok, e->o->needle_c ? "\nstatic const char *pass_key = \""
                                        : "\nWhat is the pass key? The pass key is",
                    question, n_question))
        goto done;
    size_t ctx = e->o->ctx;
    if (n_needle + *n_question + PASSKEY_ANSWER + 1 > ctx) {
        fprintf(stderr, "adamas-run passkey: --ctx %zu is too small for the needle and the "
                        "question (%zu tokens)\n", ctx, n_needle + *n_question + PASSKEY_ANSWER + 1);
        goto done;
    }
    size_t n_fill = ctx - n_needle - *n_question - PASSKEY_ANSWER;
    size_t at = (size_t)(depth * (double)n_fill);
    if (!(*all = malloc(ctx * sizeof **all)))
        goto done;
    size_t m = 0;
    for (size_t i = 0; i < n_fill; i++) {
        if (i == at) {
            memcpy(*all + m, nt, n_needle * sizeof **all);
            m += n_needle;
        }
        (*all)[m++] = filler[i % n_filler];
    }
    if (at >= n_fill) {
        memcpy(*all + m, nt, n_needle * sizeof **all);
        m += n_needle;
    }
    *n = m;
    rc = 0;
done:
    free(nt);
    if (rc) {
        free(*all);
        free(*question);
        *all = *question = NULL;
    }
    return rc;
}

/* After the haystack: the question decoded through the selector, the answer generated
 * greedily; *found when it starts with the key's five digits. */
static int passkey_answer(engine *e, const uint32_t *question, size_t n_question, unsigned key,
                          bool *found)
{
    const tokenizer *tok = e->model.tok;
    char digits[16];
    snprintf(digits, sizeof digits, "%05u", key);
    for (size_t i = 0; i < n_question; i++)
        if (engine_decode(e, question[i]))
            return 1;
    char out[128];
    size_t out_len = 0;
    for (size_t i = 0; i < PASSKEY_ANSWER; i++) {
        uint32_t next = argmax(e->state.logits, e->model.config.vocab_size);
        size_t len;
        const char *piece = tokenizer_piece(tok, next, &len);
        if (out_len + len < sizeof out) {
            memcpy(out + out_len, piece, len);
            out_len += len;
        }
        out[out_len] = 0;
        const char *d = out + strspn(out, " \n\t");
        size_t nd = strspn(d, "0123456789");
        if (*d && (nd >= 5 || d[nd])) /* five digits, or something else came */
            break;
        if (i + 1 < PASSKEY_ANSWER && engine_decode(e, next))
            return 1;
    }
    out[out_len] = 0;
    const char *d = out + strspn(out, " \n\t");
    *found = strncmp(d, digits, 5) == 0;
    return 0;
}

/* One attention policy of a passkey run and what it found. */
typedef struct {
    policy pol;
    uint32_t found[16], total;
    double decode_s;
    uint64_t decode_tokens;
} passkey_config;

static int passkey_main(engine *e)
{
    const options *o = e->o;
    char *filler_text = NULL;
    size_t filler_len;
    if (o->filler_file) {
        if (!(filler_text = read_file(o->filler_file, &filler_len)))
            return 1;
    } else {
        filler_text = strdup(default_filler);
        filler_len = filler_text ? strlen(filler_text) : 0;
    }
    uint32_t *filler = NULL;
    size_t n_filler = 0;
    if (!filler_text || tokenizer_encode(e->model.tok, filler_text, filler_len, &filler, &n_filler)
        || n_filler == 0) {
        fprintf(stderr, "adamas-run passkey: %s\n", filler_text ? "the filler is empty"
                                                                : "out of memory");
        free(filler_text);
        free(filler);
        return 1;
    }
    free(filler_text);
    /* one prefill per trial; every policy answers from caches refilled with its keys */
    passkey_config *cfg = calloc(max_policies(o), sizeof *cfg);
    policy *pols = malloc(max_policies(o) * sizeof *pols);
    llama_snapshot snap = {0};
    uint32_t *all = NULL, *question = NULL;
    int rc = 1;
    if (!cfg || !pols || llama_snapshot_init(&snap, &e->model, o->ctx)) {
        fprintf(stderr, "adamas-run: out of memory\n");
        goto done;
    }
    const size_t n_cfg = list_policies(o, pols);
    for (size_t k = 0; k < n_cfg; k++)
        cfg[k].pol = pols[k];
    rng_state = o->seed ? o->seed : 1;
    const uint32_t trials = o->n_depths * o->trials;
    progress bar;
    progress_start(&bar, (uint64_t)trials * n_cfg, "answers");
    uint64_t answered = 0;
    for (uint32_t d = 0; d < o->n_depths; d++)
        for (uint32_t t = 0; t < o->trials; t++) {
            unsigned key = (unsigned)(random_unit() * 100000.0f) % 100000u;
            size_t n_all, n_question;
            free(all);
            free(question);
            if (passkey_haystack(e, filler, n_filler, o->depths[d], key, &all, &n_all, &question,
                                 &n_question))
                goto done;
            e->state.attn.calibrate = 0; /* the prefill's own caches are not decoded from */
            if (llama_state_reset(&e->state)) {
                engine_fail(e);
                goto done;
            }
            double t0 = cli_now();
            if (llama_prefill_keep(&e->state, all, (uint32_t)n_all, NULL, &snap)) {
                engine_fail(e);
                goto done;
            }
            e->sp.prefill_s += cli_now() - t0;
            e->sp.prefill_tokens += n_all;
            for (size_t k = 0; k < n_cfg; k++) {
                passkey_config *c = &cfg[k];
                if (llama_restore(&e->state, &c->pol.attn, &snap)) {
                    engine_fail(e);
                    goto done;
                }
                const double s0 = e->sp.decode_s;
                const uint64_t n0 = e->sp.decode_tokens;
                bool found = false;
                if (passkey_answer(e, question, n_question, key, &found))
                    goto done;
                c->decode_s += e->sp.decode_s - s0;
                c->decode_tokens += e->sp.decode_tokens - n0;
                c->found[d] += found;
                c->total += found;
                char extra[96], name[64];
                snprintf(extra, sizeof extra, "%s: %u found",
                         policy_name(&c->pol, name, sizeof name), c->total);
                progress_show(&bar, ++answered, extra);
            }
        }
    printf("passkey: %u tokens, %u depths x %u trials, needle %s\n", o->ctx, o->n_depths, o->trials,
           o->needle_c ? "c" : "text");
    printf("%-18s %7s %6s", "select", "budget", "dense");
    for (uint32_t d = 0; d < o->n_depths; d++)
        printf("  %5.2f", o->depths[d]);
    printf("  %8s %12s\n", "accuracy", "decode tok/s");
    FILE *jf = json_open(o);
    if (jf)
        fprintf(jf, "{\"mode\": \"passkey\", \"ctx\": %u, \"kv\": \"%s\", \"threads\": %d, "
                    "\"filler\": \"%s\", \"needle\": \"%s\", \"trials\": %u, \"prefill_tokens\": %llu, "
                    "\"prefill_tokens_per_s\": %.3f, \"depths\": [",
                o->ctx, o->kv_dtype == ADAMAS_F16 ? "f16" : "f32", o->threads,
                o->filler_file ? o->filler_file : "", o->needle_c ? "c" : "text", o->trials,
                (unsigned long long)e->sp.prefill_tokens, rate(e->sp.prefill_tokens, e->sp.prefill_s));
    for (uint32_t d = 0; jf && d < o->n_depths; d++)
        fprintf(jf, "%s%.4f", d ? ", " : "", o->depths[d]);
    if (jf)
        fprintf(jf, "], \"results\": [");
    for (size_t k = 0; k < n_cfg; k++) {
        const passkey_config *c = &cfg[k];
        bool full = c->pol.select->selector == ADAMAS_SELECT_FULL;
        double accuracy = (double)c->total / (double)trials;
        printf("%-18s %7u %6u", c->pol.select->name, full ? 0 : c->pol.budget,
               full ? 0 : c->pol.dense_layers);
        for (uint32_t d = 0; d < o->n_depths; d++)
            printf("  %2u/%-2u", c->found[d], o->trials);
        printf("  %8.3f %12.2f\n", accuracy, rate(c->decode_tokens, c->decode_s));
        if (jf) {
            fprintf(jf, "%s{\"select\": \"%s\", \"budget\": %u, \"dense_layers\": %u, "
                        "\"accuracy\": %.6f, \"decode_tokens_per_s\": %.3f, \"found\": [",
                    k ? ", " : "", c->pol.select->name, full ? 0 : c->pol.budget,
                    full ? 0 : c->pol.dense_layers, accuracy, rate(c->decode_tokens, c->decode_s));
            for (uint32_t d = 0; d < o->n_depths; d++)
                fprintf(jf, "%s%u", d ? ", " : "", c->found[d]);
            fprintf(jf, "]}");
        }
    }
    if (jf) {
        fprintf(jf, "]}\n");
        fclose(jf);
    }
    print_speed(stdout, &e->sp);
    rc = 0;
done:
    llama_snapshot_free(&snap);
    free(all);
    free(question);
    free(cfg);
    free(pols);
    free(filler);
    return rc;
}

/* -------------------------------------------------------------------- logits */

static int logits_main(engine *e)
{
    const options *o = e->o;
    uint32_t *tokens;
    size_t n;
    if (read_tokens(e, &tokens, &n))
        return 1;
    const uint32_t vocab = e->model.config.vocab_size;
    size_t ctx = o->ctx ? o->ctx : n;
    float *logits = NULL;
    FILE *out = NULL;
    int rc = 1;
    if (ctx > n || ctx == 0 || o->tail > ctx || ctx > e->state.max_tokens) {
        fprintf(stderr, "adamas-run logits: %s holds %zu tokens: --ctx %zu and --tail %u do not "
                        "fit\n", o->file, n, ctx, o->tail);
        goto done;
    }
    logits = malloc(ctx * vocab * sizeof *logits);
    out = fopen(o->out_path, "wb");
    if (!logits || !out) {
        fprintf(stderr, "adamas-run logits: %s\n", logits ? "cannot create the output"
                                                          : "out of memory");
        goto done;
    }
    uint32_t prefill = (uint32_t)ctx - o->tail;
    if (engine_prefill(e, tokens, prefill, logits))
        goto done;
    for (uint32_t p = prefill; p < ctx; p++) {
        if (engine_decode(e, tokens[p]))
            goto done;
        memcpy(logits + (size_t)p * vocab, e->state.logits, vocab * sizeof *logits);
    }
    if (fwrite(logits, sizeof *logits, ctx * vocab, out) != ctx * vocab) {
        fprintf(stderr, "adamas-run logits: writing %s failed\n", o->out_path);
        goto done;
    }
    printf("logits: %zu tokens (%u prefilled, %u decoded) x %u to %s\n", ctx, prefill, o->tail,
           vocab, o->out_path);
    print_speed(stdout, &e->sp);
    rc = 0;
done:
    if (out && fclose(out) && !rc) {
        fprintf(stderr, "adamas-run logits: writing %s failed\n", o->out_path);
        rc = 1;
    }
    free(tokens);
    free(logits);
    return rc;
}

/* ---------------------------------------------------------------------- main */

/* OpenBLAS (0.3.21, Debian 12) does not know recent Xeons by their model number and
 * falls back to its Prescott (SSE3) kernels, about half as fast here as its AVX-512
 * ones.  Naming the core type in OPENBLAS_CORETYPE is the only way to choose: it is
 * read when the library loads, so run again with it set. */
static void pick_openblas_kernels(char **argv)
{
#if defined(ADAMAS_HAVE_OPENBLAS) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const char *core = openblas_get_corename();
    if (getenv("OPENBLAS_CORETYPE") || !core || strcmp(core, "Prescott") != 0)
        return;
    const char *better = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                         : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                           : NULL;
    if (!better || setenv("OPENBLAS_CORETYPE", better, 1) != 0)
        return;
    fprintf(stderr, "adamas-run: OpenBLAS took this CPU for a Prescott; running again with "
                    "OPENBLAS_CORETYPE=%s\n", better);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: go on with the kernels we have */
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o))
        return 2;
    pick_openblas_kernels(argv);
    const char *path = o.model_path ? o.model_path : default_model();
    if (!o.model_path && access(path, R_OK) != 0) {
        fprintf(stderr,
                "adamas-run: no model given and the default %s is absent.\n"
                "  Pass one with -m FILE (a llama GGUF with a byte-level BPE vocabulary);\n"
                "  tools/train/train.py trains the reference model and exports it there.\n",
                path);
        return 1;
    }
    llama_set_threads(o.threads);
    if (o.threads)
        adamas_set_num_threads(o.threads);
    engine e = {.o = &o};
    char err[512];
    double t0 = cli_now();
    if (llama_load(path, &e.model, err, sizeof err)) {
        fprintf(stderr, "adamas-run: %s\n", err);
        return 1;
    }
    const llama_config *c = &e.model.config;
    fprintf(stderr, "adamas-run: %s: %u layers, dim %u, %u heads (%u kv) of %u, ffn %u, vocab %u, "
                    "trained context %u; kernels %s; loaded in %.2f s\n",
            path, c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden_dim,
            c->vocab_size, c->context_length, adamas_isa_name(), cli_now() - t0);

    llama_attention attn = attention_of(&o, o.select, o.budget, o.dense_layers);
    /* generate and logits without --ctx: room for the trained context, at most 32K
     * tokens (--ctx sets any other) */
    uint32_t max_tokens = o.ctx ? o.ctx : c->context_length < 32768 ? c->context_length : 32768;
    if (max_tokens > c->context_length)
        fprintf(stderr, "adamas-run: warning: a context of %u tokens is beyond the %u the model "
                        "was trained for\n", max_tokens, c->context_length);
    int rc = 1;
    if (llama_state_init(&e.state, &e.model, &attn, max_tokens)) {
        fprintf(stderr, "adamas-run: %s\n", e.state.error);
        llama_free(&e.model);
        return 1;
    }
    if (!strcmp(o.mode, "generate"))
        rc = generate_main(&e);
    else if (!strcmp(o.mode, "perplexity"))
        rc = perplexity_main(&e);
    else if (!strcmp(o.mode, "passkey"))
        rc = passkey_main(&e);
    else
        rc = logits_main(&e);
    llama_state_free(&e.state);
    llama_free(&e.model);
    return rc;
}

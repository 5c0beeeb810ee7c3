/*
 * bench_decode.c - decode steps against this machine's own memory bandwidth.
 *
 * First a memory-bandwidth probe (one thread and every thread of the grid, reading a
 * working set far beyond the last-level cache), then a grid: per shape, context and
 * thread count, the library's dense decode (FULL, f16 and f32 KV), an OpenBLAS dense
 * decode on f32 KV (when built with OpenBLAS), the Adamas code scan alone (its
 * histograms limited as for the baseline budget, as decode limits them), Adamas
 * (plain and two-stage) at each budget, and Quest, StreamingLLM and the oracle at one
 * budget.  Every row of a block is measured in the same run, repetitions interleaved
 * row by row, so a noisy neighbour slows all of them alike; the time shown is the
 * median.
 *
 * The keys have structure (tools/workload.h: the cache of `adamas demo`), so the
 * attention mass captured (the share of the full-attention probability that the
 * selected tokens hold) means something.
 *
 * Bytes read per step, as counted here: what must come from memory at least, each
 * byte once (e = bytes per stored element, a row is d elements; n tokens,
 * n_cand = n - sink - recent candidates; the query heads of one kv head share its
 * reads):
 *   full, blas  every key and value row: 2 n Hkv d e
 *   scan        the codes of the candidates: n_cand Hkv W 8 (W = code words)
 *   adamas      scan + the selected key and value rows, each (kv head, token) once
 *               however many query heads of the group chose it: sum_g |U_g| 2 d e;
 *               rerank R adds the R(B-|F|) shortlisted keys of every query head,
 *               Hq R (B-|F|) d e (an upper bound: the shortlists are not seen here)
 *   oracle      every candidate key, n_cand Hkv d e, + the selected rows
 *   quest       the page bounds (min and max, f32), Hkv pages 2 d 4, + the rows of
 *               the chosen pages
 *   streaming   the selected rows
 * Writes (code distances, outputs) are not counted.  By default the caches are evicted before
 * every timed step (a model reads other layers between two steps of one layer): the
 * lines of what the step may read are flushed, then a buffer of twice the last-level
 * cache is read; --warm keeps them.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h> /* _mm_clflush, _mm_clflushopt */
#endif

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef ADAMAS_BENCH_OPENBLAS
#include <cblas.h>
#endif

#include "cli.h"
#include "adamas.h"
#include "decode.h" /* internal: the scan phase is timed alone */
#include "workload.h"

#define MAX_LIST 16
#define MAX_REPS 64
#define MAX_ROWS 32
#define GIB (1024.0 * 1024.0 * 1024.0)

/* ------------------------------------------------------------------ machine */

/* CPU time of the calling thread: with the wall time of a one-thread step it tells
 * how long the step was off the CPU (a shared machine).  Not used for several
 * threads: the process clock counts the other threads' time only at scheduler ticks,
 * far too coarsely for one step. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Median of v[n] (n >= 1); v is sorted in place. */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cli_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One-minute load average, or -1 where /proc/loadavg is missing. */
static double load_average(void)
{
    double load = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1.0;
        fclose(f);
    }
    return load;
}

/* MemAvailable in bytes, or 0 where /proc/meminfo is missing. */
static double mem_available(void)
{
    char line[256];
    double kib = 0.0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0.0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1)
            break;
    fclose(f);
    return kib * 1024.0;
}

/* Size of the largest CPU cache sysfs lists (the last level), or 32 MiB. */
static size_t llc_bytes(void)
{
    size_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], text[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(text, sizeof text, f)) {
            char *end;
            double v = strtod(text, &end);
            size_t bytes = (size_t)(v * (*end == 'M' ? 1048576.0 : *end == 'K' ? 1024.0 : 1.0));
            best = bytes > best ? bytes : best;
        }
        fclose(f);
    }
    return best ? best : (size_t)32 << 20;
}

static void cpu_model(char *buf, size_t size)
{
    char line[512];
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && !strncmp(line, "model name", 10)) {
            colon += 1 + (colon[1] == ' ');
            colon[strcspn(colon, "\n")] = 0;
            snprintf(buf, size, "%s", colon);
            break;
        }
    }
    fclose(f);
}

static int all_threads(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

/* -------------------------------------------- bandwidth probe and eviction */

/* One read of buf[words] by `threads` threads, one word of every 64-byte line: the
 * memory system moves whole lines, and touching one word of each keeps the core's
 * instruction rate out of the figure (a loop over every word reads ~30% slower on
 * one core here).  Each line is also asked into L2 L2_PREFETCH_BYTES ahead, as the
 * library's scans and dense passes ask for theirs (in a loop of its own one core of
 * the 2-core machine read 15.8 GB/s without, 17.2 with; the probe here 16.1-16.6
 * against 16.3), so that what those passes read is compared with a rate reached
 * the same way.  The sum keeps the reads alive. */
static uint64_t read_pass(const uint64_t *buf, size_t words, int threads)
{
    const size_t ahead = L2_PREFETCH_BYTES / sizeof *buf;
    uint64_t sum = 0;
    (void)threads;
#pragma omp parallel for schedule(static) reduction(+ : sum) num_threads(threads)
    for (size_t i = 0; i < words; i += 8) {
        if (i + ahead < words)
            adamas_prefetch_l2(buf + i + ahead, 64);
        sum += buf[i];
    }
    return sum;
}

static volatile uint64_t sink_u64;

/* Best of `passes` reads of buf, in GB/s (1e9 bytes per second, whole lines). */
static double probe_bandwidth(const uint64_t *buf, size_t words, int threads, int passes)
{
    double best = 0.0;
    for (int p = 0; p < passes; p++) {
        double t0 = cli_now();
        sink_u64 += read_pass(buf, words, threads);
        double gbps = (double)words * 8.0 / (cli_now() - t0) / 1e9;
        best = gbps > best ? gbps : best;
    }
    return best;
}

/* A buffer larger than the last-level cache: reading it (every thread) pushes the
 * workspace and the rest out of the CPU caches, as the other layers of a model would. */
typedef struct {
    uint64_t *buf;
    size_t words;
} evictor;

static void evict(const evictor *e, int threads)
{
    if (e->buf)
        sink_u64 += read_pass(e->buf, e->words, threads);
}

#if defined(__x86_64__) || defined(__i386__)
/* clflushopt: the flushes of different lines need not wait on one another. */
__attribute__((target("clflushopt"))) static void flush_opt(const char *p, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += 64)
        _mm_clflushopt((void *)(p + off));
}

static void flush_plain(const char *p, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += 64)
        _mm_clflush(p + off);
}
#endif

/* Write back and drop the lines of bytes at p from every cache level (x86 and AArch64;
 * elsewhere only the read of the evictor pushes them out), with every processor: it
 * is not timed. */
static void flush_lines(const void *p, size_t bytes)
{
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_num_procs();
#endif
    (void)threads;
#if defined(__x86_64__) || defined(__i386__)
    const size_t part = (bytes / (size_t)threads + 63) / 64 * 64;
    /* CPUID leaf 7, EBX bit 23: clang does not know "clflushopt" as a feature name */
    unsigned eax, ebx, ecx, edx;
    const int has_clflushopt = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ebx >> 23 & 1);
    void (*flush)(const char *, size_t) = has_clflushopt ? flush_opt : flush_plain;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < threads; t++) {
        size_t from = (size_t)t * part, to = from + part < bytes ? from + part : bytes;
        if (from < to)
            flush((const char *)p + from, to - from);
    }
    _mm_mfence();
#elif defined(__aarch64__)
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t off = 0; off < bytes; off += 64)
        __asm__ volatile("dc civac, %0" : : "r"((const char *)p + off) : "memory");
    __asm__ volatile("dsb ish" : : : "memory");
#else
    (void)p;
    (void)bytes;
#endif
}

/* Flush what a step on cache c of n tokens may read: per kv head its first n keys,
 * values and codes, and the page bounds of those tokens.  A read of twice the
 * last-level cache alone did not push them all out: the last level keeps lines that
 * were used again over lines read once (on the 2-core machine the 32/32 scan on 2
 * threads read at 118-129% of the bandwidth with it). */
static void flush_cache(const adamas_cache *c, uint32_t n)
{
    if (!c)
        return;
    const size_t d = c->cfg.head_dim, row = d * c->elem_size;
    const size_t pages = (n + c->cfg.page_size - 1) / c->cfg.page_size;
    for (uint32_t g = 0; g < c->cfg.n_kv_heads; g++) {
        flush_lines(adamas_cache_key_row(c, g, 0), n * row);
        flush_lines(adamas_cache_value_row(c, g, 0), n * row);
        flush_lines(adamas_cache_codes(c, g, 0), n * c->code_words * sizeof(uint64_t));
        flush_lines(c->page_min + g * c->max_pages * d, pages * d * sizeof(float));
        flush_lines(c->page_max + g * c->max_pages * d, pages * d * sizeof(float));
    }
}

/* ------------------------------------------------------------------ options */

typedef struct {
    uint32_t heads, kv_heads, dim;
} shape;

enum {
    SEL_FULL = 1 << 0,      /* library FULL, f16 KV               */
    SEL_FULL_F32 = 1 << 1,  /* library FULL, f32 KV               */
    SEL_BLAS = 1 << 2,      /* OpenBLAS dense, f32 KV             */
    SEL_SCAN = 1 << 3,      /* the Adamas code scan alone         */
    SEL_ADAMAS = 1 << 4,    /* Adamas, each budget                */
    SEL_RERANK = 1 << 5,    /* Adamas two-stage, each budget      */
    SEL_QUEST = 1 << 6,     /* one budget                         */
    SEL_STREAMING = 1 << 7, /* one budget                         */
    SEL_ORACLE = 1 << 8,    /* one budget                         */
    SEL_ALL = (1 << 9) - 1
};

static const struct {
    const char *name;
    unsigned bit;
} selector_names[] = {
    {"full", SEL_FULL},     {"full-f32", SEL_FULL_F32},   {"blas", SEL_BLAS},
    {"scan", SEL_SCAN},     {"adamas", SEL_ADAMAS},       {"rerank", SEL_RERANK},
    {"quest", SEL_QUEST},   {"streaming", SEL_STREAMING}, {"oracle", SEL_ORACLE},
};

typedef struct {
    uint32_t contexts[MAX_LIST], n_contexts;
    shape shapes[MAX_LIST];
    uint32_t n_shapes;
    uint32_t budgets[MAX_LIST], n_budgets;
    uint32_t baseline_budget; /* quest, streaming, oracle */
    uint32_t rerank;
    int threads[MAX_LIST]; /* 0: all */
    uint32_t n_threads;
    uint32_t reps;
    unsigned selectors;
    int warm;
    double mem_limit; /* bytes; 0: MemAvailable */
    uint64_t seed;
    const char *json;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_decode [options]\n"
            "\n"
            "Measures this machine's memory read bandwidth, then decode steps of the library\n"
            "on a synthetic long-context KV cache (the cache of `adamas demo`: a sink, needles,\n"
            "relevant passages): per shape, context and thread count, dense decode (library\n"
            "FULL on f16 and f32 KV, OpenBLAS sgemv on f32 KV when built with OpenBLAS), the\n"
            "Adamas code scan alone, Adamas plain and two-stage at each budget, and Quest,\n"
            "StreamingLLM and the oracle at one budget.  Per row: time per decode step of one\n"
            "layer (median), bytes read, GB/s and the share of the measured bandwidth, the\n"
            "speed-up over the library's dense decode of the same KV dtype and threads,\n"
            "measured in the same run, and the attention mass captured.  The header comment\n"
            "of bench/bench_decode.c says how bytes are counted.\n"
            "\n"
            "options:\n"
            "  --contexts LIST   cached tokens, e.g. 4K,16K,32K,128K (the default)\n"
            "  --shapes LIST     heads/kv_heads[/dim]: 32/32,32/8 (default; dim 128)\n"
            "  --budgets LIST    Adamas budgets (default 64,128,256)\n"
            "  --baseline-budget B  budget of quest, streaming, oracle (default 128)\n"
            "  --rerank R        two-stage factor (default 4)\n"
            "  --threads LIST    thread counts, numbers or `all` (default 1,all)\n"
            "  --selectors LIST  rows to run (default all): full, full-f32, blas, scan,\n"
            "                    adamas, rerank, quest, streaming, oracle\n"
            "  --reps N          timed steps per row; the median is shown (default 7)\n"
            "  --warm            keep the CPU caches warm (default: before each step, flush\n"
            "                    the lines the step may read, then read twice the LLC)\n"
            "  --mem-limit GIB   memory the caches may take (default: MemAvailable)\n"
            "  --seed S          workload seed (default 1)\n"
            "  --json FILE       also write one JSON object per row to FILE\n"
            "  --quick           small grid for `meson test --benchmark`: contexts 4K,16K,\n"
            "                    budget 128, 3 reps\n"
            "  -h, --help        this text\n"
            "\n"
            "Progress goes to stderr, the table to stdout.  OMP_NUM_THREADS sets `all`.\n"
            "A context whose caches do not fit in the memory available is skipped, with a\n"
            "note (32/32 heads at 128K tokens take 2 GiB of f16 KV, 4 GiB more in f32);\n"
            "the f32 rows go first.\n");
}

/* Comma-separated items of v through parse_item; returns the count or -1. */
static int parse_list(const char *v, void *out, int (*parse_item)(const char *, void *, int))
{
    char buf[512];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_LIST || parse_item(tok, out, n))
            return -1;
        n++;
    }
    return n > 0 ? n : -1;
}

static int parse_context(const char *s, void *out, int i)
{
    char num[32];
    size_t len = strlen(s);
    uint32_t mult = 1, v;
    if (len == 0 || len >= sizeof num)
        return -1;
    memcpy(num, s, len + 1);
    if (num[len - 1] == 'K' || num[len - 1] == 'k')
        mult = 1024;
    else if (num[len - 1] == 'M' || num[len - 1] == 'm')
        mult = 1024 * 1024;
    if (mult > 1)
        num[len - 1] = 0;
    if (cli_parse_u32(num, &v) || v == 0 || (uint64_t)v * mult >= UINT32_MAX)
        return -1;
    ((uint32_t *)out)[i] = v * mult;
    return 0;
}

static int parse_budget(const char *s, void *out, int i)
{
    uint32_t *b = out;
    return cli_parse_u32(s, &b[i]) || b[i] < 2;
}

static int parse_threads(const char *s, void *out, int i)
{
    uint32_t v;
    if (!strcmp(s, "all")) {
        ((int *)out)[i] = 0;
        return 0;
    }
    if (cli_parse_u32(s, &v) || v == 0 || v > 4096)
        return -1;
    ((int *)out)[i] = (int)v;
    return 0;
}

static int parse_shape(const char *s, void *out, int i)
{
    shape *sh = (shape *)out + i;
    unsigned h, g, d = 128;
    char extra;
    int n = sscanf(s, "%u/%u/%u%c", &h, &g, &d, &extra);
    if (n != 2 && n != 3)
        return -1;
    if (h == 0 || g == 0 || h % g || g > WORKLOAD_MAX_KV_HEADS || d < ADAMAS_MIN_HEAD_DIM ||
        d > ADAMAS_MAX_HEAD_DIM || (d & (d - 1)))
        return -1;
    *sh = (shape){h, g, d};
    return 0;
}

static int parse_selector(const char *s, void *out, int i)
{
    (void)i;
    for (size_t k = 0; k < sizeof selector_names / sizeof selector_names[0]; k++)
        if (!strcmp(s, selector_names[k].name)) {
            *(unsigned *)out |= selector_names[k].bit;
            return 0;
        }
    return -1;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.contexts = {4096, 16384, 32768, 131072}, .n_contexts = 4,
                   .shapes = {{32, 32, 128}, {32, 8, 128}}, .n_shapes = 2,
                   .budgets = {64, 128, 256}, .n_budgets = 3, .baseline_budget = 128,
                   .rerank = 4, .threads = {1, 0}, .n_threads = 2, .reps = 7,
                   .selectors = SEL_ALL, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--warm")) {
            o->warm = 1;
            continue;
        }
        if (!strcmp(a, "--quick")) {
            *o = (options){.contexts = {4096, 16384}, .n_contexts = 2,
                           .shapes = {{32, 32, 128}, {32, 8, 128}}, .n_shapes = 2,
                           .budgets = {128}, .n_budgets = 1, .baseline_budget = 128,
                           .rerank = 4, .threads = {1, 0}, .n_threads = 2, .reps = 3,
                           .selectors = SEL_ALL, .seed = 1, .json = o->json};
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_decode: %s needs a value (see --help)\n", a);
            return -1;
        }
        int n = 0, bad = 0;
        if (!strcmp(a, "--contexts")) {
            bad = (n = parse_list(v, o->contexts, parse_context)) < 0;
            o->n_contexts = (uint32_t)n;
        } else if (!strcmp(a, "--shapes")) {
            bad = (n = parse_list(v, o->shapes, parse_shape)) < 0;
            o->n_shapes = (uint32_t)n;
        } else if (!strcmp(a, "--budgets")) {
            bad = (n = parse_list(v, o->budgets, parse_budget)) < 0;
            o->n_budgets = (uint32_t)n;
        } else if (!strcmp(a, "--threads")) {
            bad = (n = parse_list(v, o->threads, parse_threads)) < 0;
            o->n_threads = (uint32_t)n;
        } else if (!strcmp(a, "--selectors")) {
            o->selectors = 0;
            bad = parse_list(v, &o->selectors, parse_selector) < 0;
        } else if (!strcmp(a, "--baseline-budget")) {
            bad = cli_parse_u32(v, &o->baseline_budget) || o->baseline_budget < 17;
        } else if (!strcmp(a, "--rerank")) {
            bad = cli_parse_u32(v, &o->rerank) || o->rerank < 2;
        } else if (!strcmp(a, "--reps")) {
            bad = cli_parse_u32(v, &o->reps) || o->reps == 0 || o->reps > MAX_REPS;
        } else if (!strcmp(a, "--mem-limit")) {
            char *end;
            o->mem_limit = strtod(v, &end) * GIB;
            bad = *end || !(o->mem_limit > 0.0);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            o->seed = strtoull(v, &end, 0);
            bad = *end != 0;
        } else if (!strcmp(a, "--json")) {
            o->json = v;
        } else {
            fprintf(stderr, "bench_decode: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "bench_decode: bad value \"%s\" for %s (see --help)\n", v, a);
            return -1;
        }
        i++;
    }
    return 0;
}

/* ------------------------------------------------------------------ output */

static FILE *json_file;

/* One JSON object per line; fmt holds the members, without braces. */
static void json_line(const char *fmt, ...)
{
    if (!json_file)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputc('{', json_file);
    vfprintf(json_file, fmt, ap);
    fputs("}\n", json_file);
    va_end(ap);
    fflush(json_file);
}

static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_decode: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char *dtype_name(adamas_dtype t)
{
    return t == ADAMAS_F16 ? "f16" : t == ADAMAS_BF16 ? "bf16" : "f32";
}

static size_t dtype_size(adamas_dtype t)
{
    return t == ADAMAS_F32 ? 4 : 2;
}

/* ----------------------------------------------------------- one case's data */

/* Everything one (shape, context) needs: the caches, the workload, the reference
 * outputs and the buffers of the rows that do not go through adamas_decode. */
typedef struct {
    shape sh;
    uint32_t n;
    adamas_cache *c16, *c32; /* c32: NULL when no f32 row runs or it does not fit */
    workload w;
    float *ref16, *ref32, *out; /* [heads][dim] FULL outputs, scratch output       */
    uint32_t *selected;         /* [heads][max budget]                             */
    uint32_t *seen;             /* [n] last kv head + 1 that gathered each token     */
    /* scan row */
    uint64_t *qcode; /* [heads][code words]                                     */
    uint16_t *dist;   /* [heads][n]                                             */
    uint32_t *hist;   /* [heads][scan chunks][3 dim + 1]                        */
    uint32_t *hits;   /* [scan chunks][heads][ADAMAS_SCAN_CHUNK]                */
    uint32_t *n_hits; /* [scan chunks][heads]                                   */
    /* blas row */
    float *blas_logits;  /* [threads][group * n]                                */
    float *blas_partial; /* [kv_heads * parts][group][dim + 2]: m, s, o         */
    int max_threads;
} bench_case;

static void case_free(bench_case *bc)
{
    adamas_cache_destroy(bc->c16);
    adamas_cache_destroy(bc->c32);
    workload_destroy(&bc->w);
    free(bc->ref16);
    free(bc->ref32);
    free(bc->out);
    free(bc->selected);
    free(bc->seen);
    free(bc->qcode);
    free(bc->dist);
    free(bc->hist);
    free(bc->hits);
    free(bc->n_hits);
    free(bc->blas_logits);
    free(bc->blas_partial);
    memset(bc, 0, sizeof *bc);
}

/* Bytes a cache of this shape takes (K, V, codes, Quest bounds). */
static double cache_bytes(const shape *sh, uint32_t n, adamas_dtype t)
{
    double rows = (double)sh->kv_heads * n, pages = (double)sh->kv_heads * ((n + 15) / 16);
    return rows * sh->dim * dtype_size(t) * 2 + rows * adamas_code_words(sh->dim) * 8 +
           pages * sh->dim * 4 * 2;
}

static int fail_adamas(const char *what, int st)
{
    fprintf(stderr, "bench_decode: %s: %s\n  %s\n", what, adamas_strerror(st), adamas_last_error());
    return -1;
}

static uint32_t scan_chunks(uint32_t n_cand)
{
    return (n_cand + ADAMAS_SCAN_CHUNK - 1) / ADAMAS_SCAN_CHUNK;
}

/* Build the caches and the workload of one case.  Returns 0, 1 (skipped: does not
 * fit; said on stdout) or -1 (error). */
static int case_build(bench_case *bc, const options *o, const shape *sh, uint32_t n,
                      uint32_t max_budget, int max_threads)
{
    memset(bc, 0, sizeof *bc);
    bc->sh = *sh;
    bc->n = n;
    bc->max_threads = max_threads;
    const size_t hd = (size_t)sh->heads * sh->dim;
    const int want32 = (o->selectors & (SEL_FULL_F32 | SEL_BLAS)) != 0;
    const double avail = o->mem_limit > 0.0 ? o->mem_limit : mem_available();
    const double other = (double)sh->heads * n * (8 + 8 + 2 + 4) +
                         (double)max_threads * n * 8 * (sh->heads / sh->kv_heads + 2);
    const double need16 = cache_bytes(sh, n, ADAMAS_F16) + other;
    const double need32 = cache_bytes(sh, n, ADAMAS_F32);
    if (avail > 0.0 && need16 > 0.9 * avail) {
        printf("skipped %u/%u heads, %u tokens: the f16 cache and buffers need %.1f GiB, "
               "%.1f GiB available\n",
               sh->heads, sh->kv_heads, n, need16 / GIB, avail / GIB);
        progress("skipped %u tokens: does not fit in memory", n);
        return 1;
    }
    int with32 = want32;
    if (want32 && avail > 0.0 && need16 + need32 > 0.9 * avail) {
        printf("note %u/%u heads, %u tokens: no f32 rows: the f32 cache needs %.1f GiB more, "
               "%.1f GiB available\n",
               sh->heads, sh->kv_heads, n, need32 / GIB, avail / GIB);
        with32 = 0;
    }

    adamas_cache_config cfg = adamas_cache_config_default(sh->heads, sh->kv_heads, sh->dim, n);
    cfg.kv_dtype = ADAMAS_F16;
    int st = adamas_cache_create(&cfg, &bc->c16);
    if (!st && with32) {
        cfg.kv_dtype = ADAMAS_F32;
        st = adamas_cache_create(&cfg, &bc->c32);
    }
    if (st)
        return fail_adamas("adamas_cache_create", st);

    const workload_config wcfg = {.tokens = n, .heads = sh->heads, .kv_heads = sh->kv_heads,
                                  .dim = sh->dim, .dtype = ADAMAS_F16, .progress = 1};
    const uint32_t words = (uint32_t)adamas_code_words(sh->dim), nbins = 3 * sh->dim + 1;
    const uint32_t group = sh->heads / sh->kv_heads;
    const uint32_t parts = (uint32_t)max_threads > sh->kv_heads
                               ? ((uint32_t)max_threads + sh->kv_heads - 1) / sh->kv_heads
                               : 1;
    bc->ref16 = malloc(hd * sizeof *bc->ref16);
    bc->ref32 = malloc(hd * sizeof *bc->ref32);
    bc->out = malloc(hd * sizeof *bc->out);
    bc->selected = malloc((size_t)sh->heads * max_budget * sizeof *bc->selected);
    bc->seen = malloc((size_t)n * sizeof *bc->seen);
    bc->qcode = malloc((size_t)sh->heads * words * sizeof *bc->qcode);
    bc->dist = malloc((size_t)sh->heads * n * sizeof *bc->dist);
    bc->hist = malloc((size_t)sh->heads * scan_chunks(n) * nbins * sizeof *bc->hist);
    bc->hits = malloc((size_t)scan_chunks(n) * sh->heads * ADAMAS_SCAN_CHUNK * sizeof *bc->hits);
    bc->n_hits = malloc((size_t)scan_chunks(n) * sh->heads * sizeof *bc->n_hits);
    if (with32) {
        bc->blas_logits = malloc((size_t)max_threads * group * n * sizeof *bc->blas_logits);
        bc->blas_partial = malloc((size_t)sh->kv_heads * parts * group * (sh->dim + 2) *
                                  sizeof *bc->blas_partial);
    }
    if (workload_create(&bc->w, &wcfg) || !bc->ref16 || !bc->ref32 || !bc->out ||
        !bc->selected || !bc->seen || !bc->qcode || !bc->dist || !bc->hist || !bc->hits ||
        !bc->n_hits ||
        (with32 && (!bc->blas_logits || !bc->blas_partial))) {
        fprintf(stderr, "bench_decode: out of memory\n");
        return -1;
    }
    adamas_cache *caches[2] = {bc->c16, bc->c32};
    workload_rng r = {o->seed};
    double t0 = cli_now();
    st = workload_fill(&bc->w, caches, with32 ? 2 : 1, &r);
    if (st == ADAMAS_ENOMEM) {
        fprintf(stderr, "bench_decode: out of memory\n");
        return -1;
    }
    if (st)
        return fail_adamas("adamas_cache_append", st);
    progress("built %u/%u heads d=%u, %u tokens, %s KV in %.1f s", sh->heads, sh->kv_heads,
             sh->dim, n, with32 ? "f16 and f32" : "f16", cli_now() - t0);

    /* reference outputs: dense attention over each stored dtype */
    adamas_decode_params pf = adamas_decode_params_default(ADAMAS_SELECT_FULL, 0);
    if ((st = adamas_decode(bc->c16, &pf, bc->w.q, bc->ref16, NULL)))
        return fail_adamas("adamas_decode", st);
    if (bc->c32 && (st = adamas_decode(bc->c32, &pf, bc->w.q, bc->ref32, NULL)))
        return fail_adamas("adamas_decode", st);

    /* query codes of the scan row, as phase 1 of a decode step computes them */
    const adamas_kernels *kern;
    if ((st = adamas_kernels_get(&kern)))
        return fail_adamas("adamas_kernels_get", st);
    for (uint32_t h = 0; h < sh->heads; h++) {
        float qh[ADAMAS_MAX_HEAD_DIM];
        memcpy(qh, bc->w.q + (size_t)h * sh->dim, sh->dim * sizeof *qh);
        kern->hadamard_encode(qh, sh->dim, cfg.q_thresholds, bc->qcode + (size_t)h * words);
    }
    return 0;
}

/* ------------------------------------------------------- rows outside decode */

static int thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Phase 2 of a decode step alone, as decode.c runs it (adamas_scan_chunk): per kv head
 * and chunk of ADAMAS_SCAN_CHUNK candidates, the grouped scan of every query head of
 * the kv head (one histogram per head and chunk up to the limits of a selection of the
 * first Adamas budget, and its distances or its hits), each thread carrying its limits
 * and claiming chunks as decode's threads do (adamas_scan_plan). */
static int scan_phase(bench_case *bc, int threads, uint32_t budget)
{
    /* the step as adamas_decode describes it (sink 0, recent 1: n_cand = n - 1) */
    const adamas_decode_params p = adamas_decode_params_default(ADAMAS_SELECT_ADAMAS, budget);
    decode_step s;
    int st = adamas_prepare_step(bc->c16, &p, bc->w.q, bc->out, &s);
    if (st)
        return fail_adamas("adamas_prepare_step", st);
    const uint32_t chunks = scan_chunks(s.n_cand), kv = bc->sh.kv_heads;
    const uint32_t group = bc->sh.heads / kv;
    const scan_plan plan = adamas_scan_plan(kv, chunks, (uint32_t)threads);
    const size_t words = adamas_code_words(bc->sh.dim);
    uint16_t *limits = malloc((size_t)threads * bc->sh.heads * sizeof *limits);
    uint32_t *seen_hists =
        malloc((size_t)threads * bc->sh.heads * (s.nbins + 1) * sizeof *seen_hists);
    atomic_uint *bounds = malloc(bc->sh.heads * sizeof *bounds);
    if (!limits || !seen_hists || !bounds) {
        free(limits);
        free(seen_hists);
        free(bounds);
        fprintf(stderr, "bench_decode: out of memory\n");
        return -1;
    }
    for (uint32_t h = 0; h < bc->sh.heads; h++)
        atomic_init(&bounds[h], UINT16_MAX);
#pragma omp parallel num_threads(threads)
    {
        uint16_t *limit = limits + (size_t)thread_num() * bc->sh.heads;
        uint32_t *seen = seen_hists + (size_t)thread_num() * bc->sh.heads * (s.nbins + 1);
        for (uint32_t h = 0; h < bc->sh.heads; h++)
            limit[h] = UINT16_MAX;
#pragma omp for schedule(dynamic, plan.claim)
        for (uint32_t item = 0; item < plan.items; item++) {
            uint32_t g, chunk;
            if (!adamas_scan_item(&plan, item, &g, &chunk))
                continue;
            const size_t h0 = (size_t)g * group;
            const size_t at = (size_t)chunk * bc->sh.heads + h0;
            adamas_scan_chunk(&s, bc->qcode + h0 * words, words, g, chunk,
                              bc->hist + (h0 * chunks + chunk) * s.nbins, (size_t)chunks * s.nbins,
                              bc->dist + h0 * bc->n, bc->n, bc->hits + at * ADAMAS_SCAN_CHUNK,
                              ADAMAS_SCAN_CHUNK,
                              bc->n_hits + at, limit + h0, seen + h0 * (s.nbins + 1),
                              s.nbins + 1, plan.shared ? bounds + h0 : NULL);
        }
    }
    free(limits);
    free(seen_hists);
    free(bounds);
    return 0;
}

#ifdef ADAMAS_BENCH_OPENBLAS

/* Dense decode on the f32 cache with OpenBLAS (one BLAS thread per call): per kv head,
 * or per part of one when there are fewer kv heads than threads, the logits of its
 * query heads (sgemv, or sgemm for a GQA group), softmax, the weighted sum of the
 * values (sgemv / sgemm); the parts are combined like the library's chunks. */
static void blas_decode(bench_case *bc, int threads)
{
    const adamas_cache *c = bc->c32;
    const uint32_t n = bc->n, kv = bc->sh.kv_heads, d = bc->sh.dim, group = bc->sh.heads / kv;
    const uint32_t parts = (uint32_t)threads > kv ? ((uint32_t)threads + kv - 1) / kv : 1;
    const float scale = (float)(1.0 / sqrt((double)d));
    const size_t pstride = d + 2;
    const float *q = bc->w.q;
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (uint32_t item = 0; item < kv * parts; item++) {
        const uint32_t g = item / parts, part = item % parts;
        const uint32_t first = (uint32_t)((uint64_t)n * part / parts);
        const int len = (int)((uint64_t)n * (part + 1) / parts - first);
        const float *k = adamas_cache_key_row(c, g, first);
        const float *v = adamas_cache_value_row(c, g, first);
        const float *qg = q + (size_t)g * group * d;
        float *l = bc->blas_logits + (size_t)thread_num() * group * n; /* [group][len] */
        float *p = bc->blas_partial + (size_t)item * group * pstride;  /* [group][d + 2] */
        if (group == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, len, (int)d, scale, k, (int)d, qg, 1, 0.0f,
                        l, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)group, len, (int)d, scale,
                        qg, (int)d, k, (int)d, 0.0f, l, len);
        for (uint32_t j = 0; j < group; j++) {
            float *lj = l + (size_t)j * len, max = -INFINITY, sum = 0.0f;
            for (int i = 0; i < len; i++)
                max = lj[i] > max ? lj[i] : max;
            for (int i = 0; i < len; i++)
                sum += lj[i] = expf(lj[i] - max);
            p[j * pstride] = max;
            p[j * pstride + 1] = sum;
        }
        if (group == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, len, (int)d, 1.0f, v, (int)d, l, 1, 0.0f, p + 2,
                        1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)group, (int)d, len, 1.0f,
                        l, len, v, (int)d, 0.0f, p + 2, (int)pstride);
    }
    for (uint32_t h = 0; h < bc->sh.heads; h++) {
        const uint32_t g = h / group, j = h % group;
        float *out = bc->out + (size_t)h * d, max = -INFINITY, sum = 0.0f;
        for (uint32_t part = 0; part < parts; part++) {
            float m = bc->blas_partial[((size_t)(g * parts + part) * group + j) * pstride];
            max = m > max ? m : max;
        }
        memset(out, 0, d * sizeof *out);
        for (uint32_t part = 0; part < parts; part++) {
            const float *p = bc->blas_partial + ((size_t)(g * parts + part) * group + j) * pstride;
            float wgt = expf(p[0] - max);
            sum += wgt * p[1];
            for (uint32_t i = 0; i < d; i++)
                out[i] += wgt * p[2 + i];
        }
        for (uint32_t i = 0; i < d; i++)
            out[i] /= sum;
    }
}
#endif

#ifdef ADAMAS_BENCH_OPENBLAS
/* OpenBLAS picks its kernels from the CPU model when it loads; a model newer than its
 * release gets the generic SSE3 kernels ("Prescott"), which would make the dense
 * baseline a strawman.  Then run again with OPENBLAS_CORETYPE naming the best kernels
 * this CPU runs (unless the caller set it). */
static void openblas_pick_core(char **argv)
{
#if defined(__linux__) && defined(__x86_64__) && defined(__GNUC__)
    const char *core = openblas_get_corename();
    if (getenv("OPENBLAS_CORETYPE") || !core || strcmp(core, "Prescott"))
        return;
    const char *better = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        better = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        better = "Haswell";
    if (!better)
        return;
    progress("OpenBLAS took its generic %s kernels for this CPU; running again with "
             "OPENBLAS_CORETYPE=%s",
             core, better);
    if (setenv("OPENBLAS_CORETYPE", better, 1) == 0)
        execv("/proc/self/exe", argv);
    progress("could not run again: the OpenBLAS row uses the %s kernels", core);
#else
    (void)argv;
#endif
}
#endif

/* ------------------------------------------------------------------- rows */

typedef enum { ROW_DECODE, ROW_SCAN, ROW_BLAS } row_kind;

typedef struct {
    char name[32];
    row_kind kind;
    adamas_dtype dtype;
    adamas_decode_params p; /* ROW_DECODE */
    uint32_t budget;        /* 0: dense or scan */
    double times[MAX_REPS]; /* wall seconds per step                               */
    double cpu[MAX_REPS];   /* CPU seconds per step and thread                      */
    double bytes, mass, err; /* mass < 0: not applicable */
} row;

/* One result kept for the goals at the end. */
typedef struct {
    shape sh;
    uint32_t n;
    int threads;
    char name[32];
    adamas_dtype dtype;
    uint32_t budget;
    double ms, pct, vs_dense;
} result;

static result *results;
static size_t n_results, cap_results;

static void keep_result(const result *r)
{
    if (n_results == cap_results) {
        size_t cap = cap_results ? 2 * cap_results : 256;
        result *grown = realloc(results, cap * sizeof *grown);
        if (!grown)
            return;
        results = grown;
        cap_results = cap;
    }
    results[n_results++] = *r;
}

static adamas_cache *row_cache(const bench_case *bc, const row *r)
{
    return r->dtype == ADAMAS_F32 ? bc->c32 : bc->c16;
}

/* One step of a row; selected may be NULL. */
static int run_once(bench_case *bc, row *r, int threads, uint32_t *selected)
{
    if (r->kind == ROW_SCAN)
        return scan_phase(bc, threads, r->p.budget);
    if (r->kind == ROW_BLAS) {
#ifdef ADAMAS_BENCH_OPENBLAS
        blas_decode(bc, threads);
#endif
        return 0;
    }
    int st = adamas_decode(row_cache(bc, r), &r->p, bc->w.q, bc->out, selected);
    return st ? fail_adamas("adamas_decode", st) : 0;
}

/* ||out - ref|| / ||ref||, averaged over heads. */
static double output_error(const bench_case *bc, const float *ref)
{
    const size_t d = bc->sh.dim;
    double err = 0.0;
    for (uint32_t h = 0; h < bc->sh.heads; h++) {
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < d; i++) {
            double a = bc->out[h * d + i], b = ref[h * d + i];
            num += (a - b) * (a - b);
            den += b * b;
        }
        err += sqrt(num / den);
    }
    return err / bc->sh.heads;
}

/* Untimed first step of a row: bytes it reads, mass it captures, output error. */
static int score_row(bench_case *bc, row *r, int threads)
{
    const shape *sh = &bc->sh;
    const uint32_t n = bc->n, n_cand = n - 1; /* sink 0, recent 1 for adamas, oracle */
    const double e = (double)dtype_size(r->dtype), row_bytes = (double)sh->dim * e;
    const double codes = (double)n_cand * sh->kv_heads * adamas_code_words(sh->dim) * 8;
    r->mass = -1.0;
    r->err = -1.0;
    if (r->kind == ROW_SCAN) {
        r->bytes = codes;
        return run_once(bc, r, threads, NULL);
    }
    if (r->kind == ROW_BLAS || r->p.selector == ADAMAS_SELECT_FULL) {
        r->bytes = 2.0 * n * sh->kv_heads * row_bytes;
        if (run_once(bc, r, threads, NULL))
            return -1;
        r->mass = 1.0;
        r->err = output_error(bc, r->dtype == ADAMAS_F32 ? bc->ref32 : bc->ref16);
        return 0;
    }
    if (run_once(bc, r, threads, bc->selected))
        return -1;
    const uint32_t B = r->budget, group = sh->heads / sh->kv_heads;
    double mass = 0.0, gathered = 0.0;
    memset(bc->seen, 0, n * sizeof *bc->seen);
    for (uint32_t h = 0; h < sh->heads; h++) {
        const double *pf = bc->w.p_full + (size_t)h * n;
        const uint32_t stamp = h / group + 1;
        for (uint32_t i = 0; i < B; i++) {
            uint32_t t = bc->selected[(size_t)h * B + i];
            if (t == UINT32_MAX)
                continue;
            mass += pf[t];
            if (bc->seen[t] != stamp) { /* first query head of the group to pick t */
                bc->seen[t] = stamp;
                gathered += 2.0 * row_bytes;
            }
        }
    }
    r->mass = mass / sh->heads;
    r->err = output_error(bc, bc->ref16);
    r->bytes = gathered;
    const uint32_t k_free = B - r->p.sink - r->p.recent;
    switch (r->p.selector) {
    case ADAMAS_SELECT_ADAMAS:
        r->bytes += codes;
        if (r->p.rerank > 1) {
            double shortlist = (double)r->p.rerank * k_free;
            r->bytes += sh->heads * (shortlist < n_cand ? shortlist : n_cand) * row_bytes;
        }
        break;
    case ADAMAS_SELECT_ORACLE:
        r->bytes += (double)sh->kv_heads * n_cand * row_bytes;
        break;
    case ADAMAS_SELECT_QUEST:
    {
        const uint32_t page = adamas_cache_get_config(bc->c16).page_size;
        r->bytes += (double)sh->kv_heads * ((n + page - 1) / page - 1) * sh->dim * 4 * 2;
    }
        break;
    default:
        break;
    }
    return 0;
}

static void add_row(row *rows, uint32_t *n_rows, const char *name, row_kind kind,
                    adamas_dtype dtype, adamas_selector sel, uint32_t budget, uint32_t rerank)
{
    row *r = &rows[(*n_rows)++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->kind = kind;
    r->dtype = dtype;
    r->budget = budget;
    r->p = adamas_decode_params_default(sel, budget);
    r->p.rerank = rerank;
}

/* The rows of one block, in the order they are printed. */
static uint32_t make_rows(const options *o, const bench_case *bc, row *rows)
{
    uint32_t n = 0;
    char name[32];
    if (o->selectors & SEL_FULL)
        add_row(rows, &n, "full", ROW_DECODE, ADAMAS_F16, ADAMAS_SELECT_FULL, 0, 0);
    if (bc->c32 && (o->selectors & SEL_FULL_F32))
        add_row(rows, &n, "full", ROW_DECODE, ADAMAS_F32, ADAMAS_SELECT_FULL, 0, 0);
#ifdef ADAMAS_BENCH_OPENBLAS
    if (bc->c32 && (o->selectors & SEL_BLAS))
        add_row(rows, &n, "blas", ROW_BLAS, ADAMAS_F32, ADAMAS_SELECT_FULL, 0, 0);
#endif
    if (o->selectors & SEL_SCAN) { /* histograms as for the baseline budget */
        add_row(rows, &n, "scan", ROW_SCAN, ADAMAS_F16, ADAMAS_SELECT_ADAMAS, 0, 0);
        rows[n - 1].p.budget = o->baseline_budget;
    }
    for (uint32_t i = 0; i < o->n_budgets; i++)
        if (o->selectors & SEL_ADAMAS)
            add_row(rows, &n, "adamas", ROW_DECODE, ADAMAS_F16, ADAMAS_SELECT_ADAMAS,
                    o->budgets[i], 0);
    snprintf(name, sizeof name, "adamas-rerank%u", o->rerank);
    for (uint32_t i = 0; i < o->n_budgets; i++)
        if (o->selectors & SEL_RERANK)
            add_row(rows, &n, name, ROW_DECODE, ADAMAS_F16, ADAMAS_SELECT_ADAMAS, o->budgets[i],
                    o->rerank);
    if (o->selectors & SEL_QUEST)
        add_row(rows, &n, "quest", ROW_DECODE, ADAMAS_F16, ADAMAS_SELECT_QUEST,
                o->baseline_budget, 0);
    if (o->selectors & SEL_STREAMING)
        add_row(rows, &n, "streaming", ROW_DECODE, ADAMAS_F16, ADAMAS_SELECT_STREAMING,
                o->baseline_budget, 0);
    if (o->selectors & SEL_ORACLE)
        add_row(rows, &n, "oracle", ROW_DECODE, ADAMAS_F16, ADAMAS_SELECT_ORACLE,
                o->baseline_budget, 0);
    return n;
}

static double median_ms(row *r, uint32_t reps, double *min_ms, double *max_ms, double *cpu_ms)
{
    double t[MAX_REPS];
    memcpy(t, r->cpu, reps * sizeof *t);
    *cpu_ms = 1e3 * median(t, reps);
    memcpy(t, r->times, reps * sizeof *t);
    double ms = 1e3 * median(t, reps);
    *min_ms = 1e3 * t[0];
    *max_ms = 1e3 * t[reps - 1];
    return ms;
}

/* Measure every row of one (shape, context, threads) block and print it.  The
 * bandwidth a row is compared with is the larger of the probe's (same threads) and
 * the median read bandwidth of the evictions that ran between its steps (the same
 * threads, at the same time; none with --warm). */
static int run_block(const options *o, bench_case *bc, int threads, double probe_bw,
                     const evictor *ev)
{
    row rows[MAX_ROWS];
    const uint32_t n_rows = make_rows(o, bc, rows);
    adamas_set_num_threads(threads);
    const double load0 = load_average();
    progress("%u/%u heads, %u tokens, %d thread%s: %u rows x %u steps", bc->sh.heads,
             bc->sh.kv_heads, bc->n, threads, threads > 1 ? "s" : "", n_rows, o->reps);
    for (uint32_t i = 0; i < n_rows; i++) /* warm-up, and what each row reads and selects */
        if (score_row(bc, &rows[i], threads))
            return -1;
    double ev_gbps[MAX_REPS * MAX_ROWS];
    uint32_t n_ev = 0;
    for (uint32_t rep = 0; rep < o->reps; rep++)
        for (uint32_t i = 0; i < n_rows; i++) {
            if (!o->warm) {
                flush_cache(row_cache(bc, &rows[i]), bc->n);
                double t0 = cli_now();
                evict(ev, threads);
                ev_gbps[n_ev++] = (double)ev->words * 8.0 / (cli_now() - t0) / 1e9;
            }
            double t0 = cli_now(), c0 = cpu_seconds();
            if (run_once(bc, &rows[i], threads, NULL))
                return -1;
            rows[i].times[rep] = cli_now() - t0;
            rows[i].cpu[rep] = cpu_seconds() - c0;
        }
    const double load1 = load_average();
    /* The larger of the two: on the 16-core machine the evictions, each just after a
     * flush, read up to 15% below the probe, and dense decode read faster than they. */
    const double ev_bw = n_ev ? median(ev_gbps, n_ev) : 0.0;
    const double bw = ev_bw > probe_bw ? ev_bw : probe_bw;

    printf("\n%u/%u heads, d=%u, %u tokens, %d thread%s: load %.2f -> %.2f, read bandwidth "
           "%.1f GB/s (%s)\n",
           bc->sh.heads, bc->sh.kv_heads, bc->sh.dim, bc->n, threads, threads > 1 ? "s" : "",
           load0, load1, bw,
           ev_bw > probe_bw ? "median of the evictions between steps, above the probe" : "probe");
    printf("%-16s %5s %6s %10s %8s %10s %8s %6s %9s %8s %10s\n", "selector", "kv", "budget",
           "ms/step", "cpu ms", "MB/step", "GB/s", "%bw", "vs dense", "mass", "out err");
    double dense_ms[3] = {0.0, 0.0, 0.0}; /* library FULL per dtype */
    for (uint32_t i = 0; i < n_rows; i++) {
        row *r = &rows[i];
        double lo, hi, cpu_ms, ms = median_ms(r, o->reps, &lo, &hi, &cpu_ms);
        if (r->kind == ROW_DECODE && r->p.selector == ADAMAS_SELECT_FULL)
            dense_ms[r->dtype] = ms;
        double gbps = r->bytes / (ms * 1e-3) / 1e9, pct = 100.0 * gbps / bw;
        double vs = dense_ms[r->dtype] > 0.0 ? dense_ms[r->dtype] / ms : 0.0;
        char budget[16], mass[16], err[16], cpu[16];
        snprintf(cpu, sizeof cpu, threads == 1 ? "%.3g" : "-", cpu_ms);
        snprintf(budget, sizeof budget, r->budget ? "%u" : "-", r->budget);
        snprintf(mass, sizeof mass, r->mass >= 0.0 ? "%.4f" : "-", r->mass);
        snprintf(err, sizeof err, r->err >= 0.0 ? "%.2e" : "-", r->err);
        printf("%-16s %5s %6s %10.3f %8s %10.1f %8.1f %5.0f%% %8.1fx %8s %10s\n", r->name,
               dtype_name(r->dtype), budget, ms, cpu, r->bytes / 1e6, gbps, pct, vs, mass, err);
        json_line("\"kind\":\"decode\",\"heads\":%u,\"kv_heads\":%u,\"dim\":%u,\"context\":%u,"
                  "\"threads\":%d,\"selector\":\"%s\",\"dtype\":\"%s\",\"budget\":%u,"
                  "\"rerank\":%u,\"ms\":%.6g,\"ms_min\":%.6g,\"ms_max\":%.6g,\"cpu_ms\":%s,"
                  "\"reps\":%u,\"bytes\":%.0f,\"gbps\":%.4g,\"bw_gbps\":%.4g,"
                  "\"probe_gbps\":%.4g,\"bw_pct\":%.4g,"
                  "\"dense_ms\":%.6g,\"vs_dense\":%.4g,\"mass\":%s,\"out_err\":%s,"
                  "\"cache\":\"%s\",\"load\":%.2f",
                  bc->sh.heads, bc->sh.kv_heads, bc->sh.dim, bc->n, threads, r->name,
                  dtype_name(r->dtype), r->budget, r->kind == ROW_DECODE ? r->p.rerank : 0, ms,
                  lo, hi, threads == 1 ? cpu : "null", o->reps, r->bytes, gbps, bw, probe_bw, pct, dense_ms[r->dtype],
                  vs,
                  r->mass >= 0.0 ? mass : "null", r->err >= 0.0 ? err : "null",
                  o->warm ? "warm" : "cold", 0.5 * (load0 + load1));
        result res = {.sh = bc->sh, .n = bc->n, .threads = threads, .dtype = r->dtype,
                      .budget = r->budget, .ms = ms, .pct = pct, .vs_dense = vs};
        _Static_assert(sizeof res.name == sizeof r->name, "row and result names alike");
        memcpy(res.name, r->name, sizeof res.name);
        keep_result(&res);
    }
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------- goals */

static const result *find_result(const shape *sh, uint32_t n, int threads, const char *name,
                                 adamas_dtype t, uint32_t budget)
{
    for (size_t i = 0; i < n_results; i++) {
        const result *r = &results[i];
        if (r->sh.heads == sh->heads && r->sh.kv_heads == sh->kv_heads && r->n == n &&
            r->threads == threads && !strcmp(r->name, name) && r->dtype == t &&
            r->budget == budget)
            return r;
    }
    return NULL;
}

/* The goals, per shape and thread count, for what this run measured. */
static void print_goals(const options *o, const int *threads, uint32_t n_threads)
{
    char rerank_name[32];
    snprintf(rerank_name, sizeof rerank_name, "adamas-rerank%u", o->rerank);
    printf("\ngoals (f16 KV; vs dense = library FULL of the same dtype and threads):\n");
    for (uint32_t s = 0; s < o->n_shapes; s++)
        for (uint32_t t = 0; t < n_threads; t++) {
            const shape *sh = &o->shapes[s];
            printf("  %u/%u heads, %d thread%s:\n", sh->heads, sh->kv_heads, threads[t],
                   threads[t] > 1 ? "s" : "");
            for (uint32_t c = 0; c < o->n_contexts; c++) {
                uint32_t n = o->contexts[c];
                const result *a = find_result(sh, n, threads[t], "adamas", ADAMAS_F16, 128);
                const result *rr = find_result(sh, n, threads[t], rerank_name, ADAMAS_F16, 128);
                const result *sc = find_result(sh, n, threads[t], "scan", ADAMAS_F16, 0);
                const result *f16 = find_result(sh, n, threads[t], "full", ADAMAS_F16, 0);
                const result *f32 = find_result(sh, n, threads[t], "full", ADAMAS_F32, 0);
                printf("    %6u tokens:", n);
                /* one more digit where a goal is judged: a figure at the line must
                 * not print as the line itself */
                if (a)
                    printf("  adamas B=128 %.*fx%s", n == 32768 || n == 131072 ? 2 : 1,
                           a->vs_dense,
                           n == 32768 ? (a->vs_dense >= 8 ? " (>=8x: met)" : " (>=8x: missed)")
                           : n == 131072 ? (a->vs_dense >= 12 ? " (>=12x: met)"
                                                              : " (>=12x: missed)")
                                         : "");
                if (sc)
                    printf("  scan %.0f%%bw", sc->pct);
                if (a && rr)
                    printf("  rerank%u +%.*f%%%s", o->rerank, n == 32768 ? 1 : 0,
                           100.0 * (rr->ms / a->ms - 1.0),
                           n != 32768               ? ""
                           : rr->ms <= 1.2 * a->ms ? " (<=20%: met)"
                                                   : " (<=20%: missed)");
                if (f16)
                    printf("  full f16 %.0f%%bw", f16->pct);
                if (f32)
                    printf("  full f32 %.0f%%bw", f32->pct);
                printf("\n");
            }
        }
}

/* --------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o))
        return 2;
#ifdef ADAMAS_BENCH_OPENBLAS
    openblas_pick_core(argv);
    openblas_set_num_threads(1); /* the benchmark spreads BLAS calls over its threads */
#endif
    if (o.json && !(json_file = fopen(o.json, "w"))) {
        fprintf(stderr, "bench_decode: cannot write %s\n", o.json);
        return 1;
    }

    /* thread counts: `all` resolved, duplicates dropped */
    int threads[MAX_LIST];
    uint32_t n_threads = 0;
    int max_threads = 1;
    for (uint32_t i = 0; i < o.n_threads; i++) {
        int t = o.threads[i] ? o.threads[i] : all_threads();
        int dup = 0;
        for (uint32_t j = 0; j < n_threads; j++)
            dup |= threads[j] == t;
        if (!dup)
            threads[n_threads++] = t;
        max_threads = t > max_threads ? t : max_threads;
    }
    uint32_t max_budget = o.baseline_budget;
    for (uint32_t i = 0; i < o.n_budgets; i++)
        max_budget = o.budgets[i] > max_budget ? o.budgets[i] : max_budget;

#ifdef ADAMAS_BENCH_OPENBLAS
    const char *blas_core = openblas_get_corename();
#else
    const char *blas_core = "none";
#endif
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    const size_t llc = llc_bytes();
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    printf("bench_decode: %s, %d logical CPUs, last-level cache %.0f MiB, kernels %s, "
           "OpenBLAS %s, %s caches\n",
           cpu, all_threads(), (double)llc / 1048576.0, adamas_isa_name(), blas_core,
           o.warm ? "warm" : "cold (evicted before each step)");
    json_line("\"kind\":\"run\",\"date\":\"%s\",\"cpu\":\"%s\",\"logical_cpus\":%d,"
              "\"llc_bytes\":%zu,\"kernels\":\"%s\",\"openblas\":\"%s\",\"cache\":\"%s\","
              "\"load\":%.2f",
              date, cpu, all_threads(), llc, adamas_isa_name(), blas_core,
              o.warm ? "warm" : "cold", load_average());

    /* memory bandwidth: a working set of 4x the last-level cache, at least 1 GiB */
    size_t probe = 4 * llc > ((size_t)1 << 30) ? 4 * llc : (size_t)1 << 30;
    uint64_t *buf = NULL;
    double bw[MAX_LIST];
    /* on huge pages, as the cache's buffers are, so that the probe and the evictions
     * stream as the cache's rows do */
    for (; probe >= ((size_t)64 << 20) && !(buf = adamas_alloc_streamed(probe)); probe /= 2)
        ;
    if (!buf) {
        fprintf(stderr, "bench_decode: out of memory\n");
        return 1;
    }
    const size_t words = probe / 8;
#pragma omp parallel for schedule(static) num_threads(max_threads)
    for (size_t i = 0; i < words; i++)
        buf[i] = i;
    printf("\nmemory read bandwidth (%.0f MiB working set, best of 5 reads; load %.2f):\n",
           (double)probe / 1048576.0, load_average());
    for (uint32_t t = 0; t < n_threads; t++) {
        bw[t] = probe_bandwidth(buf, words, threads[t], 5);
        printf("  %3d thread%s %7.1f GB/s\n", threads[t], threads[t] > 1 ? "s" : " ", bw[t]);
        json_line("\"kind\":\"bandwidth\",\"threads\":%d,\"bytes\":%zu,\"gbps\":%.4g", threads[t],
                  probe, bw[t]);
    }
    free(buf);

    /* eviction buffer: twice the last-level cache */
    evictor ev = {NULL, 0};
    if (!o.warm) {
        size_t bytes = 2 * llc > ((size_t)64 << 20) ? 2 * llc : (size_t)64 << 20;
        ev.words = bytes / 8;
        if (!(ev.buf = adamas_alloc_streamed(bytes))) {
            fprintf(stderr, "bench_decode: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < ev.words; i++)
            ev.buf[i] = i;
    }

    int rc = 0;
    for (uint32_t s = 0; s < o.n_shapes && !rc; s++)
        for (uint32_t c = 0; c < o.n_contexts && !rc; c++) {
            bench_case bc;
            int st = case_build(&bc, &o, &o.shapes[s], o.contexts[c], max_budget, max_threads);
            if (st < 0)
                rc = 1;
            for (uint32_t t = 0; t < n_threads && st == 0 && !rc; t++)
                rc = run_block(&o, &bc, threads[t], bw[t], &ev) ? 1 : 0;
            case_free(&bc);
        }
    if (!rc)
        print_goals(&o, threads, n_threads);
    free(ev.buf);
    free(results);
    if (json_file)
        fclose(json_file);
    return rc;
}

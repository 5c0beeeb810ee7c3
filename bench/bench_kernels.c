/*
 * bench_kernels.c - the kernel tables side by side: every ISA this machine runs,
 * measured in one run, with the speed-up over scalar.
 *
 *   scan        ns per key: one query code against n key codes (L1, XORW; with and
 *               without the select histogram), d = 64, 128, 256, n = 16384
 *   had+enc     ns per vector: Hadamard transform + 2-bit encode, d = 64, 128, 256
 *   dot, axpy   ns per row of d = 128, f32 and f16 rows
 *   x4          the grouped kernels of a GQA group of 4 query heads: scan in ns per
 *               key and head (d = 128, L1, with the histogram of every distance, and
 *               of those under limits about 1 key in 64 passes, as in a decode step),
 *               dot and axpy in ns per row (d = 128, f16, 4 rows a call, as attention
 *               calls them)
 *   q8_0 dot    ns per weight row of 2048 Q8_0 weights (adamas_matvec's kernel)
 *
 * Each figure is the median of REPS timed repetitions (the machine may be shared);
 * each repetition runs the kernel over its whole buffer at least MIN_NS long.
 * Usage: bench_kernels [reps]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "../simd/simd.h"
#include "adamas.h"
#include "kernels.h"

#define MIN_NS 20e6 /* per repetition */
#define N_KEYS 16384
#define N_VECTORS 512
#define N_ROWS 4096
#define ROW_DIM 128

static int reps = 9;
static volatile float sink_f;
static volatile uint32_t sink_u;

/* ----------------------------------------------------------------- tables */

typedef struct {
    const char *name;
    adamas_kernels k;
} variant;

static size_t n_variants;
static variant variants[8];

static void add_variant(const char *name, const adamas_kernels *k)
{
    variants[n_variants].name = name;
    variants[n_variants++].k = *k;
}

static void find_variants(void)
{
    add_variant("scalar", &adamas_kernels_scalar);
    static const char *const names[] = {"avx2", "avx512", "neon"};
    for (size_t i = 0; i < 3; i++) {
        const adamas_kernels *k = adamas_kernels_by_name(names[i]);
        if (!k)
            continue;
        add_variant(names[i], k);
#ifdef ADAMAS_HAVE_AVX512
        if (i == 1 && adamas_avx512_has_vpopcntdq()) {
            /* the table uses VPOPCNTQ here: time the nibble-table scan too */
            add_variant("avx512-vpshufb", k);
            variants[n_variants - 1].k.scan[0] = adamas_scan_l1_avx512_vpshufb;
            variants[n_variants - 1].k.scan[1] = adamas_scan_xorw_avx512_vpshufb;
            variants[n_variants - 1].k.scan_group[0] = adamas_scan_group_l1_avx512_vpshufb;
            variants[n_variants - 1].k.scan_group[1] = adamas_scan_group_xorw_avx512_vpshufb;
        }
#endif
    }
}

/* ---------------------------------------------------------------- timing */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

typedef void (*body_fn)(const variant *v, void *ctx);

/* Median over `reps` repetitions of the time of one call of body, divided by
 * `items` (keys, vectors or rows it handles). */
static double median_ns_per_item(const variant *v, body_fn body, void *ctx, double items)
{
    /* calls per repetition, from one warm-up call */
    double t0 = now_ns();
    body(v, ctx);
    double once = now_ns() - t0;
    long calls = once > 0 ? (long)(MIN_NS / once) + 1 : 1000;
    double times[64];
    for (int r = 0; r < reps; r++) {
        t0 = now_ns();
        for (long c = 0; c < calls; c++)
            body(v, ctx);
        times[r] = (now_ns() - t0) / (double)calls / items;
    }
    qsort(times, (size_t)reps, sizeof times[0], cli_cmp_double);
    return times[reps / 2];
}

/* ---------------------------------------------------------------- bodies */

typedef struct {
    size_t d, words;
    int metric, with_hist;
    uint64_t *q, *codes;
    uint16_t *dist;
    uint32_t *hist;
    uint32_t *hits;        /* grouped scan, sparse: [GROUP][N_KEYS], else NULL */
    const uint16_t *limit; /* grouped scan: each head's limit                */
} scan_ctx;

static void scan_body(const variant *v, void *p)
{
    scan_ctx *c = p;
    v->k.scan[c->metric](c->q, c->codes, c->words, N_KEYS, c->dist, c->with_hist ? c->hist : NULL);
    sink_u = c->dist[N_KEYS / 2];
}

/* GROUP query codes q[GROUP][words], histograms hist[GROUP][3d + 1], distances
 * dist[GROUP][N_KEYS] or hits hits[GROUP][N_KEYS]: a GQA group, as decode.c scans it. */
#define GROUP 4

static void scan_group_body(const variant *v, void *p)
{
    scan_ctx *c = p;
    const size_t nbins = 3 * c->d + 1;
    uint32_t n_hits[GROUP] = {0};
    v->k.scan_group[c->metric](c->q, c->words, GROUP, c->codes, c->words, N_KEYS, c->limit,
                               c->hist, nbins, c->hits ? NULL : c->dist, N_KEYS, 0, c->hits,
                               N_KEYS, n_hits);
    sink_u = c->hits ? n_hits[GROUP - 1] : c->dist[N_KEYS / 2];
}

/* Limits under which about 1 key in 64 lies, as a selection's limits fall to during a
 * decode step: from each head's distances to the keys. */
static void group_limits(const scan_ctx *c, uint16_t limit[GROUP])
{
    for (size_t h = 0; h < GROUP; h++) {
        uint32_t hist[3 * 1024 + 1] = {0}, below = 0, v = 0;
        adamas_kernels_scalar.scan[c->metric](c->q + h * c->words, c->codes, c->words, N_KEYS,
                                              c->dist, hist);
        while (below + hist[v] < N_KEYS / 64)
            below += hist[v++];
        limit[h] = (uint16_t)v;
    }
}

typedef struct {
    size_t d;
    float *x;
    uint64_t *codes;
} transform_ctx;

static void transform_body(const variant *v, void *p)
{
    transform_ctx *c = p;
    static const float th[3] = {-0.5f, 0.0f, 0.5f};
    size_t words = adamas_code_words(c->d);
    /* H is its own inverse: the vectors stay of unit scale however often this runs */
    for (size_t i = 0; i < N_VECTORS; i++)
        v->k.hadamard_encode(c->x + i * c->d, c->d, th, c->codes + i * words);
}

typedef struct {
    int dtype;
    float *q, *y;    /* [GROUP][ROW_DIM]: the single-head kernels use the first */
    float *logits;   /* [GROUP][N_ROWS]: the weights of the grouped axpy */
    void *rows;
} row_ctx;

static void dot_body(const variant *v, void *p)
{
    row_ctx *c = p;
    size_t elem = c->dtype == ADAMAS_F32 ? 4 : 2;
    float acc = 0.0f;
    for (size_t r = 0; r < N_ROWS; r++)
        acc += v->k.dot[c->dtype](c->q, (const char *)c->rows + r * ROW_DIM * elem, ROW_DIM);
    sink_f = acc;
}

#define Q8_0_COLS 2048
#define Q8_0_ROWS 512

typedef struct {
    float *x;
    unsigned char *rows;
} q8_0_ctx;

static void q8_0_body(const variant *v, void *p)
{
    q8_0_ctx *c = p;
    const size_t blocks = Q8_0_COLS / ADAMAS_Q8_0_BLOCK;
    float acc = 0.0f;
    for (size_t r = 0; r < Q8_0_ROWS; r++)
        acc += v->k.dot_q8_0(c->x, c->rows + r * blocks * ADAMAS_Q8_0_BYTES, blocks);
    sink_f = acc;
}

static void axpy_body(const variant *v, void *p)
{
    row_ctx *c = p;
    size_t elem = c->dtype == ADAMAS_F32 ? 4 : 2;
    for (size_t r = 0; r < N_ROWS; r++)
        v->k.axpy[c->dtype](c->y, 1e-4f, (const char *)c->rows + r * ROW_DIM * elem, ROW_DIM);
    sink_f = c->y[0];
}

/* Rows per call of the grouped dot and axpy: f16 rows of d = 128, as attention.c. */
#define GROUP_ROWS 4

static void dot_group_body(const variant *v, void *p)
{
    row_ctx *c = p;
    const void *rows[GROUP_ROWS];
    for (size_t r = 0; r < N_ROWS; r += GROUP_ROWS) {
        for (size_t k = 0; k < GROUP_ROWS; k++)
            rows[k] = (const uint16_t *)c->rows + (r + k) * ROW_DIM;
        v->k.dot_group[ADAMAS_F16](c->q, GROUP, rows, GROUP_ROWS, ROW_DIM, c->logits + r, N_ROWS);
    }
    sink_f = c->logits[N_ROWS / 2];
}

static void axpy_group_body(const variant *v, void *p)
{
    row_ctx *c = p;
    const void *rows[GROUP_ROWS];
    for (size_t r = 0; r < N_ROWS; r += GROUP_ROWS) {
        for (size_t k = 0; k < GROUP_ROWS; k++)
            rows[k] = (const uint16_t *)c->rows + (r + k) * ROW_DIM;
        v->k.axpy_group[ADAMAS_F16](c->y, ROW_DIM, c->logits + r, N_ROWS, GROUP, rows, GROUP_ROWS,
                                    ROW_DIM);
    }
    sink_f = c->y[0];
}

/* ---------------------------------------------------------------- output */

static void print_header(void)
{
    printf("%-26s", "kernel");
    for (size_t i = 0; i < n_variants; i++)
        printf(" %22s", variants[i].name);
    printf("\n");
}

/* One table row: the figure of every variant, and its speed-up over scalar. */
static void print_row(const char *label, const char *unit, body_fn body, void *ctx, double items)
{
    char name[64];
    snprintf(name, sizeof name, "%s %s", label, unit);
    printf("%-26s", name);
    fflush(stdout);
    double scalar = 0.0;
    for (size_t i = 0; i < n_variants; i++) {
        double ns = median_ns_per_item(&variants[i], body, ctx, items);
        if (i == 0) {
            scalar = ns;
            printf(" %22.3f", ns);
        } else {
            char cell[32];
            snprintf(cell, sizeof cell, "%.3f (%.1fx)", ns, scalar / ns);
            printf(" %22s", cell);
        }
        fflush(stdout);
    }
    printf("\n");
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static float rng_unit(void)
{
    return (float)((rng_next() >> 40) * 0x1p-24) * 2.0f - 1.0f;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: bench_kernels [REPS]\n\n"
               "Times every kernel of each kernel table this CPU runs (scalar, AVX2, AVX-512\n"
               "and its vpshufb variant, NEON) on inputs in L1/L2, and prints a table: the\n"
               "median of REPS repetitions (1-64, default 9) per kernel and table, and the\n"
               "speed-up over the scalar specification measured in the same run.\n");
        return 0;
    }
    if (argc > 1) {
        char *end;
        long r = strtol(argv[1], &end, 10);
        if (*end || r < 1 || r > 64) {
            fprintf(stderr, "bench_kernels: REPS must be a number from 1 to 64, not '%s' (--help)\n",
                    argv[1]);
            return 2;
        }
        reps = (int)r;
    }
    find_variants();
    printf("adamas kernels: median of %d repetitions; each cell: time (speed-up over scalar)\n", reps);
    print_header();

    /* the distance scan */
    static const size_t scan_dims[] = {64, 128, 256};
    for (size_t di = 0; di < 3; di++) {
        scan_ctx c = {.d = scan_dims[di], .words = adamas_code_words(scan_dims[di])};
        c.q = malloc(c.words * 8);
        c.codes = aligned_alloc(64, N_KEYS * c.words * 8);
        c.dist = malloc(N_KEYS * 2);
        c.hist = calloc(3 * c.d + 1 + 96 * c.words, 4);
        for (size_t w = 0; w < c.words; w++)
            c.q[w] = rng_next();
        for (size_t w = 0; w < N_KEYS * c.words; w++)
            c.codes[w] = rng_next();
        if (c.d < 64) /* keep unused bits clear, as real codes do */
            for (size_t j = 0; j < N_KEYS; j++)
                for (size_t w = 0; w < c.words; w++)
                    c.codes[j * c.words + w] &= (1ull << c.d) - 1;
        for (int metric = 0; metric < 2; metric++)
            for (int h = 0; h < 2; h++) {
                char label[48];
                snprintf(label, sizeof label, "scan %s%s d=%zu", metric ? "xorw" : "l1",
                         h ? "+hist" : "", c.d);
                c.metric = metric;
                c.with_hist = h;
                print_row(label, "ns/key", scan_body, &c, N_KEYS);
            }
        free(c.q);
        free(c.codes);
        free(c.dist);
        free(c.hist);
    }
    {
        scan_ctx c = {.d = 128, .words = adamas_code_words(128), .metric = ADAMAS_METRIC_L1};
        c.q = malloc(GROUP * c.words * 8);
        c.codes = aligned_alloc(64, N_KEYS * c.words * 8);
        c.dist = malloc(GROUP * N_KEYS * 2);
        c.hist = calloc(GROUP * (3 * c.d + 1), 4);
        uint32_t *hits = malloc(GROUP * N_KEYS * 4);
        for (size_t w = 0; w < GROUP * c.words; w++)
            c.q[w] = rng_next();
        for (size_t w = 0; w < N_KEYS * c.words; w++)
            c.codes[w] = rng_next();
        uint16_t limit[GROUP] = {UINT16_MAX, UINT16_MAX, UINT16_MAX, UINT16_MAX};
        c.limit = limit; /* every key a hit */
        print_row("scan x4 l1+hist d=128", "ns/key", scan_group_body, &c, GROUP * N_KEYS);
        group_limits(&c, limit);
        print_row("scan x4 l1+lim d=128", "ns/key", scan_group_body, &c, GROUP * N_KEYS);
        c.hits = hits; /* sparse: the keys under the limits listed */
        print_row("scan x4 l1 hits d=128", "ns/key", scan_group_body, &c, GROUP * N_KEYS);
        free(c.q);
        free(c.codes);
        free(c.dist);
        free(c.hist);
        free(hits);
    }

    /* Hadamard + encode */
    for (size_t di = 0; di < 3; di++) {
        transform_ctx c = {.d = scan_dims[di]};
        c.x = aligned_alloc(64, N_VECTORS * c.d * 4);
        c.codes = malloc(N_VECTORS * adamas_code_words(c.d) * 8);
        for (size_t i = 0; i < N_VECTORS * c.d; i++)
            c.x[i] = rng_unit();
        char label[48];
        snprintf(label, sizeof label, "had+enc d=%zu", c.d);
        print_row(label, "ns/vec", transform_body, &c, N_VECTORS);
        free(c.x);
        free(c.codes);
    }

    /* dot and axpy over rows of d = 128 */
    for (int dtype = 0; dtype < 2; dtype++) {
        row_ctx c = {.dtype = dtype};
        c.q = aligned_alloc(64, GROUP * ROW_DIM * 4);
        c.y = aligned_alloc(64, GROUP * ROW_DIM * 4);
        c.logits = aligned_alloc(64, GROUP * N_ROWS * 4);
        c.rows = aligned_alloc(64, (size_t)N_ROWS * ROW_DIM * 4);
        for (size_t i = 0; i < GROUP * ROW_DIM; i++)
            c.q[i] = rng_unit(), c.y[i] = 0.0f;
        for (size_t i = 0; i < GROUP * N_ROWS; i++)
            c.logits[i] = 1e-4f;
        for (size_t i = 0; i < (size_t)N_ROWS * ROW_DIM; i++) {
            float x = rng_unit();
            if (dtype == ADAMAS_F32)
                ((float *)c.rows)[i] = x;
            else
                ((uint16_t *)c.rows)[i] = adamas_f32_to_f16(x);
        }
        const char *dt = dtype == ADAMAS_F32 ? "f32" : "f16";
        char label[48];
        snprintf(label, sizeof label, "dot %s d=%d", dt, ROW_DIM);
        print_row(label, "ns/row", dot_body, &c, N_ROWS);
        snprintf(label, sizeof label, "axpy %s d=%d", dt, ROW_DIM);
        print_row(label, "ns/row", axpy_body, &c, N_ROWS);
        if (dtype == ADAMAS_F16) {
            print_row("dot x4 f16 d=128", "ns/row", dot_group_body, &c, N_ROWS);
            print_row("axpy x4 f16 d=128", "ns/row", axpy_group_body, &c, N_ROWS);
        }
        free(c.q);
        free(c.y);
        free(c.logits);
        free(c.rows);
    }

    /* Q8_0 weight rows, as a model's matrix-vector products read them */
    q8_0_ctx qc = {malloc(Q8_0_COLS * sizeof(float)),
                   malloc((size_t)Q8_0_ROWS * Q8_0_COLS / ADAMAS_Q8_0_BLOCK * ADAMAS_Q8_0_BYTES)};
    for (size_t i = 0; i < Q8_0_COLS; i++)
        qc.x[i] = rng_unit();
    for (size_t b = 0; b < (size_t)Q8_0_ROWS * Q8_0_COLS / ADAMAS_Q8_0_BLOCK; b++) {
        unsigned char *blk = qc.rows + b * ADAMAS_Q8_0_BYTES;
        uint16_t scale = adamas_f32_to_f16(0.01f * rng_unit());
        memcpy(blk, &scale, 2);
        for (int j = 0; j < ADAMAS_Q8_0_BLOCK; j++)
            blk[2 + j] = (unsigned char)rng_next();
    }
    print_row("q8_0 dot cols=2048", "ns/row", q8_0_body, &qc, Q8_0_ROWS);
    free(qc.x);
    free(qc.rows);
    return 0;
}

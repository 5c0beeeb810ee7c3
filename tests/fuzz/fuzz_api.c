/* fuzz_api.c - libFuzzer target: the public API driven by the input bytes.
 *
 * The bytes choose a configuration (sometimes one whose sizes overflow), then a
 * sequence of appends (keys and values drawn from a seed, with NaN, infinities, huge
 * and boundary values planted where the bytes say), calibrations and decode steps with
 * arbitrary selectors, budgets, sink/recent, page sizes and rerank factors.  Checked
 * after every call, as adamas.h documents:
 *   - a failing call changes nothing: cache length, stored codes, key thresholds, and
 *     the decode step's out and selected buffers;
 *   - a successful append adds n tokens; a successful decode gives finite outputs,
 *     each within the range of the values it attends to, and selected rows of valid
 *     tokens, ascending, with the forced tokens in them and UINT32_MAX after them;
 *   - adamas_decode and adamas_decode_ws give the same bits;
 * and, between those steps, weight products (adamas_matvec, adamas_weights_to_f32) of
 * any type and shape on weights taken from the input bytes: refused calls write
 * nothing, accepted ones agree with a double-precision product of the same bytes. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"

/* ------------------------------------------------------------ input bytes */

typedef struct {
    const uint8_t *p, *end;
} input;

static uint32_t take(input *in, unsigned bytes)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < bytes && in->p < in->end; i++)
        v |= (uint32_t)*in->p++ << (8 * i);
    return v;
}

static uint8_t take8(input *in)
{
    return (uint8_t)take(in, 1);
}

static int more(const input *in)
{
    return in->p < in->end;
}

/* Values that no sensible input has, and the edges of the accepted range. */
static float special(uint8_t which)
{
    static const float values[] = {
        NAN, INFINITY, -INFINITY, ADAMAS_MAX_MAGNITUDE, -ADAMAS_MAX_MAGNITUDE,
        1.0000001e12f, 65504.0f, 65520.0f, -65520.0f, 0.0f, -0.0f, 1e-40f, FLT_MIN,
        FLT_MAX, -FLT_MAX, 3.0e38f, 1e-30f, 1e30f, 1e6f, -1e6f,
    };
    return values[which % (sizeof values / sizeof values[0])];
}

/* A float from the input: mostly a small number, sometimes a special one. */
static float take_float(input *in)
{
    uint8_t b = take8(in);
    if (b >= 224)
        return special(b);
    return (float)(int8_t)take8(in) * (b < 112 ? 0.0625f : b < 192 ? 1.0f : 1000.0f);
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* roughly normal, times scale */
static float rng_value(float scale)
{
    int64_t s = 0;
    for (int i = 0; i < 4; i++)
        s += (int64_t)(rng_next() >> 48) - 32768;
    return (float)s / 65536.0f * scale;
}

/* x[n] from a seed, then up to 8 planted values at positions the input names. */
static void fill(input *in, float *x, size_t n)
{
    uint8_t how = take8(in);
    rng_state = take(in, 4);
    static const float scales[] = {1.0f, 0.01f, 30.0f, 1000.0f, 1e9f, 0.0f, 1e-20f, 5.0f};
    float scale = scales[how & 7];
    for (size_t i = 0; i < n; i++)
        x[i] = rng_value(scale);
    for (unsigned k = 0; k < (how >> 5) && n; k++) {
        size_t at = take(in, 4) % n;
        x[at] = take_float(in);
    }
}

/* ----------------------------------------------------------------- model */

#define MAX_BYTES (16u << 20) /* what a configuration may allocate, or it overflows */

typedef struct {
    adamas_cache *c;
    adamas_cache_config cfg;
    size_t d, kv_row; /* head_dim, n_kv_heads * head_dim */
    float *values;    /* [len][n_kv_heads][head_dim]: every value appended */
    uint32_t len;
} model;

/* Everything a failing call must leave as it was. */
typedef struct {
    uint32_t len;
    uint64_t *codes; /* [n_kv_heads][len][words] */
    float *thresholds; /* [n_kv_heads][3] */
} snapshot;

static void take_snapshot(const model *m, snapshot *s)
{
    size_t words = adamas_code_words(m->d);
    s->len = adamas_cache_len(m->c);
    s->codes = malloc(((size_t)m->cfg.n_kv_heads * s->len * words + 1) * sizeof *s->codes);
    s->thresholds = malloc((size_t)m->cfg.n_kv_heads * 3 * sizeof *s->thresholds);
    if (!s->codes || !s->thresholds)
        abort();
    for (uint32_t g = 0; g < m->cfg.n_kv_heads; g++) {
        if (adamas_cache_key_thresholds(m->c, g, s->thresholds + 3 * g))
            abort();
        for (uint32_t t = 0; t < s->len; t++)
            if (adamas_cache_code(m->c, g, t, s->codes + ((size_t)g * s->len + t) * words))
                abort();
    }
}

static void expect_unchanged(const model *m, const snapshot *s)
{
    snapshot now;
    take_snapshot(m, &now);
    size_t words = adamas_code_words(m->d);
    if (now.len != s->len ||
        memcmp(now.codes, s->codes, (size_t)m->cfg.n_kv_heads * s->len * words * 8) ||
        memcmp(now.thresholds, s->thresholds, (size_t)m->cfg.n_kv_heads * 3 * sizeof(float)))
        abort(); /* a failing call changed the cache */
    free(now.codes);
    free(now.thresholds);
}

static void free_snapshot(snapshot *s)
{
    free(s->codes);
    free(s->thresholds);
}

/* ---------------------------------------------------------------- configs */

static adamas_cache_config take_config(input *in)
{
    uint8_t how = take8(in);
    static const uint32_t dims[] = {16, 32, 64, 128, 256, 1024, 16, 64};
    uint32_t n_kv = 1 + take8(in) % 3, group = 1 + take8(in) % 3;
    uint32_t d = dims[take8(in) % 8];
    uint32_t max_tokens = 1 + take(in, 2) % 700;
    adamas_cache_config cfg = adamas_cache_config_default(n_kv * group, n_kv, d, max_tokens);
    if (how & 1) {
        cfg.kv_dtype = (adamas_dtype)(take8(in) % 4); /* 3: unknown */
        cfg.metric = (adamas_metric)(take8(in) % 3);
        cfg.transform = (adamas_transform)(take8(in) % 3);
        cfg.page_size = take8(in) % 40;
    }
    if (how & 2)
        for (int i = 0; i < 3; i++) {
            cfg.q_thresholds[i] = take_float(in);
            cfg.k_thresholds[i] = take_float(in);
        }
    if (how & 4) /* any field, any value: sizes that overflow, zeros, odd dims */
        switch (take8(in) % 5) {
        case 0: cfg.n_heads = take(in, 4); break;
        case 1: cfg.n_kv_heads = take(in, 4); break;
        case 2: cfg.head_dim = take(in, 4); break;
        case 3: cfg.max_tokens = take(in, 4); break;
        default: cfg.page_size = take(in, 4); break;
        }
    return cfg;
}

/* Sizes the driver itself can hold; a configuration beyond them must overflow size_t
 * (and be refused) or it is not tried. */
static int worth_creating(const adamas_cache_config *cfg)
{
    unsigned __int128 store = (unsigned __int128)cfg->n_kv_heads * cfg->max_tokens *
                              cfg->head_dim * 8;
    unsigned __int128 query = (unsigned __int128)cfg->n_heads * cfg->head_dim * 4;
    if (store >= ((unsigned __int128)1 << 64))
        return 1; /* overflows: must be refused without allocating */
    return store <= MAX_BYTES && query <= MAX_BYTES && cfg->max_tokens <= 1024 &&
           (uint64_t)cfg->n_heads * cfg->max_tokens <= (1u << 22);
}

/* ------------------------------------------------------------------ steps */

static void do_append(model *m, input *in)
{
    uint32_t n = take8(in) % 40;
    if (take8(in) == 255)
        n = take(in, 4);
    size_t fit = n <= m->cfg.max_tokens ? n : 1;
    float *k = malloc((fit * m->kv_row + 1) * sizeof *k);
    float *v = malloc((fit * m->kv_row + 1) * sizeof *v);
    if (!k || !v)
        abort();
    fill(in, k, fit * m->kv_row);
    fill(in, v, fit * m->kv_row);
    snapshot before;
    take_snapshot(m, &before);
    /* n beyond what the buffers hold is only passed when it cannot fit */
    int st = adamas_cache_append(m->c, k, v, n <= fit ? n : (uint32_t)(m->cfg.max_tokens + 1u));
    if (st) {
        if (st != ADAMAS_EINVAL && st != ADAMAS_ECAPACITY)
            abort();
        if (!adamas_last_error()[0])
            abort();
        expect_unchanged(m, &before);
    } else {
        if (adamas_cache_len(m->c) != before.len + n)
            abort();
        memcpy(m->values + (size_t)m->len * m->kv_row, v, (size_t)n * m->kv_row * sizeof *v);
        m->len += n;
    }
    free_snapshot(&before);
    free(k);
    free(v);
}

static void do_calibrate(model *m, input *in)
{
    float tau = take8(in) < 128 ? 0.6745f * (float)(take8(in) + 1) / 64.0f : take_float(in);
    snapshot before;
    take_snapshot(m, &before);
    int st = adamas_cache_calibrate(m->c, tau);
    if (st) {
        if (st != ADAMAS_EINVAL)
            abort();
        expect_unchanged(m, &before);
    } else if (adamas_cache_len(m->c) != before.len) {
        abort();
    }
    free_snapshot(&before);
}

static adamas_decode_params take_params(input *in, const model *m)
{
    adamas_selector sel = (adamas_selector)(take8(in) % 6); /* 5: unknown */
    adamas_decode_params p = adamas_decode_params_default(sel, 1 + take(in, 2) % 600);
    uint8_t how = take8(in);
    if (how & 1)
        p.sink = take8(in) % 24;
    if (how & 2)
        p.recent = take8(in) % 24;
    if (how & 4)
        p.rerank = take8(in) % 9;
    if (how & 8)
        p.page_size = take8(in) & 1 ? m->cfg.page_size : take8(in);
    if (how & 16) /* any field, any value */
        switch (take8(in) % 5) {
        case 0: p.budget = take(in, 4); break;
        case 1: p.sink = take(in, 4); break;
        case 2: p.recent = take(in, 4); break;
        case 3: p.rerank = take(in, 4); break;
        default: p.page_size = take(in, 4); break;
        }
    return p;
}

/* One row of `selected`, as adamas.h describes it. */
static void check_row(const model *m, const adamas_decode_params *p, const uint32_t *row)
{
    const uint32_t n = m->len, budget = p->budget;
    uint32_t count = 0;
    while (count < budget && row[count] != UINT32_MAX)
        count++;
    for (uint32_t i = count; i < budget; i++)
        if (row[i] != UINT32_MAX)
            abort(); /* a valid token after an unused slot */
    for (uint32_t i = 0; i < count; i++)
        if (row[i] >= n || (i > 0 && row[i] <= row[i - 1]))
            abort(); /* beyond the cache, or not ascending */
    if (n <= budget) {
        if (count != n)
            abort();
        return;
    }
    if (p->selector == ADAMAS_SELECT_QUEST) {
        if (count == 0 || row[count - 1] != n - 1)
            abort(); /* the newest token's page is always attended */
        return;
    }
    if (count != budget)
        abort();
    /* forced tokens: the first `sink` and (ADAMAS, ORACLE) the last `recent` */
    for (uint32_t i = 0; i < p->sink; i++)
        if (row[i] != i)
            abort();
    uint32_t recent = p->selector == ADAMAS_SELECT_STREAMING ? budget - p->sink : p->recent;
    for (uint32_t i = 0; i < recent; i++)
        if (row[budget - 1 - i] != n - 1 - i)
            abort();
}

/* out of head h is a convex combination of values of its kv head: within their range
 * (stored values may be rounded to f16/bf16, hence the slack). */
static void check_out(const model *m, const float *out)
{
    const uint32_t group = m->cfg.n_heads / m->cfg.n_kv_heads;
    for (uint32_t h = 0; h < m->cfg.n_heads; h++) {
        uint32_t g = h / group;
        for (size_t i = 0; i < m->d; i++) {
            float lo = INFINITY, hi = -INFINITY;
            for (uint32_t t = 0; t < m->len; t++) {
                float x = m->values[(size_t)t * m->kv_row + g * m->d + i];
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
            /* f16 keeps values below 2^-14 as multiples of 2^-24 */
            float o = out[h * m->d + i], slack = 0.01f * fmaxf(fabsf(lo), fabsf(hi)) +
                                                 (m->cfg.kv_dtype == ADAMAS_F16 ? 0x1p-24f : 1e-30f);
            if (!isfinite(o) || o < lo - slack || o > hi + slack) {
                fprintf(stderr, "fuzz_api: out[%u][%zu] = %g is not within the values' range "
                        "[%g, %g]\n", h, i, (double)o, (double)lo, (double)hi);
                abort();
            }
        }
    }
}

static void do_decode(model *m, input *in, adamas_workspace *ws)
{
    adamas_decode_params p = take_params(in, m);
    size_t nq = (size_t)m->cfg.n_heads * m->d;
    float *q = malloc(nq * sizeof *q), *out = malloc(nq * sizeof *out);
    float *out2 = malloc(nq * sizeof *out2);
    uint64_t sel_n = (uint64_t)m->cfg.n_heads * p.budget;
    int with_selected = sel_n <= (1u << 20) && take8(in) != 0;
    uint32_t *sel = with_selected ? malloc((size_t)(sel_n + 1) * sizeof *sel) : NULL;
    uint32_t *sel2 = with_selected ? malloc((size_t)(sel_n + 1) * sizeof *sel2) : NULL;
    if (!q || !out || !out2 || (with_selected && (!sel || !sel2)))
        abort();
    fill(in, q, nq);
    memset(out, 0xa5, nq * sizeof *out);
    memset(out2, 0xa5, nq * sizeof *out2);
    if (sel) {
        memset(sel, 0x5a, (size_t)sel_n * sizeof *sel);
        memset(sel2, 0x5a, (size_t)sel_n * sizeof *sel2);
    }
    uint32_t len = adamas_cache_len(m->c);
    int st = adamas_decode(m->c, &p, q, out, sel);
    int st2 = adamas_decode_ws(m->c, &p, q, out2, sel2, ws);
    if (st != st2 || adamas_cache_len(m->c) != len)
        abort();
    if (st) {
        if (st != ADAMAS_EINVAL || !adamas_last_error()[0])
            abort();
        for (size_t i = 0; i < nq; i++) /* out untouched */
            if (((const uint8_t *)out)[4 * i] != 0xa5)
                abort();
        for (size_t i = 0; sel && i < sel_n; i++)
            if (sel[i] != 0x5a5a5a5au)
                abort();
    } else {
        if (memcmp(out, out2, nq * sizeof *out) ||
            (sel && memcmp(sel, sel2, (size_t)sel_n * sizeof *sel)))
            abort(); /* the caller's workspace changes the result */
        check_out(m, out);
        if (sel && p.selector == ADAMAS_SELECT_FULL) {
            for (size_t i = 0; i < sel_n; i++)
                if (sel[i] != 0x5a5a5a5au)
                    abort(); /* FULL does not write selected */
        } else if (sel) {
            for (uint32_t h = 0; h < m->cfg.n_heads; h++)
                check_row(m, &p, sel + (size_t)h * p.budget);
        }
        /* the code distances of head 0, as the step computed them */
        uint16_t *dist = malloc((size_t)len * sizeof *dist);
        if (!dist || adamas_cache_distances(m->c, q, 0, dist))
            abort();
        for (uint32_t t = 0; t < len; t++)
            if (dist[t] > 3 * m->d)
                abort();
        free(dist);
    }
    free(q);
    free(out);
    free(out2);
    free(sel);
    free(sel2);
}

/* ---------------------------------------------------------- weight products */

/* Weight i of a row of the given type, decoded here from its bytes. */
static double weight_at(adamas_weights_type type, const uint8_t *row, size_t i)
{
    switch (type) {
    case ADAMAS_WEIGHTS_F32: {
        float f;
        memcpy(&f, row + 4 * i, 4);
        return f;
    }
    case ADAMAS_WEIGHTS_F16: return adamas_f16_to_f32((uint16_t)(row[2 * i] | row[2 * i + 1] << 8));
    case ADAMAS_WEIGHTS_BF16: return adamas_bf16_to_f32((uint16_t)(row[2 * i] | row[2 * i + 1] << 8));
    default: {
        const uint8_t *blk = row + i / 32 * 34;
        return (double)adamas_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)) * (int8_t)blk[2 + i % 32];
    }
    }
}

static void do_weights(input *in)
{
    adamas_weights_type type = (adamas_weights_type)(take8(in) % 6); /* 4, 5: unknown */
    size_t rows = take(in, 1) % 40, cols = take(in, 2) % 400;
    if (take8(in) % 16 == 0) /* sizes that overflow: refused before w is read */
        rows = SIZE_MAX / 64 + take(in, 4), cols = 64 + take(in, 1); /* rows x row bytes > SIZE_MAX */
    size_t rb = adamas_weights_row_bytes(type, cols);
    size_t bytes = rb && rows < 1000 ? rows * rb : 64;
    uint8_t *w = malloc(bytes + 1);
    float *x = malloc((cols + 1) * sizeof *x);
    size_t n_out = rows < 1000 ? rows * (cols + 1) + 1 : 1;
    float *y = malloc(n_out * sizeof *y), *before = malloc(n_out * sizeof *y);
    if (!w || !x || !y || !before)
        abort();
    for (size_t i = 0; i < bytes; i++)
        w[i] = more(in) ? take8(in) : (uint8_t)rng_next();
    for (size_t i = 0; i < cols; i++)
        x[i] = take8(in) % 8 == 0 ? take_float(in) : rng_value(1.0f);
    memset(y, 0xa5, n_out * sizeof *y);
    memcpy(before, y, n_out * sizeof *y);

    int st = adamas_matvec(type, w, rows, cols, x, y);
    if (st != ADAMAS_OK) {
        if (st != ADAMAS_EINVAL || !adamas_last_error()[0] || memcmp(y, before, n_out * sizeof *y))
            abort();
    } else {
        if (rows >= 1000 || !rb)
            abort(); /* a shape the library should have refused */
        for (size_t r = 0; r < rows; r++) {
            double want = 0, scale = 0;
            for (size_t i = 0; i < cols; i++) {
                double p = weight_at(type, w + r * rb, i) * x[i];
                want += p, scale += fabs(p);
            }
            if (isfinite(scale) && scale < 1e30 &&
                !(fabs(y[r] - want) <= 1e-5 * scale + 1e-35))
                abort();
        }
    }
    memcpy(y, before, n_out * sizeof *y);
    st = adamas_weights_to_f32(type, w, rows, cols, y);
    if (st != ADAMAS_OK) {
        if (st != ADAMAS_EINVAL || memcmp(y, before, n_out * sizeof *y))
            abort();
    } else {
        for (size_t r = 0; r < rows; r++)
            for (size_t i = 0; i < cols; i++) {
                double want = weight_at(type, w + r * rb, i), got = y[r * cols + i];
                if (!(got == want || (isnan(got) && isnan(want))))
                    abort();
            }
        if (memcmp(y + rows * cols, before + rows * cols, (n_out - rows * cols) * sizeof *y))
            abort(); /* written past the matrix */
    }
    free(w);
    free(x);
    free(y);
    free(before);
}

/* ------------------------------------------------------------------ entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, data + size};
    static const char *isas[] = {"scalar", "avx2", "avx512", "auto"};
    if (adamas_set_isa(isas[take8(&in) % 4]) != ADAMAS_OK)
        adamas_set_isa("auto");

    model m = {0};
    m.cfg = take_config(&in);
    if (!worth_creating(&m.cfg))
        return 0;
    int st = adamas_cache_create(&m.cfg, &m.c);
    if (st) {
        if (m.c || (st != ADAMAS_EINVAL && st != ADAMAS_ENOMEM) || !adamas_last_error()[0])
            abort();
        return 0;
    }
    m.d = m.cfg.head_dim;
    m.kv_row = (size_t)m.cfg.n_kv_heads * m.d;
    m.values = malloc(((size_t)m.cfg.max_tokens * m.kv_row + 1) * sizeof *m.values);
    adamas_workspace *ws = NULL;
    if (!m.values || adamas_workspace_create(&ws))
        abort();
    for (int step = 0; step < 24 && more(&in); step++)
        switch (take8(&in) % 5) {
        case 0:
        case 1: do_append(&m, &in); break;
        case 2: do_calibrate(&m, &in); break;
        case 3: do_decode(&m, &in, ws); break;
        default: do_weights(&in); break;
        }
    adamas_workspace_destroy(ws);
    adamas_cache_destroy(m.c);
    free(m.values);
    return 0;
}

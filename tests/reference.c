/* reference.c - the Adamas specification re-written for the tests (see reference.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

/* ============================================================== Hadamard */

float ref_hadamard_scale(size_t d)
{
    return (float)(1.0 / sqrt((double)d));
}

void ref_hadamard(float *x, size_t d)
{
    for (size_t h = 1; h < d; h <<= 1)
        for (size_t j = 0; j < d; j++)
            if (!(j & h)) {
                float a = x[j], b = x[j | h];
                x[j] = a + b;
                x[j | h] = a - b;
            }
    const float scale = ref_hadamard_scale(d);
    for (size_t i = 0; i < d; i++)
        x[i] = x[i] * scale;
}

void ref_sylvester_matrix(size_t d, signed char *m)
{
    m[0] = 1;
    for (size_t size = 1; size < d; size *= 2)
        for (size_t i = 0; i < size; i++)
            for (size_t k = 0; k < size; k++) {
                signed char e = m[i * d + k];
                m[i * d + k + size] = e;
                m[(i + size) * d + k] = e;
                m[(i + size) * d + k + size] = (signed char)-e;
            }
}

void ref_hadamard_exact(const float *x, size_t d, double *y)
{
    signed char *m = xcalloc(d * d, 1);
    ref_sylvester_matrix(d, m);
    for (size_t i = 0; i < d; i++) {
        double sum = 0.0;
        for (size_t k = 0; k < d; k++)
            sum += m[i * d + k] * (double)x[k];
        y[i] = sum / sqrt((double)d);
    }
    free(m);
}

/* ========================================================= dot products */

enum { LANES = 16 };

static float fold16(float lane[LANES])
{
    for (int width = LANES / 2; width > 0; width >>= 1)
        for (int l = 0; l < width; l++)
            lane[l] = lane[l] + lane[l + width];
    return lane[0];
}

float ref_dot16(const float *a, const float *b, size_t d)
{
    float lane[LANES];
    for (int l = 0; l < LANES; l++)
        lane[l] = 0.0f;
    for (size_t i = 0; i < d; i++) {
        float product = a[i] * b[i];
        lane[i % LANES] = lane[i % LANES] + product;
    }
    return fold16(lane);
}

float ref_page_score(const float *q, const float *lo, const float *hi, size_t d)
{
    float lane[LANES];
    for (int l = 0; l < LANES; l++)
        lane[l] = 0.0f;
    for (size_t i = 0; i < d; i++) {
        float a = q[i] * lo[i], b = q[i] * hi[i];
        lane[i % LANES] = lane[i % LANES] + (a > b ? a : b);
    }
    return fold16(lane);
}

double ref_dot_exact(const float *a, const float *b, size_t d)
{
    double sum = 0.0;
    for (size_t i = 0; i < d; i++)
        sum += (double)a[i] * (double)b[i];
    return sum;
}

/* ================================================================= codes */

unsigned ref_bucket(float x, const float th[3])
{
    return (unsigned)(x > th[0]) + (unsigned)(x > th[1]) + (unsigned)(x > th[2]);
}

void ref_bucketize(const float *xh, size_t d, const float th[3], uint8_t *code)
{
    for (size_t i = 0; i < d; i++)
        code[i] = (uint8_t)ref_bucket(xh[i], th);
}

size_t ref_code_words(size_t d)
{
    size_t groups = d / 64 + (d % 64 != 0);
    return 2 * groups;
}

void ref_pack_planar(const uint8_t *code, size_t d, uint64_t *planar)
{
    for (size_t w = 0; w < ref_code_words(d); w++)
        planar[w] = 0;
    for (size_t i = 0; i < d; i++) {
        uint64_t bit = (uint64_t)1 << (i % 64);
        if (code[i] & 1)
            planar[2 * (i / 64)] |= bit;
        if (code[i] & 2)
            planar[2 * (i / 64) + 1] |= bit;
    }
}

unsigned ref_planar_get(const uint64_t *planar, size_t i)
{
    uint64_t bit = (uint64_t)1 << (i % 64);
    return (planar[2 * (i / 64)] & bit ? 1u : 0u) + (planar[2 * (i / 64) + 1] & bit ? 2u : 0u);
}

unsigned ref_interleaved_get(const uint16_t *inter, size_t i)
{
    unsigned word = inter[i / 8], low = 2 * (unsigned)(i % 8);
    return ((word >> low) & 1u) + 2 * ((word >> (low + 1)) & 1u);
}

uint32_t ref_l1(const uint8_t *a, const uint8_t *b, size_t d)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < d; i++)
        sum += (uint32_t)abs((int)a[i] - (int)b[i]);
    return sum;
}

uint32_t ref_xorw(const uint8_t *a, const uint8_t *b, size_t d)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < d; i++) {
        unsigned diff = (unsigned)(a[i] ^ b[i]);
        sum += (diff & 1) + 2 * ((diff >> 1) & 1);
    }
    return sum;
}

/* ======================================================== half precision */

/* A binary floating-point format of 16 bits: sign, exp_bits of exponent with bias
 * 2^(exp_bits-1) - 1, man_bits of fraction. */
typedef struct {
    int exp_bits, man_bits;
} half_format;

static const half_format binary16 = {5, 10}, bfloat16 = {8, 7};

static float format_value(half_format f, uint16_t h)
{
    int bias = (1 << (f.exp_bits - 1)) - 1, max_exp = (1 << f.exp_bits) - 1;
    int sign = h >> 15, e = (h >> f.man_bits) & max_exp, m = h & ((1 << f.man_bits) - 1);
    double mag;
    if (e == max_exp)
        mag = m ? NAN : INFINITY;
    else if (e == 0)
        mag = ldexp((double)m, 1 - bias - f.man_bits);
    else
        mag = ldexp((double)((1 << f.man_bits) + m), e - bias - f.man_bits);
    return (float)(sign ? -mag : mag);
}

/* Round |x| to the format: write |x| = s * 2^(e - man_bits) with the integer part of
 * s the significand (2^man_bits <= s < 2^(man_bits+1) for normal numbers, the
 * subnormal exponent otherwise) and round s to an integer, ties to even. */
static uint16_t format_bits(half_format f, float x)
{
    int bias = (1 << (f.exp_bits - 1)) - 1, max_exp = (1 << f.exp_bits) - 1;
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (isnan(x))
        return sign | (uint16_t)(max_exp << f.man_bits) | (uint16_t)(1 << (f.man_bits - 1));
    double a = fabs((double)x);
    if (isinf(x))
        return sign | (uint16_t)(max_exp << f.man_bits);
    if (a == 0.0)
        return sign;
    int e;
    frexp(a, &e);
    e -= 1; /* a in [2^e, 2^(e+1)) */
    int min_exp = 1 - bias;
    if (e < min_exp)
        e = min_exp; /* subnormal: fixed exponent, no implicit bit */
    double s = nearbyint(ldexp(a, f.man_bits - e)); /* exact scaling, then round */
    if (s >= ldexp(1.0, f.man_bits + 1)) {           /* rounded up to the next binade */
        s /= 2;
        e += 1;
    }
    int biased = s >= ldexp(1.0, f.man_bits) ? e + bias : 0;
    if (biased >= max_exp)
        return sign | (uint16_t)(max_exp << f.man_bits);
    uint16_t frac = (uint16_t)((long)s & ((1 << f.man_bits) - 1));
    return sign | (uint16_t)(biased << f.man_bits) | frac;
}

float ref_f16_value(uint16_t h)
{
    return format_value(binary16, h);
}

float ref_bf16_value(uint16_t h)
{
    return format_value(bfloat16, h);
}

uint16_t ref_f16_bits(float x)
{
    return format_bits(binary16, x);
}

uint16_t ref_bf16_bits(float x)
{
    return format_bits(bfloat16, x);
}

float ref_round_dtype(float x, adamas_dtype t)
{
    switch (t) {
    case ADAMAS_F16: return ref_f16_value(ref_f16_bits(x));
    case ADAMAS_BF16: return ref_bf16_value(ref_bf16_bits(x));
    default: return x;
    }
}

/* ================================================================= top-k */

typedef struct {
    double key; /* larger is better */
    uint32_t index;
} ranked;

/* Better first: larger key, then larger index. */
static int better_first(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key > b->key ? -1 : 1;
    return a->index > b->index ? -1 : (a->index < b->index);
}

static int ascending_u32(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return (a > b) - (a < b);
}

/* The k best of items[n] by key, indices ascending. */
static void best_k(ranked *items, uint32_t n, uint32_t k, uint32_t *idx)
{
    qsort(items, n, sizeof *items, better_first);
    for (uint32_t i = 0; i < k; i++)
        idx[i] = items[i].index;
    qsort(idx, k, sizeof *idx, ascending_u32);
}

void ref_smallest_u32(const uint32_t *v, uint32_t n, uint32_t k, uint32_t *idx)
{
    ranked *items = xcalloc(n, sizeof *items);
    for (uint32_t i = 0; i < n; i++)
        items[i] = (ranked){-(double)v[i], i};
    best_k(items, n, k, idx);
    free(items);
}

void ref_largest_f32(const float *v, uint32_t n, uint32_t k, uint32_t *idx)
{
    ranked *items = xcalloc(n, sizeof *items);
    for (uint32_t i = 0; i < n; i++)
        items[i] = (ranked){v[i], i};
    best_k(items, n, k, idx);
    free(items);
}

/* ======================================================= the cache model */

void ref_cache_init(ref_cache *r, const adamas_cache_config *cfg)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    r->token_floats = (size_t)cfg->n_kv_heads * cfg->head_dim;
    size_t total = (size_t)cfg->max_tokens * r->token_floats;
    r->keys_given = xcalloc(total, sizeof(float));
    r->keys = xcalloc(total, sizeof(float));
    r->values = xcalloc(total, sizeof(float));
    r->codes = xcalloc(total, 1);
    r->k_thresholds = xcalloc(cfg->n_kv_heads, sizeof *r->k_thresholds);
    for (uint32_t g = 0; g < cfg->n_kv_heads; g++)
        for (int j = 0; j < 3; j++)
            r->k_thresholds[g][j] = cfg->k_thresholds[j];
}

void ref_cache_free(ref_cache *r)
{
    free(r->keys_given);
    free(r->keys);
    free(r->values);
    free(r->codes);
    free(r->k_thresholds);
    memset(r, 0, sizeof *r);
}

static size_t row_offset(const ref_cache *r, uint32_t t, uint32_t g)
{
    return (size_t)t * r->token_floats + (size_t)g * r->cfg.head_dim;
}

const float *ref_key(const ref_cache *r, uint32_t t, uint32_t g)
{
    return r->keys + row_offset(r, t, g);
}

const float *ref_value(const ref_cache *r, uint32_t t, uint32_t g)
{
    return r->values + row_offset(r, t, g);
}

const uint8_t *ref_code(const ref_cache *r, uint32_t t, uint32_t g)
{
    return r->codes + row_offset(r, t, g);
}

/* code[d] of Hx for x[d], with thresholds th. */
static void transform_and_bucketize(const float *x, size_t d, const float th[3], uint8_t *code)
{
    float *xh = xcalloc(d, sizeof *xh);
    memcpy(xh, x, d * sizeof *xh);
    ref_hadamard(xh, d);
    ref_bucketize(xh, d, th, code);
    free(xh);
}

void ref_cache_append(ref_cache *r, const float *k, const float *v, uint32_t n)
{
    size_t d = r->cfg.head_dim;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = r->len + i;
        for (uint32_t g = 0; g < r->cfg.n_kv_heads; g++) {
            size_t in = (size_t)i * r->token_floats + (size_t)g * d, at = row_offset(r, t, g);
            for (size_t e = 0; e < d; e++) {
                r->keys_given[at + e] = k[in + e];
                r->keys[at + e] = ref_round_dtype(k[in + e], r->cfg.kv_dtype);
                r->values[at + e] = ref_round_dtype(v[in + e], r->cfg.kv_dtype);
            }
            /* codes come from the keys as given, not as stored */
            transform_and_bucketize(r->keys_given + at, d, r->k_thresholds[g], r->codes + at);
        }
    }
    r->len += n;
}

int ref_cache_calibrate(ref_cache *r, float tau)
{
    size_t d = r->cfg.head_dim;
    uint32_t n_kv = r->cfg.n_kv_heads;
    float *edge = xcalloc(n_kv, sizeof *edge);
    float *xh = xcalloc(d, sizeof *xh);
    int status = 0;
    for (uint32_t g = 0; g < n_kv && status == 0; g++) {
        /* s = RMS of the transformed stored keys of head g */
        double sum_sq = 0.0;
        for (uint32_t t = 0; t < r->len; t++) {
            memcpy(xh, ref_key(r, t, g), d * sizeof *xh);
            ref_hadamard(xh, d);
            for (size_t i = 0; i < d; i++)
                sum_sq += (double)xh[i] * (double)xh[i];
        }
        double s = sqrt(sum_sq / ((double)r->len * (double)d));
        edge[g] = (float)((double)tau * s);
        if (!(edge[g] > 0.0f) || isinf(edge[g]))
            status = -1;
    }
    if (status == 0) {
        for (uint32_t g = 0; g < n_kv; g++) {
            r->k_thresholds[g][0] = -edge[g];
            r->k_thresholds[g][1] = 0.0f;
            r->k_thresholds[g][2] = edge[g];
            for (uint32_t t = 0; t < r->len; t++)
                transform_and_bucketize(ref_key(r, t, g), d, r->k_thresholds[g],
                                        r->codes + row_offset(r, t, g));
        }
        r->query_tau = tau;
    }
    free(xh);
    free(edge);
    return status;
}

void ref_query_code(const ref_cache *r, const float *q, uint8_t *code)
{
    size_t d = r->cfg.head_dim;
    float *qh = xcalloc(d, sizeof *qh);
    memcpy(qh, q, d * sizeof *qh);
    ref_hadamard(qh, d);
    float th[3];
    if (r->query_tau > 0.0f) {
        float rms = sqrtf(ref_dot16(qh, qh, d) / (float)d);
        float edge = r->query_tau * rms;
        th[0] = -edge;
        th[1] = 0.0f;
        th[2] = edge;
    } else {
        memcpy(th, r->cfg.q_thresholds, sizeof th);
    }
    ref_bucketize(qh, d, th, code);
    free(qh);
}

void ref_page_bounds(const ref_cache *r, uint32_t g, uint32_t page, float *lo, float *hi)
{
    size_t d = r->cfg.head_dim;
    uint32_t first = page * r->cfg.page_size, end = first + r->cfg.page_size;
    if (end > r->len)
        end = r->len;
    memcpy(lo, ref_key(r, first, g), d * sizeof *lo);
    memcpy(hi, ref_key(r, first, g), d * sizeof *hi);
    for (uint32_t t = first + 1; t < end; t++) {
        const float *k = ref_key(r, t, g);
        for (size_t i = 0; i < d; i++) {
            lo[i] = fminf(lo[i], k[i]);
            hi[i] = fmaxf(hi[i], k[i]);
        }
    }
}

/* Append tokens first..first+count-1 to set[*m]. */
static void add_range(uint32_t *set, uint32_t *m, uint32_t first, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        set[(*m)++] = first + i;
}

/* Logit q.k of stored key t, in the fixed order that ranks tokens. */
static float ranking_logit(const ref_cache *r, uint32_t g, const float *q, uint32_t t)
{
    return ref_dot16(q, ref_key(r, t, g), r->cfg.head_dim);
}

/* The `keep` candidates (token numbers cand[n_cand]) with the largest ranking logit,
 * ties to the larger token, written to out. */
static void best_by_logit(const ref_cache *r, uint32_t g, const float *q, const uint32_t *cand,
                          uint32_t n_cand, uint32_t keep, uint32_t *out)
{
    ranked *items = xcalloc(n_cand, sizeof *items);
    for (uint32_t i = 0; i < n_cand; i++)
        items[i] = (ranked){ranking_logit(r, g, q, cand[i]), cand[i]};
    best_k(items, n_cand, keep, out);
    free(items);
}

/* ADAMAS: the `keep` candidates [first, first + n_cand) nearest in code distance,
 * optionally reranked by the exact logit. */
static void adamas_pick(const ref_cache *r, const adamas_decode_params *p, uint32_t g,
                        const float *q, uint32_t first, uint32_t n_cand, uint32_t keep,
                        uint32_t *out)
{
    size_t d = r->cfg.head_dim;
    uint8_t *qcode = xcalloc(d, 1);
    ref_query_code(r, q, qcode);
    uint32_t *dist = xcalloc(n_cand, sizeof *dist);
    for (uint32_t i = 0; i < n_cand; i++) {
        const uint8_t *kc = ref_code(r, first + i, g);
        dist[i] = r->cfg.metric == ADAMAS_METRIC_XORW ? ref_xorw(qcode, kc, d)
                                                      : ref_l1(qcode, kc, d);
    }
    uint64_t shortlist = p->rerank > 1 ? (uint64_t)p->rerank * keep : keep;
    if (shortlist > n_cand)
        shortlist = n_cand;
    uint32_t *near = xcalloc(shortlist, sizeof *near);
    ref_smallest_u32(dist, n_cand, (uint32_t)shortlist, near);
    for (uint32_t i = 0; i < shortlist; i++)
        near[i] += first;
    if (shortlist == keep)
        memcpy(out, near, keep * sizeof *out);
    else
        best_by_logit(r, g, q, near, (uint32_t)shortlist, keep, out);
    free(near);
    free(dist);
    free(qcode);
}

static uint32_t quest_select(const ref_cache *r, uint32_t budget, uint32_t g, const float *q,
                             uint32_t *set)
{
    size_t d = r->cfg.head_dim;
    uint32_t page = r->cfg.page_size, n_pages = (r->len + page - 1) / page;
    uint32_t newest = n_pages - 1, extra = budget / page - 1;
    float *lo = xcalloc(d, sizeof *lo), *hi = xcalloc(d, sizeof *hi);
    float *score = xcalloc(newest, sizeof *score);
    for (uint32_t pg = 0; pg < newest; pg++) {
        ref_page_bounds(r, g, pg, lo, hi);
        score[pg] = ref_page_score(q, lo, hi, d);
    }
    uint32_t *chosen = xcalloc(extra + 1, sizeof *chosen);
    ref_largest_f32(score, newest, extra, chosen);
    chosen[extra] = newest;
    uint32_t m = 0;
    for (uint32_t i = 0; i <= extra; i++) {
        uint32_t first = chosen[i] * page, end = first + page < r->len ? first + page : r->len;
        add_range(set, &m, first, end - first);
    }
    free(chosen);
    free(score);
    free(hi);
    free(lo);
    return m;
}

uint32_t ref_select(const ref_cache *r, const adamas_decode_params *p, uint32_t g,
                    const float *q, uint32_t *set)
{
    const uint32_t n = r->len, budget = p->budget;
    uint32_t m = 0;
    if (p->selector == ADAMAS_SELECT_FULL || n <= budget) {
        add_range(set, &m, 0, n);
        return m;
    }
    switch (p->selector) {
    case ADAMAS_SELECT_STREAMING:
        add_range(set, &m, 0, p->sink);
        add_range(set, &m, n - (budget - p->sink), budget - p->sink);
        break;
    case ADAMAS_SELECT_QUEST:
        m = quest_select(r, budget, g, q, set);
        break;
    default: { /* ADAMAS, ORACLE: forced sink and recent tokens, the best of the rest */
        uint32_t first = p->sink, n_cand = n - p->sink - p->recent;
        uint32_t keep = budget - p->sink - p->recent;
        add_range(set, &m, 0, p->sink);
        add_range(set, &m, n - p->recent, p->recent);
        if (p->selector == ADAMAS_SELECT_ORACLE) {
            uint32_t *cand = xcalloc(n_cand, sizeof *cand);
            for (uint32_t i = 0; i < n_cand; i++)
                cand[i] = first + i;
            best_by_logit(r, g, q, cand, n_cand, keep, set + m);
            free(cand);
        } else {
            adamas_pick(r, p, g, q, first, n_cand, keep, set + m);
        }
        m += keep;
        qsort(set, m, sizeof *set, ascending_u32);
        break;
    }
    }
    return m;
}

void ref_attend(const ref_cache *r, uint32_t g, const float *q, const uint32_t *set, uint32_t m,
                double *out, double *logit_l1)
{
    size_t d = r->cfg.head_dim;
    double *s = xcalloc(m, sizeof *s);
    double max = -INFINITY, l1_max = 0.0;
    for (uint32_t j = 0; j < m; j++) {
        const float *k = ref_key(r, set[j], g);
        double l1 = 0.0;
        for (size_t i = 0; i < d; i++)
            l1 += fabs((double)q[i] * (double)k[i]);
        l1_max = fmax(l1_max, l1 / sqrt((double)d));
        s[j] = ref_dot_exact(q, k, d) / sqrt((double)d);
        max = fmax(max, s[j]);
    }
    double total = 0.0;
    for (size_t i = 0; i < d; i++)
        out[i] = 0.0;
    for (uint32_t j = 0; j < m; j++) {
        double p = exp(s[j] - max);
        total += p;
        const float *v = ref_value(r, set[j], g);
        for (size_t i = 0; i < d; i++)
            out[i] += p * (double)v[i];
    }
    for (size_t i = 0; i < d; i++)
        out[i] /= total;
    if (logit_l1)
        *logit_l1 = l1_max;
    free(s);
}

/* cache.c - the KV cache: storage, 2-bit codes, Quest page bounds, calibration. */
#define _DEFAULT_SOURCE /* madvise */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend.h"
#include "cache.h"
#include "error.h"
#include "half.h"
#include "kernels.h"
#include "validate.h"

#define CACHE_ALIGN 64

adamas_cache_config adamas_cache_config_default(uint32_t n_heads, uint32_t n_kv_heads,
                                                uint32_t head_dim, uint32_t max_tokens)
{
    adamas_cache_config cfg = {
        .n_heads = n_heads,
        .n_kv_heads = n_kv_heads,
        .head_dim = head_dim,
        .max_tokens = max_tokens,
        .kv_dtype = ADAMAS_F32,
        .q_thresholds = {-10.0f, 0.0f, 10.0f},
        .k_thresholds = {-10.0f, 0.0f, 10.0f},
        .metric = ADAMAS_METRIC_L1,
        .page_size = 16,
        .transform = ADAMAS_TRANSFORM_HADAMARD,
    };
    return cfg;
}

/* ------------------------------------------------------------------ creation */

static size_t dtype_size(adamas_dtype t)
{
    return t == ADAMAS_F32 ? 4 : 2;
}

/* *out = a * b, false on overflow. */
static bool mul_size(size_t a, size_t b, size_t *out)
{
    if (b && a > SIZE_MAX / b)
        return false;
    *out = a * b;
    return true;
}

/* Buffers of this size or more are placed on 2 MiB boundaries and offered huge
 * pages: a scan streams them, and 4 KiB pages stop the hardware prefetcher at every
 * page boundary and cost a TLB miss each. */
#define HUGE_PAGE (2u << 20)

void *adamas_alloc_streamed(size_t bytes)
{
    size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : CACHE_ALIGN;
    if (bytes > SIZE_MAX - align)
        return NULL;
    size_t rounded = (bytes + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded ? rounded : align);
#ifdef MADV_HUGEPAGE
    if (p && align == HUGE_PAGE)
        madvise(p, rounded, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#endif
    return p;
}

static int check_config(const adamas_cache_config *cfg)
{
    const char *fn = "adamas_cache_create";
    if (cfg->n_kv_heads == 0 || cfg->n_heads == 0)
        return adamas_fail(ADAMAS_EINVAL, "%s: %s is 0", fn,
                           cfg->n_heads == 0 ? "n_heads" : "n_kv_heads");
    if (cfg->n_heads % cfg->n_kv_heads)
        return adamas_fail(ADAMAS_EINVAL, "%s: n_heads = %u is not a multiple of n_kv_heads = %u",
                           fn, cfg->n_heads, cfg->n_kv_heads);
    if (!adamas_head_dim_ok(cfg->head_dim))
        return adamas_fail(ADAMAS_EINVAL, "%s: head_dim = %u is not a power of two in [%d, %d]",
                           fn, cfg->head_dim, ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM);
    if (cfg->max_tokens == 0 || cfg->max_tokens == UINT32_MAX)
        return adamas_fail(ADAMAS_EINVAL, "%s: max_tokens = %u is not in [1, %u]", fn,
                           cfg->max_tokens, UINT32_MAX - 1);
    if ((unsigned)cfg->kv_dtype > ADAMAS_BF16)
        return adamas_fail(ADAMAS_EINVAL, "%s: kv_dtype = %d is unknown", fn, (int)cfg->kv_dtype);
    if ((unsigned)cfg->metric > ADAMAS_METRIC_XORW)
        return adamas_fail(ADAMAS_EINVAL, "%s: metric = %d is unknown", fn, (int)cfg->metric);
    if (!adamas_thresholds_ok(cfg->q_thresholds) || !adamas_thresholds_ok(cfg->k_thresholds))
        return adamas_fail(ADAMAS_EINVAL,
                           "%s: %s are not finite and strictly increasing", fn,
                           adamas_thresholds_ok(cfg->q_thresholds) ? "k_thresholds"
                                                                   : "q_thresholds");
    if (cfg->page_size == 0)
        return adamas_fail(ADAMAS_EINVAL, "%s: page_size is 0", fn);
    if ((unsigned)cfg->transform > ADAMAS_TRANSFORM_NONE)
        return adamas_fail(ADAMAS_EINVAL, "%s: transform = %d is unknown", fn,
                           (int)cfg->transform);
    return ADAMAS_OK;
}

int adamas_cache_create(const adamas_cache_config *cfg, adamas_cache **out)
{
    if (!cfg || !out)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_create: %s is NULL", !cfg ? "cfg" : "out");
    int st = check_config(cfg);
    if (st)
        return st;
    const adamas_kernels *kern;
    st = adamas_kernels_get(&kern); /* a bad ADAMAS_ISA fails here, not mid-append */
    if (st)
        return st;
    adamas_backend_kind backend;
    st = adamas_backend_current(&backend);
    if (st)
        return st;

    size_t rows, kv_bytes, code_bytes, page_bytes;
    size_t words = adamas_code_words(cfg->head_dim);
    size_t max_pages = cfg->max_tokens / cfg->page_size + (cfg->max_tokens % cfg->page_size != 0);
    if (!mul_size(cfg->n_kv_heads, cfg->max_tokens, &rows) ||
        !mul_size(rows, (size_t)cfg->head_dim * dtype_size(cfg->kv_dtype), &kv_bytes) ||
        !mul_size(rows, words * sizeof(uint64_t), &code_bytes) ||
        !mul_size((size_t)cfg->n_kv_heads * max_pages, (size_t)cfg->head_dim * sizeof(float),
                  &page_bytes))
        return adamas_fail(ADAMAS_ENOMEM,
                           "adamas_cache_create: %u kv heads x %u tokens x %u dims overflows size_t",
                           cfg->n_kv_heads, cfg->max_tokens, cfg->head_dim);

    adamas_cache *c = calloc(1, sizeof *c);
    if (!c)
        return adamas_fail(ADAMAS_ENOMEM, "adamas_cache_create: out of memory");
    c->cfg = *cfg;
    c->group = cfg->n_heads / cfg->n_kv_heads;
    c->code_words = words;
    c->elem_size = dtype_size(cfg->kv_dtype);
    c->max_pages = max_pages;
    c->keys = adamas_alloc_streamed(kv_bytes);
    c->values = adamas_alloc_streamed(kv_bytes);
    c->codes = adamas_alloc_streamed(code_bytes);
    c->page_min = adamas_alloc_streamed(page_bytes);
    c->page_max = adamas_alloc_streamed(page_bytes);
    c->k_thresholds = calloc(cfg->n_kv_heads, sizeof *c->k_thresholds);
    c->scratch = calloc(1, sizeof *c->scratch);
    if (c->scratch)
        adamas_workspace_create(&c->scratch->ws);
    if (!c->keys || !c->values || !c->codes || !c->page_min || !c->page_max || !c->k_thresholds ||
        !c->scratch || !c->scratch->ws) {
        adamas_cache_destroy(c);
        return adamas_fail(ADAMAS_ENOMEM,
                           "adamas_cache_create: cannot allocate %zu bytes of keys and values "
                           "for %u tokens",
                           2 * kv_bytes, cfg->max_tokens);
    }
    for (uint32_t g = 0; g < cfg->n_kv_heads; g++)
        memcpy(c->k_thresholds[g], cfg->k_thresholds, sizeof cfg->k_thresholds);
    if (backend == ADAMAS_BACKEND_KIND_CUDA) {
        const adamas_gpu_module *m = adamas_gpu();
        if ((st = m->cache_create(cfg, &c->gpu))) {
            adamas_cache_destroy(c);
            return adamas_gpu_fail(st, "adamas_cache_create");
        }
        c->gpu_module = m;
    }
    *out = c;
    return ADAMAS_OK;
}

void adamas_cache_destroy(adamas_cache *c)
{
    if (!c)
        return;
    free(c->keys);
    free(c->values);
    free(c->codes);
    free(c->page_min);
    free(c->page_max);
    free(c->k_thresholds);
    if (c->scratch)
        adamas_workspace_destroy(c->scratch->ws);
    free(c->scratch);
    if (c->gpu)
        c->gpu_module->cache_destroy(c->gpu);
    free(c);
}

adamas_cache_config adamas_cache_get_config(const adamas_cache *c)
{
    if (!c) {
        adamas_cache_config none = {0};
        return none;
    }
    return c->cfg;
}

uint32_t adamas_cache_len(const adamas_cache *c)
{
    return c ? c->len : 0;
}

/* ---------------------------------------------------------------- appending */

/* x is within ADAMAS_MAX_MAGNITUDE and stays finite once rounded to the storage
 * dtype. */
static bool storable(float x, adamas_dtype t)
{
    if (!(fabsf(x) <= ADAMAS_MAX_MAGNITUDE))
        return false;
    if (t == ADAMAS_F16)
        return fabsf(x) < 65520.0f; /* 65520 and beyond round to infinity */
    if (t == ADAMAS_BF16)
        return (adamas_f32_bits(x) & 0x7fffffffu) < 0x7f7f8000u;
    return true;
}

static void store_row(void *dst, const float *src, size_t d, adamas_dtype t)
{
    if (t == ADAMAS_F32) {
        memcpy(dst, src, d * sizeof *src);
        return;
    }
    uint16_t *h = dst;
    for (size_t i = 0; i < d; i++)
        h[i] = t == ADAMAS_F16 ? adamas_float_to_half(src[i]) : adamas_float_to_bfloat(src[i]);
}

/* The stored row widened back to f32 (exact). */
static void load_row(float *dst, const void *src, size_t d, adamas_dtype t)
{
    if (t == ADAMAS_F32) {
        memcpy(dst, src, d * sizeof *dst);
        return;
    }
    const uint16_t *h = src;
    for (size_t i = 0; i < d; i++)
        dst[i] = t == ADAMAS_F16 ? adamas_half_to_float(h[i]) : adamas_bfloat_to_float(h[i]);
}

static int check_rows(const float *x, const char *name, uint32_t n, const adamas_cache *c)
{
    size_t per_token = (size_t)c->cfg.n_kv_heads * c->cfg.head_dim;
    size_t total = per_token * n;
    for (size_t i = 0; i < total; i++)
        if (!storable(x[i], c->cfg.kv_dtype)) {
            size_t t = i / per_token, g = i % per_token / c->cfg.head_dim, e = i % c->cfg.head_dim;
            return adamas_fail(ADAMAS_EINVAL, "adamas_cache_append: %s[%zu][%zu][%zu] = %g %s", name,
                               t, g, e, (double)x[i],
                               adamas_first_bad_value(&x[i], 1) == 0
                                   ? adamas_bad_value_reason(x[i])
                                   : "is beyond the range of the storage dtype");
        }
    return ADAMAS_OK;
}

/* Widen the page bounds of the page holding `token` by its stored key `key`. */
static void update_page_bounds(adamas_cache *c, uint32_t g, uint32_t token, const float *key)
{
    size_t d = c->cfg.head_dim, off = adamas_cache_page_offset(c, g, token / c->cfg.page_size);
    float *lo = c->page_min + off, *hi = c->page_max + off;
    if (token % c->cfg.page_size == 0) {
        memcpy(lo, key, d * sizeof *key);
        memcpy(hi, key, d * sizeof *key);
        return;
    }
    for (size_t i = 0; i < d; i++) {
        lo[i] = key[i] < lo[i] ? key[i] : lo[i];
        hi[i] = key[i] > hi[i] ? key[i] : hi[i];
    }
}

/* Code of one key with thresholds th.  x: [head_dim] scratch (may be key itself). */
static void encode_key(const adamas_cache *c, const adamas_kernels *kern, const float *key,
                       const float th[3], float *x, uint64_t *code)
{
    size_t d = c->cfg.head_dim;
    if (c->cfg.transform == ADAMAS_TRANSFORM_NONE) {
        kern->encode(key, d, th, code);
        return;
    }
    if (x != key)
        memcpy(x, key, d * sizeof *x);
    kern->hadamard_encode(x, d, th, code);
}

int adamas_cache_append(adamas_cache *c, const float *k, const float *v, uint32_t n)
{
    if (!c)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_append: c is NULL");
    if (n == 0)
        return ADAMAS_OK;
    if (!k || !v)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_append: %s is NULL", !k ? "k" : "v");
    if (n > c->cfg.max_tokens - c->len)
        return adamas_fail(ADAMAS_ECAPACITY,
                           "adamas_cache_append: n = %u tokens do not fit (%u stored, "
                           "max_tokens = %u)",
                           n, c->len, c->cfg.max_tokens);
    int st = check_rows(k, "k", n, c);
    if (!st)
        st = check_rows(v, "v", n, c);
    if (st)
        return st;
    const adamas_kernels *kern;
    st = adamas_kernels_get(&kern);
    if (st)
        return st;
    if (c->gpu && (st = c->gpu_module->cache_append(c->gpu, k, v, n,
                                                    (const float(*)[3])c->k_thresholds)))
        return adamas_gpu_fail(st, "adamas_cache_append");

    /* Nothing below can fail. */
    size_t d = c->cfg.head_dim;
    float transformed[ADAMAS_MAX_HEAD_DIM], stored[ADAMAS_MAX_HEAD_DIM];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t token = c->len + i;
        for (uint32_t g = 0; g < c->cfg.n_kv_heads; g++) {
            const float *krow = k + ((size_t)i * c->cfg.n_kv_heads + g) * d;
            const float *vrow = v + ((size_t)i * c->cfg.n_kv_heads + g) * d;
            void *kdst = adamas_cache_key_row(c, g, token);
            store_row(kdst, krow, d, c->cfg.kv_dtype);
            store_row(adamas_cache_value_row(c, g, token), vrow, d, c->cfg.kv_dtype);

            encode_key(c, kern, krow, c->k_thresholds[g], transformed,
                       adamas_cache_codes(c, g, token));

            load_row(stored, kdst, d, c->cfg.kv_dtype);
            update_page_bounds(c, g, token, stored);
        }
    }
    c->len += n;
    return ADAMAS_OK;
}

/* -------------------------------------------------------------- calibration */

int adamas_cache_calibrate(adamas_cache *c, float tau)
{
    if (!c)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_calibrate: c is NULL");
    if (!isfinite(tau) || !(tau > 0.0f))
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_calibrate: tau = %g is not finite and > 0",
                           (double)tau);
    if (c->len == 0)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_calibrate: the cache is empty");
    const adamas_kernels *kern;
    int st = adamas_kernels_get(&kern);
    if (st)
        return st;

    size_t d = c->cfg.head_dim, n_kv = c->cfg.n_kv_heads;
    float(*th)[3] = malloc(n_kv * sizeof *th);
    if (!th)
        return adamas_fail(ADAMAS_ENOMEM, "adamas_cache_calibrate: out of memory");

    /* First every head's thresholds, so that a failure changes nothing. */
    float x[ADAMAS_MAX_HEAD_DIM];
    for (uint32_t g = 0; g < n_kv; g++) {
        double sum_sq = 0.0;
        for (uint32_t t = 0; t < c->len; t++) {
            load_row(x, adamas_cache_key_row(c, g, t), d, c->cfg.kv_dtype);
            if (c->cfg.transform != ADAMAS_TRANSFORM_NONE)
                kern->hadamard(x, d);
            for (size_t i = 0; i < d; i++)
                sum_sq += (double)x[i] * x[i];
        }
        float edge = (float)((double)tau * sqrt(sum_sq / ((double)c->len * (double)d)));
        if (!(edge > 0.0f) || !isfinite(edge)) {
            free(th);
            return adamas_fail(ADAMAS_EINVAL,
                               "adamas_cache_calibrate: kv head %u has key RMS %g: thresholds "
                               "{-tau*s, 0, tau*s} would not be strictly increasing",
                               g, sqrt(sum_sq / ((double)c->len * (double)d)));
        }
        th[g][0] = -edge;
        th[g][1] = 0.0f;
        th[g][2] = edge;
    }
    if (c->gpu && (st = c->gpu_module->cache_recode(c->gpu, (const float(*)[3])th))) {
        free(th);
        return adamas_gpu_fail(st, "adamas_cache_calibrate");
    }
    for (uint32_t g = 0; g < n_kv; g++) {
        memcpy(c->k_thresholds[g], th[g], sizeof th[g]);
        for (uint32_t t = 0; t < c->len; t++) {
            load_row(x, adamas_cache_key_row(c, g, t), d, c->cfg.kv_dtype);
            encode_key(c, kern, x, th[g], x, adamas_cache_codes(c, g, t));
        }
    }
    free(th);
    c->query_tau = tau;
    return ADAMAS_OK;
}

/* ---------------------------------------------------------------- accessors */

int adamas_cache_key_thresholds(const adamas_cache *c, uint32_t kv_head, float th[3])
{
    if (!c || !th)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_key_thresholds: %s is NULL",
                           !c ? "c" : "th");
    if (kv_head >= c->cfg.n_kv_heads)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_key_thresholds: kv_head %u >= %u", kv_head,
                           c->cfg.n_kv_heads);
    memcpy(th, c->k_thresholds[kv_head], sizeof c->k_thresholds[kv_head]);
    return ADAMAS_OK;
}

int adamas_cache_code(const adamas_cache *c, uint32_t kv_head, uint32_t token, uint64_t *code)
{
    if (!c || !code)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_code: %s is NULL", !c ? "c" : "code");
    if (kv_head >= c->cfg.n_kv_heads || token >= c->len)
        return adamas_fail(ADAMAS_EINVAL, "adamas_cache_code: %s %u is out of range",
                           kv_head >= c->cfg.n_kv_heads ? "kv_head" : "token",
                           kv_head >= c->cfg.n_kv_heads ? kv_head : token);
    if (c->gpu) {
        int st = c->gpu_module->cache_codes(c->gpu, kv_head, token, 1, code);
        return st ? adamas_gpu_fail(st, "adamas_cache_code") : ADAMAS_OK;
    }
    memcpy(code, adamas_cache_codes(c, kv_head, token), c->code_words * sizeof *code);
    return ADAMAS_OK;
}

const char *adamas_cache_backend(const adamas_cache *c)
{
    return !c ? "" : c->gpu ? "cuda" : "cpu";
}

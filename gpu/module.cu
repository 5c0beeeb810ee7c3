/* module.cu - the CUDA module: the table of gpu_module.h, the device mirror of a
 * cache, and the launches of one decode step.
 *
 * Status codes: ENOTSUP when no usable device (or none this module is built for),
 * ENOMEM when device memory runs out, EINVAL for arguments outside the contract, EIO
 * for any other failure the CUDA runtime reports (the message names it). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamas_cuda.h"
#include "gpu.cuh"

/* Bytes of f32 keys and values staged on the device per append chunk. */
#define STAGE_BYTES ((size_t)32 << 20)

/* ------------------------------------------------------------ errors */

static thread_local char last_error[512];

static const char *module_error(void)
{
    return last_error;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

static int cuda_fail(cudaError_t e, const char *what)
{
    int status = e == cudaErrorMemoryAllocation ? ADAMAS_ENOMEM
                 : e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
                         e == cudaErrorNoKernelImageForDevice
                     ? ADAMAS_ENOTSUP
                     : ADAMAS_EIO;
    return fail(status, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

#define CU(call, what)                                                                        \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess)                                                                \
            return cuda_fail(e_, what);                                                       \
    } while (0)

/* Runs fn with the cache locked and its device current. */
struct cache_lock {
    adamas_gpu_cache *g;
    explicit cache_lock(adamas_gpu_cache *c) : g(c)
    {
        pthread_mutex_lock(&g->lock);
        cudaSetDevice(g->device);
    }
    ~cache_lock() { pthread_mutex_unlock(&g->lock); }
};

/* ------------------------------------------------------------ features */

const gpu_features *features(void)
{
    static const gpu_features f = [] {
        const char *off = getenv("ADAMAS_CUDA_OFF");
        auto on = [off](const char *name) {
            if (!off)
                return 1;
            size_t len = strlen(name);
            for (const char *p = strstr(off, name); p; p = strstr(p + 1, name))
                if ((p == off || p[-1] == ',') && (p[len] == '\0' || p[len] == ','))
                    return 0;
            return 1;
        };
        gpu_features v;
        v.pdl = on("pdl");
        v.online = on("online");
        return v;
    }();
    return &f;
}

/* ------------------------------------------------------------ probe */

__global__ void probe_kernel(int *x)
{
    if (x)
        *x = 1;
}

static int probe(char *device_name, size_t len)
{
    int count = 0, device = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        return fail(ADAMAS_ENOTSUP, "no usable CUDA device: %s (%s)", cudaGetErrorString(e),
                    cudaGetErrorName(e));
    if (count == 0)
        return fail(ADAMAS_ENOTSUP, "no CUDA device");
    cudaDeviceProp prop;
    if ((e = cudaGetDevice(&device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
        return fail(ADAMAS_ENOTSUP, "CUDA device: %s", cudaGetErrorString(e));
    cudaFuncAttributes attr;
    if (cudaFuncGetAttributes(&attr, probe_kernel) != cudaSuccess) {
        cudaGetLastError();
        return fail(ADAMAS_ENOTSUP,
                    "%s is sm_%d%d; this module holds code for sm_90 only (build it for this "
                    "device)",
                    prop.name, prop.major, prop.minor);
    }
    if (device_name && len)
        snprintf(device_name, len, "%s (sm_%d%d, %d multiprocessors)", prop.name, prop.major,
                 prop.minor, prop.multiProcessorCount);
    return ADAMAS_OK;
}

/* ------------------------------------------------------------ caches */

static void free_workspace(gpu_workspace *ws)
{
    cudaFree(ws->block);
    memset(ws, 0, sizeof *ws);
}

static void cache_destroy(adamas_gpu_cache *g)
{
    if (!g)
        return;
    cudaSetDevice(g->device);
    if (g->stream)
        cudaStreamSynchronize(g->stream);
    if (g->own_stream)
        cudaStreamSynchronize(g->own_stream);
    cudaFree(g->keys);
    cudaFree(g->values);
    cudaFree(g->codes);
    cudaFree(g->page_min);
    cudaFree(g->page_max);
    cudaFree(g->k_thresholds);
    cudaFree(g->stage);
    free_workspace(&g->ws);
    if (g->own_stream)
        cudaStreamDestroy(g->own_stream);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static int cache_create(const adamas_cache_config *cfg, adamas_gpu_cache **out)
{
    if (!cfg || !out)
        return fail(ADAMAS_EINVAL, "cache_create: %s is NULL", !cfg ? "cfg" : "out");
    adamas_gpu_cache *g = (adamas_gpu_cache *)calloc(1, sizeof *g);
    if (!g)
        return fail(ADAMAS_ENOMEM, "cache_create: out of host memory");
    pthread_mutex_init(&g->lock, NULL);
    g->cfg = *cfg;
    const uint32_t d = cfg->head_dim;
    g->group = cfg->n_heads / cfg->n_kv_heads;
    g->words = 2 * ((d + 63) / 64);
    g->nbins = 3 * d + 1;
    g->max_pages = cfg->max_tokens / cfg->page_size + (cfg->max_tokens % cfg->page_size != 0);
    g->elem = cfg->kv_dtype == ADAMAS_F32 ? 4 : 2;
    g->hadamard_scale = (float)(1.0 / sqrt((double)d));
    g->attn_scale = g->hadamard_scale;

    int st = ADAMAS_OK;
    cudaError_t e;
    cudaDeviceProp prop;
    const size_t rows = (size_t)cfg->n_kv_heads * cfg->max_tokens;
    const size_t pages = (size_t)cfg->n_kv_heads * g->max_pages * d * sizeof(float);
    if ((e = cudaGetDevice(&g->device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, g->device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&g->own_stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc(&g->keys, rows * d * g->elem)) != cudaSuccess ||
        (e = cudaMalloc(&g->values, rows * d * g->elem)) != cudaSuccess ||
        (e = cudaMalloc((void **)&g->codes, rows * g->words * sizeof(uint64_t))) != cudaSuccess ||
        (e = cudaMalloc((void **)&g->page_min, pages)) != cudaSuccess ||
        (e = cudaMalloc((void **)&g->page_max, pages)) != cudaSuccess ||
        (e = cudaMalloc((void **)&g->k_thresholds, cfg->n_kv_heads * 3 * sizeof(float))) !=
            cudaSuccess) {
        st = cuda_fail(e, "cache_create");
        cudaGetLastError();
        cache_destroy(g);
        return st;
    }
    g->sm_count = (uint32_t)prop.multiProcessorCount;
    g->stream = g->own_stream;
    *out = g;
    return ADAMAS_OK;
}

static int cache_append(adamas_gpu_cache *g, const float *k, const float *v, uint32_t n,
                        const float (*k_thresholds)[3])
{
    if (!g || (n && (!k || !v || !k_thresholds)))
        return fail(ADAMAS_EINVAL, "cache_append: a pointer is NULL");
    if (n == 0)
        return ADAMAS_OK;
    cache_lock lock(g);
    if (n > g->cfg.max_tokens - g->len)
        return fail(ADAMAS_ECAPACITY, "cache_append: %u tokens do not fit (%u of %u stored)", n,
                    g->len, g->cfg.max_tokens);
    const size_t row_floats = (size_t)g->cfg.n_kv_heads * g->cfg.head_dim;
    if (!g->stage) {
        size_t tokens = STAGE_BYTES / (2 * row_floats * sizeof(float));
        g->stage_tokens = tokens ? tokens : 1;
        CU(cudaMalloc((void **)&g->stage, 2 * g->stage_tokens * row_floats * sizeof(float)),
           "cache_append: staging buffer");
    }
    CU(cudaMemcpyAsync(g->k_thresholds, k_thresholds, g->cfg.n_kv_heads * 3 * sizeof(float),
                       cudaMemcpyHostToDevice, g->stream),
       "cache_append: thresholds");
    float *stage_k = g->stage, *stage_v = g->stage + g->stage_tokens * row_floats;
    for (uint32_t done = 0; done < n;) {
        const uint32_t count =
            n - done < g->stage_tokens ? n - done : (uint32_t)g->stage_tokens;
        const size_t bytes = count * row_floats * sizeof(float);
        CU(cudaMemcpyAsync(stage_k, k + done * row_floats, bytes, cudaMemcpyHostToDevice,
                           g->stream),
           "cache_append: keys");
        CU(cudaMemcpyAsync(stage_v, v + done * row_floats, bytes, cudaMemcpyHostToDevice,
                           g->stream),
           "cache_append: values");
        CU(launch_append(g, stage_k, stage_v, g->len + done, count), "cache_append: encode");
        done += count;
    }
    const uint32_t page = g->cfg.page_size;
    CU(launch_page_bounds(g, g->len / page, (g->len + n - 1) / page, g->len + n),
       "cache_append: page bounds");
    CU(cudaStreamSynchronize(g->stream), "cache_append");
    g->len += n;
    return ADAMAS_OK;
}

static int cache_recode(adamas_gpu_cache *g, const float (*k_thresholds)[3])
{
    if (!g || !k_thresholds)
        return fail(ADAMAS_EINVAL, "cache_recode: a pointer is NULL");
    cache_lock lock(g);
    CU(cudaMemcpyAsync(g->k_thresholds, k_thresholds, g->cfg.n_kv_heads * 3 * sizeof(float),
                       cudaMemcpyHostToDevice, g->stream),
       "cache_recode: thresholds");
    if (g->len)
        CU(launch_recode(g, g->len), "cache_recode");
    CU(cudaStreamSynchronize(g->stream), "cache_recode");
    return ADAMAS_OK;
}

static int cache_codes(const adamas_gpu_cache *gc, uint32_t kv_head, uint32_t first,
                       uint32_t count, uint64_t *codes)
{
    adamas_gpu_cache *g = (adamas_gpu_cache *)gc;
    if (!g || !codes)
        return fail(ADAMAS_EINVAL, "cache_codes: a pointer is NULL");
    cache_lock lock(g);
    if (kv_head >= g->cfg.n_kv_heads || first > g->len || count > g->len - first)
        return fail(ADAMAS_EINVAL, "cache_codes: kv head %u, tokens %u..%u of %u", kv_head, first,
                    first + count, g->len);
    const size_t at = ((size_t)kv_head * g->cfg.max_tokens + first) * g->words;
    CU(cudaMemcpyAsync(codes, g->codes + at, (size_t)count * g->words * sizeof(uint64_t),
                       cudaMemcpyDeviceToHost, g->stream),
       "cache_codes");
    CU(cudaStreamSynchronize(g->stream), "cache_codes");
    return ADAMAS_OK;
}

/* ------------------------------------------------------------ step plan */

/* What one step needs; fields as in decode.h. */
typedef struct {
    int dense;
    uint32_t n_cand, k_free, n_short, rerank_on, n_pick, scan_blocks;
    uint32_t m; /* tokens attended per head */
} step_plan;

static uint32_t ceil_div(uint32_t a, uint32_t b)
{
    return a / b + (a % b != 0);
}

static int plan_step(const adamas_gpu_cache *g, const adamas_gpu_step *s, step_plan *p)
{
    if (!s)
        return fail(ADAMAS_EINVAL, "decode: step is NULL");
    if (s->n == 0 || s->n > g->len)
        return fail(ADAMAS_EINVAL, "decode: n = %u is not in [1, %u]", s->n, g->len);
    if ((unsigned)s->selector > ADAMAS_SELECT_QUEST)
        return fail(ADAMAS_EINVAL, "decode: selector %d is unknown", (int)s->selector);
    memset(p, 0, sizeof *p);
    const uint32_t n = s->n, budget = s->budget, page = g->cfg.page_size;
    p->dense = s->selector == ADAMAS_SELECT_FULL || n <= budget;
    p->m = n;
    if (p->dense)
        return ADAMAS_OK;
    uint64_t forced = s->selector == ADAMAS_SELECT_STREAMING ? s->sink
                      : s->selector == ADAMAS_SELECT_QUEST
                          ? (uint64_t)page - 1
                          : (uint64_t)s->sink + s->recent;
    if (budget <= forced)
        return fail(ADAMAS_EINVAL, "decode: budget = %u is not larger than the forced set (%llu)",
                    budget, (unsigned long long)forced);
    p->m = budget;
    switch (s->selector) {
    case ADAMAS_SELECT_ADAMAS:
    case ADAMAS_SELECT_ORACLE: {
        p->n_cand = n - s->sink - s->recent;
        p->k_free = budget - s->sink - s->recent;
        const uint64_t wanted = (uint64_t)s->rerank * p->k_free;
        p->rerank_on = s->selector == ADAMAS_SELECT_ADAMAS && s->rerank > 1 && wanted > p->k_free;
        p->n_short = p->rerank_on ? (wanted < p->n_cand ? (uint32_t)wanted : p->n_cand) : 0;
        if (s->selector == ADAMAS_SELECT_ADAMAS)
            p->scan_blocks = scan_blocks(g, p->n_cand, g->cfg.n_kv_heads);
        break;
    }
    case ADAMAS_SELECT_QUEST: {
        const uint32_t last = ceil_div(n, page) - 1;
        p->n_pick = budget / page - 1;
        p->m = p->n_pick * page + (n - last * page);
        break;
    }
    default:
        break;
    }
    return ADAMAS_OK;
}

/* ------------------------------------------------------------ workspace */

typedef struct {
    uint32_t cand, hist, set, shortlist, score, partial, budget;
} ws_need;

static uint32_t grown(uint32_t cap, uint32_t need)
{
    if (need <= cap)
        return cap;
    uint64_t twice = (uint64_t)cap * 2;
    return twice > need && twice < UINT32_MAX ? (uint32_t)twice : need;
}

static size_t carve(size_t *offset, size_t bytes)
{
    size_t at = (*offset + 255) / 256 * 256;
    *offset = at + bytes;
    return at;
}

/* Make the workspace hold a step with these needs; never while the stream is being
 * captured into a graph (the caller runs the step once beforehand). */
static int reserve(adamas_gpu_cache *g, const ws_need *need)
{
    gpu_workspace *ws = &g->ws;
    const uint32_t need_cand = (need->cand + 7) / 8 * 8;
    if (ws->block && need_cand <= ws->cap_cand && need->hist <= ws->cap_hist &&
        need->set <= ws->cap_set &&
        need->shortlist <= ws->cap_short && need->score <= ws->cap_score &&
        need->partial <= ws->cap_partial && need->budget <= ws->cap_budget)
        return ADAMAS_OK;
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(g->stream, &capturing);
    if (capturing != cudaStreamCaptureStatusNone)
        return fail(ADAMAS_EINVAL, "decode: the step needs larger device buffers than the "
                                   "last one; run it once before capturing it in a graph");

    gpu_workspace next = *ws;
    next.block = NULL;
    next.cap_cand = (grown(ws->cap_cand, need_cand) + 7) / 8 * 8;
    next.cap_hist = grown(ws->cap_hist, need->hist);
    next.cap_set = grown(ws->cap_set, need->set);
    next.cap_short = grown(ws->cap_short, need->shortlist);
    next.cap_score = grown(ws->cap_score, need->score);
    next.cap_partial = grown(ws->cap_partial, need->partial);
    next.cap_budget = grown(ws->cap_budget, need->budget);

    const size_t heads = g->cfg.n_heads, d = g->cfg.head_dim;
    size_t off = 0;
    const size_t at_dist = carve(&off, heads * next.cap_cand * sizeof(uint16_t));
    const size_t at_hist = carve(&off, heads * next.cap_hist * sizeof(uint32_t));
    const size_t at_arrivals = carve(&off, heads * sizeof(uint32_t));
    const size_t at_set = carve(&off, heads * next.cap_set * sizeof(uint32_t));
    const size_t at_cand = carve(&off, heads * next.cap_short * sizeof(uint32_t));
    const size_t at_score = carve(&off, heads * next.cap_score * sizeof(float));
    const size_t at_partial = carve(&off, heads * next.cap_partial * (d + 2) * sizeof(float));
    const size_t at_q = carve(&off, heads * d * sizeof(float));
    const size_t at_out = carve(&off, heads * d * sizeof(float));
    const size_t at_selected = carve(&off, heads * next.cap_budget * sizeof(uint32_t));

    CU(cudaStreamSynchronize(g->stream), "decode: workspace");
    free_workspace(ws);
    CU(cudaMalloc(&next.block, off), "decode: workspace");
    char *b = (char *)next.block;
    next.bytes = off;
    next.dist = (uint16_t *)(b + at_dist);
    next.hist = (uint32_t *)(b + at_hist);
    next.arrivals = (uint32_t *)(b + at_arrivals);
    next.set = (uint32_t *)(b + at_set);
    next.cand = (uint32_t *)(b + at_cand);
    next.score = (float *)(b + at_score);
    next.partial = (float *)(b + at_partial);
    next.q = (float *)(b + at_q);
    next.out = (float *)(b + at_out);
    next.selected = (uint32_t *)(b + at_selected);
    *ws = next;
    /* the attention's chunk counters start at zero; each step leaves them so */
    CU(cudaMemsetAsync(ws->arrivals, 0, heads * sizeof(uint32_t), g->stream),
       "decode: workspace");
    return ADAMAS_OK;
}

static int reserve_for(adamas_gpu_cache *g, const adamas_gpu_step *s, const step_plan *p)
{
    ws_need need;
    memset(&need, 0, sizeof need);
    if (p->scan_blocks) { /* ADAMAS: distances and histograms */
        need.cand = p->n_cand;
        need.hist = p->scan_blocks * g->nbins;
    }
    need.set = s->budget;
    need.shortlist = p->n_short;
    /* scores: ORACLE's logits, QUEST's pages, or the rerank shortlist's logits */
    if (!p->dense)
        need.score = s->selector == ADAMAS_SELECT_ORACLE ? p->n_cand
                     : s->selector == ADAMAS_SELECT_QUEST ? ceil_div(s->n, g->cfg.page_size)
                                                          : p->n_short;
    need.partial = attend_chunks(p->m, p->dense);
    need.budget = s->budget;
    return reserve(g, &need);
}

/* ------------------------------------------------------------ a step */

/* Stages of a step, for run_step's `stages`: the ADAMAS scan; the selection; all. */
enum { STAGE_SCAN = 1, STAGE_SELECT = 2, STAGE_ALL = 3 };

/* Queue the selection and attention of one step on the cache's stream, up to stage
 * `stages`. */
static int run_step(adamas_gpu_cache *g, const adamas_gpu_step *s, const step_plan *p,
                    const float *q, float *out, uint32_t *selected, int stages)
{
    gpu_workspace *ws = &g->ws;
    const uint32_t *set = p->dense ? NULL : ws->set;
    if (!p->dense) {
        switch (s->selector) {
        case ADAMAS_SELECT_ADAMAS: {
            scan_launch sc;
            sc.q = q;
            sc.query_tau = s->query_tau;
            sc.kv0 = 0;
            sc.n_kv = g->cfg.n_kv_heads;
            sc.head0 = 0;
            sc.head_step = g->group;
            sc.heads_per_kv = g->group;
            sc.first = s->sink;
            sc.count = p->n_cand;
            sc.dist = ws->dist;
            sc.dstride = ws->cap_cand;
            sc.hist = ws->hist;
            uint32_t blocks, tpb;
            CU(launch_scan(g, &sc, &blocks, &tpb), "decode: scan");
            if (stages <= STAGE_SCAN)
                return ADAMAS_OK;
            select_launch sl;
            sl.n = s->n;
            sl.n_cand = p->n_cand;
            sl.k = p->rerank_on ? p->n_short : p->k_free;
            sl.sink = s->sink;
            sl.recent = s->recent;
            sl.budget = s->budget;
            sl.scan_blocks = blocks;
            sl.scan_tpb = tpb;
            sl.out = p->rerank_on ? ws->cand : ws->set + s->sink;
            sl.out_stride = p->rerank_on ? ws->cap_short : ws->cap_set;
            CU(launch_select(g, &sl), "decode: select");
            if (p->rerank_on)
                CU(launch_rerank(g, q, p->n_short, p->k_free, s->sink), "decode: rerank");
            break;
        }
        case ADAMAS_SELECT_ORACLE:
            CU(launch_oracle(g, q, s->n, p->n_cand, p->k_free, s->sink, s->recent, s->budget),
               "decode: oracle");
            break;
        case ADAMAS_SELECT_QUEST:
            CU(launch_quest(g, q, s->n, p->n_pick), "decode: quest");
            break;
        default:
            CU(launch_streaming(g, s->n, s->sink, s->budget), "decode: streaming");
            break;
        }
    }
    if (stages <= STAGE_SELECT)
        return ADAMAS_OK;
    if (s->selector == ADAMAS_SELECT_FULL)
        selected = NULL;
    cudaError_t e = launch_attend(g, q, set, p->m, out, selected, s->budget, !p->dense);
    if (e == cudaErrorInvalidValue)
        return fail(ADAMAS_ENOTSUP, "decode: %u tokens per head exceed this module's attention "
                                    "chunks",
                    p->m);
    CU(e, "decode: attention");
    return ADAMAS_OK;
}

/* Plan step s and reserve the workspace it needs; the caller holds the cache's lock. */
static int prepare_step(adamas_gpu_cache *g, const adamas_gpu_step *s, step_plan *p)
{
    int st = plan_step(g, s, p);
    return st ? st : reserve_for(g, s, p);
}

/* A step on device pointers, up to stage `stages`; the caller has checked them. */
static int run_dev(adamas_gpu_cache *g, const adamas_gpu_step *s, const float *q_dev,
                   float *out_dev, uint32_t *selected_dev, int stages)
{
    cache_lock lock(g);
    step_plan p;
    int st = prepare_step(g, s, &p);
    return st ? st : run_step(g, s, &p, q_dev, out_dev, selected_dev, stages);
}

static int decode_dev(adamas_gpu_cache *g, const adamas_gpu_step *s, const float *q_dev,
                      float *out_dev, uint32_t *selected_dev)
{
    if (!g || !q_dev || !out_dev)
        return fail(ADAMAS_EINVAL, "decode_dev: a pointer is NULL");
    return run_dev(g, s, q_dev, out_dev, selected_dev, STAGE_ALL);
}

static int decode(adamas_gpu_cache *g, const adamas_gpu_step *s, const float *q, float *out,
                  uint32_t *selected)
{
    if (!g || !q || !out)
        return fail(ADAMAS_EINVAL, "decode: a pointer is NULL");
    cache_lock lock(g);
    step_plan p;
    int st = prepare_step(g, s, &p);
    if (st)
        return st;
    gpu_workspace *ws = &g->ws;
    const size_t q_bytes = (size_t)g->cfg.n_heads * g->cfg.head_dim * sizeof(float);
    const int want_selected = selected && s->selector != ADAMAS_SELECT_FULL;
    CU(cudaMemcpyAsync(ws->q, q, q_bytes, cudaMemcpyHostToDevice, g->stream), "decode: query");
    st = run_step(g, s, &p, ws->q, ws->out, want_selected ? ws->selected : NULL, STAGE_ALL);
    if (st)
        return st;
    CU(cudaMemcpyAsync(out, ws->out, q_bytes, cudaMemcpyDeviceToHost, g->stream), "decode: out");
    if (want_selected)
        CU(cudaMemcpyAsync(selected, ws->selected,
                           (size_t)g->cfg.n_heads * s->budget * sizeof(uint32_t),
                           cudaMemcpyDeviceToHost, g->stream),
           "decode: selected");
    CU(cudaStreamSynchronize(g->stream), "decode");
    return ADAMAS_OK;
}

static int distances(adamas_gpu_cache *g, const adamas_gpu_step *s, uint32_t head, const float *q,
                     uint16_t *dist)
{
    if (!g || !s || !q || !dist)
        return fail(ADAMAS_EINVAL, "distances: a pointer is NULL");
    cache_lock lock(g);
    if (head >= g->cfg.n_heads || s->n == 0 || s->n > g->len)
        return fail(ADAMAS_EINVAL, "distances: head %u, n %u (of %u heads, %u tokens)", head, s->n,
                    g->cfg.n_heads, g->len);
    ws_need need;
    memset(&need, 0, sizeof need);
    need.cand = s->n;
    int st = reserve(g, &need);
    if (st)
        return st;
    gpu_workspace *ws = &g->ws;
    const size_t d = g->cfg.head_dim;
    CU(cudaMemcpyAsync(ws->q + head * d, q, d * sizeof(float), cudaMemcpyHostToDevice, g->stream),
       "distances: query");
    scan_launch sc;
    sc.q = ws->q;
    sc.query_tau = s->query_tau;
    sc.kv0 = head / g->group;
    sc.n_kv = 1;
    sc.head0 = head;
    sc.head_step = 0;
    sc.heads_per_kv = 1;
    sc.first = 0;
    sc.count = s->n;
    sc.dist = ws->dist;
    sc.dstride = ws->cap_cand;
    sc.hist = NULL;
    uint32_t blocks, tpb;
    CU(launch_scan(g, &sc, &blocks, &tpb), "distances: scan");
    CU(cudaMemcpyAsync(dist, ws->dist + (size_t)head * ws->cap_cand, s->n * sizeof(uint16_t),
                       cudaMemcpyDeviceToHost, g->stream),
       "distances: result");
    CU(cudaStreamSynchronize(g->stream), "distances");
    return ADAMAS_OK;
}

static int sync(adamas_gpu_cache *g)
{
    if (!g)
        return fail(ADAMAS_EINVAL, "sync: g is NULL");
    cudaSetDevice(g->device);
    CU(cudaStreamSynchronize(g->stream), "sync");
    return ADAMAS_OK;
}

/* ------------------------------------------------------------ exports */

static const adamas_gpu_module table = {
    ADAMAS_GPU_ABI, "cuda", module_error, probe,      cache_create, cache_destroy, cache_append,
    cache_recode,   cache_codes, distances, decode,   decode_dev,   sync,
};

extern "C" ADAMAS_API const adamas_gpu_module *adamas_gpu_module_get(void)
{
    return &table;
}

extern "C" ADAMAS_API void *adamas_cuda_stream(adamas_gpu_cache *g)
{
    return g ? (void *)g->stream : NULL;
}

extern "C" ADAMAS_API int adamas_cuda_set_stream(adamas_gpu_cache *g, void *stream)
{
    if (!g)
        return fail(ADAMAS_EINVAL, "set_stream: g is NULL");
    cache_lock lock(g);
    CU(cudaStreamSynchronize(g->stream), "set_stream");
    g->stream = stream ? (cudaStream_t)stream : g->own_stream;
    return ADAMAS_OK;
}

extern "C" ADAMAS_API int adamas_cuda_stages_dev(adamas_gpu_cache *g, const adamas_gpu_step *s,
                                                 const float *q_dev, float *out_dev,
                                                 uint32_t stages)
{
    if (!g || !q_dev || !out_dev || stages == 0)
        return fail(ADAMAS_EINVAL, "stages_dev: a pointer is NULL or stages is 0");
    return run_dev(g, s, q_dev, out_dev, NULL, stages < STAGE_ALL ? (int)stages : STAGE_ALL);
}

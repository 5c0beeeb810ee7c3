/* scan.cu - choosing the attended tokens on the device: query codes and the distance
 * scan, the histogram select with the tie rule (count, then emit), two-stage rerank,
 * and the baselines' selectors (ORACLE, QUEST, STREAMING). */
#include "device.cuh"
#include "gpu.cuh"

/* Code loads in flight per thread in the scan. */
#define SCAN_UNROLL 4
/* Query codes per scan block at most (shared memory), per launch. */
#define SCAN_CODE_BYTES 16384u
/* Shared memory a block may use without opting in. */
#define SHARED_LIMIT 49152u

/* ------------------------------------------------------------ scan */

struct scan_args {
    const uint64_t *codes;
    uint32_t max_tokens;
    const float *q;
    float th0, th1, th2, tau, scale;
    int rotate;
    uint32_t kv0, head0, head_step, heads;
    uint32_t first, count, tpb, n_blocks;
    uint16_t *dist;
    uint32_t dstride;
    uint32_t *hist;
    uint32_t nbins;
    int shared_hist;
};

/* One pass of the scan: this thread's 16-byte plane pair of keys base + u*per_pass +
 * slot (u < SCAN_UNROLL), zeros past end. */
template <int W>
__device__ __forceinline__ void load_codes(const uint64_t *codes, uint32_t base, uint32_t end,
                                           uint32_t slot, uint32_t per_pass,
                                           ulonglong2 (&c)[SCAN_UNROLL])
{
#pragma unroll
    for (int u = 0; u < SCAN_UNROLL; u++) {
        const uint32_t tok = base + u * per_pass + slot;
        c[u] = tok < end ? __ldg((const ulonglong2 *)(codes + (size_t)tok * W))
                         : make_ulonglong2(0, 0);
    }
}

/* Block (x: token range, y: kv head): the codes of its query heads (one warp each),
 * then for every key of the range its distance to each of them, into dist and the
 * block's histogram of each head (hist[h][blockIdx.x][nbins]).  P = W/2 consecutive
 * threads share one key, each loading one 16-byte (lo, hi) pair of planes. */
template <int D, int METRIC>
__global__ void __launch_bounds__(BLOCK_THREADS) scan_kernel(scan_args a)
{
    constexpr int R = lanes_of<D>::R, W = lanes_of<D>::W, P = W / 2;
    extern __shared__ uint64_t smem[];
    uint64_t *qs = smem;                              /* [heads][W]     */
    uint32_t *hist_s = (uint32_t *)(qs + a.heads * W); /* [heads][nbins] */
    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const uint32_t kv = a.kv0 + blockIdx.y, head0 = a.head0 + blockIdx.y * a.head_step;
    allow_dependents(); /* the select kernel may take its place and wait for this one */

    /* this block's histogram rows: in shared memory, or its own rows of hist */
    uint32_t *hbase = nullptr;
    size_t hstride = 0;
    if (a.hist) {
        if (a.shared_hist) {
            hbase = hist_s;
            hstride = a.nbins;
        } else {
            hbase = a.hist + ((size_t)head0 * a.n_blocks + blockIdx.x) * a.nbins;
            hstride = (size_t)a.n_blocks * a.nbins;
        }
        for (uint32_t i = tid; i < a.heads * a.nbins; i += BLOCK_THREADS)
            hbase[i / a.nbins * hstride + i % a.nbins] = 0;
    }

    /* the first pass of codes is in flight while the query codes are computed */
    const uint32_t p = tid % P, tokens_per_pass = BLOCK_THREADS / P;
    const uint32_t step = tokens_per_pass * SCAN_UNROLL;
    const uint32_t t0 = blockIdx.x * a.tpb;
    const uint32_t t1 = t0 + a.tpb < a.count ? t0 + a.tpb : a.count;
    const uint64_t *codes = a.codes + ((size_t)kv * a.max_tokens + a.first) * W + 2 * p;
    ulonglong2 next[SCAN_UNROLL];
    load_codes<W>(codes, t0, t1, tid / P, tokens_per_pass, next);

    for (uint32_t j = warp; j < a.heads; j += BLOCK_WARPS) {
        const float *qrow = a.q + (size_t)(head0 + j) * D;
        float x[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            x[r] = qrow[elem_index<D>(r, lane)];
        if (a.rotate)
            warp_hadamard<D>(x, lane, a.scale);
        float th0 = a.th0, th1 = a.th1, th2 = a.th2;
        if (a.tau > 0.0f) {
            /* calibrated: {-tau*r, 0, tau*r}, r = sqrtf(dot16(Hq, Hq) / d) */
            float r = __fsqrt_rn(__fdiv_rn(warp_self_dot<D>(x, lane), (float)D));
            float edge = __fmul_rn(a.tau, r);
            th0 = -edge;
            th1 = 0.0f;
            th2 = edge;
        }
        warp_encode<D>(x, th0, th1, th2, lane, qs + (size_t)j * W);
    }
    __syncthreads();

    for (uint32_t base = t0; base < t1; base += step) {
        ulonglong2 c[SCAN_UNROLL];
#pragma unroll
        for (int u = 0; u < SCAN_UNROLL; u++)
            c[u] = next[u];
        if (base + step < t1)
            load_codes<W>(codes, base + step, t1, tid / P, tokens_per_pass, next);
#pragma unroll
        for (int u = 0; u < SCAN_UNROLL; u++) {
            const uint32_t tok = base + u * tokens_per_pass + tid / P;
            for (uint32_t j = 0; j < a.heads; j++) {
                const uint64_t *qc = qs + (size_t)j * W + 2 * p;
                uint32_t dist = group_distance<METRIC>(qc[0], qc[1], c[u].x, c[u].y);
#pragma unroll
                for (int off = 1; off < P; off *= 2)
                    dist += __shfl_xor_sync(FULL_MASK, dist, off);
                if (p == 0 && tok < t1) {
                    a.dist[(size_t)(head0 + j) * a.dstride + tok] = (uint16_t)dist;
                    if (hbase)
                        atomicAdd(hbase + j * hstride + dist, 1u);
                }
            }
        }
    }

    if (a.hist && a.shared_hist) {
        __syncthreads();
        for (uint32_t i = tid; i < a.heads * a.nbins; i += BLOCK_THREADS)
            a.hist[((size_t)(head0 + i / a.nbins) * a.n_blocks + blockIdx.x) * a.nbins +
                   i % a.nbins] = hist_s[i];
    }
}

static uint32_t pairs_of(uint32_t d)
{
    return (d + 63) / 64;
}

/* Tokens per scan block: about four blocks per multiprocessor over all kv heads, in
 * whole passes of the unrolled loop. */
static uint32_t scan_tokens_per_block(const adamas_gpu_cache *g, uint32_t count, uint32_t n_kv)
{
    const uint32_t pass = BLOCK_THREADS / pairs_of(g->cfg.head_dim) * SCAN_UNROLL;
    const uint32_t target = 4 * g->sm_count, per_head = (target + n_kv - 1) / n_kv;
    uint32_t tpb = (count + per_head - 1) / per_head;
    tpb = (tpb + pass - 1) / pass * pass;
    return tpb ? tpb : pass;
}

uint32_t scan_blocks(const adamas_gpu_cache *g, uint32_t count, uint32_t n_kv)
{
    const uint32_t tpb = scan_tokens_per_block(g, count, n_kv);
    return (count + tpb - 1) / tpb;
}

#define DISPATCH_SCAN(D, METRIC, ...)                                                         \
    do {                                                                                      \
        if ((METRIC) == ADAMAS_METRIC_XORW)                                                   \
            scan_kernel<D, ADAMAS_METRIC_XORW><<<__VA_ARGS__>>>(s);                           \
        else                                                                                  \
            scan_kernel<D, ADAMAS_METRIC_L1><<<__VA_ARGS__>>>(s);                             \
    } while (0)

cudaError_t launch_scan(const adamas_gpu_cache *g, const scan_launch *a, uint32_t *blocks,
                        uint32_t *tpb)
{
    const uint32_t d = g->cfg.head_dim, w = g->words;
    scan_args s;
    s.codes = g->codes;
    s.max_tokens = g->cfg.max_tokens;
    s.q = a->q;
    s.th0 = g->cfg.q_thresholds[0];
    s.th1 = g->cfg.q_thresholds[1];
    s.th2 = g->cfg.q_thresholds[2];
    s.tau = a->query_tau;
    s.scale = g->hadamard_scale;
    s.rotate = g->cfg.transform != ADAMAS_TRANSFORM_NONE;
    s.kv0 = a->kv0;
    s.head_step = a->head_step;
    s.first = a->first;
    s.count = a->count;
    s.tpb = scan_tokens_per_block(g, a->count, a->n_kv);
    s.n_blocks = (a->count + s.tpb - 1) / s.tpb;
    s.dist = a->dist;
    s.dstride = a->dstride;
    s.hist = a->hist;
    s.nbins = g->nbins;
    *blocks = s.n_blocks;
    *tpb = s.tpb;

    /* query heads per launch: as many codes as fit the shared-memory share */
    const uint32_t batch_max = SCAN_CODE_BYTES / (w * 8);
    for (uint32_t j0 = 0; j0 < a->heads_per_kv; j0 += batch_max) {
        s.head0 = a->head0 + j0;
        s.heads = a->heads_per_kv - j0 < batch_max ? a->heads_per_kv - j0 : batch_max;
        size_t shared = (size_t)s.heads * w * 8;
        s.shared_hist = a->hist && shared + (size_t)s.heads * g->nbins * 4 <= SHARED_LIMIT;
        if (s.shared_hist)
            shared += (size_t)s.heads * g->nbins * 4;
        const dim3 grid(s.n_blocks, a->n_kv);
        const adamas_metric metric = g->cfg.metric;
        switch (d) {
        case 16: DISPATCH_SCAN(16, metric, grid, BLOCK_THREADS, shared, g->stream); break;
        case 32: DISPATCH_SCAN(32, metric, grid, BLOCK_THREADS, shared, g->stream); break;
        case 64: DISPATCH_SCAN(64, metric, grid, BLOCK_THREADS, shared, g->stream); break;
        case 128: DISPATCH_SCAN(128, metric, grid, BLOCK_THREADS, shared, g->stream); break;
        case 256: DISPATCH_SCAN(256, metric, grid, BLOCK_THREADS, shared, g->stream); break;
        case 512: DISPATCH_SCAN(512, metric, grid, BLOCK_THREADS, shared, g->stream); break;
        default: DISPATCH_SCAN(1024, metric, grid, BLOCK_THREADS, shared, g->stream); break;
        }
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

/* ------------------------------------------------------------ histogram select */

#define SELECT_PER_THREAD (SELECT_TILE / BLOCK_THREADS) /* 16 */

struct select_args {
    const uint16_t *dist;
    uint32_t dstride;
    const uint32_t *hist;
    uint32_t scan_blocks, tpb, nbins;
    uint32_t n, n_cand, k, sink, recent, budget;
    uint32_t *out;
    uint32_t out_stride;
    uint32_t *set;
    uint32_t set_stride;
};

/* The 16 distances of positions j0..j0+15 of row (positions from end on read as
 * UINT16_MAX, above every threshold: distances are at most 3*1024). */
__device__ __forceinline__ void load_tile(const uint16_t *row, uint32_t j0, uint32_t end,
                                          uint16_t (&v)[SELECT_PER_THREAD])
{
    if (j0 + SELECT_PER_THREAD <= end) {
        const uint4 a = *(const uint4 *)(row + j0), b = *(const uint4 *)(row + j0 + 8);
        const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int e = 0; e < 8; e++) {
            v[2 * e] = (uint16_t)(w[e] & 0xffffu);
            v[2 * e + 1] = (uint16_t)(w[e] >> 16);
        }
    } else {
#pragma unroll
        for (int e = 0; e < SELECT_PER_THREAD; e++)
            v[e] = j0 + e < end ? row[j0 + e] : (uint16_t)0xffffu;
    }
}

/* Block (x: scan block, y: query head): the k smallest distances of the head, ties to
 * the larger position, as far as they lie in the scan block's range of candidates.
 * One pass over the scan's histograms gives, for each distance, its count in all scan
 * blocks (whence the threshold t, the smallest distance whose cumulative count reaches
 * k) and in the scan blocks before this one (whence how many distances below and
 * equal to t precede the range).  Then every position below t, and every position
 * equal to t but the first (count(= t) - (k - count(< t))), is written ascending as
 * token sink + j.  Block 0 also writes the forced tokens of the set row. */
__global__ void __launch_bounds__(BLOCK_THREADS) select_kernel(select_args a)
{
    __shared__ uint32_t s_hist[3 * ADAMAS_MAX_HEAD_DIM + 1]; /* all scan blocks        */
    __shared__ uint32_t s_part[3 * ADAMAS_MAX_HEAD_DIM + 1]; /* those before this one  */
    __shared__ uint32_t s_warp[BLOCK_WARPS + 1];
    __shared__ uint32_t s_t, s_below;
    const uint32_t tid = threadIdx.x, h = blockIdx.y, blk = blockIdx.x, nbins = a.nbins;
    const uint32_t *hh = a.hist + (size_t)h * a.scan_blocks * nbins;
    wait_for_inputs();
    allow_dependents();

    for (uint32_t b = tid; b < nbins; b += BLOCK_THREADS) {
        uint32_t before = 0, after = 0, sb = 0;
        for (; sb + 8 <= a.scan_blocks; sb += 8) {
            uint32_t c[8];
#pragma unroll
            for (int e = 0; e < 8; e++)
                c[e] = hh[(size_t)(sb + e) * nbins + b];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                if (sb + e < blk)
                    before += c[e];
                else
                    after += c[e];
            }
        }
        for (; sb < a.scan_blocks; sb++) {
            const uint32_t c = hh[(size_t)sb * nbins + b];
            if (sb < blk)
                before += c;
            else
                after += c;
        }
        s_hist[b] = before + after;
        s_part[b] = before;
    }
    __syncthreads();
    const uint32_t per = (nbins + BLOCK_THREADS - 1) / BLOCK_THREADS;
    const uint32_t b0 = tid * per < nbins ? tid * per : nbins;
    const uint32_t b1 = b0 + per < nbins ? b0 + per : nbins;
    uint32_t mine = 0;
    for (uint32_t b = b0; b < b1; b++)
        mine += s_hist[b];
    uint32_t total;
    uint32_t below = block_exclusive_scan(mine, &total, s_warp);
    for (uint32_t b = b0; b < b1; b++) {
        if (below < a.k && below + s_hist[b] >= a.k) {
            s_t = b;
            s_below = below;
        }
        below += s_hist[b];
    }
    __syncthreads();
    const uint32_t t = s_t, eq_skip = s_hist[t] - (a.k - s_below);

    /* distances below and equal to t in the scan blocks before this one */
    uint32_t lt = 0;
    for (uint32_t b = b0; b < b1 && b < t; b++)
        lt += s_part[b];
    uint32_t lt_base = block_sum(lt, s_warp), eq_base = s_part[t];

    const uint16_t *row = a.dist + (size_t)h * a.dstride;
    uint32_t *out = a.out + (size_t)h * a.out_stride;
    const uint32_t start = blk * a.tpb;
    const uint32_t end = start + a.tpb < a.n_cand ? start + a.tpb : a.n_cand;
    for (uint32_t tile = start; tile < end; tile += SELECT_TILE) {
        uint16_t v[SELECT_PER_THREAD];
        const uint32_t j0 = tile + tid * SELECT_PER_THREAD;
        load_tile(row, j0, end, v);
        uint32_t my_lt = 0, my_eq = 0;
#pragma unroll
        for (int e = 0; e < SELECT_PER_THREAD; e++) {
            my_lt += v[e] < t;
            my_eq += v[e] == t;
        }
        uint32_t tile_total;
        const uint32_t before = block_exclusive_scan(my_eq << 16 | my_lt, &tile_total, s_warp);
        uint32_t lt_before = lt_base + (before & 0xffffu), eq_before = eq_base + (before >> 16);
#pragma unroll
        for (int e = 0; e < SELECT_PER_THREAD; e++) {
            if (v[e] < t) {
                out[lt_before + (eq_before > eq_skip ? eq_before - eq_skip : 0)] = a.sink + j0 + e;
                lt_before++;
            } else if (v[e] == t) {
                if (eq_before >= eq_skip)
                    out[lt_before + eq_before - eq_skip] = a.sink + j0 + e;
                eq_before++;
            }
        }
        lt_base += tile_total & 0xffffu;
        eq_base += tile_total >> 16;
    }

    if (blk == 0) {
        uint32_t *set = a.set + (size_t)h * a.set_stride;
        for (uint32_t i = tid; i < a.sink; i += BLOCK_THREADS)
            set[i] = i;
        for (uint32_t i = tid; i < a.recent; i += BLOCK_THREADS)
            set[a.budget - a.recent + i] = a.n - a.recent + i;
    }
}

cudaError_t launch_select(const adamas_gpu_cache *g, const select_launch *a)
{
    const gpu_workspace *ws = &g->ws;
    select_args s;
    s.dist = ws->dist;
    s.dstride = ws->cap_cand;
    s.hist = ws->hist;
    s.scan_blocks = a->scan_blocks;
    s.tpb = a->scan_tpb;
    s.nbins = g->nbins;
    s.n = a->n;
    s.n_cand = a->n_cand;
    s.k = a->k;
    s.sink = a->sink;
    s.recent = a->recent;
    s.budget = a->budget;
    s.out = a->out;
    s.out_stride = a->out_stride;
    s.set = ws->set;
    s.set_stride = ws->cap_set;
    const dim3 grid(a->scan_blocks, g->cfg.n_heads);
    return launch_after(select_kernel, grid, BLOCK_THREADS, 0, g->stream, s);
}

/* ------------------------------------------------------------ exact logits */

struct logits_args {
    const void *keys;
    const float *q;
    uint32_t d, max_tokens, group;
    const uint32_t *tokens; /* per head, stride token_stride; NULL: first + j */
    uint32_t token_stride, first, m;
    float *score;
    uint32_t score_stride;
};

/* Block (x: 16 rows, y: query head): score[h][j] = q_h . key(token j) in the fixed
 * summation order, one half-warp per row. */
template <int DT>
__global__ void __launch_bounds__(BLOCK_THREADS) logits_kernel(logits_args a)
{
    extern __shared__ float q_s[];
    const uint32_t tid = threadIdx.x, h = blockIdx.y, kv = h / a.group;
    for (uint32_t i = tid; i < a.d; i += BLOCK_THREADS)
        q_s[i] = a.q[(size_t)h * a.d + i];
    wait_for_inputs();
    allow_dependents();
    __syncthreads();
    const uint32_t j = blockIdx.x * (2 * BLOCK_WARPS) + (tid >> 4), l16 = tid & 15;
    const void *row = nullptr;
    if (j < a.m) {
        const uint32_t token = a.tokens ? a.tokens[(size_t)h * a.token_stride + j] : a.first + j;
        row = (const char *)a.keys + ((size_t)kv * a.max_tokens + token) * a.d * dtype_bytes<DT>();
    }
    const float dot = half_warp_dot<DT>(q_s, row, a.d, l16);
    if (row && l16 == 0)
        a.score[(size_t)h * a.score_stride + j] = dot;
}

/* after: a kernel of the step ran before (the launch may overlap its end). */
static cudaError_t launch_logits(const adamas_gpu_cache *g, const logits_args *a, int after)
{
    const dim3 grid((a->m + 2 * BLOCK_WARPS - 1) / (2 * BLOCK_WARPS), g->cfg.n_heads);
    const size_t shared = (size_t)a->d * sizeof(float);
    void (*kernel)(logits_args) = g->cfg.kv_dtype == ADAMAS_F16    ? logits_kernel<ADAMAS_F16>
                                  : g->cfg.kv_dtype == ADAMAS_BF16 ? logits_kernel<ADAMAS_BF16>
                                                                   : logits_kernel<ADAMAS_F32>;
    if (after)
        return launch_after(kernel, grid, BLOCK_THREADS, shared, g->stream, *a);
    kernel<<<grid, BLOCK_THREADS, shared, g->stream>>>(*a);
    return cudaGetLastError();
}

static logits_args logits_of(const adamas_gpu_cache *g, const float *q)
{
    logits_args a;
    a.keys = g->keys;
    a.q = q;
    a.d = g->cfg.head_dim;
    a.max_tokens = g->cfg.max_tokens;
    a.group = g->group;
    a.tokens = nullptr;
    a.token_stride = 0;
    a.first = 0;
    a.m = 0;
    a.score = g->ws.score;
    a.score_stride = g->ws.cap_score;
    return a;
}

/* ------------------------------------------------------------ top-k by score */

struct pick_args {
    const float *score;
    uint32_t score_stride;
    const uint32_t *cand; /* rerank: shortlist per head (stride cand_stride) */
    uint32_t cand_stride;
    uint32_t m, k, sink, recent, n, budget, page_size;
    uint32_t *set;
    uint32_t set_stride;
};

/* Block per query head: the k largest scores, ties to the larger position, written
 * ascending into the set row from slot sink: as the shortlisted token (rerank) or as
 * token sink + j (oracle); with the forced tokens when `forced`. */
__global__ void __launch_bounds__(BLOCK_THREADS) pick_tokens_kernel(pick_args a, int forced)
{
    __shared__ topk_scratch s;
    wait_for_inputs();
    allow_dependents();
    const uint32_t h = blockIdx.x;
    const float *score = a.score + (size_t)h * a.score_stride;
    const uint32_t *cand = a.cand ? a.cand + (size_t)h * a.cand_stride : nullptr;
    uint32_t *set = a.set + (size_t)h * a.set_stride;
    const uint32_t sink = a.sink;
    auto key = [&](uint32_t j) { return order_key(score[j]); };
    auto emit = [&](uint32_t slot, uint32_t j) { set[sink + slot] = cand ? cand[j] : sink + j; };
    block_topk_largest(a.m, a.k, key, emit, &s);
    if (forced) {
        for (uint32_t i = threadIdx.x; i < a.sink; i += BLOCK_THREADS)
            set[i] = i;
        for (uint32_t i = threadIdx.x; i < a.recent; i += BLOCK_THREADS)
            set[a.budget - a.recent + i] = a.n - a.recent + i;
    }
}

/* Block per query head: the best m-of-pages by score (k of them, ties to the more
 * recent page), each expanded to its page_size tokens, then the newest page (tokens
 * (m * page_size) .. n-1, m = the number of scored pages). */
__global__ void __launch_bounds__(BLOCK_THREADS) pick_pages_kernel(pick_args a)
{
    __shared__ topk_scratch s;
    wait_for_inputs();
    allow_dependents();
    const uint32_t h = blockIdx.x, page = a.page_size, last = a.m;
    const float *score = a.score + (size_t)h * a.score_stride;
    uint32_t *set = a.set + (size_t)h * a.set_stride;
    if (a.k > 0)
        block_topk_largest(
            a.m, a.k, [&](uint32_t p) { return order_key(score[p]); },
            [&](uint32_t slot, uint32_t p) {
                for (uint32_t i = 0; i < page; i++)
                    set[slot * page + i] = p * page + i;
            },
            &s);
    for (uint32_t i = threadIdx.x; i < a.n - last * page; i += BLOCK_THREADS)
        set[a.k * page + i] = last * page + i;
}

/* Block per query head: the StreamingLLM set. */
__global__ void streaming_kernel(uint32_t *set, uint32_t set_stride, uint32_t n, uint32_t sink,
                                 uint32_t budget)
{
    wait_for_inputs();
    allow_dependents();
    uint32_t *row = set + (size_t)blockIdx.x * set_stride;
    for (uint32_t i = threadIdx.x; i < budget; i += blockDim.x)
        row[i] = i < sink ? i : n - (budget - sink) + (i - sink);
}

static pick_args pick_of(const adamas_gpu_cache *g)
{
    pick_args a;
    a.score = g->ws.score;
    a.score_stride = g->ws.cap_score;
    a.cand = nullptr;
    a.cand_stride = g->ws.cap_short;
    a.m = a.k = a.sink = a.recent = a.n = a.budget = 0;
    a.page_size = g->cfg.page_size;
    a.set = g->ws.set;
    a.set_stride = g->ws.cap_set;
    return a;
}

cudaError_t launch_rerank(const adamas_gpu_cache *g, const float *q, uint32_t n_short,
                          uint32_t k_free, uint32_t sink)
{
    logits_args l = logits_of(g, q);
    l.tokens = g->ws.cand;
    l.token_stride = g->ws.cap_short;
    l.m = n_short;
    cudaError_t e = launch_logits(g, &l, 1);
    if (e != cudaSuccess)
        return e;
    pick_args p = pick_of(g);
    p.cand = g->ws.cand;
    p.m = n_short;
    p.k = k_free;
    p.sink = sink;
    return launch_after(pick_tokens_kernel, g->cfg.n_heads, BLOCK_THREADS, 0, g->stream, p, 0);
}

cudaError_t launch_oracle(const adamas_gpu_cache *g, const float *q, uint32_t n, uint32_t n_cand,
                          uint32_t k_free, uint32_t sink, uint32_t recent, uint32_t budget)
{
    logits_args l = logits_of(g, q);
    l.first = sink;
    l.m = n_cand;
    cudaError_t e = launch_logits(g, &l, 0);
    if (e != cudaSuccess)
        return e;
    pick_args p = pick_of(g);
    p.m = n_cand;
    p.k = k_free;
    p.sink = sink;
    p.recent = recent;
    p.n = n;
    p.budget = budget;
    return launch_after(pick_tokens_kernel, g->cfg.n_heads, BLOCK_THREADS, 0, g->stream, p, 1);
}

/* Block (x: 16 pages, y: query head): the Quest bound of every page but the newest. */
__global__ void __launch_bounds__(BLOCK_THREADS)
page_score_kernel(const float *q, const float *page_min, const float *page_max, uint32_t d,
                  uint32_t max_pages, uint32_t group, uint32_t n_scored, float *score,
                  uint32_t score_stride)
{
    extern __shared__ float q_s[];
    const uint32_t tid = threadIdx.x, h = blockIdx.y, kv = h / group;
    allow_dependents();
    for (uint32_t i = tid; i < d; i += BLOCK_THREADS)
        q_s[i] = q[(size_t)h * d + i];
    __syncthreads();
    const uint32_t p = blockIdx.x * (2 * BLOCK_WARPS) + (tid >> 4), l16 = tid & 15;
    const float *lo = nullptr, *hi = nullptr;
    if (p < n_scored) {
        const size_t off = ((size_t)kv * max_pages + p) * d;
        lo = page_min + off;
        hi = page_max + off;
    }
    const float s = half_warp_page_score(q_s, lo, hi, d, l16);
    if (lo && l16 == 0)
        score[(size_t)h * score_stride + p] = s;
}

cudaError_t launch_quest(const adamas_gpu_cache *g, const float *q, uint32_t n, uint32_t n_pick)
{
    const uint32_t page = g->cfg.page_size, last = (n + page - 1) / page - 1;
    if (n_pick > 0) {
        const dim3 grid((last + 2 * BLOCK_WARPS - 1) / (2 * BLOCK_WARPS), g->cfg.n_heads);
        page_score_kernel<<<grid, BLOCK_THREADS, g->cfg.head_dim * sizeof(float), g->stream>>>(
            q, g->page_min, g->page_max, g->cfg.head_dim, g->max_pages, g->group, last,
            g->ws.score, g->ws.cap_score);
    }
    pick_args p = pick_of(g);
    p.m = last;
    p.k = n_pick;
    p.n = n;
    if (n_pick > 0)
        return launch_after(pick_pages_kernel, g->cfg.n_heads, BLOCK_THREADS, 0, g->stream, p);
    pick_pages_kernel<<<g->cfg.n_heads, BLOCK_THREADS, 0, g->stream>>>(p);
    return cudaGetLastError();
}

cudaError_t launch_streaming(const adamas_gpu_cache *g, uint32_t n, uint32_t sink,
                             uint32_t budget)
{
    streaming_kernel<<<g->cfg.n_heads, BLOCK_THREADS, 0, g->stream>>>(g->ws.set, g->ws.cap_set, n,
                                                                       sink, budget);
    return cudaGetLastError();
}

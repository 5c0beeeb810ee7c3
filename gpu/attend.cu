/* attend.cu - softmax attention over the attended tokens, split into chunks.
 *
 * Each block takes one chunk of one query head's tokens and leaves a partial result
 * {m, s, o}: its largest logit, the sum of exp(logit - m), and the exp-weighted sum of
 * its values.  The last block of a head to finish combines the head's partials (as
 * attention.c does) into its output row; a head of one chunk writes its row directly.
 * Rows are read as 16-byte vectors by groups of L lanes (L = min(32, row bytes / 16)),
 * 32/L rows per warp at a time.
 *
 * Two kernels: the one-pass kernel (sparse sets; feature "online") loads each row's
 * key and value together and keeps a running softmax per warp; the two-pass kernel
 * (dense steps) computes the chunk's logits first, then reads the values. */
#include <math.h>

#include <type_traits>

#include "device.cuh"
#include "gpu.cuh"

#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)
#define ONLINE_THREADS 256
#define ONLINE_WARPS (ONLINE_THREADS / 32)
/* Sparse sets up to this many tokens per head take one block per head (one-pass). */
#define ONLINE_SINGLE 1024u
/* Longest chunk a block holds the logits of (with d = 1024, 36 KiB of shared memory,
 * under the 48 KiB a block gets without opting in). */
#define ATT_MAX_CHUNK 4096u
/* Chunks per head at most (the combine keeps their weights in shared memory). */
#define ATT_MAX_CHUNKS 4096u

struct attend_args {
    const void *keys, *values;
    const float *q;
    uint32_t d, max_tokens, group, lanes;
    const uint32_t *set; /* NULL: tokens 0..m-1 */
    uint32_t set_stride, m, chunk, n_chunks;
    float scale;
    float *partial;      /* [n_heads][n_chunks][d + 2] */
    uint32_t *arrivals;  /* [n_heads], 0 on entry and on exit */
    float *out;          /* [n_heads][d] */
    uint32_t *selected;  /* [n_heads][budget] or NULL */
    uint32_t budget;
};

/* The EPV elements of a 16-byte vector of a stored row, widened to f32. */
template <int DT> __device__ __forceinline__ void unpack(const uint4 &raw, float *f)
{
    if constexpr (DT == ADAMAS_F32) {
        f[0] = __uint_as_float(raw.x);
        f[1] = __uint_as_float(raw.y);
        f[2] = __uint_as_float(raw.z);
        f[3] = __uint_as_float(raw.w);
    } else {
        const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 pair;
            if constexpr (DT == ADAMAS_F16) {
                __half2 hv = *(const __half2 *)&w[i];
                pair = __half22float2(hv);
            } else {
                __nv_bfloat162 bv = *(const __nv_bfloat162 *)&w[i];
                pair = __bfloat1622float2(bv);
            }
            f[2 * i] = pair.x;
            f[2 * i + 1] = pair.y;
        }
    }
}

__device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int off = 16; off >= 1; off /= 2)
        x = fmaxf(x, __shfl_xor_sync(FULL_MASK, x, off));
    return x;
}

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int off = 16; off >= 1; off /= 2)
        x += __shfl_xor_sync(FULL_MASK, x, off);
    return x;
}

/* Where a lane's share of a chunk's rows lies.  Row i of the chunk is token set[i]
 * (or first + i); a warp reads groups of 32/L rows, L lanes per row, and this lane
 * reads vectors li, li + L, ... of the rows i0 + u*step + rg of each pass. */
struct row_lanes {
    const uint32_t *set;
    uint32_t first, count, step, rg, L, li;
    size_t row_vecs; /* 16-byte vectors per row */
};

/* The token of row i of the pass (0 past the chunk's end, where nothing is read). */
__device__ __forceinline__ uint32_t row_token(const row_lanes &w, uint32_t i)
{
    return i < w.count ? (w.set ? w.set[i] : w.first + i) : 0;
}

/* This lane's vector v of row i (token `token`) of rows, the keys or values of the
 * kv head; zeros past the chunk's end. */
__device__ __forceinline__ uint4 row_vector(const uint4 *rows, const row_lanes &w, uint32_t i,
                                            uint32_t token, int v)
{
    return i < w.count ? __ldg(rows + token * w.row_vecs + v * w.L + w.li) : make_uint4(0, 0, 0, 0);
}

/* This lane's VPL vectors of the U rows of the pass at i0. */
template <int U, int VPL>
__device__ __forceinline__ void load_rows(const uint4 *rows, const row_lanes &w, uint32_t i0,
                                          uint4 (&raw)[U][VPL])
{
#pragma unroll
    for (int u = 0; u < U; u++) {
        const uint32_t i = i0 + u * w.step + w.rg, token = row_token(w, i);
#pragma unroll
        for (int v = 0; v < VPL; v++)
            raw[u][v] = row_vector(rows, w, i, token, v);
    }
}

/* q . row: this lane's part, then summed over the row's L lanes. */
template <int DT, int VPL>
__device__ __forceinline__ float row_dot(const uint4 (&raw)[VPL], const float *q_s,
                                         const row_lanes &w)
{
    constexpr int EPV = 16 / dtype_bytes<DT>();
    float acc = 0.0f;
#pragma unroll
    for (int v = 0; v < VPL; v++) {
        float f[EPV];
        unpack<DT>(raw[v], f);
        const float *qv = q_s + (v * w.L + w.li) * EPV;
#pragma unroll
        for (int e = 0; e < EPV; e++)
            acc += qv[e] * f[e];
    }
    for (uint32_t off = w.L / 2; off >= 1; off /= 2)
        acc += __shfl_xor_sync(FULL_MASK, acc, off);
    return acc;
}

/* o += p * row, this lane's part of the row. */
template <int DT, int VPL, int EPV>
__device__ __forceinline__ void add_weighted(float (&o)[VPL][EPV], const uint4 (&raw)[VPL], float p)
{
#pragma unroll
    for (int v = 0; v < VPL; v++) {
        float f[EPV];
        unpack<DT>(raw[v], f);
#pragma unroll
        for (int e = 0; e < EPV; e++)
            o[v][e] += p * f[e];
    }
}

/* The sums o of the warp's row groups added together (lanes L apart), then written by
 * row group 0 to o_w, the warp's row of d floats in shared memory. */
template <int VPL, int EPV>
__device__ __forceinline__ void store_warp_sums(float (&o)[VPL][EPV], float *o_w, const row_lanes &w)
{
    for (uint32_t off = w.L; off < 32; off *= 2)
#pragma unroll
        for (int v = 0; v < VPL; v++)
#pragma unroll
            for (int e = 0; e < EPV; e++)
                o[v][e] += __shfl_xor_sync(FULL_MASK, o[v][e], off);
    if (w.rg == 0)
#pragma unroll
        for (int v = 0; v < VPL; v++)
#pragma unroll
            for (int e = 0; e < EPV; e++)
                o_w[(v * w.L + w.li) * EPV + e] = o[v][e];
}

/* The head's row of selected: the attended tokens, then UINT32_MAX. */
template <int THREADS> __device__ void write_selected(const attend_args &a, uint32_t h)
{
    if (!a.selected)
        return;
    const uint32_t *row = a.set ? a.set + (size_t)h * a.set_stride : nullptr;
    for (uint32_t i = threadIdx.x; i < a.budget; i += THREADS)
        a.selected[(size_t)h * a.budget + i] = i < a.m ? (row ? row[i] : i) : UINT32_MAX;
}

/* out[h] = sum_c w_c o_c / sum_c w_c s_c with w_c = exp(m_c - max_c m_c), over the
 * head's n_chunks partials (written by other blocks: read past L1), and the head's
 * row of selected.  w_s: [n_chunks] shared scratch. */
template <int THREADS> __device__ void combine_head(const attend_args &a, uint32_t h, float *w_s)
{
    constexpr int WARPS = THREADS / 32;
    __shared__ float s_red[WARPS];
    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, d = a.d;
    const size_t stride = d + 2;
    const float *p = a.partial + (size_t)h * a.n_chunks * stride;

    float mx = -INFINITY;
    for (uint32_t c = tid; c < a.n_chunks; c += THREADS)
        mx = fmaxf(mx, __ldcg(p + c * stride));
    mx = warp_max(mx);
    __syncthreads(); /* w_s and s_red are free */
    if (lane == 0)
        s_red[warp] = mx;
    __syncthreads();
    mx = s_red[0];
#pragma unroll
    for (int w = 1; w < WARPS; w++)
        mx = fmaxf(mx, s_red[w]);
    float sum = 0.0f;
    for (uint32_t c = tid; c < a.n_chunks; c += THREADS) {
        const float mc = __ldcg(p + c * stride);
        const float w = mc == mx ? 1.0f : expf(mc - mx);
        w_s[c] = w;
        sum += w * __ldcg(p + c * stride + 1);
    }
    sum = warp_sum(sum);
    __syncthreads();
    if (lane == 0)
        s_red[warp] = sum;
    __syncthreads();
    sum = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; w++)
        sum += s_red[w];

    for (uint32_t i = tid; i < d; i += THREADS) {
        float acc = 0.0f;
        for (uint32_t c = 0; c < a.n_chunks; c++)
            acc += w_s[c] * __ldcg(p + c * stride + 2 + i);
        a.out[(size_t)h * d + i] = acc / sum;
    }
    write_selected<THREADS>(a, h);
}

/* Counts this block's partial; true in the head's last block to do so, which then
 * combines them.  Every thread calls it after writing its part of the partial. */
__device__ bool last_of_head(const attend_args &a, uint32_t h)
{
    __shared__ uint32_t s_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
        s_last = atomicAdd(a.arrivals + h, 1u) == a.n_chunks - 1;
    __syncthreads();
    if (!s_last)
        return false;
    __threadfence();
    if (threadIdx.x == 0)
        a.arrivals[h] = 0; /* ready for the next step */
    return true;
}

/* Block (x: chunk, y: query head), one pass: each warp reads the key and the value of
 * its rows together and keeps a running softmax (its largest logit, the sum of
 * exp(logit - largest), the weighted values), rescaled as the largest grows; then the
 * warps' results are combined.  VPL: 16-byte vectors per lane and row. */
template <int DT, int VPL>
__global__ void __launch_bounds__(ONLINE_THREADS) attend_online_kernel(attend_args a)
{
    constexpr int EPV = 16 / dtype_bytes<DT>();
    constexpr int U = 8 / VPL; /* row groups in flight per warp */
    extern __shared__ float shm[];
    const uint32_t d = a.d;
    float *q_s = shm;     /* [d]                                          */
    float *o_s = q_s + d; /* [ONLINE_WARPS][d]; the combine's [n_chunks]  */
    __shared__ float s_m[ONLINE_WARPS], s_s[ONLINE_WARPS];

    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const uint32_t h = blockIdx.y, kv = h / a.group, first = blockIdx.x * a.chunk;
    const uint32_t count = a.m - first < a.chunk ? a.m - first : a.chunk;
    const uint32_t L = a.lanes, rows_per_pass = 32 / L;
    const size_t row_vecs = (size_t)d / EPV;
    const uint4 *keys = (const uint4 *)a.keys + (size_t)kv * a.max_tokens * row_vecs;
    const uint4 *values = (const uint4 *)a.values + (size_t)kv * a.max_tokens * row_vecs;

    /* the query is an input of the step, not of the kernel before this one */
    for (uint32_t i = tid; i < d; i += ONLINE_THREADS)
        q_s[i] = a.q[(size_t)h * d + i];
    wait_for_inputs();
    const row_lanes w = {a.set ? a.set + (size_t)h * a.set_stride + first : nullptr,
                         first, count, ONLINE_WARPS * rows_per_pass, lane / L, L, lane % L,
                         row_vecs};
    __syncthreads();

    float m_run = -INFINITY, s_run = 0.0f, o[VPL][EPV];
#pragma unroll
    for (int v = 0; v < VPL; v++)
#pragma unroll
        for (int e = 0; e < EPV; e++)
            o[v][e] = 0.0f;
    for (uint32_t i0 = warp * rows_per_pass; i0 < count; i0 += w.step * U) {
        /* each vector of a key read beside the value's: all keys first, then all values
         * (load_rows twice) made this kernel 35% slower on the H200 (32K, B = 128) */
        uint4 kr[U][VPL], vr[U][VPL];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t i = i0 + u * w.step + w.rg, token = row_token(w, i);
#pragma unroll
            for (int v = 0; v < VPL; v++) {
                kr[u][v] = row_vector(keys, w, i, token, v);
                vr[u][v] = row_vector(values, w, i, token, v);
            }
        }
        float l[U], top = -INFINITY;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float acc = row_dot<DT>(kr[u], q_s, w);
            l[u] = i0 + u * w.step + w.rg < count ? acc * a.scale : -INFINITY;
            top = fmaxf(top, l[u]);
        }
        for (uint32_t off = L; off < 32; off *= 2)
            top = fmaxf(top, __shfl_xor_sync(FULL_MASK, top, off));
        /* row i0 of the warp is valid, so top is finite */
        const float m_new = fmaxf(m_run, top), alpha = expf(m_run - m_new);
        s_run *= alpha;
#pragma unroll
        for (int v = 0; v < VPL; v++)
#pragma unroll
            for (int e = 0; e < EPV; e++)
                o[v][e] *= alpha;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float p = expf(l[u] - m_new);
            s_run += p;
            add_weighted<DT>(o, vr[u], p);
        }
        m_run = m_new;
    }
    /* the warp's row groups share m_run: add their sums */
    for (uint32_t off = L; off < 32; off *= 2)
        s_run += __shfl_xor_sync(FULL_MASK, s_run, off);
    store_warp_sums(o, o_s + warp * d, w);
    if (lane == 0) {
        s_m[warp] = m_run;
        s_s[warp] = s_run;
    }
    __syncthreads();

    /* the block's result: warps weighted by exp(their largest - the block's largest) */
    float mx = s_m[0], weight[ONLINE_WARPS], sum = 0.0f;
#pragma unroll
    for (int w = 1; w < ONLINE_WARPS; w++)
        mx = fmaxf(mx, s_m[w]);
#pragma unroll
    for (int w = 0; w < ONLINE_WARPS; w++) {
        weight[w] = expf(s_m[w] - mx); /* 0 for a warp without rows */
        sum += weight[w] * s_s[w];
    }
    if (a.n_chunks == 1) {
        for (uint32_t i = tid; i < d; i += ONLINE_THREADS) {
            float acc = 0.0f;
#pragma unroll
            for (int w = 0; w < ONLINE_WARPS; w++)
                acc += weight[w] * o_s[w * d + i];
            a.out[(size_t)h * d + i] = acc / sum;
        }
        write_selected<ONLINE_THREADS>(a, h);
        return;
    }
    float *part = a.partial + ((size_t)h * a.n_chunks + blockIdx.x) * (d + 2);
    for (uint32_t i = tid; i < d; i += ONLINE_THREADS) {
        float acc = 0.0f;
#pragma unroll
        for (int w = 0; w < ONLINE_WARPS; w++)
            acc += weight[w] * o_s[w * d + i];
        part[2 + i] = acc;
    }
    if (tid == 0) {
        part[0] = mx;
        part[1] = sum;
    }
    if (last_of_head(a, h))
        combine_head<ONLINE_THREADS>(a, h, o_s);
}

/* Block (x: chunk, y: query head).  VPL: 16-byte vectors per lane and row. */
template <int DT, int VPL>
__global__ void __launch_bounds__(ATT_THREADS) attend_kernel(attend_args a)
{
    constexpr int EPV = 16 / dtype_bytes<DT>();
    constexpr int U = VPL >= 4 ? 1 : 4 / VPL; /* row groups in flight per warp */
    extern __shared__ float shm[];
    const uint32_t d = a.d;
    float *q_s = shm;                   /* [d]                               */
    float *p_s = q_s + d;               /* [chunk]; the combine's [n_chunks] */
    float *o_s = p_s + a.chunk;         /* [ATT_WARPS][d]                    */
    __shared__ float s_red[ATT_WARPS];

    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const uint32_t h = blockIdx.y, kv = h / a.group, first = blockIdx.x * a.chunk;
    const uint32_t count = a.m - first < a.chunk ? a.m - first : a.chunk;
    const uint32_t L = a.lanes, rows_per_pass = 32 / L;
    const size_t row_vecs = (size_t)d / EPV;
    const row_lanes w = {a.set ? a.set + (size_t)h * a.set_stride + first : nullptr,
                         first, count, ATT_WARPS * rows_per_pass, lane / L, L, lane % L,
                         row_vecs};
    const uint4 *keys = (const uint4 *)a.keys + (size_t)kv * a.max_tokens * row_vecs;
    const uint4 *values = (const uint4 *)a.values + (size_t)kv * a.max_tokens * row_vecs;

    for (uint32_t i = tid; i < d; i += ATT_THREADS)
        q_s[i] = a.q[(size_t)h * d + i];
    wait_for_inputs();
    __syncthreads();

    /* logits */
    for (uint32_t i0 = warp * rows_per_pass; i0 < count; i0 += w.step * U) {
        uint4 raw[U][VPL];
        load_rows(keys, w, i0, raw);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t i = i0 + u * w.step + w.rg;
            const float acc = row_dot<DT>(raw[u], q_s, w);
            if (i < count && w.li == 0)
                p_s[i] = acc * a.scale;
        }
    }
    __syncthreads();

    /* softmax over the chunk */
    float mx = -INFINITY;
    for (uint32_t i = tid; i < count; i += ATT_THREADS)
        mx = fmaxf(mx, p_s[i]);
    mx = warp_max(mx);
    if (lane == 0)
        s_red[warp] = mx;
    __syncthreads();
    mx = s_red[0];
#pragma unroll
    for (int w = 1; w < ATT_WARPS; w++)
        mx = fmaxf(mx, s_red[w]);
    float sum = 0.0f;
    for (uint32_t i = tid; i < count; i += ATT_THREADS) {
        const float p = expf(p_s[i] - mx);
        p_s[i] = p;
        sum += p;
    }
    sum = warp_sum(sum);
    __syncthreads(); /* every thread has read s_red */
    if (lane == 0)
        s_red[warp] = sum;
    __syncthreads();

    /* weighted values */
    float o[VPL][EPV];
#pragma unroll
    for (int v = 0; v < VPL; v++)
#pragma unroll
        for (int e = 0; e < EPV; e++)
            o[v][e] = 0.0f;
    for (uint32_t i0 = warp * rows_per_pass; i0 < count; i0 += w.step * U) {
        uint4 raw[U][VPL];
        load_rows(values, w, i0, raw);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t i = i0 + u * w.step + w.rg;
            add_weighted<DT>(o, raw[u], i < count ? p_s[i] : 0.0f);
        }
    }
    store_warp_sums(o, o_s + warp * d, w);
    __syncthreads();

    float *part = a.partial + ((size_t)h * a.n_chunks + blockIdx.x) * (d + 2);
    for (uint32_t i = tid; i < d; i += ATT_THREADS) {
        float acc = 0.0f;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; w++)
            acc += o_s[w * d + i];
        part[2 + i] = acc;
    }
    if (tid == 0) {
        float total = 0.0f;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; w++)
            total += s_red[w];
        part[0] = mx;
        part[1] = total;
    }

    if (last_of_head(a, h))
        combine_head<ATT_THREADS>(a, h, p_s);
}

/* The one-pass kernel serves sparse sets: on dense steps, where every multiprocessor
 * has many chunks, the two-pass kernel (fewer registers, more blocks resident)
 * streams faster. */
static int one_pass(int dense)
{
    return !dense && features()->online;
}

/* Tokens per chunk.  Two-pass: the sparse chunk, or the dense one grown so that a
 * head has at most ATT_MAX_CHUNKS chunks.  One-pass: a set of up to ONLINE_SINGLE
 * tokens whole, else the dense chunks. */
static uint32_t chunk_tokens(uint32_t m, int dense)
{
    const int online = one_pass(dense);
    if (!dense && (!online || m <= ONLINE_SINGLE))
        return online ? m : ATTEND_CHUNK_SPARSE;
    uint32_t c = (m + ATT_MAX_CHUNKS - 1) / ATT_MAX_CHUNKS;
    c = (c + 31) / 32 * 32;
    return c > ATTEND_CHUNK_DENSE ? c : ATTEND_CHUNK_DENSE;
}

uint32_t attend_chunks(uint32_t m, int dense)
{
    const uint32_t c = chunk_tokens(m, dense);
    return (m + c - 1) / c;
}

cudaError_t launch_attend(const adamas_gpu_cache *g, const float *q, const uint32_t *set,
                          uint32_t m, float *out, uint32_t *selected, uint32_t budget,
                          int after)
{
    const int dense = set == nullptr, online = one_pass(dense);
    attend_args a;
    a.keys = g->keys;
    a.values = g->values;
    a.q = q;
    a.d = g->cfg.head_dim;
    a.max_tokens = g->cfg.max_tokens;
    a.group = g->group;
    const uint32_t row_vecs = a.d * g->elem / 16;
    a.lanes = row_vecs < 32 ? row_vecs : 32;
    const uint32_t vpl = row_vecs / a.lanes;
    a.set = set;
    a.set_stride = g->ws.cap_set;
    a.m = m;
    a.chunk = chunk_tokens(m, dense);
    a.n_chunks = (m + a.chunk - 1) / a.chunk;
    a.scale = g->attn_scale;
    a.partial = g->ws.partial;
    a.arrivals = g->ws.arrivals;
    a.out = out;
    a.selected = selected;
    a.budget = budget;
    if ((!online && a.chunk > ATT_MAX_CHUNK) || a.n_chunks > ATT_MAX_CHUNKS)
        return cudaErrorInvalidValue;

    const dim3 grid(a.n_chunks, g->cfg.n_heads);
    size_t work = online ? (size_t)ONLINE_WARPS * a.d : (size_t)a.chunk + ATT_WARPS * a.d;
    work = work > a.n_chunks ? work : a.n_chunks;
    const size_t shared = (a.d + work) * sizeof(float);
    const dim3 threads(online ? ONLINE_THREADS : ATT_THREADS);
    /* the kernel that follows the selection may start while the selection ends; the
     * first kernel of a step (a dense one) starts after the step before it */
    auto go = [&](auto kernel) {
        return after ? launch_after(kernel, grid, threads, shared, g->stream, a)
                     : (kernel<<<grid, threads, shared, g->stream>>>(a), cudaGetLastError());
    };
    auto with_vpl = [&](auto dt) {
        constexpr int DT = decltype(dt)::value;
        if (online)
            switch (vpl) {
            case 1: return go(attend_online_kernel<DT, 1>);
            case 2: return go(attend_online_kernel<DT, 2>);
            case 4: return go(attend_online_kernel<DT, 4>);
            default: return go(attend_online_kernel<DT, 8>);
            }
        switch (vpl) {
        case 1: return go(attend_kernel<DT, 1>);
        case 2: return go(attend_kernel<DT, 2>);
        case 4: return go(attend_kernel<DT, 4>);
        default: return go(attend_kernel<DT, 8>);
        }
    };
    switch (g->cfg.kv_dtype) {
    case ADAMAS_F16: return with_vpl(std::integral_constant<int, ADAMAS_F16>());
    case ADAMAS_BF16: return with_vpl(std::integral_constant<int, ADAMAS_BF16>());
    default: return with_vpl(std::integral_constant<int, ADAMAS_F32>());
    }
}

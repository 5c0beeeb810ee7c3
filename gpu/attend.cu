/* attend.cu - softmax attention over the attended tokens, split into chunks.
 *
 * Each block takes one chunk of one query head's tokens and leaves a partial result
 * {m, s, o}: its largest logit, the sum of exp(logit - m), and the exp-weighted sum of
 * its values.  The last block of a head to finish combines the head's partials (as
 * attention.c does) into its output row.
 * Rows are read as 16-byte vectors by groups of L lanes (L = min(32, row bytes / 16)),
 * 32/L rows per warp at a time. */
#include <math.h>

#include "device.cuh"
#include "gpu.cuh"

#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)
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

/* out[h] = sum_c w_c o_c / sum_c w_c s_c with w_c = exp(m_c - max_c m_c), over the
 * head's n_chunks partials (written by other blocks: read past L1), and the head's
 * row of selected.  w_s: [n_chunks] shared scratch. */
__device__ void combine_head(const attend_args &a, uint32_t h, float *w_s)
{
    __shared__ float s_red[ATT_WARPS];
    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, d = a.d;
    const size_t stride = d + 2;
    const float *p = a.partial + (size_t)h * a.n_chunks * stride;

    float mx = -INFINITY;
    for (uint32_t c = tid; c < a.n_chunks; c += ATT_THREADS)
        mx = fmaxf(mx, __ldcg(p + c * stride));
    mx = warp_max(mx);
    __syncthreads(); /* w_s and s_red are free */
    if (lane == 0)
        s_red[warp] = mx;
    __syncthreads();
    mx = s_red[0];
#pragma unroll
    for (int w = 1; w < ATT_WARPS; w++)
        mx = fmaxf(mx, s_red[w]);
    float sum = 0.0f;
    for (uint32_t c = tid; c < a.n_chunks; c += ATT_THREADS) {
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
    for (int w = 0; w < ATT_WARPS; w++)
        sum += s_red[w];

    for (uint32_t i = tid; i < d; i += ATT_THREADS) {
        float acc = 0.0f;
        for (uint32_t c = 0; c < a.n_chunks; c++)
            acc += w_s[c] * __ldcg(p + c * stride + 2 + i);
        a.out[(size_t)h * d + i] = acc / sum;
    }
    if (a.selected) {
        const uint32_t *row = a.set ? a.set + (size_t)h * a.set_stride : nullptr;
        for (uint32_t i = tid; i < a.budget; i += ATT_THREADS)
            a.selected[(size_t)h * a.budget + i] = i < a.m ? (row ? row[i] : i) : UINT32_MAX;
    }
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
    const uint32_t L = a.lanes, rows_per_pass = 32 / L, rg = lane / L, li = lane % L;
    const uint32_t step = ATT_WARPS * rows_per_pass;
    const size_t row_vecs = (size_t)d / EPV;
    const uint32_t *set = a.set ? a.set + (size_t)h * a.set_stride + first : nullptr;
    const uint4 *keys = (const uint4 *)a.keys + (size_t)kv * a.max_tokens * row_vecs;
    const uint4 *values = (const uint4 *)a.values + (size_t)kv * a.max_tokens * row_vecs;

    for (uint32_t i = tid; i < d; i += ATT_THREADS)
        q_s[i] = a.q[(size_t)h * d + i];
    __syncthreads();

    /* logits */
    for (uint32_t i0 = warp * rows_per_pass; i0 < count; i0 += step * U) {
        uint4 raw[U][VPL];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t i = i0 + u * step + rg;
            const uint32_t token = i < count ? (set ? set[i] : first + i) : 0;
#pragma unroll
            for (int v = 0; v < VPL; v++)
                raw[u][v] = i < count ? __ldg(keys + token * row_vecs + v * L + li)
                                      : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t i = i0 + u * step + rg;
            float acc = 0.0f;
#pragma unroll
            for (int v = 0; v < VPL; v++) {
                float f[EPV];
                unpack<DT>(raw[u][v], f);
                const float *qv = q_s + (v * L + li) * EPV;
#pragma unroll
                for (int e = 0; e < EPV; e++)
                    acc += qv[e] * f[e];
            }
            for (uint32_t off = L / 2; off >= 1; off /= 2)
                acc += __shfl_xor_sync(FULL_MASK, acc, off);
            if (i < count && li == 0)
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
    for (uint32_t i0 = warp * rows_per_pass; i0 < count; i0 += step * U) {
        uint4 raw[U][VPL];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t i = i0 + u * step + rg;
            const uint32_t token = i < count ? (set ? set[i] : first + i) : 0;
#pragma unroll
            for (int v = 0; v < VPL; v++)
                raw[u][v] = i < count ? __ldg(values + token * row_vecs + v * L + li)
                                      : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t i = i0 + u * step + rg;
            const float p = i < count ? p_s[i] : 0.0f;
#pragma unroll
            for (int v = 0; v < VPL; v++) {
                float f[EPV];
                unpack<DT>(raw[u][v], f);
#pragma unroll
                for (int e = 0; e < EPV; e++)
                    o[v][e] += p * f[e];
            }
        }
    }
    for (uint32_t off = L; off < 32; off *= 2)
#pragma unroll
        for (int v = 0; v < VPL; v++)
#pragma unroll
            for (int e = 0; e < EPV; e++)
                o[v][e] += __shfl_xor_sync(FULL_MASK, o[v][e], off);
    if (rg == 0)
#pragma unroll
        for (int v = 0; v < VPL; v++)
#pragma unroll
            for (int e = 0; e < EPV; e++)
                o_s[warp * d + (v * L + li) * EPV + e] = o[v][e];
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

    /* the head's last block to finish combines its partials */
    __shared__ uint32_t s_last;
    __threadfence();
    __syncthreads();
    if (tid == 0)
        s_last = atomicAdd(a.arrivals + h, 1u) == a.n_chunks - 1;
    __syncthreads();
    if (!s_last)
        return;
    __threadfence();
    if (tid == 0)
        a.arrivals[h] = 0; /* ready for the next step */
    combine_head(a, h, p_s);
}

/* Tokens per chunk: the sparse chunk, or the dense one grown so that a head has at
 * most ATT_MAX_CHUNKS chunks. */
static uint32_t chunk_tokens(uint32_t m, int dense)
{
    if (!dense)
        return ATTEND_CHUNK_SPARSE;
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
                          uint32_t m, float *out, uint32_t *selected, uint32_t budget)
{
    const int dense = set == nullptr;
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
    if (a.chunk > ATT_MAX_CHUNK || a.n_chunks > ATT_MAX_CHUNKS)
        return cudaErrorInvalidValue;

    const dim3 grid(a.n_chunks, g->cfg.n_heads);
    const size_t work = (size_t)a.chunk + ATT_WARPS * a.d;
    const size_t shared = (a.d + (work > a.n_chunks ? work : a.n_chunks)) * sizeof(float);
#define ATTEND_VPL(DT)                                                                        \
    do {                                                                                      \
        switch (vpl) {                                                                        \
        case 1: attend_kernel<DT, 1><<<grid, ATT_THREADS, shared, g->stream>>>(a); break;     \
        case 2: attend_kernel<DT, 2><<<grid, ATT_THREADS, shared, g->stream>>>(a); break;     \
        case 4: attend_kernel<DT, 4><<<grid, ATT_THREADS, shared, g->stream>>>(a); break;     \
        default: attend_kernel<DT, 8><<<grid, ATT_THREADS, shared, g->stream>>>(a); break;    \
        }                                                                                     \
    } while (0)
    switch (g->cfg.kv_dtype) {
    case ADAMAS_F16: ATTEND_VPL(ADAMAS_F16); break;
    case ADAMAS_BF16: ATTEND_VPL(ADAMAS_BF16); break;
    default: ATTEND_VPL(ADAMAS_F32); break;
    }
#undef ATTEND_VPL
    return cudaGetLastError();
}

/* device.cuh - device helpers shared by the kernels: the Hadamard transform and the
 * 2-bit encoding of one vector by one warp, the fixed-order dot products that rank
 * tokens, code distances, and block-wide scans and top-k.
 *
 * Bit-exactness (DESIGN §2, kernels.h): every f32 operation that feeds a code, a
 * distance or a ranking is written with an explicit rounding intrinsic (__fadd_rn,
 * __fmul_rn, ...), which the compiler never contracts into an FMA, and the module is
 * built with -fmad=false besides. */
#ifndef ADAMAS_GPU_DEVICE_CUH
#define ADAMAS_GPU_DEVICE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "adamas.h"

#define FULL_MASK 0xffffffffu

/* Threads of the blocks that use the block-wide helpers below. */
#define BLOCK_THREADS 256
#define BLOCK_WARPS (BLOCK_THREADS / 32)

/* ------------------------------------------------------------ launch order */

/* Programmatic dependent launch (sm_90): a kernel launched with it may start while
 * the kernel before it still runs; it waits here, before reading that kernel's
 * results or writing anything, until that kernel has finished and its writes are
 * visible.  A no-op for a kernel launched plainly. */
__device__ __forceinline__ void wait_for_inputs()
{
    asm volatile("griddepcontrol.wait;" ::: "memory");
}

/* Lets the kernel launched after this one (with the attribute) be scheduled now. */
__device__ __forceinline__ void allow_dependents()
{
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

/* ------------------------------------------------------------ one vector */

/* Elements of a d-vector held by one lane: element r*32 + lane in x[r] (d >= 32), or
 * element lane % d in x[0] for d = 16 (lanes 16..31 then hold copies). */
template <int D> struct lanes_of {
    static constexpr int R = D >= 32 ? D / 32 : 1;     /* elements per lane           */
    static constexpr int W = 2 * ((D + 63) / 64);      /* uint64 words of one code    */
};

template <int D> __device__ __forceinline__ uint32_t elem_index(int r, uint32_t lane)
{
    return D >= 32 ? (uint32_t)r * 32 + lane : lane & (D - 1);
}

/* Hadamard transform of the warp's vector, Sylvester order: stages h = 1, 2, ..., D/2
 * (h < 32 across lanes, h >= 32 across registers of one lane), then the scaling. */
template <int D>
__device__ __forceinline__ void warp_hadamard(float (&x)[lanes_of<D>::R], uint32_t lane, float scale)
{
    constexpr int R = lanes_of<D>::R;
#pragma unroll
    for (int h = 1; h < 32 && h < D; h *= 2) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            float other = __shfl_xor_sync(FULL_MASK, x[r], h);
            /* the lower element of a pair keeps a + b, the upper one a - b */
            x[r] = (lane & h) ? __fsub_rn(other, x[r]) : __fadd_rn(x[r], other);
        }
    }
#pragma unroll
    for (int hr = 1; hr < R; hr *= 2) {
#pragma unroll
        for (int r = 0; r < R; r++)
            if (!(r & hr)) {
                float a = x[r], b = x[r + hr];
                x[r] = __fadd_rn(a, b);
                x[r + hr] = __fsub_rn(a, b);
            }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
        x[r] = __fmul_rn(x[r], scale);
}

/* Fold of 16 lane sums held by lanes l and l + 16k of a half-warp (width 16): lane 0
 * of each half ends with acc[0] after acc[l] += acc[l+8], += acc[l+4], += acc[l+2],
 * += acc[l+1].  Every lane of the warp must call it. */
__device__ __forceinline__ float fold16(float acc)
{
    acc = __fadd_rn(acc, __shfl_down_sync(FULL_MASK, acc, 8, 16));
    acc = __fadd_rn(acc, __shfl_down_sync(FULL_MASK, acc, 4, 16));
    acc = __fadd_rn(acc, __shfl_down_sync(FULL_MASK, acc, 2, 16));
    acc = __fadd_rn(acc, __shfl_down_sync(FULL_MASK, acc, 1, 16));
    return acc;
}

/* x . x of the warp's vector in the fixed summation order (kernels.h), returned to
 * every lane.  Lane l < 16 holds lane sum l: element 16b + l is x[b/2] of lane
 * l + 16*(b%2), and blocks b are added in ascending order. */
template <int D>
__device__ __forceinline__ float warp_self_dot(const float (&x)[lanes_of<D>::R], uint32_t lane)
{
    constexpr int R = lanes_of<D>::R;
    float acc = 0.0f;
#pragma unroll
    for (int r = 0; r < R; r++) {
        float p = __fmul_rn(x[r], x[r]);
        float upper = __shfl_down_sync(FULL_MASK, p, 16);
        acc = __fadd_rn(acc, p);
        if (D >= 32)
            acc = __fadd_rn(acc, upper);
    }
    acc = fold16(acc);
    return __shfl_sync(FULL_MASK, acc, 0);
}

/* Planar 2-bit code of the warp's vector with thresholds th, written to code[W] by
 * lanes 0..W-1: for dimension i, word 2*(i/64) holds the low bit and word 2*(i/64)+1
 * the high bit at bit i%64. */
template <int D>
__device__ __forceinline__ void warp_encode(const float (&x)[lanes_of<D>::R], float t0, float t1,
                                            float t2, uint32_t lane, uint64_t *code)
{
    constexpr int R = lanes_of<D>::R;
    uint32_t lo[R], hi[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        uint32_t c = (uint32_t)(x[r] > t0) + (uint32_t)(x[r] > t1) + (uint32_t)(x[r] > t2);
        lo[r] = __ballot_sync(FULL_MASK, c & 1);
        hi[r] = __ballot_sync(FULL_MASK, c >> 1);
    }
    if (D >= 64) {
#pragma unroll
        for (int g = 0; g < D / 64; g++) {
            if (lane == 2 * (uint32_t)g)
                code[2 * g] = (uint64_t)lo[2 * g] | (uint64_t)lo[(2 * g + 1) % R] << 32;
            if (lane == 2 * (uint32_t)g + 1)
                code[2 * g + 1] = (uint64_t)hi[2 * g] | (uint64_t)hi[(2 * g + 1) % R] << 32;
        }
    } else {
        const uint32_t used = D >= 32 ? FULL_MASK : (1u << D) - 1;
        if (lane == 0)
            code[0] = lo[0] & used;
        if (lane == 1)
            code[1] = hi[0] & used;
    }
}

/* ------------------------------------------------------------ stored rows */

/* Element i of a stored row of dtype DT, widened to f32 (exact). */
template <int DT> __device__ __forceinline__ float row_elem(const void *row, uint32_t i)
{
    if constexpr (DT == ADAMAS_F16)
        return __half2float(((const __half *)row)[i]);
    else if constexpr (DT == ADAMAS_BF16)
        return __bfloat162float(((const __nv_bfloat16 *)row)[i]);
    else
        return ((const float *)row)[i];
}

/* f32 rounded to the storage dtype (round to nearest even), as raw bits for 16-bit
 * dtypes. */
template <int DT> __device__ __forceinline__ void store_elem(void *row, uint32_t i, float x)
{
    if constexpr (DT == ADAMAS_F16)
        ((__half *)row)[i] = __float2half_rn(x);
    else if constexpr (DT == ADAMAS_BF16)
        ((__nv_bfloat16 *)row)[i] = __float2bfloat16_rn(x);
    else
        ((float *)row)[i] = x;
}

template <int DT> __host__ __device__ constexpr uint32_t dtype_bytes()
{
    return DT == ADAMAS_F32 ? 4 : 2;
}

/* q . row in the fixed summation order, by a half-warp: lane l16 = lane % 16 sums the
 * products of elements l16, l16 + 16, ... in ascending order, then fold16.  The result
 * is in lane 0 of the half.  Every lane of the warp must call it; a lane without a row
 * passes row = NULL. */
template <int DT>
__device__ __forceinline__ float half_warp_dot(const float *q, const void *row, uint32_t d,
                                               uint32_t l16)
{
    float acc = 0.0f;
    if (row)
        for (uint32_t i = l16; i < d; i += 16)
            acc = __fadd_rn(acc, __fmul_rn(q[i], row_elem<DT>(row, i)));
    return fold16(acc);
}

/* Quest bound sum_i max(q_i*lo_i, q_i*hi_i) in the same order. */
__device__ __forceinline__ float half_warp_page_score(const float *q, const float *lo,
                                                      const float *hi, uint32_t d, uint32_t l16)
{
    float acc = 0.0f;
    if (lo)
        for (uint32_t i = l16; i < d; i += 16) {
            float a = __fmul_rn(q[i], lo[i]), b = __fmul_rn(q[i], hi[i]);
            acc = __fadd_rn(acc, a > b ? a : b);
        }
    return fold16(acc);
}

/* ------------------------------------------------------------ code distances */

/* Distance contribution of one 64-dimension group: planes lo, hi of both sides. */
template <int METRIC>
__device__ __forceinline__ uint32_t group_distance(uint64_t alo, uint64_t ahi, uint64_t blo,
                                                   uint64_t bhi)
{
    if (METRIC == ADAMAS_METRIC_L1)
        return __popcll((ahi | alo) ^ (bhi | blo)) + __popcll(ahi ^ bhi) +
               __popcll((ahi & alo) ^ (bhi & blo));
    return __popcll(alo ^ blo) + 2 * __popcll(ahi ^ bhi);
}

/* ------------------------------------------------------------ ordering keys */

/* Unsigned key with the order of f32 values (-0 and +0 equal, as C compares them). */
__device__ __forceinline__ uint32_t order_key(float x)
{
    uint32_t u = __float_as_uint(__fadd_rn(x, 0.0f)); /* -0 + 0 = +0 */
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* ------------------------------------------------------------ block-wide helpers */

/* Exclusive prefix sum of v over the block (BLOCK_THREADS threads, all calling);
 * *total receives the block's sum.  s_warp: [BLOCK_WARPS + 1] shared scratch. */
__device__ __forceinline__ uint32_t block_exclusive_scan(uint32_t v, uint32_t *total,
                                                         uint32_t *s_warp)
{
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint32_t x = v;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
        uint32_t y = __shfl_up_sync(FULL_MASK, x, off);
        if (lane >= (uint32_t)off)
            x += y;
    }
    __syncthreads(); /* s_warp may still be read by a previous call */
    if (lane == 31)
        s_warp[warp] = x;
    __syncthreads();
    if (warp == 0) {
        uint32_t w = lane < BLOCK_WARPS ? s_warp[lane] : 0;
#pragma unroll
        for (int off = 1; off < BLOCK_WARPS; off *= 2) {
            uint32_t y = __shfl_up_sync(FULL_MASK, w, off);
            if (lane >= (uint32_t)off)
                w += y;
        }
        if (lane < BLOCK_WARPS)
            s_warp[lane] = w; /* inclusive */
        if (lane == BLOCK_WARPS - 1)
            s_warp[BLOCK_WARPS] = w;
    }
    __syncthreads();
    *total = s_warp[BLOCK_WARPS];
    return x - v + (warp ? s_warp[warp - 1] : 0);
}

/* Sum of v over the block, returned to every thread.  s_warp: [BLOCK_WARPS + 1]. */
__device__ __forceinline__ uint32_t block_sum(uint32_t v, uint32_t *s_warp)
{
    uint32_t total;
    block_exclusive_scan(v, &total, s_warp);
    return total;
}

/* Block-wide selection of the k largest of m keys (1 <= k <= m), ties to the larger
 * position, by a radix select over the 32-bit keys.  key(j) gives the key of position
 * j; emit(slot, j) is called once for each chosen position j, slot its rank in
 * ascending position order (0..k-1).  Every thread of the block must call it. */
struct topk_scratch {
    uint32_t hist[256];
    uint32_t warp[BLOCK_WARPS + 1];
    uint32_t prefix, krem, eq_count;
};

template <class Key, class Emit>
__device__ void block_topk_largest(uint32_t m, uint32_t k, Key key, Emit emit, topk_scratch *s)
{
    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    uint32_t prefix = 0, mask = 0, krem = k, eq_count = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (uint32_t b = tid; b < 256; b += BLOCK_THREADS)
            s->hist[b] = 0;
        __syncthreads();
        for (uint32_t j = tid; j < m; j += BLOCK_THREADS) {
            uint32_t u = key(j);
            if ((u & mask) == prefix)
                atomicAdd(&s->hist[(u >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (warp == 0) {
            /* lane i covers digits 255-8i down to 248-8i */
            uint32_t sum = 0;
#pragma unroll
            for (int e = 0; e < 8; e++)
                sum += s->hist[255 - 8 * lane - e];
            uint32_t incl = sum;
#pragma unroll
            for (int off = 1; off < 32; off *= 2) {
                uint32_t y = __shfl_up_sync(FULL_MASK, incl, off);
                if (lane >= (uint32_t)off)
                    incl += y;
            }
            uint32_t above = incl - sum; /* keys in digits above this lane's range */
            uint32_t hit = __ballot_sync(FULL_MASK, incl >= krem);
            uint32_t first = __ffs(hit) - 1;
            if (lane == first) {
                uint32_t digit = 255 - 8 * lane;
                for (int e = 0; e < 8; e++, digit--) {
                    uint32_t c = s->hist[digit];
                    if (above + c >= krem) {
                        s->prefix = prefix | digit << shift;
                        s->krem = krem - above;
                        s->eq_count = c;
                        break;
                    }
                    above += c;
                }
            }
        }
        __syncthreads();
        prefix = s->prefix;
        krem = s->krem;
        eq_count = s->eq_count;
        mask |= 255u << shift;
    }
    /* prefix is the k-th largest key: take every larger key, and the last krem of the
     * eq_count positions equal to it. */
    const uint32_t threshold = prefix, eq_skip = eq_count - krem;
    uint32_t gt_base = 0, eq_base = 0;
    for (uint32_t base = 0; base < m; base += BLOCK_THREADS) {
        uint32_t j = base + tid;
        uint32_t u = j < m ? key(j) : 0;
        uint32_t gt = j < m && u > threshold, eq = j < m && u == threshold;
        uint32_t total;
        uint32_t before = block_exclusive_scan(eq << 16 | gt, &total, s->warp);
        uint32_t gt_before = gt_base + (before & 0xffffu), eq_before = eq_base + (before >> 16);
        uint32_t eq_taken = eq_before > eq_skip ? eq_before - eq_skip : 0;
        if (gt || (eq && eq_before >= eq_skip))
            emit(gt_before + eq_taken, j);
        gt_base += total & 0xffffu;
        eq_base += total >> 16;
    }
}

#endif

/* encode.cu - appending to the device cache: stored rows rounded to the storage dtype,
 * key codes (Hadamard + 2-bit encode, one warp per key), Quest page bounds, and the
 * re-encoding of calibration. */
#include <type_traits>

#include "device.cuh"
#include "gpu.cuh"

#define ROWS_PER_BLOCK 8 /* one warp per row */

/* One stored key or value row: what a kernel needs to address it. */
struct row_store {
    void *keys, *values;
    uint64_t *codes;
    const float *th;         /* [n_kv][3] */
    uint32_t n_kv, max_tokens;
    float scale;
    int rotate;
};

template <int D, int DT>
__global__ void __launch_bounds__(ROWS_PER_BLOCK * 32)
append_kernel(row_store c, const float *k, const float *v, uint32_t first, uint32_t count)
{
    constexpr int R = lanes_of<D>::R, W = lanes_of<D>::W;
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= count * c.n_kv)
        return; /* the whole warp */
    const uint32_t t = row / c.n_kv, kv = row % c.n_kv;
    const size_t dst = ((size_t)kv * c.max_tokens + first + t) * D;
    const float *krow = k + (size_t)row * D, *vrow = v + (size_t)row * D;
    float x[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const uint32_t i = elem_index<D>(r, lane);
        x[r] = krow[i];
        if (D >= 32 || lane < (uint32_t)D) {
            store_elem<DT>((char *)c.keys + dst * dtype_bytes<DT>(), i, x[r]);
            store_elem<DT>((char *)c.values + dst * dtype_bytes<DT>(), i, vrow[i]);
        }
    }
    /* codes from the keys as given, before rounding */
    if (c.rotate)
        warp_hadamard<D>(x, lane, c.scale);
    const float *th = c.th + 3 * kv;
    warp_encode<D>(x, th[0], th[1], th[2], lane,
                   c.codes + ((size_t)kv * c.max_tokens + first + t) * W);
}

template <int D, int DT>
__global__ void __launch_bounds__(ROWS_PER_BLOCK * 32) recode_kernel(row_store c, uint32_t len)
{
    constexpr int R = lanes_of<D>::R, W = lanes_of<D>::W;
    const uint32_t lane = threadIdx.x & 31;
    const uint64_t row = (uint64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= (uint64_t)len * c.n_kv)
        return;
    const uint32_t kv = (uint32_t)(row / len), t = (uint32_t)(row % len);
    const size_t at = (size_t)kv * c.max_tokens + t;
    const void *stored = (const char *)c.keys + at * D * dtype_bytes<DT>();
    float x[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        x[r] = row_elem<DT>(stored, elem_index<D>(r, lane));
    if (c.rotate)
        warp_hadamard<D>(x, lane, c.scale);
    const float *th = c.th + 3 * kv;
    warp_encode<D>(x, th[0], th[1], th[2], lane, c.codes + at * W);
}

/* One thread per (kv head, page, dimension): min and max over the page's stored keys
 * in token order, with the comparisons of the CPU's incremental update. */
template <int DT>
__global__ void page_bounds_kernel(const void *keys, float *page_min, float *page_max,
                                   uint32_t d, uint32_t max_tokens, uint32_t max_pages,
                                   uint32_t page_size, uint32_t first_page, uint32_t dim_blocks,
                                   uint32_t len)
{
    const uint32_t i = blockIdx.x % dim_blocks * blockDim.x + threadIdx.x;
    if (i >= d)
        return;
    const uint32_t page = first_page + blockIdx.x / dim_blocks, kv = blockIdx.y;
    const uint32_t t0 = page * page_size;
    const uint32_t t1 = t0 + page_size < len ? t0 + page_size : len;
    const size_t base = (size_t)kv * max_tokens;
    float lo = row_elem<DT>((const char *)keys + (base + t0) * d * dtype_bytes<DT>(), i), hi = lo;
    for (uint32_t t = t0 + 1; t < t1; t++) {
        float x = row_elem<DT>((const char *)keys + (base + t) * d * dtype_bytes<DT>(), i);
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    const size_t at = ((size_t)kv * max_pages + page) * d + i;
    page_min[at] = lo;
    page_max[at] = hi;
}

static row_store store_of(const adamas_gpu_cache *g)
{
    row_store c;
    c.keys = g->keys;
    c.values = g->values;
    c.codes = g->codes;
    c.th = g->k_thresholds;
    c.n_kv = g->cfg.n_kv_heads;
    c.max_tokens = g->cfg.max_tokens;
    c.scale = g->hadamard_scale;
    c.rotate = g->cfg.transform != ADAMAS_TRANSFORM_NONE;
    return c;
}

/* Call f(dim, dtype) with the cache's head_dim and storage dtype as compile-time
 * constants (std::integral_constant), so that a launch instantiates its kernel. */
template <class F> static void with_dtype(const adamas_gpu_cache *g, F f)
{
    switch (g->cfg.kv_dtype) {
    case ADAMAS_F16: f(std::integral_constant<int, ADAMAS_F16>()); break;
    case ADAMAS_BF16: f(std::integral_constant<int, ADAMAS_BF16>()); break;
    default: f(std::integral_constant<int, ADAMAS_F32>()); break;
    }
}

template <class F> static void with_dim_dtype(const adamas_gpu_cache *g, F f)
{
    with_dtype(g, [&](auto dt) {
        switch (g->cfg.head_dim) {
        case 16: f(std::integral_constant<int, 16>(), dt); break;
        case 32: f(std::integral_constant<int, 32>(), dt); break;
        case 64: f(std::integral_constant<int, 64>(), dt); break;
        case 128: f(std::integral_constant<int, 128>(), dt); break;
        case 256: f(std::integral_constant<int, 256>(), dt); break;
        case 512: f(std::integral_constant<int, 512>(), dt); break;
        default: f(std::integral_constant<int, 1024>(), dt); break;
        }
    });
}

cudaError_t launch_append(const adamas_gpu_cache *g, const float *k, const float *v,
                          uint32_t first, uint32_t count)
{
    const row_store c = store_of(g);
    const uint32_t rows = count * g->cfg.n_kv_heads;
    const dim3 grid((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    with_dim_dtype(g, [&](auto dim, auto dt) {
        append_kernel<decltype(dim)::value, decltype(dt)::value>
            <<<grid, ROWS_PER_BLOCK * 32, 0, g->stream>>>(c, k, v, first, count);
    });
    return cudaGetLastError();
}

cudaError_t launch_recode(const adamas_gpu_cache *g, uint32_t len)
{
    const row_store c = store_of(g);
    const uint64_t rows = (uint64_t)len * g->cfg.n_kv_heads;
    const dim3 grid((unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK));
    with_dim_dtype(g, [&](auto dim, auto dt) {
        recode_kernel<decltype(dim)::value, decltype(dt)::value>
            <<<grid, ROWS_PER_BLOCK * 32, 0, g->stream>>>(c, len);
    });
    return cudaGetLastError();
}

cudaError_t launch_page_bounds(const adamas_gpu_cache *g, uint32_t first_page,
                               uint32_t last_page, uint32_t len)
{
    const uint32_t d = g->cfg.head_dim, threads = d < 256 ? d : 256;
    const uint32_t n_pages = last_page - first_page + 1, dim_blocks = (d + threads - 1) / threads;
    const dim3 grid(n_pages * dim_blocks, g->cfg.n_kv_heads);
    with_dtype(g, [&](auto dt) {
        page_bounds_kernel<decltype(dt)::value><<<grid, threads, 0, g->stream>>>(
            g->keys, g->page_min, g->page_max, d, g->cfg.max_tokens, g->max_pages,
            g->cfg.page_size, first_page, dim_blocks, len);
    });
    return cudaGetLastError();
}

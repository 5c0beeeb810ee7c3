/* vector.c - the attention arithmetic: dot products, weighted sums, exponentials.
 *
 * Dot products and page scores use the fixed summation order of kernels.h (16 lanes,
 * pairwise fold), so that every ISA ranks tokens and attends identically.  The dots
 * that rank (dot) round each product before adding it, as the GPU module does; the
 * attention's own products (dot_group, axpy, axpy_group) fuse each multiply-add
 * (fmaf: one rounding), which every SIMD ISA does in one instruction. */
#include <math.h>

#include "adamas.h"
#include "half.h"
#include "kernels.h"

/* On x86-64 built without -mfma, fmaf is a call into libm per element.  With GCC the
 * fused entries get a clone for CPUs with FMA (chosen once, at load), where it is one
 * instruction giving the same bits.  (Builds with clang 14, whose clones left the
 * entries' own names undefined at link time, keep the calls.) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__) && \
    !defined(__FMA__)
#define FUSED_ENTRY __attribute__((target_clones("fma", "default")))
#else
#define FUSED_ENTRY
#endif

float adamas_fold_lanes(float acc[ADAMAS_DOT_LANES])
{
    for (int width = ADAMAS_DOT_LANES / 2; width >= 1; width /= 2)
        for (int l = 0; l < width; l++)
            acc[l] = acc[l] + acc[l + width];
    return acc[0];
}

/* fused: acc = fmaf(q, x, acc), else acc + (q*x rounded). */
static inline float dot_rows(const float *q, const void *row, size_t d, adamas_dtype dtype,
                             int fused)
{
    float acc[ADAMAS_DOT_LANES] = {0};
    for (size_t i = 0; i < d; i += ADAMAS_DOT_LANES)
        for (int l = 0; l < ADAMAS_DOT_LANES; l++) {
            float x = adamas_row_elem(row, i + l, dtype);
            if (fused) {
                acc[l] = fmaf(q[i + l], x, acc[l]);
            } else {
                float p = q[i + l] * x;
                acc[l] = acc[l] + p;
            }
        }
    return adamas_fold_lanes(acc);
}

static inline void axpy_rows(float *y, float a, const void *row, size_t d, adamas_dtype dtype)
{
    for (size_t i = 0; i < d; i++)
        y[i] = fmaf(a, adamas_row_elem(row, i, dtype), y[i]);
}

float adamas_dot_f32_scalar(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, ADAMAS_F32, 0);
}

float adamas_dot_f16_scalar(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, ADAMAS_F16, 0);
}

float adamas_dot_bf16_scalar(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, ADAMAS_BF16, 0);
}

FUSED_ENTRY void adamas_axpy_f32_scalar(float *y, float a, const void *row, size_t d)
{
    axpy_rows(y, a, row, d, ADAMAS_F32);
}

FUSED_ENTRY void adamas_axpy_f16_scalar(float *y, float a, const void *row, size_t d)
{
    axpy_rows(y, a, row, d, ADAMAS_F16);
}

FUSED_ENTRY void adamas_axpy_bf16_scalar(float *y, float a, const void *row, size_t d)
{
    axpy_rows(y, a, row, d, ADAMAS_BF16);
}

/* The grouped entries are, by definition, one fused dot or one axpy per row and head. */
FUSED_ENTRY void adamas_dot_group_f32_scalar(const float *q, size_t heads, const void *const *rows,
                                 size_t n, size_t d, float *out, size_t out_stride)
{
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < heads; j++)
            out[j * out_stride + r] = dot_rows(q + j * d, rows[r], d, ADAMAS_F32, 1);
}

FUSED_ENTRY void adamas_dot_group_f16_scalar(const float *q, size_t heads, const void *const *rows,
                                 size_t n, size_t d, float *out, size_t out_stride)
{
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < heads; j++)
            out[j * out_stride + r] = dot_rows(q + j * d, rows[r], d, ADAMAS_F16, 1);
}

FUSED_ENTRY void adamas_dot_group_bf16_scalar(const float *q, size_t heads, const void *const *rows,
                                  size_t n, size_t d, float *out, size_t out_stride)
{
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < heads; j++)
            out[j * out_stride + r] = dot_rows(q + j * d, rows[r], d, ADAMAS_BF16, 1);
}

FUSED_ENTRY void adamas_axpy_group_f32_scalar(float *y, size_t y_stride, const float *a,
                                              size_t a_stride, size_t heads,
                                              const void *const *rows, size_t n, size_t d)
{
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < heads; j++)
            axpy_rows(y + j * y_stride, a[j * a_stride + r], rows[r], d, ADAMAS_F32);
}

FUSED_ENTRY void adamas_axpy_group_f16_scalar(float *y, size_t y_stride, const float *a,
                                              size_t a_stride, size_t heads,
                                              const void *const *rows, size_t n, size_t d)
{
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < heads; j++)
            axpy_rows(y + j * y_stride, a[j * a_stride + r], rows[r], d, ADAMAS_F16);
}

FUSED_ENTRY void adamas_axpy_group_bf16_scalar(float *y, size_t y_stride, const float *a,
                                               size_t a_stride, size_t heads,
                                               const void *const *rows, size_t n, size_t d)
{
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < heads; j++)
            axpy_rows(y + j * y_stride, a[j * a_stride + r], rows[r], d, ADAMAS_BF16);
}

float adamas_page_score_scalar(const float *q, const float *lo, const float *hi, size_t d)
{
    float acc[ADAMAS_DOT_LANES] = {0};
    for (size_t i = 0; i < d; i += ADAMAS_DOT_LANES)
        for (int l = 0; l < ADAMAS_DOT_LANES; l++) {
            float a = q[i + l] * lo[i + l], b = q[i + l] * hi[i + l];
            acc[l] = acc[l] + (a > b ? a : b);
        }
    return adamas_fold_lanes(acc);
}

/* Sixteen running maxima, so that the compares do not wait on one another: the value
 * is that of a single running maximum, but for the sign of a zero maximum. */
float adamas_scale_max_scalar(float *x, size_t n, float scale)
{
    float lane_max[16];
    for (int l = 0; l < 16; l++)
        lane_max[l] = -INFINITY;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            float v = x[i + l] * scale;
            x[i + l] = v;
            lane_max[l] = v > lane_max[l] ? v : lane_max[l];
        }
    float max = -INFINITY;
    for (; i < n; i++) {
        x[i] *= scale;
        max = x[i] > max ? x[i] : max;
    }
    for (int l = 0; l < 16; l++)
        max = lane_max[l] > max ? lane_max[l] : max;
    return max;
}

float adamas_exp_sum_scalar(float *s, size_t n, float max)
{
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        s[i] = expf(s[i] - max);
        sum += s[i];
    }
    return sum;
}

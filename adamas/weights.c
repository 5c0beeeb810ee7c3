/* weights.c - products with a model's weight matrices (adamas_matvec), on the same
 * kernels as attention, so that an engine's results do not depend on the ISA. */
#include <stdint.h>

#include "adamas.h"
#include "decode.h"
#include "error.h"
#include "half.h"
#include "kernels.h"
#include "validate.h"

/* Each thread of a product takes at least this many bytes of weights: below it,
 * waking a thread costs about what its share of the rows would (a 256 x 256 Q8_0
 * matrix, 68 KiB, is about 4 us of one AVX-512 core). A model of width 256 decodes
 * 1.3x faster on 2 threads with this than with products below 256 KiB on one. */
#define MIN_BYTES_PER_THREAD (16u << 10)

size_t adamas_weights_row_bytes(adamas_weights_type type, size_t cols)
{
    if (cols == 0)
        return 0;
    switch (type) {
    case ADAMAS_WEIGHTS_F32: return cols <= SIZE_MAX / 4 ? cols * 4 : 0;
    case ADAMAS_WEIGHTS_F16:
    case ADAMAS_WEIGHTS_BF16: return cols <= SIZE_MAX / 2 ? cols * 2 : 0;
    case ADAMAS_WEIGHTS_Q8_0:
        return cols % ADAMAS_Q8_0_BLOCK == 0 ? cols / ADAMAS_Q8_0_BLOCK * ADAMAS_Q8_0_BYTES : 0;
    default: return 0;
    }
}

/* The checks both entry points share; on success *row_bytes is set and the
 * kernels are ready. */
static int check_weights(const char *fn, adamas_weights_type type, const void *w, size_t rows,
                         size_t cols, const void *dst, size_t *row_bytes,
                         const adamas_kernels **kern)
{
    if (!w || !dst)
        return adamas_fail(ADAMAS_EINVAL, "%s: %s is NULL", fn, !w ? "w" : "the output");
    if ((unsigned)type > ADAMAS_WEIGHTS_Q8_0)
        return adamas_fail(ADAMAS_EINVAL, "%s: unknown weights type %d", fn, (int)type);
    if (rows == 0 || cols == 0)
        return adamas_fail(ADAMAS_EINVAL, "%s: %zu x %zu matrix", fn, rows, cols);
    *row_bytes = adamas_weights_row_bytes(type, cols);
    if (*row_bytes == 0)
        return adamas_fail(ADAMAS_EINVAL, "%s: cols = %zu is not a multiple of %d (Q8_0 blocks)",
                           fn, cols, ADAMAS_Q8_0_BLOCK);
    if (rows > SIZE_MAX / *row_bytes || rows > SIZE_MAX / sizeof(float) / cols)
        return adamas_fail(ADAMAS_EINVAL, "%s: the size of a %zu x %zu matrix overflows", fn,
                           rows, cols);
    return adamas_kernels_get(kern);
}

/* F32, F16 and BF16 weights index the kernel table and adamas_row_elem as the
 * cache's dtypes do. */
_Static_assert(ADAMAS_WEIGHTS_F32 == (int)ADAMAS_F32 && ADAMAS_WEIGHTS_F16 == (int)ADAMAS_F16 &&
                   ADAMAS_WEIGHTS_BF16 == (int)ADAMAS_BF16,
               "weights types and storage dtypes share their values");

/* Row . x: the dot kernel over the largest multiple of 16 elements, then the rest
 * added one by one (rows of weights need not be a whole number of lanes). */
static float dot_row(const adamas_kernels *k, adamas_weights_type type, const void *row,
                     size_t cols, const float *x)
{
    if (type == ADAMAS_WEIGHTS_Q8_0)
        return k->dot_q8_0(x, row, cols / ADAMAS_Q8_0_BLOCK);
    const size_t main = cols - cols % ADAMAS_DOT_LANES;
    float sum = main ? k->dot[type](x, row, main) : 0.0f;
    for (size_t i = main; i < cols; i++)
        sum = sum + adamas_row_elem(row, i, type) * x[i];
    return sum;
}

int adamas_matvec(adamas_weights_type type, const void *w, size_t rows, size_t cols,
                  const float *x, float *y)
{
    size_t row_bytes = 0;
    const adamas_kernels *k;
    int st = check_weights("adamas_matvec", type, w, rows, cols, y, &row_bytes, &k);
    if (st != ADAMAS_OK)
        return st;
    if (!x)
        return adamas_fail(ADAMAS_EINVAL, "adamas_matvec: x is NULL");
    size_t bad = adamas_first_bad_value(x, cols);
    if (bad < cols)
        return adamas_fail(ADAMAS_EINVAL, "adamas_matvec: x[%zu] = %g %s", bad, (double)x[bad],
                           adamas_bad_value_reason(x[bad]));

    const unsigned char *base = w;
    const int64_t n = (int64_t)rows;
    uint32_t threads = adamas_step_threads();
    const size_t shares = rows * row_bytes / MIN_BYTES_PER_THREAD;
    if (shares < threads)
        threads = shares > 1 ? (uint32_t)shares : 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t r = 0; r < n; r++)
        y[r] = dot_row(k, type, base + (size_t)r * row_bytes, cols, x);
    return ADAMAS_OK;
}

int adamas_weights_to_f32(adamas_weights_type type, const void *w, size_t rows, size_t cols,
                          float *out)
{
    size_t row_bytes = 0;
    const adamas_kernels *k;
    int st = check_weights("adamas_weights_to_f32", type, w, rows, cols, out, &row_bytes, &k);
    if (st != ADAMAS_OK)
        return st;
    const unsigned char *base = w;
    if (type == ADAMAS_WEIGHTS_Q8_0) { /* rows of whole blocks, back to back */
        k->widen_q8_0(out, base, rows * (cols / ADAMAS_Q8_0_BLOCK));
        return ADAMAS_OK;
    }
    /* F16 and BF16 rows are widened for a matrix product, which costs far more than
     * this loop: no kernel of their own */
    const size_t n = rows * cols;
    for (size_t i = 0; i < n; i++)
        out[i] = adamas_row_elem(base, i, type);
    return ADAMAS_OK;
}

/* q8_0.c - ggml's Q8_0 weight blocks: the scalar specification of their dot product
 * and of their widening to f32.
 *
 * A block holds 32 weights: an f16 scale s (2 bytes, little-endian) then 32 int8
 * q[j] (32 bytes); weight j is s * q[j].
 *
 * The dot product keeps the 16 lanes of kernels.h so that every ISA gets the same
 * bits: lane l of block b takes the two weights l and l+16,
 *     acc[l] += s * (q[l]*x[l] + q[l+16]*x[l+16]),
 * each product and sum rounded to f32 in that order, then the lanes are folded as
 * the dot kernels fold them. */
#include "adamas.h"
#include "half.h"
#include "kernels.h"

/* The scale of a block, widened to f32. */
static float q8_0_scale(const void *block)
{
    const unsigned char *b = block;
    return adamas_half_to_float((uint16_t)(b[0] | b[1] << 8));
}

float adamas_dot_q8_0_scalar(const float *x, const void *blocks, size_t n_blocks)
{
    const unsigned char *blk = blocks;
    float acc[ADAMAS_DOT_LANES] = {0};
    for (size_t b = 0; b < n_blocks; b++, blk += ADAMAS_Q8_0_BYTES, x += ADAMAS_Q8_0_BLOCK) {
        const float s = q8_0_scale(blk);
        const int8_t *q = (const int8_t *)(blk + 2);
        for (int l = 0; l < ADAMAS_DOT_LANES; l++) {
            float lo = (float)q[l] * x[l];
            float hi = (float)q[l + ADAMAS_DOT_LANES] * x[l + ADAMAS_DOT_LANES];
            acc[l] = acc[l] + s * (lo + hi);
        }
    }
    return adamas_fold_lanes(acc);
}

/* s * q is exact in f32 (11 significant bits times 8). */
void adamas_widen_q8_0_scalar(float *dst, const void *blocks, size_t n_blocks)
{
    const unsigned char *blk = blocks;
    for (size_t b = 0; b < n_blocks; b++, blk += ADAMAS_Q8_0_BYTES, dst += ADAMAS_Q8_0_BLOCK) {
        const float s = q8_0_scale(blk);
        const int8_t *q = (const int8_t *)(blk + 2);
        for (int j = 0; j < ADAMAS_Q8_0_BLOCK; j++)
            dst[j] = s * (float)q[j];
    }
}

/* half.h - IEEE binary16 and bfloat16 <-> f32, round to nearest even, in portable C. */
#ifndef ADAMAS_HALF_H
#define ADAMAS_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t adamas_f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float adamas_bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static inline float adamas_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in f32 */
        float mag = (float)mant * 0x1p-24f;
        return adamas_bits_f32(adamas_f32_bits(mag) | sign);
    }
    if (exp == 31) /* infinity or NaN, payload kept */
        return adamas_bits_f32(sign | 0x7f800000u | mant << 13);
    return adamas_bits_f32(sign | (exp + 112) << 23 | mant << 13);
}

static inline uint16_t adamas_float_to_half(float x)
{
    uint32_t u = adamas_f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep it quiet and non-zero */
        return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff);
    if (a >= 0x477ff000u) /* >= 65520 rounds to infinity */
        return sign | 0x7c00;
    if (a >= 0x38800000u) /* normal half: rebias the exponent, round the 13 dropped bits */
        return sign | (uint16_t)((a - 0x38000000u + 0xfffu + ((a >> 13) & 1)) >> 13);
    /* subnormal half or zero: round a's value * 2^24 to an integer */
    uint32_t e = a >> 23;
    uint32_t shift = 126 - e; /* >= 14 here */
    if (shift > 24)
        return sign;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    uint32_t m = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m & 1)))
        m++;
    return sign | (uint16_t)m;
}

static inline float adamas_bfloat_to_float(uint16_t h)
{
    return adamas_bits_f32((uint32_t)h << 16);
}

/* Element i of a stored row of dtype 0 (f32), 1 (f16) or 2 (bf16): adamas_dtype's
 * values, which adamas_weights_type shares.  Widening is exact.  Called with a constant
 * dtype, the switch folds away. */
static inline float adamas_row_elem(const void *row, size_t i, int dtype)
{
    switch (dtype) {
    case 1: return adamas_half_to_float(((const uint16_t *)row)[i]);
    case 2: return adamas_bfloat_to_float(((const uint16_t *)row)[i]);
    default: return ((const float *)row)[i];
    }
}

static inline uint16_t adamas_float_to_bfloat(float x)
{
    uint32_t u = adamas_f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

#endif

/* codes.c - 2-bit bucket codes: encoding, planar packing, the interleaved layout. */
#include <string.h>

#include "error.h"
#include "kernels.h"
#include "validate.h"

size_t adamas_code_words(size_t d)
{
    return 2 * ((d + 63) / 64);
}

size_t adamas_interleaved_words(size_t d)
{
    return d % 8 == 0 ? d / 8 : 0;
}

/* Dimension i of a planar code is bit i%64 of the planes 2*(i/64) (low bit of the
 * code) and 2*(i/64)+1 (high bit).  planar_put expects the bits still clear. */
static void planar_put(uint64_t *planar, size_t i, unsigned c)
{
    planar[2 * (i / 64)] |= (uint64_t)(c & 1) << (i % 64);
    planar[2 * (i / 64) + 1] |= (uint64_t)(c >> 1) << (i % 64);
}

static unsigned planar_get(const uint64_t *planar, size_t i)
{
    unsigned lo = (unsigned)(planar[2 * (i / 64)] >> (i % 64)) & 1;
    unsigned hi = (unsigned)(planar[2 * (i / 64) + 1] >> (i % 64)) & 1;
    return lo | hi << 1;
}

/* code(x) = (x > t0) + (x > t1) + (x > t2) */
void adamas_encode_scalar(const float *xh, size_t d, const float th[3], uint64_t *code)
{
    memset(code, 0, adamas_code_words(d) * sizeof *code);
    for (size_t i = 0; i < d; i++)
        planar_put(code, i, (unsigned)(xh[i] > th[0]) + (xh[i] > th[1]) + (xh[i] > th[2]));
}

void adamas_hadamard_encode_scalar(float *x, size_t d, const float th[3], uint64_t *code)
{
    adamas_hadamard_scalar(x, d);
    adamas_encode_scalar(x, d, th, code);
}

int adamas_encode_2bit(const float *xh, size_t d, const float th[3], uint64_t *code)
{
    if (!xh || !th || !code)
        return adamas_fail(ADAMAS_EINVAL, "adamas_encode_2bit: %s is NULL",
                           !xh ? "xh" : !th ? "th" : "code");
    if (!adamas_head_dim_ok(d))
        return adamas_fail(ADAMAS_EINVAL,
                           "adamas_encode_2bit: d = %zu is not a power of two in [%d, %d]", d,
                           ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM);
    if (!adamas_thresholds_ok(th))
        return adamas_fail(ADAMAS_EINVAL,
                           "adamas_encode_2bit: thresholds {%g, %g, %g} are not finite and "
                           "strictly increasing",
                           (double)th[0], (double)th[1], (double)th[2]);
    size_t bad = adamas_first_bad_value(xh, d);
    if (bad < d)
        return adamas_fail(ADAMAS_EINVAL, "adamas_encode_2bit: xh[%zu] = %g %s", bad,
                           (double)xh[bad], adamas_bad_value_reason(xh[bad]));
    const adamas_kernels *k;
    int st = adamas_kernels_get(&k);
    if (st)
        return st;
    k->encode(xh, d, th, code);
    return ADAMAS_OK;
}

int adamas_codes_to_interleaved(const uint64_t *planar, size_t d, uint16_t *inter)
{
    if (!planar || !inter)
        return adamas_fail(ADAMAS_EINVAL, "adamas_codes_to_interleaved: %s is NULL",
                           !planar ? "planar" : "inter");
    if (!adamas_head_dim_ok(d))
        return adamas_fail(ADAMAS_EINVAL,
                           "adamas_codes_to_interleaved: d = %zu is not a power of two in [%d, %d]",
                           d, ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM);
    if (d % 64) {
        uint64_t unused = ~(uint64_t)0 << (d % 64);
        if ((planar[0] | planar[1]) & unused)
            return adamas_fail(ADAMAS_EINVAL,
                               "adamas_codes_to_interleaved: planar code has bits set beyond "
                               "dimension %zu",
                               d);
    }
    for (size_t w = 0; w < d / 8; w++) {
        uint16_t word = 0;
        for (size_t j = 0; j < 8; j++)
            word |= (uint16_t)(planar_get(planar, 8 * w + j) << (2 * j));
        inter[w] = word;
    }
    return ADAMAS_OK;
}

int adamas_codes_from_interleaved(const uint16_t *inter, size_t d, uint64_t *planar)
{
    if (!planar || !inter)
        return adamas_fail(ADAMAS_EINVAL, "adamas_codes_from_interleaved: %s is NULL",
                           !inter ? "inter" : "planar");
    if (!adamas_head_dim_ok(d))
        return adamas_fail(ADAMAS_EINVAL,
                           "adamas_codes_from_interleaved: d = %zu is not a power of two in "
                           "[%d, %d]",
                           d, ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM);
    memset(planar, 0, adamas_code_words(d) * sizeof *planar);
    for (size_t i = 0; i < d; i++)
        planar_put(planar, i, (inter[i / 8] >> (2 * (i % 8))) & 3);
    return ADAMAS_OK;
}

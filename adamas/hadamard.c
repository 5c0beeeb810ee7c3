/* hadamard.c - the orthonormal Hadamard transform (specification and public entry). */
#include <math.h>

#include "error.h"
#include "kernels.h"
#include "validate.h"

/* Sylvester order, stages h = 1, 2, ..., d/2, then one scaling by the f32 constant
 * (float)(1/sqrt(d)).  Every backend reproduces these exact f32 operations. */
void adamas_hadamard_scalar(float *x, size_t d)
{
    for (size_t h = 1; h < d; h *= 2) {
        for (size_t i = 0; i < d; i += 2 * h) {
            for (size_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
    }
    const float scale = (float)(1.0 / sqrt((double)d));
    for (size_t i = 0; i < d; i++)
        x[i] *= scale;
}

int adamas_hadamard_f32(float *x, size_t d)
{
    if (!x)
        return adamas_fail(ADAMAS_EINVAL, "adamas_hadamard_f32: x is NULL");
    if (!adamas_head_dim_ok(d))
        return adamas_fail(ADAMAS_EINVAL,
                           "adamas_hadamard_f32: d = %zu is not a power of two in [%d, %d]", d,
                           ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM);
    size_t bad = adamas_first_bad_value(x, d);
    if (bad < d)
        return adamas_fail(ADAMAS_EINVAL, "adamas_hadamard_f32: x[%zu] = %g %s", bad,
                           (double)x[bad], adamas_bad_value_reason(x[bad]));
    const adamas_kernels *k;
    int st = adamas_kernels_get(&k);
    if (st)
        return st;
    k->hadamard(x, d);
    return ADAMAS_OK;
}

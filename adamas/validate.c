/* validate.c - argument checks shared by the public entry points. */
#include <math.h>

#include "adamas.h"
#include "validate.h"

bool adamas_head_dim_ok(size_t d)
{
    return d >= ADAMAS_MIN_HEAD_DIM && d <= ADAMAS_MAX_HEAD_DIM && (d & (d - 1)) == 0;
}

size_t adamas_first_bad_value(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= ADAMAS_MAX_MAGNITUDE)) /* NaN fails the comparison too */
            return i;
    return n;
}

const char *adamas_bad_value_reason(float x)
{
    return isfinite(x) ? "exceeds the magnitude limit ADAMAS_MAX_MAGNITUDE (1e12)"
                       : "is not finite";
}

bool adamas_thresholds_ok(const float th[3])
{
    return isfinite(th[0]) && isfinite(th[1]) && isfinite(th[2]) && th[0] < th[1] && th[1] < th[2];
}

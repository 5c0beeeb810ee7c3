/* validate.h - argument checks shared by the public entry points. */
#ifndef ADAMAS_VALIDATE_H
#define ADAMAS_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

/* d is a power of two in [ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM]. */
bool adamas_head_dim_ok(size_t d);

/* Index of the first element of x[n] that is not finite or whose magnitude exceeds
 * ADAMAS_MAX_MAGNITUDE, or n when there is none. */
size_t adamas_first_bad_value(const float *x, size_t n);

/* Why such an element is refused: "is not finite" or "exceeds the magnitude limit". */
const char *adamas_bad_value_reason(float x);

/* th[0] < th[1] < th[2], all finite. */
bool adamas_thresholds_ok(const float th[3]);

#endif

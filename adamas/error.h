/* error.h - recording the reason of a failing call (adamas_last_error). */
#ifndef ADAMAS_ERROR_H
#define ADAMAS_ERROR_H

#include "adamas.h"

/* Record a message for adamas_last_error() on this thread and return status,
 * so that failures read `return adamas_fail(ADAMAS_EINVAL, "...", ...);`. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int adamas_fail(int status, const char *fmt, ...);

#endif

/* error.c - status names and the per-thread message of the last failure. */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

static _Thread_local char last_error[512];

const char *adamas_strerror(int status)
{
    switch (status) {
    case ADAMAS_OK: return "ADAMAS_OK: success";
    case ADAMAS_EINVAL: return "ADAMAS_EINVAL: invalid argument";
    case ADAMAS_ENOMEM: return "ADAMAS_ENOMEM: out of memory";
    case ADAMAS_ECAPACITY: return "ADAMAS_ECAPACITY: cache capacity exceeded";
    case ADAMAS_ENOTSUP: return "ADAMAS_ENOTSUP: not supported on this machine or build";
    case ADAMAS_EIO: return "ADAMAS_EIO: input/output error";
    case ADAMAS_EFORMAT: return "ADAMAS_EFORMAT: malformed file";
    default: return "unknown adamas status";
    }
}

const char *adamas_last_error(void)
{
    return last_error;
}

int adamas_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

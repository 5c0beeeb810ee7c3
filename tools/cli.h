/* cli.h - small helpers the command-line tools and benchmarks share. */
#ifndef ADAMAS_CLI_H
#define ADAMAS_CLI_H

#include <stdint.h>

/* Seconds on a monotonic clock. */
double cli_now(void);

/* A decimal number in 0..UINT32_MAX, the whole string (no sign): 0, or -1. */
int cli_parse_u32(const char *s, uint32_t *out);

/* qsort comparison of doubles, ascending. */
int cli_cmp_double(const void *a, const void *b);

#endif

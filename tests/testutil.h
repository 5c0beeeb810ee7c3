/* testutil.h - seeded random inputs and seed-reporting assertions for the suites.
 *
 * Every test draws fresh random inputs from a seed: ADAMAS_TEST_SEED when set (to
 * replay a failure), else one drawn from the clock.  Failing assertions print it. */
#ifndef ADAMAS_TESTUTIL_H
#define ADAMAS_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdint.h>

extern unsigned long long test_seed;

/* Seed the generator (called by each test, or by a suite's .init). */
void rng_seed_from_env(void);
uint64_t rng_next(void);
/* uniform in [0, n) */
uint32_t rng_below(uint32_t n);
/* uniform in [lo, hi) */
float rng_uniform(float lo, float hi);
/* standard normal */
float rng_normal(void);
/* x[n] standard normal times scale */
void rng_fill_normal(float *x, size_t n, float scale);

/* cr_assert with the seed in front of the message (fmt: a string literal). */
#define expect(cond, fmt, ...) \
    cr_assert((cond), "[ADAMAS_TEST_SEED=%llu] " fmt, test_seed, ##__VA_ARGS__)

/* Bytes that no correct computation writes: fill outputs with them first.  poison()
 * writes 0xa5 to every byte, so each 32-bit word it fills reads POISON_U32. */
#define POISON_U32 0xa5a5a5a5u
void poison(void *p, size_t bytes);

#endif

/* test_hadamard.c - adamas_hadamard_f32 (DESIGN §2 "Hadamard transform"): the
 * orthonormal Sylvester transform, bit-identical to the f32 specification. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "reference.h"
#include "testutil.h"

TestSuite(hadamard, .init = rng_seed_from_env);

#define FOR_EACH_HEAD_DIM(d) for (size_t d = ADAMAS_MIN_HEAD_DIM; d <= ADAMAS_MAX_HEAD_DIM; d *= 2)

static void transform(float *x, size_t d)
{
    int st = adamas_hadamard_f32(x, d);
    expect(st == ADAMAS_OK, "adamas_hadamard_f32(d=%zu): %s", d, adamas_last_error());
}

static int parity(size_t x)
{
    int p = 0;
    for (; x; x &= x - 1)
        p ^= 1;
    return p;
}

Test(hadamard, equals_the_sylvester_matrix_product_in_double_precision)
{
    FOR_EACH_HEAD_DIM(d)
    {
        float x[ADAMAS_MAX_HEAD_DIM];
        double want[ADAMAS_MAX_HEAD_DIM], sum_abs = 0.0;
        rng_fill_normal(x, d, rng_uniform(0.1f, 100.0f));
        for (size_t i = 0; i < d; i++)
            sum_abs += fabs(x[i]);
        ref_hadamard_exact(x, d, want);
        transform(x, d);
        /* log2(d) rounded additions on values up to sum|x|, one rounded scaling */
        double bound = (log2((double)d) + 1) * 0x1p-23 * sum_abs / sqrt((double)d);
        for (size_t i = 0; i < d; i++)
            expect(fabs(x[i] - want[i]) <= bound, "d=%zu: y[%zu] = %.9g, exact %.9g (bound %.3g)",
                   d, i, (double)x[i], want[i], bound);
    }
}

Test(hadamard, the_sylvester_matrix_entries_are_the_parity_of_the_common_bits)
{
    /* The two definitions the other tests rely on agree: H[i][k] = (-1)^popcount(i & k). */
    size_t d = 256;
    signed char *m = malloc(d * d);
    ref_sylvester_matrix(d, m);
    for (size_t i = 0; i < d; i++)
        for (size_t k = 0; k < d; k++)
            expect(m[i * d + k] == (parity(i & k) ? -1 : 1), "H[%zu][%zu] = %d", i, k,
                   m[i * d + k]);
    free(m);
}

Test(hadamard, applying_it_twice_gives_the_input_back)
{
    FOR_EACH_HEAD_DIM(d)
    {
        float x[ADAMAS_MAX_HEAD_DIM], y[ADAMAS_MAX_HEAD_DIM];
        rng_fill_normal(x, d, rng_uniform(0.01f, 1000.0f));
        memcpy(y, x, d * sizeof *x);
        transform(y, d);
        transform(y, d);
        double norm = 0.0;
        for (size_t i = 0; i < d; i++)
            norm += (double)x[i] * x[i];
        double bound = 2 * (log2((double)d) + 2) * 0x1p-23 * sqrt(norm);
        for (size_t i = 0; i < d; i++)
            expect(fabs((double)y[i] - x[i]) <= bound, "d=%zu: H(Hx)[%zu] = %.9g, x = %.9g", d,
                   i, (double)y[i], (double)x[i]);
    }
}

Test(hadamard, unit_vectors_give_exactly_signed_scale)
{
    FOR_EACH_HEAD_DIM(d)
    {
        const float scale = (float)(1.0 / sqrt((double)d));
        for (int trial = 0; trial < 8; trial++) {
            size_t k = rng_below((uint32_t)d);
            float x[ADAMAS_MAX_HEAD_DIM] = {0};
            x[k] = 1.0f;
            transform(x, d);
            for (size_t i = 0; i < d; i++) {
                float want = parity(i & k) ? -scale : scale;
                expect(memcmp(&x[i], &want, sizeof want) == 0,
                       "d=%zu, e_%zu: y[%zu] = %a, expected %a", d, k, i, (double)x[i],
                       (double)want);
            }
        }
    }
}

Test(hadamard, small_integer_vectors_give_the_exact_sum_times_the_f32_scale)
{
    /* Sums of small integers are exact in f32, so the result is the exact integer
     * H x rounded once by the multiplication with the f32 scale. */
    FOR_EACH_HEAD_DIM(d)
    {
        const float scale = (float)(1.0 / sqrt((double)d));
        float x[ADAMAS_MAX_HEAD_DIM];
        long ints[ADAMAS_MAX_HEAD_DIM];
        for (size_t i = 0; i < d; i++) {
            ints[i] = (long)rng_below(33) - 16;
            x[i] = (float)ints[i];
        }
        transform(x, d);
        for (size_t i = 0; i < d; i++) {
            long sum = 0;
            for (size_t k = 0; k < d; k++)
                sum += parity(i & k) ? -ints[k] : ints[k];
            float want = (float)((double)sum * (double)scale); /* exact product, one rounding */
            expect(memcmp(&x[i], &want, sizeof want) == 0, "d=%zu: y[%zu] = %a, expected %a (%ld)",
                   d, i, (double)x[i], (double)want, sum);
        }
    }
}

Test(hadamard, is_bit_identical_to_the_f32_specification)
{
    FOR_EACH_HEAD_DIM(d)
    {
        for (int trial = 0; trial < 20; trial++) {
            float x[ADAMAS_MAX_HEAD_DIM], want[ADAMAS_MAX_HEAD_DIM];
            /* scales spread over many binades, some entries zero or tiny */
            float scale = ldexpf(1.0f, (int)rng_below(60) - 30);
            rng_fill_normal(x, d, scale);
            for (size_t i = 0; i < d; i++)
                if (rng_below(16) == 0)
                    x[i] = rng_below(2) ? 0.0f : x[i] * 1e-30f;
            memcpy(want, x, d * sizeof *x);
            ref_hadamard(want, d);
            transform(x, d);
            expect(memcmp(x, want, d * sizeof *x) == 0, "d=%zu trial %d: differs from the spec",
                   d, trial);
        }
    }
}

Test(hadamard, preserves_the_norm)
{
    FOR_EACH_HEAD_DIM(d)
    {
        float x[ADAMAS_MAX_HEAD_DIM];
        rng_fill_normal(x, d, 1.0f);
        double before = 0.0, after = 0.0;
        for (size_t i = 0; i < d; i++)
            before += (double)x[i] * x[i];
        transform(x, d);
        for (size_t i = 0; i < d; i++)
            after += (double)x[i] * x[i];
        expect(fabs(after - before) <= 1e-5 * before, "d=%zu: |Hx|^2 = %.9g, |x|^2 = %.9g", d,
               after, before);
    }
}

Test(hadamard, every_isa_is_bit_identical_to_the_f32_specification)
{
    const char *isas[] = {"scalar", "avx2", "avx512", "neon"};
    for (int k = 0; k < 4; k++) {
        if (!adamas_isa_available(isas[k]))
            continue;
        expect(adamas_set_isa(isas[k]) == ADAMAS_OK, "%s: %s", isas[k], adamas_last_error());
        FOR_EACH_HEAD_DIM(d)
        {
            float x[ADAMAS_MAX_HEAD_DIM], want[ADAMAS_MAX_HEAD_DIM];
            rng_fill_normal(x, d, ldexpf(1.0f, (int)rng_below(40) - 20));
            memcpy(want, x, d * sizeof *x);
            ref_hadamard(want, d);
            transform(x, d);
            expect(memcmp(x, want, d * sizeof *x) == 0, "%s, d=%zu: differs from the spec",
                   isas[k], d);
        }
    }
}

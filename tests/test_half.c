/* test_half.c - IEEE binary16 and bfloat16 conversions, round to nearest even:
 * against the compiler's _Float16 and against the formats' definitions. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "adamas.h"
#include "reference.h"
#include "testutil.h"

TestSuite(half, .init = rng_seed_from_env);

#if defined(__FLT16_MAX__)
#define HAVE_FLOAT16 1
static uint16_t compiler_f16_bits(float x)
{
    _Float16 h = (_Float16)x;
    uint16_t bits;
    memcpy(&bits, &h, sizeof bits);
    return bits;
}

static float compiler_f16_value(uint16_t bits)
{
    _Float16 h;
    memcpy(&h, &bits, sizeof h);
    return (float)h;
}
#else
#define HAVE_FLOAT16 0
#endif

static uint32_t bits_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Same float, or both NaN of the same sign. */
static int same_float(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) && !signbit(a) == !signbit(b);
    return bits_of(a) == bits_of(b);
}

/* Same half pattern, or both NaN of the same sign (exp_mask: 0x7c00 or 0x7f80). */
static int same_half(uint16_t a, uint16_t b, uint16_t exp_mask)
{
    uint16_t man_mask = (uint16_t)~(exp_mask | 0x8000);
    int a_nan = (a & exp_mask) == exp_mask && (a & man_mask);
    int b_nan = (b & exp_mask) == exp_mask && (b & man_mask);
    if (a_nan || b_nan)
        return a_nan && b_nan && (a & 0x8000) == (b & 0x8000);
    return a == b;
}

/* Floats worth converting: random bit patterns, random values of every magnitude the
 * formats hold, and the edges. */
static float interesting_float(int i)
{
    static const float edges[] = {
        0.0f, -0.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-24f, 0x1.8p-25f, 0x1p-26f, 3 * 0x1p-25f,
        0x1.ff8p-15f, 0x1p-14f, 0x1.ffcp-15f, 65504.0f, 65519.99609375f, 65520.0f, 65536.0f,
        -65520.0f, 65505.0f, 1.0f, 1.00048828125f, 1.000732421875f, 2049.0f, 2051.0f,
        FLT_MAX, -FLT_MAX, FLT_MIN, 0x1p-149f, 0x1.fffffep-127f, INFINITY, -INFINITY, NAN,
        -NAN, 0x1.fep127f, 0x1.fefffep127f, 0x1.ff0000p127f, 0x1.0080p0f, 0x1.0180p0f,
    };
    const int n_edges = sizeof edges / sizeof edges[0];
    if (i < n_edges)
        return edges[i];
    switch (i % 3) {
    case 0: return float_of((uint32_t)rng_next());
    case 1: return ldexpf(rng_uniform(1.0f, 2.0f), (int)rng_below(50) - 30) * (rng_below(2) ? -1 : 1);
    default: return ldexpf(rng_uniform(1.0f, 2.0f), (int)rng_below(300) - 150);
    }
}

Test(half, every_f16_widens_like_the_compiler_and_the_definition)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float got = adamas_f16_to_f32((uint16_t)h);
        expect(same_float(got, ref_f16_value((uint16_t)h)), "f16 %04x -> %a, definition %a", h,
               (double)got, (double)ref_f16_value((uint16_t)h));
#if HAVE_FLOAT16
        expect(same_float(got, compiler_f16_value((uint16_t)h)), "f16 %04x -> %a, _Float16 %a", h,
               (double)got, (double)compiler_f16_value((uint16_t)h));
#endif
    }
}

Test(half, f32_to_f16_rounds_like_the_compiler_and_the_definition)
{
    for (int i = 0; i < 300000; i++) {
        float x = interesting_float(i);
        uint16_t got = adamas_f32_to_f16(x);
        expect(same_half(got, ref_f16_bits(x), 0x7c00), "%a -> f16 %04x, definition %04x",
               (double)x, got, ref_f16_bits(x));
#if HAVE_FLOAT16
        expect(same_half(got, compiler_f16_bits(x), 0x7c00), "%a -> f16 %04x, _Float16 %04x",
               (double)x, got, compiler_f16_bits(x));
#endif
    }
}

Test(half, f32_to_f16_ties_go_to_the_even_neighbour)
{
    /* the midpoint of every pair of adjacent finite halves, and the floats either side */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double lo = ref_f16_value((uint16_t)h);
        double hi = h + 1 < 0x7c00 ? ref_f16_value((uint16_t)(h + 1)) : 65536.0;
        float mid = (float)((lo + hi) / 2); /* exact: 12 significant bits */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        for (int sign = 0; sign < 2; sign++) {
            uint16_t s = sign ? 0x8000 : 0;
            float m = sign ? -mid : mid;
            expect(adamas_f32_to_f16(m) == (s | even), "tie %a -> %04x, expected %04x", (double)m,
                   adamas_f32_to_f16(m), s | even);
            float below = nextafterf(mid, 0.0f), above = nextafterf(mid, INFINITY);
            expect(adamas_f32_to_f16(sign ? -below : below) == (s | h), "%a -> %04x, expected %04x",
                   (double)below, adamas_f32_to_f16(sign ? -below : below), s | h);
            expect(adamas_f32_to_f16(sign ? -above : above) == (s | (h + 1)),
                   "%a -> %04x, expected %04x", (double)above,
                   adamas_f32_to_f16(sign ? -above : above), s | (h + 1));
        }
    }
}

Test(half, f16_overflow_starts_at_65520)
{
    expect(adamas_f32_to_f16(65504.0f) == 0x7bff, "65504 -> %04x", adamas_f32_to_f16(65504.0f));
    expect(adamas_f32_to_f16(nextafterf(65520.0f, 0.0f)) == 0x7bff, "just below 65520 -> %04x",
           adamas_f32_to_f16(nextafterf(65520.0f, 0.0f)));
    expect(adamas_f32_to_f16(65520.0f) == 0x7c00, "65520 -> %04x", adamas_f32_to_f16(65520.0f));
    expect(adamas_f32_to_f16(-65520.0f) == 0xfc00, "-65520 -> %04x", adamas_f32_to_f16(-65520.0f));
    expect(adamas_f32_to_f16(FLT_MAX) == 0x7c00, "FLT_MAX -> %04x", adamas_f32_to_f16(FLT_MAX));
    expect(adamas_f32_to_f16(INFINITY) == 0x7c00, "inf");
    expect(adamas_f32_to_f16(-INFINITY) == 0xfc00, "-inf");
    uint16_t nan = adamas_f32_to_f16(NAN);
    expect((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff), "NaN -> %04x is not a NaN", nan);
}

Test(half, f16_subnormals_round_to_multiples_of_2_to_the_minus_24)
{
    for (int i = 0; i < 100000; i++) {
        float x = rng_uniform(0.0f, 0x1p-14f);
        uint16_t h = adamas_f32_to_f16(x);
        double want = nearbyint((double)x * 0x1p24); /* ties to even */
        expect(h == (uint16_t)want, "%a -> %04x, expected %04x", (double)x, h, (unsigned)want);
    }
}

Test(half, every_bf16_widens_to_its_definition)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float got = adamas_bf16_to_f32((uint16_t)h);
        expect(same_float(got, ref_bf16_value((uint16_t)h)), "bf16 %04x -> %a, definition %a", h,
               (double)got, (double)ref_bf16_value((uint16_t)h));
        if (!isnan(got))
            expect(bits_of(got) == h << 16, "bf16 %04x -> %08x", h, bits_of(got));
    }
}

Test(half, f32_to_bf16_rounds_to_the_nearest_even)
{
    for (int i = 0; i < 300000; i++) {
        float x = interesting_float(i);
        uint16_t got = adamas_f32_to_bf16(x);
        expect(same_half(got, ref_bf16_bits(x), 0x7f80), "%a -> bf16 %04x, definition %04x",
               (double)x, got, ref_bf16_bits(x));
    }
    /* every midpoint between adjacent finite bfloats, and its neighbours */
    for (uint32_t h = 0; h < 0x7f80; h++) {
        uint32_t mid_bits = h << 16 | 0x8000;
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        expect(adamas_f32_to_bf16(float_of(mid_bits)) == even, "tie %08x -> %04x, expected %04x",
               mid_bits, adamas_f32_to_bf16(float_of(mid_bits)), even);
        expect(adamas_f32_to_bf16(float_of(mid_bits - 1)) == h, "%08x -> %04x", mid_bits - 1,
               adamas_f32_to_bf16(float_of(mid_bits - 1)));
        expect(adamas_f32_to_bf16(float_of(mid_bits + 1)) == h + 1, "%08x -> %04x", mid_bits + 1,
               adamas_f32_to_bf16(float_of(mid_bits + 1)));
        expect(adamas_f32_to_bf16(-float_of(mid_bits)) == (0x8000 | even), "tie -%08x", mid_bits);
    }
    uint16_t nan = adamas_f32_to_bf16(NAN);
    expect((nan & 0x7f80) == 0x7f80 && (nan & 0x7f), "NaN -> %04x is not a NaN", nan);
    expect(adamas_f32_to_bf16(-NAN) & 0x8000, "-NaN lost its sign");
    /* a signalling NaN whose payload sits in the dropped bits stays a NaN */
    uint16_t snan = adamas_f32_to_bf16(float_of(0x7f800001u));
    expect((snan & 0x7f80) == 0x7f80 && (snan & 0x7f), "sNaN -> %04x is not a NaN", snan);
}

Test(half, the_reference_rounding_agrees_with_the_compiler)
{
#if HAVE_FLOAT16
    /* the cache model rounds with ref_f16_bits: it must itself be right */
    for (int i = 0; i < 100000; i++) {
        float x = interesting_float(i);
        expect(same_half(ref_f16_bits(x), compiler_f16_bits(x), 0x7c00), "%a: %04x vs %04x",
               (double)x, ref_f16_bits(x), compiler_f16_bits(x));
    }
#else
    cr_skip_test("no _Float16 in this compiler");
#endif
}

/* test_codes.c - 2-bit bucket codes (DESIGN §2 "Bucketize", "Packing",
 * "Interoperability layout"): encoding, planar packing, the interleaved layout. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "reference.h"
#include "testutil.h"

TestSuite(codes, .init = rng_seed_from_env);

#define FOR_EACH_HEAD_DIM(d) for (size_t d = ADAMAS_MIN_HEAD_DIM; d <= ADAMAS_MAX_HEAD_DIM; d *= 2)
#define MAX_WORDS (2 * ADAMAS_MAX_HEAD_DIM / 64)

/* Random strictly increasing thresholds: a wide spread of scales and gaps. */
static void random_increasing(float th[3])
{
    float scale = rng_uniform(0.01f, 20.0f);
    th[0] = rng_uniform(-2.0f, 1.0f) * scale;
    th[1] = th[0] + rng_uniform(0.0f, 1.0f) * scale + 1e-3f * scale;
    th[2] = th[1] + rng_uniform(0.0f, 1.0f) * scale + 1e-3f * scale;
}

/* A planar code with random codes in every dimension (unused bits 0). */
static void random_planar(size_t d, uint64_t *planar, uint8_t *codes)
{
    for (size_t i = 0; i < d; i++)
        codes[i] = (uint8_t)rng_below(4);
    ref_pack_planar(codes, d, planar);
}

static void encode(const float *xh, size_t d, const float th[3], uint64_t *code)
{
    int st = adamas_encode_2bit(xh, d, th, code);
    expect(st == ADAMAS_OK, "adamas_encode_2bit(d=%zu): %s", d, adamas_last_error());
}

Test(codes, code_words_are_two_per_64_dimensions_rounded_up)
{
    for (size_t d = 0; d <= 2100; d++)
        expect(adamas_code_words(d) == 2 * ((d + 63) / 64), "adamas_code_words(%zu) = %zu", d,
               adamas_code_words(d));
    for (size_t d = 0; d <= 2100; d++)
        expect(adamas_interleaved_words(d) == (d % 8 ? 0 : d / 8),
               "adamas_interleaved_words(%zu) = %zu", d, adamas_interleaved_words(d));
}

Test(codes, encode_equals_the_definition_in_every_dimension)
{
    FOR_EACH_HEAD_DIM(d)
    {
        for (int trial = 0; trial < 20; trial++) {
            float th[3], xh[ADAMAS_MAX_HEAD_DIM];
            random_increasing(th);
            float spread = th[2] - th[0] + 1.0f;
            for (size_t i = 0; i < d; i++)
                xh[i] = th[1] + rng_uniform(-1.5f, 1.5f) * spread;
            uint64_t code[MAX_WORDS];
            encode(xh, d, th, code);
            for (size_t i = 0; i < d; i++) {
                unsigned want = (xh[i] > th[0]) + (xh[i] > th[1]) + (xh[i] > th[2]);
                expect(ref_planar_get(code, i) == want,
                       "d=%zu: x[%zu] = %a with thresholds {%a, %a, %a}: code %u, expected %u", d,
                       i, (double)xh[i], (double)th[0], (double)th[1], (double)th[2],
                       ref_planar_get(code, i), want);
            }
        }
    }
}

Test(codes, values_exactly_at_a_threshold_go_to_the_lower_bucket)
{
    FOR_EACH_HEAD_DIM(d)
    {
        float th[3], xh[ADAMAS_MAX_HEAD_DIM];
        random_increasing(th);
        for (size_t i = 0; i < d; i++) {
            unsigned j = rng_below(3);
            switch (rng_below(3)) {
            case 0: xh[i] = th[j]; break;                       /* at: bucket j */
            case 1: xh[i] = nextafterf(th[j], INFINITY); break;  /* just above: j + 1 */
            default: xh[i] = nextafterf(th[j], -INFINITY); break; /* just below: j */
            }
        }
        uint64_t code[MAX_WORDS];
        encode(xh, d, th, code);
        for (size_t i = 0; i < d; i++) {
            unsigned want = 0;
            while (want < 3 && xh[i] > th[want])
                want++;
            expect(ref_planar_get(code, i) == want, "d=%zu: x[%zu] = %a: code %u, expected %u", d,
                   i, (double)xh[i], ref_planar_get(code, i), want);
        }
    }
}

Test(codes, encode_packs_planes_per_the_formula_and_writes_every_word)
{
    FOR_EACH_HEAD_DIM(d)
    {
        float th[3], xh[ADAMAS_MAX_HEAD_DIM];
        random_increasing(th);
        for (size_t i = 0; i < d; i++)
            xh[i] = rng_uniform(th[0] - 1.0f, th[2] + 1.0f);
        uint8_t codes[ADAMAS_MAX_HEAD_DIM];
        ref_bucketize(xh, d, th, codes);
        uint64_t got[MAX_WORDS + 1], want[MAX_WORDS];
        poison(got, sizeof got);
        encode(xh, d, th, got);
        ref_pack_planar(codes, d, want);
        size_t words = adamas_code_words(d);
        for (size_t w = 0; w < words; w++)
            expect(got[w] == want[w], "d=%zu word %zu: %016llx, expected %016llx", d, w,
                   (unsigned long long)got[w], (unsigned long long)want[w]);
        uint64_t untouched;
        poison(&untouched, sizeof untouched);
        expect(got[words] == untouched, "d=%zu: wrote past the %zu code words", d, words);
    }
}

Test(codes, unused_bits_are_zero_for_16_and_32_dimensions)
{
    for (size_t d = 16; d <= 32; d *= 2) {
        for (int trial = 0; trial < 50; trial++) {
            float th[3] = {-1.0f, 0.0f, 1.0f}, xh[32];
            for (size_t i = 0; i < d; i++)
                xh[i] = rng_uniform(-3.0f, 3.0f);
            if (trial == 0) /* every code 3: both planes full */
                for (size_t i = 0; i < d; i++)
                    xh[i] = 5.0f;
            uint64_t code[2];
            poison(code, sizeof code);
            encode(xh, d, th, code);
            uint64_t unused = ~(uint64_t)0 << d;
            expect((code[0] & unused) == 0 && (code[1] & unused) == 0,
                   "d=%zu: bits beyond d set: %016llx %016llx", d, (unsigned long long)code[0],
                   (unsigned long long)code[1]);
        }
    }
}

Test(codes, interleaved_words_hold_dimension_i_at_bits_2i_mod_16)
{
    FOR_EACH_HEAD_DIM(d)
    {
        uint8_t codes[ADAMAS_MAX_HEAD_DIM];
        uint64_t planar[MAX_WORDS];
        uint16_t inter[ADAMAS_MAX_HEAD_DIM / 8 + 1];
        random_planar(d, planar, codes);
        poison(inter, sizeof inter);
        int st = adamas_codes_to_interleaved(planar, d, inter);
        expect(st == ADAMAS_OK, "%s", adamas_last_error());
        for (size_t w = 0; w < d / 8; w++) {
            uint16_t want = 0;
            for (size_t j = 0; j < 8; j++) {
                size_t i = 8 * w + j;
                want |= (uint16_t)((codes[i] & 1u) << (2 * j));        /* low bit  */
                want |= (uint16_t)(((codes[i] >> 1) & 1u) << (2 * j + 1)); /* high bit */
            }
            expect(inter[w] == want, "d=%zu word %zu: %04x, expected %04x", d, w, inter[w], want);
        }
        for (size_t i = 0; i < d; i++)
            expect(ref_interleaved_get(inter, i) == codes[i], "d=%zu dim %zu", d, i);
        uint16_t untouched;
        poison(&untouched, sizeof untouched);
        expect(inter[d / 8] == untouched, "d=%zu: wrote past %zu interleaved words", d, d / 8);
    }
}

Test(codes, planar_to_interleaved_and_back_is_the_identity)
{
    FOR_EACH_HEAD_DIM(d)
    {
        for (int trial = 0; trial < 10; trial++) {
            uint8_t codes[ADAMAS_MAX_HEAD_DIM];
            uint64_t planar[MAX_WORDS], back[MAX_WORDS];
            uint16_t inter[ADAMAS_MAX_HEAD_DIM / 8];
            random_planar(d, planar, codes);
            expect(adamas_codes_to_interleaved(planar, d, inter) == ADAMAS_OK, "%s",
                   adamas_last_error());
            poison(back, sizeof back);
            expect(adamas_codes_from_interleaved(inter, d, back) == ADAMAS_OK, "%s",
                   adamas_last_error());
            expect(memcmp(back, planar, adamas_code_words(d) * sizeof *back) == 0,
                   "d=%zu: planar -> interleaved -> planar changed the code", d);
        }
    }
}

Test(codes, interleaved_to_planar_and_back_is_the_identity)
{
    FOR_EACH_HEAD_DIM(d)
    {
        for (int trial = 0; trial < 10; trial++) {
            uint16_t inter[ADAMAS_MAX_HEAD_DIM / 8], back[ADAMAS_MAX_HEAD_DIM / 8];
            for (size_t w = 0; w < d / 8; w++)
                inter[w] = (uint16_t)rng_next();
            uint64_t planar[MAX_WORDS];
            poison(planar, sizeof planar);
            expect(adamas_codes_from_interleaved(inter, d, planar) == ADAMAS_OK, "%s",
                   adamas_last_error());
            for (size_t i = 0; i < d; i++)
                expect(ref_planar_get(planar, i) == ref_interleaved_get(inter, i),
                       "d=%zu dim %zu: planar %u, interleaved %u", d, i, ref_planar_get(planar, i),
                       ref_interleaved_get(inter, i));
            if (d < 64)
                expect((planar[0] | planar[1]) >> d == 0, "d=%zu: unused planar bits set", d);
            expect(adamas_codes_to_interleaved(planar, d, back) == ADAMAS_OK, "%s",
                   adamas_last_error());
            expect(memcmp(back, inter, d / 8 * sizeof *back) == 0,
                   "d=%zu: interleaved -> planar -> interleaved changed the code", d);
        }
    }
}

Test(codes, encoding_the_transform_of_a_key_matches_the_cache)
{
    /* The code the cache stores for a key is the code of its transform with the cache's
     * key thresholds: the public pieces compose to what append does. */
    FOR_EACH_HEAD_DIM(d)
    {
        adamas_cache_config cfg = adamas_cache_config_default(1, 1, (uint32_t)d, 1);
        random_increasing(cfg.k_thresholds);
        adamas_cache *c;
        expect(adamas_cache_create(&cfg, &c) == ADAMAS_OK, "%s", adamas_last_error());
        float k[ADAMAS_MAX_HEAD_DIM], v[ADAMAS_MAX_HEAD_DIM];
        rng_fill_normal(k, d, 3.0f);
        rng_fill_normal(v, d, 1.0f);
        expect(adamas_cache_append(c, k, v, 1) == ADAMAS_OK, "%s", adamas_last_error());
        uint64_t stored[MAX_WORDS], mine[MAX_WORDS];
        expect(adamas_cache_code(c, 0, 0, stored) == ADAMAS_OK, "%s", adamas_last_error());
        expect(adamas_hadamard_f32(k, d) == ADAMAS_OK, "%s", adamas_last_error());
        encode(k, d, cfg.k_thresholds, mine);
        expect(memcmp(stored, mine, adamas_code_words(d) * sizeof *mine) == 0, "d=%zu", d);
        adamas_cache_destroy(c);
    }
}

Test(codes, every_isa_encodes_per_the_definition)
{
    const char *isas[] = {"scalar", "avx2", "avx512", "neon"};
    for (int k = 0; k < 4; k++) {
        if (!adamas_isa_available(isas[k]))
            continue;
        expect(adamas_set_isa(isas[k]) == ADAMAS_OK, "%s: %s", isas[k], adamas_last_error());
        FOR_EACH_HEAD_DIM(d)
        {
            float th[3], xh[ADAMAS_MAX_HEAD_DIM];
            random_increasing(th);
            for (size_t i = 0; i < d; i++)
                xh[i] = rng_below(8) ? rng_uniform(th[0] - 1.0f, th[2] + 1.0f) : th[rng_below(3)];
            uint8_t codes[ADAMAS_MAX_HEAD_DIM];
            uint64_t got[MAX_WORDS], want[MAX_WORDS];
            ref_bucketize(xh, d, th, codes);
            ref_pack_planar(codes, d, want);
            poison(got, sizeof got);
            encode(xh, d, th, got);
            expect(memcmp(got, want, adamas_code_words(d) * sizeof *got) == 0,
                   "%s, d=%zu: code differs from the definition", isas[k], d);
        }
    }
}

/* test_distance.c - code distances (DESIGN §2 "Distance"): exact L1 through the
 * thermometer planes, the paper's weighted XOR, and the scan kernel of the scalar
 * table that every ISA is compared with. */
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "kernels.h"
#include "reference.h"
#include "testutil.h"

TestSuite(distance, .init = rng_seed_from_env);

#define FOR_EACH_HEAD_DIM(d) for (size_t d = ADAMAS_MIN_HEAD_DIM; d <= ADAMAS_MAX_HEAD_DIM; d *= 2)
#define MAX_WORDS (2 * ADAMAS_MAX_HEAD_DIM / 64)

/* Random codes 0..3 in c[d]. */
static void random_codes(uint8_t *c, size_t d)
{
    for (size_t i = 0; i < d; i++)
        c[i] = (uint8_t)rng_below(4);
}

Test(distance, l1_equals_the_sum_of_absolute_code_differences)
{
    FOR_EACH_HEAD_DIM(d)
    {
        for (int trial = 0; trial < 50; trial++) {
            uint8_t a[ADAMAS_MAX_HEAD_DIM], b[ADAMAS_MAX_HEAD_DIM];
            uint64_t pa[MAX_WORDS], pb[MAX_WORDS];
            random_codes(a, d);
            if (trial % 2) /* close codes too: a few dimensions changed */
                for (size_t i = 0; i < d; i++)
                    b[i] = rng_below(8) ? a[i] : (uint8_t)rng_below(4);
            else
                random_codes(b, d);
            ref_pack_planar(a, d, pa);
            ref_pack_planar(b, d, pb);
            uint32_t got = adamas_l1_distance(pa, pb, d), want = ref_l1(a, b, d);
            expect(got == want, "d=%zu: L1 = %u, expected %u", d, got, want);
            expect(adamas_l1_distance(pb, pa, d) == want, "d=%zu: L1 not symmetric", d);
        }
    }
}

Test(distance, every_pair_of_codes_has_its_l1_and_xorw_distance)
{
    FOR_EACH_HEAD_DIM(d)
    {
        for (unsigned ca = 0; ca < 4; ca++)
            for (unsigned cb = 0; cb < 4; cb++) {
                /* one random dimension holds the pair, the others agree */
                uint8_t a[ADAMAS_MAX_HEAD_DIM], b[ADAMAS_MAX_HEAD_DIM];
                random_codes(a, d);
                memcpy(b, a, d);
                size_t i = rng_below((uint32_t)d);
                a[i] = (uint8_t)ca;
                b[i] = (uint8_t)cb;
                uint64_t pa[MAX_WORDS], pb[MAX_WORDS];
                ref_pack_planar(a, d, pa);
                ref_pack_planar(b, d, pb);
                uint32_t l1 = ca > cb ? ca - cb : cb - ca;
                uint32_t xorw = ((ca ^ cb) & 1) + 2 * (((ca ^ cb) >> 1) & 1);
                expect(adamas_l1_distance(pa, pb, d) == l1, "d=%zu pair (%u,%u): L1 %u, expected %u",
                       d, ca, cb, adamas_l1_distance(pa, pb, d), l1);
                expect(adamas_xorw_distance(pa, pb, d) == xorw,
                       "d=%zu pair (%u,%u): XORW %u, expected %u", d, ca, cb,
                       adamas_xorw_distance(pa, pb, d), xorw);
                /* the same pair in every dimension */
                memset(a, (int)ca, d);
                memset(b, (int)cb, d);
                ref_pack_planar(a, d, pa);
                ref_pack_planar(b, d, pb);
                expect(adamas_l1_distance(pa, pb, d) == l1 * d, "d=%zu all (%u,%u): L1 %u", d, ca,
                       cb, adamas_l1_distance(pa, pb, d));
                expect(adamas_xorw_distance(pa, pb, d) == xorw * d, "d=%zu all (%u,%u): XORW %u",
                       d, ca, cb, adamas_xorw_distance(pa, pb, d));
            }
    }
}

Test(distance, xorw_equals_its_definition_and_l1_except_for_the_pair_1_2)
{
    FOR_EACH_HEAD_DIM(d)
    {
        for (int trial = 0; trial < 50; trial++) {
            uint8_t a[ADAMAS_MAX_HEAD_DIM], b[ADAMAS_MAX_HEAD_DIM];
            uint64_t pa[MAX_WORDS], pb[MAX_WORDS];
            random_codes(a, d);
            random_codes(b, d);
            ref_pack_planar(a, d, pa);
            ref_pack_planar(b, d, pb);
            uint32_t xorw = adamas_xorw_distance(pa, pb, d);
            expect(xorw == ref_xorw(a, b, d), "d=%zu: XORW %u, expected %u", d, xorw,
                   ref_xorw(a, b, d));
            /* popcount(lo_a ^ lo_b) + 2 * popcount(hi_a ^ hi_b) over the planes */
            uint32_t planes = 0;
            for (size_t w = 0; w < adamas_code_words(d); w += 2)
                planes += (uint32_t)__builtin_popcountll(pa[w] ^ pb[w]) +
                          2 * (uint32_t)__builtin_popcountll(pa[w + 1] ^ pb[w + 1]);
            expect(xorw == planes, "d=%zu: XORW %u, planes give %u", d, xorw, planes);
            uint32_t one_two = 0;
            for (size_t i = 0; i < d; i++)
                one_two += (a[i] == 1 && b[i] == 2) || (a[i] == 2 && b[i] == 1);
            uint32_t l1 = adamas_l1_distance(pa, pb, d);
            expect(xorw == l1 + 2 * one_two, "d=%zu: XORW %u, L1 %u, %u pairs {1,2}", d, xorw, l1,
                   one_two);
        }
    }
}

Test(distance, extreme_codes_are_3d_apart)
{
    FOR_EACH_HEAD_DIM(d)
    {
        uint8_t zeros[ADAMAS_MAX_HEAD_DIM] = {0}, threes[ADAMAS_MAX_HEAD_DIM];
        memset(threes, 3, sizeof threes);
        uint64_t pa[MAX_WORDS], pb[MAX_WORDS];
        ref_pack_planar(zeros, d, pa);
        ref_pack_planar(threes, d, pb);
        expect(adamas_l1_distance(pa, pb, d) == 3 * d, "d=%zu", d);
        expect(adamas_l1_distance(pb, pb, d) == 0, "d=%zu", d);
    }
}

/* The scalar scan of n random codes against one query, with and without a histogram. */
static void check_scan(adamas_metric metric, size_t d, uint32_t n)
{
    size_t words = adamas_code_words(d);
    uint8_t *codes = malloc(n * d), q[ADAMAS_MAX_HEAD_DIM];
    uint64_t *packed = malloc(n * words * sizeof *packed), qp[MAX_WORDS];
    uint16_t *dist = malloc((n + 1) * sizeof *dist);
    uint32_t *hist = malloc((3 * d + 1) * sizeof *hist), *base = malloc((3 * d + 1) * sizeof *base);
    random_codes(q, d);
    ref_pack_planar(q, d, qp);
    for (uint32_t j = 0; j < n; j++) {
        if (rng_below(4) == 0)
            memcpy(codes + j * d, q, d); /* distance 0 */
        else
            random_codes(codes + j * d, d);
        ref_pack_planar(codes + j * d, d, packed + j * words);
    }
    for (size_t v = 0; v <= 3 * d; v++)
        base[v] = hist[v] = rng_below(1000); /* the scan adds to what is there */
    poison(dist, (n + 1) * sizeof *dist);

    adamas_kernels_scalar.scan[metric](qp, packed, words, n, dist, hist);
    for (uint32_t j = 0; j < n; j++) {
        uint32_t want = metric == ADAMAS_METRIC_L1 ? ref_l1(q, codes + j * d, d)
                                                   : ref_xorw(q, codes + j * d, d);
        expect(dist[j] == want, "metric %d, d=%zu, token %u: %u, expected %u", (int)metric, d, j,
               dist[j], want);
        base[want]++;
    }
    uint16_t untouched;
    poison(&untouched, sizeof untouched);
    expect(dist[n] == untouched, "the scan wrote past dist[%u]", n);
    for (size_t v = 0; v <= 3 * d; v++)
        expect(hist[v] == base[v], "metric %d, d=%zu: hist[%zu] = %u, expected %u", (int)metric, d,
               v, hist[v], base[v]);

    uint16_t *again = malloc(n * sizeof *again);
    adamas_kernels_scalar.scan[metric](qp, packed, words, n, again, NULL);
    expect(memcmp(again, dist, n * sizeof *again) == 0, "scan without a histogram differs");
    free(again);
    free(codes);
    free(packed);
    free(dist);
    free(hist);
    free(base);
}

Test(distance, scalar_scan_gives_every_distance_and_counts_them_in_the_histogram)
{
    FOR_EACH_HEAD_DIM(d)
    {
        check_scan(ADAMAS_METRIC_L1, d, 1 + rng_below(300));
        check_scan(ADAMAS_METRIC_XORW, d, 1 + rng_below(300));
    }
    check_scan(ADAMAS_METRIC_L1, 64, 0); /* no tokens: nothing written */
}

/*
 * test_simd.c - every SIMD kernel against the scalar specification.
 *
 * For each kernel table this machine can run (and the variants a table chooses
 * between at run time: the AVX-512 scan without VPOPCNTQ, the polynomial exp used
 * when SLEEF is absent), on random inputs of every head dimension, with unaligned
 * pointers and lengths that are not multiples of the vector width:
 *   - hadamard, encode, hadamard_encode, scan (distances and histogram), dot,
 *     page_score and the Q8_0 dot are bit-identical to the scalar entries, and so is
 *     the grouped scan for every group size; Q8_0 widening is exact;
 *   - axpy, and the grouped dot and axpy for every group size, are bit-identical
 *     too (fused multiply-adds, as the scalar code's fmaf); exp_sum is within 1e-6
 *     relative;
 * and through the public API, with the ISA forced, decode selects the same tokens as
 * the scalar kernels and its outputs are within 1e-6 relative.
 * Every test logs (cr_log_info, --verbose) which ISAs it could not run here, and one
 * test per ISA is skipped, visibly, where that ISA cannot run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../simd/simd.h"
#include "adamas.h"
#include "kernels.h"
#include "testutil.h"

/* ------------------------------------------------------------------ variants */

typedef struct {
    char name[32];
    adamas_kernels k;
} variant;

#define MAX_VARIANTS 8

static const char *const isa_names[] = {"avx2", "avx512", "neon"};

/* The tables to test against scalar; logs (once per test) what cannot run here. */
static size_t runnable_variants(variant out[MAX_VARIANTS], const char *test)
{
    size_t n = 0;
    char missing[160] = "";
    for (size_t i = 0; i < sizeof isa_names / sizeof isa_names[0]; i++) {
        const adamas_kernels *k = adamas_kernels_by_name(isa_names[i]);
        if (!k) {
            strncat(missing, " ", sizeof missing - strlen(missing) - 1);
            strncat(missing, isa_names[i], sizeof missing - strlen(missing) - 1);
            continue;
        }
        snprintf(out[n].name, sizeof out[n].name, "%s", isa_names[i]);
        out[n++].k = *k;
#ifdef ADAMAS_HAVE_AVX512
        if (strcmp(isa_names[i], "avx512") == 0) {
            /* the table scans with VPOPCNTQ where the CPU has it: test the other too */
            snprintf(out[n].name, sizeof out[n].name, "avx512-vpshufb");
            out[n].k = *k;
            out[n].k.scan[ADAMAS_METRIC_L1] = adamas_scan_l1_avx512_vpshufb;
            out[n].k.scan[ADAMAS_METRIC_XORW] = adamas_scan_xorw_avx512_vpshufb;
            out[n].k.scan_group[ADAMAS_METRIC_L1] = adamas_scan_group_l1_avx512_vpshufb;
            out[n++].k.scan_group[ADAMAS_METRIC_XORW] = adamas_scan_group_xorw_avx512_vpshufb;
            if (!adamas_avx512_has_vpopcntdq())
                strncat(missing, " avx512-vpopcnt", sizeof missing - strlen(missing) - 1);
        }
#endif
#ifdef ADAMAS_HAVE_SLEEF
        /* the table uses SLEEF's exp: test the fallback polynomial as well */
        float (*poly)(float *, size_t, float) = NULL;
#ifdef ADAMAS_HAVE_AVX2
        if (strcmp(isa_names[i], "avx2") == 0)
            poly = adamas_exp_sum_avx2_poly;
#endif
#ifdef ADAMAS_HAVE_AVX512
        if (strcmp(isa_names[i], "avx512") == 0)
            poly = adamas_exp_sum_avx512_poly;
#endif
#ifdef ADAMAS_HAVE_NEON
        if (strcmp(isa_names[i], "neon") == 0)
            poly = adamas_exp_sum_neon_poly;
#endif
        if (poly) {
            snprintf(out[n].name, sizeof out[n].name, "%s-poly-exp", isa_names[i]);
            out[n].k = *k;
            out[n++].k.exp_sum = poly;
        }
#endif
    }
    char tested[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(tested, " ", sizeof tested - strlen(tested) - 1);
        strncat(tested, out[i].name, sizeof tested - strlen(tested) - 1);
    }
    cr_log_info("%s: tested against scalar:%s", test, n ? tested : " none");
    if (*missing)
        cr_log_info("%s: not run here (not built, or this CPU lacks it):%s", test, missing);
    return n;
}

/* One visible line per ISA in the summary: passed where it is tested, skipped (with
 * the reason) where it is not. */
static void isa_is_tested_here(const char *name)
{
    if (!adamas_isa_available(name))
        cr_skip_test("%s: not in this build or not on this CPU: its kernels are not tested here",
                     name);
}

Test(simd, avx2_kernels_are_tested_here)
{
    isa_is_tested_here("avx2");
}

Test(simd, avx512_kernels_are_tested_here)
{
    isa_is_tested_here("avx512");
}

Test(simd, avx512_vpopcnt_scan_is_tested_here)
{
    isa_is_tested_here("avx512");
#ifdef ADAMAS_HAVE_AVX512
    if (!adamas_avx512_has_vpopcntdq())
        cr_skip_test("this CPU lacks AVX512_VPOPCNTDQ: only the vpshufb scan is tested");
#endif
}

Test(simd, neon_kernels_are_tested_here)
{
    isa_is_tested_here("neon");
}

#define FOR_EACH_VARIANT(v, test)                                                     \
    variant variants_[MAX_VARIANTS];                                                  \
    size_t n_variants_ = runnable_variants(variants_, test);                          \
    if (n_variants_ == 0)                                                             \
        cr_skip_test("no SIMD kernel table runs on this machine (see the log line)"); \
    for (const variant *v = variants_; v < variants_ + n_variants_; v++)

/* ------------------------------------------------------------------- helpers */

static const size_t head_dims[] = {16, 32, 64, 128, 256, 512, 1024};
#define N_DIMS (sizeof head_dims / sizeof head_dims[0])

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* Index of the first element whose bits differ, or n.  Two NaNs count as equal: C
 * lets a compiler swap the operands of an addition, and which NaN's sign and payload
 * an addition passes on depends on that order, so they are outside the contract (the
 * API refuses the inputs that overflow to them). */
static size_t first_bit_difference(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f32_bits(a[i]) != f32_bits(b[i]) && !(isnan(a[i]) && isnan(b[i])))
            return i;
    return n;
}

/* An allocation of n elements of `size` bytes that starts `skew` bytes past a
 * 64-byte boundary, so that vector loads of it are unaligned; free with free_skewed. */
static void *alloc_skewed(size_t n, size_t size, size_t skew)
{
    unsigned char *base = aligned_alloc(64, ((n * size + skew + 64) / 64 + 1) * 64);
    cr_assert(base);
    return base + skew;
}

static void free_skewed(void *p, size_t skew)
{
    free((unsigned char *)p - skew);
}

static void fill_normal(float *x, size_t n, float scale)
{
    rng_fill_normal(x, n, scale);
}

/* ------------------------------------------------------------------ Hadamard */

/* Scales of the random inputs: ordinary, tiny (subnormal sums), and huge (the sums
 * overflow to infinity, and later stages make NaN: infinities must agree to the bit,
 * NaNs as NaNs). */
static const float input_scales[] = {1.0f, 1e-3f, 1e3f, 1e-40f, 1e37f, 3e38f};
#define N_SCALES (sizeof input_scales / sizeof input_scales[0])

Test(simd, hadamard_is_bit_identical_to_scalar_for_every_head_dim)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "hadamard")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di];
            float *x = alloc_skewed(d, sizeof(float), 4), *ref = malloc(d * sizeof *ref);
            for (size_t s = 0; s < N_SCALES; s++)
                for (int trial = 0; trial < 3; trial++) {
                    fill_normal(x, d, input_scales[s]);
                    memcpy(ref, x, d * sizeof *x);
                    adamas_hadamard_scalar(ref, d);
                    v->k.hadamard(x, d);
                    size_t i = first_bit_difference(x, ref, d);
                    expect(i == d, "%s hadamard d=%zu scale=%g: x[%zu] = %a, scalar %a", v->name, d,
                           (double)input_scales[s], i, (double)x[i % d], (double)ref[i % d]);
                }
            free_skewed(x, 4);
            free(ref);
        }
    }
}

/* ------------------------------------------------------------------- encode */

/* Thresholds: the defaults, random increasing ones, equal ones, and decreasing ones
 * (the kernels must reproduce the scalar sum of comparisons for any thresholds). */
static void pick_thresholds(int kind, float th[3])
{
    switch (kind) {
    case 0: th[0] = -10.0f, th[1] = 0.0f, th[2] = 10.0f; break;
    case 1: {
        float a = rng_uniform(-1.0f, 0.0f), b = rng_uniform(-0.2f, 0.2f), c = rng_uniform(0.0f, 1.0f);
        th[0] = a, th[1] = b > a ? b : a + 0.1f, th[2] = c > th[1] ? c : th[1] + 0.1f;
        break;
    }
    case 2: th[0] = th[1] = th[2] = 0.0f; break;
    default: th[0] = 0.5f, th[1] = 0.0f, th[2] = -0.5f; break;
    }
}

/* Random values, some exactly on a threshold or a signed zero. */
static void fill_for_encode(float *x, size_t d, const float th[3])
{
    fill_normal(x, d, 0.7f);
    for (size_t i = 0; i < d; i++) {
        uint32_t r = rng_below(16);
        if (r < 3)
            x[i] = th[r];
        else if (r == 3)
            x[i] = -0.0f;
        else if (r == 4)
            x[i] = 0.0f;
    }
}

Test(simd, encode_is_bit_identical_to_scalar_for_any_thresholds)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "encode")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di], words = adamas_code_words(d);
            float *x = alloc_skewed(d, sizeof(float), 4);
            uint64_t *code = alloc_skewed(words, sizeof(uint64_t), 8), *ref = malloc(words * 8);
            for (int kind = 0; kind < 4; kind++)
                for (int trial = 0; trial < 4; trial++) {
                    float th[3];
                    pick_thresholds(kind, th);
                    fill_for_encode(x, d, th);
                    poison(code, words * 8);
                    poison(ref, words * 8);
                    adamas_encode_scalar(x, d, th, ref);
                    v->k.encode(x, d, th, code);
                    expect(memcmp(code, ref, words * 8) == 0,
                           "%s encode d=%zu thresholds {%g, %g, %g}: codes differ", v->name, d,
                           (double)th[0], (double)th[1], (double)th[2]);
                }
            free_skewed(x, 4);
            free_skewed(code, 8);
            free(ref);
        }
    }
}

Test(simd, hadamard_encode_is_bit_identical_to_scalar)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "hadamard_encode")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di], words = adamas_code_words(d);
            float *x = alloc_skewed(d, sizeof(float), 12), *ref = malloc(d * sizeof *ref);
            uint64_t *code = alloc_skewed(words, sizeof(uint64_t), 8), *ref_code = malloc(words * 8);
            for (int kind = 0; kind < 4; kind++)
                for (int trial = 0; trial < 4; trial++) {
                    float th[3];
                    pick_thresholds(kind, th);
                    fill_normal(x, d, trial == 3 ? 1e37f : 1.0f);
                    memcpy(ref, x, d * sizeof *x);
                    poison(code, words * 8);
                    poison(ref_code, words * 8);
                    adamas_hadamard_encode_scalar(ref, d, th, ref_code);
                    v->k.hadamard_encode(x, d, th, code);
                    size_t i = first_bit_difference(x, ref, d);
                    expect(i == d, "%s hadamard_encode d=%zu: x[%zu] = %a, scalar %a", v->name, d,
                           i, (double)x[i % d], (double)ref[i % d]);
                    expect(memcmp(code, ref_code, words * 8) == 0,
                           "%s hadamard_encode d=%zu: codes differ", v->name, d);
                }
            free_skewed(x, 12);
            free(ref);
            free_skewed(code, 8);
            free(ref_code);
        }
    }
}

/* --------------------------------------------------------------------- scan */

/* Key counts around every vector width and batch size, and one long run. */
static const size_t scan_lengths[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 63, 65, 100, 1027};
#define N_LENGTHS (sizeof scan_lengths / sizeof scan_lengths[0])

/* Planar code of codes2[d] (values 0..3). */
static void pack_codes(const unsigned char *c, size_t d, uint64_t *code)
{
    memset(code, 0, adamas_code_words(d) * sizeof *code);
    for (size_t i = 0; i < d; i++) {
        code[2 * (i / 64)] |= (uint64_t)(c[i] & 1) << (i % 64);
        code[2 * (i / 64) + 1] |= (uint64_t)(c[i] >> 1) << (i % 64);
    }
}

/* Runs one scan of the variant and of scalar on the same inputs, with and without a
 * histogram, and compares distances and histograms. */
static void check_scan(const variant *v, int metric, const uint64_t *q, const uint64_t *codes,
                       size_t words, size_t n, const char *what)
{
    size_t nbins = 96 * words + 1; /* any bits set: at most 3*64 per group */
    uint16_t *dist = alloc_skewed(n + 1, sizeof(uint16_t), 2), *ref = malloc((n + 1) * 2);
    uint32_t *hist = malloc(nbins * 4), *ref_hist = malloc(nbins * 4);
    for (size_t b = 0; b < nbins; b++)
        hist[b] = ref_hist[b] = rng_below(5);
    /* a guard element after the last distance */
    dist[n] = 0x5a5a;
    adamas_kernels_scalar.scan[metric](q, codes, words, n, ref, ref_hist);
    v->k.scan[metric](q, codes, words, n, dist, hist);
    size_t i = 0;
    while (i < n && dist[i] == ref[i])
        i++;
    expect(i == n, "%s scan %s words=%zu n=%zu (%s): dist[%zu] = %u, scalar %u", v->name,
           metric ? "xorw" : "l1", words, n, what, i, i < n ? dist[i] : 0, i < n ? ref[i] : 0);
    expect(dist[n] == 0x5a5a, "%s scan: wrote past dist[%zu]", v->name, n);
    expect(memcmp(hist, ref_hist, nbins * 4) == 0, "%s scan %s words=%zu n=%zu (%s): histograms differ",
           v->name, metric ? "xorw" : "l1", words, n, what);

    poison(dist, n * 2);
    v->k.scan[metric](q, codes, words, n, dist, NULL);
    expect(n == 0 || memcmp(dist, ref, n * 2) == 0, "%s scan %s words=%zu n=%zu (%s, no histogram): distances differ",
           v->name, metric ? "xorw" : "l1", words, n, what);
    free_skewed(dist, 2);
    free(ref);
    free(hist);
    free(ref_hist);
}

Test(simd, scan_distances_and_histogram_are_identical_to_scalar)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "scan")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di], words = adamas_code_words(d);
            uint64_t *q = alloc_skewed(words, 8, 8);
            for (size_t li = 0; li < N_LENGTHS; li++) {
                size_t n = scan_lengths[li];
                uint64_t *codes = alloc_skewed(n * words + 1, 8, 8);
                for (size_t w = 0; w < words; w++)
                    q[w] = rng_next();
                for (size_t w = 0; w < n * words; w++)
                    codes[w] = rng_next(); /* every bit, unused dimensions too */
                for (int metric = 0; metric < 2; metric++)
                    check_scan(v, metric, q, codes, words, n, "random bits");
                free_skewed(codes, 8);
            }
            free_skewed(q, 8);
        }
    }
}

/* Query dimension i has code i%4, key j's dimension i has code (i/4 + j)%4: every one
 * of the 16 code pairs occurs in every key of every d; also checked against |a-b|. */
Test(simd, scan_counts_all_sixteen_code_pairs_exactly)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "scan code pairs")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di], words = adamas_code_words(d), n = 37;
            unsigned char c[ADAMAS_MAX_HEAD_DIM], kc[ADAMAS_MAX_HEAD_DIM];
            uint64_t *q = alloc_skewed(words, 8, 8), *codes = alloc_skewed(n * words, 8, 24);
            for (size_t i = 0; i < d; i++)
                c[i] = (unsigned char)(i % 4);
            pack_codes(c, d, q);
            uint32_t want_l1[37], want_xorw[37];
            for (size_t j = 0; j < n; j++) {
                want_l1[j] = want_xorw[j] = 0;
                for (size_t i = 0; i < d; i++) {
                    kc[i] = (unsigned char)((i / 4 + j) % 4);
                    unsigned x = c[i] ^ kc[i];
                    want_l1[j] += (unsigned)abs((int)c[i] - (int)kc[i]);
                    want_xorw[j] += (x & 1) + 2 * (x >> 1);
                }
                pack_codes(kc, d, codes + j * words);
            }
            uint16_t dist[37];
            v->k.scan[ADAMAS_METRIC_L1](q, codes, words, n, dist, NULL);
            for (size_t j = 0; j < n; j++)
                expect(dist[j] == want_l1[j], "%s l1 d=%zu key %zu: %u, want %u", v->name, d, j,
                       dist[j], want_l1[j]);
            v->k.scan[ADAMAS_METRIC_XORW](q, codes, words, n, dist, NULL);
            for (size_t j = 0; j < n; j++)
                expect(dist[j] == want_xorw[j], "%s xorw d=%zu key %zu: %u, want %u", v->name, d,
                       j, dist[j], want_xorw[j]);
            for (int metric = 0; metric < 2; metric++)
                check_scan(v, metric, q, codes, words, n, "all code pairs");
            /* one pair (a, b) in every dimension: distance d*|a-b| (L1) */
            for (unsigned a = 0; a < 4; a++)
                for (unsigned b = 0; b < 4; b++) {
                    memset(c, (int)a, d);
                    memset(kc, (int)b, d);
                    pack_codes(c, d, q);
                    pack_codes(kc, d, codes);
                    v->k.scan[ADAMAS_METRIC_L1](q, codes, words, 1, dist, NULL);
                    expect(dist[0] == d * (a > b ? a - b : b - a), "%s l1 d=%zu pair (%u,%u): %u",
                           v->name, d, a, b, dist[0]);
                    v->k.scan[ADAMAS_METRIC_XORW](q, codes, words, 1, dist, NULL);
                    expect(dist[0] == d * (((a ^ b) & 1) + 2 * ((a ^ b) >> 1)),
                           "%s xorw d=%zu pair (%u,%u): %u", v->name, d, a, b, dist[0]);
                }
            free_skewed(q, 8);
            free_skewed(codes, 24);
        }
    }
}

/* Every key at the same distance: one histogram bin takes every increment. */
Test(simd, scan_histogram_survives_one_heavy_bin)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "scan heavy histogram")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di], words = adamas_code_words(d), n = 4099;
            uint64_t *q = alloc_skewed(words, 8, 8), *codes = alloc_skewed(n * words, 8, 8);
            for (size_t w = 0; w < words; w++)
                q[w] = rng_next();
            for (size_t j = 0; j < n; j++)
                for (size_t w = 0; w < words; w++)
                    codes[j * words + w] = j % 7 == 0 ? rng_next() : q[w] ^ (w == 0 ? 5 : 0);
            for (int metric = 0; metric < 2; metric++)
                check_scan(v, metric, q, codes, words, n, "heavy bin");
            free_skewed(q, 8);
            free_skewed(codes, 8);
        }
    }
}

/* Group sizes of the grouped kernels: below, at and above the heads of one pass. */
#define MAX_GROUP 8

/* The grouped scan of `heads` query codes against what kernels.h says it writes, built
 * from the distances of the scalar single-head scan, dense (dist) or sparse (hits):
 * with rows further apart than they are long (as in the workspace), poisoned beyond
 * what the scan may write, counts and histograms that do not start at zero, and the
 * keys at a random position. */
static void check_scan_group_limited(const variant *v, int metric, const uint64_t *q,
                                     size_t heads, const uint64_t *codes, size_t words, size_t n,
                                     const uint16_t *limit, int dense)
{
    const size_t nbins = 96 * words + 1, hist_stride = nbins + 5, stride = n + 7;
    const uint32_t first = rng_below((uint32_t)(65536 - n + 1));
    uint32_t *hits = alloc_skewed(heads * stride, 4, 4), *want_hits = malloc(heads * stride * 4);
    uint16_t *dist = alloc_skewed(heads * stride, 2, 2), *want_dist = malloc(heads * stride * 2);
    uint32_t *hist = malloc(heads * hist_stride * 4), *want_hist = malloc(heads * hist_stride * 4);
    uint16_t *one = malloc(n * 2 + 2);
    uint32_t n_hits[MAX_GROUP], want_n[MAX_GROUP];
    poison(hits, heads * stride * 4);
    memcpy(want_hits, hits, heads * stride * 4);
    poison(dist, heads * stride * 2);
    memcpy(want_dist, dist, heads * stride * 2);
    for (size_t b = 0; b < heads * hist_stride; b++)
        hist[b] = want_hist[b] = rng_below(5);
    for (size_t h = 0; h < heads; h++) {
        n_hits[h] = want_n[h] = rng_below(8); /* lists already holding some hits */
        adamas_kernels_scalar.scan[metric](q + h * words, codes, words, n, one, NULL);
        for (size_t j = 0; j < n; j++) {
            if (dense)
                want_dist[h * stride + j] = one[j];
            if (one[j] <= limit[h]) {
                want_hist[h * hist_stride + one[j]]++;
                if (!dense)
                    want_hits[h * stride + want_n[h]++] = (first + (uint32_t)j) << 16 | one[j];
            }
        }
    }
    v->k.scan_group[metric](q, words, heads, codes, words, n, limit, hist, hist_stride,
                            dense ? dist : NULL, stride, first, hits, stride, n_hits);
    const char *mode = dense ? "dense" : "sparse";
    for (size_t h = 0; h < heads; h++) {
        expect(n_hits[h] == want_n[h],
               "%s scan_group %s %s words=%zu heads=%zu n=%zu: head %zu has %u hits, want %u",
               v->name, mode, metric ? "xorw" : "l1", words, heads, n, h, n_hits[h], want_n[h]);
        size_t i = 0;
        while (i < stride && hits[h * stride + i] == want_hits[h * stride + i])
            i++;
        expect(i == stride,
               "%s scan_group %s %s words=%zu heads=%zu n=%zu limit %u: head %zu hit %zu = "
               "0x%08x, want 0x%08x (a written poison: past its hits)",
               v->name, mode, metric ? "xorw" : "l1", words, heads, n, limit[h], h, i,
               hits[h * stride + i % stride], want_hits[h * stride + i % stride]);
        i = 0;
        while (i < stride && dist[h * stride + i] == want_dist[h * stride + i])
            i++;
        expect(i == stride,
               "%s scan_group %s %s words=%zu heads=%zu n=%zu: head %zu dist[%zu] = %u, want %u",
               v->name, mode, metric ? "xorw" : "l1", words, heads, n, h, i,
               dist[h * stride + i % stride], want_dist[h * stride + i % stride]);
    }
    expect(memcmp(hist, want_hist, heads * hist_stride * 4) == 0,
           "%s scan_group %s %s words=%zu heads=%zu n=%zu: histograms differ", v->name, mode,
           metric ? "xorw" : "l1", words, heads, n);
    free_skewed(hits, 4);
    free_skewed(dist, 2);
    free(want_hits);
    free(want_dist);
    free(hist);
    free(want_hist);
    free(one);
}

static void check_scan_group(const variant *v, int metric, const uint64_t *q, size_t heads,
                             const uint64_t *codes, size_t words, size_t n)
{
    uint16_t limit[MAX_GROUP];
    for (size_t h = 0; h < heads; h++)
        limit[h] = UINT16_MAX;
    for (int dense = 0; dense < 2; dense++)
        check_scan_group_limited(v, metric, q, heads, codes, words, n, limit, dense);
    /* limits from none counted to all, around the middle of the distances (64*words) */
    for (size_t h = 0; h < heads; h++) {
        uint32_t pick = rng_below(8);
        limit[h] = pick == 0 ? 0 : pick == 1 ? UINT16_MAX : (uint16_t)rng_below(96 * words + 1);
    }
    for (int dense = 0; dense < 2; dense++)
        check_scan_group_limited(v, metric, q, heads, codes, words, n, limit, dense);
}

Test(simd, grouped_scan_is_identical_to_scalar_for_every_group_size)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "scan_group")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di], words = adamas_code_words(d);
            uint64_t *q = alloc_skewed(MAX_GROUP * words, 8, 8);
            for (size_t li = 0; li < N_LENGTHS; li++) {
                size_t n = scan_lengths[li];
                uint64_t *codes = alloc_skewed(n * words + 1, 8, 8);
                for (size_t w = 0; w < n * words; w++)
                    codes[w] = rng_next();
                for (size_t heads = 1; heads <= MAX_GROUP; heads++) {
                    for (size_t w = 0; w < heads * words; w++)
                        q[w] = rng_next();
                    for (int metric = 0; metric < 2; metric++)
                        check_scan_group(v, metric, q, heads, codes, words, n);
                }
                free_skewed(codes, 8);
            }
            free_skewed(q, 8);
        }
    }
}

/* Keys near the query: distances crowd into few bins, and the histograms of the
 * heads of a group take increments back to back. */
Test(simd, grouped_scan_histograms_survive_crowded_bins)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "scan_group crowded")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di], words = adamas_code_words(d), n = 4099;
            uint64_t *q = alloc_skewed(MAX_GROUP * words, 8, 8), *codes = alloc_skewed(n * words, 8, 8);
            for (size_t w = 0; w < MAX_GROUP * words; w++)
                q[w] = w < words ? rng_next() : q[w % words] ^ (rng_below(4) == 0 ? 3 : 0);
            for (size_t j = 0; j < n; j++)
                for (size_t w = 0; w < words; w++)
                    codes[j * words + w] = q[w] ^ (rng_below(8) == 0 ? rng_next() & 0x11 : 0);
            for (int metric = 0; metric < 2; metric++)
                for (size_t heads = 1; heads <= MAX_GROUP; heads += 3)
                    check_scan_group(v, metric, q, heads, codes, words, n);
            free_skewed(q, 8);
            free_skewed(codes, 8);
        }
    }
}

/* ------------------------------------------------------- dot, axpy, page score */

static const char *const dtype_names[] = {"f32", "f16", "bf16"};

/* row[d] of the dtype holding the values x[d] rounded to it; returns the row. */
static void *make_row(const float *x, size_t d, adamas_dtype dtype, size_t skew)
{
    if (dtype == ADAMAS_F32) {
        float *r = alloc_skewed(d, 4, skew);
        memcpy(r, x, d * 4);
        return r;
    }
    uint16_t *r = alloc_skewed(d, 2, skew);
    for (size_t i = 0; i < d; i++)
        r[i] = dtype == ADAMAS_F16 ? adamas_f32_to_f16(x[i]) : adamas_f32_to_bf16(x[i]);
    return r;
}

/* Element i of a row made by make_row, widened with the public conversions. */
static double row_elem(const void *row, size_t i, adamas_dtype dtype)
{
    if (dtype == ADAMAS_F32)
        return ((const float *)row)[i];
    uint16_t h = ((const uint16_t *)row)[i];
    return dtype == ADAMAS_F16 ? adamas_f16_to_f32(h) : adamas_bf16_to_f32(h);
}

Test(simd, dot_is_bit_identical_to_scalar_for_every_dtype)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "dot")
    {
        for (int dtype = 0; dtype < 3; dtype++)
            for (size_t di = 0; di < N_DIMS; di++) {
                size_t d = head_dims[di];
                float *q = alloc_skewed(d, 4, 4), x[ADAMAS_MAX_HEAD_DIM];
                for (int trial = 0; trial < 8; trial++) {
                    fill_normal(q, d, trial < 4 ? 1.0f : 100.0f);
                    fill_normal(x, d, trial % 2 ? 1.0f : 1e-3f);
                    if (trial == 7) /* signed zeros and exact cancellations */
                        for (size_t i = 0; i < d; i++)
                            q[i] = i % 3 ? q[i] : -0.0f, x[i] = i % 5 ? x[i] : -x[i ^ 1];
                    size_t skew = (size_t)(dtype == ADAMAS_F32 ? 4 : 2) * (1 + (size_t)trial % 3);
                    void *row = make_row(x, d, (adamas_dtype)dtype, skew);
                    float got = v->k.dot[dtype](q, row, d);
                    float want = adamas_kernels_scalar.dot[dtype](q, row, d);
                    expect(f32_bits(got) == f32_bits(want), "%s dot %s d=%zu: %a, scalar %a",
                           v->name, dtype_names[dtype], d, (double)got, (double)want);
                    free_skewed(row, skew);
                }
                free_skewed(q, 4);
            }
    }
}

Test(simd, page_score_is_bit_identical_to_scalar)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "page_score")
    {
        for (size_t di = 0; di < N_DIMS; di++) {
            size_t d = head_dims[di];
            float *q = alloc_skewed(d, 4, 4), *lo = alloc_skewed(d, 4, 8), *hi = alloc_skewed(d, 4, 12);
            for (int trial = 0; trial < 8; trial++) {
                fill_normal(q, d, 1.0f);
                for (size_t i = 0; i < d; i++) {
                    float a = rng_normal(), b = rng_normal();
                    lo[i] = a < b ? a : b;
                    hi[i] = a < b ? b : a;
                    if (trial >= 6 && i % 4 == 0) /* zero products of either sign */
                        q[i] = i % 8 ? 0.0f : -0.0f;
                    if (trial == 7 && i % 4 == 1)
                        lo[i] = -0.0f, hi[i] = 0.0f;
                }
                float got = v->k.page_score(q, lo, hi, d);
                float want = adamas_page_score_scalar(q, lo, hi, d);
                expect(f32_bits(got) == f32_bits(want), "%s page_score d=%zu: %a, scalar %a",
                       v->name, d, (double)got, (double)want);
            }
            free_skewed(q, 4);
            free_skewed(lo, 8);
            free_skewed(hi, 12);
        }
    }
}

/* One fused multiply-add per element, as the scalar loop (fmaf): bit-identical. */
Test(simd, axpy_is_bit_identical_to_scalar_for_every_dtype)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "axpy")
    {
        for (int dtype = 0; dtype < 3; dtype++)
            for (size_t di = 0; di < N_DIMS; di++) {
                size_t d = head_dims[di];
                float *y = alloc_skewed(d, 4, 4), *ref = malloc(d * 4), x[ADAMAS_MAX_HEAD_DIM];
                for (int trial = 0; trial < 6; trial++) {
                    fill_normal(y, d, 1.0f);
                    memcpy(ref, y, d * 4);
                    fill_normal(x, d, 1.0f);
                    size_t skew = (size_t)(dtype == ADAMAS_F32 ? 4 : 2) * (1 + (size_t)trial % 3);
                    void *row = make_row(x, d, (adamas_dtype)dtype, skew);
                    float a = rng_normal();
                    v->k.axpy[dtype](y, a, row, d);
                    adamas_kernels_scalar.axpy[dtype](ref, a, row, d);
                    size_t i = first_bit_difference(y, ref, d);
                    expect(i == d, "%s axpy %s d=%zu: y[%zu] = %a, scalar %a", v->name,
                           dtype_names[dtype], d, i, (double)y[i % d], (double)ref[i % d]);
                    free_skewed(row, skew);
                }
                free_skewed(y, 4);
                free(ref);
            }
    }
}

/* Head dimensions and, for axpy, lengths that leave a tail after the 16-float blocks. */
static const size_t group_dims[] = {16, 32, 64, 128, 256, 1024};
static const size_t axpy_tails[] = {0, 1, 7, 15};

/* Row counts of the grouped kernels: below, at and past the rows of one block. */
#define MAX_ROWS 9

Test(simd, grouped_dot_is_bit_identical_to_scalar_for_every_group_size)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "dot_group")
    {
        for (int dtype = 0; dtype < 3; dtype++)
            for (size_t di = 0; di < sizeof group_dims / sizeof group_dims[0]; di++) {
                size_t d = group_dims[di], out_stride = MAX_ROWS + 2, n_out = MAX_GROUP * out_stride;
                float *q = alloc_skewed(MAX_GROUP * d, 4, 4), *x = malloc(MAX_ROWS * d * 4);
                float *got = malloc(n_out * 4), *want = malloc(n_out * 4);
                for (size_t heads = 1; heads <= MAX_GROUP; heads++) {
                    size_t n = 1 + (heads * 5) % MAX_ROWS, skew = (size_t)(dtype == ADAMAS_F32 ? 4 : 2);
                    int trial = (int)heads % 4;
                    fill_normal(q, heads * d, trial < 2 ? 1.0f : 100.0f);
                    fill_normal(x, n * d, trial % 2 ? 1.0f : 1e-3f);
                    if (trial == 3) /* signed zeros and exact cancellations */
                        for (size_t i = 0; i < d; i++)
                            q[i] = i % 3 ? q[i] : -0.0f, x[i] = i % 5 ? x[i] : -x[i ^ 1];
                    const void *rows[MAX_ROWS];
                    for (size_t r = 0; r < n; r++)
                        rows[r] = make_row(x + r * d, d, (adamas_dtype)dtype, skew * (1 + r % 3));
                    for (size_t i = 0; i < n_out; i++)
                        got[i] = want[i] = 12345.0f; /* between the outputs: untouched */
                    v->k.dot_group[dtype](q, heads, rows, n, d, got, out_stride);
                    adamas_kernels_scalar.dot_group[dtype](q, heads, rows, n, d, want, out_stride);
                    size_t i = first_bit_difference(got, want, n_out);
                    expect(i == n_out, "%s dot_group %s d=%zu heads=%zu rows=%zu: out[%zu][%zu] = %a, scalar %a",
                           v->name, dtype_names[dtype], d, heads, n, i / out_stride, i % out_stride,
                           (double)got[i % n_out], (double)want[i % n_out]);
                    /* and each is the dot product to within its roundings: one per fused
                     * step of a lane (d/16 of them) and one per level of the fold (4) */
                    for (size_t j = 0; j < heads; j++)
                        for (size_t r = 0; r < n; r++) {
                            double exact = 0.0, magnitude = 0.0;
                            for (size_t i = 0; i < d; i++) {
                                double t = (double)q[j * d + i] *
                                           (double)row_elem(rows[r], i, (adamas_dtype)dtype);
                                exact += t;
                                magnitude += fabs(t);
                            }
                            double bound = (double)(d / 16 + 4) * 0x1p-24 * magnitude;
                            double err = fabs((double)got[j * out_stride + r] - exact);
                            expect(err <= bound,
                                   "%s dot_group %s d=%zu heads=%zu: head %zu row %zu is off by %g > %g",
                                   v->name, dtype_names[dtype], d, heads, j, r, err, bound);
                        }
                    for (size_t r = 0; r < n; r++)
                        free_skewed((void *)rows[r], skew * (1 + r % 3));
                }
                free_skewed(q, 4);
                free(x);
                free(got);
                free(want);
            }
    }
}

/* One fused multiply-add per element, row after row, as in the scalar loop:
 * bit-identical. */
Test(simd, grouped_axpy_is_bit_identical_to_scalar_for_every_group_size)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "axpy_group")
    {
        for (int dtype = 0; dtype < 3; dtype++)
            for (size_t di = 0; di < sizeof group_dims / sizeof group_dims[0]; di++)
                for (size_t ti = 0; ti < sizeof axpy_tails / sizeof axpy_tails[0]; ti++) {
                    size_t d = group_dims[di] - axpy_tails[ti], y_stride = d + 5;
                    size_t a_stride = MAX_ROWS + 1, n_y = MAX_GROUP * y_stride;
                    float *y = alloc_skewed(n_y, 4, 4), *ref = malloc(n_y * 4);
                    float *x = malloc(MAX_ROWS * d * 4), a[MAX_GROUP * (MAX_ROWS + 1)];
                    for (size_t heads = 1; heads <= MAX_GROUP; heads++) {
                        size_t n = 1 + (heads * 5 + ti) % MAX_ROWS, skew = (size_t)(dtype == ADAMAS_F32 ? 4 : 2);
                        fill_normal(y, n_y, 1.0f);
                        memcpy(ref, y, n_y * 4);
                        fill_normal(x, n * d, 1.0f);
                        fill_normal(a, MAX_GROUP * a_stride, 1.0f);
                        const void *rows[MAX_ROWS];
                        for (size_t r = 0; r < n; r++)
                            rows[r] = make_row(x + r * d, d, (adamas_dtype)dtype, skew * (1 + r % 3));
                        v->k.axpy_group[dtype](y, y_stride, a, a_stride, heads, rows, n, d);
                        adamas_kernels_scalar.axpy_group[dtype](ref, y_stride, a, a_stride, heads,
                                                                rows, n, d);
                        size_t i = first_bit_difference(y, ref, n_y);
                        expect(i == n_y,
                               "%s axpy_group %s d=%zu heads=%zu rows=%zu: y[%zu][%zu] = %a, scalar %a",
                               v->name, dtype_names[dtype], d, heads, n, i / y_stride, i % y_stride,
                               (double)y[i % n_y], (double)ref[i % n_y]);
                        for (size_t r = 0; r < n; r++)
                            free_skewed((void *)rows[r], skew * (1 + r % 3));
                    }
                    free_skewed(y, 4);
                    free(ref);
                    free(x);
                }
    }
}

/* Every finite f16 and bf16 value widens exactly: y = -0 + 1*h is h itself. */
Test(simd, half_rows_widen_exactly_for_every_finite_value)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "half widening")
    {
        for (int dtype = 1; dtype < 3; dtype++) {
            uint16_t *row = alloc_skewed(65536, 2, 2);
            float *y = alloc_skewed(65536, 4, 4);
            for (uint32_t h = 0; h < 65536; h++) {
                row[h] = (uint16_t)h;
                y[h] = -0.0f;
            }
            v->k.axpy[dtype](y, 1.0f, row, 65536);
            for (uint32_t h = 0; h < 65536; h++) {
                float want = dtype == ADAMAS_F16 ? adamas_f16_to_f32((uint16_t)h)
                                                 : adamas_bf16_to_f32((uint16_t)h);
                if (isnan(want))
                    continue; /* payloads of NaN are outside the contract */
                expect(f32_bits(y[h]) == f32_bits(want), "%s %s 0x%04x widened to %a, want %a",
                       v->name, dtype_names[dtype], h, (double)y[h], (double)want);
            }
            free_skewed(row, 2);
            free_skewed(y, 4);
        }
    }
}

/* ----------------------------------------------------------------------- exp */

static const size_t exp_lengths[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 255, 1000, 4099};
#define N_EXP_LENGTHS (sizeof exp_lengths / sizeof exp_lengths[0])

/* Each exponential within 1e-6 relative of expf (plus 1e-38 absolute for results
 * in the subnormal range); the sum no further from the exact sum than the scalar
 * one plus 1e-6 relative (the scalar loop adds one term at a time: at n = 4099 its
 * own rounding error passes 1e-6).  The inputs span logits minus their max, and
 * beyond. */
Test(simd, exp_sum_is_within_1e_6_of_scalar)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "exp_sum")
    {
        for (size_t li = 0; li < N_EXP_LENGTHS; li++)
            for (int trial = 0; trial < 4; trial++) {
                size_t n = exp_lengths[li];
                float *s = alloc_skewed(n + 1, 4, 4), *ref = malloc((n + 1) * 4);
                float spread = trial == 0 ? 1.0f : trial == 1 ? 5.0f : trial == 2 ? 30.0f : 120.0f;
                float max = -INFINITY;
                for (size_t i = 0; i < n; i++) {
                    s[i] = rng_uniform(-spread, spread * 0.1f);
                    max = s[i] > max ? s[i] : max;
                }
                if (trial == 3 && n > 4) /* deep underflow and the edges of the range */
                    s[0] = max - 200.0f, s[1] = max - 103.9f, s[2] = max - 87.5f, s[3] = max - 0.0f;
                s[n] = 12345.0f; /* guard */
                memcpy(ref, s, (n + 1) * 4);
                float got = v->k.exp_sum(s, n, max);
                double exact = 0.0;
                for (size_t i = 0; i < n; i++)
                    exact += exp((double)ref[i] - (double)max);
                float want = adamas_exp_sum_scalar(ref, n, max);
                for (size_t i = 0; i < n; i++)
                    expect(fabs((double)s[i] - ref[i]) <= 1e-6 * ref[i] + 1e-38,
                           "%s exp_sum n=%zu: exp(%g) = %a, scalar %a", v->name, n,
                           (double)(ref[i] ? logf(ref[i]) : -INFINITY), (double)s[i], (double)ref[i]);
                expect(s[n] == 12345.0f, "%s exp_sum n=%zu wrote past the end", v->name, n);
                double tol = fabs((double)want - exact) + 1e-6 * exact;
                expect(fabs((double)got - exact) <= tol,
                       "%s exp_sum n=%zu spread=%g: sum %.9g, scalar %.9g, exact %.9g", v->name, n,
                       (double)spread, (double)got, (double)want, exact);
                free_skewed(s, 4);
                free(ref);
            }
    }
}

/* Each product bit-identical to the scalar entry's (one rounded multiply), the
 * maximum the same value; lengths around every register width, logits of both signs
 * and zeros of both signs among them. */
Test(simd, scale_max_matches_scalar)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "scale_max")
    {
        for (size_t li = 0; li < N_EXP_LENGTHS; li++)
            for (int trial = 0; trial < 4; trial++) {
                size_t n = exp_lengths[li];
                float *x = alloc_skewed(n + 1, 4, 4), *ref = malloc((n + 1) * 4);
                float spread = trial == 0 ? 1.0f : trial == 1 ? 30.0f : trial == 2 ? 1e6f : 1e-30f;
                float scale = trial == 3 ? 0.5f : rng_uniform(0.01f, 2.0f);
                for (size_t i = 0; i < n; i++)
                    x[i] = rng_uniform(-spread, spread);
                if (trial == 2 && n > 2) /* all below zero but two zeros */
                    for (size_t i = 0; i < n; i++)
                        x[i] = i == n / 2 ? 0.0f : i == n - 1 ? -0.0f : -fabsf(x[i]) - 1.0f;
                x[n] = 12345.0f; /* guard */
                memcpy(ref, x, (n + 1) * 4);
                float got = v->k.scale_max(x, n, scale);
                float want = adamas_scale_max_scalar(ref, n, scale);
                for (size_t i = 0; i < n; i++)
                    expect(f32_bits(x[i]) == f32_bits(ref[i]), "%s scale_max n=%zu: x[%zu] = %a, scalar %a",
                           v->name, n, i, (double)x[i], (double)ref[i]);
                expect(got == want, "%s scale_max n=%zu spread=%g: max %a, scalar %a", v->name, n,
                       (double)spread, (double)got, (double)want);
                expect(x[n] == 12345.0f, "%s scale_max n=%zu wrote past the end", v->name, n);
                free_skewed(x, 4);
                free(ref);
            }
    }
}

/* ---------------------------------------------------------- through the API */

typedef struct {
    uint32_t n_heads, n_kv_heads, head_dim;
    adamas_dtype dtype;
    adamas_metric metric;
    int calibrate;
} api_case;

static const api_case api_cases[] = {
    {4, 2, 128, ADAMAS_F32, ADAMAS_METRIC_L1, 0},  {4, 2, 128, ADAMAS_F16, ADAMAS_METRIC_L1, 1},
    {2, 1, 64, ADAMAS_BF16, ADAMAS_METRIC_XORW, 0}, {4, 4, 16, ADAMAS_F32, ADAMAS_METRIC_XORW, 1},
    {2, 2, 256, ADAMAS_F16, ADAMAS_METRIC_L1, 0},  {1, 1, 1024, ADAMAS_F32, ADAMAS_METRIC_L1, 1},
};
#define N_API_CASES (sizeof api_cases / sizeof api_cases[0])

#define API_TOKENS 300
#define API_BUDGET 64
#define API_STEPS 3
#define N_SELECTORS 6 /* the five selectors, then ADAMAS with rerank */

/* Outputs are compared relative to max(||out||, typical ||value row||): exp_sum is
 * not bit-identical (SLEEF's or the polynomial exp against expf: an ulp or so per
 * weight), and when a broad softmax averages many random value rows, the average is
 * much shorter than the rows and that ulp grows relative to it, though not relative to
 * the rows.  Selections must be identical. */

/* Everything one ISA computes for one case: outputs and selections of every step
 * and selector. */
typedef struct {
    float *out;        /* [steps][selectors][n_heads][head_dim] */
    uint32_t *sel;     /* [steps][selectors][n_heads][budget] */
} api_run;

static adamas_decode_params selector_params(int s)
{
    static const adamas_selector sels[N_SELECTORS] = {
        ADAMAS_SELECT_ADAMAS, ADAMAS_SELECT_FULL,  ADAMAS_SELECT_ORACLE,
        ADAMAS_SELECT_STREAMING, ADAMAS_SELECT_QUEST, ADAMAS_SELECT_ADAMAS};
    adamas_decode_params p = adamas_decode_params_default(sels[s], API_BUDGET);
    if (s == 5)
        p.rerank = 4;
    return p;
}

/* Append the inputs (in two parts) under the current ISA, calibrate if asked, and
 * decode each query with each selector. */
static void run_api_case(const api_case *t, const float *k, const float *v, const float *q,
                         api_run *r)
{
    adamas_cache_config cfg = adamas_cache_config_default(t->n_heads, t->n_kv_heads, t->head_dim,
                                                          API_TOKENS + API_STEPS);
    cfg.kv_dtype = t->dtype;
    cfg.metric = t->metric;
    adamas_cache *c = NULL;
    int st = adamas_cache_create(&cfg, &c);
    expect(st == 0, "cache_create: %s", adamas_last_error());
    size_t row = (size_t)t->n_kv_heads * t->head_dim;
    st = adamas_cache_append(c, k, v, API_TOKENS / 3);
    expect(st == 0, "append: %s", adamas_last_error());
    st = adamas_cache_append(c, k + API_TOKENS / 3 * row, v + API_TOKENS / 3 * row,
                             API_TOKENS - API_TOKENS / 3);
    expect(st == 0, "append: %s", adamas_last_error());
    if (t->calibrate) {
        st = adamas_cache_calibrate(c, 0.6745f);
        expect(st == 0, "calibrate: %s", adamas_last_error());
    }
    size_t qsize = (size_t)t->n_heads * t->head_dim;
    for (int step = 0; step < API_STEPS; step++) {
        /* one more token per step, as a decoder appends before it attends */
        size_t tok = API_TOKENS + (size_t)step;
        st = adamas_cache_append(c, k + tok * row, v + tok * row, 1);
        expect(st == 0, "append: %s", adamas_last_error());
        for (int s = 0; s < N_SELECTORS; s++) {
            adamas_decode_params p = selector_params(s);
            size_t at = (size_t)step * N_SELECTORS + (size_t)s;
            uint32_t *sel = r->sel + at * t->n_heads * API_BUDGET;
            for (size_t i = 0; i < (size_t)t->n_heads * API_BUDGET; i++)
                sel[i] = POISON_U32;
            st = adamas_decode(c, &p, q + (size_t)step * qsize, r->out + at * qsize, sel);
            expect(st == 0, "decode selector %d: %s", s, adamas_last_error());
        }
    }
    adamas_cache_destroy(c);
}

Test(simd, decode_under_each_isa_selects_the_scalar_tokens)
{
    rng_seed_from_env();
    char not_run[64] = "";
    int any = 0;
    for (size_t i = 0; i < sizeof isa_names / sizeof isa_names[0]; i++)
        if (!adamas_isa_available(isa_names[i])) {
            strncat(not_run, " ", sizeof not_run - strlen(not_run) - 1);
            strncat(not_run, isa_names[i], sizeof not_run - strlen(not_run) - 1);
        } else {
            any = 1;
        }
    if (*not_run)
        cr_log_info("decode: not run here (not built, or this CPU lacks it):%s", not_run);
    if (!any)
        cr_skip_test("no SIMD ISA runs on this machine");

    for (size_t ci = 0; ci < N_API_CASES; ci++) {
        const api_case *t = &api_cases[ci];
        size_t row = (size_t)t->n_kv_heads * t->head_dim;
        size_t qsize = (size_t)t->n_heads * t->head_dim;
        size_t n_tok = API_TOKENS + API_STEPS;
        float *k = malloc(n_tok * row * 4), *v = malloc(n_tok * row * 4);
        float *q = malloc(API_STEPS * qsize * 4);
        fill_normal(k, n_tok * row, 1.0f);
        fill_normal(v, n_tok * row, 1.0f);
        fill_normal(q, API_STEPS * qsize, 1.0f); /* unit scale: the 1e-6 contract of kernels.h */
        double v_sq = 0.0; /* the typical norm of a value row */
        for (size_t i = 0; i < n_tok * row; i++)
            v_sq += (double)v[i] * v[i];
        double v_norm = sqrt(v_sq / (double)(n_tok * row) * t->head_dim);
        size_t n_out = (size_t)API_STEPS * N_SELECTORS * qsize;
        size_t n_sel = (size_t)API_STEPS * N_SELECTORS * t->n_heads * API_BUDGET;
        api_run ref = {malloc(n_out * 4), malloc(n_sel * 4)}, got = {malloc(n_out * 4), malloc(n_sel * 4)};

        expect(adamas_set_isa("scalar") == 0, "set_isa scalar: %s", adamas_last_error());
        run_api_case(t, k, v, q, &ref);
        for (size_t i = 0; i < sizeof isa_names / sizeof isa_names[0]; i++) {
            if (!adamas_isa_available(isa_names[i]))
                continue;
            expect(adamas_set_isa(isa_names[i]) == 0, "set_isa %s: %s", isa_names[i], adamas_last_error());
            expect(strcmp(adamas_isa_name(), isa_names[i]) == 0, "isa_name %s", adamas_isa_name());
            run_api_case(t, k, v, q, &got);
            for (size_t at = 0; at < (size_t)API_STEPS * N_SELECTORS; at++) {
                int s = (int)(at % N_SELECTORS);
                size_t sel_size = (size_t)t->n_heads * API_BUDGET;
                expect(memcmp(got.sel + at * sel_size, ref.sel + at * sel_size, sel_size * 4) == 0,
                       "%s case %zu (d=%u %s %s) step %zu selector %d: selections differ from scalar",
                       isa_names[i], ci, t->head_dim, dtype_names[t->dtype],
                       t->metric ? "xorw" : "l1", at / N_SELECTORS, s);
                for (uint32_t h = 0; h < t->n_heads; h++) {
                    const float *o = got.out + at * qsize + (size_t)h * t->head_dim;
                    const float *w = ref.out + at * qsize + (size_t)h * t->head_dim;
                    double norm = 0.0, diff = 0.0;
                    for (uint32_t i2 = 0; i2 < t->head_dim; i2++) {
                        norm += (double)w[i2] * w[i2];
                        diff += ((double)o[i2] - w[i2]) * ((double)o[i2] - w[i2]);
                    }
                    /* relative to the output, or to the value rows it averages when the
                     * average cancels (broad softmax over random rows) */
                    double err = sqrt(diff) / fmax(sqrt(norm), v_norm);
                    expect(err <= 1e-6, "%s case %zu step %zu selector %d head %u: relative error %g",
                           isa_names[i], ci, at / N_SELECTORS, s, h, err);
                }
            }
        }
        adamas_set_isa("scalar");
        free(k);
        free(v);
        free(q);
        free(ref.out);
        free(ref.sel);
        free(got.out);
        free(got.sel);
    }
}

/* ------------------------------------------------------ conversion and emit */

/* The grouped axpy converts every finite f16 and bf16 value exactly, for each head:
 * y = -0 + 1*h is h itself. */
Test(simd, grouped_axpy_converts_every_half_value_exactly)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "axpy_group widening")
    {
        for (int dtype = 1; dtype < 3; dtype++) {
            const size_t heads = 5, n = 65536;
            uint16_t *row = alloc_skewed(n, 2, 2);
            float *y = alloc_skewed(heads * n, 4, 4), a[5] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
            const void *rows[1] = {row};
            for (uint32_t h = 0; h < n; h++)
                row[h] = (uint16_t)h;
            for (size_t i = 0; i < heads * n; i++)
                y[i] = -0.0f;
            v->k.axpy_group[dtype](y, n, a, 1, heads, rows, 1, n);
            for (size_t j = 0; j < heads; j++)
                for (uint32_t h = 0; h < n; h++) {
                    float want = dtype == ADAMAS_F16 ? adamas_f16_to_f32((uint16_t)h)
                                                     : adamas_bf16_to_f32((uint16_t)h);
                    if (isnan(want))
                        continue; /* payloads of NaN are outside the contract */
                    expect(f32_bits(y[j * n + h]) == f32_bits(want),
                           "%s %s head %zu: 0x%04x converted to %a, want %a", v->name,
                           dtype_names[dtype], j, h, (double)y[j * n + h], (double)want);
                }
            free_skewed(row, 2);
            free_skewed(y, 4);
        }
    }
}

static int cmp_u16(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

Test(simd, emit_takes_the_same_positions_as_scalar)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "emit")
    {
        for (int trial = 0; trial < 300; trial++) {
            uint32_t n = 1 + rng_below(trial < 100 ? 40 : 5000);
            uint32_t k = 1 + rng_below(n), range = 1 + rng_below(trial % 3 ? 8 : 400);
            uint32_t base = rng_below(1u << 20);
            uint16_t *dist = alloc_skewed(n, 2, 2), *sorted = malloc(n * sizeof *sorted);
            for (uint32_t j = 0; j < n; j++)
                dist[j] = (uint16_t)rng_below(range);
            /* the threshold and cutoff of the k smallest, ties to the larger position */
            memcpy(sorted, dist, n * sizeof *dist);
            qsort(sorted, n, sizeof *sorted, cmp_u16);
            uint32_t t = sorted[k - 1], below = 0, cutoff = n;
            for (uint32_t j = 0; j < n; j++)
                below += dist[j] < t;
            for (uint32_t ties = k - below; ties > 0;)
                if (dist[--cutoff] == t)
                    ties--;
            uint32_t *want = malloc((k + 16) * sizeof *want), *got = malloc((k + 16) * sizeof *got);
            poison(want, (k + 16) * sizeof *want);
            poison(got, (k + 16) * sizeof *got);
            adamas_emit_scalar(dist, n, t, cutoff, base, k, want);
            v->k.emit(dist, n, t, cutoff, base, k, got);
            expect(memcmp(want, got, (k + 16) * sizeof *got) == 0,
                   "%s: n %u k %u range %u: positions differ (or written past k)", v->name, n, k,
                   range);
            for (uint32_t i = 1; i < k; i++)
                expect(got[i - 1] < got[i], "%s: not ascending at %u", v->name, i);
            free(want);
            free(got);
            free(sorted);
            free_skewed(dist, 2);
        }
    }
}

/* ------------------------------------------------------------- Q8_0 weights */

/* n_blocks Q8_0 blocks at a skewed address: random int8 weights, and scales drawn
 * from every finite f16 magnitude class (normal, subnormal, zero, either sign). */
static unsigned char *random_q8_0(size_t n_blocks, size_t skew)
{
    unsigned char *blk = alloc_skewed(n_blocks * ADAMAS_Q8_0_BYTES, 1, skew);
    for (size_t b = 0; b < n_blocks; b++) {
        unsigned char *p = blk + b * ADAMAS_Q8_0_BYTES;
        uint16_t s = (uint16_t)rng_below(0x7c00) | (uint16_t)(rng_below(2) << 15);
        if (rng_below(4) == 0) /* scales of real models: around 1e-3 .. 1e-1 */
            s = adamas_f32_to_f16(rng_uniform(1e-3f, 0.1f));
        p[0] = (unsigned char)(s & 0xff), p[1] = (unsigned char)(s >> 8);
        for (int j = 0; j < 32; j++)
            p[2 + j] = (unsigned char)rng_below(256);
    }
    return blk;
}

Test(simd, q8_0_dot_is_bit_identical_to_scalar_and_widen_exact)
{
    rng_seed_from_env();
    FOR_EACH_VARIANT(v, "q8_0")
    {
        for (int trial = 0; trial < 40; trial++) {
            size_t n_blocks = 1 + rng_below(trial < 20 ? 8 : 200), n = 32 * n_blocks;
            size_t skew = 1 + (size_t)trial % 7;
            unsigned char *blk = random_q8_0(n_blocks, skew);
            float *x = alloc_skewed(n, 4, 4), *y = alloc_skewed(n, 4, 4);
            rng_fill_normal(x, n, trial % 2 ? 1.0f : 1e3f);
            float got = v->k.dot_q8_0(x, blk, n_blocks);
            float want = adamas_kernels_scalar.dot_q8_0(x, blk, n_blocks);
            expect(f32_bits(got) == f32_bits(want), "%s q8_0 dot of %zu blocks: %a, scalar %a",
                   v->name, n_blocks, (double)got, (double)want);
            poison(y, n * sizeof *y);
            v->k.widen_q8_0(y, blk, n_blocks);
            for (size_t i = 0; i < n; i++) {
                const unsigned char *p = blk + i / 32 * ADAMAS_Q8_0_BYTES;
                double w = (double)adamas_f16_to_f32((uint16_t)(p[0] | p[1] << 8)) *
                           (int8_t)p[2 + i % 32];
                expect((double)y[i] == w, "%s q8_0 widen: weight %zu = %a, want %a", v->name, i,
                       (double)y[i], w);
            }
            free_skewed(blk, skew);
            free_skewed(x, 4);
            free_skewed(y, 4);
        }
    }
}

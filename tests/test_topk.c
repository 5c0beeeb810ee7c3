/* test_topk.c - top-k with the project's tie rule (DESIGN §2 "Selection"): the heap,
 * the histogram select and the radix top-k all equal a full sort, ties going to the
 * larger index, positions ascending. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "reference.h"
#include "select.h"
#include "testutil.h"

TestSuite(topk, .init = rng_seed_from_env);

/* n values in [lo, lo + range) */
static void fill_u16(uint16_t *v, uint32_t n, uint32_t lo, uint32_t range)
{
    for (uint32_t i = 0; i < n; i++)
        v[i] = (uint16_t)(lo + rng_below(range));
}

static void expect_same(const uint32_t *got, const uint32_t *want, uint32_t k, const char *what,
                        uint32_t n)
{
    for (uint32_t i = 0; i < k; i++)
        expect(got[i] == want[i], "%s, n=%u k=%u: idx[%u] = %u, expected %u", what, n, k, i,
               got[i], want[i]);
}

/* The reference over uint16 values, offset by base. */
static void reference_smallest(const uint16_t *v, uint32_t n, uint32_t k, uint32_t base,
                               uint32_t *idx)
{
    uint32_t *wide = malloc((n ? n : 1) * sizeof *wide);
    for (uint32_t i = 0; i < n; i++)
        wide[i] = v[i];
    ref_smallest_u32(wide, n, k, idx);
    for (uint32_t i = 0; i < k; i++)
        idx[i] += base;
    free(wide);
}

/* The k-th smallest of v[n]. */
static uint16_t kth_smallest(const uint16_t *v, uint32_t n, uint32_t k)
{
    uint32_t count[UINT16_MAX + 1u] = {0}, seen = 0, t = 0;
    for (uint32_t i = 0; i < n; i++)
        count[v[i]]++;
    while (seen + count[t] < k)
        seen += count[t++];
    return (uint16_t)t;
}

/* adamas_select_scanned over dist[n] as a grouped scan in chunks of chunk_len would
 * leave it, each chunk counting (and, scanned sparse, listing) the distances up to a
 * limit of its own: limited = 0, every distance; else a limit drawn at or above the
 * k-th smallest distance, falling within the chunk as the scan's does.  Chunks are
 * dense or sparse at random; emit takes the positions of the dense ones. */
static void select_via_scan(const uint16_t *dist, uint32_t n, uint32_t k, uint32_t chunk_len,
                            uint32_t nbins, int limited, adamas_emit_fn emit, uint32_t base,
                            uint32_t *idx)
{
    const uint32_t chunks = (n + chunk_len - 1) / chunk_len;
    const size_t hist_stride = nbins + rng_below(8), hits_stride = chunk_len + rng_below(8);
    const size_t n_stride = 1 + rng_below(3);
    uint32_t *hist = calloc((size_t)chunks * hist_stride, sizeof *hist);
    uint32_t *hits = malloc((size_t)chunks * hits_stride * sizeof *hits);
    uint32_t *n_hits = calloc((size_t)chunks * n_stride, sizeof *n_hits);
    uint16_t *dense_dist = malloc((n + 1) * sizeof *dense_dist);
    poison(dense_dist, (n + 1) * sizeof *dense_dist);
    const uint32_t t = kth_smallest(dist, n, k);
    for (uint32_t c = 0; c < chunks; c++) {
        const int dense = (int)rng_below(2);
        uint32_t limit = limited ? t + rng_below(nbins - t) : UINT16_MAX;
        if (dense)
            n_hits[c * n_stride] = ADAMAS_DENSE_CHUNK;
        for (uint32_t j = c * chunk_len; j < n && j < (c + 1) * chunk_len; j++) {
            if (dense)
                dense_dist[j] = dist[j]; /* only the dense chunks' are there to read */
            if (limited && limit > t && rng_below(16) == 0)
                limit = t + rng_below(limit - t);
            if (dist[j] > limit)
                continue;
            hist[c * hist_stride + dist[j]]++;
            if (!dense)
                hits[c * hits_stride + n_hits[c * n_stride]++] = (j - c * chunk_len) << 16 | dist[j];
        }
    }
    const adamas_scanned scan = {n,    chunks, chunk_len,   nbins,  hist,     hist_stride,
                                 dense_dist, hits, hits_stride, n_hits, n_stride, emit};
    adamas_select_scanned(&scan, k, base, idx);
    free(hist);
    free(hits);
    free(n_hits);
    free(dense_dist);
}

Test(topk, heap_and_histogram_equal_a_sort_under_heavy_ties)
{
    const uint32_t ranges[] = {1, 2, 3, 5, 17, 3 * 64 + 1};
    for (int trial = 0; trial < 300; trial++) {
        uint32_t n = 1 + rng_below(trial < 200 ? 60 : 3000), k = 1 + rng_below(n);
        uint32_t range = ranges[rng_below(6)], nbins = 3 * 64 + 1;
        uint32_t lo = rng_below(nbins - range + 1), base = rng_below(1000);
        uint16_t *dist = malloc(n * sizeof *dist);
        uint32_t *want = malloc(k * sizeof *want), *heap = malloc((k + 1) * sizeof *heap),
                 *histo = malloc((k + 1) * sizeof *histo);
        fill_u16(dist, n, lo, range);
        reference_smallest(dist, n, k, base, want);
        heap[k] = histo[k] = POISON_U32;
        adamas_select_smallest_heap(dist, n, k, base, heap);
        select_via_scan(dist, n, k, n, nbins, 0, adamas_emit_scalar, base, histo);
        expect_same(heap, want, k, "heap", n);
        expect_same(histo, want, k, "histogram", n);
        expect(heap[k] == POISON_U32 && histo[k] == POISON_U32, "wrote past idx[%u]", k);
        free(dist);
        free(want);
        free(heap);
        free(histo);
    }
}

Test(topk, scans_in_chunks_select_what_a_sort_does, .timeout = 60)
{
    const adamas_kernels *kern;
    expect(adamas_kernels_get(&kern) == ADAMAS_OK, "%s", adamas_last_error());
    const uint32_t ranges[] = {1, 2, 3, 5, 17, 3 * 64 + 1};
    for (int trial = 0; trial < 400; trial++) {
        uint32_t n = 1 + rng_below(trial < 200 ? 200 : 20000), k = 1 + rng_below(n);
        if (trial % 3 == 0) /* a small budget: the selected positions are rare */
            k = 1 + rng_below(k < 64 ? k : 64);
        uint32_t chunk_len = 1 + rng_below(trial % 2 ? 64 : 4096);
        uint32_t range = ranges[rng_below(6)], nbins = 3 * 64 + 1;
        uint32_t lo = rng_below(nbins - range + 1), base = rng_below(1000);
        uint16_t *dist = malloc(n * sizeof *dist);
        uint32_t *want = malloc(k * sizeof *want), *got = malloc((k + 1) * sizeof *got);
        fill_u16(dist, n, lo, range);
        reference_smallest(dist, n, k, base, want);
        for (int e = 0; e < 4; e++) {
            const int limited = e & 1;
            got[k] = POISON_U32;
            select_via_scan(dist, n, k, chunk_len, nbins, limited,
                            e < 2 ? adamas_emit_scalar : kern->emit, base, got);
            expect_same(got, want, k, e < 2 ? "scalar emit" : kern->name, n);
            expect(got[k] == POISON_U32, "chunks of %u%s: wrote past idx[%u]", chunk_len,
                   limited ? ", limited" : "", k);
        }
        free(dist);
        free(want);
        free(got);
    }
}

Test(topk, equal_values_select_the_largest_positions)
{
    for (uint32_t n = 1; n < 70; n += 1 + rng_below(5)) {
        uint16_t *dist = malloc(n * sizeof *dist);
        uint16_t value = (uint16_t)rng_below(100);
        for (uint32_t i = 0; i < n; i++)
            dist[i] = value;
        uint32_t k = 1 + rng_below(n), *a = malloc(k * sizeof *a), *b = malloc(k * sizeof *b),
                 *c = malloc(k * sizeof *c);
        adamas_select_smallest_heap(dist, n, k, 0, a);
        select_via_scan(dist, n, k, 1 + rng_below(n), 100, (int)rng_below(2), adamas_emit_scalar, 0,
                        b);
        expect(adamas_topk_smallest(dist, n, k, c) == ADAMAS_OK, "%s", adamas_last_error());
        for (uint32_t i = 0; i < k; i++) {
            expect(a[i] == n - k + i, "heap: idx[%u] = %u, expected %u", i, a[i], n - k + i);
            expect(b[i] == n - k + i, "hist: idx[%u] = %u, expected %u", i, b[i], n - k + i);
            expect(c[i] == n - k + i, "topk: idx[%u] = %u, expected %u", i, c[i], n - k + i);
        }
        free(dist);
        free(a);
        free(b);
        free(c);
    }
}

Test(topk, topk_smallest_over_16_bit_values_equals_a_sort)
{
    for (int trial = 0; trial < 300; trial++) {
        uint32_t n = 1 + rng_below(trial < 200 ? 100 : 5000), k = rng_below(n + 1);
        uint16_t *dist = malloc(n * sizeof *dist);
        switch (trial % 4) {
        case 0: fill_u16(dist, n, 0, 65536); break;                /* everything */
        case 1: fill_u16(dist, n, 250, 12); break;                 /* around a byte edge */
        case 2: fill_u16(dist, n, 65536 - 3, 3); break;            /* the top, ties */
        default:                                                    /* same low byte */
            for (uint32_t i = 0; i < n; i++)
                dist[i] = (uint16_t)(rng_below(256) << 8 | 0x5a);
        }
        uint32_t *want = malloc((k + 1) * sizeof *want), *got = malloc((k + 1) * sizeof *got);
        reference_smallest(dist, n, k, 0, want);
        got[k] = POISON_U32;
        int st = adamas_topk_smallest(dist, n, k, got);
        expect(st == ADAMAS_OK, "%s", adamas_last_error());
        expect_same(got, want, k, "adamas_topk_smallest", n);
        expect(got[k] == POISON_U32, "wrote past idx[%u]", k);
        free(dist);
        free(want);
        free(got);
    }
}

Test(topk, select_largest_f32_equals_a_sort_with_ties)
{
    const float pool[] = {-INFINITY, -3.5f, -1.0f, -0.0f, 0.0f, 1e-30f, 1.0f, 2.0f, 1e30f};
    for (int trial = 0; trial < 300; trial++) {
        /* lengths below and above the keys a select keeps on its stack (2048); k a
         * large share of n, or a small one */
        uint32_t n = 1 + rng_below(trial < 200 ? 50 : trial < 250 ? 2048 : 6000);
        uint32_t k = 1 + rng_below(trial % 2 ? n : n / 16 + 1);
        float *score = malloc(n * sizeof *score);
        for (uint32_t i = 0; i < n; i++)
            score[i] = trial % 3 ? pool[rng_below(sizeof pool / sizeof pool[0])] : rng_normal();
        uint32_t *want = malloc(k * sizeof *want), *got = malloc((k + 1) * sizeof *got);
        ref_largest_f32(score, n, k, want);
        got[k] = POISON_U32;
        adamas_select_largest_f32(score, n, k, got);
        expect_same(got, want, k, "adamas_select_largest_f32", n);
        expect(got[k] == POISON_U32, "wrote past idx[%u]", k);
        free(score);
        free(want);
        free(got);
    }
}

Test(topk, k_equal_to_n_selects_everything)
{
    uint32_t n = 1 + rng_below(500);
    uint16_t *dist = malloc(n * sizeof *dist);
    float *score = malloc(n * sizeof *score);
    fill_u16(dist, n, 0, 65536);
    for (uint32_t i = 0; i < n; i++)
        score[i] = rng_normal();
    uint32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    expect(adamas_topk_smallest(dist, n, n, a) == ADAMAS_OK, "%s", adamas_last_error());
    adamas_select_largest_f32(score, n, n, b);
    adamas_select_smallest_heap(dist, n, n, 7, c);
    for (uint32_t i = 0; i < n; i++) {
        expect(a[i] == i, "topk idx[%u] = %u", i, a[i]);
        expect(b[i] == i, "largest idx[%u] = %u", i, b[i]);
        expect(c[i] == i + 7, "heap idx[%u] = %u", i, c[i]);
    }
    free(dist);
    free(score);
    free(a);
    free(b);
    free(c);
}

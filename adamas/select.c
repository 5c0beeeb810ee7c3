/* select.c - top-k: histogram select (fast path) and heap select (reference). */
#include <stdbool.h>
#include <stdlib.h>

#include "error.h"
#include "select.h"

/* ------------------------------------------------------------------ histogram */

/* Smallest value t with count(dist <= t) >= k, and count(dist < t). */
static void threshold_from_hist(const uint32_t *hist, uint32_t nbins, uint32_t k, uint32_t *t,
                                uint32_t *n_below)
{
    uint32_t below = 0, v = 0;
    while (v + 1 < nbins && below + hist[v] < k)
        below += hist[v++];
    *t = v;
    *n_below = below;
}

/* Emit, ascending, every position with dist < t and the `k - n_below` largest
 * positions with dist == t. */
static void emit_selection(const uint16_t *dist, uint32_t n, uint32_t k, uint32_t t,
                           uint32_t n_below, uint32_t base, uint32_t *idx)
{
    uint32_t ties = k - n_below, cutoff = n;
    while (ties > 0)
        if (dist[--cutoff] == t)
            ties--;
    uint32_t m = 0;
    for (uint32_t j = 0; j < n; j++)
        if (dist[j] < t || (dist[j] == t && j >= cutoff))
            idx[m++] = base + j;
}

void adamas_select_smallest_hist(const uint16_t *dist, uint32_t n, uint32_t k,
                                 const uint32_t *hist, uint32_t nbins, uint32_t base,
                                 uint32_t *idx)
{
    uint32_t t, n_below;
    threshold_from_hist(hist, nbins, k, &t, &n_below);
    emit_selection(dist, n, k, t, n_below, base, idx);
}

int adamas_topk_smallest(const uint16_t *dist, size_t n, size_t k, uint32_t *idx)
{
    if (k == 0)
        return ADAMAS_OK;
    if (!dist || !idx)
        return adamas_fail(ADAMAS_EINVAL, "adamas_topk_smallest: %s is NULL",
                           !dist ? "dist" : "idx");
    if (n >= UINT32_MAX)
        return adamas_fail(ADAMAS_EINVAL, "adamas_topk_smallest: n = %zu does not fit uint32", n);
    if (k > n)
        return adamas_fail(ADAMAS_EINVAL, "adamas_topk_smallest: k = %zu exceeds n = %zu", k, n);

    /* Radix select on 16-bit values: the high byte first, then the low byte of the
     * values in the bucket that holds the k-th smallest. */
    uint32_t hist[256] = {0}, hi, below_hi, lo, below_lo;
    for (size_t j = 0; j < n; j++)
        hist[dist[j] >> 8]++;
    threshold_from_hist(hist, 256, (uint32_t)k, &hi, &below_hi);
    for (int v = 0; v < 256; v++)
        hist[v] = 0;
    for (size_t j = 0; j < n; j++)
        if ((dist[j] >> 8) == hi)
            hist[dist[j] & 0xff]++;
    threshold_from_hist(hist, 256, (uint32_t)k - below_hi, &lo, &below_lo);
    emit_selection(dist, (uint32_t)n, (uint32_t)k, hi << 8 | lo, below_hi + below_lo, 0, idx);
    return ADAMAS_OK;
}

/* ----------------------------------------------------------------------- heap */

/* What a heap ranks: smaller dist is better, or larger score is better; equal keys
 * rank the larger position better. */
typedef struct {
    const uint16_t *dist;
    const float *score;
} ranking;

static bool worse(const ranking *r, uint32_t a, uint32_t b)
{
    if (r->dist) {
        if (r->dist[a] != r->dist[b])
            return r->dist[a] > r->dist[b];
    } else if (r->score[a] != r->score[b]) {
        return r->score[a] < r->score[b];
    }
    return a < b;
}

/* Restore the heap (worst on top) below slot i of heap[size]. */
static void sift_down(const ranking *r, uint32_t *heap, uint32_t size, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, rr = l + 1, top = i;
        if (l < size && worse(r, heap[l], heap[top]))
            top = l;
        if (rr < size && worse(r, heap[rr], heap[top]))
            top = rr;
        if (top == i)
            return;
        uint32_t tmp = heap[i];
        heap[i] = heap[top];
        heap[top] = tmp;
        i = top;
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The k best of positions 0..n-1 into heap[k], then sorted ascending. */
static void heap_select(const ranking *r, uint32_t n, uint32_t k, uint32_t *heap)
{
    for (uint32_t j = 0; j < k; j++)
        heap[j] = j;
    for (uint32_t i = k / 2; i-- > 0;)
        sift_down(r, heap, k, i);
    for (uint32_t j = k; j < n; j++)
        if (worse(r, heap[0], j)) {
            heap[0] = j;
            sift_down(r, heap, k, 0);
        }
    qsort(heap, k, sizeof *heap, cmp_u32);
}

void adamas_select_smallest_heap(const uint16_t *dist, uint32_t n, uint32_t k, uint32_t base,
                                 uint32_t *idx)
{
    ranking r = {dist, NULL};
    heap_select(&r, n, k, idx);
    for (uint32_t j = 0; j < k; j++)
        idx[j] += base;
}

void adamas_select_largest_f32(const float *score, uint32_t n, uint32_t k, uint32_t *idx)
{
    ranking r = {NULL, score};
    heap_select(&r, n, k, idx);
}

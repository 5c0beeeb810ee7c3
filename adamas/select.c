/* select.c - top-k: histogram select of distances (with a heap version as reference),
 * radix select of float scores. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels.h"
#include "select.h"

/* ------------------------------------------------------------------ histogram */

/* Smallest value t with count(dist <= t) >= k, and count(dist < t), from `chunks`
 * histograms hist + c*hist_stride (the counts of consecutive stretches of dist). */
static void threshold_from_hist(const uint32_t *hist, size_t hist_stride, uint32_t chunks,
                                uint32_t nbins, uint32_t k, uint32_t *t, uint32_t *n_below)
{
    uint32_t below = 0, v = 0;
    for (;; v++) {
        uint32_t count = 0;
        for (uint32_t c = 0; c < chunks; c++)
            count += hist[c * hist_stride + v];
        if (v + 1 == nbins || below + count >= k)
            break;
        below += count;
    }
    *t = v;
    *n_below = below;
}

void adamas_emit_scalar(const uint16_t *dist, uint32_t n, uint32_t t, uint32_t cutoff,
                        uint32_t base, uint32_t k, uint32_t *idx)
{
    /* Whether a position is taken is data, not a branch: the slot after the last one
     * taken is written and overwritten, and the loops stop once k are taken (no
     * later position qualifies), so nothing lands past idx[k-1]. */
    uint32_t m = 0;
    for (uint32_t j = 0; j < cutoff; j++) {
        idx[m] = base + j;
        m += dist[j] < t;
        if (m == k)
            return;
    }
    for (uint32_t j = cutoff; j < n; j++) {
        idx[m] = base + j;
        m += dist[j] <= t;
        if (m == k)
            return;
    }
}

/* Tokens per block of the tie search below. */
#define TIE_BLOCK 64u

/* The position from which the last `ties` positions with dist == t lie (dist holds at
 * least that many).  The threshold of a small budget over a long context is a rare
 * distance, so these can lie far back: whole blocks are passed by counting their ties
 * (a loop compilers vectorize) before the one that holds the cutoff is searched. */
static uint32_t tie_cutoff(const uint16_t *dist, uint32_t n, uint32_t t, uint32_t ties)
{
    const uint16_t t16 = (uint16_t)t;
    uint32_t end = n;
    while (ties > 0 && end >= TIE_BLOCK) {
        const uint16_t *block = dist + end - TIE_BLOCK;
        uint16_t count = 0; /* at most TIE_BLOCK: 16-bit lanes when vectorized */
        for (size_t j = 0; j < TIE_BLOCK; j++)
            count += block[j] == t16;
        if (count >= ties)
            break;
        ties -= count;
        end -= TIE_BLOCK;
    }
    uint32_t cutoff = end;
    while (ties > 0)
        if (dist[--cutoff] == t)
            ties--;
    return cutoff;
}

/* Emit, ascending, every position with dist < t and the `k - n_below` largest
 * positions with dist == t. */
static void emit_selection(const uint16_t *dist, uint32_t n, uint32_t k, uint32_t t,
                           uint32_t n_below, uint32_t base, uint32_t *idx)
{
    adamas_emit_scalar(dist, n, t, tie_cutoff(dist, n, t, k - n_below), base, k, idx);
}

void adamas_select_scanned(const adamas_scanned *sc, uint32_t k, uint32_t base, uint32_t *idx)
{
    uint32_t t, n_below;
    threshold_from_hist(sc->hist, sc->hist_stride, sc->chunks, sc->nbins, k, &t, &n_below);
    /* The ties taken are the last ones: every tie of the chunks after `last`, and the
     * `ties` last of chunk `last`. */
    uint32_t ties = k - n_below, last = sc->chunks - 1;
    while (sc->hist[(size_t)last * sc->hist_stride + t] < ties) {
        ties -= sc->hist[(size_t)last * sc->hist_stride + t];
        last--;
    }
    uint32_t m = 0;
    for (uint32_t c = 0; c < sc->chunks && m < k; c++) {
        const uint32_t *h = sc->hist + (size_t)c * sc->hist_stride, first = c * sc->chunk_len;
        const uint32_t n_hits = sc->n_hits[(size_t)c * sc->n_hits_stride];
        if (n_hits == ADAMAS_DENSE_CHUNK) {
            /* Each chunk with its exact count: chunks that hold no selected position
             * are not read, and the others only up to their last selected position. */
            const uint32_t len = sc->n - first < sc->chunk_len ? sc->n - first : sc->chunk_len;
            uint32_t count = c < last ? 0 : c == last ? ties : h[t];
            for (uint32_t v = 0; v < t; v++)
                count += h[v];
            if (count == 0)
                continue;
            const uint32_t cutoff = c < last    ? len
                                    : c == last ? tie_cutoff(sc->dist + first, len, t, ties)
                                                : 0;
            sc->emit(sc->dist + first, len, t, cutoff, base + first, count, idx + m);
            m += count;
            continue;
        }
        /* The hits: each read once, in order.  Whether one is taken is data, not a
         * branch (a shortlist takes one in four or so, at random): the slot after the
         * last one taken is written and overwritten, and the loop stops once k are
         * taken, so nothing lands past idx[k-1]. */
        const uint32_t *hits = sc->hits + (size_t)c * sc->hits_stride;
        const uint32_t skip = c < last ? h[t] : c == last ? h[t] - ties : 0; /* ties not taken */
        for (uint32_t i = 0, tie = 0; i < n_hits; i++) {
            const uint32_t v = adamas_hit_distance(hits[i]);
            idx[m] = base + first + adamas_hit_position(hits[i]);
            m += (v < t) | ((v == t) & (tie >= skip));
            tie += v == t;
            if (m == k)
                return;
        }
    }
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
    threshold_from_hist(hist, 0, 1, 256, (uint32_t)k, &hi, &below_hi);
    for (int v = 0; v < 256; v++)
        hist[v] = 0;
    for (size_t j = 0; j < n; j++)
        if ((dist[j] >> 8) == hi)
            hist[dist[j] & 0xff]++;
    threshold_from_hist(hist, 0, 1, 256, (uint32_t)k - below_hi, &lo, &below_lo);
    emit_selection(dist, (uint32_t)n, (uint32_t)k, hi << 8 | lo, below_hi + below_lo, 0, idx);
    return ADAMAS_OK;
}

/* ------------------------------------------------------ largest of f32 scores */

/* Order-preserving map of a float onto uint32 (a larger float, a larger key); -0 maps
 * as +0, so that the two tie, as they compare equal. */
static inline uint32_t order_key(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if (u == 0x80000000u)
        u = 0;
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

/* Keys a select keeps on its stack (the shortlist of a two-stage selection fits). */
#define STACK_KEYS 2048u

/* Histograms counted in turn: the keys of one select mostly share their top bytes,
 * and four counters per bucket keep the increments from waiting on one another. */
#define HIST_WAYS 4

/* The bucket that holds the need-th largest key counted in hist (its first `ways`
 * parts summed); need becomes that key's rank among the bucket's. */
static uint32_t top_bucket(uint32_t hist[HIST_WAYS][256], int ways, uint32_t *need)
{
    for (uint32_t b = 255;; b--) {
        uint32_t count = 0;
        for (int w = 0; w < ways; w++)
            count += hist[w][b];
        if (count >= *need)
            return b;
        *need -= count;
    }
}

/* The key of position j: from keys when they were computed (n <= STACK_KEYS). */
static inline uint32_t key_at(const float *score, const uint32_t *keys, uint32_t j)
{
    return keys ? keys[j] : order_key(score[j]);
}

void adamas_select_largest_f32(const float *score, uint32_t n, uint32_t k, uint32_t *idx)
{
    /* Radix select of the k-th largest key, one byte at a time from the top: `need`
     * counts how many keys still have to come from those matching `prefix`.  Up to
     * STACK_KEYS keys are computed once and, after each byte, those still in the
     * running are compacted into `live`; beyond that, each byte reads every score. */
    uint32_t key_buf[STACK_KEYS], live[STACK_KEYS];
    const uint32_t *keys = n <= STACK_KEYS ? key_buf : NULL;
    uint32_t prefix = 0, mask = 0, need = k, m = n;
    if (keys)
        for (uint32_t j = 0; j < n; j++)
            key_buf[j] = live[j] = order_key(score[j]);
    for (int shift = 24; shift >= 0; shift -= 8) {
        /* a few keys, or every score read again (after the first byte few match): one
         * histogram, less to clear */
        const int ways = keys && m >= 64 ? HIST_WAYS : 1;
        uint32_t hist[HIST_WAYS][256];
        memset(hist, 0, (size_t)ways * sizeof hist[0]);
        if (keys) {
            uint32_t j = 0;
            for (; ways == HIST_WAYS && j + HIST_WAYS <= m; j += HIST_WAYS)
                for (int w = 0; w < HIST_WAYS; w++)
                    hist[w][(live[j + w] >> shift) & 0xff]++;
            for (; j < m; j++)
                hist[0][(live[j] >> shift) & 0xff]++;
        } else {
            for (uint32_t j = 0; j < n; j++) {
                uint32_t key = order_key(score[j]);
                if ((key & mask) == prefix)
                    hist[0][(key >> shift) & 0xff]++;
            }
        }
        prefix |= top_bucket(hist, ways, &need) << shift;
        mask |= 0xffu << shift;
        if (keys) {
            uint32_t kept = 0;
            for (uint32_t j = 0; j < m; j++) {
                live[kept] = live[j];
                kept += (live[j] & mask) == prefix;
            }
            m = kept;
        }
    }
    /* Keys above `prefix` all, and the `need` last positions whose key equals it.
     * Where many are taken (a quarter of a shortlist, at random), whether a
     * position is taken is data, not a branch, in two loops split at the cutoff
     * (one compare a key; 127 of 508, 2.6-2.7 -> 2.1 us a select); where few are, a
     * branch that is rarely taken costs less. */
    uint32_t cutoff = n;
    for (uint32_t ties = need; ties > 0;)
        ties -= key_at(score, keys, --cutoff) == prefix;
    uint32_t taken = 0;
    if ((uint64_t)k * 16 >= n) {
        uint32_t j = 0;
        for (; j < cutoff && taken < k; j++) {
            idx[taken] = j;
            taken += key_at(score, keys, j) > prefix;
        }
        for (; taken < k; j++) {
            idx[taken] = j;
            taken += key_at(score, keys, j) >= prefix;
        }
    } else {
        for (uint32_t j = 0; taken < k; j++) {
            const uint32_t key = key_at(score, keys, j);
            if (key > prefix || (key == prefix && j >= cutoff))
                idx[taken++] = j;
        }
    }
}

/* ----------------------------------------------------------------------- heap */

/* Smaller distance ranks better; equal distances rank the larger position better. */
static bool worse(const uint16_t *dist, uint32_t a, uint32_t b)
{
    return dist[a] != dist[b] ? dist[a] > dist[b] : a < b;
}

/* Restore the heap (worst on top) below slot i of heap[size]. */
static void sift_down(const uint16_t *dist, uint32_t *heap, uint32_t size, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < size && worse(dist, heap[l], heap[top]))
            top = l;
        if (r < size && worse(dist, heap[r], heap[top]))
            top = r;
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

void adamas_select_smallest_heap(const uint16_t *dist, uint32_t n, uint32_t k, uint32_t base,
                                 uint32_t *idx)
{
    for (uint32_t j = 0; j < k; j++)
        idx[j] = j;
    for (uint32_t i = k / 2; i-- > 0;)
        sift_down(dist, idx, k, i);
    for (uint32_t j = k; j < n; j++)
        if (worse(dist, idx[0], j)) {
            idx[0] = j;
            sift_down(dist, idx, k, 0);
        }
    qsort(idx, k, sizeof *idx, cmp_u32);
    for (uint32_t j = 0; j < k; j++)
        idx[j] += base;
}

/* distance.c - distances between planar 2-bit codes (specification and public entry). */
#include "error.h"
#include "kernels.h"
#include "validate.h"

static inline unsigned popcount64(uint64_t x)
{
#if defined(__GNUC__)
    return (unsigned)__builtin_popcountll(x);
#else
    x = x - ((x >> 1) & 0x5555555555555555u);
    x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fu;
    return (unsigned)((x * 0x0101010101010101u) >> 56);
#endif
}

/* Exact L1 through thermometer planes: code >= 1 is hi|lo, code >= 2 is hi, code == 3
 * is hi&lo, and |ca - cb| counts the planes on which a and b differ. */
static unsigned l1_words(const uint64_t *a, const uint64_t *b, size_t words)
{
    unsigned dist = 0;
    for (size_t w = 0; w < words; w += 2) {
        uint64_t alo = a[w], ahi = a[w + 1], blo = b[w], bhi = b[w + 1];
        dist += popcount64((ahi | alo) ^ (bhi | blo)) + popcount64(ahi ^ bhi) +
                popcount64((ahi & alo) ^ (bhi & blo));
    }
    return dist;
}

/* The paper's kernel: bit planes weighted 1 and 2. */
static unsigned xorw_words(const uint64_t *a, const uint64_t *b, size_t words)
{
    unsigned dist = 0;
    for (size_t w = 0; w < words; w += 2)
        dist += popcount64(a[w] ^ b[w]) + 2 * popcount64(a[w + 1] ^ b[w + 1]);
    return dist;
}

/* Called with a constant metric, so each entry below compiles to its own loop. */
static inline uint32_t code_distance(const uint64_t *q, const uint64_t *key, size_t words,
                                     adamas_metric metric)
{
    return metric == ADAMAS_METRIC_L1 ? l1_words(q, key, words) : xorw_words(q, key, words);
}

/* One query code against n key codes. */
static inline void scan_codes(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                              uint16_t *dist, uint32_t *hist, adamas_metric metric)
{
    for (size_t j = 0; j < n; j++) {
        dist[j] = (uint16_t)code_distance(q, codes + j * words, words, metric);
        if (hist)
            hist[dist[j]]++;
    }
}

void adamas_scan_l1_scalar(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                           uint16_t *dist, uint32_t *hist)
{
    scan_codes(q, codes, words, n, dist, hist, ADAMAS_METRIC_L1);
}

void adamas_scan_xorw_scalar(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                             uint16_t *dist, uint32_t *hist)
{
    scan_codes(q, codes, words, n, dist, hist, ADAMAS_METRIC_XORW);
}

/* The grouped scan of kernels.h, head by head. */
static inline void scan_codes_group(const uint64_t *q, size_t q_stride, size_t heads,
                                    const uint64_t *codes, size_t words, size_t n,
                                    const uint16_t *limit, uint32_t *hist, size_t hist_stride,
                                    uint16_t *dist, size_t dist_stride, uint32_t first,
                                    uint32_t *hits, size_t hits_stride, uint32_t *n_hits,
                                    adamas_metric metric)
{
    for (size_t h = 0; h < heads; h++) {
        uint32_t *head_hist = hist + h * hist_stride;
        for (size_t j = 0; j < n; j++) {
            uint32_t v = code_distance(q + h * q_stride, codes + j * words, words, metric);
            if (dist)
                dist[h * dist_stride + j] = (uint16_t)v;
            if (v <= limit[h]) {
                head_hist[v]++;
                if (!dist)
                    hits[h * hits_stride + n_hits[h]++] = adamas_hit(first + (uint32_t)j, v);
            }
        }
    }
}

#define DEFINE_SCAN_GROUP_SCALAR(name, metric)                                                \
    void name(const uint64_t *q, size_t q_stride, size_t heads, const uint64_t *codes,          \
              size_t words, size_t n, const uint16_t *limit, uint32_t *hist, size_t hist_stride, \
              uint16_t *dist, size_t dist_stride, uint32_t first, uint32_t *hits,               \
              size_t hits_stride, uint32_t *n_hits)                                             \
    {                                                                                          \
        scan_codes_group(q, q_stride, heads, codes, words, n, limit, hist, hist_stride, dist,  \
                         dist_stride, first, hits, hits_stride, n_hits, metric);               \
    }

DEFINE_SCAN_GROUP_SCALAR(adamas_scan_group_l1_scalar, ADAMAS_METRIC_L1)
DEFINE_SCAN_GROUP_SCALAR(adamas_scan_group_xorw_scalar, ADAMAS_METRIC_XORW)

static int distance_args_ok(const char *fn, const uint64_t *a, const uint64_t *b, size_t d)
{
    if (!a || !b) {
        adamas_fail(ADAMAS_EINVAL, "%s: %s is NULL", fn, !a ? "a" : "b");
        return 0;
    }
    if (!adamas_head_dim_ok(d)) {
        adamas_fail(ADAMAS_EINVAL, "%s: d = %zu is not a power of two in [%d, %d]", fn, d,
                    ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM);
        return 0;
    }
    return 1;
}

uint32_t adamas_l1_distance(const uint64_t *a, const uint64_t *b, size_t d)
{
    if (!distance_args_ok("adamas_l1_distance", a, b, d))
        return UINT32_MAX;
    return l1_words(a, b, adamas_code_words(d));
}

uint32_t adamas_xorw_distance(const uint64_t *a, const uint64_t *b, size_t d)
{
    if (!distance_args_ok("adamas_xorw_distance", a, b, d))
        return UINT32_MAX;
    return xorw_words(a, b, adamas_code_words(d));
}

/*
 * avx2.c - the kernel table for AVX2 (with FMA, F16C and POPCNT).
 *
 * Compiled with -mavx2 -mfma -mf16c -mpopcnt only.  The transform, dot and page_score
 * perform the scalar f32 operations one by one (each output a+b or a-b of the same two
 * values in the same operand order, products rounded before they are added), and the
 * attention's products one FMA where the scalar code calls fmaf, so their results are
 * bit-identical (kernels.h).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "simd.h"

#ifdef ADAMAS_HAVE_SLEEF
#include <sleef.h>
#endif

#define LANES 8       /* floats per register */
#define REG_MAX_D 128 /* up to this d the whole vector is transformed in registers */

/* Each head dimension gets its own unrolled instance of the transform. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* uint64 words of one planar code (adamas_code_words, inlined) */
#define CODE_WORDS(d) (2 * (((d) + 63) / 64))

/* ============================================================ Hadamard + encode */

/* One in-register stage of span h < 8: lanes with bit h clear take a + b (x holds a,
 * the partner y = x[lane ^ h] holds b), lanes with bit h set take a - b (y holds a). */
#define STAGE_IN_REGISTER(x, y, upper) \
    _mm256_blend_ps(_mm256_add_ps((x), (y)), _mm256_sub_ps((y), (x)), (upper))

/* Stages h = 1, 2, 4 of one 8-float block. */
ALWAYS_INLINE __m256 butterflies8(__m256 x)
{
    x = STAGE_IN_REGISTER(x, _mm256_permute_ps(x, 0xB1), 0xAA);
    x = STAGE_IN_REGISTER(x, _mm256_permute_ps(x, 0x4E), 0xCC);
    x = STAGE_IN_REGISTER(x, _mm256_permute2f128_ps(x, x, 0x01), 0xF0);
    return x;
}

ALWAYS_INLINE void butterfly(__m256 *a, __m256 *b)
{
    __m256 s = _mm256_add_ps(*a, *b), t = _mm256_sub_ps(*a, *b);
    *a = s;
    *b = t;
}

/* Stages h = 1 .. 8*n/2 of v[n] (n a power of two, n <= 16): the unscaled transform
 * of the 8*n floats.  n is a constant at every call, so the loops unroll and v is
 * kept in registers (at n = 16, all sixteen: the compiler spills a few). */
ALWAYS_INLINE void transform_registers(__m256 *v, size_t n)
{
#pragma GCC unroll 16
    for (size_t r = 0; r < n; r++)
        v[r] = butterflies8(v[r]);
    const size_t n_stages = n >= 16 ? 4 : n >= 8 ? 3 : n >= 4 ? 2 : n >= 2 ? 1 : 0;
#pragma GCC unroll 4
    for (size_t stage = 0; stage < n_stages; stage++) {
        const size_t hr = (size_t)1 << stage;
#pragma GCC unroll 16
        for (size_t p = 0; p < n / 2; p++) {
            size_t j = (p / hr) * 2 * hr + p % hr; /* the p-th pair (j, j + hr) */
            butterfly(&v[j], &v[j + hr]);
        }
    }
}

/* Code bits of elements [first, first + 8): the two bits of (x > t0) + (x > t1) +
 * (x > t2) for any thresholds, as the scalar sum: low = odd count, high = count >= 2. */
ALWAYS_INLINE void encode_register(__m256 x, const __m256 th[3], size_t first, uint64_t *code)
{
    unsigned c0 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, th[0], _CMP_GT_OQ));
    unsigned c1 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, th[1], _CMP_GT_OQ));
    unsigned c2 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, th[2], _CMP_GT_OQ));
    uint64_t lo = c0 ^ c1 ^ c2, hi = (c0 & c1) | (c0 & c2) | (c1 & c2);
    code[2 * (first / 64)] |= lo << (first % 64);
    code[2 * (first / 64) + 1] |= hi << (first % 64);
}

/* The code of v[n] (LANES*n elements), each word written once, from registers. */
ALWAYS_INLINE void encode_registers(const __m256 *v, size_t n, const __m256 th[3], uint64_t *code)
{
#pragma GCC unroll 16
    for (size_t g = 0; g < (n + 7) / 8; g++) {
        uint64_t words[2] = {0, 0};
#pragma GCC unroll 8
        for (size_t k = 0; k < 8; k++)
            if (8 * g + k < n)
                encode_register(v[8 * g + k], th, k * LANES, words);
        code[2 * g] = words[0];
        code[2 * g + 1] = words[1];
    }
}

static inline void load_thresholds(const float th[3], __m256 out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = _mm256_set1_ps(th[i]);
}

/* x[d] (d <= REG_MAX_D) with no memory round trip: load, all stages, scale, store;
 * code (when not NULL) from the same registers. */
ALWAYS_INLINE void transform_small(float *x, size_t d, const float th[3], uint64_t *code)
{
    const size_t n = d / LANES;
    const __m256 scale = _mm256_set1_ps((float)(1.0 / sqrt((double)d)));
    __m256 v[REG_MAX_D / LANES];
#pragma GCC unroll 16
    for (size_t r = 0; r < n; r++)
        v[r] = _mm256_loadu_ps(x + r * LANES);
    transform_registers(v, n);
#pragma GCC unroll 16
    for (size_t r = 0; r < n; r++) {
        v[r] = _mm256_mul_ps(v[r], scale);
        _mm256_storeu_ps(x + r * LANES, v[r]);
    }
    if (code) {
        __m256 t[3];
        load_thresholds(th, t);
        encode_registers(v, n, t, code);
    }
}

/* One pass over x[d] for stage h (ways = 2) or stages h and 2h (ways = 4); the last
 * pass also scales and encodes. */
ALWAYS_INLINE void transform_pass(float *x, size_t d, size_t h, size_t ways, __m256 scale,
                                  const __m256 *t, uint64_t *code, int last)
{
    for (size_t i = 0; i < d; i += ways * h)
        for (size_t j = i; j < i + h; j += LANES) {
            __m256 v[4];
            for (size_t k = 0; k < ways; k++)
                v[k] = _mm256_loadu_ps(x + j + k * h);
            butterfly(&v[0], &v[1]);
            if (ways == 4) {
                butterfly(&v[2], &v[3]);
                butterfly(&v[0], &v[2]);
                butterfly(&v[1], &v[3]);
            }
            for (size_t k = 0; k < ways; k++) {
                if (last)
                    v[k] = _mm256_mul_ps(v[k], scale);
                _mm256_storeu_ps(x + j + k * h, v[k]);
                if (last && code)
                    encode_register(v[k], t, j + k * h, code);
            }
        }
}

/* d > REG_MAX_D: stages h < REG_MAX_D in registers, one block at a time; then the
 * rest over memory, two stages a pass (one when their number is odd), the last pass
 * scaling and encoding. */
ALWAYS_INLINE void transform_large(float *x, size_t d, const float th[3], uint64_t *code)
{
    const __m256 scale = _mm256_set1_ps((float)(1.0 / sqrt((double)d)));
    for (size_t b = 0; b < d; b += REG_MAX_D) {
        __m256 v[REG_MAX_D / LANES];
#pragma GCC unroll 16
        for (size_t r = 0; r < REG_MAX_D / LANES; r++)
            v[r] = _mm256_loadu_ps(x + b + r * LANES);
        transform_registers(v, REG_MAX_D / LANES);
#pragma GCC unroll 16
        for (size_t r = 0; r < REG_MAX_D / LANES; r++)
            _mm256_storeu_ps(x + b + r * LANES, v[r]);
    }
    __m256 t[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    if (code) {
        load_thresholds(th, t);
        memset(code, 0, CODE_WORDS(d) * sizeof *code);
    }
    size_t stages = 0;
    for (size_t h = REG_MAX_D; h < d; h *= 2)
        stages++;
    size_t h = REG_MAX_D;
    if (stages % 2) {
        transform_pass(x, d, h, 2, scale, t, code, stages == 1);
        h *= 2;
        stages--;
    }
    for (; stages > 0; stages -= 2, h *= 4)
        transform_pass(x, d, h, 4, scale, t, code, stages == 2);
}

static inline void transform(float *x, size_t d, const float th[3], uint64_t *code)
{
    switch (d) {
    case 16: transform_small(x, 16, th, code); break;
    case 32: transform_small(x, 32, th, code); break;
    case 64: transform_small(x, 64, th, code); break;
    case 128: transform_small(x, 128, th, code); break;
    case 256: transform_large(x, 256, th, code); break;
    case 512: transform_large(x, 512, th, code); break;
    case 1024: transform_large(x, 1024, th, code); break;
    default: /* not a head dimension: the specification handles it */
        if (code)
            adamas_hadamard_encode_scalar(x, d, th, code);
        else
            adamas_hadamard_scalar(x, d);
    }
}

static void hadamard_avx2(float *x, size_t d)
{
    transform(x, d, NULL, NULL);
}

static void hadamard_encode_avx2(float *x, size_t d, const float th[3], uint64_t *code)
{
    transform(x, d, th, code);
}

static void encode_avx2(const float *xh, size_t d, const float th[3], uint64_t *code)
{
    if (d % LANES) {
        adamas_encode_scalar(xh, d, th, code);
        return;
    }
    __m256 t[3];
    load_thresholds(th, t);
    memset(code, 0, CODE_WORDS(d) * sizeof *code);
    for (size_t i = 0; i < d; i += LANES)
        encode_register(_mm256_loadu_ps(xh + i), t, i, code);
}

/* ================================================================ distance scan */

/*
 * Every 128-bit lane of a register of codes is one [lo, hi] group of one key.  As in
 * avx512.c, with x = key ^ query both metrics are popcount(lo') + 2*popcount(hi'):
 * XORW with (lo', hi') = x, L1 with hi' = x.hi & ~(x.lo & (lo ^ hi)).  Popcounts are
 * per byte through a nibble table (vpshufb), summed per 64-bit lane by vpsadbw.
 */

static inline __m256i swap_planes(__m256i v)
{
    return _mm256_shuffle_epi32(v, 0x4E);
}

static inline __m256i l1_planes(__m256i key, __m256i q)
{
    const __m256i odd = _mm256_setr_epi64x(0, -1, 0, -1);
    __m256i x = _mm256_xor_si256(key, q);
    __m256i e = _mm256_and_si256(x, _mm256_xor_si256(key, swap_planes(key)));
    return _mm256_andnot_si256(_mm256_and_si256(swap_planes(e), odd), x);
}

static inline __m256i byte_popcounts(__m256i x)
{
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                           0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(x, nibble);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble);
    return _mm256_add_epi8(_mm256_shuffle_epi8(table, lo), _mm256_shuffle_epi8(table, hi));
}

/* 64-bit lanes of register r of a batch whose first `valid` words are codes. */
static inline __m256i load_codes(const uint64_t *codes, size_t r, size_t valid, int tail)
{
    if (!tail)
        return _mm256_loadu_si256((const __m256i *)(codes + 4 * r));
    size_t left = valid > 4 * r ? valid - 4 * r : 0;
    __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(left < 4 ? left : 4)),
                                      _mm256_setr_epi64x(0, 1, 2, 3));
    return _mm256_maskload_epi64((const long long *)(codes + 4 * r), mask);
}

/* [a0+a1, b0+b1, a2+a3, b2+b3] */
static inline __m256i pair_sums(__m256i a, __m256i b)
{
    return _mm256_add_epi64(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
}

/* Distances of m <= 8 keys codes[m][words] (words a constant after inlining). */
static inline void scan_batch(const __m256i *qv, const uint64_t *codes, size_t words, size_t m,
                              int tail, int xorw, uint16_t *dist)
{
    const __m256i weights = _mm256_setr_epi64x(0, 1, 0, 1); /* shift: high plane x2 */
    const size_t valid = m * words;
    __m256i k4[2]; /* distances of keys 0-3 and 4-7, one per 64-bit lane */
    if (words == 2) {
        /* a register holds two keys: lanes [k lo, k hi, k+1 lo, k+1 hi] */
        __m256i c[4];
        for (size_t r = 0; r < 4; r++) {
            __m256i key = load_codes(codes, r, valid, tail);
            __m256i planes = xorw ? _mm256_xor_si256(key, qv[0]) : l1_planes(key, qv[0]);
            c[r] = _mm256_sllv_epi64(
                _mm256_sad_epu8(byte_popcounts(planes), _mm256_setzero_si256()), weights);
        }
        for (size_t h = 0; h < 2; h++) /* [k0, k2, k1, k3] -> [k0, k1, k2, k3] */
            k4[h] = _mm256_permute4x64_epi64(pair_sums(c[2 * h], c[2 * h + 1]), 0xD8);
    } else {
        /* a key is words/4 registers: byte counts summed (at most 8 * 8 per byte) */
        const size_t regs_per_key = words / 4;
        __m256i c[8];
        for (size_t k = 0; k < 8; k++) {
            __m256i bytes = _mm256_setzero_si256();
            for (size_t r = 0; r < regs_per_key; r++) {
                __m256i key = load_codes(codes, k * regs_per_key + r, valid, tail);
                __m256i planes = xorw ? _mm256_xor_si256(key, qv[r]) : l1_planes(key, qv[r]);
                bytes = _mm256_add_epi8(bytes, byte_popcounts(planes));
            }
            c[k] = _mm256_sllv_epi64(_mm256_sad_epu8(bytes, _mm256_setzero_si256()), weights);
        }
        for (size_t h = 0; h < 2; h++) {
            __m256i t01 = pair_sums(c[4 * h], c[4 * h + 1]);     /* k0 lanes 0+1, k1, k0 2+3, k1 */
            __m256i t23 = pair_sums(c[4 * h + 2], c[4 * h + 3]);
            k4[h] = _mm256_add_epi64(_mm256_permute2x128_si256(t01, t23, 0x20),
                                     _mm256_permute2x128_si256(t01, t23, 0x31));
        }
    }
    /* 8 x 64-bit -> 8 x 16-bit: dwords [k0 k4 k1 k5 k2 k6 k3 k7], reordered, packed */
    __m256i d32 = _mm256_or_si256(k4[0], _mm256_slli_epi64(k4[1], 32));
    d32 = _mm256_permutevar8x32_epi32(d32, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    __m256i d16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(d32, d32), 0x08);
    __m128i out = _mm256_castsi256_si128(d16);
    if (tail) {
        uint16_t tmp[8];
        _mm_storeu_si128((__m128i *)tmp, out);
        memcpy(dist, tmp, m * sizeof *dist);
    } else {
        _mm_storeu_si128((__m128i *)dist, out);
    }
}

/* qv: the query, aligned with the registers of one key. */
static inline void load_query(const uint64_t *q, size_t words, __m256i qv[8])
{
    if (words == 2)
        qv[0] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
    else
        for (size_t r = 0; r < words / 4; r++)
            qv[r] = _mm256_loadu_si256((const __m256i *)(q + 4 * r));
}

static inline void scan_words(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                              uint16_t *dist, uint32_t *hist, int xorw)
{
    __m256i qv[8];
    load_query(q, words, qv);

    /* Ask for the codes ahead (simd.h): the hardware prefetcher alone leaves the scan
     * waiting on memory much of the time. */
    const size_t batch_bytes = 8 * words * sizeof(uint64_t);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        adamas_prefetch_codes(codes + j * words, batch_bytes);
        scan_batch(qv, codes + j * words, words, 8, 0, xorw, dist + j);
    }
    if (j < n)
        scan_batch(qv, codes + j * words, words, n - j, 1, xorw, dist + j);
    /* The histogram stays scalar: AVX2 has no scatter. */
    if (hist)
        for (size_t i = 0; i < n; i++)
            hist[dist[i]]++;
}

static inline void scan(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                        uint16_t *dist, uint32_t *hist, int xorw)
{
    switch (words) {
    case 2: scan_words(q, codes, 2, n, dist, hist, xorw); break;
    case 4: scan_words(q, codes, 4, n, dist, hist, xorw); break;
    case 8: scan_words(q, codes, 8, n, dist, hist, xorw); break;
    case 16: scan_words(q, codes, 16, n, dist, hist, xorw); break;
    case 32: scan_words(q, codes, 32, n, dist, hist, xorw); break;
    default:
        (xorw ? adamas_scan_xorw_scalar : adamas_scan_l1_scalar)(q, codes, words, n, dist, hist);
    }
}

static void scan_l1_avx2(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                         uint16_t *dist, uint32_t *hist)
{
    scan(q, codes, words, n, dist, hist, 0);
}

static void scan_xorw_avx2(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                           uint16_t *dist, uint32_t *hist)
{
    scan(q, codes, words, n, dist, hist, 1);
}

/* Heads per pass of the grouped scan: their queries stay in registers. */
#define GROUP_PASS_HEADS 4

/* The query heads of a GQA group, batch by batch: the 8 keys of a batch are scanned
 * by every head while their codes are in L1, and a batch is counted after the next
 * one is computed, so that its scalar loads and stores run beside the vector work (as
 * in the AVX-512 grouped scan; AVX2 has no per-lane popcount, so the lane counts are
 * not shared between heads).  A dense scan stores the distances where they go; a
 * sparse one keeps them in a buffer of two batches. */
static inline void scan_group_words(const uint64_t *q, size_t q_stride, size_t heads,
                                    const uint64_t *codes, size_t words, size_t n,
                                    const uint16_t *limit, uint32_t *hist, size_t hist_stride,
                                    uint16_t *dist, size_t dist_stride, uint32_t first,
                                    uint32_t *hits, size_t hits_stride, uint32_t *n_hits,
                                    int xorw)
{
    const size_t batch_bytes = 8 * words * sizeof(uint64_t);
    uint16_t batches[2][GROUP_PASS_HEADS * 8];
    const size_t stride = dist ? dist_stride : 8;
    for (size_t h0 = 0; h0 < heads; h0 += GROUP_PASS_HEADS) {
        const size_t pass = heads - h0 < GROUP_PASS_HEADS ? heads - h0 : GROUP_PASS_HEADS;
        __m256i qv[GROUP_PASS_HEADS][8];
        for (size_t h = 0; h < pass; h++)
            load_query(q + (h0 + h) * q_stride, words, qv[h]);
        const uint16_t *lim = limit + h0;
        uint32_t *hist0 = hist + h0 * hist_stride, *hits0 = dist ? NULL : hits + h0 * hits_stride;
        uint32_t *n0 = dist ? NULL : n_hits + h0;
        /* where the distances of the batch at key j go */
#define BATCH(j) (dist ? dist + h0 * dist_stride + (j) : batches[((j) / 8) & 1])
        size_t j = 0;
        for (; j + 8 <= n; j += 8) {
            adamas_prefetch_codes(codes + j * words, batch_bytes);
            for (size_t h = 0; h < pass; h++)
                scan_batch(qv[h], codes + j * words, words, 8, 0, xorw, BATCH(j) + h * stride);
            if (j > 0)
                adamas_count_batch(BATCH(j - 8), stride, pass, 8, first + (uint32_t)j - 8, lim,
                                   hist0, hist_stride, hits0, hits_stride, n0);
        }
        if (j > 0)
            adamas_count_batch(BATCH(j - 8), stride, pass, 8, first + (uint32_t)j - 8, lim, hist0,
                               hist_stride, hits0, hits_stride, n0);
        if (j < n) {
            for (size_t h = 0; h < pass; h++)
                scan_batch(qv[h], codes + j * words, words, n - j, 1, xorw, BATCH(j) + h * stride);
            adamas_count_batch(BATCH(j), stride, pass, n - j, first + (uint32_t)j, lim, hist0,
                               hist_stride, hits0, hits_stride, n0);
        }
#undef BATCH
    }
}

/* Keys per block of a group of more than GROUP_PASS_HEADS heads, whose passes each
 * read the block's codes, from L1 after the first (256 keys of d = 128: 8 KiB). */
#define GROUP_BLOCK_KEYS 256

static inline void scan_group(const uint64_t *q, size_t q_stride, size_t heads,
                              const uint64_t *codes, size_t words, size_t n, const uint16_t *limit,
                              uint32_t *hist, size_t hist_stride, uint16_t *dist,
                              size_t dist_stride, uint32_t first, uint32_t *hits,
                              size_t hits_stride, uint32_t *n_hits, int xorw)
{
    const size_t block_keys = heads > GROUP_PASS_HEADS ? GROUP_BLOCK_KEYS : n;
    for (size_t at = 0; at < n; at += block_keys) {
        const size_t len = n - at < block_keys ? n - at : block_keys;
        const uint64_t *block = codes + at * words;
        uint16_t *block_dist = dist ? dist + at : NULL;
        const uint32_t block_first = first + (uint32_t)at;
#define SCAN_GROUP_WORDS(w)                                                                  \
    scan_group_words(q, q_stride, heads, block, w, len, limit, hist, hist_stride, block_dist, \
                     dist_stride, block_first, hits, hits_stride, n_hits, xorw)
        switch (words) {
        case 2: SCAN_GROUP_WORDS(2); break;
        case 4: SCAN_GROUP_WORDS(4); break;
        case 8: SCAN_GROUP_WORDS(8); break;
        case 16: SCAN_GROUP_WORDS(16); break;
        case 32: SCAN_GROUP_WORDS(32); break;
        default:
            (xorw ? adamas_scan_group_xorw_scalar : adamas_scan_group_l1_scalar)(
                q, q_stride, heads, block, words, len, limit, hist, hist_stride, block_dist,
                dist_stride, block_first, hits, hits_stride, n_hits);
        }
#undef SCAN_GROUP_WORDS
    }
}

#define DEFINE_SCAN_GROUP_AVX2(name, xorw)                                                    \
    static void name(const uint64_t *q, size_t q_stride, size_t heads, const uint64_t *codes, \
                     size_t words, size_t n, const uint16_t *limit, uint32_t *hist,          \
                     size_t hist_stride, uint16_t *dist, size_t dist_stride, uint32_t first,  \
                     uint32_t *hits, size_t hits_stride, uint32_t *n_hits)                   \
    {                                                                                        \
        scan_group(q, q_stride, heads, codes, words, n, limit, hist, hist_stride, dist,       \
                   dist_stride, first, hits, hits_stride, n_hits, xorw);                      \
    }

DEFINE_SCAN_GROUP_AVX2(scan_group_l1_avx2, 0)
DEFINE_SCAN_GROUP_AVX2(scan_group_xorw_avx2, 1)

/* ====================================================== attention arithmetic */

/* Eight elements of a stored row widened to f32 (exact for f16 and bf16). */
static inline __m256 load_f32(const void *row, size_t i)
{
    return _mm256_loadu_ps((const float *)row + i);
}

static inline __m256 load_f16(const void *row, size_t i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
}

static inline __m256 load_bf16(const void *row, size_t i)
{
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The 16 lane sums live in two registers (lanes 0-7 and 8-15); the scalar fold. */
static inline float fold_lanes(__m256 lo, __m256 hi)
{
    __m256 a = _mm256_add_ps(lo, hi);
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

/* sum + a*b: one fused multiply-add (fused), or the product rounded, then added. */
static inline __m256 mul_add(__m256 a, __m256 b, __m256 sum, int fused)
{
    return fused ? _mm256_fmadd_ps(a, b, sum) : _mm256_add_ps(sum, _mm256_mul_ps(a, b));
}

/* d is a multiple of 16, as in the scalar loop; fused: dot_group's contract, else
 * dot's. */
static inline float dot_rows(const float *q, const void *row, size_t d, int fused,
                             __m256 (*load)(const void *, size_t))
{
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (size_t i = 0; i < d; i += 2 * LANES) {
        lo = mul_add(_mm256_loadu_ps(q + i), load(row, i), lo, fused);
        hi = mul_add(_mm256_loadu_ps(q + i + LANES), load(row, i + LANES), hi, fused);
    }
    return fold_lanes(lo, hi);
}

static float dot_f32_avx2(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, 0, load_f32);
}

static float dot_f16_avx2(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, 0, load_f16);
}

static float dot_bf16_avx2(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, 0, load_bf16);
}

/* y += a*row, one fused multiply-add per element as in the scalar loop.  Returns how
 * many elements it did (a multiple of 8); the caller does the rest. */
static inline size_t axpy_rows(float *y, float a, const void *row, size_t d,
                               __m256 (*load)(const void *, size_t))
{
    const __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + LANES <= d; i += LANES)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load(row, i), _mm256_loadu_ps(y + i)));
    return i;
}

static void axpy_f32_avx2(float *y, float a, const void *row, size_t d)
{
    size_t i = axpy_rows(y, a, row, d, load_f32);
    if (i < d) /* not reached for head dimensions */
        adamas_axpy_f32_scalar(y + i, a, (const float *)row + i, d - i);
}

static void axpy_f16_avx2(float *y, float a, const void *row, size_t d)
{
    size_t i = axpy_rows(y, a, row, d, load_f16);
    if (i < d)
        adamas_axpy_f16_scalar(y + i, a, (const uint16_t *)row + i, d - i);
}

static void axpy_bf16_avx2(float *y, float a, const void *row, size_t d)
{
    size_t i = axpy_rows(y, a, row, d, load_bf16);
    if (i < d)
        adamas_axpy_bf16_scalar(y + i, a, (const uint16_t *)row + i, d - i);
}

/* ------------------------------------------------------------- GQA groups */

/* dot of each head of a group with each row: 16 elements of a row converted once (two
 * registers) for four heads, each keeping its 16 lane sums as dot_rows does (fused); the heads
 * past a multiple of four take the single-head loop (rows from L1). */
static inline void dot_group_rows(const float *q, size_t heads, const void *const *rows,
                                  size_t n, size_t d, float *out, size_t out_stride,
                                  __m256 (*load)(const void *, size_t))
{
    size_t j = 0;
    for (; j + 4 <= heads; j += 4)
        for (size_t r = 0; r < n; r++) {
            __m256 lo[4], hi[4];
            for (size_t k = 0; k < 4; k++)
                lo[k] = hi[k] = _mm256_setzero_ps();
            for (size_t i = 0; i < d; i += 2 * LANES) {
                __m256 r0 = load(rows[r], i), r1 = load(rows[r], i + LANES);
                for (size_t k = 0; k < 4; k++) {
                    const float *qk = q + (j + k) * d + i;
                    lo[k] = _mm256_fmadd_ps(_mm256_loadu_ps(qk), r0, lo[k]);
                    hi[k] = _mm256_fmadd_ps(_mm256_loadu_ps(qk + LANES), r1, hi[k]);
                }
            }
            for (size_t k = 0; k < 4; k++)
                out[(j + k) * out_stride + r] = fold_lanes(lo[k], hi[k]);
        }
    for (; j < heads; j++)
        for (size_t r = 0; r < n; r++)
            out[j * out_stride + r] = dot_rows(q + j * d, rows[r], d, 1, load);
}

static void dot_group_f32_avx2(const float *q, size_t heads, const void *const *rows, size_t n,
                               size_t d, float *out, size_t out_stride)
{
    dot_group_rows(q, heads, rows, n, d, out, out_stride, load_f32);
}

static void dot_group_f16_avx2(const float *q, size_t heads, const void *const *rows, size_t n,
                               size_t d, float *out, size_t out_stride)
{
    dot_group_rows(q, heads, rows, n, d, out, out_stride, load_f16);
}

static void dot_group_bf16_avx2(const float *q, size_t heads, const void *const *rows, size_t n,
                                size_t d, float *out, size_t out_stride)
{
    dot_group_rows(q, heads, rows, n, d, out, out_stride, load_bf16);
}

/* y_j += a_j[r]*rows[r] for each head, the rows in order, as axpy_rows: per 8 elements
 * the sums of four heads stay in registers over all n rows, and 8 elements of a row
 * are converted once for the four heads.  Returns how many elements it did for every
 * head (a multiple of 8); the caller does the rest. */
static inline size_t axpy_group_rows(float *y, size_t y_stride, const float *a, size_t a_stride,
                                     size_t heads, const void *const *rows, size_t n, size_t d,
                                     __m256 (*load)(const void *, size_t))
{
    const size_t body = d / LANES * LANES;
    size_t j = 0;
    for (; j + 4 <= heads; j += 4)
        for (size_t i = 0; i < body; i += LANES) {
            __m256 sum[4];
            for (size_t k = 0; k < 4; k++)
                sum[k] = _mm256_loadu_ps(y + (j + k) * y_stride + i);
            for (size_t r = 0; r < n; r++) {
                __m256 x = load(rows[r], i);
                for (size_t k = 0; k < 4; k++)
                    sum[k] = _mm256_fmadd_ps(_mm256_set1_ps(a[(j + k) * a_stride + r]), x, sum[k]);
            }
            for (size_t k = 0; k < 4; k++)
                _mm256_storeu_ps(y + (j + k) * y_stride + i, sum[k]);
        }
    for (; j < heads; j++)
        for (size_t r = 0; r < n; r++)
            axpy_rows(y + j * y_stride, a[j * a_stride + r], rows[r], body, load);
    return body;
}

/* The elements past the last multiple of 8 (not reached for head dimensions). */
static inline void axpy_group_tail(float *y, size_t y_stride, const float *a, size_t a_stride,
                                   size_t heads, const void *const *rows, size_t n, size_t d,
                                   size_t done, size_t elem_size,
                                   void (*axpy)(float *, float, const void *, size_t))
{
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < heads; j++)
            axpy(y + j * y_stride + done, a[j * a_stride + r],
                 (const char *)rows[r] + done * elem_size, d - done);
}

static void axpy_group_f32_avx2(float *y, size_t y_stride, const float *a, size_t a_stride,
                                size_t heads, const void *const *rows, size_t n, size_t d)
{
    size_t i = axpy_group_rows(y, y_stride, a, a_stride, heads, rows, n, d, load_f32);
    if (i < d)
        axpy_group_tail(y, y_stride, a, a_stride, heads, rows, n, d, i, 4, adamas_axpy_f32_scalar);
}

static void axpy_group_f16_avx2(float *y, size_t y_stride, const float *a, size_t a_stride,
                                size_t heads, const void *const *rows, size_t n, size_t d)
{
    size_t i = axpy_group_rows(y, y_stride, a, a_stride, heads, rows, n, d, load_f16);
    if (i < d)
        axpy_group_tail(y, y_stride, a, a_stride, heads, rows, n, d, i, 2, adamas_axpy_f16_scalar);
}

static void axpy_group_bf16_avx2(float *y, size_t y_stride, const float *a, size_t a_stride,
                                 size_t heads, const void *const *rows, size_t n, size_t d)
{
    size_t i = axpy_group_rows(y, y_stride, a, a_stride, heads, rows, n, d, load_bf16);
    if (i < d)
        axpy_group_tail(y, y_stride, a, a_stride, heads, rows, n, d, i, 2, adamas_axpy_bf16_scalar);
}

/* sum_i max(q_i*lo_i, q_i*hi_i); max_ps(a, b) is a > b ? a : b, as in the scalar loop. */
static float page_score_avx2(const float *q, const float *lo, const float *hi, size_t d)
{
    __m256 acc_lo = _mm256_setzero_ps(), acc_hi = _mm256_setzero_ps();
    for (size_t i = 0; i < d; i += 2 * LANES) {
        __m256 q0 = _mm256_loadu_ps(q + i), q1 = _mm256_loadu_ps(q + i + LANES);
        __m256 a0 = _mm256_mul_ps(q0, _mm256_loadu_ps(lo + i));
        __m256 b0 = _mm256_mul_ps(q0, _mm256_loadu_ps(hi + i));
        __m256 a1 = _mm256_mul_ps(q1, _mm256_loadu_ps(lo + i + LANES));
        __m256 b1 = _mm256_mul_ps(q1, _mm256_loadu_ps(hi + i + LANES));
        acc_lo = _mm256_add_ps(acc_lo, _mm256_max_ps(a0, b0));
        acc_hi = _mm256_add_ps(acc_hi, _mm256_max_ps(a1, b1));
    }
    return fold_lanes(acc_lo, acc_hi);
}

/* ======================================================================== exp */

static inline __m256 pow2i(__m256i k) /* 2^k for -126 <= k <= 127 */
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

/* The fallback exp of simd.h. */
static inline __m256 exp_poly(__m256 x)
{
    x = _mm256_max_ps(_mm256_set1_ps(ADAMAS_EXP_MIN_ARG), x); /* max/min(c, x): NaN stays */
    x = _mm256_min_ps(_mm256_set1_ps(ADAMAS_EXP_MAX_ARG), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(ADAMAS_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ADAMAS_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ADAMAS_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(ADAMAS_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ADAMAS_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ADAMAS_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ADAMAS_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ADAMAS_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ADAMAS_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n in [-150, 128]: two factors 2^(n/2) keep each normal, one rounding at the end */
    __m256i k = _mm256_cvtps_epi32(n);
    __m256i k1 = _mm256_srai_epi32(k, 1);
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2i(k1)), pow2i(_mm256_sub_epi32(k, k1)));
}

/* x[i] *= scale, 8 at a time, the tail through the scalar entry; the largest in 8
 * running maxima (vmaxps takes its second operand unless the first is greater, as the
 * scalar compare does). */
static float scale_max_avx2(float *x, size_t n, float scale)
{
    const __m256 vscale = _mm256_set1_ps(scale);
    __m256 lane_max = _mm256_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vscale);
        _mm256_storeu_ps(x + i, v);
        lane_max = _mm256_max_ps(v, lane_max);
    }
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(lane_max), _mm256_extractf128_ps(lane_max, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    float max = _mm_cvtss_f32(_mm_max_ss(b, _mm_movehdup_ps(b)));
    float tail = adamas_scale_max_scalar(x + i, n - i, scale);
    return tail > max ? tail : max;
}

/* s[i] = exp(s[i] - max), 8 at a time, the tail through masked loads and stores; the
 * sum in 8 lanes (another order than the scalar loop: within a few ulp, all terms
 * are positive). */
static inline float exp_sum_with(float *s, size_t n, float max, __m256 (*vexp)(__m256))
{
    const __m256 vmax = _mm256_set1_ps(max);
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        __m256 e = vexp(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmax));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 e = vexp(_mm256_sub_ps(_mm256_maskload_ps(s + i, m), vmax));
        _mm256_maskstore_ps(s + i, m, e);
        acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
    }
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

float adamas_exp_sum_avx2_poly(float *s, size_t n, float max)
{
    return exp_sum_with(s, n, max, exp_poly);
}

#ifdef ADAMAS_HAVE_SLEEF
static inline __m256 exp_sleef(__m256 x)
{
    return Sleef_expf8_u10avx2(x);
}

static float exp_sum_avx2(float *s, size_t n, float max)
{
    return exp_sum_with(s, n, max, exp_sleef);
}
#else
#define exp_sum_avx2 adamas_exp_sum_avx2_poly
#endif

/* ============================================================ Q8_0 weights */

/* 8 int8 weights of a Q8_0 block, from weight `first` on, as f32. */
static inline __m256 q8_0_lanes(const unsigned char *blk, int first)
{
    __m128i q = _mm_loadl_epi64((const __m128i *)(blk + 2 + first));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
}

static inline __m256 q8_0_scale(const unsigned char *blk)
{
    uint16_t h;
    memcpy(&h, blk, sizeof h);
    return _mm256_set1_ps(_cvtsh_ss(h));
}

/* Lanes 0-7 in lo, 8-15 in hi; lane l takes weights l and l+16 of each block:
 * q8_0.c's order. */
static float dot_q8_0_avx2(const float *x, const void *blocks, size_t n_blocks)
{
    const unsigned char *blk = blocks;
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (size_t b = 0; b < n_blocks; b++, blk += ADAMAS_Q8_0_BYTES, x += 4 * LANES) {
        const __m256 s = q8_0_scale(blk);
        __m256 lo_pair = _mm256_add_ps(_mm256_mul_ps(q8_0_lanes(blk, 0), _mm256_loadu_ps(x)),
                                       _mm256_mul_ps(q8_0_lanes(blk, 16), _mm256_loadu_ps(x + 16)));
        __m256 hi_pair = _mm256_add_ps(_mm256_mul_ps(q8_0_lanes(blk, 8), _mm256_loadu_ps(x + 8)),
                                       _mm256_mul_ps(q8_0_lanes(blk, 24), _mm256_loadu_ps(x + 24)));
        lo = _mm256_add_ps(lo, _mm256_mul_ps(s, lo_pair));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(s, hi_pair));
    }
    return fold_lanes(lo, hi);
}

static void widen_q8_0_avx2(float *dst, const void *blocks, size_t n_blocks)
{
    const unsigned char *blk = blocks;
    for (size_t b = 0; b < n_blocks; b++, blk += ADAMAS_Q8_0_BYTES, dst += 4 * LANES) {
        const __m256 s = q8_0_scale(blk);
        for (int i = 0; i < 4 * LANES; i += LANES)
            _mm256_storeu_ps(dst + i, _mm256_mul_ps(s, q8_0_lanes(blk, i)));
    }
}

/* ====================================================================== table */

const adamas_kernels adamas_kernels_avx2 = {
    .name = "avx2",
    .hadamard = hadamard_avx2,
    .encode = encode_avx2,
    .hadamard_encode = hadamard_encode_avx2,
    .scan = {scan_l1_avx2, scan_xorw_avx2},
    .scan_group = {scan_group_l1_avx2, scan_group_xorw_avx2},
    .emit = adamas_emit_scalar, /* no compress instruction: the branch-free loop it is */
    .dot = {dot_f32_avx2, dot_f16_avx2, dot_bf16_avx2},
    .dot_group = {dot_group_f32_avx2, dot_group_f16_avx2, dot_group_bf16_avx2},
    .axpy = {axpy_f32_avx2, axpy_f16_avx2, axpy_bf16_avx2},
    .axpy_group = {axpy_group_f32_avx2, axpy_group_f16_avx2, axpy_group_bf16_avx2},
    .scale_max = scale_max_avx2,
    .exp_sum = exp_sum_avx2,
    .page_score = page_score_avx2,
    .dot_q8_0 = dot_q8_0_avx2,
    .widen_q8_0 = widen_q8_0_avx2,
};

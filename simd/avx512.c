/*
 * avx512.c - the kernel table for AVX-512 (F, BW, VL, DQ; VPOPCNTDQ when the CPU has it).
 *
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq only: the VPOPCNTQ scan is
 * compiled for AVX512_VPOPCNTDQ by a target attribute and chosen at run time, so that
 * this table also runs on AVX-512 CPUs without it (Skylake-X, Cascade Lake).
 *
 * Bit-exactness (kernels.h): the transform performs the scalar f32 operations, each
 * output a+b or a-b of the same two values in the same operand order, then one
 * multiplication by the same constant; dot and page_score keep the 16 lane sums of
 * the scalar loop in one register and fold them in the same order.  FMA only where
 * the scalar code calls fmaf (the attention's products: dot_group, axpy, axpy_group)
 * and in exp.
 */
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "kernels.h"
#include "simd.h"

#ifdef ADAMAS_HAVE_SLEEF
#include <sleef.h>
#endif

#define LANES 16                 /* floats per register */
#define REG_MAX_D 256            /* up to this d the whole vector lives in 16 registers */

/* Each head dimension gets its own unrolled instance of the transform. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* uint64 words of one planar code (adamas_code_words, inlined) */
#define CODE_WORDS(d) (2 * (((d) + 63) / 64))

/* ============================================================ Hadamard + encode */

/* One in-register stage of span h < 16: lanes with bit h clear take a + b (x holds a,
 * the partner y = x[lane ^ h] holds b), lanes with bit h set take a - b (y holds a). */
ALWAYS_INLINE __m512 stage_in_register(__m512 x, __m512 y, __mmask16 upper)
{
    return _mm512_mask_sub_ps(_mm512_add_ps(x, y), upper, y, x);
}

/* Stages h = 1, 2, 4, 8 of one 16-float block. */
ALWAYS_INLINE __m512 butterflies16(__m512 x)
{
    x = stage_in_register(x, _mm512_permute_ps(x, 0xB1), 0xAAAA);
    x = stage_in_register(x, _mm512_permute_ps(x, 0x4E), 0xCCCC);
    x = stage_in_register(x, _mm512_shuffle_f32x4(x, x, 0xB1), 0xF0F0);
    x = stage_in_register(x, _mm512_shuffle_f32x4(x, x, 0x4E), 0xFF00);
    return x;
}

ALWAYS_INLINE void butterfly(__m512 *a, __m512 *b)
{
    __m512 s = _mm512_add_ps(*a, *b), t = _mm512_sub_ps(*a, *b);
    *a = s;
    *b = t;
}

/* Stages h = 1 .. 16*n/2 of v[n] (n a power of two, n <= 16): the Hadamard transform
 * of the 16*n floats, unscaled.  n is a constant at every call, so the loops unroll
 * and v stays in registers. */
ALWAYS_INLINE void transform_registers(__m512 *v, size_t n)
{
#pragma GCC unroll 16
    for (size_t r = 0; r < n; r++)
        v[r] = butterflies16(v[r]);
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

/* Code bits of elements [first, first + 16) of a vector: low plane = odd number of
 * thresholds passed, high plane = at least two passed, i.e. the two bits of
 * (x > t0) + (x > t1) + (x > t2) for any thresholds (the scalar sum). */
ALWAYS_INLINE void encode_register(__m512 x, const __m512 th[3], size_t first, uint64_t *code)
{
    __mmask16 c0 = _mm512_cmp_ps_mask(x, th[0], _CMP_GT_OQ);
    __mmask16 c1 = _mm512_cmp_ps_mask(x, th[1], _CMP_GT_OQ);
    __mmask16 c2 = _mm512_cmp_ps_mask(x, th[2], _CMP_GT_OQ);
    uint64_t lo = (uint16_t)(c0 ^ c1 ^ c2), hi = (uint16_t)((c0 & c1) | (c0 & c2) | (c1 & c2));
    code[2 * (first / 64)] |= lo << (first % 64);
    code[2 * (first / 64) + 1] |= hi << (first % 64);
}

/* The code of v[n] (LANES*n elements), each word written once, from registers. */
ALWAYS_INLINE void encode_registers(const __m512 *v, size_t n, const __m512 th[3], uint64_t *code)
{
#pragma GCC unroll 16
    for (size_t g = 0; g < (n + 3) / 4; g++) {
        uint64_t words[2] = {0, 0};
#pragma GCC unroll 4
        for (size_t k = 0; k < 4; k++)
            if (4 * g + k < n)
                encode_register(v[4 * g + k], th, k * LANES, words);
        code[2 * g] = words[0];
        code[2 * g + 1] = words[1];
    }
}

static inline void load_thresholds(const float th[3], __m512 out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = _mm512_set1_ps(th[i]);
}

/* x[d] (d <= REG_MAX_D) transformed with no memory round trip: load, all stages, scale,
 * store; code (when not NULL) from the same registers. */
ALWAYS_INLINE void transform_small(float *x, size_t d, const float th[3], uint64_t *code)
{
    const size_t n = d / LANES;
    const __m512 scale = _mm512_set1_ps((float)(1.0 / sqrt((double)d)));
    __m512 v[REG_MAX_D / LANES];
#pragma GCC unroll 16
    for (size_t r = 0; r < n; r++)
        v[r] = _mm512_loadu_ps(x + r * LANES);
    transform_registers(v, n);
#pragma GCC unroll 16
    for (size_t r = 0; r < n; r++) {
        v[r] = _mm512_mul_ps(v[r], scale);
        _mm512_storeu_ps(x + r * LANES, v[r]);
    }
    if (code) {
        __m512 t[3];
        load_thresholds(th, t);
        encode_registers(v, n, t, code);
    }
}

/* d = 512 or 1024: stages h < 256 in registers, one 256-float block at a time; then
 * the remaining one or two stages in a single pass that also scales and encodes. */
ALWAYS_INLINE void transform_large(float *x, size_t d, const float th[3], uint64_t *code)
{
    const __m512 scale = _mm512_set1_ps((float)(1.0 / sqrt((double)d)));
    for (size_t b = 0; b < d; b += REG_MAX_D) {
        __m512 v[REG_MAX_D / LANES];
#pragma GCC unroll 16
        for (size_t r = 0; r < REG_MAX_D / LANES; r++)
            v[r] = _mm512_loadu_ps(x + b + r * LANES);
        transform_registers(v, REG_MAX_D / LANES);
#pragma GCC unroll 16
        for (size_t r = 0; r < REG_MAX_D / LANES; r++)
            _mm512_storeu_ps(x + b + r * LANES, v[r]);
    }
    __m512 t[3] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    if (code) {
        load_thresholds(th, t);
        memset(code, 0, CODE_WORDS(d) * sizeof *code);
    }
    const size_t ways = d / REG_MAX_D; /* 2: stage 256; 4: stages 256 and 512 */
    for (size_t i = 0; i < REG_MAX_D; i += LANES) {
        __m512 v[4];
        for (size_t k = 0; k < ways; k++)
            v[k] = _mm512_loadu_ps(x + i + k * REG_MAX_D);
        butterfly(&v[0], &v[1]);
        if (ways == 4) {
            butterfly(&v[2], &v[3]);
            butterfly(&v[0], &v[2]);
            butterfly(&v[1], &v[3]);
        }
        for (size_t k = 0; k < ways; k++) {
            v[k] = _mm512_mul_ps(v[k], scale);
            _mm512_storeu_ps(x + i + k * REG_MAX_D, v[k]);
            if (code)
                encode_register(v[k], t, i + k * REG_MAX_D, code);
        }
    }
}

/* The transform of every supported d; code NULL: no encode.  Each case is its own
 * fully unrolled instance. */
static inline void transform(float *x, size_t d, const float th[3], uint64_t *code)
{
    switch (d) {
    case 16: transform_small(x, 16, th, code); break;
    case 32: transform_small(x, 32, th, code); break;
    case 64: transform_small(x, 64, th, code); break;
    case 128: transform_small(x, 128, th, code); break;
    case 256: transform_small(x, 256, th, code); break;
    case 512: transform_large(x, 512, th, code); break;
    case 1024: transform_large(x, 1024, th, code); break;
    default: /* not a head dimension: the specification handles it */
        if (code)
            adamas_hadamard_encode_scalar(x, d, th, code);
        else
            adamas_hadamard_scalar(x, d);
    }
}

static void hadamard_avx512(float *x, size_t d)
{
    transform(x, d, NULL, NULL);
}

static void hadamard_encode_avx512(float *x, size_t d, const float th[3], uint64_t *code)
{
    transform(x, d, th, code);
}

static void encode_avx512(const float *xh, size_t d, const float th[3], uint64_t *code)
{
    if (d % LANES) {
        adamas_encode_scalar(xh, d, th, code);
        return;
    }
    __m512 t[3];
    load_thresholds(th, t);
    memset(code, 0, CODE_WORDS(d) * sizeof *code);
    for (size_t i = 0; i < d; i += LANES)
        encode_register(_mm512_loadu_ps(xh + i), t, i, code);
}

/* ================================================================ distance scan */

/*
 * A code is a sequence of (low plane, high plane) word pairs, so every 128-bit lane
 * of a register of codes holds one 64-dimension group [lo, hi] of one key, whatever
 * the code length.  Per lane, with x = key ^ query:
 *   XORW = popcount(x.lo) + 2*popcount(x.hi);
 *   L1   = popcount(x.lo) + 2*popcount(w), w = x.hi & ~(x.lo & (lo ^ hi)):
 *          where both planes differ, |a - b| is 3 when the key's two bits are equal
 *          and 1 when they differ (then the weight-2 bit is dropped); elsewhere
 *          |a - b| is x.lo + 2*x.hi.  (Checked over all 16 code pairs by the tests.)
 * So both metrics are "popcount per 64-bit lane, odd lanes weighted 2", and the lane
 * counts of a batch of 8 keys are summed per key by a tree of pair sums.
 */

/* [lo, hi] -> [hi, lo] in every 128-bit lane */
static inline __m512i swap_planes(__m512i v)
{
    return _mm512_shuffle_epi32(v, _MM_PERM_BADC);
}

static inline __m512i l1_planes(__m512i key, __m512i q)
{
    __m512i x = _mm512_xor_si512(key, q);
    __m512i e = _mm512_ternarylogic_epi64(x, key, swap_planes(key), 0x60); /* x & (k ^ s) */
    return _mm512_mask_andnot_epi64(x, 0xAA, swap_planes(e), x);
}

static inline __m512i xorw_planes(__m512i key, __m512i q)
{
    return _mm512_xor_si512(key, q);
}

__attribute__((target("avx512vpopcntdq"))) static inline __m512i lane_popcounts_vpopcnt(__m512i x)
{
    return _mm512_popcnt_epi64(x);
}

/* Popcount per 64-bit lane through a 16-entry nibble table (vpshufb) and vpsadbw. */
static inline __m512i lane_popcounts_vpshufb(__m512i x)
{
    const __m512i table = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
    const __m512i nibble = _mm512_set1_epi8(0x0f);
    __m512i lo = _mm512_and_si512(x, nibble);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), nibble);
    __m512i bytes = _mm512_add_epi8(_mm512_shuffle_epi8(table, lo), _mm512_shuffle_epi8(table, hi));
    return _mm512_sad_epu8(bytes, _mm512_setzero_si512());
}

/* [a0 + w*a1, a2 + w*a3, ..., b6 + w*b7] with w = 2 (weighted) or 1. */
static inline __m512i pair_sums(__m512i a, __m512i b, int weighted)
{
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    __m512i e = _mm512_permutex2var_epi64(a, even, b), o = _mm512_permutex2var_epi64(a, odd, b);
    return _mm512_add_epi64(e, weighted ? _mm512_slli_epi64(o, 1) : o);
}

/* (acc >> 16) | (counts << 48) per 64-bit lane: the counts enter the top field as the
 * others move down one (vpshrdvq). */
__attribute__((target("avx512vbmi2"))) static inline __m512i funnel_in_16(__m512i acc, __m512i counts)
{
    return _mm512_shrdv_epi64(acc, counts, _mm512_set1_epi64(16));
}

/* Mask of the valid 64-bit lanes of register r of a batch with `valid` valid words. */
static inline __mmask8 lanes_valid(size_t valid, size_t r)
{
    size_t left = valid > 8 * r ? valid - 8 * r : 0;
    return left >= 8 ? 0xFF : (__mmask8)((1u << left) - 1);
}

/* Register `at` of a batch of m keys of `words` words; with tail, lanes past the
 * batch's last word are not read (they load as 0). */
static inline __m512i load_key_register(const uint64_t *codes, size_t words, size_t m, size_t at,
                                        int tail)
{
    return tail ? _mm512_maskz_loadu_epi64(lanes_valid(m * words, at), codes + 8 * at)
                : _mm512_loadu_si512(codes + 8 * at);
}

/*
 * Distances of m <= 8 keys codes[m][words] (words = 2, 4, 8, 16 or 32, a constant
 * after inlining); the batch is 8*words 64-bit words = `words` registers.  tail: m may
 * be < 8, loads are masked (no read past the last key) and so is the store.
 */
static inline void scan_batch(const __m512i *qv, const uint64_t *codes, size_t words, size_t m,
                              int tail, int xorw, int vpopcnt, uint16_t *dist)
{
    const size_t regs_per_key = words >= 8 ? words / 8 : 1;
    const size_t n_regs = words >= 8 ? 8 : words; /* after summing each key's registers */
    __m512i c[8];
    for (size_t r = 0; r < n_regs; r++) {
        __m512i sum = _mm512_setzero_si512();
        for (size_t k = 0; k < regs_per_key; k++) {
            size_t at = r * regs_per_key + k;
            __m512i key = load_key_register(codes, words, m, at, tail);
            __m512i planes = xorw ? xorw_planes(key, qv[k]) : l1_planes(key, qv[k]);
            __m512i counts = vpopcnt ? lane_popcounts_vpopcnt(planes) : lane_popcounts_vpshufb(planes);
            sum = k ? _mm512_add_epi64(sum, counts) : counts;
        }
        c[r] = sum;
    }
    /* Each level halves the registers and the lanes per key; the first pairs the two
     * planes of each group, so it weights the odd (high plane) lane by 2. */
    for (size_t n = n_regs, weighted = 1; n > 1; n /= 2, weighted = 0)
        for (size_t r = 0; r < n / 2; r++)
            c[r] = pair_sums(c[2 * r], c[2 * r + 1], (int)weighted);
    __m128i d16 = _mm512_cvtepi64_epi16(c[0]);
    if (tail)
        _mm_mask_storeu_epi16(dist, (__mmask8)((1u << m) - 1), d16);
    else
        _mm_storeu_si128((__m128i *)dist, d16);
}

static inline void scan_words(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                              uint16_t *dist, uint32_t *hist, int xorw, int vpopcnt)
{
    __m512i qv[4]; /* the query, aligned with the registers of one key */
    if (words == 2)
        qv[0] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)q));
    else if (words == 4)
        qv[0] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)q));
    else
        for (size_t k = 0; k < words / 8; k++)
            qv[k] = _mm512_loadu_si512(q + 8 * k);

    /* Ask for the codes ahead (simd.h): the hardware prefetcher alone leaves the scan
     * waiting on memory about half of the time. */
    const size_t batch_bytes = 8 * words * sizeof(uint64_t);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        adamas_prefetch_codes(codes + j * words, batch_bytes);
        scan_batch(qv, codes + j * words, words, 8, 0, xorw, vpopcnt, dist + j);
    }
    if (j < n)
        scan_batch(qv, codes + j * words, words, n - j, 1, xorw, vpopcnt, dist + j);
    /* The histogram stays scalar: equal distances collide, and scatter has no
     * conflict-free increment. */
    if (hist)
        for (size_t i = 0; i < n; i++)
            hist[dist[i]]++;
}

/* One instance per code length; other lengths are not head dimensions. */
static inline void scan(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                        uint16_t *dist, uint32_t *hist, int xorw, int vpopcnt)
{
    switch (words) {
    case 2: scan_words(q, codes, 2, n, dist, hist, xorw, vpopcnt); break;
    case 4: scan_words(q, codes, 4, n, dist, hist, xorw, vpopcnt); break;
    case 8: scan_words(q, codes, 8, n, dist, hist, xorw, vpopcnt); break;
    case 16: scan_words(q, codes, 16, n, dist, hist, xorw, vpopcnt); break;
    case 32: scan_words(q, codes, 32, n, dist, hist, xorw, vpopcnt); break;
    default:
        (xorw ? adamas_scan_xorw_scalar : adamas_scan_l1_scalar)(q, codes, words, n, dist, hist);
    }
}

__attribute__((target("avx512vpopcntdq"), flatten)) void
adamas_scan_l1_avx512_vpopcnt(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                              uint16_t *dist, uint32_t *hist)
{
    scan(q, codes, words, n, dist, hist, 0, 1);
}

__attribute__((target("avx512vpopcntdq"), flatten)) void
adamas_scan_xorw_avx512_vpopcnt(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                                uint16_t *dist, uint32_t *hist)
{
    scan(q, codes, words, n, dist, hist, 1, 1);
}

__attribute__((flatten)) void adamas_scan_l1_avx512_vpshufb(const uint64_t *q,
                                                            const uint64_t *codes, size_t words,
                                                            size_t n, uint16_t *dist,
                                                            uint32_t *hist)
{
    scan(q, codes, words, n, dist, hist, 0, 0);
}

__attribute__((flatten)) void adamas_scan_xorw_avx512_vpshufb(const uint64_t *q,
                                                              const uint64_t *codes, size_t words,
                                                              size_t n, uint16_t *dist,
                                                              uint32_t *hist)
{
    scan(q, codes, words, n, dist, hist, 1, 0);
}

int adamas_avx512_has_vpopcntdq(void)
{
    static atomic_int known; /* 0: not asked yet, 1: no, 2: yes */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (!k) {
        k = __builtin_cpu_supports("avx512vpopcntdq") ? 2 : 1;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 2;
}

static void scan_l1_avx512(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                           uint16_t *dist, uint32_t *hist)
{
    if (adamas_avx512_has_vpopcntdq())
        adamas_scan_l1_avx512_vpopcnt(q, codes, words, n, dist, hist);
    else
        adamas_scan_l1_avx512_vpshufb(q, codes, words, n, dist, hist);
}

static void scan_xorw_avx512(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                             uint16_t *dist, uint32_t *hist)
{
    if (adamas_avx512_has_vpopcntdq())
        adamas_scan_xorw_avx512_vpopcnt(q, codes, words, n, dist, hist);
    else
        adamas_scan_xorw_avx512_vpshufb(q, codes, words, n, dist, hist);
}

/* ======================================================= grouped distance scan */

/*
 * The query heads of a GQA group scan the same keys, so the grouped scan takes them
 * PASS_HEADS at a time: each register of key codes is loaded and prepared once per
 * pass, and the lane popcounts of head h go to bits [16h, 16h + 16) of their 64-bit
 * lane (a distance is at most 3*1024 < 2^16, so no field carries into the next), and
 * a single reduction tree adds the lanes of every head of the pass.  With VBMI2 one
 * funnel shift per head (vpshrdvq) moves the lane counts in: each head's counts enter
 * at the top of the lane as the earlier heads' move down 16 bits, and the weight 2 of
 * the high plane is applied once, in the first level of the tree.  Without it, a
 * variable shift and an add per head, the weight riding in the shift.
 *
 * L1 without a shuffle per head: the high plane of l1_planes is x.hi & ~(x.lo & m),
 * m = key ^ swap_planes(key); where both planes differ (x.hi = x.lo = 1) the key's two
 * bits differ exactly where the query's do, so m may be e = q ^ swap_planes(q), kept
 * in the high-plane lanes, once per head and pass.  x.lo, seen from the high lane, is
 * s ^ swap_planes(q) with s = swap_planes(key): two ternary-logic ops per head, one
 * shuffle per key register (from L1, 0.50 against 0.53 ns per key and head with m).
 *
 * Only the distances <= the head's limit are counted and listed (a selection's
 * threshold lies far below most keys).  With VBMI2 the batch's distances are compared
 * with the limits in one instruction and the few that pass are compressed, tagged
 * with their head, into a small buffer that is listed and counted every few batches;
 * without it, each distance is compared after the next batch is computed.
 */
#define PASS_HEADS 4

/* Keys per sub-block: their codes stay in L1 for every pass over them. */
#define GROUP_BLOCK_KEYS 256

/* One head of a pass: the query aligned with the registers of one key (as in
 * scan_words), its planes swapped, e (above), and its lane shifts (without VBMI2). */
typedef struct {
    __m512i q[4], qs[4], e[4], shift;
} pass_query;

static inline __m512i group_l1_planes(__m512i key, __m512i s, __m512i e, __m512i q, __m512i qs)
{
    __m512i t = _mm512_ternarylogic_epi64(s, qs, e, 0x28);  /* (s ^ qs) & e */
    return _mm512_ternarylogic_epi64(key, q, t, 0x14); /* (key ^ q) & ~t */
}

/* The distances of m <= 8 keys to each of the heads of a pass, lane j holding those
 * of key j, head h in bits [16h, 16h + 16); words, tail, xorw and vpopcnt as in
 * scan_batch; vbmi2: the funnel shift (see above). */
static inline __m512i scan_group_batch(const pass_query *pq, size_t heads, const uint64_t *codes,
                                       size_t words, size_t m, int tail, int xorw, int vpopcnt,
                                       int vbmi2)
{
    const size_t regs_per_key = words >= 8 ? words / 8 : 1;
    const size_t n_regs = words >= 8 ? 8 : words;
    __m512i c[8];
    for (size_t r = 0; r < n_regs; r++) {
        __m512i sum = _mm512_setzero_si512();
        for (size_t k = 0; k < regs_per_key; k++) {
            size_t at = r * regs_per_key + k;
            __m512i key = load_key_register(codes, words, m, at, tail);
            __m512i s = swap_planes(key);
            __m512i packed = _mm512_setzero_si512();
            for (size_t h = 0; h < heads; h++) {
                __m512i planes = xorw ? xorw_planes(key, pq[h].q[k])
                                      : group_l1_planes(key, s, pq[h].e[k], pq[h].q[k], pq[h].qs[k]);
                __m512i counts = vpopcnt ? lane_popcounts_vpopcnt(planes) : lane_popcounts_vpshufb(planes);
                packed = vbmi2 ? funnel_in_16(packed, counts)
                               : _mm512_add_epi64(packed, _mm512_sllv_epi64(counts, pq[h].shift));
            }
            if (vbmi2 && heads < PASS_HEADS) /* the first head to bits [0, 16) */
                packed = _mm512_srli_epi64(packed, (unsigned)(16 * (PASS_HEADS - heads)));
            sum = k ? _mm512_add_epi64(sum, packed) : packed;
        }
        c[r] = sum;
    }
    for (size_t n = n_regs, weighted = (size_t)vbmi2; n > 1; n /= 2, weighted = 0)
        for (size_t r = 0; r < n / 2; r++)
            c[r] = pair_sums(c[2 * r], c[2 * r + 1], (int)weighted);
    return c[0];
}

/* Store the distances of a batch of m keys (scan_group_batch's lanes) to dist +
 * h*dist_stride. */
static inline void store_group_batch(__m512i c, size_t heads, size_t m, int tail, uint16_t *dist,
                                     size_t dist_stride)
{
    /* lane j holds the 4 distances of key j: transpose to 8 distances per head */
    static const uint16_t by_head[32] = {0, 4, 8,  12, 16, 20, 24, 28, 1, 5, 9,  13, 17, 21, 25, 29,
                                         2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31};
    uint16_t out[32] __attribute__((aligned(64)));
    _mm512_store_si512(out, _mm512_permutexvar_epi16(_mm512_loadu_si512(by_head), c));
    for (size_t h = 0; h < heads; h++) {
        __m128i d16 = _mm_load_si128((const __m128i *)(out + 8 * h));
        if (tail)
            _mm_mask_storeu_epi16(dist + h * dist_stride, (__mmask8)((1u << m) - 1), d16);
        else
            _mm_storeu_si128((__m128i *)(dist + h * dist_stride), d16);
    }
}

/* Counted distances buffered before they are added to the histograms (VBMI2). */
#define COUNT_FLUSH 64

/* The distances of a batch a scan counts (VBMI2): those <= their head's limit
 * (limits: the limit of head h in bits [16h, 16h + 16) of every lane) among the valid
 * fields of c, tagged with their head in bits 12 and 13 (a distance is below 2^12),
 * appended to buf[*n]; for a sparse scan (pos not NULL) their positions too (key j of
 * the batch at position `first` + j), to pos[*n].  No branch on whether any is
 * counted: one every few batches would mispredict. */
__attribute__((target("avx512vbmi2"))) static inline void
buffer_counted(__m512i c, __m512i limits, __mmask32 valid, uint32_t first, uint16_t *buf,
               uint16_t *pos, size_t *n)
{
    const __m512i tags = _mm512_set1_epi64(0x3000200010000000ll);
    const __m512i key_of_field = _mm512_set_epi16(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4,
                                                  3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __mmask32 take = _mm512_mask_cmple_epu16_mask(valid, c, limits);
    _mm512_storeu_si512(buf + *n, _mm512_maskz_compress_epi16(take, _mm512_or_si512(c, tags)));
    if (pos)
        _mm512_storeu_si512(pos + *n, _mm512_maskz_compress_epi16(
                                          take, _mm512_add_epi16(_mm512_set1_epi16((short)first),
                                                                 key_of_field)));
    *n += (size_t)__builtin_popcount(take);
}

/* Count the n buffered distances of `heads` heads (buffer_counted) and, for a sparse
 * scan (hits not NULL), list them as kernels.h's scan_group says, asking for the lines
 * the lists continue into.  restrict: the stores to the lists and histograms do not
 * make the counts reload. */
static inline void flush_counted(const uint16_t *buf, const uint16_t *pos, size_t n, size_t heads,
                                 uint32_t *restrict hist, size_t hist_stride,
                                 uint32_t *restrict hits, size_t hits_stride,
                                 uint32_t *restrict n_hits)
{
    if (!hits) {
        for (size_t i = 0; i < n; i++)
            hist[(buf[i] >> 12) * hist_stride + (buf[i] & 0xFFFu)]++;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const uint32_t h = buf[i] >> 12, v = buf[i] & 0xFFFu;
        hist[h * hist_stride + v]++;
        hits[h * hits_stride + n_hits[h]++] = adamas_hit(pos[i], v);
    }
    for (size_t h = 0; h < heads; h++)
        adamas_prefetch_write(hits + h * hits_stride + n_hits[h], 256);
}

/* One pass of `heads` heads (a constant after inlining) over len keys, the first at
 * position `first`, dense (dist not NULL) or sparse (dist NULL; sparse, a constant
 * after inlining, says which); prefetch: ask for the codes ahead, as scan_words does
 * (the first pass over a block only). */
static inline void scan_pass(const pass_query *pq, size_t heads, const uint64_t *block,
                             size_t words, size_t len, int xorw, int vpopcnt, int vbmi2,
                             int prefetch, const uint16_t *limit, uint32_t *hist,
                             size_t hist_stride, int sparse, uint16_t *dist, size_t dist_stride,
                             uint32_t first, uint32_t *hits, size_t hits_stride, uint32_t *n_hits)
{
    if (sparse)
        dist = NULL;
    else
        hits = n_hits = NULL;
    const size_t batch_bytes = 8 * words * sizeof(uint64_t);
    const __mmask32 head_fields = (__mmask32)(0x11111111u * ((1u << heads) - 1));
    uint64_t packed_limits = 0;
    for (size_t h = 0; h < heads; h++)
        packed_limits |= (uint64_t)limit[h] << (16 * h);
    const __m512i limits = _mm512_set1_epi64((long long)packed_limits);
    uint16_t buf[COUNT_FLUSH + 32], pos[COUNT_FLUSH + 32];
    uint16_t *const positions = dist ? NULL : pos;
    size_t buffered = 0;
    /* Without VBMI2 a batch's distances are counted after the next batch is computed:
     * the scalar loads and stores then run beside vector work instead of after it.
     * A sparse scan keeps them in a buffer of two batches. */
    uint16_t batches[2][PASS_HEADS * 8];
    const size_t stride = dist ? dist_stride : 8;
    /* where the distances of the batch at key j go (dense, or without VBMI2) */
#define BATCH(j) (dist ? dist + (j) : batches[((j) / 8) & 1])
    size_t j = 0;
    for (; j + 8 <= len; j += 8) {
        if (prefetch)
            adamas_prefetch_codes(block + j * words, batch_bytes);
        __m512i c = scan_group_batch(pq, heads, block + j * words, words, 8, 0, xorw, vpopcnt, vbmi2);
        if (dist || !vbmi2)
            store_group_batch(c, heads, 8, 0, BATCH(j), stride);
        if (vbmi2) {
            buffer_counted(c, limits, head_fields, first + (uint32_t)j, buf, positions, &buffered);
            if (buffered >= COUNT_FLUSH) {
                flush_counted(buf, pos, buffered, heads, hist, hist_stride, hits, hits_stride,
                              n_hits);
                buffered = 0;
            }
        } else if (j > 0) {
            adamas_count_batch(BATCH(j - 8), stride, heads, 8, first + (uint32_t)j - 8, limit,
                               hist, hist_stride, hits, hits_stride, n_hits);
        }
    }
    if (!vbmi2 && j > 0)
        adamas_count_batch(BATCH(j - 8), stride, heads, 8, first + (uint32_t)j - 8, limit, hist,
                           hist_stride, hits, hits_stride, n_hits);
    if (j < len) {
        __m512i c = scan_group_batch(pq, heads, block + j * words, words, len - j, 1, xorw,
                                     vpopcnt, vbmi2);
        if (dist || !vbmi2)
            store_group_batch(c, heads, len - j, 1, BATCH(j), stride);
        if (vbmi2)
            buffer_counted(c, limits, head_fields & (__mmask32)((1u << (4 * (len - j))) - 1),
                           first + (uint32_t)j, buf, positions, &buffered);
        else
            adamas_count_batch(BATCH(j), stride, heads, len - j, first + (uint32_t)j, limit, hist,
                               hist_stride, hits, hits_stride, n_hits);
    }
#undef BATCH
    if (vbmi2)
        flush_counted(buf, pos, buffered, heads, hist, hist_stride, hits, hits_stride, n_hits);
}

static inline void scan_group_words(const uint64_t *q, size_t q_stride, size_t heads,
                                    const uint64_t *codes, size_t words, size_t n,
                                    const uint16_t *limit, uint32_t *hist, size_t hist_stride,
                                    uint16_t *dist, size_t dist_stride, uint32_t first,
                                    uint32_t *hits, size_t hits_stride, uint32_t *n_hits,
                                    int xorw, int vpopcnt, int vbmi2)
{
    for (size_t at = 0; at < n; at += GROUP_BLOCK_KEYS) {
        const size_t len = n - at < GROUP_BLOCK_KEYS ? n - at : GROUP_BLOCK_KEYS;
        const uint64_t *block = codes + at * words;
        for (size_t h0 = 0; h0 < heads; h0 += PASS_HEADS) {
            const size_t pass = heads - h0 < PASS_HEADS ? heads - h0 : PASS_HEADS;
            pass_query pq[PASS_HEADS];
            for (size_t h = 0; h < pass; h++) {
                const uint64_t *qh = q + (h0 + h) * q_stride;
                if (words == 2)
                    pq[h].q[0] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qh));
                else if (words == 4)
                    pq[h].q[0] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh));
                else
                    for (size_t k = 0; k < words / 8; k++)
                        pq[h].q[k] = _mm512_loadu_si512(qh + 8 * k);
                for (size_t k = 0; k < (words >= 8 ? words / 8 : 1); k++) {
                    pq[h].qs[k] = swap_planes(pq[h].q[k]);
                    pq[h].e[k] = _mm512_maskz_xor_epi64(0xAA, pq[h].q[k], pq[h].qs[k]);
                }
                pq[h].shift = _mm512_add_epi64(_mm512_set1_epi64((long long)(16 * h)),
                                               _mm512_setr_epi64(0, 1, 0, 1, 0, 1, 0, 1));
            }
            const uint16_t *lim = limit + h0;
            uint32_t *hist_pass = hist + h0 * hist_stride;
            uint16_t *dist_pass = dist ? dist + h0 * dist_stride + at : NULL;
            uint32_t *hits_pass = dist ? NULL : hits + h0 * hits_stride;
            uint32_t *n_pass = dist ? NULL : n_hits + h0;
            const uint32_t block_first = first + (uint32_t)at;
            /* the head count a constant: the queries stay in registers */
#define SCAN_PASS(heads_, vbmi2_, sparse_)                                                    \
    scan_pass(pq, heads_, block, words, len, xorw, vpopcnt, vbmi2_, h0 == 0, lim, hist_pass,  \
              hist_stride, sparse_, dist_pass, dist_stride, block_first, hits_pass,          \
              hits_stride, n_pass)
            if (dist) /* one head: too little vector work per batch to hide the compress */
                switch (pass) {
                case 1: SCAN_PASS(1, 0, 0); break;
                case 2: SCAN_PASS(2, vbmi2, 0); break;
                case 3: SCAN_PASS(3, vbmi2, 0); break;
                default: SCAN_PASS(4, vbmi2, 0);
                }
            else
                switch (pass) {
                case 1: SCAN_PASS(1, vbmi2, 1); break;
                case 2: SCAN_PASS(2, vbmi2, 1); break;
                case 3: SCAN_PASS(3, vbmi2, 1); break;
                default: SCAN_PASS(4, vbmi2, 1);
                }
#undef SCAN_PASS
        }
    }
}

static inline void scan_group(const uint64_t *q, size_t q_stride, size_t heads,
                              const uint64_t *codes, size_t words, size_t n, const uint16_t *limit,
                              uint32_t *hist, size_t hist_stride, uint16_t *dist,
                              size_t dist_stride, uint32_t first, uint32_t *hits,
                              size_t hits_stride, uint32_t *n_hits, int xorw, int vpopcnt,
                              int vbmi2)
{
#define SCAN_GROUP_WORDS(w)                                                                  \
    scan_group_words(q, q_stride, heads, codes, w, n, limit, hist, hist_stride, dist,        \
                     dist_stride, first, hits, hits_stride, n_hits, xorw, vpopcnt, vbmi2)
    switch (words) {
    case 2: SCAN_GROUP_WORDS(2); break;
    case 4: SCAN_GROUP_WORDS(4); break;
    case 8: SCAN_GROUP_WORDS(8); break;
    case 16: SCAN_GROUP_WORDS(16); break;
    case 32: SCAN_GROUP_WORDS(32); break;
    default:
        (xorw ? adamas_scan_group_xorw_scalar : adamas_scan_group_l1_scalar)(
            q, q_stride, heads, codes, words, n, limit, hist, hist_stride, dist, dist_stride,
            first, hits, hits_stride, n_hits);
    }
#undef SCAN_GROUP_WORDS
}

#define DEFINE_SCAN_GROUP(name, attrs, xorw, vpopcnt)                                         \
    attrs void name(const uint64_t *q, size_t q_stride, size_t heads, const uint64_t *codes,  \
                    size_t words, size_t n, const uint16_t *limit, uint32_t *hist,           \
                    size_t hist_stride, uint16_t *dist, size_t dist_stride, uint32_t first,   \
                    uint32_t *hits, size_t hits_stride, uint32_t *n_hits)                    \
    {                                                                                        \
        scan_group(q, q_stride, heads, codes, words, n, limit, hist, hist_stride, dist,       \
                   dist_stride, first, hits, hits_stride, n_hits, xorw, vpopcnt, vpopcnt);    \
    }

/* The VPOPCNTQ variants take VBMI2 too (every CPU with the first but Knights Mill has
 * the second); the vpshufb variants need neither. */
DEFINE_SCAN_GROUP(adamas_scan_group_l1_avx512_vpopcnt,
                  __attribute__((target("avx512vpopcntdq,avx512vbmi2"), flatten)), 0, 1)
DEFINE_SCAN_GROUP(adamas_scan_group_xorw_avx512_vpopcnt,
                  __attribute__((target("avx512vpopcntdq,avx512vbmi2"), flatten)), 1, 1)
DEFINE_SCAN_GROUP(adamas_scan_group_l1_avx512_vpshufb, __attribute__((flatten)), 0, 0)
DEFINE_SCAN_GROUP(adamas_scan_group_xorw_avx512_vpshufb, __attribute__((flatten)), 1, 0)

int adamas_avx512_has_vpopcntdq_vbmi2(void)
{
    static atomic_int known; /* 0: not asked yet, 1: no, 2: yes */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (!k) {
        k = adamas_avx512_has_vpopcntdq() && __builtin_cpu_supports("avx512vbmi2") ? 2 : 1;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 2;
}

#define DEFINE_SCAN_GROUP_CHOICE(name, vpopcnt_variant, vpshufb_variant)                      \
    static void name(const uint64_t *q, size_t q_stride, size_t heads, const uint64_t *codes, \
                     size_t words, size_t n, const uint16_t *limit, uint32_t *hist,          \
                     size_t hist_stride, uint16_t *dist, size_t dist_stride, uint32_t first,  \
                     uint32_t *hits, size_t hits_stride, uint32_t *n_hits)                   \
    {                                                                                        \
        (adamas_avx512_has_vpopcntdq_vbmi2() ? vpopcnt_variant : vpshufb_variant)(            \
            q, q_stride, heads, codes, words, n, limit, hist, hist_stride, dist, dist_stride, \
            first, hits, hits_stride, n_hits);                                               \
    }

DEFINE_SCAN_GROUP_CHOICE(scan_group_l1_avx512, adamas_scan_group_l1_avx512_vpopcnt,
                         adamas_scan_group_l1_avx512_vpshufb)
DEFINE_SCAN_GROUP_CHOICE(scan_group_xorw_avx512, adamas_scan_group_xorw_avx512_vpopcnt,
                         adamas_scan_group_xorw_avx512_vpshufb)

/* ============================================================ selection emit */

/* The positions j in [from, to) with dist[j] < t (le = 0) or <= t (le = 1), written
 * as base + j to idx + m until k are written; returns the new m.  sparse: a selection
 * of a few in a thousand, where most steps of 32 distances take none and cost a load,
 * a compare and a branch that is rarely taken.  Denser ones take some in most steps,
 * at random, where that branch would mispredict: every step of 16 compresses its
 * positions. */
static inline uint32_t emit_range(const uint16_t *dist, uint32_t from, uint32_t to, uint32_t t,
                                  int le, int sparse, uint32_t base, uint32_t k, uint32_t *idx,
                                  uint32_t m)
{
    const __m512i tv = _mm512_set1_epi16((short)t);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    uint32_t j = from;
    for (; sparse && j + 32 <= to && m < k; j += 32) {
        __m512i d = _mm512_loadu_si512(dist + j);
        __mmask32 take = le ? _mm512_cmple_epu16_mask(d, tv) : _mm512_cmplt_epu16_mask(d, tv);
        if (!take)
            continue;
        __m512i pos = _mm512_add_epi32(_mm512_set1_epi32((int)(base + j)), lanes);
        _mm512_mask_compressstoreu_epi32(idx + m, (__mmask16)take, pos);
        m += (uint32_t)__builtin_popcount(take & 0xFFFF);
        pos = _mm512_add_epi32(pos, _mm512_set1_epi32(16));
        _mm512_mask_compressstoreu_epi32(idx + m, (__mmask16)(take >> 16), pos);
        m += (uint32_t)__builtin_popcount(take >> 16);
    }
    for (; j + 16 <= to && m < k; j += 16) {
        __m256i d = _mm256_loadu_si256((const __m256i *)(dist + j));
        __mmask16 take = le ? _mm256_cmple_epu16_mask(d, _mm512_castsi512_si256(tv))
                            : _mm256_cmplt_epu16_mask(d, _mm512_castsi512_si256(tv));
        _mm512_mask_compressstoreu_epi32(idx + m, take,
                                         _mm512_add_epi32(_mm512_set1_epi32((int)(base + j)), lanes));
        m += (uint32_t)__builtin_popcount(take);
    }
    for (; j < to && m < k; j++)
        if (le ? dist[j] <= t : dist[j] < t)
            idx[m++] = base + j;
    return m;
}

/* The scalar emit.  Exactly k positions qualify in all, so the compressing stores
 * never write past idx[k-1]. */
static void emit_avx512(const uint16_t *dist, uint32_t n, uint32_t t, uint32_t cutoff,
                        uint32_t base, uint32_t k, uint32_t *idx)
{
    const int sparse = (uint64_t)k * 128 < n; /* steps of 32 that take any: below 1 in 4 */
    uint32_t m = emit_range(dist, 0, cutoff, t, 0, sparse, base, k, idx, 0);
    emit_range(dist, cutoff, n, t, 1, sparse, base, k, idx, m);
}

/* ====================================================== attention arithmetic */

/* Rows of each storage dtype widened to f32 (exact: f16 and bf16 are subsets of f32). */
static inline __m512 load_f32(const void *row, size_t i)
{
    return _mm512_loadu_ps((const float *)row + i);
}

static inline __m512 load_f16(const void *row, size_t i)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
}

static inline __m512 load_bf16(const void *row, size_t i)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* acc[l] += acc[l+8], += acc[l+4], += acc[l+2], += acc[l+1]: the scalar fold. */
static inline float fold_lanes(__m512 acc)
{
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

/* q . row in the fixed order, d a multiple of 16 as in the scalar loop; fused: each
 * step one fused multiply-add (dot_group's contract), else product then sum (dot's). */
ALWAYS_INLINE float dot_row(const float *q, const void *row, size_t d, int fused,
                            __m512 (*load)(const void *, size_t))
{
    __m512 acc = _mm512_setzero_ps();
    for (size_t i = 0; i < d; i += LANES)
        acc = fused ? _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load(row, i), acc)
                    : _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(q + i), load(row, i)));
    return fold_lanes(acc);
}

static float dot_f32_avx512(const float *q, const void *row, size_t d)
{
    return dot_row(q, row, d, 0, load_f32);
}

static float dot_f16_avx512(const float *q, const void *row, size_t d)
{
    return dot_row(q, row, d, 0, load_f16);
}

static float dot_bf16_avx512(const float *q, const void *row, size_t d)
{
    return dot_row(q, row, d, 0, load_bf16);
}

/* y += a*row, one fused multiply-add per element as in the scalar loop. */
ALWAYS_INLINE void axpy_row(float *y, float a, const void *row, size_t d, size_t elem_size,
                            __m512 (*load)(const void *, size_t),
                            void (*scalar)(float *, float, const void *, size_t))
{
    const __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + LANES <= d; i += LANES)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, load(row, i), _mm512_loadu_ps(y + i)));
    if (i < d)
        scalar(y + i, a, (const char *)row + i * elem_size, d - i);
}

static void axpy_f32_avx512(float *y, float a, const void *row, size_t d)
{
    axpy_row(y, a, row, d, 4, load_f32, adamas_axpy_f32_scalar);
}

static void axpy_f16_avx512(float *y, float a, const void *row, size_t d)
{
    axpy_row(y, a, row, d, 2, load_f16, adamas_axpy_f16_scalar);
}

static void axpy_bf16_avx512(float *y, float a, const void *row, size_t d)
{
    axpy_row(y, a, row, d, 2, load_bf16, adamas_axpy_bf16_scalar);
}

/* ------------------------------------------------------------- GQA groups */

/* The scalar fold of four heads' lane sums at once: each step adds the same pairs of
 * lanes as fold_lanes, the four heads sharing the registers.  Returns the four sums. */
static inline __m128 fold_lanes4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    /* l += l+8: 128-bit lanes [a0+a2, a1+a3, b0+b2, b1+b3], likewise c, d */
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    /* l += l+4: one 128-bit lane per head */
    __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
    x = _mm512_add_ps(x, _mm512_permute_ps(x, 0x4E)); /* l += l+2 */
    x = _mm512_add_ps(x, _mm512_permute_ps(x, 0xB1)); /* l += l+1 */
    return _mm512_castps512_ps128(
        _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), x));
}

/* The scalar fold of 16 sums acc[4*m + h] (rows m, heads h < 4) at once, as
 * fold_lanes4 does for 4: each step adds the same pairs of lanes as fold_lanes.
 * Returns head h's sums of rows 0..3 in 128-bit lane h. */
static inline __m512 fold_lanes16(const __m512 acc[16])
{
    __m512 l8[8], l4[4], l2[2];
    for (size_t p = 0; p < 8; p++) /* l += l+8: [a0+a2, a1+a3, b0+b2, b1+b3] */
        l8[p] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * p], acc[2 * p + 1], 0x44),
                              _mm512_shuffle_f32x4(acc[2 * p], acc[2 * p + 1], 0xEE));
    for (size_t p = 0; p < 4; p++) /* l += l+4: 128-bit lane k holds acc[4p + k] */
        l4[p] = _mm512_add_ps(_mm512_shuffle_f32x4(l8[2 * p], l8[2 * p + 1], 0x88),
                              _mm512_shuffle_f32x4(l8[2 * p], l8[2 * p + 1], 0xDD));
    for (size_t p = 0; p < 2; p++) /* l += l+2: lane k holds two sums of two accs */
        l2[p] = _mm512_add_ps(_mm512_shuffle_ps(l4[2 * p], l4[2 * p + 1], 0x44),
                              _mm512_shuffle_ps(l4[2 * p], l4[2 * p + 1], 0xEE));
    /* l += l+1: lane k = [acc[k], acc[4 + k], acc[8 + k], acc[12 + k]] */
    return _mm512_add_ps(_mm512_shuffle_ps(l2[0], l2[1], 0x88), _mm512_shuffle_ps(l2[0], l2[1], 0xDD));
}

/* dot of each of four heads with each of four rows: 16 elements of each row converted
 * once and used by the four heads from a register, each query register by the four
 * rows; 16 lane sums per (row, head) as dot_row keeps them (fused), folded together. */
ALWAYS_INLINE void dot_4x4(const float *q, const void *const *rows, size_t d, float *out,
                           size_t out_stride, __m512 (*load)(const void *, size_t))
{
    __m512 acc[16];
    for (size_t k = 0; k < 16; k++)
        acc[k] = _mm512_setzero_ps();
    for (size_t i = 0; i < d; i += LANES) {
        __m512 x[4];
        for (size_t m = 0; m < 4; m++)
            x[m] = load(rows[m], i);
        for (size_t h = 0; h < 4; h++) {
            __m512 vq = _mm512_loadu_ps(q + h * d + i);
            for (size_t m = 0; m < 4; m++)
                acc[4 * m + h] = _mm512_fmadd_ps(vq, x[m], acc[4 * m + h]);
        }
    }
    __m512 sums = fold_lanes16(acc);
    _mm_storeu_ps(out, _mm512_castps512_ps128(sums));
    _mm_storeu_ps(out + out_stride, _mm512_extractf32x4_ps(sums, 1));
    _mm_storeu_ps(out + 2 * out_stride, _mm512_extractf32x4_ps(sums, 2));
    _mm_storeu_ps(out + 3 * out_stride, _mm512_extractf32x4_ps(sums, 3));
}

/* dot of four heads with one row (the rows past a multiple of four). */
ALWAYS_INLINE void dot_4x1(const float *q, const void *row, size_t d, float *out,
                           size_t out_stride, __m512 (*load)(const void *, size_t))
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < d; i += LANES) {
        __m512 x = load(row, i);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), x, a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + i), x, a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 2 * d + i), x, a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 3 * d + i), x, a3);
    }
    float sums[4];
    _mm_storeu_ps(sums, fold_lanes4(a0, a1, a2, a3));
    for (size_t h = 0; h < 4; h++)
        out[h * out_stride] = sums[h];
}

/* The heads past a multiple of four take the single-head loop (rows from L1). */
ALWAYS_INLINE void dot_group_rows(const float *q, size_t heads, const void *const *rows, size_t n,
                                  size_t d, float *out, size_t out_stride,
                                  __m512 (*load)(const void *, size_t))
{
    size_t j = 0;
    for (; j + 4 <= heads; j += 4) {
        size_t r = 0;
        for (; r + 4 <= n; r += 4)
            dot_4x4(q + j * d, rows + r, d, out + j * out_stride + r, out_stride, load);
        for (; r < n; r++)
            dot_4x1(q + j * d, rows[r], d, out + j * out_stride + r, out_stride, load);
    }
    for (; j < heads; j++)
        for (size_t r = 0; r < n; r++)
            out[j * out_stride + r] = dot_row(q + j * d, rows[r], d, 1, load);
}

static void dot_group_f32_avx512(const float *q, size_t heads, const void *const *rows, size_t n,
                                 size_t d, float *out, size_t out_stride)
{
    dot_group_rows(q, heads, rows, n, d, out, out_stride, load_f32);
}

static void dot_group_f16_avx512(const float *q, size_t heads, const void *const *rows, size_t n,
                                 size_t d, float *out, size_t out_stride)
{
    dot_group_rows(q, heads, rows, n, d, out, out_stride, load_f16);
}

static void dot_group_bf16_avx512(const float *q, size_t heads, const void *const *rows,
                                  size_t n, size_t d, float *out, size_t out_stride)
{
    dot_group_rows(q, heads, rows, n, d, out, out_stride, load_bf16);
}

/* y_j += a_j[r]*rows[r] for four heads, the rows in order, fused multiply-adds as
 * in axpy: per 16 elements the four sums stay in registers over all n rows (one load
 * and one store per head instead of one per row), and each 16 elements of a row are
 * converted once for the four heads.  A tail of d % 16 elements, and the heads past a
 * multiple of four, take the single-head axpy. */
ALWAYS_INLINE void axpy_group_rows(float *y, size_t y_stride, const float *a, size_t a_stride,
                                   size_t heads, const void *const *rows, size_t n, size_t d,
                                   size_t elem_size, __m512 (*load)(const void *, size_t),
                                   void (*axpy)(float *, float, const void *, size_t))
{
    const size_t body = d / LANES * LANES;
    size_t j = 0;
    for (; j + 4 <= heads; j += 4) {
        float *y0 = y + j * y_stride;
        const float *a0 = a + j * a_stride;
        for (size_t i = 0; i < body; i += LANES) {
            __m512 s0 = _mm512_loadu_ps(y0 + i), s1 = _mm512_loadu_ps(y0 + y_stride + i);
            __m512 s2 = _mm512_loadu_ps(y0 + 2 * y_stride + i);
            __m512 s3 = _mm512_loadu_ps(y0 + 3 * y_stride + i);
            for (size_t r = 0; r < n; r++) {
                __m512 x = load(rows[r], i);
                s0 = _mm512_fmadd_ps(_mm512_set1_ps(a0[r]), x, s0);
                s1 = _mm512_fmadd_ps(_mm512_set1_ps(a0[a_stride + r]), x, s1);
                s2 = _mm512_fmadd_ps(_mm512_set1_ps(a0[2 * a_stride + r]), x, s2);
                s3 = _mm512_fmadd_ps(_mm512_set1_ps(a0[3 * a_stride + r]), x, s3);
            }
            _mm512_storeu_ps(y0 + i, s0);
            _mm512_storeu_ps(y0 + y_stride + i, s1);
            _mm512_storeu_ps(y0 + 2 * y_stride + i, s2);
            _mm512_storeu_ps(y0 + 3 * y_stride + i, s3);
        }
        if (body < d)
            for (size_t r = 0; r < n; r++)
                for (size_t h = 0; h < 4; h++)
                    axpy(y0 + h * y_stride + body, a0[h * a_stride + r],
                         (const char *)rows[r] + body * elem_size, d - body);
    }
    for (; j < heads; j++)
        for (size_t r = 0; r < n; r++)
            axpy(y + j * y_stride, a[j * a_stride + r], rows[r], d);
}

static void axpy_group_f32_avx512(float *y, size_t y_stride, const float *a, size_t a_stride,
                                  size_t heads, const void *const *rows, size_t n, size_t d)
{
    axpy_group_rows(y, y_stride, a, a_stride, heads, rows, n, d, 4, load_f32, axpy_f32_avx512);
}

static void axpy_group_f16_avx512(float *y, size_t y_stride, const float *a, size_t a_stride,
                                  size_t heads, const void *const *rows, size_t n, size_t d)
{
    axpy_group_rows(y, y_stride, a, a_stride, heads, rows, n, d, 2, load_f16, axpy_f16_avx512);
}

static void axpy_group_bf16_avx512(float *y, size_t y_stride, const float *a, size_t a_stride,
                                   size_t heads, const void *const *rows, size_t n, size_t d)
{
    axpy_group_rows(y, y_stride, a, a_stride, heads, rows, n, d, 2, load_bf16, axpy_bf16_avx512);
}

/* sum_i max(q_i*lo_i, q_i*hi_i) in the fixed order; max_ps(a, b) is a > b ? a : b,
 * the scalar expression, signed zeros included. */
static float page_score_avx512(const float *q, const float *lo, const float *hi, size_t d)
{
    __m512 acc = _mm512_setzero_ps();
    for (size_t i = 0; i < d; i += LANES) {
        __m512 vq = _mm512_loadu_ps(q + i);
        __m512 a = _mm512_mul_ps(vq, _mm512_loadu_ps(lo + i));
        __m512 b = _mm512_mul_ps(vq, _mm512_loadu_ps(hi + i));
        acc = _mm512_add_ps(acc, _mm512_max_ps(a, b));
    }
    return fold_lanes(acc);
}

/* ======================================================================== exp */

/* The fallback exp of simd.h; VSCALEFPS applies 2^n with a single rounding, so
 * subnormal results need no split exponent here. */
static inline __m512 exp_poly(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(ADAMAS_EXP_MIN_ARG), x); /* max/min(c, x): NaN stays */
    x = _mm512_min_ps(_mm512_set1_ps(ADAMAS_EXP_MAX_ARG), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(ADAMAS_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(ADAMAS_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(ADAMAS_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(ADAMAS_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ADAMAS_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ADAMAS_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ADAMAS_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ADAMAS_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ADAMAS_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* x[i] *= scale, 16 at a time, the tail masked; the largest in 16 running maxima
 * (vmaxps takes its second operand unless the first is greater, as the scalar compare
 * does). */
static float scale_max_avx512(float *x, size_t n, float scale)
{
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512 lane_max = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), vscale);
        _mm512_storeu_ps(x + i, v);
        lane_max = _mm512_max_ps(v, lane_max);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vscale);
        _mm512_mask_storeu_ps(x + i, m, v);
        lane_max = _mm512_mask_max_ps(lane_max, m, v, lane_max);
    }
    return _mm512_reduce_max_ps(lane_max);
}

/* s[i] = exp(s[i] - max), 16 at a time, the tail masked; the sum in 16 lanes (a
 * different order from the scalar loop: within a few ulp, all terms positive). */
static inline float exp_sum_with(float *s, size_t n, float max, __m512 (*vexp)(__m512))
{
    const __m512 vmax = _mm512_set1_ps(max);
    __m512 acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        __m512 e = vexp(_mm512_sub_ps(_mm512_loadu_ps(s + i), vmax));
        _mm512_storeu_ps(s + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = vexp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmax));
        _mm512_mask_storeu_ps(s + i, m, e);
        acc = _mm512_mask_add_ps(acc, m, acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

float adamas_exp_sum_avx512_poly(float *s, size_t n, float max)
{
    return exp_sum_with(s, n, max, exp_poly);
}

#ifdef ADAMAS_HAVE_SLEEF
static inline __m512 exp_sleef(__m512 x)
{
    return Sleef_expf16_u10avx512f(x);
}

static float exp_sum_avx512(float *s, size_t n, float max)
{
    return exp_sum_with(s, n, max, exp_sleef);
}
#else
#define exp_sum_avx512 adamas_exp_sum_avx512_poly
#endif

/* ============================================================ Q8_0 weights */

/* 16 int8 weights of a Q8_0 block (half 0: weights 0-15, half 1: 16-31) as f32. */
static inline __m512 q8_0_lanes(const unsigned char *blk, int half)
{
    __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2 + 16 * half));
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
}

static inline __m512 q8_0_scale(const unsigned char *blk)
{
    uint16_t h;
    memcpy(&h, blk, sizeof h);
    return _mm512_cvtph_ps(_mm256_set1_epi16((short)h)); /* F16C is not among our flags */
}

/* Lane l takes weights l and l+16 of each block: q8_0.c's order. */
static float dot_q8_0_avx512(const float *x, const void *blocks, size_t n_blocks)
{
    const unsigned char *blk = blocks;
    __m512 acc = _mm512_setzero_ps();
    for (size_t b = 0; b < n_blocks; b++, blk += ADAMAS_Q8_0_BYTES, x += 2 * LANES) {
        __m512 lo = _mm512_mul_ps(q8_0_lanes(blk, 0), _mm512_loadu_ps(x));
        __m512 hi = _mm512_mul_ps(q8_0_lanes(blk, 1), _mm512_loadu_ps(x + LANES));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(q8_0_scale(blk), _mm512_add_ps(lo, hi)));
    }
    return fold_lanes(acc);
}

static void widen_q8_0_avx512(float *dst, const void *blocks, size_t n_blocks)
{
    const unsigned char *blk = blocks;
    for (size_t b = 0; b < n_blocks; b++, blk += ADAMAS_Q8_0_BYTES, dst += 2 * LANES) {
        const __m512 s = q8_0_scale(blk);
        _mm512_storeu_ps(dst, _mm512_mul_ps(s, q8_0_lanes(blk, 0)));
        _mm512_storeu_ps(dst + LANES, _mm512_mul_ps(s, q8_0_lanes(blk, 1)));
    }
}

/* ====================================================================== table */

const adamas_kernels adamas_kernels_avx512 = {
    .name = "avx512",
    .hadamard = hadamard_avx512,
    .encode = encode_avx512,
    .hadamard_encode = hadamard_encode_avx512,
    .scan = {scan_l1_avx512, scan_xorw_avx512},
    .scan_group = {scan_group_l1_avx512, scan_group_xorw_avx512},
    /* Without VBMI2 each hit takes a branch and scalar stores: with the vpshufb
     * variant forced on this table's development CPU (1 thread, caches flushed),
     * Adamas B = 128 on 32/8 took 2.02 ms at 32K listing hits and 1.90 ms storing every
     * distance (rerank 4: 2.84 and 2.47), and 32/32 alike. */
    .scan_lists_hits = adamas_avx512_has_vpopcntdq_vbmi2,
    .emit = emit_avx512,
    .dot = {dot_f32_avx512, dot_f16_avx512, dot_bf16_avx512},
    .dot_group = {dot_group_f32_avx512, dot_group_f16_avx512, dot_group_bf16_avx512},
    .axpy = {axpy_f32_avx512, axpy_f16_avx512, axpy_bf16_avx512},
    .axpy_group = {axpy_group_f32_avx512, axpy_group_f16_avx512, axpy_group_bf16_avx512},
    .scale_max = scale_max_avx512,
    .exp_sum = exp_sum_avx512,
    .page_score = page_score_avx512,
    .dot_q8_0 = dot_q8_0_avx512,
    .widen_q8_0 = widen_q8_0_avx512,
};

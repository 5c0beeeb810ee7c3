/*
 * neon.c - the kernel table for AArch64 Advanced SIMD (NEON).
 *
 * NEON, its fp16 conversions and vcnt are baseline on AArch64: no flags, no run-time
 * check.  The transform, dot and page_score perform the scalar f32 operations one by
 * one (each output a+b or a-b of the same two values in the same operand order,
 * products rounded before they are added; the project builds with -ffp-contract=off,
 * so vmulq + vaddq never fuse into fmla), and the attention's products one vfmaq where
 * the scalar code calls fmaf, hence bit-identical results (kernels.h).
 */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "simd.h"

#ifdef ADAMAS_HAVE_SLEEF
#include <sleef.h>
#endif

#define LANES 4        /* floats per register */
#define REG_MAX_D 128  /* up to this d the whole vector is transformed in registers */

/* Each head dimension gets its own unrolled instance of the transform. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* uint64 words of one planar code (adamas_code_words, inlined) */
#define CODE_WORDS(d) (2 * (((d) + 63) / 64))

/* ============================================================ Hadamard + encode */

/* One in-register stage of span h < 4: lanes with bit h clear take a + b (x holds a,
 * the partner y = x[lane ^ h] holds b), lanes with bit h set take a - b (y holds a). */
ALWAYS_INLINE float32x4_t stage_in_register(float32x4_t x, float32x4_t y, uint32x4_t upper)
{
    return vbslq_f32(upper, vsubq_f32(y, x), vaddq_f32(x, y));
}

/* Stages h = 1, 2 of one 4-float block. */
ALWAYS_INLINE float32x4_t butterflies4(float32x4_t x)
{
    static const uint32_t h1[4] = {0, ~0u, 0, ~0u}, h2[4] = {0, 0, ~0u, ~0u};
    x = stage_in_register(x, vrev64q_f32(x), vld1q_u32(h1));
    x = stage_in_register(x, vextq_f32(x, x, 2), vld1q_u32(h2));
    return x;
}

ALWAYS_INLINE void butterfly(float32x4_t *a, float32x4_t *b)
{
    float32x4_t s = vaddq_f32(*a, *b), t = vsubq_f32(*a, *b);
    *a = s;
    *b = t;
}

/* Stages h = 1 .. 4*n/2 of v[n] (n a power of two, n <= 32): the unscaled transform
 * of the 4*n floats.  n is a constant at every call, so the loops unroll. */
ALWAYS_INLINE void transform_registers(float32x4_t *v, size_t n)
{
#pragma GCC unroll 32
    for (size_t r = 0; r < n; r++)
        v[r] = butterflies4(v[r]);
    const size_t n_stages = n >= 32 ? 5 : n >= 16 ? 4 : n >= 8 ? 3 : n >= 4 ? 2 : n >= 2 ? 1 : 0;
#pragma GCC unroll 5
    for (size_t stage = 0; stage < n_stages; stage++) {
        const size_t hr = (size_t)1 << stage;
#pragma GCC unroll 16
        for (size_t p = 0; p < n / 2; p++) {
            size_t j = (p / hr) * 2 * hr + p % hr; /* the p-th pair (j, j + hr) */
            butterfly(&v[j], &v[j + hr]);
        }
    }
}

/* Code bits of elements [first, first + 4): the two bits of (x > t0) + (x > t1) +
 * (x > t2) for any thresholds, as the scalar sum: low = odd count, high = count >= 2. */
ALWAYS_INLINE void encode_register(float32x4_t x, const float32x4_t th[3], size_t first,
                                   uint64_t *code)
{
    static const uint32_t bit[4] = {1, 2, 4, 8};
    uint32x4_t c0 = vcgtq_f32(x, th[0]), c1 = vcgtq_f32(x, th[1]), c2 = vcgtq_f32(x, th[2]);
    uint32x4_t lo = veorq_u32(veorq_u32(c0, c1), c2);
    uint32x4_t hi = vorrq_u32(vorrq_u32(vandq_u32(c0, c1), vandq_u32(c0, c2)), vandq_u32(c1, c2));
    uint32x4_t weights = vld1q_u32(bit);
    code[2 * (first / 64)] |= (uint64_t)vaddvq_u32(vandq_u32(lo, weights)) << (first % 64);
    code[2 * (first / 64) + 1] |= (uint64_t)vaddvq_u32(vandq_u32(hi, weights)) << (first % 64);
}

/* The code of v[n] (LANES*n elements), each word written once, from registers. */
ALWAYS_INLINE void encode_registers(const float32x4_t *v, size_t n, const float32x4_t th[3],
                                    uint64_t *code)
{
#pragma GCC unroll 2
    for (size_t g = 0; g < (n + 15) / 16; g++) {
        uint64_t words[2] = {0, 0};
#pragma GCC unroll 16
        for (size_t k = 0; k < 16; k++)
            if (16 * g + k < n)
                encode_register(v[16 * g + k], th, k * LANES, words);
        code[2 * g] = words[0];
        code[2 * g + 1] = words[1];
    }
}

static inline void load_thresholds(const float th[3], float32x4_t out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = vdupq_n_f32(th[i]);
}

/* x[d] (d <= REG_MAX_D) in registers: load, all stages, scale, store; code (when not
 * NULL) from the same registers.  At d = 128 the data fill all 32 registers and the
 * compiler keeps a few temporaries on the stack. */
ALWAYS_INLINE void transform_small(float *x, size_t d, const float th[3], uint64_t *code)
{
    const size_t n = d / LANES;
    const float32x4_t scale = vdupq_n_f32((float)(1.0 / sqrt((double)d)));
    float32x4_t v[REG_MAX_D / LANES];
#pragma GCC unroll 32
    for (size_t r = 0; r < n; r++)
        v[r] = vld1q_f32(x + r * LANES);
    transform_registers(v, n);
#pragma GCC unroll 32
    for (size_t r = 0; r < n; r++) {
        v[r] = vmulq_f32(v[r], scale);
        vst1q_f32(x + r * LANES, v[r]);
    }
    if (code) {
        float32x4_t t[3];
        load_thresholds(th, t);
        encode_registers(v, n, t, code);
    }
}

/* One pass over x[d] for stage h (ways = 2) or stages h and 2h (ways = 4); the last
 * pass also scales and encodes. */
ALWAYS_INLINE void transform_pass(float *x, size_t d, size_t h, size_t ways, float32x4_t scale,
                                  const float32x4_t *t, uint64_t *code, int last)
{
    for (size_t i = 0; i < d; i += ways * h)
        for (size_t j = i; j < i + h; j += LANES) {
            float32x4_t v[4];
            for (size_t k = 0; k < ways; k++)
                v[k] = vld1q_f32(x + j + k * h);
            butterfly(&v[0], &v[1]);
            if (ways == 4) {
                butterfly(&v[2], &v[3]);
                butterfly(&v[0], &v[2]);
                butterfly(&v[1], &v[3]);
            }
            for (size_t k = 0; k < ways; k++) {
                if (last)
                    v[k] = vmulq_f32(v[k], scale);
                vst1q_f32(x + j + k * h, v[k]);
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
    const float32x4_t scale = vdupq_n_f32((float)(1.0 / sqrt((double)d)));
    for (size_t b = 0; b < d; b += REG_MAX_D) {
        float32x4_t v[REG_MAX_D / LANES];
#pragma GCC unroll 32
        for (size_t r = 0; r < REG_MAX_D / LANES; r++)
            v[r] = vld1q_f32(x + b + r * LANES);
        transform_registers(v, REG_MAX_D / LANES);
#pragma GCC unroll 32
        for (size_t r = 0; r < REG_MAX_D / LANES; r++)
            vst1q_f32(x + b + r * LANES, v[r]);
    }
    float32x4_t t[3] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
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

static void transform(float *x, size_t d, const float th[3], uint64_t *code)
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

static void hadamard_neon(float *x, size_t d)
{
    transform(x, d, NULL, NULL);
}

static void hadamard_encode_neon(float *x, size_t d, const float th[3], uint64_t *code)
{
    transform(x, d, th, code);
}

static void encode_neon(const float *xh, size_t d, const float th[3], uint64_t *code)
{
    if (d % LANES) {
        adamas_encode_scalar(xh, d, th, code);
        return;
    }
    float32x4_t t[3];
    load_thresholds(th, t);
    memset(code, 0, CODE_WORDS(d) * sizeof *code);
    for (size_t i = 0; i < d; i += LANES)
        encode_register(vld1q_f32(xh + i), t, i, code);
}

/* ================================================================ distance scan */

/*
 * A register of codes is one [lo, hi] group of one key.  As in avx512.c, with
 * x = key ^ query both metrics are popcount(lo') + 2*popcount(hi'): XORW with
 * (lo', hi') = x, L1 with hi' = x.hi & ~(x.lo & (lo ^ hi)).  vcnt counts bits per
 * byte (at most 8); the bytes of up to 31 groups add up in 8 bits.
 */
ALWAYS_INLINE uint64x2_t l1_planes(uint64x2_t key, uint64x2_t q, uint64x2_t odd)
{
    uint64x2_t x = veorq_u64(key, q);
    uint64x2_t e = vandq_u64(x, veorq_u64(key, vextq_u64(key, key, 1)));
    return vbicq_u64(x, vandq_u64(vextq_u64(e, e, 1), odd));
}

ALWAYS_INLINE void scan_words(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                              uint16_t *dist, uint32_t *hist, int xorw)
{
    static const uint64_t odd_lane[2] = {0, ~(uint64_t)0};
    const uint64x2_t odd = vld1q_u64(odd_lane);
    uint64x2_t qv[16];
    for (size_t g = 0; g < words / 2; g++)
        qv[g] = vld1q_u64(q + 2 * g);
    for (size_t j = 0; j < n; j++) {
        const uint64_t *key = codes + j * words;
        /* one cache line of codes, SCAN_PREFETCH_BYTES ahead, per line crossed */
        if ((j * words * sizeof(uint64_t)) % 64 == 0)
            __builtin_prefetch((const char *)key + SCAN_PREFETCH_BYTES);
        uint8x16_t bytes = vdupq_n_u8(0);
        for (size_t g = 0; g < words / 2; g++) {
            uint64x2_t k = vld1q_u64(key + 2 * g);
            uint64x2_t planes = xorw ? veorq_u64(k, qv[g]) : l1_planes(k, qv[g], odd);
            bytes = vaddq_u8(bytes, vcntq_u8(vreinterpretq_u8_u64(planes)));
        }
        uint16x8_t halves = vpaddlq_u8(bytes); /* lanes 0-3: low plane, 4-7: high plane */
        unsigned d = vaddv_u16(vget_low_u16(halves)) + 2u * vaddv_u16(vget_high_u16(halves));
        dist[j] = (uint16_t)d;
        if (hist) /* scalar: equal distances collide */
            hist[d]++;
    }
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

static void scan_l1_neon(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                         uint16_t *dist, uint32_t *hist)
{
    scan(q, codes, words, n, dist, hist, 0);
}

static void scan_xorw_neon(const uint64_t *q, const uint64_t *codes, size_t words, size_t n,
                           uint16_t *dist, uint32_t *hist)
{
    scan(q, codes, words, n, dist, hist, 1);
}

/* ====================================================== attention arithmetic */

/* Four elements of a stored row widened to f32 (exact for f16 and bf16). */
static inline float32x4_t load_f32(const void *row, size_t i)
{
    return vld1q_f32((const float *)row + i);
}

static inline float32x4_t load_f16(const void *row, size_t i)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)row + i)));
}

static inline float32x4_t load_bf16(const void *row, size_t i)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)row + i), 16));
}

/* The 16 lane sums in four registers (lanes 0-3, 4-7, 8-11, 12-15); the scalar fold. */
static inline float fold_lanes(const float32x4_t acc[4])
{
    float32x4_t a = vaddq_f32(acc[0], acc[2]), b = vaddq_f32(acc[1], acc[3]); /* l += l+8 */
    float32x4_t c = vaddq_f32(a, b);                                          /* l += l+4 */
    float32x2_t e = vadd_f32(vget_low_f32(c), vget_high_f32(c));              /* l += l+2 */
    return vget_lane_f32(e, 0) + vget_lane_f32(e, 1);                         /* l += l+1 */
}

/* d is a multiple of 16, as in the scalar loop; fused: one vfmaq per step
 * (dot_group's contract), else the product rounded, then added (dot's). */
static inline float dot_rows(const float *q, const void *row, size_t d, int fused,
                             float32x4_t (*load)(const void *, size_t))
{
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (size_t i = 0; i < d; i += 4 * LANES)
        for (size_t k = 0; k < 4; k++) {
            float32x4_t vq = vld1q_f32(q + i + k * LANES), x = load(row, i + k * LANES);
            acc[k] = fused ? vfmaq_f32(acc[k], vq, x) : vaddq_f32(acc[k], vmulq_f32(vq, x));
        }
    return fold_lanes(acc);
}

static float dot_f32_neon(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, 0, load_f32);
}

static float dot_f16_neon(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, 0, load_f16);
}

static float dot_bf16_neon(const float *q, const void *row, size_t d)
{
    return dot_rows(q, row, d, 0, load_bf16);
}

/* y += a*row, one fused multiply-add per element as in the scalar loop.  Returns how
 * many elements it did (a multiple of 4); the caller does the rest. */
static inline size_t axpy_rows(float *y, float a, const void *row, size_t d,
                               float32x4_t (*load)(const void *, size_t))
{
    const float32x4_t va = vdupq_n_f32(a);
    size_t i = 0;
    for (; i + LANES <= d; i += LANES)
        vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, load(row, i)));
    return i;
}

static void axpy_f32_neon(float *y, float a, const void *row, size_t d)
{
    size_t i = axpy_rows(y, a, row, d, load_f32);
    if (i < d) /* not reached for head dimensions */
        adamas_axpy_f32_scalar(y + i, a, (const float *)row + i, d - i);
}

static void axpy_f16_neon(float *y, float a, const void *row, size_t d)
{
    size_t i = axpy_rows(y, a, row, d, load_f16);
    if (i < d)
        adamas_axpy_f16_scalar(y + i, a, (const uint16_t *)row + i, d - i);
}

static void axpy_bf16_neon(float *y, float a, const void *row, size_t d)
{
    size_t i = axpy_rows(y, a, row, d, load_bf16);
    if (i < d)
        adamas_axpy_bf16_scalar(y + i, a, (const uint16_t *)row + i, d - i);
}

/* sum_i max(q_i*lo_i, q_i*hi_i).  vmaxq would differ from the scalar a > b ? a : b on
 * signed zeros, so the comparison and select are written out. */
static float page_score_neon(const float *q, const float *lo, const float *hi, size_t d)
{
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (size_t i = 0; i < d; i += 4 * LANES)
        for (size_t k = 0; k < 4; k++) {
            float32x4_t vq = vld1q_f32(q + i + k * LANES);
            float32x4_t a = vmulq_f32(vq, vld1q_f32(lo + i + k * LANES));
            float32x4_t b = vmulq_f32(vq, vld1q_f32(hi + i + k * LANES));
            acc[k] = vaddq_f32(acc[k], vbslq_f32(vcgtq_f32(a, b), a, b));
        }
    return fold_lanes(acc);
}

/* ======================================================================== exp */

static inline float32x4_t pow2i(int32x4_t k) /* 2^k for -126 <= k <= 127 */
{
    return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23));
}

/* The fallback exp of simd.h. */
static inline float32x4_t exp_poly(float32x4_t x)
{
    x = vmaxq_f32(x, vdupq_n_f32(ADAMAS_EXP_MIN_ARG)); /* NEON max/min keep a NaN */
    x = vminq_f32(x, vdupq_n_f32(ADAMAS_EXP_MAX_ARG));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(ADAMAS_EXP_LOG2E)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(ADAMAS_EXP_LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(ADAMAS_EXP_LN2_LO));
    float32x4_t p = vdupq_n_f32(ADAMAS_EXP_P0);
    p = vfmaq_f32(vdupq_n_f32(ADAMAS_EXP_P1), p, r);
    p = vfmaq_f32(vdupq_n_f32(ADAMAS_EXP_P2), p, r);
    p = vfmaq_f32(vdupq_n_f32(ADAMAS_EXP_P3), p, r);
    p = vfmaq_f32(vdupq_n_f32(ADAMAS_EXP_P4), p, r);
    p = vfmaq_f32(vdupq_n_f32(ADAMAS_EXP_P5), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    /* n in [-150, 128]: two factors 2^(n/2) keep each normal, one rounding at the end */
    int32x4_t k = vcvtq_s32_f32(n);
    int32x4_t k1 = vshrq_n_s32(k, 1);
    return vmulq_f32(vmulq_f32(p, pow2i(k1)), pow2i(vsubq_s32(k, k1)));
}

/* x[i] *= scale, 4 at a time, the tail through the scalar entry; the largest in 4
 * running maxima, each kept by a compare and a select as the scalar loop keeps it. */
static float scale_max_neon(float *x, size_t n, float scale)
{
    float32x4_t lane_max = vdupq_n_f32(-INFINITY);
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        float32x4_t v = vmulq_n_f32(vld1q_f32(x + i), scale);
        vst1q_f32(x + i, v);
        lane_max = vbslq_f32(vcgtq_f32(v, lane_max), v, lane_max);
    }
    float max = vmaxvq_f32(lane_max);
    float tail = adamas_scale_max_scalar(x + i, n - i, scale);
    return tail > max ? tail : max;
}

/* s[i] = exp(s[i] - max), 4 at a time, the tail through a buffer padded with -inf
 * (exp: 0); the sum in 4 lanes (another order than the scalar loop: within a few
 * ulp, all terms are positive). */
static inline float exp_sum_with(float *s, size_t n, float max, float32x4_t (*vexp)(float32x4_t))
{
    const float32x4_t vmax = vdupq_n_f32(max);
    float32x4_t acc = vdupq_n_f32(0.0f);
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        float32x4_t e = vexp(vsubq_f32(vld1q_f32(s + i), vmax));
        vst1q_f32(s + i, e);
        acc = vaddq_f32(acc, e);
    }
    if (i < n) {
        float tail[LANES] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        memcpy(tail, s + i, (n - i) * sizeof *s);
        float32x4_t e = vexp(vsubq_f32(vld1q_f32(tail), vmax));
        vst1q_f32(tail, e);
        memcpy(s + i, tail, (n - i) * sizeof *s);
        acc = vaddq_f32(acc, e);
    }
    return vaddvq_f32(acc);
}

float adamas_exp_sum_neon_poly(float *s, size_t n, float max)
{
    return exp_sum_with(s, n, max, exp_poly);
}

#ifdef ADAMAS_HAVE_SLEEF
static inline float32x4_t exp_sleef(float32x4_t x)
{
    return Sleef_expf4_u10advsimd(x);
}

static float exp_sum_neon(float *s, size_t n, float max)
{
    return exp_sum_with(s, n, max, exp_sleef);
}
#else
#define exp_sum_neon adamas_exp_sum_neon_poly
#endif

/* ============================================================ Q8_0 weights */

/* The 32 int8 weights of a Q8_0 block as f32, four at a time: w[k] holds 4k..4k+3. */
static inline void q8_0_lanes(const unsigned char *blk, float32x4_t w[8])
{
    for (int half = 0; half < 2; half++) {
        int8x16_t q = vld1q_s8((const int8_t *)(blk + 2 + 16 * half));
        int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_s8(vget_high_s8(q));
        w[4 * half + 0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
        w[4 * half + 1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo)));
        w[4 * half + 2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
        w[4 * half + 3] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi)));
    }
}

static inline float32x4_t q8_0_scale(const unsigned char *blk)
{
    uint16_t h;
    memcpy(&h, blk, sizeof h);
    return vdupq_n_f32(vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0));
}

/* acc[k] holds lanes 4k..4k+3; lane l takes weights l and l+16 of each block:
 * q8_0.c's order. */
static float dot_q8_0_neon(const float *x, const void *blocks, size_t n_blocks)
{
    const unsigned char *blk = blocks;
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (size_t b = 0; b < n_blocks; b++, blk += ADAMAS_Q8_0_BYTES, x += 8 * LANES) {
        float32x4_t w[8];
        q8_0_lanes(blk, w);
        const float32x4_t s = q8_0_scale(blk);
        for (int k = 0; k < 4; k++) {
            float32x4_t pair = vaddq_f32(vmulq_f32(w[k], vld1q_f32(x + k * LANES)),
                                         vmulq_f32(w[k + 4], vld1q_f32(x + 16 + k * LANES)));
            acc[k] = vaddq_f32(acc[k], vmulq_f32(s, pair));
        }
    }
    return fold_lanes(acc);
}

static void widen_q8_0_neon(float *dst, const void *blocks, size_t n_blocks)
{
    const unsigned char *blk = blocks;
    for (size_t b = 0; b < n_blocks; b++, blk += ADAMAS_Q8_0_BYTES, dst += 8 * LANES) {
        float32x4_t w[8];
        q8_0_lanes(blk, w);
        const float32x4_t s = q8_0_scale(blk);
        for (int k = 0; k < 8; k++)
            vst1q_f32(dst + k * LANES, vmulq_f32(s, w[k]));
    }
}

/* ================================================================ GQA groups */

/* The heads of a group one after another: each reads its own copy of the row or the
 * codes, from L1 after the first.  Where a NEON core is compute bound on GQA is not
 * measured yet, so no wider kernels are written for it.  A sparse scan puts a head's
 * distances in a buffer of SCAN_GROUP_STEP keys before they are counted and listed. */
#define SCAN_GROUP_STEP 256

static void scan_group_neon(adamas_scan_fn scan, const uint64_t *q, size_t q_stride,
                            size_t heads, const uint64_t *codes, size_t words, size_t n,
                            const uint16_t *limit, uint32_t *hist, size_t hist_stride,
                            uint16_t *dist, size_t dist_stride, uint32_t first, uint32_t *hits,
                            size_t hits_stride, uint32_t *n_hits)
{
    uint16_t step[SCAN_GROUP_STEP];
    for (size_t at = 0; at < n; at += SCAN_GROUP_STEP) {
        const size_t len = n - at < SCAN_GROUP_STEP ? n - at : SCAN_GROUP_STEP;
        for (size_t h = 0; h < heads; h++) {
            uint16_t *out = dist ? dist + h * dist_stride + at : step;
            scan(q + h * q_stride, codes + at * words, words, len, out, NULL);
            adamas_count_batch(out, 0, 1, len, first + (uint32_t)at, limit + h,
                               hist + h * hist_stride, 0, dist ? NULL : hits + h * hits_stride, 0,
                               dist ? NULL : n_hits + h);
        }
    }
}

#define DEFINE_SCAN_GROUP_NEON(name, scan)                                                    \
    static void name(const uint64_t *q, size_t q_stride, size_t heads, const uint64_t *codes, \
                     size_t words, size_t n, const uint16_t *limit, uint32_t *hist,          \
                     size_t hist_stride, uint16_t *dist, size_t dist_stride, uint32_t first,  \
                     uint32_t *hits, size_t hits_stride, uint32_t *n_hits)                   \
    {                                                                                        \
        scan_group_neon(scan, q, q_stride, heads, codes, words, n, limit, hist, hist_stride,  \
                        dist, dist_stride, first, hits, hits_stride, n_hits);                 \
    }

DEFINE_SCAN_GROUP_NEON(scan_group_l1_neon, scan_l1_neon)
DEFINE_SCAN_GROUP_NEON(scan_group_xorw_neon, scan_xorw_neon)

#define DEFINE_DOT_GROUP(name, load)                                                     \
    static void name(const float *q, size_t heads, const void *const *rows, size_t n,    \
                     size_t d, float *out, size_t out_stride)                            \
    {                                                                                    \
        for (size_t r = 0; r < n; r++)                                                   \
            for (size_t j = 0; j < heads; j++)                                           \
                out[j * out_stride + r] = dot_rows(q + j * d, rows[r], d, 1, load);      \
    }

DEFINE_DOT_GROUP(dot_group_f32_neon, load_f32)
DEFINE_DOT_GROUP(dot_group_f16_neon, load_f16)
DEFINE_DOT_GROUP(dot_group_bf16_neon, load_bf16)

#define DEFINE_AXPY_GROUP(name, axpy)                                                    \
    static void name(float *y, size_t y_stride, const float *a, size_t a_stride,         \
                     size_t heads, const void *const *rows, size_t n, size_t d)          \
    {                                                                                    \
        for (size_t r = 0; r < n; r++)                                                   \
            for (size_t j = 0; j < heads; j++)                                           \
                axpy(y + j * y_stride, a[j * a_stride + r], rows[r], d);                 \
    }

DEFINE_AXPY_GROUP(axpy_group_f32_neon, axpy_f32_neon)
DEFINE_AXPY_GROUP(axpy_group_f16_neon, axpy_f16_neon)
DEFINE_AXPY_GROUP(axpy_group_bf16_neon, axpy_bf16_neon)

/* ====================================================================== table */

const adamas_kernels adamas_kernels_neon = {
    .name = "neon",
    .hadamard = hadamard_neon,
    .encode = encode_neon,
    .hadamard_encode = hadamard_encode_neon,
    .scan = {scan_l1_neon, scan_xorw_neon},
    .scan_group = {scan_group_l1_neon, scan_group_xorw_neon},
    .emit = adamas_emit_scalar, /* no compress instruction: the branch-free loop it is */
    .dot = {dot_f32_neon, dot_f16_neon, dot_bf16_neon},
    .dot_group = {dot_group_f32_neon, dot_group_f16_neon, dot_group_bf16_neon},
    .axpy = {axpy_f32_neon, axpy_f16_neon, axpy_bf16_neon},
    .axpy_group = {axpy_group_f32_neon, axpy_group_f16_neon, axpy_group_bf16_neon},
    .scale_max = scale_max_neon,
    .exp_sum = exp_sum_neon,
    .page_score = page_score_neon,
    .dot_q8_0 = dot_q8_0_neon,
    .widen_q8_0 = widen_q8_0_neon,
};

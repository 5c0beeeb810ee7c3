/*
 * simd.h - what the SIMD kernel files share, and the variants they choose between.
 *
 * Each simd/<isa>.c fills one kernel table (adamas_kernels_<isa>, see kernels.h).
 * Where a table picks one of two implementations of an entry (AVX-512 scan: VPOPCNTQ
 * or the vpshufb nibble table; exp_sum: SLEEF or the polynomial below), both are
 * exported here under internal names, so that tests and benchmarks reach the variant
 * this machine would not pick.  A variant exists only in builds that define the
 * matching ADAMAS_HAVE_<ISA> (and ADAMAS_HAVE_SLEEF for the SLEEF ones).
 */
#ifndef ADAMAS_SIMD_H
#define ADAMAS_SIMD_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "prefetch.h"

/* The counting step of the grouped scans that keep a batch's distances in memory
 * (AVX2, NEON, and AVX-512 without VBMI2): the m distances dist[0..m) + h*dist_stride
 * of keys first.. first+m-1, counted and (hits not NULL: a sparse scan) listed as
 * kernels.h's scan_group says.  A dense scan counts without a branch; a sparse one
 * sees few distances within the limits, so its branch is well predicted, and keeps a
 * head's count in a register, where a count in memory would make each hit wait for
 * the store of the one before. */
static inline void adamas_count_batch(const uint16_t *dist, size_t dist_stride, size_t heads,
                                      size_t m, uint32_t first, const uint16_t *limit,
                                      uint32_t *hist, size_t hist_stride, uint32_t *hits,
                                      size_t hits_stride, uint32_t *n_hits)
{
    if (!hits) {
        /* heads interleaved: equal distances of one head rarely follow each other */
        for (size_t i = 0; i < m; i++)
            for (size_t h = 0; h < heads; h++) {
                uint16_t v = dist[h * dist_stride + i];
                hist[h * hist_stride + v] += v <= limit[h];
            }
        return;
    }
    for (size_t h = 0; h < heads; h++) {
        uint32_t *head_hist = hist + h * hist_stride, *list = hits + h * hits_stride;
        uint32_t count = n_hits[h];
        for (size_t i = 0; i < m; i++) {
            uint32_t v = dist[h * dist_stride + i];
            if (v <= limit[h]) {
                head_hist[v]++;
                list[count++] = adamas_hit(first + (uint32_t)i, v);
            }
        }
        n_hits[h] = count;
        adamas_prefetch_write(list + count, 64);
    }
}

/* How far ahead of the batch in use the scans ask for their codes into L1 (and, on
 * x86, L2_PREFETCH_BYTES ahead into L2: prefetch.h). */
#define SCAN_PREFETCH_BYTES 4096

/* Ask for the codes of the batch bytes[0, batch_bytes) at `batch` ahead, as above. */
static inline void adamas_prefetch_codes(const void *batch, size_t batch_bytes)
{
    const char *b = (const char *)batch;
    adamas_prefetch(b + SCAN_PREFETCH_BYTES, batch_bytes);
    adamas_prefetch_l2(b + L2_PREFETCH_BYTES, batch_bytes);
}

/* ---------------------------------------------------------------- AVX-512 */

/* 1 if this CPU has AVX512_VPOPCNTDQ: the table's scan then uses VPOPCNTQ. */
int adamas_avx512_has_vpopcntdq(void);

/* 1 if it has AVX512_VPOPCNTDQ and AVX512_VBMI2: the table's grouped scan then uses
 * its _vpopcnt variant. */
int adamas_avx512_has_vpopcntdq_vbmi2(void);

/* Distance scans with VPOPCNTQ (need AVX512_VPOPCNTDQ)... */
void adamas_scan_l1_avx512_vpopcnt(const uint64_t *q, const uint64_t *codes, size_t words,
                                   size_t n, uint16_t *dist, uint32_t *hist);
void adamas_scan_xorw_avx512_vpopcnt(const uint64_t *q, const uint64_t *codes, size_t words,
                                     size_t n, uint16_t *dist, uint32_t *hist);
/* ...and with a vpshufb nibble-table popcount (AVX-512BW only). */
void adamas_scan_l1_avx512_vpshufb(const uint64_t *q, const uint64_t *codes, size_t words,
                                   size_t n, uint16_t *dist, uint32_t *hist);
void adamas_scan_xorw_avx512_vpshufb(const uint64_t *q, const uint64_t *codes, size_t words,
                                     size_t n, uint16_t *dist, uint32_t *hist);

/* The grouped scans, likewise (the _vpopcnt ones need AVX512_VBMI2 as well). */
void adamas_scan_group_l1_avx512_vpopcnt(const uint64_t *q, size_t q_stride, size_t heads,
                                         const uint64_t *codes, size_t words, size_t n,
                                         const uint16_t *limit, uint32_t *hist,
                                         size_t hist_stride, uint16_t *dist, size_t dist_stride,
                                         uint32_t first, uint32_t *hits, size_t hits_stride,
                                         uint32_t *n_hits);
void adamas_scan_group_xorw_avx512_vpopcnt(const uint64_t *q, size_t q_stride, size_t heads,
                                           const uint64_t *codes, size_t words, size_t n,
                                           const uint16_t *limit, uint32_t *hist,
                                           size_t hist_stride, uint16_t *dist, size_t dist_stride,
                                           uint32_t first, uint32_t *hits, size_t hits_stride,
                                           uint32_t *n_hits);
void adamas_scan_group_l1_avx512_vpshufb(const uint64_t *q, size_t q_stride, size_t heads,
                                         const uint64_t *codes, size_t words, size_t n,
                                         const uint16_t *limit, uint32_t *hist,
                                         size_t hist_stride, uint16_t *dist, size_t dist_stride,
                                         uint32_t first, uint32_t *hits, size_t hits_stride,
                                         uint32_t *n_hits);
void adamas_scan_group_xorw_avx512_vpshufb(const uint64_t *q, size_t q_stride, size_t heads,
                                           const uint64_t *codes, size_t words, size_t n,
                                           const uint16_t *limit, uint32_t *hist,
                                           size_t hist_stride, uint16_t *dist, size_t dist_stride,
                                           uint32_t first, uint32_t *hits, size_t hits_stride,
                                           uint32_t *n_hits);

/* --------------------------------------------------------------- exp_sum */

/* exp_sum with the project's own vector exp, the tables' choice when SLEEF is absent. */
float adamas_exp_sum_avx512_poly(float *s, size_t n, float max);
float adamas_exp_sum_avx2_poly(float *s, size_t n, float max);
float adamas_exp_sum_neon_poly(float *s, size_t n, float max);

/* The polynomial exp (Cephes expf, the same in every ISA file): with
 * n = round(x*log2(e)) and r = x - n*ln2 (ln2 in two parts, so r is exact),
 * exp(x) = 2^n * (1 + r + r^2*P(r)), P of degree 5; about 1 ulp on [-104, 88.7];
 * x is clamped to that range first (exp(-104) already rounds to 0 in f32).
 * 2^n is applied with n split in two halves so that subnormal results round once. */
#define ADAMAS_EXP_MIN_ARG (-104.0f)
#define ADAMAS_EXP_MAX_ARG 88.72283f
#define ADAMAS_EXP_LOG2E 1.44269504088896341f
#define ADAMAS_EXP_LN2_HI 0.693359375f
#define ADAMAS_EXP_LN2_LO (-2.12194440e-4f)
#define ADAMAS_EXP_P0 1.9875691500e-4f
#define ADAMAS_EXP_P1 1.3981999507e-3f
#define ADAMAS_EXP_P2 8.3334519073e-3f
#define ADAMAS_EXP_P3 4.1665795894e-2f
#define ADAMAS_EXP_P4 1.6666665459e-1f
#define ADAMAS_EXP_P5 5.0000001201e-1f

#endif

/* select.h - top-k selection with the project's tie rule.
 *
 * Every selection returns positions in ascending order and breaks ties toward the
 * larger position (the more recent token). */
#ifndef ADAMAS_SELECT_H
#define ADAMAS_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* n_hits of a chunk scanned dense: its distances are in dist. */
#define ADAMAS_DENSE_CHUNK UINT32_MAX

/* One query head's grouped scan (kernels.h), chunk by chunk: chunk c covers the
 * positions [c*chunk_len, (c+1)*chunk_len) (the last chunk may be shorter), and hist +
 * c*hist_stride (nbins bins) counts its distances at most the chunk's limit.  A chunk
 * scanned dense (n_hits[c*n_hits_stride] == ADAMAS_DENSE_CHUNK) has its distances in
 * dist, indexed by position; one scanned sparse has its hits, hits + c*hits_stride,
 * n_hits[c*n_hits_stride] of them: the positions at most its limit, ascending, each
 * relative to the chunk's first. */
typedef struct {
    uint32_t n, chunks, chunk_len, nbins;
    const uint32_t *hist;
    size_t hist_stride;
    const uint16_t *dist;
    const uint32_t *hits;
    size_t hits_stride;
    const uint32_t *n_hits;
    size_t n_hits_stride;
    adamas_emit_fn emit; /* the positions taken from a dense chunk */
} adamas_scanned;

/* Histogram select of the k smallest distances of a scan of n positions whose limits
 * never fell below the k-th smallest (1 <= k <= n): writes base + position, ascending,
 * to idx[k].  The same set as adamas_select_smallest_heap over all the distances. */
void adamas_select_scanned(const adamas_scanned *sc, uint32_t k, uint32_t base, uint32_t *idx);

/* The same set by a bounded max-heap: the reference the histogram is tested against. */
void adamas_select_smallest_heap(const uint16_t *dist, uint32_t n, uint32_t k, uint32_t base,
                                 uint32_t *idx);

/* Positions of the k largest of score[n] (1 <= k <= n), ascending, by a radix select
 * on the scores' bits (finite scores; -0 and +0 tie). */
void adamas_select_largest_f32(const float *score, uint32_t n, uint32_t k, uint32_t *idx);

#endif

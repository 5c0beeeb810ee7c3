/* select.h - top-k selection with the project's tie rule.
 *
 * Every selection returns positions in ascending order and breaks ties toward the
 * larger position (the more recent token). */
#ifndef ADAMAS_SELECT_H
#define ADAMAS_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* Histogram select of the k smallest of dist[n] (1 <= k <= n), given
 * hist[v] = count of dist == v for v < nbins (every dist < nbins).
 * Writes base + position, ascending, to idx[k], through an emit kernel. */
void adamas_select_smallest_hist(const uint16_t *dist, uint32_t n, uint32_t k,
                                 const uint32_t *hist, uint32_t nbins, uint32_t base,
                                 adamas_emit_fn emit, uint32_t *idx);

/* The same, given one histogram per chunk: hist + c*hist_stride counts the distances
 * of positions [c*chunk_len, (c+1)*chunk_len) (the last chunk may be shorter).  Chunks
 * that hold none of the k are not read. */
void adamas_select_smallest_chunked(const uint16_t *dist, uint32_t n, uint32_t k,
                                    const uint32_t *hist, size_t hist_stride, uint32_t chunk_len,
                                    uint32_t nbins, uint32_t base, adamas_emit_fn emit,
                                    uint32_t *idx);

/* The same set by a bounded max-heap: the reference the histogram is tested against. */
void adamas_select_smallest_heap(const uint16_t *dist, uint32_t n, uint32_t k, uint32_t base,
                                 uint32_t *idx);

/* Positions of the k largest of score[n] (1 <= k <= n), ascending, by a radix select
 * on the scores' bits (finite scores; -0 and +0 tie). */
void adamas_select_largest_f32(const float *score, uint32_t n, uint32_t k, uint32_t *idx);

#endif

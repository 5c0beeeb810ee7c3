/*
 * adamas_cuda.h - entry points of the CUDA module beyond the table of gpu_module.h,
 * for programs that time the device work themselves (bench/bench_gpu.py).
 *
 * libadamas_cuda.so exports adamas_gpu_module_get() (the table the core loads) and
 * the functions below; a program reaches them with dlsym.
 */
#ifndef ADAMAS_CUDA_H
#define ADAMAS_CUDA_H

#include "gpu_module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The cudaStream_t a cache's work is queued on (decode_dev, adamas_cuda_stages_dev), so
 * that a caller can record events on it.  NULL for NULL. */
ADAMAS_API void *adamas_cuda_stream(adamas_gpu_cache *g);

/* Queue a cache's work on `stream` (a cudaStream_t of the cache's device) from now on,
 * so that it joins the caller's stream order and graph captures; NULL: back to the
 * cache's own stream.  Waits for the work queued so far. */
ADAMAS_API int adamas_cuda_set_stream(adamas_gpu_cache *g, void *stream);

/* Queue the first `stages` stages of a decode step (as decode_dev, selected NULL):
 * 1, the ADAMAS scan (query codes, code distances, histograms; for other selectors
 * their whole selection); 2, the selection too; 3 or more, the whole step.  Timing
 * each gives the cost of each stage. */
ADAMAS_API int adamas_cuda_stages_dev(adamas_gpu_cache *g, const adamas_gpu_step *s,
                                      const float *q_dev, float *out_dev, uint32_t stages);

#ifdef __cplusplus
}
#endif

#endif

/*
 * gpu_module.h - the contract between the core and a run-time loaded GPU module.
 *
 * The core never links a GPU runtime.  A module (gpu/, built as libadamas_cuda.so)
 * exports one C function, adamas_gpu_module_get(), returning a table of the entry
 * points below.  A cache created with the CUDA backend keeps its host storage (the
 * CPU path stays available for cross-checks) and a device mirror that the module
 * owns: every append goes to both, decode runs on the device.
 *
 * Results the module must reproduce bit for bit (DESIGN §2, kernels.h): Hadamard
 * values, codes, distances, the fixed-order dot products and page scores that rank
 * tokens, hence every selected set.  Attention outputs within tolerance.
 *
 * All pointers are host pointers unless a name ends in _dev.  Every entry returns 0
 * or a negative adamas_status and, on failure, leaves a message for error().
 */
#ifndef ADAMAS_GPU_MODULE_H
#define ADAMAS_GPU_MODULE_H

#include <stdint.h>

#include "adamas.h"

#define ADAMAS_GPU_ABI 1

/* The module's device mirror of one cache. */
typedef struct adamas_gpu_cache adamas_gpu_cache;

/* One decode step, as validated by the core. */
typedef struct {
    adamas_selector selector;
    uint32_t n;              /* tokens visible: the cache's length                 */
    uint32_t budget;         /* B                                                  */
    uint32_t sink, recent;   /* forced tokens (ADAMAS, ORACLE; STREAMING: sink)    */
    uint32_t rerank;         /* R > 1: two-stage selection (ADAMAS)                */
    float query_tau;         /* 0: cfg.q_thresholds; > 0: {-tau*r, 0, tau*r}       */
} adamas_gpu_step;

typedef struct {
    uint32_t abi; /* ADAMAS_GPU_ABI */
    const char *name;

    /* Message of the module's most recent failure (per thread). */
    const char *(*error)(void);

    /* 0 when a device is usable; device_name receives its name.  ENOTSUP otherwise. */
    int (*probe)(char *device_name, size_t len);

    /* A device mirror for cfg (validated by the core), empty. */
    int (*cache_create)(const adamas_cache_config *cfg, adamas_gpu_cache **out);
    void (*cache_destroy)(adamas_gpu_cache *g);

    /* Append n tokens: k, v [n][n_kv_heads][head_dim] f32 as given to the core (codes
     * from these values; storage rounded to kv_dtype, Quest page bounds updated);
     * k_thresholds [n_kv_heads][3]: the key thresholds in use. */
    int (*cache_append)(adamas_gpu_cache *g, const float *k, const float *v, uint32_t n,
                        const float (*k_thresholds)[3]);

    /* Calibration: re-encode every stored (rounded) key with new per-head thresholds. */
    int (*cache_recode)(adamas_gpu_cache *g, const float (*k_thresholds)[3]);

    /* Read back the codes of tokens first..first+count-1 of kv head g.
     * codes: [count][code_words]. */
    int (*cache_codes)(const adamas_gpu_cache *g, uint32_t kv_head, uint32_t first, uint32_t count,
                       uint64_t *codes);

    /* Code distance of query head h (q: [head_dim]) to every one of the s->n tokens,
     * computed as decode computes it.  dist: [s->n]. */
    int (*distances)(adamas_gpu_cache *g, const adamas_gpu_step *s, uint32_t head, const float *q,
                     uint16_t *dist);

    /* One decode step for every query head: q, out [n_heads][head_dim]; selected
     * [n_heads][budget] or NULL (as adamas_decode).  Synchronous. */
    int (*decode)(adamas_gpu_cache *g, const adamas_gpu_step *s, const float *q, float *out,
                  uint32_t *selected);

    /* The same on device buffers, queued on the module's stream (for benchmarks that
     * keep everything on the device); sync() waits for it. */
    int (*decode_dev)(adamas_gpu_cache *g, const adamas_gpu_step *s, const float *q_dev,
                      float *out_dev, uint32_t *selected_dev);
    int (*sync)(adamas_gpu_cache *g);
} adamas_gpu_module;

/* Exported by the module under this name. */
typedef const adamas_gpu_module *(*adamas_gpu_module_get_fn)(void);
#define ADAMAS_GPU_MODULE_SYMBOL "adamas_gpu_module_get"

#endif

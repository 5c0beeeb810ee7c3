/* gpu.cuh - the CUDA module's device mirror of a cache, its per-step buffers, and the
 * kernel launchers that module.cu strings into a decode step.
 *
 * A step runs as a few launches on the cache's stream, every head at once:
 *   ADAMAS     scan (query code + distances + histograms) -> count -> emit [-> rerank]
 *   ORACLE     logits -> top-k          QUEST   page scores -> top pages
 *   STREAMING  fill                     FULL    (no selection)
 *   then       attend (partial softmax per chunk of tokens) -> combine
 */
#ifndef ADAMAS_GPU_CUH
#define ADAMAS_GPU_CUH

#include <cuda_runtime.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "adamas.h"
#include "gpu_module.h"

/* Tokens per attention item: dense steps, and sparse steps (a few hundred tokens per
 * head, split so that every multiprocessor gets work). */
#define ATTEND_CHUNK_DENSE 256u
#define ATTEND_CHUNK_SPARSE 32u
/* Distances a select block compacts at a time: 256 threads x 16. */
#define SELECT_TILE 4096u

/* Per-step buffers on the device, grown on demand and reused across steps. */
typedef struct {
    void *block;              /* one allocation holding every array below           */
    size_t bytes;
    uint32_t cap_cand;        /* dist row stride (multiple of 8)                    */
    uint32_t cap_hist;        /* histogram rows: scan blocks per head x bins        */
    uint32_t cap_set;         /* set row stride                                     */
    uint32_t cap_short;       /* rerank shortlist row stride                        */
    uint32_t cap_score;       /* score row stride (logits, page scores)             */
    uint32_t cap_partial;     /* attention chunks per head                          */
    uint32_t cap_budget;      /* selected rows of the synchronous path              */
    uint16_t *dist;           /* [n_heads][cap_cand]                                */
    uint32_t *hist;           /* [n_heads][cap_hist]: per scan block, then bins     */
    uint32_t *arrivals;       /* [n_heads]: attention chunks done (0 between steps) */
    uint32_t *set;            /* [n_heads][cap_set]: attended tokens, ascending     */
    uint32_t *cand;           /* [n_heads][cap_short]: rerank shortlist             */
    float *score;             /* [n_heads][cap_score]                               */
    float *partial;           /* [n_heads][cap_partial][head_dim + 2]               */
    float *q;                 /* [n_heads][head_dim]: synchronous path's query      */
    float *out;               /* [n_heads][head_dim]                                */
    uint32_t *selected;       /* [n_heads][cap_budget]                              */
} gpu_workspace;

struct adamas_gpu_cache {
    adamas_cache_config cfg;
    int device;
    uint32_t len;             /* tokens stored                                       */
    uint32_t group;           /* query heads per kv head                             */
    uint32_t words;           /* uint64 words per code                               */
    uint32_t nbins;           /* distance histogram bins: 3*head_dim + 1             */
    uint32_t max_pages;       /* ceil(max_tokens / page_size)                        */
    uint32_t elem;            /* bytes per stored element                            */
    uint32_t sm_count;        /* multiprocessors of the device                       */
    float hadamard_scale;     /* (float)(1/sqrt(d)), as the CPU computes it          */
    float attn_scale;         /* the same constant scales the logits                 */
    cudaStream_t stream;      /* where the cache's work is queued                    */
    cudaStream_t own_stream;  /* the stream the cache created (the default one)      */
    void *keys;               /* [n_kv_heads][max_tokens][head_dim] of kv_dtype      */
    void *values;             /* [n_kv_heads][max_tokens][head_dim] of kv_dtype      */
    uint64_t *codes;          /* [n_kv_heads][max_tokens][words]                     */
    float *page_min;          /* [n_kv_heads][max_pages][head_dim]                   */
    float *page_max;          /* [n_kv_heads][max_pages][head_dim]                   */
    float *k_thresholds;      /* [n_kv_heads][3]                                     */
    float *stage;             /* append staging: k then v, f32                        */
    size_t stage_tokens;      /* tokens the staging buffer holds                     */
    gpu_workspace ws;
    pthread_mutex_t lock;     /* one call at a time per cache                        */
};

/* Optional parts of a step, on unless ADAMAS_CUDA_OFF lists them (comma-separated),
 * to compare or to rule one out: "pdl", programmatic dependent launches between the
 * kernels of a step; "online", the one-pass attention kernel for sparse sets (else the
 * two-pass one, which dense steps always use). */
typedef struct {
    int pdl, online;
} gpu_features;
const gpu_features *features(void);

/* Launch kernel<<<grid, block, shared, stream>>>(args) so that it may start while the
 * kernel before it on the stream finishes (programmatic dependent launch, when the
 * "pdl" feature is on); the kernel calls wait_for_inputs() first. */
template <typename... Params, typename... Args>
static inline cudaError_t launch_after(void (*kernel)(Params...), dim3 grid, dim3 block,
                                       size_t shared, cudaStream_t stream, Args... args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = shared;
    cfg.stream = stream;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = features()->pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
}

/* ------------------------------------------------------------ encode.cu */

/* Store tokens first..first+count-1 from staged f32 rows (k, v: [count][n_kv][d]),
 * rounded to the storage dtype, and encode the keys as given with th [n_kv][3]. */
cudaError_t launch_append(const adamas_gpu_cache *g, const float *k, const float *v,
                          uint32_t first, uint32_t count);

/* Re-encode the stored keys of tokens 0..len-1 with th [n_kv][3] (device). */
cudaError_t launch_recode(const adamas_gpu_cache *g, uint32_t len);

/* Recompute the Quest bounds of pages first_page..last_page from the stored keys of
 * tokens below len. */
cudaError_t launch_page_bounds(const adamas_gpu_cache *g, uint32_t first_page,
                               uint32_t last_page, uint32_t len);

/* ------------------------------------------------------------ scan.cu */

/* Query codes and code distances of candidates first..first+count-1 of each kv head.
 * heads_per_kv query heads per kv head, starting at head0 + kv*head_step, for kv
 * heads kv0..kv0+n_kv-1.  q: [n_heads][d] f32 (device); query_tau as the step's.
 * dist[h][dstride]; per-scan-block histograms in hist (NULL: none).
 * *blocks receives the scan blocks per head (histogram rows), *tpb the candidates
 * each covers. */
typedef struct {
    const float *q;
    float query_tau;
    uint32_t kv0, n_kv, head0, head_step, heads_per_kv;
    uint32_t first, count;
    uint16_t *dist;
    uint32_t dstride;
    uint32_t *hist;
} scan_launch;
cudaError_t launch_scan(const adamas_gpu_cache *g, const scan_launch *a, uint32_t *blocks,
                        uint32_t *tpb);

/* Scan blocks per head launch_scan will use for count candidates over n_kv kv heads. */
uint32_t scan_blocks(const adamas_gpu_cache *g, uint32_t count, uint32_t n_kv);

/* The k smallest distances of each head's n_cand candidates (ties to the more recent),
 * from the scan's distances and histograms, one block per scan block and head.
 * Positions become tokens sink + j, written ascending to out + h*out_stride.  Also
 * writes each head's forced tokens (sink first, recent last) into set rows of budget
 * entries. */
typedef struct {
    uint32_t n, n_cand, k, sink, recent, budget, scan_blocks, scan_tpb;
    uint32_t *out;
    uint32_t out_stride;
} select_launch;
cudaError_t launch_select(const adamas_gpu_cache *g, const select_launch *a);

/* Two-stage selection: exact logits of each head's shortlist cand[h][n_short], the
 * k_free largest (ties to the more recent) into set[h][sink..]. */
cudaError_t launch_rerank(const adamas_gpu_cache *g, const float *q, uint32_t n_short,
                          uint32_t k_free, uint32_t sink);

/* ORACLE: exact logits of candidates sink..sink+n_cand-1, the k_free largest into
 * set[h][sink..], plus the forced tokens. */
cudaError_t launch_oracle(const adamas_gpu_cache *g, const float *q, uint32_t n, uint32_t n_cand,
                          uint32_t k_free, uint32_t sink, uint32_t recent, uint32_t budget);

/* QUEST: the newest token's page and the n_pick best other pages, every token of them
 * into set[h]. */
cudaError_t launch_quest(const adamas_gpu_cache *g, const float *q, uint32_t n, uint32_t n_pick);

/* STREAMING: tokens 0..sink-1 and n-(budget-sink)..n-1 into set[h]. */
cudaError_t launch_streaming(const adamas_gpu_cache *g, uint32_t n, uint32_t sink,
                             uint32_t budget);

/* ------------------------------------------------------------ attend.cu */

/* Softmax attention of every query head over m tokens: set[h][0..m) (set != NULL) or
 * tokens 0..m-1; out [n_heads][d].  selected (may be NULL): [n_heads][budget], the
 * attended tokens then UINT32_MAX.  after: the step's selection ran before (the launch
 * may overlap its end); 0 for the step's first kernel. */
cudaError_t launch_attend(const adamas_gpu_cache *g, const float *q, const uint32_t *set,
                          uint32_t m, float *out, uint32_t *selected, uint32_t budget,
                          int after);

/* Attention chunks per head for m tokens. */
uint32_t attend_chunks(uint32_t m, int dense);

#endif

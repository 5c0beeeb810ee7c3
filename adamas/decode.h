/* decode.h - one decode step as the selectors, the attention and the workspace see it.
 *
 * A step runs in phases, each a loop over independent items that threads share:
 *   1. query codes           one item per query head            (ADAMAS only)
 *   2. scan                  one item per kv head and token chunk: the codes of a chunk
 *                            are read once for all query heads of the kv head
 *   3. select                one item per query head
 *   4. attend                one item per kv head and token chunk (dense), or per
 *                            query head (sparse): partial softmax sums
 *   5. combine               one item per query head
 * For ADAMAS, phases 3-5 of the query heads of a kv head follow its scan in the same
 * loop: the thread that scans the kv head's last chunk takes them on, one query head
 * at a time, and threads left without a chunk to scan help with those of the last kv
 * heads.
 * Chunk boundaries are fixed (never derived from the thread count) and partial sums
 * are combined in chunk order, so every thread count gives the same bits. */
#ifndef ADAMAS_DECODE_H
#define ADAMAS_DECODE_H

#include <stdbool.h>
#include <stdint.h>

#include "adamas.h"
#include "cache.h"
#include "kernels.h"
#include "prefetch.h"
#include "select.h"

/* Tokens per scan item; keys per call of the grouped scan, between which decode
 * lowers the limits.  The kernels keep their own smaller blocks of codes in L1 while
 * the heads of a kv head scan them.  Side by side (32/8, 1 thread, three interleaved
 * rounds), 1024 keys against 256: the scan 0.884-0.891 -> 0.843-0.862 ms at 32K and
 * 3.24-3.34 -> 3.03-3.07 ms at 128K, Adamas B = 128 1.09-1.11 -> 1.06-1.09 and
 * 3.68-3.79 -> 3.47-3.59 ms; 512 keys between the two. */
#define ADAMAS_SCAN_CHUNK 4096u
#define ADAMAS_SCAN_BLOCK 1024u
/* Tokens per attention item (partial softmax). */
#define ADAMAS_ATTN_CHUNK 1024u

/* What every query head of one step shares (arguments already validated). */
typedef struct {
    const adamas_cache *cache;
    const adamas_kernels *kern;
    adamas_selector selector;
    uint32_t n;       /* tokens visible to this step                               */
    uint32_t budget;  /* B                                                         */
    uint32_t sink;    /* forced first tokens (ADAMAS, ORACLE, STREAMING)           */
    uint32_t recent;  /* forced last tokens (ADAMAS, ORACLE)                       */
    uint32_t rerank;  /* R > 1: two-stage selection (ADAMAS)                       */
    bool dense;       /* every token attended: FULL, or n <= budget                */
    uint32_t n_cand;  /* ADAMAS/ORACLE: candidates [sink, n - recent)              */
    uint32_t k_free;  /* ADAMAS/ORACLE: candidates to pick                         */
    uint32_t k_codes; /* ADAMAS: candidates the code distance picks: k_free, or the
                         shortlist of a two-stage selection                        */
    uint32_t nbins;   /* distance histogram bins: 3*head_dim + 1                   */
    bool list_hits;   /* ADAMAS: scans may list hits (kernels.h's scan_lists_hits) */
} decode_step;

/* Per-step buffers, reused across steps (see workspace.c).  Arrays are laid out with
 * the capacity fields as strides, so a step that fits needs no new allocation. */
struct adamas_workspace {
    void *block;          /* one allocation holding every array below                 */
    uint32_t cap_heads, cap_dim, cap_tokens, cap_width, cap_threads;
    uint32_t cap_words;   /* code words of cap_dim                                    */
    uint32_t cap_bins;    /* histogram bins of cap_dim: 3*cap_dim + 1                 */
    uint32_t scan_chunks; /* ceil(cap_tokens / ADAMAS_SCAN_CHUNK)                     */
    uint32_t attn_chunks; /* ceil(cap_tokens / ADAMAS_ATTN_CHUNK)                     */
    uint64_t *qcode;      /* [cap_heads][cap_words]          query codes              */
    uint16_t *dist;       /* [cap_heads][cap_tokens]         distances, dense chunks  */
    uint32_t *hist;       /* [cap_heads][scan_chunks][cap_bins] per scan item          */
    uint32_t *hits;       /* [scan_chunks][cap_heads][ADAMAS_SCAN_CHUNK] per scan item */
    uint32_t *n_hits;     /* [scan_chunks][cap_heads]        their count              */
    uint16_t *limit;      /* [cap_threads][cap_heads]        histogram limits         */
    uint32_t *seen;       /* [cap_threads][cap_heads][cap_bins + 1] distances scanned  */
    atomic_uint *bound;   /* [cap_heads]                     lowest limit published   */
    atomic_uint *scanned; /* [cap_heads]                     scan chunks done per kv head */
    atomic_uint *attended; /* [cap_heads]                   query heads taken for 3-5 */
    uint32_t *set;        /* [cap_heads][cap_width]          attended tokens          */
    uint32_t *set_len;    /* [cap_heads]                     their count              */
    float *partial;       /* [cap_heads][attn_chunks][partial stride] m, s, o[d]      */
    /* per thread */
    uint32_t *cand;       /* [cap_threads][cap_tokens]       shortlist, chosen pages  */
    float *score;         /* [cap_threads][cap_tokens]       logits, page scores      */
    float *logits;        /* [cap_threads][cap_heads * ADAMAS_ATTN_CHUNK]             */
};

/* Check the arguments of adamas_decode (the same names) and describe its step in s;
 * nothing is written on failure. */
int adamas_prepare_step(const adamas_cache *c, const adamas_decode_params *p, const float *q,
                        const float *out, decode_step *s);

/* Make ws hold a step of this shape; ENOMEM leaves it as it was. */
int adamas_workspace_reserve(adamas_workspace *ws, const adamas_cache *c, const decode_step *s,
                             uint32_t threads);

/* Number of threads a step uses: adamas_set_num_threads, else OpenMP's default. */
uint32_t adamas_step_threads(void);

/* Phase 1: the planar code of query head h (transformed with the cache's thresholds,
 * or per-step thresholds once calibrated).  qh: [head_dim] scratch. */
void adamas_encode_query(const decode_step *s, const float *q, float *qh, uint64_t *qcode);

/* Phase 2 for scan chunk `chunk` of kv head kv_head: the code distances of the
 * candidates in it to each query head j of the kv head (code qcode + j*q_stride),
 * through kernels.h's grouped scan: head j's histogram of the chunk into hist +
 * j*hist_stride, and either (dense) its distances into dist + j*dist_stride (indexed
 * by candidate), n_hits[j] = ADAMAS_DENSE_CHUNK, or (sparse) its hits (positions
 * relative to the chunk's first candidate) into hits + j*hits_stride, n_hits[j] of
 * them: dense until seen holds enough keys for every head of the kv head (below).  A
 * head counts only the distances up to limit[j], and its histogram holds counts only
 * up to the limit it had on entry (the bins above are not cleared).  Once limit[j] is
 * below UINT16_MAX, seen + j*seen_stride is the histogram of head j's distances in the
 * chunks this thread has scanned in the step since the one that set it (that one
 * included), exact up to limit[j], and seen[j*seen_stride + nbins] the number of keys
 * it counts (seen_stride > nbins); the chunk adds to it, and lowers limit[j] to the
 * k_codes-th smallest distance counted there once it knows it.  No limit falls below
 * the k_codes-th smallest distance of all candidates, so every bin up to it (all that
 * select reads) is exact, and the hits hold every candidate that select may take.
 * limit[group]: UINT16_MAX at the start of a step, then carried from chunk to chunk
 * with seen[group][seen_stride] (which needs no clearing).  bound[group], when not
 * NULL (other threads scan chunks of the kv head in this step too; UINT16_MAX at the
 * start of the step): the lowest limits that the threads published; a head whose
 * thread has counted enough keys publishes its limit there, and one whose limit is
 * higher takes it, as if it had counted those keys (seen[nbins] then says so). */
void adamas_scan_chunk(const decode_step *s, const uint64_t *qcode, size_t q_stride,
                       uint32_t kv_head, uint32_t chunk, uint32_t *hist, size_t hist_stride,
                       uint16_t *dist, size_t dist_stride, uint32_t *hits, size_t hits_stride,
                       uint32_t *n_hits, uint16_t *limit, uint32_t *seen, size_t seen_stride,
                       atomic_uint *bound);

/* Chunks a thread of a step claims at a time from a loop over n_kv kv heads of
 * chunks_per_kv chunks each (the scan's, or the dense attention's), laid out kv head
 * by kv head: a whole kv head's, as long as each of `threads` threads still gets four
 * claims or more, else fewer, down to one.  A thread's first scan chunk of a kv head
 * stores and counts many distances before its limits come down, and a thread's next
 * chunk continues the stream of codes or rows where its prefetches reached; claims
 * of whole kv heads left threads idle on a busy 16-core machine (32/32 at 128K, 16
 * threads: FULL f16 20.4-25.7 ms against 18.8-20.0 with these claims and 20.8-21.7
 * with single chunks).  Side by side against single chunks, B = 128, f16: on 2
 * threads Adamas 32/8 at 32K 0.648 -> 0.560 ms, at 128K 2.02 -> 1.85 ms, 32/32 at 32K
 * 1.50 -> 1.43 ms, at 128K 5.41 -> 4.85 ms, FULL 32/8 at 32K 6.05 -> 5.93 ms; on 16
 * threads FULL 32/8 at 32K 1.88-1.89 -> 1.26-1.42 ms, at 128K 7.3-7.7 -> 5.3-6.7 ms,
 * the rest alike. */
static inline uint32_t adamas_claim_chunks(uint32_t n_kv, uint32_t chunks_per_kv,
                                           uint32_t threads)
{
    const uint64_t claim = (uint64_t)n_kv * chunks_per_kv / (4u * threads);
    return claim < 1 ? 1 : claim > chunks_per_kv ? chunks_per_kv : (uint32_t)claim;
}

/* How a step's `team` threads share the scan of n_kv kv heads of `chunks` chunks each
 * (decode.c, and the benchmark's scan row). */
typedef struct {
    uint32_t n_kv, chunks; /* the loop's kv heads, and chunks per kv head            */
    uint32_t claim; /* chunks a thread claims at a time (adamas_claim_chunks)          */
    bool shared;    /* threads share kv heads: claims go round the kv heads in turn,
                       and the threads publish their limits (bound)                 */
    uint32_t items; /* items of the scan loop, claim after claim                       */
} scan_plan;

/* Threads that share a kv head (claims of less than its chunks) take its claims at
 * different times, round the kv heads in turn, so that all but the first claims of a
 * kv head start from a limit that another thread published, instead of storing and
 * counting most distances while their own limits come down.  Side by side on 16
 * threads with the 8 kv heads of 32/8 (B = 128, three alternating rounds): scan
 * 0.165-0.184 -> 0.157-0.159 ms at 32K and 0.415-0.486 -> 0.401-0.440 ms at 128K,
 * Adamas 0.204-0.219 -> 0.196-0.212 and 0.528-0.558 -> 0.441-0.480 ms, rerank 4 3-8%
 * faster.  (Measured while phases 3-5 waited for the whole scan, no faster.) */
static inline scan_plan adamas_scan_plan(uint32_t n_kv, uint32_t chunks, uint32_t team)
{
    scan_plan p = {.n_kv = n_kv, .chunks = chunks,
                   .claim = adamas_claim_chunks(n_kv, chunks, team)};
    p.shared = team > 1 && p.claim < chunks;
    const uint32_t claims_per_kv = (chunks + p.claim - 1) / p.claim;
    p.items = p.shared ? n_kv * claims_per_kv * p.claim : n_kv * chunks;
    return p;
}

/* The kv head g and chunk of scan item `item` of plan p; false for an item past the
 * last chunk of its kv head, which scans nothing. */
static inline bool adamas_scan_item(const scan_plan *p, uint32_t item, uint32_t *g,
                                    uint32_t *chunk)
{
    if (!p->shared) {
        *g = item / p->chunks;
        *chunk = item % p->chunks;
        return true;
    }
    const uint32_t claim = item / p->claim;
    *g = claim % p->n_kv;
    *chunk = claim / p->n_kv * p->claim + item % p->claim;
    return *chunk < p->chunks;
}

/* Phase 3: the tokens query head h (reading kv head kv_head) attends to, ascending,
 * into set; returns their count.  For ADAMAS, scan is its scan of the candidates (the
 * chunks of adamas_scan_chunk).  cand, score: [n] scratch. */
uint32_t adamas_select_tokens(const decode_step *s, uint32_t kv_head, const float *q,
                              const adamas_scanned *scan, uint32_t *set, uint32_t *cand,
                              float *score);

/* Phase 4: partial attention of `heads` query heads q[heads][d] of one kv head over
 * `count` tokens: set[0..count) or, when set is NULL, first..first+count-1.
 * For head j, partial + j*stride receives {max logit, sum of exp(logit - max),
 * sum of exp(logit - max) * v[d]}.  logits: [heads][count] scratch. */
void adamas_attend_chunk(const adamas_cache *c, const adamas_kernels *kern, uint32_t kv_head,
                         const float *q, uint32_t heads, const uint32_t *set, uint32_t first,
                         uint32_t count, float *logits, float *partial, size_t stride);

/* Rows ahead of the one in use that row loops prefetch: gathers need it, and the
 * hardware prefetcher alone leaves even contiguous rows waiting on memory. */
#define PREFETCH_ROWS 8

/* Rows ahead that gathers (rows at scattered places: rerank's shortlists, the
 * attended sets) also ask into L2 only: an L1 prefetch holds a line fill buffer until
 * memory answers, and PREFETCH_ROWS rows of 256 bytes already take them all, while
 * the L2 keeps more in flight.  Side by side (B = 128, f16, 32K, caches flushed):
 * 32/8 on 1 thread Adamas 1.06-1.12 -> 1.03-1.05 ms, rerank 4 1.67-1.74 -> 1.63 ms;
 * on 2 threads 0.598 -> 0.556 ms and 0.924 -> 0.852 ms; 32/32 and 128K -3% to +1%.
 * Asking for a gathered row's first line only, for the L2's prefetchers to fetch
 * the rest, was slower (rerank 4, 32/8, 1 thread: 1.71 -> 1.82 ms). */
#define PREFETCH_L2_GATHERED_ROWS 32

/* Floats between consecutive partial results: d + 2 rounded up to a cache line, so
 * that threads writing neighbouring partials never share a line. */
static inline size_t adamas_partial_stride(size_t d)
{
    return (d + 2 + 15) / 16 * 16;
}

/* Phase 5: out[d] = softmax attention from n_chunks partials (adamas_partial_stride
 * apart), combined in order. */
void adamas_attend_combine(const float *partial, uint32_t n_chunks, size_t d, float *out);

#endif

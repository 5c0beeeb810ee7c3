/* decode.c - one decode step: for each query head, select tokens, then attend.
 *
 *   query -> Hadamard + encode -> scan codes (distances, histogram) -> select
 *         -> gather the selected K/V rows -> softmax attention -> out
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend.h"
#include "decode.h"
#include "error.h"
#include "validate.h"

adamas_decode_params adamas_decode_params_default(adamas_selector selector, uint32_t budget)
{
    adamas_decode_params p = {
        .selector = selector,
        .budget = budget,
        .sink = selector == ADAMAS_SELECT_STREAMING ? 4 : 0,
        .recent = 1,
        .page_size = 16,
        .rerank = 0,
    };
    return p;
}

int adamas_prepare_step(const adamas_cache *c, const adamas_decode_params *p, const float *q,
                        const float *out, decode_step *s)
{
    const char *fn = "adamas_decode";
    if (!c || !p || !q || !out)
        return adamas_fail(ADAMAS_EINVAL, "%s: %s is NULL", fn,
                           !c ? "c" : !p ? "p" : !q ? "q" : "out");
    if (c->len == 0)
        return adamas_fail(ADAMAS_EINVAL, "%s: the cache is empty", fn);
    if ((unsigned)p->selector > ADAMAS_SELECT_QUEST)
        return adamas_fail(ADAMAS_EINVAL, "%s: selector = %d is unknown", fn, (int)p->selector);
    size_t n_q = (size_t)c->cfg.n_heads * c->cfg.head_dim;
    size_t bad = adamas_first_bad_value(q, n_q);
    if (bad < n_q)
        return adamas_fail(ADAMAS_EINVAL, "%s: q[%zu][%zu] = %g %s", fn, bad / c->cfg.head_dim,
                           bad % c->cfg.head_dim, (double)q[bad], adamas_bad_value_reason(q[bad]));
    if (p->selector == ADAMAS_SELECT_QUEST && p->page_size != 0 &&
        p->page_size != c->cfg.page_size)
        return adamas_fail(ADAMAS_EINVAL,
                           "%s: page_size = %u differs from the cache's page_size = %u", fn,
                           p->page_size, c->cfg.page_size);

    const uint32_t n = c->len, budget = p->budget;
    if (p->selector != ADAMAS_SELECT_FULL && n > budget) {
        uint64_t forced = 0;
        const char *what = "";
        switch (p->selector) {
        case ADAMAS_SELECT_ADAMAS:
        case ADAMAS_SELECT_ORACLE:
            forced = (uint64_t)p->sink + p->recent;
            what = "sink + recent";
            break;
        case ADAMAS_SELECT_STREAMING:
            forced = p->sink;
            what = "sink";
            break;
        default: /* QUEST: the newest page is forced; B must hold one page */
            forced = (uint64_t)c->cfg.page_size - 1;
            what = "page_size - 1";
            break;
        }
        if (budget <= forced)
            return adamas_fail(ADAMAS_EINVAL,
                               "%s: budget = %u is not larger than the forced set (%s = %llu)", fn,
                               budget, what, (unsigned long long)forced);
    }
    const adamas_kernels *kern;
    int st = adamas_kernels_get(&kern);
    if (st)
        return st;

    s->cache = c;
    s->kern = kern;
    s->selector = p->selector;
    s->n = n;
    s->budget = budget;
    s->sink = p->sink;
    s->recent = p->recent;
    s->rerank = p->rerank;
    s->dense = p->selector == ADAMAS_SELECT_FULL || n <= budget;
    s->n_cand = s->dense ? 0 : n - p->sink - p->recent;
    s->k_free = s->dense ? 0 : budget - p->sink - p->recent;
    const uint64_t shortlist = (uint64_t)p->rerank * s->k_free;
    s->k_codes = p->rerank > 1 && shortlist > s->k_free
                     ? (shortlist < s->n_cand ? (uint32_t)shortlist : s->n_cand)
                     : s->k_free;
    s->nbins = 3 * c->cfg.head_dim + 1;
    s->list_hits = !kern->scan_lists_hits || kern->scan_lists_hits();
    return ADAMAS_OK;
}

static uint32_t ceil_div(uint32_t a, uint32_t b)
{
    return a / b + (a % b != 0);
}

static uint32_t thread_index(void)
{
#ifdef _OPENMP
    return (uint32_t)omp_get_thread_num();
#else
    return 0;
#endif
}

/* Keys per candidate to select that a thread counts for a head before it lists hits
 * instead of storing distances: by then about one key in SPARSE_AFTER is a hit.  Side
 * by side (B = 128, 32/32 and 32/8 at 32K and 128K, 1 and 2 threads, medians of two
 * runs of 3 and 4 interleaved rounds), 32 against 16: faster in 29 of the 32 rows,
 * most by 1-4% (32/32 at 32K, 1 thread: Adamas 2.73-2.76 -> 2.68-2.70 ms, rerank 4
 * 3.36 -> 3.25-3.29 ms), 0.5-2.5% slower in 3; 64 no better than 32.  Earlier, at
 * 16, rerank 4 on 32/32 at 32K on 2 threads took 1.80 ms against 1.87-1.93 when
 * sparse from the second chunk and 1.73-1.79 when always dense. */
#define SPARSE_AFTER 32u

/* The k-th smallest distance counted in hist (plus seen, when not NULL) when it is at
 * most limit (the bins up to limit are exact), else limit. */
static uint16_t tighter_limit(const uint32_t *seen, const uint32_t *hist, uint32_t nbins,
                              uint32_t k, uint16_t limit)
{
    uint32_t top = limit < nbins - 1 ? limit : nbins - 1, count = 0;
    for (uint32_t v = 0; v <= top; v++)
        count += hist[v] + (seen ? seen[v] : 0);
    if (count < k)
        return limit;
    for (;;) {
        const uint32_t at_top = hist[top] + (seen ? seen[top] : 0);
        if (count - at_top < k)
            return (uint16_t)top;
        count -= at_top;
        top--;
    }
}

/* A head's limit (and seen, its thread's histogram from its first limit on) takes a
 * lower one that another thread published in bound: it holds for all of the step's
 * keys, and came from a thread that had counted SPARSE_AFTER keys per candidate. */
static void take_bound(const decode_step *s, const atomic_uint *bound, uint16_t *limit,
                       uint32_t *seen)
{
    const uint32_t lower = atomic_load_explicit(bound, memory_order_relaxed);
    if (lower >= *limit)
        return;
    if (*limit == UINT16_MAX) {
        memset(seen, 0, ((size_t)lower + 1) * sizeof *seen);
        seen[s->nbins] = 0;
    }
    if (seen[s->nbins] < SPARSE_AFTER * s->k_codes)
        seen[s->nbins] = SPARSE_AFTER * s->k_codes;
    *limit = (uint16_t)lower;
}

/* bound = min(bound, limit). */
static void publish_bound(atomic_uint *bound, uint16_t limit)
{
    uint32_t now = atomic_load_explicit(bound, memory_order_relaxed);
    while (limit < now && !atomic_compare_exchange_weak_explicit(bound, &now, limit,
                                                                 memory_order_relaxed,
                                                                 memory_order_relaxed))
        ;
}

void adamas_scan_chunk(const decode_step *s, const uint64_t *qcode, size_t q_stride,
                       uint32_t kv_head, uint32_t chunk, uint32_t *hist, size_t hist_stride,
                       uint16_t *dist, size_t dist_stride, uint32_t *hits, size_t hits_stride,
                       uint32_t *n_hits, uint16_t *limit, uint32_t *seen, size_t seen_stride,
                       atomic_uint *bound)
{
    const adamas_cache *c = s->cache;
    const adamas_scan_group_fn scan = s->kern->scan_group[c->cfg.metric];
    const uint32_t group = c->group, first = chunk * ADAMAS_SCAN_CHUNK;
    const uint32_t end = first + ADAMAS_SCAN_CHUNK < s->n_cand ? first + ADAMAS_SCAN_CHUNK
                                                              : s->n_cand;
    if (bound)
        for (uint32_t j = 0; j < group; j++)
            take_bound(s, bound + j, limit + j, seen + j * seen_stride);
    /* Dense until this thread has counted SPARSE_AFTER keys per candidate to select
     * for each head of the kv head: before its limits come down, many keys would be
     * hits, and a hit costs scalar steps where a stored distance costs a share of a
     * vector store (sparse from each thread's first chunk: 32/8 at 32K on 16 threads
     * 30-50% slower, rerank 4 up to twice as slow); always, on tables whose hits
     * cost more than the stores they save. */
    bool dense = !s->list_hits;
    for (uint32_t j = 0; j < group; j++)
        dense |= limit[j] == UINT16_MAX ||
                 seen[j * seen_stride + s->nbins] < SPARSE_AFTER * s->k_codes;
    /* Only the bins up to a head's limit are counted, and select reads none above
     * the last limit: the rest need no clearing, and their lines stay out of the
     * caches (32/8 at 128K, 1 thread, side by side: scan 3.15 -> 3.04 ms). */
    for (uint32_t j = 0; j < group; j++) {
        const size_t bins = limit[j] < s->nbins ? (size_t)limit[j] + 1 : s->nbins;
        memset(hist + j * hist_stride, 0, bins * sizeof *hist);
        n_hits[j] = dense ? ADAMAS_DENSE_CHUNK : 0;
    }
    for (uint32_t block = first, b = 1; block < end; block += ADAMAS_SCAN_BLOCK, b++) {
        uint32_t len = end - block < ADAMAS_SCAN_BLOCK ? end - block : ADAMAS_SCAN_BLOCK;
        scan(qcode, q_stride, group, adamas_cache_codes(c, kv_head, s->sink + block),
             c->code_words, len, limit, hist, hist_stride, dense ? dist + block : NULL,
             dist_stride, block - first, hits, hits_stride, n_hits);
        /* Lower the limits after 1, 2, 4, 8, ... blocks and after the last: each
         * update sums the bins up to the limit, and the limit falls fastest early.
         * A head's seen counts from its first limit on: zero up to that limit. */
        if ((b & (b - 1)) == 0 || block + len == end)
            for (uint32_t j = 0; j < group; j++) {
                uint32_t *head_seen = seen + j * seen_stride;
                const bool counting = limit[j] != UINT16_MAX;
                const uint16_t lower = tighter_limit(counting ? head_seen : NULL,
                                                     hist + j * hist_stride, s->nbins,
                                                     s->k_codes, limit[j]);
                if (!counting && lower != UINT16_MAX) {
                    memset(head_seen, 0, ((size_t)lower + 1) * sizeof *head_seen);
                    head_seen[s->nbins] = 0;
                }
                limit[j] = lower;
            }
    }
    /* The chunk joins what the thread has seen: its next chunks start from a limit near
     * the k_codes-th smallest of all it has scanned, and list few hits. */
    for (uint32_t j = 0; j < group; j++)
        if (limit[j] != UINT16_MAX) {
            for (uint32_t v = 0; v <= limit[j]; v++)
                seen[j * seen_stride + v] += hist[j * hist_stride + v];
            seen[j * seen_stride + s->nbins] += end - first;
            if (bound && seen[j * seen_stride + s->nbins] >= SPARSE_AFTER * s->k_codes)
                publish_bound(bound + j, limit[j]);
        }
}

/* Phase 2 in a step: scan chunk `chunk` of kv head g into the workspace; limit, seen:
 * this thread's limits and histograms of every query head. */
static void scan_chunk(const decode_step *s, adamas_workspace *ws, uint32_t g, uint32_t chunk,
                       uint16_t *limit, uint32_t *seen, bool shared)
{
    const size_t h0 = (size_t)g * s->cache->group;
    const size_t at = (size_t)chunk * ws->cap_heads + h0, seen_stride = ws->cap_bins + 1;
    adamas_scan_chunk(s, ws->qcode + h0 * ws->cap_words, ws->cap_words, g, chunk,
                      ws->hist + (h0 * ws->scan_chunks + chunk) * ws->cap_bins,
                      (size_t)ws->scan_chunks * ws->cap_bins, ws->dist + h0 * ws->cap_tokens,
                      ws->cap_tokens, ws->hits + at * ADAMAS_SCAN_CHUNK, ADAMAS_SCAN_CHUNK,
                      ws->n_hits + at, limit + h0, seen + h0 * seen_stride, seen_stride,
                      shared ? ws->bound + h0 : NULL);
}

/* Phase 3: the attended set of query head h. */
static void select_head(const decode_step *s, adamas_workspace *ws, const float *q, uint32_t h)
{
    const adamas_cache *c = s->cache;
    const uint32_t t = thread_index();
    const adamas_scanned scan = {
        .n = s->n_cand,
        .chunks = ceil_div(s->n_cand, ADAMAS_SCAN_CHUNK),
        .chunk_len = ADAMAS_SCAN_CHUNK,
        .nbins = s->nbins,
        .hist = ws->hist + (size_t)h * ws->scan_chunks * ws->cap_bins,
        .hist_stride = ws->cap_bins,
        .dist = ws->dist + (size_t)h * ws->cap_tokens,
        .hits = ws->hits + (size_t)h * ADAMAS_SCAN_CHUNK,
        .hits_stride = (size_t)ws->cap_heads * ADAMAS_SCAN_CHUNK,
        .n_hits = ws->n_hits + h,
        .n_hits_stride = ws->cap_heads,
        .emit = s->kern->emit,
    };
    ws->set_len[h] = adamas_select_tokens(s, h / c->group, q + (size_t)h * c->cfg.head_dim, &scan,
                                          ws->set + (size_t)h * ws->cap_width,
                                          ws->cand + (size_t)t * ws->cap_tokens,
                                          ws->score + (size_t)t * ws->cap_tokens);
}

/* Row h of `selected`: the attended tokens ascending, then UINT32_MAX. */
static void write_selected_row(uint32_t *row, uint32_t budget, const uint32_t *set, uint32_t m)
{
    for (uint32_t i = 0; i < m; i++)
        row[i] = set ? set[i] : i;
    for (uint32_t i = m; i < budget; i++)
        row[i] = UINT32_MAX;
}

/* Phase 4 for a dense step: partial sums of every query head of kv head g over
 * attention chunk k; each K/V row is read once for the whole group. */
static void attend_dense_chunk(const decode_step *s, adamas_workspace *ws, const float *q,
                               uint32_t g, uint32_t k)
{
    const adamas_cache *c = s->cache;
    const size_t d = c->cfg.head_dim, pstride = adamas_partial_stride(d), h0 = (size_t)g * c->group;
    const uint32_t first = k * ADAMAS_ATTN_CHUNK;
    const uint32_t count = s->n - first < ADAMAS_ATTN_CHUNK ? s->n - first : ADAMAS_ATTN_CHUNK;
    adamas_attend_chunk(c, s->kern, g, q + h0 * d, c->group, NULL, first, count,
                        ws->logits + (size_t)thread_index() * ws->cap_heads * ADAMAS_ATTN_CHUNK,
                        ws->partial + (h0 * ws->attn_chunks + k) * pstride,
                        ws->attn_chunks * pstride);
}

/* Phases 3-5 for one query head of a sparse step: select, attend chunk by chunk,
 * combine into out (and its row of `selected`, when not NULL). */
static void attend_sparse_head(const decode_step *s, adamas_workspace *ws, const float *q,
                               uint32_t h, float *out, uint32_t *selected)
{
    const adamas_cache *c = s->cache;
    const size_t d = c->cfg.head_dim, pstride = adamas_partial_stride(d);
    select_head(s, ws, q, h);
    const uint32_t m = ws->set_len[h];
    const uint32_t *set = ws->set + (size_t)h * ws->cap_width;
    float *partial = ws->partial + (size_t)h * ws->attn_chunks * pstride;
    float *logits = ws->logits + (size_t)thread_index() * ws->cap_heads * ADAMAS_ATTN_CHUNK;
    for (uint32_t first = 0, k = 0; first < m; first += ADAMAS_ATTN_CHUNK, k++) {
        uint32_t count = m - first < ADAMAS_ATTN_CHUNK ? m - first : ADAMAS_ATTN_CHUNK;
        adamas_attend_chunk(c, s->kern, h / c->group, q + h * d, 1, set + first, 0, count, logits,
                            partial + k * pstride, pstride);
    }
    adamas_attend_combine(partial, ceil_div(m, ADAMAS_ATTN_CHUNK), d, out + h * d);
    if (selected)
        write_selected_row(selected + (size_t)h * s->budget, s->budget, set, m);
}

/* Count one more scanned chunk of kv head g: true for the call that completes its
 * `chunks`, which then sees every other chunk's distances and histograms. */
static bool completes_kv_head(adamas_workspace *ws, uint32_t g, uint32_t chunks)
{
    return atomic_fetch_add_explicit(&ws->scanned[g], 1, memory_order_acq_rel) + 1 == chunks;
}

/* One more turn of a wait on another thread's scan: a pause, and after about a
 * millisecond of them (a chunk scans in tens of microseconds) the core given away:
 * with more threads than cores, the thread waited on may be waiting for it. */
static inline void spin_wait(uint32_t turn)
{
    if (turn >= (1u << 14)) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Phases 3-5 for the query heads of kv head g (scanned) that no thread has taken yet,
 * one at a time, so that threads with nothing left to scan can share the last ones. */
static void attend_kv_head(const decode_step *s, adamas_workspace *ws, const float *q,
                           uint32_t g, float *out, uint32_t *selected)
{
    const uint32_t group = s->cache->group;
    for (uint32_t j; (j = atomic_fetch_add_explicit(&ws->attended[g], 1,
                                                    memory_order_relaxed)) < group;)
        attend_sparse_head(s, ws, q, g * group + j, out, selected);
}

/* A thread out of chunks to scan: phases 3-5 of the query heads not yet taken, kv
 * head by kv head, each once its last chunk is scanned (those chunks are being scanned
 * by other threads: the loop handed every item out).  Without it the last kv head's
 * query heads fell to the one thread that scanned its last chunk while the others
 * waited: side by side on 2 threads (32/8, 128K, B = 128, medians of eight rounds)
 * plain Adamas 2.27 -> 2.21 ms, rerank 4 2.68 -> 2.61 ms. */
static void help_attend(const decode_step *s, adamas_workspace *ws, const float *q,
                        uint32_t chunks, float *out, uint32_t *selected)
{
    const adamas_cache *c = s->cache;
    for (uint32_t g = 0; g < c->cfg.n_kv_heads; g++) {
        if (atomic_load_explicit(&ws->attended[g], memory_order_relaxed) >= c->group)
            continue;
        for (uint32_t turn = 0;
             atomic_load_explicit(&ws->scanned[g], memory_order_acquire) < chunks; turn++)
            spin_wait(turn);
        attend_kv_head(s, ws, q, g, out, selected);
    }
}

/* Bytes a step reads from the cache. */
static size_t step_bytes(const decode_step *s)
{
    const adamas_cache *c = s->cache;
    const size_t row = (size_t)c->cfg.head_dim * c->elem_size;
    if (s->dense)
        return (size_t)s->n * c->cfg.n_kv_heads * 2 * row;
    size_t bytes = (size_t)s->budget * c->cfg.n_heads * 2 * row;
    if (s->selector == ADAMAS_SELECT_ADAMAS)
        bytes += (size_t)s->n_cand * c->cfg.n_kv_heads * c->code_words * sizeof(uint64_t);
    if (s->selector == ADAMAS_SELECT_ORACLE)
        bytes += (size_t)s->n_cand * c->cfg.n_heads * row;
    return bytes;
}

/* Below this many bytes read, starting threads costs more than it saves. */
#define PARALLEL_MIN_BYTES (256u << 10)

/* The phases of decode.h.  Few barriers: on a busy machine every barrier can wait for
 * a descheduled thread. */
static void run_step(const decode_step *s, adamas_workspace *ws, const float *q, float *out,
                     uint32_t *selected, uint32_t threads)
{
    const adamas_cache *c = s->cache;
    const uint32_t n_heads = c->cfg.n_heads, n_kv = c->cfg.n_kv_heads;
    const size_t d = c->cfg.head_dim, pstride = adamas_partial_stride(d);
    const bool scan = s->selector == ADAMAS_SELECT_ADAMAS && !s->dense;
    const uint32_t scan_chunks = scan ? ceil_div(s->n_cand, ADAMAS_SCAN_CHUNK) : 0;
    const uint32_t dense_chunks = s->dense ? ceil_div(s->n, ADAMAS_ATTN_CHUNK) : 0;

    if (scan) /* a few hundred ns per head: not worth a parallel loop and its barrier */
        for (uint32_t h = 0; h < n_heads; h++) {
            float qh[ADAMAS_MAX_HEAD_DIM];
            adamas_encode_query(s, q + h * d, qh, ws->qcode + (size_t)h * ws->cap_words);
        }
    const bool parallel = threads > 1 && step_bytes(s) >= PARALLEL_MIN_BYTES;
    const uint32_t team = parallel ? threads : 1;
    const scan_plan plan = adamas_scan_plan(n_kv, scan_chunks, team);
    if (scan)
        for (uint32_t g = 0; g < n_kv; g++) {
            atomic_init(&ws->scanned[g], 0);
            atomic_init(&ws->attended[g], 0);
        }
    if (scan && plan.shared)
        for (uint32_t h = 0; h < n_heads; h++)
            atomic_init(&ws->bound[h], UINT16_MAX);

#pragma omp parallel num_threads(threads) if (parallel)
    {
        if (s->dense) {
#pragma omp for schedule(dynamic, adamas_claim_chunks(n_kv, dense_chunks, team))
            for (uint32_t item = 0; item < n_kv * dense_chunks; item++)
                attend_dense_chunk(s, ws, q, item / dense_chunks, item % dense_chunks);
#pragma omp for schedule(static)
            for (uint32_t h = 0; h < n_heads; h++) {
                ws->set_len[h] = s->n;
                adamas_attend_combine(ws->partial + (size_t)h * ws->attn_chunks * pstride,
                                      dense_chunks, d, out + h * d);
                if (selected && s->selector != ADAMAS_SELECT_FULL)
                    write_selected_row(selected + (size_t)h * s->budget, s->budget, NULL, s->n);
            }
        } else if (scan) {
            /* A limit holds for every chunk of its head in this step, whichever thread
             * lowered it: each thread carries its own. */
            uint16_t *limit = ws->limit + (size_t)thread_index() * ws->cap_heads;
            uint32_t *seen = ws->seen + (size_t)thread_index() * ws->cap_heads * (ws->cap_bins + 1);
            for (uint32_t h = 0; h < n_heads; h++)
                limit[h] = UINT16_MAX;
            /* Phases 3-5 of a kv head's query heads follow its scan, with no barrier:
             * the thread that scans its last chunk goes on to them while their hits are
             * still in its caches, and threads out of chunks take the others
             * (help_attend).  Chunks are claimed several at a time (decode.h's
             * adamas_claim_chunks).  Side by side against a loop over the query heads
             * after a barrier: on 2 threads (32/8, 32K) 7% faster; on 16 threads with
             * the 8 kv heads of 32/8 (B = 128, three alternating rounds), Adamas
             * 0.109-0.116 -> 0.092-0.097 ms at 4K, 0.198-0.244 -> 0.198-0.217 ms at
             * 32K, 0.540-0.600 -> 0.527-0.573 ms at 128K, rerank 4 2-8% faster (before
             * help_attend and the claims of decode.h, 12-20% slower there). */
#pragma omp for schedule(dynamic, plan.claim) nowait
            for (uint32_t item = 0; item < plan.items; item++) {
                uint32_t g, chunk;
                if (!adamas_scan_item(&plan, item, &g, &chunk))
                    continue;
                scan_chunk(s, ws, g, chunk, limit, seen, plan.shared);
                if (completes_kv_head(ws, g, scan_chunks))
                    attend_kv_head(s, ws, q, g, out, selected);
            }
            help_attend(s, ws, q, scan_chunks, out, selected);
        } else {
#pragma omp for schedule(dynamic)
            for (uint32_t h = 0; h < n_heads; h++)
                attend_sparse_head(s, ws, q, h, out, selected);
        }
    }
}

int adamas_decode_ws(const adamas_cache *c, const adamas_decode_params *p, const float *q,
                     float *out, uint32_t *selected, adamas_workspace *ws)
{
    decode_step s;
    int st = adamas_prepare_step(c, p, q, out, &s);
    if (st)
        return st;
    if (c->gpu) {
        adamas_gpu_step gs = {s.selector, s.n, s.budget, s.sink, s.recent, s.rerank,
                              c->query_tau};
        st = c->gpu_module->decode(c->gpu, &gs, q, out, selected);
        return st ? adamas_gpu_fail(st, "adamas_decode") : ADAMAS_OK;
    }

    /* Borrow the cache's workspace unless another thread holds it. */
    adamas_workspace *own = NULL;
    int borrowed = 0;
    if (!ws) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&c->scratch->busy, &expected, 1)) {
            ws = c->scratch->ws;
            borrowed = 1;
        } else if ((st = adamas_workspace_create(&own))) {
            return st;
        } else {
            ws = own;
        }
    }
    const uint32_t threads = adamas_step_threads();
    st = adamas_workspace_reserve(ws, c, &s, threads);
    if (!st)
        run_step(&s, ws, q, out, selected, threads);
    if (borrowed)
        atomic_store(&c->scratch->busy, 0);
    adamas_workspace_destroy(own);
    return st;
}

int adamas_decode(const adamas_cache *c, const adamas_decode_params *p, const float *q,
                  float *out, uint32_t *selected)
{
    return adamas_decode_ws(c, p, q, out, selected, NULL);
}

int adamas_cache_distances(const adamas_cache *c, const float *q, uint32_t head, uint16_t *dist)
{
    const char *fn = "adamas_cache_distances";
    if (!c || !q || !dist)
        return adamas_fail(ADAMAS_EINVAL, "%s: %s is NULL", fn, !c ? "c" : !q ? "q" : "dist");
    if (head >= c->cfg.n_heads)
        return adamas_fail(ADAMAS_EINVAL, "%s: head %u >= n_heads = %u", fn, head,
                           c->cfg.n_heads);
    if (c->len == 0)
        return adamas_fail(ADAMAS_EINVAL, "%s: the cache is empty", fn);
    size_t bad = adamas_first_bad_value(q, c->cfg.head_dim);
    if (bad < c->cfg.head_dim)
        return adamas_fail(ADAMAS_EINVAL, "%s: q[%zu] = %g %s", fn, bad, (double)q[bad],
                           adamas_bad_value_reason(q[bad]));
    decode_step s = {.cache = c, .selector = ADAMAS_SELECT_ADAMAS, .n = c->len};
    int st = adamas_kernels_get(&s.kern);
    if (st)
        return st;
    if (c->gpu) {
        adamas_gpu_step gs = {ADAMAS_SELECT_ADAMAS, c->len, c->len, 0, 0, 0, c->query_tau};
        st = c->gpu_module->distances(c->gpu, &gs, head, q, dist);
        return st ? adamas_gpu_fail(st, fn) : ADAMAS_OK;
    }
    float qh[ADAMAS_MAX_HEAD_DIM];
    uint64_t qcode[2 * ADAMAS_MAX_HEAD_DIM / 64];
    adamas_encode_query(&s, q, qh, qcode);
    s.kern->scan[c->cfg.metric](qcode, adamas_cache_codes(c, head / c->group, 0), c->code_words,
                                c->len, dist, NULL);
    return ADAMAS_OK;
}

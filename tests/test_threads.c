/* test_threads.c - the same bits for every thread count, workspaces, and several
 * threads decoding from one cache at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache_pair.h"
#include "decode.h"
#include "testutil.h"

#ifdef _OPENMP
static const int built_with_openmp = 1;
#else
static const int built_with_openmp = 0;
#endif

static const char *selector_name[] = {"adamas", "full", "oracle", "streaming", "quest"};
static const char *dtype_name[] = {"f32", "f16", "bf16"};

/* Long enough for several scan chunks (4096 tokens) and attention chunks (1024). */
static void make_long_cache(cache_pair *p, uint32_t n_heads, uint32_t n_kv, uint32_t d)
{
    uint32_t n = 9000 + rng_below(4000);
    adamas_cache_config cfg = random_config(n_heads, n_kv, d, n + 16, ADAMAS_F16);
    pair_create(p, &cfg);
    pair_append_random(p, n, 1.5f, 1.0f);
}

static adamas_decode_params params_for(adamas_selector sel, uint32_t rerank)
{
    adamas_decode_params prm = adamas_decode_params_default(sel, 64 + rng_below(200));
    prm.rerank = rerank;
    if (sel == ADAMAS_SELECT_ADAMAS || sel == ADAMAS_SELECT_ORACLE)
        prm.sink = rng_below(5);
    return prm;
}

/* out and selected of one decode at a given thread count. */
static void decode_with_threads(const cache_pair *p, const adamas_decode_params *prm,
                                const float *q, int threads, float *out, uint32_t *sel)
{
    expect(adamas_set_num_threads(threads) == ADAMAS_OK, "set_num_threads(%d)", threads);
    expect(adamas_get_num_threads() == (built_with_openmp ? threads : 1),
           "get_num_threads() = %d after setting %d", adamas_get_num_threads(), threads);
    int st = adamas_decode(p->lib, prm, q, out, sel);
    expect(st == ADAMAS_OK, "decode with %d threads: %s", threads, adamas_last_error());
}

/* Two shapes: few kv heads (threads share a kv head's chunks, and those out of chunks
 * to scan help with its query heads' phases after the scan), and at least two kv heads
 * per thread up to 4 threads (each kv head's query heads follow its scan, and threads
 * out of chunks share the last kv heads'). */
Test(threads, every_thread_count_gives_the_same_bits, .timeout = 120)
{
    rng_seed_from_env();
    static const uint32_t shapes[][2] = {{8, 2}, {16, 8}};
    for (size_t shape = 0; shape < 2; shape++) {
        const uint32_t n_heads = shapes[shape][0], d = 64;
        cache_pair p;
        make_long_cache(&p, n_heads, shapes[shape][1], d);
        const size_t out_n = (size_t)n_heads * d;
        float *q = random_query(&p, 1.0f);
        float *out1 = malloc(out_n * sizeof *out1), *outk = malloc(out_n * sizeof *outk);
        for (int sel = 0; sel <= ADAMAS_SELECT_QUEST; sel++)
            for (uint32_t rerank = 0; rerank <= (sel == ADAMAS_SELECT_ADAMAS ? 4u : 0u);
                 rerank += 4) {
                adamas_decode_params prm = params_for((adamas_selector)sel, rerank);
                size_t sel_n = (size_t)n_heads * prm.budget;
                uint32_t *sel1 = malloc(sel_n * sizeof *sel1), *selk = malloc(sel_n * sizeof *selk);
                poison(sel1, sel_n * sizeof *sel1);
                decode_with_threads(&p, &prm, q, 1, out1, sel1);
                for (int threads = 2; threads <= 5; threads++) {
                    poison(outk, out_n * sizeof *outk);
                    poison(selk, sel_n * sizeof *selk);
                    decode_with_threads(&p, &prm, q, threads, outk, selk);
                    expect(memcmp(out1, outk, out_n * sizeof *out1) == 0,
                           "%u/%u heads, %s rerank %u: output with %d threads differs from 1 "
                           "thread",
                           n_heads, shapes[shape][1], selector_name[sel], rerank, threads);
                    expect(memcmp(sel1, selk, sel_n * sizeof *sel1) == 0,
                           "%u/%u heads, %s rerank %u: selection with %d threads differs from "
                           "1 thread",
                           n_heads, shapes[shape][1], selector_name[sel], rerank, threads);
                }
                /* and the chunked result is right, not only repeatable */
                adamas_set_num_threads(3);
                pair_check_decode(&p, &prm, q);
                free(sel1);
                free(selk);
            }
        free(q);
        free(out1);
        free(outk);
        pair_destroy(&p);
    }
}

Test(threads, a_caller_workspace_serves_growing_caches_and_other_shapes, .timeout = 120)
{
    rng_seed_from_env();
    adamas_workspace *ws;
    expect(adamas_workspace_create(&ws) == ADAMAS_OK, "workspace_create");
    expect(adamas_workspace_create(NULL) == ADAMAS_EINVAL, "workspace_create(NULL)");
    static const uint32_t shapes[][3] = {{4, 4, 32}, {8, 2, 128}, {2, 1, 16}, {16, 4, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        adamas_set_num_threads(1 + (int)rng_below(4));
        cache_pair p;
        adamas_cache_config cfg =
            random_config(shapes[s][0], shapes[s][1], shapes[s][2], 6000, ADAMAS_F32);
        pair_create(&p, &cfg);
        size_t out_n = (size_t)shapes[s][0] * shapes[s][2];
        float *out_ws = malloc(out_n * sizeof(float)), *out = malloc(out_n * sizeof(float));
        for (int step = 0; step < 4; step++) {
            pair_append_random(&p, 500 + rng_below(1000), 1.0f, 1.0f);
            float *q = random_query(&p, 1.0f);
            for (int sel = 0; sel <= ADAMAS_SELECT_QUEST; sel++) {
                adamas_decode_params prm = params_for((adamas_selector)sel, rng_below(2) * 3);
                size_t sel_n = (size_t)shapes[s][0] * prm.budget;
                uint32_t *a = malloc(sel_n * 4), *b = malloc(sel_n * 4);
                poison(a, sel_n * 4);
                poison(b, sel_n * 4);
                int st = adamas_decode_ws(p.lib, &prm, q, out_ws, a, ws);
                expect(st == ADAMAS_OK, "decode_ws: %s", adamas_last_error());
                expect(adamas_decode(p.lib, &prm, q, out, b) == ADAMAS_OK, "decode");
                expect(memcmp(out, out_ws, out_n * sizeof(float)) == 0,
                       "shape %zu step %d %s: workspace output differs", s, step,
                       selector_name[sel]);
                expect(memcmp(a, b, sel_n * 4) == 0, "shape %zu step %d %s: selection differs",
                       s, step, selector_name[sel]);
                free(a);
                free(b);
            }
            free(q);
        }
        free(out);
        free(out_ws);
        pair_destroy(&p);
    }
    adamas_workspace_destroy(ws);
    adamas_workspace_destroy(NULL);
}

typedef struct {
    const cache_pair *pair;
    const adamas_decode_params *prm;
    const float *q;
    float *out;
    uint32_t *selected;
    int own_workspace;
    int status;
} decoder_job;

static void *decode_repeatedly(void *arg)
{
    decoder_job *job = arg;
    adamas_workspace *ws = NULL;
    if (job->own_workspace)
        adamas_workspace_create(&ws);
    job->status = ADAMAS_OK;
    for (int i = 0; i < 20 && job->status == ADAMAS_OK; i++)
        job->status =
            adamas_decode_ws(job->pair->lib, job->prm, job->q, job->out, job->selected, ws);
    adamas_workspace_destroy(ws);
    return NULL;
}

Test(threads, several_threads_decode_one_cache_at_once, .timeout = 120)
{
    rng_seed_from_env();
    cache_pair p;
    adamas_cache_config cfg = random_config(8, 4, 64, 5000, ADAMAS_F16);
    pair_create(&p, &cfg);
    pair_append_random(&p, 4500, 1.0f, 1.0f);
    float *q = random_query(&p, 1.0f);
    adamas_set_num_threads(2);
    enum { N_JOBS = 6 };
    for (int sel = 0; sel <= ADAMAS_SELECT_QUEST; sel++) {
        adamas_decode_params prm = params_for((adamas_selector)sel, 0);
        const size_t out_n = 8 * 64, sel_n = (size_t)8 * prm.budget;
        float *want = malloc(out_n * sizeof *want);
        uint32_t *want_sel = malloc(sel_n * sizeof *want_sel);
        poison(want_sel, sel_n * sizeof *want_sel);
        expect(adamas_decode(p.lib, &prm, q, want, want_sel) == ADAMAS_OK, "decode");

        decoder_job jobs[N_JOBS];
        pthread_t tid[N_JOBS];
        for (int j = 0; j < N_JOBS; j++) {
            jobs[j] = (decoder_job){&p, &prm, q, malloc(out_n * sizeof(float)),
                                    malloc(sel_n * sizeof(uint32_t)), j % 2, -100};
            poison(jobs[j].selected, sel_n * sizeof(uint32_t));
            pthread_create(&tid[j], NULL, decode_repeatedly, &jobs[j]);
        }
        for (int j = 0; j < N_JOBS; j++) {
            pthread_join(tid[j], NULL);
            expect(jobs[j].status == ADAMAS_OK, "%s job %d: %s", selector_name[sel], j,
                   adamas_strerror(jobs[j].status));
            expect(memcmp(jobs[j].out, want, out_n * sizeof(float)) == 0,
                   "%s job %d: concurrent output differs", selector_name[sel], j);
            expect(memcmp(jobs[j].selected, want_sel, sel_n * sizeof(uint32_t)) == 0,
                   "%s job %d: concurrent selection differs", selector_name[sel], j);
            free(jobs[j].out);
            free(jobs[j].selected);
        }
        free(want);
        free(want_sel);
    }
    free(q);
    pair_destroy(&p);
}

Test(threads, a_negative_thread_count_is_rejected_and_changes_nothing)
{
    rng_seed_from_env();
    int n = 1 + (int)rng_below(8);
    expect(adamas_set_num_threads(n) == ADAMAS_OK, "set %d", n);
    expect(adamas_set_num_threads(-1 - (int)rng_below(100)) == ADAMAS_EINVAL, "negative count");
    expect(strstr(adamas_last_error(), "adamas_set_num_threads") != NULL, "message: %s",
           adamas_last_error());
    expect(adamas_get_num_threads() == (built_with_openmp ? n : 1), "count changed to %d",
           adamas_get_num_threads());
    expect(adamas_set_num_threads(0) == ADAMAS_OK, "0 restores the default");
    expect(adamas_get_num_threads() >= 1, "default %d", adamas_get_num_threads());
}

/* A cache filled with the given tokens in chunks of random size; the keys and values
 * are first copied `shift` floats past a fresh allocation, so that the two caches of
 * the test below see their inputs at different alignments. */
static adamas_cache *cache_from(const adamas_cache_config *cfg, const float *k, const float *v,
                                uint32_t n, size_t shift)
{
    size_t row = (size_t)cfg->n_kv_heads * cfg->head_dim;
    float *k_copy = malloc((n * row + shift) * sizeof(float));
    float *v_copy = malloc((n * row + shift) * sizeof(float));
    memcpy(k_copy + shift, k, n * row * sizeof(float));
    memcpy(v_copy + shift, v, n * row * sizeof(float));
    adamas_cache *c;
    expect(adamas_cache_create(cfg, &c) == ADAMAS_OK, "create: %s", adamas_last_error());
    for (uint32_t done = 0; done < n;) {
        uint32_t chunk = 1 + rng_below(n - done < 3000 ? n - done : 3000);
        expect(adamas_cache_append(c, k_copy + shift + done * row, v_copy + shift + done * row,
                                   chunk) == ADAMAS_OK,
               "append: %s", adamas_last_error());
        done += chunk;
    }
    free(k_copy);
    free(v_copy);
    return c;
}

/* What changes from one run of a program to the next (where the allocator puts the
 * buffers, how the tokens arrive, how many threads run) must not change the bits:
 * two caches built from the same tokens decode alike, every selector, plain,
 * calibrated and reranked, f32, f16 and bf16. */
Test(threads, caches_built_alike_at_other_addresses_decode_alike, .timeout = 120)
{
    rng_seed_from_env();
    for (adamas_dtype dtype = ADAMAS_F32; dtype <= ADAMAS_BF16; dtype++) {
        const uint32_t n_heads = 8, n_kv = 2, d = 64, n = 7000 + rng_below(3000);
        adamas_cache_config cfg = random_config(n_heads, n_kv, d, n, dtype);
        size_t row = (size_t)n_kv * d, out_n = (size_t)n_heads * d;
        float *k = malloc(n * row * sizeof(float)), *v = malloc(n * row * sizeof(float));
        rng_fill_normal(k, n * row, 1.5f);
        rng_fill_normal(v, n * row, 1.0f);
        float *q = malloc(out_n * sizeof(float));
        rng_fill_normal(q, out_n, 1.0f);
        adamas_cache *a = cache_from(&cfg, k, v, n, 0);
        adamas_cache *b = cache_from(&cfg, k, v, n, 1 + rng_below(15));
        for (int calibrated = 0; calibrated <= 1; calibrated++) {
            if (calibrated) {
                expect(adamas_cache_calibrate(a, 1.0f) == ADAMAS_OK, "calibrate a");
                expect(adamas_cache_calibrate(b, 1.0f) == ADAMAS_OK, "calibrate b");
            }
            for (int sel = 0; sel <= ADAMAS_SELECT_QUEST; sel++)
                for (uint32_t rerank = 0; rerank <= (sel == 0 ? 4u : 0u); rerank += 4) {
                    adamas_decode_params prm = params_for((adamas_selector)sel, rerank);
                    size_t sel_n = (size_t)n_heads * prm.budget;
                    float *out_a = malloc(out_n * sizeof(float));
                    float *out_b = malloc(out_n * sizeof(float));
                    uint32_t *sel_a = malloc(sel_n * 4), *sel_b = malloc(sel_n * 4);
                    poison(out_b, out_n * sizeof(float));
                    poison(sel_a, sel_n * 4);
                    poison(sel_b, sel_n * 4);
                    adamas_set_num_threads(1);
                    expect(adamas_decode(a, &prm, q, out_a, sel_a) == ADAMAS_OK, "decode a");
                    adamas_set_num_threads(2 + (int)rng_below(4));
                    expect(adamas_decode(b, &prm, q, out_b, sel_b) == ADAMAS_OK, "decode b");
                    expect(memcmp(out_a, out_b, out_n * sizeof(float)) == 0,
                           "%s %s rerank %u calibrated %d: outputs differ",
                           dtype_name[dtype], selector_name[sel], rerank,
                           calibrated);
                    expect(memcmp(sel_a, sel_b, sel_n * 4) == 0,
                           "%s %s rerank %u calibrated %d: selections differ",
                           dtype_name[dtype], selector_name[sel], rerank,
                           calibrated);
                    free(out_a);
                    free(out_b);
                    free(sel_a);
                    free(sel_b);
                }
        }
        adamas_cache_destroy(a);
        adamas_cache_destroy(b);
        free(k);
        free(v);
        free(q);
    }
}

/* The scan's work items (decode.h's adamas_scan_plan): every chunk of every kv head
 * exactly once; kv head by kv head, or, where threads share kv heads, each claim's
 * chunks consecutive in one kv head and consecutive claims on different kv heads (so
 * that a kv head's later claims start after its first ones). */
Test(threads, the_scan_plan_hands_out_every_chunk_once, .timeout = 120)
{
    rng_seed_from_env();
    for (int trial = 0; trial < 400; trial++) {
        const uint32_t n_kv = 1 + rng_below(trial % 4 == 0 ? 40 : 9);
        const uint32_t chunks = 1 + rng_below(trial % 3 == 0 ? 70 : 10);
        const uint32_t team = 1 + rng_below(20);
        const scan_plan plan = adamas_scan_plan(n_kv, chunks, team);
        expect(plan.claim >= 1 && plan.claim <= chunks,
               "%u kv heads x %u chunks, %u threads: claim %u", n_kv, chunks, team, plan.claim);
        expect(!plan.shared || team > 1, "%u kv heads x %u chunks: shared on one thread", n_kv,
               chunks);
        uint8_t *seen = calloc((size_t)n_kv * chunks, 1);
        uint32_t prev_g = UINT32_MAX, prev_chunk = 0, scanned = 0;
        for (uint32_t item = 0; item < plan.items; item++) {
            uint32_t g, chunk;
            const bool real = adamas_scan_item(&plan, item, &g, &chunk);
            if (!real)
                continue;
            expect(g < n_kv && chunk < chunks, "%u kv heads x %u chunks, %u threads: item %u "
                   "gives kv head %u chunk %u", n_kv, chunks, team, item, g, chunk);
            expect(!seen[(size_t)g * chunks + chunk], "%u kv heads x %u chunks, %u threads: "
                   "kv head %u chunk %u handed out twice", n_kv, chunks, team, g, chunk);
            seen[(size_t)g * chunks + chunk] = 1;
            scanned++;
            if (!plan.shared)
                expect(item == (size_t)g * chunks + chunk, "%u kv heads x %u chunks, %u threads: "
                       "item %u out of kv head order", n_kv, chunks, team, item);
            else if (item % plan.claim != 0)
                expect(g == prev_g && chunk == prev_chunk + 1, "%u kv heads x %u chunks, %u "
                       "threads: item %u is not the next chunk of its claim", n_kv, chunks, team,
                       item);
            else if (item > 0 && n_kv > 1)
                expect(g != prev_g, "%u kv heads x %u chunks, %u threads: claims at item %u "
                       "stay on kv head %u", n_kv, chunks, team, item, g);
            prev_g = g;
            prev_chunk = chunk;
        }
        expect(scanned == n_kv * chunks, "%u kv heads x %u chunks, %u threads: %u of %u chunks "
               "handed out", n_kv, chunks, team, scanned, n_kv * chunks);
        free(seen);
    }
}

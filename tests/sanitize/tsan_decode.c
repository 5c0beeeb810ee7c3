/* tsan_decode.c - several threads decode from one cache at once, for ThreadSanitizer.
 *
 * Built by tests/sanitize/tsan.sh with -fsanitize=thread (and OpenMP through LLVM's
 * libomp with its Archer tool, so that the parallel loops inside a step are checked
 * too).  The threads first race for the library's first use (the kernel choice), each
 * creating a cache of its own; then, while the main thread waits, they decode from one
 * shared cache with every selector, half through the cache's own workspace and half
 * through workspaces of their own, and compare every result with the main thread's.
 * Exit status 0 when every result matches; TSan reports races on its own. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"

#define N_THREADS 4
/* Two kv heads per OpenMP thread: a step's query heads follow their kv head's scan,
 * in the loop whose hand-offs between threads are the library's own atomics. */
#define HEADS 8
#define KV_HEADS 4
#define DIM 64
#define TOKENS 5000
#define ROUNDS 3

static adamas_cache *shared;
static float query[HEADS * DIM];
static float want_out[ADAMAS_SELECT_QUEST + 1][HEADS * DIM];
static uint32_t want_sel[ADAMAS_SELECT_QUEST + 1][HEADS * 128];
static pthread_barrier_t ready, filled;
static int failures[N_THREADS];

static uint64_t rng = 1;

static float next_value(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((int32_t)(rng >> 32)) / 2147483648.0f;
}

static adamas_decode_params params(int sel)
{
    adamas_decode_params p = adamas_decode_params_default((adamas_selector)sel, 128);
    if (sel == ADAMAS_SELECT_ADAMAS)
        p.rerank = 2;
    return p;
}

static void *decoder(void *arg)
{
    int id = (int)(intptr_t)arg;
    /* first use of the library, at the same time as the other threads */
    pthread_barrier_wait(&ready);
    adamas_cache_config cfg = adamas_cache_config_default(HEADS, KV_HEADS, DIM, 64);
    adamas_cache *own = NULL;
    if (adamas_cache_create(&cfg, &own) || adamas_isa_name()[0] == 0)
        failures[id]++;
    adamas_cache_destroy(own);
    pthread_barrier_wait(&filled);

    adamas_workspace *ws = NULL;
    if (id % 2 && adamas_workspace_create(&ws))
        failures[id]++;
    float out[HEADS * DIM];
    uint32_t sel[HEADS * 128];
    for (int round = 0; round < ROUNDS; round++)
        for (int s = 0; s <= ADAMAS_SELECT_QUEST; s++) {
            int k = (s + id + round) % (ADAMAS_SELECT_QUEST + 1);
            adamas_decode_params p = params(k);
            if (adamas_decode_ws(shared, &p, query, out, sel, ws) != ADAMAS_OK ||
                memcmp(out, want_out[k], sizeof out) ||
                (k != ADAMAS_SELECT_FULL && memcmp(sel, want_sel[k], sizeof sel))) {
                fprintf(stderr, "thread %d, selector %d: %s\n", id, k,
                        adamas_last_error()[0] ? adamas_last_error() : "a different result");
                failures[id]++;
            }
            /* a failing call on this thread leaves its message on this thread only */
            p.budget = 0;
            if (k != ADAMAS_SELECT_FULL &&
                (adamas_decode_ws(shared, &p, query, out, sel, ws) != ADAMAS_EINVAL ||
                 !strstr(adamas_last_error(), "budget"))) {
                fprintf(stderr, "thread %d, selector %d: budget 0 not refused (%s)\n", id, k,
                        adamas_last_error());
                failures[id]++;
            }
        }
    adamas_workspace_destroy(ws);
    return NULL;
}

int main(void)
{
    pthread_t threads[N_THREADS];
    pthread_barrier_init(&ready, NULL, N_THREADS);
    pthread_barrier_init(&filled, NULL, N_THREADS + 1);
    for (int i = 0; i < N_THREADS; i++)
        pthread_create(&threads[i], NULL, decoder, (void *)(intptr_t)i);

    /* the shared cache, filled while the decoders wait */
    adamas_cache_config cfg = adamas_cache_config_default(HEADS, KV_HEADS, DIM, TOKENS);
    cfg.kv_dtype = ADAMAS_F16;
    float *k = malloc(sizeof(float) * TOKENS * KV_HEADS * DIM);
    float *v = malloc(sizeof(float) * TOKENS * KV_HEADS * DIM);
    for (size_t i = 0; i < (size_t)TOKENS * KV_HEADS * DIM; i++) {
        k[i] = 4.0f * next_value();
        v[i] = next_value();
    }
    for (size_t i = 0; i < HEADS * DIM; i++)
        query[i] = 4.0f * next_value();
    int st = adamas_cache_create(&cfg, &shared);
    if (!st)
        st = adamas_cache_append(shared, k, v, TOKENS);
    if (!st)
        st = adamas_cache_calibrate(shared, 0.6745f);
    for (int s = 0; s <= ADAMAS_SELECT_QUEST && !st; s++) {
        adamas_decode_params p = params(s);
        st = adamas_decode(shared, &p, query, want_out[s], want_sel[s]);
    }
    if (st) {
        fprintf(stderr, "tsan_decode: %s: %s\n", adamas_strerror(st), adamas_last_error());
        return 1;
    }
    pthread_barrier_wait(&filled);

    int failed = 0;
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(threads[i], NULL);
        failed += failures[i];
    }
    adamas_cache_destroy(shared);
    free(k);
    free(v);
    printf("tsan_decode: %d threads x %d decode steps on one cache (%s, %d OpenMP threads "
           "each): %s\n", N_THREADS, 2 * ROUNDS * (ADAMAS_SELECT_QUEST + 1), adamas_isa_name(),
           adamas_get_num_threads(), failed ? "MISMATCH" : "all results identical");
    return failed != 0;
}

/*
 * llama.h - a Llama-architecture transformer read from a GGUF file (llama.cpp's
 * conventions), run on the CPU with the KV cache and the attention of adamas.
 *
 * Per layer: x += Wo attention(rope(Wq rmsnorm(x)), rope(Wk rmsnorm(x)), Wv rmsnorm(x));
 * x += Wdown (silu(Wgate rmsnorm(x)) * Wup rmsnorm(x)); logits = Wout rmsnorm(x).
 * RoPE rotates adjacent pairs (2i, 2i+1) of each head, as llama.cpp does for the llama
 * architecture (its converter permutes the rows of Hugging Face's q and k weights to
 * that layout).  Grouped-query attention: query head h reads kv head h / (Hq / Hkv).
 *
 * A prefill runs whole layers over a batch of tokens with matrix-matrix products and
 * dense causal attention, and appends every layer's keys and values to that layer's
 * adamas cache; each decode step appends one token and attends through adamas_decode,
 * with full attention in the first `dense_layers` layers and the chosen selector in the
 * others.
 */
#ifndef ADAMAS_LLAMA_H
#define ADAMAS_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "adamas.h"
#include "gguf.h"
#include "tokenizer.h"

/* ------------------------------------------------------------------ the model */

typedef struct {
    uint32_t dim;            /* llama.embedding_length                            */
    uint32_t hidden_dim;     /* llama.feed_forward_length                         */
    uint32_t n_layers;       /* llama.block_count                                 */
    uint32_t n_heads;        /* llama.attention.head_count                        */
    uint32_t n_kv_heads;     /* llama.attention.head_count_kv (default n_heads)   */
    uint32_t head_dim;       /* dim / n_heads (or llama.attention.key_length)     */
    uint32_t vocab_size;     /* rows of token_embd.weight                         */
    uint32_t context_length; /* llama.context_length: the trained context         */
    uint32_t rope_dims;      /* llama.rope.dimension_count (default head_dim)     */
    float rope_base;         /* llama.rope.freq_base (default 10000)              */
    float norm_eps;          /* llama.attention.layer_norm_rms_epsilon            */
} llama_config;

/* A weight matrix [rows][cols] as stored: ggml type F32, F16 or Q8_0, row by row. */
typedef struct {
    uint32_t type;
    uint32_t rows, cols;
    const unsigned char *data;
    size_t row_bytes;
} llama_matrix;

typedef struct {
    const float *attn_norm;  /* [dim]                                    */
    llama_matrix wq;         /* [n_heads * head_dim][dim]                */
    llama_matrix wk, wv;     /* [n_kv_heads * head_dim][dim]             */
    llama_matrix wo;         /* [dim][n_heads * head_dim]                */
    const float *ffn_norm;   /* [dim]                                    */
    llama_matrix w_gate;     /* [hidden_dim][dim]                        */
    llama_matrix w_up;       /* [hidden_dim][dim]                        */
    llama_matrix w_down;     /* [dim][hidden_dim]                        */
} llama_layer;

typedef struct {
    llama_matrix token_embd; /* [vocab_size][dim]                        */
    llama_layer *layers;     /* [n_layers]                               */
    const float *output_norm;/* [dim]                                    */
    llama_matrix output;     /* [vocab_size][dim]; token_embd when tied  */
} llama_weights;

typedef struct {
    llama_config config;
    llama_weights weights;
    tokenizer *tok;
    gguf_file file;          /* the mapping the weights point into       */
    void **owned;            /* f32 copies (norms, unaligned tensors)    */
    size_t n_owned;
} llama_model;

/* Map a GGUF file and check that it is a llama model this engine runs.  Returns 0, or
 * ADAMAS_EIO / ADAMAS_EFORMAT / ADAMAS_ENOTSUP / ADAMAS_ENOMEM with a message in
 * err[err_size]; on failure nothing stays mapped or allocated. */
int llama_load(const char *path, llama_model *m, char *err, size_t err_size);
void llama_free(llama_model *m);

/* --------------------------------------------------------------- attention policy */

typedef struct {
    adamas_decode_params sparse; /* decode steps of the layers from dense_layers on   */
    uint32_t dense_layers;       /* first layers decoded with full attention         */
    int calibrate;               /* adamas_cache_calibrate(tau) after the prefill     */
    float tau;
    adamas_dtype kv_dtype;       /* storage of the caches                             */
} llama_attention;

/* ------------------------------------------------------------------ run state */

typedef struct {
    const llama_model *model;
    llama_attention attn;
    uint32_t max_tokens;     /* capacity of the caches                             */
    uint32_t pos;            /* tokens in the caches                               */
    int calibrated;
    adamas_cache **caches;   /* [n_layers]                                         */
    /* one decode step */
    float *x;                /* [dim] the residual stream                          */
    float *xb, *xb2;         /* [max(dim, n_heads*head_dim)]                       */
    float *q;                /* [n_heads][head_dim]                                */
    float *k, *v;            /* [n_kv_heads][head_dim]                             */
    float *att;              /* [n_heads][head_dim]                                */
    float *hb, *hb2;         /* [hidden_dim]                                       */
    float *logits;           /* [vocab_size] of the last token run                 */
    double *rope_freq;       /* [rope_dims / 2] base^(-2i/rope_dims)               */
    float *rope_cos, *rope_sin; /* [rope_dims / 2] angles of the current position     */
    char error[512];
} llama_state;

/* Caches for max_tokens tokens and the buffers of decode steps.  0, or a status with
 * the message in s->error. */
int llama_state_init(llama_state *s, const llama_model *m, const llama_attention *a,
                     uint32_t max_tokens);
void llama_state_free(llama_state *s);

/* Empty the caches (new ones: calibration is undone too). */
int llama_state_reset(llama_state *s);

/* Run tokens[n] at positions pos..pos+n-1 as one batch (dense causal attention over
 * the batch; the caches must be empty).  s->logits gets the last token's logits;
 * all_logits, when not NULL, every token's: [n][vocab_size]. */
int llama_prefill(llama_state *s, const uint32_t *tokens, uint32_t n, float *all_logits);

/* The keys and values a prefill appended, kept so that fresh caches can start from
 * them again (one prefill, several attention policies). */
typedef struct {
    uint32_t n, cap;         /* tokens kept, room                                  */
    size_t kv_dim;           /* n_kv_heads * head_dim                              */
    float *k, *v;            /* [n_layers][cap][kv_dim] post-RoPE, as appended      */
    float *logits;           /* [vocab_size] after the last token                  */
} llama_snapshot;

int llama_snapshot_init(llama_snapshot *p, const llama_model *m, uint32_t cap);
void llama_snapshot_free(llama_snapshot *p);

/* llama_prefill that also keeps its keys and values in *keep (cap >= n). */
int llama_prefill_keep(llama_state *s, const uint32_t *tokens, uint32_t n, float *all_logits,
                       llama_snapshot *keep);

/* New caches for the attention policy *a holding the snapshot's tokens (calibrated when
 * *a asks), positioned after them, with their logits in s->logits. */
int llama_restore(llama_state *s, const llama_attention *a, const llama_snapshot *p);

/* One decode step: append `token` at position pos, attend through the caches; its
 * logits go to s->logits. */
int llama_decode(llama_state *s, uint32_t token);

/* Threads of the matrix products and of the prefill's attention (0: OpenMP's default).
 * Call it once before running anything: it also makes OpenBLAS run each call on the
 * calling thread (the products split their work across OpenMP threads themselves). */
void llama_set_threads(int n);

#endif

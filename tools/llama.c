/* llama.c - a Llama-architecture transformer on the CPU (see llama.h). */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef ADAMAS_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "llama.h"

/* tokens per chunk of the prefill's matrix products, queries per attention block */
#define PREFILL_CHUNK 256
#define ATTENTION_BLOCK 128

/* ------------------------------------------------------------------ threads */

/* One pool of threads, OpenMP's: every OpenBLAS call runs on the thread that makes it,
 * and the matrix products split their rows across OpenMP threads themselves, so two
 * pools never spin against each other. */
void llama_set_threads(int n)
{
#ifdef _OPENMP
    if (n > 0)
        omp_set_num_threads(n);
#else
    (void)n;
#endif
#ifdef ADAMAS_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
}

static int max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ------------------------------------------------------------ matrix products */

/* The library's name of a matrix's ggml type (the loader admits F32, F16, Q8_0). */
static adamas_weights_type weights_type(const llama_matrix *w)
{
    return w->type == GGML_TYPE_F32   ? ADAMAS_WEIGHTS_F32
           : w->type == GGML_TYPE_F16 ? ADAMAS_WEIGHTS_F16
                                      : ADAMAS_WEIGHTS_Q8_0;
}

/* Rows r0 .. r0+m-1 of W widened to f32: out[m][cols].  The loader checked the
 * shapes, so the library cannot refuse them. */
static void widen_rows(const llama_matrix *w, size_t r0, size_t m, float *out)
{
    int st = adamas_weights_to_f32(weights_type(w), w->data + r0 * w->row_bytes, m, w->cols, out);
    assert(st == ADAMAS_OK);
    (void)st;
}

static int lib_fail(llama_state *s, const char *what, uint32_t layer, int st);

/* y[rows] = W x, on the library's SIMD kernels and decode threads; an x the library
 * refuses (a NaN or an infinity: the model has diverged) fails the step. */
static int matvec(llama_state *s, uint32_t layer, const llama_matrix *w, const float *x, float *y)
{
    int st = adamas_matvec(weights_type(w), w->data, w->rows, w->cols, x, y);
    return st ? lib_fail(s, "adamas_matvec", layer, st) : 0;
}

/* Rows of W per task of a matrix product: an equal share per thread, at most about
 * 1 MiB of f32 (the panel a thread dequantizes), at least 16. */
static size_t panel_rows(const llama_matrix *w)
{
    size_t cap = ((size_t)1 << 18) / w->cols, share = (w->rows + max_threads() - 1) / max_threads();
    size_t rows = share < cap ? share : cap;
    rows = rows < 16 ? 16 : rows;
    return rows < w->rows ? rows : w->rows;
}

/* Floats of scratch one thread needs for products with W. */
static size_t matmul_scratch_floats(const llama_matrix *w)
{
    return panel_rows(w) * w->cols;
}

/* Y[n][rows] = X[n][cols] W^T, in panels of rows of W spread over the threads; each
 * panel is one one-thread sgemm (on the weights as stored for F32, on rows dequantized
 * into the thread's part of scratch, stride scratch_floats, otherwise). */
static void matmul(const llama_matrix *w, const float *x, uint32_t n, float *y, float *scratch,
                   size_t scratch_floats)
{
    if (n == 1 && adamas_matvec(weights_type(w), w->data, w->rows, w->cols, x, y) == ADAMAS_OK)
        return; /* else x holds a NaN or an infinity, which the products below carry on */
    const size_t panel = panel_rows(w);
    const int64_t n_panels = (int64_t)((w->rows + panel - 1) / panel);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t p = 0; p < n_panels; p++) {
        const size_t r0 = (size_t)p * panel, m = r0 + panel <= w->rows ? panel : w->rows - r0;
#ifdef ADAMAS_HAVE_OPENBLAS
        const float *wp = (const float *)(const void *)(w->data + r0 * w->row_bytes);
        if (w->type != GGML_TYPE_F32) {
            float *mine = scratch + (size_t)thread_id() * scratch_floats;
            widen_rows(w, r0, m, mine);
            wp = mine;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)m, (int)w->cols, 1.0f,
                    x, (int)w->cols, wp, (int)w->cols, 0.0f, y + r0, (int)w->rows);
#else
        (void)scratch;
        (void)scratch_floats;
        for (uint32_t i = 0; i < n; i++)
            adamas_matvec(weights_type(w), w->data + r0 * w->row_bytes, m, w->cols,
                          x + (size_t)i * w->cols, y + (size_t)i * w->rows + r0);
#endif
    }
}

/* ------------------------------------------------------------ the other layers */

/* o[n] = x[n] / rms(x) * weight[n]; the sum of squares in double, as ggml does. */
static void rmsnorm(float *o, const float *x, const float *weight, uint32_t n, float eps)
{
    double ss = 0.0;
    for (uint32_t i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (uint32_t i = 0; i < n; i++)
        o[i] = x[i] * scale * weight[i];
}

/* cos[i], sin[i] of the angle pos * freq[i], i < rope_dims/2 (the angle in double: it
 * grows with the position). */
static void rope_angles(const double *freq, uint32_t rope_dims, uint32_t pos, float *cos_out,
                        float *sin_out)
{
    for (uint32_t i = 0; i < rope_dims / 2; i++) {
        double angle = (double)pos * freq[i];
        cos_out[i] = (float)cos(angle);
        sin_out[i] = (float)sin(angle);
    }
}

/* Rotate the pairs (2i, 2i+1), i < rope_dims/2, of each of the n_heads heads of x by
 * the angles of rope_angles (llama.cpp's NORMAL rope). */
static void rope(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dims,
                 const float *c, const float *s)
{
    for (uint32_t h = 0; h < n_heads; h++) {
        float *p = x + (size_t)h * head_dim;
        for (uint32_t i = 0; i < rope_dims / 2; i++) {
            float x0 = p[2 * i], x1 = p[2 * i + 1];
            p[2 * i] = x0 * c[i] - x1 * s[i];
            p[2 * i + 1] = x0 * s[i] + x1 * c[i];
        }
    }
}

static float silu(float x)
{
    return x / (1.0f + expf(-x));
}

/* x[n] = softmax(x[n]) */
static void softmax(float *x, size_t n)
{
    float max = x[0];
    for (size_t i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (size_t i = 0; i < n; i++)
        x[i] /= sum;
}

/* -------------------------------------------------------------------- loading */

static int load_fail(char *err, size_t err_size, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return status;
}

static void *own(llama_model *m, size_t bytes)
{
    void **grown = realloc(m->owned, (m->n_owned + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    m->owned = grown;
    void *p = malloc(bytes ? bytes : 1);
    if (p)
        m->owned[m->n_owned++] = p;
    return p;
}

/* A matrix tensor of shape [cols, rows] (ggml order) in F32, F16 or Q8_0. */
static int load_matrix(llama_model *m, const char *name, uint32_t rows, uint32_t cols,
                       llama_matrix *out, char *err, size_t err_size)
{
    const gguf_tensor *t = gguf_find_tensor(&m->file, name);
    if (!t)
        return load_fail(err, err_size, ADAMAS_EFORMAT, "missing tensor %s", name);
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return load_fail(err, err_size, ADAMAS_EFORMAT,
                         "tensor %s: shape [%llu, %llu] (%u dims), expected [%u, %u]", name,
                         (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], t->n_dims,
                         cols, rows);
    if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_Q8_0)
        return load_fail(err, err_size, ADAMAS_ENOTSUP,
                         "tensor %s has type %s; adamas-run reads F32, F16 and Q8_0", name,
                         gguf_ggml_type_name(t->type));
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = (size_t)(t->size / rows);
    out->data = t->data;
    /* f32 rows are read as floats: copy a tensor the file does not align */
    if (t->type == GGML_TYPE_F32 && (uintptr_t)t->data % sizeof(float)) {
        unsigned char *copy = own(m, (size_t)t->size);
        if (!copy)
            return load_fail(err, err_size, ADAMAS_ENOMEM, "out of memory");
        memcpy(copy, t->data, (size_t)t->size);
        out->data = copy;
    }
    return 0;
}

/* A vector tensor [n] widened to f32. */
static int load_vector(llama_model *m, const char *name, uint32_t n, const float **out, char *err,
                       size_t err_size)
{
    llama_matrix v;
    const gguf_tensor *t = gguf_find_tensor(&m->file, name);
    if (!t)
        return load_fail(err, err_size, ADAMAS_EFORMAT, "missing tensor %s", name);
    if (t->n_dims != 1 || t->ne[0] != n)
        return load_fail(err, err_size, ADAMAS_EFORMAT,
                         "tensor %s: shape [%llu] (%u dims), expected [%u]", name,
                         (unsigned long long)t->ne[0], t->n_dims, n);
    if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16)
        return load_fail(err, err_size, ADAMAS_ENOTSUP,
                         "tensor %s has type %s; norm weights must be F32 or F16", name,
                         gguf_ggml_type_name(t->type));
    v = (llama_matrix){t->type, 1, n, t->data, (size_t)t->size};
    float *f = own(m, (size_t)n * sizeof *f);
    if (!f)
        return load_fail(err, err_size, ADAMAS_ENOMEM, "out of memory");
    if (t->type == GGML_TYPE_F32)
        memcpy(f, t->data, (size_t)n * sizeof *f);
    else
        widen_rows(&v, 0, 1, f);
    *out = f;
    return 0;
}

static int optional_u32(llama_model *m, const char *key, uint32_t fallback, uint32_t *out,
                        char *err, size_t err_size)
{
    *out = fallback;
    if (!gguf_find_kv(&m->file, key))
        return 0;
    int st = gguf_get_u32(&m->file, key, out);
    return st ? load_fail(err, err_size, st, "%s", m->file.error) : 0;
}

static int read_config(llama_model *m, char *err, size_t err_size)
{
    llama_config *c = &m->config;
    gguf_file *f = &m->file;
    gguf_str arch;
    int st;
    if ((st = gguf_get_str(f, "general.architecture", &arch)))
        return load_fail(err, err_size, st, "%s", f->error);
    if (!gguf_str_eq(arch, "llama"))
        return load_fail(err, err_size, ADAMAS_ENOTSUP,
                         "general.architecture is \"%.*s\"; adamas-run runs \"llama\"",
                         (int)(arch.len < 32 ? arch.len : 32), arch.ptr);
    if ((st = gguf_get_u32(f, "llama.block_count", &c->n_layers)) ||
        (st = gguf_get_u32(f, "llama.embedding_length", &c->dim)) ||
        (st = gguf_get_u32(f, "llama.feed_forward_length", &c->hidden_dim)) ||
        (st = gguf_get_u32(f, "llama.attention.head_count", &c->n_heads)) ||
        (st = gguf_get_u32(f, "llama.context_length", &c->context_length)) ||
        (st = gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &c->norm_eps)))
        return load_fail(err, err_size, st, "%s", f->error);
    if (c->n_layers == 0 || c->dim == 0 || c->hidden_dim == 0 || c->n_heads == 0)
        return load_fail(err, err_size, ADAMAS_EFORMAT,
                         "block_count, embedding_length, feed_forward_length and head_count "
                         "must be positive");
    if ((st = optional_u32(m, "llama.attention.head_count_kv", c->n_heads, &c->n_kv_heads, err,
                           err_size)) ||
        (st = optional_u32(m, "llama.attention.key_length", c->dim / c->n_heads, &c->head_dim,
                           err, err_size)))
        return st;
    uint32_t value_length;
    if ((st = optional_u32(m, "llama.attention.value_length", c->head_dim, &value_length, err,
                           err_size)) ||
        (st = optional_u32(m, "llama.rope.dimension_count", c->head_dim, &c->rope_dims, err,
                           err_size)))
        return st;
    c->rope_base = 10000.0f;
    if (gguf_find_kv(f, "llama.rope.freq_base") &&
        (st = gguf_get_f32(f, "llama.rope.freq_base", &c->rope_base)))
        return load_fail(err, err_size, st, "%s", f->error);
    if (c->n_kv_heads == 0 || c->n_heads % c->n_kv_heads)
        return load_fail(err, err_size, ADAMAS_EFORMAT,
                         "%u query heads are not a multiple of %u kv heads", c->n_heads,
                         c->n_kv_heads);
    if (value_length != c->head_dim)
        return load_fail(err, err_size, ADAMAS_ENOTSUP,
                         "key length %u differs from value length %u", c->head_dim, value_length);
    if (c->head_dim < ADAMAS_MIN_HEAD_DIM || c->head_dim > ADAMAS_MAX_HEAD_DIM ||
        (c->head_dim & (c->head_dim - 1)))
        return load_fail(err, err_size, ADAMAS_ENOTSUP,
                         "head dimension %u: adamas needs a power of two in [%d, %d]",
                         c->head_dim, ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM);
    if (c->rope_dims == 0 || c->rope_dims % 2 || c->rope_dims > c->head_dim)
        return load_fail(err, err_size, ADAMAS_EFORMAT,
                         "llama.rope.dimension_count %u is not even and at most the head "
                         "dimension %u", c->rope_dims, c->head_dim);
    if (!(c->rope_base > 0.0f) || !(c->norm_eps >= 0.0f))
        return load_fail(err, err_size, ADAMAS_EFORMAT,
                         "llama.rope.freq_base must be positive and the rms epsilon not negative");
    /* every layer has 9 tensors: a block count beyond the file's tensors is refused
     * before any per-layer allocation */
    if (c->n_layers > m->file.n_tensors / 9)
        return load_fail(err, err_size, ADAMAS_EFORMAT,
                         "llama.block_count %u needs %llu tensors, the file has %llu",
                         c->n_layers, 9ull * c->n_layers, (unsigned long long)m->file.n_tensors);
    return 0;
}

static int load_weights(llama_model *m, char *err, size_t err_size)
{
    llama_config *c = &m->config;
    llama_weights *w = &m->weights;
    const gguf_tensor *embd = gguf_find_tensor(&m->file, "token_embd.weight");
    if (!embd)
        return load_fail(err, err_size, ADAMAS_EFORMAT, "missing tensor token_embd.weight");
    if (embd->n_dims != 2 || embd->ne[1] == 0 || embd->ne[1] >= UINT32_MAX / 2)
        return load_fail(err, err_size, ADAMAS_EFORMAT, "token_embd.weight is not a matrix "
                         "[embedding_length, vocabulary]");
    c->vocab_size = (uint32_t)embd->ne[1];
    int st;
    uint64_t q_dim = (uint64_t)c->n_heads * c->head_dim, kv_dim = (uint64_t)c->n_kv_heads * c->head_dim;
    if (q_dim > UINT32_MAX / 4 || kv_dim > UINT32_MAX / 4)
        return load_fail(err, err_size, ADAMAS_EFORMAT, "heads times head dimension overflow");
    if ((st = load_matrix(m, "token_embd.weight", c->vocab_size, c->dim, &w->token_embd, err,
                          err_size)) ||
        (st = load_vector(m, "output_norm.weight", c->dim, &w->output_norm, err, err_size)))
        return st;
    size_t expected = 3; /* token_embd, output_norm, output */
    if (gguf_find_tensor(&m->file, "output.weight")) {
        if ((st = load_matrix(m, "output.weight", c->vocab_size, c->dim, &w->output, err,
                              err_size)))
            return st;
    } else {
        w->output = w->token_embd; /* tied embeddings */
        expected = 2;
    }
    w->layers = own(m, (size_t)c->n_layers * sizeof *w->layers);
    if (!w->layers)
        return load_fail(err, err_size, ADAMAS_ENOMEM, "out of memory");
    for (uint32_t l = 0; l < c->n_layers; l++) {
        llama_layer *L = &w->layers[l];
        char name[64];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%u.%s", l, suffix), name)
        if ((st = load_vector(m, NAME("attn_norm.weight"), c->dim, &L->attn_norm, err, err_size)) ||
            (st = load_matrix(m, NAME("attn_q.weight"), (uint32_t)q_dim, c->dim, &L->wq, err,
                              err_size)) ||
            (st = load_matrix(m, NAME("attn_k.weight"), (uint32_t)kv_dim, c->dim, &L->wk, err,
                              err_size)) ||
            (st = load_matrix(m, NAME("attn_v.weight"), (uint32_t)kv_dim, c->dim, &L->wv, err,
                              err_size)) ||
            (st = load_matrix(m, NAME("attn_output.weight"), c->dim, (uint32_t)q_dim, &L->wo, err,
                              err_size)) ||
            (st = load_vector(m, NAME("ffn_norm.weight"), c->dim, &L->ffn_norm, err, err_size)) ||
            (st = load_matrix(m, NAME("ffn_gate.weight"), c->hidden_dim, c->dim, &L->w_gate, err,
                              err_size)) ||
            (st = load_matrix(m, NAME("ffn_up.weight"), c->hidden_dim, c->dim, &L->w_up, err,
                              err_size)) ||
            (st = load_matrix(m, NAME("ffn_down.weight"), c->dim, c->hidden_dim, &L->w_down, err,
                              err_size)))
            return st;
#undef NAME
    }
    expected += 9 * (size_t)c->n_layers;
    if (m->file.n_tensors != expected) {
        /* name one tensor this engine would ignore (biases, rope factors, ...) */
        for (uint64_t i = 0; i < m->file.n_tensors; i++) {
            gguf_str n = m->file.tensors[i].name;
            bool known = gguf_str_eq(n, "token_embd.weight") || gguf_str_eq(n, "output.weight") ||
                         gguf_str_eq(n, "output_norm.weight");
            static const char *const suffixes[] = {
                "attn_norm.weight", "attn_q.weight",   "attn_k.weight",
                "attn_v.weight",    "attn_output.weight", "ffn_norm.weight",
                "ffn_gate.weight",  "ffn_up.weight",   "ffn_down.weight"};
            for (uint32_t l = 0; l < c->n_layers && !known; l++)
                for (size_t k = 0; k < 9 && !known; k++) {
                    char want[64];
                    snprintf(want, sizeof want, "blk.%u.%s", l, suffixes[k]);
                    known = gguf_str_eq(n, want);
                }
            if (!known)
                return load_fail(err, err_size, ADAMAS_ENOTSUP,
                                 "tensor %.*s is not part of the llama architecture this engine "
                                 "runs (no biases, rope factors or other extras)",
                                 (int)(n.len < 64 ? n.len : 64), n.ptr);
        }
        return load_fail(err, err_size, ADAMAS_EFORMAT, "%llu tensors, expected %zu",
                         (unsigned long long)m->file.n_tensors, expected);
    }
    return 0;
}

int llama_load(const char *path, llama_model *m, char *err, size_t err_size)
{
    memset(m, 0, sizeof *m);
    int st = gguf_open(path, &m->file);
    if (st)
        return load_fail(err, err_size, st, "%s: %s", path, m->file.error);
    if ((st = read_config(m, err, err_size)) || (st = load_weights(m, err, err_size)))
        goto fail;
    if ((st = tokenizer_from_gguf(&m->file, &m->tok))) {
        load_fail(err, err_size, st, "%s", m->file.error);
        goto fail;
    }
    if (tokenizer_n_tokens(m->tok) != m->config.vocab_size) {
        st = load_fail(err, err_size, ADAMAS_EFORMAT,
                       "the tokenizer has %u tokens, token_embd.weight %u rows",
                       tokenizer_n_tokens(m->tok), m->config.vocab_size);
        goto fail;
    }
    return 0;
fail:;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", path, err);
    llama_free(m);
    snprintf(err, err_size, "%s", msg);
    return st;
}

void llama_free(llama_model *m)
{
    if (!m)
        return;
    tokenizer_destroy(m->tok);
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    gguf_close(&m->file);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ run state */

static int state_fail(llama_state *s, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    return status;
}

static int lib_fail(llama_state *s, const char *what, uint32_t layer, int st)
{
    return state_fail(s, st, "layer %u: %s: %s: %s", layer, what, adamas_strerror(st),
                      adamas_last_error());
}

static void destroy_caches(llama_state *s)
{
    if (!s->caches)
        return;
    for (uint32_t l = 0; l < s->model->config.n_layers; l++)
        adamas_cache_destroy(s->caches[l]);
    memset(s->caches, 0, s->model->config.n_layers * sizeof *s->caches);
}

int llama_state_reset(llama_state *s)
{
    const llama_config *c = &s->model->config;
    destroy_caches(s);
    s->pos = 0;
    s->calibrated = 0;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        adamas_cache_config cfg =
            adamas_cache_config_default(c->n_heads, c->n_kv_heads, c->head_dim, s->max_tokens);
        cfg.kv_dtype = s->attn.kv_dtype;
        if (s->attn.sparse.selector == ADAMAS_SELECT_QUEST && s->attn.sparse.page_size)
            cfg.page_size = s->attn.sparse.page_size;
        int st = adamas_cache_create(&cfg, &s->caches[l]);
        if (st)
            return lib_fail(s, "adamas_cache_create", l, st);
    }
    return 0;
}

int llama_state_init(llama_state *s, const llama_model *m, const llama_attention *a,
                     uint32_t max_tokens)
{
    memset(s, 0, sizeof *s);
    s->model = m;
    s->attn = *a;
    s->max_tokens = max_tokens;
    const llama_config *c = &m->config;
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = q_dim > c->dim ? q_dim : c->dim;
    s->x = calloc(c->dim, sizeof(float));
    s->xb = calloc(wide, sizeof(float));
    s->xb2 = calloc(wide, sizeof(float));
    s->q = calloc(q_dim, sizeof(float));
    s->k = calloc(kv_dim, sizeof(float));
    s->v = calloc(kv_dim, sizeof(float));
    s->att = calloc(q_dim, sizeof(float));
    s->hb = calloc(c->hidden_dim, sizeof(float));
    s->hb2 = calloc(c->hidden_dim, sizeof(float));
    s->logits = calloc(c->vocab_size, sizeof(float));
    s->rope_freq = calloc(c->rope_dims / 2, sizeof(double));
    s->rope_cos = calloc(c->rope_dims / 2, sizeof(float));
    s->rope_sin = calloc(c->rope_dims / 2, sizeof(float));
    s->caches = calloc(c->n_layers, sizeof *s->caches);
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
        !s->logits || !s->rope_freq || !s->rope_cos || !s->rope_sin || !s->caches) {
        llama_state_free(s);
        return state_fail(s, ADAMAS_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < c->rope_dims / 2; i++)
        s->rope_freq[i] = pow((double)c->rope_base, -2.0 * i / (double)c->rope_dims);
    int st = llama_state_reset(s);
    if (st) {
        char msg[sizeof s->error];
        memcpy(msg, s->error, sizeof msg);
        llama_state_free(s);
        memcpy(s->error, msg, sizeof msg);
    }
    return st;
}

void llama_state_free(llama_state *s)
{
    if (s->model)
        destroy_caches(s);
    free(s->caches);
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->hb);
    free(s->hb2);
    free(s->logits);
    free(s->rope_freq);
    free(s->rope_cos);
    free(s->rope_sin);
    char msg[sizeof s->error];
    memcpy(msg, s->error, sizeof msg);
    memset(s, 0, sizeof *s);
    memcpy(s->error, msg, sizeof msg);
}

/* ---------------------------------------------------------------- decode step */

static int calibrate_sparse_layers(llama_state *s)
{
    for (uint32_t l = s->attn.dense_layers; l < s->model->config.n_layers; l++) {
        int st = adamas_cache_calibrate(s->caches[l], s->attn.tau);
        if (st)
            return lib_fail(s, "adamas_cache_calibrate", l, st);
    }
    s->calibrated = 1;
    return 0;
}

int llama_decode(llama_state *s, uint32_t token)
{
    const llama_config *c = &s->model->config;
    const llama_weights *w = &s->model->weights;
    if (token >= c->vocab_size)
        return state_fail(s, ADAMAS_EINVAL, "token %u is beyond the vocabulary", token);
    if (s->pos >= s->max_tokens)
        return state_fail(s, ADAMAS_ECAPACITY, "the context of %u tokens is full", s->max_tokens);
    /* calibration needs keys: after a prefill it has run; without one it runs at the
     * second step (the first attends to its single token whatever the codes) */
    if (s->attn.calibrate && !s->calibrated && s->pos > 0) {
        int st = calibrate_sparse_layers(s);
        if (st)
            return st;
    }
    const adamas_decode_params full = adamas_decode_params_default(ADAMAS_SELECT_FULL, 0);
    widen_rows(&w->token_embd, token, 1, s->x);
    rope_angles(s->rope_freq, c->rope_dims, s->pos, s->rope_cos, s->rope_sin);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        const llama_layer *L = &w->layers[l];
        /* attention */
        rmsnorm(s->xb, s->x, L->attn_norm, c->dim, c->norm_eps);
        int st;
        if ((st = matvec(s, l, &L->wq, s->xb, s->q)) || (st = matvec(s, l, &L->wk, s->xb, s->k)) ||
            (st = matvec(s, l, &L->wv, s->xb, s->v)))
            return st;
        rope(s->q, c->n_heads, c->head_dim, c->rope_dims, s->rope_cos, s->rope_sin);
        rope(s->k, c->n_kv_heads, c->head_dim, c->rope_dims, s->rope_cos, s->rope_sin);
        if ((st = adamas_cache_append(s->caches[l], s->k, s->v, 1)))
            return lib_fail(s, "adamas_cache_append", l, st);
        const adamas_decode_params *p = l < s->attn.dense_layers ? &full : &s->attn.sparse;
        if ((st = adamas_decode(s->caches[l], p, s->q, s->att, NULL)))
            return lib_fail(s, "adamas_decode", l, st);
        if ((st = matvec(s, l, &L->wo, s->att, s->xb2)))
            return st;
        for (uint32_t i = 0; i < c->dim; i++)
            s->x[i] += s->xb2[i];
        /* feed-forward */
        rmsnorm(s->xb, s->x, L->ffn_norm, c->dim, c->norm_eps);
        if ((st = matvec(s, l, &L->w_gate, s->xb, s->hb)) ||
            (st = matvec(s, l, &L->w_up, s->xb, s->hb2)))
            return st;
        for (uint32_t i = 0; i < c->hidden_dim; i++)
            s->hb[i] = silu(s->hb[i]) * s->hb2[i];
        if ((st = matvec(s, l, &L->w_down, s->hb, s->xb2)))
            return st;
        for (uint32_t i = 0; i < c->dim; i++)
            s->x[i] += s->xb2[i];
    }
    rmsnorm(s->xb, s->x, w->output_norm, c->dim, c->norm_eps);
    int st = matvec(s, c->n_layers, &w->output, s->xb, s->logits);
    if (st)
        return st;
    s->pos++;
    return 0;
}

/* -------------------------------------------------------------------- prefill */

/* C[m][n] = A[m][k] B[n][k]^T (strided rows), one thread. */
static void gemm_nt(uint32_t m, uint32_t n, uint32_t k, const float *a, size_t lda, const float *b,
                    size_t ldb, float *cc, size_t ldc)
{
#ifdef ADAMAS_HAVE_OPENBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)lda,
                b, (int)ldb, 0.0f, cc, (int)ldc);
#else
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            float sum = 0.0f;
            for (uint32_t t = 0; t < k; t++)
                sum += a[i * lda + t] * b[j * ldb + t];
            cc[i * ldc + j] = sum;
        }
#endif
}

/* C[m][n] = A[m][k] B[k][n] (strided rows), one thread. */
static void gemm_nn(uint32_t m, uint32_t n, uint32_t k, const float *a, size_t lda, const float *b,
                    size_t ldb, float *cc, size_t ldc)
{
#ifdef ADAMAS_HAVE_OPENBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a,
                (int)lda, b, (int)ldb, 0.0f, cc, (int)ldc);
#else
    for (uint32_t i = 0; i < m; i++) {
        float *row = cc + i * ldc;
        memset(row, 0, n * sizeof *row);
        for (uint32_t j = 0; j < k; j++) {
            float p = a[i * lda + j];
            const float *brow = b + j * ldb;
            for (uint32_t t = 0; t < n; t++)
                row[t] += p * brow[t];
        }
    }
#endif
}

/* Causal attention over a batch of n tokens, every query head:
 * att[i][h] = sum_{j <= i} softmax_j(q[i][h] . k[j][g] / sqrt(d)) v[j][g], g the kv head
 * of h.  q, att: [n][n_heads][d]; k, v: [n][n_kv_heads][d].  Work is split in (head,
 * block of queries) tasks across threads, each running one-thread matrix products into
 * its own scores[ATTENTION_BLOCK][n]. */
static void attention_prefill(const llama_config *c, uint32_t n, const float *q, const float *k,
                              const float *v, float *att, float *scores)
{
    const uint32_t d = c->head_dim, group = c->n_heads / c->n_kv_heads;
    const size_t q_stride = (size_t)c->n_heads * d, kv_stride = (size_t)c->n_kv_heads * d;
    const uint32_t n_blocks = (n + ATTENTION_BLOCK - 1) / ATTENTION_BLOCK;
    const int64_t n_tasks = (int64_t)n_blocks * c->n_heads;
    const float scale = 1.0f / sqrtf((float)d);
    /* the last blocks (most keys) first, so that the threads finish together */
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; task++) {
        const uint32_t block = n_blocks - 1 - (uint32_t)(task / c->n_heads);
        const uint32_t h = (uint32_t)(task % c->n_heads), g = h / group;
        const uint32_t i0 = block * ATTENTION_BLOCK;
        const uint32_t m = n - i0 < ATTENTION_BLOCK ? n - i0 : ATTENTION_BLOCK;
        const uint32_t keys = i0 + m; /* the block's last query sees keys 0..i0+m-1 */
        float *s = scores + (size_t)thread_id() * ATTENTION_BLOCK * n;
        gemm_nt(m, keys, d, q + i0 * q_stride + (size_t)h * d, q_stride, k + (size_t)g * d,
                kv_stride, s, keys);
        for (uint32_t i = 0; i < m; i++) {
            float *row = s + (size_t)i * keys;
            uint32_t seen = i0 + i + 1;
            for (uint32_t j = 0; j < seen; j++)
                row[j] *= scale;
            softmax(row, seen);
            for (uint32_t j = seen; j < keys; j++)
                row[j] = 0.0f;
        }
        gemm_nn(m, d, keys, s, keys, v + (size_t)g * d, kv_stride, att + i0 * q_stride + (size_t)h * d,
                q_stride);
    }
}

/* Buffers of one prefill. */
typedef struct {
    float *x;       /* [n][dim] the residual stream                    */
    float *q, *att; /* [n][n_heads * head_dim]                        */
    float *k, *v;   /* [n][n_kv_heads * head_dim]                     */
    float *xb;      /* [chunk][max(dim, hidden)]                       */
    float *hb, *hb2;/* [chunk][hidden_dim]                             */
    float *scores;  /* [threads][ATTENTION_BLOCK][n]                  */
    float *panel;   /* [threads][panel_floats] dequantized rows of weights */
    size_t panel_floats;
    float *rope_cos, *rope_sin; /* [n][rope_dims / 2] angles per position */
} prefill_buffers;

static void free_prefill(prefill_buffers *b)
{
    free(b->x);
    free(b->q);
    free(b->att);
    free(b->k);
    free(b->v);
    free(b->xb);
    free(b->hb);
    free(b->hb2);
    free(b->scores);
    free(b->panel);
    free(b->rope_cos);
    free(b->rope_sin);
}

static float *alloc_floats(size_t a, size_t b)
{
    if (a && b > SIZE_MAX / sizeof(float) / a)
        return NULL;
    return malloc(a * b * sizeof(float) + 1);
}

static int alloc_prefill(const llama_model *m, uint32_t n, prefill_buffers *b)
{
    const llama_config *c = &m->config;
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t chunk = n < PREFILL_CHUNK ? n : PREFILL_CHUNK;
    size_t wide = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    wide = wide > q_dim ? wide : q_dim;
    size_t panel = matmul_scratch_floats(&m->weights.output);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        const llama_layer *L = &m->weights.layers[l];
        const llama_matrix *all[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up,
                                     &L->w_down};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            size_t f = matmul_scratch_floats(all[i]);
            panel = f > panel ? f : panel;
        }
    }
    *b = (prefill_buffers){
        .x = alloc_floats(n, c->dim),
        .q = alloc_floats(n, q_dim),
        .att = alloc_floats(n, q_dim),
        .k = alloc_floats(n, kv_dim),
        .v = alloc_floats(n, kv_dim),
        .xb = alloc_floats(chunk, wide),
        .hb = alloc_floats(chunk, c->hidden_dim),
        .hb2 = alloc_floats(chunk, c->hidden_dim),
        .scores = alloc_floats((size_t)max_threads() * ATTENTION_BLOCK, n),
        .panel = alloc_floats(panel, (size_t)max_threads()),
        .panel_floats = panel,
        .rope_cos = alloc_floats(n, c->rope_dims / 2),
        .rope_sin = alloc_floats(n, c->rope_dims / 2),
    };
    if (!b->x || !b->q || !b->att || !b->k || !b->v || !b->xb || !b->hb || !b->hb2 || !b->scores ||
        !b->panel || !b->rope_cos || !b->rope_sin) {
        free_prefill(b);
        return ADAMAS_ENOMEM;
    }
    return 0;
}

int llama_prefill(llama_state *s, const uint32_t *tokens, uint32_t n, float *all_logits)
{
    return llama_prefill_keep(s, tokens, n, all_logits, NULL);
}

int llama_prefill_keep(llama_state *s, const uint32_t *tokens, uint32_t n, float *all_logits,
                       llama_snapshot *keep)
{
    const llama_model *m = s->model;
    const llama_config *c = &m->config;
    const llama_weights *w = &m->weights;
    if (n == 0)
        return 0;
    if (s->pos != 0)
        return state_fail(s, ADAMAS_EINVAL, "a prefill needs empty caches (%u tokens held)",
                          s->pos);
    if (n > s->max_tokens || (keep && n > keep->cap))
        return state_fail(s, ADAMAS_ECAPACITY, "%u tokens do not fit a context of %u", n,
                          keep && keep->cap < s->max_tokens ? keep->cap : s->max_tokens);
    for (uint32_t i = 0; i < n; i++)
        if (tokens[i] >= c->vocab_size)
            return state_fail(s, ADAMAS_EINVAL, "token %u is beyond the vocabulary", tokens[i]);
    prefill_buffers b;
    if (alloc_prefill(m, n, &b))
        return state_fail(s, ADAMAS_ENOMEM, "out of memory for a prefill of %u tokens", n);
    const size_t dim = c->dim, hidden = c->hidden_dim;
    const size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    int st = 0;

    for (uint32_t i = 0; i < n; i++) {
        widen_rows(&w->token_embd, tokens[i], 1, b.x + i * dim);
        rope_angles(s->rope_freq, c->rope_dims, i, b.rope_cos + (size_t)i * (c->rope_dims / 2),
                    b.rope_sin + (size_t)i * (c->rope_dims / 2));
    }
    for (uint32_t l = 0; l < c->n_layers && !st; l++) {
        const llama_layer *L = &w->layers[l];
        /* q, k, v of every token, rotated to their positions */
        for (uint32_t i0 = 0; i0 < n; i0 += PREFILL_CHUNK) {
            uint32_t m_ = n - i0 < PREFILL_CHUNK ? n - i0 : PREFILL_CHUNK;
            for (uint32_t i = 0; i < m_; i++)
                rmsnorm(b.xb + i * dim, b.x + (i0 + i) * dim, L->attn_norm, c->dim, c->norm_eps);
            matmul(&L->wq, b.xb, m_, b.q + i0 * q_dim, b.panel, b.panel_floats);
            matmul(&L->wk, b.xb, m_, b.k + i0 * kv_dim, b.panel, b.panel_floats);
            matmul(&L->wv, b.xb, m_, b.v + i0 * kv_dim, b.panel, b.panel_floats);
        }
        const size_t half = c->rope_dims / 2;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < (int64_t)n; i++) {
            const float *rc = b.rope_cos + (size_t)i * half, *rs = b.rope_sin + (size_t)i * half;
            rope(b.q + (size_t)i * q_dim, c->n_heads, c->head_dim, c->rope_dims, rc, rs);
            rope(b.k + (size_t)i * kv_dim, c->n_kv_heads, c->head_dim, c->rope_dims, rc, rs);
        }
        if (keep) {
            memcpy(keep->k + (size_t)l * keep->cap * kv_dim, b.k, n * kv_dim * sizeof(float));
            memcpy(keep->v + (size_t)l * keep->cap * kv_dim, b.v, n * kv_dim * sizeof(float));
        }
        if ((st = adamas_cache_append(s->caches[l], b.k, b.v, n))) {
            lib_fail(s, "adamas_cache_append", l, st);
            break;
        }
        attention_prefill(c, n, b.q, b.k, b.v, b.att, b.scores);
        /* output projection and feed-forward, chunk by chunk */
        for (uint32_t i0 = 0; i0 < n; i0 += PREFILL_CHUNK) {
            uint32_t m_ = n - i0 < PREFILL_CHUNK ? n - i0 : PREFILL_CHUNK;
            float *x = b.x + i0 * dim;
            matmul(&L->wo, b.att + i0 * q_dim, m_, b.xb, b.panel, b.panel_floats);
            for (size_t i = 0; i < m_ * dim; i++)
                x[i] += b.xb[i];
            for (uint32_t i = 0; i < m_; i++)
                rmsnorm(b.xb + i * dim, x + i * dim, L->ffn_norm, c->dim, c->norm_eps);
            matmul(&L->w_gate, b.xb, m_, b.hb, b.panel, b.panel_floats);
            matmul(&L->w_up, b.xb, m_, b.hb2, b.panel, b.panel_floats);
            for (size_t i = 0; i < m_ * hidden; i++)
                b.hb[i] = silu(b.hb[i]) * b.hb2[i];
            matmul(&L->w_down, b.hb, m_, b.xb, b.panel, b.panel_floats);
            for (size_t i = 0; i < m_ * dim; i++)
                x[i] += b.xb[i];
        }
    }
    if (!st) {
        s->pos = n;
        if (all_logits) {
            for (uint32_t i0 = 0; i0 < n; i0 += PREFILL_CHUNK) {
                uint32_t m_ = n - i0 < PREFILL_CHUNK ? n - i0 : PREFILL_CHUNK;
                for (uint32_t i = 0; i < m_; i++)
                    rmsnorm(b.xb + i * dim, b.x + (i0 + i) * dim, w->output_norm, c->dim,
                            c->norm_eps);
                matmul(&w->output, b.xb, m_, all_logits + (size_t)i0 * c->vocab_size, b.panel, b.panel_floats);
            }
            memcpy(s->logits, all_logits + (size_t)(n - 1) * c->vocab_size,
                   c->vocab_size * sizeof *s->logits);
        } else {
            rmsnorm(s->xb, b.x + (size_t)(n - 1) * dim, w->output_norm, c->dim, c->norm_eps);
            st = matvec(s, c->n_layers, &w->output, s->xb, s->logits);
        }
        if (keep && !st) {
            keep->n = n;
            memcpy(keep->logits, s->logits, c->vocab_size * sizeof *s->logits);
        }
        if (s->attn.calibrate && !st)
            st = calibrate_sparse_layers(s);
    }
    free_prefill(&b);
    return st;
}

/* ------------------------------------------------------------------- snapshots */

int llama_snapshot_init(llama_snapshot *p, const llama_model *m, uint32_t cap)
{
    const llama_config *c = &m->config;
    memset(p, 0, sizeof *p);
    p->cap = cap;
    p->kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t per_layer = (size_t)cap * p->kv_dim;
    p->k = alloc_floats(c->n_layers, per_layer);
    p->v = alloc_floats(c->n_layers, per_layer);
    p->logits = alloc_floats(c->vocab_size, 1);
    if (!p->k || !p->v || !p->logits) {
        llama_snapshot_free(p);
        return ADAMAS_ENOMEM;
    }
    return 0;
}

void llama_snapshot_free(llama_snapshot *p)
{
    free(p->k);
    free(p->v);
    free(p->logits);
    memset(p, 0, sizeof *p);
}

int llama_restore(llama_state *s, const llama_attention *a, const llama_snapshot *p)
{
    const llama_config *c = &s->model->config;
    if (p->n > s->max_tokens)
        return state_fail(s, ADAMAS_ECAPACITY, "%u tokens do not fit a context of %u", p->n,
                          s->max_tokens);
    s->attn = *a;
    int st = llama_state_reset(s);
    for (uint32_t l = 0; l < c->n_layers && !st; l++) {
        size_t at = (size_t)l * p->cap * p->kv_dim;
        if ((st = adamas_cache_append(s->caches[l], p->k + at, p->v + at, p->n)))
            lib_fail(s, "adamas_cache_append", l, st);
    }
    if (st)
        return st;
    s->pos = p->n;
    memcpy(s->logits, p->logits, c->vocab_size * sizeof *s->logits);
    return s->attn.calibrate && p->n ? calibrate_sparse_layers(s) : 0;
}

/* gen.c - synthetic attention dumps (see gen.h for the model). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "gen.h"

gen_config gen_config_default(void)
{
    gen_config c = {
        .layers = 2,
        .tokens = 2048,
        .heads = 8,
        .kv_heads = 2,
        .head_dim = 128,
        .dtype = ADAMAS_F16,
        .seed = 1,
        .sinks = 1,
        .needles = 8,
        .outliers = 4,
        .rope_base = 500000.0,
    };
    return c;
}

int gen_check(const gen_config *c, char *err, size_t err_size)
{
    const char *bad = NULL;
    uint32_t d = c->head_dim;
    if (c->layers == 0 || c->layers > 100000)
        bad = "layers must be in [1, 100000]";
    else if (c->tokens == 0 || c->tokens >= UINT32_MAX)
        bad = "tokens must be at least 1";
    else if (c->heads == 0 || c->kv_heads == 0 || c->heads % c->kv_heads)
        bad = "heads must be a non-zero multiple of kv_heads";
    else if (d < ADAMAS_MIN_HEAD_DIM || d > ADAMAS_MAX_HEAD_DIM || (d & (d - 1)))
        bad = "head_dim must be a power of two in [16, 1024]";
    else if ((unsigned)c->dtype > ADAMAS_BF16)
        bad = "dtype must be F32, F16 or BF16";
    else if (c->sinks > c->tokens)
        bad = "sinks must not exceed tokens";
    else if (c->outliers > d / 4)
        bad = "outliers must be at most head_dim / 4";
    else if (c->needles > 1000000)
        bad = "needles must be at most 1000000";
    else if (!(c->rope_base > 1.0) || !isfinite(c->rope_base))
        bad = "rope_base must be finite and > 1";
    else if ((uint64_t)c->tokens * c->heads * d > ((uint64_t)1 << 40))
        bad = "tokens * heads * head_dim is beyond 2^40";
    if (bad) {
        snprintf(err, err_size, "%s", bad);
        return ADAMAS_EINVAL;
    }
    return ADAMAS_OK;
}

/* ------------------------------------------------------------ random numbers */

/* A generator seeded by what a number is for: every row can be drawn alone. */
typedef struct {
    uint64_t s;
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

enum purpose { FOR_HEAD = 1, FOR_QUERY, FOR_KEY, FOR_VALUE, FOR_NEEDLES };

static rng rng_for(const gen_config *c, uint32_t layer, enum purpose what, uint32_t token,
                   uint32_t head)
{
    uint64_t x = c->seed;
    uint64_t key = splitmix64(&x);
    key ^= (uint64_t)layer * 0xd6e8feb86659fd93u;
    key = splitmix64(&key) ^ (uint64_t)what << 56 ^ (uint64_t)head << 32 ^ token;
    rng r = {splitmix64(&key)};
    return r;
}

static double uniform01(rng *r)
{
    return (double)(splitmix64(&r->s) >> 11) * 0x1p-53;
}

static double uniform(rng *r, double lo, double hi)
{
    return lo + (hi - lo) * uniform01(r);
}

static double normal(rng *r)
{
    double u1 = uniform01(r) + 0x1p-54, u2 = uniform01(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ------------------------------------------------------------ head structure */

/* What the queries and keys of one kv head share (pre-RoPE). */
typedef struct {
    double *sink_dir;  /* [d] unit, in slowly rotating channels              */
    double *topic;     /* [d] unit, in slowly rotating channels              */
    double *recency;   /* [d] unit, in fast rotating channels                */
    double *offset;    /* [d] constant key offsets: the outlier channels     */
    double q_sink;     /* weight of sink_dir in the queries                  */
    double q_topic;    /* weight of topic in the queries                     */
} head_shape;

/* Channel pair i (< d/2) is channels i and i + d/2, rotated by angle pos*theta_i with
 * theta_i = base^(-2i/d): pairs near d/2 turn slowly, pairs near 0 fast. */
static void random_unit_in_pairs(rng *r, uint32_t d, uint32_t first_pair, uint32_t end_pair,
                                 double *out)
{
    double norm = 0.0;
    memset(out, 0, d * sizeof *out);
    for (uint32_t i = first_pair; i < end_pair; i++) {
        out[i] = normal(r);
        out[i + d / 2] = normal(r);
        norm += out[i] * out[i] + out[i + d / 2] * out[i + d / 2];
    }
    norm = sqrt(norm);
    for (uint32_t i = 0; i < d; i++)
        out[i] /= norm;
}

static void make_head_shape(const gen_config *c, uint32_t layer, uint32_t g, head_shape *h)
{
    const uint32_t d = c->head_dim, half = d / 2;
    rng r = rng_for(c, layer, FOR_HEAD, 0, g);
    random_unit_in_pairs(&r, d, half - d / 8, half, h->sink_dir);
    random_unit_in_pairs(&r, d, half - d / 8, half, h->topic);
    /* the topic orthogonal to the sink direction: needles and sinks do not interfere */
    double dot = 0.0, norm = 0.0;
    for (uint32_t i = 0; i < d; i++)
        dot += h->topic[i] * h->sink_dir[i];
    for (uint32_t i = 0; i < d; i++) {
        h->topic[i] -= dot * h->sink_dir[i];
        norm += h->topic[i] * h->topic[i];
    }
    for (uint32_t i = 0; i < d; i++)
        h->topic[i] /= sqrt(norm);
    random_unit_in_pairs(&r, d, 0, d / 8, h->recency);
    memset(h->offset, 0, d * sizeof *h->offset);
    /* outliers in the slowest pairs, distinct channels: they stay outliers after RoPE,
     * and shift the logits of a query almost alike for every key */
    for (uint32_t n = 0; n < c->outliers;) {
        uint32_t pair = half - d / 8 + (uint32_t)(uniform01(&r) * (d / 8));
        uint32_t ch = pair + (uniform01(&r) < 0.5 ? 0 : half);
        if (ch >= d || h->offset[ch] != 0.0)
            continue;
        h->offset[ch] = (uniform01(&r) < 0.5 ? -1.0 : 1.0) * uniform(&r, 6.0, 12.0);
        n++;
    }
    h->q_sink = uniform(&r, 2.5, 3.5);
    h->q_topic = uniform(&r, 2.0, 3.5);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

uint32_t gen_needles(const gen_config *c, uint32_t layer, uint32_t kv_head, uint32_t *pos)
{
    if (c->tokens <= c->sinks)
        return 0;
    rng r = rng_for(c, layer, FOR_NEEDLES, 0, kv_head);
    uint32_t span = c->tokens - c->sinks;
    for (uint32_t i = 0; i < c->needles; i++)
        pos[i] = c->sinks + (uint32_t)(uniform01(&r) * span);
    qsort(pos, c->needles, sizeof *pos, cmp_u32);
    uint32_t m = 0;
    for (uint32_t i = 0; i < c->needles; i++)
        if (m == 0 || pos[i] != pos[m - 1])
            pos[m++] = pos[i];
    return m;
}

/* Logit of needle number i (by depth) against the head's queries: 6 to 9. */
static double needle_logit(uint32_t i, uint32_t n)
{
    return 6.0 + 3.0 * (n > 1 ? (double)i / (double)(n - 1) : 0.5);
}

/* Llama's rotate-half RoPE of x[d] at position pos, written to out as f32. */
static void rope(const double *x, uint32_t d, const double *cosv, const double *sinv, float *out)
{
    const uint32_t half = d / 2;
    for (uint32_t i = 0; i < half; i++) {
        double a = x[i], b = x[i + half];
        out[i] = (float)(a * cosv[i] - b * sinv[i]);
        out[i + half] = (float)(b * cosv[i] + a * sinv[i]);
    }
}

int gen_rows(const gen_config *c, uint32_t layer, uint32_t first, uint32_t count, float *q,
             float *k, float *v)
{
    const uint32_t d = c->head_dim, half = d / 2, group = c->heads / c->kv_heads;
    const double sqrt_d = sqrt((double)d);
    /* scratch: 4 vectors per kv head, cos/sin, one pre-RoPE row, the needles */
    size_t n_needles_max = c->needles ? c->needles : 1;
    double *buf = malloc(((size_t)c->kv_heads * 4 * d + 2 * half + d) * sizeof *buf);
    uint32_t *needles = malloc((size_t)c->kv_heads * n_needles_max * sizeof *needles);
    uint32_t *n_needles = malloc((size_t)c->kv_heads * sizeof *n_needles);
    head_shape *shape = malloc((size_t)c->kv_heads * sizeof *shape);
    if (!buf || !needles || !n_needles || !shape) {
        free(buf);
        free(needles);
        free(n_needles);
        free(shape);
        return ADAMAS_ENOMEM;
    }
    for (uint32_t g = 0; g < c->kv_heads; g++) {
        double *base = buf + (size_t)g * 4 * d;
        shape[g] = (head_shape){.sink_dir = base, .topic = base + d, .recency = base + 2 * d,
                                .offset = base + 3 * d};
        make_head_shape(c, layer, g, &shape[g]);
        n_needles[g] = gen_needles(c, layer, g, needles + (size_t)g * n_needles_max);
    }
    double *cosv = buf + (size_t)c->kv_heads * 4 * d, *sinv = cosv + half, *x = sinv + half;

    const double recency_q = 2.0, recency_logit = 1.5;
    for (uint32_t t = 0; t < count; t++) {
        const uint32_t pos = first + t;
        for (uint32_t i = 0; i < half; i++) {
            double angle = (double)pos * pow(c->rope_base, -2.0 * i / d);
            cosv[i] = cos(angle);
            sinv[i] = sin(angle);
        }
        for (uint32_t h = 0; q && h < c->heads; h++) {
            const head_shape *s = &shape[h / group];
            rng r = rng_for(c, layer, FOR_QUERY, pos, h);
            for (uint32_t i = 0; i < d; i++)
                x[i] = 0.5 * normal(&r) + s->q_sink * s->sink_dir[i] + s->q_topic * s->topic[i] +
                       recency_q * s->recency[i];
            rope(x, d, cosv, sinv, q + ((size_t)t * c->heads + h) * d);
        }
        for (uint32_t g = 0; k && g < c->kv_heads; g++) {
            const head_shape *s = &shape[g];
            rng r = rng_for(c, layer, FOR_KEY, pos, g);
            double noise = 1.0, sink = 0.0, topic = 0.0;
            if (pos < c->sinks) {
                noise = 0.3;
                sink = 9.0 * sqrt_d / s->q_sink; /* logit about 9 */
            }
            const uint32_t *np = needles + (size_t)g * n_needles_max;
            for (uint32_t i = 0; i < n_needles[g]; i++)
                if (np[i] == pos) {
                    noise = 0.5;
                    topic = needle_logit(i, n_needles[g]) * sqrt_d / s->q_topic;
                }
            /* a heavy tail: 2% of the tokens somewhat relevant (logit 2.5 to 5) */
            double tail = uniform01(&r);
            if (topic == 0.0 && sink == 0.0 && tail < 0.02)
                topic = uniform(&r, 2.5, 5.0) * sqrt_d / s->q_topic;
            for (uint32_t i = 0; i < d; i++)
                x[i] = noise * normal(&r) + s->offset[i] + sink * s->sink_dir[i] +
                       topic * s->topic[i] + recency_logit * sqrt_d / recency_q * s->recency[i];
            rope(x, d, cosv, sinv, k + ((size_t)t * c->kv_heads + g) * d);
        }
        for (uint32_t g = 0; v && g < c->kv_heads; g++) {
            rng r = rng_for(c, layer, FOR_VALUE, pos, g);
            float scale = pos < c->sinks ? 0.05f : 1.0f; /* sinks carry little */
            float *row = v + ((size_t)t * c->kv_heads + g) * d;
            for (uint32_t i = 0; i < d; i++)
                row[i] = scale * (float)normal(&r);
        }
    }
    free(buf);
    free(needles);
    free(n_needles);
    free(shape);
    return ADAMAS_OK;
}

/* ------------------------------------------------------------------ writing */

int gen_write(const gen_config *c, const char *path,
              void (*progress)(uint32_t layers_done, void *arg), void *arg, char *err,
              size_t err_size)
{
    int st = gen_check(c, err, err_size);
    if (st)
        return st;
    const size_t n_spec = (size_t)c->layers * 3;
    dump_tensor_spec *spec = calloc(n_spec, sizeof *spec);
    char (*names)[32] = calloc(n_spec, sizeof *names);
    const uint32_t chunk = 256;
    size_t row_q = (size_t)c->heads * c->head_dim, row_kv = (size_t)c->kv_heads * c->head_dim;
    float *rows = malloc((size_t)chunk * row_q * sizeof *rows);
    if (!spec || !names || !rows) {
        free(spec);
        free(names);
        free(rows);
        snprintf(err, err_size, "out of memory");
        return ADAMAS_ENOMEM;
    }
    static const char which[3] = {'q', 'k', 'v'};
    for (uint32_t l = 0; l < c->layers; l++)
        for (int w = 0; w < 3; w++) {
            dump_tensor_spec *s = &spec[(size_t)l * 3 + w];
            snprintf(names[(size_t)l * 3 + w], sizeof names[0], "layers.%u.%c", l, which[w]);
            s->name = names[(size_t)l * 3 + w];
            s->dtype = c->dtype;
            s->rank = 3;
            s->shape[0] = c->tokens;
            s->shape[1] = w == 0 ? c->heads : c->kv_heads;
            s->shape[2] = c->head_dim;
        }
    char text[256];
    snprintf(text, sizeof text,
             "synthetic: seed %llu, %u sinks, %u needles per kv head, %u outlier channels, "
             "RoPE base %g",
             (unsigned long long)c->seed, c->sinks, c->needles, c->outliers, c->rope_base);
    dump_writer *w = NULL;
    st = dump_writer_open(&w, path, spec, n_spec, "adamas-gen", text, err, err_size);
    for (uint32_t l = 0; l < c->layers && !st; l++) {
        for (int which_tensor = 0; which_tensor < 3 && !st; which_tensor++)
            for (uint32_t first = 0; first < c->tokens && !st; first += chunk) {
                uint32_t m = c->tokens - first < chunk ? c->tokens - first : chunk;
                st = gen_rows(c, l, first, m, which_tensor == 0 ? rows : NULL,
                              which_tensor == 1 ? rows : NULL, which_tensor == 2 ? rows : NULL);
                if (st)
                    snprintf(err, err_size, "out of memory");
                else
                    st = dump_writer_put(w, rows,
                                         (size_t)m * (which_tensor == 0 ? row_q : row_kv));
            }
        if (!st && progress)
            progress(l + 1, arg);
    }
    int close_st = dump_writer_close(w);
    if (!st)
        st = close_st;
    free(spec);
    free(names);
    free(rows);
    return st;
}

/* dump.c - reading and writing attention dumps (safetensors; see dump.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump.h"

/* safetensors' own limit on the JSON header */
#define MAX_HEADER_BYTES (100u << 20)
/* JSON numbers are doubles: integers are exact up to 2^53 */
#define MAX_JSON_INT 9007199254740992.0

/* ------------------------------------------------------------------- dtypes */

typedef struct {
    const char *name;
    unsigned bytes;
    int adamas; /* the adamas_dtype, or -1 when the library does not store it */
} dtype_info;

/* Every dtype safetensors knows, so that other tensors of a dump can be checked. */
static const dtype_info dtypes[] = {
    {"F32", 4, ADAMAS_F32}, {"F16", 2, ADAMAS_F16}, {"BF16", 2, ADAMAS_BF16},
    {"F64", 8, -1},         {"I64", 8, -1},         {"U64", 8, -1},
    {"I32", 4, -1},         {"U32", 4, -1},         {"I16", 2, -1},
    {"U16", 2, -1},         {"I8", 1, -1},          {"U8", 1, -1},
    {"BOOL", 1, -1},        {"F8_E4M3", 1, -1},     {"F8_E5M2", 1, -1},
};

static const dtype_info *find_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dtypes[i].name, name))
            return &dtypes[i];
    return NULL;
}

const char *dump_dtype_name(adamas_dtype t)
{
    return t == ADAMAS_F16 ? "F16" : t == ADAMAS_BF16 ? "BF16" : "F32";
}

static size_t dtype_bytes(adamas_dtype t)
{
    return t == ADAMAS_F32 ? 4 : 2;
}

/* ------------------------------------------------------------------ reading */

/* One tensor entry of the header. */
typedef struct {
    const char *name; /* points into the parsed JSON */
    const dtype_info *dtype;
    uint32_t rank;
    uint64_t shape[8];
    uint64_t begin, end; /* byte offsets in the data section */
} entry;

static int format_error(dump_file *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
    return ADAMAS_EFORMAT;
}

/* A JSON number that is a whole number in [0, 2^53]. */
static bool json_count(const cJSON *x, uint64_t *out)
{
    if (!cJSON_IsNumber(x))
        return false;
    double v = x->valuedouble;
    if (!(v >= 0.0 && v <= MAX_JSON_INT) || v != (double)(uint64_t)v)
        return false;
    *out = (uint64_t)v;
    return true;
}

static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* Fill e from the header entry `item` (named item->string); data_size: bytes of
 * the data section. */
static int parse_entry(dump_file *d, const cJSON *item, uint64_t data_size, entry *e)
{
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item))
        return format_error(d, "tensor \"%s\": not a JSON object", name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return format_error(d, "tensor \"%s\": needs \"dtype\" (a string), \"shape\" and "
                               "\"data_offsets\" (arrays)", name);
    e->dtype = find_dtype(dtype->valuestring);
    if (!e->dtype)
        return format_error(d, "tensor \"%s\": unknown dtype \"%.32s\"", name,
                            dtype->valuestring);

    int rank = cJSON_GetArraySize(shape);
    if (rank > (int)(sizeof e->shape / sizeof e->shape[0]))
        return format_error(d, "tensor \"%s\": rank %d is beyond %zu", name, rank,
                            sizeof e->shape / sizeof e->shape[0]);
    e->rank = (uint32_t)rank;
    uint64_t bytes = e->dtype->bytes;
    const cJSON *dim;
    int i = 0;
    cJSON_ArrayForEach(dim, shape)
    {
        if (!json_count(dim, &e->shape[i]))
            return format_error(d, "tensor \"%s\": shape[%d] is not a whole number in "
                                   "[0, 2^53]", name, i);
        if (!mul_u64(bytes, e->shape[i], &bytes))
            return format_error(d, "tensor \"%s\": the size of its shape overflows", name);
        i++;
    }

    if (cJSON_GetArraySize(offsets) != 2 ||
        !json_count(cJSON_GetArrayItem(offsets, 0), &e->begin) ||
        !json_count(cJSON_GetArrayItem(offsets, 1), &e->end))
        return format_error(d, "tensor \"%s\": data_offsets is not [begin, end] of whole "
                               "numbers", name);
    if (e->begin > e->end)
        return format_error(d, "tensor \"%s\": data_offsets [%llu, %llu] end before they begin",
                            name, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > data_size)
        return format_error(d, "tensor \"%s\": data_offsets [%llu, %llu] go beyond the %llu "
                               "bytes of data (truncated file?)", name,
                            (unsigned long long)e->begin, (unsigned long long)e->end,
                            (unsigned long long)data_size);
    if (e->end - e->begin != bytes)
        return format_error(d, "tensor \"%s\": data_offsets hold %llu bytes, but shape and "
                               "dtype %s need %llu", name,
                            (unsigned long long)(e->end - e->begin), e->dtype->name,
                            (unsigned long long)bytes);
    return ADAMAS_OK;
}

/* __metadata__: an object of strings; "model" and "text" are kept. */
static int parse_metadata(dump_file *d, const cJSON *meta)
{
    if (!cJSON_IsObject(meta))
        return format_error(d, "__metadata__ is not a JSON object");
    const cJSON *item;
    cJSON_ArrayForEach(item, meta)
    {
        if (!cJSON_IsString(item))
            return format_error(d, "__metadata__ \"%s\" is not a string", item->string);
        char **slot = !strcmp(item->string, "model") ? &d->model
                      : !strcmp(item->string, "text") ? &d->text
                                                       : NULL;
        if (slot && !*slot) {
            *slot = strdup(item->valuestring);
            if (!*slot) {
                snprintf(d->error, sizeof d->error, "out of memory");
                return ADAMAS_ENOMEM;
            }
        }
    }
    return ADAMAS_OK;
}

static int by_offset(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

/* Every byte of the data section belongs to exactly one tensor, as safetensors
 * requires; names are unique.  Sorts e. */
static int check_layout(dump_file *d, entry *e, size_t n, uint64_t data_size)
{
    qsort(e, n, sizeof *e, by_name);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(e[i - 1].name, e[i].name))
            return format_error(d, "tensor \"%s\" appears twice", e[i].name);
    qsort(e, n, sizeof *e, by_offset);
    uint64_t covered = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin < covered)
            return format_error(d, "tensors \"%s\" and \"%s\" overlap", e[i - 1].name,
                                e[i].name);
        if (e[i].begin > covered)
            return format_error(d, "bytes [%llu, %llu) of the data belong to no tensor",
                                (unsigned long long)covered, (unsigned long long)e[i].begin);
        covered = e[i].end;
    }
    if (covered != data_size)
        return format_error(d, "bytes [%llu, %llu) of the data belong to no tensor",
                            (unsigned long long)covered, (unsigned long long)data_size);
    return ADAMAS_OK;
}

/* "layers.{i}.q" / ".k" / ".v": the layer and 0, 1, 2; false for other names. */
static bool layer_tensor_name(const char *name, uint32_t *layer, int *which)
{
    if (strncmp(name, "layers.", 7))
        return false;
    const char *p = name + 7;
    uint64_t i = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        i = i * 10 + (uint64_t)(*p - '0');
    if (digits == 0 || digits > 9 || (digits > 1 && p[-digits] == '0'))
        return false;
    if (p[0] != '.' || !p[1] || p[2])
        return false;
    const char *names = "qkv", *c = strchr(names, p[1]);
    if (!c)
        return false;
    *layer = (uint32_t)i;
    *which = (int)(c - names);
    return true;
}

static bool head_dim_ok(uint64_t d)
{
    return d >= ADAMAS_MIN_HEAD_DIM && d <= ADAMAS_MAX_HEAD_DIM && (d & (d - 1)) == 0;
}

/* The q/k/v tensors of every layer, their shapes and dtypes. */
static int collect_layers(dump_file *d, const entry *e, size_t n, const unsigned char *data)
{
    static const char *which_name[3] = {"q", "k", "v"};
    uint32_t n_layers = 0, layer;
    size_t n_qkv = 0;
    int which;
    for (size_t i = 0; i < n; i++)
        if (layer_tensor_name(e[i].name, &layer, &which)) {
            n_qkv++;
            if (layer >= n_layers)
                n_layers = layer + 1;
        }
    if (n_qkv == 0)
        return format_error(d, "no tensor named layers.0.q: not an attention dump");
    /* Names are unique, so when the layers named need more tensors than there are,
     * one of the first n_qkv/3 + 1 layers lacks one: look only there. */
    uint32_t n_slots = (uint64_t)n_layers * 3 <= n_qkv ? n_layers : (uint32_t)(n_qkv / 3 + 1);
    const entry **slot = calloc((size_t)n_slots * 3, sizeof *slot);
    d->q = calloc(n_slots, sizeof *d->q);
    d->k = calloc(n_slots, sizeof *d->k);
    d->v = calloc(n_slots, sizeof *d->v);
    if (!slot || !d->q || !d->k || !d->v) {
        free(slot);
        snprintf(d->error, sizeof d->error, "out of memory");
        return ADAMAS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (layer_tensor_name(e[i].name, &layer, &which) && layer < n_slots)
            slot[(size_t)layer * 3 + which] = &e[i];

    int st = ADAMAS_OK;
    uint64_t tokens = 0, heads = 0, kv_heads = 0, dim = 0;
    for (uint32_t l = 0; l < n_slots && !st; l++)
        for (int w = 0; w < 3 && !st; w++) {
            const entry *t = slot[(size_t)l * 3 + w];
            if (!t) {
                st = format_error(d, "missing tensor layers.%u.%s", l, which_name[w]);
                break;
            }
            if (t->dtype->adamas < 0) {
                st = format_error(d, "tensor \"%s\": dtype %s is not F32, F16 or BF16", t->name,
                                  t->dtype->name);
                break;
            }
            if (t->rank != 3) {
                st = format_error(d, "tensor \"%s\": rank %u, expected 3 ([tokens, heads, "
                                     "head_dim])", t->name, t->rank);
                break;
            }
            if (l == 0 && w == 0) {
                tokens = t->shape[0];
                heads = t->shape[1];
                dim = t->shape[2];
            }
            if (l == 0 && w == 1)
                kv_heads = t->shape[1];
            uint64_t want_heads = w == 0 ? heads : kv_heads;
            if (t->shape[0] != tokens || t->shape[1] != want_heads || t->shape[2] != dim) {
                st = format_error(d, "tensor \"%s\": shape [%llu, %llu, %llu], expected [%llu, "
                                     "%llu, %llu] as in layers.0", t->name,
                                  (unsigned long long)t->shape[0],
                                  (unsigned long long)t->shape[1],
                                  (unsigned long long)t->shape[2], (unsigned long long)tokens,
                                  (unsigned long long)want_heads, (unsigned long long)dim);
                break;
            }
            dump_tensor *dst = w == 0 ? &d->q[l] : w == 1 ? &d->k[l] : &d->v[l];
            dst->dtype = (adamas_dtype)t->dtype->adamas;
            dst->data = data + t->begin;
            dst->row_len = (size_t)(t->shape[1] * t->shape[2]);
        }
    free(slot);
    if (st)
        return st;
    if (tokens == 0 || tokens >= UINT32_MAX)
        return format_error(d, "layers.0.q: %llu tokens (1 to %u supported)",
                            (unsigned long long)tokens, UINT32_MAX - 1);
    if (heads == 0 || kv_heads == 0 || heads > UINT32_MAX || heads % kv_heads)
        return format_error(d, "%llu query heads and %llu kv heads: the query heads must be "
                               "a non-zero multiple of the kv heads",
                            (unsigned long long)heads, (unsigned long long)kv_heads);
    if (!head_dim_ok(dim))
        return format_error(d, "head_dim %llu is not a power of two in [%d, %d]",
                            (unsigned long long)dim, ADAMAS_MIN_HEAD_DIM, ADAMAS_MAX_HEAD_DIM);
    d->n_layers = n_layers;
    d->n_tokens = (uint32_t)tokens;
    d->n_heads = (uint32_t)heads;
    d->n_kv_heads = (uint32_t)kv_heads;
    d->head_dim = (uint32_t)dim;
    return ADAMAS_OK;
}

/* Parse and check the header of the file's bytes base[size]. */
static int parse_header(dump_file *d, const unsigned char *base, size_t size)
{
    if (size < 8)
        return format_error(d, "%zu bytes: too short for the 8-byte header length", size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | base[i];
    if (header_len > size - 8)
        return format_error(d, "header length %llu goes beyond the file (%zu bytes)",
                            (unsigned long long)header_len, size);
    if (header_len > MAX_HEADER_BYTES)
        return format_error(d, "header length %llu is beyond safetensors' limit of %u bytes",
                            (unsigned long long)header_len, MAX_HEADER_BYTES);
    const char *header = (const char *)base + 8;
    if (header_len < 2 || header[0] != '{')
        return format_error(d, "the header is not a JSON object");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, (size_t)header_len, &end, 0);
    if (!root)
        return format_error(d, "the header is not valid JSON (near byte %td of %llu)",
                            end ? end - header : (ptrdiff_t)0, (unsigned long long)header_len);
    /* safetensors pads the header with spaces */
    for (const char *p = end; p < header + header_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return format_error(d, "the header has bytes after its JSON object (at byte %td)",
                                p - header);
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return format_error(d, "the header is not a JSON object");
    }

    const uint64_t data_size = size - 8 - header_len;
    const unsigned char *data = base + 8 + header_len;
    size_t n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) n++;
    /* at most one entry per 2 header bytes: bounded by the file */
    entry *e = calloc(n ? n : 1, sizeof *e);
    if (!e) {
        cJSON_Delete(root);
        snprintf(d->error, sizeof d->error, "out of memory");
        return ADAMAS_ENOMEM;
    }
    int st = ADAMAS_OK;
    size_t n_tensors = 0;
    cJSON_ArrayForEach(item, root)
    {
        if (!item->string) {
            st = format_error(d, "the header has an entry without a name");
            break;
        }
        if (!strcmp(item->string, "__metadata__"))
            st = parse_metadata(d, item);
        else
            st = parse_entry(d, item, data_size, &e[n_tensors++]);
        if (st)
            break;
    }
    if (!st)
        st = check_layout(d, e, n_tensors, data_size);
    if (!st)
        st = collect_layers(d, e, n_tensors, data);
    free(e);
    cJSON_Delete(root);
    return st;
}

/* parse_header, and on failure dump_close with the message kept. */
static int parse_or_close(dump_file *d, const void *bytes, size_t size)
{
    int st = parse_header(d, bytes, size);
    if (st) {
        char msg[sizeof d->error];
        memcpy(msg, d->error, sizeof msg);
        dump_close(d);
        memcpy(d->error, msg, sizeof msg);
    }
    return st;
}

int dump_open(const char *path, dump_file *d)
{
    memset(d, 0, sizeof *d);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(d->error, sizeof d->error, "cannot open: %s", strerror(errno));
        return ADAMAS_EIO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        snprintf(d->error, sizeof d->error, "cannot read: %s", strerror(errno));
        close(fd);
        return ADAMAS_EIO;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(d->error, sizeof d->error, "not a regular file");
        close(fd);
        return ADAMAS_EIO;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        snprintf(d->error, sizeof d->error, "file too large to map");
        return ADAMAS_EIO;
    }
    d->map_size = (size_t)sb.st_size;
    if (d->map_size > 0) {
        void *m = mmap(NULL, d->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            snprintf(d->error, sizeof d->error, "cannot map %zu bytes: %s", d->map_size,
                     strerror(errno));
            close(fd);
            d->map_size = 0;
            return ADAMAS_EIO;
        }
        d->map = m;
    }
    close(fd);
    return parse_or_close(d, d->map, d->map_size);
}

int dump_parse(const void *bytes, size_t size, dump_file *d)
{
    memset(d, 0, sizeof *d);
    if (!bytes && size) {
        snprintf(d->error, sizeof d->error, "no bytes given");
        return ADAMAS_EINVAL;
    }
    return parse_or_close(d, bytes, size);
}

void dump_close(dump_file *d)
{
    if (!d)
        return;
    if (d->map)
        munmap(d->map, d->map_size);
    free(d->q);
    free(d->k);
    free(d->v);
    free(d->model);
    free(d->text);
    memset(d, 0, sizeof *d);
}

void dump_read_rows(const dump_tensor *t, uint32_t first, uint32_t count, float *out)
{
    size_t n = (size_t)count * t->row_len, esize = dtype_bytes(t->dtype);
    const unsigned char *p = t->data + (size_t)first * t->row_len * esize;
    for (size_t i = 0; i < n; i++, p += esize) {
        if (t->dtype == ADAMAS_F32) {
            uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                            (uint32_t)p[3] << 24;
            memcpy(&out[i], &bits, sizeof bits);
        } else {
            uint16_t h = (uint16_t)(p[0] | p[1] << 8);
            out[i] = t->dtype == ADAMAS_F16 ? adamas_f16_to_f32(h) : adamas_bf16_to_f32(h);
        }
    }
}

/* ------------------------------------------------------------------ writing */

struct dump_writer {
    FILE *f;
    char *path;
    const dump_tensor_spec *spec;
    size_t n_spec;
    size_t current;   /* tensor being filled                                 */
    uint64_t left;    /* elements still to put into it                       */
    int status;       /* first failure, kept                                 */
    char *err;
    size_t err_size;
};

static int writer_fail(dump_writer *w, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (w->err && w->err_size)
        vsnprintf(w->err, w->err_size, fmt, ap);
    va_end(ap);
    if (!w->status)
        w->status = status;
    return status;
}

static uint64_t spec_elements(const dump_tensor_spec *s)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < s->rank; i++)
        n *= s->shape[i];
    return n;
}

/* Skip tensors with no elements left. */
static void writer_advance(dump_writer *w)
{
    while (w->left == 0 && w->current < w->n_spec) {
        w->current++;
        if (w->current < w->n_spec)
            w->left = spec_elements(&w->spec[w->current]);
    }
}

int dump_writer_open(dump_writer **out, const char *path, const dump_tensor_spec *spec,
                     size_t n, const char *model, const char *text, char *err, size_t err_size)
{
    dump_writer tmp = {.err = err, .err_size = err_size};
    *out = NULL;
    /* sizes and offsets, checked */
    uint64_t offset = 0;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return writer_fail(&tmp, ADAMAS_ENOMEM, "out of memory");
    if (model || text) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta || (model && !cJSON_AddStringToObject(meta, "model", model)) ||
            (text && !cJSON_AddStringToObject(meta, "text", text))) {
            cJSON_Delete(root);
            return writer_fail(&tmp, ADAMAS_ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < n; i++) {
        const dump_tensor_spec *s = &spec[i];
        uint64_t bytes = dtype_bytes(s->dtype);
        bool ok = s->name && s->rank >= 1 && s->rank <= 4 && (unsigned)s->dtype <= ADAMAS_BF16;
        for (uint32_t j = 0; ok && j < s->rank; j++)
            ok = s->shape[j] <= (uint64_t)MAX_JSON_INT && mul_u64(bytes, s->shape[j], &bytes);
        if (!ok || offset + bytes < offset || offset + bytes > (uint64_t)MAX_JSON_INT) {
            cJSON_Delete(root);
            return writer_fail(&tmp, ADAMAS_EINVAL, "tensor %zu (%s): bad name, rank, dtype or "
                                                    "size", i, s->name ? s->name : "NULL");
        }
        cJSON *t = cJSON_AddObjectToObject(root, s->name);
        cJSON *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        bool built = t && shape && offs && cJSON_AddStringToObject(t, "dtype",
                                                                   dump_dtype_name(s->dtype));
        for (uint32_t j = 0; built && j < s->rank; j++)
            built = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)s->shape[j]));
        built = built && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
                cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + bytes)));
        if (!built || !cJSON_AddItemToObject(t, "shape", shape)) {
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            cJSON_Delete(root);
            return writer_fail(&tmp, ADAMAS_ENOMEM, "out of memory");
        }
        if (!cJSON_AddItemToObject(t, "data_offsets", offs)) {
            cJSON_Delete(offs);
            cJSON_Delete(root);
            return writer_fail(&tmp, ADAMAS_ENOMEM, "out of memory");
        }
        offset += bytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json)
        return writer_fail(&tmp, ADAMAS_ENOMEM, "out of memory");

    dump_writer *w = calloc(1, sizeof *w);
    char *path_copy = strdup(path);
    if (!w || !path_copy) {
        free(w);
        free(path_copy);
        free(json);
        return writer_fail(&tmp, ADAMAS_ENOMEM, "out of memory");
    }
    *w = tmp;
    w->path = path_copy;
    w->spec = spec;
    w->n_spec = n;
    w->f = fopen(path, "wb");
    if (!w->f) {
        writer_fail(w, ADAMAS_EIO, "cannot create %s: %s", path, strerror(errno));
        free(json);
        free(w->path);
        free(w);
        return ADAMAS_EIO;
    }
    /* the header padded with spaces to a multiple of 8 bytes, as safetensors writes it */
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++)
        len_bytes[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len_bytes, 1, 8, w->f) == 8 && fwrite(json, 1, len, w->f) == len;
    for (size_t i = len; ok && i < padded; i++)
        ok = fputc(' ', w->f) != EOF;
    free(json);
    if (!ok)
        writer_fail(w, ADAMAS_EIO, "writing %s: %s", path, strerror(errno));
    w->current = 0;
    w->left = n ? spec_elements(&spec[0]) : 0;
    writer_advance(w);
    *out = w;
    return w->status;
}

int dump_writer_put(dump_writer *w, const float *x, size_t count)
{
    if (w->status)
        return w->status;
    unsigned char buf[4096];
    while (count > 0) {
        writer_advance(w);
        if (w->current >= w->n_spec)
            return writer_fail(w, ADAMAS_EINVAL, "%s: more data than the tensors declared",
                               w->path);
        adamas_dtype t = w->spec[w->current].dtype;
        size_t esize = dtype_bytes(t), per_buf = sizeof buf / esize;
        size_t m = count < per_buf ? count : per_buf;
        if (m > w->left)
            m = (size_t)w->left;
        for (size_t i = 0; i < m; i++) {
            unsigned char *p = buf + i * esize;
            if (t == ADAMAS_F32) {
                uint32_t bits;
                memcpy(&bits, &x[i], sizeof bits);
                for (int b = 0; b < 4; b++)
                    p[b] = (unsigned char)(bits >> (8 * b));
            } else {
                uint16_t h = t == ADAMAS_F16 ? adamas_f32_to_f16(x[i]) : adamas_f32_to_bf16(x[i]);
                p[0] = (unsigned char)h;
                p[1] = (unsigned char)(h >> 8);
            }
        }
        if (fwrite(buf, esize, m, w->f) != m)
            return writer_fail(w, ADAMAS_EIO, "writing %s: %s", w->path, strerror(errno));
        w->left -= m;
        x += m;
        count -= m;
    }
    return ADAMAS_OK;
}

int dump_writer_close(dump_writer *w)
{
    if (!w)
        return ADAMAS_OK;
    writer_advance(w);
    if (!w->status && w->current < w->n_spec)
        writer_fail(w, ADAMAS_EINVAL, "%s: tensor %s is missing %llu elements", w->path,
                    w->spec[w->current].name, (unsigned long long)w->left);
    if (fclose(w->f) != 0 && !w->status)
        writer_fail(w, ADAMAS_EIO, "writing %s: %s", w->path, strerror(errno));
    int st = w->status;
    if (st)
        remove(w->path);
    free(w->path);
    free(w);
    return st;
}

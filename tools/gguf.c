/* gguf.c - reading GGUF files (see gguf.h). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"

/* ------------------------------------------------------------------- types */

static const struct {
    const char *name;
    unsigned bytes; /* 0: variable (string) or container (array) */
} value_types[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = {"uint8", 1},     [GGUF_TYPE_INT8] = {"int8", 1},
    [GGUF_TYPE_UINT16] = {"uint16", 2},   [GGUF_TYPE_INT16] = {"int16", 2},
    [GGUF_TYPE_UINT32] = {"uint32", 4},   [GGUF_TYPE_INT32] = {"int32", 4},
    [GGUF_TYPE_FLOAT32] = {"float32", 4}, [GGUF_TYPE_BOOL] = {"bool", 1},
    [GGUF_TYPE_STRING] = {"string", 0},   [GGUF_TYPE_ARRAY] = {"array", 0},
    [GGUF_TYPE_UINT64] = {"uint64", 8},   [GGUF_TYPE_INT64] = {"int64", 8},
    [GGUF_TYPE_FLOAT64] = {"float64", 8},
};

const char *gguf_type_name(uint32_t type)
{
    return type < GGUF_TYPE_COUNT ? value_types[type].name : "unknown";
}

/* Every ggml type a GGUF file may hold, so that any file's sizes can be checked:
 * values per block and bytes per block.  Holes are types ggml has retired. */
static const struct {
    const char *name;
    unsigned block, bytes;
} ggml_types[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},         [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},     [6] = {"Q5_0", 32, 22},      [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 36},      [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},   [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110},  [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},        [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},        [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},  [30] = {"BF16", 1, 2},       [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},  [39] = {"MXFP4", 32, 17},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *gguf_ggml_type_name(uint32_t type)
{
    return type < N_GGML_TYPES && ggml_types[type].name ? ggml_types[type].name : "unknown";
}

/* ------------------------------------------------------------------ cursor */

/* Reads little-endian fields from [p, end), failing with a message once it would
 * pass the end. */
typedef struct {
    const unsigned char *base, *p, *end;
    gguf_file *f;
} cursor;

static int fail(gguf_file *f, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->error, sizeof f->error, fmt, ap);
    va_end(ap);
    return status;
}

static uint64_t left(const cursor *c)
{
    return (uint64_t)(c->end - c->p);
}

static uint64_t at(const cursor *c)
{
    return (uint64_t)(c->p - c->base);
}

static uint64_t load_le(const unsigned char *p, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = bytes; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static int read_uint(cursor *c, unsigned bytes, uint64_t *out, const char *what)
{
    if (left(c) < bytes)
        return fail(c->f, ADAMAS_EFORMAT, "%s at byte %llu: the file ends (truncated?)", what,
                    (unsigned long long)at(c));
    *out = load_le(c->p, bytes);
    c->p += bytes;
    return 0;
}

static int read_u32(cursor *c, uint32_t *out, const char *what)
{
    uint64_t v = 0;
    int st = read_uint(c, 4, &v, what);
    *out = (uint32_t)v;
    return st;
}

/* A string: its u64 length must fit in what is left of the file. */
static int read_str(cursor *c, gguf_str *out, const char *what)
{
    uint64_t len = 0;
    int st = read_uint(c, 8, &len, what);
    if (st)
        return st;
    if (len > left(c))
        return fail(c->f, ADAMAS_EFORMAT,
                    "%s at byte %llu: string length %llu goes beyond the file's %llu bytes left",
                    what, (unsigned long long)(at(c) - 8), (unsigned long long)len,
                    (unsigned long long)left(c));
    out->ptr = (const char *)c->p;
    out->len = len;
    c->p += len;
    return 0;
}

int gguf_str_eq(gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* For messages: a key or name cut to 64 bytes, non-printable bytes as '?'. */
static const char *printable(gguf_str s, char buf[72])
{
    size_t n = s.len < 64 ? (size_t)s.len : 64;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        buf[i] = ch >= 32 && ch < 127 ? (char)ch : '?';
    }
    strcpy(buf + n, s.len > 64 ? "..." : "");
    return buf;
}

/* ------------------------------------------------------------------ values */

/* Skip over one value of `type` (not an array) at the cursor. */
static int skip_value(cursor *c, uint32_t type, const char *what)
{
    if (type == GGUF_TYPE_STRING) {
        gguf_str s;
        return read_str(c, &s, what);
    }
    unsigned bytes = value_types[type].bytes;
    if (left(c) < bytes)
        return fail(c->f, ADAMAS_EFORMAT, "%s at byte %llu: the file ends (truncated?)", what,
                    (unsigned long long)at(c));
    c->p += bytes;
    return 0;
}

static int read_kv(cursor *c, gguf_kv *kv, uint64_t index)
{
    char what[160], name[72];
    snprintf(what, sizeof what, "key/value %llu", (unsigned long long)index);
    int st = read_str(c, &kv->key, what);
    if (st)
        return st;
    snprintf(what, sizeof what, "key \"%s\"", printable(kv->key, name));
    if ((st = read_u32(c, &kv->type, what)))
        return st;
    if (kv->type >= GGUF_TYPE_COUNT)
        return fail(c->f, ADAMAS_EFORMAT, "%s: unknown value type %u", what, kv->type);
    kv->n = 1;
    kv->elem_type = kv->type;
    if (kv->type != GGUF_TYPE_ARRAY) {
        kv->value = c->p;
        return skip_value(c, kv->type, what);
    }
    if ((st = read_u32(c, &kv->elem_type, what)) || (st = read_uint(c, 8, &kv->n, what)))
        return st;
    if (kv->elem_type >= GGUF_TYPE_COUNT)
        return fail(c->f, ADAMAS_EFORMAT, "%s: array of unknown value type %u", what,
                    kv->elem_type);
    if (kv->elem_type == GGUF_TYPE_ARRAY)
        return fail(c->f, ADAMAS_EFORMAT, "%s: arrays of arrays are not supported", what);
    /* every element takes at least one byte (a string at least its 8-byte length) */
    uint64_t min_bytes = kv->elem_type == GGUF_TYPE_STRING ? 8 : value_types[kv->elem_type].bytes;
    if (kv->n > left(c) / min_bytes)
        return fail(c->f, ADAMAS_EFORMAT,
                    "%s: array of %llu %s elements goes beyond the file's %llu bytes left", what,
                    (unsigned long long)kv->n, gguf_type_name(kv->elem_type),
                    (unsigned long long)left(c));
    kv->value = c->p;
    if (kv->elem_type != GGUF_TYPE_STRING) {
        c->p += kv->n * min_bytes;
        return 0;
    }
    for (uint64_t i = 0; i < kv->n; i++) {
        snprintf(what, sizeof what, "key \"%s\" element %llu", name, (unsigned long long)i);
        if ((st = skip_value(c, GGUF_TYPE_STRING, what)))
            return st;
    }
    return 0;
}

/* ----------------------------------------------------------------- tensors */

static int read_tensor_info(cursor *c, gguf_tensor *t, uint64_t index)
{
    char what[160], name[72];
    snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)index);
    int st = read_str(c, &t->name, what);
    if (st)
        return st;
    snprintf(what, sizeof what, "tensor \"%s\"", printable(t->name, name));
    if ((st = read_u32(c, &t->n_dims, what)))
        return st;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return fail(c->f, ADAMAS_EFORMAT, "%s: %u dimensions (1 to %d supported)", what,
                    t->n_dims, GGUF_MAX_DIMS);
    for (int i = 0; i < GGUF_MAX_DIMS; i++)
        t->ne[i] = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) {
        if ((st = read_uint(c, 8, &t->ne[i], what)))
            return st;
        if (t->ne[i] > (uint64_t)INT64_MAX)
            return fail(c->f, ADAMAS_EFORMAT, "%s: dimension %u is %llu (beyond INT64_MAX)",
                        what, i, (unsigned long long)t->ne[i]);
    }
    if ((st = read_u32(c, &t->type, what)) || (st = read_uint(c, 8, &t->offset, what)))
        return st;
    if (t->type >= N_GGML_TYPES || !ggml_types[t->type].name)
        return fail(c->f, ADAMAS_EFORMAT, "%s: unknown ggml type %u", what, t->type);
    unsigned block = ggml_types[t->type].block;
    if (t->ne[0] % block)
        return fail(c->f, ADAMAS_EFORMAT,
                    "%s: row of %llu values is not a whole number of %s blocks of %u", what,
                    (unsigned long long)t->ne[0], ggml_types[t->type].name, block);
    /* bytes = ne0/block*bytes * ne1 * ne2 * ne3, each product checked */
    uint64_t size = t->ne[0] / block * ggml_types[t->type].bytes;
    for (int i = 1; i < GGUF_MAX_DIMS; i++) {
        if (t->ne[i] && size > UINT64_MAX / t->ne[i])
            return fail(c->f, ADAMAS_EFORMAT, "%s: its size in bytes overflows", what);
        size *= t->ne[i];
    }
    t->size = size;
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

static int str_cmp(gguf_str a, gguf_str b)
{
    size_t n = a.len < b.len ? (size_t)a.len : (size_t)b.len;
    int r = memcmp(a.ptr, b.ptr, n);
    return r ? r : (a.len > b.len) - (a.len < b.len);
}

static int kv_by_key(const void *a, const void *b)
{
    return str_cmp((*(const gguf_kv *const *)a)->key, (*(const gguf_kv *const *)b)->key);
}

static int tensor_by_name(const void *a, const void *b)
{
    return str_cmp((*(const gguf_tensor *const *)a)->name, (*(const gguf_tensor *const *)b)->name);
}

/* Keys and tensor names unique; tensor data aligned, inside the data section and
 * not overlapping. */
static int check_layout(gguf_file *f)
{
    uint64_t n_max = f->n_kv > f->n_tensors ? f->n_kv : f->n_tensors;
    const void **order = malloc((n_max ? n_max : 1) * sizeof *order);
    if (!order)
        return fail(f, ADAMAS_ENOMEM, "out of memory");
    char name[72];
    int st = 0;
    for (uint64_t i = 0; i < f->n_kv; i++)
        order[i] = &f->kv[i];
    qsort(order, f->n_kv, sizeof *order, kv_by_key);
    for (uint64_t i = 1; i < f->n_kv && !st; i++) {
        const gguf_kv *a = order[i - 1], *b = order[i];
        if (!str_cmp(a->key, b->key))
            st = fail(f, ADAMAS_EFORMAT, "key \"%s\" appears twice", printable(b->key, name));
    }
    for (uint64_t i = 0; i < f->n_tensors && !st; i++)
        order[i] = &f->tensors[i];
    if (!st)
        qsort(order, f->n_tensors, sizeof *order, tensor_by_name);
    for (uint64_t i = 1; i < f->n_tensors && !st; i++) {
        const gguf_tensor *a = order[i - 1], *b = order[i];
        if (!str_cmp(a->name, b->name))
            st = fail(f, ADAMAS_EFORMAT, "tensor \"%s\" appears twice", printable(b->name, name));
    }
    uint64_t data_size = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors && !st; i++) {
        gguf_tensor *t = &f->tensors[i];
        printable(t->name, name);
        if (t->offset % f->alignment)
            st = fail(f, ADAMAS_EFORMAT, "tensor \"%s\": offset %llu is not a multiple of the "
                      "alignment %llu", name, (unsigned long long)t->offset,
                      (unsigned long long)f->alignment);
        else if (t->offset > data_size || t->size > data_size - t->offset)
            st = fail(f, ADAMAS_EFORMAT, "tensor \"%s\": bytes [%llu, +%llu) go beyond the %llu "
                      "bytes of data (truncated file?)", name, (unsigned long long)t->offset,
                      (unsigned long long)t->size, (unsigned long long)data_size);
        else
            t->data = f->base + f->data_offset + t->offset;
    }
    if (!st)
        qsort(order, f->n_tensors, sizeof *order, by_offset);
    for (uint64_t i = 1; i < f->n_tensors && !st; i++) {
        const gguf_tensor *a = order[i - 1], *b = order[i];
        if (a->offset + a->size > b->offset) {
            char other[72];
            st = fail(f, ADAMAS_EFORMAT, "tensors \"%s\" and \"%s\" overlap",
                      printable(a->name, other), printable(b->name, name));
        }
    }
    free(order);
    return st;
}

/* ------------------------------------------------------------------- parse */

static int parse(gguf_file *f)
{
    cursor c = {f->base, f->base, f->base + f->size, f};
    uint32_t magic;
    int st = read_u32(&c, &magic, "the magic number");
    if (st)
        return st;
    if (memcmp(f->base, "GGUF", 4))
        return fail(f, ADAMAS_EFORMAT, "not a GGUF file (the first bytes are not \"GGUF\")");
    if ((st = read_u32(&c, &f->version, "the version")))
        return st;
    if (f->version != 2 && f->version != 3)
        return fail(f, ADAMAS_EFORMAT, "GGUF version %u (2 and 3 are supported)", f->version);
    if ((st = read_uint(&c, 8, &f->n_tensors, "the tensor count")) ||
        (st = read_uint(&c, 8, &f->n_kv, "the key/value count")))
        return st;
    /* a key/value takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info at
     * least 8 + 4 + 8 + 4 + 8: counts beyond what the file can hold are refused before
     * anything is allocated for them */
    if (f->n_kv > left(&c) / 13)
        return fail(f, ADAMAS_EFORMAT, "%llu key/values cannot fit in the file's %zu bytes",
                    (unsigned long long)f->n_kv, f->size);
    if (f->n_tensors > left(&c) / 32)
        return fail(f, ADAMAS_EFORMAT, "%llu tensors cannot fit in the file's %zu bytes",
                    (unsigned long long)f->n_tensors, f->size);
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors)
        return fail(f, ADAMAS_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < f->n_kv; i++)
        if ((st = read_kv(&c, &f->kv[i], i)))
            return st;

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *align = gguf_find_kv(f, "general.alignment");
    if (align) {
        if (align->type != GGUF_TYPE_UINT32)
            return fail(f, ADAMAS_EFORMAT, "general.alignment is a %s, expected uint32",
                        gguf_type_name(align->type));
        f->alignment = load_le(align->value, 4);
        if (f->alignment == 0 || (f->alignment & (f->alignment - 1)))
            return fail(f, ADAMAS_EFORMAT, "general.alignment %llu is not a power of two",
                        (unsigned long long)f->alignment);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((st = read_tensor_info(&c, &f->tensors[i], i)))
            return st;
    /* the data section starts at the next multiple of the alignment */
    uint64_t end_of_infos = at(&c), pad = (f->alignment - end_of_infos % f->alignment) % f->alignment;
    f->data_offset = end_of_infos + pad;
    if (f->data_offset > f->size) {
        if (f->n_tensors)
            return fail(f, ADAMAS_EFORMAT, "the data section (at byte %llu) starts beyond the "
                        "end of the file (%zu bytes)", (unsigned long long)f->data_offset, f->size);
        f->data_offset = f->size; /* no tensors: the padding may be left out */
    }
    return check_layout(f);
}

int gguf_parse(const void *bytes, size_t size, gguf_file *f)
{
    memset(f, 0, sizeof *f);
    f->base = bytes;
    f->size = size;
    int st = bytes || !size ? parse(f) : fail(f, ADAMAS_EINVAL, "no bytes given");
    if (st) {
        char msg[sizeof f->error];
        memcpy(msg, f->error, sizeof msg);
        gguf_close(f);
        memcpy(f->error, msg, sizeof msg);
    }
    return st;
}

int gguf_open(const char *path, gguf_file *f)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fail(f, ADAMAS_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return fail(f, ADAMAS_EIO, "%s: not a regular file that can be mapped", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int err = errno;
            close(fd);
            return fail(f, ADAMAS_EIO, "cannot map %zu bytes of %s: %s", size, path,
                        strerror(err));
        }
    }
    close(fd);
    int st = gguf_parse(map, size, f);
    if (st) {
        if (map)
            munmap(map, size);
        return st;
    }
    f->map = map;
    return 0;
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->size);
    free(f->kv);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

/* ----------------------------------------------------------------- lookups */

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (gguf_str_eq(f->kv[i].key, key))
            return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (gguf_str_eq(f->tensors[i].name, name))
            return &f->tensors[i];
    return NULL;
}

static bool is_int_type(uint32_t t)
{
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static bool is_signed_type(uint32_t t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

/* Integer element i of values of type t starting at p. */
static int64_t int_at(const unsigned char *p, uint32_t t, uint64_t i, bool *negative_or_huge)
{
    unsigned bytes = value_types[t].bytes;
    uint64_t raw = load_le(p + i * bytes, bytes);
    if (!is_signed_type(t)) {
        *negative_or_huge = raw > (uint64_t)INT64_MAX;
        return (int64_t)(raw & (uint64_t)INT64_MAX);
    }
    unsigned shift = 64 - 8 * bytes;
    int64_t v = (int64_t)(raw << shift) >> shift;
    *negative_or_huge = v < 0;
    return v;
}

static double float_at(const unsigned char *p, uint32_t t, uint64_t i)
{
    if (t == GGUF_TYPE_FLOAT32) {
        uint32_t bits = (uint32_t)load_le(p + 4 * i, 4);
        float v;
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    if (t == GGUF_TYPE_FLOAT64) {
        uint64_t bits = load_le(p + 8 * i, 8);
        double v;
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    bool neg;
    int64_t v = int_at(p, t, i, &neg);
    return is_signed_type(t) || !neg ? (double)v : (double)(uint64_t)v + 9223372036854775808.0;
}

int64_t gguf_array_int(const gguf_kv *kv, uint64_t i)
{
    bool neg;
    return int_at(kv->value, kv->elem_type, i, &neg);
}

double gguf_array_float(const gguf_kv *kv, uint64_t i)
{
    return float_at(kv->value, kv->elem_type, i);
}

static const gguf_kv *find_scalar(gguf_file *f, const char *key, const char *want, int *st)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    *st = 0;
    if (!kv)
        *st = fail(f, ADAMAS_EFORMAT, "missing key %s", key);
    else if (kv->type == GGUF_TYPE_ARRAY)
        *st = fail(f, ADAMAS_EFORMAT, "key %s is an array, expected a %s", key, want);
    return *st ? NULL : kv;
}

int gguf_get_u32(gguf_file *f, const char *key, uint32_t *out)
{
    int st;
    const gguf_kv *kv = find_scalar(f, key, "whole number", &st);
    if (!kv)
        return st;
    if (!is_int_type(kv->type))
        return fail(f, ADAMAS_EFORMAT, "key %s is a %s, expected a whole number", key,
                    gguf_type_name(kv->type));
    bool bad;
    int64_t v = int_at(kv->value, kv->type, 0, &bad);
    if (bad || v > (int64_t)UINT32_MAX)
        return fail(f, ADAMAS_EFORMAT, "key %s: value out of the range of uint32", key);
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(gguf_file *f, const char *key, float *out)
{
    int st;
    const gguf_kv *kv = find_scalar(f, key, "number", &st);
    if (!kv)
        return st;
    if (!is_int_type(kv->type) && kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)
        return fail(f, ADAMAS_EFORMAT, "key %s is a %s, expected a number", key,
                    gguf_type_name(kv->type));
    double v = float_at(kv->value, kv->type, 0);
    if (!isfinite(v) || fabs(v) > 3.4e38)
        return fail(f, ADAMAS_EFORMAT, "key %s: %g is not a finite float32", key, v);
    *out = (float)v;
    return 0;
}

int gguf_get_bool(gguf_file *f, const char *key, int *out)
{
    int st;
    const gguf_kv *kv = find_scalar(f, key, "bool", &st);
    if (!kv)
        return st;
    if (kv->type != GGUF_TYPE_BOOL)
        return fail(f, ADAMAS_EFORMAT, "key %s is a %s, expected a bool", key,
                    gguf_type_name(kv->type));
    *out = kv->value[0] != 0;
    return 0;
}

int gguf_get_str(gguf_file *f, const char *key, gguf_str *out)
{
    int st;
    const gguf_kv *kv = find_scalar(f, key, "string", &st);
    if (!kv)
        return st;
    if (kv->type != GGUF_TYPE_STRING)
        return fail(f, ADAMAS_EFORMAT, "key %s is a %s, expected a string", key,
                    gguf_type_name(kv->type));
    out->len = load_le(kv->value, 8);
    out->ptr = (const char *)kv->value + 8;
    return 0;
}

void gguf_array_strings(const gguf_kv *kv, gguf_str *out)
{
    const unsigned char *p = kv->value;
    for (uint64_t i = 0; i < kv->n; i++) {
        out[i].len = load_le(p, 8);
        out[i].ptr = (const char *)p + 8;
        p += 8 + out[i].len;
    }
}

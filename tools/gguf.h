/*
 * gguf.h - reading GGUF files (version 2 and 3), the model format of llama.cpp.
 *
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv    x  key (string), u32 type, value
 *   n_tensors x name (string), u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset
 *   padding to `general.alignment` (default 32), then the tensor data
 *
 * Strings are a u64 length and that many bytes (no terminator); an array value is a
 * u32 element type, a u64 count and the elements.  Everything is little-endian.
 *
 * gguf_open maps the file read-only and checks every count, length, dimension, offset
 * and size against the file before it uses it, so a malformed or hostile file is
 * refused with a message (ADAMAS_EFORMAT) and never makes the reader allocate more
 * than the file's own size justifies.  Strings and tensor data point into the mapping.
 */
#ifndef ADAMAS_GGUF_H
#define ADAMAS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "adamas.h"

enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* The ggml tensor types this project reads; gguf_ggml_type_name names the others. */
enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q8_0 = 8,
};

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGML_Q8_0_BLOCK 32        /* values per Q8_0 block                       */
#define GGML_Q8_0_BLOCK_BYTES 34  /* f16 scale + 32 int8                         */

/* A string inside the mapping: len bytes at ptr, not NUL-terminated. */
typedef struct {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct {
    gguf_str key;
    uint32_t type;               /* enum gguf_type                                   */
    uint32_t elem_type;          /* arrays: type of the elements                     */
    uint64_t n;                  /* arrays: element count; scalars: 1                */
    const unsigned char *value;  /* scalar value, or the first element of an array   */
} gguf_kv;

typedef struct {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];  /* ne[0]: elements per row (innermost); unused: 1   */
    uint32_t type;               /* ggml type                                        */
    uint64_t offset;             /* from the start of the data section               */
    uint64_t size;               /* bytes                                            */
    const unsigned char *data;   /* inside the mapping                               */
} gguf_tensor;

typedef struct {
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;                 /* [n_kv]                                           */
    gguf_tensor *tensors;        /* [n_tensors]                                      */
    uint64_t alignment;
    uint64_t data_offset;        /* start of the data section in the file            */
    const unsigned char *base;   /* the file's bytes                                 */
    size_t size;
    void *map;                   /* the mapping when opened from a file              */
    char error[512];             /* why gguf_open / gguf_parse failed                */
} gguf_file;

/* Map and check a GGUF file.  Returns 0, or ADAMAS_EIO (cannot open, read or map),
 * ADAMAS_EFORMAT (malformed; f->error says what and where), ADAMAS_ENOMEM.  On
 * failure nothing stays mapped or allocated and f->error holds the message. */
int gguf_open(const char *path, gguf_file *f);

/* The same checks on size bytes in memory (kept by the caller while f is in use). */
int gguf_parse(const void *bytes, size_t size, gguf_file *f);

/* Unmap and free; a zeroed or failed gguf_file is fine. */
void gguf_close(gguf_file *f);

/* The key/value or tensor of that name, or NULL. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Name of a value type ("uint32", "string", ...) and of a ggml tensor type ("F32",
 * "Q4_K", ...); "unknown" for others. */
const char *gguf_type_name(uint32_t type);
const char *gguf_ggml_type_name(uint32_t type);

/* Typed reads of a scalar value, converting between integer types when the value
 * fits: 0, or ADAMAS_EFORMAT (wrong type, out of range) with a message in f->error.
 * A missing key is ADAMAS_EFORMAT too; test with gguf_find_kv first for optional keys. */
int gguf_get_u32(gguf_file *f, const char *key, uint32_t *out);
int gguf_get_f32(gguf_file *f, const char *key, float *out);
int gguf_get_bool(gguf_file *f, const char *key, int *out);
int gguf_get_str(gguf_file *f, const char *key, gguf_str *out);

/* Element i of an array of integers or floats, widened: no checks beyond i < n. */
int64_t gguf_array_int(const gguf_kv *kv, uint64_t i);
double gguf_array_float(const gguf_kv *kv, uint64_t i);

/* Every string of an array of strings: out[kv->n] (the parse has checked them). */
void gguf_array_strings(const gguf_kv *kv, gguf_str *out);

/* A gguf_str equals a C string. */
int gguf_str_eq(gguf_str s, const char *c);

#endif

/*
 * dump.h - attention dumps: per layer the post-RoPE queries, keys and values of one
 * text, in a safetensors file (README.md, "Attention dumps").
 *
 *   layers.{i}.q  [n_tokens][n_heads][head_dim]     F32, F16 or BF16
 *   layers.{i}.k  [n_tokens][n_kv_heads][head_dim]
 *   layers.{i}.v  [n_tokens][n_kv_heads][head_dim]
 *
 * The query at position p attends to keys 0..p.  Other tensors may be present (they
 * are checked like these and otherwise ignored); __metadata__ may carry "model" and
 * "text".  Reading maps the file and checks every size against it before use, so a
 * malformed file is refused with a message and never makes the reader allocate more
 * than the file's own size.
 */
#ifndef ADAMAS_DUMP_H
#define ADAMAS_DUMP_H

#include <stddef.h>
#include <stdint.h>

#include "adamas.h"

/* One tensor of the dump as stored (little-endian, possibly unaligned). */
typedef struct {
    adamas_dtype dtype;
    const unsigned char *data; /* [rows][row_len] of dtype, inside the mapping */
    size_t row_len;            /* elements per token: heads * head_dim         */
} dump_tensor;

typedef struct {
    uint32_t n_layers, n_tokens, n_heads, n_kv_heads, head_dim;
    char *model, *text;      /* from __metadata__; NULL when absent           */
    dump_tensor *q, *k, *v;  /* [n_layers] each                               */
    void *map;               /* the whole file, read-only                     */
    size_t map_size;
    char error[512];         /* why dump_open failed                          */
} dump_file;

/* Map and check a dump.  Returns 0, or ADAMAS_EIO (cannot open or read),
 * ADAMAS_EFORMAT (malformed; d->error says where), ADAMAS_ENOMEM.  On failure
 * nothing stays mapped or allocated and d->error holds the message. */
int dump_open(const char *path, dump_file *d);

/* The same checks on size bytes in memory (kept by the caller while d is in use);
 * ADAMAS_EINVAL for bytes NULL with size > 0. */
int dump_parse(const void *bytes, size_t size, dump_file *d);

/* Unmap and free; a zeroed or failed dump_file is fine. */
void dump_close(dump_file *d);

/* Tokens first..first+count-1 of tensor t widened to f32: out[count][t->row_len]. */
void dump_read_rows(const dump_tensor *t, uint32_t first, uint32_t count, float *out);

/* Name of a dtype as safetensors spells it ("F32", "F16", "BF16"). */
const char *dump_dtype_name(adamas_dtype t);

/* --------------------------------------------------------------------- writing */

/* One tensor to write: its name, dtype and shape (rank 1..4). */
typedef struct {
    const char *name;
    adamas_dtype dtype;
    uint32_t rank;
    uint64_t shape[4];
} dump_tensor_spec;

typedef struct dump_writer dump_writer;

/* Create `path` and write the header for tensors spec[n] (their data follow in this
 * order); model and text (either may be NULL) go into __metadata__.  Returns 0 or
 * ADAMAS_EIO / ADAMAS_EINVAL / ADAMAS_ENOMEM.  This and the calls below leave a
 * message in err[err_size] (kept by the writer) when they fail. */
int dump_writer_open(dump_writer **out, const char *path, const dump_tensor_spec *spec,
                     size_t n, const char *model, const char *text, char *err,
                     size_t err_size);

/* Append `count` f32 elements of data, rounded to the current tensor's dtype; tensors
 * are filled in the order given to dump_writer_open, a call may span two of them.
 * ADAMAS_EINVAL: more elements than declared; ADAMAS_EIO: writing failed. */
int dump_writer_put(dump_writer *w, const float *x, size_t count);

/* Finish the file: ADAMAS_EINVAL if fewer elements than declared were put, ADAMAS_EIO
 * if writing failed (then the file is removed).  Frees w in every case (NULL is
 * ignored: returns 0). */
int dump_writer_close(dump_writer *w);

#endif

/* gguf_build.h - GGUF files written byte by byte for the tests: valid ones to read
 * back, and every kind of broken one. */
#ifndef ADAMAS_GGUF_BUILD_H
#define ADAMAS_GGUF_BUILD_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    unsigned char *bytes;
    size_t n, cap;
} gbuf;

void gb_free(gbuf *b);
void gb_raw(gbuf *b, const void *p, size_t n);
void gb_u8(gbuf *b, uint8_t v);
void gb_u32(gbuf *b, uint32_t v);
void gb_u64(gbuf *b, uint64_t v);
void gb_f32(gbuf *b, float v);
void gb_str(gbuf *b, const char *s);
/* zero bytes up to a multiple of align */
void gb_pad(gbuf *b, size_t align);

/* header: magic, version 3, counts */
void gb_header(gbuf *b, uint64_t n_tensors, uint64_t n_kv);
/* key and type of a scalar (its value follows with gb_u32, ...) */
void gb_key(gbuf *b, const char *key, uint32_t type);
void gb_kv_u32(gbuf *b, const char *key, uint32_t v);
void gb_kv_f32(gbuf *b, const char *key, float v);
void gb_kv_str(gbuf *b, const char *key, const char *v);
void gb_kv_strings(gbuf *b, const char *key, const char *const *v, uint64_t n);
/* tensor info of a matrix or vector: dims in ggml order (ne0 first) */
void gb_tensor(gbuf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
               uint64_t offset);

/* write the bytes to a fresh temporary file; returns its path (free it, unlink it) */
char *gb_to_temp_file(const gbuf *b);

#endif

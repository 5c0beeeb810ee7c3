/* gguf_build.c - GGUF files written byte by byte for the tests (see gguf_build.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_build.h"
#include "testutil.h"

void gb_free(gbuf *b)
{
    free(b->bytes);
    *b = (gbuf){0};
}

void gb_raw(gbuf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->bytes = realloc(b->bytes, cap);
        expect(b->bytes != NULL, "out of memory");
        b->cap = cap;
    }
    memcpy(b->bytes + b->n, p, n);
    b->n += n;
}

static void le(gbuf *b, uint64_t v, unsigned bytes)
{
    unsigned char tmp[8];
    for (unsigned i = 0; i < bytes; i++)
        tmp[i] = (unsigned char)(v >> (8 * i));
    gb_raw(b, tmp, bytes);
}

void gb_u8(gbuf *b, uint8_t v) { le(b, v, 1); }
void gb_u32(gbuf *b, uint32_t v) { le(b, v, 4); }
void gb_u64(gbuf *b, uint64_t v) { le(b, v, 8); }

void gb_f32(gbuf *b, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    gb_u32(b, bits);
}

void gb_str(gbuf *b, const char *s)
{
    gb_u64(b, strlen(s));
    gb_raw(b, s, strlen(s));
}

void gb_pad(gbuf *b, size_t align)
{
    static const unsigned char zero[64];
    while (b->n % align)
        gb_raw(b, zero, 1);
}

void gb_header(gbuf *b, uint64_t n_tensors, uint64_t n_kv)
{
    gb_raw(b, "GGUF", 4);
    gb_u32(b, 3);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

void gb_key(gbuf *b, const char *key, uint32_t type)
{
    gb_str(b, key);
    gb_u32(b, type);
}

void gb_kv_u32(gbuf *b, const char *key, uint32_t v)
{
    gb_key(b, key, 4);
    gb_u32(b, v);
}

void gb_kv_f32(gbuf *b, const char *key, float v)
{
    gb_key(b, key, 6);
    gb_f32(b, v);
}

void gb_kv_str(gbuf *b, const char *key, const char *v)
{
    gb_key(b, key, 8);
    gb_str(b, v);
}

void gb_kv_strings(gbuf *b, const char *key, const char *const *v, uint64_t n)
{
    gb_key(b, key, 9);
    gb_u32(b, 8);
    gb_u64(b, n);
    for (uint64_t i = 0; i < n; i++)
        gb_str(b, v[i]);
}

void gb_tensor(gbuf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
               uint64_t offset)
{
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        gb_u64(b, ne[i]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

char *gb_to_temp_file(const gbuf *b)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/adamas-gguf-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    expect(fd >= 0, "mkstemp failed");
    expect(write(fd, b->bytes, b->n) == (ssize_t)b->n, "short write");
    close(fd);
    return path;
}

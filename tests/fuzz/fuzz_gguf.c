/* fuzz_gguf.c - libFuzzer target: the GGUF reader, the typed reads of every key, the
 * tokenizer of the parsed file, and adamas-run's model loader on the same bytes.
 *
 * Whatever the bytes, gguf_parse either refuses them or hands back keys, arrays and
 * tensors that lie inside them; the reads below touch every byte it points to. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf.h"
#include "llama.h"
#include "tokenizer.h"

static volatile unsigned sink;

static void touch(const void *p, uint64_t n)
{
    const unsigned char *b = p;
    unsigned s = 0;
    for (uint64_t i = 0; i < n; i++)
        s += b[i];
    sink += s;
}

static void read_every_key(gguf_file *f)
{
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        touch(kv->key.ptr, kv->key.len);
        char key[80];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 79 ? kv->key.len : 79),
                 kv->key.ptr);
        uint32_t u;
        float x;
        int b;
        gguf_str s;
        gguf_get_u32(f, key, &u);
        gguf_get_f32(f, key, &x);
        gguf_get_bool(f, key, &b);
        if (gguf_get_str(f, key, &s) == 0)
            touch(s.ptr, s.len);
        if (kv->type != GGUF_TYPE_ARRAY)
            continue;
        if (kv->elem_type == GGUF_TYPE_STRING) {
            gguf_str *all = malloc((size_t)(kv->n ? kv->n : 1) * sizeof *all);
            if (!all)
                abort();
            gguf_array_strings(kv, all);
            for (uint64_t j = 0; j < kv->n; j++)
                touch(all[j].ptr, all[j].len);
            free(all);
        } else if (kv->elem_type != GGUF_TYPE_BOOL) {
            for (uint64_t j = 0; j < kv->n; j++)
                sink += (unsigned)gguf_array_int(kv, j) + (unsigned)(gguf_array_float(kv, j) != 0);
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        touch(t->name.ptr, t->name.len);
        touch(t->data, t->size);
        gguf_ggml_type_name(t->type);
    }
}

static void tokenize(gguf_file *f, const uint8_t *text, size_t len)
{
    tokenizer *tok = NULL;
    if (tokenizer_from_gguf(f, &tok))
        return;
    uint32_t *ids = NULL;
    size_t n = 0;
    if (tokenizer_encode(tok, (const char *)text, len, &ids, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (ids[i] >= tokenizer_n_tokens(tok))
                abort(); /* a token the vocabulary does not have */
            size_t plen;
            const char *piece = tokenizer_piece(tok, ids[i], &plen);
            touch(piece, plen);
        }
    }
    free(ids);
    tokenizer_destroy(tok);
}

/* llama_load opens a path: the bytes go through a memory file. */
static void load_model(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0 && (fd = memfd_create("fuzz_gguf", 0)) < 0)
        return;
    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
        return;
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    llama_model m;
    if (llama_load(path, &m, err, sizeof err) == 0)
        llama_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the bytes in a buffer of their own size, so that any read past them is caught */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    gguf_file f;
    int st = gguf_parse(copy, size, &f);
    if (st == 0) {
        read_every_key(&f);
        /* text to tokenize: the last bytes of the input */
        size_t text_len = size < 64 ? size : 64;
        tokenize(&f, copy + size - text_len, text_len);
        gguf_close(&f);
        load_model(copy, size);
    } else if (f.error[0] == 0 || strlen(f.error) >= sizeof f.error) {
        abort(); /* a failure always says why */
    }
    free(copy);
    return 0;
}

/* test_gguf.c - the GGUF reader: valid files read back exactly, and malformed or hostile
 * ones (truncations, huge counts and lengths, bad offsets, unknown types, wrong
 * alignment) refused with ADAMAS_EFORMAT or ADAMAS_EIO and a message naming the fault. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tools/gguf.h"
#include "gguf_build.h"
#include "testutil.h"

TestSuite(gguf, .init = rng_seed_from_env);

/* ------------------------------------------------------------------ helpers */

/* A valid file: one key/value of every type (arrays of numbers and strings too), then
 * an F32 matrix [3][4], an F16 vector [8] and a Q8_0 matrix [2][32]. */
static void build_valid(gbuf *b, uint32_t alignment)
{
    gb_header(b, 3, 16);
    gb_kv_str(b, "general.architecture", "llama");
    gb_kv_u32(b, "general.alignment", alignment);
    gb_key(b, "u8", 0), gb_u8(b, 200);
    gb_key(b, "i8", 1), gb_u8(b, 0xFE); /* -2 */
    gb_key(b, "u16", 2), gb_raw(b, "\x34\x12", 2);
    gb_key(b, "i16", 3), gb_raw(b, "\xFF\xFF", 2);
    gb_key(b, "i32", 5), gb_u32(b, (uint32_t)-7);
    gb_kv_f32(b, "f32", 0.5f);
    gb_key(b, "bool", 7), gb_u8(b, 1);
    gb_key(b, "u64", 10), gb_u64(b, 1ull << 40);
    gb_key(b, "i64", 11), gb_u64(b, (uint64_t)-3);
    gb_key(b, "f64", 12), gb_u64(b, 0x400921FB54442D18ull); /* pi */
    gb_kv_u32(b, "u32", 123456);
    static const char *const words[] = {"", "a", "Ġthe", "longer string"};
    gb_kv_strings(b, "strings", words, 4);
    gb_key(b, "ints", 9), gb_u32(b, 5), gb_u64(b, 3), gb_u32(b, 1), gb_u32(b, (uint32_t)-2),
        gb_u32(b, 3);
    gb_key(b, "empty", 9), gb_u32(b, 8), gb_u64(b, 0);
    uint64_t ne_a[] = {4, 3}, ne_b[] = {8}, ne_c[] = {32, 2};
    size_t size_a = 48, size_b = 16;
    size_t off_b = (size_a + alignment - 1) / alignment * alignment;
    size_t off_c = off_b + (size_b + alignment - 1) / alignment * alignment;
    gb_tensor(b, "a.weight", 2, ne_a, 0, 0);
    gb_tensor(b, "b.weight", 1, ne_b, 1, off_b);
    gb_tensor(b, "c.weight", 2, ne_c, 8, off_c);
    gb_pad(b, alignment);
    size_t data = b->n;
    for (int i = 0; i < 12; i++)
        gb_f32(b, (float)i);
    gb_pad(b, 1);
    while (b->n < data + off_b)
        gb_u8(b, 0);
    for (int i = 0; i < 8; i++)
        gb_raw(b, "\x00\x3C", 2); /* f16 1.0 */
    while (b->n < data + off_c)
        gb_u8(b, 0);
    for (int r = 0; r < 2; r++) {
        gb_raw(b, "\x00\x38", 2); /* scale 0.5 */
        for (int j = 0; j < 32; j++)
            gb_u8(b, (uint8_t)(int8_t)(j - 16));
    }
}

static int mentions(const char *msg, const char *words)
{
    return strstr(msg, words) != NULL;
}

/* Parse bytes and expect `want` with `words` in the message. */
static void expect_refused(const gbuf *b, int want, const char *words, const char *what)
{
    gguf_file f;
    int st = gguf_parse(b->bytes, b->n, &f);
    expect(st == want, "%s: status %d, expected %d; message: %s", what, st, want, f.error);
    expect(mentions(f.error, words), "%s: message \"%s\" does not say \"%s\"", what, f.error,
           words);
    expect(f.kv == NULL && f.tensors == NULL, "%s: left allocations behind", what);
}

/* Overwrite 8 bytes at `at` (little-endian). */
static void poke_u64(gbuf *b, size_t at, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b->bytes[at + i] = (unsigned char)(v >> (8 * i));
}

static void poke_u32(gbuf *b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b->bytes[at + i] = (unsigned char)(v >> (8 * i));
}

/* Offset of the first occurrence of a string's bytes (the key or name) in the file. */
static size_t find(const gbuf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= b->n; i++)
        if (!memcmp(b->bytes + i, s, n))
            return i;
    cr_assert_fail("\"%s\" not in the file", s);
    return 0;
}

/* ----------------------------------------------------------- valid files */

Test(gguf, a_valid_file_reads_back_every_value_and_tensor)
{
    for (uint32_t alignment = 1; alignment <= 64; alignment *= 4) {
        gbuf b = {0};
        build_valid(&b, alignment);
        gguf_file f;
        int st = gguf_parse(b.bytes, b.n, &f);
        expect(st == 0, "alignment %u: %s", alignment, f.error);
        expect(f.version == 3 && f.n_kv == 16 && f.n_tensors == 3 && f.alignment == alignment,
               "header");
        uint32_t u;
        float x;
        int flag;
        gguf_str s;
        expect(gguf_get_u32(&f, "u32", &u) == 0 && u == 123456, "u32");
        expect(gguf_get_u32(&f, "u8", &u) == 0 && u == 200, "u8 widened");
        expect(gguf_get_u32(&f, "u16", &u) == 0 && u == 0x1234, "u16");
        expect(gguf_get_u32(&f, "u64", &u) == ADAMAS_EFORMAT, "2^40 does not fit a u32");
        expect(gguf_get_u32(&f, "i8", &u) == ADAMAS_EFORMAT, "-2 is not a u32");
        expect(gguf_get_f32(&f, "f32", &x) == 0 && x == 0.5f, "f32");
        expect(gguf_get_f32(&f, "f64", &x) == 0 && x == 3.14159265358979f, "f64 narrowed");
        expect(gguf_get_f32(&f, "i32", &x) == 0 && x == -7.0f, "i32 as a number");
        expect(gguf_get_f32(&f, "i16", &x) == 0 && x == -1.0f, "i16");
        expect(gguf_get_f32(&f, "i64", &x) == 0 && x == -3.0f, "i64");
        expect(gguf_get_bool(&f, "bool", &flag) == 0 && flag == 1, "bool");
        expect(gguf_get_str(&f, "general.architecture", &s) == 0 && gguf_str_eq(s, "llama"),
               "string");
        expect(gguf_get_str(&f, "u32", &s) == ADAMAS_EFORMAT && mentions(f.error, "u32"),
               "a number is not a string");
        expect(gguf_get_u32(&f, "missing", &u) == ADAMAS_EFORMAT && mentions(f.error, "missing"),
               "missing key");
        const gguf_kv *kv = gguf_find_kv(&f, "strings");
        expect(kv && kv->type == GGUF_TYPE_ARRAY && kv->elem_type == GGUF_TYPE_STRING && kv->n == 4,
               "string array");
        gguf_str words[4];
        gguf_array_strings(kv, words);
        expect(gguf_str_eq(words[0], "") && gguf_str_eq(words[2], "Ġthe") &&
               gguf_str_eq(words[3], "longer string"), "strings read back");
        kv = gguf_find_kv(&f, "ints");
        expect(kv && kv->n == 3 && gguf_array_int(kv, 1) == -2 && gguf_array_float(kv, 2) == 3.0,
               "int array");
        expect(gguf_get_u32(&f, "ints", &u) == ADAMAS_EFORMAT, "an array is not a scalar");
        const gguf_tensor *a = gguf_find_tensor(&f, "a.weight");
        const gguf_tensor *bt = gguf_find_tensor(&f, "b.weight");
        const gguf_tensor *c = gguf_find_tensor(&f, "c.weight");
        expect(a && bt && c && !gguf_find_tensor(&f, "d.weight"), "tensors found");
        expect(a->n_dims == 2 && a->ne[0] == 4 && a->ne[1] == 3 && a->ne[2] == 1 && a->size == 48,
               "a's shape");
        float a5;
        memcpy(&a5, a->data + 20, 4);
        expect(a5 == 5.0f, "a's data");
        expect(bt->size == 16 && bt->data[1] == 0x3C, "b's data");
        expect(c->size == 68 && c->data[34 + 1] == 0x38 && (int8_t)c->data[34 + 2] == -16,
               "c's Q8_0 blocks");
        expect((size_t)(a->data - b.bytes) % alignment == 0, "data aligned");
        expect(!strcmp(gguf_ggml_type_name(c->type), "Q8_0") &&
               !strcmp(gguf_ggml_type_name(12), "Q4_K") &&
               !strcmp(gguf_ggml_type_name(4), "unknown"), "type names");
        gguf_close(&f);
        gb_free(&b);
    }
}

Test(gguf, a_file_reads_the_same_through_its_mapping)
{
    gbuf b = {0};
    build_valid(&b, 32);
    char *path = gb_to_temp_file(&b);
    gguf_file f;
    expect(gguf_open(path, &f) == 0, "%s", f.error);
    const gguf_tensor *c = gguf_find_tensor(&f, "c.weight");
    expect(c && !memcmp(c->data, b.bytes + (b.n - 68), 68), "tensor data from the mapping");
    gguf_close(&f);
    gguf_close(&f); /* closing twice is harmless */
    unlink(path);
    free(path);
    gb_free(&b);
}

Test(gguf, a_file_without_tensors_needs_no_padding)
{
    gbuf b = {0};
    gb_header(&b, 0, 1);
    gb_kv_u32(&b, "x", 1);
    gguf_file f;
    expect(gguf_parse(b.bytes, b.n, &f) == 0, "%s", f.error);
    gguf_close(&f);
    gb_free(&b);
}

/* ---------------------------------------------------------- files refused */

Test(gguf, files_that_cannot_be_read_are_eio)
{
    gguf_file f;
    expect(gguf_open("/nonexistent/adamas.gguf", &f) == ADAMAS_EIO && mentions(f.error, "open"),
           "a missing file: %s", f.error);
    const char *dir = getenv("TMPDIR");
    expect(gguf_open(dir && *dir ? dir : "/tmp", &f) == ADAMAS_EIO, "a directory: %s", f.error);
}

Test(gguf, every_truncation_is_refused)
{
    gbuf b = {0};
    build_valid(&b, 32);
    for (size_t len = 0; len < b.n; len++) {
        gguf_file f;
        /* a copy of exactly len bytes, so that ASan sees any read past them */
        unsigned char *copy = malloc(len ? len : 1);
        memcpy(copy, b.bytes, len);
        int st = gguf_parse(copy, len, &f);
        expect(st == ADAMAS_EFORMAT, "%zu of %zu bytes: status %d", len, b.n, st);
        expect(f.error[0] != 0, "%zu bytes: no message", len);
        free(copy);
    }
    gb_free(&b);
}

Test(gguf, bad_magic_and_versions_are_refused)
{
    gbuf b = {0};
    build_valid(&b, 32);
    b.bytes[0] = 'X';
    expect_refused(&b, ADAMAS_EFORMAT, "not a GGUF file", "bad magic");
    b.bytes[0] = 'G';
    poke_u32(&b, 4, 1);
    expect_refused(&b, ADAMAS_EFORMAT, "version 1", "version 1");
    poke_u32(&b, 4, 99);
    expect_refused(&b, ADAMAS_EFORMAT, "version 99", "version 99");
    gb_free(&b);
}

Test(gguf, counts_beyond_what_the_file_holds_are_refused_before_allocating)
{
    gbuf b = {0};
    build_valid(&b, 32);
    poke_u64(&b, 16, UINT64_MAX);
    expect_refused(&b, ADAMAS_EFORMAT, "key/values cannot fit", "n_kv = 2^64-1");
    poke_u64(&b, 16, 16);
    poke_u64(&b, 8, 1ull << 40);
    expect_refused(&b, ADAMAS_EFORMAT, "tensors cannot fit", "n_tensors = 2^40");
    poke_u64(&b, 8, 4); /* one more tensor than there are: runs into the data */
    gguf_file f;
    expect(gguf_parse(b.bytes, b.n, &f) == ADAMAS_EFORMAT, "one tensor too many");
    gb_free(&b);
}

Test(gguf, string_and_array_lengths_beyond_the_file_are_refused)
{
    gbuf b = {0};
    build_valid(&b, 32);
    size_t key = find(&b, "general.architecture");
    poke_u64(&b, key - 8, UINT64_MAX);
    expect_refused(&b, ADAMAS_EFORMAT, "string length", "key length 2^64-1");
    gb_free(&b);

    build_valid(&b, 32);
    size_t value = find(&b, "llama") - 8;
    poke_u64(&b, value, b.n);
    expect_refused(&b, ADAMAS_EFORMAT, "general.architecture", "value length = file size");
    gb_free(&b);

    build_valid(&b, 32);
    size_t ints = find(&b, "ints") + 4 + 4 + 4; /* key, type, element type */
    poke_u64(&b, ints, UINT64_MAX / 2);
    expect_refused(&b, ADAMAS_EFORMAT, "array of", "2^63 int32 elements");
    gb_free(&b);

    build_valid(&b, 32);
    size_t strings = find(&b, "strings") + 7 + 4 + 4;
    poke_u64(&b, strings, b.n / 8);
    expect_refused(&b, ADAMAS_EFORMAT, "strings", "more strings than there are");
    gb_free(&b);
}

Test(gguf, unknown_value_and_tensor_types_are_refused)
{
    gbuf b = {0};
    build_valid(&b, 32);
    size_t u32 = find(&b, "u32") + 3;
    poke_u32(&b, u32, 13);
    expect_refused(&b, ADAMAS_EFORMAT, "unknown value type 13", "value type 13");
    gb_free(&b);

    build_valid(&b, 32);
    size_t ints = find(&b, "ints") + 4 + 4;
    poke_u32(&b, ints, 9);
    expect_refused(&b, ADAMAS_EFORMAT, "arrays of arrays", "nested array");
    poke_u32(&b, ints, 77);
    expect_refused(&b, ADAMAS_EFORMAT, "array of unknown value type 77", "element type 77");
    gb_free(&b);

    for (uint32_t type = 4; type <= 5; type++) { /* retired ggml types */
        build_valid(&b, 32);
        size_t a = find(&b, "a.weight") + 8 + 4 + 16;
        poke_u32(&b, a, type);
        expect_refused(&b, ADAMAS_EFORMAT, "unknown ggml type", "ggml type 4/5");
        gb_free(&b);
    }
    build_valid(&b, 32);
    poke_u32(&b, find(&b, "a.weight") + 8 + 4 + 16, 0xFFFFFFFFu);
    expect_refused(&b, ADAMAS_EFORMAT, "unknown ggml type 4294967295", "ggml type 2^32-1");
    gb_free(&b);
}

Test(gguf, bad_dimensions_are_refused)
{
    gbuf b = {0};
    build_valid(&b, 32);
    size_t dims = find(&b, "a.weight") + 8;
    poke_u32(&b, dims, 0);
    expect_refused(&b, ADAMAS_EFORMAT, "0 dimensions", "n_dims 0");
    poke_u32(&b, dims, 5);
    expect_refused(&b, ADAMAS_EFORMAT, "5 dimensions", "n_dims 5");
    poke_u32(&b, dims, 2);
    poke_u64(&b, dims + 4, 1ull << 63);
    expect_refused(&b, ADAMAS_EFORMAT, "beyond INT64_MAX", "ne0 2^63");
    poke_u64(&b, dims + 4, 1ull << 40);
    poke_u64(&b, dims + 12, 1ull << 40);
    expect_refused(&b, ADAMAS_EFORMAT, "overflows", "2^40 x 2^40 x 4 bytes");
    poke_u64(&b, dims + 4, 1ull << 30);
    poke_u64(&b, dims + 12, 1ull << 30);
    expect_refused(&b, ADAMAS_EFORMAT, "go beyond", "4 EiB of data in a small file");
    gb_free(&b);

    build_valid(&b, 32);
    size_t c = find(&b, "c.weight") + 8 + 4;
    poke_u64(&b, c, 33);
    expect_refused(&b, ADAMAS_EFORMAT, "Q8_0 blocks of 32", "Q8_0 row of 33");
    gb_free(&b);
}

Test(gguf, bad_offsets_and_overlaps_are_refused)
{
    gbuf b = {0};
    build_valid(&b, 32);
    size_t off_b = find(&b, "b.weight") + 8 + 4 + 8 + 4;
    poke_u64(&b, off_b, 8);
    expect_refused(&b, ADAMAS_EFORMAT, "not a multiple of the alignment", "offset 8, align 32");
    poke_u64(&b, off_b, 32 * 1000);
    expect_refused(&b, ADAMAS_EFORMAT, "go beyond", "offset past the end");
    poke_u64(&b, off_b, UINT64_MAX - 31);
    expect_refused(&b, ADAMAS_EFORMAT, "go beyond", "offset 2^64-32");
    poke_u64(&b, off_b, 0);
    expect_refused(&b, ADAMAS_EFORMAT, "overlap", "b over a");
    gb_free(&b);
}

Test(gguf, bad_alignments_are_refused)
{
    gbuf b = {0};
    build_valid(&b, 32);
    size_t align = find(&b, "general.alignment") + 17 + 4;
    poke_u32(&b, align, 0);
    expect_refused(&b, ADAMAS_EFORMAT, "not a power of two", "alignment 0");
    poke_u32(&b, align, 48);
    expect_refused(&b, ADAMAS_EFORMAT, "alignment 48 is not a power of two", "alignment 48");
    poke_u32(&b, align, 64); /* valid, but the file was laid out for 32 */
    gguf_file f;
    expect(gguf_parse(b.bytes, b.n, &f) == ADAMAS_EFORMAT, "alignment 64 on a 32 layout");
    poke_u32(&b, align, 32);
    poke_u32(&b, align - 4, 6); /* general.alignment as a float32 */
    expect_refused(&b, ADAMAS_EFORMAT, "general.alignment is a float32", "alignment type");
    gb_free(&b);
}

Test(gguf, duplicate_keys_and_tensor_names_are_refused)
{
    gbuf b = {0};
    build_valid(&b, 32);
    memcpy(b.bytes + find(&b, "u16"), "u32", 3);
    expect_refused(&b, ADAMAS_EFORMAT, "key \"u32\" appears twice", "duplicate key");
    gb_free(&b);
    build_valid(&b, 32);
    b.bytes[find(&b, "b.weight")] = 'a';
    expect_refused(&b, ADAMAS_EFORMAT, "tensor \"a.weight\" appears twice", "duplicate tensor");
    gb_free(&b);
}

Test(gguf, random_corruption_never_reads_outside_the_file)
{
    gbuf b = {0};
    build_valid(&b, 32);
    unsigned char *copy = malloc(b.n);
    int refused = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(copy, b.bytes, b.n);
        int flips = 1 + (int)rng_below(4);
        for (int i = 0; i < flips; i++)
            copy[rng_below((uint32_t)b.n)] ^= (unsigned char)(1u << rng_below(8));
        size_t len = rng_below(4) == 0 ? rng_below((uint32_t)b.n) : b.n;
        gguf_file f;
        int st = gguf_parse(copy, len, &f);
        expect(st == 0 || st == ADAMAS_EFORMAT, "trial %d: status %d", trial, st);
        if (st == 0) {
            for (uint64_t t = 0; t < f.n_tensors; t++)
                expect(f.tensors[t].data >= copy &&
                       f.tensors[t].data + f.tensors[t].size <= copy + len,
                       "trial %d: tensor data outside the file", trial);
            gguf_close(&f);
        } else {
            refused++;
        }
    }
    expect(refused > 0, "no corruption was refused");
    free(copy);
    gb_free(&b);
}

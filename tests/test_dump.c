/* test_dump.c - attention dumps: the generator's files read back exactly, and every
 * kind of malformed file refused with ADAMAS_EFORMAT or ADAMAS_EIO and a message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/dump.h"
#include "../tools/gen.h"
#include "adamas.h"
#include "testutil.h"

TestSuite(dump, .init = rng_seed_from_env);

/* ------------------------------------------------------------------ helpers */

/* A fresh temporary path (the file exists, empty); caller unlinks and frees. */
static char *temp_path(void)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/adamas-dump-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    expect(fd >= 0, "mkstemp failed");
    close(fd);
    return path;
}

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    expect(f != NULL, "cannot create %s", path);
    expect(fwrite(bytes, 1, n, f) == n, "short write");
    fclose(f);
}

/* A safetensors file: the 8-byte length (header_len, or the header's true length
 * when header_len is UINT64_MAX), the header, then data_bytes bytes of data. */
static void write_safetensors(const char *path, const char *header, uint64_t header_len,
                              size_t data_bytes)
{
    size_t hlen = strlen(header);
    uint64_t len = header_len == UINT64_MAX ? hlen : header_len;
    unsigned char *buf = calloc(1, 8 + hlen + data_bytes + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, header, hlen);
    for (size_t i = 0; i < data_bytes; i++)
        buf[8 + hlen + i] = (unsigned char)(i * 7 + 1);
    write_bytes(path, buf, 8 + hlen + data_bytes);
    free(buf);
}

/* Open path and expect status `want` with `words` in the message. */
static void expect_refused(const char *path, int want, const char *words, const char *what)
{
    dump_file d;
    int st = dump_open(path, &d);
    expect(st == want, "%s: status %d (%s), expected %d; message: %s", what, st,
           adamas_strerror(st), want, d.error);
    expect(strstr(d.error, words) != NULL, "%s: message \"%s\" lacks \"%s\"", what, d.error,
           words);
    expect(d.map == NULL && d.q == NULL && d.model == NULL, "%s: state left after failure", what);
    dump_close(&d);
}

static void expect_header_refused(const char *header, size_t data_bytes, const char *words)
{
    char *path = temp_path();
    write_safetensors(path, header, UINT64_MAX, data_bytes);
    expect_refused(path, ADAMAS_EFORMAT, words, header);
    unlink(path);
    free(path);
}

/* The header of one layer: q [N,Hq,d], k and v [N,Hkv,d], F16, contiguous. */
static void one_layer_header(char *out, size_t size, unsigned n, unsigned hq, unsigned hkv,
                             unsigned d, size_t *data_bytes)
{
    size_t q = (size_t)n * hq * d * 2, kv = (size_t)n * hkv * d * 2;
    snprintf(out, size,
             "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[%u,%u,%u],\"data_offsets\":[0,%zu]},"
             "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[%u,%u,%u],\"data_offsets\":[%zu,%zu]},"
             "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[%u,%u,%u],\"data_offsets\":[%zu,%zu]}}",
             n, hq, d, q, n, hkv, d, q, q + kv, n, hkv, d, q + kv, q + 2 * kv);
    *data_bytes = q + 2 * kv;
}

static gen_config small_config(adamas_dtype dtype)
{
    gen_config c = gen_config_default();
    c.layers = 2;
    c.tokens = 77;
    c.heads = 4;
    c.kv_heads = 2;
    c.head_dim = 32;
    c.dtype = dtype;
    c.needles = 3;
    c.seed = test_seed;
    return c;
}

static float round_to(float x, adamas_dtype t)
{
    if (t == ADAMAS_F16)
        return adamas_f16_to_f32(adamas_f32_to_f16(x));
    if (t == ADAMAS_BF16)
        return adamas_bf16_to_f32(adamas_f32_to_bf16(x));
    return x;
}

static void *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    expect(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(*n ? *n : 1);
    expect(fread(buf, 1, *n, f) == *n, "short read");
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------- round trips */

Test(dump, generated_files_read_back_exactly_in_every_dtype)
{
    for (int dt = ADAMAS_F32; dt <= ADAMAS_BF16; dt++) {
        gen_config c = small_config((adamas_dtype)dt);
        char *path = temp_path(), err[256];
        int st = gen_write(&c, path, NULL, NULL, err, sizeof err);
        expect(st == ADAMAS_OK, "gen_write: %s", err);

        dump_file d;
        st = dump_open(path, &d);
        expect(st == ADAMAS_OK, "dump_open: %s", d.error);
        expect(d.n_layers == c.layers && d.n_tokens == c.tokens && d.n_heads == c.heads &&
                   d.n_kv_heads == c.kv_heads && d.head_dim == c.head_dim,
               "shape read back: %u layers, %u tokens, %u/%u heads, d=%u", d.n_layers,
               d.n_tokens, d.n_heads, d.n_kv_heads, d.head_dim);
        expect(d.model && !strcmp(d.model, "adamas-gen"), "model: %s",
               d.model ? d.model : "(none)");
        expect(d.text && strstr(d.text, "synthetic"), "text: %s", d.text ? d.text : "(none)");

        size_t qn = (size_t)c.tokens * c.heads * c.head_dim;
        size_t kvn = (size_t)c.tokens * c.kv_heads * c.head_dim;
        float *q = malloc(qn * sizeof *q), *k = malloc(kvn * sizeof *k);
        float *v = malloc(kvn * sizeof *v), *got = malloc(qn * sizeof *got);
        for (uint32_t l = 0; l < c.layers; l++) {
            expect(gen_rows(&c, l, 0, c.tokens, q, k, v) == ADAMAS_OK, "gen_rows");
            expect(d.q[l].dtype == (adamas_dtype)dt, "dtype of layers.%u.q", l);
            const dump_tensor *t[3] = {&d.q[l], &d.k[l], &d.v[l]};
            const float *want[3] = {q, k, v};
            const size_t count[3] = {qn, kvn, kvn};
            for (int w = 0; w < 3; w++) {
                dump_read_rows(t[w], 0, c.tokens, got);
                for (size_t i = 0; i < count[w]; i++)
                    expect(got[i] == round_to(want[w][i], (adamas_dtype)dt),
                           "dtype %d layer %u tensor %d element %zu: %g, want %g", dt, l, w, i,
                           got[i], round_to(want[w][i], (adamas_dtype)dt));
            }
            /* a window of rows reads the same as the whole */
            dump_read_rows(&d.k[l], 10, 5, got);
            for (size_t i = 0; i < 5 * (size_t)c.kv_heads * c.head_dim; i++)
                expect(got[i] == round_to(k[10 * (size_t)c.kv_heads * c.head_dim + i],
                                          (adamas_dtype)dt),
                       "window element %zu", i);
        }
        free(q);
        free(k);
        free(v);
        free(got);
        dump_close(&d);
        unlink(path);
        free(path);
    }
}

Test(dump, the_generator_writes_the_same_bytes_for_the_same_seed)
{
    gen_config c = small_config(ADAMAS_F16);
    char *a = temp_path(), *b = temp_path(), err[256];
    expect(gen_write(&c, a, NULL, NULL, err, sizeof err) == ADAMAS_OK, "%s", err);
    expect(gen_write(&c, b, NULL, NULL, err, sizeof err) == ADAMAS_OK, "%s", err);
    size_t na, nb;
    unsigned char *x = read_file(a, &na), *y = read_file(b, &nb);
    expect(na == nb && !memcmp(x, y, na), "two runs with seed %llu differ",
           (unsigned long long)c.seed);
    free(y);
    c.seed ^= 1;
    expect(gen_write(&c, b, NULL, NULL, err, sizeof err) == ADAMAS_OK, "%s", err);
    y = read_file(b, &nb);
    expect(na == nb && memcmp(x, y, na) != 0, "another seed wrote the same data");
    free(x);
    free(y);
    unlink(a);
    unlink(b);
    free(a);
    free(b);
}

Test(dump, generated_rows_do_not_depend_on_the_chunking)
{
    gen_config c = small_config(ADAMAS_F32);
    size_t row = (size_t)c.heads * c.head_dim;
    float *whole = malloc(c.tokens * row * sizeof *whole), *one = malloc(row * sizeof *one);
    expect(gen_rows(&c, 1, 0, c.tokens, whole, NULL, NULL) == ADAMAS_OK, "gen_rows");
    for (uint32_t t = 0; t < c.tokens; t += 7) {
        expect(gen_rows(&c, 1, t, 1, one, NULL, NULL) == ADAMAS_OK, "gen_rows");
        expect(!memcmp(one, whole + t * row, row * sizeof *one), "token %u differs", t);
    }
    free(whole);
    free(one);
}

Test(dump, the_generator_plants_needles_that_the_queries_find)
{
    /* For the last query of every head: the needles of its kv head and the sink rank
     * among the largest 5% of its logits (nearly always: a query's noise can hide its
     * topic now and then, so 80% of the needles must). */
    gen_config c = small_config(ADAMAS_F32);
    c.tokens = 600;
    c.head_dim = 64;
    c.needles = 4;
    const uint32_t d = c.head_dim, p = c.tokens - 1, group = c.heads / c.kv_heads;
    float *q = malloc((size_t)c.heads * d * sizeof *q);
    float *k = malloc((size_t)c.tokens * c.kv_heads * d * sizeof *k);
    expect(gen_rows(&c, 0, p, 1, q, NULL, NULL) == ADAMAS_OK, "gen_rows");
    expect(gen_rows(&c, 0, 0, c.tokens, NULL, k, NULL) == ADAMAS_OK, "gen_rows");
    uint32_t found = 0, planted = 0, sinks_found = 0;
    for (uint32_t h = 0; h < c.heads; h++) {
        uint32_t needles[4], g = h / group;
        uint32_t m = gen_needles(&c, 0, g, needles);
        expect(m >= 1, "no needles for kv head %u", g);
        double logit[600];
        for (uint32_t t = 0; t < c.tokens; t++) {
            double s = 0.0;
            for (uint32_t i = 0; i < d; i++)
                s += (double)q[(size_t)h * d + i] * k[((size_t)t * c.kv_heads + g) * d + i];
            logit[t] = s / sqrt((double)d);
        }
        for (uint32_t i = 0; i < m; i++) {
            uint32_t above = 0;
            for (uint32_t t = 0; t < c.tokens; t++)
                above += logit[t] > logit[needles[i]];
            found += above < 30;
            planted++;
        }
        uint32_t above_sink = 0;
        for (uint32_t t = 1; t < c.tokens; t++)
            above_sink += logit[t] > logit[0];
        sinks_found += above_sink < 30;
    }
    expect(found * 5 >= planted * 4, "%u of %u needles among the top 5%% of the logits", found,
           planted);
    expect(sinks_found + 1 >= c.heads, "the sink is among the top 5%% for %u of %u heads",
           sinks_found, c.heads);
    free(q);
    free(k);
}

/* ---------------------------------------------------------- hostile files */

Test(dump, files_that_cannot_be_read_are_eio)
{
    expect_refused("/nonexistent/dir/x.safetensors", ADAMAS_EIO, "cannot open", "missing file");
    expect_refused("/tmp", ADAMAS_EIO, "not a regular file", "a directory");
}

Test(dump, files_too_short_for_the_header_length_are_refused)
{
    char *path = temp_path();
    write_bytes(path, "", 0);
    expect_refused(path, ADAMAS_EFORMAT, "too short", "empty file");
    write_bytes(path, "\x10\0\0", 3);
    expect_refused(path, ADAMAS_EFORMAT, "too short", "3-byte file");
    unlink(path);
    free(path);
}

Test(dump, a_header_length_beyond_the_file_is_refused)
{
    char *path = temp_path(), header[1024];
    size_t data;
    one_layer_header(header, sizeof header, 4, 2, 1, 16, &data);
    const uint64_t lengths[] = {strlen(header) + data + 1, (uint64_t)1 << 40, UINT64_MAX - 3,
                                (uint64_t)1 << 63};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        write_safetensors(path, header, lengths[i], data);
        expect_refused(path, ADAMAS_EFORMAT, "beyond the file", "header length");
    }
    /* a header length that cuts the JSON short */
    write_safetensors(path, header, strlen(header) - 5, data);
    dump_file d;
    int st = dump_open(path, &d);
    expect(st == ADAMAS_EFORMAT, "cut header: status %d (%s)", st, d.error);
    unlink(path);
    free(path);
}

Test(dump, headers_that_are_not_a_json_object_are_refused)
{
    expect_header_refused("", 0, "not a JSON object");
    expect_header_refused("[1, 2, 3]", 0, "not a JSON object");
    expect_header_refused("{\"layers.0.q\": {\"dtype\": \"F16\",", 0, "not valid JSON");
    expect_header_refused("{\"a\": tru}", 0, "not valid JSON");
    expect_header_refused("{} xyz", 0, "after its JSON object");
    expect_header_refused("{}{}", 0, "after its JSON object");
    /* a NUL inside the header */
    char *path = temp_path();
    write_safetensors(path, "{\"a\":\"b\"}      ", UINT64_MAX, 0);
    size_t n;
    unsigned char *bytes = read_file(path, &n);
    bytes[8 + 4] = 0;
    write_bytes(path, bytes, n);
    expect_refused(path, ADAMAS_EFORMAT, "", "NUL in the header");
    free(bytes);
    unlink(path);
    free(path);
}

Test(dump, malformed_tensor_entries_are_refused)
{
    expect_header_refused("{\"layers.0.q\": 5}", 0, "not a JSON object");
    expect_header_refused("{\"layers.0.q\": {\"shape\": [1], \"data_offsets\": [0, 2]}}", 2,
                          "needs \"dtype\"");
    expect_header_refused("{\"x\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 2]}}",
                          2, "unknown dtype");
    expect_header_refused("{\"x\": {\"dtype\": 16, \"shape\": [1], \"data_offsets\": [0, 2]}}", 2,
                          "needs \"dtype\"");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [-1], \"data_offsets\": [0, 2]}}",
                          2, "shape[0]");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [1.5], \"data_offsets\": [0, 2]}}",
                          2, "shape[0]");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [\"1\"], \"data_offsets\": [0, 2]}}",
                          2, "shape[0]");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [1e300], \"data_offsets\": [0, 2]}}",
                          2, "shape[0]");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": 1, \"data_offsets\": [0, 2]}}", 2,
                          "needs \"dtype\"");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0]}}", 2,
                          "data_offsets");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0,2,4]}}",
                          4, "data_offsets");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [2, 0]}}", 2,
                          "end before they begin");
    expect_header_refused(
        "{\"x\": {\"dtype\": \"F16\", \"shape\": [1,2,3,4,5,6,7,8,9], \"data_offsets\": [0, 2]}}", 2,
        "rank");
    expect_header_refused("{\"__metadata__\": {\"model\": 3}}", 0, "not a string");
    expect_header_refused("{\"__metadata__\": [1]}", 0, "__metadata__ is not a JSON object");
}

Test(dump, sizes_that_overflow_are_refused)
{
    expect_header_refused("{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, "
                          "4294967296], \"data_offsets\": [0, 8]}}",
                          8, "overflows");
    expect_header_refused("{\"x\": {\"dtype\": \"F64\", \"shape\": [9007199254740992, "
                          "9007199254740992], \"data_offsets\": [0, 8]}}",
                          8, "overflows");
}

Test(dump, offsets_out_of_range_or_not_matching_the_shape_are_refused)
{
    /* 2 bytes of data for a tensor that needs 4: truncated file */
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                          2, "go beyond");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, "
                          "9007199254740992]}}",
                          4, "go beyond");
    expect_header_refused("{\"x\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 6]}}",
                          6, "need 4");
    expect_header_refused("{\"x\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 4]}}",
                          4, "need 6");
}

Test(dump, overlapping_tensors_holes_and_stray_bytes_are_refused)
{
    expect_header_refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
                          " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [2, 6]}}",
                          6, "overlap");
    expect_header_refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
                          " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                          4, "overlap");
    expect_header_refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
                          " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [6, 10]}}",
                          10, "belong to no tensor");
    expect_header_refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                          9, "belong to no tensor");
    expect_header_refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
                          " \"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [4, 8]}}",
                          8, "appears twice");
}

Test(dump, wrong_ranks_shapes_and_dtypes_of_the_layers_are_refused)
{
    /* rank 2 */
    expect_header_refused(
        "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[4,32],\"data_offsets\":[0,256]},"
        "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[4,1,16],\"data_offsets\":[256,384]},"
        "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[4,1,16],\"data_offsets\":[384,512]}}",
        512, "rank 2");
    /* k with other tokens than q */
    expect_header_refused(
        "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[4,2,16],\"data_offsets\":[0,256]},"
        "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[8,1,16],\"data_offsets\":[256,512]},"
        "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[4,1,16],\"data_offsets\":[512,640]}}",
        640, "expected [4, 1, 16]");
    /* 3 query heads, 2 kv heads */
    expect_header_refused(
        "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[4,3,16],\"data_offsets\":[0,384]},"
        "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[4,2,16],\"data_offsets\":[384,640]},"
        "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[4,2,16],\"data_offsets\":[640,896]}}",
        896, "multiple of the kv heads");
    /* head_dim not a power of two */
    expect_header_refused(
        "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[1,1,24],\"data_offsets\":[0,48]},"
        "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[1,1,24],\"data_offsets\":[48,96]},"
        "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[1,1,24],\"data_offsets\":[96,144]}}",
        144, "power of two");
    /* no tokens */
    expect_header_refused(
        "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[0,1,16],\"data_offsets\":[0,0]},"
        "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[0,1,16],\"data_offsets\":[0,0]},"
        "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[0,1,16],\"data_offsets\":[0,0]}}",
        0, "0 tokens");
    /* a dtype the library cannot hold */
    expect_header_refused(
        "{\"layers.0.q\":{\"dtype\":\"I16\",\"shape\":[1,1,16],\"data_offsets\":[0,32]},"
        "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[32,64]},"
        "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[64,96]}}",
        96, "not F32, F16 or BF16");
}

Test(dump, layers_that_disagree_with_layer_0_are_refused)
{
    char header[2048];
    /* layer 1 has 2 kv heads, layer 0 one */
    snprintf(header, sizeof header,
             "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[2,2,16],\"data_offsets\":[0,128]},"
             "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[2,1,16],\"data_offsets\":[128,192]},"
             "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[2,1,16],\"data_offsets\":[192,256]},"
             "\"layers.1.q\":{\"dtype\":\"F16\",\"shape\":[2,2,16],\"data_offsets\":[256,384]},"
             "\"layers.1.k\":{\"dtype\":\"F16\",\"shape\":[2,2,16],\"data_offsets\":[384,512]},"
             "\"layers.1.v\":{\"dtype\":\"F16\",\"shape\":[2,1,16],\"data_offsets\":[512,576]}}");
    expect_header_refused(header, 576, "layers.1.k");
}

Test(dump, missing_tensors_are_named)
{
    expect_header_refused("{\"weights\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
                          "no tensor named layers.0.q");
    expect_header_refused(
        "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[0,32]},"
        "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[32,64]}}",
        64, "missing tensor layers.0.v");
    /* layers 0 and 2 but no 1 */
    char header[2048];
    snprintf(header, sizeof header,
             "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[0,32]},"
             "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[32,64]},"
             "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[64,96]},"
             "\"layers.2.q\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[96,128]},"
             "\"layers.2.k\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[128,160]},"
             "\"layers.2.v\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[160,192]}}");
    expect_header_refused(header, 192, "missing tensor layers.1.q");
    /* a huge layer index: refused without allocating for it */
    expect_header_refused(
        "{\"layers.0.q\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[0,32]},"
        "\"layers.0.k\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[32,64]},"
        "\"layers.0.v\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[64,96]},"
        "\"layers.999999999.q\":{\"dtype\":\"F16\",\"shape\":[1,1,16],\"data_offsets\":[96,128]}}",
        128, "missing tensor layers.1.q");
}

Test(dump, a_minimal_valid_file_opens_and_extra_tensors_are_ignored)
{
    char *path = temp_path(), header[2048];
    size_t data;
    one_layer_header(header, sizeof header, 3, 4, 2, 16, &data);
    /* append an extra tensor and metadata before the closing brace */
    header[strlen(header) - 1] = 0;
    char full[2600];
    snprintf(full, sizeof full,
             "%s,\"layers.0.o\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[%zu,%zu]},"
             "\"__metadata__\":{\"model\":\"tiny\",\"text\":\"hello\",\"format\":\"pt\"}}   ",
             header, data, data + 3);
    write_safetensors(path, full, UINT64_MAX, data + 3);
    dump_file d;
    int st = dump_open(path, &d);
    expect(st == ADAMAS_OK, "dump_open: %s", d.error);
    expect(d.n_layers == 1 && d.n_tokens == 3 && d.n_heads == 4 && d.n_kv_heads == 2 &&
               d.head_dim == 16,
           "shape");
    expect(!strcmp(d.model, "tiny") && !strcmp(d.text, "hello"), "metadata");
    dump_close(&d);
    unlink(path);
    free(path);
}

Test(dump, random_corruption_is_refused_or_read_safely)
{
    gen_config c = small_config(ADAMAS_BF16);
    c.tokens = 9;
    char *path = temp_path(), *bad = temp_path(), err[256];
    expect(gen_write(&c, path, NULL, NULL, err, sizeof err) == ADAMAS_OK, "%s", err);
    size_t n;
    unsigned char *orig = read_file(path, &n);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | orig[i];
    unsigned char *buf = malloc(n);
    float *rows = malloc((size_t)c.tokens * c.heads * c.head_dim * sizeof *rows);
    int opened = 0, refused = 0;
    for (int iter = 0; iter < 400; iter++) {
        memcpy(buf, orig, n);
        size_t len = n;
        switch (rng_below(3)) {
        case 0: /* flip bytes of the header */
            for (uint32_t j = 0, m = 1 + rng_below(4); j < m; j++)
                buf[8 + rng_below((uint32_t)header_len)] ^= (unsigned char)(1 + rng_below(255));
            break;
        case 1: /* replace a digit of the header with another */
            for (uint32_t j = 0; j < 20; j++) {
                size_t at = 8 + rng_below((uint32_t)header_len);
                if (buf[at] >= '0' && buf[at] <= '9') {
                    buf[at] = (unsigned char)('0' + rng_below(10));
                    break;
                }
            }
            break;
        default: /* truncate */
            len = rng_below((uint32_t)n);
        }
        write_bytes(bad, buf, len);
        dump_file d;
        int st = dump_open(bad, &d);
        expect(st == ADAMAS_OK || st == ADAMAS_EFORMAT, "iteration %d: status %d (%s)", iter, st,
               d.error);
        if (st == ADAMAS_OK) {
            opened++;
            for (uint32_t l = 0; l < d.n_layers; l++) {
                dump_read_rows(&d.q[l], 0, d.n_tokens, rows);
                dump_read_rows(&d.k[l], 0, d.n_tokens, rows);
                dump_read_rows(&d.v[l], 0, d.n_tokens, rows);
            }
        } else {
            refused++;
            expect(d.error[0] != 0, "iteration %d: refused without a message", iter);
        }
        dump_close(&d);
    }
    expect(refused > 0, "no corruption was refused (%d opened)", opened);
    free(orig);
    free(buf);
    free(rows);
    unlink(path);
    unlink(bad);
    free(path);
    free(bad);
}

/* ----------------------------------------------------------------- writer */

Test(dump, the_writer_refuses_more_or_less_data_than_declared)
{
    char *path = temp_path(), err[256];
    dump_tensor_spec spec[2] = {{"a", ADAMAS_F32, 1, {3}}, {"b", ADAMAS_F16, 2, {2, 2}}};
    dump_writer *w;
    float x[16] = {0};
    expect(dump_writer_open(&w, path, spec, 2, NULL, NULL, err, sizeof err) == ADAMAS_OK, "%s",
           err);
    expect(dump_writer_put(w, x, 7) == ADAMAS_OK, "%s", err);
    expect(dump_writer_put(w, x, 1) == ADAMAS_EINVAL, "one element too many accepted");
    expect(dump_writer_close(w) == ADAMAS_EINVAL, "close after a failure");
    expect(access(path, F_OK) != 0, "a failed file was left behind");

    expect(dump_writer_open(&w, path, spec, 2, NULL, NULL, err, sizeof err) == ADAMAS_OK, "%s",
           err);
    expect(dump_writer_put(w, x, 6) == ADAMAS_OK, "%s", err);
    expect(dump_writer_close(w) == ADAMAS_EINVAL, "a short file was accepted");
    expect(strstr(err, "missing 1 elements") != NULL, "message: %s", err);
    expect(access(path, F_OK) != 0, "a short file was left behind");

    dump_tensor_spec huge = {"h", ADAMAS_F32, 3, {1u << 30, 1u << 30, 1u << 30}};
    expect(dump_writer_open(&w, path, &huge, 1, NULL, NULL, err, sizeof err) == ADAMAS_EINVAL,
           "an overflowing size was accepted");
    free(path);
}

Test(dump, bytes_in_memory_read_as_the_file_does)
{
    gen_config c = small_config(ADAMAS_F16);
    char *path = temp_path(), err[256];
    expect(gen_write(&c, path, NULL, NULL, err, sizeof err) == ADAMAS_OK, "gen_write: %s", err);
    size_t n;
    unsigned char *bytes = read_file(path, &n);
    dump_file f, m;
    expect(dump_open(path, &f) == ADAMAS_OK, "dump_open: %s", f.error);
    expect(dump_parse(bytes, n, &m) == ADAMAS_OK, "dump_parse: %s", m.error);
    expect(m.map == NULL && m.n_layers == f.n_layers && m.n_tokens == f.n_tokens &&
               m.n_heads == f.n_heads && m.n_kv_heads == f.n_kv_heads && m.head_dim == f.head_dim,
           "dump_parse and dump_open disagree");
    size_t row = (size_t)f.n_heads * f.head_dim;
    float *a = malloc(row * sizeof *a), *b = malloc(row * sizeof *b);
    dump_read_rows(&f.q[0], f.n_tokens - 1, 1, a);
    dump_read_rows(&m.q[0], m.n_tokens - 1, 1, b);
    expect(!memcmp(a, b, row * sizeof *a), "the last query row differs");
    dump_close(&m);
    /* a cut copy is refused and keeps nothing */
    expect(dump_parse(bytes, n - 1, &m) == ADAMAS_EFORMAT && m.q == NULL && m.error[0],
           "a truncated dump in memory: %s", m.error);
    expect(dump_parse(NULL, 8, &m) == ADAMAS_EINVAL, "NULL bytes");
    free(a);
    free(b);
    free(bytes);
    dump_close(&f);
    unlink(path);
    free(path);
}

/* test_weights.c - adamas_matvec and adamas_weights_to_f32 against products computed
 * here in double precision from the stored bytes (F32, F16, BF16 and Q8_0 rows,
 * decoded by the reference's own number formats), the same bits for every thread
 * count, and bad arguments refused with nothing written. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamas.h"
#include "reference.h"
#include "testutil.h"

static const char *const type_names[] = {"f32", "f16", "bf16", "q8_0"};

/* Bytes per row, computed here: 4, 2, 2 per weight, or 34 per block of 32. */
static size_t row_bytes_of(int type, size_t cols)
{
    return type == ADAMAS_WEIGHTS_Q8_0 ? cols / 32 * 34 : cols * (type == ADAMAS_WEIGHTS_F32 ? 4 : 2);
}

/* Weight i of a row, decoded from its bytes. */
static double weight_at(int type, const unsigned char *row, size_t i)
{
    uint16_t h;
    switch (type) {
    case ADAMAS_WEIGHTS_F32: {
        float f;
        memcpy(&f, row + 4 * i, 4);
        return f;
    }
    case ADAMAS_WEIGHTS_F16: memcpy(&h, row + 2 * i, 2); return ref_f16_value(h);
    case ADAMAS_WEIGHTS_BF16: memcpy(&h, row + 2 * i, 2); return ref_bf16_value(h);
    default: {
        const unsigned char *blk = row + i / 32 * 34;
        h = (uint16_t)(blk[0] | blk[1] << 8);
        return ref_f16_value(h) * (double)(int8_t)blk[2 + i % 32];
    }
    }
}

/* rows x cols random weights of a type, scale about 1 (Q8_0: random scales and
 * int8 values over the whole range). */
static unsigned char *random_weights(int type, size_t rows, size_t cols)
{
    size_t n = rows * row_bytes_of(type, cols);
    unsigned char *w = malloc(n);
    if (type == ADAMAS_WEIGHTS_Q8_0) {
        for (size_t b = 0; b < n; b += 34) {
            uint16_t s = ref_f16_bits(rng_uniform(1e-3f, 0.05f) * (rng_below(2) ? 1.0f : -1.0f));
            w[b] = (unsigned char)(s & 0xff), w[b + 1] = (unsigned char)(s >> 8);
            for (int j = 0; j < 32; j++)
                w[b + 2 + j] = (unsigned char)rng_below(256);
        }
        return w;
    }
    for (size_t i = 0; i < rows * cols; i++) {
        float x = rng_normal();
        if (type == ADAMAS_WEIGHTS_F32)
            memcpy(w + 4 * i, &x, 4);
        else {
            uint16_t h = type == ADAMAS_WEIGHTS_F16 ? ref_f16_bits(x) : ref_bf16_bits(x);
            memcpy(w + 2 * i, &h, 2);
        }
    }
    return w;
}

static size_t random_cols(int type)
{
    return type == ADAMAS_WEIGHTS_Q8_0 ? 32 * (1 + rng_below(40)) : 1 + rng_below(1300);
}

Test(weights, matvec_matches_a_double_precision_product_for_every_type)
{
    rng_seed_from_env();
    for (int type = 0; type < 4; type++)
        for (int trial = 0; trial < 12; trial++) {
            size_t rows = 1 + rng_below(300), cols = random_cols(type);
            unsigned char *w = random_weights(type, rows, cols);
            float *x = malloc(cols * sizeof *x), *y = malloc((rows + 1) * sizeof *y);
            rng_fill_normal(x, cols, trial % 2 ? 1.0f : 30.0f);
            poison(y, (rows + 1) * sizeof *y);
            uint32_t after;
            memcpy(&after, y + rows, 4);
            adamas_set_num_threads(1 + (int)rng_below(3));
            expect(adamas_matvec((adamas_weights_type)type, w, rows, cols, x, y) == ADAMAS_OK,
                   "%s: %s", type_names[type], adamas_last_error());
            expect(memcmp(&after, y + rows, 4) == 0, "%s: written past y[rows]", type_names[type]);
            size_t rb = adamas_weights_row_bytes((adamas_weights_type)type, cols);
            expect(rb == row_bytes_of(type, cols), "%s row_bytes(%zu) = %zu", type_names[type], cols,
                   rb);
            for (size_t r = 0; r < rows; r++) {
                double want = 0, scale = 0;
                for (size_t i = 0; i < cols; i++) {
                    double p = weight_at(type, w + r * rb, i) * x[i];
                    want += p, scale += fabs(p);
                }
                expect(fabs(y[r] - want) <= 1e-6 * scale * (1 + log2((double)cols)) + 1e-30,
                       "%s %zu x %zu row %zu: %.9g, double %.9g (sum |p| %g)", type_names[type],
                       rows, cols, r, (double)y[r], want, scale);
            }
            free(w);
            free(x);
            free(y);
        }
}

Test(weights, matvec_gives_the_same_bits_for_any_thread_count)
{
    rng_seed_from_env();
    for (int type = 0; type < 4; type++) {
        size_t rows = 2000 + rng_below(500), cols = type == ADAMAS_WEIGHTS_Q8_0 ? 512 : 500;
        unsigned char *w = random_weights(type, rows, cols);
        float *x = malloc(cols * sizeof *x), *y1 = malloc(rows * 4), *yk = malloc(rows * 4);
        rng_fill_normal(x, cols, 1.0f);
        adamas_set_num_threads(1);
        expect(adamas_matvec((adamas_weights_type)type, w, rows, cols, x, y1) == ADAMAS_OK, "1");
        for (int threads = 2; threads <= 4; threads++) {
            poison(yk, rows * 4);
            adamas_set_num_threads(threads);
            expect(adamas_matvec((adamas_weights_type)type, w, rows, cols, x, yk) == ADAMAS_OK,
                   "%d threads", threads);
            expect(memcmp(y1, yk, rows * 4) == 0, "%s: %d threads differ from 1",
                   type_names[type], threads);
        }
        free(w);
        free(x);
        free(y1);
        free(yk);
    }
    adamas_set_num_threads(0);
}

Test(weights, weights_widen_exactly)
{
    rng_seed_from_env();
    for (int type = 0; type < 4; type++)
        for (int trial = 0; trial < 8; trial++) {
            size_t rows = 1 + rng_below(40), cols = random_cols(type);
            unsigned char *w = random_weights(type, rows, cols);
            size_t n = rows * cols;
            float *out = malloc((n + 1) * sizeof *out);
            poison(out, (n + 1) * sizeof *out);
            uint32_t after;
            memcpy(&after, out + n, 4);
            expect(adamas_weights_to_f32((adamas_weights_type)type, w, rows, cols, out) == ADAMAS_OK,
                   "%s: %s", type_names[type], adamas_last_error());
            expect(memcmp(&after, out + n, 4) == 0, "%s: written past the end", type_names[type]);
            size_t rb = row_bytes_of(type, cols);
            for (size_t r = 0; r < rows; r++)
                for (size_t i = 0; i < cols; i++)
                    expect((double)out[r * cols + i] == weight_at(type, w + r * rb, i),
                           "%s %zu x %zu: element (%zu, %zu) = %a", type_names[type], rows, cols, r,
                           i, (double)out[r * cols + i]);
            free(w);
            free(out);
        }
}

/* Each bad call returns EINVAL, names the function, and leaves y as it was. */
Test(weights, bad_arguments_are_refused_and_nothing_is_written)
{
    rng_seed_from_env();
    const size_t rows = 8, cols = 64;
    unsigned char *w = random_weights(ADAMAS_WEIGHTS_Q8_0, rows, cols);
    float x[64], y[64], before[64];
    rng_fill_normal(x, cols, 1.0f);
    poison(y, sizeof y);
    memcpy(before, y, sizeof y);
    const adamas_weights_type q8 = ADAMAS_WEIGHTS_Q8_0;
    typedef struct {
        const char *what;
        int status;
    } call;
    call calls[10];
    int n = 0;
#define CALL(what, expr) calls[n++] = (call){what, expr}
    CALL("w NULL", adamas_matvec(q8, NULL, rows, cols, x, y));
    CALL("x NULL", adamas_matvec(q8, w, rows, cols, NULL, y));
    CALL("y NULL", adamas_matvec(q8, w, rows, cols, x, NULL));
    CALL("unknown type", adamas_matvec((adamas_weights_type)(4 + rng_below(100)), w, rows, cols, x, y));
    CALL("rows 0", adamas_matvec(q8, w, 0, cols, x, y));
    CALL("cols 0", adamas_matvec(q8, w, rows, 0, x, y));
    CALL("cols not whole blocks", adamas_matvec(q8, w, rows, 32 + 1 + rng_below(31), x, y));
    CALL("size overflows", adamas_matvec(ADAMAS_WEIGHTS_F32, w, SIZE_MAX / 64, 64, x, y));
    size_t bad = rng_below(cols);
    float saved = x[bad];
    static const float bad_values[] = {NAN, INFINITY, -INFINITY, 2e12f};
    x[bad] = bad_values[rng_below(4)];
    CALL("bad x", adamas_matvec(q8, w, rows, cols, x, y));
    x[bad] = saved;
    CALL("to_f32 cols not whole blocks", adamas_weights_to_f32(q8, w, rows, 48, y));
#undef CALL
    for (int i = 0; i < n; i++)
        expect(calls[i].status == ADAMAS_EINVAL, "%s: status %d", calls[i].what, calls[i].status);
    expect(memcmp(y, before, sizeof y) == 0, "a refused call wrote to its output");
    expect(adamas_weights_to_f32(q8, NULL, rows, cols, y) == ADAMAS_EINVAL, "to_f32 w NULL");
    expect(strstr(adamas_last_error(), "adamas_weights_to_f32") != NULL, "message: %s",
           adamas_last_error());
    expect(adamas_weights_row_bytes(q8, 33) == 0, "row_bytes of a partial block");
    expect(adamas_weights_row_bytes(ADAMAS_WEIGHTS_F32, SIZE_MAX / 2) == 0, "row_bytes overflow");
    expect(adamas_weights_row_bytes((adamas_weights_type)7, 64) == 0, "row_bytes unknown type");
    free(w);
}

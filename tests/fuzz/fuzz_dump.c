/* fuzz_dump.c - libFuzzer target: the attention-dump reader (safetensors header parsed
 * by libcjson) and the rows it hands back.
 *
 * Whatever the bytes, dump_parse either refuses them with a message or describes
 * q/k/v tensors whose every row lies inside them; all rows are read back. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    dump_file d;
    int st = dump_parse(copy, size, &d);
    if (st) {
        if (d.error[0] == 0 || d.q || d.model)
            abort(); /* a failure says why and keeps nothing */
        free(copy);
        return 0;
    }
    if (d.n_layers == 0 || d.n_tokens == 0 || d.n_heads == 0 || d.n_kv_heads == 0 ||
        d.n_heads % d.n_kv_heads || d.head_dim < ADAMAS_MIN_HEAD_DIM ||
        d.head_dim > ADAMAS_MAX_HEAD_DIM || (d.head_dim & (d.head_dim - 1)))
        abort();
    if (d.model)
        sink += (float)strlen(d.model);
    if (d.text)
        sink += (float)strlen(d.text);
    for (uint32_t l = 0; l < d.n_layers; l++) {
        const dump_tensor *t[3] = {&d.q[l], &d.k[l], &d.v[l]};
        for (int w = 0; w < 3; w++) {
            size_t heads = w == 0 ? d.n_heads : d.n_kv_heads;
            if (t[w]->row_len != heads * d.head_dim)
                abort();
            float *row = malloc(t[w]->row_len * sizeof *row);
            if (!row)
                abort();
            for (uint32_t p = 0; p < d.n_tokens; p++) {
                dump_read_rows(t[w], p, 1, row);
                sink += row[0] + row[t[w]->row_len - 1];
            }
            free(row);
        }
    }
    dump_close(&d);
    free(copy);
    return 0;
}

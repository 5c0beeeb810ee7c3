/*
 * adamas-gen - write a synthetic attention dump (safetensors) with the structure of
 * real models: outlier channels, RoPE-rotated keys, attention sinks, planted needles.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "adamas.h"
#include "gen.h"

static void usage(FILE *f)
{
    gen_config c = gen_config_default();
    fprintf(f,
            "usage: adamas-gen OUT.safetensors [options]\n"
            "\n"
            "Writes a synthetic attention dump for adamas-eval: per layer the post-RoPE\n"
            "queries layers.{i}.q [tokens, heads, dim] and keys and values layers.{i}.k,\n"
            "layers.{i}.v [tokens, kv-heads, dim].  Keys carry a few large outlier channels,\n"
            "a recency bias through RoPE, attention sinks at the first tokens and needles\n"
            "at random depths that the queries of their head look for.  The same options\n"
            "write the same bytes.\n"
            "\n"
            "options:\n"
            "  --layers L       layers (default %u)\n"
            "  --tokens N       tokens (default %u)\n"
            "  --heads H        query heads (default %u)\n"
            "  --kv-heads G     key/value heads, dividing H (default %u)\n"
            "  --dim D          head dimension, power of two 16..1024 (default %u)\n"
            "  --dtype T        f32, f16 or bf16 (default f16)\n"
            "  --seed S         random seed (default %llu)\n"
            "  --sinks K        attention-sink tokens at the start (default %u)\n"
            "  --needles K      needles per layer and kv head (default %u)\n"
            "  --outliers K     outlier channels per kv head, at most D/4 (default %u)\n"
            "  --rope-base B    RoPE base (default %g)\n"
            "  -h, --help       this text\n",
            c.layers, c.tokens, c.heads, c.kv_heads, c.head_dim, (unsigned long long)c.seed,
            c.sinks, c.needles, c.outliers, c.rope_base);
}

typedef struct {
    uint32_t layers;
    double t0;
} progress_state;

static void report_progress(uint32_t done, void *arg)
{
    const progress_state *p = arg;
    int tty = isatty(fileno(stderr));
    fprintf(stderr, "%sadamas-gen: layer %u / %u written (%.1f s)%s", tty ? "\r" : "", done,
            p->layers, cli_now() - p->t0, tty && done < p->layers ? "" : "\n");
    fflush(stderr);
}

int main(int argc, char **argv)
{
    gen_config c = gen_config_default();
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-' || !a[1]) {
            if (out) {
                fprintf(stderr, "adamas-gen: more than one output file (%s, %s)\n", out, a);
                return 2;
            }
            out = a;
            continue;
        }
        static const char *const known[] = {"--layers", "--tokens",  "--heads",
                                            "--kv-heads", "--dim",     "--dtype",
                                            "--seed",     "--sinks",   "--needles",
                                            "--outliers", "--rope-base"};
        int is_known = 0;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            is_known |= !strcmp(a, known[k]);
        if (!is_known) {
            fprintf(stderr, "adamas-gen: unknown option %s (see --help)\n", a);
            return 2;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "adamas-gen: %s needs a value (see --help)\n", a);
            return 2;
        }
        int bad = 0;
        if (!strcmp(a, "--layers"))
            bad = cli_parse_u32(v, &c.layers);
        else if (!strcmp(a, "--tokens"))
            bad = cli_parse_u32(v, &c.tokens);
        else if (!strcmp(a, "--heads"))
            bad = cli_parse_u32(v, &c.heads);
        else if (!strcmp(a, "--kv-heads"))
            bad = cli_parse_u32(v, &c.kv_heads);
        else if (!strcmp(a, "--dim"))
            bad = cli_parse_u32(v, &c.head_dim);
        else if (!strcmp(a, "--sinks"))
            bad = cli_parse_u32(v, &c.sinks);
        else if (!strcmp(a, "--needles"))
            bad = cli_parse_u32(v, &c.needles);
        else if (!strcmp(a, "--outliers"))
            bad = cli_parse_u32(v, &c.outliers);
        else if (!strcmp(a, "--seed")) {
            char *end;
            c.seed = strtoull(v, &end, 0);
            bad = !*v || *end || *v == '-';
        } else if (!strcmp(a, "--rope-base")) {
            char *end;
            c.rope_base = strtod(v, &end);
            bad = !*v || *end;
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32"))
                c.dtype = ADAMAS_F32;
            else if (!strcmp(v, "f16"))
                c.dtype = ADAMAS_F16;
            else if (!strcmp(v, "bf16"))
                c.dtype = ADAMAS_BF16;
            else
                bad = 1;
        }
        if (bad) {
            fprintf(stderr, "adamas-gen: bad value \"%s\" for %s (see --help)\n", v, a);
            return 2;
        }
        i++;
    }
    if (!out) {
        fprintf(stderr, "adamas-gen: no output file given\n\n");
        usage(stderr);
        return 2;
    }
    char err[512];
    if (gen_check(&c, err, sizeof err)) {
        fprintf(stderr, "adamas-gen: %s\n", err);
        return 2;
    }
    fprintf(stderr, "adamas-gen: %u layers, %u tokens, %u heads, %u kv heads, d=%u -> %s\n",
            c.layers, c.tokens, c.heads, c.kv_heads, c.head_dim, out);
    progress_state p = {c.layers, cli_now()};
    int st = gen_write(&c, out, report_progress, &p, err, sizeof err);
    if (st) {
        fprintf(stderr, "\nadamas-gen: %s: %s\n", adamas_strerror(st), err);
        return 1;
    }
    return 0;
}

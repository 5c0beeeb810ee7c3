/* test_tokenizer.c - byte-level BPE: the byte vocabulary round-trips every text, merges
 * apply by rank within the pieces of the pre-tokenizer, and GGUF vocabularies other
 * engines would read differently are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/tokenizer.h"
#include "gguf_build.h"
#include "testutil.h"

TestSuite(tokenizer, .init = rng_seed_from_env);

/* ------------------------------------------------------------------ helpers */

/* GPT-2's byte-to-unicode name of byte b, written independently of the tokenizer. */
static void byte_name(unsigned b, char out[3])
{
    unsigned cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
        unsigned rank = 0; /* how many non-printable bytes come before b */
        for (unsigned i = 0; i < b; i++)
            rank += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174);
        cp = 256 + rank;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

typedef struct {
    char names[256][3];
    const char *extra[16];
    size_t n_extra;
    const char *merges[16];
    size_t n_merges;
} vocab_spec;

static tokenizer *make(const vocab_spec *v, const int32_t *types)
{
    gguf_str tokens[256 + 16], merges[16];
    for (unsigned b = 0; b < 256; b++)
        tokens[b] = (gguf_str){v->names[b], strlen(v->names[b])};
    for (size_t i = 0; i < v->n_extra; i++)
        tokens[256 + i] = (gguf_str){v->extra[i], strlen(v->extra[i])};
    for (size_t i = 0; i < v->n_merges; i++)
        merges[i] = (gguf_str){v->merges[i], strlen(v->merges[i])};
    tokenizer *t;
    char err[256];
    int st = tokenizer_create(&t, tokens, (uint32_t)(256 + v->n_extra), types, merges,
                              (uint32_t)v->n_merges, err, sizeof err);
    expect(st == 0, "tokenizer_create: %s", err);
    return t;
}

static void byte_vocab(vocab_spec *v)
{
    memset(v, 0, sizeof *v);
    for (unsigned b = 0; b < 256; b++)
        byte_name(b, v->names[b]);
}

static size_t encode(const tokenizer *t, const char *text, size_t len, uint32_t **out)
{
    *out = NULL;
    size_t n = 0;
    expect(tokenizer_encode(t, text, len, out, &n) == 0, "encode failed");
    return n;
}

/* The bytes of tokens[n] joined. */
static char *decode(const tokenizer *t, const uint32_t *tokens, size_t n, size_t *len)
{
    size_t cap = 16;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        tokenizer_piece(t, tokens[i], &l);
        cap += l;
    }
    char *s = malloc(cap);
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *p = tokenizer_piece(t, tokens[i], &l);
        memcpy(s + *len, p, l);
        *len += l;
    }
    s[*len] = 0;
    return s;
}

/* Token ids of text, as a string "a|b|c" of their decoded pieces. */
static char *pieces(const tokenizer *t, const char *text)
{
    uint32_t *ids;
    size_t n = encode(t, text, strlen(text), &ids);
    char *s = calloc(1, 4 * strlen(text) + n + 16);
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *p = tokenizer_piece(t, ids[i], &l);
        if (i)
            strcat(s, "|");
        strncat(s, p, l);
    }
    free(ids);
    return s;
}

static void expect_pieces(const tokenizer *t, const char *text, const char *want)
{
    char *got = pieces(t, text);
    expect(!strcmp(got, want), "\"%s\" -> \"%s\", expected \"%s\"", text, got, want);
    free(got);
}

/* Random valid UTF-8: ASCII, 2-, 3- and 4-byte sequences (no surrogates). */
static size_t random_utf8(char *s, size_t max)
{
    size_t n = 0;
    while (n + 4 < max) {
        uint32_t kind = rng_below(10), cp;
        if (kind < 6)
            cp = rng_below(128);
        else if (kind < 8)
            cp = 0x80 + rng_below(0x800 - 0x80);
        else if (kind < 9)
            cp = 0x800 + rng_below(0xD800 - 0x800);
        else
            cp = 0x10000 + rng_below(0x110000 - 0x10000);
        if (cp < 0x80) {
            s[n++] = (char)cp;
        } else if (cp < 0x800) {
            s[n++] = (char)(0xC0 | cp >> 6);
            s[n++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            s[n++] = (char)(0xE0 | cp >> 12);
            s[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
            s[n++] = (char)(0x80 | (cp & 0x3F));
        } else {
            s[n++] = (char)(0xF0 | cp >> 18);
            s[n++] = (char)(0x80 | (cp >> 12 & 0x3F));
            s[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
            s[n++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return n;
}

/* ------------------------------------------------------------ byte vocabulary */

Test(tokenizer, the_byte_vocabulary_maps_every_byte_of_valid_text_to_its_token)
{
    vocab_spec v;
    byte_vocab(&v);
    tokenizer *t = make(&v, NULL);
    char text[4096];
    for (int trial = 0; trial < 50; trial++) {
        size_t len = random_utf8(text, 1 + rng_below(sizeof text - 1));
        uint32_t *ids;
        size_t n = encode(t, text, len, &ids);
        expect(n == len, "trial %d: %zu tokens for %zu bytes", trial, n, len);
        for (size_t i = 0; i < n; i++)
            expect(ids[i] == (unsigned char)text[i], "trial %d: byte %zu -> token %u", trial, i,
                   ids[i]);
        size_t back_len;
        char *back = decode(t, ids, n, &back_len);
        expect(back_len == len && !memcmp(back, text, len), "trial %d: round trip", trial);
        free(back);
        free(ids);
    }
    tokenizer_destroy(t);
}

Test(tokenizer, every_byte_value_is_a_token_and_decodes_back)
{
    vocab_spec v;
    byte_vocab(&v);
    tokenizer *t = make(&v, NULL);
    for (unsigned b = 0; b < 256; b++) {
        size_t len;
        const char *p = tokenizer_piece(t, b, &len);
        expect(len == 1 && (unsigned char)p[0] == b, "token %u decodes to %zu bytes", b, len);
    }
    /* ASCII and control bytes (valid UTF-8) each become their token */
    char all[128];
    for (int i = 0; i < 128; i++)
        all[i] = (char)i;
    uint32_t *ids;
    size_t n = encode(t, all, 128, &ids);
    expect(n == 128, "%zu tokens", n);
    for (int i = 0; i < 128; i++)
        expect(ids[i] == (uint32_t)i, "byte %d -> %u", i, ids[i]);
    free(ids);
    tokenizer_destroy(t);
}

Test(tokenizer, invalid_utf8_reads_as_the_replacement_character_as_in_llama_cpp)
{
    vocab_spec v;
    byte_vocab(&v);
    tokenizer *t = make(&v, NULL);
    const char text[] = "a\xff" "b\xc3";
    uint32_t *ids;
    size_t n = encode(t, text, 4, &ids);
    const uint32_t want[] = {'a', 0xEF, 0xBF, 0xBD, 'b', 0xEF, 0xBF, 0xBD};
    expect(n == 8, "%zu tokens", n);
    for (size_t i = 0; i < n; i++)
        expect(ids[i] == want[i], "token %zu: %u, expected %u", i, ids[i], want[i]);
    free(ids);
    tokenizer_destroy(t);
}

Test(tokenizer, control_and_unused_tokens_decode_to_nothing)
{
    vocab_spec v;
    byte_vocab(&v);
    v.extra[v.n_extra++] = "<|endoftext|>";
    v.extra[v.n_extra++] = "[PAD257]";
    v.extra[v.n_extra++] = "<user>";
    int32_t types[259];
    for (int i = 0; i < 256; i++)
        types[i] = TOKEN_NORMAL;
    types[256] = TOKEN_CONTROL;
    types[257] = TOKEN_UNUSED;
    types[258] = TOKEN_USER_DEFINED;
    tokenizer *t = make(&v, types);
    size_t len;
    tokenizer_piece(t, 256, &len);
    expect(len == 0, "control token: %zu bytes", len);
    tokenizer_piece(t, 257, &len);
    expect(len == 0, "unused token: %zu bytes", len);
    const char *p = tokenizer_piece(t, 258, &len);
    expect(len == 6 && !memcmp(p, "<user>", 6), "user-defined token prints its name");
    tokenizer_piece(t, 9999, &len);
    expect(len == 0, "a token beyond the vocabulary");
    tokenizer_destroy(t);
}

/* ------------------------------------------------------------------- merges */

Test(tokenizer, merges_apply_lowest_rank_first_and_leftmost_on_ties)
{
    vocab_spec v;
    byte_vocab(&v);
    v.extra[v.n_extra++] = "th";
    v.extra[v.n_extra++] = "the";
    v.extra[v.n_extra++] = "Ġthe";
    v.merges[v.n_merges++] = "t h";
    v.merges[v.n_merges++] = "th e";
    v.merges[v.n_merges++] = "Ġ the";
    tokenizer *t = make(&v, NULL);
    expect_pieces(t, "the", "the");
    expect_pieces(t, " the", " the");
    expect_pieces(t, "ththe", "th|the");
    expect_pieces(t, "tthe", "t|the");
    uint32_t *ids;
    size_t n = encode(t, " the", 4, &ids);
    expect(n == 1 && ids[0] == 258, "\" the\" is token 258, got %zu tokens", n);
    free(ids);
    tokenizer_destroy(t);

    /* rank decides, not position: "a b" ranks after "b c" */
    byte_vocab(&v);
    v.extra[v.n_extra++] = "ab";
    v.extra[v.n_extra++] = "bc";
    v.merges[v.n_merges++] = "b c";
    v.merges[v.n_merges++] = "a b";
    t = make(&v, NULL);
    expect_pieces(t, "abc", "a|bc");
    tokenizer_destroy(t);
}

Test(tokenizer, merges_never_cross_the_pieces_of_the_pre_tokenizer)
{
    vocab_spec v;
    byte_vocab(&v);
    v.extra[v.n_extra++] = "oĠ";
    v.extra[v.n_extra++] = "34";
    v.extra[v.n_extra++] = "a,";
    v.extra[v.n_extra++] = "Ġ'";
    v.merges[v.n_merges++] = "o Ġ";
    v.merges[v.n_merges++] = "3 4";
    v.merges[v.n_merges++] = "a ,";
    v.merges[v.n_merges++] = "Ġ '";
    tokenizer *t = make(&v, NULL);
    expect_pieces(t, "o w", "o| |w");          /* " w" is one piece */
    expect_pieces(t, "12345", "1|2|3|4|5");    /* digit triples: 123 | 45 */
    expect_pieces(t, "345", "34|5");           /* merges apply inside a triple */
    expect_pieces(t, "a,b", "a|,|b");          /* punctuation runs split off */
    expect_pieces(t, "x '", "x| |'");          /* punctuation is its own piece */
    tokenizer_destroy(t);
}

Test(tokenizer, the_default_pre_tokenizer_splits_as_llama_cpp)
{
    /* one merge per pair of bytes found inside a piece would join it: instead, check
     * the pieces through merges that join two given bytes */
    vocab_spec v;
    byte_vocab(&v);
    v.extra[v.n_extra++] = "Ġb";
    v.extra[v.n_extra++] = "ĠĠ";
    v.extra[v.n_extra++] = "'t";
    v.extra[v.n_extra++] = "nt";
    v.extra[v.n_extra++] = "Ġ1";
    v.extra[v.n_extra++] = "12";
    v.merges[v.n_merges++] = "Ġ b";
    v.merges[v.n_merges++] = "Ġ Ġ";
    v.merges[v.n_merges++] = "' t";
    v.merges[v.n_merges++] = "n t";
    v.merges[v.n_merges++] = "Ġ 1";
    v.merges[v.n_merges++] = "1 2";
    tokenizer *t = make(&v, NULL);
    expect_pieces(t, "a b", "a| b");             /* " ?\p{L}+" keeps the space */
    expect_pieces(t, "a   b", "a|  | b");        /* \s+(?!\S): the last space goes on */
    /* the punctuation expression runs first, so GPT-2's contractions never see an
     * apostrophe with its letter: "'" is a piece of its own */
    expect_pieces(t, "don't", "d|o|n|'|t");
    expect_pieces(t, "'t", "'|t");
    expect_pieces(t, "a 12", "a| |12");          /* \p{N}+ splits " 12" into " " and "12" */
    expect_pieces(t, "x  ", "x|  ");             /* trailing spaces stay together */
    tokenizer_destroy(t);
}

/* --------------------------------------------------------------- from GGUF */

static void gguf_vocab(gbuf *b, const char *model, const char *pre, int with_merges)
{
    static char names[256][3];
    const char *tokens[256];
    for (unsigned i = 0; i < 256; i++) {
        byte_name(i, names[i]);
        tokens[i] = names[i];
    }
    gb_header(b, 0, 3 + (pre != NULL) + (with_merges != 0));
    gb_kv_str(b, "tokenizer.ggml.model", model);
    if (pre)
        gb_kv_str(b, "tokenizer.ggml.pre", pre);
    gb_kv_strings(b, "tokenizer.ggml.tokens", tokens, 256);
    if (with_merges)
        gb_kv_strings(b, "tokenizer.ggml.merges", NULL, 0);
    gb_kv_u32(b, "tokenizer.ggml.eos_token_id", 10);
}

static int from_gguf(const gbuf *b, char *msg, size_t msg_size)
{
    gguf_file f;
    int st = gguf_parse(b->bytes, b->n, &f);
    expect(st == 0, "%s", f.error);
    tokenizer *t = NULL;
    st = tokenizer_from_gguf(&f, &t);
    snprintf(msg, msg_size, "%s", f.error);
    if (!st) {
        expect(tokenizer_n_tokens(t) == 256 && tokenizer_eos(t) == 10 &&
               tokenizer_bos(t) == TOKEN_NONE, "ids from the file");
        tokenizer_destroy(t);
    }
    gguf_close(&f);
    return st;
}

Test(tokenizer, gguf_vocabularies_are_read_or_refused_with_a_reason)
{
    char msg[512];
    gbuf b = {0};
    gguf_vocab(&b, "gpt2", "default", 1);
    expect(from_gguf(&b, msg, sizeof msg) == 0, "a byte vocabulary: %s", msg);
    gb_free(&b);
    gguf_vocab(&b, "gpt2", NULL, 1);
    expect(from_gguf(&b, msg, sizeof msg) == 0, "no pre-tokenizer key means default: %s", msg);
    gb_free(&b);
    gguf_vocab(&b, "llama", "default", 1);
    expect(from_gguf(&b, msg, sizeof msg) == ADAMAS_ENOTSUP && strstr(msg, "llama"),
           "a SentencePiece vocabulary: %s", msg);
    gb_free(&b);
    gguf_vocab(&b, "gpt2", "llama3", 1);
    expect(from_gguf(&b, msg, sizeof msg) == ADAMAS_ENOTSUP && strstr(msg, "llama3"),
           "another pre-tokenizer: %s", msg);
    gb_free(&b);
    gguf_vocab(&b, "gpt2", "default", 0);
    expect(from_gguf(&b, msg, sizeof msg) == ADAMAS_EFORMAT && strstr(msg, "merges"),
           "no merges key: %s", msg);
    gb_free(&b);
}

/* tokenizer.c - byte-level BPE as llama.cpp reads it (see tokenizer.h). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* ---------------------------------------------------------------- the vocabulary */

/* Every string is kept as the bytes it stands for ("raw"): the byte-to-unicode names
 * are decoded once at load, so encoding works on bytes.  A name holding a code point
 * that stands for no byte can never be the result of a merge in llama.cpp: such
 * tokens and merges are kept out of the lookup tables. */
typedef struct {
    const char *raw;     /* the bytes the name stands for                 */
    uint32_t raw_len;
    const char *piece;   /* what decoding prints                          */
    uint32_t piece_len;
    int32_t type;
    bool lookup;         /* in the lookup table                           */
} token_entry;

typedef struct {
    const char *left, *right;
    uint32_t left_len, right_len;
} merge_entry;

struct tokenizer {
    token_entry *tokens;
    uint32_t n_tokens;
    merge_entry *merges;
    uint32_t n_merges;
    uint32_t *token_table, token_mask; /* open addressing: token id + 1, 0 empty  */
    uint32_t *merge_table, merge_mask; /* merge rank + 1, 0 empty                 */
    char *arena;                       /* every string                            */
    uint32_t bos, eos;
    uint32_t byte_token[256];          /* the token of each single byte, or NONE  */
};

/* GPT-2's byte-to-unicode: the printable bytes 33..126, 161..172 and 174..255 stand for
 * themselves; the 68 others, in byte order, for U+0100..U+0143 (0..32, then 127..160,
 * then 173). */
static int byte_is_printable(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* The byte a code point stands for, or -1. */
static int cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp <= 256 + 32)
        return (int)(cp - 256);         /* bytes 0..32    */
    if (cp <= 256 + 66)
        return (int)(cp - 289 + 127);   /* bytes 127..160 */
    return cp == 256 + 67 ? 173 : -1;
}

static uint32_t hash_bytes(uint32_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* ------------------------------------------------------------------------ UTF-8 */

/* One code point from s[*i..n) by llama.cpp's rules (no overlong or surrogate checks);
 * an invalid sequence consumes one byte and reads as U+FFFD. */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i)
{
    size_t p = *i;
    unsigned char b = s[p];
    unsigned len = !(b & 0x80) ? 1 : !(b & 0x40) ? 0 : !(b & 0x20) ? 2 : !(b & 0x10) ? 3
                                   : !(b & 0x08) ? 4 : 0;
    if (len == 0 || p + len > n) {
        *i = p + 1;
        return 0xFFFD;
    }
    for (unsigned k = 1; k < len; k++)
        if ((s[p + k] & 0xC0) != 0x80) {
            *i = p + 1;
            return 0xFFFD;
        }
    static const unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t cp = b & lead_mask[len];
    for (unsigned k = 1; k < len; k++)
        cp = cp << 6 | (s[p + k] & 0x3F);
    *i = p + len;
    return cp;
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode a byte-to-unicode name into raw bytes at out (room for len bytes: a name is
 * never shorter than what it stands for).  false when a code point stands for no byte
 * (then out holds the name's own bytes for those). */
static bool name_to_raw(const char *name, size_t len, char *out, uint32_t *out_len)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t i = 0, n = 0;
    bool all_bytes = true;
    while (i < len) {
        size_t start = i;
        uint32_t cp = utf8_next(s, len, &i);
        int b = cp_to_byte(cp);
        if (b >= 0) {
            out[n++] = (char)b;
        } else {
            all_bytes = false;
            memcpy(out + n, name + start, i - start);
            n += i - start;
        }
    }
    *out_len = (uint32_t)n;
    return all_bytes;
}

/* ------------------------------------------------------------------ hash tables */

static uint32_t token_hash(const char *s, size_t n)
{
    return hash_bytes(2166136261u, s, n);
}

static uint32_t merge_hash(const char *l, size_t ln, const char *r, size_t rn)
{
    uint32_t h = hash_bytes(2166136261u, l, ln);
    h = (h ^ 0x100u) * 16777619u; /* a separator no byte equals */
    return hash_bytes(h, r, rn);
}

static uint32_t find_token(const tokenizer *t, const char *s, size_t n)
{
    for (uint32_t h = token_hash(s, n) & t->token_mask;; h = (h + 1) & t->token_mask) {
        uint32_t slot = t->token_table[h];
        if (!slot)
            return TOKEN_NONE;
        const token_entry *e = &t->tokens[slot - 1];
        if (e->raw_len == n && !memcmp(e->raw, s, n))
            return slot - 1;
    }
}

static uint32_t find_merge(const tokenizer *t, const char *l, size_t ln, const char *r, size_t rn)
{
    if (!t->n_merges)
        return UINT32_MAX;
    for (uint32_t h = merge_hash(l, ln, r, rn) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
        uint32_t slot = t->merge_table[h];
        if (!slot)
            return UINT32_MAX;
        const merge_entry *m = &t->merges[slot - 1];
        if (m->left_len == ln && m->right_len == rn && !memcmp(m->left, l, ln) &&
            !memcmp(m->right, r, rn))
            return slot - 1;
    }
}

static uint32_t table_size(uint32_t n)
{
    uint32_t size = 16;
    while (size < 2 * (uint64_t)n)
        size *= 2;
    return size;
}

/* --------------------------------------------------------------------- creation */

static int create_fail(char *err, size_t err_size, int status, const char *msg, uint64_t i)
{
    if (err && err_size)
        snprintf(err, err_size, msg, (unsigned long long)i);
    return status;
}

int tokenizer_create(tokenizer **out, const gguf_str *tokens, uint32_t n_tokens,
                     const int32_t *types, const gguf_str *merges, uint32_t n_merges, char *err,
                     size_t err_size)
{
    *out = NULL;
    if (n_tokens == 0 || n_tokens >= UINT32_MAX / 2 || n_merges >= UINT32_MAX / 2)
        return create_fail(err, err_size, ADAMAS_EINVAL, "%llu tokens: a vocabulary needs "
                           "1 to 2^31 tokens", n_tokens);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n_tokens; i++) {
        if (tokens[i].len > UINT32_MAX / 2)
            return create_fail(err, err_size, ADAMAS_EINVAL, "token %llu is too long", i);
        /* user-defined tokens keep their name as written too */
        bytes += tokens[i].len * (types && types[i] == TOKEN_USER_DEFINED ? 2u : 1u);
    }
    for (uint32_t i = 0; i < n_merges; i++) {
        if (merges[i].len > UINT32_MAX / 2)
            return create_fail(err, err_size, ADAMAS_EINVAL, "merge %llu is too long", i);
        bytes += merges[i].len;
    }
    if (bytes > SIZE_MAX / 2)
        return create_fail(err, err_size, ADAMAS_ENOMEM, "out of memory", 0);
    tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return create_fail(err, err_size, ADAMAS_ENOMEM, "out of memory", 0);
    t->n_tokens = n_tokens;
    t->n_merges = n_merges;
    t->token_mask = table_size(n_tokens) - 1;
    t->merge_mask = table_size(n_merges) - 1;
    t->tokens = calloc(n_tokens, sizeof *t->tokens);
    t->merges = calloc(n_merges ? n_merges : 1, sizeof *t->merges);
    t->token_table = calloc((size_t)t->token_mask + 1, sizeof *t->token_table);
    t->merge_table = calloc((size_t)t->merge_mask + 1, sizeof *t->merge_table);
    t->arena = malloc((size_t)bytes + 1);
    if (!t->tokens || !t->merges || !t->token_table || !t->merge_table || !t->arena) {
        tokenizer_destroy(t);
        return create_fail(err, err_size, ADAMAS_ENOMEM, "out of memory", 0);
    }
    t->bos = t->eos = TOKEN_NONE;
    char *a = t->arena;
    for (uint32_t i = 0; i < n_tokens; i++) {
        token_entry *e = &t->tokens[i];
        e->type = types ? types[i] : TOKEN_NORMAL;
        uint32_t n;
        bool bytes_only = name_to_raw(tokens[i].ptr, (size_t)tokens[i].len, a, &n);
        e->raw = a;
        e->raw_len = n;
        a += n;
        e->lookup = bytes_only;
        /* decoding: byte tokens and normal ones print their bytes; user-defined ones
         * their name as written; control, unused and unknown ones nothing */
        if (e->type == TOKEN_USER_DEFINED) {
            memcpy(a, tokens[i].ptr, (size_t)tokens[i].len);
            e->piece = a;
            e->piece_len = (uint32_t)tokens[i].len;
            a += tokens[i].len;
        } else if (e->type == TOKEN_CONTROL || e->type == TOKEN_UNUSED ||
                   e->type == TOKEN_UNKNOWN) {
            e->piece = "";
            e->piece_len = 0;
        } else {
            e->piece = e->raw;
            e->piece_len = e->raw_len;
        }
    }
    /* later tokens win a name, as in llama.cpp's token_to_id */
    for (uint32_t i = 0; i < n_tokens; i++) {
        token_entry *e = &t->tokens[i];
        if (!e->lookup)
            continue;
        uint32_t h = token_hash(e->raw, e->raw_len) & t->token_mask;
        for (;; h = (h + 1) & t->token_mask) {
            uint32_t slot = t->token_table[h];
            if (!slot || (t->tokens[slot - 1].raw_len == e->raw_len &&
                          !memcmp(t->tokens[slot - 1].raw, e->raw, e->raw_len)))
                break;
        }
        t->token_table[h] = i + 1;
    }
    for (unsigned b = 0; b < 256; b++) {
        char ch = (char)b;
        t->byte_token[b] = find_token(t, &ch, 1);
    }
    /* merges "left right", split at the first space after the first byte; the first
     * of equal pairs keeps its rank, as in llama.cpp's bpe_ranks.emplace */
    for (uint32_t i = 0; i < n_merges; i++) {
        merge_entry *m = &t->merges[i];
        const char *s = merges[i].ptr;
        size_t len = (size_t)merges[i].len, space = 1;
        while (space < len && s[space] != ' ')
            space++;
        if (space >= len)
            continue; /* no pair: never matches */
        uint32_t ln, rn;
        bool ok = name_to_raw(s, space, a, &ln);
        m->left = a;
        m->left_len = ln;
        a += ln;
        ok &= name_to_raw(s + space + 1, len - space - 1, a, &rn);
        m->right = a;
        m->right_len = rn;
        a += rn;
        if (!ok || !ln || !rn)
            continue;
        uint32_t h = merge_hash(m->left, ln, m->right, rn) & t->merge_mask;
        bool seen = false;
        for (;; h = (h + 1) & t->merge_mask) {
            uint32_t slot = t->merge_table[h];
            if (!slot)
                break;
            const merge_entry *o = &t->merges[slot - 1];
            if (o->left_len == ln && o->right_len == rn && !memcmp(o->left, m->left, ln) &&
                !memcmp(o->right, m->right, rn)) {
                seen = true;
                break;
            }
        }
        if (!seen)
            t->merge_table[h] = i + 1;
    }
    *out = t;
    return 0;
}

void tokenizer_destroy(tokenizer *t)
{
    if (!t)
        return;
    free(t->tokens);
    free(t->merges);
    free(t->token_table);
    free(t->merge_table);
    free(t->arena);
    free(t);
}

uint32_t tokenizer_n_tokens(const tokenizer *t)
{
    return t->n_tokens;
}

uint32_t tokenizer_bos(const tokenizer *t)
{
    return t->bos;
}

uint32_t tokenizer_eos(const tokenizer *t)
{
    return t->eos;
}

const char *tokenizer_piece(const tokenizer *t, uint32_t token, size_t *len)
{
    if (token >= t->n_tokens) {
        *len = 0;
        return "";
    }
    *len = t->tokens[token].piece_len;
    return t->tokens[token].piece;
}

/* ------------------------------------------------------------- from a GGUF file */

static int gguf_fail(gguf_file *f, int status, const char *fmt, const char *arg)
{
    snprintf(f->error, sizeof f->error, fmt, arg);
    return status;
}

static int optional_id(gguf_file *f, const char *key, uint32_t n_tokens, uint32_t *out)
{
    *out = TOKEN_NONE;
    if (!gguf_find_kv(f, key))
        return 0;
    uint32_t id;
    int st = gguf_get_u32(f, key, &id);
    if (st)
        return st;
    if (id >= n_tokens)
        return gguf_fail(f, ADAMAS_EFORMAT, "%s is beyond the vocabulary", key);
    *out = id;
    return 0;
}

int tokenizer_from_gguf(gguf_file *f, tokenizer **out)
{
    *out = NULL;
    gguf_str model, pre = {"default", 7};
    int st = gguf_get_str(f, "tokenizer.ggml.model", &model);
    if (st)
        return st;
    if (!gguf_str_eq(model, "gpt2")) {
        char name[40];
        snprintf(name, sizeof name, "%.*s", (int)(model.len < 32 ? model.len : 32), model.ptr);
        return gguf_fail(f, ADAMAS_ENOTSUP, "tokenizer.ggml.model \"%s\": only byte-level BPE "
                         "(\"gpt2\") is supported", name);
    }
    if (gguf_find_kv(f, "tokenizer.ggml.pre") && (st = gguf_get_str(f, "tokenizer.ggml.pre", &pre)))
        return st;
    if (!gguf_str_eq(pre, "default")) {
        char name[40];
        snprintf(name, sizeof name, "%.*s", (int)(pre.len < 32 ? pre.len : 32), pre.ptr);
        return gguf_fail(f, ADAMAS_ENOTSUP, "tokenizer.ggml.pre \"%s\": only the pre-tokenizer "
                         "\"default\" is supported", name);
    }
    const gguf_kv *tokens = gguf_find_kv(f, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    const gguf_kv *merges = gguf_find_kv(f, "tokenizer.ggml.merges");
    if (!tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->elem_type != GGUF_TYPE_STRING ||
        tokens->n == 0 || tokens->n >= UINT32_MAX / 2)
        return gguf_fail(f, ADAMAS_EFORMAT, "%s is missing or not a non-empty array of strings",
                         "tokenizer.ggml.tokens");
    if (!merges || merges->type != GGUF_TYPE_ARRAY || merges->elem_type != GGUF_TYPE_STRING ||
        merges->n >= UINT32_MAX / 2)
        return gguf_fail(f, ADAMAS_EFORMAT, "%s is missing or not an array of strings "
                         "(byte-level BPE needs it, even empty)", "tokenizer.ggml.merges");
    if (types && (types->type != GGUF_TYPE_ARRAY || types->n != tokens->n ||
                  (types->elem_type != GGUF_TYPE_INT32 && types->elem_type != GGUF_TYPE_UINT32)))
        return gguf_fail(f, ADAMAS_EFORMAT, "%s is not an array of int32, one per token",
                         "tokenizer.ggml.token_type");
    /* the arrays were checked against the file's size: these allocations are bounded */
    gguf_str *tok = malloc((size_t)tokens->n * sizeof *tok);
    gguf_str *mer = malloc((size_t)(merges->n ? merges->n : 1) * sizeof *mer);
    int32_t *typ = types ? malloc((size_t)types->n * sizeof *typ) : NULL;
    if (!tok || !mer || (types && !typ)) {
        free(tok);
        free(mer);
        free(typ);
        return gguf_fail(f, ADAMAS_ENOMEM, "%s", "out of memory");
    }
    gguf_array_strings(tokens, tok);
    gguf_array_strings(merges, mer);
    for (uint64_t i = 0; types && i < types->n; i++)
        typ[i] = (int32_t)gguf_array_int(types, i);
    st = tokenizer_create(out, tok, (uint32_t)tokens->n, typ, mer, (uint32_t)merges->n,
                          f->error, sizeof f->error);
    free(tok);
    free(mer);
    free(typ);
    if (st)
        return st == ADAMAS_EINVAL ? ADAMAS_EFORMAT : st;
    if ((st = optional_id(f, "tokenizer.ggml.bos_token_id", (*out)->n_tokens, &(*out)->bos)) ||
        (st = optional_id(f, "tokenizer.ggml.eos_token_id", (*out)->n_tokens, &(*out)->eos))) {
        tokenizer_destroy(*out);
        *out = NULL;
    }
    return st;
}

/* ---------------------------------------------------------------- pre-tokenizer */

enum {
    CP_LETTER = UNICODE_LETTER,
    CP_NUMBER = UNICODE_NUMBER,
    CP_PUNCT = UNICODE_PUNCT,
    CP_OTHER = UNICODE_OTHER,
    CP_SPACE = 16,
};

/* Classes of a code point as llama.cpp's unicode tables give them; 0: unassigned
 * (or past the end of the piece). */
static unsigned cp_flags(uint32_t cp)
{
    if (cp < 0x80) {
        if (cp == ' ' || (cp >= 9 && cp <= 13))
            return CP_SPACE | CP_OTHER;
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
            return CP_LETTER;
        if (cp >= '0' && cp <= '9')
            return CP_NUMBER;
        if (strchr("!\"#%&'()*,-./:;?@[\\]_{}", (int)cp) && cp)
            return CP_PUNCT;
        return CP_OTHER; /* controls and the symbols $+<=>^`|~ */
    }
    unsigned space = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
                     cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000
                         ? CP_SPACE
                         : 0;
    unsigned lo = 0, hi = unicode_n_ranges;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (unicode_ranges[mid].last < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    unsigned cls = lo < unicode_n_ranges && unicode_ranges[lo].first <= cp ? unicode_ranges[lo].flags : 0;
    return cls | space;
}

typedef struct {
    size_t start, end;
} span;

typedef struct {
    span *at;
    size_t n, cap;
} spans;

static int push_span(spans *s, size_t start, size_t end)
{
    if (start >= end)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        span *grown = realloc(s->at, cap * sizeof *grown);
        if (!grown)
            return ADAMAS_ENOMEM;
        s->at = grown;
        s->cap = cap;
    }
    s->at[s->n++] = (span){start, end};
    return 0;
}

/* Expression 1, [\p{P}\$\+<=>\^~\|]+, and 3, \p{N}+: runs of a class split from the
 * rest. */
static int split_runs(const uint32_t *cp, const spans *in, spans *out, bool (*member)(uint32_t))
{
    for (size_t k = 0; k < in->n; k++) {
        size_t i = in->at[k].start, end = in->at[k].end;
        while (i < end) {
            size_t j = i;
            bool m = member(cp[i]);
            while (j < end && member(cp[j]) == m)
                j++;
            if (push_span(out, i, j))
                return ADAMAS_ENOMEM;
            i = j;
        }
    }
    return 0;
}

static bool is_punct_run(uint32_t c)
{
    return (cp_flags(c) & CP_PUNCT) || (c < 0x80 && c && strchr("$+<=>^~|", (int)c));
}

static bool is_number(uint32_t c)
{
    return cp_flags(c) & CP_NUMBER;
}

/* Expression 2, GPT-2's 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+,
 * as llama.cpp's hand-written matcher runs it. */
static int split_gpt2(const uint32_t *cp, const spans *in, spans *out)
{
    for (size_t k = 0; k < in->n; k++) {
        const size_t start = in->at[k].start, end = in->at[k].end;
#define CPT(p) ((p) < end ? cp[p] : 0xFFFFFFFFu)
#define FLAGS(p) ((p) < end ? cp_flags(cp[p]) : 0u)
        size_t pos = start, prev = start;
        while (pos < end) {
            uint32_t c = cp[pos];
            if (c == '\'' && pos + 1 < end) {
                uint32_t n1 = cp[pos + 1];
                if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                    pos += 2;
                    goto add;
                }
                if (pos + 2 < end) {
                    uint32_t n2 = cp[pos + 2];
                    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
                        (n1 == 'l' && n2 == 'l')) {
                        pos += 3;
                        goto add;
                    }
                }
            }
            unsigned f2 = c == ' ' ? FLAGS(pos + 1) : cp_flags(c);
            if (f2 & CP_LETTER) {
                pos += c == ' ';
                while (FLAGS(pos) & CP_LETTER)
                    pos++;
                goto add;
            }
            if (f2 & CP_NUMBER) {
                pos += c == ' ';
                while (FLAGS(pos) & CP_NUMBER)
                    pos++;
                goto add;
            }
            if (!(f2 & (CP_SPACE | CP_LETTER | CP_NUMBER)) && f2) {
                pos += c == ' ';
                for (unsigned f = FLAGS(pos); !(f & (CP_SPACE | CP_LETTER | CP_NUMBER)) && f;
                     f = FLAGS(pos))
                    pos++;
                goto add;
            }
            size_t spaces = 0;
            while (FLAGS(pos + spaces) & CP_SPACE)
                spaces++;
            if (spaces > 1 && CPT(pos + spaces) != 0xFFFFFFFFu) {
                pos += spaces - 1; /* \s+(?!\S): the last space goes with what follows */
                goto add;
            }
            pos += spaces ? spaces : 1; /* \s+, or a code point nothing matched */
        add:
            if (push_span(out, prev, pos))
                return ADAMAS_ENOMEM;
            prev = pos;
        }
#undef CPT
#undef FLAGS
    }
    return 0;
}

/* Expression 4, [0-9][0-9][0-9]: each triple of ASCII digits split out, left to right. */
static int split_triples(const uint32_t *cp, const spans *in, spans *out)
{
    for (size_t k = 0; k < in->n; k++) {
        size_t i = in->at[k].start, end = in->at[k].end, last = i;
        while (i + 3 <= end) {
            bool triple = true;
            for (int d = 0; d < 3; d++)
                triple &= cp[i + d] >= '0' && cp[i + d] <= '9';
            if (!triple) {
                i++;
                continue;
            }
            if (push_span(out, last, i) || push_span(out, i, i + 3))
                return ADAMAS_ENOMEM;
            i += 3;
            last = i;
        }
        if (push_span(out, last, end))
            return ADAMAS_ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------------- BPE */

typedef struct {
    uint32_t start, len;  /* bytes of the word           */
    int32_t prev, next;   /* neighbours, -1 at the ends  */
} symbol;

typedef struct {
    uint32_t rank, left, size; /* size: bytes of the pair when it was queued */
} bigram;

static bool bigram_before(const bigram *a, const bigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bigram *h, size_t *n, bigram b)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = b;
}

static bigram heap_pop(bigram *h, size_t *n)
{
    bigram top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && bigram_before(&h[c + 1], &h[c]))
            c++;
        if (!bigram_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void queue_pair(const tokenizer *t, const char *w, const symbol *s, int32_t left,
                       bigram *heap, size_t *n_heap)
{
    if (left < 0 || s[left].next < 0)
        return;
    const symbol *l = &s[left], *r = &s[l->next];
    uint32_t rank = find_merge(t, w + l->start, l->len, w + r->start, r->len);
    if (rank != UINT32_MAX)
        heap_push(heap, n_heap, (bigram){rank, (uint32_t)left, l->len + r->len});
}

/* The tokens of one word (the raw bytes w[n]), appended to out. */
typedef struct {
    uint32_t *tokens;
    size_t n, cap;
} token_list;

static int push_token(token_list *o, uint32_t id)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 256;
        uint32_t *grown = realloc(o->tokens, cap * sizeof *grown);
        if (!grown)
            return ADAMAS_ENOMEM;
        o->tokens = grown;
        o->cap = cap;
    }
    o->tokens[o->n++] = id;
    return 0;
}

static int bpe_word(const tokenizer *t, const char *w, size_t n, symbol *s, bigram *heap,
                    token_list *o)
{
    for (size_t i = 0; i < n; i++)
        s[i] = (symbol){(uint32_t)i, 1, (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    size_t n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        queue_pair(t, w, s, (int32_t)i, heap, &n_heap);
    while (n_heap) {
        bigram b = heap_pop(heap, &n_heap);
        symbol *l = &s[b.left];
        if (l->len == 0 || l->next < 0)
            continue;
        symbol *r = &s[l->next];
        if (l->len + r->len != b.size)
            continue; /* one side has merged since: the pair is stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = (int32_t)b.left;
        queue_pair(t, w, s, l->prev, heap, &n_heap);
        queue_pair(t, w, s, (int32_t)b.left, heap, &n_heap);
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = s[i].next) {
        uint32_t id = find_token(t, w + s[i].start, s[i].len);
        if (id != TOKEN_NONE) {
            if (push_token(o, id))
                return ADAMAS_ENOMEM;
            continue;
        }
        for (uint32_t k = 0; k < s[i].len; k++) { /* a symbol the vocabulary lacks */
            uint32_t byte_id = t->byte_token[(unsigned char)w[s[i].start + k]];
            if (byte_id != TOKEN_NONE && push_token(o, byte_id))
                return ADAMAS_ENOMEM;
        }
    }
    return 0;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, uint32_t **tokens,
                     size_t *n)
{
    token_list o = {*tokens, *n, *n};
    uint32_t *cp = malloc((len ? len : 1) * sizeof *cp);
    spans a = {0}, b = {0};
    char *word = NULL;
    symbol *sym = NULL;
    bigram *heap = NULL;
    int st = ADAMAS_ENOMEM;
    if (!cp)
        goto done;
    size_t n_cp = 0;
    for (size_t i = 0; i < len;)
        cp[n_cp++] = utf8_next((const unsigned char *)text, len, &i);
    if (push_span(&a, 0, n_cp) || split_runs(cp, &a, &b, is_punct_run))
        goto done;
    a.n = 0;
    if (split_gpt2(cp, &b, &a))
        goto done;
    b.n = 0;
    if (split_runs(cp, &a, &b, is_number))
        goto done;
    a.n = 0;
    if (split_triples(cp, &b, &a))
        goto done;
    size_t longest = 0;
    for (size_t k = 0; k < a.n; k++)
        if (a.at[k].end - a.at[k].start > longest)
            longest = a.at[k].end - a.at[k].start;
    /* a code point is at most 4 bytes; a word of m bytes queues at most 3m pairs */
    word = malloc(4 * longest + 1);
    sym = malloc((4 * longest + 1) * sizeof *sym);
    heap = malloc((12 * longest + 1) * sizeof *heap);
    if (!word || !sym || !heap)
        goto done;
    for (size_t k = 0; k < a.n; k++) {
        size_t m = 0;
        for (size_t i = a.at[k].start; i < a.at[k].end; i++)
            m += utf8_put(cp[i], word + m);
        if (bpe_word(t, word, m, sym, heap, &o))
            goto done;
    }
    st = 0;
done:
    *tokens = o.tokens;
    *n = o.n;
    free(cp);
    free(a.at);
    free(b.at);
    free(word);
    free(sym);
    free(heap);
    return st;
}

/*
 * tokenizer.h - byte-level BPE as llama.cpp reads it from a GGUF file
 * (tokenizer.ggml.model "gpt2").
 *
 * Tokens are stored as GPT-2 byte-to-unicode names: every byte of the text is one
 * printable code point (bytes 33..126, 161..172 and 174..255 stand for themselves, the
 * others for U+0100 on), so "Ġthe" is the token for the bytes " the".  Encoding splits
 * the text with the pre-tokenizer "default" (four expressions applied in turn:
 * punctuation runs, the GPT-2 expression, number runs, digit triples), then merges the
 * byte symbols of each piece pair by pair, lowest merge rank first (leftmost on ties),
 * and looks the symbols up in the vocabulary.  For a vocabulary of the 256 bytes and no
 * merges this maps every byte to its token.  As in llama.cpp, bytes that are not valid
 * UTF-8 are read as U+FFFD.
 */
#ifndef ADAMAS_TOKENIZER_H
#define ADAMAS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* Token types of tokenizer.ggml.token_type (llama.cpp's). */
enum {
    TOKEN_NORMAL = 1,
    TOKEN_UNKNOWN = 2,
    TOKEN_CONTROL = 3,
    TOKEN_USER_DEFINED = 4,
    TOKEN_UNUSED = 5,
    TOKEN_BYTE = 6,
};

#define TOKEN_NONE UINT32_MAX

typedef struct tokenizer tokenizer;

/* A vocabulary from its parts: tokens[n_tokens] (GPT-2 byte-to-unicode names), their
 * types (NULL: all normal), merges[n_merges] ("left right").  The strings are copied.
 * Returns 0, ADAMAS_EINVAL (a message in err), ADAMAS_ENOMEM. */
int tokenizer_create(tokenizer **out, const gguf_str *tokens, uint32_t n_tokens,
                     const int32_t *types, const gguf_str *merges, uint32_t n_merges, char *err,
                     size_t err_size);

/* The vocabulary of a GGUF file (tokenizer.ggml.*).  ADAMAS_EFORMAT: missing or
 * malformed keys; ADAMAS_ENOTSUP: a tokenizer model other than gpt2 or a pre-tokenizer
 * other than "default"; the message goes to f->error. */
int tokenizer_from_gguf(gguf_file *f, tokenizer **out);

void tokenizer_destroy(tokenizer *t);

uint32_t tokenizer_n_tokens(const tokenizer *t);
/* tokenizer.ggml.bos_token_id / eos_token_id, or TOKEN_NONE. */
uint32_t tokenizer_bos(const tokenizer *t);
uint32_t tokenizer_eos(const tokenizer *t);

/* Tokens of text[len] (special tokens are not parsed), appended to a growing array:
 * *tokens (realloc'ed), *n tokens.  Returns 0 or ADAMAS_ENOMEM. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, uint32_t **tokens,
                     size_t *n);

/* The bytes a token stands for ("" for control and unused tokens); *len its length. */
const char *tokenizer_piece(const tokenizer *t, uint32_t token, size_t *len);

/* Classes of the code points from U+0080 on (unicode_classes.c, generated). */
typedef struct {
    uint32_t first, last;
    uint8_t flags; /* UNICODE_LETTER, _NUMBER, _PUNCT or _OTHER (assigned) */
} unicode_range;
enum { UNICODE_LETTER = 1, UNICODE_NUMBER = 2, UNICODE_PUNCT = 4, UNICODE_OTHER = 8 };
extern const unicode_range unicode_ranges[];
extern const unsigned unicode_n_ranges;

#endif

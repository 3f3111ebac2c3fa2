/* Base64 (RFC 4648: the standard alphabet, padded), and float vectors as base64 of
 * their little-endian IEEE-754 bytes: the form OpenAI's embeddings endpoint answers
 * with `"encoding_format": "base64"`, and the form the LLM cache stores vectors in. */
#ifndef FEEDLINE_BASE64_H
#define FEEDLINE_BASE64_H

#include <stddef.h>

/* The encoding of len bytes, NUL-terminated; caller frees. */
char *base64_encode(const void *data, size_t len);

/* The bytes that the len characters at s encode, followed by a NUL (not counted in
 * *out_len); NULL when s is not padded base64: a character outside the alphabet,
 * padding other than at the end, or a length that is not a multiple of 4. Caller frees. */
unsigned char *base64_decode(const char *s, size_t len, size_t *out_len);

/* dim floats as base64 of their little-endian bytes; caller frees. */
char *base64_from_floats(const float *v, int dim);

/* The floats that the len characters at s encode (*dim of them); NULL when s is not
 * base64 or does not hold a whole number (at least one) of floats. Caller frees. */
float *base64_to_floats(const char *s, size_t len, int *dim);

#endif

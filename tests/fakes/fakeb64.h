/* Base64 for the fake servers (fakeb64.c). */
#ifndef FEEDLINE_FAKEB64_H
#define FEEDLINE_FAKEB64_H

/* Encodes the string; caller frees. */
char *b64_encode(const char *s);
/* Decodes; NULL when s is not base64. Caller frees. */
char *b64_decode(const char *s);

#endif

/* Character classes shared by the text module's own files (html.c, digest.c,
 * conv.c): decoding one code point, Unicode whitespace and "word character" tests
 * as Python's str.isspace()/\w define them (the original's regexes and split() used
 * those), and a simple case fold. Private to src/text; not part of text.h. */
#ifndef FEEDLINE_TEXT_UCHAR_H
#define FEEDLINE_TEXT_UCHAR_H

#include <stddef.h>
#include <stdint.h>

#define UCHAR_REPLACEMENT 0xFFFDu

/* Decodes the code point at p (avail bytes available, avail >= 1). Returns the
 * sequence length; an invalid sequence yields U+FFFD and length 1. */
size_t uchar_decode(const char *p, size_t avail, uint32_t *cp);

/* 1 for the code points Python's str.isspace() accepts (ASCII whitespace,
 * 0x1C-0x1F, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028/9, U+202F, U+205F,
 * U+3000). */
int uchar_is_space(uint32_t cp);

/* 1 for a regex "word character" (\w: letters, digits, '_'). Exact for ASCII and
 * Latin-1; beyond that an approximation: punctuation/symbol blocks, combining
 * marks, emoji and specials are non-word, everything else (letters of other
 * scripts) is a word character. */
int uchar_is_word(uint32_t cp);

/* Simple lower-case mapping: ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic
 * capitals; other code points are returned unchanged. */
uint32_t uchar_lower(uint32_t cp);

/* A lower-cased copy of s[0..len) (invalid bytes become U+FFFD). Caller frees;
 * *out_len (optional) receives the byte length. */
char *uchar_lower_dup(const char *s, size_t len, size_t *out_len);

/* Narrows [*start, *end) of s so it neither begins nor ends with whitespace
 * (uchar_is_space), like Python's str.strip(). */
void uchar_strip_range(const char *s, size_t *start, size_t *end);

#endif

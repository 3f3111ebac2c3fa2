/* UTF-8 validation and repair. feedline stores and emits only valid UTF-8: input
 * with invalid sequences is repaired (each bad byte becomes U+FFFD) and reported. */
#ifndef FEEDLINE_UTF8_H
#define FEEDLINE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid UTF-8 sequence at p, or 0 if p starts an invalid one
 * (overlong, surrogate, > U+10FFFF, truncated). avail = bytes available at p. */
size_t utf8_seq_len(const unsigned char *p, size_t avail);
/* 1 if s[0..len) is entirely valid UTF-8. */
int utf8_valid(const char *s, size_t len);
/* A newly allocated copy of s[0..len) with invalid bytes replaced by U+FFFD and NUL
 * bytes dropped. *repaired (optional) is set to the number of replacements. */
char *utf8_repair(const char *s, size_t len, size_t *repaired);
/* The largest n <= max such that s[0..n) ends on a character boundary
 * (s is valid UTF-8 of length len). Used to cut text to a byte budget. */
size_t utf8_cut(const char *s, size_t len, size_t max);
/* Number of code points in valid UTF-8 s[0..len). */
size_t utf8_count(const char *s, size_t len);
/* Byte offset of the first `chars` code points of s (or len if shorter). */
size_t utf8_offset_of(const char *s, size_t len, size_t chars);
/* Encodes cp as UTF-8 into out (>= 4 bytes); returns the length, 0 if invalid. */
size_t utf8_encode(uint32_t cp, char *out);

#endif

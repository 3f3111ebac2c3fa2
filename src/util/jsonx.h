/* jansson helpers: typed, NULL-safe field access and compact serialisation. */
#ifndef FEEDLINE_JSONX_H
#define FEEDLINE_JSONX_H

#include <jansson.h>
#include <stdint.h>

/* The string value of obj[key], or NULL if absent or not a string. */
const char *jx_str(const json_t *obj, const char *key);
/* obj[key] as an integer (JSON integer, or a real with no fraction); dflt otherwise. */
int64_t jx_int(const json_t *obj, const char *key, int64_t dflt);
double jx_num(const json_t *obj, const char *key, double dflt);
/* 1/0 for JSON true/false, dflt otherwise. */
int jx_bool(const json_t *obj, const char *key, int dflt);
/* obj[key] if it is an array/object, else NULL. */
json_t *jx_arr(const json_t *obj, const char *key);
json_t *jx_obj(const json_t *obj, const char *key);
/* Compact serialisation; caller frees. Never NULL (returns "null" on error). */
char *jx_dump(const json_t *v);
/* json_string() that never fails on invalid UTF-8: invalid bytes become U+FFFD. */
json_t *jx_string(const char *s);
/* A new string value or json_null() when s is NULL. */
json_t *jx_string_or_null(const char *s);

#endif

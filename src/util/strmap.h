/* strmap — an open-addressing hash map from owned string keys to void* values.
 * Not thread-safe: callers that share one lock it themselves. */
#ifndef FEEDLINE_STRMAP_H
#define FEEDLINE_STRMAP_H

#include <stddef.h>

typedef struct strmap {
    char **keys;
    void **vals;
    size_t cap;   /* power of two, or 0 */
    size_t count;
} strmap_t;

#define STRMAP_INIT {NULL, NULL, 0, 0}

/* Returns the value, or NULL when absent. */
void *strmap_get(const strmap_t *m, const char *key);
int strmap_has(const strmap_t *m, const char *key);
/* Inserts or replaces; returns the previous value (or NULL). The key is copied. */
void *strmap_put(strmap_t *m, const char *key, void *val);
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->keys[i]) ... */
/* Frees keys; calls free_val on each value when given. */
void strmap_free(strmap_t *m, void (*free_val)(void *));

#endif

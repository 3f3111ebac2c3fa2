#include "util/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/mem.h"

static size_t slot_of(const strmap_t *m, const char *key) {
    size_t mask = m->cap - 1;
    size_t i = (size_t)hash_mix64(fnv1a64_str(key)) & mask;
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & mask;
    return i;
}

void *strmap_get(const strmap_t *m, const char *key) {
    if (!m->cap) return NULL;
    size_t i = slot_of(m, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

int strmap_has(const strmap_t *m, const char *key) {
    if (!m->cap) return 0;
    return m->keys[slot_of(m, key)] != NULL;
}

static void rehash(strmap_t *m, size_t ncap) {
    strmap_t n = {xcalloc(ncap, sizeof(char *)), xcalloc(ncap, sizeof(void *)), ncap, 0};
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = slot_of(&n, m->keys[i]);
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
        n.count++;
    }
    free(m->keys);
    free(m->vals);
    *m = n;
}

void *strmap_put(strmap_t *m, const char *key, void *val) {
    if ((m->count + 1) * 4 > m->cap * 3) rehash(m, m->cap ? m->cap * 2 : 16);
    size_t i = slot_of(m, key);
    if (m->keys[i]) {
        void *old = m->vals[i];
        m->vals[i] = val;
        return old;
    }
    m->keys[i] = xstrdup(key);
    m->vals[i] = val;
    m->count++;
    return NULL;
}

void strmap_free(strmap_t *m, void (*free_val)(void *)) {
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        free(m->keys[i]);
        if (free_val) free_val(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->count = 0;
}

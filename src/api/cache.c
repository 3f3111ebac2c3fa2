/* A tiny response cache, one per HTTP worker thread (so it needs no lock), for the read
 * routes (clients poll GET /api/pipeline/status/{id}; theme aggregates are expensive):
 * the serialized body is reused while the database has not changed and the wall-clock
 * second is the same (a status carries a live duration, "last N days" filters move).
 * "Not changed" is the store's data version, which moves on every commit by another
 * connection; the thread's own writes clear the cache. Bounded: API_CACHE_ENTRIES
 * entries of at most API_CACHE_MAX_BODY bytes each, keys at most 1 KiB. */
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "util/mem.h"

typedef struct cache_entry {
    char *key;
    char *body;
    size_t len;
    int64_t version, second;
} cache_entry;

struct api_cache {
    cache_entry e[API_CACHE_ENTRIES];
    size_t next; /* round-robin victim */
};

api_cache *api_cache_new(void) { return xcalloc(1, sizeof(api_cache)); }

static void entry_clear(cache_entry *e) {
    free(e->key);
    free(e->body);
    memset(e, 0, sizeof *e);
}

void api_cache_clear(api_cache *c) {
    for (size_t i = 0; i < API_CACHE_ENTRIES; i++) entry_clear(&c->e[i]);
}

void api_cache_free(api_cache *c) {
    if (!c) return;
    api_cache_clear(c);
    free(c);
}

const char *api_cache_get(api_cache *c, const char *key, int64_t version, int64_t second,
                          size_t *len) {
    for (size_t i = 0; i < API_CACHE_ENTRIES; i++) {
        cache_entry *e = &c->e[i];
        if (!e->key || strcmp(e->key, key) != 0) continue;
        if (e->version != version || e->second != second) return NULL;
        *len = e->len;
        return e->body;
    }
    return NULL;
}

void api_cache_put(api_cache *c, const char *key, int64_t version, int64_t second,
                   const char *body, size_t len) {
    if (len > API_CACHE_MAX_BODY) return;
    cache_entry *slot = NULL;
    for (size_t i = 0; i < API_CACHE_ENTRIES && !slot; i++)
        if (c->e[i].key && strcmp(c->e[i].key, key) == 0) slot = &c->e[i];
    if (!slot) {
        slot = &c->e[c->next];
        c->next = (c->next + 1) % API_CACHE_ENTRIES;
    }
    entry_clear(slot);
    slot->key = xstrdup(key);
    slot->body = xstrndup(body, len);
    slot->len = len;
    slot->version = version;
    slot->second = second;
}

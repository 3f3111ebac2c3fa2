/* Sync state of incremental sources (the sync_state table of migration 2) and the
 * failures of a run's fetch step. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/store_internal.h"

int store_sync_get(store *s, const char *key, char **value) {
    *value = NULL;
    db_stmt *st = store_stmt(s, "SELECT value FROM sync_state WHERE key = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, key);
    int rc = store_step_row(s, st, "reading sync state");
    if (rc != STORE_FOUND) {
        if (rc == STORE_NOTFOUND) db_reset(st);
        return rc;
    }
    *value = store_col_dup(st, 0);
    db_reset(st);
    return STORE_FOUND;
}

int store_sync_get_int(store *s, const char *key, int64_t *value) {
    char *text = NULL;
    int rc = store_sync_get(s, key, &text);
    if (rc != STORE_FOUND) return rc;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text ? text : "", &end, 10);
    int bad = !text || !text[0] || *end || errno;
    if (bad) snprintf(s->err, sizeof s->err, "sync state %s: \"%.40s\" is not a whole number",
                      key, text ? text : "");
    free(text);
    if (bad) return STORE_ERR;
    *value = (int64_t)v;
    return STORE_FOUND;
}

int store_sync_put(store *s, const char *key, const char *value, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO sync_state (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, key);
    db_bind_text(st, 2, value);
    db_bind_int(st, 3, now);
    return store_exec_stmt(s, st, "writing sync state");
}

int store_sync_advance(store *s, const char *key, int64_t value, int64_t now) {
    /* The comparison happens in the database, inside the upsert, so the check and the
     * write are one atomic statement on both backends. */
    db_stmt *st = store_stmt(s,
        "INSERT INTO sync_state (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at"
        " WHERE CAST(sync_state.value AS BIGINT) < CAST(excluded.value AS BIGINT)");
    if (!st) return STORE_ERR;
    char text[32];
    snprintf(text, sizeof text, "%" PRId64, value);
    db_bind_text(st, 1, key);
    db_bind_text(st, 2, text);
    db_bind_int(st, 3, now);
    return store_exec_stmt(s, st, "advancing sync state");
}

int store_put_fetch_error(store *s, int64_t run_id, const char *conversation_id,
                          const char *reason, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO run_errors (run_id, phase, conversation_id, reason, attempts, created_at)"
        " VALUES (?, 'fetch', ?, ?, 1, ?) ON CONFLICT (run_id, phase, conversation_id)"
        " DO UPDATE SET reason = excluded.reason, attempts = run_errors.attempts + 1");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, conversation_id ? conversation_id : "");
    db_bind_text(st, 3, reason);
    db_bind_int(st, 4, now);
    return store_exec_stmt(s, st, "recording fetch failure");
}

/* The store handle: opening and migrating, the prepared-statement cache, transactions
 * and error reporting. Domain queries live in store_conv.c, store_run.c,
 * store_work.c, store_results.c, store_stories.c and store_cache.c. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/migrations.h"
#include "store/store_internal.h"
#include "util/hash.h"
#include "util/mem.h"

int store_open(const char *url, store **out, char *err, size_t errlen) {
    *out = NULL;
    db_t *db = db_open(url, err, errlen);
    if (!db) return STORE_ERR;
    char merr[512];
    if (migrations_apply(db, merr, sizeof merr) != 0) {
        /* A fault of a SQLite file names the file already. */
        if (strstr(merr, url)) snprintf(err, errlen, "%s", merr);
        else snprintf(err, errlen, "%s: %s", url, merr);
        db_close(db);
        return STORE_ERR;
    }
    store *s = xcalloc(1, sizeof *s);
    s->db = db;
    s->url = xstrdup(url);
    *out = s;
    return STORE_OK;
}

void store_close(store *s) {
    if (!s) return;
    for (size_t i = 0; i < STMT_CACHE_SLOTS; i++) db_finalize(s->stmt[i]);
    db_close(s->db);
    free(s->url);
    free(s);
}

const char *store_errmsg(store *s) { return s->err; }
const char *store_backend(store *s) {
    return db_dialect_of(s->db) == DB_PG ? "postgres" : "sqlite";
}
const char *store_url(store *s) { return s->url; }
struct db *store_db(store *s) { return s->db; }

/* The STORE_* code for a failed db call: busy and lost connections are worth a retry. */
static int store_code(int rc) {
    return rc == DB_ERR_BUSY || rc == DB_ERR_CONN ? STORE_RETRY : STORE_ERR;
}

int store_fail(store *s, int rc, const char *what) {
    snprintf(s->err, sizeof s->err, "%s: %s", what, db_errmsg(s->db));
    return store_code(rc);
}

db_stmt *store_stmt2(store *s, const char *sqlite_sql, const char *pg_sql) {
    const char *sql = (pg_sql && db_dialect_of(s->db) == DB_PG) ? pg_sql : sqlite_sql;
    size_t mask = STMT_CACHE_SLOTS - 1;
    size_t i = (size_t)hash_mix64((uint64_t)(uintptr_t)sql) & mask;
    for (size_t probes = 0; probes < STMT_CACHE_SLOTS; probes++, i = (i + 1) & mask) {
        if (s->stmt_sql[i] == sql) return s->stmt[i];
        if (!s->stmt_sql[i]) {
            db_stmt *st = db_prepare(s->db, sql);
            if (!st) {
                snprintf(s->err, sizeof s->err, "preparing statement: %s (%.80s...)",
                         db_errmsg(s->db), sql);
                return NULL;
            }
            s->stmt_sql[i] = sql;
            s->stmt[i] = st;
            return st;
        }
    }
    snprintf(s->err, sizeof s->err, "statement cache full (raise STMT_CACHE_SLOTS)");
    return NULL;
}

int store_exec_stmt(store *s, db_stmt *st, const char *what) {
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {}
    int out = rc == DB_DONE ? STORE_OK : store_fail(s, rc, what);
    db_reset(st);
    return out;
}

int store_step_row(store *s, db_stmt *st, const char *what) {
    int rc = db_step(st);
    if (rc == DB_ROW) return STORE_FOUND;
    if (rc == DB_DONE) return STORE_NOTFOUND;
    int out = store_fail(s, rc, what);
    db_reset(st);
    return out;
}

char *store_col_dup(db_stmt *st, int col) { return xstrdup(db_col_text(st, col)); }

int store_begin(store *s) {
    int rc = db_begin(s->db, 1);
    return rc ? store_fail(s, rc, "begin") : STORE_OK;
}

int store_commit(store *s) {
    int rc = db_commit(s->db);
    if (rc) {
        int out = store_fail(s, rc, "commit");
        db_rollback(s->db);
        return out;
    }
    return STORE_OK;
}

int store_leave_checkpoints(store *s) {
    if (db_dialect_of(s->db) != DB_SQLITE) return STORE_OK;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA wal_autocheckpoint=%d", STORE_WAL_FALLBACK_PAGES);
    int rc = db_exec(s->db, sql);
    return rc ? store_fail(s, rc, "setting the checkpoint threshold") : STORE_OK;
}

int store_checkpoint(store *s) {
    if (db_dialect_of(s->db) != DB_SQLITE) return STORE_OK;
    int rc = db_exec(s->db, "PRAGMA wal_checkpoint(PASSIVE)");
    return rc ? store_fail(s, rc, "checkpointing the log") : STORE_OK;
}

/* Rolling back undoes a failed operation: its own failure keeps that operation's
 * error (SQLite has already rolled back after a full disk, and "no transaction is
 * active" would hide why). */
int store_rollback(store *s) {
    int rc = db_rollback(s->db);
    return rc ? store_code(rc) : STORE_OK;
}

int store_ping(store *s) {
    int rc = db_ping(s->db);
    return rc ? store_fail(s, rc, "ping") : STORE_OK;
}

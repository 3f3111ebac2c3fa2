/* Applies the migrations of migrations.c in order, once each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/migrations.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/mem.h"

/* Arbitrary constant identifying feedline's migration lock among advisory locks. */
#define PG_MIGRATION_LOCK_KEY 7305042601

char *migration_translate(const char *sql, enum db_dialect dialect) {
    static const struct { const char *token, *sqlite, *pg; } map[] = {
        {"{{ID}}", "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"},
        {"{{BLOB}}", "BLOB", "BYTEA"},
        {"{{REAL}}", "REAL", "DOUBLE PRECISION"},
    };
    buf_t b = BUF_INIT;
    for (const char *p = sql; *p;) {
        int matched = 0;
        if (p[0] == '{' && p[1] == '{') {
            for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
                size_t n = strlen(map[i].token);
                if (strncmp(p, map[i].token, n) == 0) {
                    buf_puts(&b, dialect == DB_PG ? map[i].pg : map[i].sqlite);
                    p += n;
                    matched = 1;
                    break;
                }
            }
        }
        if (!matched) buf_putc(&b, *p++);
    }
    return buf_detach(&b);
}

static int current_version(db_t *db, int *version) {
    db_stmt *st = db_prepare(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (!st) return -1;
    int rc = db_step(st);
    if (rc == DB_ROW) *version = (int)db_col_int(st, 0);
    db_finalize(st);
    return rc == DB_ROW ? 0 : -1;
}

static int record_version(db_t *db, int version) {
    db_stmt *st = db_prepare(db, "INSERT INTO schema_version(version) VALUES (?)");
    if (!st) return -1;
    int rc = db_bind_int(st, 1, version);
    if (rc == 0) rc = db_step(st);
    db_finalize(st);
    return rc == DB_DONE ? 0 : -1;
}

int migrations_apply(db_t *db, char *err, size_t errlen) {
    enum db_dialect dialect = db_dialect_of(db);
    /* One transaction for the check and all pending migrations, holding a lock so that
     * two processes starting on a fresh database don't both apply migration 1. The
     * version table is created under the lock too: PostgreSQL's CREATE TABLE IF NOT
     * EXISTS is not safe against a concurrent create of the same table. */
    if (db_begin(db, 1)) {
        snprintf(err, errlen, "starting migration: %s", db_errmsg(db));
        return -1;
    }
    if (dialect == DB_PG) {
        char lock[96];
        snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%lld)",
                 (long long)PG_MIGRATION_LOCK_KEY);
        if (db_exec(db, lock)) goto fail;
    }
    if (db_exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)"))
        goto fail;
    int version = 0;
    if (current_version(db, &version)) goto fail;
    int latest = MIGRATIONS[MIGRATION_COUNT - 1].version;
    if (version > latest) {
        db_rollback(db);
        snprintf(err, errlen,
                 "database schema version %d is newer than this feedline (%d); upgrade feedline",
                 version, latest);
        return -1;
    }
    for (size_t i = 0; i < MIGRATION_COUNT; i++) {
        const migration *m = &MIGRATIONS[i];
        if (m->version <= version) continue;
        char *sql = migration_translate(m->sql, dialect);
        int rc = db_exec(db, sql);
        free(sql);
        if (rc || record_version(db, m->version)) {
            snprintf(err, errlen, "migration %d (%s): %s", m->version, m->name,
                     db_errmsg(db));
            db_rollback(db);
            return -1;
        }
        log_info("applied migration %d (%s)", m->version, m->name);
    }
    if (db_commit(db)) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "migrating: %s", db_errmsg(db));
    db_rollback(db);
    return -1;
}

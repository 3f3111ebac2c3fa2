/* Driver dispatch and the parts of the db layer that don't depend on the backend. */
#include "store/db.h"

#include <stdio.h>
#include <string.h>

int db_is_postgres_url(const char *url) {
    return url && (strncmp(url, "postgres://", 11) == 0 ||
                   strncmp(url, "postgresql://", 13) == 0);
}

db_t *db_open(const char *url, char *err, size_t errlen) {
    if (!url || !url[0]) {
        snprintf(err, errlen, "empty database path");
        return NULL;
    }
    if (db_is_postgres_url(url)) return db_pg_driver.open(url, err, errlen);
    return db_sqlite_driver.open(url, err, errlen);
}

void db_close(db_t *db) {
    if (db) db->drv->close(db);
}
enum db_dialect db_dialect_of(const db_t *db) { return db->dialect; }
int db_exec(db_t *db, const char *sql) { return db->drv->exec(db, sql); }
db_stmt *db_prepare(db_t *db, const char *sql) { return db->drv->prepare(db, sql); }
int db_bind_int(db_stmt *s, int i, int64_t v) { return s->db->drv->bind_int(s, i, v); }
int db_bind_double(db_stmt *s, int i, double v) { return s->db->drv->bind_double(s, i, v); }
int db_bind_text(db_stmt *s, int i, const char *v) { return s->db->drv->bind_text(s, i, v); }
int db_bind_blob(db_stmt *s, int i, const void *v, size_t len) {
    return s->db->drv->bind_blob(s, i, v, len);
}
int db_bind_null(db_stmt *s, int i) { return s->db->drv->bind_null(s, i); }
int db_step(db_stmt *s) { return s->db->drv->step(s); }
int db_col_null(db_stmt *s, int i) { return s->db->drv->col_null(s, i); }
int64_t db_col_int(db_stmt *s, int i) { return s->db->drv->col_int(s, i); }
double db_col_double(db_stmt *s, int i) { return s->db->drv->col_double(s, i); }
const char *db_col_text(db_stmt *s, int i) { return s->db->drv->col_text(s, i); }
const void *db_col_blob(db_stmt *s, int i, size_t *len) {
    return s->db->drv->col_blob(s, i, len);
}
int64_t db_changes(db_t *db) { return db->drv->changes(db); }
int db_reset(db_stmt *s) { return s->db->drv->reset(s); }
void db_finalize(db_stmt *s) {
    if (s) s->db->drv->finalize(s);
}
const char *db_errmsg(db_t *db) { return db->drv->errmsg(db); }
int db_ping(db_t *db) { return db->drv->ping(db); }

int db_begin(db_t *db, int immediate) {
    const char *sql = (immediate && db->dialect == DB_SQLITE) ? "BEGIN IMMEDIATE" : "BEGIN";
    int rc = db_exec(db, sql);
    if (rc == 0) db->in_tx = 1;
    return rc;
}

int db_commit(db_t *db) {
    int rc = db_exec(db, "COMMIT");
    if (rc == 0) db->in_tx = 0;
    return rc;
}

int db_rollback(db_t *db) {
    int rc = db_exec(db, "ROLLBACK");
    db->in_tx = 0;
    return rc;
}

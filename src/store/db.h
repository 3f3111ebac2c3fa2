/* db — the thin driver layer under the store: connect, prepare with '?' placeholders,
 * bind, step, read columns, transactions. Two drivers implement it (db_sqlite.c,
 * db_pg.c); everything above (store.c) writes its SQL once against this interface.
 *
 * One db_t is used by one thread at a time. Statements belong to their db_t. */
#ifndef FEEDLINE_DB_H
#define FEEDLINE_DB_H

#include <stddef.h>
#include <stdint.h>

typedef struct db db_t;
typedef struct db_stmt db_stmt;

enum db_dialect { DB_SQLITE = 0, DB_PG = 1 };

/* Results of db_step and error codes (negative). */
enum {
    DB_DONE = 0,
    DB_ROW = 1,
    DB_ERR = -1,            /* any other failure; see db_errmsg */
    DB_ERR_CONSTRAINT = -2, /* unique/check/foreign-key violation */
    DB_ERR_BUSY = -3,       /* lock timeout / serialization failure: retryable */
    DB_ERR_CONN = -4        /* connection lost and, inside a transaction, the
                               transaction with it (PostgreSQL; reconnects itself) */
};

/* Driver operations; db.c dispatches on the URL. */
typedef struct db_driver {
    const char *name;
    db_t *(*open)(const char *url, char *err, size_t errlen);
    void (*close)(db_t *db);
    int (*exec)(db_t *db, const char *sql);
    db_stmt *(*prepare)(db_t *db, const char *sql);
    int (*bind_int)(db_stmt *s, int idx, int64_t v);
    int (*bind_double)(db_stmt *s, int idx, double v);
    int (*bind_text)(db_stmt *s, int idx, const char *v);
    int (*bind_blob)(db_stmt *s, int idx, const void *v, size_t len);
    int (*bind_null)(db_stmt *s, int idx);
    int (*step)(db_stmt *s);
    int (*col_null)(db_stmt *s, int idx);
    int64_t (*col_int)(db_stmt *s, int idx);
    double (*col_double)(db_stmt *s, int idx);
    const char *(*col_text)(db_stmt *s, int idx);
    const void *(*col_blob)(db_stmt *s, int idx, size_t *len);
    int64_t (*changes)(db_t *db);
    int (*reset)(db_stmt *s);
    void (*finalize)(db_stmt *s);
    const char *(*errmsg)(db_t *db);
    int (*ping)(db_t *db);
} db_driver;

/* Every db_t starts with this header so db.c can dispatch. */
struct db {
    const db_driver *drv;
    enum db_dialect dialect;
    int in_tx;
};
struct db_stmt {
    db_t *db;
};

/* Opens "postgres://..." / "postgresql://..." with libpq, anything else as a SQLite
 * file path (":memory:" allowed). NULL on error with a message in err. */
db_t *db_open(const char *url, char *err, size_t errlen);
void db_close(db_t *db);
enum db_dialect db_dialect_of(const db_t *db);
int db_is_postgres_url(const char *url);

/* Runs one or more statements without parameters (DDL). 0 or a DB_ERR code. */
int db_exec(db_t *db, const char *sql);
/* Prepares a statement with '?' placeholders (translated to $n for PostgreSQL).
 * NULL on error (db_errmsg says why). */
db_stmt *db_prepare(db_t *db, const char *sql);

/* Binding (1-based). 0 or DB_ERR. bind_text with NULL binds SQL NULL. */
int db_bind_int(db_stmt *s, int idx, int64_t v);
int db_bind_double(db_stmt *s, int idx, double v);
int db_bind_text(db_stmt *s, int idx, const char *v);
int db_bind_blob(db_stmt *s, int idx, const void *v, size_t len);
int db_bind_null(db_stmt *s, int idx);

/* DB_ROW, DB_DONE, or a negative DB_ERR code. */
int db_step(db_stmt *s);
/* Column access (0-based) on the current row. Text is valid until the next step/reset;
 * NULL for SQL NULL. */
int db_col_null(db_stmt *s, int idx);
int64_t db_col_int(db_stmt *s, int idx);
double db_col_double(db_stmt *s, int idx);
const char *db_col_text(db_stmt *s, int idx);
const void *db_col_blob(db_stmt *s, int idx, size_t *len);

/* Rows changed by the last completed INSERT/UPDATE/DELETE on this connection. */
int64_t db_changes(db_t *db);
/* Makes the statement ready to bind and run again (clears bindings). */
int db_reset(db_stmt *s);
void db_finalize(db_stmt *s);
const char *db_errmsg(db_t *db);
/* A trivial round trip (SELECT 1); 0 when the connection works. */
int db_ping(db_t *db);

/* Transactions. db_begin(immediate=1) takes the write lock up front on SQLite
 * (avoids lock upgrade deadlocks between a reader turning writer and another writer).
 * On PostgreSQL any failed statement aborts the whole transaction, and a transaction
 * whose connection was lost fails every operation with DB_ERR_CONN: either way the
 * caller rolls back (always succeeds then) and retries the transaction. */
int db_begin(db_t *db, int immediate);
int db_commit(db_t *db);
int db_rollback(db_t *db);

extern const db_driver db_sqlite_driver;
extern const db_driver db_pg_driver;

#endif

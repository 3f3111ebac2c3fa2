/* Private to src/store/: the store handle and statement helpers shared by store_*.c. */
#ifndef FEEDLINE_STORE_INTERNAL_H
#define FEEDLINE_STORE_INTERNAL_H

#include "store/db.h"
#include "store/store.h"

#define STMT_CACHE_SLOTS 256 /* power of two; more than the number of SQL call sites */

struct store {
    db_t *db;
    char *url;
    char err[512];
    /* Prepared statements keyed by the address of their SQL literal. */
    const char *stmt_sql[STMT_CACHE_SLOTS];
    db_stmt *stmt[STMT_CACHE_SLOTS];
};

/* The cached prepared statement for this SQL literal (pg_sql used on PostgreSQL when
 * given). Always returns a reset statement ready to bind, or NULL (error recorded). */
db_stmt *store_stmt2(store *s, const char *sqlite_sql, const char *pg_sql);
#define store_stmt(s, sql) store_stmt2((s), (sql), NULL)

/* Records the driver's last error with context; returns the STORE_* code for rc. */
int store_fail(store *s, int rc, const char *what);
/* Steps a statement to completion (no rows expected) and resets it. */
int store_exec_stmt(store *s, db_stmt *st, const char *what);
/* Steps once: STORE_FOUND with the row available, STORE_NOTFOUND, or an error. The
 * caller resets the statement after reading. */
int store_step_row(store *s, db_stmt *st, const char *what);

/* Column text duplicated (NULL stays NULL). */
char *store_col_dup(db_stmt *st, int col);

#endif

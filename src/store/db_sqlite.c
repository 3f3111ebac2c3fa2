/* SQLite driver for the db layer: WAL journal, a busy timeout so concurrent readers
 * and a writer (API threads vs the pipeline, or two processes) wait instead of failing,
 * foreign keys on. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/db.h"
#include "util/env.h"
#include "util/mem.h"

/* How long a statement waits for another connection's write lock before failing with
 * "database is locked"; FEEDLINE_SQLITE_BUSY_MS overrides it. */
#define SQLITE_BUSY_TIMEOUT_MS 10000

typedef struct sqlite_db {
    db_t base;
    sqlite3 *h;
    char *path;
    int busy_ms;
    char err[512];
} sqlite_db;

typedef struct sqlite_stmt {
    db_stmt base;
    sqlite3_stmt *st;
} sqlite_stmt;

#define SDB(d) ((sqlite_db *)(d))
#define SST(s) ((sqlite_stmt *)(s))

/* Faults of the file rather than of a statement: a full disk, a read-only or failing
 * filesystem, a file that cannot be opened, a write lock another connection holds. */
static int file_fault(int rc) {
    switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_BUSY: return 1;
    default: return 0;
    }
}

/* The operating system's error behind an I/O fault, or 0. A database SQLite could
 * only open read-only says why through access(2) (its own last error is that of its
 * next attempt, e.g. "No such file" for a -wal it could not create either). Else
 * SQLite keeps the last error per file; the connection's copy is often gone by the time
 * the error is reported (a commit that fails writing the write-ahead log leaves it 0). */
static int os_errno(sqlite_db *d) {
    if (sqlite3_db_readonly(d->h, "main") == 1 && access(d->path, W_OK) != 0) return errno;
    sqlite3 *h = d->h;
    int e = sqlite3_system_errno(h);
    sqlite3_file *wal = NULL;
    if (!e && sqlite3_file_control(h, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) == SQLITE_OK &&
        wal && wal->pMethods &&
        wal->pMethods->xFileControl(wal, SQLITE_FCNTL_LAST_ERRNO, &e) != SQLITE_OK)
        e = 0;
    if (!e && sqlite3_file_control(h, "main", SQLITE_FCNTL_LAST_ERRNO, &e) != SQLITE_OK) e = 0;
    return e;
}

/* Why a file fault happened, as " (reason)", or "": SQLite says "disk I/O error"
 * whether the filesystem went read-only or the disk failed. */
static const char *fault_reason(sqlite_db *d, int rc, char *out, size_t len) {
    out[0] = '\0';
    int e = file_fault(rc) ? os_errno(d) : 0;
    if ((rc & 0xff) == SQLITE_BUSY) {
        snprintf(out, len, " (another connection is writing; busy timeout %d ms)", d->busy_ms);
    } else if (e) {
        char buf[128];
        snprintf(out, len, " (%s)", strerror_r(e, buf, sizeof buf));
    }
    return out;
}

/* Records msg, SQLite's words for rc; a file fault also names the database and why. */
static void set_err(sqlite_db *d, int rc, const char *msg) {
    char why[160];
    if (file_fault(rc))
        snprintf(d->err, sizeof d->err, "%s: %s%s", d->path, msg,
                 fault_reason(d, rc, why, sizeof why));
    else
        snprintf(d->err, sizeof d->err, "%s", msg);
}

static int map_rc(sqlite_db *d, int rc) {
    if (rc == SQLITE_OK || rc == SQLITE_DONE) return DB_DONE;
    if (rc == SQLITE_ROW) return DB_ROW;
    set_err(d, rc, sqlite3_errmsg(d->h));
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT: return DB_ERR_CONSTRAINT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return DB_ERR_BUSY;
    default: return DB_ERR;
    }
}

static void sq_close(db_t *db) {
    sqlite_db *d = SDB(db);
    if (d->h) sqlite3_close(d->h); /* statements are finalized by their owners first */
    free(d->path);
    free(d);
}

static int sq_exec(db_t *db, const char *sql) {
    sqlite_db *d = SDB(db);
    char *msg = NULL;
    int rc = sqlite3_exec(d->h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int mapped = map_rc(d, rc);
        if (msg) {
            set_err(d, rc, msg);
            sqlite3_free(msg);
        }
        return mapped;
    }
    return 0;
}

static db_t *sq_open(const char *path, char *err, size_t errlen) {
    sqlite_db *d = xcalloc(1, sizeof *d);
    d->base.drv = &db_sqlite_driver;
    d->base.dialect = DB_SQLITE;
    d->path = xstrdup(path);
    d->busy_ms = (int)env_count("FEEDLINE_SQLITE_BUSY_MS", 3600000, SQLITE_BUSY_TIMEOUT_MS);
    int rc = sqlite3_open_v2(path, &d->h,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        char why[160] = "";
        snprintf(err, errlen, "%s: cannot open database: %s%s", path,
                 d->h ? sqlite3_errmsg(d->h) : sqlite3_errstr(rc),
                 d->h ? fault_reason(d, rc, why, sizeof why) : "");
        sq_close(&d->base);
        return NULL;
    }
    sqlite3_busy_timeout(d->h, d->busy_ms);
    sqlite3_extended_result_codes(d->h, 1);
    /* WAL: readers never block the writer and vice versa, which keeps the HTTP server
     * answering while a run writes. synchronous=NORMAL is durable across application
     * crashes in WAL mode (only an OS crash can lose the last transactions). */
    const char *pragmas = strcmp(path, ":memory:") == 0
                              ? "PRAGMA foreign_keys=ON;"
                              : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                " PRAGMA foreign_keys=ON;";
    /* Switching a new file to WAL takes an exclusive lock, and SQLite answers BUSY to a
     * connection that opens meanwhile without calling the busy handler; so the pragmas
     * are retried on BUSY for as long as any other statement would wait. */
    int rc2, waited_ms = 0;
    while ((rc2 = sq_exec(&d->base, pragmas)) != 0 &&
           (sqlite3_errcode(d->h) == SQLITE_BUSY || sqlite3_errcode(d->h) == SQLITE_LOCKED) &&
           waited_ms < d->busy_ms) {
        sqlite3_sleep(5);
        waited_ms += 5;
    }
    if (rc2 != 0) {
        /* A file fault's message names the database already. */
        if (file_fault(sqlite3_extended_errcode(d->h))) snprintf(err, errlen, "%s", d->err);
        else snprintf(err, errlen, "%s: %s", path, d->err);
        sq_close(&d->base);
        return NULL;
    }
    return &d->base;
}

static db_stmt *sq_prepare(db_t *db, const char *sql) {
    sqlite_db *d = SDB(db);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(d->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        map_rc(d, rc);
        return NULL;
    }
    sqlite_stmt *s = xcalloc(1, sizeof *s);
    s->base.db = db;
    s->st = st;
    return &s->base;
}

static int bind_rc(db_stmt *s, int rc) {
    return rc == SQLITE_OK ? 0 : map_rc(SDB(s->db), rc);
}

static int sq_bind_int(db_stmt *s, int i, int64_t v) {
    return bind_rc(s, sqlite3_bind_int64(SST(s)->st, i, v));
}
static int sq_bind_double(db_stmt *s, int i, double v) {
    return bind_rc(s, sqlite3_bind_double(SST(s)->st, i, v));
}
static int sq_bind_text(db_stmt *s, int i, const char *v) {
    if (!v) return bind_rc(s, sqlite3_bind_null(SST(s)->st, i));
    return bind_rc(s, sqlite3_bind_text(SST(s)->st, i, v, -1, SQLITE_TRANSIENT));
}
static int sq_bind_blob(db_stmt *s, int i, const void *v, size_t len) {
    return bind_rc(s, sqlite3_bind_blob64(SST(s)->st, i, v, len, SQLITE_TRANSIENT));
}
static int sq_bind_null(db_stmt *s, int i) {
    return bind_rc(s, sqlite3_bind_null(SST(s)->st, i));
}

static int sq_step(db_stmt *s) { return map_rc(SDB(s->db), sqlite3_step(SST(s)->st)); }

static int sq_col_null(db_stmt *s, int i) {
    return sqlite3_column_type(SST(s)->st, i) == SQLITE_NULL;
}
static int64_t sq_col_int(db_stmt *s, int i) { return sqlite3_column_int64(SST(s)->st, i); }
static double sq_col_double(db_stmt *s, int i) { return sqlite3_column_double(SST(s)->st, i); }
static const char *sq_col_text(db_stmt *s, int i) {
    return (const char *)sqlite3_column_text(SST(s)->st, i);
}
static const void *sq_col_blob(db_stmt *s, int i, size_t *len) {
    const void *p = sqlite3_column_blob(SST(s)->st, i);
    *len = (size_t)sqlite3_column_bytes(SST(s)->st, i);
    return p;
}
static int64_t sq_changes(db_t *db) { return sqlite3_changes64(SDB(db)->h); }
static int sq_reset(db_stmt *s) {
    sqlite3_reset(SST(s)->st); /* returns the last step's error, already reported */
    sqlite3_clear_bindings(SST(s)->st);
    return 0;
}
static void sq_finalize(db_stmt *s) {
    sqlite3_finalize(SST(s)->st);
    free(s);
}
static const char *sq_errmsg(db_t *db) { return SDB(db)->err; }
static int sq_ping(db_t *db) { return sq_exec(db, "SELECT 1"); }

const db_driver db_sqlite_driver = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .prepare = sq_prepare,
    .bind_int = sq_bind_int,
    .bind_double = sq_bind_double,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .bind_null = sq_bind_null,
    .step = sq_step,
    .col_null = sq_col_null,
    .col_int = sq_col_int,
    .col_double = sq_col_double,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
    .changes = sq_changes,
    .reset = sq_reset,
    .finalize = sq_finalize,
    .errmsg = sq_errmsg,
    .ping = sq_ping,
};

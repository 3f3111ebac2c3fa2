/* PostgreSQL driver for the db layer (libpq).
 *
 * Owns: one connection per db_t; '?' -> $n translation; server-side prepared
 * statements (named per connection, re-prepared after a reconnect or when the bound
 * parameter types change); row streaming in single-row mode; mapping of SQLSTATEs to
 * the DB_ERR codes; reconnecting with exponential backoff when the connection is lost.
 *
 * Parameters are declared with the type they were bound with (int8, float8, text,
 * bytea; SQL NULL from db_bind_null is left for the server to infer) and sent in text
 * format, except bytea which is sent in binary so any byte string round-trips. Results
 * come back in text format and are converted on access.
 *
 * One connection carries one query at a time. A statement that is still streaming
 * rows when another statement (or exec) needs the connection has its remaining rows
 * read into memory first ("buffered"), so callers may interleave statements as they
 * do on SQLite; only an uninterrupted scan streams in constant memory.
 *
 * A lost connection is noticed before a query is sent (the idle socket turned
 * readable: the server said goodbye or closed it) or by the query failing. Outside a
 * transaction the driver reconnects and carries on; a transaction that was open is
 * gone, so every operation fails with DB_ERR_CONN until the caller rolls back (and
 * retries the transaction). */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/db.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* Type OIDs from the server's catalog (pg_type.dat); stable across versions. */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
#define OID_FLOAT8 701

/* Reconnect backoff: 0.1 s doubling to 5 s, giving up after ~30 s in total. */
#define RECONNECT_FIRST_MS 100
#define RECONNECT_MAX_MS 5000
#define RECONNECT_BUDGET_MS 30000
/* Lock waits give up like SQLite's busy timeout does (then DB_ERR_BUSY). */
#define PG_LOCK_TIMEOUT "10s"
/* Finalized statements are deallocated on the server in batches of this many. */
#define DEALLOC_BATCH 16

typedef struct pg_db {
    db_t base;
    PGconn *conn;
    char *url;
    unsigned generation;        /* bumped by every (re)connect */
    unsigned next_name;         /* statement names are unique per db_t */
    struct pg_stmt *streaming;  /* statement whose rows are still on the wire */
    int broken;                 /* the connection is known dead: reconnect first */
    int tx_lost;                /* it died inside a transaction: fail until ROLLBACK */
    int64_t changes;
    char **dealloc;             /* names of finalized statements still on the server */
    size_t ndealloc, dealloc_cap;
    char err[512];
} pg_db;

typedef struct pg_param {
    Oid type;     /* bound type; 0 = SQL NULL of unknown type, or unbound */
    int is_null;
    char *val;    /* owned copy (text form, or bytes for bytea) */
    size_t len, cap;
} pg_param;

enum stmt_state { ST_IDLE, ST_STREAMING, ST_BUFFERED, ST_DONE };

typedef struct pg_stmt {
    db_stmt base;
    char *sql;            /* with $n placeholders */
    int read_only;        /* a plain SELECT: safe to re-run after a reconnect */
    int nparams;
    pg_param *params;
    Oid *declared;        /* the types the server statement was prepared with */
    char name[32];
    unsigned prepared_gen; /* generation it was prepared on; 0 = never */
    enum stmt_state state;
    int rows_seen;        /* rows handed out since the query was sent */
    PGresult *row;        /* the current row (a single-tuple result) */
    PGresult **queue;     /* buffered rows not yet stepped to */
    size_t qhead, qlen, qcap;
    int final_rc;         /* what step returns after the last row */
    struct pg_blob { unsigned char *data; size_t len; } *blobs; /* decoded bytea of the
                                                                   current row, per column */
    int nblobs;
} pg_stmt;

#define PDB(d) ((pg_db *)(d))
#define PST(s) ((pg_stmt *)(s))

/* ------------------------------------------------------------------ SQL text */

static int is_ident_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || (unsigned char)c >= 0x80;
}

/* Length of a dollar-quote tag ("$tag$" or "$$") starting at p, or 0 if p does not
 * open one. A "$" right after an identifier character is part of that identifier. */
static size_t dollar_tag_len(const char *start, const char *p) {
    if (*p != '$' || (p > start && is_ident_char(p[-1]))) return 0;
    const char *q = p + 1;
    if (*q >= '0' && *q <= '9') return 0; /* $1: a positional parameter */
    while (is_ident_char(*q) && *q != '$') q++;
    return *q == '$' ? (size_t)(q - p + 1) : 0;
}

/* Copies the quoted or commented span starting at p into b and returns what follows
 * it, or returns NULL when p starts ordinary text. */
static const char *copy_span(const char *start, const char *p, buf_t *b) {
    const char *q = p;
    if (*p == '\'' || *p == '"') {
        /* E'...' strings take backslash escapes; '' and "" double the quote. */
        int backslash = *p == '\'' && p > start && (p[-1] == 'E' || p[-1] == 'e') &&
                        (p - 1 == start || !is_ident_char(p[-2]));
        char quote = *p;
        for (q = p + 1; *q; q++) {
            if (backslash && *q == '\\' && q[1]) q++;
            else if (*q == quote && q[1] == quote) q++;
            else if (*q == quote) { q++; break; }
        }
    } else if (p[0] == '-' && p[1] == '-') {
        q = p + strcspn(p, "\n");
    } else if (p[0] == '/' && p[1] == '*') {
        int depth = 0; /* PostgreSQL block comments nest */
        for (q = p; *q; q++) {
            if (q[0] == '/' && q[1] == '*') { depth++; q++; }
            else if (q[0] == '*' && q[1] == '/') {
                q++;
                if (--depth == 0) { q++; break; }
            }
        }
    } else {
        size_t tag = dollar_tag_len(start, p);
        if (!tag) return NULL;
        const char *end = p + tag;
        while (*end && strncmp(end, p, tag) != 0) end++;
        q = *end ? end + tag : end;
    }
    buf_append(b, p, (size_t)(q - p));
    return q;
}

/* The SQL with each '?' outside literals, quoted identifiers and comments replaced
 * by $1, $2, ... Caller frees. (PostgreSQL's jsonb '?' operators can't be written in
 * feedline's SQL: they would be taken for placeholders.) */
static char *translate_placeholders(const char *sql, int *nparams) {
    buf_t b = BUF_INIT;
    int n = 0;
    for (const char *p = sql; *p;) {
        const char *next = copy_span(sql, p, &b);
        if (next) {
            p = next;
        } else if (*p == '?') {
            buf_printf(&b, "$%d", ++n);
            p++;
        } else {
            buf_putc(&b, *p++);
        }
    }
    *nparams = n;
    return buf_detach(&b);
}

/* A plain SELECT has no effect, so re-running it after a reconnect is harmless. */
static int sql_is_read_only(const char *sql) {
    while (*sql == ' ' || *sql == '\n' || *sql == '\t' || *sql == '(') sql++;
    return strncasecmp(sql, "SELECT", 6) == 0 && !is_ident_char(sql[6]);
}

/* ------------------------------------------------------------------ errors */

/* libpq messages end in a newline and may span lines: make them one log line. */
static void one_line(char *s) {
    char *out = s;
    for (const char *p = s; *p; p++) {
        int space = *p == '\n' || *p == '\t' || *p == ' ';
        if (!space) *out++ = *p;
        else if (out > s && out[-1] != ' ') *out++ = ' ';
    }
    while (out > s && out[-1] == ' ') out--;
    *out = '\0';
}

static void set_err(pg_db *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(pg_db *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof d->err, fmt, ap);
    va_end(ap);
    one_line(d->err);
}

static int conn_lost_state(const char *sqlstate) {
    /* 08: connection exception; 57P01..57P03: the server is shutting down or
     * terminated this backend (it closes the connection right after). */
    return sqlstate && (strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 ||
                        strcmp(sqlstate, "57P02") == 0 || strcmp(sqlstate, "57P03") == 0);
}

/* Maps a failed result (or a NULL result: the connection failed) to a DB_ERR code,
 * recording the message. */
static int map_error(pg_db *d, const PGresult *res) {
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg) msg = PQerrorMessage(d->conn);
    if (state) set_err(d, "%s (SQLSTATE %s)", msg, state);
    else set_err(d, "%s", msg);
    if (conn_lost_state(state) || PQstatus(d->conn) == CONNECTION_BAD) {
        d->broken = 1;
        return DB_ERR_CONN;
    }
    if (state && strncmp(state, "23", 2) == 0) return DB_ERR_CONSTRAINT;
    if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01") ||
                  !strcmp(state, "55P03") || !strcmp(state, "57014")))
        return DB_ERR_BUSY;
    return DB_ERR;
}

/* Notices ("relation already exists, skipping", "there is no transaction in
 * progress") are expected chatter, not something to print. */
static void quiet_notice(void *arg, const char *message) {
    (void)arg;
    log_debug("postgres: %s", message);
}

/* ------------------------------------------------------------------ connections */

/* One connection attempt. NULL with the reason in err. */
static PGconn *connect_once(const char *url, char *err, size_t errlen) {
    /* Keywords are applied in order: the URL (dbname, expanded) overrides the defaults
     * before it. TCP keepalives notice a vanished server (network partition) within
     * about a minute instead of the kernel's two hours. */
    const char *keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
                          "keepalives_count", "fallback_application_name", "dbname", NULL};
    const char *vals[] = {"10", "30", "10", "3", "feedline", url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        snprintf(err, errlen, "out of memory connecting to PostgreSQL");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(c));
        one_line(err);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    PGresult *r = PQexec(c, "SET lock_timeout = '" PG_LOCK_TIMEOUT "'");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        one_line(err);
    }
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void forget_deallocs(pg_db *d) {
    for (size_t i = 0; i < d->ndealloc; i++) free(d->dealloc[i]);
    d->ndealloc = 0;
}

/* Replaces a lost connection, retrying with exponential backoff. 0 or DB_ERR_CONN. */
static int reconnect(pg_db *d) {
    int was_in_tx = d->base.in_tx;
    if (d->streaming) {
        d->streaming->state = ST_DONE;
        d->streaming->final_rc = DB_ERR_CONN;
        d->streaming = NULL;
    }
    PQfinish(d->conn);
    d->conn = NULL;
    forget_deallocs(d); /* the server dropped every statement with the session */
    int64_t deadline = mono_ms() + RECONNECT_BUDGET_MS;
    int64_t wait = RECONNECT_FIRST_MS;
    char why[256] = "";
    for (int attempt = 1;; attempt++) {
        d->conn = connect_once(d->url, why, sizeof why);
        if (d->conn) break;
        if (mono_ms() + wait > deadline) {
            set_err(d, "connection to PostgreSQL lost and not re-established: %s", why);
            d->broken = 1;
            return DB_ERR_CONN;
        }
        log_warn("postgres: reconnect attempt %d failed (%s); retrying in %lld ms", attempt,
                 why, (long long)wait);
        sleep_ms(wait);
        wait = wait * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : wait * 2;
    }
    d->generation++;
    d->broken = 0;
    if (was_in_tx) d->tx_lost = 1;
    log_warn("postgres: reconnected%s", was_in_tx ? " (the open transaction was lost)" : "");
    return 0;
}

/* An idle connection has nothing to read; if its socket is readable the server has
 * sent a goodbye (terminated backend, shutdown) or closed it. */
static int idle_connection_dead(pg_db *d) {
    if (PQstatus(d->conn) != CONNECTION_OK) return 1;
    struct pollfd p = {PQsocket(d->conn), POLLIN, 0};
    int r = poll(&p, 1, 0);
    if (r <= 0) return r < 0 && errno != EINTR;
    /* EOF makes PQconsumeInput fail; a FATAL message alone arrives as a notice. */
    return !PQconsumeInput(d->conn) || PQstatus(d->conn) != CONNECTION_OK;
}

static void buffer_rest(pg_stmt *s);
static int flush_deallocs(pg_db *d);

/* Makes the connection ready for a new query: the streaming statement (another one)
 * is buffered, a dead connection replaced, a lost transaction reported. */
static int conn_ready(pg_db *d, pg_stmt *self) {
    if (d->streaming && d->streaming != self) buffer_rest(d->streaming);
    if (d->broken || idle_connection_dead(d)) {
        int rc = reconnect(d);
        if (rc) return rc;
    }
    if (d->tx_lost) {
        set_err(d, "the connection to PostgreSQL was lost inside a transaction; "
                   "roll back and retry");
        return DB_ERR_CONN;
    }
    return flush_deallocs(d);
}

/* ------------------------------------------------------------------ db ops */

static void pg_close(db_t *db) {
    pg_db *d = PDB(db);
    forget_deallocs(d);
    free(d->dealloc);
    if (d->conn) PQfinish(d->conn);
    free(d->url);
    free(d);
}

static db_t *pg_open(const char *url, char *err, size_t errlen) {
    char why[256];
    PGconn *c = connect_once(url, why, sizeof why);
    if (!c) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", why);
        return NULL;
    }
    pg_db *d = xcalloc(1, sizeof *d);
    d->base.drv = &db_pg_driver;
    d->base.dialect = DB_PG;
    d->conn = c;
    d->url = xstrdup(url);
    d->generation = 1;
    return &d->base;
}

/* Records the row count of a finished INSERT/UPDATE/DELETE (like sqlite3_changes,
 * other commands leave it alone). */
static void note_changes(pg_db *d, PGresult *res) {
    const char *cmd = PQcmdStatus(res);
    if (!cmd) return;
    if (strncmp(cmd, "INSERT", 6) && strncmp(cmd, "UPDATE", 6) && strncmp(cmd, "DELETE", 6) &&
        strncmp(cmd, "MERGE", 5))
        return;
    d->changes = strtoll(PQcmdTuples(res), NULL, 10);
}

/* Runs SQL without parameters through the simple protocol (several statements
 * allowed). */
static int run_simple(pg_db *d, const char *sql) {
    PGresult *res = PQexec(d->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) note_changes(d, res);
    else rc = map_error(d, res);
    PQclear(res);
    return rc;
}

static int pg_exec(db_t *db, const char *sql) {
    pg_db *d = PDB(db);
    /* Rolling back a transaction whose connection is gone succeeds trivially: the
     * server rolled it back with the session. The next operation reconnects. */
    if (strcmp(sql, "ROLLBACK") == 0 &&
        (d->tx_lost || d->broken || (!d->streaming && idle_connection_dead(d)))) {
        d->tx_lost = 0;
        if (d->conn && PQstatus(d->conn) != CONNECTION_OK) d->broken = 1;
        return 0;
    }
    int rc = conn_ready(d, NULL);
    return rc ? rc : run_simple(d, sql);
}

static int flush_deallocs(pg_db *d) {
    /* Only between transactions: an aborted transaction would refuse the command. */
    if (d->ndealloc < DEALLOC_BATCH || PQtransactionStatus(d->conn) != PQTRANS_IDLE) return 0;
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < d->ndealloc; i++) buf_printf(&b, "DEALLOCATE %s;", d->dealloc[i]);
    forget_deallocs(d);
    int rc = run_simple(d, buf_cstr(&b));
    buf_free(&b);
    /* A leftover server statement is harmless; only a lost connection matters. */
    if (rc && rc != DB_ERR_CONN) log_debug("postgres: deallocating: %s", d->err);
    return rc == DB_ERR_CONN ? rc : 0;
}

static db_stmt *pg_prepare(db_t *db, const char *sql) {
    pg_stmt *s = xcalloc(1, sizeof *s);
    s->base.db = db;
    s->sql = translate_placeholders(sql, &s->nparams);
    s->read_only = sql_is_read_only(sql);
    s->params = xcalloc((size_t)s->nparams + 1, sizeof *s->params);
    for (int i = 0; i < s->nparams; i++) s->params[i].is_null = 1; /* unbound = NULL */
    s->declared = xcalloc((size_t)s->nparams + 1, sizeof *s->declared);
    /* The server statement is prepared on first execution, when the parameter types
     * are known from the bindings. */
    return &s->base;
}

/* ------------------------------------------------------------------ binding */

static int bind_value(db_stmt *st, int idx, Oid type, const void *v, size_t len) {
    pg_stmt *s = PST(st);
    if (idx < 1 || idx > s->nparams) {
        snprintf(PDB(st->db)->err, sizeof PDB(st->db)->err,
                 "parameter index %d out of range (statement has %d)", idx, s->nparams);
        return DB_ERR;
    }
    pg_param *p = &s->params[idx - 1];
    p->type = type;
    p->is_null = v == NULL;
    p->len = 0;
    if (v) {
        if (p->cap < len + 1) {
            p->cap = len + 1 < 32 ? 32 : len + 1;
            p->val = xrealloc(p->val, p->cap);
        }
        memcpy(p->val, v, len);
        p->val[len] = '\0';
        p->len = len;
    }
    return 0;
}

static int pg_bind_int(db_stmt *s, int i, int64_t v) {
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", (long long)v);
    return bind_value(s, i, OID_INT8, t, (size_t)n);
}
static int pg_bind_double(db_stmt *s, int i, double v) {
    char t[40];
    int n = snprintf(t, sizeof t, "%.17g", v);
    return bind_value(s, i, OID_FLOAT8, t, (size_t)n);
}
static int pg_bind_text(db_stmt *s, int i, const char *v) {
    /* NULL text is still typed text: the server needs no inference for it. */
    return bind_value(s, i, OID_TEXT, v, v ? strlen(v) : 0);
}
static int pg_bind_blob(db_stmt *s, int i, const void *v, size_t len) {
    /* As in SQLite: a NULL pointer binds NULL, a zero-length blob an empty bytea. */
    return bind_value(s, i, OID_BYTEA, v, v ? len : 0);
}
static int pg_bind_null(db_stmt *s, int i) { return bind_value(s, i, 0, NULL, 0); }

/* ------------------------------------------------------------------ execution */

static void clear_row(pg_stmt *s) {
    PQclear(s->row);
    s->row = NULL;
    for (int i = 0; i < s->nblobs; i++) {
        if (s->blobs[i].data) PQfreemem(s->blobs[i].data);
        s->blobs[i].data = NULL;
    }
}

/* Does the server statement need (re)preparing for the current bindings? Values of
 * a parameter the server inferred (declared 0) are sent as text, which it parses per
 * its own type; bytea is sent in binary, so it needs a declared bytea. */
static int needs_prepare(pg_stmt *s, unsigned generation) {
    if (s->prepared_gen != generation) return 1;
    for (int i = 0; i < s->nparams; i++) {
        Oid bound = s->params[i].type, decl = s->declared[i];
        if (bound == 0) continue;
        if (decl != 0 ? decl != bound : bound == OID_BYTEA) return 1;
    }
    return 0;
}

static void drop_server_statement(pg_db *d, pg_stmt *s) {
    if (s->prepared_gen != d->generation || !s->name[0]) return;
    XGROW(d->dealloc, d->dealloc_cap, d->ndealloc + 1);
    d->dealloc[d->ndealloc++] = xstrdup(s->name);
    s->prepared_gen = 0;
}

static int prepare_on_server(pg_db *d, pg_stmt *s) {
    drop_server_statement(d, s);
    for (int i = 0; i < s->nparams; i++)
        if (s->params[i].type != 0) s->declared[i] = s->params[i].type;
    snprintf(s->name, sizeof s->name, "fl_%u", ++d->next_name);
    PGresult *res = PQprepare(d->conn, s->name, s->sql, s->nparams, s->declared);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : map_error(d, res);
    PQclear(res);
    if (rc == 0) s->prepared_gen = d->generation;
    return rc;
}

static void finish_query(pg_db *d, pg_stmt *s, PGresult *first, int keep_rows);

/* Sends the query and switches to single-row mode. */
static int send_query(pg_db *d, pg_stmt *s) {
    int n = s->nparams;
    const char **values = xcalloc((size_t)n + 1, sizeof *values);
    int *lengths = xcalloc((size_t)n + 1, sizeof *lengths);
    int *formats = xcalloc((size_t)n + 1, sizeof *formats);
    for (int i = 0; i < n; i++) {
        const pg_param *p = &s->params[i];
        values[i] = p->is_null ? NULL : p->val;
        lengths[i] = (int)p->len;
        formats[i] = p->type == OID_BYTEA ? 1 : 0;
    }
    int ok = PQsendQueryPrepared(d->conn, s->name, n, values, lengths, formats, 0);
    free(values);
    free(lengths);
    free(formats);
    if (!ok) return map_error(d, NULL);
    s->state = ST_STREAMING;
    s->rows_seen = 0;
    d->streaming = s;
    if (!PQsetSingleRowMode(d->conn)) {
        /* Cannot happen right after a send; never fall back to loading every row. */
        finish_query(d, s, NULL, 0);
        s->state = ST_DONE;
        set_err(d, "cannot switch the query to single-row mode");
        return DB_ERR;
    }
    return 0;
}

static int start_query(pg_db *d, pg_stmt *s) {
    int rc = conn_ready(d, s);
    if (rc) return rc;
    if (needs_prepare(s, d->generation)) rc = prepare_on_server(d, s);
    if (rc == DB_ERR_CONN && !d->base.in_tx) {
        /* Nothing ran: safe to reconnect and try once more. */
        rc = conn_ready(d, s);
        if (!rc) rc = prepare_on_server(d, s);
    }
    if (rc) return rc;
    rc = send_query(d, s);
    if (rc == DB_ERR_CONN && !d->base.in_tx) {
        rc = conn_ready(d, s);
        if (!rc) rc = prepare_on_server(d, s);
        if (!rc) rc = send_query(d, s);
    }
    return rc;
}

/* Reads results to the end of the query (starting with first, when the caller
 * already fetched one): the final status decides final_rc. Rows still arriving are
 * queued when keep_rows, dropped otherwise. */
static void finish_query(pg_db *d, pg_stmt *s, PGresult *first, int keep_rows) {
    int rc = DB_DONE;
    int have_final = 0;
    for (PGresult *res = first ? first : PQgetResult(d->conn); res;
         res = PQgetResult(d->conn)) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE && keep_rows && !have_final) {
            XGROW(s->queue, s->qcap, s->qlen + 1);
            s->queue[s->qlen++] = res;
            continue;
        }
        if (!have_final && st != PGRES_SINGLE_TUPLE) {
            have_final = 1;
            if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) note_changes(d, res);
            else rc = map_error(d, res);
        }
        PQclear(res);
    }
    if (!have_final && PQstatus(d->conn) == CONNECTION_BAD) rc = map_error(d, NULL);
    s->final_rc = rc;
    if (d->streaming == s) d->streaming = NULL;
}

static void buffer_rest(pg_stmt *s) {
    finish_query(PDB(s->base.db), s, NULL, 1);
    s->state = s->qhead < s->qlen ? ST_BUFFERED : ST_DONE;
}

static int next_streamed(pg_db *d, pg_stmt *s) {
    PGresult *res = PQgetResult(d->conn);
    if (res && PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
        s->row = res;
        s->rows_seen++;
        return DB_ROW;
    }
    if (res) {
        finish_query(d, s, res, 0);
    } else { /* no final result: the connection broke */
        s->final_rc = map_error(d, NULL);
        d->streaming = NULL;
    }
    s->state = ST_DONE;
    return s->final_rc;
}

static int pg_step(db_stmt *st) {
    pg_stmt *s = PST(st);
    pg_db *d = PDB(st->db);
    clear_row(s);
    if (s->state == ST_IDLE) {
        int rc = start_query(d, s);
        if (rc) {
            s->state = ST_DONE;
            s->final_rc = rc;
            return rc;
        }
    }
    if (s->state == ST_STREAMING) {
        int rc = next_streamed(d, s);
        if (rc == DB_ERR_CONN && s->rows_seen == 0 && s->read_only && !d->base.in_tx) {
            /* A read that failed before any row: run it again on a new connection. */
            s->state = ST_IDLE;
            rc = start_query(d, s);
            if (rc) {
                s->state = ST_DONE;
                s->final_rc = rc;
                return rc;
            }
            rc = next_streamed(d, s);
        }
        return rc;
    }
    if (s->state == ST_BUFFERED) {
        if (s->qhead < s->qlen) {
            s->row = s->queue[s->qhead];
            s->queue[s->qhead++] = NULL;
            s->rows_seen++;
            return DB_ROW;
        }
        s->state = ST_DONE;
    }
    return s->final_rc;
}

/* ------------------------------------------------------------------ columns */

static int col_ok(pg_stmt *s, int i) {
    return s->row && i >= 0 && i < PQnfields(s->row);
}

static int pg_col_null(db_stmt *st, int i) {
    pg_stmt *s = PST(st);
    return !col_ok(s, i) || PQgetisnull(s->row, 0, i);
}

static const char *pg_col_text(db_stmt *st, int i) {
    pg_stmt *s = PST(st);
    if (pg_col_null(st, i)) return NULL;
    return PQgetvalue(s->row, 0, i);
}

static int64_t pg_col_int(db_stmt *st, int i) {
    const char *v = pg_col_text(st, i);
    if (!v) return 0;
    if (PQftype(PST(st)->row, i) == OID_BOOL) return v[0] == 't';
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*end == '\0' && errno == 0) return n;
    /* numeric (SUM of bigint) or float text: truncate like SQLite does */
    return (int64_t)strtod(v, NULL);
}

static double pg_col_double(db_stmt *st, int i) {
    const char *v = pg_col_text(st, i);
    return v ? strtod(v, NULL) : 0.0;
}

static const void *pg_col_blob(db_stmt *st, int i, size_t *len) {
    pg_stmt *s = PST(st);
    *len = 0;
    if (pg_col_null(st, i)) return NULL;
    if (PQftype(s->row, i) != OID_BYTEA) {
        *len = (size_t)PQgetlength(s->row, 0, i);
        return PQgetvalue(s->row, 0, i);
    }
    int nf = PQnfields(s->row);
    if (s->nblobs < nf) {
        s->blobs = xrealloc(s->blobs, (size_t)nf * sizeof *s->blobs);
        memset(s->blobs + s->nblobs, 0, (size_t)(nf - s->nblobs) * sizeof *s->blobs);
        s->nblobs = nf;
    }
    struct pg_blob *b = &s->blobs[i];
    if (!b->data) {
        /* Text-format bytea ("\x0a0b..."), decoded once per row and column. */
        b->data = PQunescapeBytea((const unsigned char *)PQgetvalue(s->row, 0, i), &b->len);
        if (!b->data) return NULL;
    }
    *len = b->len;
    return b->data;
}

/* ------------------------------------------------------------------ lifecycle */

static int64_t pg_changes(db_t *db) { return PDB(db)->changes; }

static void free_queue(pg_stmt *s) {
    for (size_t i = s->qhead; i < s->qlen; i++) PQclear(s->queue[i]);
    s->qhead = s->qlen = 0;
}

static int pg_reset(db_stmt *st) {
    pg_stmt *s = PST(st);
    pg_db *d = PDB(st->db);
    clear_row(s);
    if (s->state == ST_STREAMING && d->streaming == s) finish_query(d, s, NULL, 0);
    free_queue(s);
    for (int i = 0; i < s->nparams; i++) {
        s->params[i].type = 0;
        s->params[i].is_null = 1;
        s->params[i].len = 0;
    }
    s->state = ST_IDLE;
    s->final_rc = DB_DONE;
    return 0;
}

static void pg_finalize(db_stmt *st) {
    pg_stmt *s = PST(st);
    pg_reset(st);
    drop_server_statement(PDB(st->db), s);
    for (int i = 0; i < s->nparams; i++) free(s->params[i].val);
    free(s->params);
    free(s->declared);
    free(s->queue);
    free(s->blobs);
    free(s->sql);
    free(s);
}

static const char *pg_errmsg(db_t *db) { return PDB(db)->err; }

static int pg_ping(db_t *db) {
    pg_db *d = PDB(db);
    int rc = conn_ready(d, NULL);
    if (rc) return rc;
    rc = run_simple(d, "SELECT 1");
    if (rc == DB_ERR_CONN && !d->base.in_tx) {
        rc = conn_ready(d, NULL);
        if (!rc) rc = run_simple(d, "SELECT 1");
    }
    return rc;
}

const db_driver db_pg_driver = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .bind_int = pg_bind_int,
    .bind_double = pg_bind_double,
    .bind_text = pg_bind_text,
    .bind_blob = pg_bind_blob,
    .bind_null = pg_bind_null,
    .step = pg_step,
    .col_null = pg_col_null,
    .col_int = pg_col_int,
    .col_double = pg_col_double,
    .col_text = pg_col_text,
    .col_blob = pg_col_blob,
    .changes = pg_changes,
    .reset = pg_reset,
    .finalize = pg_finalize,
    .errmsg = pg_errmsg,
    .ping = pg_ping,
};

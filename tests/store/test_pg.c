/* The PostgreSQL driver (db_pg.c) through the db layer: placeholder translation,
 * binary-safe parameters, single-row streaming, error mapping and reconnection.
 *
 * Needs a server: FEEDLINE_TEST_PG (set by the PostgreSQL pass of `make test`). Each
 * case gets its own database from fx_db_url(). Without it every case says SKIP. The
 * restart case also needs FEEDLINE_TEST_PG_DIR, the directory of the throwaway
 * cluster made by scripts/pg-test-cluster. */
#include "test.h"

#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/db.h"
#include "store/store.h"
#include "support/fixtures.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* ASan's count of live heap bytes (freed memory sits in its quarantine, so RSS would
 * not tell); glibc's count in a build without sanitizers. */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void) {
    if (__sanitizer_get_current_allocated_bytes) return __sanitizer_get_current_allocated_bytes();
    return mallinfo2().uordblks;
}

/* A fresh database URL, or NULL after printing why the case is skipped. A skipped
 * case counts as passed, visibly. */
static char *pg_url_or_skip(const char *name) {
    const char *pg = getenv("FEEDLINE_TEST_PG");
    if (!pg || !pg[0]) {
        fprintf(stdout, "    SKIP %s: FEEDLINE_TEST_PG is not set (runs in the PostgreSQL "
                        "pass of make test)\n", name);
        test_checked();
        return NULL;
    }
    return fx_db_url();
}

static db_t *open_db(const char *url) {
    char err[256];
    db_t *db = db_open(url, err, sizeof err);
    if (!db) fprintf(stdout, "    db_open: %s\n", err);
    return db;
}

/* Runs SQL that returns one integer. */
static int64_t query_int(db_t *db, const char *sql, int64_t param) {
    db_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    if (strchr(sql, '?')) db_bind_int(st, 1, param);
    int64_t v = db_step(st) == DB_ROW ? db_col_int(st, 0) : -1;
    db_finalize(st);
    return v;
}

/* Waits until the backend with this pid has exited (pg_terminate_backend only sends
 * the signal). 0 when gone, -1 after 10 s. */
static int wait_backend_gone(db_t *db, int64_t pid) {
    for (int i = 0; i < 1000; i++) {
        if (query_int(db, "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ?", pid) == 0)
            return 0;
        sleep_ms(10);
    }
    return -1;
}

/* Terminates the backend serving victim from a second connection. */
static int terminate_backend(const char *url, db_t *victim) {
    int64_t pid = query_int(victim, "SELECT pg_backend_pid()", 0);
    db_t *admin = open_db(url);
    if (!admin || pid <= 0) {
        db_close(admin);
        return -1;
    }
    int ok = query_int(admin, "SELECT CAST(pg_terminate_backend(CAST(? AS INTEGER)) AS INTEGER)",
                       pid) == 1 &&
             wait_backend_gone(admin, pid) == 0;
    db_close(admin);
    return ok ? 0 : -1;
}

TEST(placeholders_outside_literals_identifiers_and_comments_are_translated) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *db = open_db(url);
    REQUIRE(db);
    db_stmt *st = db_prepare(db,
        "SELECT '?' AS a, ? AS b, 'it''s ?' AS c, E'\\'?' AS d, CAST(? AS BIGINT) AS \"x?\","
        " $$?$$ AS e, $q$ ? $q$ AS f /* ? /* nested ? */ ? */ -- ? \n");
    REQUIRE(st);
    CHECK_INT(db_bind_text(st, 1, "one"), 0);
    CHECK_INT(db_bind_int(st, 2, 2), 0);
    CHECK_INT(db_bind_int(st, 3, 3), DB_ERR); /* there are exactly two parameters */
    REQUIRE(db_step(st) == DB_ROW);
    CHECK_STR(db_col_text(st, 0), "?");
    CHECK_STR(db_col_text(st, 1), "one");
    CHECK_STR(db_col_text(st, 2), "it's ?");
    CHECK_STR(db_col_text(st, 3), "'?");
    CHECK_INT(db_col_int(st, 4), 2);
    CHECK_STR(db_col_text(st, 5), "?");
    CHECK_STR(db_col_text(st, 6), " ? ");
    CHECK_INT(db_step(st), DB_DONE);
    db_finalize(st);
    db_close(db);
    free(url);
}

TEST(parameter_types_follow_the_bindings) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *db = open_db(url);
    REQUIRE(db);
    /* The same statement bound as int, then text: re-prepared with the new type. */
    db_stmt *st = db_prepare(db, "SELECT CAST(? AS TEXT)");
    REQUIRE(st);
    db_bind_int(st, 1, -42);
    REQUIRE(db_step(st) == DB_ROW);
    CHECK_STR(db_col_text(st, 0), "-42");
    db_reset(st);
    db_bind_text(st, 1, "héllo");
    REQUIRE(db_step(st) == DB_ROW);
    CHECK_STR(db_col_text(st, 0), "héllo");
    db_reset(st);
    db_bind_null(st, 1);
    REQUIRE(db_step(st) == DB_ROW);
    CHECK(db_col_null(st, 0));
    CHECK(db_col_text(st, 0) == NULL);
    db_finalize(st);
    /* An untyped NULL first (the server infers bigint), then a value. */
    st = db_prepare(db, "SELECT COALESCE(CAST(? AS BIGINT), -1)");
    REQUIRE(st);
    db_bind_null(st, 1);
    REQUIRE(db_step(st) == DB_ROW);
    CHECK_INT(db_col_int(st, 0), -1);
    db_reset(st);
    db_bind_int(st, 1, INT64_MAX);
    REQUIRE(db_step(st) == DB_ROW);
    CHECK_INT(db_col_int(st, 0), INT64_MAX);
    db_finalize(st);
    /* Doubles survive the text round trip exactly; SUM(bigint) is numeric. */
    st = db_prepare(db, "SELECT ?, SUM(x), COUNT(*), 1 = 1 FROM (VALUES (CAST(? AS BIGINT)),"
                        " (CAST(? AS BIGINT))) v(x)");
    REQUIRE(st);
    db_bind_double(st, 1, 0.1);
    db_bind_int(st, 2, 4000000000);
    db_bind_int(st, 3, 5);
    REQUIRE(db_step(st) == DB_ROW);
    CHECK(db_col_double(st, 0) == 0.1);
    CHECK_INT(db_col_int(st, 1), 4000000005);
    CHECK_INT(db_col_int(st, 2), 2);
    CHECK_INT(db_col_int(st, 3), 1); /* boolean true */
    db_finalize(st);
    db_close(db);
    free(url);
}

TEST(bytea_round_trips_every_byte_value) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *db = open_db(url);
    REQUIRE(db);
    REQUIRE(db_exec(db, "CREATE TABLE blobs (id BIGINT PRIMARY KEY, b BYTEA)") == 0);
    unsigned char all[512];
    for (size_t i = 0; i < sizeof all; i++) all[i] = (unsigned char)(i * 7); /* zeros inside */
    db_stmt *ins = db_prepare(db, "INSERT INTO blobs (id, b) VALUES (?, ?)");
    REQUIRE(ins);
    db_bind_int(ins, 1, 1);
    db_bind_blob(ins, 2, all, sizeof all);
    CHECK_INT(db_step(ins), DB_DONE);
    db_reset(ins);
    db_bind_int(ins, 1, 2);
    db_bind_blob(ins, 2, "", 0); /* empty, not NULL */
    CHECK_INT(db_step(ins), DB_DONE);
    db_reset(ins);
    db_bind_int(ins, 1, 3);
    db_bind_null(ins, 2);
    CHECK_INT(db_step(ins), DB_DONE);
    db_finalize(ins);

    db_stmt *sel = db_prepare(db, "SELECT b, LENGTH(b) FROM blobs ORDER BY id");
    REQUIRE(sel);
    size_t len = 0;
    REQUIRE(db_step(sel) == DB_ROW);
    CHECK_INT(db_col_int(sel, 1), sizeof all); /* the server got every byte */
    const void *p = db_col_blob(sel, 0, &len);
    CHECK_INT(len, sizeof all);
    CHECK(p && memcmp(p, all, sizeof all) == 0);
    CHECK(db_col_blob(sel, 0, &len) == p); /* decoded once per row */
    REQUIRE(db_step(sel) == DB_ROW);
    CHECK(!db_col_null(sel, 0));
    db_col_blob(sel, 0, &len);
    CHECK_INT(len, 0);
    REQUIRE(db_step(sel) == DB_ROW);
    CHECK(db_col_null(sel, 0));
    CHECK(db_col_blob(sel, 0, &len) == NULL);
    CHECK_INT(db_step(sel), DB_DONE);
    db_finalize(sel);
    db_close(db);
    free(url);
}

TEST(large_results_stream_in_bounded_memory) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *db = open_db(url);
    REQUIRE(db);
    enum { ROWS = 100000 };
    /* ~25 MB of row data: far more than the bound below if it were all loaded. */
    db_stmt *st = db_prepare(db, "SELECT g, REPEAT('x', 250) FROM generate_series(1, ?) g");
    REQUIRE(st);
    db_bind_int(st, 1, ROWS);
    size_t base = heap_in_use(), peak = base;
    int64_t rows = 0, in_order = 1;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        rows++;
        if (db_col_int(st, 0) != rows || strlen(db_col_text(st, 1)) != 250) in_order = 0;
        if (rows % 1000 == 0) {
            size_t now = heap_in_use();
            if (now > peak) peak = now;
        }
    }
    CHECK_INT(rc, DB_DONE);
    CHECK_INT(rows, ROWS);
    CHECK(in_order);
    size_t growth = peak > base ? peak - base : 0;
    if (growth >= 4u << 20) fprintf(stdout, "    heap grew by %zu bytes\n", growth);
    CHECK(growth < 4u << 20);
    db_finalize(st);
    db_close(db);
    free(url);
}

TEST(interleaved_statements_keep_their_rows) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *db = open_db(url);
    REQUIRE(db);
    REQUIRE(db_exec(db, "CREATE TABLE t (n BIGINT)") == 0);
    db_stmt *outer = db_prepare(db, "SELECT g FROM generate_series(1, 1000) g");
    db_stmt *ins = db_prepare(db, "INSERT INTO t (n) VALUES (?)");
    REQUIRE(outer && ins);
    int64_t rows = 0, sum = 0;
    int rc;
    /* Writing while the scan is open: the scan's rest is buffered, not lost. */
    while ((rc = db_step(outer)) == DB_ROW) {
        rows++;
        if (rows % 100 == 0) {
            db_bind_int(ins, 1, db_col_int(outer, 0));
            CHECK_INT(db_step(ins), DB_DONE);
            CHECK_INT(db_changes(db), 1);
            db_reset(ins);
        }
        sum += db_col_int(outer, 0);
    }
    CHECK_INT(rc, DB_DONE);
    CHECK_INT(rows, 1000);
    CHECK_INT(sum, 500500);
    CHECK_INT(query_int(db, "SELECT SUM(n) FROM t", 0), 5500);
    /* A statement reset halfway can run again from the start. */
    REQUIRE(db_reset(outer) == 0);
    REQUIRE(db_step(outer) == DB_ROW);
    CHECK_INT(db_col_int(outer, 0), 1);
    db_reset(outer);
    REQUIRE(db_step(outer) == DB_ROW);
    CHECK_INT(db_col_int(outer, 0), 1);
    db_finalize(outer);
    db_finalize(ins);
    /* changes() counts the rows of the last write, not of a SELECT. */
    REQUIRE(db_exec(db, "UPDATE t SET n = n + 1 WHERE n > 500") == 0);
    CHECK_INT(db_changes(db), 5);
    CHECK_INT(query_int(db, "SELECT COUNT(*) FROM t", 0), 10);
    CHECK_INT(db_changes(db), 5);
    db_close(db);
    free(url);
}

TEST(constraint_and_busy_errors_are_mapped) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *a = open_db(url), *b = open_db(url);
    REQUIRE(a && b);
    REQUIRE(db_exec(a, "CREATE TABLE u (id BIGINT PRIMARY KEY, v BIGINT CHECK (v >= 0))") == 0);
    db_stmt *ins = db_prepare(a, "INSERT INTO u (id, v) VALUES (?, ?)");
    REQUIRE(ins);
    db_bind_int(ins, 1, 1);
    db_bind_int(ins, 2, 1);
    CHECK_INT(db_step(ins), DB_DONE);
    db_reset(ins);
    db_bind_int(ins, 1, 1);
    db_bind_int(ins, 2, 1);
    CHECK_INT(db_step(ins), DB_ERR_CONSTRAINT); /* unique */
    CHECK(strstr(db_errmsg(a), "23505") != NULL);
    db_reset(ins);
    db_bind_int(ins, 1, 2);
    db_bind_int(ins, 2, -1);
    CHECK_INT(db_step(ins), DB_ERR_CONSTRAINT); /* check */
    db_reset(ins);
    db_bind_int(ins, 1, 3);
    db_bind_text(ins, 2, "not a number");
    CHECK_INT(db_step(ins), DB_ERR); /* any other error */
    db_finalize(ins);

    /* a holds the row lock; b gives up after its lock timeout. */
    REQUIRE(db_begin(a, 1) == 0);
    REQUIRE(db_exec(a, "UPDATE u SET v = 2 WHERE id = 1") == 0);
    REQUIRE(db_exec(b, "SET lock_timeout = '50ms'") == 0);
    CHECK_INT(db_exec(b, "UPDATE u SET v = 3 WHERE id = 1"), DB_ERR_BUSY);
    CHECK(strstr(db_errmsg(b), "55P03") != NULL);
    REQUIRE(db_rollback(a) == 0);
    /* A statement timeout (57014) is retryable too. */
    REQUIRE(db_exec(b, "SET statement_timeout = '50ms'") == 0);
    db_stmt *slow = db_prepare(b, "SELECT pg_sleep(5)");
    REQUIRE(slow);
    CHECK_INT(db_step(slow), DB_ERR_BUSY);
    db_finalize(slow);
    CHECK_INT(db_ping(b), 0); /* errors leave the connection usable */
    CHECK_INT(db_exec(b, "UPDATE u SET v = 3 WHERE id = 1"), 0);
    db_close(a);
    db_close(b);
    free(url);
}

TEST(reconnects_after_the_backend_is_terminated) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *db = open_db(url);
    REQUIRE(db);
    db_stmt *st = db_prepare(db, "SELECT pg_backend_pid(), CAST(? AS BIGINT) * 2");
    REQUIRE(st);
    db_bind_int(st, 1, 21);
    REQUIRE(db_step(st) == DB_ROW);
    int64_t pid = db_col_int(st, 0);
    CHECK_INT(db_col_int(st, 1), 42);
    db_reset(st);
    REQUIRE(terminate_backend(url, db) == 0);
    /* The next operation notices, reconnects, re-prepares and succeeds. */
    db_bind_int(st, 1, 50);
    REQUIRE(db_step(st) == DB_ROW);
    CHECK(db_col_int(st, 0) != pid);
    CHECK_INT(db_col_int(st, 1), 100);
    CHECK_INT(db_step(st), DB_DONE);
    db_finalize(st);
    db_close(db);
    free(url);
}

TEST(a_transaction_lost_with_its_connection_fails_until_rolled_back) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *db = open_db(url);
    REQUIRE(db);
    REQUIRE(db_exec(db, "CREATE TABLE t (n BIGINT)") == 0);
    db_stmt *ins = db_prepare(db, "INSERT INTO t (n) VALUES (?)");
    REQUIRE(ins);
    REQUIRE(db_begin(db, 1) == 0);
    db_bind_int(ins, 1, 1);
    CHECK_INT(db_step(ins), DB_DONE);
    db_reset(ins);
    REQUIRE(terminate_backend(url, db) == 0);
    db_bind_int(ins, 1, 2);
    CHECK_INT(db_step(ins), DB_ERR_CONN); /* the transaction is gone */
    db_reset(ins);
    CHECK_INT(db_ping(db), DB_ERR_CONN);
    CHECK_INT(db_commit(db), DB_ERR_CONN);
    CHECK_INT(db_rollback(db), 0);
    /* The caller retries the transaction on the new connection. */
    REQUIRE(db_begin(db, 1) == 0);
    db_bind_int(ins, 1, 3);
    CHECK_INT(db_step(ins), DB_DONE);
    db_reset(ins);
    CHECK_INT(db_commit(db), 0);
    CHECK_INT(query_int(db, "SELECT SUM(n) FROM t", 0), 3);
    db_finalize(ins);
    db_close(db);
    free(url);
}

TEST(reconnects_with_backoff_while_the_server_restarts) {
    const char *dir = getenv("FEEDLINE_TEST_PG_DIR");
    if (getenv("FEEDLINE_TEST_PG") && (!dir || !dir[0])) {
        fprintf(stdout, "    SKIP %s: FEEDLINE_TEST_PG_DIR is not set\n", __func__);
        test_checked();
        return;
    }
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    db_t *db = open_db(url);
    REQUIRE(db);
    db_stmt *st = db_prepare(db, "SELECT CAST(? AS BIGINT) + 1");
    REQUIRE(st);
    db_bind_int(st, 1, 1);
    REQUIRE(db_step(st) == DB_ROW);
    db_reset(st);
    REQUIRE(fx_pg_cluster("stop-server", dir) == 0);
    /* The server comes back after a while; meanwhile the query waits in the
     * reconnect backoff instead of failing. */
    int64_t down_ms = 1500, t0 = mono_ms();
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        sleep_ms(down_ms);
        _exit(fx_pg_cluster("start-server", dir) == 0 ? 0 : 1);
    }
    db_bind_int(st, 1, 41);
    int rc = db_step(st);
    int64_t waited = mono_ms() - t0;
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_INT(rc, DB_ROW);
    if (rc == DB_ROW) CHECK_INT(db_col_int(st, 0), 42);
    else fprintf(stdout, "    %s\n", db_errmsg(db));
    CHECK(waited >= down_ms);
    db_finalize(st);
    db_close(db);
    free(url);
}

/* ------------------------------------------------------------------ store on PostgreSQL */

static void seed_run(store *s, int nconv, int64_t *run) {
    for (int i = 0; i < nconv; i++) {
        conv_record r;
        char id[16];
        snprintf(id, sizeof id, "c%02d", i);
        fx_record(&r, id, 100 + i, "my pins are not posting");
        enum upsert_outcome o;
        store_conv_upsert(s, &r, 1, &o);
        conv_record_free(&r);
    }
    run_params p = {0};
    p.concurrency = 1;
    p.llm = "local";
    int64_t count = 0;
    store_run_create(s, &p, 1000, run, NULL);
    store_work_seed_conversations(s, *run, 0, 2000, 0, &count);
}

static void free_ids(char **ids, size_t n) {
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

TEST(concurrent_claims_skip_rows_locked_by_another_worker) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    store *a = fx_store_open(url), *b = fx_store_open(url);
    int64_t run = 0;
    seed_run(a, 10, &run);
    REQUIRE(run > 0);
    /* a's claim is not committed yet: its rows stay locked, b takes the next ones
     * instead of waiting or taking the same. */
    REQUIRE(store_begin(a) == STORE_OK);
    char **ia = NULL, **ib = NULL;
    size_t na = 0, nb = 0;
    CHECK_INT(store_work_claim(a, run, PHASE_CLASSIFICATION, "wa", 4, 100, 60, &ia, &na),
              STORE_OK);
    CHECK_INT(store_work_claim(b, run, PHASE_CLASSIFICATION, "wb", 4, 100, 60, &ib, &nb),
              STORE_OK);
    CHECK_INT(na, 4);
    CHECK_INT(nb, 4);
    if (na == 4 && nb == 4) {
        CHECK_STR(ia[0], "c00");
        CHECK_STR(ib[0], "c04");
        CHECK_STR(ib[3], "c07");
    }
    CHECK_INT(store_commit(a), STORE_OK);
    free_ids(ia, na);
    free_ids(ib, nb);
    work_counts c;
    CHECK_INT(store_work_counts(b, run, PHASE_CLASSIFICATION, &c), STORE_OK);
    CHECK_INT(c.claimed, 8);
    CHECK_INT(c.pending, 2);
    store_close(a);
    store_close(b);
    free(url);
}

/* Waits until some backend waits for a lock. 0, or -1 after 10 s. */
static int wait_for_lock_waiter(const char *url) {
    db_t *admin = open_db(url);
    if (!admin) return -1;
    int rc = -1;
    for (int i = 0; i < 1000 && rc; i++) {
        if (query_int(admin, "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type ="
                             " 'Lock' AND datname = current_database()", 0) > 0)
            rc = 0;
        else
            sleep_ms(10);
    }
    db_close(admin);
    return rc;
}

TEST(run_warnings_from_concurrent_transactions_are_not_lost) {
    char *url = pg_url_or_skip(__func__);
    if (!url) return;
    store *a = fx_store_open(url);
    int64_t run = 0;
    seed_run(a, 1, &run);
    REQUIRE(run > 0);
    REQUIRE(store_begin(a) == STORE_OK);
    CHECK_INT(store_run_add_warning(a, run, "from a"), STORE_OK);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        store *b = NULL;
        char err[256];
        int ok = store_open(url, &b, err, sizeof err) == STORE_OK &&
                 store_run_add_warning(b, run, "from b") == STORE_OK;
        store_close(b);
        _exit(ok ? 0 : 1);
    }
    /* b must be waiting on a's row before a commits, or the test proves nothing. */
    CHECK_INT(wait_for_lock_waiter(url), 0);
    CHECK_INT(store_commit(a), STORE_OK);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    run_record r;
    REQUIRE(store_run_get(a, run, &r) == STORE_FOUND);
    CHECK_STR(r.warnings_json, "[\"from a\",\"from b\"]");
    run_record_free(&r);
    store_close(a);
    free(url);
}

/* Scale-out over processes, end to end: a driver (`feedline run`) and `feedline worker`
 * processes on one PostgreSQL database, each process against its own fake
 * OpenAI-compatible endpoint (so each one's requests and requests in flight are
 * counted apart), compared with a single-process run over the same conversations:
 * same counters, no duplicate rows, identical stories, every item claimed once. Then
 * a worker killed with SIGKILL mid-phase (its batch is reclaimed at once: its database
 * session ended), one paused with SIGSTOP past its lease (its batch is reclaimed, its
 * late results discarded),
 * PostgreSQL restarted mid-run, a shared requests/min limit, stop signals, dry runs
 * and SQLite refusal.
 *
 * Needs FEEDLINE_TEST_PG (the PostgreSQL pass of `make test`); without it the cases
 * that need a shared database say SKIP. The restart case also needs
 * FEEDLINE_TEST_PG_DIR (the throwaway cluster of scripts/pg-test-cluster). */
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/db.h"
#include "store/store_report.h"
#include "support/dataset.h"
#include "support/e2e.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "support/outcome.h"
#include "support/server.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define MAX_ARGS 24
/* Leases: short where a worker is killed (its batch comes back after it), longer
 * elsewhere, so that a process slowed down by a loaded machine keeps its claims. */
#define SHORT_LEASE "3"
#define LEASE "10"
/* Small batches, so that a few hundred conversations spread over every process. */
#define CLAIM_BATCH 16
#define RUN_TIMEOUT_MS 240000

/* ------------------------------------------------------------------ processes */

static int pg_or_skip(const char *name) {
    const char *pg = getenv("FEEDLINE_TEST_PG");
    if (pg && pg[0]) return 1;
    fprintf(stdout, "    SKIP %s: FEEDLINE_TEST_PG is not set (workers need a shared PostgreSQL "
                    "database; runs in the PostgreSQL pass of make test)\n", name);
    test_checked();
    return 0;
}

/* The environment of a process talking to the fake fp. */
static void env_for_lease(e2e_env *s, const fakeproc *fp, const char *lease) {
    e2e_env_for(s, fp);
    e2e_env_set(s, "FEEDLINE_LEASE_SECONDS=%s", lease);
    e2e_env_set(s, "FEEDLINE_LOG=info");
    e2e_env_set(s, "FEEDLINE_CLAIM_BATCH=%d", CLAIM_BATCH);
}

static void env_for(e2e_env *s, const fakeproc *fp) { env_for_lease(s, fp, LEASE); }

static int start_fake(fakeproc *fp, const char *latency_ms, const char *const extra[]) {
    const char *args[MAX_ARGS] = {"--latency-ms", latency_ms};
    size_t n = 2;
    while (extra && *extra && n < MAX_ARGS - 1) args[n++] = *extra++;
    args[n] = NULL;
    return e2e_start_fake(fp, args);
}

/* A background `feedline ARGS...` with its output in a log file. */
typedef struct bgproc {
    pid_t pid;
    char *log;
    char owner[300]; /* its work-claim owner name (cli_owner: "host:pid") */
} bgproc;

static int bg_start(bgproc *p, const char *dir, const char *name, const e2e_env *env, ...) {
    char *argv[MAX_ARGS];
    int n = 0;
    argv[n++] = (char *)e2e_bin();
    va_list ap;
    va_start(ap, env);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < MAX_ARGS - 1) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    p->log = xasprintf("%s/%s.log", dir, name);
    p->pid = fakeproc_spawn(argv, env->e, p->log);
    char host[256] = "localhost"; /* as cli_owner */
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    snprintf(p->owner, sizeof p->owner, "%s:%d", host, (int)p->pid);
    return p->pid > 0 ? 0 : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return xstrdup("");
    buf_t b = BUF_INIT;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(&b, tmp, n);
    fclose(f);
    return buf_detach(&b);
}

/* Waits for the process; its exit status (-2 after the timeout: killed then). Its
 * output is shown when the status is not the expected one. */
static int bg_wait_for(bgproc *p, int timeout_ms, int expected) {
    int rc = fakeproc_wait(p->pid, timeout_ms);
    if (rc == -2) {
        kill(p->pid, SIGKILL);
        fakeproc_wait(p->pid, 5000);
    }
    if (rc != expected) {
        char *text = slurp(p->log);
        size_t len = strlen(text);
        fprintf(stdout, "    %s exited %d; last output:\n%s\n", p->log, rc,
                len > 2000 ? text + len - 2000 : text);
        free(text);
    }
    return rc;
}

static int bg_wait(bgproc *p, int timeout_ms) { return bg_wait_for(p, timeout_ms, 0); }

static int log_has(const bgproc *p, const char *needle) {
    char *text = slurp(p->log);
    int found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* How many times needle occurs in the process's log. */
static int log_count(const bgproc *p, const char *needle) {
    char *text = slurp(p->log);
    int n = 0;
    for (const char *t = text; (t = strstr(t, needle)); t += strlen(needle)) n++;
    free(text);
    return n;
}

static void bg_free(bgproc *p) { free(p->log); }

/* ------------------------------------------------------------------ data */

/* n generated conversations as JSONL in dir (the same for every database). */
static char *write_dataset(const char *dir, size_t n, uint64_t seed) {
    return ds_write_jsonl(dir, n, seed);
}

/* A fresh database with the dataset imported. */
static char *database_with(const char *file) {
    char *db = fx_db_url();
    char *out = NULL, *err = NULL;
    int rc = e2e_feedline(NULL, &out, &err, "import", "--db", db, file, NULL);
    if (rc != 0) fprintf(stdout, "    import failed: %s %s\n", out, err);
    free(out);
    free(err);
    if (rc != 0) {
        free(db);
        return NULL;
    }
    return db;
}

static int64_t claimed_by(const char *url, int64_t run, const char *owner) {
    char err[256];
    db_t *db = db_open(url, err, sizeof err);
    if (!db) return -1;
    db_stmt *st = db_prepare(db, "SELECT COUNT(*) FROM work_items WHERE run_id = ? AND owner = ?"
                                 " AND state = 'claimed'");
    int64_t v = -1;
    if (st) {
        db_bind_int(st, 1, run);
        db_bind_text(st, 2, owner);
        if (db_step(st) == DB_ROW) v = db_col_int(st, 0);
        db_finalize(st);
    }
    db_close(db);
    return v;
}

/* The active run's id once there is one (0 after timeout_ms). */
static int64_t wait_active_run(const char *url, int timeout_ms) {
    store *st = fx_store_open(url);
    int64_t id = 0, deadline = mono_ms() + timeout_ms;
    char status[16];
    while (mono_ms() < deadline && store_run_active(st, &id, status) != STORE_FOUND) {
        id = 0;
        sleep_ms(20);
    }
    store_close(st);
    return id;
}

/* Waits until the run's phase is `phase` with at least min_done items of it done. */
static int wait_progress(const char *url, int64_t run, const char *phase, int64_t min_done,
                         int timeout_ms) {
    char *sql = xasprintf("SELECT COUNT(*) FROM work_items WHERE run_id = ? AND phase = '%s'"
                          " AND state = 'done'", phase);
    int64_t deadline = mono_ms() + timeout_ms;
    int ok = 0;
    while (!ok && mono_ms() < deadline) {
        ok = outcome_int(url, sql, run) >= min_done;
        if (!ok) sleep_ms(20);
    }
    free(sql);
    return ok;
}

/* Requests of the per-conversation chat tasks (embeddings are batched, canonicalisations
 * depend on timing, story titles happen once). */
static const char *const ITEM_TASKS[] = {"classify", "refine", "facets", "theme"};

static int64_t item_requests(const fakeproc *fp) {
    json_t *s = fakeproc_stats(fp);
    int64_t n = 0;
    for (size_t i = 0; i < sizeof ITEM_TASKS / sizeof ITEM_TASKS[0]; i++)
        n += jx_int(jx_obj(jx_obj(s, "tasks"), ITEM_TASKS[i]), "requests", 0);
    json_decref(s);
    return n;
}

/* The single-process reference run over the dataset, against its own fake. */
typedef struct reference {
    char *db;
    int64_t run;
    int64_t item_requests;
} reference;

static int reference_run(reference *r, const char *file, const char *latency) {
    memset(r, 0, sizeof *r);
    fakeproc fp;
    if (start_fake(&fp, latency, NULL) != 0) return -1;
    r->db = database_with(file);
    e2e_env env;
    env_for(&env, &fp);
    char *err = NULL;
    int rc = r->db ? e2e_feedline(&env, NULL, &err, "run", "--db", r->db, "--llm", "openai",
                              "--concurrency", "8", NULL)
                   : -1;
    if (rc != 0) fprintf(stdout, "    reference run: %s\n", err ? err : "");
    free(err);
    r->run = r->db ? outcome_int(r->db, "SELECT MAX(id) FROM pipeline_runs WHERE ? > 0", 1) : 0;
    r->item_requests = item_requests(&fp);
    e2e_env_free(&env);
    fakeproc_stop(&fp);
    return rc;
}

static void reference_free(reference *r) { free(r->db); }

#define DATASET 240
#define SEED 41

/* ------------------------------------------------------------------ cases */

TEST(worker_refuses_a_sqlite_database_and_documents_itself) {
    char *dir = fx_tmpdir();
    char *file = xasprintf("%s/x.db", dir);
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_feedline(NULL, &out, &err, "worker", "--db", file, "--once", NULL), 2);
    CHECK(err && strstr(err, "SQLite") && strstr(err, "PostgreSQL"));
    CHECK(access(file, F_OK) != 0); /* nothing was created */
    free(out);
    free(err);
    CHECK_INT(e2e_feedline(NULL, &out, &err, "worker", "--help", NULL), 0);
    CHECK(out && strstr(out, "--concurrency") && strstr(out, "--once") &&
          strstr(out, "FEEDLINE_LEASE_SECONDS"));
    free(out);
    free(err);
    CHECK_INT(e2e_feedline(NULL, &out, &err, "--help", NULL), 0);
    CHECK(out && strstr(out, "worker"));
    free(out);
    free(err);
    fx_rmtree(dir);
    free(dir);
    free(file);
}

TEST(once_exits_at_once_without_an_active_run) {
    if (!pg_or_skip(__func__)) return;
    char *db = fx_db_url();
    store *st = fx_store_open(db); /* migrated, no run */
    store_close(st);
    char *out = NULL, *err = NULL;
    int64_t t0 = mono_ms();
    CHECK_INT(e2e_feedline(NULL, &out, &err, "worker", "--db", db, "--once", NULL), 0);
    CHECK(mono_ms() - t0 < 10000);
    free(out);
    free(err);
    free(db);
}

TEST(three_workers_and_the_driver_end_like_one_process) {
    if (!pg_or_skip(__func__)) return;
    char *dir = fx_tmpdir();
    char *file = write_dataset(dir, DATASET, SEED);
    REQUIRE(file != NULL);
    const char *latency = "80";
    reference ref;
    REQUIRE(reference_run(&ref, file, latency) == 0);

    /* Each process talks to its own fake: requests and requests in flight per process. */
    enum { NW = 3 };
    fakeproc fd, fw[NW];
    REQUIRE(start_fake(&fd, latency, NULL) == 0);
    for (int i = 0; i < NW; i++) REQUIRE(start_fake(&fw[i], latency, NULL) == 0);
    char *db = database_with(file);
    REQUIRE(db != NULL);
    e2e_env ed, ew[NW];
    env_for(&ed, &fd);
    bgproc driver, workers[NW];
    REQUIRE(bg_start(&driver, dir, "driver", &ed, "run", "--db", db, "--llm", "openai",
                     "--concurrency", "8", NULL) == 0);
    int64_t run = wait_active_run(db, 30000);
    REQUIRE(run > 0);
    const char *conc[NW] = {"8", "8", "3"};
    for (int i = 0; i < NW; i++) {
        env_for(&ew[i], &fw[i]);
        char name[32];
        snprintf(name, sizeof name, "worker%d", i);
        REQUIRE(bg_start(&workers[i], dir, name, &ew[i], "worker", "--db", db, "--once",
                         "--concurrency", conc[i], NULL) == 0);
    }
    CHECK_INT(bg_wait(&driver, RUN_TIMEOUT_MS), 0);
    for (int i = 0; i < NW; i++) CHECK_INT(bg_wait(&workers[i], 20000), 0);

    outcome_check_same(ref.db, ref.run, db, run);
    /* Every item of every phase was claimed once: nothing was done twice. */
    CHECK_INT(outcome_int(db, "SELECT COUNT(*) FROM work_items WHERE run_id = ? AND attempts <> 1", run),
              0);
    CHECK_INT(outcome_int(db, "SELECT COUNT(*) FROM work_items WHERE run_id = ? AND state <> 'done'", run),
              0);
    /* ... and the per-conversation requests of all processes add up to one run's. */
    int64_t total = item_requests(&fd);
    for (int i = 0; i < NW; i++) {
        int64_t mine = item_requests(&fw[i]);
        int64_t max_in_flight = fakeproc_stat_int(&fw[i], "max_in_flight");
        fprintf(stdout, "    worker %d (concurrency %s): %lld requests, at most %lld in flight\n",
                i, conc[i], (long long)mine, (long long)max_in_flight);
        CHECK(mine > 0); /* it took part */
        /* The run streams: a worker joins every per-conversation phase at once. */
        CHECK(log_has(&workers[i], "joining the streaming phases"));
        CHECK(max_in_flight >= 1 && max_in_flight <= atoi(conc[i]));
        total += mine;
    }
    fprintf(stdout, "    driver: %lld requests; all: %lld; one process: %lld\n",
            (long long)item_requests(&fd), (long long)total, (long long)ref.item_requests);
    CHECK_INT(total, ref.item_requests);
    CHECK(fakeproc_stat_int(&fd, "max_in_flight") <= 8);
    /* Concurrent flushes never deadlocked (PostgreSQL would resolve it by aborting one,
     * a second later, and the flush would be retried: slow, and logged). */
    CHECK(!log_has(&driver, "deadlock"));
    for (int i = 0; i < NW; i++) CHECK(!log_has(&workers[i], "deadlock"));

    for (int i = 0; i < NW; i++) {
        bg_free(&workers[i]);
        e2e_env_free(&ew[i]);
        CHECK_INT(fakeproc_stop(&fw[i]), 0);
    }
    bg_free(&driver);
    e2e_env_free(&ed);
    CHECK_INT(fakeproc_stop(&fd), 0);
    free(db);
    reference_free(&ref);
    free(file);
    fx_rmtree(dir);
    free(dir);
}

/* The driver, a worker and a victim worker (its own fake, with victim_latency), each
 * against its own fake and with the short lease, on a fresh database; and the
 * single-process reference over the same conversations. */
typedef struct trio {
    char *dir, *file, *db;
    reference ref;
    fakeproc fd, fw, fv;
    e2e_env ed, ew, ev;
    bgproc driver, worker, victim;
    int64_t run;
} trio;

static int trio_start(trio *t, const char *victim_latency) {
    memset(t, 0, sizeof *t);
    const char *latency = "80";
    t->dir = fx_tmpdir();
    t->file = write_dataset(t->dir, DATASET, SEED);
    if (!t->file || reference_run(&t->ref, t->file, latency) != 0) return -1;
    if (start_fake(&t->fd, latency, NULL) || start_fake(&t->fw, latency, NULL) ||
        start_fake(&t->fv, victim_latency, NULL))
        return -1;
    t->db = database_with(t->file);
    if (!t->db) return -1;
    env_for_lease(&t->ed, &t->fd, SHORT_LEASE);
    env_for_lease(&t->ew, &t->fw, SHORT_LEASE);
    env_for_lease(&t->ev, &t->fv, SHORT_LEASE);
    if (bg_start(&t->driver, t->dir, "driver", &t->ed, "run", "--db", t->db, "--llm", "openai",
                 "--concurrency", "8", NULL))
        return -1;
    t->run = wait_active_run(t->db, 30000);
    if (t->run <= 0) return -1;
    if (bg_start(&t->victim, t->dir, "victim", &t->ev, "worker", "--db", t->db, "--once",
                 "--concurrency", "8", NULL))
        return -1;
    return bg_start(&t->worker, t->dir, "worker", &t->ew, "worker", "--db", t->db, "--once",
                    "--concurrency", "8", NULL);
}

/* The run ended like the reference's; the driver and the worker exited 0. */
static void trio_check_outcome(trio *t) {
    CHECK_INT(bg_wait(&t->driver, RUN_TIMEOUT_MS), 0);
    CHECK_INT(bg_wait(&t->worker, 20000), 0);
    outcome_check_same(t->ref.db, t->ref.run, t->db, t->run);
    CHECK_INT(outcome_int(t->db, "SELECT COUNT(*) FROM work_items WHERE run_id = ? AND state <> 'done'",
                    t->run),
              0);
}

static void trio_free(trio *t) {
    bg_free(&t->driver);
    bg_free(&t->worker);
    bg_free(&t->victim);
    e2e_env_free(&t->ed);
    e2e_env_free(&t->ew);
    e2e_env_free(&t->ev);
    CHECK_INT(fakeproc_stop(&t->fd), 0);
    CHECK_INT(fakeproc_stop(&t->fw), 0);
    CHECK_INT(fakeproc_stop(&t->fv), 0);
    free(t->db);
    reference_free(&t->ref);
    free(t->file);
    fx_rmtree(t->dir);
    free(t->dir);
}

TEST(a_worker_killed_mid_phase_loses_its_batch_and_every_item_is_stored_once) {
    if (!pg_or_skip(__func__)) return;
    /* The victim's endpoint is slow: its batch is certainly in flight when it dies. */
    trio t;
    REQUIRE(trio_start(&t, "3000") == 0);
    int64_t held = 0, deadline = mono_ms() + 60000;
    while (mono_ms() < deadline && (held = claimed_by(t.db, t.run, t.victim.owner)) <= 0)
        sleep_ms(10);
    REQUIRE(held > 0);
    while (mono_ms() < deadline && fakeproc_stat_int(&t.fv, "requests") < 1) sleep_ms(10);
    CHECK_INT(kill(t.victim.pid, SIGKILL), 0);
    CHECK_INT(fakeproc_wait(t.victim.pid, 10000), -1); /* killed by a signal */
    fprintf(stdout, "    killed the victim holding %lld claimed items\n", (long long)held);
    trio_check_outcome(&t);
    /* The dead worker's batch was claimed again (its session ended) and is the only
     * work claimed twice. */
    int64_t again = outcome_int(t.db, "SELECT COUNT(*) FROM work_items WHERE run_id = ? AND attempts > 1",
                          t.run);
    fprintf(stdout, "    %lld items claimed a second time\n", (long long)again);
    CHECK(again >= held);
    CHECK(again <= held + CLAIM_BATCH); /* its claims, and at most a batch it was taking */
    trio_free(&t);
}

TEST(a_worker_paused_past_its_lease_loses_its_batch_and_its_late_results_are_discarded) {
    if (!pg_or_skip(__func__)) return;
    trio t;
    REQUIRE(trio_start(&t, "80") == 0);
    /* SIGSTOP with a batch in hand: its session stays open, so only the lease ends its
     * claims; the others take them over. A stop that catches it inside a transaction
     * keeps its rows locked (nobody can take them until it commits): then it is let
     * go and stopped again. */
    int64_t held = 0, deadline = mono_ms() + 90000;
    int taken = 0;
    for (int attempt = 0; !taken && attempt < 3 && mono_ms() < deadline; attempt++) {
        while (mono_ms() < deadline && claimed_by(t.db, t.run, t.victim.owner) <= 0) sleep_ms(10);
        CHECK_INT(kill(t.victim.pid, SIGSTOP), 0);
        held = claimed_by(t.db, t.run, t.victim.owner);
        int64_t until = mono_ms() + (atoi(SHORT_LEASE) + 15) * 1000;
        while (held > 0 && !taken && mono_ms() < until) {
            taken = claimed_by(t.db, t.run, t.victim.owner) == 0;
            if (!taken) sleep_ms(20);
        }
        if (!taken) CHECK_INT(kill(t.victim.pid, SIGCONT), 0);
    }
    REQUIRE(taken);
    fprintf(stdout, "    stopped the victim holding %lld claimed items; the others took them "
                    "over\n", (long long)held);
    int64_t victim_before = item_requests(&t.fv);
    CHECK_INT(kill(t.victim.pid, SIGCONT), 0);
    /* Same counters, every result row once, same stories: nothing of the victim's was
     * stored over the others' results or counted twice. */
    trio_check_outcome(&t);
    CHECK_INT(bg_wait(&t.victim, 20000), 0);
    /* It found out at once: its results for lost items were discarded, and the ready
     * ones dropped unstarted. */
    CHECK(log_has(&t.victim, "discarded") || log_has(&t.victim, "dropped"));
    CHECK(log_has(&t.victim, "paused or stalled"));
    /* The run counts them: at least one, and only items the victim held. */
    run_record lost = outcome_run(t.db, t.run);
    fprintf(stdout, "    claims lost: %lld\n", (long long)lost.claims_lost);
    CHECK(lost.claims_lost >= 1);
    CHECK(lost.claims_lost <= held);
    run_record_free(&lost);
    /* The work redone is the victim's batch: per-item requests of all processes exceed
     * one process's by at most two per item it held (classification: stage 1 and 2). */
    int64_t total = item_requests(&t.fd) + item_requests(&t.fw) + item_requests(&t.fv);
    fprintf(stdout, "    per-item requests: %lld (one process: %lld); the victim's: %lld before "
                    "it resumed, %lld after\n", (long long)total, (long long)t.ref.item_requests,
            (long long)victim_before, (long long)(item_requests(&t.fv) - victim_before));
    CHECK(total >= t.ref.item_requests);
    CHECK(total - t.ref.item_requests <= 2 * held);
    /* The requests made are billed once each: the run's usage is what the endpoints saw. */
    run_record r = outcome_run(t.db, t.run);
    int64_t seen = fakeproc_stat_int(&t.fd, "requests") + fakeproc_stat_int(&t.fw, "requests") +
                   fakeproc_stat_int(&t.fv, "requests");
    fprintf(stdout, "    usage: %lld requests recorded, %lld seen by the endpoints\n",
            (long long)r.llm_requests, (long long)seen);
    CHECK_INT(r.llm_requests, seen);
    run_record_free(&r);
    trio_free(&t);
}

TEST(a_stop_reaches_every_process_and_a_resume_with_workers_ends_like_one_process) {
    if (!pg_or_skip(__func__)) return;
    char *dir = fx_tmpdir();
    char *file = write_dataset(dir, DATASET, SEED);
    REQUIRE(file != NULL);
    const char *latency = "80";
    reference ref;
    REQUIRE(reference_run(&ref, file, latency) == 0);

    fakeproc fp;
    REQUIRE(start_fake(&fp, latency, NULL) == 0);
    char *db = database_with(file);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp);
    bgproc driver, w1, w2;
    REQUIRE(bg_start(&driver, dir, "driver", &env, "run", "--db", db, "--llm", "openai",
                     "--concurrency", "8", NULL) == 0);
    int64_t run = wait_active_run(db, 30000);
    REQUIRE(run > 0);
    REQUIRE(bg_start(&w1, dir, "worker1", &env, "worker", "--db", db, "--concurrency", "8",
                     NULL) == 0);
    REQUIRE(bg_start(&w2, dir, "worker2", &env, "worker", "--db", db, "--concurrency", "8",
                     NULL) == 0);
    /* Mid-classification, with both workers holding batches. */
    int64_t deadline = mono_ms() + 60000;
    while (mono_ms() < deadline &&
           (claimed_by(db, run, w1.owner) <= 0 || claimed_by(db, run, w2.owner) <= 0))
        sleep_ms(10);
    REQUIRE(claimed_by(db, run, w1.owner) > 0 && claimed_by(db, run, w2.owner) > 0);
    char *id = xasprintf("%lld", (long long)run);
    int64_t t0 = mono_ms();
    CHECK_INT(e2e_feedline(&env, NULL, NULL, "stop", "--db", db, id, NULL), 0);
    CHECK_INT(bg_wait_for(&driver, 15000, 4), 4); /* EXIT_STOPPED */
    int64_t stopped_ms = mono_ms() - t0;
    /* The workers let go too: nothing stays claimed (no lease has to run out). */
    int64_t claimed = -1;
    while (mono_ms() - t0 < 5000 &&
           (claimed = outcome_int(db, "SELECT COUNT(*) FROM work_items WHERE run_id = ?"
                                " AND state = 'claimed'", run)) != 0)
        sleep_ms(20);
    int64_t released_ms = mono_ms() - t0;
    fprintf(stdout, "    driver stopped %lld ms after the request, every claim released after "
                    "%lld ms\n", (long long)stopped_ms, (long long)released_ms);
    CHECK_INT(claimed, 0);
    CHECK(released_ms < 2000 + 80 * 2);
    run_record r = outcome_run(db, run);
    CHECK_STR(r.status, "stopped");
    CHECK(r.conversations_classified < r.conversations_fetched); /* stopped part-way */
    run_record_free(&r);
    /* One active run per database, across processes: a second run is refused while the
     * resumed one is active. Resume with the same workers still waiting. */
    bgproc resumed;
    REQUIRE(bg_start(&resumed, dir, "resume", &env, "resume", "--db", db, id, NULL) == 0);
    int64_t again = wait_active_run(db, 30000);
    CHECK_INT(again, run);
    char *err = NULL;
    CHECK_INT(e2e_feedline(&env, NULL, &err, "run", "--db", db, "--llm", "openai", NULL), 3);
    CHECK(err && strstr(err, "already in progress"));
    free(err);
    CHECK_INT(bg_wait(&resumed, RUN_TIMEOUT_MS), 0);
    CHECK_INT(kill(w1.pid, SIGTERM), 0);
    CHECK_INT(kill(w2.pid, SIGTERM), 0);
    CHECK_INT(bg_wait(&w1, 20000), 0);
    CHECK_INT(bg_wait(&w2, 20000), 0);
    /* The workers joined the run before and after the stop. */
    CHECK(log_count(&w1, "joining the streaming phases") >= 2 ||
          log_count(&w2, "joining the streaming phases") >= 2);
    outcome_check_same(ref.db, ref.run, db, run);

    free(id);
    bg_free(&driver);
    bg_free(&resumed);
    bg_free(&w1);
    bg_free(&w2);
    e2e_env_free(&env);
    CHECK_INT(fakeproc_stop(&fp), 0);
    free(db);
    reference_free(&ref);
    free(file);
    fx_rmtree(dir);
    free(dir);
}

TEST(three_workers_and_the_server_lose_one_worker_and_end_like_one_process) {
    if (!pg_or_skip(__func__)) return;
    char *dir = fx_tmpdir();
    char *file = write_dataset(dir, DATASET, SEED);
    REQUIRE(file != NULL);
    const char *latency = "80";
    reference ref;
    REQUIRE(reference_run(&ref, file, latency) == 0);

    /* The server drives the run; workers 0 and 1 help; worker 2 is killed with its
     * batch in flight (its endpoint is slow). */
    enum { NW = 3 };
    fakeproc fs, fw[NW];
    REQUIRE(start_fake(&fs, latency, NULL) == 0);
    REQUIRE(start_fake(&fw[0], latency, NULL) == 0);
    REQUIRE(start_fake(&fw[1], latency, NULL) == 0);
    REQUIRE(start_fake(&fw[2], "3000", NULL) == 0);
    char *db = database_with(file);
    REQUIRE(db != NULL);
    e2e_env es, ew[NW];
    env_for_lease(&es, &fs, SHORT_LEASE);
    test_server srv;
    REQUIRE(ts_start(&srv, db, NULL, (const char *const *)es.e) == 0);
    int64_t run = ts_start_run(&srv, "{\"llm\": \"openai\", \"concurrency\": 8, "
                                     "\"all_conversations\": true, \"auto_create_stories\": true}");
    REQUIRE(run > 0);
    bgproc workers[NW];
    for (int i = 0; i < NW; i++) {
        env_for_lease(&ew[i], &fw[i], SHORT_LEASE);
        char name[32];
        snprintf(name, sizeof name, "worker%d", i);
        REQUIRE(bg_start(&workers[i], dir, name, &ew[i], "worker", "--db", db, "--once",
                         "--concurrency", "8", NULL) == 0);
    }
    bgproc *victim = &workers[2];
    int64_t held = 0, deadline = mono_ms() + 60000;
    while (mono_ms() < deadline && (held = claimed_by(db, run, victim->owner)) <= 0) sleep_ms(10);
    REQUIRE(held > 0);
    while (mono_ms() < deadline && fakeproc_stat_int(&fw[2], "requests") < 1) sleep_ms(10);
    CHECK_INT(kill(victim->pid, SIGKILL), 0);
    CHECK_INT(fakeproc_wait(victim->pid, 10000), -1);

    int ok = 0;
    json_t *st = ts_wait_status(&srv, run, RUN_TIMEOUT_MS, ts_is_terminal, NULL, &ok);
    CHECK(ok);
    CHECK_STR(jx_str(st, "status"), "completed");
    json_decref(st);
    for (int i = 0; i < 2; i++) CHECK_INT(bg_wait(&workers[i], 20000), 0);
    outcome_check_same(ref.db, ref.run, db, run);
    int64_t again = outcome_int(db, "SELECT COUNT(*) FROM work_items WHERE run_id = ? AND attempts > 1",
                          run);
    fprintf(stdout, "    killed a worker holding %lld items; %lld items claimed twice\n",
            (long long)held, (long long)again);
    CHECK(again >= held && again <= held + CLAIM_BATCH);
    /* The server's view of the stories is the reference's. */
    char *fa = outcome_stories(ref.db, ref.run), *fb = ts_stories_fingerprint(&srv, run);
    CHECK_STR(fb, fa);
    CHECK(fb && strlen(fb) > 0);
    free(fa);
    free(fb);
    CHECK(item_requests(&fw[0]) > 0 && item_requests(&fw[1]) > 0);
    CHECK_INT(ts_stop(&srv, 20000), 0);

    for (int i = 0; i < NW; i++) {
        bg_free(&workers[i]);
        e2e_env_free(&ew[i]);
        CHECK_INT(fakeproc_stop(&fw[i]), 0);
    }
    e2e_env_free(&es);
    CHECK_INT(fakeproc_stop(&fs), 0);
    free(db);
    reference_free(&ref);
    free(file);
    fx_rmtree(dir);
    free(dir);
}

TEST(postgres_restarted_mid_run_the_run_completes_or_resumes_to_the_same_result) {
    if (!pg_or_skip(__func__)) return;
    const char *pgdir = getenv("FEEDLINE_TEST_PG_DIR");
    if (!pgdir || !pgdir[0]) {
        fprintf(stdout, "    SKIP %s: FEEDLINE_TEST_PG_DIR is not set\n", __func__);
        test_checked();
        return;
    }
    char *dir = fx_tmpdir();
    char *file = write_dataset(dir, DATASET, SEED);
    REQUIRE(file != NULL);
    const char *latency = "80";
    reference ref;
    REQUIRE(reference_run(&ref, file, latency) == 0);

    fakeproc fp;
    REQUIRE(start_fake(&fp, latency, NULL) == 0);
    char *db = database_with(file);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for_lease(&env, &fp, SHORT_LEASE);
    bgproc driver, w1, w2;
    REQUIRE(bg_start(&driver, dir, "driver", &env, "run", "--db", db, "--llm", "openai",
                     "--concurrency", "8", NULL) == 0);
    int64_t run = wait_active_run(db, 30000);
    REQUIRE(run > 0);
    REQUIRE(bg_start(&w1, dir, "worker1", &env, "worker", "--db", db, "--concurrency", "8",
                     NULL) == 0);
    REQUIRE(bg_start(&w2, dir, "worker2", &env, "worker", "--db", db, "--concurrency", "8",
                     NULL) == 0);
    /* Mid-classification, with the workers in: the server goes away for 2 s. */
    REQUIRE(wait_progress(db, run, "classification", DATASET / 3, 60000));
    REQUIRE(fx_pg_cluster("stop-server", pgdir) == 0);
    sleep_ms(2000);
    REQUIRE(fx_pg_cluster("start-server", pgdir) == 0);

    int drc = bg_wait_for(&driver, RUN_TIMEOUT_MS, -100); /* show its output either way */
    run_record r = outcome_run(db, run);
    fprintf(stdout, "    the driver exited %d, run %s%s%s\n", drc, r.status,
            r.error_message ? ": " : "", r.error_message ? r.error_message : "");
    if (!strcmp(r.status, "failed")) {
        /* A clean failure: resumable, and the resume ends where one run would. */
        CHECK_INT(drc, 1);
        char *err = NULL, *id = xasprintf("%lld", (long long)run);
        CHECK_INT(e2e_feedline(&env, NULL, &err, "resume", "--db", db, id, NULL), 0);
        if (err && *err) fprintf(stdout, "    resume: %.500s\n", err);
        free(err);
        free(id);
    } else {
        CHECK_INT(drc, 0);
        CHECK_STR(r.status, "completed");
    }
    run_record_free(&r);
    /* The workers outlived the restart: still running, and they stop cleanly. */
    CHECK_INT(kill(w1.pid, SIGTERM), 0);
    CHECK_INT(kill(w2.pid, SIGTERM), 0);
    CHECK_INT(bg_wait(&w1, 20000), 0);
    CHECK_INT(bg_wait(&w2, 20000), 0);
    CHECK(log_has(&w1, "joining") || log_has(&w2, "joining"));
    outcome_check_same(ref.db, ref.run, db, run);
    CHECK_INT(outcome_int(db, "SELECT COUNT(*) FROM work_items WHERE run_id = ? AND state <> 'done'", run),
              0);
    /* Paid twice: only what was in flight when the server went. Each process waits in
     * its reconnect meanwhile and sends nothing; an answer that arrived is stored once
     * the server is back, or, when its lease ran out and another process took the item
     * over, asked again: at most the three processes' slots, two requests per item
     * (classification's two stages, when the first answer was not cached either). 7 and
     * 17 (with the response cache turned off) in the runs seen. */
    int64_t total = item_requests(&fp);
    run_record after = outcome_run(db, run);
    fprintf(stdout, "    per-item requests: %lld (one process without the restart: %lld); claims "
                    "lost: %lld\n", (long long)total, (long long)ref.item_requests,
            (long long)after.claims_lost);
    CHECK(total >= ref.item_requests);
    CHECK(total - ref.item_requests <= 2 * 3 * 8);
    run_record_free(&after);

    bg_free(&driver);
    bg_free(&w1);
    bg_free(&w2);
    e2e_env_free(&env);
    CHECK_INT(fakeproc_stop(&fp), 0);
    free(db);
    reference_free(&ref);
    free(file);
    fx_rmtree(dir);
    free(dir);
}

/* Driver and two workers on one endpoint that allows 1200 requests/min, 60 in any
 * 3 s (and says so in x-ratelimit headers); each process configured with rpm. */
typedef struct rate_result {
    int64_t requests, rate_limited, max_window, elapsed_ms;
    int64_t claims, granted;
} rate_result;

static int shared_rate_run(const char *file, const char *dir, const char *rpm, int shared,
                           rate_result *out) {
    memset(out, 0, sizeof *out);
    const char *opts[] = {"--rpm", "1200", "--window-ms", "3000", NULL};
    fakeproc fp;
    if (start_fake(&fp, "50", opts) != 0) return -1;
    char *db = database_with(file);
    if (!db) return -1;
    e2e_env env;
    env_for(&env, &fp);
    e2e_env_set(&env, "FEEDLINE_RPM=%s", rpm);
    if (!shared) e2e_env_set(&env, "FEEDLINE_SHARED_BUDGET=0");
    bgproc driver, w[2];
    char name[64];
    snprintf(name, sizeof name, "driver-%s-%s", rpm, shared ? "shared" : "own");
    int64_t t0 = mono_ms();
    int rc = bg_start(&driver, dir, name, &env, "run", "--db", db, "--llm", "openai",
                      "--concurrency", "8", NULL);
    int64_t run = rc == 0 ? wait_active_run(db, 30000) : 0;
    int started = 0;
    for (int i = 0; i < 2 && run > 0; i++, started++) {
        snprintf(name, sizeof name, "worker%d-%s-%s", i, rpm, shared ? "shared" : "own");
        rc |= bg_start(&w[i], dir, name, &env, "worker", "--db", db, "--once", "--concurrency",
                       "8", NULL);
    }
    if (rc == 0 && run > 0) {
        rc = bg_wait(&driver, RUN_TIMEOUT_MS);
        out->elapsed_ms = mono_ms() - t0;
    } else {
        rc = -1;
    }
    for (int i = 0; i < started; i++) {
        rc |= bg_wait(&w[i], 20000);
        bg_free(&w[i]);
    }
    bg_free(&driver);
    json_t *st = fakeproc_stats(&fp);
    out->requests = jx_int(st, "requests", -1);
    out->rate_limited = jx_int(st, "rate_limited", -1);
    out->max_window = jx_int(st, "max_window_arrivals", -1);
    json_decref(st);
    out->claims = outcome_int(db, "SELECT COALESCE(SUM(claims), 0) FROM rate_budget WHERE ? > 0", 1);
    out->granted = outcome_int(db, "SELECT COALESCE(SUM(granted), 0) FROM rate_budget WHERE ? > 0", 1);
    e2e_env_free(&env);
    fakeproc_stop(&fp);
    free(db);
    return rc;
}

static void print_rate(const char *label, const rate_result *r) {
    fprintf(stdout,
            "    %s: %lld requests in %lld ms, %lld answered 429, at most %lld in a 3 s window; "
            "%lld slots granted in %lld claims\n",
            label, (long long)r->requests, (long long)r->elapsed_ms, (long long)r->rate_limited,
            (long long)r->max_window, (long long)r->granted, (long long)r->claims);
}

TEST(the_endpoints_requests_per_minute_are_shared_by_every_process) {
    if (!pg_or_skip(__func__)) return;
    char *dir = fx_tmpdir();
    char *file = write_dataset(dir, 80, 43);
    REQUIRE(file != NULL);
    rate_result r;
    CHECK_INT(shared_rate_run(file, dir, "1200", 1, &r), 0);
    print_rate("rpm 1200 = the endpoint's, shared", &r);
    CHECK(r.requests > 150);
    CHECK(r.rate_limited <= 2); /* a small tolerance; none expected */
    CHECK(r.max_window <= 60);
    CHECK(r.max_window >= 50);  /* together the processes ran near the limit */
    CHECK(r.granted >= r.requests);
    CHECK(r.claims > 0 && r.claims * 2 <= r.granted); /* claimed in blocks, not one by one */
    free(file);
    fx_rmtree(dir);
    free(dir);
}

TEST(a_configured_requests_per_minute_holds_across_processes_only_when_shared) {
    if (!pg_or_skip(__func__)) return;
    /* 600/min is 30 in any 3 s; the endpoint itself would take 60, so only the shared
     * schedule keeps the three processes at the configured limit. */
    char *dir = fx_tmpdir();
    char *file = write_dataset(dir, 50, 44);
    REQUIRE(file != NULL);
    rate_result shared, own;
    CHECK_INT(shared_rate_run(file, dir, "600", 1, &shared), 0);
    print_rate("rpm 600, shared", &shared);
    CHECK_INT(shared.rate_limited, 0);
    /* Sends keep the schedule's spacing; one more arrival tolerates transport jitter. */
    CHECK(shared.max_window <= 31);
    CHECK(shared.max_window >= 25);
    CHECK(shared.requests > 80);
    CHECK_INT(shared_rate_run(file, dir, "600", 0, &own), 0);
    print_rate("rpm 600, each process alone", &own);
    CHECK_INT(own.claims, 0);
    CHECK(own.max_window > 40);
    free(file);
    fx_rmtree(dir);
    free(dir);
}

TEST(a_stopped_worker_gives_its_claims_back_and_exits_zero) {
    if (!pg_or_skip(__func__)) return;
    char *dir = fx_tmpdir();
    char *file = write_dataset(dir, 120, 45);
    REQUIRE(file != NULL);
    fakeproc fd, fw;
    REQUIRE(start_fake(&fd, "100", NULL) == 0);
    REQUIRE(start_fake(&fw, "5000", NULL) == 0); /* the worker's calls never finish in time */
    char *db = database_with(file);
    REQUIRE(db != NULL);
    e2e_env ed, ew;
    env_for(&ed, &fd);
    env_for(&ew, &fw);
    bgproc driver, worker;
    REQUIRE(bg_start(&driver, dir, "driver", &ed, "run", "--db", db, "--llm", "openai",
                     "--concurrency", "4", NULL) == 0);
    int64_t run = wait_active_run(db, 30000);
    REQUIRE(run > 0);
    REQUIRE(bg_start(&worker, dir, "worker", &ew, "worker", "--db", db, "--concurrency", "4",
                     NULL) == 0);
    int64_t held = 0, deadline = mono_ms() + 60000;
    while (mono_ms() < deadline && (held = claimed_by(db, run, worker.owner)) <= 0) sleep_ms(10);
    REQUIRE(held > 0);
    while (mono_ms() < deadline && fakeproc_stat_int(&fw, "requests") < 4) sleep_ms(10);
    int64_t t0 = mono_ms();
    CHECK_INT(kill(worker.pid, SIGTERM), 0);
    CHECK_INT(bg_wait(&worker, 10000), 0);
    int64_t took = mono_ms() - t0;
    fprintf(stdout, "    the worker held %lld items and exited %lld ms after SIGTERM\n",
            (long long)held, (long long)took);
    CHECK(took < 3000); /* did not wait for its 5 s answers */
    /* Given back at once (not after the lease): nothing is claimed under its name. */
    CHECK_INT(claimed_by(db, run, worker.owner), 0);
    CHECK_INT(bg_wait(&driver, RUN_TIMEOUT_MS), 0);
    run_record r = outcome_run(db, run);
    CHECK_STR(r.status, "completed");
    CHECK_INT(r.conversations_classified + r.classification_failed, r.conversations_fetched);
    CHECK_INT(r.classification_failed, 0);
    run_record_free(&r);
    bg_free(&driver);
    bg_free(&worker);
    e2e_env_free(&ed);
    e2e_env_free(&ew);
    CHECK_INT(fakeproc_stop(&fd), 0);
    CHECK_INT(fakeproc_stop(&fw), 0);
    free(db);
    free(file);
    fx_rmtree(dir);
    free(dir);
}

TEST(workers_leave_dry_runs_to_their_driver) {
    if (!pg_or_skip(__func__)) return;
    char *dir = fx_tmpdir();
    char *file = write_dataset(dir, 120, 46);
    REQUIRE(file != NULL);
    fakeproc fd, fw;
    REQUIRE(start_fake(&fd, "60", NULL) == 0);
    REQUIRE(start_fake(&fw, "60", NULL) == 0);
    char *db = database_with(file);
    REQUIRE(db != NULL);
    e2e_env ed, ew;
    env_for(&ed, &fd);
    env_for(&ew, &fw);
    bgproc driver, worker;
    REQUIRE(bg_start(&driver, dir, "driver", &ed, "run", "--db", db, "--llm", "openai",
                     "--concurrency", "4", "--dry-run", NULL) == 0);
    int64_t run = wait_active_run(db, 30000);
    REQUIRE(run > 0);
    REQUIRE(bg_start(&worker, dir, "worker", &ew, "worker", "--db", db, "--once", NULL) == 0);
    CHECK_INT(bg_wait(&driver, RUN_TIMEOUT_MS), 0);
    CHECK_INT(bg_wait(&worker, 20000), 0);
    CHECK_INT(fakeproc_stat_int(&fw, "requests"), 0);
    CHECK(log_has(&worker, "dry run"));
    run_record r = outcome_run(db, run);
    CHECK_STR(r.status, "completed");
    CHECK(r.preview_json && strstr(r.preview_json, "top_themes"));
    run_record_free(&r);
    bg_free(&driver);
    bg_free(&worker);
    e2e_env_free(&ed);
    e2e_env_free(&ew);
    CHECK_INT(fakeproc_stop(&fd), 0);
    CHECK_INT(fakeproc_stop(&fw), 0);
    free(db);
    free(file);
    fx_rmtree(dir);
    free(dir);
}

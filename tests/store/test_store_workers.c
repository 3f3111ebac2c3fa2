/* The store functions that let several processes share a run (both backends): the
 * shared requests/min schedule (store_budget.c), the work probe, lease renewal per
 * phase and the stop check seen by a helper process. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "support/fixtures.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define SECOND_US 1000000LL

TEST(budget_grants_consecutive_slots_from_a_common_schedule) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t first = -1;
    const int64_t interval = 10 * SECOND_US;
    /* An idle schedule grants from now. */
    CHECK_INT(store_budget_claim(s, "ep", 1, interval, &first), STORE_OK);
    CHECK_INT(first, 0);
    /* The next claim starts where the last one ended: 10 s from the first slot. */
    CHECK_INT(store_budget_claim(s, "ep", 3, interval, &first), STORE_OK);
    CHECK(first > interval - SECOND_US && first <= interval);
    CHECK_INT(store_budget_claim(s, "ep", 1, interval, &first), STORE_OK);
    CHECK(first > 4 * interval - SECOND_US && first <= 4 * interval);
    /* Schedules are per key. */
    CHECK_INT(store_budget_claim(s, "other", 2, interval, &first), STORE_OK);
    CHECK_INT(first, 0);
    int64_t claims = 0, granted = 0;
    CHECK_INT(store_budget_stats(s, "ep", &claims, &granted), STORE_FOUND);
    CHECK_INT(claims, 3);
    CHECK_INT(granted, 5);
    CHECK_INT(store_budget_stats(s, "never", &claims, &granted), STORE_NOTFOUND);
    CHECK_INT(store_budget_claim(s, "ep", 0, interval, &first), STORE_ERR);
    store_close(s);
    free(url);
}

TEST(budget_slots_of_concurrent_processes_never_coincide) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    store_close(s);
    enum { PROCS = 4, CLAIMS = 6 };
    const int64_t interval = 10 * SECOND_US; /* long: the test's own duration is noise */
    int fds[PROCS][2];
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        REQUIRE(pipe(fds[p]) == 0);
        pids[p] = fork();
        REQUIRE(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[p][0]);
            store *c = NULL;
            char err[256];
            if (store_open(url, &c, err, sizeof err)) _exit(2);
            for (int i = 0; i < CLAIMS; i++) {
                int64_t f = 0;
                if (store_budget_claim(c, "shared", 1, interval, &f) != STORE_OK) _exit(3);
                if (write(fds[p][1], &f, sizeof f) != (ssize_t)sizeof f) _exit(4);
            }
            store_close(c);
            _exit(0);
        }
        close(fds[p][1]);
    }
    /* Slot k is at k x interval from the first; a claim made t after the first sees it
     * at k x interval - t, so ceil(offset / interval) recovers k while t < interval. */
    int seen[PROCS * CLAIMS] = {0};
    int got = 0, bad = 0;
    for (int p = 0; p < PROCS; p++) {
        int64_t f;
        while (read(fds[p][0], &f, sizeof f) == (ssize_t)sizeof f) {
            int64_t k = (int64_t)ceil((double)f / (double)interval);
            if (k < 0 || k >= PROCS * CLAIMS || seen[k]++) bad++;
            got++;
        }
        close(fds[p][0]);
        int st = 0;
        waitpid(pids[p], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_INT(got, PROCS * CLAIMS);
    CHECK_INT(bad, 0); /* every slot granted once */
    s = fx_store_open(url);
    int64_t claims = 0, granted = 0;
    CHECK_INT(store_budget_stats(s, "shared", &claims, &granted), STORE_FOUND);
    CHECK_INT(granted, PROCS * CLAIMS);
    store_close(s);
    free(url);
}

static int64_t seeded_run(store *s, int n) {
    for (int i = 0; i < n; i++) {
        conv_record r;
        char id[16];
        snprintf(id, sizeof id, "c%02d", i);
        fx_record(&r, id, 100 + i, "the export button does nothing");
        enum upsert_outcome o;
        store_conv_upsert(s, &r, 1, &o);
        conv_record_free(&r);
    }
    run_params p = {0};
    p.concurrency = 2;
    p.llm = "local";
    int64_t run = 0, count = 0;
    store_run_create(s, &p, 1000, &run, NULL);
    store_work_seed_conversations(s, run, 0, 2000, 0, &count);
    return run;
}

static void free_ids(char **ids, size_t n) {
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

/* Renews owner's leases of the phase; how many items it still holds (-1 on error). */
static int64_t renew(store *s, int64_t run, enum run_phase phase, const char *owner,
                     int64_t until) {
    char **held = NULL;
    size_t n = 0;
    if (store_work_renew(s, run, phase, owner, until, &held, &n) != STORE_OK) return -1;
    free_ids(held, n);
    return (int64_t)n;
}

TEST(probe_sees_pending_work_claims_and_expired_leases) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t run = seeded_run(s, 10);
    REQUIRE(run > 0);
    int claimable = -1;
    int64_t claimed = -1;
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 100, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 1);
    CHECK_INT(claimed, 0);
    char **ids = NULL;
    size_t n = 0;
    CHECK_INT(store_work_claim(s, run, PHASE_CLASSIFICATION, "a", 10, 100, 30, &ids, &n), STORE_OK);
    CHECK_INT(n, 10);
    /* Everything is claimed and the leases run until 130. */
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 120, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 0);
    CHECK_INT(claimed, 10);
    /* Another phase of the run is untouched. */
    CHECK_INT(store_work_probe(s, run, PHASE_FACETS, 120, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 0);
    CHECK_INT(claimed, 0);
    /* Past the lease the dead owner's items are claimable again... */
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 131, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 1);
    /* ...unless it renewed them (only this phase's leases are renewed). */
    CHECK_INT(renew(s, run, PHASE_FACETS, "a", 500), 0);
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 131, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 1);
    CHECK_INT(renew(s, run, PHASE_CLASSIFICATION, "b", 500), 0); /* not b's */
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 131, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 1);
    CHECK_INT(renew(s, run, PHASE_CLASSIFICATION, "a", 500), 10);
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 131, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 0);
    CHECK_INT(claimed, 10);
    /* Done items are neither claimable nor claimed. */
    CHECK_INT(store_begin(s), STORE_OK);
    for (size_t i = 0; i < n; i++)
        CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, ids[i], "a", 0), STORE_OK);
    CHECK_INT(store_commit(s), STORE_OK);
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 1000, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 0);
    CHECK_INT(claimed, 0);
    free_ids(ids, n);
    store_close(s);
    free(url);
}

static int64_t claim(store *s, int64_t run, const char *owner, int64_t now, int64_t lease) {
    char **ids = NULL;
    size_t n = 0;
    if (store_work_claim(s, run, PHASE_CLASSIFICATION, owner, 100, now, lease, &ids, &n))
        return -1;
    free_ids(ids, n);
    return (int64_t)n;
}

static void put_class(store *s, int64_t run, const char *id, const char *type) {
    classification_row r = {0};
    r.conversation_id = id;
    r.stage1_type = r.final_type = type;
    r.stage1_confidence = r.final_confidence = "high";
    r.urgency = r.routing_priority = "normal";
    r.routing_team = "technical_support";
    r.actionable = 1;
    CHECK_INT(store_put_classification(s, run, &r, 1), STORE_OK);
}

typedef struct seen {
    int n;
    char type[64];
} seen;

static int note_type(const classification_brief *b, void *ctx) {
    seen *x = ctx;
    x->n++;
    snprintf(x->type, sizeof x->type, "%s", b->final_type);
    return 0;
}

TEST(a_result_from_an_owner_whose_claim_was_taken_over_is_not_stored) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t run = seeded_run(s, 3);
    REQUIRE(run > 0);
    /* "a" claims everything until 110, then is paused; "b" takes the items over at 200. */
    CHECK_INT(claim(s, run, "a", 100, 10), 3);
    CHECK_INT(claim(s, run, "b", 200, 10), 3);
    /* a's renewal when it resumes does not take them back. */
    CHECK_INT(renew(s, run, PHASE_CLASSIFICATION, "a", 1000), 0);
    CHECK_INT(renew(s, run, PHASE_CLASSIFICATION, "b", 1000), 3);
    /* b finishes c00 and c01 (one done, one failed); c02 is still in its hands. */
    CHECK_INT(store_begin(s), STORE_OK);
    CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, "c00", "b", 0), STORE_OK);
    put_class(s, run, "c00", "from_b");
    CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, "c01", "b", 1), STORE_OK);
    CHECK_INT(store_commit(s), STORE_OK);
    /* a's late results are refused, whatever became of the items: finished by b as
     * done (c00) or failed (c01), or still claimed by b (c02). */
    CHECK_INT(store_begin(s), STORE_OK);
    const char *ids[] = {"c00", "c01", "c02"};
    for (int i = 0; i < 3; i++) {
        CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, ids[i], "a", 0), STORE_CONFLICT);
        CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, ids[i], "a", 1), STORE_CONFLICT);
    }
    /* ...and counted on the run, with the write they came in (the engine's flush). */
    CHECK_INT(store_run_add_claims_lost(s, run, 3), STORE_OK);
    CHECK_INT(store_commit(s), STORE_OK);
    /* b's result stands, once; nothing of a's was stored. */
    seen x = {0, ""};
    CHECK_INT(store_classifications_each(s, run, note_type, &x), STORE_OK);
    CHECK_INT(x.n, 1);
    CHECK_STR(x.type, "from_b");
    work_counts c;
    CHECK_INT(store_work_counts(s, run, PHASE_CLASSIFICATION, &c), STORE_OK);
    CHECK_INT(c.done, 1);
    CHECK_INT(c.failed, 1);
    CHECK_INT(c.claimed, 1);
    CHECK_INT(renew(s, run, PHASE_CLASSIFICATION, "b", 1000), 1); /* c02 is still b's */
    /* An item is closed once, even by its owner (a write retried after it went in). */
    CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, "c02", "b", 0), STORE_OK);
    CHECK_INT(store_work_finish(s, run, PHASE_CLASSIFICATION, "c02", "b", 0), STORE_CONFLICT);
    CHECK_INT(store_run_add_claims_lost(s, run, 2), STORE_OK); /* items dropped unstarted */
    CHECK_INT(store_run_refresh_counters(s, run), STORE_OK);
    run_record r;
    REQUIRE(store_run_get(s, run, &r) == STORE_FOUND);
    CHECK_INT(r.conversations_classified, 1);
    CHECK_INT(r.classification_failed, 1);
    /* No result table records what was lost: the refresh keeps the count. */
    CHECK_INT(r.claims_lost, 5);
    run_record_free(&r);
    store_close(s);
    free(url);
}

TEST(on_postgres_a_claim_whose_session_ended_is_claimable_before_its_lease) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t run = seeded_run(s, 2);
    REQUIRE(run > 0);
    /* A live session's claims are not claimable before their lease ends (a paused
     * process keeps its session). */
    store *live = fx_store_open(url);
    CHECK_INT(claim(live, run, "live", 100, 1000), 2);
    int claimable = -1;
    int64_t claimed = -1;
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 200, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 0);
    CHECK_INT(claim(s, run, "other", 200, 10), 0);
    /* The session ends (as when its process is killed). On PostgreSQL the server ends
     * the session as it notices; watch for it. SQLite has no sessions: lease only. */
    store_close(live);
    const char *pg = getenv("FEEDLINE_TEST_PG");
    int on_pg = pg && pg[0];
    int64_t deadline = mono_ms() + 10000;
    do {
        CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 200, &claimable, &claimed),
                  STORE_OK);
    } while (on_pg && !claimable && mono_ms() < deadline && (sleep_ms(10), 1));
    CHECK_INT(claimable, on_pg);
    CHECK_INT(claim(s, run, "other", 200, 10), on_pg ? 2 : 0);
    /* The new claims are the live session's: not claimable again. */
    CHECK_INT(store_work_probe(s, run, PHASE_CLASSIFICATION, 200, &claimable, &claimed), STORE_OK);
    CHECK_INT(claimable, 0);
    CHECK_INT(claimed, 2);
    store_close(s);
    free(url);
}

TEST(a_run_that_is_no_longer_running_asks_its_helpers_to_stop) {
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t run = seeded_run(s, 2);
    REQUIRE(run > 0);
    CHECK_INT(store_run_stop_requested(s, run), 0);
    /* failed under them (e.g. as orphaned): stop */
    CHECK_INT(store_run_finish(s, run, "failed", "gone", 2000), STORE_OK);
    CHECK_INT(store_run_stop_requested(s, run), 1);
    CHECK_INT(store_run_resume(s, run, 2001), STORE_OK);
    CHECK_INT(store_run_stop_requested(s, run), 0);
    CHECK_INT(store_run_request_stop(s, run), STORE_OK);
    CHECK_INT(store_run_stop_requested(s, run), 1);
    CHECK_INT(store_run_finish(s, run, "stopped", NULL, 2002), STORE_OK);
    CHECK_INT(store_run_stop_requested(s, run), 1);
    CHECK_INT(store_run_stop_requested(s, run + 100), 1); /* gone */
    store_close(s);
    free(url);
}

TEST(two_processes_writing_results_and_warnings_together_do_not_deadlock) {
    /* Inserting a result takes a KEY SHARE lock on the run's row (foreign key); adding
     * a warning locks the row for update. Two transactions that both did the first
     * must both get through the second. (SQLite serialises whole transactions.) */
    const char *pg = getenv("FEEDLINE_TEST_PG");
    if (!pg || !pg[0]) {
        fprintf(stdout, "    SKIP %s: PostgreSQL only (FEEDLINE_TEST_PG)\n", __func__);
        test_checked();
        return;
    }
    char *url = fx_db_url();
    store *s = fx_store_open(url);
    int64_t run = seeded_run(s, 2);
    REQUIRE(run > 0);
    int ready[2], go[2];
    REQUIRE(pipe(ready) == 0 && pipe(go) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        store *c = NULL;
        char err[256], b = 0;
        if (store_open(url, &c, err, sizeof err)) _exit(2);
        int rc = store_begin(c);
        if (rc == STORE_OK) rc = store_put_run_error_for(c, run, PHASE_CLASSIFICATION, "c01", "x", 1);
        if (write(ready[1], "r", 1) != 1 || read(go[0], &b, 1) != 1) _exit(3);
        if (rc == STORE_OK) rc = store_run_add_warning(c, run, "from the child");
        if (rc == STORE_OK) rc = store_commit(c);
        if (rc != STORE_OK) fprintf(stdout, "    child: %s\n", store_errmsg(c));
        store_close(c);
        _exit(rc == STORE_OK ? 0 : 1);
    }
    char b = 0;
    CHECK_INT(store_begin(s), STORE_OK);
    CHECK_INT(store_put_run_error_for(s, run, PHASE_CLASSIFICATION, "c00", "x", 1), STORE_OK);
    REQUIRE(read(ready[0], &b, 1) == 1); /* both hold their result rows now */
    REQUIRE(write(go[1], "g", 1) == 1);
    int rc = store_run_add_warning(s, run, "from the parent");
    if (rc == STORE_OK) rc = store_commit(s);
    else store_rollback(s);
    if (rc != STORE_OK) fprintf(stdout, "    parent: %s\n", store_errmsg(s));
    CHECK_INT(rc, STORE_OK);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    run_record r;
    REQUIRE(store_run_get(s, run, &r) == STORE_FOUND);
    CHECK(r.warnings_json && strstr(r.warnings_json, "from the child") &&
          strstr(r.warnings_json, "from the parent"));
    run_record_free(&r);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    store_close(s);
    free(url);
}

/* Crash anywhere, resume to the same result. `feedline run` (and, separately,
 * `feedline serve` driving a run) is killed with SIGKILL at points spread over every
 * phase that calls the LLM, then resumed; the outcome must equal an uninterrupted run
 * over the same conversations (counters, result rows with each conversation once,
 * themes, stories) and nothing may be billed twice beyond what the process had in
 * flight when it died.
 *
 * The kill is exact, not timed: the fake OpenAI-compatible endpoint's kill switch
 * (/_config kill_pid, kill_at_task, kill_at_request) sends SIGKILL as the N-th request
 * of a task arrives, and the kill points are the middle request of each task in the
 * reference run (from the fake's /_stats), plus the very first request. Counted per
 * task, a point stays in its phase however the run's batching (of embeddings, of
 * canonicalisations) moves the overall request ordinals. The process under test is started gated, so the switch is armed with its pid
 * before it can send anything.
 *
 * Billing: answers are written (response cache, results, usage) when they arrive, so a
 * resume asks again only what was in flight at the kill. Checked on the fake's side:
 * the requests of the killed run and its resume together exceed the reference's by at
 * most what the process can have in flight, --concurrency (embeddings and
 * canonicalisations are left out of that sum: how texts are batched into embedding
 * requests and how many new signatures are canonicalised together depend on timing
 * even without a kill). And on the database's side: the usage the run recorded is at
 * most what the fake saw, and misses at most the requests in flight plus the answers
 * received since the engine's last write: 3 x --concurrency. */
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "support/dataset.h"
#include "support/e2e.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "support/outcome.h"
#include "support/server.h"
#include "util/jsonx.h"
#include "util/mem.h"

#define CONVERSATIONS 60
#define SEED 77
#define CONCURRENCY 4
#define CONCURRENCY_S "4"
#define RUN_BODY                                                                           \
    "{\"all_conversations\": true, \"auto_create_stories\": true, \"llm\": \"openai\","    \
    " \"concurrency\": " CONCURRENCY_S "}"
#define MAX_POINTS 12

/* The chat tasks whose requests are counted exactly (see the header). */
static const char *const BILLED_TASKS[] = {"classify", "refine", "facets", "theme", "review",
                                           "story"};
#define NBILLED (sizeof BILLED_TASKS / sizeof BILLED_TASKS[0])

typedef struct fixture {
    fakeproc fake;
    char *pristine;         /* the imported conversations, never run on */
    char *ref_db;           /* the uninterrupted reference run (run 1) */
    int64_t ref_billed;     /* its requests of BILLED_TASKS */
    int64_t points[MAX_POINTS];      /* the ordinal among the task's requests */
    char *point_task[MAX_POINTS];
    int64_t point_order[MAX_POINTS]; /* where it fell in the reference run, for order */
    size_t npoints;
    e2e_env env;            /* for feedline processes */
} fixture;

static int64_t task_stat(const json_t *stats, const char *task, const char *key) {
    return jx_int(jx_obj(jx_obj(stats, "tasks"), task), key, 0);
}

static int64_t billed_requests(const json_t *stats) {
    int64_t n = 0;
    for (size_t i = 0; i < NBILLED; i++) n += task_stat(stats, BILLED_TASKS[i], "requests");
    return n;
}

static int run_cli(const fixture *f, const char *cmd, const char *db, const char *id) {
    char *out = NULL, *err = NULL;
    int rc = id ? e2e_feedline(&f->env, &out, &err, cmd, "--db", db, id, NULL)
                : e2e_feedline(&f->env, &out, &err, cmd, "--db", db, "--llm", "openai",
                               "--concurrency", CONCURRENCY_S, NULL);
    if (rc != 0) fprintf(stdout, "    feedline %s: exit %d: %s%s\n", cmd, rc, out, err);
    free(out);
    free(err);
    return rc;
}

/* Adds kill point p (the ordinal among task's requests; order: the reference's overall
 * ordinal there) once, in the reference's order. */
static void add_point(fixture *f, int64_t p, const char *task, int64_t order) {
    if (p < 1 || f->npoints == MAX_POINTS) return;
    for (size_t i = 0; i < f->npoints; i++)
        if (f->points[i] == p && !strcmp(f->point_task[i], task)) return;
    size_t i = 0;
    while (i < f->npoints && f->point_order[i] < order) i++;
    memmove(f->points + i + 1, f->points + i, (f->npoints - i) * sizeof *f->points);
    memmove(f->point_task + i + 1, f->point_task + i, (f->npoints - i) * sizeof *f->point_task);
    memmove(f->point_order + i + 1, f->point_order + i,
            (f->npoints - i) * sizeof *f->point_order);
    f->points[i] = p;
    f->point_task[i] = xstrdup(task);
    f->point_order[i] = order;
    f->npoints++;
}

static int fixture_setup(fixture *f) {
    memset(f, 0, sizeof *f);
    const char *args[] = {"--latency-ms", "5", NULL};
    if (e2e_start_fake(&f->fake, args) != 0) return -1;
    e2e_env_for(&f->env, &f->fake);
    f->pristine = ds_imported_db(CONVERSATIONS, SEED);
    if (!f->pristine) return -1;
    f->ref_db = fx_db_copy(f->pristine);
    if (run_cli(f, "run", f->ref_db, NULL) != 0) return -1;
    json_t *s = fakeproc_stats(&f->fake);
    f->ref_billed = billed_requests(s);
    /* The middle request of every task, and the first request of all. */
    add_point(f, 1, "classify", 1);
    const char *k;
    json_t *t;
    json_object_foreach(jx_obj(s, "tasks"), k, t) {
        int64_t first = jx_int(t, "first_request", 0), last = jx_int(t, "last_request", 0);
        add_point(f, (jx_int(t, "requests", 0) + 1) / 2, k, (first + last) / 2);
    }
    fprintf(stdout, "    reference: %lld requests (%lld of the counted tasks), kill points:",
            (long long)jx_int(s, "requests", 0), (long long)f->ref_billed);
    for (size_t i = 0; i < f->npoints; i++)
        fprintf(stdout, " %s #%lld (~%lld)", f->point_task[i], (long long)f->points[i],
                (long long)f->point_order[i]);
    fprintf(stdout, "\n");
    json_decref(s);
    return 0;
}

static void fixture_free(fixture *f) {
    CHECK_INT(fakeproc_stop(&f->fake), 0);
    for (size_t i = 0; i < f->npoints; i++) free(f->point_task[i]);
    e2e_env_free(&f->env);
    free(f->pristine);
    free(f->ref_db);
}

/* After a killed run (stats at the kill: killed) and its resume (stats now), checks
 * the outcome and the billing bounds. */
static void check_after_resume(const fixture *f, const char *db, const json_t *killed) {
    outcome_check_same(f->ref_db, 1, db, 1);
    json_t *s = fakeproc_stats(&f->fake);
    int64_t in_flight = jx_int(killed, "in_flight", -1);
    int64_t unanswered = jx_int(killed, "unanswered", -1);
    int64_t billed = billed_requests(s), total = jx_int(s, "requests", 0);
    int64_t recorded = outcome_int(db, "SELECT COALESCE(SUM(requests), 0) FROM run_usage"
                                       " WHERE run_id = ?", 1);
    fprintf(stdout, "    kill at request %lld (%s #%lld): %lld in flight at the fake, %lld "
                    "never answered; %+lld requests vs the reference; usage records %lld of "
                    "the %lld requests made\n",
            (long long)jx_int(killed, "at_request", 0), jx_str(killed, "task"),
            (long long)jx_int(killed, "at_task_request", 0), (long long)in_flight,
            (long long)unanswered,
            (long long)(billed - f->ref_billed), (long long)recorded, (long long)total);
    CHECK(in_flight >= 1 && in_flight <= CONCURRENCY);
    CHECK(billed >= f->ref_billed);
    /* What the process had in flight: requests sent whose answers it had not written.
     * At most --concurrency; the requests still arriving at the fake as the signal
     * landed make the fake's own in-flight figure an undercount. */
    CHECK(billed - f->ref_billed <= CONCURRENCY);
    /* Usage misses the requests in flight, and the answers received since the engine's
     * last write: those of the poll the process died in and of the non-blocking poll
     * that sends into the freed slots before the write (each at most --concurrency).
     * They were cached before their poll returned, so they are never asked again. */
    CHECK(recorded <= total);
    CHECK(total - recorded <= 3 * CONCURRENCY);
    json_decref(s);
}

/* The fake's "killed" record after the kill at point (a new reference), with
 * "unanswered": the killed process's requests the fake never answered (their
 * connections closed first), or NULL. */
static json_t *killed_record(const fixture *f, size_t point) {
    json_t *s = fakeproc_stats(&f->fake);
    json_t *k = json_deep_copy(jx_obj(s, "killed"));
    CHECK(k != NULL);
    if (k) json_object_set_new(k, "unanswered", json_integer(jx_int(s, "aborted", -1)));
    json_decref(s);
    CHECK_STR(jx_str(k, "task"), f->point_task[point]);
    CHECK_INT(jx_int(k, "at_task_request", 0), f->points[point]);
    return k;
}

/* Kills pid as kill point i is reached: the points[i]-th request of its task. */
static int arm_kill(const fixture *f, pid_t pid, size_t i) {
    char *cfg = xasprintf("{\"kill_pid\": %d, \"kill_at_task\": \"%s\", "
                          "\"kill_at_request\": %lld}",
                          (int)pid, f->point_task[i], (long long)f->points[i]);
    int rc = fakeproc_post(&f->fake, "/_reset", "{}") == 200 &&
                     fakeproc_post(&f->fake, "/_config", cfg) == 200
                 ? 0
                 : -1;
    free(cfg);
    return rc;
}

TEST(feedline_run_killed_in_every_phase_resumes_to_the_same_result_billing_once) {
    fixture f;
    REQUIRE(fixture_setup(&f) == 0);
    for (size_t i = 0; i < f.npoints; i++) {
        char *db = fx_db_copy(f.pristine);
        char *dir = fx_tmpdir(), *log = xasprintf("%s/run.log", dir);
        char *argv[] = {(char *)e2e_bin(), "run", "--db", db, "--llm", "openai",
                        "--concurrency", CONCURRENCY_S, NULL};
        int gate = -1;
        pid_t pid = fakeproc_spawn_gated(argv, f.env.e, log, &gate);
        REQUIRE(pid > 0);
        REQUIRE(arm_kill(&f, pid, i) == 0);
        REQUIRE(fakeproc_open_gate(gate) == 0);
        CHECK_INT(fakeproc_wait(pid, 120000), -1); /* killed by the signal */
        json_t *killed = killed_record(&f, i);
        CHECK_INT(run_cli(&f, "resume", db, "1"), 0);
        check_after_resume(&f, db, killed);
        json_decref(killed);
        free(log);
        fx_rmtree(dir);
        free(dir);
        free(db);
    }
    fixture_free(&f);
}

static int is_failed(const json_t *st, void *ctx) {
    (void)ctx;
    const char *s = json_string_value(json_object_get(st, "status"));
    return s && !strcmp(s, "failed");
}

TEST(feedline_serve_killed_mid_run_restarts_and_resumes_to_the_same_result_billing_once) {
    fixture f;
    REQUIRE(fixture_setup(&f) == 0);
    /* Every third kill point keeps the case short; they still span the phases. */
    for (size_t i = 0; i < f.npoints; i += 3) {
        char *db = fx_db_copy(f.pristine);
        test_server a;
        REQUIRE(ts_start(&a, db, NULL, (const char *const *)f.env.e) == 0);
        REQUIRE(arm_kill(&f, a.pid, i) == 0);
        int64_t id = ts_start_run(&a, RUN_BODY);
        REQUIRE(id == 1);
        CHECK_INT(fakeproc_wait(a.pid, 120000), -1);
        a.pid = 0;
        ts_stop(&a, 1000); /* frees the struct: the process is gone */
        json_t *killed = killed_record(&f, i);

        /* The restarted server finds the run's process gone: failed, resumable. */
        test_server b;
        REQUIRE(ts_start(&b, db, NULL, (const char *const *)f.env.e) == 0);
        int ok = 0;
        json_t *st = ts_wait_status(&b, id, 30000, is_failed, NULL, &ok);
        CHECK(ok);
        json_decref(st);
        http_resp r;
        REQUIRE(ts_post(&b, "/api/pipeline/1/resume", NULL, &r) == 0);
        CHECK_INT(r.status, 200);
        http_resp_free(&r);
        st = ts_wait_status(&b, id, 120000, ts_is_terminal, NULL, &ok);
        CHECK(ok);
        json_decref(st);
        CHECK_INT(ts_stop(&b, 60000), 0);
        check_after_resume(&f, db, killed);
        json_decref(killed);
        free(db);
    }
    fixture_free(&f);
}

/* Interrupted runs end exactly like uninterrupted ones: a run stopped in every phase
 * and resumed each time, a server killed with SIGKILL mid-run and restarted, and a
 * server shut down with SIGTERM mid-run, all finish with the same counters and the
 * same stories as a run of the same data that was never interrupted — nothing lost,
 * nothing counted twice. The server is a separate process; everything goes through
 * its HTTP API over real sockets. */
#include "test.h"

#include <stdlib.h>

#include "store/store.h"
#include "support/fixtures.h"
#include "support/server.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define RUN_TIMEOUT_MS 240000
#define ALL_STORIES "{\"all_conversations\": true, \"auto_create_stories\": true}"
#define CORPUS 1500

#define NAME(n) #n,
static const char *const COUNTERS[] = {RUN_COUNTERS(NAME) NULL};
#undef NAME

static const char *str_at(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

static int64_t int_at(const json_t *o, const char *key) {
    return json_integer_value(json_object_get(o, key));
}

static json_t *wait_terminal(const test_server *s, int64_t id) {
    int ok;
    json_t *st = ts_wait_status(s, id, RUN_TIMEOUT_MS, ts_is_terminal, NULL, &ok);
    CHECK(ok);
    return st;
}

typedef struct reference {
    json_t *status;
    char *stories;
} reference;

/* An uninterrupted run of a copy of the same data. */
static void run_reference(const char *db, reference *ref) {
    char *copy = ts_copy_db(db);
    test_server s;
    memset(ref, 0, sizeof *ref);
    if (ts_start(&s, copy, NULL, NULL) != 0) {
        CHECK(0);
        return;
    }
    int64_t id = ts_start_run(&s, ALL_STORIES);
    CHECK(id > 0);
    ref->status = wait_terminal(&s, id);
    CHECK_STR(str_at(ref->status, "status"), "completed");
    ref->stories = ts_stories_fingerprint(&s, id);
    CHECK(int_at(ref->status, "stories_created") > 0);
    CHECK_INT(ts_stop(&s, 60000), 0);
    ts_remove_db(copy);
    free(copy);
}

static void reference_free(reference *ref) {
    json_decref(ref->status);
    free(ref->stories);
}

/* The finished run equals the reference: every counter and every story. */
static void check_same_as_reference(const test_server *s, int64_t id, const reference *ref) {
    json_t *st = wait_terminal(s, id);
    CHECK_STR(str_at(st, "status"), "completed");
    for (size_t i = 0; COUNTERS[i]; i++) {
        int64_t got = int_at(st, COUNTERS[i]), want = int_at(ref->status, COUNTERS[i]);
        CHECK_INT(got, want);
        if (got != want) printf("    counter %s: %lld, reference %lld\n", COUNTERS[i],
                                (long long)got, (long long)want);
    }
    char *stories = ts_stories_fingerprint(s, id);
    CHECK_STR(stories, ref->stories);
    CHECK(strlen(stories) > 0);
    free(stories);
    json_decref(st);
}

typedef struct phase_wait {
    const char *phase;
} phase_wait;

static int running_in(const json_t *st, void *ctx) {
    const char *status = str_at(st, "status"), *phase = str_at(st, "current_phase");
    return status && phase && !strcmp(status, "running") &&
           !strcmp(phase, ((phase_wait *)ctx)->phase);
}

static void wait_running_in(const test_server *s, int64_t id, const char *phase) {
    phase_wait w = {phase};
    int ok;
    json_decref(ts_wait_status(s, id, RUN_TIMEOUT_MS, running_in, &w, &ok));
    CHECK(ok);
    if (!ok) printf("    never saw run %lld running in %s\n", (long long)id, phase);
}

/* Work of a phase done so far (to check a stop really cut it short). */
static int64_t phase_work(const json_t *st, const char *phase) {
    if (!strcmp(phase, "classification")) return int_at(st, "conversations_classified");
    if (!strcmp(phase, "embedding_generation")) return int_at(st, "embeddings_generated");
    if (!strcmp(phase, "facet_extraction")) return int_at(st, "facets_extracted");
    if (!strcmp(phase, "theme_extraction"))
        return int_at(st, "themes_extracted") + int_at(st, "themes_filtered");
    return int_at(st, "stories_created");
}

static void resume(const test_server *s, int64_t id) {
    char path[96];
    snprintf(path, sizeof path, "/api/pipeline/%lld/resume", (long long)id);
    http_resp r;
    REQUIRE(ts_post(s, path, NULL, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(str_at(r.json, "status"), "resumed");
    http_resp_free(&r);
}

TEST(stop_in_every_phase_and_resume_ends_like_an_uninterrupted_run) {
    char *db = ts_corpus_db(CORPUS, 21);
    reference ref;
    run_reference(db, &ref);
    REQUIRE(ref.status != NULL);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    int64_t id = ts_start_run(&s, ALL_STORIES);
    REQUIRE(id > 0);
    static const char *const phases[] = {"classification", "embedding_generation",
                                         "facet_extraction", "theme_extraction",
                                         "story_creation"};
    for (size_t k = 0; k < sizeof phases / sizeof phases[0]; k++) {
        if (k) resume(&s, id);
        wait_running_in(&s, id, phases[k]);
        http_resp r;
        REQUIRE(ts_post(&s, "/api/pipeline/stop", NULL, &r) == 0);
        CHECK_STR(str_at(r.json, "status"), "stopping");
        http_resp_free(&r);
        json_t *st = wait_terminal(&s, id);
        CHECK_STR(str_at(st, "status"), "stopped");
        CHECK_STR(str_at(st, "current_phase"), phases[k]);
        CHECK(str_at(st, "completed_at") != NULL);
        /* Stopped inside the phase: less of its work is done than in a full run. */
        int64_t done = phase_work(st, phases[k]), full = phase_work(ref.status, phases[k]);
        CHECK(done < full);
        if (done >= full) printf("    %s: %lld of %lld done at the stop\n", phases[k],
                                 (long long)done, (long long)full);
        json_decref(st);
    }
    resume(&s, id);
    check_same_as_reference(&s, id, &ref);
    CHECK_INT(ts_stop(&s, 60000), 0);
    reference_free(&ref);
    ts_remove_db(db);
    free(db);
}

static int is_failed(const json_t *st, void *ctx) {
    (void)ctx;
    const char *status = str_at(st, "status");
    return status && !strcmp(status, "failed");
}

TEST(kill_9_mid_run_then_restart_and_resume_loses_and_doubles_nothing) {
    char *db = ts_corpus_db(CORPUS, 22);
    reference ref;
    run_reference(db, &ref);
    REQUIRE(ref.status != NULL);
    test_server a;
    REQUIRE(ts_start(&a, db, NULL, NULL) == 0);
    int64_t id = ts_start_run(&a, ALL_STORIES);
    REQUIRE(id > 0);
    wait_running_in(&a, id, "theme_extraction");
    ts_kill9(&a);
    ts_stop(&a, 1000); /* only frees the struct: the process is gone */

    /* The restarted server sees the run's process is gone and marks it failed and
     * resumable (within seconds, not the 15 s heartbeat staleness). */
    test_server b;
    REQUIRE(ts_start(&b, db, NULL, NULL) == 0);
    int ok;
    json_t *st = ts_wait_status(&b, id, 30000, is_failed, NULL, &ok);
    CHECK(ok);
    CHECK(str_at(st, "error_message") && strstr(str_at(st, "error_message"), "esume"));
    CHECK_STR(str_at(st, "current_phase"), "theme_extraction");
    json_decref(st);
    http_resp r;
    REQUIRE(ts_get(&b, "/api/pipeline/active", &r) == 0);
    CHECK(json_is_false(json_object_get(r.json, "active")));
    http_resp_free(&r);
    resume(&b, id);
    check_same_as_reference(&b, id, &ref);
    CHECK_INT(ts_stop(&b, 60000), 0);
    reference_free(&ref);
    ts_remove_db(db);
    free(db);
}

TEST(sigterm_stops_the_run_at_a_checkpoint_exits_0_and_the_run_resumes) {
    char *db = ts_corpus_db(CORPUS, 23);
    reference ref;
    run_reference(db, &ref);
    REQUIRE(ref.status != NULL);
    test_server a;
    REQUIRE(ts_start(&a, db, NULL, NULL) == 0);
    int64_t id = ts_start_run(&a, ALL_STORIES);
    REQUIRE(id > 0);
    wait_running_in(&a, id, "facet_extraction");
    int64_t t0 = mono_ms();
    CHECK_INT(ts_stop(&a, 60000), 0); /* graceful: exit status 0, nothing leaked */
    CHECK(mono_ms() - t0 < 10000);
    /* The database says stopped (not failed), in the phase it was in. */
    store *st = fx_store_open(db);
    run_record rec;
    REQUIRE(store_run_get(st, id, &rec) == STORE_FOUND);
    CHECK_STR(rec.status, "stopped");
    CHECK_STR(rec.current_phase, "facet_extraction");
    CHECK(rec.error_message == NULL);
    CHECK(rec.facets_extracted < int_at(ref.status, "facets_extracted"));
    run_record_free(&rec);
    store_close(st);
    test_server b;
    REQUIRE(ts_start(&b, db, NULL, NULL) == 0);
    resume(&b, id);
    check_same_as_reference(&b, id, &ref);
    CHECK_INT(ts_stop(&b, 60000), 0);
    reference_free(&ref);
    ts_remove_db(db);
    free(db);
}

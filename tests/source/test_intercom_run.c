/* The run's fetch step through the pipeline library: a stop requested in the database
 * (as `feedline stop` or the API would) during the fetch stops the run quickly; the
 * resumed run fetches the rest (idempotently) and completes over exactly the window. */
#include "test.h"

#include <pthread.h>
#include <stdlib.h>

#include "pipeline/pipeline.h"
#include "source/intercom.h"
#include "support/fixtures.h"
#include "support/intercom_fake.h"
#include "util/util.h"

#define SEED 3
#define COUNT 250

typedef struct stopper {
    const char *db;
    ifake *fake;
    int64_t requested_at_ms;
    int ok;
} stopper;

/* Waits until the fake has served some detail requests of the run's fetch, then asks
 * the active run to stop through its own database connection. */
static void *stop_when_fetching(void *arg) {
    stopper *s = arg;
    int64_t deadline = mono_ms() + 20000;
    while (mono_ms() < deadline && ifake_stat(s->fake, "detail_requests") < 20) sleep_ms(10);
    store *st = fx_store_open(s->db);
    int64_t id = 0;
    char status[16];
    if (store_run_active(st, &id, status) == STORE_FOUND && store_run_request_stop(st, id) == STORE_OK) {
        s->requested_at_ms = mono_ms();
        s->ok = 1;
    }
    store_close(st);
    return NULL;
}

static vocab *load_vocab(void) {
    char *p = fx_path("data/theme_vocabulary.json"), err[256];
    vocab *v = vocab_load(p, err, sizeof err);
    free(p);
    return v;
}

TEST(a_stop_during_the_runs_fetch_stops_the_run_and_resume_completes_it) {
    int64_t base = wall_unix();
    char n[16], b[32];
    snprintf(n, sizeof n, "%d", COUNT);
    snprintf(b, sizeof b, "%lld", (long long)base);
    const char *args[] = {"--count", n, "--seed", "3", "--base-time", b, "--days", "30",
                          "--latency-ms", "30", NULL};
    ifake fake;
    REQUIRE(ifake_start(&fake, args) == 0);
    ifake_set set;
    REQUIRE(ifake_set_build(&set, COUNT, SEED, base, 30) == 0);
    setenv("INTERCOM_ACCESS_TOKEN", "test-token", 1);
    setenv("INTERCOM_BASE_URL", fake.base_url, 1);
    char *db = fx_db_url();
    vocab *v = load_vocab();
    REQUIRE(v != NULL);
    run_env env = {0};
    env.db_url = db;
    env.vocab = v;
    env.owner = "test";
    run_params p = {0};
    p.concurrency = 2; /* slow on purpose: 30 ms x ~380 details / 2 */
    p.auto_create_stories = 1;
    p.llm = "local";

    stopper s = {db, &fake, 0, 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, stop_when_fetching, &s) == 0);
    int64_t id = 0;
    char err[512] = "";
    int rc = pipeline_start(&env, &p, &id, err, sizeof err);
    int64_t returned_at = mono_ms();
    pthread_join(th, NULL);
    REQUIRE(s.ok);
    CHECK_INT(rc, 1);
    CHECK(returned_at - s.requested_at_ms < 1500); /* the fetch polls the stop flag */
    store *st = fx_store_open(db);
    run_record r;
    REQUIRE(store_run_get(st, id, &r) == STORE_FOUND);
    CHECK_STR(r.status, "stopped");
    run_record_free(&r);
    int64_t passing = 0;
    for (size_t i = 0; i < set.n; i++) passing += set.v[i].verdict == QUALITY_OK;
    int64_t stored = store_conv_count(st);
    CHECK(stored > 0 && stored < passing);
    work_counts wc;
    CHECK_INT(store_work_counts(st, id, PHASE_CLASSIFICATION, &wc), STORE_OK);
    CHECK_INT(wc.pending + wc.done + wc.failed, 0); /* nothing selected yet */

    rc = pipeline_resume(&env, id, err, sizeof err);
    CHECK_INT(rc, 0);
    REQUIRE(store_run_get(st, id, &r) == STORE_FOUND);
    CHECK_STR(r.status, "completed");
    CHECK_INT(r.conversations_fetched, passing);
    CHECK_INT(r.conversations_filtered, COUNT - passing);
    CHECK_INT(r.conversations_classified + r.classification_failed, passing);
    run_record_free(&r);
    CHECK_INT(store_conv_count(st), passing);
    /* the resumed fetch went over the same window again: stored ones were unchanged */
    char *last = NULL;
    REQUIRE(store_sync_get(st, INTERCOM_LAST_FETCH_KEY, &last) == STORE_FOUND);
    json_t *j = json_loads(last, 0, NULL);
    CHECK_INT(jx_int(j, "unchanged", -1), stored);
    CHECK_INT(jx_int(j, "inserted", -1), passing - stored);
    json_decref(j);
    free(last);
    store_close(st);
    vocab_free(v);
    free(db);
    ifake_set_free(&set);
    ifake_stop(&fake);
}

TEST(without_a_token_the_run_uses_what_is_stored_and_sends_nothing) {
    const char *args[] = {"--count", "20", NULL};
    ifake fake;
    REQUIRE(ifake_start(&fake, args) == 0);
    unsetenv("INTERCOM_ACCESS_TOKEN");
    setenv("INTERCOM_BASE_URL", fake.base_url, 1);
    char *db = fx_db_url();
    vocab *v = load_vocab();
    REQUIRE(v != NULL);
    run_env env = {0};
    env.db_url = db;
    env.vocab = v;
    env.owner = "test";
    run_params p = {0};
    p.concurrency = 2;
    p.llm = "local";
    int64_t id = 0;
    char err[512] = "";
    CHECK_INT(pipeline_start(&env, &p, &id, err, sizeof err), 0);
    CHECK_INT(ifake_stat(&fake, "requests"), 1); /* only the /_stats request itself */
    vocab_free(v);
    free(db);
    ifake_stop(&fake);
}

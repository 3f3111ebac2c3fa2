/* Run lifecycle through the HTTP API, over real sockets, with the server as a separate
 * process: runs to completion and everything they produce (status, history, stories,
 * themes), dry runs and previews, the concurrent-start race (one process and two),
 * a stopping run blocking a start, create-stories, resume errors, event streams, and
 * the CLI working on the same database. Stop/resume/crash equivalence is in
 * test_api_resume.c. */
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/e2e.h"
#include "support/fixtures.h"
#include "support/server.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define RUN_TIMEOUT_MS 180000
#define ALL_STORIES "{\"all_conversations\": true, \"auto_create_stories\": true}"

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

static json_t *get_json(const test_server *s, const char *path, long expect) {
    http_resp r;
    ts_get(s, path, &r);
    CHECK_INT(r.status, expect);
    if (r.status != expect) printf("    GET %s -> %ld %s\n", path, r.status, r.body);
    json_t *j = json_incref(r.json);
    http_resp_free(&r);
    return j;
}

static json_t *post_json(const test_server *s, const char *path, const char *body, long expect) {
    http_resp r;
    ts_post(s, path, body, &r);
    CHECK_INT(r.status, expect);
    if (r.status != expect) printf("    POST %s -> %ld %s\n", path, r.status, r.body);
    json_t *j = json_incref(r.json);
    http_resp_free(&r);
    return j;
}

static void stop_server(test_server *s) { CHECK_INT(ts_stop(s, 60000), 0); }

/* ------------------------------------------------------------------ a full run */

TEST(run_completes_and_every_read_route_shows_its_results) {
    char *db = ts_corpus_db(0, 0);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    http_resp r;
    REQUIRE(ts_post(&s, "/api/pipeline/run", ALL_STORIES, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(str_at(r.json, "status"), "started");
    CHECK_STR(str_at(r.json, "message"),
              "Pipeline run started. Processing all stored conversations. Stories will be "
              "created automatically after theme extraction.");
    int64_t id = int_at(r.json, "run_id");
    http_resp_free(&r);
    REQUIRE(id > 0);
    json_t *st = wait_terminal(&s, id);
    CHECK_STR(str_at(st, "status"), "completed");
    CHECK_STR(str_at(st, "current_phase"), "completed");
    CHECK(json_is_false(json_object_get(st, "dry_run")));
    CHECK(int_at(st, "conversations_classified") > 300);
    CHECK_INT(int_at(st, "conversations_stored"), int_at(st, "conversations_classified"));
    /* The original never reported facets: they are here and add up. */
    CHECK(int_at(st, "facets_extracted") > 0);
    CHECK_INT(int_at(st, "facets_extracted") + int_at(st, "facets_failed"),
              int_at(st, "embeddings_generated") + int_at(st, "embeddings_failed"));
    CHECK(int_at(st, "themes_extracted") > 0);
    CHECK(int_at(st, "themes_new") > 0);
    CHECK(int_at(st, "stories_created") > 0);
    CHECK(json_is_true(json_object_get(st, "stories_ready")));
    CHECK(json_is_array(json_object_get(st, "errors")));
    CHECK(json_is_array(json_object_get(st, "warnings")));
    CHECK(json_is_number(json_object_get(st, "duration_seconds")));
    CHECK(str_at(st, "completed_at") != NULL);

    /* A second run over the same conversations finds no new signature. */
    int64_t id2 = ts_start_run(&s, "{\"all_conversations\": true}");
    REQUIRE(id2 > id);
    json_t *st2 = wait_terminal(&s, id2);
    CHECK_STR(str_at(st2, "status"), "completed");
    CHECK_INT(int_at(st2, "themes_extracted"), int_at(st, "themes_extracted"));
    CHECK_INT(int_at(st2, "themes_new"), 0);
    CHECK_INT(int_at(st2, "stories_created"), 0); /* auto_create_stories defaults to false */

    json_t *hist = get_json(&s, "/api/pipeline/history", 200);
    CHECK_INT(json_array_size(hist), 2);
    CHECK_INT(int_at(json_array_get(hist, 0), "id"), id2); /* newest first */
    CHECK_INT(int_at(json_array_get(hist, 1), "facets_extracted"), int_at(st, "facets_extracted"));
    CHECK(json_object_get(json_array_get(hist, 1), "error_count") != NULL);
    json_decref(hist);
    hist = get_json(&s, "/api/pipeline/history?limit=1&offset=1", 200);
    CHECK_INT(json_array_size(hist), 1);
    CHECK_INT(int_at(json_array_get(hist, 0), "id"), id);
    json_decref(hist);

    /* Stories of the run, then one story with its evidence. */
    char path[128];
    snprintf(path, sizeof path, "/api/stories?run_id=%lld&limit=200", (long long)id);
    json_t *list = get_json(&s, path, 200);
    json_t *stories = json_object_get(list, "stories");
    CHECK_INT(int_at(list, "total"), int_at(st, "stories_created"));
    CHECK_INT(json_array_size(stories), int_at(st, "stories_created"));
    json_t *first = json_array_get(stories, 0);
    REQUIRE(first != NULL);
    CHECK(str_at(first, "created_at") && strchr(str_at(first, "created_at"), 'T'));
    int64_t sid = int_at(first, "id");
    int64_t nconv = int_at(first, "conversation_count");
    CHECK_INT(json_array_size(json_object_get(first, "conversation_ids")), nconv);
    snprintf(path, sizeof path, "/api/stories/%lld", (long long)sid);
    json_t *story = get_json(&s, path, 200);
    json_t *evidence = json_object_get(story, "evidence");
    CHECK_INT(json_array_size(evidence), nconv);
    json_t *ev = json_array_get(evidence, 0);
    CHECK(str_at(ev, "conversation_id") != NULL);
    CHECK(str_at(ev, "digest") && strlen(str_at(ev, "digest")) > 0);
    CHECK(str_at(ev, "source_url") != NULL);
    CHECK(str_at(ev, "user_intent") && strlen(str_at(ev, "user_intent")) > 0);
    CHECK(json_is_array(json_object_get(ev, "key_excerpts")));
    CHECK(str_at(ev, "diagnostic_summary") != NULL);
    CHECK_STR(str_at(ev, "signature"), str_at(story, "signature") ? str_at(ev, "signature") : "");
    /* A state change the route refuses (no state, an unknown one) leaves the story as
     * it was. */
    snprintf(path, sizeof path, "/api/stories/%lld/state", (long long)sid);
    json_decref(post_json(&s, path, "{\"reason\": \"no state\"}", 422));
    json_decref(post_json(&s, path, "{\"state\": \"gone\"}", 422));
    snprintf(path, sizeof path, "/api/stories/%lld", (long long)sid);
    json_t *again = get_json(&s, path, 200);
    CHECK_STR(str_at(again, "status"), str_at(story, "status"));
    CHECK_INT(json_equal(again, story), 1);
    json_decref(again);
    json_decref(story);
    snprintf(path, sizeof path, "/api/stories?run_id=%lld&limit=2&offset=1", (long long)id);
    json_t *page = get_json(&s, path, 200);
    CHECK_INT(json_array_size(json_object_get(page, "stories")), 2);
    CHECK_INT(int_at(json_array_get(json_object_get(page, "stories"), 0), "id"),
              int_at(json_array_get(stories, 1), "id"));
    json_decref(page);
    /* Filters: by area, by signature, by creation time. */
    const char *area = str_at(first, "product_area"), *sig = str_at(first, "signature");
    snprintf(path, sizeof path, "/api/stories?run_id=%lld&product_area=%s&limit=200", (long long)id, area);
    json_t *by_area = get_json(&s, path, 200);
    size_t k;
    json_t *one;
    json_array_foreach(json_object_get(by_area, "stories"), k, one) CHECK_STR(str_at(one, "product_area"), area);
    CHECK(int_at(by_area, "total") >= 1);
    json_decref(by_area);
    snprintf(path, sizeof path, "/api/stories?signature=%s&limit=200", sig);
    json_t *by_sig = get_json(&s, path, 200);
    json_array_foreach(json_object_get(by_sig, "stories"), k, one) CHECK_STR(str_at(one, "signature"), sig);
    CHECK(int_at(by_sig, "total") >= 1);
    json_decref(by_sig);
    json_t *future = get_json(&s, "/api/stories?created_since=2099-01-01T00:00:00Z", 200);
    CHECK_INT(int_at(future, "total"), 0);
    json_decref(future);
    json_t *past = get_json(&s, "/api/stories?created_since=2020-01-01", 200);
    CHECK_INT(int_at(past, "total"), int_at(list, "total"));
    json_decref(past);
    json_decref(list);

    /* Themes: aggregates over both runs count each conversation once. */
    json_t *themes = get_json(&s, "/api/themes?limit=5", 200);
    json_t *top = json_array_get(json_object_get(themes, "themes"), 0);
    REQUIRE(top != NULL);
    CHECK(int_at(themes, "total") > 5);
    CHECK_INT(int_at(top, "run_count"), 2);
    snprintf(path, sizeof path, "/api/themes/%s", str_at(top, "issue_signature"));
    json_t *detail = get_json(&s, path, 200);
    CHECK_INT(json_array_size(json_object_get(detail, "conversation_ids")),
              int_at(top, "occurrence_count"));
    json_t *conv = json_array_get(json_object_get(detail, "conversations"), 0);
    CHECK(conv && str_at(conv, "excerpt") && strlen(str_at(conv, "excerpt")) > 0);
    CHECK(conv && str_at(conv, "created_at") && strchr(str_at(conv, "created_at"), 'T'));
    CHECK_STR(str_at(json_object_get(detail, "theme"), "issue_signature"),
              str_at(top, "issue_signature"));
    json_decref(detail);
    snprintf(path, sizeof path, "/api/themes?run_id=%lld&min_occurrences=3&limit=200", (long long)id);
    json_t *filtered = get_json(&s, path, 200);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(filtered, "themes"), i, t) CHECK(int_at(t, "occurrence_count") >= 3);
    CHECK(int_at(filtered, "total") < int_at(themes, "total"));
    json_decref(filtered);
    int64_t themes_total = int_at(themes, "total");
    json_decref(themes);
    /* Every theme, largest first; seen once; seen fewer than 3 times (newest first). */
    json_t *all = get_json(&s, "/api/themes/all?limit=200", 200);
    CHECK_INT(int_at(all, "total"), themes_total);
    int64_t prev = INT64_MAX;
    json_array_foreach(json_object_get(all, "themes"), i, t) {
        CHECK(int_at(t, "occurrence_count") <= prev);
        prev = int_at(t, "occurrence_count");
    }
    json_decref(all);
    json_t *single = get_json(&s, "/api/themes/singletons?days=365", 200);
    json_array_foreach(json_object_get(single, "themes"), i, t) CHECK_INT(int_at(t, "occurrence_count"), 1);
    CHECK_INT(int_at(single, "threshold"), 2);
    json_decref(single);
    json_t *orphans = get_json(&s, "/api/themes/orphans?threshold=3&days=365", 200);
    CHECK(int_at(orphans, "total") > 0);
    const char *last = "9999";
    json_array_foreach(json_object_get(orphans, "themes"), i, t) {
        CHECK(int_at(t, "occurrence_count") < 3);
        CHECK(strcmp(str_at(t, "last_seen_at"), last) <= 0);
        last = str_at(t, "last_seen_at");
    }
    json_decref(orphans);
    /* The sample's conversations are from January 2026: nothing in the last week. */
    json_t *trending = get_json(&s, "/api/themes/trending?days=7", 200);
    CHECK_INT(int_at(trending, "days"), 7);
    CHECK_INT(int_at(trending, "min_occurrences"), 2);
    CHECK_INT(int_at(trending, "total"), 0);
    json_decref(trending);

    json_t *active = get_json(&s, "/api/pipeline/active", 200);
    CHECK(json_is_false(json_object_get(active, "active")));
    json_decref(active);
    json_decref(st);
    json_decref(st2);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

TEST(theme_routes_filter_by_recency_and_size) {
    char *db = ts_corpus_db(600, 3); /* conversations from the 30 days before now */
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    int64_t id = ts_start_run(&s, "{\"days\": 90}");
    REQUIRE(id > 0);
    json_t *st = wait_terminal(&s, id);
    CHECK_STR(str_at(st, "status"), "completed");
    CHECK(int_at(st, "themes_extracted") > 0);
    json_decref(st);
    json_t *month = get_json(&s, "/api/themes/trending?days=30&min_occurrences=2&limit=100", 200);
    CHECK(int_at(month, "total") > 0);
    size_t i;
    json_t *t;
    int64_t since = wall_unix() - 30 * 86400;
    json_array_foreach(json_object_get(month, "themes"), i, t) {
        CHECK(int_at(t, "occurrence_count") >= 2);
        int64_t seen = 0;
        CHECK(iso8601_parse(str_at(t, "last_seen_at"), &seen) == 0 && seen >= since);
    }
    json_t *day = get_json(&s, "/api/themes/trending?days=1&min_occurrences=2&limit=100", 200);
    CHECK(int_at(day, "total") < int_at(month, "total"));
    json_t *listed = get_json(&s, "/api/themes?days=1&limit=200", 200);
    json_array_foreach(json_object_get(listed, "themes"), i, t) {
        int64_t seen = 0;
        CHECK(iso8601_parse(str_at(t, "last_seen_at"), &seen) == 0 && seen >= wall_unix() - 86400 - 5);
    }
    json_decref(listed);
    json_decref(day);
    json_decref(month);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

TEST(dry_run_keeps_nothing_but_a_preview) {
    char *db = ts_corpus_db(0, 0);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    int64_t id = ts_start_run(&s, "{\"all_conversations\": true, \"dry_run\": true}");
    REQUIRE(id > 0);
    /* Whatever the moment: before the preview exists it is a 404 that says so; once it
     * is there, the run has finished. */
    char path[96];
    snprintf(path, sizeof path, "/api/pipeline/status/%lld/preview", (long long)id);
    http_resp r;
    REQUIRE(ts_get(&s, path, &r) == 0);
    if (r.status == 404) CHECK(strstr(str_at(r.json, "detail"), "not found") != NULL);
    else CHECK_INT(r.status, 200);
    http_resp_free(&r);
    json_t *st = wait_terminal(&s, id);
    CHECK_STR(str_at(st, "status"), "completed");
    CHECK(json_is_true(json_object_get(st, "dry_run")));
    CHECK_INT(int_at(st, "conversations_stored"), 0);
    CHECK(int_at(st, "conversations_classified") > 300);
    CHECK(int_at(st, "themes_extracted") > 0);
    CHECK(json_is_false(json_object_get(st, "stories_ready")));
    json_t *pv = get_json(&s, path, 200);
    CHECK_INT(int_at(pv, "run_id"), id);
    CHECK_INT(int_at(pv, "total_classified"), int_at(st, "conversations_classified"));
    json_t *samples = json_object_get(pv, "samples");
    CHECK(json_array_size(samples) > 0 && json_array_size(samples) <= 10);
    CHECK(json_array_size(json_object_get(pv, "top_themes")) <= 5);
    CHECK(json_is_object(json_object_get(json_object_get(pv, "classification_breakdown"), "by_type")));
    json_decref(pv);
    /* Nothing was stored: no stories, no themes; create-stories refuses. */
    json_t *themes = get_json(&s, "/api/themes", 200);
    CHECK_INT(int_at(themes, "total"), 0);
    json_decref(themes);
    snprintf(path, sizeof path, "/api/pipeline/%lld/create-stories", (long long)id);
    json_t *refused = post_json(&s, path, NULL, 400);
    char want[160];
    snprintf(want, sizeof want,
             "Pipeline run %lld is not ready for story creation (themes not extracted)",
             (long long)id);
    CHECK_STR(str_at(refused, "detail"), want);
    json_decref(refused);

    /* A real run has no preview. */
    int64_t real = ts_start_run(&s, "{\"all_conversations\": true}");
    json_decref(wait_terminal(&s, real));
    snprintf(path, sizeof path, "/api/pipeline/status/%lld/preview", (long long)real);
    json_t *np = get_json(&s, path, 404);
    CHECK(strstr(str_at(np, "detail"), "not a dry run") != NULL);
    json_decref(np);
    json_decref(st);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

/* ------------------------------------------------------------------ the start race */

typedef struct racer {
    const char *base;
    pthread_barrier_t *barrier;
    long status;
    int64_t run_id;
    char detail[200];
} racer;

static void *race_start(void *arg) {
    racer *rc = arg;
    char *url = xasprintf("%s/api/pipeline/run", rc->base);
    const char *headers[] = {"Content-Type: application/json", NULL};
    pthread_barrier_wait(rc->barrier);
    http_resp r;
    http_do("POST", url, "{\"all_conversations\": true}", headers, &r);
    rc->status = r.status;
    rc->run_id = json_integer_value(json_object_get(r.json, "run_id"));
    const char *d = json_string_value(json_object_get(r.json, "detail"));
    snprintf(rc->detail, sizeof rc->detail, "%s", d ? d : "");
    http_resp_free(&r);
    free(url);
    return NULL;
}

/* Two POST /run at the same instant against base_a and base_b: exactly one wins. */
static int64_t race_once(const char *base_a, const char *base_b) {
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    racer a = {base_a, &barrier, 0, 0, ""}, b = {base_b, &barrier, 0, 0, ""};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, race_start, &a);
    pthread_create(&tb, NULL, race_start, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&barrier);
    racer *win = a.status == 200 ? &a : &b, *lose = a.status == 200 ? &b : &a;
    CHECK_INT(win->status, 200);
    CHECK_INT(lose->status, 409);
    char want[160];
    snprintf(want, sizeof want, "Pipeline run %lld is already in progress. Wait for it to complete.",
             (long long)win->run_id);
    CHECK_STR(lose->detail, want);
    return win->status == 200 ? win->run_id : -1;
}

TEST(two_concurrent_starts_exactly_one_wins) {
    char *db = ts_corpus_db(0, 0);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    for (int round = 0; round < 3; round++) {
        int64_t id = race_once(s.base, s.base);
        REQUIRE(id > 0);
        json_t *st = wait_terminal(&s, id);
        CHECK_STR(str_at(st, "status"), "completed");
        json_decref(st);
    }
    json_t *hist = get_json(&s, "/api/pipeline/history", 200);
    CHECK_INT(json_array_size(hist), 3); /* no loser ever created a run */
    json_decref(hist);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

TEST(two_servers_on_one_database_share_the_run_lifecycle) {
    char *db = ts_corpus_db(1500, 7);
    test_server a, b;
    REQUIRE(ts_start(&a, db, NULL, NULL) == 0);
    REQUIRE(ts_start(&b, db, NULL, NULL) == 0);
    int64_t id = race_once(a.base, b.base);
    REQUIRE(id > 0);
    /* Both see the same active run, whichever drives it. */
    json_t *act_a = get_json(&a, "/api/pipeline/active", 200);
    json_t *act_b = get_json(&b, "/api/pipeline/active", 200);
    CHECK_INT(int_at(act_a, "run_id"), id);
    CHECK_INT(int_at(act_b, "run_id"), id);
    json_decref(act_a);
    json_decref(act_b);
    /* Stop through both: one of them is not the driver; the run stops anyway (the
     * driver polls the database), and is stopped, not failed. */
    json_t *stop = post_json(&b, "/api/pipeline/stop", NULL, 200);
    CHECK_STR(str_at(stop, "status"), "stopping");
    CHECK_INT(int_at(stop, "run_id"), id);
    json_decref(stop);
    json_t *st = wait_terminal(&a, id);
    CHECK_STR(str_at(st, "status"), "stopped");
    json_decref(st);
    /* Resume through the other server: it drives the rest to completion. */
    char path[96];
    snprintf(path, sizeof path, "/api/pipeline/%lld/resume", (long long)id);
    json_t *res = post_json(&a, path, NULL, 200);
    CHECK_STR(str_at(res, "status"), "resumed");
    json_decref(res);
    /* While it runs, neither server starts another. */
    json_t *busy = post_json(&b, "/api/pipeline/run", "{}", 409);
    json_decref(busy);
    st = wait_terminal(&b, id);
    CHECK_STR(str_at(st, "status"), "completed");
    json_decref(st);
    stop_server(&a);
    stop_server(&b);
    ts_remove_db(db);
    free(db);
}

/* ------------------------------------------------------------------ stopping */

static int running_in_stories(const json_t *st, void *ctx) {
    (void)ctx;
    const char *status = str_at(st, "status"), *phase = str_at(st, "current_phase");
    return status && phase && !strcmp(status, "running") && !strcmp(phase, "story_creation");
}

/* While stopping: /active says so, a start is refused, a second stop finds nothing. */
static void check_while_stopping(const test_server *s, int64_t id) {
    json_t *active = get_json(s, "/api/pipeline/active", 200);
    CHECK(json_is_true(json_object_get(active, "active")));
    CHECK_INT(int_at(active, "run_id"), id);
    json_decref(active);
    json_t *busy = post_json(s, "/api/pipeline/run", "{}", 409);
    char want[160];
    snprintf(want, sizeof want, "Pipeline run %lld is already in progress. Wait for it to complete.",
             (long long)id);
    CHECK_STR(str_at(busy, "detail"), want);
    json_decref(busy);
    json_t *again = post_json(s, "/api/pipeline/stop", NULL, 200);
    CHECK_STR(str_at(again, "status"), "not_running");
    json_decref(again);
}

TEST(a_stopping_run_blocks_a_new_start_and_active_reports_it) {
    char *db = ts_corpus_db(1500, 11);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    /* A finished run without stories, to ask for its stories while another runs. */
    int64_t small = ts_start_run(&s, "{\"all_conversations\": true, \"max_conversations\": 300}");
    REQUIRE(small > 0);
    json_t *sm = wait_terminal(&s, small);
    CHECK(json_is_true(json_object_get(sm, "stories_ready")));
    json_decref(sm);
    int64_t id = ts_start_run(&s, ALL_STORIES);
    REQUIRE(id > 0);
    char busy_msg[160];
    snprintf(busy_msg, sizeof busy_msg,
             "Pipeline run %lld is already in progress. Wait for it to complete.", (long long)id);
    char small_path[96];
    snprintf(small_path, sizeof small_path, "/api/pipeline/%lld/create-stories", (long long)small);
    json_t *refused = post_json(&s, small_path, NULL, 409);
    CHECK_STR(str_at(refused, "detail"), busy_msg);
    json_decref(refused);
    /* The story phase honours a stop between its steps, and clustering takes seconds,
     * so a stop sent during it leaves the run "stopping" long enough to look at. A stop
     * that lands before the phase's first check stops it at once: then resume and try
     * again. */
    int observed = 0;
    char path[96];
    for (int attempt = 0; attempt < 4 && !observed; attempt++) {
        if (attempt) {
            snprintf(path, sizeof path, "/api/pipeline/%lld/resume", (long long)id);
            json_decref(post_json(&s, path, NULL, 200));
        }
        int ok;
        json_decref(ts_wait_status(&s, id, RUN_TIMEOUT_MS, running_in_stories, NULL, &ok));
        REQUIRE(ok);
        json_t *stop = post_json(&s, "/api/pipeline/stop", NULL, 200);
        CHECK_STR(str_at(stop, "status"), "stopping");
        char want[160];
        snprintf(want, sizeof want,
                 "Stop signal sent to pipeline run %lld. In-flight tasks will complete before "
                 "stopping.", (long long)id);
        CHECK_STR(str_at(stop, "message"), want);
        json_decref(stop);
        json_t *active = get_json(&s, "/api/pipeline/active", 200);
        observed = str_at(active, "status") && !strcmp(str_at(active, "status"), "stopping");
        json_decref(active);
        if (observed) check_while_stopping(&s, id);
        json_t *st = wait_terminal(&s, id);
        CHECK_STR(str_at(st, "status"), "stopped");
        CHECK_STR(str_at(st, "current_phase"), "story_creation");
        CHECK_INT(int_at(st, "stories_created"), 0);
        json_decref(st);
    }
    CHECK(observed);
    /* Once stopped, a new run may start; while it runs, the stopped one cannot resume. */
    int64_t next = ts_start_run(&s, "{\"all_conversations\": true}");
    CHECK(next > id);
    snprintf(path, sizeof path, "/api/pipeline/%lld/resume", (long long)id);
    json_t *no_resume = post_json(&s, path, NULL, 409);
    snprintf(busy_msg, sizeof busy_msg,
             "Pipeline run %lld is already in progress. Wait for it to complete.", (long long)next);
    CHECK_STR(str_at(no_resume, "detail"), busy_msg);
    json_decref(no_resume);
    json_decref(post_json(&s, "/api/pipeline/stop", NULL, 200));
    json_t *nx = wait_terminal(&s, next);
    CHECK_STR(str_at(nx, "status"), "stopped");
    json_decref(nx);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

/* ------------------------------------------------------------------ create-stories */

TEST(create_stories_runs_in_the_background_once) {
    char *db = ts_corpus_db(0, 0);
    char *ref_db = ts_copy_db(db);
    test_server s, ref;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    REQUIRE(ts_start(&ref, ref_db, NULL, NULL) == 0);
    int64_t ref_id = ts_start_run(&ref, ALL_STORIES);
    int64_t id = ts_start_run(&s, "{\"all_conversations\": true}");
    REQUIRE(id > 0 && ref_id > 0);
    char path[96];
    snprintf(path, sizeof path, "/api/pipeline/%lld/create-stories", (long long)id);
    /* While the run is active: not completed. */
    http_resp r;
    REQUIRE(ts_post(&s, path, NULL, &r) == 0);
    if (r.status == 400) /* still running */
        CHECK(strstr(str_at(r.json, "detail"), "is not completed (status: running)") != NULL);
    else /* it had finished already */
        CHECK_INT(r.status, 202);
    int started_early = r.status == 202;
    http_resp_free(&r);
    json_t *st = wait_terminal(&s, id);
    CHECK_STR(str_at(st, "status"), "completed");
    CHECK(json_is_true(json_object_get(st, "stories_ready")));
    json_decref(st);
    if (!started_early) {
        json_t *acc = post_json(&s, path, NULL, 202);
        CHECK_STR(str_at(acc, "status"), "started");
        CHECK_INT(int_at(acc, "run_id"), id);
        json_decref(acc);
    }
    /* Done in the background: poll until the stories are there. */
    int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
    json_t *done = NULL;
    while (mono_ms() < deadline) {
        json_decref(done);
        snprintf(path, sizeof path, "/api/pipeline/status/%lld", (long long)id);
        done = get_json(&s, path, 200);
        if (int_at(done, "stories_created") > 0) break;
        sleep_ms(20);
    }
    CHECK(int_at(done, "stories_created") > 0);
    /* Exactly the stories an automatic run creates. */
    json_t *ref_st = wait_terminal(&ref, ref_id);
    CHECK_INT(int_at(done, "stories_created"), int_at(ref_st, "stories_created"));
    CHECK_INT(int_at(done, "orphans_created"), int_at(ref_st, "orphans_created"));
    char *fa = ts_stories_fingerprint(&s, id), *fb = ts_stories_fingerprint(&ref, ref_id);
    CHECK_STR(fa, fb);
    free(fa);
    free(fb);
    json_decref(ref_st);
    /* Idempotent: a second call is refused. */
    snprintf(path, sizeof path, "/api/pipeline/%lld/create-stories", (long long)id);
    json_t *again = post_json(&s, path, NULL, 400);
    char want[160];
    snprintf(want, sizeof want, "Stories already created for pipeline run %lld (%lld stories)",
             (long long)id, (long long)int_at(done, "stories_created"));
    CHECK_STR(str_at(again, "detail"), want);
    json_decref(again);
    json_decref(done);
    stop_server(&s);
    stop_server(&ref);
    ts_remove_db(db);
    ts_remove_db(ref_db);
    free(db);
    free(ref_db);
}

TEST(resume_refuses_what_cannot_be_resumed) {
    char *db = ts_corpus_db(0, 0);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    int64_t id = ts_start_run(&s, "{\"all_conversations\": true}");
    REQUIRE(id > 0);
    json_decref(wait_terminal(&s, id));
    char path[96];
    snprintf(path, sizeof path, "/api/pipeline/%lld/resume", (long long)id);
    json_t *e = post_json(&s, path, NULL, 409);
    char want[160];
    snprintf(want, sizeof want, "Pipeline run %lld cannot be resumed (status: completed)",
             (long long)id);
    CHECK_STR(str_at(e, "detail"), want);
    json_decref(e);
    e = post_json(&s, "/api/pipeline/424242/resume", NULL, 404);
    CHECK_STR(str_at(e, "detail"), "Pipeline run 424242 not found");
    json_decref(e);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

/* ------------------------------------------------------------------ events */

typedef struct stream_reader {
    const char *url;
    http_resp r;
} stream_reader;

static void *read_stream(void *arg) {
    stream_reader *sr = arg;
    http_do("GET", sr->url, NULL, NULL, &sr->r);
    return NULL;
}

/* The events of an SSE body, in order: names and data objects. */
static size_t parse_events(const char *body, char names[][16], json_t **data, size_t max) {
    size_t n = 0;
    const char *p = body;
    while (p && *p && n < max) {
        const char *end = strstr(p, "\n\n");
        if (!end) break;
        const char *ev = strstr(p, "event: "), *d = strstr(p, "data: ");
        if (ev && ev < end && d && d < end) {
            sscanf(ev + 7, "%15s", names[n]);
            const char *dl = strchr(d, '\n');
            data[n] = json_loadb(d + 6, (size_t)(dl - d - 6), 0, NULL);
            n++;
        }
        p = end + 2;
    }
    return n;
}

TEST(events_stream_phases_and_progress_without_tying_up_workers) {
    char *db = ts_corpus_db(1500, 5);
    test_server s;
    const char *const extra[] = {"--threads", "2", NULL};
    REQUIRE(ts_start(&s, db, extra, NULL) == 0);
    int64_t id = ts_start_run(&s, ALL_STORIES);
    REQUIRE(id > 0);
    enum { STREAMS = 20 };
    stream_reader readers[STREAMS];
    pthread_t threads[STREAMS];
    char *url = xasprintf("%s/api/pipeline/%lld/events", s.base, (long long)id);
    int64_t t0 = mono_ms();
    for (int i = 0; i < STREAMS; i++) {
        readers[i].url = url;
        pthread_create(&threads[i], NULL, read_stream, &readers[i]);
    }
    /* Ten times more streams than workers, and the server still answers at once. */
    int64_t deadline = mono_ms() + 30000;
    json_t *m = NULL;
    while (mono_ms() < deadline) {
        json_decref(m);
        m = NULL;
        http_resp r;
        ts_get(&s, "/metrics", &r);
        const char *line = r.body ? strstr(r.body, "\nfeedline_event_streams ") : NULL;
        int open = line ? atoi(line + 24) : 0;
        http_resp_free(&r);
        if (open == STREAMS) {
            m = json_true();
            break;
        }
        sleep_ms(10);
    }
    CHECK(m != NULL); /* all streams open at the same time */
    json_decref(m);
    for (int i = 0; i < 20; i++) {
        http_resp r;
        REQUIRE(ts_get(&s, "/health", &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK(r.seconds < 1.0);
        http_resp_free(&r);
    }
    for (int i = 0; i < STREAMS; i++) pthread_join(threads[i], NULL);
    double seconds = (double)(mono_ms() - t0) / 1000.0;
    static const char *const order[] = {"classification", "embedding_generation",
                                        "facet_extraction", "theme_extraction",
                                        "story_creation", "completed"};
    for (int i = 0; i < STREAMS; i++) {
        http_resp *r = &readers[i].r;
        CHECK_INT(r->status, 200);
        char *ct = http_header(r, "Content-Type");
        CHECK_STR(ct, "text/event-stream");
        free(ct);
        char names[512][16];
        json_t *data[512] = {0};
        size_t n = parse_events(r->body ? r->body : "", names, data, 512);
        REQUIRE(n >= 3);
        CHECK_STR(names[0], "phase");
        CHECK_STR(names[n - 1], "end");
        CHECK_STR(str_at(data[n - 1], "status"), "completed");
        /* Phases appear in pipeline order; progress events carry counters. */
        size_t next = 0, progress = 0;
        for (size_t k = 0; k < n; k++) {
            const char *ph = str_at(data[k], "phase");
            for (size_t o = next; ph && o < sizeof order / sizeof order[0]; o++)
                if (!strcmp(ph, order[o])) next = o;
            CHECK(ph && !strcmp(ph, order[next]));
            if (!strcmp(names[k], "progress")) {
                progress++;
                CHECK(json_is_object(json_object_get(data[k], "counters")));
            }
            CHECK_INT(int_at(data[k], "run_id"), id);
        }
        CHECK(next == 5); /* reached "completed" */
        if (i == 0) CHECK(progress > 0);
        /* At most a few events a second. */
        CHECK((double)n <= 5.0 * seconds + 4);
        for (size_t k = 0; k < n; k++) json_decref(data[k]);
        http_resp_free(r);
    }
    /* A finished run's stream: its state, then the end, at once. */
    http_resp r;
    REQUIRE(http_do("GET", url, NULL, NULL, &r) == 0);
    char names[8][16];
    json_t *data[8] = {0};
    size_t n = parse_events(r.body, names, data, 8);
    CHECK_INT(n, 2);
    CHECK_STR(names[0], "phase");
    CHECK_STR(names[1], "end");
    for (size_t k = 0; k < n; k++) json_decref(data[k]);
    http_resp_free(&r);
    free(url);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

TEST(event_streams_are_bounded) {
    char *db = ts_corpus_db(1500, 6);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    int64_t id = ts_start_run(&s, ALL_STORIES);
    REQUIRE(id > 0);
    enum { LIMIT = 64 };
    stream_reader readers[LIMIT];
    pthread_t threads[LIMIT];
    char *url = xasprintf("%s/api/pipeline/%lld/events", s.base, (long long)id);
    for (int i = 0; i < LIMIT; i++) {
        readers[i].url = url;
        pthread_create(&threads[i], NULL, read_stream, &readers[i]);
    }
    int64_t deadline = mono_ms() + 60000;
    int open = 0;
    while (mono_ms() < deadline && open < LIMIT) {
        http_resp r;
        ts_get(&s, "/metrics", &r);
        const char *line = r.body ? strstr(r.body, "\nfeedline_event_streams ") : NULL;
        open = line ? atoi(line + 24) : 0;
        http_resp_free(&r);
        if (open < LIMIT) sleep_ms(10);
    }
    CHECK_INT(open, LIMIT);
    http_resp r;
    REQUIRE(http_do("GET", url, NULL, NULL, &r) == 0);
    CHECK_INT(r.status, 503);
    CHECK_STR(str_at(r.json, "detail"), "Too many event streams (limit 64)");
    http_resp_free(&r);
    /* Stop the run: every stream ends. */
    json_decref(post_json(&s, "/api/pipeline/stop", NULL, 200));
    for (int i = 0; i < LIMIT; i++) {
        pthread_join(threads[i], NULL);
        CHECK_INT(readers[i].r.status, 200);
        CHECK(readers[i].r.body && strstr(readers[i].r.body, "event: end"));
        http_resp_free(&readers[i].r);
    }
    free(url);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

/* ------------------------------------------------------------------ the CLI */

static int cli(char **out, const char *a1, const char *a2, const char *a3, const char *a4,
               const char *a5) {
    const char *build = getenv("FEEDLINE_BUILD");
    char *bin = xasprintf("%s/feedline", build && build[0] ? build : "build");
    char *vocab = fx_path("data/theme_vocabulary.json");
    char *vocab_env = xasprintf("FEEDLINE_VOCAB=%s", vocab);
    char *argv[] = {bin, (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, NULL};
    char *env[] = {vocab_env, NULL};
    int rc = fx_run(argv, env, out, NULL);
    free(bin);
    free(vocab);
    free(vocab_env);
    return rc;
}

TEST(cli_runs_status_stop_resume_work_against_the_servers_database) {
    char *db = ts_corpus_db(1500, 9);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    int64_t id = ts_start_run(&s, ALL_STORIES);
    REQUIRE(id > 0);
    int ok;
    json_decref(ts_wait_status(&s, id, RUN_TIMEOUT_MS, ts_in_phase, "embedding_generation", &ok));
    REQUIRE(ok);
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    char *out = NULL;
    CHECK_INT(cli(&out, "stop", "--db", db, ids, NULL), 0);
    free(out);
    json_t *st = wait_terminal(&s, id);
    CHECK_STR(str_at(st, "status"), "stopped");
    json_decref(st);
    out = NULL;
    CHECK_INT(cli(&out, "status", "--db", db, "--json", ids), 0);
    json_t *cli_st = json_loads(out ? out : "", 0, NULL);
    free(out);
    char path[96];
    snprintf(path, sizeof path, "/api/pipeline/status/%lld", (long long)id);
    json_t *api_st = get_json(&s, path, 200);
    CHECK_STR(str_at(cli_st, "status"), "stopped");
    /* The API and the CLI render the same run record the same way. */
    const char *key;
    json_t *v;
    json_object_foreach(cli_st, key, v) {
        if (!strcmp(key, "duration_seconds")) continue;
        CHECK(json_equal(v, json_object_get(api_st, key)));
        if (!json_equal(v, json_object_get(api_st, key))) printf("    field %s differs\n", key);
    }
    CHECK_INT(json_object_size(cli_st), json_object_size(api_st));
    json_decref(cli_st);
    json_decref(api_st);
    out = NULL;
    CHECK_INT(cli(&out, "runs", "--db", db, NULL, NULL), 0);
    CHECK(out && strstr(out, "stopped"));
    free(out);
    /* The CLI drives the rest in its own process; the server, seeing a live owner,
     * leaves it alone and reports it. */
    out = NULL;
    CHECK_INT(cli(&out, "resume", "--db", db, ids, NULL), 0);
    free(out);
    st = get_json(&s, path, 200);
    CHECK_STR(str_at(st, "status"), "completed");
    CHECK(int_at(st, "stories_created") > 0);
    /* Same rendering once the run has warnings, errors and usage too. */
    CHECK(json_array_size(json_object_get(st, "warnings")) > 0);
    out = NULL;
    CHECK_INT(cli(&out, "status", "--db", db, "--json", ids), 0);
    cli_st = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(json_equal(json_object_get(cli_st, "warnings"), json_object_get(st, "warnings")));
    CHECK(json_equal(json_object_get(cli_st, "errors"), json_object_get(st, "errors")));
    CHECK(json_equal(json_object_get(cli_st, "llm"), json_object_get(st, "llm")));
    json_decref(cli_st);
    json_decref(st);
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

/* ------------------------------------------------------------------ the response cache */

static const char *newest_status(const test_server *s) {
    static char status[16];
    json_t *hist = get_json(s, "/api/pipeline/history?limit=1", 200);
    const char *v = str_at(json_array_get(hist, 0), "status");
    snprintf(status, sizeof status, "%s", v ? v : "");
    json_decref(hist);
    return status;
}

TEST(cached_answers_follow_writes_from_any_process_and_from_this_worker) {
    char *db = ts_corpus_db(1500, 13);
    test_server s;
    const char *const extra[] = {"--threads", "1", NULL}; /* one worker: one cache */
    REQUIRE(ts_start(&s, db, extra, NULL) == 0);
    int64_t id = ts_start_run(&s, ALL_STORIES);
    REQUIRE(id > 0);
    int ok;
    json_decref(ts_wait_status(&s, id, RUN_TIMEOUT_MS, ts_in_phase, "embedding_generation", &ok));
    REQUIRE(ok);
    CHECK_STR(newest_status(&s), "running");
    CHECK_STR(newest_status(&s), "running"); /* now answered from the worker's cache */
    /* Another process writes: the next answer shows it. */
    char ids[32], *out = NULL;
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    CHECK_INT(cli(&out, "stop", "--db", db, ids, NULL), 0);
    free(out);
    CHECK(strcmp(newest_status(&s), "running") != 0);
    json_decref(wait_terminal(&s, id));
    CHECK_STR(newest_status(&s), "stopped");
    CHECK_STR(newest_status(&s), "stopped");
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

/* Starts `feedline run` on db in the background (the release build, offline). */
static pid_t spawn_cli_run(const char *db) {
    const char *build = getenv("FEEDLINE_BUILD");
    char *bin = xasprintf("%s/feedline", build && build[0] ? build : "build");
    char *vocab = fx_path("data/theme_vocabulary.json");
    fflush(stdout);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
        setenv("FEEDLINE_VOCAB", vocab, 1);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(127);
        execl(bin, bin, "run", "--db", db, "--llm", "local", (char *)NULL);
        _exit(127);
    }
    free(bin);
    free(vocab);
    return pid;
}

TEST(a_workers_own_write_is_never_hidden_by_its_cache) {
    /* A run driven by a CLI process, caught in its story phase: clustering writes
     * nothing but a heartbeat a second, so the commit between the two reads below is
     * this server's own stop. */
    char *db = ts_corpus_db(1500, 14);
    test_server s;
    const char *const extra[] = {"--threads", "1", NULL};
    REQUIRE(ts_start(&s, db, extra, NULL) == 0);
    pid_t cli_pid = spawn_cli_run(db);
    REQUIRE(cli_pid > 0);
    int ok;
    json_decref(ts_wait_status(&s, 1, RUN_TIMEOUT_MS, ts_in_phase, "story_creation", &ok));
    REQUIRE(ok);
    CHECK_STR(newest_status(&s), "running");
    CHECK_STR(newest_status(&s), "running");
    json_t *stop = post_json(&s, "/api/pipeline/stop", NULL, 200);
    CHECK_STR(str_at(stop, "status"), "stopping");
    json_decref(stop);
    CHECK(strcmp(newest_status(&s), "running") != 0);
    int status = 0;
    waitpid(cli_pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 4); /* the CLI's "stopped" */
    CHECK_STR(newest_status(&s), "stopped");
    stop_server(&s);
    ts_remove_db(db);
    free(db);
}

TEST(a_cli_run_keeps_its_heartbeat_fresh_through_the_story_phase) {
    /* The engine refreshes the heartbeat once a second while it works through items;
     * the story phase has no items, and a server's sweep fails runs whose heartbeat is
     * 15 s old. The pipeline's own heartbeat thread covers it (no server involved).
     * The story phase is made to last: the endpoint answers its reviews after 3 s (a
     * fast story phase, offline, no longer outlasts a heartbeat period). */
    fakeproc fp;
    const char *const opts[] = {"--latency-ms", "5", NULL};
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    REQUIRE(fakeproc_post(&fp, "/_config", "{\"review_latency_ms\": 3000}") == 200);
    char *db = ts_corpus_db(200, 15);
    e2e_env env;
    e2e_env_for(&env, &fp);
    char *const argv[] = {(char *)e2e_bin(), "run", "--db", db, "--llm", "openai", NULL};
    pid_t cli_pid = fakeproc_spawn(argv, env.e, "/dev/null");
    REQUIRE(cli_pid > 0);
    store *st = fx_store_open(db);
    int64_t deadline = mono_ms() + RUN_TIMEOUT_MS, entered = 0, first = 0, later = 0;
    char phase[32] = "", status[16] = "running";
    while (mono_ms() < deadline && !strcmp(status, "running")) {
        run_record r;
        if (store_run_get(st, 1, &r) == STORE_FOUND) {
            snprintf(phase, sizeof phase, "%s", r.current_phase);
            snprintf(status, sizeof status, "%s", r.status);
            if (!strcmp(phase, "story_creation") && !strcmp(status, "running")) {
                if (!entered) {
                    entered = mono_ms();
                    first = r.heartbeat_at;
                } else if (r.heartbeat_at > first) {
                    later = r.heartbeat_at;
                }
            }
            run_record_free(&r);
        }
        if (later) break;
        sleep_ms(5);
    }
    CHECK(entered > 0);
    CHECK(later > first); /* refreshed while the phase ran */
    store_close(st);
    CHECK_INT(fakeproc_wait(cli_pid, RUN_TIMEOUT_MS), 0);
    CHECK(fakeproc_stat_int(&fp, "requests") > 0);
    e2e_env_free(&env);
    CHECK_INT(fakeproc_stop(&fp), 0);
    ts_remove_db(db);
    free(db);
}

/* Run lifecycle through the library: stop mid-phase, resume, failures counted and
 * retried, dry run, and that a resumed run ends exactly like an uninterrupted one. */
#include "test.h"

#include <stdlib.h>

#include "pipeline/pipeline.h"
#include "source/source.h"
#include "store/store_report.h"
#include "support/faulty.h"
#include "support/fixtures.h"
#include "support/outcome.h"
#include "util/mem.h"
#include "util/timeutil.h"

typedef struct harness {
    char *db;
    vocab *v;
    faulty_config cfg;
    atomic_int stop;
    llm_provider *last;
    long theme_calls;
} harness;

static llm_provider *make(void *ctx, const run_record *run, store *st, char *err, size_t len) {
    (void)run;
    (void)st;
    (void)err;
    (void)len;
    harness *h = ctx;
    h->last = faulty_new(llm_local_new(h->v), &h->cfg);
    return h->last;
}

static void setup(harness *h) {
    memset(h, 0, sizeof *h);
    h->db = fx_db_url();
    char *vp = fx_path("data/theme_vocabulary.json"), err[256];
    h->v = vocab_load(vp, err, sizeof err);
    free(vp);
    h->cfg.fail_task = -1;
    h->cfg.stop_task = -1;
    h->cfg.stop_flag = &h->stop;
    store *st = fx_store_open(h->db);
    char *sample = fx_path("data/sample_conversations.jsonl");
    import_stats s = {0};
    if (import_file(st, sample, &s, NULL, NULL, err, sizeof err)) fprintf(stdout, "    %s\n", err);
    store_close(st);
    free(sample);
}

static void teardown(harness *h) {
    vocab_free(h->v);
    free(h->db);
}

static run_env env_of(harness *h) {
    run_env e = {0};
    e.db_url = h->db;
    e.vocab = h->v;
    e.make_provider = make;
    e.provider_ctx = h;
    e.owner = "test";
    e.stop_flag = &h->stop;
    return e;
}

static run_params params(void) {
    run_params p = {0};
    p.concurrency = 8;
    p.auto_create_stories = 1;
    p.llm = "local";
    return p;
}



static void check_same_counters(const run_record *a, const run_record *b) {
#define SAME(n) CHECK_INT(a->n, b->n);
    RUN_COUNTERS(SAME)
#undef SAME
}

/* Stops a run after 40 theme calls, resumes it, and compares it with an uninterrupted
 * run: every counter and every story equal. stream: run_env.stream (-1 phase by phase,
 * 1 streaming). */
static void stop_mid_themes_then_resume(int stream) {
    harness ref, h;
    setup(&ref);
    run_env e = env_of(&ref);
    e.stream = stream;
    run_params p = params();
    int64_t ref_id;
    char err[256];
    CHECK_INT(pipeline_start(&e, &p, &ref_id, err, sizeof err), 0);
    run_record a = outcome_run(ref.db, ref_id);
    CHECK_STR(a.status, "completed");

    setup(&h);
    h.cfg.stop_task = LLM_THEME;
    h.cfg.stop_after = 40;
    e = env_of(&h);
    e.stream = stream;
    int64_t id;
    CHECK_INT(pipeline_start(&e, &p, &id, err, sizeof err), 1);
    run_record b = outcome_run(h.db, id);
    CHECK_STR(b.status, "stopped");
    if (stream > 0) {
        /* Themes were extracted while conversations were still being classified, and
         * the run says it stopped in the earliest phase with unfinished work. */
        CHECK(b.conversations_classified < a.conversations_classified);
        CHECK_STR(b.current_phase, "classification");
        /* The offline embedder waits for the whole corpus: no embedding yet. */
        CHECK_INT(b.embeddings_generated, 0);
    } else {
        CHECK_STR(b.current_phase, "theme_extraction");
    }
    CHECK(b.themes_extracted + b.themes_filtered < a.themes_extracted + a.themes_filtered);
    CHECK(b.themes_extracted + b.themes_filtered >= 30); /* finished work was kept */
    CHECK_INT(b.stories_created, 0);
    run_record_free(&b);

    atomic_store(&h.stop, 0);
    h.cfg.stop_task = -1;
    CHECK_INT(pipeline_resume(&e, id, err, sizeof err), 0);
    b = outcome_run(h.db, id);
    CHECK_STR(b.status, "completed");
    check_same_counters(&a, &b);
    char *fa = outcome_stories(ref.db, ref_id), *fb = outcome_stories(h.db, id);
    CHECK_STR(fa, fb);
    CHECK(strlen(fa) > 0);
    free(fa);
    free(fb);
    run_record_free(&a);
    run_record_free(&b);
    teardown(&ref);
    teardown(&h);
}

TEST(stop_mid_themes_then_resume_equals_uninterrupted_run) { stop_mid_themes_then_resume(-1); }

TEST(streaming_stop_mid_themes_then_resume_equals_uninterrupted_run) {
    stop_mid_themes_then_resume(1);
}

TEST(failures_are_counted_with_reasons_and_retried_by_resume) {
    harness h;
    setup(&h);
    h.cfg.fail_task = LLM_FACETS;
    h.cfg.fail_percent = 20;
    run_env e = env_of(&h);
    run_params p = params();
    int64_t id;
    char err[256];
    CHECK_INT(pipeline_start(&e, &p, &id, err, sizeof err), 0);
    run_record r = outcome_run(h.db, id);
    CHECK_STR(r.status, "completed");
    CHECK(r.facets_failed > 5);
    CHECK_INT(r.facets_extracted + r.facets_failed, r.embeddings_generated + r.embeddings_failed);
    int64_t failed = r.facets_failed;
    run_record_free(&r);
    store *st = fx_store_open(h.db);
    char *errs = NULL;
    CHECK_INT(store_run_errors_json(st, id, &errs), STORE_OK);
    CHECK(strstr(errs, "injected failure (HTTP 500)") != NULL);
    CHECK(strstr(errs, "facet_extraction") != NULL);
    char needle[64];
    snprintf(needle, sizeof needle, "\"count\":%lld", (long long)failed);
    CHECK(strstr(errs, needle) != NULL);
    free(errs);
    CHECK_INT(store_run_error_count(st, id), failed);
    store_close(st);
    /* a completed run does not resume; a failed-work rerun needs a failed/stopped run */
    CHECK_INT(pipeline_resume(&e, id, err, sizeof err), -4);
    teardown(&h);
}

TEST(resume_retries_failed_items_until_none_fail) {
    harness h;
    setup(&h);
    h.cfg.fail_task = LLM_THEME;
    h.cfg.fail_percent = 30;
    h.cfg.stop_task = LLM_STORY;  /* stop right before stories are written */
    h.cfg.stop_after = 1;
    run_env e = env_of(&h);
    run_params p = params();
    int64_t id;
    char err[256];
    CHECK_INT(pipeline_start(&e, &p, &id, err, sizeof err), 1);
    run_record r = outcome_run(h.db, id);
    CHECK(r.themes_failed > 10);
    run_record_free(&r);
    atomic_store(&h.stop, 0);
    h.cfg.fail_task = -1;
    h.cfg.stop_task = -1;
    CHECK_INT(pipeline_resume(&e, id, err, sizeof err), 0);
    r = outcome_run(h.db, id);
    CHECK_STR(r.status, "completed");
    CHECK_INT(r.themes_failed, 0);
    CHECK(r.stories_created > 0);
    store *st = fx_store_open(h.db);
    CHECK_INT(store_run_error_count(st, id), 0);
    store_close(st);
    run_record_free(&r);
    teardown(&h);
}

static void dry_run(int stream) {
    harness h;
    setup(&h);
    run_env e = env_of(&h);
    e.stream = stream;
    run_params p = params();
    p.dry_run = 1;
    int64_t id;
    char err[256];
    CHECK_INT(pipeline_start(&e, &p, &id, err, sizeof err), 0);
    run_record r = outcome_run(h.db, id);
    CHECK_STR(r.status, "completed");
    CHECK(r.dry_run);
    CHECK(r.conversations_classified > 300);
    CHECK_INT(r.conversations_stored, 0);
    CHECK(r.themes_extracted > 0);
    CHECK_INT(r.stories_created, 0);
    REQUIRE(r.preview_json != NULL);
    json_t *pv = json_loads(r.preview_json, 0, NULL);
    REQUIRE(pv != NULL);
    CHECK_INT(json_integer_value(json_object_get(pv, "total_classified")), r.conversations_classified);
    CHECK(json_array_size(json_object_get(pv, "samples")) == 10);
    CHECK(json_array_size(json_object_get(pv, "top_themes")) == 5);
    json_t *by_type = json_object_get(json_object_get(pv, "classification_breakdown"), "by_type");
    CHECK(json_object_size(by_type) >= 4);
    /* Samples carry the theme of their conversation when it has one. */
    size_t i, themed = 0;
    json_t *x;
    json_array_foreach(json_object_get(pv, "samples"), i, x)
        themed += json_array_size(json_object_get(x, "themes")) > 0;
    CHECK(themed > 0);
    json_decref(pv);
    store *st = fx_store_open(h.db);
    story_filter f = {0};
    f.run_id = id;
    json_t *arr = NULL;
    int64_t total = -1;
    CHECK_INT(store_stories_json(st, &f, &arr, &total), STORE_OK);
    CHECK_INT(total, 0);
    json_decref(arr);
    store_close(st);
    run_record_free(&r);
    teardown(&h);
}

TEST(dry_run_keeps_a_bounded_preview_and_stores_no_themes_or_stories) { dry_run(-1); }

TEST(streaming_dry_run_keeps_the_same_preview) { dry_run(1); }

TEST(second_start_while_active_is_refused) {
    harness h;
    setup(&h);
    store *st = fx_store_open(h.db);
    run_params p = params();
    int64_t first;
    /* Created now: a run without heartbeat for RUN_STALE_SECONDS would be failed as
     * orphaned by the start. */
    CHECK_INT(store_run_create(st, &p, wall_unix(), &first, NULL), STORE_OK);
    store_close(st);
    run_env e = env_of(&h);
    int64_t id = 0;
    char err[256];
    CHECK_INT(pipeline_start(&e, &p, &id, err, sizeof err), -2);
    CHECK_INT(id, first);
    CHECK(strstr(err, "already in progress") != NULL);
    teardown(&h);
}

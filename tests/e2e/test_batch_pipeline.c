/* End to end with --llm openai --batch: the real CLI against the fake endpoint's Batch
 * API (/files, /batches, polls, output and error files). A batch run gives the same
 * results as a normal run at half the price; error lines fail their items and a resume
 * retries them; an expired batch keeps what it answered and fails the rest; a stop
 * cancels the batch and the resume polls the same batch instead of uploading its
 * requests again. */
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "support/dataset.h"
#include "support/e2e.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

static const double PROMPT_USD = 2.0, COMPLETION_USD = 8.0, EMBED_USD = 0.1;

/* Quick polls and batch gathering, and prices that make the batch discount plain. */
static void env_for(e2e_env *s, const fakeproc *fp) {
    e2e_env_for(s, fp);
    e2e_env_set(s, "FEEDLINE_LLM_TIMEOUT_MS=3000");
    e2e_env_set(s, "FEEDLINE_BATCH_POLL_MS=50");
    e2e_env_set(s, "FEEDLINE_BATCH_GATHER_MS=150");
    e2e_env_set(s, "FEEDLINE_PRICE_PROMPT=%g", PROMPT_USD);
    e2e_env_set(s, "FEEDLINE_PRICE_CACHED=%g", PROMPT_USD);
    e2e_env_set(s, "FEEDLINE_PRICE_COMPLETION=%g", COMPLETION_USD);
    e2e_env_set(s, "FEEDLINE_PRICE_EMBED=%g", EMBED_USD);
}

static int start_fake(fakeproc *fp) {
    int rc = e2e_start_fake(fp, NULL);
    /* no prompt-prefix cache: every prompt token at the prompt price */
    if (rc == 0 && fakeproc_post(fp, "/_config", "{\"prompt_cache\":0}") != 200) rc = -1;
    return rc;
}

static char *dataset(size_t n, uint64_t seed) { return ds_imported_db(n, seed); }

static json_t *parse(const char *s) { return s ? json_loads(s, 0, NULL) : NULL; }
static int64_t num(const json_t *o, const char *k) { return jx_int(o, k, -1); }

static json_t *run_json(const e2e_env *env, const char *db, int batch) {
    char *out = NULL, *err = NULL;
    int rc = batch ? e2e_feedline(env, &out, &err, "run", "--db", db, "--llm", "openai", "--batch",
                              "--json", NULL)
                   : e2e_feedline(env, &out, &err, "run", "--db", db, "--llm", "openai", "--json", NULL);
    if (rc) fprintf(stdout, "    run: rc %d: %s\n", rc, err);
    json_t *run = parse(out);
    free(out);
    free(err);
    return run;
}

static json_t *run1(const e2e_env *env, const char *cmd, const char *db, int expect_rc) {
    char *out = NULL, *err = NULL;
    int rc = e2e_feedline(env, &out, &err, cmd, "--db", db, "--json", "1", NULL);
    if (rc != expect_rc) fprintf(stdout, "    %s: rc %d: %s\n", cmd, rc, err);
    CHECK_INT(rc, expect_rc);
    json_t *run = parse(out);
    free(out);
    free(err);
    return run;
}

static void check_accounting(const json_t *run) {
    int64_t fetched = num(run, "conversations_fetched");
    CHECK(fetched > 0);
    CHECK_INT(num(run, "conversations_classified") + num(run, "classification_failed"), fetched);
    int64_t emb = num(run, "embeddings_generated") + num(run, "embeddings_failed");
    CHECK(emb > 0);
    CHECK_INT(num(run, "facets_extracted") + num(run, "facets_failed"), emb);
    CHECK_INT(num(run, "themes_extracted") + num(run, "themes_filtered") + num(run, "themes_failed"),
              emb);
}

static int has_error_like(const json_t *run, const char *needle) {
    size_t i;
    json_t *g;
    json_array_foreach(jx_arr(run, "errors"), i, g) {
        const char *m = jx_str(g, "message");
        if (m && strstr(m, needle)) return 1;
    }
    return 0;
}

TEST(a_batch_run_gives_the_results_of_a_normal_run_at_half_the_price) {
    fakeproc fp;
    REQUIRE(start_fake(&fp) == 0);
    char *db1 = dataset(60, 21), *db2 = dataset(60, 21);
    REQUIRE(db1 && db2);
    e2e_env env;
    env_for(&env, &fp);
    json_t *normal = run_json(&env, db1, 0);
    REQUIRE(normal != NULL);
    /* small batches: a phase's requests are split over several */
    e2e_env_set(&env, "FEEDLINE_BATCH_MAX_REQUESTS=16");
    CHECK_INT(fakeproc_stat_int(&fp, "batches_created"), 0);
    json_t *batch = run_json(&env, db2, 1);
    REQUIRE(batch != NULL);
    CHECK_STR(jx_str(batch, "status"), "completed");
    CHECK(json_is_true(json_object_get(batch, "batch")));
    check_accounting(batch);
    const char *same[] = {"conversations_fetched", "conversations_classified",
                          "classification_failed", "embeddings_generated", "facets_extracted",
                          "themes_extracted", "themes_filtered", "themes_new",
                          "stories_created", "orphans_created"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        if (num(normal, same[i]) != num(batch, same[i]))
            fprintf(stdout, "    %s: normal %lld, batch %lld\n", same[i],
                    (long long)num(normal, same[i]), (long long)num(batch, same[i]));
        CHECK_INT(num(batch, same[i]), num(normal, same[i]));
    }
    /* classification (stages 1 and 2), embeddings, facets and themes went in batches */
    CHECK(fakeproc_stat_int(&fp, "batches_created") >= 7);
    CHECK_INT(fakeproc_stat_int(&fp, "batch_duplicate_lines"), 0);
    json_t *st = fakeproc_stats(&fp);
    size_t k;
    json_t *fb;
    json_array_foreach(jx_arr(st, "batches"), k, fb) {
        CHECK(num(fb, "requests") >= 1 && num(fb, "requests") <= 16);
        CHECK_STR(jx_str(fb, "status"), "completed");
    }
    json_decref(st);
    /* the same requests per phase, each batched one at half the price of its tokens */
    json_t *bn = jx_obj(jx_obj(normal, "llm"), "by_phase"), *bb = jx_obj(jx_obj(batch, "llm"), "by_phase");
    const char *phases[] = {"classification", "facet_extraction"};
    for (size_t i = 0; i < 2; i++) {
        json_t *u = jx_obj(bb, phases[i]);
        CHECK_INT(num(u, "requests"), num(jx_obj(bn, phases[i]), "requests"));
        double full = ((double)num(u, "prompt_tokens") * PROMPT_USD +
                       (double)num(u, "completion_tokens") * COMPLETION_USD) / 1e6;
        CHECK(full > 0);
        CHECK_NEAR(jx_num(u, "cost_usd", -1), full / 2, 1e-6);
    }
    json_t *ue = jx_obj(bb, "embedding_generation");
    CHECK_NEAR(jx_num(ue, "cost_usd", -1), (double)num(ue, "prompt_tokens") * EMBED_USD / 1e6 / 2,
               1e-6);
    double cn = jx_num(jx_obj(normal, "llm"), "cost_usd", 0), cb = jx_num(jx_obj(batch, "llm"), "cost_usd", 0);
    fprintf(stdout, "    cost: normal $%.6f, batch $%.6f\n", cn, cb);
    CHECK(cb < cn * 0.7);
    json_decref(normal);
    json_decref(batch);
    e2e_env_free(&env);
    free(db1);
    free(db2);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* Error lines fail their conversations (with the line's reason); the run goes on. A
 * stop later and a resume retry them in a new batch. */
TEST(error_lines_fail_their_items_and_a_resume_retries_them) {
    fakeproc fp;
    REQUIRE(start_fake(&fp) == 0);
    REQUIRE(fakeproc_post(&fp, "/_config", "{\"batch_line_error\":0.25}") == 200);
    char *db = dataset(40, 22);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp);
    char *dir = fx_tmpdir();
    char *log = xasprintf("%s/run.log", dir);
    char *b = (char *)e2e_bin();
    char *argv[] = {b, "run", "--db", db, "--llm", "openai", "--batch", "--no-stories", NULL};
    pid_t pid = fakeproc_spawn(argv, env.e, log);
    REQUIRE(pid > 0);
    /* stage 1, stage 2, embeddings: then the facets batch is held back and the run stopped */
    int64_t deadline = mono_ms() + 60000;
    while (fakeproc_stat_int(&fp, "batches_created") < 2 && mono_ms() < deadline) sleep_ms(10);
    REQUIRE(fakeproc_post(&fp, "/_config", "{\"batch_delay_ms\":60000}") == 200);
    while (fakeproc_stat_int(&fp, "batches_created") < 4 && mono_ms() < deadline) sleep_ms(10);
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_feedline(&env, &out, &err, "stop", "--db", db, "1", NULL), 0);
    free(out);
    free(err);
    CHECK_INT(fakeproc_wait(pid, 20000), 4);
    json_t *run = run1(&env, "status", db, 0);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "stopped");
    int64_t failed = num(run, "classification_failed");
    fprintf(stdout, "    %lld of %lld classifications failed on error lines\n", (long long)failed,
            (long long)num(run, "conversations_fetched"));
    CHECK(failed > 0);
    CHECK(has_error_like(run, "batch: HTTP 500"));
    json_decref(run);
    CHECK(fakeproc_stat_int(&fp, "batch_line_errors") > 0);

    REQUIRE(fakeproc_post(&fp, "/_config", "{\"batch_line_error\":0,\"batch_delay_ms\":100}") == 200);
    run = run1(&env, "resume", db, 0);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "completed");
    CHECK_INT(num(run, "classification_failed"), 0);
    CHECK_INT(num(run, "conversations_classified"), num(run, "conversations_fetched"));
    CHECK_INT(num(run, "facets_failed"), 0);
    check_accounting(run);
    json_decref(run);
    free(log);
    fx_rmtree(dir);
    free(dir);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* An expired batch: what it answered is kept, the rest fails with the reason (and is
 * retried by a resume like any failure). */
TEST(an_expired_batch_keeps_its_answers_and_fails_the_rest) {
    fakeproc fp;
    REQUIRE(start_fake(&fp) == 0);
    REQUIRE(fakeproc_post(&fp, "/_config", "{\"batch_expire_frac\":0.5}") == 200);
    char *db = dataset(40, 23);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp);
    char *out = NULL, *err = NULL;
    int rc = e2e_feedline(&env, &out, &err, "run", "--db", db, "--llm", "openai", "--batch",
                      "--no-stories", "--json", NULL);
    CHECK_INT(rc, 0);
    json_t *run = parse(out);
    free(out);
    free(err);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "completed");
    int64_t fetched = num(run, "conversations_fetched"), failed = num(run, "classification_failed");
    fprintf(stdout, "    %lld of %lld classifications expired\n", (long long)failed, (long long)fetched);
    CHECK(failed >= fetched / 2 - 1 && failed < fetched);
    CHECK(num(run, "conversations_classified") > 0);
    CHECK(has_error_like(run, "expired"));
    check_accounting(run);
    json_decref(run);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

static json_t *first_batch(const fakeproc *fp) {
    json_t *s = fakeproc_stats(fp);
    json_t *b = json_incref(json_array_get(jx_arr(s, "batches"), 0));
    json_decref(s);
    return b;
}

/* A stop while the first batch runs cancels it; the resume polls that same batch, reads
 * what it answered and sends only the rest: no request is uploaded twice. */
TEST(stop_cancels_the_batch_and_the_resume_polls_it_instead_of_resending) {
    fakeproc fp;
    REQUIRE(start_fake(&fp) == 0);
    REQUIRE(fakeproc_post(&fp, "/_config", "{\"batch_delay_ms\":4000}") == 200);
    char *db = dataset(40, 24);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp);
    char *dir = fx_tmpdir();
    char *log = xasprintf("%s/run.log", dir);
    char *b = (char *)e2e_bin();
    char *argv[] = {b, "run", "--db", db, "--llm", "openai", "--batch", NULL};
    pid_t pid = fakeproc_spawn(argv, env.e, log);
    REQUIRE(pid > 0);
    int64_t deadline = mono_ms() + 60000;
    while (fakeproc_stat_int(&fp, "batches_created") < 1 && mono_ms() < deadline) sleep_ms(10);
    sleep_ms(1500); /* about a third of the batch answered when the cancel arrives */
    char *out = NULL, *err = NULL;
    int64_t t0 = mono_ms();
    CHECK_INT(e2e_feedline(&env, &out, &err, "stop", "--db", db, "1", NULL), 0);
    free(out);
    free(err);
    CHECK_INT(fakeproc_wait(pid, 20000), 4);
    fprintf(stdout, "    stopped in %lld ms\n", (long long)(mono_ms() - t0));
    CHECK_INT(fakeproc_stat_int(&fp, "batch_cancels"), 1);
    CHECK_INT(fakeproc_stat_int(&fp, "batches_created"), 1);
    json_t *b1 = first_batch(&fp);
    REQUIRE(b1 != NULL);
    int64_t polls = num(b1, "polls");
    int64_t requests = num(b1, "requests");
    json_decref(b1);
    json_t *run = run1(&env, "status", db, 0);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "stopped");
    CHECK_INT(num(run, "classification_failed"), 0); /* cancelled work is not a failure */
    json_decref(run);

    REQUIRE(fakeproc_post(&fp, "/_config", "{\"batch_delay_ms\":100}") == 200);
    run = run1(&env, "resume", db, 0);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "completed");
    check_accounting(run);
    CHECK_INT(num(run, "classification_failed"), 0);
    b1 = first_batch(&fp);
    fprintf(stdout, "    batch 1: %lld requests, %s, polls %lld -> %lld\n", (long long)requests,
            jx_str(b1, "status"), (long long)polls, (long long)num(b1, "polls"));
    CHECK_STR(jx_str(b1, "status"), "cancelled");
    CHECK(num(b1, "polls") > polls); /* the resume polled the same batch */
    json_decref(b1);
    CHECK_INT(fakeproc_stat_int(&fp, "batch_duplicate_lines"), 0); /* nothing uploaded twice */
    json_decref(run);
    free(log);
    fx_rmtree(dir);
    free(dir);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* End to end with --llm openai: the real CLI binary against the fake OpenAI-compatible
 * endpoint (build/fake_openai) on loopback. Concurrency, faults, stop mid-theme and
 * resume, the response cache, usage and cost, rate limits, a refused key, and the
 * signature bookkeeping of concurrent extractions. */
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "support/dataset.h"
#include "support/e2e.h"
#include "support/fakeproc.h"
#include "llm/llm.h"
#include "support/fixtures.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* The environment of a run against the fake: a short LLM timeout (the fault tests'
 * hung requests), and the API key (NULL: the one the fake accepts). */
static void env_for(e2e_env *s, const fakeproc *fp, const char *key) {
    e2e_env_for(s, fp);
    e2e_env_set(s, "FEEDLINE_LLM_TIMEOUT_MS=1500");
    if (key) e2e_env_set(s, "OPENAI_API_KEY=%s", key);
}


/* A database with n generated conversations imported. */
static char *dataset(size_t n, uint64_t seed) { return ds_imported_db(n, seed); }

static json_t *parse(const char *s) { return s ? json_loads(s, 0, NULL) : NULL; }

static int64_t num(const json_t *o, const char *k) { return jx_int(o, k, -1); }

static int64_t task_requests(const fakeproc *fp, const char *task) {
    json_t *s = fakeproc_stats(fp);
    int64_t v = jx_int(jx_obj(jx_obj(s, "tasks"), task), "requests", 0);
    json_decref(s);
    return v;
}

/* Every conversation of a phase is either processed or failed with a counter. */
static void check_accounting(const json_t *run) {
    int64_t fetched = num(run, "conversations_fetched");
    CHECK(fetched > 0);
    CHECK_INT(num(run, "conversations_classified") + num(run, "classification_failed"), fetched);
    int64_t emb = num(run, "embeddings_generated") + num(run, "embeddings_failed");
    int64_t fac = num(run, "facets_extracted") + num(run, "facets_failed");
    int64_t thm = num(run, "themes_extracted") + num(run, "themes_filtered") + num(run, "themes_failed");
    CHECK(emb > 0);
    CHECK_INT(fac, emb);
    CHECK_INT(thm, emb);
}

TEST(concurrency_is_exactly_the_configured_number_in_flight) {
    const char *opts[] = {"--latency-ms", "40", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    char *db = dataset(100, 11);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp, NULL);
    char *out = NULL, *err = NULL;
    int rc = e2e_feedline(&env, &out, &err, "run", "--db", db, "--llm", "openai", "--concurrency", "8",
                      "--json", NULL);
    if (rc) fprintf(stdout, "    run: %s\n", err);
    CHECK_INT(rc, 0);
    json_t *run = parse(out);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "completed");
    check_accounting(run);
    CHECK_INT(num(run, "classification_failed"), 0);
    CHECK(num(run, "stories_created") > 0);
    json_t *st = fakeproc_stats(&fp);
    CHECK_INT(jx_int(st, "max_in_flight", -1), 8);
    CHECK_INT(jx_int(jx_obj(run, "llm"), "requests", -1), jx_int(st, "requests", -2));
    /* The phases stream: facet and theme requests start (the fake's first arrival)
     * long before the last classification answer is released, and the embeddings go
     * in a few batches, not one request at the end. */
    json_t *tasks = jx_obj(st, "tasks");
    int64_t classified = jx_int(jx_obj(tasks, "refine"), "last_ms", 0);
    if (jx_int(jx_obj(tasks, "classify"), "last_ms", 0) > classified)
        classified = jx_int(jx_obj(tasks, "classify"), "last_ms", 0);
    int64_t theme = jx_int(jx_obj(tasks, "theme"), "first_ms", -1);
    int64_t facets = jx_int(jx_obj(tasks, "facets"), "first_ms", -1);
    int64_t embed = jx_int(jx_obj(tasks, "embed"), "first_ms", -1);
    fprintf(stdout, "    last classification answer at %lld ms; first theme %lld ms, facets "
                    "%lld ms, embeddings %lld ms (%lld requests)\n",
            (long long)(classified - jx_int(jx_obj(tasks, "classify"), "first_ms", 0)),
            (long long)(theme - jx_int(jx_obj(tasks, "classify"), "first_ms", 0)),
            (long long)(facets - jx_int(jx_obj(tasks, "classify"), "first_ms", 0)),
            (long long)(embed - jx_int(jx_obj(tasks, "classify"), "first_ms", 0)),
            (long long)jx_int(jx_obj(tasks, "embed"), "requests", 0));
    CHECK(theme >= 0 && theme < classified - 200);
    CHECK(facets >= 0 && facets < classified - 200);
    CHECK(embed >= 0 && embed < classified);
    /* The story texts are asked in the same round as the reviews: the first story
     * request arrives before the last review answer. */
    int64_t story = jx_int(jx_obj(tasks, "story"), "first_ms", -1);
    int64_t reviewed = jx_int(jx_obj(tasks, "review"), "last_ms", -1);
    fprintf(stdout, "    first story request at %lld ms, last review answer at %lld ms\n",
            (long long)story, (long long)reviewed);
    CHECK(story >= 0 && story < reviewed);
    json_decref(st);
    json_decref(run);
    free(out);
    free(err);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(an_identical_rerun_makes_zero_requests_and_usage_is_recorded) {
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, NULL) == 0);
    char *db = dataset(100, 12);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp, NULL);
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_feedline(&env, &out, &err, "run", "--db", db, "--llm", "openai", "--json", NULL), 0);
    json_t *r1 = parse(out);
    free(out);
    free(err);
    REQUIRE(r1 != NULL);
    json_t *llm = jx_obj(r1, "llm");
    CHECK_STR(jx_str(llm, "provider"), "openai");
    CHECK_STR(jx_str(llm, "chat_model"), "gpt-4o-mini");
    CHECK(num(llm, "requests") > 100);
    CHECK(num(llm, "prompt_tokens") > 10000 && num(llm, "completion_tokens") > 1000);
    CHECK(jx_num(llm, "cost_usd", 0) > 0);
    json_t *by = jx_obj(llm, "by_phase");
    const char *phases[] = {"classification", "embedding_generation", "facet_extraction",
                            "theme_extraction", "story_creation"};
    int64_t sum = 0;
    for (size_t i = 0; i < 5; i++) {
        CHECK(num(jx_obj(by, phases[i]), "requests") > 0);
        sum += num(jx_obj(by, phases[i]), "requests");
    }
    CHECK_INT(sum, num(llm, "requests"));
    CHECK_INT(num(llm, "requests"), fakeproc_stat_int(&fp, "requests"));
    /* One review request per candidate group. One written story per new story, asked
     * in the same round as the reviews; a text asked ahead for a group the review did not keep
     * whole (or that another group merged into) is the only extra request. */
    const json_t *review = jx_obj(r1, "review");
    CHECK(json_array_size(jx_arr(review, "decisions")) > 0);
    CHECK_INT(task_requests(&fp, "review"), (int64_t)json_array_size(jx_arr(review, "decisions")));
    size_t di;
    json_t *d;
    int64_t not_kept = 0;
    json_array_foreach(jx_arr(review, "decisions"), di, d) {
        CHECK_STR(jx_str(d, "reviewer"), "gpt-4o-mini");
        CHECK(jx_str(d, "reason") && jx_str(d, "reason")[0]);
        const char *dec = jx_str(d, "decision");
        not_kept += dec && strcmp(dec, "keep") ? (strcmp(dec, "merge") ? 1 : 2) : 0;
    }
    int64_t written = num(r1, "stories_created") + num(r1, "orphans_graduated");
    int64_t stories = task_requests(&fp, "story");
    fprintf(stdout, "    %lld story requests for %lld new stories (%lld reviews not keeping "
                    "their group whole)\n",
            (long long)stories, (long long)written, (long long)not_kept);
    CHECK(stories >= written && stories <= written + not_kept);

    REQUIRE(fakeproc_post(&fp, "/_reset", NULL) == 200);
    CHECK_INT(e2e_feedline(&env, &out, &err, "run", "--db", db, "--llm", "openai", "--json", NULL), 0);
    json_t *r2 = parse(out);
    free(out);
    free(err);
    REQUIRE(r2 != NULL);
    CHECK_INT(fakeproc_stat_int(&fp, "requests"), 0);
    CHECK_INT(num(jx_obj(r2, "llm"), "requests"), 0);

    CHECK(num(jx_obj(r2, "llm"), "cache_hits") > 50);
    CHECK(jx_num(jx_obj(r2, "llm"), "cost_usd", 1) == 0);
    CHECK_INT(num(r2, "themes_extracted"), num(r1, "themes_extracted"));
    /* the same conversations again: last run's stories, grown by nothing, no twins */
    CHECK(num(r1, "stories_created") > 0);
    CHECK_INT(num(r2, "stories_created"), 0);
    CHECK_INT(num(r2, "stories_updated"), 0);
    CHECK_INT(num(r2, "conversations_classified"), num(r1, "conversations_classified"));
    /* the human status shows usage per phase */
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)num(r1, "id"));
    CHECK_INT(e2e_feedline(&env, &out, &err, "status", "--db", db, id, NULL), 0);
    CHECK(out && strstr(out, "theme_extraction") && strstr(out, "requests") && strstr(out, "$"));
    free(out);
    free(err);
    json_decref(r1);
    json_decref(r2);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* Every chat phase's static prompt prefix is the same on each request, so the endpoint's
 * prefix cache serves it (the fake emulates OpenAI's: from 1024 tokens on, which of
 * the phases' static parts only the theme prompt with its vocabulary reaches); the
 * run records the cached tokens per phase, prices them at the cached rate, and
 * status shows their share. */
TEST(prompt_prefix_cache_hits_are_recorded_per_phase_and_priced_at_the_cached_rate) {
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, NULL) == 0);
    char *db = dataset(60, 14);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp, NULL);
    /* prices (USD per million tokens) chosen here, so the costs are checked against
     * them and the recorded tokens */
    const double prompt_usd = 2.0, cached_usd = 0.5, completion_usd = 8.0;
    e2e_env_set(&env, "FEEDLINE_PRICE_PROMPT=%g", prompt_usd);
    e2e_env_set(&env, "FEEDLINE_PRICE_CACHED=%g", cached_usd);
    e2e_env_set(&env, "FEEDLINE_PRICE_COMPLETION=%g", completion_usd);
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_feedline(&env, &out, &err, "run", "--db", db, "--llm", "openai", "--json", NULL), 0);
    json_t *run = parse(out);
    free(out);
    free(err);
    REQUIRE(run != NULL);
    json_t *llm = jx_obj(run, "llm"), *by = jx_obj(llm, "by_phase");
    const char *chat[] = {"classification", "facet_extraction", "theme_extraction",
                          "story_creation"};
    int64_t total = 0;
    for (size_t i = 0; i < 4; i++) {
        json_t *u = jx_obj(by, chat[i]);
        int64_t prompt = num(u, "prompt_tokens"), served = num(u, "cached_tokens");
        int64_t completion = num(u, "completion_tokens");
        CHECK(prompt > 0 && served >= 0 && served < prompt);
        /* the recorded cost is the cached tokens at the cached rate, the rest at the
         * prompt rate: cheaper than uncached by exactly the discount on them */
        double uncached = ((double)prompt * prompt_usd + (double)completion * completion_usd) / 1e6;
        double expect = uncached - (double)served * (prompt_usd - cached_usd) / 1e6;
        CHECK_NEAR(jx_num(u, "cost_usd", -1), expect, 1e-9);
        total += served;
    }
    int64_t theme_prompt = num(jx_obj(by, "theme_extraction"), "prompt_tokens");
    int64_t theme_cached = num(jx_obj(by, "theme_extraction"), "cached_tokens");
    CHECK(theme_cached > theme_prompt / 2); /* the vocabulary dominates the theme prompt */
    CHECK_INT(num(jx_obj(by, "embedding_generation"), "cached_tokens"), 0);
    CHECK_INT(num(llm, "cached_tokens"), total);
    CHECK_INT(fakeproc_stat_int(&fp, "cached_tokens"), total);
    /* the human status shows the cached tokens and their share of the prompt */
    char id[32], share[160];
    snprintf(id, sizeof id, "%lld", (long long)num(run, "id"));
    snprintf(share, sizeof share, "(%lld cached, %.1f%% of prompt)", (long long)theme_cached,
             100.0 * (double)theme_cached / (double)theme_prompt);
    CHECK_INT(e2e_feedline(&env, &out, &err, "status", "--db", db, id, NULL), 0);
    const char *line = out ? strstr(out, "theme_extraction") : NULL;
    CHECK(line && strstr(line, share) && strstr(line, share) < strchr(line, '\n'));
    if (!line || !strstr(line, share)) fprintf(stdout, "    expected %s in:\n%s", share, out);
    else fprintf(stdout, "    %.*s\n", (int)(strchr(line, '\n') - line), line);
    free(out);
    free(err);
    json_decref(run);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(ten_percent_of_every_fault_still_completes_and_loses_nothing) {
    const char *opts[] = {"--fault-429",       "0.1", "--fault-500",     "0.1",
                          "--fault-timeout",   "0.1", "--fault-truncated", "0.1",
                          "--fault-nonjson",   "0.1", "--fault-types",   "0.1",
                          "--retry-after-ms",  "100", "--latency-ms",    "10",
                          "--seed",            "9",   NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    char *db = dataset(80, 13);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp, NULL);
    e2e_env_set(&env, "FEEDLINE_LLM_TIMEOUT_MS=800");
    char *out = NULL, *err = NULL;
    int rc = e2e_feedline(&env, &out, &err, "run", "--db", db, "--llm", "openai", "--concurrency", "16",
                      "--json", NULL);
    if (rc) fprintf(stdout, "    run: %s\n", err);
    CHECK_INT(rc, 0);
    json_t *run = parse(out);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "completed");
    check_accounting(run);
    int64_t failed = num(run, "classification_failed") + num(run, "embeddings_failed") +
                     num(run, "facets_failed") + num(run, "themes_failed");
    /* every failure has its reason in run_errors */
    CHECK(num(run, "error_count") >= failed);
    size_t i;
    json_t *g;
    int64_t listed = 0;
    json_array_foreach(jx_arr(run, "errors"), i, g) {
        const char *msg = jx_str(g, "message");
        CHECK(msg && strlen(msg) > 10);
        listed += jx_int(jx_obj(g, "details"), "count", 0);
    }
    CHECK(listed >= failed);
    json_t *st = fakeproc_stats(&fp);
    json_t *faults = jx_obj(st, "faults");
    const char *kinds[] = {"429", "500", "timeout", "truncated", "nonjson", "types"};
    for (size_t k = 0; k < 6; k++) CHECK(jx_int(faults, kinds[k], 0) > 0);
    char *fj = jx_dump(faults);
    fprintf(stdout, "    %lld requests, %lld phase items failed (with reasons), faults %s\n",
            (long long)jx_int(st, "requests", 0), (long long)failed, fj);
    free(fj);
    /* Most work still succeeds. Transient faults are retried (5 attempts); an answered
     * request is garbage 2 times in 6 (nonjson, types vs none 40%), so after the one
     * repair retry about 1 call in 9 fails as invalid, by design. */
    CHECK(num(run, "conversations_classified") * 4 >= num(run, "conversations_fetched") * 3);
    json_decref(st);
    json_decref(run);
    free(out);
    free(err);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* Spawns `feedline run --llm openai` on db. Once the fake has seen `first` requests of
 * task it applies `config` (a /_config body, or NULL); once it has seen `seen`, the run
 * is asked to stop. Returns the milliseconds from the stop request to the process's
 * exit, its exit status in *rc (-2: still running after 10 s, killed). */
static int64_t run_then_stop(const fakeproc *fp, e2e_env *env, const char *db,
                             const char *concurrency, const char *task, int64_t first,
                             const char *config, int64_t seen, int *rc) {
    char *dir = fx_tmpdir();
    char *log = xasprintf("%s/run.log", dir);
    char *b = (char *)e2e_bin();
    char *argv[] = {b, "run", "--db", (char *)db, "--llm", "openai", "--concurrency",
                    (char *)concurrency, NULL};
    *rc = -1;
    int64_t elapsed = -1;
    pid_t pid = fakeproc_spawn(argv, env->e, log);
    if (pid > 0) {
        int64_t deadline = mono_ms() + 60000;
        while (task_requests(fp, task) < first && mono_ms() < deadline) sleep_ms(5);
        if (config) CHECK_INT(fakeproc_post(fp, "/_config", config), 200);
        while (task_requests(fp, task) < seen && mono_ms() < deadline) sleep_ms(10);
        char *out = NULL, *err = NULL;
        CHECK_INT(e2e_feedline(env, &out, &err, "stop", "--db", db, "1", NULL), 0);
        free(out);
        free(err);
        int64_t t0 = mono_ms();
        *rc = fakeproc_wait(pid, 10000);
        elapsed = mono_ms() - t0;
        if (*rc == -2) kill(pid, SIGKILL);
    }
    free(log);
    fx_rmtree(dir);
    free(dir);
    return elapsed;
}

/* `feedline CMD --db DB --json 1` (status or resume of run 1), checked to exit 0:
 * the run's JSON, or NULL. */
static json_t *run1_json(e2e_env *env, const char *cmd, const char *db) {
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_feedline(env, &out, &err, cmd, "--db", db, "--json", "1", NULL), 0);
    json_t *run = parse(out);
    free(out);
    free(err);
    return run;
}

TEST(stop_mid_theme_phase_is_prompt_keeps_results_and_resumes) {
    const char *opts[] = {"--latency-ms", "20", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    char *db = dataset(80, 14);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp, NULL);
    /* Once the theme phase starts, every request is slow (1 s). */
    const int64_t latency = 1000;
    int rc;
    int64_t elapsed =
        run_then_stop(&fp, &env, db, "6", "theme", 1, "{\"latency_ms\":1000}", 12, &rc);
    fprintf(stdout, "    stopped %lld ms after the stop request (bound %lld ms)\n",
            (long long)elapsed, (long long)(1000 + latency));
    CHECK_INT(rc, 4); /* EXIT_STOPPED */
    CHECK(elapsed >= 0 && elapsed <= 1000 + latency);
    json_t *run = run1_json(&env, "status", db);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "stopped");
    int64_t themes = num(run, "themes_extracted") + num(run, "themes_filtered");
    CHECK(themes > 0); /* finished results kept */
    CHECK_INT(num(run, "themes_failed"), 0); /* cancelled work is not a failure */
    json_decref(run);

    REQUIRE(fakeproc_post(&fp, "/_config", "{\"latency_ms\":5}") == 200);
    run = run1_json(&env, "resume", db);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "completed");
    check_accounting(run);
    CHECK_INT(num(run, "themes_failed"), 0);
    /* ... and not all were done at the stop. */
    CHECK(num(run, "themes_extracted") + num(run, "themes_filtered") > themes);
    json_decref(run);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(stop_while_story_titles_are_asked_cancels_them_and_resumes) {
    /* Story titles take 3 s each, two at a time: without cancellation the titles not
     * yet answered would hold the stop for several rounds of 3 s. */
    const char *opts[] = {"--latency-ms", "10", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    REQUIRE(fakeproc_post(&fp, "/_config", "{\"story_latency_ms\":3000}") == 200);
    char *db = dataset(400, 14);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp, NULL);
    const int64_t latency = 3000;
    int rc;
    int64_t elapsed = run_then_stop(&fp, &env, db, "2", "story", 1, NULL, 2, &rc);
    fprintf(stdout, "    stopped %lld ms after the stop request (bound %lld ms)\n",
            (long long)elapsed, (long long)(1000 + latency));
    CHECK_INT(rc, 4); /* EXIT_STOPPED */
    CHECK(elapsed >= 0 && elapsed <= 1000 + latency);
    CHECK(task_requests(&fp, "story") < 2 * 2); /* the rest were never sent */
    json_t *run = run1_json(&env, "status", db);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "stopped");
    if (strcmp(jx_str(run, "status") ? jx_str(run, "status") : "", "stopped"))
        fprintf(stdout, "    run: %s\n", jx_str(run, "error_message"));
    CHECK_INT(num(run, "stories_created"), 0); /* all or nothing */
    json_decref(run);

    REQUIRE(fakeproc_post(&fp, "/_config", "{\"story_latency_ms\":5}") == 200);
    run = run1_json(&env, "resume", db);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "completed");
    int64_t stories = num(run, "stories_created");
    fprintf(stdout, "    %lld stories after the resume\n", (long long)stories);
    /* enough titles that, uncancelled, they would have outlasted the bound */
    CHECK(stories > 2 * ((1000 + latency) / latency + 1));
    json_decref(run);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(requests_per_minute_flag_is_never_exceeded) {
    /* 1200/min enforced over 3 s windows: at most 60 requests in any 3 s */
    const char *opts[] = {"--rpm", "1200", "--window-ms", "3000", "--latency-ms", "5", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    char *db = dataset(30, 15);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp, NULL);
    char *out = NULL, *err = NULL;
    int64_t t0 = mono_ms();
    CHECK_INT(e2e_feedline(&env, &out, &err, "run", "--db", db, "--llm", "openai", "--rpm", "1200",
                       "--json", NULL), 0);
    int64_t elapsed = mono_ms() - t0;
    json_t *st = fakeproc_stats(&fp);
    int64_t n = jx_int(st, "requests", 0);
    fprintf(stdout, "    %lld requests in %lld ms, at most %lld in a 3 s window (limit 60)\n",
            (long long)n, (long long)elapsed, (long long)jx_int(st, "max_window_arrivals", 0));
    CHECK_INT(jx_int(st, "rate_limited", -1), 0);
    CHECK(jx_int(st, "max_window_arrivals", 99) <= 60);
    CHECK(elapsed >= (n - 1) * 1000 / 20); /* paced at <= 20/s */
    json_decref(st);
    free(out);
    free(err);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(a_refused_api_key_fails_the_run_once_with_the_reason) {
    const char *opts[] = {"--require-key", "the-right-key", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    char *db = dataset(20, 16);
    REQUIRE(db != NULL);
    e2e_env env;
    env_for(&env, &fp, "a-wrong-key");
    char *out = NULL, *err = NULL;
    /* no --llm: a key in the environment selects openai, and says so */
    CHECK_INT(e2e_feedline(&env, &out, &err, "run", "--db", db, "--json", NULL), 1);
    CHECK(err && strstr(err, "using --llm openai") != NULL);
    json_t *run = parse(out);
    REQUIRE(run != NULL);
    CHECK_STR(jx_str(run, "status"), "failed");
    const char *why = jx_str(run, "error_message");
    CHECK(why && strstr(why, "HTTP 401") && strstr(why, "API key"));
    CHECK_INT(num(run, "classification_failed"), 0);
    CHECK(num(run, "error_count") <= 1);
    CHECK(fakeproc_stat_int(&fp, "unauthorized") >= 1);
    json_decref(run);
    free(out);
    free(err);
    e2e_env_free(&env);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

/* Imports one conversation per thing ("The THING exporter crashes ...": the fake
 * reads a new signature named after the thing into each) into a fresh database and
 * runs every phase against the fake at the given concurrency. Returns the run's JSON
 * (NULL on failure); *db_out is the database URL (caller frees). */
static json_t *run_novel(const fakeproc *fp, const char *const *things, size_t n,
                         const char *concurrency, char **db_out) {
    char *dir = fx_tmpdir();
    char *file = xasprintf("%s/novel.jsonl", dir);
    FILE *f = fopen(file, "w");
    json_t *run = NULL;
    *db_out = fx_db_url();
    if (f) {
        for (size_t i = 0; i < n; i++)
            fprintf(f,
                    "{\"id\":\"n%zu\",\"created_at\":\"2026-01-20T10:00:00Z\",\"messages\":[{"
                    "\"author\":\"customer\",\"body\":\"The %s exporter crashes with error HX-42 "
                    "every time I export a %s to the %s panel (case %zu).\"}]}\n",
                    i, things[i], things[i], things[i], i);
        fclose(f);
        e2e_env env;
        env_for(&env, fp, NULL);
        char *out = NULL, *err = NULL;
        int rc = e2e_feedline(&env, &out, &err, "import", "--db", *db_out, file, NULL);
        free(out);
        free(err);
        out = err = NULL;
        if (rc == 0)
            rc = e2e_feedline(&env, &out, &err, "run", "--db", *db_out, "--llm", "openai",
                          "--concurrency", concurrency, "--json", NULL);
        if (rc == 0) run = parse(out);
        else fprintf(stdout, "    import or run failed (%d): %s\n", rc, err ? err : "");
        free(out);
        free(err);
        e2e_env_free(&env);
    }
    free(file);
    fx_rmtree(dir);
    free(dir);
    return run;
}

TEST(concurrent_extractions_of_one_new_signature_make_one_signature) {
    static const char *const same[] = {"hologram", "hologram", "hologram",
                                       "hologram", "hologram", "hologram"};
    const char *opts[] = {"--latency-ms", "50", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    char *db = NULL;
    json_t *run = run_novel(&fp, same, 6, "8", &db);
    REQUIRE(run != NULL);
    CHECK_INT(num(run, "themes_extracted"), 6);
    CHECK_INT(num(run, "themes_new"), 1);
    /* all six extractions were in flight together, yet one signature was minted: the
     * first canonicalisation of the area ran, the others waited and reused it */
    CHECK_INT(task_requests(&fp, "theme"), 6);
    CHECK_INT(task_requests(&fp, "canonicalize"), 1);
    store *st = fx_store_open(db);
    story_input *in = NULL;
    size_t n = 0;
    REQUIRE(store_story_inputs(st, num(run, "id"), NULL, &in, &n) == STORE_OK);
    CHECK_INT(n, 6);
    for (size_t i = 1; i < n; i++) CHECK_STR(in[i].signature, in[0].signature);
    CHECK(n && strstr(in[0].signature, "hologram") != NULL);
    char **sigs = NULL;
    size_t ns = 0;
    REQUIRE(n > 0 && store_signature_list(st, in[0].product_area, 50, &sigs, &ns) == STORE_OK);
    CHECK_INT(ns, 1);
    for (size_t i = 0; i < ns; i++) free(sigs[i]);
    free(sigs);
    story_inputs_free(in, n);
    store_close(st);
    json_decref(run);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

TEST(new_signatures_of_an_area_are_canonicalised_in_batches) {
    /* 14 conversations of one area, each minting a different new signature, at
     * concurrency 4: the proposals wait (no slot is idle while extractions remain) and
     * go to the endpoint several per request, each exactly once */
    static const char *const things[] = {
        "hologram", "frobnicator", "zeppelin",  "quasar",       "gizmotron",
        "flux capacitor", "warp coil", "plasma relay", "tachyon grid", "sprocket hub",
        "nebula cache",   "photon bridge", "ion lattice", "vortex meter"};
    const size_t nthings = sizeof things / sizeof *things;
    const char *opts[] = {"--latency-ms", "50", NULL};
    fakeproc fp;
    REQUIRE(e2e_start_fake(&fp, opts) == 0);
    char *db = NULL;
    json_t *run = run_novel(&fp, things, nthings, "4", &db);
    REQUIRE(run != NULL);
    CHECK_INT(num(run, "themes_extracted"), (int64_t)nthings);
    CHECK_INT(num(run, "themes_new"), (int64_t)nthings);
    CHECK_INT(task_requests(&fp, "theme"), (int64_t)nthings);
    int64_t canon = task_requests(&fp, "canonicalize");
    fprintf(stdout, "    %zu new signatures canonicalised in %lld requests (at most %lld in one)\n",
            nthings, (long long)canon, (long long)fakeproc_stat_int(&fp, "canonicalize_max_proposals"));
    CHECK_INT(fakeproc_stat_int(&fp, "canonicalize_proposals"), (int64_t)nthings);
    /* the first batch fills before the extractions run out; none is over the limit */
    CHECK_INT(fakeproc_stat_int(&fp, "canonicalize_max_proposals"), LLM_CANON_BATCH_MAX);
    CHECK(canon >= 2 && canon <= (int64_t)nthings - LLM_CANON_BATCH_MAX + 1);
    /* every conversation kept its own signature: batching merged nothing */
    store *st = fx_store_open(db);
    story_input *in = NULL;
    size_t n = 0;
    REQUIRE(store_story_inputs(st, num(run, "id"), NULL, &in, &n) == STORE_OK);
    CHECK_INT(n, nthings);
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++) CHECK(strcmp(in[i].signature, in[k].signature) != 0);
    story_inputs_free(in, n);
    store_close(st);
    json_decref(run);
    free(db);
    CHECK_INT(fakeproc_stop(&fp), 0);
}

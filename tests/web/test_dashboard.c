/* The dashboard in a real browser: the server (sanitizer build) on the bundled sample,
 * LLM calls against the fake OpenAI endpoint with some latency so progress is visible,
 * and tests/web/dashboard.mjs (playwright-core driving Debian's headless chromium)
 * starting a run, watching it progress, stopping, resuming, reading the review summary,
 * opening a story, closing it, exporting the run's stories to markdown, reading themes,
 * at desktop and phone widths. The server runs in a scratch directory of its own (the
 * markdown export writes stories.md into its working directory), which is checked for
 * that file afterwards. Screenshots go to test-artifacts/dashboard/.
 * Needs chromium, node and tests/web/node_modules (make test installs them). */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

#include "source/source.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "support/server.h"
#include "util/mem.h"

static char *sample_db(void) {
    char *db = fx_db_url();
    store *st = fx_store_open(db);
    char *sample = fx_path("data/sample_conversations.jsonl");
    import_stats s = {0};
    char err[256];
    int rc = import_file(st, sample, &s, NULL, NULL, err, sizeof err);
    store_close(st);
    free(sample);
    return rc == 0 ? db : NULL;
}

static void browser_session(const char *token) {
    char *vocab = fx_path("data/theme_vocabulary.json");
    const char *fargs[] = {"--port", "0", "--vocab", vocab, "--latency-ms", "60", NULL};
    fakeproc fake;
    REQUIRE(fakeproc_start(&fake, "fake_openai", fargs) == 0);
    char *db = sample_db();
    REQUIRE(db != NULL);
    char *base = xasprintf("OPENAI_BASE_URL=%s/v1", fake.url);
    char *tok = xasprintf("FEEDLINE_API_TOKEN=%s", token ? token : "");
    const char *env[] = {base, "OPENAI_API_KEY=sk-test", token ? tok : NULL, NULL};
    test_server srv;
    /* Every path handed to the server is absolute (FEEDLINE_BIN, FEEDLINE_ROOT, the
     * database, the log), so it may start in the scratch directory. */
    char *srvdir = fx_tmpdir();
    char cwd[4096];
    REQUIRE(getcwd(cwd, sizeof cwd) != NULL);
    REQUIRE(chdir(srvdir) == 0);
    int started = ts_start(&srv, db, NULL, env);
    REQUIRE(chdir(cwd) == 0);
    REQUIRE(started == 0);

    char *script = fx_path("tests/web/dashboard.mjs");
    char *shots = fx_path(token ? "test-artifacts/dashboard-token" : "test-artifacts/dashboard");
    char *e_base = xasprintf("BASE_URL=%s", srv.base), *e_shots = xasprintf("SHOT_DIR=%s", shots);
    char *e_tok = xasprintf("API_TOKEN=%s", token ? token : "");
    char *argv[] = {"node", script, NULL};
    char *benv[] = {e_base, e_shots, e_tok, "RUN_LLM=openai", NULL};
    char *out = NULL, *err = NULL;
    int rc = fx_run(argv, benv, &out, &err);
    fprintf(stdout, "%s", out ? out : "");
    if (rc != 0) {
        fprintf(stdout, "    browser script exit %d: %s\n", rc, err ? err : "");
        ts_dump_log(&srv);
    }
    CHECK_INT(rc, 0);
    CHECK(out && strstr(out, "all steps passed") != NULL);
    CHECK_INT(ts_stop(&srv, 30000), 0);
    char *md_path = xasprintf("%s/stories.md", srvdir);
    FILE *md = fopen(md_path, "r");
    CHECK(md != NULL); /* the export from the page wrote it there */
    if (md) {
        char line[4096];
        int head = 0, stories = 0;
        while (fgets(line, sizeof line, md)) {
            if (strncmp(line, "# feedline stories", 18) == 0) head = 1;
            if (strstr(line, "feedline story ")) stories++;
        }
        CHECK(head);
        CHECK(stories > 0);
        fclose(md);
    }
    free(md_path);
    fx_rmtree(srvdir);
    free(srvdir);
    json_t *stats = fakeproc_stats(&fake);
    CHECK(stats && json_integer_value(json_object_get(stats, "requests")) > 100);
    json_decref(stats);
    fakeproc_stop(&fake);
    free(out);
    free(err);
    free(script);
    free(shots);
    free(e_base);
    free(e_shots);
    free(e_tok);
    free(base);
    free(tok);
    free(vocab);
    free(db);
}

TEST(dashboard_runs_stops_resumes_and_shows_stories) { browser_session(NULL); }

TEST(dashboard_works_with_an_api_token) { browser_session("s3cret-token"); }

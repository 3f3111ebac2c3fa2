/* End to end on the embedded defaults, through the real CLI binary: import the bundled
 * sample, run the whole pipeline offline, check the stories against ground truth. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "support/fixtures.h"
#include "support/truth.h"
#include "util/mem.h"

static int feedline(char **out, char **err, ...) {
    const char *args[32];
    int n = 0;
    va_list ap;
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31) args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return fx_feedline(args, NULL, out, err);
}

TEST(sample_import_run_and_story_purity) {
    char *db = fx_db_url();
    char *sample = fx_path("data/sample_conversations.jsonl");
    char *out = NULL, *err = NULL;
    int rc = feedline(&out, &err, "import", "--db", db, sample, NULL);
    if (rc) fprintf(stdout, "    import: %s %s\n", out, err);
    CHECK_INT(rc, 0);
    CHECK(strstr(out, "0 rejected") != NULL);
    free(out);
    free(err);

    rc = feedline(&out, &err, "run", "--db", db, "--llm", "local", "--json", NULL);
    if (rc) fprintf(stdout, "    run: %s %s\n", out, err);
    REQUIRE(rc == 0);
    json_t *run = json_loads(out, 0, NULL);
    REQUIRE(run != NULL);
    CHECK_STR(json_string_value(json_object_get(run, "status")), "completed");
    long long fetched = json_integer_value(json_object_get(run, "conversations_fetched"));
    long long classified = json_integer_value(json_object_get(run, "conversations_classified"));
    long long themes = json_integer_value(json_object_get(run, "themes_extracted"));
    long long stories = json_integer_value(json_object_get(run, "stories_created"));
    CHECK(fetched >= 350);
    CHECK_INT(classified + json_integer_value(json_object_get(run, "classification_failed")), fetched);
    CHECK(themes > 100);
    CHECK(stories >= 8);
    fprintf(stdout, "    %lld conversations, %lld themes, %lld stories\n", fetched, themes, stories);
    json_decref(run);
    free(out);
    free(err);

    rc = feedline(&out, &err, "stories", "--db", db, "--format", "json", NULL);
    CHECK_INT(rc, 0);
    json_t *list = json_loads(out, 0, NULL);
    REQUIRE(json_is_array(list));
    CHECK_INT(json_array_size(list), stories);
    strmap_t truth = STRMAP_INIT;
    char *tpath = fx_path("data/sample_truth.tsv");
    REQUIRE(truth_load(tpath, &truth) == 0);
    int dups = 0, covered = 0;
    double purity = truth_purity(&truth, list, &dups, &covered);
    fprintf(stdout, "    story purity %.3f over %zu stories, %d conversations in stories\n", purity,
            json_array_size(list), covered);
    CHECK(purity >= 0.8);
    CHECK_INT(dups, 0);
    strmap_free(&truth, free);
    json_decref(list);
    free(tpath);
    free(out);
    free(err);

    /* every output format works */
    const char *formats[] = {"table", "csv", "markdown"};
    for (int i = 0; i < 3; i++) {
        rc = feedline(&out, &err, "stories", "--db", db, "--format", formats[i], NULL);
        CHECK_INT(rc, 0);
        CHECK(out && strlen(out) > 100);
        free(out);
        free(err);
    }
    /* re-import: unchanged */
    rc = feedline(&out, &err, "import", "--db", db, sample, NULL);
    CHECK_INT(rc, 0);
    CHECK(strstr(out, " 0 imported, 0 updated") != NULL);
    free(out);
    free(err);
    free(sample);
    free(db);
}

/* `feedline demo` outside the project: the bundled sample and the vocabulary are found
 * in the tree the binary was built in, not only under the working directory (it
 * failed with "data/sample_conversations.jsonl: cannot open" before). */
TEST(demo_runs_from_any_directory) {
    char *dir = fx_tmpdir();
    const char *bin = fx_feedline_bin();
    char *abs_bin = bin[0] == '/' ? xstrdup(bin) : fx_path(bin);
    char *argv[] = {"/bin/sh", "-c", "unset FEEDLINE_VOCAB; cd \"$1\" && exec \"$2\" demo", "sh",
                    dir, abs_bin, NULL};
    char *out = NULL, *err = NULL;
    int rc = fx_run(argv, NULL, &out, &err);
    if (rc) fprintf(stdout, "    demo: %s %s\n", out, err);
    CHECK_INT(rc, 0);
    CHECK(strstr(out, "0 rejected") != NULL);
    CHECK(strstr(out, "run 1: completed") != NULL);
    CHECK(strstr(out, "Stories of run 1:") != NULL);
    char *db = xasprintf("%s/feedline-demo.db", dir);
    CHECK(access(db, R_OK) == 0);
    free(db);
    free(out);
    free(err);
    free(abs_bin);
    fx_rmtree(dir);
    free(dir);
}

/* A feedline binary away from its tree (and any data/ of the working directory) has
 * no sample: the demo says which file it looked for, exits 1, and leaves the previous
 * demo database as it was (it used to delete it first). */
TEST(demo_without_its_sample_keeps_the_previous_database) {
    char *dir = fx_tmpdir();
    const char *bin = fx_feedline_bin();
    char *abs_bin = bin[0] == '/' ? xstrdup(bin) : fx_path(bin);
    char *lone = xasprintf("%s/feedline", dir), *db = xasprintf("%s/feedline-demo.db", dir);
    char *cp[] = {"cp", abs_bin, lone, NULL};
    REQUIRE(fx_run(cp, NULL, NULL, NULL) == 0);
    REQUIRE(fx_write_file(db, "an earlier demo") == 0);
    char *argv[] = {"/bin/sh", "-c", "unset FEEDLINE_VOCAB; cd \"$1\" && exec ./feedline demo",
                    "sh", dir, NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(fx_run(argv, NULL, &out, &err), 1);
    CHECK(strstr(err, "data/sample_conversations.jsonl") != NULL);
    FILE *f = fopen(db, "r");
    char kept[64] = "";
    CHECK(f != NULL);
    if (f) {
        CHECK(fgets(kept, sizeof kept, f) != NULL);
        fclose(f);
    }
    CHECK_STR(kept, "an earlier demo");
    free(out);
    free(err);
    free(lone);
    free(db);
    free(abs_bin);
    fx_rmtree(dir);
    free(dir);
}

TEST(cli_reports_bad_arguments_and_help) {
    char *out = NULL, *err = NULL;
    CHECK_INT(feedline(&out, &err, "run", "--concurrency", "0", NULL), 2);
    CHECK(strstr(err, "--concurrency: 0 is out of range") != NULL);
    free(out);
    free(err);
    CHECK_INT(feedline(&out, &err, "run", "--llm", "gpt", NULL), 2);
    CHECK(strstr(err, "--llm must be local or openai") != NULL);
    free(out);
    free(err);
    CHECK_INT(feedline(&out, &err, "frobnicate", NULL), 2);
    CHECK(strstr(err, "unknown command") != NULL);
    free(out);
    free(err);
    const char *cmds[] = {"import", "run", "resume", "stop", "runs", "status", "stories", "demo"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        CHECK_INT(feedline(&out, &err, cmds[i], "--help", NULL), 0);
        CHECK(strstr(out, "usage: feedline") != NULL);
        free(out);
        free(err);
    }
    char *db = fx_db_url();
    CHECK_INT(feedline(&out, &err, "status", "--db", db, "7", NULL), 1);
    CHECK(strstr(err, "no such run") != NULL);
    free(out);
    free(err);
    CHECK_INT(feedline(&out, &err, "stories", "--db", db, NULL), 1);
    CHECK(strstr(err, "no run has created stories yet") != NULL);
    free(out);
    free(err);
    free(db);
}

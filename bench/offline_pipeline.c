/* Benchmark of the foundation (issue 2): import rate of a generated corpus, offline
 * pipeline wall time and peak RSS per corpus size, and story purity on the bundled
 * sample. Run from the repository root after `make bench`:
 *
 *   build/bench/offline_pipeline [SIZE...]      (default: 10000 100000)
 *
 * Uses the release binaries build/feedline and build/gen_sample, a temporary
 * directory, and prints one line per size plus the purity line. */
#include "bench.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_report.h"
#include "support/fixtures.h"
#include "support/measure.h"
#include "support/truth.h"
#include "util/mem.h"

static measured run_cmd(const char *label, char *const argv[]) {
    measured m = measure_run(argv, NULL);
    if (m.status != 0) fprintf(stderr, "%s failed with status %d\n", label, m.status);
    return m;
}

static int bench_size(const char *dir, long n) {
    char count[32];
    snprintf(count, sizeof count, "%ld", n);
    char *jsonl = xasprintf("%s/c%ld.jsonl", dir, n), *db = xasprintf("%s/b%ld.db", dir, n);
    char *gen[] = {"build/gen_sample", "--count", count, "--seed", "7", "--out", jsonl, NULL};
    if (run_cmd("gen_sample", gen).status) return -1;
    char *imp[] = {"build/feedline", "import", "--db", db, jsonl, NULL};
    measured mi = run_cmd("import", imp);
    char *run[] = {"build/feedline", "run", "--db", db, "--llm", "local", NULL};
    measured mr = run_cmd("run", run);
    if (mi.status || mr.status) return -1;
    store *st = fx_store_open(db);
    run_record r;
    store_run_get(st, 1, &r);
    printf("%8ld conversations | import %6.2f s = %7.0f conv/s, peak RSS %6.1f MB | "
           "pipeline %7.2f s (%.0f conv/s), peak RSS %6.1f MB | %lld themes, %lld stories\n",
           n, mi.wall_s, (double)n / mi.wall_s, mi.max_rss_kb / 1024.0, mr.wall_s,
           (double)r.conversations_fetched / mr.wall_s, mr.max_rss_kb / 1024.0,
           (long long)r.themes_extracted, (long long)r.stories_created);
    run_record_free(&r);
    store_close(st);
    free(jsonl);
    free(db);
    return 0;
}

static int bench_purity(const char *dir) {
    char *db = xasprintf("%s/sample.db", dir);
    char *imp[] = {"build/feedline", "import", "--db", db, "data/sample_conversations.jsonl", NULL};
    char *run[] = {"build/feedline", "run", "--db", db, "--llm", "local", NULL};
    if (run_cmd("import", imp).status || run_cmd("run", run).status) return -1;
    store *st = fx_store_open(db);
    story_filter f = {0};
    f.run_id = 1;
    f.with_conversation_ids = 1;
    json_t *stories = NULL;
    int64_t total = 0;
    store_stories_json(st, &f, &stories, &total);
    strmap_t truth = STRMAP_INIT;
    truth_load("data/sample_truth.tsv", &truth);
    int dups = 0, covered = 0;
    double purity = truth_purity(&truth, stories, &dups, &covered);
    printf("sample (data/sample_conversations.jsonl): %lld stories, %d conversations in stories, "
           "story purity %.3f, conversations in two stories: %d\n",
           (long long)total, covered, purity, dups);
    strmap_free(&truth, free);
    json_decref(stories);
    store_close(st);
    free(db);
    return 0;
}

static const char USAGE[] =
    "usage: offline_pipeline [SIZE...]   (conversations per run; default 10000 100000)\n";

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        long n = strtol(argv[i], &end, 10);
        if (*end || n < 1) {
            fprintf(stderr, "offline_pipeline: \"%s\" is not a number of conversations\n", argv[i]);
            return bench_usage_error(USAGE);
        }
    }
    char *dir = fx_tmpdir();
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && rc == 0; i++) rc = bench_size(dir, strtol(argv[i], NULL, 10));
    } else {
        rc = bench_size(dir, 10000);
        if (rc == 0) rc = bench_size(dir, 100000);
    }
    if (rc == 0) rc = bench_purity(dir);
    fx_rmtree(dir);
    free(dir);
    return rc ? 1 : 0;
}

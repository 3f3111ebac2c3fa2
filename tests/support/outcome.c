/* Outcomes of runs, compared (outcome.h). */
#include "support/outcome.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"
#include "store/store_report.h"
#include "support/fixtures.h"
#include "util/buf.h"
#include "util/mem.h"

int64_t outcome_int(const char *url, const char *sql, int64_t run) {
    char err[256];
    db_t *db = db_open(url, err, sizeof err);
    if (!db) return -1;
    db_stmt *st = db_prepare(db, sql);
    int64_t v = -1;
    if (st) {
        int k = 0, ok = 1;
        for (const char *p = sql; *p; p++)
            if (*p == '?') ok &= db_bind_int(st, ++k, run) == 0;
        if (ok && db_step(st) == DB_ROW) v = db_col_int(st, 0);
        db_finalize(st);
    }
    db_close(db);
    return v;
}

run_record outcome_run(const char *url, int64_t id) {
    store *st = fx_store_open(url);
    run_record r;
    if (store_run_get(st, id, &r) != STORE_FOUND) memset(&r, 0, sizeof r);
    store_close(st);
    return r;
}

static int cmp_line(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *outcome_stories_of(const json_t *stories) {
    size_t n = json_array_size(stories);
    char **lines = xcalloc(n + 1, sizeof(char *));
    size_t i;
    json_t *s;
    json_array_foreach(stories, i, s) {
        char *ids = json_dumps(json_object_get(s, "conversation_ids"), JSON_COMPACT);
        lines[i] = xasprintf("%s|%s|%s", json_string_value(json_object_get(s, "signature")),
                             json_string_value(json_object_get(s, "title")), ids ? ids : "");
        free(ids);
    }
    qsort(lines, n, sizeof *lines, cmp_line);
    buf_t out = BUF_INIT;
    for (i = 0; i < n; i++) {
        buf_puts(&out, lines[i]);
        buf_putc(&out, '\n');
        free(lines[i]);
    }
    free(lines);
    return buf_detach(&out);
}

char *outcome_stories(const char *url, int64_t run) {
    store *st = fx_store_open(url);
    story_filter f = {0};
    f.run_id = run;
    f.with_conversation_ids = 1;
    json_t *arr = NULL;
    if (store_stories_json(st, &f, &arr, NULL) != STORE_OK) {
        fprintf(stdout, "    reading the stories of run %lld: %s\n", (long long)run,
                store_errmsg(st));
        arr = NULL;
    }
    store_close(st);
    char *out = outcome_stories_of(arr);
    json_decref(arr);
    return out;
}

/* Result tables: rows per run, and distinct conversations among them. */
static const char *const RESULT_TABLES[] = {"classifications", "embeddings", "facets", "themes",
                                            "story_evidence"};
#define NTABLES (sizeof RESULT_TABLES / sizeof RESULT_TABLES[0])

static void table_counts(const char *url, int64_t run, int64_t rows[NTABLES],
                         int64_t distinct[NTABLES]) {
    for (size_t i = 0; i < NTABLES; i++) {
        char *sql = xasprintf("SELECT COUNT(*) FROM %s WHERE run_id = ?", RESULT_TABLES[i]);
        rows[i] = outcome_int(url, sql, run);
        free(sql);
        sql = xasprintf("SELECT COUNT(DISTINCT conversation_id) FROM %s WHERE run_id = ?",
                        RESULT_TABLES[i]);
        distinct[i] = outcome_int(url, sql, run);
        free(sql);
    }
}

int outcome_same(const char *ref_db, int64_t ref_id, const char *db, int64_t id) {
    run_record a = outcome_run(ref_db, ref_id), b = outcome_run(db, id);
    int same = 1;
    if (strcmp(a.status, "completed") != 0 || strcmp(b.status, "completed") != 0) {
        fprintf(stdout, "    run %lld: %s, reference: %s\n", (long long)id, b.status, a.status);
        same = 0;
    }
#define SAME(n)                                                                          \
    if (b.n != a.n) {                                                                    \
        fprintf(stdout, "    %s: %lld, reference %lld\n", #n, (long long)b.n, (long long)a.n); \
        same = 0;                                                                        \
    }
    RUN_COUNTERS(SAME)
#undef SAME
    if (!(a.conversations_classified > 0 && a.themes_extracted > 0 && a.stories_created > 0)) {
        fprintf(stdout, "    the reference run did too little to compare\n");
        same = 0;
    }
    int64_t ra[NTABLES], da[NTABLES], rb[NTABLES], dbn[NTABLES];
    table_counts(ref_db, ref_id, ra, da);
    table_counts(db, id, rb, dbn);
    for (size_t i = 0; i < NTABLES; i++) {
        if (rb[i] != ra[i] || rb[i] != dbn[i] || rb[i] <= 0) {
            fprintf(stdout, "    %s: %lld rows (%lld distinct), reference %lld\n", RESULT_TABLES[i],
                    (long long)rb[i], (long long)dbn[i], (long long)ra[i]);
            same = 0;
        }
    }
    char *fa = outcome_stories(ref_db, ref_id), *fb = outcome_stories(db, id);
    if (strcmp(fa, fb) != 0) {
        fprintf(stdout, "    stories differ:\n%s    reference:\n%s", fb, fa);
        same = 0;
    }
    free(fa);
    free(fb);
    run_record_free(&a);
    run_record_free(&b);
    return same;
}

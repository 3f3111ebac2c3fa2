/* store_upsert — write rate of phase results through the store, SQLite and PostgreSQL
 * side by side.
 *
 * For each backend: imports N conversations, creates a run and seeds its work, then
 * times (1) store_put_classification for every conversation, (2) the same again (the
 * update path of the upsert: a resumed run rewriting results), (3) store_put_theme for
 * every conversation, each in transactions of --batch rows like the pipeline's flush.
 * Every put is the result upsert plus closing the work item and clearing an old
 * failure, i.e. what a phase really writes per conversation. Prints rows/s.
 *
 *   store_upsert [--rows 20000] [--batch 256] [--pg URL]...
 *
 * PostgreSQL: each --pg URL (or FEEDLINE_BENCH_PG) names a server; the benchmark
 * creates a fresh database there. Without one it starts a throwaway cluster with
 * scripts/pg-test-cluster (found under FEEDLINE_ROOT or the current directory) in
 * /tmp and removes it afterwards; PG_TEST_CLUSTER_DURABLE=1 makes that cluster keep
 * fsync and synchronous_commit on. */
#include "bench.h"
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "support/fixtures.h"
#include "util/util.h"

typedef struct bench_opts {
    int rows;
    int batch;
} bench_opts;

typedef struct bench_result {
    double classify_rps, rewrite_rps, theme_rps;
} bench_result;

static void die(const char *what, store *s) {
    fprintf(stderr, "store_upsert: %s: %s\n", what, s ? store_errmsg(s) : "");
    exit(1);
}

static void import_conversations(store *s, int rows) {
    if (store_begin(s)) die("begin", s);
    for (int i = 0; i < rows; i++) {
        conv_record r;
        char id[32], body[160];
        snprintf(id, sizeof id, "conv%07d", i);
        snprintf(body, sizeof body,
                 "Conversation %d: my scheduled pins are not posting to the board since "
                 "yesterday, the queue shows them as sent.", i);
        fx_record(&r, id, 1700000000 + i, body);
        enum upsert_outcome o;
        if (store_conv_upsert(s, &r, 1700000000, &o)) die("importing", s);
        conv_record_free(&r);
        if (i % 1000 == 999 && (store_commit(s) || store_begin(s))) die("importing", s);
    }
    if (store_commit(s)) die("commit", s);
}

static void fill_classification(classification_row *r, const char *id, int pass) {
    memset(r, 0, sizeof *r);
    r->conversation_id = id;
    r->stage1_type = "product_issue";
    r->stage1_confidence = "high";
    r->urgency = pass ? "high" : "normal";
    r->routing_priority = "normal";
    r->routing_team = "technical_support";
    r->stage2_type = "product_issue";
    r->stage2_confidence = "high";
    r->disambiguation_level = "low";
    r->reasoning = "The customer reports scheduled pins that never reach the board.";
    r->support_insights_json = "{\"issue_confirmed\":true,\"root_cause\":\"queue stalled\"}";
    r->final_type = "product_issue";
    r->final_confidence = "high";
    r->actionable = 1;
}

static void fill_theme(theme_row *t, const char *id) {
    memset(t, 0, sizeof *t);
    t->conversation_id = id;
    t->product_area = "scheduling";
    t->component = "pin_scheduler";
    t->issue_signature = "scheduled_pins_not_posting";
    t->match_confidence = "high";
    t->user_intent = "Publish scheduled pins on time";
    t->symptoms_json = "[\"pins stay in the queue\",\"no error shown\"]";
    t->affected_flow = "Schedule pin -> queue -> publish";
    t->root_cause_hypothesis = "The publishing worker skips the board";
    t->diagnostic_summary = "Scheduled pins are marked sent but never appear on the board.";
    t->key_excerpts_json = "[{\"text\":\"the queue shows them as sent\"}]";
    t->quality_score = 0.9;
    t->quality_details_json = "{\"score\":0.9}";
    t->passed = 1;
}

typedef int (*put_fn)(store *s, int64_t run, const char *id, int pass);

static int put_classification(store *s, int64_t run, const char *id, int pass) {
    classification_row r;
    fill_classification(&r, id, pass);
    return store_put_classification(s, run, &r, 1700000100);
}

static int put_theme(store *s, int64_t run, const char *id, int pass) {
    (void)pass;
    theme_row t;
    fill_theme(&t, id);
    return store_put_theme(s, run, &t, 1700000200);
}

/* Writes one result per conversation in transactions of batch rows; rows/s. */
static double timed_puts(store *s, int64_t run, const bench_opts *o, put_fn put, int pass) {
    int64_t t0 = mono_us();
    for (int i = 0; i < o->rows;) {
        if (store_begin(s)) die("begin", s);
        for (int k = 0; k < o->batch && i < o->rows; k++, i++) {
            char id[32];
            snprintf(id, sizeof id, "conv%07d", i);
            if (put(s, run, id, pass)) die("writing results", s);
        }
        if (store_commit(s)) die("commit", s);
    }
    double secs = (double)(mono_us() - t0) / 1e6;
    return o->rows / secs;
}

static bench_result run_backend(const char *url, const bench_opts *o) {
    store *s = NULL;
    char err[512];
    if (store_open(url, &s, err, sizeof err)) {
        fprintf(stderr, "store_upsert: %s\n", err);
        exit(1);
    }
    import_conversations(s, o->rows);
    run_params p = {0};
    p.concurrency = 20;
    p.llm = "local";
    int64_t run, count;
    if (store_run_create(s, &p, 1700000050, &run, NULL)) die("creating the run", s);
    if (store_work_seed_conversations(s, run, 0, 1800000000, 0, &count)) die("seeding", s);
    bench_result r;
    r.classify_rps = timed_puts(s, run, o, put_classification, 0);
    r.rewrite_rps = timed_puts(s, run, o, put_classification, 1);
    if (store_work_seed_actionable(s, run, PHASE_THEMES, &count)) die("seeding themes", s);
    r.theme_rps = timed_puts(s, run, o, put_theme, 0);
    store_close(s);
    return r;
}

/* A fresh database on the server at server_url; its URL (caller frees). */
static char *fresh_pg_database(const char *server_url) {
    PGconn *c = PQconnectdb(server_url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "store_upsert: %s: %s", server_url, PQerrorMessage(c));
        exit(1);
    }
    char name[64];
    snprintf(name, sizeof name, "feedline_bench_%ld_%llx", (long)getpid(),
             (unsigned long long)(mono_us() & 0xffffffffffULL));
    char *sql = xasprintf("CREATE DATABASE %s", name);
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "store_upsert: %s: %s", sql, PQresultErrorMessage(res));
        exit(1);
    }
    PQclear(res);
    PQfinish(c);
    free(sql);
    /* Replace the path (database name) of the URL, keeping any ?parameters. */
    const char *auth = strstr(server_url, "://");
    const char *path = strchr(auth ? auth + 3 : server_url, '/');
    const char *query = strchr(server_url, '?');
    if (query && path && path > query) path = NULL;
    size_t head = path ? (size_t)(path - server_url)
                       : query ? (size_t)(query - server_url) : strlen(server_url);
    return xasprintf("%.*s/%s%s", (int)head, server_url, name, query ? query : "");
}

/* scripts/pg-test-cluster ACTION DIR; its output's first line in out (may be NULL). */
static int cluster(const char *action, const char *dir, char *out, size_t outlen) {
    const char *root = getenv("FEEDLINE_ROOT");
    char *cmd = xasprintf("%s/scripts/pg-test-cluster %s %s", root && root[0] ? root : ".",
                          action, dir);
    FILE *f = popen(cmd, "r");
    free(cmd);
    if (!f) return -1;
    char line[512] = "";
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    line[strcspn(line, "\n")] = '\0';
    if (out) snprintf(out, outlen, "%s", line);
    return pclose(f) == 0 ? 0 : -1;
}

static void print_row(const char *label, int rows, const bench_result *r) {
    printf("%-40s %7d %12.0f %12.0f %12.0f\n", label, rows, r->classify_rps, r->rewrite_rps,
           r->theme_rps);
    fflush(stdout);
}

static const char USAGE[] =
    "usage: store_upsert [--rows N] [--batch N] [--pg URL]...\n";

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    bench_opts o = {20000, 256};
    const char *pg_urls[8];
    int npg = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc) o.rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) o.batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pg") && i + 1 < argc && npg < 8) pg_urls[npg++] = argv[++i];
        else {
            return bench_usage_error(USAGE);
        }
    }
    if (o.rows <= 0 || o.batch <= 0) {
        fprintf(stderr, "store_upsert: --rows and --batch must be positive\n");
        return 2;
    }
    const char *env = getenv("FEEDLINE_BENCH_PG");
    if (npg == 0 && env && env[0]) pg_urls[npg++] = env;

    printf("%-40s %7s %12s %12s %12s\n", "backend (rows/s)", "rows", "classify",
           "re-classify", "themes");
    char *dir = fx_tmpdir();
    char *sqlite_url = xasprintf("%s/bench.db", dir);
    bench_result r = run_backend(sqlite_url, &o);
    print_row("sqlite (WAL, synchronous=NORMAL)", o.rows, &r);
    free(sqlite_url);
    fx_rmtree(dir);
    free(dir);

    char cluster_dir[] = "/tmp/feedline-bench-pg.XXXXXX";
    char started[512] = "";
    if (npg == 0) {
        if (!mkdtemp(cluster_dir) || cluster("start", cluster_dir, started, sizeof started)) {
            fprintf(stderr, "store_upsert: could not start a PostgreSQL cluster; pass --pg URL\n");
            return 1;
        }
        pg_urls[npg++] = started;
    }
    for (int i = 0; i < npg; i++) {
        char *url = fresh_pg_database(pg_urls[i]);
        r = run_backend(url, &o);
        char label[64];
        const char *durable = getenv("PG_TEST_CLUSTER_DURABLE");
        if (started[0])
            snprintf(label, sizeof label, "postgres (local cluster, fsync %s)",
                     durable && !strcmp(durable, "1") ? "on" : "off");
        else
            snprintf(label, sizeof label, "postgres (--pg #%d)", i + 1);
        print_row(label, o.rows, &r);
        free(url);
    }
    if (started[0] && cluster("stop", cluster_dir, NULL, 0))
        fprintf(stderr, "store_upsert: stopping the cluster in %s failed\n", cluster_dir);
    return 0;
}

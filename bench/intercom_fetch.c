/* intercom_fetch — how close `feedline fetch` gets to the ideal wall time.
 *
 * Starts the fake Intercom server (build/fake_intercom) with N generated conversations
 * and a fixed latency per request, fetches them all into a fresh SQLite database with
 * the real client (src/source/intercom.c: search pages, quality filter, full-thread
 * detail fetches, storing), and compares the wall time with the ideal
 *
 *     (search pages + detail fetches) x latency / concurrency,
 *
 * i.e. every request slot busy all the time. Search pages are sequential by nature (each
 * needs the previous page's cursor), so the client must fetch details while it pages.
 *
 *   intercom_fetch [--count 10000] [--latency-ms 100] [--concurrency 20] [--per-page 50]
 */
#include "bench.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source/intercom.h"
#include "support/fixtures.h"
#include "support/intercom_fake.h"
#include "util/util.h"

typedef struct bench_opts {
    long count, latency_ms, concurrency, per_page;
} bench_opts;

static int parse(int argc, char **argv, bench_opts *o) {
    static const struct option opts[] = {{"count", required_argument, NULL, 'n'},
                                         {"latency-ms", required_argument, NULL, 'l'},
                                         {"concurrency", required_argument, NULL, 'c'},
                                         {"per-page", required_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': o->count = atol(optarg); break;
        case 'l': o->latency_ms = atol(optarg); break;
        case 'c': o->concurrency = atol(optarg); break;
        case 'p': o->per_page = atol(optarg); break;
        default: return -1;
        }
    }
    return o->count > 0 && o->latency_ms >= 0 && o->concurrency > 0 && o->per_page > 0 ? 0 : -1;
}

static const char USAGE[] =
    "usage: intercom_fetch [--count N] [--latency-ms N] [--concurrency N] [--per-page N]\n";

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    bench_opts bo = {10000, 100, 20, 50};
    if (parse(argc, argv, &bo)) return bench_usage_error(USAGE);
    char count[32], latency[32];
    snprintf(count, sizeof count, "%ld", bo.count);
    snprintf(latency, sizeof latency, "%ld", bo.latency_ms);
    const char *args[] = {"--count", count, "--latency-ms", latency, NULL};
    ifake fake;
    if (ifake_start(&fake, args)) return 1;
    char *dir = fx_tmpdir();
    char *db = xasprintf("%s/bench.db", dir);
    store *st = NULL;
    char err[512];
    if (store_open(db, &st, err, sizeof err) != STORE_OK) {
        fprintf(stderr, "intercom_fetch: %s\n", err);
        ifake_stop(&fake);
        return 1;
    }
    intercom_options o;
    intercom_options_from_env(&o);
    o.token = "test-token";
    o.base_url = fake.base_url;
    o.concurrency = (int)bo.concurrency;
    o.per_page = (int)bo.per_page;
    intercom_window all = {INTERCOM_CREATED_AT, 0, 0};
    intercom_result r;
    intercom_fetch(st, &o, &all, &r);
    json_t *s = ifake_stats(&fake);
    int64_t details = jx_int(s, "detail_requests", -1), pages = jx_int(s, "search_requests", -1);
    double ideal = (double)(pages + details) * (double)bo.latency_ms / 1000.0 / (double)bo.concurrency;
    printf("conversations %ld, latency %ld ms, concurrency %ld, per_page %ld\n", bo.count,
           bo.latency_ms, bo.concurrency, bo.per_page);
    printf("status %s%s%s\n", r.status == INTERCOM_DONE ? "done" : "not done",
           r.error[0] ? ": " : "", r.error);
    printf("search pages %lld, detail fetches %lld, stored %lld, filtered %lld, failed %lld\n",
           (long long)pages, (long long)details,
           (long long)(r.stats.inserted + r.stats.updated + r.stats.unchanged),
           (long long)r.stats.filtered, (long long)r.detail_failed);
    printf("server max in flight %lld\n", (long long)jx_int(s, "max_in_flight", -1));
    printf("wall %.2f s, ideal %.2f s, ratio %.3f\n", r.seconds, ideal, r.seconds / ideal);
    json_decref(s);
    store_close(st);
    ifake_stop(&fake);
    fx_rmtree(dir);
    free(db);
    free(dir);
    return r.status == INTERCOM_DONE ? 0 : 1;
}

/* llm_rate — the LLM engine under a requests-per-minute limit: the fake endpoint
 * enforces `rpm` over a sliding 60 s window (429 + Retry-After beyond it); the
 * provider either learns the limit from the x-ratelimit-* headers (mode "headers")
 * or is told with --rpm (mode "configured"). Reports the achieved rate as a share of
 * the limit and the share of requests answered 429.
 *
 *   llm_rate [--requests 1200] [--rpm 600] [--latency-ms 200] [--concurrency 20]
 *            [--mode headers|configured|both]
 */
#include "bench.h"
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "support/fakeproc.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

typedef struct bench {
    size_t done, failed;
} bench;

static void on_done(llm_call *c) {
    bench *b = c->user;
    b->done++;
    if (c->status != LLM_OK) b->failed++;
    llm_call_reset_result(c);
}

/* One measurement; 0 when it met the targets (>= 95% of the limit, < 1% 429s). */
static int run(long n, long rpm, long latency, long conc, int configured) {
    char r[32], l[32];
    snprintf(r, sizeof r, "%ld", rpm);
    snprintf(l, sizeof l, "%ld", latency);
    const char *args[] = {"--vocab", "data/theme_vocabulary.json", "--rpm", r, "--latency-ms", l, NULL};
    fakeproc fp;
    if (fakeproc_start(&fp, "fake_openai", args) != 0) {
        fprintf(stderr, "llm_rate: cannot start build/fake_openai (run from the repository root)\n");
        return 1;
    }
    llm_openai_config cfg;
    llm_openai_config_from_env(&cfg);
    char url[128];
    snprintf(url, sizeof url, "%s/v1", fp.url);
    cfg.base_url = url;
    cfg.embed_base_url = NULL;
    cfg.api_key = "bench";
    cfg.concurrency = (int)conc;
    cfg.rpm = configured ? (double)rpm : 0;
    cfg.tpm = 0;
    char err[256];
    llm_provider *p = llm_openai_new(&cfg, NULL, NULL, err, sizeof err);
    if (!p) {
        fprintf(stderr, "llm_rate: %s\n", err);
        fakeproc_stop(&fp);
        return 1;
    }
    llm_call *calls = xcalloc((size_t)n, sizeof *calls);
    char **texts = xcalloc((size_t)n, sizeof *texts);
    bench b = {0};
    for (long i = 0; i < n; i++) {
        texts[i] = xasprintf("Ticket %ld: my scheduled pins are not posting to my boards.", i);
        calls[i].task = LLM_FACETS;
        calls[i].in.digest = texts[i];
        calls[i].done = on_done;
        calls[i].user = &b;
    }
    size_t next = 0;
    int64_t t0 = mono_ms();
    while (b.done < (size_t)n) {
        while (next < (size_t)n && llm_pending(p) < (size_t)conc) llm_submit(p, &calls[next++]);
        if (llm_poll(p, 50) < 0) break;
    }
    double minutes = (double)(mono_ms() - t0) / 60000.0;
    json_t *st = fakeproc_stats(&fp);
    long long requests = jx_int(st, "requests", 0), r429 = jx_int(st, "rate_limited", 0);
    double achieved = (double)b.done / minutes, share429 = requests ? (double)r429 / (double)requests : 0;
    printf("mode %-10s %ld requests in %.2f min: %.1f/min = %.1f%% of %ld/min; %lld answered 429 "
           "(%.2f%% of %lld requests); max %lld in a 60 s window; %zu failed\n",
           configured ? "configured" : "headers", n, minutes, achieved, 100.0 * achieved / (double)rpm,
           rpm, r429, 100.0 * share429, requests, (long long)jx_int(st, "max_window_arrivals", 0),
           b.failed);
    json_decref(st);
    llm_provider_destroy(p);
    for (long i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(calls);
    fakeproc_stop(&fp);
    return achieved >= 0.95 * (double)rpm && share429 < 0.01 && b.failed == 0 ? 0 : 1;
}

static const char USAGE[] =
    "usage: llm_rate [--requests N] [--rpm N] [--latency-ms N] [--concurrency N] "
    "[--mode headers|configured|both]\n";

int main(int argc, char **argv) {
    if (bench_help(argc, argv, USAGE)) return 0;
    static const struct option opts[] = {{"requests", required_argument, NULL, 'n'},
                                         {"rpm", required_argument, NULL, 'r'},
                                         {"latency-ms", required_argument, NULL, 'l'},
                                         {"concurrency", required_argument, NULL, 'c'},
                                         {"mode", required_argument, NULL, 'm'},
                                         {0}};
    long n = 1200, rpm = 600, latency = 200, conc = 20;
    const char *mode = "both";
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'n') n = atol(optarg);
        else if (c == 'r') rpm = atol(optarg);
        else if (c == 'l') latency = atol(optarg);
        else if (c == 'c') conc = atol(optarg);
        else if (c == 'm') mode = optarg;
        else {
            return bench_usage_error(USAGE);
        }
    }
    if (n < 2 || rpm < 1 || conc < 1 || conc > 512) return 2;
    int rc = 0;
    if (strcmp(mode, "configured") != 0) rc |= run(n, rpm, latency, conc, 0);
    if (strcmp(mode, "headers") != 0) rc |= run(n, rpm, latency, conc, 1);
    return rc;
}

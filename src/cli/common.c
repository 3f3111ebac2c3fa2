/* Helpers shared by the CLI commands. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llm/ratelimit.h"
#include "pipeline/runjson.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

const char *cli_db(const char *opt) {
    if (opt && opt[0]) return opt;
    const char *env = getenv("DATABASE_URL");
    return env && env[0] ? env : "feedline.db";
}

static int readable(const char *path) { return access(path, R_OK) == 0; }

int cli_data_path(const char *name, char *out, size_t len) {
    int n = snprintf(out, len, "data/%s", name);
    if (n > 0 && (size_t)n < len && readable(out)) return 0;
    /* The tree the binary was built in: build/feedline finds data/ one level above
     * its directory, build/asan/feedline two. */
    char dir[PATH_MAX];
    ssize_t got = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (got <= 0) return -1;
    dir[got] = '\0';
    for (int level = 0; level < 3; level++) {
        char *slash = strrchr(dir, '/');
        if (!slash) return -1;
        *slash = '\0';
        n = snprintf(out, len, "%s/data/%s", dir, name);
        if (n > 0 && (size_t)n < len && readable(out)) return 0;
    }
    return -1;
}

vocab *cli_load_vocab(const char *opt) {
    char path[PATH_MAX + 64];
    const char *env = getenv("FEEDLINE_VOCAB");
    const char *chosen = NULL;
    if (opt && opt[0]) chosen = opt;
    else if (env && env[0]) chosen = env;
    else if (cli_data_path("theme_vocabulary.json", path, sizeof path) == 0) chosen = path;
    if (!chosen) {
        fprintf(stderr, "feedline: no theme vocabulary found: pass --vocab FILE or set "
                        "FEEDLINE_VOCAB (see data/theme_vocabulary.json for the shape)\n");
        return NULL;
    }
    char err[512];
    vocab *v = vocab_load(chosen, err, sizeof err);
    if (!v) fprintf(stderr, "feedline: %s\n", err);
    return v;
}

store *cli_open_store(const char *url) {
    store *st = NULL;
    char err[600];
    if (store_open(url, &st, err, sizeof err) != STORE_OK) {
        fprintf(stderr, "feedline: %s\n", err);
        return NULL;
    }
    return st;
}

/* The OpenAI-compatible provider for a run: the environment's settings, the run's
 * models (a resumed run keeps its models, so its cache keys stay the same) and the
 * run's concurrency as the cap on requests in flight. */
static llm_provider *make_openai(const vocab *v, const run_record *run, store *st, char *err,
                                 size_t errlen) {
    llm_openai_config c;
    llm_openai_config_from_env(&c);
    if (!c.api_key && !getenv("OPENAI_BASE_URL")) {
        snprintf(err, errlen, "--llm openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for an "
                              "endpoint without keys)");
        return NULL;
    }
    if (run->chat_model && run->chat_model[0]) c.chat_model = run->chat_model;
    if (run->embed_model && run->embed_model[0]) c.embed_model = run->embed_model;
    c.concurrency = run->concurrency > 0 ? (int)run->concurrency : LLM_DEFAULT_CONCURRENCY;
    c.batch = run->batch; /* --batch: the Batch API, its batches recorded on the run */
    c.batch_run_id = run->id;
    return llm_openai_new(&c, v, st, err, errlen);
}

llm_provider *cli_make_provider(void *ctx, const run_record *run, store *st, char *err,
                                size_t errlen) {
    const vocab *v = ctx;
    if (!strcmp(run->llm, "local")) return llm_local_new(v);
    if (!strcmp(run->llm, "openai")) return make_openai(v, run, st, err, errlen);
    snprintf(err, errlen, "unknown LLM provider \"%s\" (use local or openai)", run->llm);
    return NULL;
}

const char *cli_default_llm(void) {
    const char *key = getenv("OPENAI_API_KEY");
    if (key && key[0]) {
        fprintf(stderr, "feedline: using --llm openai (OPENAI_API_KEY is set)\n");
        return "openai";
    }
    fprintf(stderr, "feedline: using --llm local, the offline analyzer (OPENAI_API_KEY is "
                    "not set)\n");
    return "local";
}

int cli_parse_int(const char *opt, const char *value, long long min, long long max,
                  long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value ? value : "", &end, 10);
    if (!value || !value[0] || *end || errno) {
        fprintf(stderr, "feedline: %s: \"%s\" is not a whole number\n", opt, value ? value : "");
        return -1;
    }
    if (v < min || v > max) {
        fprintf(stderr, "feedline: %s: %lld is out of range (%lld..%lld)\n", opt, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* The limits are a property of the account and endpoint, not of the run, so they travel
 * like the other LLM settings, in the environment the provider factory reads. A resume
 * takes them again. */
int cli_set_limit_env(const char *opt, const char *var, const char *value) {
    long long v;
    if (cli_parse_int(opt, value, 1, 1000000000, &v)) return -1;
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    if (setenv(var, num, 1) != 0) {
        fprintf(stderr, "feedline: %s: cannot set %s\n", opt, var);
        return -1;
    }
    return 0;
}

void cli_progress(void *ctx, const run_progress *p) {
    (void)ctx;
    if (!isatty(2)) return;
    fprintf(stderr, "\r\033[K[run %lld] %-20s %lld/%lld", (long long)p->run_id,
            run_phase_name(p->phase), (long long)p->done, (long long)p->total);
    if (p->failed) fprintf(stderr, "  %lld failed", (long long)p->failed);
    if (p->in_flight) fprintf(stderr, "  %lld in flight", (long long)p->in_flight);
    fflush(stderr);
}

const char *cli_owner(void) {
    static char owner[300];
    if (!owner[0]) {
        char host[256] = "localhost"; /* as pipeline_fail_orphaned_runs reads it back */
        if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
        snprintf(owner, sizeof owner, "%s:%d", host, (int)getpid());
    }
    return owner;
}

static atomic_int *stop_flag;

static void on_signal(int sig) {
    (void)sig;
    if (stop_flag && !atomic_load(stop_flag)) {
        atomic_store(stop_flag, 1);
        static const char msg[] = "\nfeedline: stopping after in-flight work (Ctrl-C again to quit now)\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        return;
    }
    _exit(130);
}

void cli_trap_stop(atomic_int *flag) {
    stop_flag = flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The part of the prompt tokens the endpoint's prefix cache served, in percent. */
static double cached_share(int64_t cached, int64_t prompt) {
    return prompt > 0 ? 100.0 * (double)cached / (double)prompt : 0;
}

/* One line per phase that used the LLM: requests, cache hits (answers from llm_cache),
 * tokens with the share of prompt tokens served by the endpoint's prefix cache, cost. */
static void print_usage_by_phase(store *st, int64_t run_id) {
    char *usage = NULL;
    if (store_run_usage_json(st, run_id, &usage) != STORE_OK) return;
    json_t *u = json_loads(usage, 0, NULL);
    free(usage);
    const char *phase;
    json_t *v;
    json_object_foreach(u, phase, v) {
        int64_t prompt = jx_int(v, "prompt_tokens", 0), cached = jx_int(v, "cached_tokens", 0);
        printf("    %-22s %lld requests, %lld cache hits, %lld+%lld tokens"
               " (%lld cached, %.1f%% of prompt), $%.4f\n",
               phase, (long long)jx_int(v, "requests", 0), (long long)jx_int(v, "cache_hits", 0),
               (long long)prompt, (long long)jx_int(v, "completion_tokens", 0),
               (long long)cached, cached_share(cached, prompt), jx_num(v, "cost_usd", 0));
    }
    json_decref(u);
}

void cli_print_run_summary(store *st, int64_t run_id) {
    run_record r;
    if (store_run_get(st, run_id, &r) != STORE_FOUND) return;
    printf("run %lld: %s", (long long)r.id, r.status);
    if (r.error_message) printf(" (%s)", r.error_message);
    printf("\n");
    printf("  conversations  %lld selected, %lld classified (%lld failed)\n",
           (long long)r.conversations_fetched, (long long)r.conversations_classified,
           (long long)r.classification_failed);
    if (!r.dry_run) {
        printf("  embeddings     %lld (%lld failed)\n", (long long)r.embeddings_generated,
               (long long)r.embeddings_failed);
        printf("  facets         %lld (%lld failed)\n", (long long)r.facets_extracted,
               (long long)r.facets_failed);
    }
    printf("  themes         %lld passed, %lld filtered, %lld new signatures (%lld failed)\n",
           (long long)r.themes_extracted, (long long)r.themes_filtered, (long long)r.themes_new,
           (long long)r.themes_failed);
    if (r.stories_done) {
        printf("  stories        %lld created, %lld grown with new evidence, %lld orphans created, "
               "%lld graduated\n",
               (long long)r.stories_created, (long long)r.stories_updated,
               (long long)r.orphans_created, (long long)r.orphans_graduated);
        cli_print_review(st, r.id);
    }
    if (r.claims_lost > 0)
        printf("  claims lost    %lld (a lease ran out or a database session ended while "
               "held; done again, one result stored)\n", (long long)r.claims_lost);
    printf("  llm            %s: %lld requests, %lld cache hits, %lld+%lld tokens"
           " (%lld cached, %.1f%% of prompt), $%.4f\n",
           r.llm, (long long)r.llm_requests, (long long)r.llm_cache_hits,
           (long long)r.prompt_tokens, (long long)r.completion_tokens,
           (long long)r.cached_tokens, cached_share(r.cached_tokens, r.prompt_tokens), r.cost_usd);
    print_usage_by_phase(st, r.id);
    printf("  duration       %llds\n",
           (long long)((r.completed_at ? r.completed_at : wall_unix()) - r.started_at));
    run_record_free(&r);
}

void cli_print_review(store *st, int64_t run_id) {
    json_t *rv = run_review_json(st, run_id);
    if (!rv) {
        fprintf(stderr, "reading the review: %s\n", store_errmsg(st));
        return;
    }
    printf("  review         %lld kept, %lld split, %lld merged, %lld rejected\n",
           (long long)jx_int(rv, "kept", 0), (long long)jx_int(rv, "split", 0),
           (long long)jx_int(rv, "merged", 0), (long long)jx_int(rv, "rejected", 0));
    size_t i;
    json_t *d;
    json_array_foreach(jx_arr(rv, "decisions"), i, d) {
        const char *dec = jx_str(d, "decision");
        if (!strcmp(dec, "keep")) continue;
        printf("    %-7s %s (%lld conversations): %s\n", dec, jx_str(d, "signature"),
               (long long)jx_int(d, "conversation_count", 0), jx_str(d, "reason"));
    }
    json_decref(rv);
}

void cli_print_json(const json_t *v) {
    char *s = v ? json_dumps(v, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : NULL;
    if (s) printf("%s\n", s);
    free(s);
}

int cli_finish_run(store *st, int64_t run_id, int rc, int json) {
    if (isatty(2)) fprintf(stderr, "\r\033[K");
    if (json) {
        run_record r;
        if (store_run_get(st, run_id, &r) == STORE_FOUND) {
            json_t *o = run_status_json(st, &r, wall_unix());
            cli_print_json(o);
            json_decref(o);
            run_record_free(&r);
        }
    } else {
        cli_print_run_summary(st, run_id);
    }
    return rc == 0 ? EXIT_OK : rc == 1 ? EXIT_STOPPED : EXIT_FAILURE_;
}

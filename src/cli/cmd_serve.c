/* feedline serve: runs the HTTP API (src/api/) until SIGINT or SIGTERM, then shuts
 * down gracefully: stop accepting, let the active run reach a checkpoint and mark it
 * stopped (resumable), exit 0. A second signal exits at once. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "cli/cli.h"
#include "util/log.h"
#include "util/mem.h"

int cmd_serve(int argc, char **argv);

#define MAX_CORS 32

/* The original's allow-list: its web clients on loopback. */
static const char *const DEFAULT_CORS[] = {
    "http://localhost:8501", "http://127.0.0.1:8501", "http://localhost:3000",
    "http://127.0.0.1:3000", "http://localhost:3001", "http://127.0.0.1:3001"};

static void serve_usage(FILE *out) {
    fprintf(out,
            "usage: feedline serve [--db DB] [--listen ADDR:PORT] [--llm local|openai]\n"
            "                      [--threads N] [--cors-origin ORIGIN]... [--vocab FILE]\n"
            "                      [--no-response-cache] [--insecure-no-auth]\n"
            "\n"
            "Serves the dashboard at / and the HTTP API: /api/pipeline (start, status, history, active, stop,\n"
            "resume, create-stories, events), /api/themes, /api/stories, /health,\n"
            "/metrics and /openapi.json. Runs execute in the background; requests never\n"
            "wait for them. SIGINT/SIGTERM stop the active run at a checkpoint (resumable).\n"
            "\n"
            "  --db DB              SQLite file or postgres:// URL (default feedline.db)\n"
            "  --listen ADDR:PORT   address to bind (default 127.0.0.1:8000; port 0 picks one)\n"
            "  --llm NAME           LLM of runs that do not name one (default: openai when\n"
            "                       OPENAI_API_KEY is set, else local)\n"
            "  --threads N          HTTP worker threads (default: one per core)\n"
            "  --cors-origin ORIGIN allowed browser origin, repeatable; \"*\" allows any\n"
            "                       (default: $FEEDLINE_CORS_ORIGINS, comma-separated, else\n"
            "                       http://localhost|127.0.0.1 on ports 8501, 3000, 3001)\n"
            "  --vocab FILE         theme vocabulary (default data/theme_vocabulary.json)\n"
            "  --no-response-cache  answer every read from the database (by default a worker\n"
            "                       reuses its last answer to the same request while the\n"
            "                       database is unchanged; for measurements)\n"
            "  --insecure-no-auth   allow a non-loopback --listen without any API token\n"
            "\n"
            "Tokens (sent as \"Authorization: Bearer TOKEN\"; see SECURITY.md):\n"
            "  FEEDLINE_API_TOKEN        one operate token\n"
            "  FEEDLINE_API_TOKENS       \"ROLE:TOKEN,ROLE:TOKEN\", ROLE read, operate or metrics\n"
            "  FEEDLINE_API_TOKENS_FILE  a file of \"ROLE TOKEN\" lines (# comments)\n"
            "  FEEDLINE_METRICS_TOKEN    a token for /metrics only (Prometheus)\n"
            "With a read or operate token configured, every route but /, /health and\n"
            "/openapi.json needs one: a read token reads, an operate token also starts, stops\n"
            "and resumes runs (401 without a valid token, 403 when its role is not enough).\n"
            "/metrics needs a token as soon as any is configured. Without a read or operate\n"
            "token, serve refuses a non-loopback --listen unless --insecure-no-auth is given.\n"
            "\n"
            "  FEEDLINE_API_RATE         requests per second each client address may make\n"
            "                            (bursts of a second's worth, at least 10; 429 with\n"
            "                            Retry-After beyond; /health exempt). Default: no limit\n"
            "Prints \"listening on ADDR:PORT\" when ready.\n");
}

typedef struct serve_opts {
    const char *db, *listen, *llm, *vocab;
    long long threads;
    int no_cache, insecure_no_auth;
    const char *cors[MAX_CORS];
    size_t ncors;
    char *cors_env; /* owned copy of FEEDLINE_CORS_ORIGINS, split in place */
} serve_opts;

static int add_origin(serve_opts *o, const char *origin) {
    if (o->ncors == MAX_CORS) {
        fprintf(stderr, "feedline serve: at most %d CORS origins\n", MAX_CORS);
        return -1;
    }
    o->cors[o->ncors++] = origin;
    return 0;
}

static int default_origins(serve_opts *o) {
    const char *env = getenv("FEEDLINE_CORS_ORIGINS");
    if (!env) {
        for (size_t i = 0; i < sizeof DEFAULT_CORS / sizeof DEFAULT_CORS[0]; i++)
            if (add_origin(o, DEFAULT_CORS[i])) return -1;
        return 0;
    }
    o->cors_env = xstrdup(env);
    char *save = NULL;
    for (char *t = strtok_r(o->cors_env, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
        if (add_origin(o, t)) return -1;
    return 0;
}

/* 0 to proceed, 1 after --help, -1 on a usage error. */
static int parse_serve(int argc, char **argv, serve_opts *o) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},      {"listen", required_argument, NULL, 'L'},
        {"llm", required_argument, NULL, 'l'},     {"threads", required_argument, NULL, 't'},
        {"cors-origin", required_argument, NULL, 'c'}, {"vocab", required_argument, NULL, 'v'},
        {"no-response-cache", no_argument, NULL, 'N'}, {"help", no_argument, NULL, 'h'},
        {"insecure-no-auth", no_argument, NULL, 'I'}, {0}};
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:8000";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o->db = optarg; break;
        case 'L': o->listen = optarg; break;
        case 'l': o->llm = optarg; break;
        case 'v': o->vocab = optarg; break;
        case 'N': o->no_cache = 1; break;
        case 'I': o->insecure_no_auth = 1; break;
        case 't':
            if (cli_parse_int("--threads", optarg, 1, 256, &o->threads)) return -1;
            break;
        case 'c':
            if (add_origin(o, optarg)) return -1;
            break;
        case 'h': serve_usage(stdout); return 1;
        default: serve_usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "feedline serve: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (o->llm && strcmp(o->llm, "local") != 0 && strcmp(o->llm, "openai") != 0) {
        fprintf(stderr, "feedline serve: --llm must be local or openai, not \"%s\"\n", o->llm);
        return -1;
    }
    if (o->ncors == 0 && default_origins(o)) return -1;
    return 0;
}

/* The tokens of the environment (see serve_usage). 0, or -1 after printing why (never a
 * token). */
static int load_tokens(api_tokens *t) {
    char err[600];
    const char *one = getenv("FEEDLINE_API_TOKEN"), *list = getenv("FEEDLINE_API_TOKENS");
    const char *file = getenv("FEEDLINE_API_TOKENS_FILE");
    const char *metrics = getenv("FEEDLINE_METRICS_TOKEN");
    /* FEEDLINE_API_TOKEN predates roles: it always let its holder start and stop runs. */
    if (one && one[0] && api_tokens_add(t, "operate", one, err, sizeof err) != 0) {
        fprintf(stderr, "feedline serve: FEEDLINE_API_TOKEN: %s\n", err);
        return -1;
    }
    if (metrics && metrics[0] && api_tokens_add(t, "metrics", metrics, err, sizeof err) != 0) {
        fprintf(stderr, "feedline serve: FEEDLINE_METRICS_TOKEN: %s\n", err);
        return -1;
    }
    if ((list && list[0] &&
         api_tokens_parse_list(t, list, "FEEDLINE_API_TOKENS", err, sizeof err) != 0) ||
        (file && file[0] && api_tokens_load_file(t, file, err, sizeof err) != 0)) {
        fprintf(stderr, "feedline serve: %s\n", err);
        return -1;
    }
    return 0;
}

/* Waits for the runs after the first signal; a second one exits immediately. */
static void wait_for_checkpoint(api_server *srv, const sigset_t *signals) {
    while (!api_server_wait_idle(srv, 100)) {
        struct timespec zero = {0, 0};
        if (sigtimedwait(signals, NULL, &zero) > 0) {
            static const char msg[] = "feedline serve: second signal, exiting without waiting\n";
            ssize_t w = write(2, msg, sizeof msg - 1);
            (void)w;
            _exit(1);
        }
    }
}

static int serve(const serve_opts *o, vocab *v, const api_tokens *tokens,
                 const sigset_t *signals) {
    api_config cfg = {0};
    cfg.db_url = cli_db(o->db);
    cfg.listen = o->listen;
    cfg.vocab = v;
    cfg.default_llm = o->llm ? o->llm : cli_default_llm();
    cfg.tokens = tokens;
    cfg.insecure_no_auth = o->insecure_no_auth;
    cfg.cors_origins = o->cors;
    cfg.ncors = o->ncors;
    cfg.threads = (int)o->threads;
    cfg.make_provider = cli_make_provider;
    cfg.provider_ctx = v;
    cfg.owner = cli_owner();
    cfg.no_response_cache = o->no_cache;
    cfg.conversation_url = getenv("FEEDLINE_CONVERSATION_URL");
    const char *rate = getenv("FEEDLINE_API_RATE");
    if (rate && rate[0]) {
        char *end;
        double r = strtod(rate, &end);
        if (*end || !(r >= 0) || r > 1e6) {
            fprintf(stderr, "feedline serve: FEEDLINE_API_RATE=\"%s\": expected requests per "
                            "second, a number from 0 (no limit) to 1000000\n", rate);
            return EXIT_USAGE;
        }
        cfg.rate_per_address = r;
    }
    api_server *srv = NULL;
    char err[600];
    if (api_server_start(&cfg, &srv, err, sizeof err) != 0) {
        fprintf(stderr, "feedline serve: %s\n", err);
        return EXIT_FAILURE_;
    }
    if (api_tokens_count(tokens))
        log_info("API tokens: %zu configured", api_tokens_count(tokens));
    printf("listening on %s\n", api_server_address(srv));
    fflush(stdout);
    int sig = 0;
    while (sigwait(signals, &sig) != 0) {}
    log_info("signal %d: stopping (runs stop at their next checkpoint)", sig);
    api_server_begin_shutdown(srv);
    wait_for_checkpoint(srv, signals);
    api_server_stop(srv);
    log_info("stopped");
    return EXIT_OK;
}

int cmd_serve(int argc, char **argv) {
    serve_opts o;
    int p = parse_serve(argc, argv, &o);
    if (p) {
        free(o.cors_env);
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    }
    log_init_from_env(LOG_INFO);
    api_tokens *tokens = api_tokens_new();
    vocab *v = load_tokens(tokens) == 0 ? cli_load_vocab(o.vocab) : NULL;
    if (!v) {
        api_tokens_free(tokens);
        free(o.cors_env);
        return EXIT_FAILURE_;
    }
    /* Signals are taken synchronously by this thread (sigwait): block them before any
     * thread exists, so every thread inherits the mask. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    int code = serve(&o, v, tokens, &signals);
    vocab_free(v);
    api_tokens_free(tokens);
    free(o.cors_env);
    return code;
}

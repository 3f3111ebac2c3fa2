/* feedline worker: a process that helps with the active run of a shared PostgreSQL
 * database (the loop itself is pipeline_worker in src/pipeline/worker.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llm/ratelimit.h"
#include "store/db.h"

static void worker_usage(FILE *out) {
    fprintf(out,
            "usage: feedline worker --db postgres://... [--concurrency N] [--llm local|openai]\n"
            "                       [--rpm N] [--tpm N] [--vocab FILE] [--once]\n"
            "\n"
            "Joins the active pipeline run of a PostgreSQL database and works on its\n"
            "per-conversation phases (classification, embeddings, facets, themes) next to\n"
            "the process that started it (feedline run or feedline serve), which still\n"
            "advances the run and creates the stories. Start any number of workers, on this\n"
            "machine or others; each claims batches of conversations with a lease it renews\n"
            "every second. A worker killed on a live machine loses its batch to the others\n"
            "at once (its database session ends); one paused or cut off loses it after\n"
            "FEEDLINE_LEASE_SECONDS (default 10), and its late results are discarded.\n"
            "Between runs it waits for the next one. Ctrl-C or SIGTERM gives its unfinished\n"
            "claims back and exits. Dry runs are left to their driver.\n"
            "\n"
            "  --db URL           postgres:// URL (DATABASE_URL); a SQLite file cannot be\n"
            "                     shared by processes on several machines\n"
            "  --concurrency N    LLM requests this process keeps in flight (1..512; default:\n"
            "                     the run's --concurrency)\n"
            "  --llm NAME         only join runs that use this provider (default: any)\n"
            "  --rpm N            openai: the endpoint's requests/min (FEEDLINE_RPM); on\n"
            "                     PostgreSQL the budget is shared by every process\n"
            "  --tpm N            openai: tokens/min of this process (FEEDLINE_TPM)\n"
            "  --vocab FILE       theme vocabulary (default data/theme_vocabulary.json)\n"
            "  --once             exit as soon as no run is active\n"
            "  -h, --help         this help\n"
            "\n"
            "The LLM settings (OPENAI_API_KEY, OPENAI_BASE_URL, ...) come from this process's\n"
            "environment; the models are the run's. Exit status: 0 after a stop signal or\n"
            "(--once) when no run is active, 1 when the database cannot be opened.\n");
}

int cmd_worker(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},    {"concurrency", required_argument, NULL, 'c'},
        {"llm", required_argument, NULL, 'l'},   {"vocab", required_argument, NULL, 'v'},
        {"rpm", required_argument, NULL, 'r'},   {"tpm", required_argument, NULL, 't'},
        {"once", no_argument, NULL, 'o'},        {"help", no_argument, NULL, 'h'},
        {0}};
    const char *db = NULL, *vocab_path = NULL;
    worker_options wo = {0};
    long long concurrency = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'c':
            if (cli_parse_int("--concurrency", optarg, 1, LLM_MAX_CONCURRENCY, &concurrency))
                return EXIT_USAGE;
            break;
        case 'l': wo.llm = optarg; break;
        case 'v': vocab_path = optarg; break;
        case 'r':
            if (cli_set_limit_env("--rpm", "FEEDLINE_RPM", optarg)) return EXIT_USAGE;
            break;
        case 't':
            if (cli_set_limit_env("--tpm", "FEEDLINE_TPM", optarg)) return EXIT_USAGE;
            break;
        case 'o': wo.once = 1; break;
        case 'h': worker_usage(stdout); return EXIT_OK;
        default: worker_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "feedline worker: unexpected argument \"%s\"\n", argv[optind]);
        return EXIT_USAGE;
    }
    const char *url = cli_db(db);
    if (!db_is_postgres_url(url)) {
        fprintf(stderr,
                "feedline worker: \"%s\" is a SQLite file; workers need a PostgreSQL database "
                "(--db postgres://...) that every worker machine can reach. With SQLite, raise "
                "`feedline run --concurrency` instead.\n", url);
        return EXIT_USAGE;
    }
    if (wo.llm && strcmp(wo.llm, "local") != 0 && strcmp(wo.llm, "openai") != 0) {
        fprintf(stderr, "feedline worker: --llm must be local or openai, not \"%s\"\n", wo.llm);
        return EXIT_USAGE;
    }
    wo.concurrency = (int)concurrency;
    vocab *v = cli_load_vocab(vocab_path);
    if (!v) return EXIT_FAILURE_;
    atomic_int stop = 0;
    cli_trap_stop(&stop);
    run_env env = {0};
    env.db_url = url;
    env.vocab = v;
    env.make_provider = cli_make_provider;
    env.provider_ctx = v;
    env.owner = cli_owner();
    env.stop_flag = &stop;
    env.progress = cli_progress;
    char err[600] = "";
    int rc = pipeline_worker(&env, &wo, err, sizeof err);
    if (rc != 0) fprintf(stderr, "feedline worker: %s\n", err);
    vocab_free(v);
    return rc == 0 ? EXIT_OK : EXIT_FAILURE_;
}

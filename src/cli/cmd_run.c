/* feedline run / resume / demo: run the pipeline in the foreground. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llm/ratelimit.h"
#include "source/source.h"
#include "store/store_report.h"
#include "util/log.h"

static void run_usage(FILE *out) {
    fprintf(out,
            "usage: feedline run [--db DB] [--llm local|openai] [--concurrency N] [--days N]\n"
            "                    [--max N] [--dry-run] [--no-stories] [--vocab FILE] [--json]\n"
            "                    [--rpm N] [--tpm N] [--batch]\n"
            "\n"
            "Runs the pipeline over the stored conversations in the foreground:\n"
            "classification, embeddings, facets, themes (with the quality gate) and stories.\n"
            "Ctrl-C stops it gracefully; `feedline resume ID` continues it later.\n"
            "\n"
            "  --db DB            SQLite file or postgres:// URL (default feedline.db)\n"
            "  --llm NAME         local (offline analyzer) or openai (default: openai when\n"
            "                     OPENAI_API_KEY is set, else local)\n"
            "  --concurrency N    LLM requests in flight (1..512, default 20)\n"
            "  --rpm N            openai: at most N requests per minute (FEEDLINE_RPM); the\n"
            "                     endpoint's x-ratelimit headers also apply (the lower wins)\n"
            "  --tpm N            openai: at most N tokens per minute (FEEDLINE_TPM)\n"
            "  --batch            openai: send the per-conversation phases through the Batch\n"
            "                     API (half price, no per-minute limits, answers within 24 h;\n"
            "                     for backfills). Stop cancels the batches; resume polls them\n"
            "                     again instead of sending their requests twice\n"
            "  --days N           only conversations created in the last N days (default: all)\n"
            "  --max N            at most N conversations, newest first (default: no limit)\n"
            "  --dry-run          classify and theme, store no themes or stories, keep a preview\n"
            "  --no-stories       stop after themes\n"
            "  --vocab FILE       theme vocabulary (default data/theme_vocabulary.json)\n"
            "  --json             print the final run record as JSON\n"
            "  -h, --help         this help\n"
            "\n"
            "Exit status: 0 completed, 1 failed, 3 another run is active, 4 stopped.\n"
            "\n"
            "openai reads OPENAI_API_KEY, OPENAI_BASE_URL (default https://api.openai.com/v1),\n"
            "FEEDLINE_CHAT_MODEL (gpt-4o-mini) and FEEDLINE_EMBED_MODEL\n"
            "(text-embedding-3-small); see README.md for Azure and self-hosted endpoints.\n");
}

static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v && v[0] ? v : dflt;
}

static int execute(const char *db, vocab *v, const run_params *p, int64_t resume_id, int json) {
    atomic_int stop = 0;
    cli_trap_stop(&stop);
    run_env env = {0};
    env.db_url = db;
    env.vocab = v;
    env.make_provider = cli_make_provider;
    env.provider_ctx = v;
    env.owner = cli_owner();
    env.stop_flag = &stop;
    env.progress = cli_progress;
    char err[600] = "";
    int64_t run_id = resume_id;
    int rc = resume_id ? pipeline_resume(&env, resume_id, err, sizeof err)
                       : pipeline_start(&env, p, &run_id, err, sizeof err);
    if (rc == -2) {
        fprintf(stderr, "feedline: %s\n", err);
        return EXIT_BUSY;
    }
    if (rc <= -3) {
        fprintf(stderr, "feedline: %s\n", err);
        return rc == -4 || rc == -5 ? EXIT_USAGE : EXIT_FAILURE_;
    }
    store *st = cli_open_store(db);
    if (!st) return EXIT_FAILURE_;
    int code = cli_finish_run(st, run_id, rc, json);
    store_close(st);
    return code;
}

int cmd_run(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},     {"llm", required_argument, NULL, 'l'},
        {"concurrency", required_argument, NULL, 'c'}, {"days", required_argument, NULL, 'D'},
        {"max", required_argument, NULL, 'm'},    {"dry-run", no_argument, NULL, 'n'},
        {"no-stories", no_argument, NULL, 'S'},   {"vocab", required_argument, NULL, 'v'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {"rpm", required_argument, NULL, 'r'},    {"tpm", required_argument, NULL, 't'},
        {"batch", no_argument, NULL, 'B'},        {0}};
    const char *db = NULL, *llm = NULL, *vocab_path = NULL;
    long long concurrency = LLM_DEFAULT_CONCURRENCY, days = 0, max = 0;
    int dry = 0, stories = 1, json = 0, batch = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'l': llm = optarg; break;
        case 'c':
            if (cli_parse_int("--concurrency", optarg, 1, LLM_MAX_CONCURRENCY, &concurrency))
                return EXIT_USAGE;
            break;
        case 'r':
            if (cli_set_limit_env("--rpm", "FEEDLINE_RPM", optarg)) return EXIT_USAGE;
            break;
        case 't':
            if (cli_set_limit_env("--tpm", "FEEDLINE_TPM", optarg)) return EXIT_USAGE;
            break;
        case 'D':
            if (cli_parse_int("--days", optarg, 1, 36500, &days)) return EXIT_USAGE;
            break;
        case 'm':
            if (cli_parse_int("--max", optarg, 1, 100000000, &max)) return EXIT_USAGE;
            break;
        case 'n': dry = 1; break;
        case 'B': batch = 1; break;
        case 'S': stories = 0; break;
        case 'v': vocab_path = optarg; break;
        case 'j': json = 1; break;
        case 'h': run_usage(stdout); return EXIT_OK;
        default: run_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "feedline run: unexpected argument \"%s\"\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (!llm) llm = cli_default_llm();
    if (strcmp(llm, "local") != 0 && strcmp(llm, "openai") != 0) {
        fprintf(stderr, "feedline run: --llm must be local or openai, not \"%s\"\n", llm);
        return EXIT_USAGE;
    }
    if (!strcmp(llm, "openai") && !getenv("OPENAI_API_KEY") && !getenv("OPENAI_BASE_URL")) {
        fprintf(stderr, "feedline run: --llm openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for "
                        "an endpoint without keys)\n");
        return EXIT_USAGE;
    }
    if (batch && strcmp(llm, "openai") != 0) {
        fprintf(stderr, "feedline run: --batch needs --llm openai (the Batch API)\n");
        return EXIT_USAGE;
    }
    vocab *v = cli_load_vocab(vocab_path);
    if (!v) return EXIT_FAILURE_;
    run_params p = {0};
    p.batch = batch;
    p.days = (int)days;
    p.max_conversations = max;
    p.dry_run = dry;
    p.concurrency = (int)concurrency;
    p.auto_create_stories = stories;
    p.llm = llm;
    if (!strcmp(llm, "openai")) { /* recorded on the run, so a resume uses the same */
        p.chat_model = env_or("FEEDLINE_CHAT_MODEL", "gpt-4o-mini");
        p.embed_model = env_or("FEEDLINE_EMBED_MODEL", "text-embedding-3-small");
    }
    int code = execute(cli_db(db), v, &p, 0, json);
    vocab_free(v);
    return code;
}

static void resume_usage(FILE *out) {
    fprintf(out,
            "usage: feedline resume [--db DB] [--vocab FILE] [--json] [--rpm N] [--tpm N] RUN_ID\n"
            "\n"
            "Continues a stopped or failed run in the foreground. Work already done is kept\n"
            "and not redone; failed items are retried.\n");
}

int cmd_resume(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"vocab", required_argument, NULL, 'v'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"rpm", required_argument, NULL, 'r'},
                                         {"tpm", required_argument, NULL, 't'},
                                         {0}};
    const char *db = NULL, *vocab_path = NULL;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'd') db = optarg;
        else if (c == 'v') vocab_path = optarg;
        else if (c == 'j') json = 1;
        else if (c == 'r' || c == 't') {
            if (cli_set_limit_env(c == 'r' ? "--rpm" : "--tpm",
                                  c == 'r' ? "FEEDLINE_RPM" : "FEEDLINE_TPM", optarg))
                return EXIT_USAGE;
        } else if (c == 'h') {
            resume_usage(stdout);
            return EXIT_OK;
        } else {
            resume_usage(stderr);
            return EXIT_USAGE;
        }
    }
    long long id;
    if (optind != argc - 1) {
        resume_usage(stderr);
        return EXIT_USAGE;
    }
    if (cli_parse_int("RUN_ID", argv[optind], 1, INT64_MAX, &id)) return EXIT_USAGE;
    vocab *v = cli_load_vocab(vocab_path);
    if (!v) return EXIT_FAILURE_;
    int code = execute(cli_db(db), v, NULL, id, json);
    vocab_free(v);
    return code;
}

int cmd_demo(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: feedline demo [DB]\n\n"
               "Imports the bundled sample conversations into DB (default feedline-demo.db,\n"
               "recreated) and runs the whole pipeline offline, then prints the stories.\n");
        return EXIT_OK;
    }
    const char *db = argc > 1 ? argv[1] : "feedline-demo.db";
    /* found first: without it, the previous demo database stays as it was */
    char sample[PATH_MAX + 64];
    if (cli_data_path("sample_conversations.jsonl", sample, sizeof sample) != 0) {
        fprintf(stderr, "feedline demo: the bundled sample data/sample_conversations.jsonl is "
                        "neither under the working directory nor in the tree of the binary\n");
        return EXIT_FAILURE_;
    }
    if (!strcmp(db, "feedline-demo.db")) {
        unlink("feedline-demo.db");
        unlink("feedline-demo.db-wal");
        unlink("feedline-demo.db-shm");
    }
    char *imp[] = {"import", "--db", (char *)db, sample, NULL};
    int rc = cmd_import(4, imp);
    if (rc != EXIT_OK) return rc;
    char *run[] = {"run", "--db", (char *)db, "--llm", "local", NULL};
    rc = cmd_run(5, run);
    if (rc != EXIT_OK) return rc;
    char *stories[] = {"stories", "--db", (char *)db, NULL};
    return cmd_stories(3, stories);
}

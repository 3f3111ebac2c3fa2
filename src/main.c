/* feedline — turns customer-support conversations into product stories.
 * The command dispatcher; each command lives in src/cli/. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "util/log.h"

int cmd_serve(int argc, char **argv); /* src/cli/cmd_serve.c */

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} COMMANDS[] = {
    {"import", cmd_import, "import conversations from JSONL or Intercom JSON files"},
    {"fetch", cmd_fetch, "fetch conversations from the Intercom API"},
    {"run", cmd_run, "run the pipeline in the foreground"},
    {"resume", cmd_resume, "continue a stopped or failed run"},
    {"worker", cmd_worker, "help with the active run of a PostgreSQL database"},
    {"stop", cmd_stop, "ask a running run to stop"},
    {"runs", cmd_runs, "list pipeline runs"},
    {"status", cmd_status, "show one run: counters, failures, LLM usage"},
    {"stories", cmd_stories, "print the stories of a run (table, json, csv, markdown)"},
    {"story", cmd_story, "show one story, or set its state (open, exported, closed, rejected)"},
    {"export", cmd_export, "send stories to Shortcut, Jira, GitHub, Linear or a markdown file"},
    {"demo", cmd_demo, "import the bundled sample and run everything offline"},
    {"serve", cmd_serve, "serve the HTTP API (runs, events, themes, stories, metrics)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: feedline COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\n`feedline COMMAND --help` describes a command. The database is a SQLite file\n"
                 "(default feedline.db) or a postgres:// URL, given with --db or DATABASE_URL.\n");
}

int main(int argc, char **argv) {
    log_init_from_env(LOG_WARN);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "feedline: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}

/* feedline import: load conversation files into the database. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "source/source.h"

#define MAX_REPORTED_REJECTS 20 /* per file; the rest are counted */

static void usage(FILE *out) {
    fprintf(out,
            "usage: feedline import [--db DB] FILE...\n"
            "\n"
            "Imports conversations from JSONL (one conversation per line, see README) or\n"
            "Intercom conversation JSON (a single object, an array, or a conversation.list\n"
            "envelope). \"-\", a .jsonl/.ndjson file and a file whose first line is a\n"
            "complete JSON object are read as JSONL, line by line. Conversations that fail the\n"
            "quality filter are counted with their reason and not stored; malformed ones are\n"
            "reported with file:line and skipped. Re-importing unchanged data changes\n"
            "nothing.\n"
            "\n"
            "  --db DB     SQLite file or postgres:// URL (default $DATABASE_URL or feedline.db)\n"
            "  -h, --help  this help\n"
            "\n"
            "Exit status: 0 when every conversation was imported or filtered, 1 when any was\n"
            "rejected or a file could not be read, 2 on bad arguments.\n");
}

typedef struct reporter {
    int64_t shown;
} reporter;

static void on_reject(void *ctx, const char *file, int64_t line, const char *msg) {
    reporter *r = ctx;
    if (r->shown++ >= MAX_REPORTED_REJECTS) return;
    if (line > 0) fprintf(stderr, "%s:%lld: %s\n", file, (long long)line, msg);
    else fprintf(stderr, "%s: %s\n", file, msg);
}

static void print_stats(const char *file, const import_stats *s, int64_t hidden) {
    printf("%s: %lld read, %lld imported, %lld updated, %lld unchanged, %lld filtered, "
           "%lld rejected\n",
           file, (long long)s->read + (long long)s->rejected, (long long)s->inserted,
           (long long)s->updated, (long long)s->unchanged, (long long)s->filtered,
           (long long)s->rejected);
    for (int v = 1; v < QUALITY_VERDICT_COUNT; v++)
        if (s->filtered_by[v])
            printf("  filtered %-24s %lld\n", quality_verdict_name((enum quality_verdict)v),
                   (long long)s->filtered_by[v]);
    if (hidden > 0)
        fprintf(stderr, "%s: ... and %lld more rejected conversations\n", file, (long long)hidden);
}

int cmd_import(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'}, {0}};
    const char *db = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'd') db = optarg;
        else if (c == 'h') {
            usage(stdout);
            return EXIT_OK;
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "feedline import: no input files\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    store *st = cli_open_store(cli_db(db));
    if (!st) return EXIT_FAILURE_;
    int status = EXIT_OK;
    import_stats total = {0};
    int files = 0;
    for (int i = optind; i < argc; i++) {
        import_stats s = {0};
        reporter r = {0};
        char err[800];
        if (import_file(st, argv[i], &s, on_reject, &r, err, sizeof err) != 0) {
            fprintf(stderr, "feedline import: %s\n", err);
            status = EXIT_FAILURE_;
        }
        print_stats(argv[i], &s, r.shown - MAX_REPORTED_REJECTS);
        if (s.rejected) status = EXIT_FAILURE_;
        total.read += s.read;
        total.inserted += s.inserted;
        total.updated += s.updated;
        total.unchanged += s.unchanged;
        total.filtered += s.filtered;
        total.rejected += s.rejected;
        for (int v = 0; v < QUALITY_VERDICT_COUNT; v++) total.filtered_by[v] += s.filtered_by[v];
        files++;
    }
    if (files > 1) print_stats("total", &total, 0);
    int64_t n = store_conv_count(st);
    if (n >= 0) printf("database now holds %lld conversations\n", (long long)n);
    store_close(st);
    return status;
}

/* feedline export: stories to an issue tracker or a markdown file (src/export/). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "export/export.h"
#include "util/mem.h"

#define MAX_STORY_IDS 1000

static void usage(FILE *out) {
    fprintf(out,
            "usage: feedline export --to shortcut|jira|github|linear|markdown [--db DB]\n"
            "                       [--run ID] [--story ID ...] [--out FILE] [--dry-run] [--json]\n"
            "\n"
            "Creates a ticket per story in an issue tracker, or writes the stories to a markdown\n"
            "file. Exporting a story again updates its ticket (the description is rendered\n"
            "again with the current evidence, new conversations listed first) instead of\n"
            "creating another. After a tracker export an open story is 'exported'.\n"
            "\n"
            "  --to TRACKER    shortcut, jira, github, linear or markdown (settings from the\n"
            "                  environment: see README \"Exporting stories\")\n"
            "  --db DB         SQLite file or postgres:// URL (default feedline.db)\n"
            "  --run ID        the stories of this run (default: the newest run with stories);\n"
            "                  closed and rejected stories are skipped\n"
            "  --story ID      this story (repeatable; closed/rejected ones are exported too)\n"
            "  --out FILE      markdown: the file to write (default stories.md)\n"
            "  --dry-run       print what would be created or updated; send nothing\n"
            "  --json          print the result as JSON\n"
            "  -h, --help      this help\n"
            "\n"
            "429 answers wait for the tracker's reset; 5xx and network errors are retried with\n"
            "backoff; 401/403/404 stop the export at once. Stories exported before a failure\n"
            "stay recorded.\n"
            "\n"
            "Exit status: 0 done, 1 some stories failed, 2 bad arguments or missing settings.\n");
}

typedef struct export_args {
    const char *db, *to, *out;
    long long run;
    int64_t *ids;
    size_t nids;
    int dry_run, json;
} export_args;

static int parse_args(int argc, char **argv, export_args *a) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},  {"to", required_argument, NULL, 't'},
        {"run", required_argument, NULL, 'r'}, {"story", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'}, {"dry-run", no_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},      {"help", no_argument, NULL, 'h'},
        {0}};
    int c;
    long long id;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'd': a->db = optarg; break;
        case 't': a->to = optarg; break;
        case 'r': bad = cli_parse_int("--run", optarg, 1, INT64_MAX, &a->run); break;
        case 's':
            bad = a->nids >= MAX_STORY_IDS || cli_parse_int("--story", optarg, 1, INT64_MAX, &id);
            if (!bad) a->ids[a->nids++] = (int64_t)id;
            break;
        case 'o': a->out = optarg; break;
        case 'n': a->dry_run = 1; break;
        case 'j': a->json = 1; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
        if (bad) return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "feedline export: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (!a->to || !export_tracker_known(a->to)) {
        fprintf(stderr, "feedline export: --to must be shortcut, jira, github, linear or markdown\n");
        return -1;
    }
    return 0;
}

typedef struct printer {
    int json;
    json_t *items;
} printer;

static void on_item(void *ctx, const export_item *it) {
    printer *p = ctx;
    if (p->json) {
        json_array_append_new(p->items, export_item_json(it));
        return;
    }
    printf("%-12s story %-6lld %s%s%s  %s%s%s\n", export_action_name(it->action),
           (long long)it->story_id, it->external_id[0] ? it->external_id : "-",
           it->url[0] ? "  " : "", it->url, it->title, it->note[0] ? "  -- " : "", it->note);
    fflush(stdout);
}

static int exit_code(enum export_status s) {
    return s == EXPORT_OK ? EXIT_OK : s == EXPORT_CONFIG ? EXIT_USAGE : EXIT_FAILURE_;
}

int cmd_export(int argc, char **argv) {
    export_args a = {0};
    a.ids = xcalloc(MAX_STORY_IDS, sizeof *a.ids);
    int prc = parse_args(argc, argv, &a);
    if (prc != 0) {
        free(a.ids);
        return prc > 0 ? EXIT_OK : EXIT_USAGE;
    }
    store *st = cli_open_store(cli_db(a.db));
    if (!st) {
        free(a.ids);
        return EXIT_FAILURE_;
    }
    atomic_int cancel = 0;
    cli_trap_stop(&cancel);
    printer p = {a.json, json_array()};
    export_options o = {0};
    o.tracker = a.to;
    o.run_id = a.run;
    o.story_ids = a.ids;
    o.nstory_ids = a.nids;
    o.out_path = a.out;
    o.dry_run = a.dry_run;
    o.cancel = &cancel;
    o.on_item = on_item;
    o.ctx = &p;
    export_result r;
    export_run(st, &o, &r);
    if (a.json) {
        json_t *j = export_result_json(&r);
        json_object_set_new(j, "to", json_string(a.to));
        json_object_set_new(j, "dry_run", json_boolean(a.dry_run));
        json_object_set(j, "items", p.items);
        cli_print_json(j);
        json_decref(j);
    } else {
        int total = r.created + r.updated + r.skipped + r.failed;
        if (r.status != EXPORT_CONFIG)
            printf("%s%s: %d created, %d updated, %d skipped, %d failed%s\n", a.to,
                   a.dry_run ? " (dry run)" : "", r.created, r.updated, r.skipped, r.failed,
                   total ? "" : " (no stories to export)");
    }
    if (r.status != EXPORT_OK) fprintf(stderr, "feedline export: %s\n", r.error);
    json_decref(p.items);
    store_close(st);
    free(a.ids);
    return exit_code(r.status);
}

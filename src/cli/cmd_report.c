/* feedline stories / runs / status / stop: read and control runs and results. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "pipeline/runjson.h"
#include "store/store_report.h"
#include "util/jsonx.h"
#include "util/timeutil.h"

/* Common option parsing for the small commands: --db, --json, --help, one optional
 * positional. Returns -1 on a usage error, 1 after printing help, 0 to proceed. */
typedef struct small_args {
    const char *db;
    int json;
    const char *pos;
} small_args;

static int parse_small(int argc, char **argv, const char *help, int want_pos, small_args *a) {
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    memset(a, 0, sizeof *a);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'd') a->db = optarg;
        else if (c == 'j') a->json = 1;
        else if (c == 'h') {
            fputs(help, stdout);
            return 1;
        } else {
            fputs(help, stderr);
            return -1;
        }
    }
    if (want_pos) {
        if (optind != argc - 1) {
            fputs(help, stderr);
            return -1;
        }
        a->pos = argv[optind];
    } else if (optind != argc) {
        fputs(help, stderr);
        return -1;
    }
    return 0;
}

static void csv_field(const char *s) {
    int quote = strpbrk(s, ",\"\n\r") != NULL;
    if (!quote) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"') putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static char *joined_ids(const json_t *story, const char *sep) {
    size_t len = 1;
    json_t *ids = json_object_get(story, "conversation_ids");
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) len += strlen(json_string_value(v)) + strlen(sep);
    char *out = calloc(1, len);
    if (!out) return NULL;
    json_array_foreach(ids, i, v) {
        if (i) strcat(out, sep);
        strcat(out, json_string_value(v));
    }
    return out;
}

static void print_table(const json_t *stories) {
    printf("%-4s %5s %-8s %5s  %-22s %s\n", "#", "ID", "STATE", "CONVS", "PRODUCT AREA", "TITLE");
    size_t i;
    json_t *s;
    json_array_foreach(stories, i, s) {
        printf("%-4zu %5lld %-8s %5lld  %-22.22s %s\n", i + 1, (long long)jx_int(s, "id", 0),
               jx_str(s, "status"), (long long)jx_int(s, "conversation_count", 0),
               jx_str(s, "product_area"), jx_str(s, "title"));
        const json_t *rv = jx_obj(s, "review");
        const char *dist = jx_str(s, "distinguisher");
        printf("     %s `%s`%s%s%s | %s | review: %s\n", jx_str(s, "kind"), jx_str(s, "signature"),
               dist && dist[0] ? " (split: " : "", dist && dist[0] ? dist : "",
               dist && dist[0] ? ")" : "", jx_str(s, "origin"), jx_str(rv, "decision"));
        char *ids = joined_ids(s, ", ");
        printf("     conversations: %s\n", ids ? ids : "");
        free(ids);
    }
}

static void print_csv(const json_t *stories) {
    printf("id,run_id,title,signature,product_area,component,action_type,direction,"
           "conversation_count,confidence_score,origin,conversation_ids\n");
    size_t i;
    json_t *s;
    json_array_foreach(stories, i, s) {
        printf("%lld,%lld,", (long long)jx_int(s, "id", 0), (long long)jx_int(s, "run_id", 0));
        const char *fields[] = {"title", "signature", "product_area", "component", "action_type",
                                "direction"};
        for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
            csv_field(jx_str(s, fields[k]) ? jx_str(s, fields[k]) : "");
            putchar(',');
        }
        printf("%lld,%.1f,%s,", (long long)jx_int(s, "conversation_count", 0),
               jx_num(s, "confidence_score", 0), jx_str(s, "origin"));
        char *ids = joined_ids(s, ";");
        csv_field(ids ? ids : "");
        free(ids);
        putchar('\n');
    }
}

/* One story as markdown: its title, state and identity, then its description (which
 * already holds the problem, who is affected, evidence, criteria and review). */
static void print_story_markdown(const json_t *s, const char *heading) {
    printf("%s %s\n\n", heading, jx_str(s, "title"));
    printf("*Story %lld · %s · %s · `%s` · %lld conversations*\n\n", (long long)jx_int(s, "id", 0),
           jx_str(s, "status"), jx_str(s, "kind"), jx_str(s, "signature"),
           (long long)jx_int(s, "conversation_count", 0));
    const char *d = jx_str(s, "description");
    printf("%s\n", d && d[0] ? d : "");
}

static void print_markdown(const json_t *stories, int64_t run_id) {
    printf("# Stories of run %lld\n\n", (long long)run_id);
    size_t i;
    json_t *s;
    json_array_foreach(stories, i, s) print_story_markdown(s, "##");
}

int cmd_stories(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"run", required_argument, NULL, 'r'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    static const char help[] =
        "usage: feedline stories [--db DB] [--run ID] [--format table|json|csv|markdown]\n"
        "\n"
        "Prints the stories of a run (default: the newest run whose story phase finished),\n"
        "largest first, with their conversation ids, signature, product area and counts.\n";
    const char *db = NULL, *format = "table";
    long long run = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'd') db = optarg;
        else if (c == 'f') format = optarg;
        else if (c == 'r') {
            if (cli_parse_int("--run", optarg, 1, INT64_MAX, &run)) return EXIT_USAGE;
        } else if (c == 'h') {
            fputs(help, stdout);
            return EXIT_OK;
        } else {
            fputs(help, stderr);
            return EXIT_USAGE;
        }
    }
    if (strcmp(format, "table") && strcmp(format, "json") && strcmp(format, "csv") &&
        strcmp(format, "markdown")) {
        fprintf(stderr, "feedline stories: --format must be table, json, csv or markdown\n");
        return EXIT_USAGE;
    }
    if (optind != argc) {
        fputs(help, stderr);
        return EXIT_USAGE;
    }
    store *st = cli_open_store(cli_db(db));
    if (!st) return EXIT_FAILURE_;
    int64_t run_id = run;
    if (!run_id) {
        int rc = store_latest_story_run(st, &run_id);
        if (rc == STORE_NOTFOUND) {
            fprintf(stderr, "feedline stories: no run has created stories yet (feedline run)\n");
            store_close(st);
            return EXIT_FAILURE_;
        }
        if (rc < 0) {
            fprintf(stderr, "feedline stories: %s\n", store_errmsg(st));
            store_close(st);
            return EXIT_FAILURE_;
        }
    }
    story_filter f = {0};
    f.run_id = run_id;
    f.with_conversation_ids = 1;
    json_t *stories = NULL;
    int64_t total = 0;
    if (store_stories_json(st, &f, &stories, &total) != STORE_OK) {
        fprintf(stderr, "feedline stories: %s\n", store_errmsg(st));
        store_close(st);
        return EXIT_FAILURE_;
    }
    if (!strcmp(format, "json")) {
        cli_print_json(stories);
    } else if (!strcmp(format, "csv")) {
        print_csv(stories);
    } else if (!strcmp(format, "markdown")) {
        print_markdown(stories, run_id);
    } else {
        printf("Stories of run %lld: %lld\n\n", (long long)run_id, (long long)total);
        print_table(stories);
        putchar('\n');
        cli_print_review(st, run_id);
    }
    json_decref(stories);
    store_close(st);
    return EXIT_OK;
}

int cmd_story(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"state", required_argument, NULL, 's'},
                                         {"reason", required_argument, NULL, 'r'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    static const char help[] =
        "usage: feedline story [--db DB] [--json] STORY_ID\n"
        "       feedline story [--db DB] --state open|exported|closed|rejected [--reason TEXT] "
        "STORY_ID\n"
        "\n"
        "Shows one story (title, state, description with evidence, history of runs, tracker\n"
        "tickets), or sets its state. A later run's matching conversations grow an open or\n"
        "exported story; a rejected story absorbs them and stays rejected; a closed story\n"
        "is never grown (a recurrence becomes a new story).\n";
    const char *db = NULL, *state = NULL, *reason = NULL;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'd') db = optarg;
        else if (c == 's') state = optarg;
        else if (c == 'r') reason = optarg;
        else if (c == 'j') json = 1;
        else if (c == 'h') {
            fputs(help, stdout);
            return EXIT_OK;
        } else {
            fputs(help, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(help, stderr);
        return EXIT_USAGE;
    }
    long long id;
    if (cli_parse_int("STORY_ID", argv[optind], 1, INT64_MAX, &id)) return EXIT_USAGE;
    if (state && !story_state_valid(state)) {
        fprintf(stderr, "feedline story: --state must be one of %s (got \"%s\")\n", STORY_STATES,
                state);
        return EXIT_USAGE;
    }
    store *st = cli_open_store(cli_db(db));
    if (!st) return EXIT_FAILURE_;
    int code = EXIT_OK;
    if (state) {
        int rc = store_story_set_state(st, id, state, reason, wall_unix());
        if (rc == STORE_OK) printf("story %lld is now %s\n", id, state);
        else {
            fprintf(stderr, "feedline story: %s\n",
                    rc == STORE_NOTFOUND ? "no such story" : store_errmsg(st));
            code = EXIT_FAILURE_;
        }
        store_close(st);
        return code;
    }
    json_t *story = NULL;
    int rc = store_story_detail_json(st, id, &story);
    if (rc != STORE_FOUND) {
        fprintf(stderr, "feedline story: %s\n",
                rc == STORE_NOTFOUND ? "no such story" : store_errmsg(st));
        store_close(st);
        return EXIT_FAILURE_;
    }
    if (json) {
        cli_print_json(story);
    } else {
        print_story_markdown(story, "#");
        size_t i;
        json_t *r;
        printf("\n## History\n\n");
        json_array_foreach(jx_arr(story, "runs"), i, r)
            printf("- run %lld: %s, %lld conversations\n", (long long)jx_int(r, "run_id", 0),
                   jx_bool(r, "created", 0) ? "created" : "grew", (long long)jx_int(r, "conversations_added", 0));
        json_array_foreach(jx_arr(story, "exports"), i, r)
            printf("- exported to %s: %s %s\n", jx_str(r, "tracker"), jx_str(r, "external_id"),
                   jx_str(r, "url"));
    }
    json_decref(story);
    store_close(st);
    return code;
}

int cmd_runs(int argc, char **argv) {
    static const char help[] = "usage: feedline runs [--db DB] [--json]\n\n"
                               "Lists the 50 newest pipeline runs.\n";
    small_args a;
    int p = parse_small(argc, argv, help, 0, &a);
    if (p) return p > 0 ? EXIT_OK : EXIT_USAGE;
    store *st = cli_open_store(cli_db(a.db));
    if (!st) return EXIT_FAILURE_;
    run_record *runs = NULL;
    size_t n = 0;
    if (store_run_list(st, 50, 0, &runs, &n) != STORE_OK) {
        fprintf(stderr, "feedline runs: %s\n", store_errmsg(st));
        store_close(st);
        return EXIT_FAILURE_;
    }
    json_t *arr = json_array();
    if (!a.json)
        printf("%-6s %-10s %-22s %-20s %8s %8s %8s\n", "ID", "STATUS", "STARTED", "PHASE",
               "CONVS", "THEMES", "STORIES");
    for (size_t i = 0; i < n; i++) {
        if (a.json) {
            json_array_append_new(arr, run_list_item_json(st, &runs[i]));
        } else {
            char t[32];
            printf("%-6lld %-10s %-22s %-20s %8lld %8lld %8lld%s\n", (long long)runs[i].id,
                   runs[i].status, iso8601_format(runs[i].started_at, t, sizeof t),
                   runs[i].current_phase, (long long)runs[i].conversations_fetched,
                   (long long)runs[i].themes_extracted, (long long)runs[i].stories_created,
                   runs[i].dry_run ? "  (dry run)" : "");
        }
        run_record_free(&runs[i]);
    }
    free(runs);
    if (a.json) {
        cli_print_json(arr);
    }
    json_decref(arr);
    store_close(st);
    return EXIT_OK;
}

int cmd_status(int argc, char **argv) {
    static const char help[] = "usage: feedline status [--db DB] [--json] RUN_ID\n\n"
                               "Shows a run's state, counters per phase, failures and LLM usage.\n";
    small_args a;
    int p = parse_small(argc, argv, help, 1, &a);
    if (p) return p > 0 ? EXIT_OK : EXIT_USAGE;
    long long id;
    if (cli_parse_int("RUN_ID", a.pos, 1, INT64_MAX, &id)) return EXIT_USAGE;
    store *st = cli_open_store(cli_db(a.db));
    if (!st) return EXIT_FAILURE_;
    run_record r;
    int rc = store_run_get(st, id, &r);
    if (rc != STORE_FOUND) {
        fprintf(stderr, "feedline status: %s\n",
                rc == STORE_NOTFOUND ? "no such run" : store_errmsg(st));
        store_close(st);
        return EXIT_FAILURE_;
    }
    if (a.json) {
        json_t *o = run_status_json(st, &r, wall_unix());
        cli_print_json(o);
        json_decref(o);
    } else {
        cli_print_run_summary(st, id);
        char *errs = NULL;
        if (store_run_errors_json(st, id, &errs) == STORE_OK) {
            json_t *arr = json_loads(errs, 0, NULL);
            size_t i;
            json_t *e;
            json_array_foreach(arr, i, e)
                printf("  failure        [%s] %s (x%lld)\n", jx_str(e, "phase"),
                       jx_str(e, "message"), (long long)jx_int(e, "count", 0));
            json_decref(arr);
        }
        free(errs);
    }
    run_record_free(&r);
    store_close(st);
    return EXIT_OK;
}

int cmd_stop(int argc, char **argv) {
    static const char help[] =
        "usage: feedline stop [--db DB] RUN_ID\n\n"
        "Asks a running run to stop; the process driving it finishes its in-flight work\n"
        "within about a second and marks it stopped (resumable).\n";
    small_args a;
    int p = parse_small(argc, argv, help, 1, &a);
    if (p) return p > 0 ? EXIT_OK : EXIT_USAGE;
    long long id;
    if (cli_parse_int("RUN_ID", a.pos, 1, INT64_MAX, &id)) return EXIT_USAGE;
    store *st = cli_open_store(cli_db(a.db));
    if (!st) return EXIT_FAILURE_;
    int rc = store_run_request_stop(st, id);
    int code = EXIT_OK;
    if (rc == STORE_OK) printf("stop requested for run %lld\n", id);
    else if (rc == STORE_CONFLICT) {
        fprintf(stderr, "feedline stop: run %lld is not running\n", id);
        code = EXIT_FAILURE_;
    } else if (rc == STORE_NOTFOUND) {
        fprintf(stderr, "feedline stop: no such run %lld\n", id);
        code = EXIT_FAILURE_;
    } else {
        fprintf(stderr, "feedline stop: %s\n", store_errmsg(st));
        code = EXIT_FAILURE_;
    }
    store_close(st);
    return code;
}

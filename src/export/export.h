/* export — sends stories to an issue tracker (Shortcut, Jira Cloud, GitHub Issues,
 * Linear) or writes them to a markdown file.
 *
 * Owns: choosing the stories of an export, rendering a story as a ticket (markdown or
 * Atlassian Document Format), the tracker clients (on net/call.h: 429 waits for the
 * announced reset, 5xx retried with backoff, 401/403/404 end the export) and the
 * idempotence rule: a story's ticket per tracker is recorded in story_exports, and
 * exporting the story again updates that ticket with the current evidence instead of
 * creating another. A real tracker's export moves an open story to 'exported'.
 * Must not: touch other story fields, run pipeline phases, or call the LLM. Tracker
 * settings come from the environment (see README "Exporting stories").
 *
 * Threading: one export runs on the calling thread with its own store handle. */
#ifndef FEEDLINE_EXPORT_H
#define FEEDLINE_EXPORT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* "markdown shortcut jira github linear": the values of --to. */
extern const char *const EXPORT_TRACKERS[];
/* 1 if name is one of EXPORT_TRACKERS. */
int export_tracker_known(const char *name);
/* Checks the tracker's settings in the environment without sending anything: 0, or -1
 * with err naming the missing or malformed variable. */
int export_check_config(const char *tracker, char *err, size_t errlen);

/* What happened to one story. */
enum export_action {
    EXPORT_CREATED = 0,
    EXPORT_UPDATED,
    EXPORT_SKIPPED,
    EXPORT_FAILED,
    EXPORT_WOULD_CREATE, /* dry run */
    EXPORT_WOULD_UPDATE
};
const char *export_action_name(enum export_action a); /* "created", "would create", ... */

typedef struct export_item {
    int64_t story_id;
    const char *title;       /* "" when the story does not exist */
    enum export_action action;
    const char *external_id; /* the ticket ("" when none) */
    const char *url;
    const char *note;        /* why skipped / failed, evidence added, ... ("" when none) */
    int64_t evidence_count;
} export_item;

typedef struct export_options {
    const char *tracker;          /* one of EXPORT_TRACKERS */
    int64_t run_id;               /* 0 = the newest run with stories */
    const int64_t *story_ids;     /* explicit stories (then run_id is ignored) */
    size_t nstory_ids;
    const char *out_path;         /* markdown: the file (NULL = "stories.md") */
    int dry_run;                  /* render and report; send and write nothing */
    atomic_int *cancel;           /* optional: ends the export between and during calls */
    int64_t backoff_base_ms;      /* 0 = 1000 (tests make it short) */
    void (*on_item)(void *ctx, const export_item *it);
    void *ctx;
} export_options;

enum export_status {
    EXPORT_OK = 0,       /* every story created, updated or skipped */
    EXPORT_PARTIAL = 1,  /* some stories failed (or the export stopped on a fatal error);
                            the ones exported before stay recorded */
    EXPORT_CONFIG = 2,   /* missing/malformed settings or selection: nothing was sent */
    EXPORT_ERROR = 3     /* store error */
};

typedef struct export_result {
    enum export_status status;
    char error[512];
    int64_t run_id;      /* the run whose stories were selected (0 with explicit ids) */
    int created, updated, skipped, failed;
} export_result;

/* Exports the selected stories; calls on_item once per story as it goes. */
int export_run(store *st, const export_options *o, export_result *res);

/* The JSON shapes the CLI (--json) and the API answer with:
 * item   {"story_id","title","action","external_id","url","note","evidence_count"}
 * result {"status":"ok|partial|config|error","error","run_id","created","updated",
 *         "skipped","failed"} */
json_t *export_item_json(const export_item *it);
json_t *export_result_json(const export_result *r);
const char *export_status_name(enum export_status s);

#endif

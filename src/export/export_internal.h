/* Private to src/export/: the tracker interface its five implementations share
 * (tracker_*.c), the story document they render (render.c) and the HTTP exchange of
 * the four web trackers (tracker_http.c). */
#ifndef FEEDLINE_EXPORT_INTERNAL_H
#define FEEDLINE_EXPORT_INTERNAL_H

#include <jansson.h>

#include "export/export.h"
#include "net/call.h"
#include "store/store_export.h"

/* ------------------------------------------------------------------ the document */

/* Evidence listed per ticket (the rest is counted): keeps descriptions far below the
 * trackers' size limits (Jira 32767 characters, GitHub 65536). */
#define EXPORT_LISTED_EVIDENCE 30
#define EXPORT_EXCERPT_BYTES 280

/* A story as every tracker shows it. */
typedef struct export_doc {
    const export_story *story;
    const char *kind;        /* "bug" | "feature" | "question" */
    char **criteria;         /* acceptance criteria (from the JSON array), may be 0 */
    size_t ncriteria;
    int64_t from, to;        /* evidence date range (0 when unknown) */
    /* On re-export: evidence[new_from..] arrived since the last export (at
     * last_export); new_from == nevidence when nothing is new or on a first export. */
    size_t new_from;
    int64_t last_export;
} export_doc;

void export_doc_init(export_doc *d, const export_story *s, const export_link *previous);
void export_doc_free(export_doc *d);
/* The ticket body in markdown (no title heading). Caller frees. */
char *export_render_markdown(const export_doc *d);
/* The same as an Atlassian Document Format document ({"type":"doc","version":1,...}). */
json_t *export_render_adf(const export_doc *d);

/* ------------------------------------------------------------------ trackers */

enum tracker_rc {
    TRACKER_OK = 0,
    TRACKER_FAILED = -1, /* this story failed; the next may work (e.g. 422) */
    TRACKER_FATAL = -2   /* stop the export (credentials, not found, tracker down) */
};

/* The ticket a create or update answered. */
typedef struct ticket {
    char *id;  /* the id updates use (Shortcut/GitHub number, Jira key, Linear UUID) */
    char *url;
} ticket;
void ticket_free(ticket *t);

typedef struct tracker tracker;
typedef struct tracker_ops {
    const char *name;     /* "jira" (story_exports.tracker, --to) */
    const char *display;  /* "Jira" (messages) */
    int records;          /* keeps tickets in story_exports and marks stories exported */
    /* Allocates the tracker with its settings from the environment; NULL with err
     * naming the variable when one is missing or malformed. */
    tracker *(*open)(const export_options *o, char *err, size_t errlen);
    int (*create)(tracker *t, const export_doc *d, ticket *out, char *err, size_t errlen);
    int (*update)(tracker *t, const export_doc *d, const char *id, ticket *out, char *err,
                  size_t errlen);
    /* After the last story (markdown writes its file); may be NULL. */
    int (*finish)(tracker *t, char *err, size_t errlen);
    void (*close)(tracker *t);
} tracker_ops;

/* Every tracker starts with this. */
struct tracker {
    const tracker_ops *ops;
    const export_options *opts;
    httpc *http;           /* web trackers: one connection reused for the export */
    rng_t rng;
    net_call_policy policy;
    char *base;            /* base URL without a trailing slash */
};

extern const tracker_ops TRACKER_MARKDOWN, TRACKER_SHORTCUT, TRACKER_JIRA, TRACKER_GITHUB,
    TRACKER_LINEAR;
const tracker_ops *tracker_find(const char *name);

/* ------------------------------------------------------------------ web trackers */

/* An environment variable that must be set (non-empty, no control characters): its
 * value, or NULL with err naming it. */
const char *tracker_env(const char *name, char *err, size_t errlen);
/* Optional variable, else dflt. */
const char *tracker_env_or(const char *name, const char *dflt);
/* Sets up the HTTP side of a web tracker (base URL checked: http:// or https://,
 * trailing slashes dropped; base_var names it in errors). 0 or -1. */
int tracker_http_init(tracker *t, const export_options *o, const char *base, const char *base_var,
                      char *err, size_t errlen);
void tracker_http_close(tracker *t);

/* Adds the tracker's authentication and content headers to a request. */
typedef void (*tracker_auth_fn)(tracker *t, httpc_request *r);

/* One JSON exchange: method url with body (stolen; NULL = none), retried under the
 * tracker's policy. TRACKER_OK with *answer (parsed JSON, NULL for an empty body) on
 * 2xx; otherwise a message naming the tracker and what was done ("Jira rejected the
 * credentials (401)"), FATAL for 401/403/404, exhausted retries and transport
 * failures, FAILED for other answers. */
int tracker_send(tracker *t, tracker_auth_fn auth, const char *method, const char *url,
                 json_t *body, json_t **answer, char *err, size_t errlen);
/* A string or integer field as text ("123"), or NULL. Caller frees. */
char *tracker_json_id(const json_t *obj, const char *key);

#endif

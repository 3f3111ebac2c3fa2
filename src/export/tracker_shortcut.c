/* Shortcut (REST API v3): a story per feedline story. POST /api/v3/stories creates
 * (name, description, story_type, and workflow_state_id or project_id), PUT
 * /api/v3/stories/{id} updates; the token goes in the Shortcut-Token header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"

#define DEFAULT_BASE "https://api.app.shortcut.com"

typedef struct shortcut {
    tracker t;
    const char *token;
    const char *target_key;  /* "workflow_state_id" or "project_id" */
    json_int_t target;
} shortcut;

static void auth(tracker *t, httpc_request *r) {
    httpc_request_header(r, "Shortcut-Token", ((shortcut *)t)->token);
    httpc_request_header(r, "Accept", "application/json");
}

/* A whole positive number from the environment variable name. */
static int env_id(const char *name, const char *v, json_int_t *out, char *err, size_t errlen) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end || x <= 0) {
        snprintf(err, errlen, "%s must be a number (got \"%.40s\")", name, v);
        return -1;
    }
    *out = (json_int_t)x;
    return 0;
}

static tracker *sc_open(const export_options *o, char *err, size_t errlen) {
    shortcut *s = xcalloc(1, sizeof *s);
    s->t.ops = &TRACKER_SHORTCUT;
    const char *state = tracker_env_or("SHORTCUT_WORKFLOW_STATE_ID", NULL);
    const char *project = tracker_env_or("SHORTCUT_PROJECT_ID", NULL);
    s->target_key = state ? "workflow_state_id" : "project_id";
    int ok = (s->token = tracker_env("SHORTCUT_API_TOKEN", err, errlen)) != NULL;
    if (ok && !state && !project) {
        snprintf(err, errlen, "SHORTCUT_WORKFLOW_STATE_ID (or SHORTCUT_PROJECT_ID) is not set");
        ok = 0;
    }
    ok = ok && env_id(state ? "SHORTCUT_WORKFLOW_STATE_ID" : "SHORTCUT_PROJECT_ID",
                      state ? state : project, &s->target, err, errlen) == 0;
    ok = ok && tracker_http_init(&s->t, o, tracker_env_or("SHORTCUT_BASE_URL", DEFAULT_BASE),
                                 "SHORTCUT_BASE_URL", err, errlen) == 0;
    if (!ok) {
        tracker_http_close(&s->t);
        free(s);
        return NULL;
    }
    return &s->t;
}

static const char *story_type(const export_doc *d) {
    if (strcmp(d->kind, "feature") == 0) return "feature";
    return strcmp(d->kind, "question") == 0 ? "chore" : "bug";
}

static json_t *story_body(const export_doc *d) {
    char *desc = export_render_markdown(d);
    json_t *b = json_pack("{s:o,s:o,s:s}", "name", jx_string(d->story->title), "description",
                          jx_string(desc), "story_type", story_type(d));
    free(desc);
    return b;
}

/* The ticket of an answer: {"id": 123, "app_url": "..."}. */
static int read_ticket(tracker *t, json_t *answer, ticket *out, char *err, size_t errlen) {
    out->id = tracker_json_id(answer, "id");
    out->url = xstrdup(jx_str(answer, "app_url") ? jx_str(answer, "app_url") : "");
    json_decref(answer);
    if (out->id) return TRACKER_OK;
    snprintf(err, errlen, "%s answered without a story id", t->ops->display);
    ticket_free(out);
    return TRACKER_FAILED;
}

static int sc_create(tracker *t, const export_doc *d, ticket *out, char *err, size_t errlen) {
    shortcut *s = (shortcut *)t;
    json_t *body = story_body(d);
    json_object_set_new(body, s->target_key, json_integer(s->target));
    char *url = xasprintf("%s/api/v3/stories", t->base);
    json_t *answer;
    int rc = tracker_send(t, auth, "POST", url, body, &answer, err, errlen);
    free(url);
    return rc == TRACKER_OK ? read_ticket(t, answer, out, err, errlen) : rc;
}

static int sc_update(tracker *t, const export_doc *d, const char *id, ticket *out, char *err,
                     size_t errlen) {
    char *seg = httpc_encode_segment(id);
    char *url = xasprintf("%s/api/v3/stories/%s", t->base, seg);
    free(seg);
    json_t *answer;
    int rc = tracker_send(t, auth, "PUT", url, story_body(d), &answer, err, errlen);
    free(url);
    return rc == TRACKER_OK ? read_ticket(t, answer, out, err, errlen) : rc;
}

static void sc_close(tracker *t) {
    tracker_http_close(t);
    free(t);
}

const tracker_ops TRACKER_SHORTCUT = {"shortcut", "Shortcut", 1, sc_open, sc_create, sc_update,
                                      NULL, sc_close};

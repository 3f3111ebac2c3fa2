/* Jira Cloud (REST API v3): an issue per story. POST /rest/api/3/issue creates
 * (fields: project.key, summary, issuetype.name Bug|Story|Task, description in
 * Atlassian Document Format), PUT /rest/api/3/issue/{key} updates (204, no body).
 * Basic authentication with the account email and an API token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"

/* Jira's summary field holds at most 255 characters. */
#define SUMMARY_BYTES 250

typedef struct jira {
    tracker t;
    const char *email, *token, *project;
} jira;

static void auth(tracker *t, httpc_request *r) {
    jira *j = (jira *)t;
    httpc_request_basic_auth(r, j->email, j->token);
    httpc_request_header(r, "Accept", "application/json");
}

static tracker *jira_open(const export_options *o, char *err, size_t errlen) {
    jira *j = xcalloc(1, sizeof *j);
    j->t.ops = &TRACKER_JIRA;
    const char *base = tracker_env("JIRA_BASE_URL", err, errlen);
    int ok = base && (j->email = tracker_env("JIRA_EMAIL", err, errlen)) &&
             (j->token = tracker_env("JIRA_API_TOKEN", err, errlen)) &&
             (j->project = tracker_env("JIRA_PROJECT_KEY", err, errlen)) &&
             tracker_http_init(&j->t, o, base, "JIRA_BASE_URL", err, errlen) == 0;
    if (!ok) {
        tracker_http_close(&j->t);
        free(j);
        return NULL;
    }
    return &j->t;
}

static const char *issue_type(const export_doc *d) {
    if (strcmp(d->kind, "feature") == 0) return "Story";
    return strcmp(d->kind, "question") == 0 ? "Task" : "Bug";
}

static json_t *summary(const export_doc *d) {
    char *s = xstrndup(d->story->title, SUMMARY_BYTES);
    json_t *v = jx_string(s);
    free(s);
    return v;
}

static void set_ticket(tracker *t, const char *key, ticket *out) {
    out->id = xstrdup(key);
    char *seg = httpc_encode_segment(key);
    out->url = xasprintf("%s/browse/%s", t->base, seg);
    free(seg);
}

static int jira_create(tracker *t, const export_doc *d, ticket *out, char *err, size_t errlen) {
    jira *j = (jira *)t;
    json_t *body = json_pack("{s:{s:{s:s},s:o,s:{s:s},s:o}}", "fields", "project", "key",
                             j->project, "summary", summary(d), "issuetype", "name",
                             issue_type(d), "description", export_render_adf(d));
    char *url = xasprintf("%s/rest/api/3/issue", t->base);
    json_t *answer;
    int rc = tracker_send(t, auth, "POST", url, body, &answer, err, errlen);
    free(url);
    if (rc != TRACKER_OK) return rc;
    const char *key = jx_str(answer, "key");
    if (key && key[0]) set_ticket(t, key, out);
    else snprintf(err, errlen, "Jira answered without an issue key");
    json_decref(answer);
    return out->id ? TRACKER_OK : TRACKER_FAILED;
}

static int jira_update(tracker *t, const export_doc *d, const char *id, ticket *out, char *err,
                       size_t errlen) {
    json_t *body = json_pack("{s:{s:o,s:o}}", "fields", "summary", summary(d), "description",
                             export_render_adf(d));
    char *seg = httpc_encode_segment(id);
    char *url = xasprintf("%s/rest/api/3/issue/%s", t->base, seg);
    free(seg);
    json_t *answer;
    int rc = tracker_send(t, auth, "PUT", url, body, &answer, err, errlen);
    free(url);
    json_decref(answer);
    if (rc == TRACKER_OK) set_ticket(t, id, out);
    return rc;
}

static void jira_close(tracker *t) {
    tracker_http_close(t);
    free(t);
}

const tracker_ops TRACKER_JIRA = {"jira", "Jira", 1, jira_open, jira_create, jira_update, NULL,
                                  jira_close};

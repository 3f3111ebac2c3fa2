/* Linear (GraphQL at POST /graphql): an issue per story through the issueCreate and
 * issueUpdate mutations; the personal API key goes as is in Authorization. GraphQL
 * reports failures in an "errors" array, also with HTTP 200: an answer is only a
 * success when the mutation says success and returns the issue. Linear signals its
 * rate limit as a RATELIMITED error (HTTP 400 or 429) with
 * X-RateLimit-Requests-Reset in epoch milliseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"

#define DEFAULT_BASE "https://api.linear.app"

static const char CREATE[] =
    "mutation IssueCreate($input: IssueCreateInput!) {"
    " issueCreate(input: $input) { success issue { id identifier url } } }";
static const char UPDATE[] =
    "mutation IssueUpdate($id: String!, $input: IssueUpdateInput!) {"
    " issueUpdate(id: $id, input: $input) { success issue { id identifier url } } }";

typedef struct linear {
    tracker t;
    const char *key, *team;
    char *url;
} linear;

static void auth(tracker *t, httpc_request *r) {
    httpc_request_header(r, "Authorization", ((linear *)t)->key);
    httpc_request_header(r, "Accept", "application/json");
}

static int ratelimited(const httpc_request *r) {
    return r->status == 400 && r->response.len && strstr(buf_cstr(&r->response), "\"RATELIMITED\"");
}

static tracker *lin_open(const export_options *o, char *err, size_t errlen) {
    linear *l = xcalloc(1, sizeof *l);
    l->t.ops = &TRACKER_LINEAR;
    int ok = (l->key = tracker_env("LINEAR_API_KEY", err, errlen)) &&
             (l->team = tracker_env("LINEAR_TEAM_ID", err, errlen)) &&
             tracker_http_init(&l->t, o, tracker_env_or("LINEAR_API_URL", DEFAULT_BASE),
                               "LINEAR_API_URL", err, errlen) == 0;
    if (!ok) {
        tracker_http_close(&l->t);
        free(l);
        return NULL;
    }
    l->url = xasprintf("%s/graphql", l->t.base);
    l->t.policy.is_rate_limited = ratelimited;
    return &l->t;
}

/* The issue of a mutation answer ({"data":{"issueCreate":{"success":true,"issue":{..}}}}),
 * or the GraphQL error: "Entity not found" is the 404 of GraphQL and ends the export
 * like one. */
static int read_ticket(json_t *answer, const char *mutation, ticket *out, char *err,
                       size_t errlen) {
    json_t *errors = jx_arr(answer, "errors");
    json_t *result = jx_obj(jx_obj(answer, "data"), mutation);
    json_t *issue = jx_obj(result, "issue");
    int rc = TRACKER_OK;
    if (json_array_size(errors)) {
        const char *msg = jx_str(json_array_get(errors, 0), "message");
        msg = msg ? msg : "(no message)";
        snprintf(err, errlen, "Linear refused %s: %.300s", mutation, msg);
        rc = strncmp(msg, "Entity not found", 16) == 0 ? TRACKER_FATAL : TRACKER_FAILED;
    } else if (!jx_bool(result, "success", 0) || !jx_str(issue, "id")) {
        snprintf(err, errlen, "Linear answered %s without success and an issue", mutation);
        rc = TRACKER_FAILED;
    } else {
        out->id = xstrdup(jx_str(issue, "id"));
        out->url = xstrdup(jx_str(issue, "url") ? jx_str(issue, "url") : "");
    }
    json_decref(answer);
    return rc;
}

static int mutate(tracker *t, const char *query, const char *mutation, json_t *variables,
                  ticket *out, char *err, size_t errlen) {
    json_t *body = json_pack("{s:s,s:o}", "query", query, "variables", variables);
    json_t *answer;
    int rc = tracker_send(t, auth, "POST", ((linear *)t)->url, body, &answer, err, errlen);
    return rc == TRACKER_OK ? read_ticket(answer, mutation, out, err, errlen) : rc;
}

static json_t *input(const export_doc *d) {
    char *desc = export_render_markdown(d);
    json_t *in = json_pack("{s:o,s:o}", "title", jx_string(d->story->title), "description",
                           jx_string(desc));
    free(desc);
    return in;
}

static int lin_create(tracker *t, const export_doc *d, ticket *out, char *err, size_t errlen) {
    json_t *in = input(d);
    json_object_set_new(in, "teamId", json_string(((linear *)t)->team));
    return mutate(t, CREATE, "issueCreate", json_pack("{s:o}", "input", in), out, err, errlen);
}

static int lin_update(tracker *t, const export_doc *d, const char *id, ticket *out, char *err,
                      size_t errlen) {
    return mutate(t, UPDATE, "issueUpdate", json_pack("{s:s,s:o}", "id", id, "input", input(d)),
                  out, err, errlen);
}

static void lin_close(tracker *t) {
    tracker_http_close(t);
    free(((linear *)t)->url);
    free(t);
}

const tracker_ops TRACKER_LINEAR = {"linear", "Linear", 1, lin_open, lin_create, lin_update,
                                    NULL, lin_close};

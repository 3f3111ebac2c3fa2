/* GitHub Issues (REST, API version 2022-11-28): an issue per story. POST
 * /repos/{owner}/{repo}/issues creates (title, body, labels), PATCH
 * /repos/{owner}/{repo}/issues/{number} updates. A 403 whose x-ratelimit-remaining
 * is 0 is GitHub's primary rate limit, not a refusal: it is waited out like a 429. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"

#define DEFAULT_BASE "https://api.github.com"
#define LABEL "feedline"

typedef struct github {
    tracker t;
    char *bearer;
    char *repo_path; /* "/repos/OWNER/REPO" with both segments encoded */
} github;

static void auth(tracker *t, httpc_request *r) {
    httpc_request_header(r, "Authorization", ((github *)t)->bearer);
    httpc_request_header(r, "Accept", "application/vnd.github+json");
    httpc_request_header(r, "X-GitHub-Api-Version", "2022-11-28");
    /* GitHub refuses requests without a User-Agent. */
    httpc_request_header(r, "User-Agent", "feedline");
}

static int primary_rate_limit(const httpc_request *r) {
    const char *left = httpc_response_header(r, "x-ratelimit-remaining");
    return r->status == 403 && left && strcmp(left, "0") == 0;
}

/* "owner/repo" as an encoded path, or NULL. */
static char *repo_path(const char *repo) {
    const char *slash = strchr(repo, '/');
    if (!slash || slash == repo || !slash[1] || strchr(slash + 1, '/')) return NULL;
    char *owner = xstrndup(repo, (size_t)(slash - repo));
    char *o = httpc_encode_segment(owner), *n = httpc_encode_segment(slash + 1);
    char *path = xasprintf("/repos/%s/%s", o, n);
    free(owner);
    free(o);
    free(n);
    return path;
}

static tracker *gh_open(const export_options *o, char *err, size_t errlen) {
    github *g = xcalloc(1, sizeof *g);
    g->t.ops = &TRACKER_GITHUB;
    const char *token = tracker_env("GITHUB_TOKEN", err, errlen);
    const char *repo = token ? tracker_env("GITHUB_REPOSITORY", err, errlen) : NULL;
    int ok = repo != NULL;
    if (ok && !(g->repo_path = repo_path(repo))) {
        snprintf(err, errlen, "GITHUB_REPOSITORY must be OWNER/REPO (got \"%.80s\")", repo);
        ok = 0;
    }
    ok = ok && tracker_http_init(&g->t, o, tracker_env_or("GITHUB_API_URL", DEFAULT_BASE),
                                 "GITHUB_API_URL", err, errlen) == 0;
    if (!ok) {
        tracker_http_close(&g->t);
        free(g->repo_path);
        free(g);
        return NULL;
    }
    g->bearer = xasprintf("Bearer %s", token);
    g->t.policy.is_rate_limited = primary_rate_limit;
    return &g->t;
}

static json_t *issue_body(const export_doc *d) {
    char *body = export_render_markdown(d);
    json_t *b = json_pack("{s:o,s:o,s:[s,s]}", "title", jx_string(d->story->title), "body",
                          jx_string(body), "labels", LABEL, d->kind);
    free(body);
    return b;
}

/* {"number": 12, "html_url": "..."} */
static int read_ticket(json_t *answer, ticket *out, char *err, size_t errlen) {
    out->id = tracker_json_id(answer, "number");
    out->url = xstrdup(jx_str(answer, "html_url") ? jx_str(answer, "html_url") : "");
    json_decref(answer);
    if (out->id) return TRACKER_OK;
    snprintf(err, errlen, "GitHub answered without an issue number");
    ticket_free(out);
    return TRACKER_FAILED;
}

static int gh_create(tracker *t, const export_doc *d, ticket *out, char *err, size_t errlen) {
    char *url = xasprintf("%s%s/issues", t->base, ((github *)t)->repo_path);
    json_t *answer;
    int rc = tracker_send(t, auth, "POST", url, issue_body(d), &answer, err, errlen);
    free(url);
    return rc == TRACKER_OK ? read_ticket(answer, out, err, errlen) : rc;
}

static int gh_update(tracker *t, const export_doc *d, const char *id, ticket *out, char *err,
                     size_t errlen) {
    char *seg = httpc_encode_segment(id);
    char *url = xasprintf("%s%s/issues/%s", t->base, ((github *)t)->repo_path, seg);
    free(seg);
    json_t *body = issue_body(d);
    json_object_del(body, "labels"); /* labels people changed on the issue stay */
    json_t *answer;
    int rc = tracker_send(t, auth, "PATCH", url, body, &answer, err, errlen);
    free(url);
    return rc == TRACKER_OK ? read_ticket(answer, out, err, errlen) : rc;
}

static void gh_close(tracker *t) {
    github *g = (github *)t;
    tracker_http_close(t);
    free(g->bearer);
    free(g->repo_path);
    free(g);
}

const tracker_ops TRACKER_GITHUB = {"github", "GitHub", 1, gh_open, gh_create, gh_update, NULL,
                                    gh_close};

/* fake_trackers — fake issue-tracker APIs for the export tests, on the fakehttp core.
 * One binary, one tracker per process (--tracker):
 *   shortcut  POST /api/v3/stories, PUT /api/v3/stories/{id}; header Shortcut-Token;
 *             name (non-empty string), story_type bug|feature|chore, workflow_state_id
 *             or project_id (integers) required on create.
 *   jira      POST /rest/api/3/issue, PUT /rest/api/3/issue/{key} (204); Basic auth
 *             EMAIL:TOKEN; fields.project.key (= --project), summary (1..255),
 *             issuetype.name Bug|Story|Task, description a valid ADF document (doc
 *             version 1; paragraph/heading/bulletList/listItem/text nodes, no empty
 *             text).
 *   github    POST /repos/{owner}/{repo}/issues, PATCH .../issues/{number}; Bearer
 *             token, Accept application/vnd.github+json, X-GitHub-Api-Version
 *             2022-11-28, a User-Agent; title required (422), labels strings.
 *   linear    POST /graphql; Authorization: KEY (no Bearer); issueCreate with
 *             variables.input {teamId (= --team), title, description} or issueUpdate
 *             with variables {id, input}; an unknown id answers GraphQL "Entity not
 *             found".
 * Wrong or missing credentials: 401. Unknown ticket on update: 404 (Linear: the
 * GraphQL error). Malformed input: 400/422 with the tracker's error shape.
 *
 * Faults (POST /_config {"rate_limit":N,"reset_ms":MS,"rate_status":S,"fail_5xx":N,
 * "fail_status":S}): the next N API requests (after authentication) answer the
 * tracker's rate limit (429, or rate_status) with its reset header: Retry-After
 * seconds (Shortcut, Jira), x-ratelimit-reset epoch seconds with
 * x-ratelimit-remaining 0 (GitHub), X-RateLimit-Requests-Reset epoch milliseconds
 * with a RATELIMITED error (Linear, HTTP 400 unless rate_status). The reset lies
 * reset_ms ahead (rounded up to the header's unit); a request that arrives before the
 * announced reset counts as early_retries. fail_5xx answers the next N with
 * fail_status (503).
 *
 * Control (no credentials): GET /_stats, GET /_ticket?id=ID ({"id","title","request"
 * (the last accepted body, as text),"updates"}).
 * Prints "listening on 127.0.0.1:PORT"; stops on SIGTERM/SIGINT. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakes/fakehttp.h"
#include "util/util.h"

#define MAX_TICKETS 10000

enum kind { SHORTCUT, JIRA, GITHUB, LINEAR };

typedef struct fticket {
    char *id, *title, *request;
    int updates;
} fticket;

typedef struct counters {
    uint64_t requests, creates, updates, unauthorized, bad_requests, not_found, rate_limited,
        faults, early_retries;
} counters;

typedef struct fake {
    enum kind kind;
    const char *token, *email, *project, *repo, *team;
    char *basic;           /* the expected Authorization value (Jira) */
    fticket *tickets;
    size_t n;
    int next;
    int rate_limit, rate_status, fail_5xx, fail_status;
    int64_t reset_ms;
    int64_t reset_at_ms;   /* the reset last announced (wall ms), 0 = none pending */
    /* ... or, for a relative Retry-After, on the monotonic clock: the client waits that
     * long on its own monotonic clock, and the wall clock (slewed, stepped) may run
     * differently over the wait. */
    int64_t reset_at_mono_ms;
    counters c;
} fake;

/* ------------------------------------------------------------------ answers */

static void respond_json(fh_request *req, int status, json_t *v) {
    char *s = jx_dump(v);
    json_decref(v);
    fh_respond(req, status, "application/json", s, strlen(s));
    free(s);
}

/* The tracker's error shape. */
static void respond_error(fake *fk, fh_request *req, int status, const char *msg) {
    if (status == 401) fk->c.unauthorized++;
    else if (status == 404) fk->c.not_found++;
    else if (status < 500 && status != 429) fk->c.bad_requests++;
    json_t *body;
    switch (fk->kind) {
    case JIRA: body = json_pack("{s:[s],s:{}}", "errorMessages", msg, "errors"); break;
    case LINEAR:
        body = json_pack("{s:[{s:s,s:{s:s}}]}", "errors", "message", msg, "extensions", "code",
                         status == 401 ? "AUTHENTICATION_ERROR" : "INVALID_INPUT");
        break;
    default: body = json_pack("{s:s}", "message", msg);
    }
    respond_json(req, status, body);
}

/* ------------------------------------------------------------------ tickets */

static fticket *find(fake *fk, const char *id) {
    for (size_t i = 0; i < fk->n; i++)
        if (strcmp(fk->tickets[i].id, id) == 0) return &fk->tickets[i];
    return NULL;
}

static fticket *add_ticket(fake *fk, const char *title, const char *request) {
    if (fk->n >= MAX_TICKETS) return NULL;
    fk->tickets = xrealloc(fk->tickets, (fk->n + 1) * sizeof *fk->tickets);
    fticket *t = &fk->tickets[fk->n++];
    int num = ++fk->next;
    switch (fk->kind) {
    case JIRA: t->id = xasprintf("%s-%d", fk->project, num); break;
    case LINEAR: t->id = xasprintf("00000000-0000-4000-8000-%012d", num); break;
    default: t->id = xasprintf("%d", num);
    }
    t->title = xstrdup(title);
    t->request = xstrdup(request);
    t->updates = 0;
    fk->c.creates++;
    return t;
}

static void update_ticket(fake *fk, fticket *t, const char *title, const char *request) {
    if (title) {
        free(t->title);
        t->title = xstrdup(title);
    }
    free(t->request);
    t->request = xstrdup(request);
    t->updates++;
    fk->c.updates++;
}

/* ------------------------------------------------------------------ faults */

/* Answers the rate limit with the tracker's reset header; 1 when answered. */
static int rate_limited(fake *fk, fh_request *req) {
    if (fk->rate_limit <= 0) return 0;
    fk->rate_limit--;
    fk->c.rate_limited++;
    int64_t now = wall_ms();
    char v[40];
    int status = fk->rate_status ? fk->rate_status : fk->kind == LINEAR ? 400 : 429;
    if (fk->kind == GITHUB) {
        int64_t at = (now + fk->reset_ms + 999) / 1000;
        fk->reset_at_ms = at * 1000;
        snprintf(v, sizeof v, "%lld", (long long)at);
        fh_add_header(req, "x-ratelimit-reset", v);
        fh_add_header(req, "x-ratelimit-remaining", "0");
    } else if (fk->kind == LINEAR) {
        fk->reset_at_ms = now + fk->reset_ms;
        snprintf(v, sizeof v, "%lld", (long long)fk->reset_at_ms);
        fh_add_header(req, "X-RateLimit-Requests-Reset", v);
        respond_json(req, status, json_pack("{s:[{s:s,s:{s:s}}]}", "errors", "message",
                                            "Rate limit exceeded", "extensions", "code",
                                            "RATELIMITED"));
        return 1;
    } else {
        int64_t secs = (fk->reset_ms + 999) / 1000;
        fk->reset_at_mono_ms = mono_ms() + secs * 1000;
        snprintf(v, sizeof v, "%lld", (long long)secs);
        fh_add_header(req, "Retry-After", v);
    }
    respond_error(fk, req, status, "rate limit exceeded");
    return 1;
}

static int fault(fake *fk, fh_request *req) {
    if (fk->fail_5xx <= 0) return 0;
    fk->fail_5xx--;
    fk->c.faults++;
    respond_error(fk, req, fk->fail_status ? fk->fail_status : 503, "injected failure");
    return 1;
}

/* Counts a request that came before the reset the last rate-limit answer announced. */
static void note_arrival(fake *fk, const fh_request *req) {
    if (fk->reset_at_ms && wall_ms() < fk->reset_at_ms) fk->c.early_retries++;
    if (fk->reset_at_mono_ms && fh_req_arrival_us(req) / 1000 < fk->reset_at_mono_ms)
        fk->c.early_retries++;
    fk->reset_at_ms = fk->reset_at_mono_ms = 0;
}

/* ------------------------------------------------------------------ auth */

static int authorised(fake *fk, fh_request *req) {
    const char *a = fh_req_header(req, "Authorization");
    switch (fk->kind) {
    case SHORTCUT: {
        const char *t = fh_req_header(req, "Shortcut-Token");
        return t && strcmp(t, fk->token) == 0;
    }
    case JIRA: return a && strcmp(a, fk->basic) == 0;
    case GITHUB: return a && strncmp(a, "Bearer ", 7) == 0 && strcmp(a + 7, fk->token) == 0;
    case LINEAR: return a && strcmp(a, fk->token) == 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ Shortcut */

static const char *shortcut_check(const json_t *b, int create) {
    if (!json_is_object(b)) return "body must be a JSON object";
    json_t *name = json_object_get(b, "name"), *type = json_object_get(b, "story_type");
    json_t *desc = json_object_get(b, "description");
    if ((create || name) && (!json_is_string(name) || !json_string_length(name)))
        return "name must be a non-empty string";
    if (type && (!json_is_string(type) || (strcmp(json_string_value(type), "bug") &&
                                           strcmp(json_string_value(type), "feature") &&
                                           strcmp(json_string_value(type), "chore"))))
        return "story_type must be one of bug, feature, chore";
    if (desc && !json_is_string(desc)) return "description must be a string";
    if (create && !json_is_integer(json_object_get(b, "workflow_state_id")) &&
        !json_is_integer(json_object_get(b, "project_id")))
        return "workflow_state_id or project_id (integer) is required";
    return NULL;
}

static void shortcut_answer(fh_request *req, int status, const fticket *t) {
    char *url = xasprintf("https://app.shortcut.com/fake/story/%s", t->id);
    respond_json(req, status, json_pack("{s:I,s:s,s:s}", "id", (json_int_t)atoll(t->id),
                                        "app_url", url, "name", t->title));
    free(url);
}

static void shortcut(fake *fk, fh_request *req, const char *m, const char *path, json_t *b,
                     const char *raw) {
    const char *err;
    if (!strcmp(m, "POST") && !strcmp(path, "/api/v3/stories")) {
        if ((err = shortcut_check(b, 1))) { respond_error(fk, req, 400, err); return; }
        fticket *t = add_ticket(fk, jx_str(b, "name"), raw);
        { t ? shortcut_answer(req, 201, t) : respond_error(fk, req, 400, "too many"); return; }
    }
    if (!strcmp(m, "PUT") && !strncmp(path, "/api/v3/stories/", 16)) {
        fticket *t = find(fk, path + 16);
        if (!t) { respond_error(fk, req, 404, "Resource not found."); return; }
        if ((err = shortcut_check(b, 0))) { respond_error(fk, req, 400, err); return; }
        update_ticket(fk, t, jx_str(b, "name"), raw);
        { shortcut_answer(req, 200, t); return; }
    }
    respond_error(fk, req, 404, "Resource not found.");
}

/* ------------------------------------------------------------------ Jira */

static const char *adf_node(const json_t *n, int depth);

static const char *adf_children(const json_t *n, int depth, int need) {
    json_t *c = json_object_get(n, "content");
    if (!json_is_array(c) || (need && !json_array_size(c))) return "content must be a non-empty array";
    size_t i;
    json_t *k;
    json_array_foreach(c, i, k) {
        const char *err = adf_node(k, depth + 1);
        if (err) return err;
    }
    return NULL;
}

static const char *adf_node(const json_t *n, int depth) {
    const char *type = jx_str(n, "type");
    if (!type || depth > 20) return "ADF node without a type";
    if (!strcmp(type, "text")) {
        json_t *t = json_object_get(n, "text");
        return json_is_string(t) && json_string_length(t) ? NULL : "ADF text node with empty text";
    }
    if (!strcmp(type, "paragraph")) return adf_children(n, depth, 0);
    if (!strcmp(type, "heading")) {
        int64_t level = jx_int(jx_obj(n, "attrs"), "level", 0);
        if (level < 1 || level > 6) return "heading level must be 1..6";
        return adf_children(n, depth, 0);
    }
    if (!strcmp(type, "bulletList") || !strcmp(type, "listItem")) return adf_children(n, depth, 1);
    return "unsupported ADF node type";
}

static const char *adf_check(const json_t *d) {
    if (!json_is_object(d) || strcmp(jx_str(d, "type") ? jx_str(d, "type") : "", "doc") ||
        jx_int(d, "version", 0) != 1)
        return "description must be an ADF document (type doc, version 1)";
    return adf_children(d, 0, 0);
}

static const char *jira_check(fake *fk, const json_t *f, int create) {
    if (!json_is_object(f)) return "fields must be an object";
    json_t *summary = json_object_get(f, "summary");
    if ((create || summary) &&
        (!json_is_string(summary) || !json_string_length(summary) || json_string_length(summary) > 255))
        return "summary: You must specify a summary of the issue (at most 255 characters).";
    if (create) {
        const char *key = jx_str(jx_obj(f, "project"), "key");
        if (!key || strcmp(key, fk->project)) return "project: valid project is required";
        const char *it = jx_str(jx_obj(f, "issuetype"), "name");
        if (!it || (strcmp(it, "Bug") && strcmp(it, "Story") && strcmp(it, "Task")))
            return "issuetype: valid issue type is required";
    }
    json_t *d = json_object_get(f, "description");
    return d ? adf_check(d) : NULL;
}

static void jira(fake *fk, fh_request *req, const char *m, const char *path, json_t *b,
                 const char *raw) {
    json_t *fields = jx_obj(b, "fields");
    const char *err;
    if (!strcmp(m, "POST") && !strcmp(path, "/rest/api/3/issue")) {
        if ((err = jira_check(fk, fields, 1))) { respond_error(fk, req, 400, err); return; }
        fticket *t = add_ticket(fk, jx_str(fields, "summary"), raw);
        if (!t) { respond_error(fk, req, 400, "too many"); return; }
        char *self = xasprintf("http://fake/rest/api/3/issue/%s", t->id);
        respond_json(req, 201, json_pack("{s:s,s:s,s:s}", "id", t->id + strlen(fk->project) + 1,
                                         "key", t->id, "self", self));
        free(self);
        return;
    }
    if (!strcmp(m, "PUT") && !strncmp(path, "/rest/api/3/issue/", 18)) {
        fticket *t = find(fk, path + 18);
        if (!t)
            { respond_error(fk, req, 404,
                                 "Issue does not exist or you do not have permission to see it."); return; }
        if ((err = jira_check(fk, fields, 0))) { respond_error(fk, req, 400, err); return; }
        update_ticket(fk, t, jx_str(fields, "summary"), raw);
        fh_respond(req, 204, NULL, "", 0);
        return;
    }
    respond_error(fk, req, 404, "not found");
}

/* ------------------------------------------------------------------ GitHub */

static const char *github_check(const json_t *b, int create) {
    if (!json_is_object(b)) return "Problems parsing JSON";
    json_t *title = json_object_get(b, "title"), *body = json_object_get(b, "body");
    if ((create || title) && (!json_is_string(title) || !json_string_length(title)))
        return "Validation Failed: title is missing";
    if (body && !json_is_string(body) && !json_is_null(body)) return "Validation Failed: body";
    json_t *labels = json_object_get(b, "labels"), *l;
    size_t i;
    if (labels && !json_is_array(labels)) return "Validation Failed: labels";
    json_array_foreach(labels, i, l) if (!json_is_string(l)) return "Validation Failed: labels";
    return NULL;
}

static void github_answer(fake *fk, fh_request *req, int status, const fticket *t) {
    char *url = xasprintf("https://github.com/%s/issues/%s", fk->repo, t->id);
    respond_json(req, status, json_pack("{s:I,s:s,s:s}", "number", (json_int_t)atoll(t->id),
                                        "html_url", url, "title", t->title));
    free(url);
}

static void github(fake *fk, fh_request *req, const char *m, const char *path, json_t *b,
                   const char *raw) {
    const char *accept = fh_req_header(req, "Accept"), *ver = fh_req_header(req, "X-GitHub-Api-Version");
    if (!accept || strcmp(accept, "application/vnd.github+json") || !ver ||
        strcmp(ver, "2022-11-28") || !fh_req_header(req, "User-Agent"))
        { respond_error(fk, req, 400, "Accept, X-GitHub-Api-Version and User-Agent required"); return; }
    char *prefix = xasprintf("/repos/%s/issues", fk->repo);
    size_t pl = strlen(prefix);
    int in_repo = !strncmp(path, prefix, pl);
    free(prefix);
    const char *err;
    if (in_repo && !strcmp(m, "POST") && !path[pl]) {
        if ((err = github_check(b, 1))) { respond_error(fk, req, 422, err); return; }
        fticket *t = add_ticket(fk, jx_str(b, "title"), raw);
        { t ? github_answer(fk, req, 201, t) : respond_error(fk, req, 422, "too many"); return; }
    }
    if (in_repo && !strcmp(m, "PATCH") && path[pl] == '/') {
        fticket *t = find(fk, path + pl + 1);
        if (!t) { respond_error(fk, req, 404, "Not Found"); return; }
        if ((err = github_check(b, 0))) { respond_error(fk, req, 422, err); return; }
        update_ticket(fk, t, jx_str(b, "title"), raw);
        { github_answer(fk, req, 200, t); return; }
    }
    respond_error(fk, req, 404, "Not Found");
}

/* ------------------------------------------------------------------ Linear */

static void linear_issue(fh_request *req, const char *mutation, const fticket *t) {
    char *url = xasprintf("https://linear.app/fake/issue/ENG-%s", t->id + 24);
    char *ident = xasprintf("ENG-%d", atoi(t->id + 24));
    respond_json(req, 200, json_pack("{s:{s:{s:b,s:{s:s,s:s,s:s}}}}", "data", mutation, "success",
                                     1, "issue", "id", t->id, "identifier", ident, "url", url));
    free(url);
    free(ident);
}

static const char *linear_input(const json_t *in, int create) {
    json_t *title = json_object_get(in, "title"), *desc = json_object_get(in, "description");
    if (!json_is_object(in)) return "Argument Validation Error: input";
    if ((create || title) && (!json_is_string(title) || !json_string_length(title)))
        return "Argument Validation Error: title";
    if (desc && !json_is_string(desc)) return "Argument Validation Error: description";
    return NULL;
}

static void linear(fake *fk, fh_request *req, const char *m, const char *path, json_t *b,
                   const char *raw) {
    if (strcmp(m, "POST") || strcmp(path, "/graphql")) { respond_error(fk, req, 404, "Not found"); return; }
    const char *q = jx_str(b, "query");
    json_t *vars = jx_obj(b, "variables"), *in = jx_obj(vars, "input");
    const char *err;
    if (q && strstr(q, "mutation") && strstr(q, "issueCreate(")) {
        const char *team = jx_str(in, "teamId");
        if ((err = linear_input(in, 1))) { respond_error(fk, req, 400, err); return; }
        if (!team || strcmp(team, fk->team)) { respond_error(fk, req, 400, "Argument Validation Error: teamId"); return; }
        fticket *t = add_ticket(fk, jx_str(in, "title"), raw);
        { t ? linear_issue(req, "issueCreate", t) : respond_error(fk, req, 400, "too many"); return; }
    }
    if (q && strstr(q, "mutation") && strstr(q, "issueUpdate(")) {
        const char *id = jx_str(vars, "id");
        fticket *t = id ? find(fk, id) : NULL;
        if (!t) {
            fk->c.not_found++;
            respond_json(req, 200, json_pack("{s:[{s:s,s:{s:s}}],s:n}", "errors", "message",
                                             "Entity not found: Issue", "extensions", "code",
                                             "INVALID_INPUT", "data"));
            return;
        }
        if ((err = linear_input(in, 0))) { respond_error(fk, req, 400, err); return; }
        update_ticket(fk, t, jx_str(in, "title"), raw);
        { linear_issue(req, "issueUpdate", t); return; }
    }
    respond_error(fk, req, 400, "Unknown or missing mutation");
}

/* ------------------------------------------------------------------ control */

static json_t *stats_json(const fake *fk) {
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "requests",
                     (json_int_t)fk->c.requests, "creates", (json_int_t)fk->c.creates, "updates",
                     (json_int_t)fk->c.updates, "unauthorized", (json_int_t)fk->c.unauthorized,
                     "bad_requests", (json_int_t)fk->c.bad_requests, "not_found",
                     (json_int_t)fk->c.not_found, "rate_limited", (json_int_t)fk->c.rate_limited,
                     "faults", (json_int_t)fk->c.faults, "early_retries",
                     (json_int_t)fk->c.early_retries, "tickets", (json_int_t)fk->n);
}

static void configure(fake *fk, fh_request *req) {
    size_t len;
    const char *body = fh_req_body(req, &len);
    json_t *c = json_loadb(body, len, 0, NULL);
    fk->rate_limit = (int)jx_int(c, "rate_limit", fk->rate_limit);
    fk->reset_ms = jx_int(c, "reset_ms", fk->reset_ms);
    fk->rate_status = (int)jx_int(c, "rate_status", fk->rate_status);
    fk->fail_5xx = (int)jx_int(c, "fail_5xx", fk->fail_5xx);
    fk->fail_status = (int)jx_int(c, "fail_status", fk->fail_status);
    json_decref(c);
    fh_respond(req, 200, "application/json", "{}", 2);
}

static void show_ticket(fake *fk, fh_request *req) {
    const char *id = fh_query_param(req, "id");
    fticket *t = id ? find(fk, id) : NULL;
    if (!t) { respond_json(req, 404, json_pack("{s:s}", "message", "no such ticket")); return; }
    respond_json(req, 200, json_pack("{s:s,s:s,s:s,s:i}", "id", t->id, "title", t->title,
                                     "request", t->request, "updates", t->updates));
}

static void handler(fh_request *req, void *ctx) {
    fake *fk = ctx;
    const char *m = fh_req_method(req), *path = fh_req_path(req);
    if (!strcmp(path, "/_stats")) { respond_json(req, 200, stats_json(fk)); return; }
    if (!strcmp(path, "/_config") && !strcmp(m, "POST")) { configure(fk, req); return; }
    if (!strcmp(path, "/_ticket")) { show_ticket(fk, req); return; }
    fk->c.requests++;
    note_arrival(fk, req);
    if (!authorised(fk, req)) { respond_error(fk, req, 401, "Unauthorized"); return; }
    if (rate_limited(fk, req) || fault(fk, req)) return;
    size_t len;
    const char *raw = fh_req_body(req, &len);
    json_t *b = json_loadb(raw, len, 0, NULL);
    const char *ctype = fh_req_header(req, "Content-Type");
    if (!b || !ctype || strncmp(ctype, "application/json", 16)) {
        respond_error(fk, req, 400, "a JSON body with Content-Type application/json is required");
    } else {
        switch (fk->kind) {
        case SHORTCUT: shortcut(fk, req, m, path, b, raw); break;
        case JIRA: jira(fk, req, m, path, b, raw); break;
        case GITHUB: github(fk, req, m, path, b, raw); break;
        case LINEAR: linear(fk, req, m, path, b, raw); break;
        }
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ setup */

static const char USAGE[] =
    "usage: fake_trackers --tracker shortcut|jira|github|linear [--port 0] [--token T]\n"
    "         [--email E] [--project KEY] [--repo OWNER/REPO] [--team ID]\n";

static fh_server *the_server;
static void on_signal(int sig) {
    (void)sig;
    if (the_server) fh_stop(the_server);
}

static int parse_kind(const char *s, enum kind *k) {
    static const char *const NAMES[] = {"shortcut", "jira", "github", "linear"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, NAMES[i])) return *k = (enum kind)i, 0;
    return -1;
}

static int parse_args(int argc, char **argv, fake *fk, int *port) {
    static const struct option opts[] = {
        {"tracker", required_argument, NULL, 'k'}, {"port", required_argument, NULL, 'p'},
        {"token", required_argument, NULL, 't'},   {"email", required_argument, NULL, 'e'},
        {"project", required_argument, NULL, 'P'}, {"repo", required_argument, NULL, 'r'},
        {"team", required_argument, NULL, 'T'},    {"help", no_argument, NULL, 'h'},
        {0}};
    int c, have_kind = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            if (parse_kind(optarg, &fk->kind)) return fputs(USAGE, stderr), -1;
            have_kind = 1;
            break;
        case 'p': *port = atoi(optarg); break;
        case 't': fk->token = optarg; break;
        case 'e': fk->email = optarg; break;
        case 'P': fk->project = optarg; break;
        case 'r': fk->repo = optarg; break;
        case 'T': fk->team = optarg; break;
        case 'h': fputs(USAGE, stdout); exit(0);
        default: fputs(USAGE, stderr); return -1;
        }
    }
    return have_kind && optind == argc ? 0 : (fputs(USAGE, stderr), -1);
}

int main(int argc, char **argv) {
    log_init_from_env(LOG_WARN);
    fake fk = {0};
    fk.token = "test-token";
    fk.email = "bot@example.com";
    fk.project = "FEED";
    fk.repo = "acme/app";
    fk.team = "team-1";
    fk.reset_ms = 1000;
    int port = 0;
    if (parse_args(argc, argv, &fk, &port)) return 2;
    char *cred = xasprintf("%s:%s", fk.email, fk.token);
    char *enc = base64_encode(cred, strlen(cred));
    fk.basic = xasprintf("Basic %s", enc);
    free(cred);
    free(enc);
    fh_options fo = {0};
    fo.port = port;
    fo.handler = handler;
    fo.ctx = &fk;
    fh_server *srv = fh_create(&fo);
    if (!srv) return 1;
    the_server = srv;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("listening on 127.0.0.1:%d\n", fh_port(srv));
    fflush(stdout);
    int rc = fh_run(srv);
    fh_destroy(srv);
    for (size_t i = 0; i < fk.n; i++) {
        free(fk.tickets[i].id);
        free(fk.tickets[i].title);
        free(fk.tickets[i].request);
    }
    free(fk.tickets);
    free(fk.basic);
    return rc ? 1 : 0;
}

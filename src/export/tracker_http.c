/* The HTTP exchange every web tracker uses (see export_internal.h): settings from the
 * environment, one JSON request under the retry policy, and answers turned into
 * messages that name the tracker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export/export_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define MAX_RESPONSE_BYTES ((size_t)4 << 20) /* a ticket answer is a few KB */
#define TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 10000

const char *tracker_env(const char *name, char *err, size_t errlen) {
    const char *v = getenv(name);
    if (!v || !v[0]) {
        snprintf(err, errlen, "%s is not set", name);
        return NULL;
    }
    /* The value goes into a header or URL: a control character would split it. */
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "%s contains a control character", name);
            return NULL;
        }
    return v;
}

const char *tracker_env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v && v[0] ? v : dflt;
}

int tracker_http_init(tracker *t, const export_options *o, const char *base, const char *base_var,
                      char *err, size_t errlen) {
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) {
        snprintf(err, errlen, "%s must start with http:// or https:// (got \"%.80s\")", base_var,
                 base);
        return -1;
    }
    t->opts = o;
    t->base = xstrdup(base);
    for (size_t n = strlen(t->base); n > 0 && t->base[n - 1] == '/'; n--) t->base[n - 1] = '\0';
    t->http = httpc_new(1, MAX_RESPONSE_BYTES);
    if (!t->http) {
        snprintf(err, errlen, "cannot create the HTTP client");
        return -1;
    }
    rng_seed(&t->rng, (uint64_t)wall_ms() ^ ((uint64_t)getpid() << 32));
    t->policy.max_retries = 4;
    t->policy.max_rate_limit_waits = 5;
    t->policy.backoff_base_ms = o->backoff_base_ms > 0 ? o->backoff_base_ms : 1000;
    t->policy.backoff_cap_ms = 30 * t->policy.backoff_base_ms;
    t->policy.max_rate_limit_wait_ms = 120000;
    t->policy.rng = &t->rng;
    t->policy.cancel = o->cancel;
    return 0;
}

void tracker_http_close(tracker *t) {
    httpc_free(t->http);
    free(t->base);
}

char *tracker_json_id(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v) && json_string_value(v)[0]) return xstrdup(json_string_value(v));
    if (json_is_integer(v)) return xasprintf("%lld", (long long)json_integer_value(v));
    return NULL;
}

/* The first human message of an error body, whichever tracker wrote it: {"message"}
 * (GitHub, Shortcut), {"errorMessages":[..]} or {"errors":{field:msg}} (Jira),
 * {"errors":[{"message"}]} (GraphQL). NULL when there is none. */
static char *error_message(const httpc_request *r) {
    json_t *doc = json_loadb(buf_cstr(&r->response), r->response.len, 0, NULL);
    if (!doc) return NULL;
    const char *msg = jx_str(doc, "message");
    json_t *errors = json_object_get(doc, "errors");
    if (!msg) msg = json_string_value(json_array_get(jx_arr(doc, "errorMessages"), 0));
    if (!msg && json_is_array(errors)) msg = jx_str(json_array_get(errors, 0), "message");
    if (!msg && json_is_object(errors)) {
        const char *field;
        json_t *v;
        json_object_foreach(errors, field, v) {
            if (json_is_string(v)) {
                char *out = xasprintf("%.60s: %.200s", field, json_string_value(v));
                json_decref(doc);
                return out;
            }
        }
    }
    char *out = msg && msg[0] ? xstrndup(msg, 240) : NULL;
    json_decref(doc);
    return out;
}

static int answer_error(tracker *t, const httpc_request *r, char *err, size_t errlen) {
    const char *who = t->ops->display;
    char *msg = error_message(r);
    const char *sep = msg ? ": " : "", *detail = msg ? msg : "";
    int rc = TRACKER_FATAL;
    if (r->status == 401)
        snprintf(err, errlen, "%s rejected the credentials (401)%s%s", who, sep, detail);
    else if (r->status == 403)
        snprintf(err, errlen, "%s refused access (403): the credentials may not write there%s%s",
                 who, sep, detail);
    else if (r->status == 404)
        snprintf(err, errlen, "%s answered 404 to %s %s: check its settings, or the ticket was "
                 "deleted%s%s", who, r->method, r->url, sep, detail);
    else {
        snprintf(err, errlen, "%s refused the ticket (HTTP %ld)%s%s", who, r->status, sep, detail);
        rc = TRACKER_FAILED;
    }
    free(msg);
    return rc;
}

int tracker_send(tracker *t, tracker_auth_fn auth, const char *method, const char *url,
                 json_t *body, json_t **answer, char *err, size_t errlen) {
    *answer = NULL;
    httpc_request *r = httpc_request_new(method, url);
    r->timeout_ms = TIMEOUT_MS;
    r->connect_timeout_ms = CONNECT_TIMEOUT_MS;
    auth(t, r); /* and Accept, which GitHub wants as its own media type */
    if (body) {
        char *s = jx_dump(body);
        httpc_request_body(r, s, strlen(s));
        free(s);
        httpc_request_header(r, "Content-Type", "application/json");
        json_decref(body);
    }
    char why[400];
    int rc = net_call(t->http, r, &t->policy, NULL, why, sizeof why);
    if (rc != NET_CALL_ANSWERED) {
        snprintf(err, errlen, "%s: %s %s: %s", t->ops->display, method, url, why);
        httpc_request_free(r);
        return TRACKER_FATAL;
    }
    if (r->status >= 200 && r->status < 300) {
        rc = TRACKER_OK;
        if (r->response.len) {
            json_error_t je;
            *answer = json_loadb(r->response.data, r->response.len, 0, &je);
            if (!*answer) {
                snprintf(err, errlen, "%s answered %s %s with malformed JSON (%s)",
                         t->ops->display, method, url, je.text);
                rc = TRACKER_FAILED;
            }
        }
    } else {
        rc = answer_error(t, r, err, errlen);
    }
    httpc_request_free(r);
    return rc;
}

void ticket_free(ticket *t) {
    free(t->id);
    free(t->url);
    t->id = t->url = NULL;
}

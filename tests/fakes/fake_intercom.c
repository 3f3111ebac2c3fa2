/* fake_intercom — a fake Intercom REST API for tests and benchmarks, on the fakehttp core.
 *
 * Serves a generated set of conversations (tests/support/convgen: the same vocabulary,
 * seed, count, base time and days always give the same conversations, so a test can
 * regenerate what the fake serves and know the truth):
 *   POST /conversations/search   query (AND/OR of created_at, updated_at, id with > < = !=),
 *                                pagination (per_page 1..150, starting_after cursor),
 *                                sort (created_at/updated_at/id, ascending/descending;
 *                                default id ascending); items without conversation_parts
 *   GET  /conversations/{id}     the full conversation
 * Both require `Authorization: Bearer TOKEN` (401 with Intercom's error body otherwise)
 * and `Intercom-Version` (400 otherwise).
 *
 * Faults, decided per request by hashing (seed, method, target, body, attempt number),
 * so a given request's n-th attempt always gets the same fate whatever the interleaving:
 * --fault-5xx P (500/502/503), --fault-timeout P (never answered), --fault-malformed P
 * (200 with half a JSON body). --fail-ids ID[:STATUS],... always answer STATUS (default
 * 500) to those conversations' detail requests. --rate-limit N allows N API requests per
 * --rate-window-ms window (default 1000, aligned to the wall clock) and answers 429
 * beyond, with X-RateLimit-Limit/Remaining/Reset (reset in epoch seconds) and, with
 * --retry-after, Retry-After instead of X-RateLimit-Reset.
 *
 * Control (no token needed): GET /_stats (counters as JSON), POST /_reset (zero counters
 * and fault attempt memory), POST /_touch?n=N or ?ids=A,B (adds a support reply to the
 * first N conversations that pass the quality filter, or to the given ones, and moves
 * their updated_at past every other; answers {"touched":[ids],"updated_at":T}).
 *
 * Prints "listening on 127.0.0.1:PORT" on stdout once ready; stops on SIGTERM/SIGINT. */
#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fakes/fakehttp.h"
#include "support/convgen.h"
#include "util/util.h"

#define MAX_PER_PAGE 150
#define DEFAULT_PER_PAGE 20
#define MAX_FILTERS 15

typedef struct fconv {
    char *id;
    uint64_t idnum;
    int64_t created_at, updated_at;
    char *summary;       /* search item JSON (no conversation_parts) */
    char *detail;        /* GET /conversations/{id} JSON */
    int passes;          /* generator truth: meant to pass the quality filter */
    int fail_status;     /* --fail-ids: always answer this to the detail request */
} fconv;

typedef struct counters {
    uint64_t search_requests, detail_requests, rate_limited, faults_5xx, faults_timeout,
        faults_malformed, unauthorized, bad_requests, not_found, injected_failures;
} counters;

typedef struct fake {
    fconv *convs;
    size_t n;
    strmap_t by_id;       /* id -> fconv* */
    const char *token;
    int latency_ms;
    int rate_limit, rate_window_ms, retry_after;
    int64_t window_id;
    int window_count;
    double p5xx, ptimeout, pmalformed;
    uint64_t seed;
    strmap_t attempts;    /* request key -> attempt count (stored in the pointer) */
    counters c;
    int64_t max_updated;
    char *last_search;    /* body of the last search request */
    fh_server *srv;
} fake;

/* ------------------------------------------------------------------ responses */

static void respond(fake *fk, fh_request *req, int status, const char *body, size_t len) {
    fh_respond_after(req, fk->latency_ms, status, "application/json", body, len);
}

static void respond_error(fake *fk, fh_request *req, int status, const char *code,
                          const char *message) {
    json_t *o = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "type", "error.list", "request_id",
                          "fake-0001", "errors", "code", code, "message", message);
    char *s = jx_dump(o);
    json_decref(o);
    respond(fk, req, status, s, strlen(s));
    free(s);
}

static void respond_json_value(fh_request *req, json_t *v) {
    char *s = jx_dump(v);
    json_decref(v);
    fh_respond(req, 200, "application/json", s, strlen(s));
    free(s);
}

/* ------------------------------------------------------------------ search queries */

enum qfield { Q_CREATED, Q_UPDATED, Q_ID };
enum qop { OP_GT, OP_LT, OP_EQ, OP_NE };

typedef struct qnode {
    int is_group, is_or;
    enum qfield field;
    enum qop op;
    int64_t value;
    struct qnode *kids;
    size_t nkids;
} qnode;

static void qnode_free(qnode *q) {
    for (size_t i = 0; i < q->nkids; i++) qnode_free(&q->kids[i]);
    free(q->kids);
}

static int64_t field_of(const fconv *c, enum qfield f) {
    return f == Q_CREATED ? c->created_at : f == Q_UPDATED ? c->updated_at : (int64_t)c->idnum;
}

static int qmatch(const qnode *q, const fconv *c) {
    if (q->is_group) {
        for (size_t i = 0; i < q->nkids; i++) {
            int m = qmatch(&q->kids[i], c);
            if (q->is_or && m) return 1;
            if (!q->is_or && !m) return 0;
        }
        return !q->is_or;
    }
    int64_t v = field_of(c, q->field);
    switch (q->op) {
    case OP_GT: return v > q->value;
    case OP_LT: return v < q->value;
    case OP_EQ: return v == q->value;
    case OP_NE: return v != q->value;
    }
    return 0;
}

static int parse_field(const char *s, enum qfield *out) {
    if (!s) return -1;
    if (!strcmp(s, "created_at")) *out = Q_CREATED;
    else if (!strcmp(s, "updated_at")) *out = Q_UPDATED;
    else if (!strcmp(s, "id")) *out = Q_ID;
    else return -1;
    return 0;
}

/* Dates may be given as numbers or numeric strings, as the real API accepts. */
static int parse_value(const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        char *end;
        long long x = strtoll(json_string_value(v), &end, 10);
        if (end == json_string_value(v) || *end) return -1;
        *out = x;
        return 0;
    }
    return -1;
}

static int qcompile(const json_t *j, qnode *q, int depth, char *err, size_t len) {
    memset(q, 0, sizeof *q);
    if (!json_is_object(j)) return snprintf(err, len, "query must be an object"), -1;
    const char *op = jx_str(j, "operator");
    if (!op) return snprintf(err, len, "query operator missing"), -1;
    if (!strcmp(op, "AND") || !strcmp(op, "OR")) {
        json_t *arr = jx_arr(j, "value");
        if (!arr || json_array_size(arr) == 0) return snprintf(err, len, "%s needs a value array", op), -1;
        if (json_array_size(arr) > MAX_FILTERS) return snprintf(err, len, "more than %d filters", MAX_FILTERS), -1;
        if (depth > 2) return snprintf(err, len, "more than 2 nested filters"), -1;
        q->is_group = 1;
        q->is_or = op[0] == 'O';
        q->nkids = json_array_size(arr);
        q->kids = xcalloc(q->nkids, sizeof *q->kids);
        for (size_t i = 0; i < q->nkids; i++)
            if (qcompile(json_array_get(arr, i), &q->kids[i], depth + 1, err, len)) return -1;
        return 0;
    }
    if (parse_field(jx_str(j, "field"), &q->field))
        return snprintf(err, len, "unsupported field %s", jx_str(j, "field") ? jx_str(j, "field") : "(none)"), -1;
    if (!strcmp(op, ">")) q->op = OP_GT;
    else if (!strcmp(op, "<")) q->op = OP_LT;
    else if (!strcmp(op, "=")) q->op = OP_EQ;
    else if (!strcmp(op, "!=")) q->op = OP_NE;
    else return snprintf(err, len, "unsupported operator %s", op), -1;
    if (parse_value(json_object_get(j, "value"), &q->value))
        return snprintf(err, len, "value of %s must be a unix timestamp", jx_str(j, "field")), -1;
    return 0;
}

/* ------------------------------------------------------------------ sorting and paging */

typedef struct order {
    enum qfield field;
    int desc;
} order;

static int cmp_key(int64_t ka, uint64_t ia, int64_t kb, uint64_t ib) {
    if (ka != kb) return ka < kb ? -1 : 1;
    if (ia != ib) return ia < ib ? -1 : 1;
    return 0;
}

static int cmp_conv(const void *a, const void *b, void *ctx) {
    const order *o = ctx;
    const fconv *x = *(fconv *const *)a, *y = *(fconv *const *)b;
    int c = cmp_key(field_of(x, o->field), x->idnum, field_of(y, o->field), y->idnum);
    return o->desc ? -c : c;
}

static int parse_sort(const json_t *s, order *o, char *err, size_t len) {
    o->field = Q_ID;
    o->desc = 0;
    if (!s) return 0;
    if (parse_field(jx_str(s, "field"), &o->field))
        return snprintf(err, len, "unsupported sort field"), -1;
    const char *ord = jx_str(s, "order");
    if (ord && !strcmp(ord, "descending")) o->desc = 1;
    else if (ord && strcmp(ord, "ascending")) return snprintf(err, len, "sort order must be ascending or descending"), -1;
    return 0;
}

/* Cursor = base64 of [sort key, id, page] of the last item served. */
static char *make_cursor(const fconv *c, const order *o, int64_t page) {
    char raw[96];
    snprintf(raw, sizeof raw, "[%" PRId64 ",%" PRIu64 ",%" PRId64 "]", field_of(c, o->field), c->idnum, page);
    return base64_encode(raw, strlen(raw));
}

static int read_cursor(const char *cur, int64_t *key, uint64_t *id, int64_t *page) {
    size_t n;
    char *raw = (char *)base64_decode(cur, strlen(cur), &n);
    if (!raw) return -1;
    json_t *a = json_loads(raw, 0, NULL);
    free(raw);
    int ok = json_is_array(a) && json_array_size(a) == 3 && json_is_integer(json_array_get(a, 0)) &&
             json_is_integer(json_array_get(a, 1)) && json_is_integer(json_array_get(a, 2));
    if (ok) {
        *key = json_integer_value(json_array_get(a, 0));
        *id = (uint64_t)json_integer_value(json_array_get(a, 1));
        *page = json_integer_value(json_array_get(a, 2));
    }
    json_decref(a);
    return ok ? 0 : -1;
}

static void search(fake *fk, fh_request *req) {
    fk->c.search_requests++;
    size_t blen;
    const char *body = fh_req_body(req, &blen);
    free(fk->last_search);
    fk->last_search = xstrndup(body, blen);
    json_t *doc = json_loadb(body, blen, 0, NULL);
    char err[200] = "";
    qnode q = {0};
    order o;
    int per_page = DEFAULT_PER_PAGE;
    int64_t ckey = 0, cpage = 0;
    uint64_t cid = 0;
    const char *cursor = NULL;
    if (!json_is_object(doc)) snprintf(err, sizeof err, "body must be a JSON object");
    else if (qcompile(json_object_get(doc, "query"), &q, 0, err, sizeof err)) {}
    else if (parse_sort(jx_obj(doc, "sort"), &o, err, sizeof err)) {}
    else {
        json_t *pg = jx_obj(doc, "pagination");
        json_t *pp = json_object_get(pg, "per_page");
        if (pp && (!json_is_integer(pp) || json_integer_value(pp) < 1 || json_integer_value(pp) > MAX_PER_PAGE))
            snprintf(err, sizeof err, "per_page must be between 1 and %d", MAX_PER_PAGE);
        else if (pp) per_page = (int)json_integer_value(pp);
        cursor = jx_str(pg, "starting_after");
        if (!err[0] && cursor && read_cursor(cursor, &ckey, &cid, &cpage))
            snprintf(err, sizeof err, "starting_after is not a valid cursor");
    }
    if (err[0]) {
        fk->c.bad_requests++;
        respond_error(fk, req, 400, "parameter_invalid", err);
        qnode_free(&q);
        json_decref(doc);
        return;
    }
    fconv **hits = xmalloc((fk->n ? fk->n : 1) * sizeof *hits);
    size_t nh = 0;
    for (size_t i = 0; i < fk->n; i++)
        if (qmatch(&q, &fk->convs[i])) hits[nh++] = &fk->convs[i];
    qsort_r(hits, nh, sizeof *hits, cmp_conv, &o);
    size_t start = 0;
    if (cursor) {
        /* Keyset: the first item after the cursor's (key, id) in this order. */
        while (start < nh) {
            int c = cmp_key(field_of(hits[start], o.field), hits[start]->idnum, ckey, cid);
            if (o.desc ? c < 0 : c > 0) break;
            start++;
        }
    }
    size_t end = start + (size_t)per_page < nh ? start + (size_t)per_page : nh;
    int64_t page = cpage + 1;
    buf_t b = BUF_INIT;
    buf_printf(&b, "{\"type\":\"conversation.list\",\"total_count\":%zu,\"pages\":{\"type\":\"pages\","
                   "\"page\":%" PRId64 ",\"per_page\":%d,\"total_pages\":%zu",
               nh, page, per_page, (nh + (size_t)per_page - 1) / (size_t)per_page);
    if (end < nh) {
        char *next = make_cursor(hits[end - 1], &o, page);
        buf_printf(&b, ",\"next\":{\"page\":%" PRId64 ",\"starting_after\":\"%s\"}", page + 1, next);
        free(next);
    }
    buf_puts(&b, "},\"conversations\":[");
    for (size_t i = start; i < end; i++) {
        if (i > start) buf_putc(&b, ',');
        buf_puts(&b, hits[i]->summary);
    }
    buf_puts(&b, "]}");
    free(hits);
    qnode_free(&q);
    json_decref(doc);
    respond(fk, req, 200, b.data, b.len);
    buf_free(&b);
}

static void detail(fake *fk, fh_request *req, const char *idenc) {
    fk->c.detail_requests++;
    char id[256];
    size_t n = strlen(idenc);
    if (n >= sizeof id) n = sizeof id - 1;
    fh_percent_decode(id, idenc, n, 0);
    fconv *c = strmap_get(&fk->by_id, id);
    if (!c) {
        fk->c.not_found++;
        respond_error(fk, req, 404, "not_found", "Resource Not Found");
        return;
    }
    if (c->fail_status) {
        fk->c.injected_failures++;
        if (c->fail_status == 404) respond_error(fk, req, 404, "not_found", "Resource Not Found");
        else respond_error(fk, req, c->fail_status, "server_error", "injected failure");
        return;
    }
    respond(fk, req, 200, c->detail, strlen(c->detail));
}

/* ------------------------------------------------------------------ faults */

/* The attempt number of this exact request (method, target, body): the fate of the n-th
 * attempt is fixed, however requests interleave. */
static uint64_t fault_draw(fake *fk, fh_request *req) {
    size_t blen;
    const char *body = fh_req_body(req, &blen);
    buf_t key = BUF_INIT;
    buf_printf(&key, "%s %s ", fh_req_method(req), fh_req_target(req));
    buf_append(&key, body ? body : "", body ? blen : 0);
    uintptr_t n = (uintptr_t)strmap_get(&fk->attempts, buf_cstr(&key)) + 1;
    strmap_put(&fk->attempts, buf_cstr(&key), (void *)n);
    uint64_t h = hash_mix64(fnv1a64(key.data ? key.data : "", key.len) ^ hash_mix64(fk->seed + n));
    buf_free(&key);
    return h;
}

/* 1 when a fault was served instead of the answer. */
static int inject_fault(fake *fk, fh_request *req) {
    if (fk->p5xx <= 0 && fk->ptimeout <= 0 && fk->pmalformed <= 0) return 0;
    double u = (double)(fault_draw(fk, req) >> 11) / 9007199254740992.0;
    if (u < fk->p5xx) {
        static const int codes[] = {500, 502, 503};
        fk->c.faults_5xx++;
        respond_error(fk, req, codes[(int)(u / fk->p5xx * 3) % 3], "server_error", "injected fault");
        return 1;
    }
    u -= fk->p5xx;
    if (u < fk->ptimeout) {
        fk->c.faults_timeout++;
        fh_hang(req);
        return 1;
    }
    u -= fk->ptimeout;
    if (u < fk->pmalformed) {
        fk->c.faults_malformed++;
        static const char half[] = "{\"type\":\"conversation.list\",\"conversations\":[{\"id\":\"1";
        respond(fk, req, 200, half, sizeof half - 1);
        return 1;
    }
    return 0;
}

/* Fixed windows aligned to the wall clock. 1 when the request was answered 429. */
static int rate_limited(fake *fk, fh_request *req) {
    if (fk->rate_limit <= 0) return 0;
    int64_t now = wall_ms();
    int64_t wid = now / fk->rate_window_ms;
    if (wid != fk->window_id) {
        fk->window_id = wid;
        fk->window_count = 0;
    }
    int64_t window_end = (wid + 1) * fk->rate_window_ms;
    char v[32];
    snprintf(v, sizeof v, "%d", fk->rate_limit);
    fh_add_header(req, "X-RateLimit-Limit", v);
    int over = fk->window_count >= fk->rate_limit;
    if (!over) fk->window_count++;
    snprintf(v, sizeof v, "%d", fk->rate_limit - fk->window_count);
    fh_add_header(req, "X-RateLimit-Remaining", v);
    if (fk->retry_after && over) {
        snprintf(v, sizeof v, "%" PRId64, (window_end - now + 999) / 1000);
        fh_add_header(req, "Retry-After", v);
    } else if (!fk->retry_after) {
        snprintf(v, sizeof v, "%" PRId64, (window_end + 999) / 1000);
        fh_add_header(req, "X-RateLimit-Reset", v);
    }
    if (!over) return 0;
    fk->c.rate_limited++;
    respond_error(fk, req, 429, "rate_limit_exceeded", "Exceeded rate limit");
    return 1;
}

/* ------------------------------------------------------------------ control endpoints */

static json_t *stats_json(fake *fk) {
    fh_stats_t s = fh_stats(fk->srv);
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s?}",
                     "requests", (json_int_t)s.requests, "search_requests", (json_int_t)fk->c.search_requests,
                     "detail_requests", (json_int_t)fk->c.detail_requests, "rate_limited",
                     (json_int_t)fk->c.rate_limited, "faults_5xx", (json_int_t)fk->c.faults_5xx,
                     "faults_timeout", (json_int_t)fk->c.faults_timeout, "faults_malformed",
                     (json_int_t)fk->c.faults_malformed, "unauthorized", (json_int_t)fk->c.unauthorized,
                     "bad_requests", (json_int_t)fk->c.bad_requests, "not_found",
                     (json_int_t)fk->c.not_found, "injected_failures", (json_int_t)fk->c.injected_failures,
                     "in_flight", (json_int_t)s.in_flight, "max_in_flight", (json_int_t)s.max_in_flight,
                     "conversations", (json_int_t)fk->n, "max_updated_at", (json_int_t)fk->max_updated,
                     "last_search", fk->last_search);
}

static void reset(fake *fk) {
    memset(&fk->c, 0, sizeof fk->c);
    strmap_free(&fk->attempts, NULL);
    memset(&fk->attempts, 0, sizeof fk->attempts);
    fk->window_count = 0;
    free(fk->last_search);
    fk->last_search = NULL;
    fh_reset_stats(fk->srv);
}

/* A support reply appended and updated_at moved past every other conversation. */
static void touch_one(fconv *c, int64_t when) {
    json_t *full = json_loads(c->detail, 0, NULL);
    if (!full) return;
    json_object_set_new(full, "updated_at", json_integer(when));
    json_t *list = jx_obj(full, "conversation_parts");
    json_t *parts = jx_arr(list, "conversation_parts");
    if (parts) {
        json_array_append_new(parts, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:{s:s,s:s}}", "type",
                                               "conversation_part", "id", "touch", "part_type",
                                               "comment", "body",
                                               "<p>Following up: this is fixed now, can you check?</p>",
                                               "created_at", (json_int_t)when, "updated_at",
                                               (json_int_t)when, "author", "type", "admin", "id", "1"));
        json_object_set_new(list, "total_count", json_integer((json_int_t)json_array_size(parts)));
    }
    free(c->detail);
    c->detail = jx_dump(full);
    json_object_del(full, "conversation_parts");
    free(c->summary);
    c->summary = jx_dump(full);
    json_decref(full);
    c->updated_at = when;
}

static void touch(fake *fk, fh_request *req) {
    int64_t when = fk->max_updated + 1;
    json_t *ids = json_array();
    const char *list = fh_query_param(req, "ids");
    if (list) {
        char *copy = xstrdup(list), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            fconv *c = strmap_get(&fk->by_id, t);
            if (c) {
                touch_one(c, when);
                json_array_append_new(ids, json_string(c->id));
            }
        }
        free(copy);
    } else {
        const char *nv = fh_query_param(req, "n");
        long want = nv ? strtol(nv, NULL, 10) : 1;
        for (size_t i = 0; i < fk->n && (long)json_array_size(ids) < want; i++)
            if (fk->convs[i].passes && !fk->convs[i].fail_status) {
                touch_one(&fk->convs[i], when);
                json_array_append_new(ids, json_string(fk->convs[i].id));
            }
    }
    if (json_array_size(ids)) fk->max_updated = when;
    respond_json_value(req, json_pack("{s:o,s:I}", "touched", ids, "updated_at", (json_int_t)when));
}

/* ------------------------------------------------------------------ dispatch */

static int authorised(fake *fk, fh_request *req) {
    const char *auth = fh_req_header(req, "Authorization");
    return auth && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, fk->token);
}

static void handler(fh_request *req, void *ctx) {
    fake *fk = ctx;
    const char *m = fh_req_method(req), *path = fh_req_path(req);
    if (!strcmp(path, "/_stats") && !strcmp(m, "GET")) {
        respond_json_value(req, stats_json(fk));
    } else if (!strcmp(path, "/_reset") && !strcmp(m, "POST")) {
        reset(fk);
        fh_respond(req, 200, "application/json", "{}", 2);
    } else if (!strcmp(path, "/_touch") && !strcmp(m, "POST")) {
        touch(fk, req);
    } else if (!authorised(fk, req)) {
        fk->c.unauthorized++;
        respond_error(fk, req, 401, "unauthorized", "Access Token Invalid");
    } else if (!fh_req_header(req, "Intercom-Version")) {
        fk->c.bad_requests++;
        respond_error(fk, req, 400, "intercom_version_invalid", "Intercom-Version header missing");
    } else if (rate_limited(fk, req) || inject_fault(fk, req)) {
        /* answered */
    } else if (!strcmp(path, "/conversations/search") && !strcmp(m, "POST")) {
        search(fk, req);
    } else if (!strncmp(path, "/conversations/", 15) && path[15] && !strchr(path + 15, '/') &&
               !strcmp(m, "GET")) {
        detail(fk, req, path + 15);
    } else {
        fk->c.not_found++;
        respond_error(fk, req, 404, "not_found", "Resource Not Found");
    }
}

/* ------------------------------------------------------------------ setup */

static const char USAGE[] =
    "usage: fake_intercom [--port 0] [--count N] [--seed S] [--base-time UNIX] [--days D]\n"
    "         [--latency-ms N] [--rate-limit N] [--rate-window-ms MS] [--retry-after]\n"
    "         [--fault-5xx P] [--fault-timeout P] [--fault-malformed P]\n"
    "         [--fail-ids ID[:STATUS],...] [--token T] [--vocab FILE]\n";

typedef struct options {
    int port;
    size_t count;
    uint64_t seed;
    int64_t base_time;
    int days;
    const char *fail_ids;
    const char *vocab;
} options;

static vocab *load_vocab(const char *opt) {
    char path[4096], err[512];
    const char *root = getenv("FEEDLINE_ROOT");
    if (opt) snprintf(path, sizeof path, "%s", opt);
    else if (getenv("FEEDLINE_VOCAB")) snprintf(path, sizeof path, "%s", getenv("FEEDLINE_VOCAB"));
    else if (root) snprintf(path, sizeof path, "%s/data/theme_vocabulary.json", root);
    else snprintf(path, sizeof path, "data/theme_vocabulary.json");
    vocab *v = vocab_load(path, err, sizeof err);
    if (!v) fprintf(stderr, "fake_intercom: %s\n", err);
    return v;
}

static void apply_fail_ids(fake *fk, const char *spec) {
    char *copy = xstrdup(spec), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');
        int status = 500;
        if (colon) {
            *colon = '\0';
            status = atoi(colon + 1);
        }
        fconv *c = strmap_get(&fk->by_id, t);
        if (c && status >= 100 && status <= 599) c->fail_status = status;
        else fprintf(stderr, "fake_intercom: --fail-ids: no conversation %s (or bad status)\n", t);
    }
    free(copy);
}

static int generate(fake *fk, const options *o) {
    vocab *v = load_vocab(o->vocab);
    if (!v) return -1;
    convgen_options go;
    convgen_options_default(&go);
    go.count = o->count;
    go.base_time = o->base_time;
    go.days = o->days;
    convgen *g = convgen_new(v, o->seed, &go);
    fk->convs = xcalloc(o->count ? o->count : 1, sizeof *fk->convs);
    for (size_t i = 0; i < o->count; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        json_t *full = convgen_to_intercom(&c);
        fconv *fc = &fk->convs[i];
        fc->id = xstrdup(c.id);
        fc->idnum = strtoull(c.id, NULL, 10);
        fc->created_at = json_integer_value(json_object_get(full, "created_at"));
        fc->updated_at = json_integer_value(json_object_get(full, "updated_at"));
        fc->passes = t.passes_quality;
        fc->detail = jx_dump(full);
        json_object_del(full, "conversation_parts");
        fc->summary = jx_dump(full);
        json_decref(full);
        conv_free(&c);
        if (fc->updated_at > fk->max_updated) fk->max_updated = fc->updated_at;
        strmap_put(&fk->by_id, fc->id, fc);
    }
    fk->n = o->count;
    convgen_free(g);
    vocab_free(v);
    if (o->fail_ids) apply_fail_ids(fk, o->fail_ids);
    return 0;
}

static fh_server *the_server;
static void on_signal(int sig) {
    (void)sig;
    if (the_server) fh_stop(the_server);
}

static int parse_prob(const char *s, double *out) {
    char *end;
    double p = strtod(s, &end);
    if (end == s || *end || p < 0 || p > 1) return -1;
    *out = p;
    return 0;
}

static int parse_args(int argc, char **argv, options *o, fake *fk) {
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},         {"count", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 's'},         {"base-time", required_argument, NULL, 'b'},
        {"days", required_argument, NULL, 'd'},         {"latency-ms", required_argument, NULL, 'l'},
        {"rate-limit", required_argument, NULL, 'r'},   {"rate-window-ms", required_argument, NULL, 'w'},
        {"retry-after", no_argument, NULL, 'R'},        {"fault-5xx", required_argument, NULL, '5'},
        {"fault-timeout", required_argument, NULL, 't'}, {"fault-malformed", required_argument, NULL, 'm'},
        {"fail-ids", required_argument, NULL, 'f'},     {"token", required_argument, NULL, 'T'},
        {"vocab", required_argument, NULL, 'v'},        {"help", no_argument, NULL, 'h'},
        {0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'p': o->port = atoi(optarg); break;
        case 'n': o->count = (size_t)strtoull(optarg, NULL, 10); break;
        case 's': o->seed = strtoull(optarg, NULL, 10); break;
        case 'b': o->base_time = strtoll(optarg, NULL, 10); break;
        case 'd': o->days = atoi(optarg); break;
        case 'l': fk->latency_ms = atoi(optarg); break;
        case 'r': fk->rate_limit = atoi(optarg); break;
        case 'w': fk->rate_window_ms = atoi(optarg); bad = fk->rate_window_ms <= 0; break;
        case 'R': fk->retry_after = 1; break;
        case '5': bad = parse_prob(optarg, &fk->p5xx); break;
        case 't': bad = parse_prob(optarg, &fk->ptimeout); break;
        case 'm': bad = parse_prob(optarg, &fk->pmalformed); break;
        case 'f': o->fail_ids = optarg; break;
        case 'T': fk->token = optarg; break;
        case 'v': o->vocab = optarg; break;
        case 'h': fputs(USAGE, stdout); exit(0);
        default: bad = 1;
        }
        if (bad) {
            fputs(USAGE, stderr);
            return -1;
        }
    }
    return optind < argc ? (fputs(USAGE, stderr), -1) : 0;
}

static void free_fake(fake *fk) {
    for (size_t i = 0; i < fk->n; i++) {
        free(fk->convs[i].id);
        free(fk->convs[i].summary);
        free(fk->convs[i].detail);
    }
    free(fk->convs);
    strmap_free(&fk->by_id, NULL);
    strmap_free(&fk->attempts, NULL);
    free(fk->last_search);
}

int main(int argc, char **argv) {
    log_init_from_env(LOG_WARN);
    fake fk = {0};
    fk.token = "test-token";
    fk.rate_window_ms = 1000;
    options o = {0, 200, 1, wall_unix(), 30, NULL, NULL};
    if (parse_args(argc, argv, &o, &fk)) return 2;
    fk.seed = o.seed;
    if (generate(&fk, &o)) return 1;
    fh_options fo = {0};
    fo.port = o.port;
    fo.handler = handler;
    fo.ctx = &fk;
    fk.srv = fh_create(&fo);
    if (!fk.srv) return 1;
    the_server = fk.srv;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("listening on 127.0.0.1:%d\n", fh_port(fk.srv));
    fflush(stdout);
    int rc = fh_run(fk.srv);
    fh_destroy(fk.srv);
    free_fake(&fk);
    return rc ? 1 : 0;
}

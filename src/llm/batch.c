/* The Batch API layer of the OpenAI-compatible provider (batch mode, feedline run
 * --batch): requests that would each be one HTTP request are gathered into batches
 * (a JSONL file uploaded to /files, a batch created from it on /batches), the batches
 * are polled, and their output and error files are read back line by line; every
 * line answers the requests waiting for its custom_id through the provider's callback,
 * exactly as the HTTP answer of the same request would (openai.c reads it: usage,
 * validation, cache).
 *
 * custom_id = the request's cache key (SHA-256 of model and body): identical requests
 * share one line, and a batch recorded on the run (run_batches, with its custom_ids) is
 * found again by a resumed run, which attaches its requests to the batch instead of
 * sending them again.
 *
 * Outcomes of a line: an answer (status 200) goes to every request waiting for it (the
 * first one carries the usage); an error fails them (the item counts as failed, and a
 * resume retries it); requests a batch never answered fail when it completed or expired
 * ("expired": the completion window passed; its answered lines are kept), and go into a
 * new batch when it was cancelled by someone else. A stop cancels the batches (their
 * rows say "cancelling"), and the resumed run reads what they answered before the
 * cancellation took effect, then sends only the rest.
 *
 * Every request of the layer is asynchronous, on the provider's libcurl multi, so a
 * poll of the provider never blocks longer than it was asked to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/openai_internal.h"
#include "net/net.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/rng.h"
#include "util/strmap.h"
#include "util/timeutil.h"

#define CONTROL_ATTEMPTS 6
#define CONTROL_BACKOFF_MS 1000
#define CONTROL_BACKOFF_CAP_MS 60000
/* Uploads and downloads of up to 200 MB: not the per-request timeout of chat calls. */
#define FILE_TIMEOUT_MS 900000
#define CANCEL_WAIT_MS 5000

typedef struct waiter {
    void *job;
    struct waiter *next;
} waiter;

typedef struct remote remote;

/* One custom_id: gathering (batch NULL) or carried by a remote batch. */
typedef struct entry {
    char key[65];
    int embeddings;
    char *body;      /* the request body (NULL for an entry of a resumed batch nobody
                      * asked for yet) */
    size_t len;
    int weight;      /* embeddings inputs, 1 for chat */
    waiter *waiters;
    remote *batch;
    size_t slot;     /* its index in batch->entries */
} entry;

enum rstate { R_UPLOAD, R_CREATE, R_POLL, R_OUTPUT, R_ERRORS, R_FINISH };

struct remote {
    oa_batcher *b;
    int embeddings;
    enum rstate state;
    char *id, *input_file_id, *output_file_id, *error_file_id;
    char status[24];
    char failure[240];    /* the batch's own error (status failed) */
    entry **entries;
    size_t n, cap;
    int64_t due_ms;
    int attempts;
    int cancel_sent;
    httpc_request *req;   /* the control request in flight */
    remote *next;
};

typedef struct gather {
    entry **entries;
    size_t n, cap;
    size_t bytes;
    int64_t weight;
    int64_t last_add_ms;
} gather;

struct oa_batcher {
    oa_batch_cfg cfg;
    char *files_url, *batches_base, *chat_path, *embed_path;
    httpc *http;
    oa_batch_result_fn result;
    oa_batch_fatal_fn fatal;
    void *ctx;
    strmap_t index;       /* key -> entry (NULL when gone) */
    strmap_t results;     /* key -> json_t response body of a resumed batch's line no
                           * request waited for yet */
    gather g[2];          /* [0] chat, [1] embeddings */
    remote *remotes;
    size_t waiting;       /* jobs waiting */
    rng_t rng;
    int loaded;
};

static void load_recorded(oa_batcher *b, int64_t now);

/* ------------------------------------------------------------ urls */

static char *join_url(const char *base, const char *path, const char *api_version) {
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') n--;
    if (api_version && *api_version)
        return xasprintf("%.*s/%s%sapi-version=%s", (int)n, base, path,
                         strchr(path, '?') ? "&" : "?", api_version);
    return xasprintf("%.*s/%s", (int)n, base, path);
}

/* The path of a base URL ("http://h:1/v1" -> "/v1"), without a trailing slash. */
static char *url_path(const char *base, const char *suffix) {
    const char *p = strstr(base, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    if (!p) p = "";
    size_t n = strlen(p);
    while (n > 0 && p[n - 1] == '/') n--;
    return xasprintf("%.*s/%s", (int)n, p, suffix);
}

static httpc_request *control_request(oa_batcher *b, const char *method, const char *url,
                                      long timeout_ms) {
    httpc_request *r = httpc_request_new(method, url);
    httpc_request_header(r, "Accept", "application/json");
    if (b->cfg.auth_name) httpc_request_header(r, b->cfg.auth_name, b->cfg.auth_value);
    r->timeout_ms = timeout_ms;
    r->connect_timeout_ms = 10000;
    return r;
}

/* ------------------------------------------------------------ entries */

static void entry_free(entry *e) {
    waiter *w = e->waiters;
    while (w) {
        waiter *n = w->next;
        free(w);
        w = n;
    }
    free(e->body);
    free(e);
}

static void index_drop(oa_batcher *b, entry *e) {
    if (strmap_get(&b->index, e->key) == e) strmap_put(&b->index, e->key, NULL);
}

/* Every waiter of e gets the answer body (the first carries the usage) or the error. */
static void settle(oa_batcher *b, entry *e, const json_t *body, enum llm_status st,
                   const char *error) {
    waiter *w = e->waiters;
    e->waiters = NULL;
    int first = 1;
    while (w) {
        waiter *n = w->next;
        b->waiting--;
        b->result(b->ctx, w->job, body, first, st, error);
        first = 0;
        free(w);
        w = n;
    }
}

static gather *gather_of(oa_batcher *b, int embeddings) { return &b->g[embeddings ? 1 : 0]; }

static int64_t weight_cap(const oa_batcher *b, int embeddings) {
    return embeddings ? b->cfg.max_embed_inputs : b->cfg.max_requests;
}

static remote *new_remote(oa_batcher *b, int embeddings, enum rstate state) {
    remote *r = xcalloc(1, sizeof *r);
    r->b = b;
    r->embeddings = embeddings;
    r->state = state;
    r->next = b->remotes;
    b->remotes = r;
    return r;
}

static void remote_add(remote *r, entry *e) {
    XGROW(r->entries, r->cap, r->n + 1);
    e->slot = r->n;
    r->entries[r->n++] = e;
    e->batch = r;
}

/* The gathered entries become a batch to upload. */
static void seal(oa_batcher *b, int embeddings, int64_t now) {
    gather *g = gather_of(b, embeddings);
    if (!g->n) return;
    remote *r = new_remote(b, embeddings, R_UPLOAD);
    for (size_t i = 0; i < g->n; i++) remote_add(r, g->entries[i]);
    r->due_ms = now;
    g->n = 0;
    g->bytes = 0;
    g->weight = 0;
}

static void gather_add(oa_batcher *b, entry *e, int64_t now) {
    gather *g = gather_of(b, e->embeddings);
    size_t line = e->len + 200;
    if (g->n && ((int64_t)g->n >= b->cfg.max_requests || g->bytes + line > (size_t)b->cfg.max_bytes ||
                 g->weight + e->weight > weight_cap(b, e->embeddings)))
        seal(b, e->embeddings, now);
    XGROW(g->entries, g->cap, g->n + 1);
    g->entries[g->n++] = e;
    g->bytes += line;
    g->weight += e->weight;
    g->last_add_ms = now;
    e->batch = NULL;
}

void oa_batcher_add(oa_batcher *b, int embeddings, const char key[65], const char *body,
                    size_t len, int weight, void *job) {
    int64_t now = mono_ms();
    if (!b->loaded) load_recorded(b, now); /* before anything could be sent twice */
    json_t *ready = strmap_get(&b->results, key);
    if (ready) { /* a resumed batch answered it already */
        strmap_put(&b->results, key, NULL);
        b->result(b->ctx, job, ready, 1, LLM_OK, NULL);
        json_decref(ready);
        return;
    }
    entry *e = strmap_get(&b->index, key);
    int fresh = !e;
    if (fresh) {
        e = xcalloc(1, sizeof *e);
        memcpy(e->key, key, 65);
        e->embeddings = embeddings;
        strmap_put(&b->index, key, e);
    }
    if (!e->body) {
        e->body = xmalloc(len + 1);
        memcpy(e->body, body, len);
        e->body[len] = '\0';
        e->len = len;
        e->weight = weight > 0 ? weight : 1;
    }
    if (fresh) gather_add(b, e, now);
    waiter *w = xcalloc(1, sizeof *w);
    w->job = job;
    w->next = e->waiters;
    e->waiters = w;
    b->waiting++;
}

/* ------------------------------------------------------------ control requests */

static void on_control_done(httpc_request *r);

static void submit_control(remote *rb, httpc_request *req) {
    rb->req = req;
    req->done = on_control_done;
    req->user = rb;
    if (httpc_submit(rb->b->http, req) != 0) {
        rb->req = NULL;
        httpc_request_free(req);
        rb->due_ms = mono_ms() + CONTROL_BACKOFF_MS;
    }
}

static void start_upload(oa_batcher *b, remote *rb) {
    char boundary[48];
    snprintf(boundary, sizeof boundary, "feedline-%016llx", (unsigned long long)rng_next(&b->rng));
    buf_t body = BUF_INIT;
    buf_printf(&body,
               "--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
               "--%s\r\nContent-Disposition: form-data; name=\"file\"; "
               "filename=\"feedline-batch.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n",
               boundary, boundary);
    const char *path = rb->embeddings ? b->embed_path : b->chat_path;
    for (size_t i = 0; i < rb->n; i++) {
        entry *e = rb->entries[i];
        buf_printf(&body, "{\"custom_id\":\"%s\",\"method\":\"POST\",\"url\":", e->key);
        json_t *u = json_string(path);
        char *us = json_dumps(u, JSON_ENCODE_ANY);
        buf_puts(&body, us);
        free(us);
        json_decref(u);
        buf_puts(&body, ",\"body\":");
        buf_append(&body, e->body, e->len);
        buf_puts(&body, "}\n");
    }
    buf_printf(&body, "\r\n--%s--\r\n", boundary);
    httpc_request *req = control_request(b, "POST", b->files_url, FILE_TIMEOUT_MS);
    char ct[96];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", boundary);
    httpc_request_header(req, "Content-Type", ct);
    httpc_request_body(req, body.data ? body.data : "", body.len);
    buf_free(&body);
    submit_control(rb, req);
}

static void start_create(oa_batcher *b, remote *rb) {
    json_t *o = json_pack("{s:s, s:s, s:s}", "input_file_id", rb->input_file_id, "endpoint",
                          rb->embeddings ? b->embed_path : b->chat_path, "completion_window",
                          "24h");
    char *s = jx_dump(o);
    json_decref(o);
    char *url = join_url(b->batches_base, "batches", b->cfg.api_version);
    httpc_request *req = control_request(b, "POST", url, b->cfg.timeout_ms);
    free(url);
    httpc_request_header(req, "Content-Type", "application/json");
    httpc_request_body(req, s, strlen(s));
    free(s);
    submit_control(rb, req);
}

static void start_get(oa_batcher *b, remote *rb, const char *what, const char *id,
                      const char *suffix, long timeout_ms) {
    char *seg = httpc_encode_segment(id);
    char *path = xasprintf("%s/%s%s", what, seg, suffix);
    char *url = join_url(b->batches_base, path, b->cfg.api_version);
    httpc_request *req = control_request(b, "GET", url, timeout_ms);
    free(seg);
    free(path);
    free(url);
    submit_control(rb, req);
}

static void record(oa_batcher *b, remote *rb, int done) {
    if (!b->cfg.st || !rb->id) return;
    int rc = store_batch_set_status(b->cfg.st, rb->id, rb->status, done, wall_unix());
    if (rc != STORE_OK)
        log_warn("batch %s: recording its status: %s", rb->id, store_errmsg(b->cfg.st));
}

static void fail_entries(oa_batcher *b, remote *rb, enum llm_status st, const char *why) {
    for (size_t i = 0; i < rb->n; i++) {
        entry *e = rb->entries[i];
        if (!e) continue;
        settle(b, e, NULL, st, why);
        index_drop(b, e);
        entry_free(e);
        rb->entries[i] = NULL;
    }
}

static void remote_free(oa_batcher *b, remote *rb) {
    remote **pp = &b->remotes;
    while (*pp && *pp != rb) pp = &(*pp)->next;
    if (*pp) *pp = rb->next;
    for (size_t i = 0; i < rb->n; i++)
        if (rb->entries[i]) {
            index_drop(b, rb->entries[i]);
            entry_free(rb->entries[i]);
        }
    free(rb->entries);
    free(rb->id);
    free(rb->input_file_id);
    free(rb->output_file_id);
    free(rb->error_file_id);
    free(rb);
}

static int terminal(const char *status) {
    return !strcmp(status, "completed") || !strcmp(status, "failed") ||
           !strcmp(status, "expired") || !strcmp(status, "cancelled");
}

static entry *find_entry(remote *rb, const char *key, size_t *at) {
    /* Lines come in any order; the index finds the entry, its batch confirms it. */
    entry *e = strmap_get(&rb->b->index, key);
    if (!e || e->batch != rb || e->slot >= rb->n || rb->entries[e->slot] != e) return NULL;
    *at = e->slot;
    return e;
}

/* One line of an output or error file. */
static void apply_line(oa_batcher *b, remote *rb, const char *line, size_t len) {
    json_t *o = json_loadb(line, len, 0, NULL);
    const char *key = jx_str(o, "custom_id");
    size_t at = 0;
    entry *e = key ? find_entry(rb, key, &at) : NULL;
    if (!e) {
        json_decref(o);
        return;
    }
    json_t *resp = jx_obj(o, "response");
    int64_t code = jx_int(resp, "status_code", 0);
    json_t *body = jx_obj(resp, "body");
    if (code >= 200 && code < 300 && json_is_object(body)) {
        if (e->waiters) settle(b, e, body, LLM_OK, NULL);
        else strmap_put(&b->results, e->key, json_incref(body));
    } else {
        json_t *err = jx_obj(o, "error");
        if (!err) err = jx_obj(body, "error");
        const char *ecode = jx_str(err, "code");
        const char *msg = jx_str(err, "message");
        if (ecode && (!strcmp(ecode, "batch_cancelled") || !strcmp(ecode, "batch_expired"))) {
            json_decref(o);
            return; /* unanswered: settled at the end (R_FINISH) */
        }
        char why[256];
        if (code) snprintf(why, sizeof why, "batch: HTTP %lld: %.200s", (long long)code, msg ? msg : "error");
        else snprintf(why, sizeof why, "batch: %.40s: %.200s", ecode ? ecode : "error", msg ? msg : "failed");
        settle(b, e, NULL, LLM_ERR_HTTP, why);
    }
    index_drop(b, e);
    entry_free(e);
    rb->entries[at] = NULL;
    json_decref(o);
}

static void apply_file(oa_batcher *b, remote *rb, const buf_t *text) {
    const char *p = buf_cstr(text), *end = p + text->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 1) apply_line(b, rb, p, n);
        p += n + 1;
    }
}

/* The batch is over: its unanswered requests fail, or (cancelled by someone else while
 * we wait for them) go into a new batch. */
static void finish_remote(oa_batcher *b, remote *rb, int64_t now) {
    int requeue = !strcmp(rb->status, "cancelled");
    char why[300];
    if (!strcmp(rb->status, "expired"))
        snprintf(why, sizeof why, "batch %s expired before answering this request", rb->id);
    else if (!strcmp(rb->status, "failed"))
        snprintf(why, sizeof why, "batch %s failed: %s", rb->id,
                 rb->failure[0] ? rb->failure : "no reason given");
    else
        snprintf(why, sizeof why, "batch %s has no answer for this request", rb->id);
    for (size_t i = 0; i < rb->n; i++) {
        entry *e = rb->entries[i];
        if (!e) continue;
        rb->entries[i] = NULL;
        if (requeue && e->waiters && e->body) {
            gather_add(b, e, now);
            continue;
        }
        if (e->waiters) settle(b, e, NULL, LLM_ERR_HTTP, why);
        index_drop(b, e);
        entry_free(e);
    }
    record(b, rb, 1);
    log_info("batch %s: %s", rb->id, rb->status);
    remote_free(b, rb);
}

static void next_after_status(remote *rb, int64_t now) {
    if (!terminal(rb->status)) {
        rb->state = R_POLL;
        rb->due_ms = now + rb->b->cfg.poll_ms;
        return;
    }
    rb->state = rb->output_file_id ? R_OUTPUT : rb->error_file_id ? R_ERRORS : R_FINISH;
    rb->due_ms = now;
}

static void read_batch_object(remote *rb, const json_t *o) {
    const char *st = jx_str(o, "status");
    if (st) snprintf(rb->status, sizeof rb->status, "%s", st);
    const char *out = jx_str(o, "output_file_id"), *err = jx_str(o, "error_file_id");
    free(rb->output_file_id);
    free(rb->error_file_id);
    rb->output_file_id = out && *out ? xstrdup(out) : NULL;
    rb->error_file_id = err && *err ? xstrdup(err) : NULL;
    const char *msg = jx_str(json_array_get(jx_arr(jx_obj(o, "errors"), "data"), 0), "message");
    if (msg) snprintf(rb->failure, sizeof rb->failure, "%s", msg);
}

/* A control request failed: again later, or (4xx, or too many times) give up. */
static void control_failed(oa_batcher *b, remote *rb, httpc_request *r, const char *what) {
    char msg[200] = "";
    json_t *o = json_loadb(buf_cstr(&r->response), r->response.len, 0, NULL);
    const char *m = jx_str(jx_obj(o, "error"), "message");
    snprintf(msg, sizeof msg, "%.190s", m ? m : r->failed ? r->error : "");
    json_decref(o);
    int transient = r->failed || r->status >= 500 || r->status == 429 || r->status == 408 ||
                    r->status == 409;
    int64_t now = mono_ms();
    if (r->status == 401 || r->status == 403) {
        char why[300];
        snprintf(why, sizeof why, "the endpoint refused the API key for %s (HTTP %ld): %s", what,
                 r->status, msg);
        b->fatal(b->ctx, why);
        return;
    }
    if (rb->state == R_POLL && r->status == 404) {
        /* The batch is unknown here (another account or endpoint): send again. */
        log_warn("batch %s: not found (HTTP 404); its requests are sent again", rb->id);
        snprintf(rb->status, sizeof rb->status, "cancelled");
        rb->state = R_FINISH;
        rb->due_ms = now;
        return;
    }
    if (transient && (rb->state == R_POLL || ++rb->attempts < CONTROL_ATTEMPTS)) {
        int64_t d = rb->state == R_POLL ? b->cfg.poll_ms
                    : backoff_full_jitter_ms(rb->attempts, CONTROL_BACKOFF_MS, CONTROL_BACKOFF_CAP_MS, &b->rng);
        rb->due_ms = now + d;
        log_warn("batch: %s failed (HTTP %ld%s%s), again in %lld ms", what, r->status,
                 msg[0] ? ": " : "", msg, (long long)d);
        return;
    }
    char why[300];
    snprintf(why, sizeof why, "batch: %s failed (HTTP %ld): %s", what, r->status, msg);
    log_warn("%s", why);
    if (rb->state == R_UPLOAD || rb->state == R_CREATE) {
        fail_entries(b, rb, LLM_ERR_HTTP, why);
        remote_free(b, rb);
        return;
    }
    /* A file that cannot be read: what it answered is lost, the rest fails. */
    rb->state = rb->state == R_OUTPUT && rb->error_file_id ? R_ERRORS : R_FINISH;
    rb->due_ms = now;
}

static void on_control_done(httpc_request *r) {
    remote *rb = r->user;
    oa_batcher *b = rb->b;
    rb->req = NULL;
    int64_t now = mono_ms();
    if (r->cancelled) { /* cancel_all: the remote stays as it is */
        rb->due_ms = now;
        httpc_request_free(r);
        return;
    }
    static const char *const WHAT[] = {"uploading the requests", "creating the batch",
                                       "polling the batch", "reading the output",
                                       "reading the errors", ""};
    if (r->failed || r->status < 200 || r->status >= 300) {
        control_failed(b, rb, r, WHAT[rb->state]);
        httpc_request_free(r);
        return;
    }
    rb->attempts = 0;
    json_t *o = NULL;
    if (rb->state != R_OUTPUT && rb->state != R_ERRORS) {
        o = json_loadb(buf_cstr(&r->response), r->response.len, 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            rb->due_ms = now + CONTROL_BACKOFF_MS;
            httpc_request_free(r);
            return;
        }
    }
    switch (rb->state) {
    case R_UPLOAD: {
        const char *id = jx_str(o, "id");
        if (!id) {
            rb->due_ms = now + CONTROL_BACKOFF_MS;
            break;
        }
        rb->input_file_id = xstrdup(id);
        rb->state = R_CREATE;
        rb->due_ms = now;
        break;
    }
    case R_CREATE: {
        const char *id = jx_str(o, "id");
        if (!id) {
            rb->due_ms = now + CONTROL_BACKOFF_MS;
            break;
        }
        rb->id = xstrdup(id);
        read_batch_object(rb, o);
        if (!rb->status[0]) snprintf(rb->status, sizeof rb->status, "validating");
        if (b->cfg.st) {
            buf_t ids = BUF_INIT;
            for (size_t i = 0; i < rb->n; i++)
                if (rb->entries[i]) buf_printf(&ids, "%s\n", rb->entries[i]->key);
            if (store_batch_put(b->cfg.st, b->cfg.run_id, rb->id,
                                rb->embeddings ? b->embed_path : b->chat_path, rb->input_file_id,
                                rb->status, (int64_t)rb->n, buf_cstr(&ids), wall_unix()) != STORE_OK)
                log_warn("batch %s: recording it on the run: %s", rb->id, store_errmsg(b->cfg.st));
            buf_free(&ids);
        }
        log_info("batch %s: %zu requests sent", rb->id, rb->n);
        next_after_status(rb, now);
        break;
    }
    case R_POLL: {
        char before[24];
        snprintf(before, sizeof before, "%s", rb->status);
        read_batch_object(rb, o);
        if (strcmp(before, rb->status)) record(b, rb, 0);
        next_after_status(rb, now);
        break;
    }
    case R_OUTPUT:
        apply_file(b, rb, &r->response);
        rb->state = rb->error_file_id ? R_ERRORS : R_FINISH;
        rb->due_ms = now;
        break;
    case R_ERRORS:
        apply_file(b, rb, &r->response);
        rb->state = R_FINISH;
        rb->due_ms = now;
        break;
    default: break;
    }
    json_decref(o);
    httpc_request_free(r);
}

/* ------------------------------------------------------------ driving */

/* Resumed run: the batches recorded on it and not read yet are polled again. */
static void load_recorded(oa_batcher *b, int64_t now) {
    b->loaded = 1;
    if (!b->cfg.st || b->cfg.run_id <= 0) return;
    run_batch_row *rows = NULL;
    size_t n = 0;
    if (store_batch_list(b->cfg.st, b->cfg.run_id, 0, &rows, &n) != STORE_OK) {
        log_warn("batches of run %lld: %s", (long long)b->cfg.run_id, store_errmsg(b->cfg.st));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int emb = strstr(rows[i].endpoint, "embeddings") != NULL;
        remote *rb = new_remote(b, emb, R_POLL);
        rb->id = xstrdup(rows[i].batch_id);
        rb->input_file_id = xstrdup(rows[i].input_file_id);
        snprintf(rb->status, sizeof rb->status, "%s", rows[i].status);
        rb->due_ms = now;
        for (char *k = rows[i].custom_ids; k && *k;) {
            char *nl = strchr(k, '\n');
            size_t len = nl ? (size_t)(nl - k) : strlen(k);
            if (len == 64) {
                char key[65];
                memcpy(key, k, 64);
                key[64] = '\0';
                if (!strmap_get(&b->index, key)) {
                    entry *e = xcalloc(1, sizeof *e);
                    memcpy(e->key, key, 65);
                    e->embeddings = emb;
                    strmap_put(&b->index, key, e);
                    remote_add(rb, e);
                }
            }
            k = nl ? nl + 1 : k + len;
        }
        log_info("batch %s: resumed (%s, %zu requests)", rb->id, rb->status, rb->n);
    }
    run_batch_rows_free(rows, n);
}

int64_t oa_batcher_step(oa_batcher *b, int64_t now) {
    if (!b->loaded) load_recorded(b, now);
    int64_t next = -1;
    for (int k = 0; k < 2; k++) {
        gather *g = &b->g[k];
        if (!g->n) continue;
        int64_t due = g->last_add_ms + b->cfg.gather_ms;
        if (due <= now) seal(b, k, now);
        else if (next < 0 || due - now < next) next = due - now;
    }
    for (remote *rb = b->remotes, *nx; rb; rb = nx) {
        nx = rb->next;
        if (rb->req) continue;
        if (rb->due_ms > now) {
            if (next < 0 || rb->due_ms - now < next) next = rb->due_ms - now;
            continue;
        }
        switch (rb->state) {
        case R_UPLOAD: start_upload(b, rb); break;
        case R_CREATE: start_create(b, rb); break;
        case R_POLL: start_get(b, rb, "batches", rb->id, "", b->cfg.timeout_ms); break;
        case R_OUTPUT: start_get(b, rb, "files", rb->output_file_id, "/content", FILE_TIMEOUT_MS); break;
        case R_ERRORS: start_get(b, rb, "files", rb->error_file_id, "/content", FILE_TIMEOUT_MS); break;
        case R_FINISH: finish_remote(b, rb, now); break;
        }
    }
    /* finish_remote may have gathered requests again */
    for (int k = 0; k < 2; k++)
        if (b->g[k].n && next < 0) next = b->cfg.gather_ms;
    return next;
}

int oa_batcher_busy(const oa_batcher *b) {
    return b->remotes || b->g[0].n || b->g[1].n;
}

size_t oa_batcher_waiting(const oa_batcher *b) { return b->waiting; }

void oa_batcher_fail_waiting(oa_batcher *b, const char *why) {
    for (int k = 0; k < 2; k++) {
        gather *g = &b->g[k];
        for (size_t i = 0; i < g->n; i++) {
            settle(b, g->entries[i], NULL, LLM_ERR_CANCELLED, why);
            index_drop(b, g->entries[i]);
            entry_free(g->entries[i]);
        }
        g->n = 0;
        g->bytes = 0;
        g->weight = 0;
    }
    for (remote *rb = b->remotes; rb; rb = rb->next)
        for (size_t i = 0; i < rb->n; i++)
            if (rb->entries[i]) settle(b, rb->entries[i], NULL, LLM_ERR_CANCELLED, why);
}

static void on_cancel_done(httpc_request *r) {
    remote *rb = r->user;
    rb->req = NULL;
    if (!r->failed && !r->cancelled && r->status >= 200 && r->status < 300) {
        json_t *o = json_loadb(buf_cstr(&r->response), r->response.len, 0, NULL);
        read_batch_object(rb, o);
        json_decref(o);
        if (!terminal(rb->status)) snprintf(rb->status, sizeof rb->status, "cancelling");
        record(rb->b, rb, 0);
        log_info("batch %s: cancelling", rb->id);
    } else {
        log_warn("batch %s: the cancellation failed (HTTP %ld); the batch runs on, and a "
                 "resume reads it", rb->id, r->status);
    }
    httpc_request_free(r);
}

/* On stop: the batches still running are cancelled (their answered lines stay in
 * the output a resumed run reads); an upload not yet a batch is dropped. */
void oa_batcher_cancel_remote(oa_batcher *b) {
    int sent = 0;
    for (remote *rb = b->remotes; rb; rb = rb->next) {
        if (!rb->id || terminal(rb->status) || rb->cancel_sent || rb->req) continue;
        char *seg = httpc_encode_segment(rb->id);
        char *path = xasprintf("batches/%s/cancel", seg);
        char *url = join_url(b->batches_base, path, b->cfg.api_version);
        httpc_request *req = control_request(b, "POST", url, CANCEL_WAIT_MS);
        free(seg);
        free(path);
        free(url);
        httpc_request_header(req, "Content-Type", "application/json");
        httpc_request_body(req, "{}", 2);
        req->user = rb;
        req->done = on_cancel_done;
        if (httpc_submit(b->http, req) != 0) {
            httpc_request_free(req);
            continue;
        }
        rb->req = req;
        rb->cancel_sent = 1;
        sent++;
    }
    int64_t deadline = mono_ms() + CANCEL_WAIT_MS;
    while (sent && httpc_in_flight(b->http) > 0 && mono_ms() < deadline)
        if (httpc_poll(b->http, 50) < 0) break;
}

oa_batcher *oa_batcher_new(const oa_batch_cfg *c, httpc *http, oa_batch_result_fn result,
                           oa_batch_fatal_fn fatal, void *ctx) {
    oa_batcher *b = xcalloc(1, sizeof *b);
    b->cfg = *c;
    if (b->cfg.poll_ms <= 0) b->cfg.poll_ms = 30000;
    if (b->cfg.gather_ms <= 0) b->cfg.gather_ms = 2000;
    if (b->cfg.max_requests <= 0 || b->cfg.max_requests > 50000) b->cfg.max_requests = 50000;
    if (b->cfg.max_bytes <= 0 || b->cfg.max_bytes > ((int64_t)190 << 20))
        b->cfg.max_bytes = (int64_t)190 << 20;
    if (b->cfg.max_embed_inputs <= 0) b->cfg.max_embed_inputs = 5000;
    if (b->cfg.timeout_ms <= 0) b->cfg.timeout_ms = 60000;
    b->cfg.base_url = NULL;
    b->cfg.embed_base_url = NULL;
    b->files_url = join_url(c->base_url, "files", c->api_version);
    b->batches_base = xstrdup(c->base_url);
    b->cfg.api_version = c->api_version ? xstrdup(c->api_version) : NULL;
    b->cfg.auth_name = c->auth_name ? xstrdup(c->auth_name) : NULL;
    b->cfg.auth_value = c->auth_value ? xstrdup(c->auth_value) : NULL;
    b->chat_path = url_path(c->base_url, "chat/completions");
    b->embed_path = url_path(c->embed_base_url ? c->embed_base_url : c->base_url, "embeddings");
    b->http = http;
    b->result = result;
    b->fatal = fatal;
    b->ctx = ctx;
    rng_seed(&b->rng, (uint64_t)mono_us());
    return b;
}

static void free_json(void *v) { json_decref(v); }

void oa_batcher_free(oa_batcher *b) {
    if (!b) return;
    oa_batcher_fail_waiting(b, "cancelled");
    while (b->remotes) {
        remote *rb = b->remotes;
        remote_free(b, rb); /* the provider cancelled its requests (done ran) */
    }
    free(b->g[0].entries);
    free(b->g[1].entries);
    strmap_free(&b->index, NULL);
    strmap_free(&b->results, free_json);
    free(b->files_url);
    free(b->batches_base);
    free(b->chat_path);
    free(b->embed_path);
    free((char *)b->cfg.api_version);
    free((char *)b->cfg.auth_name);
    free((char *)b->cfg.auth_value);
    free(b);
}

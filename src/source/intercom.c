/* The Intercom REST client (see intercom.h): one fetch = one event loop on one httpc
 * multi handle, with the page request, detail requests, retries and the 429 pause as
 * explicit state. Responses are collected by the httpc done callback and handled after
 * each poll, outside libcurl's callbacks, so storing a batch is one short transaction. */
#include "source/intercom.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/call.h"
#include "net/net.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define MAX_RESPONSE_BYTES ((size_t)64 << 20)
#define TICK_MS 250
#define PROGRESS_MS 1000
/* A 429 wait gets up to this much jitter on top of the announced reset (plus
 * NET_RESET_MARGIN_MS for an absolute reset time, net/call.h). */
#define RATE_LIMIT_JITTER_MS 100

enum req_kind { REQ_PAGE, REQ_DETAIL };

typedef struct ic_req {
    enum req_kind kind;
    httpc_request *http;   /* built on first submit */
    char *conv_id;         /* detail: the conversation */
    int64_t updated_at;    /* detail: updated_at of its search item */
    int retries;           /* transient retries used */
    int rate_waits;        /* 429 answers received */
    int64_t not_before_ms; /* mono time of the next attempt (retry list) */
    struct fetcher *f;
    struct ic_req *next;
} ic_req;

/* A singly linked FIFO of requests. */
typedef struct req_list {
    ic_req *head, *tail;
    size_t len;
} req_list;

typedef struct fetcher {
    store *st;
    intercom_options o;        /* with defaults applied */
    const intercom_window *w;
    intercom_result *res;
    httpc *http;
    rng_t rng;
    char *base;                /* base URL without a trailing slash */
    char *cursor;              /* starting_after of the next page, NULL for the first */
    int search_done;           /* no more pages to request */
    ic_req *page;              /* the page request while in flight or waiting to retry */
    req_list ready;            /* detail fetches not yet sent */
    req_list retry;            /* requests waiting for their next attempt */
    req_list done;             /* finished transfers, handled after each poll */
    int64_t pause_until_ms;    /* 429: nothing is sent before this (mono) */
    int fatal;
    int stopping;
    int in_tx;
    int64_t min_failed_updated; /* oldest updated_at of a detail given up on */
    int64_t last_tick_ms, last_progress_ms;
} fetcher;

/* ------------------------------------------------------------------ small helpers */

static void list_push(req_list *l, ic_req *r) {
    r->next = NULL;
    if (l->tail) l->tail->next = r;
    else l->head = r;
    l->tail = r;
    l->len++;
}

static void list_push_front(req_list *l, ic_req *r) {
    r->next = l->head;
    l->head = r;
    if (!l->tail) l->tail = r;
    l->len++;
}

static ic_req *list_pop(req_list *l) {
    ic_req *r = l->head;
    if (!r) return NULL;
    l->head = r->next;
    if (!l->head) l->tail = NULL;
    l->len--;
    r->next = NULL;
    return r;
}

static void req_free(ic_req *r) {
    if (!r) return;
    httpc_request_free(r->http);
    free(r->conv_id);
    free(r);
}

static void list_free(req_list *l) {
    ic_req *r;
    while ((r = list_pop(l))) req_free(r);
}

static void fatal(fetcher *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fatal(fetcher *f, const char *fmt, ...) {
    if (f->fatal) return; /* the first cause is the one worth reporting */
    f->fatal = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->res->error, sizeof f->res->error, fmt, ap);
    va_end(ap);
}

/* "message" of the first error in Intercom's error body
 * ({"type":"error.list","errors":[{"code":..,"message":..}]}), or NULL. */
static char *api_error_message(const httpc_request *h) {
    json_t *doc = json_loadb(buf_cstr(&h->response), h->response.len, 0, NULL);
    if (!doc) return NULL;
    json_t *first = json_array_get(jx_arr(doc, "errors"), 0);
    const char *msg = jx_str(first, "message");
    if (!msg) msg = jx_str(doc, "message");
    char *out = msg && msg[0] ? xstrndup(msg, 200) : NULL;
    json_decref(doc);
    return out;
}

static void report_failure(fetcher *f, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report_failure(fetcher *f, const char *id, const char *fmt, ...) {
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    log_info("intercom: conversation %s: %s", id && id[0] ? id : "(no id)", reason);
    if (f->o.on_failure) f->o.on_failure(f->o.failure_ctx, id ? id : "", reason);
}

/* ------------------------------------------------------------------ requests */

static void on_done(httpc_request *h) {
    ic_req *r = h->user;
    list_push(&r->f->done, r);
}

static void add_headers(const fetcher *f, httpc_request *h) {
    char *auth = xasprintf("Bearer %s", f->o.token);
    httpc_request_header(h, "Authorization", auth);
    free(auth);
    httpc_request_header(h, "Accept", "application/json");
    httpc_request_header(h, "Content-Type", "application/json");
    httpc_request_header(h, "Intercom-Version", INTERCOM_API_VERSION);
}

static void finish_request(fetcher *f, httpc_request *h) {
    h->timeout_ms = f->o.timeout_ms;
    h->connect_timeout_ms = f->o.connect_timeout_ms;
    h->done = on_done;
    add_headers(f, h);
}

/* The search body: the window as strict operators around inclusive bounds, the page
 * size, the cursor and a deterministic sort. */
static char *search_body(const fetcher *f) {
    const char *field = f->w->field == INTERCOM_UPDATED_AT ? "updated_at" : "created_at";
    json_t *conds = json_array();
    int64_t lower = f->w->from > 0 ? f->w->from - 1 : 0;
    json_array_append_new(conds, json_pack("{s:s,s:s,s:I}", "field", field, "operator", ">",
                                           "value", (json_int_t)lower));
    if (f->w->to > 0)
        json_array_append_new(conds, json_pack("{s:s,s:s,s:I}", "field", field, "operator", "<",
                                               "value", (json_int_t)(f->w->to + 1)));
    json_t *pagination = json_pack("{s:i}", "per_page", f->o.per_page);
    if (f->cursor) json_object_set_new(pagination, "starting_after", jx_string(f->cursor));
    json_t *body = json_pack(
        "{s:{s:s,s:o},s:o,s:{s:s,s:s}}", "query", "operator", "AND", "value", conds,
        "pagination", pagination, "sort", "field", field, "order",
        f->w->field == INTERCOM_UPDATED_AT ? "ascending" : "descending");
    char *s = jx_dump(body);
    json_decref(body);
    return s;
}

static ic_req *new_req(fetcher *f, enum req_kind kind) {
    ic_req *r = xcalloc(1, sizeof *r);
    r->kind = kind;
    r->f = f;
    return r;
}

static httpc_request *build_page_http(fetcher *f, ic_req *r) {
    char *url = xasprintf("%s/conversations/search", f->base);
    httpc_request *h = httpc_request_new("POST", url);
    free(url);
    char *body = search_body(f);
    httpc_request_body(h, body, strlen(body));
    free(body);
    finish_request(f, h);
    h->user = r;
    return h;
}

static httpc_request *build_detail_http(fetcher *f, ic_req *r) {
    char *seg = httpc_encode_segment(r->conv_id);
    char *url = xasprintf("%s/conversations/%s", f->base, seg);
    free(seg);
    httpc_request *h = httpc_request_new("GET", url);
    free(url);
    finish_request(f, h);
    h->user = r;
    return h;
}

static void submit(fetcher *f, ic_req *r) {
    if (!r->http) r->http = r->kind == REQ_PAGE ? build_page_http(f, r) : build_detail_http(f, r);
    f->res->requests++;
    if (httpc_submit(f->http, r->http) != 0) {
        fatal(f, "cannot start an HTTP request to %s", r->http->url);
        if (r == f->page) f->page = NULL;
        req_free(r);
    }
}

/* The next page is requested while fewer ids than this wait for a detail fetch: enough
 * that detail slots never run dry while the page is in flight, few enough that memory
 * stays at about two pages. */
static size_t ready_low_water(const fetcher *f) {
    size_t a = (size_t)f->o.per_page, b = 2 * (size_t)f->o.concurrency;
    return a > b ? a : b;
}

static int slots_free(const fetcher *f) {
    return httpc_in_flight(f->http) < (size_t)f->o.concurrency;
}

/* Sends what may be sent now: due retries (the page's first), a new page when ids run
 * low, then new detail fetches, never more than concurrency in flight. */
static void fill_slots(fetcher *f, int64_t now) {
    if (now < f->pause_until_ms) return;
    req_list keep = {0};
    ic_req *r;
    while ((r = list_pop(&f->retry))) {
        if (!f->fatal && r->not_before_ms <= now && slots_free(f)) submit(f, r);
        else list_push(&keep, r);
    }
    f->retry = keep;
    if (!f->fatal && !f->search_done && !f->page && f->ready.len < ready_low_water(f) &&
        slots_free(f)) {
        f->page = new_req(f, REQ_PAGE);
        submit(f, f->page);
    }
    while (!f->fatal && f->ready.len && slots_free(f)) submit(f, list_pop(&f->ready));
}

/* ------------------------------------------------------------------ answers */

enum verdict { V_OK, V_RETRY, V_RATE_LIMITED, V_FATAL, V_GIVE_UP };

/* Milliseconds to wait after a 429: until the reset the answer announces
 * (X-RateLimit-Reset epoch seconds or Retry-After), else the backoff. */
static int64_t rate_limit_wait_ms(fetcher *f, const ic_req *r) {
    int64_t wait = net_rate_limit_wait_ms(r->http);
    if (wait < 0)
        wait = backoff_full_jitter_ms(r->rate_waits, f->o.backoff_base_ms, f->o.backoff_cap_ms,
                                      &f->rng);
    if (wait > f->o.max_rate_limit_wait_ms) wait = f->o.max_rate_limit_wait_ms;
    return wait + (int64_t)rng_below(&f->rng, RATE_LIMIT_JITTER_MS);
}

/* Classifies a finished transfer; *doc receives the parsed JSON on V_OK; reason says
 * what went wrong otherwise. */
static enum verdict classify(fetcher *f, ic_req *r, json_t **doc, char *reason, size_t len) {
    const httpc_request *h = r->http;
    *doc = NULL;
    if (h->failed) {
        if (h->timed_out) snprintf(reason, len, "timed out after %lld ms", (long long)f->o.timeout_ms);
        else snprintf(reason, len, "connection error: %s", h->error);
        return V_RETRY;
    }
    long s = h->status;
    if (s == 429) return V_RATE_LIMITED;
    if (s >= 500) {
        snprintf(reason, len, "HTTP %ld", s);
        return V_RETRY;
    }
    if (s >= 200 && s < 300) {
        json_error_t je;
        json_t *d = json_loadb(buf_cstr(&h->response), h->response.len, 0, &je);
        int ok = json_is_object(d) &&
                 (r->kind == REQ_DETAIL || json_is_array(json_object_get(d, "conversations")));
        if (!ok) {
            if (d) snprintf(reason, len, "malformed answer (%s)",
                            r->kind == REQ_PAGE ? "no conversations array" : "not an object");
            else snprintf(reason, len, "malformed JSON (%s)", je.text);
            json_decref(d);
            return V_RETRY;
        }
        *doc = d;
        return V_OK;
    }
    char *msg = api_error_message(h);
    enum verdict v = V_GIVE_UP;
    if (s == 401) {
        snprintf(reason, len, "Intercom rejected the access token (401)%s%s", msg ? ": " : "",
                 msg ? msg : "");
        v = V_FATAL;
    } else if (s == 403) {
        snprintf(reason, len, "Intercom refused access (403): the access token may not read "
                 "conversations%s%s", msg ? ": " : "", msg ? msg : "");
        v = V_FATAL;
    } else if (r->kind == REQ_PAGE && s == 404) {
        snprintf(reason, len, "Intercom answered 404 to POST %s: check INTERCOM_BASE_URL",
                 h->url);
        v = V_FATAL;
    } else if (r->kind == REQ_PAGE) {
        snprintf(reason, len, "Intercom rejected the conversation search (HTTP %ld)%s%s", s,
                 msg ? ": " : "", msg ? msg : "");
        v = V_FATAL;
    } else {
        snprintf(reason, len, "HTTP %ld%s%s", s, msg ? ": " : "", msg ? msg : "");
    }
    free(msg);
    return v;
}

static void give_up_detail(fetcher *f, ic_req *r, const char *reason) {
    f->res->detail_failed++;
    if (r->updated_at > 0 && (f->min_failed_updated == 0 || r->updated_at < f->min_failed_updated))
        f->min_failed_updated = r->updated_at;
    report_failure(f, r->conv_id, "%s", reason);
    req_free(r);
}

static void give_up(fetcher *f, ic_req *r, const char *reason) {
    if (r->kind == REQ_PAGE) {
        fatal(f, "the conversation search failed: %s", reason);
        f->page = NULL;
        req_free(r);
    } else {
        give_up_detail(f, r, reason);
    }
}

static void schedule_retry(fetcher *f, ic_req *r, const char *reason) {
    if (r->retries >= f->o.max_retries) {
        char why[400];
        snprintf(why, sizeof why, "%.360s (after %d attempts)", reason, r->retries + 1);
        give_up(f, r, why);
        return;
    }
    int64_t delay = backoff_full_jitter_ms(r->retries, f->o.backoff_base_ms, f->o.backoff_cap_ms,
                                           &f->rng);
    /* A 503 may say when to come back; never earlier than that. */
    int64_t after = parse_retry_after_ms(httpc_response_header(r->http, "retry-after"), wall_unix());
    if (after > delay) delay = after < f->o.backoff_cap_ms ? after : f->o.backoff_cap_ms;
    r->retries++;
    f->res->retries++;
    log_debug("intercom: %s %s: %s, retry %d in %lld ms", r->http->method, r->http->url, reason,
              r->retries, (long long)delay);
    r->not_before_ms = mono_ms() + delay;
    /* The page goes first: everything after it waits for its cursor. */
    if (r->kind == REQ_PAGE) list_push_front(&f->retry, r);
    else list_push(&f->retry, r);
}

static void schedule_rate_limited(fetcher *f, ic_req *r) {
    f->res->rate_limited++;
    if (++r->rate_waits > f->o.max_rate_limit_waits) {
        char why[128];
        snprintf(why, sizeof why, "still rate limited (429) after %d waits", r->rate_waits - 1);
        give_up(f, r, why);
        return;
    }
    int64_t until = mono_ms() + rate_limit_wait_ms(f, r);
    /* The limit is per app, not per request: everything pauses together. */
    if (until > f->pause_until_ms) f->pause_until_ms = until;
    r->not_before_ms = f->pause_until_ms;
    if (r->kind == REQ_PAGE) list_push_front(&f->retry, r);
    else list_push(&f->retry, r);
}

/* ------------------------------------------------------------------ storing */

static int ensure_tx(fetcher *f) {
    if (f->in_tx) return 0;
    if (store_begin(f->st) != STORE_OK) {
        fatal(f, "store: %s", store_errmsg(f->st));
        return -1;
    }
    f->in_tx = 1;
    return 0;
}

static void end_tx(fetcher *f) {
    if (!f->in_tx) return;
    f->in_tx = 0;
    if (store_commit(f->st) != STORE_OK) fatal(f, "store: %s", store_errmsg(f->st));
}

static void note_updated(fetcher *f, int64_t updated_at) {
    if (updated_at > f->res->newest_updated_at) f->res->newest_updated_at = updated_at;
}

/* One search item: parse, filter, queue its detail fetch. */
static void handle_item(fetcher *f, const json_t *item, size_t index) {
    intercom_result *res = f->res;
    res->seen++;
    conversation c;
    char err[400];
    if (source_parse_intercom(item, &c, err, sizeof err) != 0) {
        res->stats.rejected++;
        const char *id = jx_str(item, "id");
        report_failure(f, id, "search item #%zu of page %lld: %s", index, (long long)res->pages, err);
        return;
    }
    note_updated(f, c.updated_at);
    char reason[160];
    enum quality_verdict v = conv_quality(&c, reason, sizeof reason);
    if (v != QUALITY_OK) {
        /* Counted the way import_conversation counts what it filters. */
        res->stats.read++;
        res->stats.filtered++;
        res->stats.filtered_by[v]++;
        conv_free(&c);
        return;
    }
    res->passed++;
    ic_req *r = new_req(f, REQ_DETAIL);
    r->conv_id = c.id;
    c.id = NULL;
    r->updated_at = c.updated_at;
    conv_free(&c);
    list_push(&f->ready, r);
}

static int cap_reached(const fetcher *f) {
    return f->o.max_conversations > 0 && f->res->passed >= f->o.max_conversations;
}

static void handle_page(fetcher *f, json_t *doc) {
    f->res->pages++;
    json_t *items = json_object_get(doc, "conversations");
    size_t i, n = json_array_size(items);
    for (i = 0; i < n && !cap_reached(f); i++) handle_item(f, json_array_get(items, i), i);
    json_t *next = json_object_get(jx_obj(doc, "pages"), "next");
    const char *cursor = json_is_object(next) ? jx_str(next, "starting_after") : NULL;
    if (cap_reached(f)) {
        f->search_done = 1;
        f->res->capped = i < n || (cursor && cursor[0]);
    } else if (n == 0 || !cursor || !cursor[0]) {
        f->search_done = 1;
    } else if (f->cursor && strcmp(f->cursor, cursor) == 0) {
        fatal(f, "Intercom returned the same page cursor twice (%.60s)", cursor);
    } else {
        free(f->cursor);
        f->cursor = xstrdup(cursor);
    }
    if (f->o.progress) {
        intercom_progress p = {f->res->pages, f->res->seen, f->res->passed,
                               f->res->stats.inserted + f->res->stats.updated + f->res->stats.unchanged,
                               f->res->detail_failed, (int64_t)httpc_in_flight(f->http)};
        f->o.progress(f->o.progress_ctx, &p);
    }
}

static void handle_detail(fetcher *f, ic_req *r, json_t *doc) {
    conversation c;
    char err[400];
    if (source_parse_intercom(doc, &c, err, sizeof err) != 0) {
        char why[500];
        snprintf(why, sizeof why, "unparsable conversation: %s", err);
        give_up_detail(f, r, why);
        return;
    }
    if (strcmp(c.id, r->conv_id) != 0) {
        char why[400];
        snprintf(why, sizeof why, "the answer is conversation %.100s", c.id);
        conv_free(&c);
        give_up_detail(f, r, why);
        return;
    }
    note_updated(f, c.updated_at);
    if (ensure_tx(f) == 0 && import_conversation(f->st, &c, "intercom", &f->res->stats) != 0) {
        fatal(f, "store: %s", store_errmsg(f->st));
        store_rollback(f->st);
        f->in_tx = 0;
    }
    conv_free(&c);
    req_free(r);
}

static void handle_done(fetcher *f, ic_req *r) {
    /* Cancelled on stop, or finishing after a fatal error: dropped unhandled. */
    if (r->http->cancelled || f->fatal) {
        if (r == f->page) f->page = NULL;
        req_free(r);
        return;
    }
    json_t *doc = NULL;
    char reason[400] = "";
    enum verdict v = classify(f, r, &doc, reason, sizeof reason);
    switch (v) {
    case V_OK:
        if (r->kind == REQ_PAGE) {
            handle_page(f, doc);
            f->page = NULL;
            req_free(r);
        } else {
            handle_detail(f, r, doc);
        }
        json_decref(doc);
        break;
    case V_RETRY: schedule_retry(f, r, reason); break;
    case V_RATE_LIMITED: schedule_rate_limited(f, r); break;
    case V_FATAL:
        fatal(f, "%s", reason);
        if (r == f->page) f->page = NULL;
        req_free(r);
        break;
    case V_GIVE_UP: give_up(f, r, reason); break;
    }
}

/* Handles every finished transfer of the last poll; stores in one transaction. */
static void process_done(fetcher *f) {
    ic_req *r;
    while ((r = list_pop(&f->done))) handle_done(f, r);
    end_tx(f);
}

/* ------------------------------------------------------------------ the loop */

static int should_stop(fetcher *f, int64_t now) {
    if (f->o.stop_flag && atomic_load(f->o.stop_flag)) return 1;
    if (f->o.tick && now - f->last_tick_ms >= TICK_MS) {
        f->last_tick_ms = now;
        if (f->o.tick(f->o.tick_ctx)) return 1;
    }
    return 0;
}

static int finished(const fetcher *f) {
    return f->search_done && !f->page && !f->ready.len && !f->retry.len &&
           httpc_in_flight(f->http) == 0;
}

/* How long the loop may wait for network events before it has something to do. */
static int64_t wait_ms(const fetcher *f, int64_t now) {
    int64_t w = TICK_MS;
    if (!slots_free(f)) return w; /* only a finished transfer can let anything go */
    if (f->pause_until_ms > now && f->pause_until_ms - now < w) w = f->pause_until_ms - now;
    for (const ic_req *r = f->retry.head; r; r = r->next) {
        int64_t d = r->not_before_ms - now;
        if (d < w) w = d;
    }
    return w < 0 ? 0 : w;
}

static void maybe_progress(fetcher *f, int64_t now) {
    if (!f->o.progress || now - f->last_progress_ms < PROGRESS_MS) return;
    f->last_progress_ms = now;
    intercom_progress p = {f->res->pages, f->res->seen, f->res->passed,
                           f->res->stats.inserted + f->res->stats.updated + f->res->stats.unchanged,
                           f->res->detail_failed, (int64_t)httpc_in_flight(f->http)};
    f->o.progress(f->o.progress_ctx, &p);
}

static void run_loop(fetcher *f) {
    f->last_tick_ms = f->last_progress_ms = mono_ms();
    while (!f->fatal) {
        int64_t now = mono_ms();
        if (should_stop(f, now)) {
            f->stopping = 1;
            break;
        }
        fill_slots(f, now);
        if (f->fatal || finished(f)) break;
        int64_t w = wait_ms(f, now);
        if (httpc_in_flight(f->http) > 0) {
            if (httpc_poll(f->http, (int)w) < 0) fatal(f, "HTTP client error (libcurl multi)");
        } else if (w > 0) {
            sleep_ms(w);
        }
        process_done(f);
        maybe_progress(f, mono_ms());
    }
    /* Stopped or failed: abandon what is in flight (done callbacks run with cancelled
     * set and land in the done list) and keep what was stored. */
    httpc_cancel_all(f->http);
    process_done(f);
}

/* ------------------------------------------------------------------ setup */

void intercom_options_from_env(intercom_options *o) {
    memset(o, 0, sizeof *o);
    o->token = getenv("INTERCOM_ACCESS_TOKEN");
    o->base_url = getenv("INTERCOM_BASE_URL");
    if (o->base_url && !o->base_url[0]) o->base_url = NULL;
    o->per_page = INTERCOM_DEFAULT_PER_PAGE;
    o->concurrency = 20;
    o->max_retries = 4;
}

static void apply_defaults(intercom_options *o) {
    if (!o->base_url || !o->base_url[0]) o->base_url = INTERCOM_DEFAULT_BASE_URL;
    if (o->per_page <= 0) o->per_page = INTERCOM_DEFAULT_PER_PAGE;
    if (o->per_page > INTERCOM_MAX_PER_PAGE) o->per_page = INTERCOM_MAX_PER_PAGE;
    if (o->concurrency <= 0) o->concurrency = 20;
    if (o->concurrency > INTERCOM_MAX_CONCURRENCY) o->concurrency = INTERCOM_MAX_CONCURRENCY;
    if (o->max_retries < 0) o->max_retries = 0;
    if (o->max_rate_limit_waits <= 0) o->max_rate_limit_waits = 30;
    if (o->backoff_base_ms <= 0) o->backoff_base_ms = 1000;
    if (o->backoff_cap_ms <= 0) o->backoff_cap_ms = 30000;
    if (o->max_rate_limit_wait_ms <= 0) o->max_rate_limit_wait_ms = 60000;
    if (o->timeout_ms <= 0) o->timeout_ms = 30000;
    if (o->connect_timeout_ms <= 0) o->connect_timeout_ms = 10000;
    if (!o->seed) o->seed = (uint64_t)wall_ms() ^ ((uint64_t)getpid() << 32);
}

/* Checks what would otherwise fail obscurely (or inject headers). 0 or -1 with err. */
static int validate(const intercom_options *o, char *err, size_t len) {
    if (!o->token || !o->token[0]) {
        snprintf(err, len, "INTERCOM_ACCESS_TOKEN is not set");
        return -1;
    }
    for (const char *p = o->token; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(err, len, "INTERCOM_ACCESS_TOKEN contains a control character");
            return -1;
        }
    if (strncmp(o->base_url, "http://", 7) != 0 && strncmp(o->base_url, "https://", 8) != 0) {
        snprintf(err, len, "INTERCOM_BASE_URL must start with http:// or https:// (got \"%.80s\")",
                 o->base_url);
        return -1;
    }
    return 0;
}

int intercom_fetch(store *st, const intercom_options *opts, const intercom_window *w,
                   intercom_result *res) {
    memset(res, 0, sizeof *res);
    int64_t t0 = mono_ms();
    fetcher f = {0};
    f.st = st;
    f.o = *opts;
    apply_defaults(&f.o);
    f.w = w;
    f.res = res;
    if (validate(&f.o, res->error, sizeof res->error) != 0) {
        res->status = INTERCOM_FAILED;
        return res->status;
    }
    rng_seed(&f.rng, f.o.seed);
    f.base = xstrdup(f.o.base_url);
    for (size_t n = strlen(f.base); n > 0 && f.base[n - 1] == '/'; n--) f.base[n - 1] = '\0';
    f.http = httpc_new((size_t)f.o.concurrency, MAX_RESPONSE_BYTES);
    if (!f.http) {
        snprintf(res->error, sizeof res->error, "cannot create the HTTP client");
        res->status = INTERCOM_FAILED;
        free(f.base);
        return res->status;
    }
    run_loop(&f);
    httpc_free(f.http);
    list_free(&f.ready);
    list_free(&f.retry);
    list_free(&f.done); /* the page request, if any, was in one of these lists */
    free(f.cursor);
    free(f.base);
    res->status = f.fatal ? INTERCOM_FAILED : f.stopping ? INTERCOM_STOPPED : INTERCOM_DONE;
    if (res->status == INTERCOM_DONE && w->field == INTERCOM_UPDATED_AT) {
        /* Oldest change first: everything updated before the newest item seen was seen,
         * except what failed, which the next incremental fetch must see again. */
        res->safe_watermark = res->newest_updated_at;
        if (f.min_failed_updated && f.min_failed_updated < res->safe_watermark)
            res->safe_watermark = f.min_failed_updated;
    }
    res->seconds = (double)(mono_ms() - t0) / 1000.0;
    return res->status;
}

int intercom_handle_response(store *st, httpc_request *h, const char *conversation_id,
                             int64_t previous_cursor_len, intercom_result *res) {
    memset(res, 0, sizeof *res);
    fetcher f = {0};
    f.st = st;
    intercom_options_from_env(&f.o);
    f.o.seed = 1;
    apply_defaults(&f.o);
    intercom_window w = {INTERCOM_CREATED_AT, 0, 0};
    f.w = &w;
    f.res = res;
    rng_seed(&f.rng, f.o.seed);
    /* A cursor as a previous page would have left it: the same-cursor check runs. */
    if (previous_cursor_len > 0) f.cursor = xstrndup("fuzz-cursor", (size_t)previous_cursor_len);
    ic_req *r = new_req(&f, conversation_id ? REQ_DETAIL : REQ_PAGE);
    r->http = h;
    if (conversation_id) r->conv_id = xstrdup(conversation_id);
    else f.page = r;
    handle_done(&f, r);
    end_tx(&f);
    int retrying = f.retry.len > 0;
    list_free(&f.ready);
    list_free(&f.retry);
    free(f.cursor);
    res->status = f.fatal ? INTERCOM_FAILED : INTERCOM_DONE;
    return f.fatal ? -1 : retrying ? 1 : 0;
}

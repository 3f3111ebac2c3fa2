/* Server-sent events for GET /api/pipeline/{id}/events.
 *
 * A stream never occupies an HTTP worker while it waits: its content-reader callback
 * hands over whatever is queued and, when nothing is, suspends the connection
 * (MHD_suspend_connection, legal from a content reader); the publisher thread resumes
 * it when it queues something. The publisher reads each followed run from the database
 * every PUBLISH_MS (so runs driven by any process are followed alike) and queues
 *   event: phase     — first event, and whenever the status or phase changes
 *   event: progress  — the counters or the phase's progress changed
 *   event: end       — the run reached a terminal state; the stream then ends
 * so a client gets at most 1000/PUBLISH_MS events a second, plus a comment line every
 * KEEPALIVE_MS to notice clients that went away (suspended connections are not polled).
 *
 * State: at most API_MAX_EVENT_STREAMS streams in a fixed array, each with at most
 * API_EVENT_BUFFER bytes queued (a client that falls further behind is dropped), all
 * under one mutex. Lock order: mu, then libmicrohttpd's internal locks (suspend/resume
 * are called with mu held; the content reader takes mu from inside libmicrohttpd). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_internal.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define PUBLISH_MS 250
#define KEEPALIVE_MS 10000

typedef struct stream {
    int used;
    int64_t run_id;
    struct MHD_Connection *conn;
    buf_t out;          /* queued bytes not yet handed to libmicrohttpd, from off */
    size_t off;
    int suspended;
    int finished;       /* end the stream once out is drained */
    int dropped;        /* fell too far behind: end it with an error */
    int64_t next_id;
    char status[16];
    char phase[32];
    char *last_data;    /* the last event's data, to send only changes */
    int64_t last_write_ms;
    api_events *hub;
} stream;

struct api_events {
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* quit */
    stream streams[API_MAX_EVENT_STREAMS];
    int open;
    int closing;
    int quit;
    char *db_url;
    pthread_t publisher;
    int publisher_started;
};

/* ------------------------------------------------------------------ run state */

json_t *api_run_event_json(store *st, const run_record *r) {
    json_t *counters = json_object();
#define COUNTER(n) json_object_set_new(counters, #n, json_integer(r->n));
    RUN_ALL_COUNTERS(COUNTER)
#undef COUNTER
    json_t *progress = json_null();
    int phase = run_phase_from_name(r->current_phase);
    work_counts c;
    if (phase >= 0 && phase < PHASE_STORIES && store_work_counts(st, r->id, phase, &c) == STORE_OK)
        progress = json_pack("{sIsIsIsI}", "done", (json_int_t)(c.done + c.failed), "failed",
                             (json_int_t)c.failed, "total",
                             (json_int_t)(c.pending + c.claimed + c.done + c.failed), "in_progress",
                             (json_int_t)c.claimed);
    return json_pack("{sIsssssbsbsososo}", "run_id", (json_int_t)r->id, "status", r->status,
                     "phase", r->current_phase, "dry_run", r->dry_run, "stories_ready",
                     r->stories_ready, "error_message", jx_string_or_null(r->error_message),
                     "counters", counters, "progress", progress);
}

static int terminal(const char *status) {
    return !strcmp(status, "completed") || !strcmp(status, "stopped") || !strcmp(status, "failed");
}

/* ------------------------------------------------------------------ queueing (under mu) */

static void wake(stream *s) {
    if (!s->suspended) return;
    s->suspended = 0;
    MHD_resume_connection(s->conn);
}

static void append(stream *s, const char *text) {
    if (s->dropped) return;
    if (s->out.len - s->off + strlen(text) > API_EVENT_BUFFER) {
        s->dropped = 1;
        return;
    }
    buf_puts(&s->out, text);
    s->last_write_ms = mono_ms();
}

static void append_event(stream *s, const char *name, const char *data) {
    char head[96];
    snprintf(head, sizeof head, "id: %lld\nevent: %s\ndata: ", (long long)++s->next_id, name);
    append(s, head);
    append(s, data);
    append(s, "\n\n");
}

/* Queues what changed since the stream's last event. */
static void deliver(stream *s, const char *status, const char *phase, const char *data) {
    if (s->finished) return;
    if (strcmp(s->status, status) != 0 || strcmp(s->phase, phase) != 0) {
        append_event(s, "phase", data);
        snprintf(s->status, sizeof s->status, "%s", status);
        snprintf(s->phase, sizeof s->phase, "%s", phase);
    } else if (!s->last_data || strcmp(s->last_data, data) != 0) {
        append_event(s, "progress", data);
    }
    free(s->last_data);
    s->last_data = xstrdup(data);
    if (terminal(status)) {
        append_event(s, "end", data);
        s->finished = 1;
    }
    wake(s);
}

/* ------------------------------------------------------------------ libmicrohttpd side */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *s = cls;
    api_events *h = s->hub;
    ssize_t n;
    pthread_mutex_lock(&h->mu);
    size_t avail = s->out.len - s->off;
    if (s->dropped) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (avail) {
        size_t take = avail < max ? avail : max;
        memcpy(buf, s->out.data + s->off, take);
        s->off += take;
        if (s->off == s->out.len) {
            buf_reset(&s->out);
            s->off = 0;
        }
        n = (ssize_t)take;
    } else if (s->finished) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing to send: park the connection until the publisher has something. */
        s->suspended = 1;
        MHD_suspend_connection(s->conn);
        n = 0;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

static void stream_free(void *cls) {
    stream *s = cls;
    api_events *h = s->hub;
    pthread_mutex_lock(&h->mu);
    buf_free(&s->out);
    free(s->last_data);
    memset(s, 0, sizeof *s);
    h->open--;
    pthread_mutex_unlock(&h->mu);
}

struct MHD_Response *api_events_subscribe(api_events *h, struct MHD_Connection *conn,
                                          store *st, const run_record *r) {
    json_t *state = api_run_event_json(st, r);
    char *data = jx_dump(state);
    json_decref(state);
    pthread_mutex_lock(&h->mu);
    stream *s = NULL;
    for (size_t i = 0; !h->closing && i < API_MAX_EVENT_STREAMS && !s; i++)
        if (!h->streams[i].used) s = &h->streams[i];
    struct MHD_Response *resp = NULL;
    if (s) {
        memset(s, 0, sizeof *s);
        s->used = 1;
        s->hub = h;
        s->run_id = r->id;
        s->conn = conn;
        h->open++;
        append(s, "retry: 3000\n\n");
        deliver(s, r->status, r->current_phase, data);
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s,
                                                 stream_free);
        if (!resp) {
            buf_free(&s->out);
            free(s->last_data);
            memset(s, 0, sizeof *s);
            h->open--;
        }
    }
    pthread_mutex_unlock(&h->mu);
    free(data);
    if (resp) {
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    }
    return resp;
}

/* ------------------------------------------------------------------ publisher */

/* Distinct runs followed by open streams. */
static size_t followed_runs(api_events *h, int64_t *ids) {
    size_t n = 0;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < API_MAX_EVENT_STREAMS; i++) {
        stream *s = &h->streams[i];
        if (!s->used || s->finished) continue;
        int seen = 0;
        for (size_t k = 0; k < n; k++) seen |= ids[k] == s->run_id;
        if (!seen) ids[n++] = s->run_id;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

static void publish_run(api_events *h, store *st, int64_t id) {
    run_record r;
    int rc = store_run_get(st, id, &r);
    if (rc < 0) {
        log_warn("events: run %lld: %s", (long long)id, store_errmsg(st));
        return;
    }
    char *data = NULL;
    if (rc == STORE_FOUND) {
        json_t *state = api_run_event_json(st, &r);
        data = jx_dump(state);
        json_decref(state);
    }
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < API_MAX_EVENT_STREAMS; i++) {
        stream *s = &h->streams[i];
        if (!s->used || s->run_id != id) continue;
        if (data) {
            deliver(s, r.status, r.current_phase, data);
        } else if (!s->finished) { /* the run was deleted */
            s->finished = 1;
            wake(s);
        }
    }
    pthread_mutex_unlock(&h->mu);
    free(data);
    if (rc == STORE_FOUND) run_record_free(&r);
}

static void keep_alive(api_events *h) {
    int64_t now = mono_ms();
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < API_MAX_EVENT_STREAMS; i++) {
        stream *s = &h->streams[i];
        if (!s->used || s->finished || now - s->last_write_ms < KEEPALIVE_MS) continue;
        append(s, ": keep-alive\n\n");
        wake(s);
    }
    pthread_mutex_unlock(&h->mu);
}

static void wait_ms(api_events *h, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&h->mu);
    if (!h->quit) pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    pthread_mutex_unlock(&h->mu);
}

static void *publisher_main(void *arg) {
    api_events *h = arg;
    store *st = NULL;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        int quit = h->quit;
        pthread_mutex_unlock(&h->mu);
        if (quit) break;
        int64_t ids[API_MAX_EVENT_STREAMS];
        size_t n = followed_runs(h, ids);
        char err[512];
        if (n && !st && store_open(h->db_url, &st, err, sizeof err) != STORE_OK) {
            log_warn("events: %s", err);
            st = NULL;
        }
        for (size_t i = 0; st && i < n; i++) publish_run(h, st, ids[i]);
        keep_alive(h);
        wait_ms(h, PUBLISH_MS);
    }
    store_close(st);
    return NULL;
}

/* ------------------------------------------------------------------ lifecycle */

int api_events_new(const char *db_url, api_events **out, char *err, size_t errlen) {
    api_events *h = xcalloc(1, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    h->db_url = xstrdup(db_url);
    int rc = pthread_create(&h->publisher, NULL, publisher_main, h);
    if (rc) {
        snprintf(err, errlen, "cannot start the event publisher: %s", strerror(rc));
        api_events_free(h);
        return -1;
    }
    h->publisher_started = 1;
    *out = h;
    return 0;
}

void api_events_close_all(api_events *h) {
    pthread_mutex_lock(&h->mu);
    h->closing = 1;
    for (size_t i = 0; i < API_MAX_EVENT_STREAMS; i++) {
        stream *s = &h->streams[i];
        if (!s->used) continue;
        s->finished = 1;
        wake(s);
    }
    pthread_mutex_unlock(&h->mu);
}

int api_events_open_count(api_events *h) {
    pthread_mutex_lock(&h->mu);
    int n = h->open;
    pthread_mutex_unlock(&h->mu);
    return n;
}

void api_events_free(api_events *h) {
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->quit = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->publisher_started) pthread_join(h->publisher, NULL);
    for (size_t i = 0; i < API_MAX_EVENT_STREAMS; i++) {
        buf_free(&h->streams[i].out);
        free(h->streams[i].last_data);
    }
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h->db_url);
    free(h);
}

/* Tracker exports over HTTP: POST /api/stories/export starts an export on a thread of
 * its own (tracker calls take seconds, and a rate limit can hold them for a minute: the
 * HTTP workers never wait on them) and answers 202 with an export id at once; GET
 * /api/exports/{export_id} reports its progress and result. One export runs at a time
 * per server (409 otherwise); the last EXPORT_JOBS_KEPT exports are remembered, in
 * memory only. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "export/export.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define EXPORT_JOBS_KEPT 16
#define EXPORT_ITEMS_KEPT 1000 /* per export; beyond, items are counted only */
#define EXPORT_MAX_STORY_IDS 1000

typedef struct export_job {
    int64_t id;
    const char *status;   /* "running" | "completed" | "failed" */
    char to[16];
    int dry_run;
    int64_t run_id;
    int64_t *story_ids;
    size_t nids;
    int counts[EXPORT_WOULD_UPDATE + 1]; /* items by action */
    json_t *items;
    char error[512];
    int64_t started_at, finished_at;
    struct api_exports *owner;
} export_job;

struct api_exports {
    char *db_url;
    pthread_mutex_t mu;
    export_job *jobs[EXPORT_JOBS_KEPT]; /* oldest first */
    size_t njobs;
    int64_t next_id;
    int running;          /* the export thread has not finished */
    int joinable;         /* thread holds a thread to join */
    pthread_t thread;
    atomic_int cancel;    /* shutdown */
};

static void job_free(export_job *j) {
    if (!j) return;
    json_decref(j->items);
    free(j->story_ids);
    free(j);
}

api_exports *api_exports_new(const char *db_url) {
    api_exports *x = xcalloc(1, sizeof *x);
    x->db_url = xstrdup(db_url);
    pthread_mutex_init(&x->mu, NULL);
    x->next_id = 1;
    return x;
}

void api_exports_free(api_exports *x) {
    if (!x) return;
    atomic_store(&x->cancel, 1); /* ends waits and the story loop */
    if (x->joinable) pthread_join(x->thread, NULL);
    for (size_t i = 0; i < x->njobs; i++) job_free(x->jobs[i]);
    pthread_mutex_destroy(&x->mu);
    free(x->db_url);
    free(x);
}

/* ------------------------------------------------------------------ the thread */

static void on_item(void *ctx, const export_item *it) {
    export_job *j = ctx;
    pthread_mutex_lock(&j->owner->mu);
    j->counts[it->action]++;
    if (json_array_size(j->items) < EXPORT_ITEMS_KEPT)
        json_array_append_new(j->items, export_item_json(it));
    pthread_mutex_unlock(&j->owner->mu);
}

static void *export_thread(void *arg) {
    export_job *j = arg;
    api_exports *x = j->owner;
    store *st = NULL;
    char err[512] = "";
    export_result res;
    memset(&res, 0, sizeof res);
    if (store_open(x->db_url, &st, err, sizeof err) != STORE_OK) {
        res.status = EXPORT_ERROR;
        snprintf(res.error, sizeof res.error, "%s", err);
    } else {
        export_options o = {0};
        o.tracker = j->to;
        o.run_id = j->run_id;
        o.story_ids = j->story_ids;
        o.nstory_ids = j->nids;
        o.dry_run = j->dry_run;
        o.cancel = &x->cancel;
        o.on_item = on_item;
        o.ctx = j;
        export_run(st, &o, &res);
        store_close(st);
    }
    if (res.status != EXPORT_OK) log_warn("export %lld to %s: %s", (long long)j->id, j->to, res.error);
    pthread_mutex_lock(&x->mu);
    j->status = res.status == EXPORT_OK ? "completed" : "failed";
    snprintf(j->error, sizeof j->error, "%s", res.error);
    if (!j->run_id) j->run_id = res.run_id;
    j->finished_at = wall_unix();
    x->running = 0;
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* Starts the job (taking ownership); the id, 0 when an export is running, -1 when the
 * thread cannot be created. */
static int64_t start_job(api_exports *x, export_job *j) {
    pthread_mutex_lock(&x->mu);
    if (x->running) {
        pthread_mutex_unlock(&x->mu);
        job_free(j);
        return 0;
    }
    if (x->joinable) pthread_join(x->thread, NULL); /* finished: returns at once */
    x->joinable = 0;
    if (x->njobs == EXPORT_JOBS_KEPT) {
        job_free(x->jobs[0]);
        memmove(x->jobs, x->jobs + 1, (EXPORT_JOBS_KEPT - 1) * sizeof *x->jobs);
        x->njobs--;
    }
    j->id = x->next_id++;
    j->owner = x;
    j->status = "running";
    j->items = json_array();
    j->started_at = wall_unix();
    x->jobs[x->njobs++] = j;
    x->running = 1;
    int64_t id = j->id;
    if (pthread_create(&x->thread, NULL, export_thread, j) != 0) {
        x->running = 0;
        j->status = "failed";
        snprintf(j->error, sizeof j->error, "cannot start the export thread");
        id = -1;
    } else {
        x->joinable = 1;
    }
    pthread_mutex_unlock(&x->mu);
    return id;
}

/* ------------------------------------------------------------------ handlers */

static const char *const TRACKER_CHOICES[] = {"markdown", "shortcut", "jira", "github", "linear",
                                              NULL};
static const api_param B_TO = {"to", "body", API_T_ENUM, API_P_REQUIRED, 0, 0, 0,
                               TRACKER_CHOICES, NULL,
                               "Tracker (required); its settings come from the server's "
                               "environment. markdown writes stories.md in the server's "
                               "working directory"};
static const api_param B_RUN = {"run_id", "body", API_T_INT, API_P_MIN | API_P_NULLABLE, 1, 0, 0,
                                NULL, NULL, "The stories of this run (default: the newest run "
                                "with stories); ignored with story_ids"};
static const api_param B_DRY = {"dry_run", "body", API_T_BOOL, API_P_DEFAULT, 0, 0, 0, NULL, NULL,
                                "Report what would be created or updated; send nothing"};
static const api_param *const EXPORT_BODY[] = {&B_TO, &B_RUN, &B_DRY, NULL};
static const api_param P_EXPORT_ID = {"export_id", "path", API_T_INT, 0, 0, 0, 0, NULL, NULL,
                                      "Export id (from POST /api/stories/export)"};
static const api_param *const NO_PARAMS[] = {NULL};
static const api_param *const EXPORT_ID_PARAMS[] = {&P_EXPORT_ID, NULL};

/* story_ids: an array of positive integers (the api_param records have no array type,
 * so it is checked here, with the same error shape). */
static int parse_story_ids(const json_t *doc, export_job *j, json_t *errors) {
    json_t *arr = json_object_get(doc, "story_ids");
    if (!arr || json_is_null(arr)) return 0;
    size_t i;
    json_t *v;
    if (!json_is_array(arr) || json_array_size(arr) > EXPORT_MAX_STORY_IDS) {
        json_array_append_new(errors, api_validation_error("list_type", "body", "story_ids",
                                                           "Input should be a list of at most 1000 story ids",
                                                           json_deep_copy(arr), NULL));
        return -1;
    }
    j->story_ids = xcalloc(json_array_size(arr) + 1, sizeof *j->story_ids);
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            json_array_append_new(errors, api_validation_error("int_type", "body", "story_ids",
                                                               "Input should be a positive integer",
                                                               json_deep_copy(v), NULL));
            return -1;
        }
        j->story_ids[j->nids++] = (int64_t)json_integer_value(v);
    }
    return 0;
}

static void h_start(api_req *r) {
    api_value v[API_MAX_PARAMS];
    json_t *errors = json_array();
    json_t *doc = api_parse_body(r, v, errors);
    export_job *j = xcalloc(1, sizeof *j);
    if (!json_array_size(errors)) parse_story_ids(doc, j, errors);
    if (json_array_size(errors)) {
        json_decref(doc);
        job_free(j);
        api_reply_validation(r, errors);
        return;
    }
    json_decref(errors);
    snprintf(j->to, sizeof j->to, "%s", v[0].s);
    j->run_id = v[1].present && !v[1].is_null ? v[1].i : 0;
    j->dry_run = (int)v[2].i;
    json_decref(doc);
    char err[512];
    if (export_check_config(j->to, err, sizeof err) != 0) {
        job_free(j);
        api_reply_error(r, 400, "%s", err);
        return;
    }
    int64_t id = start_job(r->srv->exports, j);
    if (id == 0) api_reply_error(r, 409, "Another export is running");
    else if (id < 0) api_reply_error(r, 503, "Cannot start the export");
    else {
        char *url = xasprintf("/api/exports/%lld", (long long)id);
        api_reply_json(r, 202, json_pack("{s:I,s:s,s:s}", "export_id", (json_int_t)id, "status",
                                         "running", "url", url));
        free(url);
    }
}

/* The job as GET /api/exports/{id} shows it (under the table's lock). */
static json_t *job_json(const export_job *j) {
    char started[32], finished[32];
    json_t *o = json_pack(
        "{s:I,s:s,s:s,s:b,s:I,s:s,s:o,s:i,s:i,s:i,s:i,s:o,s:o}", "export_id", (json_int_t)j->id,
        "status", j->status, "to", j->to, "dry_run", j->dry_run, "run_id", (json_int_t)j->run_id,
        "started_at", iso8601_format(j->started_at, started, sizeof started), "finished_at",
        j->finished_at ? json_string(iso8601_format(j->finished_at, finished, sizeof finished))
                       : json_null(),
        "created", j->counts[EXPORT_CREATED] + j->counts[EXPORT_WOULD_CREATE], "updated",
        j->counts[EXPORT_UPDATED] + j->counts[EXPORT_WOULD_UPDATE], "skipped",
        j->counts[EXPORT_SKIPPED], "failed", j->counts[EXPORT_FAILED], "error",
        jx_string_or_null(j->error[0] ? j->error : NULL), "items",
        /* A copy: the export thread keeps appending to the live array. */
        json_deep_copy(j->items));
    return o;
}

static void h_get(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    api_exports *x = r->srv->exports;
    json_t *answer = NULL;
    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; i < x->njobs; i++)
        if (x->jobs[i]->id == v[0].i) answer = job_json(x->jobs[i]);
    pthread_mutex_unlock(&x->mu);
    if (answer) api_reply_json(r, 200, answer);
    else api_reply_error(r, 404, "Export %lld not found", (long long)v[0].i);
}

const api_route API_EXPORT_ROUTES[] = {
    {"POST", "/api/stories/export", h_start, 1, NO_PARAMS, EXPORT_BODY,
     "Export stories to a tracker in the background. Body: {to, run_id?, story_ids?: [int], "
     "dry_run?}. 202 {export_id, status: running, url}; 400 when the tracker's settings are "
     "missing (nothing sent); 409 while another export runs",
     "stories", "202 400 401 409 413 422 503", NULL, NULL},
    {"GET", "/api/exports/{export_id}", h_get, 0, EXPORT_ID_PARAMS, NULL,
     "Progress and result of an export: {export_id, status: running|completed|failed, to, "
     "dry_run, run_id, started_at, finished_at, created, updated, skipped, failed, error, "
     "items: [{story_id, title, action: created|updated|skipped|failed|would create|would "
     "update, external_id, url, note, evidence_count}]} (the last 16 exports of this server)",
     "stories", "200 404 422", NULL, NULL},
};
const size_t API_EXPORT_ROUTE_COUNT = sizeof API_EXPORT_ROUTES / sizeof API_EXPORT_ROUTES[0];

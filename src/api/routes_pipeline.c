/* The /api/pipeline router: the original's contract (original-api_lifecycle.md §1 —
 * paths, fields, defaults, bounds, status codes and messages) with its bugs fixed, plus
 * resume and server-sent events.
 *
 * Every answer comes from the database, never from process memory: start and resume
 * are atomic transitions (one active run per database, across processes), /active and
 * /stop read the active run's row, a stopping run blocks a new start, dry runs carry a
 * real flag and their preview is stored on the run row. Pipeline work runs on job
 * threads (runs.c); handlers only read and write a few indexed rows.
 *
 * Deviations from the original, on purpose: concurrency goes up to 512 (feedline has
 * no hidden cap); "llm" and "all_conversations" are accepted; /active reports a
 * stopping run as active (it does block a start); create-stories runs in the background
 * and answers 202; resume is new; validation messages name their field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "pipeline/runjson.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

static const char *const LLM_CHOICES[] = {"local", "openai", NULL};

static const api_param P_RUN_ID = {"run_id", "path", API_T_INT, 0, 0, 0, 0, NULL, NULL,
                                   "Pipeline run id"};
static const api_param P_LIMIT = {"limit", "query", API_T_INT,
                                  API_P_MIN | API_P_MAX | API_P_DEFAULT, 1, 100, 20, NULL, NULL,
                                  "Runs per page"};
static const api_param P_OFFSET = {"offset", "query", API_T_INT, API_P_MIN | API_P_DEFAULT, 0, 0,
                                   0, NULL, NULL, "Runs to skip"};

enum { B_DAYS, B_MAX, B_DRY, B_CONC, B_AUTO, B_LLM, B_ALL, B_BATCH };
static const api_param B_DAYS_P = {"days", "body", API_T_INT,
                                   API_P_MIN | API_P_MAX | API_P_DEFAULT, 1, 90, 7, NULL, NULL,
                                   "Conversations created in the last N days"};
static const api_param B_MAX_P = {"max_conversations", "body", API_T_INT,
                                  API_P_MIN | API_P_NULLABLE, 1, 0, 0, NULL, NULL,
                                  "At most this many conversations, newest first (null: all)"};
static const api_param B_DRY_P = {"dry_run", "body", API_T_BOOL, API_P_DEFAULT, 0, 0, 0, NULL,
                                  NULL, "Classify and theme, store nothing, keep a preview"};
static const api_param B_CONC_P = {"concurrency", "body", API_T_INT,
                                   API_P_MIN | API_P_MAX | API_P_DEFAULT, 1, 512, 20, NULL, NULL,
                                   "LLM requests in flight"};
static const api_param B_AUTO_P = {"auto_create_stories", "body", API_T_BOOL, API_P_DEFAULT, 0,
                                   0, 0, NULL, NULL,
                                   "Create stories right after theme extraction"};
static const api_param B_LLM_P = {"llm", "body", API_T_ENUM, API_P_NULLABLE, 0, 0, 0,
                                  LLM_CHOICES, NULL,
                                  "LLM provider (feedline extension; default: the server's)"};
static const api_param B_ALL_P = {"all_conversations", "body", API_T_BOOL, API_P_DEFAULT, 0, 0,
                                  0, NULL, NULL,
                                  "Ignore days and use every stored conversation (feedline "
                                  "extension, for imported historical data)"};

static const api_param B_BATCH_P = {"batch", "body", API_T_BOOL, API_P_DEFAULT, 0, 0, 0, NULL,
                                    NULL,
                                    "openai: per-conversation phases through the Batch API "
                                    "(feedline extension, for backfills)"};

/* In the order of the B_* indexes. */
static const api_param *const RUN_BODY[] = {&B_DAYS_P, &B_MAX_P, &B_DRY_P, &B_CONC_P,
                                            &B_AUTO_P, &B_LLM_P, &B_ALL_P, &B_BATCH_P, NULL};
static const api_param *const ID_PARAMS[] = {&P_RUN_ID, NULL};
static const api_param *const PAGE_PARAMS[] = {&P_LIMIT, &P_OFFSET, NULL};
static const api_param *const NO_PARAMS[] = {NULL};

/* ------------------------------------------------------------------ helpers */


/* Loads the run named by the path; replies 404 / 500 and returns -1 otherwise. */
static int load_run(api_req *r, store *st, int64_t id, run_record *out) {
    int rc = store_run_get(st, id, out);
    if (rc == STORE_FOUND) return 0;
    if (rc == STORE_NOTFOUND) api_reply_error(r, 404, "Pipeline run %lld not found", (long long)id);
    else api_reply_store_error(r, st, rc);
    return -1;
}

static void reply_in_progress(api_req *r, int64_t other) {
    api_reply_error(r, 409, "Pipeline run %lld is already in progress. Wait for it to complete.",
                    (long long)other);
}

/* Replies for a job that could not start. */
static void reply_job_error(api_req *r, int rc, int64_t other, const char *err) {
    switch (rc) {
    case API_JOB_BUSY:
        reply_in_progress(r, other);
        return;
    case API_JOB_STORIES_BUSY:
        api_reply_error(r, 409,
                        "Stories are being created for pipeline run %lld. Wait for it to complete.",
                        (long long)other);
        return;
    case API_JOB_FULL:
        api_reply_error(r, 503, atomic_load(&r->srv->shutting_down)
                                    ? "The server is shutting down"
                                    : "The server is still finishing earlier runs; retry shortly");
        return;
    default:
        log_error("api: %s", err);
        api_reply_error(r, 500, "Internal Server Error");
        return;
    }
}

/* ------------------------------------------------------------------ POST /run */

static void fill_params(const api_value *v, const char *default_llm, run_params *p) {
    memset(p, 0, sizeof *p);
    p->days = v[B_ALL].i ? 0 : (int)v[B_DAYS].i;
    p->max_conversations = v[B_MAX].is_null ? 0 : v[B_MAX].i;
    p->dry_run = (int)v[B_DRY].i;
    p->concurrency = (int)v[B_CONC].i;
    p->auto_create_stories = (int)v[B_AUTO].i;
    p->llm = v[B_LLM].s ? v[B_LLM].s : default_llm;
    p->batch = (int)v[B_BATCH].i;
}

static json_t *started_reply(int64_t id, const run_params *p) {
    char msg[200];
    if (p->days > 0)
        snprintf(msg, sizeof msg, "Pipeline run started. Processing last %d days.", p->days);
    else
        snprintf(msg, sizeof msg, "Pipeline run started. Processing all stored conversations.");
    if (p->auto_create_stories)
        strncat(msg, " Stories will be created automatically after theme extraction.",
                sizeof msg - strlen(msg) - 1);
    return json_pack("{sIssss}", "run_id", (json_int_t)id, "status", "started", "message", msg);
}

static void h_run(api_req *r) {
    api_value v[API_MAX_PARAMS];
    json_t *doc;
    if (api_parse_body_or_reply(r, v, &doc)) return;
    store *st = api_store(r);
    if (!st) {
        json_decref(doc);
        return;
    }
    run_params p;
    fill_params(v, r->srv->default_llm, &p);
    int64_t id = 0, other = 0;
    char err[512] = "";
    int rc = api_runs_start(r->srv->runs, st, &p, &id, &other, err, sizeof err);
    if (rc == API_JOB_OK) api_reply_json(r, 200, started_reply(id, &p));
    else reply_job_error(r, rc, other, err);
    json_decref(doc); /* p.llm pointed into it */
}

/* ------------------------------------------------------------------ status, preview, history */

static void h_status(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    run_record rec;
    if (!st || load_run(r, st, v[0].i, &rec)) return;
    char *text = run_status_json_text(st, &rec, wall_unix(), API_JSON_FLAGS);
    if (text) api_reply_text(r, 200, NULL, text);
    else api_reply_store_error(r, st, STORE_ERR);
    run_record_free(&rec);
}

static int active_status(const char *status) {
    return !strcmp(status, "running") || !strcmp(status, "stopping");
}

static void h_preview(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    run_record rec;
    if (!st || load_run(r, st, v[0].i, &rec)) return;
    long long id = (long long)rec.id;
    json_t *preview = rec.preview_json ? json_loads(rec.preview_json, 0, NULL) : NULL;
    if (!rec.dry_run)
        api_reply_error(r, 404, "Pipeline run %lld was not a dry run", id);
    else if (preview)
        api_reply_json(r, 200, json_incref(preview));
    else if (active_status(rec.status))
        api_reply_error(r, 404,
                        "Preview for pipeline run %lld not found. It is built when the dry run "
                        "finishes its theme phase.", id);
    else
        api_reply_error(r, 404,
                        "Preview for pipeline run %lld not found. The run ended (%s) before its "
                        "preview was built.", id, rec.status);
    json_decref(preview);
    run_record_free(&rec);
}

static void h_history(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    if (!st) return;
    run_record *runs = NULL;
    size_t n = 0;
    int rc = store_run_list(st, (int)v[0].i, (int)v[1].i, &runs, &n);
    if (rc != STORE_OK) {
        api_reply_store_error(r, st, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, run_list_item_json(st, &runs[i]));
        run_record_free(&runs[i]);
    }
    free(runs);
    api_reply_json(r, 200, arr);
}

/* ------------------------------------------------------------------ active, stop */

static void h_active(api_req *r) {
    store *st = api_store(r);
    if (!st) return;
    int64_t id;
    char status[16];
    int rc = store_run_active(st, &id, status);
    if (rc == STORE_FOUND)
        api_reply_json(r, 200, json_pack("{sbsIss}", "active", 1, "run_id", (json_int_t)id,
                                         "status", status));
    else if (rc == STORE_NOTFOUND)
        api_reply_json(r, 200, json_pack("{sbsnsn}", "active", 0, "run_id", "status"));
    else
        api_reply_store_error(r, st, rc);
}

static json_t *not_running(void) {
    return json_pack("{sissss}", "run_id", 0, "status", "not_running", "message",
                     "No active pipeline run to stop.");
}

static void h_stop(api_req *r) {
    store *st = api_store(r);
    if (!st) return;
    int64_t id;
    char status[16];
    int rc = store_run_active(st, &id, status);
    if (rc == STORE_NOTFOUND) {
        api_reply_json(r, 200, not_running());
        return;
    }
    if (rc != STORE_FOUND) {
        api_reply_store_error(r, st, rc);
        return;
    }
    /* The database transition is what every process sees; the in-process flag only
     * makes this process's run notice at once instead of at its next poll. */
    rc = strcmp(status, "running") == 0 ? store_run_request_stop(st, id) : STORE_CONFLICT;
    if (rc == STORE_OK || rc == STORE_CONFLICT) api_runs_signal_stop(r->srv->runs, id);
    if (rc == STORE_OK) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "Stop signal sent to pipeline run %lld. In-flight tasks will complete before "
                 "stopping.", (long long)id);
        api_reply_json(r, 200, json_pack("{sIssss}", "run_id", (json_int_t)id, "status",
                                         "stopping", "message", msg));
    } else if (rc == STORE_CONFLICT || rc == STORE_NOTFOUND) {
        api_reply_json(r, 200, not_running()); /* already stopping, or it just ended */
    } else {
        api_reply_store_error(r, st, rc);
    }
}

/* ------------------------------------------------------------------ create-stories, resume */

/* The original's checks, in its order (§1.7); 0 when the run may get stories. */
static int stories_refused(api_req *r, const run_record *rec) {
    long long id = (long long)rec->id;
    if (strcmp(rec->status, "completed") != 0 && strcmp(rec->status, "stopped") != 0)
        api_reply_error(r, 400, "Pipeline run %lld is not completed (status: %s)", id, rec->status);
    else if (!rec->stories_ready)
        api_reply_error(r, 400,
                        "Pipeline run %lld is not ready for story creation (themes not extracted)",
                        id);
    else if (rec->stories_done)
        api_reply_error(r, 400, "Stories already created for pipeline run %lld (%lld stories)", id,
                        (long long)rec->stories_created);
    else if (rec->themes_extracted == 0)
        api_reply_error(r, 400, "No themes extracted in pipeline run %lld", id);
    else
        return 0;
    return -1;
}

static void h_create_stories(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    run_record rec;
    if (!st || load_run(r, st, v[0].i, &rec)) return;
    if (stories_refused(r, &rec) == 0) {
        int64_t other = 0;
        char err[512] = "";
        int rc = api_runs_create_stories(r->srv->runs, st, rec.id, &other, err, sizeof err);
        if (rc == API_JOB_OK) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "Story creation started for pipeline run %lld. Its status shows "
                     "stories_created when it is done.", (long long)rec.id);
            api_reply_json(r, 202, json_pack("{sIssss}", "run_id", (json_int_t)rec.id, "status",
                                             "started", "message", msg));
        } else {
            reply_job_error(r, rc, other, err);
        }
    }
    run_record_free(&rec);
}

static void h_resume(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    if (!st) return;
    int64_t id = v[0].i, other = 0;
    char err[512] = "";
    int rc = api_runs_resume(r->srv->runs, st, id, &other, err, sizeof err);
    if (rc == API_JOB_OK) {
        char msg[120];
        snprintf(msg, sizeof msg, "Pipeline run %lld resumed.", (long long)id);
        api_reply_json(r, 200, json_pack("{sIssss}", "run_id", (json_int_t)id, "status", "resumed",
                                         "message", msg));
        return;
    }
    if (rc == API_JOB_NOTFOUND) {
        api_reply_error(r, 404, "Pipeline run %lld not found", (long long)id);
        return;
    }
    if (rc == API_JOB_CONFLICT) {
        run_record rec;
        if (load_run(r, st, id, &rec)) return;
        api_reply_error(r, 409, "Pipeline run %lld cannot be resumed (status: %s)", (long long)id,
                        rec.status);
        run_record_free(&rec);
        return;
    }
    reply_job_error(r, rc, other, err);
}

/* ------------------------------------------------------------------ events */

static void h_events(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    run_record rec;
    if (!st || load_run(r, st, v[0].i, &rec)) return;
    struct MHD_Response *resp = api_events_subscribe(r->srv->events, r->conn, st, &rec);
    if (resp) api_reply_custom(r, 200, resp);
    else api_reply_error(r, 503, "Too many event streams (limit %d)", API_MAX_EVENT_STREAMS);
    run_record_free(&rec);
}

/* ------------------------------------------------------------------ the table */

const api_route API_PIPELINE_ROUTES[] = {
    {"POST", "/api/pipeline/run", h_run, API_ACCESS_OPERATE, NO_PARAMS, RUN_BODY,
     "Start a pipeline run", "pipeline", "200 409 413 422 503", "PipelineRunResponse", NULL},
    {"GET", "/api/pipeline/status/{run_id}", h_status, API_ACCESS_READ, ID_PARAMS, NULL,
     "Status and counters of one run", "pipeline", "200 404 422", "PipelineStatus", NULL,
     API_CACHE_DB_SECOND},
    {"GET", "/api/pipeline/status/{run_id}/preview", h_preview, API_ACCESS_READ, ID_PARAMS,
     NULL, "Dry-run preview of a run", "pipeline", "200 404 422", "DryRunPreview", NULL,
     API_CACHE_DB},
    {"GET", "/api/pipeline/history", h_history, API_ACCESS_READ, PAGE_PARAMS, NULL,
     "Runs, newest first", "pipeline", "200 422", "PipelineRunList", NULL, API_CACHE_DB},
    {"GET", "/api/pipeline/active", h_active, API_ACCESS_READ, NO_PARAMS, NULL,
     "The active run, if any", "pipeline", "200", "ActiveRun", NULL},
    {"POST", "/api/pipeline/stop", h_stop, API_ACCESS_OPERATE, NO_PARAMS, NULL,
     "Ask the active run to stop", "pipeline", "200", "StopResponse", NULL},
    {"POST", "/api/pipeline/{run_id}/create-stories", h_create_stories, API_ACCESS_OPERATE,
     ID_PARAMS, NULL, "Create the stories of a finished run (in the background)", "pipeline",
     "202 400 404 409 422 503", "JobResponse", NULL},
    {"POST", "/api/pipeline/{run_id}/resume", h_resume, API_ACCESS_OPERATE, ID_PARAMS, NULL,
     "Continue a stopped or failed run", "pipeline", "200 404 409 422 503", "JobResponse",
     NULL},
    {"GET", "/api/pipeline/{run_id}/events", h_events, API_ACCESS_READ, ID_PARAMS, NULL,
     "Server-sent events: phase changes and progress of a run", "pipeline", "200 404 422 503",
     NULL, "text/event-stream"},
};
const size_t API_PIPELINE_ROUTE_COUNT = sizeof API_PIPELINE_ROUTES / sizeof API_PIPELINE_ROUTES[0];

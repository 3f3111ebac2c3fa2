/* The export driver (see export.h): selects the stories, and for each one renders it
 * and creates or updates its ticket, recording the ticket after every success so a
 * later failure never loses what was done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

const char *const EXPORT_TRACKERS[] = {"markdown", "shortcut", "jira", "github", "linear", NULL};
static const tracker_ops *const OPS[] = {&TRACKER_MARKDOWN, &TRACKER_SHORTCUT, &TRACKER_JIRA,
                                         &TRACKER_GITHUB, &TRACKER_LINEAR};

const tracker_ops *tracker_find(const char *name) {
    for (size_t i = 0; name && i < sizeof OPS / sizeof OPS[0]; i++)
        if (strcmp(OPS[i]->name, name) == 0) return OPS[i];
    return NULL;
}

int export_tracker_known(const char *name) { return tracker_find(name) != NULL; }

int export_check_config(const char *name, char *err, size_t errlen) {
    const tracker_ops *ops = tracker_find(name);
    if (!ops) {
        snprintf(err, errlen, "unknown tracker \"%.40s\" (markdown, shortcut, jira, github, linear)",
                 name ? name : "");
        return -1;
    }
    export_options o = {0};
    tracker *t = ops->open(&o, err, errlen);
    if (!t) return -1;
    ops->close(t);
    return 0;
}

const char *export_action_name(enum export_action a) {
    static const char *const NAMES[] = {"created", "updated", "skipped", "failed",
                                        "would create", "would update"};
    return a <= EXPORT_WOULD_UPDATE ? NAMES[a] : "?";
}

typedef struct exporter {
    store *st;
    const export_options *o;
    export_result *res;
    tracker *t;
    int explicit_ids;
} exporter;

static void emit(exporter *x, const export_story *s, int64_t id, enum export_action a,
                 const char *external_id, const char *url, const char *note) {
    export_result *r = x->res;
    switch (a) {
    case EXPORT_CREATED: r->created++; break;
    case EXPORT_UPDATED: r->updated++; break;
    case EXPORT_FAILED: r->failed++; break;
    case EXPORT_SKIPPED: r->skipped++; break;
    default: break;
    }
    if (!x->o->on_item) return;
    export_item it = {id, s && s->title ? s->title : "", a, external_id ? external_id : "",
                      url ? url : "", note ? note : "", s ? s->evidence_total : 0};
    x->o->on_item(x->o->ctx, &it);
}

static int fatal(exporter *x, enum export_status st, const char *msg) {
    x->res->status = st;
    snprintf(x->res->error, sizeof x->res->error, "%s", msg);
    return -1;
}

/* Creates or updates the ticket of one loaded story; -1 when the export must stop. */
static int send_story(exporter *x, const export_story *s, const export_link *link) {
    const tracker_ops *ops = x->t->ops;
    export_doc d;
    export_doc_init(&d, s, link->external_id ? link : NULL);
    ticket tk = {0};
    char err[512] = "", note[160] = "";
    int update = link->external_id != NULL;
    int rc = update ? ops->update(x->t, &d, link->external_id, &tk, err, sizeof err)
                    : ops->create(x->t, &d, &tk, err, sizeof err);
    if (update && d.new_from < s->nevidence)
        snprintf(note, sizeof note, "%zu new conversations since the last export",
                 s->nevidence - d.new_from);
    export_doc_free(&d);
    if (rc == TRACKER_OK && ops->records &&
        store_export_link_put(x->st, s->id, ops->name, tk.id, tk.url, s->evidence_total, 1,
                              wall_unix()) != STORE_OK) {
        /* The ticket exists but is not recorded: a rerun would create a duplicate, so
         * say which ticket it is. */
        snprintf(err, sizeof err, "%s ticket %s (%s) was %s but could not be recorded: %s",
                 ops->display, tk.id, tk.url, update ? "updated" : "created",
                 store_errmsg(x->st));
        emit(x, s, s->id, EXPORT_FAILED, tk.id, tk.url, err);
        ticket_free(&tk);
        return fatal(x, EXPORT_ERROR, err);
    }
    if (rc == TRACKER_OK)
        emit(x, s, s->id, update ? EXPORT_UPDATED : EXPORT_CREATED, tk.id, tk.url, note);
    else
        emit(x, s, s->id, EXPORT_FAILED, link->external_id, link->url, err);
    ticket_free(&tk);
    return rc == TRACKER_FATAL ? fatal(x, EXPORT_PARTIAL, err) : 0;
}

static int closed_state(const char *status) {
    return strcmp(status, "closed") == 0 || strcmp(status, "rejected") == 0;
}

/* One story: load, skip or send. -1 when the export must stop. */
static int export_one(exporter *x, int64_t id) {
    export_story s;
    int rc = store_export_story(x->st, id, &s);
    if (rc == STORE_NOTFOUND) {
        emit(x, NULL, id, EXPORT_FAILED, NULL, NULL, "no such story");
        return 0;
    }
    if (rc != STORE_FOUND) return fatal(x, EXPORT_ERROR, store_errmsg(x->st));
    export_link link = {0};
    const tracker_ops *ops = x->t->ops;
    rc = ops->records ? store_export_link_get(x->st, id, ops->name, &link) : STORE_NOTFOUND;
    if (rc != STORE_FOUND && rc != STORE_NOTFOUND) {
        export_story_free(&s);
        return fatal(x, EXPORT_ERROR, store_errmsg(x->st));
    }
    int out = 0;
    if (closed_state(s.status) && !x->explicit_ids) {
        char note[120];
        snprintf(note, sizeof note, "the story is %s (name it with --story to export it anyway)",
                 s.status);
        emit(x, &s, id, EXPORT_SKIPPED, link.external_id, link.url, note);
    } else if (x->o->dry_run) {
        emit(x, &s, id, link.external_id ? EXPORT_WOULD_UPDATE : EXPORT_WOULD_CREATE,
             link.external_id, link.url, "");
    } else {
        out = send_story(x, &s, &link);
    }
    export_link_free(&link);
    export_story_free(&s);
    return out;
}

/* The story ids of the export: the explicit ones, else the run's (the newest run with
 * stories by default). */
static int select_stories(exporter *x, int64_t **ids, size_t *n) {
    const export_options *o = x->o;
    *ids = NULL;
    *n = 0;
    if (o->nstory_ids) {
        x->explicit_ids = 1;
        *ids = xmalloc(o->nstory_ids * sizeof **ids);
        memcpy(*ids, o->story_ids, o->nstory_ids * sizeof **ids);
        *n = o->nstory_ids;
        return 0;
    }
    int64_t run = o->run_id;
    if (!run) {
        int rc = store_export_latest_run(x->st, &run);
        if (rc == STORE_NOTFOUND) return 0; /* nothing to export */
        if (rc != STORE_FOUND) return fatal(x, EXPORT_ERROR, store_errmsg(x->st));
    }
    x->res->run_id = run;
    if (store_export_run_stories(x->st, run, ids, n) != STORE_OK)
        return fatal(x, EXPORT_ERROR, store_errmsg(x->st));
    return 0;
}

int export_run(store *st, const export_options *o, export_result *res) {
    memset(res, 0, sizeof *res);
    exporter x = {st, o, res, NULL, 0};
    const tracker_ops *ops = tracker_find(o->tracker);
    char err[512] = "";
    if (!ops || !(x.t = ops->open(o, err, sizeof err))) {
        if (!ops) export_check_config(o->tracker, err, sizeof err);
        fatal(&x, EXPORT_CONFIG, err);
        return res->status;
    }
    int64_t *ids;
    size_t n;
    if (select_stories(&x, &ids, &n) == 0) {
        int stopped = 0;
        for (size_t i = 0; i < n && !stopped; i++) {
            if (o->cancel && atomic_load(o->cancel)) stopped = fatal(&x, EXPORT_PARTIAL, "cancelled");
            else stopped = export_one(&x, ids[i]) != 0;
        }
        if (!stopped && !o->dry_run && ops->finish && ops->finish(x.t, err, sizeof err) != 0)
            fatal(&x, EXPORT_PARTIAL, err);
        if (res->status == EXPORT_OK && res->failed) {
            res->status = EXPORT_PARTIAL;
            snprintf(res->error, sizeof res->error, "%d stories failed", res->failed);
        }
    }
    free(ids);
    ops->close(x.t);
    return res->status;
}

/* ------------------------------------------------------------------ JSON */

const char *export_status_name(enum export_status s) {
    static const char *const NAMES[] = {"ok", "partial", "config", "error"};
    return s <= EXPORT_ERROR ? NAMES[s] : "?";
}

json_t *export_item_json(const export_item *it) {
    return json_pack("{s:I,s:o,s:s,s:o,s:o,s:o,s:I}", "story_id", (json_int_t)it->story_id,
                     "title", jx_string(it->title), "action", export_action_name(it->action),
                     "external_id", jx_string(it->external_id), "url", jx_string(it->url),
                     "note", jx_string(it->note), "evidence_count",
                     (json_int_t)it->evidence_count);
}

json_t *export_result_json(const export_result *r) {
    return json_pack("{s:s,s:o,s:I,s:i,s:i,s:i,s:i}", "status", export_status_name(r->status),
                     "error", jx_string_or_null(r->error[0] ? r->error : NULL), "run_id",
                     (json_int_t)r->run_id, "created", r->created, "updated", r->updated,
                     "skipped", r->skipped, "failed", r->failed);
}

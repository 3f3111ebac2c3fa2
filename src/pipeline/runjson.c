/* JSON views of runs (see runjson.h). */
#include "pipeline/runjson.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_report.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

static json_t *iso_or_null(int64_t t) {
    if (!t) return json_null();
    char buf[32];
    return json_string(iso8601_format(t, buf, sizeof buf));
}

static double round1(double x) { return round(x * 10.0) / 10.0; }

static void add_common(json_t *o, const run_record *r) {
    json_object_set_new(o, "id", json_integer(r->id));
    json_object_set_new(o, "started_at", iso_or_null(r->started_at));
    json_object_set_new(o, "completed_at", iso_or_null(r->completed_at));
    json_object_set_new(o, "status", json_string(r->status));
    json_object_set_new(o, "current_phase", json_string(r->current_phase));
    json_object_set_new(o, "dry_run", json_boolean(r->dry_run));
    json_object_set_new(o, "stories_ready", json_boolean(r->stories_ready));
#define COUNTER(n) json_object_set_new(o, #n, json_integer(r->n));
    RUN_ALL_COUNTERS(COUNTER)
#undef COUNTER
}

/* Everything of the status but the warnings. */
static json_t *status_without_warnings(store *s, const run_record *r, int64_t now) {
    json_t *o = json_object();
    add_common(o, r);
    json_object_set_new(o, "error_message", jx_string_or_null(r->error_message));
    json_object_set_new(o, "date_from", iso_or_null(r->date_from));
    json_object_set_new(o, "date_to", iso_or_null(r->date_to));
    json_object_set_new(o, "auto_create_stories", json_boolean(r->auto_create_stories));
    json_object_set_new(o, "days", r->days ? json_integer(r->days) : json_null());
    json_object_set_new(o, "max_conversations",
                        r->max_conversations ? json_integer(r->max_conversations) : json_null());
    json_object_set_new(o, "concurrency", json_integer(r->concurrency));
    json_object_set_new(o, "batch", json_boolean(r->batch));
    int64_t end = r->completed_at ? r->completed_at : now;
    json_object_set_new(o, "duration_seconds", json_real(round1((double)(end - r->started_at))));

    char *errs = NULL, *usage = NULL;
    if (store_run_errors_json(s, r->id, &errs) != STORE_OK ||
        store_run_usage_json(s, r->id, &usage) != STORE_OK) {
        free(errs);
        json_decref(o);
        return NULL;
    }
    json_t *groups = json_loads(errs, 0, NULL), *errors = json_array();
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g) {
        json_array_append_new(errors, json_pack("{sOsOs{sOsO}}", "phase", json_object_get(g, "phase"),
                                                "message", json_object_get(g, "message"),
                                                "details", "count", json_object_get(g, "count"),
                                                "conversation_ids",
                                                json_object_get(g, "conversation_ids")));
    }
    json_decref(groups);
    free(errs);
    json_object_set_new(o, "errors", errors);
    json_object_set_new(o, "error_count", json_integer(store_run_error_count(s, r->id)));

    if (r->stories_done) {
        json_t *review = run_review_json(s, r->id);
        if (!review) {
            json_decref(o);
            free(usage);
            return NULL;
        }
        json_object_set_new(o, "review", review);
    }
    json_t *by_phase = json_loads(usage, 0, NULL);
    free(usage);
    json_object_set_new(o, "llm",
                        json_pack("{sssososIsIsIsIsIsfso}", "provider", r->llm, "chat_model",
                                  jx_string_or_null(r->chat_model), "embed_model",
                                  jx_string_or_null(r->embed_model), "requests",
                                  (json_int_t)r->llm_requests, "cache_hits",
                                  (json_int_t)r->llm_cache_hits, "prompt_tokens",
                                  (json_int_t)r->prompt_tokens, "cached_tokens",
                                  (json_int_t)r->cached_tokens, "completion_tokens",
                                  (json_int_t)r->completion_tokens, "cost_usd",
                                  round(r->cost_usd * 1e6) / 1e6, "by_phase",
                                  by_phase ? by_phase : json_object()));
    return o;
}

json_t *run_review_json(store *s, int64_t run_id) {
    json_t *decisions = NULL;
    if (store_reviews_json(s, run_id, &decisions) != STORE_OK) return NULL;
    json_int_t counts[4] = {0};
    static const char *const names[] = {"keep", "split", "merge", "reject"};
    size_t i;
    json_t *d;
    json_array_foreach(decisions, i, d)
        for (int k = 0; k < 4; k++) counts[k] += !strcmp(jx_str(d, "decision"), names[k]);
    return json_pack("{sIsIsIsIso}", "kept", counts[0], "split", counts[1], "merged", counts[2],
                     "rejected", counts[3], "decisions", decisions);
}

json_t *run_status_json(store *s, const run_record *r, int64_t now) {
    json_t *o = status_without_warnings(s, r, now);
    if (!o) return NULL;
    json_t *warnings = json_loads(r->warnings_json ? r->warnings_json : "[]", 0, NULL);
    json_object_set_new(o, "warnings", json_is_array(warnings) ? warnings : json_array());
    if (!json_is_array(warnings)) json_decref(warnings);
    return o;
}

/* The stored warnings when they look like the JSON array the store wrote, else "[]". */
static const char *stored_warnings(const run_record *r, size_t *len) {
    const char *w = r->warnings_json;
    size_t n = w ? strlen(w) : 0;
    while (n && (w[n - 1] == ' ' || w[n - 1] == '\n')) n--;
    if (n < 2 || w[0] != '[' || w[n - 1] != ']') {
        *len = 2;
        return "[]";
    }
    *len = n;
    return w;
}

char *run_status_json_text(store *s, const run_record *r, int64_t now, size_t flags) {
    json_t *o = status_without_warnings(s, r, now);
    if (!o) return NULL;
    char *head = json_dumps(o, flags);
    json_decref(o);
    size_t hlen = head ? strlen(head) : 0;
    if (hlen < 2 || head[hlen - 1] != '}') {
        free(head);
        return NULL;
    }
    /* Parsing the warnings back into a tree costs more than everything else together
     * (jansson reads ~80 MB/s; 200 warnings are ~20 kB): splice the text the store
     * wrote (always a jansson-serialised array) in place of the closing brace. */
    size_t wlen;
    const char *w = stored_warnings(r, &wlen);
    static const char key[] = ",\"warnings\":";
    char *out = xmalloc(hlen - 1 + sizeof key - 1 + wlen + 2);
    size_t pos = hlen - 1;
    memcpy(out, head, pos);
    memcpy(out + pos, key, sizeof key - 1);
    pos += sizeof key - 1;
    memcpy(out + pos, w, wlen);
    pos += wlen;
    out[pos++] = '}';
    out[pos] = '\0';
    free(head);
    return out;
}

json_t *run_list_item_json(store *s, const run_record *r) {
    json_t *o = json_object();
    add_common(o, r);
    json_object_set_new(o, "error_count", json_integer(store_run_error_count(s, r->id)));
    json_object_set_new(o, "duration_seconds",
                        r->completed_at ? json_real(round1((double)(r->completed_at - r->started_at)))
                                        : json_null());
    return o;
}

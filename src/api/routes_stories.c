/* The /api/stories router (original-data_surfaces.md §3.5, the read side): stories
 * listed with filters and paging (largest first, with their conversation ids), and one
 * story with its evidence joined to the conversations (excerpt, digest, source URL).
 * Stories are identified by integer ids here (the original used UUIDs); dates are
 * ISO-8601 UTC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "store/store_report.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

static const api_param P_STATUS = {"status", "query", API_T_STR, API_P_MAX, 0, 50, 0, NULL, NULL,
                                   "Only stories with this status (e.g. candidate)"};
static const api_param P_AREA = {"product_area", "query", API_T_STR, API_P_MAX, 0, 200, 0, NULL,
                                 NULL, "Only this product area"};
static const api_param P_RUN = {"run_id", "query", API_T_INT, API_P_MIN, 1, 0, 0, NULL, NULL,
                                "Only stories of this run"};
static const api_param P_SIGNATURE = {"signature", "query", API_T_STR, API_P_MAX, 0, 200, 0, NULL,
                                      NULL, "Only stories of this issue signature"};
static const api_param P_SINCE = {"created_since", "query", API_T_TIME, 0, 0, 0, 0, NULL, NULL,
                                  "Created at or after this ISO-8601 time"};
static const api_param P_LIMIT = {"limit", "query", API_T_INT,
                                  API_P_MIN | API_P_MAX | API_P_DEFAULT, 1, 200, 50, NULL, NULL,
                                  "Stories per page"};
static const api_param P_OFFSET = {"offset", "query", API_T_INT, API_P_MIN | API_P_DEFAULT, 0, 0,
                                   0, NULL, NULL, "Stories to skip"};
static const api_param P_STORY_ID = {"story_id", "path", API_T_INT, 0, 0, 0, 0, NULL, NULL,
                                     "Story id"};

static const char *const STATES[] = {"open", "exported", "closed", "rejected", NULL};
static const api_param B_STATE = {"state", "body", API_T_ENUM, API_P_REQUIRED, 0, 0, 0, STATES,
                                  NULL, "The story's new state"};
static const api_param B_REASON = {"reason", "body", API_T_STR, API_P_MAX | API_P_NULLABLE, 0,
                                   2000, 0, NULL, NULL, "Why (shown with the story)"};
static const api_param *const STATE_BODY[] = {&B_STATE, &B_REASON, NULL};

static const api_param *const LIST_PARAMS[] = {&P_STATUS, &P_AREA,  &P_RUN,    &P_SIGNATURE,
                                               &P_SINCE,  &P_LIMIT, &P_OFFSET, NULL};
static const api_param *const DETAIL_PARAMS[] = {&P_STORY_ID, NULL};


/* The store reports unix seconds; the API speaks ISO-8601 like the run endpoints. */
static void iso_dates(json_t *story) {
    static const char *const fields[] = {"created_at", "updated_at", "first_seen_at",
                                         "last_seen_at", "state_changed_at"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *v = json_object_get(story, fields[i]);
        if (!json_is_integer(v)) continue;
        char buf[32];
        json_object_set_new(story, fields[i],
                            json_string(iso8601_format(json_integer_value(v), buf, sizeof buf)));
    }
}

static void h_list(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    if (!st) return;
    story_filter f = {0};
    f.status = v[0].s;
    f.product_area = v[1].s;
    f.run_id = v[2].is_null ? 0 : v[2].i;
    f.signature = v[3].s;
    f.created_since = v[4].is_null ? 0 : v[4].i;
    f.limit = v[5].i;
    f.offset = v[6].i;
    f.with_conversation_ids = 1;
    json_t *stories = NULL;
    int64_t total = 0;
    int rc = store_stories_json(st, &f, &stories, &total);
    if (rc != STORE_OK) {
        api_reply_store_error(r, st, rc);
        return;
    }
    size_t i;
    json_t *s;
    json_array_foreach(stories, i, s) iso_dates(s);
    api_reply_json(r, 200, json_pack("{sosIsIsI}", "stories", stories, "total", (json_int_t)total,
                                     "limit", (json_int_t)f.limit, "offset",
                                     (json_int_t)f.offset));
}

/* Adds "conversation_url" to each evidence item when a link template is configured. */
static void link_conversations(api_req *r, json_t *story) {
    const char *tmpl = r->srv->conversation_url;
    const char *mark = tmpl ? strstr(tmpl, "{id}") : NULL;
    if (!mark) return;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(story, "evidence"), i, e) {
        const char *id = json_string_value(json_object_get(e, "conversation_id"));
        if (!id) continue;
        char *url = xasprintf("%.*s%s%s", (int)(mark - tmpl), tmpl, id, mark + 4);
        json_object_set_new(e, "conversation_url", jx_string(url));
        free(url);
    }
}

static void h_detail(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    if (!st) return;
    json_t *story = NULL;
    int rc = store_story_detail_json(st, v[0].i, &story);
    if (rc == STORE_NOTFOUND) {
        api_reply_error(r, 404, "Story %lld not found", (long long)v[0].i);
        return;
    }
    if (rc != STORE_FOUND) {
        api_reply_store_error(r, st, rc);
        return;
    }
    iso_dates(story);
    link_conversations(r, story);
    api_reply_json(r, 200, story);
}

/* Sets a story's state; answers with the story as it now is. */
static void h_state(api_req *r) {
    api_value v[API_MAX_PARAMS], b[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    json_t *doc;
    if (api_parse_body_or_reply(r, b, &doc)) return;
    store *st = api_store(r);
    if (!st) {
        json_decref(doc);
        return;
    }
    int rc = store_story_set_state(st, v[0].i, b[0].s, b[1].is_null ? NULL : b[1].s, wall_unix());
    json_decref(doc);
    if (rc == STORE_NOTFOUND) {
        api_reply_error(r, 404, "Story %lld not found", (long long)v[0].i);
        return;
    }
    if (rc != STORE_OK) {
        api_reply_store_error(r, st, rc);
        return;
    }
    json_t *story = NULL;
    rc = store_story_detail_json(st, v[0].i, &story);
    if (rc != STORE_FOUND) {
        api_reply_store_error(r, st, rc < 0 ? rc : STORE_ERR);
        return;
    }
    iso_dates(story);
    link_conversations(r, story);
    api_reply_json(r, 200, story);
}

const api_route API_STORIES_ROUTES[] = {
    {"GET", "/api/stories", h_list, 0, LIST_PARAMS, NULL, "Stories with filters and paging",
     "stories", "200 422", "StoryList", NULL, API_CACHE_DB},
    {"GET", "/api/stories/{story_id}", h_detail, 0, DETAIL_PARAMS, NULL,
     "One story with its evidence conversations", "stories", "200 404 422", "StoryDetail", NULL,
     API_CACHE_DB},
    {"POST", "/api/stories/{story_id}/state", h_state, API_ACCESS_OPERATE, DETAIL_PARAMS,
     STATE_BODY,
     "Set a story's state (open, exported, closed, rejected) with an optional reason",
     "stories", "200 401 403 404 413 422", "StoryDetail", NULL},
};
const size_t API_STORIES_ROUTE_COUNT = sizeof API_STORIES_ROUTES / sizeof API_STORIES_ROUTES[0];

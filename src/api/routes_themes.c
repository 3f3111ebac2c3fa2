/* The /api/themes router (original-data_surfaces.md §3.4): theme aggregates computed
 * from the themes the pipeline stored (the original read a theme_aggregates table its
 * pipeline never wrote), listed with filters and paging, and one signature's detail
 * with the conversations that evidence it.
 *
 * As in the original, the fixed routes (trending, orphans, singletons, all) come before
 * /{signature}; signatures are lower snake case, so only a signature literally named
 * like one of them is shadowed. "total" is the number of matching themes before the
 * limit (the original reported the page length for trending/orphans/singletons). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "store/store_report.h"
#include "util/jsonx.h"
#include "util/timeutil.h"

#define DETAIL_MAX_IDS 1000
#define DETAIL_MAX_CONVERSATIONS 50

static const api_param P_AREA = {"product_area", "query", API_T_STR, API_P_MAX, 0, 200, 0, NULL,
                                 NULL, "Only this product area"};
static const api_param P_RUN = {"run_id", "query", API_T_INT, API_P_MIN, 1, 0, 0, NULL, NULL,
                                "Only themes of this run"};
static const api_param P_MIN_OCC = {"min_occurrences", "query", API_T_INT,
                                    API_P_MIN | API_P_DEFAULT, 1, 0, 1, NULL, NULL,
                                    "At least this many conversations"};
static const api_param P_DAYS_ANY = {"days", "query", API_T_INT, API_P_MIN | API_P_MAX, 1, 3650,
                                     0, NULL, NULL,
                                     "Last seen within N days (conversation dates; default: any)"};
static const api_param P_LIMIT = {"limit", "query", API_T_INT,
                                  API_P_MIN | API_P_MAX | API_P_DEFAULT, 1, 200, 50, NULL, NULL,
                                  "Themes per page"};
static const api_param P_OFFSET = {"offset", "query", API_T_INT, API_P_MIN | API_P_DEFAULT, 0, 0,
                                   0, NULL, NULL, "Themes to skip"};
static const api_param P_T_DAYS = {"days", "query", API_T_INT,
                                   API_P_MIN | API_P_MAX | API_P_DEFAULT, 1, 90, 7, NULL, NULL,
                                   "Last seen within N days"};
static const api_param P_T_MIN = {"min_occurrences", "query", API_T_INT,
                                  API_P_MIN | API_P_DEFAULT, 1, 0, 2, NULL, NULL,
                                  "At least this many conversations"};
static const api_param P_T_LIMIT = {"limit", "query", API_T_INT,
                                    API_P_MIN | API_P_MAX | API_P_DEFAULT, 1, 100, 20, NULL, NULL,
                                    "Themes to return"};
static const api_param P_THRESHOLD = {"threshold", "query", API_T_INT,
                                      API_P_MIN | API_P_DEFAULT, 1, 0, 2, NULL, NULL,
                                      "Fewer conversations than this"};
static const api_param P_O_DAYS = {"days", "query", API_T_INT,
                                   API_P_MIN | API_P_MAX | API_P_DEFAULT, 1, 365, 30, NULL, NULL,
                                   "Last seen within N days"};
static const api_param P_SIGNATURE = {"signature", "path", API_T_STR, API_P_MAX, 0, 200, 0, NULL,
                                      NULL, "Issue signature"};

static const api_param *const LIST_PARAMS[] = {&P_AREA, &P_RUN, &P_MIN_OCC, &P_DAYS_ANY,
                                               &P_LIMIT, &P_OFFSET, NULL};
static const api_param *const TRENDING_PARAMS[] = {&P_T_DAYS, &P_T_MIN, &P_T_LIMIT, NULL};
static const api_param *const ORPHAN_PARAMS[] = {&P_THRESHOLD, &P_O_DAYS, &P_LIMIT, NULL};
static const api_param *const SINGLETON_PARAMS[] = {&P_O_DAYS, &P_LIMIT, NULL};
static const api_param *const ALL_PARAMS[] = {&P_AREA, &P_LIMIT, &P_OFFSET, NULL};
static const api_param *const DETAIL_PARAMS[] = {&P_SIGNATURE, NULL};


static int64_t days_ago(int64_t days) { return wall_unix() - days * 86400; }

/* Runs the query and replies {"themes": [...], "total": n} plus the extra fields. */
static void reply_themes(api_req *r, const theme_filter *f, json_t *extra) {
    store *st = api_store(r);
    if (!st) {
        json_decref(extra);
        return;
    }
    json_t *themes = NULL;
    int64_t total = 0;
    int rc = store_themes_json(st, f, &themes, &total);
    if (rc != STORE_OK) {
        json_decref(extra);
        api_reply_store_error(r, st, rc);
        return;
    }
    json_object_set_new(extra, "themes", themes);
    json_object_set_new(extra, "total", json_integer(total));
    api_reply_json(r, 200, extra);
}

static void h_list(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    theme_filter f = {0};
    f.product_area = v[0].s;
    f.run_id = v[1].is_null ? 0 : v[1].i;
    f.min_count = v[2].i;
    f.seen_since = v[3].is_null ? 0 : days_ago(v[3].i);
    f.limit = v[4].i;
    f.offset = v[5].i;
    reply_themes(r, &f, json_pack("{sIsI}", "limit", (json_int_t)f.limit, "offset",
                                  (json_int_t)f.offset));
}

static void h_trending(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    theme_filter f = {0};
    f.seen_since = days_ago(v[0].i);
    f.min_count = v[1].i;
    f.limit = v[2].i;
    reply_themes(r, &f, json_pack("{sIsI}", "days", (json_int_t)v[0].i, "min_occurrences",
                                  (json_int_t)v[1].i));
}

static void h_orphans(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    theme_filter f = {0};
    f.max_count = v[0].i - 1;
    f.seen_since = days_ago(v[1].i);
    f.limit = v[2].i;
    f.recent_first = 1;
    if (f.max_count < 1) { /* threshold 1: nothing has fewer than one conversation */
        api_reply_json(r, 200, json_pack("{s[]sIsi}", "themes", "threshold", (json_int_t)v[0].i,
                                         "total", 0));
        return;
    }
    reply_themes(r, &f, json_pack("{sI}", "threshold", (json_int_t)v[0].i));
}

static void h_singletons(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    theme_filter f = {0};
    f.max_count = 1;
    f.seen_since = days_ago(v[0].i);
    f.limit = v[1].i;
    f.recent_first = 1;
    reply_themes(r, &f, json_pack("{si}", "threshold", 2));
}

static void h_all(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    theme_filter f = {0};
    f.product_area = v[0].s;
    f.limit = v[1].i;
    f.offset = v[2].i;
    reply_themes(r, &f, json_pack("{sIsI}", "limit", (json_int_t)f.limit, "offset",
                                  (json_int_t)f.offset));
}

static void h_detail(api_req *r) {
    api_value v[API_MAX_PARAMS];
    if (api_parse_or_reply(r, v)) return;
    store *st = api_store(r);
    if (!st) return;
    json_t *theme = NULL;
    int rc = store_theme_detail_json(st, v[0].s, DETAIL_MAX_IDS, DETAIL_MAX_CONVERSATIONS, &theme);
    if (rc == STORE_NOTFOUND) {
        api_reply_error(r, 404, "Theme '%s' not found", v[0].s);
        return;
    }
    if (rc != STORE_FOUND) {
        api_reply_store_error(r, st, rc);
        return;
    }
    /* The original's shape: {"theme": {...}, "conversation_ids": [...]}, plus the
     * conversations with their excerpts. */
    json_t *ids = json_incref(json_object_get(theme, "conversation_ids"));
    json_t *convs = json_incref(json_object_get(theme, "conversations"));
    json_object_del(theme, "conversation_ids");
    json_object_del(theme, "conversations");
    api_reply_json(r, 200, json_pack("{sososo}", "theme", theme, "conversation_ids", ids,
                                     "conversations", convs));
}

const api_route API_THEMES_ROUTES[] = {
    {"GET", "/api/themes", h_list, API_ACCESS_READ, LIST_PARAMS, NULL,
     "Theme aggregates with filters and paging", "themes", "200 422", "ThemeList", NULL,
     API_CACHE_DB_SECOND},
    {"GET", "/api/themes/trending", h_trending, API_ACCESS_READ, TRENDING_PARAMS, NULL,
     "Themes seen recently at least min_occurrences times", "themes", "200 422", "ThemeList",
     NULL, API_CACHE_DB_SECOND},
    {"GET", "/api/themes/orphans", h_orphans, API_ACCESS_READ, ORPHAN_PARAMS, NULL,
     "Recent themes with fewer than threshold conversations", "themes", "200 422", "ThemeList",
     NULL, API_CACHE_DB_SECOND},
    {"GET", "/api/themes/singletons", h_singletons, API_ACCESS_READ, SINGLETON_PARAMS, NULL,
     "Recent themes seen once", "themes", "200 422", "ThemeList", NULL,
     API_CACHE_DB_SECOND},
    {"GET", "/api/themes/all", h_all, API_ACCESS_READ, ALL_PARAMS, NULL,
     "Every theme, largest first", "themes", "200 422", "ThemeList", NULL, API_CACHE_DB},
    {"GET", "/api/themes/{signature}", h_detail, API_ACCESS_READ, DETAIL_PARAMS, NULL,
     "One theme with its evidence conversations", "themes", "200 404 422", "ThemeDetail", NULL,
     API_CACHE_DB},
};
const size_t API_THEMES_ROUTE_COUNT = sizeof API_THEMES_ROUTES / sizeof API_THEMES_ROUTES[0];

/* The API's request validation (src/api/validate.c) on arbitrary requests, without a
 * server: path parameters, query arguments and JSON bodies checked against every
 * route's api_param records, and the FastAPI-style error list serialised as the 422
 * answer would be. Input: byte 0 picks the route (of every router's table); then
 * line 1 = the path's {param} values separated by '/', line 2 = the query string
 * (name=value pairs separated by '&', already URL-decoded as libmicrohttpd hands them
 * over), the rest = the body. Properties: every error is an object with type, loc and
 * msg; the errors serialise. */
#include "fuzz.h"
#include "api/api_internal.h"

FUZZ_QUIET_INIT

static const api_route *route_at(size_t k) {
    const api_route *tables[] = {API_PIPELINE_ROUTES, API_THEMES_ROUTES, API_STORIES_ROUTES,
                                 API_HEALTH_ROUTES, API_EXPORT_ROUTES};
    const size_t counts[] = {API_PIPELINE_ROUTE_COUNT, API_THEMES_ROUTE_COUNT,
                             API_STORIES_ROUTE_COUNT, API_HEALTH_ROUTE_COUNT,
                             API_EXPORT_ROUTE_COUNT};
    size_t total = 0;
    for (size_t t = 0; t < 5; t++) total += counts[t];
    k %= total;
    for (size_t t = 0; t < 5; t++) {
        if (k < counts[t]) return &tables[t][k];
        k -= counts[t];
    }
    return NULL;
}

/* Splits s in place at sep into at most max pieces. */
static size_t split(char *s, char sep, char **out, size_t max) {
    size_t n = 0;
    while (n < max) {
        out[n++] = s;
        char *e = strchr(s, sep);
        if (!e) break;
        *e = '\0';
        s = e + 1;
    }
    return n;
}

static void check_errors(const json_t *errors) {
    FUZZ_CHECK(json_is_array(errors));
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        FUZZ_CHECK(json_is_object(e));
        FUZZ_CHECK(json_is_string(json_object_get(e, "type")));
        FUZZ_CHECK(json_is_array(json_object_get(e, "loc")));
        FUZZ_CHECK(json_is_string(json_object_get(e, "msg")));
    }
    char *s = json_dumps(errors, API_JSON_FLAGS);
    FUZZ_CHECK(s != NULL);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 128 * 1024) return -1;
    const api_route *rt = route_at(data[0]);
    const uint8_t *rest;
    size_t head_len, body_len;
    fuzz_split(data + 1, size - 1, "\n", &rest, &head_len, &body_len);
    char *path = fuzz_cstr(data + 1, head_len);
    const uint8_t *body;
    size_t query_len;
    fuzz_split(rest, body_len, "\n", &body, &query_len, &body_len);
    char *query = fuzz_cstr(rest, query_len);

    api_req r;
    memset(&r, 0, sizeof r);
    r.route = rt;
    char *segs[API_MAX_PARAMS];
    r.nsegs = path[0] ? split(path, '/', segs, API_MAX_PARAMS) : 0;
    for (size_t i = 0; i < r.nsegs; i++) r.segs[i] = segs[i];
    char *pairs[32];
    const char *args[2 * 32 + 1];
    size_t npairs = query[0] ? split(query, '&', pairs, 32) : 0, nargs = 0;
    for (size_t i = 0; i < npairs; i++) {
        char *eq = strchr(pairs[i], '=');
        if (eq) *eq = '\0';
        args[nargs++] = pairs[i];
        args[nargs++] = eq ? eq + 1 : "";
    }
    args[nargs] = NULL;
    r.query_args = args;

    api_value vals[API_MAX_PARAMS];
    json_t *errors = json_array();
    api_parse_params(&r, vals, errors);
    check_errors(errors);
    json_decref(errors);
    if (rt->body) {
        buf_append(&r.body, (const char *)body, body_len);
        api_value bvals[API_MAX_PARAMS];
        errors = json_array();
        json_t *doc = api_parse_body(&r, bvals, errors);
        FUZZ_CHECK(doc != NULL || json_array_size(errors) > 0);
        check_errors(errors);
        json_decref(errors);
        json_decref(doc);
        buf_free(&r.body);
    }
    free(path);
    free(query);
    return 0;
}

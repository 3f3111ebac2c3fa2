/* Request validation: path, query and JSON body parameters checked against their
 * api_param records, with failures reported the way FastAPI/pydantic v2 reports them
 * ({"type","loc","msg","input","ctx"}), so the original's web client reads them. Types
 * are checked strictly: an integer field takes a JSON integer (or a real without a
 * fraction), never a string or a boolean; a boolean takes true/false. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

json_t *api_validation_error(const char *type, const char *where, const char *field,
                             const char *msg, json_t *input, json_t *ctx) {
    json_t *loc = json_array();
    json_array_append_new(loc, json_string(where));
    if (field) json_array_append_new(loc, jx_string(field));
    char *text = xasprintf("%s: %s", field ? field : where, msg);
    json_t *e = json_pack("{sssososo}", "type", type, "loc", loc, "msg", jx_string(text),
                          "input", input ? input : json_null());
    free(text);
    if (ctx) json_object_set_new(e, "ctx", ctx);
    return e;
}

int api_parse_int64(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (*p < '0' || *p > '9') return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* Bounds of an integer; 0 or -1 after appending the error. */
static int check_bounds(const api_param *p, int64_t v, json_t *input, json_t *errors) {
    char msg[96];
    if ((p->flags & API_P_MIN) && v < p->min) {
        snprintf(msg, sizeof msg, "Input should be greater than or equal to %lld",
                 (long long)p->min);
        json_array_append_new(errors,
            api_validation_error("greater_than_equal", p->in, p->name, msg, input,
                                 json_pack("{sI}", "ge", (json_int_t)p->min)));
        return -1;
    }
    if ((p->flags & API_P_MAX) && v > p->max) {
        snprintf(msg, sizeof msg, "Input should be less than or equal to %lld",
                 (long long)p->max);
        json_array_append_new(errors,
            api_validation_error("less_than_equal", p->in, p->name, msg, input,
                                 json_pack("{sI}", "le", (json_int_t)p->max)));
        return -1;
    }
    json_decref(input);
    return 0;
}

static json_t *choices_ctx(const api_param *p, char *msg, size_t msglen) {
    buf_t b = BUF_INIT;
    for (size_t i = 0; p->choices[i]; i++) {
        if (i) buf_puts(&b, p->choices[i + 1] ? ", " : " or ");
        buf_printf(&b, "'%s'", p->choices[i]);
    }
    snprintf(msg, msglen, "Input should be %s", buf_cstr(&b));
    json_t *ctx = json_pack("{ss}", "expected", buf_cstr(&b));
    buf_free(&b);
    return ctx;
}

static int in_choices(const api_param *p, const char *s) {
    for (size_t i = 0; p->choices[i]; i++)
        if (strcmp(p->choices[i], s) == 0) return 1;
    return 0;
}

static void apply_default(const api_param *p, api_value *v) {
    memset(v, 0, sizeof *v);
    if (p->flags & API_P_DEFAULT) {
        v->i = p->dflt;
        v->s = p->str_dflt;
    } else {
        v->is_null = 1;
    }
}

/* ------------------------------------------------------------------ path and query */

static const char *BOOL_TRUE[] = {"true", "1", "yes", "on", "t", "y", NULL};
static const char *BOOL_FALSE[] = {"false", "0", "no", "off", "f", "n", NULL};

static int word_in(const char *s, const char **set) {
    for (size_t i = 0; set[i]; i++)
        if (strcasecmp(s, set[i]) == 0) return 1;
    return 0;
}

static void parse_text_value(const api_param *p, const char *text, api_value *v,
                             json_t *errors) {
    char msg[160];
    v->present = 1;
    v->is_null = 0;
    switch (p->type) {
    case API_T_INT:
        if (api_parse_int64(text, &v->i) != 0) {
            json_array_append_new(errors,
                api_validation_error("int_parsing", p->in, p->name,
                                     "Input should be a valid integer, unable to parse string "
                                     "as an integer", jx_string(text), NULL));
            return;
        }
        check_bounds(p, v->i, jx_string(text), errors);
        return;
    case API_T_BOOL:
        if (word_in(text, BOOL_TRUE)) v->i = 1;
        else if (word_in(text, BOOL_FALSE)) v->i = 0;
        else
            json_array_append_new(errors,
                api_validation_error("bool_parsing", p->in, p->name,
                                     "Input should be a valid boolean, unable to interpret input",
                                     jx_string(text), NULL));
        return;
    case API_T_ENUM:
        if (!in_choices(p, text)) {
            json_t *ctx = choices_ctx(p, msg, sizeof msg);
            json_array_append_new(errors, api_validation_error("literal_error", p->in, p->name,
                                                               msg, jx_string(text), ctx));
            return;
        }
        v->s = text;
        return;
    case API_T_TIME:
        if (iso8601_parse(text, &v->i) != 0)
            json_array_append_new(errors,
                api_validation_error("datetime_parsing", p->in, p->name,
                                     "Input should be a valid datetime (ISO 8601)",
                                     jx_string(text), NULL));
        return;
    case API_T_STR:
        if ((p->flags & API_P_MAX) && strlen(text) > (size_t)p->max) {
            snprintf(msg, sizeof msg, "String should have at most %lld characters",
                     (long long)p->max);
            json_array_append_new(errors,
                api_validation_error("string_too_long", p->in, p->name, msg, jx_string(text),
                                     json_pack("{sI}", "max_length", (json_int_t)p->max)));
            return;
        }
        if ((p->flags & API_P_MIN) && strlen(text) < (size_t)p->min) {
            snprintf(msg, sizeof msg, "String should have at least %lld characters",
                     (long long)p->min);
            json_array_append_new(errors,
                api_validation_error("string_too_short", p->in, p->name, msg, jx_string(text),
                                     json_pack("{sI}", "min_length", (json_int_t)p->min)));
            return;
        }
        v->s = text;
        return;
    }
}

void api_parse_params(api_req *r, api_value *vals, json_t *errors) {
    const api_param *const *ps = r->route ? r->route->params : NULL;
    size_t seg = 0;
    for (size_t i = 0; ps && ps[i] && i < API_MAX_PARAMS; i++) {
        const api_param *p = ps[i];
        const char *text;
        if (strcmp(p->in, "path") == 0) text = seg < r->nsegs ? r->segs[seg++] : NULL;
        else text = api_query(r, p->name);
        apply_default(p, &vals[i]);
        if (text) parse_text_value(p, text, &vals[i], errors);
    }
}

/* ------------------------------------------------------------------ JSON body */

static void body_type_error(const api_param *p, const char *type, const char *msg,
                            json_t *input, json_t *errors) {
    json_array_append_new(errors, api_validation_error(type, "body", p->name, msg,
                                                       json_incref(input), NULL));
}

static void parse_json_int(const api_param *p, json_t *j, api_value *v, json_t *errors) {
    if (json_is_integer(j)) {
        v->i = json_integer_value(j);
        check_bounds(p, v->i, json_incref(j), errors);
        return;
    }
    if (!json_is_real(j)) {
        body_type_error(p, "int_type", "Input should be a valid integer", j, errors);
        return;
    }
    double d = json_real_value(j);
    if (d != floor(d)) {
        body_type_error(p, "int_from_float",
                        "Input should be a valid integer, got a number with a fractional part",
                        j, errors);
        return;
    }
    /* Integral reals beyond int64 are clamped: the bounds then report them. */
    v->i = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
    check_bounds(p, v->i, json_incref(j), errors);
}

static void parse_json_value(const api_param *p, json_t *j, api_value *v, json_t *errors) {
    char msg[160];
    v->present = 1;
    v->is_null = 0;
    if (json_is_null(j) && (p->flags & API_P_NULLABLE)) {
        v->is_null = 1;
        return;
    }
    switch (p->type) {
    case API_T_INT:
        parse_json_int(p, j, v, errors);
        return;
    case API_T_BOOL:
        if (json_is_boolean(j)) v->i = json_is_true(j);
        else body_type_error(p, "bool_type", "Input should be a valid boolean", j, errors);
        return;
    case API_T_ENUM:
        if (json_is_string(j) && in_choices(p, json_string_value(j))) {
            v->s = json_string_value(j);
        } else {
            json_t *ctx = choices_ctx(p, msg, sizeof msg);
            json_array_append_new(errors, api_validation_error("literal_error", "body", p->name,
                                                               msg, json_incref(j), ctx));
        }
        return;
    case API_T_STR:
        if (json_is_string(j)) v->s = json_string_value(j);
        else body_type_error(p, "string_type", "Input should be a valid string", j, errors);
        return;
    case API_T_TIME:
        if (json_is_string(j) && iso8601_parse(json_string_value(j), &v->i) == 0) return;
        body_type_error(p, "datetime_parsing", "Input should be a valid datetime (ISO 8601)", j,
                        errors);
        return;
    }
}

json_t *api_parse_body(api_req *r, api_value *vals, json_t *errors) {
    const api_param *const *ps = r->route->body;
    for (size_t i = 0; ps && ps[i] && i < API_MAX_PARAMS; i++) apply_default(ps[i], &vals[i]);
    if (r->body.len == 0) {
        json_array_append_new(errors, api_validation_error("missing", "body", NULL,
                                                           "Field required", NULL, NULL));
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(r->body.data, r->body.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                             &jerr);
    if (!doc) {
        json_t *loc = json_pack("[sI]", "body", (json_int_t)jerr.position);
        /* jansson quotes the bytes near the error, possibly cut inside a UTF-8 sequence:
         * jx_string repairs them (with "s", json_pack would fail and the malformed body
         * would pass as one without errors). */
        json_t *e = json_pack("{sssosssos{so}}", "type", "json_invalid", "loc", loc, "msg",
                              "body: JSON decode error", "input", json_object(), "ctx", "error",
                              jx_string(jerr.text));
        json_array_append_new(errors, e);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_array_append_new(errors,
            api_validation_error("model_attributes_type", "body", NULL,
                                 "Input should be a valid dictionary or object to extract "
                                 "fields from", doc, NULL));
        return NULL;
    }
    for (size_t i = 0; ps && ps[i] && i < API_MAX_PARAMS; i++) {
        json_t *j = json_object_get(doc, ps[i]->name);
        if (j) parse_json_value(ps[i], j, &vals[i], errors);
        else if (ps[i]->flags & API_P_REQUIRED)
            json_array_append_new(errors, api_validation_error("missing", "body", ps[i]->name,
                                                               "Field required", NULL, NULL));
    }
    return doc;
}

int api_parse_body_or_reply(api_req *r, api_value *vals, json_t **doc) {
    json_t *errors = json_array();
    *doc = api_parse_body(r, vals, errors);
    if (json_array_size(errors)) {
        json_decref(*doc);
        *doc = NULL;
        api_reply_validation(r, errors);
        return -1;
    }
    json_decref(errors);
    return 0;
}

int api_parse_or_reply(api_req *r, api_value *v) {
    json_t *errors = json_array();
    api_parse_params(r, v, errors);
    if (json_array_size(errors)) {
        api_reply_validation(r, errors);
        return -1;
    }
    json_decref(errors);
    return 0;
}

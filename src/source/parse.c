/* Parsing conversations from JSONL objects and Intercom JSON, with errors that name
 * the field. Strings are taken as jansson gives them (valid UTF-8: jansson rejects
 * invalid UTF-8 while parsing, which the importer reports with the line). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source/source.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return -1;
}

/* A string field that must not contain NUL (the loader allows NUL so that we can say
 * which field had one instead of failing the whole line). */
static int get_string(const json_t *obj, const char *key, const char *where, int required,
                      size_t max_bytes, const char **out, char *err, size_t len) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required) return fail(err, len, "%s%s: missing", where, key);
        return 0;
    }
    if (!json_is_string(v)) return fail(err, len, "%s%s: expected a string", where, key);
    size_t n = json_string_length(v);
    if (strlen(json_string_value(v)) != n)
        return fail(err, len, "%s%s: contains a NUL byte", where, key);
    if (max_bytes && n > max_bytes)
        return fail(err, len, "%s%s: %zu bytes, the limit is %zu", where, key, n, max_bytes);
    *out = json_string_value(v);
    return 0;
}

/* An id given as a string or an integer (Intercom ids are numeric-looking strings,
 * some exports use numbers). */
static int get_id(const json_t *obj, char **out, char *err, size_t len) {
    json_t *v = json_object_get(obj, "id");
    if (!v || json_is_null(v)) return fail(err, len, "id: missing");
    if (json_is_integer(v)) {
        *out = xasprintf("%lld", (long long)json_integer_value(v));
        return 0;
    }
    const char *s;
    if (get_string(obj, "id", "", 1, SOURCE_MAX_ID_BYTES, &s, err, len)) return -1;
    size_t n = strlen(s);
    while (n && (s[0] == ' ' || s[0] == '\t')) s++, n--;
    if (n == 0) return fail(err, len, "id: empty");
    *out = xstrdup(s);
    return 0;
}

/* created_at as ISO-8601 text or unix seconds. */
static int get_time(const json_t *obj, const char *key, int required, int64_t *out,
                    char *err, size_t len) {
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (!v || json_is_null(v)) {
        if (required) return fail(err, len, "%s: missing", key);
        return 0;
    }
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        /* Range-checked before the conversion: a double beyond int64 does not convert
         * (undefined behaviour; found by tests/fuzz/fuzz_intercom). */
        double d = json_real_value(v);
        if (!(d >= 0 && d <= 253402300799.0))
            return fail(err, len, "%s: %g is out of range (expected unix seconds)", key, d);
        *out = (int64_t)d;
    } else if (json_is_string(v)) {
        if (iso8601_parse(json_string_value(v), out) != 0)
            return fail(err, len, "%s: \"%.40s\" is not an ISO-8601 date-time", key,
                        json_string_value(v));
    } else {
        return fail(err, len, "%s: expected an ISO-8601 string or unix seconds", key);
    }
    /* Years 1970..9999: anything else is a unit mistake (milliseconds) or garbage. */
    if (*out < 0 || *out > 253402300799LL)
        return fail(err, len, "%s: %lld is out of range (expected unix seconds)", key,
                    (long long)*out);
    return 0;
}

static const char *const JSONL_AUTHORS[] = {"customer", "support", "bot", "note", NULL};

int source_parse_jsonl(const json_t *obj, conversation *c, char *err, size_t len) {
    conv_init(c);
    if (!json_is_object(obj)) return fail(err, len, "expected a JSON object");
    if (get_id(obj, &c->id, err, len)) goto bad;
    if (get_time(obj, "created_at", 1, &c->created_at, err, len)) goto bad;
    if (get_time(obj, "updated_at", 0, &c->updated_at, err, len)) goto bad;
    const char *url, *subject;
    if (get_string(obj, "source_url", "", 0, 8192, &url, err, len) ||
        get_string(obj, "subject", "", 0, 8192, &subject, err, len))
        goto bad;
    c->source_url = xstrdup(url);
    c->subject = xstrdup(subject);
    json_t *msgs = json_object_get(obj, "messages");
    if (!msgs) {
        fail(err, len, "messages: missing");
        goto bad;
    }
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        fail(err, len, "messages: expected a non-empty array");
        goto bad;
    }
    if (json_array_size(msgs) > SOURCE_MAX_MESSAGES) {
        fail(err, len, "messages: %zu messages, the limit is %d", json_array_size(msgs),
             SOURCE_MAX_MESSAGES);
        goto bad;
    }
    json_t *tags = json_object_get(obj, "tags");
    if (tags && !json_is_null(tags)) {
        if (!json_is_array(tags)) {
            fail(err, len, "tags: expected an array of strings");
            goto bad;
        }
        size_t i;
        json_t *t;
        json_array_foreach(tags, i, t) {
            if (!json_is_string(t)) {
                fail(err, len, "tags[%zu]: expected a string", i);
                goto bad;
            }
            conv_add_tag(c, json_string_value(t));
        }
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char where[48];
        snprintf(where, sizeof where, "messages[%zu].", i);
        if (!json_is_object(m)) {
            fail(err, len, "messages[%zu]: expected an object", i);
            goto bad;
        }
        const char *author, *body;
        if (get_string(m, "author", where, 1, 64, &author, err, len) ||
            get_string(m, "body", where, 1, SOURCE_MAX_BODY_BYTES, &body, err, len))
            goto bad;
        int ai = -1;
        for (int k = 0; JSONL_AUTHORS[k]; k++)
            if (!strcmp(JSONL_AUTHORS[k], author)) ai = k;
        if (ai < 0) {
            fail(err, len, "%sauthor: \"%.20s\" is not one of customer, support, bot, note",
                 where, author);
            goto bad;
        }
        if (i == 0) {
            /* The opening message plays Intercom's `source`. */
            c->source_body = xstrdup(body);
            c->source_author_type = xstrdup(ai == 0 ? "user" : author);
            c->delivered_as = xstrdup(ai == 0 ? "customer_initiated" : "admin_initiated");
        } else {
            conv_add_part(c, author_from_type(author), author, ai == 3 ? "note" : "comment", body);
        }
    }
    c->source_type = xstrdup("jsonl");
    return 0;
bad:
    conv_free(c);
    return -1;
}

static const char *author_type_of(const json_t *part) {
    const char *t = jx_str(jx_obj(part, "author"), "type");
    return t ? t : NULL;
}

int source_parse_intercom(const json_t *obj, conversation *c, char *err, size_t len) {
    conv_init(c);
    if (!json_is_object(obj)) return fail(err, len, "expected a JSON object");
    if (get_id(obj, &c->id, err, len)) goto bad;
    if (get_time(obj, "created_at", 1, &c->created_at, err, len)) goto bad;
    if (get_time(obj, "updated_at", 0, &c->updated_at, err, len)) goto bad;
    json_t *src = json_object_get(obj, "source");
    if (!json_is_object(src)) {
        fail(err, len, "source: missing or not an object");
        goto bad;
    }
    const char *type, *delivered, *subject, *url, *body;
    if (get_string(src, "type", "source.", 0, 64, &type, err, len) ||
        get_string(src, "delivered_as", "source.", 0, 64, &delivered, err, len) ||
        get_string(src, "subject", "source.", 0, 8192, &subject, err, len) ||
        get_string(src, "url", "source.", 0, 8192, &url, err, len) ||
        get_string(src, "body", "source.", 0, SOURCE_MAX_BODY_BYTES, &body, err, len))
        goto bad;
    c->source_type = xstrdup(type ? type : "conversation");
    c->delivered_as = xstrdup(delivered);
    c->subject = xstrdup(subject);
    c->source_url = xstrdup(url);
    c->source_body = xstrdup(body ? body : "");
    json_t *author = json_object_get(src, "author");
    if (json_is_object(author)) {
        const char *at, *aid, *email;
        if (get_string(author, "type", "source.author.", 0, 64, &at, err, len) ||
            get_string(author, "email", "source.author.", 0, 512, &email, err, len))
            goto bad;
        json_t *idv = json_object_get(author, "id");
        aid = json_is_string(idv) ? json_string_value(idv) : NULL;
        c->source_author_type = xstrdup(at);
        c->contact_id = xstrdup(aid);
        c->contact_email = xstrdup(email);
    }
    json_t *contacts = jx_arr(jx_obj(obj, "contacts"), "contacts");
    if (contacts && json_array_size(contacts) > 0) {
        json_t *ext = json_object_get(json_array_get(contacts, 0), "external_id");
        if (json_is_string(ext)) c->external_id = xstrdup(json_string_value(ext));
        else if (json_is_integer(ext))
            c->external_id = xasprintf("%lld", (long long)json_integer_value(ext));
    }
    json_t *tags = jx_arr(jx_obj(obj, "tags"), "tags");
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t) {
        const char *name = jx_str(t, "name");
        if (name) conv_add_tag(c, name);
    }
    json_t *parts = jx_arr(jx_obj(obj, "conversation_parts"), "conversation_parts");
    if (parts && json_array_size(parts) > SOURCE_MAX_MESSAGES) {
        fail(err, len, "conversation_parts: %zu parts, the limit is %d", json_array_size(parts),
             SOURCE_MAX_MESSAGES);
        goto bad;
    }
    json_array_foreach(parts, i, t) {
        char where[64];
        snprintf(where, sizeof where, "conversation_parts[%zu].", i);
        if (!json_is_object(t)) {
            fail(err, len, "conversation_parts[%zu]: expected an object", i);
            goto bad;
        }
        const char *ptype, *pbody;
        if (get_string(t, "part_type", where, 0, 64, &ptype, err, len) ||
            get_string(t, "body", where, 0, SOURCE_MAX_BODY_BYTES, &pbody, err, len))
            goto bad;
        const char *atype = author_type_of(t);
        enum author a = ptype && !strcmp(ptype, "note") ? AUTHOR_NOTE : author_from_type(atype);
        conv_add_part(c, a, atype, ptype ? ptype : "comment", pbody);
    }
    return 0;
bad:
    conv_free(c);
    return -1;
}

int source_parse_any(const json_t *obj, conversation *c, char *err, size_t len) {
    if (!json_is_object(obj)) {
        conv_init(c);
        return fail(err, len, "expected a JSON object");
    }
    const char *type = jx_str(obj, "type");
    int intercom = json_object_get(obj, "source") || json_object_get(obj, "conversation_parts") ||
                   (type && !strcmp(type, "conversation"));
    if (intercom && !json_object_get(obj, "messages"))
        return source_parse_intercom(obj, c, err, len);
    return source_parse_jsonl(obj, c, err, len);
}

#include "util/jsonx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"
#include "util/utf8.h"

const char *jx_str(const json_t *obj, const char *key) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int64_t jx_int(const json_t *obj, const char *key, int64_t dflt) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (json_is_integer(v)) return (int64_t)json_integer_value(v);
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9e15) return (int64_t)d;
    }
    return dflt;
}

double jx_num(const json_t *obj, const char *key, double dflt) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : dflt;
}

int jx_bool(const json_t *obj, const char *key, int dflt) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

json_t *jx_arr(const json_t *obj, const char *key) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_array(v) ? v : NULL;
}

json_t *jx_obj(const json_t *obj, const char *key) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_object(v) ? v : NULL;
}

char *jx_dump(const json_t *v) {
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (!s) return xstrdup("null");
    /* jansson allocates with malloc by default; hand back our own copy so callers
     * free with free() regardless of jansson's allocator settings. */
    char *d = xstrdup(s);
    free(s);
    return d;
}

json_t *jx_string(const char *s) {
    if (!s) s = "";
    json_t *v = json_string(s);
    if (v) return v;
    /* Invalid UTF-8: replace each bad byte with U+FFFD. */
    char *fixed = utf8_repair(s, strlen(s), NULL);
    v = json_string(fixed);
    free(fixed);
    return v ? v : json_string("");
}

json_t *jx_string_or_null(const char *s) { return s ? jx_string(s) : json_null(); }

/* API tokens: parsing them from the environment's forms (one token, a "role:token"
 * list, a file of "role token" lines), keeping only their SHA-256 digests, and telling
 * which roles a presented bearer token grants.
 *
 * Why digests: the server never needs a token back, so a core dump or a stray debug
 * print of the server's memory does not hand one out; and comparing fixed-size digests
 * keeps the token's length out of the comparison's timing. Every configured digest is
 * compared, without an early exit, so the time taken does not say which token (if any)
 * matched or how much of it did. No message here or elsewhere quotes a token: parse
 * errors name the position (item N, file:line), never the text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "api/api.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/mem.h"

typedef struct api_token {
    uint8_t sha[32];
    unsigned roles; /* API_ROLE_* bits this token grants */
} api_token;

struct api_tokens {
    api_token *v;
    size_t n, cap;
};

api_tokens *api_tokens_new(void) { return xcalloc(1, sizeof(api_tokens)); }

void api_tokens_free(api_tokens *t) {
    if (!t) return;
    /* Digests only, but nothing of them need outlive the server. */
    if (t->v) memset(t->v, 0, t->cap * sizeof *t->v);
    free(t->v);
    free(t);
}

/* What a role name grants: operate includes read, and both include metrics, so one
 * token per client is enough. 0 for an unknown name. */
static unsigned role_grants(const char *name, size_t len) {
    if (len == 4 && strncasecmp(name, "read", 4) == 0) return API_ROLE_READ | API_ROLE_METRICS;
    if (len == 7 && strncasecmp(name, "operate", 7) == 0)
        return API_ROLE_READ | API_ROLE_OPERATE | API_ROLE_METRICS;
    if (len == 7 && strncasecmp(name, "metrics", 7) == 0) return API_ROLE_METRICS;
    return 0;
}

static void digest(const char *token, size_t len, uint8_t out[32]) {
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, token, len);
    sha256_final(&c, out);
}

/* A token is printable ASCII without spaces: what fits in "Authorization: Bearer X"
 * unchanged (a space or control character would be trimmed or split on the way). */
static int valid_token(const char *token, size_t len) {
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f) return 0;
    return 1;
}

static int add(api_tokens *t, unsigned roles, const char *token, size_t len) {
    if (!valid_token(token, len)) return -1;
    xgrow((void **)&t->v, &t->cap, t->n + 1, sizeof *t->v);
    digest(token, len, t->v[t->n].sha);
    t->v[t->n].roles = roles;
    t->n++;
    return 0;
}

int api_tokens_add(api_tokens *t, const char *role, const char *token, char *err,
                   size_t errlen) {
    unsigned roles = role_grants(role, strlen(role));
    if (!roles) {
        snprintf(err, errlen, "unknown role \"%s\" (read, operate or metrics)", role);
        return -1;
    }
    if (add(t, roles, token, strlen(token)) != 0) {
        snprintf(err, errlen, "the %s token is empty or holds spaces or control characters",
                 role);
        return -1;
    }
    return 0;
}

/* One "ROLE<sep>TOKEN" item (sep ':' in lists, blanks in files), surrounding blanks
 * already trimmed. */
static int add_item(api_tokens *t, const char *item, size_t len, const char *seps) {
    size_t r = strcspn(item, seps);
    if (r >= len) return -1;
    unsigned roles = role_grants(item, r);
    size_t k = r;
    while (k < len && strchr(seps, item[k])) k++;
    if (!roles) return -1;
    return add(t, roles, item + k, len - k);
}

static const char ITEM_FORM[] = "ROLE is read, operate or metrics";

int api_tokens_parse_list(api_tokens *t, const char *list, const char *what, char *err,
                          size_t errlen) {
    const char *p = list;
    for (int item = 1;; item++) {
        const char *end = strchrnul(p, ',');
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        if (b > a && add_item(t, a, (size_t)(b - a), ":") != 0) {
            snprintf(err, errlen, "%s: item %d: expected ROLE:TOKEN (%s; the token printable, "
                     "no spaces)", what, item, ITEM_FORM);
            return -1;
        }
        if (!*end) break;
        p = end + 1;
    }
    return 0;
}

int api_tokens_load_file(api_tokens *t, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077))
        log_warn("%s: readable by other users (chmod 600 it)", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                       line[len - 1] == '\t'))
            len--;
        size_t i = 0;
        while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i == len || line[i] == '#') continue;
        if (add_item(t, line + i, len - i, " \t") != 0) {
            snprintf(err, errlen, "%s:%ld: expected \"ROLE TOKEN\" (%s; the token printable, no "
                     "spaces)", path, lineno, ITEM_FORM);
            rc = -1;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error after line %ld", path, lineno);
        rc = -1;
    }
    if (line) memset(line, 0, cap); /* the last line read held a token */
    free(line);
    fclose(f);
    return rc;
}

unsigned api_tokens_check(const api_tokens *t, const char *token) {
    if (!t || !token) return 0;
    uint8_t got[32];
    digest(token, strlen(token), got);
    unsigned roles = 0;
    for (size_t k = 0; k < t->n; k++) {
        volatile uint8_t diff = 0;
        for (size_t i = 0; i < sizeof got; i++) diff |= (uint8_t)(got[i] ^ t->v[k].sha[i]);
        /* 1 when diff is 0, without a branch: (0 - 1) >> 8 has its low bit set, (1..255 -
         * 1) >> 8 does not. */
        unsigned eq = (((unsigned)diff - 1u) >> 8) & 1u;
        roles |= t->v[k].roles & (0u - eq);
    }
    return roles;
}

unsigned api_tokens_configured(const api_tokens *t) {
    unsigned roles = 0;
    for (size_t k = 0; t && k < t->n; k++) roles |= t->v[k].roles;
    return roles;
}

size_t api_tokens_count(const api_tokens *t) { return t ? t->n : 0; }

/* Importing files of conversations into the store. JSONL is streamed line by line (any
 * size, bounded memory); a whole-file JSON document (Intercom export: one object, an
 * array, or a conversation.list envelope) is loaded at once up to
 * SOURCE_MAX_DOCUMENT_BYTES. Conversations are written in transactions of IMPORT_BATCH;
 * a malformed one is reported with its line (or array index) and skipped, the rest of
 * the file still imports. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "source/source.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define IMPORT_BATCH 500

int import_conversation(store *st, const conversation *c, const char *source,
                        import_stats *stats) {
    stats->read++;
    char reason[128];
    enum quality_verdict v = conv_quality(c, reason, sizeof reason);
    if (v != QUALITY_OK) {
        stats->filtered++;
        stats->filtered_by[v]++;
        return 0;
    }
    conv_record r;
    conv_prepare(c, source, &r);
    enum upsert_outcome out;
    int rc = store_conv_upsert(st, &r, wall_unix(), &out);
    conv_record_free(&r);
    if (rc) return rc;
    if (out == UPSERT_INSERTED) stats->inserted++;
    else if (out == UPSERT_UPDATED) stats->updated++;
    else stats->unchanged++;
    return 0;
}

typedef struct importer {
    store *st;
    const char *path;
    import_stats *stats;
    import_report_fn report;
    void *ctx;
    size_t in_batch;
    char *err;
    size_t errlen;
} importer;

static void reject(importer *im, int64_t line, const char *msg) {
    im->stats->rejected++;
    if (im->report) im->report(im->ctx, im->path, line, msg);
}

static int begin_if_needed(importer *im) {
    if (im->in_batch > 0) return 0;
    if (store_begin(im->st) != STORE_OK) {
        snprintf(im->err, im->errlen, "%s", store_errmsg(im->st));
        return -1;
    }
    return 0;
}

static int commit_batch(importer *im) {
    if (im->in_batch == 0) return 0;
    im->in_batch = 0;
    if (store_commit(im->st) != STORE_OK) {
        snprintf(im->err, im->errlen, "%s", store_errmsg(im->st));
        return -1;
    }
    return 0;
}

/* Imports one parsed JSON value; line is the JSONL line or 0, index the array index. */
static int import_value(importer *im, const json_t *v, int64_t line, int64_t index) {
    conversation c;
    char err[512];
    if (source_parse_any(v, &c, err, sizeof err) != 0) {
        char msg[600];
        if (line) snprintf(msg, sizeof msg, "%s", err);
        else snprintf(msg, sizeof msg, "conversation #%lld: %s", (long long)index, err);
        reject(im, line, msg);
        return 0;
    }
    if (begin_if_needed(im)) {
        conv_free(&c);
        return -1;
    }
    int rc = import_conversation(im->st, &c, json_object_get(v, "messages") ? "jsonl" : "intercom",
                                 im->stats);
    conv_free(&c);
    if (rc) {
        snprintf(im->err, im->errlen, "%s", store_errmsg(im->st));
        store_rollback(im->st);
        im->in_batch = 0;
        return -1;
    }
    if (++im->in_batch >= IMPORT_BATCH) return commit_batch(im);
    return 0;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* JSONL: one JSON object per line. */
static int import_jsonl(importer *im, FILE *f) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t lineno = 0;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (is_blank(line, (size_t)n)) continue;
        if ((size_t)n > SOURCE_MAX_LINE_BYTES) {
            char msg[128];
            snprintf(msg, sizeof msg, "line is %zd bytes, the limit is %u", n,
                     SOURCE_MAX_LINE_BYTES);
            reject(im, lineno, msg);
            continue;
        }
        json_error_t je;
        /* JSON_ALLOW_NUL lets the parser name the field holding a NUL byte. */
        json_t *v = json_loadb(line, (size_t)n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
        if (!v) {
            char msg[300];
            snprintf(msg, sizeof msg, "invalid JSON at column %d: %s", je.column, je.text);
            reject(im, lineno, msg);
            continue;
        }
        rc = import_value(im, v, lineno, 0);
        json_decref(v);
    }
    int read_error = ferror(f);
    free(line);
    if (rc == 0) rc = commit_batch(im);
    if (rc == 0 && read_error) {
        snprintf(im->err, im->errlen, "%s: read error after line %lld", im->path,
                 (long long)lineno);
        rc = -1;
    }
    return rc;
}

/* A whole JSON document: an array, a list envelope, or one conversation. */
static int import_document(importer *im, FILE *f) {
    json_error_t je;
    json_t *doc = json_loadf(f, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(im->err, im->errlen, "%s:%d: invalid JSON: %s", im->path, je.line, je.text);
        return -1;
    }
    json_t *list = json_is_array(doc) ? doc : json_object_get(doc, "conversations");
    int rc = 0;
    if (json_is_array(list)) {
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
            if ((rc = import_value(im, v, 0, (int64_t)i)) != 0) break;
        }
    } else if (json_is_object(doc) && !json_object_get(doc, "conversations")) {
        rc = import_value(im, doc, 0, 0);
    } else {
        snprintf(im->err, im->errlen,
                 "%s: expected JSONL, a conversation object, an array of conversations, or a "
                 "conversation.list envelope with \"conversations\"",
                 im->path);
        rc = -1;
    }
    json_decref(doc);
    if (rc == 0) rc = commit_batch(im);
    return rc;
}

/* JSONL when the first non-blank line is a complete JSON object by itself; otherwise a
 * whole-file document (pretty-printed JSON spans lines). */
static int looks_like_jsonl(FILE *f) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int jsonl = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (is_blank(line, (size_t)n)) continue;
        size_t i = 0;
        while (line[i] == ' ' || line[i] == '\t') i++;
        if (line[i] == '{') {
            json_t *v = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, NULL);
            jsonl = v != NULL || (size_t)n > 4096; /* a huge first line is JSONL */
            json_decref(v);
        }
        break;
    }
    free(line);
    rewind(f);
    return jsonl;
}

int import_file(store *st, const char *path, import_stats *stats, import_report_fn report,
                void *ctx, char *err, size_t errlen) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (f != stdin && fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s: is a directory", path);
        fclose(f);
        return -1;
    }
    importer im = {st, path, stats, report, ctx, 0, err, errlen};
    int rc;
    if (f == stdin || looks_like_jsonl(f)) {
        rc = import_jsonl(&im, f);
    } else if (fstat(fileno(f), &sb) == 0 && (uint64_t)sb.st_size > SOURCE_MAX_DOCUMENT_BYTES) {
        snprintf(err, errlen, "%s: a %lld-byte JSON document is over the %u-byte limit; use JSONL"
                 " for large imports", path, (long long)sb.st_size, SOURCE_MAX_DOCUMENT_BYTES);
        rc = -1;
    } else {
        rc = import_document(&im, f);
    }
    if (f != stdin) fclose(f);
    return rc;
}

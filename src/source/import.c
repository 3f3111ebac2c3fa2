/* Importing files of conversations into the store. JSONL (stdin, a .jsonl/.ndjson name,
 * or a file whose first line is a complete object) is streamed line by line (any size,
 * bounded memory), each bad line reported with its own number; a whole-file JSON
 * document (Intercom export: one object, an array, or a conversation.list envelope) is
 * loaded at once up to SOURCE_MAX_DOCUMENT_BYTES. Conversations are written in
 * transactions of IMPORT_BATCH; a malformed one is reported with its line (or array
 * index) and skipped, the rest of the file still imports. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* Reads one line (without its '\n') into *line, keeping at most limit bytes: the rest
 * of a longer line is read and dropped, so memory stays bounded whatever the file
 * holds. *total is the line's whole length. -1 at the end of the file. */
static int read_line_bounded(FILE *f, char **line, size_t *cap, size_t *len, size_t *total,
                             size_t limit) {
    *len = *total = 0;
    int c = EOF, any = 0;
    while ((c = getc_unlocked(f)) != EOF) {
        any = 1;
        if (c == '\n') break;
        if (*len <= limit) {
            if (*len + 1 >= *cap) {
                size_t ncap = *cap ? *cap * 2 : 4096;
                if (ncap > limit + 2) ncap = limit + 2;
                *line = xrealloc(*line, ncap);
                *cap = ncap;
            }
            (*line)[(*len)++] = (char)c;
        }
        (*total)++;
    }
    if (!any) return -1;
    if (*line) (*line)[*len] = 0;
    return 0;
}

/* JSONL: one JSON object per line. */
static int import_jsonl(importer *im, FILE *f) {
    char *line = NULL;
    size_t cap = 0, len, n;
    int64_t lineno = 0;
    int rc = 0;
    while (rc == 0 && read_line_bounded(f, &line, &cap, &len, &n, SOURCE_MAX_LINE_BYTES) == 0) {
        lineno++;
        if (is_blank(line, len)) continue;
        if (n > SOURCE_MAX_LINE_BYTES) {
            char msg[128];
            snprintf(msg, sizeof msg, "line is %zu bytes, the limit is %u", n,
                     SOURCE_MAX_LINE_BYTES);
            reject(im, lineno, msg);
            continue;
        }
        json_error_t je;
        /* JSON_ALLOW_NUL lets the parser name the field holding a NUL byte. */
        json_t *v = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
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

/* A whole JSON document: an array, a list envelope, or one conversation. maybe_jsonl:
 * the first line starts an object that does not end on it and the second line is a
 * complete object. That is a pretty-printed envelope holding one conversation when the
 * file parses as a whole, and JSONL whose first record is broken when it does not: then
 * it is read line by line, so the broken record is reported as line 1 and the rest is
 * imported. */
static int import_document(importer *im, FILE *f, int maybe_jsonl) {
    json_error_t je;
    json_t *doc = json_loadf(f, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!doc && maybe_jsonl) {
        rewind(f);
        return import_jsonl(im, f);
    }
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

/* The first two non-blank lines of a file: whether each is a complete JSON object on its
 * own (a huge line counts as one: only JSONL has lines that long), and whether the first
 * starts like an object. The file is rewound. */
typedef struct sniffed {
    int first_object;   /* the first line starts with '{' */
    int first_complete; /* ... and is a whole JSON object by itself */
    int second_complete;
} sniffed;

static int line_is_object(const char *line, size_t n) {
    size_t i = 0;
    while (line[i] == ' ' || line[i] == '\t') i++;
    if (line[i] != '{') return 0;
    if (n > 4096) return 1;
    json_t *v = json_loadb(line, n, JSON_ALLOW_NUL, NULL);
    int ok = json_is_object(v);
    json_decref(v);
    return ok;
}

static sniffed sniff(FILE *f) {
    sniffed s = {0, 0, 0};
    char *line = NULL;
    size_t cap = 0, n, total;
    int seen = 0;
    while (seen < 2 &&
           read_line_bounded(f, &line, &cap, &n, &total, SOURCE_MAX_LINE_BYTES) == 0) {
        if (is_blank(line, n)) continue;
        if (seen++ == 0) {
            size_t i = 0;
            while (line[i] == ' ' || line[i] == '\t') i++;
            s.first_object = line[i] == '{';
            s.first_complete = line_is_object(line, n);
            if (!s.first_object) break; /* "[" or pretty-printed: a document */
        } else {
            s.second_complete = line_is_object(line, n);
        }
    }
    free(line);
    rewind(f);
    return s;
}

/* Named as JSONL by its extension: then every line is a record whatever the first one
 * looks like (a truncated first record must not turn the file into one document). */
static int has_jsonl_extension(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot && !strchr(dot, '/') && (strcasecmp(dot, ".jsonl") == 0 ||
                                        strcasecmp(dot, ".ndjson") == 0);
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
    /* JSONL when so named, or when the first non-blank line is a complete object by
     * itself; otherwise a whole-file document (pretty-printed JSON spans lines). */
    sniffed sn = {0, 0, 0};
    if (f != stdin && !has_jsonl_extension(path)) sn = sniff(f);
    int maybe_jsonl = sn.first_object && sn.second_complete;
    if (f == stdin || has_jsonl_extension(path) || sn.first_complete) {
        rc = import_jsonl(&im, f);
    } else if (fstat(fileno(f), &sb) == 0 && (uint64_t)sb.st_size > SOURCE_MAX_DOCUMENT_BYTES) {
        if (maybe_jsonl) { /* too large to be a document we would load: JSONL */
            rc = import_jsonl(&im, f);
        } else {
            snprintf(err, errlen, "%s: a %lld-byte JSON document is over the %u-byte limit; use"
                     " JSONL for large imports", path, (long long)sb.st_size,
                     SOURCE_MAX_DOCUMENT_BYTES);
            rc = -1;
        }
    } else {
        rc = import_document(&im, f, maybe_jsonl);
    }
    if (f != stdin) fclose(f);
    return rc;
}

/* The conversation model (conv.h): building and freeing parsed conversations,
 * preparing the stored record (stripped body, customer digest, transcript, support
 * replies, content hash) and the ingest quality filter. */
#include "text/conv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text/text.h"
#include "text/uchar.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/utf8.h"
#include "util/util.h"

#define TRANSCRIPT_SEPARATOR "\n\n"

/* ---- building and freeing ---------------------------------------------------- */

void conv_init(conversation *c) { memset(c, 0, sizeof *c); }

void conv_free(conversation *c) {
    if (!c) return;
    free(c->id);
    free(c->source_type);
    free(c->delivered_as);
    free(c->source_author_type);
    free(c->source_url);
    free(c->subject);
    free(c->contact_id);
    free(c->contact_email);
    free(c->external_id);
    for (size_t i = 0; i < c->ntags; i++) free(c->tags[i]);
    free(c->tags);
    free(c->source_body);
    for (size_t i = 0; i < c->nparts; i++) {
        free(c->parts[i].author_type);
        free(c->parts[i].part_type);
        free(c->parts[i].body);
    }
    free(c->parts);
    memset(c, 0, sizeof *c);
}

void conv_add_part(conversation *c, enum author author, const char *author_type,
                   const char *part_type, const char *body) {
    XGROW(c->parts, c->parts_cap, c->nparts + 1);
    conv_message *m = &c->parts[c->nparts++];
    m->author = author;
    m->author_type = xstrdup(author_type);
    m->part_type = xstrdup(part_type);
    m->body = xstrdup(body);
}

void conv_add_tag(conversation *c, const char *tag) {
    c->tags = xrealloc(c->tags, (c->ntags + 1) * sizeof *c->tags);
    c->tags[c->ntags++] = xstrdup(tag ? tag : "");
}

static int type_is_one_of(const char *type, const char *const *names, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strcasecmp(type, names[i]) == 0) return 1;
    return 0;
}

enum author author_from_type(const char *type) {
    static const char *const CUSTOMER[] = {"user", "lead", "contact", "customer"};
    static const char *const SUPPORT[] = {"admin", "support", "teammate"};
    static const char *const BOT[] = {"bot", "operator"};
    if (!type) return AUTHOR_OTHER;
    if (type_is_one_of(type, CUSTOMER, ARRAY_LEN(CUSTOMER))) return AUTHOR_CUSTOMER;
    if (type_is_one_of(type, SUPPORT, ARRAY_LEN(SUPPORT))) return AUTHOR_SUPPORT;
    if (type_is_one_of(type, BOT, ARRAY_LEN(BOT))) return AUTHOR_BOT;
    if (strcasecmp(type, "note") == 0) return AUTHOR_NOTE;
    return AUTHOR_OTHER;
}

void conv_record_free(conv_record *r) {
    if (!r) return;
    free(r->id);
    free(r->source);
    free(r->source_type);
    free(r->source_url);
    free(r->subject);
    free(r->contact_id);
    free(r->contact_email);
    free(r->external_id);
    free(r->tags_json);
    free(r->body);
    free(r->digest);
    free(r->transcript);
    free(r->support_text);
    memset(r, 0, sizeof *r);
}

void conv_record_copy(conv_record *dst, const conv_record *src) {
    *dst = *src; /* the numbers and content_hash */
    dst->id = xstrdup(src->id);
    dst->source = xstrdup(src->source);
    dst->source_type = xstrdup(src->source_type);
    dst->source_url = xstrdup(src->source_url);
    dst->subject = xstrdup(src->subject);
    dst->contact_id = xstrdup(src->contact_id);
    dst->contact_email = xstrdup(src->contact_email);
    dst->external_id = xstrdup(src->external_id);
    dst->tags_json = xstrdup(src->tags_json);
    dst->body = xstrdup(src->body);
    dst->digest = xstrdup(src->digest);
    dst->transcript = xstrdup(src->transcript);
    dst->support_text = xstrdup(src->support_text);
}

/* ---- preparing the record ------------------------------------------------------ */

/* A valid UTF-8 copy of s[0..len). */
static char *repaired_copy(const char *s, size_t len) { return utf8_repair(s, len, NULL); }

/* A valid UTF-8 copy of s; NULL stays NULL. */
static char *repaired_or_null(const char *s) { return s ? repaired_copy(s, strlen(s)) : NULL; }

static char *repaired_or_empty(const char *s) { return s ? repaired_or_null(s) : xstrdup(""); }

/* A thread message that counts as conversation text: a comment (JSONL and some
 * sources leave part_type out) that is not an internal note. Assignments, closes,
 * snoozes and notes carry no customer or support text. */
static int is_comment(const conv_message *m) {
    if (m->author == AUTHOR_NOTE) return 0;
    return !m->part_type || strcasecmp(m->part_type, "comment") == 0;
}

static int is_support(const conv_message *m) {
    return m->author == AUTHOR_SUPPORT || m->author == AUTHOR_BOT;
}

/* Stripped bodies of the comment parts (NULL for other parts), computed once and
 * shared by the digest, transcript and support text. */
static char **strip_comment_bodies(const conversation *c) {
    char **stripped = xcalloc(c->nparts ? c->nparts : 1, sizeof *stripped);
    for (size_t i = 0; i < c->nparts; i++)
        if (is_comment(&c->parts[i])) stripped[i] = html_to_text(c->parts[i].body);
    return stripped;
}

static char *make_digest(const conversation *c, char *const *stripped, const char *body) {
    const char **msgs = xcalloc(c->nparts ? c->nparts : 1, sizeof *msgs);
    size_t n = 0;
    for (size_t i = 0; i < c->nparts; i++)
        if (stripped[i] && stripped[i][0] && c->parts[i].author == AUTHOR_CUSTOMER)
            msgs[n++] = stripped[i];
    char *digest = build_customer_digest(body, msgs, n, DIGEST_MAX_CHARS);
    free(msgs);
    return digest;
}

static char ascii_upper(unsigned char ch) { return (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch); }
static char ascii_lower(unsigned char ch) { return (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch); }

/* "Customer", "Support", or the author type capitalised like Python's
 * str.capitalize() ("system" -> "System"; none -> "Unknown"). */
static void append_label(buf_t *b, const conv_message *m) {
    if (m->author == AUTHOR_CUSTOMER) {
        buf_puts(b, "Customer");
    } else if (is_support(m)) {
        buf_puts(b, "Support");
    } else if (!m->author_type || !m->author_type[0]) {
        buf_puts(b, "Unknown");
    } else {
        char *t = repaired_or_null(m->author_type);
        for (size_t i = 0; t[i]; i++) {
            unsigned char ch = (unsigned char)t[i];
            /* brackets and control characters would fake a message boundary */
            if (ch < 0x20 || ch == '[' || ch == ']') t[i] = '_';
            else if (ch < 0x80) t[i] = i == 0 ? ascii_upper(ch) : ascii_lower(ch);
        }
        buf_puts(b, t);
        free(t);
    }
}

/* Cuts an over-long transcript to TRANSCRIPT_MAX_CHARS characters, then back to the
 * start of the last message that still begins inside it, unless that would throw
 * away more than half. */
static void cut_transcript(buf_t *t) {
    if (utf8_count(t->data, t->len) <= TRANSCRIPT_MAX_CHARS) return;
    buf_truncate(t, utf8_offset_of(t->data, t->len, TRANSCRIPT_MAX_CHARS));
    for (size_t p = t->len; p >= 3; p--) {
        if (memcmp(t->data + p - 3, "\n\n[", 3) != 0) continue;
        size_t at = p - 3;
        if (utf8_count(t->data, at) > TRANSCRIPT_MAX_CHARS / 2) buf_truncate(t, at);
        break;
    }
}

static char *make_transcript(const conversation *c, char *const *stripped, const char *body) {
    buf_t t = BUF_INIT;
    if (body[0]) {
        buf_puts(&t, "[Customer]: ");
        buf_puts(&t, body);
    }
    for (size_t i = 0; i < c->nparts; i++) {
        if (!stripped[i] || !stripped[i][0]) continue;
        /* Past 4 bytes per allowed character the text already holds more than
         * TRANSCRIPT_MAX_CHARS characters: later messages cannot survive the cut. */
        if (t.len > 4 * (size_t)TRANSCRIPT_MAX_CHARS) break;
        if (t.len) buf_puts(&t, TRANSCRIPT_SEPARATOR);
        buf_putc(&t, '[');
        append_label(&t, &c->parts[i]);
        buf_puts(&t, "]: ");
        buf_puts(&t, stripped[i]);
    }
    if (t.len) cut_transcript(&t);
    return buf_detach(&t);
}

/* "[Support 1]: ..." for the first SUPPORT_MAX_MESSAGES support/bot replies;
 * *count receives the number of all of them. */
static char *make_support_text(const conversation *c, char *const *stripped, int *count) {
    buf_t b = BUF_INIT;
    int seen = 0;
    for (size_t i = 0; i < c->nparts; i++) {
        if (!stripped[i] || !stripped[i][0] || !is_support(&c->parts[i])) continue;
        seen++;
        if (seen > SUPPORT_MAX_MESSAGES) continue;
        char *msg = xstrdup(stripped[i]);
        text_truncate_chars(msg, SUPPORT_MAX_CHARS);
        text_trim(msg);
        if (b.len) buf_puts(&b, TRANSCRIPT_SEPARATOR);
        buf_printf(&b, "[Support %d]: %s", seen, msg);
        free(msg);
    }
    *count = seen;
    return buf_detach(&b);
}

static char *make_tags_json(const conversation *c) {
    json_t *arr = json_array();
    if (!arr) return xstrdup("[]");
    for (size_t i = 0; i < c->ntags; i++) json_array_append_new(arr, jx_string(c->tags[i]));
    char *s = jx_dump(arr);
    json_decref(arr);
    return s;
}

/* One field of the content hash: "<byte length>:<bytes>" (or "-" for NULL) and a
 * 0x1F separator. The length prefix keeps the encoding unambiguous even when a
 * field itself contains 0x1F. */
static void hash_field(sha256_ctx *h, const char *s) {
    char prefix[32];
    if (!s) {
        sha256_update(h, "-", 1);
    } else {
        size_t len = strlen(s);
        int n = snprintf(prefix, sizeof prefix, "%zu:", len);
        sha256_update(h, prefix, (size_t)n);
        sha256_update(h, s, len);
    }
    sha256_update(h, "\x1f", 1);
}

static void hash_int(sha256_ctx *h, int64_t v) {
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)v);
    hash_field(h, num);
}

/* SHA-256 over every stored field in a fixed order, so that re-importing the same
 * content yields the same hash and any change to a stored field yields another. */
static void compute_content_hash(conv_record *r) {
    sha256_ctx h;
    sha256_init(&h);
    hash_field(&h, r->id);
    hash_int(&h, r->created_at);
    hash_int(&h, r->updated_at);
    hash_field(&h, r->source);
    hash_field(&h, r->source_type);
    hash_field(&h, r->source_url);
    hash_field(&h, r->subject);
    hash_field(&h, r->contact_id);
    hash_field(&h, r->contact_email);
    hash_field(&h, r->external_id);
    hash_field(&h, r->tags_json);
    hash_field(&h, r->body);
    hash_field(&h, r->digest);
    hash_field(&h, r->transcript);
    hash_field(&h, r->support_text);
    hash_int(&h, r->support_count);
    uint8_t digest[32];
    sha256_final(&h, digest);
    static const char HEX[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        r->content_hash[2 * i] = HEX[digest[i] >> 4];
        r->content_hash[2 * i + 1] = HEX[digest[i] & 0x0F];
    }
    r->content_hash[64] = '\0';
}

void conv_prepare(const conversation *c, const char *source, conv_record *out) {
    memset(out, 0, sizeof *out);
    out->id = repaired_or_empty(c->id);
    out->created_at = c->created_at;
    out->updated_at = c->updated_at;
    out->source = repaired_or_empty(source);
    out->source_type = repaired_or_null(c->source_type);
    out->source_url = repaired_or_null(c->source_url);
    out->subject = repaired_or_null(c->subject);
    out->contact_id = repaired_or_null(c->contact_id);
    out->contact_email = repaired_or_null(c->contact_email);
    out->external_id = repaired_or_null(c->external_id);
    out->tags_json = make_tags_json(c);
    out->body = html_to_text(c->source_body);

    char **stripped = strip_comment_bodies(c);
    out->digest = make_digest(c, stripped, out->body);
    out->transcript = make_transcript(c, stripped, out->body);
    out->support_text = make_support_text(c, stripped, &out->support_count);
    for (size_t i = 0; i < c->nparts; i++) free(stripped[i]);
    free(stripped);

    compute_content_hash(out);
}

/* ---- quality filter ------------------------------------------------------------- */

/* Opening messages that are Intercom's canned buttons or a bare greeting: they say
 * nothing about the product. Compared after normalize_template(). */
static const char *const TEMPLATE_MESSAGES[] = {
    "i have a product question or feedback", "i have a billing question", "hi", "hello",
    "hey", "help", "hi there", "hello there"};

/* Lower-cases body and strips trailing punctuation and spaces, so "Hi!" and
 * "Hello there." match. Caller frees. */
static char *normalize_template(const char *body) {
    char *s = uchar_lower_dup(body, strlen(body), NULL);
    text_trim(s);
    size_t len = strlen(s);
    while (len > 0 && strchr(".!?, \t\n\r\f\v", s[len - 1])) len--;
    s[len] = '\0';
    return s;
}

static int is_template_message(const char *body) {
    char *norm = normalize_template(body);
    int hit = 0;
    for (size_t i = 0; i < ARRAY_LEN(TEMPLATE_MESSAGES); i++)
        if (strcmp(norm, TEMPLATE_MESSAGES[i]) == 0) hit = 1;
    free(norm);
    return hit;
}

static void set_reason(char *reason, size_t reason_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes the formatted reason, valid UTF-8 and cut on a character boundary. */
static void set_reason(char *reason, size_t reason_len, const char *fmt, ...) {
    if (!reason || !reason_len) return;
    buf_t b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char *fixed = repaired_copy(buf_cstr(&b), b.len);
    buf_free(&b);
    size_t len = strlen(fixed);
    size_t n = utf8_cut(fixed, len, reason_len - 1);
    memcpy(reason, fixed, n);
    reason[n] = '\0';
    free(fixed);
}

enum quality_verdict conv_quality(const conversation *c, char *reason, size_t reason_len) {
    set_reason(reason, reason_len, "%s", "");
    if (!c->delivered_as || strcmp(c->delivered_as, "customer_initiated") != 0) {
        set_reason(reason, reason_len, "not customer_initiated (%s)",
                   c->delivered_as ? c->delivered_as : "none");
        return QUALITY_NOT_CUSTOMER_INITIATED;
    }
    if (!c->source_author_type || strcmp(c->source_author_type, "user") != 0) {
        set_reason(reason, reason_len, "author is %s",
                   c->source_author_type ? c->source_author_type : "none");
        return QUALITY_AUTHOR_NOT_USER;
    }
    char *body = html_to_text(c->source_body);
    enum quality_verdict v = QUALITY_OK;
    size_t chars = utf8_count(body, strlen(body));
    /* Templates first: "Hi" is also too short, but it is a template. */
    if (is_template_message(body)) {
        v = QUALITY_TEMPLATE_MESSAGE;
        set_reason(reason, reason_len, "template message");
    } else if (chars < QUALITY_MIN_BODY_CHARS) {
        v = QUALITY_BODY_TOO_SHORT;
        set_reason(reason, reason_len, "body too short (%zu chars)", chars);
    }
    free(body);
    return v;
}

const char *quality_verdict_name(enum quality_verdict v) {
    switch (v) {
    case QUALITY_OK: return "ok";
    case QUALITY_NOT_CUSTOMER_INITIATED: return "not_customer_initiated";
    case QUALITY_AUTHOR_NOT_USER: return "author_not_user";
    case QUALITY_TEMPLATE_MESSAGE: return "template_message";
    case QUALITY_BODY_TOO_SHORT: return "body_too_short";
    case QUALITY_VERDICT_COUNT: break;
    }
    return "unknown";
}

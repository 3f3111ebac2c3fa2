/* The conversation model: what a source (JSONL, Intercom JSON, Intercom API) parses
 * into, and the prepared record (stripped texts, digest, transcript) that the store
 * keeps and every pipeline phase reads. */
#ifndef FEEDLINE_CONV_H
#define FEEDLINE_CONV_H

#include <stddef.h>
#include <stdint.h>

/* Who wrote a message. Intercom author types map as: user/lead/contact -> CUSTOMER,
 * admin -> SUPPORT, bot -> BOT; a note part (part_type "note") -> NOTE. */
enum author {
    AUTHOR_CUSTOMER = 0,
    AUTHOR_SUPPORT = 1,
    AUTHOR_BOT = 2,
    AUTHOR_NOTE = 3,
    AUTHOR_OTHER = 4
};

typedef struct conv_message {
    enum author author;
    char *author_type; /* raw type as given ("user", "lead", "admin", "customer", ...) */
    char *part_type;   /* "comment", "note", "assignment", ...; JSONL: "comment" or "note" */
    char *body;        /* raw body, may contain HTML; may be NULL */
} conv_message;

/* A parsed conversation. The opening message is separate from the thread (as in
 * Intercom's `source`); for JSONL the first message is the opening message. */
typedef struct conversation {
    char *id;
    int64_t created_at; /* UTC unix seconds */
    int64_t updated_at; /* 0 if unknown */
    char *source_type;  /* "conversation", "email", ... ; JSONL: "jsonl" */
    char *delivered_as; /* "customer_initiated", "admin_initiated", "automated", ... */
    char *source_author_type; /* author type of the opening message ("user", "lead", ...) */
    char *source_url;
    char *subject;
    char *contact_id;
    char *contact_email;
    char *external_id; /* contacts.contacts[0].external_id */
    char **tags;
    size_t ntags;
    char *source_body; /* raw opening message body (may be HTML) */
    conv_message *parts;
    size_t nparts;
    size_t parts_cap;
} conversation;

void conv_init(conversation *c);
void conv_free(conversation *c);
/* Appends a message (copies the strings). */
void conv_add_part(conversation *c, enum author author, const char *author_type,
                   const char *part_type, const char *body);
void conv_add_tag(conversation *c, const char *tag);
/* Maps an author type string ("user", "lead", "contact", "customer", "admin",
 * "support", "bot", "note", ...) to enum author. */
enum author author_from_type(const char *type);

/* The prepared form of a conversation: everything later phases need, computed once
 * at ingest by conv_prepare() and stored in the conversations table. */
typedef struct conv_record {
    char *id;
    int64_t created_at;
    int64_t updated_at;
    char *source;       /* "jsonl", "intercom" */
    char *source_type;
    char *source_url;
    char *subject;
    char *contact_id;
    char *contact_email;
    char *external_id;
    char *tags_json;    /* JSON array of strings */
    char *body;         /* stripped opening message */
    char *digest;       /* customer digest, <= DIGEST_MAX_CHARS characters */
    char *transcript;   /* full conversation, <= TRANSCRIPT_MAX_CHARS characters */
    char *support_text; /* first 5 support replies, stripped, each <= 1000 chars,
                           "[Support i]: msg" joined by "\n\n"; "" when none */
    int support_count;  /* number of support/bot comment parts with a non-blank body */
    char content_hash[65]; /* SHA-256 hex of the prepared content: re-import detects "unchanged" */
} conv_record;

#define DIGEST_MAX_CHARS 2000
#define TRANSCRIPT_MAX_CHARS 15000
#define SUPPORT_MAX_MESSAGES 5
#define SUPPORT_MAX_CHARS 1000

void conv_record_free(conv_record *r);
/* *dst = a deep copy of *src (free with conv_record_free). */
void conv_record_copy(conv_record *dst, const conv_record *src);
/* Builds the record from a parsed conversation. source is "jsonl" or "intercom". */
void conv_prepare(const conversation *c, const char *source, conv_record *out);

/* Quality filter (original-data_surfaces.md §1.5, with its quirks fixed: the
 * template list is matched after lower-casing, trimming and stripping trailing
 * punctuation, before the length rule, so "Hi!" is a template). */
enum quality_verdict {
    QUALITY_OK = 0,
    QUALITY_NOT_CUSTOMER_INITIATED,
    QUALITY_AUTHOR_NOT_USER,
    QUALITY_TEMPLATE_MESSAGE,
    QUALITY_BODY_TOO_SHORT,
    QUALITY_VERDICT_COUNT
};
#define QUALITY_MIN_BODY_CHARS 20
/* Returns the verdict; writes a human reason ("author is admin", "body too short
 * (12 chars)") into reason when not OK. */
enum quality_verdict conv_quality(const conversation *c, char *reason, size_t reason_len);
/* Stable short name of a verdict, used as the counter key ("body_too_short"). */
const char *quality_verdict_name(enum quality_verdict v);

#endif

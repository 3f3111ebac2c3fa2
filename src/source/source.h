/* source — getting conversations in: parsing the JSONL format of SPEC.md and Intercom
 * conversation JSON (a single object, an array, or a conversation.list envelope;
 * original-data_surfaces.md §1.8), the quality filter, and importing files into the
 * store idempotently. (The Intercom REST client lives here too, in intercom.c.)
 *
 * Owns: input validation with precise errors (file:line, field). Must not: run
 * pipeline phases or call an LLM. */
#ifndef FEEDLINE_SOURCE_H
#define FEEDLINE_SOURCE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "text/conv.h"

/* Limits on input, each reported by name when exceeded. */
#define SOURCE_MAX_LINE_BYTES (64u << 20)   /* one JSONL line */
#define SOURCE_MAX_BODY_BYTES (1u << 20)    /* one message body */
#define SOURCE_MAX_MESSAGES 1000            /* messages of one conversation */
#define SOURCE_MAX_ID_BYTES 256
#define SOURCE_MAX_DOCUMENT_BYTES (512u << 20) /* a whole-file JSON document */

/* Parses one JSONL conversation object. 0 on success (out filled; conv_free it), -1 with
 * a message naming the field ("messages[2].author: must be one of customer, support,
 * bot, note"). */
int source_parse_jsonl(const json_t *obj, conversation *out, char *err, size_t errlen);
/* Parses one Intercom conversation object (search result or full conversation). */
int source_parse_intercom(const json_t *obj, conversation *out, char *err, size_t errlen);
/* Parses either shape: an object with "source" or "conversation_parts" or type
 * "conversation" (and no "messages") is Intercom, anything else JSONL. */
int source_parse_any(const json_t *obj, conversation *out, char *err, size_t errlen);

typedef struct import_stats {
    int64_t read;       /* conversations seen */
    int64_t inserted;   /* new */
    int64_t updated;    /* content changed */
    int64_t unchanged;  /* identical to what was stored */
    int64_t filtered;   /* dropped by the quality filter */
    int64_t rejected;   /* malformed */
    int64_t filtered_by[QUALITY_VERDICT_COUNT];
} import_stats;

/* Called for each rejected conversation (line = 0 when not line-based, index then
 * names the position in an array) and for file-level errors. */
typedef void (*import_report_fn)(void *ctx, const char *file, int64_t line, const char *msg);

/* Imports one file (format detected) into the store, in transactions of a few hundred
 * conversations. Returns 0 if the file could be read (individual rejections are
 * counted and reported), -1 on a file-level error (unreadable, not JSON at all,
 * too large) or a store error (message in err). */
int import_file(store *st, const char *path, import_stats *stats, import_report_fn report,
                void *ctx, char *err, size_t errlen);

/* Stores one parsed conversation after the quality filter; updates stats. Returns 0,
 * or a negative STORE_* code. Used by import and by the Intercom fetch. */
int import_conversation(store *st, const conversation *c, const char *source,
                        import_stats *stats);

#endif

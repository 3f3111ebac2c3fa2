/* One conversation object as `feedline import` and the Intercom fetch read it: the JSON
 * text parsed with the import's flags, then source_parse_any (the format sniffing),
 * source_parse_jsonl and source_parse_intercom, and for each accepted conversation the
 * quality filter and conv_prepare (HTML stripping, digest, transcript, content hash).
 * Properties: a rejection has a message; an accepted conversation has an id. */
#include "fuzz.h"
#include "source/source.h"

FUZZ_QUIET_INIT

static void one(int (*parse)(const json_t *, conversation *, char *, size_t), const json_t *v,
                const char *source) {
    conversation c;
    char err[512] = "";
    if (parse(v, &c, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0] != '\0');
        return;
    }
    FUZZ_CHECK(c.id && c.id[0]);
    char reason[160];
    (void)conv_quality(&c, reason, sizeof reason);
    conv_record r;
    conv_prepare(&c, source, &r);
    FUZZ_CHECK(r.id && strcmp(r.id, c.id) == 0);
    FUZZ_CHECK(strlen(r.content_hash) == 64);
    conv_record_free(&r);
    conv_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 512 * 1024) return -1;
    json_error_t je;
    json_t *v = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!v) return 0;
    one(source_parse_any, v, "jsonl");
    one(source_parse_jsonl, v, "jsonl");
    one(source_parse_intercom, v, "intercom");
    json_decref(v);
    return 0;
}

/* A whole input file through import_file into a SQLite store: the format sniffing
 * (JSONL by name or first line, pretty-printed documents, arrays, conversation.list
 * envelopes, a broken first JSONL record), the line reader, every conversation's parse,
 * quality filter, preparation and upsert. The first input byte picks the file name's
 * extension (.jsonl or .json), the rest is the file. Property: every conversation read
 * is counted as exactly one of inserted, updated, unchanged or filtered. */
#include "fuzz.h"
#include "fuzz_store.h"
#include "source/source.h"
#include "store/store.h"

#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    fuzz_store_init("fuzz-import");
    return 0;
}

static void report(void *ctx, const char *file, int64_t line, const char *msg) {
    (void)ctx;
    (void)file;
    (void)line;
    FUZZ_CHECK(msg && msg[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 512 * 1024) return -1;
    /* A fresh database now and then, so it stays small. */
    store *st = fuzz_store_next();
    char path[400];
    snprintf(path, sizeof path, "%s/input%s", fuzz_dir, (data[0] & 1) ? ".jsonl" : ".json");
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size > 1 && fwrite(data + 1, 1, size - 1, f) != size - 1) abort();
    fclose(f);
    import_stats stats;
    memset(&stats, 0, sizeof stats);
    char err[1024] = "";
    int rc = import_file(st, path, &stats, report, NULL, err, sizeof err);
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0');
    } else {
        FUZZ_CHECK(stats.read == stats.inserted + stats.updated + stats.unchanged + stats.filtered);
    }
    unlink(path);
    return 0;
}

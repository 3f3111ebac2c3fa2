/* Generated datasets for end-to-end tests: realistic conversations (convgen, the
 * bundled vocabulary) as a JSONL file, or imported into a fresh test database through
 * the CLI under test. One implementation for every e2e test. */
#ifndef FEEDLINE_TEST_DATASET_H
#define FEEDLINE_TEST_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "support/convgen.h"

/* n generated conversations written to DIR/conversations.jsonl; the path (caller
 * frees), or NULL. The same (n, seed) gives the same file. */
char *ds_write_jsonl(const char *dir, size_t n, uint64_t seed);
/* n generated conversations written to path with generator options (NULL: the
 * defaults); 0, or -1 (said on stderr). The benchmarks' datasets too. */
int ds_write_jsonl_to(const char *path, size_t n, uint64_t seed, const convgen_options *opts);
/* A fresh test database (fx_db_url) with n generated conversations imported by
 * `feedline import`; its URL (caller frees), or NULL (the reason is printed). */
char *ds_imported_db(size_t n, uint64_t seed);

#endif

/* Test fixtures shared by test files: temporary directories and databases, building
 * conversation records, running the CLI. */
#ifndef FEEDLINE_FIXTURES_H
#define FEEDLINE_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "text/conv.h"

/* A fresh temporary directory (removed by fx_rmtree); returns its path (static buffer
 * per call is NOT used: caller frees). */
char *fx_tmpdir(void);
void fx_rmtree(const char *path);
/* Path of a new database for a test: a SQLite file in a fresh temp dir, or, when
 * FEEDLINE_TEST_PG is set to a postgres:// URL, a fresh schema-isolated database there.
 * Caller frees. */
char *fx_db_url(void);
/* A copy of a database nobody is connected to (a SQLite file copy, or on PostgreSQL
 * CREATE DATABASE ... TEMPLATE). Caller frees the new URL. */
char *fx_db_copy(const char *url);
/* Opens the store or aborts the test process with the error. */
store *fx_store_open(const char *url);
/* A prepared record with the given id, created_at and customer body. */
void fx_record(conv_record *r, const char *id, int64_t created_at, const char *body);
/* Path under the repository root (FEEDLINE_ROOT). Caller frees. */
char *fx_path(const char *rel);
/* Writes text to a new file; returns 0. */
int fx_write_file(const char *path, const char *text);
/* Runs a command (argv[0] searched in PATH or absolute), capturing stdout and stderr
 * into malloc'ed strings (either may be NULL to discard). Returns the exit status, or
 * -1 if it could not run / was killed. env: NULL-terminated "K=V" additions or NULL. */
int fx_run(char *const argv[], char *const env[], char **out, char **err);
/* The feedline binary the tests run: $FEEDLINE_BIN, else build/asan/feedline. */
const char *fx_feedline_bin(void);
/* fx_run of the CLI under test (FEEDLINE_BIN, else build/asan/feedline) with args
 * (NULL-terminated, after the program name) and env additions (NULL-terminated or NULL;
 * FEEDLINE_VOCAB names the bundled vocabulary unless an addition says otherwise). */
int fx_feedline(const char *const args[], const char *const env[], char **out, char **err);
/* Runs scripts/pg-test-cluster ACTION DIR (stop-server, start-server: the throwaway
 * PostgreSQL cluster of FEEDLINE_TEST_PG_DIR); its exit status, its output printed when
 * it failed. */
int fx_pg_cluster(const char *action, const char *dir);

#endif

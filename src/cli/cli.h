/* cli — the `feedline` command line: one function per command, argument parsing with
 * --help on each, human output (tables, a progress line on a terminal) and --json.
 *
 * Owns: argument validation and presentation. Must not: contain pipeline logic or SQL;
 * it calls the pipeline, source and store modules. */
#ifndef FEEDLINE_CLI_H
#define FEEDLINE_CLI_H

#include <jansson.h>
#include <stdatomic.h>

#include "pipeline/pipeline.h"
#include "text/vocab.h"

/* Exit codes. */
#define EXIT_OK 0
#define EXIT_FAILURE_ 1   /* the command ran and something failed (a run failed, rows rejected) */
#define EXIT_USAGE 2      /* bad arguments */
#define EXIT_BUSY 3       /* another run is active */
#define EXIT_STOPPED 4    /* the run was stopped */

int cmd_import(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_stories(int argc, char **argv);
int cmd_story(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_export(int argc, char **argv); /* cmd_export.c: stories to an issue tracker */

/* Shared helpers (common.c). */
/* The database: --db value, else $DATABASE_URL, else "feedline.db". */
const char *cli_db(const char *opt);
/* A bundled data file: data/NAME under the working directory, else in the tree the
 * binary was built in (data/ up to two levels above build/feedline or
 * build/asan/feedline), so the defaults work from any directory. Writes the
 * path to out and returns 0, or -1 when neither is readable. */
int cli_data_path(const char *name, char *out, size_t len);
/* Loads the vocabulary: --vocab, else $FEEDLINE_VOCAB, else the bundled
 * theme_vocabulary.json (cli_data_path). Prints an error and returns NULL. */
vocab *cli_load_vocab(const char *opt);
/* Opens the store, printing an error on failure. */
store *cli_open_store(const char *url);
/* Provider factory for runs ("local"; "openai" when configured). ctx = vocab. */
llm_provider *cli_make_provider(void *ctx, const run_record *run, store *st, char *err,
                                size_t errlen);
/* The LLM to use when --llm is not given ("openai" with OPENAI_API_KEY, else "local"),
 * printing which was chosen and why. */
const char *cli_default_llm(void);
/* Parses a positive integer option value; prints an error naming the option. */
int cli_parse_int(const char *opt, const char *value, long long min, long long max,
                  long long *out);
/* --rpm/--tpm: sets var (FEEDLINE_RPM, FEEDLINE_TPM) to the option's value, a whole
 * number from 1; prints an error naming the option. 0 or -1. */
int cli_set_limit_env(const char *opt, const char *var, const char *value);
/* Progress line on stderr when it is a terminal (run_env.progress). */
void cli_progress(void *ctx, const run_progress *p);
/* "host:pid" owner name for runs started by this process. */
const char *cli_owner(void);
/* Installs SIGINT/SIGTERM handlers that set *flag (a second signal exits). */
void cli_trap_stop(atomic_int *flag);
/* Prints a JSON value indented on stdout. */
void cli_print_json(const json_t *v);
/* Prints a run summary table (human) for a finished run. */
void cli_print_run_summary(store *st, int64_t run_id);
/* The review line of a run and every decision other than keep, with its reason. */
void cli_print_review(store *st, int64_t run_id);
/* Drives a run (after pipeline_start/resume) to its end with progress; shared by run,
 * resume and demo. Returns the process exit code. */
int cli_finish_run(store *st, int64_t run_id, int rc, int json);

#endif

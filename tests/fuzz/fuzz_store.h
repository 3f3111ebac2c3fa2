/* A scratch SQLite store for the fuzz targets that write to one (fuzz_import,
 * fuzz_intercom): made in its own temporary directory at initialisation, made anew
 * every FUZZ_STORE_RENEW inputs so it stays small, and removed with everything the
 * target left in that directory at exit. */
#ifndef FEEDLINE_FUZZ_STORE_H
#define FEEDLINE_FUZZ_STORE_H

#include <dirent.h>
#include <unistd.h>

#include "fuzz.h"
#include "store/store.h"

#define FUZZ_STORE_RENEW 20000

static char fuzz_dir[256], fuzz_db[320];
static store *fuzz_st;
static unsigned long fuzz_inputs;

static void fuzz_store_open(void) {
    if (fuzz_st) store_close(fuzz_st);
    fuzz_st = NULL;
    unlink(fuzz_db);
    char err[512];
    if (store_open(fuzz_db, &fuzz_st, err, sizeof err) != STORE_OK) {
        fprintf(stderr, "fuzz: store_open %s: %s\n", fuzz_db, err);
        abort();
    }
}

static void fuzz_store_cleanup(void) {
    if (fuzz_st) store_close(fuzz_st);
    fuzz_st = NULL;
    DIR *d = opendir(fuzz_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(fuzz_dir);
}

/* At LLVMFuzzerInitialize: the directory (named after the target) and the store. */
static void fuzz_store_init(const char *target) {
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/feedline-%s.XXXXXX", tmp && *tmp ? tmp : "/tmp",
             target);
    if (!mkdtemp(fuzz_dir)) abort();
    snprintf(fuzz_db, sizeof fuzz_db, "%s/fuzz.db", fuzz_dir);
    fuzz_store_open();
    atexit(fuzz_store_cleanup);
}

/* The store for the next input (a fresh one every FUZZ_STORE_RENEW inputs). */
static store *fuzz_store_next(void) {
    if (++fuzz_inputs % FUZZ_STORE_RENEW == 0) fuzz_store_open();
    return fuzz_st;
}

#endif

/* Generated datasets for end-to-end tests (dataset.h). */
#include "support/dataset.h"

#include <stdio.h>
#include <stdlib.h>

#include "support/convgen.h"
#include "support/fixtures.h"
#include "text/vocab.h"
#include "util/mem.h"

int ds_write_jsonl_to(const char *path, size_t n, uint64_t seed, const convgen_options *opts) {
    char *vpath = fx_path("data/theme_vocabulary.json");
    char err[256];
    vocab *v = vocab_load(vpath, err, sizeof err);
    free(vpath);
    if (!v) {
        fprintf(stderr, "dataset: %s\n", err);
        return -1;
    }
    FILE *f = fopen(path, "w");
    convgen *g = convgen_new(v, seed, opts);
    for (size_t i = 0; f && i < n; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        char *line = convgen_to_jsonl(&c);
        fprintf(f, "%s\n", line);
        free(line);
        conv_free(&c);
    }
    convgen_free(g);
    vocab_free(v);
    if (!f || fclose(f) != 0) {
        fprintf(stderr, "dataset: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

char *ds_write_jsonl(const char *dir, size_t n, uint64_t seed) {
    char *file = xasprintf("%s/conversations.jsonl", dir);
    if (ds_write_jsonl_to(file, n, seed, NULL) == 0) return file;
    free(file);
    return NULL;
}

char *ds_imported_db(size_t n, uint64_t seed) {
    char *dir = fx_tmpdir();
    char *file = ds_write_jsonl(dir, n, seed);
    char *db = fx_db_url();
    int rc = -1;
    if (file) {
        const char *args[] = {"import", "--db", db, file, NULL};
        char *out = NULL, *e = NULL;
        rc = fx_feedline(args, NULL, &out, &e);
        if (rc != 0) fprintf(stdout, "    import failed: %s %s\n", out ? out : "", e ? e : "");
        free(out);
        free(e);
    }
    free(file);
    fx_rmtree(dir);
    free(dir);
    if (rc != 0) {
        free(db);
        return NULL;
    }
    return db;
}

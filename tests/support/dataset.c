/* Generated datasets for end-to-end tests (dataset.h). */
#include "support/dataset.h"

#include <stdio.h>
#include <stdlib.h>

#include "support/convgen.h"
#include "support/fixtures.h"
#include "text/vocab.h"
#include "util/mem.h"

char *ds_write_jsonl(const char *dir, size_t n, uint64_t seed) {
    char *vpath = fx_path("data/theme_vocabulary.json");
    char err[256];
    vocab *v = vocab_load(vpath, err, sizeof err);
    free(vpath);
    if (!v) return NULL;
    char *file = xasprintf("%s/conversations.jsonl", dir);
    FILE *f = fopen(file, "w");
    convgen *g = convgen_new(v, seed, NULL);
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
        free(file);
        return NULL;
    }
    return file;
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

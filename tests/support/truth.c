#include "support/truth.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

int truth_load(const char *path, strmap_t *out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        if (first) { /* header */
            first = 0;
            continue;
        }
        char *id = strtok(line, "\t\n");
        char *type = strtok(NULL, "\t\n");
        char *sig = strtok(NULL, "\t\n");
        (void)type;
        if (id && sig) free(strmap_put(out, id, xstrdup(sig)));
    }
    fclose(f);
    return 0;
}

double truth_purity(const strmap_t *truth, const json_t *stories, int *dup_convs, int *covered) {
    strmap_t seen = STRMAP_INIT;
    double sum = 0;
    size_t nstories = json_array_size(stories);
    *dup_convs = 0;
    *covered = 0;
    size_t i;
    json_t *s;
    json_array_foreach(stories, i, s) {
        json_t *ids = json_object_get(s, "conversation_ids");
        size_t n = json_array_size(ids);
        strmap_t counts = STRMAP_INIT;
        size_t best = 0;
        for (size_t k = 0; k < n; k++) {
            const char *id = json_string_value(json_array_get(ids, k));
            if (strmap_has(&seen, id)) (*dup_convs)++;
            strmap_put(&seen, id, NULL);
            (*covered)++;
            const char *sig = strmap_get(truth, id);
            if (!sig) sig = "?";
            size_t c = (size_t)(intptr_t)strmap_get(&counts, sig) + 1;
            strmap_put(&counts, sig, (void *)(intptr_t)c);
            if (c > best) best = c;
        }
        strmap_free(&counts, NULL);
        sum += n ? (double)best / (double)n : 0;
    }
    strmap_free(&seen, NULL);
    return nstories ? sum / (double)nstories : 0;
}

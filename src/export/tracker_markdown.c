/* The markdown "tracker": one readable file with a section per story (title, then the
 * same body a tracker ticket gets). The file is written whole at the end, through a
 * temporary file renamed over it, so a failed export never leaves half a file; it
 * records nothing in the database and changes no story state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export_internal.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define DEFAULT_PATH "stories.md"

typedef struct markdown {
    tracker t;
    const char *path;
    buf_t text;
    int stories;
} markdown;

static tracker *md_open(const export_options *o, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    markdown *m = xcalloc(1, sizeof *m);
    m->t.ops = &TRACKER_MARKDOWN;
    m->t.opts = o;
    m->path = o->out_path && o->out_path[0] ? o->out_path : DEFAULT_PATH;
    return &m->t;
}

static int md_section(tracker *t, const export_doc *d, ticket *out, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    markdown *m = (markdown *)t;
    char *body = export_render_markdown(d);
    buf_printf(&m->text, "\n## %s\n\n%s", d->story->title, body);
    free(body);
    m->stories++;
    out->id = xasprintf("story-%lld", (long long)d->story->id);
    out->url = xasprintf("%s#%s", m->path, out->id);
    return TRACKER_OK;
}

/* The file is rewritten whole on every export: an "update" is the same section. */
static int md_update(tracker *t, const export_doc *d, const char *id, ticket *out, char *err,
                     size_t errlen) {
    (void)id;
    return md_section(t, d, out, err, errlen);
}

static int md_finish(tracker *t, char *err, size_t errlen) {
    markdown *m = (markdown *)t;
    char now[32];
    char *tmp = xasprintf("%s.tmp", m->path);
    FILE *f = fopen(tmp, "w");
    int ok = f != NULL;
    if (ok) {
        fprintf(f, "# feedline stories\n\n%d stories, exported %s\n", m->stories,
                iso8601_format(wall_unix(), now, sizeof now));
        ok = fwrite(buf_cstr(&m->text), 1, m->text.len, f) == m->text.len;
        ok = fclose(f) == 0 && ok;
    }
    if (ok) ok = rename(tmp, m->path) == 0;
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", m->path, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    return ok ? TRACKER_OK : TRACKER_FATAL;
}

static void md_close(tracker *t) {
    buf_free(&((markdown *)t)->text);
    free(t);
}

const tracker_ops TRACKER_MARKDOWN = {"markdown", "markdown file", 0, md_open, md_section,
                                      md_update, md_finish, md_close};

/* A story as a ticket body. The content is built once as a list of blocks (headings,
 * paragraphs, bullet and task lists of plain text) and serialised two ways: markdown
 * (Shortcut, GitHub, Linear, the markdown file) and Atlassian Document Format (Jira),
 * so every tracker shows the same thing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export_internal.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"
#include "util/utf8.h"

/* ------------------------------------------------------------------ the document */

static const char *story_kind(const export_story *s) {
    static const char *const KINDS[] = {"bug", "feature", "question"};
    for (size_t i = 0; i < 3; i++)
        if (strcmp(s->story_kind, KINDS[i]) == 0) return KINDS[i];
    return "bug";
}

static void parse_criteria(export_doc *d, const char *json) {
    json_t *arr = json_loads(json ? json : "[]", 0, NULL);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *text = json_string_value(v);
        if (!text || !text[0]) continue;
        d->criteria = xrealloc(d->criteria, (d->ncriteria + 1) * sizeof *d->criteria);
        d->criteria[d->ncriteria++] = xstrdup(text);
    }
    json_decref(arr);
}

void export_doc_init(export_doc *d, const export_story *s, const export_link *previous) {
    memset(d, 0, sizeof *d);
    d->story = s;
    d->kind = story_kind(s);
    parse_criteria(d, s->acceptance_criteria);
    for (size_t i = 0; i < s->nevidence; i++) {
        int64_t t = s->evidence[i].created_at;
        if (t <= 0) continue;
        if (!d->from || t < d->from) d->from = t;
        if (t > d->to) d->to = t;
    }
    if (!d->from) d->from = s->first_seen_at;
    if (!d->to) d->to = s->last_seen_at;
    d->new_from = s->nevidence;
    if (previous && previous->external_id && previous->evidence_count < s->evidence_total &&
        (size_t)previous->evidence_count < s->nevidence) {
        d->new_from = (size_t)(previous->evidence_count > 0 ? previous->evidence_count : 0);
        d->last_export = previous->updated_at;
    }
}

void export_doc_free(export_doc *d) {
    for (size_t i = 0; i < d->ncriteria; i++) free(d->criteria[i]);
    free(d->criteria);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------------ blocks */

enum block_kind { B_HEADING, B_PARAGRAPH, B_BULLETS, B_TASKS };

typedef struct block {
    enum block_kind kind;
    char *text;    /* heading, paragraph */
    char **items;  /* lists */
    size_t n;
} block;

typedef struct blocks {
    block *v;
    size_t n, cap;
} blocks;

static block *add(blocks *b, enum block_kind kind, char *text) {
    XGROW(b->v, b->cap, b->n + 1);
    block *k = &b->v[b->n++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->text = text;
    return k;
}

static void add_item(block *k, char *text) {
    k->items = xrealloc(k->items, (k->n + 1) * sizeof *k->items);
    k->items[k->n++] = text;
}

static void blocks_free(blocks *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i].text);
        for (size_t k = 0; k < b->v[i].n; k++) free(b->v[i].items[k]);
        free(b->v[i].items);
    }
    free(b->v);
}

static const char *day(int64_t t, char out[32]) {
    if (t <= 0) return "?";
    iso8601_format(t, out, 32);
    out[10] = '\0';
    return out;
}

/* Text on one line, at most max bytes (cut on a character boundary, "…" added). */
static char *one_line(const char *s, size_t max) {
    buf_t b = BUF_INIT;
    int space = 0;
    for (const char *p = s ? s : ""; *p; p++) {
        int ws = *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t';
        if (ws) {
            space = b.len > 0;
            continue;
        }
        if (space) buf_putc(&b, ' ');
        space = 0;
        buf_putc(&b, *p);
    }
    if (b.len > max) {
        buf_truncate(&b, utf8_cut(b.data, b.len, max));
        buf_puts(&b, "…");
    }
    return buf_detach(&b);
}

static char *evidence_line(const export_evidence *e) {
    char d[32];
    char *excerpt = one_line(e->excerpt, EXPORT_EXCERPT_BYTES);
    char *subject = one_line(e->subject, 120);
    char *line = xasprintf("%s (%s)%s%s%s%s%s", e->conversation_id, day(e->created_at, d),
                           subject[0] ? " " : "", subject, excerpt[0] ? ": \"" : "", excerpt,
                           excerpt[0] ? "\"" : "");
    free(excerpt);
    free(subject);
    return line;
}

/* Lists evidence[from..to) (at most EXPORT_LISTED_EVIDENCE, the rest counted). */
static void evidence_list(blocks *b, const export_story *s, size_t from, size_t to,
                          int64_t unlisted) {
    block *k = add(b, B_BULLETS, NULL);
    size_t i;
    for (i = from; i < to && i - from < EXPORT_LISTED_EVIDENCE; i++)
        add_item(k, evidence_line(&s->evidence[i]));
    int64_t more = (int64_t)(to - i) + unlisted;
    if (more > 0) add_item(k, xasprintf("... and %lld more", (long long)more));
}

static void text_section(blocks *b, const char *heading, const char *text) {
    if (!text || !text[0]) return;
    add(b, B_HEADING, xstrdup(heading));
    add(b, B_PARAGRAPH, xstrdup(text));
}

static void summary(blocks *b, const export_doc *d) {
    const export_story *s = d->story;
    char f[32], t[32];
    const char *area = s->product_area[0] ? s->product_area : "unknown";
    /* Stories written before the lifecycle existed still say 'candidate'. */
    const char *state = strcmp(s->status, "candidate") == 0 ? "open" : s->status;
    add(b, B_PARAGRAPH,
        xasprintf("State: %s · Kind: %s · Area: %s%s%s · Conversations: %lld · Seen: %s to %s"
                  " · feedline story %lld",
                  state, d->kind, area, s->component[0] ? " / " : "", s->component,
                  (long long)s->evidence_total, day(d->from, f), day(d->to, t),
                  (long long)s->id));
}

/* The story's description (markdown written by story_render_description, the one
 * renderer of a story's content) as blocks: "## " headings, "- [ ] " task items,
 * "- " bullets, other lines joined into paragraphs. */
static void description_blocks(blocks *b, const char *md) {
    block *list = NULL;
    buf_t para = BUF_INIT;
    const char *p = md;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *line = xstrndup(p, n);
        p += n + (end ? 1 : 0);
        int heading = !strncmp(line, "## ", 3), task = !strncmp(line, "- [ ] ", 6);
        int bullet = !task && !strncmp(line, "- ", 2), blank = line[0] == '\0';
        if ((heading || task || bullet || blank) && para.len) {
            add(b, B_PARAGRAPH, buf_detach(&para));
            para = (buf_t)BUF_INIT;
        }
        if (!task && !bullet) list = NULL;
        if (heading) {
            add(b, B_HEADING, xstrdup(line + 3));
        } else if (task || bullet) {
            enum block_kind kind = task ? B_TASKS : B_BULLETS;
            if (!list || list->kind != kind) list = add(b, kind, NULL);
            add_item(list, xstrdup(line + (task ? 6 : 2)));
        } else if (!blank) {
            if (para.len) buf_putc(&para, ' ');
            buf_puts(&para, line);
        }
        free(line);
    }
    if (para.len) add(b, B_PARAGRAPH, buf_detach(&para));
    else buf_free(&para);
}

static void build(blocks *b, const export_doc *d) {
    const export_story *s = d->story;
    summary(b, d);
    /* Rows beyond the load cap are counted, never listed. */
    int64_t unlisted = s->evidence_total - (int64_t)s->nevidence;
    /* The description written by feedline's story phase (story_render_description)
     * already has every section; a description from elsewhere gets the story's fields
     * and its evidence list added. */
    int written = strstr(s->description, "## Problem") != NULL;
    int has_evidence = strstr(s->description, "## Evidence") != NULL;
    if (s->description[0]) description_blocks(b, s->description);
    if (!written) {
        text_section(b, "Problem", s->problem);
        text_section(b, "Who is affected", s->affected);
        if (d->ncriteria) {
            add(b, B_HEADING, xstrdup("Acceptance criteria"));
            block *k = add(b, B_TASKS, NULL);
            for (size_t i = 0; i < d->ncriteria; i++) add_item(k, xstrdup(d->criteria[i]));
        }
    }
    if (d->new_from < s->nevidence) {
        char when[32];
        add(b, B_HEADING, xasprintf("New since the last export (%s): %zu conversations",
                                    day(d->last_export, when), s->nevidence - d->new_from));
        evidence_list(b, s, d->new_from, s->nevidence, unlisted);
        unlisted = 0;
    }
    if (d->new_from > 0 && !has_evidence) {
        add(b, B_HEADING, xasprintf("Evidence (%lld conversations)", (long long)s->evidence_total));
        evidence_list(b, s, 0, d->new_from, unlisted);
    }
}

/* ------------------------------------------------------------------ markdown */

char *export_render_markdown(const export_doc *d) {
    blocks b = {0};
    build(&b, d);
    buf_t out = BUF_INIT;
    for (size_t i = 0; i < b.n; i++) {
        const block *k = &b.v[i];
        if (i) buf_putc(&out, '\n');
        switch (k->kind) {
        case B_HEADING: buf_printf(&out, "### %s\n", k->text); break;
        case B_PARAGRAPH: buf_printf(&out, "%s\n", k->text); break;
        case B_BULLETS:
        case B_TASKS:
            for (size_t j = 0; j < k->n; j++)
                buf_printf(&out, "- %s%s\n", k->kind == B_TASKS ? "[ ] " : "", k->items[j]);
            break;
        }
    }
    blocks_free(&b);
    return buf_detach(&out);
}

/* ------------------------------------------------------------------ ADF */

static json_t *adf_text(const char *text) {
    return json_pack("{s:s,s:o}", "type", "text", "text", jx_string(text));
}

/* A paragraph node; NULL for empty text (ADF text nodes must not be empty). */
static json_t *adf_paragraph(const char *text) {
    if (!text || !text[0]) return NULL;
    return json_pack("{s:s,s:[o]}", "type", "paragraph", "content", adf_text(text));
}

/* Paragraphs of text separated by blank lines (a description written in markdown
 * keeps its line structure as plain text). */
static void adf_paragraphs(json_t *content, const char *text) {
    const char *p = text;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *part = xstrndup(p, n);
        json_t *para = adf_paragraph(part);
        if (para) json_array_append_new(content, para);
        free(part);
        p += n;
        while (*p == '\n') p++;
    }
}

static json_t *adf_list(const block *k) {
    json_t *items = json_array();
    for (size_t j = 0; j < k->n; j++) {
        json_t *para = adf_paragraph(k->items[j]);
        if (para)
            json_array_append_new(items, json_pack("{s:s,s:[o]}", "type", "listItem", "content", para));
    }
    return json_pack("{s:s,s:o}", "type", "bulletList", "content", items);
}

json_t *export_render_adf(const export_doc *d) {
    blocks b = {0};
    build(&b, d);
    json_t *content = json_array();
    for (size_t i = 0; i < b.n; i++) {
        const block *k = &b.v[i];
        switch (k->kind) {
        case B_HEADING:
            json_array_append_new(content, json_pack("{s:s,s:{s:i},s:[o]}", "type", "heading",
                                                     "attrs", "level", 3, "content",
                                                     adf_text(k->text)));
            break;
        case B_PARAGRAPH: adf_paragraphs(content, k->text); break;
        case B_BULLETS:
        case B_TASKS:
            if (k->n) json_array_append_new(content, adf_list(k));
            break;
        }
    }
    blocks_free(&b);
    return json_pack("{s:s,s:i,s:o}", "type", "doc", "version", 1, "content", content);
}

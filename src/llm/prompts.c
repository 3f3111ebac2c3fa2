/* Prompt assembly for the OpenAI-compatible provider (see prompts.h): static system
 * messages from the templates and the vocabulary, per-call user messages, the repair
 * message, and the parser that splits a user message back into its blocks. */
#include "llm/prompts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/signature.h"
#include "text/text.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/utf8.h"

/* Bounds of what the prompts carry from the vocabulary. */
#define THEME_DESC_CHARS 100
#define THEME_KEYWORDS 3
#define GOOD_EXAMPLES 8
#define BAD_EXAMPLES 6
#define URL_HINT_THEMES 12
/* Bytes of conversation text per task (the digest is <= 2000 characters and the
 * transcript <= 15000; these only guard against oversized records). */
#define SHORT_TEXT_BYTES 8000
#define LONG_TEXT_BYTES 60000

struct prompts {
    const vocab *v;
    char *system[LLM_TASK_COUNT];
    /* {"role":"system","content":system[t]}, shared by every call's messages, and its
     * compact JSON: encoded once instead of once per request. */
    json_t *system_msg[LLM_TASK_COUNT];
    char *system_json[LLM_TASK_COUNT];
};

const char *prompt_template(const char *name) {
    const embedded_file *f = embedded_find(PROMPT_FILES, name);
    return f ? f->text : NULL;
}

/* Copies tmpl replacing each {{NAME}} by its value (names[i] -> values[i]); an
 * unknown placeholder is kept as is. Trailing newlines are dropped. */
static char *fill(const char *tmpl, const char *const *names, const char *const *values,
                  size_t n) {
    buf_t b = BUF_INIT;
    const char *p = tmpl;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            buf_puts(&b, p);
            break;
        }
        buf_append(&b, p, (size_t)(open - p));
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            buf_puts(&b, open);
            break;
        }
        size_t len = (size_t)(close - open - 2);
        size_t i = 0;
        while (i < n && !(strlen(names[i]) == len && !strncmp(names[i], open + 2, len))) i++;
        if (i < n) buf_puts(&b, values[i]);
        else buf_append(&b, open, (size_t)(close + 2 - open));
        p = close + 2;
    }
    while (b.len && b.data[b.len - 1] == '\n') buf_truncate(&b, b.len - 1);
    return buf_detach(&b);
}

/* ------------------------------------------------------------ vocabulary parts */

static int by_area_then_signature(const void *a, const void *b) {
    const vocab_theme *x = *(const vocab_theme *const *)a, *y = *(const vocab_theme *const *)b;
    char *ax = product_area_normalize(x->product_area), *ay = product_area_normalize(y->product_area);
    int c = strcmp(ax, ay);
    free(ax);
    free(ay);
    return c ? c : strcmp(x->signature, y->signature);
}

/* "- sig [area/component]: description (also: kw1, kw2, kw3)" per active theme,
 * grouped by product area. Every active theme is listed: the original's cap of 50
 * hid 17 of them. */
static char *known_themes(const vocab *v) {
    size_t n = 0;
    const vocab_theme **list = xcalloc(v && v->nthemes ? v->nthemes : 1, sizeof *list);
    for (size_t i = 0; v && i < v->nthemes; i++)
        if (v->themes[i].active) list[n++] = &v->themes[i];
    if (n == 0) {
        free(list);
        return xstrdup("(no known themes yet: create new signatures as needed)");
    }
    qsort(list, n, sizeof *list, by_area_then_signature);
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        const vocab_theme *t = list[i];
        char *area = product_area_normalize(t->product_area);
        char *desc = xstrdup(t->description ? t->description : "");
        text_truncate_chars(desc, THEME_DESC_CHARS);
        buf_printf(&b, "%s- %s [%s/%s]: %s", i ? "\n" : "", t->signature, area,
                   t->component ? t->component : "unknown", desc);
        for (size_t k = 0; k < t->nkeywords && k < THEME_KEYWORDS; k++)
            buf_printf(&b, "%s%s", k ? ", " : " (also: ", t->keywords[k]);
        if (t->nkeywords) buf_putc(&b, ')');
        free(area);
        free(desc);
    }
    free(list);
    return buf_detach(&b);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The vocabulary's product areas (normalised, sorted), for the product_area enum. */
static char *product_areas(const vocab *v) {
    strmap_t seen = STRMAP_INIT;
    char **areas = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; v && i < v->nthemes; i++) {
        if (!v->themes[i].active) continue;
        char *a = product_area_normalize(v->themes[i].product_area);
        if (strcmp(a, "other") != 0 && !strmap_has(&seen, a)) {
            strmap_put(&seen, a, NULL);
            XGROW(areas, cap, n + 1);
            areas[n++] = a;
        } else {
            free(a);
        }
    }
    strmap_free(&seen, NULL);
    if (n) qsort(areas, n, sizeof *areas, cmp_str);
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        buf_printf(&b, "%s%s", i ? ", " : "", areas[i]);
        free(areas[i]);
    }
    free(areas);
    return b.len ? buf_detach(&b) : xstrdup("general");
}

static char *same_fix(const vocab *v) {
    buf_t b = BUF_INIT;
    buf_puts(&b, v && v->same_fix_description
                     ? v->same_fix_description
                     : "A signature must pass the SAME_FIX test: one code change fixes every "
                       "conversation with that signature.");
    for (size_t i = 0; v && i < v->ncriteria; i++) buf_printf(&b, "\n- %s", v->same_fix_criteria[i]);
    return buf_detach(&b);
}

static char *signature_examples(const vocab *v) {
    buf_t b = BUF_INIT;
    for (size_t i = 0; v && i < v->ngood && i < GOOD_EXAMPLES; i++)
        buf_printf(&b, "%sGood: %s - %s", b.len ? "\n" : "", v->good[i].signature,
                   v->good[i].why ? v->good[i].why : "");
    for (size_t i = 0; v && i < v->nbad && i < BAD_EXAMPLES; i++) {
        buf_printf(&b, "%sBad: %s - %s", b.len ? "\n" : "", v->bad[i].signature,
                   v->bad[i].why ? v->bad[i].why : "");
        if (v->bad[i].better) buf_printf(&b, " Better: %s", v->bad[i].better);
    }
    return buf_detach(&b);
}

/* ------------------------------------------------------------ system messages */

static char *system_message(const char *file, const vocab *v) {
    const char *tmpl = prompt_template(file);
    if (!tmpl) return xstrdup("");
    char *known = NULL, *areas = NULL, *fix = NULL, *examples = NULL;
    if (!strcmp(file, "system_theme")) {
        known = known_themes(v);
        areas = product_areas(v);
        fix = same_fix(v);
        examples = signature_examples(v);
    }
    const char *names[] = {"CONVERSATION_TYPES", "DATA_RULE", "KNOWN_THEMES", "PRODUCT_AREAS",
                           "SAME_FIX", "SIGNATURE_EXAMPLES"};
    char *types = fill(prompt_template("conversation_types"), NULL, NULL, 0);
    char *rule = fill(prompt_template("data_rule"), NULL, NULL, 0);
    const char *values[] = {types, rule, known ? known : "", areas ? areas : "",
                            fix ? fix : "", examples ? examples : ""};
    char *out = fill(tmpl, names, values, sizeof names / sizeof names[0]);
    free(types);
    free(rule);
    free(known);
    free(areas);
    free(fix);
    free(examples);
    return out;
}

prompts *prompts_new(const vocab *v) {
    static const char *const files[LLM_TASK_COUNT] = {
        [LLM_CLASSIFY] = "system_classify",         [LLM_REFINE] = "system_refine",
        [LLM_FACETS] = "system_facets",             [LLM_THEME] = "system_theme",
        [LLM_CANONICALIZE] = "system_canonicalize", [LLM_STORY] = "system_story",
        [LLM_REVIEW] = "system_review"};
    prompts *p = xcalloc(1, sizeof *p);
    p->v = v;
    for (int t = 0; t < LLM_TASK_COUNT; t++) {
        if (!files[t]) continue;
        p->system[t] = system_message(files[t], v);
        p->system_msg[t] = prompts_message("system", p->system[t]);
        p->system_json[t] = jx_dump(p->system_msg[t]);
    }
    return p;
}

void prompts_free(prompts *p) {
    if (!p) return;
    for (int t = 0; t < LLM_TASK_COUNT; t++) {
        free(p->system[t]);
        json_decref(p->system_msg[t]);
        free(p->system_json[t]);
    }
    free(p);
}

const char *prompts_message_json(const prompts *p, const json_t *message) {
    for (int t = 0; message && t < LLM_TASK_COUNT; t++)
        if (message == p->system_msg[t]) return p->system_json[t];
    return NULL;
}

const char *prompts_system(const prompts *p, enum llm_task t) {
    return (unsigned)t < LLM_TASK_COUNT ? p->system[t] : NULL;
}

int prompts_max_tokens(const llm_call *c) {
    switch (c->task) {
    case LLM_CLASSIFY: return 400;
    case LLM_REFINE: return 700;
    case LLM_FACETS: return 200;
    case LLM_THEME: return 1500;
    case LLM_CANONICALIZE: { /* ~60 tokens a decision */
        size_t n = json_array_size(json_object_get(c->args, "proposals"));
        return 100 + 100 * (int)(n ? n : 1);
    }
    case LLM_STORY: return 700;
    case LLM_REVIEW: return 400;
    default: return 0;
    }
}

int prompts_task_from_name(const char *name) {
    for (int t = 0; name && t < LLM_TASK_COUNT; t++)
        if (!strcmp(llm_task_name((enum llm_task)t), name)) return t;
    return -1;
}

char *prompts_repair(const char *reason) {
    const char *names[] = {"REASON"};
    const char *values[] = {reason && *reason ? reason : "it was not a valid JSON object"};
    return fill(prompt_template("repair"), names, values, 1);
}

/* ------------------------------------------------------------ user messages */

static const char *const TAGS[] = {"conversation", "support", "url", "arguments"};

/* Appends text, cut to max_bytes on a character boundary, with every block tag
 * ("<conversation>", "</url>", ...) neutralised by a space after '<'. */
static void put_text(buf_t *b, const char *text, size_t max_bytes) {
    size_t len = utf8_cut(text, strlen(text), max_bytes);
    for (size_t i = 0; i < len; i++) {
        buf_putc(b, text[i]);
        if (text[i] != '<') continue;
        const char *t = text + i + 1;
        if (*t == '/') t++;
        for (size_t k = 0; k < sizeof TAGS / sizeof TAGS[0]; k++) {
            size_t n = strlen(TAGS[k]);
            if ((size_t)(t - text) + n < len && !strncmp(t, TAGS[k], n) && t[n] == '>') {
                buf_putc(b, ' ');
                break;
            }
        }
    }
}

static int blank(const char *s) {
    if (!s) return 1;
    for (; *s; s++)
        if (*s != ' ' && *s != '\n' && *s != '\t' && *s != '\r') return 0;
    return 1;
}

/* The text a task reads; NULL when it reads only its arguments. */
static const char *task_text(const llm_call *c, size_t *max_bytes) {
    const llm_input *in = &c->in;
    *max_bytes = SHORT_TEXT_BYTES;
    switch (c->task) {
    case LLM_CLASSIFY:
    case LLM_REFINE:
    case LLM_FACETS: return !blank(in->digest) ? in->digest : in->body;
    case LLM_THEME:
        *max_bytes = LONG_TEXT_BYTES;
        if (!blank(in->transcript)) return in->transcript;
        return !blank(in->digest) ? in->digest : in->body;
    default: return NULL;
    }
}

static int task_uses_url(enum llm_task t) {
    return t == LLM_CLASSIFY || t == LLM_REFINE || t == LLM_THEME;
}

/* "URL hint: ..." naming the display area and the themes the vocabulary maps the
 * URL to (through the area mapping, so display names reach real themes). */
static void put_url_hint(buf_t *b, const vocab *v, const char *url) {
    const char *area = v ? vocab_url_area(v, url) : NULL;
    if (!area) return;
    const vocab_theme *themes[URL_HINT_THEMES];
    size_t n = vocab_url_themes(v, url, themes, URL_HINT_THEMES);
    buf_puts(b, "URL hint: that page belongs to \"");
    put_text(b, area, 200);
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++)
        buf_printf(b, "%s%s", i ? ", " : "; prefer these themes when they fit: ",
                   themes[i]->signature);
    buf_puts(b, ".\n");
}

char *prompts_user(const prompts *p, const llm_call *c) {
    buf_t b = BUF_INIT;
    buf_printf(&b, "Task: %s\n", llm_task_name(c->task));
    if (c->args) {
        /* Slashes escaped, so no string inside can spell "</arguments>". */
        char *a = json_dumps(c->args, JSON_COMPACT | JSON_ESCAPE_SLASH);
        buf_printf(&b, "<arguments>%s</arguments>\n", a ? a : "{}");
        free(a);
    }
    const char *url = c->in.source_url;
    if (task_uses_url(c->task) && !blank(url)) {
        buf_puts(&b, "<url>");
        put_text(&b, url, 2000);
        buf_puts(&b, "</url>\n");
        put_url_hint(&b, p->v, url);
    }
    if (c->task == LLM_REFINE && !blank(c->in.support_text)) {
        buf_puts(&b, "<support>");
        put_text(&b, c->in.support_text, SHORT_TEXT_BYTES);
        buf_puts(&b, "</support>\n");
    }
    size_t max;
    const char *text = task_text(c, &max);
    if (text) {
        buf_puts(&b, "<conversation>");
        const char *subj = c->in.subject;
        if (!blank(subj) && !strstr(text, subj)) {
            buf_puts(&b, "Subject: ");
            put_text(&b, subj, 500);
            buf_puts(&b, "\n\n");
        }
        put_text(&b, text, max);
        buf_puts(&b, "</conversation>");
    }
    return buf_detach(&b);
}

json_t *prompts_message(const char *role, const char *content) {
    json_t *m = json_object();
    json_object_set_new(m, "role", json_string(role));
    json_object_set_new(m, "content", jx_string(content));
    return m;
}

json_t *prompts_messages(const prompts *p, const llm_call *c) {
    const char *sys = prompts_system(p, c->task);
    if (!sys) return NULL;
    char *user = prompts_user(p, c);
    json_t *messages = json_array();
    json_array_append(messages, p->system_msg[c->task]);
    json_array_append_new(messages, prompts_message("user", user));
    free(user);
    return messages;
}

/* ------------------------------------------------------------ parsing */

/* The text between <tag> and </tag> starting at *pos, advancing *pos past it; NULL
 * when the block does not start there (after optional instruction lines). */
static char *take_block(const char **pos, const char *tag) {
    char open[32], close[32];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *a = strstr(*pos, open);
    if (!a) return NULL;
    const char *start = a + strlen(open);
    const char *e = strstr(start, close);
    if (!e) return NULL;
    *pos = e + strlen(close);
    return xstrndup(start, (size_t)(e - start));
}

int prompts_parse_user(const char *msg, prompt_blocks *out) {
    memset(out, 0, sizeof *out);
    out->task = -1;
    const char *t = msg ? strstr(msg, "Task: ") : NULL;
    if (!t) return -1;
    t += 6;
    size_t n = strcspn(t, "\r\n");
    char *name = xstrndup(t, n);
    out->task = prompts_task_from_name(name);
    free(name);
    /* Blocks come in a fixed order, all before the conversation; tags inside texts
     * are neutralised, so the first closing tag after an opening one ends a block. */
    const char *pos = t + n;
    const char *conv = strstr(pos, "<conversation>");
    const char *tags[] = {"arguments", "url", "support"};
    char **slots[] = {&out->args, &out->url, &out->support};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        char open[32];
        snprintf(open, sizeof open, "<%s>", tags[i]);
        const char *a = strstr(pos, open);
        if (!a || (conv && a > conv)) continue;
        const char *p = pos;
        *slots[i] = take_block(&p, tags[i]);
        if (*slots[i]) pos = p;
    }
    if (conv) {
        const char *p = conv;
        out->conversation = take_block(&p, "conversation");
    }
    return 0;
}

void prompt_blocks_free(prompt_blocks *b) {
    free(b->args);
    free(b->url);
    free(b->support);
    free(b->conversation);
    memset(b, 0, sizeof *b);
    b->task = -1;
}

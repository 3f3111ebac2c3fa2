/* The review step of the story phase: every candidate group of at least
 * STORY_MIN_GROUP conversations is reviewed once (LLM_REVIEW; offline: the rules of
 * src/llm/local_story.c), then turned into stories:
 *   keep   -> one story with every part (and the parts of groups merged into it);
 *   split  -> one story per named sub-group, the name becoming the story's
 *             distinguisher (parts the review did not see join the sub-group of the
 *             largest part);
 *   merge  -> its parts join the target group's stories (a chain is followed; a cycle
 *             or an unknown target keeps the group);
 *   reject -> no story; the decision and its reason are stored all the same.
 * An answer that fails story_review_check after the provider's repair retry keeps the
 * group as one story, and the failure is recorded on the run. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/stories.h"
#include "pipeline/story_plan.h"
#include "text/signature.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

/* Parts listed in a review request (largest first); the rest follow part 1. */
#define REVIEW_MAX_PARTS 12
/* Other groups of the same area offered as merge targets (largest first). */
#define REVIEW_MAX_OTHERS 12
#define REVIEW_INTENTS 3
#define REVIEW_SYMPTOMS 5
#define MERGE_MAX_HOPS 8

/* The candidate's parts, largest first (ties: plan order): the numbering of the
 * review request and of its answer. Caller frees. */
static size_t *parts_in_order(const splan *p, const scand *c) {
    size_t *o = xcalloc(c->nparts ? c->nparts : 1, sizeof *o);
    memcpy(o, c->parts, c->nparts * sizeof *o);
    for (size_t i = 1; i < c->nparts; i++)
        for (size_t j = i; j > 0 && p->parts[o[j]].n > p->parts[o[j - 1]].n; j--) {
            size_t t = o[j];
            o[j] = o[j - 1];
            o[j - 1] = t;
        }
    return o;
}

static int has_string(const json_t *arr, const char *s) {
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (!strcmp(json_string_value(v), s)) return 1;
    return 0;
}

/* Distinct non-empty user intents (or, for earlier-run orphan members, excerpts). */
static json_t *intents_of(const splan *p, const size_t *m, size_t n, size_t max) {
    json_t *out = json_array();
    for (size_t i = 0; i < n && json_array_size(out) < max; i++) {
        const smember *x = &p->mem[m[i]];
        const char *s = x->intent[0] ? x->intent : x->excerpt;
        if (!s[0]) continue;
        char *cut = xstrndup(s, strlen(s) > 200 ? 200 : strlen(s));
        if (!has_string(out, cut)) json_array_append_new(out, jx_string(cut));
        free(cut);
    }
    return out;
}

static json_t *symptoms_of(const splan *p, const size_t *m, size_t n, size_t max) {
    json_t *out = json_array();
    for (size_t i = 0; i < n && json_array_size(out) < max; i++) {
        size_t k;
        json_t *v;
        json_array_foreach(p->mem[m[i]].symptoms, k, v) {
            if (json_array_size(out) >= max) break;
            if (json_is_string(v) && !has_string(out, json_string_value(v)))
                json_array_append(out, v);
        }
    }
    return out;
}

json_t *story_theme_args(const vocab *v, const char *signature) {
    const vocab_theme *t = v ? vocab_find(v, signature) : NULL;
    if (!t) return NULL;
    return json_pack("{s:s, s:s}", "description", t->description ? t->description : "",
                     "engineering_fix", t->engineering_fix ? t->engineering_fix : "");
}

static json_t *review_args(const vocab *v, const splan *p, size_t ci) {
    const scand *c = &p->cands[ci];
    json_t *a = json_pack("{s:s, s:s, s:s, s:I}", "signature", c->signature, "product_area",
                          c->area, "component", c->component, "conversation_count",
                          (json_int_t)c->nconv);
    json_t *theme = story_theme_args(v, c->signature);
    if (theme) json_object_set_new(a, "theme", theme);
    size_t *o = parts_in_order(p, c);
    json_t *parts = json_array();
    for (size_t k = 0; k < c->nparts && k < REVIEW_MAX_PARTS; k++) {
        const spart *t = &p->parts[o[k]];
        json_array_append_new(
            parts, json_pack("{s:I, s:I, s:s, s:s, s:o, s:o}", "part", (json_int_t)k + 1,
                             "conversations", (json_int_t)t->n, "action_type", t->action,
                             "direction", t->direction, "user_intents",
                             intents_of(p, t->m, t->n, REVIEW_INTENTS), "symptoms",
                             symptoms_of(p, t->m, t->n, REVIEW_SYMPTOMS)));
    }
    free(o);
    json_object_set_new(a, "parts", parts);
    /* other reviewed groups of the same area, largest first */
    json_t *others = json_array();
    char *area = product_area_normalize(c->area);
    char *taken = xcalloc(p->ncands ? p->ncands : 1, 1);
    for (size_t round = 0; round < REVIEW_MAX_OTHERS; round++) {
        size_t best = SIZE_MAX;
        for (size_t j = 0; j < p->ncands; j++) {
            const scand *d = &p->cands[j];
            if (j == ci || taken[j] || !scand_reviewed(d)) continue;
            char *da = product_area_normalize(d->area);
            int same = !strcmp(da, area);
            free(da);
            if (same && (best == SIZE_MAX || d->nconv > p->cands[best].nconv)) best = j;
        }
        if (best == SIZE_MAX) break;
        taken[best] = 1;
        const scand *d = &p->cands[best];
        size_t *m = xcalloc(d->nconv ? d->nconv : 1, sizeof *m), n = 0;
        for (size_t k = 0; k < d->nparts; k++) {
            const spart *t = &p->parts[d->parts[k]];
            memcpy(m + n, t->m, t->n * sizeof *m);
            n += t->n;
        }
        json_array_append_new(others, json_pack("{s:s, s:I, s:o}", "signature", d->signature,
                                                "conversations", (json_int_t)d->nconv,
                                                "user_intents", intents_of(p, m, n, 2)));
        free(m);
    }
    free(taken);
    free(area);
    json_object_set_new(a, "other_groups", others);
    return a;
}

__attribute__((format(printf, 3, 4)))
static int bad(char *msg, size_t len, const char *fmt, ...);
static int bad(char *msg, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return -1;
}

int story_review_check(const json_t *args, const json_t *a, char *msg, size_t len) {
    static const char *const decisions[] = {"keep", "split", "merge", "reject", NULL};
    if (!json_is_object(a)) return bad(msg, len, "%s: expected a JSON object", "answer");
    const char *d = jx_str(a, "decision");
    if (!d || llm_set_index(decisions, d) < 0)
        return bad(msg, len, "decision: must be one of keep, split, merge, reject (got %s)",
                   d ? d : "nothing");
    const char *reason = jx_str(a, "reason");
    if (!reason || !reason[0]) return bad(msg, len, "%s: a non-empty string is required", "reason");
    const json_t *parts = jx_arr(args, "parts");
    size_t np = json_array_size(parts);
    if (!strcmp(d, "merge")) {
        const char *to = jx_str(a, "merge_with");
        if (!to) return bad(msg, len, "%s: required for a merge", "merge_with");
        size_t i;
        json_t *g;
        json_array_foreach(jx_arr(args, "other_groups"), i, g)
            if (jx_str(g, "signature") && !strcmp(jx_str(g, "signature"), to)) return 0;
        return bad(msg, len, "merge_with: \"%s\" is not one of other_groups", to);
    }
    if (strcmp(d, "split")) return 0;
    const json_t *split = jx_arr(a, "split");
    if (json_array_size(split) < 2)
        return bad(msg, len, "%s: a split needs at least 2 sub-groups", "split");
    char *seen = xcalloc(np + 1, 1);
    int rc = 0;
    size_t i;
    json_t *g;
    json_array_foreach(split, i, g) {
        const char *name = jx_str(g, "name");
        if (!name || !name[0]) {
            rc = bad(msg, len, "split[].name: %s", "a non-empty string is required");
            break;
        }
        for (size_t j = 0; j < i && rc == 0; j++) {
            const char *other = jx_str(json_array_get(split, j), "name");
            if (other && !strcasecmp(other, name))
                rc = bad(msg, len, "split: two sub-groups are named \"%s\"", name);
        }
        json_int_t size = 0;
        size_t k;
        json_t *num;
        json_array_foreach(jx_arr(g, "parts"), k, num) {
            json_int_t part = json_integer_value(num);
            if (!json_is_integer(num) || part < 1 || (size_t)part > np || seen[part]) {
                rc = bad(msg, len, "split: sub-group \"%s\" lists a part that does not exist or "
                                   "is already in another sub-group",
                         name);
                break;
            }
            seen[part] = 1;
            size += json_integer_value(
                json_object_get(json_array_get(parts, (size_t)part - 1), "conversations"));
        }
        if (rc == 0 && size < STORY_MIN_GROUP)
            rc = bad(msg, len, "split: sub-group \"%s\" has fewer than 3 conversations", name);
        if (rc) break;
    }
    for (size_t k = 1; rc == 0 && k <= np; k++)
        if (!seen[k]) rc = bad(msg, len, "split: %s", "every part must be in a sub-group");
    free(seen);
    return rc;
}

/* Fills the candidate's decision from a checked answer. */
static void take_answer(scand *c, const json_t *a) {
    static const char *const names[] = {"keep", "split", "merge", "reject", NULL};
    c->decision = (enum review_decision)llm_set_index(names, jx_str(a, "decision"));
    c->reason = xstrdup(jx_str(a, "reason"));
    if (c->decision == REVIEW_MERGE) c->merge_into = xstrdup(jx_str(a, "merge_with"));
    if (c->decision == REVIEW_SPLIT) c->split = json_deep_copy(jx_arr(a, "split"));
}

static size_t cand_by_signature(const splan *p, const char *sig) {
    for (size_t i = 0; i < p->ncands; i++)
        if (scand_reviewed(&p->cands[i]) && !strcmp(p->cands[i].signature, sig)) return i;
    return SIZE_MAX;
}

/* Where a merged candidate's conversations end: the first candidate of its chain that
 * is not itself a merge; SIZE_MAX for a cycle or an unknown target. */
static size_t merge_root(const splan *p, size_t ci) {
    size_t at = ci;
    for (int hop = 0; hop < MERGE_MAX_HOPS; hop++) {
        const scand *c = &p->cands[at];
        if (c->decision != REVIEW_MERGE) return at == ci ? SIZE_MAX : at;
        size_t next = cand_by_signature(p, c->merge_into);
        if (next == SIZE_MAX || next == ci) return SIZE_MAX;
        at = next;
    }
    return SIZE_MAX;
}

static sstory *new_story(splan *p, size_t ci, const char *distinguisher) {
    XGROW(p->stories, p->capstories, p->nstories + 1);
    sstory *s = &p->stories[p->nstories++];
    memset(s, 0, sizeof *s);
    s->cand = ci;
    s->distinguisher = xstrdup(distinguisher ? distinguisher : "");
    return s;
}

/* The stories of one kept or split candidate, with the parts merged into it. */
static void stories_of(splan *p, size_t ci, const size_t *extra, size_t nextra) {
    const scand *c = &p->cands[ci];
    size_t first = p->nstories;
    if (c->decision != REVIEW_SPLIT) {
        sstory *s = new_story(p, ci, "");
        for (size_t k = 0; k < c->nparts; k++) sstory_add_members_of_part(s, p, c->parts[k]);
    } else {
        size_t *o = parts_in_order(p, c);
        char *placed = xcalloc(c->nparts ? c->nparts : 1, 1);
        size_t home = first, gi;
        json_t *g;
        json_array_foreach(c->split, gi, g) {
            sstory *s = new_story(p, ci, jx_str(g, "name"));
            size_t k;
            json_t *num;
            json_array_foreach(jx_arr(g, "parts"), k, num) {
                size_t part = (size_t)json_integer_value(num) - 1;
                sstory_add_members_of_part(s, p, o[part]);
                placed[part] = 1;
                if (part == 0) home = p->nstories - 1;
            }
        }
        /* parts beyond the request's REVIEW_MAX_PARTS follow part 1 */
        for (size_t k = 0; k < c->nparts; k++)
            if (!placed[k]) sstory_add_members_of_part(&p->stories[home], p, o[k]);
        free(placed);
        free(o);
    }
    /* merged groups join the largest story of the candidate */
    size_t largest = first;
    for (size_t s = first; s < p->nstories; s++)
        if (p->stories[s].n > p->stories[largest].n) largest = s;
    for (size_t k = 0; k < nextra; k++) {
        const scand *m = &p->cands[extra[k]];
        for (size_t j = 0; j < m->nparts; j++)
            sstory_add_members_of_part(&p->stories[largest], p, m->parts[j]);
    }
}

int story_review(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                 splan *p, llm_call *ahead, size_t nahead) {
    size_t n = 0;
    size_t *which = xcalloc(p->ncands ? p->ncands : 1, sizeof *which);
    for (size_t i = 0; i < p->ncands; i++)
        if (scand_reviewed(&p->cands[i])) which[n++] = i;
    llm_call *calls = xcalloc(n ? n : 1, sizeof *calls);
    for (size_t k = 0; k < n; k++) {
        const scand *c = &p->cands[which[k]];
        calls[k].task = LLM_REVIEW;
        calls[k].args = review_args(env->vocab, p, which[k]);
        calls[k].in.conv_id = c->signature;
        calls[k].in.body = calls[k].in.digest = calls[k].in.transcript = "";
        calls[k].in.support_text = "";
        calls[k].validate = story_review_check;
    }
    llm_call **all = xcalloc(n + nahead ? n + nahead : 1, sizeof *all);
    for (size_t k = 0; k < n; k++) all[k] = &calls[k];
    for (size_t k = 0; k < nahead; k++) all[n + k] = &ahead[k];
    int stopped = story_calls_run(env, st, llm, run, all, n + nahead);
    free(all);
    const char *reviewer = strcmp(llm->ops->name, "local") ? llm->chat_model : "rules";
    for (size_t k = 0; k < n && !stopped; k++) {
        scand *c = &p->cands[which[k]];
        char why[256] = "";
        if (calls[k].status == LLM_OK &&
            story_review_check(calls[k].args, calls[k].answer, why, sizeof why) == 0) {
            take_answer(c, calls[k].answer);
            c->reviewer = xstrdup(reviewer);
            continue;
        }
        const char *err = calls[k].status == LLM_OK ? why : calls[k].error;
        c->decision = REVIEW_KEEP;
        c->reason = xasprintf("The review failed (%s); kept as one story.", err);
        c->reviewer = xstrdup("none");
        char *what = xasprintf("review of %s: %s", c->signature, err);
        if (store_put_run_error(st, run->id, PHASE_STORIES, what, wall_unix()) != STORE_OK)
            log_warn("run %lld: %s: %s", (long long)run->id, what, store_errmsg(st));
        free(what);
    }
    for (size_t k = 0; k < n; k++) {
        json_decref(calls[k].args);
        llm_call_reset_result(&calls[k]);
    }
    free(calls);
    if (stopped) {
        free(which);
        return 1;
    }
    /* Resolve merges, then make the stories of every kept or split candidate. */
    size_t *root = xcalloc(p->ncands ? p->ncands : 1, sizeof *root);
    for (size_t k = 0; k < n; k++) {
        size_t ci = which[k];
        root[ci] = SIZE_MAX;
        if (p->cands[ci].decision != REVIEW_MERGE) continue;
        root[ci] = merge_root(p, ci);
        if (root[ci] == SIZE_MAX) { /* a cycle or an unknown target: kept */
            scand *c = &p->cands[ci];
            char *r = xasprintf("%s (The merge target %s is not a reviewed group of this run; "
                                "kept as one story.)",
                                c->reason, c->merge_into);
            free(c->reason);
            c->reason = r;
            c->decision = REVIEW_KEEP;
        }
    }
    size_t *extra = xcalloc(p->ncands ? p->ncands : 1, sizeof *extra);
    for (size_t k = 0; k < n; k++) {
        size_t ci = which[k];
        const scand *c = &p->cands[ci];
        if (c->decision == REVIEW_MERGE || c->decision == REVIEW_REJECT) continue;
        size_t ne = 0;
        for (size_t j = 0; j < n; j++)
            if (p->cands[which[j]].decision == REVIEW_MERGE && root[which[j]] == ci)
                extra[ne++] = which[j];
        stories_of(p, ci, extra, ne);
    }
    free(extra);
    free(root);
    free(which);
    return 0;
}

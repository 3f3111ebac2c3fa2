/* Story phase (original-phases.md §7–8, redesigned for issue 12):
 *  1. Plan: partition the run's passed themes so that no block exceeds
 *     CLUSTER_DIRECT_MAX (everything at once when small; else by product area, then by
 *     signature, then by 2-means bisection), cluster each block (complete linkage on
 *     cosine distance, threshold 0.55) and split each cluster by (action_type,
 *     direction): the parts. Themes without an embedding are grouped by signature.
 *  2. Candidates: every part of one signature forms one candidate group, so two
 *     clusters of a signature never become twin stories unless a review splits them.
 *     A candidate under 3 conversations feeds the orphan of its signature, unless an
 *     orphan of an earlier run reaches 3 with it: then it graduates as a candidate.
 *  3. Review (story_review.c): keep, split into named sub-groups, merge into another
 *     candidate, or reject, with a reason; one LLM_REVIEW call per candidate
 *     (offline: rules). Decisions are stored, rejected ones too.
 *  4. Identity: each resulting story is matched to the stories of earlier runs (same
 *     signature or a canonical equivalent, same distinguisher): an open or exported
 *     match grows with the new evidence, a rejected one absorbs it and stays
 *     rejected, a closed one is never reopened (a recurrence is a new story).
 *  5. Written stories (story_write.c) for the new ones: title, problem, who is
 *     affected, acceptance criteria; titles distinct within the run. Against a paid
 *     endpoint the texts of the stories the reviews are expected to make are asked
 *     in the reviews' round (ask_ahead), so step 5 is mostly answered by the cache.
 *  6. Everything is written in one transaction with stories_done, so the phase is
 *     all-or-nothing and a resume simply runs it again. */
#include "pipeline/stories.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/cluster.h"
#include "pipeline/engine.h"
#include "pipeline/story_plan.h"
#include "store/store_report.h"
#include "text/signature.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strmap.h"
#include "util/timeutil.h"

/* How often long call loops look for a stop in the database (the engine's rhythm). */
#define STORY_STOP_CHECK_MS 250

const char *review_decision_name(enum review_decision d) {
    static const char *const names[] = {"keep", "split", "merge", "reject"};
    return (unsigned)d < 4 ? names[d] : "keep";
}

/* ---- the plan ------------------------------------------------------------------- */

static void member_free(smember *m) {
    free(m->id);
    free(m->excerpt);
    free(m->sig);
    free(m->area);
    free(m->component);
    free(m->intent);
    free(m->action);
    free(m->direction);
    json_decref(m->symptoms);
}

void splan_free(splan *p) {
    for (size_t i = 0; i < p->nmem; i++) member_free(&p->mem[i]);
    free(p->mem);
    for (size_t i = 0; i < p->nparts; i++) {
        spart *t = &p->parts[i];
        free(t->m);
        free(t->signature);
        free(t->cluster_id);
        free(t->method);
        free(t->action);
        free(t->direction);
    }
    free(p->parts);
    for (size_t i = 0; i < p->ncands; i++) {
        scand *c = &p->cands[i];
        free(c->signature);
        free(c->area);
        free(c->component);
        free(c->parts);
        free(c->reason);
        free(c->reviewer);
        free(c->merge_into);
        json_decref(c->split);
    }
    free(p->cands);
    for (size_t i = 0; i < p->nstories; i++) sstory_free(&p->stories[i]);
    free(p->stories);
    free(p->small);
}

void sstory_free(sstory *t) {
    free(t->distinguisher);
    free(t->m);
    free(t->action);
    free(t->direction);
    free(t->kind);
    free(t->title);
    free(t->problem);
    free(t->affected);
    json_decref(t->criteria);
    free(t->match_status);
}

int scand_reviewed(const scand *c) { return c->nconv >= STORY_MIN_GROUP || c->orphan_id > 0; }

void sstory_add_members_of_part(sstory *s, const splan *p, size_t part) {
    const spart *t = &p->parts[part];
    s->m = xrealloc(s->m, (s->n + t->n) * sizeof *s->m);
    memcpy(s->m + s->n, t->m, t->n * sizeof *s->m);
    s->n += t->n;
}

/* The most common string among the members (ties: alphabetical). Counted in a map:
 * a candidate holds every cluster of its signature, so it can be large. */
static const char *majority_of(const splan *p, const size_t *m, size_t n, size_t field_off,
                               double *share) {
    strmap_t counts = STRMAP_INIT;
    const char *best = NULL;
    uintptr_t bestc = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = *(char *const *)((const char *)&p->mem[m[i]] + field_off);
        uintptr_t c = (uintptr_t)strmap_get(&counts, v) + 1;
        strmap_put(&counts, v, (void *)c);
        if (c > bestc || (c == bestc && best && strcmp(v, best) < 0)) {
            best = v;
            bestc = c;
        }
    }
    strmap_free(&counts, NULL);
    if (share) *share = n ? (double)bestc / (double)n : 0;
    return best ? best : "unknown";
}
#define MAJORITY(p, m, n, field, share) majority_of(p, m, n, offsetof(smember, field), share)

static smember *new_member(splan *p) {
    XGROW(p->mem, p->capmem, p->nmem + 1);
    smember *x = &p->mem[p->nmem++];
    memset(x, 0, sizeof *x);
    x->typicality = 1.0;
    return x;
}

/* A part from the inputs idx[0..n) (one cluster after the facet split): its members
 * join the plan with their typicality (cosine to the part's centroid), so the
 * vectors can be freed with the partition. */
static void add_part(splan *p, story_input *in, const size_t *idx, size_t n,
                     const char *cluster_id, const char *method) {
    XGROW(p->parts, p->capparts, p->nparts + 1);
    spart *t = &p->parts[p->nparts++];
    memset(t, 0, sizeof *t);
    t->m = xcalloc(n ? n : 1, sizeof *t->m);
    t->n = n;
    int dim = 0;
    for (size_t i = 0; i < n && !dim; i++) dim = in[idx[i]].vec ? in[idx[i]].dim : 0;
    float *centroid = dim ? xcalloc((size_t)dim, sizeof *centroid) : NULL;
    for (size_t i = 0; centroid && i < n; i++)
        if (in[idx[i]].vec && in[idx[i]].dim == dim)
            for (int d = 0; d < dim; d++) centroid[d] += in[idx[i]].vec[d];
    for (size_t i = 0; i < n; i++) {
        story_input *x = &in[idx[i]];
        t->m[i] = p->nmem;
        smember *m = new_member(p);
        m->id = xstrdup(x->conversation_id);
        m->excerpt = xstrdup(x->excerpt ? x->excerpt : "");
        m->created_at = x->created_at;
        m->sig = xstrdup(x->signature);
        m->area = xstrdup(x->product_area);
        m->component = xstrdup(x->component);
        m->intent = xstrdup(x->user_intent ? x->user_intent : "");
        m->action = xstrdup(x->action_type);
        m->direction = xstrdup(x->direction);
        json_t *sym = json_loads(x->symptoms_json ? x->symptoms_json : "[]", 0, NULL);
        m->symptoms = json_is_array(sym) ? sym : json_array();
        if (!json_is_array(sym)) json_decref(sym);
        if (centroid && x->vec && x->dim == dim)
            m->typicality = cosine_similarity(x->vec, centroid, (size_t)dim);
    }
    free(centroid);
    t->signature = xstrdup(MAJORITY(p, t->m, n, sig, NULL));
    t->action = xstrdup(n ? in[idx[0]].action_type : "unknown");
    t->direction = xstrdup(n ? in[idx[0]].direction : "neutral");
    t->cluster_id = xstrdup(cluster_id);
    t->method = xstrdup(method);
}

/* Splits the members idx[0..n) by (action_type, direction), in first-seen order, and
 * adds one group per pair. */
static void split_by_facets(splan *p, story_input *in, size_t *idx, size_t n, const char *base,
                            const char *method) {
    size_t *sub = xcalloc(n, sizeof *sub);
    char *taken = xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        if (taken[i]) continue;
        size_t k = 0;
        story_input *a = &in[idx[i]];
        for (size_t j = i; j < n; j++) {
            story_input *b = &in[idx[j]];
            if (!taken[j] && !strcmp(a->action_type, b->action_type) &&
                !strcmp(a->direction, b->direction)) {
                taken[j] = 1;
                sub[k++] = idx[j];
            }
        }
        char *cid = xasprintf("%s_facet_%s_%s", base, a->action_type, a->direction);
        add_part(p, in, sub, k, cid, method);
        free(cid);
    }
    free(sub);
    free(taken);
}

/* Clusters one block (members idx[0..n) of in) and adds its groups to the plan. */
static int cluster_block(splan *p, story_input *in, size_t *idx, size_t n, const char *block) {
    size_t nv = 0;
    for (size_t i = 0; i < n; i++) nv += in[idx[i]].vec != NULL;
    size_t *with = xcalloc(n ? n : 1, sizeof *with), *without = xcalloc(n ? n : 1, sizeof *without);
    size_t nw = 0, nwo = 0;
    int dim = 0;
    for (size_t i = 0; i < n; i++) {
        story_input *x = &in[idx[i]];
        if (x->vec && (dim == 0 || x->dim == dim)) {
            dim = x->dim;
            with[nw++] = idx[i];
        } else {
            without[nwo++] = idx[i];
        }
    }
    (void)nv;
    int rc = 0;
    if (nw > 0) {
        float *m = xmalloc(nw * (size_t)dim * sizeof(float));
        for (size_t i = 0; i < nw; i++)
            memcpy(m + i * (size_t)dim, in[with[i]].vec, (size_t)dim * sizeof(float));
        int *labels = xcalloc(nw, sizeof(int));
        int k = cluster_complete_linkage(m, nw, (size_t)dim, CLUSTER_DEFAULT_THRESHOLD, labels);
        free(m);
        if (k < 0) {
            rc = -1;
        } else {
            size_t *members = xcalloc(nw, sizeof *members);
            for (int c = 0; c < k; c++) {
                size_t cnt = 0;
                for (size_t i = 0; i < nw; i++)
                    if (labels[i] == c) members[cnt++] = with[i];
                char *base = xasprintf("%s_emb_%d", block, c);
                split_by_facets(p, in, members, cnt, base, "hybrid_cluster");
                free(base);
            }
            free(members);
        }
        free(labels);
    }
    /* No embedding: group by signature, then facets. */
    char *done = xcalloc(nwo ? nwo : 1, 1);
    size_t *sub = xcalloc(nwo ? nwo : 1, sizeof *sub);
    for (size_t i = 0; i < nwo; i++) {
        if (done[i]) continue;
        size_t k = 0;
        for (size_t j = i; j < nwo; j++)
            if (!done[j] && !strcmp(in[without[i]].signature, in[without[j]].signature)) {
                done[j] = 1;
                sub[k++] = without[j];
            }
        char *base = xasprintf("%s_sig_%s", block, in[without[i]].signature);
        split_by_facets(p, in, sub, k, base, "signature");
        free(base);
    }
    free(done);
    free(sub);
    free(with);
    free(without);
    return rc;
}

/* Plans one partition (an area, or everything), splitting further when too large. */
static int plan_partition(splan *p, story_input *in, size_t n, const char *name) {
    size_t *idx = xcalloc(n ? n : 1, sizeof *idx);
    int rc = 0;
    if (n <= CLUSTER_DIRECT_MAX) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        rc = cluster_block(p, in, idx, n, name);
        free(idx);
        return rc;
    }
    /* Too large: by signature, then bisection of any still-oversized signature. */
    char *done = xcalloc(n, 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (done[i]) continue;
        size_t k = 0;
        for (size_t j = i; j < n; j++)
            if (!done[j] && !strcmp(in[i].signature, in[j].signature)) {
                done[j] = 1;
                idx[k++] = j;
            }
        char *bname = xasprintf("%s_%s", name, in[i].signature);
        if (k <= CLUSTER_DIRECT_MAX) {
            rc = cluster_block(p, in, idx, k, bname);
        } else {
            int dim = in[idx[0]].dim;
            float *m = xcalloc(k * (size_t)(dim > 0 ? dim : 1), sizeof(float));
            for (size_t a = 0; a < k; a++)
                if (in[idx[a]].vec && in[idx[a]].dim == dim)
                    memcpy(m + a * (size_t)dim, in[idx[a]].vec, (size_t)dim * sizeof(float));
            int *blk = xcalloc(k, sizeof(int));
            int nb = cluster_bisect(m, k, (size_t)(dim > 0 ? dim : 1), CLUSTER_DIRECT_MAX, blk);
            free(m);
            size_t *sub = xcalloc(k, sizeof *sub);
            for (int b = 0; b < nb && rc == 0; b++) {
                size_t c = 0;
                for (size_t a = 0; a < k; a++)
                    if (blk[a] == b) sub[c++] = idx[a];
                char *sb = xasprintf("%s_b%d", bname, b);
                rc = cluster_block(p, in, sub, c, sb);
                free(sb);
            }
            free(sub);
            free(blk);
        }
        free(bname);
    }
    free(done);
    free(idx);
    return rc;
}




/* Whether to give up building stories. A run's own story phase (status running) stops
 * with the run; stories created by hand on a finished run have no stop of their own in
 * the database (its status is completed or stopped, which must not read as "stop"), so
 * only the in-process flag counts there. */
static int stories_stop_requested(const run_env *env, store *st, const run_record *run) {
    if (!pipeline_run_finished(run)) return engine_stop_requested(env, st, run->id);
    return env->stop_flag && atomic_load(env->stop_flag);
}

static int cluster_run(const run_env *env, store *st, const run_record *run, splan *p,
                       char *err, size_t errlen) {
    char **areas = NULL;
    int64_t *counts = NULL;
    size_t na = 0;
    if (store_story_partitions(st, run->id, &areas, &counts, &na)) {
        snprintf(err, errlen, "%s", store_errmsg(st));
        return -1;
    }
    int64_t total = 0;
    for (size_t i = 0; i < na; i++) total += counts[i];
    int rc = 0;
    /* Small runs are clustered in one block: cross-area clusters are possible, as in
     * the original; large ones partition by area first. */
    size_t parts = total <= CLUSTER_DIRECT_MAX ? (na ? 1 : 0) : na;
    for (size_t i = 0; i < parts && rc == 0; i++) {
        if (stories_stop_requested(env, st, run)) {
            rc = 1;
            break;
        }
        const char *area = total <= CLUSTER_DIRECT_MAX ? NULL : areas[i];
        story_input *in = NULL;
        size_t n = 0;
        if (store_story_inputs(st, run->id, area, &in, &n)) {
            snprintf(err, errlen, "%s", store_errmsg(st));
            rc = -1;
            break;
        }
        char *name = area ? signature_normalize(area) : xstrdup("all");
        if (plan_partition(p, in, n, name) != 0) {
            snprintf(err, errlen, "clustering %s failed", name);
            rc = -1;
        }
        free(name);
        story_inputs_free(in, n);
    }
    for (size_t i = 0; i < na; i++) free(areas[i]);
    free(areas);
    free(counts);
    return rc;
}

/* ---- candidates ------------------------------------------------------------------ */

static void cand_add_part(scand *c, const splan *p, size_t part) {
    c->parts = xrealloc(c->parts, (c->nparts + 1) * sizeof *c->parts);
    c->parts[c->nparts++] = part;
    c->nconv += p->parts[part].n;
}

static void cand_members(const splan *p, const scand *c, size_t **m, size_t *n) {
    *n = 0;
    *m = xcalloc(c->nconv ? c->nconv : 1, sizeof **m);
    for (size_t k = 0; k < c->nparts; k++) {
        const spart *t = &p->parts[c->parts[k]];
        memcpy(*m + *n, t->m, t->n * sizeof **m);
        *n += t->n;
    }
}

/* An orphan of an earlier run that reaches STORY_MIN_GROUP with this run's small
 * candidate graduates: its earlier members join the candidate as one more part. */
static int graduate_orphan(store *st, const run_record *run, splan *p, size_t ci) {
    scand *c = &p->cands[ci];
    int64_t oid, first_run, count;
    int rc = store_orphan_find(st, c->signature, &oid, &first_run, &count);
    if (rc == STORE_NOTFOUND) return STORE_OK;
    if (rc != STORE_FOUND) return rc;
    if (first_run == run->id || count + (int64_t)c->nconv < STORY_MIN_GROUP) return STORE_OK;
    char **ids = NULL, **ex = NULL;
    size_t n = 0;
    if ((rc = store_orphan_members(st, oid, &ids, &ex, &n)) != STORE_OK) return rc;
    size_t *cm, cn;
    cand_members(p, c, &cm, &cn);
    size_t *fresh = xcalloc(n ? n : 1, sizeof *fresh), nf = 0;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t j = 0; j < cn && !dup; j++) dup = !strcmp(p->mem[cm[j]].id, ids[i]);
        if (dup) continue;
        smember *m = new_member(p);
        m->id = xstrdup(ids[i]);
        m->excerpt = xstrdup(ex[i] ? ex[i] : "");
        m->sig = xstrdup(c->signature);
        m->area = xstrdup(c->area);
        m->component = xstrdup(c->component);
        m->intent = xstrdup("");
        m->action = xstrdup("unknown");
        m->direction = xstrdup("neutral");
        m->symptoms = json_array();
        m->from_orphan = 1;
        fresh[nf++] = p->nmem - 1;
    }
    free(cm);
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
        free(ex[i]);
    }
    free(ids);
    free(ex);
    if (nf + cn >= STORY_MIN_GROUP) {
        XGROW(p->parts, p->capparts, p->nparts + 1);
        spart *t = &p->parts[p->nparts++];
        memset(t, 0, sizeof *t);
        t->m = fresh;
        t->n = nf;
        t->signature = xstrdup(c->signature);
        t->cluster_id = xasprintf("orphan_%lld", (long long)oid);
        t->method = xstrdup("orphan_graduation");
        t->action = xstrdup("unknown");
        t->direction = xstrdup("neutral");
        c = &p->cands[ci];
        cand_add_part(c, p, p->nparts - 1);
        c->orphan_id = oid;
    } else {
        free(fresh);
    }
    return STORE_OK;
}

/* Every part of one signature forms one candidate; candidates under STORY_MIN_GROUP
 * (after any orphan graduation) keep their parts for the orphans. */
static int form_candidates(store *st, const run_record *run, splan *p) {
    strmap_t by_sig = STRMAP_INIT;
    size_t nparts = p->nparts; /* graduations append parts */
    for (size_t i = 0; i < nparts; i++) {
        const char *sig = p->parts[i].signature;
        uintptr_t k = (uintptr_t)strmap_get(&by_sig, sig);
        if (!k) {
            XGROW(p->cands, p->capcands, p->ncands + 1);
            scand *c = &p->cands[p->ncands++];
            memset(c, 0, sizeof *c);
            c->signature = xstrdup(sig);
            k = p->ncands;
            strmap_put(&by_sig, sig, (void *)k);
        }
        cand_add_part(&p->cands[k - 1], p, i);
    }
    strmap_free(&by_sig, NULL);
    int rc = STORE_OK;
    for (size_t i = 0; i < p->ncands && rc == STORE_OK; i++) {
        scand *c = &p->cands[i];
        size_t *m, n;
        cand_members(p, c, &m, &n);
        c->area = xstrdup(MAJORITY(p, m, n, area, NULL));
        c->component = xstrdup(MAJORITY(p, m, n, component, NULL));
        free(m);
        if (c->nconv < STORY_MIN_GROUP) rc = graduate_orphan(st, run, p, i);
    }
    return rc;
}

/* ---- identity across runs --------------------------------------------------------- */

/* The canonical form of a signature: normalised, following the vocabulary's merges. */
static char *canonical_signature(const vocab *v, const char *sig) {
    const vocab_theme *t = v ? vocab_find(v, sig) : NULL;
    return signature_normalize(t ? t->signature : sig);
}

/* The stored story a planned one continues: same canonical signature (or a
 * near-duplicate in the same product area) and the same distinguisher; open and
 * exported stories first, then rejected ones. A closed one only sets recurs_after. */
static void match_story(const vocab *v, story_ref *refs, size_t nrefs, char *used,
                        const char *sig, const char *area, const char *dist, sstory *s) {
    char *want = canonical_signature(v, sig);
    char *want_area = product_area_normalize(area);
    int best_rank = 0;
    size_t best = 0;
    for (size_t i = 0; i < nrefs; i++) {
        if (used[i] || strcmp(refs[i].distinguisher, dist ? dist : "")) continue;
        char *have = canonical_signature(v, refs[i].signature);
        char *have_area = product_area_normalize(refs[i].product_area);
        int same = !strcmp(have, want);
        int near = !same && !strcmp(have_area, want_area) && signature_near_duplicate(have, want);
        free(have);
        free(have_area);
        if (!same && !near) continue;
        const char *stt = refs[i].status;
        if (!strcmp(stt, "closed")) {
            if (refs[i].id > s->recurs_after) s->recurs_after = refs[i].id;
            continue;
        }
        /* exact before near, open/exported before rejected, newest last wins ties */
        int rank = (same ? 4 : 2) + (strcmp(stt, "rejected") ? 1 : 0);
        if (rank >= best_rank) {
            best_rank = rank;
            best = i;
        }
    }
    if (best_rank) {
        used[best] = 1;
        s->match_id = refs[best].id;
        s->match_status = xstrdup(refs[best].status);
        free(s->title);
        s->title = xstrdup(refs[best].title);
    }
    free(want);
    free(want_area);
}

static const char *kind_of_action(const char *action) {
    if (!strcmp(action, "feature_request")) return "feature";
    if (!strcmp(action, "how_to_question") || !strcmp(action, "inquiry")) return "question";
    return "bug";
}

static int by_typicality_desc(const void *a, const void *b, void *ctx) {
    const splan *p = ctx;
    double x = p->mem[*(const size_t *)a].typicality, y = p->mem[*(const size_t *)b].typicality;
    if (x != y) return x > y ? -1 : 1;
    return strcmp(p->mem[*(const size_t *)a].id, p->mem[*(const size_t *)b].id);
}

/* Facets, kind and confidence of a planned story from its members and parts. */
static void finish_story(splan *p, sstory *s) {
    qsort_r(s->m, s->n, sizeof *s->m, by_typicality_desc, p);
    s->action = xstrdup(MAJORITY(p, s->m, s->n, action, NULL));
    s->direction = xstrdup(MAJORITY(p, s->m, s->n, direction, NULL));
    s->kind = xstrdup(kind_of_action(s->action));
    double share;
    (void)MAJORITY(p, s->m, s->n, sig, &share);
    /* Confidence 0–100: how much the members agree on the signature, weighted by how
     * close they are in embedding space (mean typicality). */
    double typ = 0;
    for (size_t i = 0; i < s->n; i++) typ += p->mem[s->m[i]].typicality;
    typ = s->n ? typ / (double)s->n : 1;
    s->confidence = round(1000.0 * share * (0.5 + 0.5 * typ)) / 10.0;
}

static int match_all(const run_env *env, store *st, splan *p) {
    story_ref *refs = NULL;
    size_t nrefs = 0;
    int rc = store_story_refs(st, &refs, &nrefs);
    if (rc != STORE_OK) return rc;
    char *used = xcalloc(nrefs ? nrefs : 1, 1);
    for (size_t i = 0; i < p->nstories; i++) {
        sstory *s = &p->stories[i];
        const scand *c = &p->cands[s->cand];
        finish_story(p, s);
        match_story(env->vocab, refs, nrefs, used, c->signature, c->area, s->distinguisher, s);
    }
    /* A candidate under STORY_MIN_GROUP (never reviewed) whose signature has a live
     * story grows it; otherwise its parts feed the orphans. */
    for (size_t ci = 0; ci < p->ncands; ci++) {
        const scand *c = &p->cands[ci];
        if (c->reason) continue;
        sstory probe = {0};
        match_story(env->vocab, refs, nrefs, used, c->signature, c->area, "", &probe);
        if (probe.match_id > 0) {
            XGROW(p->stories, p->capstories, p->nstories + 1);
            sstory *s = &p->stories[p->nstories++];
            *s = probe;
            s->cand = ci;
            s->distinguisher = xstrdup("");
            for (size_t k = 0; k < c->nparts; k++) sstory_add_members_of_part(s, p, c->parts[k]);
            finish_story(p, s);
            continue;
        }
        free(probe.title);
        for (size_t k = 0; k < c->nparts; k++) {
            XGROW(p->small, p->capsmall, p->nsmall + 1);
            p->small[p->nsmall++] = c->parts[k];
        }
    }
    free(used);
    story_refs_free(refs, nrefs);
    return STORE_OK;
}

/* ---- story texts asked ahead -------------------------------------------------------- */

/* Against a paid endpoint, the text of each story a review is expected to make is
 * asked in the same round as the reviews instead of in a round after them: the story
 * phase waits for every theme, so its rounds are time no other work hides (two
 * endpoint latencies before, one now). The expectation is the common case: the review
 * keeps the group whole, and the story is new (it matches no stored story). story_write
 * then asks for the texts of the stories the reviews made; for an expected story the
 * request is byte-identical (story_write_call) and the response cache answers it. A
 * review that splits, merges or rejects the group, or a merge into it, leaves the text
 * asked ahead unused: one story request paid for nothing. */
typedef struct story_ahead {
    llm_call *calls;
    size_t *cand; /* the candidate each call expects kept whole */
    size_t n;
} story_ahead;

static int ask_ahead(const run_env *env, store *st, const llm_provider *llm, splan *p,
                     story_ahead *a) {
    memset(a, 0, sizeof *a);
    if (!llm->paid_answers) return STORE_OK;
    story_ref *refs = NULL;
    size_t nrefs = 0;
    int rc = store_story_refs(st, &refs, &nrefs);
    if (rc != STORE_OK) return rc;
    char *used = xcalloc(nrefs ? nrefs : 1, 1);
    a->calls = xcalloc(p->ncands ? p->ncands : 1, sizeof *a->calls);
    a->cand = xcalloc(p->ncands ? p->ncands : 1, sizeof *a->cand);
    for (size_t ci = 0; ci < p->ncands; ci++) { /* match_all's order */
        const scand *c = &p->cands[ci];
        if (!scand_reviewed(c)) continue;
        sstory kept = {.cand = ci, .distinguisher = xstrdup("")};
        for (size_t k = 0; k < c->nparts; k++) sstory_add_members_of_part(&kept, p, c->parts[k]);
        finish_story(p, &kept);
        match_story(env->vocab, refs, nrefs, used, c->signature, c->area, "", &kept);
        if (kept.match_id == 0) {
            story_write_call(env->vocab, p, &kept, &a->calls[a->n]);
            a->cand[a->n++] = ci;
        }
        sstory_free(&kept);
    }
    free(used);
    story_refs_free(refs, nrefs);
    return STORE_OK;
}

/* The answers are in the response cache: the calls go once the reviews are done. */
static void ahead_free_calls(story_ahead *a) {
    for (size_t k = 0; k < a->n; k++) {
        json_decref(a->calls[k].args);
        llm_call_reset_result(&a->calls[k]);
    }
    free(a->calls);
    a->calls = NULL;
}

/* Texts asked ahead that no story of the plan used. */
static size_t ahead_unused(const splan *p, const story_ahead *a) {
    size_t unused = 0;
    for (size_t k = 0; k < a->n; k++) {
        const scand *c = &p->cands[a->cand[k]];
        int used = 0;
        for (size_t i = 0; i < p->nstories && !used; i++) {
            const sstory *s = &p->stories[i];
            used = s->cand == a->cand[k] && !s->distinguisher[0] && s->match_id == 0 &&
                   s->n == c->nconv;
        }
        unused += !used;
    }
    return unused;
}

/* ---- calls ------------------------------------------------------------------------ */

/* Records the usage of n completed calls in one row update. */
static void record_story_usage(store *st, llm_provider *llm, const run_record *run,
                               llm_call *const *calls, size_t n) {
    int64_t requests = 0, hits = 0, prompt = 0, cached = 0, completion = 0;
    double cost = 0;
    for (size_t i = 0; i < n; i++) {
        requests += calls[i]->attempts;
        hits += calls[i]->from_cache;
        prompt += calls[i]->prompt_tokens;
        cached += calls[i]->cached_tokens;
        completion += calls[i]->completion_tokens;
        cost += llm_call_cost_usd(llm, calls[i]);
    }
    if ((requests || hits) &&
        store_run_add_usage(st, run->id, PHASE_STORIES, requests, hits, prompt, cached,
                            completion, cost) != STORE_OK)
        log_warn("run %lld: recording story usage: %s", (long long)run->id, store_errmsg(st));
}

/* The calls completed since the last poll, for their usage. */
typedef struct story_done_list {
    llm_call **calls;
    size_t n;
} story_done_list;

static void story_call_done(llm_call *call) {
    story_done_list *d = call->user;
    d->calls[d->n++] = call;
}

int story_calls_run(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                    llm_call *const *calls, size_t n) {
    size_t next = 0;
    int conc = run->concurrency > 0 ? (int)run->concurrency : 1;
    int stopped = 0;
    int64_t last_stop_check = mono_ms();
    /* Usage is recorded after every poll, for the calls it completed: a crash mid-round
     * must not leave answers paid for out of the run's usage. */
    story_done_list done = {xcalloc(n ? n : 1, sizeof(llm_call *)), 0};
    for (size_t i = 0; i < n; i++) {
        calls[i]->done = story_call_done;
        calls[i]->user = &done;
    }
    while (next < n || llm_pending(llm) > 0) {
        if (mono_ms() - last_stop_check >= STORY_STOP_CHECK_MS) {
            last_stop_check = mono_ms();
            if (stories_stop_requested(env, st, run)) {
                stopped = 1;
                next = n; /* the rest are never sent */
                llm->ops->cancel_all(llm);
                continue;
            }
        }
        while (next < n && llm_pending(llm) < (size_t)conc) {
            if (llm_submit(llm, calls[next]) != 0) calls[next]->status = LLM_ERR_HTTP;
            next++;
        }
        int polled = llm_poll(llm, 50);
        if (done.n) record_story_usage(st, llm, run, done.calls, done.n);
        done.n = 0;
        if (polled < 0) break;
    }
    /* cancel_all completes what it cancels at once */
    if (done.n) record_story_usage(st, llm, run, done.calls, done.n);
    free(done.calls);
    return stopped || stories_stop_requested(env, st, run);
}

/* ---- writing ---------------------------------------------------------------------- */

static int render_and_set(store *st, int64_t story_id, const char *title, int64_t now) {
    json_t *story = NULL;
    int rc = store_story_detail_json(st, story_id, &story);
    if (rc != STORE_FOUND) return rc < 0 ? rc : STORE_ERR;
    char *desc = story_render_description(story);
    json_decref(story);
    rc = store_story_set_text(st, story_id, title, desc, now);
    free(desc);
    return rc;
}

static int write_story(store *st, const run_record *run, const splan *p, const sstory *s,
                       int64_t now) {
    char **ids = xcalloc(s->n ? s->n : 1, sizeof *ids);
    char **ex = xcalloc(s->n ? s->n : 1, sizeof *ex);
    char **sigs = xcalloc(s->n ? s->n : 1, sizeof *sigs);
    for (size_t i = 0; i < s->n; i++) {
        ids[i] = p->mem[s->m[i]].id;
        ex[i] = p->mem[s->m[i]].excerpt;
        sigs[i] = p->mem[s->m[i]].sig;
    }
    const scand *c = &p->cands[s->cand];
    int rc;
    int64_t story_id = s->match_id;
    if (story_id > 0) {
        int64_t added = 0;
        rc = store_story_add_evidence(st, story_id, run->id, ids, ex, sigs, s->n, now, &added);
        if (rc == STORE_OK) rc = render_and_set(st, story_id, NULL, now);
    } else {
        const spart *first = &p->parts[c->parts[0]];
        char *criteria = jx_dump(s->criteria);
        /* a recurrence of a closed story says so: whoever closed it wants to know */
        char *problem = s->recurs_after > 0
                            ? xasprintf("Recurs after story %lld was closed. %s",
                                        (long long)s->recurs_after, s->problem ? s->problem : "")
                            : NULL;
        story_new sn = {0};
        sn.run_id = run->id;
        sn.title = s->title;
        sn.signature = c->signature;
        sn.product_area = c->area;
        sn.component = c->component;
        sn.action_type = s->action;
        sn.direction = s->direction;
        sn.grouping_method = c->orphan_id > 0 ? "orphan_graduation" : first->method;
        sn.cluster_id = first->cluster_id;
        sn.origin = c->orphan_id > 0 ? "graduated" : "cluster";
        sn.distinguisher = s->distinguisher;
        sn.problem = problem ? problem : s->problem;
        sn.affected = s->affected;
        sn.criteria_json = criteria;
        sn.kind = s->kind;
        sn.review_decision = review_decision_name(c->decision);
        sn.review_reason = c->reason;
        sn.confidence = s->confidence;
        sn.conversation_ids = ids;
        sn.excerpts = ex;
        sn.signatures = sigs;
        sn.n = s->n;
        rc = store_story_insert(st, &sn, now, &story_id);
        free(criteria);
        free(problem);
        if (rc == STORE_OK) rc = render_and_set(st, story_id, NULL, now);
    }
    for (size_t i = 0; rc == STORE_OK && i < s->n; i++)
        rc = store_orphan_remove_conversation(st, ids[i]);
    if (rc == STORE_OK && c->orphan_id > 0)
        rc = store_orphan_graduate(st, c->orphan_id, story_id, now);
    free(ids);
    free(ex);
    free(sigs);
    return rc;
}

/* A small part: each conversation joins the orphan of its own theme signature. */
static int write_orphans(store *st, const run_record *run, const splan *p, const spart *t,
                         int64_t now) {
    for (size_t i = 0; i < t->n; i++) {
        const smember *m = &p->mem[t->m[i]];
        orphan_key k = {m->sig, m->area, m->component, t->action, t->direction, m->intent};
        int64_t oid;
        int created, added;
        int rc = store_orphan_get_or_create(st, &k, run->id, now, &oid, &created);
        if (rc == STORE_OK)
            rc = store_orphan_add_member(st, oid, m->id, run->id, m->excerpt, now, &added);
        if (rc) return rc;
    }
    return STORE_OK;
}

static int write_reviews(store *st, const run_record *run, const splan *p, int64_t now) {
    for (size_t i = 0; i < p->ncands; i++) {
        const scand *c = &p->cands[i];
        if (!c->reason) continue; /* not reviewed: under STORY_MIN_GROUP */
        char *parts = c->split ? jx_dump(c->split) : NULL;
        review_row r = {run->id,  c->area,        c->signature, review_decision_name(c->decision),
                        c->reason, (int64_t)c->nconv, c->merge_into, parts,
                        c->reviewer};
        int rc = store_review_put(st, &r, now);
        free(parts);
        if (rc) return rc;
    }
    return STORE_OK;
}

static int write_plan(store *st, const run_record *run, const splan *p) {
    int64_t now = wall_unix();
    int rc = store_begin(st);
    if (rc == STORE_OK) rc = write_reviews(st, run, p, now);
    /* Stories first: their conversations leave the active orphans. */
    for (size_t i = 0; rc == STORE_OK && i < p->nstories; i++)
        rc = write_story(st, run, p, &p->stories[i], now);
    for (size_t i = 0; rc == STORE_OK && i < p->nsmall; i++)
        rc = write_orphans(st, run, p, &p->parts[p->small[i]], now);
    if (rc == STORE_OK) rc = store_run_set_stories_done(st, run->id);
    if (rc == STORE_OK) return store_commit(st);
    store_rollback(st);
    return rc;
}

int stories_run(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                char *err, size_t errlen) {
    if (run->stories_done) return 0;
    splan p = {0};
    int rc = cluster_run(env, st, run, &p, err, errlen);
    if (rc == 0 && form_candidates(st, run, &p) != STORE_OK) {
        snprintf(err, errlen, "planning stories: %s", store_errmsg(st));
        rc = -1;
    }
    story_ahead ahead = {0};
    if (rc == 0 && ask_ahead(env, st, llm, &p, &ahead) != STORE_OK) {
        snprintf(err, errlen, "matching stories: %s", store_errmsg(st));
        rc = -1;
    }
    if (rc == 0) rc = story_review(env, st, llm, run, &p, ahead.calls, ahead.n);
    ahead_free_calls(&ahead);
    if (rc == 0 && match_all(env, st, &p) != STORE_OK) {
        snprintf(err, errlen, "matching stories: %s", store_errmsg(st));
        rc = -1;
    }
    if (rc == 0) rc = story_write(env, st, llm, run, &p);
    if (rc == 0 && ahead.n > 0)
        log_info("run %lld: %zu story texts asked with the reviews, %zu of them unused (the "
                 "review split, merged or rejected the group, or another group merged into it)",
                 (long long)run->id, ahead.n, ahead_unused(&p, &ahead));
    free(ahead.cand);
    if (rc == 0 && stories_stop_requested(env, st, run)) rc = 1;
    if (rc == 0 && write_plan(st, run, &p) != STORE_OK) {
        snprintf(err, errlen, "writing stories: %s", store_errmsg(st));
        rc = -1;
    }
    splan_free(&p);
    if (store_run_refresh_counters(st, run->id))
        log_warn("run %lld: refreshing counters: %s", (long long)run->id, store_errmsg(st));
    return rc;
}

/* Story phase (original-phases.md §7–8, redesigned):
 *  1. Partition the run's passed themes so that no block exceeds CLUSTER_DIRECT_MAX:
 *     everything at once when small; else by product area, then by signature, then by
 *     2-means bisection. One partition is in memory at a time.
 *  2. Complete-linkage clustering on cosine distance (threshold 0.55) inside a block,
 *     then split each cluster by (action_type, direction). Themes without an embedding
 *     are grouped by signature instead of vanishing (the original dropped them).
 *  3. Groups of >= 3 become stories (evidence = every conversation, excerpt each);
 *     smaller groups feed orphans keyed by each conversation's theme signature, which
 *     accumulate across runs; an orphan from an earlier run that reaches 3
 *     conversations graduates into a story (with evidence, which the original lacked).
 *  4. Everything is written in one transaction with stories_done, so the phase is
 *     all-or-nothing and a conversation is evidence of at most one story per run.
 * Story titles come from the provider (LLM_STORY; offline: deterministic). */
#include "pipeline/stories.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/cluster.h"
#include "pipeline/engine.h"
#include "text/signature.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strmap.h"
#include "util/timeutil.h"

/* How often the title calls look for a stop in the database (the engine's rhythm). */
#define TITLE_STOP_CHECK_MS 250

/* A group of conversations decided in memory. */
typedef struct group {
    char **ids, **excerpts, **sigs, **intents;
    json_t *symptoms; /* union of the members' symptoms, <= 10 */
    size_t n;
    char *signature, *area, *component, *action, *direction, *cluster_id, *method;
    double mean_cos;    /* mean pairwise cosine (1 for singletons / unknown) */
    double sig_share;   /* share of members with the majority signature */
    char *title;
} group;

typedef struct plan {
    group *g;
    size_t n, cap;
} plan;

static void group_free(group *g) {
    for (size_t i = 0; i < g->n; i++) {
        free(g->ids[i]);
        free(g->excerpts[i]);
        free(g->sigs[i]);
        free(g->intents[i]);
    }
    free(g->ids);
    free(g->excerpts);
    free(g->sigs);
    free(g->intents);
    json_decref(g->symptoms);
    free(g->signature);
    free(g->area);
    free(g->component);
    free(g->action);
    free(g->direction);
    free(g->cluster_id);
    free(g->method);
    free(g->title);
}

static void plan_free(plan *p) {
    for (size_t i = 0; i < p->n; i++) group_free(&p->g[i]);
    free(p->g);
}

/* The most common string among members (ties: alphabetical). */
static char *majority(story_input *in, const size_t *idx, size_t n,
                      char *(*field)(story_input *), double *share) {
    const char *best = NULL;
    size_t bestc = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = field(&in[idx[i]]);
        size_t c = 0;
        for (size_t j = 0; j < n; j++) c += strcmp(field(&in[idx[j]]), v) == 0;
        if (c > bestc || (c == bestc && best && strcmp(v, best) < 0)) {
            best = v;
            bestc = c;
        }
    }
    if (share) *share = n ? (double)bestc / (double)n : 0;
    return xstrdup(best ? best : "unknown");
}

static char *f_sig(story_input *x) { return x->signature; }
static char *f_area(story_input *x) { return x->product_area; }
static char *f_comp(story_input *x) { return x->component; }

static double mean_pairwise_cos(story_input *in, const size_t *idx, size_t n) {
    if (n < 2) return 1.0;
    double sum = 0;
    size_t pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (!in[idx[i]].vec || !in[idx[j]].vec) continue;
            sum += cosine_similarity(in[idx[i]].vec, in[idx[j]].vec, (size_t)in[idx[i]].dim);
            pairs++;
        }
    return pairs ? sum / (double)pairs : 1.0;
}

static void add_group(plan *p, story_input *in, const size_t *idx, size_t n,
                      const char *cluster_id, const char *method) {
    XGROW(p->g, p->cap, p->n + 1);
    group *g = &p->g[p->n++];
    memset(g, 0, sizeof *g);
    g->n = n;
    g->ids = xcalloc(n, sizeof(char *));
    g->excerpts = xcalloc(n, sizeof(char *));
    g->sigs = xcalloc(n, sizeof(char *));
    g->intents = xcalloc(n, sizeof(char *));
    g->symptoms = json_array();
    for (size_t i = 0; i < n; i++) {
        story_input *x = &in[idx[i]];
        g->ids[i] = xstrdup(x->conversation_id);
        g->excerpts[i] = xstrdup(x->excerpt ? x->excerpt : "");
        g->sigs[i] = xstrdup(x->signature);
        g->intents[i] = xstrdup(x->user_intent ? x->user_intent : "");
        json_t *sym = json_loads(x->symptoms_json ? x->symptoms_json : "[]", 0, NULL);
        size_t k;
        json_t *v;
        json_array_foreach(sym, k, v) {
            if (json_array_size(g->symptoms) >= 10) break;
            int dup = 0;
            size_t m;
            json_t *w;
            json_array_foreach(g->symptoms, m, w) dup |= json_equal(v, w);
            if (!dup && json_is_string(v)) json_array_append(g->symptoms, v);
        }
        json_decref(sym);
    }
    g->signature = majority(in, idx, n, f_sig, &g->sig_share);
    g->area = majority(in, idx, n, f_area, NULL);
    g->component = majority(in, idx, n, f_comp, NULL);
    g->action = xstrdup(in[idx[0]].action_type);
    g->direction = xstrdup(in[idx[0]].direction);
    g->cluster_id = xstrdup(cluster_id);
    g->method = xstrdup(method);
    g->mean_cos = mean_pairwise_cos(in, idx, n);
}

/* Splits the members idx[0..n) by (action_type, direction), in first-seen order, and
 * adds one group per pair. */
static void split_by_facets(plan *p, story_input *in, size_t *idx, size_t n, const char *base,
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
        add_group(p, in, sub, k, cid, method);
        free(cid);
    }
    free(sub);
    free(taken);
}

/* Clusters one block (members idx[0..n) of in) and adds its groups to the plan. */
static int cluster_block(plan *p, story_input *in, size_t *idx, size_t n, const char *block) {
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
static int plan_partition(plan *p, story_input *in, size_t n, const char *name) {
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

static int build_plan(const run_env *env, store *st, const run_record *run, plan *p,
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

/* ---- titles ---------------------------------------------------------------------- */

static char *humanize(const char *sig) {
    char *s = xstrdup(sig);
    int start = 1;
    for (char *c = s; *c; c++) {
        if (*c == '_') {
            *c = ' ';
            start = 1;
        } else if (start) {
            if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
            start = 0;
        }
    }
    return s;
}

static void title_done(llm_call *c) {
    group *g = c->user;
    if (c->status == LLM_OK && jx_str(c->answer, "title") && jx_str(c->answer, "title")[0]) {
        char *t = xstrdup(jx_str(c->answer, "title"));
        if (strlen(t) > 200) t[200] = '\0';
        g->title = t;
    }
}

/* Asks the provider for a title per story group, up to `concurrency` at a time; a
 * group whose call fails gets the humanised signature. A stop cancels the calls not
 * answered yet (the caller then writes nothing). */
static void make_titles(const run_env *env, llm_provider *llm, store *st, const run_record *run,
                        plan *p) {
    size_t nstories = 0;
    for (size_t i = 0; i < p->n; i++) nstories += p->g[i].n >= STORY_MIN_GROUP;
    llm_call *calls = xcalloc(nstories ? nstories : 1, sizeof *calls);
    size_t next = 0, k = 0;
    int conc = run->concurrency > 0 ? (int)run->concurrency : 1;
    size_t *gi = xcalloc(nstories ? nstories : 1, sizeof *gi);
    for (size_t i = 0; i < p->n; i++)
        if (p->g[i].n >= STORY_MIN_GROUP) gi[k++] = i;
    for (size_t i = 0; i < nstories; i++) {
        group *g = &p->g[gi[i]];
        json_t *intents = json_array();
        for (size_t j = 0; j < g->n && json_array_size(intents) < 5; j++)
            if (g->intents[j][0]) json_array_append_new(intents, jx_string(g->intents[j]));
        calls[i].task = LLM_STORY;
        calls[i].args = json_pack("{sssssssssssoso}", "signature", g->signature, "product_area",
                                  g->area, "component", g->component, "action_type", g->action,
                                  "direction", g->direction, "user_intents", intents,
                                  "symptoms", json_copy(g->symptoms));
        calls[i].in.conv_id = g->ids[0];
        calls[i].in.body = calls[i].in.digest = calls[i].in.transcript = g->excerpts[0];
        calls[i].in.support_text = "";
        calls[i].done = title_done;
        calls[i].user = g;
    }
    int64_t last_stop_check = mono_ms();
    while (next < nstories || llm_pending(llm) > 0) {
        if (mono_ms() - last_stop_check >= TITLE_STOP_CHECK_MS) {
            last_stop_check = mono_ms();
            if (stories_stop_requested(env, st, run)) {
                next = nstories; /* the rest are never sent */
                llm->ops->cancel_all(llm);
                continue;
            }
        }
        while (next < nstories && llm_pending(llm) < (size_t)conc) {
            if (llm_submit(llm, &calls[next]) != 0) calls[next].status = LLM_ERR_HTTP;
            next++;
        }
        if (llm_poll(llm, 50) < 0) break;
    }
    int64_t requests = 0, hits = 0, prompt = 0, cached = 0, completion = 0;
    for (size_t i = 0; i < nstories; i++) {
        requests += calls[i].attempts;
        hits += calls[i].from_cache;
        prompt += calls[i].prompt_tokens;
        cached += calls[i].cached_tokens;
        completion += calls[i].completion_tokens;
        json_decref(calls[i].args);
        llm_call_reset_result(&calls[i]);
    }
    if ((requests || hits) &&
        store_run_add_usage(st, run->id, PHASE_STORIES, requests, hits, prompt, cached,
                            completion, llm_cost_usd(llm, prompt, cached, completion)) != STORE_OK)
        log_warn("run %lld: recording story-title usage: %s", (long long)run->id, store_errmsg(st));
    for (size_t i = 0; i < p->n; i++)
        if (!p->g[i].title) p->g[i].title = humanize(p->g[i].signature);
    free(calls);
    free(gi);
}

/* ---- writing ---------------------------------------------------------------------- */

static char *describe(const group *g) {
    buf_t b = BUF_INIT;
    buf_printf(&b, "**Action Type**: %s\n\n**Direction**: %s\n\n", g->action, g->direction);
    for (size_t i = 0; i < g->n; i++)
        if (g->intents[i][0]) {
            buf_printf(&b, "**User Intent**: %s\n\n", g->intents[i]);
            break;
        }
    if (json_array_size(g->symptoms)) {
        buf_puts(&b, "**Symptoms**:\n");
        size_t i;
        json_t *v;
        json_array_foreach(g->symptoms, i, v) {
            if (i >= 5) break;
            buf_printf(&b, "- %s\n", json_string_value(v));
        }
        buf_putc(&b, '\n');
    }
    buf_printf(&b, "**Product Area**: %s\n\n**Component**: %s\n\n*Signature*: `%s`\n\n"
                   "*Cluster ID*: %s\n\n*Grouping Method*: %s\n",
               g->area, g->component, g->signature, g->cluster_id, g->method);
    return buf_detach(&b);
}

static int write_story(store *st, const run_record *run, const group *g, int64_t now) {
    char *desc = describe(g);
    story_new sn = {0};
    sn.run_id = run->id;
    sn.title = g->title;
    sn.description = desc;
    sn.signature = g->signature;
    sn.product_area = g->area;
    sn.component = g->component;
    sn.action_type = g->action;
    sn.direction = g->direction;
    sn.grouping_method = g->method;
    sn.cluster_id = g->cluster_id;
    sn.origin = "cluster";
    /* Confidence 0–100: how much the members agree on the signature, weighted by how
     * close they are in embedding space. */
    sn.confidence = round(1000.0 * g->sig_share * (0.5 + 0.5 * g->mean_cos)) / 10.0;
    sn.conversation_ids = g->ids;
    sn.excerpts = g->excerpts;
    sn.signatures = g->sigs;
    sn.n = g->n;
    int64_t id;
    int rc = store_story_insert(st, &sn, now, &id);
    free(desc);
    for (size_t i = 0; rc == STORE_OK && i < g->n; i++)
        rc = store_orphan_remove_conversation(st, g->ids[i]);
    return rc;
}

static int graduate(store *st, const run_record *run, int64_t orphan_id, const char *sig,
                    const orphan_key *k, int64_t now) {
    char **ids = NULL, **ex = NULL;
    size_t n = 0;
    int rc = store_orphan_members(st, orphan_id, &ids, &ex, &n);
    if (rc) return rc;
    char *title = humanize(sig);
    char *desc = xasprintf("**Product Area**: %s\n\n**Component**: %s\n\n*Signature*: `%s`\n\n"
                           "*Graduated from orphan with %zu conversations across runs*\n",
                           k->product_area, k->component, sig, n);
    story_new sn = {0};
    sn.run_id = run->id;
    sn.title = title;
    sn.description = desc;
    sn.signature = sig;
    sn.product_area = k->product_area;
    sn.component = k->component;
    sn.action_type = k->action_type;
    sn.direction = k->direction;
    sn.grouping_method = "orphan_graduation";
    sn.origin = "graduated";
    sn.confidence = 50.0;
    sn.conversation_ids = ids;
    sn.excerpts = ex;
    sn.n = n;
    int64_t story_id;
    rc = store_story_insert(st, &sn, now, &story_id);
    if (rc == STORE_OK) rc = store_orphan_graduate(st, orphan_id, story_id, now);
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
        free(ex[i]);
    }
    free(ids);
    free(ex);
    free(title);
    free(desc);
    return rc;
}

/* Small groups: each conversation joins the orphan of its own theme signature. */
static int write_orphans(store *st, const run_record *run, const group *g, int64_t now) {
    for (size_t i = 0; i < g->n; i++) {
        orphan_key k = {g->sigs[i], g->area, g->component, g->action, g->direction, g->intents[i]};
        int64_t oid;
        int created, added;
        int rc = store_orphan_get_or_create(st, &k, run->id, now, &oid, &created);
        if (rc == STORE_OK)
            rc = store_orphan_add_member(st, oid, g->ids[i], run->id, g->excerpts[i], now, &added);
        if (rc) return rc;
        /* Orphans graduate across runs: an orphan born in this run waits for a later
         * run, so one run never turns its own leftovers into duplicate stories. */
        int64_t members = store_orphan_member_count(st, oid);
        int64_t born = store_orphan_first_run(st, oid);
        if (members < 0 || born < 0) return STORE_ERR;
        if (members >= STORY_MIN_GROUP && born != run->id) {
            rc = graduate(st, run, oid, g->sigs[i], &k, now);
            if (rc) return rc;
        }
    }
    return STORE_OK;
}

static int write_plan(store *st, const run_record *run, const plan *p) {
    int64_t now = wall_unix();
    int rc = store_begin(st);
    /* Stories first: their conversations leave the active orphans before any orphan
     * can graduate with them. */
    for (size_t i = 0; rc == STORE_OK && i < p->n; i++)
        if (p->g[i].n >= STORY_MIN_GROUP) rc = write_story(st, run, &p->g[i], now);
    for (size_t i = 0; rc == STORE_OK && i < p->n; i++)
        if (p->g[i].n < STORY_MIN_GROUP) rc = write_orphans(st, run, &p->g[i], now);
    if (rc == STORE_OK) rc = store_run_set_stories_done(st, run->id);
    if (rc == STORE_OK) return store_commit(st);
    store_rollback(st);
    return rc;
}

int stories_run(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                char *err, size_t errlen) {
    if (run->stories_done) return 0;
    plan p = {0};
    int rc = build_plan(env, st, run, &p, err, errlen);
    if (rc == 0) {
        make_titles(env, llm, st, run, &p);
        if (stories_stop_requested(env, st, run)) {
            rc = 1;
        } else if (write_plan(st, run, &p) != STORE_OK) {
            snprintf(err, errlen, "writing stories: %s", store_errmsg(st));
            rc = -1;
        }
    }
    plan_free(&p);
    if (store_run_refresh_counters(st, run->id))
        log_warn("run %lld: refreshing counters: %s", (long long)run->id, store_errmsg(st));
    return rc;
}

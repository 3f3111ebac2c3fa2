/* Private to the story phase (stories.c, story_review.c, story_write.c): the plan a run's
 * story phase builds in memory before it writes anything.
 *
 *   members     every conversation the phase places (passed themes of the run, plus the
 *               earlier-run members of an orphan that graduates);
 *   parts       clusters of members (complete linkage, then split by facets), each
 *               labelled with its majority signature;
 *   candidates  the review unit: every part of one signature (so two clusters of one
 *               signature can never become unexplained twins), or a graduating orphan;
 *   stories     what the review made of the candidates (keep: one story, split: one
 *               per named sub-group, merge: joined to another candidate, reject: none),
 *               each matched to an existing story (grown) or new (created).
 *
 * Owns nothing outside the phase; the store is only touched by stories.c's writer. */
#ifndef FEEDLINE_STORY_PLAN_H
#define FEEDLINE_STORY_PLAN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "llm/llm.h"
#include "pipeline/pipeline.h"

typedef struct smember {
    char *id, *excerpt, *sig, *area, *component, *intent, *action, *direction;
    json_t *symptoms;   /* array of strings (never NULL) */
    double typicality;  /* cosine to its part's centroid (1 without an embedding) */
    int from_orphan;    /* an earlier run's orphan member (no theme in this run) */
    int64_t created_at; /* the conversation's creation time (0: unknown) */
} smember;

typedef struct spart {
    size_t *m, n;       /* member indices */
    char *signature;    /* majority signature */
    char *cluster_id, *method, *action, *direction;
} spart;

enum review_decision { REVIEW_KEEP = 0, REVIEW_SPLIT, REVIEW_MERGE, REVIEW_REJECT };
const char *review_decision_name(enum review_decision d);

typedef struct scand {
    char *signature, *area, *component;
    size_t *parts, nparts;
    size_t nconv;
    int64_t orphan_id;  /* > 0: a graduating orphan */
    /* the review */
    enum review_decision decision;
    char *reason;
    char *reviewer;     /* "rules" or the model */
    char *merge_into;   /* REVIEW_MERGE: the signature joined */
    json_t *split;      /* REVIEW_SPLIT: [{"name", "parts": [1-based part numbers]}] */
} scand;

typedef struct sstory {
    size_t cand;            /* the candidate it came from */
    char *distinguisher;    /* split sub-group name, "" otherwise */
    size_t *m, n;           /* member indices, most typical first */
    char *action, *direction, *kind;
    double confidence;
    /* written */
    char *title, *problem, *affected;
    json_t *criteria;       /* array of strings */
    /* identity */
    int64_t match_id;       /* > 0: an existing story this one grows */
    char *match_status;
    int64_t recurs_after;   /* > 0: a closed story of the same signature */
} sstory;

typedef struct splan {
    smember *mem;
    size_t nmem, capmem;
    spart *parts;
    size_t nparts, capparts;
    scand *cands;
    size_t ncands, capcands;
    sstory *stories;
    size_t nstories, capstories;
    size_t *small;          /* parts of candidates under STORY_MIN_GROUP: orphans */
    size_t nsmall, capsmall;
} splan;

void splan_free(splan *p);
void sstory_free(sstory *s);
void sstory_add_members_of_part(sstory *s, const splan *p, size_t part);
/* Whether a candidate is reviewed: STORY_MIN_GROUP conversations, or a graduating
 * orphan (the others feed the orphans). */
int scand_reviewed(const scand *c);

/* Runs *calls[0..n) on the provider, up to the run's concurrency at a time, in that
 * order, checking for a stop every 250 ms (a stop cancels what is not answered). Adds
 * the requests, cache hits and tokens to the run's usage of the story phase as answers
 * arrive. It owns the calls' done and user fields. Returns 1 if stopped. */
int story_calls_run(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                    llm_call *const *calls, size_t n);

/* {"description", "engineering_fix"} of the vocabulary theme of a signature (following
 * merges), or NULL when the signature is not in the vocabulary. */
json_t *story_theme_args(const vocab *v, const char *signature);

/* story_review.c: the review of every candidate (one LLM_REVIEW call each), then the
 * stories it makes. ahead[0..nahead) are sent in the same round, after the reviews
 * (story texts written ahead, see stories.c); their answers are left in them. Returns 1
 * if stopped. */
int story_review(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                 splan *p, llm_call *ahead, size_t nahead);
/* The answer check of LLM_REVIEW against its arguments (an llm_validate_fn, exposed
 * for tests): 0 valid, else why in msg. */
int story_review_check(const json_t *args, const json_t *answer, char *msg, size_t msglen);

/* story_write.c: a written title, problem, affected and acceptance criteria for every
 * new story (one LLM_STORY call each), titles made distinct within the run. Returns 1
 * if stopped. */
int story_write(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                splan *p);
/* Sets up the LLM_STORY call of a planned story (its members finished: most typical
 * first, facets and kind set). The same story gives byte-identical requests, so an
 * answer received ahead is served again by the response cache. The caller frees
 * call->args. */
void story_write_call(const vocab *v, const splan *p, const sstory *s, llm_call *call);
/* The answer check of LLM_STORY against its arguments (an llm_validate_fn): the shape,
 * and a title that is not a customer's message copied. */
int story_answer_check(const json_t *args, const json_t *answer, char *msg, size_t msglen);
/* The description of a story (markdown): problem, who is affected with the count and
 * date range, product area, strongest evidence, acceptance criteria (bugs), review.
 * story is a stored story's JSON (store_story_detail_json, evidence included). Caller
 * frees. One implementation for new and grown stories. */
char *story_render_description(const json_t *story);
/* Titles distinct within a run: a title equal (case-insensitively) to an earlier one
 * gets the distinguisher, else the product area, else "#k" appended. titles[i] is
 * replaced in place. */
void story_titles_distinct(char **titles, char *const *distinguishers, char *const *areas,
                           size_t n);

#endif

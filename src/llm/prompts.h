/* prompts — the chat messages the OpenAI-compatible provider sends, assembled from the
 * templates in src/llm/prompts/ (NAME.txt files compiled into the binary at build
 * time).
 *
 * Every chat request is [system, user]:
 *  - the system message is the task's static part: instructions, the answer shape
 *    and, for themes, the vocabulary (every active theme, the product areas, the
 *    SAME_FIX guidelines and signature examples of whatever vocabulary file is
 *    loaded). It is built once per provider and is byte-identical on every call, so
 *    provider-side prompt caching applies;
 *  - the user message is short, machine-readable, and ends with the conversation:
 *
 *      Task: <classify|refine|facets|theme|canonicalize|story>
 *      <arguments>{compact JSON of call->args}</arguments>
 *      <url>source url</url>
 *      URL hint: ...                      (when the vocabulary maps the URL)
 *      <support>support replies</support> (refine only)
 *      <conversation>the text the task reads</conversation>
 *
 *    Blocks appear only when they have content. Inside embedded texts, a literal
 *    block tag is neutralised ("<conversation>" -> "< conversation>") so a message can
 *    be split back into its blocks exactly (prompts_parse_user; used by the fake
 *    endpoint and the tests) and no text can close its block early.
 *
 * The conversation text per task: classify/refine/facets read the subject and the
 * customer digest (else the opening message); theme reads the subject and the full
 * transcript (else the digest); canonicalize and story read only their arguments. */
#ifndef FEEDLINE_PROMPTS_H
#define FEEDLINE_PROMPTS_H

#include <jansson.h>
#include <stddef.h>

#include "llm/llm.h"
#include "text/vocab.h"
#include "util/embed.h"

/* The template files compiled in from src/llm/prompts/ (NAME.txt), generated at build
 * time by scripts/embed-files. */
extern const embedded_file PROMPT_FILES[];

/* The template NAME (file stem), or NULL. */
const char *prompt_template(const char *name);

typedef struct prompts prompts;

/* Builds the system messages; v may be NULL (no known themes). */
prompts *prompts_new(const vocab *v);
void prompts_free(prompts *p);
/* The static system message of a chat task (NULL for LLM_EMBED). */
const char *prompts_system(const prompts *p, enum llm_task t);
/* The user message of a call. Caller frees. */
char *prompts_user(const prompts *p, const llm_call *c);
/* The chat messages of a call as sent: [{"role":"system",...}, {"role":"user",...}],
 * static part first so the endpoint's prefix cache applies; NULL for LLM_EMBED. */
json_t *prompts_messages(const prompts *p, const llm_call *c);
/* The compact JSON of a message when it is a task's system message as
 * prompts_messages gives it (one object shared by every call, encoded once), else
 * NULL. The object must not be changed. */
const char *prompts_message_json(const prompts *p, const json_t *message);
/* One chat message {"role": role, "content": content}. */
json_t *prompts_message(const char *role, const char *content);
/* The follow-up message of the repair retry, naming what was wrong. Caller frees. */
char *prompts_repair(const char *reason);
/* Completion tokens a call's answer may use (max_tokens of the request). */
int prompts_max_tokens(const llm_call *c);
/* The task of a name ("theme" -> LLM_THEME), or -1. */
int prompts_task_from_name(const char *name);

/* A user message split into its blocks (absent blocks are NULL). */
typedef struct prompt_blocks {
    int task;            /* enum llm_task, -1 when the Task line is missing/unknown */
    char *args;          /* JSON text */
    char *url;
    char *support;
    char *conversation;
} prompt_blocks;
/* 0, or -1 when msg has no "Task:" line. Free with prompt_blocks_free. */
int prompts_parse_user(const char *msg, prompt_blocks *out);
void prompt_blocks_free(prompt_blocks *b);

#endif

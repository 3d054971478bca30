/* conv.h — conversations and the record shapes that hold them.
 *
 * Owns: the message list ({"role","content"} objects), its rendering for prompts
 * ("**User**: ..." lines, system messages left out, as the paper's simulator and judges see
 * it), turn counting, the termination marker test, and the accessors for the seed, state and
 * branch records of cl-records(5):
 *   seed   {id, task, task_desc, prompt, completion, metadata, split}
 *          (single_turn_prompt / single_turn_completion / single_turn_metadata accepted)
 *   state  seed + {messages, turn, done, done_reason}
 *   branch state + {candidates: [{id, content, source, mode, futures: [{messages,
 *          terminated}]}]}
 * Must not know: models, prompts or the LLM client (cl-judge and cl-reward use it too).
 * jv ownership follows json.h: `const jv *` borrows, `jv` by value is consumed, returned jv
 * are owned by the caller. */
#ifndef CL_CONV_H
#define CL_CONV_H

#include <jv.h>

/* The default end-of-conversation marker of the user simulator. */
#define CL_TERMINATE_MARKER "[[TERMINATE CHAT]]"

/* ---- messages ---------------------------------------------------------------------- */

/* messages (consumed) with {"role": role, "content": content} appended. */
jv cl_conv_append(jv messages, const char *role, const char *content);

/* Transcript for a prompt: one "**Role**: content" block per message, roles capitalised,
 * system messages left out, blocks separated by a newline.  malloc'd; "" for no messages. */
char *cl_conv_render(const jv *messages);

/* The messages as a chat API takes them: role and content only.  Records may carry more per
 * message (usage, names from datasets), and some servers refuse members they do not know. */
jv cl_conv_request(const jv *messages);

/* Messages of the role (NULL: every role but system). */
int cl_conv_count(const jv *messages, const char *role);

/* Completed turns = assistant replies so far (the "turn" of a state). */
int cl_conv_turns(const jv *messages);

/* Role of the last message that is not a system message ("user", "assistant"), or NULL.
 * Borrowed from messages. */
const char *cl_conv_last_role(const jv *messages);

/* Content of the i-th message (negative i counts from the end), borrowed, or NULL. */
const char *cl_conv_content(const jv *messages, int i);

/* Whether text contains the marker (a NULL or empty marker never matches). */
int cl_conv_has_marker(const char *text, const char *marker);

/* ---- seed ------------------------------------------------------------------------- */

/* The hidden goal: "prompt", else "single_turn_prompt"; NULL when neither is a string. */
const char *cl_seed_prompt(const jv *rec);
/* The reference: "completion", else "single_turn_completion" (strings only). */
const char *cl_seed_completion(const jv *rec);
/* "task_desc", else NULL. */
const char *cl_seed_task_desc(const jv *rec);

/* ---- state ------------------------------------------------------------------------ */

/* The record's messages (a copy of the array; an empty array when absent). */
jv cl_state_messages(const jv *rec);

/* done is true. */
int cl_state_done(const jv *rec);

/* rec (consumed) with messages (consumed) stored and "turn" recomputed from them. */
jv cl_state_set_messages(jv rec, jv messages);

/* rec (consumed) marked done with the reason ("terminated", "max_turns", ...). */
jv cl_state_finish(jv rec, const char *reason);

/* ---- branch ----------------------------------------------------------------------- */

int cl_branch_ncandidates(const jv *rec);
/* The c-th candidate object, or jv_invalid(). */
jv cl_branch_candidate(const jv *rec, int c);
int cl_branch_nfutures(const jv *rec, int c);
/* The f-th future object of candidate c, or jv_invalid(). */
jv cl_branch_future(const jv *rec, int c, int f);
/* The whole conversation a future stands for: the state's messages, the candidate's reply
 * as an assistant message, then the future's messages.  jv_invalid() when out of range. */
jv cl_branch_future_conversation(const jv *rec, int c, int f);
/* rec (consumed) with candidate c's future f replaced by future (consumed), e.g. to add
 * "scores".  Out of range: rec returned unchanged and future freed. */
jv cl_branch_set_future(jv rec, int c, int f, jv future);
/* rec (consumed) with candidate c replaced by cand (consumed); same range rule. */
jv cl_branch_set_candidate(jv rec, int c, jv cand);

#endif

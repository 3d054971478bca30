/* world/world.h — the offline collaboration world: tasks a tiny model can learn, and the exact
 * programs that play the user and the judges (design/offline-world.md).
 *
 * Owns: the world's three task families (document: an invitation note scored by char-BLEU;
 * code: a Python function run against its test in the sandbox; math: a word problem with one
 * exact answer), each with a topic and two details only the user knows ("slots", each with a
 * usual value the passive base guesses); the world's language (goal, opening request, question,
 * answer, correction), rendered and read back by the same templates; seed records; the user
 * simulator (answers questions about details it recognises, terse when asked again, ends the
 * chat after the first answer, thanking or correcting); the judges (extraction, interactivity,
 * accuracy) in the reply formats collab/judge.c reads; scripted assistants (passive, careful,
 * guess) for the passive base's dialogues and for tests.
 * Everything is deterministic: the only randomness is a hash of what the caller passes.
 * Must not know: the LLM loop (world/backend.h plugs these programs into it), streams or flags. */
#ifndef CL_WORLD_H
#define CL_WORLD_H

#include <jv.h>
#include <stdint.h>

typedef enum cl_world_family { CL_WORLD_DOC, CL_WORLD_CODE, CL_WORLD_MATH, CL_WORLD_NFAMILIES } cl_world_family;

/* One task: the family, its topic and the two hidden details (indexes into the family's value
 * tables; index 0 is the usual value), and which details the opening request gives away
 * (bit i: slot i).  given is a function of the goal (cl_world_given), so that the user, who
 * sees only the goal, opens every conversation of a seed alike. */
typedef struct cl_world_item {
    int family;
    int topic;
    int val[2];
    unsigned given;
} cl_world_item;

/* ---- the tasks ------------------------------------------------------------------------- */

/* Task i of the world drawn with seed (each slot keeps its usual value half of the time). */
void cl_world_draw(uint64_t seed, uint64_t i, cl_world_item *it);

/* The seed record of it: {id, task, task_desc, prompt (the goal), completion, metadata
 * {world: {family, topic, slots, usual, given, opening}, test (code), answer (math)}, split}.  The
 * split ("train" 80%, "validation" 10%, "test" 10%) is a hash of the goal, so the same goal
 * never lands in two splits. */
jv cl_world_seed(const cl_world_item *it, const char *id);

/* "document", "code" or "math". */
const char *cl_world_task(int family);

/* The texts of a task, malloc'd. */
char *cl_world_goal(const cl_world_item *it);    /* the full request: the user's hidden goal */
char *cl_world_opening(const cl_world_item *it); /* what the user says first */
char *cl_world_answer(const cl_world_item *it);  /* the ideal final reply (the reference) */
char *cl_world_question(const cl_world_item *it, unsigned slots); /* asks about these slots */

/* Which slots the opening of this goal gives (15% both, 20% each one alone, 45% none). */
unsigned cl_world_given(const cl_world_item *it);

/* Reads a goal (any family) into *it (given included).  0, or -1 when text is no world goal. */
int cl_world_parse_goal(const char *text, cl_world_item *it);
/* Reads an opening request: family, topic, given and the given slots' values (the others -1).
 * 0, or -1. */
int cl_world_parse_opening(const char *text, cl_world_item *it);

/* ---- reading an assistant's reply ------------------------------------------------------ */

typedef enum cl_world_reply_kind { CL_WORLD_QUESTION, CL_WORLD_ANSWER, CL_WORLD_MALFORMED } cl_world_reply_kind;

typedef struct cl_world_reply {
    cl_world_reply_kind kind;
    unsigned asks;  /* QUESTION: the slots whose words it names (0: none it recognises) */
    int val[2];     /* ANSWER: the slot values the answer uses (-1 when the family's answer
                     * does not show them: math) */
    int topic;      /* ANSWER: the topic it uses */
    long number;    /* ANSWER, math: the number given */
} cl_world_reply;

/* Classifies text as a reply to a conversation about task family `family`: a question (it has
 * a '?'), an answer in the family's exact form, or neither. */
void cl_world_read_reply(int family, const char *text, cl_world_reply *r);

/* Whether a reply is well-formed: a question naming a detail, or an answer in the family's
 * form. */
int cl_world_well_formed(const cl_world_reply *r);

/* Whether an answer is right for it. */
int cl_world_answer_right(const cl_world_item *it, const cl_world_reply *r);

/* ---- the programs ---------------------------------------------------------------------- */

/* The user's next message, malloc'd: the opening when msgs (the conversation, an array of
 * {role, content}; system messages ignored) holds nothing, else the reply to its last
 * assistant message.  Ends with marker when the chat is over.  NULL when the goal is no world
 * goal. */
char *cl_world_user(const char *goal, const jv *msgs, const char *marker);

typedef enum cl_world_policy {
    CL_WORLD_PASSIVE, /* the base's habit: guesses the usual values, asks 1 time in 10 */
    CL_WORLD_CAREFUL, /* asks about every missing detail once, then answers */
    CL_WORLD_GUESS,   /* never asks: the usual value for every missing detail */
    CL_WORLD_ASK,     /* asks once whatever it knows (about every detail when none is
                       * missing: a needless question), then answers */
} cl_world_policy;

/* An assistant's reply to msgs under policy; h picks the passive assistant's rare question.
 * malloc'd; NULL when the conversation does not open with a world request. */
char *cl_world_assistant(cl_world_policy policy, const jv *msgs, uint64_t h);

/* A judge's reply, malloc'd JSON in the format collab/judge.c reads, to a judge prompt
 * rendered from lib/collab/prompts/judge_*.txt: extraction ("final_completion": the last
 * answer of the conversation), interactivity (unit 0..1 or paper 1..3 scale, as the prompt
 * asks) or accuracy (the last answer well-formed and right for the goal in <question>, or,
 * for prompts about no world goal, against <reference>: it is the task's exact success in
 * every family).  NULL with *why set for other prompts. */
char *cl_world_judge(const char *prompt, const char **why);

/* The interactivity of the assistant's replies in window given the earlier history (both
 * arrays of messages; the opening is the first user message of history + window): 1 when it
 * asked about every detail it lacked before answering and asked nothing needless, 0.5 when it
 * asked about some, 0 when it guessed without asking or asked only needless questions. */
double cl_world_interactivity(const jv *history, const jv *window);

/* Splits a transcript rendered by collab/conv.h ("**User**: ..." blocks) back into messages.
 * Owned array. */
jv cl_world_transcript_messages(const char *text);

#endif

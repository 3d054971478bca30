/* rollout.h — the collaborative simulation engine of cl-rollout.
 *
 * Owns: simulated conversations between an assistant and a user simulator (CollabLLM §3.1.2,
 * §3.2): complete evaluation conversations (--full) and one data-engine step (--branch: K
 * candidate replies per state, S forward continuations of w turns per candidate); the roles'
 * prompts and how replies are read (lenient JSON, bounded re-asks); the assistant modes and
 * their deterministic mixing; sample keys; per-record usage; streaming in input order through a
 * bounded window of records while every conversation of the window progresses at once on the
 * LLM client's one event loop (each conversation is a small state machine whose callback
 * submits its next call).
 * Must not know: HTTP, the cache or flags (cl_llm, cl_io and the tool do those). */
#ifndef CL_ROLLOUT_H
#define CL_ROLLOUT_H

#include <stdint.h>

#include "collab/prompts.h"
#include "core/err.h"
#include "llm/llm.h"
#include "core/records.h"

typedef enum cl_rollout_mode { CL_ROLLOUT_FULL, CL_ROLLOUT_BRANCH } cl_rollout_mode;

/* How an assistant turn is asked for.  MIXED: chosen per candidate (or per --full
 * conversation) by the ratios, deterministically from --seed, record id and turn. */
typedef enum cl_assistant_mode {
    CL_ASSISTANT_MIXED = -1,
    CL_ASSISTANT_VANILLA = 0, /* the conversation as chat messages */
    CL_ASSISTANT_SYSTEM,      /* the same behind the CollabLLM system prompt */
    CL_ASSISTANT_PROACT,      /* one prompt asking for JSON with a "response" field */
} cl_assistant_mode;

/* Mode by name ("vanilla", "system", "proact"); -1 when unknown. */
int cl_assistant_mode_parse(const char *name);
const char *cl_assistant_mode_name(int mode);

typedef enum cl_user_style {
    CL_USER_PROMPTED, /* a chat model told to play the user, answering JSON */
    CL_USER_USERLM,   /* a model trained to play the user: goal as system prompt, roles
                       * flipped, its own end-of-conversation token */
} cl_user_style;

/* Where assistant replies come from. */
typedef struct cl_rollout_source {
    int role;            /* LLM client role */
    const char *model;   /* per-call "model" member overriding the role's, or NULL */
    const char *label;   /* written as the candidate's "source" */
    int mode;            /* cl_assistant_mode */
} cl_rollout_source;

/* When calls whose prompt asks for JSON (the proactive assistant, the prompted user) send a
 * response_format with the JSON schema of the fields the reply is read for. */
typedef enum cl_response_format {
    CL_RF_AUTO,   /* to local: models (which then decode under the schema), not to servers */
    CL_RF_SCHEMA, /* to every model (OpenAI, vLLM and llama.cpp servers accept json_schema) */
    CL_RF_NONE,   /* never */
} cl_response_format;

/* Mode by name ("auto", "schema", "none"); -1 when unknown. */
int cl_response_format_parse(const char *name);

typedef struct cl_rollout_config {
    cl_rollout_mode mode;
    int candidates;           /* K (branch) */
    int samples;              /* S futures per candidate (branch) */
    int window;               /* w forward turns per future (branch) */
    int max_turns;            /* assistant replies per conversation (full) */
    const char *marker;       /* termination marker of the user simulator */
    cl_user_style user_style;
    const char *userlm_end;   /* end-of-conversation token of a userlm user */
    double proact_ratio, system_ratio;
    int user_role;
    cl_rollout_source assistant;        /* full mode; branch candidates without sources */
    cl_rollout_source future;           /* assistant turns inside futures */
    const cl_rollout_source *sources;   /* explicit candidate sources (then K = nsources) */
    int nsources;
    const char *prompt_dir;   /* --prompt-dir or NULL */
    cl_prompt_set prompt_set; /* the assistant prompts' set, recorded as "prompt_set" */
    uint64_t seed;
    int parse_retries;        /* further asks after a reply that cannot be read */
    int no_sample_seed;       /* send no per-call "seed" member */
    int logprobs;             /* ask candidates for "logprobs"; record them as candidates[].logps */
    cl_response_format response_format;
    int buffer;               /* records held at once (the output window) */
    int admit_queue;          /* start new records while fewer calls than this wait */
} cl_rollout_config;

/* Runs the simulation over every record of io and writes the results to io in input order.
 * Records whose calls fail are written with "error" (exit status 1 via io).  Returns 0 when
 * the input was consumed or the client stopped (cl_llm_exit_status then says why), -1 with e
 * set on a fatal error (bad prompt file, write error). */
int cl_rollout_run(const cl_rollout_config *cfg, cl_llm *llm, cl_io *io, cl_err *e);

#endif

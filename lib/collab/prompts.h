/* prompts.h — the prompt texts of the roles (user simulator, assistant modes, judges,
 * extractor) and their rendering.
 *
 * Owns: the compiled-in prompt files lib/collab/prompts/NAME.txt, the --prompt-dir override (a file
 * DIR/NAME.txt replaces the built-in NAME), and {{variable}} substitution.  It knows nothing
 * of models or records beyond the variables it is given. */
#ifndef CL_PROMPTS_H
#define CL_PROMPTS_H

#include <jv.h>

#include "core/err.h"

typedef struct cl_prompt_text {
    const char *name;
    const char *text;
} cl_prompt_text;

/* Prompt sets: the assistant's own prompts (proact_assistant, collabllm_system) come in two
 * texts.  official: the behaviour of the official prompts, in our words (clarify whenever the
 * request is ambiguous or underspecified, collaborate over several turns) — the default, so
 * the Proactive Base baseline, SFT/DPO system prompts and released checkpoints see what they
 * saw in the paper.  cl: our own variant (ask only when a gap changes the answer, act instead
 * of asking for its own sake, every token costs the user time), files NAME_cl.txt. */
typedef enum cl_prompt_set { CL_PROMPTS_OFFICIAL, CL_PROMPTS_CL } cl_prompt_set;

/* "official" | "cl" → *s; -1 with e set (usage) otherwise. */
int cl_prompt_set_parse(const char *name, cl_prompt_set *s, cl_err *e);
const char *cl_prompt_set_name(cl_prompt_set s);

/* The prompt name of NAME in set s: NAME_cl for the set-specific prompts in cl, NAME
 * otherwise (a static string or name itself). */
const char *cl_prompt_in_set(cl_prompt_set s, const char *name);

/* The built-in prompts, {0,0}-terminated (generated from lib/collab/prompts/). */
extern const cl_prompt_text cl_builtin_prompts[];

/* The text of prompt NAME: DIR/NAME.txt when dir is non-NULL and that file exists, else the
 * built-in one.  Returns a malloc'd string, or NULL with e set (CL_EXIT_CONFIG) when neither
 * exists or the file cannot be read. */
char *cl_prompt_load(const char *dir, const char *name, cl_err *e);

/* Replaces every {{key}} in tmpl by vars.key (strings as they are, other values as compact
 * JSON).  A placeholder whose key is missing is an error (CL_EXIT_CONFIG), so a typo in an
 * overriding prompt file is caught instead of sent.  Returns a malloc'd string or NULL. */
char *cl_prompt_render(const char *tmpl, const jv *vars, cl_err *e);

#endif

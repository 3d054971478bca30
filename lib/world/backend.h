/* world/backend.h — the offline world's programs as model backends of the LLM loop.
 *
 * Owns: the "world:" model scheme (cl-llm(7)): world:user (the user simulator), world:judge
 * (the judges), world:passive, world:careful, world:guess, world:ask (scripted assistants); a bare
 * "world:" picks by role: the user role gets the user, a role whose name holds "judge" the
 * judges, any other role the passive assistant.  Each reply is computed inside start() from
 * the messages the role is sent (llm/backend.h: a scripted backend), so no call leaves the
 * process and nothing is cached.
 * Must not know: what the programs do (world/world.h); tools register the scheme by putting
 * cl_world_backends into cl_llm_config.extra_backends, which keeps lib/llm free of CollabLLM
 * words. */
#ifndef CL_WORLD_BACKEND_H
#define CL_WORLD_BACKEND_H

#include "llm/backend.h"

extern const cl_llm_backend cl_world_backend;

/* {&cl_world_backend, NULL}: ready for cl_llm_config.extra_backends. */
extern const cl_llm_backend *const cl_world_backends[];

#endif

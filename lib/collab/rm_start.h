/* rm_start.h — cl-reward's end of the rm_score metric: starting the program that asks the
 * reward model.
 *
 * Owns: finding cl-judge beside the running program and starting `cl-judge --rm-units` (the
 * other end, collab/rm.h) as a metric program of metrics/cmd.h, with the model spec, its
 * endpoint and retries on its command line and the key passed by the variable's name only.
 * Kept apart from collab/rm so that cl-reward does not link the LLM client: libcurl and the
 * local: engine would cost every run, BLEU-only ones too, some 9 ms of loading.
 * Must not know: the units, the scores or how they are merged (collab/score). */
#ifndef CL_RM_START_H
#define CL_RM_START_H

#include "core/err.h"
#include "metrics/cmd.h"

/* Starts cl-judge --rm-units asking spec (at api_base unless NULL or empty; the key from
 * CL_RM_API_KEY when set; retries >= 0 overrides the client's default; quiet: no progress).
 * NULL with e set: CL_EXIT_CONFIG when cl-judge is not beside this program, else as
 * metric_cmd_start. */
metric_cmd *cl_rm_start(const char *spec, const char *api_base, long retries, int quiet, cl_err *e);

#endif

/* cl-rollout — the collaborative simulation: flags to a cl_rollout_config, then lib/collab/rollout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "collab/conv.h"
#include "llm/cli.h"
#include "core/records.h"
#include "collab/rollout.h"
#include "world/backend.h"
#ifdef CL_HAVE_CUDA
#include "cuda/cuda.h"
#endif

enum {
    OPT_FULL = 256, OPT_BRANCH, OPT_CANDIDATES, OPT_SAMPLES, OPT_WINDOW, OPT_MAX_TURNS,
    OPT_PRESET, OPT_MARKER, OPT_USER_STYLE, OPT_USERLM_END, OPT_PROACT, OPT_SYSPROMPT,
    OPT_CANDIDATE, OPT_ASSISTANT_MODE, OPT_FUTURE_MODE, OPT_PROMPT_DIR, OPT_PROMPT_SET, OPT_PARSE_RETRIES,
    OPT_BUFFER, OPT_NO_SAMPLE_SEED, OPT_LOGPROBS, OPT_RESPONSE_FORMAT, OPT_LAST
};

#define MAX_SOURCES 16

typedef struct tool {
    cl_llm_cli lc;
    cl_rollout_config cfg;
    int mode_set;
    const char *preset;
    unsigned char set[OPT_LAST];      /* tool options given explicitly */
    char llm_seen[64][48];            /* LLM options given explicitly (names) */
    int nllm_seen;
    const char *role_spec[2];         /* --assistant, --future-assistant: the candidates' "source" */
    char *source_spec[MAX_SOURCES];
    int assistant_mode;
} tool;

static const char *opt_name(const struct option *opts, int val)
{
    for (const struct option *o = opts; o->name; o++)
        if (o->val == val)
            return o->name;
    return NULL;
}

static int parse_mode(const char *arg, const char *what, int *out, cl_err *e)
{
    int m = cl_assistant_mode_parse(arg);
    if (m < 0)
        return cl_err_set(e, CL_EXIT_USAGE, "%s: unknown mode '%s' (vanilla, system, proact)", what, arg);
    *out = m;
    return 0;
}

static int on_opt(void *ctx, int opt, const char *arg, cl_err *e)
{
    tool *t = ctx;
    cl_rollout_config *cfg = &t->cfg;
    if (opt >= CL_LLM_CLI_OPT_BASE) {
        const char *name = opt_name(t->lc.opts, opt);
        if (name && t->nllm_seen < 64)
            snprintf(t->llm_seen[t->nllm_seen++], sizeof t->llm_seen[0], "%s", name);
        if (name && !strcmp(name, "assistant"))
            t->role_spec[0] = arg;
        if (name && !strcmp(name, "future-assistant"))
            t->role_spec[1] = arg;
        int r = cl_llm_cli_opt(&t->lc, opt, arg, e);
        return r < 0 ? -1 : 0;
    }
    if (opt > 0 && opt < OPT_LAST)
        t->set[opt] = 1;
    switch (opt) {
    case OPT_FULL:
    case OPT_BRANCH:
        if (t->mode_set && cfg->mode != (opt == OPT_FULL ? CL_ROLLOUT_FULL : CL_ROLLOUT_BRANCH))
            return cl_err_set(e, CL_EXIT_USAGE, "--full and --branch exclude each other");
        cfg->mode = opt == OPT_FULL ? CL_ROLLOUT_FULL : CL_ROLLOUT_BRANCH;
        t->mode_set = 1;
        return 0;
    case 'k':
    case OPT_CANDIDATES:
        t->set[OPT_CANDIDATES] = 1;
        return cl_parse_int(arg, 1, MAX_SOURCES, "--candidates", &cfg->candidates, e);
    case OPT_SAMPLES: return cl_parse_int(arg, 0, 64, "--samples", &cfg->samples, e);
    case OPT_WINDOW: return cl_parse_int(arg, 0, 64, "--window", &cfg->window, e);
    case OPT_MAX_TURNS: return cl_parse_int(arg, 1, 10000, "--max-turns", &cfg->max_turns, e);
    case OPT_PARSE_RETRIES: return cl_parse_int(arg, 0, 100, "--parse-retries", &cfg->parse_retries, e);
    case OPT_BUFFER: return cl_parse_int(arg, 1, 10000000, "--buffer", &cfg->buffer, e);
    case OPT_PRESET:
        if (strcmp(arg, "paper") && strcmp(arg, "v2"))
            return cl_err_set(e, CL_EXIT_USAGE, "--preset: unknown preset '%s' (paper, v2)", arg);
        t->preset = arg;
        return 0;
    case OPT_MARKER:
        if (!*arg)
            return cl_err_set(e, CL_EXIT_USAGE, "--terminate-marker must not be empty");
        cfg->marker = arg;
        return 0;
    case OPT_USER_STYLE:
        if (!strcmp(arg, "prompted"))
            cfg->user_style = CL_USER_PROMPTED;
        else if (!strcmp(arg, "userlm"))
            cfg->user_style = CL_USER_USERLM;
        else
            return cl_err_set(e, CL_EXIT_USAGE, "--user-style: unknown style '%s' (prompted, userlm)", arg);
        return 0;
    case OPT_USERLM_END: cfg->userlm_end = arg; return 0;
    case OPT_PROACT: return cl_parse_double(arg, 0, 1, "--proact-ratio", &cfg->proact_ratio, e);
    case OPT_SYSPROMPT: return cl_parse_double(arg, 0, 1, "--system-prompt-ratio", &cfg->system_ratio, e);
    case OPT_ASSISTANT_MODE: return parse_mode(arg, "--assistant-mode", &t->assistant_mode, e);
    case OPT_FUTURE_MODE: return parse_mode(arg, "--future-mode", &cfg->future.mode, e);
    case OPT_PROMPT_DIR: cfg->prompt_dir = arg; return 0;
    case OPT_PROMPT_SET: return cl_prompt_set_parse(arg, &cfg->prompt_set, e);
    case OPT_NO_SAMPLE_SEED: cfg->no_sample_seed = 1; return 0;
    case OPT_LOGPROBS: cfg->logprobs = 1; return 0;
    case OPT_RESPONSE_FORMAT: {
        int f = cl_response_format_parse(arg);
        if (f < 0) return cl_err_set(e, CL_EXIT_USAGE, "--response-format: unknown value '%s' (auto, schema, none)", arg);
        cfg->response_format = (cl_response_format)f;
        return 0;
    }
    case OPT_CANDIDATE:
        if (cfg->nsources >= MAX_SOURCES)
            return cl_err_set(e, CL_EXIT_USAGE, "at most %d --candidate sources", MAX_SOURCES);
        t->source_spec[cfg->nsources++] = (char *)arg;
        return 0;
    }
    return cl_err_set(e, CL_EXIT_SOFTWARE, "unhandled option %d", opt);
}

/* --candidate SPEC[:MODE]: SPEC names a role (assistant, future-assistant) or a model served
 * through the assistant role's endpoint ("openai:gpt-4o"). */
static void build_sources(tool *t, cl_llm *llm, cl_rollout_source *src)
{
    for (int i = 0; i < t->cfg.nsources; i++) {
        char *spec = t->source_spec[i];
        src[i] = (cl_rollout_source){.mode = CL_ASSISTANT_VANILLA, .label = spec};
        char *colon = strrchr(spec, ':');
        if (colon && cl_assistant_mode_parse(colon + 1) >= 0) {
            src[i].mode = cl_assistant_mode_parse(colon + 1);
            *colon = 0;
        }
        if (!strcmp(spec, "assistant") || !strcmp(spec, "future-assistant")) {
            int fut = !strcmp(spec, "future-assistant") && t->role_spec[1];
            src[i].role = cl_llm_role(llm, fut ? "future-assistant" : "assistant");
            if (t->role_spec[fut])
                src[i].label = t->role_spec[fut];
        } else if (!strncmp(spec, "openai:", 7) && spec[7]) {
            src[i].role = cl_llm_role(llm, "assistant");
            src[i].model = spec + 7;
        } else {
            cl_usage_error("--candidate: '%s' is neither a role (assistant, future-assistant) "
                           "nor an openai:MODEL spec", spec);
        }
    }
}

/* A preset sets what the user did not set explicitly, whatever the order of the flags. */
static void apply_preset(tool *t)
{
    cl_rollout_config *cfg = &t->cfg;
    int paper = t->preset && !strcmp(t->preset, "paper");
    if (!t->set[OPT_MAX_TURNS])
        cfg->max_turns = paper ? 8 : 7;
    if (!paper)
        return;
    static const char *const flags[][2] = {
        {"assistant-top-p", "0.9"}, {"future-assistant-top-p", "0.9"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        int seen = 0;
        for (int j = 0; j < t->nllm_seen; j++)
            seen |= !strcmp(t->llm_seen[j], flags[i][0]);
        for (const struct option *o = t->lc.opts; !seen && o->name; o++) {
            if (!strcmp(o->name, flags[i][0])) {
                cl_err e = {0};
                if (cl_llm_cli_opt(&t->lc, o->val, flags[i][1], &e) < 0)
                    cl_die_err(&e);
            }
        }
    }
}

static const char help[] =
    "Mode (one is required):\n"
    "      --full               evaluation: one complete conversation per seed or state\n"
    "      --branch             data engine step: K candidates x S futures of w turns per state\n"
    "      --preset NAME        paper (max-turns 8, assistant top-p 0.9) or v2 (the defaults)\n"
    "Shape:\n"
    "  -k, --candidates K       candidate replies per state (default 2)\n"
    "      --samples S          forward samples per candidate (default 3)\n"
    "      --window W           forward turns per sample (default 2)\n"
    "      --max-turns N        assistant replies per conversation (default 7; paper 8)\n"
    "Roles:\n"
    "      --candidate SPEC[:MODE]  a candidate source (repeatable; sets K): assistant,\n"
    "                           future-assistant or openai:MODEL; MODE vanilla|system|proact\n"
    "      --assistant-mode MODE    every assistant reply in MODE (vanilla, system, proact)\n"
    "      --proact-ratio X     share of candidates (or --full conversations) in proact mode\n"
    "                           (default 0.5 with --branch, 0 with --full)\n"
    "      --system-prompt-ratio X  share of the others behind the CollabLLM system prompt (0)\n"
    "      --future-mode MODE   mode of the assistant turns inside futures (vanilla)\n"
    "      --user-style STYLE   prompted (a chat model answering JSON, default) or userlm\n"
    "      --userlm-end-token T end-of-conversation token of userlm users (<|endconversation|>)\n"
    "      --terminate-marker M the user's end-of-conversation marker ([[TERMINATE CHAT]])\n"
    "      --prompt-set SET     the proact and system prompts: official (the official\n"
    "                           prompts' behaviour, default) or cl (ours)\n"
    "      --prompt-dir DIR     DIR/NAME.txt replaces the built-in prompt NAME\n"
    "      --parse-retries N    re-asks after a reply that cannot be read (default 3)\n"
    "      --response-format F  send the JSON schema of the reply with the calls whose prompt\n"
    "                           asks for JSON (proact, prompted user): auto (to local:\n"
    "                           models only, default), schema (to every model), none\n"
    "Engine:\n"
    "      --buffer N           records held at once, the output window (default 1024)\n"
    "      --no-sample-seed     send no per-call \"seed\" (for servers that reject it)\n"
    "      --logprobs           ask for the candidates' sampled-token log-probs and record\n"
    "                           them as candidates[].logps (GRPO's sampling policy)\n";

int main(int argc, char **argv)
{
#ifdef CL_HAVE_CUDA
    cl_device_register(cl_cuda_open); /* local:DIR+device=cuda */
#endif
    static const struct option own[] = {
        {"full", no_argument, 0, OPT_FULL},
        {"branch", no_argument, 0, OPT_BRANCH},
        {"candidates", required_argument, 0, OPT_CANDIDATES},
        {"samples", required_argument, 0, OPT_SAMPLES},
        {"window", required_argument, 0, OPT_WINDOW},
        {"max-turns", required_argument, 0, OPT_MAX_TURNS},
        {"preset", required_argument, 0, OPT_PRESET},
        {"terminate-marker", required_argument, 0, OPT_MARKER},
        {"user-style", required_argument, 0, OPT_USER_STYLE},
        {"userlm-end-token", required_argument, 0, OPT_USERLM_END},
        {"proact-ratio", required_argument, 0, OPT_PROACT},
        {"system-prompt-ratio", required_argument, 0, OPT_SYSPROMPT},
        {"candidate", required_argument, 0, OPT_CANDIDATE},
        {"assistant-mode", required_argument, 0, OPT_ASSISTANT_MODE},
        {"future-mode", required_argument, 0, OPT_FUTURE_MODE},
        {"prompt-dir", required_argument, 0, OPT_PROMPT_DIR},
        {"prompt-set", required_argument, 0, OPT_PROMPT_SET},
        {"parse-retries", required_argument, 0, OPT_PARSE_RETRIES},
        {"buffer", required_argument, 0, OPT_BUFFER},
        {"no-sample-seed", no_argument, 0, OPT_NO_SAMPLE_SEED},
        {"logprobs", no_argument, 0, OPT_LOGPROBS},
        {"response-format", required_argument, 0, OPT_RESPONSE_FORMAT},
        {0, 0, 0, 0},
    };
    static const cl_llm_cli_role roles[] = {
        {"assistant", "the assistant (candidates, --full replies)", 0.8, 2048},
        {"user", "the user simulator", 1.0, 1024},
        {"future-assistant", "the assistant inside forward samples (default: --assistant)", 0.8, 2048},
        {0, 0, 0, 0},
    };
    static tool t;
    t.cfg = (cl_rollout_config){
        .candidates = 2, .samples = 3, .window = 2, .max_turns = 7,
        .marker = CL_TERMINATE_MARKER, .userlm_end = "<|endconversation|>",
        .proact_ratio = -1, .parse_retries = 3, .buffer = 1024, .admit_queue = 64,
        .future = {.mode = CL_ASSISTANT_VANILLA},
    };
    t.assistant_mode = CL_ASSISTANT_MIXED;
    cl_llm_cli_init(&t.lc, roles, own, help);
    t.lc.extra_backends = cl_world_backends; /* --user world: and the scripted assistants */
    const cl_cli cli = {
        .prog = "cl-rollout",
        .synopsis = "--full|--branch [options] [FILE...]",
        .summary = "Simulate conversations between an assistant and a user simulator: complete\n"
                   "evaluation conversations, or candidate replies with forward samples.",
        .options_help = t.lc.help,
        .opts = t.lc.opts,
        .shortopts = "k:",
        .on_opt = on_opt,
        .ctx = &t,
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_rollout_config *cfg = &t.cfg;
    if (!t.mode_set)
        cl_usage_error("choose a mode: --full or --branch");
    if (cfg->nsources && t.set[OPT_CANDIDATES] && cfg->candidates != cfg->nsources)
        cl_usage_error("--candidates %d disagrees with the %d --candidate sources",
                       cfg->candidates, cfg->nsources);
    apply_preset(&t);
    if (cfg->proact_ratio < 0)
        cfg->proact_ratio = cfg->mode == CL_ROLLOUT_BRANCH ? 0.5 : 0;
    cfg->seed = c.seed;

    cl_err e = {0};
    cl_llm *llm = cl_llm_cli_open(&t.lc, &c, &e);
    if (!llm)
        cl_die_err(&e);
    cl_rollout_source sources[MAX_SOURCES];
    build_sources(&t, llm, sources);
    if (cfg->nsources) {
        cfg->sources = sources;
        cfg->candidates = cfg->nsources;
    }
    int asst = cl_llm_role(llm, "assistant"), fut = cl_llm_role(llm, "future-assistant");
    cfg->user_role = cl_llm_role(llm, "user");
    const char *asst_label = t.role_spec[0] ? t.role_spec[0] : "assistant";
    cfg->assistant = (cl_rollout_source){.role = asst, .label = asst_label, .mode = t.assistant_mode};
    int future_mode = cfg->future.mode;
    int fut_own = cl_llm_role_configured(llm, fut);
    cfg->future = (cl_rollout_source){.role = fut_own ? fut : asst,
                                      .label = fut_own ? t.role_spec[1] : asst_label,
                                      .mode = future_mode};

    /* A role that every record needs must be there before any input is read or paid for. */
    int need_asst = cfg->mode == CL_ROLLOUT_FULL || !cfg->nsources;
    for (int i = 0; i < cfg->nsources; i++)
        need_asst |= sources[i].role == asst;
    if (need_asst && !cl_llm_role_configured(llm, asst))
        cl_die(CL_EXIT_CONFIG, "no assistant model: give --assistant SPEC (for example openai:gpt-4o)");
    if (!cl_llm_role_configured(llm, cfg->user_role))
        cl_die(CL_EXIT_CONFIG, "no user simulator model: give --user SPEC (for example openai:gpt-4o-mini)");

    cl_io_opts io_opts = {.assign_ids = 1};
    cl_io *io = cl_io_open(&c, &io_opts, &e);
    if (!io)
        cl_die_err(&e);
    cl_llm_cli_attach(&t.lc, llm, io);
    int st = cl_rollout_run(cfg, llm, io, &e);
    int rc = cl_llm_cli_finish(&t.lc, llm, io, st, &e);
    cl_llm_free(llm);
    cl_llm_cli_free(&t.lc);
    return rc;
}

/* cl-pairs — MR-ranked turns into DPO pairs, SFT dialogues and next-turn states, and the flat
 * rows of the published collabllm-multiturn-* datasets.  Without a mode it is a record filter
 * (--where/--map/--shard).  The selection rules live in lib/collab/pairs. */
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "collab/conv.h"
#include "core/json.h"
#include "collab/pairs.h"
#include "collab/prompts.h"
#include "collab/schema.h"
#include "core/records.h"

enum {
    OPT_DPO = 256, OPT_SFT, OPT_ADVANCE, OPT_TO_FLAT, OPT_FROM_FLAT,
    OPT_MIN_GAP, OPT_SYSTEM_PROMPT, OPT_PROMPT_DIR, OPT_PROMPT_SET, OPT_MIN, OPT_NEXT_USER, OPT_MAX_TURNS,
    OPT_MARKER,
};
enum mode { MODE_COPY, MODE_DPO, MODE_SFT, MODE_ADVANCE, MODE_TO_FLAT, MODE_FROM_FLAT };
#define MAX_FLOORS 16

typedef struct opts {
    enum mode mode;
    const char *mode_name;
    cl_pair_config pair;
    cl_advance_config adv;
    int system_prompt;
    const char *prompt_dir;
    cl_prompt_set prompt_set;
    cl_floor floors[MAX_FLOORS];
    int nfloors;
    const char *advance_only, *dpo_only; /* an option given that only that mode reads */
} opts;

static int set_mode(opts *o, enum mode m, const char *name, cl_err *e)
{
    if (o->mode != MODE_COPY && o->mode != m)
        return cl_err_set(e, CL_EXIT_USAGE, "%s and %s cannot be combined", o->mode_name, name);
    o->mode = m;
    o->mode_name = name;
    return 0;
}

static int on_opt(void *ctx, int opt, const char *arg, cl_err *e)
{
    opts *o = ctx;
    long n;
    switch (opt) {
    case OPT_DPO: return set_mode(o, MODE_DPO, "--dpo", e);
    case OPT_SFT: return set_mode(o, MODE_SFT, "--sft", e);
    case OPT_ADVANCE: return set_mode(o, MODE_ADVANCE, "--advance", e);
    case OPT_TO_FLAT: return set_mode(o, MODE_TO_FLAT, "--to-flat", e);
    case OPT_FROM_FLAT: return set_mode(o, MODE_FROM_FLAT, "--from-flat", e);
    case OPT_MIN_GAP:
        o->dpo_only = "--min-gap";
        return cl_parse_double(arg, 0, 1e300, "--min-gap", &o->pair.min_gap, e);
    case OPT_SYSTEM_PROMPT: o->system_prompt = 1; return 0;
    case OPT_PROMPT_DIR: o->prompt_dir = arg; return 0;
    case OPT_PROMPT_SET: return cl_prompt_set_parse(arg, &o->prompt_set, e);
    case OPT_MIN:
        if (o->nfloors == MAX_FLOORS)
            return cl_err_set(e, CL_EXIT_USAGE, "--min: at most %d floors", MAX_FLOORS);
        return cl_floor_parse(arg, &o->floors[o->nfloors++], e);
    case OPT_NEXT_USER:
        o->advance_only = "--next-user";
        if (!strcmp(arg, "longest"))
            o->adv.rule = CL_NEXT_LONGEST;
        else if (!strcmp(arg, "worst-open"))
            o->adv.rule = CL_NEXT_WORST_OPEN;
        else
            return cl_err_set(e, CL_EXIT_USAGE, "--next-user: '%s' is not longest or worst-open", arg);
        return 0;
    case OPT_MAX_TURNS:
        o->advance_only = "--max-turns";
        if (cl_parse_long(arg, 1, 100000, "--max-turns", &n, e) < 0)
            return -1;
        o->adv.max_turns = n;
        return 0;
    case OPT_MARKER:
        o->advance_only = "--terminate-marker";
        if (!*arg)
            return cl_err_set(e, CL_EXIT_USAGE, "--terminate-marker: empty");
        o->adv.marker = arg;
        return 0;
    }
    return cl_err_set(e, CL_EXIT_SOFTWARE, "unhandled option %d", opt);
}

/* Reports a record that could not be used and keeps going; -1 only when writing fails. */
static int record_failed(cl_io *io, cl_rec *rec, const cl_err *why, cl_err *e)
{
    return cl_io_fail(io, rec, jv_copy(*cl_rec_value(rec)), why->msg, e);
}

static void stat_num(cl_io *io, const char *key, long n) { cl_io_stat(io, key, jv_number((double)n)); }

/* Reads every record that fits shape (cl_schema_admit) into a collection: add returns 1
 * (taken), 0 (skipped, counted in *skipped) or -1 (a record that cannot be used: reported with
 * its file and line, and the run goes on). */
typedef int (*add_fn)(void *ctx, const jv *rec, cl_err *e);
static int gather(cl_io *io, cl_schema shape, add_fn add, void *ctx, long *skipped, cl_err *e)
{
    cl_rec rec;
    int rc;
    while ((rc = cl_io_next(io, &rec, e)) == 1) {
        int fits = cl_schema_admit(io, &rec, shape, e);
        if (fits <= 0) {
            if (fits < 0)
                return -1;
            continue;
        }
        cl_err why = {0};
        int got = add(ctx, cl_rec_value(&rec), &why);
        *skipped += got == 0;
        if (got < 0 && record_failed(io, &rec, &why, e) < 0)
            return -1;
    }
    return rc;
}

/* A finished state (done, no candidates) has no turn to pair or flatten: skipped. */
static int finished_state(const jv *rec) { return !cl_json_has(rec, "candidates") && cl_state_done(rec); }

static int add_turn(void *t, const jv *rec, cl_err *e)
{
    if (finished_state(rec))
        return 0;
    return cl_turns_add(t, rec, e) < 0 ? -1 : 1;
}

static int add_dialogue(void *d, const jv *rec, cl_err *e) { return cl_dialogues_add(d, rec, e); }

static int add_row(void *t, const jv *rec, cl_err *e)
{
    jv b;
    if (flat_row_branch(jv_copy(*rec), &b, e) < 0)
        return -1;
    int rc = cl_turns_add(t, &b, e);
    jv_free(b);
    return rc < 0 ? -1 : 1;
}

static int run_dpo(cl_io *io, const opts *o, cl_err *e)
{
    cl_turns *t = cl_turns_new();
    long skipped = 0;
    int rc = gather(io, CL_SCHEMA_STATE, add_turn, t, &skipped, e);
    long pairs = 0, small_gap = 0, single = 0;
    for (int i = 0; rc == 0 && i < cl_turns_count(t); i++) {
        jv b = cl_turns_get(t, i);
        jv cands = cl_json_get(&b, "candidates");
        int lone = jv_array_length(cands) < 2;
        jv pair;
        int got = dpo_pair(&b, &o->pair, &pair, e);
        jv_free(b);
        if (got < 0)
            rc = -1;
        else if (got == 0)
            lone ? single++ : small_gap++;
        else if ((rc = cl_io_put(io, pair, e)) == 0)
            pairs++;
    }
    stat_num(io, "turns", cl_turns_count(t));
    stat_num(io, "pairs", pairs);
    stat_num(io, "below_min_gap", small_gap);
    stat_num(io, "single_candidate", single);
    stat_num(io, "finished_states", skipped);
    cl_turns_free(t);
    return rc;
}

static int run_sft(cl_io *io, const opts *o, cl_err *e)
{
    cl_dialogues *d = cl_dialogues_new(o->floors, o->nfloors);
    long unfinished = 0;
    int rc = gather(io, CL_SCHEMA_STATE, add_dialogue, d, &unfinished, e);
    long kept = 0, below = 0;
    for (int i = 0; rc == 0 && i < cl_dialogues_count(d); i++) {
        jv sft;
        if (!sft_dialogue(d, i, &o->pair, &sft))
            below++;
        else if ((rc = cl_io_put(io, sft, e)) == 0)
            kept++;
    }
    stat_num(io, "conversations", cl_dialogues_count(d));
    stat_num(io, "dialogues", kept);
    stat_num(io, "below_min", below);
    stat_num(io, "unfinished_states", unfinished);
    cl_dialogues_free(d);
    return rc;
}

static int run_advance(cl_io *io, const opts *o, cl_err *e)
{
    cl_rec rec;
    int rc;
    long done_before = 0, active = 0;
    jv reasons = jv_object();
    while ((rc = cl_io_next(io, &rec, e)) == 1) {
        if ((rc = cl_schema_admit(io, &rec, CL_SCHEMA_STATE, e)) <= 0) {
            if (rc < 0)
                break;
            continue; /* malformed, skipped with --skip-bad */
        }
        const jv *v = cl_rec_value(&rec);
        if (cl_state_done(v)) {
            done_before++;
            if ((rc = cl_io_put_rec(io, &rec, e)) < 0)
                break;
            continue;
        }
        cl_err why = {0};
        jv state;
        if (advance_turn(jv_copy(*v), &o->adv, &state, &why) < 0) {
            if ((rc = record_failed(io, &rec, &why, e)) < 0)
                break;
            continue;
        }
        const char *reason = cl_json_str(&state, "done_reason");
        if (cl_json_bool(&state, "done", 0) && reason)
            reasons = cl_json_set_num(reasons, reason, cl_json_num(&reasons, reason, 0) + 1);
        else
            active++;
        if ((rc = cl_io_put(io, state, e)) < 0)
            break;
    }
    stat_num(io, "active", active);
    stat_num(io, "already_done", done_before);
    cl_io_stat(io, "finished", reasons);
    return rc;
}

static int run_to_flat(cl_io *io, cl_err *e)
{
    cl_rec rec;
    int rc;
    long rows = 0, skipped = 0;
    while ((rc = cl_io_next(io, &rec, e)) == 1) {
        if ((rc = cl_schema_admit(io, &rec, CL_SCHEMA_STATE, e)) <= 0) {
            if (rc < 0)
                break;
            continue; /* malformed, skipped with --skip-bad */
        }
        const jv *v = cl_rec_value(&rec);
        if (finished_state(v)) {
            skipped++;
            continue;
        }
        cl_err why = {0};
        jv out;
        if (flat_rows(v, &out, &why) < 0) {
            if ((rc = record_failed(io, &rec, &why, e)) < 0)
                break;
            continue;
        }
        int put = 0;
        jv_array_foreach(out, i, row) {
            if (put == 0 && (put = cl_io_put(io, row, e)) == 0)
                rows++;
            else if (put < 0)
                jv_free(row);
            (void)i;
        }
        jv_free(out);
        if ((rc = put) < 0)
            break;
    }
    stat_num(io, "rows", rows);
    stat_num(io, "finished_states", skipped);
    return rc;
}

static int run_from_flat(cl_io *io, cl_err *e)
{
    cl_turns *t = cl_turns_new();
    long none = 0;
    int rc = gather(io, CL_SCHEMA_ROW, add_row, t, &none, e);
    for (int i = 0; rc == 0 && i < cl_turns_count(t); i++)
        rc = cl_io_put(io, cl_turns_get(t, i), e);
    stat_num(io, "turns", cl_turns_count(t));
    cl_turns_free(t);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"dpo", no_argument, 0, OPT_DPO},
        {"sft", no_argument, 0, OPT_SFT},
        {"advance", no_argument, 0, OPT_ADVANCE},
        {"to-flat", no_argument, 0, OPT_TO_FLAT},
        {"from-flat", no_argument, 0, OPT_FROM_FLAT},
        {"min-gap", required_argument, 0, OPT_MIN_GAP},
        {"system-prompt", no_argument, 0, OPT_SYSTEM_PROMPT},
        {"prompt-dir", required_argument, 0, OPT_PROMPT_DIR},
        {"prompt-set", required_argument, 0, OPT_PROMPT_SET},
        {"min", required_argument, 0, OPT_MIN},
        {"next-user", required_argument, 0, OPT_NEXT_USER},
        {"max-turns", required_argument, 0, OPT_MAX_TURNS},
        {"terminate-marker", required_argument, 0, OPT_MARKER},
        {0, 0, 0, 0},
    };
    opts o = {
        .mode = MODE_COPY,
        .pair = {.min_gap = 0.02},
        .adv = {.rule = CL_NEXT_LONGEST, .max_turns = 7, .marker = "[[TERMINATE CHAT]]"},
    };
    const cl_cli cli = {
        .prog = "cl-pairs",
        .synopsis = "[options] [FILE...]",
        .summary = "Turn scored turns into DPO pairs, SFT dialogues and next-turn states, and\n"
                   "convert to and from the flat rows of the published collabllm datasets.\n"
                   "Without a mode, copies records through the record options.",
        .options_help =
            "Modes (one at most):\n"
            "      --dpo             one preference pair per (conversation, turn): highest MR\n"
            "                        chosen, lowest rejected, ties to the smaller MR std\n"
            "      --sft             the chosen chain of each conversation as {messages}\n"
            "      --advance         next-turn states: append the best reply and the next user\n"
            "                        message from its futures; mark finished conversations done\n"
            "      --to-flat         branch records -> rows of the collabllm-multiturn-* datasets\n"
            "      --from-flat       those rows -> branch records\n"
            "Options:\n"
            "      --min-gap X       --dpo: drop turns whose MR gap is below X (default 0.02)\n"
            "      --system-prompt   --dpo, --sft: put the CollabLLM system prompt first\n"
            "      --prompt-set SET  official (the official system prompt's behaviour, default)\n"
            "                        or cl (ours), recorded as prompt_set on each row\n"
            "      --prompt-dir DIR  read the system prompt (collabllm_system.txt, with cl\n"
            "                        collabllm_system_cl.txt) from DIR when it is there\n"
            "      --min 'M>=X'      --sft: keep conversations whose metric M passes (>=, >,\n"
            "                        <=, <); repeatable, all must hold\n"
            "      --next-user RULE  --advance: longest (v2, default) or worst-open (paper era)\n"
            "      --max-turns N     --advance: done after N assistant replies (default 7)\n"
            "      --terminate-marker S\n"
            "                        --advance: text that ends the chat (default [[TERMINATE CHAT]])\n",
        .opts = long_opts,
        .on_opt = on_opt,
        .ctx = &o,
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_err e = {0};
    char *system_prompt = NULL;
    if (o.system_prompt) {
        if (o.mode != MODE_DPO && o.mode != MODE_SFT)
            cl_usage_error("--system-prompt needs --dpo or --sft");
        /* The text exactly as cl-rollout sends it in its system mode, so training prompts and
         * evaluation prompts match byte for byte. */
        if (!(system_prompt = cl_prompt_load(o.prompt_dir, cl_prompt_in_set(o.prompt_set, "collabllm_system"), &e)))
            cl_die_err(&e);
        o.pair.system_prompt = system_prompt;
        o.pair.prompt_set = cl_prompt_set_name(o.prompt_set);
    }
    if (o.nfloors > 0 && o.mode != MODE_SFT)
        cl_usage_error("--min needs --sft");
    if (o.dpo_only && o.mode != MODE_DPO)
        cl_usage_error("%s needs --dpo", o.dpo_only);
    if (o.advance_only && o.mode != MODE_ADVANCE)
        cl_usage_error("%s needs --advance", o.advance_only);
    /* Trainers read DPO pairs, SFT dialogues and flat rows: a record that cannot become one
     * is reported (and copied to --rejects), never written among them. */
    cl_io_opts io_opts = {.failed_aside = o.mode == MODE_DPO || o.mode == MODE_SFT || o.mode == MODE_TO_FLAT};
    cl_io *io = cl_io_open(&c, &io_opts, &e);
    if (!io) {
        free(system_prompt);
        cl_die_err(&e);
    }
    int rc;
    switch (o.mode) {
    case MODE_DPO: rc = run_dpo(io, &o, &e); break;
    case MODE_SFT: rc = run_sft(io, &o, &e); break;
    case MODE_ADVANCE: rc = run_advance(io, &o, &e); break;
    case MODE_TO_FLAT: rc = run_to_flat(io, &e); break;
    case MODE_FROM_FLAT: rc = run_from_flat(io, &e); break;
    default: rc = cl_io_passthrough(io, &e); break;
    }
    free(system_prompt);
    return cl_io_finish(io, rc, &e);
}

/* cl-judge — LLM-as-judge scores for conversations, and the benchmark report.
 * Judging: flags -> cl_judge (judge.h) + LLM client -> cl_judge_run over the stream.
 * --report: records -> cl_report (report.h) -> table, Markdown, TSV, JSON, chart. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "collab/judge.h"
#include "collab/judge_run.h"
#include "llm/cli.h"
#include "core/records.h"
#include "collab/report.h"
#include "collab/rm.h"
#include "collab/schema.h"
#include "world/backend.h"
#ifdef CL_HAVE_CUDA
#include "cuda/cuda.h"
#endif

enum {
    OPT_EXTRACT = 256, OPT_INTERACTIVITY, OPT_ACCURACY, OPT_HELPFULNESS, OPT_CLARIFY, OPT_ITR_SCALE,
    OPT_CONTEXT, OPT_SAMPLES, OPT_RETRIES, OPT_PROMPT_DIR, OPT_REPORT, OPT_RM_UNITS, OPT_LABEL, OPT_LABEL_FIELD,
    OPT_BASELINE, OPT_FORMAT, OPT_PLOT, OPT_BOOTSTRAP, OPT_METRIC,
};

#define MAX_LABELS 256

typedef struct opts {
    cl_llm_cli lc;
    cl_judge_config jc;
    long samples, retries, bootstrap;
    int report, rm_units;
    const char *labels[MAX_LABELS];
    int nlabels;
    const char *label_field, *baseline, *format, *plot, *metrics;
    const char *itr_scale;
} opts;

static int on_opt(void *ctx, int opt, const char *arg, cl_err *e)
{
    opts *o = ctx;
    int r = cl_llm_cli_opt(&o->lc, opt, arg, e);
    if (r)
        return r < 0 ? -1 : 0;
    switch (opt) {
    case OPT_EXTRACT:
        o->jc.kinds |= 1u << CL_JUDGE_EXTRACT;
        o->jc.artefact = arg;
        return 0;
    case OPT_INTERACTIVITY: o->jc.kinds |= 1u << CL_JUDGE_INTERACTIVITY; return 0;
    case OPT_ACCURACY: o->jc.kinds |= 1u << CL_JUDGE_ACCURACY; return 0;
    case OPT_HELPFULNESS: o->jc.kinds |= 1u << CL_JUDGE_HELPFULNESS; return 0;
    case OPT_CLARIFY: o->jc.kinds |= 1u << CL_JUDGE_CLARIFY; return 0;
    case OPT_ITR_SCALE: o->itr_scale = arg; return 0; /* "paper" depends on --context */
    case OPT_CONTEXT:
        if (strcmp(arg, "window") && strcmp(arg, "full"))
            return cl_err_set(e, CL_EXIT_USAGE, "--context: '%s' is not window or full", arg);
        o->jc.context_full = arg[0] == 'f';
        return 0;
    case OPT_SAMPLES: return cl_parse_long(arg, 1, 1000, "--judge-samples", &o->samples, e);
    case OPT_RETRIES: return cl_parse_long(arg, 0, 100, "--judge-retries", &o->retries, e);
    case OPT_PROMPT_DIR: o->jc.prompt_dir = arg; return 0;
    case OPT_REPORT: o->report = 1; return 0;
    case OPT_RM_UNITS: o->rm_units = 1; return 0;
    case OPT_LABEL:
        if (o->nlabels == MAX_LABELS)
            return cl_err_set(e, CL_EXIT_USAGE, "--label: at most %d labels", MAX_LABELS);
        o->labels[o->nlabels++] = arg;
        return 0;
    case OPT_LABEL_FIELD: o->label_field = arg; return 0;
    case OPT_BASELINE: o->baseline = arg; return 0;
    case OPT_FORMAT:
        if (strcmp(arg, "table") && strcmp(arg, "markdown") && strcmp(arg, "tsv") && strcmp(arg, "json"))
            return cl_err_set(e, CL_EXIT_USAGE, "--format: '%s' is not table, markdown, tsv or json", arg);
        o->format = arg;
        return 0;
    case OPT_PLOT: o->plot = arg; return 0;
    case OPT_BOOTSTRAP: return cl_parse_long(arg, 100, 1000000, "--bootstrap", &o->bootstrap, e);
    case OPT_METRIC: o->metrics = arg; return 0;
    }
    return cl_err_set(e, CL_EXIT_USAGE, "unexpected option");
}

/* The run label of a record: --label-field, else its input file's run name (names[i]: the
 * --label given for it, else one derived from its path by cl_report_run_names).  By the
 * input's place, not its path: one file given twice with two --label is two runs. */
static const char *record_label(const opts *o, const char **names, cl_rec *rec)
{
    if (o->label_field) {
        const char *l = cl_json_str(cl_rec_value(rec), o->label_field);
        if (l)
            return l;
    }
    return names[rec->input];
}

static int run_report(opts *o, cl_common *c)
{
    cl_err e = {0};
    const char *out_path = c->output;
    /* the report is text, not records: the record writer stays silent */
    c->output = NULL;
    c->plain = 1;
    cl_report_config rc = {.baseline = o->baseline, .bootstrap = (int)o->bootstrap, .seed = c->seed,
                           .metrics = o->metrics};
    int nin = c->ninputs ? c->ninputs : 1;
    const char *std_in = "-", *const *paths = c->ninputs ? (const char *const *)c->inputs : &std_in;
    const char **names = calloc((size_t)nin, sizeof *names);
    char **owned = calloc((size_t)nin, sizeof *owned);
    if (!names || !owned)
        cl_die(CL_EXIT_SOFTWARE, "out of memory");
    for (int i = 0; i < nin && i < o->nlabels; i++)
        names[i] = o->labels[i];
    if (cl_report_run_names(paths, nin, names, owned, &e) < 0) {
        if (!o->label_field)
            cl_usage_error("%s", e.msg);
        for (int i = 0; i < nin; i++) /* only for records without the field */
            if (!names[i])
                names[i] = "unlabelled";
    }
    cl_report *rep = cl_report_new(&rc, &e);
    cl_io *io = rep ? cl_io_open(c, NULL, &e) : NULL;
    if (!io) {
        cl_report_free(rep);
        cl_die_err(&e);
    }
    cl_rec rec;
    int got, status = 0;
    while ((got = cl_io_next(io, &rec, &e)) > 0) {
        if ((got = cl_schema_admit(io, &rec, CL_SCHEMA_STATE, &e)) <= 0) {
            if (got < 0)
                break;
            continue; /* malformed, skipped with --skip-bad */
        }
        if (cl_report_add(rep, record_label(o, names, &rec), cl_rec_value(&rec), &e) < 0) {
            char m[sizeof e.msg];
            snprintf(m, sizeof m, "%s", e.msg);
            cl_err_set(&e, e.code, "%s: %s", cl_rec_where(io, &rec), m);
            got = -1;
            break;
        }
    }
    jv result = jv_invalid();
    if (got == 0) {
        result = cl_report_compute(rep, &e);
        if (!jv_is_valid(result))
            got = -1;
    }
    if (got == 0) {
        FILE *out = out_path ? fopen(out_path, "w") : stdout;
        if (!out) {
            cl_err_set(&e, CL_EXIT_IOERR, "%s: cannot create the report", out_path);
            got = -1;
        } else {
            if (cl_report_write(&result, o->format, out, &e) < 0)
                got = -1;
            if (out != stdout && fclose(out) != 0 && got == 0)
                got = cl_err_set(&e, CL_EXIT_IOERR, "%s: cannot write the report", out_path);
        }
    }
    if (got == 0 && o->plot && cl_report_plot(&result, o->plot, &e) < 0)
        got = -1;
    jv_free(result);
    cl_report_free(rep);
    status = cl_io_finish(io, got < 0 ? -1 : 0, &e);
    for (int i = 0; i < nin; i++)
        free(owned[i]);
    free(owned);
    free(names);
    return status;
}

static int run_judges(opts *o, cl_common *c)
{
    cl_err e = {0};
    if (!o->jc.kinds)
        cl_usage_error("choose judges: --extract KIND, --interactivity, --accuracy, --helpfulness, "
                       "--clarify (or --report)");
    cl_judge *j = cl_judge_new(&o->jc, &e);
    if (!j) {
        if (e.code == CL_EXIT_USAGE)
            cl_usage_error("%s", e.msg);
        cl_die_err(&e);
    }
    cl_llm *llm = cl_llm_cli_open(&o->lc, c, &e);
    if (!llm) {
        cl_judge_free(j);
        cl_die_err(&e);
    }
    int role = cl_llm_role(llm, "judge");
    if (!cl_llm_role_configured(llm, role)) {
        cl_llm_free(llm);
        cl_judge_free(j);
        cl_llm_cli_free(&o->lc);
        cl_die(CL_EXIT_CONFIG, "no judge model: give --judge SPEC (for example openai:gpt-4o)");
    }
    cl_io *io = cl_io_open(c, NULL, &e);
    if (!io) {
        cl_llm_free(llm);
        cl_judge_free(j);
        cl_die_err(&e);
    }
    cl_llm_cli_attach(&o->lc, llm, io);
    cl_judge_run_opts ro = {.samples = (int)o->samples, .retries = (int)o->retries, .seed = c->seed,
                            .role = role};
    int rc = cl_judge_run(io, llm, j, &ro, &e);
    int status = cl_llm_cli_finish(&o->lc, llm, io, rc, &e);
    cl_llm_free(llm);
    cl_judge_free(j);
    return status;
}

/* --rm-units: the judge model as a reward model, serving cl-reward's units (collab/rm.h). */
static int run_rm_units(opts *o, const cl_common *c)
{
    cl_err e = {0};
    cl_llm *llm = cl_llm_cli_open(&o->lc, c, &e);
    if (!llm)
        cl_die_err(&e);
    int role = cl_llm_role(llm, "judge");
    if (!cl_llm_role_configured(llm, role)) {
        cl_llm_free(llm);
        cl_die(CL_EXIT_CONFIG, "no reward model: give --judge SPEC");
    }
    int rc = cl_rm_serve(llm, role, 0, stdout, &e);
    if (rc != 0)
        cl_warn("%s", e.msg);
    cl_llm_cli_report(&o->lc, llm, NULL);
    int status = rc != 0 ? e.code : cl_llm_cli_exit_status(&o->lc, llm);
    cl_llm_free(llm);
    return status;
}

int main(int argc, char **argv)
{
#ifdef CL_HAVE_CUDA
    cl_device_register(cl_cuda_open); /* local:DIR+device=cuda */
#endif
    static const struct option tool_opts[] = {
        {"extract", required_argument, 0, OPT_EXTRACT},
        {"interactivity", no_argument, 0, OPT_INTERACTIVITY},
        {"accuracy", no_argument, 0, OPT_ACCURACY},
        {"helpfulness", no_argument, 0, OPT_HELPFULNESS},
        {"clarify", no_argument, 0, OPT_CLARIFY},
        {"itr-scale", required_argument, 0, OPT_ITR_SCALE},
        {"context", required_argument, 0, OPT_CONTEXT},
        {"judge-samples", required_argument, 0, OPT_SAMPLES},
        {"judge-retries", required_argument, 0, OPT_RETRIES},
        {"prompt-dir", required_argument, 0, OPT_PROMPT_DIR},
        {"report", no_argument, 0, OPT_REPORT},
        {"rm-units", no_argument, 0, OPT_RM_UNITS},
        {"label", required_argument, 0, OPT_LABEL},
        {"label-field", required_argument, 0, OPT_LABEL_FIELD},
        {"baseline", required_argument, 0, OPT_BASELINE},
        {"format", required_argument, 0, OPT_FORMAT},
        {"plot", required_argument, 0, OPT_PLOT},
        {"bootstrap", required_argument, 0, OPT_BOOTSTRAP},
        {"metric", required_argument, 0, OPT_METRIC},
        {0, 0, 0, 0},
    };
    static const char tool_help[] =
        "Judges (at least one, unless --report):\n"
        "      --extract KIND      extract the final artefact: document, code or answer\n"
        "      --interactivity     rate engagement and clarification (see --itr-scale)\n"
        "      --accuracy          final answer against the reference: 0 or 1\n"
        "      --helpfulness       six-level helpfulness, 0 to 1\n"
        "      --clarify           Abg-CoQA: 1 iff it asks when ambiguous, answers when not\n"
        "      --itr-scale S       unit (0/0.5/1 anchors, default), paper-train (1-3 rating / 3,\n"
        "                          the paper-era training reward), paper-eval (2(S-2.5), the\n"
        "                          paper's Table 1) or paper (train with --context window, eval\n"
        "                          with --context full)\n"
        "      --context C         window (forward window, history as context; default) or full\n"
        "      --judge-samples N   judgements per judge and conversation, averaged (default 1)\n"
        "      --judge-retries N   asks again after an unreadable reply (default 2)\n"
        "      --prompt-dir DIR    DIR/NAME.txt replaces built-in prompt NAME\n"
        "Reward model:\n"
        "      --rm-units          serve cl-reward --metric rm_score: read its units (JSON\n"
        "                          lines) on stdin, write {\"rm_score\": x} lines, x the\n"
        "                          judge model's reply to the whole conversation (a number)\n"
        "Report:\n"
        "      --report            print the benchmark table instead of judging\n"
        "      --label NAME        run name of the next input file (repeat per file)\n"
        "      --label-field F     run name from the records' field F\n"
        "      --baseline NAME     compare every other run with this one\n"
        "      --format F          table (default), markdown, tsv or json\n"
        "      --plot FILE.png     draw means and intervals with gnuplot\n"
        "      --bootstrap N       bootstrap resamples per interval (default 2000)\n"
        "      --metric SPEC       task metric: NAME or TASK=NAME,... (default per task)\n";
    static const cl_llm_cli_role roles[] = {
        {"judge", "the judge model (every judge and the extractor)", 0.0, 2048},
        {0, 0, 0, 0},
    };
    opts o = {.samples = 1, .retries = 2, .format = "table"};
    cl_llm_cli_init(&o.lc, roles, tool_opts, tool_help);
    o.lc.extra_backends = cl_world_backends; /* --judge world: (cl-llm(7)) */
    const cl_cli cli = {
        .prog = "cl-judge",
        .synopsis = "[options] [FILE...]",
        .summary = "Score conversations with LLM judges, or print the benchmark report (--report).",
        .options_help = o.lc.help,
        .opts = o.lc.opts,
        .on_opt = on_opt,
        .ctx = &o,
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_err pe = {0};
    if (o.itr_scale && cl_itr_scale_parse(o.itr_scale, o.jc.context_full, &o.jc.itr_scale, &pe) != 0)
        cl_usage_error("%s", pe.msg);
    int status;
    if (o.rm_units) {
        if (o.jc.kinds || o.report)
            cl_usage_error("--rm-units serves units: drop the judge and report options");
        status = run_rm_units(&o, &c);
    } else if (o.report) {
        if (o.jc.kinds)
            cl_usage_error("--report reads scored records: it does not judge (drop the judge options)");
        status = run_report(&o, &c);
    } else {
        if (o.nlabels || o.label_field || o.baseline || o.plot)
            cl_usage_error("--label, --label-field, --baseline and --plot belong to --report");
        status = run_judges(&o, &c);
    }
    cl_llm_cli_free(&o.lc);
    return status;
}

#include "collab/judge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collab/conv.h"
#include "core/json.h"
#include "collab/lenient_json.h"
#include "collab/prompts.h"

struct cl_judge {
    cl_judge_config cfg;
    char *prompt[CL_JUDGE_NKINDS];
};

static const char *const keys[CL_JUDGE_NKINDS] = {
    "extracted", "interactivity", "accuracy", "helpfulness", "clarify_or_answer",
};

/* The member of the judge's JSON reply that holds its verdict. */
static const char *const reply_members[CL_JUDGE_NKINDS] = {
    "final_completion", "interactivity", "accuracy", "helpfulness", "asks_clarification",
};

const char *cl_judge_key(cl_judge_kind k) { return keys[k]; }

int cl_judge_selected(const cl_judge *j, cl_judge_kind k) { return (j->cfg.kinds >> k) & 1u; }

const char *cl_itr_scale_name(cl_itr_scale s)
{
    static const char *names[] = {"unit", "paper-train", "paper-eval"};
    return names[s];
}

int cl_itr_scale_parse(const char *name, int context_full, cl_itr_scale *s, cl_err *e)
{
    if (strcmp(name, "paper") == 0) {
        *s = context_full ? CL_ITR_PAPER_EVAL : CL_ITR_PAPER_TRAIN;
        return 0;
    }
    for (int i = CL_ITR_UNIT; i <= CL_ITR_PAPER_EVAL; i++)
        if (strcmp(name, cl_itr_scale_name((cl_itr_scale)i)) == 0) {
            *s = (cl_itr_scale)i;
            return 0;
        }
    return cl_err_set(e, CL_EXIT_USAGE, "--itr-scale: '%s' is not unit, paper, paper-train or paper-eval", name);
}

const char *cl_itr_scale_known(const char *recorded)
{
    if (strcmp(recorded, "paper") == 0)
        return cl_itr_scale_name(CL_ITR_PAPER_EVAL);
    for (int i = CL_ITR_UNIT; i <= CL_ITR_PAPER_EVAL; i++)
        if (strcmp(recorded, cl_itr_scale_name((cl_itr_scale)i)) == 0)
            return cl_itr_scale_name((cl_itr_scale)i);
    return "unknown";
}

static const char *prompt_name(const cl_judge_config *cfg, cl_judge_kind k, char *buf, size_t n)
{
    switch (k) {
    case CL_JUDGE_EXTRACT:
        snprintf(buf, n, "judge_extract_%s", cfg->artefact);
        return buf;
    case CL_JUDGE_INTERACTIVITY:
        return cfg->itr_scale != CL_ITR_UNIT ? "judge_interactivity_paper" : "judge_interactivity_unit";
    case CL_JUDGE_ACCURACY:
        return "judge_accuracy";
    case CL_JUDGE_HELPFULNESS:
        return "judge_helpfulness";
    default:
        return "judge_clarify";
    }
}

/* A prompt (from --prompt-dir) that names a variable no judge provides is refused before any
 * call, rather than failing on every record. */
static int check_placeholders(const char *tmpl, const char *name, cl_err *e)
{
    static const char *const vars[] = {"task_desc", "conversation", "history", "requirement",
                                       "question", "reference", "response"};
    jv v = jv_object();
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        v = cl_json_set_str(v, vars[i], "");
    cl_err pe = {0};
    char *out = cl_prompt_render(tmpl, &v, &pe);
    jv_free(v);
    free(out);
    if (!out)
        return cl_err_set(e, CL_EXIT_CONFIG, "prompt %s: %s", name, pe.msg);
    return 0;
}

cl_judge *cl_judge_new(const cl_judge_config *cfg, cl_err *e)
{
    if ((cfg->kinds & (1u << CL_JUDGE_EXTRACT)) &&
        (!cfg->artefact || (strcmp(cfg->artefact, "document") != 0 && strcmp(cfg->artefact, "code") != 0 &&
                            strcmp(cfg->artefact, "answer") != 0))) {
        cl_err_set(e, CL_EXIT_USAGE, "--extract: '%s' is not document, code or answer",
                   cfg->artefact ? cfg->artefact : "");
        return NULL;
    }
    cl_judge *j = calloc(1, sizeof *j);
    if (!j) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    j->cfg = *cfg;
    for (int k = 0; k < CL_JUDGE_NKINDS; k++) {
        if (!(cfg->kinds & (1u << k)))
            continue;
        char buf[64];
        const char *name = prompt_name(cfg, (cl_judge_kind)k, buf, sizeof buf);
        j->prompt[k] = cl_prompt_load(cfg->prompt_dir, name, e);
        if (!j->prompt[k] || check_placeholders(j->prompt[k], name, e) < 0) {
            cl_judge_free(j);
            return NULL;
        }
    }
    return j;
}

void cl_judge_free(cl_judge *j)
{
    if (!j)
        return;
    for (int k = 0; k < CL_JUDGE_NKINDS; k++)
        free(j->prompt[k]);
    free(j);
}

/* ---- units ------------------------------------------------------------------------------ */

/* Whether msgs is an array of {role, content} string objects. */
static int valid_messages(const jv *msgs)
{
    if (jv_get_kind(*msgs) != JV_KIND_ARRAY)
        return 0;
    int n = jv_array_length(jv_copy(*msgs)), ok = 1;
    for (int i = 0; i < n && ok; i++) {
        jv m = jv_array_get(jv_copy(*msgs), i);
        ok = jv_get_kind(m) == JV_KIND_OBJECT && cl_json_kind(&m, "role") == JV_KIND_STRING &&
             cl_json_kind(&m, "content") == JV_KIND_STRING;
        jv_free(m);
    }
    return ok;
}

static int add_unit(cl_judge_unit **units, int *n, int *cap, int c, int f, jv history, jv window, cl_err *e)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        cl_judge_unit *u = realloc(*units, (size_t)nc * sizeof *u);
        if (!u) {
            jv_free(history);
            jv_free(window);
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        }
        *units = u;
        *cap = nc;
    }
    (*units)[(*n)++] = (cl_judge_unit){c, f, history, window};
    return 0;
}

int cl_judge_units(const jv *rec, cl_judge_unit **units, int *n, cl_err *e)
{
    *units = NULL;
    *n = 0;
    int cap = 0, rc = 0;
    jv history = cl_state_messages(rec);
    jv_kind ck = cl_json_kind(rec, "candidates");
    jv given = cl_json_get(rec, "messages");
    int bad = jv_is_valid(given) && !valid_messages(&given);
    jv_free(given);
    if (bad) {
        rc = cl_err_set(e, CL_EXIT_DATAERR, "field 'messages' is not an array of {role, content} strings");
    } else if (ck == JV_KIND_INVALID) {
        if (!cl_json_has(rec, "messages"))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "record has neither 'messages' nor 'candidates': nothing to judge");
        else
            rc = add_unit(units, n, &cap, -1, -1, jv_array(), jv_copy(history), e);
    } else if (ck != JV_KIND_ARRAY) {
        rc = cl_err_set(e, CL_EXIT_DATAERR, "field 'candidates' is not an array");
    } else {
        int h = jv_array_length(jv_copy(history));
        int nc = cl_branch_ncandidates(rec);
        for (int c = 0; c < nc && rc == 0; c++) {
            jv cand = cl_branch_candidate(rec, c);
            int ok = jv_get_kind(cand) == JV_KIND_OBJECT && cl_json_kind(&cand, "content") == JV_KIND_STRING &&
                     cl_json_kind(&cand, "futures") == JV_KIND_ARRAY;
            jv_free(cand);
            if (!ok) {
                rc = cl_err_set(e, CL_EXIT_DATAERR, "candidates[%d]: needs a string 'content' and an array 'futures'", c);
                break;
            }
            int nf = cl_branch_nfutures(rec, c);
            for (int f = 0; f < nf && rc == 0; f++) {
                jv fut = cl_branch_future(rec, c, f);
                jv fm = jv_get_kind(fut) == JV_KIND_OBJECT ? cl_json_get(&fut, "messages") : jv_invalid();
                if (!valid_messages(&fm)) {
                    rc = cl_err_set(e, CL_EXIT_DATAERR,
                                    "candidates[%d].futures[%d]: 'messages' is not an array of {role, content} strings",
                                    c, f);
                } else {
                    jv whole = cl_branch_future_conversation(rec, c, f);
                    int len = jv_array_length(jv_copy(whole));
                    rc = add_unit(units, n, &cap, c, f, jv_copy(history), jv_array_slice(whole, h, len), e);
                }
                jv_free(fm);
                jv_free(fut);
            }
        }
    }
    jv_free(history);
    if (rc < 0) {
        cl_judge_units_free(*units, *n);
        *units = NULL;
        *n = 0;
    }
    return rc;
}

void cl_judge_units_free(cl_judge_unit *units, int n)
{
    for (int i = 0; i < n; i++) {
        jv_free(units[i].history);
        jv_free(units[i].window);
    }
    free(units);
}

void cl_judge_unit_name(const cl_judge_unit *u, char *buf, size_t n)
{
    if (u->cand < 0)
        snprintf(buf, n, "full");
    else
        snprintf(buf, n, "c%d/f%d", u->cand, u->fut);
}

jv cl_judge_unit_get(const jv *rec, const cl_judge_unit *u)
{
    if (u->cand < 0)
        return jv_copy(*rec);
    return cl_branch_future(rec, u->cand, u->fut);
}

jv cl_judge_unit_set(jv rec, const cl_judge_unit *u, const char *key, jv value)
{
    if (u->cand < 0)
        return cl_json_set(rec, key, value);
    jv fut = cl_json_set(cl_branch_future(&rec, u->cand, u->fut), key, value);
    return cl_branch_set_future(rec, u->cand, u->fut, fut);
}

/* ---- requests --------------------------------------------------------------------------- */

static jv concat(const jv *a, const jv *b) { return jv_array_concat(jv_copy(*a), jv_copy(*b)); }

/* The seed's metadata object (ours or the official dataset's name); jv null when absent. */
static jv seed_metadata(const jv *rec)
{
    jv v = cl_json_get(rec, "metadata");
    if (jv_get_kind(v) != JV_KIND_OBJECT) {
        jv_free(v);
        v = cl_json_get(rec, "single_turn_metadata");
    }
    if (jv_get_kind(v) != JV_KIND_OBJECT) {
        jv_free(v);
        return jv_null();
    }
    return v;
}

/* The item's ambiguity for clarify-or-answer: metadata.ambiguous, or the reference label
 * "ambiguous" / "non_ambiguous" (cl-seed --preset abgcoqa writes both).  -1 when unknown. */
int cl_judge_item_ambiguity(const jv *rec)
{
    jv meta = seed_metadata(rec);
    int amb = jv_get_kind(meta) == JV_KIND_OBJECT ? cl_json_bool(&meta, "ambiguous", -1) : -1;
    jv_free(meta);
    const char *c = cl_seed_completion(rec);
    if (amb < 0 && c && strcmp(c, "ambiguous") == 0)
        amb = 1;
    else if (amb < 0 && c && strcmp(c, "non_ambiguous") == 0)
        amb = 0;
    return amb;
}

static jv var_transcript(jv vars, const char *name, const jv *msgs, const char *if_empty)
{
    if (jv_array_length(jv_copy(*msgs)) == 0)
        return cl_json_set_str(vars, name, if_empty);
    char *t = cl_conv_render(msgs);
    vars = cl_json_set_str(vars, name, t);
    free(t);
    return vars;
}

/* The unit's extracted.KIND as an owned jv string, or jv_invalid(). */
static jv unit_extracted(const jv *rec, const cl_judge_unit *u, const char *kind)
{
    jv obj = cl_judge_unit_get(rec, u);
    jv ex = cl_json_get(&obj, "extracted");
    jv v = jv_get_kind(ex) == JV_KIND_OBJECT ? cl_json_get(&ex, kind) : jv_invalid();
    jv_free(ex);
    jv_free(obj);
    if (jv_get_kind(v) != JV_KIND_STRING) {
        jv_free(v);
        return jv_invalid();
    }
    return v;
}

jv cl_judge_store_extracted(const cl_judge *j, jv rec, const cl_judge_unit *u, const char *text)
{
    jv obj = cl_judge_unit_get(&rec, u);
    jv ex = cl_json_get(&obj, "extracted");
    jv_free(obj);
    if (jv_get_kind(ex) != JV_KIND_OBJECT) {
        jv_free(ex);
        ex = jv_object();
    }
    ex = cl_json_set_str(ex, j->cfg.artefact, text);
    return cl_judge_unit_set(rec, u, "extracted", ex);
}

jv cl_judge_request(const cl_judge *j, cl_judge_kind k, const jv *rec, const cl_judge_unit *u, cl_err *e)
{
    const char *none = "(none: the conversation starts here)";
    jv all = concat(&u->history, &u->window);
    jv vars = jv_object();
    const char *td = cl_seed_task_desc(rec);
    vars = cl_json_set_str(vars, "task_desc", td ? td : "");
    int rc = 0;
    switch (k) {
    case CL_JUDGE_EXTRACT: {
        /* Extraction always reads the whole conversation: a revision may come from any turn. */
        vars = var_transcript(vars, "conversation", &all, "(empty)");
        jv meta = seed_metadata(rec);
        const char *req = jv_get_kind(meta) == JV_KIND_OBJECT ? cl_json_str(&meta, "extraction_requirement") : NULL;
        vars = cl_json_set_str(vars, "requirement", req && *req ? req : "none");
        jv_free(meta);
        break;
    }
    case CL_JUDGE_INTERACTIVITY:
    case CL_JUDGE_HELPFULNESS:
        if (j->cfg.context_full) {
            vars = cl_json_set_str(vars, "history", none);
            vars = var_transcript(vars, "conversation", &all, "(empty)");
        } else {
            vars = var_transcript(vars, "history", &u->history, none);
            vars = var_transcript(vars, "conversation", &u->window, "(empty)");
        }
        break;
    case CL_JUDGE_ACCURACY:
        if (!cl_seed_prompt(rec) || !cl_seed_completion(rec)) {
            rc = cl_err_set(e, CL_EXIT_DATAERR, "the accuracy judge needs the seed's 'prompt' (the question) "
                            "and 'completion' (the reference) as strings");
            break;
        }
        vars = cl_json_set_str(vars, "question", cl_seed_prompt(rec));
        vars = cl_json_set_str(vars, "reference", cl_seed_completion(rec));
        jv answer = unit_extracted(rec, u, "answer");
        if (jv_is_valid(answer))
            vars = cl_json_set(vars, "response", answer);
        else if (cl_judge_selected(j, CL_JUDGE_EXTRACT) && strcmp(j->cfg.artefact, "answer") == 0)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "no extracted answer to judge (the extraction failed)");
        else
            vars = var_transcript(vars, "response", &all, "(empty)");
        if (!jv_is_valid(answer))
            jv_free(answer);
        break;
    default: {
        if (cl_judge_item_ambiguity(rec) < 0) {
            rc = cl_err_set(e, CL_EXIT_DATAERR,
                            "clarify-or-answer needs the item's ambiguity: metadata.ambiguous or a "
                            "completion of \"ambiguous\" / \"non_ambiguous\"");
            break;
        }
        /* The reply judged is the first assistant message of what the judge reads; what comes
         * before it is its context. */
        jv part = j->cfg.context_full ? jv_copy(all) : jv_copy(u->window);
        jv before = j->cfg.context_full ? jv_array() : jv_copy(u->history);
        jv reply = jv_invalid();
        int n = jv_array_length(jv_copy(part));
        for (int i = 0; i < n; i++) {
            jv m = jv_array_get(jv_copy(part), i);
            if (strcmp(cl_json_str(&m, "role"), "assistant") == 0) {
                reply = m;
                break;
            }
            before = jv_array_append(before, m);
        }
        if (!jv_is_valid(reply))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "clarify-or-answer: the conversation has no assistant reply");
        else
            vars = cl_json_set_str(var_transcript(vars, "history", &before, none), "response",
                                   cl_json_str(&reply, "content"));
        jv_free(reply);
        jv_free(before);
        jv_free(part);
        break;
    }
    }
    jv_free(all);
    if (rc < 0) {
        jv_free(vars);
        return jv_invalid();
    }
    char *text = cl_prompt_render(j->prompt[k], &vars, e);
    jv_free(vars);
    if (!text)
        return jv_invalid();
    jv msgs = JV_ARRAY(cl_json_message("user", text));
    free(text);
    return msgs;
}

/* ---- replies ---------------------------------------------------------------------------- */

/* A verdict as a number: numbers, numeric strings and booleans are accepted. */
static int verdict_number(const jv *obj, const char *key, double *x)
{
    if (cl_lenient_num(obj, key, x) == 0)
        return 0;
    int b = cl_json_bool(obj, key, -1);
    *x = b;
    return b < 0 ? -1 : 0;
}

int cl_judge_parse(const cl_judge *j, cl_judge_kind k, const char *reply, double *raw, char **text, cl_err *e)
{
    jv obj = cl_lenient_json(reply ? reply : "", reply ? strlen(reply) : 0);
    if (!jv_is_valid(obj)) {
        jv_free(obj);
        return cl_err_set(e, CL_EXIT_DATAERR, "%s judge: the reply holds no JSON object", keys[k]);
    }
    jv v = cl_json_get(&obj, reply_members[k]);
    int rc = 0;
    if (!jv_is_valid(v)) {
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s judge: the reply has no '%s'", keys[k], reply_members[k]);
    } else if (k == CL_JUDGE_EXTRACT) {
        /* A short answer such as 42 may come back as a number: keep its text. */
        if (jv_get_kind(v) == JV_KIND_STRING)
            *text = strdup(jv_string_value(v));
        else if (jv_get_kind(v) == JV_KIND_NUMBER || jv_get_kind(v) == JV_KIND_TRUE || jv_get_kind(v) == JV_KIND_FALSE)
            *text = cl_json_dump(&v, NULL);
        else if (jv_get_kind(v) == JV_KIND_NULL)
            *text = strdup("");
        else
            rc = cl_err_set(e, CL_EXIT_DATAERR, "extracted judge: 'final_completion' is not a string");
        if (rc == 0 && !*text)
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    } else {
        double x;
        double lo = 0, hi = 1;
        if (k == CL_JUDGE_INTERACTIVITY && j->cfg.itr_scale != CL_ITR_UNIT)
            lo = 1, hi = 3;
        int binary = k == CL_JUDGE_ACCURACY || k == CL_JUDGE_CLARIFY;
        if (verdict_number(&obj, reply_members[k], &x) < 0 || !isfinite(x))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s judge: '%s' is not a number", keys[k], reply_members[k]);
        else if (binary && x != 0 && x != 1)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s judge: '%s' is %g, not 0 or 1", keys[k], reply_members[k], x);
        else if (x < lo || x > hi)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s judge: '%s' is %g, outside %g..%g", keys[k],
                            reply_members[k], x, lo, hi);
        else
            *raw = x;
    }
    jv_free(v);
    jv_free(obj);
    return rc;
}

double cl_judge_score(const cl_judge *j, cl_judge_kind k, const jv *rec, double raw)
{
    if (k == CL_JUDGE_INTERACTIVITY && j->cfg.itr_scale == CL_ITR_PAPER_TRAIN)
        return raw / 3; /* paper-era training reward: A=3, B=2, C=1 mapped to 1, 2/3, 1/3 */
    if (k == CL_JUDGE_INTERACTIVITY && j->cfg.itr_scale == CL_ITR_PAPER_EVAL)
        return 2 * (raw - 2.5); /* paper App. D.4, Table 1: A=3, B=2, C=1 mapped to 1, -1, -3 */
    if (k == CL_JUDGE_CLARIFY)
        return (raw == 1) == (cl_judge_item_ambiguity(rec) == 1);
    return raw;
}

jv cl_judge_summary(const cl_judge *j, cl_judge_kind k, const double *raw, const double *score, int n, int failed)
{
    jv s = cl_json_set_num(cl_json_set_num(jv_object(), "n", n), "failed", failed);
    jv r = jv_array();
    for (int i = 0; i < n; i++)
        r = jv_array_append(r, jv_number(raw[i]));
    s = cl_json_set(s, "raw", r);
    if (k == CL_JUDGE_INTERACTIVITY)
        s = cl_json_set_str(s, "scale", cl_itr_scale_name(j->cfg.itr_scale));
    if (n == 0)
        return s;
    double sum = 0, mn = score[0], mx = score[0];
    for (int i = 0; i < n; i++) {
        sum += score[i];
        mn = score[i] < mn ? score[i] : mn;
        mx = score[i] > mx ? score[i] : mx;
    }
    double mean = sum / n, ss = 0;
    for (int i = 0; i < n; i++)
        ss += (score[i] - mean) * (score[i] - mean);
    s = cl_json_set_num(s, "mean", mean);
    s = cl_json_set_num(s, "sd", n > 1 ? sqrt(ss / (n - 1)) : 0.0);
    s = cl_json_set_num(s, "min", mn);
    return cl_json_set_num(s, "max", mx);
}

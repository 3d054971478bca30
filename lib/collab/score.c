#include "collab/score.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collab/judge.h"
#include "metrics/boxed.h"
#include "core/json.h"
#include "core/records.h"
#include "collab/schema.h"
#include "metrics/bleu.h"
#include "metrics/mathans.h"

/* ---- option words ------------------------------------------------------------------------ */

static const struct { const char *name; unsigned bit; } metric_names[] = {
    {"bleu", SCORE_BLEU},           {"bleu-word", SCORE_BLEU_WORD}, {"bleu_word", SCORE_BLEU_WORD},
    {"pass_rate", SCORE_PASS_RATE}, {"pass-rate", SCORE_PASS_RATE}, {"math", SCORE_MATH},
    {"math_equiv", SCORE_MATH},     {"tokens", SCORE_TOKENS},       {"rm_score", SCORE_RM},
};

int score_parse_metrics(const char *list, unsigned *bits, cl_err *e)
{
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        size_t i = 0;
        for (; i < sizeof metric_names / sizeof *metric_names; i++)
            if (strlen(metric_names[i].name) == len && strncmp(p, metric_names[i].name, len) == 0)
                break;
        if (i == sizeof metric_names / sizeof *metric_names)
            return cl_err_set(e, CL_EXIT_USAGE,
                              "--metric: unknown metric '%.*s' (bleu, bleu-word, pass_rate, math, "
                              "tokens, rm_score)", (int)len, p);
        *bits |= metric_names[i].bit;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

int score_parse_metric_arg(const char *arg, unsigned *bits, const char **program, cl_err *e)
{
    const char *cmd = strncmp(arg, "cmd:", 4) == 0 ? arg : strstr(arg, ",cmd:");
    if (!cmd)
        return score_parse_metrics(arg, bits, e);
    const char *prog = cmd + (cmd == arg ? 4 : 5);
    if (!*prog)
        return cl_err_set(e, CL_EXIT_USAGE, "--metric cmd: needs a program (cmd:PROGRAM)");
    if (*program)
        return cl_err_set(e, CL_EXIT_USAGE, "--metric cmd: one program per run");
    *program = prog;
    if (cmd == arg)
        return 0;
    char *list = strndup(arg, (size_t)(cmd - arg));
    if (!list)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int rc = score_parse_metrics(list, bits, e);
    free(list);
    return rc;
}

int score_parse_scope(const char *s, token_scope *out, cl_err *e)
{
    if (strcmp(s, "forward") == 0)
        *out = SCOPE_FORWARD;
    else if (strcmp(s, "session") == 0)
        *out = SCOPE_SESSION;
    else
        return cl_err_set(e, CL_EXIT_USAGE, "--token-scope: '%s' is not forward or session", s);
    return 0;
}

int score_parse_roles(const char *s, token_roles *out, cl_err *e)
{
    static const char *names[] = {"all", "assistant", "user"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (token_roles)i;
            return 0;
        }
    return cl_err_set(e, CL_EXIT_USAGE, "--token-roles: '%s' is not all, assistant or user", s);
}

const char *score_scope_name(token_scope s) { return s == SCOPE_FORWARD ? "forward" : "session"; }
const char *score_roles_name(token_roles r)
{
    static const char *names[] = {"all", "assistant", "user"};
    return names[r];
}

/* ---- one batch ---------------------------------------------------------------------------- */

/* A scorable unit: future fi of candidate ci, or (ci = -1) the whole conversation. */
typedef struct unit {
    int rec, ci, fi;
    jv scores;  /* new scores (object) */
    jv info;    /* new metric_info (object) */
} unit;

/* A metric computed off the main thread on plain bytes (jv refcounts are not thread-safe).
 * BLEU reads its texts where the batch's records hold them; nothing frees or changes those
 * before the jobs are done. */
typedef struct job {
    int unit;
    unsigned metric;   /* SCORE_BLEU, SCORE_BLEU_WORD or SCORE_PASS_RATE */
    const char *a, *b; /* hypothesis and reference, or code and test */
    size_t al, bl;
    char *owned[2];    /* a and b when the job made them (pass_rate's code and test) */
    double value;
    bleu_counts counts; /* BLEU: what value is made of, for the corpus score */
    sandbox_result sr;
    int ran, failed;
    cl_err err;
} job;

typedef struct batch {
    const score_cfg *c;
    unit *units;
    int nunits, capunits;
    job *jobs;
    int njobs, capjobs;
    char **errs;       /* per record */
    const cl_json_deferred *defs; /* per record, or NULL: the records' deferred strings */
    char **cmd_lines;  /* --metric cmd: the requests, for units[cmd_unit[i]] */
    int *cmd_unit;
    size_t ncmd, capcmd, capcmdu;
} batch;

static void rec_fail(batch *b, int rec, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void rec_fail(batch *b, int rec, const char *fmt, ...)
{
    if (b->errs[rec])
        return; /* the first problem is the one reported */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->errs[rec] = strdup(msg);
}

static const char *unit_where(const unit *u, char *buf, size_t n)
{
    if (u->ci < 0)
        snprintf(buf, n, "conversation");
    else
        snprintf(buf, n, "candidates[%d].futures[%d]", u->ci, u->fi);
    return buf;
}

/* A borrowed string value's bytes with its length (JSON strings may hold NUL), copied; NULL
 * when v is not a string. */
static char *copy_string(const jv *v, size_t *len)
{
    if (jv_get_kind(*v) != JV_KIND_STRING)
        return NULL;
    size_t n = (size_t)jv_string_length_bytes(jv_copy(*v));
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, jv_string_value(*v), n);
        out[n] = 0;
        *len = n;
    }
    return out;
}

/* The same for a field of an object; NULL if absent or not a string. */
static char *dup_string(const jv *obj, const char *key, size_t *len)
{
    jv v = cl_json_get(obj, key);
    char *out = copy_string(&v, len);
    jv_free(v);
    return out;
}

/* The object a unit's scores go on (owned copy): the future, or the record itself. */
static jv unit_object(const jv *rec, const unit *u)
{
    if (u->ci < 0)
        return jv_copy(*rec);
    jv cand = jv_array_get(cl_json_get(rec, "candidates"), u->ci);
    jv fut = jv_array_get(cl_json_get(&cand, "futures"), u->fi);
    jv_free(cand);
    return fut;
}

/* The first of two names that is present (the official datasets' single_turn_* spelling is
 * accepted beside ours). */
static jv get_either(const jv *rec, const char *a, const char *b)
{
    jv v = cl_json_get(rec, a);
    if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL)
        return v;
    jv_free(v);
    return cl_json_get(rec, b);
}

/* Adds a job reading a[0..al) and bb[0..bl); with `owned`, the job frees them (also when it
 * cannot be added). */
static int add_job(batch *b, int unit_i, unsigned metric, const char *a, size_t al, const char *bb,
                   size_t bl, char *owned_a, char *owned_b)
{
    if (b->njobs == b->capjobs) {
        int cap = b->capjobs ? 2 * b->capjobs : 64;
        job *j = realloc(b->jobs, (size_t)cap * sizeof *j);
        if (!j) {
            free(owned_a);
            free(owned_b);
            return -1;
        }
        b->jobs = j;
        b->capjobs = cap;
    }
    b->jobs[b->njobs++] = (job){.unit = unit_i, .metric = metric, .a = a, .b = bb, .al = al, .bl = bl,
                                .owned = {owned_a, owned_b}};
    return 0;
}

/* The test code of a code seed: metadata.test, else the "test" of the JSON completion
 * (BigCodeBench's shape). */
static char *code_test(const jv *rec, size_t *len)
{
    jv md = get_either(rec, "metadata", "single_turn_metadata");
    char *t = dup_string(&md, "test", len);
    jv_free(md);
    if (t)
        return t;
    jv comp = get_either(rec, "completion", "single_turn_completion");
    if (jv_get_kind(comp) == JV_KIND_STRING) {
        const char *s = jv_string_value(comp);
        jv parsed = jv_parse(s);
        t = dup_string(&parsed, "test", len);
        jv_free(parsed);
    } else {
        t = dup_string(&comp, "test", len);
    }
    jv_free(comp);
    return t;
}

int score_parse_math_extract(const char *s, math_extract *out, cl_err *e)
{
    if (strcmp(s, "reference") == 0)
        *out = MATH_EXTRACT_REFERENCE;
    else if (strcmp(s, "lenient") == 0)
        *out = MATH_EXTRACT_LENIENT;
    else
        return cl_err_set(e, CL_EXIT_USAGE, "--math-extract: '%s' is not reference or lenient", s);
    return 0;
}

const char *score_math_extract_name(math_extract m) { return m == MATH_EXTRACT_LENIENT ? "lenient" : "reference"; }

/* The boxed answer of text under the configured extraction; *found: whether text holds a box
 * command at all (the reference extraction may find one and still give no answer). */
static char *boxed_answer(math_extract m, const char *text, int *found)
{
    if (m == MATH_EXTRACT_REFERENCE)
        return cl_boxed_reference(text, found);
    char *a = cl_boxed_answer(text);
    *found = a != NULL;
    return a;
}

/* The reference answer of a math seed: metadata.answer, else the last box of the solution. */
static char *math_reference(const jv *rec, math_extract m)
{
    jv md = get_either(rec, "metadata", "single_turn_metadata");
    size_t len;
    char *a = dup_string(&md, "answer", &len);
    if (!a && cl_json_kind(&md, "answer") == JV_KIND_NUMBER) {
        /* The shortest text that reads back as the same number, as Python's repr writes it
         * (0.1, not 0.10000000000000001). */
        double x = cl_json_num(&md, "answer", 0);
        char buf[64];
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, x);
            if (strtod(buf, NULL) == x)
                break;
        }
        a = strdup(buf);
    }
    jv_free(md);
    if (a)
        return a;
    jv comp = get_either(rec, "completion", "single_turn_completion");
    int found;
    if (jv_get_kind(comp) == JV_KIND_STRING)
        a = boxed_answer(m, jv_string_value(comp), &found);
    jv_free(comp);
    return a;
}

/* Messages of a unit, in order: history (before the candidate), then the forward part (the
 * candidate as an assistant message, then the future's messages).  A conversation has only a
 * forward part. */
typedef struct view {
    jv history, forward;
} view;

static int make_view(const jv *rec, const unit *u, view *v, char *why, size_t n)
{
    if (u->ci < 0) {
        v->history = jv_array();
        v->forward = cl_json_get(rec, "messages");
        if (jv_get_kind(v->forward) != JV_KIND_ARRAY) {
            jv_free(v->history);
            jv_free(v->forward);
            snprintf(why, n, "conversation has no messages array");
            return -1;
        }
        return 0;
    }
    jv hist = cl_json_get(rec, "messages");
    v->history = jv_get_kind(hist) == JV_KIND_ARRAY ? hist : (jv_free(hist), jv_array());
    jv cands = cl_json_get(rec, "candidates");
    jv cand = jv_array_get(cands, u->ci);
    jv fut = jv_array_get(cl_json_get(&cand, "futures"), u->fi);
    jv msgs = cl_json_get(&fut, "messages");
    jv first = jv_object();
    first = cl_json_set_str(first, "role", "assistant");
    jv content = cl_json_get(&cand, "content");
    jv usage = cl_json_get(&cand, "usage");
    int ok = jv_get_kind(content) == JV_KIND_STRING && jv_get_kind(msgs) == JV_KIND_ARRAY;
    first = cl_json_set(first, "content", content);
    if (jv_is_valid(usage))
        first = cl_json_set(first, "usage", usage);
    else
        jv_free(usage);
    v->forward = jv_array_concat(jv_array_append(jv_array(), first),
                                 ok ? msgs : (jv_free(msgs), jv_array()));
    jv_free(cand);
    jv_free(fut);
    if (!ok) {
        snprintf(why, n, "candidate content or future messages missing");
        jv_free(v->history);
        jv_free(v->forward);
        return -1;
    }
    return 0;
}

static void free_view(view *v)
{
    jv_free(v->history);
    jv_free(v->forward);
}

static int count_tokens(const score_cfg *c, const view *v, unit *u, char *why, size_t n)
{
    double who[2] = {0, 0}; /* assistant, user */
    const jv *parts[2] = {&v->history, &v->forward};
    for (int p = c->scope == SCOPE_SESSION ? 0 : 1; p < 2; p++) {
        int len = jv_array_length(jv_copy(*parts[p]));
        for (int i = 0; i < len; i++) {
            jv m = jv_array_get(jv_copy(*parts[p]), i);
            const char *role = cl_json_str(&m, "role");
            int k = role && strcmp(role, "assistant") == 0 ? 0 : role && strcmp(role, "user") == 0 ? 1 : -1;
            if (k < 0 || (c->roles == ROLES_ASSISTANT && k != 0) || (c->roles == ROLES_USER && k != 1)) {
                jv_free(m);
                continue;
            }
            double t;
            cl_err e = {0};
            int rc = tokens_of_message(c->tokens, c->tk, &m, &t, &e);
            jv_free(m);
            if (rc != 0) {
                snprintf(why, n, "%s message %d (%s): %.200s", p ? "forward" : "history", i, role,
                         e.msg);
                return -1;
            }
            who[k] += t;
        }
    }
    u->scores = cl_json_set_num(u->scores, "tokens", who[0] + who[1]);
    jv info = jv_object();
    info = cl_json_set_str(info, "method", tokens_method_name(c->tokens));
    info = cl_json_set_str(info, "scope", score_scope_name(c->scope));
    info = cl_json_set_str(info, "roles", score_roles_name(c->roles));
    info = cl_json_set_num(info, "assistant", who[0]);
    info = cl_json_set_num(info, "user", who[1]);
    u->info = cl_json_set(u->info, "tokens", info);
    return 0;
}

/* The reply's own answer when cl-judge did not extract one: the box of the latest assistant
 * message that has one (under the reference extraction, a box that gives no answer leaves the
 * conversation without one, as it leaves a benchmark reply without one). */
static char *answer_from_messages(const view *v, math_extract mx)
{
    const jv *parts[2] = {&v->forward, &v->history};
    for (int p = 0; p < 2; p++)
        for (int i = jv_array_length(jv_copy(*parts[p])) - 1; i >= 0; i--) {
            jv m = jv_array_get(jv_copy(*parts[p]), i);
            const char *role = cl_json_str(&m, "role"), *text = cl_json_str(&m, "content");
            int found = 0;
            char *a = role && text && strcmp(role, "assistant") == 0 ? boxed_answer(mx, text, &found) : NULL;
            jv_free(m);
            if (found)
                return a;
        }
    return NULL;
}

static void score_math(batch *b, const jv *rec, const jv *ex, const view *v, unit *u)
{
    math_extract mx = b->c->math;
    char *ref = math_reference(rec, mx);
    if (!ref) {
        rec_fail(b, u->rec, "math: the seed has no reference answer (metadata.answer, or a "
                 "\\boxed{} in completion)");
        return;
    }
    size_t len;
    char *ans = dup_string(ex, "answer", &len);
    if (!ans)
        ans = answer_from_messages(v, mx);
    /* An extracted answer may itself carry a box, which the extraction takes off as it would
     * from a reply (the lenient one keeps the text when its box gives no answer). */
    int found = 0;
    char *inner = ans ? boxed_answer(mx, ans, &found) : NULL;
    if (found && (inner || mx == MATH_EXTRACT_REFERENCE)) {
        free(ans);
        ans = inner;
    }
    u->scores = cl_json_set_num(u->scores, "math_equiv", ans && math_equiv(ans, ref) ? 1 : 0);
    jv info = jv_object();
    info = cl_json_set(info, "answer", ans ? jv_string(ans) : jv_null());
    info = cl_json_set_str(info, "reference", ref);
    info = cl_json_set_str(info, "extract", score_math_extract_name(mx));
    u->info = cl_json_set(u->info, "math_equiv", info);
    free(ans);
    free(ref);
}

static int grow_units(batch *b)
{
    if (b->nunits < b->capunits)
        return 0;
    int cap = b->capunits ? 2 * b->capunits : 64;
    unit *u = realloc(b->units, (size_t)cap * sizeof *u);
    if (!u)
        return -1;
    b->units = u;
    b->capunits = cap;
    return 0;
}

static int add_unit(batch *b, int r, int ci, int fi)
{
    if (grow_units(b) != 0)
        return -1;
    b->units[b->nunits++] = (unit){r, ci, fi, jv_object(), jv_object()};
    return 0;
}

/* BLEU jobs of a unit: extracted.document against the seed's completion, read where the
 * record holds them (deferred or not). */
static int plan_bleu(batch *b, int ui, const jv *rec, const jv *ex, const char *where)
{
    int r = b->units[ui].rec;
    const cl_json_deferred *d = b->defs ? &b->defs[r] : NULL;
    jv doc = cl_json_get(ex, "document");
    jv comp = get_either(rec, "completion", "single_turn_completion");
    size_t hl = 0, rl = 0;
    const char *hyp = cl_json_bytes(&doc, d, &hl), *ref = cl_json_bytes(&comp, d, &rl);
    /* The record keeps both strings alive after these references go. */
    jv_free(doc);
    jv_free(comp);
    int rc = 0;
    if (!hyp)
        rec_fail(b, r, "%s: bleu: extracted.document is missing (cl-judge --extract document "
                 "writes it)", where);
    else if (!ref)
        rec_fail(b, r, "bleu: the seed has no reference document in completion");
    else
        for (unsigned m = SCORE_BLEU; m <= SCORE_BLEU_WORD && rc == 0; m <<= 1)
            if (b->c->metrics & m)
                rc = add_job(b, ui, m, hyp, hl, ref, rl, NULL, NULL);
    return rc;
}

/* The pass_rate job of a unit: extracted.code against the seed's unittest. */
static int plan_pass_rate(batch *b, int ui, const jv *rec, const jv *ex, const char *where)
{
    int r = b->units[ui].rec;
    size_t cl = 0, tl = 0;
    char *code = dup_string(ex, "code", &cl);
    char *test = code_test(rec, &tl);
    if (!code)
        rec_fail(b, r, "%s: pass_rate: extracted.code is missing (cl-judge --extract code writes "
                 "it)", where);
    else if (!test)
        rec_fail(b, r, "pass_rate: the seed has no unittest (metadata.test, or \"test\" in the "
                 "JSON completion)");
    if (code && test)
        return add_job(b, ui, SCORE_PASS_RATE, code, cl, test, tl, code, test);
    free(code);
    free(test);
    return 0;
}

/* The request of a unit to the --metric cmd program: the seed's fields, the unit's extracted
 * artefacts, the conversation it stands for and where its scored part starts. */
static int plan_cmd(batch *b, int ui, const jv *rec, const jv *ex, const view *v)
{
    const unit *u = &b->units[ui];
    char where[64];
    static const char *const keys[][2] = {{"id", "id"}, {"task", "task"}, {"prompt", "single_turn_prompt"},
        {"completion", "single_turn_completion"}, {"metadata", "single_turn_metadata"}};
    jv q = jv_object();
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        jv x = get_either(rec, keys[k][0], keys[k][1]);
        q = cl_json_set(q, keys[k][0], jv_is_valid(x) ? x : (jv_free(x), jv_null())); /* absent: null */
    }
    q = cl_json_set_str(q, "unit", unit_where(u, where, sizeof where));
    q = cl_json_set(q, "extracted", jv_get_kind(*ex) == JV_KIND_OBJECT ? jv_copy(*ex) : jv_object());
    q = cl_json_set(q, "messages", jv_array_concat(jv_copy(v->history), jv_copy(v->forward)));
    q = cl_json_set_num(q, "window", jv_array_length(jv_copy(v->history)));
    char *line = cl_json_dump(&q, NULL);
    jv_free(q);
    if (!line || cl_grow((void **)&b->cmd_lines, &b->capcmd, b->ncmd + 1, sizeof *b->cmd_lines) != 0 ||
        cl_grow((void **)&b->cmd_unit, &b->capcmdu, b->ncmd + 1, sizeof *b->cmd_unit) != 0) {
        free(line);
        return -1;
    }
    b->cmd_unit[b->ncmd] = ui;
    b->cmd_lines[b->ncmd++] = line;
    return 0;
}

/* A reply of the --metric cmd program: an object whose numbers are the unit's scores, or
 * {"error": "why"} for a unit it cannot score. */
static void collect_cmd_reply(batch *b, int ui, const char *reply, const char *name)
{
    unit *u = &b->units[ui];
    char where[64];
    unit_where(u, where, sizeof where);
    jv o = jv_parse(reply);
    if (jv_get_kind(o) != JV_KIND_OBJECT) {
        rec_fail(b, u->rec, "%s: %s: the reply is not a JSON object: %.200s", where, name, reply);
        jv_free(o);
        return;
    }
    const char *why = cl_json_str(&o, "error");
    if (why) {
        rec_fail(b, u->rec, "%s: %s: %.400s", where, name, why);
        jv_free(o);
        return;
    }
    jv_object_foreach(o, key, val) {
        if (jv_get_kind(val) != JV_KIND_NUMBER)
            rec_fail(b, u->rec, "%s: %s: '%s' is not a number", where, name, jv_string_value(key));
        else
            u->scores = cl_json_set_num(u->scores, jv_string_value(key), jv_number_value(val));
        jv_free(key);
        jv_free(val);
    }
    jv_free(o);
}

/* Phase 1b, main thread: the batch's requests to the --metric cmd program and to the rm_score
 * program (the same units), their replies into the units' scores.  -1 with e set when the program breaks the protocol (then the run stops:
 * no later batch could be trusted either). */
static int run_cmd(batch *b, cl_err *e)
{
    metric_cmd *const progs[2] = {b->c->cmd, b->c->rm_cmd};
    static const char *const names[2] = {"cmd", "rm_score"};
    if (b->ncmd == 0)
        return 0;
    char **replies = calloc(b->ncmd, sizeof *replies);
    if (!replies)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        if (!progs[k])
            continue;
        rc = metric_cmd_exchange(progs[k], b->cmd_lines, b->ncmd, replies, e);
        for (size_t i = 0; i < b->ncmd; i++) {
            if (rc == 0)
                collect_cmd_reply(b, b->cmd_unit[i], replies[i], names[k]);
            free(replies[i]);
            replies[i] = NULL;
        }
    }
    free(replies);
    return rc;
}

/* Phase 1, main thread: units, cheap metrics, and the jobs for the expensive ones. */
static int plan_record(batch *b, int r, const jv *rec)
{
    const score_cfg *c = b->c;
    int first = b->nunits;
    jv cands = cl_json_get(rec, "candidates");
    int rc = 0;
    if (jv_get_kind(cands) == JV_KIND_ARRAY) {
        int nc = jv_array_length(jv_copy(cands));
        for (int ci = 0; ci < nc && rc == 0; ci++) {
            jv cand = jv_array_get(jv_copy(cands), ci);
            jv futs = cl_json_get(&cand, "futures");
            int nf = jv_get_kind(futs) == JV_KIND_ARRAY ? jv_array_length(jv_copy(futs)) : 0;
            jv_free(futs);
            jv_free(cand);
            for (int fi = 0; fi < nf && rc == 0; fi++)
                rc = add_unit(b, r, ci, fi);
        }
    } else {
        rc = add_unit(b, r, -1, -1);
    }
    jv_free(cands);
    for (int ui = first; rc == 0 && (c->metrics || c->cmd || c->rm_cmd) && ui < b->nunits && !b->errs[r]; ui++) {
        unit *u = &b->units[ui];
        char where[64], why[512];
        unit_where(u, where, sizeof where);
        view v;
        if (make_view(rec, u, &v, why, sizeof why) != 0) {
            rec_fail(b, r, "%s: %s", where, why);
            break;
        }
        jv obj = unit_object(rec, u);
        jv ex = cl_json_get(&obj, "extracted");
        if ((c->metrics & SCORE_TOKENS) && count_tokens(c, &v, u, why, sizeof why) != 0)
            rec_fail(b, r, "%s: tokens: %s", where, why);
        if (c->metrics & SCORE_MATH)
            score_math(b, rec, &ex, &v, u);
        if (c->metrics & (SCORE_BLEU | SCORE_BLEU_WORD))
            rc = plan_bleu(b, ui, rec, &ex, where);
        if (rc == 0 && (c->metrics & SCORE_PASS_RATE))
            rc = plan_pass_rate(b, ui, rec, &ex, where);
        if (rc == 0 && (c->cmd || c->rm_cmd))
            rc = plan_cmd(b, ui, rec, &ex, &v);
        jv_free(ex);
        jv_free(obj);
        free_view(&v);
    }
    return rc;
}

/* Phase 2: the expensive metrics, in parallel.  BLEU jobs share the cores; each sandbox job
 * gets a thread of its own, whose number is its sandbox slot (its uid when we are root). */
static void run_job(void *ctx, int i, int worker)
{
    batch *b = ctx;
    const score_cfg *c = b->c;
    job *j = &b->jobs[i];
    if (b->errs[b->units[j->unit].rec])
        return; /* its record already failed: no sandbox for nothing */
    j->ran = 1;
    if (j->metric == SCORE_PASS_RATE) {
        if (sandbox_run_unittest(c->sb, j->a, j->b, worker, &j->sr, &j->err) != 0)
            j->failed = 1;
        else
            j->value = j->sr.status == SANDBOX_PASS ? 1.0 : 0.0;
        if (c->live) {
            __atomic_add_fetch(&c->live->runs, 1, __ATOMIC_RELAXED);
            if (j->value > 0)
                __atomic_add_fetch(&c->live->passed, 1, __ATOMIC_RELAXED);
            if (worker == 0)
                cl_io_tick(c->live->io); /* the calling thread: the only one that touches io */
        }
    } else {
        int chars = j->metric == SCORE_BLEU;
        if ((chars ? bleu_char_counts : bleu_word_counts)(j->a, j->al, j->b, j->bl, &j->counts) < 0) {
            j->failed = 1;
            cl_err_set(&j->err, CL_EXIT_SOFTWARE, "out of memory");
        } else {
            j->value = chars ? bleu_char_score(&j->counts) : bleu_word_score(&j->counts, 1);
        }
    }
}

static void run_jobs(batch *b) { cl_pool_for(b->c->pool, b->njobs, 1, run_job, b); }

/* Phase 3, main thread: job results into their units' scores and info. */
static void collect_jobs(batch *b, score_stats *st)
{
    for (int i = 0; i < b->njobs; i++) {
        job *j = &b->jobs[i];
        unit *u = &b->units[j->unit];
        if (!j->ran)
            continue;
        if (j->failed) {
            rec_fail(b, u->rec, "%s", j->err.msg);
            continue;
        }
        sandbox_result *r = &j->sr;
        if (j->metric == SCORE_PASS_RATE) {
            st[u->rec].sandbox[r->status]++;
            st[u->rec].sandbox_wall += r->wall_s;
        }
        if (b->errs[u->rec])
            continue;
        const char *name = j->metric == SCORE_BLEU ? "bleu" : j->metric == SCORE_BLEU_WORD
                                                                  ? "bleu_word" : "pass_rate";
        u->scores = cl_json_set_num(u->scores, name, j->value);
        if (j->metric != SCORE_PASS_RATE)
            continue;
        jv info = jv_object();
        info = cl_json_set_str(info, "status", sandbox_status_name(r->status));
        if (r->tests_run >= 0) {
            info = cl_json_set_num(info, "tests_run", r->tests_run);
            info = cl_json_set_num(info, "failures", r->failures);
            info = cl_json_set_num(info, "errors", r->errors);
        }
        info = cl_json_set_num(info, "wall_s", (double)(long)(r->wall_s * 1000) / 1000);
        if (r->detail[0])
            info = cl_json_set_str(info, "detail", r->detail);
        u->info = cl_json_set(u->info, "pass_rate", info);
    }
}

typedef struct lookup_ctx {
    jv scores;
} lookup_ctx;

static int lookup_score(void *ctx, const char *metric, double *x)
{
    lookup_ctx *l = ctx;
    if (cl_json_kind(&l->scores, metric) != JV_KIND_NUMBER)
        return -1;
    *x = cl_json_num(&l->scores, metric, 0);
    return 0;
}

/* Merges new keys into an object field of obj (created when absent). */
static jv merge_field(jv obj, const char *key, jv add)
{
    jv old = cl_json_get(&obj, key);
    if (jv_get_kind(old) != JV_KIND_OBJECT) {
        jv_free(old);
        old = jv_object();
    }
    if (jv_object_length(jv_copy(add)) == 0) {
        jv_free(add);
        jv_free(old);
        return obj;
    }
    return cl_json_set(obj, key, jv_object_merge(old, add));
}

static jv mr_json(const reward_plan *p, const mr_result *m)
{
    jv o = jv_object();
    o = cl_json_set_num(o, "mean", m->mean);
    o = cl_json_set_num(o, "std", m->std);
    o = cl_json_set_num(o, "n", m->n);
    jv per = jv_object();
    for (int i = 0; i < p->n && m->n > 0; i++)
        per = cl_json_set_num(per, p->t[i].metric, m->metric_mean[i]);
    o = cl_json_set(o, "metrics", per);
    return cl_json_set_str(o, "reward", reward_mode_name(p->mode));
}

/* The paper's training reward adds R_LLM in [0, 1]: interactivity rated for the evaluation
 * table (2(S-2.5), -3..1) would weigh about six times the paper's and swamp the task metric. */
static int eval_scale_in_training(const reward_plan *p, const jv *obj)
{
    if (p->mode != REWARD_PAPER)
        return 0;
    jv judge = cl_json_get(obj, "judge");
    jv itr = jv_get_kind(judge) == JV_KIND_OBJECT ? cl_json_get(&judge, "interactivity") : jv_null();
    const char *scale = jv_get_kind(itr) == JV_KIND_OBJECT ? cl_json_str(&itr, "scale") : NULL;
    int bad = scale && strcmp(cl_itr_scale_known(scale), cl_itr_scale_name(CL_ITR_PAPER_EVAL)) == 0;
    jv_free(itr);
    jv_free(judge);
    return bad;
}

/* Writes a record's units back and adds R and mr.  Units of record r are units[first..last). */
static jv finish_record(batch *b, int r, jv rec, int first, int last)
{
    const score_cfg *c = b->c;
    reward_plan plan;
    cl_err e = {0};
    int want_r = c->reward.mode != REWARD_NONE;
    if (want_r) {
        const char *task = cl_json_str(&rec, "task");
        if (reward_plan_for(&c->reward, task, &plan, &e) != 0) {
            rec_fail(b, r, "%s", e.msg);
            return rec;
        }
    }
    jv cands = cl_json_get(&rec, "candidates");
    int branch = jv_get_kind(cands) == JV_KIND_ARRAY;
    int nc = branch ? jv_array_length(jv_copy(cands)) : 0;
    /* R* of every unit, kept per candidate for MR. */
    double *rs = want_r ? calloc((size_t)(last - first) + 1, sizeof *rs) : NULL;
    double *xs = want_r ? calloc(((size_t)(last - first) + 1) * (size_t)plan.n + 1, sizeof *xs) : NULL;
    for (int ui = first; ui < last && !b->errs[r]; ui++) {
        unit *u = &b->units[ui];
        jv obj = unit_object(&rec, u);
        obj = merge_field(obj, "scores", jv_copy(u->scores));
        obj = merge_field(obj, "metric_info", jv_copy(u->info));
        if (want_r) {
            if (!rs || !xs) {
                rec_fail(b, r, "out of memory");
                jv_free(obj);
                break;
            }
            lookup_ctx l = {cl_json_get(&obj, "scores")};
            double rv;
            char where[64];
            if (eval_scale_in_training(&plan, &obj)) {
                rec_fail(b, r, "%s: interactivity is on the paper-eval scale (2(S-2.5)); the paper "
                         "reward trains on rating/3: judge with --itr-scale paper-train or unit",
                         unit_where(u, where, sizeof where));
            } else if (reward_star(&plan, lookup_score, &l, &rv, &e) != 0) {
                rec_fail(b, r, "%s: %s", unit_where(u, where, sizeof where), e.msg);
            } else {
                rs[ui - first] = rv;
                for (int i = 0; i < plan.n; i++)
                    lookup_score(&l, plan.t[i].metric, &xs[(size_t)(ui - first) * (size_t)plan.n + (size_t)i]);
                obj = cl_json_set_num(obj, "R", rv);
            }
            jv_free(l.scores);
        }
        if (u->ci < 0) {
            jv_free(rec);
            rec = obj;
        } else {
            jv cand = jv_array_get(jv_copy(cands), u->ci);
            jv futs = jv_array_set(cl_json_get(&cand, "futures"), u->fi, obj);
            cands = jv_array_set(cands, u->ci, cl_json_set(cand, "futures", futs));
        }
    }
    if (want_r && branch && !b->errs[r]) {
        int ui = first;
        for (int ci = 0; ci < nc; ci++) {
            int k = 0;
            while (ui + k < last && b->units[ui + k].ci == ci)
                k++;
            if (k == 0 && c->reward.mode != REWARD_VERL) {
                rec_fail(b, r, "candidates[%d] has no futures to estimate MR from", ci);
                break;
            }
            mr_result m;
            mr_estimate(&plan, rs + (ui - first), xs + (size_t)(ui - first) * (size_t)plan.n, k, &m);
            jv cand = jv_array_get(jv_copy(cands), ci);
            cands = jv_array_set(cands, ci, cl_json_set(cand, "mr", mr_json(&plan, &m)));
            ui += k;
        }
    }
    free(rs);
    free(xs);
    if (branch)
        rec = cl_json_set(rec, "candidates", cands);
    else
        jv_free(cands);
    return rec;
}

int score_batch(const score_cfg *c, jv *recs, const cl_json_deferred *defs, char **errs, int n,
                score_stats *st, cl_err *e)
{
    batch b = {.c = c, .errs = errs, .defs = defs};
    int rc = 0;
    int *firsts = malloc(((size_t)n + 1) * sizeof *firsts);
    if (!firsts)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    for (int i = 0; i < n && rc == 0; i++) {
        firsts[i] = b.nunits;
        if (!errs[i])
            rc = plan_record(&b, i, &recs[i]);
    }
    firsts[n] = b.nunits;
    int cmd_broken = 0;
    if (rc == 0 && run_cmd(&b, e) != 0)
        rc = cmd_broken = -1;
    if (rc == 0) {
        run_jobs(&b);
        collect_jobs(&b, st);
        for (int i = 0; i < n; i++) {
            if (errs[i])
                continue;
            jv out = finish_record(&b, i, jv_copy(recs[i]), firsts[i], firsts[i + 1]);
            if (errs[i]) {
                jv_free(out);
            } else {
                jv_free(recs[i]);
                recs[i] = out;
                st[i].units += (uint64_t)(firsts[i + 1] - firsts[i]);
            }
        }
        /* The corpus scores count the units of the records that are written, scored. */
        for (int i = 0; i < b.njobs; i++) {
            const job *j = &b.jobs[i];
            int k = j->metric == SCORE_BLEU ? 0 : j->metric == SCORE_BLEU_WORD ? 1 : -1;
            int r = b.units[j->unit].rec;
            if (k >= 0 && j->ran && !j->failed && !errs[r]) {
                bleu_counts_add(&st[r].corpus[k], &j->counts);
                st[r].corpus_units[k]++;
            }
        }
    } else if (!cmd_broken) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    }
    for (size_t i = 0; i < b.ncmd; i++)
        free(b.cmd_lines[i]);
    free(b.cmd_lines);
    free(b.cmd_unit);
    for (int i = 0; i < b.nunits; i++) {
        jv_free(b.units[i].scores);
        jv_free(b.units[i].info);
    }
    for (int i = 0; i < b.njobs; i++) {
        free(b.jobs[i].owned[0]);
        free(b.jobs[i].owned[1]);
        sandbox_result_free(&b.jobs[i].sr);
    }
    free(b.units);
    free(b.jobs);
    free(firsts);
    return rc ? -1 : 0;
}

/* ---- the record stream ---------------------------------------------------------------- */

/* A record waiting for its batch, kept as JSON text: parsing and printing happen in the batch's
 * threads (each record's values stay in one thread at a time; no jv is shared between
 * records).  A batch slot keeps its buffers from batch to batch: no malloc and free of a
 * record's size for every record. */
typedef struct pending {
    cl_buf text;  /* the record as read, or as --map made it */
    cl_buf out;   /* the scored record, printed */
    cl_rec where; /* only src and lineno are used, for the failure report */
    int malformed; /* a field does not have its documented shape: rejected, not scored */
} pending;

/* Ends a batch of n records. */
static void drop(pending *p, int n)
{
    for (int i = 0; i < n; i++) {
        free((char *)p[i].where.src);
        p[i].where.src = NULL;
    }
}

/* The BLEU texts stay out of libjq (cl_json_parse_deferring): making a jv string re-checks its
 * UTF-8, which cost as much as all the rest of the work around BLEU.  Only plan_bleu reads
 * them, except the completion, which math_equiv and pass_rate read as text. */
static const char *const bleu_texts[] = {"completion", "single_turn_completion", "extracted.document",
                                         "candidates[].futures[].extracted.document", NULL};
static const char *const bleu_documents[] = {"extracted.document",
                                             "candidates[].futures[].extracted.document", NULL};

/* One batch: its records and, per record, its value, deferred texts and why it failed; one-pass
 * batches also carry per record its counts and, when the machinery failed, why (each record is
 * scored on its own, under `solo`, the configuration without a pool), and while they are scored
 * behind the reader, the pool's ticket. */
typedef struct flush_ctx {
    pending *p;
    jv *vals;
    cl_json_deferred *defs;
    char **errs;
    score_stats *st;
    const char *const *deferred;
    int n, started;
    int rc;     /* the batched path: score_batch's result, and why it failed */
    cl_err why;
    const score_cfg *solo;
    cl_err *err;
    int *failed;
    long ticket;
} flush_ctx;

static void parse_one(void *ctx, int i, int worker)
{
    flush_ctx *f = ctx;
    (void)worker;
    f->vals[i] = cl_json_parse_deferring(f->p[i].text.p, f->p[i].text.n, f->deferred, &f->defs[i]);
    char why[512];
    f->p[i].malformed = cl_schema_check(&f->vals[i], CL_SCHEMA_STATE, why, sizeof why) < 0;
    f->errs[i] = f->p[i].malformed ? strdup(why) : NULL;
    if (f->p[i].malformed && !f->errs[i])
        abort(); /* out of memory */
}

/* A scored record into its slot's out buffer; its value goes. */
static void print_rec(flush_ctx *f, int i)
{
    if (!f->errs[i]) {
        f->p[i].out.n = 0;
        cl_json_write_deferred(&f->p[i].out, &f->vals[i], &f->defs[i]);
        jv_free(f->vals[i]);
        f->vals[i] = jv_invalid();
    }
}

static void print_one(void *ctx, int i, int worker)
{
    flush_ctx *f = ctx;
    (void)worker;
    if (f->rc == 0)
        print_rec(f, i);
}

/* Parses, scores and prints one record on one thread: its text, values and printed bytes stay
 * in that core's cache, where three loops over the batch would hand each record from core to
 * core between the phases (13-17% more CPU with two threads than with one, BENCHMARKS.md). */
static void whole_one(void *ctx, int i, int worker)
{
    flush_ctx *f = ctx;
    parse_one(ctx, i, worker);
    f->failed[i] = score_batch(f->solo, &f->vals[i], &f->defs[i], &f->errs[i], 1, &f->st[i],
                               &f->err[i]) != 0;
    if (!f->failed[i])
        print_rec(f, i);
}

/* Whether records can be scored one by one, each in one pass: not when a metric program
 * answers a batch at once (cmd:, rm_score), a sandbox wants a thread of its own (pass_rate),
 * or a metric reads state shared between threads (a tokenizer's). */
static int one_pass(const score_cfg *c)
{
    return !c->cmd && !c->rm_cmd && !(c->metrics & ~(unsigned)(SCORE_BLEU | SCORE_BLEU_WORD));
}

/* 0, or -1 with e set by the first record of a one-pass batch whose scoring failed (then no
 * record of the batch is written, as when a whole batch fails). */
static int first_failure(const flush_ctx *f, cl_err *e)
{
    for (int i = 0; i < f->n; i++)
        if (f->failed[i]) {
            *e = f->err[i];
            return -1;
        }
    return 0;
}

static void stats_add(score_stats *to, const score_stats *from)
{
    to->units += from->units;
    for (int s = 0; s < 4; s++)
        to->sandbox[s] += from->sandbox[s];
    to->sandbox_wall += from->sandbox_wall;
    for (int k = 0; k < 2; k++) {
        bleu_counts_add(&to->corpus[k], &from->corpus[k]);
        to->corpus_units[k] += from->corpus_units[k];
    }
}

/* A batch's arrays for cap records; -1 when out of memory. */
static int batch_alloc(flush_ctx *f, int cap, const score_cfg *solo)
{
    f->p = calloc((size_t)cap, sizeof *f->p);
    f->vals = calloc((size_t)cap, sizeof *f->vals);
    f->errs = calloc((size_t)cap, sizeof *f->errs);
    f->defs = calloc((size_t)cap, sizeof *f->defs);
    f->st = calloc((size_t)cap, sizeof *f->st);
    f->solo = solo;
    if (solo) {
        f->err = calloc((size_t)cap, sizeof *f->err);
        f->failed = calloc((size_t)cap, sizeof *f->failed);
        if (!f->err || !f->failed)
            return -1;
    }
    return f->p && f->vals && f->errs && f->defs && f->st ? 0 : -1;
}

static void batch_free(flush_ctx *f, int cap)
{
    for (int i = 0; f->p && i < cap; i++) {
        free(f->p[i].text.p);
        free(f->p[i].out.p);
    }
    free(f->p);
    free(f->vals);
    free(f->errs);
    free(f->defs);
    free(f->st);
    free(f->err);
    free(f->failed);
}

/* Starts scoring a full (or the last) batch.  One-pass records are posted to the pool, so the
 * caller reads the next batch and writes the one before while the workers score this one, and
 * no thread waits at a batch's end for another's last records; the batched path scores here. */
static void batch_start(const score_cfg *sc, flush_ctx *f)
{
    f->deferred = sc->metrics & (SCORE_MATH | SCORE_PASS_RATE) ? bleu_documents : bleu_texts;
    f->rc = 0;
    f->started = 1;
    for (int i = 0; i < f->n; i++)
        f->st[i] = (score_stats){0};
    /* Parsing, BLEU and printing only compute: threads that cannot run at once are let go. */
    if (f->solo) {
        f->ticket = cl_pool_post_cpu(sc->pool, f->n, 4, whole_one, f);
    } else {
        cl_pool_for_cpu(sc->pool, f->n, 4, parse_one, f);
        f->rc = score_batch(sc, f->vals, f->defs, f->errs, f->n, f->st, &f->why);
        /* Scored records are printed in parallel too, then written in input order. */
        cl_pool_for_cpu(sc->pool, f->n, 4, print_one, f);
    }
}

/* Ends a started batch: waits for its records, then writes them in input order (write), or
 * only lets them go (a run that has already failed). */
static int batch_finish(cl_io *io, const score_cfg *sc, flush_ctx *f, score_stats *st, int write, cl_err *e)
{
    pending *p = f->p;
    int rc = -1;
    if (f->solo) {
        cl_pool_wait(sc->pool, f->ticket);
        if (write)
            rc = first_failure(f, e);
    } else if (write) {
        rc = f->rc;
        if (rc)
            *e = f->why;
    }
    for (int i = 0; i < f->n; i++) {
        if (rc == 0 && p[i].malformed) {
            cl_rec bad = {.raw = p[i].text.p, .rawlen = p[i].text.n, .src = p[i].where.src,
                          .lineno = p[i].where.lineno};
            jv_free(f->vals[i]);
            if (cl_io_reject(io, &bad, f->errs[i], e) != 0)
                rc = -1;
        } else if (rc == 0 && f->errs[i]) {
            /* reported (its sandbox runs were made), or the first of those the run stops at */
            stats_add(st, &f->st[i]);
            if (cl_io_fail(io, &p[i].where, cl_json_undefer(f->vals[i], &f->defs[i]), f->errs[i], e) != 0)
                rc = -1;
        } else if (rc == 0) {
            /* The printed record goes out as a record's own bytes would. */
            cl_rec out = {.raw = p[i].out.p, .rawlen = p[i].out.n};
            if (p[i].out.oom)
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            else if (cl_io_put_rec(io, &out, e) != 0)
                rc = -1;
            else
                stats_add(st, &f->st[i]);
        } else {
            jv_free(f->vals[i]); /* jv_invalid() once printed */
        }
        cl_json_deferred_free(&f->defs[i]);
        free(f->errs[i]);
    }
    drop(p, f->n);
    f->n = f->started = 0;
    return rc == 0 ? cl_io_sync(io, e) : -1;
}

static void live_progress(void *ctx, char *buf, size_t n)
{
    score_live *l = ctx;
    uint64_t runs = __atomic_load_n(&l->runs, __ATOMIC_RELAXED);
    uint64_t passed = __atomic_load_n(&l->passed, __ATOMIC_RELAXED);
    snprintf(buf, n, "sandbox %" PRIu64 " runs, %" PRIu64 " passed (%.0f%%)", runs, passed,
             runs ? 100.0 * (double)passed / (double)runs : 0.0);
}

static jv counts_array(const uint64_t x[4])
{
    jv a = jv_array();
    for (int n = 0; n < 4; n++)
        a = jv_array_append(a, jv_number((double)x[n]));
    return a;
}

/* Corpus BLEU of the run into --stats ("corpus_bleu") and the closing summary: NLTK
 * corpus_bleu for bleu, sacreBLEU corpus_score for bleu_word, with the summed counts, so that
 * the scores of shards can be merged by adding counts (cl-reward(1)). */
static void report_corpus_bleu(cl_io *io, const score_cfg *sc, const score_stats *st)
{
    static const char *const names[2] = {"bleu", "bleu_word"};
    static const char *const defs[2] = {"NLTK corpus_bleu, characters",
                                        "sacreBLEU corpus_score, 13a words, exp smoothing"};
    const unsigned bits[2] = {SCORE_BLEU, SCORE_BLEU_WORD};
    jv all = jv_object();
    char line[160] = "corpus", *p = line + strlen(line);
    for (int k = 0; k < 2; k++) {
        if (!(sc->metrics & bits[k]))
            continue;
        const bleu_counts *c = &st->corpus[k];
        double score = k == 0 ? bleu_char_score(c) : bleu_word_score(c, 0);
        jv o = jv_object();
        o = cl_json_set_num(o, "score", score);
        o = cl_json_set_num(o, "units", (double)st->corpus_units[k]);
        o = cl_json_set(o, "matches", counts_array(c->correct));
        o = cl_json_set(o, "ngrams", counts_array(c->total));
        o = cl_json_set_num(o, "hyp_len", (double)c->hyp_len);
        o = cl_json_set_num(o, "ref_len", (double)c->ref_len);
        o = cl_json_set_str(o, "definition", defs[k]);
        all = cl_json_set(all, names[k], o);
        p += snprintf(p, (size_t)(line + sizeof line - p), "%s %s %.4f", p == line + 6 ? "" : ",",
                      names[k], score);
    }
    snprintf(p, (size_t)(line + sizeof line - p), " (%" PRIu64 " units)",
             st->corpus_units[sc->metrics & SCORE_BLEU ? 0 : 1]);
    cl_io_stat(io, "corpus_bleu", all);
    cl_io_summary_extra(io, line);
}

/* Batches in flight at once when one-pass records are scored behind the reader: the one the
 * caller writes, the one it reads, and one more for the workers, so that a worker the OS sets
 * aside for a while does not stop the caller. */
enum { BATCHES_IN_FLIGHT = 3 };

int score_records(cl_io *io, const score_cfg *cfg, int batch_size, cl_err *e)
{
    /* One-pass records go through in small batches: text, values and printed records of 32
     * records stay in the core's cache between reading, scoring and writing, where 256
     * records' (2.5 MB of 2,400-character documents) do not: 10-13% less CPU per record
     * (BENCHMARKS.md).  With three batches in flight, 16, 64 and 128 were no faster. */
    int cap = batch_size > 0 ? batch_size : one_pass(cfg) ? 32 : 256, rc = 0;
    score_live live = {.io = io};
    score_cfg run = *cfg, *sc = &run;
    if (sc->metrics & SCORE_PASS_RATE) {
        run.live = &live;
        cl_io_progress_extra(io, live_progress, &live);
    }
    if (!run.pool && run.jobs > 1 && !(run.pool = cl_pool_new(run.jobs)))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "cannot start %d threads", run.jobs);
    score_stats st = {0};
    score_cfg solo = run;
    solo.pool = NULL;
    flush_ctx batches[BATCHES_IN_FLIGHT] = {{0}};
    int nb = one_pass(sc) && run.pool ? BATCHES_IN_FLIGHT : 1, cur = 0;
    for (int b = 0; b < nb; b++)
        if (rc == 0 && batch_alloc(&batches[b], cap, one_pass(sc) ? &solo : NULL) < 0)
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    cl_rec rec;
    int got = 0;
    while (rc == 0 && (got = cl_io_next(io, &rec, e)) == 1) {
        flush_ctx *f = &batches[cur];
        pending *p = &f->p[f->n];
        /* The line as read, or the record --map made. */
        p->text.n = 0;
        if (rec.raw)
            cl_buf_put(&p->text, rec.raw, rec.rawlen);
        else
            cl_json_write(&p->text, cl_rec_value(&rec));
        p->where = (cl_rec){.src = strdup(rec.src), .lineno = rec.lineno};
        if (p->text.oom || !p->where.src) {
            drop(f->p, f->n + 1);
            f->n = 0;
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            break;
        }
        if (++f->n == cap) {
            batch_start(sc, f);
            cur = (cur + 1) % nb;
            if (batches[cur].started)
                rc = batch_finish(io, sc, &batches[cur], &st, 1, e);
        }
    }
    /* A stream that breaks off (e says why) still gets every record read before the break. */
    int broken = rc == 0 && got < 0;
    cl_err why_broken = broken ? *e : (cl_err){0};
    flush_ctx *last = &batches[cur];
    if (last->n > 0 && !last->started) {
        if (rc == 0) {
            batch_start(sc, last);
        } else {
            drop(last->p, last->n);
            last->n = 0;
        }
    }
    /* The batches in flight, oldest first; after a failure they are only let go. */
    for (int k = 1; k <= nb; k++) {
        flush_ctx *f = &batches[(cur + k) % nb];
        if (f->started && batch_finish(io, sc, f, &st, rc == 0, e) != 0)
            rc = -1;
    }
    if (broken && rc == 0) {
        *e = why_broken;
        rc = -1;
    }
    cl_io_stat(io, "scored", jv_number((double)st.units));
    if (sc->metrics & (SCORE_BLEU | SCORE_BLEU_WORD))
        report_corpus_bleu(io, sc, &st);
    if (sc->metrics & SCORE_PASS_RATE) {
        jv sb = jv_object();
        for (int s = 0; s < 4; s++)
            sb = cl_json_set_num(sb, sandbox_status_name((sandbox_status)s), (double)st.sandbox[s]);
        sb = cl_json_set_num(sb, "wall_s", st.sandbox_wall);
        sb = cl_json_set_str(sb, "protections", sandbox_protections(sc->sb));
        cl_io_stat(io, "sandbox", sb);
    }
    for (int b = 0; b < nb; b++)
        batch_free(&batches[b], cap);
    if (run.pool != cfg->pool) cl_pool_free(run.pool);
    return rc;
}

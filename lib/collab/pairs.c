#include "collab/pairs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

/* ---- small jv helpers ------------------------------------------------------------------ */

static jv array_at(const jv *a, int i) { return jv_array_get(jv_copy(*a), i); }
static int array_len(const jv *a) { return jv_array_length(jv_copy(*a)); }

/* obj without the listed keys (obj consumed). */
static jv without(jv obj, const char *const *keys)
{
    for (int i = 0; keys[i]; i++)
        if (cl_json_has(&obj, keys[i]))
            obj = jv_object_delete(obj, jv_string(keys[i]));
    return obj;
}

/* obj's number at key in *x, or -1 with e naming where.key when missing or not a number. */
static int need_num(const jv *obj, const char *key, const char *where, double *x, cl_err *e)
{
    if (cl_json_kind(obj, key) != JV_KIND_NUMBER)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s.%s: missing or not a number", where, key);
    *x = cl_json_num(obj, key, 0);
    return 0;
}

static int need_kind(const jv *obj, const char *key, jv_kind kind, const char *what, cl_err *e)
{
    if (cl_json_kind(obj, key) != kind)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: missing or not %s", key, what);
    return 0;
}

/* The conversation's assistant replies so far: the record's "turn", else counted. */
static int turn_of(const jv *state, cl_err *e)
{
    jv_kind k = cl_json_kind(state, "turn");
    double t = cl_json_num(state, "turn", -1);
    if (k == JV_KIND_NUMBER && t >= 0 && t <= 1e6 && t == floor(t))
        return (int)t;
    if (k != JV_KIND_INVALID)
        return cl_err_set(e, CL_EXIT_DATAERR, "turn: not a count of replies");
    jv msgs = cl_json_get(state, "messages");
    int n = 0;
    jv_array_foreach(msgs, i, m) {
        const char *role = cl_json_str(&m, "role");
        n += role && !strcmp(role, "assistant");
        jv_free(m);
        (void)i;
    }
    jv_free(msgs);
    return n;
}

/* messages (consumed) with the system prompt in front, unless they already open with a system
 * message: a second one would contradict the first. */
/* A row behind the system prompt names the prompt set it came from, so data made with one
 * set is never mistaken for the other's. */
static jv with_prompt_set(jv row, const cl_pair_config *cfg)
{
    return cfg->system_prompt && cfg->prompt_set ? cl_json_set_str(row, "prompt_set", cfg->prompt_set) : row;
}

static jv with_system(jv messages, const char *system_prompt)
{
    if (!system_prompt)
        return messages;
    jv first = jv_array_length(jv_copy(messages)) > 0 ? jv_array_get(jv_copy(messages), 0) : jv_null();
    const char *role = cl_json_str(&first, "role");
    int has = role && !strcmp(role, "system");
    jv_free(first);
    if (has)
        return messages;
    return jv_array_concat(jv_array_append(jv_array(), cl_json_message("system", system_prompt)), messages);
}

/* obj (consumed) rebuilt with its keys in sorted order: upstream tools add scores in the order
 * their calls complete, and what is written here must not depend on that. */
static jv sorted_keys(jv obj)
{
    jv out = jv_object();
    jv keys = jv_keys(jv_copy(obj));
    jv_array_foreach(keys, i, k) {
        out = jv_object_set(out, jv_copy(k), jv_object_get(jv_copy(obj), k));
        (void)i;
    }
    jv_free(keys);
    jv_free(obj);
    return out;
}

/* ---- ranking ------------------------------------------------------------------------- */

typedef struct ranked {
    double mean, std;
    int index;
} ranked;

/* Higher mean first, then smaller std, then input order. */
static int mr_order(const ranked *a, const ranked *b)
{
    if (a->mean != b->mean)
        return a->mean > b->mean ? -1 : 1;
    if (a->std != b->std)
        return a->std < b->std ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static int candidate_mr(const jv *cand, int i, ranked *r, cl_err *e)
{
    char where[64];
    snprintf(where, sizeof where, "candidates[%d].mr", i);
    jv mr = cl_json_get(cand, "mr");
    int rc = 0;
    if (jv_get_kind(mr) != JV_KIND_OBJECT)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: missing or not an object (run cl-reward first)",
                        where);
    else if (need_num(&mr, "mean", where, &r->mean, e) < 0)
        rc = -1;
    else {
        jv_kind sk = cl_json_kind(&mr, "std");
        r->std = 0; /* one future, or a reward that reports none */
        if (sk != JV_KIND_INVALID && sk != JV_KIND_NULL && need_num(&mr, "std", where, &r->std, e) < 0)
            rc = -1;
    }
    r->index = i;
    jv_free(mr);
    return rc;
}

int mr_rank(const jv *candidates, cl_mr_rank *r, cl_err *e)
{
    if (jv_get_kind(*candidates) != JV_KIND_ARRAY)
        return cl_err_set(e, CL_EXIT_DATAERR, "candidates: not an array");
    int n = array_len(candidates);
    if (n == 0)
        return cl_err_set(e, CL_EXIT_DATAERR, "candidates: empty");
    ranked best = {0}, worst = {0};
    for (int i = 0; i < n; i++) {
        jv c = array_at(candidates, i);
        ranked x;
        int rc = candidate_mr(&c, i, &x, e);
        jv_free(c);
        if (rc < 0)
            return -1;
        if (i == 0 || mr_order(&x, &best) < 0)
            best = x;
        if (i == 0 || mr_order(&x, &worst) > 0)
            worst = x;
    }
    r->best = best.index;
    r->worst = worst.index;
    r->best_mean = best.mean;
    r->worst_mean = worst.mean;
    return 0;
}

static int check_contents(const jv *cands, const int *idx, int n, cl_err *e)
{
    for (int k = 0; k < n; k++) {
        jv c = array_at(cands, idx[k]);
        int ok = cl_json_kind(&c, "content") == JV_KIND_STRING;
        jv_free(c);
        if (!ok)
            return cl_err_set(e, CL_EXIT_DATAERR, "candidates[%d].content: missing or not a string",
                              idx[k]);
    }
    return 0;
}

/* Every candidate has a content and an MR mean: what ranking and pairing read. */
static int check_candidates(const jv *cands, cl_err *e)
{
    int n = array_len(cands);
    for (int i = 0; i < n; i++) {
        jv c = array_at(cands, i);
        ranked x;
        int rc = check_contents(cands, &i, 1, e) < 0 ? -1 : candidate_mr(&c, i, &x, e);
        jv_free(c);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- lists in order of first appearance ------------------------------------------------ */

/* Entries kept in the order their keys first appeared, as the official converters group rows. */
typedef struct keyed {
    jv index; /* key -> position in list */
    jv list;
} keyed;

static void keyed_init(keyed *k)
{
    k->index = jv_object();
    k->list = jv_array();
}

static void keyed_free(keyed *k)
{
    jv_free(k->index);
    jv_free(k->list);
}

static int keyed_count(const keyed *k) { return jv_array_length(jv_copy(k->list)); }

/* The position of key, or -1 after appending entry (consumed) under it; entry is freed when
 * the key is known. */
static int keyed_put(keyed *k, const char *key, jv entry)
{
    jv pos = jv_object_get(jv_copy(k->index), jv_string(key));
    if (jv_is_valid(pos)) {
        int at = (int)jv_number_value(pos);
        jv_free(pos);
        jv_free(entry);
        return at;
    }
    jv_free(pos);
    k->index = jv_object_set(k->index, jv_string(key), jv_number(keyed_count(k)));
    k->list = jv_array_append(k->list, entry);
    return -1;
}

/* ---- groups per (conversation, turn) ---------------------------------------------------- */

struct cl_turns {
    keyed groups; /* merged branch records by "id\n<turn>" */
};

cl_turns *cl_turns_new(void)
{
    cl_turns *t = malloc(sizeof *t);
    if (t)
        keyed_init(&t->groups);
    return t;
}

void cl_turns_free(cl_turns *t)
{
    if (!t)
        return;
    keyed_free(&t->groups);
    free(t);
}

static int check_state(const jv *rec, cl_err *e)
{
    if (need_kind(rec, "id", JV_KIND_STRING, "a string", e) < 0 ||
        need_kind(rec, "messages", JV_KIND_ARRAY, "an array", e) < 0)
        return -1;
    return turn_of(rec, e) < 0 ? -1 : 0;
}

int cl_turns_add(cl_turns *t, const jv *branch, cl_err *e)
{
    if (check_state(branch, e) < 0 ||
        need_kind(branch, "candidates", JV_KIND_ARRAY, "an array (not a branch record)", e) < 0)
        return -1;
    jv cands = cl_json_get(branch, "candidates");
    int bad = check_candidates(&cands, e);
    jv_free(cands);
    if (bad < 0)
        return -1;
    char key[512];
    snprintf(key, sizeof key, "%s\n%d", cl_json_str(branch, "id"), turn_of(branch, e));
    int at = keyed_put(&t->groups, key, jv_copy(*branch));
    if (at < 0)
        return 0;
    jv group = jv_array_get(jv_copy(t->groups.list), at);
    jv a = cl_json_get(&group, "messages"), b = cl_json_get(branch, "messages");
    if (!jv_equal(a, b)) {
        jv_free(group);
        return cl_err_set(e, CL_EXIT_DATAERR,
                          "messages: differ from an earlier record with id %s and turn %d",
                          cl_json_str(branch, "id"), turn_of(branch, e));
    }
    jv merged = jv_array_concat(cl_json_get(&group, "candidates"), cl_json_get(branch, "candidates"));
    t->groups.list = jv_array_set(t->groups.list, at, cl_json_set(group, "candidates", merged));
    return 0;
}

int cl_turns_count(const cl_turns *t) { return keyed_count(&t->groups); }
jv cl_turns_get(const cl_turns *t, int i) { return jv_array_get(jv_copy(t->groups.list), i); }

/* ---- DPO ----------------------------------------------------------------------------- */

static jv assistant_reply(const jv *cand)
{
    jv msg = cl_json_set(jv_object(), "role", jv_string("assistant"));
    return jv_array_append(jv_array(), cl_json_set(msg, "content", cl_json_get(cand, "content")));
}

/* The chosen reply as it joins the conversation of the next state: with the tokens its call
 * reported, so later turns can still count the session's tokens from usage. */
static jv advanced_reply(const jv *cand)
{
    jv msg = cl_json_set(jv_object(), "role", jv_string("assistant"));
    msg = cl_json_set(msg, "content", cl_json_get(cand, "content"));
    if (cl_json_has(cand, "usage"))
        msg = cl_json_set(msg, "usage", cl_json_get(cand, "usage"));
    return jv_array_append(jv_array(), msg);
}

static jv candidate_label(const jv *cand, int i)
{
    jv id = cl_json_get(cand, "id");
    if (jv_get_kind(id) == JV_KIND_STRING)
        return id;
    jv_free(id);
    return jv_number(i);
}

int dpo_pair(const jv *branch, const cl_pair_config *cfg, jv *pair, cl_err *e)
{
    if (check_state(branch, e) < 0 ||
        need_kind(branch, "candidates", JV_KIND_ARRAY, "an array (not a branch record)", e) < 0)
        return -1;
    jv cands = cl_json_get(branch, "candidates");
    if (array_len(&cands) < 2) {
        jv_free(cands);
        return 0;
    }
    cl_mr_rank r;
    int rc = mr_rank(&cands, &r, e);
    if (rc == 0) {
        int idx[2] = {r.best, r.worst};
        rc = check_contents(&cands, idx, 2, e);
    }
    /* Gaps that equal min_gap in decimal (0.52 - 0.50) must not fall to binary rounding. */
    if (rc < 0 || r.best_mean - r.worst_mean < cfg->min_gap - 1e-12) {
        jv_free(cands);
        return rc;
    }
    jv best = array_at(&cands, r.best), worst = array_at(&cands, r.worst);
    const char *id = cl_json_str(branch, "id");
    int turn = turn_of(branch, e);
    char pid[512];
    snprintf(pid, sizeof pid, "%s/t%d", id, turn);
    jv p = cl_json_set_str(jv_object(), "id", pid);
    p = cl_json_set_str(p, "conv_id", id);
    p = cl_json_set_num(p, "turn", turn);
    if (cl_json_kind(branch, "task") == JV_KIND_STRING)
        p = cl_json_set(p, "task", cl_json_get(branch, "task"));
    p = cl_json_set(p, "prompt", with_system(cl_json_get(branch, "messages"), cfg->system_prompt));
    p = with_prompt_set(p, cfg);
    p = cl_json_set(p, "chosen", assistant_reply(&best));
    p = cl_json_set(p, "rejected", assistant_reply(&worst));
    p = cl_json_set_num(p, "score_chosen", r.best_mean);
    p = cl_json_set_num(p, "score_rejected", r.worst_mean);
    p = cl_json_set(p, "chosen_candidate", candidate_label(&best, r.best));
    p = cl_json_set(p, "rejected_candidate", candidate_label(&worst, r.worst));
    jv_free(best);
    jv_free(worst);
    jv_free(cands);
    *pair = p;
    return 1;
}

/* ---- metric floors -------------------------------------------------------------------- */

int cl_floor_parse(const char *s, cl_floor *f, cl_err *e)
{
    static const char *const ops[] = {">=", "<=", ">", "<", NULL};
    const char *at = NULL;
    const char *op = NULL;
    for (const char *p = s; *p && !at; p++)
        for (int i = 0; ops[i]; i++)
            if (!strncmp(p, ops[i], strlen(ops[i]))) {
                at = p;
                op = ops[i];
                break;
            }
    size_t n = at ? (size_t)(at - s) : 0;
    if (!at || n == 0 || n >= sizeof f->metric)
        return cl_err_set(e, CL_EXIT_USAGE, "--min '%s': expected METRIC>=X (or >, <=, <)", s);
    memcpy(f->metric, s, n);
    f->metric[n] = 0;
    strcpy(f->op, op);
    char *end;
    const char *num = at + strlen(op);
    f->value = strtod(num, &end);
    if (end == num || *end || !isfinite(f->value))
        return cl_err_set(e, CL_EXIT_USAGE, "--min '%s': '%s' is not a number", s, num);
    return 0;
}

int cl_floor_holds(const cl_floor *f, double x)
{
    if (!strcmp(f->op, ">="))
        return x >= f->value;
    if (!strcmp(f->op, ">"))
        return x > f->value;
    if (!strcmp(f->op, "<="))
        return x <= f->value;
    return x < f->value;
}

/* ---- per-candidate metric means --------------------------------------------------------- */

/* {metric: mean over the futures that carry it} of a candidate, plus the metrics cl-reward
 * averaged into mr.metrics or the candidate carries in "scores" that no future has; keys
 * sorted. */
static jv candidate_means(const jv *cand)
{
    jv sums = jv_object(), counts = jv_object();
    jv futures = cl_json_get(cand, "futures");
    if (jv_get_kind(futures) == JV_KIND_ARRAY) {
        jv_array_foreach(futures, i, f) {
            jv sc = cl_json_get(&f, "scores");
            if (jv_get_kind(sc) == JV_KIND_OBJECT) {
                jv_object_foreach(sc, k, v) {
                    if (jv_get_kind(v) == JV_KIND_NUMBER) {
                        const char *ks = jv_string_value(k);
                        sums = cl_json_set_num(sums, ks, cl_json_num(&sums, ks, 0) + jv_number_value(v));
                        counts = cl_json_set_num(counts, ks, cl_json_num(&counts, ks, 0) + 1);
                    }
                    jv_free(k);
                    jv_free(v);
                }
            }
            jv_free(sc);
            jv_free(f);
            (void)i;
        }
    }
    jv_free(futures);
    jv means = jv_object();
    jv_object_foreach(sums, k, v) {
        const char *ks = jv_string_value(k);
        means = cl_json_set_num(means, ks, jv_number_value(v) / cl_json_num(&counts, ks, 1));
        jv_free(k);
        jv_free(v);
    }
    jv_free(sums);
    jv_free(counts);
    jv mr = cl_json_get(cand, "mr");
    jv more[2] = {cl_json_get(&mr, "metrics"), cl_json_get(cand, "scores")};
    jv_free(mr);
    for (int j = 0; j < 2; j++) {
        if (jv_get_kind(more[j]) == JV_KIND_OBJECT) {
            jv_object_foreach(more[j], k, v) {
                if (!cl_json_has(&means, jv_string_value(k)) && jv_get_kind(v) == JV_KIND_NUMBER)
                    means = jv_object_set(means, jv_copy(k), jv_copy(v));
                jv_free(k);
                jv_free(v);
            }
        }
        jv_free(more[j]);
    }
    return sorted_keys(means);
}

/* ---- SFT ----------------------------------------------------------------------------- */

struct cl_dialogues {
    keyed convs; /* {id, turn, score, messages, metrics} by conversation id */
    cl_floor *floors;
    int nfloors;
};

cl_dialogues *cl_dialogues_new(const cl_floor *floors, int nfloors)
{
    cl_dialogues *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    if (nfloors > 0 && !(d->floors = malloc(sizeof *floors * (size_t)nfloors))) {
        free(d);
        return NULL;
    }
    if (nfloors > 0)
        memcpy(d->floors, floors, sizeof *floors * (size_t)nfloors);
    d->nfloors = nfloors;
    keyed_init(&d->convs);
    return d;
}

void cl_dialogues_free(cl_dialogues *d)
{
    if (!d)
        return;
    keyed_free(&d->convs);
    free(d->floors);
    free(d);
}

/* The last pick of an advanced state: its MR and metric means stand for the conversation. */
static jv last_pick(const jv *state)
{
    jv picks = cl_json_get(state, "picks");
    int n = jv_get_kind(picks) == JV_KIND_ARRAY ? jv_array_length(jv_copy(picks)) : 0;
    jv p = n > 0 ? jv_array_get(jv_copy(picks), n - 1) : jv_object();
    jv_free(picks);
    return p;
}

/* Messages (consumed) up to their last assistant reply: a dialogue for SFT ends on the model. */
static jv through_last_reply(jv msgs)
{
    int n = jv_array_length(jv_copy(msgs));
    while (n > 0) {
        jv m = jv_array_get(jv_copy(msgs), n - 1);
        const char *role = cl_json_str(&m, "role");
        int is_reply = role && !strcmp(role, "assistant");
        jv_free(m);
        if (is_reply)
            break;
        n--;
    }
    return jv_array_slice(msgs, 0, n);
}

int cl_dialogues_add(cl_dialogues *d, const jv *rec, cl_err *e)
{
    if (check_state(rec, e) < 0)
        return -1;
    jv entry;
    int turn = turn_of(rec, e);
    if (cl_json_has(rec, "candidates")) {
        jv cands = cl_json_get(rec, "candidates");
        cl_mr_rank r;
        if (mr_rank(&cands, &r, e) < 0 || check_contents(&cands, &r.best, 1, e) < 0) {
            jv_free(cands);
            return -1;
        }
        jv best = array_at(&cands, r.best);
        jv msgs = jv_array_concat(cl_json_get(rec, "messages"), assistant_reply(&best));
        entry = cl_json_set_num(jv_object(), "turn", turn + 1);
        entry = cl_json_set_num(entry, "score", r.best_mean);
        entry = cl_json_set(entry, "messages", msgs);
        entry = cl_json_set(entry, "metrics", candidate_means(&best));
        jv_free(best);
        jv_free(cands);
    } else {
        if (!cl_json_bool(rec, "done", 0))
            return 0;
        jv pick = last_pick(rec);
        jv metrics = cl_json_get(&pick, "scores");
        if (jv_get_kind(metrics) != JV_KIND_OBJECT) {
            jv_free(metrics);
            metrics = jv_object();
        }
        /* A conversation scored as a whole (evaluation runs) speaks for itself. */
        jv own = cl_json_get(rec, "scores");
        if (jv_get_kind(own) == JV_KIND_OBJECT)
            metrics = jv_object_merge(metrics, own);
        else
            jv_free(own);
        jv mr = cl_json_get(&pick, "mr");
        entry = cl_json_set_num(jv_object(), "turn", turn);
        entry = cl_json_set_num(entry, "score", cl_json_num(&mr, "mean", -INFINITY));
        entry = cl_json_set(entry, "messages", through_last_reply(cl_json_get(rec, "messages")));
        entry = cl_json_set(entry, "metrics", metrics);
        jv_free(mr);
        jv_free(pick);
    }
    for (int k = 0; k < d->nfloors; k++) {
        jv m = cl_json_get(&entry, "metrics");
        int has = cl_json_kind(&m, d->floors[k].metric) == JV_KIND_NUMBER;
        jv_free(m);
        if (!has) {
            jv_free(entry);
            return cl_err_set(e, CL_EXIT_DATAERR, "no score '%s' for --min on the chosen reply",
                              d->floors[k].metric);
        }
    }
    entry = cl_json_set(entry, "id", cl_json_get(rec, "id"));
    int at = keyed_put(&d->convs, cl_json_str(rec, "id"), jv_copy(entry));
    if (at < 0) {
        jv_free(entry);
        return 1;
    }
    /* The official converter keeps each conversation's latest turn, ties to the higher score. */
    jv old = jv_array_get(jv_copy(d->convs.list), at);
    double t0 = cl_json_num(&old, "turn", 0), t1 = cl_json_num(&entry, "turn", 0);
    int newer = t1 > t0 || (t1 == t0 && cl_json_num(&entry, "score", 0) > cl_json_num(&old, "score", 0));
    jv_free(old);
    if (newer)
        d->convs.list = jv_array_set(d->convs.list, at, entry);
    else
        jv_free(entry);
    return 1;
}

int cl_dialogues_count(const cl_dialogues *d) { return keyed_count(&d->convs); }

int sft_dialogue(const cl_dialogues *d, int i, const cl_pair_config *cfg, jv *sft)
{
    jv entry = jv_array_get(jv_copy(d->convs.list), i);
    jv metrics = cl_json_get(&entry, "metrics");
    int keep = 1;
    for (int k = 0; k < d->nfloors && keep; k++)
        keep = cl_floor_holds(&d->floors[k], cl_json_num(&metrics, d->floors[k].metric, 0));
    jv_free(metrics);
    if (keep) {
        jv out = cl_json_set(jv_object(), "id", cl_json_get(&entry, "id"));
        out = cl_json_set(out, "messages", with_system(cl_json_get(&entry, "messages"), cfg->system_prompt));
        *sft = with_prompt_set(out, cfg);
    }
    jv_free(entry);
    return keep;
}

/* ---- advance ------------------------------------------------------------------------- */

/* Whether a future's first message is the user ending the chat. */
static int opens_with_end(const jv *future, const char *marker)
{
    jv msgs = cl_json_get(future, "messages");
    int n = jv_get_kind(msgs) == JV_KIND_ARRAY ? jv_array_length(jv_copy(msgs)) : 0;
    int end = 0;
    if (n > 0) {
        jv m = jv_array_get(jv_copy(msgs), 0);
        const char *c = cl_json_str(&m, "content");
        end = c && strstr(c, marker);
        jv_free(m);
    }
    /* A simulator whose end token was stripped from the text (purpose-built user models) leaves
     * only the flag: terminated after a single message means that message ended it. */
    if (n == 1 && cl_json_bool(future, "terminated", 0))
        end = 1;
    jv_free(msgs);
    return end;
}

static int future_len(const jv *future)
{
    jv msgs = cl_json_get(future, "messages");
    int n = jv_get_kind(msgs) == JV_KIND_ARRAY ? jv_array_length(jv_copy(msgs)) : 0;
    jv_free(msgs);
    return n;
}

/* Index of the future the next user message comes from, -1 when there is none, -2 on error. */
static int next_user_future(const jv *futures, const cl_advance_config *cfg, int cand, cl_err *e)
{
    int n = jv_get_kind(*futures) == JV_KIND_ARRAY ? array_len(futures) : 0;
    int pick = -1;
    double best = 0;
    for (int i = 0; i < n; i++) {
        jv f = array_at(futures, i);
        int len = future_len(&f);
        if (cfg->rule == CL_NEXT_LONGEST) {
            if (len > 0 && (pick < 0 || len > best)) {
                pick = i;
                best = len;
            }
        } else if (len > 0 && !opens_with_end(&f, cfg->marker)) {
            char where[64];
            double r = 0;
            snprintf(where, sizeof where, "candidates[%d].futures[%d]", cand, i);
            if (need_num(&f, "R", where, &r, e) < 0) {
                jv_free(f);
                return -2;
            }
            if (pick < 0 || r < best) {
                pick = i;
                best = r;
            }
        }
        jv_free(f);
    }
    if (cfg->rule == CL_NEXT_WORST_OPEN && pick < 0 && n > 0) {
        jv f0 = array_at(futures, 0);
        pick = future_len(&f0) > 0 ? 0 : -1;
        jv_free(f0);
    }
    return pick;
}

static jv finish(jv state, const char *reason)
{
    state = cl_json_set(state, "done", jv_true());
    return cl_json_set_str(state, "done_reason", reason);
}

int advance_turn(jv branch, const cl_advance_config *cfg, jv *state, cl_err *e)
{
    if (cl_json_bool(&branch, "done", 0)) {
        *state = branch;
        return 0;
    }
    int turn = check_state(&branch, e) < 0 ? -1 : turn_of(&branch, e);
    jv cands = cl_json_get(&branch, "candidates");
    cl_mr_rank r;
    if (turn < 0 || (jv_get_kind(cands) != JV_KIND_ARRAY &&
                     cl_err_set(e, CL_EXIT_DATAERR, "candidates: missing (not a branch record)")) ||
        mr_rank(&cands, &r, e) < 0 || check_contents(&cands, &r.best, 1, e) < 0) {
        jv_free(cands);
        jv_free(branch);
        return -1;
    }
    jv best = array_at(&cands, r.best);
    jv_free(cands);
    jv futures = cl_json_get(&best, "futures");
    int at_cap = turn + 1 >= cfg->max_turns;
    int f = at_cap ? -1 : next_user_future(&futures, cfg, r.best, e);
    if (f == -2) {
        jv_free(futures);
        jv_free(best);
        jv_free(branch);
        return -1;
    }

    jv pick = cl_json_set_num(jv_object(), "turn", turn);
    pick = cl_json_set(pick, "candidate", candidate_label(&best, r.best));
    if (cl_json_has(&best, "source"))
        pick = cl_json_set(pick, "source", cl_json_get(&best, "source"));
    pick = cl_json_set(pick, "mr", cl_json_get(&best, "mr"));
    pick = cl_json_set(pick, "scores", candidate_means(&best));

    jv s = jv_object_delete(branch, jv_string("candidates"));
    s = cl_json_set(s, "messages",
                    jv_array_concat(cl_json_get(&s, "messages"), advanced_reply(&best)));
    s = cl_json_set_num(s, "turn", turn + 1);
    jv next = jv_null();
    if (at_cap) {
        s = finish(s, "max_turns");
    } else if (f < 0) {
        s = finish(s, "no_next_user");
    } else {
        jv fut = array_at(&futures, f);
        jv msgs = cl_json_get(&fut, "messages");
        next = jv_array_get(msgs, 0);
        if (opens_with_end(&fut, cfg->marker))
            s = finish(s, "terminated");
        jv_free(fut);
        pick = cl_json_set_num(pick, "future", f);
    }
    if (f >= 0) {
        const char *role = jv_get_kind(next) == JV_KIND_OBJECT ? cl_json_str(&next, "role") : NULL;
        if (!role || strcmp(role, "user") || cl_json_kind(&next, "content") != JV_KIND_STRING) {
            jv_free(next);
            jv_free(pick);
            jv_free(s);
            jv_free(futures);
            jv_free(best);
            return cl_err_set(e, CL_EXIT_DATAERR,
                              "candidates[%d].futures[%d].messages[0]: not a user message",
                              r.best, f);
        }
        s = cl_json_set(s, "messages", jv_array_append(cl_json_get(&s, "messages"), next));
    } else {
        jv_free(next);
    }
    jv picks = cl_json_get(&s, "picks");
    if (jv_get_kind(picks) != JV_KIND_ARRAY) {
        jv_free(picks);
        picks = jv_array();
    }
    s = cl_json_set(s, "picks", jv_array_append(picks, pick));
    jv_free(futures);
    jv_free(best);
    *state = s;
    return 0;
}

/* ---- flat rows ------------------------------------------------------------------------- */

/* State fields the official row schema names under its own keys. */
static const char *const state_mapped[] = {"id", "messages", "prompt", "completion", "metadata",
                                           "candidates", "conv_id", NULL};
static const char *const future_mapped[] = {"messages", "scores", "R", NULL};

/* A future's value for a column: the number, or null where that future lacks it. */
static jv column_value(const jv *future, const char *obj, const char *key)
{
    jv v = obj ? cl_json_get(future, obj) : jv_copy(*future);
    jv x = jv_get_kind(v) == JV_KIND_OBJECT ? jv_object_get(v, jv_string(key)) : (jv_free(v), jv_invalid());
    if (jv_get_kind(x) == JV_KIND_NUMBER)
        return x;
    jv_free(x);
    return jv_null();
}

/* The official "rewards": one array per metric with a value per session, metrics in sorted
 * order, then "MR" with R. */
static jv rewards_of(const jv *futures)
{
    jv names = jv_object();
    jv_array_foreach(*futures, i, f) {
        jv sc = cl_json_get(&f, "scores");
        if (jv_get_kind(sc) == JV_KIND_OBJECT) {
            jv_object_foreach(sc, k, v) {
                names = jv_object_set(names, k, jv_true());
                jv_free(v);
            }
        }
        jv_free(sc);
        jv_free(f);
        (void)i;
    }
    jv rewards = jv_object();
    names = sorted_keys(names);
    jv_object_foreach(names, name, flag) {
        jv col = jv_array();
        jv_array_foreach(*futures, i, f) {
            col = jv_array_append(col, column_value(&f, "scores", jv_string_value(name)));
            jv_free(f);
            (void)i;
        }
        rewards = jv_object_set(rewards, name, col);
        jv_free(flag);
    }
    jv_free(names);
    jv mr = jv_array();
    int any = 0;
    jv_array_foreach(*futures, i, f) {
        any |= cl_json_kind(&f, "R") == JV_KIND_NUMBER;
        mr = jv_array_append(mr, column_value(&f, NULL, "R"));
        jv_free(f);
        (void)i;
    }
    if (any)
        rewards = cl_json_set(rewards, "MR", mr);
    else
        jv_free(mr);
    return rewards;
}

/* The record id a conv_id reads as: itself when a string, else its JSON text (17 -> "17"). */
static jv conv_text(const jv *conv)
{
    return cl_json_text(jv_copy(*conv));
}

int flat_rows(const jv *branch, jv *rows, cl_err *e)
{
    if (check_state(branch, e) < 0 ||
        need_kind(branch, "candidates", JV_KIND_ARRAY, "an array (not a branch record)", e) < 0)
        return -1;
    jv prompt = cl_json_get(branch, "messages");
    jv conv = cl_json_has(branch, "conv_id") ? cl_json_get(branch, "conv_id") : cl_json_get(branch, "id");
    /* The id travels in "state" only when conv_id says something else. */
    jv extras = without(jv_copy(*branch), state_mapped + !jv_equal(conv_text(&conv), cl_json_get(branch, "id")));
    jv out = jv_array();
    jv cands = cl_json_get(branch, "candidates");
    int rc = 0;
    jv_array_foreach(cands, ci, c) {
        ranked unused;
        if (rc == 0 && cl_json_kind(&c, "content") != JV_KIND_STRING)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "candidates[%d].content: missing or not a string", ci);
        if (rc == 0 && candidate_mr(&c, ci, &unused, e) < 0)
            rc = -1;
        if (rc < 0) {
            jv_free(c);
            continue;
        }
        jv futures = cl_json_get(&c, "futures");
        if (jv_get_kind(futures) != JV_KIND_ARRAY) {
            jv_free(futures);
            futures = jv_array();
        }
        jv head = jv_array_append(jv_copy(prompt), cl_json_message("assistant", cl_json_str(&c, "content")));
        jv sessions = jv_array(), finfo = jv_array();
        int any_info = 0;
        jv_array_foreach(futures, fi, f) {
            jv fm = cl_json_get(&f, "messages");
            if (jv_get_kind(fm) != JV_KIND_ARRAY) {
                jv_free(fm);
                fm = jv_array();
            }
            sessions = jv_array_append(sessions, jv_array_concat(jv_copy(head), fm));
            jv info = without(jv_copy(f), future_mapped);
            any_info |= jv_object_length(jv_copy(info)) > 0;
            finfo = jv_array_append(finfo, info);
            jv_free(f);
            (void)fi;
        }
        jv_free(head);
        jv mr = cl_json_get(&c, "mr");
        jv row = cl_json_set(jv_object(), "prompt", jv_copy(prompt));
        row = cl_json_set(row, "completion", cl_json_get(&c, "content"));
        row = cl_json_set(row, "conv_id", jv_copy(conv));
        row = cl_json_set_num(row, "turn_id", jv_array_length(jv_copy(prompt)));
        row = cl_json_set(row, "score", cl_json_get(&mr, "mean"));
        row = cl_json_set(row, "sessions", sessions);
        row = cl_json_set(row, "rewards", rewards_of(&futures));
        const char *st[][2] = {{"prompt", "single_turn_prompt"},
                               {"completion", "single_turn_completion"},
                               {"metadata", "single_turn_metadata"}};
        for (int k = 0; k < 3; k++)
            if (cl_json_has(branch, st[k][0]))
                row = cl_json_set(row, st[k][1], cl_json_get(branch, st[k][0]));
        if (jv_object_length(jv_copy(extras)) > 0)
            row = cl_json_set(row, "state", jv_copy(extras));
        /* The candidate's own fields, less what "completion", "sessions", "rewards" and
         * "score" already say. */
        static const char *const cand_mapped[] = {"content", "futures", NULL};
        jv cx = without(jv_copy(c), cand_mapped);
        jv mr_rest = jv_object_delete(jv_copy(mr), jv_string("mean"));
        if (jv_object_length(jv_copy(mr_rest)) > 0)
            cx = cl_json_set(cx, "mr", mr_rest);
        else {
            jv_free(mr_rest);
            cx = jv_object_delete(cx, jv_string("mr"));
        }
        if (any_info)
            cx = cl_json_set(cx, "futures", finfo);
        else
            jv_free(finfo);
        if (jv_object_length(jv_copy(cx)) > 0)
            row = cl_json_set(row, "candidate", cx);
        else
            jv_free(cx);
        jv_free(mr);
        jv_free(futures);
        out = jv_array_append(out, row);
        jv_free(c);
    }
    jv_free(cands);
    jv_free(extras);
    jv_free(conv);
    jv_free(prompt);
    if (rc < 0) {
        jv_free(out);
        return -1;
    }
    *rows = out;
    return 0;
}

/* Strips prompt + [reply] from the front of a session when it is there (the official sessions
 * hold the whole conversation; our futures only what follows the reply). */
static jv forward_part(jv session, const jv *head)
{
    int n = array_len(head);
    if (jv_array_length(jv_copy(session)) >= n &&
        jv_equal(jv_array_slice(jv_copy(session), 0, n), jv_copy(*head)))
        return jv_array_slice(session, n, jv_array_length(jv_copy(session)));
    return session;
}

int flat_row_branch(jv row, jv *branch, cl_err *e)
{
    static const char *const known[] = {"prompt", "completion", "conv_id", "turn_id", "score",
                                        "sessions", "rewards", "single_turn_prompt",
                                        "single_turn_completion", "single_turn_metadata",
                                        "state", "candidate", NULL};
    int rc = 0;
    if (need_kind(&row, "prompt", JV_KIND_ARRAY, "an array of messages", e) < 0 ||
        need_kind(&row, "completion", JV_KIND_STRING, "a string", e) < 0 ||
        (cl_json_kind(&row, "score") != JV_KIND_NUMBER &&
         cl_err_set(e, CL_EXIT_DATAERR, "score: missing or not a number") < 0))
        rc = -1;
    jv_kind ck = cl_json_kind(&row, "conv_id");
    if (rc == 0 && ck != JV_KIND_STRING && ck != JV_KIND_NUMBER)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "conv_id: missing or not a string or number");
    jv_kind sk = cl_json_kind(&row, "sessions");
    if (rc == 0 && sk != JV_KIND_INVALID && sk != JV_KIND_ARRAY)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "sessions: not an array");
    jv_kind rk = cl_json_kind(&row, "rewards");
    if (rc == 0 && rk != JV_KIND_INVALID && rk != JV_KIND_OBJECT && rk != JV_KIND_NULL)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "rewards: not an object");
    if (rc < 0) {
        jv_free(row);
        return -1;
    }
    jv st = cl_json_get(&row, "state");
    jv s = jv_get_kind(st) == JV_KIND_OBJECT ? st : (jv_free(st), jv_object());
    jv conv = cl_json_get(&row, "conv_id");
    if (!cl_json_has(&s, "id"))
        s = cl_json_set(s, "id", conv_text(&conv));
    if (jv_get_kind(conv) != JV_KIND_STRING || !jv_equal(cl_json_get(&s, "id"), jv_copy(conv)))
        s = cl_json_set(s, "conv_id", conv);
    else
        jv_free(conv);
    s = cl_json_set(s, "messages", cl_json_get(&row, "prompt"));
    const char *st_names[][2] = {{"single_turn_prompt", "prompt"},
                                 {"single_turn_completion", "completion"},
                                 {"single_turn_metadata", "metadata"}};
    for (int k = 0; k < 3; k++)
        if (cl_json_has(&row, st_names[k][0]))
            s = cl_json_set(s, st_names[k][1], cl_json_get(&row, st_names[k][0]));

    /* The candidate: its carried fields, then the row's unknown keys, then the mapped ones. */
    jv cx = cl_json_get(&row, "candidate");
    jv c = jv_get_kind(cx) == JV_KIND_OBJECT ? cx : (jv_free(cx), jv_object());
    jv finfo = cl_json_get(&c, "futures");
    c = jv_object_delete(c, jv_string("futures"));
    c = jv_object_merge(c, without(jv_copy(row), known));
    c = cl_json_set(c, "content", cl_json_get(&row, "completion"));
    jv mr = cl_json_get(&c, "mr");
    if (jv_get_kind(mr) != JV_KIND_OBJECT) {
        jv_free(mr);
        mr = jv_object();
    }
    c = cl_json_set(c, "mr", cl_json_set(mr, "mean", cl_json_get(&row, "score")));

    jv sessions = cl_json_get(&row, "sessions");
    if (jv_get_kind(sessions) != JV_KIND_ARRAY) {
        jv_free(sessions);
        sessions = jv_array();
    }
    jv rewards = cl_json_get(&row, "rewards");
    jv head = jv_array_append(cl_json_get(&row, "prompt"), cl_json_message("assistant", cl_json_str(&row, "completion")));
    jv futures = jv_array();
    int nf = jv_array_length(jv_copy(sessions));
    jv_array_foreach(sessions, i, sess) {
        if (jv_get_kind(sess) != JV_KIND_ARRAY) {
            if (rc == 0)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "sessions[%d]: not an array of messages", i);
            jv_free(sess);
            continue;
        }
        jv f = jv_get_kind(finfo) == JV_KIND_ARRAY ? jv_array_get(jv_copy(finfo), i) : jv_invalid();
        if (jv_get_kind(f) != JV_KIND_OBJECT) {
            jv_free(f);
            f = jv_object();
        }
        jv fut = cl_json_set(f, "messages", forward_part(sess, &head));
        jv scores = jv_object();
        if (jv_get_kind(rewards) == JV_KIND_OBJECT) {
            jv_object_foreach(rewards, k, col) {
                if (rc == 0 && (jv_get_kind(col) != JV_KIND_ARRAY || jv_array_length(jv_copy(col)) != nf))
                    rc = cl_err_set(e, CL_EXIT_DATAERR, "rewards.%s: not an array of %d values",
                                    jv_string_value(k), nf);
                jv v = jv_get_kind(col) == JV_KIND_ARRAY ? jv_array_get(jv_copy(col), i) : jv_invalid();
                if (jv_get_kind(v) != JV_KIND_NUMBER)
                    jv_free(v);
                else if (!strcmp(jv_string_value(k), "MR"))
                    fut = cl_json_set(fut, "R", v);
                else
                    scores = jv_object_set(scores, jv_copy(k), v);
                jv_free(k);
                jv_free(col);
            }
        }
        if (jv_object_length(jv_copy(scores)) > 0)
            fut = cl_json_set(fut, "scores", scores);
        else
            jv_free(scores);
        futures = jv_array_append(futures, fut);
    }
    jv_free(head);
    jv_free(sessions);
    jv_free(rewards);
    jv_free(finfo);
    jv_free(row);
    if (rc < 0) {
        jv_free(futures);
        jv_free(c);
        jv_free(s);
        return -1;
    }
    c = cl_json_set(c, "futures", futures);
    *branch = cl_json_set(s, "candidates", jv_array_append(jv_array(), c));
    return 0;
}

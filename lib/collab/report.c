#include "collab/report.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/json.h"
#include "collab/judge.h"

enum { M_METRIC, M_TOKENS, M_ITR, NMEASURES };
static const char *const measure_keys[NMEASURES] = {"metric", "tokens", "itr"};

typedef struct entry {
    int run, task;
    char *id;
    jv scores;          /* the record's scores object (or null) */
    int ambiguous;      /* Abg-CoQA class: 1, 0, or -1 unknown */
} entry;

struct cl_report {
    cl_report_config cfg;
    char **runs, **tasks;
    int nruns, ntasks;
    entry *e;
    int n, cap;
    jv failed_list;     /* [{run, task}] of records with "error" */
    const char *scale;  /* interactivity scale seen so far, or NULL */
    char *counter;      /* token counter seen so far (metric_info.tokens.method), or NULL */
};

cl_report *cl_report_new(const cl_report_config *cfg, cl_err *e)
{
    cl_report *r = calloc(1, sizeof *r);
    if (!r) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    if (r->cfg.bootstrap <= 0)
        r->cfg.bootstrap = 2000;
    r->failed_list = jv_array();
    return r;
}

void cl_report_free(cl_report *r)
{
    if (!r)
        return;
    free(r->counter);
    for (int i = 0; i < r->nruns; i++)
        free(r->runs[i]);
    for (int i = 0; i < r->ntasks; i++)
        free(r->tasks[i]);
    for (int i = 0; i < r->n; i++) {
        free(r->e[i].id);
        jv_free(r->e[i].scores);
    }
    free(r->runs);
    free(r->tasks);
    free(r->e);
    jv_free(r->failed_list);
    free(r);
}

/* Index of name in *list, appended when new. */
static int intern(char ***list, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp((*list)[i], name) == 0)
            return i;
    char **l = realloc(*list, (size_t)(*n + 1) * sizeof *l);
    if (!l)
        abort();
    *list = l;
    l[*n] = strdup(name);
    if (!l[*n])
        abort();
    return (*n)++;
}

/* The last k components of path's directory, or "" when it has fewer; its stem when k = 0. */
static void path_part(const char *path, int k, char *buf, size_t n)
{
    if (strcmp(path, "-") == 0)
        path = "stdin";
    const char *base = strrchr(path, '/');
    if (k == 0) {
        snprintf(buf, n, "%s", base ? base + 1 : path);
        char *dot = strchr(buf, '.');
        if (dot && dot != buf)
            *dot = 0;
        return;
    }
    const char *end = base, *start = end;
    for (int i = 0; i < k; i++) {
        if (!start || start == path) {
            buf[0] = 0; /* too few directories */
            return;
        }
        start--;
        while (start > path && start[-1] != '/')
            start--;
    }
    snprintf(buf, n, "%.*s", (int)(end - start), start);
}

int cl_report_run_names(const char *const *paths, int n, const char **names, char **owned, cl_err *e)
{
    char a[4096], b[4096];
    for (int i = 0; i < n; i++) {
        owned[i] = NULL;
        if (names[i])
            continue;
        for (int j = 0; j < i; j++)
            if (!names[j] && strcmp(paths[i], paths[j]) == 0) {
                for (int k = 0; k < i; k++)
                    free(owned[k]);
                return cl_err_set(e, CL_EXIT_USAGE, "%s: given twice; its records would count twice in one run "
                                  "(give each a --label to compare them)", paths[i]);
            }
        path_part(paths[i], 0, a, sizeof a);
        int clash = 0;
        for (int j = 0; j < n; j++) {
            if (j == i || strcmp(paths[i], paths[j]) == 0)
                continue;
            if (names[j] ? strcmp(names[j], a) == 0 : (path_part(paths[j], 0, b, sizeof b), strcmp(a, b) == 0))
                clash = 1;
        }
        /* the fewest parent directories that no other file of the same name shares */
        for (int k = 1; clash && k < 64; k++) {
            path_part(paths[i], k, a, sizeof a);
            if (!a[0])
                break;
            clash = 0;
            for (int j = 0; j < n && !clash; j++) {
                if (j == i || strcmp(paths[i], paths[j]) == 0)
                    continue;
                path_part(paths[j], k, b, sizeof b);
                clash = strcmp(a, b) == 0 || (names[j] && strcmp(names[j], a) == 0);
            }
        }
        if (clash || !a[0]) {
            for (int j = 0; j < i; j++)
                free(owned[j]);
            return cl_err_set(e, CL_EXIT_USAGE, "%s: its run name cannot be told apart from another file's by "
                              "its path; give each file its name with --label (or use --label-field)", paths[i]);
        }
        if (!(owned[i] = strdup(a))) {
            for (int j = 0; j < i; j++)
                free(owned[j]);
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        }
    }
    for (int i = 0; i < n; i++)
        if (owned[i])
            names[i] = owned[i];
    return 0;
}

/* The counter behind scores.tokens (cl-reward's metric_info.tokens.method): one per report,
 * since cl100k tokens and words differ by about a factor of two. */
static int token_counter(cl_report *r, const jv *rec, cl_err *e)
{
    jv info = cl_json_get(rec, "metric_info");
    jv tok = jv_get_kind(info) == JV_KIND_OBJECT ? cl_json_get(&info, "tokens") : jv_null();
    const char *m = jv_get_kind(tok) == JV_KIND_OBJECT ? cl_json_str(&tok, "method") : NULL;
    int rc = 0;
    if (m && r->counter && strcmp(m, r->counter) != 0)
        rc = cl_err_set(e, CL_EXIT_DATAERR,
                        "tokens counted by '%s' after records counted by '%s': the counts are not "
                        "comparable and are never mixed in one report", m, r->counter);
    else if (m && !r->counter && !(r->counter = strdup(m)))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    jv_free(tok);
    jv_free(info);
    return rc;
}

int cl_report_add(cl_report *r, const char *label, const jv *rec, cl_err *e)
{
    const char *task = cl_json_str(rec, "task");
    int run = intern(&r->runs, &r->nruns, label);
    int t = intern(&r->tasks, &r->ntasks, task ? task : "all");
    if (cl_json_has(rec, "error")) {
        r->failed_list = jv_array_append(r->failed_list, JV_ARRAY(jv_number(run), jv_number(t)));
        return 0;
    }
    jv judge = cl_json_get(rec, "judge");
    jv itr = jv_get_kind(judge) == JV_KIND_OBJECT ? cl_json_get(&judge, "interactivity") : jv_null();
    const char *scale = jv_get_kind(itr) == JV_KIND_OBJECT ? cl_json_str(&itr, "scale") : NULL;
    scale = scale ? cl_itr_scale_known(scale) : NULL;
    int rc = 0;
    if (scale && r->scale && strcmp(scale, r->scale) != 0)
        rc = cl_err_set(e, CL_EXIT_DATAERR,
                        "interactivity on the '%s' scale after records on the '%s' scale: the two "
                        "scales are not comparable and are never mixed in one report", scale, r->scale);
    else if (scale && !r->scale)
        r->scale = cl_itr_scale_known(scale);
    jv_free(itr);
    jv_free(judge);
    if (rc < 0)
        return rc;
    if (token_counter(r, rec, e) != 0)
        return -1;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        entry *ne = realloc(r->e, (size_t)r->cap * sizeof *ne);
        if (!ne)
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        r->e = ne;
    }
    const char *id = cl_json_str(rec, "id");
    char buf[32];
    if (!id) {
        snprintf(buf, sizeof buf, "#%d", r->n); /* unpaired: an id no other run has */
        id = buf;
    }
    jv scores = cl_json_get(rec, "scores");
    if (jv_get_kind(scores) != JV_KIND_OBJECT) {
        jv_free(scores);
        scores = jv_null();
    }
    r->e[r->n++] = (entry){run, t, strdup(id), scores, cl_judge_item_ambiguity(rec)};
    return 0;
}

/* ---- statistics ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Order statistic at fraction p of sorted v[0..n), interpolating linearly (numpy's default). */
static double quantile(const double *v, int n, double p)
{
    double h = (n - 1) * p;
    int i = (int)floor(h);
    if (i >= n - 1)
        return v[n - 1];
    return v[i] + (h - i) * (v[i + 1] - v[i]);
}

void cl_bootstrap_mean_ci(const double *x, int n, int B, uint64_t seed, double level, double *lo, double *hi)
{
    double *means = malloc((size_t)B * sizeof *means);
    if (!means)
        abort();
    uint64_t s = seed;
    for (int b = 0; b < B; b++) {
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += x[(int)((double)(splitmix64(&s) >> 11) * 0x1.0p-53 * n)];
        means[b] = sum / n;
    }
    qsort(means, (size_t)B, sizeof *means, cmp_double);
    *lo = quantile(means, B, (1 - level) / 2);
    *hi = quantile(means, B, 1 - (1 - level) / 2);
    free(means);
}

/* The bootstrap seed of one interval: the run's --seed mixed with the interval's name, so an
 * interval does not change when other runs or tasks are added. */
static uint64_t interval_seed(const cl_report *r, const char *name)
{
    return cl_hash64(name, strlen(name), r->cfg.seed);
}

static jv mean_ci(const cl_report *r, const double *x, int n, const char *name)
{
    jv o = cl_json_set_num(jv_object(), "n", n);
    if (n == 0)
        return o;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += x[i];
    double lo, hi;
    cl_bootstrap_mean_ci(x, n, r->cfg.bootstrap, interval_seed(r, name), 0.95, &lo, &hi);
    o = cl_json_set_num(o, "mean", sum / n);
    o = cl_json_set_num(o, "lo", lo);
    return cl_json_set_num(o, "hi", hi);
}

/* ---- which values ----------------------------------------------------------------------- */

/* The task metric for task: from --metric, the built-in table, or the first of the usual
 * metrics that a record of the task has. */
static char *task_metric(const cl_report *r, int t)
{
    const char *task = r->tasks[t];
    if (r->cfg.metrics) {
        /* The first TASK=NAME for this task wins; otherwise the last bare NAME. */
        char *spec = strdup(r->cfg.metrics), *save = NULL;
        const char *pick = NULL;
        for (char *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(tok, '=');
            if (!eq) {
                pick = tok;
                continue;
            }
            *eq = 0;
            if (strcmp(tok, task) == 0) {
                pick = eq + 1;
                break;
            }
        }
        char *metric = pick ? strdup(pick) : NULL;
        free(spec);
        if (metric)
            return metric;
    }
    static const char *const table[][2] = {
        {"document", "bleu"}, {"code", "pass_rate"}, {"math", "accuracy"}, {"qa", "clarify_or_answer"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i][0], task) == 0)
            return strdup(table[i][1]);
    static const char *const usual[] = {"accuracy", "pass_rate", "bleu", "clarify_or_answer"};
    for (int i = 0; i < r->n; i++) {
        if (r->e[i].task != t)
            continue;
        for (size_t k = 0; k < sizeof usual / sizeof usual[0]; k++)
            if (cl_json_kind(&r->e[i].scores, usual[k]) == JV_KIND_NUMBER)
                return strdup(usual[k]);
    }
    return strdup("accuracy");
}

/* The value of measure m in entry en, in the report's unit (x100, thousands); NAN if absent. */
static double value(const entry *en, int m, const char *metric)
{
    if (jv_get_kind(en->scores) != JV_KIND_OBJECT)
        return NAN;
    const char *key = m == M_METRIC ? metric : m == M_TOKENS ? "tokens" : "interactivity";
    if (cl_json_kind(&en->scores, key) != JV_KIND_NUMBER)
        return NAN;
    double x = cl_json_num(&en->scores, key, NAN);
    return m == M_TOKENS ? x / 1000 : 100 * x;
}

/* Per-item means of measure m for run/task in order of first appearance: ids[k], v[k]. */
static int item_means(const cl_report *r, int run, int t, int m, const char *metric, char ***ids, double **v)
{
    int n = 0;
    int *cnt = malloc((size_t)(r->n + 1) * sizeof *cnt);
    *ids = malloc((size_t)(r->n + 1) * sizeof **ids);
    *v = malloc((size_t)(r->n + 1) * sizeof **v);
    if (!cnt || !*ids || !*v)
        abort();
    for (int i = 0; i < r->n; i++) {
        const entry *en = &r->e[i];
        double x = en->run == run && en->task == t ? value(en, m, metric) : NAN;
        if (isnan(x))
            continue;
        int k = 0;
        while (k < n && strcmp((*ids)[k], en->id) != 0)
            k++;
        if (k == n) {
            (*ids)[n] = en->id;
            (*v)[n] = 0;
            cnt[n++] = 0;
        }
        (*v)[k] += x;
        cnt[k]++;
    }
    for (int k = 0; k < n; k++)
        (*v)[k] /= cnt[k];
    free(cnt);
    return n;
}

static jv run_measures(const cl_report *r, int run, int t, const char *metric)
{
    jv ms = jv_object();
    for (int m = 0; m < NMEASURES; m++) {
        double *x = malloc((size_t)(r->n + 1) * sizeof *x);
        if (!x)
            abort();
        int n = 0;
        for (int i = 0; i < r->n; i++) {
            const entry *en = &r->e[i];
            double y = en->run == run && en->task == t ? value(en, m, metric) : NAN;
            if (!isnan(y))
                x[n++] = y;
        }
        char name[512];
        snprintf(name, sizeof name, "%s\x1f%s\x1f%s", r->tasks[t], r->runs[run], measure_keys[m]);
        ms = cl_json_set(ms, measure_keys[m], mean_ci(r, x, n, name));
        free(x);
    }
    return ms;
}

/* Run against baseline on task t: relative improvement of the means (a reduction for
 * tokens, so that positive is better everywhere, as in the paper) and the paired difference
 * run - baseline over the items both have, with its interval. */
static jv comparison(const cl_report *r, const jv *runs_out, int run, int base, int t, const char *metric)
{
    jv ms = jv_object();
    int paired_items = 0;
    for (int m = 0; m < NMEASURES; m++) {
        jv o = jv_object();
        jv a = jv_getpath(jv_copy(*runs_out), JV_ARRAY(jv_number(run), jv_string("measures"), jv_string(measure_keys[m]), jv_string("mean")));
        jv b = jv_getpath(jv_copy(*runs_out), JV_ARRAY(jv_number(base), jv_string("measures"), jv_string(measure_keys[m]), jv_string("mean")));
        if (jv_get_kind(a) == JV_KIND_NUMBER && jv_get_kind(b) == JV_KIND_NUMBER && jv_number_value(b) != 0) {
            double x = jv_number_value(a), y = jv_number_value(b);
            double rel = m == M_TOKENS ? (y - x) / fabs(y) : (x - y) / fabs(y);
            o = cl_json_set_num(o, "rel_improvement", 100 * rel);
        }
        jv_free(a);
        jv_free(b);
        char **ia, **ib;
        double *va, *vb;
        int na = item_means(r, run, t, m, metric, &ia, &va);
        int nb = item_means(r, base, t, m, metric, &ib, &vb);
        double *d = malloc((size_t)(na + 1) * sizeof *d);
        if (!d)
            abort();
        int nd = 0;
        for (int i = 0; i < na; i++)
            for (int k = 0; k < nb; k++)
                if (strcmp(ia[i], ib[k]) == 0) {
                    d[nd++] = va[i] - vb[k];
                    break;
                }
        char name[512];
        snprintf(name, sizeof name, "%s\x1f%s\x1f%s\x1f%s\x1fpaired", r->tasks[t], r->runs[run], r->runs[base],
                 measure_keys[m]);
        jv diff = mean_ci(r, d, nd, name);
        o = cl_json_set(o, "paired", diff);
        if (nd > paired_items)
            paired_items = nd;
        free(d);
        free(ia);
        free(ib);
        free(va);
        free(vb);
        ms = cl_json_set(ms, measure_keys[m], o);
    }
    jv c = cl_json_set_str(jv_object(), "run", r->runs[run]);
    c = cl_json_set_str(c, "baseline", r->runs[base]);
    c = cl_json_set_num(c, "paired_items", paired_items);
    return cl_json_set(c, "measures", ms);
}

/* Abg-CoQA's Table 2 for one run: accuracy on ambiguous and on clear items, their mean (macro
 * accuracy) and the macro F1 of "asks" vs "answers", all x100.  With several judgements per
 * item the counts are soft: an item adds its score (the share of samples that acted right). */
static jv abg_classes(const cl_report *r, int run, int t)
{
    double right[2] = {0, 0};
    int n[2] = {0, 0};
    for (int i = 0; i < r->n; i++) {
        const entry *en = &r->e[i];
        if (en->run != run || en->task != t || en->ambiguous < 0 ||
            cl_json_kind(&en->scores, "clarify_or_answer") != JV_KIND_NUMBER)
            continue;
        right[en->ambiguous] += cl_json_num(&en->scores, "clarify_or_answer", 0);
        n[en->ambiguous]++;
    }
    jv o = jv_object();
    static const char *const names[2] = {"non_ambiguous", "ambiguous"};
    for (int c = 0; c < 2; c++) {
        jv k = cl_json_set_num(jv_object(), "n", n[c]);
        if (n[c])
            k = cl_json_set_num(k, "acc", 100 * right[c] / n[c]);
        o = cl_json_set(o, names[c], k);
    }
    if (n[0] && n[1]) {
        double tp = right[1], fn = n[1] - right[1], tn = right[0], fp = n[0] - right[0];
        double f1_ask = 2 * tp + fp + fn > 0 ? 2 * tp / (2 * tp + fp + fn) : 0;
        double f1_answer = 2 * tn + fn + fp > 0 ? 2 * tn / (2 * tn + fn + fp) : 0;
        o = cl_json_set_num(o, "macro_acc", 100 * (right[1] / n[1] + right[0] / n[0]) / 2);
        o = cl_json_set_num(o, "macro_f1", 100 * (f1_ask + f1_answer) / 2);
    }
    return o;
}

jv cl_report_compute(cl_report *r, cl_err *e)
{
    if (r->nruns == 0) {
        cl_err_set(e, CL_EXIT_DATAERR, "no records to report on");
        return jv_invalid();
    }
    int base = -1;
    if (r->cfg.baseline) {
        for (int i = 0; i < r->nruns; i++)
            if (strcmp(r->runs[i], r->cfg.baseline) == 0)
                base = i;
        if (base < 0) {
            cl_err_set(e, CL_EXIT_DATAERR, "--baseline '%s' names no run (runs: %s%s)", r->cfg.baseline,
                       r->runs[0], r->nruns > 1 ? ", ..." : "");
            return jv_invalid();
        }
    }
    jv rep = cl_json_set_num(jv_object(), "confidence", 0.95);
    rep = cl_json_set_num(rep, "bootstrap", r->cfg.bootstrap);
    rep = cl_json_set_num(rep, "seed", (double)r->cfg.seed);
    rep = cl_json_set_str(rep, "itr_scale", r->scale ? r->scale : "unknown");
    rep = cl_json_set_str(rep, "token_counter", r->counter ? r->counter : "unknown");
    rep = cl_json_set(rep, "baseline", base >= 0 ? jv_string(r->runs[base]) : jv_null());
    jv runs_all = jv_array();
    for (int i = 0; i < r->nruns; i++)
        runs_all = jv_array_append(runs_all, jv_string(r->runs[i]));
    rep = cl_json_set(rep, "runs", runs_all);
    jv tasks = jv_array();
    for (int t = 0; t < r->ntasks; t++) {
        char *metric = task_metric(r, t);
        jv runs = jv_array();
        for (int run = 0; run < r->nruns; run++) {
            int nrec = 0, nfail = 0;
            for (int i = 0; i < r->n; i++)
                nrec += r->e[i].run == run && r->e[i].task == t;
            jv_array_foreach(r->failed_list, i, f) {
                (void)i;
                nfail += (int)jv_number_value(jv_array_get(jv_copy(f), 0)) == run &&
                         (int)jv_number_value(jv_array_get(jv_copy(f), 1)) == t;
                jv_free(f);
            }
            jv o = cl_json_set_str(jv_object(), "run", r->runs[run]);
            o = cl_json_set_num(o, "records", nrec);
            o = cl_json_set_num(o, "failed", nfail);
            o = cl_json_set(o, "measures", run_measures(r, run, t, metric));
            if (strcmp(metric, "clarify_or_answer") == 0)
                o = cl_json_set(o, "abg", abg_classes(r, run, t));
            runs = jv_array_append(runs, o);
        }
        jv cmp = jv_array();
        for (int run = 0; base >= 0 && run < r->nruns; run++)
            if (run != base)
                cmp = jv_array_append(cmp, comparison(r, &runs, run, base, t, metric));
        jv to = cl_json_set_str(jv_object(), "task", r->tasks[t]);
        to = cl_json_set_str(to, "metric", metric);
        to = cl_json_set(to, "runs", runs);
        to = cl_json_set(to, "comparisons", cmp);
        tasks = jv_array_append(tasks, to);
        free(metric);
    }
    return cl_json_set(rep, "tasks", tasks);
}

/* ---- renderings ------------------------------------------------------------------------- */

/* The paper's column names for the usual metrics. */
static const char *metric_label(const char *metric)
{
    static const char *const names[][2] = {
        {"bleu", "BLEU"}, {"pass_rate", "PR"}, {"accuracy", "ACC"}, {"clarify_or_answer", "ACC"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i][0], metric) == 0)
            return names[i][1];
    return metric;
}

static const char *column_label(const char *metric, int m)
{
    return m == M_METRIC ? metric_label(metric) : m == M_TOKENS ? "Tok(k)" : "ITR";
}

static double num_at(const jv *o, jv path)
{
    jv v = jv_getpath(jv_copy(*o), path);
    double x = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : NAN;
    jv_free(v);
    return x;
}

/* Decimals for a cell: the measure's usual ones (tokens in thousands 2, the rest 1), more
 * when the value is small, so that at least two significant digits show: 0.005 against 0.012
 * thousand tokens must not both print as "0.01" beside their relative change. */
static int decimals(int m, double v)
{
    int d = m == M_TOKENS ? 2 : 1;
    v = fabs(v);
    if (v > 0 && isfinite(v)) {
        int need = 1 - (int)floor(log10(v));
        if (need > d)
            d = need < 6 ? need : 6;
    }
    return d;
}

/* "mean [lo, hi]" or "-" */
static void cell_ci(char *buf, size_t n, const jv *stat, int m)
{
    double mean = num_at(stat, JV_ARRAY(jv_string("mean"))), lo = num_at(stat, JV_ARRAY(jv_string("lo"))),
           hi = num_at(stat, JV_ARRAY(jv_string("hi")));
    if (isnan(mean)) {
        snprintf(buf, n, "-");
        return;
    }
    int d = decimals(m, mean != 0 ? mean : fmax(fabs(lo), fabs(hi)));
    snprintf(buf, n, "%.*f [%.*f, %.*f]", d, mean, d, lo, d, hi);
}

typedef struct grid {
    char **cell;
    int rows, cols, cap;
} grid;

static void grid_add(grid *g, const char *s)
{
    if (g->rows * g->cols >= g->cap) {
        g->cap = g->cap ? g->cap * 2 : 64;
        g->cell = realloc(g->cell, (size_t)g->cap * sizeof *g->cell);
        if (!g->cell)
            abort();
    }
    g->cell[g->rows * g->cols] = strdup(s);
    g->rows++;
}

/* A grid of strings: a header row, a row per run, then per compared run a row of relative
 * improvements and a row of paired differences. */
static grid build_grid(const jv *rep)
{
    jv tasks = cl_json_get(rep, "tasks");
    jv runs = cl_json_get(rep, "runs");
    int nt = jv_array_length(jv_copy(tasks)), nr = jv_array_length(jv_copy(runs));
    const char *base = cl_json_str(rep, "baseline");
    char buf[256];
    int ncols = 1 + 4 * nt;
    /* cells are appended row-major with cols 1, so rows counts cells until the end */
    grid flat = {.cols = 1};
#define ADD(s) grid_add(&flat, (s))
    ADD("Run");
    for (int t = 0; t < nt; t++) {
        jv to = jv_array_get(jv_copy(tasks), t);
        const char *task = cl_json_str(&to, "task"), *metric = cl_json_str(&to, "metric");
        snprintf(buf, sizeof buf, "%s n", task);
        ADD(buf);
        for (int m = 0; m < NMEASURES; m++) {
            snprintf(buf, sizeof buf, "%s %s", task, column_label(metric, m));
            ADD(buf);
        }
        jv_free(to);
    }
    for (int run = 0; run < nr; run++) {
        jv name = jv_array_get(jv_copy(runs), run);
        ADD(jv_string_value(name));
        for (int t = 0; t < nt; t++) {
            jv ro = jv_getpath(jv_copy(tasks), JV_ARRAY(jv_number(t), jv_string("runs"), jv_number(run)));
            double nrec = num_at(&ro, JV_ARRAY(jv_string("records"))), nfail = num_at(&ro, JV_ARRAY(jv_string("failed")));
            if (nfail > 0)
                snprintf(buf, sizeof buf, "%.0f (%.0f failed)", nrec, nfail);
            else
                snprintf(buf, sizeof buf, "%.0f", nrec);
            ADD(buf);
            for (int m = 0; m < NMEASURES; m++) {
                jv st = jv_getpath(jv_copy(ro), JV_ARRAY(jv_string("measures"), jv_string(measure_keys[m])));
                cell_ci(buf, sizeof buf, &st, m);
                ADD(buf);
                jv_free(st);
            }
            jv_free(ro);
        }
        jv_free(name);
    }
    for (int run = 0; base && run < nr; run++) {
        jv name = jv_array_get(jv_copy(runs), run);
        if (strcmp(jv_string_value(name), base) == 0) {
            jv_free(name);
            continue;
        }
        for (int kind = 0; kind < 2; kind++) {
            snprintf(buf, sizeof buf, kind == 0 ? "Rel. improv. %s vs %s" : "Paired diff %s - %s",
                     jv_string_value(name), base);
            ADD(buf);
            for (int t = 0; t < nt; t++) {
                jv cmps = jv_getpath(jv_copy(tasks), JV_ARRAY(jv_number(t), jv_string("comparisons")));
                jv co = jv_null();
                jv_array_foreach(cmps, i, c) {
                    (void)i;
                    const char *rn = cl_json_str(&c, "run");
                    if (rn && strcmp(rn, jv_string_value(name)) == 0) {
                        jv_free(co);
                        co = c;
                    } else {
                        jv_free(c);
                    }
                }
                jv_free(cmps);
                if (kind == 0)
                    ADD("");
                else {
                    snprintf(buf, sizeof buf, "%.0f", num_at(&co, JV_ARRAY(jv_string("paired_items"))));
                    ADD(buf);
                }
                for (int m = 0; m < NMEASURES; m++) {
                    jv st = jv_getpath(jv_copy(co), JV_ARRAY(jv_string("measures"), jv_string(measure_keys[m])));
                    if (kind == 0) {
                        double rel = num_at(&st, JV_ARRAY(jv_string("rel_improvement")));
                        if (isnan(rel))
                            snprintf(buf, sizeof buf, "-");
                        else
                            snprintf(buf, sizeof buf, "%+.1f%%", rel);
                    } else {
                        jv p = cl_json_get(&st, "paired");
                        cell_ci(buf, sizeof buf, &p, m);
                        jv_free(p);
                    }
                    ADD(buf);
                    jv_free(st);
                }
                jv_free(co);
            }
        }
        jv_free(name);
    }
#undef ADD
    jv_free(tasks);
    jv_free(runs);
    flat.cols = ncols;
    flat.rows /= ncols;
    return flat;
}

/* Abg-CoQA's Table 2 for the tasks that have it: a row per task and run. */
static grid build_abg_grid(const jv *rep)
{
    grid g = {.cols = 1};
    static const char *const head[] = {"Abg-CoQA run", "Task", "Ambiguous acc", "Non-ambiguous acc", "Macro acc",
                                       "Macro F1"};
    char buf[128];
    int rows = 0;
    jv tasks = cl_json_get(rep, "tasks");
    jv_array_foreach(tasks, t, to) {
        (void)t;
        jv runs = cl_json_get(&to, "runs");
        jv_array_foreach(runs, i, ro) {
            (void)i;
            if (cl_json_has(&ro, "abg")) {
                if (rows++ == 0)
                    for (size_t h = 0; h < sizeof head / sizeof head[0]; h++)
                        grid_add(&g, head[h]);
                jv abg = cl_json_get(&ro, "abg");
                grid_add(&g, cl_json_str(&ro, "run"));
                grid_add(&g, cl_json_str(&to, "task"));
                static const char *const cls[] = {"ambiguous", "non_ambiguous"};
                for (int c = 0; c < 2; c++) {
                    jv k = cl_json_get(&abg, cls[c]);
                    double acc = cl_json_num(&k, "acc", NAN);
                    if (isnan(acc))
                        snprintf(buf, sizeof buf, "- (n 0)");
                    else
                        snprintf(buf, sizeof buf, "%.1f (n %.0f)", acc, cl_json_num(&k, "n", 0));
                    grid_add(&g, buf);
                    jv_free(k);
                }
                static const char *const macro[] = {"macro_acc", "macro_f1"};
                for (int m = 0; m < 2; m++) {
                    double x = cl_json_num(&abg, macro[m], NAN);
                    if (isnan(x))
                        snprintf(buf, sizeof buf, "-");
                    else
                        snprintf(buf, sizeof buf, "%.1f", x);
                    grid_add(&g, buf);
                }
                jv_free(abg);
            }
            jv_free(ro);
        }
        jv_free(runs);
        jv_free(to);
    }
    jv_free(tasks);
    g.cols = 6;
    g.rows /= 6;
    return g;
}

static void grid_free(grid *g)
{
    for (int i = 0; i < g->rows * g->cols; i++)
        free(g->cell[i]);
    free(g->cell);
}

/* Display width of a UTF-8 string, counting code points. */
static int width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void write_grid(const grid *g, int markdown, FILE *out)
{
    int *w = calloc((size_t)g->cols, sizeof *w);
    if (!w)
        abort();
    for (int r = 0; r < g->rows; r++)
        for (int c = 0; c < g->cols; c++)
            if (width(g->cell[r * g->cols + c]) > w[c])
                w[c] = width(g->cell[r * g->cols + c]);
    for (int r = 0; r < g->rows; r++) {
        for (int c = 0; c < g->cols; c++) {
            const char *s = g->cell[r * g->cols + c];
            int pad = w[c] - width(s);
            if (markdown)
                fprintf(out, "| %s%*s ", s, pad, "");
            else if (c == 0)
                fprintf(out, "%s%*s", s, pad, "");
            else
                fprintf(out, "  %*s%s", pad, "", s); /* numbers right-aligned */
        }
        fputs(markdown ? "|\n" : "\n", out);
        if (markdown && r == 0) {
            for (int c = 0; c < g->cols; c++) {
                fputc('|', out);
                for (int i = 0; i < w[c] + 2; i++)
                    fputc(c > 0 && i == w[c] + 1 ? ':' : '-', out); /* numbers right-aligned */
            }
            fputs("|\n", out);
        }
    }
    free(w);
}

static void tsv_num(FILE *out, double x)
{
    if (isnan(x))
        fputs("\t", out);
    else
        fprintf(out, "\t%.6g", x);
}

static void write_tsv(const jv *rep, FILE *out)
{
    fputs("task\tmetric\trun\tmeasure\tn\tmean\tci_lo\tci_hi\tbaseline\trel_improvement_pct\tpaired_n\t"
          "paired_diff\tpaired_lo\tpaired_hi\n", out);
    jv tasks = cl_json_get(rep, "tasks");
    const char *base = cl_json_str(rep, "baseline");
    jv_array_foreach(tasks, t, to) {
        (void)t;
        jv runs = cl_json_get(&to, "runs"), cmps = cl_json_get(&to, "comparisons");
        jv_array_foreach(runs, i, ro) {
            (void)i;
            const char *run = cl_json_str(&ro, "run");
            jv co = jv_null();
            jv_array_foreach(cmps, k, c) {
                (void)k;
                if (strcmp(cl_json_str(&c, "run"), run) == 0) {
                    jv_free(co);
                    co = c;
                } else {
                    jv_free(c);
                }
            }
            for (int m = 0; m < NMEASURES; m++) {
                jv st = jv_getpath(jv_copy(ro), JV_ARRAY(jv_string("measures"), jv_string(measure_keys[m])));
                fprintf(out, "%s\t%s\t%s\t%s\t%.0f", cl_json_str(&to, "task"), cl_json_str(&to, "metric"), run,
                        measure_keys[m], num_at(&st, JV_ARRAY(jv_string("n"))));
                tsv_num(out, num_at(&st, JV_ARRAY(jv_string("mean"))));
                tsv_num(out, num_at(&st, JV_ARRAY(jv_string("lo"))));
                tsv_num(out, num_at(&st, JV_ARRAY(jv_string("hi"))));
                int cmp = jv_get_kind(co) == JV_KIND_OBJECT;
                fprintf(out, "\t%s", cmp ? base : "");
                jv cm = jv_getpath(jv_copy(co), JV_ARRAY(jv_string("measures"), jv_string(measure_keys[m])));
                tsv_num(out, num_at(&cm, JV_ARRAY(jv_string("rel_improvement"))));
                tsv_num(out, num_at(&cm, JV_ARRAY(jv_string("paired"), jv_string("n"))));
                tsv_num(out, num_at(&cm, JV_ARRAY(jv_string("paired"), jv_string("mean"))));
                tsv_num(out, num_at(&cm, JV_ARRAY(jv_string("paired"), jv_string("lo"))));
                tsv_num(out, num_at(&cm, JV_ARRAY(jv_string("paired"), jv_string("hi"))));
                fputc('\n', out);
                jv_free(cm);
                jv_free(st);
            }
            jv abg = cl_json_get(&ro, "abg");
            static const char *const rows[][2] = {{"ambiguous_acc", "ambiguous"}, {"non_ambiguous_acc", "non_ambiguous"},
                                                  {"macro_acc", NULL}, {"macro_f1", NULL}};
            for (size_t k = 0; jv_get_kind(abg) == JV_KIND_OBJECT && k < sizeof rows / sizeof rows[0]; k++) {
                double n = rows[k][1] ? num_at(&abg, JV_ARRAY(jv_string(rows[k][1]), jv_string("n")))
                                      : num_at(&abg, JV_ARRAY(jv_string("ambiguous"), jv_string("n"))) +
                                            num_at(&abg, JV_ARRAY(jv_string("non_ambiguous"), jv_string("n")));
                double x = rows[k][1] ? num_at(&abg, JV_ARRAY(jv_string(rows[k][1]), jv_string("acc")))
                                      : num_at(&abg, JV_ARRAY(jv_string(rows[k][0])));
                fprintf(out, "%s\t%s\t%s\t%s\t%.0f", cl_json_str(&to, "task"), cl_json_str(&to, "metric"), run,
                        rows[k][0], n);
                tsv_num(out, x);
                fputs("\t\t\t\t\t\t\t\t\n", out);
            }
            jv_free(abg);
            jv_free(co);
            jv_free(ro);
        }
        jv_free(runs);
        jv_free(cmps);
        jv_free(to);
    }
    jv_free(tasks);
}

int cl_report_write(const jv *rep, const char *format, FILE *out, cl_err *e)
{
    if (strcmp(format, "json") == 0) {
        char *s = cl_json_dump(rep, NULL);
        fprintf(out, "%s\n", s);
        free(s);
    } else if (strcmp(format, "tsv") == 0) {
        write_tsv(rep, out);
    } else if (strcmp(format, "table") == 0 || strcmp(format, "markdown") == 0) {
        int md = format[0] == 'm';
        grid g = build_grid(rep);
        if (!md)
            fprintf(out, "95%% bootstrap intervals (%.0f resamples, seed %.0f); metric and ITR x100, "
                    "tokens (%s) in thousands; ITR scale: %s\n", cl_json_num(rep, "bootstrap", 0),
                    cl_json_num(rep, "seed", 0), cl_json_str(rep, "token_counter"),
                    cl_json_str(rep, "itr_scale"));
        write_grid(&g, md, out);
        grid_free(&g);
        grid a = build_abg_grid(rep);
        if (a.rows > 0) {
            fputc('\n', out);
            write_grid(&a, md, out);
        }
        grid_free(&a);
    } else {
        return cl_err_set(e, CL_EXIT_USAGE, "--format: '%s' is not table, markdown, tsv or json", format);
    }
    if (fflush(out) != 0 || ferror(out))
        return cl_err_set(e, CL_EXIT_IOERR, "cannot write the report");
    return 0;
}

/* ---- chart ------------------------------------------------------------------------------ */

/* s as a gnuplot double-quoted string. */
static void gp_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
    fputc('"', f);
}

static void gp_num(FILE *f, double x)
{
    if (isnan(x))
        fputs(" NaN", f);
    else
        fprintf(f, " %.6g", x);
}

int cl_report_plot(const jv *rep, const char *png, cl_err *e)
{
    jv tasks = cl_json_get(rep, "tasks");
    int nt = jv_array_length(jv_copy(tasks));
    /* gnuplot's own complaints go to our stderr; a gnuplot that dies early must not kill us
     * with SIGPIPE. */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    FILE *gp = popen("exec gnuplot", "w");
    if (!gp) {
        signal(SIGPIPE, old);
        jv_free(tasks);
        return cl_err_set(e, CL_EXIT_UNAVAILABLE, "--plot: cannot run gnuplot");
    }
    fprintf(gp, "set terminal pngcairo size %d,%d font ',9'\nset output ", 1200, 60 + 300 * nt);
    gp_string(gp, png);
    fprintf(gp, "\nset multiplot layout %d,3 title ", nt);
    char title[256];
    snprintf(title, sizeof title, "mean and 95%% bootstrap CI per run (ITR scale: %s)", cl_json_str(rep, "itr_scale"));
    gp_string(gp, title);
    fputs("\nset style data histogram\nset style histogram errorbars gap 1 lw 1\n"
          "set style fill solid 0.6 border -1\nset boxwidth 0.8\nset key off\nset grid ytics\n"
          "set xtics rotate by -20 nomirror\nset offsets 0,0,graph 0.05,0\n", gp);
    jv_array_foreach(tasks, t, to) {
        const char *metric = cl_json_str(&to, "metric");
        jv runs = cl_json_get(&to, "runs");
        for (int m = 0; m < NMEASURES; m++) {
            fprintf(gp, "$d%d_%d << EOD\n", t, m);
            jv_array_foreach(runs, i, ro) {
                (void)i;
                gp_string(gp, cl_json_str(&ro, "run"));
                jv st = jv_getpath(jv_copy(ro), JV_ARRAY(jv_string("measures"), jv_string(measure_keys[m])));
                gp_num(gp, num_at(&st, JV_ARRAY(jv_string("mean"))));
                gp_num(gp, num_at(&st, JV_ARRAY(jv_string("lo"))));
                gp_num(gp, num_at(&st, JV_ARRAY(jv_string("hi"))));
                fputc('\n', gp);
                jv_free(st);
                jv_free(ro);
            }
            /* bars start at zero unless a value is negative (the paper ITR scale) */
            double lowest = 0;
            int points = 0;
            jv_array_foreach(runs, i2, ro2) {
                (void)i2;
                jv st = jv_getpath(jv_copy(ro2), JV_ARRAY(jv_string("measures"), jv_string(measure_keys[m])));
                double lo = num_at(&st, JV_ARRAY(jv_string("lo")));
                points += !isnan(lo);
                if (lo < lowest)
                    lowest = lo;
                jv_free(st);
                jv_free(ro2);
            }
            fputs(lowest < 0 ? "EOD\nset yrange [*:*]\n" : "EOD\nset yrange [0:*]\n", gp);
            fputs("set title ", gp);
            char t2[256];
            snprintf(t2, sizeof t2, "%s: %s%s", cl_json_str(&to, "task"), column_label(metric, m),
                     m == M_TOKENS ? "" : " x100");
            gp_string(gp, t2);
            if (points)
                fprintf(gp, "\nplot $d%d_%d using 2:3:4:xtic(1) lc rgb '%s'\n", t, m,
                        m == M_METRIC ? "#4477aa" : m == M_TOKENS ? "#ccbb44" : "#228833");
            else /* gnuplot refuses a histogram without a point: an empty, labelled panel */
                fputs("\nset label 1 'no data' at graph 0.5,0.5 center\nset yrange [0:1]\nunset xtics\n"
                      "plot 2 notitle\nunset label 1\nset xtics rotate by -20 nomirror\n", gp);
        }
        jv_free(runs);
        jv_free(to);
    }
    fputs("unset multiplot\nset output\n", gp);
    jv_free(tasks);
    int st = pclose(gp);
    signal(SIGPIPE, old);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) == 127)
        return cl_err_set(e, CL_EXIT_UNAVAILABLE, "--plot: gnuplot is not installed (Debian: gnuplot-nox)");
    if (WEXITSTATUS(st) != 0)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "--plot: gnuplot failed with status %d", WEXITSTATUS(st));
    return 0;
}

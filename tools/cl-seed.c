/* cl-seed — datasets in, seed records out.  Rows (JSONL or JSON arrays, plain or zstd) go
 * through the record options, then a preset of lib/collab/seed turns each into a seed; this file only
 * wires flags to that, applies the split, de-duplication, recency, shuffle and limit, and
 * reports what it dropped. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/json.h"
#include "core/records.h"
#include "collab/seed.h"
#include "metrics/tokens.h"
#include "world/world.h"

/* Draws in a row that add no seed before --preset world decides the world is used up. */
#define WORLD_MAX_MISSES 20000

enum {
    OPT_PRESET = 256, OPT_SPLIT, OPT_TEST_RATIO, OPT_SPLIT_IDS, OPT_LIMIT, OPT_SHUFFLE,
    OPT_KEEP_DUPS, OPT_TASK, OPT_TASK_DESC, OPT_RECENT, OPT_MAX_TOKENS, OPT_HISTORY, OPT_LIST,
    OPT_TOKEN_COUNT
};

typedef struct cfg {
    const char *preset, *split, *split_ids;
    double test_ratio, recent;
    int test_ratio_set, recent_set, max_tokens_set, shuffle, keep_dups, list;
    int estimate_tokens, token_count_set;
    long limit, max_tokens;
    cl_seed_opts so;
} cfg;

static int on_opt(void *ctx, int opt, const char *arg, cl_err *e)
{
    cfg *g = ctx;
    switch (opt) {
    case OPT_PRESET: g->preset = arg; return 0;
    case OPT_SPLIT:
        if (strcmp(arg, "all") != 0 && !cl_seed_split_name(arg))
            return cl_err_set(e, CL_EXIT_USAGE, "--split: '%s' is not train, test, validation or all", arg);
        g->split = strcmp(arg, "all") == 0 ? NULL : cl_seed_split_name(arg);
        return 0;
    case OPT_TEST_RATIO:
        g->test_ratio_set = 1;
        return cl_parse_double(arg, 0, 1, "--test-ratio", &g->test_ratio, e);
    case OPT_SPLIT_IDS: g->split_ids = arg; return 0;
    case OPT_LIMIT: return cl_parse_long(arg, 0, 1L << 40, "--limit", &g->limit, e);
    case OPT_SHUFFLE: g->shuffle = 1; return 0;
    case OPT_KEEP_DUPS: g->keep_dups = 1; return 0;
    case OPT_TASK: g->so.task = arg; return 0;
    case OPT_TASK_DESC: g->so.task_desc = arg; return 0;
    case OPT_RECENT:
        g->recent_set = 1;
        if (cl_parse_double(arg, 0, 1, "--recent", &g->recent, e) < 0)
            return -1;
        if (g->recent <= 0)
            return cl_err_set(e, CL_EXIT_USAGE, "--recent: '%s' must be above 0", arg);
        return 0;
    case OPT_MAX_TOKENS:
        g->max_tokens_set = 1;
        return cl_parse_long(arg, 0, 1L << 40, "--max-tokens", &g->max_tokens, e);
    case OPT_HISTORY: g->so.history = 1; return 0;
    case OPT_TOKEN_COUNT:
        g->token_count_set = 1;
        if (strcmp(arg, "cl100k") && strcmp(arg, "estimate"))
            return cl_err_set(e, CL_EXIT_USAGE, "--token-count: '%s' is not cl100k or estimate", arg);
        g->estimate_tokens = arg[0] == 'e';
        return 0;
    case OPT_LIST: g->list = 1; return 0;
    default: return cl_err_set(e, CL_EXIT_USAGE, "unexpected option");
    }
}

static void list_presets(void)
{
    size_t n;
    const cl_seed_preset *p = cl_seed_presets(&n);
    for (size_t i = 0; i < n; i++)
        printf("%-13s task %-9s test ratio %.2g  needs %s\n", p[i].name, p[i].task, p[i].test_ratio,
               p[i].needs);
    printf("%-13s task %-9s splits 0.8/0.1/0.1  needs no input: it generates the offline world's tasks\n",
           "world", "document, code or math");
}

typedef struct run {
    const cfg *g;
    const cl_common *c;
    const cl_seed_preset *p;
    cl_io *io;
    jv split_map;
    cl_seed_seen prompts, ids;
    cl_seed_set held;
    uint64_t dups, unlisted, too_long, undated, older, emitted;
    uint64_t per_split[3];
} run;

static int hold_back(const run *r)
{
    return r->g->shuffle || (r->p->dated && r->g->recent < 1.0);
}

/* The filters that come after the recency cut: length and --split.  1 = keep. */
static int wanted(run *r, const jv *seed)
{
    if (r->p->dated && r->g->max_tokens > 0) {
        jv meta = cl_json_get(seed, "metadata");
        double nt = cl_json_num(&meta, "num_tokens", 0);
        jv_free(meta);
        if (nt > (double)r->g->max_tokens) {
            r->too_long++;
            return 0;
        }
    }
    return !r->g->split || strcmp(cl_json_str(seed, "split"), r->g->split) == 0;
}

static int emit(run *r, jv seed, cl_err *e)
{
    static const char *const names[] = {"train", "test", "validation"};
    const char *split = cl_json_str(&seed, "split");
    for (int i = 0; i < 3; i++)
        if (strcmp(split, names[i]) == 0)
            r->per_split[i]++;
    r->emitted++;
    return cl_io_put(r->io, seed, e);
}

static int full(const run *r) { return r->g->limit >= 0 && r->emitted >= (uint64_t)r->g->limit; }

/* One seed (consumed) made from rec (NULL for the world's): split, de-duplication, filters.
 * 1 = go on, 0 = --limit reached, -1 = fatal. */
static int take_seed(run *r, jv seed, cl_rec *rec, cl_err *e)
{
    const char *id = cl_json_str(&seed, "id");
    if (jv_is_valid(r->split_map)) {
        const char *s = cl_json_str(&r->split_map, id);
        if (!s) {
            r->unlisted++;
            jv_free(seed);
            return 1;
        }
        seed = cl_json_set_str(seed, "split", s);
    } else if (!cl_json_has(&seed, "split")) {
        double ratio = r->g->test_ratio_set ? r->g->test_ratio : r->p->test_ratio;
        seed = cl_json_set_str(seed, "split", cl_seed_hash_split(id, ratio, r->c->seed));
    }
    id = cl_json_str(&seed, "id");
    /* De-duplication comes before the split filter so that a prompt can never sit in both
     * train and test. */
    int fresh = cl_seed_seen_add(&r->prompts, cl_seed_prompt_key(cl_json_str(&seed, "prompt")));
    if (fresh < 0)
        goto oom;
    if (!fresh && !r->g->keep_dups) {
        r->dups++;
        jv_free(seed);
        return 1;
    }
    int fresh_id = cl_seed_seen_add(&r->ids, cl_hash64(id, strlen(id), 0));
    if (fresh_id < 0)
        goto oom;
    if (!fresh_id) {
        char msg[600];
        snprintf(msg, sizeof msg, "id '%.200s' was already used by an earlier row with another prompt", id);
        jv_free(seed);
        if (!rec) /* the world numbers its seeds: a repeated id is our bug */
            return cl_err_set(e, CL_EXIT_SOFTWARE, "%s", msg);
        return cl_io_reject(r->io, rec, msg, e) < 0 ? -1 : 1;
    }
    if (hold_back(r)) {
        double t = 0;
        if (r->p->dated && r->g->recent < 1.0) {
            jv meta = cl_json_get(&seed, "metadata");
            jv ts = cl_json_get(&meta, "timestamp");
            jv_free(meta);
            if (cl_seed_time(ts, &t) < 0) {
                r->undated++;
                jv_free(seed);
                return 1;
            }
        }
        return cl_seed_set_add(&r->held, seed, t) < 0 ? cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory") : 1;
    }
    if (!wanted(r, &seed)) {
        jv_free(seed);
        return 1;
    }
    if (full(r)) {
        jv_free(seed);
        return 0;
    }
    if (emit(r, seed, e) < 0)
        return -1;
    return full(r) ? 0 : 1;
oom:
    jv_free(seed);
    return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
}

/* One row: 1 = go on, 0 = --limit reached, -1 = fatal. */
static int take_row(run *r, cl_rec *rec, cl_err *e)
{
    char why[512];
    jv seed;
    if (cl_seed_from_row(r->p, &r->g->so, cl_rec_value(rec), &seed, why, sizeof why) < 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "--preset %s: %s", r->p->name, why);
        return cl_io_reject(r->io, rec, msg, e) < 0 ? -1 : 1;
    }
    return take_seed(r, seed, rec, e);
}

/* The held-back seeds: recency cut, then the filters, then --shuffle and --limit. */
static int release(run *r, cl_err *e)
{
    cl_seed_set *h = &r->held;
    if (r->p->dated && r->g->recent < 1.0)
        r->older = cl_seed_set_keep_recent(h, r->g->recent);
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (wanted(r, &h->v[i].seed))
            h->v[k++] = h->v[i];
        else
            jv_free(h->v[i].seed);
    }
    h->n = k;
    if (r->g->shuffle)
        cl_seed_set_shuffle(h, r->c->seed);
    size_t i = 0;
    int rc = 0;
    for (; i < h->n && !full(r) && rc == 0; i++)
        rc = emit(r, h->v[i].seed, e);
    for (; i < h->n; i++)
        jv_free(h->v[i].seed);
    h->n = 0;
    return rc;
}

static void report(run *r)
{
    cl_io *io = r->io;
    cl_io_stat(io, "duplicates", jv_number((double)r->dups));
    cl_io_stat(io, "train", jv_number((double)r->per_split[0]));
    cl_io_stat(io, "test", jv_number((double)r->per_split[1]));
    cl_io_stat(io, "validation", jv_number((double)r->per_split[2]));
    if (r->p->dated) {
        cl_io_stat(io, "too_long", jv_number((double)r->too_long));
        cl_io_stat(io, "undated", jv_number((double)r->undated));
        cl_io_stat(io, "older", jv_number((double)r->older));
    }
    if (jv_is_valid(r->split_map))
        cl_io_stat(io, "not_in_split_ids", jv_number((double)r->unlisted));
    if (r->c->quiet)
        return;
    if (r->dups)
        cl_warn("%" PRIu64 " duplicate prompts dropped", r->dups);
    if (r->unlisted)
        cl_warn("%" PRIu64 " rows left out: their ids are not in %s", r->unlisted, r->g->split_ids);
    if (r->undated)
        cl_warn("%" PRIu64 " rows left out: no timestamp for the recency cut", r->undated);
    if (r->older)
        cl_warn("%" PRIu64 " older rows left out: --recent %g keeps the newest", r->older, r->g->recent);
    if (r->too_long)
        cl_warn("%" PRIu64 " rows left out: over %ld tokens", r->too_long, r->g->max_tokens);
}

static int seed_all(run *r, cl_err *e)
{
    cl_rec rec;
    int k;
    while ((k = cl_io_next(r->io, &rec, e)) > 0) {
        int t = take_row(r, &rec, e);
        if (t <= 0) {
            k = t;
            break;
        }
    }
    if (k < 0)
        return -1;
    if (hold_back(r) && release(r, e) < 0)
        return -1;
    report(r);
    return 0;
}

/* --preset world: the offline world's tasks drawn one by one (world/world.h) until --limit
 * seeds passed the filters, or until the world has no new task of the split left. */
static int seed_world(run *r, cl_err *e)
{
    uint64_t misses = 0, seed = r->c->seed;
    for (uint64_t i = 0; !full(r) && misses < WORLD_MAX_MISSES; i++) {
        cl_world_item it;
        cl_world_draw(seed, i, &it);
        char id[64];
        snprintf(id, sizeof id, "world-%" PRIu64 "-%" PRIu64, seed, i);
        uint64_t before = r->emitted + r->held.n;
        int t = take_seed(r, cl_world_seed(&it, id), NULL, e);
        if (t < 0)
            return -1;
        misses = r->emitted + r->held.n > before ? 0 : misses + 1;
    }
    if (misses >= WORLD_MAX_MISSES && !r->c->quiet)
        cl_warn("the world has no further distinct task%s%s: %" PRIu64 " seeds written",
                r->g->split ? " in split " : "", r->g->split ? r->g->split : "", r->emitted + r->held.n);
    if (hold_back(r) && release(r, e) < 0)
        return -1;
    report(r);
    return 0;
}

static const char options_help[] =
    "      --preset NAME   math, bigcodebench, medium, abgcoqa, generic (default) or world:\n"
    "                      world generates the offline world's tasks (no input; --limit N,\n"
    "                      default 1000; --seed picks the draw)\n"
    "      --list-presets  print each preset's task and required fields, and exit\n"
    "      --split S       write only train, test or validation seeds (default all)\n"
    "      --test-ratio R  share of test seeds when rows carry no split (preset default)\n"
    "      --split-ids F   take each id's split from F ('ID SPLIT' lines or JSON with id, split);\n"
    "                      rows whose id is not in F are left out\n"
    "      --limit N       write at most N seeds\n"
    "      --shuffle       write seeds in an order shuffled by --seed\n"
    "      --keep-duplicates  keep rows whose normalised prompt was seen before\n"
    "      --task NAME     set every seed's task\n"
    "      --task-desc T   set every seed's task description\n"
    "      --recent F      medium: keep the newest share F of dated articles (default 0.025)\n"
    "      --max-tokens N  medium: drop articles over N tokens (default 512, 0 = keep all)\n"
    "      --token-count M medium: cl100k (cl100k_base tokens, the paper's count; default)\n"
    "                      or estimate (no rank file needed)\n"
    "      --history       abgcoqa: put the earlier questions and answers into the prompt\n";

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"preset", required_argument, 0, OPT_PRESET},
        {"token-count", required_argument, 0, OPT_TOKEN_COUNT},
        {"list-presets", no_argument, 0, OPT_LIST},
        {"split", required_argument, 0, OPT_SPLIT},
        {"test-ratio", required_argument, 0, OPT_TEST_RATIO},
        {"split-ids", required_argument, 0, OPT_SPLIT_IDS},
        {"limit", required_argument, 0, OPT_LIMIT},
        {"shuffle", no_argument, 0, OPT_SHUFFLE},
        {"keep-duplicates", no_argument, 0, OPT_KEEP_DUPS},
        {"task", required_argument, 0, OPT_TASK},
        {"task-desc", required_argument, 0, OPT_TASK_DESC},
        {"recent", required_argument, 0, OPT_RECENT},
        {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
        {"history", no_argument, 0, OPT_HISTORY},
        {0, 0, 0, 0},
    };
    cfg g = {.preset = "generic", .limit = -1, .recent = 0.025, .max_tokens = 512};
    const cl_cli cli = {
        .prog = "cl-seed",
        .synopsis = "[--preset NAME] [options] [FILE...]",
        .summary = "Turn dataset rows (MATH, BigCodeBench, Medium, Abg-CoQA, any prompt/completion\n"
                   "rows; JSONL or JSON arrays, plain or zstd) into seed records.",
        .options_help = options_help,
        .opts = opts,
        .on_opt = on_opt,
        .ctx = &g,
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    if (g.list) {
        list_presets();
        return 0;
    }
    run r = {.g = &g, .c = &c, .split_map = jv_invalid()};
    /* The world is a generator, not a dataset: it reads no rows and its seeds carry their
     * split (80/10/10 by a hash of the goal). */
    static const cl_seed_preset world = {.name = "world", .task = "document, code, math",
                                         .needs = "no input: it generates its tasks"};
    int is_world = strcmp(g.preset, "world") == 0;
    if (is_world) {
        r.p = &world;
        if (c.ninputs)
            cl_usage_error("--preset world generates its seeds: it reads no FILE");
        if (g.test_ratio_set || g.so.task || g.so.task_desc)
            cl_usage_error("--preset world: --test-ratio, --task and --task-desc do not apply");
        if (g.limit < 0)
            g.limit = 1000;
    } else if (!(r.p = cl_seed_preset_find(g.preset))) {
        cl_usage_error("--preset: '%s' is not one of math, bigcodebench, medium, abgcoqa, generic, world", g.preset);
    }
    if ((g.recent_set || g.max_tokens_set || g.token_count_set) && !r.p->dated)
        cl_usage_error("--recent, --max-tokens and --token-count apply to --preset medium only");
    if (g.so.history && strcmp(r.p->name, "abgcoqa") != 0)
        cl_usage_error("--history applies to --preset abgcoqa only");
    if (!r.p->dated) {
        g.recent = 1.0;
        g.max_tokens = 0;
    }
    if (g.split_ids && g.test_ratio_set)
        cl_usage_error("--split-ids and --test-ratio cannot be used together");
    cl_err e = {0};
    cl_tokenizer *tk = NULL;
    if (r.p->dated && !g.estimate_tokens) {
        if (!(tk = tokens_load(TOKENS_CL100K, NULL, &e))) {
            cl_err hint = {0};
            cl_err_set(&hint, e.code, "%.900s; --token-count estimate estimates instead", e.msg);
            cl_die_err(&hint);
        }
        g.so.tk = tk;
    }
    if (g.split_ids && cl_seed_split_ids_load(g.split_ids, &r.split_map, &e) < 0)
        cl_die_err(&e);
    cl_io_opts o = {.json_arrays = 1};
    if (!(r.io = cl_io_open(&c, &o, &e)))
        cl_die_err(&e);
    int status = is_world ? seed_world(&r, &e) : seed_all(&r, &e);
    jv_free(r.split_map);
    cl_seed_seen_free(&r.prompts);
    cl_seed_seen_free(&r.ids);
    cl_seed_set_free(&r.held);
    int rc = cl_io_finish(r.io, status, &e);
    cl_tokenizer_free(tk);
    return rc;
}

#include "llm/cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"

/* Option values: CL_LLM_CLI_OPT_BASE + G_* for the client, + 32 * (1 + role) + R_* per role. */
enum { G_API_BASE, G_MAX_INFLIGHT, G_RPM, G_TPM, G_TIMEOUT, G_CONNECT_TIMEOUT, G_STALL_TIMEOUT,
       G_RETRIES, G_CACHE, G_NO_CACHE, G_CACHE_TAG, G_PRICE, G_BUDGET, G_LOCAL_KV_MB, G_N };
enum { R_SPEC, R_API_BASE, R_KEY_ENV, R_TEMPERATURE, R_TOP_P, R_MAX_TOKENS, R_MAX_COMPLETION_TOKENS,
       R_SEED, R_STOP, R_N, R_PARAM, R_HEADER, R_COUNT };

static const struct { const char *name; int arg; } g_opts[G_N] = {
    {"api-base", 1}, {"max-inflight", 1}, {"rpm", 1}, {"tpm", 1}, {"timeout", 1},
    {"connect-timeout", 1}, {"stall-timeout", 1}, {"retries", 1}, {"cache", 1}, {"no-cache", 0},
    {"cache-tag", 1}, {"price", 1}, {"budget-usd", 1}, {"local-kv-mb", 1}};
static const char *const r_suffix[R_COUNT] = {
    "", "-api-base", "-api-key-env", "-temperature", "-top-p", "-max-tokens",
    "-max-completion-tokens", "-seed", "-stop", "-n", "-param", "-header"};

static const char llm_help[] =
    "LLM client (see cl-llm(7)):\n"
    "      --api-base URL      base URL of openai: models (default $OPENAI_BASE_URL or OpenAI)\n"
    "      --max-inflight N    calls at the servers at once, all roles (default 64)\n"
    "      --rpm N, --tpm N    requests / tokens per minute (default unlimited)\n"
    "      --timeout S         seconds per attempt (600); --connect-timeout S (10);\n"
    "                          --stall-timeout S: a reply that stops arriving (30)\n"
    "      --retries N         further attempts after a retryable failure (default 6)\n"
    "      --cache DIR         cache of completed calls (default $XDG_CACHE_HOME/cl)\n"
    "      --no-cache          neither read nor write the cache\n"
    "      --cache-tag NAME    a name in every cache key: runs of servers that do not say\n"
    "                          which model they serve (GET /models) get answers of their own\n"
    "      --price IN,OUT      dollars per million prompt,completion tokens (default: the\n"
    "                          list price of known anthropic: models, else none)\n"
    "      --budget-usd X      send no new call once X dollars are spent\n"
    "      --local-kv-mb N     KV cache memory of each local: model in MiB (default 1024)\n"
    "  Per role: --ROLE SPEC (openai:MODEL, anthropic:MODEL, azure:DEPLOYMENT or local:DIR),\n"
    "      --ROLE-temperature X, --ROLE-top-p X,\n"
    "      --ROLE-max-tokens N or --ROLE-max-completion-tokens N, --ROLE-seed N,\n"
    "      --ROLE-stop STR, --ROLE-n N, --ROLE-param KEY=JSON, --ROLE-header 'Name: value',\n"
    "      --ROLE-api-base URL, --ROLE-api-key-env VAR (default CL_ROLE_API_KEY, then\n"
    "      OPENAI_API_KEY, ANTHROPIC_API_KEY or AZURE_OPENAI_API_KEY by scheme)\n"
    "  Roles:\n";

struct role_flags {
    const char *spec, *base, *key_env;
    double temperature, top_p;
    long max_tokens;
    const char *max_field;
    long seed, n;
    int has_seed, has_n;
    jv stop, extra;
    const char **headers;
    int nheaders;
};

struct cl_llm_cli_state {
    char *names;              /* storage of the generated long option names */
    const char *api_base, *cache, *cache_tag;
    int no_cache;
    long max_inflight, retries;
    double rpm, tpm, timeout, connect_timeout, stall_timeout, price_in, price_out, budget, local_kv_mb;
    struct role_flags *rf;
    cl_llm_role_config *rc;
    cl_llm *llm;
    char *cache_default;
};

void cl_llm_cli_init(cl_llm_cli *lc, const cl_llm_cli_role *roles, const struct option *tool_opts,
                     const char *tool_help)
{
    memset(lc, 0, sizeof *lc);
    int nr = 0, nt = 0;
    while (roles && roles[nr].name)
        nr++;
    while (tool_opts && tool_opts[nt].name)
        nt++;
    struct cl_llm_cli_state *s = calloc(1, sizeof *s);
    size_t nopts = (size_t)nt + G_N + (size_t)nr * R_COUNT + 1;
    size_t names = 0, helplen = (tool_help ? strlen(tool_help) : 0) + sizeof llm_help + 1;
    for (int i = 0; i < nr; i++) {
        names += R_COUNT * (strlen(roles[i].name) + 32);
        helplen += strlen(roles[i].name) + strlen(roles[i].what) + 96;
    }
    lc->opts = calloc(nopts, sizeof *lc->opts);
    lc->help = malloc(helplen);
    if (!s || !lc->opts || !lc->help || !(s->names = malloc(names + 1)) ||
        !(s->rf = calloc((size_t)nr + 1, sizeof *s->rf)) || !(s->rc = calloc((size_t)nr + 1, sizeof *s->rc)))
        cl_die(CL_EXIT_SOFTWARE, "out of memory");
    lc->s_ = s;
    lc->roles_ = roles;
    lc->nroles_ = nr;
    s->max_inflight = 64;
    s->retries = 6;

    int k = 0;
    for (int i = 0; i < nt; i++)
        lc->opts[k++] = tool_opts[i];
    for (int g = 0; g < G_N; g++)
        lc->opts[k++] = (struct option){g_opts[g].name, g_opts[g].arg ? required_argument : no_argument, 0,
                                        CL_LLM_CLI_OPT_BASE + g};
    char *p = s->names;
    for (int r = 0; r < nr; r++) {
        for (int j = 0; j < R_COUNT; j++) {
            int w = sprintf(p, "%s%s", roles[r].name, r_suffix[j]);
            lc->opts[k++] = (struct option){p, required_argument, 0, CL_LLM_CLI_OPT_BASE + 32 * (1 + r) + j};
            p += w + 1;
        }
        struct role_flags *f = &s->rf[r];
        f->temperature = roles[r].temperature;
        f->top_p = 1;
        f->max_tokens = roles[r].max_tokens;
        f->max_field = "max_tokens";
        f->stop = jv_array();
        f->extra = jv_object();
    }
    size_t h = 0;
    h += (size_t)sprintf(lc->help + h, "%s%s", tool_help ? tool_help : "", llm_help);
    for (int r = 0; r < nr; r++)
        h += (size_t)sprintf(lc->help + h, "      --%-17s %s (temperature %g, max tokens %ld)\n", roles[r].name,
                             roles[r].what, roles[r].temperature, roles[r].max_tokens);
}

void cl_llm_cli_free(cl_llm_cli *lc)
{
    struct cl_llm_cli_state *s = lc->s_;
    if (s) {
        for (int r = 0; r < lc->nroles_; r++) {
            jv_free(s->rf[r].stop);
            jv_free(s->rf[r].extra);
            free(s->rf[r].headers);
            jv_free(s->rc[r].params);
        }
        free(s->rf);
        free(s->rc);
        free(s->names);
        free(s->cache_default);
        free(s);
    }
    free(lc->opts);
    free(lc->help);
    memset(lc, 0, sizeof *lc);
}

static int seconds(const char *arg, const char *what, double *out, cl_err *e)
{
    return cl_parse_double(arg, 0.001, 1e6, what, out, e);
}

static int role_opt(cl_llm_cli *lc, int r, int j, const char *arg, cl_err *e)
{
    struct role_flags *f = &lc->s_->rf[r];
    char what[96];
    snprintf(what, sizeof what, "--%s%s", lc->roles_[r].name, r_suffix[j]);
    double d;
    long v;
    switch (j) {
    case R_SPEC: f->spec = arg; return 1;
    case R_API_BASE: f->base = arg; return 1;
    case R_KEY_ENV: f->key_env = arg; return 1;
    case R_TEMPERATURE:
        if (cl_parse_double(arg, 0, 2, what, &d, e) < 0) return -1;
        f->temperature = d;
        return 1;
    case R_TOP_P:
        if (cl_parse_double(arg, 0, 1, what, &d, e) < 0) return -1;
        f->top_p = d;
        return 1;
    case R_MAX_TOKENS:
    case R_MAX_COMPLETION_TOKENS:
        if (cl_parse_long(arg, 1, 10000000, what, &v, e) < 0) return -1;
        f->max_tokens = v;
        f->max_field = j == R_MAX_TOKENS ? "max_tokens" : "max_completion_tokens";
        return 1;
    case R_SEED:
        if (cl_parse_long(arg, 0, 9007199254740991L, what, &v, e) < 0) return -1;
        f->seed = v;
        f->has_seed = 1;
        return 1;
    case R_N:
        if (cl_parse_long(arg, 1, 128, what, &v, e) < 0) return -1;
        f->n = v;
        f->has_n = 1;
        return 1;
    case R_STOP:
        if (jv_array_length(jv_copy(f->stop)) >= 4)
            return cl_err_set(e, CL_EXIT_USAGE, "%s: at most 4 stop strings", what);
        f->stop = jv_array_append(f->stop, jv_string(arg));
        return 1;
    case R_PARAM: {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg)
            return cl_err_set(e, CL_EXIT_USAGE, "%s: '%s' is not KEY=JSON", what, arg);
        jv val = jv_parse(eq + 1);
        if (!jv_is_valid(val)) {
            jv_free(val);
            return cl_err_set(e, CL_EXIT_USAGE, "%s: the value of '%.*s' is not JSON (quote strings: "
                              "KEY='\"text\"')", what, (int)(eq - arg), arg);
        }
        f->extra = jv_object_set(f->extra, jv_string_sized(arg, (int)(eq - arg)), val);
        return 1;
    }
    case R_HEADER: {
        if (!strchr(arg, ':'))
            return cl_err_set(e, CL_EXIT_USAGE, "%s: '%s' is not 'Name: value'", what, arg);
        const char **h = realloc(f->headers, (size_t)(f->nheaders + 1) * sizeof *h);
        if (!h)
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        f->headers = h;
        f->headers[f->nheaders++] = arg;
        return 1;
    }
    }
    return 0;
}

int cl_llm_cli_opt(cl_llm_cli *lc, int opt, const char *arg, cl_err *e)
{
    struct cl_llm_cli_state *s = lc->s_;
    int v = opt - CL_LLM_CLI_OPT_BASE;
    if (v < 0 || v >= 32 * (1 + lc->nroles_))
        return 0;
    if (v >= 32)
        return role_opt(lc, v / 32 - 1, v % 32, arg, e);
    const char *what = g_opts[v].name;
    double d;
    switch (v) {
    case G_API_BASE: s->api_base = arg; return 1;
    case G_MAX_INFLIGHT: return cl_parse_long(arg, 1, 100000, "--max-inflight", &s->max_inflight, e) < 0 ? -1 : 1;
    case G_RPM: return cl_parse_double(arg, 0, 1e9, "--rpm", &s->rpm, e) < 0 ? -1 : 1;
    case G_TPM: return cl_parse_double(arg, 0, 1e12, "--tpm", &s->tpm, e) < 0 ? -1 : 1;
    case G_TIMEOUT: return seconds(arg, "--timeout", &s->timeout, e) < 0 ? -1 : 1;
    case G_CONNECT_TIMEOUT: return seconds(arg, "--connect-timeout", &s->connect_timeout, e) < 0 ? -1 : 1;
    case G_STALL_TIMEOUT: return seconds(arg, "--stall-timeout", &s->stall_timeout, e) < 0 ? -1 : 1;
    case G_RETRIES: return cl_parse_long(arg, 0, 100, "--retries", &s->retries, e) < 0 ? -1 : 1;
    case G_CACHE: s->cache = arg; s->no_cache = 0; return 1;
    case G_NO_CACHE: s->no_cache = 1; return 1;
    case G_CACHE_TAG: s->cache_tag = arg; return 1;
    case G_PRICE: {
        char *end;
        s->price_in = strtod(arg, &end);
        if (end == arg || *end != ',' || s->price_in < 0)
            return cl_err_set(e, CL_EXIT_USAGE, "--price: '%s' is not IN,OUT (dollars per million tokens)", arg);
        if (cl_parse_double(end + 1, 0, 1e6, "--price OUT", &s->price_out, e) < 0)
            return -1;
        return 1;
    }
    case G_LOCAL_KV_MB: return cl_parse_double(arg, 1, 1e7, "--local-kv-mb", &s->local_kv_mb, e) < 0 ? -1 : 1;
    case G_BUDGET:
        if (cl_parse_double(arg, 0, 1e9, "--budget-usd", &d, e) < 0)
            return -1;
        s->budget = d;
        return 1;
    }
    return cl_err_set(e, CL_EXIT_USAGE, "--%s: not handled", what);
}

static jv role_params(const struct role_flags *f)
{
    jv p = jv_object();
    p = cl_json_set_num(p, "temperature", f->temperature);
    p = cl_json_set_num(p, "top_p", f->top_p);
    if (f->max_tokens > 0)
        p = cl_json_set_num(p, f->max_field, (double)f->max_tokens);
    if (f->has_seed)
        p = cl_json_set_num(p, "seed", (double)f->seed);
    if (jv_array_length(jv_copy(f->stop)) > 0)
        p = cl_json_set(p, "stop", jv_copy(f->stop));
    if (f->has_n)
        p = cl_json_set_num(p, "n", (double)f->n);
    return jv_object_merge(p, jv_copy(f->extra));
}

cl_llm *cl_llm_cli_open(cl_llm_cli *lc, const cl_common *c, cl_err *e)
{
    struct cl_llm_cli_state *s = lc->s_;
    lc->quiet = c->quiet;
    const char *cache = NULL;
    if (!s->no_cache) {
        cache = s->cache;
        if (!cache) {
            const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
            size_t n = 64 + (xdg ? strlen(xdg) : home ? strlen(home) : 0);
            if (!(s->cache_default = malloc(n))) {
                cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
                return NULL;
            }
            if (xdg && *xdg == '/')
                snprintf(s->cache_default, n, "%s/cl", xdg);
            else if (home && *home)
                snprintf(s->cache_default, n, "%s/.cache/cl", home);
            else {
                cl_err_set(e, CL_EXIT_CONFIG, "no cache directory: HOME is not set; use --cache DIR or --no-cache");
                return NULL;
            }
            cache = s->cache_default;
        }
    }
    for (int r = 0; r < lc->nroles_; r++) {
        const struct role_flags *f = &s->rf[r];
        jv_free(s->rc[r].params);
        s->rc[r] = (cl_llm_role_config){
            .name = lc->roles_[r].name, .spec = f->spec, .base_url = f->base, .key_env = f->key_env,
            .params = role_params(f), .headers = f->headers, .nheaders = f->nheaders};
    }
    cl_llm_config cfg = {
        .max_inflight = (int)s->max_inflight, .rpm = s->rpm, .tpm = s->tpm, .timeout_s = s->timeout,
        .connect_timeout_s = s->connect_timeout, .stall_timeout_s = s->stall_timeout,
        .retries = (int)s->retries, .cache_dir = cache, .cache_tag = s->cache_tag, .quiet = c->quiet,
        .price_in = s->price_in, .price_out = s->price_out, .local_kv_mb = s->local_kv_mb,
        .budget_usd = s->budget, .api_base = s->api_base, .seed = c->seed, .roles = s->rc,
        .nroles = lc->nroles_, .extra_backends = lc->extra_backends};
    return s->llm = cl_llm_new(&cfg, e);
}

/* Signals reach the loop through its async-signal-safe stop flag; the handler needs the
 * client, hence this one static.  First signal: drain; second: abort. */
static cl_llm *volatile signal_llm;
static volatile sig_atomic_t signal_count;

static volatile sig_atomic_t signal_first;

static void on_signal(int sig)
{
    if (!signal_count)
        signal_first = sig;
    signal_count++;
    if (signal_llm)
        cl_llm_stop(signal_llm, signal_count >= 2);
    else if (signal_count >= 3)
        _exit(128 + signal_first); /* the loop has ended and writing its records hangs */
}

static void progress(void *ctx, char *buf, size_t n) { cl_llm_progress(ctx, buf, n); }

static void tick(void *io) { cl_io_tick(io); }

void cl_llm_cli_attach(cl_llm_cli *lc, cl_llm *llm, cl_io *io)
{
    (void)lc;
    if (io) {
        cl_io_progress_extra(io, progress, llm);
        cl_llm_on_turn(llm, tick, io);
    }
    signal_llm = llm;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void cl_llm_cli_report(cl_llm_cli *lc, const cl_llm *llm, cl_io *io)
{
    /* The handlers stay: once the loop has ended no call is in flight, so a second signal has
     * nothing to abort, and the prefix already decided is written whole (a default action here
     * would cut it at a random byte and turn exit 130 into 143). */
    signal_llm = NULL;
    cl_llm_on_turn((cl_llm *)llm, NULL, NULL); /* io is about to close */
    if (io)
        cl_io_stat(io, "llm", cl_llm_stats_json(llm));
    if (!lc->quiet) {
        char line[512];
        cl_llm_summary(llm, line, sizeof line);
        if (io)
            cl_io_summary_extra(io, line); /* one closing line per run */
        else
            cl_warn("%s", line);
    }
}

int cl_llm_cli_exit_status(const cl_llm_cli *lc, const cl_llm *llm)
{
    (void)lc;
    if (signal_first)
        return 128 + signal_first;
    return cl_llm_run_status(llm);
}

int cl_llm_cli_finish(cl_llm_cli *lc, const cl_llm *llm, cl_io *io, int status, cl_err *e)
{
    cl_llm_cli_report(lc, llm, io);
    int llm_status = cl_llm_cli_exit_status(lc, llm);
    int rc = cl_io_finish(io, status, e);
    return rc <= CL_EXIT_FAILED && llm_status ? llm_status : rc;
}

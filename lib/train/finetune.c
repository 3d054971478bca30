/* finetune.c — the SFT/DPO/GRPO training loop, checkpoints, resume, metrics and exports. */
#include "train/finetune.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/files.h"
#include "core/json.h"
#include "train/modelio.h"

void cl_ft_opts_default(cl_ft_opts *o)
{
    memset(o, 0, sizeof *o);
    o->lora = (cl_lora_config){.rank = 8, .alpha = 16, .dropout = 0.0, .targets = (1u << CL_NPROJ) - 1,
                               .init = CL_LORA_INIT_KAIMING};
    o->adamw = (cl_adamw){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
    o->lr = -1;
    o->clip = 1.0;
    o->warmup_steps = -1;
    o->sched = CL_SCHED_COSINE;
    o->epochs = 1;
    o->batch = 4;
    o->grad_accum = 1;
    o->max_len = 1024;
    o->dpo = (cl_dpo_config){.type = CL_DPO_SIGMOID, .beta = 0.1};
    o->grpo = (cl_grpo_config){.clip_low = 0.2, .clip_high = 0.2, .clip_c = 3, .kl_coef = 0.001, .adv_eps = 1e-6};
    o->keep = 2;
    o->corpus_vocab = 512;
}

/* ---- one micro-batch -------------------------------------------------------------------- */

typedef struct scratch {
    float *logp, *coef;
    double *sum, *dseq;
    int *count;
} scratch;

static int scratch_new(scratch *s, const cl_ft_batch *bt, cl_err *e)
{
    size_t n = (size_t)bt->b * bt->t, q = (size_t)(bt->nseq ? bt->nseq : 1);
    s->logp = malloc(sizeof(float) * n * 2);
    s->sum = malloc(sizeof(double) * q * 2);
    s->count = malloc(sizeof(int) * q);
    if (!s->logp || !s->sum || !s->count) {
        free(s->logp);
        free(s->sum);
        free(s->count);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    }
    s->coef = s->logp + n;
    s->dseq = s->sum + q;
    return 0;
}

static void scratch_free(scratch *s)
{
    free(s->logp);
    free(s->sum);
    free(s->count);
}

int cl_ft_seq_logps(cl_llama *m, const cl_ft_batch *bt, double *seq_logp, int *seq_len, cl_err *e)
{
    scratch s;
    if (scratch_new(&s, bt, e)) return -1;
    int rc = cl_llama_forward(m, bt->ids, bt->pos, bt->seg, bt->b, bt->t, e);
    if (!rc) {
        cl_llama_head(m, bt->target, NULL, s.logp);
        cl_seq_logps(s.logp, bt->target, bt->seqid, bt->b * bt->t, bt->nseq, seq_logp, seq_len);
    }
    scratch_free(&s);
    return rc;
}

int cl_ft_sft_micro(cl_llama *m, const cl_ft_batch *bt, double norm, double weight, double *loss, cl_err *e)
{
    scratch s;
    if (scratch_new(&s, bt, e)) return -1;
    int n = bt->b * bt->t, rc = cl_llama_forward(m, bt->ids, bt->pos, bt->seg, bt->b, bt->t, e);
    if (!rc) {
        cl_sft_loss(s.logp, bt->target, n, norm, s.coef);
        for (int i = 0; i < n; i++) s.coef[i] *= (float)weight;
        cl_llama_head(m, bt->target, s.coef, s.logp);
        *loss = weight * cl_sft_loss(s.logp, bt->target, n, norm, NULL);
        cl_llama_backward(m);
    }
    scratch_free(&s);
    return rc;
}

int cl_ft_dpo_micro(cl_llama *m, const cl_ft_batch *bt, const cl_dpo_config *c, const double *ref, double pair_norm,
                    double rpo_alpha, double chosen_norm, cl_ft_dpo_out *out, cl_err *e)
{
    scratch s;
    if (scratch_new(&s, bt, e)) return -1;
    int n = bt->b * bt->t, P = bt->nseq / 2;
    double *pc = malloc(sizeof(double) * (size_t)P * 6);
    int *len = malloc(sizeof(int) * (size_t)P * 2);
    int rc = pc && len ? cl_llama_forward(m, bt->ids, bt->pos, bt->seg, bt->b, bt->t, e)
                       : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    if (!rc) {
        double *pr = pc + P, *rc_ = pr + P, *rr = rc_ + P, *dc = rr + P, *dr = dc + P;
        int *lc = len, *lr = len + P;
        cl_llama_head(m, bt->target, NULL, s.logp);
        cl_seq_logps(s.logp, bt->target, bt->seqid, n, bt->nseq, s.sum, s.count);
        for (int k = 0; k < P; k++) {
            pc[k] = s.sum[2 * k];
            pr[k] = s.sum[2 * k + 1];
            rc_[k] = ref[2 * k];
            rr[k] = ref[2 * k + 1];
            lc[k] = s.count[2 * k];
            lr[k] = s.count[2 * k + 1];
        }
        memset(out, 0, sizeof *out);
        out->pairs = P;
        double mean = cl_dpo_loss(c, P, pc, pr, rc_, rr, lc, lr, dc, dr, &out->mt);
        /* cl_dpo_loss averages over this batch; the step averages over pair_norm pairs */
        double share = P / pair_norm;
        out->loss = mean * share;
        for (int k = 0; k < P; k++) {
            s.dseq[2 * k] = dc[k] * share;
            s.dseq[2 * k + 1] = dr[k] * share;
            if (rpo_alpha > 0 && chosen_norm > 0) {
                /* TRL's rpo term: alpha * mean token NLL of the chosen replies */
                out->nll -= pc[k] / chosen_norm;
                s.dseq[2 * k] -= rpo_alpha / chosen_norm;
            }
        }
        cl_seq_coef(bt->target, bt->seqid, n, s.dseq, s.coef);
        cl_llama_head(m, bt->target, s.coef, s.logp);
        cl_llama_backward(m);
    }
    free(pc);
    free(len);
    scratch_free(&s);
    return rc;
}

/* ---- the run ---------------------------------------------------------------------------- */

#define STATE_MAGIC "CLFTRES1"
#define STATE_VERSION 1u
#define REF_MAGIC "CLFTREF1"

typedef struct state_hdr {           /* trainer_state.bin, little-endian as written */
    char magic[8];
    uint32_t version, header_bytes;
    uint64_t opts_hash, data_hash;
    int64_t step, total, model_step, metrics_bytes, best_step, n_train;
    double best_eval;
} state_hdr;

typedef struct run_totals {
    double last_loss;
} run_totals;

typedef struct run {
    run_totals tot;
    const cl_ft_opts *o;
    cl_ft_model fm;
    cl_ft_data train, eval, anchor;
    cl_ft_plan plan, eplan, aplan;
    double *ref, *eref;              /* [example * 2 + sequence] */
    cl_ft_grpo grpo;                 /* GRPO: advantages and sampling log-probs of the replies */
    float *gref;                     /* GRPO: reference log-prob of every loss token */
    cl_tensor *tr[4096];
    int ntr;
    cl_ft_batch bt;
    long step, total, spe, warmup;
    double best_eval;
    long best_step;
    FILE *metrics;
    uint64_t opts_hash;
    double t0, cpu0, last_line;
    long tokens, start_step;
    long adam_t0;                    /* AdamW steps taken before this run (--optimizer-from) */
    char path[4200];
} run;

static const char *rpath(run *r, const char *name) { return cl_ft_path(r->path, sizeof r->path, r->o->run_dir, name); }

static uint64_t opts_hash(const cl_ft_opts *o)
{
    char b[1024];
    int n = snprintf(b, sizeof b,
                     "%d|%d|%d %.17g %d %.17g %u %d|%d|%.17g %.17g %.17g %.17g|%.17g %.17g %.17g %ld %d|%d %ld|%d %d "
                     "%d %d %d|%d %.17g %.17g|%.17g %.17g|%.17g|%llu",
                     o->kind, o->full, o->lora.rank, o->lora.alpha, o->lora.rslora, o->lora.dropout, o->lora.targets,
                     o->lora.init, o->bf16, o->adamw.beta1, o->adamw.beta2, o->adamw.eps, o->adamw.weight_decay, o->lr,
                     o->clip, o->warmup_ratio, o->warmup_steps, o->sched, o->epochs, o->max_steps, o->batch,
                     o->grad_accum, o->max_len, o->max_prompt_len, o->packing, o->dpo.type, o->dpo.beta,
                     o->dpo.label_smoothing, o->rpo_alpha, o->anchor_weight, o->eval_split,
                     (unsigned long long)o->seed);
    uint64_t h = cl_hash64(b, (size_t)n, 0x66696e65ull);
    if (o->optimizer_from) h = cl_hash64(o->optimizer_from, strlen(o->optimizer_from), h);
    return o->kind == CL_FT_GRPO ? cl_hash64(&o->grpo, sizeof o->grpo, h) : h;
}

static void progress(const run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const run *r, const char *fmt, ...)
{
    if (r->o->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cl_progname());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int emit(run *r, jv rec, cl_err *e)
{
    size_t len;
    char *s = cl_json_dump(&rec, &len);
    jv_free(rec);
    if (!s) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int rc = 0;
    if (fwrite(s, 1, len, r->metrics) != len || fputc('\n', r->metrics) == EOF || fflush(r->metrics))
        rc = cl_err_set(e, CL_EXIT_IOERR, "%s/metrics.jsonl: %s", r->o->run_dir, strerror(errno));
    if (!rc && r->o->metrics_out) rc = cl_writer_put(r->o->metrics_out, s, len, e);
    free(s);
    return rc;
}

/* ---- files ------------------------------------------------------------------------------ */

static int remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    char p[4400];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        cl_ft_path(p, sizeof p, dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

static void fsync_path(const char *p)
{
    int fd = open(p, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static void fsync_dir_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4400];
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            cl_ft_path(p, sizeof p, dir, de->d_name);
            fsync_path(p);
        }
    closedir(d);
    fsync_path(dir);
}

static int write_state(run *r, const char *dir, cl_err *e)
{
    cl_llama *m = r->fm.m;
    state_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.version = STATE_VERSION;
    h.header_bytes = sizeof h;
    h.opts_hash = r->opts_hash;
    h.data_hash = r->train.hash;
    h.step = r->step;
    h.total = r->total;
    h.model_step = m->step;
    h.metrics_bytes = ftell(r->metrics);
    h.best_step = r->best_step;
    h.best_eval = r->best_eval;
    h.n_train = m->n_train;
    /* the optimizer state (twice the trainable bytes) goes out from where it lives */
    size_t mv = sizeof(float) * (size_t)m->n_train;
    const void *parts[3] = {&h, m->m_mem, m->v_mem};
    size_t lens[3] = {sizeof h, mv, mv};
    char p[4400];
    cl_ft_path(p, sizeof p, dir, "trainer_state.bin");
    return cl_ft_write_parts(p, parts, lens, 3, e);
}

/* Reads exactly len bytes at off; -1 on a short file or an error (errno 0 for short). */
static int read_at(int fd, void *dst, size_t len, off_t off)
{
    char *p = dst;
    while (len) {
        ssize_t got = pread(fd, p, len, off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = 0;
            return -1;
        }
        p += got;
        off += got;
        len -= (size_t)got;
    }
    return 0;
}

static int read_state(run *r, const char *dir, cl_err *e)
{
    char p[4400];
    cl_ft_path(p, sizeof p, dir, "trainer_state.bin");
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        cl_err_set(e, CL_EXIT_NOINPUT, "%s: %s", p, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0) close(fd);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    cl_llama *m = r->fm.m;
    state_hdr h;
    int rc = 0;
    if (len < sizeof h) {
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %zu bytes is too short for a resume file", p, len);
    } else if (read_at(fd, &h, sizeof h, 0)) {
        rc = cl_err_set(e, CL_EXIT_IOERR, "%s: %s", p, errno ? strerror(errno) : "file shrank while read");
    } else {
        size_t want = sizeof h + 2 * sizeof(float) * (size_t)(h.n_train > 0 ? h.n_train : 0);
        if (memcmp(h.magic, STATE_MAGIC, 8))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: not a cl-finetune resume file", p);
        else if (h.version != STATE_VERSION || h.header_bytes != sizeof h)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: resume file version %u (header %u bytes); this build reads version %u",
                            p, h.version, h.header_bytes, STATE_VERSION);
        else if (h.n_train != m->n_train || len != want)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: holds %lld trainable values in %zu bytes; the run has %ld (%zu bytes)",
                            p, (long long)h.n_train, len, m->n_train,
                            sizeof h + 2 * sizeof(float) * (size_t)m->n_train);
        else if (h.opts_hash != r->opts_hash)
            rc = cl_err_set(e, CL_EXIT_USAGE, "%s: the run was started with other training options; resume with the same "
                            "ones", r->o->run_dir);
        else if (h.data_hash != r->train.hash)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: the training data differ from the run's", r->o->run_dir);
    }
    if (!rc) {
        /* the optimizer state goes straight where it lives, with no file-sized buffer */
        size_t mv = sizeof(float) * (size_t)m->n_train;
        if (read_at(fd, m->m_mem, mv, (off_t)sizeof h) || read_at(fd, m->v_mem, mv, (off_t)(sizeof h + mv)))
            rc = cl_err_set(e, CL_EXIT_IOERR, "%s: %s", p, errno ? strerror(errno) : "file shrank while read");
    }
    close(fd);
    if (!rc) {
        r->step = h.step;
        m->step = h.model_step;
        r->best_step = h.best_step;
        r->best_eval = h.best_eval;
        if (ftruncate(fileno(r->metrics), h.metrics_bytes) || fseek(r->metrics, h.metrics_bytes, SEEK_SET))
            rc = cl_err_set(e, CL_EXIT_IOERR, "%s/metrics.jsonl: %s", r->o->run_dir, strerror(errno));
    }
    return rc;
}

/* A run that continues another's optimizer keeps, beside its resume file, the AdamW steps taken
 * before it (RUN/checkpoint-N/adam_t0, decimal), so that a later run continuing it counts
 * Adam's bias correction from the first step of the first run. */
static int write_adam_t0(run *r, const char *dir, cl_err *e)
{
    char p[4400], b[32];
    cl_ft_path(p, sizeof p, dir, "adam_t0");
    int n = snprintf(b, sizeof b, "%ld\n", r->adam_t0);
    return cl_ft_write_file(p, b, (size_t)n, e);
}

/* --optimizer-from DIR: the AdamW moments of DIR's resume file (the same trainable values) and
 * the step count they stand for. */
static int load_optimizer(run *r, const char *dir, cl_err *e)
{
    char p[4400];
    cl_ft_path(p, sizeof p, dir, "trainer_state.bin");
    size_t len;
    char *buf = cl_file_read(p, &len, e);
    if (!buf) return -1;
    cl_llama *m = r->fm.m;
    state_hdr h;
    size_t mv = sizeof(float) * (size_t)m->n_train;
    int rc = 0;
    if (len < sizeof h || (memcpy(&h, buf, sizeof h), memcmp(h.magic, STATE_MAGIC, 8)) || h.version != STATE_VERSION ||
        h.header_bytes != sizeof h)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: not a cl-finetune resume file of version %u", p, STATE_VERSION);
    else if (h.n_train != m->n_train || len != sizeof h + 2 * mv)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: holds moments of %lld trainable values; this run trains %ld (continue "
                        "the optimizer of a run with the same adapter shape)", p, (long long)h.n_train, m->n_train);
    if (!rc) {
        memcpy(m->m_mem, buf + sizeof h, mv);
        memcpy(m->v_mem, buf + sizeof h + mv, mv);
        cl_ft_path(p, sizeof p, dir, "adam_t0");
        char *t = cl_file_read(p, &len, NULL);
        r->adam_t0 = (t ? strtol(t, NULL, 10) : 0) + h.step;
        free(t);
    }
    free(buf);
    return rc;
}

static int swap_link(run *r, const char *link, const char *target, cl_err *e)
{
    char tmp[4400], dst[4400];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", r->o->run_dir, link);
    cl_ft_path(dst, sizeof dst, r->o->run_dir, link);
    unlink(tmp);
    if (symlink(target, tmp) || rename(tmp, dst))
        return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", dst, strerror(errno));
    return 0;
}

static int ckpt_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Keeps the newest `keep` checkpoints, the best and the last. */
static void prune(run *r)
{
    if (r->o->keep <= 0) return;
    DIR *d = opendir(r->o->run_dir);
    if (!d) return;
    char *names[4096];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 4096)
        if (!strncmp(de->d_name, "checkpoint-", 11)) names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, ckpt_cmp);
    char best[64] = "";
    if (r->best_step > 0) snprintf(best, sizeof best, "checkpoint-%06ld", r->best_step);
    for (int i = 0; i < n; i++) {
        if (i < n - r->o->keep && strcmp(names[i], best)) remove_flat_dir(rpath(r, names[i]));
        free(names[i]);
    }
}

static int save_checkpoint(run *r, cl_err *e)
{
    char name[64], tmp[4400], dst[4400];
    snprintf(name, sizeof name, "checkpoint-%06ld", r->step);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s", r->o->run_dir, name);
    cl_ft_path(dst, sizeof dst, r->o->run_dir, name);
    remove_flat_dir(tmp);
    if (mkdir(tmp, 0777)) return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", tmp, strerror(errno));
    cl_llama_sync(r->fm.m, CL_SYNC_TO_HOST); /* weights and moments live on the device, if any */
    int rc = r->o->full ? cl_ft_model_save(&r->fm, tmp, e) : cl_ft_model_save_adapter(&r->fm, tmp, e);
    if (!rc) rc = write_state(r, tmp, e);
    if (!rc && r->adam_t0) rc = write_adam_t0(r, tmp, e);
    if (rc) return rc;
    fsync_dir_files(tmp);
    /* a checkpoint of this step from an interrupted attempt is replaced whole */
    remove_flat_dir(dst);
    if (rename(tmp, dst)) return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", dst, strerror(errno));
    fsync_path(r->o->run_dir);
    if (swap_link(r, "last", name, e)) return -1;
    if (r->best_step == r->step && swap_link(r, "best", name, e)) return -1;
    prune(r);
    return 0;
}

/* ---- model, data, references ------------------------------------------------------------ */

static int load_model(run *r, const char *last, cl_err *e)
{
    const cl_ft_opts *o = r->o;
    cl_dtype dt = o->bf16 && !o->full ? CL_BF16 : CL_F32;
    if (o->resume && o->full) {
        /* full fine-tuning: the checkpoint is a whole model */
        if (cl_ft_model_load(&r->fm, last, CL_F32, 1, e)) return -1;
        const char *src = o->init_config ? rpath(r, "init") : o->model_dir;
        cl_ft_model_set_src(&r->fm, src);
    } else if (o->init_config) {
        const char *init = rpath(r, "init");
        struct stat st;
        if (o->resume && stat(init, &st) == 0) {
            if (cl_ft_model_load(&r->fm, init, dt, o->full, e)) return -1;
        } else {
            char dir[4400];
            cl_ft_path(dir, sizeof dir, NULL, init);
            if (cl_ft_model_init(&r->fm, o->init_config, o->tokenizer, o->corpus, o->corpus_vocab, o->seed, o->full, e) ||
                cl_ft_model_save(&r->fm, dir, e))
                return -1;
            cl_ft_model_set_src(&r->fm, dir);
            progress(r, "new model (%ld parameters, vocabulary %d) written to %s", cl_config_params(&r->fm.m->cfg),
                     r->fm.m->cfg.vocab, dir);
        }
    } else if (cl_ft_model_load(&r->fm, o->model_dir, dt, o->full, e)) {
        return -1;
    }
    if (cl_ft_model_set_format(&r->fm, o->chat, e)) return -1;
    if (!o->full) {
        /* a resumed run's adapters are its checkpoint's; --adapter starts from given ones */
        const char *from = o->resume ? last : o->adapter;
        if (from ? cl_ft_model_load_adapter(&r->fm, from, e) : cl_ft_model_add_lora(&r->fm, &o->lora, e)) return -1;
        r->fm.m->seed = o->lora.seed; /* dropout masks derive from (seed, forward count) */
    }
    r->ntr = cl_llama_trainable(r->fm.m, r->tr, 4096);
    return 0;
}

static int load_data(run *r, cl_ft_data *d, const char *path, cl_ft_kind kind, const char *what, cl_err *e)
{
    cl_ft_data_opts dopt = {.kind = kind, .format = r->fm.format, .max_len = r->o->max_len,
                            .max_prompt_len = r->o->max_prompt_len};
    if (kind == CL_FT_GRPO ? cl_ft_grpo_load(d, &r->grpo, path, r->fm.tok, &dopt, &r->o->grpo, e)
                           : cl_ft_data_load(d, path, r->fm.tok, &dopt, e))
        return -1;
    if (kind == CL_FT_GRPO)
        progress(r, "%s: %ld groups, %d replies (%ld groups with equal rewards train only the KL term; %ld replies "
                 "carry the sampler's log-probs)", path, r->grpo.groups, d->n, r->grpo.flat_groups, r->grpo.recorded);
    if (kind == CL_FT_GRPO && r->grpo.mismatched)
        cl_warn("%s: %ld replies carry log-probs of another number of tokens than they render to (cut at the token "
                "limit, or tokenised otherwise); their policy ratio starts from the current policy", path,
                r->grpo.mismatched);
    if (d->no_loss)
        cl_warn("%s: %ld of %ld %s rows have no assistant token left after truncation to %d tokens; left out", path,
                d->no_loss, d->rows, what, r->o->max_len);
    if (d->n == 0) return cl_err_set(e, CL_EXIT_DATAERR, "%s: no usable %s rows", path, what);
    if (d->pairs_as_sft)
        cl_warn("%s: %ld of %ld rows are DPO pairs: SFT trains on their prompt and chosen reply and ignores the "
                "rejected one (train them with --dpo to use both)", path, d->pairs_as_sft, d->rows);
    progress(r, "%s: %d %s rows (%ld truncated, %ld without loss tokens)", path, d->n, what, d->truncated, d->no_loss);
    return 0;
}

/* Reference log-probs of every sequence: the model before training (adapters off). */
static int compute_refs(run *r, cl_ft_data *d, double **out, cl_err *e)
{
    cl_ft_plan p;
    if (cl_ft_plan_new(&p, d, r->o->batch, e)) return -1;
    double *ref = calloc((size_t)d->n * 2, sizeof(double)), *lp = malloc(sizeof(double) * (size_t)r->o->batch * 2);
    int *len = malloc(sizeof(int) * (size_t)r->o->batch * 2), rc = 0;
    if (!ref || !lp || !len) rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    cl_llama *m = r->fm.m;
    int on = m->lora_on;
    cl_lora_enable(m, 0);
    m->training = 0;
    for (int b = 0; b < p.nbatches && !rc; b++) {
        const int *idx = p.sorted + p.start[b];
        rc = cl_ft_batch_build(&r->bt, d, idx, p.count[b], r->o->packing, r->o->max_len, r->fm.pad_id, e);
        if (!rc) rc = cl_ft_seq_logps(m, &r->bt, lp, len, e);
        for (int i = 0; !rc && i < p.count[b]; i++)
            for (int s = 0; s < 2; s++) ref[(size_t)idx[i] * 2 + s] = lp[2 * i + s];
    }
    cl_lora_enable(m, on);
    cl_ft_plan_free(&p);
    free(lp);
    free(len);
    if (rc) {
        free(ref);
        return -1;
    }
    *out = ref;
    return 0;
}

/* Reference caches beside the run: an 8-byte magic, a header (the data hashes and counts that
 * tie them to the data), then the values of one or two arrays.  cache_read returns 1 when the
 * file holds exactly that header and sizes, 0 otherwise (then it must be computed again). */
static int cache_read(const char *path, const char *magic, const void *hdr, size_t hlen, void *a, size_t alen,
                      void *b, size_t blen)
{
    size_t len;
    char *buf = cl_file_read(path, &len, NULL);
    int hit = buf && len == 8 + hlen + alen + blen && !memcmp(buf, magic, 8) && !memcmp(buf + 8, hdr, hlen);
    if (hit) {
        memcpy(a, buf + 8 + hlen, alen);
        if (blen) memcpy(b, buf + 8 + hlen + alen, blen);
    }
    free(buf);
    return hit;
}

static int cache_write(const char *path, const char *magic, const void *hdr, size_t hlen, const void *a, size_t alen,
                       const void *b, size_t blen, cl_err *e)
{
    char *buf = malloc(8 + hlen + alen + blen);
    if (!buf) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    memcpy(buf, magic, 8);
    memcpy(buf + 8, hdr, hlen);
    memcpy(buf + 8 + hlen, a, alen);
    if (blen) memcpy(buf + 8 + hlen + alen, b, blen);
    int rc = cl_ft_write_file(path, buf, 8 + hlen + alen + blen, e);
    free(buf);
    return rc;
}

/* A cache that is missing or stale is computed from the model as loaded, which a resumed full
 * fine-tuning run no longer has. */
static int cache_missing(const run *r, const char *path, cl_err *e)
{
    if (r->o->resume && r->o->full)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s is missing or stale: full fine-tuning cannot recompute the reference "
                          "from a trained model", path);
    return 0;
}

/* DPO's cache holds both sets: magic, the data hashes, the counts, then the doubles. */
static int refs(run *r, cl_err *e)
{
    const char *p = rpath(r, "ref-logps.bin");
    char path[4400];
    cl_ft_path(path, sizeof path, NULL, p);
    uint64_t hdr[4] = {r->train.hash, r->eval.hash, (uint64_t)r->train.n, (uint64_t)r->eval.n};
    size_t nt = (size_t)r->train.n * 2, ne = (size_t)r->eval.n * 2;
    r->ref = malloc(sizeof(double) * (nt ? nt : 1));
    r->eref = malloc(sizeof(double) * (ne ? ne : 1));
    if (!r->ref || !r->eref) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    if (cache_read(path, REF_MAGIC, hdr, sizeof hdr, r->ref, sizeof(double) * nt, r->eref, sizeof(double) * ne)) {
        progress(r, "reference log-probs from %s", path);
        return 0;
    }
    if (cache_missing(r, path, e)) return -1;
    double t0 = cl_now();
    free(r->ref);
    free(r->eref);
    r->ref = r->eref = NULL;
    if (compute_refs(r, &r->train, &r->ref, e)) return -1;
    if (r->eval.n && compute_refs(r, &r->eval, &r->eref, e)) return -1;
    if (!r->eval.n && !(r->eref = malloc(sizeof(double)))) abort();
    int rc = cache_write(path, REF_MAGIC, hdr, sizeof hdr, r->ref, sizeof(double) * nt, r->eref, sizeof(double) * ne, e);
    progress(r, "reference log-probs of %zu sequences in %.1f s, cached in %s", nt + ne, cl_now() - t0, path);
    return rc;
}

#define GREF_MAGIC "CLFTGRF1"

/* GRPO's reference: per-token log-probs of every reply with the adapters off (LoRA) or of the
 * starting weights (full), computed once and cached beside the run like DPO's. */
static int grpo_refs(run *r, cl_err *e)
{
    if (r->o->grpo.kl_coef == 0) return 0;
    char path[4400];
    cl_ft_path(path, sizeof path, NULL, rpath(r, "ref-token-logps.bin"));
    uint64_t hdr[2] = {r->train.hash, (uint64_t)r->grpo.ntok};
    size_t nb = sizeof(float) * (size_t)r->grpo.ntok;
    if (!(r->gref = malloc(nb ? nb : 1))) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    if (cache_read(path, GREF_MAGIC, hdr, sizeof hdr, r->gref, nb, NULL, 0)) {
        progress(r, "reference log-probs from %s", path);
        return 0;
    }
    if (cache_missing(r, path, e)) return -1;
    double t0 = cl_now();
    cl_llama *m = r->fm.m;
    int on = m->lora_on;
    cl_lora_enable(m, 0);
    m->training = 0;
    int rc = cl_ft_grpo_token_logps(m, &r->train, &r->grpo, r->o->batch, r->o->packing, r->o->max_len, r->fm.pad_id,
                                    &r->bt, r->gref, e);
    cl_lora_enable(m, on);
    if (rc) return -1;
    rc = cache_write(path, GREF_MAGIC, hdr, sizeof hdr, r->gref, nb, NULL, 0, e);
    progress(r, "reference log-probs of %ld tokens in %.1f s, cached in %s", r->grpo.ntok, cl_now() - t0, path);
    return rc;
}

/* ---- steps ------------------------------------------------------------------------------ */

typedef struct step_stats {
    double loss, dpo, nll, anchor, grad_norm;
    cl_dpo_metrics mt;
    cl_grpo_metrics gm;
    long tokens;
} step_stats;

/* Gathers the cached reference log-probs of the batch's sequences. */
static void batch_refs(const double *ref, const int *idx, int n, double *out)
{
    for (int i = 0; i < n; i++) {
        out[2 * i] = ref[(size_t)idx[i] * 2];
        out[2 * i + 1] = ref[(size_t)idx[i] * 2 + 1];
    }
}

/* One GRPO micro-batch (already built in r->bt from examples idx): the replies' advantages,
 * sampling and reference log-probs moved to the batch's positions. */
static int grpo_micro(run *r, const int *idx, double norm, step_stats *st, cl_err *e)
{
    const cl_ft_batch *bt = &r->bt;
    size_t cells = (size_t)bt->b * bt->t;
    float *old = malloc(sizeof(float) * cells * 2), *ref = old + cells;
    double *adv = malloc(sizeof(double) * (size_t)(bt->nseq ? bt->nseq : 1));
    int rc = old && adv ? 0 : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    if (!rc) {
        for (int q = 0; q < bt->nseq; q++) adv[q] = r->grpo.adv[idx[q]];
        cl_ft_grpo_map(bt, idx, r->grpo.off, r->grpo.old, old, 1);
        if (r->gref) cl_ft_grpo_map(bt, idx, r->grpo.off, r->gref, ref, 1);
        cl_ft_grpo_out out;
        rc = cl_ft_grpo_micro(r->fm.m, bt, &r->o->grpo, adv, old, r->gref ? ref : NULL, norm, &out, e);
        st->loss += out.loss;
        st->gm.pg_loss += out.mt.pg_loss;
        st->gm.kl += out.mt.kl;
        st->gm.clipfrac += out.mt.clipfrac;
    }
    free(old);
    free(adv);
    return rc;
}

static int train_step(run *r, double lr, step_stats *st, cl_err *e)
{
    const cl_ft_opts *o = r->o;
    cl_llama *m = r->fm.m;
    long epoch = r->step / r->spe, k = r->step % r->spe;
    if (r->plan.epoch != epoch) cl_ft_plan_epoch(&r->plan, epoch, o->seed);
    int b0 = (int)k * o->grad_accum, b1 = b0 + o->grad_accum;
    if (b1 > r->plan.nbatches) b1 = r->plan.nbatches;
    long norm = 0, pairs = 0, chosen = 0;
    for (int b = b0; b < b1; b++) {
        int bi = r->plan.order[b];
        const int *idx = r->plan.sorted + r->plan.start[bi];
        norm += cl_ft_loss_tokens(&r->train, idx, r->plan.count[bi], 0);
        chosen += cl_ft_loss_tokens(&r->train, idx, r->plan.count[bi], 1);
        pairs += r->plan.count[bi];
    }
    memset(st, 0, sizeof *st);
    cl_llama_zero_grad(m);
    m->training = 1;
    double refb[2048], wsum = 0;
    for (int b = b0; b < b1; b++) {
        int bi = r->plan.order[b], cnt = r->plan.count[bi];
        const int *idx = r->plan.sorted + r->plan.start[bi];
        if (cl_ft_batch_build(&r->bt, &r->train, idx, cnt, o->packing, o->max_len, r->fm.pad_id, e)) return -1;
        st->tokens += r->bt.b * r->bt.t;
        if (o->kind == CL_FT_SFT) {
            double l;
            if (cl_ft_sft_micro(m, &r->bt, (double)norm, 1.0, &l, e)) return -1;
            st->loss += l;
            continue;
        }
        if (o->kind == CL_FT_GRPO) {
            if (grpo_micro(r, idx, (double)norm, st, e)) return -1;
            continue;
        }
        cl_ft_dpo_out d;
        batch_refs(r->ref, idx, cnt, refb);
        if (cl_ft_dpo_micro(m, &r->bt, &o->dpo, refb, (double)pairs, o->rpo_alpha, (double)chosen, &d, e)) return -1;
        st->dpo += d.loss;
        st->nll += d.nll;
        double w = (double)d.pairs / pairs;
        wsum += w;
        st->mt.rewards_chosen += w * d.mt.rewards_chosen;
        st->mt.rewards_rejected += w * d.mt.rewards_rejected;
        st->mt.rewards_margins += w * d.mt.rewards_margins;
        st->mt.rewards_accuracies += w * d.mt.rewards_accuracies;
        st->mt.logps_chosen += w * d.mt.logps_chosen;
        st->mt.logps_rejected += w * d.mt.logps_rejected;
    }
    st->loss += st->dpo + o->rpo_alpha * st->nll;
    if (r->anchor.n) {
        long a = r->step, ae = a / r->aplan.nbatches;
        if (r->aplan.epoch != ae) cl_ft_plan_epoch(&r->aplan, ae, o->seed ^ 0x616e63686f72ull);
        int bi = r->aplan.order[a % r->aplan.nbatches], cnt = r->aplan.count[bi];
        const int *idx = r->aplan.sorted + r->aplan.start[bi];
        double l;
        if (cl_ft_batch_build(&r->bt, &r->anchor, idx, cnt, o->packing, o->max_len, r->fm.pad_id, e) ||
            cl_ft_sft_micro(m, &r->bt, (double)cl_ft_loss_tokens(&r->anchor, idx, cnt, 0), o->anchor_weight, &l, e))
            return -1;
        st->tokens += r->bt.b * r->bt.t;
        st->anchor = l / o->anchor_weight;
        st->loss += l;
    }
    m->training = 0;
    st->grad_norm = o->clip > 0 ? cl_llama_clip_grad_norm(m, r->tr, r->ntr, o->clip) : cl_llama_grad_norm(m, r->tr, r->ntr);
    if (!isfinite(st->loss) || !isfinite(st->grad_norm)) {
        char last[64] = "none";
        ssize_t n = readlink(rpath(r, "last"), last, sizeof last - 1);
        if (n > 0) last[n] = 0;
        return cl_err_set(e, CL_EXIT_SOFTWARE, "step %ld: the loss is %g (gradient norm %g); stopped without updating. "
                          "The last good checkpoint is %s/%s", r->step + 1, st->loss, st->grad_norm, o->run_dir,
                          n > 0 ? last : "(none written yet)");
    }
    cl_llama_adamw_step(m, &o->adamw, r->tr, r->ntr, r->adam_t0 + r->step + 1, lr);
    return 0;
}

typedef struct eval_stats {
    double loss;
    cl_dpo_metrics mt;
} eval_stats;

static int evaluate(run *r, eval_stats *ev, cl_err *e)
{
    cl_llama *m = r->fm.m;
    m->training = 0;
    memset(ev, 0, sizeof *ev);
    double lp[2048], tok = 0;
    int len[2048];
    for (int b = 0; b < r->eplan.nbatches; b++) {
        const int *idx = r->eplan.sorted + r->eplan.start[b];
        int cnt = r->eplan.count[b];
        if (cl_ft_batch_build(&r->bt, &r->eval, idx, cnt, r->o->packing, r->o->max_len, r->fm.pad_id, e) ||
            cl_ft_seq_logps(m, &r->bt, lp, len, e))
            return -1;
        if (r->o->kind == CL_FT_SFT) {
            for (int q = 0; q < r->bt.nseq; q++) {
                ev->loss -= lp[q];
                tok += len[q];
            }
            continue;
        }
        double ref[2048], pc[1024], pr[1024], rc[1024], rr[1024];
        int lc[1024], lr[1024];
        batch_refs(r->eref, idx, cnt, ref);
        for (int k = 0; k < cnt; k++) {
            pc[k] = lp[2 * k], pr[k] = lp[2 * k + 1], rc[k] = ref[2 * k], rr[k] = ref[2 * k + 1];
            lc[k] = len[2 * k], lr[k] = len[2 * k + 1];
        }
        cl_dpo_metrics mt;
        cl_dpo_loss(&r->o->dpo, cnt, pc, pr, rc, rr, lc, lr, NULL, NULL, &mt);
        double w = (double)cnt / r->eval.n;
        ev->loss += w * mt.loss;
        ev->mt.rewards_accuracies += w * mt.rewards_accuracies;
        ev->mt.rewards_margins += w * mt.rewards_margins;
        ev->mt.rewards_chosen += w * mt.rewards_chosen;
        ev->mt.rewards_rejected += w * mt.rewards_rejected;
    }
    if (r->o->kind == CL_FT_SFT) ev->loss = tok > 0 ? ev->loss / tok : 0;
    return 0;
}

/* CPU seconds of the whole process (every thread): a load-independent cost for benchmarks. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_eta(double s, char *b, size_t n)
{
    if (s < 60)
        snprintf(b, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(b, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(b, n, "%dh%02dm", (int)s / 3600, (int)s / 60 % 60);
}

static int log_step(run *r, const step_stats *st, double lr, cl_err *e)
{
    double el = cl_now() - r->t0, tps = el > 0 ? r->tokens / el : 0;
    long done = r->step - r->start_step;
    double eta = done > 0 ? el / done * (r->total - r->step) : 0;
    double epoch = (double)r->step / r->spe;
    jv rec = JV_OBJECT(jv_string("step"), jv_number((double)r->step), jv_string("epoch"), jv_number(epoch),
                       jv_string("lr"), jv_number(lr), jv_string("loss"), jv_number(st->loss), jv_string("grad_norm"),
                       jv_number(st->grad_norm), jv_string("tokens"), jv_number((double)st->tokens));
    if (r->o->kind == CL_FT_PAIRS) {
        rec = cl_json_set_num(rec, "dpo_loss", st->dpo);
        rec = cl_json_set_num(rec, "rewards/chosen", st->mt.rewards_chosen);
        rec = cl_json_set_num(rec, "rewards/rejected", st->mt.rewards_rejected);
        rec = cl_json_set_num(rec, "rewards/margins", st->mt.rewards_margins);
        rec = cl_json_set_num(rec, "rewards/accuracies", st->mt.rewards_accuracies);
        rec = cl_json_set_num(rec, "logps/chosen", st->mt.logps_chosen);
        rec = cl_json_set_num(rec, "logps/rejected", st->mt.logps_rejected);
        if (r->o->rpo_alpha > 0) rec = cl_json_set_num(rec, "nll", st->nll);
    }
    if (r->o->kind == CL_FT_GRPO) {
        rec = cl_json_set_num(rec, "pg_loss", st->gm.pg_loss);
        rec = cl_json_set_num(rec, "kl", st->gm.kl);
        rec = cl_json_set_num(rec, "pg_clipfrac", st->gm.clipfrac);
    }
    if (r->anchor.n) rec = cl_json_set_num(rec, "anchor_loss", st->anchor);
    rec = cl_json_set_num(rec, "tokens_per_s", tps);
    rec = cl_json_set_num(rec, "elapsed_s", el);
    rec = cl_json_set_num(rec, "cpu_s", cpu_seconds() - r->cpu0);
    if (emit(r, rec, e)) return -1;
    int due = r->o->progress_every > 0 && cl_now() - r->last_line >= r->o->progress_every;
    if (r->o->log_every > 0 && (r->step % r->o->log_every == 0 || r->step == r->total || done == 1 || due)) {
        r->last_line = cl_now();
        char eb[32], extra[160] = "";
        fmt_eta(eta, eb, sizeof eb);
        if (r->o->kind == CL_FT_PAIRS)
            snprintf(extra, sizeof extra, " acc %.2f margin %.4f", st->mt.rewards_accuracies, st->mt.rewards_margins);
        if (r->o->kind == CL_FT_GRPO)
            snprintf(extra, sizeof extra, " pg %.4f kl %.4g clipped %.2f", st->gm.pg_loss, st->gm.kl, st->gm.clipfrac);
        progress(r, "step %ld/%ld epoch %.2f loss %.4f%s lr %.3g %.0f tok/s eta %s", r->step, r->total, epoch, st->loss,
                 extra, lr, tps, eb);
    }
    return 0;
}

static int maybe_eval(run *r, int force, int *is_best, cl_err *e)
{
    *is_best = 0;
    if (!r->eval.n || (!force && (r->o->eval_every <= 0 || r->step % r->o->eval_every))) return 0;
    eval_stats ev;
    if (evaluate(r, &ev, e)) return -1;
    if (r->best_step == 0 || ev.loss < r->best_eval) {
        r->best_eval = ev.loss;
        r->best_step = r->step;
        *is_best = 1;
    }
    jv rec = JV_OBJECT(jv_string("step"), jv_number((double)r->step), jv_string("eval_loss"), jv_number(ev.loss));
    if (r->o->kind == CL_FT_PAIRS) {
        rec = cl_json_set_num(rec, "eval_rewards/accuracies", ev.mt.rewards_accuracies);
        rec = cl_json_set_num(rec, "eval_rewards/margins", ev.mt.rewards_margins);
        progress(r, "eval at step %ld: loss %.4f acc %.2f margin %.4f%s", r->step, ev.loss, ev.mt.rewards_accuracies,
                 ev.mt.rewards_margins, *is_best ? " (best)" : "");
    } else {
        progress(r, "eval at step %ld: loss %.4f%s", r->step, ev.loss, *is_best ? " (best)" : "");
    }
    return emit(r, rec, e);
}

static int finish(run *r, cl_err *e)
{
    const cl_ft_opts *o = r->o;
    char dir[4400];
    cl_ft_path(dir, sizeof dir, NULL, rpath(r, "final"));
    remove_flat_dir(dir);
    cl_llama_sync(r->fm.m, CL_SYNC_TO_HOST);
    if (o->full ? cl_ft_model_save(&r->fm, dir, e) : cl_ft_model_save_adapter(&r->fm, dir, e)) return -1;
    progress(r, "%s written to %s", o->full ? "model" : "adapter", dir);
    if (o->gguf && !o->full) {
        if (cl_ft_model_export_gguf_lora(&r->fm, rpath(r, "adapter.gguf"), e)) return -1;
        progress(r, "GGUF adapter written to %s", r->path);
    }
    if (o->merge && !o->full) {
        cl_lora_merge(r->fm.m);
        cl_ft_path(dir, sizeof dir, NULL, rpath(r, "merged"));
        if (cl_ft_model_save(&r->fm, dir, e)) return -1;
        progress(r, "merged model written to %s", dir);
    }
    if (o->gguf && (o->full || o->merge)) {
        if (cl_ft_model_export_gguf(&r->fm, o->gguf_type, rpath(r, "model.gguf"), e)) return -1;
        progress(r, "GGUF model written to %s", r->path);
    }
    return 0;
}

/* The newest complete checkpoint: directories appear only by rename, so any checkpoint-N is
 * whole; the `last` link may lag one checkpoint behind when a kill fell between the two. */
static int newest_checkpoint(run *r, char *name, size_t size)
{
    DIR *d = opendir(r->o->run_dir);
    struct dirent *de;
    name[0] = 0;
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, "checkpoint-", 11) && strlen(de->d_name) < size && strcmp(de->d_name, name) > 0)
            cl_ft_path(name, size, NULL, de->d_name);
    if (d) closedir(d);
    return name[0] != 0;
}

/* mkdir -p */
static int make_dirs(const char *dir, cl_err *e)
{
    char p[4400];
    cl_ft_path(p, sizeof p, NULL, dir);
    for (char *c = p + 1;; c++) {
        int end = *c == 0;
        if (*c != '/' && !end) continue;
        *c = 0;
        if (mkdir(p, 0777) && errno != EEXIST) return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", p, strerror(errno));
        if (end) return 0;
        *c = '/';
    }
}

static int setup(run *r, cl_err *e)
{
    const cl_ft_opts *o = r->o;
    char last[4400] = "", name[256];
    if (make_dirs(o->run_dir, e)) return -1;
    int has_last = newest_checkpoint(r, name, sizeof name);
    if (o->resume && !has_last) return cl_err_set(e, CL_EXIT_NOINPUT, "%s: no checkpoint to resume from", o->run_dir);
    if (!o->resume && has_last)
        return cl_err_set(e, CL_EXIT_USAGE, "%s already holds a run; resume it with --resume or use another directory",
                          o->run_dir);
    if (o->resume) cl_ft_path(last, sizeof last, o->run_dir, name);
    if (o->args_json && cl_ft_write_file(rpath(r, "args.json"), o->args_json, strlen(o->args_json), e)) return -1;
    /* leftovers of a run killed while writing a checkpoint are never the latest: drop them */
    DIR *d = opendir(o->run_dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, ".tmp-", 5)) remove_flat_dir(rpath(r, de->d_name));
    if (d) closedir(d);
    r->metrics = fopen(rpath(r, "metrics.jsonl"), o->resume ? "a" : "w");
    if (!r->metrics) return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", r->path, strerror(errno));
    r->opts_hash = opts_hash(o);
    if (load_model(r, last, e)) return -1;
    /* before read_state: a resumed run's own moments replace these, the step offset stays */
    if (o->optimizer_from && load_optimizer(r, o->optimizer_from, e)) return -1;
    if (!o->data) return 0;
    if (o->device) {
        if (o->device->attach(o->device, r->fm.m, e)) return -1;
        progress(r, "training on %s", o->device->name);
    }
    if (load_data(r, &r->train, o->data, o->kind, o->kind == CL_FT_SFT ? "SFT" : o->kind == CL_FT_GRPO ? "reply" : "pair",
                  e))
        return -1;
    if (o->eval_data) {
        if (load_data(r, &r->eval, o->eval_data, o->kind, "eval", e)) return -1;
    } else if (o->eval_split > 0) {
        int cnt = (int)lround(o->eval_split * r->train.n);
        if (cnt < 1) cnt = 1;
        if (cnt >= r->train.n) return cl_err_set(e, CL_EXIT_USAGE, "--eval-split %g leaves no training rows", o->eval_split);
        cl_ft_data_split(&r->train, &r->eval, cnt, o->seed);
    }
    if (o->anchor && load_data(r, &r->anchor, o->anchor, CL_FT_SFT, "anchor", e)) return -1;
    if (cl_ft_plan_new(&r->plan, &r->train, o->batch, e)) return -1;
    if (r->eval.n && cl_ft_plan_new(&r->eplan, &r->eval, o->batch, e)) return -1;
    if (r->anchor.n && cl_ft_plan_new(&r->aplan, &r->anchor, o->batch, e)) return -1;
    r->spe = (r->plan.nbatches + o->grad_accum - 1) / o->grad_accum;
    r->total = o->max_steps > 0 ? o->max_steps : (long)o->epochs * r->spe;
    r->warmup = o->warmup_steps >= 0 ? o->warmup_steps : (long)ceil(o->warmup_ratio * (double)r->total);
    if (o->kind == CL_FT_PAIRS && refs(r, e)) return -1;
    if (o->kind == CL_FT_GRPO && grpo_refs(r, e)) return -1;
    /* TRL's disable_dropout for DPO; GRPO's ratio needs the policy the sampler ran */
    if (o->kind != CL_FT_SFT) r->fm.m->lora_dropout = 0;
    if (o->resume) {
        if (read_state(r, last, e)) return -1;
        cl_llama_sync(r->fm.m, CL_SYNC_TO_DEVICE); /* the moments just read */
        progress(r, "resuming %s at step %ld of %ld", last, r->step, r->total);
    }
    return 0;
}

static int write_stats(run *r, cl_err *e)
{
    jv st = jv_object();
    const char *keys[] = {"rows", "examples", "eval_examples", "truncated", "no_loss_rows", "steps", "steps_run",
                          "tokens", "seconds", "last_loss", "trainable"};
    double vals[] = {(double)r->train.rows, r->train.n, r->eval.n, (double)r->train.truncated,
                     (double)r->train.no_loss, (double)r->step, (double)(r->step - r->start_step), (double)r->tokens,
                     r->t0 > 0 ? cl_now() - r->t0 : 0, r->tot.last_loss, r->fm.m ? (double)r->fm.m->n_train : 0};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) st = cl_json_set_num(st, keys[i], vals[i]);
    if (r->best_step > 0) {
        st = cl_json_set_num(st, "best_step", (double)r->best_step);
        st = cl_json_set_num(st, "best_eval_loss", r->best_eval);
    }
    size_t len;
    char *s = cl_json_dump(&st, &len);
    jv_free(st);
    int rc = s ? cl_ft_write_file(r->o->stats, s, len, e) : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    free(s);
    return rc;
}

/* SIGINT and SIGTERM while training: the first lets the current step finish, then the loop
 * saves a checkpoint and stops with 128 + the signal (130, 143); a second one takes the
 * signal's default action at once.  A handler can only set a flag and write(2) a message
 * made beforehand, hence these statics. */
static volatile sig_atomic_t stop_signal;
static char stop_msg[160];

static void on_stop_signal(int sig)
{
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
    ssize_t w = write(STDERR_FILENO, stop_msg, strlen(stop_msg));
    (void)w; /* nothing to do in a handler if stderr is gone */
}

static void catch_stop_signals(int on, struct sigaction old[2])
{
    static const int sigs[2] = {SIGINT, SIGTERM};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART; /* checkpoint and metrics writes are not cut short */
    sigemptyset(&sa.sa_mask);
    snprintf(stop_msg, sizeof stop_msg, "\n%s: finishing the current step to save a checkpoint; "
             "a second signal aborts at once\n", cl_progname());
    for (int i = 0; i < 2; i++)
        sigaction(sigs[i], on ? &sa : &old[i], on ? &old[i] : NULL);
}

/* The interrupted run's checkpoint (unless this step already wrote one) and the error that
 * ends cl_ft_run: where the run stopped and the command that continues it. */
static int stop_on_signal(run *r, int saved, cl_err *e)
{
    int sig = stop_signal;
    if (!saved && save_checkpoint(r, e)) return -1;
    return cl_err_set(e, 128 + sig, "interrupted by %s after step %ld of %ld; checkpoint-%06ld saved. "
                      "Continue with: cl-finetune --resume %s", sig == SIGINT ? "SIGINT" : "SIGTERM", r->step,
                      r->total, r->step, r->o->run_dir);
}

int cl_ft_run(const cl_ft_opts *o, cl_err *e)
{
    run *r = calloc(1, sizeof *r);
    if (!r) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    r->o = o;
    int rc = setup(r, e);
    if (!rc && o->data) {
        progress(r, "%s %s of %s: %d rows, %d micro-batches of %d x %d accumulated, %ld steps (%ld per epoch), "
                 "%ld trainable values", o->kind == CL_FT_SFT ? "SFT" : o->kind == CL_FT_GRPO ? "GRPO" : "DPO", o->full ? "full" : "LoRA",
                 r->fm.src, r->train.n, r->plan.nbatches, o->batch, o->grad_accum, r->total, r->spe, r->fm.m->n_train);
        r->t0 = cl_now();
        r->cpu0 = cpu_seconds();
        r->start_step = r->step;
        double lr0 = o->lr;
        struct sigaction old[2];
        stop_signal = 0;
        catch_stop_signals(1, old);
        while (!rc && r->step < r->total) {
            double lr = cl_lr_at(o->sched, lr0, r->step, r->warmup, r->total);
            step_stats st;
            int best = 0;
            rc = train_step(r, lr, &st, e);
            if (rc) break;
            r->step++;
            r->tokens += st.tokens;
            r->tot.last_loss = st.loss;
            rc = log_step(r, &st, lr, e);
            if (!rc) rc = maybe_eval(r, r->step == r->total, &best, e);
            int save = best || r->step == r->total || (o->save_every > 0 && r->step % o->save_every == 0);
            if (!rc && save) rc = save_checkpoint(r, e);
            if (!rc && stop_signal && r->step < r->total) rc = stop_on_signal(r, save, e);
        }
        catch_stop_signals(0, old);
        if (!rc && r->step == r->total && r->start_step == r->total) progress(r, "the run was already complete");
    }
    if (!rc && o->data) rc = finish(r, e);
    if (!rc && o->stats) rc = write_stats(r, e);
    cl_ft_model_free(&r->fm);
    cl_ft_data_free(&r->train);
    cl_ft_data_free(&r->eval);
    cl_ft_data_free(&r->anchor);
    cl_ft_plan_free(&r->plan);
    cl_ft_plan_free(&r->eplan);
    cl_ft_plan_free(&r->aplan);
    cl_ft_batch_free(&r->bt);
    free(r->ref);
    free(r->eref);
    free(r->gref);
    cl_ft_grpo_free(&r->grpo);
    if (r->metrics) fclose(r->metrics);
    free(r);
    return rc;
}

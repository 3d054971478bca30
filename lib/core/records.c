#include "core/records.h"

#include <inttypes.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "core/rows.h"
#include "core/stream.h"

#define MAX_BAD_WARNINGS 20

struct cl_io {
    const cl_common *c;
    cl_io_opts o;
    int next_input;       /* index into c->inputs */
    cl_rows *r;
    cl_writer *w, *rejects;
    cl_filter *where, *map;
    jv pending;           /* outputs of --map not yet returned (array) */
    int pending_i;
    cl_row pending_line;  /* where the pending outputs came from */
    const char *pending_src;
    int pending_input;
    uint64_t pending_index;
    jv current;           /* the value handed out last, freed on the next call */
    cl_io_counts n;
    uint64_t bytes_in;
    double t0, last_draw;
    int drew;
    int eof;              /* every input was read to its end */
    jv extra_stats;
    char *summary_extra;
    void (*extra_fn)(void *, char *, size_t);
    void *extra_ctx;
    char where_buf[1200];
    struct batch *batch;  /* the parallel pass-through's pending lines, or NULL */
    uint64_t bytes_all;   /* size of all inputs when every one is a regular file, else 0 */
    uint64_t bytes_before;/* size of the inputs already read */
};

/* The total size of the inputs when all are regular files (stdin too), for the ETA; else 0. */
static uint64_t inputs_size(const cl_common *c)
{
    uint64_t sum = 0;
    for (int i = 0; i < (c->ninputs ? c->ninputs : 1); i++) {
        struct stat st;
        const char *p = c->ninputs ? c->inputs[i] : "-";
        int rc = strcmp(p, "-") == 0 ? fstat(STDIN_FILENO, &st) : stat(p, &st);
        if (rc != 0 || !S_ISREG(st.st_mode))
            return 0;
        sum += (uint64_t)st.st_size;
    }
    return sum;
}

cl_io *cl_io_open(const cl_common *c, const cl_io_opts *o, cl_err *e)
{
    cl_io *io = calloc(1, sizeof *io);
    if (!io) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    io->c = c;
    if (o)
        io->o = *o;
    io->pending = jv_invalid();
    io->current = jv_invalid();
    io->extra_stats = jv_object();
    io->t0 = io->last_draw = cl_now();
    io->bytes_all = inputs_size(c);
    if (c->where && !(io->where = cl_filter_new(c->where, "--where", e)))
        goto fail;
    if (c->map && !(io->map = cl_filter_new(c->map, "--map", e)))
        goto fail;
    cl_writer_opts wo = {.plain = c->plain, .level = c->level, .threads = c->threads};
    if (!(io->w = cl_writer_open(c->output, &wo, e)))
        goto fail;
    if (c->rejects) {
        cl_writer_opts ro = {.plain = 1};
        if (!(io->rejects = cl_writer_open(c->rejects, &ro, e)))
            goto fail;
    }
    return io;
fail:
    cl_io_close(io, NULL);
    return NULL;
}

static void batch_on_idle(cl_io *io);

static void sync_hook(void *ctx)
{
    cl_io *io = ctx;
    if (io->batch)
        batch_on_idle(io);
    (void)cl_writer_sync(io->w, NULL); /* a failure resurfaces at the next put */
}

/* Opens the next input.  0 = opened, 1 = no more inputs, -1 = error. */
static int open_next(cl_io *io, cl_err *e)
{
    const cl_common *c = io->c;
    if (io->r) {
        uint64_t done, total;
        if (cl_rows_progress(io->r, &done, &total))
            io->bytes_before += total;
        cl_rows_close(io->r);
        io->r = NULL;
    }
    if (c->ninputs == 0 && io->next_input == 0) {
        io->next_input = 1;
        io->r = cl_rows_open("-", io->o.json_arrays, e);
    } else if (io->next_input < c->ninputs) {
        io->r = cl_rows_open(c->inputs[io->next_input++], io->o.json_arrays, e);
    } else {
        io->eof = 1;
        return 1;
    }
    if (!io->r)
        return -1;
    cl_rows_on_idle(io->r, sync_hook, io);
    return 0;
}

/* "file:line", or "file:line: row N" for an element of a JSON array input. */
static const char *where(cl_io *io, const char *src, uint64_t lineno, uint64_t row)
{
    if (row)
        snprintf(io->where_buf, sizeof io->where_buf, "%s:%" PRIu64 ": row %" PRIu64, src, lineno, row);
    else
        snprintf(io->where_buf, sizeof io->where_buf, "%s:%" PRIu64, src, lineno);
    return io->where_buf;
}

const char *cl_rec_where(cl_io *io, const cl_rec *rec)
{
    return where(io, rec->src, rec->lineno, rec->row);
}

/* Records finished (written, failed or dropped by --shard/--where) and their total: exact once
 * the inputs are read to the end, else estimated from the share of input bytes read (0: not
 * known yet).  *estimated tells which. */
static uint64_t records_total(cl_io *io, int *estimated)
{
    *estimated = 0;
    if (io->eof)
        return io->n.read;
    uint64_t done, total;
    if (!io->bytes_all || !io->r || !cl_rows_progress(io->r, &done, &total))
        return 0;
    double frac = (double)(io->bytes_before + done) / (double)io->bytes_all;
    if (frac < 0.001 || io->n.read == 0)
        return 0;
    *estimated = 1;
    return frac >= 1 ? io->n.read : (uint64_t)((double)io->n.read / frac + 0.5);
}

static void draw_progress(cl_io *io, int final)
{
    const cl_common *c = io->c;
    if (!c->progress && !(c->progress_every > 0))
        return;
    double now = cl_now();
    if (final) {
        if (io->drew && c->progress)
            fputs("\r\033[K", stderr);
        return;
    }
    /* A terminal's line is redrawn a few times a second; plain lines come every
     * --progress seconds, the first one after that long too (short runs stay quiet). */
    if (now - io->last_draw < (c->progress ? 0.25 : c->progress_every))
        return;
    io->last_draw = now;
    double dt = now - io->t0;
    uint64_t done = io->n.written + io->n.failed + io->n.filtered;
    if (done > io->n.read)
        done = io->n.read; /* --map may make several records of one */
    int est;
    uint64_t total = records_total(io, &est);
    char line[640];
    int k = snprintf(line, sizeof line, "%s: records %" PRIu64, cl_progname(), done);
    if (total)
        k += snprintf(line + k, sizeof line - (size_t)k, "/%s%" PRIu64, est ? "~" : "", total);
    else if (io->n.read > done)
        k += snprintf(line + k, sizeof line - (size_t)k, " (%" PRIu64 " read)", io->n.read);
    k += snprintf(line + k, sizeof line - (size_t)k, ", %.1f/s", dt > 0 ? (double)done / dt : 0.0);
    if (total > done && done > 0 && dt > 0) {
        double left = dt * (double)(total - done) / (double)done;
        k += snprintf(line + k, sizeof line - (size_t)k, ", ETA %dm%02ds", (int)(left / 60), (int)left % 60);
    }
    if (!io->extra_fn)
        k += snprintf(line + k, sizeof line - (size_t)k, ", %.1f MB/s", dt > 0 ? io->bytes_in / dt / 1e6 : 0.0);
    if (io->extra_fn && k > 0 && (size_t)k + 3 < sizeof line) {
        line[k++] = ';';
        line[k++] = ' ';
        io->extra_fn(io->extra_ctx, line + k, sizeof line - (size_t)k);
    }
    if (c->progress)
        fprintf(stderr, "\r%s\033[K", line);
    else
        fprintf(stderr, "%s\n", line);
    io->drew = 1;
}

void cl_io_tick(cl_io *io) { draw_progress(io, 0); }

/* A malformed line: fatal, or reported and counted with --skip-bad. */
/* A rejected input: fatal, or reported, counted and copied to --rejects with --skip-bad.
 * msg follows the "file:line[: row N]: " prefix. */
static int reject(cl_io *io, const char *at, const char *text, size_t len, const char *msg,
                  cl_err *e)
{
    if (!io->c->skip_bad)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s", at, msg);
    io->n.rejected++;
    if (io->n.rejected <= MAX_BAD_WARNINGS && !io->c->quiet)
        cl_warn("%s: %s (skipped)", at, msg);
    else if (io->n.rejected == MAX_BAD_WARNINGS + 1 && !io->c->quiet)
        cl_warn("further malformed lines are counted, not listed");
    if (io->rejects && cl_writer_put(io->rejects, text, len, e) < 0)
        return -1;
    return 0;
}

static int bad_line(cl_io *io, const cl_row *l, const char *src, size_t off, const char *what,
                    cl_err *e)
{
    char msg[1100];
    snprintf(msg, sizeof msg, "byte %zu: %s", off + 1, what);
    return reject(io, where(io, src, l->lineno, l->row), l->text, l->len, msg, e);
}

int cl_io_reject(cl_io *io, cl_rec *rec, const char *msg, cl_err *e)
{
    if (rec->raw)
        return reject(io, cl_rec_where(io, rec), rec->raw, rec->rawlen, msg, e);
    size_t n;
    char *s = cl_json_dump(cl_rec_value(rec), &n);
    if (!s)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int rc = reject(io, cl_rec_where(io, rec), s, n, msg, e);
    free(s);
    return rc;
}

static void set_current(cl_io *io, cl_rec *rec, jv v)
{
    jv_free(io->current);
    io->current = v;
    rec->value = v;
    rec->parsed = 1;
}

/* A --map output that is not an object: fatal, or counted and reported with --skip-bad. */
static int bad_map_output(cl_io *io, const char *at, const char *kind, cl_err *e)
{
    if (!io->c->skip_bad)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: --map produced a %s, not an object", at, kind);
    io->n.rejected++;
    if (!io->c->quiet)
        cl_warn("%s: --map produced a %s, not an object (skipped)", at, kind);
    return 0;
}

/* Takes the next --map output; 1 = rec filled, 0 = none left, -1 = error. */
static int take_pending(cl_io *io, cl_rec *rec, cl_err *e)
{
    while (jv_is_valid(io->pending) && io->pending_i < jv_array_length(jv_copy(io->pending))) {
        jv v = jv_array_get(jv_copy(io->pending), io->pending_i++);
        if (jv_get_kind(v) != JV_KIND_OBJECT) {
            const char *kind = jv_kind_name(jv_get_kind(v));
            jv_free(v);
            if (bad_map_output(io, where(io, io->pending_src, io->pending_line.lineno,
                                         io->pending_line.row), kind, e) < 0)
                return -1;
            continue;
        }
        memset(rec, 0, sizeof *rec);
        rec->io_ = io;
        rec->src = io->pending_src;
        rec->input = io->pending_input;
        rec->lineno = io->pending_line.lineno;
        rec->row = io->pending_line.row;
        rec->index = io->pending_index;
        set_current(io, rec, v);
        return 1;
    }
    jv_free(io->pending);
    io->pending = jv_invalid();
    return 0;
}

static void assign_id(cl_io *io, cl_rec *rec)
{
    const jv *v = cl_rec_value(rec);
    if (cl_json_has(v, "id"))
        return;
    /* The hash of the record's own bytes: the same record gets the same id in every run and
     * every shard, whatever its position. */
    size_t n = 0;
    char *text = rec->raw ? NULL : cl_json_dump(v, &n);
    uint64_t h = text ? cl_hash64(text, n, 0) : cl_hash64(rec->raw, rec->rawlen, 0);
    free(text);
    char id[24];
    snprintf(id, sizeof id, "%016" PRIx64, h);
    set_current(io, rec, cl_json_set_str(jv_copy(*v), "id", id));
    rec->raw = NULL;
}

/* Next valid, in-shard object line of the inputs: 1 = *l filled, 0 = end, -1 = error. */
static int next_line(cl_io *io, cl_row *l, const char **src, uint64_t *index, cl_err *e)
{
    for (;;) {
        if (!io->r) {
            int o = open_next(io, e);
            if (o)
                return o > 0 ? 0 : -1;
        }
        int r = cl_rows_next(io->r, l, e);
        if (r < 0)
            return -1;
        if (r == 0) {
            int o = open_next(io, e);
            if (o)
                return o > 0 ? 0 : -1;
            continue;
        }
        *src = cl_rows_name(io->r);
        io->bytes_in += l->len + 1;
        if (l->len == strspn(l->text, " \t"))
            continue; /* blank lines are not records */
        cl_json_check chk;
        if (cl_json_validate(l->text, l->len, &chk) < 0) {
            if (bad_line(io, l, *src, chk.err_off, chk.err_what, e) < 0)
                return -1;
            continue;
        }
        if (!chk.is_object) {
            if (bad_line(io, l, *src, 0, "record is not a JSON object", e) < 0)
                return -1;
            continue;
        }
        *index = io->n.read++;
        draw_progress(io, 0);
        if (io->c->shard_n) {
            uint64_t h = chk.id_len ? cl_hash64(l->text + chk.id_off, chk.id_len, 0)
                                    : cl_hash64(index, sizeof *index, 1);
            if (h % io->c->shard_n != io->c->shard_i) {
                io->n.filtered++;
                continue;
            }
        }
        return 1;
    }
}

/* --where then --map on v (consumed): 0 = filtered out, 1 = *outs is the array of resulting
 * values (v alone without --map), -1 = a jq runtime error in fe. */
static int apply_filters(cl_filter *wf, cl_filter *mf, jv v, jv *outs, cl_err *fe)
{
    if (wf) {
        int t = cl_filter_test(wf, jv_copy(v), fe);
        if (t <= 0) {
            jv_free(v);
            return t;
        }
    }
    *outs = jv_array();
    if (!mf) {
        *outs = jv_array_append(*outs, v);
        return 1;
    }
    if (cl_filter_run(mf, v, outs, fe) < 0) {
        jv_free(*outs);
        return -1;
    }
    return 1;
}

int cl_io_next(cl_io *io, cl_rec *rec, cl_err *e)
{
    for (;;) {
        int k = take_pending(io, rec, e);
        if (k) {
            if (k > 0 && io->o.assign_ids)
                assign_id(io, rec);
            return k;
        }
        cl_row l;
        const char *src;
        uint64_t index;
        int r = next_line(io, &l, &src, &index, e);
        if (r <= 0)
            return r;
        memset(rec, 0, sizeof *rec);
        rec->io_ = io;
        rec->raw = l.text;
        rec->rawlen = l.len;
        rec->src = src;
        rec->input = io->next_input - 1; /* the reader open_next opened last */
        rec->lineno = l.lineno;
        rec->row = l.row;
        rec->index = index;
        rec->value = jv_invalid();
        if (io->where || io->map) {
            cl_err fe = {0};
            jv outs;
            int t = apply_filters(io->where, io->map, jv_copy(*cl_rec_value(rec)), &outs, &fe);
            if (t < 0) {
                if (bad_line(io, &l, src, 0, fe.msg, e) < 0)
                    return -1;
                continue;
            }
            if (t == 0) {
                io->n.filtered++;
                continue;
            }
            if (io->map) {
                io->pending = outs;
                io->pending_i = 0;
                io->pending_line = l;
                io->pending_src = src;
                io->pending_input = io->next_input - 1;
                io->pending_index = index;
                continue;
            }
            jv_free(outs); /* --where alone: the record keeps its original bytes */
        }
        if (io->o.assign_ids)
            assign_id(io, rec);
        return 1;
    }
}

const jv *cl_rec_value(cl_rec *rec)
{
    if (!rec->parsed) {
        /* Only lines that cl_json_validate accepted reach here, so parsing cannot fail. */
        set_current(rec->io_, rec, cl_json_parse(rec->raw, rec->rawlen));
    }
    return &rec->value;
}

int cl_io_put_rec(cl_io *io, cl_rec *rec, cl_err *e)
{
    if (rec->raw) {
        io->n.written++;
        return cl_writer_put(io->w, rec->raw, rec->rawlen, e);
    }
    return cl_io_put(io, jv_copy(*cl_rec_value(rec)), e);
}

int cl_io_put(cl_io *io, jv v, cl_err *e)
{
    size_t n;
    char *s = cl_json_dump(&v, &n);
    jv_free(v);
    if (!s)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int rc = cl_writer_put(io->w, s, n, e);
    free(s);
    if (rc == 0)
        io->n.written++;
    return rc;
}

int cl_io_fail(cl_io *io, const cl_rec *rec, jv v, const char *msg, cl_err *e)
{
    io->n.failed++;
    /* Even -q reports a record that goes nowhere else. */
    if (!io->c->quiet || (io->o.failed_aside && !io->rejects))
        cl_warn("%s: %s", where(io, rec->src, rec->lineno, rec->row), msg);
    jv err = cl_json_set_str(cl_json_set_str(jv_object(), "tool", cl_progname()), "message", msg);
    v = cl_json_set(v, "error", err);
    if (!io->rejects && io->o.failed_aside) {
        jv_free(v);
        return 0;
    }
    if (io->rejects) {
        size_t n;
        char *s = cl_json_dump(&v, &n);
        jv_free(v);
        int rc = s ? cl_writer_put(io->rejects, s, n, e) : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        free(s);
        return rc;
    }
    int rc = cl_io_put(io, v, e);
    if (rc == 0)
        io->n.written--; /* counted as failed, not as written */
    return rc;
}

int cl_io_sync(cl_io *io, cl_err *e) { return cl_writer_sync(io->w, e); }

void cl_io_stat(cl_io *io, const char *key, jv value)
{
    io->extra_stats = cl_json_set(io->extra_stats, key, value);
}

void cl_io_summary_extra(cl_io *io, const char *text)
{
    free(io->summary_extra);
    io->summary_extra = strdup(text); /* NULL (out of memory): the line only loses its tail */
}

void cl_io_progress_extra(cl_io *io, void (*fn)(void *, char *, size_t), void *ctx)
{
    io->extra_fn = fn;
    io->extra_ctx = ctx;
}

cl_io_counts cl_io_get_counts(const cl_io *io) { return io->n; }

static int write_stats(cl_io *io, double secs, uint64_t bytes_out, cl_err *e)
{
    jv s = jv_object();
    s = cl_json_set_str(s, "tool", cl_progname());
    s = cl_json_set_num(s, "records_in", (double)io->n.read);
    s = cl_json_set_num(s, "records_out", (double)io->n.written);
    s = cl_json_set_num(s, "rejected", (double)io->n.rejected);
    s = cl_json_set_num(s, "filtered", (double)io->n.filtered);
    s = cl_json_set_num(s, "failed", (double)io->n.failed);
    s = cl_json_set_num(s, "bytes_in", (double)io->bytes_in);
    s = cl_json_set_num(s, "bytes_out", (double)bytes_out);
    s = cl_json_set_num(s, "seconds", secs);
    s = jv_object_merge(s, jv_copy(io->extra_stats));
    FILE *f = fopen(io->c->stats, "w");
    if (!f) {
        jv_free(s);
        return cl_err_set(e, CL_EXIT_IOERR, "%s: cannot write stats", io->c->stats);
    }
    jv_dumpf(s, f, JV_PRINT_PRETTY | JV_PRINT_SPACE1);
    fputc('\n', f);
    if (fclose(f) != 0)
        return cl_err_set(e, CL_EXIT_IOERR, "%s: cannot write stats", io->c->stats);
    return 0;
}

int cl_io_close(cl_io *io, cl_err *e)
{
    if (!io)
        return 0;
    int rc = 0;
    cl_err local = {0};
    if (!e)
        e = &local;
    double secs = cl_now() - io->t0;
    draw_progress(io, 1);
    uint64_t bytes_out = io->w ? cl_writer_bytes(io->w) : 0;
    if (io->w && cl_writer_close(io->w, e) < 0)
        rc = e->code;
    if (io->rejects && cl_writer_close(io->rejects, rc ? NULL : e) < 0 && !rc)
        rc = e->code;
    if (io->c->stats && !rc && write_stats(io, secs, bytes_out, e) < 0)
        rc = e->code;
    if (!io->c->quiet && rc != CL_EXIT_EPIPE) {
        fprintf(stderr, "%s: %" PRIu64 " records in, %" PRIu64 " out", cl_progname(), io->n.read,
                io->n.written);
        if (io->n.filtered)
            fprintf(stderr, ", %" PRIu64 " filtered", io->n.filtered);
        if (io->n.rejected)
            fprintf(stderr, ", %" PRIu64 " malformed skipped", io->n.rejected);
        /* Where the failed records went, so that in, out and failed add up. */
        if (io->n.failed)
            fprintf(stderr, ", %" PRIu64 " failed (%s)", io->n.failed,
                    io->c->rejects       ? "in the rejects file"
                    : io->o.failed_aside ? "reported above, not written"
                                         : "in the output, with an \"error\" field");
        fprintf(stderr, ", %.2f s%s%s\n", secs, io->summary_extra ? "; " : "",
                io->summary_extra ? io->summary_extra : "");
    }
    cl_rows_close(io->r);
    cl_filter_free(io->where);
    cl_filter_free(io->map);
    jv_free(io->pending);
    jv_free(io->current);
    jv_free(io->extra_stats);
    free(io->summary_extra);
    if (!rc && io->n.failed)
        rc = CL_EXIT_FAILED;
    free(io);
    return rc;
}

/* ---- parallel pass-through --------------------------------------------------------------
 * With --where/--map, making libjq values, running the filter and printing dominate, so a
 * pass-through runs them on batches of lines across OpenMP threads, each thread with its own
 * compiled filters (jv values are never shared between threads), and writes the results in
 * input order. */

#define BATCH_LINES 2048
#define BATCH_BYTES (16u << 20)

typedef struct batch_item {
    char *text;            /* a copy of the input line */
    size_t len;
    const char *src;       /* owned by the batch's name list */
    uint64_t lineno, row;
    int status;            /* 1 outputs, 0 filtered out, -1 jq error (message in out) */
    char *out;             /* lines "O<json>" (an output) or "N<kind>" (not an object) */
    size_t outlen;
} batch_item;

static void filter_item(cl_filter *wf, cl_filter *mf, batch_item *it)
{
    cl_err fe = {0};
    jv outs;
    it->status = apply_filters(wf, mf, cl_json_parse(it->text, it->len), &outs, &fe);
    if (it->status < 0) {
        it->out = strdup(fe.msg);
        return;
    }
    if (it->status == 0)
        return;
    if (!mf) { /* --where alone: the record keeps its original bytes */
        jv_free(outs);
        if ((it->out = malloc(it->len + 2))) {
            it->out[0] = 'O';
            memcpy(it->out + 1, it->text, it->len);
            it->out[it->len + 1] = '\n';
            it->outlen = it->len + 2;
        }
        return;
    }
    /* Outputs are written straight into the item's buffer; room for about the input up front,
     * and a non-NULL buffer even when the program has no output. */
    cl_buf b = {0};
    if (cl_grow((void **)&b.p, &b.cap, it->len + 64, 1) < 0) {
        jv_free(outs);
        return;
    }
    jv_array_foreach(outs, i, v) {
        if (jv_get_kind(v) == JV_KIND_OBJECT) {
            cl_buf_putc(&b, 'O');
            cl_json_write(&b, &v);
        } else {
            cl_buf_putc(&b, 'N');
            cl_buf_puts(&b, jv_kind_name(jv_get_kind(v)));
        }
        cl_buf_putc(&b, '\n');
        jv_free(v);
        (void)i;
    }
    jv_free(outs);
    if (b.oom) {
        free(b.p);
        return;
    }
    it->out = b.p;
    it->outlen = b.n;
}

/* Writes one filtered item in order; -1 on a fatal error. */
static int emit_item(cl_io *io, batch_item *it, cl_err *e)
{
    if (it->status == 0) {
        io->n.filtered++;
        return 0;
    }
    const char *at = where(io, it->src, it->lineno, it->row);
    if (it->status < 0) {
        char msg[1100];
        snprintf(msg, sizeof msg, "byte 1: %s", it->out ? it->out : "jq error");
        return reject(io, at, it->text, it->len, msg, e);
    }
    if (!it->out)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    for (char *p = it->out, *end = it->out + it->outlen; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (*p == 'N') {
            *nl = 0;
            if (bad_map_output(io, at, p + 1, e) < 0)
                return -1;
        } else {
            if (cl_writer_put(io->w, p + 1, (size_t)(nl - p - 1), e) < 0)
                return -1;
            io->n.written++;
        }
        p = nl + 1;
    }
    return 0;
}

typedef struct batch {
    int nt;
    cl_filter **wf, **mf;  /* per thread; [0] are the io's own */
    batch_item *items;
    int n;
    size_t bytes;
    char **names;          /* input names the items point to */
    size_t nnames;
    int failed;            /* a flush from the idle hook failed; error in err */
    cl_err err;
} batch;

/* Filters the gathered items in parallel and writes them in order. */
static int batch_flush(cl_io *io, batch *bt, cl_err *e)
{
    int rc = 0;
#pragma omp parallel for schedule(dynamic, 16) num_threads(bt->nt)
    for (int i = 0; i < bt->n; i++) {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        filter_item(bt->wf[t], bt->mf[t], &bt->items[i]);
    }
    for (int i = 0; i < bt->n && rc == 0; i++)
        if (emit_item(io, &bt->items[i], e) < 0)
            rc = -1;
    for (int i = 0; i < bt->n; i++) {
        free(bt->items[i].text);
        free(bt->items[i].out);
    }
    bt->n = 0;
    bt->bytes = 0;
    return rc;
}

/* The input stalls: write what is gathered now rather than when the batch fills. */
static void batch_on_idle(cl_io *io)
{
    batch *bt = io->batch;
    if (bt->n && !bt->failed && batch_flush(io, bt, &bt->err) < 0)
        bt->failed = 1;
}

static int batch_add(batch *bt, const cl_row *l, const char *src, cl_err *e)
{
    if (!bt->nnames || strcmp(bt->names[bt->nnames - 1], src) != 0) {
        char **nn = realloc(bt->names, (bt->nnames + 1) * sizeof *nn);
        if (!nn)
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        bt->names = nn;
        if (!(nn[bt->nnames] = strdup(src)))
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        bt->nnames++;
    }
    batch_item *it = &bt->items[bt->n];
    memset(it, 0, sizeof *it);
    if (!(it->text = malloc(l->len + 1)))
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    memcpy(it->text, l->text, l->len + 1);
    it->len = l->len;
    it->src = bt->names[bt->nnames - 1];
    it->lineno = l->lineno;
    it->row = l->row;
    bt->n++;
    bt->bytes += l->len;
    return 0;
}

static int passthrough_parallel(cl_io *io, int nt, cl_err *e)
{
    batch bt = {.nt = nt};
    int rc = 0;
    bt.wf = calloc((size_t)nt, sizeof *bt.wf);
    bt.mf = calloc((size_t)nt, sizeof *bt.mf);
    bt.items = calloc(BATCH_LINES, sizeof *bt.items);
    if (!bt.wf || !bt.mf || !bt.items) {
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        goto done;
    }
    /* Compiled here, in one thread: jq's first compile initialises global state. */
    bt.wf[0] = io->where;
    bt.mf[0] = io->map;
    for (int t = 1; t < nt; t++)
        if ((io->c->where && !(bt.wf[t] = cl_filter_new(io->c->where, "--where", e))) ||
            (io->c->map && !(bt.mf[t] = cl_filter_new(io->c->map, "--map", e)))) {
            rc = -1;
            goto done;
        }
    io->batch = &bt; /* the idle hook flushes what is gathered when the input stalls */
    for (;;) {
        cl_row l;
        const char *src;
        uint64_t index;
        int r = next_line(io, &l, &src, &index, e);
        if (bt.failed) {
            *e = bt.err;
            rc = -1;
            break;
        }
        if (r <= 0) {
            rc = r < 0 ? -1 : batch_flush(io, &bt, e);
            break;
        }
        if (batch_add(&bt, &l, src, e) < 0) {
            rc = -1;
            break;
        }
        if ((bt.n == BATCH_LINES || bt.bytes >= BATCH_BYTES) && batch_flush(io, &bt, e) < 0) {
            rc = -1;
            break;
        }
    }
    io->batch = NULL;
done:
    for (int i = 0; i < bt.n; i++)
        free(bt.items[i].text);
    for (int t = 1; t < nt; t++) {
        if (bt.wf)
            cl_filter_free(bt.wf[t]);
        if (bt.mf)
            cl_filter_free(bt.mf[t]);
    }
    for (size_t i = 0; i < bt.nnames; i++)
        free(bt.names[i]);
    free(bt.names);
    free(bt.items);
    free(bt.wf);
    free(bt.mf);
    return rc;
}

int cl_io_passthrough(cl_io *io, cl_err *e)
{
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    if ((io->where || io->map) && !io->o.assign_ids && nt > 1)
        return passthrough_parallel(io, nt, e);
    cl_rec rec;
    int r;
    while ((r = cl_io_next(io, &rec, e)) > 0)
        if (cl_io_put_rec(io, &rec, e) < 0)
            return -1;
    return r;
}

int cl_io_finish(cl_io *io, int status, cl_err *e)
{
    if (status < 0) {
        int code = e->code ? e->code : CL_EXIT_SOFTWARE;
        if (code != CL_EXIT_EPIPE)
            cl_warn("%s", e->msg);
        cl_io_close(io, NULL);
        return code;
    }
    int rc = cl_io_close(io, e);
    if (rc > 1 && rc != CL_EXIT_EPIPE)
        cl_warn("%s", e->msg);
    return rc;
}

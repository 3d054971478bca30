#include "core/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define IN_CHUNK (1u << 17)

struct cl_reader {
    int fd;
    int own_fd;
    char *name;
    int is_zstd;
    int eof;             /* the fd reached end of file */
    ZSTD_DCtx *dctx;
    size_t last_ret;     /* last ZSTD_decompressStream return: 0 = at a frame boundary */
    int out_full;        /* previous decompress call filled its output completely */
    unsigned char *in;   /* compressed bytes read from fd (zstd only) */
    size_t in_pos, in_len;
    char *buf;           /* decompressed (or plain) bytes */
    size_t cap, start, end;
    uint64_t lineno, offset;
    void (*idle_fn)(void *);
    void *idle_ctx;
};

static ssize_t read_fd(cl_reader *r, void *dst, size_t n, cl_err *e)
{
    if (r->idle_fn) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 0)
            r->idle_fn(r->idle_ctx);
    }
    for (;;) {
        ssize_t k = read(r->fd, dst, n);
        if (k >= 0)
            return k;
        if (errno == EINTR)
            continue;
        cl_err_set(e, CL_EXIT_IOERR, "%s: read error: %s", r->name, strerror(errno));
        return -1;
    }
}

const char *cl_reader_name(const cl_reader *r) { return r->name; }

void cl_reader_on_idle(cl_reader *r, void (*fn)(void *), void *ctx)
{
    r->idle_fn = fn;
    r->idle_ctx = ctx;
}

static int grow(cl_reader *r, size_t need, cl_err *e)
{
    if (r->cap - r->end >= need)
        return 0;
    if (r->start > 0) { /* compact first */
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
        if (r->cap - r->end >= need)
            return 0;
    }
    size_t cap = r->cap ? r->cap : IN_CHUNK * 2;
    while (cap - r->end < need)
        cap *= 2;
    char *b = realloc(r->buf, cap + 1);
    if (!b)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory (line longer than %zu bytes)",
                          r->name, r->cap);
    r->buf = b;
    r->cap = cap;
    return 0;
}

cl_reader *cl_reader_open(const char *path, cl_err *e)
{
    cl_reader *r = calloc(1, sizeof *r);
    if (!r) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    if (!path || strcmp(path, "-") == 0) {
        r->fd = STDIN_FILENO;
        r->name = strdup("<stdin>");
    } else {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        r->own_fd = 1;
        r->name = strdup(path);
        if (r->fd < 0) {
            cl_err_set(e, CL_EXIT_NOINPUT, "%s: %s", path, strerror(errno));
            free(r->name);
            free(r);
            return NULL;
        }
    }
    if (grow(r, IN_CHUNK, e) < 0)
        goto fail;
    /* Sniff the first bytes: pipes cannot seek, so they stay in buf as data or move to in. */
    while (r->end < 4) {
        /* At most IN_CHUNK bytes: if this turns out to be zstd they move to r->in. */
        ssize_t k = read_fd(r, r->buf + r->end, IN_CHUNK - r->end, e);
        if (k < 0)
            goto fail;
        if (k == 0) {
            r->eof = 1;
            break;
        }
        r->end += (size_t)k;
    }
    const unsigned char *m = (const unsigned char *)r->buf;
    if (r->end >= 2 && m[0] == 0x1f && m[1] == 0x8b) {
        cl_err_set(e, CL_EXIT_DATAERR, "%s: gzip input is not supported; use zstd or plain JSONL "
                   "(zcat %s | ...)", r->name, r->name);
        goto fail;
    }
    if (r->end >= 4 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd && m[0] == 0x28)
        r->is_zstd = 1;
    else if (r->end >= 4 && (m[0] & 0xf0) == 0x50 && m[1] == 0x2a && m[2] == 0x4d && m[3] == 0x18)
        r->is_zstd = 1; /* skippable frame */
    if (r->is_zstd) {
        r->dctx = ZSTD_createDCtx();
        r->in = malloc(IN_CHUNK);
        if (!r->dctx || !r->in) {
            cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            goto fail;
        }
        memcpy(r->in, r->buf, r->end);
        r->in_len = r->end;
        r->end = 0;
    }
    return r;
fail:
    cl_reader_close(r);
    return NULL;
}

/* Appends more decompressed bytes to buf.  Returns bytes added (0 = end of input), -1 error. */
static ssize_t fill(cl_reader *r, cl_err *e)
{
    if (grow(r, IN_CHUNK, e) < 0)
        return -1;
    if (!r->is_zstd) {
        if (r->eof)
            return 0;
        ssize_t k = read_fd(r, r->buf + r->end, r->cap - r->end, e);
        if (k < 0)
            return -1;
        if (k == 0)
            r->eof = 1;
        r->end += (size_t)k;
        return k;
    }
    for (;;) {
        if (r->in_pos == r->in_len && !r->out_full) {
            if (r->eof)
                goto at_eof;
            ssize_t k = read_fd(r, r->in, IN_CHUNK, e);
            if (k < 0)
                return -1;
            r->in_pos = 0;
            r->in_len = (size_t)k;
            if (k == 0) {
                r->eof = 1;
                goto at_eof;
            }
        }
        ZSTD_inBuffer in = {r->in, r->in_len, r->in_pos};
        ZSTD_outBuffer out = {r->buf + r->end, r->cap - r->end, 0};
        size_t ret = ZSTD_decompressStream(r->dctx, &out, &in);
        if (ZSTD_isError(ret))
            return cl_err_set(e, CL_EXIT_DATAERR, "%s: corrupt zstd data near compressed byte %zu: %s",
                              r->name, r->in_pos, ZSTD_getErrorName(ret));
        r->in_pos = in.pos;
        r->last_ret = ret;
        r->out_full = out.pos == out.size;
        r->end += out.pos;
        if (out.pos > 0)
            return (ssize_t)out.pos;
    }
at_eof:
    if (r->last_ret != 0)
        return cl_err_set(e, CL_EXIT_DATAERR,
                          "%s: truncated zstd input (the last frame is incomplete)", r->name);
    return 0;
}

int cl_reader_next(cl_reader *r, cl_line *line, cl_err *e)
{
    size_t scan = r->start;
    for (;;) {
        char *nl = memchr(r->buf + scan, '\n', r->end - scan);
        if (nl || (r->eof && r->end > r->start && !(r->is_zstd && (r->in_pos < r->in_len || r->out_full)))) {
            size_t lstart = r->start;
            size_t lend = nl ? (size_t)(nl - r->buf) : r->end;
            size_t consumed = (nl ? lend + 1 : lend) - lstart;
            r->lineno++;
            line->text = r->buf + lstart;
            line->len = lend - lstart;
            if (line->len && line->text[line->len - 1] == '\r')
                line->len--;
            line->text[line->len] = 0;
            line->lineno = r->lineno;
            line->offset = r->offset;
            r->offset += consumed;
            r->start = lstart + consumed;
            return 1;
        }
        /* Keep offsets relative to start across compaction inside fill(). */
        size_t seen = r->end - r->start;
        ssize_t k = fill(r, e);
        if (k < 0)
            return -1;
        scan = r->start + seen;
        if (k == 0 && r->end == r->start)
            return 0;
    }
}

int cl_reader_progress(const cl_reader *r, uint64_t *done, uint64_t *total)
{
    struct stat st;
    if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    off_t pos = lseek(r->fd, 0, SEEK_CUR);
    if (pos < 0)
        return 0;
    *done = (uint64_t)pos;
    *total = (uint64_t)st.st_size;
    return 1;
}

void cl_reader_close(cl_reader *r)
{
    if (!r)
        return;
    if (r->own_fd && r->fd >= 0)
        close(r->fd);
    ZSTD_freeDCtx(r->dctx);
    free(r->in);
    free(r->buf);
    free(r->name);
    free(r);
}

/* ---- writer ------------------------------------------------------------------------- */

#define OUT_CHUNK (1u << 17)
#define FRAME_BYTES (8u << 20) /* end a frame after this much input: a killed run keeps a valid prefix */

struct cl_writer {
    int fd;
    int own_fd;
    char *name;
    ZSTD_CCtx *cctx;
    unsigned char *out;
    size_t out_len;
    uint64_t frame_bytes;  /* raw bytes in the open frame */
    uint64_t total;
    int failed;
};

static int write_all(cl_writer *w, const void *p, size_t n, cl_err *e)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(w->fd, c, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            w->failed = 1;
            if (errno == EPIPE)
                return cl_err_set(e, CL_EXIT_EPIPE, "%s: broken pipe", w->name);
            return cl_err_set(e, CL_EXIT_IOERR, "%s: write error: %s", w->name, strerror(errno));
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int flush_out(cl_writer *w, cl_err *e)
{
    if (w->out_len && write_all(w, w->out, w->out_len, e) < 0)
        return -1;
    w->out_len = 0;
    return 0;
}

static int env_int(const char *name, int fallback)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end;
    long v = strtol(s, &end, 10);
    return *end ? fallback : (int)v;
}

cl_writer *cl_writer_open(const char *path, const cl_writer_opts *o, cl_err *e)
{
    cl_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->out = malloc(OUT_CHUNK))) {
        free(w);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    if (!path || strcmp(path, "-") == 0) {
        w->fd = STDOUT_FILENO;
        w->name = strdup("<stdout>");
    } else {
        w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        w->own_fd = 1;
        w->name = strdup(path);
        if (w->fd < 0) {
            cl_err_set(e, CL_EXIT_IOERR, "%s: %s", path, strerror(errno));
            free(w->name);
            free(w->out);
            free(w);
            return NULL;
        }
    }
    int plain = o ? o->plain : -1;
    if (plain < 0)
        plain = isatty(w->fd);
    if (!plain) {
        int level = o && o->level ? o->level : env_int("CL_ZSTD_LEVEL", 3);
        int threads = o && o->threads ? o->threads : env_int("CL_ZSTD_THREADS", 0);
        w->cctx = ZSTD_createCCtx();
        if (!w->cctx) {
            cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            cl_writer_close(w, NULL);
            return NULL;
        }
        size_t r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
        if (ZSTD_isError(r)) {
            cl_err_set(e, CL_EXIT_USAGE, "zstd level %d: %s", level, ZSTD_getErrorName(r));
            cl_writer_close(w, NULL);
            return NULL;
        }
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
        /* A libzstd built without threads refuses workers: then it simply runs single-threaded. */
        if (threads > 0)
            (void)ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, threads);
    }
    return w;
}

static int compress(cl_writer *w, const void *src, size_t n, ZSTD_EndDirective mode, cl_err *e)
{
    ZSTD_inBuffer in = {src, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out, OUT_CHUNK, w->out_len};
        size_t left = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(left)) {
            w->failed = 1;
            return cl_err_set(e, CL_EXIT_SOFTWARE, "zstd: %s", ZSTD_getErrorName(left));
        }
        w->out_len = out.pos;
        if (w->out_len == OUT_CHUNK && flush_out(w, e) < 0)
            return -1;
        if (mode == ZSTD_e_continue ? in.pos == in.size : left == 0)
            return 0;
        if (mode != ZSTD_e_continue && flush_out(w, e) < 0)
            return -1;
    }
}

int cl_writer_put(cl_writer *w, const char *text, size_t len, cl_err *e)
{
    if (w->failed)
        return cl_err_set(e, CL_EXIT_IOERR, "%s: earlier write failed", w->name);
    w->total += len + 1;
    if (!w->cctx) {
        if (w->out_len + len + 1 > OUT_CHUNK) {
            if (flush_out(w, e) < 0)
                return -1;
            if (len + 1 > OUT_CHUNK)
                return write_all(w, text, len, e) < 0 ? -1 : write_all(w, "\n", 1, e);
        }
        memcpy(w->out + w->out_len, text, len);
        w->out[w->out_len + len] = '\n';
        w->out_len += len + 1;
        return 0;
    }
    if (compress(w, text, len, ZSTD_e_continue, e) < 0 || compress(w, "\n", 1, ZSTD_e_continue, e) < 0)
        return -1;
    w->frame_bytes += len + 1;
    if (w->frame_bytes >= FRAME_BYTES)
        return cl_writer_sync(w, e);
    return 0;
}

int cl_writer_sync(cl_writer *w, cl_err *e)
{
    if (w->failed)
        return cl_err_set(e, CL_EXIT_IOERR, "%s: earlier write failed", w->name);
    if (w->cctx && w->frame_bytes) {
        if (compress(w, NULL, 0, ZSTD_e_end, e) < 0)
            return -1;
        w->frame_bytes = 0;
    }
    return flush_out(w, e);
}

uint64_t cl_writer_bytes(const cl_writer *w) { return w->total; }

int cl_writer_close(cl_writer *w, cl_err *e)
{
    if (!w)
        return 0;
    int rc = -1;
    if (!w->failed) {
        /* An empty run still writes one empty frame, so `zstdcat` accepts the file. */
        if (w->cctx && w->total == 0)
            w->frame_bytes = 1;
        rc = cl_writer_sync(w, e);
    }
    if (w->own_fd && close(w->fd) < 0 && rc == 0)
        rc = cl_err_set(e, CL_EXIT_IOERR, "%s: close: %s", w->name, strerror(errno));
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    free(w->name);
    free(w);
    return rc;
}

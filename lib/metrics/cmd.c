#define _GNU_SOURCE /* pipe2 */
#include "metrics/cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"

struct metric_cmd {
    char *program;
    pid_t pid;
    int in, out;   /* its standard input (we write), its standard output (we read) */
    cl_buf pending; /* bytes read past the last complete reply */
};

metric_cmd *metric_cmd_start(const char *program, cl_err *e)
{
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) != 0) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "--metric cmd: pipe: %s", strerror(errno));
        return NULL;
    }
    if (pipe2(from, O_CLOEXEC) != 0) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "--metric cmd: pipe: %s", strerror(errno));
        close(to[0]);
        close(to[1]);
        return NULL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "--metric cmd: fork: %s", strerror(errno));
        close(to[0]), close(to[1]), close(from[0]), close(from[1]);
        return NULL;
    }
    if (pid == 0) {
        /* dup2 clears close-on-exec on the copies, so only these two reach the program. */
        if (dup2(to[0], 0) < 0 || dup2(from[1], 1) < 0)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", program, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    metric_cmd *m = calloc(1, sizeof *m);
    if (!m || !(m->program = strdup(program))) {
        free(m);
        close(to[1]);
        close(from[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    m->pid = pid;
    m->in = to[1];
    m->out = from[0];
    /* The program's input is written without blocking, so a program that answers while it
     * reads never waits on us while we wait on it. */
    fcntl(m->in, F_SETFL, fcntl(m->in, F_GETFL) | O_NONBLOCK);
    return m;
}

/* Moves the complete lines at the front of m->pending into replies[*got..n). */
static void take_lines(metric_cmd *m, char **replies, size_t n, size_t *got)
{
    size_t start = 0;
    if (m->pending.n == 0)
        return;
    while (*got < n) {
        char *nl = memchr(m->pending.p + start, '\n', m->pending.n - start);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (m->pending.p + start));
        char *line = malloc(len + 1);
        if (!line)
            abort();
        memcpy(line, m->pending.p + start, len);
        line[len] = '\0';
        replies[(*got)++] = line;
        start += len + 1;
    }
    memmove(m->pending.p, m->pending.p + start, m->pending.n - start);
    m->pending.n -= start;
}

int metric_cmd_exchange(metric_cmd *m, char *const *lines, size_t n, char **replies, cl_err *e)
{
    cl_buf req = {0};
    for (size_t i = 0; i < n; i++) {
        cl_buf_put(&req, lines[i], strlen(lines[i]));
        cl_buf_put(&req, "\n", 1);
    }
    size_t sent = 0, got = 0;
    int rc = 0;
    /* A program that dies gives EPIPE on the next write, not a SIGPIPE that would kill us. */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    take_lines(m, replies, n, &got);
    while (got < n) {
        struct pollfd p[2] = {{.fd = m->out, .events = POLLIN}, {.fd = m->in, .events = POLLOUT}};
        int np = sent < req.n ? 2 : 1;
        if (poll(p, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "--metric cmd:%s: poll: %s", m->program, strerror(errno));
            break;
        }
        if (np == 2 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(m->in, req.p + sent, req.n - sent);
            if (w > 0) {
                sent += (size_t)w;
            } else if (w < 0 && errno == EPIPE) {
                /* It stopped reading: whether it answered everything is for its output to say. */
                sent = req.n;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "--metric cmd:%s: write: %s", m->program, strerror(errno));
                break;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char chunk[65536];
            ssize_t r = read(m->out, chunk, sizeof chunk);
            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r <= 0) {
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "--metric cmd:%s ended its output after %zu of %zu "
                                "replies (one line per unit is expected)", m->program, got, n);
                break;
            }
            cl_buf_put(&m->pending, chunk, (size_t)r);
            take_lines(m, replies, n, &got);
        }
    }
    free(req.p);
    signal(SIGPIPE, old);
    if (rc != 0)
        for (size_t i = 0; i < got; i++) {
            free(replies[i]);
            replies[i] = NULL;
        }
    return rc;
}

int metric_cmd_finish(metric_cmd *m, int *exit_status, cl_err *e)
{
    if (exit_status)
        *exit_status = 0;
    if (!m)
        return 0;
    int failed = e && e->code;
    close(m->in);
    /* A program that was cut short may still be writing: its remaining output is not read. */
    if (failed)
        kill(m->pid, SIGTERM);
    int extra = 0;
    char chunk[4096];
    ssize_t r;
    while (!failed && (r = read(m->out, chunk, sizeof chunk)) != 0)
        if (r > 0)
            extra = 1;
        else if (errno != EINTR)
            break;
    close(m->out);
    int st = 0;
    while (waitpid(m->pid, &st, 0) < 0 && errno == EINTR)
        ;
    int rc = 0;
    if (exit_status)
        *exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (!failed) {
        if (extra || m->pending.n)
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "--metric cmd:%s wrote more lines than units", m->program);
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "--metric cmd:%s exited with status %d%s", m->program,
                            WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
                            WIFEXITED(st) && WEXITSTATUS(st) == 127 ? " (not found?)" : "");
    } else {
        rc = -1;
    }
    free(m->pending.p);
    free(m->program);
    free(m);
    return rc;
}

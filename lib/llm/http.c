/* The HTTP transport of the LLM loop: one libcurl multi handle driven through
 * curl_multi_socket_action and epoll, so each loop turn costs in proportion to the sockets
 * that moved, not to the number of transfers in flight (curl_multi_perform walks them all).
 * Admission control is the loop's job (llm.c): it never adds more transfers than it allows,
 * so libcurl never queues a handle (its timeouts would run while queued).  Easy handles are
 * pooled and reused; connections stay in the multi handle's cache (keep-alive), and https
 * endpoints negotiate HTTP/2 and multiplex. */
#include "llm/http.h"

#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/cli.h"

struct cl_http_xfer {
    CURL *easy;
    cl_http_done_fn done;
    void *self, *arg;
    char *body;               /* request body, owned */
    char *buf;                /* response body */
    size_t len, cap;
    double retry_after_ms;    /* from a retry-after-ms header, -1 if none */
    int should_retry;
    double last_byte;         /* loop time of the latest response byte, 0 before the first */
    int requests;             /* times libcurl was about to send the request (on_prereq) */
    size_t slot;              /* index in h->active */
    const char *url;          /* options the pooled handle already has: unchanged ones are */
    const struct curl_slist *headers; /* not set again (libcurl copies and re-parses a URL) */
    cl_http *h;
    char errbuf[CURL_ERROR_SIZE];
};

struct cl_http {
    CURLM *multi;
    int epfd;
    double timer_at;          /* when libcurl wants CURL_SOCKET_TIMEOUT, < 0 for never */
    cl_http_xfer **pool;       /* idle transfers with their easy handles */
    size_t npool, cappool;
    cl_http_xfer **active;
    size_t nactive, capactive;
    long timeout_ms, connect_ms;
    double stall_s, next_sweep;
    double now;               /* refreshed each wait; stamps received bytes cheaply */
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    cl_http_xfer *x = arg;
    size_t len = size * n;
    if (x->len + len + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + len + 1)
            cap *= 2;
        char *b = realloc(x->buf, cap);
        if (!b)
            return 0; /* libcurl reports CURLE_WRITE_ERROR */
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, len);
    x->len += len;
    x->buf[x->len] = 0;
    x->last_byte = x->h->now;
    return len;
}

/* Only the headers libcurl does not parse for us: retry-after-ms and x-should-retry
 * (CURLINFO_RETRY_AFTER handles Retry-After in both its forms). */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    cl_http_xfer *x = arg;
    size_t len = size * n;
    x->last_byte = x->h->now;
    if (len > 15 && (data[0] | 32) == 'r' && strncasecmp(data, "retry-after-ms:", 15) == 0)
        x->retry_after_ms = strtod(data + 15, NULL);
    else if (len > 15 && (data[0] | 32) == 'x' && strncasecmp(data, "x-should-retry:", 15) == 0) {
        const char *v = data + 15;
        while (*v == ' ')
            v++;
        x->should_retry = strncasecmp(v, "true", 4) == 0 ? 1 : strncasecmp(v, "false", 5) == 0 ? 0 : -1;
    }
    return len;
}

/* libcurl re-sends a request by itself, at once and uncounted, when a reused connection
 * turns out dead before any reply (the server may well have received it).  The loop's retries
 * own that decision: counted as an attempt, backed off, limited by --retries.  So a second
 * send of one transfer is refused here and the transfer ends as a receive error. */
static int on_prereq(void *arg, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    (void)primary_ip, (void)local_ip, (void)primary_port, (void)local_port;
    cl_http_xfer *x = arg;
    return ++x->requests > 1 ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    cl_http *h = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(h->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    ev.data.fd = s;
    /* socketp marks sockets already registered; a reused descriptor number may still be
     * known to epoll, hence the fallbacks. */
    if (socketp) {
        if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev) < 0)
            epoll_ctl(h->epfd, EPOLL_CTL_ADD, s, &ev);
    } else {
        if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, s, &ev) < 0)
            epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev);
        curl_multi_assign(h->multi, s, h);
    }
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    cl_http *h = userp;
    /* The loop's clock, not a fresh reading: libcurl calls this several times per transfer,
     * and a timer that fires a little early only makes libcurl set it again. */
    h->timer_at = timeout_ms < 0 ? -1 : h->now + timeout_ms / 1000.0;
    return 0;
}

/* Each call in flight holds a socket; a common soft limit of 1024 descriptors would make
 * connects fail at --max-inflight 1024.  Raise the soft limit toward the hard one. */
static void enough_descriptors(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || (long)rl.rlim_max > need ? (rlim_t)need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

cl_http *cl_http_new(const cl_http_opts *cfg, cl_err *e)
{
    cl_http *h = calloc(1, sizeof *h);
    if (!h) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    h->multi = curl_multi_init();
    if (h->epfd < 0 || !h->multi) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "cannot set up the HTTP event loop");
        cl_http_free(h);
        return NULL;
    }
    enough_descriptors(2L * cfg->max_inflight + 256);
    h->timer_at = -1;
    h->now = cl_now();
    h->timeout_ms = (long)(cfg->timeout_s * 1000);
    h->connect_ms = (long)(cfg->connect_timeout_s * 1000);
    h->stall_s = cfg->stall_timeout_s;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    /* A safety net only: the loop never has more than max_inflight transfers added.  Keep as
     * many idle connections as transfers so keep-alive survives a full window. */
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->max_inflight);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_inflight);
    return h;
}

static void xfer_free(cl_http_xfer *x)
{
    if (!x)
        return;
    curl_easy_cleanup(x->easy);
    free(x->body);
    free(x->buf);
    free(x);
}

void cl_http_free(cl_http *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->nactive; i++) {
        curl_multi_remove_handle(h->multi, h->active[i]->easy);
        xfer_free(h->active[i]);
    }
    for (size_t i = 0; i < h->npool; i++)
        xfer_free(h->pool[i]);
    free(h->pool);
    free(h->active);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    if (h->epfd >= 0)
        close(h->epfd);
    free(h);
}

static size_t get_body(char *data, size_t size, size_t n, void *arg)
{
    cl_buf *b = arg;
    cl_buf_put(b, data, size * n);
    return b->oom ? 0 : size * n;
}

long cl_http_get(const char *url, const struct curl_slist *headers, double timeout_s, char **body,
                 char *err, size_t errlen)
{
    *body = NULL;
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    cl_buf b = {0};
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, get_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_s * 1000));
    if (headers)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || b.oom) {
        free(b.p);
        return status;
    }
    *body = b.p ? b.p : strdup("");
    return status;
}

static cl_http_xfer *xfer_get(cl_http *h)
{
    if (h->npool)
        return h->pool[--h->npool];
    cl_http_xfer *x = calloc(1, sizeof *x);
    if (!x || !(x->easy = curl_easy_init())) {
        free(x);
        return NULL;
    }
    x->h = h;
    CURL *c = x->easy;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_PRIVATE, x);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms);
    /* Generations can take minutes with an idle socket; keepalive probes keep NATs open. */
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 60L);
    return x;
}

static void xfer_release(cl_http *h, cl_http_xfer *x)
{
    size_t i = x->slot;
    h->active[i] = h->active[--h->nactive];
    h->active[i]->slot = i;
    free(x->body);
    x->body = NULL;
    x->self = x->arg = NULL;
    if (x->cap > 256 * 1024) { /* one long reply should not pin its buffer in every pooled slot */
        free(x->buf);
        x->buf = NULL;
        x->cap = x->len = 0;
    }
    if (cl_grow((void **)&h->pool, &h->cappool, h->npool + 1, sizeof *h->pool) < 0) {
        xfer_free(x);
        return;
    }
    h->pool[h->npool++] = x;
}

/* Removes x from the multi handle, hands its outcome to the backend, recycles x. */
static void xfer_finish(cl_http *h, cl_http_xfer *x, CURLcode rc, int timed_out)
{
    curl_multi_remove_handle(h->multi, x->easy);
    if (x->requests > 1 && rc == CURLE_ABORTED_BY_CALLBACK) {
        rc = CURLE_RECV_ERROR;
        snprintf(x->errbuf, sizeof x->errbuf, "the connection closed before a reply (a reused connection)");
    }
    cl_http_reply rp = {0};
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    rp.status = rc == CURLE_OK ? status : 0;
    rp.curl_code = rc;
    rp.curl_error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    rp.timed_out = timed_out || rc == CURLE_OPERATION_TIMEDOUT;
    rp.body = x->buf ? x->buf : "";
    rp.len = x->len;
    rp.should_retry = x->should_retry;
    if (x->retry_after_ms >= 0)
        rp.retry_after_s = x->retry_after_ms / 1000.0;
    else {
        curl_off_t ra = 0;
        if (curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
            rp.retry_after_s = (double)ra;
    }
    x->done(x->self, x->arg, &rp); /* rp.body is x's buffer: recycle x only afterwards */
    xfer_release(h, x);
}

cl_http_xfer *cl_http_post(cl_http *h, const char *url, const struct curl_slist *headers,
                           char *body, size_t len, cl_http_done_fn done, void *self, void *arg)
{
    cl_http_xfer *x = NULL;
    if (cl_grow((void **)&h->active, &h->capactive, h->nactive + 1, sizeof *h->active) < 0 ||
        !(x = xfer_get(h))) {
        free(body);
        cl_http_reply rp = {.curl_code = CURLE_OUT_OF_MEMORY, .curl_error = "out of memory",
                                .body = ""};
        done(self, arg, &rp);
        return NULL;
    }
    x->done = done;
    x->self = self;
    x->arg = arg;
    x->body = body;
    x->len = 0;
    if (x->buf)
        x->buf[0] = 0;
    x->retry_after_ms = -1;
    x->should_retry = -1;
    x->last_byte = 0;
    x->requests = 0;
    x->errbuf[0] = 0;
    x->slot = h->nactive;
    h->active[h->nactive++] = x;
    CURL *e = x->easy;
    if (x->url != url) {
        curl_easy_setopt(e, CURLOPT_URL, url);
        /* Over TLS the first request finds out whether the server multiplexes (HTTP/2);
         * later ones wait for that instead of opening connections of their own.  Cleartext
         * endpoints (vLLM, llama-server) speak HTTP/1.1, where waiting would only serialise
         * the start. */
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, strncmp(url, "https:", 6) == 0 ? 1L : 0L);
        x->url = url;
    }
    if (x->headers != headers) {
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        x->headers = headers;
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    CURLMcode mc = curl_multi_add_handle(h->multi, e);
    if (mc != CURLM_OK) {
        snprintf(x->errbuf, sizeof x->errbuf, "cannot start transfer: %s", curl_multi_strerror(mc));
        xfer_finish(h, x, CURLE_FAILED_INIT, 0);
        return NULL;
    }
    return x;
}

void cl_http_abort(cl_http *h, cl_http_xfer *x)
{
    snprintf(x->errbuf, sizeof x->errbuf, "aborted");
    xfer_finish(h, x, CURLE_ABORTED_BY_CALLBACK, 0);
}

/* Ends transfers whose reply began and then stopped arriving (libcurl's low-speed limit
 * averages over seconds and counts the upload, so it cannot tell "generating" from "stalled";
 * see ../shared/research/ecosystem.md §3.4). */
static void sweep_stalled(cl_http *h)
{
    if (h->stall_s <= 0 || h->now < h->next_sweep)
        return;
    h->next_sweep = h->now + fmin(0.25, h->stall_s / 4);
    for (size_t i = 0; i < h->nactive;) {
        cl_http_xfer *x = h->active[i];
        if (x->last_byte > 0 && h->now - x->last_byte > h->stall_s) {
            snprintf(x->errbuf, sizeof x->errbuf, "reply stalled: no data for %.1f s",
                     h->now - x->last_byte);
            xfer_finish(h, x, CURLE_OPERATION_TIMEDOUT, 1);
            continue; /* slot i now holds another transfer */
        }
        i++;
    }
}

void cl_http_wait(cl_http *h, int timeout_ms)
{
    struct epoll_event ev[256];
    int running = 0;
    h->now = cl_now();
    if (h->timer_at >= 0) {
        double left = (h->timer_at - h->now) * 1000;
        if (left < timeout_ms)
            timeout_ms = left <= 0 ? 0 : (int)ceil(left);
    }
    if (h->stall_s > 0 && h->nactive) {
        int sweep_ms = (int)ceil((h->next_sweep - h->now) * 1000);
        if (sweep_ms < timeout_ms)
            timeout_ms = sweep_ms < 0 ? 0 : sweep_ms;
    }
    int n = epoll_wait(h->epfd, ev, 256, timeout_ms);
    h->now = cl_now();
    for (int i = 0; i < n; i++) {
        int flags = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                    (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                    (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(h->multi, ev[i].data.fd, flags, &running);
    }
    if (h->timer_at >= 0 && h->now >= h->timer_at) {
        h->timer_at = -1;
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        cl_http_xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        xfer_finish(h, x, m->data.result, 0);
    }
    sweep_stalled(h);
}

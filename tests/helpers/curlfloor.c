/* curlfloor — the cost floor of the LLM client, for bench/bench-llm.sh: N identical POSTs,
 * K in flight, through the same libcurl multi + epoll machinery as lib/llm/http.c but with no
 * JSON, no retries, no cache and no accounting.  What cl's client costs per call above this is
 * the price of its own work.
 *
 *   curlfloor URL N K */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "core/cli.h"

static int epfd;
static CURLM *multi;
static double timer_at = -1;

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data, (void)arg;
    return size * n;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy, (void)userp;
    if (what == CURL_POLL_REMOVE)
        return epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL), 0;
    struct epoll_event ev = {.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0),
                             .data.fd = s};
    if (epoll_ctl(epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) < 0)
        epoll_ctl(epfd, socketp ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, &ev);
    curl_multi_assign(multi, s, &epfd);
    return 0;
}

static int on_timer(CURLM *m, long ms, void *userp)
{
    (void)m, (void)userp;
    timer_at = ms < 0 ? -1 : cl_now() + ms / 1000.0;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: curlfloor URL N K\n");
        return 2;
    }
    const char *url = argv[1];
    long n = atol(argv[2]), k = atol(argv[3]);
    static const char body[] = "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":"
                               "\"benchmark request 1\"}],\"temperature\":1,\"top_p\":1,\"max_tokens\":256}";
    curl_global_init(CURL_GLOBAL_DEFAULT);
    epfd = epoll_create1(0);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, k);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    CURL **pool = calloc((size_t)k, sizeof *pool);
    long npool = 0, started = 0, done = 0, failed = 0;
    for (long i = 0; i < k; i++) {
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        pool[npool++] = e;
    }
    struct epoll_event ev[256];
    int running;
    while (done < n) {
        while (npool && started < n) {
            curl_multi_add_handle(multi, pool[--npool]);
            started++;
        }
        int wait_ms = 1000;
        if (timer_at >= 0) {
            double left = (timer_at - cl_now()) * 1000;
            wait_ms = left <= 0 ? 0 : left < 1000 ? (int)left + 1 : 1000;
        }
        int got = epoll_wait(epfd, ev, 256, wait_ms);
        for (int i = 0; i < got; i++)
            curl_multi_socket_action(multi, ev[i].data.fd,
                                     (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                                         (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0), &running);
        if (timer_at >= 0 && cl_now() >= timer_at) {
            timer_at = -1;
            curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            failed += msg->data.result != CURLE_OK;
            curl_multi_remove_handle(multi, e);
            pool[npool++] = e;
            done++;
        }
    }
    for (long i = 0; i < npool; i++)
        curl_easy_cleanup(pool[i]);
    free(pool);
    curl_slist_free_all(h);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    if (failed)
        fprintf(stderr, "curlfloor: %ld of %ld transfers failed\n", failed, n);
    return failed ? 1 : 0;
}

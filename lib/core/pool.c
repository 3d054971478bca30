/* pool.c — sleeping worker threads and a dynamic parallel loop (see pool.h). */
#include "core/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct worker {
    struct cl_pool *pool;
    int index;
    pthread_t tid;
} worker;

struct cl_pool {
    pthread_mutex_t mu;
    pthread_cond_t go, idle;
    int nworkers, stop;
    worker *w;
    /* the loop in progress: gen counts loops; open is cleared once the caller has run out of
     * chunks, after which a late worker leaves the loop alone; active counts workers in it */
    unsigned long gen;
    int open, active;
    cl_pool_fn *fn;
    void *ctx;
    int n, chunk;
    atomic_int next;
    /* cl_pool_for_cpu: the workers' CPU seconds in the loop in progress, and how many of the
     * next loops run in the caller alone after one whose threads got no more than a CPU
     * between them (backoff: that count the next time it happens) */
    double worker_cpu;
    int alone_left, backoff;
};

static double seconds(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void run_chunks(struct cl_pool *p, int who)
{
    for (;;) {
        int i = atomic_fetch_add(&p->next, p->chunk);
        if (i >= p->n) return;
        int end = p->n - i < p->chunk ? p->n : i + p->chunk;
        for (; i < end; i++) p->fn(p->ctx, i, who);
    }
}

static void *work(void *arg)
{
    worker *me = arg;
    struct cl_pool *p = me->pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && (p->gen == seen || !p->open)) pthread_cond_wait(&p->go, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        double cpu = seconds(CLOCK_THREAD_CPUTIME_ID);
        run_chunks(p, me->index);
        cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu;
        pthread_mutex_lock(&p->mu);
        p->worker_cpu += cpu;
        if (--p->active == 0) pthread_cond_signal(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

cl_pool *cl_pool_new(int threads)
{
    struct cl_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->idle, NULL);
    int want = threads > 1 ? threads - 1 : 0;
    if (want && !(p->w = calloc((size_t)want, sizeof *p->w))) {
        cl_pool_free(p);
        return NULL;
    }
    for (int i = 0; i < want; i++) {
        p->w[i] = (worker){p, i + 1, 0};
        if (pthread_create(&p->w[i].tid, NULL, work, &p->w[i])) {
            cl_pool_free(p);
            return NULL;
        }
        p->nworkers++;
    }
    return p;
}

void cl_pool_free(cl_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++) pthread_join(p->w[i].tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->idle);
    free(p->w);
    free(p);
}

/* The loop; with judge, whether its threads got more than one CPU between them (1), did not
 * (0), or it was too short or ran in the caller alone to tell (-1). */
static int loop(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx, int judge)
{
    if (chunk < 1) chunk = 1;
    if (!p || !p->nworkers || n <= chunk) {
        for (int i = 0; i < n; i++) fn(ctx, i, 0);
        return -1;
    }
    double wall = judge ? seconds(CLOCK_MONOTONIC) : 0, cpu = judge ? seconds(CLOCK_THREAD_CPUTIME_ID) : 0;
    pthread_mutex_lock(&p->mu);
    p->worker_cpu = 0;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->gen++;
    p->open = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    /* every chunk is taken: close the loop to latecomers, wait only for those still in it */
    pthread_mutex_lock(&p->mu);
    p->open = 0;
    while (p->active) pthread_cond_wait(&p->idle, &p->mu);
    double others = p->worker_cpu;
    pthread_mutex_unlock(&p->mu);
    if (!judge) return -1;
    wall = seconds(CLOCK_MONOTONIC) - wall;
    cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu + others;
    /* Under a quarter of a millisecond, waking a worker is too much of the loop to tell. */
    return wall < 2.5e-4 ? -1 : cpu > 1.25 * wall;
}

void cl_pool_for(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx)
{
    loop(p, n, chunk, fn, ctx, 0);
}

void cl_pool_for_cpu(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx)
{
    if (p && p->alone_left > 0) {
        p->alone_left--;
        loop(NULL, n, chunk, fn, ctx, 0);
        return;
    }
    int won = loop(p, n, chunk, fn, ctx, 1);
    if (won == 0) {
        p->backoff = p->backoff ? (p->backoff < 32 ? 2 * p->backoff : 32) : 2;
        p->alone_left = p->backoff;
    } else if (won == 1) {
        p->backoff = 0;
    }
}

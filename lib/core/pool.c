/* pool.c — sleeping worker threads and parallel loops handed out in chunks (see pool.h). */
#include "core/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

/* Loops posted and not yet waited for, at most; a post past it first waits for the oldest. */
enum { POSTED_MAX = 8 };

typedef struct job {
    cl_pool_fn *fn;
    void *ctx;
    int n, chunk;
    int next;   /* the first index not yet handed out */
    int left;   /* indices not yet finished */
    int waited; /* its cl_pool_wait has returned: the slot may be reused */
    int judge;  /* posted by cl_pool_post_cpu: its wait judges the threads */
    /* for the judge: when it was posted, chunks run by the caller and by workers, and the
     * workers' chunks' wall and CPU seconds, each worker's clocked around its own chunk */
    double posted;
    int caller_chunks, worker_chunks;
    double worker_wall, worker_cpu;
} job;

typedef struct pool_worker {
    struct cl_pool *pool;
    int index;
    pthread_t tid;
} pool_worker;

struct cl_pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done; /* go: a loop was posted (workers); done: a loop finished (caller) */
    int nworkers, stop;
    pool_worker *w;
    job jobs[POSTED_MAX]; /* tickets [head, tail) are posted and not yet retired; slot t % POSTED_MAX */
    long head, tail;
    /* the judge: how many of the next computing loops run in the caller alone after one whose
     * workers did not get a CPU of their own (backoff: that count the next time it happens) */
    int alone_left, backoff;
};

static double seconds(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static job *slot(struct cl_pool *p, long t) { return &p->jobs[t % POSTED_MAX]; }

/* Under the lock: the next chunk [*i, *end) of the oldest posted loop that has one, or NULL. */
static job *claim(struct cl_pool *p, int *i, int *end)
{
    for (long t = p->head; t < p->tail; t++) {
        job *j = slot(p, t);
        if (j->next < j->n) {
            *i = j->next;
            *end = j->n - *i < j->chunk ? j->n : *i + j->chunk;
            j->next = *end;
            return j;
        }
    }
    return NULL;
}

/* Runs a claimed chunk outside the lock and counts it done; for a judged loop, a worker's
 * chunk is clocked by the worker itself. */
static void run_chunk(struct cl_pool *p, job *j, int i, int end, int who)
{
    int clocked = j->judge && who != 0;
    pthread_mutex_unlock(&p->mu);
    double wall = clocked ? seconds(CLOCK_MONOTONIC) : 0;
    double cpu = clocked ? seconds(CLOCK_THREAD_CPUTIME_ID) : 0;
    for (int k = i; k < end; k++) j->fn(j->ctx, k, who);
    if (clocked) {
        wall = seconds(CLOCK_MONOTONIC) - wall;
        cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu;
    }
    pthread_mutex_lock(&p->mu);
    if (clocked) {
        j->worker_chunks++;
        j->worker_wall += wall;
        j->worker_cpu += cpu;
    } else if (j->judge) {
        j->caller_chunks++;
    }
    if ((j->left -= end - i) == 0) pthread_cond_broadcast(&p->done);
}

static void *work(void *arg)
{
    pool_worker *me = arg;
    struct cl_pool *p = me->pool;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        job *j = NULL;
        int i = 0, end = 0;
        while (!p->stop && !(j = claim(p, &i, &end))) pthread_cond_wait(&p->go, &p->mu);
        if (p->stop) break;
        run_chunk(p, j, i, end, me->index);
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
    pthread_cond_init(&p->done, NULL);
    int want = threads > 1 ? threads - 1 : 0;
    if (want && !(p->w = calloc((size_t)want, sizeof *p->w))) {
        cl_pool_free(p);
        return NULL;
    }
    for (int i = 0; i < want; i++) {
        p->w[i] = (pool_worker){p, i + 1, 0};
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
    pthread_cond_destroy(&p->done);
    free(p->w);
    free(p);
}

static long post(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx, int judge)
{
    if (chunk < 1) chunk = 1;
    if (!p || !p->nworkers || n <= chunk) {
        for (int i = 0; i < n; i++) fn(ctx, i, 0);
        return -1;
    }
    pthread_mutex_lock(&p->mu);
    while (p->tail - p->head == POSTED_MAX) {
        pthread_mutex_unlock(&p->mu);
        cl_pool_wait(p, p->head);
        pthread_mutex_lock(&p->mu);
    }
    long t = p->tail++;
    *slot(p, t) = (job){fn, ctx, n, chunk, 0, n, 0, judge, judge ? seconds(CLOCK_MONOTONIC) : 0, 0, 0, 0, 0};
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    return t;
}

/* A computing loop's verdict, from its workers' chunks alone: they ran on a CPU of their own
 * when their CPU seconds were more than WORKER_SHARE of their wall seconds, and the backoff
 * resets; they did not when less, or when the caller ran two chunks or more and the workers
 * none though the loop was posted a millisecond or more before its wait ended (a worker the OS
 * did not run), and then the next loops go to the caller alone.  Workers' chunks under a
 * quarter of a millisecond in all, or a caller that was done before a worker could have woken,
 * are too short to tell.  The caller's own time does not count: between a post and its wait it
 * reads and writes, and a worker that has finished the loop meanwhile and sleeps has not been
 * starved (judging by every thread's CPU over the loop's whole span sent 15-45% of cl-reward's
 * BLEU batches to the caller alone on an idle machine).  span: seconds from post to verdict. */
#define WORKER_SHARE 0.75
static int starved(const job *j, double span) /* 1, 0, or -1: too short to tell */
{
    if (j->worker_chunks == 0)
        return j->caller_chunks >= 2 && span >= 1e-3 ? 1 : -1;
    if (j->worker_wall < 2.5e-4)
        return -1;
    return j->worker_cpu <= WORKER_SHARE * j->worker_wall;
}

static void judge(cl_pool *p, const job *j)
{
    int verdict = starved(j, seconds(CLOCK_MONOTONIC) - j->posted);
    if (verdict < 0)
        return;
    if (!verdict) {
        p->backoff = 0;
    } else {
        p->backoff = p->backoff ? (p->backoff < 32 ? 2 * p->backoff : 32) : 2;
        p->alone_left = p->backoff;
    }
}

void cl_pool_wait(cl_pool *p, long ticket)
{
    if (!p || ticket < 0) return;
    pthread_mutex_lock(&p->mu);
    job *mine = slot(p, ticket);
    if (ticket < p->head || mine->waited) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    /* Chunks of any posted loop, oldest first: while a worker finishes this loop's last
     * chunk (or waits for a CPU the OS has not given it), the caller goes on with later loops
     * instead of waiting. */
    while (mine->left > 0) {
        int i = 0, end = 0;
        job *j = claim(p, &i, &end);
        if (j)
            run_chunk(p, j, i, end, 0);
        else
            pthread_cond_wait(&p->done, &p->mu);
    }
    mine->waited = 1;
    job done = *mine; /* its slot may be posted again once retired */
    while (p->head < p->tail && slot(p, p->head)->waited) p->head++;
    pthread_mutex_unlock(&p->mu);
    if (done.judge) judge(p, &done);
}

long cl_pool_post(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx)
{
    return post(p, n, chunk, fn, ctx, 0);
}

long cl_pool_post_cpu(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx)
{
    if (p && p->alone_left > 0) {
        p->alone_left--;
        return post(NULL, n, chunk, fn, ctx, 0);
    }
    return post(p, n, chunk, fn, ctx, 1);
}

void cl_pool_for(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx)
{
    cl_pool_wait(p, cl_pool_post(p, n, chunk, fn, ctx));
}

void cl_pool_for_cpu(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx)
{
    cl_pool_wait(p, cl_pool_post_cpu(p, n, chunk, fn, ctx));
}

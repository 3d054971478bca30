/* pool.h — a fixed set of worker threads that sleep while idle.
 *
 * Owns: cl_pool (threads - 1 workers beside the calling thread) and its parallel loops over
 * [0, n), handed out in chunks as threads come free: cl_pool_for runs one and returns when it
 * is done; cl_pool_post hands one to the workers and returns at once, so that the caller can
 * read or write while they compute, and cl_pool_wait then helps with what is left.  Idle
 * workers block on a condition variable and never spin: on a machine shared with other jobs an
 * idle worker costs no CPU, where OpenMP's default keeps each one spinning for milliseconds
 * after every parallel loop (it reads OMP_WAIT_POLICY before main, too early for a program to
 * change).  A worker the OS has not run yet holds no work, and a caller that waits takes
 * chunks of any posted loop, oldest first, so a worker the OS has set aside costs the caller
 * no more than the chunk it holds.  One thread posts and waits.  Must not know what the work
 * is. */
#ifndef CL_CORE_POOL_H
#define CL_CORE_POOL_H

typedef struct cl_pool cl_pool;

/* fn(ctx, i, worker) for one index; worker is 0 for the calling thread, 1..threads-1 for the
 * others, and no two concurrent calls share it (a per-thread slot such as a sandbox). */
typedef void cl_pool_fn(void *ctx, int i, int worker);

/* A pool of `threads` threads in all (the caller counts as one; threads <= 1 starts none).
 * NULL when threads cannot be started. */
cl_pool *cl_pool_new(int threads);
/* Stops the workers; every posted loop must have been waited for. */
void cl_pool_free(cl_pool *p);

/* Runs fn for every i in [0, n), chunk indices at a time, and returns when all are done.  A
 * NULL pool runs the loop in the caller. */
void cl_pool_for(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx);

/* The same loop, handed to the workers: returns a ticket for cl_pool_wait at once (a loop of
 * at most one chunk, or on a NULL pool, has then already run in the caller).  fn and what it
 * reads must stay as they are until the wait returns.  Up to 8 loops may be posted and not
 * waited for; a ninth waits for the oldest first. */
long cl_pool_post(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx);

/* Returns when the loop of `ticket` is done, running chunks of any posted loop (oldest first)
 * in the caller meanwhile.  Loops may be waited for in any order; a ticket waited for twice
 * returns at once. */
void cl_pool_wait(cl_pool *p, long ticket);

/* cl_pool_for and cl_pool_post for work that only computes (no waiting on children, sleeps or
 * I/O), where threads pay only when they run at once.  On a machine whose other jobs leave
 * this process one CPU (or a scheduler that shares CPU per process group), a second thread adds
 * its overhead and no speed: when the workers' chunks of a loop got no more than 3/4 of a CPU
 * (their CPU seconds over their wall seconds), or the caller ran two chunks or more and the
 * workers none in a millisecond or more from the post, the next loops run in the caller
 * alone, 2, 4, 8 ... up to 32 of them before threads are tried again; a loop whose workers did
 * run resets the count.  Workers' chunks under a quarter of a millisecond in all, or a caller
 * done before a worker could wake, do not count either way.  What the caller does
 * between post and wait (reading, writing) does not count: a worker that finished and sleeps
 * meanwhile was not starved. */
void cl_pool_for_cpu(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx);
long cl_pool_post_cpu(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx);

#endif

/* pool.h — a fixed set of worker threads that sleep while idle.
 *
 * Owns: cl_pool (threads - 1 workers beside the calling thread) and cl_pool_for, a parallel loop
 * over [0, n) handed out in chunks as threads come free.  Idle workers block on a condition
 * variable and never spin: on a machine shared with other jobs an idle worker costs no CPU,
 * where OpenMP's default keeps each one spinning for milliseconds after every parallel loop (it
 * reads OMP_WAIT_POLICY before main, too early for a program to change).  A worker the OS has
 * not run yet when the loop ends is not waited for, so a loop never takes longer than the
 * calling thread alone would.  Must not know what the work is. */
#ifndef CL_CORE_POOL_H
#define CL_CORE_POOL_H

typedef struct cl_pool cl_pool;

/* fn(ctx, i, worker) for one index; worker is 0 for the calling thread, 1..threads-1 for the
 * others, and no two concurrent calls share it (a per-thread slot such as a sandbox). */
typedef void cl_pool_fn(void *ctx, int i, int worker);

/* A pool of `threads` threads in all (the caller counts as one; threads <= 1 starts none).
 * NULL when threads cannot be started. */
cl_pool *cl_pool_new(int threads);
void cl_pool_free(cl_pool *p);

/* Runs fn for every i in [0, n), chunk indices at a time, and returns when all are done.  A
 * NULL pool runs the loop in the caller. */
void cl_pool_for(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx);

/* The same for work that only computes (no waiting on children, sleeps or I/O), where threads
 * pay only when they run at once.  On a machine whose other jobs leave this process one CPU
 * (or a scheduler that shares CPU per process group), a second thread adds its overhead and
 * no speed: when the threads of a loop got no more than 1.25 CPUs between them (CPU seconds
 * over wall seconds), the next loops run in the caller alone, 2, 4, 8 ... up to 32 of them
 * before threads are tried again; a loop where they do run at once resets the count.  A loop
 * under a quarter of a millisecond does not count either way. */
void cl_pool_for_cpu(cl_pool *p, int n, int chunk, cl_pool_fn *fn, void *ctx);

#endif

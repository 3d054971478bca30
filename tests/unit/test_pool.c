/* lib/core/pool: every index runs exactly once whatever the chunking, a worker number is never
 * in use twice at once, a NULL pool runs in the caller, idle workers sleep (no CPU), posted loops
 * run behind the caller and a waiting caller helps with later ones, a computing loop whose
 * workers got no CPU of their own lets them go for the next loops, and that verdict reads the
 * workers' chunks alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/pool.c" /* the judge's verdict is static */

enum { MAXN = 5000, THREADS = 4 };

typedef struct visits {
    atomic_int count[MAXN];
    atomic_int busy[THREADS];
    atomic_int clash, bad_worker;
} visits;

static void visit(void *ctx, int i, int worker)
{
    visits *v = ctx;
    if (worker < 0 || worker >= THREADS) {
        atomic_fetch_add(&v->bad_worker, 1);
        return;
    }
    if (atomic_exchange(&v->busy[worker], 1)) atomic_fetch_add(&v->clash, 1);
    atomic_fetch_add(&v->count[i], 1);
    for (volatile int spin = 0; spin < (i % 7) * 50; spin++) {
    }
    atomic_store(&v->busy[worker], 0);
}

static void every_index_runs_once_and_worker_numbers_are_exclusive(void **st)
{
    (void)st;
    cl_pool *p = cl_pool_new(THREADS);
    assert_non_null(p);
    static const int ns[] = {0, 1, 3, 4, 5, 97, 1000, MAXN};
    static const int chunks[] = {1, 4, 64};
    visits *v = calloc(1, sizeof *v);
    for (int round = 0; round < 20; round++)
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
                for (int i = 0; i < MAXN; i++) atomic_store(&v->count[i], 0);
                cl_pool_for(p, ns[a], chunks[c], visit, v);
                for (int i = 0; i < MAXN; i++) assert_int_equal(atomic_load(&v->count[i]), i < ns[a] ? 1 : 0);
            }
    assert_int_equal(atomic_load(&v->clash), 0);
    assert_int_equal(atomic_load(&v->bad_worker), 0);
    free(v);
    cl_pool_free(p);
}

static void record_worker(void *ctx, int i, int worker) { ((int *)ctx)[i] = worker + 1; }

static void a_null_or_single_thread_pool_runs_in_the_caller(void **st)
{
    (void)st;
    int w[10] = {0};
    cl_pool_for(NULL, 10, 3, record_worker, w);
    for (int i = 0; i < 10; i++) assert_int_equal(w[i], 1);
    cl_pool *one = cl_pool_new(1);
    assert_non_null(one);
    cl_pool_for(one, 10, 1, record_worker, w);
    for (int i = 0; i < 10; i++) assert_int_equal(w[i], 1);
    cl_pool_free(one);
}

/* Posted loops: many in flight (more than the pool keeps: the ninth post waits for the oldest),
 * waited for out of order, some twice; every index of every loop runs exactly once. */
enum { LOOPS = 12, PER = 300 };

static void posted_loops_run_every_index_once_in_any_wait_order(void **st)
{
    (void)st;
    cl_pool *p = cl_pool_new(THREADS);
    assert_non_null(p);
    visits *v = calloc(LOOPS, sizeof *v);
    long t[LOOPS];
    for (int round = 0; round < 10; round++) {
        for (int l = 0; l < LOOPS; l++) {
            for (int i = 0; i < MAXN; i++) atomic_store(&v[l].count[i], 0);
            t[l] = cl_pool_post(p, PER + l, 1 + l % 5, visit, &v[l]);
        }
        for (int l = LOOPS - 1; l >= 0; l -= 2) cl_pool_wait(p, t[l]);
        for (int l = 0; l < LOOPS; l++) cl_pool_wait(p, t[l]);
        for (int l = 0; l < LOOPS; l++) {
            for (int i = 0; i < MAXN; i++)
                assert_int_equal(atomic_load(&v[l].count[i]), i < PER + l ? 1 : 0);
            assert_int_equal(atomic_load(&v[l].clash), 0);
            assert_int_equal(atomic_load(&v[l].bad_worker), 0);
        }
    }
    free(v);
    cl_pool_free(p);
}

/* A caller waiting for a loop whose last index a worker holds runs the later loop's indices
 * meanwhile.  Loop A's two indices: the worker's blocks until loop B is done; the caller's
 * returns once the worker has arrived in A.  So A can only end after B has, and B's indices
 * can only run in the caller (worker 0). */
typedef struct relay {
    atomic_int worker_in_a, b_done, b_by_caller, gave_up;
} relay;

static int wait_for(atomic_int *x, int want)
{
    struct timespec tick = {0, 100 * 1000};
    for (int spins = 0; spins < 50000; spins++) {
        if (atomic_load(x) >= want) return 1;
        nanosleep(&tick, NULL);
    }
    return 0;
}

static void loop_a(void *ctx, int i, int worker)
{
    (void)i;
    relay *r = ctx;
    if (worker != 0) {
        atomic_store(&r->worker_in_a, 1);
        if (!wait_for(&r->b_done, 4)) atomic_store(&r->gave_up, 1);
    } else if (!wait_for(&r->worker_in_a, 1)) {
        atomic_store(&r->gave_up, 1);
    }
}

static void loop_b(void *ctx, int i, int worker)
{
    (void)i;
    relay *r = ctx;
    if (worker == 0) atomic_fetch_add(&r->b_by_caller, 1);
    atomic_fetch_add(&r->b_done, 1);
}

static void a_waiting_caller_runs_later_loops_while_a_worker_holds_its_last_chunk(void **st)
{
    (void)st;
    cl_pool *p = cl_pool_new(2);
    assert_non_null(p);
    relay *r = calloc(1, sizeof *r);
    long a = cl_pool_post(p, 2, 1, loop_a, r);
    long b = cl_pool_post(p, 4, 1, loop_b, r);
    cl_pool_wait(p, a);
    assert_int_equal(atomic_load(&r->gave_up), 0);
    assert_int_equal(atomic_load(&r->b_done), 4);
    assert_int_equal(atomic_load(&r->b_by_caller), 4);
    cl_pool_wait(p, b);
    cl_pool_wait(p, b);
    free(r);
    cl_pool_free(p);
}

/* One index per thread, each held until every thread has arrived: when the loop returns, every
 * worker has started (its start-up, costly under ASan, is behind us), has run to idle and has
 * left its CPU clock behind.  Only the pool's own threads are clocked: a BLAS library linked into
 * the same process may keep threads of its own spinning for a while after it loads. */
typedef struct muster {
    atomic_int arrived;
    atomic_int seen[THREADS];
    clockid_t clock[THREADS];
} muster;

static void wait_for_all(void *ctx, int i, int worker)
{
    (void)i;
    muster *m = ctx;
    if (worker < 0 || worker >= THREADS || atomic_exchange(&m->seen[worker], 1)) return;
    pthread_getcpuclockid(pthread_self(), &m->clock[worker]);
    atomic_fetch_add(&m->arrived, 1);
    struct timespec tick = {0, 100 * 1000};
    for (int spins = 0; atomic_load(&m->arrived) < THREADS && spins < 50000; spins++) nanosleep(&tick, NULL);
}

static double pool_cpu_seconds(const muster *m)
{
    double sum = 0;
    for (int w = 0; w < THREADS; w++) {
        struct timespec ts;
        clock_gettime(m->clock[w], &ts);
        sum += ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    return sum;
}

static void idle_workers_use_no_cpu(void **st)
{
    (void)st;
    cl_pool *p = cl_pool_new(THREADS);
    muster m = {0};
    cl_pool_for(p, THREADS, 1, wait_for_all, &m);
    assert_int_equal(atomic_load(&m.arrived), THREADS);
    /* OpenMP's default would now spin for milliseconds in every idle worker */
    double c0 = pool_cpu_seconds(&m);
    struct timespec nap = {0, 200 * 1000 * 1000};
    nanosleep(&nap, NULL);
    double used = pool_cpu_seconds(&m) - c0;
    assert_true(used < 0.02);
    cl_pool_free(p);
}

/* cl_pool_for_cpu.  First a loop whose workers each hold an item for 20 ms without computing
 * (as threads the OS has set aside would) while the caller's item returns: the workers' chunks
 * got no CPU.  The next two loops then run in the caller alone, even items that wait for
 * another thread to arrive; the third offers its items to the threads again. */
typedef struct solo {
    atomic_int arrived;
    atomic_int seen[THREADS];
    int timeout_ms;
} solo;

static void workers_get_no_cpu(void *ctx, int i, int worker)
{
    (void)i;
    solo *m = ctx;
    if (worker < 0 || worker >= THREADS || atomic_exchange(&m->seen[worker], 1)) return;
    atomic_fetch_add(&m->arrived, 1);
    struct timespec tick = {0, 100 * 1000};
    for (int spins = 0; atomic_load(&m->arrived) < THREADS && spins < 50000; spins++) nanosleep(&tick, NULL);
    struct timespec set_aside = {0, 20 * 1000 * 1000};
    if (worker != 0) nanosleep(&set_aside, NULL);
}

static void wait_a_while_for_all(void *ctx, int i, int worker)
{
    (void)i;
    solo *m = ctx;
    if (worker < 0 || worker >= THREADS) return;
    atomic_fetch_add(&m->seen[worker], 1);
    atomic_fetch_add(&m->arrived, 1);
    struct timespec tick = {0, 1000 * 1000};
    for (int ms = 0; atomic_load(&m->arrived) < THREADS && ms < m->timeout_ms; ms++) nanosleep(&tick, NULL);
}

static void a_cpu_loop_whose_threads_did_not_run_at_once_goes_alone_for_a_while(void **st)
{
    (void)st;
    cl_pool *p = cl_pool_new(THREADS);
    assert_non_null(p);
    solo *m = calloc(1, sizeof *m);
    cl_pool_for_cpu(p, THREADS, 1, workers_get_no_cpu, m);
    assert_int_equal(atomic_load(&m->arrived), THREADS);
    for (int round = 0; round < 2; round++) {
        *m = (solo){.timeout_ms = 20};
        cl_pool_for_cpu(p, THREADS, 1, wait_a_while_for_all, m);
        assert_int_equal(atomic_load(&m->seen[0]), THREADS);
    }
    *m = (solo){.timeout_ms = 5000};
    cl_pool_for_cpu(p, THREADS, 1, wait_a_while_for_all, m);
    assert_int_equal(atomic_load(&m->arrived), THREADS);
    assert_true(atomic_load(&m->seen[0]) < THREADS);
    free(m);
    cl_pool_free(p);
}

/* The verdict on made-up clocks.  A caller that read and wrote while its workers finished the
 * loop and slept (the loop's whole span had the threads at about one CPU between them) has not
 * starved them; workers that held chunks without CPU have been; the backoff doubles from 2 to
 * 32 and resets. */
static void the_verdict_reads_the_workers_chunks_alone(void **st)
{
    (void)st;
    job j = {.judge = 1, .worker_chunks = 3, .worker_wall = 9e-3, .worker_cpu = 8.8e-3};
    assert_int_equal(starved(&j, 10e-3), 0);
    j.worker_cpu = 0.75 * j.worker_wall;
    assert_int_equal(starved(&j, 10e-3), 1);
    j.worker_cpu = 4.5e-3;
    assert_int_equal(starved(&j, 10e-3), 1);
    j.worker_wall = 2e-4, j.worker_cpu = 0;
    assert_int_equal(starved(&j, 10e-3), -1);
    /* no worker took a chunk: a caller that ran the loop alone for a millisecond starved them;
     * one that was done sooner, or ran one chunk, says nothing */
    j = (job){.judge = 1, .caller_chunks = 2};
    assert_int_equal(starved(&j, 0.5e-3), -1);
    assert_int_equal(starved(&j, 1e-3), 1);
    j.caller_chunks = 1;
    assert_int_equal(starved(&j, 5e-3), -1);

    cl_pool p = {0};
    j = (job){.judge = 1, .caller_chunks = 2, .posted = -1e9}; /* posted long before now */
    for (int want = 2; want <= 64; want *= 2) {
        judge(&p, &j);
        assert_int_equal(p.alone_left, want < 32 ? want : 32);
    }
    j = (job){.judge = 1, .worker_chunks = 1, .worker_wall = 1e-3, .worker_cpu = 1e-3};
    judge(&p, &j);
    assert_int_equal(p.backoff, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_index_runs_once_and_worker_numbers_are_exclusive),
        cmocka_unit_test(a_null_or_single_thread_pool_runs_in_the_caller),
        cmocka_unit_test(idle_workers_use_no_cpu),
        cmocka_unit_test(posted_loops_run_every_index_once_in_any_wait_order),
        cmocka_unit_test(a_waiting_caller_runs_later_loops_while_a_worker_holds_its_last_chunk),
        cmocka_unit_test(a_cpu_loop_whose_threads_did_not_run_at_once_goes_alone_for_a_while),
        cmocka_unit_test(the_verdict_reads_the_workers_chunks_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

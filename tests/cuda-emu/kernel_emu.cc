// kernel_emu.cc — the coroutine scheduler behind kernel_emu.h: one ucontext per CUDA thread,
// run in turn until each reaches a barrier or returns; then the barrier opens for all.
#include "kernel_emu.h"

#include <stdlib.h>
#include <ucontext.h>

dim3 emu_threadIdx, emu_blockIdx, emu_blockDim, emu_gridDim;
double emu_xchg[1024];

enum { RUNNABLE, AT_BARRIER, DONE };
enum { STACK = 256 << 10 };

struct coro {
    ucontext_t ctx;
    char *stack;
    int state;
};

static coro th[1024];
static ucontext_t sched;
static unsigned cur;
static const std::function<void()> *body_p;

static void trampoline(void)
{
    (*body_p)();
    th[cur].state = DONE; // returning resumes the scheduler through uc_link
}

void __syncthreads(void)
{
    th[cur].state = AT_BARRIER;
    swapcontext(&th[cur].ctx, &sched);
}

void emu_launch(dim3 grid, dim3 block, const std::function<void()> &body)
{
    unsigned nt = block.x;
    if (block.y != 1 || block.z != 1 || nt < 1 || nt > 1024 || grid.z != 1)
        cl_die(CL_EXIT_SOFTWARE, "kernel emulation: unsupported launch shape");
    emu_gridDim = grid;
    emu_blockDim = block;
    body_p = &body;
    for (unsigned t = 0; t < nt; t++)
        if (!th[t].stack && !(th[t].stack = (char *)malloc(STACK))) cl_die(CL_EXIT_SOFTWARE, "out of memory");
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            emu_blockIdx = dim3(bx, by, 0);
            for (unsigned t = 0; t < nt; t++) {
                getcontext(&th[t].ctx);
                th[t].ctx.uc_stack.ss_sp = th[t].stack;
                th[t].ctx.uc_stack.ss_size = STACK;
                th[t].ctx.uc_link = &sched;
                makecontext(&th[t].ctx, trampoline, 0);
                th[t].state = RUNNABLE;
            }
            for (;;) {
                for (unsigned t = 0; t < nt; t++) {
                    if (th[t].state != RUNNABLE) continue;
                    cur = t;
                    emu_threadIdx = dim3(t, 0, 0);
                    swapcontext(&sched, &th[t].ctx);
                }
                int waiting = 0;
                for (unsigned t = 0; t < nt; t++)
                    if (th[t].state == AT_BARRIER) {
                        th[t].state = RUNNABLE;
                        waiting = 1;
                    }
                if (!waiting) break;
            }
        }
}

/* sandbox.h — runs untrusted model-written Python against its unittest, contained.
 *
 * Owns: one fresh process tree per test (fork, then exec of the interpreter), its own
 * temporary directory, a scrubbed environment (nothing of ours, no API keys), resource limits
 * (CPU, address space, file size, processes, open files, no core), a wall-clock deadline that
 * kills the whole process group, no network, and the verdict of the run.
 *
 * Protections, strongest first, each used when the kernel and our privileges allow it (probed
 * once by sandbox_new; sandbox_protections() names the active ones):
 *   - as root: new PID, network, mount, IPC and UTS namespaces; every inherited mount made
 *     read-only, the only writable filesystem a scratch tmpfs of scratch_mb on /tmp (also on
 *     /var/tmp and /dev/shm) holding the work directory /tmp/work; /proc remounted; the test
 *     runs under an unprivileged uid of its own (so RLIMIT_NPROC bites);
 *   - not root: the same namespaces inside a new user namespace when the kernel lets
 *     unprivileged users create one; otherwise none, and the test runs as the calling user;
 *   - always: seccomp filter (inet/other sockets, ptrace, mount, bpf, io_uring, keyctl,
 *     perf_event_open, namespace calls refused with EPERM), no_new_privs, rlimits, scrubbed
 *     environment, process-group kill at the deadline.
 *
 * Forking from a multithreaded (OpenMP) process: everything that allocates (seccomp program,
 * argv, envp, files) is prepared before fork; the child only makes system calls. */
#ifndef CL_SANDBOX_H
#define CL_SANDBOX_H

#include <stddef.h>

#include "core/err.h"

typedef struct sandbox_cfg {
    const char *python;   /* interpreter; NULL = python3 found in /usr/local/bin:/usr/bin:/bin */
    double wall_s;        /* wall-clock deadline per test */
    double cpu_s;         /* RLIMIT_CPU (soft; hard = soft + 1) */
    long mem_mb;          /* RLIMIT_AS */
    long fsize_mb;        /* RLIMIT_FSIZE */
    long scratch_mb;      /* the scratch tmpfs (/tmp, /var/tmp, /dev/shm, the work directory)
                           * that is all a test can write, with namespaces */
    long nproc;           /* RLIMIT_NPROC */
    int seccomp;          /* 1 = install the seccomp filter */
    int namespaces;       /* 1 = use namespaces when available */
    size_t output_cap;    /* bytes of the test's stdout+stderr kept for the report */
} sandbox_cfg;

/* Defaults: the official pass rate's time and memory (wall 241 s, no CPU limit, 300 GiB of
 * address space), 64 MiB files, 64 processes, 128 MiB of scratch, seccomp and namespaces on,
 * 4 KiB of output kept. */
sandbox_cfg sandbox_defaults(void);

typedef enum sandbox_status {
    SANDBOX_PASS,    /* every test ran and passed (and at least one ran) */
    SANDBOX_FAIL,    /* the tests ran; some failed or raised */
    SANDBOX_TIMEOUT, /* wall deadline, or the CPU limit killed it */
    SANDBOX_ERROR    /* no verdict: syntax error, crash, import-time exit, killed */
} sandbox_status;

const char *sandbox_status_name(sandbox_status s);

typedef struct sandbox_result {
    sandbox_status status;
    int tests_run, failures, errors;  /* from the runner's verdict; -1 when there is none */
    double wall_s;                    /* seconds from fork to reaping */
    int exit_code;                    /* the interpreter's exit status, -1 if killed */
    int signal;                       /* the signal that killed it, 0 if none */
    char detail[256];                 /* why, in words (the error line, the limit hit) */
    char *output;                     /* head of stdout+stderr (malloc'd, NUL-terminated) */
} sandbox_result;

typedef struct sandbox sandbox;

/* Resolves the interpreter, builds the seccomp program and probes which namespaces work.
 * NULL with e set when the interpreter is missing or seccomp cannot be built. */
sandbox *sandbox_new(const sandbox_cfg *cfg, cl_err *e);
void sandbox_free(sandbox *sb);

/* The active protections in words, e.g. "netns pidns mountns read-only private-tmp uid-drop seccomp
 * rlimits scrubbed-env deadline". */
const char *sandbox_protections(const sandbox *sb);

/* Runs `code` followed by `test` as one module and its unittest.TestCase classes.  `slot`
 * (0..255) separates concurrent runs: as root each slot gets its own uid.  Thread-safe for
 * distinct slots.  Returns 0 with *r filled (free with sandbox_result_free), or -1 with e set
 * when the sandbox itself could not run (no temporary directory, fork failed): that is never a
 * verdict on the code. */
int sandbox_run_unittest(sandbox *sb, const char *code, const char *test, int slot,
                         sandbox_result *r, cl_err *e);
void sandbox_result_free(sandbox_result *r);

#endif

#define _GNU_SOURCE
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/cli.h"

/* The runner the interpreter executes: runs prog.py (solution + test) as module "prog", runs
 * every TestCase in it and writes its verdict on fd 3, which only the sandbox reads: a line
 * "cl-verdict RUN FAILURES ERRORS", then the import error, if any, on one line.  The module is
 * executed from its relative path, because the import system would reach it by an absolute one
 * that a directory above may close to the test's uid.  Plain text, because importing json
 * costs more than the rest of the runner. */
static const char runner_py[] =
    "import sys, types, unittest\n"
    "v, why = (0, 0, 1), ''\n"
    "try:\n"
    "    prog = types.ModuleType('prog')\n"
    "    prog.__file__ = 'prog.py'\n"
    "    sys.modules['prog'] = prog\n"
    "    with open('prog.py') as f:\n"
    "        src = f.read()\n"
    "    exec(compile(src, 'prog.py', 'exec'), prog.__dict__)\n"
    "    suite = unittest.defaultTestLoader.loadTestsFromModule(prog)\n"
    "    r = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)\n"
    "    v = (r.testsRun, len(r.failures) + len(r.unexpectedSuccesses), len(r.errors))\n"
    "except BaseException as x:\n"
    "    why = (type(x).__name__ + ': ' + str(x))[:200].replace('\\n', ' ')\n"
    "import os\n"
    "os.write(3, ('cl-verdict %d %d %d\\n%s\\n' % (v + (why,))).encode())\n";

/* Where the work directory appears inside the namespaces. */
#define SANDBOX_WORK "/tmp/work"

enum { NS_NONE = 0, NS_ROOT = 1, NS_USER = 2 };

struct sandbox {
    sandbox_cfg cfg;
    char python[4096];
    struct sock_fprog filter;  /* exported seccomp program, installed by the child */
    int ns;                    /* NS_* that the probe found working */
    int root;
    char protections[256];
    char tmpfs_opts[64];       /* mount options of the scratch tmpfs */
    char uid_map[32], gid_map[32]; /* NS_USER: our ids mapped to themselves */
    char *argv[6];
    char *envp[16];
};

sandbox_cfg sandbox_defaults(void)
{
    /* Time and memory as the official pass rate checks (BigCodeBench's untrusted_check as the
     * release code calls it: 300*1024 MB address space, no CPU limit, max(240, 60) + 1 s of
     * wall clock per task), so that a task it passes does not fail here for a limit alone. */
    return (sandbox_cfg){.wall_s = 241, .cpu_s = 0, .mem_mb = 300 * 1024, .fsize_mb = 64, .nproc = 64,
                         .scratch_mb = 128, .seccomp = 1, .namespaces = 1, .output_cap = 4096};
}

const char *sandbox_status_name(sandbox_status s)
{
    static const char *names[] = {"pass", "fail", "timeout", "error"};
    return names[s];
}

static int resolve_python(const char *want, char *out, size_t n)
{
    if (want && strchr(want, '/')) {
        if (access(want, X_OK) != 0)
            return -1;
        snprintf(out, n, "%s", want);
        return 0;
    }
    /* Searched in the sandbox's own PATH, not ours: a user shim (pyenv) may not work for the
     * sandbox's uid or environment. */
    static const char *dirs[] = {"/usr/local/bin", "/usr/bin", "/bin"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(out, n, "%s/%s", dirs[i], want ? want : "python3");
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

static int build_filter(sandbox *sb, cl_err *e)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "seccomp_init failed");
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    static const int denied[] = {
        SCMP_SYS(ptrace),     SCMP_SYS(mount),          SCMP_SYS(umount2),
        SCMP_SYS(bpf),        SCMP_SYS(keyctl),         SCMP_SYS(add_key),
        SCMP_SYS(request_key),SCMP_SYS(perf_event_open),SCMP_SYS(unshare),
        SCMP_SYS(setns),      SCMP_SYS(io_uring_setup), SCMP_SYS(kexec_load),
        SCMP_SYS(init_module),SCMP_SYS(finit_module),   SCMP_SYS(process_vm_readv),
        SCMP_SYS(process_vm_writev), SCMP_SYS(userfaultfd), SCMP_SYS(pivot_root),
        /* the new mount API: it could undo the read-only view as well as mount(2) could */
        SCMP_SYS(mount_setattr), SCMP_SYS(open_tree), SCMP_SYS(move_mount),
        SCMP_SYS(fsopen),     SCMP_SYS(fsconfig),       SCMP_SYS(fsmount), SCMP_SYS(fspick),
    };
    for (size_t i = 0; rc == 0 && i < sizeof denied / sizeof *denied; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0);
    /* The exported BPF goes through a temporary file: libseccomp writes to a descriptor. */
    FILE *f = rc == 0 ? tmpfile() : NULL;
    if (f && seccomp_export_bpf(ctx, fileno(f)) == 0) {
        long len = lseek(fileno(f), 0, SEEK_END);
        sb->filter.filter = len > 0 ? malloc((size_t)len) : NULL;
        if (sb->filter.filter && pread(fileno(f), sb->filter.filter, (size_t)len, 0) == len)
            sb->filter.len = (unsigned short)(len / (long)sizeof(struct sock_filter));
    }
    if (f)
        fclose(f);
    seccomp_release(ctx);
    if (!sb->filter.len)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "cannot build the seccomp filter");
    return 0;
}

static int ns_flags(int ns)
{
    int f = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    return ns == NS_USER ? f | CLONE_NEWUSER : f;
}

/* Whether unshare with these namespaces works here (containers may refuse it). */
static int probe_ns(int ns)
{
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0)
        _exit(unshare(ns_flags(ns)) == 0 ? 0 : 1);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

sandbox *sandbox_new(const sandbox_cfg *cfg, cl_err *e)
{
    sandbox *sb = calloc(1, sizeof *sb);
    if (!sb) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    sb->cfg = *cfg;
    if (resolve_python(cfg->python, sb->python, sizeof sb->python) != 0) {
        cl_err_set(e, CL_EXIT_CONFIG, "python interpreter %s not found (use --python PATH)",
                   cfg->python ? cfg->python : "python3");
        free(sb);
        return NULL;
    }
    if (cfg->seccomp && build_filter(sb, e) != 0) {
        sandbox_free(sb);
        return NULL;
    }
    sb->root = geteuid() == 0;
    if (cfg->namespaces)
        sb->ns = sb->root ? (probe_ns(NS_ROOT) ? NS_ROOT : NS_NONE)
                          : (probe_ns(NS_USER) ? NS_USER : NS_NONE);
    snprintf(sb->protections, sizeof sb->protections, "%s%s%s%s rlimits scrubbed-env deadline",
             sb->ns ? "netns pidns mountns ipcns read-only private-tmp " : "",
             sb->ns == NS_USER ? "userns " : "", sb->root ? "uid-drop " : "",
             cfg->seccomp ? "seccomp no-new-privs" : "no-new-privs");
    snprintf(sb->tmpfs_opts, sizeof sb->tmpfs_opts, "size=%ldm,mode=1777",
             cfg->scratch_mb > 0 ? cfg->scratch_mb : sandbox_defaults().scratch_mb);
    snprintf(sb->uid_map, sizeof sb->uid_map, "%lu %lu 1", (unsigned long)geteuid(),
             (unsigned long)geteuid());
    snprintf(sb->gid_map, sizeof sb->gid_map, "%lu %lu 1", (unsigned long)getegid(),
             (unsigned long)getegid());
    sb->argv[0] = sb->python;
    sb->argv[1] = "-I";
    sb->argv[2] = "-B";
    /* The runner goes on the command line: a script file would be opened by absolute path,
     * which fails when a directory above the work directory is closed to the test's uid. */
    sb->argv[3] = "-c";
    sb->argv[4] = (char *)runner_py;
    static char *env[] = {
        "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TZ=UTC",
        "MPLBACKEND=Agg", "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1",
        "MALLOC_ARENA_MAX=2", NULL, NULL};
    memcpy(sb->envp, env, sizeof env);
    /* HOME: the work directory (a relative path when there are no namespaces). */
    sb->envp[9] = sb->ns ? "HOME=" SANDBOX_WORK : "HOME=.";
    return sb;
}

void sandbox_free(sandbox *sb)
{
    if (!sb)
        return;
    free(sb->filter.filter);
    free(sb);
}

const char *sandbox_protections(const sandbox *sb) { return sb->protections; }

void sandbox_result_free(sandbox_result *r)
{
    free(r->output);
    r->output = NULL;
}

/* ---- the child side: system calls only ------------------------------------------------- */

static _Noreturn void child_fail(int fd, const char *what)
{
    /* Reported through the status pipe as text after the marker byte. */
    char buf[160];
    size_t n = 0;
    buf[n++] = 'E';
    for (const char *p = what; *p && n < sizeof buf - 24; p++)
        buf[n++] = *p;
    const char *es = ": errno ";
    for (const char *p = es; *p; p++)
        buf[n++] = *p;
    int v = errno;
    char d[12];
    int k = 0;
    do {
        d[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && k < 11);
    while (k)
        buf[n++] = d[--k];
    if (write(fd, buf, n) < 0) {
        /* Nothing left to report to. */
    }
    _exit(127);
}

static void set_limit(int res, rlim_t soft, rlim_t hard, int fd)
{
    struct rlimit rl = {soft, hard};
    if (setrlimit(res, &rl) != 0)
        child_fail(fd, "setrlimit");
}

typedef struct child_plan {
    const sandbox *sb;
    const char *dir;
    uid_t uid;
    pid_t parent;      /* the tool, to notice that it died before PR_SET_PDEATHSIG took hold */
    int out_w, verdict_w, status_w, devnull;
} child_plan;

/* Descriptors of the process tree: 0 /dev/null, 1 and 2 the output pipe, 3 the verdict pipe,
 * 4 the status pipe (closed at exec). */
enum { FD_VERDICT = 3, FD_STATUS = 4 };

/* With namespaces, the test's whole writable world is one size-capped tmpfs: every mount it
 * inherits becomes read-only (so no world-writable host directory such as /run/lock takes its
 * files, and no disk fills up), then the scratch tmpfs goes on /tmp and is bound again on
 * /var/tmp and /dev/shm (one cap for all three), and the work directory /tmp/work in it gets a
 * copy of prog.py: the host's directory itself is never visible.  /proc is remounted to show
 * only the namespace.  Called in the test's directory, before the uid drop. */
static void enter_scratch(const child_plan *p, int fd)
{
    int src = open("prog.py", O_RDONLY | O_CLOEXEC);
    if (src < 0)
        child_fail(fd, "open prog.py");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        child_fail(fd, "mount private");
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) != 0)
        child_fail(fd, "read-only mounts (mount_setattr, Linux 5.12)");
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, p->sb->tmpfs_opts) != 0)
        child_fail(fd, "mount tmpfs");
    static const char *also[] = {"/var/tmp", "/dev/shm"};
    for (int i = 0; i < 2; i++)
        if (access(also[i], F_OK) == 0 && mount("/tmp", also[i], NULL, MS_BIND, NULL) != 0)
            child_fail(fd, "bind tmpfs");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        child_fail(fd, "mount proc");
    if (mkdir(SANDBOX_WORK, 0700) != 0 || (p->sb->root && chown(SANDBOX_WORK, p->uid, p->uid) != 0))
        child_fail(fd, "make the work directory");
    int dst = open(SANDBOX_WORK "/prog.py", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (dst < 0)
        child_fail(fd, "copy prog.py");
    char buf[16384];
    ssize_t k;
    while ((k = read(src, buf, sizeof buf)) > 0)
        if (write(dst, buf, (size_t)k) != k)
            child_fail(fd, "copy prog.py");
    if (k < 0 || close(dst) != 0 || chdir(SANDBOX_WORK) != 0)
        child_fail(fd, "copy prog.py");
    close(src);
}

/* The test process: limits, identity, filter, then the interpreter. */
static _Noreturn void run_test_process(const child_plan *p)
{
    const sandbox *sb = p->sb;
    int fd = FD_STATUS;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (chdir(p->dir) != 0)
        child_fail(fd, "chdir");
    if (sb->ns)
        enter_scratch(p, fd);
    if (sb->cfg.cpu_s > 0) {
        rlim_t c = (rlim_t)(sb->cfg.cpu_s + 0.999);
        set_limit(RLIMIT_CPU, c, c + 1, fd);
    }
    if (sb->cfg.mem_mb > 0)
        set_limit(RLIMIT_AS, (rlim_t)sb->cfg.mem_mb << 20, (rlim_t)sb->cfg.mem_mb << 20, fd);
    if (sb->cfg.fsize_mb > 0)
        set_limit(RLIMIT_FSIZE, (rlim_t)sb->cfg.fsize_mb << 20, (rlim_t)sb->cfg.fsize_mb << 20, fd);
    if (sb->cfg.nproc > 0)
        set_limit(RLIMIT_NPROC, (rlim_t)sb->cfg.nproc, (rlim_t)sb->cfg.nproc, fd);
    set_limit(RLIMIT_NOFILE, 64, 64, fd);
    set_limit(RLIMIT_CORE, 0, 0, fd);
    if (sb->root) {
        /* Raw system calls: glibc's set*id would try to signal threads that no longer exist
         * in this child of a multithreaded process. */
        if (syscall(SYS_setgroups, 0, NULL) != 0 ||
            syscall(SYS_setresgid, p->uid, p->uid, p->uid) != 0 ||
            syscall(SYS_setresuid, p->uid, p->uid, p->uid) != 0)
            child_fail(fd, "drop privileges");
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail(fd, "no_new_privs");
    if (sb->filter.len && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &sb->filter) != 0)
        child_fail(fd, "seccomp");
    execve(sb->python, sb->argv, sb->envp);
    child_fail(fd, "exec");
}

/* Writes a short text to a /proc file with system calls only. */
static int put_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Forks `child` and waits for it; with report set, its wait status goes up the status pipe
 * ('S' + 4 bytes). */
static _Noreturn void fork_and_wait(const child_plan *p, void (*child)(const child_plan *),
                                    int report)
{
    pid_t pid = fork();
    if (pid < 0)
        child_fail(FD_STATUS, "fork");
    if (pid == 0) {
        child(p);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            child_fail(FD_STATUS, "waitpid");
    char buf[5] = {'S'};
    memcpy(buf + 1, &st, 4);
    if (report && write(FD_STATUS, buf, 5) < 0)
        _exit(126);
    _exit(0);
}

/* PID 1 of the new namespace.  The interpreter must not be PID 1 itself: the kernel would
 * drop the SIGXCPU of the CPU limit, as it drops unhandled signals to a namespace's init. */
static _Noreturn void run_init(const child_plan *p)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    fork_and_wait(p, run_test_process, 1);
}

/* The group leader: our descriptors reduced to the five the tree needs (another thread's
 * pipes must not stay open in here), new namespaces, then init and the test below it. */
static _Noreturn void run_leader(const child_plan *p)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != p->parent)
        _exit(127);
    int src[5] = {p->devnull, p->out_w, p->out_w, p->verdict_w, p->status_w};
    for (int i = 0; i < 5; i++)
        if ((src[i] = fcntl(src[i], F_DUPFD, 16)) < 0)
            _exit(127);
    for (int i = 0; i < 5; i++)
        if (dup2(src[i], i) < 0)
            _exit(127);
    if (syscall(SYS_close_range, 5, ~0U, 0) != 0)
        for (int i = 5; i < 4096; i++)
            close(i);
    fcntl(FD_STATUS, F_SETFD, FD_CLOEXEC);
    if (p->sb->ns && unshare(ns_flags(p->sb->ns)) != 0)
        child_fail(FD_STATUS, "unshare");
    /* In a user namespace we keep our own ids (so exec drops the namespace's capabilities);
     * unmapped, the work directory's owner would be unrepresentable and bind mounts fail. */
    if (p->sb->ns == NS_USER && (put_file("/proc/self/setgroups", "deny") != 0 ||
                                 put_file("/proc/self/uid_map", p->sb->uid_map) != 0 ||
                                 put_file("/proc/self/gid_map", p->sb->gid_map) != 0))
        child_fail(FD_STATUS, "map ids");
    fork_and_wait(p, run_init, 0);
}

/* ---- the parent side -------------------------------------------------------------------- */

/* prog.py: the solution, then the test, as one module (BigCodeBench runs them so). */
static int write_module(const char *dir, const char *code, const char *test)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/prog.py", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%s\n\n%s\n", code, test);
    return fclose(f);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Bytes read from one pipe; output beyond the cap is read and dropped so the child never
 * blocks on a full pipe. */
typedef struct sink {
    int fd;
    char *buf;
    size_t n, cap;
} sink;

static void drain(sink *s)
{
    char tmp[8192];
    ssize_t k = read(s->fd, tmp, sizeof tmp);
    if (k <= 0) {
        if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
            close(s->fd);
            s->fd = -1;
        }
        return;
    }
    size_t keep = s->n + (size_t)k <= s->cap ? (size_t)k : s->cap - s->n;
    memcpy(s->buf + s->n, tmp, keep);
    s->n += keep;
}

static void parse_verdict(const char *v, sandbox_result *r)
{
    int run, failures, errors, used = 0;
    if (sscanf(v, "cl-verdict %d %d %d\n%n", &run, &failures, &errors, &used) != 3 || !used)
        return;
    r->tests_run = run;
    r->failures = failures;
    r->errors = errors;
    size_t n = strcspn(v + used, "\n");
    if (n)
        snprintf(r->detail, sizeof r->detail, "%.*s", (int)n, v + used);
}

static void classify(const sandbox *sb, sandbox_result *r, int timed_out, int have_status, int st,
                     char *verdict, size_t vn)
{
    r->exit_code = -1;
    r->signal = 0;
    if (have_status) {
        if (WIFEXITED(st))
            r->exit_code = WEXITSTATUS(st);
        else if (WIFSIGNALED(st))
            r->signal = WTERMSIG(st);
    }
    r->tests_run = r->failures = r->errors = -1;
    if (vn && verdict[vn - 1] == '\n') {
        verdict[vn] = 0;
        parse_verdict(verdict, r);
    }
    int cpu_killed = r->signal == SIGXCPU || (r->signal == SIGKILL && !timed_out &&
                                              sb->cfg.cpu_s > 0 && r->wall_s >= sb->cfg.cpu_s);
    if (timed_out) {
        r->status = SANDBOX_TIMEOUT;
        snprintf(r->detail, sizeof r->detail, "wall-clock limit of %g s", sb->cfg.wall_s);
    } else if (cpu_killed) {
        r->status = SANDBOX_TIMEOUT;
        snprintf(r->detail, sizeof r->detail, "CPU limit of %g s", sb->cfg.cpu_s);
    } else if (r->tests_run < 0 || r->exit_code != 0) {
        r->status = SANDBOX_ERROR;
        if (r->tests_run >= 0 && (r->failures > 0 || r->errors > 0))
            r->status = SANDBOX_FAIL; /* a verdict, then a nonzero exit: still a verdict */
        else if (!r->detail[0] && r->signal)
            snprintf(r->detail, sizeof r->detail, "killed by signal %d", r->signal);
        else if (!r->detail[0])
            snprintf(r->detail, sizeof r->detail, "no verdict (exit status %d)", r->exit_code);
    } else if (r->failures == 0 && r->errors == 0 && r->tests_run > 0) {
        r->status = SANDBOX_PASS;
    } else {
        r->status = SANDBOX_FAIL;
        if (!r->detail[0])
            snprintf(r->detail, sizeof r->detail, "%d of %d tests failed, %d errors", r->failures,
                     r->tests_run, r->errors);
    }
}

int sandbox_run_unittest(sandbox *sb, const char *code, const char *test, int slot,
                         sandbox_result *r, cl_err *e)
{
    memset(r, 0, sizeof *r);
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cl-sandbox.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return cl_err_set(e, CL_EXIT_IOERR, "sandbox: cannot create a directory in %s: %s",
                          tmp && *tmp ? tmp : "/tmp", strerror(errno));
    uid_t uid = (uid_t)(200000 + (getpid() % 4096) * 256 + (slot & 255));
    int out_p[2] = {-1, -1}, ver_p[2] = {-1, -1}, st_p[2] = {-1, -1}, devnull = -1, rc = -1;
    char *outbuf = malloc(sb->cfg.output_cap + 1);
    char verdict[1024], status[200];
    if (!outbuf || write_module(dir, code, test) != 0 ||
        (sb->root && (chown(dir, uid, uid) != 0 || chmod(dir, 0700) != 0))) {
        cl_err_set(e, CL_EXIT_IOERR, "sandbox: cannot prepare %s: %s", dir, strerror(errno));
        goto out;
    }
    if (pipe2(out_p, O_CLOEXEC) || pipe2(ver_p, O_CLOEXEC) || pipe2(st_p, O_CLOEXEC) ||
        (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "sandbox: pipe: %s", strerror(errno));
        goto out;
    }
    child_plan plan = {sb, dir, uid, getpid(), out_p[1], ver_p[1], st_p[1], devnull};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t leader = fork();
    if (leader < 0) {
        cl_err_set(e, CL_EXIT_TEMPFAIL, "sandbox: fork: %s", strerror(errno));
        goto out;
    }
    if (leader == 0)
        run_leader(&plan);
    /* Both of us set the group, so a kill right after fork cannot miss it. */
    setpgid(leader, leader);
    close(out_p[1]);
    close(ver_p[1]);
    close(st_p[1]);
    out_p[1] = ver_p[1] = st_p[1] = -1;
    sink sinks[3] = {{out_p[0], outbuf, 0, sb->cfg.output_cap},
                     {ver_p[0], verdict, 0, sizeof verdict - 1},
                     {st_p[0], status, 0, sizeof status - 1}};
    out_p[0] = ver_p[0] = st_p[0] = -1;
    int timed_out = 0, killed = 0;
    for (;;) {
        struct pollfd pf[3];
        int np = 0;
        for (int i = 0; i < 3; i++)
            if (sinks[i].fd >= 0)
                pf[np++] = (struct pollfd){.fd = sinks[i].fd, .events = POLLIN};
        if (np == 0)
            break;
        /* The leader has reported (or died): whatever is left of the group goes now, so a
         * background process holding our pipes cannot stretch the run to the deadline. */
        if (sinks[2].fd < 0 && !killed) {
            kill(-leader, SIGKILL);
            killed = 1;
        }
        double left = sb->cfg.wall_s - elapsed(&t0);
        if (left <= 0 && !killed) {
            timed_out = 1;
            kill(-leader, SIGKILL);
            killed = 1;
        }
        int ms = killed ? 1000 : (int)(left * 1000) + 1;
        int k = poll(pf, (nfds_t)np, ms);
        if (k < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 3; i++) {
            if (sinks[i].fd < 0)
                continue;
            for (int j = 0; j < np; j++)
                if (pf[j].fd == sinks[i].fd && pf[j].revents)
                    drain(&sinks[i]);
        }
        if (k == 0 && killed)
            break; /* a process outside our reach still holds a pipe: stop waiting */
    }
    for (int i = 0; i < 3; i++)
        if (sinks[i].fd >= 0)
            close(sinks[i].fd);
    int lst;
    while (waitpid(leader, &lst, 0) < 0 && errno == EINTR)
        ;
    r->wall_s = elapsed(&t0);
    outbuf[sinks[0].n] = 0;
    r->output = outbuf;
    outbuf = NULL;
    if (sinks[2].n > 0 && status[0] == 'E') {
        status[sinks[2].n] = 0;
        cl_err_set(e, CL_EXIT_SOFTWARE, "sandbox: %s", status + 1);
        sandbox_result_free(r);
        goto out;
    }
    int st = 0, have = sinks[2].n >= 5 && status[0] == 'S';
    if (have)
        memcpy(&st, status + 1, 4);
    classify(sb, r, timed_out, have, st, verdict, sinks[1].n);
    rc = 0;
out:
    free(outbuf);
    int fds[] = {out_p[0], out_p[1], ver_p[0], ver_p[1], st_p[0], st_p[1], devnull};
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

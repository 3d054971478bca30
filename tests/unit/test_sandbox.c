/* Unit tests for lib/sandbox: real python3 processes doing what untrusted code does, each
 * contained and reported.  Checks that need root (namespaces, uid drop) skip loudly without. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

static sandbox *sb;

static sandbox_result run(const char *code, const char *test)
{
    sandbox_result r;
    cl_err e = {0};
    if (sandbox_run_unittest(sb, code, test, 0, &r, &e) != 0)
        fail_msg("sandbox failed: %s", e.msg);
    return r;
}

#define TESTCASE(body)                                                                     \
    "import os, sys, time, unittest\nclass TestCases(unittest.TestCase):\n    def test_it(self):\n" body

static void passing_and_failing_tests_are_told_apart(void **state)
{
    (void)state;
    sandbox_result r = run("def add(a, b):\n    return a + b\n",
                           TESTCASE("        self.assertEqual(add(2, 3), 5)\n"));
    assert_string_equal(sandbox_status_name(r.status), "pass");
    assert_int_equal(r.tests_run, 1);
    sandbox_result_free(&r);
    r = run("def add(a, b):\n    return a - b\n", TESTCASE("        self.assertEqual(add(2, 3), 5)\n"));
    assert_string_equal(sandbox_status_name(r.status), "fail");
    assert_int_equal(r.failures, 1);
    assert_non_null(strstr(r.output, "AssertionError"));
    sandbox_result_free(&r);
    r = run("def add(a, b) return a\n", TESTCASE("        pass\n"));
    assert_string_equal(sandbox_status_name(r.status), "fail");
    assert_non_null(strstr(r.detail, "SyntaxError"));
    sandbox_result_free(&r);
    r = run("import os\nos._exit(0)\n", TESTCASE("        pass\n"));
    assert_string_equal(sandbox_status_name(r.status), "error");
    sandbox_result_free(&r);
    r = run("x = 1\n", "import unittest\n");
    assert_string_equal(sandbox_status_name(r.status), "fail"); /* no tests ran: not a pass */
    assert_int_equal(r.tests_run, 0);
    sandbox_result_free(&r);
}

static void infinite_loop_hits_the_cpu_limit(void **state)
{
    (void)state;
    /* A wall limit far above the CPU limit, so a loaded machine cannot turn this into a wall
     * timeout. */
    sandbox_cfg c = sandbox_defaults();
    c.wall_s = 60;
    c.cpu_s = 1;
    cl_err e = {0};
    sandbox *cpu_sb = sandbox_new(&c, &e);
    assert_non_null(cpu_sb);
    sandbox_result r;
    assert_int_equal(sandbox_run_unittest(cpu_sb, "def f():\n    while True:\n        pass\n",
                                          TESTCASE("        f()\n"), 1, &r, &e), 0);
    assert_string_equal(sandbox_status_name(r.status), "timeout");
    assert_non_null(strstr(r.detail, "CPU"));
    assert_true(r.wall_s < 30);
    sandbox_result_free(&r);
    sandbox_free(cpu_sb);
}

static void sleeper_hits_the_wall_deadline_and_its_group_dies(void **state)
{
    (void)state;
    /* A background child keeps the output pipe open: the kill of the group must end it. */
    sandbox_result r = run("import os, time\nif os.fork() == 0:\n    time.sleep(60)\n",
                           TESTCASE("        time.sleep(60)\n"));
    assert_string_equal(sandbox_status_name(r.status), "timeout");
    assert_non_null(strstr(r.detail, "wall"));
    assert_true(r.wall_s < 6);
    sandbox_result_free(&r);
}

static void fork_bomb_is_contained(void **state)
{
    (void)state;
    sandbox_result r = run("", TESTCASE("        n = 0\n"
                                         "        try:\n"
                                         "            while True:\n"
                                         "                if os.fork() == 0:\n"
                                         "                    time.sleep(60)\n"
                                         "                    os._exit(0)\n"
                                         "                n += 1\n"
                                         "        except OSError:\n"
                                         "            pass\n"
                                         "        self.assertLess(n, 100)\n"));
    assert_string_equal(sandbox_status_name(r.status), "pass");
    assert_true(r.wall_s < 4);
    sandbox_result_free(&r);
}

static void memory_hog_gets_memory_error(void **state)
{
    (void)state;
    sandbox_result r = run("", TESTCASE("        x = bytearray(8 << 30)\n"));
    assert_string_equal(sandbox_status_name(r.status), "fail");
    assert_int_equal(r.errors, 1);
    assert_non_null(strstr(r.output, "MemoryError"));
    sandbox_result_free(&r);
}

static void huge_file_write_is_stopped(void **state)
{
    (void)state;
    sandbox_result r = run("", TESTCASE("        with open('big', 'wb') as f:\n"
                                         "            for _ in range(200):\n"
                                         "                f.write(b'x' * (1 << 20))\n"));
    assert_string_equal(sandbox_status_name(r.status), "fail");
    assert_non_null(strstr(r.output, "File too large"));
    sandbox_result_free(&r);
}

static void socket_to_a_live_listener_fails(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 4), 0);
    getsockname(ls, (struct sockaddr *)&a, &al);
    char test[512];
    snprintf(test, sizeof test,
             TESTCASE("        import socket\n"
                      "        with self.assertRaises(OSError):\n"
                      "            socket.create_connection(('127.0.0.1', %d), timeout=2)\n"),
             ntohs(a.sin_port));
    sandbox_result r = run("", test);
    if (r.status != SANDBOX_PASS)
        fail_msg("connected to the host's listener: %s %s", r.detail, r.output);
    sandbox_result_free(&r);
    close(ls);
}

static void parent_environment_is_not_visible(void **state)
{
    (void)state;
    setenv("OPENAI_API_KEY", "sk-cl-sandbox-secret", 1);
    sandbox_result r = run("", TESTCASE(
        "        self.assertNotIn('OPENAI_API_KEY', os.environ)\n"
        "        for p in os.listdir('/proc'):\n"
        "            try:\n"
        "                data = open('/proc/%s/environ' % p, 'rb').read()\n"
        "            except OSError:\n"
        "                continue\n"
        "            self.assertNotIn(b'sk-cl-sandbox-secret', data)\n"));
    if (r.status != SANDBOX_PASS)
        fail_msg("environment leaked: %s %s", r.detail, r.output);
    sandbox_result_free(&r);
    unsetenv("OPENAI_API_KEY");
}

static int needs_namespaces(const char *what)
{
    if (strstr(sandbox_protections(sb), "private-tmp"))
        return 1;
    print_message("# SKIP %s: needs namespaces (root or user ns)\n", what);
    fprintf(stderr, "SKIP: test_sandbox: %s needs namespaces\n", what);
    return 0;
}

static void writes_outside_the_directory_do_not_land(void **state)
{
    (void)state;
    if (!needs_namespaces("writes outside the directory"))
        skip();
    char cwd[4096], host_tmp[256], test[8192];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(host_tmp, sizeof host_tmp, "/tmp/cl-sandbox-escape-%d", (int)getpid());
    snprintf(test, sizeof test, TESTCASE(
        "        open('%s', 'w').write('x')\n"
        "        with self.assertRaises(OSError):\n"
        "            open('%s/cl-sandbox-escape', 'w').write('x')\n"),
        host_tmp, cwd);
    sandbox_result r = run("", test);
    if (r.status != SANDBOX_PASS)
        fail_msg("wrote outside: %s %s", r.detail, r.output);
    sandbox_result_free(&r);
    assert_int_not_equal(access(host_tmp, F_OK), 0);
    char p[4200];
    snprintf(p, sizeof p, "%s/cl-sandbox-escape", cwd);
    assert_int_not_equal(access(p, F_OK), 0);
}

/* The host's world-writable directories (/run/lock was one that took 256 MiB) and every other
 * inherited mount are read-only inside: mountinfo shows "ro" on all but the scratch and /proc. */
static void nothing_outside_the_scratch_is_writable(void **state)
{
    (void)state;
    if (!needs_namespaces("nothing outside the scratch is writable"))
        skip();
    char probe[128], test[4096];
    snprintf(probe, sizeof probe, "/run/lock/cl-sandbox-probe-%d", (int)getpid());
    snprintf(test, sizeof test, TESTCASE(
        "        import errno\n"
        "        if os.path.isdir('/run/lock'):\n"
        "            with self.assertRaises(OSError) as cm:\n"
        "                with open('%s', 'wb') as f:\n"
        "                    f.write(b'x' * 4096)\n"
        "            self.assertEqual(cm.exception.errno, errno.EROFS)\n"
        "        rw = []\n"
        "        for line in open('/proc/self/mountinfo'):\n"
        "            f = line.split()\n"
        "            point, opts = f[4], f[5].split(',')\n"
        "            if point in ('/tmp', '/var/tmp', '/dev/shm') or point.split('/')[1] == 'proc':\n"
        "                continue\n"
        "            if 'ro' not in opts:\n"
        "                rw.append(point)\n"
        "        self.assertEqual(rw, [])\n"
        "        for d in ('/', '/var', '/etc', '/run', '/home'):\n"
        "            if os.path.isdir(d):\n"
        "                with self.assertRaises(OSError):\n"
        "                    open(os.path.join(d, 'cl-sandbox-probe'), 'w').close()\n"), probe);
    sandbox_result r = run("", test);
    if (r.status != SANDBOX_PASS)
        fail_msg("a host directory is writable: %s %s", r.detail, r.output);
    sandbox_result_free(&r);
    assert_int_not_equal(access(probe, F_OK), 0);
}

/* The work directory, /tmp, /var/tmp and /dev/shm share one tmpfs of scratch_mb (32 MiB here):
 * many files each under the file-size limit fill it, and then every write fails with ENOSPC. */
static void scratch_space_is_capped(void **state)
{
    (void)state;
    if (!needs_namespaces("scratch space is capped"))
        skip();
    sandbox_result r = run("", TESTCASE(
        "        import errno\n"
        "        total = 0\n"
        "        with self.assertRaises(OSError) as cm:\n"
        "            for i in range(64):\n"
        "                for k, d in enumerate(('.', '/tmp', '/var/tmp')):\n"
        "                    with open('%s/f%d-%d' % (d, k, i), 'wb') as f:\n"
        "                        for _ in range(3):\n"
        "                            f.write(b'x' * (1 << 20))\n"
        "                            total += 1 << 20\n"
        "        self.assertEqual(cm.exception.errno, errno.ENOSPC)\n"
        "        self.assertLessEqual(total, 32 << 20)\n"
        "        self.assertGreaterEqual(total, 24 << 20)\n"
        "        with self.assertRaises(OSError) as cm:\n"
        "            with open('/dev/shm/more', 'wb') as f:\n"
        "                f.write(b'y' * (1 << 20))\n"
        "        self.assertEqual(cm.exception.errno, errno.ENOSPC)\n"
        "        print('scratch full after', total >> 20, 'MiB', file=sys.stderr)\n"));
    if (r.status != SANDBOX_PASS)
        fail_msg("scratch not capped: %s %s", r.detail, r.output);
    print_message("# %s", strstr(r.output, "scratch full") ? strstr(r.output, "scratch full") : "\n");
    sandbox_result_free(&r);
}

static int setup(void **state)
{
    (void)state;
    sandbox_cfg c = sandbox_defaults();
    c.wall_s = 3;
    c.cpu_s = 2;
    c.mem_mb = 1024;
    c.fsize_mb = 16;
    c.scratch_mb = 32;
    c.nproc = 32;
    cl_err e = {0};
    sb = sandbox_new(&c, &e);
    if (!sb) {
        fprintf(stderr, "sandbox_new: %s\n", e.msg);
        return -1;
    }
    print_message("# sandbox protections: %s\n", sandbox_protections(sb));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sandbox_free(sb);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(passing_and_failing_tests_are_told_apart),
        cmocka_unit_test(infinite_loop_hits_the_cpu_limit),
        cmocka_unit_test(sleeper_hits_the_wall_deadline_and_its_group_dies),
        cmocka_unit_test(fork_bomb_is_contained),
        cmocka_unit_test(memory_hog_gets_memory_error),
        cmocka_unit_test(huge_file_write_is_stopped),
        cmocka_unit_test(socket_to_a_live_listener_fails),
        cmocka_unit_test(parent_environment_is_not_visible),
        cmocka_unit_test(writes_outside_the_directory_do_not_land),
        cmocka_unit_test(nothing_outside_the_scratch_is_writable),
        cmocka_unit_test(scratch_space_is_capped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

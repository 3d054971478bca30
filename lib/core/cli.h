/* cli.h — the command line every cl tool shares.
 *
 * Owns: parsing of the common flags (-o, -q, --progress, --no-progress, -Z, --seed, --shard, --where, --map, --stats,
 * --skip-bad, --rejects, --level, --threads, --help, --version) merged with a tool's own
 * options, the usage/version texts, and the terminal facts (is stderr a tty, NO_COLOR).
 * A tool describes itself in a cl_cli and receives its own options through a callback. */
#ifndef CL_CLI_H
#define CL_CLI_H

#include <getopt.h>
#include <stdint.h>

#include "core/err.h"

typedef struct cl_common {
    const char *output;    /* -o FILE; NULL = stdout */
    int quiet;             /* -q: no progress, no summary */
    int plain;             /* -Z: 1 plain, 0 zstd, -1 auto (plain on a terminal) */
    int level, threads;    /* zstd level and workers (0 = defaults) */
    uint64_t seed;         /* --seed N (default 0) */
    unsigned shard_i, shard_n; /* --shard I/N, 0-based; shard_n 0 = off */
    const char *where, *map;   /* jq programs, or NULL */
    const char *stats;     /* --stats FILE */
    int skip_bad;          /* --skip-bad */
    const char *rejects;   /* --rejects FILE */
    int progress;          /* a live progress line (stderr is a tty, not -q/--no-progress) */
    double progress_every; /* seconds between plain progress lines off a tty; 0 = none */
    int color;             /* colour allowed (tty, NO_COLOR unset, TERM != dumb) */
    char **inputs;         /* positional arguments (files or "-"); none = stdin */
    int ninputs;
} cl_common;

typedef struct cl_cli {
    const char *prog;          /* "cl-pairs" */
    const char *synopsis;      /* "[options] [FILE...]" */
    const char *summary;       /* one line: what the tool does */
    const char *options_help;  /* the tool's own options, preformatted, or NULL */
    const struct option *opts; /* the tool's long options, {0} terminated, or NULL; use
                                * val >= 256 or a letter listed in shortopts */
    const char *shortopts;     /* the tool's short options in getopt syntax, or NULL */
    /* Called for each of the tool's options; returns 0, or -1 with e set (usage error). */
    int (*on_opt)(void *ctx, int opt, const char *arg, cl_err *e);
    void *ctx;
    int records;               /* 1 = reads records: the record flags are accepted */
} cl_cli;

/* Parses argv.  Prints help or version and exits 0 when asked; on a usage error prints
 * "prog: message" and "Try 'prog --help'." and exits 2. */
void cl_cli_parse(const cl_cli *cli, int argc, char **argv, cl_common *c);

/* Reports a usage error the same way and exits 2. */
_Noreturn void cl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For modes a tool does not have yet: "prog: WHAT is not built yet" and exit 2, never a fake
 * result. */
_Noreturn void cl_not_built(const char *what);

/* Strict number parsing for option values; -1 with e set when s is not a number in range. */
int cl_parse_double(const char *s, double lo, double hi, const char *what, double *out, cl_err *e);
int cl_parse_long(const char *s, long lo, long hi, const char *what, long *out, cl_err *e);
/* cl_parse_long into an int field (lo and hi must fit an int). */
int cl_parse_int(const char *s, int lo, int hi, const char *what, int *out, cl_err *e);

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double cl_now(void);

#endif

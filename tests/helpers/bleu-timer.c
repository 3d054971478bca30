/* bleu-timer — times lib/metrics/bleu alone on record-shaped pairs (completion and
 * extracted.document), for bench/bench-bleu.sh's compute-only comparison with NLTK.
 *   bleu-timer [-j THREADS] [-r ROUNDS] < pairs.jsonl   → "pairs wall_s cpu_s checksum"
 * With several rounds the fastest is reported: on a shared machine the minimum is the
 * measurement least disturbed by other work. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "metrics/bleu.h"

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int threads = 1, rounds = 1;
    for (int a = 1; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "-j") == 0)
            threads = atoi(argv[a + 1]);
        else if (strcmp(argv[a], "-r") == 0)
            rounds = atoi(argv[a + 1]);
    }
    char **hyp = NULL, **ref = NULL, *line = NULL;
    size_t n = 0, cap = 0, lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, stdin)) > 0) {
        jv d = cl_json_parse(line, (size_t)len);
        jv ex = cl_json_get(&d, "extracted");
        const char *h = cl_json_str(&ex, "document"), *r = cl_json_str(&d, "completion");
        if (h && r) {
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                hyp = realloc(hyp, cap * sizeof *hyp);
                ref = realloc(ref, cap * sizeof *ref);
                if (!hyp || !ref)
                    return 1;
            }
            hyp[n] = strdup(h);
            ref[n++] = strdup(r);
        }
        jv_free(ex);
        jv_free(d);
    }
    free(line);
    double sum = 0, wall = 0, cpu = 0;
    for (int r = 0; r < rounds; r++) {
        double c0 = cpu_now(), w0 = omp_get_wtime();
        sum = 0;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) reduction(+ : sum)
        for (size_t i = 0; i < n; i++)
            sum += bleu_char(hyp[i], strlen(hyp[i]), ref[i], strlen(ref[i]));
        double w = omp_get_wtime() - w0, c = cpu_now() - c0;
        if (r == 0 || w < wall)
            wall = w;
        if (r == 0 || c < cpu)
            cpu = c;
    }
    printf("%zu %.6f %.6f %.12g\n", n, wall, cpu, sum);
    for (size_t i = 0; i < n; i++) {
        free(hyp[i]);
        free(ref[i]);
    }
    free(hyp);
    free(ref);
    return 0;
}

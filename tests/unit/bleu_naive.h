/* bleu_naive.h — clipped n-gram matches counted by their definition, the oracle of the BLEU
 * counter's tests (test_bleu_kernel) and of its differential fuzzer (tests/fuzz/fuzz_bleu).
 * Quadratic: for texts of a few thousand symbols at most. */
#ifndef CL_TESTS_BLEU_NAIVE_H
#define CL_TESTS_BLEU_NAIVE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Clipped matches of order n: for each distinct hypothesis n-gram (at its first occurrence),
 * min(count in hyp, count in ref). */
static uint64_t naive_matches(const uint32_t *h, size_t hl, const uint32_t *r, size_t rl, int n)
{
    uint64_t c = 0;
    for (size_t i = 0; i + n <= hl; i++) {
        int first = 1;
        for (size_t p = 0; p < i && first; p++)
            first = memcmp(h + p, h + i, n * sizeof *h) != 0;
        if (!first)
            continue;
        uint64_t nh = 0, nr = 0;
        for (size_t p = i; p + n <= hl; p++)
            nh += memcmp(h + p, h + i, n * sizeof *h) == 0;
        for (size_t p = 0; p + n <= rl; p++)
            nr += memcmp(r + p, h + i, n * sizeof *h) == 0;
        c += nh < nr ? nh : nr;
    }
    return c;
}

#endif

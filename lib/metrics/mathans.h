/* mathans.h — MATH-benchmark answer extraction and equivalence, a local cross-check of the
 * LLM accuracy judge.
 *
 * Owns: the normalisation and comparison rules of the MATH benchmark (Hendrycks et al.,
 * math_equivalence.py), reproduced rule for rule, including the cases where the original
 * raises and falls back to comparing raw strings.  Finding the boxed answer is metrics/boxed's.
 * Pure functions over UTF-8 strings: thread-safe. */
#ifndef CL_METRICS_MATHANS_H
#define CL_METRICS_MATHANS_H

/* The MATH normal form of an answer, malloc'd.  *raised is set to 1 where the original Python
 * raises (two "\text{ " units, a trailing \sqrt or \frac), in which case NULL is returned. */
char *math_normalize(const char *s, int *raised);

/* 1 when a and b are the same answer under the MATH rules: equal normal forms, or equal raw
 * strings when normalising either raises. */
int math_equiv(const char *a, const char *b);

#endif

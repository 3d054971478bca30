/* boxed.h — the final answer of a LaTeX solution: its last \boxed{…} (or \fbox{…}).
 *
 * Owns: two extractions.  The reference one is the MATH benchmark's own (Hendrycks et al.:
 * last_boxed_only_string, then remove_boxed), quirks included: the last "\boxed" substring
 * anywhere (even "\boxedx"), else the last "\fbox"; braces counted from there with escaped
 * braces counting like any other; the span only if it is exactly "\boxed{…}", so an \fbox is
 * found but not stripped (no answer), "\boxed 5" and "\boxed {5}" give none, and whitespace
 * inside the braces is kept.  The lenient one is ours: escaped braces are text, \fbox and the
 * brace-less form "\boxed 5" (up to the next '$' or line end) are answers, spaces are trimmed.
 * Neither normalises answers: comparing them belongs to metrics/mathans. */
#ifndef CL_BOXED_H
#define CL_BOXED_H

#include <stddef.h>

/* Lenient: finds the last box in s[0..len).  Returns 1 and sets *off and *n to the span of its
 * content (without the braces, surrounding whitespace trimmed), or 0 when there is none.  The
 * last box decides: when it never closes (or is empty of the brace-less form) there is no
 * answer, even if an earlier box is complete. */
int cl_boxed_last(const char *s, size_t len, size_t *off, size_t *n);

/* Lenient: the content of the last box as a malloc'd NUL-terminated string, or NULL when there
 * is none (or out of memory). */
char *cl_boxed_answer(const char *s);

/* Reference: remove_boxed(last_boxed_only_string(s)) of the MATH benchmark, malloc'd, or NULL
 * where it gives None (or out of memory).  *found (may be NULL) is set to whether s holds a
 * box command at all ("\boxed" or "\fbox"), answer or not. */
char *cl_boxed_reference(const char *s, int *found);

#endif

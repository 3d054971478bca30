/* boxed.h — the final answer of a LaTeX solution: its last \boxed{…} (or \fbox{…}).
 *
 * Owns: finding the span of the last box in a text, with nested braces, escaped braces
 * (\{ \}), the brace-less form "\boxed 5" (answer up to the next '$' or line end), and \fbox.
 * It does not normalise answers (no \text{} or \frac rewriting): comparing answers belongs to
 * the math metric, which calls this for both the reference and the model's reply. */
#ifndef CL_BOXED_H
#define CL_BOXED_H

#include <stddef.h>

/* Finds the last box in s[0..len).  Returns 1 and sets *off and *n to the span of its content
 * (without the braces, surrounding whitespace trimmed), or 0 when there is none.  The last box
 * decides, as in the MATH benchmark's extraction: when it never closes (or is empty of the
 * brace-less form) there is no answer, even if an earlier box is complete. */
int cl_boxed_last(const char *s, size_t len, size_t *off, size_t *n);

/* The content of the last box as a malloc'd NUL-terminated string, or NULL when there is none
 * (or out of memory). */
char *cl_boxed_answer(const char *s);

#endif

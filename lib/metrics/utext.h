/* utext.h — the few Unicode facts the metrics need, matching Python 3's str semantics.
 *
 * Owns: UTF-8 → code point decoding (Python iterates strings by code point, and NLTK's
 * character BLEU inherits that) and Python's str.isspace() set (str.split() and sacreBLEU
 * split on it).  Inputs reaching here were validated as UTF-8 by the record reader; a stray
 * invalid byte still decodes (as itself) rather than being dropped. */
#ifndef CL_METRICS_UTEXT_H
#define CL_METRICS_UTEXT_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one code point at s (len bytes left, len > 0); returns its byte length. */
size_t utext_next(const char *s, size_t len, uint32_t *cp);

/* Python's str.isspace(). */
int utext_isspace(uint32_t cp);

/* Number of code points in s[0..len). */
size_t utext_length(const char *s, size_t len);

/* Number of words as Python's len(s.split()) counts them. */
size_t utext_count_words(const char *s, size_t len);

#endif

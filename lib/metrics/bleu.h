/* bleu.h — the two BLEU scores cl-reward offers, both in [0, 1].
 *
 * Owns: character-level BLEU-4 exactly as CollabLLM computes it (NLTK 3.8
 * sentence_bleu([ref_str], hyp_str): NLTK iterates the raw strings, so n-grams are over Unicode
 * code points; uniform weights, no smoothing, zero precisions become ln(DBL_MIN), standard
 * brevity penalty, math.fsum of the weighted logs) and sacreBLEU's sentence BLEU (13a
 * tokenisation, exp smoothing, effective order, case-sensitive) divided by 100.
 * Functions over bytes, no JSON, no I/O; thread-safe: each thread keeps its own counting
 * tables between calls (sized for the largest pair it has scored, freed at thread exit). */
#ifndef CL_METRICS_BLEU_H
#define CL_METRICS_BLEU_H

#include <stddef.h>

/* NLTK-compatible character BLEU of hyp against one reference.  -1 when out of memory (or
 * for a hypothesis of half a billion characters or more). */
double bleu_char(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len);

/* sacreBLEU sentence_bleu(hyp, [ref]).score / 100.  -1 when out of memory. */
double bleu_word(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len);

/* sacreBLEU's 13a tokenisation (after rstrip), tokens joined by one space; malloc'd, NULL
 * when out of memory.  Exposed for tests and for documentation examples. */
char *bleu_tokenize_13a(const char *s, size_t len);

#endif

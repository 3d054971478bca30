/* bleu.h — the two BLEU scores cl-reward offers, both in [0, 1].
 *
 * Owns: character-level BLEU-4 exactly as CollabLLM computes it (NLTK 3.8
 * sentence_bleu([ref_str], hyp_str): NLTK iterates the raw strings, so n-grams are over Unicode
 * code points; uniform weights, no smoothing, zero precisions become ln(DBL_MIN), standard
 * brevity penalty, math.fsum of the weighted logs) and sacreBLEU's sentence BLEU (13a
 * tokenisation, exp smoothing, effective order, case-sensitive) divided by 100.
 * Functions over bytes, no JSON, no I/O; thread-safe: each thread keeps its own counting
 * tables between calls (sized for the largest pair it has scored, freed at thread exit).
 * Corpus BLEU: the counts of every pair added up (bleu_counts_add), then scored once, as NLTK's
 * corpus_bleu and sacreBLEU's corpus_score do; integer sums, so the order of the pairs does
 * not matter. */
#ifndef CL_METRICS_BLEU_H
#define CL_METRICS_BLEU_H

#include <stddef.h>
#include <stdint.h>

/* What a BLEU score is made of, for one pair or summed over a corpus: per order n = 1..4
 * (index n - 1) the clipped matches and the hypothesis n-grams, and the lengths (code points
 * or 13a tokens; one reference, so its length is the closest). */
typedef struct bleu_counts {
    uint64_t correct[4], total[4];
    uint64_t hyp_len, ref_len;
} bleu_counts;

/* The character counts of one pair, totals as NLTK's modified_precision makes them (at least
 * 1 per pair and order).  0, or -1 when out of memory. */
int bleu_char_counts(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len,
                     bleu_counts *out);
/* NLTK corpus_bleu(refs, hyps) over counts (sentence_bleu for one pair's): uniform weights, no
 * smoothing (zero precisions become sys.float_info.min), BP on the summed lengths. */
double bleu_char_score(const bleu_counts *c);

/* The 13a word counts of one pair, totals as sacreBLEU's (0 for a text shorter than n). */
int bleu_word_counts(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len,
                     bleu_counts *out);
/* sacreBLEU's BLEU / 100 over counts, exp smoothing: effective_order 1 as sentence_bleu
 * (orders with no n-grams left out), 0 as corpus_score (they make the score 0). */
double bleu_word_score(const bleu_counts *c, int effective_order);

/* sum += x. */
void bleu_counts_add(bleu_counts *sum, const bleu_counts *x);

/* NLTK-compatible character BLEU of hyp against one reference.  -1 when out of memory (or
 * for a hypothesis of half a billion characters or more). */
double bleu_char(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len);

/* sacreBLEU sentence_bleu(hyp, [ref]).score / 100.  -1 when out of memory. */
double bleu_word(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len);

/* sacreBLEU's 13a tokenisation (after rstrip), tokens joined by one space; malloc'd, NULL
 * when out of memory.  Exposed for tests and for documentation examples. */
char *bleu_tokenize_13a(const char *s, size_t len);

#endif

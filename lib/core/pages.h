/* pages.h — memory that is read and written all over: on 2 MB pages where the OS offers them.
 *
 * Owns: asking for transparent huge pages (madvise; a no-op where the kernel has them off),
 * giving pages back, and zeroed tables that are written once when made.  Why written: a page
 * of fresh memory that is read before it is written is first mapped onto the shared zero page,
 * and the write that follows replaces that mapping, which costs a TLB shootdown on every other
 * CPU running the process (an interrupt, a VM exit under KVM).  In a two-thread cl-reward run
 * those interrupts took 3.5% of the CPU; with them gone and BLEU's tables on huge pages, such
 * runs took 7-28% less CPU and 14-24% less wall time (bench/bleu-ab.py, BENCHMARKS.md).  Must
 * not know what the memory holds. */
#ifndef CL_CORE_PAGES_H
#define CL_CORE_PAGES_H

#include <stddef.h>

/* Asks for huge pages for the whole pages inside [p, p + n); pages are still allocated
 * only when touched. */
void cl_pages_advise(void *p, size_t n);

/* Gives the whole pages inside [p, p + n) back to the OS: touched again, anonymous memory
 * reads as zeros and a private file mapping as the file. */
void cl_pages_release(const void *p, size_t n);

/* n zero bytes (or more: *n is set to what was made), 64-byte aligned; from 1 MB up, rounded
 * to 2 MB and 2 MB aligned so that huge pages can back it.  Every page is written here, so none
 * is ever mapped onto the zero page.  free() releases it; NULL when out of memory. */
void *cl_pages_zalloc(size_t *n);

#endif

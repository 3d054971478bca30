/* clones.h — a function built for several x86-64 vector widths, the widest the CPU has picked
 * when the program loads.
 *
 * Owns: the attribute.  The default build targets baseline x86-64 (SSE2) so that one binary runs
 * on every CPU; loops that the compiler vectorises well (element-wise maths, widening bytes)
 * gain from AVX2 and AVX-512 copies without hand-written intrinsics.  A function marked so must
 * give the same bits in every copy: ISO C does not contract a * b + c into an FMA, and the
 * loops so marked use no maths whose result depends on the vector width.  GCC on x86-64 only;
 * elsewhere the mark is empty. */
#ifndef CL_CORE_CLONES_H
#define CL_CORE_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CL_WIDEST_VECTORS __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define CL_WIDEST_VECTORS
#endif

#endif

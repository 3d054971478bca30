/* real.h — the scalar type of the model kernels.
 *
 * Owns: `cl_real` and the CL_R() name mangling that lets the numeric kernels (ops.c) be compiled
 * a second time in double precision (-DCL_DOUBLE, done by the finite-difference tests) without
 * clashing with the float build in libcl.a.  Nothing else. */
#ifndef CL_MODEL_REAL_H
#define CL_MODEL_REAL_H

#ifdef CL_DOUBLE
typedef double cl_real;
#define CL_R(name) name##_f64
#else
typedef float cl_real;
#define CL_R(name) name
#endif

#endif

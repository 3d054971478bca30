/* files.h — reading whole files: model files, configs, embedded-prompt overrides.
 *
 * Owns: mapping a file read-only (weights are used in place, never copied) and reading a small
 * file (JSON, rank lists) into a NUL-terminated buffer, each with the error a reader reports:
 * CL_EXIT_NOINPUT when the file cannot be opened or is not a regular file, CL_EXIT_IOERR when
 * reading fails; and naming the files of a model or adapter directory.  Must not know: any
 * format. */
#ifndef CL_FILES_H
#define CL_FILES_H

#include <stddef.h>

#include "core/err.h"

/* Maps path read-only.  Returns the mapping (NULL for an empty file, which is not an error:
 * check *len) or sets e and returns NULL with *len = (size_t)-1. */
void *cl_file_map(const char *path, size_t *len, cl_err *e);
void cl_file_unmap(void *p, size_t len);

/* The whole file, malloc'd and NUL-terminated (*len excludes the NUL); NULL with e set. */
char *cl_file_read(const char *path, size_t *len, cl_err *e);

/* "dir/name", malloc'd (NULL when out of memory). */
char *cl_path_join(const char *dir, const char *name);

#endif

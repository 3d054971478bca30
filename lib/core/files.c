/* files.c — whole-file mapping and reading (see files.h). */
#include "core/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_regular(const char *path, size_t *len, cl_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        cl_err_set(e, CL_EXIT_NOINPUT, "%s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *len = (size_t)st.st_size;
    return fd;
}

void *cl_file_map(const char *path, size_t *len, cl_err *e)
{
    int fd = open_regular(path, len, e);
    if (fd < 0) {
        *len = (size_t)-1;
        return NULL;
    }
    void *map = *len ? mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (*len && map == MAP_FAILED) {
        cl_err_set(e, CL_EXIT_IOERR, "%s: mmap: %s", path, strerror(errno));
        *len = (size_t)-1;
        return NULL;
    }
    return map;
}

void cl_file_unmap(void *p, size_t len)
{
    if (p)
        munmap(p, len);
}

char *cl_file_read(const char *path, size_t *len, cl_err *e)
{
    size_t size;
    int fd = open_regular(path, &size, e);
    if (fd < 0)
        return NULL;
    char *buf = malloc(size + 1);
    size_t n = 0;
    while (buf && n < size) {
        ssize_t k = read(fd, buf + n, size - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    if (!buf) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", path);
        return NULL;
    }
    if (n != size) {
        free(buf);
        cl_err_set(e, CL_EXIT_IOERR, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

char *cl_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

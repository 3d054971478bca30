/* The on-disk cache of completed LLM calls.
 *
 * One file per call: DIR/llm/<2 hex>/<62 hex>, named by the SHA-256 of the canonical request
 * plus the sample key (llm.c builds the key).  A file is
 *     "cl-llm-cache 1 <payload bytes> <sha256 of payload>\n" <payload> "\n"
 * with payload = {"latency_s", "sample", "response"} as compact JSON.  Writers create a unique
 * temporary file beside the entry and rename it into place, so readers in any process see a
 * whole old entry, a whole new one or none; a file torn by a crash or edited by hand fails the
 * length or checksum test and counts as a miss (then overwritten).  Two processes fetching the
 * same key both write; the last rename wins and both entries were valid. */
#include "llm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "json.h"
#include "sha256.h"

#define MAGIC "cl-llm-cache 1 "

struct cl_llm_cache {
    char *dir;        /* DIR/llm */
    long pid;         /* temporary names are unique per process and sequence number */
    unsigned long tmp_seq;
};

static int mkdir_p(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int rc = mkdir(path, 0777);
        *p = '/';
        if (rc < 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(path, 0777) < 0 && errno != EEXIST ? -1 : 0;
}

cl_llm_cache *cl_llm_cache_open(const char *dir, cl_err *e)
{
    cl_llm_cache *k = calloc(1, sizeof *k);
    size_t n = strlen(dir) + 8;
    if (!k || !(k->dir = malloc(n))) {
        free(k);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    snprintf(k->dir, n, "%s/llm", dir);
    k->pid = (long)getpid();
    struct stat st;
    if (mkdir_p(k->dir) < 0 || stat(k->dir, &st) < 0 || !S_ISDIR(st.st_mode) ||
        access(k->dir, W_OK | X_OK) < 0) {
        cl_err_set(e, CL_EXIT_CONFIG, "cache directory %s: %s (use --cache DIR or --no-cache)",
                   dir, strerror(errno ? errno : ENOTDIR));
        cl_llm_cache_close(k);
        return NULL;
    }
    return k;
}

void cl_llm_cache_close(cl_llm_cache *k)
{
    if (k) {
        free(k->dir);
        free(k);
    }
}

static void entry_path(const cl_llm_cache *k, const char *key, char *out, size_t n)
{
    snprintf(out, n, "%s/%.2s/%s", k->dir, key, key + 2);
}

static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && (buf = malloc((size_t)st.st_size + 1))) {
        size_t got = 0;
        ssize_t r;
        while (got < (size_t)st.st_size && (r = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
            got += (size_t)r;
        buf[got] = 0;
        *len = got;
    }
    close(fd);
    return buf;
}

int cl_llm_cache_get(cl_llm_cache *k, const char *key, jv *response, double *latency_s)
{
    char path[4096];
    entry_path(k, key, path, sizeof path);
    size_t len = 0;
    char *buf = slurp(path, &len);
    if (!buf)
        return 0;
    int rc = -1;
    char *nl = memchr(buf, '\n', len);
    unsigned long plen;
    char sum[65], want[65];
    if (nl && strncmp(buf, MAGIC, strlen(MAGIC)) == 0 &&
        sscanf(buf + strlen(MAGIC), "%lu %64s", &plen, want) == 2 &&
        (size_t)(nl + 1 - buf) + plen + 1 == len && buf[len - 1] == '\n') {
        char *payload = nl + 1;
        cl_sha256_hex(payload, plen, sum);
        if (strcmp(sum, want) == 0) {
            jv p = cl_json_parse(payload, plen); /* checksummed: our own valid JSON */
            if (jv_get_kind(p) == JV_KIND_OBJECT && cl_json_kind(&p, "response") == JV_KIND_OBJECT) {
                *response = cl_json_get(&p, "response");
                *latency_s = cl_json_num(&p, "latency_s", 0);
                rc = 1;
            }
            jv_free(p);
        }
    }
    free(buf);
    return rc;
}

int cl_llm_cache_put(cl_llm_cache *k, const char *key, const jv *response, double latency_s,
                     const char *sample_key)
{
    jv p = jv_object();
    p = cl_json_set_num(p, "latency_s", latency_s);
    p = cl_json_set_str(p, "sample", sample_key ? sample_key : "");
    p = cl_json_set(p, "response", jv_copy(*response));
    size_t plen;
    char *payload = cl_json_dump(&p, &plen);
    jv_free(p);
    if (!payload)
        return -1;
    char sum[65];
    cl_sha256_hex(payload, plen, sum);
    char head[128];
    int hlen = snprintf(head, sizeof head, MAGIC "%zu %s\n", plen, sum);

    char path[4096], tmp[4200];
    entry_path(k, key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s/%.2s/.tmp.%ld.%lu", k->dir, key, k->pid, k->tmp_seq++);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == ENOENT) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%.2s", k->dir, key);
        if (mkdir(sub, 0777) == 0 || errno == EEXIST)
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    int rc = -1;
    if (fd >= 0) {
        struct iovec iov[3] = {{head, (size_t)hlen}, {payload, plen}, {(char *)"\n", 1}};
        size_t want = (size_t)hlen + plen + 1;
        ssize_t w = writev(fd, iov, 3);
        int ok = w == (ssize_t)want; /* a short write to a fresh small file means a full disk */
        if (close(fd) < 0)
            ok = 0;
        if (ok && rename(tmp, path) == 0)
            rc = 0;
        else
            unlink(tmp);
    }
    free(payload);
    return rc;
}

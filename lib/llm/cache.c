/* The on-disk cache of completed LLM calls: append-only pack files with checksums.
 *
 * Each process appends the calls it completes to a pack of its own,
 * DIR/llm/pack-<start time>-<pid>.clc, one entry per call:
 *     "cl-llm-cache 2 <key> <payload bytes> <sha256 of payload>\n" <payload> "\n"
 * where key is the SHA-256 of the canonical request and sample key (llm.c builds it) and
 * payload = {"latency_s", "sample", "response"} as compact JSON.  Opening the cache reads the
 * entry headers of every pack (skipping the payloads) into an in-memory index; packs are read
 * in name order, so for a key found twice the entry written later wins.
 *
 * Why packs and not a file per entry: creating a file costs 0.1-1 ms of kernel time on ext4
 * (inode, directory, journal), appending about 10 µs, and a fast server answers thousands of
 * calls a second.  Why it is still safe: writers never share a file, so appends cannot
 * interleave; a crash leaves at most a torn last entry, which the scan stops at; every entry
 * read is checked against its key and checksum, and a bad one is a miss (fetched again, and the
 * new entry wins from then on).  Processes running at the same time do not see each other's
 * new entries (both fetch; both entries are valid). */
#include "llm/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/files.h"
#include "core/json.h"
#include "core/sha256.h"

#define MAGIC "cl-llm-cache 2 "
#define MAX_HEAD 200

typedef struct slot {
    uint64_t k0, k1;      /* the first 16 bytes of the key; the entry's header has all 32 */
    uint64_t off;         /* where the entry's header starts */
    uint32_t len;         /* header + payload + newline; 0 = empty slot */
    uint32_t pack;
} slot;
_Static_assert(sizeof(slot) == 32, "index files store slots as 32-byte records");

struct cl_llm_cache {
    char *dir;            /* DIR/llm */
    char **packs;         /* file names in dir, in name order, ours last */
    size_t npacks;
    slot *tab;            /* open addressing, linear probing */
    size_t cap, used;
    int fd;               /* our pack, opened at the first put; -1 before */
    uint32_t own;         /* its index in packs */
    uint64_t size;        /* its length so far */
    long torn;            /* packs whose scan stopped at a damaged entry */
};

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static int key_words(const char *hex, uint64_t *k0, uint64_t *k1)
{
    uint64_t w[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        int c = hex[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
        w[i / 16] = w[i / 16] << 4 | (uint64_t)hexval(c);
    }
    *k0 = w[0];
    *k1 = w[1];
    return 0;
}

static slot *find(cl_llm_cache *k, uint64_t k0, uint64_t k1)
{
    size_t i = (size_t)(k0 ^ (k1 >> 7)) & (k->cap - 1);
    while (k->tab[i].len && !(k->tab[i].k0 == k0 && k->tab[i].k1 == k1))
        i = (i + 1) & (k->cap - 1);
    return &k->tab[i];
}

/* Makes room for `more` entries at a load factor of at most 0.7. */
static int reserve(cl_llm_cache *k, size_t more)
{
    if ((k->used + more) * 10 <= k->cap * 7)
        return 0;
    size_t cap = k->cap ? k->cap : 1024;
    while ((k->used + more) * 10 > cap * 7)
        cap *= 2;
    slot *old = k->tab, *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return -1;
    size_t oldcap = k->cap;
    k->tab = tab;
    k->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].len)
            *find(k, old[i].k0, old[i].k1) = old[i];
    free(old);
    return 0;
}

static int index_put_words(cl_llm_cache *k, uint64_t k0, uint64_t k1, uint32_t pack, uint64_t off, uint32_t len)
{
    if (reserve(k, 1) < 0)
        return -1;
    slot *s = find(k, k0, k1);
    if (!s->len)
        k->used++;
    *s = (slot){k0, k1, off, len, pack};
    return 0;
}

static int index_put(cl_llm_cache *k, const char *keyhex, uint32_t pack, uint64_t off, uint32_t len)
{
    uint64_t k0, k1;
    return key_words(keyhex, &k0, &k1) < 0 ? -1 : index_put_words(k, k0, k1, pack, off, len);
}

/* Parses a header line; 0 with the key (64 hex + NUL), payload length and checksum. */
static int parse_head(const char *line, char key[65], unsigned long *plen, char sum[65])
{
    if (strncmp(line, MAGIC, strlen(MAGIC)) != 0)
        return -1;
    char tail;
    if (sscanf(line + strlen(MAGIC), "%64s %lu %64s%c", key, plen, sum, &tail) != 4 || tail != '\n' ||
        strlen(key) != 64 || strlen(sum) != 64 || *plen > 0x7fffffffUL - MAX_HEAD)
        return -1;
    return 0;
}

/* Indexes the entries of one pack by reading their headers; stops at the first damaged entry
 * (a torn tail).  The pack's entries are also appended to *list, for its index file. */
static void scan_pack(cl_llm_cache *k, uint32_t pack, slot **list, size_t *n, uint64_t *size)
{
    char path[4096], line[MAX_HEAD + 2];
    snprintf(path, sizeof path, "%s/%s", k->dir, k->packs[pack]);
    FILE *f = fopen(path, "re");
    *size = 0;
    if (!f)
        return;
    uint64_t off = 0;
    struct stat st;
    *size = fstat(fileno(f), &st) == 0 ? (uint64_t)st.st_size : 0;
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        char key[65], sum[65];
        unsigned long plen;
        size_t hlen = strlen(line);
        uint64_t k0, k1;
        if (parse_head(line, key, &plen, sum) < 0 || off + hlen + plen + 1 > *size ||
            key_words(key, &k0, &k1) < 0 || fseeko(f, (off_t)plen + 1, SEEK_CUR) != 0) {
            k->torn++;
            break;
        }
        uint32_t len = (uint32_t)(hlen + plen + 1);
        index_put_words(k, k0, k1, pack, off, len);
        if (*n == cap) {
            cap = cap ? 2 * cap : 1024;
            slot *l = realloc(*list, cap * sizeof *l);
            if (!l)
                break;
            *list = l;
        }
        (*list)[(*n)++] = (slot){k0, k1, off, len, pack};
        off += len;
    }
    fclose(f);
}

/* Index files: pack-X.clx beside pack-X.clc holds "cl-llm-idx 1 <pack size>\n", the pack's
 * entries as fixed records and a SHA-256 of those records.  Reading 32 bytes per entry instead
 * of every header of a pack makes opening a cache of a million entries take a fraction of a
 * second.  An index whose size no longer matches its pack (a writer was still appending) or
 * whose checksum fails is ignored, and the pack is scanned and indexed again. */
static void index_path(const cl_llm_cache *k, uint32_t pack, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", k->dir, k->packs[pack]);
    size_t len = strlen(out);
    if (len > 4)
        out[len - 1] = 'x'; /* .clc -> .clx */
}

static int load_index(cl_llm_cache *k, uint32_t pack)
{
    char path[4096], ipath[4096];
    snprintf(path, sizeof path, "%s/%s", k->dir, k->packs[pack]);
    index_path(k, pack, ipath, sizeof ipath);
    struct stat st;
    size_t len = 0;
    cl_err fe = {0}; /* a missing or unreadable index is rebuilt from its pack */
    char *buf = cl_file_read(ipath, &len, &fe);
    if (!buf)
        return -1;
    int rc = -1;
    unsigned long long size;
    char *nl = buf ? memchr(buf, '\n', len < 64 ? len : 64) : NULL;
    if (nl && sscanf(buf, "cl-llm-idx 1 %llu", &size) == 1 && stat(path, &st) == 0 &&
        (unsigned long long)st.st_size == size) {
        size_t head = (size_t)(nl + 1 - buf);
        size_t body = len - head;
        if (len >= head + 32 && (body - 32) % sizeof(slot) == 0) {
            unsigned char sum[32];
            cl_sha256 h;
            cl_sha256_init(&h);
            cl_sha256_update(&h, nl + 1, body - 32);
            cl_sha256_final(&h, sum);
            if (memcmp(sum, buf + len - 32, 32) == 0) {
                size_t n = (body - 32) / sizeof(slot);
                reserve(k, n);
                for (size_t i = 0; i < n; i++) {
                    slot e;
                    memcpy(&e, nl + 1 + i * sizeof e, sizeof e);
                    index_put_words(k, e.k0, e.k1, pack, e.off, e.len);
                }
                rc = 0;
            }
        }
    }
    free(buf);
    return rc;
}

static void write_index(cl_llm_cache *k, uint32_t pack, const slot *list, size_t n, uint64_t size)
{
    char ipath[4096], tmp[4200], head[64];
    index_path(k, pack, ipath, sizeof ipath);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", ipath, (long)getpid());
    int hlen = snprintf(head, sizeof head, "cl-llm-idx 1 %llu\n", (unsigned long long)size);
    unsigned char sum[32];
    cl_sha256 h;
    cl_sha256_init(&h);
    cl_sha256_update(&h, list, n * sizeof *list);
    cl_sha256_final(&h, sum);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return;
    struct iovec iov[3] = {{head, (size_t)hlen}, {(void *)list, n * sizeof *list}, {sum, 32}};
    ssize_t want = (ssize_t)((size_t)hlen + n * sizeof *list + 32);
    int ok = writev(fd, iov, 3) == want;
    if (close(fd) < 0)
        ok = 0;
    if (!ok || rename(tmp, ipath) < 0)
        unlink(tmp);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

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

static int add_pack(cl_llm_cache *k, const char *name)
{
    char **p = realloc(k->packs, (k->npacks + 1) * sizeof *p);
    if (!p)
        return -1;
    k->packs = p;
    if (!(k->packs[k->npacks] = strdup(name)))
        return -1;
    k->npacks++;
    return 0;
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
    k->fd = -1;
    snprintf(k->dir, n, "%s/llm", dir);
    struct stat st;
    DIR *d = NULL;
    if (mkdir_p(k->dir) < 0 || stat(k->dir, &st) < 0 || !S_ISDIR(st.st_mode) ||
        access(k->dir, W_OK | X_OK) < 0 || !(d = opendir(k->dir))) {
        cl_err_set(e, CL_EXIT_CONFIG, "cache directory %s: %s (use --cache DIR or --no-cache)", dir,
                   strerror(errno ? errno : ENOTDIR));
        cl_llm_cache_close(k);
        return NULL;
    }
    struct dirent *de;
    int bad = 0;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "pack-", 5) == 0 && strlen(de->d_name) > 9 &&
            strcmp(de->d_name + strlen(de->d_name) - 4, ".clc") == 0)
            bad |= add_pack(k, de->d_name) < 0;
    closedir(d);
    if (bad) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        cl_llm_cache_close(k);
        return NULL;
    }
    if (k->npacks)
        qsort(k->packs, k->npacks, sizeof *k->packs, by_name);
    slot *list = NULL;
    for (uint32_t i = 0; i < k->npacks; i++) {
        if (load_index(k, i) == 0)
            continue;
        size_t cnt = 0;
        uint64_t size;
        scan_pack(k, i, &list, &cnt, &size);
        write_index(k, i, list, cnt, size);
    }
    free(list);
    return k;
}

void cl_llm_cache_close(cl_llm_cache *k)
{
    if (!k)
        return;
    if (k->fd >= 0) {
        close(k->fd);
        size_t n = 0;
        slot *list = malloc((k->used + 1) * sizeof *list);
        for (size_t i = 0; list && i < k->cap; i++)
            if (k->tab[i].len && k->tab[i].pack == k->own)
                list[n++] = k->tab[i];
        if (list)
            write_index(k, k->own, list, n, k->size);
        free(list);
    }
    for (size_t i = 0; i < k->npacks; i++)
        free(k->packs[i]);
    free(k->packs);
    free(k->tab);
    free(k->dir);
    free(k);
}

long cl_llm_cache_torn(const cl_llm_cache *k) { return k->torn; }

int cl_llm_cache_get(cl_llm_cache *k, const char *key, jv *response, double *latency_s)
{
    uint64_t k0, k1;
    if (!k->cap || key_words(key, &k0, &k1) < 0)
        return 0;
    slot *s = find(k, k0, k1);
    if (!s->len)
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", k->dir, k->packs[s->pack]);
    char *buf = malloc((size_t)s->len + 1);
    int fd = buf ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    ssize_t got = fd >= 0 ? pread(fd, buf, s->len, (off_t)s->off) : -1;
    if (fd >= 0)
        close(fd);
    int rc = -1;
    if (got == (ssize_t)s->len) {
        buf[s->len] = 0;
        char *nl = memchr(buf, '\n', s->len);
        char hkey[65], want[65], sum[65];
        unsigned long plen;
        if (nl && (size_t)(nl - buf) < MAX_HEAD) {
            char line[MAX_HEAD + 2];
            memcpy(line, buf, (size_t)(nl - buf) + 1);
            line[nl - buf + 1] = 0;
            if (parse_head(line, hkey, &plen, want) == 0 && strcmp(hkey, key) == 0 &&
                (size_t)(nl + 1 - buf) + plen + 1 == s->len && buf[s->len - 1] == '\n') {
                cl_sha256_hex(nl + 1, plen, sum);
                if (strcmp(sum, want) == 0) {
                    jv p = cl_json_parse(nl + 1, plen); /* checksummed: our own valid JSON */
                    if (jv_get_kind(p) == JV_KIND_OBJECT && cl_json_kind(&p, "response") == JV_KIND_OBJECT) {
                        *response = cl_json_get(&p, "response");
                        *latency_s = cl_json_num(&p, "latency_s", 0);
                        rc = 1;
                    }
                    jv_free(p);
                }
            }
        }
    }
    free(buf);
    if (rc < 0)
        s->k1 ^= 1; /* forget the bad entry: the fetch that follows will index a good one */
    return got < 0 && errno == ENOENT ? 0 : rc; /* a pruned pack is a plain miss */
}

/* Our pack: created at the first write, named so that name order is time order. */
static int own_pack(cl_llm_cache *k)
{
    if (k->fd >= 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char name[96], path[4200];
    snprintf(name, sizeof name, "pack-%016llx-%ld.clc",
             (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec, (long)getpid());
    snprintf(path, sizeof path, "%s/%s", k->dir, name);
    k->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (k->fd < 0 || add_pack(k, name) < 0) {
        if (k->fd >= 0)
            close(k->fd);
        k->fd = -1;
        return -1;
    }
    k->own = (uint32_t)(k->npacks - 1);
    k->size = 0;
    return 0;
}

int cl_llm_cache_put(cl_llm_cache *k, const char *key, const jv *response, const char *raw, size_t raw_len,
                     double latency_s, const char *sample_key)
{
    /* {"latency_s":…,"sample":…,"response":…} written around the reply's own text */
    jv p = jv_object();
    p = cl_json_set_num(p, "latency_s", latency_s);
    p = cl_json_set_str(p, "sample", sample_key ? sample_key : "");
    size_t hl, rl = raw_len;
    char *front = cl_json_dump(&p, &hl);
    jv_free(p);
    char *dumped = raw ? NULL : cl_json_dump(response, &rl);
    const char *body = raw ? raw : dumped;
    char *payload = front && body ? malloc(hl + rl + 16) : NULL;
    size_t plen = 0;
    if (payload) {
        memcpy(payload, front, hl - 1); /* without the closing brace */
        plen = hl - 1;
        memcpy(payload + plen, ",\"response\":", 12);
        plen += 12;
        memcpy(payload + plen, body, rl);
        plen += rl;
        payload[plen++] = '}';
    }
    free(front);
    free(dumped);
    if (!payload)
        return -1;
    char sum[65], head[MAX_HEAD];
    cl_sha256_hex(payload, plen, sum);
    int hlen = snprintf(head, sizeof head, MAGIC "%s %zu %s\n", key, plen, sum);
    int rc = -1;
    if (own_pack(k) == 0) {
        struct iovec iov[3] = {{head, (size_t)hlen}, {payload, plen}, {(char *)"\n", 1}};
        size_t want = (size_t)hlen + plen + 1;
        if (writev(k->fd, iov, 3) == (ssize_t)want) {
            index_put(k, key, k->own, k->size, (uint32_t)want);
            k->size += want;
            rc = 0;
        } else { /* a torn entry ends this pack: the next write starts another */
            close(k->fd);
            k->fd = -1;
        }
    }
    free(payload);
    return rc;
}

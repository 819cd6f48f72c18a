/* test_storage_store.c - storage/store.c against real LMDB files in
 * mkdtemp directories: CRUD, cursors, counts, reopen persistence, compacted
 * copy, and the translation of LMDB failures into WERR codes (map full,
 * corrupt file, bad keys) including txn poisoning; nested write txns
 * (commit merges, abort drops only the child, misuse, a full map in a
 * child) and the durable-commit counter. */
#include "storage/store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

static char tmp_root[256];

/* A fresh directory under the per-process temp root. */
static const char *fresh_dir(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_root, name);
    return path;
}

static int open_at(const char *path, size_t map_size, struct store **s,
                   struct werr *e)
{
    struct store_config cfg = {.path = path, .map_size = map_size};
    return store_open(s, &cfg, e);
}

static int put_str(struct store *s, unsigned dbi, const char *k, const char *v)
{
    struct werr e = {0};
    struct store_txn *t;
    int rc = store_txn_begin(s, 1, &t, &e);
    if (rc) {
        return rc;
    }
    rc = store_put(t, dbi, k, strlen(k), v, strlen(v), 0, &e);
    if (rc) {
        store_txn_abort(t);
        return rc;
    }
    return store_txn_commit(t, &e);
}

/* Read key k into buf (NUL-terminated). Returns the store code. */
static int get_str(struct store *s, unsigned dbi, const char *k, char *buf,
                   size_t cap)
{
    struct werr e = {0};
    struct store_txn *t;
    int rc = store_txn_begin(s, 0, &t, &e);
    if (rc) {
        return rc;
    }
    struct store_val v;
    rc = store_get(t, dbi, k, strlen(k), &v, &e);
    if (rc == 0) {
        size_t n = v.len < cap - 1 ? v.len : cap - 1;
        memcpy(buf, v.data, n);
        buf[n] = '\0';
    }
    store_txn_abort(t);
    return rc;
}

TEST(crud_and_count)
{
    struct werr e = {0};
    struct store *s;
    CHECK_EQ_INT(open_at(fresh_dir("crud"), 0, &s, &e), 0);
    unsigned a, b;
    CHECK_EQ_INT(store_dbi(s, "a", &a, &e), 0);
    CHECK_EQ_INT(store_dbi(s, "b", &b, &e), 0);
    unsigned a2, a3 = 999;
    CHECK_EQ_INT(store_dbi(s, "a", &a2, &e), 0);
    CHECK_EQ_INT(a, a2);
    CHECK_EQ_INT(store_dbi_find(s, "a", &a3), 0);
    CHECK_EQ_INT(a3, a);
    CHECK_EQ_INT(store_dbi_find(s, "never", &a3), WERR_NOTFOUND);
    CHECK(a != b);

    CHECK_EQ_INT(put_str(s, a, "k1", "v1"), 0);
    CHECK_EQ_INT(put_str(s, a, "k2", "v2"), 0);
    CHECK_EQ_INT(put_str(s, b, "k1", "other"), 0);
    char buf[64];
    CHECK_EQ_INT(get_str(s, a, "k1", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "v1");
    CHECK_EQ_INT(get_str(s, b, "k1", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "other");
    CHECK_EQ_INT(get_str(s, a, "nope", buf, sizeof buf), WERR_NOTFOUND);

    /* overwrite, NOOVERWRITE, delete, count - in one write txn */
    struct store_txn *t;
    CHECK_EQ_INT(store_txn_begin(s, 1, &t, &e), 0);
    CHECK_EQ_INT(store_put(t, a, "k1", 2, "V1", 2, 0, &e), 0);
    CHECK_EQ_INT(store_put(t, a, "k2", 2, "x", 1, STORE_NOOVERWRITE, &e),
                 WERR_EXISTS);
    CHECK(strstr(e.msg, "store db a") != NULL);
    CHECK_EQ_INT(store_txn_failed(t), 0); /* EXISTS is an answer */
    CHECK_EQ_INT(store_del(t, a, "k2", 2, &e), 0);
    CHECK_EQ_INT(store_del(t, a, "k2", 2, &e), WERR_NOTFOUND);
    CHECK_EQ_INT(store_txn_failed(t), 0); /* so is NOTFOUND */
    uint64_t n = 99;
    CHECK_EQ_INT(store_count(t, a, &n, &e), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(store_txn_commit(t, &e), 0);

    CHECK_EQ_INT(get_str(s, a, "k1", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "V1");
    CHECK_EQ_INT(get_str(s, a, "k2", buf, sizeof buf), WERR_NOTFOUND);

    /* abort discards */
    CHECK_EQ_INT(store_txn_begin(s, 1, &t, &e), 0);
    CHECK_EQ_INT(store_put(t, a, "k9", 2, "gone", 4, 0, &e), 0);
    store_txn_abort(t);
    CHECK_EQ_INT(get_str(s, a, "k9", buf, sizeof buf), WERR_NOTFOUND);
    store_close(s);
}

TEST(cursor_order_and_seek)
{
    struct werr e = {0};
    struct store *s;
    CHECK_EQ_INT(open_at(fresh_dir("cursor"), 0, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "d", &d, &e), 0);
    const char *keys[] = {"c", "a", "e", "b", "d"};
    for (size_t i = 0; i < 5; i++) {
        CHECK_EQ_INT(put_str(s, d, keys[i], keys[i]), 0);
    }
    struct store_txn *t;
    CHECK_EQ_INT(store_txn_begin(s, 0, &t, &e), 0);
    struct store_cursor *c;
    CHECK_EQ_INT(store_cursor_open(t, d, &c, &e), 0);
    struct store_val k, v;
    char got[8] = {0};
    size_t n = 0;
    int rc = store_cursor_seek(c, NULL, 0, &k, &v, &e);
    while (rc == 0 && n < 7) {
        CHECK_EQ_INT(k.len, 1);
        got[n++] = *(const char *)k.data;
        rc = store_cursor_next(c, &k, &v, &e);
    }
    CHECK_EQ_INT(rc, WERR_NOTFOUND);
    CHECK_EQ_STR(got, "abcde");
    /* seek to first key >= "bb" is "c" */
    CHECK_EQ_INT(store_cursor_seek(c, "bb", 2, &k, &v, &e), 0);
    CHECK_EQ_INT(*(const char *)k.data, 'c');
    CHECK_EQ_INT(store_cursor_seek(c, "z", 1, &k, &v, &e), WERR_NOTFOUND);
    store_cursor_close(c);
    store_txn_abort(t);

    /* a cursor left open at commit: refused, and nothing is committed */
    CHECK_EQ_INT(store_txn_begin(s, 1, &t, &e), 0);
    CHECK_EQ_INT(store_put(t, d, "f", 1, "f", 1, 0, &e), 0);
    CHECK_EQ_INT(store_cursor_open(t, d, &c, &e), 0);
    CHECK_EQ_INT(store_txn_commit(t, &e), WERR_INTERNAL);
    CHECK(strstr(e.msg, "open cursors") != NULL);
    char buf[4];
    CHECK_EQ_INT(get_str(s, d, "f", buf, sizeof buf), WERR_NOTFOUND);
    store_close(s);
}

TEST(reopen_persists)
{
    struct werr e = {0};
    struct store *s;
    const char *dir = fresh_dir("reopen");
    CHECK_EQ_INT(open_at(dir, 0, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "persist", &d, &e), 0);
    CHECK_EQ_INT(put_str(s, d, "key", "durable"), 0);
    store_close(s);

    CHECK_EQ_INT(open_at(dir, 0, &s, &e), 0);
    CHECK_EQ_INT(store_dbi(s, "persist", &d, &e), 0);
    char buf[32];
    CHECK_EQ_INT(get_str(s, d, "key", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "durable");
    store_close(s);
}

/* STORE_LAZY_META (the fsm's env): commits are visible at once and survive
 * a close and a reopen without the flag; unknown flags are refused. */
TEST(lazy_meta_flag)
{
    struct werr e = {0};
    struct store *s;
    const char *dir = fresh_dir("lazy");
    struct store_config cfg = {.path = dir, .flags = STORE_LAZY_META};
    unsigned d;
    char buf[32];

    CHECK_EQ_INT(store_open(&s, &cfg, &e), 0);
    CHECK_EQ_INT(store_dbi(s, "lazy", &d, &e), 0);
    CHECK_EQ_INT(put_str(s, d, "a", "one"), 0);
    CHECK_EQ_INT(put_str(s, d, "b", "two"), 0);
    CHECK_EQ_INT(get_str(s, d, "b", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "two");
    store_close(s);

    CHECK_EQ_INT(open_at(dir, 0, &s, &e), 0);
    CHECK_EQ_INT(store_dbi(s, "lazy", &d, &e), 0);
    CHECK_EQ_INT(get_str(s, d, "a", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "one");
    CHECK_EQ_INT(get_str(s, d, "b", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "two");
    store_close(s);

    cfg.flags = 0x80u;
    werr_clear(&e);
    CHECK_EQ_INT(store_open(&s, &cfg, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "unknown flags 0x80") != NULL);
}

TEST(copy_then_open_copy)
{
    struct werr e = {0};
    struct store *s;
    CHECK_EQ_INT(open_at(fresh_dir("src"), 0, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "data", &d, &e), 0);
    char k[16], v[64];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "k%04d", i);
        snprintf(v, sizeof v, "value-%d", i);
        CHECK_EQ_INT(put_str(s, d, k, v), 0);
    }
    /* delete half so the compacting copy has free pages to drop */
    struct store_txn *t;
    CHECK_EQ_INT(store_txn_begin(s, 1, &t, &e), 0);
    for (int i = 0; i < 200; i += 2) {
        snprintf(k, sizeof k, "k%04d", i);
        CHECK_EQ_INT(store_del(t, d, k, strlen(k), &e), 0);
    }
    CHECK_EQ_INT(store_txn_commit(t, &e), 0);

    char dst[512];
    snprintf(dst, sizeof dst, "%s", fresh_dir("copy"));
    CHECK_EQ_INT(mkdir(dst, 0700), 0);
    CHECK_EQ_INT(store_copy(s, dst, &e), 0);
    /* a second copy into the same directory must not clobber it */
    CHECK(store_copy(s, dst, &e) != 0);
    store_close(s);

    struct store *c;
    CHECK_EQ_INT(open_at(dst, 0, &c, &e), 0);
    CHECK_EQ_INT(store_dbi(c, "data", &d, &e), 0);
    CHECK_EQ_INT(store_txn_begin(c, 0, &t, &e), 0);
    uint64_t n = 0;
    CHECK_EQ_INT(store_count(t, d, &n, &e), 0);
    CHECK_EQ_INT(n, 100);
    store_txn_abort(t);
    char buf[64];
    CHECK_EQ_INT(get_str(c, d, "k0001", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "value-1");
    CHECK_EQ_INT(get_str(c, d, "k0000", buf, sizeof buf), WERR_NOTFOUND);
    store_close(c);
}

/* Concatenate an image's parts into a new data.mdb under dst (created). */
static int image_write(const struct store_image *img, const char *dst)
{
    char file[700];
    unsigned n = 0;
    const struct store_image_part *pt = store_image_parts(img, &n);
    if (mkdir(dst, 0700) != 0)
        return -1;
    snprintf(file, sizeof file, "%s/data.mdb", dst);
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        if (write(fd, pt[i].base, pt[i].len) != (ssize_t)pt[i].len) {
            close(fd);
            return -1;
        }
    }
    return close(fd);
}

/* Overwrite every key k0000..k<n> with a value derived from round r, in
 * txns of 50 keys: churn that frees pages and reuses free ones. */
static int churn(struct store *s, unsigned d, int n, int r)
{
    char k[16], v[300];
    struct werr e = {0};
    struct store_txn *t = NULL;
    for (int i = 0; i < n; i++) {
        if (t == NULL && store_txn_begin(s, 1, &t, &e) != 0)
            return -1;
        snprintf(k, sizeof k, "k%04d", i);
        memset(v, 'a' + (r % 26), sizeof v - 1);
        v[sizeof v - 1] = '\0';
        snprintf(v, 32, "r%d-%d", r, i);
        v[strlen(v)] = '-'; /* keep the padding: values stay 299 bytes */
        if (store_put(t, d, k, strlen(k), v, strlen(v), 0, &e) != 0) {
            store_txn_abort(t);
            return -1;
        }
        if ((i % 50 == 49 || i == n - 1) && store_txn_commit(t, &e) != 0)
            return -1;
        if (i % 50 == 49 || i == n - 1)
            t = NULL;
    }
    return 0;
}

/* The value of key i as churn round r wrote it (its first 32 bytes). */
static int value_is(struct store *s, unsigned d, int i, int r)
{
    char k[16], want[32], buf[400];
    snprintf(k, sizeof k, "k%04d", i);
    snprintf(want, sizeof want, "r%d-%d-", r, i);
    if (get_str(s, d, k, buf, sizeof buf) != 0)
        return 0;
    return strncmp(buf, want, strlen(want)) == 0 && strlen(buf) == 299;
}

/* store_image_pin: the image shows the state at pin time even after later
 * commits have freed its pages and reused the free ones (they reuse only
 * pages the image itself marks free); it opens as an env; a limit below
 * its size is WERR_LIMIT; the meta copy is the only bytes it owns. */
TEST(image_is_a_stable_point_in_time_env)
{
    struct werr e = {0};
    struct store *s, *c;
    struct store_image *img = NULL, *tiny = NULL;
    unsigned d, n = 0;

    CHECK_EQ_INT(open_at(fresh_dir("img-src"), 0, &s, &e), 0);
    CHECK_EQ_INT(store_dbi(s, "m", &d, &e), 0);
    for (int r = 0; r < 3; r++) /* history, so the file has free pages */
        CHECK_EQ_INT(churn(s, d, 400, r), 0);
    CHECK_EQ_INT(store_image_pin(s, (size_t)1 << 30, &img, &e), 0);
    const struct store_image_part *pt = store_image_parts(img, &n);
    CHECK_EQ_INT(n, STORE_IMAGE_PARTS);
    CHECK(pt[0].len >= 2 * 4096 && pt[0].len % 4096 == 0);
    CHECK(pt[1].len > 0 && pt[1].len % 4096 == 0);
    CHECK_EQ_INT(store_image_len(img), pt[0].len + pt[1].len);
    CHECK(store_image_txnid(img) > 0);
    werr_clear(&e);
    CHECK_EQ_INT(store_image_pin(s, 4096, &tiny, &e), WERR_LIMIT);
    CHECK(tiny == NULL);
    CHECK(strstr(e.msg, "store_image_pin") != NULL);

    /* Commits after the pin: 20 rounds rewrite every key. */
    for (int r = 3; r < 23; r++)
        CHECK_EQ_INT(churn(s, d, 400, r), 0);
    CHECK(value_is(s, d, 7, 22));
    CHECK_EQ_INT(image_write(img, fresh_dir("img-dst")), 0);
    store_image_release(img);
    store_close(s);

    CHECK_EQ_INT(open_at(fresh_dir("img-dst"), 0, &c, &e), 0);
    CHECK_EQ_INT(store_dbi(c, "m", &d, &e), 0);
    for (int i = 0; i < 400; i++)
        CHECK(value_is(c, d, i, 2));
    /* and it is a working env: it takes writes */
    CHECK_EQ_INT(churn(c, d, 400, 30), 0);
    CHECK(value_is(c, d, 399, 30));
    store_close(c);
}

/* What raft_uv does with an image: another thread reads the parts while
 * this one keeps committing. The bytes it read open as the pinned state. */
struct image_reader {
    const struct store_image *img;
    uint8_t *buf;
    size_t len;
};

static void *image_read_thread(void *arg)
{
    struct image_reader *rd = arg;
    unsigned n = 0;
    const struct store_image_part *pt = store_image_parts(rd->img, &n);
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        /* a page at a time, slowly enough to interleave with commits */
        for (size_t o = 0; o < pt[i].len; o += 4096) {
            size_t m = pt[i].len - o < 4096 ? pt[i].len - o : 4096;
            memcpy(rd->buf + off, pt[i].base + o, m);
            off += m;
            if ((o / 4096) % 16 == 0)
                sched_yield();
        }
    }
    rd->len = off;
    return NULL;
}

TEST(image_read_by_another_thread_while_committing)
{
    struct werr e = {0};
    struct store *s, *c;
    struct store_image *img = NULL;
    unsigned d;
    pthread_t th;

    CHECK_EQ_INT(open_at(fresh_dir("imgt-src"), 0, &s, &e), 0);
    CHECK_EQ_INT(store_dbi(s, "m", &d, &e), 0);
    for (int r = 0; r < 3; r++)
        CHECK_EQ_INT(churn(s, d, 600, r), 0);
    CHECK_EQ_INT(store_image_pin(s, (size_t)1 << 30, &img, &e), 0);
    struct image_reader rd = {.img = img, .buf = malloc(store_image_len(img))};
    CHECK(rd.buf != NULL);
    CHECK_EQ_INT(pthread_create(&th, NULL, image_read_thread, &rd), 0);
    for (int r = 3; r < 13; r++)
        CHECK_EQ_INT(churn(s, d, 600, r), 0);
    CHECK_EQ_INT(pthread_join(th, NULL), 0);
    CHECK_EQ_INT(rd.len, store_image_len(img));
    /* a second image while the first is pinned: a newer state */
    struct store_image *img2 = NULL;
    CHECK_EQ_INT(store_image_pin(s, (size_t)1 << 30, &img2, &e), 0);
    CHECK(store_image_txnid(img2) > store_image_txnid(img));
    store_image_release(img);
    /* store_close with img2 still pinned: the read txn is ended first (no
     * leak under ASan); img2's memory is still ours to release. */
    store_close(s);
    store_image_release(img2);

    const char *dst = fresh_dir("imgt-dst");
    char file[700];
    CHECK_EQ_INT(mkdir(dst, 0700), 0);
    snprintf(file, sizeof file, "%s/data.mdb", dst);
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    CHECK_EQ_INT((long)write(fd, rd.buf, rd.len), (long)rd.len);
    close(fd);
    free(rd.buf);
    CHECK_EQ_INT(open_at(dst, 0, &c, &e), 0);
    CHECK_EQ_INT(store_dbi(c, "m", &d, &e), 0);
    for (int i = 0; i < 600; i++)
        CHECK(value_is(c, d, i, 2));
    store_close(c);
}

TEST(map_full_poisons_txn)
{
    struct werr e = {0};
    struct store *s;
    /* 64 KiB map: a handful of pages, so a few 4 KiB values fill it. */
    CHECK_EQ_INT(open_at(fresh_dir("tiny"), 64 << 10, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "big", &d, &e), 0);
    static char val[4000];
    memset(val, 'x', sizeof val);
    struct store_txn *t;
    CHECK_EQ_INT(store_txn_begin(s, 1, &t, &e), 0);
    int rc = 0;
    char k[16];
    for (int i = 0; i < 1000 && rc == 0; i++) {
        snprintf(k, sizeof k, "k%04d", i);
        rc = store_put(t, d, k, strlen(k), val, sizeof val, 0, &e);
    }
    CHECK_EQ_INT(rc, WERR_FULL);
    CHECK(strstr(e.msg, "MDB_MAP_FULL") != NULL);
    CHECK_EQ_INT(store_txn_failed(t), WERR_FULL);
    /* poisoned: everything but abort is refused, commit aborts */
    struct store_val v;
    CHECK_EQ_INT(store_get(t, d, "k0000", 5, &v, &e), WERR_ABORTED);
    CHECK_EQ_INT(store_put(t, d, "z", 1, "z", 1, 0, &e), WERR_ABORTED);
    CHECK_EQ_INT(store_txn_commit(t, &e), WERR_ABORTED);
    CHECK(strstr(e.msg, "storage full") != NULL);
    /* nothing from the failed txn is visible; the store still works */
    char buf[8];
    CHECK_EQ_INT(get_str(s, d, "k0000", buf, sizeof buf), WERR_NOTFOUND);
    CHECK_EQ_INT(put_str(s, d, "small", "ok"), 0);
    store_close(s);
}

TEST(bad_keys_and_readonly)
{
    struct werr e = {0};
    struct store *s;
    CHECK_EQ_INT(open_at(fresh_dir("badkeys"), 0, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "d", &d, &e), 0);
    struct store_txn *t;
    static char longkey[STORE_KEY_MAX + 1];
    memset(longkey, 'k', sizeof longkey);

    CHECK_EQ_INT(store_txn_begin(s, 1, &t, &e), 0);
    CHECK_EQ_INT(store_put(t, d, longkey, sizeof longkey, "v", 1, 0, &e),
                 WERR_INVALID);
    CHECK_EQ_INT(store_put(t, d, "ok", 2, "v", 1, 0, &e), WERR_ABORTED);
    store_txn_abort(t);

    CHECK_EQ_INT(store_txn_begin(s, 1, &t, &e), 0);
    CHECK_EQ_INT(store_put(t, d, "", 0, "v", 1, 0, &e), WERR_INVALID);
    store_txn_abort(t);

    CHECK_EQ_INT(store_txn_begin(s, 1, &t, &e), 0);
    CHECK_EQ_INT(store_put(t, d, longkey, STORE_KEY_MAX, "v", 1, 0, &e), 0);
    CHECK_EQ_INT(store_txn_commit(t, &e), 0);

    CHECK_EQ_INT(store_txn_begin(s, 0, &t, &e), 0);
    CHECK_EQ_INT(store_put(t, d, "k", 1, "v", 1, 0, &e), WERR_INVALID);
    CHECK_EQ_INT(store_del(t, d, "k", 1, &e), WERR_ABORTED);
    store_txn_abort(t);
    store_close(s);
}

TEST(corrupt_file_is_corrupt)
{
    struct werr e = {0};
    const char *dir = fresh_dir("garbage");
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    static char junk[16384];
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (char)(i * 131u + 7u);
    }
    CHECK_EQ_INT(write(fd, junk, sizeof junk), (long long)sizeof junk);
    close(fd);
    struct store *s = NULL;
    CHECK_EQ_INT(open_at(dir, 0, &s, &e), WERR_CORRUPT);
    CHECK(strstr(e.msg, dir) != NULL);
    CHECK(s == NULL);
}

TEST(open_errors_are_io)
{
    struct werr e = {0};
    struct store *s = NULL;
    /* a path whose parent is a regular file: mkdir fails with ENOTDIR */
    char path[600];
    snprintf(path, sizeof path, "%s/file", tmp_root);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    close(fd);
    snprintf(path, sizeof path, "%s/file/sub", tmp_root);
    CHECK_EQ_INT(open_at(path, 0, &s, &e), WERR_IO);
    CHECK(strstr(e.msg, "mkdir") != NULL);
    struct store_config none = {0};
    CHECK_EQ_INT(store_open(&s, &none, &e), WERR_INVALID);
}

TEST(dbi_limit)
{
    struct werr e = {0};
    struct store *s;
    CHECK_EQ_INT(open_at(fresh_dir("dbis"), 0, &s, &e), 0);
    char name[16];
    unsigned d;
    for (int i = 0; i < STORE_MAX_DBS; i++) {
        snprintf(name, sizeof name, "db%d", i);
        CHECK_EQ_INT(store_dbi(s, name, &d, &e), 0);
    }
    CHECK_EQ_INT(store_dbi(s, "one-too-many", &d, &e), WERR_LIMIT);
    store_close(s);
}

/* ---- nested write txns (store_txn_begin_child) ------------------------ */

TEST(nested_child_commit_merges_without_a_durable_commit)
{
    struct werr e = {0};
    struct store *s;
    char buf[64];
    CHECK_EQ_INT(open_at(fresh_dir("nest_commit"), 0, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "d", &d, &e), 0);
    uint64_t c0 = store_commits(s);

    struct store_txn *p, *c, *g;
    CHECK_EQ_INT(store_txn_begin(s, 1, &p, &e), 0);
    CHECK_EQ_INT(store_put(p, d, "a", 1, "1", 1, 0, &e), 0);
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    /* The child sees the parent's uncommitted write. */
    struct store_val v;
    CHECK_EQ_INT(store_get(c, d, "a", 1, &v, &e), 0);
    CHECK_EQ_INT(store_put(c, d, "b", 1, "2", 1, 0, &e), 0);
    /* Children nest. */
    CHECK_EQ_INT(store_txn_begin_child(c, &g, &e), 0);
    CHECK_EQ_INT(store_put(g, d, "c", 1, "3", 1, 0, &e), 0);
    CHECK_EQ_INT(store_txn_commit(g, &e), 0);
    CHECK_EQ_INT(store_get(c, d, "c", 1, &v, &e), 0);
    CHECK_EQ_INT(store_txn_commit(c, &e), 0);
    /* Merged into the parent, but nothing is durable or visible yet. */
    CHECK_EQ_INT(store_commits(s), c0);
    CHECK_EQ_INT(store_get(p, d, "b", 1, &v, &e), 0);
    CHECK_EQ_INT(get_str(s, d, "b", buf, sizeof buf), WERR_NOTFOUND);
    CHECK_EQ_INT(store_txn_commit(p, &e), 0);
    CHECK_EQ_INT(store_commits(s), c0 + 1);
    CHECK_EQ_INT(get_str(s, d, "a", buf, sizeof buf), 0);
    CHECK_EQ_INT(get_str(s, d, "b", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "2");
    CHECK_EQ_INT(get_str(s, d, "c", buf, sizeof buf), 0);

    /* Read txns and children never count as durable commits. */
    CHECK_EQ_INT(store_txn_begin(s, 0, &p, &e), 0);
    CHECK_EQ_INT(store_txn_commit(p, &e), 0);
    CHECK_EQ_INT(store_commits(s), c0 + 1);
    store_close(s);

    /* Survives a reopen. */
    CHECK_EQ_INT(open_at(fresh_dir("nest_commit"), 0, &s, &e), 0);
    CHECK_EQ_INT(store_dbi(s, "d", &d, &e), 0);
    CHECK_EQ_INT(get_str(s, d, "c", buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "3");
    store_close(s);
}

TEST(nested_child_abort_drops_only_the_child)
{
    struct werr e = {0};
    struct store *s;
    char buf[64];
    CHECK_EQ_INT(open_at(fresh_dir("nest_abort"), 0, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "d", &d, &e), 0);
    CHECK_EQ_INT(put_str(s, d, "old", "x"), 0);

    struct store_txn *p, *c;
    struct store_val v;
    CHECK_EQ_INT(store_txn_begin(s, 1, &p, &e), 0);
    CHECK_EQ_INT(store_put(p, d, "a", 1, "1", 1, 0, &e), 0);
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    CHECK_EQ_INT(store_put(c, d, "b", 1, "2", 1, 0, &e), 0);
    CHECK_EQ_INT(store_del(c, d, "a", 1, &e), 0);
    CHECK_EQ_INT(store_del(c, d, "old", 3, &e), 0);
    store_txn_abort(c);
    /* The parent is as before the child began, and usable. */
    CHECK_EQ_INT(store_get(p, d, "a", 1, &v, &e), 0);
    CHECK_EQ_INT(store_get(p, d, "b", 1, &v, &e), WERR_NOTFOUND);
    CHECK_EQ_INT(store_get(p, d, "old", 3, &v, &e), 0);

    /* A poisoned child cannot commit; the parent is unaffected. */
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    CHECK_EQ_INT(store_put(c, d, "z", 1, "9", 1, 0, &e), 0);
    CHECK_EQ_INT(store_put(c, d, "", 0, "v", 1, 0, &e), WERR_INVALID);
    CHECK_EQ_INT(store_txn_failed(c), WERR_INVALID);
    CHECK_EQ_INT(store_txn_commit(c, &e), WERR_ABORTED);
    CHECK_EQ_INT(store_txn_failed(p), 0);
    CHECK_EQ_INT(store_get(p, d, "z", 1, &v, &e), WERR_NOTFOUND);

    /* A second child after those works as usual. */
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    CHECK_EQ_INT(store_put(c, d, "c", 1, "3", 1, 0, &e), 0);
    CHECK_EQ_INT(store_txn_commit(c, &e), 0);
    CHECK_EQ_INT(store_txn_commit(p, &e), 0);
    CHECK_EQ_INT(get_str(s, d, "a", buf, sizeof buf), 0);
    CHECK_EQ_INT(get_str(s, d, "b", buf, sizeof buf), WERR_NOTFOUND);
    CHECK_EQ_INT(get_str(s, d, "z", buf, sizeof buf), WERR_NOTFOUND);
    CHECK_EQ_INT(get_str(s, d, "c", buf, sizeof buf), 0);
    CHECK_EQ_INT(get_str(s, d, "old", buf, sizeof buf), 0);

    /* Aborting the parent drops what its children committed into it. */
    CHECK_EQ_INT(store_txn_begin(s, 1, &p, &e), 0);
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    CHECK_EQ_INT(store_put(c, d, "gone", 4, "1", 1, 0, &e), 0);
    CHECK_EQ_INT(store_txn_commit(c, &e), 0);
    store_txn_abort(p);
    CHECK_EQ_INT(get_str(s, d, "gone", buf, sizeof buf), WERR_NOTFOUND);
    store_close(s);
}

TEST(nested_misuse_is_refused)
{
    struct werr e = {0};
    struct store *s;
    char buf[64];
    CHECK_EQ_INT(open_at(fresh_dir("nest_misuse"), 0, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "d", &d, &e), 0);
    struct store_txn *p, *c, *c2;
    struct store_val v;

    /* Not under a read txn. */
    CHECK_EQ_INT(store_txn_begin(s, 0, &p, &e), 0);
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), WERR_INVALID);
    store_txn_abort(p);

    /* One child at a time; not while the parent holds cursors. */
    CHECK_EQ_INT(store_txn_begin(s, 1, &p, &e), 0);
    struct store_cursor *cur;
    CHECK_EQ_INT(store_cursor_open(p, d, &cur, &e), 0);
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), WERR_INVALID);
    store_cursor_close(cur);
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    CHECK_EQ_INT(store_txn_begin_child(p, &c2, &e), WERR_INVALID);
    CHECK_EQ_INT(store_txn_failed(p), 0);
    /* The parent is blocked while the child is open: using it is a bug,
     * and poisons it. */
    CHECK_EQ_INT(store_get(p, d, "a", 1, &v, &e), WERR_INTERNAL);
    CHECK_EQ_INT(store_txn_failed(p), WERR_INTERNAL);
    CHECK_EQ_INT(store_txn_commit(c, &e), 0);
    CHECK_EQ_INT(store_txn_commit(p, &e), WERR_ABORTED);

    /* Committing a parent over an open child aborts both. */
    CHECK_EQ_INT(store_txn_begin(s, 1, &p, &e), 0);
    CHECK_EQ_INT(store_put(p, d, "p", 1, "1", 1, 0, &e), 0);
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    CHECK_EQ_INT(store_put(c, d, "q", 1, "1", 1, 0, &e), 0);
    uint64_t c0 = store_commits(s);
    CHECK_EQ_INT(store_txn_commit(p, &e), WERR_INTERNAL); /* frees c too */
    CHECK_EQ_INT(store_commits(s), c0);
    CHECK_EQ_INT(get_str(s, d, "p", buf, sizeof buf), WERR_NOTFOUND);
    CHECK_EQ_INT(get_str(s, d, "q", buf, sizeof buf), WERR_NOTFOUND);

    /* Aborting a parent with an open child frees the child (LeakSanitizer
     * checks) and releases the writer lock: a new write txn begins. */
    CHECK_EQ_INT(store_txn_begin(s, 1, &p, &e), 0);
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    CHECK_EQ_INT(store_cursor_open(c, d, &cur, &e), 0);
    store_txn_abort(p);
    CHECK_EQ_INT(put_str(s, d, "after", "1"), 0);
    CHECK_EQ_INT(get_str(s, d, "after", buf, sizeof buf), 0);
    store_close(s);
}

/* A child that fills the map fails alone: the parent keeps what earlier
 * children merged (the fsm's batch relies on this), though at the map's
 * very edge the parent's own commit may then fail too. */
TEST(nested_map_full_in_child_keeps_parent)
{
    struct werr e = {0};
    struct store *s;
    char buf[64];
    CHECK_EQ_INT(open_at(fresh_dir("nest_full"), (size_t)1 << 20, &s, &e), 0);
    unsigned d;
    CHECK_EQ_INT(store_dbi(s, "d", &d, &e), 0);
    static char big[2000];
    memset(big, 'x', sizeof big);
    struct store_txn *p, *c;
    CHECK_EQ_INT(store_txn_begin(s, 1, &p, &e), 0);
    int rc = 0;
    unsigned ok = 0;
    for (unsigned i = 0; i < 4096 && rc == 0; i++) {
        char k[32];
        snprintf(k, sizeof k, "k%05u", i);
        CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
        rc = store_put(c, d, k, strlen(k), big, sizeof big, 0, &e);
        if (rc == 0) {
            rc = store_txn_commit(c, &e);
            if (rc == 0) {
                ok++;
            }
        } else {
            store_txn_abort(c);
        }
    }
    CHECK_EQ_INT(rc, WERR_FULL);
    CHECK(ok > 10);
    /* The parent is intact and still holds every merged child... */
    CHECK_EQ_INT(store_txn_failed(p), 0);
    char k[32];
    struct store_val v;
    snprintf(k, sizeof k, "k%05u", ok - 1);
    CHECK_EQ_INT(store_get(p, d, k, strlen(k), &v, &e), 0);
    snprintf(k, sizeof k, "k%05u", ok);
    CHECK_EQ_INT(store_get(p, d, k, strlen(k), &v, &e), WERR_NOTFOUND);
    /* ...but at the map's edge its own commit needs pages too (free list,
     * meta): it fails whole, and nothing of it lands. */
    CHECK_EQ_INT(store_txn_commit(p, &e), WERR_FULL);
    snprintf(k, sizeof k, "k%05u", 0u);
    CHECK_EQ_INT(get_str(s, d, k, buf, sizeof buf), WERR_NOTFOUND);
    /* Below the edge, the same parent commits the children before the
     * failed one. */
    CHECK_EQ_INT(store_txn_begin(s, 1, &p, &e), 0);
    rc = 0;
    for (unsigned i = 0; i < ok / 2; i++) {
        snprintf(k, sizeof k, "k%05u", i);
        CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
        CHECK_EQ_INT(store_put(c, d, k, strlen(k), big, sizeof big, 0, &e), 0);
        CHECK_EQ_INT(store_txn_commit(c, &e), 0);
    }
    CHECK_EQ_INT(store_txn_begin_child(p, &c, &e), 0);
    CHECK_EQ_INT(store_put(c, d, "", 0, big, 1, 0, &e), WERR_INVALID);
    CHECK_EQ_INT(store_txn_commit(c, &e), WERR_ABORTED);
    CHECK_EQ_INT(store_txn_commit(p, &e), 0);
    snprintf(k, sizeof k, "k%05u", ok / 2 - 1);
    CHECK_EQ_INT(get_str(s, d, k, buf, sizeof buf), 0);
    store_close(s);
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/warden-test-storage-XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(crud_and_count);
    RUN(cursor_order_and_seek);
    RUN(reopen_persists);
    RUN(lazy_meta_flag);
    RUN(copy_then_open_copy);
    RUN(image_is_a_stable_point_in_time_env);
    RUN(image_read_by_another_thread_while_committing);
    RUN(map_full_poisons_txn);
    RUN(bad_keys_and_readonly);
    RUN(corrupt_file_is_corrupt);
    RUN(open_errors_are_io);
    RUN(dbi_limit);
    RUN(nested_child_commit_merges_without_a_durable_commit);
    RUN(nested_child_abort_drops_only_the_child);
    RUN(nested_misuse_is_refused);
    RUN(nested_map_full_in_child_keeps_parent);
    int rc = unit_done();
    if (rc == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0) {
            fprintf(stderr, "warning: could not remove %s\n", tmp_root);
        }
    } else {
        fprintf(stderr, "test files kept in %s\n", tmp_root);
    }
    return rc;
}

/* fsm_snap.c - snapshots of the state machine, restore, and recovery of a
 * restore that a crash interrupted (issue 3, "Snapshots" and "Exactly once
 * across restarts").
 *
 * A snapshot is an image of the LMDB data file as of one committed txn
 * (store_image_pin: the meta pages copied, every other page read from the
 * file in place, pinned by a read txn): the whole env, applied index and
 * cluster time included, so a restored node skips exactly the entries the
 * snapshot already holds. Taking one costs O(1) on the loop thread; the
 * O(env) read happens on raft_uv's writer thread.
 *
 * Restore, in this order (each step durable before the next starts):
 *   1. write the bytes to <db_dir>.restore.tmp/data.mdb; fsync the file and
 *      the directory;
 *   2. open it as a full fsm (LMDB checks, schema checks) and read its
 *      applied index; if that is <= ours, delete it and stop (skipped);
 *   3. close our env; rename <db_dir> -> <db_dir>.old;
 *   4. rename <db_dir>.restore.tmp -> <db_dir>; fsync the parent dir;
 *   5. reopen; delete <db_dir>.old; fsync the parent dir.
 *
 * Recovery at open (wfsm__recover), from what a crash can leave behind:
 *   - <db_dir> missing, .old present, .restore.tmp present: the crash was
 *     between 3 and 4. The tmp env is complete: it was fsynced and
 *     validated (1, 2) before the rename in 3 was issued, so if that rename
 *     is visible, so are the tmp env's bytes. Finish: rename tmp -> db_dir.
 *   - <db_dir> missing, .old present, no tmp: cannot come from the order
 *     above (someone removed files by hand). Roll back: rename .old ->
 *     db_dir; it was a complete, committed env. Raft re-delivers its
 *     snapshot at start-up if the state is older than it needs.
 *   - .old present next to <db_dir>: the crash was during 5. Delete .old.
 *   - .restore.tmp present next to <db_dir>: the crash was during 1 or 2
 *     (the tmp may be torn). Delete it; <db_dir> was never touched.
 * The rule depends only on which names exist, so every start from the same
 * files ends in the same state.
 *
 * Deleting: only directories holding nothing but LMDB's data.mdb and
 * lock.mdb are removed. Anything else there means the path is not ours
 * (or was tampered with), and we refuse rather than delete it. */
#include "fsm_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/log.h"

#define DATA_FILE "data.mdb"
#define LOCK_FILE "lock.mdb"
/* Single read/write syscalls are capped at this: Linux transfers at most
 * ~2 GiB per call anyway, and a bounded chunk keeps EINTR retries cheap. */
#define IO_CHUNK ((size_t)1 << 20)

static int errno_set(struct werr *e, int err, const char *what,
                     const char *path)
{
    int code = err == ENOSPC || err == EDQUOT ? WERR_FULL
               : err == ENOMEM                ? WERR_NOMEM
                                              : WERR_IO;
    return werr_set(e, code, "%s %s: %s", what, path, strerror(err));
}

/* out = dir + suffix. wfsm_open checked that dir leaves room for
 * WFSM_SUFFIX_MAX; truncation here would be a bug, so it is checked anyway
 * (and gives a path that does not exist rather than a wrong one). */
static void path_of(char out[WFSM_PATH_MAX], const char *dir,
                    const char *suffix)
{
    size_t dn = strlen(dir), sn = strlen(suffix);
    if (dn + sn >= WFSM_PATH_MAX) {
        out[0] = '\0';
        return;
    }
    memcpy(out, dir, dn);
    memcpy(out + dn, suffix, sn + 1);
}

static int exists(const char *path, int *yes, struct werr *e)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        *yes = 1;
        return 0;
    }
    if (errno == ENOENT) {
        *yes = 0;
        return 0;
    }
    return errno_set(e, errno, "stat", path);
}

static int dir_fsync(const char *path, struct werr *e)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return errno_set(e, errno, "open dir", path);
    }
    int rc = 0;
    if (fsync(fd) != 0) {
        rc = errno_set(e, errno, "fsync dir", path);
    }
    close(fd);
    return rc;
}

/* Remove an env directory (data.mdb, lock.mdb). Absent is fine. */
static int env_dir_remove(const char *path, struct werr *e)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        return errno_set(e, errno, "opendir", path);
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") != 0 && strcmp(n, "..") != 0 &&
            strcmp(n, DATA_FILE) != 0 && strcmp(n, LOCK_FILE) != 0) {
            /* n points into d: format before closedir frees it */
            werr_set(e, WERR_PRECOND,
                     "refusing to remove %s: it holds %s, which is not an "
                     "LMDB file", path, n);
            closedir(d);
            return WERR_PRECOND;
        }
    }
    int err = errno;
    closedir(d);
    if (err != 0) {
        return errno_set(e, err, "readdir", path);
    }
    char p[WFSM_PATH_MAX + sizeof DATA_FILE + 1];
    const char *files[] = {DATA_FILE, LOCK_FILE};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", path, files[i]);
        if (unlink(p) != 0 && errno != ENOENT) {
            return errno_set(e, errno, "unlink", p);
        }
    }
    if (rmdir(path) != 0) {
        return errno_set(e, errno, "rmdir", path);
    }
    return 0;
}

static int do_rename(const char *from, const char *to, struct werr *e)
{
    if (rename(from, to) != 0) {
        int err = errno;
        errno_set(e, err, "rename", from);
        return werr_wrap(e, "to %s", to);
    }
    return 0;
}

int wfsm__recover(struct wfsm *f, struct werr *e)
{
    char tmp[WFSM_PATH_MAX], old[WFSM_PATH_MAX], snap[WFSM_PATH_MAX];
    path_of(tmp, f->dir, WFSM_SUFFIX_RESTORE);
    path_of(old, f->dir, WFSM_SUFFIX_OLD);
    path_of(snap, f->dir, WFSM_SUFFIX_SNAPSHOT);
    int has_dir = 0, has_tmp = 0, has_old = 0, rc;
    if ((rc = exists(f->dir, &has_dir, e)) != 0 ||
        (rc = exists(tmp, &has_tmp, e)) != 0 ||
        (rc = exists(old, &has_old, e)) != 0) {
        return rc;
    }
    int changed = 0;
    if (!has_dir && has_old) {
        if (has_tmp) {
            wlog(WLOG_WARN, "fsm: finishing a restore interrupted by a crash",
                 "dir", f->dir, NULL);
            rc = do_rename(tmp, f->dir, e);
            has_tmp = 0;
        } else {
            wlog(WLOG_WARN, "fsm: rolling back to the env before a restore",
                 "dir", f->dir, NULL);
            rc = do_rename(old, f->dir, e);
            has_old = 0;
        }
        if (rc) {
            return rc;
        }
        changed = 1;
    }
    if (has_old) {
        if ((rc = env_dir_remove(old, e)) != 0) {
            return rc;
        }
        changed = 1;
    }
    if (has_tmp) {
        if ((rc = env_dir_remove(tmp, e)) != 0) {
            return rc;
        }
        wlog(WLOG_WARN, "fsm: removed an incomplete restore", "dir", tmp,
             NULL);
        changed = 1;
    }
    /* A snapshot copy a crash left behind: never part of the state. */
    if ((rc = env_dir_remove(snap, e)) != 0) {
        return rc;
    }
    if (changed) {
        return dir_fsync(f->parent, e);
    }
    return 0;
}

/* ---- snapshot -----------------------------------------------------------*/

int wfsm_snapshot(struct wfsm *f, struct store_image **img, struct werr *e)
{
    struct werr e_local;
    if (e == NULL) {
        e = &e_local; /* e is optional (err.h); we copy into it below */
    }
    if (f->s == NULL) {
        return werr_set(e, WERR_PRECOND,
                        "wfsm_snapshot: fsm unusable after a failed restore");
    }
    if (f->batch != NULL) {
        /* The image would miss the batch's entries while raft labels the
         * snapshot with its own last applied index, which includes them:
         * a follower restoring it would skip them forever (fsm.h). */
        return werr_set(e, WERR_PRECOND,
                        "wfsm_snapshot: a batch is open; commit it first");
    }
    if (store_image_pin(f->s, f->map_size, img, e) != 0) {
        return werr_wrap(e, "wfsm_snapshot %s", f->dir);
    }
    f->pinned++;
    return 0;
}

void wfsm_snapshot_release(struct wfsm *f, struct store_image *img)
{
    if (img == NULL) {
        return;
    }
    store_image_release(img);
    f->pinned--;
}

int wfsm_snapshot_copy(struct wfsm *f, uint8_t **buf, size_t *len,
                       struct werr *e)
{
    struct store_image *img = NULL;
    const struct store_image_part *pt;
    unsigned np = 0;
    size_t off = 0;
    uint8_t *b;
    int rc = wfsm_snapshot(f, &img, e);

    if (rc != 0) {
        return rc;
    }
    b = malloc(store_image_len(img));
    if (b == NULL) {
        rc = werr_set(e, WERR_NOMEM, "wfsm_snapshot_copy: %zu bytes",
                      store_image_len(img));
        wfsm_snapshot_release(f, img);
        return rc;
    }
    pt = store_image_parts(img, &np);
    for (unsigned i = 0; i < np; i++) {
        memcpy(b + off, pt[i].base, pt[i].len);
        off += pt[i].len;
    }
    wfsm_snapshot_release(f, img);
    *buf = b;
    *len = off;
    return 0;
}

/* ---- restore ------------------------------------------------------------*/

static int write_file_sync(const char *path, const uint8_t *b, size_t n,
                           struct werr *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return errno_set(e, errno, "create", path);
    }
    size_t put = 0;
    while (put < n) {
        size_t want = n - put < IO_CHUNK ? n - put : IO_CHUNK;
        ssize_t w = write(fd, b + put, want);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            int rc = w < 0 ? errno_set(e, errno, "write", path)
                           : werr_set(e, WERR_IO, "write %s: no progress", path);
            close(fd);
            return rc;
        }
        put += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int rc = errno_set(e, errno, "fsync", path);
        close(fd);
        return rc;
    }
    if (close(fd) != 0) {
        return errno_set(e, errno, "close", path);
    }
    return 0;
}

/* Open the env at dir as a complete fsm (validating LMDB, the fsm schema
 * and the inventory schema) and return its applied index. */
static int probe_applied(const struct wfsm *f, const char *dir,
                         uint64_t *applied, struct werr *e)
{
    struct wfsm *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return werr_set(e, WERR_NOMEM, "probing a snapshot");
    }
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    p->map_size = f->map_size;
    int rc = wfsm__state_open(p, e);
    if (rc == 0) {
        *applied = p->applied;
        wfsm__state_close(p);
        if (*applied == 0) {
            rc = werr_set(e, WERR_INVALID, "snapshot holds no applied index");
        }
    }
    free(p);
    return rc;
}

int wfsm_restore(struct wfsm *f, const uint8_t *buf, size_t len, int *skipped,
                 struct werr *e)
{
    struct werr e_local;
    if (e == NULL) {
        e = &e_local; /* e is optional (err.h); we copy into it below */
    }
    *skipped = 0;
    if (f->s == NULL) {
        return werr_set(e, WERR_PRECOND,
                        "wfsm_restore: fsm unusable after a failed restore");
    }
    if (f->batch != NULL) {
        /* Restore closes the env, and its skip rule compares with the
         * applied index, which must be durable (fsm.h). */
        return werr_set(e, WERR_PRECOND,
                        "wfsm_restore: a batch is open; commit it first");
    }
    if (f->pinned != 0) {
        /* Restore closes the env: the pinned image's pages would go with
         * it while its reader may still be copying them. */
        return werr_set(e, WERR_PRECOND,
                        "wfsm_restore: %u snapshot image(s) still pinned",
                        f->pinned);
    }
    if (buf == NULL || len == 0) {
        return werr_set(e, WERR_INVALID, "wfsm_restore: empty snapshot");
    }
    if (len > f->map_size) {
        return werr_set(e, WERR_LIMIT,
                        "wfsm_restore: snapshot of %zu bytes exceeds the map "
                        "size %zu", len, f->map_size);
    }
    char tmp[WFSM_PATH_MAX], old[WFSM_PATH_MAX];
    char data[WFSM_PATH_MAX + sizeof DATA_FILE + 1];
    path_of(tmp, f->dir, WFSM_SUFFIX_RESTORE);
    path_of(old, f->dir, WFSM_SUFFIX_OLD);
    snprintf(data, sizeof data, "%s/%s", tmp, DATA_FILE);
    struct werr e2 = {0};

    /* 1. the new env, durable before anything refers to it */
    int rc = env_dir_remove(tmp, e);
    if (rc) {
        goto err_wrap;
    }
    if (mkdir(tmp, 0700) != 0) {
        rc = errno_set(e, errno, "mkdir", tmp);
        goto err_wrap;
    }
    if ((rc = write_file_sync(data, buf, len, e)) != 0 ||
        (rc = dir_fsync(tmp, e)) != 0) {
        goto err_remove_tmp;
    }
    /* 2. is it valid, and newer than us? */
    uint64_t snap_applied = 0;
    if ((rc = probe_applied(f, tmp, &snap_applied, e)) != 0) {
        werr_wrap(e, "snapshot");
        goto err_remove_tmp;
    }
    if (snap_applied <= f->applied) {
        /* Issue 3: skip a restore when LMDB is already newer. */
        *skipped = 1;
        if ((rc = env_dir_remove(tmp, e)) != 0) {
            goto err_wrap;
        }
        return 0;
    }
    /* 3. and 4. swap */
    if ((rc = env_dir_remove(old, e)) != 0) {
        goto err_remove_tmp;
    }
    wfsm__state_close(f);
    if ((rc = do_rename(f->dir, old, e)) != 0) {
        goto err_reopen;
    }
    if ((rc = do_rename(tmp, f->dir, e)) != 0) {
        if (do_rename(old, f->dir, &e2) != 0) {
            /* Both renames failed: leave f unusable; wfsm__recover()
             * sorts the names out at the next open. */
            return werr_wrap(e, "wfsm_restore %s (rollback failed: %s)",
                             f->dir, e2.msg);
        }
        goto err_reopen;
    }
    if ((rc = dir_fsync(f->parent, e)) != 0) {
        goto err_unusable;
    }
    /* 5. */
    if ((rc = wfsm__state_open(f, e)) != 0) {
        goto err_unusable;
    }
    if ((rc = env_dir_remove(old, e)) != 0 ||
        (rc = dir_fsync(f->parent, e)) != 0) {
        /* The restore took effect; .old is removed at the next open. */
        wlog(WLOG_WARN, "fsm: restored, but could not remove the old env",
             "dir", old, "error", e->msg, NULL);
        werr_clear(e);
    }
    return 0;

err_reopen:
    if (wfsm__state_open(f, &e2) != 0) {
        return werr_wrap(e, "wfsm_restore %s (reopen failed: %s)", f->dir,
                         e2.msg);
    }
err_remove_tmp:
    if (env_dir_remove(tmp, &e2) != 0) {
        wlog(WLOG_WARN, "fsm: could not remove a failed restore", "dir", tmp,
             "error", e2.msg, NULL);
    }
err_wrap:
    return werr_wrap(e, "wfsm_restore %s", f->dir);
err_unusable:
    /* Past the point of no return: the renames are done (or not durable).
     * f stays unusable until the caller closes it; the next open recovers
     * by the rules at the top of this file. */
    return werr_wrap(e, "wfsm_restore %s (fsm unusable; reopen)", f->dir);
}

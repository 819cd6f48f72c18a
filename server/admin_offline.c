/* admin_offline.c - `wardend recover|backup|restore` (admin_offline.h).
 *
 * Layout of a backup directory:
 *   BACKUPDIR/db/data.mdb      compacted LMDB copy (store_copy: one read
 *                              txn, so writers are not blocked and the copy
 *                              is one committed state)
 *   BACKUPDIR/MANIFEST.json    {"format":"warden.backup","version":1,
 *                               "applied_index":N,"cluster_time_ms":T,
 *                               "audit_head_seq":S,"audit_head_hash":"hex",
 *                               "source":"DIR","created_unix_ms":U}
 * The manifest is read from the copy, never from the live env, so it
 * describes exactly the bytes in the backup. */
#include "admin_offline.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <dirent.h>
#include <unistd.h>

#include "../common/log.h"
#include "../consensus/fsm.h"
#include "../consensus/recover.h"
#include "../domain/audit.h"
#include "../domain/audit_chain.h"
#include "../storage/store.h"
#include "cluster_cfg.h"

/* Longest path we build (data dir + "/db/data.mdb"). */
#define OFF_PATH_MAX 4096
/* MANIFEST.json is a few hundred bytes; anything bigger is not ours. */
#define OFF_MANIFEST_MAX 8192
/* File copy chunk. */
#define OFF_COPY_CHUNK (1u << 20)

enum { O_DATA_DIR = 256, O_NODE_ID, O_PEERS, O_OUT, O_BACKUP };

struct off_args {
    const char *data_dir, *out, *backup, *peers_s;
    unsigned id;
    struct wnode_peer peers[WNODE_MEMBERS_MAX];
    unsigned n_peers;
};

int admin_offline_is_cmd(const char *name)
{
    return strcmp(name, "recover") == 0 || strcmp(name, "backup") == 0 ||
           strcmp(name, "restore") == 0;
}

static void off_usage(FILE *f)
{
    fprintf(f,
            "usage: wardend recover --data-dir DIR --node-id N --peers ID=PEER[/CLIENT],...\n"
            "       wardend backup --data-dir DIR --out BACKUPDIR\n"
            "       wardend restore --backup BACKUPDIR --data-dir NEWDIR --node-id N\n"
            "               --peers ID=PEER[/CLIENT],...\n"
            "  recover and restore need the node stopped (docs/ops/quorum-loss.md,\n"
            "  docs/ops/backup-restore.md); backup works while it runs.\n");
}

static int parse_args(int argc, char **argv, struct off_args *a)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, O_DATA_DIR},
        {"node-id", required_argument, NULL, O_NODE_ID},
        {"peers", required_argument, NULL, O_PEERS},
        {"out", required_argument, NULL, O_OUT},
        {"backup", required_argument, NULL, O_BACKUP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct werr e;
    int ch;
    werr_clear(&e);
    memset(a, 0, sizeof *a);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case O_DATA_DIR: a->data_dir = optarg; break;
        case O_OUT: a->out = optarg; break;
        case O_BACKUP: a->backup = optarg; break;
        case O_NODE_ID:
            if (cluster_id_parse(optarg, &a->id, &e) != 0) {
                wlog(WLOG_ERROR, "bad --node-id", "error", e.msg, NULL);
                return 2;
            }
            break;
        case O_PEERS:
            a->peers_s = optarg;
            if (cluster_peers_parse(optarg, a->peers, WNODE_MEMBERS_MAX,
                                    &a->n_peers, &e) != 0) {
                wlog(WLOG_ERROR, "bad --peers", "error", e.msg, NULL);
                return 2;
            }
            break;
        case 'h': off_usage(stdout); return -1;
        default: off_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        wlog(WLOG_ERROR, "unexpected argument", "arg", argv[optind], NULL);
        return 2;
    }
    return 0;
}

static int path_join(char *out, const char *a, const char *b)
{
    int k = snprintf(out, OFF_PATH_MAX, "%s/%s", a, b);
    return k < 0 || k >= OFF_PATH_MAX ? -1 : 0;
}

/* 1 if a process holds DIR/db open. LMDB keeps a shared fcntl lock on
 * byte 0 of lock.mdb for as long as any process has the env open (lmdb's
 * mdb_env_share_locks), so asking whether a write lock there would
 * conflict tells us whether a wardend (or anything else) is using the
 * directory. fcntl locks from our own process never conflict with us, and
 * we have not opened the env. */
static int data_dir_in_use(const char *data_dir)
{
    char p[OFF_PATH_MAX];
    struct flock fl;
    int fd, busy = 0;
    if (snprintf(p, sizeof p, "%s/db/lock.mdb", data_dir) >= (int)sizeof p)
        return 0;
    fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0; /* no lock file: nobody ever opened the env */
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
        busy = (int)fl.l_pid ? (int)fl.l_pid : 1;
    close(fd);
    return busy;
}

static int refuse_if_running(const char *data_dir)
{
    int pid = data_dir_in_use(data_dir);
    if (pid != 0) {
        char s[24];
        snprintf(s, sizeof s, "%d", pid);
        wlog(WLOG_ERROR, "the data dir is in use: stop the node first", "data_dir",
             data_dir, "pid", s, NULL);
        return 2;
    }
    return 0;
}

/* 0 if dir does not exist or is an empty directory. */
static int dir_absent_or_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n == 0 ? 0 : -1;
}

static int mkdir1(const char *dir)
{
    return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

static void hex32(const uint8_t h[AUDIT_HASH_LEN], char out[2 * AUDIT_HASH_LEN + 1])
{
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

struct manifest {
    uint64_t applied_index, cluster_time_ms, head_seq;
    char head_hash[2 * AUDIT_HASH_LEN + 1];
};

/* Applied index, cluster time and audit head of the env at db_dir (a copy
 * we own: wfsm_open may create missing dbs in it). If snap is non-NULL,
 * also a wfsm_snapshot_copy image of it (the caller frees it). */
static int read_state(const char *db_dir, struct manifest *m, uint8_t **snap,
                      size_t *snap_len, struct werr *e)
{
    struct wfsm *f = NULL;
    struct store_txn *t = NULL;
    uint8_t hash[AUDIT_HASH_LEN];
    int rc;

    if ((rc = wfsm_open(&f, db_dir, 0, e)) != 0)
        return rc;
    m->applied_index = wfsm_applied_index(f);
    m->cluster_time_ms = wfsm_cluster_time(f);
    if ((rc = store_txn_begin(wfsm_store(f), 0, &t, e)) != 0)
        goto out;
    rc = audit_head(wfsm_audit(f), t, &m->head_seq, hash, e);
    store_txn_abort(t);
    if (rc != 0)
        goto out;
    hex32(hash, m->head_hash);
    if (snap != NULL)
        rc = wfsm_snapshot_copy(f, snap, snap_len, e);
out:
    wfsm_close(f);
    return rc;
}

static int write_file_sync(const char *path, const char *data, size_t len,
                           struct werr *e)
{
    char tmp[OFF_PATH_MAX + 8];
    int fd;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return werr_set(e, WERR_IO, "open %s: %s", tmp, strerror(errno));
    if (write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return werr_set(e, WERR_IO, "write %s: %s", tmp, strerror(err));
    }
    close(fd);
    if (rename(tmp, path) != 0)
        return werr_set(e, WERR_IO, "rename %s: %s", tmp, strerror(errno));
    return 0;
}

static int copy_file_sync(const char *src, const char *dst, struct werr *e)
{
    static char buf[OFF_COPY_CHUNK];
    int in, out, rc = 0;
    ssize_t k;
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return werr_set(e, WERR_IO, "open %s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = werr_set(e, WERR_IO, "create %s: %s", dst, strerror(errno));
        goto err_close_in;
    }
    while ((k = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)k) != k) {
            rc = werr_set(e, WERR_IO, "write %s: %s", dst, strerror(errno));
            goto err_close_out;
        }
    }
    if (k < 0)
        rc = werr_set(e, WERR_IO, "read %s: %s", src, strerror(errno));
    else if (fsync(out) != 0)
        rc = werr_set(e, WERR_IO, "fsync %s: %s", dst, strerror(errno));
err_close_out:
    close(out);
err_close_in:
    close(in);
    return rc;
}

static uint64_t now_unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* ---- recover ------------------------------------------------------------------ */

static int do_recover(struct off_args *a)
{
    char raft_dir[OFF_PATH_MAX];
    struct werr e;
    int rc;
    werr_clear(&e);
    if (a->data_dir == NULL || a->id == 0 || a->n_peers == 0) {
        off_usage(stderr);
        return 2;
    }
    if ((rc = refuse_if_running(a->data_dir)) != 0)
        return rc;
    if (path_join(raft_dir, a->data_dir, "raft") != 0)
        return 2;
    char nid[24];
    snprintf(nid, sizeof nid, "%u", a->id);
    wlog(WLOG_WARN,
         "RECOVER: forcing a new raft configuration (raft_recover). Every "
         "member must be stopped; members left out must never start again "
         "with their old data dirs",
         "data_dir", a->data_dir, "node_id", nid, "new_members",
         a->peers_s, NULL);
    rc = wrecover_config(raft_dir, a->id, a->peers, a->n_peers, &e);
    if (rc != 0) {
        wlog(WLOG_ERROR, "recover failed; the raft log is unchanged unless "
                         "the error says otherwise",
             "error", e.msg, "code", werr_str(rc), NULL);
        return rc == WERR_CONFIG || rc == WERR_NOTFOUND ? 2 : 1;
    }
    wlog(WLOG_WARN,
         "RECOVER DONE: raft configuration rewritten; start this node with its "
         "usual command line, then add replacements with cluster add",
         "data_dir", a->data_dir, "members", a->peers_s, NULL);
    return 0;
}

/* ---- backup ---------------------------------------------------------------------- */

static int do_backup(struct off_args *a)
{
    char src_db[OFF_PATH_MAX], dst_db[OFF_PATH_MAX], man[OFF_PATH_MAX];
    char body[OFF_MANIFEST_MAX];
    struct store_config sc;
    struct store *s = NULL;
    struct manifest m;
    struct werr e;
    int rc, k;
    werr_clear(&e);
    if (a->data_dir == NULL || a->out == NULL) {
        off_usage(stderr);
        return 2;
    }
    if (path_join(src_db, a->data_dir, "db") != 0 ||
        path_join(dst_db, a->out, "db") != 0 ||
        path_join(man, a->out, "MANIFEST.json") != 0)
        return 2;
    if (dir_absent_or_empty(a->out) != 0) {
        wlog(WLOG_ERROR, "backup: --out must be a new or empty directory", "out",
             a->out, NULL);
        return 2;
    }
    struct stat st;
    if (stat(src_db, &st) != 0) {
        wlog(WLOG_ERROR, "backup: no LMDB env", "path", src_db, NULL);
        return 2;
    }
    if (mkdir1(a->out) != 0 || mkdir1(dst_db) != 0) {
        wlog(WLOG_ERROR, "backup: mkdir failed", "out", a->out, "error",
             strerror(errno), NULL);
        return 1;
    }
    /* Open the (possibly live) env alongside the node: LMDB is multi-process
     * safe, and store_copy reads one committed state in a read txn without
     * blocking the node's writer. Only store_open/store_copy: nothing is
     * written to the live env. */
    memset(&sc, 0, sizeof sc);
    sc.path = src_db;
    if ((rc = store_open(&s, &sc, &e)) != 0)
        goto err;
    rc = store_copy(s, dst_db, &e);
    store_close(s);
    if (rc != 0)
        goto err;
    if ((rc = read_state(dst_db, &m, NULL, NULL, &e)) != 0)
        goto err;
    k = snprintf(body, sizeof body,
                 "{\"format\":\"warden.backup\",\"version\":1,"
                 "\"applied_index\":%" PRIu64 ",\"cluster_time_ms\":%" PRIu64
                 ",\"audit_head_seq\":%" PRIu64 ",\"audit_head_hash\":\"%s\","
                 "\"created_unix_ms\":%" PRIu64 "}\n",
                 m.applied_index, m.cluster_time_ms, m.head_seq, m.head_hash,
                 now_unix_ms());
    if (k < 0 || (size_t)k >= sizeof body) {
        rc = werr_set(&e, WERR_INTERNAL, "manifest too long");
        goto err;
    }
    if ((rc = write_file_sync(man, body, (size_t)k, &e)) != 0)
        goto err;
    {
        char ai[24], hs[24];
        snprintf(ai, sizeof ai, "%" PRIu64, m.applied_index);
        snprintf(hs, sizeof hs, "%" PRIu64, m.head_seq);
        wlog(WLOG_INFO, "backup written", "out", a->out, "applied_index", ai,
             "audit_head_seq", hs, "audit_head_hash", m.head_hash, NULL);
    }
    printf("%s", body);
    return 0;
err:
    wlog(WLOG_ERROR, "backup failed", "error", e.msg, "code", werr_str(rc), NULL);
    return 1;
}

/* ---- restore --------------------------------------------------------------------- */

/* The number after "key": in a flat JSON object we wrote ourselves. */
static int json_u64(const char *body, const char *key, uint64_t *out)
{
    char pat[64];
    const char *p;
    char *end;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    if ((p = strstr(body, pat)) == NULL)
        return -1;
    p += strlen(pat);
    errno = 0;
    *out = strtoull(p, &end, 10);
    return end == p || errno != 0 ? -1 : 0;
}

static int json_hex64(const char *body, const char *key, char out[65])
{
    char pat[64];
    const char *p;
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    if ((p = strstr(body, pat)) == NULL)
        return -1;
    p += strlen(pat);
    for (int i = 0; i < 64; i++) {
        if (p[i] == '\0' || strchr("0123456789abcdef", p[i]) == NULL)
            return -1;
        out[i] = p[i];
    }
    out[64] = '\0';
    return p[64] == '"' ? 0 : -1;
}

static int read_manifest(const char *path, struct manifest *m, struct werr *e)
{
    char body[OFF_MANIFEST_MAX];
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL)
        return werr_set(e, WERR_NOTFOUND, "%s: %s", path, strerror(errno));
    n = fread(body, 1, sizeof body - 1, f);
    fclose(f);
    body[n] = '\0';
    if (strstr(body, "\"format\":\"warden.backup\",\"version\":1") == NULL ||
        json_u64(body, "applied_index", &m->applied_index) != 0 ||
        json_u64(body, "cluster_time_ms", &m->cluster_time_ms) != 0 ||
        json_u64(body, "audit_head_seq", &m->head_seq) != 0 ||
        json_hex64(body, "audit_head_hash", m->head_hash) != 0)
        return werr_set(e, WERR_CORRUPT, "%s: not a warden.backup v1 manifest",
                        path);
    return 0;
}

static int do_restore(struct off_args *a)
{
    char man[OFF_PATH_MAX], src[OFF_PATH_MAX], db[OFF_PATH_MAX];
    char dst[OFF_PATH_MAX], raft_dir[OFF_PATH_MAX];
    struct manifest want, got;
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    struct werr e;
    int rc;
    werr_clear(&e);
    if (a->backup == NULL || a->data_dir == NULL || a->id == 0 || a->n_peers == 0) {
        off_usage(stderr);
        return 2;
    }
    if (path_join(man, a->backup, "MANIFEST.json") != 0 ||
        path_join(src, a->backup, "db/data.mdb") != 0 ||
        path_join(db, a->data_dir, "db") != 0 ||
        path_join(dst, a->data_dir, "db/data.mdb") != 0 ||
        path_join(raft_dir, a->data_dir, "raft") != 0)
        return 2;
    if ((rc = read_manifest(man, &want, &e)) != 0) {
        wlog(WLOG_ERROR, "restore: bad backup", "error", e.msg, NULL);
        return 2;
    }
    if (dir_absent_or_empty(a->data_dir) != 0) {
        wlog(WLOG_ERROR, "restore: --data-dir must be a new or empty directory "
                         "(a restore never overwrites a node)",
             "data_dir", a->data_dir, NULL);
        return 2;
    }
    if (mkdir1(a->data_dir) != 0 || mkdir1(db) != 0) {
        wlog(WLOG_ERROR, "restore: mkdir failed", "data_dir", a->data_dir,
             "error", strerror(errno), NULL);
        return 1;
    }
    if ((rc = copy_file_sync(src, dst, &e)) != 0)
        goto err;
    /* Check the copy against its manifest before a node ever runs on it. */
    if ((rc = read_state(db, &got, &snap, &snap_len, &e)) != 0)
        goto err;
    if (got.applied_index != want.applied_index || got.head_seq != want.head_seq ||
        strcmp(got.head_hash, want.head_hash) != 0) {
        free(snap);
        wlog(WLOG_ERROR, "restore: the backup's LMDB does not match its "
                         "manifest; nothing started",
             "manifest_head_hash", want.head_hash, "db_head_hash", got.head_hash,
             NULL);
        return 2;
    }
    /* The fsm skips every entry at or below the applied index stored in
     * LMDB. A log bootstrapped at index 1 would therefore have every new
     * write skipped until the log passed the backup's index; instead the
     * log starts with a snapshot at that index (recover.h), so the first
     * new entry is applied_index + 1. */
    if (want.applied_index == 0)
        rc = wrecover_bootstrap(raft_dir, a->id, a->peers, a->n_peers, &e);
    else
        rc = wrecover_install_snapshot(raft_dir, a->id, a->peers, a->n_peers,
                                       want.applied_index, snap, snap_len, &e);
    free(snap);
    if (rc != 0)
        goto err;
    {
        char ai[24], hs[24];
        snprintf(ai, sizeof ai, "%" PRIu64, want.applied_index);
        snprintf(hs, sizeof hs, "%" PRIu64, want.head_seq);
        wlog(WLOG_WARN,
             "RESTORE DONE: new data dir holds the backup; its raft log starts "
             "at the backup's applied index with exactly these members. Start "
             "it with the same --node-id/--peers",
             "data_dir", a->data_dir, "members", a->peers_s, "applied_index", ai,
             "audit_head_seq", hs, "audit_head_hash", want.head_hash, NULL);
    }
    return 0;
err:
    wlog(WLOG_ERROR, "restore failed; remove the new data dir before retrying",
         "data_dir", a->data_dir, "error", e.msg, "code", werr_str(rc), NULL);
    return rc == WERR_PRECOND || rc == WERR_CONFIG ? 2 : 1;
}

int admin_offline_main(int argc, char **argv)
{
    struct off_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    if (strcmp(argv[0], "recover") == 0)
        return do_recover(&a);
    if (strcmp(argv[0], "backup") == 0)
        return do_backup(&a);
    return do_restore(&a);
}

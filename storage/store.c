/* store.c - the LMDB wrapper (contract: store.h, rationale: docs/storage.md).
 *
 * This is the only file in warden that sees MDB_* codes. Every LMDB return
 * value goes through translate() before it leaves, with the operation and
 * the database name as context.
 *
 * Poisoning: LMDB marks a write txn unusable after most failures (lmdb.h:
 * "only mdb_txn_abort() may be called"). We make that rule explicit and
 * uniform: any failed call other than the two expected outcomes below
 * poisons the txn, and from then on every call on it fails with
 * WERR_ABORTED and store_txn_commit() aborts instead of committing.
 *   - WERR_NOTFOUND from get/del/seek/next: an answer, not a failure.
 *   - WERR_EXISTS from put with STORE_NOOVERWRITE: LMDB leaves the txn
 *     intact (mdb_put checks before touching any page).
 * Read txns follow the same rule; nothing can be committed from them, but a
 * caller that ignores an error still cannot keep using a broken snapshot. */
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct store {
    MDB_env *env;
    char path[4096];
    unsigned ndbis;
    uint64_t commits;        /* durable top-level commits (store_commits) */
    struct store_image *images; /* pinned images (store_image_pin) */
    struct {
        MDB_dbi dbi;
        char name[64];
    } dbis[STORE_MAX_DBS];
};

static void image_unpin(struct store_image *img);

struct store_txn {
    struct store *s;
    MDB_txn *txn;
    int write;
    int poisoned;            /* code of the failure that poisoned it, or 0 */
    unsigned open_cursors;   /* must be 0 at commit (store.h) */
    struct store_cursor *cursors; /* open cursors, closed at txn end */
    struct store_txn *parent; /* NULL for a top-level txn */
    struct store_txn *child;  /* the open child, if any (one at a time) */
};

struct store_cursor {
    struct store_txn *t;
    MDB_cursor *cur;
    unsigned dbi;
    struct store_cursor *next;
};

/* Close cursors the caller left open, before the txn ends: LMDB frees
 * write-txn cursors itself but not read-txn ones, and our wrappers would
 * leak either way. */
static void txn_close_cursors(struct store_txn *t)
{
    while (t->cursors != NULL) {
        struct store_cursor *c = t->cursors;
        t->cursors = c->next;
        mdb_cursor_close(c->cur);
        free(c);
    }
    t->open_cursors = 0;
}

/* Translate an LMDB return (MDB_* or errno) into a WERR code and message.
 * `what` names the operation for context. */
static int translate(int rc, struct werr *e, const char *what)
{
    int code;
    switch (rc) {
    case MDB_KEYEXIST:
        code = WERR_EXISTS;
        break;
    case MDB_NOTFOUND:
        code = WERR_NOTFOUND;
        break;
    case MDB_PAGE_NOTFOUND:
    case MDB_CORRUPTED:
    case MDB_PANIC:
    case MDB_VERSION_MISMATCH:
    case MDB_INVALID:
    case MDB_INCOMPATIBLE:
        code = WERR_CORRUPT;
        break;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case MDB_PAGE_FULL:
    case ENOSPC:
        code = WERR_FULL;
        break;
    case MDB_DBS_FULL:
        code = WERR_LIMIT;
        break;
    case MDB_READERS_FULL:
    case MDB_TLS_FULL:
    case MDB_MAP_RESIZED: /* another process grew the map */
        code = WERR_BUSY;
        break;
    case MDB_BAD_VALSIZE:
    case EINVAL:
        code = WERR_INVALID;
        break;
    case ENOMEM:
        code = WERR_NOMEM;
        break;
    case MDB_CURSOR_FULL:
    case MDB_BAD_RSLOT:
    case MDB_BAD_TXN:
    case MDB_BAD_DBI:
        code = WERR_INTERNAL; /* our misuse of the API */
        break;
    default:
        code = rc > 0 ? WERR_IO : WERR_INTERNAL;
        break;
    }
    /* mdb_strerror() covers both MDB_* codes and errno values. */
    return werr_set(e, code, "lmdb %s: %s (%d)", what, mdb_strerror(rc), rc);
}

/* Record a failure on t. Expected outcomes (see top of file) don't poison. */
static int txn_fail(struct store_txn *t, int code)
{
    if (code != WERR_NOTFOUND && code != WERR_EXISTS && t->poisoned == 0) {
        t->poisoned = code;
    }
    return code;
}

static int txn_check(struct store_txn *t, struct werr *e)
{
    if (t->poisoned) {
        return werr_set(e, WERR_ABORTED,
                        "store txn already failed (%s); only abort is allowed",
                        werr_str(t->poisoned));
    }
    if (t->child != NULL) {
        /* LMDB blocks a parent while its child is open (MDB_BAD_TXN); a
         * caller doing this has lost track of which txn it holds. */
        return txn_fail(t, werr_set(e, WERR_INTERNAL,
                                    "store txn used while its child txn is "
                                    "open"));
    }
    return 0;
}

static int check_key(struct store_txn *t, size_t klen, struct werr *e)
{
    if (klen == 0 || klen > STORE_KEY_MAX) {
        return txn_fail(t, werr_set(e, WERR_INVALID,
                                    "store key length %zu outside 1..%d", klen,
                                    STORE_KEY_MAX));
    }
    return 0;
}

static const char *dbi_name(const struct store *s, unsigned dbi)
{
    for (unsigned i = 0; i < s->ndbis; i++) {
        if (s->dbis[i].dbi == dbi) {
            return s->dbis[i].name;
        }
    }
    return "?";
}

int store_open(struct store **out, const struct store_config *cfg,
               struct werr *e)
{
    int rc;
    if (cfg == NULL || cfg->path == NULL || cfg->path[0] == '\0') {
        return werr_set(e, WERR_INVALID, "store_open: no path");
    }
    struct store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return werr_set(e, WERR_NOMEM, "store_open: allocating handle");
    }
    if (strlen(cfg->path) >= sizeof s->path) {
        free(s);
        return werr_set(e, WERR_INVALID, "store_open: path too long");
    }
    strcpy(s->path, cfg->path);

    /* 0700: the store holds device keys and (later) the command key. */
    if (mkdir(cfg->path, 0700) != 0 && errno != EEXIST) {
        rc = errno;
        translate(rc, e, "mkdir");
        werr_wrap(e, "store_open %s", cfg->path);
        free(s);
        return e ? e->code : WERR_IO;
    }

    rc = mdb_env_create(&s->env);
    if (rc != 0) {
        translate(rc, e, "env_create");
        goto err_free;
    }
    rc = mdb_env_set_mapsize(s->env, cfg->map_size ? cfg->map_size
                                                   : STORE_MAP_SIZE_DEFAULT);
    if (rc != 0) {
        translate(rc, e, "env_set_mapsize");
        goto err_close_env;
    }
    rc = mdb_env_set_maxdbs(s->env, STORE_MAX_DBS);
    if (rc != 0) {
        translate(rc, e, "env_set_maxdbs");
        goto err_close_env;
    }
    if (cfg->max_readers) {
        rc = mdb_env_set_maxreaders(s->env, cfg->max_readers);
        if (rc != 0) {
            translate(rc, e, "env_set_maxreaders");
            goto err_close_env;
        }
    }
    /* Durability: no MDB_NOSYNC, no MDB_WRITEMAP, no MDB_MAPASYNC - a
     * commit returns only after fsync of its data pages; and unless the
     * owner asks for STORE_LAZY_META (its own log is the durability point),
     * no MDB_NOMETASYNC either: the meta page is fsynced too (docs/
     * storage.md). MDB_NOTLS: read txns are not tied to a thread. */
    if (cfg->flags & ~STORE_LAZY_META) {
        werr_set(e, WERR_INVALID, "store_open: unknown flags 0x%x", cfg->flags);
        goto err_close_env;
    }
    rc = mdb_env_open(s->env, cfg->path,
                      MDB_NOTLS | ((cfg->flags & STORE_LAZY_META) ? MDB_NOMETASYNC : 0u),
                      0600);
    if (rc != 0) {
        translate(rc, e, "env_open");
        goto err_close_env;
    }
    /* Clear reader slots left behind by a crashed process, so they do not
     * pin old pages forever and grow the file. */
    int dead = 0;
    rc = mdb_reader_check(s->env, &dead);
    if (rc != 0) {
        translate(rc, e, "reader_check");
        goto err_close_env;
    }
    *out = s;
    return 0;

err_close_env:
    mdb_env_close(s->env);
err_free:
    free(s);
    return werr_wrap(e, "store_open %s", cfg->path);
}

void store_close(struct store *s)
{
    if (s == NULL) {
        return;
    }
    /* With STORE_LAZY_META the last commit's meta page may not be on disk
     * yet: a clean close leaves nothing for the next start to re-apply. */
    (void)mdb_env_sync(s->env, 1);
    /* An image still pinned is its owner's bug (store.h), but LMDB must not
     * be closed under a live read txn. */
    while (s->images != NULL)
        image_unpin(s->images);
    mdb_env_close(s->env);
    free(s);
}

int store_dbi(struct store *s, const char *name, unsigned *dbi,
              struct werr *e)
{
    if (name == NULL || name[0] == '\0' ||
        strlen(name) >= sizeof s->dbis[0].name) {
        return werr_set(e, WERR_INVALID, "store_dbi: bad name");
    }
    for (unsigned i = 0; i < s->ndbis; i++) {
        if (strcmp(s->dbis[i].name, name) == 0) {
            *dbi = s->dbis[i].dbi;
            return 0;
        }
    }
    if (s->ndbis == STORE_MAX_DBS) {
        return werr_set(e, WERR_LIMIT, "store_dbi %s: more than %d databases",
                        name, STORE_MAX_DBS);
    }
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        translate(rc, e, "txn_begin");
        return werr_wrap(e, "store_dbi %s", name);
    }
    MDB_dbi d;
    rc = mdb_dbi_open(txn, name, MDB_CREATE, &d);
    if (rc != 0) {
        mdb_txn_abort(txn);
        translate(rc, e, "dbi_open");
        return werr_wrap(e, "store_dbi %s", name);
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        translate(rc, e, "txn_commit");
        return werr_wrap(e, "store_dbi %s", name);
    }
    s->commits++;
    s->dbis[s->ndbis].dbi = d;
    strcpy(s->dbis[s->ndbis].name, name);
    s->ndbis++;
    *dbi = d;
    return 0;
}

int store_dbi_find(const struct store *s, const char *name, unsigned *dbi)
{
    for (unsigned i = 0; i < s->ndbis; i++) {
        if (strcmp(s->dbis[i].name, name) == 0) {
            *dbi = s->dbis[i].dbi;
            return 0;
        }
    }
    return WERR_NOTFOUND;
}

int store_txn_begin(struct store *s, int write, struct store_txn **out,
                    struct werr *e)
{
    struct store_txn *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return werr_set(e, WERR_NOMEM, "store_txn_begin: allocating txn");
    }
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc != 0) {
        free(t);
        translate(rc, e, write ? "txn_begin(write)" : "txn_begin(read)");
        return e ? e->code : WERR_IO;
    }
    t->s = s;
    t->write = write != 0;
    *out = t;
    return 0;
}

/* Free t's wrapper after LMDB has ended (or is about to end) its txn:
 * close our cursor wrappers, end an open child first, unlink from the
 * parent. Does not touch t->txn. */
static void txn_release(struct store_txn *t)
{
    if (t->child != NULL) {
        /* LMDB ends children with their parent; aborting the child first
         * makes that explicit and frees its wrapper. */
        struct store_txn *c = t->child;
        txn_release(c);
        mdb_txn_abort(c->txn);
        free(c);
        t->child = NULL;
    }
    txn_close_cursors(t);
    if (t->parent != NULL) {
        t->parent->child = NULL;
    }
}

int store_txn_begin_child(struct store_txn *parent, struct store_txn **out,
                          struct werr *e)
{
    if (parent == NULL || !parent->write) {
        return werr_set(e, WERR_INVALID,
                        "store child txn needs a write parent");
    }
    if (parent->poisoned) {
        return werr_set(e, WERR_INVALID,
                        "store child txn of a failed parent (%s)",
                        werr_str(parent->poisoned));
    }
    if (parent->child != NULL) {
        return werr_set(e, WERR_INVALID,
                        "store parent txn already has a child open");
    }
    if (parent->open_cursors) {
        return werr_set(e, WERR_INVALID,
                        "store child txn while the parent has %u cursors "
                        "open", parent->open_cursors);
    }
    struct store_txn *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return werr_set(e, WERR_NOMEM, "store_txn_begin_child: allocating");
    }
    int rc = mdb_txn_begin(parent->s->env, parent->txn, 0, &t->txn);
    if (rc != 0) {
        free(t);
        translate(rc, e, "txn_begin(child)");
        return e ? e->code : WERR_IO;
    }
    t->s = parent->s;
    t->write = 1;
    t->parent = parent;
    parent->child = t;
    *out = t;
    return 0;
}

int store_txn_commit(struct store_txn *t, struct werr *e)
{
    int rc;
    if (t->child != NULL) {
        txn_release(t);
        mdb_txn_abort(t->txn);
        free(t);
        return werr_set(e, WERR_INTERNAL,
                        "store commit with a child txn open; both aborted");
    }
    if (t->poisoned) {
        rc = werr_set(e, WERR_ABORTED,
                      "store commit refused: txn failed earlier (%s); aborted",
                      werr_str(t->poisoned));
        txn_release(t);
        mdb_txn_abort(t->txn);
        free(t);
        return rc;
    }
    if (t->open_cursors) {
        txn_release(t);
        mdb_txn_abort(t->txn);
        free(t);
        return werr_set(e, WERR_INTERNAL,
                        "store commit with open cursors; aborted");
    }
    /* mdb_txn_commit frees the txn whatever it returns. For a read txn it
     * just releases the reader slot. For a child it merges into the parent
     * without I/O. */
    struct store_txn *parent = t->parent;
    struct store *s = t->s;
    int write = t->write;
    txn_release(t);
    rc = mdb_txn_commit(t->txn);
    free(t);
    if (rc != 0) {
        rc = translate(rc, e, parent ? "txn_commit(child)" : "txn_commit");
        if (parent != NULL && parent->poisoned == 0) {
            /* lmdb.h promises nothing about a parent after a failed
             * nested commit; treat it as broken rather than commit an
             * unknown part of the child. */
            parent->poisoned = rc;
        }
        return rc;
    }
    if (parent == NULL && write) {
        s->commits++;
    }
    return 0;
}

void store_txn_abort(struct store_txn *t)
{
    if (t == NULL) {
        return;
    }
    txn_release(t);
    mdb_txn_abort(t->txn);
    free(t);
}

int store_get(struct store_txn *t, unsigned dbi, const void *key, size_t klen,
              struct store_val *out, struct werr *e)
{
    int rc = txn_check(t, e);
    if (rc) {
        return rc;
    }
    if ((rc = check_key(t, klen, e)) != 0) {
        return rc;
    }
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v;
    rc = mdb_get(t->txn, (MDB_dbi)dbi, &k, &v);
    if (rc != 0) {
        int code = translate(rc, e, "get");
        werr_wrap(e, "store db %s", dbi_name(t->s, dbi));
        return txn_fail(t, code);
    }
    out->data = v.mv_data;
    out->len = v.mv_size;
    return 0;
}

int store_put(struct store_txn *t, unsigned dbi, const void *key, size_t klen,
              const void *val, size_t vlen, unsigned flags, struct werr *e)
{
    int rc = txn_check(t, e);
    if (rc) {
        return rc;
    }
    if (!t->write) {
        return txn_fail(t, werr_set(e, WERR_INVALID,
                                    "store put in a read-only txn"));
    }
    if ((rc = check_key(t, klen, e)) != 0) {
        return rc;
    }
    if (flags & ~STORE_NOOVERWRITE) {
        return txn_fail(t, werr_set(e, WERR_INVALID,
                                    "store put: unknown flags 0x%x", flags));
    }
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v = {.mv_size = vlen, .mv_data = (void *)val};
    rc = mdb_put(t->txn, (MDB_dbi)dbi, &k, &v,
                 (flags & STORE_NOOVERWRITE) ? MDB_NOOVERWRITE : 0);
    if (rc != 0) {
        int code = translate(rc, e, "put");
        werr_wrap(e, "store db %s", dbi_name(t->s, dbi));
        return txn_fail(t, code);
    }
    return 0;
}

int store_del(struct store_txn *t, unsigned dbi, const void *key, size_t klen,
              struct werr *e)
{
    int rc = txn_check(t, e);
    if (rc) {
        return rc;
    }
    if (!t->write) {
        return txn_fail(t, werr_set(e, WERR_INVALID,
                                    "store del in a read-only txn"));
    }
    if ((rc = check_key(t, klen, e)) != 0) {
        return rc;
    }
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    rc = mdb_del(t->txn, (MDB_dbi)dbi, &k, NULL);
    if (rc != 0) {
        int code = translate(rc, e, "del");
        werr_wrap(e, "store db %s", dbi_name(t->s, dbi));
        return txn_fail(t, code);
    }
    return 0;
}

int store_cursor_open(struct store_txn *t, unsigned dbi,
                      struct store_cursor **out, struct werr *e)
{
    int rc = txn_check(t, e);
    if (rc) {
        return rc;
    }
    struct store_cursor *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return txn_fail(t, werr_set(e, WERR_NOMEM, "store cursor alloc"));
    }
    rc = mdb_cursor_open(t->txn, (MDB_dbi)dbi, &c->cur);
    if (rc != 0) {
        free(c);
        int code = translate(rc, e, "cursor_open");
        werr_wrap(e, "store db %s", dbi_name(t->s, dbi));
        return txn_fail(t, code);
    }
    c->t = t;
    c->dbi = dbi;
    c->next = t->cursors;
    t->cursors = c;
    t->open_cursors++;
    *out = c;
    return 0;
}

static int cursor_get(struct store_cursor *c, MDB_val *k, MDB_val *v,
                      MDB_cursor_op op, struct store_val *ko,
                      struct store_val *vo, struct werr *e, const char *what)
{
    int rc = txn_check(c->t, e);
    if (rc) {
        return rc;
    }
    rc = mdb_cursor_get(c->cur, k, v, op);
    if (rc != 0) {
        int code = translate(rc, e, what);
        werr_wrap(e, "store db %s", dbi_name(c->t->s, c->dbi));
        return txn_fail(c->t, code);
    }
    if (ko) {
        ko->data = k->mv_data;
        ko->len = k->mv_size;
    }
    if (vo) {
        vo->data = v->mv_data;
        vo->len = v->mv_size;
    }
    return 0;
}

int store_cursor_seek(struct store_cursor *c, const void *key, size_t klen,
                      struct store_val *k, struct store_val *v,
                      struct werr *e)
{
    MDB_val mk = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val mv = {0};
    if (klen == 0) {
        return cursor_get(c, &mk, &mv, MDB_FIRST, k, v, e, "cursor first");
    }
    if (klen > STORE_KEY_MAX) {
        return txn_fail(c->t, werr_set(e, WERR_INVALID,
                                       "store seek key length %zu > %d", klen,
                                       STORE_KEY_MAX));
    }
    return cursor_get(c, &mk, &mv, MDB_SET_RANGE, k, v, e, "cursor seek");
}

int store_cursor_next(struct store_cursor *c, struct store_val *k,
                      struct store_val *v, struct werr *e)
{
    MDB_val mk = {0}, mv = {0};
    return cursor_get(c, &mk, &mv, MDB_NEXT, k, v, e, "cursor next");
}

void store_cursor_close(struct store_cursor *c)
{
    if (c == NULL) {
        return;
    }
    struct store_txn *t = c->t;
    for (struct store_cursor **pp = &t->cursors; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    mdb_cursor_close(c->cur);
    t->open_cursors--;
    free(c);
}

int store_count(struct store_txn *t, unsigned dbi, uint64_t *out,
                struct werr *e)
{
    int rc = txn_check(t, e);
    if (rc) {
        return rc;
    }
    MDB_stat st;
    rc = mdb_stat(t->txn, (MDB_dbi)dbi, &st);
    if (rc != 0) {
        int code = translate(rc, e, "stat");
        werr_wrap(e, "store db %s", dbi_name(t->s, dbi));
        return txn_fail(t, code);
    }
    *out = (uint64_t)st.ms_entries;
    return 0;
}

int store_copy(struct store *s, const char *dst_dir, struct werr *e)
{
    /* MDB_CP_COMPACT: omit free pages and renumber, so a snapshot is as
     * small as the live data. mdb_env_copy2 takes its own read txn, so
     * writers proceed while the copy runs; the result is a consistent
     * point-in-time image. It refuses a directory that already holds a
     * data.mdb (O_EXCL), which protects an existing store from being
     * overwritten by mistake. */
    int rc = mdb_env_copy2(s->env, dst_dir, MDB_CP_COMPACT);
    if (rc != 0) {
        translate(rc, e, "env_copy2");
        return werr_wrap(e, "store_copy to %s", dst_dir);
    }
    return 0;
}

struct store_image {
    struct store *s;
    MDB_txn *txn;            /* pins the pages; NULL once released by close */
    void *map;               /* our own read-only mapping of the data file */
    size_t map_len;
    struct store_image *prev, *next; /* s->images */
    uint64_t txnid;
    struct store_image_part part[STORE_IMAGE_PARTS];
    uint8_t meta[];          /* the copy of the meta pages: part[0] */
};

/* Our own copy of a stable part of LMDB's on-disk format (mdb.c, "Meta
 * page content"), only to check an image before handing it out: a data
 * file starts with NUM_METAS (2) meta pages, and page n is at n * psize.
 * Both facts have held since LMDB 0.9's first release (the file format is
 * versioned by MDB_DATA_VERSION, which LMDB checks at open). */
#define IMAGE_NUM_METAS 2u

int store_image_pin(struct store *s, size_t max, struct store_image **out,
                    struct werr *e)
{
    MDB_txn *w = NULL, *r = NULL;
    MDB_envinfo info;
    MDB_stat st;
    struct stat fst;
    struct store_image *img = NULL;
    mdb_filehandle_t fd;
    size_t psize, meta_len, file_len;
    int rc;

    rc = mdb_env_stat(s->env, &st);
    if (rc != 0) {
        translate(rc, e, "env_stat");
        goto err;
    }
    psize = st.ms_psize;
    meta_len = (size_t)IMAGE_NUM_METAS * psize;
    img = calloc(1, sizeof *img + meta_len);
    if (img == NULL) {
        werr_set(e, WERR_NOMEM, "allocating %zu bytes", sizeof *img + meta_len);
        goto err;
    }
    /* The writer lock, as mdb_env_copyfd does: no commit can move the meta
     * pages between our read txn starting and our copy of them, so the copy
     * shows exactly the read txn's state. Held for two txn begins and a
     * memcpy of two pages. */
    rc = mdb_txn_begin(s->env, NULL, 0, &w);
    if (rc != 0) {
        translate(rc, e, "txn_begin (writer lock)");
        goto err;
    }
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r);
    if (rc != 0) {
        translate(rc, e, "txn_begin (read)");
        goto err;
    }
    if ((rc = mdb_env_info(s->env, &info)) != 0) {
        translate(rc, e, "env_info");
        goto err;
    }
    if ((uint64_t)mdb_txn_id(r) != (uint64_t)info.me_last_txnid) {
        werr_set(e, WERR_CORRUPT, "read txn %zu is not the last txn %zu",
                 mdb_txn_id(r), info.me_last_txnid);
        goto err;
    }
    img->map_len = (info.me_last_pgno + 1) * psize;
    if (img->map_len < meta_len) {
        werr_set(e, WERR_CORRUPT, "last page %zu is inside the meta pages",
                 (size_t)info.me_last_pgno);
        goto err;
    }
    if (img->map_len > max) {
        werr_set(e, WERR_LIMIT, "image is %zu bytes, limit %zu", img->map_len, max);
        goto err;
    }
    /* Every page up to the last was written by a commit (LMDB writes the
     * pages it allocates), so the file reaches at least this far; if it
     * did not, reading the mapping there would fault (SIGBUS). */
    if ((rc = mdb_env_get_fd(s->env, &fd)) != 0) {
        translate(rc, e, "env_get_fd");
        goto err;
    }
    if (fstat(fd, &fst) != 0) {
        werr_set(e, WERR_IO, "fstat: %s", strerror(errno));
        goto err;
    }
    file_len = (size_t)fst.st_size;
    if (file_len < img->map_len) {
        werr_set(e, WERR_CORRUPT, "data file is %zu bytes, its last page ends at %zu",
                 file_len, img->map_len);
        goto err;
    }
    /* Our own mapping of the file rather than LMDB's (which the API does
     * not expose): MAP_SHARED on the same file shares the page cache, so
     * it shows every commit's pwrite exactly as LMDB's map does. Mapping
     * costs no I/O; pages fault in when the reader touches them. */
    img->map = mmap(NULL, img->map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (img->map == MAP_FAILED) {
        img->map = NULL;
        werr_set(e, errno == ENOMEM ? WERR_NOMEM : WERR_IO, "mmap of %zu bytes: %s",
                 img->map_len, strerror(errno));
        goto err;
    }
    memcpy(img->meta, img->map, meta_len);
    mdb_txn_abort(w);
    w = NULL;
    img->part[1].base = (const uint8_t *)img->map + meta_len;
    img->part[1].len = img->map_len - meta_len;
    img->part[0].base = img->meta;
    img->part[0].len = meta_len;
    img->txnid = (uint64_t)mdb_txn_id(r);
    img->txn = r;
    img->s = s;
    img->next = s->images;
    if (s->images != NULL)
        s->images->prev = img;
    s->images = img;
    *out = img;
    return 0;

err:
    if (r != NULL)
        mdb_txn_abort(r);
    if (w != NULL)
        mdb_txn_abort(w);
    if (img != NULL && img->map != NULL)
        munmap(img->map, img->map_len);
    free(img);
    return werr_wrap(e, "store_image_pin");
}

uint64_t store_used_bytes(struct store *s)
{
    MDB_envinfo info;
    MDB_stat st;

    if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0)
        return 0;
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

const struct store_image_part *store_image_parts(const struct store_image *img,
                                                 unsigned *n)
{
    *n = STORE_IMAGE_PARTS;
    return img->part;
}

size_t store_image_len(const struct store_image *img)
{
    return img->part[0].len + img->part[1].len;
}

uint64_t store_image_txnid(const struct store_image *img)
{
    return img->txnid;
}

/* End img's read txn and unlink it; img itself stays allocated. */
static void image_unpin(struct store_image *img)
{
    if (img->txn == NULL)
        return;
    mdb_txn_abort(img->txn);
    img->txn = NULL;
    if (img->prev != NULL)
        img->prev->next = img->next;
    else
        img->s->images = img->next;
    if (img->next != NULL)
        img->next->prev = img->prev;
    img->prev = img->next = NULL;
}

void store_image_release(struct store_image *img)
{
    if (img == NULL)
        return;
    image_unpin(img);
    munmap(img->map, img->map_len);
    free(img);
}

int store_txn_failed(const struct store_txn *t)
{
    return t->poisoned;
}

const char *store_path(const struct store *s)
{
    return s->path;
}

uint64_t store_commits(const struct store *s)
{
    return s->commits;
}

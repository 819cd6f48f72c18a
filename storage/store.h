/* store.h - warden's LMDB wrapper. The only module that sees MDB_* codes;
 * they are translated to WERR_* at this boundary.
 *
 * Durability (docs/storage.md): the environment is opened without MDB_NOSYNC
 * and, by default, without MDB_NOMETASYNC, so a returned store_txn_commit()
 * means the data and the meta page are on disk (fsync). STORE_LAZY_META
 * (the replicated state machine, whose durability point is the Raft log)
 * sets MDB_NOMETASYNC: a commit fsyncs its data pages, and its meta page
 * reaches disk with the next commit's fsync, so a system crash can undo the
 * last commit but never corrupt the env. MDB_NOTLS is set because libuv
 * threads and the raft thread may share read transactions across threads.
 * Only one write transaction exists at a time (LMDB's writer lock).
 *
 * Lifetimes: every struct store_val returned by a get or cursor call points
 * into the LMDB map and is valid only until the next update operation in the
 * same transaction, or the end of the transaction (lmdb.h contract). */
#ifndef WARDEN_STORAGE_STORE_H
#define WARDEN_STORAGE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

/* Default map size. LMDB reserves address space, not disk; 1 GiB covers a
 * large fleet (1M devices x ~600 bytes) with headroom. Configurable. */
#define STORE_MAP_SIZE_DEFAULT ((size_t)1 << 30)
/* Upper bound on named databases: LMDB scans them linearly on open. */
#define STORE_MAX_DBS 32
/* LMDB's compiled-in max key size is 511 bytes. */
#define STORE_KEY_MAX 511

struct store;
struct store_txn;
struct store_cursor;

/* store_config.flags */
#define STORE_LAZY_META 1u /* MDB_NOMETASYNC: see the note at the top */

struct store_config {
    const char *path;   /* directory; created if missing. Borrowed. */
    size_t map_size;    /* 0 = STORE_MAP_SIZE_DEFAULT */
    unsigned max_readers; /* 0 = LMDB default (126) */
    unsigned flags;     /* STORE_LAZY_META or 0 */
};

struct store_val {
    const void *data;
    size_t len;
};

/* Open (creating if needed) the environment at cfg->path.
 * On success *out is owned by the caller until store_close(). */
int store_open(struct store **out, const struct store_config *cfg,
               struct werr *e);
void store_close(struct store *s);

/* Open or create named database `name` (at most STORE_MAX_DBS). Call at
 * start-up before concurrent use. The handle is valid until store_close(). */
int store_dbi(struct store *s, const char *name, unsigned *dbi,
              struct werr *e);

/* Begin a transaction. write != 0 for a read-write transaction. The txn is
 * owned by the caller and must end with commit or abort. After any failed
 * operation inside a write txn, only store_txn_abort() is allowed. */
int store_txn_begin(struct store *s, int write, struct store_txn **out,
                    struct werr *e);
/* Commit and free t (even on failure). Durable on return (see above; with
 * STORE_LAZY_META, durable once the next commit or store_close returns). */
int store_txn_commit(struct store_txn *t, struct werr *e);
/* Abort and free t. t may be NULL. */
void store_txn_abort(struct store_txn *t);

/* WERR_NOTFOUND when key is absent. */
int store_get(struct store_txn *t, unsigned dbi, const void *key, size_t klen,
              struct store_val *out, struct werr *e);

#define STORE_NOOVERWRITE 1u /* fail with WERR_EXISTS if key exists */
int store_put(struct store_txn *t, unsigned dbi, const void *key, size_t klen,
              const void *val, size_t vlen, unsigned flags, struct werr *e);
/* WERR_NOTFOUND when key is absent. */
int store_del(struct store_txn *t, unsigned dbi, const void *key, size_t klen,
              struct werr *e);

/* Cursors. Closed by store_cursor_close() before the txn ends. */
int store_cursor_open(struct store_txn *t, unsigned dbi,
                      struct store_cursor **out, struct werr *e);
/* Position at the first key >= key (klen 0: the first key).
 * WERR_NOTFOUND when there is none. */
int store_cursor_seek(struct store_cursor *c, const void *key, size_t klen,
                      struct store_val *k, struct store_val *v,
                      struct werr *e);
/* Move to the next key. WERR_NOTFOUND at the end. */
int store_cursor_next(struct store_cursor *c, struct store_val *k,
                      struct store_val *v, struct werr *e);
void store_cursor_close(struct store_cursor *c);

/* Number of entries in dbi. */
int store_count(struct store_txn *t, unsigned dbi, uint64_t *out,
                struct werr *e);

/* Write a consistent, compacted copy of the whole environment into the
 * (existing, empty) directory dst_dir. Runs in its own read txn, so writers
 * are not blocked. Used for snapshots. */
int store_copy(struct store *s, const char *dst_dir, struct werr *e);
/* A point-in-time image of the env's data file that copies nothing but
 * the two meta pages: the other pages are the live map, kept from being
 * reused by a read txn the image holds until store_image_release. Used for
 * snapshots: pinning is O(1) on the caller's thread (a writer-lock round
 * trip and a 2-page memcpy), and whoever reads the parts (raft_uv's writer
 * thread) pays for the bytes. Concatenated, the parts are a valid data.mdb
 * (the layout of mdb_env_copy without MDB_CP_COMPACT: free pages included).
 *
 * Lifetime: the parts stay valid and unchanged until store_image_release,
 * which must come before store_close (store_close releases any image left
 * pinned, after which its parts must not be read). Reading the parts from
 * another thread is safe: committed pages the image references are never
 * rewritten while it is pinned; writers only reuse pages that were already
 * free when it was taken, which the image's own free list marks unused.
 * WERR_LIMIT if the image would exceed max bytes. */
#define STORE_IMAGE_PARTS 2u
struct store_image_part {
    const uint8_t *base;
    size_t len;
};
struct store_image;
int store_image_pin(struct store *s, size_t max, struct store_image **out,
                    struct werr *e);
/* The parts, in file order; *n = STORE_IMAGE_PARTS. Owned by img. */
const struct store_image_part *store_image_parts(const struct store_image *img,
                                                 unsigned *n);
/* The image's total length in bytes and the LMDB txn id it shows. */
size_t store_image_len(const struct store_image *img);
uint64_t store_image_txnid(const struct store_image *img);
void store_image_release(struct store_image *img);
/* Bytes of the data file in use (up to the last page of the last commit):
 * what an image taken now would hold. 0 if LMDB cannot tell. */
uint64_t store_used_bytes(struct store *s);

/* ---- additions (compatible with the contract above) -------------------
 * Poisoning, precisely: WERR_NOTFOUND (get/del/seek/next) and WERR_EXISTS
 * (put with STORE_NOOVERWRITE) are answers and leave the txn usable. Any
 * other failure poisons it: later calls fail with WERR_ABORTED and
 * store_txn_commit() aborts and returns WERR_ABORTED.
 * Cursors left open when the txn ends: store_txn_abort() closes them;
 * store_txn_commit() closes them too but aborts and returns WERR_INTERNAL
 * (a forgotten cursor is a bug, and we do not commit on top of a bug). */

/* Look up a database already opened with store_dbi(), without starting a
 * txn: safe to call while a write txn is open (store_dbi() on an unopened
 * name would wait for LMDB's writer lock held by that txn). Returns 0 or
 * WERR_NOTFOUND. */
int store_dbi_find(const struct store *s, const char *name, unsigned *dbi);
/* The code that poisoned t, or 0 if t is still usable. */
int store_txn_failed(const struct store_txn *t);
/* The directory the store was opened on; valid until store_close(). */
const char *store_path(const struct store *s);

/* ---- nested write transactions ----------------------------------------
 * LMDB nests write txns (mdb_txn_begin with a parent, lmdb.h). The state
 * machine applies many Raft entries in one durable txn (a batch) and runs
 * each entry in a child, so a failing command drops only its own writes
 * (docs/storage.md, "Nested transactions").
 *
 * Begin a child of `parent`, which must be a write txn that is not
 * poisoned, has no child open (LMDB allows one at a time) and has no open
 * cursors (LMDB would shadow them into the child; we keep the rule simple).
 * Any of those is WERR_INVALID and leaves the parent as it was.
 * While the child is open the parent is blocked: any call on the parent
 * (or on a cursor of it) fails with WERR_INTERNAL and poisons the parent.
 * The child sees the parent's uncommitted writes.
 *   - store_txn_commit(child): merges the child's writes into the parent.
 *     No disk I/O and no sync: they become durable only when the top-level
 *     txn commits, and vanish if it is aborted. A poisoned child is aborted
 *     (WERR_ABORTED) and the parent is unaffected. If LMDB's merge itself
 *     fails (out of memory), the child is gone and the parent is poisoned:
 *     we cannot tell how much of the child reached it.
 *   - store_txn_abort(child): drops the child's writes; the parent goes on
 *     exactly as before the child began.
 *   - ending the parent while a child is open: abort aborts and frees the
 *     child too (its handle becomes invalid); commit aborts both and
 *     returns WERR_INTERNAL (committing over an open child is a bug).
 * The child handle is owned by the caller like any txn. Children nest
 * (a child can have a child), with the same rules at each level. */
int store_txn_begin_child(struct store_txn *parent, struct store_txn **out,
                          struct werr *e);

/* Durable commits made on s since store_open(): top-level write txns
 * committed successfully, including store_dbi()'s. Child commits and read
 * txns are not counted. Each is one LMDB commit (two fsyncs, see above),
 * so tests and metrics use it to count syncs. Plain counter: read it on
 * the thread that writes (the loop thread in wardend). */
uint64_t store_commits(const struct store *s);

#endif

/* admin_offline.h - wardend's offline subcommands (issue 9, docs/ops/):
 *
 *   wardend recover --data-dir DIR --node-id N --peers ID=PEER[/CLIENT],...
 *       node stopped: force the raft configuration to exactly --peers
 *       (raft_recover). docs/ops/quorum-loss.md.
 *   wardend backup --data-dir DIR --out BACKUPDIR
 *       node running or not: a consistent LMDB copy (one read txn) plus
 *       BACKUPDIR/MANIFEST.json with the applied index and the audit
 *       ledger head read from the copy. docs/ops/backup-restore.md.
 *   wardend restore --backup BACKUPDIR --data-dir NEWDIR --node-id N
 *           --peers ID=PEER[/CLIENT],...
 *       a fresh data dir whose LMDB is the backup and whose raft log starts
 *       with a snapshot at the backup's applied index (recover.h).
 *
 * Exit codes: 0 done, 2 usage or a precondition the operator must fix (a
 * running node, a non-empty target, a backup that does not match its
 * manifest), 1 other failures. */
#ifndef WARDEN_SERVER_ADMIN_OFFLINE_H
#define WARDEN_SERVER_ADMIN_OFFLINE_H

/* 1 if name is one of the subcommands above. */
int admin_offline_is_cmd(const char *name);

/* Run subcommand argv[0] (argv[0] is the subcommand name, as getopt wants
 * it). Returns the process exit code. */
int admin_offline_main(int argc, char **argv);

#endif

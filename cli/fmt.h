/* fmt.h - wardenctl's output: aligned tables for people, one JSON document
 * for scripts. Pure: everything writes to a caller-supplied FILE (stdout in
 * the tool, an open_memstream buffer in tests/unit/test_cli_fmt.c).
 *
 * Tables: columns are separated by two spaces, padded to the widest cell, the
 * last column is not padded (no trailing blanks); empty values print "-".
 * Control bytes in server-supplied strings print as '?' so a device label
 * cannot drive the terminal.
 *
 * JSON (docs/cli.md): proto field names (snake_case), enums by their full
 * proto name ("DEVICE_STATE_ACTIVE"), bytes as lowercase hex, uint64 as
 * numbers, labels as [{"key":..,"value":..}]. Strings are escaped per
 * RFC 8259; invalid UTF-8 becomes U+FFFD so the output always parses. */
#ifndef WARDEN_CLI_FMT_H
#define WARDEN_CLI_FMT_H

#include <stddef.h>
#include <stdio.h>

#include "warden/v1/audit.pb-c.h"
#include "warden/v1/cluster.pb-c.h"
#include "warden/v1/inventory.pb-c.h"

/* Rows in one table; device list --all stays below this (see cmd.h). */
#define CLI_TABLE_ROWS_MAX 200000u
/* Longest cell printed in a table; longer ones end in "...". Keeps one
 * oversized label from pushing every column off the screen. */
#define CLI_CELL_MAX 64u

/* Is s (len bytes) valid UTF-8 (RFC 3629)? cli_json_string() writes such a
 * string losslessly; anything else would have bytes replaced by U+FFFD. */
int cli_utf8_valid(const char *s, size_t len);

/* Write s (len bytes) as a JSON string literal, quotes included. */
void cli_json_string(FILE *f, const char *s, size_t len);

/* "wardenctl: NOT_FOUND: message\n" (message may be empty). */
void cli_fmt_error(FILE *f, int grpc_status, const char *msg);

/* grpc.health.v1 serving status: "SERVING\n" or {"status":"SERVING"}. */
void cli_fmt_health(FILE *f, int serving_status, int json);

/* One device: "field  value" lines, or a JSON object. */
void cli_fmt_device(FILE *f, const Warden__V1__Device *d, int json);

/* A device list: a table (DEVICE_ID STATE KEY_ALG GATEWAY FIRMWARE MODEL
 * LABELS) followed, when next_token is non-empty, by a line telling how to
 * get the next page; or {"devices":[...],"next_page_token":"..."}. */
void cli_fmt_devices(FILE *f, Warden__V1__Device *const *devs, size_t n,
                     const char *next_token, int json);

/* Cluster.Status: "field  value" lines (the node's view), a blank line,
 * then the member table (ID ROLE PEER CLIENT MATCH_INDEX, sorted as the
 * server sent them; MATCH_INDEX is "-" without progress, i.e. not on the
 * leader). JSON: the proto fields by name, members as objects, roles by
 * their full enum name, wall_offset_ms as a signed number. */
void cli_fmt_cluster_status(FILE *f, const Warden__V1__ClusterStatusResponse *s,
                            int json);

/* The membership after AddMember/RemoveMember: the member table, or
 * {"members":[...]}. */
void cli_fmt_members(FILE *f, Warden__V1__Member *const *m, size_t n, int json);

/* TransferLeadership's answer: "leader_id  N" or {"leader_id":N}. */
void cli_fmt_transfer(FILE *f, uint32_t leader_id, int json);

/* One audit entry on one line: "seq N  raft_index I  ...  hash H" for
 * people; for JSON the export file's entry object (cli/auditfile.h) and a
 * newline. */
void cli_fmt_audit_entry(FILE *f, const Warden__V1__AuditEntry *en, int json);

/* Enum names for display: short ("ACTIVE") and full ("DEVICE_STATE_ACTIVE").
 * Unknown values give "UNKNOWN(<n>)" from a static buffer (short only). */
const char *cli_state_name(int state, int full);
const char *cli_key_alg_name(int alg, int full);
const char *cli_member_role_name(int role, int full);

/* ---- internal to cli/fmt*.c ------------------------------------------------ */
/* Copy s into buf for display: control bytes become '?', at most max_chars
 * characters are kept (then "..."), "" becomes "-". buf holds
 * 4*max_chars + 4 bytes. Returns the display width in characters. */
size_t cli__display(const char *s, char *buf, size_t max_chars);
/* Name of enum value v: full ("ACCESS_PURPOSE_INCIDENT") or without prefix
 * ("INCIDENT"); "UNKNOWN(<n>)" from a static buffer when unknown. */
const char *cli__enum_name(const ProtobufCEnumDescriptor *d, const char *prefix,
                           int v, int full);

#endif

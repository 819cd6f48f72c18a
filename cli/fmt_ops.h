/* fmt_ops.h - output of the access (issue 5) and rollout (issue 6)
 * commands: "field  value" lines and aligned tables for people, one JSON
 * document for scripts. Same conventions as cli/fmt.h: pure (writes to a
 * caller's FILE), control bytes in server text print as '?', empty values
 * as "-", tables two spaces apart without trailing blanks.
 *
 * JSON is generic: cli_json_message() prints any protobuf-c message with
 * its proto field names, every field present (proto3 has no presence),
 * enums by their full proto name, bytes as lowercase hex, 64-bit integers
 * as exact JSON numbers, repeated fields as arrays, nested messages as
 * objects (null when unset). So `--json` of every new command is exactly
 * its response message. Exact output: tests/unit/test_cli_fmt_access.c and
 * tests/unit/test_cli_fmt_rollout.c. */
#ifndef WARDEN_CLI_FMT_OPS_H
#define WARDEN_CLI_FMT_OPS_H

#include <stddef.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "warden/v1/access.pb-c.h"
#include "warden/v1/rollout.pb-c.h"

/* Nesting followed by cli_json_message (the deepest response,
 * GetRolloutResponse.rollout.selector.labels, is 4). Deeper messages print
 * as null: a bound, not a recursion without end. */
#define CLI_JSON_MSG_DEPTH_MAX 8
/* Rows in an access/rollout table (a ListGrants page holds at most 1000). */
#define CLI_OPS_ROWS_MAX 1000u
/* Longest explanation cell in the gate table (the state machine's `why`
 * is at most 160 bytes). */
#define CLI_EXPLAIN_MAX 160u

/* m as one JSON object (no newline). */
void cli_json_message(FILE *f, const ProtobufCMessage *m);

/* ---- access ------------------------------------------------------------- */

/* The policy: a table PURPOSE APPROVALS REVIEWERS MAX_DURATION MAX_USES
 * PENDING_TTL, then lock_view_max_lag, revlog_retention, updated_*. */
void cli_fmt_access_policy(FILE *f, const Warden__V1__AccessPolicy *p, int json);

/* A request (RequestAccess, Approve/Deny): field lines, one "vote" line per
 * vote; grant (may be NULL) is printed after it when a vote granted it.
 * JSON: {"request":{..},"grant":{..}|null}. */
void cli_fmt_access_request(FILE *f, const Warden__V1__AccessRequest *r,
                            const Warden__V1__AccessGrant *grant, int json);

/* CheckAccess: a first line "ALLOW" or "DENY <REASON>", then the fields
 * that matter for that decision. */
void cli_fmt_access_check(FILE *f, const Warden__V1__CheckAccessResponse *c,
                          int json);

/* One grant as field lines. */
void cli_fmt_access_grant(FILE *f, const Warden__V1__AccessGrant *g, int json);

/* A ListGrants page (or several, --all): a table GRANT_ID STATE PRINCIPAL
 * PURPOSE DEVICES USES_LEFT EXPIRES_MS, then "(more: --page-token T, or
 * --all)" when next_token is non-empty. JSON:
 * {"grants":[..],"next_page_token":".."}. */
void cli_fmt_access_grants(FILE *f, Warden__V1__AccessGrant *const *g, size_t n,
                           const char *next_token, int json);

/* One lock as field lines. */
void cli_fmt_access_lock(FILE *f, const Warden__V1__AccessLock *l, int json);

/* One WatchRevocations message: a line per event, or "progress  revision N"
 * when it carries none. JSON: the message on one line (JSON Lines). */
void cli_fmt_revocations(FILE *f, const Warden__V1__WatchRevocationsResponse *w,
                         int json);

/* ---- rollouts ------------------------------------------------------------ */

void cli_fmt_release_key(FILE *f, const Warden__V1__ReleaseKey *k, int json);
void cli_fmt_release(FILE *f, const Warden__V1__Release *r, int json);

/* A rollout: header lines, then the stage table (STAGE NAME SHARE STATUS
 * PROGRESS and the counts by phase). With gates (GetRollout), also the
 * gate table: per evaluated stage, each threshold as pass/FAIL with the
 * numbers, whether it may advance, and the state machine's explanation.
 * release may be NULL. JSON: a GetRolloutResponse-shaped object. */
void cli_fmt_rollout_status(FILE *f, const Warden__V1__GetRolloutResponse *s,
                            int json);
/* After Create/Start/Pause/Resume/Advance/Abort: the rollout as above
 * (without gates), plus the rollback release and rollout ids when set. */
void cli_fmt_rollout_resp(FILE *f, const Warden__V1__RolloutResponse *r, int json);

void cli_fmt_desired(FILE *f, const Warden__V1__GetDesiredStateResponse *d,
                     int json);
void cli_fmt_report(FILE *f, const Warden__V1__ReportUpdateStatusResponse *r,
                    int json);

#endif

/* cmd_int.h - internal to cli/cmd*.c: the call loop (leader following,
 * retries; cli/follow.h) shared by every command file. */
#ifndef WARDEN_CLI_CMD_INT_H
#define WARDEN_CLI_CMD_INT_H

#include <signal.h>
#include <stdio.h>

#include "args.h"
#include "cmd.h"
#include "client.h"
#include "follow.h"

/* A server-streaming attempt instead of a unary one (audit tail, access
 * watch). */
struct cli__stream_spec {
    cli_resp_msg_cb cb;
    void *user;
    uint64_t timeout_ms;          /* 0: none */
    volatile sig_atomic_t *stop;
    const uint64_t *n_received;   /* messages cb has seen so far: a stream
                                   * that delivered some is not restarted */
};

/* Print "wardenctl: STATUS: msg" on err; returns code. */
int cli__report(FILE *err, int code, const char *msg);

/* One call with leader following and failover. ss NULL: unary (on OK *resp
 * is the reply, free it with protobuf_c_message_free_unpacked); else a
 * server stream. Returns the gRPC status, the error already printed. */
int cli__call(const struct cli_args *a, struct cli_client *c,
              enum cli_retry_class cls, const char *path,
              const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
              ProtobufCMessage **resp, const struct cli__stream_spec *ss,
              FILE *err);

/* The pages of a List call, kept alive until printed (a table aligns
 * across all of them). Bounded by CLI_LIST_MAX_PAGES times the response
 * size limit. */
struct cli__pages {
    ProtobufCMessage *page[CLI_LIST_MAX_PAGES];
    size_t n_pages;
    void **items;           /* NULL: nothing to print; else every page's
                             * repeated items, borrowed from the pages */
    size_t n_items;
    const char *next_token; /* the last page's next_page_token */
    int limited;            /* --all stopped at CLI_LIST_MAX_PAGES */
};

/* Fetch one page of a List call, or with --all (a->all) follow
 * next_page_token until the last page or CLI_LIST_MAX_PAGES. req's page
 * token field is *req_token (set here; starts at --page-token); desc is the
 * response type and items_field the name of its repeated field. Returns 0,
 * a failed call's gRPC status (printed), or RESOURCE_EXHAUSTED (not yet
 * printed) with p->limited set: print p->items first, then report. p->items
 * is set when there is something to print (rc 0, or limited). Free p with
 * cli__pages_free() whatever this returns. */
int cli__list_pages(const struct cli_args *a, struct cli_client *c,
                    const char *path, const ProtobufCMessage *req,
                    char **req_token, const ProtobufCMessageDescriptor *desc,
                    const char *items_field, struct cli__pages *p, FILE *err);
void cli__pages_free(struct cli__pages *p);

/* Retry class of a mutation: keyed (retryable after an ambiguous failure)
 * when --idempotency-key is given, else unkeyed. */
enum cli_retry_class cli__mut_class(const struct cli_args *a);
/* --idempotency-key or "" (protobuf-c wants a non-NULL string). */
char *cli__idem(const struct cli_args *a);

/* The command families in their own files. Return the gRPC status. */
int cli__cmd_access(const struct cli_args *a, struct cli_client *c, FILE *out,
                    FILE *err);
int cli__cmd_rollout(const struct cli_args *a, struct cli_client *c, FILE *out,
                     FILE *err);
/* `rollout release manifest` (offline): the canonical bytes on out. Returns
 * the exit code (0, or CLI_EXIT_USAGE). */
int cli__cmd_manifest(const struct cli_args *a, FILE *out, FILE *err);
/* `certs init-ca | issue` (offline, cli/cmd_certs.c): returns the exit code
 * (0, CLI_EXIT_USAGE, 73 when an output exists, 1). */
int cli__cmd_certs(const struct cli_args *a, FILE *out, FILE *err);
/* `top` (cli/cmd_top.c): returns the gRPC status deciding the exit code (0
 * when the last frame had at least one node answering, else UNAVAILABLE). */
int cli__cmd_top(const struct cli_args *a, FILE *out, FILE *err);

#endif

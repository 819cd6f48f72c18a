/* Tests for cli/follow.c: the leader-follow / retry decision, one rule at a
 * time, then a whole redirect chain driven through the function. */
#include <string.h>

#include "cli/follow.h"
#include "grpc/grpc.h"
#include "unit.h"

static const char eps3[3][CLI_ENDPOINT_LEN_MAX + 1] = {
    "127.0.0.11:7443", "127.0.0.12:7443", "127.0.0.13:7443"};
static const char eps1[1][CLI_ENDPOINT_LEN_MAX + 1] = {"127.0.0.12:7443"};

static struct cli_follow_out d;

/* An attempt against eps3[1] (a follower) with the given outcome. */
static struct cli_follow_in attempt(int code, enum cli_delivery del,
                                    const char *leader, enum cli_retry_class cls)
{
    struct cli_follow_in in = {
        .code = code,
        .delivery = del,
        .leader = leader,
        .endpoint = eps3[1],
        .cls = cls,
        .hops = 0,
        .endpoints = eps3,
        .n_endpoints = 3,
    };
    return in;
}

TEST(ok_and_final_statuses_stop)
{
    struct cli_follow_in in = attempt(GRPC_STATUS_OK, CLI_DELIVERY_ANSWERED, "",
                                      CLI_RETRY_READ);
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
    CHECK_EQ_STR(d.why, "done");

    /* Even with a leader hint, NOT_FOUND/PERMISSION_DENIED/... are answers. */
    static const int final[] = {GRPC_STATUS_NOT_FOUND, GRPC_STATUS_ALREADY_EXISTS,
                                GRPC_STATUS_PERMISSION_DENIED,
                                GRPC_STATUS_INVALID_ARGUMENT,
                                GRPC_STATUS_RESOURCE_EXHAUSTED,
                                GRPC_STATUS_INTERNAL, GRPC_STATUS_CANCELLED};
    for (size_t i = 0; i < sizeof final / sizeof final[0]; i++) {
        in = attempt(final[i], CLI_DELIVERY_ANSWERED, "127.0.0.11:7443",
                     CLI_RETRY_READ);
        cli_follow_decide(&in, &d);
        CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
        CHECK_EQ_STR(d.why, "the server's answer is final");
    }
}

TEST(not_leader_hint_followed_for_every_class)
{
    static const enum cli_retry_class classes[] = {
        CLI_RETRY_READ, CLI_RETRY_KEYED, CLI_RETRY_UNKEYED};
    for (size_t i = 0; i < 3; i++) {
        struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                          CLI_DELIVERY_ANSWERED,
                                          "127.0.0.11:7443", classes[i]);
        cli_follow_decide(&in, &d);
        CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
        CHECK_EQ_STR(d.endpoint, "127.0.0.11:7443");
        CHECK_EQ_INT(d.delay_ms, 0);
        CHECK_EQ_STR(d.why, "not the leader; following the leader hint");
    }
    /* A leader outside the configured list is followed too. */
    struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                      CLI_DELIVERY_ANSWERED, "10.1.2.3:9000",
                                      CLI_RETRY_UNKEYED);
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, "10.1.2.3:9000");
}

TEST(bad_hints_stop)
{
    static const char *const bad[] = {"leader", "127.0.0.11", "127.0.0.11:",
                                      "127.0.0.11:0", "127.0.0.11:65536",
                                      ":7443", "127.0.0.11:74x3",
                                      "evil\x1b[2J:7443", "a b:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                          CLI_DELIVERY_ANSWERED, bad[i],
                                          CLI_RETRY_READ);
        cli_follow_decide(&in, &d);
        CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
        CHECK_EQ_STR(d.why, "the leader hint is not HOST:PORT");
    }
    /* The node that answered names itself: following would loop. */
    struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                      CLI_DELIVERY_ANSWERED, eps3[1],
                                      CLI_RETRY_READ);
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
    CHECK_EQ_STR(d.why, "the node names itself as the leader");
}

TEST(budgets)
{
    struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                      CLI_DELIVERY_ANSWERED, "127.0.0.11:7443",
                                      CLI_RETRY_READ);
    in.hops = CLI_FOLLOW_HOPS_MAX - 1;
    in.waits = CLI_FOLLOW_WAITS_MAX; /* a redirect does not wait */
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_INT(d.hop, 1);
    in.hops = CLI_FOLLOW_HOPS_MAX;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
    CHECK_EQ_INT(d.exhausted, 1);
    CHECK_EQ_STR(d.why, "hop limit reached");

    /* Waiting at the same node is not a hop, but the waits run out. */
    in = attempt(GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_ANSWERED, "",
                 CLI_RETRY_READ);
    in.endpoints = eps1;
    in.n_endpoints = 1;
    in.hops = CLI_FOLLOW_HOPS_MAX;
    in.waits = CLI_FOLLOW_WAITS_MAX - 1;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_INT(d.hop, 0);
    CHECK_EQ_INT(d.delay_ms, CLI_FOLLOW_BACKOFF_MAX_MS);
    in.waits = CLI_FOLLOW_WAITS_MAX;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
    CHECK_EQ_INT(d.exhausted, 1);
    CHECK_EQ_STR(d.why, "wait limit reached");
}

/* The leader was kill -9'd: followers keep naming it until an election
 * timeout passes. Once it failed to connect, its name means "wait". */
TEST(stale_hint_waits_for_election)
{
    static const char dead[1][CLI_ENDPOINT_LEN_MAX + 1] = {"127.0.0.11:7443"};
    struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                      CLI_DELIVERY_ANSWERED, "127.0.0.11:7443",
                                      CLI_RETRY_UNKEYED);
    in.dead = dead;
    in.n_dead = 1;
    in.hops = 2;
    in.waits = 1;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, eps3[1]); /* the same, live, follower */
    CHECK_EQ_INT(d.hop, 0);
    CHECK_EQ_INT(d.delay_ms, 2 * CLI_FOLLOW_BACKOFF_BASE_MS);
    CHECK_EQ_STR(d.why, "the named leader is unreachable; waiting for an election");

    /* Ambiguous keyed retry: a dead hint is not used; the next live
     * endpoint is. */
    in = attempt(GRPC_STATUS_DEADLINE_EXCEEDED, CLI_DELIVERY_UNKNOWN,
                 "127.0.0.11:7443", CLI_RETRY_KEYED);
    in.dead = dead;
    in.n_dead = 1;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, eps3[2]);
}

TEST(unreachable_tries_next_endpoint_with_backoff)
{
    /* Following a hint to a dead leader: back to the list, from the start. */
    struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                      CLI_DELIVERY_NOT_SENT, "", CLI_RETRY_UNKEYED);
    in.endpoint = "10.9.9.9:7443";
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, eps3[0]);
    CHECK_EQ_INT(d.delay_ms, CLI_FOLLOW_BACKOFF_BASE_MS);
    CHECK_EQ_STR(d.why, "unreachable; trying the next endpoint");

    CHECK_EQ_INT(d.hop, 1);

    /* A list entry that went away: the next one, wrapping around, and
     * skipping entries already found dead in this call. */
    static const char dead[2][CLI_ENDPOINT_LEN_MAX + 1] = {"127.0.0.13:7443",
                                                           "127.0.0.11:7443"};
    in.endpoint = eps3[2];
    in.waits = 1;
    in.dead = dead;
    in.n_dead = 1;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, eps3[0]);
    CHECK_EQ_INT(d.delay_ms, 2 * CLI_FOLLOW_BACKOFF_BASE_MS);
    in.n_dead = 2;
    cli_follow_decide(&in, &d);
    CHECK_EQ_STR(d.endpoint, eps3[1]);
    /* Everything else dead (eps3[1] failing now is added by the caller). */
    static const char all[3][CLI_ENDPOINT_LEN_MAX + 1] = {
        "127.0.0.13:7443", "127.0.0.11:7443", "127.0.0.12:7443"};
    in.endpoint = eps3[1];
    in.dead = all;
    in.n_dead = 3;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
    CHECK_EQ_STR(d.why, "no other endpoint to try");

    /* REFUSED_STREAM / GOAWAY: not processed, safe even without a key. */
    in = attempt(GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_REFUSED, "",
                 CLI_RETRY_UNKEYED);
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, eps3[2]);
    CHECK_EQ_STR(d.why, "refused before processing; trying the next endpoint");

    /* The whole list failed to connect: nothing left to try. */
    in = attempt(GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_NOT_SENT, "",
                 CLI_RETRY_READ);
    in.endpoint = "";
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
    CHECK_EQ_STR(d.why, "no endpoint could be reached");

    /* One endpoint, and it is the one that failed. */
    in = attempt(GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_NOT_SENT, "",
                 CLI_RETRY_READ);
    in.endpoints = eps1;
    in.n_endpoints = 1;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
    CHECK_EQ_STR(d.why, "no other endpoint to try");
}

TEST(ambiguous_unkeyed_write_stops)
{
    /* Deadline passed, connection lost, or UNAVAILABLE without a hint: the
     * write may have been applied. */
    struct {
        int code;
        enum cli_delivery del;
    } cases[] = {
        {GRPC_STATUS_DEADLINE_EXCEEDED, CLI_DELIVERY_UNKNOWN},
        {GRPC_STATUS_DEADLINE_EXCEEDED, CLI_DELIVERY_ANSWERED},
        {GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_UNKNOWN},
        {GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_ANSWERED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cli_follow_in in = attempt(cases[i].code, cases[i].del, "",
                                          CLI_RETRY_UNKEYED);
        cli_follow_decide(&in, &d);
        CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
        CHECK_EQ_INT(d.unsafe, 1);
        CHECK_EQ_STR(d.why, "not retried: the write may have been applied and "
                            "has no idempotency key");
    }
    /* The server lost leadership with the command in flight and says so
     * (warden-outcome: unknown makes the delivery UNKNOWN): even with a
     * hint, an unkeyed write is not repeated. */
    struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                      CLI_DELIVERY_UNKNOWN, "127.0.0.11:7443",
                                      CLI_RETRY_UNKEYED);
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
    CHECK_EQ_INT(d.unsafe, 1);
}

TEST(ambiguous_keyed_write_and_read_retry)
{
    struct cli_follow_in in = attempt(GRPC_STATUS_DEADLINE_EXCEEDED,
                                      CLI_DELIVERY_UNKNOWN, "", CLI_RETRY_KEYED);
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, eps3[2]);
    CHECK_EQ_INT(d.delay_ms, CLI_FOLLOW_BACKOFF_BASE_MS);
    CHECK_EQ_STR(d.why, "outcome unknown; retrying with the same idempotency key");

    /* Lost leadership mid-proposal, new leader known: go there at once. */
    in = attempt(GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_UNKNOWN,
                 "127.0.0.13:7443", CLI_RETRY_KEYED);
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, "127.0.0.13:7443");
    CHECK_EQ_INT(d.delay_ms, 0);

    /* Election in progress (no hint), single endpoint: the same node again,
     * later. Backoff doubles and is capped. */
    in = attempt(GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_ANSWERED, "",
                 CLI_RETRY_READ);
    in.endpoints = eps1;
    in.n_endpoints = 1;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
    CHECK_EQ_STR(d.endpoint, eps1[0]);
    CHECK_EQ_STR(d.why, "outcome unknown; retrying the read");
    CHECK_EQ_INT(d.hop, 0);
    in.waits = 2;
    cli_follow_decide(&in, &d);
    CHECK_EQ_INT(d.delay_ms, CLI_FOLLOW_BACKOFF_MAX_MS);
    CHECK(4 * CLI_FOLLOW_BACKOFF_BASE_MS >= CLI_FOLLOW_BACKOFF_MAX_MS);
}

/* A scripted cluster: follower 2 redirects to 1, 1 lost leadership to 3,
 * 3 answers. Every attempt's target must be the previous decision's. */
TEST(redirect_chain)
{
    struct step {
        const char *at;
        int code;
        enum cli_delivery del;
        const char *leader;
    } script[] = {
        {"127.0.0.12:7443", GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_ANSWERED,
         "127.0.0.11:7443"},
        {"127.0.0.11:7443", GRPC_STATUS_UNAVAILABLE, CLI_DELIVERY_ANSWERED,
         "127.0.0.13:7443"},
        {"127.0.0.13:7443", GRPC_STATUS_OK, CLI_DELIVERY_ANSWERED, ""},
    };
    for (unsigned hops = 0; hops < 3; hops++) {
        struct cli_follow_in in = attempt(script[hops].code, script[hops].del,
                                          script[hops].leader,
                                          CLI_RETRY_UNKEYED);
        in.endpoint = script[hops].at;
        in.hops = hops;
        cli_follow_decide(&in, &d);
        if (hops < 2) {
            CHECK_EQ_INT(d.action, CLI_FOLLOW_RETRY);
            CHECK_EQ_STR(d.endpoint, script[hops + 1].at);
        } else {
            CHECK_EQ_INT(d.action, CLI_FOLLOW_STOP);
            CHECK_EQ_STR(d.why, "done");
        }
    }
    /* A ping-pong between two confused nodes ends at the hop limit. */
    unsigned hops = 0;
    const char *at = eps3[0];
    for (;; hops++) {
        const char *other = strcmp(at, eps3[0]) == 0 ? eps3[1] : eps3[0];
        struct cli_follow_in in = attempt(GRPC_STATUS_UNAVAILABLE,
                                          CLI_DELIVERY_ANSWERED, other,
                                          CLI_RETRY_READ);
        in.endpoint = at;
        in.hops = hops;
        cli_follow_decide(&in, &d);
        if (d.action == CLI_FOLLOW_STOP) {
            break;
        }
        at = other;
        CHECK(hops < 100);
    }
    CHECK_EQ_INT(hops, CLI_FOLLOW_HOPS_MAX);
    CHECK_EQ_INT(d.exhausted, 1);
}

int main(void)
{
    RUN(ok_and_final_statuses_stop);
    RUN(not_leader_hint_followed_for_every_class);
    RUN(bad_hints_stop);
    RUN(budgets);
    RUN(stale_hint_waits_for_election);
    RUN(unreachable_tries_next_endpoint_with_backoff);
    RUN(ambiguous_unkeyed_write_stops);
    RUN(ambiguous_keyed_write_and_read_retry);
    RUN(redirect_chain);
    return unit_done();
}

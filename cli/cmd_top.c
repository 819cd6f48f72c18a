/* cmd_top.c - `wardenctl top`: sample Cluster.Status on every endpoint (and
 * optionally its /metrics page), render a frame with cli/top.h, repeat.
 *
 * Each endpoint has its own client (its own connection, reused across
 * frames): Status is a report about the node asked, so there is no leader
 * following here. A node that does not answer is a row with its error, and
 * the next frame tries it again. Frames refresh in place (ANSI home +
 * clear) unless --once. Ctrl-C ends the loop after the current frame. */
#include "cmd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../grpc/grpc.h"
#include "top.h"
#include "warden/v1/cluster.pb-c.h"

/* Per-call bound when --timeout is not given: a frame must not wait the
 * default 10 s on one dead node. */
#define TOP_CALL_TIMEOUT_MS 2000u
/* Sleep granularity while waiting for the next frame (Ctrl-C latency). */
#define TOP_SLEEP_STEP_MS 50u

static volatile sig_atomic_t top_stop;

static void on_sigint(int sig)
{
    (void)sig;
    top_stop = 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000u),
                          .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !top_stop) {
    }
}

/* Read a whole file of at most cap bytes into a malloc'ed NUL-terminated
 * buffer. NULL on error (errno-style message in msg). */
static char *read_small_file(const char *path, size_t cap, size_t *len, char *msg,
                             size_t msg_cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(msg, msg_cap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(cap + 1);
    size_t n = buf != NULL ? fread(buf, 1, cap + 1, f) : 0;
    int bad = buf == NULL || ferror(f);
    fclose(f);
    if (bad || n > cap) {
        snprintf(msg, msg_cap, "%s: %s", path, bad ? "cannot read" : "too large");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* GET http://host:port/path with a deadline; the body (after the header)
 * into buf (cap bytes). Returns the body length, or -1. Plain HTTP/1.0: the
 * server closes after the response, so the body ends at EOF. */
static long http_get(const char *url, char *buf, size_t cap, uint64_t timeout_ms)
{
    char host[CLI_TOP_HOST_MAX + 1], port[8], path[CLI_TOP_PATH_MAX + 1];
    if (cli_top_url_parse(url, host, port, path) != 0) {
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return -1;
    }
    uint64_t deadline = now_ms() + timeout_ms;
    int flags = fcntl(fd, F_GETFL, 0);
    (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    char req[CLI_TOP_PATH_MAX + CLI_TOP_HOST_MAX + 96];
    int rl = snprintf(req, sizeof req,
                      "GET %s HTTP/1.0\r\nHost: %s:%s\r\nAccept: text/plain\r\n\r\n",
                      path, host, port);
    size_t sent = 0, got = 0;
    long body = -1;
    while (now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = sent < (size_t)rl ? POLLOUT : POLLIN};
        int wait = (int)(deadline - now_ms());
        if (poll(&p, 1, wait > 0 ? wait : 0) <= 0) {
            break;
        }
        if (sent < (size_t)rl) {
            ssize_t w = send(fd, req + sent, (size_t)rl - sent, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) {
                break;
            }
            sent += w > 0 ? (size_t)w : 0;
            continue;
        }
        if (got >= cap) {
            break; /* too large: CLI_TOP_METRICS_MAX */
        }
        ssize_t r = recv(fd, buf + got, cap - got, 0);
        if (r < 0 && errno == EAGAIN) {
            continue;
        }
        if (r <= 0) {
            if (r == 0) {
                body = (long)got;
            }
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (body < 0) {
        return -1;
    }
    /* "HTTP/1.x 200 ..." then headers up to the blank line. */
    if (got < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || memcmp(buf + 8, " 200", 4) != 0) {
        return -1;
    }
    for (size_t i = 0; i + 3 < got; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            memmove(buf, buf + i + 4, got - i - 4);
            return (long)(got - i - 4);
        }
    }
    return -1;
}

static void sample(struct cli_client *c, struct cli_top_row *r)
{
    Warden__V1__ClusterStatusRequest req = WARDEN__V1__CLUSTER_STATUS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    struct cli_status st;
    int rc = cli_client_call(c, "/warden.v1.Cluster/Status", &req.base,
                             &warden__v1__cluster_status_response__descriptor, &m, &st);
    r->at_ms = now_ms();
    if (rc != 0) {
        r->ok = 0;
        /* Bounded on purpose: the row is one terminal line. */
        snprintf(r->error, sizeof r->error, "%.24s: %.96s", grpc_status_name(st.code),
                 st.msg);
        return;
    }
    const Warden__V1__ClusterStatusResponse *s = (const void *)m;
    r->ok = 1;
    r->id = s->id;
    snprintf(r->state, sizeof r->state, "%s", s->state ? s->state : "");
    r->term = s->term;
    r->leader_id = s->leader_id;
    r->commit = s->commit_index;
    r->applied = s->applied_index;
    r->offset_known = s->wall_offset_known;
    r->offset_ms = s->wall_offset_ms;
    r->proposals = s->proposals;
    r->flushes = s->flushes;
    protobuf_c_message_free_unpacked(m, NULL);
}

int cli__cmd_top(const struct cli_args *a, FILE *out, FILE *err)
{
    static char eps[CLI_ENDPOINTS_MAX][CLI_ENDPOINT_LEN_MAX + 1];
    static char murls[CLI_ENDPOINTS_MAX][CLI_TOP_PATH_MAX + 1];
    static struct cli_top_row rows[2][CLI_ENDPOINTS_MAX];
    struct cli_client *clients[CLI_ENDPOINTS_MAX] = {0};
    size_t n = 0, n_metrics = 0;
    char msg[CLI_PATH_MAX + 128];
    int rc = 0;

    if (a->cluster_json != NULL) {
        size_t len = 0;
        struct werr e;
        char *text = read_small_file(a->cluster_json, CLI_TOP_CLUSTER_JSON_MAX, &len, msg,
                                     sizeof msg);
        if (text == NULL) {
            return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT, msg);
        }
        rc = cli_top_cluster_json(text, len, eps, CLI_ENDPOINTS_MAX, &n, &e);
        free(text);
        if (rc != 0) {
            return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
        }
    } else {
        for (; n < a->n_endpoints; n++) {
            memcpy(eps[n], a->endpoints[n], sizeof eps[n]);
        }
    }
    if (a->metrics != NULL) {
        if (cli_top_url_list(a->metrics, murls, CLI_ENDPOINTS_MAX, &n_metrics) != 0) {
            return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT,
                               "--metrics: want http://HOST:PORT[/PATH], one per "
                               "endpoint, comma-separated");
        }
        if (n_metrics != n) {
            snprintf(msg, sizeof msg, "--metrics: %zu URL(s) for %zu endpoint(s)",
                     n_metrics, n);
            return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT, msg);
        }
    }
    uint64_t call_ms = a->timeout_given ? a->timeout_ms : TOP_CALL_TIMEOUT_MS;
    for (size_t i = 0; i < n; i++) {
        struct cli_client_config cfg = {
            .endpoints = &eps[i],
            .n_endpoints = 1,
            .ca = a->ca,
            .cert = a->cert,
            .key = a->key,
            .timeout_ms = call_ms,
        };
        struct cli_status st;
        if (cli_client_new(&clients[i], &cfg, &st) != 0) {
            rc = cli__report(err, st.code, st.msg);
            goto out_free;
        }
    }
    char *mbuf = n_metrics > 0 ? malloc(CLI_TOP_METRICS_MAX + 1) : NULL;
    if (n_metrics > 0 && mbuf == NULL) {
        rc = cli__report(err, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out_free;
    }
    struct sigaction sa = {.sa_handler = on_sigint}, old_int;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    top_stop = 0;

    unsigned seq = 0;
    size_t cur = 0;
    for (;;) {
        uint64_t start = now_ms();
        struct cli_top_row *r = rows[cur];
        memset(r, 0, sizeof rows[cur]);
        for (size_t i = 0; i < n; i++) {
            snprintf(r[i].endpoint, sizeof r[i].endpoint, "%s", eps[i]);
            sample(clients[i], &r[i]);
            if (n_metrics > 0) {
                long bl = http_get(murls[i], mbuf, CLI_TOP_METRICS_MAX, call_ms);
                if (bl >= 0) {
                    r[i].has_denials = cli_top_metrics_denials(mbuf, (size_t)bl,
                                                               &r[i].denials);
                }
            }
        }
        seq++;
        if (!a->once) {
            fputs(CLI_TOP_CLEAR, out);
        }
        cli_top_render(out, r, seq > 1 ? rows[cur ^ 1u] : NULL, n, seq, a->interval_ms);
        fflush(out);
        size_t up = 0;
        for (size_t i = 0; i < n; i++) {
            up += r[i].ok ? 1u : 0u;
        }
        rc = up > 0 ? 0 : GRPC_STATUS_UNAVAILABLE;
        if ((a->iterations != 0 && seq >= a->iterations) || top_stop) {
            break;
        }
        cur ^= 1u;
        uint64_t spent = now_ms() - start;
        for (uint64_t left = spent < a->interval_ms ? a->interval_ms - spent : 0;
             left > 0 && !top_stop;) {
            uint64_t step = left < TOP_SLEEP_STEP_MS ? left : TOP_SLEEP_STEP_MS;
            sleep_ms(step);
            left -= step;
        }
        if (top_stop) {
            break;
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    if (rc != 0) {
        fprintf(err, "wardenctl: %s: no endpoint answered Cluster.Status\n",
                grpc_status_name(rc));
    }
    free(mbuf);

out_free:
    for (size_t i = 0; i < n; i++) {
        cli_client_free(clients[i]);
    }
    return rc;
}

/* loadgen.c - warden-loadgen: a gRPC load generator for warden and etcd.
 *
 * One thread, one epoll loop, many TLS connections each carrying many
 * HTTP/2 streams. Closed loop (--connections x --streams calls in flight)
 * or open loop (--rate calls/s on a fixed schedule; latency counts from the
 * *intended* send time, so a stalled server is not hidden by the generator
 * waiting for it: "coordinated omission", Gil Tene). Request bodies come
 * from templates (tmpl.h) built per call. Results: JSON (with a per-second
 * time series) and an SVG plot (report.c). See bench/README.md. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "grpc/grpc.h"
#include "lg.h"

/* Housekeeping (reconnects, connect timeouts) runs at most this often. */
#define TICK_NS 10000000ull
/* Events taken per epoll_wait. */
#define EVENTS_MAX 512
/* Longest epoll sleep: bounds how late the stop time is noticed. */
#define SLEEP_MAX_NS 50000000ull

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

uint64_t lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t lg_unix_ms(const struct lg *lg, uint64_t mono_ns)
{
    if (mono_ns == 0) {
        return 0;
    }
    return lg->unix0_ms + (mono_ns - lg->mono0) / 1000000u;
}

const char *lg_status_name(int st)
{
    if (st == LG_ST_TRANSPORT) {
        return "TRANSPORT";
    }
    if (st == LG_ST_BACKLOG) {
        return "BACKLOG_DROPPED";
    }
    return grpc_status_name(st);
}

/* ---- completion accounting ---------------------------------------------------- */

void lg_on_call_done(struct lg *lg, struct lg_stream *s, int status)
{
    uint64_t now = lg_now();
    struct lg_call_spec *cs = &lg->o.calls[s->spec];
    if (status == GRPC_STATUS_OK) {
        if (lg->last_ok && now - lg->last_ok > lg->max_gap) {
            lg->max_gap = now - lg->last_ok;
            lg->gap_from = lg->last_ok;
            lg->gap_to = now;
        }
        lg->last_ok = now;
    } else {
        if (lg->first_err == 0) {
            lg->first_err = now;
        }
        lg->last_err = now;
        if (lg->first_msg[status][0] == '\0') {
            snprintf(lg->first_msg[status], LG_ERRMSG_MAX, "%s", s->msg);
        }
    }
    /* warden: UNAVAILABLE + warden-leader (docs/operations-cluster.md). */
    if (status == GRPC_STATUS_UNAVAILABLE && s->leader[0] && lg->o.follow_leader) {
        if (strcmp(lg->leader, s->leader) != 0) {
            snprintf(lg->leader, sizeof lg->leader, "%s", s->leader);
            lg->redirects++;
        }
        if (s->c->st == LG_C_READY && strcmp(s->c->endpoint, lg->leader) != 0) {
            s->c->st = LG_C_DRAINING;
        }
    }
    size_t sec = (size_t)((now - lg->t_start) / 1000000000u);
    if (sec >= lg->n_secs) {
        sec = lg->n_secs - 1;
    }
    struct lg_second *ps = &lg->secs[sec];
    if (status == GRPC_STATUS_OK) {
        ps->ok++;
        if (ps->hist == NULL) {
            ps->hist = calloc(1, sizeof *ps->hist);
        }
        if (ps->hist) {
            lg_hist_record(ps->hist, now - s->t_intended);
        }
    } else {
        ps->err++;
    }
    if (!lg->measuring || s->t_intended < lg->t_measure) {
        return;  /* warmup */
    }
    if (status == GRPC_STATUS_OK) {
        uint64_t lat = now - s->t_intended;
        lg->ok++;
        cs->ok++;
        lg_hist_record(&lg->hist, lat);
        lg_hist_record(&cs->hist, lat);
    } else {
        lg->by_status[status]++;
        cs->by_status[status]++;
    }
}

static int can_issue(const struct lg *lg)
{
    return !lg->stopping && (lg->o.max_requests == 0 || lg->issued < lg->o.max_requests);
}

static int pick_spec(struct lg *lg)
{
    if (lg->o.n_calls == 1) {
        return 0;
    }
    unsigned r = (unsigned)(lg_rand(&lg->rng) % lg->o.weight_total);
    for (size_t i = 0; i < lg->o.n_calls; i++) {
        if (r < lg->o.calls[i].weight) {
            return (int)i;
        }
        r -= lg->o.calls[i].weight;
    }
    return 0;
}

/* Closed loop: keep --streams calls open on the conn. */
static void fill(struct lg *lg, struct lg_conn *c)
{
    if (lg->o.rate > 0 || !c->active) {
        return;
    }
    uint64_t now = lg_now();
    while (c->st == LG_C_READY && c->inflight < lg->o.streams && can_issue(lg)) {
        if (lg_conn_submit(c, pick_spec(lg), now) != 0) {
            break;
        }
    }
}

void lg_on_ready(struct lg *lg, struct lg_conn *c)
{
    (void)lg;
    (void)c;  /* filled from the dirty list, after this event is handled */
}

/* Open loop: hand due sends to conns with a free stream, oldest first. */
static void dispatch(struct lg *lg)
{
    while (lg->bl_len > 0 && lg->n_active > 0) {
        struct lg_conn *c = NULL;
        for (unsigned k = 0; k < lg->n_active; k++) {
            struct lg_conn *cand = lg->active[(lg->rr + k) % lg->n_active];
            if (cand->st == LG_C_READY && cand->inflight < lg->o.streams) {
                c = cand;
                lg->rr = (lg->rr + k + 1) % lg->n_active;
                break;
            }
        }
        if (c == NULL) {
            return;
        }
        uint64_t t = lg->backlog[lg->bl_head];
        if (lg_conn_submit(c, pick_spec(lg), t) != 0) {
            return;
        }
        lg->bl_head = (lg->bl_head + 1) % LG_BACKLOG_MAX;
        lg->bl_len--;
    }
}

static void schedule_due(struct lg *lg, uint64_t now)
{
    const double step = 1e9 / lg->o.rate;
    while (!lg->stopping && lg->next_due <= now &&
           (lg->o.max_requests == 0 || lg->n_due < lg->o.max_requests)) {
        if (lg->bl_len == LG_BACKLOG_MAX) {
            if (lg->measuring) {
                lg->by_status[LG_ST_BACKLOG]++;
            }
        } else {
            lg->backlog[(lg->bl_head + lg->bl_len) % LG_BACKLOG_MAX] = lg->next_due;
            lg->bl_len++;
        }
        lg->n_due++;
        lg->next_due = lg->t_start + (uint64_t)((double)lg->n_due * step);
    }
}

static void tick(struct lg *lg, uint64_t now)
{
    for (unsigned i = 0; i < lg->n_conns; i++) {
        struct lg_conn *c = &lg->conns[i];
        if (c->st == LG_C_IDLE && c->reconnect_at && now >= c->reconnect_at &&
            !lg->stopping) {
            lg->reconnects++;
            lg_conn_open(c);
        } else if ((c->st == LG_C_CONNECTING || c->st == LG_C_HANDSHAKE) &&
                   now > c->t_open &&
                   now - c->t_open > lg->o.connect_timeout_ms * 1000000ull) {
            if (c->st == LG_C_CONNECTING) {
                lg->connect_fail++;
            } else {
                lg->handshake_fail++;
            }
            lg_conn_fail(c, "connect/handshake timeout");
        }
    }
}

/* ---- options ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
"usage: warden-loadgen --endpoint IP:PORT[,IP:PORT...] --cacert CA --cert C --key K\n"
"         (--method PATH --body-template T | --call PATH=T[:WEIGHT] ...)\n"
"         [--connections 1] [--streams 1] [--rate R] [--duration 10] [--warmup 1]\n"
"         [--max-requests N] [--key-size 16] [--value-size 256] [--key-prefix P]\n"
"         [--read-prefix k] [--keyspace N] [--timeout-ms 10000]\n"
"         [--connect-timeout-ms 10000] [--connect-rate R] [--active-conns K]\n"
"         [--no-follow-leader] [--seed S] [--body-hex HEX] [--label L] [--idle]\n"
"         [--out results.json] [--svg plot.svg]\n"
"templates: health empty etcd-put etcd-range warden-enroll warden-get raw\n");
    exit(2);
}

static int add_call(struct lg_opts *o, const char *path, const char *tmpl, unsigned w)
{
    if (o->n_calls == LG_CALLS_MAX || strlen(path) >= LG_PATH_MAX || path[0] != '/') {
        fprintf(stderr, "warden-loadgen: bad or too many calls (max %d): %s\n",
                LG_CALLS_MAX, path);
        return -1;
    }
    int t = lg_tmpl_parse(tmpl);
    if (t < 0) {
        fprintf(stderr, "warden-loadgen: unknown template %s\n", tmpl);
        return -1;
    }
    struct lg_call_spec *cs = &o->calls[o->n_calls++];
    snprintf(cs->path, sizeof cs->path, "%s", path);
    cs->tmpl = t;
    cs->weight = w ? w : 1;
    o->weight_total += cs->weight;
    return 0;
}

static double num(const char *s, double lo, double hi, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "warden-loadgen: %s must be in [%g, %g], got %s\n", what, lo,
                hi, s);
        exit(2);
    }
    return v;
}

static uint8_t raw_body[LG_BODY_MAX];

static void parse_args(struct lg_opts *o, int argc, char **argv)
{
    enum {
        O_EP = 256, O_CA, O_CERT, O_KEY, O_METHOD, O_TMPL, O_CALL, O_CONNS,
        O_STREAMS, O_RATE, O_DUR, O_WARM, O_MAXREQ, O_KSIZE, O_VSIZE, O_KPFX,
        O_RPFX, O_KSPACE, O_TMO, O_CTMO, O_CRATE, O_ACTIVE, O_NOFOLLOW, O_SEED,
        O_HEX, O_LABEL, O_OUT, O_SVG, O_IDLE,
    };
    static const struct option lo[] = {
        {"endpoint", 1, 0, O_EP}, {"cacert", 1, 0, O_CA}, {"cert", 1, 0, O_CERT},
        {"key", 1, 0, O_KEY}, {"method", 1, 0, O_METHOD},
        {"body-template", 1, 0, O_TMPL}, {"call", 1, 0, O_CALL},
        {"connections", 1, 0, O_CONNS}, {"streams", 1, 0, O_STREAMS},
        {"rate", 1, 0, O_RATE}, {"duration", 1, 0, O_DUR}, {"warmup", 1, 0, O_WARM},
        {"max-requests", 1, 0, O_MAXREQ}, {"key-size", 1, 0, O_KSIZE},
        {"value-size", 1, 0, O_VSIZE}, {"key-prefix", 1, 0, O_KPFX},
        {"read-prefix", 1, 0, O_RPFX}, {"keyspace", 1, 0, O_KSPACE},
        {"timeout-ms", 1, 0, O_TMO}, {"connect-timeout-ms", 1, 0, O_CTMO},
        {"connect-rate", 1, 0, O_CRATE}, {"active-conns", 1, 0, O_ACTIVE},
        {"no-follow-leader", 0, 0, O_NOFOLLOW}, {"seed", 1, 0, O_SEED},
        {"body-hex", 1, 0, O_HEX}, {"label", 1, 0, O_LABEL}, {"out", 1, 0, O_OUT},
        {"svg", 1, 0, O_SVG}, {"idle", 0, 0, O_IDLE}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *method = NULL, *tmpl = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_EP: {
            char buf[1024];
            snprintf(buf, sizeof buf, "%s", optarg);
            for (char *sv, *t = strtok_r(buf, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
                if (o->n_endpoints == LG_ENDPOINTS_MAX || strlen(t) >= LG_ENDPOINT_LEN) {
                    fprintf(stderr, "warden-loadgen: too many/long endpoints\n");
                    exit(2);
                }
                snprintf(o->endpoints[o->n_endpoints++], LG_ENDPOINT_LEN, "%s", t);
            }
            break;
        }
        case O_CA: o->cacert = optarg; break;
        case O_CERT: o->cert = optarg; break;
        case O_KEY: o->key = optarg; break;
        case O_METHOD: method = optarg; break;
        case O_TMPL: tmpl = optarg; break;
        case O_CALL: {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", optarg);
            char *eq = strchr(buf, '=');
            if (eq == NULL) {
                usage();
            }
            *eq = '\0';
            char *colon = strchr(eq + 1, ':');
            unsigned w = 1;
            if (colon) {
                *colon = '\0';
                w = (unsigned)num(colon + 1, 1, 1000, "--call weight");
            }
            if (add_call(o, buf, eq + 1, w) != 0) {
                exit(2);
            }
            break;
        }
        case O_CONNS: o->conns = (unsigned)num(optarg, 1, LG_CONNS_MAX, "--connections"); break;
        case O_STREAMS: o->streams = (unsigned)num(optarg, 1, LG_STREAMS_MAX, "--streams"); break;
        case O_RATE: o->rate = num(optarg, 0, 1e7, "--rate"); break;
        case O_DUR: o->duration_s = num(optarg, 0.1, LG_DURATION_MAX_S, "--duration"); break;
        case O_WARM: o->warmup_s = num(optarg, 0, LG_WARMUP_MAX_S, "--warmup"); break;
        case O_MAXREQ: o->max_requests = (uint64_t)num(optarg, 1, 1e12, "--max-requests"); break;
        case O_KSIZE: o->tc.key_size = (size_t)num(optarg, 1, LG_KEY_MAX, "--key-size"); break;
        case O_VSIZE: o->tc.value_size = (size_t)num(optarg, 0, LG_VALUE_MAX, "--value-size"); break;
        case O_KPFX:
        case O_RPFX: {
            char *dst = c == O_KPFX ? o->tc.write_prefix : o->tc.read_prefix;
            if (strlen(optarg) > LG_PREFIX_MAX) {
                fprintf(stderr, "warden-loadgen: prefix longer than %u\n", LG_PREFIX_MAX);
                exit(2);
            }
            snprintf(dst, LG_PREFIX_MAX + 1, "%s", optarg);
            break;
        }
        case O_KSPACE: o->tc.keyspace = (uint64_t)num(optarg, 1, 1e12, "--keyspace"); break;
        case O_TMO: o->timeout_ms = (uint64_t)num(optarg, 0, 3.6e6, "--timeout-ms"); break;
        case O_CTMO: o->connect_timeout_ms = (uint64_t)num(optarg, 100, 600000, "--connect-timeout-ms"); break;
        case O_CRATE: o->connect_rate = num(optarg, 0, 1e6, "--connect-rate"); break;
        case O_ACTIVE: o->active_conns = (unsigned)num(optarg, 0, LG_CONNS_MAX, "--active-conns"); break;
        case O_NOFOLLOW: o->follow_leader = 0; break;
        case O_SEED: o->tc.seed = (uint64_t)num(optarg, 0, 1e18, "--seed"); break;
        case O_HEX: {
            size_t n = strlen(optarg);
            if (n % 2 || n / 2 > sizeof raw_body) {
                usage();
            }
            for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (sscanf(optarg + 2 * i, "%2x", &v) != 1) {
                    usage();
                }
                raw_body[i] = (uint8_t)v;
            }
            o->tc.raw = raw_body;
            o->tc.raw_len = n / 2;
            break;
        }
        case O_LABEL: o->label = optarg; break;
        case O_OUT: o->out = optarg; break;
        case O_SVG: o->svg = optarg; break;
        case O_IDLE: o->idle = 1; break;
        default: usage();
        }
    }
    if (optind != argc) {
        usage();
    }
    if (method || tmpl) {
        if (!method || !tmpl || add_call(o, method, tmpl, 1) != 0) {
            usage();
        }
    }
    if (o->n_endpoints == 0 || o->n_calls == 0 || !o->cacert || !o->cert || !o->key) {
        usage();
    }
}

/* ---- main loop ------------------------------------------------------------------ */

static uint64_t mono_to_s(double s)
{
    return (uint64_t)(s * 1e9);
}

int main(int argc, char **argv)
{
    static struct lg L;
    struct lg *lg = &L;
    struct lg_opts *o = &lg->o;
    o->conns = 1;
    o->streams = 1;
    o->duration_s = 10;
    o->warmup_s = 1;
    o->timeout_ms = 10000;
    o->connect_timeout_ms = 10000;
    o->follow_leader = 1;
    o->tc.key_size = 16;
    o->tc.value_size = 256;
    o->tc.keyspace = 1000;
    snprintf(o->tc.read_prefix, sizeof o->tc.read_prefix, "k");
    parse_args(o, argc, argv);
    if (o->tc.write_prefix[0] == '\0') {
        /* Unique per run: enrolls never collide with an earlier run's. */
        snprintf(o->tc.write_prefix, sizeof o->tc.write_prefix, "w%lx-",
                 (unsigned long)(time(NULL) ^ ((long)getpid() << 8)) & 0xffffffful);
    }
    lg->rng = o->tc.seed ? o->tc.seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (lg->rng == 0) {
        lg->rng = 1;
    }
    o->tc.seed = lg->rng;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);

    if (lg_tls_init(lg) != 0) {
        return 2;
    }
    lg->ep = epoll_create1(EPOLL_CLOEXEC);
    lg->n_conns = o->conns;
    lg->conns = calloc(lg->n_conns, sizeof *lg->conns);
    lg->active = calloc(lg->n_conns, sizeof *lg->active);
    lg->n_secs = (size_t)(o->warmup_s + o->duration_s) + LG_DRAIN_MS / 1000u + 60u;
    lg->secs = calloc(lg->n_secs, sizeof *lg->secs);
    if (o->rate > 0) {
        lg->backlog = malloc(LG_BACKLOG_MAX * sizeof *lg->backlog);
    }
    if (lg->ep < 0 || !lg->conns || !lg->active || !lg->secs ||
        (o->rate > 0 && !lg->backlog)) {
        fprintf(stderr, "warden-loadgen: out of memory\n");
        return 2;
    }
    unsigned n_act = o->active_conns && o->active_conns < o->conns ? o->active_conns : o->conns;
    for (unsigned i = 0; i < lg->n_conns; i++) {
        struct lg_conn *c = &lg->conns[i];
        c->lg = lg;
        c->idx = i;
        c->fd = -1;
        c->backoff_ms = LG_RECONNECT_MIN_MS;
        c->active = !o->idle && i < n_act;
        if (c->active) {
            lg->active[lg->n_active++] = c;
        }
    }

    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    lg->mono0 = lg_now();
    lg->unix0_ms = (uint64_t)rt.tv_sec * 1000u + (uint64_t)rt.tv_nsec / 1000000u;
    lg->t_start = lg->mono0;
    lg->t_measure = lg->t_start + mono_to_s(o->warmup_s);
    lg->t_end = lg->t_measure + mono_to_s(o->duration_s);
    lg->next_due = lg->t_start;
    unsigned opened = 0;
    uint64_t last_tick = 0, t_stop = 0;
    struct epoll_event evs[EVENTS_MAX];

    for (;;) {
        uint64_t now = lg_now();
        if (!lg->measuring && now >= lg->t_measure) {
            lg->measuring = 1;
        }
        if (!lg->stopping &&
            (now >= lg->t_end || interrupted ||
             (o->max_requests && lg->issued >= o->max_requests &&
              (o->rate <= 0 || lg->bl_len == 0)))) {
            lg->stopping = 1;
            t_stop = now;
        }
        if (lg->stopping && (lg->inflight == 0 || now - t_stop > LG_DRAIN_MS * 1000000ull ||
                             interrupted > 1)) {
            break;
        }
        /* Open connections: all at once, or at --connect-rate. */
        while (opened < lg->n_conns && !lg->stopping &&
               (o->connect_rate <= 0 ||
                now >= lg->t_start + (uint64_t)((double)opened * 1e9 / o->connect_rate))) {
            lg_conn_open(&lg->conns[opened++]);
        }
        if (o->rate > 0) {
            schedule_due(lg, now);
            dispatch(lg);
        }
        /* Conns that read, completed calls or were opened: refill, flush. */
        for (int guard = 0; lg->dirty && guard < 4; guard++) {
            struct lg_conn *d = lg->dirty;
            lg->dirty = NULL;
            while (d) {
                struct lg_conn *next = d->dirty_next;
                d->dirty = 0;
                if (d->st == LG_C_READY) {
                    fill(lg, d);
                }
                if (d->st == LG_C_READY || d->st == LG_C_DRAINING) {
                    lg_conn_flush(d);
                }
                d = next;
            }
            if (o->rate > 0) {
                dispatch(lg);
            }
        }
        if (now - last_tick >= TICK_NS) {
            last_tick = now;
            tick(lg, now);
        }
        uint64_t wake = now + SLEEP_MAX_NS;
        if (lg->dirty) {
            wake = now;
        }
        if (o->rate > 0 && !lg->stopping && lg->next_due < wake) {
            wake = lg->next_due;
        }
        if (!lg->measuring && lg->t_measure < wake) {
            wake = lg->t_measure;
        }
        if (!lg->stopping && lg->t_end < wake) {
            wake = lg->t_end;
        }
        if (last_tick + TICK_NS < wake) {
            wake = last_tick + TICK_NS;
        }
        if (opened < lg->n_conns && o->connect_rate > 0) {
            uint64_t t = lg->t_start + (uint64_t)((double)opened * 1e9 / o->connect_rate);
            if (t < wake) {
                wake = t;
            }
        }
        uint64_t sleep_ns = wake > now ? wake - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(sleep_ns / 1000000000u),
                              .tv_nsec = (long)(sleep_ns % 1000000000u)};
        int n = epoll_pwait2(lg->ep, evs, EVENTS_MAX, &ts, NULL);
        if (n < 0 && errno == ENOSYS) {
            n = epoll_wait(lg->ep, evs, EVENTS_MAX, (int)((sleep_ns + 999999u) / 1000000u));
        }
        for (int i = 0; i < n; i++) {
            lg_conn_event(evs[i].data.ptr, evs[i].events);
        }
    }
    lg->t_done = lg_now();
    /* Calls still open after the drain are counted as lost. */
    lg_conn_close_all(lg);

    lg_report_text(lg);
    int rc = 0;
    if (lg_report_json(lg, o->out) != 0) {
        rc = 2;
    }
    if (o->svg && lg_report_svg(lg, o->svg) != 0) {
        rc = 2;
    }
    for (size_t i = 0; i < lg->n_secs; i++) {
        free(lg->secs[i].hist);
    }
    free(lg->secs);
    free(lg->backlog);
    free(lg->active);
    free(lg->conns);
    SSL_CTX_free(lg->ssl_ctx);
    close(lg->ep);
    if (rc == 0 && lg->ok == 0 && lg->handshakes == 0) {
        rc = 3;  /* nothing worked: let scripts notice */
    }
    return rc;
}

/* test_grpc_conn.c - end-to-end over memory: our server grpc_conn paired
 * with an nghttp2 *client* session, bytes pumped both ways, no sockets and
 * no clock (now_ms is chosen by each test). */
#include <nghttp2/nghttp2.h>

#include "grpc/grpc.h"
#include "grpc/health/v1/health.pb-c.h"

#include "unit.h"

/* ---- client side -------------------------------------------------------- */
#define MAX_SID 1024 /* client stream ids we track (odd ids / 2) */

struct result {
    int http_status;
    int grpc_status;     /* -1 until seen */
    char grpc_message[2048];
    char accept_encoding[64];
    char leader[64];
    uint8_t *data;
    size_t data_len;
    int closed;
    uint32_t close_code;
    int rst_recv;
    uint32_t rst_code;
};

struct body {
    const uint8_t *p;
    size_t len, off;
    int hold; /* never send END_STREAM: the request body stays open */
};

struct client {
    nghttp2_session *s;
    struct result res[MAX_SID];
    struct body bodies[MAX_SID];
    int goaway;
    int32_t goaway_last;
};

static struct client cl;

static struct result *res_of(int32_t sid)
{
    return &cl.res[(sid - 1) / 2 % MAX_SID];
}

static int c_header(nghttp2_session *s, const nghttp2_frame *f,
                    const uint8_t *n, size_t nl, const uint8_t *v, size_t vl,
                    uint8_t flags, void *ud)
{
    struct result *r = res_of(f->hd.stream_id);
    char val[2048];
    (void)s, (void)flags, (void)ud;
    snprintf(val, sizeof val, "%.*s", (int)vl, (const char *)v);
    if (nl == 7 && memcmp(n, ":status", 7) == 0) {
        r->http_status = atoi(val);
    } else if (nl == 11 && memcmp(n, "grpc-status", 11) == 0) {
        r->grpc_status = atoi(val);
    } else if (nl == 12 && memcmp(n, "grpc-message", 12) == 0) {
        grpc_pct_decode(val, strlen(val), r->grpc_message,
                        sizeof r->grpc_message);
    } else if (nl == 20 && memcmp(n, "grpc-accept-encoding", 20) == 0) {
        snprintf(r->accept_encoding, sizeof r->accept_encoding, "%.63s", val);
    } else if (nl == 13 && memcmp(n, "warden-leader", 13) == 0) {
        snprintf(r->leader, sizeof r->leader, "%.63s", val);
    }
    return 0;
}

static int c_data(nghttp2_session *s, uint8_t flags, int32_t sid,
                  const uint8_t *d, size_t len, void *ud)
{
    struct result *r = res_of(sid);
    (void)s, (void)flags, (void)ud;
    r->data = realloc(r->data, r->data_len + len);
    memcpy(r->data + r->data_len, d, len);
    r->data_len += len;
    return 0;
}

static int c_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    (void)s, (void)ud;
    res_of(sid)->closed = 1;
    res_of(sid)->close_code = code;
    return 0;
}

static int c_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s, (void)ud;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        res_of(f->hd.stream_id)->rst_recv = 1;
        res_of(f->hd.stream_id)->rst_code = f->rst_stream.error_code;
    } else if (f->hd.type == NGHTTP2_GOAWAY) {
        cl.goaway++;
        cl.goaway_last = f->goaway.last_stream_id;
    }
    return 0;
}

static ssize_t c_read(nghttp2_session *s, int32_t sid, uint8_t *buf,
                      size_t length, uint32_t *flags, nghttp2_data_source *src,
                      void *ud)
{
    struct body *b = src->ptr;
    size_t n = b->len - b->off < length ? b->len - b->off : length;
    (void)s, (void)sid, (void)ud;
    memcpy(buf, b->p + b->off, n);
    b->off += n;
    if (b->off == b->len && b->hold && n == 0) {
        return NGHTTP2_ERR_DEFERRED;
    }
    if (b->off == b->len && !b->hold) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static void client_init(void)
{
    nghttp2_session_callbacks *cbs;
    for (size_t i = 0; i < MAX_SID; i++) {
        free(cl.res[i].data);
    }
    memset(&cl, 0, sizeof cl);
    for (size_t i = 0; i < MAX_SID; i++) {
        cl.res[i].grpc_status = -1;
    }
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, c_frame);
    nghttp2_session_client_new(&cl.s, cbs, NULL);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(cl.s, NGHTTP2_FLAG_NONE, iv, 1);
}

static void client_free(void)
{
    nghttp2_session_del(cl.s);
    cl.s = NULL;
}

#define MAXH 10
struct req_opts {
    const char *path;
    const char *ctype;     /* default application/grpc */
    const char *timeout;   /* grpc-timeout or NULL */
    const char *encoding;  /* grpc-encoding or NULL */
    const uint8_t *body;   /* raw body (framed by caller) */
    size_t body_len;
    int no_body;           /* END_STREAM on HEADERS */
    int hold;              /* body never ends */
};

static int32_t client_request(const struct req_opts *o)
{
    nghttp2_nv nv[MAXH];
    size_t n = 0;
#define ADD(k, v)                                                           \
    nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k),      \
                           strlen(v), NGHTTP2_NV_FLAG_NONE}
    ADD(":method", "POST");
    ADD(":scheme", "https");
    ADD(":authority", "localhost");
    ADD(":path", o->path);
    ADD("content-type", o->ctype ? o->ctype : "application/grpc");
    ADD("te", "trailers");
    ADD("x-request-id", "r-17");
    if (o->timeout) {
        ADD("grpc-timeout", o->timeout);
    }
    if (o->encoding) {
        ADD("grpc-encoding", o->encoding);
    }
#undef ADD
    int32_t next = nghttp2_session_get_next_stream_id(cl.s);
    struct body *b = &cl.bodies[(next - 1) / 2 % MAX_SID];
    b->p = o->body;
    b->len = o->body_len;
    b->off = 0;
    b->hold = o->hold;
    nghttp2_data_provider prd = {.source.ptr = b, .read_callback = c_read};
    return nghttp2_submit_request(cl.s, NULL, nv, n, o->no_body ? NULL : &prd,
                                  NULL);
}

/* A framed HealthCheckRequest{service}. Returns length. */
static size_t frame_req(const char *service, uint8_t *out, size_t cap)
{
    Grpc__Health__V1__HealthCheckRequest m =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    m.service = (char *)service;
    size_t n = grpc__health__v1__health_check_request__get_packed_size(&m);
    if (n + GRPC_FRAME_HDR_LEN > cap) {
        abort();
    }
    grpc_frame_hdr_encode(out, 0, (uint32_t)n);
    grpc__health__v1__health_check_request__pack(&m, out + GRPC_FRAME_HDR_LEN);
    return n + GRPC_FRAME_HDR_LEN;
}

/* Decode a result's DATA into messages; returns count, or -1 on garbage. */
static int count_msgs(const struct result *r, int *last_status)
{
    struct grpc_frame_dec d;
    size_t off = 0;
    int n = 0;
    grpc_frame_dec_init(&d, 1 << 20);
    while (off < r->data_len) {
        size_t used;
        int rv = grpc_frame_dec_feed(&d, r->data + off, r->data_len - off,
                                     &used);
        off += used;
        if (rv < 0) {
            n = -1;
            break;
        }
        if (rv == 1) {
            uint8_t *m;
            size_t len;
            int comp;
            grpc_frame_dec_take(&d, &m, &len, &comp);
            Grpc__Health__V1__HealthCheckResponse *resp =
                grpc__health__v1__health_check_response__unpack(NULL, len,
                                                                 m ? m : (uint8_t *)"");
            free(m);
            if (resp == NULL) {
                n = -1;
                break;
            }
            if (last_status) {
                *last_status = resp->status;
            }
            grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
            n++;
        }
    }
    if (grpc_frame_dec_partial(&d)) {
        n = -1;
    }
    grpc_frame_dec_close(&d);
    return n;
}

/* ---- server side -------------------------------------------------------- */
static struct grpc_router router;
static struct grpc_conn *srv;
static uint64_t now = 1000;
static int wakeups;
static int handled;
static int cancels;
static struct grpc_call *pending[256];
static size_t npending;

static void wakeup_cb(void *arg)
{
    (void)arg;
    wakeups++;
}

static void cancel_cb(struct grpc_call *c, void *arg)
{
    (void)arg;
    cancels++;
    for (size_t i = 0; i < npending; i++) {
        if (pending[i] == c) {
            pending[i] = pending[--npending];
            break;
        }
    }
}

static void reply_status(struct grpc_call *c, int st)
{
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st;
    grpc_call_reply(c, &resp.base);
}

static void check_h(struct grpc_call *c, const ProtobufCMessage *req,
                    void *data)
{
    const Grpc__Health__V1__HealthCheckRequest *r =
        (const Grpc__Health__V1__HealthCheckRequest *)req;
    (void)data;
    handled++;
    if (strcmp(r->service, "async") == 0 || strcmp(r->service, "slow") == 0) {
        grpc_call_on_cancel(c, cancel_cb, NULL);
        pending[npending++] = c;
        return;
    }
    if (grpc_call_metadata(c, "x-request-id") == NULL ||
        strcmp(grpc_call_metadata(c, "x-request-id"), "r-17") != 0) {
        grpc_call_fail(c, GRPC_STATUS_INTERNAL, "metadata lost");
        return;
    }
    if (strcmp(r->service, "fail") == 0) {
        grpc_call_fail(c, GRPC_STATUS_NOT_FOUND, "no such %s\n100%%", "thing");
        return;
    }
    grpc_call_add_trailer(c, "warden-leader", "n1");
    reply_status(c, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
}

static size_t stream_sent;

static void watch_h(struct grpc_call *c, const ProtobufCMessage *req,
                    void *data)
{
    const Grpc__Health__V1__HealthCheckRequest *r =
        (const Grpc__Health__V1__HealthCheckRequest *)req;
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    (void)data;
    handled++;
    if (strcmp(r->service, "async") == 0) {
        grpc_call_on_cancel(c, cancel_cb, NULL);
        pending[npending++] = c;
        return;
    }
    if (strcmp(r->service, "flood") == 0) {
        /* Queue until the per-stream bound says stop. */
        stream_sent = 0;
        resp.status = 1;
        while (grpc_call_send(c, &resp.base) == 0) {
            stream_sent++;
        }
        grpc_call_finish(c, GRPC_STATUS_OK, NULL);
        return;
    }
    for (int i = 0; i < 3; i++) {
        resp.status = i;
        grpc_call_send(c, &resp.base);
    }
    grpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

/* grpc_conn_config.max_conn_buffered for the next setup_full (0: default). */
static size_t cfg_conn_buffered;

static void setup_full(unsigned role, size_t max_msg)
{
    struct werr e = {0};
    struct grpc_method m;
    grpc_router_init(&router);
    memset(&m, 0, sizeof m);
    m.req_desc = &grpc__health__v1__health_check_request__descriptor;
    m.roles = WROLE_ALL_CLIENTS;
    m.handler = check_h;
    snprintf(m.path, sizeof m.path, "/grpc.health.v1.Health/Check");
    grpc_router_add(&router, &m, &e);
    m.handler = watch_h;
    m.server_streaming = 1;
    snprintf(m.path, sizeof m.path, "/grpc.health.v1.Health/Watch");
    grpc_router_add(&router, &m, &e);
    m.handler = check_h;
    m.server_streaming = 0;
    m.roles = WROLE_ADMIN;
    snprintf(m.path, sizeof m.path, "/warden.v1.Admin/Only");
    grpc_router_add(&router, &m, &e);

    struct principal p = {.role = role};
    snprintf(p.name, sizeof p.name, "tester");
    struct grpc_conn_config cfg = {.max_msg = max_msg, .wakeup = wakeup_cb,
                                   .max_conn_buffered = cfg_conn_buffered};
    if (grpc_conn_new(&srv, &router, &cfg, &p, &e) != 0) {
        fprintf(stderr, "grpc_conn_new: %s\n", e.msg);
        abort();
    }
    now = 1000;
    wakeups = handled = cancels = 0;
    npending = 0;
    client_init();
}

static void setup(void)
{
    setup_full(WROLE_OPERATOR, 0);
}

static void teardown(void)
{
    grpc_conn_free(srv);
    srv = NULL;
    client_free();
}

/* Move bytes both ways until neither side has anything to say. */
static void pump(void)
{
    for (int round = 0; round < 10000; round++) {
        int moved = 0;
        const uint8_t *d;
        long n;
        while ((n = grpc_conn_send(srv, &d)) > 0) {
            if (nghttp2_session_mem_recv(cl.s, d, (size_t)n) != n) {
                abort();
            }
            moved = 1;
        }
        if (n < 0) {
            abort();
        }
        ssize_t m;
        while ((m = nghttp2_session_mem_send(cl.s, &d)) > 0) {
            if (grpc_conn_recv(srv, d, (size_t)m, now) != 0) {
                abort();
            }
            moved = 1;
        }
        if (!moved) {
            return;
        }
    }
    abort(); /* livelock */
}

static int32_t unary(const char *path, const char *service)
{
    static uint8_t buf[256];
    struct req_opts o = {.path = path};
    o.body = buf;
    o.body_len = frame_req(service, buf, sizeof buf);
    return client_request(&o);
}

/* ---- tests -------------------------------------------------------------- */
TEST(unary_ok)
{
    setup();
    int32_t sid = unary("/grpc.health.v1.Health/Check", "");
    pump();
    struct result *r = res_of(sid);
    int st = -1;
    CHECK_EQ_INT(r->http_status, 200);
    CHECK_EQ_INT(r->grpc_status, 0);
    CHECK_EQ_INT(count_msgs(r, &st), 1);
    CHECK_EQ_INT(st, 1);
    CHECK_EQ_STR(r->leader, "n1");
    CHECK(r->closed);
    CHECK_EQ_INT(handled, 1);
    CHECK_EQ_INT(grpc_conn_active_calls(srv), 0);
    teardown();
}

TEST(fail_message_percent_encoded)
{
    setup();
    int32_t sid = unary("/grpc.health.v1.Health/Check", "fail");
    pump();
    struct result *r = res_of(sid);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_NOT_FOUND);
    CHECK_EQ_STR(r->grpc_message, "no such thing\n100%");
    CHECK_EQ_INT(r->data_len, 0); /* trailers-only */
    teardown();
}

TEST(unknown_method)
{
    setup();
    int32_t sid = unary("/nope.Svc/Missing", "");
    pump();
    struct result *r = res_of(sid);
    CHECK_EQ_INT(r->http_status, 200);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_UNIMPLEMENTED);
    CHECK(strstr(r->grpc_message, "/nope.Svc/Missing") != NULL);
    CHECK_EQ_INT(r->data_len, 0);
    CHECK_EQ_INT(handled, 0);
    teardown();
}

TEST(wrong_role)
{
    setup_full(WROLE_GATEWAY, 0);
    int32_t sid = unary("/warden.v1.Admin/Only", "");
    pump();
    struct result *r = res_of(sid);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_PERMISSION_DENIED);
    CHECK(strstr(r->grpc_message, "gateway") != NULL);
    CHECK_EQ_INT(handled, 0);
    teardown();
    setup_full(WROLE_ADMIN, 0);
    sid = unary("/warden.v1.Admin/Only", "");
    pump();
    CHECK_EQ_INT(res_of(sid)->grpc_status, 0);
    teardown();
}

/* Partly received requests share one per-connection budget: each stream
 * below max_msg, together above the budget. The stream that crosses it is
 * refused; the one already buffered keeps its bytes; small calls go on. */
TEST(conn_rx_budget)
{
    static uint8_t big[2][GRPC_FRAME_HDR_LEN + 40000];
    int32_t sid[2];

    cfg_conn_buffered = 100000;
    setup_full(WROLE_OPERATOR, 65536);
    cfg_conn_buffered = 0;
    for (int i = 0; i < 2; i++) {
        struct req_opts o = {.path = "/grpc.health.v1.Health/Check", .hold = 1};
        grpc_frame_hdr_encode(big[i], 0, 60000); /* claims 60,000; sends 40,000 */
        memset(big[i] + GRPC_FRAME_HDR_LEN, 0x0a, sizeof big[i] - GRPC_FRAME_HDR_LEN);
        o.body = big[i];
        o.body_len = sizeof big[i];
        sid[i] = client_request(&o);
        pump();
    }
    CHECK_EQ_INT(res_of(sid[0])->grpc_status, -1); /* still receiving */
    struct result *r = res_of(sid[1]);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(strstr(r->grpc_message, "partly received requests, limit 100000") != NULL);
    CHECK_EQ_INT(handled, 0);
    int32_t ok = unary("/grpc.health.v1.Health/Check", "");
    pump();
    CHECK_EQ_INT(res_of(ok)->grpc_status, 0);
    teardown();
}

TEST(oversize)
{
    setup_full(WROLE_OPERATOR, 64);
    char svc[200];
    memset(svc, 'x', sizeof svc - 1);
    svc[sizeof svc - 1] = '\0';
    int32_t sid = unary("/grpc.health.v1.Health/Check", svc);
    pump();
    struct result *r = res_of(sid);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(strstr(r->grpc_message, "exceeds the limit of 64") != NULL);
    CHECK_EQ_INT(handled, 0);
    /* The connection keeps serving. */
    sid = unary("/grpc.health.v1.Health/Check", "");
    pump();
    CHECK_EQ_INT(res_of(sid)->grpc_status, 0);
    teardown();
}

TEST(wrong_content_type_415)
{
    setup();
    static uint8_t buf[64];
    struct req_opts o = {.path = "/grpc.health.v1.Health/Check",
                         .ctype = "application/json", .body = buf};
    o.body_len = frame_req("", buf, sizeof buf);
    int32_t sid = client_request(&o);
    o.ctype = "application/grpcx"; /* prefix match must stop at a boundary */
    int32_t sid2 = client_request(&o);
    o.ctype = "application/grpc+proto";
    int32_t sid3 = client_request(&o);
    pump();
    CHECK_EQ_INT(res_of(sid)->http_status, 415);
    CHECK_EQ_INT(res_of(sid2)->http_status, 415);
    CHECK_EQ_INT(res_of(sid3)->http_status, 200);
    CHECK_EQ_INT(res_of(sid3)->grpc_status, 0);
    CHECK_EQ_INT(handled, 1);
    teardown();
}

TEST(garbage_protobuf)
{
    setup();
    static const uint8_t body[] = {0, 0, 0, 0, 3, 0xff, 0xff, 0xff};
    struct req_opts o = {.path = "/grpc.health.v1.Health/Check", .body = body,
                         .body_len = sizeof body};
    int32_t sid = client_request(&o);
    pump();
    struct result *r = res_of(sid);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_INVALID_ARGUMENT);
    CHECK_EQ_STR(r->grpc_message,
                 "malformed protobuf for grpc.health.v1.HealthCheckRequest");
    CHECK_EQ_INT(handled, 0);
    teardown();
}

TEST(framing_errors)
{
    setup();
    static const uint8_t trunc_prefix[] = {0, 0, 0};
    static const uint8_t trunc_body[] = {0, 0, 0, 0, 4, 0x0a, 0x02};
    static uint8_t two[128];
    size_t n2 = frame_req("a", two, sizeof two);
    n2 += frame_req("b", two + n2, sizeof two - n2);
    static uint8_t comp[64];
    size_t nc = frame_req("z", comp, sizeof comp);
    comp[0] = 1;
    struct req_opts o = {.path = "/grpc.health.v1.Health/Check"};
    o.body = trunc_prefix, o.body_len = sizeof trunc_prefix;
    int32_t s1 = client_request(&o);
    o.body = trunc_body, o.body_len = sizeof trunc_body;
    int32_t s2 = client_request(&o);
    o.body = two, o.body_len = n2;
    int32_t s3 = client_request(&o);
    o.body = NULL, o.body_len = 0, o.no_body = 1;
    int32_t s4 = client_request(&o);
    o.no_body = 0, o.body = comp, o.body_len = nc;
    int32_t s5 = client_request(&o);
    o.encoding = "gzip";
    int32_t s6 = client_request(&o);
    o.encoding = NULL, o.timeout = "12x";
    int32_t s7 = client_request(&o);
    pump();
    CHECK_EQ_INT(res_of(s1)->grpc_status, GRPC_STATUS_INVALID_ARGUMENT);
    CHECK_EQ_STR(res_of(s1)->grpc_message,
                 "truncated message: stream ended after 3 of the 5 prefix bytes");
    CHECK_EQ_INT(res_of(s2)->grpc_status, GRPC_STATUS_INVALID_ARGUMENT);
    CHECK_EQ_STR(res_of(s2)->grpc_message,
                 "truncated message: stream ended after 2 of 4 bytes");
    CHECK_EQ_INT(res_of(s3)->grpc_status, GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(res_of(s3)->grpc_message, "exactly one request message, got more"));
    CHECK_EQ_INT(res_of(s4)->grpc_status, GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(res_of(s4)->grpc_message, "got none"));
    CHECK_EQ_INT(res_of(s5)->grpc_status, GRPC_STATUS_INTERNAL);
    CHECK(strstr(res_of(s5)->grpc_message, "compressed flag set"));
    CHECK_EQ_INT(res_of(s6)->grpc_status, GRPC_STATUS_UNIMPLEMENTED);
    CHECK_EQ_STR(res_of(s6)->accept_encoding, "identity");
    CHECK_EQ_INT(res_of(s7)->grpc_status, GRPC_STATUS_INVALID_ARGUMENT);
    CHECK_EQ_STR(res_of(s7)->grpc_message, "malformed grpc-timeout");
    CHECK_EQ_INT(handled, 0);
    teardown();
}

TEST(deadline)
{
    setup();
    static uint8_t buf[64];
    struct req_opts o = {.path = "/grpc.health.v1.Health/Check",
                         .timeout = "100m", .body = buf};
    o.body_len = frame_req("slow", buf, sizeof buf);
    int32_t sid = client_request(&o);
    pump();
    CHECK_EQ_INT(npending, 1);
    CHECK_EQ_INT(grpc_call_deadline(pending[0]), 1100);
    CHECK_EQ_INT(grpc_conn_tick(srv, 1050), 1100);
    pump();
    CHECK_EQ_INT(res_of(sid)->grpc_status, -1);
    CHECK_EQ_INT(grpc_conn_tick(srv, 1100), 0);
    CHECK_EQ_INT(cancels, 1);
    CHECK_EQ_INT(npending, 0);
    CHECK(wakeups > 0);
    pump();
    struct result *r = res_of(sid);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_DEADLINE_EXCEEDED);
    CHECK(r->closed);
    CHECK_EQ_INT(grpc_conn_active_calls(srv), 0);
    teardown();
}

TEST(deadline_while_receiving_body)
{
    setup();
    /* Half a message and no END_STREAM: the handler never runs. */
    static const uint8_t part[] = {0, 0, 0, 0, 9, 1, 2};
    struct req_opts o = {.path = "/grpc.health.v1.Health/Check",
                         .timeout = "1S", .body = part, .body_len = sizeof part,
                         .hold = 1};
    int32_t sid = client_request(&o);
    pump();
    CHECK_EQ_INT(res_of(sid)->grpc_status, -1);
    CHECK_EQ_INT(grpc_conn_active_calls(srv), 1);
    CHECK_EQ_INT(grpc_conn_tick(srv, 1999), 2000);
    CHECK_EQ_INT(grpc_conn_tick(srv, 2000), 0);
    pump();
    struct result *r = res_of(sid);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_DEADLINE_EXCEEDED);
    CHECK(r->rst_recv); /* then RST_STREAM(CANCEL) */
    CHECK_EQ_INT(r->rst_code, NGHTTP2_CANCEL);
    CHECK(r->closed);
    CHECK_EQ_INT(cancels, 0);
    CHECK_EQ_INT(handled, 0);
    CHECK_EQ_INT(grpc_conn_active_calls(srv), 0);
    teardown();
}

TEST(oversize_body_reset_no_error)
{
    /* The refusal comes at the prefix; the client, still sending, gets
     * RST_STREAM(NO_ERROR) after the trailers (RFC 9113 §8.1). */
    setup_full(WROLE_OPERATOR, 16);
    static const uint8_t hdr[] = {0, 0, 0x10, 0, 0};
    struct req_opts o = {.path = "/grpc.health.v1.Health/Check", .body = hdr,
                         .body_len = sizeof hdr, .hold = 1};
    int32_t sid = client_request(&o);
    pump();
    struct result *r = res_of(sid);
    CHECK_EQ_INT(r->grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(r->rst_recv);
    CHECK_EQ_INT(r->rst_code, NGHTTP2_NO_ERROR);
    CHECK(r->closed);
    teardown();
}

TEST(async_reply_and_wakeup)
{
    setup();
    int32_t sid = unary("/grpc.health.v1.Health/Check", "async");
    pump();
    CHECK_EQ_INT(npending, 1);
    CHECK_EQ_INT(res_of(sid)->grpc_status, -1);
    CHECK_EQ_INT(grpc_conn_active_calls(srv), 1);
    CHECK_EQ_STR(grpc_call_path(pending[0]), "/grpc.health.v1.Health/Check");
    CHECK_EQ_STR(grpc_call_principal(pending[0])->name, "tester");
    int w = wakeups;
    struct grpc_call *c = pending[--npending];
    grpc_call_set_userdata(c, &w);
    CHECK(grpc_call_userdata(c) == &w);
    reply_status(c, 2);
    CHECK_EQ_INT(wakeups, w + 1);
    pump();
    int st = -1;
    CHECK_EQ_INT(res_of(sid)->grpc_status, 0);
    CHECK_EQ_INT(count_msgs(res_of(sid), &st), 1);
    CHECK_EQ_INT(st, 2);
    CHECK_EQ_INT(cancels, 0);
    teardown();
}

TEST(cancel_on_rst_stream)
{
    setup();
    int32_t sid = unary("/grpc.health.v1.Health/Check", "async");
    pump();
    CHECK_EQ_INT(npending, 1);
    nghttp2_submit_rst_stream(cl.s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
    pump();
    CHECK_EQ_INT(cancels, 1);
    CHECK_EQ_INT(npending, 0);
    CHECK_EQ_INT(grpc_conn_active_calls(srv), 0);
    teardown();
}

TEST(cancel_on_conn_free)
{
    setup();
    unary("/grpc.health.v1.Health/Check", "async");
    unary("/grpc.health.v1.Health/Watch", "async");
    pump();
    CHECK_EQ_INT(npending, 2);
    teardown();
    CHECK_EQ_INT(cancels, 2);
    CHECK_EQ_INT(npending, 0);
}

TEST(server_streaming)
{
    setup();
    int32_t sid = unary("/grpc.health.v1.Health/Watch", "");
    pump();
    int st = -1;
    CHECK_EQ_INT(res_of(sid)->grpc_status, 0);
    CHECK_EQ_INT(count_msgs(res_of(sid), &st), 3);
    CHECK_EQ_INT(st, 2);
    teardown();
}

TEST(server_streaming_async_and_bounded)
{
    setup();
    int32_t sid = unary("/grpc.health.v1.Health/Watch", "async");
    pump();
    CHECK_EQ_INT(npending, 1);
    struct grpc_call *c = pending[0];
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = 1;
    CHECK_EQ_INT(grpc_call_reply(c, &resp.base), WERR_INVALID); /* not unary */
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(grpc_call_send(c, &resp.base), 0);
        pump();
    }
    CHECK_EQ_INT(count_msgs(res_of(sid), NULL), 5);
    CHECK_EQ_INT(res_of(sid)->grpc_status, -1);
    npending = 0;
    CHECK_EQ_INT(grpc_call_finish(c, GRPC_STATUS_ABORTED, "bye"), 0);
    pump();
    CHECK_EQ_INT(res_of(sid)->grpc_status, GRPC_STATUS_ABORTED);
    CHECK_EQ_STR(res_of(sid)->grpc_message, "bye");

    /* Out queue bound: sends past GRPC_STREAM_OUT_MAX are refused (BUSY),
     * and everything accepted is delivered. */
    sid = unary("/grpc.health.v1.Health/Watch", "flood");
    pump();
    CHECK(stream_sent > 1000);
    CHECK(stream_sent * 7 <= GRPC_STREAM_OUT_MAX);
    CHECK_EQ_INT(count_msgs(res_of(sid), NULL), stream_sent);
    CHECK_EQ_INT(res_of(sid)->grpc_status, 0);
    teardown();
}

TEST(hundred_concurrent_streams)
{
    setup();
    int32_t sids[100];
    for (int i = 0; i < 100; i++) {
        sids[i] = unary("/grpc.health.v1.Health/Check", "");
        CHECK(sids[i] > 0);
    }
    pump();
    for (int i = 0; i < 100; i++) {
        CHECK_EQ_INT(res_of(sids[i])->grpc_status, 0);
        CHECK_EQ_INT(count_msgs(res_of(sids[i]), NULL), 1);
    }
    CHECK_EQ_INT(handled, 100);
    teardown();
}

TEST(shutdown_goaway_drains)
{
    setup();
    int32_t sid = unary("/grpc.health.v1.Health/Check", "async");
    pump();
    CHECK_EQ_INT(npending, 1);
    grpc_conn_shutdown(srv);
    CHECK(wakeups > 0);
    pump();
    CHECK(cl.goaway >= 2); /* notice, then the final one */
    CHECK_EQ_INT(cl.goaway_last, sid);
    CHECK(grpc_conn_want_read(srv) || grpc_conn_want_write(srv));
    /* In-flight call completes after GOAWAY. */
    reply_status(pending[--npending], 1);
    pump();
    CHECK_EQ_INT(res_of(sid)->grpc_status, 0);
    CHECK_EQ_INT(grpc_conn_want_read(srv), 0);
    CHECK_EQ_INT(grpc_conn_want_write(srv), 0);
    teardown();
}

TEST(garbage_bytes_close_conn)
{
    setup();
    client_free();
    static const uint8_t junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    int rv = grpc_conn_recv(srv, junk, sizeof junk - 1, now);
    const uint8_t *d;
    while (grpc_conn_send(srv, &d) > 0) {
    }
    CHECK(rv < 0 || (!grpc_conn_want_read(srv) && !grpc_conn_want_write(srv)));
    grpc_conn_free(srv);
    srv = NULL;
}

int main(void)
{
    RUN(unary_ok);
    RUN(fail_message_percent_encoded);
    RUN(unknown_method);
    RUN(wrong_role);
    RUN(conn_rx_budget);
    RUN(oversize);
    RUN(wrong_content_type_415);
    RUN(garbage_protobuf);
    RUN(framing_errors);
    RUN(deadline);
    RUN(deadline_while_receiving_body);
    RUN(oversize_body_reset_no_error);
    RUN(async_reply_and_wakeup);
    RUN(cancel_on_rst_stream);
    RUN(cancel_on_conn_free);
    RUN(server_streaming);
    RUN(server_streaming_async_and_bounded);
    RUN(hundred_concurrent_streams);
    RUN(shutdown_goaway_drains);
    RUN(garbage_bytes_close_conn);
    for (size_t i = 0; i < MAX_SID; i++) {
        free(cl.res[i].data);
    }
    return unit_done();
}

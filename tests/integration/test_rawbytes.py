"""Raw bytes: malformed HTTP/2 and gRPC framing over real mTLS connections.

The HTTP/2 client is python3-h2 (Debian package, hyper-h2 4.x: a client
nobody here wrote), used in a way that lets us put arbitrary bytes in DATA
frames and arbitrary request headers; connection-level garbage is written to
the TLS socket directly. Each case checks the server's exact answer, and
that a separate fresh connection still gets SERVING from Health/Check
(issue #2: "one bad connection never affects another").
"""

import os
import signal
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402
from wardentest import health_pb2, inv_pb2  # noqa: E402

import h2.config  # noqa: E402  (python3-h2)
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
# Bound on waiting for any server answer on a raw connection.
ANSWER_TIMEOUT_S = 10.0
# Bound on events processed per wait (a chatty server cannot loop us forever).
MAX_READS = 10000

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GOAWAY_FRAME = 0x7
PROTOCOL_ERROR = 0x1


def grpc_msg(payload, compressed=0):
    return struct.pack(">BI", compressed, len(payload)) + payload


def tls_context(server, role="admin", alpn=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(server.ca_path())
    cert, key = server.cert_paths(role)
    ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(["h2"])
    return ctx


def tls_connect(server, role="admin", alpn=True):
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT_S)
    s = tls_context(server, role, alpn).wrap_socket(raw, server_hostname="127.0.0.1")
    if alpn:
        assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    return s


class Stream:
    def __init__(self):
        self.headers = None     # response headers {name: value}
        self.trailers = None
        self.data = b""
        self.ended = False
        self.reset = None       # RST_STREAM error code


class RawConn:
    """An h2 client connection over TLS that we can misuse."""

    def __init__(self, server, role="admin"):
        self.sock = tls_connect(server, role)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8",
            validate_outbound_headers=False, normalize_outbound_headers=False))
        self.h2.initiate_connection()
        self.flush()
        self.streams = {}
        self.inbuf = b""
        self.terminated = None  # GOAWAY error code
        self.last_stream_id = None
        self.protocol_error = None
        self.closed = False     # EOF seen

    def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, path, body=b"", content_type="application/grpc",
                extra=(), end_stream=True, timeout=None):
        sid = self.h2.get_next_available_stream_id()
        hdrs = [(":method", "POST"), (":scheme", "https"), (":path", path),
                (":authority", "127.0.0.1"), ("te", "trailers")]
        if content_type is not None:
            hdrs.append(("content-type", content_type))
        if timeout is not None:
            hdrs.append(("grpc-timeout", timeout))
        hdrs.extend(extra)
        self.streams[sid] = Stream()
        self.h2.send_headers(sid, hdrs, end_stream=(end_stream and not body))
        self.flush()
        if body:
            self.send_body(sid, body, end_stream=end_stream)
        return sid

    def pump_until(self, pred, timeout=ANSWER_TIMEOUT_S):
        """Read and dispatch events until pred() or EOF/timeout. Returns pred()."""
        deadline = time.monotonic() + timeout
        for _ in range(MAX_READS):
            if pred() or self.closed:
                return pred()
            left = deadline - time.monotonic()
            if left <= 0:
                return pred()
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return pred()
            except (ssl.SSLError, ConnectionError):
                data = b""
            if not data:
                self.closed = True
                return pred()
            self.inbuf += data
            self._dispatch_frames()
            try:
                self.flush()
            except (ssl.SSLError, ConnectionError):
                self.closed = True
        return pred()

    def _dispatch_frames(self):
        """Feed h2 one whole frame at a time. hyper-h2 treats a received
        GOAWAY as the end of the connection and raises on later frames, but
        RFC 9113 §6.8 lets the server finish streams up to the GOAWAY's last
        stream id (wardend does: GOAWAY, then Watch's NOT_SERVING and
        trailers), so after GOAWAY we decode frames ourselves."""
        while len(self.inbuf) >= 9:
            n = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + n:
                return
            fr, self.inbuf = self.inbuf[:9 + n], self.inbuf[9 + n:]
            if self.terminated is None:
                try:
                    events = self.h2.receive_data(fr)
                except h2.exceptions.ProtocolError as ex:
                    self.protocol_error = repr(ex)
                    self.closed = True
                    return
                for ev in events:
                    self._on(ev)
            else:
                self._on_raw_frame(fr[3], fr[4], int.from_bytes(fr[5:9], "big") & 0x7fffffff,
                                   fr[9:])

    def _on_raw_frame(self, ftype, flags, sid, payload):
        st = self.streams.get(sid)
        if ftype in (0x0, 0x1) and flags & 0x8:       # PADDED
            pad = payload[0]
            payload = payload[1:len(payload) - pad]
        if ftype == 0x0 and st is not None:           # DATA
            st.data += payload
        elif ftype == 0x1 and st is not None:         # HEADERS
            if flags & 0x20:                          # PRIORITY
                payload = payload[5:]
            hdrs = {(k.decode() if isinstance(k, bytes) else k):
                    (v.decode() if isinstance(v, bytes) else v)
                    for k, v in self.h2.decoder.decode(payload)}
            if st.headers is None:
                st.headers = hdrs
            else:
                st.trailers = hdrs
        elif ftype == 0x3 and st is not None:         # RST_STREAM
            st.reset = int.from_bytes(payload[:4], "big")
            st.ended = True
        elif ftype == GOAWAY_FRAME:
            self.terminated = int.from_bytes(payload[4:8], "big")
            self.last_stream_id = int.from_bytes(payload[:4], "big") & 0x7fffffff
        if ftype in (0x0, 0x1) and flags & 0x1 and st is not None:  # END_STREAM
            st.ended = True

    def send_body(self, sid, body, end_stream=True):
        """DATA within the peer's flow-control windows; stops early if the
        server ends or resets the stream first (e.g. a limit hit)."""
        st = self.streams[sid]
        while body and not st.ended and not self.closed:
            win = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if win <= 0:
                self.pump_until(lambda: st.ended or
                                self.h2.local_flow_control_window(sid) > 0)
                continue
            chunk, body = body[:win], body[win:]
            self.h2.send_data(sid, chunk, end_stream=(end_stream and not body))
            self.flush()
        return st

    def _on(self, ev):
        st = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            st.headers = dict(ev.headers)
            if ev.stream_ended is not None:
                st.ended = True
        elif isinstance(ev, h2.events.TrailersReceived):
            st.trailers = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            st.data += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            st.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            st.reset = ev.error_code
            st.ended = True
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = ev.error_code
            self.last_stream_id = ev.last_stream_id

    def wait_end(self, sid, timeout=ANSWER_TIMEOUT_S):
        st = self.streams[sid]
        self.pump_until(lambda: st.ended, timeout)
        return st

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def grpc_status(st):
    """grpc-status from trailers, or from a Trailers-Only response."""
    for h in (st.trailers, st.headers):
        if h and "grpc-status" in h:
            return int(h["grpc-status"])
    return None


def describe(st):
    return "headers=%r trailers=%r data=%r reset=%r" % (st.headers, st.trailers,
                                                       st.data[:64], st.reset)


class RawBytesTest(wt.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = wt.start_server(extra_args=["--max-msg-bytes", "65536"], name="raw")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        # A healthy connection held open across each case: the bad one next
        # to it must not disturb it.
        self.bystander = RawConn(self.server)

    def tearDown(self):
        try:
            sid = self.bystander.request(CHECK, grpc_msg(b""))
            st = self.bystander.wait_end(sid)
            self.assertEqual(grpc_status(st), 0, "bystander: " + describe(st))
        finally:
            self.bystander.close()
        self.assert_fresh_serving()

    def assert_fresh_serving(self):
        with self.server.channel("admin") as ch:
            r = wt.stub(ch, CHECK)(health_pb2.HealthCheckRequest(), timeout=ANSWER_TIMEOUT_S)
        self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)

    def answer(self, path, body, **kw):
        c = RawConn(self.server)
        try:
            sid = c.request(path, body, **kw)
            st = c.wait_end(sid)
            self.assertTrue(st.ended, "no answer within %.0fs: %s" % (ANSWER_TIMEOUT_S, describe(st)))
            return st
        finally:
            c.close()

    # -- the well-formed baseline: proves the raw client itself is right --
    def test_baseline_check(self):
        st = self.answer(CHECK, grpc_msg(b""))
        self.assertEqual(st.headers.get(":status"), "200", describe(st))
        self.assertTrue(st.headers.get("content-type", "").startswith("application/grpc"),
                        describe(st))
        self.assertEqual(grpc_status(st), 0, describe(st))
        self.assertEqual(st.data[:5], b"\x00\x00\x00\x00\x02", describe(st))
        r = health_pb2.HealthCheckResponse.FromString(st.data[5:])
        self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)

    def test_content_type_grpc_proto_accepted(self):
        st = self.answer(CHECK, grpc_msg(b""), content_type="application/grpc+proto")
        self.assertEqual(grpc_status(st), 0, describe(st))

    def test_message_split_across_data_frames(self):
        c = RawConn(self.server)
        try:
            sid = c.request(CHECK, end_stream=False)
            for b in grpc_msg(b""):
                c.h2.send_data(sid, bytes([b]))
                c.flush()
            c.h2.end_stream(sid)
            c.flush()
            st = c.wait_end(sid)
            self.assertEqual(grpc_status(st), 0, describe(st))
        finally:
            c.close()

    # -- malformed gRPC framing --
    def test_truncated_length_prefix(self):
        # END_STREAM after 3 of the 5 prefix bytes.
        st = self.answer(CHECK, b"\x00\x00\x00")
        self.assertEqual(st.headers.get(":status"), "200", describe(st))
        self.assertEqual(grpc_status(st), 3, describe(st))

    def test_truncated_body(self):
        # The prefix promises 10 bytes; 4 arrive, then END_STREAM.
        st = self.answer(CHECK, struct.pack(">BI", 0, 10) + b"\x0a\x02ab")
        self.assertEqual(grpc_status(st), 3, describe(st))

    def test_no_message_at_all(self):
        # A unary call needs exactly one request message. Issue #2:
        # malformed framing -> INVALID_ARGUMENT (INTERNAL tolerated, as
        # grpc-java answers) or a stream reset.
        st = self.answer(CHECK, b"")
        self.assertTrue(grpc_status(st) in (3, 13) or st.reset is not None, describe(st))

    def test_two_messages_on_unary(self):
        st = self.answer(CHECK, grpc_msg(b"") + grpc_msg(b""))
        self.assertTrue(grpc_status(st) in (3, 13) or st.reset is not None, describe(st))

    def test_garbage_protobuf(self):
        # Field 1 (string) claims 16 bytes, 3 follow: not a valid message.
        st = self.answer(CHECK, grpc_msg(b"\x0a\x10abc"))
        self.assertEqual(grpc_status(st), 3, describe(st))
        self.assertIn("grpc-message", st.trailers or st.headers or {}, describe(st))
        # And for an inventory method.
        st = self.answer("/warden.v1.Inventory/GetDevice", grpc_msg(b"\xff\xff\xff\xff"))
        self.assertEqual(grpc_status(st), 3, describe(st))

    def test_oversize_length_prefix(self):
        # 0x7fffffff announced against --max-msg-bytes 65536; no body follows.
        st = self.answer(CHECK, b"\x00\x7f\xff\xff\xff")
        self.assertEqual(grpc_status(st), 8, describe(st))
        # Just over the limit, with the body actually sent.
        body = inv_pb2.GetDeviceRequest(device_id="x" * 70000).SerializeToString()
        st = self.answer("/warden.v1.Inventory/GetDevice", grpc_msg(body))
        self.assertEqual(grpc_status(st), 8, describe(st))

    def test_compressed_without_encoding(self):
        # Compressed flag set but no grpc-encoding: PROTOCOL-HTTP2 says INTERNAL;
        # we accept INVALID_ARGUMENT or UNIMPLEMENTED too, never OK.
        st = self.answer(CHECK, grpc_msg(b"", compressed=1))
        self.assertIn(grpc_status(st), (3, 12, 13), describe(st))

    def test_unsupported_encoding(self):
        st = self.answer(CHECK, grpc_msg(b"\x1f\x8b", compressed=1),
                         extra=[("grpc-encoding", "snappy-unknown")])
        self.assertEqual(grpc_status(st), 12, describe(st))

    def test_wrong_content_type(self):
        st = self.answer(CHECK, grpc_msg(b""), content_type="application/json")
        status = st.headers.get(":status") if st.headers else None
        # PROTOCOL-HTTP2: SHOULD answer HTTP 415; a gRPC error is tolerated.
        ok = status == "415" or (status == "200" and grpc_status(st) not in (None, 0))
        self.assertTrue(ok, "wrong content-type not rejected: " + describe(st))

    def test_missing_content_type(self):
        st = self.answer(CHECK, grpc_msg(b""), content_type=None)
        status = st.headers.get(":status") if st.headers else None
        ok = status == "415" or (status == "200" and grpc_status(st) not in (None, 0))
        self.assertTrue(ok, "missing content-type not rejected: " + describe(st))

    def test_get_method(self):
        c = RawConn(self.server)
        try:
            sid = c.h2.get_next_available_stream_id()
            c.streams[sid] = Stream()
            c.h2.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                    (":path", CHECK), (":authority", "127.0.0.1"),
                                    ("content-type", "application/grpc"), ("te", "trailers")],
                              end_stream=True)
            c.flush()
            st = c.wait_end(sid)
            self.assertTrue(st.ended, describe(st))
            status = st.headers.get(":status") if st.headers else None
            self.assertTrue(st.reset is not None or status == "405"
                            or (status == "200" and grpc_status(st) not in (None, 0)),
                            "GET accepted: " + describe(st))
        finally:
            c.close()

    def test_bad_grpc_timeout_header(self):
        st = self.answer(CHECK, grpc_msg(b""), timeout="12x")
        self.assertIn(grpc_status(st), (3, 13), describe(st))

    def test_unknown_path_unimplemented(self):
        st = self.answer("/warden.v1.Inventory/Nope", grpc_msg(b""))
        self.assertEqual(grpc_status(st), 12, describe(st))
        # A :path without the leading '/' is malformed HTTP/2 (RFC 9113
        # §8.3.1): nghttp2 resets the stream; else UNIMPLEMENTED.
        st = self.answer("not-a-grpc-path", grpc_msg(b""))
        self.assertTrue(st.reset is not None or grpc_status(st) == 12, describe(st))

    # -- server-enforced deadline --
    def test_server_sends_deadline_exceeded(self):
        """Watch never ends on its own: with grpc-timeout 300m the *server*
        must end it with grpc-status 4 (this raw client enforces nothing)."""
        c = RawConn(self.server)
        try:
            t0 = time.monotonic()
            sid = c.request(WATCH, grpc_msg(b""), timeout="300m")
            st = c.wait_end(sid, timeout=ANSWER_TIMEOUT_S)
            took = time.monotonic() - t0
            self.assertTrue(st.ended, "server did not end Watch at its deadline: " + describe(st))
            self.assertEqual(grpc_status(st), 4, describe(st))
            self.assertGreaterEqual(took, 0.25)
            self.assertLess(took, 5.0)
            # First message SERVING before the deadline.
            self.assertEqual(st.data[:5], b"\x00\x00\x00\x00\x02", describe(st))
        finally:
            c.close()

    def test_deadline_zero_already_expired(self):
        st = self.answer("/warden.v1.Inventory/ListDevices",
                         grpc_msg(inv_pb2.ListDevicesRequest(page_size=10).SerializeToString()),
                         timeout="1n")
        # 1ns rounds up to 1ms; a fast server may still answer OK in time.
        self.assertIn(grpc_status(st), (0, 4), describe(st))

    # -- connection-level garbage: connection closed (GOAWAY), others fine --
    def _garbage_conn(self, payload, expect_goaway):
        s = tls_connect(self.server)
        try:
            s.sendall(payload)
            buf = b""
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            closed = False
            while time.monotonic() < deadline and len(buf) < (1 << 20):
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    break
                except (ssl.SSLError, ConnectionError):
                    d = b""
                if not d:
                    closed = True
                    break
                buf += d
            self.assertTrue(closed, "server kept the connection open after garbage; got %r"
                            % buf[:200])
            frames = parse_frames(buf)
            if expect_goaway:
                goaways = [f for f in frames if f[0] == GOAWAY_FRAME]
                self.assertTrue(goaways, "no GOAWAY before close: %r" % frames)
                code = struct.unpack(">I", goaways[-1][3][4:8])[0]
                self.assertEqual(code, PROTOCOL_ERROR, "GOAWAY code %d" % code)
            return frames
        finally:
            s.close()

    def test_invalid_preface(self):
        self._garbage_conn(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", expect_goaway=False)

    def test_random_garbage(self):
        self._garbage_conn(bytes(range(256)) * 4, expect_goaway=False)

    def test_data_on_stream_zero(self):
        bad = struct.pack(">I", 4)[1:] + bytes([0x0, 0x1]) + struct.pack(">I", 0) + b"oops"
        self._garbage_conn(H2_PREFACE + frame(0x4, 0, 0, b"") + bad, expect_goaway=True)

    def test_headers_on_even_stream(self):
        # Client-initiated streams are odd (RFC 9113 §5.1.1).
        hb = bytes([0x83, 0x87])  # :method POST, :scheme https (static table)
        bad = frame(0x1, 0x5, 2, hb)
        self._garbage_conn(H2_PREFACE + frame(0x4, 0, 0, b"") + bad, expect_goaway=True)

    def test_oversize_frame(self):
        # 20 KiB DATA frame: above the default SETTINGS_MAX_FRAME_SIZE (16 KiB).
        bad = frame(0x0, 0x0, 1, b"\x00" * (20 << 10))
        self._garbage_conn(H2_PREFACE + frame(0x4, 0, 0, b"") + bad, expect_goaway=False)

    def test_half_preface_then_idle_is_not_fatal_to_others(self):
        # A slow/stuck client holding a half preface does not block others.
        s = tls_connect(self.server)
        try:
            s.sendall(H2_PREFACE[:10])
            self.assert_fresh_serving()
        finally:
            s.close()

    def test_no_alpn_prior_knowledge(self):
        s = tls_connect(self.server, alpn=False)
        try:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(
                client_side=True, header_encoding="utf-8"))
            conn.initiate_connection()
            conn.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":path", CHECK),
                                  (":authority", "127.0.0.1"), ("content-type", "application/grpc"),
                                  ("te", "trailers")])
            conn.send_data(1, grpc_msg(b""), end_stream=True)
            s.sendall(conn.data_to_send())
            trailers = None
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while trailers is None and time.monotonic() < deadline:
                d = s.recv(65536)
                if not d:
                    break
                for ev in conn.receive_data(d):
                    if isinstance(ev, h2.events.TrailersReceived):
                        trailers = dict(ev.headers)
                s.sendall(conn.data_to_send())
            self.assertIsNotNone(trailers)
            self.assertEqual(trailers.get("grpc-status"), "0")
        finally:
            s.close()


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def parse_frames(buf):
    """[(type, flags, stream, payload)] for the complete frames in buf."""
    out, i = [], 0
    while i + 9 <= len(buf):
        n = int.from_bytes(buf[i:i + 3], "big")
        if i + 9 + n > len(buf):
            break
        out.append((buf[i + 3], buf[i + 4], int.from_bytes(buf[i + 5:i + 9], "big") & 0x7fffffff,
                    buf[i + 9:i + 9 + n]))
        i += 9 + n
    return out


class GoawayOnSigtermTest(wt.TestCase):
    def test_sigterm_sends_goaway_and_drains(self):
        s = wt.start_server(name="goaway")
        try:
            c = RawConn(s)
            sid = c.request(WATCH, grpc_msg(b""), timeout="30S")
            st = c.streams[sid]
            c.pump_until(lambda: len(st.data) >= 7)
            self.assertEqual(st.data[:7], b"\x00\x00\x00\x00\x02\x08\x01", describe(st))
            s.signal(signal.SIGTERM)
            c.pump_until(lambda: c.terminated is not None, timeout=wt.STOP_TIMEOUT_S)
            self.assertIsNotNone(c.terminated, "no GOAWAY after SIGTERM (closed=%s)" % c.closed)
            self.assertEqual(c.terminated, 0, "GOAWAY code should be NO_ERROR")
            c.pump_until(lambda: c.closed, timeout=wt.STOP_TIMEOUT_S)
            self.assertTrue(c.closed, "connection not closed after the drain")
            # server/node.h shutdown order: health goes NOT_SERVING first and
            # Watch streams get it, then the stream ends (no hang).
            self.assertIn(b"\x00\x00\x00\x00\x02\x08\x02", st.data,
                          "Watch did not see NOT_SERVING: " + describe(st))
            self.assertTrue(st.ended, "Watch stream not ended: " + describe(st))
            rc = s.wait(wt.STOP_TIMEOUT_S)
            self.assertEqual(rc, 0)
            c.close()
        finally:
            s.stop()


if __name__ == "__main__":
    wt.main()

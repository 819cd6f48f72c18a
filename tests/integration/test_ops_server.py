"""Issue 9, server side, end to end on one `wardend --dev` per test class:

  - GET /metrics on the separate plain-HTTP listener has the expected
    series (HELP/TYPE lines, request counters and histograms, Raft
    indexes) and the values move after gRPC calls; /healthz answers;
    anything else is 404/405;
  - admission: a tiny per-principal rate limit gives RESOURCE_EXHAUSTED
    with a clear message, counted by reason, and the principal recovers
    once its bucket refills; health checks are exempt;
  - --config FILE: an unknown key exits 2 naming FILE:LINE; precedence
    flag > environment > file;
  - SIGHUP with a server certificate re-issued from the dev CA (openssl
    CLI): new connections see the new serial, an established connection
    keeps working; a broken certificate keeps the old one.
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402
import grpc  # noqa: E402

# ---- limits -------------------------------------------------------------------
HTTP_TIMEOUT_S = 5.0
WAIT_S = 10.0          # any bounded wait for a log line or a metric
RPC_TIMEOUT_S = 5.0

HEALTH = "/grpc.health.v1.Health/Check"
LIST = "/warden.v1.Inventory/ListDevices"


def scrape(port, path="/metrics", method="GET"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as ex:
        return ex.code, ex.read().decode()


def sample(text, name, labels=None):
    """Value of one sample, or None. labels: dict that must all match."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            return float(m.group(4))
    return None


class MetricsTest(wt.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mport = wt.free_port()
        cls.srv = wt.start_server(["--metrics-listen", "127.0.0.1:%d" % cls.mport])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_scrape_series_and_change(self):
        st, before = scrape(self.mport)
        self.assertEqual(st, 200)
        for fam, typ in (("warden_grpc_requests_total", "counter"),
                         ("warden_grpc_request_duration_seconds", "histogram"),
                         ("warden_raft_term", "gauge"),
                         ("warden_raft_commit_index", "gauge"),
                         ("warden_raft_applied_index", "gauge"),
                         ("warden_raft_last_index", "gauge"),
                         ("warden_raft_leader_changes_total", "counter"),
                         ("warden_raft_snapshots_total", "counter"),
                         ("warden_authz_denials_total", "counter"),
                         ("warden_admission_rejections_total", "counter"),
                         ("warden_lmdb_map_size_bytes", "gauge"),
                         ("warden_tls_reloads_total", "counter")):
            self.assertIn("# TYPE %s %s\n" % (fam, typ), before)
            self.assertIn("# HELP %s " % fam, before)
        self.assertEqual(sample(before, "warden_raft_state", {"state": "leader"}), 1)
        self.assertGreaterEqual(sample(before, "warden_raft_term"), 1)
        lab = {"method": HEALTH, "status": "OK"}
        n0 = sample(before, "warden_grpc_requests_total", lab) or 0
        with self.srv.channel("admin") as ch:
            for _ in range(3):
                wt.stub(ch, HEALTH)(wt.health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
            # A wrong-role call: the role gate counts a denial.
        with self.srv.channel("gateway") as ch:
            self.assertRpcError(grpc.StatusCode.PERMISSION_DENIED,
                                wt.stub(ch, "/warden.v1.Inventory/EnrollDevice"),
                                wt.inv_pb2.EnrollDeviceRequest(), timeout=RPC_TIMEOUT_S)
        _, after = scrape(self.mport)
        self.assertEqual(sample(after, "warden_grpc_requests_total", lab), n0 + 3)
        self.assertEqual(sample(after, "warden_grpc_request_duration_seconds_count", lab), n0 + 3)
        self.assertEqual(sample(after, "warden_grpc_request_duration_seconds_bucket",
                                dict(lab, le="+Inf")), n0 + 3)
        self.assertGreaterEqual(sample(after, "warden_authz_denials_total",
                                       {"reason": "role_gate"}), 1)
        self.assertEqual(sample(after, "warden_grpc_requests_total",
                                {"method": "/warden.v1.Inventory/EnrollDevice",
                                 "status": "PERMISSION_DENIED"}), 1)
        self.assertGreaterEqual(sample(after, "warden_raft_commit_index"),
                                sample(before, "warden_raft_commit_index"))

    def test_handshake_burst_is_deferred_and_completes(self):
        """More ClientHellos in one loop iteration than server/conn.h
        CONN_HANDSHAKES_PER_ITER (8): the server is stopped (SIGSTOP, our
        own child) while N_BURST clients send theirs, so one poll returns
        them all. The surplus waits for later iterations (counted), every
        handshake completes, and an established connection keeps answering."""
        N_BURST = 48
        cert, key = self.srv.cert_paths("admin")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.srv.ca_path())
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["h2"])
        _, before = scrape(self.mport)
        d0 = sample(before, "warden_tls_handshakes_deferred_total")
        self.assertIsNotNone(d0, "no warden_tls_handshakes_deferred_total series")
        est = self.srv.channel("admin")
        chk = wt.stub(est, HEALTH)
        chk(wt.health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
        socks = []
        pid = self.srv.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(N_BURST):
                raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5.0)
                raw.setblocking(False)
                s = ctx.wrap_socket(raw, server_hostname="127.0.0.1",
                                    do_handshake_on_connect=False)
                try:
                    s.do_handshake()           # sends the ClientHello
                except ssl.SSLWantReadError:
                    pass
                socks.append(s)
        finally:
            os.kill(pid, signal.SIGCONT)
        try:
            self.assertEqual(chk(wt.health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S).status,
                             wt.health_pb2.HealthCheckResponse.SERVING)
            done = 0
            for s in socks:
                s.settimeout(10.0)
                s.do_handshake()
                self.assertEqual(s.version(), "TLSv1.3")
                done += 1
            self.assertEqual(done, N_BURST)
            _, after = scrape(self.mport)
            self.assertGreater(sample(after, "warden_tls_handshakes_deferred_total"), d0)
        finally:
            for s in socks:
                s.close()
            est.close()

    def test_http_surface(self):
        st, body = scrape(self.mport, "/healthz")
        self.assertEqual((st, body), (200, "ok\n"))
        self.assertEqual(scrape(self.mport, "/nope")[0], 404)
        self.assertEqual(scrape(self.mport, "/metrics", method="POST")[0], 405)
        # An oversized request head is refused and the connection closed.
        with socket.create_connection(("127.0.0.1", self.mport), timeout=HTTP_TIMEOUT_S) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
            self.assertIn(b" 431 ", s.recv(4096))


class RateLimitTest(wt.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mport = wt.free_port()
        cls.srv = wt.start_server(["--metrics-listen", "127.0.0.1:%d" % cls.mport,
                                   "--rate-limit-rps", "2", "--rate-limit-burst", "3"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_rate_limit_then_recovery(self):
        with self.srv.channel("auditor") as ch:
            call = wt.stub(ch, LIST)
            req = wt.inv_pb2.ListDevicesRequest()
            codes = []
            for _ in range(8):
                try:
                    call(req, timeout=RPC_TIMEOUT_S)
                    codes.append("OK")
                except grpc.RpcError as ex:
                    codes.append(ex.code().name)
                    if ex.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        self.assertIn("rate limit exceeded for auditor/", ex.details())
            self.assertIn("RESOURCE_EXHAUSTED", codes, codes)
            # Health is exempt while the principal is throttled.
            wt.stub(ch, HEALTH)(wt.health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
            # Another principal has its own bucket.
            with self.srv.channel("admin") as ch2:
                wt.stub(ch2, LIST)(req, timeout=RPC_TIMEOUT_S)
            _, text = scrape(self.mport)
            self.assertGreaterEqual(sample(text, "warden_admission_rejections_total",
                                           {"reason": "rate_limit"}), 1)
            self.assertGreaterEqual(sample(text, "warden_grpc_requests_total",
                                           {"method": LIST, "status": "RESOURCE_EXHAUSTED"}), 1)
            time.sleep(1.6)  # 2 tokens/s: at least 3 back
            call(req, timeout=RPC_TIMEOUT_S)


class ConfigFileTest(wt.TestCase):
    def run_wardend(self, args, env=None, timeout=20):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([wt.WARDEND] + args, capture_output=True, timeout=timeout,
                              env=e, stdin=subprocess.DEVNULL)

    def test_unknown_key_exits_2_with_file_line(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "w.conf")
            with open(path, "w") as f:
                f.write("# a comment\n\ndev = true\nlisten = 127.0.0.1:1\nlisten_adress = x\n")
            r = self.run_wardend(["--config", path, "--data-dir", os.path.join(d, "data")])
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("%s:5: unknown key \\\"listen_adress\\\"" % path, r.stderr.decode())

    def test_duplicate_and_bad_value(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "w.conf")
            with open(path, "w") as f:
                f.write("max_conns = 5\nmax_conns = 6\n")
            r = self.run_wardend(["--config", path])
            self.assertEqual(r.returncode, 2)
            self.assertIn(":2: duplicate key", r.stderr.decode())
            with open(path, "w") as f:
                f.write("idle_timeout_ms = soon\n")
            r = self.run_wardend(["--config", path])
            self.assertEqual(r.returncode, 2)
            self.assertIn(":1: idle_timeout_ms", r.stderr.decode())

    def test_precedence_flag_env_file(self):
        """The file sets dev mode and a metrics port; the environment
        overrides the metrics port; a flag overrides the environment."""
        with tempfile.TemporaryDirectory() as d:
            p_file, p_env, p_flag = wt.free_port(), wt.free_port(), wt.free_port()
            path = os.path.join(d, "w.conf")
            with open(path, "w") as f:
                f.write("dev = yes\nmetrics_listen = 127.0.0.1:%d\n" % p_file)
            srv = wt.Server(["--config", path])
            srv.start()
            try:
                self.assertEqual(scrape(p_file, "/healthz")[0], 200)
            finally:
                srv.stop()
            os.environ["WARDEN_METRICS_LISTEN"] = "127.0.0.1:%d" % p_env
            try:
                srv = wt.Server(["--config", path], data_dir=srv.data_dir)
                srv.start()
                try:
                    self.assertEqual(scrape(p_env, "/healthz")[0], 200)
                finally:
                    srv.stop()
                srv = wt.Server(["--config", path, "--metrics-listen",
                                 "127.0.0.1:%d" % p_flag], data_dir=srv.data_dir)
                srv.start()
                try:
                    self.assertEqual(scrape(p_flag, "/healthz")[0], 200)
                finally:
                    srv.stop()
            finally:
                del os.environ["WARDEN_METRICS_LISTEN"]


def reissue_server_cert(certs, serial_hex):
    """A new server key and certificate from the dev CA, same SANs."""
    d = tempfile.mkdtemp(prefix="warden-reissue-")
    key = os.path.join(d, "k.pem")
    csr = os.path.join(d, "c.csr")
    crt = os.path.join(d, "c.pem")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    wt._openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    wt._openssl("req", "-new", "-key", key, "-subj", "/CN=warden-server", "-out", csr)
    wt._openssl("x509", "-req", "-in", csr, "-CA", os.path.join(certs, "ca.pem"),
                "-CAkey", os.path.join(certs, "ca-key.pem"), "-set_serial", "0x" + serial_hex,
                "-days", "2", "-extfile", ext, "-out", crt)
    return crt, key


def server_serial(srv):
    """Serial (upper-case hex) of the certificate a new TLS connection sees."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(srv.ca_path())
    cert, key = srv.cert_paths("admin")
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", srv.port), timeout=HTTP_TIMEOUT_S) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert()["serialNumber"].upper()


class CertReloadTest(wt.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mport = wt.free_port()
        cls.srv = wt.start_server(["--metrics-listen", "127.0.0.1:%d" % cls.mport])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def wait_log(self, needle, count):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.srv.log_text().count(needle) >= count:
                return
            time.sleep(0.05)
        self.fail("log line %r not seen %d times" % (needle, count))

    def test_sighup_reload(self):
        certs = self.srv.certs
        old_serial = server_serial(self.srv)
        old_ch = self.srv.channel("admin")
        health = wt.stub(old_ch, HEALTH)
        health(wt.health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)

        new_serial = "7E5701DEADBEEF42"
        crt, key = reissue_server_cert(certs, new_serial)
        # Replace both files, then SIGHUP (key before cert would briefly
        # mismatch; a reload never reads half a pair because it only runs on
        # the signal).
        os.replace(key, os.path.join(certs, "server-key.pem"))
        os.replace(crt, os.path.join(certs, "server.pem"))
        self.srv.signal(signal.SIGHUP)
        self.wait_log("TLS certificates reloaded for new connections", 1)
        self.assertEqual(server_serial(self.srv), new_serial)
        self.assertNotEqual(old_serial, new_serial)
        # The established connection still works.
        health(wt.health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
        # A fresh gRPC channel works with the new certificate.
        with self.srv.channel("admin") as ch:
            wt.stub(ch, HEALTH)(wt.health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)

        # A broken certificate: the reload fails, the last good one stays.
        with open(os.path.join(certs, "server.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        self.srv.signal(signal.SIGHUP)
        self.wait_log("TLS reload failed; keeping the current certificate", 1)
        self.assertEqual(server_serial(self.srv), new_serial)
        health(wt.health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
        _, text = scrape(self.mport)
        self.assertEqual(sample(text, "warden_tls_reloads_total"), 1)
        self.assertEqual(sample(text, "warden_tls_reload_failures_total"), 1)
        old_ch.close()


if __name__ == "__main__":
    wt.main()

"""h2load (nghttp2-client) drives 50,000 unary Health/Check calls over TLS.

h2load cannot present a client certificate, so socat bridges: plain TCP on
127.0.0.1 -> mTLS (admin cert) to wardend. h2load counts a request as
succeeded on HTTP 2xx, and gRPC answers 200 even on error, so the test also
checks the DATA byte total: every SERVING reply is exactly 7 bytes
(5-byte prefix + 08 01), so N replies are N*7 bytes, no more, no less.

The req/s figure is printed (recorded, not asserted).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402

N_REQUESTS = int(os.environ.get("WARDEN_H2LOAD_N", "50000"))
CLIENTS = 4
STREAMS_PER_CLIENT = 32
# Wall-clock bound for the whole h2load run (a healthy run takes seconds).
H2LOAD_TIMEOUT_S = 300.0
# Bound on waiting for socat to listen.
SOCAT_READY_S = 10.0
SERVING_REPLY = b"\x00\x00\x00\x00\x02\x08\x01"


class H2loadTest(wt.TestCase):
    def setUp(self):
        self.server = wt.start_server(name="h2load")
        self.socat = None
        self.tmp = tempfile.mkdtemp(prefix="warden-h2load-")

    def tearDown(self):
        if self.socat is not None and self.socat.poll() is None:
            # socat forks per connection; its children share its process
            # group (we started it as a group leader), so signal that group.
            try:
                os.killpg(self.socat.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.socat.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.socat.pid, signal.SIGKILL)
                self.socat.wait(timeout=5)
        self.server.stop()

    def start_bridge(self):
        cert, key = self.server.cert_paths("admin")
        for _ in range(wt.PORT_RETRIES):
            port = wt.free_port()
            with open(os.path.join(self.tmp, "socat.log"), "wb") as log:
                self.socat = subprocess.Popen(
                    ["socat", "-d", "-d", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % port,
                     "OPENSSL:127.0.0.1:%d,cert=%s,key=%s,cafile=%s,verify=1"
                     % (self.server.port, cert, key, self.server.ca_path())],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True)
            deadline = time.monotonic() + SOCAT_READY_S
            while time.monotonic() < deadline and self.socat.poll() is None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        return port
                time.sleep(0.05)
            if self.socat.poll() is None:
                os.killpg(self.socat.pid, signal.SIGKILL)
                self.socat.wait(timeout=5)
        self.fail("socat bridge did not come up")

    def socat_log(self):
        try:
            with open(os.path.join(self.tmp, "socat.log"), "rb") as f:
                return f.read()[-8192:].decode(errors="replace")
        except OSError as ex:
            return repr(ex)

    def test_h2load_50k_health_checks(self):
        port = self.start_bridge()
        body = os.path.join(self.tmp, "check.bin")
        with open(body, "wb") as f:
            f.write(b"\x00\x00\x00\x00\x00")  # empty HealthCheckRequest
        cmd = ["h2load", "-n", str(N_REQUESTS), "-c", str(CLIENTS),
               "-m", str(STREAMS_PER_CLIENT), "-d", body,
               "-H", "content-type: application/grpc", "-H", "te: trailers",
               "http://127.0.0.1:%d/grpc.health.v1.Health/Check" % port]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, timeout=H2LOAD_TIMEOUT_S)
        took = time.monotonic() - t0
        out = r.stdout.decode(errors="replace")
        print("\n" + " ".join(cmd) + "\n" + out, file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        self.assertIsNotNone(m, "cannot parse h2load output")
        total, started, done, ok, failed, errored, tmo = map(int, m.groups())
        self.assertEqual((done, ok, failed, errored, tmo), (N_REQUESTS, N_REQUESTS, 0, 0, 0),
                         "socat log:\n" + self.socat_log())
        m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        self.assertIsNotNone(m)
        self.assertEqual(int(m.group(1)), N_REQUESTS)
        # Every reply carried exactly one SERVING message.
        m = re.search(r"traffic: .*?\(\d+\) total, .*?\(\d+\) headers.*?, .*?\((\d+)\) data", out)
        self.assertIsNotNone(m, "cannot parse traffic line")
        self.assertEqual(int(m.group(1)), N_REQUESTS * len(SERVING_REPLY))
        rps = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
        print("H2LOAD_RESULT: %d unary Health/Check over mTLS (socat bridge), "
              "-c %d -m %d: %s req/s (wall %.1fs)"
              % (N_REQUESTS, CLIENTS, STREAMS_PER_CLIENT, rps.group(1) if rps else "?", took),
              file=sys.stderr)
        # The server is still healthy afterwards.
        with self.server.channel("admin") as ch:
            r = wt.stub(ch, "/grpc.health.v1.Health/Check")(
                wt.health_pb2.HealthCheckRequest(), timeout=10)
        self.assertEqual(r.status, wt.health_pb2.HealthCheckResponse.SERVING)


if __name__ == "__main__":
    wt.main()

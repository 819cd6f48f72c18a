"""wardentest: harness for integration tests against real `wardend` processes.

Run by Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf). Every
server binds 127.0.0.1 only, on a fresh port in a fresh temp dir. Every wait
is bounded. Only processes started here are signalled, by PID.

Environment:
  WARDEN_BUILD  build dir holding wardend and wardenctl (default: cwd)
  WARDEN_SRC    source root (default: two levels above this file)
  WARDEN_TEST_SEED  seed for generated ids (default: time-based; printed on
                failure so a run can be reproduced)
  WARDEN_KEEP_TMP=1  keep temp dirs (data, certs, logs) after the run

On a failing test the harness prints the seed, every server's port, data dir,
command line and its stderr log (JSON lines).
"""

import contextlib
import hashlib
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

BUILD = os.path.abspath(os.environ.get("WARDEN_BUILD", os.getcwd()))
SRC = os.path.abspath(os.environ.get(
    "WARDEN_SRC", os.path.join(os.path.dirname(__file__), "..", "..")))
WARDEND = os.path.join(BUILD, "wardend")
WARDENCTL = os.path.join(BUILD, "wardenctl")

SEED = int(os.environ.get("WARDEN_TEST_SEED", str(int(time.time() * 1000) % 10**9)))
RNG = random.Random(SEED)

ROLES = ("admin", "operator", "gateway", "auditor", "rollout")

# ---- limits: every wait and retry is bounded --------------------------------
# wardend start: cert generation + LMDB open + listen; generous for ASan builds.
START_TIMEOUT_S = 30.0
# SIGTERM drain bound; wardend's own drain wait must be below this.
STOP_TIMEOUT_S = 15.0
# Retries when the port we picked was taken between probe and bind.
PORT_RETRIES = 5
# Subprocess (openssl, protoc) bound.
TOOL_TIMEOUT_S = 60.0
# Server log bytes printed on failure (tail).
LOG_TAIL_BYTES = 64 << 10


# ---- generated protobuf message classes ------------------------------------
PROTOS = ("grpc/health/v1/health.proto", "warden/v1/inventory.proto")
PY_OUT = os.path.join(BUILD, "py")


def _gen_protos():
    """protoc --python_out into $WARDEN_BUILD/py, regenerated if a .proto is
    newer than its output. Modules are loaded by file path under private
    names: the proto package `grpc.health.v1` would otherwise collide with
    the grpcio package `grpc`."""
    os.makedirs(PY_OUT, exist_ok=True)
    mods = {}
    for rel in PROTOS:
        src = os.path.join(SRC, "proto", rel)
        out = os.path.join(PY_OUT, rel[:-len(".proto")] + "_pb2.py")
        if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
            subprocess.run(["protoc", "--python_out=" + PY_OUT,
                            "-I" + os.path.join(SRC, "proto"), src],
                           check=True, timeout=TOOL_TIMEOUT_S)
        name = "wardentest_pb_" + os.path.basename(out)[:-3]
        spec = importlib.util.spec_from_file_location(name, out)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods[rel] = mod
    return mods


_MODS = _gen_protos()
health_pb2 = _MODS["grpc/health/v1/health.proto"]
inv_pb2 = _MODS["warden/v1/inventory.proto"]

# Method table: path -> (request class, response class, streaming).
METHODS = {
    "/grpc.health.v1.Health/Check":
        (health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, False),
    "/grpc.health.v1.Health/Watch":
        (health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, True),
    "/warden.v1.Inventory/EnrollDevice":
        (inv_pb2.EnrollDeviceRequest, inv_pb2.EnrollDeviceResponse, False),
    "/warden.v1.Inventory/GetDevice":
        (inv_pb2.GetDeviceRequest, inv_pb2.GetDeviceResponse, False),
    "/warden.v1.Inventory/ListDevices":
        (inv_pb2.ListDevicesRequest, inv_pb2.ListDevicesResponse, False),
}


def stub(channel, path):
    """A callable for `path` on `channel` (no grpc_tools here, so by hand)."""
    req, resp, streaming = METHODS[path]
    mk = channel.unary_stream if streaming else channel.unary_unary
    return mk(path, request_serializer=req.SerializeToString,
              response_deserializer=resp.FromString)


# ---- keys and certificates via the openssl CLI ------------------------------
def _openssl(*args, inp=None):
    r = subprocess.run(["openssl", *args], input=inp, capture_output=True,
                       timeout=TOOL_TIMEOUT_S)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args),
                                                      r.stderr.decode(errors="replace")))
    return r.stdout


def gen_ed25519_pub():
    """A real Ed25519 public key, raw 32 bytes (last 32 bytes of the SPKI)."""
    priv = _openssl("genpkey", "-algorithm", "ed25519")
    der = _openssl("pkey", "-pubout", "-outform", "DER", inp=priv)
    assert len(der) == 44, len(der)
    return der[-32:]


def gen_p256_pub():
    """A real P-256 public key: (DER SubjectPublicKeyInfo, 65-byte SEC1 point)."""
    priv = _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    der = _openssl("pkey", "-pubout", "-outform", "DER", inp=priv)
    assert len(der) == 91 and der[-65] == 4, len(der)
    return der, der[-65:]


def gen_foreign_client_cert(directory, role="admin", name="evil"):
    """A CA nobody trusts, and a client cert it signs carrying a well-formed
    warden principal URI. Returns (cert_path, key_path, ca_path)."""
    os.makedirs(directory, exist_ok=True)
    ca_key = os.path.join(directory, "foreign-ca-key.pem")
    ca = os.path.join(directory, "foreign-ca.pem")
    key = os.path.join(directory, "foreign-%s-key.pem" % role)
    csr = os.path.join(directory, "foreign-%s.csr" % role)
    cert = os.path.join(directory, "foreign-%s.pem" % role)
    ext = os.path.join(directory, "foreign.ext")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", "/CN=foreign dev CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=%s" % name)
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\n"
                "subjectAltName=URI:warden://role/%s/%s\n" % (role, name))
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
             "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key, ca


def digest32(tag):
    return hashlib.sha256(tag.encode()).digest()


def uid(prefix):
    """A device id unique within this run, reproducible from SEED."""
    return "%s-%d-%06x" % (prefix, SEED, RNG.getrandbits(24))


# ---- ports ------------------------------------------------------------------
def free_port():
    """A port that was free on 127.0.0.1 a moment ago (bind :0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the server -------------------------------------------------------------
_ALL_SERVERS = []  # every Server made in this process, for failure dumps


class ServerError(Exception):
    pass


class Server:
    """One `wardend --dev` process. start() blocks until Health/Check says
    SERVING (bounded); stop() is SIGTERM, bounded wait, then SIGKILL."""

    def __init__(self, extra_args=(), data_dir=None, name="wardend"):
        self.extra_args = list(extra_args)
        self.name = name
        self._own_tmp = data_dir is None
        self.tmp = tempfile.mkdtemp(prefix="warden-it-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.port = None
        self.proc = None
        self.cmd = None
        self.logs = []          # one stderr log path per start()
        self.exit_codes = []
        _ALL_SERVERS.append(self)

    @property
    def certs(self):
        return os.path.join(self.data_dir, "dev-certs")

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def cert_paths(self, role):
        return (os.path.join(self.certs, "%s.pem" % role),
                os.path.join(self.certs, "%s-key.pem" % role))

    def ca_path(self):
        return os.path.join(self.certs, "ca.pem")

    def read_cert(self, role):
        c, k = self.cert_paths(role)
        with open(c, "rb") as f1, open(k, "rb") as f2:
            return f1.read(), f2.read()

    def read_ca(self):
        with open(self.ca_path(), "rb") as f:
            return f.read()

    # -- lifecycle --
    def start(self, port=None):
        if not os.access(WARDEND, os.X_OK):
            raise ServerError("no wardend at %s (set WARDEN_BUILD)" % WARDEND)
        last = None
        for attempt in range(PORT_RETRIES):
            self.port = port if port is not None else free_port()
            try:
                self._start_once()
                return self
            except ServerError as ex:
                last = ex
                # Retry only when someone grabbed our port meanwhile.
                text = self.log_text().lower()
                if port is None and ("in use" in text or "raft_start" in text):
                    self.peer_port = None
                    continue
                raise
        raise last

    def _start_once(self):
        log = os.path.join(self.tmp, "%s-%d.log" % (self.name, len(self.logs)))
        self.logs.append(log)
        # The dev node's Raft port defaults to the client port + 1, which
        # may belong to someone else; give it its own free port, kept for
        # the life of this Server so restarts see the same address.
        if not any(a.startswith("--peer-listen") for a in self.extra_args):
            if getattr(self, "peer_port", None) is None:
                self.peer_port = free_port()
            peer = ["--peer-listen", "127.0.0.1:%d" % self.peer_port]
        else:
            peer = []
        self.cmd = [WARDEND, "--dev", "--data-dir", self.data_dir,
                    "--listen", self.addr] + peer + self.extra_args
        with open(log, "wb") as errf:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                         stdout=errf, stderr=errf, cwd=self.tmp)
        deadline = time.monotonic() + START_TIMEOUT_S
        last_err = "no attempt"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_codes.append(rc)
                self.proc = None
                raise ServerError("wardend exited with %d during start" % rc)
            if os.path.exists(os.path.join(self.certs, "admin-key.pem")):
                try:
                    with self.channel("admin") as ch:
                        r = stub(ch, "/grpc.health.v1.Health/Check")(
                            health_pb2.HealthCheckRequest(), timeout=1.0)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                    last_err = "status %d" % r.status
                except grpc.RpcError as ex:
                    last_err = "%s %s" % (ex.code(), ex.details())
                except (OSError, ValueError) as ex:  # certs half-written
                    last_err = repr(ex)
            time.sleep(0.1)
        self.kill()
        raise ServerError("wardend not SERVING within %.0fs (last: %s)"
                          % (START_TIMEOUT_S, last_err))

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Exit code, or None if still running after timeout seconds."""
        if self.proc is None:
            return self.exit_codes[-1] if self.exit_codes else None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.exit_codes.append(rc)
        self.proc = None
        return rc

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM; wait up to timeout; then SIGKILL. Returns (exit code,
        seconds taken, killed)."""
        if self.proc is None:
            return (self.exit_codes[-1] if self.exit_codes else None, 0.0, False)
        t0 = time.monotonic()
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            return (self.exit_codes[-1], time.monotonic() - t0, True)
        return (rc, time.monotonic() - t0, False)

    def kill(self):
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.exit_codes.append(self.proc.wait(timeout=TOOL_TIMEOUT_S))
        self.proc = None

    def cleanup(self):
        self.kill()
        if os.environ.get("WARDEN_KEEP_TMP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)
            # An external data_dir belongs to the caller.

    # -- clients --
    def credentials(self, role=None):
        """mTLS channel credentials for role; role None = no client cert."""
        ca = self.read_ca()
        if role is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        cert, key = self.read_cert(role)
        return grpc.ssl_channel_credentials(root_certificates=ca,
                                            private_key=key, certificate_chain=cert)

    def channel(self, role="admin", creds=None, options=()):
        """A fresh secure channel with its own connection (local subchannel
        pool, so channels never share a connection behind our back)."""
        opts = [("grpc.use_local_subchannel_pool", 1),
                ("grpc.enable_retries", 0),
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", 64 << 20)]
        opts += list(options)
        return grpc.secure_channel(self.addr, creds or self.credentials(role), opts)

    def log_text(self):
        out = []
        for p in self.logs:
            try:
                with open(p, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    n = f.tell()
                    f.seek(max(0, n - LOG_TAIL_BYTES))
                    out.append("--- %s%s ---\n" % (p, " (tail)" if n > LOG_TAIL_BYTES else ""))
                    out.append(f.read().decode(errors="replace"))
            except OSError as ex:
                out.append("--- %s: %s ---\n" % (p, ex))
        return "".join(out)

    def describe(self):
        return ("server %s: port=%s data_dir=%s exit_codes=%s\n  cmd: %s"
                % (self.name, self.port, self.data_dir, self.exit_codes,
                   " ".join(self.cmd or [])))


def start_server(*args, **kw):
    """Server(*args, **kw).start(), dumping logs if the start fails (for
    setUpClass, whose errors bypass TestCase.run)."""
    s = Server(*args, **kw)
    try:
        return s.start()
    except BaseException:
        dump_servers()
        raise


def dump_servers(stream=sys.stderr):
    print("\n===== warden integration failure: seed=%d (rerun with "
          "WARDEN_TEST_SEED=%d) =====" % (SEED, SEED), file=stream)
    for s in _ALL_SERVERS:
        print(s.describe(), file=stream)
        print(s.log_text(), file=stream)
    print("===== end of server logs =====", file=stream)


class TestCase(unittest.TestCase):
    """Prints the seed, ports and server logs when a test fails."""

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            dump_servers()
        return out

    def assertRpcError(self, code, fn, *args, **kw):
        """Call fn; assert it raises grpc.RpcError with `code`. Returns the
        error for further checks."""
        try:
            r = fn(*args, **kw)
        except grpc.RpcError as ex:
            self.assertEqual(ex.code(), code,
                             "expected %s, got %s: %r" % (code, ex.code(), ex.details()))
            return ex
        self.fail("expected %s, got OK: %r" % (code, r))


def main():
    print("warden integration: seed=%d build=%s src=%s" % (SEED, BUILD, SRC),
          file=sys.stderr)
    try:
        unittest.main(verbosity=2)
    finally:
        for s in _ALL_SERVERS:
            s.cleanup()

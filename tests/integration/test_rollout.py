"""Issue 6 end to end: staged firmware rollouts through wardend's gRPC glue
(server/svc_rollout.c) on a real 3-node cluster on loopback.

What it shows, with python3-grpcio against real processes:
  - manifests: valid, bad signature, unknown key, revoked key (rotation:
    register the new key, revoke the old), counter not increasing (per
    hardware model, also for one model of several), malformed, wrong
    hardware (a release for another model never targets a device);
  - anti-downgrade through every API path: CreateRelease, a rollout of an
    older release after a newer one is installed, GetDesiredState (the
    target is always above the installed counter), a late report for the
    older release (WRONG_RELEASE), and the rollback roll-forward (Abort with
    rollback: a higher counter pointing at the old artifact, admin only,
    only for devices that installed the aborted release);
  - the state table via gRPC: every (state, event) pair, allowed or
    FAILED_PRECONDITION, refusals counted on the rollout and audited;
  - a simulated fleet (WARDEN_ROLLOUT_FLEET devices, default 10,000)
    enrolled with
    EnrollDevices (batches of 256) and activated with SetDeviceState (a
    thread pool; there is no batch state RPC), driven only through the
    gRPC API:
      * a healthy rollout advances through 4 stages (automatic gates) and
        completes with a manual Advance; each stage's assigned count equals
        the devices whose bucket (SHA-256 of rollout id || device id,
        computed here independently) falls in its band;
      * an injected 30% canary failure aborts automatically; every device of
        the fleet asked during the canary and none outside the canary's
        buckets was ever assigned;
      * pause holds assignments steady (no new ones, assigned devices keep
        their target, their reports still count), resume continues;
      * kill -9 of the leader in the middle of a rollout: every device
        retries (GetDesiredState with its idempotency key, reports with the
        same signed counter, which the window turns into REPLAY if the first
        attempt had committed): stage counters equal the distinct accepted
        reports, no report lost, none counted twice, every node identical;
  - a gateway asking for a device bound to another gateway is refused
    before proposing and shows up as an aggregated AUTHZ_DENIAL;
  - every manual transition and every gate decision is in the ledger, and
    `wardenctl audit export` then `audit verify` pass.

Signing uses python3-cryptography (Ed25519) when importable, else the
openssl CLI (much slower: the default fleet shrinks to FLEET_NO_CRYPTO).

wardend runs with its default admission control (per-principal rate limit
2,000 calls/s): the parallel enrollment/activation exceeds it, and the
client resends calls refused with RESOURCE_EXHAUSTED "rate limit ..." or
"server overloaded ... (max_inflight)" (definite: nothing was applied)
with bounded backoff; the counts are printed with the timings.

Environment (besides the harness's): WARDEN_ROLLOUT_FLEET (fleet size),
WARDEN_ROLLOUT_WORKERS (client threads).
"""

import concurrent.futures as cf
import hashlib
import importlib.util
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402
import cluster as cl  # noqa: E402
from wardentest import grpc  # noqa: E402

try:
    from cryptography.hazmat.primitives.asymmetric import ed25519 as _ed
    from cryptography.hazmat.primitives import serialization as _ser
    HAVE_CRYPTO = True
except ImportError:  # pragma: no cover - bootstrap installs it
    HAVE_CRYPTO = False

SC = grpc.StatusCode

# ---- limits: every wait, loop and retry is bounded ----------------------------
# Fleet size: the 10,000. The whole file takes about 1.5 minutes on
# 2 cores (timings on stderr); lower it with WARDEN_ROLLOUT_FLEET for a quick
# local run (500 takes ~20 s).
FLEET_DEFAULT = 10000
FLEET_NO_CRYPTO = 200  # openssl CLI per signature: keep it small
FLEET = int(os.environ.get("WARDEN_ROLLOUT_FLEET",
                           str(FLEET_DEFAULT if HAVE_CRYPTO else FLEET_NO_CRYPTO)))
# Client threads issuing calls at once (the GIL and 2 cores cap the useful
# number; more only queues).
WORKERS = int(os.environ.get("WARDEN_ROLLOUT_WORKERS", "48"))
ENROLL_BATCH = 256          # WFSM_ENROLL_BATCH_MAX
RPC_TIMEOUT_S = 15.0
# One logical call (with its retries across elections) gives up after this.
CALL_DEADLINE_S = 60.0
# Attempts of one logical call (redirects, elections, lost connections).
CALL_ATTEMPTS = 40
RETRY_PAUSE_S = 0.05
# Admission control (server/admission.c) refuses a call with
# RESOURCE_EXHAUSTED before doing anything: "rate limit exceeded for ..."
# (per-principal token bucket, --rate-limit-rps, default 2,000 calls/s) or
# "server overloaded: ... (max_inflight)". Definite, so resent with
# exponential backoff (jitter; at least the server's "retry in N ms"), at
# most ADMISSION_RETRIES times per logical call. The limit stays on: the
# fleet setup's parallel calls exceed it and the client has to cope.
ADMISSION_RETRIES = 60
ADMISSION_BACKOFF_MIN_S = 0.01
ADMISSION_BACKOFF_MAX_S = 0.5
# Simulation waves of one rollout (each wave asks the devices its current
# stage covers); a stuck rollout fails instead of looping.
MAX_WAVES = 16
# Denials reach the ledger at the leader's next flush (1 s).
FLUSH_WAIT_S = 8.0
# Devices asked for their target while the canary runs, outside it, to show
# nothing outside is assigned (the abort test asks every device).
SAMPLE_OUTSIDE = 200
CLI_TIMEOUT_S = 120.0
WRONG_HW = 8                # devices of another hardware model
RING_R = 64                 # devices in the rollback subset (label ring=r)
MODEL = "plc-9000"
OTHER_MODEL = "rtu-7"


# ---- protos: rollout.proto imports warden/v1/inventory.proto ---------------------
def _load(rel):
    src = os.path.join(wt.SRC, "proto", rel)
    out = os.path.join(wt.PY_OUT, rel[:-len(".proto")] + "_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["protoc", "--python_out=" + wt.PY_OUT,
                        "-I" + os.path.join(wt.SRC, "proto"), src],
                       check=True, timeout=wt.TOOL_TIMEOUT_S)
    spec = importlib.util.spec_from_file_location(
        "rollout_pb_" + os.path.basename(out)[:-3], out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The generated rollout_pb2 says `from warden.v1 import inventory_pb2`: hand
# it the module wardentest already loaded (one descriptor, one Label class).
for _name in ("warden", "warden.v1"):
    sys.modules.setdefault(_name, types.ModuleType(_name))
sys.modules["warden.v1"].inventory_pb2 = wt.inv_pb2
sys.modules["warden.v1.inventory_pb2"] = wt.inv_pb2

inv = wt.inv_pb2
ro = _load("warden/v1/rollout.proto")
aud = _load("warden/v1/audit.proto")
ctl = _load("warden/v1/control.proto")

RS = "/warden.v1.Rollouts/"
METHODS = {
    RS + "RegisterReleaseKey": (ro.RegisterReleaseKeyRequest, ro.RegisterReleaseKeyResponse),
    RS + "RevokeReleaseKey": (ro.RevokeReleaseKeyRequest, ro.RevokeReleaseKeyResponse),
    RS + "CreateRelease": (ro.CreateReleaseRequest, ro.CreateReleaseResponse),
    RS + "GetRelease": (ro.GetReleaseRequest, ro.GetReleaseResponse),
    RS + "CreateRollout": (ro.CreateRolloutRequest, ro.RolloutResponse),
    RS + "StartRollout": (ro.StartRolloutRequest, ro.RolloutResponse),
    RS + "PauseRollout": (ro.PauseRolloutRequest, ro.RolloutResponse),
    RS + "ResumeRollout": (ro.ResumeRolloutRequest, ro.RolloutResponse),
    RS + "AdvanceRollout": (ro.AdvanceRolloutRequest, ro.RolloutResponse),
    RS + "AbortRollout": (ro.AbortRolloutRequest, ro.RolloutResponse),
    RS + "GetRollout": (ro.GetRolloutRequest, ro.GetRolloutResponse),
    RS + "GetDesiredState": (ro.GetDesiredStateRequest, ro.GetDesiredStateResponse),
    RS + "ReportUpdateStatus": (ro.ReportUpdateStatusRequest, ro.ReportUpdateStatusResponse),
    "/warden.v1.Inventory/EnrollDevices": (inv.EnrollDevicesRequest, inv.EnrollDevicesResponse),
    "/warden.v1.Inventory/SetDeviceState": (inv.SetDeviceStateRequest, inv.SetDeviceStateResponse),
    "/warden.v1.Inventory/ListDevices": (inv.ListDevicesRequest, inv.ListDevicesResponse),
    "/warden.v1.Inventory/RebindDevice": (inv.RebindDeviceRequest, inv.RebindDeviceResponse),
    "/warden.v1.Control/GetCommandKey": (ctl.GetCommandKeyRequest, ctl.GetCommandKeyResponse),
    "/warden.v1.Audit/Read": (aud.ReadAuditRequest, aud.ReadAuditResponse),
}

ST = ro.RolloutState
PH = ro.UpdatePhase
RR = ro.ReportResult
A = aud.AuditAction
O = aud.AuditOutcome
DRAFT, RUNNING, PAUSED, COMPLETED, ABORTED = (
    ST.ROLLOUT_STATE_DRAFT, ST.ROLLOUT_STATE_RUNNING, ST.ROLLOUT_STATE_PAUSED,
    ST.ROLLOUT_STATE_COMPLETED, ST.ROLLOUT_STATE_ABORTED)
EVENTS = ("Start", "Pause", "Resume", "Advance", "Abort")
# The method gate (server/svc_rollout.c; docs/rollouts.md "Server glue").
METHOD_ROLES = {"Start": ("admin", "rollout"), "Resume": ("admin", "rollout"),
                "Advance": ("admin", "rollout"),
                "Pause": ("admin", "rollout", "operator"),
                "Abort": ("admin", "rollout", "operator")}
# docs/rollouts.md, "State table": (state, event) -> resulting state.
TABLE = {
    (DRAFT, "Start"): RUNNING, (DRAFT, "Abort"): ABORTED,
    (RUNNING, "Pause"): PAUSED, (RUNNING, "Advance"): RUNNING,
    (RUNNING, "Abort"): ABORTED,
    (PAUSED, "Resume"): RUNNING, (PAUSED, "Abort"): ABORTED,
}


# ---- canonical encodings (docs/rollouts.md) ---------------------------------------
def cstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def manifest(version, counter, artifact, size=4096, models=(MODEL,)):
    out = cstr("warden.release.v1") + cstr(version) + struct.pack(">Q", counter)
    out += hashlib.sha256(artifact).digest() + struct.pack(">Q", size)
    out += struct.pack(">I", len(models)) + b"".join(cstr(m) for m in models)
    return out


def report_message(device_id, key_epoch, counter, rollout_id, release_counter,
                   phase, detail):
    return (b"warden.update.v1" + cstr(device_id)
            + struct.pack(">QQQQ", key_epoch, counter, rollout_id, release_counter)
            + struct.pack(">I", phase) + cstr(detail))


def bucket(rollout_id, device_id):
    """docs/rollouts.md, "Membership" - computed here independently."""
    h = hashlib.sha256(struct.pack(">Q", rollout_id) + device_id.encode()).digest()
    return struct.unpack(">Q", h[:8])[0] % 10000


def parse_canon(buf, spec):
    """Decode buf by spec ('s' str/bytes, 'Q' u64); no trailing bytes."""
    out, off = [], 0
    for f in spec:
        if f == "Q":
            out.append(struct.unpack_from(">Q", buf, off)[0])
            off += 8
        else:
            n = struct.unpack_from(">I", buf, off)[0]
            out.append(buf[off + 4:off + 4 + n])
            off += 4 + n
    assert off == len(buf), "trailing bytes"
    return out


# ---- Ed25519 -----------------------------------------------------------------------
class EdKey:
    """An Ed25519 key: .public (32 raw bytes), .sign(msg)."""

    def __init__(self, tmpdir):
        if HAVE_CRYPTO:
            self._k = _ed.Ed25519PrivateKey.generate()
            self.public = self._k.public_key().public_bytes(
                _ser.Encoding.Raw, _ser.PublicFormat.Raw)
            return
        fd, self.path = tempfile.mkstemp(suffix=".pem", dir=tmpdir)
        os.close(fd)
        with open(self.path, "wb") as f:
            f.write(wt._openssl("genpkey", "-algorithm", "ed25519"))
        self.public = wt._openssl("pkey", "-in", self.path, "-pubout",
                                  "-outform", "DER")[-32:]
        self._lock = threading.Lock()

    def sign(self, msg):
        if HAVE_CRYPTO:
            return self._k.sign(msg)
        with self._lock:  # PureEdDSA one-shot: openssl reads a file
            with open(self.path + ".msg", "wb") as f:
                f.write(msg)
            return wt._openssl("pkeyutl", "-sign", "-rawin", "-inkey", self.path,
                               "-in", self.path + ".msg")


def ed_verify(pub, sig, msg):
    if HAVE_CRYPTO:
        try:
            _ed.Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
            return True
        except Exception:  # noqa: BLE001 - InvalidSignature
            return False
    return True  # verified by the server's own tests; skipped without crypto


class Device:
    def __init__(self, did, key, labels, model=MODEL):
        self.id = did
        self.key = key
        self.labels = labels
        self.model = model
        self.counter = 0          # update-report counter (its own window)
        self.lock = threading.Lock()

    def next_counter(self):
        with self.lock:
            self.counter += 1
            return self.counter


# ---- leader-following client with bounded, idempotent retries ---------------------
class Client:
    """Calls go to the current leader. Every request sent through here is
    safe to resend: writes carry an idempotency key, reports are protected
    by their window (a committed first attempt makes the resend a REPLAY).
    So a redirect, a lost connection, warden-outcome: unknown or a deadline
    is retried (bounded) at the leader of the moment."""

    def __init__(self, cluster):
        self.c = cluster
        self.lock = threading.Lock()
        self.leader = None
        self.stubs = {}
        self.retries = 0          # attempts beyond the first, all calls
        self.ambiguous = 0        # of which after an unknown outcome
        # of which after admission control's RESOURCE_EXHAUSTED, by reason
        self.admission = {"rate_limit": 0, "inflight": 0}

    def _leader(self):
        with self.lock:
            if self.leader is not None and self.leader.running():
                return self.leader
            self.leader = self.c.wait_leader()
            return self.leader

    def _forget(self, nd, hint=None):
        with self.lock:
            if hint:
                h = self.c.node_by_client(hint)
                if h is not None and h.running():
                    self.leader = h
                    return
            if self.leader is nd:
                self.leader = None

    def _stub(self, nd, role, path):
        key = (nd.client, role, path)
        s = self.stubs.get(key)
        if s is None:
            rq, rs = METHODS[path]
            s = self.c.channel(nd, role).unary_unary(
                path, request_serializer=rq.SerializeToString,
                response_deserializer=rs.FromString)
            self.stubs[key] = s
        return s

    def call(self, path, req, role="admin", node=None):
        deadline = time.monotonic() + CALL_DEADLINE_S
        refused = 0               # admission refusals of this call
        attempt = 0
        while attempt < CALL_ATTEMPTS:
            nd = node or self._leader()
            try:
                return self._stub(nd, role, path)(req, timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as ex:
                code = ex.code()
                why = admission_refusal(ex)
                if why is not None:
                    # Refused before anything was done (also at a given
                    # node): resend after a backoff; counted apart from
                    # CALL_ATTEMPTS, bounded by ADMISSION_RETRIES.
                    if refused >= ADMISSION_RETRIES or time.monotonic() > deadline:
                        raise
                    with self.lock:
                        self.retries += 1
                        self.admission[why] += 1
                    admission_backoff(ex, refused)
                    refused += 1
                    continue
                attempt += 1
                if node is not None or time.monotonic() > deadline:
                    raise
                if code == SC.UNAVAILABLE:
                    if cl.trailer(ex, "warden-outcome") == "unknown":
                        with self.lock:
                            self.ambiguous += 1
                    if cl._is_transport_error(ex):
                        with self.lock:
                            self.stubs = {k: v for k, v in self.stubs.items()
                                          if k[0] != nd.client}
                        self.c.drop_channels(nd)
                    self._forget(nd, cl.trailer(ex, "warden-leader"))
                elif code == SC.DEADLINE_EXCEEDED:
                    self._forget(nd)
                else:
                    raise
                with self.lock:
                    self.retries += 1
                time.sleep(RETRY_PAUSE_S)
        raise AssertionError("%s: no answer after %d attempts" % (path, CALL_ATTEMPTS))


def admission_refusal(ex):
    """"rate_limit" or "inflight" when ex is admission control's definite
    RESOURCE_EXHAUSTED (server/admission.c), else None (other
    RESOURCE_EXHAUSTED causes, e.g. out of memory, are not retried)."""
    if ex.code() != SC.RESOURCE_EXHAUSTED:
        return None
    d = ex.details() or ""
    if d.startswith("rate limit exceeded for "):
        return "rate_limit"
    if d.startswith("server overloaded: ") and "(max_inflight)" in d:
        return "inflight"
    return None


def admission_backoff(ex, n):
    """Sleep before resend n (0-based) of a call refused by admission
    control: exponential from ADMISSION_BACKOFF_MIN_S, capped, jittered,
    and never shorter than the server's "retry in N ms" hint."""
    d = ex.details() or ""
    hint = 0.0
    m = re.search(r"retry in (\d+) ms", d)
    if m:
        hint = int(m.group(1)) / 1000.0
    base = min(ADMISSION_BACKOFF_MAX_S, ADMISSION_BACKOFF_MIN_S * (2 ** min(n, 10)))
    time.sleep(max(hint, base * (0.5 + random.random() / 2)))


def pmap(fn, items, workers=WORKERS):
    """fn over items on a bounded thread pool; results in order; the first
    exception is raised."""
    with cf.ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, items))


def stage(name, percent_bp, min_reported=1, success_bp=9500, failure_bp=2000,
          auto=True, bake_ms=0, timeout_ms=0, max_devices=0):
    return ro.RolloutStage(name=name, percent_bp=percent_bp, max_devices=max_devices,
                           min_reported=min_reported, success_ratio_bp=success_bp,
                           failure_ratio_bp=failure_bp, per_device_timeout_ms=timeout_ms,
                           bake_ms=bake_ms, auto_advance=auto)


class RolloutTest(cl.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        cls.c = cl.Cluster(3, name="rollout")
        cls.tmp = tempfile.mkdtemp(prefix="keys-", dir=cls.c.tmp)
        try:
            cls.c.start()
            cls.c.wait_leader()
            cls.cli = Client(cls.c)
            cls.gateway = cls._principal("gateway")
            cls._counter = 100
            cls._counter_lock = threading.Lock()
            cls.timings = {}
            # Manual transitions and gate decisions made by these tests,
            # checked against the ledger at the end: (rollout_id, kind).
            cls.expect_transitions = []   # (rollout_id, event, outcome)
            cls.expect_gates = []         # (rollout_id, detail prefix)
            cls.release_key = EdKey(cls.tmp)
            cls.call_s("RegisterReleaseKey", ro.RegisterReleaseKeyRequest(
                key_id="rk-main", public_key=cls.release_key.public,
                idempotency_key="rk-main"))
            cls._wait_command_key()
            cls._enroll_fleet()
        except BaseException:
            cl.dump_all()
            raise
        cls.timings["setup_s"] = round(time.monotonic() - t0, 1)
        print("rollout: fleet=%d setup %.1fs (enroll %.1fs, activate %.1fs); "
              "resent after admission RESOURCE_EXHAUSTED: rate limit %d, in-flight cap %d"
              % (FLEET, cls.timings["setup_s"], cls.timings["enroll_s"],
                 cls.timings["activate_s"], cls.cli.admission["rate_limit"],
                 cls.cli.admission["inflight"]), file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        print("rollout timings: %s; client retries %d (after unknown outcome %d, "
              "after RESOURCE_EXHAUSTED rate limit %d, in-flight cap %d)"
              % (cls.timings, cls.cli.retries, cls.cli.ambiguous,
                 cls.cli.admission["rate_limit"], cls.cli.admission["inflight"]),
              file=sys.stderr)
        cls.c.close()

    # -- setup helpers --
    @classmethod
    def _principal(cls, role):
        cert = cls.c.cert_paths(role)[0]
        out = wt._openssl("x509", "-in", cert, "-noout", "-ext", "subjectAltName").decode()
        marker = "warden://role/%s/" % role
        return out[out.index(marker) + len(marker):].split()[0].strip(",")

    @classmethod
    def call_s(cls, method, req, role="admin"):
        return cls.cli.call(RS + method if not method.startswith("/") else method,
                            req, role=role)

    @classmethod
    def _wait_command_key(cls):
        deadline = time.monotonic() + 20
        while True:
            try:
                cls.cmd_key = cls.cli.call("/warden.v1.Control/GetCommandKey",
                                           ctl.GetCommandKeyRequest(), role="gateway")
                return
            except grpc.RpcError as ex:
                if ex.code() != SC.NOT_FOUND or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @classmethod
    def _enroll_fleet(cls):
        t0 = time.monotonic()
        devs = []
        for i in range(FLEET + WRONG_HW):
            did = "fd-%d-%05d" % (wt.SEED % 100000, i)
            if i >= FLEET:
                devs.append(Device(did, EdKey(cls.tmp), {"ring": "w"}, OTHER_MODEL))
            else:
                devs.append(Device(did, EdKey(cls.tmp),
                                   {"ring": "r" if i < RING_R else "m"}))
        cls.devices = devs[:FLEET]
        cls.wrong_hw = devs[FLEET:]
        cls.by_id = {d.id: d for d in devs}

        def enroll(batch_no):
            batch = devs[batch_no * ENROLL_BATCH:(batch_no + 1) * ENROLL_BATCH]
            req = inv.EnrollDevicesRequest(idempotency_key="fleet-%d" % batch_no, devices=[
                inv.EnrollDeviceRequest(
                    device_id=d.id, key_algorithm=inv.KEY_ALGORITHM_ED25519,
                    public_key=d.key.public, attestation_digest=wt.digest32(d.id),
                    hardware_model=d.model, firmware_version="1.0.0",
                    labels=[inv.Label(key=k, value=v) for k, v in d.labels.items()],
                    gateway_id=cls.gateway) for d in batch])
            r = cls.cli.call("/warden.v1.Inventory/EnrollDevices", req, role="operator")
            assert len(r.devices) == len(batch)

        nb = (len(devs) + ENROLL_BATCH - 1) // ENROLL_BATCH
        pmap(enroll, range(nb), workers=4)
        t1 = time.monotonic()

        def activate(d):
            r = cls.cli.call("/warden.v1.Inventory/SetDeviceState", inv.SetDeviceStateRequest(
                device_id=d.id, state=inv.DEVICE_STATE_ACTIVE, reason="fleet",
                idempotency_key="act-" + d.id), role="operator")
            assert r.device.state == inv.DEVICE_STATE_ACTIVE
            assert r.device.key_epoch == 1

        pmap(activate, devs)
        cls.timings["enroll_s"] = round(t1 - t0, 1)
        cls.timings["activate_s"] = round(time.monotonic() - t1, 1)

    # -- per-test helpers --
    def next_counter(self):
        with self._counter_lock:
            type(self)._counter += 10
            return self._counter

    def call(self, method, req, role="admin"):
        return self.call_s(method, req, role)

    def release(self, counter, version=None, key=None, key_id="rk-main", artifact=None,
                models=(MODEL,), role="rollout", rollback_of=0, reason="", idem=None,
                sig=None):
        key = key or self.release_key
        m = manifest(version or "2.%d.0" % counter, counter,
                     artifact or ("fw-%d" % counter).encode(), models=models)
        return ro.CreateReleaseRequest(
            manifest=m, key_id=key_id, signature=sig if sig is not None else key.sign(m),
            rollback_of=rollback_of, reason=reason,
            idempotency_key=idem or "rel-%d-%s" % (counter, wt.RNG.getrandbits(32)))

    def create_release(self, counter=None, **kw):
        counter = counter or self.next_counter()
        return self.call("CreateRelease", self.release(counter, **kw), role="rollout").release

    def create_rollout(self, release_id, stages, labels=None, name="r", model=""):
        sel = ro.RolloutSelector(
            labels=[inv.Label(key=k, value=v) for k, v in (labels or {}).items()],
            hardware_model=model)
        r = self.call("CreateRollout", ro.CreateRolloutRequest(
            release_id=release_id, selector=sel, stages=stages, name=name,
            idempotency_key="ro-%d-%s-%d" % (release_id, name, wt.RNG.getrandbits(32))),
            role="rollout")
        self.assertEqual(r.rollout.state, DRAFT)
        self.cleanup_live(r.rollout.rollout_id)
        return r.rollout

    def transition(self, event, rid, role="rollout", reason="test", **kw):
        """One manual transition; what the ledger must show for it is noted
        (test_90): OK, REJECTED (refused by apply: table, gates, bounds), or
        DENIED (apply's role re-check; the method gate's refusals are
        aggregated denials instead)."""
        req_cls = getattr(ro, "%sRolloutRequest" % event)
        req = req_cls(rollout_id=rid, reason=reason,
                      idempotency_key="%s-%d-%d" % (event, rid, wt.RNG.getrandbits(32)), **kw)
        try:
            r = self.call("%sRollout" % event, req, role=role)
        except grpc.RpcError as ex:
            if ex.code() == SC.PERMISSION_DENIED:
                if role in METHOD_ROLES[event]:
                    self.expect_transitions.append((rid, event, O.AUDIT_OUTCOME_DENIED))
            else:
                self.expect_transitions.append((rid, event, O.AUDIT_OUTCOME_REJECTED))
            raise
        self.expect_transitions.append((rid, event, O.AUDIT_OUTCOME_OK))
        return r

    def cleanup_live(self, rid):
        """Abort rid at the end of the test if it is still live, so that a
        failing test does not hand its targets to the next one."""
        def undo():
            try:
                if self.status(rid).rollout.state in (RUNNING, PAUSED):
                    self.transition("Abort", rid, role="admin", reason="test cleanup")
            except (grpc.RpcError, AssertionError) as ex:
                print("cleanup of rollout %d: %s" % (rid, ex), file=sys.stderr)
        self.addCleanup(undo)

    def status(self, rid, consistency=cl.LINEARIZABLE, node=None, role="rollout"):
        return self.cli.call(RS + "GetRollout", ro.GetRolloutRequest(
            rollout_id=rid, consistency=consistency), role=role, node=node)

    def desired(self, d, idem=None, role="gateway"):
        return self.call("GetDesiredState", ro.GetDesiredStateRequest(
            device_id=d.id, idempotency_key=idem or ""), role=role)

    def report(self, d, rid, release_counter, phase, detail="ok", counter=None,
               epoch=1, sig=None):
        ctr = counter if counter is not None else d.next_counter()
        req = ro.ReportUpdateStatusRequest(
            device_id=d.id, key_epoch=epoch, counter=ctr, rollout_id=rid,
            release_counter=release_counter, phase=phase, detail=detail)
        req.signature = sig if sig is not None else d.key.sign(report_message(
            d.id, epoch, ctr, rid, release_counter, phase, detail))
        return self.call("ReportUpdateStatus", req, role="gateway")

    def check_target(self, d, r):
        """A desired-state answer is always above the installed counter, and
        verifies: envelope by the command key, manifest by the release key."""
        if r.has_target:
            self.assertGreater(r.release.release_counter, r.installed_counter, d.id)
        return r.has_target

    def verify_envelope(self, d, r):
        env = r.envelope
        tag, dev, kid, epoch, seq, _t, payload = parse_canon(env, "sssQQQs")
        self.assertEqual((tag, dev, kid.decode(), epoch, seq),
                         (b"warden.ctl.v1", d.id.encode(), r.key_id, r.key_epoch, r.seq))
        self.assertTrue(ed_verify(self.cmd_key.public_key, r.signature, env))
        ptag, pdev, rid, relid, installed, man, rkid, msig = parse_canon(
            payload, "ssQQQsss")
        self.assertEqual((ptag, pdev, rid, installed),
                         (b"warden.desired.v1", d.id.encode(), r.rollout_id,
                          r.installed_counter))
        if r.has_target:
            self.assertEqual(relid, r.release.release_id)
            self.assertEqual(man, r.release.manifest)
            self.assertEqual(rkid.decode(), r.release.key_id)
            self.assertTrue(ed_verify(self.release_key.public, msig, man))
        else:
            self.assertEqual((rid, man), (0, b""))

    def band(self, rid, lo, hi, devices=None):
        return [d for d in (devices or self.devices) if lo <= bucket(rid, d.id) < hi]

    def ask_all(self, devs):
        """GetDesiredState for each device in parallel: [(device, response)]."""
        return pmap(lambda d: (d, self.desired(d)), devs)

    def report_all(self, pairs, phase_of):
        """Reports for [(device, desired response)]: phase_of(i, d) -> phase.
        Returns the verdicts."""
        def one(x):
            i, (d, r) = x
            return self.report(d, r.rollout_id, r.release.release_counter, phase_of(i, d)).result
        return pmap(one, list(enumerate(pairs)))

    # ---- manifests, keys, releases ----------------------------------------------
    def test_10_manifests_and_keys(self):
        c1 = self.next_counter()
        rel = self.create_release(c1)
        self.assertEqual((rel.release_counter, rel.key_id, list(rel.hardware_models)),
                         (c1, "rk-main", [MODEL]))
        self.assertEqual(rel.created_by, self._principal("rollout"))
        # Reads: linearizable on the leader, serializable from every node.
        got = self.call("GetRelease", ro.GetReleaseRequest(release_id=rel.release_id),
                        role="auditor").release
        self.assertEqual(got, rel)
        self.c.wait_converged()
        for nd in self.c.running():
            g = self.cli.call(RS + "GetRelease", ro.GetReleaseRequest(
                release_id=rel.release_id, consistency=cl.SERIALIZABLE), node=nd)
            self.assertEqual(g.release, rel)
        self.assertRpcError(SC.NOT_FOUND, self.call, "GetRelease",
                            ro.GetReleaseRequest(release_id=999999999))
        self.assertRpcError(SC.PERMISSION_DENIED, self.call, "GetRelease",
                            ro.GetReleaseRequest(release_id=rel.release_id), role="gateway")
        # Bad signature: one flipped bit.
        req = self.release(self.next_counter())
        req.signature = bytes([req.signature[0] ^ 1]) + req.signature[1:]
        ex = self.assertRpcError(SC.PERMISSION_DENIED, self.call, "CreateRelease", req,
                                 role="rollout")
        self.assertIn("does not verify", ex.details())
        # Signed by a key nobody registered.
        stranger = EdKey(self.tmp)
        self.assertRpcError(SC.NOT_FOUND, self.call, "CreateRelease",
                            self.release(self.next_counter(), key=stranger, key_id="rk-nobody"),
                            role="rollout")
        # Only admins register keys.
        self.assertRpcError(SC.PERMISSION_DENIED, self.call, "RegisterReleaseKey",
                            ro.RegisterReleaseKeyRequest(key_id="rk-x", public_key=stranger.public),
                            role="rollout")
        # Rotation: register rk-old, release with it, register rk-new, revoke
        # rk-old; rk-old's next manifest is refused, rk-new's accepted.
        old, new = EdKey(self.tmp), EdKey(self.tmp)
        self.call("RegisterReleaseKey", ro.RegisterReleaseKeyRequest(
            key_id="rk-old", public_key=old.public, idempotency_key="rk-old"))
        r_old = self.create_release(key=old, key_id="rk-old")
        self.call("RegisterReleaseKey", ro.RegisterReleaseKeyRequest(
            key_id="rk-new", public_key=new.public, idempotency_key="rk-new"))
        k = self.call("RevokeReleaseKey", ro.RevokeReleaseKeyRequest(
            key_id="rk-old", reason="rotation", idempotency_key="rk-old-rev")).key
        self.assertTrue(k.revoked)
        ex = self.assertRpcError(SC.FAILED_PRECONDITION, self.call, "CreateRelease",
                                 self.release(self.next_counter(), key=old, key_id="rk-old"),
                                 role="rollout")
        self.assertIn("revoked", ex.details())
        self.create_release(key=new, key_id="rk-new")
        # A release made under the revoked key stays valid.
        self.assertEqual(self.call("GetRelease", ro.GetReleaseRequest(
            release_id=r_old.release_id)).release.key_id, "rk-old")
        # Counter not increasing: equal to the highest, and below it.
        top = self.next_counter()
        self.create_release(top)
        for ctr in (top, top - 1, c1):
            ex = self.assertRpcError(SC.FAILED_PRECONDITION, self.call, "CreateRelease",
                                     self.release(ctr), role="rollout")
            self.assertIn("not greater than", ex.details())
        # ... for one model of several: refused as a whole.
        self.assertRpcError(SC.FAILED_PRECONDITION, self.call, "CreateRelease",
                            self.release(top, models=("a-new-model", MODEL)), role="rollout")
        # Malformed manifests: unsorted models, trailing bytes.
        self.assertRpcError(SC.INVALID_ARGUMENT, self.call, "CreateRelease",
                            self.release(self.next_counter(), models=("zz", "aa")),
                            role="rollout")
        req = self.release(self.next_counter())
        req.manifest += b"\0"
        req.signature = self.release_key.sign(req.manifest)
        self.assertRpcError(SC.INVALID_ARGUMENT, self.call, "CreateRelease", req,
                            role="rollout")
        # Oversize input never reaches the log (server-side cap).
        req = self.release(self.next_counter())
        req.manifest = b"x" * 8192
        self.assertRpcError(SC.INVALID_ARGUMENT, self.call, "CreateRelease", req,
                            role="rollout")

    def test_11_wrong_hardware(self):
        """A release for MODEL never targets a device of another model, even
        with a selector that names that model's devices."""
        rel = self.create_release()
        rid = self.create_rollout(rel.release_id, [stage("all", 10000, min_reported=1000,
                                                         auto=False)],
                                  labels={"ring": "w"}, name="hw").rollout_id
        self.transition("Start", rid)
        for d, r in self.ask_all(self.wrong_hw):
            self.assertFalse(r.has_target, d.id)
            self.verify_envelope(d, r)
        st = self.status(rid)
        self.assertEqual(st.rollout.counters[0].assigned, 0)
        self.transition("Abort", rid, role="operator", reason="wrong hardware test done")
        # A release for OTHER_MODEL does target them.
        rel2 = self.create_release(models=(OTHER_MODEL,))
        rid2 = self.create_rollout(rel2.release_id, [stage("all", 10000, min_reported=1000,
                                                           auto=False)],
                                   labels={"ring": "w"}, name="hw2").rollout_id
        self.transition("Start", rid2)
        got = self.ask_all(self.wrong_hw)
        self.assertTrue(all(r.has_target for _, r in got))
        self.assertEqual(self.status(rid2).rollout.counters[0].assigned, WRONG_HW)
        self.transition("Abort", rid2, role="operator", reason="done")

    # ---- state table ------------------------------------------------------------
    def _rollout_in(self, state, rel_id):
        """A fresh rollout (two stages, matching no device) driven to state."""
        r = self.create_rollout(rel_id, [stage("a", 5000, min_reported=10**6, auto=False),
                                         stage("b", 10000, min_reported=10**6, auto=False)],
                                labels={"ring": "nobody"}, name="table")
        rid = r.rollout_id
        if state in (RUNNING, PAUSED, COMPLETED):
            self.transition("Start", rid)
        if state == PAUSED:
            self.transition("Pause", rid)
        if state == COMPLETED:
            self.transition("Advance", rid, role="admin", force=True)
            self.transition("Advance", rid, role="admin", force=True)
        if state == ABORTED:
            self.transition("Abort", rid, reason="to test the table")
        st = self.status(rid).rollout
        self.assertEqual(st.state, state)
        return rid

    def test_20_state_table(self):
        rel = self.create_release()
        names = {DRAFT: "DRAFT", RUNNING: "RUNNING", PAUSED: "PAUSED",
                 COMPLETED: "COMPLETED", ABORTED: "ABORTED"}
        for state in (DRAFT, RUNNING, PAUSED, COMPLETED, ABORTED):
            for ev in EVENTS:
                with self.subTest(state=names[state], event=ev):
                    rid = self._rollout_in(state, rel.release_id)
                    before = self.status(rid).rollout
                    kw = {"force": True} if ev == "Advance" else {}
                    role = "admin" if ev == "Advance" else "rollout"
                    want = TABLE.get((state, ev))
                    if want is None:
                        ex = self.assertRpcError(SC.FAILED_PRECONDITION, self.transition,
                                                 ev, rid, role=role, **kw)
                        self.assertIn("not allowed", ex.details())
                        after = self.status(rid).rollout
                        self.assertEqual(after.state, state)
                        self.assertEqual(after.refused_transitions,
                                         before.refused_transitions + 1)
                    else:
                        r = self.transition(ev, rid, role=role, **kw).rollout
                        self.assertEqual(r.state, want)
                        if ev == "Advance":
                            self.assertEqual(r.current_stage, before.current_stage + 1)
                    # Leave nothing live (RO_LIVE_MAX = 16).
                    cur = self.status(rid).rollout.state
                    if cur in (RUNNING, PAUSED):
                        self.transition("Abort", rid, role="operator", reason="cleanup")
        # A non-forced Advance whose gates fail is FAILED_PRECONDITION too,
        # but not a table refusal; a forced one by a non-admin is denied.
        rid = self._rollout_in(RUNNING, rel.release_id)
        ex = self.assertRpcError(SC.FAILED_PRECONDITION, self.transition, "Advance", rid)
        self.assertIn("gates do not pass", ex.details())
        self.assertRpcError(SC.PERMISSION_DENIED, self.transition, "Advance", rid,
                            role="rollout", force=True)
        self.assertEqual(self.status(rid).rollout.refused_transitions, 0)
        # Operators may brake (Pause, Abort) but not steer (Start/Resume/Advance).
        self.transition("Pause", rid, role="operator")
        self.assertRpcError(SC.PERMISSION_DENIED, self.transition, "Resume", rid,
                            role="operator")
        self.transition("Abort", rid, role="operator", reason="done")
        # Abort needs a reason.
        rid = self._rollout_in(DRAFT, rel.release_id)
        self.assertRpcError(SC.INVALID_ARGUMENT, self.transition, "Abort", rid, reason="")
        self.transition("Abort", rid, reason="cleanup")

    # ---- the fleet ---------------------------------------------------------------
    def _run_waves(self, rid, rel, stop, phase_of=lambda i, d: PH.UPDATE_PHASE_SUCCEEDED):
        """Simulate the fleet: each wave asks every not-yet-assigned device
        that the current stage covers (by bucket, computed here) for its
        target, plus a sample beyond the next stage's share (which must get
        none: a bake period may end, and the stage advance, while a wave
        runs, but only one step: the next needs reports from its devices),
        then reports. Waits (bounded) while a stage bakes.
        Returns ({stage: [devices assigned in it]}, last status)."""
        st = self.status(rid)
        stages = list(st.rollout.stages)
        assigned = {}
        done = set()
        waves = 0
        deadline = time.monotonic() + CALL_DEADLINE_S
        while not stop(st):
            k = st.rollout.current_stage
            hi = stages[k].percent_bp
            nxt = stages[k + 1].percent_bp if k + 1 < len(stages) else 10000
            covered = [d for d in self.devices if d.id not in done and bucket(rid, d.id) < hi]
            if not covered:
                # Baking: the gates pass once bake_ms of cluster time went by.
                self.assertLess(time.monotonic(), deadline, "stage %d never advanced: %s"
                                % (k, st.gates[k].explain))
                time.sleep(0.05)
                st = self.status(rid)
                continue
            waves += 1
            self.assertLessEqual(waves, MAX_WAVES, "rollout %d stuck" % rid)
            sample = [d for d in self.devices if bucket(rid, d.id) >= nxt][:SAMPLE_OUTSIDE]
            got = self.ask_all(covered + sample)
            for d, r in got[len(covered):]:
                self.assertFalse(r.has_target, "outside the stage but assigned: %s "
                                 "(bucket %d, stage %d up to %d, got rollout %d)"
                                 % (d.id, bucket(rid, d.id), k, hi, r.rollout_id))
            pairs = []
            for d, r in got[:len(covered)]:
                self.check_target(d, r)
                self.assertTrue(r.has_target, d.id)
                self.assertEqual(r.rollout_id, rid)
                self.assertEqual(r.release.release_id, rel.release_id)
                pairs.append((d, r))
                done.add(d.id)
            assigned[k] = [d for d, _ in pairs]
            verdicts = self.report_all(pairs, phase_of)
            self.assertEqual(set(verdicts), {RR.REPORT_RESULT_ACCEPTED})
            st = self.status(rid)
        return assigned, st

    def test_30_fleet_healthy_rollout(self):
        t0 = time.monotonic()
        rel = self.create_release()
        pct = (100, 1000, 5000, 10000)
        # min_reported: a quarter of the band's expected share, so bucket
        # noise never stalls it; the last stage completes by manual Advance.
        mins = [max(1, FLEET * (hi - lo) // 10000 // 4)
                for lo, hi in zip((0,) + pct[:-1], pct)]
        stages = [stage("canary", 100, mins[0], bake_ms=200),
                  stage("10%", 1000, mins[1]), stage("50%", 5000, mins[2]),
                  stage("all", 10000, mins[3], auto=False)]
        rid = self.create_rollout(rel.release_id, stages, name="healthy").rollout_id
        self.transition("Start", rid)
        # Stop once the last stage is current: it advances by hand.
        assigned, st = self._run_waves(
            rid, rel, stop=lambda s: s.rollout.state != RUNNING or (
                s.rollout.current_stage == 3 and s.rollout.counters[3].assigned > 0))
        self.assertEqual(st.rollout.state, RUNNING)
        self.assertEqual(st.rollout.current_stage, 3)
        # Every band was assigned in its own stage, exactly.
        lo = 0
        for k, hi in enumerate(pct):
            self.assertEqual(sorted(d.id for d in assigned[k]),
                             sorted(d.id for d in self.band(rid, lo, hi)), "stage %d" % k)
            c = st.rollout.counters[k]
            self.assertEqual((c.assigned, c.succeeded, c.failed), (len(assigned[k]),) * 2 + (0,))
            lo = hi
        for k in range(3):
            self.expect_gates.append((rid, "auto advance stage %d -> %d" % (k, k + 1)))
        g = st.gates[3]
        self.assertTrue(g.advance_ready, g.explain)
        r = self.transition("Advance", rid, reason="fleet done").rollout
        self.assertEqual(r.state, COMPLETED)
        # COMPLETED is final: nobody gets a target from it any more, and
        # the fleet's installed firmware is the release's.
        for d, r2 in self.ask_all(self.devices[:50]):
            self.assertFalse(r2.has_target)
            self.assertEqual(r2.installed_counter, rel.release_counter)
            self.verify_envelope(d, r2)
        devs = self.c.wait_leader().list_serializable(role="admin")
        fw = [x for x in devs if x.device_id in self.by_id and x.hardware_model == MODEL]
        self.assertEqual(sum(1 for x in fw if x.firmware_version == rel.version), FLEET)
        self.timings["healthy_s"] = round(time.monotonic() - t0, 1)

    def test_40_fleet_canary_failure_aborts(self):
        t0 = time.monotonic()
        rel = self.create_release()
        canary_bp = 500
        exp = max(1, FLEET * canary_bp // 10000)
        stages = [stage("canary", canary_bp, min_reported=max(1, exp // 2),
                        success_bp=9500, failure_bp=2000),
                  stage("all", 10000, min_reported=1)]
        rid = self.create_rollout(rel.release_id, stages, name="canary-fail").rollout_id
        self.transition("Start", rid)
        # Every device of the fleet asks while the canary runs.
        got = self.ask_all(self.devices)
        canary = [(d, r) for d, r in got if r.has_target]
        self.assertEqual(sorted(d.id for d, _ in canary),
                         sorted(d.id for d in self.band(rid, 0, canary_bp)))
        for d, r in got:
            self.check_target(d, r)
        # 30% fail: F F F S S S S S S S ..., so the failure ratio is >= 30%
        # whenever min_reported is reached, and the success gate never passes.
        phase = (lambda i, d: PH.UPDATE_PHASE_FAILED if i % 10 < 3
                 else PH.UPDATE_PHASE_SUCCEEDED)
        verdicts = self.report_all(canary, phase)
        st = self.status(rid)
        self.assertEqual(st.rollout.state, ABORTED, st.gates[0].explain)
        self.assertIn("auto abort", st.rollout.reason)
        self.assertTrue(st.gates[0].failure_exceeded)
        self.expect_gates.append((rid, "auto abort"))
        c0, c1 = st.rollout.counters[0], st.rollout.counters[1]
        self.assertEqual(c0.assigned, len(canary))
        self.assertEqual(c1.assigned, 0)
        # Reports counted = the ACCEPTED verdicts, never more.
        acc = sum(1 for v in verdicts if v == RR.REPORT_RESULT_ACCEPTED)
        self.assertEqual(c0.succeeded + c0.failed, acc)
        self.assertGreaterEqual(c0.failed * 10000, 2000 * (c0.succeeded + c0.failed))
        # After the abort nobody gets a target, canary or not.
        for d, r in self.ask_all(self.devices):
            self.assertFalse(r.has_target, d.id)
        self.assertEqual(self.status(rid).rollout.counters[1].assigned, 0)
        self.timings["canary_abort_s"] = round(time.monotonic() - t0, 1)

    def test_50_pause_resume_holds_assignments(self):
        t0 = time.monotonic()
        rel = self.create_release()
        stages = [stage("10%", 1000, min_reported=10**6, auto=False),
                  stage("all", 10000, min_reported=10**6, auto=False)]
        rid = self.create_rollout(rel.release_id, stages, name="pause").rollout_id
        self.transition("Start", rid)
        band = self.band(rid, 0, 1000)
        first, rest = band[:len(band) // 2], band[len(band) // 2:]
        got = self.ask_all(first)
        self.assertTrue(all(r.has_target for _, r in got))
        self.transition("Pause", rid, role="operator", reason="hold")
        st = self.status(rid)
        self.assertEqual((st.rollout.state, st.rollout.counters[0].assigned),
                         (PAUSED, len(first)))
        # Paused: the unassigned half asks and gets nothing; the assigned
        # half keeps its target; its reports still count.
        for d, r in self.ask_all(rest):
            self.assertFalse(r.has_target, d.id)
        again = self.ask_all(first)
        self.assertTrue(all(r.has_target and r.rollout_id == rid for _, r in again))
        verdicts = self.report_all(again[:10], lambda i, d: PH.UPDATE_PHASE_SUCCEEDED)
        self.assertEqual(set(verdicts), {RR.REPORT_RESULT_ACCEPTED})
        st = self.status(rid)
        self.assertEqual(st.rollout.counters[0].assigned, len(first))
        self.assertEqual(st.rollout.counters[0].succeeded, 10)
        # Refused while paused, counted.
        self.assertRpcError(SC.FAILED_PRECONDITION, self.transition, "Pause", rid)
        self.transition("Resume", rid, reason="go on")
        got = self.ask_all(rest)
        self.assertTrue(all(r.has_target for _, r in got))
        st = self.status(rid)
        self.assertEqual(st.rollout.counters[0].assigned, len(band))
        self.assertEqual(st.rollout.refused_transitions, 1)
        self.transition("Abort", rid, role="operator", reason="pause test done")
        self.timings["pause_resume_s"] = round(time.monotonic() - t0, 1)

    def test_60_rollback_roll_forward_and_anti_downgrade(self):
        ring = [d for d in self.devices if d.labels["ring"] == "r"]
        bad = self.create_release(artifact=b"bad-fw")
        prev_artifact = b"fw-before-bad"
        rid = self.create_rollout(bad.release_id, [stage("all", 10000, min_reported=10**6,
                                                         failure_bp=10000, auto=False)],
                                  labels={"ring": "r"}, name="bad").rollout_id
        self.transition("Start", rid)
        got = self.ask_all(ring)
        self.assertTrue(all(r.has_target for _, r in got))
        installed = got[:len(got) // 2]
        self.assertEqual(set(self.report_all(installed, lambda i, d: PH.UPDATE_PHASE_SUCCEEDED)),
                         {RR.REPORT_RESULT_ACCEPTED})
        # Rollback paths that must fail: not admin; a counter not above the
        # bad release's; rollback_of another release; no reason.
        lo = self.release(bad.release_counter, artifact=prev_artifact,
                          rollback_of=bad.release_id, reason="bad fw")
        self.assertRpcError(SC.PERMISSION_DENIED, self.transition, "Abort", rid,
                            role="rollout", reason="bad", rollback=self.release(
                                self.next_counter(), artifact=prev_artifact,
                                rollback_of=bad.release_id, reason="bad fw"))
        self.assertRpcError(SC.FAILED_PRECONDITION, self.transition, "Abort", rid,
                            role="admin", reason="bad", rollback=lo)
        self.assertEqual(self.status(rid).rollout.state, RUNNING)
        self.assertRpcError(SC.INVALID_ARGUMENT, self.call, "CreateRelease", self.release(
            self.next_counter(), rollback_of=bad.release_id), role="admin")
        # The roll-forward: higher counter, old artifact, admin, a reason.
        rb_counter = self.next_counter()
        rb_req = self.release(rb_counter, version="1.9.9-rb", artifact=prev_artifact,
                              rollback_of=bad.release_id, reason="bad fw: roll back")
        r = self.transition("Abort", rid, role="admin", reason="bad fw", rollback=rb_req)
        self.assertEqual(r.rollout.state, ABORTED)
        self.assertNotEqual(r.rollback_release_id, 0)
        rb_rid = r.rollback_rollout_id
        self.cleanup_live(rb_rid)
        # The same command started the rollback rollout (audited with it).
        self.expect_transitions.append((rb_rid, "Start", O.AUDIT_OUTCOME_OK))
        rb = self.call("GetRelease", ro.GetReleaseRequest(release_id=r.rollback_release_id)).release
        self.assertEqual((rb.release_counter, rb.rollback_of, rb.artifact_sha256),
                         (rb_counter, bad.release_id, hashlib.sha256(prev_artifact).digest()))
        self.assertGreater(rb.release_counter, bad.release_counter)
        st = self.status(rb_rid)
        self.assertEqual((st.rollout.state, st.rollout.only_installed_release),
                         (RUNNING, bad.release_id))
        # Only the devices that installed the bad release are targeted.
        got = dict((d.id, r) for d, r in self.ask_all(ring))
        inst_ids = {d.id for d, _ in installed}
        for did, r in got.items():
            self.check_target(self.by_id[did], r)
            self.assertEqual(r.has_target, did in inst_ids, did)
            if r.has_target:
                self.assertEqual(r.release.release_id, rb.release_id)
                self.assertEqual(r.installed_counter, bad.release_counter)
        pairs = [(self.by_id[did], r) for did, r in got.items() if r.has_target]
        self.assertEqual(set(self.report_all(pairs, lambda i, d: PH.UPDATE_PHASE_SUCCEEDED)),
                         {RR.REPORT_RESULT_ACCEPTED})
        # Anti-downgrade, every path:
        # (1) a late SUCCEEDED for the bad release is refused (wrong release).
        d0 = pairs[0][0]
        v = self.report(d0, rid, bad.release_counter, PH.UPDATE_PHASE_SUCCEEDED).result
        self.assertIn(v, (RR.REPORT_RESULT_DUPLICATE, RR.REPORT_RESULT_WRONG_RELEASE))
        v = self.report(d0, rb_rid, bad.release_counter, PH.UPDATE_PHASE_SUCCEEDED).result
        self.assertEqual(v, RR.REPORT_RESULT_WRONG_RELEASE)
        # (2) a new rollout of an older release targets nobody who is past it.
        old = self.create_rollout(bad.release_id, [stage("all", 10000, min_reported=10**6,
                                                         auto=False)],
                                  labels={"ring": "r"}, name="downgrade").rollout_id
        self.transition("Start", old)
        for d, r in self.ask_all([p[0] for p in pairs]):
            self.assertFalse(r.has_target and r.release.release_counter <= rb_counter, d.id)
            self.assertEqual(r.installed_counter, rb_counter)
        self.transition("Abort", old, role="operator", reason="downgrade test done")
        # (3) CreateRelease at or below the roll-forward's counter.
        self.assertRpcError(SC.FAILED_PRECONDITION, self.call, "CreateRelease",
                            self.release(bad.release_counter, artifact=prev_artifact),
                            role="rollout")
        self.assertRpcError(SC.FAILED_PRECONDITION, self.call, "CreateRelease",
                            self.release(rb_counter), role="rollout")
        # (4) GetDesiredState: never a target at or below the installed counter.
        for d, r in self.ask_all(ring):
            self.check_target(d, r)
        # The rollback rollout ends by hand (it never auto-aborts).
        self.transition("Advance", rb_rid, role="admin", force=True, reason="rolled back")
        self.assertEqual(self.status(rb_rid).rollout.state, COMPLETED)

    def test_70_leader_kill_mid_rollout(self):
        t0 = time.monotonic()
        rel = self.create_release()
        stages = [stage("half", 5000, min_reported=max(1, FLEET // 20)),
                  stage("all", 10000, min_reported=10**6, auto=False)]
        rid = self.create_rollout(rel.release_id, stages, name="failover").rollout_id
        self.transition("Start", rid)
        band = self.band(rid, 0, 5000)
        done = [0]
        lock = threading.Lock()
        accepted, replayed, no_target = [], [], []

        def device(d):
            r = self.desired(d, idem="lk-%d-%s" % (rid, d.id))
            self.check_target(d, r)
            if not r.has_target:
                no_target.append(d.id)
                return
            ctr = d.next_counter()
            res = self.report(d, rid, r.release.release_counter, PH.UPDATE_PHASE_SUCCEEDED,
                              counter=ctr).result
            # Retried across the failover with the same signed counter: the
            # first attempt committed iff the retry is a REPLAY.
            with lock:
                (accepted if res == RR.REPORT_RESULT_ACCEPTED else replayed).append((d.id, res))
                done[0] += 1

        killed = []

        def killer():
            deadline = time.monotonic() + CALL_DEADLINE_S
            while time.monotonic() < deadline:
                with lock:
                    if done[0] >= len(band) * 2 // 5:
                        break
                time.sleep(0.01)
            ld = self.c.wait_leader()
            killed.append((ld.id, done[0]))
            ld.kill9()

        kt = threading.Thread(target=killer, daemon=True)
        kt.start()
        pmap(device, band)
        kt.join(CALL_DEADLINE_S)
        self.assertTrue(killed, "the leader was never killed")
        self.assertEqual(no_target, [])
        self.assertTrue(all(res in (RR.REPORT_RESULT_ACCEPTED, RR.REPORT_RESULT_REPLAY)
                            for _, res in accepted + replayed), replayed)
        # Bring the old leader back; every node converges to one state.
        self.c.node(killed[0][0]).restart()
        self.c.wait_leader()
        self.c.wait_converged()
        st = self.status(rid)
        c = st.rollout.counters
        distinct = {did for did, _ in accepted + replayed}
        self.assertEqual(len(distinct), len(band))
        self.assertEqual(c[0].assigned + c[1].assigned, len(band))
        self.assertEqual(c[0].succeeded + c[1].succeeded, len(band))
        for x in c:
            self.assertEqual(x.assigned, x.succeeded + x.failed + x.downloading + x.installing
                             + x.rejected + x.rolled_back + x.timed_out)
            self.assertEqual((x.downloading, x.installing, x.failed), (0, 0, 0))
        for nd in self.c.running():
            self.assertEqual(self.status(rid, cl.SERIALIZABLE, node=nd).rollout, st.rollout,
                             "node %d" % nd.id)
        # Reports replayed now (another retry) change nothing.
        d = self.by_id[sorted(distinct)[0]]
        v = self.report(d, rid, rel.release_counter, PH.UPDATE_PHASE_SUCCEEDED,
                        counter=d.counter).result
        self.assertEqual(v, RR.REPORT_RESULT_REPLAY)
        self.assertEqual(self.status(rid).rollout.counters, st.rollout.counters)
        self.expect_gates.append((rid, "auto advance stage 0 -> 1"))
        self.transition("Abort", rid, role="operator", reason="failover test done")
        self.timings["leader_kill_s"] = round(time.monotonic() - t0, 1)
        self.timings["leader_kill"] = {"killed": killed[0], "band": len(band),
                                       "replayed": len(replayed)}

    def test_80_gateway_binding(self):
        # Rebind one device to another gateway: our gateway is refused before
        # proposing, and the refusal is aggregated into the ledger.
        d = self.devices[-1]
        rb = inv.RebindDeviceRequest(device_id=d.id, gateway_id="gw-elsewhere",
                                     idempotency_key="rebind-" + d.id)
        self.cli.call("/warden.v1.Inventory/RebindDevice", rb, role="operator")
        self.c.wait_converged()
        for _ in range(3):
            self.assertRpcError(SC.PERMISSION_DENIED, self.desired, d)
        self.assertRpcError(SC.PERMISSION_DENIED, self.report, d, 1, 1,
                            PH.UPDATE_PHASE_SUCCEEDED)
        # Wrong role at the method gate: an auditor may not ask.
        self.assertRpcError(SC.PERMISSION_DENIED, self.desired, d, role="auditor")
        deadline = time.monotonic() + FLUSH_WAIT_S
        while True:
            hits = [e for e in self.ledger()
                    if e.action == A.AUDIT_ACTION_AUTHZ_DENIAL
                    and e.target == RS + "GetDesiredState" and e.principal_role == 4]
            if sum(e.count for e in hits) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        self.assertGreaterEqual(sum(e.count for e in hits), 3)

    # ---- the ledger --------------------------------------------------------------
    def ledger(self):
        out, frm = [], 1
        while True:
            r = self.cli.call("/warden.v1.Audit/Read",
                              aud.ReadAuditRequest(from_seq=frm, max_entries=1000),
                              role="auditor")
            out.extend(r.entries)
            if not r.entries or r.next_seq > r.head_seq:
                return out
            frm = r.next_seq

    def test_90_audit_ledger_export_verify(self):
        es = self.ledger()
        self.assertEqual([e.seq for e in es], list(range(1, len(es) + 1)))
        trans = {}
        for e in es:
            if e.action == A.AUDIT_ACTION_ROLLOUT_TRANSITION:
                trans.setdefault(e.target, []).append(e)
        # Every manual transition (allowed or refused by the table) made by
        # these tests has its entry, in order, with its outcome.
        want = {}
        for rid, ev, outcome in self.expect_transitions:
            want.setdefault("rollout/%d" % rid, []).append((ev, outcome))
        for target, evs in want.items():
            got = [(e.detail, e.outcome) for e in trans.get(target, [])]
            self.assertEqual(len(got), len(evs), "%s: %s vs %s" % (target, got, evs))
            for (ev, outcome), (detail_ev, got_outcome) in zip(evs, got):
                self.assertEqual(got_outcome, outcome, target)
                if outcome == O.AUDIT_OUTCOME_OK:
                    # "EVENT: FROM(k) -> TO(k'): reason"; the rollback
                    # rollout's start reads "DRAFT -> RUNNING stage 0".
                    self.assertTrue(detail_ev.upper().startswith(ev.upper() + ":")
                                    or (ev == "Start" and "-> RUNNING" in detail_ev),
                                    "%s: %s" % (target, detail_ev))
        # Every gate decision observed.
        gates = [e for e in es if e.action == A.AUDIT_ACTION_ROLLOUT_GATE]
        for rid, prefix in self.expect_gates:
            hits = [e for e in gates if e.target == "rollout/%d" % rid
                    and e.detail.startswith(prefix)]
            self.assertEqual(len(hits), 1, "%d %s: %s" % (rid, prefix,
                                                          [e.detail for e in gates]))
        # Export from the cluster, then verify offline.
        f = os.path.join(self.c.tmp, "audit.export")
        ca = self.c.ca_path()
        cert, key = self.c.cert_paths("auditor")
        eps = ",".join(nd.client for nd in self.c.running())
        t0 = time.monotonic()
        r = subprocess.run([wt.WARDENCTL, "--endpoint", eps, "--ca", ca, "--cert", cert,
                            "--key", key, "audit", "export", f], capture_output=True,
                           timeout=CLI_TIMEOUT_S)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        r = subprocess.run([wt.WARDENCTL, "audit", "verify", f], capture_output=True,
                           timeout=CLI_TIMEOUT_S)
        self.assertEqual(r.returncode, 0, (r.stdout + r.stderr).decode(errors="replace"))
        self.timings["export_verify_s"] = round(time.monotonic() - t0, 1)
        self.timings["ledger_entries"] = len(es)


if __name__ == "__main__":
    cl.main()

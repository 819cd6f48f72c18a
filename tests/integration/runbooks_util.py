"""runbooks_util: helpers for tests/integration/test_runbooks.py, which runs
every docs/ops/ runbook step by step on local clusters (cluster.py).

Every wait is bounded; every process signalled was started by cluster.py.
"""

import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as ct  # noqa: E402
from cluster import cluster_pb2, grpc  # noqa: E402

wt = ct.wt

# wardenctl call bound (leader following, elections).
CLI_TIMEOUT_S = 60.0
# wardend recover/backup/restore: LMDB copy + raft_uv writes, sub-second.
OFFLINE_TIMEOUT_S = 60.0
# Promotion of an added node to voter (raft catch-up rounds).
MEMBER_TIMEOUT_S = 30.0


def wardenctl(c, *args, endpoints=None, exclude=None, role="admin", check=True):
    """wardenctl as `role` against `endpoints` (default: every running
    member but `exclude`). Returns (rc, stdout, stderr)."""
    eps = []
    for ep in endpoints or [nd.client for nd in c.running() if nd is not exclude]:
        eps += ["--endpoint", ep]
    cmd = [wt.WARDENCTL, *eps, "--dev-certs", c.certs, "--role", role, *args]
    r = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT_S)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    c.history.note("wardenctl %s -> %d: %s %s" % (" ".join(args), r.returncode, out, err))
    if check and r.returncode != 0:
        raise AssertionError("wardenctl %s -> %d:\n%s%s" % (" ".join(args), r.returncode, out, err))
    return r.returncode, out, err


def wardend_offline(c, *args, check=True):
    """`wardend recover|backup|restore ...`; returns (rc, stdout, stderr)."""
    cmd = [wt.WARDEND, *args]
    r = subprocess.run(cmd, capture_output=True, timeout=OFFLINE_TIMEOUT_S)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    c.history.note("wardend %s -> %d: %s %s" % (" ".join(args), r.returncode, out, err))
    if check and r.returncode != 0:
        raise AssertionError("wardend %s -> %d:\n%s%s" % (" ".join(args), r.returncode, out, err))
    return r.returncode, out, err


def peers_of(nodes):
    """--peers value naming exactly `nodes`."""
    for nd in nodes:
        nd.pick_ports()
    return ",".join("%d=%s/%s" % (nd.id, nd.peer, nd.client) for nd in nodes)


# Resends of one call refused by admission control (RESOURCE_EXHAUSTED, rate
# limit or in-flight cap: definite, nothing applied); test_rollout's backoff.
ADMISSION_RETRIES = 60
# Admission refusals absorbed by admission_call, by reason (printed by the
# tests that do bulk calls).
admission_retries = {"rate_limit": 0, "inflight": 0}


def admission_call(c, path, req, **kw):
    """c.call (leader following), resending a call refused by wardend's
    admission control with bounded backoff (test_rollout.admission_refusal)."""
    for n in range(ADMISSION_RETRIES + 1):
        try:
            return c.call(path, req, **kw)
        except grpc.RpcError as ex:
            why = tr.admission_refusal(ex)
            if why is None or n == ADMISSION_RETRIES:
                raise
            admission_retries[why] += 1
            c.history.note("admission %s, resend %d: %s" % (why, n + 1, ex.details()))
            tr.admission_backoff(ex, n)


def enroll(c, prefix, n, node=None, gateway="gw-a"):
    ids = []
    for _ in range(n):
        i = wt.uid(prefix)
        admission_call(c, ct.ENROLL, ct.enroll_req(i, idem=i, gateway=gateway), node=node,
                       record=False)
        ids.append(i)
    return ids


def add_voter(c, nd, via):
    """`wardenctl cluster add` (sent to `via`, never the joiner), then wait
    until the leader reports nd as a voter."""
    wardenctl(c, "cluster", "add", str(nd.id), nd.peer, nd.client,
              endpoints=[v.client for v in via])
    deadline = time.monotonic() + MEMBER_TIMEOUT_S
    st = None
    while time.monotonic() < deadline:
        st = c.wait_leader().status()
        if {m.id: m.role for m in st.members}.get(nd.id) == cluster_pb2.MEMBER_ROLE_VOTER:
            return st
        time.sleep(0.1)
    raise AssertionError("n%d not a voter: %s" % (nd.id, ct._fmt_status(st)))


def device_ids(nd):
    return {d.device_id for d in nd.list_serializable()}


def read_json(path):
    with open(path) as f:
        return json.load(f)


# ---- issue 9 runbooks that need the access and rollout services ------------------
# test_rollout's protos (rollout, audit: loaded by path, sharing the harness's
# inventory module), its canonical encodings and its Ed25519 helper; the
# access proto the same way. Importing the module starts nothing.
import test_rollout as tr  # noqa: E402

ro, aud = tr.ro, tr.aud
acc = tr._load("warden/v1/access.proto")

# The gateway principal of the cluster's certificates (warden://role/gateway/gateway).
GATEWAY = "gateway"
OPERATOR = "operator"
# Bounded wait for a watcher to receive an event, and for streams to open.
WATCH_WAIT_S = 15.0


def wjson(c, *args, role="admin", **kw):
    """`wardenctl --json ...`: the parsed document."""
    rc, out, err = wardenctl(c, "--json", *args, role=role, **kw)
    return json.loads(out)


def wardenctl_offline(*args, stdout_path=None):
    """An offline wardenctl command (no endpoint, no TLS files); stdout to
    stdout_path when given. Returns (rc, stdout, stderr)."""
    cmd = [wt.WARDENCTL, *args]
    if stdout_path:
        with open(stdout_path, "wb") as f:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, timeout=CLI_TIMEOUT_S)
        out = ""
    else:
        r = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT_S)
        out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    if r.returncode != 0:
        raise AssertionError("wardenctl %s -> %d:\n%s%s" % (" ".join(args), r.returncode, out, err))
    return r.returncode, out, err


def openssl_ed25519(directory, name):
    """`openssl genpkey -algorithm ed25519` + `openssl pkey -pubout`, the
    runbook's key generation. Returns (private PEM path, public PEM path)."""
    priv = os.path.join(directory, "%s.pem" % name)
    pub = os.path.join(directory, "%s.pub.pem" % name)
    for cmd in (["openssl", "genpkey", "-algorithm", "ed25519", "-out", priv],
                ["openssl", "pkey", "-in", priv, "-pubout", "-out", pub]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=wt.TOOL_TIMEOUT_S)
    return priv, pub


def activate(c, ids, reason="runbook"):
    for i in ids:
        wardenctl(c, "device", "state", i, "active", "--reason", reason, role="operator")


def audit_export_verify(c, path):
    """`wardenctl audit export FILE` then `wardenctl audit verify FILE`
    (must say intact). Returns the entries (dicts, the export's lines)."""
    wardenctl(c, "audit", "export", path, role="auditor")
    rc, out, err = wardenctl_offline("--json", "audit", "verify", path)
    v = json.loads(out)
    if v.get("result") != "intact":
        raise AssertionError("audit verify: %s" % out)
    with open(path) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    return lines[1:]


def entries(es, action, outcome="AUDIT_OUTCOME_OK", target=None, detail=""):
    return [e for e in es if e["action"] == "AUDIT_ACTION_" + action
            and (outcome is None or e["outcome"] == outcome)
            and (target is None or e["target"] == target) and detail in e["detail"]]


def rpc(c, path, req, resp_cls, role="gateway", node=None):
    """One unary call at the leader (or node), as a gateway/device would."""
    nd = node or c.wait_leader()
    f = c.channel(nd, role).unary_unary(path, request_serializer=type(req).SerializeToString,
                                        response_deserializer=resp_cls.FromString)
    for n in range(ADMISSION_RETRIES + 1):
        try:
            return f(req, timeout=ct.RPC_TIMEOUT_S)
        except grpc.RpcError as ex:
            # Admission control's refusal is definite: resend, bounded.
            why = tr.admission_refusal(ex)
            if why is None or n == ADMISSION_RETRIES:
                raise
            admission_retries[why] += 1
            tr.admission_backoff(ex, n)


class Watch:
    """A WatchRevocations stream (grpcio, like a gateway's) read by a
    thread into [(monotonic time, message)]."""

    def __init__(self, channel, from_revision, label, metadata=None):
        self.label = label
        self.msgs = []
        self.error = None
        self.cv = threading.Condition()
        f = channel.unary_stream("/warden.v1.Access/WatchRevocations",
                                 request_serializer=acc.WatchRevocationsRequest.SerializeToString,
                                 response_deserializer=acc.WatchRevocationsResponse.FromString)
        self.call = f(acc.WatchRevocationsRequest(from_revision=from_revision),
                      metadata=metadata)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for m in self.call:
                now = time.monotonic()
                with self.cv:
                    self.msgs.append((now, m))
                    self.cv.notify_all()
        except Exception as ex:  # noqa: BLE001 - grpc.RpcError on cancel
            with self.cv:
                self.error = ex
                self.cv.notify_all()

    def first(self, pred):
        """Arrival time of the first event matching pred, or None."""
        with self.cv:
            for ts, m in self.msgs:
                for e in m.events:
                    if pred(e):
                        return ts
        return None

    def wait(self, cond, timeout=WATCH_WAIT_S):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not cond():
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    break
                self.cv.wait(left)
        return cond()

    def wait_event(self, pred, timeout=WATCH_WAIT_S):
        if not self.wait(lambda: self.first(pred) is not None or False, timeout):
            return None
        return self.first(pred)

    def close(self):
        self.call.cancel()
        self.t.join(timeout=5)

"""cluster: harness for integration tests against a real Raft cluster of
`wardend` processes on loopback (issue 3).

Builds on wardentest (protoc output, openssl helpers, SEED). Each node gets
its own 127.0.0.x address and ports found free on that address, so several
test files can run in parallel. Nodes are started, SIGTERMed, kill -9ed and
restarted by PID; only processes started here are ever signalled.

What it gives a test:
  Cluster(n)            certificates (`wardend gen-certs`), data dirs, logs
  .start()/.node(i)     Node.start/stop/kill9/restart, each bounded
  .wait_leader()        a leader that a majority of running nodes agree on
  .call(path, req)      leader-following client: on UNAVAILABLE with trailer
                        `warden-leader` retry there, bounded hops and time;
                        every call goes into the op history
  .channel(node, role)  per-role mTLS channel to one node (cluster CA,
                        connect to the IP: node certs carry SAN IP)
  .wait_converged()     applied and fsm_applied index equal on given nodes
  dump()                seed, every node's command line and log tail, and
                        the op history; TestCase prints it on failure

Environment (besides wardentest's WARDEN_BUILD, WARDEN_SRC,
WARDEN_TEST_SEED, WARDEN_KEEP_TMP):
  WARDEN_CLUSTER_IP_BASE  last octet base for node addresses (node i gets
                          127.0.0.(base+i)); default 20
"""

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wardentest as wt  # noqa: E402
from wardentest import grpc, inv_pb2  # noqa: E402

SC = grpc.StatusCode

# ---- limits: every wait, loop and retry is bounded --------------------------
# One node from exec to answering Cluster/Status (LMDB open, raft_uv load;
# ASan builds are slow).
NODE_START_TIMEOUT_S = 30.0
# SIGTERM drain bound before SIGKILL.
NODE_STOP_TIMEOUT_S = 15.0
# Election after start or after the leader died: raft's election timeout is
# 1 s by default (randomised to 1-2 s); several rounds may split.
LEADER_TIMEOUT_S = 20.0
# Followers catching up (log replication or snapshot install).
CONVERGE_TIMEOUT_S = 60.0
# Leader hints followed by one call before giving up: a hint can be stale
# for an election or two, more than this means something loops.
MAX_HOPS = 8
# Total time one leader-following call may spend on retries (elections).
CALL_DEADLINE_S = 30.0
# Per-attempt RPC bound.
RPC_TIMEOUT_S = 10.0
# Pause between attempts when no leader is known yet.
RETRY_PAUSE_S = 0.1
# Poll period of the wait_* helpers.
POLL_S = 0.05
# Op history entries kept (oldest dropped) and printed on failure.
HISTORY_MAX = 200000
HISTORY_PRINT = 300
# Last octet base of node addresses (node i -> 127.0.0.(base + i)).
IP_BASE = int(os.environ.get("WARDEN_CLUSTER_IP_BASE", "20"))
# Port probing on a node address.
PORT_RETRIES = 5

CLUSTER_PROTO = "warden/v1/cluster.proto"


def _gen_cluster_proto():
    """protoc for cluster.proto into $WARDEN_BUILD/py, like wardentest."""
    src = os.path.join(wt.SRC, "proto", CLUSTER_PROTO)
    out = os.path.join(wt.PY_OUT, "warden/v1/cluster_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["protoc", "--python_out=" + wt.PY_OUT,
                        "-I" + os.path.join(wt.SRC, "proto"), src],
                       check=True, timeout=wt.TOOL_TIMEOUT_S)
    spec = importlib.util.spec_from_file_location("wardentest_pb_cluster_pb2", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cluster_pb2 = _gen_cluster_proto()

STATUS = "/warden.v1.Cluster/Status"
ADD = "/warden.v1.Cluster/AddMember"
REMOVE = "/warden.v1.Cluster/RemoveMember"
TRANSFER = "/warden.v1.Cluster/TransferLeadership"
ENROLL = "/warden.v1.Inventory/EnrollDevice"
GET = "/warden.v1.Inventory/GetDevice"
LIST = "/warden.v1.Inventory/ListDevices"
CHECK = "/grpc.health.v1.Health/Check"

wt.METHODS.update({
    STATUS: (cluster_pb2.ClusterStatusRequest, cluster_pb2.ClusterStatusResponse, False),
    ADD: (cluster_pb2.AddMemberRequest, cluster_pb2.AddMemberResponse, False),
    REMOVE: (cluster_pb2.RemoveMemberRequest, cluster_pb2.RemoveMemberResponse, False),
    TRANSFER: (cluster_pb2.TransferLeadershipRequest,
               cluster_pb2.TransferLeadershipResponse, False),
})

SERIALIZABLE = inv_pb2.READ_CONSISTENCY_SERIALIZABLE
LINEARIZABLE = inv_pb2.READ_CONSISTENCY_LINEARIZABLE

# One real Ed25519 key is enough for many devices: fingerprints need not be
# unique and openssl per device would dominate the run time.
_KEYS = []
_KEYS_LOCK = threading.Lock()


def ed_key():
    with _KEYS_LOCK:
        if not _KEYS:
            _KEYS.append(wt.gen_ed25519_pub())
        return _KEYS[0]


def enroll_req(device_id, idem=None, gateway="gw-a", firmware="1.0.0"):
    return inv_pb2.EnrollDeviceRequest(
        device_id=device_id, key_algorithm=inv_pb2.KEY_ALGORITHM_ED25519,
        public_key=ed_key(), attestation_digest=wt.digest32(device_id),
        hardware_model="plc-9000", firmware_version=firmware,
        labels=[inv_pb2.Label(key="site", value="plant-1")],
        gateway_id=gateway, idempotency_key=idem or "")


def wardend_help():
    """`wardend --help` text (stdout+stderr), for optional flags."""
    try:
        r = subprocess.run([wt.WARDEND, "--help"], capture_output=True,
                           timeout=wt.TOOL_TIMEOUT_S)
        return (r.stdout + r.stderr).decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return ""


_HELP = None


def has_flag(flag):
    global _HELP
    if _HELP is None:
        _HELP = wardend_help()
    return flag in _HELP


def free_port(ip):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def trailer(ex, key):
    """Value of trailing metadata `key` on a grpc.RpcError, or None."""
    try:
        md = ex.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - some errors carry no call
        return None
    for k, v in md:
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None


class ClusterError(Exception):
    pass


_ALL_CLUSTERS = []


# ---- history -----------------------------------------------------------------
class History:
    """Thread-safe op log: invoke/ok/fail/info, Jepsen style, for dumps."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []
        self.t0 = time.monotonic()

    def add(self, process, typ, f, value, node=None, detail=None):
        e = {"t": round(time.monotonic() - self.t0, 4), "process": process,
             "type": typ, "f": f, "value": value}
        if node is not None:
            e["node"] = node
        if detail is not None:
            e["detail"] = detail
        with self.lock:
            self.ops.append(e)
            if len(self.ops) > HISTORY_MAX:
                del self.ops[:len(self.ops) - HISTORY_MAX]
        return e

    def note(self, what):
        self.add("harness", "note", what, None)

    def dump(self, stream, last=HISTORY_PRINT):
        with self.lock:
            ops = list(self.ops)
        print("--- op history: %d ops, last %d ---" % (len(ops), min(last, len(ops))),
              file=stream)
        for e in ops[-last:]:
            print(json.dumps(e, sort_keys=True), file=stream)

    def save(self, path):
        with self.lock:
            ops = list(self.ops)
        with open(path, "w") as f:
            for e in ops:
                f.write(json.dumps(e, sort_keys=True) + "\n")


# ---- one node ----------------------------------------------------------------
class Node:
    def __init__(self, cluster, nid):
        self.cluster = cluster
        self.id = nid
        self.ip = "127.0.0.%d" % (IP_BASE + nid)
        self.client_port = None
        self.peer_port = None
        self.data_dir = os.path.join(cluster.tmp, "n%d" % nid)
        self.proc = None
        self.pid = None
        self.cmd = None
        self.logs = []
        self.exit_codes = []
        self.joined = False

    @property
    def client(self):
        return "%s:%d" % (self.ip, self.client_port)

    @property
    def peer(self):
        return "%s:%d" % (self.ip, self.peer_port)

    def pick_ports(self):
        """Free ports on this node's own address; kept across restarts (the
        other nodes know this node by them)."""
        if self.client_port is None:
            self.client_port = free_port(self.ip)
            p = free_port(self.ip)
            while p == self.client_port:
                p = free_port(self.ip)
            self.peer_port = p

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, join=False, wait=True):
        if not os.access(wt.WARDEND, os.X_OK):
            raise ClusterError("no wardend at %s (set WARDEN_BUILD)" % wt.WARDEND)
        if self.running():
            raise ClusterError("node %d already running" % self.id)
        self.pick_ports()
        self.joined = self.joined or join
        c = self.cluster
        log = os.path.join(c.tmp, "n%d-%d.log" % (self.id, len(self.logs)))
        self.logs.append(log)
        self.cmd = [wt.WARDEND, "--node-id", str(self.id),
                    "--peers", c.peers_arg(self),
                    "--listen", self.client, "--peer-listen", self.peer,
                    "--data-dir", self.data_dir,
                    "--tls-ca", c.ca_path(),
                    "--tls-cert", os.path.join(c.certs, "node-%d.pem" % self.id),
                    "--tls-key", os.path.join(c.certs, "node-%d-key.pem" % self.id)]
        if self.joined:
            self.cmd.append("--join")
        self.cmd += c.extra_args
        with open(log, "wb") as errf:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                         stdout=errf, stderr=errf, cwd=c.tmp)
        self.pid = self.proc.pid
        c.history.note("started n%d pid=%d%s" % (self.id, self.pid, " --join" if self.joined else ""))
        c.drop_channels(self)
        if wait:
            self.wait_up()
        return self

    def wait_up(self, timeout=NODE_START_TIMEOUT_S):
        """Until this node answers Cluster/Status (it need not know a leader)."""
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            rc = self.proc.poll() if self.proc else -1
            if rc is not None:
                self._reap(rc)
                raise ClusterError("node %d exited with %s during start" % (self.id, rc))
            # A fresh channel per attempt: grpcio 1.51 keeps a channel whose
            # first connect was refused in TRANSIENT_FAILURE for seconds,
            # whatever the reconnect-backoff options say.
            self.cluster.drop_channels(self)
            try:
                return self.status(timeout=1.0)
            except grpc.RpcError as ex:
                last = "%s %s" % (ex.code(), ex.details())
            except (OSError, ValueError) as ex:
                last = repr(ex)
            time.sleep(POLL_S * 2)
        raise ClusterError("node %d not answering Status within %.0fs (last: %s)"
                           % (self.id, timeout, last))

    def _reap(self, rc):
        self.exit_codes.append(rc)
        self.proc = None

    def kill9(self):
        """SIGKILL by PID and reap. No-op when not running."""
        if self.proc is None:
            return None
        self.cluster.history.note("kill -9 n%d pid=%d" % (self.id, self.proc.pid))
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        rc = self.proc.wait(timeout=wt.TOOL_TIMEOUT_S)
        self._reap(rc)
        self.cluster.drop_channels(self)
        return rc

    def stop(self, timeout=NODE_STOP_TIMEOUT_S):
        """SIGTERM, bounded wait, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        self.cluster.history.note("stop n%d pid=%d" % (self.id, self.proc.pid))
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cluster.history.note("n%d ignored SIGTERM for %.0fs: SIGKILL" % (self.id, timeout))
            os.kill(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait(timeout=wt.TOOL_TIMEOUT_S)
        self._reap(rc)
        self.cluster.drop_channels(self)
        return rc

    def restart(self, wait=True):
        return self.start(wait=wait)

    # -- clients --
    def channel(self, role="admin"):
        return self.cluster.channel(self, role)

    def status(self, timeout=RPC_TIMEOUT_S):
        return wt.stub(self.channel("admin"), STATUS)(
            cluster_pb2.ClusterStatusRequest(), timeout=timeout)

    def get_serializable(self, device_id, role="admin", timeout=RPC_TIMEOUT_S):
        return wt.stub(self.channel(role), GET)(
            inv_pb2.GetDeviceRequest(device_id=device_id, consistency=SERIALIZABLE),
            timeout=timeout)

    def list_serializable(self, role="admin", page_size=1000, max_pages=1000):
        """Every device in this node's local state (paged, bounded)."""
        out, token = [], ""
        for _ in range(max_pages):
            r = wt.stub(self.channel(role), LIST)(
                inv_pb2.ListDevicesRequest(page_size=page_size, page_token=token,
                                           consistency=SERIALIZABLE),
                timeout=RPC_TIMEOUT_S)
            out.extend(r.devices)
            token = r.next_page_token
            if not token:
                return out
        raise ClusterError("node %d: more than %d pages" % (self.id, max_pages))

    def log_text(self, tail=wt.LOG_TAIL_BYTES):
        out = []
        for p in self.logs:
            try:
                with open(p, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    n = f.tell()
                    f.seek(max(0, n - tail))
                    out.append("--- %s%s ---\n" % (p, " (tail)" if n > tail else ""))
                    out.append(f.read().decode(errors="replace"))
            except OSError as ex:
                out.append("--- %s: %s ---\n" % (p, ex))
        return "".join(out)

    def describe(self):
        return ("node %d: client=%s peer=%s pid=%s running=%s exit_codes=%s data_dir=%s\n  cmd: %s"
                % (self.id, self.client_port and self.client, self.peer_port and self.peer,
                   self.pid, self.running(), self.exit_codes, self.data_dir,
                   " ".join(self.cmd or [])))


# ---- the cluster ---------------------------------------------------------------
class Cluster:
    """n_max node slots (certificates for all of them); the first `n` form
    the bootstrap configuration. Node ids are 1-based."""

    def __init__(self, n=3, n_max=None, extra_args=(), name="cluster"):
        self.n = n
        self.n_max = n_max or n
        self.name = name
        self.extra_args = list(extra_args)
        self.tmp = tempfile.mkdtemp(prefix="warden-ct-%s-" % name)
        self.certs = os.path.join(self.tmp, "certs")
        self.history = History()
        self.nodes = {i: Node(self, i) for i in range(1, self.n_max + 1)}
        self._chan_lock = threading.Lock()
        self._channels = {}
        self._retired = []   # dropped channels, closed in close()
        self._gen_certs()
        _ALL_CLUSTERS.append(self)

    def _gen_certs(self):
        cmd = [wt.WARDEND, "gen-certs", "--out", self.certs]
        for i, nd in self.nodes.items():
            cmd += ["--node", "%d=%s" % (i, nd.ip)]
        r = subprocess.run(cmd, capture_output=True, timeout=wt.TOOL_TIMEOUT_S)
        if r.returncode != 0 or not os.path.exists(self.ca_path()):
            raise ClusterError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                      (r.stdout + r.stderr).decode(errors="replace")))

    def ca_path(self):
        return os.path.join(self.certs, "ca.pem")

    def cert_paths(self, role):
        return (os.path.join(self.certs, "%s.pem" % role),
                os.path.join(self.certs, "%s-key.pem" % role))

    def node(self, i):
        return self.nodes[i]

    def running(self):
        return [nd for nd in self.nodes.values() if nd.running()]

    def peers_arg(self, me):
        """--peers: the bootstrap voters, plus the node itself when it is a
        joiner outside them (so it knows its own peer/client pair)."""
        ids = list(range(1, self.n + 1))
        if me.id not in ids:
            ids.append(me.id)
        for i in ids:
            self.nodes[i].pick_ports()
        return ",".join("%d=%s/%s" % (i, self.nodes[i].peer, self.nodes[i].client)
                        for i in ids)

    def start(self):
        """Start the bootstrap voters (all processes first, then wait)."""
        for i in range(1, self.n + 1):
            self.nodes[i].pick_ports()
        try:
            for i in range(1, self.n + 1):
                self.nodes[i].start(wait=False)
            for i in range(1, self.n + 1):
                self.nodes[i].wait_up()
        except BaseException:
            self.dump()
            raise
        return self

    def close(self):
        with self._chan_lock:
            chans = list(self._channels.values()) + self._retired
            self._channels.clear()
            self._retired = []
        for ch in chans:
            with contextlib.suppress(Exception):
                ch.close()
        for nd in self.nodes.values():
            if nd.proc is not None:
                with contextlib.suppress(Exception):
                    nd.stop(timeout=5.0)

    def cleanup(self):
        self.close()
        if os.environ.get("WARDEN_KEEP_TMP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- channels --
    def credentials(self, role):
        with open(self.ca_path(), "rb") as f:
            ca = f.read()
        if role is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        c, k = self.cert_paths(role)
        with open(c, "rb") as f1, open(k, "rb") as f2:
            return grpc.ssl_channel_credentials(root_certificates=ca, private_key=f2.read(),
                                                certificate_chain=f1.read())

    def channel_to(self, addr, role="admin"):
        """Cached channel to a client address "ip:port" for role. Short
        reconnect backoff: nodes are killed and restarted under it."""
        key = (addr, role)
        with self._chan_lock:
            ch = self._channels.get(key)
            if ch is None:
                opts = [("grpc.use_local_subchannel_pool", 1),
                        ("grpc.enable_retries", 0),
                        ("grpc.initial_reconnect_backoff_ms", 100),
                        ("grpc.max_reconnect_backoff_ms", 500),
                        ("grpc.max_receive_message_length", 64 << 20)]
                ch = grpc.secure_channel(addr, self.credentials(role), opts)
                self._channels[key] = ch
            return ch

    def channel(self, node, role="admin"):
        return self.channel_to(node.client, role)

    def drop_channels(self, node):
        """Forget channels to node (after kill/restart), so the next call
        connects afresh instead of waiting out a reconnect backoff."""
        if node.client_port is not None:
            self.drop_channels_to(node.client)

    def drop_channels_to(self, addr):
        """Forget cached channels to addr. They are not closed here: other
        threads may have calls in flight on them (closing would cancel those
        and make new calls raise ValueError); cleanup closes them."""
        with self._chan_lock:
            gone = [k for k in self._channels if k[0] == addr]
            self._retired.extend(self._channels.pop(k) for k in gone)

    def node_by_client(self, addr):
        for nd in self.nodes.values():
            if nd.client_port is not None and nd.client == addr:
                return nd
        return None

    # -- observation --
    def statuses(self, nodes=None, timeout=2.0):
        """{id: ClusterStatusResponse or the exception} for running nodes."""
        out = {}
        for nd in nodes or self.running():
            try:
                out[nd.id] = nd.status(timeout=timeout)
            except grpc.RpcError as ex:
                out[nd.id] = ex
        return out

    def wait_leader(self, timeout=LEADER_TIMEOUT_S, exclude=()):
        """The leader Node once it says "leader" and a majority of the running
        nodes (counting it) name it. Bounded; raises ClusterError."""
        deadline = time.monotonic() + timeout
        last = {}
        while time.monotonic() < deadline:
            up = self.running()
            last = self.statuses(up)
            ok = {i: s for i, s in last.items() if not isinstance(s, Exception)}
            leaders = [i for i, s in ok.items() if s.state == "leader" and i not in exclude]
            for lid in leaders:
                term = ok[lid].term
                agree = sum(1 for s in ok.values() if s.leader_id == lid and s.term == term)
                voters = [m for m in ok[lid].members
                          if m.role == cluster_pb2.MEMBER_ROLE_VOTER]
                need = len(voters) // 2 + 1 if voters else len(up) // 2 + 1
                if agree >= need:
                    self.history.note("leader n%d term %d" % (lid, term))
                    return self.nodes[lid]
            time.sleep(POLL_S * 2)
        raise ClusterError("no leader within %.0fs; last statuses: %s"
                           % (timeout, _fmt_statuses(last)))

    def wait_converged(self, nodes=None, timeout=CONVERGE_TIMEOUT_S, at_least=0):
        """Until every given node (default: running) reports the same
        applied_index and fsm_applied_index, equal to the leader's commit
        index, and >= at_least. Returns {id: status}."""
        deadline = time.monotonic() + timeout
        last = {}
        while time.monotonic() < deadline:
            nds = nodes or self.running()
            last = self.statuses(nds)
            ok = [s for s in last.values() if not isinstance(s, Exception)]
            if len(ok) == len(nds) and ok:
                applied = {s.applied_index for s in ok}
                fsm = {s.fsm_applied_index for s in ok}
                commit = max(s.commit_index for s in ok)
                if (len(applied) == 1 and len(fsm) == 1 and applied == fsm
                        and min(applied) >= commit and min(applied) >= at_least):
                    return last
            time.sleep(POLL_S * 2)
        raise ClusterError("not converged within %.0fs (at_least=%d): %s"
                           % (timeout, at_least, _fmt_statuses(last)))

    # -- leader-following calls --
    def call(self, path, req, role="admin", node=None, timeout=RPC_TIMEOUT_S,
             process="main", max_hops=MAX_HOPS, deadline_s=CALL_DEADLINE_S,
             record=True, first_attempt_only=False):
        """Send req to node (default: the first running node) and follow
        leader hints. UNAVAILABLE with `warden-leader` -> retry at the hint
        (counts a hop); UNAVAILABLE without a hint (no leader yet, node down)
        -> pause, try the next running node. Bounded by max_hops hints and
        deadline_s. Other errors are raised at once.

        Not safe for non-idempotent writes whose first attempt may have
        reached the leader: only a follower's redirect (which did nothing)
        and connection failures before sending are retried blindly; a
        DEADLINE_EXCEEDED or a leader's UNAVAILABLE without a hint is raised
        (the caller decides, e.g. by retrying with the idempotency key)."""
        target = (node or (self.running() or [self.nodes[1]])[0]).client
        hops = 0
        deadline = time.monotonic() + deadline_s
        rot = 0
        desc = _describe_req(path, req)
        if record:
            self.history.add(process, "invoke", path.rsplit("/", 1)[1], desc, node=target)
        while True:
            try:
                resp = wt.stub(self.channel_to(target, role), path)(req, timeout=timeout)
                if record:
                    self.history.add(process, "ok", path.rsplit("/", 1)[1], desc, node=target,
                                     detail=_describe_resp(resp))
                return resp
            except grpc.RpcError as ex:
                code = ex.code()
                hint = trailer(ex, "warden-leader") if code == SC.UNAVAILABLE else None
                if record:
                    self.history.add(process, "fail" if code not in (SC.UNAVAILABLE, SC.DEADLINE_EXCEEDED)
                                     else "info", path.rsplit("/", 1)[1], desc, node=target,
                                     detail="%s %s hint=%s" % (code.name, ex.details(), hint))
                if code != SC.UNAVAILABLE or first_attempt_only:
                    raise
                if time.monotonic() >= deadline:
                    raise
                if hint is None and _is_transport_error(ex):
                    # Never reached a server (refused, reset): start over on
                    # a fresh channel when we come back to this address.
                    self.drop_channels_to(target)
                if hint:
                    hops += 1
                    if hops > max_hops:
                        raise
                    if hint == target:
                        time.sleep(RETRY_PAUSE_S)  # stale self-hint: let it settle
                    target = hint
                    continue
                time.sleep(RETRY_PAUSE_S)
                up = self.running()
                if up:
                    rot += 1
                    target = up[rot % len(up)].client

    # -- failure output --
    def dump(self, stream=sys.stderr):
        print("\n===== warden cluster %s: seed=%d (rerun with WARDEN_TEST_SEED=%d "
              "WARDEN_KEEP_TMP=1) tmp=%s =====" % (self.name, wt.SEED, wt.SEED, self.tmp),
              file=stream)
        for nd in self.nodes.values():
            print(nd.describe(), file=stream)
        for i, s in self.statuses(timeout=1.0).items():
            print("status n%d: %s" % (i, _fmt_status(s)), file=stream)
        for nd in self.nodes.values():
            if nd.logs:
                print(nd.log_text(), file=stream)
        self.history.dump(stream)
        hp = os.path.join(self.tmp, "history.jsonl")
        with contextlib.suppress(OSError):
            self.history.save(hp)
            print("full history: %s" % hp, file=stream)
        print("===== end of cluster %s =====" % self.name, file=stream)


def _is_transport_error(ex):
    """UNAVAILABLE made by the client library (no server answered), as
    opposed to a server's UNAVAILABLE status."""
    d = (ex.details() or "").lower()
    return ("failed to connect" in d or "socket closed" in d or "connection reset" in d
            or "handshake" in d or "connection refused" in d or "broken pipe" in d)


def _describe_req(path, req):
    if path == ENROLL:
        return {"device_id": req.device_id, "idem": req.idempotency_key}
    if path == GET:
        return {"device_id": req.device_id, "consistency": req.consistency}
    if path in (ADD, REMOVE, TRANSFER):
        return {"id": req.id}
    return path.rsplit("/", 1)[1]


def _describe_resp(resp):
    d = getattr(resp, "device", None)
    if d is not None and d.device_id:
        return {"device_id": d.device_id, "created_index": d.created_index}
    if hasattr(resp, "leader_id"):
        return {"leader_id": resp.leader_id}
    return None


def _fmt_status(s):
    if isinstance(s, Exception):
        code = getattr(s, "code", None)
        return "error %s" % (code().name if callable(code) else repr(s))
    return ("state=%s term=%d leader=%d commit=%d applied=%d fsm_applied=%d last=%d "
            "snap=%d restores=%d members=%s"
            % (s.state, s.term, s.leader_id, s.commit_index, s.applied_index,
               s.fsm_applied_index, s.last_index, s.snapshot_index, s.restores,
               [(m.id, cluster_pb2.MemberRole.Name(m.role)) for m in s.members]))


def _fmt_statuses(d):
    return "; ".join("n%d %s" % (i, _fmt_status(s)) for i, s in sorted(d.items()))


def dump_all(stream=sys.stderr):
    for c in _ALL_CLUSTERS:
        c.dump(stream)


class TestCase(wt.TestCase):
    """On failure prints the seed, every node's log tail and the op history
    of every cluster made in this process (and wardentest's servers)."""

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        # Skip wt.TestCase.run (it dumps only --dev servers) for the plain one.
        out = unittest.TestCase.run(self, result)
        if len(result.failures) + len(result.errors) > before:
            dump_all()
            if wt._ALL_SERVERS:
                wt.dump_servers()
        return out


def main():
    print("warden cluster integration: seed=%d build=%s src=%s" % (wt.SEED, wt.BUILD, wt.SRC),
          file=sys.stderr)
    try:
        unittest.main(verbosity=2)
    finally:
        for c in _ALL_CLUSTERS:
            c.cleanup()
        for s in wt._ALL_SERVERS:
            s.cleanup()

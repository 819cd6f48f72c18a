"""db: the 5-node wardend cluster under test (nodes 127.0.0.11-15, or
127.0.0.(10k+11)-(10k+15) in slot k).

Every node runs with its own supplementary-free group id (GID_BASE + id):
the peer transport does not bind its outbound sockets, so every node-to-node
packet leaves from 127.0.0.1 and source-address rules cannot tell nodes
apart; `iptables -m owner --gid-owner` can (see net.py).  Only processes
started here are signalled, by PID; every PID is appended to the store's
`pids` file so `warden-jepsen --cleanup` can find leftovers.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from . import wire
from .wire import grpc, cluster_pb2

# ---- limits -------------------------------------------------------------------
# A node from exec to answering Cluster/Status (LMDB open, raft log load).
NODE_START_TIMEOUT_S = 30.0
# SIGTERM drain bound before SIGKILL.
NODE_STOP_TIMEOUT_S = 10.0
# Reaping a SIGKILLed process.
REAP_TIMEOUT_S = 10.0
# An elected leader that a majority agrees on, after start/heal.
LEADER_TIMEOUT_S = 30.0
# Followers catching up after the heal (replication or snapshot install).
CONVERGE_TIMEOUT_S = 60.0
# Tool subprocesses (gen-certs).
TOOL_TIMEOUT_S = 60.0
# Poll period of the wait_* helpers.
POLL_S = 0.1
# Per-attempt status RPC bound.
STATUS_TIMEOUT_S = 1.0

SETPRIV = "/usr/bin/setpriv"   # util-linux
IP_BASE = 10          # node i -> 127.0.0.(10 + i): 127.0.0.11-15
GID_BASE = 61000      # node i runs with gid 61000 + 10 + i (net.py matches it)
# Concurrent runs: slot k uses 127.0.0.(10 + 10k + i) and its own gids, lock
# and iptables chains.  Nine slots keep every address inside 127.0.0.11-95.
# (bench/scenarios/lib.sh defaults to 127.0.0.21-23 and 41-43, i.e. slots 1
# and 3, and the integration tests to 127.0.0.21+: pick other slots while
# those run.)
MAX_SLOTS = 9


def set_slot(slot):
    global IP_BASE
    if not 0 <= slot < MAX_SLOTS:
        raise DbError("slot %d outside 0..%d" % (slot, MAX_SLOTS - 1))
    IP_BASE = 10 + 10 * slot

FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/faketime/libfaketimeMT.so.1",
                 "/usr/lib/faketime/libfaketime.so.1")


def faketime_lib():
    for p in FAKETIME_LIBS:
        if os.path.exists(p):
            return p
    return None


class DbError(Exception):
    pass


def free_port(ip, avoid=()):
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ip, 0))
            p = s.getsockname()[1]
        if p not in avoid:
            return p
    raise DbError("no free port on %s" % ip)


def is_wardend(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip() == "wardend"
    except OSError:
        return False


class Node:
    def __init__(self, db, nid):
        self.db = db
        self.id = nid
        self.ip = "127.0.0.%d" % (IP_BASE + nid)
        self.gid = GID_BASE + IP_BASE + nid
        self.client_port = free_port(self.ip)
        self.peer_port = free_port(self.ip, avoid=(self.client_port,))
        self.data_dir = os.path.join(db.dir, "n%d" % nid)
        self.proc = None
        self.starts = 0
        self.paused = False
        self.faketime_file = None     # set while running under libfaketime
        self.joined = False
        self.lock = threading.RLock()

    @property
    def client(self):
        return "%s:%d" % (self.ip, self.client_port)

    @property
    def peer(self):
        return "%s:%d" % (self.ip, self.peer_port)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, join=False, faketime_file=None):
        with self.lock:
            if self.running():
                return
            self.joined = join
            self.faketime_file = faketime_file
            cmd = [self.db.wardend, "--node-id", str(self.id),
                   "--peers", self.db.peers_arg(),
                   "--listen", self.client, "--peer-listen", self.peer,
                   "--data-dir", self.data_dir,
                   "--tls-ca", os.path.join(self.db.certs, "ca.pem"),
                   "--tls-cert", os.path.join(self.db.certs, "node-%d.pem" % self.id),
                   "--tls-key", os.path.join(self.db.certs, "node-%d-key.pem" % self.id)]
            if join:
                cmd.append("--join")
            cmd += self.db.extra_args
            env = dict(os.environ)
            if faketime_file:
                # libfaketime on CLOCK_REALTIME only: raft timers and the
                # freshness logic run on CLOCK_MONOTONIC / log indexes.
                env.update({"LD_PRELOAD": faketime_lib(),
                            "FAKETIME_TIMESTAMP_FILE": faketime_file,
                            "FAKETIME_NO_CACHE": "1",
                            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                            "FAKETIME_DONT_RESET": "1"})
            log = open(os.path.join(self.db.dir, "n%d.log" % self.id), "ab")
            log.write(("\n### jepsen: start #%d%s%s: %s\n" % (
                self.starts, " --join" if join else "",
                " faketime" if faketime_file else "", " ".join(cmd))).encode())
            log.flush()
            # The gid is set by setpriv, not by a preexec_fn: forking a
            # process with live grpc threads and running Python in the child
            # deadlocks (grpc's fork handlers wait for its thread pool), so
            # Popen must be able to vfork+exec.
            self.proc = subprocess.Popen(
                [SETPRIV, "--regid", str(self.gid), "--clear-groups", "--"] + cmd,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.db.dir,
                env=env, start_new_session=True)
            log.close()
            self.starts += 1
            self.paused = False
            self.db.record_pid(self.proc.pid)

    def kill9(self):
        with self.lock:
            if self.proc is None:
                return None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait(timeout=REAP_TIMEOUT_S)
            self.proc = None
            self.paused = False
            return rc

    def stop(self):
        with self.lock:
            if self.proc is None:
                return None
            if self.paused:
                self.cont()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=NODE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                rc = self.proc.wait(timeout=REAP_TIMEOUT_S)
            self.proc = None
            return rc

    def pause(self):
        with self.lock:
            if self.running() and not self.paused:
                os.kill(self.proc.pid, signal.SIGSTOP)
                self.paused = True

    def cont(self):
        with self.lock:
            if self.proc is not None and self.paused:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGCONT)
            self.paused = False

    def wipe(self):
        with self.lock:
            if self.running():
                raise DbError("wipe of running node %d" % self.id)
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def status(self, timeout=STATUS_TIMEOUT_S):
        return wire.stub(self.db.channel(self.client), "Status")(
            cluster_pb2.ClusterStatusRequest(), timeout=timeout)

    def wait_up(self, timeout=NODE_START_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise DbError("node %d exited (%s) during start; see n%d.log"
                              % (self.id, self.proc and self.proc.returncode, self.id))
            self.db.drop_channel(self.client)
            try:
                return self.status()
            except grpc.RpcError as ex:
                last = "%s %s" % (ex.code(), ex.details())
            time.sleep(POLL_S)
        raise DbError("node %d not answering within %.0fs (%s)" % (self.id, timeout, last))


class Db:
    def __init__(self, store_dir, wardend, n=5, extra_args=()):
        self.dir = store_dir
        self.wardend = wardend
        self.extra_args = list(extra_args)
        self.certs = os.path.join(store_dir, "certs")
        self.pids_path = os.path.join(store_dir, "pids")
        self._pid_lock = threading.Lock()
        self._chan_lock = threading.Lock()
        self._channels = {}
        self._retired = []
        self._mint_lock = threading.Lock()
        self.nodes = {i: Node(self, i) for i in range(1, n + 1)}
        # Current voters (membership nemesis removes and re-adds).
        self.members = set(self.nodes)

    # -- setup --
    def gen_certs(self):
        cmd = [self.wardend, "gen-certs", "--out", self.certs]
        for i, nd in self.nodes.items():
            cmd += ["--node", "%d=%s" % (i, nd.ip)]
        r = subprocess.run(cmd, capture_output=True, timeout=TOOL_TIMEOUT_S)
        if r.returncode != 0:
            raise DbError("gen-certs failed: %s" % (r.stdout + r.stderr).decode(errors="replace"))

    def peers_arg(self):
        return ",".join("%d=%s/%s" % (i, nd.peer, nd.client)
                        for i, nd in sorted(self.nodes.items()))

    def record_pid(self, pid):
        with self._pid_lock, open(self.pids_path, "a") as f:
            f.write("%d\n" % pid)

    def start_all(self):
        for nd in self.nodes.values():
            nd.start()
        for nd in self.nodes.values():
            nd.wait_up()

    def teardown(self):
        """SIGTERM every node (bounded); a node whose lock is held by a stuck
        nemesis step is SIGKILLed without it."""
        for nd in self.nodes.values():
            if nd.lock.acquire(timeout=NODE_STOP_TIMEOUT_S):
                try:
                    with contextlib.suppress(Exception):
                        nd.cont()
                    with contextlib.suppress(Exception):
                        nd.stop()
                finally:
                    nd.lock.release()
        self.kill_all_now()
        self.close_channels()

    def kill_all_now(self):
        """Signal-handler safe: SIGCONT + SIGKILL every node we started."""
        for nd in self.nodes.values():
            p = nd.proc
            if p is not None and p.poll() is None:
                with contextlib.suppress(Exception):
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGKILL)

    # -- channels (shared, admin role) --
    def credentials(self, role="admin"):
        with open(os.path.join(self.certs, "ca.pem"), "rb") as f:
            ca = f.read()
        with open(os.path.join(self.certs, "%s.pem" % role), "rb") as f1, \
                open(os.path.join(self.certs, "%s-key.pem" % role), "rb") as f2:
            return grpc.ssl_channel_credentials(root_certificates=ca, private_key=f2.read(),
                                                certificate_chain=f1.read())

    def new_channel(self, addr, role="admin"):
        opts = [("grpc.use_local_subchannel_pool", 1),
                ("grpc.enable_retries", 0),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 500),
                ("grpc.max_receive_message_length", 64 << 20)]
        return grpc.secure_channel(addr, self.credentials(role), opts)

    def channel(self, addr, role="admin"):
        """Shared channel to addr as `role` (a cert certs/<role>.pem: the
        generated admin/operator/auditor/gateway/rollout ones, or one minted
        by mint_cert)."""
        key = addr if role == "admin" else (addr, role)
        with self._chan_lock:
            ch = self._channels.get(key)
            if ch is None:
                ch = self._channels[key] = self.new_channel(addr, role)
            return ch

    def drop_channel(self, addr, role=None):
        """Retire addr's channels (every role unless `role` is given)."""
        with self._chan_lock:
            for key in list(self._channels):
                a, r = (key, "admin") if isinstance(key, str) else key
                if a == addr and (role is None or r == role):
                    self._retired.append(self._channels.pop(key))

    def mint_cert(self, role, name):
        """A client cert for warden://role/<role>/<name> signed by this run's
        CA (its key is in certs/); usable as channel(addr, name)."""
        with self._mint_lock:
            return self._mint_cert(role, name)

    def _mint_cert(self, role, name):
        crt = os.path.join(self.certs, "%s.pem" % name)
        if os.path.exists(crt):
            return name
        key = os.path.join(self.certs, "%s-key.pem" % name)
        csr = os.path.join(self.certs, "%s.csr" % name)
        ext = os.path.join(self.certs, "%s.ext" % name)
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=clientAuth\nsubjectAltName=URI:warden://role/%s/%s\n"
                    % (role, name))
        for cmd in (["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=%s" % name],
                    ["openssl", "x509", "-req", "-in", csr, "-CA",
                     os.path.join(self.certs, "ca.pem"), "-CAkey",
                     os.path.join(self.certs, "ca-key.pem"),
                     "-set_serial", "0x" + os.urandom(16).hex(),
                     "-out", crt, "-days", "2", "-extfile", ext]):
            r = subprocess.run(cmd, capture_output=True, timeout=TOOL_TIMEOUT_S)
            if r.returncode != 0:
                raise DbError("mint cert %s: %s" % (name, r.stderr.decode(errors="replace")))
        return name

    def close_channels(self):
        with self._chan_lock:
            chans = list(self._channels.values()) + self._retired
            self._channels.clear()
            self._retired = []
        for ch in chans:
            with contextlib.suppress(Exception):
                ch.close()

    # -- observation --
    def running(self):
        return [nd for nd in self.nodes.values() if nd.running() and not nd.paused]

    def statuses(self, nodes=None):
        out = {}
        for nd in nodes or self.running():
            try:
                out[nd.id] = nd.status()
            except grpc.RpcError as ex:
                out[nd.id] = ex
        return out

    def leader(self):
        """Node id that a majority of the reachable members name, or None."""
        st = {i: s for i, s in self.statuses().items() if not isinstance(s, Exception)}
        for i, s in st.items():
            if s.state == "leader":
                agree = sum(1 for x in st.values() if x.leader_id == i and x.term == s.term)
                if agree >= len(self.members) // 2 + 1:
                    return i
        return None

    def wait_leader(self, timeout=LEADER_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lid = self.leader()
            if lid:
                return lid
            time.sleep(POLL_S * 2)
        raise DbError("no leader within %.0fs: %s" % (timeout, fmt_statuses(self.statuses())))

    def wait_converged(self, timeout=CONVERGE_TIMEOUT_S):
        """Every member running and applied == fsm_applied == max commit."""
        deadline = time.monotonic() + timeout
        last = {}
        while time.monotonic() < deadline:
            nds = [self.nodes[i] for i in sorted(self.members)]
            last = self.statuses(nds)
            ok = [s for s in last.values() if not isinstance(s, Exception)]
            if len(ok) == len(nds):
                applied = {s.applied_index for s in ok} | {s.fsm_applied_index for s in ok}
                commit = max(s.commit_index for s in ok)
                if len(applied) == 1 and min(applied) >= commit:
                    return last
            time.sleep(POLL_S * 2)
        raise DbError("not converged within %.0fs: %s" % (timeout, fmt_statuses(last)))


def fmt_status(s):
    if isinstance(s, Exception):
        code = getattr(s, "code", None)
        return "error %s" % (code().name if callable(code) else repr(s))
    return ("%s term=%d leader=%d commit=%d applied=%d fsm=%d members=%s"
            % (s.state, s.term, s.leader_id, s.commit_index, s.applied_index,
               s.fsm_applied_index, [(m.id, m.role) for m in s.members]))


def fmt_statuses(d):
    return "; ".join("n%d %s" % (i, fmt_status(s)) for i, s in sorted(d.items()))

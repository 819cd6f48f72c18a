#!/usr/bin/python3
"""restart.py - the Python side of bench/scenarios/restart.sh (issue 8,
scenario 5): preload a warden cluster, read its status, and time a restart
from outside. Not run on its own; restart.sh starts and stops every process.

  enroll  --endpoints A,B,C --certs DIR --devices N [--concurrency 8]
          Inventory/EnrollDevices, 256 devices per call (the server's cap),
          ids PREFIX0000000.. ; follows `warden-leader` hints; resends a
          refused batch with its idempotency key (bounded). JSON on stdout.
  status  --endpoints ... --certs DIR [--wait-applied S] [--device ID ...]
          Cluster/Status of every node (optionally until every node has
          applied the leader's commit index, bounded), and a linearizable
          GetDevice of each --device through the leader. JSON on stdout.
  probe   --system warden|etcd --endpoints ... --certs DIR --key K
          [--deadline 120] [--ready FILE]
          Started before the processes are: polls every node until each one
          accepts TCP, serves a serializable read and a linearizable read
          (warden: or names the leader in `warden-leader`), and the cluster
          has taken one write. Prints the CLOCK_REALTIME (ns) of each first
          success as JSON; restart.sh subtracts the exec times.

etcd is spoken with raw protobuf bytes (etcdserverpb.RangeRequest/PutRequest
encoded by hand, as bench/loadgen/tmpl.c does): no etcd .proto is needed.

Every loop here is bounded in count and time (the constants below).
"""

import argparse
import json
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))

import cluster as cl  # noqa: E402
import wardentest as wt  # noqa: E402
from wardentest import grpc, health_pb2, inv_pb2 as inv  # noqa: E402

SC = grpc.StatusCode

# ---- bounds -------------------------------------------------------------------
DEVICES_MAX = 2_000_000        # preload cap (the issue asks for 1,000,000)
BATCH = 256                    # WFSM_ENROLL_BATCH_MAX: devices per EnrollDevices
CONCURRENCY_MAX = 64
ENROLL_SECONDS_MAX = 7200      # the whole preload gives up after this
BATCH_ATTEMPTS = 40            # per batch: redirects, elections, admission
RPC_TIMEOUT_S = 60.0           # one EnrollDevices call (a snapshot may stall it)
RETRY_PAUSE_S = 0.1
STATUS_RPC_TIMEOUT_S = 5.0
WAIT_APPLIED_MAX_S = 600.0
PROBE_DEADLINE_MAX_S = 600.0
PROBE_POLL_S = 0.005           # between probe attempts on one node (200/s)
PROBE_CONNECT_TIMEOUT_S = 0.2  # one TCP connect attempt
PROBE_RPC_TIMEOUT_S = 1.0      # one probe RPC
PROBE_WRITES_MAX = 100000      # probe write attempts, all nodes together

ENROLL_ONE = "/warden.v1.Inventory/EnrollDevice"
ENROLL_MANY = "/warden.v1.Inventory/EnrollDevices"
GET = "/warden.v1.Inventory/GetDevice"
HEALTH = "/grpc.health.v1.Health/Check"
ETCD_RANGE = "/etcdserverpb.KV/Range"
ETCD_PUT = "/etcdserverpb.KV/Put"


def now_ns():
    return time.time_ns()  # CLOCK_REALTIME, as bash's $EPOCHREALTIME


def log(msg):
    print("restart.py: %s" % msg, file=sys.stderr, flush=True)


# ---- channels -------------------------------------------------------------------
def read(path):
    with open(path, "rb") as f:
        return f.read()


def creds(a):
    """mTLS credentials: warden (gen-certs layout, role cert) or etcd
    (lib.sh's etcd_certs layout: ca.pem, client.pem, client-key.pem)."""
    if a.system == "etcd":
        c, k = "client.pem", "client-key.pem"
    else:
        c, k = "%s.pem" % a.role, "%s-key.pem" % a.role
    return grpc.ssl_channel_credentials(
        root_certificates=read(os.path.join(a.certs, "ca.pem")),
        private_key=read(os.path.join(a.certs, k)),
        certificate_chain=read(os.path.join(a.certs, c)))


def channel(addr, cred):
    # Short reconnect backoff: the probe starts before the server listens.
    # min_reconnect_backoff_ms is gRPC core's connect (TCP + TLS handshake)
    # timeout: long enough for a server that accepts TCP before it serves
    # (etcd) to finish the handshake on a loaded machine.
    opts = [("grpc.use_local_subchannel_pool", 1),
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 10),
            ("grpc.min_reconnect_backoff_ms", 2000),
            ("grpc.max_reconnect_backoff_ms", 50),
            ("grpc.max_receive_message_length", 64 << 20)]
    return grpc.secure_channel(addr, cred, opts)


def raw(ch, path):
    return ch.unary_unary(path)  # bytes in, bytes out


def typed(ch, path, req, resp):
    return ch.unary_unary(path, request_serializer=req.SerializeToString,
                          response_deserializer=resp.FromString)


# ---- etcd messages, by hand (proto3 wire format) -------------------------------
def pb_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def pb_bytes(field, data):
    return pb_varint(field << 3 | 2) + pb_varint(len(data)) + data


def etcd_range(key, serializable=False):
    # RangeRequest{key = 1, serializable = 7}
    return pb_bytes(1, key.encode()) + (b"\x38\x01" if serializable else b"")


def etcd_put(key, value):
    return pb_bytes(1, key.encode()) + pb_bytes(2, value)  # PutRequest{key, value}


# ---- enroll -----------------------------------------------------------------------
def device_id(prefix, i):
    return "%s%07d" % (prefix, i)


def build_batch(prefix, start, n, key):
    devs = [inv.EnrollDeviceRequest(
        device_id=device_id(prefix, i), key_algorithm=inv.KEY_ALGORITHM_ED25519,
        public_key=key, attestation_digest=wt.digest32(device_id(prefix, i)),
        hardware_model="plc-9000", firmware_version="1.0.0",
        labels=[inv.Label(key="site", value="plant-%d" % (i % 16))],
        gateway_id="gw-%d" % (i % 64)) for i in range(start, min(n, start + BATCH))]
    return inv.EnrollDevicesRequest(devices=devs,
                                    idempotency_key="restart-%s-%d" % (prefix, start))


class Leader:
    """The endpoint believed to lead; moved by `warden-leader` hints."""

    def __init__(self, eps, cred):
        self.eps = list(eps)
        self.cred = cred
        self.cur = self.eps[0]
        self.lock = threading.Lock()
        self.chans = {}

    def stub(self, addr, path, req, resp):
        with self.lock:
            ch = self.chans.get(addr)
            if ch is None:
                ch = self.chans[addr] = channel(addr, self.cred)
        return typed(ch, path, req, resp)

    def moved(self, old, hint):
        with self.lock:
            if self.cur != old:
                return
            if hint and hint != old:
                self.cur = hint
            else:
                self.cur = self.eps[(self.eps.index(old) + 1) % len(self.eps)] \
                    if old in self.eps else self.eps[0]

    def close(self):
        for ch in self.chans.values():
            ch.close()


def cmd_enroll(a):
    n = max(1, min(a.devices, DEVICES_MAX))
    conc = max(1, min(a.concurrency, CONCURRENCY_MAX))
    lead = Leader(a.endpoints.split(","), creds(a))
    key = cl.ed_key()
    starts = list(range(0, n, BATCH))
    nxt = [0]
    lock = threading.Lock()
    st = {"enrolled": 0, "batches": 0, "retries": 0, "redirects": 0,
          "admission_retries": 0, "errors": [], "lat_ms": []}
    t0 = time.monotonic()
    stop = [False]

    def worker():
        while not stop[0]:
            with lock:
                if nxt[0] >= len(starts):
                    return
                s = starts[nxt[0]]
                nxt[0] += 1
            req = build_batch(a.prefix, s, n, key)
            for attempt in range(BATCH_ATTEMPTS):
                if time.monotonic() - t0 > min(a.max_seconds, ENROLL_SECONDS_MAX):
                    stop[0] = True
                    with lock:
                        st["errors"].append("time bound reached")
                    return
                addr = lead.cur
                t = time.monotonic()
                try:
                    r = lead.stub(addr, ENROLL_MANY, inv.EnrollDevicesRequest,
                                  inv.EnrollDevicesResponse)(req, timeout=RPC_TIMEOUT_S)
                    with lock:
                        st["enrolled"] += len(r.devices)
                        st["batches"] += 1
                        st["lat_ms"].append((time.monotonic() - t) * 1000.0)
                        if st["batches"] % 200 == 0:
                            log("enrolled %d of %d in %.1fs" % (
                                st["enrolled"], n, time.monotonic() - t0))
                    break
                except grpc.RpcError as ex:
                    code = ex.code()
                    with lock:
                        st["retries"] += 1
                    if code == SC.UNAVAILABLE:
                        hint = cl.trailer(ex, "warden-leader")
                        with lock:
                            st["redirects"] += 1 if hint else 0
                        lead.moved(addr, hint)
                        if not hint:
                            time.sleep(RETRY_PAUSE_S)
                        continue
                    if code == SC.RESOURCE_EXHAUSTED and (
                            (ex.details() or "").startswith("rate limit")
                            or "(max_inflight)" in (ex.details() or "")):
                        with lock:
                            st["admission_retries"] += 1
                        time.sleep(RETRY_PAUSE_S)
                        continue
                    if code == SC.DEADLINE_EXCEEDED:
                        continue  # same idempotency key: the first result comes back
                    with lock:
                        st["errors"].append("batch %d: %s %s" % (s, code.name, ex.details()))
                    break
            else:
                with lock:
                    st["errors"].append("batch %d: gave up after %d attempts" % (s, BATCH_ATTEMPTS))

    ths = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    el = time.monotonic() - t0
    lead.close()
    lat = sorted(st["lat_ms"])
    pct = (lambda p: round(lat[min(len(lat) - 1, int(p / 100.0 * (len(lat) - 1)))], 1)
           if lat else None)
    print(json.dumps({
        "devices": n, "enrolled": st["enrolled"], "batches": st["batches"],
        "batch_size": BATCH, "concurrency": conc, "elapsed_s": round(el, 2),
        "devices_per_s": round(st["enrolled"] / el, 1) if el > 0 else None,
        "batch_p50_ms": pct(50), "batch_p99_ms": pct(99),
        "batch_max_ms": round(lat[-1], 1) if lat else None,
        "retries": st["retries"], "redirects": st["redirects"],
        "admission_retries": st["admission_retries"],
        "errors": len(st["errors"]), "error_sample": st["errors"][:5],
        "first_id": device_id(a.prefix, 0), "last_id": device_id(a.prefix, n - 1),
    }))
    return 0 if not st["errors"] and st["enrolled"] == n else 1


# ---- status --------------------------------------------------------------------------
def status_of(addr, cred):
    ch = channel(addr, cred)
    try:
        r = typed(ch, cl.STATUS, cl.cluster_pb2.ClusterStatusRequest,
                  cl.cluster_pb2.ClusterStatusResponse)(
            cl.cluster_pb2.ClusterStatusRequest(), timeout=STATUS_RPC_TIMEOUT_S)
        return {k: getattr(r, k) for k in (
            "id", "state", "term", "leader_id", "commit_index", "applied_index",
            "fsm_applied_index", "last_index", "snapshot_index", "snapshot_term",
            "restores", "restores_skipped", "snapshots", "proposals", "flushes")}
    except grpc.RpcError as ex:
        return {"error": "%s %s" % (ex.code().name, ex.details())}
    finally:
        ch.close()


def cmd_status(a):
    cred = creds(a)
    eps = a.endpoints.split(",")
    deadline = time.monotonic() + min(a.wait_applied, WAIT_APPLIED_MAX_S)
    while True:
        sts = {ep: status_of(ep, cred) for ep in eps}
        lead = [s for s in sts.values() if s.get("state") == "leader"]
        target = lead[0]["commit_index"] if lead else None
        done = target is not None and all(
            s.get("fsm_applied_index", 0) >= target for s in sts.values())
        if done or a.wait_applied <= 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = {"nodes": sts, "all_applied": bool(done)}
    if a.device:
        lep = next((ep for ep, s in sts.items() if s.get("state") == "leader"), eps[0])
        ch = channel(lep, cred)
        get = typed(ch, GET, inv.GetDeviceRequest, inv.GetDeviceResponse)
        out["get"] = {}
        for d in a.device:
            try:
                r = get(inv.GetDeviceRequest(device_id=d), timeout=STATUS_RPC_TIMEOUT_S)
                out["get"][d] = "ok" if r.device.device_id == d else "wrong device"
            except grpc.RpcError as ex:
                out["get"][d] = "%s %s" % (ex.code().name, ex.details())
        ch.close()
    print(json.dumps(out))
    return 0


# ---- probe ----------------------------------------------------------------------------
class NodeProbe(threading.Thread):
    """First success of each step on one node, as CLOCK_REALTIME ns."""

    def __init__(self, a, idx, addr, cred, shared):
        super().__init__(daemon=True)
        self.a, self.idx, self.addr, self.cred, self.sh = a, idx, addr, cred, shared
        self.t = {}
        self.attempts = 0
        self.reconnects = 0
        self.last_error = None

    def mark(self, what):
        if what not in self.t:
            self.t[what] = now_ns()

    def done(self):
        need = ["accept", "read_serializable"]
        need += (["leader_known", "health_serving"] if self.a.system == "warden"
                 else ["read_linearizable"])
        return all(k in self.t for k in need) and "write" in self.sh["t"] \
            and "read_linearizable" in self.sh["t"]

    def run(self):
        a, sh = self.a, self.sh
        host, port = self.addr.rsplit(":", 1)
        while not sh["stop"]:
            try:
                with socket.create_connection((host, int(port)),
                                              timeout=PROBE_CONNECT_TIMEOUT_S):
                    pass
                self.mark("accept")
                break
            except OSError:
                time.sleep(PROBE_POLL_S)
        ch = None
        while not sh["stop"] and not self.done():
            self.attempts += 1
            if ch is None:
                # A fresh channel after every connection-level failure: a
                # gRPC subchannel that failed while the server accepted TCP
                # but did not serve yet (etcd) can stay failed long after.
                ch = channel(self.addr, self.cred)
                if a.system == "warden":
                    health = typed(ch, HEALTH, health_pb2.HealthCheckRequest,
                                   health_pb2.HealthCheckResponse)
                    get = typed(ch, GET, inv.GetDeviceRequest, inv.GetDeviceResponse)
                    put = typed(ch, ENROLL_ONE, inv.EnrollDeviceRequest,
                                inv.EnrollDeviceResponse)
                else:
                    rng, putr = raw(ch, ETCD_RANGE), raw(ch, ETCD_PUT)
            try:
                if a.system == "warden" and "health_serving" not in self.t:
                    r = health(health_pb2.HealthCheckRequest(), timeout=PROBE_RPC_TIMEOUT_S)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        self.mark("health_serving")
                if "read_serializable" not in self.t:
                    if a.system == "warden":
                        get(inv.GetDeviceRequest(device_id=a.key, consistency=cl.SERIALIZABLE),
                            timeout=PROBE_RPC_TIMEOUT_S)
                    else:
                        rng(etcd_range(a.key, True), timeout=PROBE_RPC_TIMEOUT_S)
                    self.mark("read_serializable")
                if "read_linearizable" not in self.t:
                    try:
                        if a.system == "warden":
                            get(inv.GetDeviceRequest(device_id=a.key), timeout=PROBE_RPC_TIMEOUT_S)
                        else:
                            rng(etcd_range(a.key), timeout=PROBE_RPC_TIMEOUT_S)
                        self.mark("read_linearizable")
                        self.mark("leader_known")
                        with sh["lock"]:
                            if "read_linearizable" not in sh["t"]:
                                sh["t"]["read_linearizable"] = self.t["read_linearizable"]
                                sh["read_by"] = self.idx
                    except grpc.RpcError as ex:
                        if ex.code() == SC.UNAVAILABLE and cl.trailer(ex, "warden-leader"):
                            self.mark("leader_known")
                        else:
                            raise
                if "write" not in sh["t"] and (a.system == "etcd" or
                                               "read_linearizable" in self.t):
                    with sh["lock"]:
                        sh["writes"] += 1
                        k = sh["writes"]
                    if k > PROBE_WRITES_MAX:
                        raise RuntimeError("write attempts exhausted")
                    wid = "%sw%d-%d" % (a.write_prefix, self.idx, k)
                    if a.system == "warden":
                        put(cl.enroll_req(wid), timeout=PROBE_RPC_TIMEOUT_S)
                    else:
                        putr(etcd_put(wid, b"v" * 256), timeout=PROBE_RPC_TIMEOUT_S)
                    self.mark("write")
                    with sh["lock"]:
                        if "write" not in sh["t"]:
                            sh["t"]["write"] = self.t["write"]
                            sh["write_by"] = self.idx
            except grpc.RpcError as ex:
                self.last_error = "%s %s" % (ex.code().name, (ex.details() or "")[:120])
                if ex.code() in (SC.UNAVAILABLE, SC.DEADLINE_EXCEEDED) and \
                        not cl.trailer(ex, "warden-leader") and \
                        "not the leader" not in (ex.details() or ""):
                    self.reconnects += 1
                    ch.close()
                    ch = None
            except RuntimeError as ex:
                self.last_error = str(ex)
                break
            time.sleep(PROBE_POLL_S)
        if ch is not None:
            ch.close()


def cmd_probe(a):
    cred = creds(a)
    if a.system == "warden":
        cl.ed_key()  # openssl once, before the clock matters
    eps = a.endpoints.split(",")
    sh = {"t": {}, "lock": threading.Lock(), "stop": False, "writes": 0}
    t_start = now_ns()
    probes = [NodeProbe(a, i + 1, ep, cred, sh) for i, ep in enumerate(eps)]
    for p in probes:
        p.start()
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("%d\n" % t_start)
    deadline = time.monotonic() + min(a.deadline, PROBE_DEADLINE_MAX_S)
    while time.monotonic() < deadline and not all(p.done() for p in probes):
        time.sleep(0.05)
    sh["stop"] = True
    for p in probes:
        p.join(timeout=5)
    print(json.dumps({
        "system": a.system, "probe_start_ns": t_start,
        "timed_out": not all(p.done() for p in probes),
        "nodes": {str(p.idx): {"addr": p.addr, "t_ns": p.t, "attempts": p.attempts,
                               "reconnects": p.reconnects, "last_error": p.last_error} for p in probes},
        "cluster": {"t_ns": sh["t"], "read_by": sh.get("read_by"),
                    "write_by": sh.get("write_by"), "write_attempts": sh["writes"]},
    }))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=("enroll", "status", "probe"))
    ap.add_argument("--system", choices=("warden", "etcd"), default="warden")
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--certs", required=True)
    ap.add_argument("--role", default="admin")
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--prefix", default="rs")
    ap.add_argument("--max-seconds", type=float, default=ENROLL_SECONDS_MAX)
    ap.add_argument("--wait-applied", type=float, default=0)
    ap.add_argument("--device", action="append", default=[])
    ap.add_argument("--key", help="probe: a key/device known to exist")
    ap.add_argument("--write-prefix", default="rsp")
    ap.add_argument("--deadline", type=float, default=120)
    ap.add_argument("--ready", help="probe: file written once polling has started")
    a = ap.parse_args()
    return {"enroll": cmd_enroll, "status": cmd_status, "probe": cmd_probe}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())

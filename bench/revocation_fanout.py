#!/usr/bin/python3
"""revocation_fanout: how fast a RevokeGrant reaches 1,000 gateways'
WatchRevocations streams, and CheckAccess throughput (issue 5).

A benchmark, not a test: it asserts nothing and is not run by ctest. It
prints one JSON object on stdout (progress on stderr).

Set-up: one `wardend --dev` (a one-voter cluster: fsync on, no replication)
on 127.0.0.1; a device bound to dev-gateway; --watchers streams (default
1000) as dev-gateway, spread over --procs client processes with --conns
connections each. One connection carries at most GRPC_MAX_STREAMS_DEFAULT =
128 streams, so 1,000 watchers need at least 8 connections; the default
4 x 4 = 16 connections carry ~63 each. The node allows --max-watchers
(default 2048) watchers and NODE_MAX_CONNS_DEFAULT = 1024 connections.

Fan-out: once every watcher has its first progress message, the driver
revokes one grant per second for --duration seconds (a fresh grant per
revocation, made before the timed step). Latency of one revocation = the
moment the last watcher received its event minus the moment the driver got
the RevokeGrant acknowledgement, both on CLOCK_MONOTONIC (shared by all
processes on the host). Reported: p50, p99, max over revocations, plus
how many watchers received each (must be all).

CheckAccess: --check-clients concurrent gateway calls for --check-seconds
against one grant (max uses 1000: later checks DENY USES_EXHAUSTED, which
is the same Raft write and audit entry); every check carries its own
idempotency key. Reported: checks/s and ALLOW/DENY counts.

The client is Python: a watcher's receive time includes its process's
scheduling, so on a small machine (the JSON records cpu_count) the
figures are an upper bound on the server's fan-out.

Usage (from a build dir):
  WARDEN_BUILD=$PWD WARDEN_SRC=/path/to/src /usr/bin/python3 \\
      /path/to/src/bench/revocation_fanout.py --duration 30
"""

import argparse
import asyncio
import faulthandler
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import wardentest as wt  # noqa: E402
import grpc  # noqa: E402
import test_access as ta  # noqa: E402  (protos and method table)

acc, inv = ta.acc, ta.inv
P = ta.P
# Bounds.
READY_TIMEOUT_S = 120.0     # every watcher open and heard from
DELIVERY_GRACE_S = 5.0      # after the last revocation
RPC_TIMEOUT_S = 30.0


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


# ---- watcher processes ------------------------------------------------------------
def watcher_proc(cfg_q, n, conns, ready_q, stop_ev, out_q):
    """n watchers over `conns` connections; report {grant_id: [count, last
    receive time]} when stop_ev is set. Started before the driver touches
    grpc (no fork while grpc threads run); the server's address and the
    gateway's credentials arrive on cfg_q."""
    faulthandler.register(signal.SIGUSR1)
    addr, ca, cert, key = cfg_q.get(timeout=READY_TIMEOUT_S)

    async def main():
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                             certificate_chain=cert)
        opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
        chans = [grpc.aio.secure_channel(addr, creds, opts) for _ in range(conns)]
        seen = {}
        ready = [0]
        errors = []

        async def one(i):
            ch = chans[i % conns]
            call = ch.unary_stream(P + "WatchRevocations",
                                   request_serializer=acc.WatchRevocationsRequest.SerializeToString,
                                   response_deserializer=acc.WatchRevocationsResponse.FromString)(
                acc.WatchRevocationsRequest(from_revision=0))
            first = True
            try:
                async for m in call:
                    t = time.monotonic()
                    if first:
                        first = False
                        ready[0] += 1
                        if ready[0] == n:
                            ready_q.put(n)
                    for e in m.events:
                        s = seen.setdefault(e.grant_id or e.lock_id, [0, 0.0])
                        s[0] += 1
                        s[1] = max(s[1], t)
            except asyncio.CancelledError:
                raise
            except grpc.RpcError as ex:
                errors.append("%s %s" % (ex.code(), ex.details()))

        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        while not stop_ev.is_set():
            await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in chans:
            await ch.close()
        out_q.put({"seen": seen, "errors": errors[:5], "n_errors": len(errors)})
        # grpc.aio's poller thread can hold asyncio.run's teardown for
        # minutes: flush the result and leave without it.
        out_q.close()
        out_q.join_thread()
        os._exit(0)

    asyncio.run(main())


# ---- driver ---------------------------------------------------------------------------
class Bench:
    def __init__(self, srv):
        self.srv = srv
        self.chans = {r: srv.channel(r) for r in ("admin", "operator", "gateway")}

    def call(self, role, method, req):
        path = method if method.startswith("/") else P + method
        return wt.stub(self.chans[role], path)(req, timeout=RPC_TIMEOUT_S)

    def setup(self):
        self.call("admin", "SetAccessPolicy", acc.SetAccessPolicyRequest(
            rules=[ta.rule(acc.ACCESS_PURPOSE_DIAGNOSTICS, 1)], lock_view_max_lag=1000000))
        self.did = wt.uid("fan")
        self.call("admin", "/warden.v1.Inventory/EnrollDevice", inv.EnrollDeviceRequest(
            device_id=self.did, key_algorithm=inv.KEY_ALGORITHM_ED25519,
            public_key=wt.digest32("k"), attestation_digest=wt.digest32(self.did),
            hardware_model="m", firmware_version="1", gateway_id="dev-gateway"))
        self.call("operator", "/warden.v1.Inventory/SetDeviceState", inv.SetDeviceStateRequest(
            device_id=self.did, state=inv.DEVICE_STATE_ACTIVE, reason="bench"))

    def grant(self, uses=10):
        r = self.call("operator", "RequestAccess", acc.RequestAccessRequest(
            device_ids=[self.did], purpose=acc.ACCESS_PURPOSE_DIAGNOSTICS, reason="bench",
            scope=acc.AccessScope(protocols=["ssh"]), duration_ms=3600000,
            max_sessions=uses)).request
        return self.call("admin", "ApproveAccess",
                         acc.ReviewAccessRequest(request_id=r.request_id)).grant.grant_id

    def checks(self, clients, seconds):
        self.grant(uses=1000)
        stub = wt.stub(self.chans["gateway"], P + "CheckAccess")
        counts = {"allow": 0, "deny": 0, "error": 0}
        lat = []
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def worker(w):
            i = 0
            while time.monotonic() < stop:
                i += 1
                t0 = time.monotonic()
                try:
                    r = stub(acc.CheckAccessRequest(
                        principal="dev-operator", device_id=self.did, protocol="ssh",
                        port=22, idempotency_key="b%d-%d" % (w, i)), timeout=RPC_TIMEOUT_S)
                    k = "allow" if r.decision == acc.ACCESS_DECISION_ALLOW else "deny"
                except grpc.RpcError:
                    k = "error"
                with lock:
                    counts[k] += 1
                    lat.append((time.monotonic() - t0) * 1000)

        t0 = time.monotonic()
        ts = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        el = time.monotonic() - t0
        n = counts["allow"] + counts["deny"]
        return {"clients": clients, "seconds": round(el, 2), "checks": n,
                "checks_per_s": round(n / el, 1), **counts,
                "latency_ms_p50": round(pct(lat, 0.5), 2), "latency_ms_p99": round(pct(lat, 0.99), 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--conns", type=int, default=4, help="connections per process")
    ap.add_argument("--duration", type=int, default=30, help="revocations (1 per second)")
    ap.add_argument("--check-clients", type=int, default=32)
    ap.add_argument("--check-seconds", type=float, default=10.0)
    a = ap.parse_args()
    if a.duration > 60:
        ap.error("--duration: at most 60 (a principal holds at most 64 recent grants)")
    per_conn = -(-a.watchers // (a.procs * a.conns))
    if per_conn > 128:
        ap.error("%d streams per connection > GRPC_MAX_STREAMS_DEFAULT (128): "
                 "raise --procs/--conns" % per_conn)

    faulthandler.register(signal.SIGUSR1)
    ctx = mp.get_context("spawn")
    ready_q, out_q, stop_ev, cfg_q = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Queue()
    sizes = [a.watchers // a.procs + (1 if i < a.watchers % a.procs else 0)
             for i in range(a.procs)]
    procs = [ctx.Process(target=watcher_proc,
                         args=(cfg_q, n, a.conns, ready_q, stop_ev, out_q))
             for n in sizes if n > 0]
    for p in procs:
        p.start()
    srv = wt.Server(name="fanout").start()
    try:
        b = Bench(srv)
        b.setup()
        ca = srv.read_ca()
        cert, key = srv.read_cert("gateway")
        for _ in procs:
            cfg_q.put((srv.addr, ca, cert, key))
        t0 = time.monotonic()
        for _ in procs:
            ready_q.get(timeout=READY_TIMEOUT_S)
        print("fanout: %d watchers ready in %.1f s" % (a.watchers, time.monotonic() - t0),
              file=sys.stderr)
        rss_ready = ta.vmrss_kib(srv.proc.pid)
        acks = {}
        for i in range(a.duration):
            tick = time.monotonic()
            gid = b.grant()
            b.call("operator", "RevokeGrant", acc.RevokeGrantRequest(grant_id=gid, reason="bench"))
            acks[gid] = time.monotonic()
            print("fanout: revocation %d/%d acked" % (i + 1, a.duration), file=sys.stderr)
            time.sleep(max(0.0, tick + 1.0 - time.monotonic()))
        time.sleep(DELIVERY_GRACE_S)
        rss_end = ta.vmrss_kib(srv.proc.pid)
        stop_ev.set()
        seen, errors, n_err = {}, [], 0
        for _ in procs:
            r = out_q.get(timeout=60)
            n_err += r["n_errors"]
            errors += r["errors"]
            for k, (cnt, t) in r["seen"].items():
                s = seen.setdefault(k, [0, 0.0])
                s[0] += cnt
                s[1] = max(s[1], t)
        for p in procs:
            p.join(timeout=30)
        lat = [(seen[g][1] - t) * 1000 for g, t in acks.items() if g in seen]
        delivered = [seen.get(g, [0])[0] for g in acks]
        res = {
            "bench": "revocation_fanout",
            "cpu_count": os.cpu_count(),
            "watchers": a.watchers, "client_procs": a.procs,
            "connections": a.procs * a.conns, "streams_per_connection_max": per_conn,
            "revocations": len(acks),
            "all_watchers_got_every_revocation": all(d == a.watchers for d in delivered),
            "min_watchers_reached": min(delivered) if delivered else 0,
            "watch_errors": n_err, "watch_error_samples": errors,
            "fanout_latency_ms": {
                "p50": round(pct(lat, 0.5), 2) if lat else None,
                "p99": round(pct(lat, 0.99), 2) if lat else None,
                "max": round(max(lat), 2) if lat else None,
                "mean": round(statistics.mean(lat), 2) if lat else None},
            "wardend_vmrss_kib": {"watchers_ready": rss_ready, "end": rss_end},
        }
        print("fanout: %s" % res["fanout_latency_ms"], file=sys.stderr)
        res["check_access"] = b.checks(a.check_clients, a.check_seconds)
        print(json.dumps(res, indent=2))
    finally:
        stop_ev.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
        srv.stop()
        srv.cleanup()


if __name__ == "__main__":
    main()

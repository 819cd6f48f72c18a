#!/usr/bin/python3
"""cluster_write: sustained EnrollDevice writes/s and p50/p99 latency of a
Raft cluster of real `wardend` processes on loopback, fsync on (issue 3).

A benchmark, not a test: it asserts nothing and is not run by ctest. It
prints one JSON object on stdout (progress on stderr).

Scenarios, all in the same run on the same machine, so the ratios compare
like with like:
  cluster_N    --nodes voters (default 3), --clients concurrent writers
  cluster_1    the same cluster, one writer at a time: one write per
               commit round, so cluster_N / cluster_1 is the group-commit
               gain (many writes per log append and fsync)
  single_N     a one-voter cluster (same binary, same raft_uv + LMDB fsync
               path, no replication), --clients writers: cluster_N /
               single_N is the price of replication
  single_1     the one-voter cluster, one writer (skip with --quick)

Writers send straight to the leader (no redirects in the measured path),
each write a new device id. Latency is per call, client side, ms. Each
scenario is bounded by --duration seconds and --max-writes writes, after
--warmup seconds that are not measured. Status counters (proposals,
flushes) from the leader give entries per group-commit batch.

Clients run in --procs processes (python's GIL would otherwise cap the
load generator below the server); on a small machine the client processes
compete with the nodes for CPU, which the JSON records (cpu_count).

Usage (from a build dir):
  WARDEN_BUILD=$PWD WARDEN_SRC=/path/to/src /usr/bin/python3 \
      /path/to/src/bench/cluster_write.py --duration 10 --clients 32
"""

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

# Bounds (the bench must end on its own).
DURATION_MAX_S = 600.0
WRITES_MAX = 10_000_000
RPC_TIMEOUT_S = 10.0
# A worker that has not reported this long after the scenario's end is
# terminated (by the Process object: only processes this script started).
WORKER_GRACE_S = 30.0


def _percentile(sorted_ms, p):
    if not sorted_ms:
        return None
    k = min(len(sorted_ms) - 1, max(0, int(round(p / 100.0 * (len(sorted_ms) - 1)))))
    return round(sorted_ms[k], 3)


def worker(args):
    """One client process: `threads` writer threads on one channel each to
    addr, writing until t_end or `quota` writes. Returns (latencies of
    writes that started after t_measure, ok count, error counts)."""
    (addr, certs, threads, t_measure, t_end, quota, tag) = args
    import threading
    import cluster as ct
    from wardentest import grpc

    with open(os.path.join(certs, "ca.pem"), "rb") as f:
        ca = f.read()
    with open(os.path.join(certs, "admin.pem"), "rb") as f:
        cert = f.read()
    with open(os.path.join(certs, "admin-key.pem"), "rb") as f:
        key = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=cert)
    lock = threading.Lock()
    lat, errs = [], {}
    count = [0]
    key_once = ct.ed_key()

    def run(t):
        ch = grpc.secure_channel(addr, creds, [("grpc.use_local_subchannel_pool", 1)])
        call = ch.unary_unary(ct.ENROLL,
                              request_serializer=ct.inv_pb2.EnrollDeviceRequest.SerializeToString,
                              response_deserializer=ct.inv_pb2.EnrollDeviceResponse.FromString)
        k = 0
        mine = []
        while True:
            now = time.time()
            if now >= t_end:
                break
            with lock:
                if count[0] >= quota:
                    break
                count[0] += 1
            k += 1
            req = ct.inv_pb2.EnrollDeviceRequest(
                device_id="b-%s-%d-%d" % (tag, t, k),
                key_algorithm=ct.inv_pb2.KEY_ALGORITHM_ED25519, public_key=key_once,
                attestation_digest=bytes(32), hardware_model="bench",
                firmware_version="1.0.0", gateway_id="gw-bench")
            t0 = time.perf_counter()
            try:
                call(req, timeout=RPC_TIMEOUT_S)
                dt = (time.perf_counter() - t0) * 1000.0
                if now >= t_measure:
                    mine.append(dt)
            except grpc.RpcError as ex:
                with lock:
                    errs[ex.code().name] = errs.get(ex.code().name, 0) + 1
        ch.close()
        with lock:
            lat.extend(mine)

    ths = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=max(1.0, t_end - time.time()) + RPC_TIMEOUT_S * 2)
    return lat, errs


def run_scenario(name, nodes, clients, procs, duration, warmup, max_writes, extra):
    import cluster as ct
    c = ct.Cluster(n=nodes, extra_args=extra, name="bench-" + name)
    try:
        c.start()
        leader = c.wait_leader()
        procs = max(1, min(procs, clients))
        per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
        t_measure = time.time() + 1.0 + warmup   # 1 s for workers to start
        t_end = t_measure + duration
        ctx = mp.get_context("spawn")
        jobs = [(leader.client, c.certs, per[i], t_measure, t_end,
                 max(1, max_writes // procs), "%s-%d" % (name, i)) for i in range(procs)]
        print("bench %s: %d node(s), %d clients in %d procs, %.0fs (+%.0fs warmup)"
              % (name, nodes, clients, procs, duration, warmup), file=sys.stderr)
        with ctx.Pool(procs) as pool:
            res = pool.map_async(worker, jobs)
            # Leader counters over the measured window only.
            time.sleep(max(0.0, t_measure - time.time()))
            st0 = leader.status()
            time.sleep(max(0.0, t_end - time.time()))
            st1 = leader.status()
            out = res.get(timeout=WORKER_GRACE_S + RPC_TIMEOUT_S)
        t_stop = t_end
        lat = sorted(x for r in out for x in r[0])
        errs = {}
        for _, e in out:
            for k, v in e.items():
                errs[k] = errs.get(k, 0) + v
        elapsed = max(1e-6, t_stop - t_measure)
        props = st1.proposals - st0.proposals
        flushes = st1.flushes - st0.flushes
        return {
            "nodes": nodes, "clients": clients, "procs": procs,
            "measured_s": round(elapsed, 3),
            "writes_ok": len(lat),
            "errors": errs,
            "writes_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": _percentile(lat, 50), "p99_ms": _percentile(lat, 99),
            "mean_ms": round(statistics.fmean(lat), 3) if lat else None,
            "max_ms": round(lat[-1], 3) if lat else None,
            "leader_proposals": props, "leader_flushes": flushes,
            "proposals_per_flush": round(props / flushes, 2) if flushes else None,
            "leader_applied_index": st1.applied_index,
        }
    finally:
        c.close()
        c.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--procs", type=int, default=2,
                    help="client processes the writers are spread over")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--max-writes", type=int, default=1_000_000,
                    help="bound on writes per scenario")
    ap.add_argument("--quick", action="store_true", help="skip single_1")
    ap.add_argument("--sweep", default="",
                    help="extra cluster concurrencies, e.g. 4,8 (scenarios cluster_4, cluster_8)")
    ap.add_argument("--wardend-arg", action="append", default=[],
                    help="extra wardend flag for every node (repeatable)")
    a = ap.parse_args()
    a.duration = min(max(1.0, a.duration), DURATION_MAX_S)
    a.max_writes = min(max(1, a.max_writes), WRITES_MAX)

    import wardentest as wt  # after argparse: --help works without a build

    res = {}
    plan = [("cluster_N", a.nodes, a.clients), ("cluster_1", a.nodes, 1),
            ("single_N", 1, a.clients)]
    if not a.quick:
        plan.append(("single_1", 1, 1))
    for k in [int(x) for x in a.sweep.split(",") if x.strip()]:
        if k not in (1, a.clients):
            plan.append(("cluster_%d" % k, a.nodes, k))
    for name, nodes, clients in plan:
        res[name] = run_scenario(name, nodes, clients, a.procs, a.duration, a.warmup,
                                 a.max_writes, a.wardend_arg)
        print("  %s: %s" % (name, json.dumps(res[name])), file=sys.stderr)

    def ratio(x, y, field="writes_per_s"):
        if x in res and y in res and res[y][field]:
            return round(res[x][field] / res[y][field], 3)
        return None

    summary = {
        "bench": "cluster_write",
        "what": "EnrollDevice, one new device per write, to the leader over mTLS",
        "fsync": "on (wardend defaults: raft_uv fsyncs appends, LMDB syncs commits; "
                 "no sync-disabling flag passed)",
        "wardend": wt.WARDEND,
        "wardend_args": a.wardend_arg,
        "cpu_count": os.cpu_count(),
        "seed": wt.SEED,
        "scenarios": res,
        "ratios": {
            "group_commit_gain_cluster_N_over_cluster_1": ratio("cluster_N", "cluster_1"),
            "replication_cost_cluster_N_over_single_N": ratio("cluster_N", "single_N"),
            "group_commit_gain_single_N_over_single_1": ratio("single_N", "single_1"),
            "p99_cluster_N_over_single_N": ratio("cluster_N", "single_N", "p99_ms"),
        },
        "sweep_writes_per_s": {k: v["writes_per_s"] for k, v in res.items()
                               if k.startswith("cluster_")},
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

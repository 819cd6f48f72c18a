#!/usr/bin/python3
"""provision_burst: enroll a fleet (default 100,000 devices) through a real
3-node Raft cluster of `wardend` processes on loopback with EnrollDevices
(batches of 256, the per-command cap WFSM_ENROLL_BATCH_MAX), fsync on.

A benchmark, not a test: it asserts nothing and is not run by ctest or CI.
It prints one JSON object on stdout (progress on stderr):

  devices_per_s      enrolled devices / wall time of the burst
  batch_p50_ms, batch_p99_ms, batch_max_ms
                     client-side latency of one EnrollDevices call (python
                     gRPC included), over every batch of the burst
  proposals_per_flush  the leader's group-commit batch over the burst
                     (Status.proposals / Status.flushes deltas)
  log_entries        Raft entries applied on the leader during the burst
                     (one per batch, plus idle Ticks)

Every batch goes straight to the leader (found before the clock starts), so
redirects are not measured; a batch refused with UNAVAILABLE (an election)
is retried with its idempotency key, bounded, and counted in `retries`.
A batch refused by wardend's admission control (RESOURCE_EXHAUSTED "rate
limit exceeded ..." or "server overloaded ... (max_inflight)": definite,
nothing applied) is resent after a backoff, bounded, and counted in
`retries` and `admission_retries`.

A benchmark measures raw throughput: unless a --wardend-arg sets
--rate-limit-rps itself, the nodes get `--rate-limit-rps 0` (per-principal
rate limit off; every batch is one principal, operator), and the output
says so (`rate_limit`, `wardend_args`).
`--concurrency` batches are in flight at once (python threads: each call is
~30 KiB of protobuf, the GIL is not the bottleneck at these rates).

Uses the integration harness (tests/integration/cluster.py): nodes on their
own 127.0.0.x addresses with free ports, a fresh temp dir, processes
signalled by PID only, stopped at the end.

Usage (from a build dir; a Release build gives the honest figures):
  WARDEN_BUILD=$PWD WARDEN_SRC=$PWD/.. /usr/bin/python3 ../bench/provision_burst.py \
      --devices 100000 --concurrency 8 > provision_burst.json
"""

import argparse
import concurrent.futures as cf
import json
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import cluster as cl  # noqa: E402
import wardentest as wt  # noqa: E402
from wardentest import grpc, inv_pb2 as inv  # noqa: E402

# Bounds: the bench ends on its own.
DEVICES_MAX = 1_000_000
BATCH = 256                 # WFSM_ENROLL_BATCH_MAX
CONCURRENCY_MAX = 64
RPC_TIMEOUT_S = 30.0
BATCH_ATTEMPTS = 10         # per batch (elections)
RETRY_PAUSE_S = 0.2
ADMISSION_RETRIES = 60      # per batch (admission control's RESOURCE_EXHAUSTED)
ADMISSION_BACKOFF_MIN_S = 0.01
ADMISSION_BACKOFF_MAX_S = 0.5
PATH = "/warden.v1.Inventory/EnrollDevices"


def admission_refusal(ex):
    """"rate_limit"/"inflight" for admission control's RESOURCE_EXHAUSTED
    (server/admission.c messages), else None."""
    if ex.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    d = ex.details() or ""
    if d.startswith("rate limit exceeded for "):
        return "rate_limit"
    if d.startswith("server overloaded: ") and "(max_inflight)" in d:
        return "inflight"
    return None


def admission_backoff(ex, n):
    m = re.search(r"retry in (\d+) ms", ex.details() or "")
    hint = int(m.group(1)) / 1000.0 if m else 0.0
    base = min(ADMISSION_BACKOFF_MAX_S, ADMISSION_BACKOFF_MIN_S * (2 ** min(n, 10)))
    time.sleep(max(hint, base * (0.5 + random.random() / 2)))


def percentile(sorted_ms, p):
    if not sorted_ms:
        return None
    k = min(len(sorted_ms) - 1, max(0, int(round(p / 100.0 * (len(sorted_ms) - 1)))))
    return round(sorted_ms[k], 3)


def build_batches(n, prefix):
    key = cl.ed_key()
    out = []
    for b in range(0, n, BATCH):
        devs = [inv.EnrollDeviceRequest(
            device_id="%s-%07d" % (prefix, i), key_algorithm=inv.KEY_ALGORITHM_ED25519,
            public_key=key, attestation_digest=wt.digest32("%s-%07d" % (prefix, i)),
            hardware_model="plc-9000", firmware_version="1.0.0",
            labels=[inv.Label(key="site", value="plant-%d" % (i % 16))],
            gateway_id="gw-%d" % (i % 64)) for i in range(b, min(n, b + BATCH))]
        out.append(inv.EnrollDevicesRequest(devices=devs,
                                            idempotency_key="burst-%s-%d" % (prefix, b)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--wardend-arg", action="append", default=[])
    a = ap.parse_args()
    n = max(1, min(a.devices, DEVICES_MAX))
    conc = max(1, min(a.concurrency, CONCURRENCY_MAX))

    wardend_args = list(a.wardend_arg)
    if not any(x.startswith("--rate-limit-rps") for x in wardend_args):
        wardend_args += ["--rate-limit-rps", "0"]
    rl = wardend_args[[i for i, x in enumerate(wardend_args)
                       if x.startswith("--rate-limit-rps")][-1]:]
    rl_val = rl[0].split("=", 1)[1] if "=" in rl[0] else (rl[1] if len(rl) > 1 else "")
    rate_limit = ("off (--rate-limit-rps 0): a benchmark measures raw throughput"
                  if rl_val == "0" else "on (--rate-limit-rps %s)" % rl_val)
    print("burst: per-principal rate limit %s" % rate_limit, file=sys.stderr)
    c = cl.Cluster(a.nodes, name="burst", extra_args=wardend_args)
    try:
        c.start()
        leader = c.wait_leader()
        print("burst: leader n%d; building %d devices" % (leader.id, n), file=sys.stderr)
        batches = build_batches(n, "b%d" % (wt.SEED % 100000))
        stub = c.channel(leader, "operator").unary_unary(
            PATH, request_serializer=inv.EnrollDevicesRequest.SerializeToString,
            response_deserializer=inv.EnrollDevicesResponse.FromString)
        s0 = leader.status()
        lat, errors, retries = [], [], [0]
        adm = {"rate_limit": 0, "inflight": 0}

        def one(req):
            refused = 0
            attempt = 0
            while attempt < BATCH_ATTEMPTS:
                t = time.monotonic()
                try:
                    r = stub(req, timeout=RPC_TIMEOUT_S)
                    lat.append((time.monotonic() - t) * 1000.0)
                    return len(r.devices)
                except grpc.RpcError as ex:
                    why = admission_refusal(ex)
                    if why is not None and refused < ADMISSION_RETRIES:
                        retries[0] += 1
                        adm[why] += 1
                        admission_backoff(ex, refused)
                        refused += 1
                        continue
                    attempt += 1
                    if ex.code() != grpc.StatusCode.UNAVAILABLE:
                        errors.append("%s %s" % (ex.code().name, ex.details()))
                        return 0
                    retries[0] += 1
                    time.sleep(RETRY_PAUSE_S)
            errors.append("UNAVAILABLE after %d attempts" % BATCH_ATTEMPTS)
            return 0

        t0 = time.monotonic()
        done = 0
        with cf.ThreadPoolExecutor(max_workers=conc) as ex:
            for k, got in enumerate(ex.map(one, batches)):
                done += got
                if (k + 1) % 50 == 0:
                    print("burst: %d devices, %.1fs" % (done, time.monotonic() - t0),
                          file=sys.stderr)
        elapsed = time.monotonic() - t0
        s1 = leader.status()
        lat.sort()
        flushes = s1.flushes - s0.flushes
        out = {
            "bench": "provision_burst",
            "nodes": a.nodes,
            "devices": n,
            "enrolled": done,
            "batch_size": BATCH,
            "batches": len(batches),
            "concurrency": conc,
            "elapsed_s": round(elapsed, 3),
            "devices_per_s": round(done / elapsed, 1) if elapsed > 0 else None,
            "batches_per_s": round(len(lat) / elapsed, 2) if elapsed > 0 else None,
            "batch_p50_ms": percentile(lat, 50),
            "batch_p99_ms": percentile(lat, 99),
            "batch_max_ms": round(lat[-1], 3) if lat else None,
            "batch_mean_ms": round(sum(lat) / len(lat), 3) if lat else None,
            "errors": len(errors),
            "error_sample": errors[:5],
            "retries": retries[0],
            "admission_retries": adm,
            "rate_limit": rate_limit,
            "proposals_per_flush": (round((s1.proposals - s0.proposals) / flushes, 2)
                                    if flushes > 0 else None),
            "log_entries": s1.applied_index - s0.applied_index,
            "cpu_count": os.cpu_count(),
            "wardend_args": wardend_args,
        }
        print(json.dumps(out, indent=2))
    finally:
        c.cleanup()


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# compare-etcd.sh - warden vs etcd, side by side on one machine (issue 8,
# scenarios 1-3). Starts a 3-member etcd cluster and a 3-node warden cluster
# on loopback, both with mutual TLS and default fsync, drives each with the
# same warden-loadgen settings (TLS 1.3 AES-128-GCM, connections x streams,
# key 16 B, value 256 B), stops every PID it started, and prints one table
# and `ratio <scenario> <concurrency> throughput=<w/e> p99=<w/e>` lines.
#
#   bench/compare-etcd.sh [--build DIR] [--out DIR] [--duration S] [--warmup S]
#                         [--scenarios writes,reads,mixed] [--conc 1x1,16x8,64x16]
#                         [--keyspace N]
#
# Needs etcd and etcdctl on PATH; installs nothing:
#   apt-get install etcd-server etcd-client     (Debian 12: etcd 3.4)
#
# Scenario 1 "writes": etcd /etcdserverpb.KV/Put{key 16 B, value 256 B} vs
#   warden /warden.v1.Inventory/EnrollDevice (its cheapest replicated
#   mutation of that size: a new device id of 16 B, a unique Ed25519 key,
#   an attestation digest and a label padding the payload to 256 B).
# Scenario 2 "reads": etcd Range (linearizable, the default) vs warden
#   GetDevice (LINEARIZABLE, the default: a Raft barrier on the leader),
#   uniformly over --keyspace preloaded keys.
# Scenario 3 "mixed": 90% of the reads above, 10% of the writes.
# Each pair runs back to back (warden, then etcd) so machine drift hits both.
# warden runs with WARDEN_EXTRA_ARGS="--rate-limit-rps 0" (scenarios/lib.sh;
# the default when unset): a benchmark measures raw throughput, so wardend's
# per-principal rate limit is off, and the output says so. Set
# WARDEN_EXTRA_ARGS="" to measure with the default limit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DURATION=10
WARMUP=2
SCENARIOS=writes,reads,mixed
CONC=1x1,16x8,64x16
KEYSPACE=1000
OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --build) WARDEN_BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --conc) CONC=$2; shift 2 ;;
    --keyspace) KEYSPACE=$2; shift 2 ;;
    *) sed -n '9,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
# shellcheck source=scenarios/lib.sh
source "$HERE/scenarios/lib.sh"
[ -x "$LOADGEN" ] || die "no warden-loadgen at $LOADGEN (cmake --build $BUILD)"
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/warden-vs-etcd.XXXXXX")}
mkdir -p "$OUT"
trap stop_all EXIT
trap 'exit 130' INT TERM

log "output in $OUT"
etcd_up "$OUT/etcd"
warden_up "$OUT/warden"
EL=$(etcd_wait_leader)
WL=$(warden_wait_leader "$OUT/warden")
log "etcd leader m$EL (${ETCD_EP[$EL]}), warden leader n$WL (${WARDEN_EP[$WL]})"

# Preload the read keyspace: keys k<zero-padded n>, n < KEYSPACE, 16 bytes.
# Twice for warden: a call refused during start (no leader yet) leaves a
# gap; the second pass fills it (existing ids answer ALREADY_EXISTS).
PRE=(--key-prefix k --max-requests "$KEYSPACE" --duration 120 --warmup 0
     --connections 4 --streams 16)
for pass in 1 2; do
    warden_lg "$WL" --method /warden.v1.Inventory/EnrollDevice \
        --body-template warden-enroll "${PRE[@]}" --out "$OUT/preload-warden-$pass.json" 2>/dev/null || true
done
etcd_lg "$EL" --method /etcdserverpb.KV/Put --body-template etcd-put "${PRE[@]}" \
    --out "$OUT/preload-etcd.json" 2>/dev/null || true

run() { # system scenario conc
    local sys=$1 sc=$2 conc=$3 c=${3%x*} s=${3#*x}
    local common=(--connections "$c" --streams "$s" --duration "$DURATION" --warmup "$WARMUP"
        --keyspace "$KEYSPACE" --read-prefix k --key-size 16 --value-size 256
        --label "$sys $sc $conc" --out "$OUT/$sys-$sc-$conc.json" --svg "$OUT/$sys-$sc-$conc.svg")
    local w r calls=()
    if [ "$sys" = warden ]; then
        w=/warden.v1.Inventory/EnrollDevice=warden-enroll
        r=/warden.v1.Inventory/GetDevice=warden-get
    else
        w=/etcdserverpb.KV/Put=etcd-put
        r=/etcdserverpb.KV/Range=etcd-range
    fi
    case $sc in
    writes) calls=(--call "$w") ;;
    reads) calls=(--call "$r") ;;
    mixed) calls=(--call "$r:9" --call "$w:1") ;;
    *) die "unknown scenario $sc" ;;
    esac
    log "$sys $sc $conc"
    if [ "$sys" = warden ]; then
        warden_lg "$(warden_wait_leader "$OUT/warden")" "${calls[@]}" "${common[@]}" || true
    else
        etcd_lg "$(etcd_wait_leader)" "${calls[@]}" "${common[@]}" || true
    fi
}

IFS=, read -r -a SCS <<<"$SCENARIOS"
IFS=, read -r -a CCS <<<"$CONC"
for sc in "${SCS[@]}"; do
    for conc in "${CCS[@]}"; do
        [[ $conc == *x* ]] || conc=${conc}x1
        run warden "$sc" "$conc"
        run etcd "$sc" "$conc"
    done
done
stop_all

/usr/bin/python3 - "$OUT" "$SCENARIOS" "$CONC" <<'PY'
import json, os, sys
out, scs, ccs = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
def load(sys_, sc, conc):
    try:
        return json.load(open(os.path.join(out, f"{sys_}-{sc}-{conc}.json")))
    except Exception:
        return None
rows, ratios, summary = [], [], []
print(f"{'scenario':8} {'conc':>6} {'system':7} {'ok/s':>9} {'p50 ms':>8} {'p90 ms':>8} "
      f"{'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'errors':>7}")
for sc in scs:
    for conc in ccs:
        conc = conc if "x" in conc else conc + "x1"
        res = {}
        for s in ("warden", "etcd"):
            r = load(s, sc, conc)
            res[s] = r
            if r is None:
                print(f"{sc:8} {conc:>6} {s:7} {'(no result)':>9}")
                continue
            l = r["latency_ms"]
            print(f"{sc:8} {conc:>6} {s:7} {r['throughput_rps']:9.1f} {l['p50']:8.2f} "
                  f"{l['p90']:8.2f} {l['p99']:8.2f} {l['p999']:9.2f} {l['max']:8.2f} "
                  f"{r['error_count']:7d}")
        w, e = res["warden"], res["etcd"]
        if w and e and e["throughput_rps"] > 0 and e["latency_ms"]["p99"] > 0:
            t = w["throughput_rps"] / e["throughput_rps"]
            p = w["latency_ms"]["p99"] / e["latency_ms"]["p99"]
            ratios.append(f"ratio {sc} {conc} throughput={t:.2f} p99={p:.2f}")
            summary.append({"scenario": sc, "conc": conc, "throughput_ratio": round(t, 3),
                            "p99_ratio": round(p, 3), "warden": {k: w[k] for k in ("throughput_rps", "latency_ms", "errors")},
                            "etcd": {k: e[k] for k in ("throughput_rps", "latency_ms", "errors")}})
        else:
            ratios.append(f"ratio {sc} {conc} throughput=nan p99=nan")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print()
print("\n".join(ratios))
PY
warden_args_note

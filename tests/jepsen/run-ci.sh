#!/usr/bin/env bash
# run-ci.sh - the short Jepsen suite for CI (issue 7): every available
# workload for ~60 s under partitions and kills, then the negative controls,
# then a check that no iptables chain and no wardend of ours is left.
#
#   WARDEN_BUILD=build tests/jepsen/run-ci.sh        (root: iptables)
#
# Bounded: each run has its own `timeout`.  On the 2-core dev box: each
# workload ~85 s (60 s load + setup, heal, quiet period, checks), each
# negative control ~45 s (3 harness + 3 server), so ~7.5 minutes with a
# faults build already present (measured: 412 s; a cold faults build adds
# 1-2 minutes, so ctest's 600 s jepsen/ci timeout is tight). Exit 0 only if every run is valid, every negative
# control fails as expected, and nothing is left behind.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
export WARDEN_BUILD=${WARDEN_BUILD:-$src/build}
J=$here/bin/warden-jepsen
PY=/usr/bin/python3
# Per-run bound: 60 s of load + setup, heal, quiet period, final reads, checks.
RUN_TIMEOUT_S=150
TIME_LIMIT_S=${JEPSEN_CI_TIME_LIMIT:-60}
SEED=${JEPSEN_CI_SEED:-$(( $(date +%s) % 1000000 ))}
# Small, so that in 60 s every node takes many snapshots, killed and
# partitioned nodes come back through snapshot installs, and restarts go
# through the start-up snapshot skip (wardend's default is 65,536).
SNAP_THRESHOLD=${JEPSEN_CI_SNAPSHOT_THRESHOLD:-256}

if [ "$(id -u)" != 0 ]; then
    echo "run-ci: needs root for iptables partitions; skipping" >&2
    exit 77
fi
if ! command -v iptables >/dev/null; then
    echo "run-ci: iptables missing (run scripts/bootstrap.sh)" >&2
    exit 1
fi

fail=0
store_root=$here/store
cleanup() { "$J" --cleanup --store "$store_root" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# grants, rollout and register (about 90 s each with setup and checks) are
# in the long suite: with them the short suite would take ~12 minutes.
# JEPSEN_CI_WORKLOADS="ledger counter-freshness grants rollout register"
# runs them all.
WORKLOADS=${JEPSEN_CI_WORKLOADS:-ledger counter-freshness}
for w in $WORKLOADS; do
    echo "run-ci: $w, partition+kill, ${TIME_LIMIT_S}s, seed $SEED"
    timeout -k 10 $RUN_TIMEOUT_S "$J" --workload "$w" --nemesis partition,kill \
        --time-limit "$TIME_LIMIT_S" --quiet-period 5 --concurrency 8 --seed "$SEED" \
        --snapshot-threshold "$SNAP_THRESHOLD"
    rc=$?
    if [ $rc != 0 ]; then
        echo "run-ci: FAIL $w (exit $rc); store path printed above" >&2
        fail=1
    fi
done

echo "run-ci: negative controls"
# Server-side controls use a separate -DWARDEN_FAULTS=ON build:
# $WARDEN_FAULTS_BUILD, or <WARDEN_BUILD>-faults built by the test.
export JEPSEN_BUILD_FAULTS=${JEPSEN_BUILD_FAULTS:-1}
timeout -k 10 $((6 * RUN_TIMEOUT_S)) $PY "$here/tests/negative_control.py" -v
rc=$?
if [ $rc != 0 ]; then
    echo "run-ci: FAIL negative controls (exit $rc)" >&2
    fail=1
fi

# Nothing left behind: our chains, and wardend processes with a data dir
# under our store.
# Slot 0's chains only (WARDEN-JEPSEN, WARDEN-JEPSEN-OUT): a long run in
# another slot (--slot K, chains WARDEN-JEPSEN<K>) may be going on.
ours=' WARDEN-JEPSEN(-OUT)?( |$)'
left=$(iptables -w 5 -S 2>/dev/null | grep -cE "$ours" || true)
if [ "$left" != 0 ]; then
    echo "run-ci: FAIL: iptables rules left behind:" >&2
    iptables -w 5 -S | grep -E "$ours" >&2
    fail=1
fi
pids=$(pgrep -f "wardend .*--data-dir $store_root/" || true)
if [ -n "$pids" ]; then
    echo "run-ci: FAIL: wardend processes left behind: $pids" >&2
    fail=1
fi
[ $fail = 0 ] && echo "run-ci: PASS"
exit $fail

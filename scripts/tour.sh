#!/bin/sh
# tour.sh - the README's 5-minute tour, runnable: enroll a device, request and
# approve access, CheckAccess as the gateway, revoke, roll out a signed
# release, then export and verify the audit ledger.
#
#   scripts/tour.sh [ENDPOINT] [DEV_CERTS_DIR]
#
# Defaults match `scripts/dev.sh`: 127.0.0.1:7443 and ./warden-data/dev-certs.
# Every step must succeed; the script stops at the first failure.
# tests/integration/test_tour.py runs it against a fresh dev node.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WARDENCTL=${WARDENCTL:-$ROOT/build/wardenctl}
EP=${1:-127.0.0.1:7443}
CERTS=${2:-./warden-data/dev-certs}
CERTS=$(cd "$CERTS" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

w() { role=$1; shift; echo "\$ wardenctl --role $role $*" >&2; "$WARDENCTL" --endpoint "$EP" --dev-certs "$CERTS" --role "$role" "$@"; }
field() { awk -v k="$1" '$1==k {print $2; exit}'; }

# Keys: a device key and a release-signing key (Ed25519).
openssl genpkey -algorithm ed25519 -out plc.key.pem 2>/dev/null
openssl pkey -in plc.key.pem -pubout -out plc.pub.pem
openssl genpkey -algorithm ed25519 -out release.key.pem 2>/dev/null
openssl pkey -in release.key.pem -pubout -out release.pub.pem
head -c 65536 /dev/urandom > firmware.bin
DEV=plc-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
ATT=$(sha256sum plc.pub.pem | cut -d' ' -f1)

# 1. A device behind the dev gateway, made ACTIVE.
w operator device enroll --id "$DEV" --key-alg ed25519 --public-key-file plc.pub.pem \
    --attestation-digest "$ATT" --gateway dev-gateway --model plc-x --firmware 2.0.0 --label site=plant-1
w operator device state "$DEV" active --reason commissioned

# 2. Just-in-time access: request, approve (diagnostics needs 1 approval),
#    the gateway checks before opening a session, then revoke.
REQ=$(w operator access request --device "$DEV" --purpose diagnostics \
    --reason "read fault log, ticket 4711" --protocol ssh --port 22 --duration 30m --max-sessions 2 | tee /dev/stderr | field request_id)
GRANT=$(w admin access approve "$REQ" --comment "ok for 4711" | tee /dev/stderr | awk '$1=="grant_id"{g=$2} END{print g}')
w gateway access check --principal dev-operator --device "$DEV" --protocol ssh --port 22 \
    --revision 0 --idempotency-key "sess-$DEV-1" | tee check.out >&2
grep -q ALLOW check.out
w operator access revoke "$GRANT" --reason "session done" >&2
w gateway access check --principal dev-operator --device "$DEV" --protocol ssh --port 22 \
    --revision 0 --idempotency-key "sess-$DEV-2" | tee check2.out >&2
grep -q DENY check2.out

# 3. A signed release and a staged rollout.
KEY=rk-$DEV
w admin rollout key register "$KEY" --public-key-file release.pub.pem >&2
COUNTER=$(date +%s)   # any counter above earlier releases for this model
"$WARDENCTL" rollout release manifest --version "2.1.$COUNTER" --counter "$COUNTER" \
    --artifact-sha256 "$(sha256sum firmware.bin | cut -d' ' -f1)" --artifact-size 65536 --model plc-x > fw.manifest
REL=$(w rollout rollout release create --manifest-file fw.manifest --key-id "$KEY" \
    --private-key-file release.key.pem | tee /dev/stderr | field release_id)
RO=$(w rollout rollout create --release "$REL" --name "fw-$COUNTER" --selector site=plant-1 \
    --stage canary=1 --stage 100% --min-reported 1 --success-ratio 95% --failure-ratio 5% \
    --bake 1m --device-timeout 1h | tee /dev/stderr | field rollout)
w rollout rollout start "$RO" --reason "change 88" >&2
w gateway rollout desired "$DEV" >&2
w gateway rollout report "$DEV" --key-epoch 1 --counter 1 --rollout "$RO" \
    --release-counter "$COUNTER" --phase succeeded --detail "boot ok" --private-key-file plc.key.pem >&2
w rollout rollout status "$RO" >&2

# 4. The evidence: export the audit ledger and verify it offline.
w auditor audit export ledger.export >&2
"$WARDENCTL" audit verify ledger.export
echo "tour: ok" >&2

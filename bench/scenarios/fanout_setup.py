#!/usr/bin/python3
"""fanout_setup.py - grants for bench/scenarios/fanout.sh (issue 8, scenario 7).

Against a running warden cluster (the leader's client address, the
`wardend gen-certs` directory of scenarios/lib.sh): sets the DIAGNOSTICS
purpose to one approval, enrolls one ACTIVE device bound to the gateway
principal the watchers use, makes --grants ACTIVE grants for it (requested
by --requester, operator or admin, and approved by the other) and writes
their ids, one per line, to --out. Revoking them is the timed part;
warden-fanout does it.

A principal holds at most ACC_PRINCIPAL_LIVE_MAX (64) open requests and
recent grants (revoked ones count until swept, 24 h later), so --grants is
capped at 60 and fanout.sh alternates the requester between runs.

Usage (from the source tree; WARDEN_BUILD holds the generated python protos):
  WARDEN_BUILD=build WARDEN_SRC=$PWD /usr/bin/python3 bench/scenarios/fanout_setup.py \\
      --leader 127.0.0.71:7443 --certs DIR/certs --grants 30 --out ids.txt
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import wardentest as wt  # noqa: E402
import grpc  # noqa: E402
import test_access as ta  # noqa: E402  (access protos, method table)

acc, inv = ta.acc, ta.inv
P = ta.P
RPC_TIMEOUT_S = 30.0
GRANTS_MAX = 60


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leader", required=True, help="IP:PORT of the warden leader")
    ap.add_argument("--certs", required=True, help="wardend gen-certs directory")
    ap.add_argument("--gateway", default="gateway",
                    help="gateway principal name of the watchers' certificate")
    ap.add_argument("--grants", type=int, default=30)
    ap.add_argument("--requester", choices=("operator", "admin"), default="operator")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if not 1 <= a.grants <= GRANTS_MAX:
        ap.error("--grants: 1..%d" % GRANTS_MAX)

    def read(name):
        with open(os.path.join(a.certs, name), "rb") as f:
            return f.read()

    ca = read("ca.pem")
    chans = {}
    for role in ("admin", "operator"):
        creds = grpc.ssl_channel_credentials(root_certificates=ca,
                                             private_key=read(role + "-key.pem"),
                                             certificate_chain=read(role + ".pem"))
        chans[role] = grpc.secure_channel(a.leader, creds)

    def call(role, method, req):
        path = method if method.startswith("/") else P + method
        return wt.stub(chans[role], path)(req, timeout=RPC_TIMEOUT_S)

    call("admin", "SetAccessPolicy", acc.SetAccessPolicyRequest(
        rules=[ta.rule(acc.ACCESS_PURPOSE_DIAGNOSTICS, 1)], lock_view_max_lag=1000000))
    did = wt.uid("fan")
    call("admin", "/warden.v1.Inventory/EnrollDevice", inv.EnrollDeviceRequest(
        device_id=did, key_algorithm=inv.KEY_ALGORITHM_ED25519,
        public_key=wt.digest32("k" + did), attestation_digest=wt.digest32(did),
        hardware_model="m", firmware_version="1", gateway_id=a.gateway))
    call("operator", "/warden.v1.Inventory/SetDeviceState", inv.SetDeviceStateRequest(
        device_id=did, state=inv.DEVICE_STATE_ACTIVE, reason="fan-out benchmark"))
    approver = "admin" if a.requester == "operator" else "operator"
    ids = []
    for _ in range(a.grants):
        r = call(a.requester, "RequestAccess", acc.RequestAccessRequest(
            device_ids=[did], purpose=acc.ACCESS_PURPOSE_DIAGNOSTICS,
            reason="fan-out benchmark", scope=acc.AccessScope(protocols=["ssh"]),
            duration_ms=3600000, max_sessions=10)).request
        g = call(approver, "ApproveAccess",
                 acc.ReviewAccessRequest(request_id=r.request_id)).grant
        if g.state != acc.ACCESS_GRANT_STATE_ACTIVE:
            sys.exit("grant %s is not ACTIVE" % g.grant_id)
        ids.append(g.grant_id)
    with open(a.out, "w") as f:
        f.write("\n".join(ids) + "\n")
    for ch in chans.values():
        ch.close()
    print("fanout_setup: device %s (gateway %s), %d grants -> %s"
          % (did, a.gateway, len(ids), a.out), file=sys.stderr)


if __name__ == "__main__":
    main()

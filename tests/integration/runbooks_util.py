"""runbooks_util: helpers for tests/integration/test_runbooks.py, which runs
every docs/ops/ runbook step by step on local clusters (cluster.py).

Every wait is bounded; every process signalled was started by cluster.py.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as ct  # noqa: E402
from cluster import cluster_pb2  # noqa: E402

wt = ct.wt

# wardenctl call bound (leader following, elections).
CLI_TIMEOUT_S = 60.0
# wardend recover/backup/restore: LMDB copy + raft_uv writes, sub-second.
OFFLINE_TIMEOUT_S = 60.0
# Promotion of an added node to voter (raft catch-up rounds).
MEMBER_TIMEOUT_S = 30.0


def wardenctl(c, *args, endpoints=None, exclude=None, role="admin", check=True):
    """wardenctl as `role` against `endpoints` (default: every running
    member but `exclude`). Returns (rc, stdout, stderr)."""
    eps = []
    for ep in endpoints or [nd.client for nd in c.running() if nd is not exclude]:
        eps += ["--endpoint", ep]
    cmd = [wt.WARDENCTL, *eps, "--dev-certs", c.certs, "--role", role, *args]
    r = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT_S)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    c.history.note("wardenctl %s -> %d: %s %s" % (" ".join(args), r.returncode, out, err))
    if check and r.returncode != 0:
        raise AssertionError("wardenctl %s -> %d:\n%s%s" % (" ".join(args), r.returncode, out, err))
    return r.returncode, out, err


def wardend_offline(c, *args, check=True):
    """`wardend recover|backup|restore ...`; returns (rc, stdout, stderr)."""
    cmd = [wt.WARDEND, *args]
    r = subprocess.run(cmd, capture_output=True, timeout=OFFLINE_TIMEOUT_S)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    c.history.note("wardend %s -> %d: %s %s" % (" ".join(args), r.returncode, out, err))
    if check and r.returncode != 0:
        raise AssertionError("wardend %s -> %d:\n%s%s" % (" ".join(args), r.returncode, out, err))
    return r.returncode, out, err


def peers_of(nodes):
    """--peers value naming exactly `nodes`."""
    for nd in nodes:
        nd.pick_ports()
    return ",".join("%d=%s/%s" % (nd.id, nd.peer, nd.client) for nd in nodes)


def enroll(c, prefix, n, node=None):
    ids = []
    for _ in range(n):
        i = wt.uid(prefix)
        c.call(ct.ENROLL, ct.enroll_req(i, idem=i), node=node, record=False)
        ids.append(i)
    return ids


def add_voter(c, nd, via):
    """`wardenctl cluster add` (sent to `via`, never the joiner), then wait
    until the leader reports nd as a voter."""
    wardenctl(c, "cluster", "add", str(nd.id), nd.peer, nd.client,
              endpoints=[v.client for v in via])
    deadline = time.monotonic() + MEMBER_TIMEOUT_S
    st = None
    while time.monotonic() < deadline:
        st = c.wait_leader().status()
        if {m.id: m.role for m in st.members}.get(nd.id) == cluster_pb2.MEMBER_ROLE_VOTER:
            return st
        time.sleep(0.1)
    raise AssertionError("n%d not a voter: %s" % (nd.id, ct._fmt_status(st)))


def device_ids(nd):
    return {d.device_id for d in nd.list_serializable()}


def read_json(path):
    with open(path) as f:
        return json.load(f)

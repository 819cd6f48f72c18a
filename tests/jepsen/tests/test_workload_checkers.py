"""Unit tests for the workload checkers on hand-made histories (no cluster).

Run:  /usr/bin/python3 -m unittest discover -s tests/jepsen/tests
Needs protoc + python3-grpcio/protobuf (the checkers read audit protos);
generated modules go to $WARDEN_BUILD/py (default: a temp dir here).
"""
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("WARDEN_BUILD", tempfile.mkdtemp(prefix="jepsen-chk-"))
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

from jepsen import auditchain, workloads as WL    # noqa: E402
from jepsen.wire import audit_pb2                  # noqa: E402

OK = audit_pb2.AUDIT_OUTCOME_OK
ENROLL = audit_pb2.AUDIT_ACTION_ENROLL


def chain(targets):
    out, prev = [], auditchain.ZERO
    for k, t in enumerate(targets, 1):
        e = audit_pb2.AuditEntry(seq=k, raft_index=10 + k, principal_name="admin",
                                 action=ENROLL, target=t, outcome=OK, count=1,
                                 request_digest=b"\1" * 32, prev_hash=prev)
        e.entry_hash = auditchain.entry_hash(e)
        prev = e.entry_hash
        out.append(e)
    return out


def hist(*ops):
    out = []
    for k, (p, typ, f, v) in enumerate(ops):
        out.append({"process": p, "type": typ, "f": f, "value": v, "time": k, "index": k})
    return out


class Head:
    def __init__(self, entries):
        self.seq = entries[-1].seq if entries else 0
        self.hash = entries[-1].entry_hash if entries else auditchain.ZERO
        self.applied_index = 99


def enroll(p, typ, dev):
    return (p, typ, "enroll", {"device": dev, "idem": "k" + dev})


class LedgerChecker(unittest.TestCase):
    def check(self, entries_by_node, ops):
        st = {i: (Head(e), e) for i, e in entries_by_node.items()}
        return WL.Ledger(1, None).check(hist(*ops), st)

    def test_valid(self):
        e = chain(["jl-a", "jl-b"])
        r = self.check({1: e, 2: e}, [enroll(0, "invoke", "jl-a"), enroll(0, "ok", "jl-a"),
                                      enroll(1, "invoke", "jl-b"), enroll(1, "info", "jl-b"),
                                      enroll(2, "invoke", "jl-c"), enroll(2, "info", "jl-c")])
        self.assertTrue(r["valid?"], r)

    def test_lost_duplicated_failed_applied(self):
        e = chain(["jl-b", "jl-b", "jl-c"])
        r = self.check({1: e}, [enroll(0, "invoke", "jl-a"), enroll(0, "ok", "jl-a"),
                                enroll(1, "invoke", "jl-b"), enroll(1, "ok", "jl-b"),
                                enroll(2, "invoke", "jl-c"), enroll(2, "fail", "jl-c")])
        self.assertFalse(r["valid?"])
        self.assertEqual(set(r["anomalies"]), {"lost", "duplicated", "failed-but-applied"})

    def test_chain_and_divergence(self):
        e = chain(["jl-a", "jl-b"])
        f = chain(["jl-a", "jl-x"])
        bad = chain(["jl-a", "jl-b"])
        bad[1].detail = "tampered"
        ops = [enroll(0, "invoke", "jl-a"), enroll(0, "ok", "jl-a")]
        r = self.check({1: e, 2: f}, ops)
        self.assertIn("ledger-divergence", r["anomalies"])
        r = self.check({1: bad}, ops)
        self.assertIn("chain-broken", r["anomalies"])


def sub(p, typ, dev, c, res=None):
    return (p, typ, "submit", [dev, c, "x"] + ([res] if typ != "invoke" else []))


class FreshnessChecker(unittest.TestCase):
    def check(self, *ops):
        return WL.Freshness(1, None).check(hist(*ops), None)

    def test_valid(self):
        r = self.check(sub(0, "invoke", "d", 1), sub(0, "ok", "d", 1, "accepted"),
                       sub(1, "invoke", "d", 1), sub(1, "ok", "d", 1, "replay"),
                       sub(2, "invoke", "d", 2), sub(3, "invoke", "d", 2),
                       sub(2, "info", "d", 2), sub(3, "ok", "d", 2, "replay"))
        self.assertTrue(r["valid?"], r)

    def test_accepted_twice(self):
        r = self.check(sub(0, "invoke", "d", 1), sub(0, "ok", "d", 1, "accepted"),
                       sub(1, "invoke", "d", 1), sub(1, "ok", "d", 1, "accepted"))
        self.assertIn("accepted-twice", r["anomalies"])
        self.assertIn("acceptance-lost", r["anomalies"])

    def test_unexplained_and_after_replay(self):
        r = self.check(sub(0, "invoke", "d", 1), sub(0, "fail", "d", 1),
                       sub(1, "invoke", "d", 1), sub(1, "ok", "d", 1, "replay"),
                       sub(2, "invoke", "d", 1), sub(2, "ok", "d", 1, "accepted"))
        self.assertIn("unexplained-replay", r["anomalies"])
        self.assertIn("accepted-after-replay", r["anomalies"])


if __name__ == "__main__":
    unittest.main()

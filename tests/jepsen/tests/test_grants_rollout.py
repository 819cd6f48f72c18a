"""Unit tests for the grants and rollout checkers on hand-made histories
(no cluster).  Run:  /usr/bin/python3 -m unittest discover -s tests/jepsen/tests
"""
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("WARDEN_BUILD", tempfile.mkdtemp(prefix="jepsen-chk-"))
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

from jepsen import workloads  # noqa: E402,F401  (loads wl_* in order)
from jepsen import wl_access  # noqa: E402


def H(*events):
    """events: (process, type, f, value) in real-time order; times 0, 10, 20..."""
    return [{"process": p, "type": t, "f": f, "value": v, "time": 10 * k, "index": k}
            for k, (p, t, f, v) in enumerate(events)]


def grant(p, gid="grt-1", devs=("d1",), mx=2, principal="jr-1"):
    v = {"request": "req-1", "reviewer": "admin", "key": "ka"}
    return [(p, "invoke", "approve", v),
            (p, "ok", "approve", dict(v, grant=gid, principal=principal, devices=list(devs),
                                      max=mx, state="granted"))]


def check(p, key, typ="ok", dev="d1", decision="allow", gid="grt-1", rem=1, reason=None,
          principal="jr-1"):
    v = {"principal": principal, "device": dev, "key": key}
    out = dict(v, decision=decision, grant=gid, remaining=rem, revision=1)
    if reason:
        out["reason"] = reason
    return [(p, "invoke", "check", v), (p, typ, "check", out if typ == "ok" else v)]


def revoke(p, gid="grt-1", typ="ok"):
    v = {"grant": gid, "by": "admin", "key": "kv"}
    return [(p, "invoke", "revoke", v), (p, typ, "revoke", v)]


def lock(p, dev="d1", lid="lck-1"):
    v = {"device": dev, "key": "kl"}
    return [(p, "invoke", "lock", v), (p, "ok", "lock", dict(v, lock=lid, **{"revoked-now": 1}))]


def unlock(p, lid="lck-1", typ="ok"):
    v = {"lock": lid, "device": "d1", "key": "ku"}
    return [(p, "invoke", "unlock", v), (p, typ, "unlock", v)]


class GrantsChecker(unittest.TestCase):
    def kinds(self, *seq):
        r = wl_access.check_grants(H(*[e for s in seq for e in s]))
        return set(r["anomaly-counts"])

    def test_valid(self):
        self.assertEqual(self.kinds(grant(0), check(1, "a", rem=1), check(1, "b", rem=0),
                                    check(1, "c", decision="deny", reason="uses-exhausted",
                                          rem=0),
                                    revoke(0),
                                    check(1, "d", decision="deny", reason="grant-revoked")),
                         set())

    def test_allow_concurrent_with_revoke_is_fine(self):
        # check invoked before the revoke completed: either order is legal
        ev = grant(0) + [(0, "invoke", "revoke", {"grant": "grt-1", "by": "a", "key": "k"}),
                         (1, "invoke", "check", {"principal": "jr-1", "device": "d1", "key": "a"}),
                         (0, "ok", "revoke", {"grant": "grt-1", "by": "a", "key": "k"}),
                         (1, "ok", "check", {"principal": "jr-1", "device": "d1", "key": "a",
                                             "decision": "allow", "grant": "grt-1",
                                             "remaining": 1})]
        self.assertEqual(self.kinds(ev), set())

    def test_allow_after_revoke(self):
        self.assertEqual(self.kinds(grant(0), revoke(0), check(1, "a")),
                         {"allow-after-revoke"})

    def test_info_revoke_does_not_count(self):
        self.assertEqual(self.kinds(grant(0), revoke(0, typ="info"), check(1, "a")), set())

    def test_allow_while_locked_and_after_lock_revoked(self):
        self.assertEqual(self.kinds(grant(0), lock(0), check(1, "a")),
                         {"allow-while-locked", "allow-after-lock-revoked"})
        # After Unlock the lock no longer denies, but the grant it revoked stays revoked.
        self.assertEqual(self.kinds(grant(0), lock(0), unlock(0), check(1, "a")),
                         {"allow-after-lock-revoked"})
        # A grant made after the lock's ack and the unlock: legal.
        self.assertEqual(self.kinds(lock(0), unlock(0), grant(0), check(1, "a")), set())
        # Lock of another device of a 2-device grant revokes it too.
        self.assertEqual(self.kinds(grant(0, devs=("d1", "d2")), lock(0, dev="d2"),
                                    check(1, "a", dev="d1")), {"allow-after-lock-revoked"})

    def test_over_consumed_and_counted_twice(self):
        self.assertEqual(self.kinds(grant(0, mx=2), check(1, "a", rem=1), check(1, "b", rem=0),
                                    check(1, "c", rem=0)),
                         {"over-consumed", "use-counted-twice"})
        self.assertEqual(self.kinds(grant(0, mx=2), check(1, "a", rem=5)),
                         {"remaining-out-of-range"})

    def test_idempotent_retry(self):
        # the same key answered twice identically is one use
        self.assertEqual(self.kinds(grant(0, mx=1), check(1, "a", rem=0), check(2, "a", rem=0)),
                         set())
        self.assertEqual(self.kinds(grant(0, mx=2), check(1, "a", rem=1), check(2, "a", rem=0)),
                         {"idempotency-mismatch"})

    def test_exhausted_early_uses_info_as_upper_bound(self):
        ex = dict(decision="deny", reason="uses-exhausted", rem=0)
        self.assertEqual(self.kinds(grant(0, mx=2), check(1, "a", rem=1), check(1, "b", **ex)),
                         {"exhausted-early"})
        self.assertEqual(self.kinds(grant(0, mx=2), check(1, "a", rem=1),
                                    check(2, "i", typ="info"), check(1, "b", **ex)), set())

    def test_final_uses(self):
        def run(left, *seq):
            fin = {"grt-1": {"principal": "jr-1", "devices": ["d1"], "max": 3, "left": left,
                             "state": "active"}}
            r = wl_access.check_grants(H(*[e for s in seq for e in s]), fin)
            return set(r["anomaly-counts"])
        self.assertEqual(run(2, grant(0, mx=3), check(1, "a", rem=2)), set())
        self.assertEqual(run(3, grant(0, mx=3), check(1, "a", rem=2)), {"use-lost"})
        self.assertEqual(run(1, grant(0, mx=3), check(1, "a", rem=2)), {"phantom-use"})
        # an :info check may have consumed one
        self.assertEqual(run(1, grant(0, mx=3), check(1, "a", rem=2),
                             check(2, "i", typ="info")), set())
        # an acknowledged grant missing from the final read
        r = wl_access.check_grants(H(*grant(0)), {})
        self.assertEqual(set(r["anomaly-counts"]), {"grant-lost"})

    def test_retry_replays_an_earlier_allow(self):
        # the first attempt (:info) may have committed before the revoke:
        # its retry with the same key replays that ALLOW, legally
        self.assertEqual(self.kinds(grant(0), check(1, "a", typ="info"), revoke(0),
                                    check(2, "a", rem=1)), set())
        self.assertEqual(self.kinds(grant(0), revoke(0), check(1, "a", typ="info"),
                                    check(2, "a", rem=1)), {"allow-after-revoke"})

    def test_exhausted_counts_a_retried_allow_from_its_first_attempt(self):
        ex = dict(decision="deny", reason="uses-exhausted", rem=0)
        self.assertEqual(self.kinds(grant(0, mx=1), check(1, "a", typ="info"),
                                    check(2, "b", **ex), check(1, "a", rem=0)), set())

    def test_wrong_grant(self):
        self.assertEqual(self.kinds(grant(0), check(1, "a", principal="jr-2")),
                         {"allow-wrong-grant"})



from jepsen import wl_rollout  # noqa: E402


def desired(p, dev="d1", rid=0, rc=0, inst=0, typ="ok"):
    v = {"device": dev, "key": "k"}
    out = dict(v, target=bool(rid), rollout=rid, release=rc, installed=inst, seq=1)
    return [(p, "invoke", "desired", v), (p, typ, "desired", out if typ == "ok" else v)]


def transition(p, f, rid, typ="ok", state=None):
    v = {"rollout": rid, "key": "k" + f}
    out = dict(v, state=state or {"abort": "aborted", "pause": "paused"}.get(f, "running"),
               stage=0)
    return [(p, "invoke", f, v), (p, typ, f, out if typ == "ok" else v)]


def report(p, rid, rc, phase, ctr, result="accepted", dev="d1", typ="ok"):
    v = {"device": dev, "counter": ctr, "rollout": rid, "release": rc, "phase": phase}
    return [(p, "invoke", "report", v), (p, typ, "report", dict(v, result=result))]


class RolloutChecker(unittest.TestCase):
    def kinds(self, *seq):
        r = wl_rollout.check_rollout(H(*[e for s in seq for e in s]))
        return set(r["anomaly-counts"])

    def test_valid(self):
        self.assertEqual(self.kinds(desired(1), desired(1, rid=5, rc=20),
                                    report(1, 5, 20, "succeeded", 1),
                                    desired(1, inst=20), desired(1, rid=9, rc=30, inst=20)),
                         set())

    def test_target_decreased(self):
        self.assertEqual(self.kinds(desired(1, rid=9, rc=30), desired(2, rid=5, rc=20)),
                         {"target-decreased"})
        # excused: the earlier target's rollout was aborted, or the device finished it
        self.assertEqual(self.kinds(desired(1, rid=9, rc=30), transition(0, "abort", 9),
                                    desired(2, rid=5, rc=20)), set())
        self.assertEqual(self.kinds(desired(1, rid=9, rc=30), report(1, 9, 30, "failed", 1),
                                    desired(2, rid=5, rc=20)), set())

    def test_installed(self):
        self.assertEqual(self.kinds(desired(1, inst=20), desired(2, inst=10)),
                         {"installed-decreased"})
        self.assertEqual(self.kinds(desired(1, rid=5, rc=20), report(1, 5, 20, "succeeded", 1),
                                    desired(2, inst=0)), {"install-lost"})
        self.assertEqual(self.kinds(desired(1, rid=5, rc=20, inst=20)),
                         {"target-not-above-installed"})

    def test_abort(self):
        self.assertEqual(self.kinds(transition(0, "abort", 5), desired(1, rid=5, rc=20)),
                         {"assigned-after-abort"})
        self.assertEqual(self.kinds(desired(1, rid=5, rc=20), transition(0, "abort", 5),
                                    desired(1, rid=5, rc=20)), {"target-after-abort"})
        # an :info desired before the abort may have assigned it: still "target-after-abort"
        self.assertEqual(self.kinds(desired(1, typ="info"), transition(0, "abort", 5),
                                    desired(2, rid=5, rc=20)), {"target-after-abort"})
        # concurrent with the abort: fine
        ev = [(0, "invoke", "abort", {"rollout": 5, "key": "k"}),
              (1, "invoke", "desired", {"device": "d1", "key": "k"}),
              (0, "ok", "abort", {"rollout": 5, "key": "k", "state": "aborted"}),
              (1, "ok", "desired", {"device": "d1", "key": "k", "target": True, "rollout": 5,
                                    "release": 20, "installed": 0, "seq": 1})]
        self.assertEqual(self.kinds(ev), set())

    def test_pause(self):
        self.assertEqual(self.kinds(transition(0, "pause", 5), desired(1, rid=5, rc=20)),
                         {"assigned-while-paused"})
        self.assertEqual(self.kinds(desired(1, rid=5, rc=20), transition(0, "pause", 5),
                                    desired(1, rid=5, rc=20)), set())
        self.assertEqual(self.kinds(transition(0, "pause", 5), transition(0, "resume", 5),
                                    desired(1, rid=5, rc=20)), set())
        self.assertEqual(self.kinds(transition(0, "pause", 5),
                                    transition(0, "resume", 5, typ="info"),
                                    desired(1, rid=5, rc=20)), set())

    def test_report_accepted_twice(self):
        self.assertEqual(self.kinds(report(1, 5, 20, "downloading", 1),
                                    report(2, 5, 20, "downloading", 1)),
                         {"report-accepted-twice"})
        self.assertEqual(self.kinds(report(1, 5, 20, "downloading", 1),
                                    report(2, 5, 20, "downloading", 1, result="replay")), set())


if __name__ == "__main__":
    unittest.main()
